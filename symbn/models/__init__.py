"""Model files: one TOML file per layer, read safely into a `symbn.graph.Model`.

    name = "rmsnorm"                 # [a-z0-9-]+
    title = "RMSNorm"                # and optional source = "a citation"
    [leaves]                         # kind of each leaf: element, along, set, constant, positive
    x = "element"
    [nodes]                          # in order; the derivation language, i the element index
    ms = "Sum(x[k]**2, (k, 1, N))/N"
    [names]                          # optional: names for expressions, not nodes
    [model]
    output = "y"                     # an element node; f is a function of every y[i]
    axis = -1                        # the array axis the reduction runs along
    min_n = 1                        # optional: the smallest N the model is defined for
    [results]                        # optional closed forms, "D(f, x[j])" = "..."

Expressions go through the derivation parser's whitelist (`ast` into SymPy constructors,
never eval or sympify) with the same limits; every mistake is a one-line `SymbnError`
naming the file and the key.  Rows are named by indices, never numbers (N varies); sums
run over k or j in nodes and must not rebind a result's j.

>>> sorted(shipped())
['batchnorm', 'batchnorm-unbiased', 'layernorm', 'rmsnorm']
>>> load("rmsnorm").parents("xhat")
('x', 'ms', 'eps')
"""

from __future__ import annotations

import ast
import dataclasses
import keyword
import re
from pathlib import Path

import sympy as sp

from .. import derivation as lang
from ..derivation import INDEX, Vocabulary, _clip, _did_you_mean
from ..errors import SymbnError
from ..graph import INDEXED_KINDS, KINDS, Definition, Model, Result

TOP_KEYS = ("name", "title", "source", "leaves", "nodes", "names", "model", "results")
MODEL_KEYS = ("output", "axis", "min_n")
MAX_ENTRIES = 64  # leaves, nodes, names, results: each
MAX_AXIS, MAX_MIN_N = 32, 64
RESERVED = {*INDEX, "N", "f", *lang.FUNCTIONS}
_NAME = re.compile(r"[a-z0-9-]{1,64}")
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,31}")
ADVICE = "introduce intermediate nodes"  # ends the messages about an expression's size


def shipped() -> dict[str, Path]:
    """The models shipped with symbn, by name (the file name without .toml)."""
    found = Path(__file__).resolve().parent.glob("*.toml")
    return {p.stem: p for p in sorted(found, key=lambda p: p.stem)}


def load(name_or_path: str | Path) -> Model:
    """Read a model file; a bare name such as "layernorm" loads the shipped model.

    >>> load("layernorm").leaves
    {'x': 'element', 'gamma': 'along', 'beta': 'along', 'eps': 'positive'}
    """
    text = str(name_or_path)
    path, available = Path(text), shipped()
    if not path.is_file():
        if text in available:
            path = available[text]
        elif path.exists():
            raise SymbnError(f"{text}: not a regular file; give a .toml model file")
        else:
            raise SymbnError(f"{text}: no such file or shipped model"
                             f"{_did_you_mean(text, available)}; shipped: {', '.join(available)}")
    source = lang.read_text(path, str(path), "a model file is a few short definitions")
    return parse(source, str(path))


