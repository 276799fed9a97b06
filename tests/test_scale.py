"""Scaling machinery: shared composition, memoized derivative rules, row symmetry checked
against every index pair, structural linearity, and the randomized method's soundness."""

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

import symbn
from symbn import closed_form
from symbn.differentiate import backward_gradient, derivative, forward_gradient
from symbn.model import BatchNorm
from symbn.prove import (
    DISPROVED,
    PROBABLE,
    PROVED,
    Algebra,
    RandomTester,
    coefficients,
    linear_in,
    unit_coefficient,
)

REPO = Path(__file__).resolve().parents[1]


def _graph_size(expr):
    seen, stack = set(), [expr]
    while stack:
        e = stack.pop()
        if id(e) not in seen:
            seen.add(id(e))
            stack.extend(e.args)
    return len(seen)


def test_composition_stays_linear_in_n():
    small, large = BatchNorm(16), BatchNorm(64)
    a, b = _graph_size(small.compose(small.y(1))), _graph_size(large.compose(large.y(1)))
    assert b < 6 * a  # 4x the rows: about 4x the graph (the flattened tree grows 16x)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_derivative_rules_agree_with_sympy_diff(n):
    """The memoized rules against SymPy's diff on the same composed expressions."""
    bn = BatchNorm(n)
    alg = Algebra(bn)
    for i in bn.rows():
        y = bn.compose(bn.y(i))
        for wrt in [bn.x(k) for k in bn.rows()] + [bn.gamma(), bn.beta(), bn.eps]:
            ours, theirs = derivative(y, wrt), sp.diff(y, wrt)
            assert alg.decide(ours, theirs).verdict == PROVED, (i, wrt)


def test_every_index_pair_for_small_n():
    """The symmetry reduction uses (1,1) and (2,1); here all N^2 pairs, coefficient-wise."""
    n = 4
    bn = BatchNorm(n)
    alg = Algebra(bn)
    closed = {j: closed_form.dx(bn, j) for j in bn.rows()}
    for j in bn.rows():
        for i in bn.rows():
            fwd = closed_form.unit_dy(bn, forward_gradient(bn, bn.x(j), ys=[bn.y(i)]), i)
            bwd = closed_form.unit_dy(bn, backward_gradient(bn, bn.x(j), ys=[bn.y(i)]), i)
            ref = closed_form.unit_dy(bn, closed[j], i)
            assert alg.decide(fwd, ref).verdict == PROVED, (i, j)
            assert alg.decide(bwd, ref).verdict == PROVED, (i, j)


def test_the_symmetry_argument_on_instances():
    """c_{p(i)p(j)}(x) = c_{ij}(x o p) for the transposition p = (1 3): the fact the
    reduction rests on, checked exactly."""
    bn = BatchNorm(4)
    alg = Algebra(bn)
    swap = {bn.x(1): bn.x(3), bn.x(3): bn.x(1), bn.dy(1): bn.dy(3), bn.dy(3): bn.dy(1)}

    def coeff(i, j):
        return bn.compose(closed_form.unit_dy(
            bn, forward_gradient(bn, bn.x(j), ys=[bn.y(i)]), i))

    for i, j in [(1, 1), (2, 1)]:
        pi, pj = [{1: 3, 3: 1}.get(t, t) for t in (i, j)]
        assert alg.decide(coeff(pi, pj), coeff(i, j).xreplace(swap)).verdict == PROVED


def test_symmetric_and_exhaustive_verify_agree_above_the_threshold():
    n = 9  # above EXHAUSTIVE_MAX_N: the default uses symmetry
    symmetric, exhaustive = symbn.verify(n=n), symbn.verify(n=n, all_pairs=True)
    assert symmetric.ok and exhaustive.ok
    assert not symmetric.info["exhaustive"] and exhaustive.info["exhaustive"]
    assert exhaustive["forward/dx"].note == f"{n} instances"
    assert symmetric["forward/dx"].note == "i=j, i!=j"
    assert any("permutation" in note for note in symmetric.notes)


def test_structural_linearity():
    bn = BatchNorm(3)
    dys = {bn.dy(i) for i in bn.rows()}
    assert linear_in(bn, closed_form.dx(bn, 2), dys)
    assert linear_in(bn, closed_form.dgamma(bn), dys)
    assert not linear_in(bn, closed_form.dx(bn, 2) * bn.dy(1), dys)
    assert not linear_in(bn, closed_form.dx(bn, 2) + bn.gamma(), dys)
    assert not linear_in(bn, sp.exp(bn.dy(1)), dys)


def test_coefficients_of_a_linear_form_recombine_to_it():
    bn = BatchNorm(4)
    dys = {bn.dy(i) for i in bn.rows()}
    expr = closed_form.dx(bn, 2)
    coeffs = coefficients(bn, expr, dys)
    assert set(coeffs) == dys and not any(c.free_symbols & dys for c in coeffs.values())
    alg = Algebra(bn)
    for dy in dys:  # the one-pass extraction agrees with substituting dy = e_i
        assert alg.decide(coeffs[dy], unit_coefficient(expr, dy, dys)).verdict == PROVED
    # independent: exact evaluation at a rational point with sqrt(v + eps) = 3 rational
    xs = [Fraction(1), Fraction(-2), Fraction(5, 3), Fraction(1, 2)]
    mu = sum(xs) / 4
    v = sum((x - mu) ** 2 for x in xs) / 4
    point = {bn.x(i): x for i, x in zip(bn.rows(), xs)}
    point |= {bn.gamma(): Fraction(7, 5), bn.eps: 9 - v}
    dy_values = {bn.dy(i): Fraction(i * i - 3, i) for i in bn.rows()}
    whole = bn.evaluate(expr, point | dy_values)
    parts = sum(dy_values[dy] * bn.evaluate(c, point) for dy, c in coeffs.items())
    assert whole.is_Rational and whole == parts
    assert coefficients(bn, expr * bn.dy(1), dys) is None
    assert coefficients(bn, expr + 1, dys) is None


