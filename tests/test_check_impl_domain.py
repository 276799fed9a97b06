"""check-impl on code that is right wherever it is defined but undefined on part of the
inputs (SymPy simplifies (√t)² to t and t/t to 1 while the float code takes √t and divides
by t), on code that is right on exact scalars but not on float64 arrays, and the exact
positivity test behind it (`symbn.impl.domain`).

Every disproof here is re-checked independently: the function is called in plain float64 at
the witness batch and must return a non-finite entry (or, for the float disproofs, a value
far from the 50-digit mpmath derivative).
"""

import random
import re
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from test_check_impl import _point
from test_check_impl import _truth as mp_truth

from symbn.impl import check_impl
from symbn.impl.domain import POS, StrongSigns, _definite, classify, failing_point
from symbn.prove.radicals import NEG, NONNEG, NONPOS

IMPLS = Path(__file__).parent / "impls"
sys.path.insert(0, str(IMPLS))
import undefined as U

sys.path.remove(str(IMPLS))


def _floats(model, n, d, witness):
    dy, x, gamma, eps = _point(model, n, d, witness["point"])
    f = np.vectorize(float)
    return f(dy), f(x), f(gamma), float(eps), (dy, x, gamma, eps)


@pytest.mark.parametrize("function, model, undefined", [
    (U.sqrt_squared, "batchnorm", "dx dgamma"),
    (U.exp_log, "batchnorm", "dx dgamma"),
    (U.pow_half_squared, "batchnorm", "dx dgamma"),
    (U.self_ratio, "batchnorm", "dx"),
    (U.over_gamma, "batchnorm", "dx"),
    (U.two_roots, "batchnorm", "dx dgamma"),
    (U.rms_sqrt_squared, "rmsnorm", "dx dgamma"),
])
def test_undefined_somewhere_is_never_proved(function, model, undefined):
    """The outputs computed through the undefined operation are disproved; the others, which
    never meet it, stay proved, and are right in float64 at the same batch."""
    report = check_impl(function, model, n=3, d=2)
    names = [r.id for r in report.results]
    for name in names:
        r = report[name]
        if name not in undefined.split():
            assert r.verdict == "proved", (name, r)
            continue
        assert r.verdict == "disproved" and r.method == "definedness", (name, r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dy, x, gamma, eps, exact = _floats(model, 3, 2, r.witness)
            out = function(dy, x, gamma, eps)
        truths = mp_truth(model, *exact)
        got = np.asarray(out[names.index(name)], dtype=float)
        assert not np.isfinite(got).all()  # the function really is undefined there
        assert all(np.isfinite(float(t)) for t in np.ravel(truths[name[1:]]))  # not the truth
        for other in set(names) - set(undefined.split()):  # the proved ones are right there
            value = np.asarray(out[names.index(other)], dtype=float)
            want = np.vectorize(float)(truths[other[1:]])
            assert np.allclose(value, want, rtol=1e-12, atol=1e-12), other


def test_a_condition_no_batch_breaks_leaves_its_outputs_unknown():
    report = check_impl(U.circle_ratio, "batchnorm", n=3, d=2)
    r = report["dx"]  # divides by x1^2 + x2^2 - 3, zero on a circle with no rational point
    assert r.verdict == "unknown" and "divides by" in r.note and "undefined.py" in r.note
    assert report["dgamma"].verdict == report["dbeta"].verdict == "proved"


def test_radicand_positive_only_as_a_whole_is_noted():
    report = check_impl(U.moments, "batchnorm", n=3, d=2)
    assert any("only as a whole" in note for note in report.notes)
    plain = check_impl(U.x_first, "batchnorm", n=3, d=2)
    assert not any("only as a whole" in note for note in plain.notes)


def test_zero_to_a_traced_power_is_a_condition():
    report = check_impl(U.zero_power, "batchnorm", n=3, d=2)
    assert report["dx"].verdict != "proved"
    assert report["dgamma"].verdict == "proved"


def test_moments_variance_is_proved_by_the_quadratic_form_test():
    report = check_impl(U.moments, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report.results] == ["proved"] * 3


@pytest.mark.parametrize("function, output", [(U.dtype_branch, "dgamma"), (U.stateful, "dx"),
                                              (U.overflow, "dx")])
def test_float_behaviour_differs_from_the_trace(function, output):
    U._calls[0] = 0
    report = check_impl(function, "batchnorm", n=3, d=2)
    r = report[output]
    assert r.verdict == "disproved" and "float64 arrays give other values" in r.note
    U._calls[0] = 0
    dy, x, gamma, eps, exact = _floats("batchnorm", 3, 2, r.witness)
    U._calls[0] = 5  # any call after the first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overflow's
        got = np.asarray(function(dy, x, gamma, eps)[["dx", "dgamma"].index(output)], float)
    truth = np.vectorize(float)(mp_truth("batchnorm", *exact)[output[1:]])
    assert not np.isfinite(got).all() or np.max(np.abs(got - truth)) > 1e-3


def test_parameters_named_like_the_model_are_taken_by_name():
    report = check_impl(U.x_first, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report.results] == ["proved"] * 3
    assert any("by the names of" in note for note in report.notes)
    given = check_impl(U.x_first, "batchnorm", n=3, d=2,
                       signature="dy, x, gamma, eps -> dx, dgamma, dbeta")  # by position
    assert given["dx"].verdict == "disproved"


def test_right_code_is_not_disproved():
    report = check_impl(U.root_n, "batchnorm", n=3, d=2)
    assert {r.verdict for r in report.results} <= {"proved", "consistent"}, report


def test_right_outputs_from_code_that_writes_into_dy():
    """Each output is judged on the batch it was given; the write itself is reported."""
    report = check_impl(U.in_place, "batchnorm", n=3, d=2)
    verdicts = [r.verdict for r in report.results]
    assert set(verdicts[:3]) <= {"proved", "consistent"} and verdicts[3:] == ["disproved"]
    assert report["inputs"].note.startswith("the function writes into its argument dy:")
    match = re.fullmatch(r"dy\[\d+, \d+\] is (\S+) after the call, (\S+) before",
                         report["inputs"].witness["entry"])
    assert match and float(match[1]) != float(match[2])
    dy = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]])  # independently: it writes dy
    kept = dy.copy()
    U.in_place(dy, np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5]]), np.array([2.0, 3.0]), 0.5)
    assert not np.array_equal(dy, kept)
    assert report.exit_code == 1


