"""Derivation files for every N, about any model (`model = "layernorm"`, a user .toml, and
BatchNorm's own `model = "batchnorm"` through its model file).

Each link of a step is translated by `symbn.every_n_translate` (the symbolic back-end of the
one template interpreter): the model's nodes composed down to the leaves, every Sum over a
fresh row (alpha-conversion by construction), D and P as SymPy `diff`s of the composed model.
Anything it cannot read (a concrete row, a node or dy in a D, f outside D) is `unknown` with
the reason.

Deciding a link: `symbn.every_n`'s canonical form (rules R1-R3, power sums S(...) as
indeterminates, the model's one radicand eliminated by s), with delta_ij = 0 for the pairs
a `where i != j` keeps apart.

Why `proved` is sound:

- After translation only leaves, dy, N, rows and KroneckerDelta remain (checked: a node
  left as an indeterminate would be unsound), so the sides are the functions the step
  means; the canonical form of lhs - rhs is built by R1-R3, identities for every N >= 1
  (confirmed by SymPy's summation code; otherwise nothing is proved).
- A zero polynomial in independent indeterminates stays zero under every specialization
  (equal rows, the relations among power sums at small N), so the link holds for every
  N >= min_n and every row assignment `where` allows, wherever both sides are defined.
- s = sqrt(a p + w) with p = (s^2 - w)/a is a bijection on the points where the root is
  real, as in `symbn.every_n`.
- sqrt(t^2) is rewritten to t only where t >= 0 is proved by the sign rules (positive
  leaves > 0, N >= 1, sums of squares >= 0), never assumed (`symbn.prove.radicals`).
- A divisor whose canonical coefficients share a factor N - n (n >= min_n) vanishes at that N:
  the report names it beside the concrete sizes.
- Definedness: a divisor written in the step whose canonical form is zero under some pattern
  of equal free indices makes the step `unknown` (undefined for every N), as does a radicand
  negative by the proved sign rules; the other divisors and radicands are signed with
  N = M + min_n - 1, M >= 1, and the report says "where both sides are defined" unless all
  are proved nonzero, naming the small N (min_n..min_n+3) where a side is undefined.
- A nonzero canonical form is never a disproof: `disproved` needs an exact witness of the
  concrete checker (`symbn.stepcheck.check_steps`) at N = min_n..min_n+3.

>>> from symbn.derivation import parse
>>> d = parse('title = "t"\\nmodel = "layernorm"\\n[[step]]\\nid = "a"\\n'
...           'claim = "D(mu, x[j]) = 1/N"')
>>> check_all(d)["a"].verdict
'proved'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import sympy as sp

from .derivation import N
from .errors import SymbnError
from .every_n import _M, CONCRETE_SIZES, METHOD, Radicals, SymbolicModel, _sized_conditions, decide
from .every_n_translate import _Translate
from .general.normal import Normalizer, Unsupported, _rules
from .graph import INDEXED_KINDS
from .prove import DISPROVED, PROVED, UNKNOWN, Budget, alarm
from .prove.radicals import NEG, NONNEG, NONPOS, POS, Signs
from .report import Report, Result

# a step's budget for every N when no timeout is given: SymPy's cancel of a large power can
# run for many minutes, and a step stuck there must come back unknown, not hang the run
STEP_SECONDS = 60.0

_SYMPY_ERRORS = (sp.PolynomialError, NotImplementedError, TypeError, ValueError, RecursionError)


# ---------------------------------------------------------------------------------------
# deciding a link
# ---------------------------------------------------------------------------------------


def _normal_form(e: sp.Expr, scalars: list, distinct=()) -> tuple[sp.Expr, Normalizer]:
    """The numerator of e's canonical form (raises Unsupported or a SymPy error)."""
    nz = Normalizer(distinct)
    rad = Radicals(scalars)
    form = nz.normal(rad.replace(e))
    if form.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise Unsupported("a side divides by zero in canonical form")
    return sp.expand(sp.together(rad.eliminate(form)).as_numer_denom()[0]), nz


