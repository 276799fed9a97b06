r"""The results of a model in matrix form, for D sets along the model's axis (`--d D`).

The closed forms of the model file are one set's; the array holds D sets along the model's
axis (axis 0: X is N x D, column c is set c; axis -1: X is D x N, row c is set c).  Each
closed form is printed with the set index c: element leaves, dy and element nodes get it
beside their row, set leaves, set nodes and names get it alone, leaves shared by the sets
(along, constant, positive) stay as they are, and the derivative of a shared leaf is the
sum over the sets.  The verdicts are those of `verify_model(model, n, d)` (the claims for
every set and the claim `sets/independent`); the printed equations are proved to be what
verify decided by `matrix/form`: each, at every set c and row j, equals `Instance.result`.

>>> from symbn.models import load
>>> m = load("layernorm")
>>> print(set_form(m, m.results["gamma"].template))
dy[c, j]*xhat[c, j]
"""

from __future__ import annotations

import time

import sympy as sp

from ..graph import SHARED_KINDS, Instance, Model, named
from ..prove import PROVED, Algebra
from ..report import Result
from .document import _Builder, verdict_latex
from .printer import Partial, escape

C = sp.Symbol("c", integer=True, positive=True)  # the set
C2 = sp.Symbol("c'", integer=True, positive=True)  # another set
D_SETS = sp.Symbol("D", integer=True, positive=True)


def _per_set(m: Model, name: str) -> bool:
    """A leaf, node or name with one value per set (not shared by the sets)."""
    if name in m.names:
        return any(_per_set(m, part) for part in named(m.names[name].template))
    if name in m.leaves:
        return m.leaves[name] not in SHARED_KINDS
    return True  # nodes and dy


def _at(m: Model, name: str, row, c=C) -> sp.Expr:
    """name at `row` (None for no row) of set c, placed along the model's axis."""
    base = sp.IndexedBase(name)
    if not _per_set(m, name):
        return base[row] if row is not None else sp.Symbol(name)
    if row is None:
        return base[c]
    return base[row, c] if m.axis == 0 else base[c, row]


def set_form(m: Model, template: sp.Expr, c=C) -> sp.Expr:
    """A template of the model written for set c of the array."""
    mapping = {}
    for t in template.atoms(sp.Indexed):
        mapping[t] = _at(m, str(t.base), t.indices[0], c)
    for t in template.atoms(sp.Symbol):
        if t.name in m.leaves or t.name in m.nodes or t.name in m.names:
            mapping[t] = _at(m, t.name, None, c)
    return template.xreplace(mapping)


def matrix_results(m: Model, leaf: str) -> tuple[sp.Expr, sp.Expr]:
    """(D(f, leaf at row j of set c), its closed form for the array): a shared leaf's
    derivative is the sum over the sets."""
    from ..derivation import D
    from .model import F, j

    form = set_form(m, m.results[leaf].template)
    row = j if m.indexed(leaf) else None
    if _per_set(m, leaf):
        return D(F, _at(m, leaf, row)), form
    return D(F, _at(m, leaf, row)), sp.Sum(form, (C, 1, D_SETS))


def prove_matrix_form(g: Instance) -> Result:
    """Every printed equation at every set c and row j equals `g.result` (what verify
    decided): the printing adds the set index and nothing else."""
    m, alg = g.model, Algebra(g)
    start = time.monotonic()
    for leaf in m.results:
        _, rhs = matrix_results(m, leaf)
        sets = g.columns() if _per_set(m, leaf) else [1]
        rows = g.rows() if m.indexed(leaf) else [None]
        for c in sets:
            for row in rows:
                value = _instantiate(g, rhs, c, row)
                outcome = alg.decide(value, g.result(leaf, row, c))
                if outcome.verdict != PROVED:
                    return Result("matrix/form", outcome.verdict, outcome.method,
                                  time.monotonic() - start, outcome.witness,
                                  f"D(f, {leaf}) at set {c}" + (f", j = {row}" if row else ""))
    return Result("matrix/form", PROVED, "exact", time.monotonic() - start)


def _instantiate(g: Instance, e: sp.Expr, c: int, row: int | None) -> sp.Expr:
    """A printed equation at set c, row j, in the instance's symbols (names expanded)."""
    from ..derivation import N
    from .model import j

    m = g.model
    e = e.xreplace({N: sp.Integer(g.n), D_SETS: sp.Integer(g.d),
                    **({j: sp.Integer(row)} if row is not None else {})})
    e = e.subs(C, sp.Integer(c)).doit()  # subs: a sum over the sets keeps its bound c

    def symbol(t: sp.Indexed) -> sp.Expr:
        name, idx = str(t.base), [int(a) for a in t.indices]
        if name in m.names:
            return g.template(sp.Symbol(name), {}, idx[0])
        if len(idx) == 2:
            r, s = (idx[0], idx[1]) if m.axis == 0 else (idx[1], idx[0])
            return g.symbol(name, r, s)
        return g.symbol(name, idx[0], 1) if m.indexed(name) or name == m.gradient \
            else g.symbol(name, None, idx[0])
    e = e.xreplace({t: symbol(t) for t in e.atoms(sp.Indexed)})
    return e.xreplace({t: g.template(t, {}, c) for t in e.atoms(sp.Symbol)
                       if t.name in m.names})


