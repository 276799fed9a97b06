"""Model files: every shipped model loads, its graph is read off the definitions, its closed
forms equal plain `sympy.diff` of the composed model at exact rational points, wrong closed
forms are caught, and bad or hostile files are refused with one line naming file and key."""

import math
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from symbn import closed_form
from symbn.derivation import BATCHNORM, INDEXED, SCALARS, _Builder
from symbn.errors import SymbnError
from symbn.graph import INDEXED_KINDS
from symbn.model import BatchNorm
from symbn.models import load, parse, shipped

SHIPPED = ("batchnorm", "batchnorm-unbiased", "layernorm", "rmsnorm")


# -- the shipped models --------------------------------------------------------------------------

def test_every_shipped_model_loads_with_a_result_for_every_leaf():
    assert sorted(shipped()) == sorted(SHIPPED)
    for name, path in shipped().items():
        model = load(name)
        assert model.name == name == path.stem and model.path == str(path)
        assert set(model.results) == set(model.leaves), name
        assert model.output == "y" and model.gradient == "dy"
    assert load(shipped()["rmsnorm"]).title.startswith("RMSNorm")


MODEL_FACTS = [  # model, axis, min_n, leaf kinds, node kinds
    ("batchnorm", 0, 1, {"x": "element", "gamma": "set", "beta": "set", "eps": "positive"},
     {"mu": "set", "v": "set", "xhat": "element", "y": "element"}),
    ("batchnorm-unbiased", 0, 2,
     {"x": "element", "gamma": "set", "beta": "set", "eps": "positive"},
     {"mu": "set", "v": "set", "xhat": "element", "y": "element"}),
    ("layernorm", -1, 1, {"x": "element", "gamma": "along", "beta": "along", "eps": "positive"},
     {"mu": "set", "v": "set", "xhat": "element", "y": "element"}),
    ("rmsnorm", -1, 1, {"x": "element", "gamma": "along", "eps": "positive"},
     {"ms": "set", "xhat": "element", "y": "element"}),
]


@pytest.mark.parametrize("name,axis,min_n,leaves,nodes", MODEL_FACTS,
                         ids=[case[0] for case in MODEL_FACTS])
def test_model_facts(name, axis, min_n, leaves, nodes):
    model = load(name)
    assert (model.axis, model.min_n, model.leaves) == (axis, min_n, leaves)
    assert {n: model.kind(n) for n in model.nodes} == nodes
    assert list(model.nodes) == list(nodes)  # in the file's order
    assert model.kind("sigma") == "name"


PARENTS = [  # model, node, parents read off its definition (in reading order)
    ("rmsnorm", "ms", ("x",)),
    ("rmsnorm", "xhat", ("x", "ms", "eps")),
    ("rmsnorm", "y", ("gamma", "xhat")),
    ("rmsnorm", "f", ("y",)),
    ("rmsnorm", "x", ()),
    ("batchnorm", "mu", ("x",)),
    ("batchnorm", "v", ("x", "mu")),
    ("batchnorm", "xhat", ("x", "mu", "v", "eps")),
    ("batchnorm", "y", ("gamma", "xhat", "beta")),
    ("layernorm", "y", ("gamma", "xhat", "beta")),
]


@pytest.mark.parametrize("name,node,parents", PARENTS, ids=[f"{m}-{n}" for m, n, _ in PARENTS])
def test_parents_are_read_off_the_definitions(name, node, parents):
    assert load(name).parents(node) == parents


def test_children_and_paths():
    bn, rms = load("batchnorm"), load("rmsnorm")
    assert bn.children("x") == ("mu", "v", "xhat") and bn.children("y") == ("f",)
    assert bn.paths("x") == [("x", "mu", "v", "xhat", "y", "f"), ("x", "mu", "xhat", "y", "f"),
                             ("x", "v", "xhat", "y", "f"), ("x", "xhat", "y", "f")]
    assert bn.paths("gamma") == [("gamma", "y", "f")]
    assert bn.paths("eps") == [("eps", "xhat", "y", "f")]
    assert rms.paths("x") == [("x", "ms", "xhat", "y", "f"), ("x", "xhat", "y", "f")]
    with pytest.raises(SymbnError, match="'ms' is not a leaf of rmsnorm"):
        rms.paths("ms")
    # a ladder of nodes, each using the two above it, has exponentially many paths
    ladder = ['a0 = "x[i]"', 'a1 = "a0[i] + x[i]"'] + [
        f'a{n} = "a{n - 1}[i] + a{n - 2}[i]"' for n in range(2, 40)] + ['y = "a39[i]"']
    text = model_text(nodes="".join(line + "\n" for line in ladder), names=None, results=None)
    with pytest.raises(SymbnError, match="more than 100000 partial paths from x to f"):
        parse(text, "ladder.toml").paths("x")


