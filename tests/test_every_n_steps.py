"""Derivation files about model files, every N (`symbn.every_n_steps`): proved steps agree
with the concrete checker at N = 1..4, false steps are disproved with a witness that
re-evaluates, anything outside the fragment is unknown."""

import json
import subprocess
import sys

import pytest
import sympy as sp

from symbn.derivation import Derivation, _Instantiate, parse
from symbn.general import check_all
from symbn.prove import DISPROVED, PROVED, UNKNOWN
from symbn.stepcheck import check_steps

LAYERNORM_TRUE = {
    "dmu": ("D(mu, x[j]) = 1/N", ""),
    "dxhat": ("D(xhat[i], x[j]) = (KroneckerDelta(i, j) - 1/N - xhat[i]*xhat[j]/N)/sigma", ""),
    "dxhat-offdiag": ("D(xhat[i], x[j]) = (-1/N - xhat[i]*xhat[j]/N)/sigma", "i != j"),
    "dgamma": ("D(f, gamma[j]) = dy[j]*xhat[j]", ""),
    "local-y-gamma": ("P(y[i], gamma[i]) = xhat[i]", ""),
    "local-xhat-x": ("P(xhat[i], x[j]) = 1/sigma", "i == j"),
    "dv": ("D(v, x[j]) = 2*(x[j] - mu)/N", ""),
    "local-v-mu": ("P(v, mu) = -2*Sum(x[k] - mu, (k, 1, N))/N = 0", ""),
    "dx-chain": ("D(f, x[j]) = Sum(dy[i]*gamma[i]*D(xhat[i], x[j]), (i, 1, N))", ""),
    "dx-closed": (("D(f, x[j]) = (gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N"
                  " - xhat[j]*Sum(xhat[k]*gamma[k]*dy[k], (k, 1, N))/N)/sigma"), ""),
    "deps": ("D(f, eps) = -Sum(dy[k]*gamma[k]*xhat[k], (k, 1, N))/(2*sigma**2)", ""),
}
LAYERNORM_FALSE = {  # gamma treated as a scalar; Bessel's correction where there is none
    "gamma-scalar": "D(f, x[j]) = (gamma[j]*dy[j] - gamma[j]*Sum(dy[k], (k, 1, N))/N"
                    " - gamma[j]*xhat[j]*Sum(xhat[k]*dy[k], (k, 1, N))/N)/sigma",
    "bessel": "D(v, x[j]) = 2*(x[j] - mu)/(N - 1)",
}


def _derivation(steps: dict, model: str = "layernorm", path: str = "<test>") -> Derivation:
    text = [f'title = "t"\nmodel = "{model}"']
    for sid, (claim, where) in steps.items():
        text.append(f'[[step]]\nid = "{sid}"\nclaim = "{claim}"'
                    + (f'\nwhere = "{where}"' if where else ""))
    return parse("\n".join(text), path)


def _one(d: Derivation, sid: str) -> Derivation:
    return Derivation("one", d.model, "", d.path, [s for s in d.steps if s.id == sid], d.spec)


def _reevaluate(d: Derivation, witness: dict) -> tuple[sp.Expr, sp.Expr]:
    """Both sides of the witness's link at its point, by plain exact evaluation."""
    step = d.steps[0]
    g = d.spec.instantiate(witness["N"])
    k = step.link_texts().index(witness["link"].split(" = ")[0].strip())
    point = {sp.Symbol(name): sp.Rational(value) for name, value in witness["point"].items()}
    values = []
    for link in step.links[k:k + 2]:
        side = _Instantiate(g).run(link, {a: int(r) for a, r in witness["assignment"].items()})
        values.append(sp.nsimplify(g.evaluate(side, point)))
    return values[0], values[1]


def test_layernorm_true_steps_proved_and_concrete_agrees():
    d = _derivation(LAYERNORM_TRUE)
    report = check_all(d)
    for sid in LAYERNORM_TRUE:
        result = report[sid]
        assert result.verdict == PROVED, (sid, result.note)
        assert "for every N >= 1" in result.note, result.note
        for n in (1, 2, 3, 4):
            assert check_steps(_one(d, sid), n)[0].verdict == PROVED, (sid, n)


@pytest.mark.parametrize("sid", sorted(LAYERNORM_FALSE))
def test_layernorm_false_steps_disproved_with_witness(sid):
    d = _derivation({sid: (LAYERNORM_FALSE[sid], "")})
    result = check_all(d)[sid]
    assert result.verdict == DISPROVED, result.note
    witness = result.witness
    again = check_steps(d, witness["N"])[0]
    assert again.verdict == DISPROVED and again.witness["point"] == witness["point"]
    lhs, rhs = _reevaluate(d, witness)
    assert lhs != rhs and (str(lhs), str(rhs)) == (witness["lhs"], witness["rhs"])


def test_rmsnorm_steps():
    steps = {
        "dms": ("D(ms, x[j]) = 2*x[j]/N", ""),
        "dx": (("D(f, x[j]) = (gamma[j]*dy[j] - xhat[j]*Sum(gamma[k]*dy[k]*xhat[k], "
               "(k, 1, N))/N)/sigma"), ""),
        "dgamma": ("D(f, gamma[j]) = dy[j]*xhat[j]", ""),
        "wrong": ("D(ms, x[j]) = x[j]/N", ""),
    }
    d = _derivation(steps, "rmsnorm")
    report = check_all(d)
    for sid in ("dms", "dx", "dgamma"):
        assert report[sid].verdict == PROVED, (sid, report[sid].note)
        for n in (1, 2, 3, 4):
            assert check_steps(_one(d, sid), n)[0].verdict == PROVED, (sid, n)
    assert report["wrong"].verdict == DISPROVED
    assert check_steps(_one(d, "wrong"), report["wrong"].witness["N"])[0].verdict == DISPROVED


