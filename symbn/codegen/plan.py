"""BatchNorm's plan: the concrete-N closed form abstracted into a row-generic one, the
reductions and per-column values the code computes, and their proofs (N = 1..6 exactly, and
symbolic N by `symbn.general`).  See `symbn.codegen` for the whole story."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .. import closed_form
from ..errors import SymbnError
from ..model import BatchNorm
from ..prove import PROVED, Algebra

TARGETS = ("numpy", "numba")
PROOF_NS = tuple(range(1, 7))
# prime batch sizes larger than any coefficient: 1/N cannot be confused with other constants
_ABSTRACT_NS = (23, 29)
MAX_UNROLLED_N = 16

# per-element arrays (one value per row and column) and per-column values; Z = X - X[0]
X, DY, D, Z, XHAT, Y = sp.symbols("X dY D Z Xhat Y")
ELEMENTS = (X, DY, D, Z, XHAT, Y)
N = sp.Symbol("N", positive=True, integer=True)
_REF = BatchNorm(1)
GAMMA, BETA, EPS, MU, V = _REF.gamma(), _REF.beta(), _REF.eps, _REF.mu(), _REF.v()


class ColSum(sp.Function):
    """Sum over the batch axis of a per-element expression: one value per column.

    Linear: constants and per-column factors move outside, sums split.

    >>> ColSum(GAMMA * X / N + DY)
    ColSum(dY) + gamma*ColSum(X)/N
    """

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_Add:
            return sp.Add(*[cls(a) for a in arg.args])
        if not arg.has(*ELEMENTS):
            return N * arg
        if arg.is_Mul:
            const, rest = arg.as_independent(*ELEMENTS, as_Add=False)
            if const != 1:
                return const * cls(rest)
        return None


# ---------------------------------------------------------------------------------------
# from the concrete-N closed form to a row-generic one
# ---------------------------------------------------------------------------------------


def _row_table(bn: BatchNorm) -> dict:
    return {s: (el, i) for i in bn.rows()
            for el, s in ((X, bn.x(i)), (DY, bn.dy(i)), (XHAT, bn.xhat(i)), (Y, bn.y(i)))}


def generic(bn: BatchNorm, expr: sp.Expr, j: int = 1) -> sp.Expr:
    """The row-generic form of an expression about row j of an N-row model.

    >>> bn = BatchNorm(23)
    >>> generic(bn, bn.nodes[bn.mu()].definition)
    ColSum(X)/N
    """
    table, n = _row_table(bn), bn.n

    def rows_of(e):
        return {table[s][1] for s in e.free_symbols if s in table}

    def template(a, rs):
        return a.xreplace({s: el for s, (el, r) in table.items() if {r} == rs})

    def walk(e):
        if e.is_Add and n > 1:  # terms t(x_1, dy_1), ..., t(x_N, dy_N) form a sum over rows
            groups: dict = {}
            for a in e.args:
                rs = rows_of(a)
                key = template(a, rs) if len(rs) == 1 else a
                groups.setdefault(key, []).append((a, rs))
            out = []
            for key, members in groups.items():
                rows = [next(iter(rs)) for _, rs in members if len(rs) == 1]
                if sorted(rows) == list(bn.rows()):
                    out.append(ColSum(walk(key)))
                elif sorted(rows + [j]) == list(bn.rows()):
                    # SymPy merged the row-j term into a term of the result: sum over i != j
                    out.append(ColSum(walk(key)) - walk(key))
                else:
                    out += [walk(a) for a, _ in members]
            return sp.Add(*out)
        if e in table:
            el, r = table[e]
            if r != j:
                raise SymbnError(f"{e} appears outside a sum over the batch; the closed form "
                                 "is not row-generic, so it cannot be vectorised")
            return el
        if e.is_Integer:
            return N if e == n else e
        if e.is_Rational:
            p, q, k = e.p, e.q, 0
            while q % n == 0:
                q, k = q // n, k + 1
            if k == 1 and q == 1:  # p/N, or a + b/N after SymPy merged terms, as 1 - 1/N
                a = (p + n // 2) // n
                return a + sp.Integer(p - a * n) / N
            return sp.Rational(p, q) * N ** -k
        if not e.args:
            return e
        return e.func(*[walk(a) for a in e.args])

    return walk(sp.sympify(expr))


def _generic_model() -> dict:
    """Row-generic closed form and node definitions; the same at both abstraction sizes."""
    forms = []
    for n in _ABSTRACT_NS:
        bn = BatchNorm(n)
        forms.append({
            "dX": generic(bn, closed_form.dx(bn, 1)),
            "dgamma": generic(bn, closed_form.dgamma(bn)),
            "dbeta": generic(bn, closed_form.dbeta(bn)),
            MU: generic(bn, bn.nodes[bn.mu()].definition),
            V: generic(bn, bn.nodes[bn.v()].definition),
            XHAT: generic(bn, bn.nodes[bn.xhat(1)].definition),
            Y: generic(bn, bn.nodes[bn.y(1)].definition),
        })
    if forms[0] != forms[1]:
        bad = [k for k in forms[0] if forms[0][k] != forms[1][k]]
        raise SymbnError(f"the closed form for {bad[0]} does not have the same shape at "
                         f"N = {_ABSTRACT_NS[0]} and N = {_ABSTRACT_NS[1]}; cannot vectorise")
    return forms[0]


def _centred(expr: sp.Expr, model: dict) -> sp.Expr:
    """`expr` with the nodes xhat, y, v expanded and X written as D + mu."""
    nodes = {XHAT: model[XHAT], Y: model[Y], V: model[V]}
    for _ in range(4):
        expr = expr.xreplace(nodes)
    if expr.has(*nodes):
        raise SymbnError("node definitions are cyclic; cannot vectorise")
    centred = expr.xreplace({X: D + MU})
    if centred.has(MU):  # mu may cancel only after multiplying out, as in x*a - mu*a
        centred = sp.expand(centred)
    if centred.has(MU):
        raise SymbnError("the closed form uses mu other than through X - mu; the centred "
                         "two-pass plan cannot compute it")
    return centred


# ---------------------------------------------------------------------------------------
# the plan: reductions, per-column values, a per-element linear combination
# ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one generated function computes, in the order it computes it."""

    reductions: list[tuple[sp.Symbol, sp.Expr]]  # s_k = ColSum(summand)
    columns: list[tuple[sp.Symbol, sp.Expr]]     # per-column values, after CSE
    element: list[tuple[sp.Symbol, sp.Symbol]]   # (coefficient, array): sum of coef * array
    const: sp.Symbol | None                      # per-column term added to every row
    outputs: dict[str, sp.Expr]                  # name -> the row-generic form planned
    column_outputs: dict[str, sp.Symbol]         # per-column results (dgamma, dbeta)


