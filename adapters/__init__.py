"""Adapters by name, imported only when asked for: importing this package imports no framework.

``get(name)`` gives the adapter in this process; ``get(name, isolated=True)`` gives it served by a
worker process of its own (``adapters._worker.IsolatedAdapter``), so that a crash, a hang or a
memory blow-up on one case costs that case (the verdicts ``crash`` and ``timeout``), not the run.
Adapters that must run in a worker anyway (the Keras adapters, the ``crashy``, ``hang`` and
``leak`` controls) are `WorkerAdapter`s either way.

``names()`` is the default set of ``xent run``; the adapters in ``OPT_IN`` (the controls that
crash, hang and leak) run only when named (``names(include_opt_in=True)`` lists them too).

Third-party adapters (``adapters.discovery``) come after the built-in ones: those of the
entry-point group ``xent.adapters`` (under the entry point's name; one named like a built-in
adapter is ignored) and those this process or its parent named with `register` (``xent run
--adapter MODULE:ATTRIBUTE``). ``get`` gives them `Guarded`, or `Broken` with the reason when
they do not load.
"""
from __future__ import annotations

import importlib

from .base import Adapter, AdapterCrashed, AdapterTimeout, Contract, Output

#: adapter name -> "module:Class"; the module is imported by `get`, never here.
ADAPTERS: dict[str, str] = {
    "numpy": "adapters.numpy_ref:NumpyAdapter",
    "naive": "adapters.naive:NaiveAdapter",
    "torch": "adapters.torch_adapter:TorchAdapter",
    "tensorflow": "adapters.tf_adapter:TensorFlowAdapter",
    "tensorflow-xla": "adapters.tf_adapter:TensorFlowXLAAdapter",
    "keras-tensorflow": "adapters.keras_adapter:KerasTensorFlowAdapter",
    "keras-jax": "adapters.keras_adapter:KerasJaxAdapter",
    "keras-torch": "adapters.keras_adapter:KerasTorchAdapter",
    "tf_keras": "adapters.keras_adapter:TfKerasAdapter",
    "jax": "adapters.jax_adapter:JaxAdapter",
    "jax-x64": "adapters.jax_adapter:JaxX64Adapter",
    "sklearn": "adapters.sklearn_adapter:SklearnAdapter",
    "onnxruntime": "adapters.onnx_adapter:OnnxRuntimeAdapter",
    "onnx-reference": "adapters.onnx_adapter:OnnxReferenceAdapter",
    "crashy": "adapters.controls:CrashyAdapter",
    "hang": "adapters.controls:HangAdapter",
    "leak": "adapters.controls:LeakAdapter",
}

#: adapters that run only when asked for by name: not in `names()`, so not in a plain ``xent run``.
OPT_IN: frozenset[str] = frozenset({"crashy", "hang", "leak"})


def names(include_opt_in: bool = False) -> list[str]:
    """The registered adapters, in order; without the `OPT_IN` ones unless ``include_opt_in``; then
    the third-party ones."""
    return [n for n in ADAPTERS if include_opt_in or n not in OPT_IN] + list(third_party_targets())


def third_party_targets() -> dict[str, str]:
    """Third-party adapter name -> ``MODULE:ATTRIBUTE``: entry points, then those `register`ed."""
    from . import discovery

    found = {n: t for n, t in discovery.entry_points().items() if n not in ADAPTERS}
    found.update({n: t for n, t in discovery.remembered().items() if n not in ADAPTERS})
    return found


def register(target: str, isolated: bool = False) -> Adapter:
    """Load the third-party adapter ``target`` (``MODULE:ATTRIBUTE``) and make its name known to
    `get` and `names`, here and in the processes this one starts. Never raises: a target that
    gives no adapter, or one whose name is taken by another adapter, comes back `Broken`. As with
    ``python -m``, modules in the current folder are importable (the ``xent`` script's own folder
    is what Python puts on the path)."""
    import os
    import sys

    from . import discovery

    if not ({"", ".", os.getcwd()} & set(sys.path)):
        sys.path.insert(0, os.getcwd())
    adapter = discovery.load(target, isolated=isolated)
    if isinstance(adapter, discovery.Broken):
        return adapter
    taken = ADAPTERS.get(adapter.name) or third_party_targets().get(adapter.name)
    if taken is not None and taken != target:
        adapter.close()
        return discovery.Broken(target, f"{target}: its name {adapter.name!r} is already that of the adapter "
                                        f"{taken}", target)
    discovery.remember(adapter.name, target)
    return adapter


class Unavailable(Adapter):
    """Stands in for an adapter whose module cannot be imported, carrying the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        self.description = "could not be loaded"

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def apis(self, case) -> list[str]:
        return []


def get(name: str, isolated: bool = False) -> Adapter:
    """A new instance of the adapter called ``name`` (an `Unavailable` if its module won't import).

    ``isolated``: served by a worker process of its own (an `IsolatedAdapter`), which imports the
    framework once and is restarted after a crash, a timeout or a memory blow-up; an adapter that
    is already a `WorkerAdapter` is returned as it is. Otherwise the adapter runs in this process.
    """
    try:
        target = ADAPTERS[name]
    except KeyError:
        others = third_party_targets()
        if name in others:
            from . import discovery

            return discovery.load(others[name], name=name, isolated=isolated)
        raise ValueError(f"unknown adapter {name!r}; known adapters: {', '.join([*ADAPTERS, *others])}") from None
    module, cls_name = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return Unavailable(name, f"{module} does not import: {e}")
    cls = getattr(mod, cls_name)
    if isolated:
        from ._worker import IsolatedAdapter, WorkerAdapter

        if not issubclass(cls, WorkerAdapter):
            return IsolatedAdapter(target, cls)
    return cls()


__all__ = ["ADAPTERS", "OPT_IN", "Adapter", "AdapterCrashed", "AdapterTimeout", "Contract", "Output", "get",
           "names", "register", "third_party_targets"]
