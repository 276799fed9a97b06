r"""`symbn latex --model M --n all`: the document of any model file for every N at once.

N is a symbol.  The setup, the figure and the paths are read from the model file as for one
N (`symbn.latex.model`); each edge label is proved for every N by `symbn.every_n.decide`
(the label and the local partial of `every_n.SymbolicModel`, both composed down to the
leaves, brought to the canonical form); the steps of a derivation file are judged by
`symbn.every_n_steps.check_all`; the closed forms and the claims about them are
`verify_every_n`'s, each with its verdict and the model's domain (N >= min_n).  Nothing is
stated as proved that the run did not prove: an undecided claim prints as not proved, a
disproved one with its concrete counterexample.

>>> doc = build_model_all("rmsnorm")
>>> doc.n, doc.equation("result:x").verdict, r"every $N \geq 1$" in doc.tex
('all', 'proved', True)
"""

from __future__ import annotations

import time

import sympy as sp

from ..errors import SymbnError
from ..graph import INDEXED_KINDS, Model
from ..prove import DISPROVED, PROVED, UNKNOWN
from ..report import Result
from .document import (
    ALL,
    Document,
    _Builder,
    _conditions_latex,
    _finish,
    _steps_section,
    edges_verdict,
    witness_latex,
)
from .model import F, _derivation, _edges, _paths, _setup, _template, figure, i, j
from .printer import Printer, escape

_ROW_I = sp.Symbol("i", integer=True, positive=True)


def build_model_all(model: Model | str, derivation=None,
                    timeout: float | None = None) -> Document:
    """The LaTeX document of `model` (a Model, shipped name or path) for every N >= min_n.

    >>> build_model_all("layernorm").reports["verify"].info["n"]
    'all'
    """
    from ..every_n import SymbolicModel, load_model, verify_every_n
    from ..general.normal import _rules

    m = load_model(model)
    start = time.monotonic()
    deriv = _derivation(derivation, m)
    b = _Builder(ALL, Printer())
    reports: dict = {}
    domain = rf"$N \geq {m.min_n}$"
    _setup(b, m)
    b.add(rf"Here $N$ is a symbol: every verdict below holds for every {domain} at once, "
          r"not for a sample of sizes.")

    sm = SymbolicModel(m)
    edges = _edges(m)
    reports["edges"] = [prove_edge_all(sm, child, parent, label)
                        for child, parent, label in edges]
    b.add(r"\section{The computation graph}")
    b.add(figure(m, edges, reports["edges"], b.p))
    b.add(r"Figure~\ref{fig:graph} shows the graph read from the model file.  Each edge "
          r"carries the local partial derivative of its head with respect to its tail, the "
          r"other parents held fixed, proved equal to the derivative of the node's definition "
          rf"for every {domain} (symbolic) and every $i$, $j$ with $1 \leq i, j \leq N$: "
          + edges_verdict(reports["edges"]))
    _paths(b, m)
    b.add(r"For symbolic $N$ each path stands for a family: every element node on it gets "
          r"its own row, summed over $1, \ldots, N$.")

    def left() -> float | None:
        return None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)

    if deriv is not None:
        from ..every_n_steps import check_all

        reports["check"] = check_all(deriv, timeout=left())
        _steps_section(b, deriv, reports["check"])
    reports["rules"] = _rules()
    reports["verify"] = verify_every_n(m, timeout=left())
    _results(b, m, reports["verify"])
    _method(b, m, reports["rules"])
    title = deriv.title if deriv is not None else f"Backpropagation through {m.title}"
    source = (getattr(deriv, "source", None) if deriv is not None else None) or m.source
    doc = _finish(b, reports, ALL, rf"model \texttt{{{escape(m.name)}}}, every {domain} "
                  r"(symbolic)", title, source, start)
    # the summary line under the title names the model's domain, not every N
    doc.tex = doc.tex.replace(r"for every $N$ (exact, symbolic $N$):",
                              rf"for every {domain} (exact, symbolic $N$):", 1)
    return doc


