"""Deciding lhs = rhs exactly: canonical rational-function form, or an exact witness.

Every node is expanded down to the leaves x, dy, gamma, beta, eps.  The square root is the
only non-rational piece: for the one radicand sqrt(w(x) + eps) a claim contains, introduce
s > 0 and eliminate eps = s**2 - w(x).  On the domain eps > 0 this change of variables is a
bijection onto the open set {s > 0, s**2 > w(x)}, so lhs - rhs vanishes there exactly when
the numerator of its rational normal form in QQ(x, dy, gamma, beta, s) is the zero
polynomial.  Polynomials are FLINT's sparse multivariate polynomials over QQ.

A nonzero numerator is not yet a disproof: symbn searches for a rational point with eps > 0
and s rational (eps chosen so that w + eps is a perfect square) where the numerator and
denominator are nonzero, then re-evaluates both sides there with plain SymPy arithmetic on
Rationals, independently of the polynomial code.  Only a point where they differ is reported.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

import flint
import sympy as sp

from .model import BatchNorm

PROVED, DISPROVED, UNKNOWN, PROBABLE = "proved", "disproved", "unknown", "probable"
METHOD_EXACT = "exact"
METHOD_RADICAL = "exact, eps = s^2 - w"
METHOD_SEPARATED = "exact point, interval-certified"


@dataclass
class Outcome:
    """The verdict on one equation, with the witness of a disproof."""

    verdict: str
    method: str
    witness: dict | None = None
    note: str = ""


class Budget(Exception):
    """The time budget ran out."""


class _Unsupported(Exception):
    """The expression leaves the fragment the exact method decides."""


class _Frac:
    """num/den with FLINT polynomials; never reduced, since only num == 0 is ever asked."""

    __slots__ = ("num", "den")

    def __init__(self, num, den):
        self.num, self.den = num, den

    def __add__(self, other: "_Frac") -> "_Frac":
        if self.den == other.den:
            return _Frac(self.num + other.num, self.den)
        g = self.den.gcd(other.den)
        a, b = self.den / g, other.den / g
        return _Frac(self.num * b + other.num * a, a * other.den)

    def __mul__(self, other: "_Frac") -> "_Frac":
        return _Frac(self.num * other.num, self.den * other.den)

    def inverse(self) -> "_Frac":
        if self.num.is_zero():
            raise ZeroDivisionError("division by an expression that is identically zero")
        return _Frac(self.den, self.num)

    def __pow__(self, k: int) -> "_Frac":
        base = self if k >= 0 else self.inverse()
        return _Frac(base.num ** abs(k), base.den ** abs(k))

    def is_zero(self) -> bool:
        return self.num.is_zero()


class Algebra:
    """The field QQ(leaves, s) of one model, and conversion of SymPy expressions into it.

    >>> bn = BatchNorm(2)
    >>> alg = Algebra(bn)
    >>> alg.decide(bn.xhat(1) + bn.xhat(2), sp.Integer(0)).verdict
    'proved'
    """

    MAX_EXPONENT = 64

    def __init__(self, bn: BatchNorm):
        self.bn = bn
        self.symbols = list(bn.leaves)
        names = [f"t{k}" for k in range(len(self.symbols))] + ["s"]
        self.ctx = flint.fmpq_mpoly_ctx.get(names, "degrevlex")
        gens = self.ctx.gens()
        self.gen = dict(zip(self.symbols, gens))
        self.s = gens[-1]
        self.one = self.ctx.from_dict({(0,) * len(names): 1})
        # nodes free of eps (mu, v) convert to the same value in every mode: convert once
        self._shared: dict = {e: None for e in bn.nodes
                              if e != bn.f and bn.eps not in bn.support(e)}
        self._memos: dict[int, dict] = {}
        self._radicands: list = []  # w(x) of each radical seen; mode k means eps = s^2 - w_k

    # -- conversion -------------------------------------------------------------------
    def convert(self, expr: sp.Expr, mode: int | None, deadline: float | None = None) -> _Frac:
        """`expr` as num/den; mode None keeps eps free and rejects radicals."""
        memo = self._memos.setdefault(-1 if mode is None else mode, {})
        return self._convert(sp.sympify(expr), mode, memo, deadline)

    def _const(self, q) -> _Frac:
        return _Frac(self.one * flint.fmpq(int(q.p), int(q.q)), self.one)

    def _convert(self, e, mode, memo, deadline) -> _Frac:
        hit = memo.get(e)
        if hit is not None:
            return hit
        if deadline is not None and time.monotonic() > deadline:
            raise Budget
        bn = self.bn
        if e.is_Rational:
            out = self._const(e)
        elif e.is_Symbol:
            if e == bn.eps:
                out = (_Frac(self.gen[e], self.one) if mode is None
                       else _Frac(self.s ** 2 - self._radicands[mode], self.one))
            elif e in self.gen:
                out = _Frac(self.gen[e], self.one)
            elif e in bn.nodes and e != bn.f:
                out = self._node(e, mode, memo, deadline)
            else:
                raise _Unsupported(f"unknown symbol {e}")
        elif e.is_Add:
            out = self._const(sp.Integer(0))
            for a in e.args:
                out = out + self._convert(a, mode, memo, deadline)
        elif e.is_Mul:
            out = self._const(sp.Integer(1))
            for a in e.args:
                out = out * self._convert(a, mode, memo, deadline)
        elif e.is_Pow:
            out = self._pow(e, mode, memo, deadline)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        memo[e] = out
        return out

    def _node(self, e, mode, memo, deadline) -> _Frac:
        definition = self.bn.nodes[e].definition
        if e not in self._shared:
            return self._convert(definition, mode, memo, deadline)
        if self._shared[e] is None:
            self._shared[e] = self._convert(definition, mode, memo, deadline)
        return self._shared[e]

    def _pow(self, e, mode, memo, deadline) -> _Frac:
        base, exp = e.args
        if exp.is_Integer:
            if abs(exp) > self.MAX_EXPONENT:
                raise _Unsupported(f"exponent {exp} exceeds {self.MAX_EXPONENT}")
            return self._convert(base, mode, memo, deadline) ** int(exp)
        if exp.is_Rational and exp.q == 2:
            if mode is None:
                raise _Unsupported("square root")
            b = self._convert(base, mode, memo, deadline)
            if not (b + _Frac(-self.s ** 2, self.one)).is_zero():
                raise _Unsupported(f"a second square root sqrt({base})")
            return _Frac(self.s, self.one) ** int(exp.p)
        raise _Unsupported(f"power {exp} is not an integer or half-integer")

    # -- the radicand ------------------------------------------------------------------
    def _mode_for(self, expr: sp.Expr, deadline) -> int | None:
        """Index of the radicand eps + w(x) of `expr` (None if it has no square root)."""
        found = []
        for e in self._radicals(expr):
            b = self.convert(e.base, None, deadline)
            eps = self.gen[self.bn.eps]
            w = b.num - eps * b.den
            if not b.den == self.one or _degree(w, self._eps_index()) != 0:
                raise _Unsupported(f"square root of {e.base}, which is not eps + w(x)")
            if all(w != other for other in found):
                found.append(w)
        if len(found) > 1:
            raise _Unsupported(f"{len(found)} distinct square roots")
        if not found:
            return None
        for k, w in enumerate(self._radicands):
            if w == found[0]:
                return k
        self._radicands.append(found[0])
        return len(self._radicands) - 1

    def _radicals(self, expr: sp.Expr) -> set:
        out, seen, stack = set(), set(), [expr]
        while stack:
            e = stack.pop()
            if e in seen:
                continue
            seen.add(e)
            if e.is_Pow and not e.exp.is_Integer:
                out.add(e)
            if e in self.bn.nodes and e != self.bn.f:
                stack.append(self.bn.nodes[e].definition)
            stack.extend(e.args)
        return out

    def _eps_index(self) -> int:
        return self.symbols.index(self.bn.eps)

    # -- deciding ------------------------------------------------------------------------
    def difference(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None):
        """(lhs - rhs as num/den, mode) after eliminating eps."""
        mode = self._mode_for(sp.Add(lhs, -rhs, evaluate=False), deadline)
        diff = self.convert(lhs, mode, deadline) + self.convert(rhs, mode, deadline) * \
            self._const(sp.Integer(-1))
        return diff, mode

    def decide(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None,
               seed: int = 0) -> Outcome:
        """proved / disproved (with witness) / unknown, for lhs = rhs on eps > 0."""
        if sp.sympify(lhs) == sp.sympify(rhs):  # the same expression tree
            return Outcome(PROVED, "identical")
        try:
            diff, mode = self.difference(lhs, rhs, deadline)
        except Budget:
            return Outcome(UNKNOWN, "exact", note="time budget exhausted")
        except _Unsupported as err:
            from .separate import separating_point

            witness = separating_point(self.bn, lhs, rhs, seed=seed)
            if witness is not None:
                return Outcome(DISPROVED, METHOD_SEPARATED, witness=witness, note=str(err))
            return Outcome(UNKNOWN, "exact", note=str(err))
        except ZeroDivisionError as err:
            return Outcome(UNKNOWN, "exact", note=str(err))
        method = METHOD_EXACT if mode is None else METHOD_RADICAL
        if diff.is_zero():
            return Outcome(PROVED, method)
        witness = self.witness(lhs, rhs, diff, mode, seed=seed, deadline=deadline)
        if witness is None:
            return Outcome(UNKNOWN, "exact", note="numerator nonzero but no separating "
                                                  "rational point found")
        return Outcome(DISPROVED, method, witness=witness)

    def witness(self, lhs, rhs, diff: _Frac, mode, seed: int = 0,
                deadline: float | None = None, tries: int = 60) -> dict | None:
        """An exact point with eps > 0 where lhs != rhs, checked by independent evaluation."""
        rng = random.Random(seed)
        support = self.bn.support(sp.Add(lhs, rhs, evaluate=False))
        needed = [s for s in self.symbols if s in support] or self.symbols
        for attempt in range(tries):
            if deadline is not None and time.monotonic() > deadline:
                return None
            radius = (3, 10, 1000)[min(attempt // 20, 2)]
            pt = {sym: Fraction(rng.randint(-radius, radius)) for sym in self.symbols}
            pt[self.bn.eps] = Fraction(rng.randint(1, radius))
            args = [flint.fmpq(q.numerator, q.denominator) for q in pt.values()]
            if mode is not None:
                w = self._radicands[mode](*(args + [flint.fmpq(0)]))
                w = Fraction(int(w.p), int(w.q))
                s = Fraction(math.isqrt(max(0, math.floor(w))) + 1 + rng.randint(0, 2))
                pt[self.bn.eps] = s * s - w  # > 0, and w + eps = s^2 is a rational square
                args[self._eps_index()] = flint.fmpq(pt[self.bn.eps].numerator,
                                                     pt[self.bn.eps].denominator)
                s_arg = flint.fmpq(int(s.numerator), int(s.denominator))
            else:
                s_arg = flint.fmpq(1)
            if diff.den(*(args + [s_arg])) == 0 or diff.num(*(args + [s_arg])) == 0:
                continue
            point = {sym: q for sym, q in pt.items() if sym in needed}
            try:
                left = self.bn.evaluate(lhs, point)
                right = self.bn.evaluate(rhs, point)
            except ZeroDivisionError:
                continue
            if not (left.is_Rational and right.is_Rational) or left == right:
                continue
            return {"point": {str(k): _fmt(v) for k, v in point.items()},
                    "lhs": str(left), "rhs": str(right)}
        return None


def _degree(poly, index: int) -> int:
    return max((m[index] for m in poly.monoms()), default=0)


def _fmt(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"
