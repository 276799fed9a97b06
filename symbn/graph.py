"""A layer as a computation graph: leaves, nodes defined by templates, and f; no layer named.

A `Model` (read from a model file by `symbn.models.load`) holds each node's definition as a
template of the derivation language, with `i` the element index: a node whose definition has
`i` free is an element node (one per element of a reduction set, xhat[i]), any other node a
set node (one per set, mu).  A node's parents are the leaves and nodes its definition names;
f is an arbitrary function of every output y[i], and dy[i] = df/dy[i].

Leaf kinds: `element` (x[i], one per element), `along` (gamma[i], one per position along the
reduction, shared by all sets), `set` (gamma, one per set), `constant` and `positive` (one
scalar for everything; positive ones are > 0).

`Model.instantiate(n, d)` is the concrete graph for D independent sets of N elements each.

>>> from symbn.models import load
>>> g = load("rmsnorm").instantiate(2)
>>> g.nodes[g.symbol("ms")].definition
x[1]**2/2 + x[2]**2/2
>>> [str(p) for p in g.nodes[g.symbol("xhat", 1)].parents]
['x[1]', 'ms', 'eps']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp

from .derivation import FUNCTIONS, INDEX, N, Vocabulary
from .errors import SymbnError
from .expr import Node, as_expr, rebuild, symbols_of

KINDS = ("element", "along", "set", "constant", "positive")
INDEXED_KINDS = ("element", "along")  # leaves written with a row: x[i], gamma[i]
SHARED_KINDS = ("along", "constant", "positive")  # leaves every set uses
ELEMENT = INDEX["i"]  # the element index of definitions
MAX_PATH_STEPS = 100_000


@dataclass(frozen=True)
class Definition:
    """A node or a name: its text, its template and the leaves and nodes it names, in order.

    >>> from symbn.models import load
    >>> load("batchnorm").nodes["v"].parents
    ('x', 'mu')
    """

    name: str
    text: str
    template: sp.Expr
    parents: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "parents", named(self.template))

    @property
    def element(self) -> bool:
        """Whether the element index i is free: one value per element, else one per set."""
        return ELEMENT in self.template.free_symbols


@dataclass(frozen=True)
class Result:
    """A closed form: D(f, leaf[j]) (or D(f, leaf) for a scalar leaf) = `template`.

    For a leaf shared by the sets (along, constant, positive) the template is one set's
    contribution; the derivative is its sum over the sets.
    """

    leaf: str
    key: str
    text: str
    template: sp.Expr


@dataclass(frozen=True)
class Model:
    """A layer: leaves with kinds, nodes in order, names, the output and closed forms.

    >>> from symbn.models import load
    >>> m = load("layernorm")
    >>> m.kind("gamma"), m.kind("mu"), m.kind("xhat"), m.children("mu")
    ('along', 'set', 'element', ('v', 'xhat'))
    """

    name: str
    title: str
    leaves: dict[str, str]
    nodes: dict[str, Definition]
    output: str
    axis: int
    names: dict[str, Definition] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    min_n: int = 1
    source: str = ""
    path: str = "<model>"

    def __post_init__(self):
        # the loader reports these with the file's keys; this guards models built in code
        for position, (name, node) in enumerate(self.nodes.items()):
            earlier = [*self.leaves, *list(self.nodes)[:position]]
            for p in node.parents:
                if p not in earlier:
                    raise SymbnError(f"{self.path}: [nodes] {name}: uses '{p}', which is not a "
                                     "leaf or an earlier node; list nodes in order")
        if self.output not in self.nodes or not self.nodes[self.output].element:
            raise SymbnError(f"{self.path}: [model] output: '{self.output}' is not an element "
                             "node; name the node f is a function of, such as y")

    @property
    def gradient(self) -> str:
        """The upstream gradient's name: dy for output y."""
        return "d" + self.output

    def kind(self, name: str) -> str:
        """A leaf's kind, 'element' or 'set' for a node, 'name' for a name."""
        if name in self.leaves:
            return self.leaves[name]
        if name in self.nodes:
            return "element" if self.nodes[name].element else "set"
        if name in self.names:
            return "name"
        raise SymbnError(f"{self.path}: '{name}' is not a leaf, node or name of {self.name}")

    def indexed(self, name: str) -> bool:
        """Whether `name` is written with a row, name[i]."""
        return name == self.gradient or self.kind(name) in INDEXED_KINDS

    def parents(self, name: str) -> tuple[str, ...]:
        """The leaves and nodes `name`'s definition names (f: the output)."""
        if name == "f":
            return (self.output,)
        return self.nodes[name].parents if name in self.nodes else ()

    def children(self, name: str) -> tuple[str, ...]:
        """The nodes (and f) whose definitions name `name`, in order."""
        found = tuple(n for n, node in self.nodes.items() if name in node.parents)
        return found + ("f",) * (name == self.output)

    def paths(self, leaf: str) -> list[tuple[str, ...]]:
        """Every path from `leaf` to f, for the backward mode's path sum.

        >>> from symbn.models import load
        >>> load("rmsnorm").paths("x")
        [('x', 'ms', 'xhat', 'y', 'f'), ('x', 'xhat', 'y', 'f')]
        """
        if leaf not in self.leaves:
            raise SymbnError(f"'{leaf}' is not a leaf of {self.name}; leaves: "
                             f"{', '.join(self.leaves)}")
        found, stack, visited = [], [(leaf,)], 0
        while stack:
            path, visited = stack.pop(), visited + 1
            if visited > MAX_PATH_STEPS:  # paths can be exponentially many in the nodes
                raise SymbnError(f"{self.path}: more than {MAX_PATH_STEPS} partial paths from "
                                 f"{leaf} to f; the path sum is too large to write out")
            if path[-1] == "f":
                found.append(path)
            stack.extend(path + (c,) for c in reversed(self.children(path[-1])))
        return found

    def vocabulary(self) -> Vocabulary:
        """The names derivation files about this model may use."""
        scalars = [n for n in [*self.nodes, *self.leaves] if not self.indexed(n)]
        indexed = [n for n in [*self.leaves, *self.nodes] if self.indexed(n)]
        same_row = tuple((c, p) for c, node in self.nodes.items() if node.element
                         for p in node.parents if self.indexed(p)
                         and all(e.indices == (ELEMENT,) for e in node.template.atoms(sp.Indexed)
                                 if str(e.base) == p))
        parents = {n: node.parents for n, node in self.nodes.items()}
        return Vocabulary(scalars=(*scalars, "f", *self.names),
                          indexed=(*indexed, self.gradient), leaves=dict(self.leaves),
                          parents={**parents, "f": (self.output,)}, names=tuple(self.names),
                          same_row=same_row, output=self.output, functions=tuple(FUNCTIONS))

    def weights(self) -> dict[str, tuple[int, int]]:
        """Degree bounds (numerator, denominator) of every leaf, node and name, for the
        derivation parser's size limit (`derivation._Weight`)."""
        from .derivation import _Weight

        table = {name: (1, 0) for name in [*self.leaves, self.gradient, "f"]}
        table["N"] = (0, 0)
        weigh = _Weight(table)
        for name, d in [*self.nodes.items(), *self.names.items()]:
            table[name] = weigh._of(d.template)
        return table

    def summary(self) -> str:
        """One line: leaves with kinds, nodes (element nodes with [i]), axis.

        >>> from symbn.models import load
        >>> load("rmsnorm").summary()
        'x element, gamma along, eps positive -> ms, xhat[i], y[i]; axis -1'
        """
        leaves = ", ".join(f"{name} {kind}" for name, kind in self.leaves.items())
        nodes = ", ".join(f"{n}[i]" if d.element else n for n, d in self.nodes.items())
        domain = f"; N >= {self.min_n}" if self.min_n > 1 else ""
        return f"{leaves} -> {nodes}; axis {self.axis}{domain}"

    def instantiate(self, n: int, d: int = 1) -> Instance:
        """The concrete graph for D sets of N elements; see `Instance`."""
        return Instance(self, n, d)


