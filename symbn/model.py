"""The BatchNorm computation graph for a concrete batch size N and D columns.

Leaves are x[i,c], gamma[c], beta[c], eps and the upstream gradients dy[i,c] = df/dy[i,c].
Nodes are mu[c], v[c], xhat[i,c], y[i,c] and f; each node knows its direct parents and its
local definition in terms of them, as in the note's computation graph

    x -> mu,  x -> v,  mu -> v,  x -> xhat,  mu -> xhat,  v -> xhat,
    xhat -> y,  gamma -> y,  beta -> y,  y -> f.

sigma is a name for sqrt(v + eps), not a node, so d xhat/d v is a local partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from .errors import SymbnError


@dataclass(frozen=True)
class Node:
    """A graph node: its symbol, its direct parents and its definition in terms of them."""

    symbol: sp.Symbol
    parents: tuple[sp.Symbol, ...]
    definition: sp.Expr


class BatchNorm:
    """BatchNorm in training mode (biased variance, eps > 0) for an N x D batch.

    Indices are 1-based, as in the note.  For D = 1 the column index is dropped from names.

    >>> bn = BatchNorm(3)
    >>> bn.nodes[bn.mu()].definition
    x[1]/3 + x[2]/3 + x[3]/3
    >>> [str(p) for p in bn.nodes[bn.xhat(2)].parents]
    ['x[2]', 'mu', 'v']
    """

    def __init__(self, n: int, d: int = 1):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise SymbnError(f"N must be a positive integer, got {n!r}; try N = 4")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise SymbnError(f"D must be a positive integer, got {d!r}; try D = 1")
        self.n, self.d = n, d
        rows, cols = range(1, n + 1), range(1, d + 1)
        self.eps = sp.Symbol("eps")
        self._x = {(i, c): sp.Symbol(self._name("x", i, c)) for i in rows for c in cols}
        self._dy = {(i, c): sp.Symbol(self._name("dy", i, c)) for i in rows for c in cols}
        self._gamma = {c: sp.Symbol(self._name("gamma", None, c)) for c in cols}
        self._beta = {c: sp.Symbol(self._name("beta", None, c)) for c in cols}
        self._mu = {c: sp.Symbol(self._name("mu", None, c)) for c in cols}
        self._v = {c: sp.Symbol(self._name("v", None, c)) for c in cols}
        self._xhat = {(i, c): sp.Symbol(self._name("xhat", i, c)) for i in rows for c in cols}
        self._y = {(i, c): sp.Symbol(self._name("y", i, c)) for i in rows for c in cols}
        self.f = sp.Symbol("f")
        self.f_function = sp.Function("f")
        self.positive = {self.eps}  # leaves known > 0 (the prover's model protocol)
        self.dys = set(self._dy.values())  # the upstream gradients, independent leaves

        N = sp.Integer(n)
        nodes: dict[sp.Symbol, Node] = {}
        for c in cols:
            xs = tuple(self._x[i, c] for i in rows)
            mu, v = self._mu[c], self._v[c]
            nodes[mu] = Node(mu, xs, sp.Add(*xs) / N)
            nodes[v] = Node(v, xs + (mu,), sp.Add(*[(x - mu) ** 2 for x in xs]) / N)
            for i in rows:
                x, xh = self._x[i, c], self._xhat[i, c]
                nodes[xh] = Node(xh, (x, mu, v), (x - mu) * (v + self.eps) ** sp.Rational(-1, 2))
                y = self._y[i, c]
                nodes[y] = Node(y, (xh, self._gamma[c], self._beta[c]),
                                self._gamma[c] * xh + self._beta[c])
        ys = tuple(self._y[i, c] for i in rows for c in cols)
        nodes[self.f] = Node(self.f, ys, self.f_function(*ys))
        self.nodes = nodes
        self._composed: dict[sp.Symbol, sp.Expr] = {}
        self._composed_keeping: dict[frozenset, dict] = {}
        self._children: dict | None = None
        self.cache: dict = {}  # per-model memo of derived quantities (local partials)

    def _name(self, base: str, i: int | None, c: int) -> str:
        idx = [str(k) for k in (i, c if self.d > 1 else None) if k is not None]
        return f"{base}[{','.join(idx)}]" if idx else base

    # -- naming -------------------------------------------------------------------------
    def x(self, i: int, c: int = 1) -> sp.Symbol:
        return self._x[i, c]

    def dy(self, i: int, c: int = 1) -> sp.Symbol:
        return self._dy[i, c]

    def gamma(self, c: int = 1) -> sp.Symbol:
        return self._gamma[c]

    def beta(self, c: int = 1) -> sp.Symbol:
        return self._beta[c]

    def mu(self, c: int = 1) -> sp.Symbol:
        return self._mu[c]

    def v(self, c: int = 1) -> sp.Symbol:
        return self._v[c]

    def xhat(self, i: int, c: int = 1) -> sp.Symbol:
        return self._xhat[i, c]

    def y(self, i: int, c: int = 1) -> sp.Symbol:
        return self._y[i, c]

    def sigma(self, c: int = 1) -> sp.Expr:
        """sigma = sqrt(v + eps), an expression in the node v (not a node itself)."""
        return sp.sqrt(self._v[c] + self.eps)

    @property
    def leaves(self) -> list[sp.Symbol]:
        """Independent variables: x, dy, gamma, beta, eps."""
        return [*self._x.values(), *self._dy.values(), *self._gamma.values(),
                *self._beta.values(), self.eps]

    def rows(self) -> range:
        return range(1, self.n + 1)

    def columns(self) -> range:
        return range(1, self.d + 1)

    # -- the graph ----------------------------------------------------------------------
    def children(self, symbol: sp.Symbol) -> list[sp.Symbol]:
        """Nodes having `symbol` as a direct parent, in definition order."""
        if self._children is None:
            self._children = {}
            for s, node in self.nodes.items():
                for p in node.parents:
                    self._children.setdefault(p, []).append(s)
        return list(self._children.get(symbol, []))

    def descendants(self, symbol: sp.Symbol) -> set:
        """Every node reachable from `symbol` along the graph's edges (its dependents)."""
        seen, stack = set(), [symbol]
        while stack:
            for c in self.children(stack.pop()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    def compose(self, expr: sp.Expr, keep: frozenset = frozenset()) -> sp.Expr:
        """`expr` with every node (except those in `keep`) replaced by its composed definition.

        Composition keeps sharing: the composed mu is one object inside every x_i - mu, and no
        sum is flattened into its neighbours, so the composed graph stays of size O(N) where the
        flattened tree would have O(N^2) terms.

        >>> bn = BatchNorm(2)
        >>> bn.compose(bn.mu())
        x[1]/2 + x[2]/2
        >>> mu = bn.compose(bn.mu())
        >>> sum(e == mu for e in sp.preorder_traversal(bn.compose(bn.v())))  # mu kept whole
        2
        """
        expr = as_expr(expr)
        if keep:
            mapping = self._composed_keeping.get(keep)
            if mapping is None:  # the nodes never change: compose them once per `keep`
                mapping = self._composed_keeping[keep] = {}
                for s in self.nodes:
                    if s not in keep:
                        mapping[s] = rebuild(self.nodes[s].definition, mapping, {})
            return rebuild(expr, mapping, {})
        if len(self._composed) < len(self.nodes) - 1:
            for s in self.nodes:  # dict order is topological: parents are composed first
                if s not in self._composed and s != self.f:
                    self._composed[s] = rebuild(self.nodes[s].definition, self._composed, {})
        mapping = dict(self._composed)
        if self.f not in self._composed:
            mapping[self.f] = self.nodes[self.f].definition
        return rebuild(expr, mapping, {})

    def evaluate(self, expr: sp.Expr, point: dict[sp.Symbol, Fraction]) -> sp.Expr:
        """Exact value of `expr` at a point giving every leaf it needs, nodes computed in order.

        Independent of the prover: plain SymPy arithmetic on Rationals.

        >>> bn = BatchNorm(2)
        >>> pt = {bn.x(1): Fraction(1), bn.x(2): Fraction(3), bn.eps: Fraction(3)}
        >>> bn.evaluate(bn.xhat(2), pt)
        1/2
        """
        values = {s: sp.Rational(q.numerator, q.denominator) for s, q in point.items()}
        needed = self.support(expr)
        for s, node in self.nodes.items():  # dict order is a topological order
            if s in needed and s != self.f:
                values[s] = node.definition.xreplace(values)
        return rebuild(as_expr(expr), values, {}, evaluate=True)

    def support(self, expr: sp.Expr) -> set:
        """Every symbol `expr` depends on, through node definitions: nodes and leaves.

        >>> sorted(map(str, BatchNorm(1).support(BatchNorm(1).xhat(1))))
        ['eps', 'mu', 'v', 'x[1]', 'xhat[1]']
        """
        seen, stack = set(), list(symbols_of(as_expr(expr)))
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            if s in self.nodes:
                stack.extend(symbols_of(self.nodes[s].definition))
        return seen


def rebuild(expr: sp.Expr, mapping: dict, memo: dict, evaluate: bool = False) -> sp.Expr:
    """`expr` with the symbols of `mapping` replaced, visiting each shared subexpression once.

    Unlike `xreplace`, the work is proportional to the expression graph, not to its tree, and
    with `evaluate=False` nothing is flattened, so shared subexpressions stay shared.

    >>> a, b = sp.symbols("a b")
    >>> rebuild(2 * (a + b), {a: b}, {}, evaluate=True)
    4*b
    """
    hit = memo.get(id(expr))
    if hit is not None:
        return hit[1]
    if expr.is_Symbol:
        out = mapping.get(expr, expr)
    elif not expr.args:
        out = expr
    else:
        args = [rebuild(a, mapping, memo, evaluate) for a in expr.args]
        if all(a is b for a, b in zip(args, expr.args)):
            out = expr
        elif evaluate:
            out = expr.func(*args)
        else:
            try:
                out = expr.func(*args, evaluate=False)
            except TypeError:  # a class without an `evaluate` switch
                out = expr.func(*args)
    memo[id(expr)] = (expr, out)  # the key object is kept alive so its id stays unique
    return out


def symbols_of(expr: sp.Expr) -> set:
    """The free symbols of `expr`, visiting each shared subexpression once.

    >>> sorted(map(str, symbols_of(sp.Symbol("a") * sp.Symbol("b") + 1)))
    ['a', 'b']
    """
    found, seen, stack = set(), set(), [expr]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if e.is_Symbol:
            found.add(e)
        else:
            stack.extend(e.args)
    return found


def as_expr(value) -> sp.Basic:
    """`value` as a SymPy object without parsing anything: SymPy objects pass through and
    Python integers and Fractions become exact Rationals; anything else is refused.

    >>> as_expr(3) + as_expr(Fraction(1, 2))
    7/2
    """
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, (int, Fraction)) and not isinstance(value, bool):
        return sp.Rational(value.numerator, value.denominator)
    raise TypeError(f"expected a SymPy expression or an exact number, got {type(value).__name__}")
