"""Linear forms in dy: linearity proved by structure (`linear_in`), then the coefficients, so
that two linear forms are compared coefficient by coefficient.

>>> from symbn.model import BatchNorm
>>> bn = BatchNorm(2)
>>> coefficients(bn, 2 * bn.dy(1) + bn.x(1) * bn.dy(2), {bn.dy(1), bn.dy(2)})
{dy[1]: 2, dy[2]: x[1]}
"""

from __future__ import annotations

import sympy as sp

from ..model import BatchNorm, as_expr, rebuild


def linear_in(bn: BatchNorm, expr: sp.Expr, variables: set) -> bool:
    """Whether every term of `expr` carries exactly one factor from `variables`.

    A sufficient, exact criterion for `expr` = sum_k v_k * expr|_(v = e_k) (a linear form):
    by induction on the expression, a variable is degree 1, anything free of them degree 0,
    a sum needs all its terms of one degree, a product adds degrees (at most 1), and a power
    or a node definition must be free of the variables.  Sharing is visited once.

    >>> bn = BatchNorm(2)
    >>> dy = {bn.dy(1), bn.dy(2)}
    >>> linear_in(bn, bn.gamma() * (bn.dy(1) - bn.xhat(1) * bn.dy(2)), dy)
    True
    >>> linear_in(bn, bn.dy(1) + 1, dy), linear_in(bn, bn.dy(1) * bn.dy(2), dy)
    (False, False)
    >>> linear_in(bn, sp.Integer(0), dy)
    True
    """
    known: dict = {}

    def degree(e) -> int | None:
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        if e.is_Symbol:
            out = 1 if e in variables else 0
            if e in bn.nodes and e != bn.f and degree(bn.nodes[e].definition) != 0:
                out = None
        elif e.is_Number:
            out = 0
        elif e.is_Add:
            ds = {degree(a) for a in e.args}
            out = ds.pop() if len(ds) == 1 else None
        elif e.is_Mul:
            ds = [degree(a) for a in e.args]
            out = None if None in ds or sum(ds) > 1 else sum(ds)
        else:
            out = 0 if all(degree(a) == 0 for a in e.args) else None
        known[id(e)] = (e, out)
        return out

    expr = as_expr(expr)
    return expr == 0 or degree(expr) == 1  # 0: the form whose coefficients are all 0


def unit_coefficient(expr: sp.Expr, var: sp.Symbol, variables: set) -> sp.Expr:
    """`expr` at var = 1 and the other `variables` at 0: the coefficient of `var` when `expr`
    is a linear form in `variables` (`linear_in`).  Shared subexpressions stay shared.

    >>> bn = BatchNorm(2)
    >>> dy = {bn.dy(1), bn.dy(2)}
    >>> unit_coefficient(3 * bn.dy(1) + bn.x(1) * bn.dy(2), bn.dy(2), dy)
    x[1]
    """
    unit = {v: sp.Integer(int(v == var)) for v in variables}
    return rebuild(as_expr(expr), unit, {}, evaluate=True)


def coefficients(bn: BatchNorm, expr: sp.Expr, variables: set) -> dict | None:
    """{v: coefficient of v} of a linear form in `variables`, in one pass over `expr`; None
    when `expr` is not one by the criterion of `linear_in`.  A variable missing from the
    result has coefficient 0.

    By induction on the expression, e = sum_v v * C_v(e): a variable is its own coefficient
    1, a sum adds its terms' coefficients, and a product with one linear factor F times
    factors G free of the variables has C_v = C_v(F) * G.

    >>> bn = BatchNorm(2)
    >>> c = coefficients(bn, bn.gamma() * (bn.dy(1) - bn.xhat(1) * bn.dy(2)), {bn.dy(1), bn.dy(2)})
    >>> c[bn.dy(1)], c[bn.dy(2)]
    (gamma, -gamma*xhat[1])
    """
    if not linear_in(bn, expr, variables):
        return None
    known: dict = {}

    def coeffs(e) -> dict | None:  # None: free of the variables
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        out = None
        if e.is_Symbol and e in variables:
            out = {e: sp.Integer(1)}
        elif e.is_Add:
            terms: dict = {}
            for a in e.args:
                for v, c in (coeffs(a) or {}).items():
                    terms.setdefault(v, []).append(c)
            out = {v: sp.Add(*cs) for v, cs in terms.items()} if terms else None
        elif e.is_Mul:
            parts = [(a, coeffs(a)) for a in e.args]
            linear = [c for _, c in parts if c is not None]
            if linear:  # exactly one factor is linear (`linear_in`)
                rest = sp.Mul(*[a for a, c in parts if c is None])
                out = {v: c * rest for v, c in linear[0].items()}
        known[id(e)] = (e, out)
        return out

    return coeffs(as_expr(expr)) or {}
