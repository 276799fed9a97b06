"""Loading the user's backward function from `path.py:name` (which runs their file).

>>> load_function("no-colon")
Traceback (most recent call last):
...
symbn.errors.SymbnError: 'no-colon': give PATH.py:FUNCTION, such as mybn.py:batchnorm_backward
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import SymbnError


def load_function(spec: str) -> Callable:
    """The function `path.py:name` names.  This imports (runs) the user's file: it is their
    own code, run like a test.  Derivation and model files are never executed.

    >>> load_function("missing.py:f")
    Traceback (most recent call last):
    ...
    symbn.errors.SymbnError: missing.py: no such file; give PATH.py:FUNCTION
    """
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise SymbnError(f"{spec!r}: give PATH.py:FUNCTION, such as mybn.py:batchnorm_backward")
    path = Path(path_text)
    if not path.is_file():
        raise SymbnError(f"{path_text}: no such file; give PATH.py:FUNCTION")
    module_name = "symbn_user_" + re.sub(r"\W", "_", path.stem)
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise SymbnError(f"{path_text}: cannot be imported as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec_obj)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the user's file may import its neighbours
    try:
        spec_obj.loader.exec_module(module)
    except KeyboardInterrupt:  # Ctrl-C, or the code raising it: an interrupt either way
        raise
    except BaseException as err:  # noqa: BLE001 - the user's module may raise anything
        raise SymbnError(f"{path_text}: importing it raised {type(err).__name__}: "
                         f"{_one_line(err)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    function = getattr(module, name, None)
    if not callable(function):
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        raise SymbnError(f"{path_text}: no function {name!r}; functions there: "
                         f"{', '.join(found) or 'none'}")
    return function


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."

