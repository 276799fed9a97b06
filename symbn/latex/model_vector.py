r"""One set's gradient of an element leaf as a matrix times the output gradient, for one N.

A closed form of D(f, x[j]) that is a sum of terms `u(j) dy[j]` and `s r(j) Sum(h(k) dy[k])`
(s free of rows, u, r, h expressions of one row, free of dy) is the vector identity

    df/dx = (diag(u) + sum of s r h^T) df/dy

for the vectors x, dy of one set; diag(u) is u I when u has no row.  This only reads the
shape of the model's closed form: the matrix, written out at the document's N, is proved
equal to the closed form entry by entry (`vector/d<leaf>`), like BatchNorm's `matrix/form`.
A closed form of another shape gets no vector form (`vector_form` returns None).

>>> from symbn.models import load
>>> g = load("rmsnorm").instantiate(2)
>>> vector_result(g, "x", vector_form(g, "x")).verdict
'proved'
"""

from __future__ import annotations

import time
from itertools import product

import sympy as sp

from ..graph import Instance
from ..prove import PROVED, Algebra
from ..report import Result


def _terms(e: sp.Expr, dy: sp.IndexedBase) -> list[sp.Expr]:
    """e as a sum of terms, distributing only over the sums that hold dy (sums over rows,
    powers and dy-free factors left whole)."""
    if not e.has(dy):
        return [e]
    if e.is_Add:
        return [t for a in e.args for t in _terms(a, dy)]
    if e.is_Mul:
        return [sp.Mul(*p) for p in product(*[_terms(a, dy) for a in e.args])]
    return [e]


def _without(e: sp.Expr, factor: sp.Expr) -> sp.Expr | None:
    """e / factor when factor is one factor of the product e, else None."""
    args = list(sp.Mul.make_args(sp.Mul(*sp.Mul.make_args(e))))
    if args.count(factor) != 1:
        return None
    args.remove(factor)
    return sp.Mul(*args)


def _shape(g: Instance, leaf: str):
    """(u, [(s, r, h, k)]) of the closed form of D(f, leaf[j]), or None."""
    from ..derivation import N
    from .model import j

    m = g.model
    dy = sp.IndexedBase(m.gradient)
    diag, outer = [], []
    for term in _terms(m.results[leaf].template, dy):
        factors = sp.Mul.make_args(term)
        sums = [a for a in factors if isinstance(a, sp.Sum) and a.has(dy)]
        rest = sp.Mul(*[a for a in factors if a not in sums])
        if not sums and rest.has(dy[j]):
            u = _without(rest, dy[j])
            if u is None or u.has(dy):
                return None
            diag.append(u)
            continue
        if len(sums) != 1 or rest.has(dy) or len(sums[0].limits) != 1:
            return None
        k, lower, upper = sums[0].limits[0]
        h = _without(sums[0].function, dy[k])
        if h is None or h.has(dy) or (lower, upper) != (1, N):
            return None
        row = sp.Mul(*[a for a in sp.Mul.make_args(rest) if a.has(j)])
        scalar = sp.Mul(*[a for a in sp.Mul.make_args(rest) if not a.has(j)])
        outer.append((scalar, row, h, k))
    return sp.Add(*diag), outer


def vector_form(g: Instance, leaf: str) -> sp.Expr | None:
    """The matrix form of one set's D(f, leaf) at the instance's N, unevaluated, or None."""
    from .model import j

    shape = _shape(g, leaf)
    if shape is None:
        return None
    u, outer = shape
    n, rows = g.n, list(g.rows())
    dyv = sp.MatrixSymbol(g.model.gradient, n, 1)  # printed df/dy; explicit when proved
    parts = []
    if u != 0:
        if u.has(j):  # diag(s r_j): the row-free factor s in front
            scalar = sp.Mul(*[a for a in sp.Mul.make_args(u) if not a.has(j)])
            row = sp.Mul(*[a for a in sp.Mul.make_args(u) if a.has(j)])
            diagonal = sp.ImmutableMatrix(sp.diag(*[g.template(row, {"j": r}) for r in rows]))
            parts.append(diagonal if scalar == 1 else
                         sp.MatMul(g.template(scalar, {}), diagonal, evaluate=False))
        else:
            parts.append(sp.MatMul(g.template(u, {}), sp.Identity(n), evaluate=False))
    for scalar, row, h, k in outer:
        left = sp.ImmutableMatrix([g.template(row, {"j": r}) for r in rows]) if row != 1 \
            else sp.ImmutableMatrix(sp.ones(n, 1))
        right = sp.ImmutableMatrix([g.template(h, {str(k): r}) for r in rows])
        parts.append(sp.MatMul(g.template(scalar, {}), left, sp.Transpose(right),
                               evaluate=False))
    if not parts:
        return None
    inner = parts[0] if len(parts) == 1 else sp.MatAdd(*parts, evaluate=False)
    return sp.MatMul(inner, dyv, evaluate=False)


def vector_result(g: Instance, leaf: str, form: sp.Expr) -> Result:
    """Each entry of `form` equals the closed form's entry (`vector/d<leaf>`)."""
    start = time.monotonic()
    alg = Algebra(g)
    dyv = sp.ImmutableMatrix([g.symbol(g.model.gradient, r) for r in g.rows()])
    vector = form.xreplace({sp.MatrixSymbol(g.model.gradient, g.n, 1): dyv}).as_explicit()
    for r in g.rows():
        outcome = alg.decide(vector[r - 1], g.result(leaf, r))
        if outcome.verdict != PROVED:
            return Result(f"vector/d{leaf}", outcome.verdict, outcome.method,
                          time.monotonic() - start, outcome.witness, f"row {r}")
    return Result(f"vector/d{leaf}", PROVED, "exact", time.monotonic() - start)
