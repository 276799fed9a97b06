"""Numeric code from the proved closed form: a vectorised NumPy module, fused numba loops, or
unrolled concrete-N functions.

The vectorised module is planned from `closed_form` itself.  The closed form at a concrete N
(N = 23 and N = 29, which must agree) is abstracted into a row-generic form: a sum of N row
terms becomes `ColSum(term)` (a reduction over the batch axis), the row j of the result
becomes the arrays X, dY, and 1/N becomes a symbol N.  For accuracy the code then works with
the centred array D = X - mu, computed in two passes on a shifted copy,

    K = X[0],   m = ColSum(X - K)/N,   D = (X - K) - m,

because X - K is exact when the rows are close (Sterbenz) and the mean is then taken of small
numbers.  The numba backward instead writes D = Z - ColSum(Z)/N with Z = X - K and multiplies
the sums out, so that ColSum(Z), ColSum(Z**2), ColSum(dY), ColSum(Z*dY) are all taken in one
pass over the data (the "fused" plan, proved like the others).  Every expression the module computes — dX as a linear combination of dY and D with
per-column coefficients, dgamma, dbeta and the forward Y — is instantiated back at N = 1..6
and proved equal to the closed form (and the closed form to both derivatives, by `verify`)
with the exact `Algebra`, in the same run that writes the code; the same expressions for
symbolic N are proved equal to the derivatives themselves by `symbn.general`.  The module
header records both.

>>> source = generate("numpy")
>>> "import numpy" in source and "sympy" not in source.split('\"\"\"', 2)[2]
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from . import closed_form, io
from .errors import SymbnError
from .model import BatchNorm
from .prove import PROVED, Algebra

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
    from .verify import verify

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
    from . import general as G

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
    from . import general as G

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


# ---------------------------------------------------------------------------------------
# printers
# ---------------------------------------------------------------------------------------


class BatchPrinter(NumPyPrinter):
    """NumPy printer that prints a column reduction as a sum over axis 0.

    >>> BatchPrinter().doprint(ColSum(D * DY))
    "numpy.einsum('ij,ij->j', D, dY)"
    """

    def _print_ColSum(self, expr: ColSum) -> str:
        arg = expr.args[0]
        if arg.is_Symbol:
            return f"{self._print(arg)}.sum(axis=0)"
        factors = arg.args if arg.is_Mul else (arg.base, arg.base) \
            if arg.is_Pow and arg.exp == 2 else ()
        if len(factors) == 2 and all(f.is_Symbol for f in factors):
            return "numpy.einsum('ij,ij->j', {}, {})".format(*map(self._print, factors))
        return f"numpy.sum({self._print(arg)}, axis=0)"


class ScalarPrinter(PythonCodePrinter):
    """Scalar Python (`math`) printer for the bodies of fused loops.

    >>> ScalarPrinter().doprint(GAMMA / sp.sqrt(EPS + V))
    'gamma/math.sqrt(eps + v)'
    """


# ---------------------------------------------------------------------------------------
# module text
# ---------------------------------------------------------------------------------------

_CHECKS = '''

def _as_float(name, a, ndim, shape=None, like=""):
    a = numpy.asarray(a)
    if a.ndim != ndim:
        want = "a 2-d array of shape (N, D)" if ndim == 2 else "a 1-d array of shape (D,)"
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} to match {like}")
    if a.dtype not in (numpy.float32, numpy.float64):
        raise ValueError(f"{name} has dtype {a.dtype}; use float32 or float64")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); N and D must be at least 1")
    return a


def _check_eps(eps):
    if not isinstance(eps, (int, float, numpy.floating)) or not 0 < float(eps) < numpy.inf:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


def _check(matrices, gamma_name, gamma, eps):
    """Validated (matrices..., gamma as float64, eps, dtype); the dtype of the first matrix."""
    first_name, first = matrices[0]
    first = _as_float(first_name, first, 2)
    like = f"{first_name} {first.shape}"
    arrays = [first] + [_as_float(name, a, 2, first.shape, like) for name, a in matrices[1:]]
    dtype = first.dtype
    for (name, _), a in zip(matrices, arrays):
        if a.dtype != dtype:
            raise ValueError(f"{name} has dtype {a.dtype} but {first_name} has {dtype}; "
                             "use one dtype")
    gamma = _as_float(gamma_name, gamma, 1, first.shape[1:], like).astype(numpy.float64)
    return (*arrays, gamma, _check_eps(eps), dtype)


def _out(buffer, X, name="out"):
    """A caller's buffer for an (N, D) result, checked; a new array when None."""
    if buffer is None:
        return numpy.empty_like(X, order="C")
    if not isinstance(buffer, numpy.ndarray) or buffer.shape != X.shape \
            or buffer.dtype != X.dtype or not buffer.flags.writeable:
        got = (f"shape {buffer.shape}, dtype {buffer.dtype}" if isinstance(buffer, numpy.ndarray)
               else type(buffer).__name__)
        raise ValueError(f"{name} must be a writeable array of shape {X.shape} and dtype "
                         f"{X.dtype}, got {got}")
    return buffer
