"""A model's plan as linear combinations: each output an element-wise sum of per-set
coefficients times monomials of the element arrays, each reduction a sum of one monomial.

    dX = t3*dY*gamma + t4*D + t5        (layernorm; t3, t4, t5 one value per set)

The vectorised NumPy and numba targets compute this form: the coefficients once per set (in
float64), then one pass over the elements in the input dtype.  It is a `ModelPlan` like
`model_plan`'s, so `prove_model_plan` proves exactly these expressions equal to the model's
closed forms; a plan whose outputs are not polynomials in the element arrays (tanh(X), ...)
has no linear form (None) and is emitted as written.

>>> from symbn.models import load
>>> from .model_plan import model_plan
>>> lp = linear_plan(model_plan(load("rmsnorm")))
>>> [(str(c), f) for c, f in lp.terms["x"]]
[('t2', ('dY', 'gamma')), ('t3', ('X',))]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from .model_plan import Elem, ModelPlan
from .plan import N

Factors = tuple[str, ...]  # the element arrays of a monomial, with repetition, sorted


@dataclass
class LinearPlan:
    """`plan` with every output written Σ coefficient * monomial (`terms`, per output key:
    (coefficient: a symbol of plan.backward / plan.forward or a number, factors))."""

    plan: ModelPlan
    terms: dict[str, list[tuple[sp.Expr, Factors]]]
    sums: list[tuple[sp.Symbol, Factors]]  # s_k = RowSum(product of factors)


def monomial(e: sp.Expr) -> Factors | None:
    """The factors of a product of positive integer powers of element arrays; () for 1.

    >>> monomial(Elem("D")**2 * Elem("dY"))
    ('D', 'D', 'dY')
    """
    factors: list[str] = []
    for f in sp.Mul.make_args(e):
        if f == 1:
            continue
        base, k = f.as_base_exp()
        if not (isinstance(base, Elem) and k.is_Integer and k > 0):
            return None
        factors += [base.name] * int(k)
    return tuple(sorted(factors, key=_order))


def _split(expr: sp.Expr) -> dict[Factors, sp.Expr] | None:
    """{monomial: coefficient} of an expression, or None if it is not of that form; the
    coefficients keep their factors as written (denominators are not multiplied out)."""
    if not expr.atoms(Elem):
        return {(): expr}
    if isinstance(expr, Elem):
        return {(expr.name,): sp.Integer(1)}
    if expr.is_Add:
        out: dict[Factors, sp.Expr] = {}
        for a in expr.args:
            part = _split(a)
            if part is None:
                return None
            for f, c in part.items():
                out[f] = out.get(f, sp.Integer(0)) + c
        return {f: c for f, c in out.items() if c != 0}
    if expr.is_Mul or (expr.is_Pow and expr.exp.is_Integer and expr.exp > 0):
        factors = expr.args if expr.is_Mul else [expr.base] * int(expr.exp)
        out = {(): sp.Integer(1)}
        for a in factors:
            part = _split(a)
            if part is None:
                return None
            nxt: dict[Factors, sp.Expr] = {}
            for f1, c1 in out.items():
                for f2, c2 in part.items():
                    f = tuple(sorted(f1 + f2, key=_order))
                    nxt[f] = nxt.get(f, sp.Integer(0)) + c1 * c2
            out = nxt
        return {f: c for f, c in out.items() if c != 0}
    return None


def _order(name: str) -> tuple:
    return (name.lower(), name)


def _resolved(assignments) -> dict:
    values: dict = {}
    for s, e in assignments:
        values[s] = e.xreplace(values)
    return values


def linear_plan(plan: ModelPlan) -> LinearPlan | None:
    """The linear form of `plan` (same reductions, new coefficients), or None.

    >>> from symbn.models import load
    >>> from .model_plan import model_plan
    >>> linear_plan(model_plan(load("layernorm"))).terms["beta"]
    [(1, ('dY',))]
    """
    elems = {s.name: s for s in plan.symbols.values() if isinstance(s, Elem)}
    elems["D"] = Elem("D")
    sums, split_sums = [], []  # a sum of a polynomial: the sums of its monomials
    count = len(plan.reductions)
    for s, e in plan.reductions:
        factors = monomial(e)
        if factors:
            sums.append((s, factors))
            continue
        parts = _split(e)
        if not parts or () in parts:
            return None
        terms_of_s = []
        for f, c in parts.items():
            new = sp.Symbol(f"s{count}")
            count += 1
            sums.append((new, f))
            terms_of_s.append(c * new)
        split_sums.append((s, sp.Add(*terms_of_s)))
    terms: dict[str, list[tuple[sp.Expr, Factors]]] = {}
    outputs: dict[str, sp.Expr] = {}
    assigned: dict[str, list] = {}
    for which, prefix, keys in (("backward", "t", plan.gradients),
                                ("forward", "u", [k for k in plan.kinds
                                                  if plan.kinds[k] == "forward"])):
        values = _resolved(getattr(plan, which))
        split = {}
        for k in keys:
            found = _split(plan.outputs[k].xreplace(values))
            if found is None:
                return None
            split[k] = found
        flat = [(k, f, c) for k in keys for f, c in split[k].items()]
        reps, reduced = sp.cse([c for _, _, c in flat], symbols=sp.numbered_symbols(prefix),
                               optimizations="basic")
        names = sp.numbered_symbols(prefix, start=len(reps))
        lines = list(reps)
        for k in keys:
            terms[k] = []
        for (k, f, _), c in zip(flat, reduced):
            if not c.is_Number and not c.is_Symbol:
                sym = next(names)
                lines.append((sym, c))
                c = sym
            terms[k].append((c, f))
        for k in keys:
            outputs[k] = sp.Add(*[c * sp.Mul(*[elems[n] for n in f]) for c, f in terms[k]])
        assigned[which] = lines
    reductions = [(s, sp.Mul(*[elems[n] for n in f])) for s, f in sums]
    new = replace(plan, reductions=reductions, backward=split_sums + assigned["backward"],
                  forward=split_sums + assigned["forward"], outputs=outputs)
    return LinearPlan(new, terms, sums)


SHIFTED = Elem("_E")  # x - K, the element leaf on the shift (exact), before the mean is known
MEAN = sp.Symbol("_m")  # RowSum(_E)/N: the mean of x - K, so that D = _E - _m


@dataclass
class OnePass:
    """A centred linear plan's sums taken in one pass over the row, on the shift: each
    RowSum(D**a * M) written Σ_b binomial(a, b) (-_m)**(a - b) RowSum(_E**b * M), with
    _m = RowSum(_E)/N, so that the sums need neither the mean nor a second pass first.

    `lp` is the rewritten plan (its reductions the _E sums, its assignments _m, then the
    original sums, then the coefficients), proved like any plan; `first`, `square` name
    the sums of _E and _E**2 (always computed: the mean, and the cancellation test).
    """

    lp: LinearPlan
    first: sp.Symbol
    square: sp.Symbol


def one_pass(lp: LinearPlan) -> OnePass | None:
    """The one-pass form of a centred plan, or None when the plan has no centring.

    >>> from symbn.models import load
    >>> from .model_plan import model_plan
    >>> op = one_pass(linear_plan(model_plan(load("layernorm"))))
    >>> [(str(s), f) for s, f in op.lp.sums]
    [('e0', ('_E',)), ('e1', ('_E', '_E')), ('e2', ('dY', 'gamma')), ('e3', ('_E', 'dY', 'gamma'))]
    >>> op.lp.plan.backward[:3]
    [(_m, e0/N), (s0, -N*_m**2 + e1), (s1, e2)]
    """
    plan = lp.plan
    if plan.centred is None:
        return None
    names: dict[Factors, sp.Symbol] = {}

    def total(f: Factors) -> sp.Expr:
        if not f:
            return N
        if f == ("_E",) and names:  # RowSum(_E) = N*_m: RowSum(D**2) = e1 - N*_m**2
            return N * MEAN
        f = tuple(sorted(f, key=_order))
        if f not in names:
            names[f] = sp.Symbol(f"e{len(names)}")
        return names[f]

    first, square = total(("_E",)), total(("_E", "_E"))
    sums = []
    for s, f in lp.sums:
        a, rest = f.count("D"), tuple(n for n in f if n != "D")
        sums.append((s, sp.Add(*[sp.binomial(a, b) * (-MEAN) ** (a - b)
                                 * total(("_E",) * b + rest) for b in range(a + 1)])))
    head = [(MEAN, first / N), *sums]
    new_sums = [(s, f) for f, s in names.items()]
    elems = {s.name: s for s in plan.symbols.values() if isinstance(s, Elem)}
    elems["_E"] = SHIFTED
    reductions = [(s, sp.Mul(*[elems[n] for n in f])) for s, f in new_sums]
    new = replace(plan, reductions=reductions, backward=head + plan.backward,
                  forward=head + plan.forward)
    return OnePass(LinearPlan(new, lp.terms, new_sums), first, square)
