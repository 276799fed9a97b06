"""The lemmas and theorems of the note for every N, the rules R1-R3 first: `verify_all`.

>>> [cid for cid, *_ in claims()][:2]
['lemma/sum-centered', 'lemma/sum-xhat']
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sympy as sp

from ..model import BatchNorm, as_expr
from ..prove import DISPROVED, PROVED, UNKNOWN, Algebra
from ..report import Report, Result
from .batchnorm import (
    backward,
    beta,
    closed_dx,
    compose,
    forward_dx,
    forward_param,
    gamma,
    local_partial,
    mu,
    path_families,
    v,
    xhat,
)
from .normal import METHOD, N, _rules, claim_note, decide, dy, eps, i, j, x
from .steps import check_all

CONDITION = "N >= 1, 1 <= j <= N, eps > 0"


def instantiate(expr: sp.Expr, n: int, bn: BatchNorm, index: dict | None = None) -> sp.Expr:
    """`expr` at N = n with free indices fixed (default j = 1), in the symbols of `bn`."""
    index = {j: 1, i: min(2, n)} if index is None else index
    e = as_expr(expr).xreplace({N: sp.Integer(n)})
    e = e.subs({a: sp.Integer(b) for a, b in index.items()}).doit()  # free indices only
    table = {}
    for t in e.atoms(sp.Indexed):
        base, idx = str(t.base.label), int(t.indices[0])
        table[t] = bn.x(idx) if base == "x" else bn.dy(idx)
    return e.xreplace(table)


def concrete_disproof(lhs: sp.Expr, rhs: sp.Expr, sizes=(1, 2, 3, 4)) -> dict | None:
    """A witness at some small N where lhs != rhs, checked by the exact prover."""
    for n in sizes:
        bn = BatchNorm(n)
        outcome = Algebra(bn).decide(instantiate(lhs, n, bn), instantiate(rhs, n, bn))
        if outcome.verdict == DISPROVED:
            return {"N": n, "j": 1, **(outcome.witness or {})}
    return None


def _claim(cid: str, lhs: sp.Expr, rhs: sp.Expr, statement: str) -> Result:
    start = time.monotonic()
    verdict, note, nz = decide(lhs, rhs)
    witness = None
    if verdict != PROVED:
        witness = concrete_disproof(lhs, rhs)
        if witness is not None:
            verdict, note = DISPROVED, f"false at N = {witness['N']}"
    return Result(cid, verdict, METHOD, time.monotonic() - start, witness,
                  claim_note(statement, nz, note))


def prove(cid: str, lhs: sp.Expr, rhs: sp.Expr, statement: str) -> Result:
    """lhs = rhs for every N, as a Result whose note lists the conditions and rules used.

    >>> prove("dmu", sp.diff(mu(), x[j]), 1 / N, "d mu / d x_j = 1/N").note
    'd mu / d x_j = 1/N; if 1 <= j <= N; by R1, R3'
    """
    return _claim(cid, lhs, rhs, statement)


def claims() -> list[tuple[str, Callable[[], sp.Expr], Callable[[], sp.Expr], str]]:
    """(id, lhs, rhs, statement) of every lemma and theorem, lemmas first."""
    zero = sp.Integer(0)
    return [
        ("lemma/sum-centered", lambda: sp.Sum(x[i] - mu(), (i, 1, N)), lambda: zero,
         "sum_i (x_i - mu) = 0"),
        ("lemma/sum-xhat", lambda: sp.Sum(xhat(i), (i, 1, N)), lambda: zero,
         "sum_i xhat_i = 0"),
        ("lemma/dmu-dx", lambda: compose(local_partial("mu", "x_j")), lambda: 1 / N,
         "d mu / d x_j = 1/N"),
        ("lemma/dv-dmu", lambda: compose(local_partial("v", "mu")), lambda: zero,
         "d v / d mu = -(2/N) sum_i (x_i - mu) = 0"),
        ("lemma/dv-dx", lambda: compose(local_partial("v", "x_j")),
         lambda: 2 * (x[j] - mu()) / N, "d v / d x_j = (2/N)(x_j - mu), mu held fixed"),
        ("lemma/total-dv-dx", lambda: sp.diff(v(), x[j]), lambda: 2 * (x[j] - mu()) / N,
         "total d v / d x_j = (2/N)(x_j - mu)"),
        ("lemma/dxhat-dx", lambda: sp.diff(xhat(i), x[j]),
         lambda: (sp.KroneckerDelta(i, j) - 1 / N) * (v() + eps) ** sp.Rational(-1, 2)
         - (x[i] - mu()) * (x[j] - mu()) * (v() + eps) ** sp.Rational(-3, 2) / N,
         "d xhat_i / d x_j = (delta_ij - 1/N)(v+eps)^(-1/2) - (x_i-mu)(x_j-mu)(v+eps)^(-3/2)/N"),
        ("forward/dx", forward_dx, closed_dx, "forward mode = closed form df/dx_j"),
        ("backward/dx", backward, closed_dx, "backward path sum = closed form df/dx_j"),
        ("forward=backward/dx", forward_dx, backward, "forward mode = backward mode"),
        ("forward/dgamma", lambda: forward_param(gamma),
         lambda: sp.Sum(dy[i] * xhat(i), (i, 1, N)), "df/dgamma = sum_i dy_i xhat_i"),
        ("backward/dgamma", lambda: backward("gamma"),
         lambda: sp.Sum(dy[i] * xhat(i), (i, 1, N)), "df/dgamma = sum_i dy_i xhat_i"),
        ("forward/dbeta", lambda: forward_param(beta), lambda: sp.Sum(dy[i], (i, 1, N)),
         "df/dbeta = sum_i dy_i"),
        ("backward/dbeta", lambda: backward("beta"), lambda: sp.Sum(dy[i], (i, 1, N)),
         "df/dbeta = sum_i dy_i"),
    ]


def verify_all(timeout: float | None = None,
               progress: Callable[[str], None] | None = None,
               steps: str | None = "batchnorm") -> Report:
    """Prove the derivation for every N: rules, lemmas and theorems, each with conditions.

    The steps of the derivation file `steps` (default: the shipped note) follow, ids
    prefixed with note/.

    >>> report = verify_all()
    >>> report["backward/dx"].verdict, "R3" in report["backward/dx"].note
    ('proved', True)
    """
    start = time.monotonic()
    results = _rules()
    todo = claims()
    for n_done, (cid, lhs, rhs, statement) in enumerate(todo):
        if timeout is not None and time.monotonic() - start > timeout:
            results.append(Result(cid, UNKNOWN, METHOD, 0.0, note="time budget exhausted"))
            continue
        if progress is not None:
            progress(f"[{n_done + 1}/{len(todo)}] {cid} "
                     f"({time.monotonic() - start:.0f} s so far)")
        results.append(_claim(cid, lhs(), rhs(), statement))
    notes = [
        f"every result holds for all {CONDITION} (N a symbol, not a sample)",
        ("canonical form: numerator of lhs - rhs as a polynomial over QQ in N, s = sqrt(v + eps),"
        " gamma, x_j, dy_j and the power sums S(x^a dy^b) = sum_i x_i^a dy_i^b, obtained "
        "with the rules R1-R3 (each proved above by SymPy's summation code)"),
        "paths from f back to x_j: " + "; ".join(" -> ".join(p) for p in path_families()),
        ("unknown means the canonical form did not vanish and no counterexample was found at "
        "N = 1..4; disproved carries a concrete N and an exact witness"),
    ]
    if steps is not None:
        left = None if timeout is None else max(timeout - (time.monotonic() - start), 1e-3)
        extra = check_all(steps, timeout=left, progress=progress)
        for result in extra:
            result.id = "note/" + result.id
            results.append(result)
        from ..derivation import shipped

        name = f"the shipped derivation '{steps}'" if steps in shipped() else steps
        notes.append(f"note/*: every step of {name} for every N (symbn check {steps} --n all)")
    info = {"n": "all", "seconds": round(time.monotonic() - start, 3)}
    return Report("symbn verify: BatchNorm backward, every N (symbolic)", results, info, notes)


def append_every_n(report: Report, n: int, name: str = "batchnorm",
                   prefix: str = "note/") -> Report:
    """Append the every-N verdicts of a shipped derivation's steps to a report for one N.

    A step proved for every N holds at this N; an `unknown` one stays `unknown` here.

    >>> r = append_every_n(Report("demo", []), 300)
    >>> r["note/lemma-centered-sum"].verdict
    'proved'
    """
    extra = check_all(name)
    for result in extra:
        result.id = prefix + result.id
        report.results.append(result)
    report.notes.append(f"{prefix}*: every step of the shipped derivation '{name}', proved for every "
                        f"N (symbolic), hence for N = {n}; `symbn check {name} --n {n}` "
                        "checks them at this N directly")
    return report
