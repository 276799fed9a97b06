"""An independent test oracle for symbn's claim language: plain SymPy, a concrete f.

The oracle evaluates one side of a claim (or every side of a chain ``a = b = c``) exactly at a
rational point, for a concrete batch size N and a concrete, nonlinear scalar function
F(y_1, ..., y_N) supplied by the caller.  It shares no code with ``symbn``: other tests use it
as a second implementation of the semantics, to re-check symbn's verdicts and witnesses.

Semantics (claims are read with ``ast`` from a whitelist, never ``eval``):

- leaves ``x[r]`` (r = 1..N), ``gamma``, ``beta``, ``eps`` (eps > 0); ``N`` the batch size;
- nodes ``mu``, ``v`` (biased variance), ``sigma = sqrt(v + eps)``, ``xhat[r]``, ``y[r]``,
  ``f = F(y(x))`` and ``dy[r] = dF/dy_r`` at ``y = y(x)`` (so dy depends on the leaves);
- ``sqrt``, ``Sum(e, (k, 1, N))``, ``KroneckerDelta(a, b)``, ``D(a, b)`` (total derivative
  with respect to a leaf, or with respect to ``y[r]`` for ``a`` = ``f`` or ``dy[s]``) and
  ``P(a, b)`` (local partial along a graph edge, computed by differentiating the node's
  definition written in symbols for its parents).

A side is undefined at a point (``value`` returns None) when any division written in the
claim, or any negative power or square root anywhere in the side's expression, meets a zero
denominator or a negative radicand.  Divisions and roots written in the claim are recorded as
the claim is built, because SymPy cancels e.g. ``v/v`` to 1 while building it.

Models (``Oracle(n, model=...)``), each written here from its mathematics:

- ``batchnorm`` (the default, as above);
- ``batchnorm-unbiased``: as batchnorm but ``v = Sum((x[k] - mu)**2)/(N - 1)``; N >= 2 only
  (the oracle refuses N = 1, where the model is undefined);
- ``layernorm``: as batchnorm but gamma and beta are per-position leaves ``gamma[r]``,
  ``beta[r]`` and ``y[r] = gamma[r]*xhat[r] + beta[r]``;
- ``rmsnorm``: leaves ``x[r]``, ``gamma[r]``, ``eps``; nodes ``ms = Sum(x[k]**2)/N``,
  ``xhat[r] = x[r]*(ms + eps)**(-1/2)``, ``y[r] = gamma[r]*xhat[r]``; ``sigma = sqrt(ms + eps)``.

In the row models eps is a direct parent of xhat (it is written in xhat's definition); in
batchnorm P(xhat[r], eps) stays refused as before.
"""

from __future__ import annotations

import ast
import random
from fractions import Fraction
from math import isqrt

import sympy

__all__ = ["MODELS", "Oracle", "OracleError", "default_f"]

INDICES = ("i", "j", "k")
INDEXED = ("x", "xhat", "y", "dy")
SCALARS = ("mu", "v", "sigma", "gamma", "beta", "eps", "f")
# per model: names used without a row, names that need one, along (per-position) leaves,
# the smallest batch size
MODELS = {
    "batchnorm": (SCALARS, INDEXED, (), 1),
    "batchnorm-unbiased": (SCALARS, INDEXED, (), 2),
    "layernorm": (("mu", "v", "sigma", "eps", "f"), ("x", "gamma", "beta", "xhat", "y", "dy"),
                  ("gamma", "beta"), 1),
    "rmsnorm": (("ms", "sigma", "eps", "f"), ("x", "gamma", "xhat", "y", "dy"), ("gamma",), 1),
}
FUNCTIONS = {"sqrt": 1, "Sum": 2, "KroneckerDelta": 2, "D": 2, "P": 2}

MAX_TEXT = 20000
MAX_AST_NODES = 5000
MAX_EXPONENT = 64
MAX_LITERAL = 10 ** 30
_NUMERIC_DIGITS = 60
_CACHE_LIMIT = 1024

# pools for random points: small integers and small fractions; eps in (0, 1) and 1..10
_ROW_POOL = tuple(Fraction(k) for k in range(-4, 5)) + tuple(
    sign * Fraction(p, q)
    for p, q in ((1, 2), (1, 3), (2, 3), (3, 2), (5, 2), (1, 4), (3, 4), (5, 3), (7, 2))
    for sign in (1, -1))
_EPS_SMALL = tuple(Fraction(p, q) for p, q in ((1, 7), (1, 3), (1, 2), (1, 4), (1, 5), (2, 3),
                                               (3, 4), (1, 10), (2, 5), (5, 6)))
_EPS_INT = tuple(Fraction(k) for k in range(1, 11))


class OracleError(Exception):
    """A claim the oracle refuses, or a question it cannot answer with certainty."""


class _Undefined(Exception):
    """Raised inside evaluation: the side has no value at this point."""


def default_f(ys: list[sympy.Symbol]) -> sympy.Expr:
    """A nonlinear test function: sum_r (r*y_r + y_r**2/2) + y_1*y_2 (when N >= 2) + y_1**3/3."""
    total = sympy.Integer(0)
    for r, y in enumerate(ys, start=1):
        total += r * y + y ** 2 / 2
    if len(ys) >= 2:
        total += ys[0] * ys[1]
    return total + ys[0] ** 3 / 3


