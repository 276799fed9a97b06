"""Templates into a concrete model: `instantiate` expands sums over 1..N, D into
`total_derivative` and P into `local_partial` of a `BatchNorm` or a model file's `Instance`.

>>> from symbn.model import BatchNorm
>>> instantiate(SCALARS["mu"] * N, BatchNorm(2), {})
2*mu
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from ..errors import SymbnError
from .vocabulary import INDEX, INDEXED, SCALARS, D, N, P  # noqa: F401  (examples)

if TYPE_CHECKING:
    from ..graph import Graph


def instantiate(expr: sp.Expr, bn: Graph, assignment: dict) -> sp.Expr:
    """The template `expr` as an expression of the concrete model `bn`.

    `assignment` maps each free index (a Symbol in `INDEX`, or its name) to a row 1..N.
    Sums are expanded over 1..N, D becomes `total_derivative`, P `local_partial` (a P
    whose second argument is not a direct parent of the first raises `SymbnError` naming
    the node's parents), sigma = sqrt(v + eps) and dy[i] the leaf df/dy_i.

    >>> from symbn.model import BatchNorm
    >>> x, j = INDEXED["x"], INDEX["j"]
    >>> instantiate(sp.Sum(x[j], (j, 1, N)), BatchNorm(3), {})
    x[1] + x[2] + x[3]
    """
    rows = {}
    for key, value in assignment.items():
        name = str(key)
        if name not in INDEX:
            raise SymbnError(f"{name} is not an index name; use i, j or k")
        rows[name] = int(value)
    return _Instantiate(bn).run(expr, rows)


class Interpreter:
    """One walk over a derivation template with two back-ends: `_Instantiate` (a concrete N,
    sums expanded over 1..N) and `symbn.every_n_translate._Translate` (N a symbol, sums kept
    over fresh rows).  A back-end says what a name, a Sum, a row, D and P mean; the walk
    records the base of every negative and half-integer power as written, because SymPy
    cancels v/v to 1 as it builds the result and definedness is judged on these."""

    Error: type[Exception] = SymbnError

    def __init__(self):
        self.denominators: list[tuple[sp.Expr, sp.Expr]] = []  # (template, interpreted)
        self.radicands: list[tuple[sp.Expr, sp.Expr]] = []

    def run(self, e: sp.Expr, env: dict) -> sp.Expr:
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed) or e.is_Symbol:
            return self.name(e, env)
        if isinstance(e, sp.Sum):  # SymPy merges nested sums into one with several limits
            return self.sum(e, env)
        if isinstance(e, sp.KroneckerDelta):
            return self.delta(*(self.row(arg, env) for arg in e.args))
        if isinstance(e, D):
            return self.total(e, env)
        if isinstance(e, P):
            return self.partial(e, env)
        if e.is_Add or e.is_Mul:
            return e.func(*[self.run(a, env) for a in e.args])
        if e.is_Pow:
            if not e.exp.is_Rational:
                raise self.Error(f"a power other than rational: {e}")
            base = self.run(e.base, env)
            if e.exp.is_negative:
                self.denominators.append((e.base, base))
            if e.exp.q == 2:
                self.radicands.append((e.base, base))
            return sp.Pow(base, e.exp)
        raise self.Error(f"cannot interpret {type(e).__name__}: {e}")

    # the back-end's meanings
    def name(self, e: sp.Expr, env: dict) -> sp.Expr:
        raise NotImplementedError

    def sum(self, e: sp.Sum, env: dict) -> sp.Expr:
        raise NotImplementedError

    def row(self, e: sp.Expr, env: dict):
        raise NotImplementedError

    def delta(self, a, b) -> sp.Expr:
        raise NotImplementedError

    def total(self, e: D, env: dict) -> sp.Expr:
        raise NotImplementedError

    def partial(self, e: P, env: dict) -> sp.Expr:
        raise NotImplementedError


class _Instantiate(Interpreter):
    """Template -> model expression; D and P results are remembered per row assignment."""

    def __init__(self, bn: Graph):
        super().__init__()
        self.bn = bn
        self.memo: dict = {}
        self.mentioned: list[sp.Symbol] = []  # the nodes named, even where SymPy cancels them

    def row(self, e: sp.Expr, rows: dict) -> int:
        if e.is_Integer:
            r = int(e)
        elif e.is_Symbol and e.name in rows:
            r = rows[e.name]
        else:
            raise SymbnError(f"index {e} has no value; give it one (1..N) or bind it by a Sum")
        if not 1 <= r <= self.bn.n:
            raise SymbnError(f"row {r} is outside 1..N = {self.bn.n}")
        return r

    def sum(self, e: sp.Sum, rows: dict) -> sp.Expr:
        scopes = [rows]
        for var, lower, upper in e.limits:
            hi = self.bn.n if upper == N else int(upper)
            scopes = [{**scope, var.name: r} for scope in scopes
                      for r in range(int(lower), hi + 1)]
        return sp.Add(*[self.run(e.function, scope) for scope in scopes])

    def delta(self, a: int, b: int) -> sp.Expr:
        return sp.Integer(int(a == b))

    def total(self, e: D, rows: dict) -> sp.Expr:
        return self._derivative(e, rows)

    def partial(self, e: P, rows: dict) -> sp.Expr:
        return self._derivative(e, rows)

    def _derivative(self, e, rows: dict) -> sp.Expr:
        key = (e, tuple(sorted(rows.items())))
        if key not in self.memo:
            from ..differentiate import local_partial, total_derivative
            rule = total_derivative if isinstance(e, D) else local_partial
            mark, root = len(self.denominators), len(self.radicands)
            target = self.run(e.args[0], rows)
            value = rule(self.bn, target, self.run(e.args[1], rows))
            if hasattr(self.bn, "conditions_of"):  # the nodes differentiated through
                divisors, radicands = self.bn.conditions_of(target)
                self.denominators.extend(divisors)
                self.radicands.extend(radicands)
            self.memo[key] = (value, self.denominators[mark:], self.radicands[root:])
        else:
            self.denominators.extend(self.memo[key][1])
            self.radicands.extend(self.memo[key][2])
        return self.memo[key][0]

    def name(self, e: sp.Expr, rows: dict) -> sp.Expr:
        """A name of a model file's vocabulary (`symbn.graph.Instance`)."""
        g = self.bn
        if isinstance(e, sp.Indexed):
            symbol = g.symbol(str(e.base), self.row(e.indices[0], rows))
            self.mentioned.append(symbol)
            return symbol
        if e == N:
            return sp.Integer(g.n)
        if e.name in INDEX:
            return sp.Integer(self.row(e, rows))
        if e.name == "f":
            return g.f
        if e.name in g.model.names:  # through run: its divisors and radicands are recorded
            return self.run(g.model.names[e.name].template, {})
        symbol = g.symbol(e.name)
        self.mentioned.append(symbol)
        return symbol
