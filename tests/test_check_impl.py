"""symbn.impl.check_impl and symbn.testing.assert_backward on hand-written backward functions.

Every disproof's witness is re-checked independently: the user's function is called again in
plain float64 at the witness batch and compared with a 50-digit mpmath evaluation of the
closed form written here by hand; the two must differ far beyond rounding.
"""

import sys
import warnings
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
from generated import load_module

from symbn.errors import SymbnError
from symbn.impl import (
    Exact,
    LeftExact,
    check_impl,
    exact_number,
    load_function,
    parse_signature,
)
from symbn.models import load
from symbn.testing import assert_backward

IMPLS = Path(__file__).parent / "impls"
sys.path.insert(0, str(IMPLS))
import bad
import bn_right
import bn_wrong
import rows

sys.path.remove(str(IMPLS))

LN_SIG = "dy, x, w, eps -> dx, dw, db"
DX = "dy, x, gamma, eps -> dx"

# (function, model, n, d, signature, {output: verdict})
CASES = [
    (bn_right.batchnorm_backward, "batchnorm", 3, 2, None, "ppp"),
    (bn_right.batchnorm_backward_staged, "batchnorm", 3, 2, None, "ppp"),
    (bn_right.batchnorm_backward_loops, "batchnorm", 3, 2, None, "ppp"),
    (bn_right.batchnorm_backward_einsum, "batchnorm", 3, 2, None, "ppp"),
    (bn_right.batchnorm_backward, "batchnorm", 4, 3, None, "ppp"),
    (bn_wrong.diagonal_only, "batchnorm", 3, 2, DX, "d"),
    (bn_wrong.sigma_for_inverse, "batchnorm", 3, 2, DX, "d"),
    (bn_wrong.ddof1_forward, "batchnorm", 3, 2, None, "ddp"),
    (bn_wrong.ddof1_forward, "batchnorm-unbiased", 3, 2, None, "dpp"),
    (bn_wrong.right_only_at_n2, "batchnorm", 2, 2, None, "dpp"),  # at the second shape
    (bn_wrong.right_only_at_n2, "batchnorm", 3, 2, None, "dpp"),
    (bn_wrong.dbeta_wrong, "batchnorm", 3, 2, None, "ppd"),
    (rows.layernorm_backward, "layernorm", 3, 2, LN_SIG, "ppp"),
    (rows.layernorm_scale_shape0, "layernorm", 3, 2, LN_SIG, "dpp"),
    (rows.layernorm_dgamma_wrong_axis, "layernorm", 3, 3, LN_SIG, "pdp"),
    (rows.rmsnorm_backward, "rmsnorm", 3, 2, None, "pp"),
    (rows.rmsnorm_gamma_wrong_factor, "rmsnorm", 3, 2, None, "dp"),
]
VERDICT = {"p": "proved", "d": "disproved", "u": "unknown"}


@pytest.mark.parametrize("function, model, n, d, signature, expected", CASES,
                         ids=[f"{c[0].__name__}-{c[1]}-n{c[2]}d{c[3]}" for c in CASES])
def test_verdicts_and_witnesses(function, model, n, d, signature, expected):
    report = check_impl(function, model, n=n, d=d, signature=signature)
    got = "".join(r.verdict[0] for r in report)
    assert got == expected, f"{function.__name__} on {model}:\n{report}"
    for r in report:
        if r.verdict == "disproved":
            _recheck(function, model, n, d, r)


# -- the independent re-check of a witness ---------------------------------------------------
def _point(model, n, d, point):
    """Fractions in the model's layout from the witness point {"x[2,1]": "3/4", ...}."""
    rows_last = load(model).axis != 0
    shape = (d, n) if rows_last else (n, d)
    x = np.empty(shape, dtype=object)
    dy = np.empty(shape, dtype=object)
    along = load(model).leaves.get("gamma") == "along"
    gamma = np.empty(n if along else d, dtype=object)
    for key, value in point.items():
        name, _, inside = key.partition("[")
        q = Fraction(value)
        if not inside:
            if name == "eps":
                eps = q
            continue
        idx = [int(k) - 1 for k in inside.rstrip("]").split(",")]
        if name in ("x", "dy"):
            i, c = idx
            (x if name == "x" else dy)[(c, i) if rows_last else (i, c)] = q
        elif name == "gamma":
            gamma[idx[0]] = q
    return dy, x, gamma, eps


