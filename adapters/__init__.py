"""Adapters by name, imported only when asked for: importing this package imports no framework."""
from __future__ import annotations

import importlib

from .base import Adapter, Contract, Output

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
}


def names() -> list[str]:
    return list(ADAPTERS)


class Unavailable(Adapter):
    """Stands in for an adapter whose module cannot be imported, carrying the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        self.description = "could not be loaded"

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def apis(self, case) -> list[str]:
        return []


def get(name: str) -> Adapter:
    """A new instance of the adapter called ``name`` (an `Unavailable` if its module won't import)."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; known adapters: {', '.join(ADAPTERS)}") from None
    module, cls = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return Unavailable(name, f"{module} does not import: {e}")
    return getattr(mod, cls)()


__all__ = ["ADAPTERS", "Adapter", "Contract", "Output", "get", "names"]
