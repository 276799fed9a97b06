"""`symbn verify`: the note's results for a concrete N (and D), proved both ways.

Each claim is a list of instances (lhs, rhs); a claim is proved when every instance is.
Above `EXHAUSTIVE_MAX_N` the instances are chosen by row symmetry: permuting the rows
(x_i, dy_i) together maps the model, both derivatives and the closed form to themselves, so
a claim about the dy_i-coefficient of df/dx_j needs only j = 1 with i = 1 (i = j) and i = 2
(i != j).  That reduction needs the closed form to be linear in dy, which is itself proved
(claim closed/dx-linear).  `all_pairs=True` checks every j with whole sums instead.
"""

from __future__ import annotations

import time
from typing import Callable

import sympy as sp

from . import closed_form
from .differentiate import backward_gradient, forward_gradient, local_partial, paths, \
    total_derivative
from .errors import SymbnError
from .model import MAX_N_WITHOUT_TIMEOUT, BatchNorm, estimate_seconds
from .prove import DISPROVED, PROVED, UNKNOWN, Algebra
from .report import Report, Result

EXHAUSTIVE_MAX_N = 8
MAX_CELLS = 1 << 16
SYMMETRY_NOTE = ("rows are exchangeable: permuting (x_i, dy_i) together maps the model and "
                 "every claim to itself, so the instances i = j and i != j at j = 1 stand for "
                 "all N^2 index pairs (--all-pairs checks each pair)")

Instance = tuple[str, Callable[[], sp.Expr], Callable[[], sp.Expr]]


def verify(n: int, d: int = 1, timeout: float | None = None,
           all_pairs: bool | None = None) -> Report:
    """Prove the BatchNorm backward derivation for an N x D batch.

    >>> report = verify(n=2)
    >>> report.ok, report["forward/dx"].verdict
    (True, 'proved')
    """
    check_size(n, d, timeout)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    bn = BatchNorm(n, d)
    exhaustive = n <= EXHAUSTIVE_MAX_N if all_pairs is None else all_pairs
    checker = _Checker(bn, Algebra(bn), deadline)
    claims = _scalar_claims(bn, exhaustive) + (_matrix_claims(bn, exhaustive) if d > 1 else [])
    results = [_graph_result(bn)] + [checker.run(cid, inst) for cid, inst in claims]
    notes = [f"paths from f back to x_j (N = {n}: {len(paths(bn, bn.x(1)))} paths per j):"]
    notes += ["  " + family for family in path_families(bn)]
    if not exhaustive:
        notes.append(SYMMETRY_NOTE)
    info = {"n": n, "d": d, "exhaustive": exhaustive, "paths": path_families(bn),
            "seconds": round(time.monotonic() - start, 3)}
    title = f"symbn verify: BatchNorm backward, N = {n}" + (f", D = {d}" if d > 1 else "")
    return Report(title, results, info, notes)


def check_size(n: int, d: int, timeout: float | None) -> None:
    """Refuse sizes whose exact proof would take far too long, with the estimate."""
    if n * d > MAX_CELLS:
        raise SymbnError(f"N x D = {n * d} is beyond the exact method (limit {MAX_CELLS}, "
                         f"estimated {estimate_seconds(n, d):.2g} s); use a smaller --n")
    if timeout is None and n > MAX_N_WITHOUT_TIMEOUT:
        raise SymbnError(f"--n {n} would take about {estimate_seconds(n, d):.2g} s to prove "
                         f"exactly; use --n <= {MAX_N_WITHOUT_TIMEOUT} or set --timeout")


def path_families(bn: BatchNorm) -> list[str]:
    """The paths from f to x_j with the row index of xhat, y written as i (i = j shown as j)."""
    j = 1
    families = []
    for path in paths(bn, bn.x(j)):
        text = " -> ".join(_generic(str(s), bn) for s in path)
        if text not in families:
            families.append(text)
    return families


def _generic(name: str, bn: BatchNorm) -> str:
    if name == "x[1]" or name.startswith("x[1,"):
        return "x_j"
    if "[" not in name:
        return name
    base, index = name[:-1].split("[")
    if base in ("mu", "v", "gamma", "beta"):
        return base
    i = "j" if index.split(",")[0] == "1" else "i"
    return f"{base}_{i}"


class _Checker:
    def __init__(self, bn: BatchNorm, alg: Algebra, deadline: float | None):
        self.bn, self.alg, self.deadline = bn, alg, deadline

    def run(self, cid: str, instances: list[Instance]) -> Result:
        start = time.monotonic()
        method, notes = "", []
        for label, lhs, rhs in instances:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return Result(cid, UNKNOWN, "exact", time.monotonic() - start,
                              note="time budget exhausted")
            outcome = self.alg.decide(lhs(), rhs(), self.deadline)
            method = outcome.method
            if outcome.verdict != PROVED:
                witness = outcome.witness
                if witness is not None:
                    witness = {"instance": label, **witness}
                note = f"{label}: {outcome.note}" if outcome.note else label
                return Result(cid, outcome.verdict, method, time.monotonic() - start,
                              witness, note)
        note = f"{len(instances)} instances" if len(instances) > 2 else \
            ", ".join(label for label, _, _ in instances)
        return Result(cid, PROVED, method, time.monotonic() - start, note=note)


