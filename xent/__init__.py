"""xent's public API: audit your own loss implementation against the certified oracle.

    import xent

    adapter = xent.kernel(bce_with_logits, "sigmoid_bce_logits", dtypes=("float32", "float64"))
    xent.audit(adapter)  # raises xent.AuditFailed: minimal case, verdict, reproducer

- `kernel(fn, variant, dtypes=..., grads=..., ...)`: an adapter made from a plain function; what
  the function takes is read from its signature (``adapters.kernel``).
- `Adapter`, `Output`, `Contract`, `AdapterCrashed`, `AdapterTimeout`: the full adapter interface,
  for implementations with several APIs, documented contracts or reproducers (``adapters.base``).
- `audit(adapter, variants=..., dtypes=..., allow=..., profile=..., examples=..., search=...,
  shrink=..., seed=..., out=...)` -> `AuditResult`, raising `AuditFailed` (``conformance.audit``);
  the pytest plugin's ``xent_audit`` fixture is the same with pytest's options.
- `load_adapter("module:attribute")`: a third-party adapter as ``xent run --adapter`` loads it.
- `Case`, `VARIANTS`, `DTYPES`, `PROFILES`, `ENTRY_POINT_GROUP`.

Guide: docs/tutorial.md; reference: docs/adapters.md. Importing this package imports nothing else:
each name is imported when first used (the pytest plugin is loaded at every pytest start).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "kernel": "adapters.kernel:kernel",
    "KernelAdapter": "adapters.kernel:KernelAdapter",
    "Adapter": "adapters.base:Adapter",
    "Output": "adapters.base:Output",
    "Contract": "adapters.base:Contract",
    "AdapterCrashed": "adapters.base:AdapterCrashed",
    "AdapterTimeout": "adapters.base:AdapterTimeout",
    "load_adapter": "adapters.discovery:load",
    "ENTRY_POINT_GROUP": "adapters.discovery:GROUP",
    "audit": "conformance.audit:audit",
    "AuditResult": "conformance.audit:AuditResult",
    "AuditFailed": "conformance.audit:AuditFailed",
    "PROFILES": "conformance.options:PROFILES",
    "Case": "cases:Case",
    "VARIANTS": "cases:VARIANTS",
    "DTYPES": "cases:DTYPES",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'xent' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
