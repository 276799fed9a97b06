"""Certified separation of two exact values that may involve square roots.

When a claim has irrational values at every rational point (several square roots, such as
sqrt(v) beside sqrt(v + eps)) or leaves the fragment the canonical forms decide, a disproof
is still possible: evaluate both sides exactly at a rational point (SymPy keeps sqrt(2/3) as
an exact algebraic number) and enclose the difference in an interval computed with outward
rounding (mpmath's `iv`).  An enclosure that excludes 0 proves the sides differ there.
Nothing here can prove an identity.  The model is any object of the `symbn.prove.Model`
protocol (leaves, positive, support, evaluate).

>>> certainly_nonzero(sp.sqrt(3) - sp.Rational(17, 10))
True
"""

from __future__ import annotations

import random
from fractions import Fraction

import sympy as sp
from mpmath import iv

from ..model import as_expr
from .interface import Model, _fmt
from .witness import positive_sample


class _NoEnclosure(Exception):
    pass


def enclose(expr: sp.Expr, prec: int = 256):
    """A rigorous interval containing the value of a closed exact expression.

    >>> enclose(sp.sqrt(2) - sp.Rational(7, 5)).a > 0
    True
    """
    old = iv.prec
    iv.prec = prec
    try:
        return _enclose(as_expr(expr))
    finally:
        iv.prec = old


WIDE = 2048  # bits of the second enclosure


def gap_of(expr: sp.Expr):
    """An enclosure of a closed exact value; when the first (256 bits) contains 0, one more
    at WIDE bits, so that sides 10**-128 apart are told apart (an equality costs both).

    >>> gap_of(sp.sqrt(sp.Rational(4, 9) + sp.Rational(1, 10**128)) - sp.Rational(2, 3)).a > 0
    True
    """
    gap = enclose(expr)
    return enclose(expr, WIDE) if gap.a <= 0 <= gap.b else gap


def _enclose(e):
    if e.is_Rational:
        return iv.mpf(int(e.p)) / iv.mpf(int(e.q))
    if e.is_Add:
        total = iv.mpf(0)
        for a in e.args:
            total += _enclose(a)
        return total
    if e.is_Mul:
        total = iv.mpf(1)
        for a in e.args:
            total *= _enclose(a)
        return total
    if e.is_Pow and e.exp.is_Rational and e.exp.q in (1, 2):
        base = _enclose(e.base)
        if e.exp.q == 2:
            if base.a < 0:
                raise _NoEnclosure
            base = iv.sqrt(base)
        if int(e.exp.p) < 0 and base.a <= 0 <= base.b:
            raise _NoEnclosure
        return base ** int(e.exp.p)
    raise _NoEnclosure


def certainly_nonzero(value: sp.Expr) -> bool:
    """Whether an exact closed value (rationals, square roots) is certainly not 0: exactly
    for a rational, by an enclosing interval that excludes 0 otherwise.

    >>> certainly_nonzero(sp.sqrt(2) - 1), certainly_nonzero(sp.Integer(0))
    (True, False)
    """
    return _certainly(value, lambda q: q != 0, lambda gap: gap.a > 0 or gap.b < 0)


def certainly_nonnegative(value: sp.Expr) -> bool:
    """Whether an exact closed value is certainly >= 0, the same way.

    >>> certainly_nonnegative(sp.Integer(0)), certainly_nonnegative(1 - sp.sqrt(2))
    (True, False)
    """
    return _certainly(value, lambda q: q >= 0, lambda gap: gap.a >= 0)


def _certainly(value: sp.Expr, exact, interval) -> bool:
    """`exact` of a rational value; `interval` of an enclosure of any other real closed
    value; False for what is not a finite real number or cannot be enclosed."""
    value = as_expr(value)
    if value.is_Rational:
        return bool(exact(value))
    if value.has(sp.zoo, sp.nan, sp.I, sp.oo):
        return False
    try:
        gap = gap_of(value)
    except (_NoEnclosure, ZeroDivisionError):
        return False
    return bool(interval(gap))


def separation(left: sp.Expr, right: sp.Expr) -> str | None:
    """Whether two exact closed real values certainly differ: "" when both are rationals
    and differ, the enclosure of left - right as text when it excludes 0, else None.

    >>> separation(sp.Integer(1), sp.Rational(1, 2)), separation(sp.Integer(1), sp.Integer(1))
    ('', None)
    >>> separation(sp.sqrt(2), sp.Rational(7, 5))
    'lhs - rhs in [0.014213562, 0.014213562]'
    """
    left, right = as_expr(left), as_expr(right)
    if left.is_Rational and right.is_Rational:
        return "" if left != right else None
    if left.has(sp.zoo, sp.nan, sp.I) or right.has(sp.zoo, sp.nan, sp.I):
        return None
    try:
        gap = gap_of(left - right)
    except (_NoEnclosure, ZeroDivisionError):
        return None
    if gap.a > 0 or gap.b < 0:
        return f"lhs - rhs in [{sp.Float(gap.a, 8)}, {sp.Float(gap.b, 8)}]"
    return None


def separating_point(model: Model, lhs: sp.Expr, rhs: sp.Expr, seed: int = 0,
                     tries: int = 40) -> dict | None:
    """A rational point with every positive leaf (eps) > 0 where lhs and rhs certainly
    differ, or None."""
    rng = random.Random(seed)
    support = model.support(sp.Tuple(lhs, rhs))
    leaves = [s for s in model.leaves if s in support]
    positive = [s for s in leaves if s in model.positive]
    for attempt in range(tries):
        radius = 3 if attempt < 20 else 50
        point = {s: Fraction(rng.randint(-radius, radius)) for s in leaves}
        for p in positive:
            point[p] = positive_sample(rng, radius)
        try:
            left, right = model.evaluate(lhs, point), model.evaluate(rhs, point)
            if left.has(sp.zoo, sp.nan, sp.I) or right.has(sp.zoo, sp.nan, sp.I):
                continue
            gap = gap_of(left - right)
        except (_NoEnclosure, ZeroDivisionError):
            continue
        if gap.a > 0 or gap.b < 0:
            return {"point": {str(k): _fmt(v) for k, v in point.items()},
                    "lhs": str(left), "rhs": str(right),
                    "separation": f"lhs - rhs in [{sp.Float(gap.a, 8)}, {sp.Float(gap.b, 8)}]"}
    return None
