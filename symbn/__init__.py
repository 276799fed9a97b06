"""symbn: machine-checked derivations of backpropagation through BatchNorm.

>>> import symbn
>>> symbn.verify(n=3).ok
True
"""

from .check import check
from .codegen import lambdify_backward
from .derivation import load
from .errors import SymbnError
from .model import BatchNorm
from .report import Report, Result
from .verify import verify

__version__ = "0.1.0"
__all__ = ["BatchNorm", "Report", "Result", "SymbnError", "__version__", "check",
           "lambdify_backward", "load", "verify"]
