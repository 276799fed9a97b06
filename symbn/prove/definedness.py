"""Whether a claim is defined somewhere: divisors that are not the zero function (`nonzero`),
radicands real on an open set (`real_somewhere`), and the exact points that show it.

A claim defined nowhere would be vacuously true, so `symbn.check` asks these before it
believes a `proved`.

>>> from symbn.model import BatchNorm
>>> from symbn.prove import Algebra
>>> bn = BatchNorm(2)
>>> Algebra(bn).nonzero(bn.x(1) - bn.x(2)), Algebra(bn).nonzero(bn.x(1) - bn.x(1))
(True, False)
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import sympy as sp

from ..model import as_expr
from . import radicals
from .interface import DISPROVED, UNKNOWN, Outcome, _Unsupported
from .radicals import Signs
from .rational import _degree
from .separate import certainly_nonnegative, certainly_nonzero


def _positive(rng: random.Random) -> Fraction:
    """A value of a positive leaf: a small integer, or as often a small fraction (sqrt(1/2 -
    eps) is real only for eps < 1/2)."""
    return Fraction(rng.randint(1, 5)) if rng.random() < 0.5 else Fraction(1, rng.randint(2, 64))


def not_together(radicands: list, where: str) -> str:
    """Why roots each real somewhere are not shown real together: `radicands` as (label,
    value) pairs, `where` the place that writes them ("the left side", "the nodes")."""
    names = ", ".join(str(t) for t, _ in radicands[:3]) + (", ..." if len(radicands) > 3 else "")
    return (f"{where} takes square roots of {names}, each positive somewhere, but no point "
            "was found where all of them are (and every divisor nonzero)")


def completed(g, point: dict, names: dict, free_among, divisors: list, radicands: list,
              seed: int) -> dict | None:
    """A witness's `point` ({name: value text}) with the leaves among `free_among` it leaves
    free set to small integers (positive leaves > 0), such that every radicand (value) is
    >= 0 and every divisor nonzero; None if the point cannot be read or none is found."""
    try:
        values = {names[k]: sp.Rational(v) for k, v in point.items()}
    except (KeyError, TypeError, ValueError):
        return None
    free = sorted(set(free_among) - set(values), key=str)
    rng = random.Random(seed)
    for _ in range(20 if free else 1):
        trial = dict(values)
        trial.update({s: sp.Integer(rng.randint(1, 5)) if s in g.positive
                      else sp.Integer(rng.randint(-5, 5)) for s in free})
        try:
            if all(certainly_nonnegative(g.evaluate(e, trial)) for e in radicands) and \
                    all(certainly_nonzero(g.evaluate(e, trial)) for e in divisors):
                return {**point, **{str(s): str(trial[s]) for s in free}}
        except (TypeError, ValueError, ZeroDivisionError):
            continue
    return None


def where_defined(outcome: Outcome, locate, redecide, note: str, late=lambda: False) -> Outcome:
    """A disproof whose witness lies where what is written is defined: `locate(outcome,
    seed)` completes its point or returns None, `redecide(seed)` decides again from another
    point (None when the decider takes no seed); after 8 tries the claim is unknown with
    `note`.  SymPy reads sqrt(u)**2 as u and u/u as 1 as the sides are built, so the
    decided sides no longer carry what is written."""
    for seed in range(1, 9):
        point = locate(outcome, seed)
        if point is not None:
            outcome.witness["point"] = point
            return outcome
        if late():
            break
        again = redecide(seed)
        if again is None:
            break
        outcome = again
        if outcome.verdict != DISPROVED:
            return outcome
    return Outcome(UNKNOWN, outcome.method, note=note)


class Definedness:
    """The definedness checks of `Algebra` (a mixin: they use its model, leaves and
    conversion, `difference`, `convert`, `_radicals`, `_eps_form`)."""

    def undefined(self, expr: sp.Expr, deadline: float | None = None) -> str | None:
        """Why `expr` is undefined on the whole domain, or None: a divisor that is the zero
        function, or a square root of something negative wherever it is not 0 (the nodes'
        definitions included).  A claim is only ever proved where both sides are defined, so a
        side defined nowhere makes it vacuous: unknown, never proved."""
        g, memo = self.model, self.__dict__.setdefault("_definedness", {})
        seen, stack = set(), [expr]
        while stack:
            e = stack.pop()
            if e in seen:
                continue
            seen.add(e)
            if e in g.nodes and e != g.f:
                stack.append(g.nodes[e].definition)
                # and what its template wrote, before SymPy cancelled it (s/s is 1)
                divisors, radicands = getattr(g, "conditions", {}).get(e, ((), ()))
                stack += [sp.Pow(base, -1, evaluate=False) for _, base in divisors]
                stack += [sp.Pow(base, sp.Rational(1, 2), evaluate=False)
                          for _, base in radicands]
                stack += list(getattr(g, "mentions", {}).get(e, ()))
            stack.extend(e.args)
            if not e.is_Pow or e.exp.is_Integer and e.exp > 0:
                continue
            for test, why in ((self.nonzero, "divides by") if e.exp.is_negative else (None, None),
                              (self.real_somewhere, "takes the square root of")
                              if not e.exp.is_Integer else (None, None)):
                if test is None:
                    continue
                key = (why, e.base)
                if key not in memo:
                    memo[key] = test(e.base, deadline)
                if memo[key] is False:
                    what = "identically zero" if why == "divides by" else \
                        "negative wherever it is not 0"
                    return f"undefined at N = {g.n}: a side {why} {e.base}, which is {what}"
                if memo[key] is None:
                    return f"undefined or undecided: a side {why} {e.base}, which could not be " \
                           "shown " + ("nonzero" if why == "divides by" else "positive anywhere")
        return None

    def nonzero(self, expr: sp.Expr, deadline: float | None = None,
                seed: int = 0) -> bool | None:
        """Whether `expr` is not the zero function on the domain: True when it is nonzero
        at one exact point (so its canonical numerator is not the zero polynomial), False
        when that numerator is zero (or `expr` itself divides by zero), None if undecided.

        >>> from symbn.model import BatchNorm
        >>> from symbn.prove import Algebra
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

        >>> from symbn.model import BatchNorm
        >>> from symbn.prove import Algebra
        >>> bn = BatchNorm(2)
        >>> alg = Algebra(bn)
        >>> alg.real_somewhere(bn.x(1) - bn.x(2)), alg.real_somewhere(-bn.v() - bn.eps)
        (True, False)
        """
        model = self.model
        signs = Signs(model.positive, lambda s: model.nodes[s].definition
                      if s in model.nodes and s != model.f else None)
        expr = as_expr(expr)
        sign = signs.sign(expr)
        if sign in (radicals.POS, radicals.NONNEG):
            return True
        if sign in (radicals.NEG, radicals.NONPOS):
            return self.nonzero(expr, deadline) is False
        # then points free of the square forms (sqrt(1/2 - eps)), and wider ones
        # (sqrt(mu - 5), real only where the leaves are large)
        for seed in range(24):
            try:
                value = model.evaluate(expr, self._point(
                    random.Random(seed), [expr], squares=seed < 8 or seed >= 16,
                    scale=10 ** ((seed - 14) // 2) if seed >= 16 else 1))
            except ZeroDivisionError:
                continue
            if value.is_real and certainly_nonzero(value) and value > 0:
                return True
        return True if self.nonzero(expr, deadline) is False else None

    def jointly_defined(self, radicands: list, divisors: list = ()) -> bool:
        """Whether the radicands are all positive, and the divisors all nonzero, at one
        exact point (so on an open set): each radicand alone may be (sqrt(x[1] - x[2] - 1),
        sqrt(x[2] - x[1] - 1)) while together they never are, and a divisor that is not
        the zero function may still vanish wherever the roots are real (|x| + x where
        x <= 0).  Radicands >= 0 and divisors > 0 by proved signs (v + eps) need no point;
        False also means undecided (no point found among those tried).

        >>> from symbn.model import BatchNorm
        >>> from symbn.prove import Algebra
        >>> bn = BatchNorm(2)
        >>> x1, x2 = bn.x(1), bn.x(2)
        >>> alg = Algebra(bn)
        >>> alg.jointly_defined([x1 - x2 - 1, x2 - x1 - 1]), alg.jointly_defined([x1 - x2, x1])
        (False, True)
        """
        model = self.model
        signs = Signs(model.positive, lambda s: model.nodes[s].definition
                      if s in model.nodes and s != model.f else None)
        open_ = list(dict.fromkeys(e for e in radicands
                                   if signs.sign(e) not in (radicals.POS, radicals.NONNEG)))
        nonzero = list(dict.fromkeys(e for e in divisors
                                     if signs.sign(e) not in (radicals.POS, radicals.NEG)))
        if not open_ or len(open_) + len(nonzero) < 2:
            return True
        memo = self.__dict__.setdefault("_jointly", {})
        key = (tuple(open_), tuple(nonzero))
        if key not in memo:
            memo[key] = False
            for seed in range(64):  # of four kinds: roots of N leaves x[i] need all x > 0
                point = self._point(random.Random(seed), open_, squares=seed % 4 == 0,
                                    sign=(0, 0, 1, -1)[seed % 4])
                try:
                    values = [model.evaluate(e, point) for e in open_]
                    divided = [model.evaluate(e, point) for e in nonzero]
                except ZeroDivisionError:
                    continue
                if all(certainly_nonnegative(v) and certainly_nonzero(v) for v in values) \
                        and all(certainly_nonzero(v) for v in divided):
                    memo[key] = True
                    break
        return memo[key]

    def _point(self, rng: random.Random, hints: list = (), squares: bool = True,
               sign: int = 0, scale: int = 1) -> dict:
        """Small random integers (times `scale`) for every leaf (of one `sign` if it is 1
        or -1), each positive leaf p > 0 chosen where possible (`squares`) so that a
        radicand c*p + w(x) is a rational square (of `hints` first, then of the model's own
        radicals), so that its square root stays rational."""
        model = self.model
        low, high = {0: (-5, 5), 1: (1, 5), -1: (-5, -1)}[sign]
        point = {leaf: Fraction(rng.randint(low * scale, high * scale))
                 for leaf in model.leaves}
        forms = self._square_forms(hints) if squares else {}
        for p in [leaf for leaf in model.leaves if leaf in model.positive]:
            if p not in forms:
                point[p] = _positive(rng)
                continue
            c, w = forms[p]
            value = model.evaluate(w, {s: q for s, q in point.items() if s not in forms})
            if not value.is_Rational:  # w is free of the positive leaves, so this is rare
                point[p] = _positive(rng)
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
            if scale.is_positive is not True:  # also nan, from a 0/0 written in the claim
                continue
            for p in self.positive:
                if p in forms:
                    continue
                linear = [t for t in sp.Add.make_args(body) if p in self.model.support(t)]
                if len(linear) != 1:
                    continue
                c, rest = linear[0].as_coeff_Mul()
                w = sp.Add(*[t for t in sp.Add.make_args(body) if t is not linear[0]])
                if rest == p and c.is_positive and not self.model.support(w) & set(self.positive):
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


def _finite(value: sp.Expr) -> bool:
    """A real number: no symbol left, no zoo, nan, infinity or imaginary unit."""
    value = as_expr(value)
    return (not value.free_symbols and not value.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I)
            and value.is_real is not False)
