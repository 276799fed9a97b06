"""verify(): the note's results for concrete N, soundness on wrong closed forms, and oracles
that share no code with the prover (exact node values computed here; mpmath differences)."""

from fractions import Fraction

import mpmath
import pytest
import sympy as sp

import symbn
from symbn import closed_form
from symbn.differentiate import backward_gradient, forward_gradient, paths
from symbn.model import BatchNorm
from symbn.prove import DISPROVED, PROVED, Algebra


@pytest.mark.parametrize("n", range(1, 7))
def test_verify_proves_both_modes(n):
    report = symbn.verify(n=n)
    assert report.ok and report.exit_code == 0
    verdicts = {r.id: r.verdict for r in report}
    for cid in ("forward/dx", "backward/dx", "forward=backward/dx", "forward/dgamma",
                "backward/dgamma", "forward/dbeta", "backward/dbeta", "backward/dv-dmu"):
        assert verdicts[cid] == PROVED, cid


def test_verify_matrix_form_and_column_independence():
    report = symbn.verify(n=3, d=2)
    assert report.ok
    for cid in ("columns/independent", "matrix/dX", "matrix/dgamma", "matrix/dbeta"):
        assert report[cid].verdict == PROVED, cid
    assert report["columns/independent"].note == "18 instances"  # N^2 D (D-1) pairs


def test_row_symmetry_agrees_with_every_pair():
    symmetric = symbn.verify(n=4, all_pairs=False)
    exhaustive = symbn.verify(n=4, all_pairs=True)
    assert symmetric.ok and exhaustive.ok
    assert "closed/dx-linear" in {r.id for r in symmetric}
    assert any("exchangeable" in note for note in symmetric.notes)
    assert exhaustive["forward/dx"].note == "4 instances"


def test_paths_match_the_note():
    """Three edges leave x_j, two leave mu; 3N + 1 paths from f back to x_j."""
    for n in (1, 2, 5):
        bn = BatchNorm(n)
        assert len(paths(bn, bn.x(1))) == 3 * n + 1
        assert {str(s) for s in bn.children(bn.x(1))} == {"mu", "v", "xhat[1]"}
    report = symbn.verify(n=3)
    assert report["graph/edges"].verdict == PROVED
    assert "x_j -> mu -> v -> xhat_i -> y_i -> f" in report.info["paths"]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_forward_equals_backward_without_closed_form(n):
    bn = BatchNorm(n)
    alg = Algebra(bn)
    for j in bn.rows():
        assert alg.decide(forward_gradient(bn, bn.x(j)),
                          backward_gradient(bn, bn.x(j))).verdict == PROVED


# -- soundness: wrong closed forms must be disproved with a separating exact witness ----------

def _wrong_dx(bn, j, *, mean=True, denom=None, eps=True, sign=1, power=-1):
    n = sp.Integer(bn.n) if denom is None else denom
    mu = bn.mu()
    base = bn.v() + (bn.eps if eps else 0)
    mean_dy = sp.Add(*[bn.dy(i) for i in bn.rows()]) / n
    mean_xdy = sp.Add(*[(bn.x(i) - mu) * bn.dy(i) for i in bn.rows()]) / n
    inner = bn.dy(j) - (mean_dy if mean else 0) - sign * (bn.x(j) - mu) * base ** power * mean_xdy
    return bn.gamma() * base ** sp.Rational(-1, 2) * inner


WRONG = {
    "mean term dropped": {"mean": False},
    "1/(N-1) instead of 1/N": {"denom": sp.Integer(2)},
    "eps dropped": {"eps": False},
    "wrong sign": {"sign": -1},
    "exponent -3/2 instead of -1": {"power": sp.Rational(-3, 2)},
}


def _exact_nodes(bn, point):
    """mu, v, sqrt(v + eps) from the witness point, computed here with Fractions."""
    xs = [point[bn.x(i)] for i in bn.rows()]
    mu = sum(xs, Fraction(0)) / bn.n
    v = sum(((x - mu) ** 2 for x in xs), Fraction(0)) / bn.n
    return mu, v


def _independent_value(bn, expr, point):
    mu, v = _exact_nodes(bn, point)
    sigma_sq = v + point[bn.eps]
    root = sp.sqrt(sp.Rational(sigma_sq.numerator, sigma_sq.denominator))
    assert root.is_Rational, "witness must make v + eps a rational square"
    values = {s: sp.Rational(q.numerator, q.denominator) for s, q in point.items()}
    values[bn.mu()] = sp.Rational(mu.numerator, mu.denominator)
    values[bn.v()] = sp.Rational(v.numerator, v.denominator)
    for i in bn.rows():
        values[bn.xhat(i)] = (values[bn.x(i)] - values[bn.mu()]) / root
    out = sp.sympify(expr).xreplace(values)
    assert out.is_Rational, out
    return out


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_closed_forms_are_disproved(name):
    bn = BatchNorm(3)
    truth = forward_gradient(bn, bn.x(1))
    wrong = _wrong_dx(bn, 1, **WRONG[name])
    outcome = Algebra(bn).decide(truth, wrong)
    assert outcome.verdict == DISPROVED, name
    point = {s: Fraction(v) for s, v in
             ((sp.Symbol(k), v) for k, v in outcome.witness["point"].items())}
    assert point[bn.eps] > 0
    for leaf in bn.leaves:  # every leaf the two sides need is given
        point.setdefault(leaf, Fraction(0))
    if "separation" in outcome.witness:  # irrational values (sqrt(v) without eps)
        left, right = (_mp_value(bn, e, point) for e in (closed_form.dx(bn, 1), wrong))
        assert abs(left - right) > mpmath.mpf("1e-20")
        return
    left = _independent_value(bn, closed_form.dx(bn, 1), point)  # the true closed form
    right = _independent_value(bn, wrong, point)
    assert left != right
    assert str(right) == outcome.witness["rhs"]