@pytest.mark.parametrize("function", [U.nan_dbeta, U.complex_dbeta])
def test_non_finite_and_complex_outputs_are_disproved(function):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning from symbn's own conversion
        report = check_impl(function, "batchnorm", n=3, d=2)
    assert report["dbeta"].verdict == "disproved"
    assert report["dx"].verdict in ("proved", "consistent")


def test_float16_outputs_are_not_consistent():
    report = check_impl(U.half_off, "batchnorm", n=3, d=2)
    assert "consistent" not in {r.verdict for r in report.results}
    assert "proved" not in {r.verdict for r in report.results}


def test_cli_nan_output_exits_1_without_traceback():
    out = subprocess.run([sys.executable, "-m", "symbn", "check-impl",
                          f"{IMPLS / 'undefined.py'}:nan_dbeta"], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
    assert "dbeta   disproved" in out.stdout


# -- the positivity test --------------------------------------------------------------------
def test_definite_against_gram_matrices():
    rng = random.Random(5)
    for _ in range(200):
        n, r = rng.randint(1, 5), rng.randint(1, 5)
        B = [[Fraction(rng.randint(-3, 3), rng.randint(1, 3)) for _ in range(n)] for _ in range(r)]
        G = [[sum(B[k][i] * B[k][j] for k in range(r)) for j in range(n)] for i in range(n)]
        rank = sp.Matrix(G).rank()
        assert _definite(G) == (POS if rank == n else NONNEG)
        i = rng.randrange(n)  # pushing a diagonal entry below its minimal value breaks it
        bad = [row[:] for row in G]
        bad[i][i] -= 1 + sum(abs(v) for row in G for v in row)
        assert _definite(bad) is None


def test_strong_signs():
    a, b, c, eps = sp.symbols("a b c eps")
    signs = StrongSigns({eps})
    mean = (a + b + c) / 3
    assert signs.sign((a * a + b * b + c * c) / 3 - mean**2 + eps) == POS
    assert signs.sign((a * a + b * b + c * c) / 3 - mean**2) == NONNEG
    assert signs.sign(a * b + eps) is None  # indefinite
    assert signs.sign(sp.sqrt((a * a + b * b) / 2 - ((a + b) / 2) ** 2 + eps)) == POS


def test_quadratic_sign_against_sampling():
    """Every sign the quadratic-form test claims holds at 200 random rational points, and
    a sum of squares plus a positive multiple of eps is always found positive."""
    rng = random.Random(11)
    z = sp.symbols("z0:4")
    eps = sp.Symbol("eps")
    from symbn.impl.domain import _quadratic_sign
    found = 0
    for _ in range(150):
        squares = sum(rng.randint(0, 2) * sum(rng.randint(-2, 2) * v for v in z[:3]) ** 2
                      for _ in range(3))
        noise = rng.choice([0, 0, rng.randint(-2, 2) * z[0] * z[1], rng.randint(-1, 1)])
        e = sp.expand(squares + noise + rng.randint(0, 2) * eps + rng.randint(0, 1))
        if not e.is_Add:
            continue
        sign = _quadratic_sign(e, {eps})
        if noise == 0 and e.coeff(eps) > 0 and squares != 0:
            assert sign == POS, e
        if sign is None:
            continue
        found += 1
        f = sp.lambdify([*z, eps], e, "sympy")
        for _ in range(200):
            pt = [sp.Rational(rng.randint(-40, 40), rng.randint(1, 9)) for _ in z]
            value = f(*pt, sp.Rational(rng.randint(1, 40), rng.randint(1, 40)))
            holds = {POS: value > 0, NONNEG: value >= 0, NEG: value < 0, NONPOS: value <= 0}
            assert holds[sign], (e, sign, pt)
    assert found > 50


def test_failing_points_are_exact_and_fail():
    a, b, eps = sp.symbols("a b eps", real=True)
    for kind, e in [("nonzero", a - (a + b) / 2), ("nonneg", a - b - 1), ("positive", a * b)]:
        p = failing_point(kind, e, [a, b, eps], {eps})
        value = e.xreplace({s: sp.Rational(v.numerator, v.denominator) for s, v in p.items()})
        assert {"nonzero": value == 0, "nonneg": value < 0, "positive": value <= 0}[kind]
        assert all(v.denominator & (v.denominator - 1) == 0 for v in p.values())  # dyadic
        assert p[eps] > 0
    assert classify({("nonzero", a**2 + eps): ""}, {eps}) == ([], [])
