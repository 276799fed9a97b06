r"""The note's notation as LaTeX text, without SymPy: model names (x[2] as x_{2}, dy[1] as
df/dy_1, eps as epsilon), exact values, and prose escaped for LaTeX.  The LaTeX printer
(`symbn.latex.Printer`) and the Jupyter tables (`symbn.jupyter`) both speak it.

>>> print(name_latex("x[1,2]"), name_latex("eps"), value_latex("-3/7"))
x_{1,2} \epsilon - \frac{3}{7}
"""

from __future__ import annotations

import re
from fractions import Fraction

_BASES = {"x": "x", "y": "y", "xhat": r"\hat{x}", "mu": r"\mu", "v": "v", "eps": r"\epsilon",
          "gamma": r"\gamma", "beta": r"\beta", "sigma": r"\sigma", "f": "f", "N": "N"}
_MODEL_NAME = re.compile(r"([A-Za-z]+)(?:\[([0-9]+(?:,[0-9]+)*)\])?")


def _word(name: str) -> bool:
    """A model's own multi-letter name (ms, var), printed upright; Greek names stay Greek."""
    return len(name) > 1 and name.isalpha() and name not in _GREEK


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi",
          "chi", "psi", "omega"}


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
        elif ord(ch) < 32 or 127 <= ord(ch) < 160:  # control characters (C0, DEL, C1)
            continue
        elif ord(ch) > 255:
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def name_latex(name: str) -> str:
    r"""A leaf or node symbol's name (x[2], dy[1,2], gamma, ms) in the note's notation.

    >>> print(name_latex("dy[2]"), name_latex("xhat[1]"), name_latex("ms"), name_latex("?"))
    \frac{\partial f}{\partial y_{2}} \hat{x}_{1} \mathrm{ms} \text{?}
    """
    m = _MODEL_NAME.fullmatch(name)
    if not m:
        return rf"\text{{{escape(name)}}}"
    base, index = m.groups()
    sub = f"_{{{index}}}" if index else ""
    if base == "dy":
        return rf"\frac{{\partial f}}{{\partial y{sub}}}"
    if base in _BASES:
        return _BASES[base] + sub
    if base in _GREEK:
        return "\\" + base + sub
    return (rf"\mathrm{{{base}}}" if _word(base) else base) + sub


def value_latex(value) -> str:
    r"""An exact value written as a string ("-3/7", "2") as LaTeX; anything else as text.

    >>> print(value_latex("7/4"), value_latex(-5), value_latex("sqrt(2)"))
    \frac{7}{4} -5 \text{\texttt{sqrt(2)}}
    """
    try:
        q = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return rf"\text{{\texttt{{{escape(str(value))}}}}}"
    if q.denominator == 1:
        return str(q.numerator)
    frac = rf"\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"
    return "- " + frac if q < 0 else frac
