"""The BatchNorm document for one N: the note's definitions, graph, paths and results.

The expressions printed are the ones symbn proved: derivation steps come from the derivation
file and are judged by `symbn.check`, the graph's local partials (`EDGES`) are proved equal to
`differentiate.local_partial`, the final results are `closed_form`'s expressions judged by
`verify`.  For every N at once (``n="all"``) `build` hands over to `batchnorm_all.build_all`.

>>> [r.verdict for r in edge_results(BatchNorm(2))] == ["proved"] * len(EDGES)
True
"""

from __future__ import annotations

import os
import time
from itertools import pairwise

import sympy as sp

from .. import io
from ..derivation import INDEX, INDEXED, SCALARS, N, instantiate
from ..errors import SymbnError
from ..io import Target
from ..model import BatchNorm, as_expr
from ..pdf import check_output, compile_pdf
from ..prove import DISPROVED, PROBABLE, PROVED, UNKNOWN
from .document import (
    ALL,
    Document,
    _Builder,
    _finish,
    _steps_section,
    edges_verdict,
    verdict_latex,
)
from .printer import _MODEL_NAME, Partial, Printer, escape

# -- index-generic templates of the model -------------------------------------------------

# the derivation language's names, so that templates of both kinds mean the same thing
i, j, k = (INDEX[name] for name in "ijk")
X, XHAT, Y, DY = (INDEXED[name] for name in ("x", "xhat", "y", "dy"))
MU, V, EPS, GAMMA, BETA, SIGMA, F = (SCALARS[name] for name in
                                     ("mu", "v", "eps", "gamma", "beta", "sigma", "f"))

# The note's definitions, checked against the model's nodes for the document's N.
SETUP: list[tuple[sp.Expr, sp.Expr]] = [
    (MU, sp.Sum(X[i], (i, 1, N)) / N),
    (V, sp.Sum((X[i] - MU) ** 2, (i, 1, N)) / N),
    (SIGMA, sp.sqrt(V + EPS)),
    (XHAT[i], (X[i] - MU) / SIGMA),
    (Y[i], sp.Add(GAMMA * XHAT[i], BETA, evaluate=False)),
]

# The note's label of each edge parent -> child (its local partial ∂child/∂parent), in the
# note's order; which edges exist is read off models/batchnorm.toml (`_edges`), and each label
# is proved equal to differentiate.local_partial for every index assignment at the document's
# N.  x_j is a direct parent of x̂_i only when i = j, hence the Kronecker delta.
_LABELS = {
    ("mu", "x"): 1 / N,
    ("v", "x"): 2 / N * (X[j] - MU),
    ("v", "mu"): -2 * sp.Sum(X[i] - MU, (i, 1, N)) / N,
    ("xhat", "x"): sp.KroneckerDelta(i, j) / SIGMA,
    ("xhat", "mu"): -1 / SIGMA,
    ("xhat", "v"): sp.Mul(sp.Rational(-1, 2), X[i] - MU, SIGMA ** -3),
    ("y", "xhat"): GAMMA,
    ("y", "gamma"): XHAT[i],
    ("y", "beta"): sp.Integer(1),
    ("f", "y"): DY[i],
}


def _edges() -> list[tuple[sp.Expr, sp.Expr, sp.Expr]]:
    """(child, parent, label) of every edge of the model file's graph but the parameter eps's
    (the note's figure leaves it out): an element node at row i, its element parents at j
    (at i for a same-row node parent), scalars bare."""
    from ..models import load

    m = load("batchnorm")
    pairs = [(c, p) for c, d in m.nodes.items() for p in d.parents if m.kind(p) != "positive"]
    pairs.append(("f", m.output))
    missing = [pair for pair in pairs if pair not in _LABELS]
    if missing or len(pairs) != len(_LABELS):
        raise SymbnError(f"the document's figure has no label for the edge(s) {missing} of "
                         "models/batchnorm.toml (or labels an edge it lacks)")

    def node(name: str, row) -> sp.Expr:
        return sp.IndexedBase(name)[row] if m.indexed(name) else sp.Symbol(name)

    def parent(child: str, name: str) -> sp.Expr:
        same_row = (child == "f" or m.indexed(child)) and name in m.nodes
        return node(name, i if same_row else j)

    order = list(_LABELS)
    return [(node(c, i) if c != "f" else F, parent(c, p), _LABELS[(c, p)])
            for c, p in sorted(pairs, key=order.index)]


