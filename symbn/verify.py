"""`symbn verify`: the note's results for a concrete N (and D), proved both ways.

Each claim is a list of instances (lhs, rhs); a claim is proved when every instance is.
Above `EXHAUSTIVE_MAX_N` the instances are chosen by row symmetry: permuting the rows
(x_i, dy_i) together maps the model, both derivatives and the closed form to themselves, so
a claim about the dy_i-coefficient of df/dx_j needs only j = 1 with i = 1 (i = j) and i = 2
(i != j), and one about the dy_i-coefficient of df/dgamma only i = 1.  That reduction needs
the closed forms to be linear in dy, which is itself proved by structural induction (claims
closed/dx-linear, closed/dgamma-linear).  `all_pairs=True` checks every j with whole sums.

`method="random"` decides the same instances by exact evaluation at random points
(`prove.RandomTester`): verdict `probable` with the Schwartz-Zippel bound, never `proved`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sympy as sp

from . import closed_form
from .differentiate import (
    backward_gradient,
    forward_gradient,
    local_partial,
    paths,
    total_derivative,
)
from .errors import SymbnError
from .limits import check_size
from .model import BatchNorm
from .prove import (
    DISPROVED,
    PROBABLE,
    PROVED,
    UNKNOWN,
    Algebra,
    Budget,
    Outcome,
    RandomTester,
    alarm,
    linear_in,
    unit_coefficient,
)
from .prove.definedness import completed, not_together, where_defined
from .report import Report, Result

EXHAUSTIVE_MAX_N = 8
METHODS = ("exact", "random")
METHOD_LINEAR = "structural induction"
RANDOM_NOTE = ("random method: both sides evaluated exactly (rationals, FLINT fmpq) at random "
               "points; "
               "'probable' carries the Schwartz-Zippel bound ((deg P + deg Q) / range)^k, "
               "P/Q = lhs - rhs after eps = s^2 - v; never 'proved'")
SYMMETRY_NOTE = (
    "rows are exchangeable: a permutation p of 1..N applied to the rows (x_i -> x_p(i), dy_i -> "
    "dy_p(i)) fixes mu, v and eps and sends xhat_i, y_i to xhat_p(i), y_p(i); so the "
    "dy_i-coefficient c_ij of df/dx_j (forward, backward and closed form alike) obeys "
    "c_p(i)p(j)(p x) = c_ij(x).  Every pair with i = j is the image of (1, 1) and every pair "
    "with i != j the image of (2, 1), so those two instances stand for all N^2 pairs; both "
    "sides being linear in dy (closed/dx-linear), equal coefficients give equal sums.  The "
    "dy_i-coefficient of df/dgamma has one index, so i = 1 stands for all rows "
    "(closed/dgamma-linear).  --all-pairs checks each pair and whole sums instead")

Instance = tuple[str, Callable[[], sp.Expr], Callable[[], sp.Expr]]
Claim = tuple[str, "list[Instance] | Callable[[], Outcome]"]


def verify(n: int, d: int = 1, timeout: float | None = None,
           all_pairs: bool | None = None, method: str = "exact", points: int = 8,
           seed: int = 0, progress: Callable[[str], None] | None = None) -> Report:
    """Prove the BatchNorm backward derivation for an N x D batch.

    `method="random"` evaluates both sides exactly at `points` random points instead and
    reports `probable` with the Schwartz-Zippel error bound.  `progress`, if given, receives
    one line per claim.

    >>> report = verify(n=2)
    >>> report.ok, report["forward/dx"].verdict
    (True, 'proved')
    >>> verify(n=2, method="random", points=2)["forward/dx"].verdict
    'probable'
    """
    if method not in METHODS:
        raise SymbnError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    check_size(n, d, timeout, method)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    bn = BatchNorm(n, d)
    exhaustive = n <= EXHAUSTIVE_MAX_N if all_pairs is None else all_pairs
    decider = Algebra(bn) if method == "exact" else RandomTester(bn, points=points, seed=seed)
    checker = _Checker(bn, decider, deadline)
    claims = _scalar_claims(bn, exhaustive) + (_matrix_claims(bn, exhaustive) if d > 1 else [])
    results = [_graph_result(bn)]
    for k, (cid, inst) in enumerate(claims):
        if progress is not None:
            done = time.monotonic() - start
            eta = f", about {done / k * (len(claims) - k):.0f} s left" if k else ""
            progress(f"[{k + 1}/{len(claims)}] {cid} ({done:.0f} s so far{eta})")
        results.append(checker.run(cid, inst))
    notes = [f"paths from f back to x_j (N = {n}: {len(paths(bn, bn.x(1)))} paths per j):"]
    notes += ["  " + family for family in path_families(bn)]
    if not exhaustive:
        notes.append(SYMMETRY_NOTE)
    if method == "random":
        notes.append(RANDOM_NOTE)
    info = {"n": n, "d": d, "method": method, "exhaustive": exhaustive,
            "paths": path_families(bn), "seconds": round(time.monotonic() - start, 3)}
    title = f"symbn verify: BatchNorm backward, N = {n}" + (f", D = {d}" if d > 1 else "")
    if method == "random":
        title += f" (random method, {points} points)"
    return Report(title, results, info, notes)


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
    """Decides claims instance by instance with `decider` (exact or random); with `definer`
    (an exact `Algebra`) each instance's sides are first shown defined somewhere."""

    def __init__(self, bn: BatchNorm, decider, deadline: float | None,
                 definer: Algebra | None = None, undefined: dict[str, str] | None = None,
                 closed: dict | None = None):
        self.bn, self.decider, self.deadline, self.definer = bn, decider, deadline, definer
        self.undefined = dict(undefined or {})  # claim id -> why it is undefined everywhere
        self.closed = dict(closed or {})  # claim id -> the closed form's written conditions
        self._graph_undefined: str | None | bool = False  # not yet asked

    def run(self, cid: str, instances: list[Instance] | Callable[[], Outcome]) -> Result:
        start = time.monotonic()
        try:
            with alarm(self.deadline):
                return self._run(cid, instances, start)
        except Budget:
            return Result(cid, UNKNOWN, "exact", time.monotonic() - start,
                          note="time budget exhausted")

    def _where_defined(self, cid: str, outcome: Outcome, left, right) -> Outcome:
        """A disproof whose witness makes every root and divisor written in the nodes and
        the closed form defined (`symbn.prove.definedness.where_defined`)."""
        divisors, radicands = _written(self.bn, cid, self.closed)
        if not divisors and not radicands:
            return outcome
        names = {str(s): s for s in self.bn.leaves}

        def locate(found: Outcome, seed: int) -> dict | None:
            point = (found.witness or {}).get("point")
            return None if point is None else completed(self.bn, point, names, self.bn.leaves,
                                                        divisors, radicands, seed)

        def redecide(seed: int) -> Outcome | None:
            try:
                return self.decider.decide(left, right, self.deadline, seed=seed)
            except TypeError:  # a decider without seeds (the random method)
                return None
        return where_defined(outcome, locate, redecide,
                             "false as the sides simplify, but no witness was found where "
                             "every square root written in the nodes and the closed form is "
                             "of something >= 0 and every divisor written is nonzero")

    def _run(self, cid: str, instances, start: float) -> Result:
        if self.definer is not None and self._graph_undefined is False:
            self._graph_undefined = model_undefined(self.bn, self.definer, self.deadline)
        why = self._graph_undefined or self.undefined.get(cid)
        if why:
            return Result(cid, UNKNOWN, "definedness", time.monotonic() - start, note=why)
        if callable(instances):  # a structural claim decided on its own
            outcome = instances()
            return Result(cid, outcome.verdict, outcome.method, time.monotonic() - start,
                          outcome.witness, outcome.note)
        method, notes, verdict = "", [], PROVED
        for label, lhs, rhs in instances:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return Result(cid, UNKNOWN, method or "exact", time.monotonic() - start,
                              note="time budget exhausted")
            left, right = lhs(), rhs()
            if self.definer is not None:
                undefined = self.definer.undefined(sp.Tuple(left, right), self.deadline)
                if undefined is not None:
                    return Result(cid, UNKNOWN, "definedness", time.monotonic() - start,
                                  note=f"{label}: {undefined}" if label else undefined)
            outcome = self.decider.decide(left, right, self.deadline)
            if outcome.verdict == DISPROVED:
                outcome = self._where_defined(cid, outcome, left, right)
            method = outcome.method
            if outcome.verdict not in (PROVED, PROBABLE):
                witness = outcome.witness
                if witness is not None:
                    witness = {"instance": label, **witness}
                note = f"{label}: {outcome.note}" if outcome.note else label
                return Result(cid, outcome.verdict, method, time.monotonic() - start,
                              witness, note)
            if outcome.verdict == PROBABLE:
                verdict = PROBABLE
                notes.append(outcome.note)
        note = f"{len(instances)} instances" if len(instances) > 2 else \
            ", ".join(label for label, _, _ in instances if label)
        if notes:  # the weakest bound among the instances
            note = "; ".join(filter(None, [note, max(notes, key=_bound_exponent)]))
        return Result(cid, verdict, method, time.monotonic() - start, note=note)


