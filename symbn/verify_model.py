"""`symbn verify --model M`: any layer's gradients for a concrete N (and D), proved both ways.

The model file gives the graph (`symbn.graph`); for every leaf with a closed form in its
`[results]` three claims are decided, instance by instance: forward mode (compose, then
differentiate) = the closed form, backward mode (the sum over the graph's paths of products
of local partials) = the closed form, and forward = backward without the closed form.  A
model without results gets the last claim for every leaf, and the derived gradient is
printed.  With D > 1 sets, outputs of one set are proved independent of the element leaves of
another, and a leaf shared by the sets (along, positive) has the sum over the sets as its
derivative (`Instance.result`).

Up to `EXHAUSTIVE_MAX_N` elements every instance is checked with whole sums.  Above, row
symmetry: a model file names rows only by indices and sums over all of them, so permuting the
elements of a set (element leaves, along leaves and dy together) maps the model, both modes
and the closed forms to themselves.  Each closed form is first proved a linear form in dy
(structural induction, claim closed/d<leaf>-linear); then the dy_i-coefficient of D(f, leaf_j)
obeys c_p(i)p(j)(p x) = c_ij(x), so i = j = 1 and i = 2, j = 1 stand for every pair (i = 1
alone for a leaf without a row), in set 1, which stands for every set by the same argument
applied to the sets.

>>> report = verify_model("rmsnorm", n=2)
>>> report.ok, report["backward/dgamma"].verdict
(True, 'proved')
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sympy as sp

from .differentiate import backward_gradient, forward_gradient, total_derivative
from .errors import SymbnError
from .graph import INDEXED_KINDS, SHARED_KINDS, Instance, Model
from .prove import (
    PROVED,
    UNKNOWN,
    Algebra,
    Outcome,
    RandomTester,
    unit_coefficient,
)
from .prove.definedness import not_together
from .report import Report
from .verify import _Checker
from .verify import _linear as linear_outcome

MAX_CELLS = 1 << 12       # N x D
EXHAUSTIVE_MAX_N = 8      # every instance, whole sums; above: row symmetry, dy coefficients
EXHAUSTIVE_MAX_CELLS = 24


def verify_model(model: Model | str, n: int | str, d: int = 1, timeout: float | None = None,
                 progress: Callable[[str], None] | None = None, method: str = "exact",
                 points: int = 8, seed: int = 0) -> Report:
    """Prove the model's closed forms, forward and backward mode, for N elements in D sets.

    `n="all"` proves them for every N >= the model's min_n at once (`symbn.every_n`).
    `method="random"` evaluates both sides exactly at `points` random points instead
    (`prove.RandomTester`, one square root per claim): `probable` with the Schwartz-Zippel
    bound, never `proved`; a claim with several square roots is `unknown` there."""
    from .models import load

    m = model if isinstance(model, Model) else load(model)
    if n == "all":  # every N at once: the symbolic-N canonical form (symbn.every_n)
        if d != 1 or method != "exact":
            raise SymbnError("n='all' proves one set (d=1) with the exact method; the sets "
                             "are checked for a concrete size, such as n=3, d=2")
        from .every_n import verify_every_n

        return verify_every_n(m, timeout=timeout, progress=progress)
    if n * d > MAX_CELLS:
        raise SymbnError(f"n={n} with d={d} is beyond the limit of {MAX_CELLS} elements for "
                         f"models other than batchnorm (every instance is checked); use a "
                         "smaller n= or d=")
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    g = m.instantiate(n, d)
    if method not in ("exact", "random"):
        raise SymbnError(f"unknown method {method!r}; use exact or random")
    definer = Algebra(g)
    alg = definer if method == "exact" else RandomTester(g, points=points, seed=seed)
    written = _written_results(g)
    checker = _Checker(g, alg, deadline, definer, _undefined_results(g, definer, written),
                       written)
    exhaustive = n <= EXHAUSTIVE_MAX_N and n * d <= EXHAUSTIVE_MAX_CELLS
    claims = _claims(g) if exhaustive else _symmetric_claims(g)
    results = []
    for k, (cid, instances) in enumerate(claims):
        if progress is not None:
            progress(f"[{k + 1}/{len(claims)}] {cid} ({time.monotonic() - start:.0f} s so far)")
        results.append(checker.run(cid, instances))
    notes = [f"model {describe_source(m)}: the graph and the closed forms are read from it"]
    notes += [f"paths from {leaf} to f: " + "; ".join(" -> ".join(p) for p in m.paths(leaf))
              for leaf in m.leaves]
    if not m.results:
        notes += [f"derived: D(f, {g.leaf(leaf, 1)}) = {forward_gradient(g, g.leaf(leaf, 1))}"
                  for leaf in m.leaves]
    if not exhaustive:
        notes.append("rows are exchangeable (elements with their along leaves and dy), and so "
                     "are the sets: each claim compares dy-coefficients at i = j = 1 and "
                     "i = 2, j = 1 of set 1, which stand for every pair; the closed forms are "
                     "proved linear in dy first")
    if method == "random":
        notes.append("random method: both sides evaluated exactly at random points; "
                     "'probable' carries the Schwartz-Zippel bound; never 'proved'")
    info = {"model": m.name, "n": n, "d": d, "method": method, "exhaustive": exhaustive,
            "seconds": round(time.monotonic() - start, 3)}
    title = f"symbn verify: {m.title}, backward, N = {n}" + (f", D = {d}" if d > 1 else "")
    if method == "random":
        title += f" (random method, {points} points)"
    return Report(title, results, info, notes)


def describe_source(m: Model) -> str:
    """'layernorm (shipped)' or 'mine (mine.toml)': how reports name a model's file."""
    from .models import shipped

    path = shipped().get(m.name)
    shipped_file = path is not None and str(path) == str(m.path)
    return f"{m.name} (shipped)" if shipped_file else f"{m.name} ({m.path})"