EDGES: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = _edges()


def _assignments(exprs, n: int) -> list[dict]:
    """Every assignment of the free indices i, j in 1..N."""
    free = sorted(set().union(*(as_expr(e).free_symbols for e in exprs)) & {i, j}, key=str)
    out = [{}]
    for s in free:
        out = [{**a, s: v} for a in out for v in range(1, n + 1)]
    return out


# -- sections ---------------------------------------------------------------------------------


def _setup(b: _Builder, results: list, size: str, batch: str = "") -> None:
    """The note's definitions, each with its verdict against symbn's model for `size`."""
    p = b.p
    b.add(r"\section{Setup}")
    b.add(r"Because the columns of $X$ are independent, consider one column $x \in "
          rf"\mathbb{{R}}^N$ of the batch{batch}.  The forward computation is")
    b.align_group([(f"setup:{lhs}", (lhs, rhs), result.verdict)
                   for (lhs, rhs), result in zip(SETUP, results)])
    b.add(rf"with ${p.doprint(EPS)} > 0$ a small constant that keeps the division defined, and "
          rf"$f$ an arbitrary differentiable scalar function of $y$ whose gradient "
          rf"${p.doprint(DY[i])}$ is given.  Wanted: ${p.partial(F, X[j])}$, "
          rf"${p.partial(F, GAMMA)}$ and ${p.partial(F, BETA)}$.")
    mark = r"\proved" if all(r.verdict == PROVED for r in results) else r"\disproved"
    b.add(rf"Each definition agrees with symbn's model of the graph for {size} "
          rf"(exact, every $i$): {mark}.")


def _prove_all(alg, bn: BatchNorm, lhs, rhs, cid: str):
    """lhs = rhs for every index assignment at the model's N."""
    from ..report import Result

    start = time.monotonic()
    for a in _assignments((lhs, rhs), bn.n):
        outcome = alg.decide(instantiate(lhs, bn, a), instantiate(rhs, bn, a))
        if outcome.verdict != PROVED:
            return Result(cid, outcome.verdict, outcome.method, time.monotonic() - start,
                          outcome.witness, outcome.note)
    return Result(cid, PROVED, "exact", time.monotonic() - start)


def edge_results(bn: BatchNorm, alg=None) -> list:
    """Each edge's local partial template proved equal to `local_partial` on the model."""
    from ..differentiate import local_partial
    from ..prove import Algebra
    from ..report import Result

    alg = alg or Algebra(bn)
    out = []
    for child, parent, value in EDGES:
        start = time.monotonic()
        result = None
        for a in _assignments((child, parent), bn.n):
            c, par = instantiate(child, bn, a), instantiate(parent, bn, a)
            actual = local_partial(bn, c, par) if par in bn.nodes[c].parents else sp.Integer(0)
            outcome = alg.decide(instantiate(value, bn, a), actual)
            if outcome.verdict != PROVED:
                result = Result(f"edge/{child}<-{parent}", outcome.verdict, outcome.method,
                                time.monotonic() - start, outcome.witness, outcome.note)
                break
        out.append(result or Result(f"edge/{child}<-{parent}", PROVED, "exact",
                                    time.monotonic() - start))
    return out


# node positions of the figure (cm), in the note's left-to-right order
_POSITIONS = {X[j]: (0, 0), MU: (2.6, 2.8), V: (7.4, 2.8), XHAT[i]: (10, 0),
              GAMMA: (12.6, 2.2), BETA: (12.6, -2.2), Y[i]: (12.6, 0), F: (15.2, 0)}
_LABEL_SIDE = {(MU, X[j]): "above left", (V, X[j]): "below right", (V, MU): "above",
               (XHAT[i], X[j]): "below", (XHAT[i], MU): "above right",
               (XHAT[i], V): "above right", (Y[i], XHAT[i]): "below",
               (Y[i], GAMMA): "right", (Y[i], BETA): "right", (F, Y[i]): "below"}