def describe(m: Model) -> str:
    """The model as `symbn models NAME` prints it: definitions, edges, paths, results.

    >>> describe(load("rmsnorm")).splitlines()[2]
    '  leaves: x[i] (element), gamma[i] (along), eps (positive)'
    """
    def row(name: str) -> str:
        return f"{name}[i]" if m.indexed(name) else name

    width = max(len(f"{row(n)} = {d.text}") for n, d in m.nodes.items())
    lines = [f"{m.name}: {m.title}"] + ([f"  source: {m.source}"] * bool(m.source))
    lines.append("  leaves: " + ", ".join(f"{row(n)} ({k})" for n, k in m.leaves.items()))
    for k, (name, d) in enumerate(m.nodes.items()):
        text = f"{row(name)} = {d.text}"
        lines.append(f"  {'nodes: ' if k == 0 else ' ' * 7} {text:<{width}}   <- "
                     + ", ".join(d.parents))
    for name, d in m.names.items():
        lines.append(f"  name:   {name} = {d.text}")
    lines.append(f"  output: {m.output} (f is a function of every {m.output}[i]; "
                 f"{m.gradient}[i] = df/d{m.output}[i]); reduction along axis "
                 f"{m.axis}" + (f"; defined for N >= {m.min_n}" if m.min_n > 1
                                  else ""))
    for leaf in m.leaves:
        paths = "; ".join(" -> ".join(p) for p in m.paths(leaf))
        lines.append(f"  paths from {leaf}: {paths}")
    for result in m.results.values():
        lines.append(f"  result: {result.key} = {result.text}")
    if not m.results:
        lines.append("  results: none (verify proves the two modes equal and prints the "
                     "gradient)")
    return "\n".join(lines)


def parse(source: str, path: str = "<string>") -> Model:
    """Parse model text (TOML) into a `Model`; `path` names it in errors."""
    data = lang.read_toml(source, path)
    _keys(data, TOP_KEYS, path, "top-level key")
    name = lang.string_field(data, "name", path, required=True)
    if not _NAME.fullmatch(name):
        raise SymbnError(f"{path}: name '{_clip(name)}' must match [a-z0-9-]+ (at most 64)")
    title = lang.string_field(data, "title", path, required=True)
    source_text = lang.string_field(data, "source", path) or ""
    leaves = _table(data, "leaves", path, 'x = "element"')
    nodes_text = _table(data, "nodes", path, 'y = "..."')
    names_text = _table(data, "names", path, "", required=False)
    results_text = _table(data, "results", path, "", required=False)
    settings = _table(data, "model", path, 'output = "y"')
    _keys(settings, MODEL_KEYS, path, "key in [model]")
    output = lang.string_field(settings, "output", f"{path}: [model]", required=True)
    axis = _integer(settings, "axis", path, -MAX_AXIS, MAX_AXIS - 1, "axis = -1")
    min_n = _integer(settings, "min_n", path, 1, MAX_MIN_N, "min_n = 2", default=1)

    seen: dict[str, str] = {}
    for section, table in (("leaves", leaves), ("nodes", nodes_text), ("names", names_text)):
        for key, value in table.items():
            at = f"{path}: [{section}] {_clip(key)}"
            if not _IDENT.fullmatch(key) or keyword.iskeyword(key) or key in RESERVED:
                raise SymbnError(f"{at}: not a usable name; use a lowercase identifier other "
                                 f"than {', '.join(sorted(RESERVED))}")
            if key in seen:
                raise SymbnError(f"{at}: already defined in [{seen[key]}]; names are unique")
            if not isinstance(value, str):
                raise SymbnError(f"{at}: must be a string ({type(value).__name__}); "
                                 f"write {key} = \"...\"")
            seen[key] = section
    for key, kind in leaves.items():
        if kind not in KINDS:
            raise SymbnError(f"{path}: [leaves] {key}: kind '{_clip(kind)}' is not one of "
                             f"{', '.join(KINDS)}{_did_you_mean(kind, KINDS)}")
    if "element" not in leaves.values():
        raise SymbnError(f"{path}: [leaves]: no element leaf; add one, e.g. x = \"element\"")
    if output not in nodes_text:
        raise SymbnError(f"{path}: [model] output: '{_clip(output)}' is not a node"
                         f"{_did_you_mean(output, nodes_text)}; name the last node, e.g. y")
    if "d" + output in seen:
        raise SymbnError(f"{path}: [{seen['d' + output]}] d{output}: the name of the "
                         f"gradient of the output {output}; rename it")

    _order(nodes_text, names_text, path)
    weights = {n: (1, 0) for n in [*leaves, "d" + output]}  # see derivation._Weight
    kinds: dict[str, str] = {}  # element or set, for each node read so far
    nodes: dict[str, Definition] = {}
    for key, text in nodes_text.items():  # each node sees the leaves and the nodes above it
        template = _expression(text, f"{path}: [nodes] {key}", _vocabulary(leaves, kinds),
                               weights, free=("i",), sums=("j", "k"))
        nodes[key] = Definition(key, text, template)
        kinds[key] = "element" if nodes[key].element else "set"
        weights[key] = _weigh(template, weights)
    if kinds[output] != "element":
        raise SymbnError(f"{path}: [model] output: {output} is a set node (no free i); f is a "
                         "function of an element node y[i]")
    names: dict[str, Definition] = {}
    for key, text in names_text.items():
        template = _expression(text, f"{path}: [names] {key}", _vocabulary(leaves, kinds),
                               weights, free=(), sums=("i", "j", "k"))
        names[key] = Definition(key, text, template)
    weights.update({key: _weigh(names[key].template, weights) for key in names})
    vocabulary = _vocabulary(leaves, kinds, tuple(names), gradient="d" + output)
    results = _results(results_text, path, vocabulary, weights)
    return Model(name, title, leaves, nodes, output, axis, names, results, min_n,
                 source_text, path)