def _truth(model, dy, x, gamma, eps):
    """df/dx, df/dgamma, df/dbeta with mpmath at 50 digits, written from the formulas."""
    mpmath.mp.dps = 50
    mp = np.vectorize(lambda q: mpmath.mpf(q.numerator) / q.denominator, otypes=[object])
    dy, x, gamma, eps = mp(dy), mp(x), mp(gamma), mpmath.mpf(eps.numerator) / eps.denominator
    if load(model).axis == 0:  # columns are sets
        n = x.shape[0]
        ddof = 1 if model == "batchnorm-unbiased" else 0
        mu = x.sum(axis=0) / n
        v = ((x - mu) ** 2).sum(axis=0) / (n - ddof)
        s = np.array([mpmath.sqrt(t + eps) for t in v])
        xhat = (x - mu) / s
        dx = gamma / s * (dy - dy.sum(axis=0) / n
                          - (x - mu) / s**2 * ((x - mu) * dy).sum(axis=0) / (n - ddof))
        return {"x": dx, "gamma": (dy * xhat).sum(axis=0), "beta": dy.sum(axis=0)}
    n = x.shape[1]
    g = dy * gamma
    if model == "rmsnorm":
        s = np.array([[mpmath.sqrt(t + eps)] for t in (x * x).sum(axis=1) / n])
        dx = g / s - x / s**3 * (g * x).sum(axis=1, keepdims=True) / n
        return {"x": dx, "gamma": (dy * x / s).sum(axis=0)}
    mu = x.sum(axis=1, keepdims=True) / n
    s = np.array([[mpmath.sqrt(t + eps)] for t in ((x - mu) ** 2).sum(axis=1) / n])
    xhat = (x - mu) / s
    dx = (g - g.sum(axis=1, keepdims=True) / n - xhat * (g * xhat).sum(axis=1, keepdims=True) / n) / s
    return {"x": dx, "gamma": (dy * xhat).sum(axis=0), "beta": dy.sum(axis=0)}


def _recheck(function, model, n, d, result):
    w = result.witness
    n, d = w.get("n", n), w.get("d", d)  # a disproof at the second shape says which
    dy, x, gamma, eps = _point(model, n, d, w["point"])
    fl = np.vectorize(float, otypes=[float])
    sig = parse_signature(None, load(model))
    out = function(fl(dy), fl(x), fl(gamma), float(eps))
    out = out if isinstance(out, tuple) else (out,)
    leaf = result.id[1:]
    got = np.asarray(out[sig.outputs.index(leaf)], dtype=float)
    true = _truth(model, dy, x, gamma, eps)[leaf]
    index = tuple(int(k) for k in w["entry"].partition("[")[2].rstrip("]").split(",") if k)
    a, b = float(got[index]), true[index]
    gap = abs(mpmath.mpf(a) - b)
    assert gap > 1e-6 * (1 + abs(b)), f"{w['entry']}: float64 {a} vs exact {b}: no real gap"
    # and the table is code: it runs, and its expected value is the mpmath one
    scope: dict = {}
    exec(w["table"], scope)  # noqa: S102 - symbn's own table, pasted as a user would
    expected = next(v for k, v in scope.items() if k.startswith("expected_"))
    assert abs(float(np.asarray(expected, dtype=float)[index]) - float(b)) < 1e-9


# -- rounding of computed floats, exact floats ----------------------------------------------
def test_a_rounded_float_is_not_a_disproof():
    # 1.0/shape[-1] is 1.0/3: right but for the rounding of 1/3 -> route 2
    report = check_impl(rows.layernorm_scale_last, "layernorm", n=3, d=3, signature=LN_SIG)
    assert report["dx"].verdict == "consistent" and "rounding" in report["dx"].note
    assert [r.verdict for r in report][1:] == ["proved", "proved"] and report.exit_code == 3


