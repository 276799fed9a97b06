"""The all-N proof: symbolic N, rules proved by SymPy, conditions stated, no false `proved`."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from symbn import closed_form
from symbn import general as g
from symbn.differentiate import backward_gradient, forward_gradient
from symbn.model import BatchNorm
from symbn.prove import DISPROVED, PROVED, UNKNOWN, Algebra

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    return g.verify_all()


def test_every_theorem_and_lemma_is_proved_for_symbolic_n(report):
    assert report.ok and report.exit_code == 0
    ids = {r.id for r in report}
    for cid in ("rule/R1-linearity", "rule/R2-constant", "rule/R3-delta",
                "lemma/sum-centered", "lemma/sum-xhat", "lemma/dv-dmu", "lemma/dv-dx",
                "forward/dx", "backward/dx", "forward=backward/dx", "forward/dgamma",
                "backward/dgamma", "forward/dbeta", "backward/dbeta"):
        assert cid in ids, cid
        assert report[cid].verdict == PROVED, (cid, report[cid].note)


def test_conditions_and_rules_are_listed(report):
    for cid in ("forward/dx", "backward/dx", "lemma/dv-dx", "lemma/dmu-dx"):
        assert "if 1 <= j <= N" in report[cid].note, cid
        assert "R3" in report[cid].note, cid  # the delta rule is what needs the condition
    assert "if " not in report["lemma/sum-centered"].note  # no index, no condition
    assert "1 <= j <= N" in report["rule/R3-delta"].note
    assert report.info["n"] == "all"


def test_normal_form_of_the_lemmas():
    nz = g.Normalizer()
    assert nz.normal(sp.Sum(g.x[g.i] - g.mu(), (g.i, 1, g.N))) == 0
    assert nz.normal(sp.Sum(sp.KroneckerDelta(g.i, g.j) * g.x[g.i] ** 2, (g.i, 1, g.N))) \
        == sp.Symbol("x[j]") ** 2
    assert nz.conditions == {"1 <= j <= N"}
    assert nz.normal(sp.Sum(3, (g.i, 1, g.N))) == 3 * g.N


def test_sum_outside_the_fragment_is_unknown_not_proved():
    # true (Gauss), but the summand uses the index itself: not decided by R1-R3
    verdict, note, _ = g.decide(sp.Sum(g.i, (g.i, 1, g.N)), g.N * (g.N + 1) / 2)
    assert verdict == UNKNOWN and "summation index" in note
    verdict, _, _ = g.decide(sp.Sum(g.x[g.i], (g.i, 2, g.N)), sp.Integer(0))
    assert verdict == UNKNOWN


def test_identity_true_only_for_small_n_is_not_proved():
    """sum x_i^2 = (sum x_i)^2 holds at N = 1 only: never proved, disproved at N = 2."""
    lhs = sp.Sum(g.x[g.i] ** 2, (g.i, 1, g.N))
    rhs = sp.Sum(g.x[g.i], (g.i, 1, g.N)) ** 2
    assert g.decide(lhs, rhs)[0] == UNKNOWN
    result = g._claim("demo", lhs, rhs, "demo")
    assert result.verdict == DISPROVED and result.witness["N"] == 2


def _wrong(kind):
    mean_dy = sp.Sum(g.dy[g.i], (g.i, 1, g.N)) / g.N
    inv = g.v() + (0 if kind == "eps dropped" else g.eps)
    mean_xdy = sp.Sum((g.x[g.i] - g.mu()) * g.dy[g.i], (g.i, 1, g.N)) / g.N
    sign = -1 if kind == "wrong sign" else 1
    if kind == "1/(N-1) instead of 1/N":
        mean_dy = sp.Sum(g.dy[g.i], (g.i, 1, g.N)) / (g.N - 1)
    if kind == "mean term dropped":
        mean_dy = 0
    return g.gamma * inv ** sp.Rational(-1, 2) * (
        g.dy[g.j] - mean_dy - sign * (g.x[g.j] - g.mu()) * inv ** -1 * mean_xdy)


@pytest.mark.parametrize("kind", ["mean term dropped", "1/(N-1) instead of 1/N",
                                  "wrong sign", "eps dropped"])
def test_wrong_closed_forms_are_disproved_at_a_concrete_n(kind):
    result = g._claim("forward/dx", g.forward_dx(), _wrong(kind), kind)
    assert result.verdict == DISPROVED, (kind, result.note)
    w = result.witness
    n = w["N"]
    bn = BatchNorm(n)
    point = {sp.Symbol(name): Fraction(value) for name, value in w["point"].items()}
    for leaf in bn.leaves:
        point.setdefault(leaf, Fraction(0))
    assert point[bn.eps] > 0
    truth = bn.evaluate(closed_form.dx(bn, w["j"]), point)  # the concrete closed form
    wrong = bn.evaluate(g.instantiate(_wrong(kind), n, bn), point)
    assert truth != wrong, kind
    assert str(truth) == w["lhs"] or "separation" in w


@pytest.mark.parametrize("n,jj", [(1, 1), (3, 2), (4, 4)])
def test_symbolic_derivatives_agree_with_the_concrete_pipeline(n, jj):
    """Oracle: the concrete-N graph code, sharing nothing with the symbolic-N path."""
    bn = BatchNorm(n)
    alg = Algebra(bn)
    index = {g.j: jj, g.i: 1}
    fwd = g.instantiate(g.forward_dx(), n, bn, index)
    bwd = g.instantiate(g.backward(), n, bn, index)
    assert alg.decide(fwd, forward_gradient(bn, bn.x(jj))).verdict == PROVED
    assert alg.decide(bwd, backward_gradient(bn, bn.x(jj))).verdict == PROVED
    dgamma = g.instantiate(g.forward_param(g.gamma), n, bn, index)
    assert alg.decide(dgamma, closed_form.dgamma(bn)).verdict == PROVED


def test_paths_of_the_generic_graph_match_the_note():
    families = g.path_families()
    assert len(families) == 4  # via xhat_i directly, via v, via mu, via mu -> v
    assert sum(1 for p in families if p[1] == "mu") == 2  # two paths from mu
    assert sum(1 for p in families if p[:2] == ("x_j", "v")) == 1


def test_cli_verify_all_json():
    run = subprocess.run([sys.executable, "-m", "symbn", "verify", "--n", "all", "--json"],
                         cwd=REPO, text=True, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["ok"] is True and doc["n"] == "all"
    assert all(r["verdict"] == "proved" for r in doc["results"])
    assert run.stderr == ""  # no progress when stderr is not a terminal


# -- derivation files for every N ----------------------------------------------------------

def test_every_step_of_the_shipped_derivation_for_every_n(report):
    from symbn.derivation import load

    steps = [s.id for s in load("batchnorm").steps]
    for sid in steps:
        assert report["note/" + sid].verdict == PROVED, (sid, report["note/" + sid].note)
    assert "if i != j" in report["note/fw-dvterm-dx-other"].note  # `where` is carried


def _one_step(claim, where=""):
    from symbn.derivation import parse

    extra = f'where = "{where}"\n' if where else ""
    return parse(f'title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\n'
                 f'claim = "{claim}"\n{extra}')


def test_wrong_step_is_disproved_at_a_concrete_n_with_witness():
    d = _one_step("D(v, x[j]) = 1/N*(x[j] - mu)")  # the factor 2 dropped
    result = g.check_all(d)["s"]
    assert result.verdict == DISPROVED and result.witness["N"] >= 1
    assert result.witness["lhs"] != result.witness["rhs"]


def test_step_naming_a_concrete_row_is_unknown_not_proved():
    result = g.check_all(_one_step("D(mu, x[2]) = 1/N"))["s"]
    assert result.verdict == UNKNOWN and "concrete row" in result.note


def test_where_condition_is_needed_and_used():
    claim = "D((x[i] - mu)**2, x[j]) = -2/N*(x[i] - mu)"
    assert g.check_all(_one_step(claim, "i != j"))["s"].verdict == PROVED
    assert g.check_all(_one_step(claim))["s"].verdict == DISPROVED  # false for i = j


def test_cli_check_all():
    run = subprocess.run([sys.executable, "-m", "symbn", "check", "batchnorm", "--n", "all",
                          "--json"], cwd=REPO, text=True, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["n"] == "all" and all(r["verdict"] == "proved" for r in doc["results"])


@pytest.mark.parametrize("extra", [["--d", "2"], ["--method", "random"]])
def test_cli_verify_all_refuses_concrete_only_options(extra):
    run = subprocess.run([sys.executable, "-m", "symbn", "verify", "--n", "all", *extra],
                         cwd=REPO, text=True, capture_output=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"symbn: error: {extra[0]} has no meaning with --n all")
    assert len(run.stderr.splitlines()) == 1


def test_non_polynomial_summand_is_unknown():
    verdict, _, _ = g.decide(sp.Sum(sp.sqrt(g.x[g.i] ** 2 + 1), (g.i, 1, g.N)),
                                sp.Sum(sp.sqrt(g.x[g.i] ** 2 + 1), (g.i, 1, g.N)) + 1)
    assert verdict == UNKNOWN