Claim = tuple[str, Callable[[], sp.Expr], Callable[[], sp.Expr]]


def _cells(g: Instance, leaf: str) -> list[tuple[str, int | None, int]]:
    """(label, row, set) of every instance of a leaf's derivative."""
    kind = g.model.kind(leaf)
    rows = list(g.rows()) if kind in INDEXED_KINDS else [None]
    sets = [1] if kind in SHARED_KINDS else list(g.columns())
    out = []
    for c in sets:
        for j in rows:
            where = [f"j={j}"] * (j is not None) + [f"set {c}"] * (g.d > 1 and len(sets) > 1)
            out.append((", ".join(where), j, c))
    return out


def _written_results(g: Instance) -> dict[str, tuple[list, list]]:
    """{claim id: (divisors, radicands)} each closed form in [results] writes at row 1 (a
    disproof's witness must make them defined)."""
    out = {}
    for leaf in g.model.results:
        j = 1 if g.model.indexed(leaf) else None
        _, written = g.recorded(g.model.results[leaf].template, {"j": j} if j else {}, 1)
        out[f"forward/d{leaf}"] = out[f"backward/d{leaf}"] = written
    return out


def _undefined_results(g: Instance, definer: Algebra, written: dict) -> dict[str, str]:
    """{claim id: why} for the claims against a closed form that is undefined everywhere at
    this N, judged on its template as written (`_written_results`; SymPy reads
    sqrt(-1 - eps)**2 as -1 - eps): a divisor identically zero, a radicand negative wherever
    it is not 0, or roots never real together with the nodes'."""
    out = {}
    nodes = g.conditions_of(g.f)
    for leaf in g.model.results:
        cid = f"forward/d{leaf}"
        divisors, radicands = written[cid]
        pows = [sp.Pow(b, -1, evaluate=False) for _, b in divisors] + \
            [sp.Pow(b, sp.Rational(1, 2), evaluate=False) for _, b in radicands]
        why = definer.undefined(sp.Tuple(*pows)) if pows else None
        if why is None and radicands and not definer.jointly_defined(
                [b for _, b in radicands + nodes[1]], [b for _, b in divisors + nodes[0]]):
            why = (f"undefined or undecided at N = {g.n}: "
                   f"{not_together(radicands + nodes[1], 'it, with the nodes,')}")
        if why is not None:
            leaf_j = g.leaf(leaf, 1 if g.model.indexed(leaf) else None)
            out[cid] = out[f"backward/d{leaf}"] = \
                f"the closed form D(f, {leaf_j}) in [results]: {why}"
    return out


