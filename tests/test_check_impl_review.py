"""check-impl on the cases of a review: branches on special values, parameter names,
values where the code's own division is undefined, huge entries, torch inside NumPy code.
Every disproof's batch is re-run and compared with an independent 50-digit reference."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generated import load_module
from test_check_impl import _truth as mp_truth
from test_check_impl_domain import _floats

from symbn import codegen
from symbn.errors import SymbnError
from symbn.impl import check_impl

IMPLS = Path(__file__).parent / "impls"
sys.path.insert(0, str(IMPLS))
import guards as G


def _rerun(function, output: str, witness: dict) -> float:
    """The largest |function - reference| of `output` at a disproof's batch."""
    dy, x, gamma, eps, exact = _floats("batchnorm", 3, 2, witness)
    with np.errstate(all="ignore"):
        got = np.asarray(function(dy, x, gamma, eps)[["dx", "dgamma", "dbeta"].index(output)],
                         float)
    truth = np.vectorize(float)(mp_truth("batchnorm", *exact)[output[1:]])
    return float(np.max(np.abs(got - truth)))


@pytest.mark.parametrize("function,output", [
    (G.gamma_one_fast_path, "dx"), (G.dgamma_zero_where_gamma_zero, "dgamma"),
    (G.constant_column_guard, "dx"), (G.sparse_dy_path, "dx")])
def test_a_branch_on_a_special_value_is_disproved(function, output):
    report = check_impl(function, "batchnorm", n=3, d=2)
    r = report[output]
    assert r.verdict == "disproved", report
    assert _rerun(function, output, r.witness) > 1e-3
    right = [x for x in ("dx", "dgamma", "dbeta") if x != output]
    assert {report[x].verdict for x in right} <= {"consistent", "proved"}


@pytest.mark.parametrize("function", [G.with_beta, G.x_first_with_bias])
def test_parameters_named_beta_or_bias_are_not_given_eps(function):
    report = check_impl(function, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report.results] == ["proved"] * 3, report
    assert "beta" in report.info["signature"]


def test_parameters_that_cannot_be_placed_ask_for_a_signature():
    with pytest.raises(SymbnError, match="'foo' is not a name of the model.*give --signature"):
        check_impl(G.unplaceable, "batchnorm", n=3, d=2)
    given = check_impl(G.unplaceable, "batchnorm", n=3, d=2,
                       signature="x, dy, gamma, beta, eps -> dx, dgamma, dbeta")
    assert [r.verdict for r in given.results] == ["proved"] * 3


def test_a_finite_wrong_value_where_the_code_divides_by_zero_is_disproved():
    report = check_impl(G.dgamma_nan_to_num, "batchnorm", n=3, d=2)
    r = report["dgamma"]
    assert r.verdict == "disproved" and "returns a finite value there" in r.note, report
    assert _rerun(G.dgamma_nan_to_num, "dgamma", r.witness) > 1e-3
    assert report["dx"].verdict == report["dbeta"].verdict == "proved"


def test_an_entry_beyond_float64_is_a_wrong_entry():
    report = check_impl(G.huge_dbeta, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report.results] == ["proved", "proved", "disproved"], report


def test_torch_inside_numpy_code_is_called_with_numpy_arrays():
    torch_impls = pytest.importorskip("torch_impls")
    report = check_impl(torch_impls.ln_through_torch_from_numpy, "layernorm", n=3, d=2)
    assert [r.verdict for r in report.results] == ["consistent"] * 3, report
    assert any(n.startswith("called with NumPy arrays: with torch tensors") for n in report.notes)


def test_a_long_bad_entry_is_clipped_in_the_one_line_error():
    run = subprocess.run([sys.executable, "-m", "symbn", "check-impl",
                          f"{IMPLS / 'guards.py'}:returns_strings"], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 2 and "expected numbers" in run.stderr
    assert len(run.stderr) < 300 and len(run.stderr.strip().splitlines()) == 1


def test_a_call_that_does_not_fit_the_parameters_says_how_it_was_called():
    with pytest.raises(SymbnError, match=r"missing 1 required positional argument: 'extra'.*"
                                         r"called as needs_extra\(dy, x, gamma, eps\): give "
                                         "--signature"):
        check_impl(G.needs_extra, "batchnorm", n=3, d=2)


def test_special_points_where_a_user_models_derivative_is_undefined_are_passed_over():
    """tempered.toml divides by its constant leaf c: the point with c = 0 says nothing."""
    model = Path(__file__).parent / "models" / "tempered.toml"
    with np.errstate(all="ignore"):
        report = check_impl(G.tempered_through_a_buffer, str(model), n=3, d=2,
                            signature="dy, x, c -> dx, dc")
    assert [r.verdict for r in report.results] == ["consistent"] * 2, report
    assert report["dx"].note.startswith("9 points, 54 comparisons")  # c = 0 passed over


def test_a_failure_at_a_special_point_is_never_passed_over():
    """gamma = 0 is a legal input where the derivative exists: returning None or raising
    there is no proof and no consistency."""
    report = check_impl(G.none_where_gamma_is_zero, "batchnorm", n=3, d=2)
    assert {r.verdict for r in report.results} == {"unknown"}, report
    with pytest.raises(SymbnError, match="ZeroDivisionError"):
        check_impl(G.python_floats_divide_by_gamma, "batchnorm", n=3, d=2)


def test_a_division_where_the_layer_itself_divides_is_no_objection(tmp_path):
    """tempered.toml divides by c: code dividing by c or c**2 is proved (noted); code that
    divides by x, which the layer never does, is not."""
    model = str(Path(__file__).parent / "models" / "tempered.toml")
    sig = "dy, x, c -> dx, dc"
    report = check_impl(G.tempered, model, n=3, d=2, signature=sig)
    assert [r.verdict for r in report.results] == ["proved"] * 2, report
    assert sum("0 only where the layer itself divides by 0" in n for n in report.notes) == 2
    other = check_impl(G.tempered_divides_by_x, model, n=3, d=2, signature=sig)
    assert other["dx"].verdict != "proved" and other["dc"].verdict == "proved", other
    path = tmp_path / "tempered_grad.py"  # the generated module is no longer refused
    codegen.write(codegen.generate("numpy", model=model), str(path))
    m = load_module(path)
    rng = np.random.default_rng(11)
    X, dY = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert np.allclose(m.tempered_backward(dY, X, 0.75), dY / 0.75)
