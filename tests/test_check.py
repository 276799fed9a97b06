"""symbn check: the shipped derivation proves, wrong steps are refuted by witnesses that are
re-evaluated here, hostile files are refused without side effects, and the wheel ships the
derivation files."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import mpmath
import pytest
import sympy as sp

from symbn import general
from symbn.check import assignments, check
from symbn.derivation import instantiate, load, parse
from symbn.model import BatchNorm
from symbn.prove import DISPROVED, PROVED, UNKNOWN

REPO = Path(__file__).resolve().parents[1]
EXACT = re.compile(r"-?\d+(/\d+)?")


def symbn(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "symbn", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def doc(claim: str, where: str = "", sid: str = "s1") -> str:
    extra = f"where = {json.dumps(where)}\n" if where else ""
    return (f'title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "{sid}"\n'
            f"claim = {json.dumps(claim)}\n{extra}")


# -- the shipped derivation ------------------------------------------------------------------

@pytest.mark.parametrize("n", range(1, 9))
def test_shipped_derivation_proves_every_step(n):
    report = check("batchnorm", n)
    steps = load("batchnorm").steps
    assert [r.id for r in report] == [s.id for s in steps]
    assert all(r.verdict == PROVED for r in report), [(r.id, r.note) for r in report]
    assert report.ok and report.exit_code == 0 and report.info["exhaustive"]
    # every assignment allowed by `where` was checked, e.g. n(n-1) pairs for i != j
    other = report["fw-dxhat-dx-other"]
    assert other.note == (f"{n * (n - 1)} assignments" if n > 1 else
                          "no index assignment satisfies 'i != j' for N = 1")
    assert report["fw-dxhat-dx-product-rule"].note == \
        f"{n * n} assignment{'s' if n > 1 else ''}"


def test_row_symmetry_agrees_with_every_assignment():
    every = check("batchnorm", 5, all_assignments=True)
    patterns = check("batchnorm", 5, all_assignments=False)
    assert [r.verdict for r in every] == [r.verdict for r in patterns] == \
        [PROVED] * len(every)
    assert patterns["fw-dxhat-dx-product-rule"].note == \
        "2 assignments by row symmetry: i=1, j=1; i=1, j=2"
    assert any("exchangeable" in note for note in patterns.notes)
    big = check("batchnorm", 10)
    assert big.ok and not big.info["exhaustive"]


@pytest.mark.parametrize("claim,split", [
    ("D(f, beta) = Sum(D(f, y[i]), (i, 1, N))", True),
    ("D(f, x[j]) = Sum(D(f, y[i])*D(y[i], x[j]), (i, 1, N))", True),
    ("D(f, beta)**2 = Sum(D(f, y[i]), (i, 1, N))**2", False),  # not linear in dy: whole
])
def test_linear_forms_in_dy_are_decided_by_coefficient(monkeypatch, claim, split):
    from symbn.prove import Algebra

    claims = []
    decide = Algebra.decide

    def recording(self, lhs, rhs, *args, **kwargs):
        claims.append(any(str(s).startswith("dy[") for s in sp.Tuple(lhs, rhs).free_symbols))
        return decide(self, lhs, rhs, *args, **kwargs)

    monkeypatch.setattr(Algebra, "decide", recording)
    (result,) = check(parse(doc(claim), "t.toml"), 4)
    assert result.verdict == PROVED
    assert claims and (not any(claims) if split else claims[0])
    if split:  # one claim per dy_i (and per assignment of j), none of them mentioning dy
        assert len(claims) >= 4


DX = ("gamma*(v + eps)**(-1/2)*(D(f, y[j]) - 1/N*Sum(D(f, y[i]), (i, 1, N)) - "
      "(x[j] - mu)*(v + eps)**(-1)*1/N*Sum((x[i] - mu)*D(f, y[i]), (i, 1, N)))")

SYMMETRY_CASES = [  # claims naming concrete rows, where patterns must include those rows
    ("D(x[i], x[2]) = 1", "", DISPROVED),
    ("D(x[i], x[2]) = KroneckerDelta(i, 2)", "", PROVED),
    ("D(x[i], x[2])*D(x[j], x[3]) = KroneckerDelta(i, 2)*KroneckerDelta(j, 3)", "", PROVED),
    ("D(x[i], x[2])*D(x[j], x[3]) = KroneckerDelta(i, 2)*KroneckerDelta(i, j)", "", DISPROVED),
    ("KroneckerDelta(i, 2)*x[j] = 0", "i != j", DISPROVED),
    ("KroneckerDelta(i, 2)*KroneckerDelta(j, 2) = 0", "i != j", PROVED),
    ("D(xhat[i], x[3]) = D(xhat[i], x[j])", "i != j", DISPROVED),
    # linear in dy: with row symmetry one dy_r-coefficient stands for the rows not named
    ("Sum(KroneckerDelta(i, 2)*dy[i], (i, 1, N)) = dy[2]", "", PROVED),
    ("Sum(KroneckerDelta(i, 2)*dy[i], (i, 1, N)) = dy[3]", "", DISPROVED),
    ("Sum(KroneckerDelta(i, j)*dy[i], (i, 1, N)) = dy[j]", "", PROVED),
    ("Sum(KroneckerDelta(i, j)*dy[i], (i, 1, N)) = dy[1]", "", DISPROVED),
    ("Sum(KroneckerDelta(i, j)*dy[i], (i, 1, N)) = Sum(dy[i], (i, 1, N))", "", DISPROVED),
    (f"D(f, x[j]) = {DX}", "", PROVED),
    (f"D(f, x[j]) = {DX} + KroneckerDelta(j, 3)*D(f, y[1])", "", DISPROVED),
]


@pytest.mark.parametrize("claim,where,verdict", SYMMETRY_CASES,
                         ids=[c for c, _, _ in SYMMETRY_CASES])
def test_index_patterns_respect_concrete_rows(claim, where, verdict):
    d = parse(doc(claim, where))
    for exhaustive in (True, False):
        assert check(d, 4, all_assignments=exhaustive)[0].verdict == verdict, exhaustive


def test_where_joins_conditions_with_and():
    d = parse(doc("KroneckerDelta(i, j)*x[k] = 0", "i != j and j != k"))
    (result,) = check(d, 3)
    assert result.verdict == PROVED and result.note == "12 assignments"  # 3 * 2 * 2
    assert len(assignments(d.steps[0], 3, exhaustive=False)) == 2  # k = i or k fresh


def test_patterns_cover_concrete_rows():
    step = parse(doc("D(x[i], x[2])*x[j] = 0")).steps[0]
    got = assignments(step, 4, exhaustive=False)
    assert got == [{"i": 2, "j": 2}, {"i": 2, "j": 1}, {"i": 1, "j": 2}, {"i": 1, "j": 1},
                   {"i": 1, "j": 3}]
    assert len(assignments(step, 4)) == 16


# -- wrong steps ----------------------------------------------------------------------------

WRONG = [
    ("sign", "D(v, x[j]) = -2/N*(x[j] - mu)", ""),
    ("n-minus-1", "D(v, x[j]) = 2/(N - 1)*(x[j] - mu)", ""),
    ("missing-eps", "P(xhat[i], mu) = -v**(-1/2)", ""),
    ("missing-eps-in-dxhat", ("D(xhat[i], x[j]) = -1/N*sqrt(v)**(-1)*(1 + (x[i] - mu)*"
                             "(x[j] - mu)*(v + eps)**(-1))"), "i != j"),
    ("wrong-exponent", "P(xhat[i], v) = (x[i] - mu)*(-1/2)*(v + eps)**(-1/2)", ""),
    ("x-for-xhat", "D(f, gamma) = Sum(D(f, y[i])*x[i], (i, 1, N))", ""),
    ("kronecker-case", "D(x[i], x[j]) = 1 - KroneckerDelta(i, j)", ""),
    ("note-literal-dxhat-dx", "P(xhat[i], x[j]) = 1", "i == j"),
    ("factored-reading-of-i-eq-j", ("D(xhat[i], x[j]) = (1 - 1/N)*(v + eps)**(-1/2)*"
                                   "(1 + (x[i] - mu)*(x[j] - mu)*(v + eps)**(-1))"), "i == j"),
    ("i-ne-j-form-for-i-eq-j", ("D(xhat[i], x[j]) = -1/N*(v + eps)**(-1/2)*"
                               "(1 + (x[i] - mu)*(x[j] - mu)*(v + eps)**(-1))"), "i == j"),
    ("missing-1-over-n", "D(mu, x[j]) = 1", ""),
    ("dv-dmu-without-mu", "P(v, mu) = -2/N*Sum(x[i], (i, 1, N))", ""),
    ("dbeta-times-gamma", "D(f, beta) = Sum(D(f, y[i])*gamma, (i, 1, N))", ""),
    ("final-sign", ("D(f, x[j]) = gamma*(v + eps)**(-1/2)*(-1/N*Sum(D(f, y[i]), (i, 1, N)) "
                   "+ (x[j] - mu)*(v + eps)**(-1)*1/N*Sum((x[i] - mu)*D(f, y[i]), (i, 1, N)) "
                   "+ D(f, y[j]))"), ""),
    ("final-sum-not-mean", ("D(f, x[j]) = gamma*(v + eps)**(-1/2)*(-Sum(D(f, y[i]), (i, 1, N))"
                           " - (x[j] - mu)*(v + eps)**(-1)*1/N*Sum((x[i] - mu)*D(f, y[i]), "
                           "(i, 1, N)) + D(f, y[j]))"), ""),
    ("chain-middle-link", "Sum(x[i] - mu, (i, 1, N)) = Sum(x[i], (i, 1, N)) - mu = 0", ""),
    ("concrete-row", "D(x[2], x[i]) = 0", ""),
    ("sigma-squared", "P(xhat[i], mu) = -1/sigma**2", ""),
    ("second-derivative-constant", "D(D(v, x[j]), x[j]) = 0", ""),  # both sides constants
    ("second-derivative-delta", "D(D(v, x[j]), x[k]) = 2/N*KroneckerDelta(j, k)", ""),
    ("path-sum-without-mu", ("D(f, x[j]) = Sum(D(f, y[i])*P(y[i], xhat[i])*(KroneckerDelta(i, j)"
                            "*P(xhat[i], x[i]) + P(xhat[i], v)*P(v, x[j])), (i, 1, N))"), ""),
]


def reevaluate(step, witness: dict, n: int) -> None:
    """The witness separates the link it names, by plain evaluation at its point."""
    texts = step.link_texts()
    (k,) = [k for k in range(len(texts) - 1) if f"{texts[k]} = {texts[k + 1]}" == witness["link"]]
    assignment = {name: int(r) for name, r in witness["assignment"].items()}
    assert sorted(assignment) == [str(s) for s in step.free_indices]
    assert all(1 <= r <= n for r in assignment.values())
    bn = BatchNorm(n)
    leaves = {str(s): s for s in bn.leaves}
    assert all(EXACT.fullmatch(value) for value in witness["point"].values())
    point = {leaves[name]: Fraction(value) for name, value in witness["point"].items()}
    assert point.get(bn.eps, 1) > 0
    lhs = bn.evaluate(instantiate(step.links[k], bn, assignment), point)
    rhs = bn.evaluate(instantiate(step.links[k + 1], bn, assignment), point)
    assert not (lhs.free_symbols or rhs.free_symbols), "the point gives every leaf"
    if lhs.is_Rational and rhs.is_Rational:
        assert lhs != rhs and str(lhs) == witness["lhs"] and str(rhs) == witness["rhs"]
    else:  # algebraic values: 60 significant digits, far from the gap
        gap = sp.N(lhs - rhs, 60)
        assert abs(gap) > sp.Rational(1, 10 ** 6), gap


@pytest.mark.parametrize("name,claim,where", WRONG, ids=[w[0] for w in WRONG])
@pytest.mark.parametrize("exhaustive", [True, False], ids=["every", "patterns"])
def test_wrong_step_is_disproved_with_a_separating_witness(name, claim, where, exhaustive):
    d = parse(doc(claim, where), f"{name}.toml")
    (result,) = check(d, 3, all_assignments=exhaustive)
    assert result.verdict == DISPROVED, (name, result.note)
    reevaluate(d.steps[0], result.witness, 3)


@pytest.mark.parametrize("claim", [
    "sqrt(x[1] - x[2] - 1)**2*sqrt(x[2] - x[1] - 1)**2 = (x[1] - x[2] - 1)*(x[2] - x[1] - 1)",
    "sqrt(x[1] - x[2] - 1)*sqrt(x[2] - x[1] - 1) = sqrt(x[2] - x[1] - 1)*sqrt(x[1] - x[2] - 1)",
    "sqrt(x[j] - mu - 1)*sqrt(mu - x[j] - 1) = sqrt(mu - x[j] - 1)*sqrt(x[j] - mu - 1)",
])
def test_radicands_never_positive_together_are_not_proved(claim):
    """Each radicand is positive somewhere, but x1 - x2 - 1 > 0 and x2 - x1 - 1 > 0 never
    hold together: the left side is defined nowhere, so the claim is vacuous, not proved."""
    (result,) = check(parse(doc(claim), "joint.toml"), 3)
    assert result.verdict == UNKNOWN and "no point was found" in result.note, result


@pytest.mark.parametrize("claim", [
    # each side alone is defined (x1 - x2 >= 1, x2 - x1 >= 1), never both: SymPy reads
    # sqrt(u)**2 as u, after which the two sides are the same expression
    "sqrt(x[1] - x[2] - 1)**2 + 1 = -sqrt(x[2] - x[1] - 1)**2 - 1",
    "sqrt(x[j] - mu - 1)**2 + 1 = -sqrt(mu - x[j] - 1)**2 - 1",
    "sqrt(eps - 1)**2 + 1 = 1/2 - sqrt(1/2 - eps)**2",
])
def test_sides_never_defined_together_are_not_proved(claim):
    d = parse(doc(claim), "apart.toml")
    (result,) = check(d, 3)
    assert result.verdict == UNKNOWN and "no point was found where both are" in result.note, \
        result
    if "[j]" in claim:  # and for every N, where no N was shown to have such a point
        (result,) = general.check_all(d)
        assert result.verdict == UNKNOWN and "not shown defined at any N" in result.note, \
            result


def test_a_step_defined_for_no_n_is_not_proved_for_every_n():
    d = parse(doc("sqrt(x[j] - mu - 1)**2 + sqrt(mu - x[j] - 1)**2 = -2"), "nowhere.toml")
    (result,) = general.check_all(d)
    assert result.verdict == UNKNOWN and "not shown defined at any N = 1..4" in result.note


def test_a_radicand_positive_only_for_small_eps_is_found_defined():
    """1/2 - eps > 0 needs eps < 1/2: the points tried include small fractions."""
    (result,) = check(parse(doc("sqrt(1/2 - eps)**2 = 1/2 - eps"), "small.toml"), 3)
    assert result.verdict == PROVED, result


@pytest.mark.parametrize("where", ["i == j and i != j", "i == j and j == k and i != k"])
def test_a_where_that_never_holds_is_refused(where):
    from symbn.errors import SymbnError

    with pytest.raises(SymbnError, match="never holds"):
        parse(doc("x[i] = x[j] + 1" if "k" not in where else "x[i] = x[k] + 1", where),
              "never.toml")


def test_a_timeout_beyond_the_platforms_timer_is_accepted():
    run = symbn("check", "batchnorm", "--n", "2", "--timeout", "1e12")
    assert run.returncode == 0 and "proved" in run.stdout and not run.stderr, run


@pytest.mark.parametrize("claim", [
    "sqrt(x[1] - x[2])*sqrt(x[1] - x[3]) = sqrt((x[1] - x[2])*(x[1] - x[3]))",
    "sqrt(x[1] - x[2] - 1)**2 = x[1] - x[2] - 1",
])
def test_radicands_positive_together_still_prove(claim):
    (result,) = check(parse(doc(claim), "joint.toml"), 3)
    assert result.verdict == PROVED, result


@pytest.mark.parametrize("claim, verdict", [
    ("sqrt(x[1]**4) = x[1]**2", PROVED),  # |x|**2 = x**2: no sign needed
    ("sqrt(x[1]**(-4)) = x[1]**(-2)", PROVED),
    ("sqrt(xhat[1]**4*(v + eps)) = xhat[1]**2*sigma", PROVED),
    ("sqrt(x[1]**6) = x[1]**3", DISPROVED),  # |x|**3, negative x separates
    ("sqrt(x[1]**2) = x[1]", DISPROVED),
])
def test_roots_of_even_powers(claim, verdict):
    d = parse(doc(claim), "even.toml")
    (result,) = check(d, 3)
    assert result.verdict == verdict, result
    if verdict == DISPROVED:  # re-evaluated independently: the sides differ there
        reevaluate(d.steps[0], result.witness, 3)
        assert Fraction(result.witness["point"]["x[1]"]) < 0


def test_disproof_names_the_failing_link():
    d = parse(doc("Sum(x[i] - mu, (i, 1, N)) = N*mu - N*mu = Sum(x[i], (i, 1, N)) - 1"))
    (result,) = check(d, 2)
    assert result.witness["link"] == "N*mu - N*mu = Sum(x[i], (i, 1, N)) - 1"
    assert "link 2" in result.note


# -- the command line --------------------------------------------------------------------------

def test_cli_check_json(tmp_path):
    run = symbn("check", "batchnorm", "--n", "3", "--json")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["ok"] is True and document["n"] == 3
    assert [r["id"] for r in document["results"]] == [s.id for s in load("batchnorm").steps]
    assert {r["verdict"] for r in document["results"]} == {"proved"}


def test_cli_disproof_exit_1_with_exact_witness():
    path = REPO / "derivations" / "examples" / "batchnorm-bessel.toml"
    run = symbn("check", str(path), "--n", "3", "--json")
    assert run.returncode == 1, run.stderr
    results = {r["id"]: r for r in json.loads(run.stdout)["results"]}
    assert results["dmu"]["verdict"] == "proved"
    result = results["dv"]
    assert result["verdict"] == "disproved"
    witness = result["witness"]
    assert all(EXACT.fullmatch(v) for v in [*witness["point"].values(), witness["lhs"],
                                            witness["rhs"]])
    assert witness["lhs"] != witness["rhs"]
    # independently: the biased variance differentiated by SymPy at the witness
    xs = sp.symbols("x1:4")
    v = sum((x - sum(xs) / 3) ** 2 for x in xs) / 3
    j = int(witness["assignment"]["j"])
    point = {x: sp.Rational(witness["point"][f"x[{k}]"]) for k, x in enumerate(xs, 1)}
    assert sp.diff(v, xs[j - 1]).subs(point) == sp.Rational(witness["lhs"])
    mu = sum(point.values()) / 3
    assert sp.Rational(2, 3 - 1) * (point[xs[j - 1]] - mu) == sp.Rational(witness["rhs"])
    human = symbn("check", str(path), "--n", "3")
    assert human.returncode == 1 and "dv: counterexample" in human.stdout
    assert f"x[1] = {witness['point']['x[1]']}" in human.stdout


def test_readme_example_undefined_steps_at_n_1_and_every_n():
    """derivations/examples/undefined.toml: undefined sides are unknown at N = 1 (never
    proved), proved for N >= 2 where both sides are defined; the roots of squares decided."""
    path = str(REPO / "derivations" / "examples" / "undefined.toml")
    one = check(path, 1)
    assert {r.id: r.verdict for r in one} == {
        "ratio": UNKNOWN, "centred-sum": UNKNOWN, "abs-square": PROVED,
        "small-eps": DISPROVED, "bessel": UNKNOWN, "one-side": UNKNOWN}
    assert "division by zero at N = 1" in one["ratio"].note
    eps = sp.Rational(one["small-eps"].witness["point"]["eps"])
    assert 0 < eps < sp.Rational(1, 2)
    assert sp.sqrt((2 * eps - 1) ** 2) != 2 * eps - 1  # |2 eps - 1| against 2 eps - 1
    every = general.check_all(path)
    assert {r.id: r.verdict for r in every} == {
        "ratio": PROVED, "centred-sum": UNKNOWN, "abs-square": PROVED,
        "small-eps": DISPROVED, "bessel": PROVED, "one-side": PROVED}
    assert "identically zero for every N" in every["centred-sum"].note
    assert "every N >= 2 where both sides are defined" in every["bessel"].note


def test_cli_budget_exhausted_is_unknown_exit_3():
    run = symbn("check", "batchnorm", "--n", "8", "--timeout", "0.001", "--json")
    assert run.returncode == 3, run.stderr
    verdicts = {r["verdict"] for r in json.loads(run.stdout)["results"]}
    assert UNKNOWN in verdicts and DISPROVED not in verdicts


def test_cli_verify_includes_the_shipped_derivation():
    run = symbn("verify", "--n", "2", "--json")
    assert run.returncode == 0, run.stderr
    ids = [r["id"] for r in json.loads(run.stdout)["results"]]
    assert "forward/dx" in ids
    assert [i for i in ids if i.startswith("note/")] == \
        ["note/" + s.id for s in load("batchnorm").steps]


def test_cli_refuses_sizes_beyond_the_exact_method():
    run = symbn("check", "batchnorm", "--n", "1000000", "--timeout", "5")
    assert run.returncode == 2 and "beyond the exact method" in run.stderr


CHECK_TIME_ERRORS = [
    ("x[5] = x[5]", "", "step 's1': row 5 is outside 1..N = 3; use --n 5 or more"),
    ("P(xhat[i], x[j]) = 0", "", ("step 's1' (i=1, j=2): x[2] is not a direct parent of "
                                 "xhat[1]; its parents are x[1], mu, v, eps")),
]


@pytest.mark.parametrize("claim,where,message", CHECK_TIME_ERRORS,
                         ids=[c for c, _, _ in CHECK_TIME_ERRORS])
def test_cli_errors_found_for_a_given_n(tmp_path, claim, where, message):
    path = tmp_path / "e.toml"
    path.write_text(doc(claim, where), encoding="utf-8")
    run = symbn("check", str(path), "--n", "3")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"symbn: error: {path}: {message}\n"


# -- hostile files ------------------------------------------------------------------------------

def toml_file(claim: str) -> bytes:
    return doc(claim).encode()


HOSTILE = [
    ("import", toml_file("__import__('os').system('touch MARKER') = 0"), "calls something"),
    ("attribute", toml_file("x.__class__.__base__.__subclasses__() = 0"), "calls something"),
    ("attribute-dict", toml_file("{}.__class__ = 0"), "attribute access"),
    ("lambda", toml_file("(lambda: open('MARKER', 'w'))() = 0"), "calls something"),
    ("comprehension", toml_file("[open('MARKER', 'w') for k in [1]] = 0"), "comprehension"),
    ("string", toml_file("'MARKER' = 0"), "str constant"),
    ("f-string", toml_file("f\"{open('MARKER', 'w')}\" = 0"), "f-string"),
    ("keyword", toml_file("Sum(x[k], (k, 1, N), evaluate=open('MARKER', 'w')) = 0"),
     "keyword arguments are not allowed"),
    ("starred", toml_file("KroneckerDelta(*[i, j]) = 0"), "starred arguments"),
    ("walrus", toml_file("(k := open('MARKER', 'w')) = 1"), "(assignment)"),
    ("conditional", toml_file("x[1] if open('MARKER', 'w') else 0 = 0"), "(conditional)"),
    ("eval", toml_file("eval(chr(111)) = 0"), "calls something"),
    ("sympify-string", toml_file("S(\"__import__('os').system('touch MARKER')\") = 0"),
     "calls something"),
    ("dunder-name", toml_file("__builtins__ = 0"), "not a known name"),
    ("subscript", toml_file("open[0] = 0"), "subscripts only apply to x, xhat, y, dy"),
    ("huge-exponent", toml_file("x[1]**1000000000 = 0"), "exponent"),
    ("power-tower", toml_file("2**2**2**2**2**2**2 = 0"), "exponent"),
    ("degree-blowup", toml_file("*".join(["(x[1] + x[2])**8"] * 10) + " = 0"),
     "can reach polynomial degree"),
    ("distinct-denominators", toml_file("Sum(Sum(Sum(1/(x[i] + x[j] + x[k] + eps)**8, "
                                        "(i, 1, N)), (j, 1, N)), (k, 1, N)) = 1"),
     "can reach polynomial degree"),
    ("huge-sum-bound", toml_file("Sum(x[k], (k, 1, 10**100)) = 0"), "sums run to N"),
    ("huge-integer", toml_file("9" * 3000 + " = 0"), "larger than"),
    ("huge-row", toml_file("x[99999999999999999999] = 0"), "row larger than"),
    ("deep-brackets", toml_file("(" * 200 + "x[1]" + ")" * 200 + " = 0"), "nested more than"),
    ("deep-unary", toml_file("-" * 3000 + "x[1] = 0"), "nested"),
    ("deep-derivatives", toml_file("D(D(D(D(D(v, x[1]), x[1]), x[1]), x[1]), x[1]) = 0"),
     "D and P nest more than"),
    ("megabyte-line", toml_file("x[1] + " * 150000 + "x[1] = 0"), "larger than 256 KiB"),
    ("long-claim", toml_file("x[1] + " * 1000 + "x[1] = 0"), "more than 4000"),
    ("nul-byte", toml_file("x[1]\x00 = 0"), "null"),
    ("not-utf8", b'title = "\xff\xfe"\n', "not UTF-8"),
    ("deep-toml", b"a = " + b"[" * 100000 + b"]" * 100000 + b"\n",
     "malformed TOML: nested too deeply"),
    ("big-toml", b"a = " + b"[" * 200000 + b"]" * 200000 + b"\n", "larger than 256 KiB"),
    ("nested-toml", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "malformed TOML"),
    ("malformed-toml", b'title = "t\nclaim = "__import__(1)"\n', "malformed TOML"),
]


# One process runs the command line on every hostile file (each in its own directory), so
# the table costs one interpreter start; the process as a whole must finish within seconds.
DRIVER = """
import contextlib, io, json, os, sys, time
from symbn.cli import main
out = {}
for folder in sys.argv[1:]:
    os.chdir(folder)
    err, std = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            code = main(["check", "h.toml", "--n", "3"])
        except SystemExit as stop:
            code = stop.code
    out[folder] = {"code": code, "stderr": err.getvalue(), "stdout": std.getvalue(),
                   "seconds": time.monotonic() - start}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    folders = {}
    for name, content, _ in HOSTILE:
        folder = tmp_path_factory.mktemp(name)
        (folder / "h.toml").write_bytes(content)
        folders[name] = folder
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", DRIVER, *map(str, folders.values())],
                         cwd=REPO, env=env, text=True, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout)
    return {name: (folder, results[str(folder)]) for name, folder in folders.items()}