def test_user_model_file_beside_the_derivation(tmp_path):
    (tmp_path / "scale.toml").write_text(
        'name = "scale"\ntitle = "mean scaling"\n[leaves]\nx = "element"\n'
        'a = "set"\neps = "positive"\n[nodes]\nm = "Sum(x[k]**2, (k, 1, N))/N"\n'
        'y = "a*x[i]*(m + eps)**(-1/2)"\n[model]\noutput = "y"\naxis = -1\n')
    path = tmp_path / "steps.toml"
    path.write_text(
        'title = "user model"\nmodel = "scale.toml"\n'
        '[[step]]\nid = "dm"\nclaim = "D(m, x[j]) = 2*x[j]/N"\n'
        '[[step]]\nid = "da"\nclaim = "D(f, a) = Sum(dy[k]*x[k], (k, 1, N))/sqrt(m + eps)"\n'
        '[[step]]\nid = "da-wrong"\nclaim = "D(f, a) = Sum(dy[k]*x[k], (k, 1, N))"\n')
    run = subprocess.run([sys.executable, "-m", "symbn", "check", str(path), "--n", "all",
                          "--json"], capture_output=True, text=True, timeout=300)
    doc = json.loads(run.stdout)
    verdicts = {r["id"]: r["verdict"] for r in doc["results"]}
    assert verdicts == {"dm": PROVED, "da": PROVED, "da-wrong": DISPROVED}, run.stdout
    from symbn.derivation import load

    d = load(str(path))
    for sid in ("dm", "da"):
        for n in (1, 2, 3, 4):
            assert check_steps(_one(d, sid), n)[0].verdict == PROVED


@pytest.mark.parametrize("claim, where, reason", [
    ("D(mu, x[1]) = 1/N", "", "concrete row"),
    ("P(xhat[i], x[j]) = 1/sigma", "", "direct parent"),  # not an edge for i != j
    ("P(y[i], gamma[j]) = xhat[i]", "", "direct parent"),
])
def test_outside_the_fragment_is_unknown(claim, where, reason):
    result = check_all(_derivation({"s": (claim, where)}))["s"]
    assert result.verdict == UNKNOWN and reason in result.note, result.note


def test_where_is_honoured():
    claim = "D(xhat[i], x[j]) = (-1/N - xhat[i]*xhat[j]/N)/sigma"
    assert check_all(_derivation({"s": (claim, "i != j")}))["s"].verdict == PROVED
    assert check_all(_derivation({"s": (claim, "")}))["s"].verdict == DISPROVED  # i = j
    same = "D(xhat[i], x[j]) = (1 - 1/N - xhat[i]**2/N)/sigma"
    assert check_all(_derivation({"s": (same, "i == j")}))["s"].verdict == PROVED


def test_where_equalities_chain_through_a_shared_index():
    """j == k and i == k make i, j and k one row: the claim is true for every N (both sides
    3 x[i]), and false without the chain (i = k, j another row)."""
    claim = "x[j] + x[k] + x[i] = 3*x[k] + KroneckerDelta(i, j) - 1"
    for where in ("j == k and i == k", "i == k and j == k", "i == j and j == k"):
        assert check_all(_derivation({"s": (claim, where)}))["s"].verdict == PROVED, where
    result = check_all(_derivation({"s": (claim, "i == k")}))["s"]
    assert result.verdict == DISPROVED
    lhs, rhs = _reevaluate(_derivation({"s": (claim, "i == k")}), result.witness)
    assert lhs != rhs


def test_definedness():
    d = _derivation({"vv": ("v/v = 1", ""), "zero": ("1/(x[i] - x[j]) = 1/(x[i] - x[j])", "")})
    report = check_all(d)
    assert report["vv"].verdict == PROVED and "every N >= 2" in report["vv"].note
    assert report["zero"].verdict == UNKNOWN and "j = i" in report["zero"].note


def test_bound_index_renamed_apart():
    # the Sum's j is not the free j: D(Sum_j x_j^2, x[j]) = 2 x_j
    d = _derivation({"s": ("D(Sum(x[j]**2, (j, 1, N)), x[j]) = 2*x[j]", "")})
    assert check_all(d)["s"].verdict == PROVED


def test_root_of_the_zero_polynomial_is_zero():
    """sqrt(E**2) with E zero for every N is 0 (not a second radicand); a false claim next to
    it stays disproved with a witness, and dividing by it is undefined, never proved."""
    d = _derivation({
        "sum-dx": ("sqrt(Sum(D(xhat[j], x[k]), (k, 1, N))**2) = 0", ""),
        "beside": ("sqrt(Sum(x[k] - mu, (k, 1, N))**2) + sigma = sigma", ""),
        "false": ("sqrt(Sum(D(f, x[k])*x[k], (k, 1, N))**2) = 0", ""),
        "divide": ("1/sqrt(Sum(x[k] - mu, (k, 1, N))**2) = 1", ""),
    })
    report = check_all(d)
    assert report["sum-dx"].verdict == PROVED and report["beside"].verdict == PROVED
    assert report["false"].verdict == DISPROVED
    lhs, rhs = _reevaluate(_one(d, "false"), report["false"].witness)
    assert lhs != rhs
    assert report["divide"].verdict == UNKNOWN
