"""The prover's interface: what it asks of a layer (`Model`) and what it returns (`Outcome`).

`_Unsupported` is raised where an expression leaves the fragment a method decides; the claim
is then `unknown` unless a point refutes it.

>>> Outcome(PROVED, METHOD_EXACT)
Outcome(verdict='proved', method='exact', witness=None, note='')
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import sympy as sp

PROVED, DISPROVED, UNKNOWN, PROBABLE = "proved", "disproved", "unknown", "probable"
CONSISTENT = "consistent"  # check-impl's floating-point agreement: never a proof (exit 3)
METHOD_EXACT = "exact"
METHOD_RADICAL = "exact, eps = s^2 - w"
METHOD_SEPARATED = "exact point, interval-certified"
METHOD_ROOTS = "exact, s_k^2 = r_k"


class Model(Protocol):
    """What the prover needs of a layer; see `symbn.prove`.  BatchNorm and the instances of
    symbn.graph provide it."""

    leaves: list
    positive: set
    dys: set
    nodes: dict
    f: sp.Symbol

    def compose(self, expr: sp.Expr) -> sp.Expr: ...

    def evaluate(self, expr: sp.Expr, point: dict) -> sp.Expr: ...

    def support(self, expr: sp.Expr) -> set: ...


@dataclass
class Outcome:
    """The verdict on one equation, with the witness of a disproof."""

    verdict: str
    method: str
    witness: dict | None = None
    note: str = ""


class _Unsupported(Exception):
    """The expression leaves the fragment the exact method decides."""


class _OtherRoot(_Unsupported):
    """A square root other than the one the degree bound was computed for."""


def _fmt(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"