def _vocabulary(leaves: dict, kinds: dict, names: tuple = (), gradient: str = "") -> Vocabulary:
    """The names an expression may use: leaves, the nodes read so far, and in results the
    names and the gradient."""
    both = {**leaves, **kinds}
    indexed = [n for n, kind in both.items() if kind in INDEXED_KINDS] + [gradient] * bool(gradient)
    scalars = [n for n, kind in both.items() if kind not in INDEXED_KINDS]
    return Vocabulary(scalars=(*scalars, *names), indexed=tuple(indexed), leaves=dict(leaves),
                      parents={}, names=names, output=gradient[1:] or "y",
                      functions=("sqrt", "Sum", "KroneckerDelta"))


def _order(nodes: dict[str, str], names: dict[str, str], path: str) -> None:
    """Cycles and nodes used above their definition, read off the names each node mentions."""
    order, mentions = list(nodes), {key: _mentions(text) for key, text in nodes.items()}
    for key in order:
        stack, seen = [(key,)], set()
        while stack:
            chain = stack.pop()
            for n in (m for m in mentions[chain[-1]] if m in nodes):
                if n == key:
                    raise SymbnError(f"{path}: [nodes] {key}: cycle {' -> '.join(chain + (n,))}"
                                     " (each uses the next); a node cannot depend on itself")
                if n not in seen:
                    seen.add(n)
                    stack.append(chain + (n,))
    for position, key in enumerate(order):
        for n in mentions[key]:
            if n in nodes and order.index(n) > position:
                raise SymbnError(f"{path}: [nodes] {key}: uses {n} before it is defined; "
                                 f"nodes are read in order: move {n} above {key}")
            if n in names:
                raise SymbnError(f"{path}: [nodes] {key}: uses the name {n}; a node names "
                                 f"leaves and nodes only: write out {n} or make it a node")


def _mentions(text: str) -> list[str]:
    """The identifiers in `text` in reading order; [] if it does not parse (reported later)."""
    try:
        tree = lang.parse_tree(text, "", ADVICE)
    except SymbnError:
        return []
    names = sorted((n.lineno, n.col_offset, n.id) for n in ast.walk(tree)
                   if isinstance(n, ast.Name))
    return [name for _, _, name in names]


def _expression(text: str, at: str, vocabulary: Vocabulary, weights: dict, free: tuple,
                sums: tuple) -> sp.Expr:
    """One expression read through the derivation parser's whitelist and limits; rows are
    named by indices, sums bind only `sums`, and only `free` may be free."""
    return lang.parse_expression(text, at, vocabulary, weights, ADVICE,
                                 check=lambda expr: _indices(expr, at, free, sums))


