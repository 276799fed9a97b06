"""Any model at one concrete N: `sympy.lambdify` of its closed forms, and the unrolled module
(the closed forms composed to the leaves, printed by SymPy's NumPyPrinter after CSE).

>>> g = lambdify_model(load("rmsnorm"), 2)
>>> g._fields
('dx', 'dgamma', 'args')
>>> [str(a) for a in g.args]
['x[1]', 'x[2]', 'dy[1]', 'dy[2]', 'gamma[1]', 'gamma[2]', 'eps']
"""

from __future__ import annotations

from collections import namedtuple

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..errors import SymbnError
from ..graph import Instance, Model
from ..models import load  # noqa: F401  (the doctest's)
from .model_numpy import _RUNTIME, Api, api_of, header
from .model_plan import gradient_leaves
from .plan import MAX_UNROLLED_N


def _concrete(model: Model, n: int) -> tuple[Instance, Api, dict]:
    """The instance, the API and the composed expressions: per gradient leaf a list (one per
    row for element and along leaves), and the output node's rows."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_UNROLLED_N:
        raise SymbnError(f"n={n!r} is not an integer from 1 to {MAX_UNROLLED_N}, as unrolled "
                         "code needs; try n=4")
    if n < model.min_n:
        raise SymbnError(f"{model.name} is defined for N >= {model.min_n}, got n={n}; "
                         f"try n={max(4, model.min_n)}")
    g = model.instantiate(n)
    exprs: dict[str, list[sp.Expr]] = {}
    for leaf in gradient_leaves(model):
        rows = g.rows() if model.indexed(leaf) else [None]
        exprs[leaf] = [g.compose(g.result(leaf, j)) for j in rows]
    exprs[model.output] = [g.compose(g.symbol(model.output, j)) for j in g.rows()]

    def used(keys) -> set[str]:
        found = set().union(*[e.free_symbols for k in keys for e in exprs[k]])
        return {s.name.split("[")[0] for s in found}

    grads = [k for k in exprs if k != model.output]
    return g, api_of(model, used(grads), used([model.output])), exprs


def _order(model: Model, leaves: list[str]) -> list[str]:
    """The scalar functions' argument order, as BatchNorm's: element leaves, the gradient,
    then the other leaves."""
    first = [a for a in leaves if model.leaves.get(a) == "element"]
    return first + [a for a in leaves if a == model.gradient] + \
        [a for a in leaves if a not in first and a != model.gradient]


def _arguments(g: Instance, api: Api, leaves: list[str]) -> list[sp.Symbol]:
    m = g.model
    out = []
    for leaf in _order(m, leaves):
        rows = g.rows() if m.indexed(leaf) else [None]
        out += [g.symbol(leaf, j) for j in rows]
    return out


def lambdify_model(model: Model, n: int):
    """`sympy.lambdify` of the model's closed forms at N = n: a named tuple of callables
    d<leaf> (for element and along leaves a list over the rows j; for an along leaf one
    set's share) and `args`, the leaf symbols they take, in order (scalars, or arrays over
    the sets)."""
    g, api, exprs = _concrete(model, n)
    args = _arguments(g, api, api.backward)
    fields = [f"d{leaf}" for leaf in api.gradients]
    fns = []
    for leaf in api.gradients:
        e = exprs[leaf] if model.indexed(leaf) else exprs[leaf][0]
        fns.append(sp.lambdify(args, e, modules="numpy", cse=True))
    kind = namedtuple(f"{model.name.replace('-', '_').title().replace('_', '')}Backward",
                      [*fields, "args"])
    return kind(*fns, tuple(args))


def unrolled_proofs(model: Model, n: int) -> list[str]:
    from ..prove import PROVED
    from ..verify_model import verify_model

    report = verify_model(model, n)
    if not report.ok:
        bad = [r.id for r in report.results if r.verdict != PROVED]
        raise SymbnError(f"{model.name}: the closed forms are not proved at N = {n} "
                         f"({', '.join(bad)}); refusing to generate code")
    return [(f"closed forms = forward mode = backward mode (symbn verify --model {model.name}), "
            f"N = {n}"), "the expressions below are those closed forms, composed to the leaves"]


def unrolled_module(model: Model, n: int, proved: list[str]) -> str:
    """The module text: scalar functions of the rows, and the layer's two functions."""
    g, api, exprs = _concrete(model, n)
    m = model
    rename = {}
    for leaf in [*m.leaves, m.gradient]:
        if m.indexed(leaf):
            rename.update({g.symbol(leaf, j): sp.Symbol(f"{leaf}_{j}") for j in g.rows()})

    def names(leaves: list[str]) -> list[str]:
        return [str(rename.get(s, s)) for s in _arguments(g, api, leaves)]

    def function(name: str, args: list[str], key: str, doc: str) -> list[str]:
        flat = [e.xreplace(rename) for e in exprs[key]]
        reps, reduced = sp.cse(flat, symbols=sp.numbered_symbols("t"))
        p = NumPyPrinter()
        values = [p.doprint(e) for e in reduced]
        result = f"[{', '.join(values)}]" if len(values) > 1 or m.indexed(key) else values[0]
        return ["", "", f"def {name}({', '.join(args)}):", f'    """{doc}"""',
                *[f"    {s} = {p.doprint(e)}" for s, e in reps], f"    return {result}"]

    y = m.output
    plan = [f"Unrolled for N = {n}: the closed forms composed to the leaves, printed by SymPy's",
            "NumPyPrinter after common-subexpression elimination, as scalar functions of the",
            "rows (floats, or arrays over the sets).  Not shifted or centred: for badly",
            "conditioned data use the vectorised module."]
    lines = [header(f"{m.title}: forward and backward, unrolled for N = {n}.", api, proved,
                    plan), "import numpy", _RUNTIME.format(axis=m.axis, min_n=m.min_n, max_n=None)]
    for leaf in api.gradients:
        what = f"[df/d{leaf}_1, ..., df/d{leaf}_{n}]" if m.indexed(leaf) else f"df/d{leaf}"
        share = " (one set's share)" if m.leaves[leaf] == "along" else ""
        lines += function(f"d{leaf}", names(api.backward), leaf, f"{what} at N = {n}{share}.")
    lines += function(y, names(api.forward), y, f"[{y}_1, ..., {y}_{n}] at N = {n}.")
    lines += ["", "",
              "def _rows(a):",
              '    """The rows of a per-element array: a list along AXIS."""',
              "    return list(numpy.moveaxis(a, AXIS, 0))", "", "",
              "def _stack(values, X, dtype):",
              "    shape = numpy.moveaxis(X, AXIS, 0).shape[1:]",
              "    rows = [numpy.broadcast_to(v, shape) for v in values]",
              "    return numpy.moveaxis(numpy.stack(rows), 0, AXIS).astype(dtype)"]

    def call(leaves: list[str]) -> str:
        parts = []
        for leaf in _order(m, leaves):
            kind = m.leaves.get(leaf, "element")
            a = api.array(leaf) if kind == "element" else leaf
            parts.append(f"*_rows({a})" if kind in ("element", "along") else
                         f"_rows({a})[0]" if kind == "set" else a)
        return ", ".join(parts)

    check = [f"    if X.shape[AXIS] != {n}:",
             (f"        raise ValueError(f\"this module is unrolled for N = {n}; X has shape "
              "{X.shape}\")")]
    lines += ["", "", f"def {api.prefix}_forward({api.arguments(api.forward)}):",
              f'    """{y.upper()}: the layer\'s output, {y}[i] = {m.nodes[y].text}."""',
              *api.checks(api.forward), *check,
              f"    return _stack({y}({call(api.forward)}), X, dtype)"]
    grads = ", ".join(api.grad(leaf) for leaf in api.gradients)
    lines += ["", "", f"def {api.prefix}_backward({api.arguments(api.backward)}):",
              (f'    """({grads}): the gradients of f given {api.array(m.gradient)} = '
              f'df/d{y.upper()}."""'),
              *api.checks(api.backward), *check,
              f"    args = ({call(api.backward)})",
              "    shape = numpy.moveaxis(X, AXIS, 0).shape[1:]"]
    values = []  # returned at once: the scalar functions' names are the results' names
    for leaf in api.gradients:
        kind = m.leaves[leaf]
        if kind == "element":
            values.append(f"_stack(d{leaf}(*args), X, dtype)")
        elif kind == "along":
            values.append(f"numpy.array([numpy.broadcast_to(v, shape).sum() "
                          f"for v in d{leaf}(*args)]).astype(dtype)")
        else:
            values.append(f"numpy.broadcast_to(d{leaf}(*args), shape).astype(dtype)")
    lines += ["    return (" + values[0] + ","] + [f"            {v}," for v in values[1:]]
    lines[-1] = lines[-1][:-1] + ")"
    lines.append("")
    return "\n".join(lines)