'''


def _header(title: str, proved: list[str], plan_lines: list[str], imports: str,
            buffers: str = "") -> str:
    lines = [f'"""{title}', "",
             (f"Generated by symbn {_version()} with SymPy {sp.__version__}; regenerate, "
              "do not edit."), "",
             "    batchnorm_forward(X, gamma, beta, eps=1e-5) -> Y",
             f"    batchnorm_backward(dY, X, gamma, eps=1e-5{buffers}) -> (dX, dgamma, dbeta)",
             "",
             "X, dY: (N, D) float32 or float64; gamma, beta: (D,); results in the input dtype.",
             "", *plan_lines, "", "Proved (exact arithmetic, no floating point):",
             *[f"  {p}" for p in proved], "", f"Imports: {imports}.", '"""', ""]
    return "\n".join(lines)


def _plan_lines(all_plans: dict[str, Plan], fused: bool = False) -> list[str]:
    b, f = all_plans["fused" if fused else "backward"], all_plans["forward"]
    out = ["Computed as (ColSum = sum over the batch axis, D = X - mu centred in two passes",
           "on the shift K = X[0]):"]
    if fused:
        out = ["Computed as (ColSum = sum over the batch axis; Y from D = X - mu centred in two",
               "passes on the shift K = X[0]; the backward from the sums of Z = X - X[0] and dY,",
               "all taken in one pass over the data, in float64):"]
    for plan, names in ((f, ["Y"]), (b, ["dX", "dgamma", "dbeta"])):
        for name in names:
            text = sp.sstr(_computed(plan, name))
            out.append(f"    {name} = {text}")
    return out


def _version() -> str:
    from . import __version__

    return __version__


def _numpy_body(plan: Plan, ind: str) -> list[str]:
    out = [f"{ind}{s} = {BatchPrinter().doprint(ColSum(e))}.astype(numpy.float64)"
           for s, e in plan.reductions]
    out += [f"{ind}{s} = {BatchPrinter().doprint(e)}" for s, e in plan.columns]
    return out


def _numpy_module(all_plans: dict[str, Plan], proved: list[str]) -> str:
    b, f = all_plans["backward"], all_plans["forward"]
    lines = [_header("BatchNorm (training mode) forward and backward, vectorised NumPy.",
                     proved, _plan_lines(all_plans), "numpy only", ", out=None, scratch=None"),
             "import numpy", _CHECKS, "",
             "def _centred(X, N, scratch=None):",
             '    """D = X - mu in two passes on the shift X[0]: X - X[0] is exact for close rows."""',
             "    D = numpy.subtract(X, X[0], out=_out(scratch, X, 'scratch'))",
             "    D -= (D.sum(axis=0) / N).astype(X.dtype)",
             "    return D", "", "",
             "def batchnorm_forward(X, gamma, beta, eps=1e-5):",
             '    """Y = gamma * (X - mu) / sqrt(v + eps) + beta, per column (batch statistics)."""',
             "    X, gamma, eps, dtype = _check([('X', X)], 'gamma', gamma, eps)",
             "    beta = _as_float('beta', beta, 1, X.shape[1:], f'X {X.shape}').astype(numpy.float64)",
             "    N = X.shape[0]",
             "    D = _centred(X, N)"]
    lines += _numpy_body(f, "    ")
    lines += _emit_element(f, "D", "    ")
    lines += ["    return D", "", "",
              "def batchnorm_backward(dY, X, gamma, eps=1e-5, out=None, scratch=None):",
              '    """(dX, dgamma, dbeta): the gradients of f given dY = df/dY.',
              "",
              "    dX is written to `out` and X - mu to `scratch` when given ((N, D) arrays of the",
              '    input dtype), which saves allocating them."""',
              "    dY, X, gamma, eps, dtype = _check([('dY', dY), ('X', X)], 'gamma', gamma, eps)",
              "    N = X.shape[0]",
              "    if N == 1:",
              "        out = _out(out, X)",
              "        out[...] = 0",
              "        return out, numpy.zeros(X.shape[1], dtype), dY[0].copy()",
              "    D = _centred(X, N, scratch)"]
    lines += _numpy_body(b, "    ")
    lines += _emit_element(b, "out", "    ", fresh=True)
    outs = ", ".join(f"{b.column_outputs[k]}.astype(dtype)" for k in ("dgamma", "dbeta"))
    lines += [f"    return out, {outs}", ""]
    return "\n".join(lines)


def _emit_element(plan: Plan, target: str, ind: str, fresh: bool = False) -> list[str]:
    """target = sum of coef * array (+ const), in place; D is scratch and is overwritten."""
    out = []
    for k, (c, a) in enumerate(plan.element):
        if k == 0 and fresh:
            out.append(f"{ind}{target} = numpy.multiply({a}, {c}.astype(dtype), "
                       f"out=_out({target}, X))")
        elif k == 0:
            if str(a) != target:
                raise SymbnError(f"cannot compute {target} in place from {a}")
            out.append(f"{ind}{a} *= {c}.astype(dtype)")
        else:
            out.append(f"{ind}{a} *= {c}.astype(dtype)")
            out.append(f"{ind}{target} += {a}")
    if plan.const is not None:
        out.append(f"{ind}{target} += {plan.const}.astype(dtype)")
    return out


def _numba_kernel(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """A fused kernel over row-major data: the shift mean, the reductions (per row chunk,
    tiled so a tile of rows is read from memory once), then the elements; rows in parallel,
    everything after the exact shift in float64.  A plan whose sums are all of Z = X - X[0]
    and dY reads the data once for every sum (see `_one_pass_kernel`)."""
    if not any(e.has(D) for _, e in plan.reductions) and not any(
            a == D for _, a in plan.element):
        return _one_pass_kernel(name, plan, arrays)
    p = ScalarPrinter()
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    args = ", ".join([f"{a}_" for a in arrays] + ["gamma_", "beta_", "eps", "out"] +
                     [f"{o}_" for o in outs] + ["chunks", "tile"])

    def rows(ind: str, lo: str, hi: str, body: list[str], need) -> list[str]:
        lines = [f"{ind}for i in range({lo}, {hi}):", f"{ind}    for c in range(C):"]
        if need.has(D):
            lines.append(f"{ind}        D = (X_[i, c] - K[c]) - m[c]")
        if need.has(DY):
            lines.append(f"{ind}        dY = dY_[i, c]")
        return lines + [f"{ind}        {line}" for line in body]

    L = ["", "", f"def {name}({args}):",
         "    N, C = X_.shape",
         "    step = -(-N // chunks)",
         "    K = numpy.empty(C)",
         "    for c in range(C):",
         "        K[c] = X_[0, c]",
         "    m = numpy.zeros(C)",
         "    P = numpy.zeros((chunks, C))",
         "    for t in numba.prange(chunks):",
         "        p = P[t]",
         "        for i in range(t * step, min(N, (t + 1) * step)):",
         "            for c in range(C):",
         "                p[c] += X_[i, c] - K[c]",
         "    for t in range(chunks):",
         "        for c in range(C):",
         "            m[c] += P[t, c]",
         "    for c in range(C):",
         "        m[c] /= N"]
    L += [f"    S{s} = numpy.zeros((chunks, C))" for s in red]
    L += ["    for t in numba.prange(chunks):",
          "        for i0 in range(t * step, min(N, (t + 1) * step), tile):",
          "            i1 = min(N, (t + 1) * step, i0 + tile)"]
    for s, e in plan.reductions:  # one loop per sum: several accumulators defeat vectorising
        L += [f"            a = S{s}[t]"]
        L += rows("            ", "i0", "i1", [f"a[c] += {p.doprint(e)}"], e)

    def loads(ind: str, need) -> list[str]:
        lines = []
        if any(e.has(D) for e in need):
            lines.append(f"{ind}D = (X_[i, c] - K[c]) - m[c]")
        if any(e.has(DY) for e in need):
            lines.append(f"{ind}dY = dY_[i, c]")
        return lines

    return L + _kernel_tail(plan, p, loads)


def _one_pass_kernel(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """The kernel for a plan of shifted sums: one streaming pass over the rows accumulates
    every sum in float64, then one pass writes the elements.  Z = X - X[0] is exact in the
    input precision when the rows are close (Sterbenz), so the sums lose nothing to the
    offset; the cancellation left, ColSum(Z**2) - ColSum(Z)**2/N, is relative to the spread
    of Z around X[0], not around zero.

    The sums pass reads four rows a quarter of the chunk apart and adds their terms before
    touching the accumulators: each accumulator is loaded and stored once per four rows, and
    X and dY are read as eight sequential streams (four adjacent rows instead measured up to
    twice as slow on tall arrays, 32768 x 256).  Unsigned row and column indices spare numba's
    negative-index wraparound, without which a column loop starting at a nonzero column
    measured up to three times slower."""
    p = ScalarPrinter()
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    args = ", ".join([f"{a}_" for a in arrays] + ["gamma_", "beta_", "eps", "out"] +
                     [f"{o}_" for o in outs] + ["chunks", "tile"])
    summands = [e for _, e in plan.reductions]

    def loads(ind: str, need, k: str = "", row: str = "i") -> list[str]:
        lines = []
        if any(e.has(Z) for e in need):
            lines.append(f"{ind}Z{k} = X_[{row}, c] - K[c]")
        if any(e.has(DY) for e in need):
            lines.append(f"{ind}dY{k} = numpy.float64(dY_[{row}, c])")
        return lines

    def term(e: sp.Expr, k: int) -> str:
        e = e.xreplace({Z: sp.Symbol(f"Z{k}"), DY: sp.Symbol(f"dY{k}")})
        return p.parenthesize(e, PRECEDENCE["Add"], strict=True)

    L = ["", "", f"def {name}({args}):",
         "    N, C = X_.shape",
         "    step = -(-N // chunks)",
         "    u = numba.uint64",
         "    K = numpy.empty(C)",
         "    for c in range(C):",
         "        K[c] = X_[0, c]"]
    L += [f"    S{s} = numpy.zeros((chunks, C))" for s in red]
    # blocks of 32 rows per quarter summed apart, then added: the rounding error of a sum
    # grows with about 32 + N/128 additions instead of N, which matters because
    # ColSum(Z**2) - ColSum(Z)**2/N magnifies it
    L += ["    for t in numba.prange(chunks):",
          "        lo = t * step",
          "        rows = max(0, min(N, lo + step) - lo)",
          "        q = rows // 4",
          "        q1, q2, q3 = u(q), u(2 * q), u(3 * q)"]
    L += [f"        a{s} = S{s}[t]" for s in red]
    L += [f"        b{s} = numpy.empty(C)" for s in red]
    L += ["        for r0 in range(lo, lo + q, 32):"]
    L += [f"            b{s}[:] = 0.0" for s in red]
    L += ["            for r in range(u(r0), u(min(lo + q, r0 + 32))):",
          "                for c in range(u(C)):"]
    for k, row in enumerate(["r", "r + q1", "r + q2", "r + q3"]):
        L += loads("                    ", summands, str(k), row)
    L += [f"                    b{s}[c] += ({term(e, 0)} + {term(e, 1)}) + "
          f"({term(e, 2)} + {term(e, 3)})" for s, e in plan.reductions]
    L += ["            for c in range(C):"]
    L += [f"                a{s}[c] += b{s}[c]" for s in red]
    L += ["        for i in range(lo + 4 * q, lo + rows):  # the last rows % 4 rows",
          "            for c in range(C):"]
    L += loads("                ", summands)
    L += [f"                a{s}[c] += {p.doprint(e)}" for s, e in plan.reductions]
    return L + _kernel_tail(plan, p, loads)


def _kernel_tail(plan: Plan, p, loads) -> list[str]:
    """Both kernels' end: the per-column coefficients from the chunk sums, then one pass
    writing the elements (`loads` emits the per-element reads they need)."""
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    coefs = [c for c, _ in plan.element] + ([plan.const] if plan.const else [])
    L = [f"    A{c} = numpy.empty(C)" for c in coefs]
    used = set().union(*[e.free_symbols for _, e in plan.columns])
    L += ["    for c in range(C):"]
    L += [f"        {g} = {g}_[c]" for g in (GAMMA, BETA) if g in used]
    L += [f"        {s} = 0.0" for s in red]
    L += ["        for t in range(chunks):"]
    L += [f"            {s} += S{s}[t, c]" for s in red]
    L += [f"        {s} = {p.doprint(e)}" for s, e in plan.columns]
    L += [f"        A{c}[c] = {c}" for c in coefs]
    L += [f"        {o}_[c] = {o}" for o in outs]
    element = sp.Add(*[sp.Symbol(f"A{c}[c]") * a for c, a in plan.element])
    if plan.const is not None:
        element += sp.Symbol(f"A{plan.const}[c]")
    L += ["    for i in numba.prange(N):", "        for c in range(C):"]
    L += loads("            ", [element])
    L += [f"            out[i, c] = {p.doprint(element)}"]
    return L


def _kernel_variants(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """The kernel twice, as `{name}_serial` and `{name}_parallel`, two functions in the
    module's source, each jitted with numba's on-disk cache.  numba files a cached overload
    under the function's name, its first line and the signature, not the compile options:
    one function jitted both serially and with parallel=True would share one cache entry, and
    a new process would load the serial machine code for the parallel kernel or the reverse."""
    lines = []
    for variant, parallel in (("serial", False), ("parallel", True)):
        kernel = _numba_kernel(f"{name}_{variant}", plan, arrays)
        lines += kernel[:2] + [f"@_jit(parallel={parallel})"] + kernel[2:]
    return lines


_NUMBA_JIT = '''

