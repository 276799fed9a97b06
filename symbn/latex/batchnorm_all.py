"""The BatchNorm document for every N at once (N a symbol), with verdicts from symbn.general.

Same sections as `batchnorm.build` for one N; the paths are symbn.general's path families.

>>> b = _Builder(ALL, Printer())
>>> _paths_section_all(b)
>>> "there are 4 families of paths" in b.body[0]
True
"""

from __future__ import annotations

import time
from itertools import pairwise

import sympy as sp

from .batchnorm import EDGES, MU, SETUP, XHAT, F, V, X, Y, _load, _setup, graph_figure, i, j
from .document import ALL, Document, _Builder, _finish, _steps_section, edges_verdict
from .printer import Printer, escape


def build_all(derivation=None, timeout: float | None = None) -> Document:
    """The LaTeX document of the derivation proved for every N (N a symbol), by symbn.general.

    Same sections as for one N, with verdicts from `general.check_all` (steps) and
    `general.verify_all` (rules, lemmas, theorems); nothing specific to one N is printed.

    >>> doc = build_all(derivation=False)
    >>> doc.n, doc.equation("claim:backward/dx").verdict, "every $N$" in doc.tex
    ('all', 'proved', True)
    """

    from .. import general

    start = time.monotonic()
    deriv = _load(derivation)
    printer = Printer()
    b = _Builder(ALL, printer)
    reports: dict = {}
    title = deriv.title if deriv is not None else "Backpropagation through BatchNorm"
    source = getattr(deriv, "source", None) if deriv is not None else None

    def left() -> float | None:
        return None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)

    # the note's definitions are the symbolic-N model's (general.translate composes nodes)
    setup = [general.prove(f"setup/{lhs}", general.translate(lhs), general.translate(rhs),
                           f"{lhs} as defined") for lhs, rhs in SETUP]
    reports["setup"] = setup
    _setup(b, setup, "symbolic $N$", r", for any batch size $N \geq 1$")

    b.add(r"\section{The computation graph}")
    edges = [general.prove(f"edge/{child}<-{parent}", general.translate(value),
                           general.translate(_derivation_partial(child, parent)),
                           f"d {child} / d {parent}") for child, parent, value in EDGES]
    reports["edges"] = edges
    b.add(graph_figure(printer, edges))
    b.add(r"Figure~\ref{fig:graph} shows the graph.  Every local partial on its edges is "
          r"proved equal to the derivative of the node's definition with respect to that "
          r"parent, for every $N$ (symbolic) and every $i$, $j$ with $1 \leq i, j \leq N$: "
          + edges_verdict(edges))
    _paths_section_all(b)

    if deriv is not None:
        report = general.check_all(deriv, timeout=left())
        reports["check"] = report
        _steps_section(b, deriv, report)
    vreport = general.verify_all(timeout=left(), steps=None)
    reports["verify"] = vreport
    _claims_section(b, vreport)

    return _finish(b, reports, ALL, r"every $N$ (symbolic)", title, source, start)


def _derivation_partial(child, parent) -> sp.Expr:
    from ..derivation import P

    return P(child, parent)


def _paths_section_all(b: _Builder) -> None:
    from .. import general

    p = b.p
    nodes = {"x_j": X[j], "mu": MU, "v": V, "xhat_i": XHAT[i], "y_i": Y[i], "f": F}
    families = sorted(general.path_families(), key=len, reverse=True)
    b.add(rf"From $f$ back to $x_j$ there are {len(families)} families of paths, each "
          r"taken once per row $i$ (symbn walks the graph for symbolic $N$); each contributes "
          r"the product of the local partials along it, summed over $i = 1, \ldots, N$:")
    b.add(r"\begin{center}\renewcommand{\arraystretch}{2.4}\begin{tabular}{lll}")
    for family in families:
        path = [nodes[name] for name in reversed(family)]
        arrows = r" \to ".join(p.doprint(s) for s in path)
        product = " ".join(p.partial(a, c) for a, c in pairwise(path))
        where = r"only $i = j$ contributes" if len(path) == 4 else r"one per $i$"
        b.add(rf"${arrows}$ & $\displaystyle {product}$ & ({where}) \\")
    b.add(r"\end{tabular}\end{center}")


def _claims_section(b: _Builder, report) -> None:
    """The rules R1-R3, then every lemma and theorem of `general.verify_all`, typeset."""
    from .. import general

    rules = general.rule_equations()
    claims = {cid: (lhs, rhs) for cid, lhs, rhs, _ in general.claims()}
    b.add(r"\section{Rules, lemmas and theorems for every \texorpdfstring{$N$}{N}}")
    b.add(r"symbn decides an identity for symbolic $N$ by bringing both sides to a canonical "
          r"form with three summation rules, each checked by SymPy's own summation code:")
    for r in report:
        if r.id in rules:
            b.align(f"claim:{r.id}", rules[r.id], verdict=r.verdict)
            b.verdict(r, rf"\texttt{{{escape(r.id)}}}")
    b.add(r"With them it proves the lemmas, forward mode (SymPy's \texttt{diff} of the "
          r"composed expressions), backward mode (the sum over the path families above) and "
          r"the closed forms, each side printed as the expression symbn decided:")
    for r in report:
        if r.id in claims:
            lhs, rhs = claims[r.id]
            b.add(rf"\paragraph{{\texttt{{{escape(r.id)}}}}}")
            b.align(f"claim:{r.id}", (lhs(), rhs()), verdict=r.verdict)
            b.verdict(r, "")
