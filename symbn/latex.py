"""LaTeX and PDF export: the derivation as typeset mathematics, every equation machine-checked.

Every formula in the document is a SymPy expression printed by `Printer`, a subclass of
SymPy's `LatexPrinter` that speaks the note's notation (x̂_i, μ, σ, ε, ∂f/∂y_i as a fraction).
The expressions printed are the ones symbn proved: derivation steps come from the derivation
file and are judged by `symbn.check`, the graph's local partials are proved equal to
`differentiate.local_partial`, the final results are `closed_form`'s expressions judged by
`verify`.  For every N at once (``n="all"``, `build_all`) the verdicts come from
`symbn.general` instead, which proves the same templates with N a symbol.
`Document.equations` records, for each displayed equation, the expressions that
went into the printer, so the correspondence can be tested.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from itertools import pairwise

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import io
from .derivation import INDEX, INDEXED, SCALARS, N, instantiate
from .errors import SymbnError
from .io import Target
from .model import BatchNorm, as_expr
from .pdf import check_output, compile_pdf
from .prove import DISPROVED, PROBABLE, PROVED, UNKNOWN

# -- the note's notation ------------------------------------------------------------------

_BASES = {"x": "x", "y": "y", "xhat": r"\hat{x}", "mu": r"\mu", "v": "v", "eps": r"\epsilon",
          "gamma": r"\gamma", "beta": r"\beta", "sigma": r"\sigma", "f": "f", "N": "N"}
_MODEL_NAME = re.compile(r"([A-Za-z]+)(?:\[([0-9]+(?:,[0-9]+)*)\])?")


def _word(name: str) -> bool:
    """A model's own multi-letter name (ms, var), printed upright; Greek names stay Greek."""
    return len(name) > 1 and name.isalpha() and name not in _GREEK


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi",
          "chi", "psi", "omega"}


