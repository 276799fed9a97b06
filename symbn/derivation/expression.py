"""One expression, text to template: the size limits, Python's `ast` (never evaluated), the
whitelist and the degree bound; derivation claims and model files both read theirs here.

>>> parse_expression("Sum(x[k], (k, 1, N))/N", "<demo>")
Sum(x[k], (k, 1, N))/N
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import sympy as sp

from .. import sympy_fix  # noqa: F401  (installs the guard)
from ..errors import SymbnError
from .builder import _Builder
from .util import _clip
from .vocabulary import MAX_CLAIM_CHARS, MAX_DEPTH, MAX_NODES, MAX_WEIGHT, Vocabulary
from .weight import _Weight


def check_size(text: str, at: str, advice: str, what: str = "") -> None:
    """Refuse text of more than `MAX_CLAIM_CHARS` characters (the message starts with `what`
    and ends with `advice`) or brackets nested more than `MAX_DEPTH` deep.

    >>> check_size("x[i]" * 1001, "<demo>", "split it", what="claim is ")
    Traceback (most recent call last):
    symbn.errors.SymbnError: <demo>: claim is 4004 characters, more than 4000; split it
    """
    if len(text) > MAX_CLAIM_CHARS:
        raise SymbnError(f"{at}: {what}{len(text)} characters, more than {MAX_CLAIM_CHARS}; "
                         f"{advice}")
    depth = 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if depth > MAX_DEPTH:
            raise SymbnError(f"{at}: brackets nested more than {MAX_DEPTH} deep; simplify")


def parse_tree(text: str, at: str, advice: str = "split it into steps") -> ast.Expression:
    """`text` parsed by Python's `ast` in eval mode, never evaluated, within `check_size`.

    >>> parse_tree("1 +", "<demo>")
    Traceback (most recent call last):
    symbn.errors.SymbnError: <demo>: syntax error in '1 +': invalid syntax
    """
    check_size(text, at, advice)
    if not text.strip():
        raise SymbnError(f"{at}: empty expression; write a definition")
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise SymbnError(f"{at}: syntax error in '{_clip(text.strip())}': {err.msg}") from None
    except (RecursionError, MemoryError):
        raise SymbnError(f"{at}: '{_clip(text.strip())}' is nested too deeply; "
                         "simplify the expression") from None
    except ValueError as err:
        raise SymbnError(f"{at}: cannot read '{_clip(text.strip())}': {err}") from None


def parse_expression(text: str, at: str, vocabulary: Vocabulary | None = None,
                     weights: dict | None = None, advice: str = "split it into steps",
                     check: Callable[[sp.Expr], None] | None = None) -> sp.Expr:
    """`text` as an unevaluated template of `vocabulary`'s names, within every limit.

    `vocabulary` and `weights` (the table of node degrees, `Model.weights`) default to
    BatchNorm's, read off its model file; `advice` ends the
    messages about size; `check` (if given) sees the template before it is weighed.
    """
    tree = parse_tree(text, at, advice)
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise SymbnError(f"{at}: expression has {nodes} parts, more than {MAX_NODES}; {advice}")
    expr = _Builder(at, vocabulary).build(tree.body, 0)
    if check is not None:
        check(expr)
    weigh = _Weight(weights)
    weight = weigh.of(expr)
    if weight > MAX_WEIGHT:
        raise SymbnError(f"{at}: '{_clip(text.strip())}' can reach polynomial degree "
                         f"{weight}, more than {MAX_WEIGHT}; lower exponents or nesting")
    return expr
