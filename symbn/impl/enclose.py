"""Rigorous enclosure of a closed form at an exact point, with a rounding-error coefficient.

`enclose(g, expr, point)` evaluates `expr` (leaves and node symbols of the instance `g`,
node definitions followed) over Add, Mul, Pow and rationals in mpmath interval arithmetic
(`mpmath.iv`, 160 bits, outward rounding): the exact value lies in the returned interval.

Alongside it computes E, a first-order rounding-error coefficient of evaluating the same
formula op by op in floating point with exact inputs, every operation rounded once with
relative error at most u (so the computed value is within about u * E of the exact one):

- a rational or a leaf: E = 0 (the points are chosen exactly representable);
- a sum of k terms: E = sum E_i + (k - 1) * sum |v_i| (recursive summation, worst case);
- a product of k factors: E = sum_i E_i * prod_{j != i} |v_j| + (k - 1) * |v|;
- b ** p: E = |p| * |b| ** (p - 1) * E_b + (|2p| + 1) * |v| (p an integer or a half).

Route 2 multiplies it by a generous factor for an equivalent formula computed in another
order (`symbn.impl.floats.BOUND_FACTOR`).  Anything else (exp, a radicand not positive, a
denominator whose enclosure contains 0, a point so ill-conditioned that first order does not
hold) raises `NotEnclosed`: the comparison at that point is then not made.

>>> import sympy as sp
>>> from symbn.models import load
>>> g = load("batchnorm").instantiate(2, 1)
>>> x1, x2, eps = g.leaves[0], g.leaves[1], g.leaves[4]
>>> value, e = enclose(g, 1 / sp.sqrt(x1 - x2 + eps), {x1: 3, x2: 1, eps: 2})
>>> value.a <= 0.5 <= value.b, e > 0
(True, True)
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

import mpmath
import sympy as sp

PRECISION = 160  # bits of the interval arithmetic
_CHECK_U = 2.0 ** -24  # first order must hold even at single precision (with a margin)


class NotEnclosed(ValueError):
    """The expression leaves the fragment enclosed here, or the point is ill-conditioned."""


def enclose(g, expr: sp.Expr, point: dict) -> tuple:
    """(interval value, upper bound of E + |value|) of `expr` at `point` ({leaf symbol:
    rational})."""
    return Encloser(g, point).enclose(expr)


@contextlib.contextmanager
def _precision():
    previous = mpmath.iv.prec
    mpmath.iv.prec = PRECISION
    try:
        yield
    finally:
        mpmath.iv.prec = previous


def interval_of(q) -> mpmath.iv.mpf:
    """The tightest interval of the rational q (exact when q is dyadic)."""
    q = Fraction(q)
    with _precision():
        return mpmath.iv.mpf(q.numerator) / mpmath.iv.mpf(q.denominator)


class Encloser:
    """`enclose` at one point, with the node values shared between expressions."""

    def __init__(self, g, point: dict):
        self.g = g
        self.point = point
        self.memo: dict = {}

    def enclose(self, expr: sp.Expr) -> tuple:
        """(interval value v, upper bound of E + |v|): |v| is a floor for a formula that
        rounds where this one is exact (E = 0 for a leaf); a constant 0 gets 1, the scale of
        the points, for a formula that computes it by cancellation."""
        with _precision():
            value, e = self.ev(sp.sympify(expr))
            scale = (e + abs(value)).b
            return value, scale if (scale > 0) is True else mpmath.iv.mpf(1)

    def ev(self, e: sp.Expr):
        hit = self.memo.get(e)
        if hit is None:
            hit = self.memo[e] = self._ev(e)
        return hit

    def _ev(self, e: sp.Expr):
        iv = mpmath.iv
        zero = iv.mpf(0)
        if e.is_Rational:
            return interval_of(Fraction(int(e.p), int(e.q))), zero
        if e.is_Symbol:
            if e in self.point:
                return interval_of(self.point[e]), zero
            node = self.g.nodes.get(e)
            if node is None or e == self.g.f:
                raise NotEnclosed(f"no value for {e}")
            return self.ev(node.definition)
        if e.is_Add:
            parts = [self.ev(a) for a in e.args]
            value = sum((v for v, _ in parts), zero)
            err = sum((x for _, x in parts), zero) + \
                (len(parts) - 1) * sum((abs(v) for v, _ in parts), zero)
            return value, err
        if e.is_Mul:
            parts = [self.ev(a) for a in e.args]
            value = iv.mpf(1)
            for v, _ in parts:
                value = value * v
            err = (len(parts) - 1) * abs(value)
            for i, (_, x) in enumerate(parts):
                others = iv.mpf(1)
                for j, (v, _) in enumerate(parts):
                    if j != i:
                        others = others * abs(v)
                err = err + x * others
            return value, err
        if e.is_Pow and e.exp.is_Rational and e.exp.q in (1, 2):
            return self._pow(self.ev(e.base), e.exp)
        raise NotEnclosed(f"{type(e).__name__} is not enclosed (only +, *, powers, square "
                          "roots)")

    @staticmethod
    def _pow(base, p: sp.Rational):
        iv = mpmath.iv
        b, eb = base
        if p.is_Integer and p > 0:
            k = int(p)
            value = b ** k
            err = k * abs(b) ** (k - 1) * eb + (k - 1) * abs(value)
            return value, err
        if p.q == 2 and not b.a > 0:
            raise NotEnclosed(f"a square root of {b}, not certified positive")
        if not (b.a > 0 or b.b < 0):
            raise NotEnclosed(f"a negative power of {b}, which may be 0")
        magnitude = abs(b)
        if not 4 * 64 * _CHECK_U * eb.b < magnitude.a:  # first order would not hold
            raise NotEnclosed("the point is ill-conditioned (a denominator or radicand is "
                              "not far from its rounding error)")
        value = iv.sqrt(b) ** int(p * 2) if p.q == 2 else b ** int(p)
        k = float(abs(p))  # a half-integer: exact
        err = k * abs(value) / magnitude * eb + (2 * k + 1) * abs(value)  # |p| |b|^(p-1) E_b
        return value, err
