r"""LaTeX and PDF export: the derivation as typeset mathematics, every equation machine-checked.

>>> import sympy as sp
>>> print(latex(sp.sqrt(sp.Symbol("v") + sp.Symbol("eps"))))
\sqrt{v + \epsilon}

The modules, each with one responsibility:

    printer        `Printer` and `latex` in the note's notation; `escape`, `prose` (whitelisted
                   inline math) for text
    document       `Equation`, `Document`, the preamble, `_Builder`, verdict and witness lines,
                   the derivation's steps, the colophon (`_finish`)
    batchnorm      the BatchNorm document for one N: `SETUP`, `EDGES`, the figure, the paths,
                   the results; `build`, and `write`/`export` (what `symbn latex` does)
    batchnorm_all  the BatchNorm document for every N (`build_all`, verdicts of symbn.general)
    model          the document of any model file (`build_model`, `layout`, `figure`)
    model_all      any model's document for every N (`build_model_all`, symbn.every_n)
    model_matrix   a model's results in matrix form for D sets along its axis (`--d D`)
    model_vector   one set's gradient as a matrix times df/dy, proved entry by entry
    jupyter        `report_markdown`, `report_latex` for `Report` in notebooks

The PDF compiler is `symbn.pdf` (no SymPy, so the command line checks `-o` first).
"""

from __future__ import annotations

from ..derivation import N
from ..pdf import check_output, compile_pdf
from .batchnorm import (
    BETA,
    DY,
    EDGES,
    EPS,
    GAMMA,
    MU,
    SETUP,
    SIGMA,
    XHAT,
    F,
    V,
    X,
    Y,
    build,
    edge_results,
    export,
    graph_figure,
    i,
    j,
    jacobian_result,
    k,
    matrix_form,
    matrix_result,
    path_families,
    write,
)
from .batchnorm_all import build_all
from .document import ALL, Document, Equation, verdict_latex, witness_latex
from .jupyter import report_latex, report_markdown
from .printer import Partial, Printer, escape, latex, prose

__all__ = [
    "ALL", "BETA", "DY", "EDGES", "EPS", "GAMMA", "MU", "SETUP", "SIGMA", "XHAT", "Document",
    "Equation", "F", "N", "Partial", "Printer", "V", "X", "Y", "build", "build_all",
    "check_output", "compile_pdf", "edge_results", "escape", "export",
    "graph_figure", "i", "j", "jacobian_result", "k", "latex", "matrix_form", "matrix_result",
    "path_families", "prose", "report_latex", "report_markdown", "verdict_latex", "witness_latex",
    "write",
]
