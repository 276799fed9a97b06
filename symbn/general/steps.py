"""Derivation files for every N: each step translated to the symbolic-N model and decided.

A step is `proved` for every N where it is defined, `disproved` only with a concrete witness
at N = 1..4, `unknown` otherwise (the soundness argument is in `symbn.general`).

>>> from symbn.derivation import load
>>> check_step(load("batchnorm").steps[0]).verdict
'proved'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import sympy as sp

from ..errors import SymbnError
from ..prove import DISPROVED, PROVED, UNKNOWN
from ..prove.radicals import NEG, NONPOS, Signs
from ..report import Report, Result
from .batchnorm import DEFINITIONS, beta, compose, gamma, mu, mu_node, r, v, v_node, xhat, y
from .normal import (
    METHOD,
    N,
    Normalizer,
    Unsupported,
    _eliminate_sqrt,
    decide,
    dy,
    eps,
    i,
    j,
    k,
    x,
)


class _Translate:
    """A derivation template (symbn.derivation) as an expression of the symbolic-N model.

    Nodes are composed down to the leaves; D(a, b) is SymPy's `diff` of the composed a,
    D(f, b) the chain rule sum_r dy_r d y_r / d b (f is arbitrary), P(a, b) the `diff` of
    a's definition with its other parents held fixed.
    """

    def __init__(self, free=()):
        from .. import derivation as dv

        self.dv = dv
        self.index = {name: sym for name, sym in (("i", i), ("j", j), ("k", k))}
        # alpha-conversion: a summation index that shares its name with an index free in
        # the step gets a fresh name, so no substitution, derivative or `where` condition
        # on the free index can reach the bound one (Sum(x[j]**2, (j, 1, N)) and x[j])
        self.free = {str(name) for name in free}
        self.fresh: dict[str, sp.Symbol] = {}
        self.denominators: list[tuple[sp.Expr, sp.Expr]] = []  # (template, translation)
        self.radicands: list[tuple[sp.Expr, sp.Expr]] = []

    def run(self, e: sp.Expr) -> sp.Expr:
        dv = self.dv
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed):
            row = self.row(e.indices[0])
            name = str(e.base)
            return {"x": lambda: x[row], "dy": lambda: dy[row], "xhat": lambda: xhat(row),
                    "y": lambda: y(row)}[name]()
        if e.is_Symbol:
            if e == N:
                return N
            if e.name in self.index:
                return self.index[e.name]
            table = {"mu": mu, "v": v, "gamma": lambda: gamma, "beta": lambda: beta,
                     "eps": lambda: eps, "sigma": lambda: sp.sqrt(v() + eps)}
            if e.name in table:
                return table[e.name]()
            raise Unsupported(f"{e} has no symbolic-N meaning")
        if isinstance(e, sp.Sum):
            outer = dict(self.index)
            limits = []
            for var, lower, upper in e.limits:  # innermost first
                bound = self.bound_symbol(var.name)
                self.index[var.name] = bound
                limits.append((bound, lower, N if upper == N else upper))
            try:
                out = self.run(e.function)
            finally:
                self.index = outer
            for limit in limits:
                out = sp.Sum(out, limit)
            return out
        if isinstance(e, sp.KroneckerDelta):
            return sp.KroneckerDelta(*[self.row(a) for a in e.args])
        if isinstance(e, dv.D):
            return self.total(*e.args)
        if isinstance(e, dv.P):
            return self.partial(*e.args)
        if e.is_Pow:
            base = self.run(e.base)
            if e.exp.is_negative:  # SymPy would cancel v/v to 1: keep the divisor apart
                self.denominators.append((e.base, base))
            if e.exp.q == 2:  # and sqrt(-eps)**2 to -eps
                self.radicands.append((e.base, base))
            return base ** e.exp
        if e.is_Add or e.is_Mul:
            return e.func(*[self.run(a) for a in e.args])
        raise Unsupported(f"{type(e).__name__} in {e}")

    def bound_symbol(self, name: str) -> sp.Symbol:
        """The symbol a Sum over `name` binds: `name` itself unless it is free in the step."""
        if name not in self.free:
            return self.index[name]
        if name not in self.fresh:
            self.fresh[name] = sp.Symbol(name + "'", integer=True, positive=True)
        return self.fresh[name]

    def row(self, e):
        if e.is_Symbol and e.name in self.index:
            return self.index[e.name]
        raise Unsupported(f"row {e} is a concrete row, not an index: not an every-N claim")

    def wrt(self, b):
        if isinstance(b, sp.Indexed) and str(b.base) == "x":
            return x[self.row(b.indices[0])]
        if b.is_Symbol and b.name in ("gamma", "beta", "eps"):
            return {"gamma": gamma, "beta": beta, "eps": eps}[b.name]
        raise Unsupported(f"D(., {b}) is not supported for symbolic N")

    def total(self, a, b):
        if isinstance(b, sp.Indexed) and str(b.base) == "y":
            if a.is_Symbol and a.name == "f":  # the note's df/dy_i
                return dy[self.row(b.indices[0])]
            raise Unsupported(f"D({a}, {b}) is not supported for symbolic N")
        w = self.wrt(b)
        if a.is_Symbol and a.name == "f":  # chain rule through every y_r
            return sp.Sum(dy[r] * sp.diff(y(r), w), (r, 1, N))
        return sp.diff(self.run(a), w)

    def partial(self, child, parent):
        ck = str(child.base) if isinstance(child, sp.Indexed) else str(child)
        pk = str(parent.base) if isinstance(parent, sp.Indexed) else str(parent)
        if ck == "f":
            return dy[self.row(parent.indices[0])]
        if ck == "y":
            row = self.row(child.indices[0])
            if pk == "xhat":
                if self.row(parent.indices[0]) != row:
                    raise Unsupported(f"{parent} is not a direct parent of {child}")
                return gamma
            return xhat(row) if pk == "gamma" else sp.Integer(1)
        definitions = {"mu": DEFINITIONS["mu"][0], "v": DEFINITIONS["v"][0]}
        if ck == "xhat":
            row = self.row(child.indices[0])
            definitions["xhat"] = (x[row] - mu_node) / sp.sqrt(v_node + eps)
        held = {"mu": mu_node, "v": v_node}
        target = x[self.row(parent.indices[0])] if pk == "x" else held[pk]
        return compose(sp.diff(definitions[ck], target))


def translate(template: sp.Expr, free=()) -> sp.Expr:
    """A derivation template (symbn.derivation's names, D and P) in the symbolic-N model.

    `free` names the indices free in the whole step; a Sum binding one of them is renamed
    apart (j -> j').

    >>> from symbn.derivation import SCALARS, INDEX, INDEXED
    >>> translate(SCALARS["mu"])
    Sum(x[p], (p, 1, N))/N
    >>> jj = INDEX["j"]
    >>> translate(sp.Sum(INDEXED["x"][jj], (jj, 1, N)) + INDEXED["x"][jj], free=["j"])
    x[j] + Sum(x[j'], (j', 1, N))
    """
    return _Translate(free).run(template)


def _step_links(step, translate: _Translate):
    """The step's links in the symbolic model, with `where` applied (i == j: j becomes i)."""
    equal, distinct = {}, set()
    for cond in step.conditions:
        a, b = sorted((translate.index[str(c)] for c in cond.args), key=str)
        if isinstance(cond, sp.Eq):
            equal[b] = a
        else:
            distinct.add(frozenset((a, b)))
    links, divisors = [], []
    for link in step.links:
        translate.denominators, translate.radicands = [], []
        e = translate.run(link)
        signs = Signs({eps, N})
        for template, radicand in translate.radicands:
            if signs.sign(radicand) in (NEG, NONPOS):
                raise Unsupported(f"undefined: the claim takes the square root of {template}, "
                                  "which is negative wherever it is not 0")
        divisors.append([(t, d.xreplace(equal) if equal else d)
                         for t, d in translate.denominators])
        bound = {var for s_ in e.atoms(sp.Sum) for var, _, _ in s_.limits}
        if set(equal.values()) & bound:  # cannot happen after alpha-conversion; kept as a guard
            raise Unsupported("where equates an index that is also summed over")
        links.append(e.xreplace(equal) if equal else e)
    return links, divisors, equal, distinct


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


def _vanishing_sizes(divisors: list) -> dict[int, str]:
    """{N: reason} for every N at which the canonical form of a divisor vanishes because
    all its coefficients, polynomials in N, share the root N (such as N - 1)."""
    found = {}
    for template, divisor in divisors:
        try:
            numerator = sp.together(_eliminate_sqrt(Normalizer().normal(divisor)))
            numerator = sp.expand(numerator.as_numer_denom()[0])
            gens = sorted(numerator.free_symbols - {N}, key=str)
            coeffs = sp.Poly(numerator, *gens).coeffs() if gens else [numerator]
            content = sp.gcd_list(coeffs) if len(coeffs) > 1 else coeffs[0]
            factors = sp.factor_list(content, N)[1] if content.has(N) else []
        except (Unsupported, sp.PolynomialError, NotImplementedError, TypeError, ValueError):
            continue
        for factor, _ in factors:
            poly = sp.Poly(factor, N)
            if poly.degree() == 1:
                root = -poly.all_coeffs()[1] / poly.all_coeffs()[0]
                if root.is_Integer and root > 0:
                    found.setdefault(int(root), f"division by zero at N = {root}: the claim "
                                                f"divides by {template}, which is "
                                                "identically zero there")
    return found


def _undefined_everywhere(divisors: list, indices: list, distinct: set,
                          is_zero: Callable | None = None) -> str | None:
    """Why a side divides by zero for every N (canonical form of a divisor zero under some
    pattern of equal indices), or None.  `is_zero(divisor, apart)` decides one divisor
    (default: BatchNorm's canonical form); it raises to say the form could not be built."""
    is_zero = is_zero or _zero_divisor
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


def _zero_divisor(divisor: sp.Expr, apart) -> bool:
    numerator = sp.together(_eliminate_sqrt(Normalizer(apart).normal(divisor)))
    return numerator.has(sp.zoo, sp.nan) or sp.expand(numerator.as_numer_denom()[0]) == 0


def check_step(step, derivation=None) -> Result:
    """One derivation step for every N: proved, disproved at a concrete N, or unknown."""
    start = time.monotonic()
    try:
        return _check_step(step, derivation, start)
    except RecursionError:  # SymPy recursing through a very deep expression: a budget
        return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start,
                      note="expression nested too deeply to decide (recursion limit)")


def _check_step(step, derivation, start: float) -> Result:
    translate = _Translate(step.free_indices)
    try:
        links, divisors, equal, distinct = _step_links(step, translate)
    except Unsupported as err:
        return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start, note=str(err))
    indices = sorted({translate.index[str(a)] for a in step.free_indices} - set(equal),
                     key=str)
    texts = step.link_texts()
    rules, conditions = set(), set()
    for n_link, (a, b) in enumerate(pairwise(links), 1):
        label = f"link {n_link} ({texts[n_link - 1]} = {texts[n_link]})"
        undefined = _undefined_everywhere(divisors[n_link - 1] + divisors[n_link], indices,
                                          distinct)
        if undefined is not None:
            return Result(step.id, UNKNOWN, "definedness", time.monotonic() - start,
                          note=f"{label}: {undefined}")
        verdict, note, nz = decide(a, b, distinct)
        rules |= nz.rules
        conditions |= nz.conditions
        if verdict != PROVED:
            witness = _concrete_step_disproof(step, derivation)
            if witness is not None:
                return Result(step.id, DISPROVED, METHOD, time.monotonic() - start, witness,
                              f"{label}: false at N = {witness['N']}")
            return Result(step.id, UNKNOWN, METHOD, time.monotonic() - start,
                          note=f"{label}: {note}")
    parts = [f"{len(links) - 1} link(s) for every N"]
    where = [f"{a} == {b}" for b, a in equal.items()] + \
        [" != ".join(sorted(map(str, pair))) for pair in distinct]
    if any(divisors):
        # a divisor that is not the zero function for symbolic N can still vanish
        # identically at a small N (v at N = 1): the claim is then vacuous there
        vacuous = _vacuous_sizes(step, derivation)
        for size, reason in _vanishing_sizes([d for side in divisors for d in side]).items():
            vacuous.setdefault(size, reason)
        parts[0] += " where defined"
        if vacuous:
            sizes = sorted(vacuous)
            if sizes == list(range(1, len(sizes) + 1)):
                parts[0] = f"{len(links) - 1} link(s) for every N >= {len(sizes) + 1}"
            else:
                parts[0] += f" except N = {', '.join(map(str, sizes))}"
            parts.append(vacuous[sizes[0]])
    if where or conditions:
        parts.append("if " + ", ".join(where + sorted(conditions)))
    if rules:
        parts.append("by " + ", ".join(sorted(rules)))
    return Result(step.id, PROVED, METHOD, time.monotonic() - start, note="; ".join(parts))