class Printer(LatexPrinter):
    r"""SymPy's LaTeX printer in the note's notation.

    Model names print as the note writes them, for the graph's concrete symbols (``x[2]``)
    and for index-generic templates (``x[i]`` as ``sp.Indexed``) alike; ``dy`` is
    ∂f/∂y_i, and the derivation language's ``D(a, b)`` and ``P(a, b)`` are ∂a/∂b.

    >>> xhat, dy = sp.IndexedBase("xhat"), sp.IndexedBase("dy")
    >>> i = sp.Symbol("i", integer=True)
    >>> print(latex(dy[i] * xhat[i]))
    \frac{\partial f}{\partial y_{i}} \hat{x}_{i}
    >>> print(latex(sp.Symbol("eps") + sp.Symbol("x[2]")))
    x_{2} + \epsilon
    """

    printmethod = "_symbn_latex"

    def __init__(self, settings: dict | None = None):
        super().__init__({"order": "none", "long_frac_ratio": 2, **(settings or {})})

    def _as_ordered_terms(self, expr, order=None):
        # negative terms last, as the note writes x_i - mu rather than -mu + x_i
        # and the note's v + eps rather than eps + v
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda t: (t.could_extract_minus_sign(), t == EPS))

    def _print_Add(self, expr: sp.Add, order=None) -> str:
        # a term of an unevaluated sum may print with its own leading minus: a - b, not a + -b
        out = ""
        for t in self._as_ordered_terms(expr, order=order):
            text = self._print(t)
            if not out:
                out = text
            elif text.startswith("-"):
                out += " - " + text[1:].lstrip()
            else:
                out += " + " + text
        return out

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        m = _MODEL_NAME.fullmatch(expr.name)
        if m and (m.group(1) in _BASES or m.group(1) == "dy" or _word(m.group(1))):
            return self._model_name(m.group(1), m.group(2))
        return super()._print_Symbol(expr, style)

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        name = expr.base.label.name
        if name in _BASES or name == "dy" or _word(name):
            return self._model_name(name, ",".join(self._print(a) for a in expr.indices))
        return super()._print_Indexed(expr)

    def _model_name(self, base: str, index: str | None) -> str:
        sub = f"_{{{index}}}" if index else ""
        if base == "dy":
            return rf"\frac{{\partial f}}{{\partial y{sub}}}"
        return _BASES.get(base, rf"\mathrm{{{base}}}") + sub

    def partial(self, a: sp.Basic, b: sp.Basic) -> str:
        """∂a/∂b; a compound `a` is parenthesized as in the note's ∂(x_i − μ)/∂x_j."""
        top = self._print(a)
        if not (isinstance(a, (sp.Symbol, sp.Indexed)) or a.is_Number):
            top = rf"\left({top}\right)"
        return rf"\frac{{\partial {top}}}{{\partial {self._print(b)}}}"

    def _print_D(self, expr: sp.Basic) -> str:  # total derivative of the derivation language
        return self.partial(*expr.args)

    def _print_P(self, expr: sp.Basic) -> str:  # local partial of the derivation language
        return self.partial(*expr.args)

    _print_Partial = _print_P

    def _print_Mul(self, expr: sp.Mul) -> str:
        # A written product such as (-1/N)*(1/sqrt(v + eps)) stays unevaluated in a template;
        # print it with nested products flattened and its numbers multiplied out (exactly),
        # so no "1 \frac{1}{N}" or "(-1) \frac{1}{N}" appears.  Same expression, tidier text.
        def number(a):
            return a.is_Number or (a.is_Pow and a.base.is_Number and a.exp.is_negative)

        args = expr.args
        if not any(a.is_Mul for a in args) and sum(map(number, args)) <= 1 \
                and not any(a == 1 for a in args):
            return super()._print_Mul(expr)
        factors, coeff, stack = [], sp.Integer(1), list(args)
        while stack:
            a = stack.pop(0)
            if a.is_Mul:
                stack[:0] = list(a.args)
            elif number(a):
                coeff *= a
            else:
                factors.append(a)
        if not factors:
            return self._print(coeff)
        if coeff == 1 and len(factors) == 1:
            return self._print(factors[0])
        head = [coeff] if coeff != 1 else []
        return super()._print_Mul(sp.Mul(*head, *factors, evaluate=False))

    def _print_MatMul(self, expr: sp.Basic) -> str:
        # factors as written: SymPy's printer folds a scalar into the matrix after it
        parts = []
        for a in expr.args:
            text = self._print(a)
            parts.append(rf"\left({text}\right)" if isinstance(a, (sp.MatAdd, sp.Add)) else text)
        return " ".join(parts)

    def _print_MatAdd(self, expr: sp.Basic) -> str:
        # terms as written (SymPy's Add printer negates a term, which evaluates it)
        out = []
        for t in expr.args:
            text = self._print(t)
            out.append(text if not out else (f"- {text[1:].lstrip()}" if text.startswith("-")
                                             else f"+ {text}"))
        return " ".join(out)

    def _print_Ne(self, expr: sp.Basic) -> str:
        return rf"{self._print(expr.lhs)} \neq {self._print(expr.rhs)}"


def latex(expr: sp.Basic, **settings) -> str:
    r"""`expr` in the note's notation.

    >>> print(latex(sp.sqrt(sp.Symbol("v") + sp.Symbol("eps"))))
    \sqrt{v + \epsilon}
    """
    return Printer(settings).doprint(expr)


class Partial(sp.Function):
    """∂a/∂b along one edge of the graph, for display (never evaluated)."""

    nargs = 2


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

# Each edge parent -> child of the backward graph with its local partial ∂child/∂parent;
# proved equal to differentiate.local_partial for every index assignment at the document's N.
# x_j is a direct parent of x̂_i only when i = j, hence the Kronecker delta.
EDGES: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = [
    (MU, X[j], 1 / N),
    (V, X[j], 2 / N * (X[j] - MU)),
    (V, MU, -2 * sp.Sum(X[i] - MU, (i, 1, N)) / N),
    (XHAT[i], X[j], sp.KroneckerDelta(i, j) / SIGMA),
    (XHAT[i], MU, -1 / SIGMA),
    (XHAT[i], V, sp.Mul(sp.Rational(-1, 2), X[i] - MU, SIGMA ** -3)),
    (Y[i], XHAT[i], GAMMA),
    (Y[i], GAMMA, XHAT[i]),
    (Y[i], BETA, sp.Integer(1)),
    (F, Y[i], DY[i]),
]