def graph_figure(printer: Printer, results: list) -> str:
    """The backward computation graph as TikZ: nodes, edges with their local partials."""
    names = {node: f"n{idx}" for idx, node in enumerate(_POSITIONS)}
    lines = [r"\begin{figure}[H]", r"\centering",
             r"\resizebox{\linewidth}{!}{%",
             (r"\begin{tikzpicture}[>={Stealth[length=2.4mm]},"
             r" node/.style={circle,draw,thick,minimum size=10mm,inner sep=1pt},"
             r" edge/.style={->,thick}, lab/.style={font=\normalsize,inner sep=2pt}]")]
    for node, (px, py) in _POSITIONS.items():
        lines.append(rf"\node[node] ({names[node]}) at ({px},{py}) "
                     rf"{{${printer.doprint(node)}$}};")
    for (child, parent, value), result in zip(EDGES, results):
        color = "" if result.verdict == PROVED else ",red"
        side = _LABEL_SIDE.get((child, parent), "above")
        lines.append(rf"\draw[edge{color}] ({names[parent]}) -- node[lab,{side}] "
                     rf"{{${printer.doprint(value)}$}} ({names[child]});")
    lines += [r"\end{tikzpicture}}",
              (r"\caption{The computation graph.  Each edge carries the local partial "
              r"derivative of its head with respect to its tail, the other parents held "
              r"fixed; backward mode multiplies them along every path from $f$ back to "
              r"$x_j$ and sums over the paths.}"),
              r"\label{fig:graph}", r"\end{figure}"]
    return "\n".join(lines)


def path_families(bn: BatchNorm, j_row: int = 1) -> list[tuple[tuple, int]]:
    """Paths from f back to x_j, with the row of x̂, y written generically as i.

    Returns (template path from f to x_j, number of concrete paths it stands for).

    >>> [(len(p), count) for p, count in path_families(BatchNorm(3))]
    [(6, 3), (5, 3), (5, 3), (4, 1)]
    """
    from ..differentiate import paths

    def generic(s: sp.Symbol):
        m = _MODEL_NAME.fullmatch(s.name)
        base, index = m.group(1), m.group(2)
        if index is None:
            return {"mu": MU, "v": V, "f": F, "gamma": GAMMA, "beta": BETA}[base]
        return {"x": X, "xhat": XHAT, "y": Y}[base][j if base == "x" else i]

    counts: dict[tuple, int] = {}
    for path in paths(bn, bn.x(j_row)):
        key = tuple(generic(s) for s in reversed(path))
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-len(kv[0]), -kv[1]))


def _paths_section(b: _Builder, bn: BatchNorm) -> None:
    p = b.p
    families = path_families(bn)
    total = sum(count for _, count in families)
    b.add(rf"For $N = {bn.n}$ there are {total} paths from $f$ back to $x_j$ "
          r"(symbn enumerates them on the graph); with the row of $\hat{x}$ and $y$ written "
          r"as $i$ they fall into these families, each contributing the product of the local "
          r"partials along it:")
    b.add(r"\begin{center}\renewcommand{\arraystretch}{2.4}\begin{tabular}{lll}")
    for path, count in families:
        arrows = r" \to ".join(p.doprint(s) for s in path)
        product = " ".join(p.partial(a, c) for a, c in pairwise(path))
        where = rf"{count} path" + ("s" if count > 1 else "") + \
            (r", $i = j$ only" if count == 1 and bn.n > 1 else r", one per $i$")
        b.add(rf"${arrows}$ & $\displaystyle {product}$ & ({where}) \\")
    b.add(r"\end{tabular}\end{center}")