def _graph_result(bn: BatchNorm) -> Result:
    """The note's count: three edges leave x_j (to mu, v, xhat_j) and two leave mu."""
    start = time.monotonic()
    out_x = {_generic(str(s), bn).split("_")[0] for s in bn.children(bn.x(1))}
    out_mu = {_generic(str(s), bn).split("_")[0] for s in bn.children(bn.mu())}
    ok = (len(out_x), len(out_mu)) == (3, 2)
    note = f"x_j -> {{{', '.join(sorted(out_x))}}}, mu -> {{{', '.join(sorted(out_mu))}}}"
    return Result("graph/edges", PROVED if ok else DISPROVED, "graph enumeration",
                  time.monotonic() - start, note=note)


def _scalar_claims(bn: BatchNorm, exhaustive: bool) -> list[tuple[str, list[Instance]]]:
    """The note's per-column claims, on column 1."""
    n = bn.n
    zero = sp.Integer(0)
    if exhaustive:
        js = list(bn.rows())

        def dx_instances(grad):
            return [(f"j={j}", lambda j=j: grad(bn, bn.x(j)), lambda j=j: closed_form.dx(bn, j))
                    for j in js]
        fwd_bwd = [(f"j={j}", lambda j=j: forward_gradient(bn, bn.x(j)),
                    lambda j=j: backward_gradient(bn, bn.x(j))) for j in js]
        linear = []
    else:
        pairs = [(1, 1), (2, 1)] if n > 1 else [(1, 1)]

        def coeff(grad, i, j):
            return closed_form.unit_dy(bn, grad(bn, bn.x(j), ys=[bn.y(i)]), i)

        def dx_instances(grad):
            return [(_pair_label(i, j), lambda i=i, j=j: coeff(grad, i, j),
                     lambda i=i, j=j: closed_form.unit_dy(bn, closed_form.dx(bn, j), i))
                    for i, j in pairs]
        fwd_bwd = [(_pair_label(i, j), lambda i=i, j=j: coeff(forward_gradient, i, j),
                    lambda i=i, j=j: coeff(backward_gradient, i, j)) for i, j in pairs]
        linear = [("closed/dx-linear", [(
            "j=1", lambda: closed_form.dx(bn, 1),
            lambda: sp.Add(*[bn.dy(k) * closed_form.unit_dy(bn, closed_form.dx(bn, 1), k)
                             for k in bn.rows()]))])]
    return [
        ("backward/dv-dmu", [("", lambda: local_partial(bn, bn.v(), bn.mu()), lambda: zero)]),
        *linear,
        ("forward/dx", dx_instances(forward_gradient)),
        ("backward/dx", dx_instances(backward_gradient)),
        ("forward=backward/dx", fwd_bwd),
        ("forward/dgamma", [("", lambda: forward_gradient(bn, bn.gamma()),
                             lambda: closed_form.dgamma(bn))]),
        ("backward/dgamma", [("", lambda: backward_gradient(bn, bn.gamma()),
                              lambda: closed_form.dgamma(bn))]),
        ("forward/dbeta", [("", lambda: forward_gradient(bn, bn.beta()),
                            lambda: closed_form.dbeta(bn))]),
        ("backward/dbeta", [("", lambda: backward_gradient(bn, bn.beta()),
                             lambda: closed_form.dbeta(bn))]),
    ]


def _pair_label(i: int, j: int) -> str:
    return "i=j" if i == j else "i!=j"


def _matrix_claims(bn: BatchNorm, exhaustive: bool) -> list[tuple[str, list[Instance]]]:
    """Column independence and the matrix forms of df/dX, df/dgamma, df/dbeta."""
    zero = sp.Integer(0)
    rows, cols = list(bn.rows()), list(bn.columns())
    if exhaustive:
        quads = [(i, k, c, e) for i in rows for k in rows for c in cols for e in cols if c != e]
        cells = [(k, e) for k in rows for e in cols]
    else:
        quads = [(1, 1, 1, 2)] + ([(2, 1, 1, 2)] if bn.n > 1 else [])
        cells = [(1, 1)]
        cols = [1]
    return [
        ("columns/independent", [
            (f"d y[{i},{c}] / d x[{k},{e}]", lambda q=q: total_derivative(
                bn, bn.y(q[0], q[2]), bn.x(q[1], q[3])), lambda: zero)
            for q in quads for i, k, c, e in [q]]),
        ("matrix/dX", [(f"({k},{e})", lambda k=k, e=e: forward_gradient(bn, bn.x(k, e)),
                        lambda k=k, e=e: closed_form.dx(bn, k, e)) for k, e in cells]),
        ("matrix/dgamma", [(f"column {c}", lambda c=c: forward_gradient(bn, bn.gamma(c)),
                            lambda c=c: closed_form.dgamma(bn, c)) for c in cols]),
        ("matrix/dbeta", [(f"column {c}", lambda c=c: forward_gradient(bn, bn.beta(c)),
                           lambda c=c: closed_form.dbeta(bn, c)) for c in cols]),
    ]
