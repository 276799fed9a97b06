"""symbn: machine-checked derivations of backpropagation through normalization layers.

>>> import symbn
>>> symbn.verify(n=3).ok
True

The public names load their module on first use (PEP 562), so that `symbn --help` and the
command line's usage errors start without importing SymPy, NumPy or FLINT.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> (module, attribute)
_PUBLIC = {
    "BatchNorm": ("model", "BatchNorm"),
    "Report": ("report", "Report"),
    "Result": ("report", "Result"),
    "SymbnError": ("errors", "SymbnError"),
    "check": ("check", "check"),
    "check_impl": ("impl", "check_impl"),
    "lambdify_backward": ("codegen", "lambdify_backward"),
    "load": ("derivation", "load"),
    "verify": ("verify", "verify"),
}
__all__ = ["BatchNorm", "Report", "Result", "SymbnError", "__version__", "check", "check_impl",
           "lambdify_backward", "load", "verify"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'symbn' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Importing the submodule symbn.check binds the name `check` on the package; the
    function of that name takes the place instead, whichever is imported first."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _PUBLIC.get(name, ("",))[0] == name:
            value = getattr(value, _PUBLIC[name][1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
