r"""The document frame: displayed equations, verdict and witness lines, preamble, colophon.

`_Builder` collects the body of a document; `Document.equations` records, for each displayed
equation, the expressions that went into the printer, so the correspondence can be tested.

>>> from symbn.report import Result
>>> print(verdict_latex(Result("forward/dx", "proved", "exact", 0.1), 3), end="")
\proved\ proved for $N = 3$ (exact)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sympy as sp

from ..notation import name_latex, value_latex
from ..prove import DISPROVED, PROBABLE, PROVED, UNKNOWN
from .printer import Printer, escape, prose


@dataclass
class Equation:
    """One displayed equation: the expressions printed (a chain a = b = c), and its LaTeX."""

    label: str
    exprs: tuple
    latex: str
    verdict: str | None = None


@dataclass
class Document:
    """The LaTeX source and what went into it."""

    tex: str
    n: int | str
    equations: list[Equation] = field(default_factory=list)
    reports: dict = field(default_factory=dict)
    seconds: float = 0.0

    def equation(self, label: str) -> Equation:
        for eq in self.equations:
            if eq.label == label:
                return eq
        raise KeyError(label)


_PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage[utf8]{inputenc}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{float}
\usepackage{xcolor}
\usepackage{tikz}
\usetikzlibrary{arrows.meta,positioning}
\usepackage[hidelinks]{hyperref}
% #1 shrunk to at most #2 of the line width, never enlarged
\newcommand{\fitto}[2]{\resizebox{\ifdim\width>#2\linewidth #2\linewidth\else\width\fi}{!}{$\displaystyle #1$}}
\newcommand{\proved}{\textcolor{green!45!black}{\checkmark}}
\newcommand{\disproved}{\textcolor{red!75!black}{$\boldsymbol{\times}$}}
\newcommand{\undecided}{\textcolor{orange!80!black}{\textbf{?}}}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5ex}
"""

ALL = "all"  # the document's N when the derivation is proved for every N (symbolic N)

_MARKS = {PROVED: r"\proved", PROBABLE: r"\proved", DISPROVED: r"\disproved",
          UNKNOWN: r"\undecided"}


class _Builder:
    def __init__(self, n: int, printer: Printer):
        self.n, self.p = n, printer
        self.body: list[str] = []
        self.equations: list[Equation] = []

    def add(self, text: str) -> None:
        self.body.append(text)

    def align(self, label: str, exprs, verdict: str | None = None, note: str = "",
              number: bool = True, width: float = 0.62) -> None:
        """exprs[0] = exprs[1] = ... as an align, one link per line, each side fitted."""
        self.align_group([(label, exprs, verdict)], note=note, number=number, width=width)

    def align_group(self, items, note: str = "", number: bool = True,
                    width: float = 0.62) -> None:
        """Several equations (label, exprs, verdict) in one align environment."""
        bodies = []
        for label, exprs, verdict in items:
            exprs = tuple(exprs)
            sides = [self.p.doprint(e) for e in exprs]
            if _visible_length(sides[0]) <= 24:
                lines = [rf"\fitto{{{sides[0]}}}{{0.3}} &= \fitto{{{sides[1]}}}{{{width}}}"]
                lines += [rf"&= \fitto{{{s}}}{{{width}}}" for s in sides[2:]]
            else:  # a long left side gets a line of its own, the links indented below it
                lines = [rf"&\fitto{{{sides[0]}}}{{0.9}}"]
                lines += [rf"&\quad = \fitto{{{s}}}{{0.85}}" for s in sides[1:]]
            if note:
                lines[-1] += rf" &&{note}"
            tag = rf" \label{{eq:{_label(label)}}}" if number else r" \nonumber"
            body = "".join(line + " \\nonumber \\\\\n" for line in lines[:-1]) \
                + lines[-1] + tag
            bodies.append(body)
            self.equations.append(Equation(label, exprs, body, verdict))
        self.add("\\begin{align}\n" + " \\\\\n".join(bodies) + "\n\\end{align}")

    def verdict(self, result, what: str) -> None:
        self.add(verdict_latex(result, self.n, self.p, what))


