"""The derivation parser: templates exactly as written, instantiation into the model, and
precise errors for everything outside the whitelist."""

import json
from pathlib import Path

import pytest
import sympy as sp

from symbn.derivation import INDEX, INDEXED, SCALARS, D, N, P, instantiate, load, parse
from symbn.differentiate import local_partial, total_derivative
from symbn.errors import SymbnError
from symbn.model import BatchNorm

i, j, k = INDEX["i"], INDEX["j"], INDEX["k"]
x, xhat, y, dy = (INDEXED[name] for name in ("x", "xhat", "y", "dy"))
mu, v, eps, gamma, sigma = (SCALARS[name] for name in ("mu", "v", "eps", "gamma", "sigma"))


def doc(*steps: tuple[str, str, str]) -> str:
    """A derivation file with steps (id, claim, where)."""
    out = ['title = "t"', 'model = "batchnorm"']
    for sid, claim, where in steps:
        out += ["[[step]]", f"id = {json.dumps(sid)}", f"claim = {json.dumps(claim)}"]
        if where:
            out.append(f"where = {json.dumps(where)}")
    return "\n".join(out) + "\n"


def links(claim: str, where: str = "") -> tuple:
    return parse(doc(("s", claim, where))).steps[0].links


# -- templates --------------------------------------------------------------------------------

def test_names_become_the_documented_sympy_objects():
    lhs, rhs = links("D(v, x[j]) = 2/N*(x[j] - mu)")
    assert lhs == D(v, sp.Indexed(sp.IndexedBase("x"), sp.Symbol("j", integer=True)))
    assert isinstance(lhs, D) and lhs.args == (sp.Symbol("v"), x[j])
    assert N == sp.Symbol("N", integer=True, positive=True) and N in rhs.free_symbols
    assert sp.Symbol("mu") in rhs.free_symbols
    # the template is not canonicalised away: 2/N stays a product with 1/N
    assert rhs.is_Mul and sp.Mul(2, 1 / N, evaluate=False) in rhs.args


def test_numbers_are_exact_rationals():
    assert links("x[1] = 1/2 + -3/2")[1].args == (sp.Rational(1, 2), sp.Rational(-3, 2))
    (_, rhs) = links("x[1] = (v + eps)**(-3/2)")
    assert rhs.exp == sp.Rational(-3, 2)


def test_templates_are_not_evaluated():
    lhs, rhs = links("x[i] - x[i] = KroneckerDelta(i, i)*P(xhat[i], v)", "")
    assert lhs != 0 and lhs.is_Add  # written as x[i] - x[i], kept
    assert rhs.has(sp.KroneckerDelta) and rhs.has(P)
    s = links("Sum(x[k], (k, 1, N)) = 0")[0]
    assert isinstance(s, sp.Sum) and s.limits == ((k, 1, N),)
    assert isinstance(links("sqrt(v + eps) = sigma")[0], sp.Pow)


def test_chain_free_indices_rows_and_conditions():
    step = parse(doc(("c", "D(xhat[i], x[j]) = P(xhat[i], x[2])*0 + D(xhat[i], x[j])",
                      "i != j"))).steps[0]
    assert len(step.links) == 2
    assert step.free_indices == (i, j)
    assert step.rows == (2,)
    assert step.conditions == (sp.Ne(i, j),)
    bound = parse(doc(("b", "Sum(x[i]*dy[i], (i, 1, N)) = Sum(x[k]*dy[k], (k, 1, N))",
                       ""))).steps[0]
    assert bound.free_indices == ()


def test_shipped_file_covers_the_note_in_order():
    d = load("batchnorm")
    ids = [s.id for s in d.steps]
    assert d.model == "batchnorm" and d.title and d.source
    assert ids.index("df-dgamma") < ids.index("fw-dmu-dx") < ids.index("lemma-centered-sum") \
        < ids.index("fw-df-dx") < ids.index("bw-path-sum") < ids.index("bw-dv-dmu") \
        < ids.index("bw-df-dx") < ids.index("modes-agree")
    assert len(ids) == len(set(ids)) >= 20
    same = d.steps[ids.index("fw-dxhat-dx-same")]
    assert same.where == "i == j" and "first multiplier" in same.text
    assert len(same.links) == 3


def test_load_by_path_equals_load_by_name(tmp_path):
    by_name = load("batchnorm")
    copy = tmp_path / "copy.toml"
    copy.write_text(Path(by_name.path).read_text(encoding="utf-8"), encoding="utf-8")
    by_path = load(str(copy))
    assert by_path.path == str(copy)
    assert [s.links for s in by_path.steps] == [s.links for s in by_name.steps]


# -- instantiation -----------------------------------------------------------------------------

def test_instantiate_matches_the_model():
    bn = BatchNorm(3)
    (dv,) = links("D(v, x[j]) = 0")[:1]
    assert instantiate(dv, bn, {j: 2}) == total_derivative(bn, bn.v(), bn.x(2))
    (pv,) = links("P(xhat[i], v) = 0")[:1]
    assert instantiate(pv, bn, {"i": 3}) == local_partial(bn, bn.xhat(3), bn.v())
    (s,) = links("Sum(dy[k]*xhat[k], (k, 1, N)) = 0")[:1]
    assert instantiate(s, bn, {}) == sum(bn.dy(r) * bn.xhat(r) for r in bn.rows())
    (kd,) = links("KroneckerDelta(i, j)*N + sigma = 0")[:1]
    assert instantiate(kd, bn, {i: 1, j: 1}) == 3 + bn.sigma()
    assert instantiate(kd, bn, {i: 1, j: 2}) == bn.sigma()
    double = links("Sum(Sum(x[i]*dy[j], (i, 1, N)), (j, 1, N)) = 0")[0]
    assert len(double.limits) == 2  # SymPy merges nested sums
    assert sp.expand(instantiate(double, bn, {})) == \
        sp.expand(sum(bn.x(r) for r in bn.rows()) * sum(bn.dy(r) for r in bn.rows()))
    (df,) = links("D(f, y[i]) = 0")[:1]
    assert instantiate(df, bn, {i: 2}) == bn.dy(2)