def _results_section(b: _Builder, bn: BatchNorm, report, expand: bool, alg) -> None:
    from .. import closed_form

    p = b.p
    b.add(r"\section{Results}")
    b.add(r"symbn differentiates the graph in forward mode (composing every node down to the "
          r"leaves) and in backward mode (the sum over paths above), and proves both equal "
          rf"to the closed forms below, for $N = {bn.n}$:")
    rows = list(bn.rows())
    dx = [closed_form.dx(bn, row) for row in rows]
    linear = matrix_result(bn, dx, alg)
    b.add(r"\begin{center}\begin{tabular}{ll}")
    for r in [*report, linear]:
        b.add(rf"\texttt{{{escape(r.id)}}} & {verdict_latex(r, bn.n, p).strip()} \\")
    b.add(r"\end{tabular}\end{center}")
    b.add(r"In matrix form, for one column $x$ of $X$ (every column alike; "
          r"\texttt{matrix/form}: each entry of the right-hand side is proved equal to the "
          r"closed form's):")
    b.align("result:dx", (Partial(F, sp.Symbol("x")), matrix_form(bn)), width=0.8,
            verdict=_combined([*report, linear], "forward/dx", "backward/dx", "matrix/form"))
    dgamma, dbeta = closed_form.dgamma(bn), closed_form.dbeta(bn)
    b.align_group([
        ("result:dgamma", (Partial(F, GAMMA), dgamma),
         _combined(report, "forward/dgamma", "backward/dgamma")),
        ("result:dbeta", (Partial(F, BETA), dbeta),
         _combined(report, "forward/dbeta", "backward/dbeta"))], width=0.8)
    if expand:
        b.add(r"\subsection*{Expanded}")
        b.add(r"The normalized inputs and the entries of the Jacobian $J$ of "
              rf"${p.partial(F, sp.Symbol('x'))}$ (so that "
              rf"${p.partial(F, sp.Symbol('x'))} = J {p.partial(F, sp.Symbol('y'))}$) with $\mu$ "
              r"and $v$ replaced by their definitions, in the leaves $x_i$, $\epsilon$, "
              r"$\gamma$ (\texttt{matrix/jacobian}: each row of $J$ times "
              rf"${p.partial(F, sp.Symbol('y'))}$ is proved equal to the closed form):")
        jac = sp.ImmutableMatrix(bn.n, bn.n,
                                 lambda r, c: closed_form.unit_dy(bn, dx[r], c + 1))
        jres = jacobian_result(bn, jac, dx, alg)
        b.add(verdict_latex(jres, bn.n, p, r"\texttt{matrix/jacobian}"))
        b.align_group([(f"expanded:xhat{r}", (bn.xhat(r), bn.compose(bn.xhat(r))), PROVED)
                       for r in rows], number=False, width=0.85)
        jname = sp.IndexedBase("J")
        b.align_group([(f"expanded:J{r + 1}{c + 1}", (jname[r + 1, c + 1], bn.compose(jac[r, c])),
                        jres.verdict) for r in range(bn.n) for c in range(bn.n)],
                      number=False, width=0.85)


def jacobian_result(bn: BatchNorm, jac, dx: list, alg=None):
    """Row r of the Jacobian times dy equals the closed form's entry r (it is linear in dy)."""
    from ..prove import Algebra
    from ..report import Result

    alg = alg or Algebra(bn)
    start = time.monotonic()
    for r, entry in enumerate(dx):
        product = sp.Add(*[jac[r, c] * bn.dy(c + 1) for c in range(bn.n)])
        outcome = alg.decide(product, entry)
        if outcome.verdict != PROVED:
            return Result("matrix/jacobian", outcome.verdict, outcome.method,
                          time.monotonic() - start, outcome.witness, f"row {r + 1}")
    return Result("matrix/jacobian", PROVED, "exact", time.monotonic() - start)


def matrix_form(bn: BatchNorm) -> sp.Expr:
    """df/dx = gamma / sigma (I - 1/N 1 1^T - 1/N xhat xhat^T) df/dy, unevaluated.

    >>> matrix_form(BatchNorm(2)).as_explicit().shape
    (2, 1)
    """
    n = bn.n
    ones = sp.ImmutableMatrix(sp.ones(n, n))
    xh = sp.ImmutableMatrix([bn.xhat(r) for r in bn.rows()])
    dyv = sp.ImmutableMatrix([bn.dy(r) for r in bn.rows()])
    inner = sp.MatAdd(sp.Identity(n), sp.MatMul(sp.Rational(-1, n), ones, evaluate=False),
                      sp.MatMul(sp.Rational(-1, n), xh, xh.T, evaluate=False), evaluate=False)
    return sp.MatMul(bn.gamma() / bn.sigma(), inner, dyv, evaluate=False)


def matrix_result(bn: BatchNorm, dx: list, alg=None):
    """Each entry of `matrix_form` equals the closed form's entry."""
    from ..prove import Algebra
    from ..report import Result

    alg = alg or Algebra(bn)
    start = time.monotonic()
    vector = matrix_form(bn).as_explicit()
    for r, entry in enumerate(dx):
        outcome = alg.decide(vector[r], entry)
        if outcome.verdict != PROVED:
            return Result("matrix/form", outcome.verdict, outcome.method,
                          time.monotonic() - start, outcome.witness, f"row {r + 1}")
    return Result("matrix/form", PROVED, "exact", time.monotonic() - start)