def prove_edge_all(sm, child: str, parent: str, label: sp.Expr) -> Result:
    """The edge label equals the local partial d child[i] / d parent[j] for every N.

    >>> from symbn.derivation import N
    >>> from symbn.every_n import SymbolicModel, load_model
    >>> sm = SymbolicModel(load_model("rmsnorm"))
    >>> prove_edge_all(sm, "ms", "x", 2 * sp.IndexedBase("x")[j] / N).verdict
    'proved'
    >>> prove_edge_all(sm, "ms", "x", sp.IndexedBase("x")[j] / N).verdict
    'unknown'
    """
    from ..every_n import Unsupported, _definedness, decide

    start = time.monotonic()
    m, cid = sm.m, f"edge/{child}<-{parent}"
    if child == "f":  # f is arbitrary; its partial by y_i is dy_i by the definition of dy
        ok = label == sp.IndexedBase(m.gradient)[i]
        return Result(cid, PROVED if ok else UNKNOWN, "definition of dy",
                      time.monotonic() - start,
                      note="" if ok else "not the given gradient of f")
    rows = {"i": _ROW_I if m.indexed(child) else None, "j": sm.j if m.indexed(parent) else None}
    env = {key: row for key, row in rows.items() if row is not None}
    scalars = [sp.Symbol(n) for n, kind in sorted(m.leaves.items(),
                                                  key=lambda t: t[1] != "positive")
               if kind not in INDEXED_KINDS]
    try:
        lhs = sm.run(label, env)
        rhs = sm.compose(sm.local(child, parent, rows["i"], rows["j"]))
        everywhere, undefined = _definedness([lhs, rhs], m, scalars, {})
    except (Unsupported, SymbnError, sp.PolynomialError, NotImplementedError, TypeError,
            ValueError) as err:
        return Result(cid, UNKNOWN, "canonical form, symbolic N", time.monotonic() - start,
                      note=f"outside the symbolic fragment: {err}")
    if undefined is not None:
        return Result(cid, UNKNOWN, "definedness", time.monotonic() - start, note=undefined)
    verdict, note, nz = decide(lhs, rhs, scalars)
    parts = [f"for every N >= {m.min_n}"
             + ("" if everywhere else " where both sides are defined")] + \
        ([f"if {', '.join(sorted(nz.conditions))}"] if nz.conditions else []) + \
        ([f"by {', '.join(sorted(nz.rules))}"] if nz.rules else []) + ([note] if note else [])
    return Result(cid, verdict, "canonical form, symbolic N", time.monotonic() - start,
                  note="; ".join(parts))


def verdict_all(result: Result, m: Model, what: str = "") -> str:
    r"""One verdict line of the every-N document: the model's domain, conditions and rules
    for a proof, the counterexample for a disproof, the reason otherwise.

    >>> r = Result("backward/dx", "proved", "canonical form", 0.1,
    ...            note="s; for every N >= 2; if 1 <= j <= N; by R1, R3")
    >>> print(verdict_all(r, load_model("batchnorm-unbiased")), end="")
    \proved\ proved for every $N \geq 2$, if $1 \leq j \leq N$; by R1, R3
    """
    prefix = f"{what}: " if what else ""
    note = result.note or ""
    if result.verdict == PROVED:
        where = " wherever both sides are defined" if "where both sides are defined" in note \
            else ""
        return (rf"\proved\ {prefix}proved for every $N \geq {m.min_n}${where}"
                + _conditions_latex(note) + "\n")
    if result.verdict == DISPROVED:
        at = (result.witness or {}).get("N")
        out = rf"\disproved\ {prefix}disproved" + (rf" (false at $N = {int(at)}$)" if at else "")
        if result.witness:
            out += r"\\" + "\n" + witness_latex(result.witness)
        return out + "\n"
    return (rf"\undecided\ {prefix}not proved for every $N$"
            + (rf" --- {escape(note)}" if note else "") + "\n")


