"""Soundness: claims of every class that once came back wrongly `proved` (or crashed), true
and false, at concrete N and for every N, each verdict re-checked by the independent
plain-SymPy oracle (tests/oracle.py, a nonlinear f, dy depending on the leaves).

A `proved` verdict must survive the oracle's random exact points; a `disproved` one must
carry a witness at which the oracle's sides differ; `unknown (undefined)` must be a side the
oracle cannot evaluate; a refused claim (a derivative of dy, D with respect to a node) must be
one the oracle shows false for this f, so proving it would have been wrong.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from fractions import Fraction

import pytest
from oracle import Oracle

from symbn import cli
from symbn.check import check
from symbn.derivation import parse
from symbn.errors import SymbnError
from symbn.general import check_all

P, D, U, R, X = "proved", "disproved", "unknown", "refused", "no such row"
SIZES = (1, 2, 3, "all")

# (class, claim, where, verdicts at N = 1, 2, 3 and for every N)
CASES = [
    # 1: a Sum's bound index is not the free index of the same name
    ("1", "D(Sum(x[j]**2, (j, 1, N)), x[j]) = 2*x[j]", "", (P, P, P, P)),
    ("1", "D(Sum(x[i]*x[j], (j, 1, N)), x[j]) = x[i] + N*x[i]", "", (P, D, D, D)),
    ("1", "D(Sum(x[i]*x[j], (j, 1, N)), x[j]) = x[i] + KroneckerDelta(i, j)*N*mu", "",
     (P, P, P, P)),
    ("1", "x[i] + Sum(KroneckerDelta(i, j)*x[i], (i, 1, N)) = x[i]", "i != j", (P, D, D, D)),
    ("1", "x[i] + Sum(KroneckerDelta(i, j)*x[i], (i, 1, N)) = x[i] + x[j]", "i != j",
     (P, P, P, P)),
    ("1", "Sum(x[j], (j, 1, N)) - x[j] = N*mu - x[j]", "", (P, P, P, P)),
    ("1", ("Sum(KroneckerDelta(j, k)*x[k], (k, 1, N)) + Sum(x[j]*KroneckerDelta(i, j), "
          "(j, 1, N)) = x[j] + x[i]"), "", (P, P, P, P)),
    ("1", ("Sum(KroneckerDelta(j, k)*x[k], (k, 1, N)) + Sum(x[j]*KroneckerDelta(i, j), "
          "(j, 1, N)) = 2*x[j]"), "", (P, D, D, D)),
    # 2: dy = df/dy depends on the leaves through f: its derivatives are refused
    ("2", "D(D(f, beta), beta) = 0", "", (R, R, R, R)),
    ("2", "D(D(f, gamma), gamma) = 0", "", (R, R, R, R)),
    ("2", "D(dy[i], x[j]) = 0", "", (R, R, R, R)),
    ("2", "D(dy[1], y[2]) = 0", "", (R, R, R, R)),
    ("2", "D(Sum(dy[i]*xhat[i], (i, 1, N)), gamma) = 0", "", (R, R, R, R)),
    ("2", "D(f, x[j]) = Sum(D(f, y[i])*D(y[i], x[j]), (i, 1, N))", "", (P, P, P, P)),
    # 3: a side undefined on the whole domain is never proved
    ("3", "v/v = 1", "", (U, P, P, P)),
    ("3", "P(v, mu)/P(v, mu) = 1", "", (U, U, U, U)),
    ("3", "1/Sum(x[i] - mu, (i, 1, N)) = 1/Sum(x[i] - mu, (i, 1, N))", "", (U, U, U, U)),
    ("3", "Sum(xhat[i], (i, 1, N))/Sum(xhat[i], (i, 1, N)) = 1", "", (U, U, U, U)),
    ("3", "1/(x[i] - x[j]) = 1/(x[i] - x[j])", "", (U, U, U, U)),
    ("3", "1/(x[i] - x[j]) = 1/(x[i] - x[j])", "i != j", (P, P, P, P)),
    ("3", "1/(N - 1) = 1/(N - 1)", "", (U, P, P, P)),
    ("3", "sqrt(-v - eps)**2 = -v - eps", "", (U, U, U, U)),
    ("3", "(x[i] - mu)/(x[i] - mu) = 1", "", (U, P, P, P)),
    # SymPy builds sqrt(u)**2 as u and u/u as 1: a witness must lie where the link is
    # defined as written (u >= 0, u != 0); the first claim is true wherever it is defined
    ("3", "sqrt(v - 1)**2 = sqrt((v - 1)**2)", "", (U, U, U, U)),
    ("3", "sqrt(1 - v)**2 = 1 - 2*v", "", (P, D, D, D)),
    ("3", "sqrt(1 - v)**2 = 0", "", (D, D, D, D)),
    ("3", "x[1]*(x[2] - x[3])/(x[2] - x[3]) = 0", "", (X, X, D, U)),
    ("3", "sqrt(((N - 1)/(N - 1))**2) = 1", "", (U, P, P, P)),
    # 4: nested sums, long expansions, huge common denominators: decided, never a crash
    ("4", "Sum(Sum(x[i]*x[k], (k, 1, N)), (i, 1, N)) = N**2*mu**2", "", (P, P, P, P)),
    ("4", "Sum(Sum(x[i]*x[k], (k, 1, N)), (i, 1, N)) = N*mu**2", "", (P, D, D, D)),
    ("4", "Sum(Sum((x[i] - x[k])**2, (k, 1, N)), (i, 1, N)) = 2*N**2*v", "", (P, P, P, P)),
    ("4", "Sum(D(f, x[j]), (j, 1, N)) = 0", "", (P, P, P, P)),
    ("4", "Sum(D(f, x[j])*x[j], (j, 1, N)) = 0", "", (P, D, D, D)),
    ("4", ("(x[1] + x[2])**8 = x[1]**8 + 8*x[1]**7*x[2] + 28*x[1]**6*x[2]**2 "
          "+ 56*x[1]**5*x[2]**3 + 70*x[1]**4*x[2]**4 + 56*x[1]**3*x[2]**5 "
          "+ 28*x[1]**2*x[2]**6 + 8*x[1]*x[2]**7 + x[2]**8"), "", (X, P, P, U)),
    ("4", ("(x[1] + x[2])**8 = x[1]**8 + 8*x[1]**7*x[2] + 28*x[1]**6*x[2]**2 "
          "+ 56*x[1]**5*x[2]**3 + 69*x[1]**4*x[2]**4 + 56*x[1]**3*x[2]**5 "
          "+ 28*x[1]**2*x[2]**6 + 8*x[1]*x[2]**7 + x[2]**8"), "", (X, D, D, U)),
    # 5: radicals of squares, by proved signs
    ("5", "sqrt((v + eps)**2) = v + eps", "", (P, P, P, P)),
    ("5", "sqrt(1/(v + eps)) = (v + eps)**(-1/2)", "", (P, P, P, P)),
    ("5", "sqrt(v**2) = v", "", (P, P, P, P)),
    ("5", "sqrt((v + eps)**3) = (v + eps)**(3/2)", "", (P, P, P, P)),
    # true, but a radicand c (v + eps) with c != 1 is outside the decided fragment
    ("5", "sqrt(4*(v + eps)) = 2*sigma", "", (P, P, P, P)),
    ("5", "sqrt(Sum((x[i] - mu)**2, (i, 1, N))**2) = N*v", "", (P, P, P, P)),
    ("5", "sqrt(xhat[1]**2) = xhat[1]", "", (P, D, D, U)),  # xhat[1] = 0 at N = 1
    ("5", "sqrt(v**2) = -v", "", (P, D, D, D)),
    ("5", "sqrt((x[i] - mu)**2) = x[i] - mu", "", (P, D, D, D)),
    # 6: D with respect to a node only as df/dy[i]; equal expressions, equal derivatives
    ("6", "D(gamma*xhat[1] + beta, y[1]) = D(y[1], y[1])", "", (R, R, R, R)),
    ("6", "D(y[1], y[1]) = 1", "", (R, R, R, R)),
    ("6", "D(xhat[1], y[1]) = 0", "", (R, R, R, R)),
    ("6", "D(f, y[i]) = dy[i]", "", (P, P, P, P)),
    ("6", "D(y[i], x[j]) = D(gamma*xhat[i] + beta, x[j])", "", (P, P, P, P)),
    # 8: a claim false only for small eps is refuted
    ("8", "sqrt((2*eps - 1)**2) = 2*eps - 1", "", (D, D, D, D)),
    ("8", "sqrt((3*eps - 1)**2)*(v + eps) = (3*eps - 1)*(v + eps)", "", (D, D, D, D)),
    ("8", "sqrt((2*eps + 1)**2) = 2*eps + 1", "", (P, P, P, P)),
]


def _doc(claim: str, where: str) -> str:
    extra = f'where = "{where}"\n' if where else ""
    return f'title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\nclaim = "{claim}"\n{extra}'


def _verdict(claim: str, where: str, n):
    try:
        d = parse(_doc(claim, where), "case.toml")
    except SymbnError:
        return R, None
    try:
        result = check_all(d)[0] if n == "all" else check(d, n)[0]
    except SymbnError as err:
        assert "outside 1..N" in str(err), err
        return X, None
    return result.verdict, result


def _assignments(claim: str, where: str, n: int):
    d = parse(_doc(claim, where), "case.toml")
    from symbn.check import assignments

    return assignments(d.steps[0], n)


def _oracle_holds(claim: str, where: str, n: int) -> None:
    """The oracle finds no counterexample at N = n (every assignment `where` allows)."""
    oracle = Oracle(n)
    for assignment in _assignments(claim, where, n):
        found = oracle.search(claim, assignment, tries=25)
        assert found is None, (claim, n, assignment, found)


def _oracle_refutes(claim: str, witness: dict, n: int) -> None:
    """The oracle's sides differ at the witness (or, with dy in it, at a point it finds)."""
    oracle = Oracle(n)
    assignment = {k: int(v) for k, v in witness.get("assignment", {}).items()}
    point = {k: Fraction(v) for k, v in witness.get("point", {}).items()}
    if any(k.startswith("dy") for k in point):  # dy is free in symbn, f's gradient here
        assert oracle.search(claim, assignment or None, tries=100) is not None, claim
        return
    values = oracle.sides(claim, point, assignment or None)
    assert None not in values, (claim, witness, values)
    assert any(oracle.differ(a, b) for a, b in itertools.pairwise(values)), (claim, witness)