def _assignments(exprs, n: int) -> list[dict]:
    """Every assignment of the free indices i, j in 1..N."""
    free = sorted(set().union(*(as_expr(e).free_symbols for e in exprs)) & {i, j}, key=str)
    out = [{}]
    for s in free:
        out = [{**a, s: v} for a in out for v in range(1, n + 1)]
    return out


# -- the document ---------------------------------------------------------------------------


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


def _name_latex(name: str, printer: Printer) -> str:
    if _MODEL_NAME.fullmatch(name):
        return printer.doprint(sp.Symbol(name))
    return rf"\text{{{escape(name)}}}"


def _value_latex(value, printer: Printer) -> str:
    try:
        q = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return rf"\text{{\texttt{{{escape(str(value))}}}}}"
    return printer.doprint(sp.Rational(q.numerator, q.denominator))


_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}
_UNICODE_MATH = {"μ": r"\mu", "σ": r"\sigma", "ε": r"\epsilon", "γ": r"\gamma", "β": r"\beta",
                 "∂": r"\partial", "≠": r"\neq", "≤": r"\leq", "≥": r"\geq", "Σ": r"\Sigma",
                 "∑": r"\sum", "→": r"\to", "−": "-", "×": r"\times", "·": r"\cdot",
                 "δ": r"\delta", "√": r"\surd", "∈": r"\in", "ℝ": r"\mathbb{R}", "²": "^2",
                 "³": "^3", "½": r"\tfrac12"}


def escape(text: str) -> str:
    """Plain text (prose from a derivation file) made safe for LaTeX.

    >>> escape("x_i - μ & 50% ≠ 0")
    'x\\\\_i - $\\\\mu$ \\\\& 50\\\\% $\\\\neq$ 0'
    """
    out = []
    for ch in str(text):
        if ch in _TEXT_ESCAPES:
            out.append(_TEXT_ESCAPES[ch])
        elif ch == "\u0302":  # combining circumflex, as in x̂: put a hat on the letter before
            prev = out.pop() if out else ""
            out.append(rf"$\hat{{{prev}}}$" if len(prev) == 1 and prev.isalpha() else prev)
        elif ch in _UNICODE_MATH:
            out.append(f"${_UNICODE_MATH[ch]}$")
        elif ch in "\n\t":
            out.append(" ")
        elif ord(ch) < 32:
            continue
        elif ord(ch) > 255:
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


# the LaTeX a `$...$` of prose may use: no primitive that reads or writes files, defines
# macros or changes catcodes reaches the document
_MATH_COMMANDS = frozenset((
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
    "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi",
    "Omega", "frac", "tfrac", "dfrac", "sqrt", "sum", "prod", "partial", "hat", "bar", "tilde",
    "vec", "dot", "ddot", "cdot", "cdots", "ldots", "dots", "times", "div", "pm", "mp", "leq",
    "geq", "neq", "le", "ge", "ne", "approx", "equiv", "sim", "to", "mapsto", "in", "notin",
    "subset", "infty", "nabla", "left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr",
    "mathrm", "mathbf", "mathit", "mathbb", "mathcal", "operatorname", "text", "quad", "qquad",
    "log", "exp", "min", "max", "lim", "top", "circ", "odot", "otimes", "langle", "rangle",
    "lvert", "rvert", "lVert", "rVert",
))
_MATH_CHARS = re.compile(r"[A-Za-z0-9\s+\-*/=<>()\[\]{}^_.,;:!|'\\]*")


