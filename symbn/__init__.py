"""symbn: machine-checked derivations of backpropagation through BatchNorm."""

from .errors import SymbnError
from .model import BatchNorm
from .report import Report, Result
from .verify import verify

__version__ = "0.1.0"
__all__ = ["BatchNorm", "Report", "Result", "SymbnError", "verify", "__version__"]