def _combined(results, *ids) -> str:
    verdicts = [r.verdict for r in results if r.id in ids]
    for v in (DISPROVED, UNKNOWN, PROBABLE):
        if v in verdicts:
            return v
    return PROVED


def build(derivation=None, n: int = 3, expand: bool = False,
          timeout: float | None = None) -> Document:
    """The LaTeX document of the derivation for N = n (``n="all"``: for every N, `build_all`).

    `derivation` is a path or a shipped name (default: the note, ``batchnorm``); False leaves
    out the step-by-step section.

    >>> doc = build(derivation=False, n=2)
    >>> doc.tex.startswith("\\\\documentclass"), doc.equation("result:dbeta").verdict
    (True, 'proved')
    """

    from ..prove import Algebra
    from ..verify import verify

    if n == ALL:
        from .batchnorm_all import build_all

        if expand:
            raise SymbnError("expand=True prints concrete-N expressions and has no meaning with "
                             "n='all'; drop expand=True or give a size such as n=3")
        return build_all(derivation, timeout=timeout)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SymbnError(f"n must be a positive integer, got {n!r}; try n=3")
    start = time.monotonic()
    deriv = _load(derivation)
    printer = Printer()
    bn = BatchNorm(n)
    alg = Algebra(bn)
    b = _Builder(n, printer)
    reports: dict = {}
    setup = [_prove_all(alg, bn, lhs, rhs, f"setup/{lhs}") for lhs, rhs in SETUP]
    title = deriv.title if deriv is not None else "Backpropagation through BatchNorm"
    source = getattr(deriv, "source", None) if deriv is not None else None

    reports["setup"] = setup
    _setup(b, setup, rf"$N = {bn.n}$")

    b.add(r"\section{The computation graph}")
    edges = edge_results(bn, alg)
    reports["edges"] = edges
    b.add(graph_figure(printer, edges))
    b.add(r"Figure~\ref{fig:graph} shows the graph.  Every local partial on its edges is "
          r"proved equal to the derivative of the node's definition with respect to that "
          rf"parent, for $N = {n}$ and every $i$, $j$: " + edges_verdict(edges))
    _paths_section(b, bn)

    def left() -> float | None:
        return None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)

    if deriv is not None:
        from ..check import check

        report = check(deriv, n, timeout=left())
        reports["check"] = report
        _steps_section(b, deriv, report)
    vreport = verify(n=n, timeout=left())
    reports["verify"] = vreport
    _results_section(b, bn, vreport, expand, alg)

    return _finish(b, reports, n, rf"$N = {n}$", title, source, start)


def _load(derivation):
    from ..derivation import load

    return None if derivation is False else load("batchnorm" if derivation is None else derivation)


# -- output -------------------------------------------------------------------------------------


def write(doc: Document | str, path: str | os.PathLike, fmt: str | None = None) -> Target:
    """Write the document through symbn.io: LaTeX source, or compiled with pdflatex for pdf."""
    where, fmt = check_output(path, fmt)
    tex = doc.tex if isinstance(doc, Document) else doc
    return io.write(where, tex if fmt == "tex" else compile_pdf(tex))


def export(path: str | os.PathLike, derivation=None, n: int = 3, expand: bool = False,
           timeout: float | None = None, fmt: str | None = None,
           model: str | None = None) -> tuple[Document, Target]:
    """Check the path, build the document, write it: what `symbn latex` does.  A model other
    than batchnorm (given, or named by the derivation file) gets `model.build_model`."""
    check_output(path, fmt)
    spec = getattr(_load(derivation), "spec", None) if derivation not in (None, False) \
        else None
    if model in (None, "batchnorm") and spec is None:
        doc = build(derivation, n=n, expand=expand, timeout=timeout)
    else:
        from .model import build_model

        if expand:
            raise SymbnError("expand=True prints BatchNorm's Jacobian entries; drop it for "
                             "other models")
        doc = build_model(model or spec, derivation=derivation, n=n, timeout=timeout)
    return doc, write(doc, path, fmt)