def _results(b: _Builder, m: Model, report) -> None:
    from ..derivation import D

    domain = rf"$N \geq {m.min_n}$"
    b.add(r"\section{The closed forms for every \texorpdfstring{$N$}{N}}")
    b.add(r"Each closed form of the model file, with $N$ a symbol (\texttt{symbn verify "
          rf"-{{}}-model {escape(m.name)} -{{}}-n all}}).  For each leaf symbn proves forward "
          r"mode (SymPy's \texttt{diff} of the composed output) equal to the closed form, "
          r"backward mode (the sum over the paths above) equal to the closed form, and the two "
          rf"modes equal to each other, for every {domain} and every row $1 \leq j \leq N$; "
          r"each equation is followed by its claims and their verdicts:")
    for leaf in m.leaves:
        wrt = _template(m, leaf, j)
        ids = [f"{mode}/d{leaf}" for mode in ("forward", "backward", "forward=backward")]
        claims = [report[cid] for cid in ids if any(r.id == cid for r in report)]
        if not claims:
            continue
        if leaf in m.results:
            worst = next((r for r in claims if r.verdict != PROVED), claims[0])
            b.align(f"result:{leaf}", (D(F, wrt), m.results[leaf].template),
                    verdict=worst.verdict, width=0.8)
        else:
            b.add(rf"The model file gives no closed form for ${b.p.partial(F, wrt)}$; the two "
                  r"modes are compared:")
        lines = []
        for r in claims:
            lhs, _, rhs = r.id.partition("/")[0].partition("=")
            text = f"{lhs} mode = " + (f"{rhs} mode" if rhs else "closed form")
            lines.append(r"\item " + verdict_all(r, m, rf"\texttt{{{escape(r.id)}}} ({text})"))
        b.add("\\begin{itemize}\n" + "".join(lines) + "\\end{itemize}")
    b.add(r"These are statements about one set ($D = 1$).  How the sets sit in the array "
          rf"(reductions along axis ${m.axis}$) and that a leaf shared by the sets has the sum "
          r"over the sets as its derivative is proved for a concrete size by "
          rf"\texttt{{symbn latex -{{}}-model {escape(m.name)} -{{}}-n "
          rf"{max(3, m.min_n)} -{{}}-d 2}}.")


def _method(b: _Builder, m: Model, rules: list[Result]) -> None:
    from ..general.normal import rule_equations

    eqs = rule_equations()
    b.add(r"\section{The method}")
    b.add(r"The templates of the model file are composed by substitution into SymPy "
          r"expressions, every sum over a fresh bound row, so no substitution or derivative "
          r"reaches a bound index.  Forward mode differentiates the composed output with "
          r"SymPy's \texttt{diff}; backward mode sums, over the paths above, the products of "
          r"the local partials.  An identity is decided by bringing both sides to a canonical "
          r"form with three summation rules, each checked by SymPy's own summation code:")
    for r in rules:
        if r.id in eqs:
            b.align(f"claim:{r.id}", eqs[r.id], verdict=r.verdict)
            b.add(verdict_all(r, m, rf"\texttt{{{escape(r.id)}}}") if r.verdict != PROVED
                  else rf"\proved\ \texttt{{{escape(r.id)}}}: confirmed by "
                       rf"{escape(r.method)}" + (r" (for $1 \leq j \leq N$)" if "R3" in r.id
                                                 else "") + "\n")
    leaves = sorted([n for n, kind in m.leaves.items() if kind in INDEXED_KINDS]
                    + [m.gradient])
    names = [f"${b.p.doprint(sp.IndexedBase(n)[sp.Symbol('i')])}$" for n in leaves]
    sums = ", ".join(names[:-1]) + " and " + names[-1]
    b.add(r"Every sum then becomes a polynomial in power sums $S(\cdot) = \sum_{i=1}^{N}$ of "
          rf"monomials in {sums}, taken as independent indeterminates.  The model's square "
          r"roots, if any, must share one radicand $s = \sqrt{\epsilon + w}$ ($\epsilon$ a "
          r"scalar leaf), which is eliminated by $\epsilon = s^2 - w$, a change of variables on the points "
          r"where the root is real.  A claim is proved when the numerator of the difference "
          r"of its sides is the zero polynomial in $N$, $s$, the scalar leaves, the leaves at "
          r"row $j$ and the power sums; a zero polynomial stays zero under every "
          r"specialization, so the claim holds for every "
          rf"$N \geq {m.min_n}$" + (r" (the model's domain)" if m.min_n > 1 else "")
          + r" and every row.  Divisors and radicands are signed by structural rules for "
          + (rf"$N = M + {m.min_n - 1}$, $M \geq 1$" if m.min_n > 1 else r"$N \geq 1$")
          + r"; where one is not, the claim says ``wherever both sides are defined''.")
    b.add(r"The converse does not hold (the power sums are dependent for small $N$), so a "
          r"nonzero canonical form is never a disproof: such a claim is decided by the exact "
          rf"prover at $N = {m.min_n}, \ldots, {m.min_n + 3}$ and is disproved only with a "
          r"concrete counterexample, else left undecided.")


def load_model(name: str) -> Model:
    from ..models import load

    return load(name)
