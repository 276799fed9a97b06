"""Small helpers of the derivation language: free indices and rows of a template, and the
pieces of error messages (a clipped one-line quote, a "did you mean").

>>> _clip("a very long claim " * 10, 24), _did_you_mean("gama", ["gamma", "beta"])
('a very long claim a v...', ' (did you mean gamma?)')
"""

from __future__ import annotations

import ast
import difflib

import sympy as sp

from .vocabulary import INDEX, SCALARS, D, P


def _free_indices(e: sp.Basic, bound: frozenset = frozenset()) -> set:
    if isinstance(e, sp.Symbol):
        return {e} if e.name in INDEX and e not in bound else set()
    if isinstance(e, sp.Sum):
        return _free_indices(e.function, bound | {limit[0] for limit in e.limits})
    out: set = set()
    for a in e.args:
        out |= _free_indices(a, bound)
    return out


def _rows(e: sp.Basic) -> set:
    if isinstance(e, (sp.Indexed, sp.KroneckerDelta)):
        args = e.indices if isinstance(e, sp.Indexed) else e.args
        return {int(a) for a in args if a.is_Integer}
    if isinstance(e, sp.Sum):
        return _rows(e.function)
    out: set = set()
    for a in e.args:
        out |= _rows(a)
    return out


def _has_df(e: sp.Basic, gradient: str = "dy") -> bool:
    """Whether `e` contains dy[.] (the `gradient`) or a derivative of f (D(f, .), P(f, .))."""
    if isinstance(e, sp.Indexed):
        return str(e.base) == gradient
    if isinstance(e, (D, P)) and e.args[0] == SCALARS["f"]:
        return True
    return any(_has_df(a, gradient) for a in e.args)


def _words(items, conjunction: str) -> str:
    """'a, b or c' for conjunction 'or'."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _kind(e: sp.Expr) -> str:
    return str(e.base) if isinstance(e, sp.Indexed) else str(e)


def _describe(node: ast.AST) -> str:
    names = {"Attribute": "attribute access", "Lambda": "lambda", "ListComp": "comprehension",
             "GeneratorExp": "comprehension", "SetComp": "comprehension",
             "DictComp": "comprehension", "Compare": "comparison", "BoolOp": "boolean operator",
             "IfExp": "conditional", "NamedExpr": "assignment", "JoinedStr": "f-string",
             "List": "list", "Tuple": "tuple", "Dict": "dict", "Set": "set",
             "Starred": "starred expression", "Await": "await", "Yield": "yield",
             "Slice": "slice"}
    return names.get(type(node).__name__, type(node).__name__)


def _did_you_mean(name: str, options) -> str:
    close = difflib.get_close_matches(str(name)[:64], list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _clip(text: str, width: int = 60) -> str:
    text = _one_line(str(text))
    return text if len(text) <= width else text[:width - 3] + "..."


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
