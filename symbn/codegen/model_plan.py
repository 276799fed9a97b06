"""Any model's plan: the model file's templates read as row-generic expressions of per-set
reductions, and their proofs against the model's closed forms at concrete N.

A model file writes its nodes and closed forms for every N at once: x[j] is "this element",
Sum(..., (k, 1, N)) a sum over the set.  Read with the element leaves, dy and the along
leaves as arrays (`Elem`: one value per element of every set) and each Sum as `RowSum` (a
reduction along the model's axis, one value per set), a closed form is already row-generic:
no abstraction from concrete N is needed, and 1/N, 1/(N - 1) are kept as written.  Set nodes
are expanded into their definitions, except a mean of the element leaf (mu = Sum(x[k])/N):
the code centres on it, writing x = D + mu with D computed in two passes on a shift,

    K = first element of the set,   D = (X - K) - RowSum(X - K)/N,

and mu must cancel.  Anything that is not a per-set sum of element-wise terms or an
element-wise term (a KroneckerDelta, a double sum, a row other than the summed one inside a
sum) is refused with the term named.

What the code computes (reductions, common subexpressions, outputs) is instantiated back at
N = min_n..6, one set, and at N = max(2, min_n) with two sets, with D as computed, and proved
equal to the model's closed forms (`Instance.result`) and to its output node by the exact
`Algebra`, after `verify_model` proved the closed forms equal to both modes of
differentiation at the same N.

>>> from symbn.models import load
>>> plan = model_plan(load("rmsnorm"))
>>> plan.reductions
[(s0, X**2), (s1, X*dY*gamma)]
>>> sp.sstr(computed(plan, "x"))
'-(X*RowSum(X*dY*gamma)/(N*(eps + RowSum(X**2)/N)) - dY*gamma)/sqrt(eps + RowSum(X**2)/N)'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from ..derivation import INDEX
from ..errors import SymbnError
from ..graph import ELEMENT, Instance, Model
from ..prove import PROVED, Algebra
from .plan import N

PROOF_MAX_N = 6
AXES = (0, -1)
BACKWARD_KINDS = ("element", "along", "set")  # leaves whose gradients the code returns
SCALAR_KINDS = ("positive", "constant")
_RESERVED = {"numpy", "N", "D", "K", "dtype", "AXIS", "MIN_N", "MAX_N"}


class Elem(sp.Symbol):
    """A per-element array, one value per element of every set: X, dY, D, an along leaf."""


class RowSum(sp.Function):
    """Sum over a set (along the model's axis) of a per-element expression: one value per set.

    Linear: per-set factors move outside, sums split.

    >>> X, g = Elem("X"), sp.Symbol("gamma")
    >>> RowSum(g * X / N + 2)
    2*N + gamma*RowSum(X)/N
    """

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_Add:
            return sp.Add(*[cls(a) for a in arg.args])
        if not _per_element(arg):
            return N * arg
        if arg.is_Mul:
            const = [a for a in arg.args if not _per_element(a)]
            if const:
                return sp.Mul(*const) * cls(sp.Mul(*[a for a in arg.args if _per_element(a)]))
        return None


def _per_element(e: sp.Expr) -> bool:
    """Whether `e` varies along the set: an array outside every RowSum."""
    if isinstance(e, Elem):
        return True
    return not isinstance(e, RowSum) and any(_per_element(a) for a in e.args)


@dataclass
class ModelPlan:
    """What one generated module computes, for a model, in the order it computes it."""

    model: Model
    symbols: dict[str, sp.Symbol]                # leaf name (and the gradient) -> symbol
    centred: str | None                          # the element leaf written as D + mean
    reductions: list[tuple[sp.Symbol, sp.Expr]]  # s_k = RowSum(summand), inner sums first
    backward: list[tuple[sp.Symbol, sp.Expr]]    # common subexpressions of the backward
    forward: list[tuple[sp.Symbol, sp.Expr]]     # ... and of the forward
    outputs: dict[str, sp.Expr]                  # leaf name or the output node -> expression
    kinds: dict[str, str]                        # the same keys -> element, along, set, forward
    symbolic_n: list[str] | None = None          # header lines of a symbolic-N proof, if any
    max_n: int | None = None                     # the largest N proved, when not every N

    @property
    def gradients(self) -> list[str]:
        return [k for k, kind in self.kinds.items() if kind != "forward"]


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not name.startswith("_")


class _Reader:
    """Translates a model's templates into row-generic expressions."""

    def __init__(self, model: Model):
        self.m = model
        self.symbols: dict[str, sp.Symbol] = {}
        for name, kind in model.leaves.items():
            if kind == "element":
                self.symbols[name] = Elem(name[0].upper() + name[1:])
            elif kind == "along":
                self.symbols[name] = Elem(name)
            else:
                self.symbols[name] = sp.Symbol(name)
        self.symbols[model.gradient] = Elem("d" + model.output[0].upper() + model.output[1:])
        for name, s in self.symbols.items():
            if not _is_identifier(s.name) or s.name in _RESERVED or (
                    s.name[:1] in "est" and s.name[1:].isdigit()):  # the plan's s0, t0, e0
                raise SymbnError(f"{model.path}: [leaves] {name}: the generated code would name "
                                 f"it {s.name}, which is not a usable Python name there; "
                                 "rename the leaf")
        self.means: dict[str, sp.Symbol] = {}  # mean node -> its symbol (kept, then cancelled)
        self._sets: dict[str, sp.Expr] = {}
        self.where = ""
        elements = [n for n, k in model.leaves.items() if k == "element"]
        for name, node in model.nodes.items():
            if not node.element and len(elements) == 1:
                self.where = f"[nodes] {name}"
                x = self.symbols[elements[0]]
                if self.read(node.template, None) == RowSum(x) / N and not self.means:
                    self.means[name] = sp.Symbol(name)
                    self._sets[name] = self.means[name]

    def refuse(self, term, why: str):
        raise SymbnError(f"{self.m.path}: {self.where}: {why} in '{sp.sstr(term)}'; the NumPy "
                         "target computes per-set sums of element-wise products and "
                         "element-wise terms only")

    def read(self, e: sp.Expr, row: sp.Symbol | None, summed: bool = False) -> sp.Expr:
        """`e` with `row` as "this element": element leaves, dy and along leaves at it
        become arrays; Sum(..., (k, 1, N)) becomes RowSum with k the summed row."""
        if e.is_Number:
            return e
        if e == N:
            return N
        if isinstance(e, sp.Indexed):
            name, index = str(e.base), e.indices
            if len(index) != 1 or index[0] != row:
                where = "inside a sum over " + str(row) if summed else \
                    ("outside any sum" if row is None else f"at row {row}")
                self.refuse(e, f"{e} is read {where}")
            if name in self.symbols:
                return self.symbols[name]
            if name in self.m.nodes:  # an element node at this row
                return self.read(self.m.nodes[name].template.xreplace({ELEMENT: row}), row,
                                 summed)
            self.refuse(e, f"{name} is not a leaf or element node")
        if e.is_Symbol:
            name = e.name
            if name in self.symbols and not isinstance(self.symbols[name], Elem):
                return self.symbols[name]
            if name in self.m.nodes and not self.m.nodes[name].element:
                if name not in self._sets:
                    where, self.where = self.where, f"[nodes] {name}"
                    self._sets[name] = self.read(self.m.nodes[name].template, None)
                    self.where = where
                return self._sets[name]
            if name in self.m.names:
                return self.read(self.m.names[name].template, row, summed)
            self.refuse(e, f"{name} is not a scalar leaf, set node or name")
        if isinstance(e, sp.Sum):
            if summed or len(e.limits) != 1:
                self.refuse(e, "a sum inside a sum")
            var, low, high = e.limits[0]
            if low != 1 or high != N:
                self.refuse(e, f"a sum over {var} = {low}..{high}, not 1..N")
            return RowSum(self.read(e.function, var, True))
        if e.is_Add or e.is_Mul or e.is_Pow:
            return e.func(*[self.read(a, row, summed) for a in e.args])
        self.refuse(e, f"{type(e).__name__} is not a sum, product or power")
        raise AssertionError  # refuse raises

    def centre(self, expr: sp.Expr, what: str) -> tuple[sp.Expr, str | None]:
        """`expr` with the element leaf written as D + mean; the mean must cancel."""
        if not self.means:
            return expr, None
        (name, mu), = self.means.items()
        x = next(n for n, k in self.m.leaves.items() if k == "element")
        centred = expr.xreplace({self.symbols[x]: Elem("D") + mu})
        if centred.has(mu):  # mu may cancel only after multiplying out
            centred = sp.expand(centred)
        if centred.has(mu):
            raise SymbnError(f"{self.m.path}: {what} uses {name} other than through "
                             f"{x} - {name}; the centred two-pass plan cannot compute it")
        return centred, x


def gradient_leaves(m: Model) -> dict[str, str]:
    """The leaves code computes gradients of (every one but the scalars), with their kinds;
    a one-line error for one without a closed form in [results]."""
    out = {}
    for leaf, kind in m.leaves.items():
        if kind in SCALAR_KINDS:
            continue
        if leaf not in m.results:
            raise SymbnError(f"{m.path}: no closed form for {leaf} in [results]; code is "
                             "generated from the proved closed forms of every element, "
                             f"along and set leaf: add \"D(f, {leaf}"
                             f"{'[j]' if m.indexed(leaf) else ''})\" = ...")
        out[leaf] = kind
    return out


def model_plan(model: Model) -> ModelPlan:
    """The plan of the backward (every element, along and set leaf) and the forward."""
    m = model
    if m.axis not in AXES:
        raise SymbnError(f"{m.path}: [model] axis = {m.axis}; the NumPy target reduces along "
                         "axis 0 (N, D) or -1 (..., N) so far")
    if not _is_identifier(m.name.replace("-", "_")):
        raise SymbnError(f"{m.path}: name '{m.name}' does not make a Python function name "
                         f"({m.name.replace('-', '_')}_forward); start it with a letter")
    reader = _Reader(m)
    exprs, kinds, centred = {}, {}, None
    for leaf, kind in gradient_leaves(m).items():
        reader.where = f"[results] {m.results[leaf].key}"
        row = INDEX["j"] if m.indexed(leaf) else None
        exprs[leaf], centred = reader.centre(reader.read(m.results[leaf].template, row),
                                             reader.where)
        kinds[leaf] = kind
    reader.where = f"[nodes] {m.output}"
    exprs[m.output], centred = reader.centre(reader.read(m.nodes[m.output].template, ELEMENT),
                                             reader.where)
    kinds[m.output] = "forward"
    sums = set().union(*[e.atoms(RowSum) for e in exprs.values()])
    order = sorted(sums, key=lambda r: (len(r.args[0].atoms(RowSum)), sp.default_sort_key(r)))
    names = {r: sp.Symbol(f"s{k}") for k, r in enumerate(order)}
    reductions = [(names[r], r.args[0].xreplace(names)) for r in order]
    flat = {k: e.xreplace(names) for k, e in exprs.items()}
    back = [k for k in flat if kinds[k] != "forward"]
    rb, reduced_b = sp.cse([flat[k] for k in back], symbols=sp.numbered_symbols("t"),
                           optimizations="basic")
    rf, reduced_f = sp.cse([flat[m.output]], symbols=sp.numbered_symbols("u"),
                           optimizations="basic")
    outputs = dict(zip(back, reduced_b)) | {m.output: reduced_f[0]}
    return ModelPlan(m, reader.symbols, centred, reductions, list(rb), list(rf),
                     outputs, kinds)


def computed(plan: ModelPlan, name: str) -> sp.Expr:
    """The row-generic expression the code computes for `name`, with the reductions and
    common subexpressions substituted back."""
    values: dict = {}
    for s, e in plan.reductions:
        values[s] = RowSum(e.xreplace(values))
    for s, e in plan.backward if plan.kinds[name] != "forward" else plan.forward:
        values[s] = e.xreplace(values)
    return plan.outputs[name].xreplace(values)


def instantiate(plan: ModelPlan, g: Instance, expr: sp.Expr, j: int, c: int = 1) -> sp.Expr:
    """The row-generic `expr` at element j of set c of `g`, D computed as the code does."""
    m = g.model
    table = {}
    for name, s in plan.symbols.items():
        if isinstance(s, Elem):
            table[s] = lambda i, name=name: g.symbol(name, i, c)
        else:
            table[s] = lambda i, name=name: g.symbol(name, None, c)
    if plan.centred is not None:
        x = plan.centred
        shift = sp.Add(*[g.symbol(x, k, c) - g.symbol(x, 1, c) for k in g.rows()]) / g.n
        table[Elem("D")] = lambda i: (g.symbol(x, i, c) - g.symbol(x, 1, c)) - shift
        table[Elem("_E")] = lambda i: g.symbol(x, i, c) - g.symbol(x, 1, c)  # one-pass sums
    del m

    def walk(e, i):
        if isinstance(e, RowSum):
            return sp.Add(*[walk(e.args[0], k) for k in g.rows()])
        if e in table:
            return table[e](i)
        if e == N:
            return sp.Integer(g.n)
        if not e.args:
            return e
        return e.func(*[walk(a, i) for a in e.args])

    return walk(expr, j)


def proof_ns(model: Model) -> tuple[int, ...]:
    """N = min_n..6, and at least two sizes for a model defined only from N = 6 on."""
    low = max(1, model.min_n)
    return tuple(range(low, max(PROOF_MAX_N, low + 1) + 1))


def prove_model_plan(plan: ModelPlan, ns: tuple[int, ...] | None = None,
                     closed_forms: bool = True) -> list[str]:
    """Prove, at each N of `ns` (one set) and at N = max(2, min_n) with two sets: closed
    form = both modes (`verify_model`; skipped with closed_forms=False, for a second plan of
    a model whose closed forms were just proved), and every computed output = the closed
    form, every row and set; the header lines.  Raises SymbnError on anything not proved."""
    from ..verify_model import verify_model

    m = plan.model
    ns = proof_ns(m) if ns is None else ns
    plan.max_n = ns[-1]  # until a symbolic-N proof covers every claim (`prove_all_n`)
    two = max(2, m.min_n)
    for n, d in [(n, 1) for n in ns] + [(two, 2)]:
        report = verify_model(m, n, d) if closed_forms else None
        if report is not None and not report.ok:
            bad = [r.id for r in report.results if r.verdict != PROVED]
            raise SymbnError(f"{m.name}: the closed forms are not proved at N = {n}, D = {d} "
                             f"({', '.join(bad)}); refusing to generate code from them")
        g = m.instantiate(n, d)
        alg = Algebra(g)
        code = {k: computed(plan, k) for k in plan.outputs}
        claims = []
        for k, kind in plan.kinds.items():
            sets = list(g.columns())
            if kind == "forward":
                claims += [(f"{k}[{j}] (set {c})", instantiate(plan, g, code[k], j, c),
                            g.symbol(k, j, c)) for c in sets for j in g.rows()]
            elif kind == "element":
                claims += [(f"d{k}[{j}] (set {c})", instantiate(plan, g, code[k], j, c),
                            g.result(k, j, c)) for c in sets for j in g.rows()]
            elif kind == "along":  # the code sums the per-set shares over the sets
                claims += [(f"d{k}[{j}]", sp.Add(*[instantiate(plan, g, code[k], j, c)
                                                   for c in sets]), g.result(k, j))
                           for j in g.rows()]
            else:
                claims += [(f"d{k} (set {c})", instantiate(plan, g, code[k], 1, c),
                            g.result(k, None, c)) for c in sets]
        for label, lhs, rhs in claims:
            outcome = alg.decide(lhs, rhs)
            if outcome.verdict != PROVED:
                raise SymbnError(f"{m.name}: the generated {label} is {outcome.verdict} equal "
                                 f"to the closed form at N = {n}, D = {d}; refusing to write "
                                 "the code")
    grads = ", ".join(f"d{plan.symbols[k].name if plan.kinds[k] == 'element' else k}"
                      for k in plan.gradients)
    centring = ("D = (X - K) - RowSum(X - K)/N as computed (K the first element of each "
                "set)" if plan.centred else "no centring (the model has no mean)")
    return [
        (f"N = {ns[0]}..{ns[-1]} (one set) and N = {two} with two sets, symbn.prove.Algebra "
         "(eps = s^2 - v, canonical polynomials over QQ):"),
        f"  closed forms = forward mode = backward mode (symbn verify --model {m.name});",
        f"  {grads} (every element and set) and {m.output.upper()} above = the model's",
        f"  [results] / its node {m.output}, with {centring}",
        *prove_all_n(plan, closed_forms),
    ]


def _every_n(plan: ModelPlan, closed_forms: bool = True) -> list[str] | None:
    from .model_every_n import prove_plan_every_n

    return prove_plan_every_n(plan, closed_forms)


# Symbolic-N provers of a plan: each takes the plan (and whether to prove the closed forms
# too) and returns the header lines saying what it proved for every N, or None when the plan
# is outside its fragment; one that finds the plan wrong raises SymbnError, and no code is
# written.
SYMBOLIC_N: list[Callable[[ModelPlan, bool], list[str] | None]] = [_every_n]


def prove_all_n(plan: ModelPlan, closed_forms: bool = True) -> list[str]:
    """The header lines of the first symbolic-N prover in `SYMBOLIC_N` that applies."""
    for prover in SYMBOLIC_N:
        lines = prover(plan, closed_forms)
        if lines is not None:
            plan.symbolic_n = lines
            return lines
    return [(f"symbolic N: outside the fragment symbn.every_n decides for {plan.model.name}; "
             f"the proof covers the N above only, and the functions refuse N > {plan.max_n}")]