def _mp_value(bn, expr, point):
    mpmath.mp.dps = 50
    mu, v = _exact_nodes(bn, point)
    values = {s: sp.Rational(q.numerator, q.denominator) for s, q in point.items()}
    values[bn.mu()] = sp.Rational(mu.numerator, mu.denominator)
    values[bn.v()] = sp.Rational(v.numerator, v.denominator)
    return mpmath.mpf(str(sp.N(sp.sympify(expr).xreplace(values), 40)))


def test_wrong_closed_form_via_verify_is_reported_with_witness(monkeypatch):
    monkeypatch.setattr(closed_form, "dx", lambda bn, j, c=1: _wrong_dx(bn, j, sign=-1))
    report = symbn.verify(n=2)
    assert not report.ok and report.exit_code == 1
    bad = report["forward/dx"]
    assert bad.verdict == DISPROVED and bad.witness["lhs"] != bad.witness["rhs"]
    assert report["forward=backward/dx"].verdict == PROVED  # independent of the closed form


def test_radicals_outside_the_fragment_are_never_proved():
    bn = BatchNorm(2)
    alg = Algebra(bn)
    x1, x2 = bn.x(1), bn.x(2)
    # true, but sqrt((x1 - x2)^2) is not of the form sqrt(eps + w): undecided, not proved
    assert alg.decide(sp.sqrt((x1 - x2) ** 2), sp.sqrt((x2 - x1) ** 2)).verdict == "unknown"
    # false (x1 < 0): disproved by an exact point, the gap certified by interval arithmetic
    outcome = alg.decide(sp.sqrt(x1 ** 2), x1)
    assert outcome.verdict == DISPROVED
    assert Fraction(outcome.witness["point"]["x[1]"]) < 0
    assert alg.decide(sp.sqrt(bn.v() + bn.eps) ** 2, bn.v() + bn.eps).verdict == PROVED
    assert alg.decide(bn.sigma(), -bn.sigma()).verdict == DISPROVED


# -- an oracle that shares nothing with the prover: mpmath central differences ------------------

def test_closed_form_matches_central_differences():
    mpmath.mp.dps = 60
    n = 4
    xs = [mpmath.mpf(v) for v in ("0.3", "-1.2", "2.5", "0.7")]
    gamma, beta, eps = mpmath.mpf("1.7"), mpmath.mpf("-0.4"), mpmath.mpf("0.01")
    w = [mpmath.mpf(v) for v in ("0.5", "-2", "1.25", "3")]

    def bn_forward(x):
        mu = sum(x) / n
        var = sum((a - mu) ** 2 for a in x) / n
        return [gamma * (a - mu) / mpmath.sqrt(var + eps) + beta for a in x]

    def f(x):  # a concrete f: its gradient dy_i = w_i cos(y_i) + 2 y_i
        return sum(wi * mpmath.sin(yi) + yi ** 2 for wi, yi in zip(w, bn_forward(x)))

    ys = bn_forward(xs)
    dys = [wi * mpmath.cos(yi) + 2 * yi for wi, yi in zip(w, ys)]
    bn = BatchNorm(n)
    h = mpmath.mpf("1e-20")
    for j in range(n):
        up = list(xs)
        up[j] += h
        down = list(xs)
        down[j] -= h
        numeric = (f(up) - f(down)) / (2 * h)
        expr = forward_gradient(bn, bn.x(j + 1))
        subs = {bn.x(i + 1): sp.Float(str(xs[i]), 60) for i in range(n)}
        subs.update({bn.dy(i + 1): sp.Float(mpmath.nstr(dys[i], 60), 60) for i in range(n)})
        subs.update({bn.gamma(): sp.Float("1.7", 60), bn.eps: sp.Float("0.01", 60)})
        symbolic = sp.N(bn.compose(expr).xreplace(subs), 50)
        assert abs(mpmath.mpf(str(symbolic)) - numeric) < mpmath.mpf("1e-30")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_equivalent_closed_form_with_cancelling_terms(n):
    """Terms of the right side that cancel each other (mu = x_1 when N = 1) must not hide
    its square roots from the prover."""
    bn = BatchNorm(n)
    base = bn.v() + bn.eps
    mean = sp.Add(*[(bn.x(i) - bn.mu()) * bn.dy(i) for i in bn.rows()]) / n
    alt = (bn.gamma() * base ** sp.Rational(-1, 2)
           * (bn.dy(1) - sp.Add(*[bn.dy(i) for i in bn.rows()]) / n)
           - bn.gamma() * bn.x(1) * base ** sp.Rational(-3, 2) * mean
           + bn.gamma() * bn.mu() * base ** sp.Rational(-3, 2) * mean)
    alg = Algebra(bn)
    for grad in (forward_gradient, backward_gradient):
        assert alg.decide(grad(bn, bn.x(1)), alt).verdict == PROVED
