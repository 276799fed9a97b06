"""Any model's vectorised NumPy module from its linear plan (`model_terms`): per block of
sets, the reductions (row dots by vecdot, einsum and matmul), the per-set coefficients in
float64, then each output as Σ coefficient * monomial in the input dtype, written in place.

Along the last axis the sets are rows, taken in blocks of about `BLOCK` bytes per array so
that the temporaries stay in cache, and the monomials of an element result are computed into
one stack (k, rows, N): the result is then a single batched product (rows, 1, k) @ (rows, k,
N), one pass where a multiply and an add per term make two, after which the stack's products
are scratch for the sums over the sets (dgamma).  Along axis 0 the whole array is
one block, each term a column scale.  NumPy object arrays of exact scalars (`symbn
check-impl`) take the same code as one block, in object arithmetic: the set size N becomes a
`fractions.Fraction` and nothing is converted to float.

>>> from symbn.models import load
>>> from .model_plan import model_plan
>>> from .model_terms import linear_plan
>>> text = vector_module(linear_plan(model_plan(load("rmsnorm"))), ["(proofs)"])
>>> "    s1 = _rdot(X, _p0)" in text
True
"""

from __future__ import annotations

import re

import sympy as sp

from .model_numpy import Api, SetPrinter, _plan_lines, header, plan_api
from .model_plan import SCALAR_KINDS
from .model_terms import Factors, LinearPlan
from .vector_runtime import _RUNTIME

OUT_NOTE = ("    (both also take out=, a buffer of X's shape and dtype for the element result)",)


class CoefPrinter(SetPrinter):
    """NumPy printer whose negative integer powers stay integer (1/N), so that N as a
    fraction keeps object arithmetic exact, and whose rationals that no float holds exactly
    are `_rational(p, q, X)`: a fraction for exact scalars, p/q in floating point.

    >>> CoefPrinter().doprint(1 / sp.Symbol("N") + sp.Symbol("t")**-2)
    't**(-2) + 1/N'
    >>> CoefPrinter().doprint(sp.Rational(1, 3) * sp.Symbol("t") + sp.Rational(1, 2))
    '(_rational(1, 3, X))*t + 1/2'
    """

    def _print_Rational(self, expr):
        if expr.q & (expr.q - 1):  # not a power of two
            return f"_rational({expr.p}, {expr.q}, X)"
        return super()._print_Rational(expr)

    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Integer and expr.exp < 0:
            base = self.parenthesize(expr.base, 60)  # above Mul's precedence
            return f"1/{base}" if expr.exp == -1 else f"{base}**({expr.exp})"
        return super()._print_Pow(expr, rational=rational)