def test_instance_graph():
    g = load("rmsnorm").instantiate(3)
    xs = tuple(g.symbol("x", i) for i in g.rows())
    assert g.nodes[g.symbol("ms")].parents == xs
    assert g.nodes[g.symbol("ms")].definition == sum(x ** 2 for x in xs) / 3
    assert g.nodes[g.symbol("xhat", 2)].parents == (xs[1], g.symbol("ms"), g.symbol("eps"))
    assert g.nodes[g.symbol("y", 2)].parents == (g.symbol("gamma", 2), g.symbol("xhat", 2))
    assert g.nodes[g.f].parents == tuple(g.symbol("y", i) for i in g.rows())
    assert [str(s) for s in g.leaves] == ["x[1]", "x[2]", "x[3]", "gamma[1]", "gamma[2]",
                                          "gamma[3]", "eps", "dy[1]", "dy[2]", "dy[3]"]
    # two sets: along leaves shared, set nodes and element leaves one per set
    ln = load("layernorm").instantiate(2, 2)
    assert ln.nodes[ln.symbol("y", 1, 2)].parents == (
        ln.symbol("gamma", 1), ln.symbol("xhat", 1, 2), ln.symbol("beta", 1))
    assert str(ln.symbol("mu", c=2)) == "mu[2]" and str(ln.symbol("x", 2, 1)) == "x[2,1]"
    bn = load("batchnorm").instantiate(2, 2)
    assert str(bn.symbol("gamma", c=2)) == "gamma[2]"
    for bad, message in [(lambda: g.symbol("x"), "x needs a row"),
                         (lambda: g.symbol("ms", 1), "ms needs no row"),
                         (lambda: g.symbol("x", 4), "x needs a row"),
                         (lambda: g.symbol("z", 1), "'z' is not a leaf or node"),
                         (lambda: g.symbol("x", 1, 2), "set 2 is outside 1..D = 1"),
                         (lambda: load("batchnorm-unbiased").instantiate(1), "N >= 2"),
                         (lambda: load("rmsnorm").instantiate(0), "positive integer")]:
        with pytest.raises(SymbnError, match=message):
            bad()


def rational(rng: random.Random, low: int = -6, high: int = 6) -> Fraction:
    return Fraction(rng.randint(low * 4, high * 4), rng.choice((1, 2, 4)))


def nonzero(rng: random.Random) -> Fraction:
    return rng.choice((1, -1)) * Fraction(rng.randint(1, 20), rng.choice((1, 3, 4)))


def exact_point(g, rng: random.Random) -> dict:
    """Random rationals for every leaf but dy, with eps > 0 chosen so that every radicand
    (v + eps, ms + eps, one per set) is the square of a rational: then every value is
    rational and comparisons are exact."""
    m, eps = g.model, None
    point = {}
    for name, kind in m.leaves.items():
        if kind == "positive":
            eps = g.symbol(name)
            continue
        for c in g.columns():
            for s in g._candidates(name, c):
                point.setdefault(s, rational(rng) if name == "x" else nonzero(rng))
    bases = {p.base for node in g.nodes.values() if node.symbol != g.f
             for p in node.definition.atoms(sp.Pow) if p.exp.q == 2}
    free = sorted({g.evaluate(b, point) - eps for b in bases})  # radicand = a + eps
    assert len(free) <= 2 and all(a.is_Rational and a >= 0 for a in free), free
    a1 = Fraction(str(free[0]))
    if len(free) == 1:  # eps = s^2 - a1 with s > sqrt(a1)
        s = math.isqrt(math.ceil(a1)) + 1 + Fraction(rng.randint(0, 9), 4)
        point[eps] = s * s - a1
    else:  # p^2 = a1 + eps, q^2 = a2 + eps: (q - p)(q + p) = a2 - a1 = delta
        delta, t = Fraction(str(free[1])) - a1, Fraction(rng.randint(1, 5), 3)
        while ((delta / t - t) / 2) ** 2 <= a1:
            t /= 2
        point[eps] = ((delta / t - t) / 2) ** 2 - a1
    assert point[eps] > 0
    for b in bases:
        assert sp.sqrt(g.evaluate(b, point)).is_Rational
    return point


