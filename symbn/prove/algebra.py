"""Canonical forms: SymPy expressions into QQ(leaves, s) with FLINT, and the exact verdict.

One radical sqrt(p + w) is eliminated by p = s^2 - w, several by `symbn.prove.multiradical`;
why each rule is sound is the docstring of `symbn.prove`.

>>> from symbn.model import BatchNorm
>>> bn = BatchNorm(2)
>>> Algebra(bn).decide(bn.xhat(1), bn.xhat(2)).verdict
'disproved'
"""

from __future__ import annotations

import time

import flint
import sympy as sp

from ..model import as_expr
from . import multiradical
from .budget import Budget, Rang, _power
from .definedness import Definedness
from .interface import (
    DISPROVED,
    METHOD_EXACT,
    METHOD_RADICAL,
    METHOD_ROOTS,
    METHOD_SEPARATED,
    PROVED,
    UNKNOWN,
    Model,
    Outcome,
    _fmt,
    _Unsupported,
)
from .radicals import Signs, needs_rewrite, rewrite
from .rational import _degree, _Frac, _push, _total
from .separate import separating_point, separation
from .witness import Witnesses

MULTI = "multi"  # the conversion mode of several radicals (a wide Algebra, multiradical.py)


class Algebra(Definedness, Witnesses):
    """The field QQ(leaves, s) of one model, and conversion of SymPy expressions into it.

    `model` is any object of the `Model` protocol (see `symbn.prove`).

    >>> from symbn.model import BatchNorm
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
        except Rang:
            raise  # the caller's whole scope is over, not only this claim
        except Budget as err:
            return Outcome(UNKNOWN, "exact", note=str(err) or "time budget exhausted")
        except _Unsupported as err:
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

    def _decide_roots(self, lhs, rhs, diff: _Frac, roots, deadline, seed) -> Outcome:
        """The several-radicals verdict: proved on a nonempty domain, an exact certified
        witness, or unknown with the reason."""
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
