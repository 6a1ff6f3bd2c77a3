"""One implementation audited from Python: ``xent.audit`` and the pytest plugin's ``xent_audit``.

The run is ``xent run``'s (``runner.run``: the curated corpus and the shared generated cases of
every variant and dtype, then each cell's targeted search, then every divergence shrunk), over what
the adapter declares it can express. The audit fails when any divergence's verdict is not in
``allow``, when the adapter is unavailable, when it could express none of the cases (a declaration
that matches nothing must not pass), or when the oracle raised. Its message gives, per divergence,
most severe first: the verdict and what came back against the certified truth on the minimal
(shrunk) case, that case hex-exact (for ``xent replay FILE``), and the standalone reproducer (the
script in full for the first one; the others by path when ``out`` was given).
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from . import options as audit_options

CASE_JSON_LIMIT = 1500  # characters of a minimal case quoted in the message; report.json has it all
LISTED = 10  # divergences described in the message; the report has them all


class AuditFailed(AssertionError):
    """The audit found what it fails on; ``str(e)`` is the readable account, ``e.result`` the whole."""

    def __init__(self, result: "AuditResult"):
        super().__init__(result.message())
        self.result = result


@dataclass
class AuditResult:
    adapter: str
    settings: dict  # profile, examples, search, shrink, seed
    variants: list
    dtypes: list
    doc: dict  # the report.json document
    repros: dict  # repro/<case_id>.py -> the reproducer's source
    allow: tuple = ()
    out: Path | None = None
    problems: list = field(default_factory=list)  # third-party adapter calls that raised (Guarded)

    @property
    def unavailable(self) -> str | None:
        for a in self.doc["environment"]["adapters"]:
            if not a["available"]:
                return a.get("reason") or "unavailable"
        return None

    @property
    def failures(self) -> list[dict]:
        """The divergences the audit fails on, most severe first, then the most frequent."""
        from .verdict import RANK

        found = [d for d in self.doc["divergences"] if d["verdict"] not in self.allow]
        return sorted(found, key=lambda d: (RANK.get(d["verdict"], 0), -d.get("count", 1)))

    @property
    def allowed(self) -> list[dict]:
        return [d for d in self.doc["divergences"] if d["verdict"] in self.allow]

    @property
    def answers(self) -> int:
        return self.doc["run"]["answers"]

    @property
    def ok(self) -> bool:
        return (self.unavailable is None and self.answers > 0 and not self.failures
                and not self.doc["oracle_errors"])

    def _scope(self) -> str:
        s = self.settings
        return (f"{', '.join(self.variants)}; {', '.join(self.dtypes)}; profile {s['profile']} ({s['examples']} "
                f"shared cases, {s['search']} searched per cell, shrink {s['shrink']}); seed {s['seed']}")

    def message(self) -> str:
        """The readable account: one headline, then each failure (see the module's documentation)."""
        head = f"xent audit of {self.adapter}"
        lines = []
        if self.unavailable is not None:
            lines.append(f"{head}: the adapter is unavailable: {self.unavailable}")
        elif self.answers == 0:
            lines.append(f"{head}: no case could be expressed ({self._scope()}): check the variants and dtypes "
                         f"it declares and what its apis() accepts")
        elif self.ok:
            allowed = f"; {len(self.allowed)} allowed divergence(s) ({', '.join(self.allow)})" if self.allowed else ""
            lines.append(f"{head}: {self.answers} answers conform ({self._scope()}){allowed}")
        else:
            divergent = sum(d.get("count", 1) for d in self.failures)
            lines.append(f"{head}: {len(self._distinct())} distinct divergence(s) from the certified oracle "
                         f"({divergent} of {self.answers} answers)")
            lines.append(f"  run: {self._scope()}")
        if self.out is not None:
            lines.append(f"  report: {self.out / 'summary.md'} (and index.html, report.json)")
        for e in self.doc["oracle_errors"]:
            lines.append(f"  the oracle raised on case {e['case_id']} ({e['variant']} {e['dtype']}): "
                         f"{e['error'][:200]} (a bug in xent's oracle, not in {self.adapter})")
        for text in self.problems:
            lines.append(f"  warning: {text}")
        if self.unavailable is not None or not self.failures:
            return "\n".join(lines)
        distinct = self._distinct()
        shown_script = False
        for k, (d, count, regimes) in enumerate(distinct[:LISTED], 1):
            lines += [""] + self._describe(k, d, count, regimes, full_script=not shown_script)
            shown_script = shown_script or bool(d.get("repro") and d["repro"] in self.repros)
        if len(distinct) > LISTED:
            lines.append(f"\n... and {len(distinct) - LISTED} more in the report")
        return "\n".join(lines)

    def _distinct(self) -> list[tuple[dict, int, list]]:
        """The failures, those with the same verdict and API that shrank to the same minimal case
        (from several input regimes) once: (the first of them, their answers, their regimes)."""
        from .report import minimal

        found: dict = {}
        for d in self.failures:
            key = (d["verdict"], d["api"], minimal(d)["case_id"])
            if key not in found:
                found[key] = [d, 0, []]
            found[key][1] += d.get("count", 1)
            if d.get("regime") and d["regime"] not in found[key][2]:
                found[key][2].append(d["regime"])
        return [tuple(v) for v in found.values()]

    def _describe(self, k: int, d: dict, count: int, regimes: list, full_script: bool) -> list[str]:
        from .report import explain, minimal

        m = minimal(d)
        regime = f", input regime{'s' * (len(regimes) > 1)} {', '.join(regimes)}" if regimes else ""
        lines = [f"{k}. {d['verdict']} ({count} answer(s){regime})",
                 f"   {explain(m)}"]
        shrunk = d.get("shrunk")
        what = (f"minimal case (shrunk in {shrunk['steps']} step(s))" if shrunk else "case (not shrunk further)")
        text = json.dumps(m["case"], sort_keys=True)
        if len(text) > CASE_JSON_LIMIT:
            text = text[:CASE_JSON_LIMIT] + " … (in full in report.json)"
        lines += [f"   {what}, hex-exact; `xent replay FILE` runs it on every adapter:", f"     {text}"]
        path = d.get("repro")
        if not path or path not in self.repros:
            lines.append("   reproducer: none (the adapter writes no reproducer for this API)")
            return lines
        where = f"{self.out / path}" if self.out is not None else path
        if full_script:
            lines.append(f"   reproducer ({where}; exits 0 when the divergence reproduces):")
            lines.append(textwrap.indent(self.repros[path].rstrip("\n"), "     | ", lambda line: True))
        else:
            lines.append(f"   reproducer: {where}")
        return lines


def audit(adapter, *, variants=None, dtypes=None, allow=(), out=None, progress=None, isolated: bool = False,
          command_line: dict | None = None, raise_on_failure: bool = True, profile: str | None = None,
          examples: int | None = None, search: int | None = None, shrink: int | None = None,
          seed: int | None = None) -> AuditResult:
    """Audit one implementation against the certified oracle; raise `AuditFailed` (an
    AssertionError) with the readable account when it fails, else return the `AuditResult`.

    ``adapter``: an `Adapter` (e.g. from ``xent.kernel``), a plain function (then ``variants``
    names its one variant, and ``dtypes`` its dtypes: it is wrapped with ``xent.kernel``), the
    name of a registered adapter (``"torch"``) or a ``MODULE:ATTRIBUTE`` target. ``variants`` and
    ``dtypes`` default to what the adapter declares (else all). ``allow``: verdicts that do not
    fail the audit (still reported). ``profile``, ``examples``, ``search``, ``shrink``, ``seed``:
    the budgets (`conformance.options`; default the ``fast`` profile); ``command_line``: options
    given on a command line, which override them. ``out``: a folder for report.json, summary.md,
    index.html and the reproducers. ``isolated``: evaluate in a worker process (only for an
    adapter a worker can import: a registered name or a target).
    """
    from cases import DTYPES, VARIANTS

    settings = audit_options.resolve(command_line or {}, {"profile": profile, "examples": examples,
                                                          "search": search, "shrink": shrink, "seed": seed})
    variants = [variants] if isinstance(variants, str) else (list(variants) if variants is not None else None)
    dtypes = [dtypes] if isinstance(dtypes, str) else (list(dtypes) if dtypes is not None else None)
    adapter = _adapter(adapter, variants, dtypes, isolated)
    variants = variants or list(getattr(adapter, "variants", ()) or VARIANTS)
    dtypes = dtypes or list(getattr(adapter, "dtypes", ()) or DTYPES)
    for kind, given, known in (("variant", variants, VARIANTS), ("dtype", dtypes, DTYPES)):
        unknown = [x for x in given if x not in known]
        if unknown:
            raise ValueError(f"unknown {kind}(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(known)}")
    allow = (allow,) if isinstance(allow, str) else tuple(allow)
    from .verdict import SEVERITY

    bad = [v for v in allow if v not in SEVERITY]
    if bad:
        raise ValueError(f"allow: unknown verdict(s) {', '.join(map(repr, bad))}; "
                         f"expected some of {', '.join(SEVERITY)}")

    from . import report, runner

    try:
        result = runner.run([adapter], variants, dtypes, settings["examples"], settings["seed"], progress=progress,
                            search=settings["search"], shrink=settings["shrink"])
        argv = ["audit", adapter.name, "--variants", ",".join(variants), "--dtypes", ",".join(dtypes),
                *(f"--{k}={settings[k]}" for k in ("profile", "examples", "search", "shrink", "seed"))]
        doc = report.build(result, argv)
        repros = report.attach_repros(doc, {adapter.name: adapter})
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()
    out = Path(out) if out is not None else None
    if out is not None:
        report.write(doc, out, repros)
    problems = [f"{adapter.name}: {text} ({n} time(s))" for text, n in getattr(adapter, "problems", {}).items()]
    res = AuditResult(adapter.name, settings, variants, dtypes, doc, repros, allow, out, problems)
    if raise_on_failure and not res.ok:
        raise AuditFailed(res)
    return res


def _adapter(adapter, variants, dtypes, isolated: bool):
    import adapters as registry
    from adapters import discovery
    from adapters.base import Adapter

    if isinstance(adapter, Adapter):
        return adapter
    if isinstance(adapter, str):
        if ":" in adapter:
            return discovery.load(adapter, isolated=isolated)
        return registry.get(adapter, isolated=isolated)
    if callable(adapter):
        if not variants or len(variants) != 1:
            raise ValueError("a plain function needs its one variant: audit(fn, variants='sigmoid_bce_logits', "
                             "dtypes=...), or wrap it with xent.kernel(fn, variant, ...)")
        from adapters.kernel import DEFAULT_DTYPES, kernel

        return kernel(adapter, variants[0], dtypes=dtypes or DEFAULT_DTYPES)
    raise TypeError(f"expected an adapter, a function, an adapter name or MODULE:ATTRIBUTE, "
                    f"got {type(adapter).__name__}")
