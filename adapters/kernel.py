"""An adapter made from plain functions: a team's own loss kernel, audited without subclassing.

    def bce_with_logits(logits, labels):  # the per-element loss, in the dtype of its inputs
        ...

    adapter = kernel(bce_with_logits, "sigmoid_bce_logits", dtypes=("float32", "float64"))

What the function takes is read from its signature. A parameter named like an input of the variant
(``logits``, ``labels``, ``probs``, ``weights``, ``class_weights``, ``pos_weight``, ...) receives
that array: numpy, in the case dtype (``ml_dtypes.bfloat16`` for bfloat16; class ids int64), a copy
the function may change. A parameter named like an option (``reduction``, ``axis``,
``label_smoothing``, ``ignore_index``, ...) receives its value. A case is the function's to answer
(``apis``) when its dtype is declared, every input it carries is a parameter, and every option not
at its default is a parameter; without an ``axis`` parameter only cases whose class axis is the
last one. ``options={"reduction": ("none", "mean")}`` narrows the values an option parameter takes.

The function returns the loss (for ``log_softmax`` and ``softmax``, the output) as anything
``numpy.asarray`` reads (a JAX array, a detached torch tensor, ...), dtype kept: returning float64
for a float32 case is the verdict ``dtype``. ``grads``, when given, is a function with the same
parameters returning ``{input name: gradient of sum(loss) with respect to it}``; without it only
the value is judged. ``convert`` is applied to every array before the call (``jnp.asarray``,
``torch.from_numpy``). Exceptions are not caught: an exception where the loss is defined is the
verdict ``raised``, and raising (or returning NaN) for an input outside the domain conforms.

A kernel importable by module and name (not defined in ``__main__`` or inside a function) gets
reproducers: the script imports the module (from the folder it was loaded from, when it is not
importable where the script runs) and makes the same call.
"""
from __future__ import annotations

import inspect
import os
import sys

import numpy as np

from cases import DTYPES, VARIANTS, Case

from .base import Adapter, Output

DEFAULT_DTYPES = ("float32", "float64")