class _Emitter:
    """The lines of one function body: products of element arrays as cached temporaries."""

    def __init__(self, lp: LinearPlan, full: set[str], ind: str):
        self.lp, self.full, self.ind = lp, full, ind
        self.p = CoefPrinter()
        self.lines: list[str] = []
        self.temps: dict[Factors, str] = {}
        self.named = 0  # the products named so far (_p0, _p1, ...)
        self.wanted: set[Factors] = set()
        self.buffers: list[str] = []
        self.slots: dict[Factors, str] = {}  # sorted monomial -> its view of the stack _S
        self.stack: list[Factors] = []  # the monomials of the element results, in _S order
        self.fixed: set[int] = set()  # their positions filled before the loop or copied in
        self.free: list[str] = []  # views of the stack free to serve as scratch

    def emit(self, line: str) -> None:
        self.lines.append(self.ind + line)

    def buffer(self, name: str) -> str:
        """The block's view of a scratch buffer: a released slot of the stack, or `_s{name}`,
        allocated once per call."""
        if self.free:
            return self.free.pop(0)
        self.buffers.append(name)
        return f"_s{name}[:_n]"

    def split(self, f: Factors) -> tuple[list[str], list[str]]:
        return [a for a in f if a in self.full], [a for a in f if a not in self.full]

    def product(self, f: Factors | list[str]) -> str:
        f = tuple(f)
        if len(f) == 1:
            return f[0]
        key = tuple(sorted(f))
        if key not in self.temps:
            left = self.product(f[:-1])
            name, self.named = f"_p{self.named}", self.named + 1
            out = self.slots.get(key) or self.buffer(name)
            self.emit(f"{name} = numpy.multiply({left}, {f[-1]}, out={out})")
            self.temps[key] = name
        return self.temps[key]

    def reduction(self, f: Factors) -> str:
        full, along = self.split(f)
        if not full:
            return f"_rsum({self.product(along)})"
        if len(full) == 1:
            return f"_rvec({full[0]}, {self.product(along)})" if along else f"_rsum({full[0]})"
        if not along:
            return f"_rdot({self.product(full[:-1])}, {full[-1]})"
        for k, a in enumerate(full):  # a right-hand part the outputs need too, if any
            rest = tuple(sorted([a, *along]))
            if rest in self.temps or rest in self.wanted:
                left = full[:k] + full[k + 1:]
                return f"_rdot({self.product(left)}, {self.product([a, *along])})"
        return f"_rdot({self.product(full[:-1])}, {self.product([full[-1], *along])})"

    def coef(self, c) -> str:
        return self.p.doprint(c) if c.is_Number else f"_c{c}"

    def plan_stack(self, targets: list[list]) -> list[str]:
        """Lay out the stack `_S` of the monomials of the element results (each a list of
        terms (c, monomial)), so that their products and D are computed into it; the
        lines that allocate it (before the loop) are returned."""
        self.stack = list(dict.fromkeys(tuple(sorted(f)) for terms in targets for _, f in terms))
        fixed = {}
        for j, f in enumerate(self.stack):
            full, along = self.split(f)
            if not full:
                fixed[j] = " * ".join(along) or "1"
            elif len(f) > 1 or f == ("D",):
                self.slots[f] = f"_S[{j}, :_n]"
        self.fixed = set(fixed)
        pairs = ", ".join(f"{j}: {v}" for j, v in fixed.items())
        k = len(self.stack)
        return [f"    _S = _stack(X, edtype, {k}, {{{pairs}}})",
                f"    _C = numpy.empty((_S.shape[1], 1, {k}), edtype)"]

    def stacked(self, target: str, terms) -> None:
        """target = Σ c * monomial as one `_combine` over the stack."""
        for j, f in enumerate(self.stack):  # an element array itself: copied in
            if j not in self.fixed and f not in self.slots:
                self.emit(f"numpy.copyto(_S[{j}, :_n], {self.product(f)})")
                self.fixed.add(j)
        for f in self.slots:  # a product the reductions did not need
            if len(f) > 1:
                self.product(f)
        coef = {tuple(sorted(f)): c for c, f in terms}
        cs = ", ".join(self.p.doprint(coef[f]) if f in coef else "0" for f in self.stack)
        self.emit(f"_combine(_S, _C, _n, ({cs}{',' * (len(self.stack) == 1)}), {target})")

    def release(self, keep: set[Factors]) -> None:
        """Once the element results are written, the stack's products serve as scratch for
        the results that follow (the ones these still read stay)."""
        for f, view in self.slots.items():
            if len(f) > 1 and f not in keep:
                self.temps.pop(f, None)
                self.free.append(view)

    def element(self, target: str, terms) -> None:
        """target[...] = Σ c * monomial, the monomial terms first."""
        ordered = sorted(terms, key=lambda t: not t[1])
        for k, (c, f) in enumerate(ordered):
            cc = self.coef(c)
            if not f:
                self.emit(f"{target}[...] = {cc}" if k == 0 else f"{target} += {cc}")
                continue
            known = tuple(sorted(f)) in self.temps or len(f) == 1
            if k == 0 and not known and len(f) == 2:
                self.emit(f"numpy.multiply({f[0]}, {f[1]}, out={target})")
                if c != 1:
                    self.emit(f"{target} *= {cc}")
                continue
            prod = self.product(f)
            if k == 0:
                self.emit(f"numpy.copyto({target}, {prod})" if c == 1 else
                          f"_scale({prod}, {cc}, {target})")
            elif c == 1:
                self.emit(f"{target} += {prod}")
            else:
                self.emit(f"{target} += _scale({prod}, {cc}, {self.buffer('_w')})")