def _vacuous_sizes(step, derivation, sizes=(1, 2, 3, 4)) -> dict[int, str]:
    """{N: reason} for the small N at which a side of the step divides by a function that
    is identically zero (for some index assignment)."""
    from ..stepcheck import undefined_at

    found = {}
    for n in sizes:
        reason = undefined_at(step, n, getattr(derivation, "path", "<step>"))
        if reason is not None:
            found[n] = reason
    return found


def _concrete_step_disproof(step, derivation) -> dict | None:
    from ..derivation import Derivation
    from ..stepcheck import check_steps as check

    single = Derivation("one step", "batchnorm", "", getattr(derivation, "path", "<step>"),
                        [step])
    for n in (1, 2, 3, 4):
        if len(step.free_indices) > n and any(isinstance(c, sp.Ne) for c in step.conditions):
            continue
        try:
            result = check(single, n)[0]
        except SymbnError:  # the concrete checker refuses this N (rows out of range, ...)
            continue
        if result.verdict == DISPROVED:
            return {"N": n, **(result.witness or {})}
    return None


def check_all(derivation, timeout: float | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Every step of a derivation file (path, shipped name or `Derivation`) for every N.

    >>> report = check_all("batchnorm")
    >>> report["lemma-centered-sum"].verdict
    'proved'
    """
    from ..derivation import Derivation, load

    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if d.spec is not None:  # a model file's derivation: symbn.every_n_steps
        from ..every_n_steps import check_all as check_model

        return check_model(d, timeout, progress)
    start = time.monotonic()
    results = []
    for n_done, step in enumerate(d.steps):
        if timeout is not None and time.monotonic() - start > timeout:
            results.append(Result(step.id, UNKNOWN, METHOD, 0.0, note="time budget exhausted"))
            continue
        if progress is not None:
            progress(f"[{n_done + 1}/{len(d.steps)}] {step.id} "
                     f"({time.monotonic() - start:.0f} s so far)")
        results.append(check_step(step, d))
    notes = ["every step for all N >= 1 and rows 1 <= i, j, k <= N, eps > 0 (N a symbol)",
             ("canonical form as in `symbn verify --n all`: rules R1-R3, power sums "
             "S(x^a dy^b) as indeterminates, sqrt(v + eps) = s"),
             ("unknown: outside the symbolic fragment (a concrete row, an unsupported "
             "derivative) or not decided; such a step can still be checked for a given N")]
    info = {"n": "all", "derivation": d.path, "seconds": round(time.monotonic() - start, 3)}
    return Report(f"symbn check: {d.title}, every N (symbolic)", results, info, notes)