@pytest.mark.parametrize("name,content,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_rejected_without_side_effects(hostile_runs, name, content, message):
    folder, run = hostile_runs[name]
    assert run["code"] == 2, (name, run["stdout"][-300:], run["stderr"][-300:])
    lines = run["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("symbn: error: h.toml: "), lines[:3]
    assert message in lines[0], lines[0]
    assert "Traceback" not in run["stderr"] and run["stdout"] == ""
    assert len(lines[0]) < 400
    assert not (folder / "MARKER").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["h.toml"]


def test_hostile_input_from_a_fresh_process(tmp_path):
    path = tmp_path / "h.toml"
    path.write_bytes(toml_file("__import__('os').system('touch MARKER') = 0"))
    run = symbn("check", "h.toml", "--n", "3", cwd=tmp_path, timeout=30)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("symbn: error: h.toml: step 's1': ")
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("target,message", [("/dev/zero", "not a regular file"),
                                            (".", "not a regular file"),
                                            ("missing.toml", "no such file")])
def test_non_files_are_refused(tmp_path, target, message):
    run = symbn("check", target, cwd=tmp_path, timeout=30)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


# -- packaging --------------------------------------------------------------------------------

def test_wheel_ships_the_derivations_and_check_runs_from_anywhere(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("symbn", "derivations"):
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w",
                            str(tmp_path / "dist"), "-q"], cwd=src, text=True,
                           capture_output=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("symbn-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.endswith(".toml")}
        assert shipped == {"symbn/derivations/" + p.name
                           for p in (REPO / "derivations").glob("*.toml")} | \
            {"symbn/models/" + p.name for p in (REPO / "symbn" / "models").glob("*.toml")}
        assert "symbn/models/layernorm.toml" in shipped
        assert zf.read("symbn/derivations/batchnorm.toml") == \
            (REPO / "derivations" / "batchnorm.toml").read_bytes()
    # a plain, non-editable install: the files come from the package, not the checkout
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(site), str(wheel)], text=True,
                             capture_output=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    runs = {}
    for command in ("check batchnorm", "verify"):
        run = subprocess.run([sys.executable, "-m", "symbn", *command.split(), "--n", "2",
                              "--json"], cwd=away, env=env, text=True, capture_output=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        runs[command] = json.loads(run.stdout)
    assert runs["check batchnorm"]["derivation"] == \
        str(site / "symbn" / "derivations" / "batchnorm.toml")
    assert runs["verify"]["results"][-1]["id"] == "note/modes-agree"


@pytest.mark.parametrize("n", ["1", "3"])
def test_sides_apart_by_a_tiny_constant_are_told_apart(tmp_path, n):
    """sqrt(eps) vs sqrt(eps + 10**-128): SymPy 1.14's factor cache used to abort the square
    root of the sample point's large rational (exit 4), and 256 bits could not separate it."""
    tiny = "1/((10**8)**8*(10**8)**8)"
    path = tmp_path / "tiny.toml"
    path.write_text(doc(f"sqrt(eps) = sqrt(eps + {tiny})", sid="apart")
                    + f'[[step]]\nid = "same"\nclaim = "sqrt(eps + {tiny})**2 = eps + {tiny}"\n')
    run = symbn("check", str(path), "--n", n, "--json")
    assert run.returncode == 1, run.stderr
    results = {r["id"]: r for r in json.loads(run.stdout)["results"]}
    assert results["same"]["verdict"] == "proved"
    assert results["apart"]["verdict"] == "disproved"
    eps = Fraction(results["apart"]["witness"]["point"]["eps"])
    with mpmath.workdps(400):  # independently: the two sides at the witness
        e = mpmath.mpf(eps.numerator) / eps.denominator
        gap = mpmath.sqrt(e) - mpmath.sqrt(e + mpmath.mpf(10) ** -128)
        assert eps > 0 and gap < -mpmath.mpf(10) ** -140