def _plan(outputs: dict[str, sp.Expr], element_name: str) -> Plan:
    sums = sorted(set().union(*[e.atoms(ColSum) for e in outputs.values()]), key=sp.default_sort_key)
    names = {c: sp.Symbol(f"s{k}") for k, c in enumerate(sums)}
    if any(e.has(X) for e in outputs.values()):
        raise SymbnError("the closed form uses X other than through X - mu; the centred "
                         "two-pass plan cannot compute it")
    flat = {k: e.xreplace(names) for k, e in outputs.items()}
    main = flat[element_name]
    arrays = [a for a in (DY, D, Z) if main.has(a)]
    coefs, rest = [], main
    for a in arrays:
        coef = sp.diff(main, a)
        if coef.has(*ELEMENTS):
            raise SymbnError(f"{element_name} is not linear in {a}; cannot fuse it")
        coefs.append(coef)
        rest = rest.xreplace({a: 0})
    column_exprs = coefs + [rest] + [flat[k] for k in outputs if k != element_name]
    if any(e.has(*ELEMENTS) for e in column_exprs):
        raise SymbnError("a per-column value depends on a row; cannot vectorise")
    replacements, reduced = sp.cse(column_exprs, symbols=sp.numbered_symbols("t"),
                                   optimizations="basic")
    labels = [sp.Symbol(f"coef_{a}") for a in arrays] + [sp.Symbol("const")] + \
        [sp.Symbol(k) for k in outputs if k != element_name]
    columns = list(replacements) + list(zip(labels, reduced))
    const = labels[len(arrays)] if rest != 0 else None
    if const is None:
        columns = [(s, e) for s, e in columns if s != labels[len(arrays)]]
    return Plan([(names[c], c.args[0]) for c in sums], columns,
                list(zip(labels, arrays)), const, outputs,
                {k: sp.Symbol(k) for k in outputs if k != element_name})


