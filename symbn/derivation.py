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
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import sympy as sp

from .errors import SymbnError

if TYPE_CHECKING:
    from .graph import Graph

# Limits that keep a hostile file from hanging symbn or exhausting memory.
MAX_FILE_BYTES = 256 * 1024
MAX_STEPS = 500
MAX_CLAIM_CHARS = 4000
MAX_NODES = 1500          # AST nodes in one claim
MAX_DEPTH = 40            # nesting of the expression tree
MAX_DERIVATIVE_DEPTH = 3  # D or P inside D or P
MAX_INTEGER = 10 ** 12    # size of an integer literal
MAX_EXPONENT = 8          # |p/q| of an exponent; q must be 1 or 2
MAX_WEIGHT = 64           # bound on the polynomial degree a claim can reach, see _Weight

MODELS = ("batchnorm",)
INDEX = {name: sp.Symbol(name, integer=True) for name in ("i", "j", "k")}
N = sp.Symbol("N", integer=True, positive=True)
SCALARS = {name: sp.Symbol(name) for name in ("mu", "v", "eps", "gamma", "beta", "f", "sigma")}
INDEXED = {name: sp.IndexedBase(name) for name in ("x", "xhat", "y", "dy")}
FUNCTIONS = {"sqrt": 1, "Sum": 2, "KroneckerDelta": 2, "D": 2, "P": 2}
NAMES = sorted([*INDEX, "N", *SCALARS, *INDEXED, *FUNCTIONS])

# Direct parents of each node kind in the graph (row-matched for xhat <- x and y <- xhat).
PARENTS = {"mu": ("x",), "v": ("x", "mu"), "xhat": ("x", "mu", "v", "eps"),
           "y": ("xhat", "gamma", "beta"), "f": ("y",)}
LEAVES_FOR_D = ("x", "y", "gamma", "beta", "eps")
STEP_KEYS = ("id", "claim", "where", "text")
TOP_KEYS = ("title", "model", "source", "step")

_ID = re.compile(r"[a-z0-9-]{1,64}")
_CONDITION = re.compile(r"\s*([a-z]\w*)\s*(==|!=)\s*([a-z]\w*)\s*")


class D(sp.Function):
    """D(a, b): total derivative of the expression a with respect to b; never evaluates.

    >>> D(SCALARS["v"], INDEXED["x"][INDEX["j"]])
    D(v, x[j])
    """

    nargs = 2


class P(sp.Function):
    """P(a, b): local partial of node a with respect to its direct parent b; never evaluates.

    >>> P(INDEXED["xhat"][INDEX["i"]], SCALARS["v"])
    P(xhat[i], v)
    """

    nargs = 2


@dataclass(frozen=True)
class Vocabulary:
    """The names a claim may use and their roles in the graph; `BATCHNORM` is today's.

    `scalars` are written bare (mu, gamma), `indexed` with a row (x[i]); `leaves` maps each
    leaf to its kind (element, along, set, constant, positive): D(a, b) takes b among them
    or the `output`; `parents` gives each node, f included, its direct parents for P(a, b)
    and `same_row` the (node, parent) edges that join one row only; `names` stand for
    expressions (sigma), neither leaves nor nodes; `functions` are the callable ones.

    >>> BATCHNORM.gradient, BATCHNORM.leaves["gamma"]
    ('dy', 'set')
    """

    scalars: tuple[str, ...]
    indexed: tuple[str, ...]
    leaves: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    names: tuple[str, ...] = ()
    same_row: tuple[tuple[str, str], ...] = ()
    output: str = "y"
    functions: tuple[str, ...] = tuple(FUNCTIONS)

    @property
    def gradient(self) -> str:
        """The name of the upstream gradient: dy[i] = D(f, y[i])."""
        return "d" + self.output


# the order of `scalars` is the order error messages list them in
BATCHNORM = Vocabulary(
    scalars=("mu", "v", "gamma", "beta", "eps", "f", "sigma"), indexed=tuple(INDEXED),
    leaves={"x": "element", "gamma": "set", "beta": "set", "eps": "positive"},
    parents=PARENTS, names=("sigma",), same_row=(("xhat", "x"), ("y", "xhat")))