# The kernels are compiled per dtype on their first call, and numba caches the machine code on
# disk: in __pycache__ beside this file, under NUMBA_CACHE_DIR when that is set, or in the
# user's cache directory (~/.cache/numba) when this directory is not writable.  A later process
# loads it instead of compiling, until this file changes.  numba re-imports the module by name
# to load it, so the cache is used only when this module is imported under its file's name
# (`import batchnorm_fast`): loaded from a spec under another name, or not entered in
# sys.modules, it compiles in every process (a cache entry would fail to load).
_CACHE = (getattr(sys.modules.get(__name__), "__dict__", None) is globals()
          and __name__.rpartition(".")[2] == os.path.splitext(os.path.basename(__file__))[0])


def _jit(parallel):
    """numba.njit(parallel=...), with the on-disk cache when it can be used."""
    def decorate(kernel):
        global _CACHE
        options = {"parallel": parallel, "fastmath": False}
        if _CACHE:
            try:
                return numba.njit(cache=True, **options)(kernel)
            except RuntimeError:  # numba: "cannot cache function ...: no locator available"
                _CACHE = False  # warn once, not once per kernel
                warnings.warn(f"{__file__}: numba finds no writable directory to cache the "
                              "compiled kernels in, so every process compiles them on its "
                              "first call (seconds per dtype); set NUMBA_CACHE_DIR to a "
                              "writable directory", RuntimeWarning, stacklevel=3)
        return numba.njit(**options)(kernel)
    return decorate