def test_instantiate_errors_name_the_problem():
    bn = BatchNorm(2)
    (edge,) = links("P(xhat[i], x[j]) = 0")[:1]
    with pytest.raises(SymbnError, match=r"x\[2\] is not a direct parent of xhat\[1\]; "
                                         r"its parents are x\[1\], mu, v"):
        instantiate(edge, bn, {i: 1, j: 2})
    (row,) = links("x[3] = 0")[:1]
    with pytest.raises(SymbnError, match=r"row 3 is outside 1..N = 2"):
        instantiate(row, bn, {})
    with pytest.raises(SymbnError, match="index j has no value"):
        instantiate(links("x[j] = 0")[0], bn, {})


# -- errors ------------------------------------------------------------------------------------

PARSE_ERRORS = [
    (doc(("s", "gama = 0", "")), "step 's': 'gama' is not a known name (did you mean gamma?)"),
    (doc(("s", "D(v) = 0", "")), "D takes 2 arguments, got 1"),
    (doc(("s", "KroneckerDelta(i, j, k) = 0", "")), "KroneckerDelta takes 2 arguments, got 3"),
    (doc(("a", "x[1] = x[1]", ""), ("a", "x[2] = x[2]", "")), "step 'a': duplicate id"),
    (doc(("Bad_Id", "x[1] = x[1]", "")), "id 'Bad_Id' must match [a-z0-9-]+"),
    (doc(("s", "x[1]", "")), "claim must be an equation"),
    (doc(("s", "x[1] = ", "")), "empty side"),
    (doc(("s", "x[i] = x[i]", "i <> j")), "cannot read where"),
    (doc(("s", "x[i] = x[i]", "i != j")), "where names j, which is not a free index"),
    (doc(("s", "x[i] = x[j]", "i == i")), "compares i with itself"),
    (doc(("s", "P(v, gamma) = 0", "")), ("gamma is not a direct parent of v; the parents of v "
                                         "are x, mu")),
    (doc(("s", "P(xhat[1], x[2]) = 0", "")), "x[2] is not a direct parent of xhat[1]"),
    (doc(("s", "P(gamma, beta) = 0", "")), "gamma is not a node of the graph"),
    (doc(("s", "D(v, mu) = 0", "")), "D(a, b) needs b = x[j], y[i], gamma, beta or eps"),
    (doc(("s", "x[0] = 0", "")), "rows are numbered from 1"),
    (doc(("s", "x[i+1] = 0", "")), ("'x[i + 1]' is not a row: the row inside [...] must be one "
                                   "of the indices i, j, k or a number such as 2, e.g. x[j]")),
    (doc(("s", "dy[m] = 0", "")), "'dy[m]' is not a row: the row inside [...] must be one of"),
    (doc(("s", "j*dy[j] = dy[j]", "")), "'j' is an index and names a row: use it as x[j]"),
    (doc(("s", "Sum(i*dy[i], (i, 1, N)) = 0", "")), "'i' is an index and names a row"),
    (doc(("s", "x[1]**j = 1", "")), "exponent must be a number"),
    (doc(("s", "x = 0", "")), "needs a row: write x[i]"),
    (doc(("s", "f = 0", "")), "f appears only as D(f, ...) or P(f, y[i])"),
    (doc(("s", "0.5 = 1/2", "")), "use exact rationals such as 1/2"),
    (doc(("s", "x[1]/0 = 1", "")), "divides by zero"),
    (doc(("s", "x[1]**(1/3) = 1", "")), "exponents are integers or halves"),
    (doc(("s", "Sum(x[i], (i, 0, N)) = 1", "")), "sums start at 1"),
    (doc(("s", "Sum(Sum(x[i], (i, 1, N)), (i, 1, N)) = 1", "")), "already a summation index"),
    (doc(("s", "x[1] == x[1]", "")), ("claim must be an equation 'lhs = rhs' (or a chain "
                                     "a = b = c); write one '=' between the sides, not '=='")),
    (doc(("s", "x[1] < 2 = 1", "")), "(comparison)"),
    ('title = "t"\nmodel = "resnet"\n[[step]]\nid = "s"\nclaim = "x[1] = 0"\n',
     "model 'resnet' is not known"),
    ('title = "t"\nmodel = "batchnorm"\n', "no steps"),
    ('model = "batchnorm"\n[[step]]\nid = "s"\nclaim = "x[1] = 0"\n', "'title' must be a string"),
    ('title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\nclaim = 3\n',
     "'claim' must be a string (a int)"),
    ('title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "s"\nclam = "x[1] = 0"\n',
     "unknown key 'clam' (did you mean claim?)"),
    ('title = "t"\nmodel = "batchnorm"\nsteps = 1\n', ("unknown top-level key 'steps' "
                                                     "(did you mean step?)")),
    ('title = "t\n', "malformed TOML"),
]


@pytest.mark.parametrize("text,message", PARSE_ERRORS, ids=[m for _, m in PARSE_ERRORS])
def test_parse_errors_are_one_line_and_precise(text, message):
    with pytest.raises(SymbnError) as err:
        parse(text, "bad.toml")
    text = str(err.value)
    assert message in text, text
    assert text.startswith("bad.toml: ") and "\n" not in text


def test_load_errors():
    with pytest.raises(SymbnError, match=r"no such file or shipped derivation \(did you mean "
                                         r"batchnorm\?\); shipped: batchnorm"):
        load("batchnrom")