def _visible_length(tex: str) -> int:
    """A rough count of the symbols a LaTeX formula shows, to choose a layout."""
    return len(re.sub(r"\\[A-Za-z]+|[{}^_\s]", "", tex))


def edges_verdict(results) -> str:
    r"""The end of the graph figure's sentence: \proved, or what the edges not proved are.

    >>> from ..report import Result
    >>> edges_verdict([Result("e", "proved", "exact", 0.0)])
    '\\proved.'
    """
    verdicts = {r.verdict for r in results}
    if verdicts == {PROVED}:
        return r"\proved."
    word = r"\disproved" if DISPROVED in verdicts else r"\undecided"
    return word + r"\ (edges drawn in red are not proved)."


def verdict_latex(result, n: int | str, printer: Printer | None = None, what: str = "") -> str:
    """The verdict line of one result: mark, words, and a typeset witness for a disproof."""
    printer = printer or Printer()
    mark = _MARKS.get(result.verdict, r"\undecided")
    method = "exact" if result.method.startswith("exact") or result.method == "identical" \
        else escape(result.method)
    size = "every $N$" if n == ALL else f"$N = {n}$"
    if result.verdict == PROVED:
        words = rf"proved for {size} ({method})"
        if n == ALL:
            words = r"proved for every $N$ (exact, symbolic $N$)" + _conditions_latex(result.note)
    elif result.verdict == PROBABLE:
        words = rf"probable for {size} ({escape(result.method)})"
    elif result.verdict == DISPROVED:
        words = rf"disproved for {size}"
    else:
        words = rf"undecided for {size}"
    if what:
        words = f"{what}: {words}"
    if result.note and result.verdict != PROVED and not result.witness:
        words += rf" --- {escape(result.note)}"
    out = rf"{mark}\ {words}"
    if result.verdict == DISPROVED and result.witness:
        out += r"\\" + "\n" + witness_latex(result.witness, printer)
    return out + "\n"


_RELATIONS = [("<=", r"\leq"), (">=", r"\geq"), ("!=", r"\neq"), ("==", "=")]


def _conditions_latex(note: str | None) -> str:
    r"""The conditions and rules of an every-N note, typeset: ``if 1 <= j <= N; by R1``.

    >>> print(_conditions_latex("2 link(s) for every N; if i == j, 1 <= i <= N; by R1, R3"))
    , if $i = j$, $1 \leq i \leq N$; by R1, R3
    """
    out = ""
    for part in (note or "").split("; "):
        if part.startswith("if "):
            conds = []
            for cond in part[3:].split(", "):
                if not re.fullmatch(r"[A-Za-z0-9 <=>!]+", cond):
                    conds.append(escape(cond))
                    continue
                for op, tex in _RELATIONS:
                    cond = cond.replace(op, f" {tex} ")
                conds.append("$" + " ".join(cond.split()) + "$")
            out += ", if " + ", ".join(conds)
        elif part.startswith("by "):
            out += "; " + escape(part)
    return out


def witness_latex(witness: dict, printer: Printer | None = None) -> str:
    """A counterexample: the exact point and both sides' values, typeset."""
    printer = printer or Printer()
    point = witness.get("point", {})
    parts = [f"{_name_latex(k, printer)} = {_value_latex(v, printer)}" for k, v in point.items()]
    out = r"\quad counterexample"
    if witness.get("N") is not None:
        out += rf" for $N = {int(witness['N'])}$"
    if witness.get("assignment"):
        out += " at $" + r",\ ".join(f"{_name_latex(str(k), printer)} = "
                                     f"{_value_latex(v, printer)}"
                                     for k, v in witness["assignment"].items()) + "$"
    if witness.get("instance"):
        out += rf" ({escape(str(witness['instance']))})"
    if witness.get("link"):
        out += rf" for the link \texttt{{{escape(str(witness['link']))}}}"
    out += r": $" + r",\ ".join(parts) + r"$"
    sides = [(key, witness[key]) for key in ("lhs", "rhs") if key in witness]
    if sides:
        out += r"; " + "; ".join(rf"{key} $= {_value_latex(val, printer)}$" for key, val in sides)
    return out


