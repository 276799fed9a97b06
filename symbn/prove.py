"""Deciding lhs = rhs exactly: canonical rational-function form, or an exact witness.

The model is anything with this protocol (`Model`; BatchNorm and symbn.graph instances):

    leaves           list of the leaf symbols (the independent variables), in a fixed order
    positive         set of the leaves known > 0 (eps); every other leaf ranges over the reals
    dys              set of the upstream gradients dy among the leaves
    nodes            dict: node symbol -> object with .definition (in its parents' symbols)
                     and .parents, in a topological order
    f                the output symbol; its node, f(y...), is never expanded
    compose(expr)    expr with every node but f expanded down to the leaves (shared
                     subexpressions may stay shared)
    evaluate(expr, point)  the exact value at a dict leaf -> Fraction giving every leaf expr
                     needs: SymPy Rationals, and square roots of them kept exact
    support(expr)    every node and leaf expr depends on, through the definitions

Every node is expanded down to the leaves.  Square roots are the only non-rational piece.
One square root sqrt(p + w(x)), p a positive leaf (eps) and w free of p, is eliminated by
s > 0 and p = s**2 - w(x) (the fast path): on the domain p > 0 this change of variables is
a bijection onto the open set {s > 0, s**2 > w(x)}, so lhs - rhs vanishes there exactly
when the numerator of its rational normal form in QQ(leaves, s) is the zero polynomial.
Polynomials are FLINT's sparse multivariate polynomials over QQ.

Several square roots, or one of another form (sqrt(v_1 + eps) beside sqrt(v_2 + eps),
sqrt(v) beside sqrt(v + eps)), are decided by symbn.multiradical: each distinct radicand
r_k, a polynomial over QQ in the leaves, gets a symbol s_k with s_k**2 = R_k, lhs - rhs
becomes num/den over QQ[leaves, s_1..s_m], and num is reduced modulo every s_k**2 = R_k.

A nonzero numerator is not yet a disproof: symbn searches for a rational point with p > 0
and s rational (p chosen so that p + w is a perfect square) where the numerator and
denominator are nonzero, then re-evaluates both sides there with plain SymPy arithmetic on
Rationals, independently of the polynomial code.  Only a point where they differ is reported.
p is drawn from small fractions in (0, 1) as well as integers, and s just above sqrt(w)
as well as far above it, so a claim false only for small eps is refuted.  With several
radicals the values are algebraic: the point is reported only where an outward-rounded
interval enclosure of lhs - rhs excludes 0 (`symbn.separate`).

Why each rule is sound (what it assumes, and where that is checked):

- `proved` means: lhs = rhs at every point of the domain (positive leaves > 0, every leaf
  real) where both sides are defined.  The numerator test is exact: a rational function is
  zero on a nonempty open set iff its numerator is the zero polynomial.
- A side undefined on the whole domain would make that vacuous, so it is never judged:
  `nonzero` shows each divisor written in a claim is not the zero function (nonzero at one
  exact point, checked by evaluation or by an interval that excludes 0, or a nonzero
  canonical numerator), and `real_somewhere` that each radicand is positive on an open set.
  The divisors are recorded from the claim as written (symbn.derivation), because SymPy
  cancels v/v to 1 while building the instance; a divisor identically zero makes the link
  `unknown`, never `proved` (`symbn.check`).
- The change of variables p = s**2 - w is a bijection from {p > 0, p + w > 0} onto
  {s > 0, s**2 > w}, an open set; so is every point of the domain where sqrt(p + w) is
  real, and only there is the claim asserted.
- Several radicals: wherever every radicand is >= 0 and both sides are defined, the values
  s_k = sqrt(R_k) satisfy every s_k**2 = R_k, so the reduced numerator has the value of the
  original one there; a relation sqrt(r) = s_a * s_b * ... is used only when
  r = R_a * R_b * ... as polynomials, and it holds wherever they are >= 0, which they are
  wherever the claim (which takes all these square roots) is defined.  Building num/den
  never divides by anything the claim does not divide by, so den != 0 wherever the claim is
  defined.  Hence a zero reduced numerator means lhs = rhs at every point where the claim is
  defined, whatever the relations between the radicals; it is `proved` only after an exact
  rational point is found where every radicand is > 0 and both sides evaluate (by the
  model, with SymPy) to finite reals, so a claim defined nowhere (sqrt(-v - eps)) is not.
  A nonzero reduced numerator proves nothing alone (dependent radicals: sqrt((x1 - x2)**2)
  beside sqrt((x2 - x1)**2) ...); only an interval-certified point disproves.  Radicands
  that are not polynomials, nested radicals and radicands with a repeated factor
  (sqrt(t**2 c) = |t| sqrt(c), the sign of t not proved) are `unknown` unless a point
  refutes the claim.
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
from typing import Protocol

import flint
import sympy as sp

from . import radicals
from .model import BatchNorm, as_expr, rebuild, symbols_of
from .radicals import Signs, needs_rewrite, rewrite

PROVED, DISPROVED, UNKNOWN, PROBABLE = "proved", "disproved", "unknown", "probable"
METHOD_EXACT = "exact"
METHOD_RADICAL = "exact, eps = s^2 - w"
METHOD_SEPARATED = "exact point, interval-certified"
METHOD_ROOTS = "exact, s_k^2 = r_k"
MULTI = "multi"  # the conversion mode of several radicals (a wide Algebra, symbn.multiradical)


class Model(Protocol):
    """What the prover needs of a layer; see the module docstring.  BatchNorm and the
    instances of symbn.graph provide it."""

    leaves: list
    positive: set
    dys: set
    nodes: dict
    f: sp.Symbol

    def compose(self, expr: sp.Expr) -> sp.Expr: ...

    def evaluate(self, expr: sp.Expr, point: dict) -> sp.Expr: ...

    def support(self, expr: sp.Expr) -> set: ...


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


class _OtherRoot(_Unsupported):
    """A square root other than the one the degree bound was computed for."""


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

    `model` is any object of the `Model` protocol (see the module docstring).

    >>> bn = BatchNorm(2)
    >>> alg = Algebra(bn)
    >>> alg.decide(bn.xhat(1) + bn.xhat(2), sp.Integer(0)).verdict
    'proved'
    """

    MAX_EXPONENT = 64

    def __init__(self, model: Model, leaves: list | None = None, roots: int = 0):
        self.model = self.bn = model
        self.symbols = list(model.leaves) if leaves is None else list(leaves)
        self.positive = [s for s in self.symbols if s in model.positive]
        self._positive = set(model.positive)
        self._dy_free: Algebra | None = None
        self._dys = set(model.dys) & set(self.symbols)
        # the fast path's s, or (roots > 0: the several-radicals method) s1..s_roots
        tail = [f"s{k}" for k in range(1, roots + 1)] if roots else ["s"]
        names = [f"t{k}" for k in range(len(self.symbols))] + tail
        self.ctx = flint.fmpq_mpoly_ctx.get(names, "degrevlex")
        gens = self.ctx.gens()
        self.gen = dict(zip(self.symbols, gens))
        self.s = gens[len(self.symbols)]
        self.one = self.ctx.from_dict({(0,) * len(names): 1})
        # nodes free of eps (mu, v) convert to the same value in every mode: convert once
        self._eps_known: dict = {}
        self._root_known: dict = {}
        self._shared: dict = {e: None for e in model.nodes
                              if e != model.f and not self._has_eps(e)}
        self._memos: dict = {}
        # (p, w(x)) of each radical seen; mode k means p = s^2 - w_k (p a positive leaf)
        self._radicands: list = []
        self._refs: dict = {}  # id -> number of parents, in the expression being converted
        self._roots = None  # in a wide algebra: the `multiradical.Roots` being converted
        self._wide: dict[int, Algebra] = {}  # number of generators -> wide algebra
        self._model_radicands: list | None = None

    # -- conversion -------------------------------------------------------------------
    def convert(self, expr: sp.Expr, mode, deadline: float | None = None) -> _Frac:
        """`expr` as num/den; mode None keeps eps free and rejects radicals, mode k
        eliminates the k-th radicand p + w by p = s^2 - w, mode MULTI (a wide algebra) maps
        each radical to its generators."""
        memo = self._memos.setdefault(-1 if mode is None else mode, {})
        return self._convert(as_expr(expr), mode, memo, deadline)

    def _const(self, q) -> _Frac:
        return _Frac(self.one * flint.fmpq(int(q.p), int(q.q)), self.one)

    def _convert(self, e, mode, memo, deadline) -> _Frac:
        hit = memo.get(e)
        if hit is not None:
            return hit
        if mode is not None and not (self._has_root(e) if mode == MULTI else self._has_eps(e)):
            # eps-free subexpressions (mu, v, x_i - mu) are the same in every mode, and so
            # are radical-free ones in the several-radicals mode
            shared = self._memos.setdefault(-1, {})
            hit = shared.get(e)
            if hit is None:
                hit = self._convert(e, None, shared, deadline)
            if e.is_Add or self._refs.get(id(e)) != 1:
                memo[e] = hit
            return hit
        if deadline is not None and time.monotonic() > deadline:
            raise Budget
        model = self.model
        if e.is_Rational:
            out = self._const(e)
        elif e.is_Symbol:
            if mode is not None and mode != MULTI and e == self._radicands[mode][0]:
                out = _Frac(self.s ** 2 - self._radicands[mode][1], self.one)
            elif e in self.gen:
                out = _Frac(self.gen[e], self.one)
            elif e in model.nodes and e != model.f:
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
        """Whether a positive leaf (eps) occurs in `e` (through node definitions too), each
        subexpression once."""
        known = self._eps_known
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        model = self.model
        if e.is_Symbol:
            out = e in self._positive or (e in model.nodes and e != model.f
                                          and self._has_eps(model.nodes[e].definition))
        else:
            out = any(self._has_eps(a) for a in e.args)
        known[id(e)] = (e, out)
        return out

    def _has_root(self, e) -> bool:
        """Whether a power with a non-integer exponent occurs in `e` (composed: no nodes)."""
        known = self._root_known
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        model = self.model
        if e.is_Symbol:
            out = (e in model.nodes and e != model.f
                   and self._has_root(model.nodes[e].definition))
        elif e.is_Pow and not e.exp.is_Integer:
            out = True
        else:
            out = any(self._has_root(a) for a in e.args)
        known[id(e)] = (e, out)
        return out

    def _node(self, e, mode, memo, deadline) -> _Frac:
        definition = self.model.nodes[e].definition
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
            b = self._convert(base, mode, memo, deadline)
            if mode == MULTI and exp < 0:  # zero on the whole domain, or not, once reduced
                b = _Frac(self._roots.reduce(b.num, deadline), b.den)
            return b ** int(exp)
        if exp.is_Rational and exp.q == 2:
            if mode is None:
                raise _Unsupported(f"a nested square root: {e} inside a radicand")
            if mode == MULTI:
                return self._root(base, int(exp.p), deadline)
            b = self._convert(base, mode, memo, deadline)
            if not (b + _Frac(-self.s ** 2, self.one)).is_zero():
                raise _Unsupported(f"a second square root sqrt({base})")
            return _Frac(self.s, self.one) ** int(exp.p)
        raise _Unsupported(f"power {exp} is not an integer or half-integer")

    def _root(self, base, p: int, deadline) -> _Frac:
        """sqrt(base)**p in the several-radicals mode: (lam * s_a * s_b ...)**p, reduced."""
        entry = self._roots.table.get(base)
        if entry is None:
            raise _Unsupported(f"square root of {base} outside the radicals found")
        if abs(p) > 2 * self.MAX_EXPONENT:
            raise _Unsupported(f"exponent {p}/2 exceeds {self.MAX_EXPONENT}")
        lam, mono = entry
        if lam == 0:  # sqrt(0)
            if p < 0:
                raise ZeroDivisionError("division by the square root of 0")
            return _Frac(self.one * 0, self.one)
        power = self._roots.reduce(_power(mono, abs(p)) * lam ** abs(p), deadline)
        return _Frac(power, self.one) if p > 0 else _Frac(self.one, power)

    # -- the radicands -----------------------------------------------------------------
    def _mode_for(self, expr: sp.Expr, deadline):
        """None (no square root), the index k of the one radicand p + w(x) (eliminated by
        p = s^2 - w), or the `multiradical.Roots` of several radicals."""
        bases = list(dict.fromkeys(e.base for e in self._radicals(expr)))
        if not bases:
            return None
        converted = [(base, self.convert(base, None, deadline)) for base in bases]
        found: list = []
        for _, b in converted:
            form = self._eps_form(b)
            if form is None:
                found = []
                break
            if all(form[0] != p or form[1] != w for p, w in found):
                found.append(form)
        if len(found) == 1:
            for k, (p, w) in enumerate(self._radicands):
                if p == found[0][0] and w == found[0][1]:
                    return k
            self._radicands.append(found[0])
            return len(self._radicands) - 1
        from . import multiradical

        return multiradical.build(self, converted, deadline)

    def _eps_form(self, b: _Frac):
        """(p, w) when b = p + w(x), p a positive leaf and w free of p; else None."""
        if b.den != self.one:
            return None
        for p in self.positive:
            index = self.symbols.index(p)
            w = b.num - self.gen[p]
            if _degree(b.num, index) == 1 and _degree(w, index) == 0:
                return p, w
        return None

    def _radicals(self, expr: sp.Expr) -> list:
        """The powers with a non-integer exponent in `expr` and the definitions of the nodes
        it names, each once, in a deterministic order."""
        out, seen, stack = [], set(), [expr]
        while stack:
            e = stack.pop()
            if e in seen:
                continue
            seen.add(e)
            if e.is_Pow and not e.exp.is_Integer:
                out.append(e)
            if e in self.model.nodes and e != self.model.f:
                stack.append(self.model.nodes[e].definition)
            stack.extend(reversed(e.args))
        return out

    def _widen(self, roots: int) -> Algebra:
        """The algebra of the same leaves with at least `roots` generators s_k (a power of
        two, so that claims with a few radicals share one, with its memo of the
        radical-free subexpressions)."""
        size = 2
        while size < roots:
            size *= 2
        wide = self._wide.get(size)
        if wide is None:
            wide = self._wide[size] = Algebra(self.model, self.symbols, roots=size)
        return wide

    def _eps_index(self, mode: int) -> int:
        return self.symbols.index(self._radicands[mode][0])

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

        hints = [e.base for e in self._radicals(expr)]
        try:
            value = self.model.evaluate(expr, self._point(random.Random(seed), hints))
        except ZeroDivisionError:
            value = None
        if value is not None and certainly_nonzero(value):
            return True
        try:
            diff, mode = self.difference(expr, sp.Integer(0), deadline)
        except _Unsupported:
            return None
        except ZeroDivisionError:
            return False
        if diff.is_zero():
            return False
        if not isinstance(mode, (int, type(None))):
            # several radicals: a nonzero reduced numerator may still be the zero function
            # (dependent radicals), so only a point where the value is not 0 decides
            for k in range(1, 9):
                try:
                    value = self.model.evaluate(expr, self._point(random.Random(seed + k),
                                                                  hints))
                except ZeroDivisionError:
                    continue
                if certainly_nonzero(value):
                    return True
            return None
        return True

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

        model = self.model
        signs = Signs(model.positive, lambda s: model.nodes[s].definition
                      if s in model.nodes and s != model.f else None)
        expr = as_expr(expr)
        sign = signs.sign(expr)
        if sign in (radicals.POS, radicals.NONNEG):
            return True
        if sign in (radicals.NEG, radicals.NONPOS):
            return self.nonzero(expr, deadline) is False
        for seed in range(8):
            try:
                value = model.evaluate(expr, self._point(random.Random(seed), [expr]))
            except ZeroDivisionError:
                continue
            if value.is_real and certainly_nonzero(value) and value > 0:
                return True
        return True if self.nonzero(expr, deadline) is False else None

    def _point(self, rng: random.Random, hints: list = ()) -> dict:
        """Small random integers for every leaf, each positive leaf p > 0 chosen where
        possible so that a radicand c*p + w(x) is a rational square (of `hints` first, then
        of the model's own radicals), so that its square root stays rational."""
        model = self.model
        point = {leaf: Fraction(rng.randint(-5, 5)) for leaf in model.leaves}
        forms = self._square_forms(hints)
        for p in [leaf for leaf in model.leaves if leaf in model.positive]:
            if p not in forms:
                point[p] = Fraction(rng.randint(1, 5))
                continue
            c, w = forms[p]
            value = model.evaluate(w, {s: q for s, q in point.items() if s not in forms})
            if not value.is_Rational:  # w is free of the positive leaves, so this is rare
                point[p] = Fraction(rng.randint(1, 5))
                continue
            root = math.isqrt(max(0, int(value.p) // int(value.q))) + 1 + rng.randint(0, 2)
            eps = (root * root - value) / c  # > 0, and c*p + w = root^2
            point[p] = Fraction(int(eps.p), int(eps.q))
        return point

    def _square_forms(self, hints) -> dict:
        """positive leaf p -> (c, w) for the first radicand c*p + w (c > 0 a rational, w an
        expression free of every positive leaf), read off the radicand's terms without
        expanding it: among `hints`, then the radicals of the model's nodes."""
        if self._model_radicands is None:
            nodes = [s for s in self.model.nodes if s != self.model.f]
            self._model_radicands = [e.base for e in self._radicals(sp.Tuple(*nodes))]
        forms: dict = {}
        for base in [*hints, *self._model_radicands]:
            if len(forms) == len(self.positive):
                break
            scale, body = as_expr(base).as_coeff_Mul()
            if not scale > 0:
                continue
            for p in self.positive:
                if p in forms:
                    continue
                linear = [t for t in sp.Add.make_args(body) if p in self.model.support(t)]
                if len(linear) != 1:
                    continue
                c, rest = linear[0].as_coeff_Mul()
                w = sp.Add(*[t for t in sp.Add.make_args(body) if t is not linear[0]])
                if rest == p and c > 0 and not self.model.support(w) & set(self.positive):
                    forms[p] = (c * scale, w * scale)
                    break
        return forms

    def _add_square_form(self, r, forms: dict) -> None:
        """Record r = c*p + w in `forms` for the first positive leaf p without one, if r has
        that shape: then p = (s**2 - w)/c makes r = s**2 a rational square."""
        indices = [self.symbols.index(p) for p in self.positive]
        for p, index in zip(self.positive, indices):
            if p in forms or _degree(r, index) != 1:
                continue
            w = r.subs({index: 0})
            c = (r - w) / self.gen[p]
            if (c.is_constant() and c.leading_coefficient() > 0
                    and all(_degree(w, k) == 0 for k in indices)):
                forms[p] = (c.leading_coefficient(), w)
                return

    # -- deciding ------------------------------------------------------------------------
    def difference(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None):
        """(lhs - rhs as num/den, mode) after eliminating eps, or with several radicals
        (mode a `multiradical.Roots`) with num reduced modulo every s_k^2 = r_k."""
        lhs, rhs = self.model.compose(lhs), self.model.compose(rhs)  # nodes down to the leaves
        if needs_rewrite(self._radicals(sp.Tuple(lhs, rhs))):
            # square roots of even powers, sqrt((v + eps)**2) = v + eps, by proved signs
            signs = Signs(self.model.positive)
            lhs, rhs = rewrite(lhs, signs), rewrite(rhs, signs)
        self._refs = _parent_counts(sp.Tuple(lhs, rhs))
        try:
            return self._difference(lhs, rhs, deadline)
        finally:
            self._refs = {}

    def _difference(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None):
        mode = self._mode_for(sp.Tuple(lhs, rhs), deadline)
        if mode is not None and not isinstance(mode, int):
            return self._roots_difference(lhs, rhs, mode, deadline), mode
        diff = self.convert(lhs, mode, deadline) + self.convert(rhs, mode, deadline) * \
            self._const(sp.Integer(-1))
        return diff, mode

    def _roots_difference(self, lhs, rhs, roots, deadline) -> _Frac:
        wide = roots.wide
        wide._roots, wide._refs = roots, self._refs
        wide._memos[MULTI] = {}  # radical subexpressions depend on this claim's generators
        try:
            diff = wide.convert(lhs, MULTI, deadline) + wide.convert(rhs, MULTI, deadline) * \
                wide._const(sp.Integer(-1))
            return _Frac(roots.reduce(diff.num, deadline), diff.den)
        finally:
            wide._memos[MULTI] = {}
            wide._roots, wide._refs = None, {}

    def decide(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None,
               seed: int = 0) -> Outcome:
        """proved / disproved (with witness) / unknown, for lhs = rhs on eps > 0."""
        if as_expr(lhs) == as_expr(rhs) and self._somewhere_defined(lhs):
            return Outcome(PROVED, "identical")  # the same expression tree
        dys = self._dys
        if dys and not self.model.support(sp.Tuple(lhs, rhs)) & dys:
            # fewer variables make every monomial of the canonical form shorter
            if self._dy_free is None:
                self._dy_free = Algebra(self.model, [s for s in self.symbols if s not in dys])
            return self._dy_free.decide(lhs, rhs, deadline, seed)
        try:
            diff, mode = self.difference(lhs, rhs, deadline)
        except Budget as err:
            return Outcome(UNKNOWN, "exact", note=str(err) or "time budget exhausted")
        except _Unsupported as err:
            from .separate import separating_point

            witness = separating_point(self.model, lhs, rhs, seed=seed)
            if witness is not None:
                return Outcome(DISPROVED, METHOD_SEPARATED, witness=witness, note=str(err))
            return Outcome(UNKNOWN, "exact", note=str(err))
        except ZeroDivisionError as err:
            return Outcome(UNKNOWN, "exact", note=str(err))
        if mode is not None and not isinstance(mode, int):
            return self._decide_roots(lhs, rhs, diff, mode, deadline, seed)
        method = METHOD_EXACT if mode is None else METHOD_RADICAL
        if diff.is_zero():
            return Outcome(PROVED, method)
        witness = self.witness(lhs, rhs, diff, mode, seed=seed, deadline=deadline)
        if witness is None:
            return Outcome(UNKNOWN, "exact", note="numerator nonzero but no separating "
                                                  "rational point found")
        return Outcome(DISPROVED, method, witness=witness)

    def _somewhere_defined(self, expr: sp.Expr) -> bool:
        """Whether `expr` is defined somewhere, so that lhs = rhs with both sides this same
        tree is not vacuous: when its square roots are all one sqrt(p + w(x)) (real for p
        large; divisors are the business of symbn.check, as for any claim), or when it has
        a finite real value at an exact point (sqrt(-v - eps) = sqrt(-v - eps) is true
        nowhere, so it is left to the several-radicals method, which says so)."""
        expr = as_expr(expr)
        bases = list(dict.fromkeys(e.base for e in self._radicals(expr)))
        model = self.model
        signs = Signs(model.positive, lambda s: model.nodes[s].definition
                      if s in model.nodes and s != model.f else None)
        if all(signs.sign(base) in (radicals.POS, radicals.NONNEG) for base in bases):
            return True  # every square root is real everywhere (proved signs), cheaply
        forms: list = []
        for base in bases:
            try:
                form = self._eps_form(self.convert(base, None))
            except (_Unsupported, ZeroDivisionError):
                form = None
            if form is None:
                forms = [None, None]
                break
            if all(form[0] != p or form[1] != w for p, w in forms):
                forms.append(form)
        if len(forms) <= 1:
            return True
        for seed in range(8):
            try:
                value = self.model.evaluate(expr, self._point(random.Random(seed), bases))
            except ZeroDivisionError:
                continue
            if _finite(value):
                return True
        return False

    def _decide_roots(self, lhs, rhs, diff: _Frac, roots, deadline, seed) -> Outcome:
        """The several-radicals verdict: proved on a nonempty domain, an exact certified
        witness, or unknown with the reason."""
        from . import multiradical
        from .separate import separation

        what = roots.describe()
        points = multiradical.domain_points(self, roots, lhs, rhs, seed=seed,
                                            deadline=deadline)
        if diff.is_zero():
            for _ in points:  # one point where every radicand > 0 and both sides are defined
                return Outcome(PROVED, METHOD_ROOTS, note=f"{what}; zero modulo s_k^2 = r_k")
            return Outcome(UNKNOWN, METHOD_ROOTS,
                           note=f"{what}: zero modulo s_k^2 = r_k, but no exact point was "
                                "found where every radicand is positive and both sides are "
                                "defined; a claim true nowhere is not proved")
        for point, left, right in points:
            gap = separation(left, right)
            if gap is not None:
                witness = {"point": {str(k): _fmt(v) for k, v in point.items()},
                           "lhs": str(left), "rhs": str(right)}
                if gap:
                    witness["separation"] = gap
                return Outcome(DISPROVED, METHOD_SEPARATED, witness=witness,
                               note=f"{what}; nonzero modulo s_k^2 = r_k")
        from .separate import separating_point

        witness = separating_point(self.model, lhs, rhs, seed=seed)
        if witness is not None:
            return Outcome(DISPROVED, METHOD_SEPARATED, witness=witness,
                           note=f"{what}; nonzero modulo s_k^2 = r_k")
        independent, why = multiradical.independence(roots, deadline)
        if independent:
            why += ", so the nonzero form means the claim is false on an open set"
        elif independent is False:
            why += ", so a nonzero form does not decide the claim"
        return Outcome(UNKNOWN, METHOD_ROOTS,
                       note=f"{what}: nonzero modulo s_k^2 = r_k but no separating rational "
                            f"point found; {why}")

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


class _Program:
    """A radical-free expression of the leaves as a straight-line program over its graph
    (each shared subexpression once), evaluated exactly with FLINT fmpq.

    >>> a, b = sp.symbols("a b")
    >>> _Program((a + b) ** 2 / 3 - a)({a: flint.fmpq(1), b: flint.fmpq(2)})
    2
    """

    def __init__(self, expr: sp.Expr):
        self.expr = expr
        self.steps: list[tuple] = []  # (kind, operand): every operand an earlier step
        index: dict = {}

        def visit(e) -> int:
            hit = index.get(id(e))
            if hit is not None:
                return hit[1]
            if e.is_Rational:
                step = ("const", flint.fmpq(int(e.p), int(e.q)))
            elif e.is_Symbol:
                step = ("leaf", e)
            elif e.is_Add or e.is_Mul:
                step = ("add" if e.is_Add else "mul", [visit(a) for a in e.args])
            elif e.is_Pow and e.exp.is_Integer:
                step = ("pow", (visit(e.base), int(e.exp)))
            else:
                raise _Unsupported(f"{type(e).__name__} in a radicand: {e}")
            self.steps.append(step)
            index[id(e)] = (e, len(self.steps) - 1)
            return len(self.steps) - 1

        visit(expr)

    def __call__(self, point: dict) -> flint.fmpq:
        values: list = []
        push = values.append
        for kind, operand in self.steps:
            if kind == "add":
                total = values[operand[0]]
                for k in operand[1:]:
                    total = total + values[k]
                push(total)
            elif kind == "mul":
                total = values[operand[0]]
                for k in operand[1:]:
                    total = total * values[k]
                push(total)
            elif kind == "leaf":
                push(point[operand])
            elif kind == "const":
                push(operand)
            else:
                push(values[operand[0]] ** operand[1])
        return values[-1]


def _without(e: sp.Expr, p: sp.Symbol) -> sp.Expr | None:
    """w when e is the sum p + w (unevaluated, as composed), else None."""
    if not e.is_Add or p not in e.args:
        return None
    rest = list(e.args)
    rest.remove(p)
    return rest[0] if len(rest) == 1 else sp.Add(*rest, evaluate=False)


def _finite(value: sp.Expr) -> bool:
    """A real number: no symbol left, no zoo, nan, infinity or imaginary unit."""
    value = as_expr(value)
    return (not value.free_symbols and not value.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I)
            and value.is_real is not False)


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
_FROM_EXPR = object()  # default of RandomTester.degree_bound and sample: the radicand found


class RandomTester:
    """Probabilistic identity testing by exact rational evaluation at random points.

    The claim may contain one square root, sqrt(p + w(x)) with p a positive leaf (eps) and w
    free of p: the claim's own, or the model's first when the claim has none.  Both sides
    are evaluated with exact rationals (FLINT fmpq) at k points.  After p = s**2 - w(x),
    lhs - rhs is P/Q with polynomials P, Q in the leaves and s; `degree_bound` bounds deg P
    and deg Q from the expression itself.  The leaves are drawn from R consecutive integers
    (the other positive leaves from 1..R) and s from R consecutive integers above sqrt(w(x))
    (so p > 0 and sqrt(p + w) = s is rational).  Schwartz-Zippel, applied with s drawn after
    the leaves, gives: if P is not the zero polynomial, a point where both sides are defined
    and agree has probability at most (deg P + deg Q) / R, so k agreeing points leave
    probability <= ((deg P + deg Q) / R)**k.  A disagreeing point is a disproof,
    re-evaluated with SymPy before it is reported.

    Any other square root, and several distinct ones, are `unknown` here: drawing each
    s_k = sqrt(r_k) as a free variable would test the polynomial in (x, s_1..s_m), which
    is not zero for true claims (s**2 - r), and the reduced form modulo s_k**2 = r_k can be
    nonzero for a true claim whose radicals are dependent (sqrt(x*y) = sqrt(x)*sqrt(y)), so
    no bound of this kind covers them; `Algebra` decides them exactly.

    >>> bn = BatchNorm(3)
    >>> t = RandomTester(bn, points=4)
    >>> t.decide(bn.xhat(1) + bn.xhat(2) + bn.xhat(3), sp.Integer(0)).verdict
    'probable'
    >>> t.decide(bn.xhat(1), bn.xhat(2)).verdict
    'disproved'
    """

    def __init__(self, model: Model, points: int = 8, bits: int = 64, seed: int = 0):
        self.model = self.bn = model
        self.points, self.range = points, 1 << bits
        self._leaves = set(model.leaves)
        self._positive = {leaf for leaf in model.leaves if leaf in model.positive}
        self._model_radicand: tuple | None | bool = False  # False: not looked for yet
        self._programs: dict = {}
        self._node_bases: dict = {}  # node -> its radicals' bases (`_bases`)
        self._composed: dict = {}  # id -> (expression, composed), for the radicals' bases
        self._w_degree: dict = {}  # id(w) -> (w, degree bound of w)
        self.rng = random.Random(seed)

    # -- the one square root: sqrt(p + w) = s ---------------------------------------------
    def radicand(self, expr: sp.Expr) -> tuple | None:
        """(p, w, base, w as written) of the one radicand base = p + w(x) of `expr`
        (composed), of the model when `expr` has none; None when neither has one.  Raises
        `_Unsupported` for any other square root, or several."""
        bases = self._bases(as_expr(expr))
        model = self.model
        if len(bases) > 1:
            raise _Unsupported(f"{len(bases)} distinct square roots: the random method covers "
                               "one, sqrt(eps + w); use the exact method")
        if bases:
            (composed, base), = bases.items()
            form = self._form(composed, base)
            if form is None:
                raise _Unsupported(f"a square root other than sqrt(eps + w(x)): sqrt({base})")
            return form
        if self._model_radicand is False:
            self._model_radicand = None
            for s, node in model.nodes.items():
                if s == model.f:
                    continue
                for e in sp.preorder_traversal(node.definition):
                    if e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
                        self._model_radicand = self._form(model.compose(e.base), e.base)
                        break
                if self._model_radicand is not None:
                    break
        return self._model_radicand

    def _bases(self, expr: sp.Expr) -> dict:
        """composed base -> base as written, for every square root in `expr` and in the
        definitions of the nodes it names (those cached per node)."""
        found: dict = {}
        seen, stack = set(), [expr]
        model = self.model
        while stack:
            e = stack.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            if e.is_Symbol:
                if e in model.nodes and e != model.f:
                    below = self._node_bases.get(e)
                    if below is None:
                        below = self._node_bases[e] = self._bases(model.nodes[e].definition)
                    for composed, written in below.items():
                        found.setdefault(composed, written)
                continue
            if e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
                found.setdefault(self._compose(e.base), e.base)
            stack.extend(e.args)
        return found

    def _compose(self, e: sp.Expr) -> sp.Expr:
        hit = self._composed.get(id(e))
        if hit is None:
            hit = self._composed[id(e)] = (e, self.model.compose(e))
        return hit[1]

    def _form(self, composed: sp.Expr, written: sp.Expr) -> tuple | None:
        for p in [leaf for leaf in self.model.leaves if leaf in self._positive]:
            w = _without(composed, p)
            if w is not None and p not in symbols_of(w):
                # w as written (v, a node) is evaluated through the nodes, sharing their values
                # with the claim's evaluation at the same point
                raw = _without(written, p)
                return p, w, composed, w if raw is None else raw
        return None

    # -- the degree of the numerator and denominator, from the expression ----------------
    def degree_bound(self, expr: sp.Expr, radicand=_FROM_EXPR) -> tuple[int, int]:
        """(bound on deg P, bound on deg Q) for expr = P/Q after p = s**2 - w(x), for the
        radicand (p, w, base) of `radicand` (by default `expr`'s own, see `radicand`)."""
        expr = as_expr(expr)
        if radicand is _FROM_EXPR:
            radicand = self.radicand(expr)
        if radicand is not None:
            hit = self._w_degree.get(id(radicand[1]))
            if hit is None:
                hit = self._w_degree[id(radicand[1])] = (radicand[1],
                                                         self._degree(radicand[1], {}, None))
            n, d = hit[1]
            if d:  # a point where w's denominator vanished would be one the bound misses
                raise _Unsupported(f"sqrt({radicand[2]}): eps + w(x) with w not a polynomial")
            radicand = (*radicand, (max(2, n), 0))  # p = s**2 - w(x)
        return self._degree(expr, {}, radicand)

    def _degree(self, e, known, radicand) -> tuple[int, int]:
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        model = self.model
        if e.is_Number:
            out = (0, 0)
        elif e.is_Symbol:
            if radicand is not None and e == radicand[0]:
                out = radicand[4]  # p = s**2 - w(x)
            elif e in model.nodes and e != model.f:
                out = self._degree(model.nodes[e].definition, known, radicand)
            elif e in self._leaves:
                out = (1, 0)
            else:
                raise _Unsupported(f"unknown symbol {e}")
        elif e.is_Add:
            n, d = self._degree(e.args[0], known, radicand)
            for a in e.args[1:]:
                n2, d2 = self._degree(a, known, radicand)
                n, d = max(n + d2, n2 + d), d + d2
        elif e.is_Mul:
            n = d = 0
            for a in e.args:
                n2, d2 = self._degree(a, known, radicand)
                n, d = n + n2, d + d2
        elif e.is_Pow and e.exp.is_Integer:
            n, d = self._degree(e.base, known, radicand)
            k = int(e.exp)
            out = (k * n, k * d) if k >= 0 else (-k * d, -k * n)
        elif e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
            if radicand is None or self._compose(e.base) != radicand[2]:
                raise _OtherRoot(f"a square root other than sqrt(eps + w): {e}")
            p = int(e.exp.p)
            out = (p, 0) if p >= 0 else (0, -p)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        if e.is_Add or e.is_Mul:
            out = (n, d)
        known[id(e)] = (e, out)
        return out

    # -- exact evaluation ---------------------------------------------------------------
    def sample(self, radicand=_FROM_EXPR) -> tuple[dict, flint.fmpq]:
        """A random point: every leaf, with p = s**2 - w(x) > 0 for the radicand (p, w, ...)
        (by default the model's); returns (point, s)."""
        if radicand is _FROM_EXPR:
            radicand = self.radicand(sp.Integer(0))
        rng, r = self.rng, self.range
        p = None if radicand is None else radicand[0]
        pt = {}
        for leaf in self.model.leaves:
            if leaf == p:
                continue
            if leaf in self._positive:
                pt[leaf] = flint.fmpq(1 + rng.randrange(r))
            else:
                pt[leaf] = flint.fmpq(rng.randrange(-(r // 2), r - r // 2))
        if p is None:
            return pt, flint.fmpq(1)
        w = self._program(radicand[1])(pt)
        s = flint.fmpq(math.isqrt(max(0, int(w.p) // int(w.q))) + 1 + rng.randrange(r))
        pt[p] = s * s - w
        return pt, s

    def _program(self, w: sp.Expr) -> _Program:
        """w (composed, radical-free), compiled once: it is evaluated at every sample.  A
        wrong value could not pass unnoticed: every radical of the claim is checked to have
        base value s**2 at the point (`evaluate`)."""
        program = self._programs.get(id(w))
        if program is None or program.expr is not w:
            program = self._programs[id(w)] = _Program(w)
        return program

    def evaluate(self, expr: sp.Expr, point: dict, s, known: dict):
        """Exact rational value of `expr` (FLINT fmpq); sqrt only of p + w (= s**2)."""
        e = expr
        hit = known.get(id(e))
        if hit is not None:
            return hit[1]
        model = self.model
        if e.is_Rational:
            out = flint.fmpq(int(e.p), int(e.q))
        elif e.is_Symbol:
            if e in point:
                out = point[e]
            elif e in model.nodes and e != model.f:
                out = self.evaluate(model.nodes[e].definition, point, s, known)
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
            if s is None or self.evaluate(e.base, point, s, known) != s * s:
                raise _Unsupported(f"a square root other than sqrt(eps + w): {e}")
            out = s ** int(e.exp.p)
        else:
            raise _Unsupported(f"{type(e).__name__} is outside the rational fragment: {e}")
        known[id(e)] = (e, out)
        return out

    def decide(self, lhs: sp.Expr, rhs: sp.Expr, deadline: float | None = None) -> Outcome:
        """probable (with the bound) / disproved (with witness) / unknown."""
        lhs, rhs = as_expr(lhs), as_expr(rhs)
        try:
            # the model's radicand first: a claim with another square root (or none) is
            # walked again for its own (`radicand`), which refuses several
            radicand = self.radicand(sp.Integer(0))
            try:
                (n1, d1), (n2, d2) = (self.degree_bound(e, radicand) for e in (lhs, rhs))
            except _OtherRoot:
                radicand = self.radicand(sp.Tuple(lhs, rhs))
                (n1, d1), (n2, d2) = (self.degree_bound(e, radicand) for e in (lhs, rhs))
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
            known: dict = {}
            try:
                point, s = self.sample(radicand)
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
                + (f"^{self.points} < 2^{math.floor(math.log2(bound)) + 1}" if bound else
                   f"^{self.points} = 0 (a constant that vanished at a point)"))
        return Outcome(PROBABLE, METHOD_RANDOM, note=note)

    def _disproof(self, lhs, rhs, point) -> Outcome:
        support = self.model.support(sp.Tuple(lhs, rhs))
        pt = {k: Fraction(int(q.p), int(q.q)) for k, q in point.items() if k in support}
        left, right = self.model.evaluate(lhs, pt), self.model.evaluate(rhs, pt)  # independent
        if not (left.is_Rational and right.is_Rational) or left == right:
            return Outcome(UNKNOWN, METHOD_RANDOM, note="evaluations disagree; not reported")
        witness = {"point": {str(k): _fmt(v) for k, v in pt.items()},
                   "lhs": str(left), "rhs": str(right)}
        return Outcome(DISPROVED, METHOD_RANDOM, witness=witness)
