"""A model plan proved for every N: what the generated code computes, read back as symbolic-N
sums, equals the model's closed forms in `symbn.every_n`'s canonical form, and the closed
forms equal both modes of differentiation (`verify_every_n`).

The plan's row-generic expressions become symbolic-N ones: an array at "this element" is
leaf[r], RowSum(e) is Sum(e at a fresh row k, (k, 1, N)), and the centred D of the two-pass
plan is (x[r] - K) - Sum(x[k] - K, (k, 1, N))/N with the shift K an indeterminate.  The code
takes K = x[1]; an identity that holds for an indeterminate K holds at that value, so treating
K as free is a specialisation argument, sound in the direction used (zero stays zero).  One set
is modelled, as in `every_n`; along-leaf gradients are compared per set, the code summing the
sets' shares, which the concrete proofs check with two sets.

>>> from symbn.models import load
>>> from symbn.codegen.model_plan import model_plan
>>> prove_plan_every_n(model_plan(load("rmsnorm")))[0]
'every N >= 1 (symbolic N, canonical form over QQ; symbn verify --model rmsnorm --n all):'
"""

from __future__ import annotations

import sympy as sp

from ..derivation import N
from ..errors import SymbnError
from ..every_n import SymbolicModel, _definedness, decide, verify_every_n
from ..general.normal import NONZERO, Unsupported
from ..graph import INDEXED_KINDS
from ..prove import DISPROVED, PROVED
from .model_plan import Elem, ModelPlan, RowSum, computed

_K = sp.Symbol("K'")  # the shift of the two-pass centring


class _Back:
    """Row-generic plan expressions as symbolic-N sums over the model's leaves."""

    def __init__(self, plan: ModelPlan, sm: SymbolicModel):
        self.sm = sm
        self.arrays = {s: name for name, s in plan.symbols.items() if isinstance(s, Elem)}
        self.x = plan.centred

    def at(self, e: sp.Expr, row: sp.Symbol) -> sp.Expr:
        if isinstance(e, RowSum):
            k = self.sm.fresh()
            return sp.Sum(self.at(e.args[0], k), (k, 1, N))
        if isinstance(e, Elem):
            if e.name == "D" and self.x is not None:
                x, k = sp.IndexedBase(self.x), self.sm.fresh()
                return (x[row] - _K) - sp.Sum(x[k] - _K, (k, 1, N)) / N
            if e.name == "_E" and self.x is not None:  # the one-pass sums' x - K
                return sp.IndexedBase(self.x)[row] - _K
            if e not in self.arrays:
                raise Unsupported(f"the array {e} has no symbolic-N meaning")
            return sp.IndexedBase(self.arrays[e])[row]
        if not e.args:
            return e
        return e.func(*[self.at(a, row) for a in e.args])


def prove_plan_every_n(plan: ModelPlan, closed_forms: bool = True) -> list[str] | None:
    """Header lines saying what is proved for every N; None when the plan is outside the
    symbolic-N fragment (the header then says the concrete proofs are all there is).
    Raises SymbnError when a claim inside the fragment is not proved: no code is written.
    With closed_forms=False only the code's claims are proved (plan.max_n None when they
    hold for every N), not the closed forms against the modes of differentiation."""
    m = plan.model
    sm = SymbolicModel(m)
    scalars = [sp.Symbol(n) for n, k in sorted(m.leaves.items(), key=lambda t: t[1] != "positive")
               if k not in INDEXED_KINDS] + [_K]
    back = _Back(plan, sm)
    memo: dict = {}
    for name, kind in plan.kinds.items():
        try:
            code = back.at(computed(plan, name), sm.j)
            truth = sm.element(m.output, sm.j) if kind == "forward" else sm.closed(name)
            _, undefined = _definedness([code, truth], m, scalars, memo)
        except Unsupported:
            return None
        verdict, note, _ = decide(code, truth, scalars)
        if undefined is None and verdict != PROVED and not note.startswith(NONZERO):
            return None  # outside the fragment: the concrete proofs stand alone
        if undefined is not None or verdict != PROVED:
            label = m.output if kind == "forward" else f"d{name}"
            raise SymbnError(f"{m.name}: the generated {label} is not proved equal to the "
                             f"closed form for symbolic N ({undefined or note}); refusing to "
                             "write the code")
    if not closed_forms:
        plan.max_n = None
        return [f"every N >= {m.min_n}: the code's claims (the closed forms not proved again)"]
    report = verify_every_n(m)
    claims = [r for r in report.results if r.id.split("/")[1][1:] in plan.kinds]
    for r in claims:
        if r.verdict == DISPROVED or (r.verdict != PROVED and NONZERO in (r.note or "")):
            raise SymbnError(f"{m.name}: {r.id} is {r.verdict} for symbolic N; refusing to "
                             "write the code")
    missing = [r.id for r in claims if r.verdict != PROVED]
    grads = ", ".join(f"d{plan.symbols[k].name if plan.kinds[k] == 'element' else k}"
                      for k in plan.gradients)
    outside = f"; outside the symbolic fragment: {', '.join(missing)}" if missing else ""
    if missing:
        outside += f"; the functions refuse N > {plan.max_n}"
    else:
        plan.max_n = None
    return [
        (f"every N >= {m.min_n} (symbolic N, canonical form over QQ; symbn verify --model "
         f"{m.name} --n all):"),
        (f"  closed forms = forward mode = backward mode ({len(claims) - len(missing)} "
         f"claims{outside}), and"),
        (f"  {grads} and {m.output.upper()} as computed = the closed forms / the node "
         f"{m.output}, one set, the shift K free"),
    ]