def prose(text: str, where: str = "text") -> str:
    r"""Prose with inline math: `$...$` is typeset as math, checked against a whitelist of
    commands and characters; everything else is escaped as plain text.

    >>> prose(r"the slope $\frac{\partial v}{\partial x_j}$ of v")
    'the slope $\\frac{\\partial v}{\\partial x_j}$ of v'
    >>> prose(r"$\input{/etc/passwd}$")
    Traceback (most recent call last):
    ...
    symbn.errors.SymbnError: text: inline math uses \input, which is not allowed; use math commands such as \frac, \sqrt, \partial, \hat and Greek letters
    """
    parts = str(text).replace("\\$", "\x00").split("$")  # \$ is a dollar sign
    if len(parts) % 2 == 0:
        raise SymbnError(f"{where}: an unmatched $ in {_clip_text(text)!r}; write inline math "
                         r"as $...$, or \$ for a dollar sign")
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(escape(part.replace("\x00", "$")))
            continue
        part = part.replace("\x00", "\\$")
        for command in re.findall(r"\\([A-Za-z]+|.)", part):
            if command not in _MATH_COMMANDS and command not in ",;:! {}|":
                raise SymbnError(f"{where}: inline math uses \\{command}, which is not "
                                 r"allowed; use math commands such as \frac, \sqrt, "
                                 r"\partial, \hat and Greek letters")
        if not _MATH_CHARS.fullmatch(part) or _depth(part) is None or "^^" in part:
            raise SymbnError(f"{where}: inline math ${_clip_text(part)}$ has a character or "
                             "brace LaTeX would misread (#, %, &, ~, ^^, unbalanced braces); "
                             "write it with letters, digits, operators and balanced braces")
        out.append(f"${part}$")
    return "".join(out)


def _depth(math: str) -> int | None:
    """0 when the braces of `math` balance, None otherwise (escaped braces do not count)."""
    depth = 0
    for ch in re.sub(r"\\[{}]", "", math):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return None
    return None if depth else 0


def _clip_text(text: str, width: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9:.-]", "-", text)


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
    from .report import Result

    start = time.monotonic()
    for a in _assignments((lhs, rhs), bn.n):
        outcome = alg.decide(instantiate(lhs, bn, a), instantiate(rhs, bn, a))
        if outcome.verdict != PROVED:
            return Result(cid, outcome.verdict, outcome.method, time.monotonic() - start,
                          outcome.witness, outcome.note)
    return Result(cid, PROVED, "exact", time.monotonic() - start)


def edge_results(bn: BatchNorm, alg=None) -> list:
    """Each edge's local partial template proved equal to `local_partial` on the model."""
    from .differentiate import local_partial
    from .prove import Algebra
    from .report import Result

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
    from .differentiate import paths

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
    from . import closed_form

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
    from .prove import Algebra
    from .report import Result

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
    from .prove import Algebra
    from .report import Result

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

    from .prove import Algebra
    from .verify import verify

    if n == ALL:
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
    ok = all(r.verdict == PROVED for r in edges)
    b.add(r"Figure~\ref{fig:graph} shows the graph.  Every local partial on its edges is "
          r"proved equal to the derivative of the node's definition with respect to that "
          rf"parent, for $N = {n}$ and every $i$, $j$: "
          + (r"\proved." if ok else r"\disproved\ (edges drawn in red)."))
    _paths_section(b, bn)

    def left() -> float | None:
        return None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)

    if deriv is not None:
        from .check import check

        report = check(deriv, n, timeout=left())
        reports["check"] = report
        _steps_section(b, deriv, report)
    vreport = verify(n=n, timeout=left())
    reports["verify"] = vreport
    _results_section(b, bn, vreport, expand, alg)

    return _finish(b, reports, n, rf"$N = {n}$", title, source, start)