def split_chain(claim: str) -> list[str]:
    """Split 'a = b = c' at the single '=' signs outside brackets (not ==, !=, <=, >=)."""
    if not isinstance(claim, str):
        raise OracleError(f"a claim is a string, not {type(claim).__name__}")
    parts: list[str] = []
    depth = 0
    start = 0
    for pos, ch in enumerate(claim):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "=" and depth == 0:
            before = claim[pos - 1] if pos else ""
            after = claim[pos + 1] if pos + 1 < len(claim) else ""
            if before not in "=!<>:" and after != "=":
                parts.append(claim[start:pos])
                start = pos + 1
    parts.append(claim[start:])
    return parts


def _to_fraction(value) -> Fraction:
    if isinstance(value, bool):
        raise OracleError("a point's coordinates are rationals, not booleans")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, sympy.Basic) and getattr(value, "is_Rational", False):
        return Fraction(int(value.p), int(value.q))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise OracleError(f"cannot read {value!r} as an exact rational") from None
    raise OracleError(f"a point's coordinates are exact rationals (int, Fraction, str), "
                      f"not {type(value).__name__} {value!r}")


_BAD = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)


def _bad_number(e: sympy.Basic) -> bool:
    """nan or an infinity (SymPy propagates them to the top of an evaluated number)."""
    return any(e is bad for bad in _BAD)


class _Values:
    """Exact bottom-up evaluation of a leaf expression at a rational point, with checks.

    The general tier: every value is a SymPy number (kept expanded), signs are decided by
    `sign`.  `_FastValues` handles the common case first."""

    def __init__(self, point: dict[sympy.Symbol, sympy.Rational]):
        self.point = point
        self.memo: dict[sympy.Basic, sympy.Expr] = {}

    @staticmethod
    def sign(value: sympy.Expr) -> int:
        return sign(value)

    @staticmethod
    def export(value: sympy.Expr) -> sympy.Expr:
        return value

    def __call__(self, e: sympy.Basic) -> sympy.Expr:
        hit = self.memo.get(e)
        if hit is None:
            hit = self._compute(e)
            if _bad_number(hit):
                raise _Undefined
            self.memo[e] = hit
        return hit

    def _compute(self, e: sympy.Basic) -> sympy.Expr:
        if e.is_Symbol:
            if e not in self.point:
                raise OracleError(f"the expression contains {e}, which is not a leaf")
            return self.point[e]
        if e.is_Number:
            if e.is_Rational:
                return e
            if _bad_number(e):
                raise _Undefined
            raise OracleError(f"inexact number {e} in an expression")
        if e.is_Atom:  # pi, E, I, ...
            return e
        if e.is_Add:
            return _canonical(sympy.Add(*[self(a) for a in e.args]))
        if e.is_Mul:
            return _canonical(sympy.Mul(*[self(a) for a in e.args]))
        if e.is_Pow:
            base, exp = self(e.base), e.exp
            if not exp.is_Rational:
                exp = self(exp)
                if not exp.is_Rational:
                    raise OracleError(f"non-rational exponent in {e}")
            if exp.is_negative and sign(base) == 0:
                raise _Undefined  # division by zero
            if not exp.is_integer and sign(base) < 0:
                raise _Undefined  # even root of a negative number
            return _canonical(sympy.Pow(base, exp))
        if isinstance(e, sympy.Function) and not isinstance(e, sympy.core.function.AppliedUndef):
            out = e.func(*[self(a) for a in e.args])
            if out.is_real is False:
                raise _Undefined
            return out
        raise OracleError(f"cannot evaluate {type(e).__name__}: {e}")



class _Fallback(Exception):
    """The fast tier cannot represent a value; evaluate with `_Values` instead."""


class _Surd:
    """a + b*s with a, b rationals, b != 0, and s = sqrt(w) > 0 irrational (w per evaluator)."""

    __slots__ = ("a", "b")

    def __init__(self, a: Fraction, b: Fraction):
        self.a, self.b = a, b


def _square_root(q: Fraction) -> Fraction | None:
    """The rational square root of q >= 0, or None if q is not the square of a rational."""
    p, d = q.numerator, q.denominator
    rp, rd = isqrt(p), isqrt(d)
    if rp * rp == p and rd * rd == d:
        return Fraction(rp, rd)
    return None


