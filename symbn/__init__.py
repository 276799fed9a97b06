"""symbn: machine-checked derivations of backpropagation through BatchNorm.

>>> import symbn
>>> symbn.verify(n=3).ok
True
"""

import importlib

from .errors import SymbnError

__version__ = "0.1.0"

# Loaded on first use, so that `symbn --help` does not pay for importing SymPy.
_EXPORTS = {"BatchNorm": "model", "Report": "report", "Result": "report", "check": "check",
            "lambdify_backward": "codegen", "load": "derivation", "verify": "verify"}

__all__ = ["BatchNorm", "Report", "Result", "SymbnError", "check", "lambdify_backward", "load",
           "verify", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'symbn' has no attribute {name!r}")
