"""The degree bound: an upper bound on the polynomial degree a template can reach, so that a
file cannot ask for polynomials of astronomic size (`MAX_WEIGHT`).

>>> _Weight().of(SCALARS["v"] / (SCALARS["v"] + SCALARS["eps"]))
4
"""

from __future__ import annotations

import math

import sympy as sp

from ..errors import SymbnError
from .vocabulary import SCALARS, D, P, builtin_weights  # noqa: F401  (SCALARS: the example)


class _Weight:
    """An upper bound on the total degree of a link's numerator plus denominator, after
    clearing denominators; it keeps a file from asking for polynomials of astronomic size.

    Each expression weighs (n, d): its value is P/Q with deg P <= n, deg Q <= d, as by the
    fraction rules: a sum a/b + c/e is (a e + c b)/(b e), so it weighs (max(n1 + d2, n2 + d1),
    d1 + d2) and a sum of polynomials only its largest term; a product adds weights.  Leaves
    weigh (1, 0), nodes what their definition can reach (sqrt(v + eps) counted as degree 2);
    a derivative (n, d) -> (n + d + 2, 2 d + 2) (quotient rule, chain rule through the
    nodes).  A Sum whose terms divide by something depending on its index has up to N
    different denominators: per such index it weighs as a sum of `SUM_TERMS` of them.
    """

    SUM_TERMS = 8

    def __init__(self, table: dict[str, tuple[int, int]] | None = None):
        # the weights of leaves and nodes (`Model.weights`); BatchNorm's by default
        self.NODE = builtin_weights() if table is None else table

    def of(self, e: sp.Expr) -> int:
        n, d = self._of(e)
        return n + d

    def _of(self, e: sp.Expr) -> tuple[int, int]:
        if e.is_Number or isinstance(e, sp.KroneckerDelta):
            return (0, 0)
        if isinstance(e, sp.Indexed):
            return self.NODE[str(e.base)]
        if e.is_Symbol:
            return self.NODE.get(e.name, (0, 0))
        if isinstance(e, D):
            n, d = self._of(e.args[0])
            return (n + d + 2, 2 * d + 2)
        if isinstance(e, P):
            n, d = self._of(e.args[0])
            return (n + 2, d + 2)
        if isinstance(e, sp.Sum):
            n, d = self._of(e.function)
            divisors = set()
            for p in e.function.atoms(sp.Pow):
                if p.exp.is_negative:
                    divisors |= p.base.free_symbols
            for limit in e.limits:
                if limit[0] in divisors:
                    n, d = n + (self.SUM_TERMS - 1) * d, self.SUM_TERMS * d
            return (n, d)
        if e.is_Pow:
            n, d = self._of(e.base)
            k = max(1, math.ceil(abs(e.exp)))
            return (k * n, k * d) if e.exp > 0 else (k * d, k * n)
        if e.is_Mul:
            parts = [self._of(a) for a in e.args]
            return (sum(p[0] for p in parts), sum(p[1] for p in parts))
        if e.is_Add:
            n, d = self._of(e.args[0])
            for a in e.args[1:]:
                n2, d2 = self._of(a)
                n, d = max(n + d2, n2 + d), d + d2
            return (n, d)
        raise SymbnError(f"cannot weigh {type(e).__name__}")