'''


_NUMBA_WRAPPERS = '''

# From this many elements on, use numba.get_num_threads() threads (one row chunk each);
# None: always one thread.  On 2 cores two threads measured 0.6-0.8 x the time of one from
# 2**17 elements on (the sums and the dX pass are bound by memory bandwidth, which one core
# cannot saturate), 0.95 x at 2**16 and 1.3 x at 2**14.
PARALLEL_MIN = 1 << 17


def _plan(kernel, X):
    """(the serial or parallel kernel, row chunks (one per thread), rows per cache tile)."""
    N, C = X.shape
    threads = 1 if PARALLEL_MIN is None or X.size < PARALLEL_MIN else numba.get_num_threads()
    tile = max(1, (1 << 18) // (2 * C * X.itemsize))
    return kernel[threads > 1], max(1, min(N, threads)), tile


def batchnorm_forward(X, gamma, beta, eps=1e-5):
    """Y = gamma * (X - mu) / sqrt(v + eps) + beta, per column (batch statistics)."""
    X, gamma, eps, _ = _check([('X', X)], 'gamma', gamma, eps)
    beta = _as_float('beta', beta, 1, X.shape[1:], f'X {X.shape}').astype(numpy.float64)
    X = numpy.ascontiguousarray(X)
    out = numpy.empty_like(X)
    kernel, chunks, tile = _plan((_forward_serial, _forward_parallel), X)
    kernel(X, gamma, beta, eps, out, chunks, tile)
    return out


def batchnorm_backward(dY, X, gamma, eps=1e-5, out=None):
    """(dX, dgamma, dbeta): the gradients of f given dY = df/dY; dX is written to `out` if given."""
    dY, X, gamma, eps, dtype = _check([('dY', dY), ('X', X)], 'gamma', gamma, eps)
    N, C = X.shape
    out = _out(out, X)
    if N == 1:
        out[...] = 0
        return out, numpy.zeros(C, dtype), dY[0].copy()
    dY, X = numpy.ascontiguousarray(dY), numpy.ascontiguousarray(X)
    dgamma, dbeta = numpy.empty(C), numpy.empty(C)
    kernel, chunks, tile = _plan((_backward_serial, _backward_parallel), X)
    kernel(dY, X, gamma, gamma, eps, out, dgamma, dbeta, chunks, tile)
    return out, dgamma.astype(dtype), dbeta.astype(dtype)
'''


def _numba_module(all_plans: dict[str, Plan], proved: list[str]) -> str:
    b, f = all_plans["backward"], all_plans["forward"]
    if list(b.column_outputs) != ["dgamma", "dbeta"]:
        raise SymbnError("unexpected backward outputs; cannot emit numba kernels")
    lines = [_header("BatchNorm (training mode) forward and backward, fused numba loops.",
                     proved, _plan_lines(all_plans, fused=True),
                     "numpy and numba (pip install numba)",
                     ", out=None"),
             "import math",
             "import os",
             "import sys",
             "import warnings", "",
             "import numpy", "",
             "try:",
             "    import numba",
             "except ImportError as err:  # pragma: no cover",
             "    raise ImportError(\"this module needs numba: pip install 'symbn[numba]' \"",
             "                      \"or regenerate with --target numpy\") from err",
             _CHECKS.rstrip("\n"), _NUMBA_JIT.rstrip("\n")]
    lines += _kernel_variants("_forward", f, ["X"])
    lines += _kernel_variants("_backward", all_plans["fused"], ["dY", "X"])
    lines.append(_NUMBA_WRAPPERS.rstrip("\n"))
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# concrete N, unrolled
# ---------------------------------------------------------------------------------------


class Backward(NamedTuple):
    """Callables of (x_1..x_n, dy_1..dy_n, gamma, eps), from `sympy.lambdify`."""

    dx: Callable
    dgamma: Callable
    dbeta: Callable
    args: tuple


def _concrete(n: int) -> tuple[BatchNorm, list, dict[str, list[sp.Expr]]]:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_UNROLLED_N:
        raise SymbnError(f"n={n!r} is not an integer from 1 to {MAX_UNROLLED_N}, as unrolled "
                         "code needs; try n=4")
    bn = BatchNorm(n)
    args = [bn.x(i) for i in bn.rows()] + [bn.dy(i) for i in bn.rows()] + [bn.gamma(), bn.eps]
    exprs = {"dx": [bn.compose(closed_form.dx(bn, j)) for j in bn.rows()],
             "dgamma": [bn.compose(closed_form.dgamma(bn))],
             "dbeta": [bn.compose(closed_form.dbeta(bn))],
             "y": [bn.compose(bn.y(j)) for j in bn.rows()]}
    return bn, args, exprs


def lambdify_backward(n: int) -> Backward:
    """`sympy.lambdify` of the concrete-N closed form the prover checks (N = n).

    Arguments are x_1..x_n, dy_1..dy_n, gamma, eps (scalars, or arrays over columns).

    >>> g = lambdify_backward(2)
    >>> float(g.dbeta(1.0, 3.0, 0.5, 0.25, 2.0, 1.0))
    0.75
    >>> [round(float(v), 6) for v in g.dx(1.0, 3.0, 0.5, 0.25, 2.0, 1.0)]
    [0.088388, -0.088388]
    """
    _, args, exprs = _concrete(n)
    fns = [sp.lambdify(args, exprs[k] if k == "dx" else exprs[k][0], modules="numpy", cse=True)
           for k in ("dx", "dgamma", "dbeta")]
    return Backward(*fns, tuple(args))


def _unrolled_module(n: int, proved: list[str]) -> str:
    bn, _, exprs = _concrete(n)
    rename = {}
    for i in bn.rows():
        rename[bn.x(i)] = sp.Symbol(f"x_{i}")
        rename[bn.dy(i)] = sp.Symbol(f"dy_{i}")
    xs = [f"x_{i}" for i in bn.rows()]
    dys = [f"dy_{i}" for i in bn.rows()]

    def function(name: str, args: list[str], key: str, doc: str) -> list[str]:
        flat = [e.xreplace(rename) for e in exprs[key]]
        reps, reduced = sp.cse(flat, symbols=sp.numbered_symbols("t"))
        p = NumPyPrinter()
        values = [p.doprint(e) for e in reduced]
        result = f"[{', '.join(values)}]" if key in ("dx", "y") else values[0]
        return ["", "", f"def {name}({', '.join(args)}):", f'    """{doc}"""',
                *[f"    {s} = {p.doprint(e)}" for s, e in reps], f"    return {result}"]

    scalar = ", ".join(xs + dys + ["gamma", "eps"])
    plan = [f"Unrolled for N = {n}: the closed form composed to the leaves, printed by SymPy's",
            "NumPyPrinter after common-subexpression elimination, as scalar functions of",
            f"({scalar})",
            "(floats, or arrays over the columns).  Not shifted or centred: for badly",
            "conditioned data use the vectorised module."]
    check = [f"    if X.shape[0] != {n}:",
             (f"        raise ValueError(f\"this module is unrolled for N = {n}; X has shape "
              "{X.shape}\")")]
    lines = [_header(f"BatchNorm forward and backward, unrolled for N = {n}.", proved, plan,
                     "numpy only"),
             "import numpy", _CHECKS.rstrip("\n")]
    lines += function("dx", xs + dys + ["gamma", "eps"], "dx",
                      f"[df/dx_1, ..., df/dx_{n}] at N = {n}.")
    lines += function("dgamma", xs + dys + ["gamma", "eps"], "dgamma", f"df/dgamma at N = {n}.")
    lines += function("dbeta", xs + dys + ["gamma", "eps"], "dbeta", f"df/dbeta at N = {n}.")
    lines += function("y", xs + ["gamma", "beta", "eps"], "y", f"[y_1, ..., y_{n}] at N = {n}.")
    lines += ["", "",
              "def _rows(values, X, dtype):",
              ("    return numpy.stack([numpy.broadcast_to(v, X.shape[1:]) for v in values])"
              ".astype(dtype)"), "", "",
              "def batchnorm_forward(X, gamma, beta, eps=1e-5):",
              '    """Y = gamma * (X - mu) / sqrt(v + eps) + beta, per column."""',
              "    X, gamma, eps, dtype = _check([('X', X)], 'gamma', gamma, eps)",
              ("    beta = _as_float('beta', beta, 1, X.shape[1:], f'X {X.shape}')"
              ".astype(numpy.float64)"),
              *check,
              "    return _rows(y(*X.astype(numpy.float64), gamma, beta, eps), X, dtype)", "", "",
              "def batchnorm_backward(dY, X, gamma, eps=1e-5):",
              '    """(dX, dgamma, dbeta): the gradients of f given dY = df/dY."""',
              "    dY, X, gamma, eps, dtype = _check([('dY', dY), ('X', X)], 'gamma', gamma, eps)",
              *check,
              "    args = (*X.astype(numpy.float64), *dY.astype(numpy.float64), gamma, eps)",
              "    dX = _rows(dx(*args), X, dtype)",
              "    return dX, _rows([dgamma(*args)], X, dtype)[0], _rows([dbeta(*args)], X, dtype)[0]",
              ""]
    return "\n".join(lines)


def _unrolled_proofs(n: int) -> list[str]:
    from .verify import verify

    report = verify(n)
    if not report.ok:
        raise SymbnError(f"the closed form is not proved at N = {n}; refusing to generate code")
    return [f"closed form = forward mode = backward mode (symbn verify), N = {n}",
            "the expressions below are that closed form, composed to the leaves"]


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------


def generate(target: str = "numpy", n: int | None = None, unrolled: bool = False) -> str:
    """Source of a standalone module: `target` 'numpy' or 'numba', or unrolled for N = n."""
    if target not in TARGETS:
        raise SymbnError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if unrolled:
        if target != "numpy":
            raise SymbnError("unrolled=True emits NumPy code; drop target='numba'")
        if n is None:
            raise SymbnError("unrolled=True needs n=, the batch size to unroll for; try n=4")
        _concrete(n)
        return _unrolled_module(n, _unrolled_proofs(n))
    if n is not None:
        raise SymbnError("n= applies only with unrolled=True; the vectorised module takes any N")
    all_plans = plans()
    if target == "numpy":  # the fused plan is the numba kernel's; prove what is written
        del all_plans["fused"]
    proved = prove_plans(all_plans)
    return (_numpy_module if target == "numpy" else _numba_module)(all_plans, proved)


def write(source: str, path: str) -> io.Target:
    """Write `source` to `path` through symbn.io (atomic; `-` is standard output)."""
    return io.write(path, source)