@pytest.mark.parametrize("group, claim, where, expected", CASES,
                         ids=[f"class{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_verdicts_against_the_oracle(group, claim, where, expected):
    for n, want in zip(SIZES, expected):
        got, result = _verdict(claim, where, n)
        assert got == want, (claim, where, n, got, result and result.note)
        concrete = 4 if n == "all" else n
        if got == P:
            sizes = range(2, 5) if "N >= 2" in (result.note or "") else range(1, 5)
            for size in ([concrete] if n != "all" else sizes):
                _oracle_holds(claim, where, size)
        elif got == D:
            witness = result.witness
            _oracle_refutes(claim, witness, witness.get("N", n))
        elif got == U and n != "all" and any(word in (result.note or "") for word in
                                             ("undefined", "division by zero")):
            oracle = Oracle(n)
            for assignment in _assignments(claim, where, n)[:1]:
                for seed in range(5):
                    import random

                    point = oracle.random_point(random.Random(seed))
                    assert None in oracle.sides(claim, point, assignment), (claim, point)
        elif got == R and group == "2" and "= 0" in claim:
            # proving would have been wrong: for this nonlinear f the claim is false
            assert Oracle(2).search(claim, {"i": 1, "j": 2} if "[i]" in claim else None,
                                    tries=50) is not None, claim


def test_every_n_condition_names_the_sizes_where_a_side_is_undefined():
    _, result = _verdict("v/v = 1", "", "all")
    assert "N >= 2" in result.note and "at N = 1" in result.note
    _, result = _verdict("1/((N - 1)*(N - 7)*v) = 1/((N - 1)*(N - 7)*v)", "", "all")
    assert "(undefined at N = 1, 7)" in result.note, result.note


def test_undefined_when_indices_coincide_names_the_pattern():
    _, result = _verdict("1/(x[i] - x[j]) = 1/(x[i] - x[j])", "", "all")
    assert "when j = i" in result.note, result.note


def test_refusals_are_one_line_errors_naming_the_step():
    for claim in ("D(D(f, beta), beta) = 0", "D(y[1], y[1]) = 1"):
        with pytest.raises(SymbnError) as err:
            parse(_doc(claim, ""), "mine.toml")
        message = str(err.value)
        assert "\n" not in message and message.startswith("mine.toml: step 's'"), message


def test_a_huge_common_denominator_is_unknown_not_an_abort(tmp_path):
    path = tmp_path / "recip.toml"
    path.write_text(_doc("Sum(1/(x[i] + 1), (i, 1, N)) = Sum(2/(2*x[i] + 2), (i, 1, N))", ""))
    run = subprocess.run([sys.executable, "-m", "symbn", "check", str(path), "--n", "24"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stderr
    assert "unknown 1" in run.stdout and "size budget" in run.stdout


def test_an_internal_error_exits_4_with_one_line(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(sys.modules["symbn.check"], "check", broken)
    assert cli.main(["check", "batchnorm", "--n", "2"]) == cli.INTERNAL_ERROR == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("symbn: internal error: RecursionError")


def test_a_recursion_limit_inside_a_step_is_unknown(monkeypatch):
    import symbn.stepcheck as check_module

    def deep(self, *args, **kwargs):
        raise RecursionError

    monkeypatch.setattr(check_module._StepChecker, "_decide", deep)
    (result,) = check(parse(_doc("mu = mu + 0*x[1]", ""), "c.toml"), 2)
    assert result.verdict == U and "recursion" in result.note


def test_an_every_n_step_stuck_in_sympy_comes_back_unknown(monkeypatch):
    """A step whose symbolic form SymPy cannot cancel in time: unknown within the budget
    (the whole run's timeout, or a step's own when none is given), never a hang."""
    import time

    from symbn import every_n_steps

    side = "((x[j] - mu)**2 + Sum(dy[k]*xhat[k], (k, 1, N)))"
    claim = f"{side}**3 = sqrt(({side}*{side}**2)**3)"
    d = parse(_doc(claim, ""), "case.toml")
    monkeypatch.setattr(every_n_steps, "STEP_SECONDS", 1.0)
    for timeout, note in ((None, "1 s for a step when no timeout is given"), (1.5, "")):
        start = time.monotonic()
        result = check_all(d, timeout=timeout)[0]
        assert result.verdict == U and "time budget exhausted" in result.note and \
            note in result.note and time.monotonic() - start < 30, result

