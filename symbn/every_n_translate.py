"""Derivation templates (symbn.derivation's names, D and P) as expressions of a model for
symbolic N: `translate` and the per-step `_Translate` that `symbn.every_n_steps` decides.

Each link is translated into an expression of `symbn.every_n.SymbolicModel`: the model's
nodes and names composed down to the leaves, every Sum over a fresh row (k'1, k'2, ...:
alpha-conversion by construction, so no derivative, substitution or `where` condition on a
free index reaches a bound one), free indices i, j, k as positive integer symbols (those a
`where i == j` equates are one symbol), D(a, leaf[j]) the SymPy `diff` of the composed a
(d x_p / d x_j = delta_pj), D(a, p) for a scalar leaf p likewise, D(f, w) the chain rule
sum_r dy_r d y_r / d w with f arbitrary, D(f, y[i]) = P(f, y[i]) = dy[i], and P(a, b) the
`diff` of a's template (its parents held as references, then composed) with respect to a
direct parent b; an edge that joins one row only (y[i] <- gamma[i]) needs b's row to be a's
row.  Anything else (a concrete row, a node or dy in a D, f outside D) raises `Unsupported`.

>>> from symbn.derivation import SCALARS
>>> translate(SCALARS["mu"])
Sum(x[k'1], (k'1, 1, N))/N
"""

from __future__ import annotations

from types import SimpleNamespace

import sympy as sp

from .derivation import Interpreter, N
from .every_n import SymbolicModel, load_model
from .general.normal import Unsupported
from .graph import INDEXED_KINDS, Model


def translate(template: sp.Expr, model: Model | str = "batchnorm") -> sp.Expr:
    """`template` (a derivation expression, indices i, j, k free) in `model` for symbolic N.

    As in the documents' figures, a local partial along a same-row edge taken across rows,
    P(xhat[i], x[j]), is the derivative with the Kronecker delta: 0 where there is no edge.
    """
    from .derivation import _free_indices

    step = SimpleNamespace(free_indices=_free_indices(template), conditions=())
    tr = _Translate(SymbolicModel(load_model(model)), step)
    tr.across_rows = True
    return tr.link(template)