class KernelAdapter(Adapter):
    """The `Adapter` of one function for one variant (see the module's documentation); one API,
    named ``module.function``."""

    def __init__(self, fn, variant: str, *, dtypes=DEFAULT_DTYPES, name: str | None = None, grads=None,
                 options: dict | None = None, convert=None, description: str = "", version: str = "",
                 slow: bool = False):
        if not callable(fn):
            raise TypeError(f"kernel: expected a function, got {type(fn).__name__}")
        if variant not in VARIANTS:
            raise ValueError(f"kernel: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
        bad = [d for d in dtypes if d not in DTYPES]
        if bad or not dtypes:
            raise ValueError(f"kernel: unknown dtype(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                             f"expected some of {', '.join(DTYPES)}")
        for what, f in (("grads", grads), ("convert", convert)):
            if f is not None and not callable(f):
                raise TypeError(f"kernel: {what} must be a function, got {type(f).__name__}")
        self.fn, self.variant, self.grads_fn, self.convert = fn, variant, grads, convert
        self.variants, self.dtypes, self.slow = (variant,), dtypes, bool(slow)
        self.name = name or getattr(fn, "__name__", "") or "kernel"
        self.api = _dotted(fn) or self.name
        self.description = description or f"{self.api} for {variant}"
        self.version = version
        spec = VARIANTS[variant]
        self._inputs, self._options = _parameters(fn, spec, self.api)
        self._allowed = {}
        for k, values in (options or {}).items():
            if k not in self._options:
                raise ValueError(f"kernel: options[{k!r}]: {self.api} takes no parameter {k!r} "
                                 f"(options of {variant}: {', '.join(o.name for o in spec.options) or 'none'})")
            self._allowed[k] = tuple(values) if isinstance(values, (list, tuple, set, frozenset)) else (values,)

    def __repr__(self) -> str:
        return f"KernelAdapter({self.name!r}, {self.api}, {self.variant}, dtypes={list(self.dtypes)})"

    def available(self) -> tuple[bool, str]:
        return True, self.version

    def apis(self, case: Case) -> list[str]:
        if case.variant != self.variant or case.dtype not in self.dtypes:
            return []
        if any(name not in self._inputs for name in case.inputs):
            return []
        defaults = case.spec.defaults()
        for k, v in case.options.items():
            if k in self._options:
                if k in self._allowed and v not in self._allowed[k]:
                    return []
            elif k == "axis":
                if case.class_axis != case[case.spec.inputs[0].name].ndim - 1:
                    return []
            elif v != defaults.get(k):
                return []
        return [self.api]

    def _arguments(self, case: Case) -> dict:
        convert = self.convert or (lambda a: a)
        args = {k: convert(np.array(v)) for k, v in case.inputs.items()}
        args.update({k: v for k, v in case.options.items() if k in self._options})
        return args

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"{self.name}: {api!r} cannot express this {case.variant} {case.dtype} case")
        value = to_numpy(self.fn(**self._arguments(case)))
        g = {}
        if grads and self.grads_fn is not None:
            g = {k: to_numpy(v) for k, v in dict(self.grads_fn(**self._arguments(case))).items()
                 if k in case.inputs}
        return Output(value, g)

    def repro(self, case: Case, api: str) -> str | None:
        if api not in self.apis(case):
            return None
        where = [(what, f, _importable(f)) for what, f in (("kernel", self.fn), ("grads_fn", self.grads_fn),
                                                           ("convert", self.convert)) if f is not None]
        if any(found is None for _, _, found in where):
            return None  # defined in __main__ or inside a function: nothing a script could import
        lines = ["import importlib", "import sys", "", "import numpy as np", "",
                 "def _load(module, folder):",
                 "    try:",
                 "        return importlib.import_module(module)",
                 "    except ImportError:  # not importable from here: the folder it came from when this was written",
                 "        sys.path.insert(0, folder)",
                 "        return importlib.import_module(module)", ""]
        for what, _, (module, qualname, folder) in where:
            lines.append(f"{what} = _load({module!r}, {folder!r})." + qualname)
        if case.dtype == "bfloat16":  # the script receives bfloat16 values held in float32
            lines += ["import ml_dtypes", "args = {k: v.astype(ml_dtypes.bfloat16) if v.dtype.kind == 'f' else v "
                      "for k, v in inputs.items()}"]
        else:
            lines.append("args = dict(inputs)")
        if self.convert is not None:
            lines.append("args = {k: convert(v) for k, v in args.items()}")
        args = [f"{i.name}=args[{i.name!r}]" for i in case.spec.inputs if i.name in case.inputs]
        args += [f"{k}={v!r}" for k, v in case.options.items() if k in self._options]
        call = ", ".join(args)
        lines += ["", "def to_numpy(x):",
                  "    x = x.detach().cpu() if hasattr(x, 'detach') else x  # a torch tensor",
                  "    return np.asarray(x)", "",
                  f"value = to_numpy(kernel({call}))"]
        if self.grads_fn is not None:
            lines.append(f"grads = {{k: to_numpy(v) for k, v in dict(grads_fn({call})).items() "
                         f"if k in {sorted(case.inputs)!r}}}")
        else:
            lines.append("grads = {}")
        if case.dtype == "bfloat16":  # numpy holds bfloat16 only through ml_dtypes: say what came back
            lines += ["dtypes = {'value': value.dtype.name, **{k: g.dtype.name for k, g in grads.items()}}",
                      "value = value.astype(np.float32) if value.dtype.name == 'bfloat16' else value",
                      "grads = {k: g.astype(np.float32) if g.dtype.name == 'bfloat16' else g",
                      "         for k, g in grads.items()}"]
        return "\n".join(lines)


def kernel(fn, variant: str, *, dtypes=DEFAULT_DTYPES, name: str | None = None, grads=None,
           options: dict | None = None, convert=None, description: str = "", version: str = "",
           slow: bool = False) -> KernelAdapter:
    """An adapter for the function ``fn`` computing ``variant`` in ``dtypes`` (see the module's
    documentation): ``name`` (default the function's) is how reports name it; ``slow=True`` for a
    kernel that compiles for every new shape (``jax.jit``), so runs give it a quarter of the
    search and shrink budgets; ``version`` is printed next to it."""
    return KernelAdapter(fn, variant, dtypes=dtypes, name=name, grads=grads, options=options, convert=convert,
                         description=description, version=version, slow=slow)


def to_numpy(x) -> np.ndarray:
    """What a kernel returned, as a numpy array with its dtype kept."""
    if hasattr(x, "detach"):  # a torch tensor: off the autograd graph and the device first
        x = x.detach().cpu()
    return np.asarray(x)


def _parameters(fn, spec, what: str) -> tuple[frozenset, frozenset]:
    """(input names, option names) that ``fn`` takes, checked against the variant."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: it takes the required inputs
        return frozenset(i.name for i in spec.inputs if i.required), frozenset()
    inputs = {i.name for i in spec.inputs}
    options = {o.name for o in spec.options}
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return frozenset(inputs), frozenset(options)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [i.name for i in spec.inputs if i.required and i.name not in names]
    if missing:
        raise TypeError(f"kernel: {what} must take the input(s) {', '.join(missing)} of {spec.id} by name "
                        f"(it takes {', '.join(sorted(names)) or 'nothing'})")
    unknown = [p.name for p in params if p.name not in inputs | options and p.default is p.empty
               and p.kind is not p.VAR_POSITIONAL]
    if unknown:
        raise TypeError(f"kernel: {what} requires {', '.join(unknown)}, which {spec.id} does not have "
                        f"(inputs: {', '.join(i.name for i in spec.inputs)}; options: "
                        f"{', '.join(o.name for o in spec.options) or 'none'})")
    return frozenset(names & inputs), frozenset(names & options)


def _dotted(fn) -> str | None:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return f"{module}.{qualname}"


def _importable(obj) -> tuple[str, str, str] | None:
    """(module, qualified name, the module's folder) when ``obj`` is reachable by importing its
    module and following its qualified name; None otherwise."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__" or "<" in qualname:
        return None
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        return None
    path = getattr(sys.modules[module], "__file__", None)
    if not path:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(module.count(".")):  # a package's module: the folder that holds the package
        folder = os.path.dirname(folder)
    return module, qualname, folder
