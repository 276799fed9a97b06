"""Claims and models defined nowhere are never proved: a user model's node whose template
divides by something identically zero (SymPy reads s/s as 1), a node's square root beside
the claim's, a closed form in [results] that is defined nowhere, a divisor that vanishes
wherever the claim's roots are real, and rows that `where` leaves empty at small N."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from symbn import general
from symbn.check import check
from symbn.derivation import parse
from symbn.models import parse as parse_model
from symbn.prove import DISPROVED, PROVED, UNKNOWN
from symbn.verify_model import verify_model

REPO = Path(__file__).resolve().parents[1]

CANCELLED = '''
name = "cancelled"
title = "a node that is 0/0"
[leaves]
x = "element"
eps = "positive"
[nodes]
mu = "Sum(x[k], (k, 1, N))/N"
c = "Sum(x[k] - mu, (k, 1, N))/Sum(x[k] - mu, (k, 1, N))"
y = "c*x[i]"
[model]
output = "y"
axis = 0
[results]
"D(f, x[j])" = "dy[j]"
'''

ROOT = '''
name = "root"
title = "a node with a square root"
[leaves]
x = "element"
eps = "positive"
[nodes]
r = "sqrt(x[i])"
y = "r[i] + eps*x[i]"
[model]
output = "y"
axis = 0
'''


def _model(tmp_path, text, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _derivation(model_path, claim, where=""):
    extra = f"where = {json.dumps(where)}\n" if where else ""
    return parse(f'title = "t"\nmodel = "{model_path}"\n[[step]]\nid = "s"\n'
                 f"claim = {json.dumps(claim)}\n{extra}", str(model_path.parent / "d.toml"))


def test_a_node_that_is_zero_over_zero_makes_every_claim_unknown(tmp_path):
    path = _model(tmp_path, CANCELLED, "cancelled")
    (result,) = check(_derivation(path, "D(f, x[j]) = dy[j]"), 3)
    assert result.verdict == UNKNOWN and "identically zero" in result.note, result
    report = verify_model(parse_model(CANCELLED, str(path)), 3)
    assert all(r.verdict == UNKNOWN and r.method == "definedness" for r in report.results), \
        report


def test_a_nodes_root_counts_with_the_claims(tmp_path):
    """(sqrt(-x1)**2 + r1**2 + 1)/x1 = 1/x1 needs x1 <= 0, x1 >= 0 (r = sqrt(x)) and x1 != 0."""
    path = _model(tmp_path, ROOT, "root")
    claim = "(sqrt(-x[1])**2 + r[1]**2 + 1)/(x[1]) = 1/x[1]"
    (result,) = check(_derivation(path, claim), 1)
    assert result.verdict == UNKNOWN and "in node r" in result.note, result


def test_no_disproof_where_a_node_is_undefined(tmp_path):
    """r1**2 = sqrt(x1**2) holds wherever r1 = sqrt(x1) is real (x1 >= 0): a witness with
    x1 < 0 would be no counterexample."""
    path = _model(tmp_path, ROOT, "root")
    (result,) = check(_derivation(path, "r[1]**2 = sqrt(x[1]**2)"), 1)
    assert result.verdict != DISPROVED, result


def test_a_closed_form_defined_nowhere_is_not_proved(tmp_path):
    # the shipped D(f, eps) plus sqrt(-1 - eps)**2 + 1 + eps, which SymPy reads as 0
    text = (REPO / "symbn" / "models" / "rmsnorm.toml").read_text().replace(
        'name = "rmsnorm"', 'name = "rms-nowhere"').replace(
        '"D(f, eps)" = "', '"D(f, eps)" = "sqrt(-1 - eps)**2 + 1 + eps + ')
    assert "sqrt(-1 - eps)" in text
    model = parse_model(text, str(tmp_path / "rms-nowhere.toml"))
    for n in (3, "all"):
        verdicts = {r.id: r for r in verify_model(model, n).results}
        for cid in ("forward/deps", "backward/deps"):
            assert verdicts[cid].verdict == UNKNOWN, (n, verdicts[cid])
            assert "square root of -eps - 1" in verdicts[cid].note
        assert verdicts["forward/dx"].verdict == PROVED


@pytest.mark.parametrize("claim", [
    "sqrt(-x[1])**2 = -x[1]*(sqrt(x[1]**2) + x[1])/(sqrt(x[1]**2) + x[1])",
    "sqrt(-x[1])**2/(sqrt(x[1]**2) + x[1]) = -x[1]/(sqrt(x[1]**2) + x[1])",
])
def test_a_divisor_zero_wherever_the_roots_are_real(claim):
    """|x1| + x1 is not the zero function, but it is 0 wherever -x1 >= 0."""
    d = parse(f'title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\n'
              f"claim = {json.dumps(claim)}\n", "split.toml")
    for n in (1, 2, 3):
        (result,) = check(d, n)
        assert result.verdict == UNKNOWN, (n, result)


def test_rows_where_leaves_empty_are_no_evidence_of_definedness():
    """At N = 1 `where i != j` leaves no rows: that size must not count as defined."""
    d = parse('title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\n'
              'claim = "sqrt(x[i] - x[j] - 1)**2 + 1 = -sqrt(x[j] - x[i] - 1)**2 - 1"\n'
              'where = "i != j"\n', "where.toml")
    (result,) = general.check_all(d)
    assert result.verdict == UNKNOWN and "not shown defined at any N" in result.note, result


def test_a_witness_with_many_digits_is_printed(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "p"\n'
                    'claim = "((((99999)**8)**8)**8)**8*x[1] = x[1]"\n')
    run = subprocess.run([sys.executable, "-m", "symbn", "check", str(path), "--n", "1"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 1 and "disproved" in run.stdout and not run.stderr, run


def _bn_like(nodes: str, results: str, name: str) -> str:
    return (f'name = "{name}"\ntitle = "t"\n[leaves]\nx = "element"\ngamma = "set"\n'
            f'beta = "set"\n[nodes]\nmu = "Sum(x[k], (k, 1, N))/N"\n{nodes}\n[model]\n'
            f'output = "y"\naxis = 0\n[results]\n{results}\n')


BETA = '"D(f, beta)" = "Sum(dy[k], (k, 1, N))"'
# d = S - N*(S/N) is zero for every N
ZERO_NODE = _bn_like('d = "Sum(x[k], (k, 1, N)) - N*mu"\nq = "x[i]*d/d"\ny = "gamma*q[i] + beta"',
                     BETA, "zero-node")
APART = _bn_like('r1 = "sqrt(mu)"\nr2 = "sqrt(-mu - 1)"\ny = "gamma*x[i] + beta + r1 + r2"',
                 BETA, "apart")


@pytest.mark.parametrize("claim", ["D(f, beta) = Sum(dy[k], (k, 1, N))", "q[i] - q[i] = 0"])
def test_a_node_cancelled_in_the_claim_or_below_f_still_counts(tmp_path, claim):
    """d = S - N*(S/N) is zero for every N; q[i] - q[i] cancels q before the check sees it,
    and D(f, beta) differentiates through q."""
    path = _model(tmp_path, ZERO_NODE, "zero-node")
    d = _derivation(path, claim)
    for n in (2, 3):
        (result,) = check(d, n)
        assert result.verdict == UNKNOWN and "in node q" in result.note, (n, result)
    (result,) = general.check_all(d)
    assert result.verdict == UNKNOWN, result


def test_a_negative_number_under_a_root_in_a_node(tmp_path):
    text = ZERO_NODE.replace('y = "gamma*q[i] + beta"',
                             'y = "gamma*x[i] + beta + sqrt(mu - mu - 1) - sqrt(mu - mu - 1)"')
    model = parse_model(text, str(tmp_path / "neg.toml"))
    report = verify_model(model, 2)
    assert all(r.verdict == UNKNOWN for r in report.results), report


def test_roots_of_two_nodes_never_real_together(tmp_path):
    path = _model(tmp_path, APART, "apart")
    for n in (1, 3):
        report = verify_model(parse_model(APART, str(path)), n)
        assert all(r.verdict == UNKNOWN for r in report.results), report
    (result,) = check(_derivation(path, "D(f, beta) = Sum(dy[k], (k, 1, N))"), 3)
    assert result.verdict == UNKNOWN and "no point was found" in result.note, result


def test_a_closed_form_root_never_real_with_a_node_root(tmp_path):
    """sqrt(mu - 1) in a node, sqrt(-mu - 1) in the closed form: never both real."""
    text = _bn_like('r1 = "sqrt(mu - 1)"\ny = "gamma*x[i] + beta + r1"',
                    '"D(f, beta)" = "Sum(dy[k], (k, 1, N)) + sqrt(-mu - 1)**2 + mu + 1"', "m3")
    model = parse_model(text, str(tmp_path / "m3.toml"))
    for n in (2, "all"):
        verdicts = {r.id: r.verdict for r in verify_model(model, n).results}
        assert verdicts["forward/dbeta"] == verdicts["backward/dbeta"] == UNKNOWN, (n, verdicts)


def test_every_n_verify_tests_node_roots_together(tmp_path):
    text = _bn_like('r1 = "sqrt(mu - 1)"\nr2 = "sqrt(-mu - 1)"\ny = "gamma*x[i] + beta + r1*r2"',
                    BETA, "m2")
    report = verify_model(parse_model(text, str(tmp_path / "m2.toml")), "all")
    assert all(r.verdict == UNKNOWN for r in report.results), report


def test_every_n_check_sees_a_name_folded_by_sympy_and_roots_sized_by_n(tmp_path):
    names = _bn_like('y = "gamma*x[i] + beta"', BETA, "nm")
    path = _model(tmp_path, names + '[names]\nz = "sqrt(mu - mu - 1)**2"\n', "nm")
    (result,) = general.check_all(_derivation(path, "D(f, beta) + z + 1 = Sum(dy[k], (k, 1, N))"))
    assert result.verdict == UNKNOWN, result
    sized = _bn_like('c = "x[i]*sqrt(4 - N)"\ny = "gamma*c[i] + beta"', BETA, "sz")
    path = _model(tmp_path, sized, "sz")
    (result,) = general.check_all(_derivation(path, "D(f, beta) = Sum(dy[k], (k, 1, N))"))
    assert result.verdict == PROVED and "where both sides are defined" in result.note, result
    assert "takes the root of 4 - N" in result.note
    (at_five,) = check(_derivation(path, "D(f, beta) = Sum(dy[k], (k, 1, N))"), 5)
    assert at_five.verdict == UNKNOWN  # and N = 5 is indeed undefined


def test_roots_of_every_element_found_positive_together(tmp_path):
    """sqrt(x[i]) for N = 8 elements: all x > 0 is a point, however rare among mixed signs."""
    text = ('name = "roots"\ntitle = "t"\n[leaves]\nx = "element"\nbeta = "set"\n[nodes]\n'
            'y = "sqrt(x[i]) + beta"\n[model]\noutput = "y"\naxis = 0\n[results]\n'
            '"D(f, beta)" = "Sum(dy[k], (k, 1, N))"\n')
    assert verify_model(parse_model(text, str(tmp_path / "roots.toml")), 8).ok


def test_no_verify_disproof_where_a_written_root_is_not_real(tmp_path):
    """sqrt(x)**2 in a node: SymPy reads it as x; at x1 = -3 it is not real, and wherever
    x1 > 0 the closed form dy1*sqrt(x1**2)/x1 = dy1 is right."""
    text = ('name = "rootsq"\ntitle = "t"\n[leaves]\nx = "element"\n[nodes]\n'
            'q = "sqrt(x[i])**2"\ny = "q[i]"\n[model]\noutput = "y"\naxis = 0\n[results]\n'
            '"D(f, x[j])" = "dy[j]*sqrt(x[j]**2)/x[j]"\n')
    model = parse_model(text, str(tmp_path / "rootsq.toml"))
    for n in (1, 2):
        verdicts = {r.id: r.verdict for r in verify_model(model, n).results}
        assert DISPROVED not in verdicts.values(), (n, verdicts)
    # a wrong closed form over the same node is still disproved, at a point where x1 > 0
    wrong = parse_model(text.replace("dy[j]*sqrt(x[j]**2)/x[j]", "2*dy[j]"),
                        str(tmp_path / "wrong.toml"))
    (result,) = [r for r in verify_model(wrong, 1).results if r.id == "forward/dx"]
    assert result.verdict == DISPROVED and Fraction(result.witness["point"]["x[1]"]) >= 0