def nonlinear_f(ys: list, rng: random.Random) -> sp.Expr:
    """f = sum c_i y_i + y_1^2 y_last + y_1 y_last: nonlinear, so dy depends on the point."""
    return (sp.Add(*[sp.Rational(rng.randint(-9, 9), rng.randint(1, 5)) * y for y in ys])
            + ys[0] ** 2 * ys[-1] + ys[0] * ys[-1])


def mismatches(model, n: int, d: int = 1, points: int = 3, seed: int = 0) -> list:
    """Every (leaf, row, set) where the model's closed form differs from `sympy.diff` of the
    composed model, at `points` exact random points, with both values."""
    rng = random.Random(f"{model.name}-{n}-{d}-{seed}")
    g = model.instantiate(n, d)
    ys = [g.symbol(model.output, i, c) for c in g.columns() for i in g.rows()]
    f = nonlinear_f(ys, rng)
    dy = {g.symbol(model.gradient, i, c): sp.diff(f, g.symbol(model.output, i, c))
          for c in g.columns() for i in g.rows()}
    composed = f.xreplace({y: g.compose(y) for y in ys})
    cases = []  # (leaf name, row, set, leaf symbol)
    for name, kind in model.leaves.items():
        rows = g.rows() if kind in INDEXED_KINDS else (None,)
        sets = g.columns() if kind in ("element", "set") else (1,)
        cases += [(name, j, c, g.symbol(name, j, c)) for c in sets for j in rows]
    found = []
    for _ in range(points):
        point = exact_point(g, rng)
        for name, j, c, leaf in cases:
            truth = sp.diff(composed, leaf).xreplace(point)
            claim = g.evaluate(g.result(name, j, c).xreplace(dy), point)
            assert truth.is_Rational and claim.is_Rational, (name, j, truth, claim)
            if truth != claim:
                found.append((name, j, c, truth, claim))
    return found


CLOSED_FORM_CASES = [(name, n, 1) for name in SHIPPED
                     for n in range(load(name).min_n, 5)] + [(name, 3, 2) for name in SHIPPED]


@pytest.mark.parametrize("name,n,d", CLOSED_FORM_CASES,
                         ids=[f"{m}-N{n}-D{d}" for m, n, d in CLOSED_FORM_CASES])
def test_closed_forms_equal_sympy_diff_of_the_composed_model(name, n, d):
    assert mismatches(load(name), n, d) == []


def test_batchnorm_model_is_the_hand_written_batchnorm():
    """The model file, instantiated, gives the hand-written BatchNorm class's nodes and the
    note's closed forms (symbn.closed_form), at exact points."""
    rng = random.Random(7)
    for n, d in [(1, 1), (3, 1), (4, 1), (2, 2)]:
        g, bn = load("batchnorm").instantiate(n, d), BatchNorm(n, d)
        point = exact_point(g, rng)
        point.update({s: nonzero(rng) for s in bn.leaves if str(s).startswith("dy")})
        frac = {s: Fraction(str(v)) for s, v in point.items()}
        for s in g.nodes:
            if s != g.f:
                assert g.evaluate(s, point) == bn.evaluate(s, frac), (n, d, s)
        for c in g.columns():
            for j in g.rows():
                assert g.evaluate(g.result("x", j, c), point) == \
                    bn.evaluate(closed_form.dx(bn, j, c), frac), (n, d, j, c)
            assert g.evaluate(g.result("gamma", c=c), point) == \
                bn.evaluate(closed_form.dgamma(bn, c), frac)
            assert g.evaluate(g.result("beta", c=c), point) == \
                bn.evaluate(closed_form.dbeta(bn, c), frac)