@dataclass(frozen=True)
class Step:
    """One claimed step: `links` is the chain a = b = c as unevaluated templates.

    `conditions` holds `sp.Eq(i, j)` / `sp.Ne(i, j)` from `where`.
    """

    id: str
    claim: str
    where: str
    text: str
    links: tuple[sp.Expr, ...]
    conditions: tuple

    @property
    def free_indices(self) -> tuple[sp.Symbol, ...]:
        """Index symbols free in the claim (not bound by a Sum), sorted by name."""
        found: set = set()
        for link in self.links:
            found |= _free_indices(link)
        return tuple(sorted(found, key=str))

    @property
    def rows(self) -> tuple[int, ...]:
        """Concrete row numbers the claim names, such as 2 in x[2]."""
        found: set = set()
        for link in self.links:
            found |= _rows(link)
        return tuple(sorted(found))

    def link_texts(self) -> list[str]:
        """The claim's links as written."""
        return [part.strip() for part in _split_links(self.claim)]


@dataclass(frozen=True)
class Derivation:
    """A parsed derivation file; `spec` is the model file it speaks of (None: the built-in
    BatchNorm vocabulary of `model = "batchnorm"`)."""

    title: str
    model: str
    source: str
    path: str
    steps: list[Step]
    spec: object = None


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------