class Graph:
    """Nodes with parents and definitions, f last; what both modes of differentiation, the
    prover and the evaluator need of any layer: children, descendants, composition down to
    the leaves (sharing kept), exact evaluation, support.

    Subclasses set `nodes` (dict symbol -> Node in topological order, f last), `f`, `leaves`
    (independent variables, the upstream gradients included), `positive` (leaves known > 0)
    and `dys` (the upstream gradients: d<output> of each output node, f's parents).
    """

    nodes: dict
    f: sp.Symbol

    def _graph_init(self) -> None:
        self._children: dict | None = None
        self._composed: dict = {}
        self._composed_keeping: dict[frozenset, dict] = {}
        self.cache: dict = {}  # memo of derived quantities (local partials)

    @property
    def outputs(self) -> tuple:
        """The output nodes, f's parents in order."""
        return self.nodes[self.f].parents

    def children(self, symbol: sp.Symbol) -> list[sp.Symbol]:
        """Nodes having `symbol` as a direct parent, in definition order."""
        if self._children is None:
            self._children = {}
            for s, node in self.nodes.items():
                for p in node.parents:
                    self._children.setdefault(p, []).append(s)
        return list(self._children.get(symbol, []))

    def descendants(self, symbol: sp.Symbol) -> set:
        """Every node reachable from `symbol` along the graph's edges (its dependents)."""
        seen, stack = set(), [symbol]
        while stack:
            for c in self.children(stack.pop()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    def compose(self, expr: sp.Expr, keep: frozenset = frozenset()) -> sp.Expr:
        """`expr` with every node (except those in `keep`, and f) replaced by its composed
        definition; shared subexpressions stay shared, so a composed node is of size O(N)
        where the flattened tree would have O(N^2) terms."""
        expr = as_expr(expr)
        if keep:
            mapping = self._composed_keeping.get(keep)
            if mapping is None:  # the nodes never change: compose them once per `keep`
                mapping = self._composed_keeping[keep] = {}
                for s in self.nodes:
                    if s not in keep:
                        mapping[s] = rebuild(self.nodes[s].definition, mapping, {})
            return rebuild(expr, mapping, {})
        if len(self._composed) < len(self.nodes) - 1:
            for s in self.nodes:  # dict order is topological: parents are composed first
                if s not in self._composed and s != self.f:
                    self._composed[s] = rebuild(self.nodes[s].definition, self._composed, {})
        mapping = dict(self._composed)
        mapping[self.f] = self.nodes[self.f].definition  # f is never expanded
        return rebuild(expr, mapping, {})

    def evaluate(self, expr: sp.Expr, point: dict[sp.Symbol, Fraction | int]) -> sp.Expr:
        """Exact value of `expr` at `point` (exact leaf values), nodes computed in order with
        plain SymPy arithmetic on Rationals, independently of the prover."""
        values = {s: as_expr(q) for s, q in point.items()}
        needed = self.support(expr)
        for s, node in self.nodes.items():  # dict order is a topological order
            if s in needed and s != self.f:
                values[s] = node.definition.xreplace(values)
        out = rebuild(as_expr(expr), values, {}, evaluate=True)
        # a symbol-free part of `expr` built unevaluated (a derivative's constant terms)
        # is not rebuilt; evaluate it, so that 2/27 + 2/27 reads as the number 4/27
        return out.doit() if out.is_number and not out.is_Rational else out

    def support(self, expr: sp.Expr) -> set:
        """Every symbol `expr` depends on, through node definitions: nodes and leaves."""
        seen, stack = set(), list(symbols_of(as_expr(expr)))
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            if s in self.nodes:
                stack.extend(symbols_of(self.nodes[s].definition))
        return seen


class Instance(Graph):
    """A model at N = n with d independent sets: a symbol per node instance, each node's
    definition in terms of its parents' symbols, and f a function of every output.

    Element leaves and nodes are x[i,c] (x[i] when d = 1), along leaves gamma[i] whatever
    the set, set leaves and set nodes gamma[c] (gamma when d = 1), shared scalars eps.

    >>> from symbn.models import load
    >>> g = load("rmsnorm").instantiate(2)
    >>> g.compose(g.symbol("y", 1))  # unflattened: the composed ms is shared, not copied
    gamma[1]*(x[1]/sqrt(eps + (x[1]**2/2 + x[2]**2/2)))
    """

    def __init__(self, model: Model, n: int, d: int = 1):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise SymbnError(f"N must be a positive integer, got {n!r}; try N = 4")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise SymbnError(f"D must be a positive integer, got {d!r}; try D = 1")
        if n < model.min_n:
            raise SymbnError(f"{model.name} is defined for N >= {model.min_n}, got N = {n}; "
                             f"use N = {model.min_n} or more")
        self.model, self.n, self.d = model, n, d
        self._graph_init()
        self.f, self.f_function = sp.Symbol("f"), sp.Function("f")
        self._symbols: dict[tuple, sp.Symbol] = {}
        self._names: dict[tuple, tuple] = {}
        self._recording: tuple[list, list] | None = None
        self._mentioned: set | None = None
        self.nodes: dict[sp.Symbol, Node] = {}
        # node -> (divisors, radicands) as its template writes them, and the nodes it names:
        # SymPy cancels s/s to 1 and p - p to 0 as the definition is built, and a node
        # defined nowhere must not go unnoticed
        self.conditions: dict[sp.Symbol, tuple[list, list]] = {}
        self.mentions: dict[sp.Symbol, set] = {}
        for c in self.columns():
            for name, node in model.nodes.items():
                for i in (self.rows() if node.element else (None,)):
                    symbol = self.symbol(name, i, c)
                    outer, self._mentioned = self._mentioned, set()
                    definition, self.conditions[symbol] = self.recorded(
                        node.template, {"i": i} if i else {}, c, f"node {name}")
                    self.mentions[symbol], self._mentioned = self._mentioned, outer
                    self.nodes[symbol] = Node(symbol, self._parents(node, definition),
                                              definition)
        ys = tuple(self.symbol(model.output, i, c) for c in self.columns() for i in self.rows())
        self.nodes[self.f] = Node(self.f, ys, self.f_function(*ys))
        self._leaves: list[sp.Symbol] | None = None

    def _parents(self, node: Definition, definition: sp.Expr) -> tuple[sp.Symbol, ...]:
        """The leaf and node symbols `definition` names, in the order the model names them
        (row by row within a name); linear in the definition's size."""
        order = {name: k for k, name in enumerate(node.parents)}
        present = [s for s in symbols_of(definition) if s.name.split("[")[0] in order]
        return tuple(sorted(present, key=lambda s: (order[s.name.split("[")[0]],
                                                    _row_key(s.name))))

    def rows(self) -> range:
        return range(1, self.n + 1)

    def columns(self) -> range:
        return range(1, self.d + 1)

    def symbol(self, name: str, i: int | None = None, c: int = 1) -> sp.Symbol:
        """The symbol of a leaf, node or gradient at row i of set c.

        >>> from symbn.models import load
        >>> g = load("layernorm").instantiate(3, 2)
        >>> g.symbol("x", 2, 1), g.symbol("gamma", 2, 1), g.symbol("mu", c=2)
        (x[2,1], gamma[2], mu[2])
        """
        key = (name, i, c)
        if key not in self._symbols:
            m = self.model
            if name != m.gradient and (name not in m.leaves and name not in m.nodes):
                raise SymbnError(f"'{name}' is not a leaf or node of {m.name}")
            if not 1 <= c <= self.d:
                raise SymbnError(f"set {c} is outside 1..D = {self.d}")
            kind = "element" if name == m.gradient else m.kind(name)
            rowed = kind in INDEXED_KINDS
            if (i is None) == rowed or (rowed and not 1 <= i <= self.n):
                raise SymbnError(f"{name} needs {'a row 1..N' if rowed else 'no row'} "
                                 f"(N = {self.n}), got {i}")
            place = [i] if rowed else []
            if self.d > 1 and kind in ("element", "set"):
                place.append(c)
            text = f"{name}[{','.join(map(str, place))}]" if place else name
            self._symbols[key] = sp.Symbol(text)
        return self._symbols[key]

    def _candidates(self, name: str, c: int) -> list[sp.Symbol]:
        rows = self.rows() if self.model.indexed(name) else (None,)
        return [self.symbol(name, i, c) for i in rows]

    @property
    def leaves(self) -> list[sp.Symbol]:
        """Independent variables: the model's leaves, then the gradients dy."""
        if self._leaves is None:
            found: dict = {}
            for name in [*self.model.leaves, self.model.gradient]:
                for c in self.columns():
                    found.update(dict.fromkeys(self._candidates(name, c)))
            self._leaves = list(found)
        return self._leaves

    @property
    def positive(self) -> set:
        """The leaves known to be > 0 (kind positive), such as eps."""
        return {self.symbol(name) for name, kind in self.model.leaves.items()
                if kind == "positive"}

    @property
    def dys(self) -> set:
        """The upstream gradients dy[i] = df/dy[i], one per output node."""
        return {self.symbol(self.model.gradient, i, c) for c in self.columns()
                for i in self.rows()}

    def leaf(self, name: str, j: int | None = None, c: int = 1) -> sp.Symbol:
        """The leaf symbol D(f, .) of a result is taken with respect to: x[j], gamma[j], eps.

        >>> from symbn.models import load
        >>> load("layernorm").instantiate(3, 2).leaf("gamma", 2)
        gamma[2]
        """
        return self.symbol(name, j if self.model.indexed(name) else None, c)

    def template(self, expr: sp.Expr, rows: dict | None = None, c: int = 1) -> sp.Expr:
        """A template of the model (definition, name or result) at `rows` (index name -> row)
        in set c, with sums expanded and names replaced by their definitions.

        >>> from symbn.models import load
        >>> m = load("rmsnorm")
        >>> m.instantiate(2).template(m.names["sigma"].template)
        sqrt(eps + ms)
        """
        return self._run(expr, {str(k): int(v) for k, v in (rows or {}).items()}, c)

    def recorded(self, expr: sp.Expr, rows: dict | None = None, c: int = 1,
                 where: str = "") -> tuple[sp.Expr, tuple[list, list]]:
        """`template`, and the (divisors, radicands) it writes, each as (label, value in
        node symbols): the bases of its negative and half-integer powers."""
        outer, self._recording = self._recording, ([], [])
        try:
            value = self.template(expr, rows, c)
            found = self._recording
        finally:
            self._recording = outer
        if where:
            found = tuple([(sp.Symbol(f"{label} (in {where})"), v) for label, v in part]
                          for part in found)
        return value, found

    def conditions_of(self, expr: sp.Expr, mentioned=()) -> tuple[list, list]:
        """The divisors and radicands written by the nodes `expr` depends on and the nodes
        in `mentioned`, through their definitions and the nodes their templates name (see
        `recorded`)."""
        divisors, radicands = [], []
        seen, stack = set(), [*symbols_of(as_expr(expr)), *mentioned]
        while stack:
            s = stack.pop()
            if s in seen or s not in self.nodes:
                continue
            seen.add(s)
            if s == self.f:  # f(y...) of every output
                stack.extend(self.outputs)
                continue
            d, r = self.conditions.get(s, ((), ()))
            divisors.extend(d)
            radicands.extend(r)
            stack.extend(symbols_of(self.nodes[s].definition))
            stack.extend(self.mentions.get(s, ()))
        return divisors, radicands

    def _run(self, e: sp.Expr, rows: dict, c: int) -> sp.Expr:
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed):
            symbol = self.symbol(str(e.base), self._row(e.indices[0], rows), c)
            if self._mentioned is not None and str(e.base) in self.model.nodes:
                self._mentioned.add(symbol)
            return symbol
        if e.is_Symbol:
            if e == N:
                return sp.Integer(self.n)
            if e.name in self.model.names:
                key = (e.name, c)
                if key not in self._names:
                    self._names[key] = self.recorded(self.model.names[e.name].template, {}, c)
                value, (divisors, radicands) = self._names[key]
                if self._recording is not None:
                    self._recording[0].extend(divisors)
                    self._recording[1].extend(radicands)
                return value
            symbol = self.symbol(e.name, None, c)
            if self._mentioned is not None and e.name in self.model.nodes:
                self._mentioned.add(symbol)
            return symbol
        if isinstance(e, sp.Sum):  # SymPy merges nested sums into one with several limits
            scopes = [rows]
            for var, _, _ in e.limits:
                scopes = [{**s, var.name: r} for s in scopes for r in self.rows()]
            return sp.Add(*[self._run(e.function, s, c) for s in scopes])
        if isinstance(e, sp.KroneckerDelta):
            a, b = (self._row(arg, rows) for arg in e.args)
            return sp.Integer(int(a == b))
        if e.is_Pow:
            base = self._run(e.base, rows, c)
            if self._recording is not None and e.exp.is_Rational and \
                    (not base.is_Number or base == 0 or base.is_negative):
                if e.exp.is_negative:
                    self._recording[0].append((e.base, base))
                if e.exp.q == 2:
                    self._recording[1].append((e.base, base))
            return sp.Pow(base, self._run(e.exp, rows, c))
        if e.is_Add or e.is_Mul:
            return e.func(*[self._run(a, rows, c) for a in e.args])
        raise SymbnError(f"{self.model.path}: cannot instantiate {type(e).__name__}: {e}")

    def _row(self, e: sp.Expr, rows: dict) -> int:
        if e.is_Symbol and e.name in rows:
            return rows[e.name]
        raise SymbnError(f"index {e} has no value; give it a row 1..N or bind it by a Sum")

    def result(self, leaf: str, j: int | None = None, c: int = 1) -> sp.Expr:
        """The closed form of D(f, leaf[j]) for set c (D(f, leaf) for scalar leaves), in node
        symbols and gradients; for shared leaves the sum over every set.

        >>> from symbn.models import load
        >>> load("batchnorm").instantiate(2).result("beta")
        dy[1] + dy[2]
        """
        m = self.model
        if leaf not in m.results:
            raise SymbnError(f"{m.path}: no result for {leaf}; add \"D(f, {leaf}"
                             f"{'[j]' if m.indexed(leaf) else ''})\" = ... to [results]")
        rows = {"j": j} if m.indexed(leaf) else {}
        sets = self.columns() if m.kind(leaf) in SHARED_KINDS else (c,)
        return sp.Add(*[self.template(m.results[leaf].template, rows, s) for s in sets])


def _row_key(name: str) -> tuple[int, ...]:
    """x[2,1] -> (2, 1); gamma -> ()."""
    inside = name.partition("[")[2].rstrip("]")
    return tuple(int(k) for k in inside.split(",")) if inside else ()


def named(template: sp.Expr) -> tuple[str, ...]:
    """The leaves, nodes and names a template names, in reading order.

    >>> from symbn.models import load
    >>> named(load("batchnorm").results["x"].template)
    ('gamma', 'v', 'eps', 'dy', 'x', 'mu')
    """
    found: list[str] = []
    for e in sp.preorder_traversal(template):
        name = str(e.base) if isinstance(e, sp.Indexed) else e.name if e.is_Symbol else None
        if name and name not in INDEX and e != N and name not in found:
            found.append(name)
    return tuple(found)