def _shifted(expr: sp.Expr) -> sp.Expr:
    """`expr` with D written as Z - ColSum(Z)/N, Z = X - X[0], and every sum multiplied out,
    so all sums are of products of Z and dY: one pass over the data computes them all.

    >>> _shifted(ColSum(D**2))
    ColSum(Z**2) - ColSum(Z)**2/N
    """
    m = sp.Dummy("m")  # the shifted mean, a per-column value while the sums are expanded
    expanded = expr.replace(lambda e: isinstance(e, ColSum),
                            lambda e: ColSum(sp.expand(e.args[0].xreplace({D: Z - m}))))
    return expanded.xreplace({D: Z - m}).xreplace({m: ColSum(Z) / N})


def plans() -> dict[str, Plan]:
    """The backward and forward plans, from the closed form and the model's definitions;
    "fused" is the backward computed from one pass of shifted sums (the numba kernel's)."""
    model = _generic_model()
    backward = {k: _centred(model[k], model) for k in ("dX", "dgamma", "dbeta")}
    forward = {"Y": _centred(model[Y], model)}
    fused = {k: _shifted(e) for k, e in backward.items()}
    return {"backward": _plan(backward, "dX"), "forward": _plan(forward, "Y"),
            "fused": _plan(fused, "dX")}


# ---------------------------------------------------------------------------------------
# proofs: the plan, instantiated at concrete N, equals the closed form exactly
# ---------------------------------------------------------------------------------------


def instantiate(bn: BatchNorm, expr: sp.Expr, j: int) -> sp.Expr:
    """The row-generic `expr` at row j of `bn`, with D computed as the code computes it.

    >>> bn = BatchNorm(2)
    >>> instantiate(bn, D * DY, 2)
    dy[2]*(-x[1]/2 + x[2]/2)
    """
    shift = sp.Add(*[bn.x(k) - bn.x(1) for k in bn.rows()]) / bn.n

    def row(i):
        return {X: bn.x(i), DY: bn.dy(i), XHAT: bn.xhat(i), Y: bn.y(i),
                D: (bn.x(i) - bn.x(1)) - shift, Z: bn.x(i) - bn.x(1)}

    def walk(e, i):
        if isinstance(e, ColSum):
            return sp.Add(*[walk(e.args[0], k) for k in bn.rows()])
        if e in row(i):
            return row(i)[e]
        if e == N:
            return sp.Integer(bn.n)
        if e == MU:
            return bn.x(1) + shift
        if not e.args:
            return e
        return e.func(*[walk(a, i) for a in e.args])

    return walk(expr, j)


def _computed(plan: Plan, name: str) -> sp.Expr:
    """The row-generic expression the code computes for output `name`, CSE undone."""
    values: dict = dict(plan.reductions)
    values = {s: ColSum(e) for s, e in values.items()}
    for s, e in plan.columns:
        values[s] = e.xreplace(values)
    if name in plan.column_outputs:
        return values[plan.column_outputs[name]]
    total = sp.Add(*[values[c] * a for c, a in plan.element])
    return total + (values[plan.const] if plan.const is not None else 0)


