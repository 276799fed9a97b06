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


class _Instantiate:
    """Template -> model expression; D and P results are remembered per row assignment."""

    def __init__(self, bn: Graph):
        self.bn = bn
        self.memo: dict = {}
        # (template, instance) of every base raised to a negative power, in the order met:
        # SymPy cancels v/v to 1 as it builds the instance, so a side's definedness is
        # judged on these, not on the instance
        self.denominators: list[tuple[sp.Expr, sp.Expr]] = []
        self.radicands: list[tuple[sp.Expr, sp.Expr]] = []  # bases of square roots, likewise

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

    def run(self, e: sp.Expr, rows: dict) -> sp.Expr:
        bn = self.bn
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed) or e.is_Symbol:
            return self._name(e, rows)
        if isinstance(e, sp.Sum):  # SymPy merges nested sums into one with several limits
            scopes = [rows]
            for var, lower, upper in e.limits:
                hi = bn.n if upper == N else int(upper)
                scopes = [{**scope, var.name: r} for scope in scopes
                          for r in range(int(lower), hi + 1)]
            return sp.Add(*[self.run(e.function, scope) for scope in scopes])
        if isinstance(e, sp.KroneckerDelta):
            a, b = (self.row(arg, rows) for arg in e.args)
            return sp.Integer(int(a == b))
        if isinstance(e, (D, P)):
            key = (e, tuple(sorted(rows.items())))
            if key not in self.memo:
                from ..differentiate import local_partial, total_derivative
                rule = total_derivative if isinstance(e, D) else local_partial
                mark, root = len(self.denominators), len(self.radicands)
                value = rule(bn, self.run(e.args[0], rows), self.run(e.args[1], rows))
                self.memo[key] = (value, self.denominators[mark:], self.radicands[root:])
            else:
                self.denominators.extend(self.memo[key][1])
                self.radicands.extend(self.memo[key][2])
            return self.memo[key][0]
        if e.is_Add:
            return sp.Add(*[self.run(a, rows) for a in e.args])
        if e.is_Mul:
            return sp.Mul(*[self.run(a, rows) for a in e.args])
        if e.is_Pow:
            base = self.run(e.base, rows)
            if e.exp.is_negative:
                self.denominators.append((e.base, base))
            if e.exp.q == 2:
                self.radicands.append((e.base, base))
            return sp.Pow(base, e.exp)
        raise SymbnError(f"cannot instantiate {type(e).__name__}: {e}")

    def _name(self, e: sp.Expr, rows: dict) -> sp.Expr:
        """A name of a model file's vocabulary (`symbn.graph.Instance`)."""
        g = self.bn
        if isinstance(e, sp.Indexed):
            return g.symbol(str(e.base), self.row(e.indices[0], rows))
        if e == N:
            return sp.Integer(g.n)
        if e.name in INDEX:
            return sp.Integer(self.row(e, rows))
        if e.name == "f":
            return g.f
        if e.name in g.model.names:  # through run: its divisors and radicands are recorded
            return self.run(g.model.names[e.name].template, {})
        return g.symbol(e.name)