def test_instances_compute_the_layers():
    """Each instantiated model gives its layer's textbook output, written out by hand here
    over exact rationals (the sets are columns for BatchNorm, rows otherwise)."""
    rng = random.Random(11)
    for name in SHIPPED:
        g = load(name).instantiate(3, 2)
        point = exact_point(g, rng)
        value = {str(s): sp.Rational(v) for s, v in point.items()}
        for c in g.columns():
            xs = [value[str(g.symbol("x", i, c))] for i in g.rows()]
            mean = sum(xs) / 3
            var = sum((x - mean) ** 2 for x in xs) / (2 if name == "batchnorm-unbiased" else 3)
            for i in g.rows():
                row = {n: value[str(g.symbol(n, i if g.model.indexed(n) else None, c))]
                       for n in ("gamma", "beta") if n in g.model.leaves}
                if name == "rmsnorm":
                    radicand, centred, shift = sum(x * x for x in xs) / 3, xs[i - 1], 0
                else:
                    radicand, centred, shift = var, xs[i - 1] - mean, row["beta"]
                root = sp.sqrt(radicand + value["eps"])
                assert root.is_Rational
                want = row["gamma"] * centred / root + shift
                assert g.evaluate(g.symbol("y", i, c), point) == want, (name, i, c)


# -- wrong closed forms are caught ---------------------------------------------------------------

def mutated(name: str, old: str, new: str):
    text = shipped()[name].read_text(encoding="utf-8")
    assert text.count(old) == 1, (name, old)
    return parse(text.replace(old, new), f"{name}-mutated.toml")


LN_DX = ('"D(f, x[j])" = "(v + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N '
         '- (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))/N)"')
RMS_DX = ('"D(f, x[j])" = "(ms + eps)**(-1/2)*(gamma[j]*dy[j] - x[j]*(ms + eps)**(-1)*'
          'Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/N)"')
# gamma factored out of the sums as if it were one scalar per set (BatchNorm's form)
LN_DX_SET = ('"D(f, x[j])" = "gamma[j]*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N '
             '- (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/N)"')
# LayerNorm's form without beta: a mean subtracted that RMSNorm does not subtract
RMS_DX_MEAN = ('"D(f, x[j])" = "(ms + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], '
               '(k, 1, N))/N - x[j]*(ms + eps)**(-1)*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/N)"')
MUTATIONS = [  # id, model, old text, new text, the leaf whose result is now wrong
    ("layernorm-gamma-as-set-leaf-dx", "layernorm", LN_DX, LN_DX_SET, "x"),
    ("layernorm-gamma-as-set-leaf-dgamma", "layernorm", '"D(f, gamma[j])" = "dy[j]*xhat[j]"',
     '"D(f, gamma[j])" = "Sum(dy[k]*xhat[k], (k, 1, N))"', "gamma"),
    ("unbiased-with-N", "batchnorm-unbiased", "Sum((x[k] - mu)*dy[k], (k, 1, N))/(N - 1))",
     "Sum((x[k] - mu)*dy[k], (k, 1, N))/N)", "x"),
    ("biased-with-N-1", "batchnorm", "Sum((x[k] - mu)*dy[k], (k, 1, N))/N)",
     "Sum((x[k] - mu)*dy[k], (k, 1, N))/(N - 1))", "x"),
    ("rmsnorm-mean-subtracted", "rmsnorm", RMS_DX, RMS_DX_MEAN, "x"),
    ("rmsnorm-eps-sign", "rmsnorm", '"D(f, eps)" = "-1/2*', '"D(f, eps)" = "1/2*', "eps"),
    ("layernorm-dbeta-summed", "layernorm", '"D(f, beta[j])" = "dy[j]"',
     '"D(f, beta[j])" = "Sum(dy[k], (k, 1, N))"', "beta"),
]