def prove_plans(all_plans: dict[str, Plan], ns=PROOF_NS) -> list[str]:
    """Prove, for each N in `ns`, closed form = derivatives and plan = closed form, every row.

    Returns the lines the module header records; raises SymbnError on anything not proved.
    """
    from ..verify import verify

    for n in ns:
        report = verify(n)
        if not report.ok:
            bad = [r.id for r in report.results if r.verdict != PROVED]
            raise SymbnError(f"the closed form is not proved at N = {n} ({', '.join(bad)}); "
                             "refusing to generate code from it")
    forward = all_plans["forward"]
    backwards = [(label, all_plans[k]) for k, label in (("backward", ""), ("fused", "fused "))
                 if k in all_plans]
    for n in ns:
        bn = BatchNorm(n)
        alg = Algebra(bn)
        claims = []
        for label, backward in backwards:
            claims += [(f"{label}dX[{j}]", instantiate(bn, _computed(backward, "dX"), j),
                        closed_form.dx(bn, j)) for j in bn.rows()]
            claims += [(f"{label}dgamma", instantiate(bn, _computed(backward, "dgamma"), 1),
                        closed_form.dgamma(bn)),
                       (f"{label}dbeta", instantiate(bn, _computed(backward, "dbeta"), 1),
                        closed_form.dbeta(bn))]
        claims += [(f"Y[{j}]", instantiate(bn, _computed(forward, "Y"), j), bn.y(j))
                   for j in bn.rows()]
        if n == 1:  # the code's N = 1 branch returns these constants
            claims += [("dX[1] (N = 1)", sp.Integer(0), closed_form.dx(bn, 1)),
                       ("dgamma (N = 1)", sp.Integer(0), closed_form.dgamma(bn)),
                       ("dbeta (N = 1)", bn.dy(1), closed_form.dbeta(bn))]
        for label, lhs, rhs in claims:
            outcome = alg.decide(lhs, rhs)
            if outcome.verdict != PROVED:
                raise SymbnError(f"the generated {label} is {outcome.verdict} equal to the "
                                 f"closed form at N = {n}; refusing to write the code")
    return [
        (f"N = {ns[0]}..{ns[-1]}, symbn.prove.Algebra (eps = s^2 - v, canonical polynomials "
        "over QQ):"),
        "  closed form = forward mode = backward mode (symbn verify);",
        "  dX (every row j), dgamma, dbeta and Y above = closed form / model, with",
        "  D = (X - X[0]) - ColSum(X - X[0])/N as computed; N = 1: dX = 0, dgamma = 0, dbeta = dY",
        *(["  (and the fused dX, dgamma, dbeta from the shifted sums of Z = X - X[0])"]
          if "fused" in all_plans else []),
        *prove_plans_all_n(all_plans),
    ]


def to_symbolic_n(expr: sp.Expr, row: sp.Symbol) -> sp.Expr:
    """The row-generic `expr` in `symbn.general`'s language: sums over i = 1..N, x[row],
    and D computed on the shift row k, D_i = (x_i - x_k) - (1/N) sum_p (x_p - x_k).

    >>> from symbn import general as G
    >>> to_symbolic_n(ColSum(DY), G.j)
    Sum(dy[i], (i, 1, N))
    """
    from .. import general as G

    shift = sp.Sum(G.x[G.p] - G.x[G.k], (G.p, 1, G.N)) / G.N

    def walk(e, r):
        if isinstance(e, ColSum):
            return sp.Sum(walk(e.args[0], G.i), (G.i, 1, G.N))
        table = {X: G.x[r], DY: G.dy[r], D: (G.x[r] - G.x[G.k]) - shift, MU: G.x[G.k] + shift,
                 Z: G.x[r] - G.x[G.k], N: G.N}
        if e in table:
            return table[e]
        if not e.args:
            return e
        return e.func(*[walk(a, r) for a in e.args])

    return walk(expr, row)


def prove_plans_all_n(all_plans: dict[str, Plan]) -> list[str]:
    """The plan against the derivatives themselves (SymPy `diff` of the composed y_i) for
    symbolic N, by `symbn.general.decide`; header lines saying what was or was not proved."""
    from .. import general as G

    claims = []
    for key, label in (("backward", ""), ("fused", "fused ")):
        if key in all_plans:
            plan = all_plans[key]
            claims += [(f"{label}dX", _computed(plan, "dX"), G.forward_dx()),
                       (f"{label}dgamma", _computed(plan, "dgamma"), G.forward_param(G.gamma)),
                       (f"{label}dbeta", _computed(plan, "dbeta"), G.forward_param(G.beta))]
    claims.append(("Y", _computed(all_plans["forward"], "Y"), G.y(G.j)))
    conditions: set[str] = set()
    for name, plan, truth in claims:
        verdict, note, nz = G.decide(to_symbolic_n(plan, G.j), truth)
        if verdict != PROVED:
            return [f"for symbolic N, {name} is {verdict} ({note}): proved for the N above only"]
        conditions |= nz.conditions
    where = ", ".join(sorted(conditions | {"N >= 1", "1 <= k <= N"}))
    return ["every N, symbn.general (symbolic N, summation rules R1-R3, power sums):",
            "  dX, dgamma, dbeta, Y above = df/dx_j, df/dgamma, df/dbeta (SymPy diff of the",
            f"  composed model) and y_j, with the shift on any row k; where {where}"]