class _Translate(Interpreter):
    """The links of one step as expressions of the symbolic-N model (see the module text):
    the symbolic back-end of `symbn.derivation.Interpreter`."""

    Error = Unsupported

    across_rows = False  # P(a[i], b[j]) of a same-row edge: refused unless where i == j

    def __init__(self, sm: SymbolicModel, step):
        super().__init__()
        self.sm, self.m = sm, sm.m
        names = sorted({str(a) for a in step.free_indices})
        self.rows = {name: sp.Symbol(name, integer=True, positive=True) for name in names}
        # the classes of `where`'s equalities (i == k and j == k: one class), each named by
        # its first symbol: a symbol to the one it was set equal to
        self.equal: dict[sp.Symbol, sp.Symbol] = {}
        self.distinct: set[frozenset] = set()
        for cond in step.conditions:
            a, b = sorted((self._class(self.rows[str(c)]) for c in cond.args), key=str)
            if isinstance(cond, sp.Eq):
                self.equal[b] = a
            else:
                self.distinct.add(frozenset((a, b)))
        self.rows = {n: self._class(r) for n, r in self.rows.items()}
        self.distinct = {frozenset(self.rows[str(s)] for s in pair) for pair in self.distinct}
        if any(len(pair) < 2 for pair in self.distinct):
            raise Unsupported("where makes two indices both equal and distinct: no row "
                              "assignment satisfies it")
        vocab = self.m.vocabulary()
        self.same_row = set(vocab.same_row)
        self.gradient = self.m.gradient
        self.scalar_leaves = {n for n, k in self.m.leaves.items() if k not in INDEXED_KINDS}
        self.indexed_leaves = {n for n, k in self.m.leaves.items() if k in INDEXED_KINDS}

    def _class(self, s: sp.Symbol) -> sp.Symbol:
        """The first symbol of s's class of equal rows."""
        while s in self.equal:
            s = self.equal[s]
        return s

    # -- templates ------------------------------------------------------------------------
    def link(self, e: sp.Expr) -> sp.Expr:
        self.denominators, self.radicands = [], []
        out = self.run(e, dict(self.rows))
        self.guard(out)
        return out

    def guard(self, e: sp.Expr) -> None:
        """Only leaves, dy, N and rows may remain: a node left as an indeterminate would let
        the canonical form treat a function of x as independent of x."""
        labels = set()
        for t in e.atoms(sp.Indexed):
            if str(t.base) not in self.indexed_leaves | {self.gradient}:
                raise Unsupported(f"{t} is not a leaf after translation")
            labels.add(t.base.label)
        for t in e.atoms(sp.Symbol):
            if t in labels or t == N or t.name in self.scalar_leaves or t.is_integer:
                continue
            raise Unsupported(f"{t} has no symbolic-N meaning here")

    def name(self, e: sp.Expr, env: dict) -> sp.Expr:
        if isinstance(e, sp.Indexed):
            name, row = str(e.base), self.row(e.indices[0], env)
            if name in self.m.nodes:
                return self.sm.element(name, row)
            if name in self.indexed_leaves or name == self.gradient:
                return sp.IndexedBase(name)[row]
            raise Unsupported(f"{e} has no symbolic-N meaning here")
        if e == N:
            return N
        if e.name in self.m.names:
            return self.template(self.m.names[e.name].template)
        if e.name in self.m.nodes and not self.m.nodes[e.name].element:
            return self.sm.set_node(e.name)
        if e.name in self.scalar_leaves:
            return sp.Symbol(e.name)
        raise Unsupported(f"{e} has no symbolic-N meaning here")

    def sum(self, e: sp.Sum, env: dict) -> sp.Expr:
        inner, limits = dict(env), []
        for var, lower, upper in e.limits:  # innermost first
            bound = self.sm.fresh()
            inner[var.name] = bound
            limits.append((bound, self.run(lower, env), self.run(upper, env)))
        out = self.run(e.function, inner)
        for limit in limits:
            out = sp.Sum(out, limit)
        return out

    def delta(self, a: sp.Symbol, b: sp.Symbol) -> sp.Expr:
        return sp.KroneckerDelta(a, b)

    def template(self, t: sp.Expr) -> sp.Expr:
        """A name's template (sigma), its divisors and radicands recorded as the step's."""
        out = self.sm.run(t, {})
        for p in out.atoms(sp.Pow):
            if p.exp.is_Rational and p.exp.is_negative:
                self.denominators.append((p.base, p.base))
            if p.exp.is_Rational and p.exp.q == 2:
                self.radicands.append((p.base, p.base))
        return out

    def row(self, e, env: dict) -> sp.Symbol:
        if e.is_Symbol and e.name in env:
            return env[e.name]
        raise Unsupported(f"row {e} is a concrete row, not an index: not an every-N claim")

    # -- D and P --------------------------------------------------------------------------
    def wrt(self, b: sp.Expr, env: dict) -> sp.Expr:
        if isinstance(b, sp.Indexed) and str(b.base) in self.indexed_leaves:
            return sp.IndexedBase(str(b.base))[self.row(b.indices[0], env)]
        if b.is_Symbol and b.name in self.scalar_leaves:
            return sp.Symbol(b.name)
        raise Unsupported(f"D(., {b}): only a leaf of the model is supported for symbolic N")

    def total(self, e: sp.Expr, env: dict) -> sp.Expr:
        a, b = e.args
        is_f = a.is_Symbol and a.name == "f"
        if isinstance(b, sp.Indexed) and str(b.base) == self.m.output:
            if is_f:
                return sp.IndexedBase(self.gradient)[self.row(b.indices[0], env)]
            raise Unsupported(f"D({a}, {b}): only D(f, {self.m.output}[i]) is defined")
        w = self.wrt(b, env)
        if is_f:  # chain rule through every output row, f arbitrary
            r = self.sm.fresh("r")
            return sp.Sum(sp.IndexedBase(self.gradient)[r]
                          * sp.diff(self.sm.element(self.m.output, r), w), (r, 1, N))
        inner = self.run(a, env)
        if any(str(t.base) == self.gradient for t in inner.atoms(sp.Indexed)):
            raise Unsupported(f"D({a}, {b}): {a} contains {self.gradient}, which depends on "
                              "the leaves through f")
        self.guard(inner)
        return sp.diff(inner, w)

    def partial(self, e: sp.Expr, env: dict) -> sp.Expr:
        child, parent = e.args
        cname = str(child.base) if isinstance(child, sp.Indexed) else str(child)
        pname = str(parent.base) if isinstance(parent, sp.Indexed) else str(parent)
        if cname not in [*self.m.nodes, "f"] or pname not in self.m.parents(cname):
            raise Unsupported(f"P({child}, {parent}): {pname} is not a direct parent of {cname}")
        crow = self.row(child.indices[0], env) if isinstance(child, sp.Indexed) else None
        prow = self.row(parent.indices[0], env) if isinstance(parent, sp.Indexed) else None
        if (crow is None) == self.sm.indexed(cname) or (prow is None) == self.sm.indexed(pname):
            raise Unsupported(f"P({child}, {parent}): a row is missing or extra")
        if cname == "f":
            return sp.IndexedBase(self.gradient)[prow]
        if (cname, pname) in self.same_row and crow != prow and not self.across_rows:
            raise Unsupported(f"P({child}, {parent}): {pname}[{prow}] is a direct parent of "
                              f"{cname}[{crow}] only when the rows are equal; say so in where")
        return self.sm.compose(self.sm.local(cname, pname, crow, prow))