def test_right_only_where_the_batch_equals_the_row_is_disproved_at_the_second_shape():
    # 1.0/shape[0] at D = N = 3 is the right 1/3; at N = 4, D = 6 it is 1/6
    report = check_impl(rows.layernorm_scale_shape0, "layernorm", n=3, d=3, signature=LN_SIG)
    dx = report["dx"]
    assert dx.verdict == "disproved" and "wrong at N = 4, D = 6" in dx.note, str(report)
    assert [r.verdict for r in report][1:] == ["proved", "proved"] and report.exit_code == 1
    point = {k: float(Fraction(v)) for k, v in dx.witness["point"].items()}
    dy, x = (np.array([[point[f"{a}[{j},{i}]"] for j in range(1, 5)] for i in range(1, 7)])
             for a in ("dy", "x"))  # element j of set i: 6 rows of 4
    w = np.array([point[f"gamma[{j}]"] for j in range(1, 5)])
    got = rows.layernorm_scale_shape0(dy, x, w, point["eps"])[0]
    right = rows.layernorm_backward(dy, x, w, point["eps"])[0]
    assert np.max(np.abs(got - right)) > 1e-3


@pytest.mark.parametrize("impl", ["layernorm_one_minus", "layernorm_one_minus_nested",
                                  "layernorm_one_minus_denest"])
def test_a_float_rounded_twice_is_not_a_disproof(impl):
    # 1 - 1.0/3 is not the float nearest 2/3; with it read as 2/3 the re-run proves the first
    # two and cannot decide the third (a nested root): all go to route 2, never disproved
    report = check_impl(getattr(rows, impl), "layernorm", n=3, d=2, signature=LN_SIG)
    assert report["dx"].verdict == "consistent" and "2/3" in report["dx"].note, str(report)
    read = "not disproved" if impl.endswith("denest") else "proved"
    assert f"read as those rationals it is {read})" in report["dx"].note, report["dx"].note
    wrong = check_impl(rows.layernorm_one_minus_bessel, "layernorm", n=3, d=2,
                       signature=LN_SIG)
    assert wrong["dx"].verdict == "disproved" and wrong.exit_code == 1
    _recheck(rows.layernorm_one_minus_bessel, "layernorm", 3, 2, wrong["dx"])


def test_a_disproof_with_a_rounded_float_shows_a_batch_off_by_more_than_rounding():
    # wrong however 1 - 1.0/3 is read: the batch shown is the re-run's, where float64 is off
    report = check_impl(rows.layernorm_diagonal_one_minus, "layernorm", n=3, d=2,
                        signature=LN_SIG)
    assert report["dx"].verdict == "disproved" and "2/3" in report["dx"].note
    # by the exact re-run (the leaves' positive eps mapped back), not by float64
    assert report["dx"].method.startswith("exact") and "float64" not in report["dx"].method
    assert "the batch is the second trace's" in report["dx"].note
    _recheck(rows.layernorm_diagonal_one_minus, "layernorm", 3, 2, report["dx"])
    diagonal = check_impl(bn_wrong.diagonal_only, signature="dy, x, gamma, eps -> dx")["dx"]
    assert diagonal.verdict == "disproved" and "float64" not in diagonal.method
    assert "/" in diagonal.witness["implementation"]  # an exact rational, not a float
    _recheck(bn_wrong.diagonal_only, "batchnorm", 3, 2, diagonal)


def test_floats_convert_exactly():
    assert exact_number(1e-5) == Fraction(1e-5) != Fraction(1, 100000)
    a = Exact(exact_number(2))
    assert (a ** 0.5).e == exact_number(2) ** exact_number(0.5)
    with pytest.raises(LeftExact, match="float"):
        float(a)
    with pytest.raises(LeftExact, match="comparison"):
        _ = a < 1
    with pytest.raises(LeftExact, match="truth value"):
        bool(a)


def test_float_buffer_and_branch_go_to_route_2_with_where():
    for f, what in ((bn_wrong.float_buffer, "float()"), (bn_wrong.clipped, "comparison")):
        report = check_impl(f)
        assert [r.verdict for r in report] == ["consistent"] * 3
        assert report.info["route"] == "float64 at exact points" and report.exit_code == 3
        note = " ".join(report.notes)
        assert what in note and "bn_wrong.py:" in note and f.__name__ in note, note