def _undefined_everywhere(divisors, radicands, indices, distinct, scalars, signs, min_n):
    """Why a link is undefined for every N (a written divisor zero under some pattern of
    equal indices, a radicand negative by the sign rules), or None."""
    for template, radicand in radicands:
        if signs.sign(radicand.xreplace({N: _M + min_n - 1})) in (NEG, NONPOS):
            return (f"undefined: the claim takes the square root of {template}, which is "
                    "negative wherever it is not 0")
    return _undefined_for_every_n(
        divisors, indices, distinct,
        lambda divisor, apart: _normal_form(divisor, scalars, apart)[0] == 0)


def _patterns(indices: list, distinct: set):
    """Each way of making some of `indices` equal (a set partition) that keeps the pairs in
    `distinct` apart, as (renaming to each block's first index, the pairs now distinct)."""
    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for smaller in partitions(rest):
            yield [[first], *smaller]
            for n_block in range(len(smaller)):
                yield [*smaller[:n_block], [first, *smaller[n_block]], *smaller[n_block + 1:]]

    for blocks in partitions(sorted(indices, key=str)):
        if any(frozenset((a, b)) in distinct for block in blocks for a in block for b in block
               if a != b):
            continue
        rename = {a: block[0] for block in blocks for a in block}
        apart = {frozenset((x[0], y[0])) for x in blocks for y in blocks if x is not y}
        yield rename, apart


def _undefined_for_every_n(divisors: list, indices: list, distinct: set,
                           is_zero: Callable) -> str | None:
    """Why a side divides by zero for every N (canonical form of a divisor zero under some
    pattern of equal indices), or None.  `is_zero(divisor, apart)` decides one divisor; it
    raises to say the form could not be built."""
    for rename, apart in _patterns(indices, distinct):
        for template, divisor in divisors:
            try:
                zero = is_zero(divisor.xreplace(rename), apart)
            except (Unsupported, sp.PolynomialError, NotImplementedError, TypeError,
                    ValueError, RecursionError):
                return (f"undefined or undecided: the claim divides by {template}, whose "
                        "canonical form could not be built")
            if zero:
                equal = sorted({f"{a} = {b}" for a, b in rename.items() if a != b})
                when = f" when {', '.join(equal)}" if equal else ""
                return (f"division by zero{when}: the claim divides by {template}, which is "
                        "identically zero for every N")
    return None


def _vanishing_sizes(divisors: list, scalars: list, min_n: int) -> dict[int, str]:
    """{N: reason} for every N >= min_n at which the canonical form of a divisor vanishes
    because all its coefficients, polynomials in N, share the root N (such as N - 7)."""
    found = {}
    for template, divisor in divisors:
        try:
            numerator = _normal_form(divisor, scalars)[0]
            gens = sorted(numerator.free_symbols - {N}, key=str)
            coeffs = sp.Poly(numerator, *gens).coeffs() if gens else [numerator]
            content = sp.gcd_list(coeffs) if len(coeffs) > 1 else coeffs[0]
            factors = sp.factor_list(content, N)[1] if content.has(N) else []
        except (Unsupported, *_SYMPY_ERRORS):
            continue
        for factor, _ in factors:
            poly = sp.Poly(factor, N)
            if poly.degree() == 1:
                root = -poly.all_coeffs()[1] / poly.all_coeffs()[0]
                if root.is_Integer and root >= min_n:
                    found.setdefault(int(root), f"division by zero at N = {root}: the claim "
                                                f"divides by {template}, which is "
                                                "identically zero there")
    return found


def _signed(sides, signs, min_n) -> bool:
    """Whether every divisor of the sides is proved nonzero and every radicand nonnegative
    for all N >= min_n."""
    for t in set().union(*(s.atoms(sp.Pow) for s in sides)):
        if t.exp.is_Integer and t.exp > 0:
            continue
        sign = signs.sign(t.base.xreplace({N: _M + min_n - 1}))
        if not (sign in (POS, NEG) if t.exp.is_negative else sign in (POS, NONNEG)):
            return False
    return True


# ---------------------------------------------------------------------------------------
# concrete N
# ---------------------------------------------------------------------------------------


def _single(d, step):
    from .derivation import Derivation

    return Derivation("one step", d.model, "", d.path, [step], d.spec)


