"""`symbn latex --model M`: the document of any model file, checked for a concrete N.

Everything is read from the model: the setup from its node definitions and names, the
figure from its graph (a layered layout computed from the edges: element leaves on the left,
f on the right, each other leaf beside its first child), each edge labelled with its local
partial (SymPy's `diff` of the node's template, sums over a Kronecker delta evaluated, then
proved equal to `differentiate.local_partial` for every index assignment at the document's
N), the paths from each leaf to f, the steps of a derivation file on that model, and the
closed forms of `[results]` with the verdicts of `symbn verify --model M`.

>>> doc = build_model("rmsnorm", n=2)
>>> doc.equation("result:x").verdict, "tikzpicture" in doc.tex
('proved', True)
"""

from __future__ import annotations

import time

import sympy as sp

from ..derivation import INDEX
from ..errors import SymbnError
from ..graph import INDEXED_KINDS, Model
from ..prove import PROVED, Algebra
from ..report import Result
from .document import ALL, Document, _Builder, _finish, _steps_section, edges_verdict
from .printer import Printer, escape

i, j, k = INDEX["i"], INDEX["j"], INDEX["k"]
F = sp.Symbol("f")
_STEP_X, _STEP_Y = 3.6, 2.4  # cm between layers, between nodes of one layer


def build_model(model: Model | str, derivation=None, n: int | str = 3,
                timeout: float | None = None, d: int | None = None) -> Document:
    """The LaTeX document of `model` (a Model, shipped name or path) for N = n; n="all"
    for every N (`model_all.build_model_all`); d sets add the results in matrix form."""
    from ..models import load
    from ..verify_model import MAX_CELLS, verify_model

    m = model if isinstance(model, Model) else load(model)
    if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
        raise SymbnError(f"d must be a positive integer (the number of sets), got {d!r}; "
                         "try d=2")
    if n == ALL:
        if d is not None:
            raise SymbnError("d= has no meaning with n='all', which proves one set for every "
                             f"N; the sets are checked for a size, such as n={max(3, m.min_n)}, "
                             "d=2")
        from .model_all import build_model_all

        return build_model_all(m, derivation, timeout=timeout)
    if isinstance(n, bool) or not isinstance(n, int) or n < max(1, m.min_n):
        raise SymbnError(f"n must be an integer >= {max(1, m.min_n)} for {m.name}, got {n!r}; "
                         f"try n={max(3, m.min_n)}")
    if d is not None and n * d > MAX_CELLS:
        raise SymbnError(f"n={n} with d={d} is beyond the limit of {MAX_CELLS} elements; use a "
                         "smaller n= or d=")
    start = time.monotonic()
    deriv = _derivation(derivation, m)
    g = m.instantiate(n)
    alg = Algebra(g)
    b = _Builder(n, Printer())
    reports: dict = {}
    _setup(b, m)
    edges = _edges(m)
    reports["edges"] = [_prove_edge(g, alg, child, parent, label)
                        for child, parent, label in edges]
    b.add(r"\section{The computation graph}")
    b.add(figure(m, edges, reports["edges"], b.p))
    b.add(r"Figure~\ref{fig:graph} shows the graph read from the model file.  Each edge "
          r"carries the local partial derivative of its head with respect to its tail, the "
          r"other parents held fixed, proved equal to the derivative of the node's definition "
          rf"for $N = {n}$ and every $i$, $j$: " + edges_verdict(reports["edges"]))
    _paths(b, m)

    def left() -> float | None:
        return None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)

    if deriv is not None:
        from ..check import check

        reports["check"] = check(deriv, n, timeout=left())
        _steps_section(b, deriv, reports["check"])
    reports["verify"] = verify_model(m, n, timeout=left())
    _results(b, m, reports["verify"], d)
    if d is not None:
        from .model_matrix import matrix_report, matrix_section

        reports["matrix"] = matrix_report(m, n, d, timeout=left())
        matrix_section(b, m, n, d, reports["matrix"])
    title = deriv.title if deriv is not None else f"Backpropagation through {m.title}"
    source = (getattr(deriv, "source", None) if deriv is not None else None) or m.source
    size = rf"$N = {n}$" + (rf", $D = {d}$ sets" if d is not None else "")
    return _finish(b, reports, n, rf"model \texttt{{{escape(m.name)}}}, {size}", title, source,
                   start)


def export_model(path, model: Model | str | None = None, derivation=None, n: int | str = 3,
                 d: int | None = None, timeout: float | None = None, fmt: str | None = None):
    """Check the path, build the model's document, write it: `symbn latex --model M --d D`.

    The batchnorm document states its matrix form for one column and takes no d.

    >>> export_model("x.tex", "batchnorm", d=2)
    Traceback (most recent call last):
    symbn.errors.SymbnError: d= gives the matrix form of models other than batchnorm (the batchnorm document states its own, for one column); drop d=, or give another model
    """
    from ..derivation import load
    from ..pdf import check_output
    from .batchnorm import write

    check_output(path, fmt)
    spec = load(derivation).spec if derivation not in (None, False) else None
    if model in (None, "batchnorm") and spec is None:
        raise SymbnError("d= gives the matrix form of models other than batchnorm (the "
                         "batchnorm document states its own, for one column); drop d=, or "
                         "give another model")
    doc = build_model(model or spec, derivation=derivation, n=n, timeout=timeout, d=d)
    return doc, write(doc, path, fmt)