def model_undefined(g, alg: Algebra, deadline: float | None = None) -> str | None:
    """Why f is undefined everywhere at this N, or None: a node it depends on divides by
    something identically zero or takes the root of something negative wherever it is not 0
    (as its template writes them: SymPy cancels s/s to 1), or the nodes' roots are never
    real together (sqrt(mu) and sqrt(-mu - 1)); every claim about such a model is unknown."""
    reason = alg.undefined(sp.Tuple(*g.outputs), deadline)
    if reason is None and hasattr(g, "conditions_of"):
        divisors, radicands = g.conditions_of(g.f)
        if not alg.jointly_defined([e for _, e in radicands], [e for _, e in divisors]):
            reason = f"undefined or undecided at N = {g.n}: {not_together(radicands, 'the model')}"
    return reason


def _written(g, cid: str, closed: dict) -> tuple[list, list]:
    """The divisors and radicands (values) the nodes f depends on write, and the closed form
    a claim `cid` compares with, as their templates write them."""
    divisors, radicands = g.conditions_of(g.f) if hasattr(g, "conditions_of") else ([], [])
    more = closed.get(cid, ([], []))
    return [e for _, e in divisors + more[0]], [e for _, e in radicands + more[1]]


def _bound_exponent(note: str) -> int:
    """e of a bound "< 2^e" in a probable note; a bound of 0 counts as the strongest."""
    return int(note.rsplit("< 2^", 1)[1]) if "< 2^" in note else -(1 << 30)


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
            return _unit_dy(bn, grad(bn, bn.x(j), ys=[bn.y(i)]), i)

        def dx_instances(grad):
            return [(_pair_label(i, j), lambda i=i, j=j: coeff(grad, i, j),
                     lambda i=i, j=j: _unit_dy(bn, closed_form.dx(bn, j), i))
                    for i, j in pairs]
        fwd_bwd = [(_pair_label(i, j), lambda i=i, j=j: coeff(forward_gradient, i, j),
                    lambda i=i, j=j: coeff(backward_gradient, i, j)) for i, j in pairs]
        linear = [("closed/dx-linear", lambda: _linear(bn, closed_form.dx(bn, 1))),
                  ("closed/dgamma-linear", lambda: _linear(bn, closed_form.dgamma(bn)))]

        def gamma_coeff(grad):
            return _unit_dy(bn, grad(bn, bn.gamma(), ys=[bn.y(1)]), 1)

        dgamma = {grad: [("dy_1 coefficient", lambda grad=grad: gamma_coeff(grad),
                          lambda: _unit_dy(bn, closed_form.dgamma(bn), 1))]
                  for grad in (forward_gradient, backward_gradient)}
    if exhaustive:
        dgamma = {grad: [("", lambda grad=grad: grad(bn, bn.gamma()),
                          lambda: closed_form.dgamma(bn))]
                  for grad in (forward_gradient, backward_gradient)}
    return [
        ("backward/dv-dmu", [("", lambda: local_partial(bn, bn.v(), bn.mu()), lambda: zero)]),
        *linear,
        ("forward/dx", dx_instances(forward_gradient)),
        ("backward/dx", dx_instances(backward_gradient)),
        ("forward=backward/dx", fwd_bwd),
        ("forward/dgamma", dgamma[forward_gradient]),
        ("backward/dgamma", dgamma[backward_gradient]),
        ("forward/dbeta", [("", lambda: forward_gradient(bn, bn.beta()),
                            lambda: closed_form.dbeta(bn))]),
        ("backward/dbeta", [("", lambda: backward_gradient(bn, bn.beta()),
                             lambda: closed_form.dbeta(bn))]),
    ]


def _linear(bn: BatchNorm, expr: sp.Expr) -> Outcome:
    """A closed form is a linear form in dy, so its dy_i-coefficients decide it."""
    if linear_in(bn, expr, set(bn.dys)):
        return Outcome(PROVED, METHOD_LINEAR, note="every term has exactly one dy factor")
    return Outcome(UNKNOWN, METHOD_LINEAR, note="not syntactically linear in dy")


def _unit_dy(bn: BatchNorm, expr: sp.Expr, i: int) -> sp.Expr:
    """`expr` at dy = e_i: its dy_i-coefficient when it is linear in dy."""
    return unit_coefficient(expr, bn.dy(i), {bn.dy(k) for k in bn.rows()})


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