class _FastValues:
    """Exact evaluation in Q or Q(sqrt(w)) with Python Fractions, for one radical w.

    Every value the model itself produces lies in Q(sqrt(v + eps)); anything else (a second
    independent radical, a nested root, a function such as exp) raises _Fallback."""

    def __init__(self, point: dict[sympy.Symbol, sympy.Rational]):
        self.point = {k: Fraction(int(v.p), int(v.q)) for k, v in point.items()}
        self.memo: dict[sympy.Basic, Fraction | _Surd] = {}
        self.w: Fraction | None = None

    def __call__(self, e: sympy.Basic):
        hit = self.memo.get(e)
        if hit is None:
            hit = self._compute(e)
            self.memo[e] = hit
        return hit

    def _compute(self, e: sympy.Basic):
        if e.is_Symbol:
            if e not in self.point:
                raise OracleError(f"the expression contains {e}, which is not a leaf")
            return self.point[e]
        if e.is_Rational:
            return Fraction(int(e.p), int(e.q))
        if _bad_number(e):
            raise _Undefined
        if e.is_Add:
            out = Fraction(0)
            for a in e.args:
                out = self.add(out, self(a))
            return out
        if e.is_Mul:
            out = Fraction(1)
            for a in e.args:
                out = self.mul(out, self(a))
            return out
        if e.is_Pow and e.exp.is_Rational and e.exp.q == 2 and e.base.is_Pow \
                and e.base.exp.is_Integer and e.base.exp % 2 == 0:
            # sqrt(b**(2m))**p = |b|**(m*p): no second radical, even when b is a surd
            inner, m = self(e.base.base), int(e.base.exp) // 2
            if self.sign(inner) < 0:
                inner = self.mul(Fraction(-1), inner)
            if (m < 0 or e.exp < 0) and self.sign(inner) == 0:
                raise _Undefined  # division by zero
            return self.power(inner, m * int(e.exp.p))
        if e.is_Pow and e.exp.is_Rational and e.exp.q in (1, 2):
            base = self(e.base)
            p, q = int(e.exp.p), int(e.exp.q)
            if p < 0 and self.sign(base) == 0:
                raise _Undefined  # division by zero
            if q == 2:
                if self.sign(base) < 0:
                    raise _Undefined  # square root of a negative number
                base = self.sqrt(base)
            return self.power(base, p)
        raise _Fallback

    # arithmetic in Q(s), s*s = w
    @staticmethod
    def _make(a: Fraction, b: Fraction):
        return a if b == 0 else _Surd(a, b)

    def add(self, x, y):
        if isinstance(x, Fraction) and isinstance(y, Fraction):
            return x + y
        xa, xb = (x, 0) if isinstance(x, Fraction) else (x.a, x.b)
        ya, yb = (y, 0) if isinstance(y, Fraction) else (y.a, y.b)
        return self._make(xa + ya, xb + yb)

    def mul(self, x, y):
        if isinstance(x, Fraction):
            if isinstance(y, Fraction):
                return x * y
            return self._make(x * y.a, x * y.b)
        if isinstance(y, Fraction):
            return self._make(y * x.a, y * x.b)
        return self._make(x.a * y.a + x.b * y.b * self.w, x.a * y.b + x.b * y.a)

    def inverse(self, x):
        if isinstance(x, Fraction):
            return 1 / x
        norm = x.a * x.a - x.b * x.b * self.w  # nonzero: s is irrational
        return _Surd(x.a / norm, -x.b / norm)

    def power(self, x, p: int):
        if p < 0:
            x, p = self.inverse(x), -p
        out, base = Fraction(1), x
        while p:
            if p & 1:
                out = self.mul(out, base)
            p >>= 1
            if p:
                base = self.mul(base, base)
        return out

    def sign(self, x) -> int:
        if isinstance(x, Fraction):
            return (x > 0) - (x < 0)
        sa, sb = (x.a > 0) - (x.a < 0), (x.b > 0) - (x.b < 0)
        if sa == 0 or sa == sb:
            return sb
        # a and b of opposite signs: compare a^2 with b^2 w (never equal, s irrational)
        return sa if x.a * x.a > x.b * x.b * self.w else sb

    def sqrt(self, x):
        if not isinstance(x, Fraction):
            raise _Fallback  # a nested radical
        root = _square_root(x)
        if root is not None:
            return root
        if self.w is None:
            self.w = x
            return _Surd(Fraction(0), Fraction(1))
        ratio = _square_root(x / self.w)
        if ratio is None:
            raise _Fallback  # a second radical
        return _Surd(Fraction(0), ratio)

    def export(self, x) -> sympy.Expr:
        if isinstance(x, Fraction):
            return sympy.Rational(x.numerator, x.denominator)
        w = sympy.sqrt(sympy.Rational(self.w.numerator, self.w.denominator))
        return (sympy.Rational(x.a.numerator, x.a.denominator)
                + sympy.Rational(x.b.numerator, x.b.denominator) * w)


def _canonical(value: sympy.Expr) -> sympy.Expr:
    """Keep a value a flat sum of rational multiples of radicals: SymPy already collects the
    terms of a sum of such values; products of sums and integer powers of sums are expanded,
    and negative powers of sums rationalised."""
    if value.is_Rational or value.is_Atom:
        return value
    if value.is_Pow:
        if value.base.is_Add and value.exp.is_Integer:
            if value.exp > 0:
                return sympy.expand(value)
            return sympy.expand(sympy.radsimp(value))
        return value
    if value.is_Mul:
        if any(_needs_work(a) for a in value.args):
            out = sympy.expand(value)
            if any(p.exp.is_negative and p.base.is_Add for p in out.atoms(sympy.Pow)):
                out = sympy.expand(sympy.radsimp(out))
            return out
        return value
    if value.is_Add and any(_needs_work(a) for a in value.args):
        return _canonical(sympy.Add(*[_canonical(a) for a in value.args]))
    return value


def _needs_work(a: sympy.Expr) -> bool:
    if a.is_Add:
        return True
    if a.is_Pow:
        return a.base.is_Add and a.exp.is_Integer
    if a.is_Mul:
        return any(_needs_work(b) for b in a.args)
    return False


