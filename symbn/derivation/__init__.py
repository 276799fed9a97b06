"""Derivation files: the steps of a written derivation, read safely into SymPy templates.

A derivation file is TOML: `title`, `model = "batchnorm"`, optional `source`, and an array
of `[[step]]` tables with `id`, `claim` (a chain `a = b = c`), optional `where` (`i != j`,
`i == j`, joined by ` and `) and optional `text`.

Claims are read with Python's `ast` and built into SymPy objects from a whitelist of node
types and names; file text never reaches `eval`, `exec`, `sympify` or `parse_expr`.  Every
link of a chain becomes an index-generic template that SymPy does not evaluate, so a printer
sees what was written:

    x[i]         Indexed(IndexedBase('x'), i), i, j, k integer symbols; x[2] has Integer(2)
    mu, v, ...   plain symbols mu, v, eps, gamma, beta, f, sigma;  N a positive integer symbol
    Sum(e, (k, 1, N)), KroneckerDelta(a, b)   unevaluated SymPy objects (SymPy merges
                 nested sums into one Sum with several limits)
    D(a, b)      total derivative of a with respect to the leaf b; D(f, y[i]) = dy[i].
                 Refused: D(a, y[i]) for a != f (y[i] is a node, a function of the
                 leaves: equal expressions must have equal derivatives), and D of an
                 expression containing dy or D(f, .) (dy depends on the leaves through
                 the arbitrary f; treating it as constant proves false claims)
    P(a, b)      local partial of node a with respect to its direct parent b

`instantiate` turns a template into an expression of a concrete model (a `BatchNorm`, or any
model file's `symbn.graph.Instance`).

>>> from symbn.model import BatchNorm
>>> step = parse('''
... title = "demo"
... model = "batchnorm"
... [[step]]
... id = "dmu"
... claim = "D(mu, x[j]) = 1/N"
... ''').steps[0]
>>> step.links
(D(mu, x[j]), 1/N)
>>> instantiate(step.links[0], BatchNorm(4), {INDEX["j"]: 2})
1/4

Modules: `vocabulary` (limits, names, D, P, `Vocabulary`), `builder` (the whitelist),
`weight` (the degree bound), `expression` (one expression, text to template), `files`
(derivation files), `interpret` (`instantiate`), `util` (helpers).
"""

from .builder import _Builder
from .expression import check_size, parse_expression, parse_tree
from .files import (
    STEP_KEYS,
    TOP_KEYS,
    Derivation,
    Step,
    load,
    parse,
    read_text,
    read_toml,
    shipped,
    string_field,
)
from .interpret import Interpreter, _Instantiate, instantiate
from .util import _clip, _did_you_mean, _free_indices, _one_line
from .vocabulary import (
    FUNCTIONS,
    INDEX,
    INDEXED,
    MAX_CLAIM_CHARS,
    MAX_DEPTH,
    MAX_DERIVATIVE_DEPTH,
    MAX_EXPONENT,
    MAX_FILE_BYTES,
    MAX_INTEGER,
    MAX_NODES,
    MAX_STEPS,
    MAX_WEIGHT,
    NAMES,
    SCALARS,
    D,
    N,
    P,
    Vocabulary,
    builtin,
)
from .weight import _Weight

__all__ = [
    "BATCHNORM", "FUNCTIONS", "INDEX", "INDEXED", "MAX_CLAIM_CHARS", "MAX_DEPTH",
    "MAX_DERIVATIVE_DEPTH", "MAX_EXPONENT", "MAX_FILE_BYTES", "MAX_INTEGER", "MAX_NODES",
    "MAX_STEPS", "MAX_WEIGHT", "NAMES", "SCALARS", "STEP_KEYS", "TOP_KEYS",
    "D", "Derivation", "Interpreter", "N", "P", "Step", "Vocabulary", "builtin", "check_size", "instantiate", "load",
    "parse", "parse_expression", "parse_tree", "read_text", "read_toml", "shipped",
    "string_field"]


# private names that symbn.models, symbn.check, symbn.graph and the tests read from here
_SHARED = (_Builder, _Instantiate, _Weight, _clip, _did_you_mean, _free_indices, _one_line)

def __getattr__(name: str):
    if name == "BATCHNORM":  # read off the shipped model file on first use
        return builtin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
