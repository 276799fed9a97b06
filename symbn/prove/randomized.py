"""The randomized method: exact values at random points, with a Schwartz-Zippel bound.

>>> from symbn.model import BatchNorm
>>> bn = BatchNorm(2)
>>> RandomTester(bn, points=2).decide(bn.xhat(1), -bn.xhat(2)).verdict
'probable'
"""

from __future__ import annotations

import math
import random
import time
from fractions import Fraction

import flint
import sympy as sp

from ..model import as_expr, symbols_of
from .interface import (
    DISPROVED,
    PROBABLE,
    UNKNOWN,
    Model,
    Outcome,
    _fmt,
    _OtherRoot,
    _Unsupported,
)

METHOD_RANDOM = "random points, exact"
_FROM_EXPR = object()  # default of RandomTester.degree_bound and sample: the radicand found


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

    >>> from symbn.model import BatchNorm
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