def shipped() -> dict[str, Path]:
    """The derivations shipped with symbn, by name (the file name without .toml)."""
    here = Path(__file__).resolve().parent
    found: dict[str, Path] = {}
    # inside an installed package, then in a source checkout
    for folder in (here / "derivations", here.parent / "derivations"):
        if folder.is_dir():
            for p in sorted(folder.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def load(path_or_name: str) -> Derivation:
    """Read a derivation file; a bare name such as "batchnorm" loads the shipped file.

    >>> [s.id for s in load("batchnorm").steps][:2]
    ['df-dx-chain-rule', 'df-dgamma']
    """
    text = str(path_or_name)
    path, label = Path(text), text
    if not path.is_file():
        available = shipped()
        if text in available:
            path = available[text]
            label = str(path)
        elif path.exists():
            raise SymbnError(f"{text}: not a regular file; give a .toml derivation file")
        else:
            names = ", ".join(available) or "none"
            raise SymbnError(f"{text}: no such file or shipped derivation"
                             f"{_did_you_mean(text, available)}; shipped: {names}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise SymbnError(f"{text}: cannot read ({err.strerror}); check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise SymbnError(f"{text}: file larger than {MAX_FILE_BYTES // 1024} KiB; "
                         "a derivation file is a short list of steps")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SymbnError(f"{text}: not UTF-8 text (byte {err.start}); save it as UTF-8") \
            from None
    return parse(source, label)


def parse(source: str, path: str = "<string>") -> Derivation:
    """Parse derivation text (TOML) into a `Derivation`; `path` names it in errors."""
    if len(source) > MAX_FILE_BYTES:
        raise SymbnError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as err:
        raise SymbnError(f"{path}: malformed TOML: {_one_line(str(err))}") from None
    except RecursionError:
        raise SymbnError(f"{path}: malformed TOML: nested too deeply") from None
    for key in data:
        if key not in TOP_KEYS:
            raise SymbnError(f"{path}: unknown top-level key '{_clip(key)}'"
                             f"{_did_you_mean(key, TOP_KEYS)}; expected {', '.join(TOP_KEYS)}")
    title = _string(data, "title", path, required=True)
    model = _string(data, "model", path, required=True)
    spec = None if model in MODELS else _model(model, path)
    vocabulary = BATCHNORM if spec is None else spec.vocabulary()
    weights = None if spec is None else spec.weights()
    steps_data = data.get("step")
    if not isinstance(steps_data, list) or not steps_data:
        raise SymbnError(f"{path}: no steps; add [[step]] tables with id and claim")
    if len(steps_data) > MAX_STEPS:
        raise SymbnError(f"{path}: {len(steps_data)} steps, more than {MAX_STEPS}; split the file")
    steps, seen = [], set()
    for number, table in enumerate(steps_data, 1):
        if not isinstance(table, dict):
            raise SymbnError(f"{path}: step {number} is not a table; write [[step]]")
        step = _step(table, number, path, vocabulary, weights)
        if step.id in seen:
            raise SymbnError(f"{path}: step '{step.id}': duplicate id; ids must be unique")
        seen.add(step.id)
        steps.append(step)
    return Derivation(title, model, _string(data, "source", path) or "", path, steps, spec)


def _model(model: str, path: str):
    """The model a derivation names: a shipped model, or a model file relative to the
    derivation file."""
    from . import models

    if model in models.shipped():
        return models.load(model)
    candidate = Path(path).parent / model if not Path(model).is_absolute() else Path(model)
    if model.endswith(".toml") and candidate.is_file():
        return models.load(candidate)
    raise SymbnError(f"{path}: model '{_clip(model)}' is not known; use a shipped model "
                     f"({', '.join(models.shipped())}) or a .toml model file relative to "
                     "this file")


def _string(table: dict, key: str, where: str, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise SymbnError(f"{where}: '{key}' must be a string ({got}); write {key} = \"...\"")
    return value


def _step(table: dict, number: int, path: str, vocabulary: Vocabulary = BATCHNORM,
          weights: dict | None = None) -> Step:
    for key in table:
        if key not in STEP_KEYS:
            raise SymbnError(f"{path}: step {number}: unknown key '{_clip(key)}'"
                             f"{_did_you_mean(key, STEP_KEYS)}; expected {', '.join(STEP_KEYS)}")
    sid = _string(table, "id", f"{path}: step {number}", required=True)
    if not _ID.fullmatch(sid):
        raise SymbnError(f"{path}: step {number}: id '{_clip(sid)}' must match [a-z0-9-]+ "
                         "(at most 64 characters)")
    where_at = f"{path}: step '{sid}'"
    claim = _string(table, "claim", where_at, required=True)
    where = _string(table, "where", where_at) or ""
    text = _string(table, "text", where_at) or ""
    links = _parse_claim(claim, where_at, vocabulary, weights)
    conditions = _parse_where(where, where_at)
    step = Step(sid, claim, where, text, links, conditions)
    free = step.free_indices
    for cond in conditions:
        for sym in cond.args:
            if sym not in free:
                names = ", ".join(map(str, free)) or "none"
                raise SymbnError(f"{where_at}: where names {sym}, which is not a free index "
                                 f"of the claim (free: {names})")
    return step


def _parse_where(where: str, at: str) -> tuple:
    if not where.strip():
        return ()
    out = []
    for part in re.split(r"\band\b", where):
        m = _CONDITION.fullmatch(part)
        if not m or m.group(1) not in INDEX or m.group(3) not in INDEX:
            raise SymbnError(f"{at}: cannot read where = '{_clip(where)}'; write conditions "
                             "like \"i != j\" or \"i == j\", joined by \" and \"")
        a, op, b = m.groups()
        if a == b:
            raise SymbnError(f"{at}: where compares {a} with itself; compare two indices")
        rel = sp.Eq if op == "==" else sp.Ne
        out.append(rel(INDEX[a], INDEX[b], evaluate=False))
    return tuple(out)


def _split_links(claim: str) -> list[str]:
    """Split a chain a = b = c at the `=` signs outside brackets (not ==, !=, <=, >=, :=)."""
    parts, depth, start = [], 0, 0
    for pos, ch in enumerate(claim):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if (ch == "=" and depth == 0 and claim[pos - 1:pos] not in ("=", "!", "<", ">", ":")
                and claim[pos + 1:pos + 2] != "="):
            parts.append(claim[start:pos])
            start = pos + 1
    return parts + [claim[start:]]


def _parse_claim(claim: str, at: str, vocabulary: Vocabulary = BATCHNORM,
                 weights: dict | None = None) -> tuple[sp.Expr, ...]:
    if len(claim) > MAX_CLAIM_CHARS:
        raise SymbnError(f"{at}: claim is {len(claim)} characters, more than "
                         f"{MAX_CLAIM_CHARS}; split it into steps")
    depth = 0
    for ch in claim:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth > MAX_DEPTH:
            raise SymbnError(f"{at}: brackets nested more than {MAX_DEPTH} deep; simplify")
    parts = _split_links(claim)
    if len(parts) < 2:
        hint = ("; write one '=' between the sides, not '=='"
                if "==" in claim else "")
        raise SymbnError(f"{at}: claim must be an equation 'lhs = rhs' (or a chain a = b = c)"
                         f"{hint}")
    links = []
    for part in parts:
        if not part.strip():
            raise SymbnError(f"{at}: empty side in claim '{_clip(claim)}'")
        try:
            tree = ast.parse(part.strip(), mode="eval")
        except SyntaxError as err:
            raise SymbnError(f"{at}: syntax error in '{_clip(part.strip())}': {err.msg}") from None
        except (RecursionError, MemoryError):
            raise SymbnError(f"{at}: '{_clip(part.strip())}' is nested too deeply; "
                             "simplify the expression") from None
        except ValueError as err:
            raise SymbnError(f"{at}: cannot read '{_clip(part.strip())}': {err}") from None
        nodes = sum(1 for _ in ast.walk(tree))
        if nodes > MAX_NODES:
            raise SymbnError(f"{at}: expression has {nodes} parts, more than {MAX_NODES}; "
                             "split it into steps")
        builder = _Builder(at, vocabulary)
        expr = builder.build(tree.body, 0)
        weigh = _Weight()
        if weights is not None:
            weigh.NODE = weights  # the model's nodes weighed as defined
        weight = weigh.of(expr)
        if weight > MAX_WEIGHT:
            raise SymbnError(f"{at}: '{_clip(part.strip())}' can reach polynomial degree "
                             f"{weight}, more than {MAX_WEIGHT}; lower exponents or nesting")
        links.append(expr)
    return tuple(links)


# ---------------------------------------------------------------------------------------
# the whitelist: ast -> SymPy
# ---------------------------------------------------------------------------------------


class _Builder:
    """Builds an unevaluated SymPy template from a Python expression AST, node by node,
    accepting the names of `vocabulary` (BatchNorm's by default)."""

    def __init__(self, at: str, vocabulary: Vocabulary = BATCHNORM):
        self.at = at
        self.vocab = vocabulary
        self.scalars = {name: sp.Symbol(name) for name in vocabulary.scalars}
        self.indexed = {name: sp.IndexedBase(name) for name in vocabulary.indexed}
        self.known = sorted([*INDEX, "N", *self.scalars, *self.indexed, *vocabulary.functions])
        self.f = sp.Symbol("f")
        self.bound: list[str] = []  # Sum variables in scope
        self.derivative_depth = 0

    def fail(self, message: str, node: ast.AST | None = None) -> SymbnError:
        piece = f" '{_clip(ast.unparse(node))}'" if node is not None else ""
        return SymbnError(f"{self.at}:{piece} {message}")

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep; simplify the expression")
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"is not allowed ({_describe(node)}); claims use numbers, "
                            "+ - * / **, model names and "
                            f"{', '.join(self.vocab.functions)}", node)
        return method(node, depth + 1)

    # numbers and names -----------------------------------------------------------------
    def _Constant(self, node: ast.Constant, depth: int) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "exact rationals such as 1/2" if isinstance(value, float) else "integers"
            raise self.fail(f"is not allowed ({type(value).__name__} constant); use {hint}",
                            node)
        if value > MAX_INTEGER:
            raise self.fail(f"is larger than {MAX_INTEGER}", node)
        return sp.Integer(value)

    def _Name(self, node: ast.Name, depth: int) -> sp.Expr:
        name = node.id
        if name in self.scalars:
            if name == "f":
                raise self.fail(f"f appears only as D(f, ...) or P(f, {self.vocab.output}[i])",
                                node)
            return self.scalars[name]
        if name == "N":
            return N
        if name in INDEX:
            # an index names a row, never a number: i*dy[i] would break the row symmetry
            # that `check` relies on above EXHAUSTIVE_MAX_N
            raise self.fail(f"is an index and names a row: use it as x[{name}] or in "
                            f"KroneckerDelta({name}, k), not as a number", node)
        if name in self.indexed:
            raise self.fail(f"needs a row: write {name}[i] or {name}[2]", node)
        if name in self.vocab.functions:
            raise self.fail(f"is a function; call it as {name}(...)", node)
        raise self.fail(f"is not a known name{_did_you_mean(name, self.known)}", node)

    def _Subscript(self, node: ast.Subscript, depth: int) -> sp.Expr:
        base = node.value
        if not isinstance(base, ast.Name) or base.id not in self.indexed:
            raise self.fail(f"subscripts only apply to {', '.join(self.indexed)}", node)
        return self.indexed[base.id][self._row(node.slice, node)]

    def _row(self, node: ast.AST, whole: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Name) and node.id in INDEX:
            return INDEX[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value < 1:
                raise self.fail("rows are numbered from 1", whole)
            if node.value > MAX_INTEGER:
                raise self.fail(f"row larger than {MAX_INTEGER}", whole)
            return sp.Integer(node.value)
        name = ast.unparse(whole.value) if isinstance(whole, ast.Subscript) else "x"
        raise self.fail(f"is not a row: the row inside [...] must be one of the indices "
                        f"i, j, k or a number such as 2, e.g. {name}[j] or {name}[2]", whole)

    # arithmetic --------------------------------------------------------------------------
    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        operand = self.build(node.operand, depth)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.USub):
            if operand.is_Number:
                return -operand
            return sp.Mul(sp.Integer(-1), operand, evaluate=False)
        raise self.fail("is not allowed (only unary + and -)", node)

    def _BinOp(self, node: ast.BinOp, depth: int) -> sp.Expr:
        op = node.op
        if isinstance(op, ast.Pow):
            base = self.build(node.left, depth)
            return sp.Pow(base, self._exponent(node.right, node), evaluate=False)
        if not isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            raise self.fail(f"operator {type(op).__name__} is not allowed; use + - * / **", node)
        a, b = self.build(node.left, depth), self.build(node.right, depth)
        if isinstance(op, ast.Add):
            return sp.Add(a, b, evaluate=False)
        if isinstance(op, ast.Sub):
            neg = -b if b.is_Number else sp.Mul(sp.Integer(-1), b, evaluate=False)
            return sp.Add(a, neg, evaluate=False)
        if isinstance(op, ast.Mult):
            return sp.Mul(a, b, evaluate=False)
        if b.is_Number and b == 0:
            raise self.fail("divides by zero", node)
        if a.is_Number and b.is_Number:
            return a / b  # the exact rational, e.g. 1/2
        return sp.Mul(a, sp.Pow(b, sp.Integer(-1), evaluate=False), evaluate=False)

    def _exponent(self, node: ast.AST, whole: ast.AST) -> sp.Rational:
        value = _constant(node)
        if value is None:
            raise self.fail("exponent must be a number such as 2, -1 or -3/2", whole)
        if value.q not in (1, 2) or abs(value) > MAX_EXPONENT:
            raise self.fail(f"exponent {value} is not allowed; exponents are integers or "
                            f"halves with absolute value at most {MAX_EXPONENT}", whole)
        return value

    # functions ---------------------------------------------------------------------------
    def _Call(self, node: ast.Call, depth: int) -> sp.Expr:
        functions = self.vocab.functions
        if not isinstance(node.func, ast.Name) or node.func.id not in functions:
            name = node.func.id if isinstance(node.func, ast.Name) else None
            hint = _did_you_mean(name, functions) if name else ""
            raise self.fail(f"calls something other than {', '.join(functions)}{hint}", node)
        name = node.func.id
        if node.keywords:
            raise self.fail("keyword arguments are not allowed", node)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail("starred arguments are not allowed", node)
        if len(node.args) != FUNCTIONS[name]:
            raise self.fail(f"{name} takes {FUNCTIONS[name]} argument"
                            f"{'s' if FUNCTIONS[name] > 1 else ''}, got {len(node.args)}", node)
        return getattr(self, f"_call_{name}")(node, depth)

    def _call_sqrt(self, node: ast.Call, depth: int) -> sp.Expr:
        return sp.Pow(self.build(node.args[0], depth), sp.Rational(1, 2), evaluate=False)

    def _call_Sum(self, node: ast.Call, depth: int) -> sp.Expr:
        limits = node.args[1]
        if not (isinstance(limits, ast.Tuple) and len(limits.elts) == 3):
            raise self.fail("write Sum(e, (k, 1, N))", node)
        var, lower, upper = limits.elts
        if not (isinstance(var, ast.Name) and var.id in INDEX):
            raise self.fail("the summation index is i, j or k", node)
        if var.id in self.bound:
            raise self.fail(f"{var.id} is already a summation index here; use another", node)
        if not (isinstance(lower, ast.Constant) and type(lower.value) is int
                and lower.value == 1):
            raise self.fail("sums start at 1: write Sum(e, (k, 1, N))", node)
        if not (isinstance(upper, ast.Name) and upper.id == "N"):
            raise self.fail("sums run to N: write Sum(e, (k, 1, N))", node)
        self.bound.append(var.id)
        try:
            body = self.build(node.args[0], depth)
        finally:
            self.bound.pop()
        return sp.Sum(body, (INDEX[var.id], sp.Integer(1), N))

    def _call_KroneckerDelta(self, node: ast.Call, depth: int) -> sp.Expr:
        a, b = (self._row(arg, node) for arg in node.args)
        return sp.KroneckerDelta(a, b, evaluate=False)

    def _call_D(self, node: ast.Call, depth: int) -> sp.Expr:
        vocab = self.vocab
        leaves = [f"{name}[j]" if name in self.indexed else name for name in vocab.leaves]
        targets = [name for name in leaves if name.endswith("]")]
        targets += [f"{vocab.output}[i]", *(name for name in leaves if name not in targets)]
        wrt = self._model_name(node.args[1], node)
        if _kind(wrt) not in (*vocab.leaves, vocab.output):
            raise self.fail("differentiates with respect to "
                            f"{_kind(wrt)}; D(a, b) needs b = {_words(targets, 'or')}", node)
        a = self._derivand(node.args[0], depth)
        out, dy = f"{vocab.output}[i]", f"{vocab.gradient}[i]"
        if _kind(wrt) == vocab.output and a != self.f:
            # y[i] is a node, a function of the leaves: a derivative with respect to it
            # holding the leaves fixed would give equal expressions unequal derivatives
            # (D(y[1], y[1]) = 1 but D(gamma*xhat[1] + beta, y[1]) = 0)
            raise self.fail(f"differentiates with respect to {wrt}, a node; D(a, {out}) is "
                            f"defined only for a = f (df/d{out} = {dy}); differentiate with "
                            f"respect to a leaf {_words(leaves, 'or')}", node)
        if a != self.f and _has_df(a, vocab.gradient):
            varying = [name for name, kind in vocab.leaves.items()
                       if kind not in ("constant", "positive")]
            # dy[i] = df/dy[i] depends on y, hence on x, gamma and beta, through the
            # arbitrary f: its derivatives are second derivatives of f, which symbn does
            # not model, so treating dy as constant would prove false claims
            raise self.fail(f"differentiates an expression containing {vocab.gradient} or a "
                            f"derivative of f; {dy} = df/d{out} depends on "
                            f"{_words(varying, 'and')} through the arbitrary f, and second "
                            "derivatives of f are not modelled; state the claim without "
                            f"differentiating {vocab.gradient}", node)
        return D(a, wrt)

    def _call_P(self, node: ast.Call, depth: int) -> sp.Expr:
        child = self._model_name(node.args[0], node, allow_f=True)
        parent = self._model_name(node.args[1], node)
        ck, pk = _kind(child), _kind(parent)
        parents = self.vocab.parents
        if ck not in parents:
            raise self.fail(f"{ck} is not a node of the graph; P(a, b) needs a node a "
                            f"({', '.join(parents)})", node)
        if pk not in parents[ck]:
            raise self.fail(f"{pk} is not a direct parent of {ck}; the parents of {ck} are "
                            f"{', '.join(parents[ck])}", node)
        if (ck, pk) in self.vocab.same_row:
            r1, r2 = child.indices[0], parent.indices[0]
            if r1.is_Integer and r2.is_Integer and r1 != r2:
                raise self.fail(f"{parent} is not a direct parent of {child}; "
                                f"only row {r1} is", node)
        return P(child, parent)

    def _derivand(self, node: ast.AST, depth: int) -> sp.Expr:
        if isinstance(node, ast.Name) and node.id == "f":
            return self.f
        self.derivative_depth += 1
        try:
            if self.derivative_depth > MAX_DERIVATIVE_DEPTH:
                raise self.fail(f"D and P nest more than {MAX_DERIVATIVE_DEPTH} deep")
            return self.build(node, depth)
        finally:
            self.derivative_depth -= 1

    def _model_name(self, node: ast.AST, whole: ast.AST, allow_f: bool = False) -> sp.Expr:
        if allow_f and isinstance(node, ast.Name) and node.id == "f":
            return self.f
        vocab = self.vocab
        if (isinstance(node, ast.Name) and node.id in self.scalars and node.id != "f"
                and node.id not in vocab.names):
            return self.scalars[node.id]
        if isinstance(node, ast.Subscript):
            return self._Subscript(node, 0)
        names = [f"{name}[j]" if name in vocab.leaves else f"{name}[i]"
                 for name in self.indexed if name != vocab.gradient]
        names += [name for name in self.scalars if name != "f" and name not in vocab.names]
        raise self.fail(f"needs a model name here ({', '.join(names)})", whole)


def _constant(node: ast.AST) -> sp.Rational | None:
    """An exponent written as a number: 2, -1, 1/2, -3/2, (-3)/2; None otherwise."""
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value <= 1000:
        return sp.Integer(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        a, b = _constant(node.left), _constant(node.right)
        if a is None or b is None or b == 0 or not (a.is_Integer and b.is_Integer):
            return None
        return sp.Rational(a, b)
    return None


class _Weight:
    """An upper bound on the total degree of a link's numerator plus denominator, after
    clearing denominators; it keeps a file from asking for polynomials of astronomic size.

    Each expression weighs (n, d): its value is P/Q with deg P <= n, deg Q <= d, as by the
    fraction rules: a sum a/b + c/e is (a e + c b)/(b e), so it weighs (max(n1 + d2, n2 + d1),
    d1 + d2) and a sum of polynomials only its largest term; a product adds weights.  Leaves
    weigh (1, 0), nodes what their definition can reach (sqrt(v + eps) counted as degree 2);
    a derivative (n, d) -> (n + d + 2, 2 d + 2) (quotient rule, chain rule through the
    nodes).  A Sum whose terms divide by something depending on its index has up to N
    different denominators: per such index it weighs as a sum of `SUM_TERMS` of them.
    """

    SUM_TERMS = 8

    NODE: ClassVar[dict[str, tuple[int, int]]] = {
        "mu": (1, 0), "v": (2, 0), "sigma": (2, 0), "eps": (1, 0), "gamma": (1, 0),
        "beta": (1, 0), "f": (1, 0), "x": (1, 0), "dy": (1, 0), "xhat": (2, 2),
        "y": (3, 2), "N": (0, 0)}

    def of(self, e: sp.Expr) -> int:
        n, d = self._of(e)
        return n + d

    def _of(self, e: sp.Expr) -> tuple[int, int]:
        if e.is_Number or isinstance(e, sp.KroneckerDelta):
            return (0, 0)
        if isinstance(e, sp.Indexed):
            return self.NODE[str(e.base)]
        if e.is_Symbol:
            return self.NODE.get(e.name, (0, 0))
        if isinstance(e, D):
            n, d = self._of(e.args[0])
            return (n + d + 2, 2 * d + 2)
        if isinstance(e, P):
            n, d = self._of(e.args[0])
            return (n + 2, d + 2)
        if isinstance(e, sp.Sum):
            n, d = self._of(e.function)
            divisors = set()
            for p in e.function.atoms(sp.Pow):
                if p.exp.is_negative:
                    divisors |= p.base.free_symbols
            for limit in e.limits:
                if limit[0] in divisors:
                    n, d = n + (self.SUM_TERMS - 1) * d, self.SUM_TERMS * d
            return (n, d)
        if e.is_Pow:
            n, d = self._of(e.base)
            k = max(1, math.ceil(abs(e.exp)))
            return (k * n, k * d) if e.exp > 0 else (k * d, k * n)
        if e.is_Mul:
            parts = [self._of(a) for a in e.args]
            return (sum(p[0] for p in parts), sum(p[1] for p in parts))
        if e.is_Add:
            n, d = self._of(e.args[0])
            for a in e.args[1:]:
                n2, d2 = self._of(a)
                n, d = max(n + d2, n2 + d), d + d2
            return (n, d)
        raise SymbnError(f"cannot weigh {type(e).__name__}")


# ---------------------------------------------------------------------------------------
# templates -> a concrete model
# ---------------------------------------------------------------------------------------


def instantiate(expr: sp.Expr, bn: Graph, assignment: dict) -> sp.Expr:
    """The template `expr` as an expression of the concrete model `bn`.

    `assignment` maps each free index (a Symbol in `INDEX`, or its name) to a row 1..N.
    Sums are expanded over 1..N, D becomes `total_derivative`, P `local_partial` (a P
    whose second argument is not a direct parent of the first raises `SymbnError` naming
    the node's parents), sigma = sqrt(v + eps) and dy[i] the leaf df/dy_i.

    >>> from symbn.model import BatchNorm
    >>> x, j = INDEXED["x"], INDEX["j"]
    >>> instantiate(sp.Sum(x[j], (j, 1, N)), BatchNorm(3), {})
    x[1] + x[2] + x[3]
    """
    rows = {}
    for key, value in assignment.items():
        name = str(key)
        if name not in INDEX:
            raise SymbnError(f"{name} is not an index name; use i, j or k")
        rows[name] = int(value)
    return _Instantiate(bn).run(expr, rows)


class _Instantiate:
    """Template -> model expression; D and P results are remembered per row assignment."""

    def __init__(self, bn: Graph):
        self.bn = bn
        self.memo: dict = {}
        # (template, instance) of every base raised to a negative power, in the order met:
        # SymPy cancels v/v to 1 as it builds the instance, so a side's definedness is
        # judged on these, not on the instance
        self.denominators: list[tuple[sp.Expr, sp.Expr]] = []
        self.radicands: list[tuple[sp.Expr, sp.Expr]] = []  # bases of square roots, likewise

    def row(self, e: sp.Expr, rows: dict) -> int:
        if e.is_Integer:
            r = int(e)
        elif e.is_Symbol and e.name in rows:
            r = rows[e.name]
        else:
            raise SymbnError(f"index {e} has no value; give it one (1..N) or bind it by a Sum")
        if not 1 <= r <= self.bn.n:
            raise SymbnError(f"row {r} is outside 1..N = {self.bn.n}")
        return r

    def run(self, e: sp.Expr, rows: dict) -> sp.Expr:
        bn = self.bn
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed) or e.is_Symbol:
            return self._name(e, rows)
        if isinstance(e, sp.Sum):  # SymPy merges nested sums into one with several limits
            scopes = [rows]
            for var, lower, upper in e.limits:
                hi = bn.n if upper == N else int(upper)
                scopes = [{**scope, var.name: r} for scope in scopes
                          for r in range(int(lower), hi + 1)]
            return sp.Add(*[self.run(e.function, scope) for scope in scopes])
        if isinstance(e, sp.KroneckerDelta):
            a, b = (self.row(arg, rows) for arg in e.args)
            return sp.Integer(int(a == b))
        if isinstance(e, (D, P)):
            key = (e, tuple(sorted(rows.items())))
            if key not in self.memo:
                from .differentiate import local_partial, total_derivative
                rule = total_derivative if isinstance(e, D) else local_partial
                mark, root = len(self.denominators), len(self.radicands)
                value = rule(bn, self.run(e.args[0], rows), self.run(e.args[1], rows))
                self.memo[key] = (value, self.denominators[mark:], self.radicands[root:])
            else:
                self.denominators.extend(self.memo[key][1])
                self.radicands.extend(self.memo[key][2])
            return self.memo[key][0]
        if e.is_Add:
            return sp.Add(*[self.run(a, rows) for a in e.args])
        if e.is_Mul:
            return sp.Mul(*[self.run(a, rows) for a in e.args])
        if e.is_Pow:
            base = self.run(e.base, rows)
            if e.exp.is_negative:
                self.denominators.append((e.base, base))
            if e.exp.q == 2:
                self.radicands.append((e.base, base))
            return sp.Pow(base, e.exp)
        raise SymbnError(f"cannot instantiate {type(e).__name__}: {e}")

    def _name(self, e: sp.Expr, rows: dict) -> sp.Expr:
        """A name of a model file's vocabulary (`symbn.graph.Instance`)."""
        g = self.bn
        if isinstance(e, sp.Indexed):
            return g.symbol(str(e.base), self.row(e.indices[0], rows))
        if e == N:
            return sp.Integer(g.n)
        if e.name in INDEX:
            return sp.Integer(self.row(e, rows))
        if e.name == "f":
            return g.f
        if e.name in g.model.names:  # through run: its divisors and radicands are recorded
            return self.run(g.model.names[e.name].template, {})
        return g.symbol(e.name)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


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