def build_all(derivation=None, timeout: float | None = None) -> Document:
    """The LaTeX document of the derivation proved for every N (N a symbol), by symbn.general.

    Same sections as for one N, with verdicts from `general.check_all` (steps) and
    `general.verify_all` (rules, lemmas, theorems); nothing specific to one N is printed.

    >>> doc = build_all(derivation=False)
    >>> doc.n, doc.equation("claim:backward/dx").verdict, "every $N$" in doc.tex
    ('all', 'proved', True)
    """

    from . import general

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
    ok = all(r.verdict == PROVED for r in edges)
    b.add(r"Figure~\ref{fig:graph} shows the graph.  Every local partial on its edges is "
          r"proved equal to the derivative of the node's definition with respect to that "
          r"parent, for every $N$ (symbolic) and every $i$, $j$ with $1 \leq i, j \leq N$: "
          + (r"\proved." if ok else r"\disproved\ (edges drawn in red)."))
    _paths_section_all(b)

    if deriv is not None:
        report = general.check_all(deriv, timeout=left())
        reports["check"] = report
        _steps_section(b, deriv, report)
    vreport = general.verify_all(timeout=left(), steps=None)
    reports["verify"] = vreport
    _claims_section(b, vreport)

    return _finish(b, reports, ALL, r"every $N$ (symbolic)", title, source, start)


def _finish(b: _Builder, reports: dict, n, size: str, title: str, source: str | None,
            start: float) -> Document:
    """The colophon, the title block and the summary around the built body."""
    import flint

    from . import __version__

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


def _derivation_partial(child, parent) -> sp.Expr:
    from .derivation import P

    return P(child, parent)



def _paths_section_all(b: _Builder) -> None:
    from . import general

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
    from . import general

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
    mark = r"\proved" if all(r.verdict == PROVED for r in total) else r"\disproved"
    size = r"every $N$ (exact, symbolic $N$)" if n == ALL else rf"$N = {n}$ (exact)"
    return (rf"\begin{{center}}{mark}\ proved for {size}: "
            + ", ".join(parts) + r".\end{center}")


def _load(derivation):
    from .derivation import load

    return None if derivation is False else load("batchnorm" if derivation is None else derivation)


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
    than batchnorm (given, or named by the derivation file) gets `latex_model.build_model`."""
    check_output(path, fmt)
    spec = getattr(_load(derivation), "spec", None) if derivation not in (None, False) \
        else None
    if model in (None, "batchnorm") and spec is None:
        doc = build(derivation, n=n, expand=expand, timeout=timeout)
    else:
        from .latex_model import build_model

        if expand:
            raise SymbnError("expand=True prints BatchNorm's Jacobian entries; drop it for "
                             "other models")
        doc = build_model(model or spec, derivation=derivation, n=n, timeout=timeout)
    return doc, write(doc, path, fmt)


# -- reports in Jupyter -------------------------------------------------------------------------

_MD_MARKS = {PROVED: "✓", PROBABLE: "✓", DISPROVED: "✗", UNKNOWN: "?"}


def report_markdown(report) -> str:
    """A report as a Markdown table, witnesses typeset as math."""
    p = Printer()
    lines = [f"**{report.title}**", "", "| | claim | verdict | method | time |",
             "|---|---|---|---|---|"]
    for r in report:
        lines.append(f"| {_MD_MARKS.get(r.verdict, '?')} | `{r.id}` | {r.verdict} | "
                     f"{r.method} | {r.seconds:.3f} s |")
    for r in report:
        if r.witness:
            point = r.witness.get("point", {})
            vals = r",\ ".join(f"{_name_latex(k, p)} = {_value_latex(v, p)}"
                               for k, v in point.items())
            sides = "; ".join(f"{key} = ${_value_latex(r.witness[key], p)}$"
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
    p = Printer()
    rows = []
    for r in report:
        mark = {PROVED: r"\checkmark", PROBABLE: r"\checkmark", DISPROVED: r"\times"}.get(
            r.verdict, "?")
        row = rf"{mark} & \texttt{{{_tt(r.id)}}} & \text{{{r.verdict}}}"
        if r.witness:
            point = r.witness.get("point", {})
            row += r" & " + r",\ ".join(f"{_name_latex(k, p)} = {_value_latex(v, p)}"
                                        for k, v in point.items())
        else:
            row += r" & "
        rows.append(row)
    return r"$$\begin{array}{llll}" + r" \\ ".join(rows) + r"\end{array}$$"


def _tt(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9/=!<>.:-]", "-", text)