def _left(deadline: float | None) -> float | None:
    """Seconds to `deadline`, or None; `Budget` once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Budget
    return left


def _concrete_disproof(d, step, deadline: float | None = None) -> dict | None:
    from .stepcheck import check_steps

    for n in range(d.spec.min_n, d.spec.min_n + CONCRETE_SIZES):
        try:
            # the concrete checker catches `Budget` into `unknown`: it gets the step's deadline
            result = check_steps(_single(d, step), n, timeout=_left(deadline))[0]
        except SymbnError:  # the concrete checker refuses this N (a non-edge P, rows, ...)
            continue
        _left(deadline)  # out of time at this N is no evidence for the next one
        if result.verdict == DISPROVED:
            return {"N": n, **(result.witness or {})}
    return None


def _vacuous_sizes(d, step, deadline: float | None = None) -> tuple[dict[int, str], list[int]]:
    """({N: reason} for the N in min_n..min_n+3 at which a link of the step is undefined
    for every point (for some index assignment): a side undefined, or the two sides never
    defined at one point; the N at which every link was shown defined somewhere)."""
    from .prove import Algebra
    from .stepcheck import _StepChecker, assignments

    found, defined = {}, []
    for n in range(d.spec.min_n, d.spec.min_n + CONCRETE_SIZES):
        _left(deadline)
        try:
            g = d.spec.instantiate(n)
            checker = _StepChecker(_single(d, step), g, Algebra(g), deadline, True)
            todo = assignments(step, n)
            if not todo:  # no rows allowed at this N (where i != j at N = 1): no evidence
                continue
            for assignment in todo:
                sides = [checker.side(step, link, assignment)[1] for link in step.links]
                for left, right in pairwise(sides):
                    reason = checker._undefined_link(left, right)
                    if reason is not None:
                        label = ", ".join(f"{k}={v}" for k, v in assignment.items())
                        found[n] = f"{label}: {reason}" if label else reason
                        break
                if n in found:
                    break
        except SymbnError:
            continue
        if n not in found:
            defined.append(n)
    return found, defined


# ---------------------------------------------------------------------------------------
# steps and the report
# ---------------------------------------------------------------------------------------


def check_step(step, d, rules_ok: bool = True, deadline: float | None = None) -> Result:
    """One step of a derivation about a model file, for every N >= the model's min_n.

    Past `deadline` (time.monotonic) it raises `Budget`; `check_all` answers `unknown`."""
    start = time.monotonic()
    try:
        return _check_step(step, d, rules_ok, start, deadline)
    except Unsupported as err:
        return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start, note=str(err))
    except _SYMPY_ERRORS as err:
        return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start,
                      note=f"outside the symbolic fragment ({type(err).__name__})")


def _check_step(step, d, rules_ok: bool, start: float, deadline: float | None) -> Result:
    m = d.spec
    sm = SymbolicModel(m)
    tr = _Translate(sm, step)
    links, divisors, radicands = [], [], []
    for link in step.links:
        links.append(tr.link(link))
        divisors.append(tr.denominators)
        radicands.append(tr.radicands)
    scalars = [sp.Symbol(n) for n, k in sorted(m.leaves.items(), key=lambda t: t[1] != "positive")
               if k not in INDEXED_KINDS]
    signs = Signs({sp.Symbol(n) for n, k in m.leaves.items() if k == "positive"} | {_M})
    indices = sorted(set(tr.rows.values()), key=str)
    texts = step.link_texts()
    rules, conditions = set(), set()
    for n_link, (a, b) in enumerate(pairwise(links), 1):
        label = f"link {n_link} ({texts[n_link - 1]} = {texts[n_link]})"
        undefined = _undefined_everywhere(divisors[n_link - 1] + divisors[n_link],
                                          radicands[n_link - 1] + radicands[n_link],
                                          indices, tr.distinct, scalars, signs, m.min_n)
        if undefined is not None:
            return Result(step.id, UNKNOWN, "definedness", time.monotonic() - start,
                          note=f"{label}: {undefined}")
        positive = {sp.Symbol(n) for n, k in m.leaves.items() if k == "positive"}
        verdict, note, nz = decide(a, b, scalars, tr.distinct, positive)
        if verdict == PROVED and not rules_ok:
            verdict, note = UNKNOWN, "a summation rule was not confirmed by SymPy"
        rules |= nz.rules
        conditions |= nz.conditions
        if verdict != PROVED:
            witness = _concrete_disproof(d, step, deadline)
            if witness is not None:
                return Result(step.id, DISPROVED, METHOD, time.monotonic() - start, witness,
                              f"{label}: false at N = {witness['N']}")
            top = m.min_n + CONCRETE_SIZES - 1
            return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start,
                          note=f"{label}: {note}; no counterexample at N = {m.min_n}..{top}")
    count = f"{len(links) - 1} link(s)"
    parts = [f"{count} for every N >= {m.min_n}"]
    # always: what the symbolic translation sees has been through SymPy, which folds
    # sqrt(mu - mu - 1)**2 to -1 and cancels a node's d/d; the concrete sides keep them
    vacuous, defined = _vacuous_sizes(d, step, deadline)
    if not defined:  # "where both sides are defined" might be nowhere at all
        top = m.min_n + CONCRETE_SIZES - 1
        why = vacuous[min(vacuous)] if vacuous else "the concrete checker refused them"
        return Result(step.id, UNKNOWN, "definedness", time.monotonic() - start,
                      note=f"true wherever both sides are defined, but they were not "
                           f"shown defined at any N = {m.min_n}..{top} ({why})")
    for size, reason in _vanishing_sizes([t for side in divisors for t in side], scalars,
                                         m.min_n).items():
        vacuous.setdefault(size, reason)
    sized = _sized_conditions(m)  # a node's sqrt(4 - N): undefined beyond the sizes tried
    if not _signed(links, signs, m.min_n) or vacuous or sized:
        parts[0] += " where both sides are defined"
    if vacuous:
        sizes = sorted(vacuous)
        run = list(range(m.min_n, m.min_n + len(sizes)))
        if sizes == run:
            parts[0] = f"{count} for every N >= {run[-1] + 1} where both sides are defined"
        else:
            parts[0] += f" (undefined at N = {', '.join(map(str, sizes))})"
        parts.append(vacuous[sizes[0]])
    if sized:
        parts.append(f"a node's template {sized}, not shown safe for every N")
    where = [f"{a} == {b}" for b, a in tr.equal.items()] + \
        [" != ".join(sorted(map(str, pair))) for pair in tr.distinct]
    if where or conditions:
        parts.append("if " + ", ".join(where + sorted(conditions)))
    if rules:
        parts.append("by " + ", ".join(sorted(rules)))
    return Result(step.id, PROVED, METHOD, time.monotonic() - start, note="; ".join(parts))


def check_all(d, timeout: float | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Every step of a derivation about a model file (`d.spec`) for every N >= min_n."""
    m = d.spec
    start = time.monotonic()
    rules_ok = all(r.verdict == PROVED for r in _rules())
    results = []
    for n_done, step in enumerate(d.steps):
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            results.append(Result(step.id, UNKNOWN, METHOD, 0.0, note="time budget exhausted"))
            continue
        if progress is not None:
            progress(f"[{n_done + 1}/{len(d.steps)}] {step.id} ({now - start:.0f} s so far)")
        deadline = now + STEP_SECONDS if timeout is None else start + timeout
        try:
            with alarm(deadline):
                results.append(check_step(step, d, rules_ok, deadline))
        except Budget:
            why = "time budget exhausted" if timeout is not None else (
                f"time budget exhausted ({STEP_SECONDS:.0f} s for a step when no timeout "
                "is given)")
            results.append(Result(step.id, UNKNOWN, METHOD, time.monotonic() - now, note=why))
    from .verify_model import describe_source

    notes = [f"model {describe_source(m)}: the steps are read against its templates",
             (f"every step for all N >= {m.min_n} and rows 1 <= i, j, k <= N (N a symbol), one "
             "set (D = 1), positive leaves > 0"),
             ("canonical form as in `symbn verify --model ... --n all`: rules R1-R3, power "
              "sums S(...) as indeterminates, the model's radicand eliminated by s"),
             ("unknown: outside the symbolic fragment (a concrete row, an unsupported "
              "derivative) or not decided and no counterexample at N = "
              f"{m.min_n}..{m.min_n + CONCRETE_SIZES - 1}; such a step can still be checked "
              "for a given N")]
    info = {"n": "all", "derivation": d.path, "model": m.name,
            "seconds": round(time.monotonic() - start, 3)}
    return Report(f"symbn check: {d.title}, every N (symbolic)", results, info, notes)