def _claims(g: Instance) -> list[tuple[str, list[Claim]]]:
    m = g.model
    claims: list[tuple[str, list[Claim]]] = []
    for leaf in m.leaves:
        cells = _cells(g, leaf)

        def against(grad, cells=cells, leaf=leaf):
            return [(label, lambda j=j, c=c: grad(g, g.leaf(leaf, j, c)),
                     lambda j=j, c=c: g.result(leaf, j, c)) for label, j, c in cells]
        if leaf in m.results:
            claims.append((f"forward/d{leaf}", against(forward_gradient)))
            claims.append((f"backward/d{leaf}", against(backward_gradient)))
        claims.append((f"forward=backward/d{leaf}", [
            (label, lambda j=j, c=c, leaf=leaf: forward_gradient(g, g.leaf(leaf, j, c)),
             lambda j=j, c=c, leaf=leaf: backward_gradient(g, g.leaf(leaf, j, c)))
            for label, j, c in cells]))
    if g.d > 1:
        element = [name for name, kind in m.leaves.items() if kind == "element"]
        zero = sp.Integer(0)
        claims.append(("sets/independent", [
            (f"d {g.symbol(m.output, i, 1)} / d {g.symbol(x, k, 2)}",
             lambda i=i, k=k, x=x: total_derivative(g, g.symbol(m.output, i, 1),
                                                    g.symbol(x, k, 2)),
             lambda: zero)
            for x in element for i in g.rows() for k in g.rows()]))
    return claims


def _symmetric_claims(g: Instance) -> list[tuple[str, list[Claim] | Callable]]:
    """The claims by row symmetry: dy-coefficients at (i, j) = (1, 1), (2, 1) of set 1."""
    m = g.model
    dys = set(g.dys)
    claims: list = []
    for leaf in m.leaves:
        wrt = g.leaf(leaf, 1, 1)
        rows = ([1, 2] if g.n > 1 else [1]) if m.indexed(leaf) else [1]

        def coefficient(grad, i, wrt=wrt):
            y = g.symbol(m.output, i, 1)
            return unit_coefficient(grad(g, wrt, ys=[y]), sp.Symbol("d" + y.name), dys)

        def closed(i, leaf=leaf):
            dy = g.symbol(m.gradient, i, 1)
            return unit_coefficient(g.result(leaf, 1 if m.indexed(leaf) else None, 1), dy, dys)

        def label(i, leaf=leaf):
            return ("i=j" if i == 1 else "i!=j") if m.indexed(leaf) else f"dy_{i} coefficient"
        if leaf in m.results:
            linear = _linear(g, leaf)
            claims.append((f"closed/d{leaf}-linear", lambda linear=linear: linear))
            for grad, mode in ((forward_gradient, "forward"), (backward_gradient, "backward")):
                if linear.verdict != PROVED:  # coefficients would not decide the claim
                    claims.append((f"{mode}/d{leaf}", lambda leaf=leaf: Outcome(
                        UNKNOWN, "exact", note=f"needs closed/d{leaf}-linear")))
                    continue
                claims.append((f"{mode}/d{leaf}", [
                    (label(i), lambda i=i, grad=grad, c=coefficient: c(grad, i),
                     lambda i=i, c=closed: c(i)) for i in rows]))
        claims.append((f"forward=backward/d{leaf}", [
            (label(i), lambda i=i, c=coefficient: c(forward_gradient, i),
             lambda i=i, c=coefficient: c(backward_gradient, i)) for i in rows]))
    if g.d > 1:
        element = [name for name, kind in m.leaves.items() if kind == "element"]
        zero = sp.Integer(0)
        claims.append(("sets/independent", [
            (f"d {g.symbol(m.output, i, 1)} / d {g.symbol(x, 1, 2)}",
             lambda i=i, x=x: total_derivative(g, g.symbol(m.output, i, 1), g.symbol(x, 1, 2)),
             lambda: zero) for x in element for i in ([1, 2] if g.n > 1 else [1])]))
    return claims


def _linear(g: Instance, leaf: str) -> Outcome:
    """A closed form is a linear form in dy (every term exactly one dy factor)."""
    outcome = linear_outcome(g, g.result(leaf, 1 if g.model.indexed(leaf) else None, 1))
    if outcome.verdict != PROVED:
        outcome.note += ", so the row symmetry argument does not apply; use a smaller n="
    return outcome