def sign(value: sympy.Expr) -> int:
    """The exact sign (-1, 0, 1) of a real number given exactly; OracleError if undecidable."""
    if value.is_Rational:
        return (value.p > 0) - (value.p < 0)
    approx = sympy.N(value, _NUMERIC_DIGITS)
    re_part, im_part = approx.as_real_imag()
    if abs(im_part) > sympy.Float(10) ** -40 * max(1, abs(re_part)):
        raise _Undefined  # not a real number
    if abs(re_part) > sympy.Float(10) ** -40:
        return 1 if re_part > 0 else -1
    if _exactly_zero(value):
        return 0
    approx = sympy.N(value, 400)
    if abs(approx) > sympy.Float(10) ** -350:
        return 1 if approx > 0 else -1
    raise OracleError(f"cannot decide the sign of {value}")


def _exactly_zero(value: sympy.Expr) -> bool:
    if value == 0 or sympy.expand(value) == 0:
        return True
    if sympy.simplify(value) == 0:
        return True
    try:
        return sympy.minimal_polynomial(value, sympy.Dummy("t")).is_Symbol
    except (NotImplementedError, ValueError, sympy.PolynomialError):
        return False


class Oracle:
    """symbn's claim language evaluated with plain SymPy at a concrete N and a concrete f."""

    def __init__(self, n: int, f=default_f, *, model: str = "batchnorm", fast: bool = True):
        """`model` is one of MODELS; `fast=False` evaluates everything with the general SymPy
        tier (for self-tests)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OracleError(f"the batch size is a positive integer, not {n!r}")
        if model not in MODELS:
            raise OracleError(f"unknown model {model!r}; models are {', '.join(MODELS)}")
        self.scalars, self.indexed, self.along, min_n = MODELS[model]
        if n < min_n:
            raise OracleError(f"{model} is defined for N >= {min_n}, not N = {n}")
        self.n = n
        self.model = model
        self.fast = fast
        self.x = [sympy.Symbol(f"x{r}") for r in range(1, n + 1)]
        self.eps = sympy.Symbol("eps")
        self._names = {f"x[{r}]": s for r, s in enumerate(self.x, start=1)}
        self.leaves: list[sympy.Symbol] = list(self.x)
        # gamma, beta: one symbol (set leaves) or a list of N symbols (along leaves)
        self.gamma = self.beta = None
        for name in ("gamma", "beta"):
            if name == "beta" and model == "rmsnorm":
                continue
            if name in self.along:
                leaf = [sympy.Symbol(f"{name}{r}") for r in range(1, n + 1)]
                self._names.update({f"{name}[{r}]": s for r, s in enumerate(leaf, start=1)})
                self.leaves.extend(leaf)
            else:
                leaf = sympy.Symbol(name)
                self._names[name] = leaf
                self.leaves.append(leaf)
            setattr(self, name, leaf)
        self.leaves.append(self.eps)
        self._names["eps"] = self.eps

        x, eps = self.x, self.eps
        half = sympy.Rational(-1, 2)
        if model == "rmsnorm":
            self.ms = sympy.Add(*[xr ** 2 for xr in x]) / n
            self.sigma = sympy.sqrt(self.ms + eps)
            self.xhat = [xr * (self.ms + eps) ** half for xr in x]
            self.y = [g * xh for g, xh in zip(self.gamma, self.xhat, strict=True)]
        else:
            self.mu = sympy.Add(*x) / n
            self.v = sympy.Add(*[(xr - self.mu) ** 2 for xr in x]) / self._v_divisor()
            self.sigma = sympy.sqrt(self.v + eps)
            self.xhat = [(xr - self.mu) * (self.v + eps) ** half for xr in x]
            self.y = [self._gamma(r) * xh + self._beta(r)
                      for r, xh in enumerate(self.xhat, start=1)]

        self._ys = [sympy.Dummy(f"y{r}") for r in range(1, n + 1)]
        big_f = sympy.sympify(f(list(self._ys)))
        if not isinstance(big_f, sympy.Expr):
            raise OracleError("f must return a SymPy expression of the y symbols")
        strays = big_f.free_symbols - set(self._ys)
        if strays:
            raise OracleError(f"f depends on {sorted(map(str, strays))}, not only on y")
        self._big_f = big_f
        self._at_y = dict(zip(self._ys, self.y, strict=True))
        self.f = big_f.xreplace(self._at_y)
        self.dy = [sympy.diff(big_f, yr).xreplace(self._at_y) for yr in self._ys]
        self._second: dict[tuple[int, int], sympy.Expr] = {}
        self._partials: dict[tuple, sympy.Expr] = {}
        self._compiled: dict[tuple, tuple[sympy.Expr, tuple]] = {}

    # -- public API ------------------------------------------------------------------------

    def expr(self, text: str, assignment: dict[str, int] | None = None) -> sympy.Expr:
        """One side of a claim (no '=') as a SymPy expression of the leaves, free indices
        bound by `assignment`, e.g. {'i': 1, 'j': 2}."""
        return self._compile(text, assignment)[0]

    def value(self, text: str, point: dict, assignment: dict[str, int] | None = None):
        """Exact value of one side at `point` (keys 'x[1]', ..., 'gamma', 'beta', 'eps'; missing
        leaves take fixed small rationals): a SymPy Rational or exact algebraic number, or None
        where the side is undefined (division by zero, square root of a negative number)."""
        return self._evaluate_all([self._compile(text, assignment)], self._point(point))[0]

    def sides(self, claim: str, point: dict, assignment: dict[str, int] | None = None) -> list:
        """Split a chain 'a = b = c' at its top-level '=' and return value() of every side."""
        compiled = [self._compile(side, assignment) for side in self._sides(claim)]
        return self._evaluate_all(compiled, self._point(point))

    def differ(self, a, b) -> bool:
        """True iff the two values (from value()) are certainly different.

        Rationals are compared directly; otherwise an exact test (expand, then
        sympy.simplify) and a 60-digit numeric evaluation must agree, or OracleError."""
        if a is None or b is None:
            raise OracleError("an undefined side (None) cannot be compared")
        a, b = sympy.sympify(a), sympy.sympify(b)
        if a.is_Rational and b.is_Rational:
            return a != b
        d = a - b
        if d == 0:  # SymPy collected the two exact values to 0: equal, numerically too
            return False
        exact = not _exactly_zero_cheap(d)
        scale = max(sympy.Float(1), abs(sympy.N(a, _NUMERIC_DIGITS)),
                    abs(sympy.N(b, _NUMERIC_DIGITS)))
        numeric = abs(sympy.N(d, _NUMERIC_DIGITS)) > sympy.Float(10) ** -40 * scale
        if exact and not numeric:  # simplify may miss a zero: try the minimal polynomial
            exact = not _exactly_zero(d)
        if exact != numeric:
            raise OracleError(f"exact and numeric comparison disagree on {a} vs {b}")
        return exact

    def search(self, claim: str, assignment: dict[str, int] | None = None, tries: int = 200,
               seed: int = 0) -> dict | None:
        """Look for a counterexample at random exact rational points.

        Returns {'point': {...}, 'values': [...], 'link': k} for the first point where sides
        k and k + 1 differ, or None after `tries` points.  Points where a side is undefined
        are skipped (they count as tries)."""
        compiled = [self._compile(side, assignment) for side in self._sides(claim)]
        if len(compiled) < 2:
            raise OracleError("search needs a claim with at least two sides 'a = b'")
        rng = random.Random(seed)
        for _ in range(tries):
            point = self.random_point(rng)
            got = self._evaluate_all(compiled, self._point(point))
            if any(g is None for g in got):
                continue
            for link in range(len(got) - 1):
                if self.differ(got[link], got[link + 1]):
                    return {"point": point, "values": got, "link": link}
        return None

    def random_point(self, rng: random.Random) -> dict[str, Fraction]:
        """A random exact point: x, gamma, beta small rationals (one per row for along
        leaves); eps in (0, 1) or 1..10."""
        point = {f"x[{r}]": rng.choice(_ROW_POOL) for r in range(1, self.n + 1)}
        for name in ("gamma", "beta"):
            if name in self.along:
                point.update({f"{name}[{r}]": rng.choice(_ROW_POOL)
                              for r in range(1, self.n + 1)})
            elif name in self._names:
                point[name] = rng.choice(_ROW_POOL)
        point["eps"] = rng.choice(_EPS_SMALL if rng.random() < 0.5 else _EPS_INT)
        return point

    def default_point(self) -> dict[str, Fraction]:
        """The fixed values that `value` uses for leaves missing from a point."""
        point = {f"x[{r}]": Fraction(r * r + 1, r + 2) for r in range(1, self.n + 1)}
        defaults = {"gamma": Fraction(3, 2), "beta": Fraction(-1, 3)}
        for name, value in defaults.items():
            if name in self.along:
                point.update({f"{name}[{r}]": value + Fraction(r - 1, r + 3)
                              for r in range(1, self.n + 1)})
            elif name in self._names:
                point[name] = value
        point["eps"] = Fraction(1, 5)
        return point

    # -- evaluation --------------------------------------------------------------------------

    def _point(self, point: dict) -> dict[sympy.Symbol, sympy.Rational]:
        if point is None:
            point = {}
        if not isinstance(point, dict):
            raise OracleError("a point is a dict such as {'x[1]': 2, 'eps': Fraction(1, 3)}")
        merged = self.default_point()
        for key, val in point.items():
            name = key.replace(" ", "") if isinstance(key, str) else key
            if name not in self._names:
                raise OracleError(f"{key!r} is not a leaf of the N = {self.n} {self.model} "
                                  f"model; leaves are {', '.join(self._names)} (dy is "
                                  "determined by f)")
            merged[name] = _to_fraction(val)
        if merged["eps"] <= 0:
            raise OracleError(f"eps must be positive, got {merged['eps']}")
        return {self._names[k]: sympy.Rational(v.numerator, v.denominator)
                for k, v in merged.items()}

    def _evaluate_all(self, compiled: list, point: dict) -> list:
        """Every side at one point: the fast tier first, the general one where it gives up."""
        fast, slow, out = _FastValues(point), None, []
        for side in compiled:
            try:
                if not self.fast:
                    raise _Fallback
                out.append(Oracle._evaluate(side, fast))
            except _Fallback:
                slow = slow or _Values(point)
                out.append(Oracle._evaluate(side, slow))
        return out

    @staticmethod
    def _evaluate(compiled: tuple, values):
        expr, conditions = compiled
        try:
            for cond, kind in conditions:
                s = values.sign(values(cond))
                if s == 0 and kind == "nonzero":
                    return None
                if s < 0 and kind == "nonneg":
                    return None
            return values.export(values(expr))
        except _Undefined:
            return None

    def _sides(self, claim: str) -> list[str]:
        parts = split_chain(claim)
        if any(not p.strip() for p in parts):
            raise OracleError(f"empty side in {claim!r}")
        return parts

    def _compile(self, text: str, assignment: dict[str, int] | None) -> tuple:
        if not isinstance(text, str):
            raise OracleError(f"a side is a string, not {type(text).__name__}")
        if len(text) > MAX_TEXT:
            raise OracleError(f"side longer than {MAX_TEXT} characters")
        env = self._assignment(assignment)
        key = (text, tuple(sorted(env.items())))
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        if len(split_chain(text)) != 1:
            raise OracleError(f"{text!r} contains '='; pass one side, or use sides()")
        source = " ".join(text.split())
        if not source:
            raise OracleError("empty expression")
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as err:
            raise OracleError(f"syntax error in {source!r}: {err.msg}") from None
        except (ValueError, RecursionError, MemoryError) as err:
            raise OracleError(f"cannot read {source!r}: {type(err).__name__}") from None
        if sum(1 for _ in ast.walk(tree)) > MAX_AST_NODES:
            raise OracleError(f"expression has more than {MAX_AST_NODES} parts")
        builder = _Builder(self, env)
        try:
            expr = builder.build(tree.body)
        except RecursionError:
            raise OracleError(f"{source!r} is nested too deeply") from None
        compiled = (expr, tuple(dict.fromkeys(builder.conditions)))
        if len(self._compiled) >= _CACHE_LIMIT:
            self._compiled.clear()
        self._compiled[key] = compiled
        return compiled

    def _assignment(self, assignment: dict[str, int] | None) -> dict[str, int]:
        if assignment is None:
            return {}
        if not isinstance(assignment, dict):
            raise OracleError("an assignment is a dict such as {'i': 1, 'j': 2}")
        out = {}
        for name, row in assignment.items():
            name = getattr(name, "name", name)  # accept SymPy symbols i, j, k as keys
            if name not in INDICES:
                raise OracleError(f"{name!r} is not an index; indices are i, j, k")
            if isinstance(row, bool) or not isinstance(row, int):
                try:
                    as_int = int(row)
                except (TypeError, ValueError):
                    raise OracleError(f"row {row!r} for {name} is not an integer") from None
                if as_int != row or isinstance(row, bool):
                    raise OracleError(f"row {row!r} for {name} is not an integer")
                row = as_int
            if not 1 <= row <= self.n:
                raise OracleError(f"{name} = {row} is outside the rows 1..N = 1..{self.n}")
            out[name] = row
        return out

    # -- the model: composed nodes, second derivatives of F, local partials ----------------

    def node(self, key: tuple) -> sympy.Expr:
        """The composed expression of a model name: ('mu',), ('x', 2), ('gamma', 1), ..."""
        kind = key[0]
        if len(key) == 2:
            rows = {"x": self.x, "xhat": self.xhat, "y": self.y, "dy": self.dy,
                    "gamma": self.gamma, "beta": self.beta}[kind]
            return rows[key[1] - 1]
        if kind not in self.scalars:
            raise OracleError(f"{kind} is not a name of the {self.model} model")
        return getattr(self, kind)

    def is_leaf(self, key: tuple) -> bool:
        """Whether a model name (as from node's keys) is a leaf."""
        return key[0] in ("x", "gamma", "beta", "eps")

    def _v_divisor(self) -> int:
        return self.n - 1 if self.model == "batchnorm-unbiased" else self.n

    def _gamma(self, r: int) -> sympy.Symbol:
        return self.gamma[r - 1] if "gamma" in self.along else self.gamma

    def _beta(self, r: int) -> sympy.Symbol:
        return self.beta[r - 1] if "beta" in self.along else self.beta

    def _leaf_key(self, name: str, r: int) -> tuple:
        return (name, r) if name in self.along else (name,)

    def second(self, s: int, r: int) -> sympy.Expr:
        """d^2 F / dy_s dy_r at y = y(x)."""
        key = (min(s, r), max(s, r))
        if key not in self._second:
            ys = self._ys
            self._second[key] = sympy.diff(self._big_f, ys[s - 1], ys[r - 1]).xreplace(
                self._at_y)
        return self._second[key]

    def partial(self, child: tuple, parent: tuple) -> sympy.Expr:
        """Local partial of a node along the edge from its direct parent (others fixed)."""
        key = (child, parent)
        if key in self._partials:
            return self._partials[key]
        n, x, eps = self.n, self.x, self.eps
        kind = child[0]
        back: dict = {}
        rows = {("x", r): x[r - 1] for r in range(1, n + 1)}
        half = sympy.Rational(-1, 2)
        if kind == "mu" and "mu" in self.scalars:
            definition = sympy.Add(*x) / n
            parents = rows
        elif kind == "v" and "v" in self.scalars:
            m = sympy.Dummy("mu")
            definition = sympy.Add(*[(xr - m) ** 2 for xr in x]) / self._v_divisor()
            parents = {**rows, ("mu",): m}
            back = {m: self.mu}
        elif kind == "ms" and "ms" in self.scalars:
            definition = sympy.Add(*[xr ** 2 for xr in x]) / n
            parents = rows
        elif kind == "xhat" and self.model == "rmsnorm":
            i = child[1]
            w = sympy.Dummy("ms")
            definition = x[i - 1] * (w + eps) ** half
            parents = {("x", i): x[i - 1], ("ms",): w, ("eps",): eps}
            back = {w: self.ms}
        elif kind == "xhat":
            i = child[1]
            m, w = sympy.Dummy("mu"), sympy.Dummy("v")
            definition = (x[i - 1] - m) * (w + eps) ** half
            parents = {("x", i): x[i - 1], ("mu",): m, ("v",): w}
            if self.model != "batchnorm":
                parents[("eps",)] = eps
            back = {m: self.mu, w: self.v}
        elif kind == "y":
            i = child[1]
            h = sympy.Dummy("xhat")
            g, b = self._gamma(i), (self._beta(i) if self.beta is not None else None)
            definition = g * h + (b if b is not None else 0)
            parents = {("xhat", i): h, self._leaf_key("gamma", i): g}
            if b is not None:
                parents[self._leaf_key("beta", i)] = b
            back = {h: self.xhat[i - 1]}
        elif kind == "f":
            definition = self._big_f
            parents = {("y", r): self._ys[r - 1] for r in range(1, n + 1)}
            back = self._at_y
        else:
            nodes = "ms, xhat[i], y[i], f" if self.model == "rmsnorm" else \
                "mu, v, xhat[i], y[i], f"
            raise OracleError(f"P: {_show(child)} is not a node of the graph "
                              f"(nodes: {nodes})")
        if parent not in parents:
            raise OracleError(f"P: {_show(parent)} is not a direct parent of {_show(child)}")
        out = sympy.diff(definition, parents[parent]).xreplace(back)
        self._partials[key] = out
        return out


def _show(key: tuple) -> str:
    return f"{key[0]}[{key[1]}]" if len(key) == 2 else key[0]


def _exactly_zero_cheap(d: sympy.Expr) -> bool:
    """Exact zero test for a difference: expand first, sympy.simplify only if needed."""
    if d == 0:
        return True
    e = sympy.expand(d)
    if e == 0:
        return True
    if e.is_Rational:
        return False
    return sympy.simplify(e) == 0


class _Builder:
    """Whitelisted AST -> SymPy expression of the leaves, recording definedness conditions."""

    def __init__(self, oracle: Oracle, env: dict[str, int]):
        self.oracle = oracle
        self.env = dict(env)
        self.conditions: list[tuple[sympy.Expr, str]] = []

    def build(self, node: ast.AST) -> sympy.Expr:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise OracleError(f"{type(node).__name__} is not allowed in a claim "
                              f"({_text(node)})")
        return method(node)

    # numbers and names
    def _Constant(self, node: ast.Constant) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise OracleError(f"constant {value!r} is not allowed; use integers (1/2 is exact)")
        if value > MAX_LITERAL:
            raise OracleError(f"integer {value} is too large")
        return sympy.Integer(value)

    def _Name(self, node: ast.Name) -> sympy.Expr:
        name = node.id
        if name == "N":
            return sympy.Integer(self.oracle.n)
        if name in self.oracle.scalars:
            return self.oracle.node((name,))
        if name in INDICES:
            raise OracleError(f"index {name} names a row; use it as x[{name}], in "
                              "KroneckerDelta or as a Sum variable")
        if name in self.oracle.indexed:
            raise OracleError(f"{name} needs a row, e.g. {name}[i]")
        if name in FUNCTIONS:
            raise OracleError(f"{name} is a function; call it")
        raise OracleError(f"unknown name {name!r}")

    def _Subscript(self, node: ast.Subscript) -> sympy.Expr:
        return self.oracle.node(self._indexed(node))

    def _indexed(self, node: ast.Subscript) -> tuple:
        if not (isinstance(node.value, ast.Name) and node.value.id in self.oracle.indexed):
            raise OracleError(f"subscripts apply only to {', '.join(self.oracle.indexed)} "
                              f"({_text(node)})")
        return (node.value.id, self.row(node.slice))

    def row(self, node: ast.AST) -> int:
        if isinstance(node, ast.Name) and node.id in INDICES:
            if node.id not in self.env:
                raise OracleError(f"index {node.id} is free and has no value; give it one "
                                  "in the assignment")
            return self.env[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if not 1 <= node.value <= self.oracle.n:
                raise OracleError(f"row {node.value} is outside 1..N = 1..{self.oracle.n}")
            return node.value
        raise OracleError(f"a row is i, j, k or a number, not {_text(node)}")

    def model_name(self, node: ast.AST) -> tuple:
        if isinstance(node, ast.Name) and node.id in self.oracle.scalars:
            return (node.id,)
        if isinstance(node, ast.Subscript):
            return self._indexed(node)
        raise OracleError(f"a model name is expected here, not {_text(node)}")

    # arithmetic
    def _UnaryOp(self, node: ast.UnaryOp) -> sympy.Expr:
        if isinstance(node.op, ast.USub):
            return -self.build(node.operand)
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand)
        raise OracleError(f"unary {type(node.op).__name__} is not allowed")

    def _BinOp(self, node: ast.BinOp) -> sympy.Expr:
        op = node.op
        if isinstance(op, ast.Pow):
            base = self.build(node.left)
            exp = self.exponent(node.right)
            if exp.is_negative:
                self.conditions.append((base, "nonzero"))
            if not exp.is_integer:
                self.conditions.append((base, "nonneg"))
            return _power(base, exp)
        if not isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            raise OracleError(f"operator {type(op).__name__} is not allowed")
        a, b = self.build(node.left), self.build(node.right)
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            return a * b
        self.conditions.append((b, "nonzero"))
        return a / b

    def exponent(self, node: ast.AST) -> sympy.Rational:
        value = _constant(node, self.oracle.n)
        if value is None:
            raise OracleError(f"exponent {_text(node)} must be a number such as 2, -1, 3/2")
        if value.q not in (1, 2) or abs(value) > MAX_EXPONENT:
            raise OracleError(f"exponent {value} is not an integer or half of size at most "
                              f"{MAX_EXPONENT}")
        return value

    # functions
    def _Call(self, node: ast.Call) -> sympy.Expr:
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise OracleError(f"call of {_text(node.func)} is not allowed; only "
                              f"{', '.join(FUNCTIONS)}")
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise OracleError(f"{name}: keyword and starred arguments are not allowed")
        if len(node.args) != FUNCTIONS[name]:
            raise OracleError(f"{name} takes {FUNCTIONS[name]} argument(s)")
        return getattr(self, f"_call_{name}")(*node.args)

    def _call_sqrt(self, arg: ast.AST) -> sympy.Expr:
        inner = self.build(arg)
        self.conditions.append((inner, "nonneg"))
        return _power(inner, sympy.Rational(1, 2))

    def _call_Sum(self, body: ast.AST, limits: ast.AST) -> sympy.Expr:
        if not (isinstance(limits, ast.Tuple) and len(limits.elts) == 3):
            raise OracleError("write Sum(e, (k, 1, N))")
        var, lower, upper = limits.elts
        if not (isinstance(var, ast.Name) and var.id in INDICES):
            raise OracleError("a Sum variable is i, j or k")
        if not (isinstance(lower, ast.Constant) and type(lower.value) is int
                and lower.value == 1):
            raise OracleError("sums start at 1")
        if not (isinstance(upper, ast.Name) and upper.id == "N"):
            raise OracleError("sums run to N")
        saved = self.env.get(var.id)
        terms = []
        try:
            for r in range(1, self.oracle.n + 1):
                self.env[var.id] = r
                terms.append(self.build(body))
        finally:
            if saved is None:
                self.env.pop(var.id, None)
            else:
                self.env[var.id] = saved
        return sympy.Add(*terms)

    def _call_KroneckerDelta(self, a: ast.AST, b: ast.AST) -> sympy.Expr:
        return sympy.Integer(int(self.row(a) == self.row(b)))

    def _call_D(self, a: ast.AST, b: ast.AST) -> sympy.Expr:
        wrt = self.model_name(b)
        if self.oracle.is_leaf(wrt):
            return sympy.diff(self.build(a), self.oracle.node(wrt))
        if wrt[0] == "y":
            if isinstance(a, ast.Name) and a.id == "f":
                return self.oracle.dy[wrt[1] - 1]
            if isinstance(a, ast.Subscript) and isinstance(a.value, ast.Name) \
                    and a.value.id == "dy":
                return self.oracle.second(self._indexed(a)[1], wrt[1])
            raise OracleError(f"D(a, {_show(wrt)}) has a meaning only for a = f or dy[s], "
                              f"not {_text(a)}")
        raise OracleError(f"D differentiates with respect to a leaf (x[r], gamma, beta, eps) "
                          f"or y[r], not {_show(wrt)}")

    def _call_P(self, a: ast.AST, b: ast.AST) -> sympy.Expr:
        return self.oracle.partial(self.model_name(a), self.model_name(b))


def _power(base: sympy.Expr, exp: sympy.Rational) -> sympy.Expr:
    """base**exp; a root is left unevaluated, because SymPy's evaluation of e.g.
    sqrt(big**2) queries the sign of `big` and can take minutes."""
    return sympy.Pow(base, exp, evaluate=exp.is_integer)


def _constant(node: ast.AST, n: int) -> sympy.Rational | None:
    """A constant written with integers, N, unary +/- and + - * /; None otherwise."""
    if isinstance(node, ast.Constant):
        if type(node.value) is int and abs(node.value) <= MAX_LITERAL:
            return sympy.Integer(node.value)
        return None
    if isinstance(node, ast.Name) and node.id == "N":
        return sympy.Integer(n)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand, n)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                            ast.Div)):
        a, b = _constant(node.left, n), _constant(node.right, n)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        return None if b == 0 else a / b
    return None


def _text(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, TypeError, AttributeError, RecursionError):  # only for messages
        text = type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."