def _name_latex(name: str, printer: Printer | None = None) -> str:
    return name_latex(name)


def _value_latex(value, printer: Printer | None = None) -> str:
    return value_latex(value)


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9:.-]", "-", text)


def _finish(b: _Builder, reports: dict, n, size: str, title: str, source: str | None,
            start: float) -> Document:
    """The colophon, the title block and the summary around the built body."""
    import flint

    from .. import __version__

    seconds = time.monotonic() - start
    b.add(r"\section*{Colophon}")
    b.add(rf"Generated by symbn {escape(__version__)} with SymPy {escape(sp.__version__)} "
          rf"and python-flint {escape(flint.__version__)} for {size} on "
          rf"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; proving and "
          rf"building this document took {seconds:.1f}\,s.  Every equation above was printed "
          r"from the SymPy expression that symbn decided, by SymPy's \LaTeX{} printer.")
    head = [_PREAMBLE, rf"\title{{{escape(title)}}}",
            r"\author{checked by symbn}", r"\date{}", r"\begin{document}", r"\maketitle"]
    if source:
        head.append(rf"\begin{{center}}\small Source: {escape(source)}\end{{center}}")
    head.append(_summary(reports, n))
    tex = "\n".join(head + b.body + [r"\end{document}", ""])
    return Document(tex, n, b.equations, reports, seconds)


def _summary(reports: dict, n: int | str) -> str:
    """One line under the title: how many claims of each kind, and their verdicts."""
    parts = []
    for key, what in (("check", "steps of the derivation"), ("edges", "local partials"),
                      ("setup", "definitions"), ("verify", "results")):
        results = list(reports.get(key, []))
        if results:
            proved = sum(r.verdict == PROVED for r in results)
            parts.append(f"{proved} of {len(results)} {what}")
    total = [r for rep in reports.values() for r in rep]
    mark = (r"\disproved" if any(r.verdict == DISPROVED for r in total) else r"\proved"
            if all(r.verdict == PROVED for r in total) else r"\undecided")
    size = r"every $N$ (exact, symbolic $N$)" if n == ALL else rf"$N = {n}$ (exact)"
    return (rf"\begin{{center}}{mark}\ proved for {size}: "
            + ", ".join(parts) + r".\end{center}")


def _steps_section(b: _Builder, deriv, report) -> None:
    b.add(r"\section{The derivation, step by step}")
    size = r"every $N$ (symbolic)" if b.n == ALL else f"$N = {b.n}$"
    b.add(rf"Each step of the derivation file is one displayed equation; symbn checked every "
          rf"link of every step for {size}.")
    for step in deriv.steps:
        try:
            result = report[step.id]
        except KeyError:
            result = None
        b.add(rf"\paragraph{{\texttt{{{escape(step.id)}}}}} "
              + prose(step.text or "", f"{deriv.path}: step '{step.id}': text"))
        b.align(f"step:{step.id}", step.links, verdict=getattr(result, "verdict", None),
                note=_where(step, b.p))
        if result is not None:
            b.verdict(result, "")


def _where(step, printer: Printer) -> str:
    conditions = getattr(step, "conditions", None) or ()
    if conditions and all(isinstance(c, sp.Basic) for c in conditions):
        return r"\text{for } " + r",\ ".join(printer.doprint(c) for c in conditions)
    if getattr(step, "where", None):
        return r"\text{for " + escape(step.where) + "}"
    return ""
