"""Derivatives through a layer's graph (BatchNorm or any model), in the note's two modes.

Forward mode composes each node down to the leaves and differentiates the composed
expression directly.  Backward mode never composes: it walks the graph from f back to the
leaf, multiplies the local partial of each node with respect to its direct parent along every
path, and sums over paths.  Both use one primitive, `derivative`: the sum, product and power
rules applied to an expression graph, each shared subexpression once (SymPy's `diff` gives the
same result on the tree, which for a composed BatchNorm expression is N times larger).

Both speak of f only through its partials df/dy[i] = dy[i]: f is an arbitrary function.
`bn` is any graph with `nodes` (f last, its parents the output nodes y), `f`, `compose`,
`support`, `descendants` and `cache`: a `BatchNorm` or a model's `symbn.graph.Instance`; the
upstream gradient of output y[...] is the leaf dy[...].
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import sympy as sp

from .errors import SymbnError
from .expr import symbols_of

if TYPE_CHECKING:
    from .graph import Graph as BatchNorm  # any graph: a BatchNorm or a model Instance

# ---------------------------------------------------------------------------------------
# forward mode: chain rule straight through the composed expressions
# ---------------------------------------------------------------------------------------


def total_derivative(bn: BatchNorm, expr: sp.Expr, wrt: sp.Symbol) -> sp.Expr:
    """d expr / d wrt with every node following `wrt`, by composing and differentiating.

    `wrt` is a leaf (x, gamma, beta, eps), or a node y[i] when `expr` is f (df/dy[i] =
    dy[i]).  f enters through the chain rule df = sum_i dy[i] dy_i; it is never given a
    formula.  Refused: a node other than y[i] with f (y[i] is a function of the leaves, so
    "holding the leaves fixed" would differentiate the text, not the value), and an `expr`
    containing dy, which depends on the leaves through f (a second derivative of f).

    >>> from symbn.model import BatchNorm
    >>> bn = BatchNorm(2)
    >>> total_derivative(bn, bn.mu(), bn.x(1))
    1/2
    >>> total_derivative(bn, bn.f, bn.y(2))
    dy[2]
    """
    if wrt in bn.nodes:
        if expr != bn.f or wrt not in _y_index(bn):
            raise SymbnError(f"cannot differentiate {expr} with respect to the node {wrt}; "
                             "only D(f, y[i]) = dy[i] is defined; use a leaf (x, gamma, "
                             "beta, eps)")
        return _dy_of(bn, wrt)
    if bn.support(expr) & set(_y_index(bn).values()):
        raise SymbnError(f"cannot differentiate {expr}: it contains dy = df/dy, which depends "
                         "on the leaves through f (second derivatives of f are not modelled)")
    composed = bn.compose(expr, keep=frozenset({bn.f}))
    result = derivative(composed, wrt)
    if bn.f in symbols_of(composed):
        df = forward_gradient(bn, wrt)
        result = _add([result, _mul([derivative(composed, bn.f), df])])
    return result


def forward_gradient(bn: BatchNorm, wrt: sp.Symbol, ys=None) -> sp.Expr:
    """df/d wrt = sum over y of dy * d y/d wrt (y composed to the leaves), as the note writes.

    `ys` restricts the sum (a subset of the y nodes), giving the coefficient of those dy.

    >>> from symbn.model import BatchNorm
    >>> bn = BatchNorm(2)
    >>> forward_gradient(bn, bn.beta())
    dy[1] + dy[2]
    """
    ys = list(bn.nodes[bn.f].parents) if ys is None else ys
    if wrt in bn.nodes:  # wrt = y[k]: nothing upstream follows it
        return sp.Add(*[_dy_of(bn, y) for y in ys if y == wrt])
    memo: dict = {}  # shared by every y: the composed mu and v are differentiated once
    return _add([_mul([_dy_of(bn, y), derivative(bn.compose(y), wrt, memo)]) for y in ys])


def derivative(expr: sp.Expr, wrt: sp.Symbol, memo: dict | None = None) -> sp.Expr:
    """d expr / d wrt by the sum, product and power rules, each shared subexpression once.

    SymPy's `diff` gives the same derivative but walks the expression as a tree; a composed
    BatchNorm expression is a graph whose tree is N times larger.  Anything outside the
    rational-power fragment is handed to `diff`.

    >>> a, b = sp.symbols("a b")
    >>> sp.expand(derivative(a ** 3 * b + sp.sqrt(a), a))
    3*a**2*b + 1/(2*sqrt(a))
    """
    memo = {} if memo is None else memo
    hit = memo.get(id(expr))
    if hit is not None:
        return hit[1]
    if expr.is_Symbol:
        out = sp.Integer(int(expr == wrt))
    elif expr.is_Number:
        out = sp.Integer(0)
    elif expr.is_Add:
        out = _add([derivative(a, wrt, memo) for a in expr.args])
    elif expr.is_Mul:
        args = expr.args
        terms = []
        for k, a in enumerate(args):
            da = derivative(a, wrt, memo)
            if da != 0:
                terms.append(_mul([*args[:k], da, *args[k + 1:]]))
        out = _add(terms)
    elif expr.is_Pow and wrt not in symbols_of(expr.exp):
        base, exp = expr.args
        db = derivative(base, wrt, memo)
        out = sp.Integer(0) if db == 0 else \
            _mul([exp, _pow(base, exp - 1), db])
    else:
        out = sp.diff(expr, wrt)
    memo[id(expr)] = (expr, out)
    return out


def _add(terms: list) -> sp.Expr:
    terms = [t for t in terms if t != 0]
    if not terms:
        return sp.Integer(0)
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


def _mul(factors: list) -> sp.Expr:
    coeff, rest = sp.Integer(1), []
    for f in factors:
        if f.is_Number:
            coeff *= f
        else:
            rest.append(f)
    if coeff == 0:
        return sp.Integer(0)
    if coeff != 1:
        rest.insert(0, coeff)
    if not rest:
        return coeff
    return rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False)


def _pow(base: sp.Expr, exp: sp.Expr) -> sp.Expr:
    if exp == 0:
        return sp.Integer(1)
    return base if exp == 1 else sp.Pow(base, exp, evaluate=False)


def _dy_of(bn: BatchNorm, y: sp.Symbol) -> sp.Symbol:
    if y not in _y_index(bn):
        raise SymbnError(f"{y} is not an output node of the model")
    return _y_index(bn)[y]


def _y_index(bn: BatchNorm) -> dict:
    """Each output node y[...] (f's parents) -> its upstream gradient dy[...]."""
    if "y_index" not in bn.cache:
        bn.cache["y_index"] = {y: sp.Symbol("d" + y.name) for y in bn.nodes[bn.f].parents}
    return bn.cache["y_index"]


# ---------------------------------------------------------------------------------------
# backward mode: reverse traversal, local partials, a sum over paths
# ---------------------------------------------------------------------------------------


def local_partial(bn: BatchNorm, node: sp.Symbol, parent: sp.Symbol) -> sp.Expr:
    """Partial of `node`'s definition with respect to its direct parent, other parents fixed.

    >>> from symbn.model import BatchNorm
    >>> bn = BatchNorm(2)
    >>> local_partial(bn, bn.xhat(1), bn.x(1))
    1/sqrt(eps + v)
    """
    if node not in bn.nodes:
        raise SymbnError(f"{node} is not a node of the graph; nodes are "
                         + ", ".join(map(str, list(bn.nodes)[:6])) + ", ...")
    parents = bn.nodes[node].parents
    if parent not in parents:
        raise SymbnError(f"{parent} is not a direct parent of {node}; its parents are "
                         + ", ".join(map(str, parents)))
    if node == bn.f:
        return _dy_of(bn, parent)
    key = ("local_partial", node, parent)
    if key not in bn.cache:
        bn.cache[key] = derivative(bn.nodes[node].definition, parent)
    return bn.cache[key]


def paths(bn: BatchNorm, source: sp.Symbol, target: sp.Symbol | None = None) -> list[tuple]:
    """Every path from `target` (default f) back to `source`, listed source first.

    >>> from symbn.model import BatchNorm
    >>> bn = BatchNorm(1)
    >>> [' -> '.join(map(str, p)) for p in paths(bn, bn.x(1))]  # doctest: +NORMALIZE_WHITESPACE
    ['x[1] -> mu -> v -> xhat[1] -> y[1] -> f', 'x[1] -> mu -> xhat[1] -> y[1] -> f',
     'x[1] -> v -> xhat[1] -> y[1] -> f', 'x[1] -> xhat[1] -> y[1] -> f']
    """
    target = bn.f if target is None else target
    found: list[tuple] = []
    on_a_path = bn.descendants(source) | {source}  # nodes that can lead back to source
    leads_back: dict = {}  # node -> its parents on a path, listed once per node

    def walk(node: sp.Symbol, suffix: tuple) -> None:  # reverse traversal: node back to parents
        if node == source:
            found.append((node,) + suffix)
            return
        if node not in leads_back:
            parents = bn.nodes[node].parents if node in bn.nodes else ()
            leads_back[node] = [p for p in parents if p in on_a_path]
        for parent in leads_back[node]:
            walk(parent, (node,) + suffix)

    walk(target, ())
    return sorted(found, key=lambda p: [s.name for s in p])


def backward_gradient(bn: BatchNorm, wrt: sp.Symbol, ys=None) -> sp.Expr:
    """df/d wrt = sum over paths f -> ... -> wrt of the product of local partials.

    `ys` keeps only the paths through those y nodes (the coefficient of their dy).

    >>> from symbn.model import BatchNorm
    >>> bn = BatchNorm(2)
    >>> backward_gradient(bn, bn.beta())
    dy[1] + dy[2]
    """
    terms = []
    through = None if ys is None else set(ys)
    for path in paths(bn, wrt):
        if through is not None and not through.intersection(path):
            continue
        product = sp.Integer(1)
        for parent, child in pairwise(path):
            product *= local_partial(bn, child, parent)
        terms.append(product)
    return sp.Add(*terms)