def test_numpy_operations_on_exact_arrays():
    import sympy as sp

    s = [sp.Symbol(f"a{i}") for i in range(6)]
    a = np.array([Exact(t) for t in s], dtype=object).reshape(3, 2)
    assert str(np.mean(a, axis=0)[0].e) == str((s[0] + s[2] + s[4]) / 3)
    assert (a @ np.ones(2))[0].e == s[0] + s[1]
    assert np.einsum("ij,ij->j", a, a)[1].e == s[1]**2 + s[3]**2 + s[5]**2
    b = a.copy()
    b += 1
    assert b[2, 1].e == s[5] + 1 and (a - a.mean(axis=0)).shape == (3, 2)
    assert np.sqrt(a)[0, 0].e == sp.sqrt(s[0]) and np.var(a, axis=0).shape == (2,)


# -- misbehaving functions -------------------------------------------------------------------
@pytest.mark.parametrize("function, message", [
    (bad.raises, "raises raised RuntimeError: not implemented yet at .*bad.py:"),
    (bad.returns_none, "returns_none returned None; .* expects 3 outputs"),
    (bad.returns_short_list, "returned list of 2; .* expects 3 outputs"),
    (bad.wrong_shape, r"returned dx of shape \(2, 3\); expected \(3, 2\)"),
    (bad.sleeps, "did not return within the budget of 1 s"),
])
def test_bad_functions_are_one_line_errors(function, message):
    with pytest.raises(SymbnError, match=message) as err:
        check_impl(function, timeout=1)
    assert "\n" not in str(err.value)


def test_wrong_axis_shape_is_an_error_when_d_differs():
    with pytest.raises(SymbnError, match=r"dgamma of shape \(2,\); expected \(3,\)"):
        check_impl(rows.layernorm_dgamma_wrong_axis, "layernorm", signature=LN_SIG)


def test_printing_is_allowed_and_captured(capsys):
    report = check_impl(bad.prints)
    assert report.ok and "prints printed 2 lines (captured)" in report.notes
    assert capsys.readouterr().out == ""


# -- signatures ------------------------------------------------------------------------------
@pytest.mark.parametrize("model, text, inputs, outputs", [
    ("batchnorm", None, "dy x gamma eps", "x gamma beta"),
    ("rmsnorm", None, "dy x gamma eps", "x gamma"),
    ("batchnorm-unbiased", None, "dy x gamma eps", "x gamma beta"),
    ("layernorm", "dy, x, w, eps -> dx, dw, db", "dy x gamma eps", "x gamma beta"),
    ("layernorm", "x, dy, eps, gamma -> dgamma, dx", "x dy eps gamma", "gamma x"),
    ("batchnorm", "g, inp, scale, e -> dx", "dy x gamma eps", "x"),
    ("batchnorm", "dy, x, gamma, eps", "dy x gamma eps", "x gamma beta"),
    ("batchnorm", "dy, x, gamma, eps -> dx, dgamma, dbeta, deps", "dy x gamma eps",
     "x gamma beta eps"),
])
def test_signatures(model, text, inputs, outputs):
    s = parse_signature(text, load(model))
    assert (" ".join(s.inputs), " ".join(s.outputs)) == (inputs, outputs)


@pytest.mark.parametrize("text, message", [
    ("dy, x, w, b, eps -> dx", "'b' is ambiguous"),
    ("dy, x -> dx", "no argument for gamma, eps"),
    ("dy, x, gamma, eps -> dx, dx", "repeated"),
    ("dy, x, gamma, eps -> dx, q, r, s", "'s' .*no output at that position"),
    ("dy, x, gamma, eps -> ", "no outputs"),
    ("dy, 2x, gamma, eps -> dx", "not a name"),
    ("a -> b -> c", "more than one"),
])
def test_bad_signatures(text, message):
    with pytest.raises(SymbnError, match=message):
        parse_signature(text, load("batchnorm"))