def _function(lp: LinearPlan, api: Api, keys: list[str], which: str) -> list[str]:
    """The body of the forward (which = 'forward') or the backward."""
    plan, m = lp.plan, lp.plan.model
    leaves = api.forward if which == "forward" else api.backward
    arrays = [a for a in leaves if m.leaves.get(a, "element") == "element"]
    names = [api.array(a) for a in arrays]
    first = names[1] if leaves[0] == m.gradient and len(names) > 1 else names[0]
    pairs = ", ".join(f"('{n}', {n})" for n in names)
    L = [f"    {', '.join(names)}, = _element([{pairs}])",
         f"    dtype = {first}.dtype"] + [f"    X = {first}"] * (first != "X")
    for a in leaves:
        kind = m.leaves.get(a)
        if kind == "along":
            L.append(f"    {a} = _along('{a}', {a}, X)")
        elif kind == "set":
            L.append(f"    _{a} = _per_set('{a}', {a}, X)")
        elif kind in SCALAR_KINDS:
            L.append(f"    {a} = _scalar('{a}', {a}, {kind == 'positive'}, X)")
    inputs = names + [a for a in leaves if m.leaves.get(a) == "along"]
    L += [f"    {', '.join(inputs)}, = _apart(out, {', '.join(inputs)})"]
    L += ["    N = _count(X)"]
    # the loop binds X to each block in turn: the per-set results take the whole shape
    L += ["    _shape = X.shape"] * any(plan.kinds[k] == "set" for k in keys)
    L += ["    edtype = _wide(X)" if m.axis == 0 else "    edtype = dtype"]
    L += [f"    _{n} = _rows({n})" for n in names]
    element = [k for k in keys if plan.kinds[k] in ("element", "forward")]
    results = {}
    for k in keys:
        kind = plan.kinds[k]
        name = m.output.upper() if kind == "forward" else api.grad(k)
        results[k] = name
        if kind in ("element", "forward"):
            buffer = "out" if k == element[0] else "None"  # out= is the first element result
            L += [f"    {name} = _out({buffer}, X)", f"    _{name} = _rows({name})"]
        elif kind == "along":
            L.append(f"    {name} = _zeros(X)")
        else:
            L.append(f"    _{name} = _per_set_empty(X)")
    assignments = dict(plan.forward if which == "forward" else plan.backward)
    needed = set().union(*[sp.sympify(c).free_symbols for k in keys for c, _ in lp.terms[k]])
    for s, e in reversed(assignments.items()):
        if s in needed:
            needed |= e.free_symbols
    full = set(names) | {"D"}
    em = _Emitter(lp, full, "            ")
    em.wanted = {tuple(sorted(f)) for k in element for _, f in lp.terms[k] if len(f) > 1}
    stack = m.axis == -1 and bool(element)  # along axis 0 each term is a column scale
    setup = em.plan_stack([lp.terms[k] for k in element]) if stack else []
    loop = len(L)
    L += ["    _old = numpy.setbufsize(_bufsize(X))", "    try:",
          "        for k in _blocks(X):"]
    # along axis 0 (one block, not streamed) everything is in float64: at N = 2 the
    # gradient cancels to about 1e-3 of its terms, which float32 elements would not resolve
    cast = ".astype(edtype)" if m.axis == 0 else ""
    em.lines = [f"{em.ind}{n} = _{n}[k]{cast}" for n in names]
    em.emit(f"_n = {names[0]}.shape[0]")
    em.lines += [f"{em.ind}{a} = _{a}[k]" for a in leaves if m.leaves.get(a) == "set"]
    if plan.centred is not None:
        em.emit(f"D = _centred({api.array(plan.centred)}, N, "
                f"{em.slots.get(('D',)) or em.buffer('D')})")
    for s, f in lp.sums:
        if s in needed:
            em.emit(f"{s} = {em.reduction(f)}")
    em.lines += [f"{em.ind}{s} = {em.p.doprint(e)}" for s, e in assignments.items() if s in needed]
    coefs = [c for k in keys if not (stack and k in element)
             for c, _ in lp.terms[k] if not c.is_Number]
    for c in dict.fromkeys(coefs):
        em.emit(f"_c{c} = _el({c}, edtype)")
    for k in element:
        if m.axis == 0:
            em.emit(f"_o = numpy.empty(_{results[k]}[k].shape, edtype)")
        else:
            em.emit(f"_o = _{results[k]}[k]")
        if stack:
            em.stacked("_o", lp.terms[k])
        else:
            em.element("_o", lp.terms[k])
        if m.axis == 0:
            em.emit(f"_{results[k]}[k] = _o")
    if stack:
        em.release({tuple(sorted(em.split(f)[0])) for k in keys if plan.kinds[k] == "along"
                    for _, f in lp.terms[k]})
    for k in keys:
        kind, name = plan.kinds[k], results[k]
        if kind == "along":
            for c, f in lp.terms[k]:
                fl, al = em.split(f)
                part = f"_over({em.coef(c)}, {em.product(fl)})" if fl else \
                    f"_over({em.coef(c)}, numpy.ones_like(X))"
                em.emit(f"{name} += {part}" + (f" * {em.product(al)}" if al else ""))
        elif kind == "set":
            em.emit(f"_{name}[k] = " + " + ".join(em.p.doprint(c) for c, _ in lp.terms[k]))
    L += em.lines + ["    finally:", "        numpy.setbufsize(_old)"]
    L[loop:loop] = setup + [f"    _s{b} = _scratch(X, edtype)" for b in dict.fromkeys(em.buffers)]
    out = []
    for k in keys:
        kind, name = plan.kinds[k], results[k]
        if kind == "along":
            out.append(f"{name}.astype(dtype)")
        elif kind == "set":
            out.append(f"_per_set_result(_{name}, _shape, dtype)")
        else:
            out.append(name)
    L.append(f"    return {', '.join(out)}")
    if not any(re.search(r"\bdtype\b", line) for line in L[2:]):
        del L[1]
    return L