def _derivation(derivation, m: Model):
    from ..derivation import load

    if derivation in (None, False):
        return None
    d = load(derivation)
    if d.spec is None or d.spec.name != m.name:
        raise SymbnError(f"{d.path}: its model is '{d.model}', not {m.name}; give a derivation "
                         f"file with model = \"{m.name}\"")
    return d


def _template(m: Model, name: str, row=i):
    """The symbol a template uses for leaf or node `name` at `row`: x[i], mu, gamma[j]."""
    return sp.IndexedBase(name)[row] if m.indexed(name) else sp.Symbol(name)


def _setup(b: _Builder, m: Model) -> None:
    p = b.p
    b.add(r"\section{Setup}")
    kinds = {"element": "one per element of a set", "along": "one per position along the "
             "reduction, shared by every set", "set": "one per set", "constant": "a constant",
             "positive": "a positive constant"}
    leaves = ", ".join(rf"${p.doprint(_template(m, name))}$ ({kinds[kind]})"
                       for name, kind in m.leaves.items())
    b.add(rf"The model \texttt{{{escape(m.name)}}} reduces over sets of $N$ elements "
          rf"(array axis ${m.axis}$), $i = 1, \ldots, N$.  Its leaves are {leaves}.  "
          r"The forward computation, node by node, is")
    b.align_group([(f"setup:{name}", (_template(m, name), d.template), None)
                   for name, d in m.nodes.items()], number=True)
    if m.names:
        b.add("with the names")
        b.align_group([(f"name:{name}", (sp.Symbol(name), d.template), None)
                       for name, d in m.names.items()], number=False)
    dy = p.doprint(sp.IndexedBase(m.gradient)[i])
    b.add(rf"and $f$ an arbitrary differentiable scalar function of every "
          rf"${p.doprint(_template(m, m.output))}$ whose gradient ${dy}$ is given"
          + (rf"; the model is defined for $N \geq {m.min_n}$." if m.min_n > 1 else "."))


def _edges(m: Model) -> list[tuple[str, str, sp.Expr]]:
    """(child, parent, local partial template) for every edge, f's included."""
    out = []
    for child, d in m.nodes.items():
        for parent in d.parents:
            wrt = _template(m, parent, j if m.indexed(parent) else None)
            out.append((child, parent, _evaluate_deltas(sp.diff(d.template, wrt))))
    out.append(("f", m.output, sp.IndexedBase(m.gradient)[i]))
    return out


def _evaluate_deltas(e: sp.Expr) -> sp.Expr:
    """Sums over a Kronecker delta of the bound index evaluated (for 1 <= j <= N, which a
    row always is); the label is proved at the document's N, so this only finds it."""
    e = e.doit()
    return e.replace(lambda a: isinstance(a, sp.Piecewise),
                     lambda a: a.args[0][0] if len(a.args) == 2 else a)


def _prove_edge(g, alg: Algebra, child: str, parent: str, label: sp.Expr) -> Result:
    """The label equals local_partial(child[i], parent[j]) for every i, j at this N."""
    from ..differentiate import local_partial

    start = time.monotonic()
    m = g.model
    rows_i = list(g.rows()) if child == "f" or m.indexed(child) else [None]
    rows_j = list(g.rows()) if parent != "f" and m.indexed(parent) else [None]
    if child == "f":
        rows_i, rows_j = [None], list(g.rows())
    cid = f"edge/{child}<-{parent}"
    for a in rows_i:
        for c in rows_j:
            node = g.f if child == "f" else g.symbol(child, a)
            par = g.symbol(parent, c)
            actual = local_partial(g, node, par) if par in g.nodes[node].parents \
                else sp.Integer(0)
            rows = {"i": c if child == "f" else a, "j": c}
            value = g.template(label, {key: r for key, r in rows.items() if r is not None})
            outcome = alg.decide(value, actual)
            if outcome.verdict != PROVED:
                return Result(cid, outcome.verdict, outcome.method, time.monotonic() - start,
                              outcome.witness, outcome.note)
    return Result(cid, PROVED, "exact", time.monotonic() - start)