def test_exact_verify_above_the_old_limits():
    report = symbn.verify(n=48)
    assert report.ok and all(r.verdict == PROVED for r in report)


# -- the randomized method --------------------------------------------------------------

def test_random_method_is_probable_never_proved():
    report = symbn.verify(n=12, method="random", points=3)
    assert report.ok and report.exit_code == 0
    for r in report:
        if r.method == "random points, exact":
            assert r.verdict == PROBABLE, r.id
            assert "error probability <= " in r.note
        else:  # graph enumeration and structural linearity are exact, not sampled
            assert r.verdict == PROVED
    assert any("Schwartz-Zippel" in note for note in report.notes)


def test_random_method_disproves_a_wrong_closed_form(monkeypatch):
    original = closed_form.dx

    def wrong(bn, j, c=1):  # sign of the second term flipped
        mu = bn.mu()
        mean_xdy = sp.Add(*[(bn.x(i) - mu) * bn.dy(i) for i in bn.rows()]) / bn.n
        return original(bn, j) + 2 * bn.gamma() * (bn.v() + bn.eps) ** sp.Rational(-3, 2) \
            * (bn.x(j) - mu) * mean_xdy

    monkeypatch.setattr(closed_form, "dx", wrong)
    n = 10
    report = symbn.verify(n=n, method="random", points=2)
    bad = report["forward/dx"]
    assert bad.verdict == DISPROVED and report.exit_code == 1
    assert report["forward=backward/dx"].verdict == PROBABLE  # independent of the closed form
    # independent check with plain Fractions: the true df/dx_j at the witness point
    pt = {k: Fraction(v) for k, v in bad.witness["point"].items()}
    get = lambda name: pt.get(name, Fraction(0))
    xs = [get(f"x[{i}]") for i in range(1, n + 1)]
    mu = sum(xs, Fraction(0)) / n
    v = sum(((x - mu) ** 2 for x in xs), Fraction(0)) / n
    sq = v + pt["eps"]
    assert pt["eps"] > 0
    root = Fraction(math.isqrt(sq.numerator), math.isqrt(sq.denominator))
    assert root * root == sq  # sqrt(v + eps) is rational at the witness
    i = {"i=j": 1, "i!=j": 2}[bad.witness["instance"]]
    unit = [Fraction(int(k == i)) for k in range(1, n + 1)]  # the dy_i-coefficient
    mean_xdy = sum(((x - mu) * d for x, d in zip(xs, unit)), Fraction(0)) / n
    true = get("gamma") / root * (unit[0] - sum(unit, Fraction(0)) / n
                                  - (xs[0] - mu) / sq * mean_xdy)
    assert Fraction(bad.witness["lhs"]) == true != Fraction(bad.witness["rhs"])


def test_degree_bound_covers_the_true_degree():
    """The bound used in the error probability is at least the degree of the exact
    numerator computed by the canonical-form prover."""
    bn = BatchNorm(3)
    alg = Algebra(bn)
    tester = RandomTester(bn)
    for lhs, rhs in [(forward_gradient(bn, bn.x(1)), closed_form.dx(bn, 1)),
                     (backward_gradient(bn, bn.gamma()), sp.Integer(0)),
                     (bn.xhat(1) * bn.xhat(2), bn.gamma())]:
        (n1, d1), (n2, d2) = tester.degree_bound(lhs), tester.degree_bound(rhs)
        diff, _ = alg.difference(lhs, rhs)
        assert diff.num.total_degree() <= max(n1 + d2, n2 + d1)
        assert diff.den.total_degree() <= d1 + d2


def test_random_method_refuses_other_square_roots():
    bn = BatchNorm(3)
    outcome = RandomTester(bn, points=2).decide(sp.sqrt(bn.v()), sp.sqrt(bn.v()))
    assert outcome.verdict == "unknown"  # true, but outside what the bound covers
    outcome = RandomTester(bn, points=2).decide(sp.sqrt(bn.v() + 1), bn.x(1))
    assert outcome.verdict == "unknown"


def test_cli_random_method_json():
    run = subprocess.run([sys.executable, "-m", "symbn", "verify", "--n", "20", "--method",
                          "random", "--json"], cwd=REPO, text=True, capture_output=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["method"] == "random" and doc["ok"] is True
    assert {r["verdict"] for r in doc["results"]} == {"proved", "probable"}
    assert run.stderr == ""


def test_progress_lines_one_per_claim():
    lines = []
    report = symbn.verify(n=3, progress=lines.append)
    assert len(lines) == len(report) - 1  # every claim but the graph count
    assert lines[0].startswith("[1/") and "s so far" in lines[0]
    assert "left" in lines[-1]  # an estimate once something has been timed


def test_exact_refuses_sizes_it_cannot_finish_and_points_to_random():
    with pytest.raises(symbn.SymbnError, match="method='random'"):
        symbn.verify(n=2048)
    with pytest.raises(symbn.SymbnError, match="one column"):
        symbn.verify(n=4, d=2, method="random")
    with pytest.raises(symbn.SymbnError, match="unknown method"):
        symbn.verify(n=4, method="simplify")