@pytest.mark.parametrize("case,name,old,new,leaf", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_wrong_closed_form_differs_at_some_point(case, name, old, new, leaf):
    n = 3 if case != "biased-with-N-1" else 2  # N - 1 vs N needs N >= 2 to be defined
    found = mismatches(mutated(name, old, new), n, points=2)
    assert found and {f[0] for f in found} == {leaf}, found


# -- the vocabulary ------------------------------------------------------------------------------

def test_the_default_vocabulary_is_todays_batchnorm():
    assert set(BATCHNORM.scalars) == set(SCALARS) and BATCHNORM.indexed == tuple(INDEXED)
    vocab = load("batchnorm").vocabulary()
    assert set(vocab.scalars) == set(SCALARS) and set(vocab.indexed) == set(INDEXED)
    assert vocab.leaves == BATCHNORM.leaves and vocab.same_row == BATCHNORM.same_row
    # read off the definitions, eps is a parent of xhat (BATCHNORM.parents leaves it out)
    assert vocab.parents == {**BATCHNORM.parents, "xhat": ("x", "mu", "v", "eps"),
                             "y": ("gamma", "xhat", "beta")}


def test_a_model_vocabulary_drives_the_derivation_parser():
    import ast
    vocab = load("layernorm").vocabulary()
    assert ("y", "gamma") in vocab.same_row and ("xhat", "x") in vocab.same_row

    def build(text):
        return _Builder("t.toml: step 's'", vocab).build(ast.parse(text, mode="eval").body, 0)

    assert str(build("D(f, gamma[j]) - dy[j]*xhat[j]")) == "D(f, gamma[j]) - dy[j]*xhat[j]"
    with pytest.raises(SymbnError, match=r"'gamma' needs a row: write gamma\[i\]"):
        build("gamma*xhat[i]")
    with pytest.raises(SymbnError, match=r"needs b = x\[j\], gamma\[j\], beta\[j\], y\[i\] or eps"):
        build("D(f, mu)")
    with pytest.raises(SymbnError, match=r"x\[2\] is not a direct parent of xhat\[1\]"):
        build("P(xhat[1], x[2])")
    rms = load("rmsnorm").vocabulary()
    with pytest.raises(SymbnError, match="'mu' is not a known name"):
        _Builder("t", rms).build(ast.parse("mu", mode="eval").body, 0)


# -- bad and hostile files -----------------------------------------------------------------------

GOOD = {
    "top": 'name = "tiny"\ntitle = "t"\n',
    "leaves": 'x = "element"\ngamma = "along"\neps = "positive"\n',
    "nodes": ('ms = "Sum(x[k]**2, (k, 1, N))/N"\nxhat = "x[i]*(ms + eps)**(-1/2)"\n'
              'y = "gamma[i]*xhat[i]"\n'),
    "names": 'sigma = "sqrt(ms + eps)"\n',
    "model": 'output = "y"\naxis = -1\n',
    "results": '"D(f, gamma[j])" = "dy[j]*xhat[j]"\n',
}


def model_text(**parts: str) -> str:
    p = {**GOOD, **parts}
    return p["top"] + "".join(f"[{s}]\n{p[s]}" for s in ("leaves", "nodes", "names", "model",
                                                          "results") if p[s] is not None)


def test_the_template_model_is_good(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(model_text())
    assert load(str(path)).parents("xhat") == ("x", "ms", "eps")


def nodes(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


BAD = [  # id, parts of the file, the key the message names, a piece of the message
    ("cycle", {"nodes": nodes('a = "x[i] + b[i]"', 'b = "a[i]*2"', 'y = "b[i]"')},
     "[nodes] a", "cycle a -> b -> a"),
    ("self-cycle", {"nodes": nodes('y = "y[i] + x[i]"')}, "[nodes] y", "cycle y -> y"),
    ("unknown-name", {"nodes": nodes('xhat = "x[i]*(epsilon + 1)"', 'y = "xhat[i]"')},
     "[nodes] xhat", "'epsilon' is not a known name (did you mean eps?)"),
    ("used-before-definition", {"nodes": nodes('xhat = "x[i]*(ms + eps)**(-1/2)"',
                                               'ms = "Sum(x[k]**2, (k, 1, N))/N"',
                                               'y = "gamma[i]*xhat[i]"')},
     "[nodes] xhat", "uses ms before it is defined; nodes are read in order: move ms above"),
    ("node-uses-a-name", {"nodes": GOOD["nodes"] + 'z = "x[i]/sigma"\n'}, "[nodes] z",
     "uses the name sigma"),
    ("import", {"nodes": nodes("""y = "__import__('os').system('touch MARKER')" """)},
     "[nodes] y", "calls something other than sqrt, Sum, KroneckerDelta"),
    ("lambda-call", {"nodes": nodes("""y = "(lambda: open('MARKER', 'w'))()" """)},
     "[nodes] y", "calls something"),
    ("lambda", {"nodes": nodes('y = "lambda: 1"')}, "[nodes] y", "(lambda)"),
    ("import-in-a-result-key", {"results": """"__import__('os').getpid()" = "0"\n"""},
     "[results] \"__import__('os').getpid()\"", "calls something other than"),
    ("attribute", {"names": nodes('sigma = "x.__class__"')}, "[names] sigma",
     "attribute access"),
    ("huge-integer", {"nodes": nodes('y = "x[i]*' + "9" * 3000 + '"')}, "[nodes] y",
     "larger than"),
    ("huge-exponent", {"nodes": nodes('y = "x[i]**1000000"')}, "[nodes] y", "exponent"),
    ("float", {"nodes": nodes('y = "x[i]*0.5"')}, "[nodes] y", "float constant"),
    ("degree-blowup", {"nodes": nodes('a = "x[i]**8"', 'b = "a[i]**8*x[i]"', 'y = "b[i]"'),
                       "names": None}, "[nodes] b", "can reach polynomial degree 65"),
    ("deep-brackets", {"nodes": nodes('y = "' + "(" * 200 + "x[i]" + ")" * 200 + '"')},
     "[nodes] y", "nested more than"),
    ("bad-kind", {"leaves": 'x = "element"\ngamma = "vector"\neps = "positive"\n'},
     "[leaves] gamma", "kind 'vector' is not one of element, along, set, constant, positive"),
    ("kind-not-a-string", {"leaves": 'x = "element"\ngamma = 3\neps = "positive"\n'},
     "[leaves] gamma", "must be a string (int)"),
    ("no-element-leaf", {"leaves": 'x = "set"\ngamma = "along"\neps = "positive"\n'},
     "[leaves]", "no element leaf"),
    ("missing-output", {"model": "axis = -1\n"}, "[model]", "'output' must be a string (missing)"),
    ("missing-axis", {"model": 'output = "y"\n'}, "[model] axis", "must be an integer"),
    ("bool-min-n", {"model": 'output = "y"\naxis = -1\nmin_n = true\n'}, "[model] min_n",
     "must be an integer in 1..64"),
    ("output-not-a-node", {"model": 'output = "z"\naxis = -1\n'}, "[model] output",
     "'z' is not a node"),
    ("output-a-set-node", {"model": 'output = "ms"\naxis = -1\n'}, "[model] output",
     "ms is a set node"),
    ("unknown-model-key", {"model": 'output = "y"\naxis = -1\nouput = 1\n'},
     "unknown key in [model] 'ouput'", "did you mean output?"),
    ("i-in-a-set-node-sum", {"nodes": nodes('ms = "Sum(x[i]**2, (i, 1, N))/N"',
                                            'y = "gamma[i]*x[i]*ms"')},
     "[nodes] ms", "sums here run over j or k, not i (i is the element index)"),
    ("free-k", {"nodes": nodes('y = "x[k]"')}, "[nodes] y", "free index k; only i may be free"),
    ("row-by-number", {"nodes": nodes('y = "x[i] - x[1]"')}, "[nodes] y",
     "names a row by number"),
    ("name-with-free-i", {"names": nodes('sigma = "x[i]"')}, "[names] sigma",
     "free index i; no index may be free"),
    ("dy-in-a-node", {"nodes": GOOD["nodes"] + 'z = "dy[i]"\n'}, "[nodes] z",
     "'dy[i]' subscripts only apply to x, gamma, xhat, y"),
    ("f-in-a-node", {"nodes": nodes('y = "f + x[i]"')}, "[nodes] y", "'f' is not a known name"),
    ("f-as-a-node", {"nodes": GOOD["nodes"] + 'f = "x[i]"\n'}, "[nodes] f",
     "not a usable name"),
    ("reserved-node-name", {"nodes": GOOD["nodes"] + 'sqrt = "x[i]"\n'}, "[nodes] sqrt",
     "not a usable name"),
    ("keyword-name", {"nodes": GOOD["nodes"] + 'lambda = "x[i]"\n'}, "[nodes] lambda",
     "not a usable name"),
    ("duplicate-name", {"nodes": GOOD["nodes"] + 'x = "gamma[i]"\n'}, "[nodes] x",
     "already defined in [leaves]"),
    ("gradient-clash", {"names": 'dy = "ms"\n'}, "[names] dy", "the name of the gradient"),
    ("result-of-a-node", {"results": '"D(f, ms)" = "0"\n'}, '[results] "D(f, ms)"',
     "D(a, b) needs b = x[j], gamma[j], y[i] or eps"),
    ("result-wrong-index", {"results": '"D(f, x[i])" = "0"\n'}, '[results] "D(f, x[i])"',
     "the left side must be the derivative of f by a leaf: one of D(f, x[j]), D(f, gamma[j])"),
    ("result-of-the-output", {"results": '"D(f, y[j])" = "dy[j]"\n'},
     '[results] "D(f, y[j])"', "the left side must be"),
    ("result-not-of-f", {"results": '"D(xhat[i], x[j])" = "0"\n'},
     '[results] "D(xhat[i], x[j])"', "the left side must be"),
    ("result-not-a-derivative", {"results": '"x[j]" = "0"\n'}, '[results] "x[j]"',
     "the left side must be"),
    ("result-with-D-on-the-right", {"results": '"D(f, eps)" = "D(f, eps)"\n'},
     '[results] "D(f, eps)"', "calls something other than sqrt, Sum, KroneckerDelta"),
    ("result-scalar-with-j", {"results": '"D(f, eps)" = "dy[j]"\n'}, '[results] "D(f, eps)"',
     "free index j; no index may be free"),
    ("result-sum-over-j", {"results": '"D(f, x[j])" = "Sum(dy[j], (j, 1, N))"\n'},
     '[results] "D(f, x[j])"', "sums here run over i or k, not j"),
    ("result-twice", {"results": '"D(f, x[j])" = "dy[j]"\n"D(f,x[j])" = "dy[j]"\n'},
     '[results] "D(f,x[j])"', 'a second result for x (first: "D(f, x[j])")'),
    ("result-not-a-string", {"results": '"D(f, eps)" = 0\n'}, '[results] "D(f, eps)"',
     "must be a string (int)"),
    ("unknown-top-key", {"top": 'name = "tiny"\ntitle = "t"\ntitel = "t"\n'},
     "unknown top-level key 'titel'", "expected name, title"),
    ("bad-model-name", {"top": 'name = "Tiny Model"\ntitle = "t"\n'}, "name 'Tiny Model'",
     "must match [a-z0-9-]+"),
    ("no-nodes", {"nodes": ""}, "[nodes]", "must be a non-empty table"),
]


@pytest.mark.parametrize("case,parts,key,message", BAD, ids=[b[0] for b in BAD])
def test_bad_model_files_are_refused_naming_file_and_key(tmp_path, monkeypatch, case, parts,
                                                         key, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{case}.toml"
    path.write_text(model_text(**parts), encoding="utf-8")
    with pytest.raises(SymbnError) as err:
        load(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: {key}"), (case, text)
    assert message in text and "\n" not in text and err.value.exit_code == 2, (case, text)
    assert not (tmp_path / "MARKER").exists()


def test_file_level_errors(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text(model_text() + "#" * 300_000)
    cases = [("rmsnrom", "no such file or shipped model (did you mean rmsnorm?)"),
             (str(tmp_path), "not a regular file"),
             (str(big), "file larger than 256 KiB")]
    for given, message in cases:
        with pytest.raises(SymbnError, match=re.escape(message)):
            load(given)
    for text, message in [("name = ", "malformed TOML"), ("[[x]]\n" * 2, "unknown top-level")]:
        with pytest.raises(SymbnError, match=message):
            parse(text, "m.toml")
    bad = tmp_path / "latin.toml"
    bad.write_bytes(model_text().encode() + b"# \xe9\n")
    with pytest.raises(SymbnError, match="not UTF-8"):
        load(Path(bad))