def layout(m: Model) -> dict[str, tuple[float, float]]:
    """Positions (cm): element leaves in layer 0, each node one layer right of its deepest
    parent (element nodes on one line, set nodes above it), f last, every other leaf below
    its first child, half a layer to its left, then to its right.

    >>> layout(load_model("rmsnorm"))["f"]
    (14.4, 0.0)
    """
    depth: dict[str, int] = {name: 0 for name, kind in m.leaves.items() if kind == "element"}
    for name, d in m.nodes.items():
        depth[name] = 1 + max((depth[p] for p in d.parents if p in depth), default=0)
    depth["f"] = 1 + depth[m.output]
    pos: dict[str, tuple[float, float]] = {}
    above: dict[int, int] = {}  # set nodes stacked above the line, per layer
    for name in [*m.leaves, *m.nodes, "f"]:
        if name not in depth:
            continue
        if name == "f" or m.kind(name) == "element":
            pos[name] = (depth[name] * _STEP_X, 0.0)
        else:
            above[depth[name]] = above.get(depth[name], 0) + 1
            pos[name] = (depth[name] * _STEP_X, above[depth[name]] * _STEP_Y)
    beside: dict[str, int] = {}  # other leaves below their first child, left then right
    for name in m.leaves:
        if name in pos:
            continue
        child = next((c for c, d in m.nodes.items() if name in d.parents), m.output)
        rank = beside[child] = beside.get(child, -1) + 1
        cx, _ = pos[child]
        side = -0.5 if rank % 2 == 0 else 0.5
        pos[name] = (cx + side * _STEP_X, -(1 + rank // 2) * _STEP_Y)
    return pos


def load_model(name: str) -> Model:
    from ..models import load

    return load(name)


def figure(m: Model, edges, results: list[Result], printer: Printer) -> str:
    """The graph as TikZ: one circle per leaf and node (written at row i, j for the
    source leaf), one arrow per edge labelled with its local partial."""
    pos = layout(m)
    ids = {name: f"n{k}" for k, name in enumerate(pos)}

    def label(name: str) -> str:
        if name == "f":
            return "f"
        kind = m.kind(name)
        return printer.doprint(_template(m, name, j if kind in INDEXED_KINDS and name in
                                         m.leaves else i))
    lines = [r"\begin{figure}[H]", r"\centering", r"\resizebox{\linewidth}{!}{%",
             (r"\begin{tikzpicture}[>={Stealth[length=2.4mm]},"
              r" node/.style={circle,draw,thick,minimum size=10mm,inner sep=1pt},"
              r" edge/.style={->,thick}, lab/.style={font=\small,inner sep=2pt,"
              r"fill=white,fill opacity=0.85,text opacity=1}]")]
    for name, (px, py) in pos.items():
        lines.append(rf"\node[node] ({ids[name]}) at ({px:g},{py:g}) {{${label(name)}$}};")
    for (child, parent, value), result in zip(edges, results):
        color = "" if result.verdict == PROVED else ",red"
        lines.append(rf"\draw[edge{color}] ({ids[parent]}) -- node[lab,auto] "
                     rf"{{${printer.doprint(value)}$}} ({ids[child]});")
    lines += [r"\end{tikzpicture}}",
              (r"\caption{The computation graph of \texttt{" + escape(m.name) + r"}.  Each "
               r"edge carries the local partial derivative of its head with respect to its "
               r"tail, the other parents held fixed; backward mode multiplies them along "
               r"every path from $f$ back to a leaf and sums over the paths.}"),
              r"\label{fig:graph}", r"\end{figure}"]
    return "\n".join(lines)


def _paths(b: _Builder, m: Model) -> None:
    b.add(r"\section{The paths}")
    b.add(r"Backward mode sums, over every path from a leaf to $f$, the product of the local "
          r"partials along it (element nodes summed over their rows):")
    items = []
    for leaf in m.leaves:
        chains = [r" \to ".join("f" if s == "f" else b.p.doprint(
            _template(m, s, j if s == leaf else i)) for s in path) for path in m.paths(leaf)]
        items.append(r"\item " + "; ".join(f"${c}$" for c in chains))
    b.add("\\begin{itemize}\n" + "\n".join(items) + "\n\\end{itemize}")


def _results(b: _Builder, m: Model, report, d: int | None = None) -> None:
    from ..derivation import D

    b.add(r"\section{The results}")
    b.add(r"Each closed form of the model file, proved equal to forward mode (composition "
          r"then differentiation) and to backward mode (the path sums), and the two modes "
          rf"proved equal to each other, for $N = {b.n}$ (\texttt{{symbn verify -{{}}-model "
          rf"{escape(m.name)} -{{}}-n {b.n}}}):")
    for leaf, result in m.results.items():
        wrt = _template(m, leaf, j)
        ids = [f"{mode}/d{leaf}" for mode in ("forward", "backward", "forward=backward")]
        verdicts = [report[cid] for cid in ids if any(r.id == cid for r in report)]
        worst = next((r for r in verdicts if r.verdict != PROVED), verdicts[0])
        b.align(f"result:{leaf}", (D(F, wrt), result.template), verdict=worst.verdict)
        b.verdict(worst, "")
    for leaf in m.leaves:
        if leaf not in m.results and any(r.id == f"forward=backward/d{leaf}" for r in report):
            b.verdict(report[f"forward=backward/d{leaf}"],
                      rf"forward = backward mode for ${b.p.partial(F, _template(m, leaf, j))}$")
    if d is None:
        b.add(rf"These are one set's results.  Across sets the reductions run along array "
              rf"axis ${m.axis}$; the results in matrix form, where a leaf shared by the sets "
              r"has the sum over the sets as its derivative, are proved with "
              rf"\texttt{{-{{}}-d 2}}.")