def _indices(expr: sp.Expr, at: str, free: tuple, sums: tuple) -> None:
    """Refuse a row named by number, a sum over an index not in `sums`, a free index not in
    `free`."""
    for e in sp.preorder_traversal(expr):
        rows = e.indices if isinstance(e, sp.Indexed) else (
            e.args if isinstance(e, sp.KroneckerDelta) else ())
        if any(r.is_Integer for r in rows):
            raise SymbnError(f"{at}: '{_clip(e)}' names a row by number; a model holds for "
                             "every N: name rows by an index (i, j, k)")
        for var in (limit[0] for limit in e.limits) if isinstance(e, sp.Sum) else ():
            if var.name not in sums:
                raise SymbnError(f"{at}: sums here run over {' or '.join(sums)}, not "
                                 f"{var.name}" + (f" ({var.name} is the element index)"
                                                  if var.name == "i" else ""))
    stray = sorted(str(s) for s in lang._free_indices(expr) if str(s) not in free)
    if stray:
        allowed = f"only {' and '.join(free)} may be free" if free else "no index may be free"
        raise SymbnError(f"{at}: free index {', '.join(stray)}; {allowed} here: bind "
                         f"{stray[0]} by a Sum(..., ({stray[0]}, 1, N))")


def _weigh(expr: sp.Expr, weights: dict) -> tuple[int, int]:
    """The derivation parser's degree bound, with this model's nodes weighed as defined."""
    return lang._Weight(weights)._of(expr)


def _results(table: dict, path: str, vocabulary: Vocabulary, weights: dict) -> dict:
    leaves = vocabulary.leaves
    forms = ", ".join(f"D(f, {n}[j])" if k in INDEXED_KINDS else f"D(f, {n})"
                      for n, k in leaves.items())
    left = dataclasses.replace(vocabulary, functions=(*vocabulary.functions, "D"))
    found: dict[str, Result] = {}
    for key, text in table.items():
        at = f'{path}: [results] "{_clip(key)}"'
        if not isinstance(text, str):
            raise SymbnError(f"{at}: must be a string ({type(text).__name__}); write the "
                             "closed form in quotes")
        lhs = _expression(key, at, left, weights, free=tuple(INDEX), sums=())
        wrt = lhs.args[1] if isinstance(lhs, lang.D) else None
        leaf = str(wrt.base) if isinstance(wrt, sp.Indexed) else str(wrt)
        indexed = leaves.get(leaf) in INDEXED_KINDS
        if (wrt is None or lhs.args[0] != sp.Symbol("f") or leaf not in leaves
                or (indexed and wrt.indices != (INDEX["j"],))):
            raise SymbnError(f"{at}: the left side must be the derivative of f by a leaf: "
                             f"one of {forms}")
        if leaf in found:
            raise SymbnError(f"{at}: a second result for {leaf} (first: "
                             f"\"{_clip(found[leaf].key)}\"); keep one")
        free = ("j",) if indexed else ()
        rhs = _expression(text, at, vocabulary, weights, free=free,
                          sums=tuple(x for x in ("i", "j", "k") if x not in free))
        found[leaf] = Result(leaf, key, text, rhs)
    return found


def _keys(table: dict, allowed: tuple, path: str, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise SymbnError(f"{path}: unknown {what} '{_clip(key)}'"
                             f"{_did_you_mean(key, allowed)}; expected {', '.join(allowed)}")


def _table(data: dict, key: str, path: str, example: str, required: bool = True) -> dict:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or (required and not value):
        raise SymbnError(f"{path}: [{key}] must be a non-empty table; add [{key}] with "
                         f"entries such as {example}")
    if len(value) > MAX_ENTRIES:
        raise SymbnError(f"{path}: [{key}]: {len(value)} entries, more than {MAX_ENTRIES}")
    return value


def _integer(table: dict, key: str, path: str, low: int, high: int, example: str,
             default: int | None = None) -> int:
    value = table.get(key, default)
    if type(value) is not int or not low <= value <= high:
        got = "missing" if value is None else _clip(repr(value))
        raise SymbnError(f"{path}: [model] {key} must be an integer in {low}..{high} "
                         f"({got}); write {example}")
    return value
