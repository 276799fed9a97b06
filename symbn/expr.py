"""Expression helpers shared by the graphs and the provers: nodes, sharing-aware rebuilding.

SymPy expressions built from a graph share subexpressions; the helpers here visit each shared
subexpression once, so their work follows the expression graph rather than its tree.

>>> a, b = sp.symbols("a b")
>>> sorted(map(str, symbols_of(rebuild(a * b, {b: a + 1}, {}))))
['a']
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from . import sympy_fix  # noqa: F401  (installs the guard)

__all__ = ["Node", "as_expr", "rebuild", "symbols_of"]


@dataclass(frozen=True)
class Node:
    """A graph node: its symbol, its direct parents and its definition in terms of them."""

    symbol: sp.Symbol
    parents: tuple[sp.Symbol, ...]
    definition: sp.Expr


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