def matrix_report(m: Model, n: int, d: int, timeout: float | None = None) -> list[Result]:
    """verify's claims for N x D, `matrix/form`, and `vector/d<leaf>` for each element leaf
    whose closed form has the shape of `model_vector.vector_form`."""
    from ..verify_model import verify_model
    from .model_vector import vector_form, vector_result

    out = [*verify_model(m, n, d, timeout=timeout), prove_matrix_form(m.instantiate(n, d))]
    g = m.instantiate(n)
    for leaf in m.results:
        form = vector_form(g, leaf) if m.leaves[leaf] == "element" else None
        if form is not None:
            out.append(vector_result(g, leaf, form))
    return out


def matrix_section(b: _Builder, m: Model, n: int, d: int, report) -> None:
    """The section: the array's layout, each result for set c, the verdicts for D sets."""
    from .model import i, j

    p = b.p
    b.add(r"\section{The results in matrix form}")
    x = next((name for name, kind in m.leaves.items() if kind == "element"), "x")
    big = p.doprint(sp.Symbol(x.upper()))
    if m.axis == 0:
        shape = (rf"${big} \in \mathbb{{R}}^{{N \times D}}$, column $c$ is set $c$ "
                 rf"(entries ${p.doprint(_at(m, x, i))}$)")
    else:
        shape = (rf"${big} \in \mathbb{{R}}^{{D \times N}}$, row $c$ is set $c$ (entries "
                 rf"${p.doprint(_at(m, x, i))}$; leading batch axes flattened into $D$)")
    shared = [name for name in m.leaves if not _per_set(m, name)]
    per = [name for name in m.leaves if _per_set(m, name) and not m.indexed(name)]
    parts = []
    if per:
        parts.append("one value per set: " + ", ".join(
            f"${p.doprint(_at(m, name, None))}$" for name in per))
    if shared:
        parts.append("shared by every set: " + ", ".join(
            f"${p.doprint(_template(m, name))}$" for name in shared))
    b.add(rf"The model reduces along array axis ${m.axis}$: for $D$ sets the input is "
          rf"{shape}; the gradient has the same layout.  "
          + ("Of the other leaves, " + "; ".join(parts) + ".  " if parts else "")
          + r"Each set's derivatives are the closed forms with the set index $c$; the "
            r"derivative of a leaf shared by the sets is the sum over the sets:")
    items = []
    for leaf in m.results:
        lhs, rhs = matrix_results(m, leaf)
        ids = [f"{mode}/d{leaf}" for mode in ("forward", "backward", "forward=backward")]
        verdicts = [r for r in report if r.id in [*ids, "matrix/form"]]
        worst = next((r for r in verdicts if r.verdict != PROVED), verdicts[0]) \
            if verdicts else None
        items.append((f"matrix:{leaf}", (lhs, rhs), getattr(worst, "verdict", None)))
    if items:
        b.align_group(items, width=0.8)
    from .model_vector import vector_form

    g = m.instantiate(n)
    for leaf in m.results:
        form = vector_form(g, leaf) if m.leaves[leaf] == "element" else None
        result = next((r for r in report if r.id == f"vector/d{leaf}"), None)
        if form is None or result is None:
            continue
        name = p.doprint(sp.Symbol(leaf))
        b.add(rf"In matrix form for one set, with ${name}$ and "
              rf"${p.partial(sp.Symbol('f'), sp.Symbol(m.output))}$ that set's vectors (a "
              + ("column" if m.axis == 0 else "row") + rf" of the arrays), for $N = {n}$ "
              rf"(\texttt{{vector/d{escape(leaf)}}}: each entry of the right-hand side is "
              r"proved equal to the closed form's):")
        b.align(f"vector:{leaf}", (Partial(sp.Symbol("f"), sp.Symbol(leaf)), form),
                verdict=result.verdict, width=0.9)
    y = m.output
    indep = next((r for r in report if r.id == "sets/independent"), None)
    b.add(r"The sets do not interact: an output of one set does not depend on the element "
          r"leaves of another,")
    zero = [(f"matrix:independent:{name}", (Partial(_at(m, y, i), _at(m, name, j, C2)),
                                             sp.Integer(0)),
             getattr(indep, "verdict", None)) for name in m.leaves
            if m.leaves[name] == "element"]
    b.align_group(zero, note=r"\text{for } c \neq c'", number=False)
    b.add(rf"Each claim is decided for $N = {n}$ and $D = {d}$ (\texttt{{symbn verify "
          rf"-{{}}-model {escape(m.name)} -{{}}-n {n} -{{}}-d {d}}}), every set and every "
          r"row; \texttt{matrix/form}: each equation above, at every set $c$ and row $j$, is "
          r"proved equal to the closed form verify decided:")
    b.add(r"\begin{center}\begin{tabular}{ll}")
    for r in report:
        b.add(rf"\texttt{{{escape(r.id)}}} & {verdict_latex(r, n, p).strip()} \\")
    b.add(r"\end{tabular}\end{center}")


def _template(m: Model, name: str):
    from .model import _template as template

    return template(m, name)