def vector_module(lp: LinearPlan, proved: list[str]) -> str:
    """The module text of the vectorised NumPy target for a linear plan.

    >>> from symbn.models import load
    >>> from .model_plan import model_plan
    >>> from .model_terms import linear_plan
    >>> "def layernorm_backward(dY, X, gamma, eps=1e-5, out=None):" in vector_module(
    ...     linear_plan(model_plan(load("layernorm"))), [])
    True
    """
    plan = lp.plan
    m, api = plan.model, plan_api(plan)
    y = m.output
    grads = ", ".join(api.grad(g) for g in plan.gradients)
    lines = [header(f"{m.title}: forward and backward, vectorised NumPy.", api, proved,
                    _plan_lines(plan, api, linear=True), extra=OUT_NOTE),
             _RUNTIME.format(axis=m.axis, min_n=m.min_n, max_n=plan.max_n).lstrip("\n")]
    args_f = api.arguments(api.forward) + ", out=None"
    args_b = api.arguments(api.backward) + ", out=None"
    lines += ["", f"def {api.prefix}_forward({args_f}):",
              (f'    """{y.upper()}: the layer\'s output, {y}[i] = {m.nodes[y].text}, written '
               'to `out` if given."""'),
              *_function(lp, api, [y], "forward")]
    dx = [api.grad(g) for g in plan.gradients if plan.kinds[g] == "element"]
    lines += ["", "", f"def {api.prefix}_backward({args_b}):",
              (f'    """({grads}): the gradients of f given {api.array(m.gradient)} = '
              f'df/d{y.upper()}; {", ".join(dx)} written to `out` if given."""'),
              *_function(lp, api, plan.gradients, "backward"), ""]
    return "\n".join(lines)
