"""Generated NumPy modules are exactly traceable: `check_impl` runs each shipped model's
generated backward on object arrays of exact scalars and proves every output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from generated import load_module

from symbn import codegen
from symbn.impl.check import check_impl

MODELS = ["batchnorm", "batchnorm-unbiased", "layernorm", "rmsnorm"]
USER = str(Path(__file__).parent / "models" / "gemma-rmsnorm.toml")  # sums of polynomials


def _module(tmp_path, name):
    path = tmp_path / f"{Path(name).stem.replace('-', '_')}_traced.py"
    return load_module(path, codegen.generate("numpy", model=name))


@pytest.mark.parametrize("name", [*MODELS, USER])
def test_generated_backward_is_proved_by_the_exact_trace(tmp_path, name):
    module = _module(tmp_path, name)
    backward = getattr(module, f"{Path(name).stem.replace('-', '_')}_backward")
    report = check_impl(backward, name, n=3, d=2, same_path=False)
    assert report.results and all(r.verdict == "proved" for r in report.results), str(report)
    # its float path reduces by BLAS where the object path sums: another path, so check-impl
    # as a user runs it does not call the float path proved
    report = check_impl(backward, name, n=3, d=2)
    assert all(r.verdict == "consistent" and "which the exact trace never did" in r.note
               for r in report.results), str(report)


@pytest.mark.parametrize("name", MODELS)
def test_float_inputs_still_validated(tmp_path, name):
    module = _module(tmp_path, name)
    backward = getattr(module, f"{name.replace('-', '_')}_backward")
    ints = np.ones((3, 4), dtype=np.int64)
    gamma = np.ones(4)
    with pytest.raises(ValueError, match="use float32 or float64"):
        backward(ints, ints, gamma)
