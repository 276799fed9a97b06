"""Every docstring example in the package runs and prints what it shows.

The modules are imported by name, so the examples run against the installed symbn (the one
the command line uses), not a second copy collected from the source tree.
"""

import doctest
import importlib
import pkgutil

import pytest

import symbn

MODULES = sorted(m.name for m in pkgutil.walk_packages(symbn.__path__, "symbn.")
                 if m.name not in ("symbn.__main__",))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