# -- loading, the one-liner ------------------------------------------------------------------
def test_load_function(tmp_path):
    f = load_function(f"{IMPLS / 'bn_right.py'}:batchnorm_backward")
    assert check_impl(f).ok
    with pytest.raises(SymbnError, match="no such file"):
        load_function(f"{tmp_path / 'nope.py'}:f")
    with pytest.raises(SymbnError, match="no function 'nope'; functions there: .*batchnorm"):
        load_function(f"{IMPLS / 'bn_right.py'}:nope")
    (tmp_path / "broken.py").write_text("raise ImportError('no torch here')\n")
    with pytest.raises(SymbnError, match="importing it raised ImportError: no torch here"):
        load_function(f"{tmp_path / 'broken.py'}:f")


def test_assert_backward():
    assert_backward(rows.layernorm_backward, model="layernorm", signature=LN_SIG)
    with pytest.raises(AssertionError, match=r"(?s)disproved.*expected_dx = np.array"):
        assert_backward(bn_wrong.diagonal_only, signature=DX)


# -- symbn's own generated modules -----------------------------------------------------------
@pytest.mark.parametrize("n, verdicts", [(4, "ppp"), (3, "ccp")])
def test_generated_unrolled_formulas(tmp_path, n, verdicts):
    # the unrolled module writes 1/N as the float literal (1/3): exact when N is a power of
    # two (proved); at N = 3 the rounding of 1/3 is all that separates it: never disproved
    # by the trace, decided in floating point (route 2): consistent
    from symbn.codegen import generate

    mod = load_module(tmp_path / f"gen_unrolled{n}.py", generate("numpy", n=n, unrolled=True))

    def backward(dy, x, gamma, eps):  # the unrolled scalar formulas, one column
        args = (*x[:, 0], *dy[:, 0], gamma[0], eps)
        return (np.array(mod.dx(*args), dtype=object).reshape(n, 1),
                np.array([mod.dgamma(*args)]), np.array([mod.dbeta(*args)]))
    report = check_impl(backward, n=n, d=1)
    assert "".join(r.verdict[0] for r in report) == verdicts, str(report)


@pytest.mark.parametrize("function, n, dx, warned", [
    (rows.layernorm_power_of_zero, 1, "consistent", "divide by zero encountered in power"),
    (rows.layernorm_imaginary_zero, 3, "disproved", "invalid value encountered in sqrt"),
    (rows.layernorm_complex_cube_root, 3, "consistent", None),
])
def test_values_outside_the_finite_reals_leave_the_exact_trace(function, n, dx, warned):
    """0**-2 (zoo), sqrt of a negative (I) and SymPy's complex cube root of a negative follow
    rules float code does not (1/zoo = 0, I**2 = -1): the trace stops there and the code is
    run in floats, which never proves; dx is what the floats show (nan is off).  NumPy's
    warnings in the float runs are notes of the report, not warnings of the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_impl(function, "layernorm", n=n, d=2, signature=LN_SIG)
    assert report.info["route"] == "float64 at exact points"
    notes = " ".join(report.notes)
    assert "not a finite real" in notes and function.__name__ in notes
    said = f"{function.__name__} warned at the float points: "
    assert (f"{said}{warned} at {rows.__file__}:" in notes) if warned else said not in notes
    assert [r.verdict for r in report] == [dx, "consistent", "consistent"]
    if dx == "disproved":  # the witness, re-run: the float code returns nan there
        w = report[0].witness
        dy, x, gamma, eps = _point("layernorm", n, 2, w["point"])
        fl = np.vectorize(float, otypes=[float])
        with pytest.warns(RuntimeWarning, match=warned):
            got = function(fl(dy), fl(x), fl(gamma), float(eps))[0]
        index = tuple(int(k) for k in w["entry"].partition("[")[2].rstrip("]").split(","))
        assert np.isnan(got[index])
    for undefined in (lambda: Exact(sp.Integer(0)) ** -1, lambda: np.log(Exact(sp.Integer(0))),
                      lambda: np.sqrt(-Exact(sp.Symbol("e", positive=True)))):
        with pytest.raises(LeftExact, match="not a finite real"):
            undefined()
