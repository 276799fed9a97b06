r"""Reports in Jupyter: a `Report` as a Markdown table or a display-math array.

`symbn.report.Report._repr_markdown_` and `_repr_latex_` call these; no SymPy, no
renderer of documents (`symbn.notation` writes the names and values).

>>> from symbn.report import Report, Result
>>> print(report_latex(Report("r", [Result("forward/dx", "proved", "exact", 0.1)])))
$$\begin{array}{llll}\checkmark & \texttt{forward/dx} & \text{proved} & \end{array}$$
"""

from __future__ import annotations

import re

from .notation import name_latex, value_latex

# the verdicts, as `symbn.report` writes them (this module is imported by it, not the reverse)
PROVED, DISPROVED, UNKNOWN, PROBABLE = "proved", "disproved", "unknown", "probable"
CONSISTENT = "consistent"  # check-impl's agreement within rounding: not a proof

_MD_MARKS = {PROVED: "✓", PROBABLE: "✓", CONSISTENT: "≈", DISPROVED: "✗", UNKNOWN: "?"}


def report_markdown(report) -> str:
    """A report as a Markdown table, witnesses typeset as math."""
    lines = [f"**{report.title}**", "", "| | claim | verdict | method | time |",
             "|---|---|---|---|---|"]
    for r in report:
        lines.append(f"| {_MD_MARKS.get(r.verdict, '?')} | `{r.id}` | {r.verdict} | "
                     f"{r.method} | {r.seconds:.3f} s |")
    for r in report:
        if r.witness:
            point = r.witness.get("point", {})
            vals = r",\ ".join(f"{name_latex(k)} = {value_latex(v)}"
                               for k, v in point.items())
            sides = "; ".join(f"{key} = ${value_latex(r.witness[key])}$"
                              for key in ("lhs", "rhs") if key in r.witness)
            given = r.witness.get("assignment") or {}
            at = [f"N = {r.witness['N']}"] if "N" in r.witness else []
            at += [f"{k} = {v}" for k, v in given.items()] if isinstance(given, dict) else []
            where = " at $" + r",\ ".join(at) + "$" if at else ""
            link = f" (`{r.witness['link']}`)" if "link" in r.witness else ""
            lines += ["", f"`{r.id}` counterexample{where}{link}: ${vals}$"
                      + (f"; {sides}" if sides else "")]
    return "\n".join(lines)


def report_latex(report) -> str:
    """A report as a display-math array (MathJax renders it in Jupyter)."""
    rows = []
    for r in report:
        mark = {PROVED: r"\checkmark", PROBABLE: r"\checkmark", CONSISTENT: r"\approx",
                DISPROVED: r"\times"}.get(r.verdict, "?")
        row = rf"{mark} & \texttt{{{_tt(r.id)}}} & \text{{{r.verdict}}}"
        if r.witness:
            point = r.witness.get("point", {})
            row += r" & " + r",\ ".join(f"{name_latex(k)} = {value_latex(v)}"
                                        for k, v in point.items())
        else:
            row += r" & "
        rows.append(row)
    return r"$$\begin{array}{llll}" + r" \\ ".join(rows) + r"\end{array}$$"


def _tt(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9/=!<>.:-]", "-", text)
