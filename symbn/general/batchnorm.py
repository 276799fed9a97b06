"""BatchNorm for symbolic N: the definitions, forward mode and backward mode's path sums.

>>> sp.diff(mu(), x[j])
Sum(KroneckerDelta(j, p), (p, 1, N))/N
"""

from __future__ import annotations

from itertools import pairwise

import sympy as sp

from .normal import N, Unsupported, dy, eps, i, j, x

p, q, r = sp.symbols("p q r", integer=True, positive=True)  # bound inside mu, v and D(f, .)
gamma, beta = sp.symbols("gamma beta")  # the names BatchNorm(n) uses
mu_node, v_node = sp.symbols("mu v")  # node names, for local partials
XHAT = sp.Symbol("xhat_i")


def mu() -> sp.Expr:
    """mu = (1/N) sum_p x_p, as the model file defines it.

    >>> mu()
    Sum(x[p], (p, 1, N))/N
    """
    return DEFINITIONS["mu"][0]


def v() -> sp.Expr:
    """v = (1/N) sum_q (x_q - mu)^2, mu composed."""
    return DEFINITIONS["v"][0].xreplace({mu_node: mu()})


def compose(expr: sp.Expr) -> sp.Expr:
    """Replace the node names mu, v by their definitions (v first: it contains mu).

    >>> compose(2 * mu_node)
    2*Sum(x[p], (p, 1, N))/N
    """
    return expr.xreplace({v_node: v()}).xreplace({mu_node: mu()})


def _evaluated(e: sp.Expr) -> sp.Expr:
    """A template (kept unevaluated as written) rebuilt in SymPy's canonical form."""
    return e.func(*[_evaluated(a) for a in e.args]) if e.args else e


def _definitions() -> dict[str, tuple[sp.Expr, tuple[str, ...]]]:
    """node -> (definition in its direct parents, parents), read off models/batchnorm.toml:
    rows and bound indices in this module's symbols (each node's sum bound by the next of p,
    q), element nodes and leaves named by their row (xhat_i, x_j), the parameter eps left out
    of the parents as in the note's graph.

    >>> _definitions()["v"]
    (Sum((-mu + x[q])**2, (q, 1, N))/N, ('x_j', 'mu'))
    """
    from ..graph import ELEMENT
    from ..models import load

    m = load("batchnorm")
    letters = iter((p, q))
    rows = {n: f"{n}_j" if kind == "element" else n for n, kind in m.leaves.items()
            if kind != "positive"}
    rows |= {n: f"{n}_i" if node.element else n for n, node in m.nodes.items()}
    out = {}
    for name, node in m.nodes.items():
        t = _evaluated(node.template.xreplace({ELEMENT: i}))
        for total in t.atoms(sp.Sum):
            (old, low, high), = total.limits
            new = next(letters)
            t = t.xreplace({total: sp.Sum(total.function.xreplace({old: new}), (new, low, high))})
        t = t.xreplace({sp.IndexedBase(n)[i]: sp.Symbol(f"{n}_i") for n, d in m.nodes.items()
                        if d.element})
        out[rows[name]] = (t, tuple(rows[parent] for parent in node.parents if parent in rows))
    return out


DEFINITIONS = _definitions()
PARENT_SYMBOL = {"x_j": x[j], "mu": mu_node, "v": v_node, "xhat_i": XHAT,
                 "gamma": gamma, "beta": beta}


def xhat(row=i) -> sp.Expr:
    """x̂ at `row`, mu and v composed."""
    return compose(DEFINITIONS["xhat_i"][0].xreplace({i: row}))


def y(row=i) -> sp.Expr:
    return DEFINITIONS["y_i"][0].xreplace({XHAT: xhat(row)})


def closed_dx() -> sp.Expr:
    """The note's df/dx_j."""
    inv = v() + eps
    return gamma * inv ** sp.Rational(-1, 2) * (
        dy[j] - sp.Sum(dy[i], (i, 1, N)) / N
        - (x[j] - mu()) * inv ** -1 * sp.Sum((x[i] - mu()) * dy[i], (i, 1, N)) / N)


def forward_dx() -> sp.Expr:
    """sum_i dy_i d y_i / d x_j, y_i composed to the leaves and differentiated by `diff`."""
    return sp.Sum(dy[i] * sp.diff(y(i), x[j]), (i, 1, N))


def forward_param(p: sp.Symbol) -> sp.Expr:
    return sp.Sum(dy[i] * sp.diff(y(i), p), (i, 1, N))


def local_partial(node: str, parent: str) -> sp.Expr:
    """d node / d parent with the node's other parents held fixed (SymPy `diff`).

    >>> local_partial("xhat_i", "mu")
    -1/sqrt(eps + v)
    """
    definition, parents = DEFINITIONS[node]
    if parent not in parents:
        raise Unsupported(f"{parent} is not a direct parent of {node}")
    return sp.diff(definition, PARENT_SYMBOL[parent])


def path_families(source: str = "x_j") -> list[tuple[str, ...]]:
    """Paths f -> y_i -> ... -> source through the generic graph, listed source first.

    >>> path_families("gamma")
    [('gamma', 'y_i', 'f')]
    """
    found = []

    def walk(node: str, suffix: tuple) -> None:
        if node == source:
            found.append((node,) + suffix)
            return
        parents = ("y_i",) if node == "f" else DEFINITIONS[node][1] if node in DEFINITIONS \
            else ()
        for p in parents:
            walk(p, (node,) + suffix)

    walk("f", ())
    return sorted(found)


def backward(source: str = "x_j") -> sp.Expr:
    """sum_i dy_i * (sum over paths y_i -> ... -> source of the product of local partials)."""
    total = sp.Integer(0)
    for path in path_families(source):
        product = sp.Integer(1)
        for parent, child in pairwise(path):
            if child != "f":  # d f / d y_i = dy_i, outside the product
                product *= local_partial(child, parent)
        total += product
    total = total.xreplace({sp.Symbol("xhat_i"): (x[i] - mu_node) / sp.sqrt(v_node + eps)})
    return sp.Sum(dy[i] * compose(total), (i, 1, N))
