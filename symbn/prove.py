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
eps is drawn from small fractions in (0, 1) as well as integers, and s just above sqrt(w)
as well as far above it, so a claim false only for small eps is refuted.

Why each rule is sound (what it assumes, and where that is checked):

- `proved` means: lhs = rhs at every point of the domain (eps > 0, every leaf real) where
  both sides are defined.  The numerator test is exact: a rational function is zero on a
  nonempty open set iff its numerator is the zero polynomial.
- A side undefined on the whole domain would make that vacuous, so it is never judged:
  `nonzero` shows each divisor written in a claim is not the zero function (nonzero at one
  exact point, checked by evaluation or by an interval that excludes 0, or a nonzero
  canonical numerator), and `real_somewhere` that each radicand is positive on an open set.
  The divisors are recorded from the claim as written (symbn.derivation), because SymPy
  cancels v/v to 1 while building the instance; a divisor identically zero makes the link
  `unknown`, never `proved` (`symbn.check`).
- The change of variables eps = s**2 - w is a bijection from {eps > 0, eps + w > 0} onto
  {s > 0, s**2 > w}, an open set; so is every point of the domain where sqrt(eps + w) is
  real, and only there is the claim asserted.
- A square root of an even power, sqrt(b**2 c) = |b| sqrt(c), becomes b sqrt(c) only when
  b >= 0 is derived by the structural sign rules of `symbn.radicals` (eps > 0, sums of
  squares >= 0, ...), never assumed; otherwise the radical stays and the claim is `unknown`
  or refuted at a point.
- Division by a polynomial that is zero raises ZeroDivisionError: `unknown`.  Sizes are
  bounded before FLINT is called (`MAX_TERM_PRODUCTS`, `MAX_PRODUCT_BYTES`): a claim past
  them is `unknown`, never a process killed by a failed allocation.
- Linear forms in dy are compared coefficient by coefficient (`coefficients`) only after
  `linear_in` has proved, by structural induction, that both sides are linear forms; the dy
  are independent leaves because a derivative of dy is refused (symbn.derivation: dy
  depends on the leaves through f, and second derivatives of f are not modelled).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import flint
import sympy as sp

from . import radicals
from .model import BatchNorm, as_expr, rebuild
from .radicals import Signs, needs_rewrite, rewrite

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


class Budget(BaseException):
    """The time budget ran out.

    A BaseException, so that no `except Exception` inside SymPy can swallow the alarm.
    """


