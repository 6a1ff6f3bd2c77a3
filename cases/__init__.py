"""Cases: the inputs of an audit, exact and serialisable."""
from .dtypes import DTYPES, FORMATS, FloatFormat, dtype_name, fmt
from .model import Case, CaseError
from .variants import REDUCTIONS, VARIANTS, VariantSpec, variant

__all__ = ["Case", "CaseError", "DTYPES", "FORMATS", "FloatFormat", "REDUCTIONS", "VARIANTS",
           "VariantSpec", "dtype_name", "fmt", "variant"]
