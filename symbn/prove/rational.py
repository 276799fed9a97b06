"""Rational functions num/den of FLINT polynomials, as `Algebra` builds them (`_Frac`).

Never reduced: only num == 0 is ever asked.  Every product goes through the size budget.

>>> import flint
>>> ctx = flint.fmpq_mpoly_ctx.get(["x"], "degrevlex")
>>> x, one = ctx.gens()[0], ctx.from_dict({(0,): 1})
>>> (_Frac(x, one) + _Frac(one, x)).num  # x + 1/x = (x^2 + 1)/x
x^2 + 1
"""

from __future__ import annotations

from .budget import _gcd, _power, _times


def _push(partial: list, poly) -> None:
    """Add `poly` to a running sum kept as partial sums of 1, 2, 4, ... terms (a binary
    counter): each term is copied O(log k) times, not k times as when added one by one to a
    growing total, and at most log k partial sums are alive at once.

    >>> partial = []
    >>> for k in range(5):
    ...     _push(partial, k)
    >>> [count for count, _ in partial], _total(partial, None)
    ([4, 1], 10)
    """
    count = 1
    while partial and partial[-1][0] <= count:
        c, q = partial.pop()
        poly, count = q + poly, count + c
    partial.append((count, poly))


def _total(partial: list, ctx):
    """The sum of a `_push` running sum (zero of `ctx` when empty)."""
    if not partial:
        return ctx.from_dict({})
    total = partial[-1][1]
    for _, q in reversed(partial[:-1]):
        total = q + total
    return total


class _Frac:
    """num/den with FLINT polynomials; never reduced, since only num == 0 is ever asked."""

    __slots__ = ("den", "num")

    def __init__(self, num, den):
        self.num, self.den = num, den

    def __add__(self, other: _Frac) -> _Frac:
        if self.den == other.den:
            return _Frac(self.num + other.num, self.den)
        g = _gcd(self.den, other.den)
        a, b = self.den / g, other.den / g
        return _Frac(_times(self.num, b) + _times(other.num, a), _times(a, other.den))

    def __mul__(self, other: _Frac) -> _Frac:
        return _Frac(_times(self.num, other.num), _times(self.den, other.den))

    def inverse(self) -> _Frac:
        if self.num.is_zero():
            raise ZeroDivisionError("division by an expression that is identically zero")
        return _Frac(self.den, self.num)

    def __pow__(self, k: int) -> _Frac:
        base = self if k >= 0 else self.inverse()
        return _Frac(_power(base.num, abs(k)), _power(base.den, abs(k)))

    def is_zero(self) -> bool:
        return self.num.is_zero()


def _degree(poly, index: int) -> int:
    return 0 if poly.is_zero() else int(poly.degrees()[index])
