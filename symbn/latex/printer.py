r"""The note's notation: SymPy's LaTeX printer for the model's names, and safe prose.

`Printer` is a subclass of SymPy's `LatexPrinter` that speaks the note's notation (x̂_i, μ, σ,
ε, ∂f/∂y_i as a fraction); `escape` makes plain text safe for LaTeX and `prose` lets a
derivation file's text carry inline math from a whitelist of commands.

>>> print(latex(sp.Symbol("xhat[2]") / sp.Symbol("sigma")))
\frac{\hat{x}_{2}}{\sigma}
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ..derivation import SCALARS
from ..errors import SymbnError
from ..notation import _BASES, _MODEL_NAME, _word, escape

_EPS = SCALARS["eps"]  # printed last in a sum: the note writes v + eps


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
        return sorted(terms, key=lambda t: (t.could_extract_minus_sign(), t == _EPS))

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
_MATH_CHARS = re.compile(r"[A-Za-z0-9 \n+\-*/=<>()\[\]{}^_.,;:!|'\\]*")


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
        if not part.strip():  # $$ would open display math
            raise SymbnError(f"{where}: empty inline math $$ in {_clip_text(text)!r}; write "
                             r"\$ for a dollar sign")
        for command in re.findall(r"\\([A-Za-z]+|.)", part):
            if command not in _MATH_COMMANDS and command not in ",;:! {}|":
                raise SymbnError(f"{where}: inline math uses \\{command}, which is not "
                                 r"allowed; use math commands such as \frac, \sqrt, "
                                 r"\partial, \hat and Greek letters")
        if not _MATH_CHARS.fullmatch(part) or _depth(part) is None or "^^" in part \
                or re.search(r"\n *\n", part):  # a blank line ends the paragraph
            raise SymbnError(f"{where}: inline math ${_clip_text(part)}$ has a character or "
                             "brace LaTeX would misread (#, %, &, ~, ^^, unbalanced braces, "
                             "tabs or a blank line); "
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
