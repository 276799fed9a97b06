"""Disproofs: an exact rational point where lhs != rhs, re-evaluated by the model (SymPy).

`positive_sample` and `root_above` draw the positive leaves and the square roots of every
point search (here, `symbn.prove.separate`, `symbn.prove.multiradical`).

>>> from symbn.model import BatchNorm
>>> from symbn.prove import Algebra
>>> bn = BatchNorm(2)
>>> sorted(Algebra(bn).decide(bn.x(1), bn.x(2)).witness)
['lhs', 'point', 'rhs']
"""

from __future__ import annotations

import math
import random
import time
from fractions import Fraction

import flint
import sympy as sp

from .interface import _fmt
from .rational import _Frac


def positive_sample(rng: random.Random, radius: int) -> Fraction:
    """A rational > 0: half the time an integer 1..radius, half the time a small fraction
    p/q in (0, 1), so that a claim false only for small eps (0 < eps < 1/2) is refuted too.

    >>> all(0 < positive_sample(random.Random(k), 3) for k in range(50))
    True
    """
    if rng.random() < 0.5:
        return Fraction(rng.randint(1, radius))
    q = rng.randint(2, 12)
    return Fraction(rng.randint(1, q - 1), q)


def root_above(w: Fraction, rng: random.Random) -> Fraction:
    """A rational s > 0 with s**2 > w, often just above sqrt(w), so that eps = s**2 - w
    ranges over small values as well as large ones.

    >>> all(root_above(Fraction(2), random.Random(k)) ** 2 > 2 for k in range(50))
    True
    """
    q = rng.choice((1, 1, 2, 3, 5, 8))
    # isqrt(floor(w q^2)) + 1 > sqrt(w) q, so s^2 > w
    return Fraction(math.isqrt(max(0, math.floor(w * q * q))) + rng.randint(1, 3), q)


class Witnesses:
    """The witness search of `Algebra` (a mixin: it uses its model, leaves and radicands)."""

    def witness(self, lhs, rhs, diff: _Frac, mode, seed: int = 0,
                deadline: float | None = None, tries: int = 60) -> dict | None:
        """An exact point with eps > 0 where lhs != rhs, checked by independent evaluation."""
        rng = random.Random(seed)
        support = self.model.support(sp.Tuple(lhs, rhs))
        needed = [s for s in self.symbols if s in support] or self.symbols
        for attempt in range(tries):
            if deadline is not None and time.monotonic() > deadline:
                return None
            radius = (3, 10, 1000)[min(attempt // 20, 2)]
            pt = {sym: Fraction(rng.randint(-radius, radius)) for sym in self.symbols}
            for p in self.positive:
                pt[p] = positive_sample(rng, radius)
            args = [flint.fmpq(q.numerator, q.denominator) for q in pt.values()]
            if mode is not None:
                p = self._radicands[mode][0]
                w = self._radicands[mode][1](*(args + [flint.fmpq(0)]))
                w = Fraction(int(w.p), int(w.q))
                s = root_above(w, rng)
                pt[p] = s * s - w  # > 0, and w + p = s^2 is a rational square
                args[self._eps_index(mode)] = flint.fmpq(pt[p].numerator, pt[p].denominator)
                s_arg = flint.fmpq(int(s.numerator), int(s.denominator))
            else:
                s_arg = flint.fmpq(1)
            if diff.den(*(args + [s_arg])) == 0 or diff.num(*(args + [s_arg])) == 0:
                continue
            point = {sym: q for sym, q in pt.items() if sym in needed}
            try:
                left = self.model.evaluate(lhs, point)
                right = self.model.evaluate(rhs, point)
            except ZeroDivisionError:
                continue
            if not (left.is_Rational and right.is_Rational) or left == right:
                continue
            return {"point": {str(k): _fmt(v) for k, v in point.items()},
                    "lhs": str(left), "rhs": str(right)}
        return None