@contextlib.contextmanager
def alarm(deadline: float | None):
    """Raise `Budget` wherever the work is when `deadline` (time.monotonic) passes.

    The cooperative checks between prover operations cannot interrupt one long SymPy or
    FLINT call; SIGALRM can.  Only in the main thread of a POSIX process; elsewhere the
    cooperative checks alone apply.

    >>> import time
    >>> with alarm(time.monotonic() + 60):
    ...     pass
    """
    usable = (deadline is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def ring(signum, frame):
        raise Budget

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Unsupported(Exception):
    """The expression leaves the fragment the exact method decides."""


# One FLINT multiplication is a single C call that no alarm can interrupt, and FLINT aborts
# the process when an allocation fails; past this many term-by-term products (about a
# second on this class of machine), or a product that could need more memory than
# MAX_PRODUCT_BYTES (each term packs its exponents in 8 bits per variable, plus the
# coefficient), the claim is `unknown` before FLINT is asked.
MAX_TERM_PRODUCTS = 5 * 10**7
MAX_PRODUCT_BYTES = 1 << 28


def _bytes(terms: int, poly) -> int:
    """Memory of a polynomial with this many terms in `poly`'s ring, roughly."""
    return terms * 8 * (-(-poly.context().nvars() // 8) + 2)


def _times(a, b):
    products = len(a) * len(b)
    if products > MAX_TERM_PRODUCTS or _bytes(products, a) > MAX_PRODUCT_BYTES:
        raise Budget(f"a product of {len(a)} by {len(b)} terms exceeds the size budget "
                     f"(up to {_bytes(products, a) >> 20} MiB)")
    return a * b


def _gcd(a, b):
    # FLINT's gcd works on copies of both operands and their cofactors: a few times their size
    if _bytes(4 * (len(a) + len(b)), a) > MAX_PRODUCT_BYTES:
        raise Budget(f"a gcd of {len(a)} and {len(b)} terms exceeds the size budget")
    return a.gcd(b)


def _power(a, k: int):
    result, square = None, a
    while k:
        if k & 1:
            result = square if result is None else _times(result, square)
        k >>= 1
        if k:
            square = _times(square, square)
    return result if result is not None else a ** 0


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


class Algebra:
    """The field QQ(leaves, s) of one model, and conversion of SymPy expressions into it.

    >>> bn = BatchNorm(2)
    >>> alg = Algebra(bn)
    >>> alg.decide(bn.xhat(1) + bn.xhat(2), sp.Integer(0)).verdict
    'proved'
    """

    MAX_EXPONENT = 64

    def __init__(self, bn: BatchNorm, leaves: list | None = None):
        self.bn = bn
        self.symbols = list(bn.leaves) if leaves is None else list(leaves)
        self._dy_free: Algebra | None = None
        self._dys = {s for s in self.symbols if str(s).startswith("dy[")}
        names = [f"t{k}" for k in range(len(self.symbols))] + ["s"]
        self.ctx = flint.fmpq_mpoly_ctx.get(names, "degrevlex")
        gens = self.ctx.gens()
        self.gen = dict(zip(self.symbols, gens))
        self.s = gens[-1]
        self.one = self.ctx.from_dict({(0,) * len(names): 1})
        # nodes free of eps (mu, v) convert to the same value in every mode: convert once
        self._eps_known: dict = {}
        self._shared: dict = {e: None for e in bn.nodes
                              if e != bn.f and not self._has_eps(e)}
        self._memos: dict[int, dict] = {}
        self._radicands: list = []  # w(x) of each radical seen; mode k means eps = s^2 - w_k
        self._refs: dict = {}  # id -> number of parents, in the expression being converted

    # -- conversion -------------------------------------------------------------------
    def convert(self, expr: sp.Expr, mode: int | None, deadline: float | None = None) -> _Frac:
        """`expr` as num/den; mode None keeps eps free and rejects radicals."""
        memo = self._memos.setdefault(-1 if mode is None else mode, {})
        return self._convert(as_expr(expr), mode, memo, deadline)

    def _const(self, q) -> _Frac:
        return _Frac(self.one * flint.fmpq(int(q.p), int(q.q)), self.one)

    def _convert(self, e, mode, memo, deadline) -> _Frac:
        hit = memo.get(e)
        if hit is not None:
            return hit
        if mode is not None and not self._has_eps(e):
            # eps-free subexpressions (mu, v, x_i - mu) are the same in every mode
            shared = self._memos.setdefault(-1, {})
            hit = shared.get(e)
            if hit is None:
                hit = self._convert(e, None, shared, deadline)
            if e.is_Add or self._refs.get(id(e)) != 1:
                memo[e] = hit
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
            # terms over the same denominator (polynomials, or the N terms of a sum over
            # rows sharing a power of sigma) are added numerator to numerator
            groups: list[tuple] = [(self.one, [])]
            for a in e.args:
                term = self._convert(a, mode, memo, deadline)
                for den, partial in groups:
                    if den == term.den:
                        _push(partial, term.num)
                        break
                else:
                    groups.append((term.den, [(1, term.num)]))
            out = _Frac(_total(groups[0][1], self.ctx), self.one)
            for den, partial in groups[1:]:
                out = out + _Frac(_total(partial, self.ctx), den)
        elif e.is_Mul:
            coeff, factors = flint.fmpq(1), []
            for a in e.args:
                if a.is_Rational:
                    coeff *= flint.fmpq(int(a.p), int(a.q))
                else:
                    factors.append(self._convert(a, mode, memo, deadline))
            out = _Frac(self.one * coeff, self.one) if not factors else factors[0]
            for f in factors[1:]:
                out = out * f
            if factors and coeff != 1:
                out = _Frac(out.num * coeff, out.den)
        elif e.is_Pow:
            out = self._pow(e, mode, memo, deadline)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        if e.is_Add or self._refs.get(id(e)) != 1:
            memo[e] = out  # products and powers used once (the N expanded squares) are not kept
        return out

    def _has_eps(self, e) -> bool:
        """Whether eps occurs in `e` (through node definitions too), each subexpression once."""
        known = self._eps_known
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        if e.is_Symbol:
            out = e == self.bn.eps or (e in self.bn.nodes and e != self.bn.f
                                       and self._has_eps(self.bn.nodes[e].definition))
        else:
            out = any(self._has_eps(a) for a in e.args)
        known[id(e)] = (e, out)
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

    # -- definedness --------------------------------------------------------------------
    def nonzero(self, expr: sp.Expr, deadline: float | None = None,
                seed: int = 0) -> bool | None:
        """Whether `expr` is not the zero function on the domain: True when it is nonzero
        at one exact point (so its canonical numerator is not the zero polynomial), False
        when that numerator is zero (or `expr` itself divides by zero), None if undecided.

        >>> bn = BatchNorm(1)
        >>> alg = Algebra(bn)
        >>> alg.nonzero(bn.v()), alg.nonzero(bn.v() + bn.eps)
        (False, True)
        """
        expr = as_expr(expr)
        if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            return False
        if expr.is_Number:
            return expr != 0
        if expr.is_Pow and expr.exp.is_positive:  # sqrt(b) is the zero function iff b is
            return self.nonzero(expr.base, deadline, seed)
        from .separate import certainly_nonzero

        try:
            value = self.bn.evaluate(expr, self._point(random.Random(seed)))
        except ZeroDivisionError:
            value = None
        if value is not None and certainly_nonzero(value):
            return True
        try:
            diff, _ = self.difference(expr, sp.Integer(0), deadline)
        except _Unsupported:
            return None
        except ZeroDivisionError:
            return False
        return not diff.is_zero()

    def real_somewhere(self, expr: sp.Expr, deadline: float | None = None) -> bool | None:
        """Whether sqrt(expr) is real on an open set (or expr is the zero function): True;
        False when `expr` is negative wherever it is not 0 (by proved signs); None if
        undecided.

        >>> bn = BatchNorm(2)
        >>> alg = Algebra(bn)
        >>> alg.real_somewhere(bn.x(1) - bn.x(2)), alg.real_somewhere(-bn.v() - bn.eps)
        (True, False)
        """
        from .separate import certainly_nonzero

        bn = self.bn
        signs = Signs({bn.eps}, lambda s: bn.nodes[s].definition
                      if s in bn.nodes and s != bn.f else None)
        sign = signs.sign(as_expr(expr))
        if sign in (radicals.POS, radicals.NONNEG):
            return True
        if sign in (radicals.NEG, radicals.NONPOS):
            return self.nonzero(expr, deadline) is False
        for seed in range(8):
            try:
                value = bn.evaluate(expr, self._point(random.Random(seed)))
            except ZeroDivisionError:
                continue
            if value.is_real and certainly_nonzero(value) and value > 0:
                return True
        return True if self.nonzero(expr, deadline) is False else None

    def _point(self, rng: random.Random) -> dict:
        """Small random integers for every leaf, eps > 0 with v + eps a rational square
        (first column), so that the model's square root stays rational."""
        bn = self.bn
        point = {leaf: Fraction(rng.randint(-5, 5)) for leaf in bn.leaves}
        v = bn.evaluate(bn.v(), point)
        root = math.isqrt(int(v.p) // int(v.q)) + 1 + rng.randint(0, 2)
        eps = root * root - v
        point[bn.eps] = Fraction(int(eps.p), int(eps.q))
        return point

    # -- deciding ------------------------------------------------------------------------
    def difference(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None):
        """(lhs - rhs as num/den, mode) after eliminating eps."""
        lhs, rhs = self.bn.compose(lhs), self.bn.compose(rhs)  # every node down to the leaves
        if needs_rewrite(self._radicals(sp.Tuple(lhs, rhs))):
            # square roots of even powers, sqrt((v + eps)**2) = v + eps, by proved signs
            signs = Signs({self.bn.eps})
            lhs, rhs = rewrite(lhs, signs), rewrite(rhs, signs)
        self._refs = _parent_counts(sp.Tuple(lhs, rhs))
        try:
            return self._difference(lhs, rhs, deadline)
        finally:
            self._refs = {}

    def _difference(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None):
        mode = self._mode_for(sp.Tuple(lhs, rhs), deadline)
        diff = self.convert(lhs, mode, deadline) + self.convert(rhs, mode, deadline) * \
            self._const(sp.Integer(-1))
        return diff, mode

    def decide(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None,
               seed: int = 0) -> Outcome:
        """proved / disproved (with witness) / unknown, for lhs = rhs on eps > 0."""
        if as_expr(lhs) == as_expr(rhs):  # the same expression tree
            return Outcome(PROVED, "identical")
        dys = self._dys
        if dys and not self.bn.support(sp.Tuple(lhs, rhs)) & dys:
            # fewer variables make every monomial of the canonical form shorter
            if self._dy_free is None:
                self._dy_free = Algebra(self.bn, [s for s in self.symbols if s not in dys])
            return self._dy_free.decide(lhs, rhs, deadline, seed)
        try:
            diff, mode = self.difference(lhs, rhs, deadline)
        except Budget as err:
            return Outcome(UNKNOWN, "exact", note=str(err) or "time budget exhausted")
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
        support = self.bn.support(sp.Tuple(lhs, rhs))
        needed = [s for s in self.symbols if s in support] or self.symbols
        for attempt in range(tries):
            if deadline is not None and time.monotonic() > deadline:
                return None
            radius = (3, 10, 1000)[min(attempt // 20, 2)]
            pt = {sym: Fraction(rng.randint(-radius, radius)) for sym in self.symbols}
            pt[self.bn.eps] = positive_sample(rng, radius)
            args = [flint.fmpq(q.numerator, q.denominator) for q in pt.values()]
            if mode is not None:
                w = self._radicands[mode](*(args + [flint.fmpq(0)]))
                w = Fraction(int(w.p), int(w.q))
                s = root_above(w, rng)
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


def _parent_counts(expr: sp.Expr) -> dict:
    """id of each subexpression -> how many parents it has in the expression graph."""
    counts: dict = {id(expr): 2}  # the root is kept
    stack = [expr]
    while stack:
        e = stack.pop()
        for a in e.args:
            seen = id(a) in counts
            counts[id(a)] = counts.get(id(a), 0) + 1
            if not seen:
                stack.append(a)
    return counts


def _degree(poly, index: int) -> int:
    return 0 if poly.is_zero() else int(poly.degrees()[index])


def _fmt(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


# ---------------------------------------------------------------------------------------
# structure: linearity in dy
# ---------------------------------------------------------------------------------------


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

    return degree(as_expr(expr)) == 1


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


# ---------------------------------------------------------------------------------------
# the randomized method: exact values at random points (Schwartz-Zippel)
# ---------------------------------------------------------------------------------------

METHOD_RANDOM = "random points, exact"


class RandomTester:
    """Probabilistic identity testing by exact rational evaluation at random points.

    Both sides are evaluated with exact rationals (FLINT fmpq) at k points.  After eps = s**2 - v(x), lhs - rhs
    is P/Q with polynomials P, Q in (x, dy, gamma, beta, s); `degree_bound` bounds deg P and
    deg Q from the expression itself.  x, dy, gamma, beta are drawn from R consecutive
    integers and s from R consecutive integers above sqrt(v(x)) (so eps > 0 and sqrt(v + eps)
    = s is rational).  Schwartz-Zippel, applied with s drawn after x, gives: if P is not the
    zero polynomial, a point where both sides are defined and agree has probability at most
    (deg P + deg Q) / R, so k agreeing points leave probability <= ((deg P + deg Q) / R)**k.
    A disagreeing point is a disproof, re-evaluated with SymPy before it is reported.

    >>> bn = BatchNorm(3)
    >>> t = RandomTester(bn, points=4)
    >>> t.decide(bn.xhat(1) + bn.xhat(2) + bn.xhat(3), sp.Integer(0)).verdict
    'probable'
    >>> t.decide(bn.xhat(1), bn.xhat(2)).verdict
    'disproved'
    """

    def __init__(self, bn: BatchNorm, points: int = 8, bits: int = 64, seed: int = 0):
        self.bn, self.points, self.range = bn, points, 1 << bits
        self._leaves = set(bn.leaves)
        self._radicand = bn.compose(bn.v() + bn.eps)  # the one square root: sqrt(v + eps) = s
        self.rng = random.Random(seed)

    # -- the degree of the numerator and denominator, from the expression ----------------
    def degree_bound(self, expr: sp.Expr) -> tuple[int, int]:
        """(bound on deg P, bound on deg Q) for expr = P/Q after eps = s**2 - v(x)."""
        known: dict = {}
        return self._degree(as_expr(expr), known)

    def _degree(self, e, known) -> tuple[int, int]:
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        bn = self.bn
        if e.is_Number:
            out = (0, 0)
        elif e.is_Symbol:
            if e == bn.eps:
                out = (2, 0)  # s**2 - v(x), v of degree 2
            elif e in bn.nodes and e != bn.f:
                out = self._degree(bn.nodes[e].definition, known)
            elif e in self._leaves:
                out = (1, 0)
            else:
                raise _Unsupported(f"unknown symbol {e}")
        elif e.is_Add:
            n, d = self._degree(e.args[0], known)
            for a in e.args[1:]:
                n2, d2 = self._degree(a, known)
                n, d = max(n + d2, n2 + d), d + d2
        elif e.is_Mul:
            n = d = 0
            for a in e.args:
                n2, d2 = self._degree(a, known)
                n, d = n + n2, d + d2
        elif e.is_Pow and e.exp.is_Integer:
            n, d = self._degree(e.base, known)
            k = int(e.exp)
            out = (k * n, k * d) if k >= 0 else (-k * d, -k * n)
        elif e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
            if bn.compose(e.base) != self._radicand:
                raise _Unsupported(f"a square root other than sqrt(v + eps): {e}")
            p = int(e.exp.p)
            out = (p, 0) if p >= 0 else (0, -p)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        if e.is_Add or e.is_Mul:
            out = (n, d)
        known[id(e)] = (e, out)
        return out

    # -- exact evaluation ---------------------------------------------------------------
    def sample(self) -> tuple[dict, flint.fmpq]:
        """A random point: every leaf, with eps = s**2 - v(x) > 0; returns (point, s)."""
        bn, rng, r = self.bn, self.rng, self.range
        pt = {}
        for leaf in bn.leaves:
            if leaf != bn.eps:
                pt[leaf] = flint.fmpq(rng.randrange(-(r // 2), r - r // 2))
        xs = [pt[bn.x(i)] for i in bn.rows()]
        mu = sum(xs, flint.fmpq(0)) / bn.n
        v = sum(((x - mu) ** 2 for x in xs), flint.fmpq(0)) / bn.n
        s = flint.fmpq(math.isqrt(int(v.p) // int(v.q)) + 1 + rng.randrange(r))
        pt[bn.eps] = s * s - v
        return pt, s

    def evaluate(self, expr: sp.Expr, point: dict, s, known: dict):
        """Exact rational value of `expr` (FLINT fmpq); sqrt only of v + eps (= s**2)."""
        e = expr
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        bn = self.bn
        if e.is_Rational:
            out = flint.fmpq(int(e.p), int(e.q))
        elif e.is_Symbol:
            if e in point:
                out = point[e]
            elif e in bn.nodes and e != bn.f:
                out = self.evaluate(bn.nodes[e].definition, point, s, known)
            else:
                raise _Unsupported(f"unknown symbol {e}")
        elif e.is_Add:
            out = flint.fmpq(0)
            for a in e.args:
                out += self.evaluate(a, point, s, known)
        elif e.is_Mul:
            out = flint.fmpq(1)
            for a in e.args:
                out *= self.evaluate(a, point, s, known)
        elif e.is_Pow and e.exp.is_Integer:
            out = self.evaluate(e.base, point, s, known) ** int(e.exp)
        elif e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
            if self.evaluate(e.base, point, s, known) != s * s:
                raise _Unsupported(f"a square root other than sqrt(v + eps): {e}")
            out = s ** int(e.exp.p)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        known[id(e)] = (e, out)
        return out

    def decide(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None) -> Outcome:
        """probable (with the bound) / disproved (with witness) / unknown."""
        lhs, rhs = as_expr(lhs), as_expr(rhs)
        try:
            (n1, d1), (n2, d2) = self.degree_bound(lhs), self.degree_bound(rhs)
        except _Unsupported as err:
            return Outcome(UNKNOWN, METHOD_RANDOM, note=str(err))
        deg_p, deg_q = max(n1 + d2, n2 + d1), d1 + d2
        agreed, tries = 0, 0
        while agreed < self.points:
            if deadline is not None and time.monotonic() > deadline:
                return Outcome(UNKNOWN, METHOD_RANDOM, note="time budget exhausted")
            tries += 1
            if tries > 4 * self.points + 8:
                return Outcome(UNKNOWN, METHOD_RANDOM, note="too many undefined points")
            point, s = self.sample()
            known: dict = {}
            try:
                left = self.evaluate(lhs, point, s, known)
                right = self.evaluate(rhs, point, s, known)
            except ZeroDivisionError:
                continue  # Q vanishes here: resampled, accounted for in the bound
            except _Unsupported as err:
                return Outcome(UNKNOWN, METHOD_RANDOM, note=str(err))
            if left != right:
                return self._disproof(lhs, rhs, point)
            agreed += 1
        bound = Fraction(deg_p + deg_q, self.range) ** self.points
        note = (f"{self.points} points from 2^{self.range.bit_length() - 1} integers; "
                f"deg P <= {deg_p}, deg Q <= {deg_q}; "
                f"error probability <= (({deg_p} + {deg_q}) / 2^{self.range.bit_length() - 1})"
                f"^{self.points} < 2^{math.floor(math.log2(bound)) + 1}")
        return Outcome(PROBABLE, METHOD_RANDOM, note=note)

    def _disproof(self, lhs, rhs, point) -> Outcome:
        support = self.bn.support(sp.Tuple(lhs, rhs))
        pt = {k: Fraction(int(q.p), int(q.q)) for k, q in point.items() if k in support}
        left, right = self.bn.evaluate(lhs, pt), self.bn.evaluate(rhs, pt)  # independent check
        if not (left.is_Rational and right.is_Rational) or left == right:
            return Outcome(UNKNOWN, METHOD_RANDOM, note="evaluations disagree; not reported")
        witness = {"point": {str(k): _fmt(v) for k, v in pt.items()},
                   "lhs": str(left), "rhs": str(right)}
        return Outcome(DISPROVED, METHOD_RANDOM, witness=witness)
