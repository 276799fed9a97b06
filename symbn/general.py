"""The BatchNorm backward derivation for every batch size N at once (symbolic N).

N is a positive integer symbol, x and dy are `IndexedBase`s, sums are `Sum(..., (i, 1, N))`
and d x_i / d x_j is `KroneckerDelta(i, j)`.  Forward mode differentiates the composed
expressions with SymPy's `diff`; backward mode multiplies local partials (also `diff`, each
node's definition with respect to one direct parent) along the four path families from f
back to x_j and sums over the rows i.

Deciding an identity for symbolic N.  Every expression is brought to a canonical form by
three summation rules, each proved by SymPy's summation code and listed in the report:

    R1  sum_i (a u_i + b w_i) = a sum_i u_i + b sum_i w_i           (a, b free of i)
    R2  sum_{i=1}^N c = N c                                           (c free of i)
    R3  sum_{i=1}^N delta_ij u_i = u_j                                if 1 <= j <= N

After R1 the summand is a polynomial in x_i, dy_i and delta_ij; R3 removes every monomial
with a delta, R2 the constant ones, and each remaining monomial sum_i x_i^a dy_i^b becomes an
indeterminate S(x^a dy^b).  The one square root sqrt(v + eps) becomes s > 0 with
eps = s^2 - v (a bijection onto {s > 0, s^2 > v}, as for concrete N).  The claim is proved
when the numerator of lhs - rhs is the zero polynomial in N, s, gamma, x_j, dy_j and the
S(...).  Each rule is an identity for every N >= 1, so the conclusion holds for every N.
A nonzero numerator is not a disproof (the S(...) are dependent for small N): the claim is
then tried at N = 1..4 with the exact prover, and is `disproved` only with a concrete
witness there, `unknown` otherwise.

Why each step is sound (what it assumes, and where that is checked):

- Bound and free indices never meet.  A Sum binding an index that is free in the step is
  renamed apart (j -> j', alpha-conversion) while the step is translated, before any
  derivative, substitution or `where` condition is applied; so D(Sum(x[j]**2, (j, 1, N)),
  x[j]) differentiates x[j'] (giving delta(j', j)), and `where i != j` zeroes only
  delta(i, j) of the free i and j.  Internal sums (mu, v, D(f, .)) use p, q, r, which
  derivation files cannot name.
- R1-R3 are identities for every N >= 1 (proved by SymPy's own summation code in the
  report).  R3's condition 1 <= j <= N is reported for free indices and discharged for a
  bound one, which ranges over 1..N.  Nested sums are normalized innermost first.
- Distinct symbols x_i, x_j, delta_ij, S(...) are treated as independent: an identity of
  polynomials in independent variables stays true under any specialization (i = j, the
  relations among power sums at small N), so `proved` holds for every pattern of equal
  indices and every N.
- Definedness.  Every divisor written in the step is put in canonical form under each
  pattern of equal free indices that `where` allows; if one is zero the link is `unknown`
  (undefined for every N).  Otherwise the small N at which a divisor is the zero function
  (checked exactly at N = 1..4, and every positive integer root N of the common content of
  its canonical coefficients) are named in the report: the claim is proved for every N
  where it is defined.  A radicand negative by the proved sign rules is `unknown`.
- sqrt(eps + w) = s as for concrete N; square roots of even powers by proved signs only
  (`symbn.prove.radicals`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import sympy as sp
from sympy.concrete.delta import deltasummation

from .errors import SymbnError
from .model import BatchNorm, as_expr
from .prove import DISPROVED, PROVED, UNKNOWN, Algebra
from .prove.radicals import NEG, NONPOS, Signs, needs_rewrite, rewrite
from .report import Report, Result

N = sp.Symbol("N", integer=True, positive=True)
i, j, k = sp.symbols("i j k", integer=True, positive=True)  # row indices
p, q, r = sp.symbols("p q r", integer=True, positive=True)  # bound inside mu, v and D(f, .)
x, dy = sp.IndexedBase("x"), sp.IndexedBase("dy")
gamma, beta, eps = sp.symbols("gamma beta eps")  # the names BatchNorm(n) uses
s = sp.Symbol("s", positive=True)
mu_node, v_node = sp.symbols("mu v")  # node names, for local partials
METHOD = "canonical form, symbolic N"
CONDITION = "N >= 1, 1 <= j <= N, eps > 0"


class Unsupported(Exception):
    """The expression leaves the fragment the symbolic-N normal form decides."""


# ---------------------------------------------------------------------------------------
# the model for symbolic N
# ---------------------------------------------------------------------------------------


def mu() -> sp.Expr:
    """mu = (1/N) sum_p x_p.

    >>> mu()
    Sum(x[p], (p, 1, N))/N
    """
    return sp.Sum(x[p], (p, 1, N)) / N


def v() -> sp.Expr:
    """v = (1/N) sum_q (x_q - mu)^2, mu composed."""
    return sp.Sum((x[q] - mu()) ** 2, (q, 1, N)) / N


def compose(expr: sp.Expr) -> sp.Expr:
    """Replace the node names mu, v by their definitions (v first: it contains mu).

    >>> compose(2 * mu_node)
    2*Sum(x[p], (p, 1, N))/N
    """
    return expr.xreplace({v_node: v()}).xreplace({mu_node: mu()})


DEFINITIONS = {  # node -> (definition in its direct parents, parents)
    "mu": (sp.Sum(x[p], (p, 1, N)) / N, ("x_j",)),
    "v": (sp.Sum((x[q] - mu_node) ** 2, (q, 1, N)) / N, ("x_j", "mu")),
    "xhat_i": ((x[i] - mu_node) / sp.sqrt(v_node + eps), ("x_j", "mu", "v")),
    "y_i": (gamma * sp.Symbol("xhat_i") + beta, ("xhat_i", "gamma", "beta")),
}
PARENT_SYMBOL = {"x_j": x[j], "mu": mu_node, "v": v_node, "xhat_i": sp.Symbol("xhat_i"),
                 "gamma": gamma, "beta": beta}


def xhat(row=i) -> sp.Expr:
    return (x[row] - mu()) / sp.sqrt(v() + eps)


def y(row=i) -> sp.Expr:
    return gamma * xhat(row) + beta


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


# ---------------------------------------------------------------------------------------
# the canonical form
# ---------------------------------------------------------------------------------------


class Normalizer:
    """Rewrites with R1-R3 into polynomials in power-sum indeterminates S(x^a dy^b).

    >>> nz = Normalizer()
    >>> nz.normal(sp.Sum(x[i] - mu(), (i, 1, N)))
    0
    >>> nz.conditions
    set()
    """

    def __init__(self, distinct=()):
        self.distinct = {frozenset(pair) for pair in distinct}
        self.conditions: set[str] = set()
        self.rules: set[str] = set()
        self._indexed: dict[sp.Symbol, tuple] = {}  # x[j] as a symbol -> (base, index)
        self._delta: dict[sp.Symbol, tuple] = {}

    def normal(self, expr: sp.Expr) -> sp.Expr:
        return sp.expand(self._norm(as_expr(expr)))

    def _norm(self, e: sp.Expr) -> sp.Expr:
        if e.is_Number or e.is_Symbol:
            return e
        if isinstance(e, sp.Indexed):
            return self._symbol_of(e.base.label, e.indices[0])
        if isinstance(e, sp.KroneckerDelta):
            return self._delta_of(*e.args)
        if isinstance(e, sp.Sum):
            return self._sum(e)
        if e.is_Add or e.is_Mul or e.is_Pow:
            return e.func(*[self._norm(a) for a in e.args])
        raise Unsupported(f"{type(e).__name__} in {e}")

    def _symbol_of(self, base, index) -> sp.Symbol:
        if not index.is_Symbol:
            raise Unsupported(f"index {index} of {base} is not a single index")
        out = sp.Symbol(f"{base}[{index}]")
        self._indexed[out] = (str(base), index)
        return out

    def _delta_of(self, a, b) -> sp.Expr:
        if a == b:
            return sp.Integer(1)
        if frozenset((a, b)) in self.distinct:  # a `where` condition i != j
            return sp.Integer(0)
        a, b = sorted((a, b), key=str)
        out = sp.Symbol(f"delta[{a},{b}]")
        self._delta[out] = (a, b)
        return out

    def _sum(self, e: sp.Sum) -> sp.Expr:
        # SymPy merges nested sums into one Sum with several limits, innermost first: the
        # canonical form of each inner sum is the summand of the next
        body = self._norm(e.function)
        for var, lo, hi in e.limits:
            if lo != 1 or hi != N:
                raise Unsupported(f"a sum from {lo} to {hi}; only 1..N is supported")
            body = self._sum_over(body, var)
            # a row picked by R3 that is this sum's own variable lies in 1..N by the range
            self.conditions.discard(f"1 <= {var} <= N")
        return body

    def _sum_over(self, body: sp.Expr, var: sp.Symbol) -> sp.Expr:
        """sum_{var=1}^N body, `body` already in canonical form."""
        body = sp.expand(body)
        deps = sorted((t for t in body.free_symbols if self._mentions(t, var)), key=str)
        if var in deps:
            raise Unsupported(f"the summation index {var} occurs outside x, dy and delta")
        if not deps:
            self.rules.add("R2")
            return N * body
        num, den = sp.together(body).as_numer_denom()
        if den.free_symbols & set(deps):
            raise Unsupported(f"{var} occurs in a denominator: {den}")
        self.rules.add("R1")
        out = sp.Integer(0)
        try:
            terms = sp.Poly(sp.expand(num), *deps).terms()
        except sp.PolynomialError:
            raise Unsupported(f"the summand is not a polynomial in {deps}") from None
        for monom, coeff in terms:
            powers = dict(zip(deps, monom))
            deltas = [t for t in deps if t in self._delta and powers[t] > 0]
            if deltas:  # R3: the delta picks the row var = other
                a, b = self._delta[deltas[0]]
                other = b if a == var else a
                self.rules.add("R3")
                self.conditions.add(f"1 <= {other} <= N")
                term = sp.Integer(1)
                for t, p in powers.items():
                    if p and t != deltas[0]:
                        term *= self._rename(t, var, other) ** p
                out += coeff * term
                continue
            if not any(powers.values()):
                self.rules.add("R2")
                out += coeff * N
                continue
            name = " ".join(f"{self._indexed[t][0]}^{p}" if p > 1 else self._indexed[t][0]
                            for t, p in powers.items() if p)
            out += coeff * sp.Symbol(f"S({name})")
        return out / den

    def _mentions(self, t: sp.Symbol, var) -> bool:
        if t in self._indexed:
            return self._indexed[t][1] == var
        if t in self._delta:
            return var in self._delta[t]
        return t == var

    def _rename(self, t: sp.Symbol, var, other) -> sp.Expr:
        if t in self._indexed:
            return self._symbol_of(self._indexed[t][0], other)
        if t in self._delta:
            a, b = self._delta[t]
            return self._delta_of(other if a == var else a, other if b == var else b)
        raise Unsupported(f"{t} depends on {var}")


def decide(lhs: sp.Expr, rhs: sp.Expr, distinct=()) -> tuple[str, str, Normalizer]:
    """(verdict, note, normalizer) for lhs = rhs for every N; proved or unknown here.

    `distinct` holds pairs of indices known to differ (delta_ij = 0 for them).

    >>> verdict, note, nz = decide(sp.diff(mu(), x[j]), 1 / N)
    >>> verdict, sorted(nz.rules), nz.conditions
    ('proved', ['R1', 'R3'], {'1 <= j <= N'})
    """
    nz = Normalizer(distinct)
    lhs, rhs = as_expr(lhs), as_expr(rhs)
    radicals = [p for p in sp.Tuple(lhs, rhs).atoms(sp.Pow) if p.exp.is_Rational and p.exp.q == 2]
    if needs_rewrite(radicals):  # sqrt((v + eps)**2) = v + eps, by proved signs
        signs = Signs({eps, N})
        lhs, rhs = rewrite(lhs, signs), rewrite(rhs, signs)
    try:
        diff = nz.normal(lhs) - nz.normal(rhs)
        diff = _eliminate_sqrt(diff)
        numerator = sp.together(diff).as_numer_denom()[0]
        zero = sp.expand(numerator) == 0
    except Unsupported as err:
        return UNKNOWN, str(err), nz
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError) as err:
        return UNKNOWN, f"outside the symbolic fragment ({type(err).__name__})", nz
    if zero:
        return PROVED, "", nz
    return UNKNOWN, "canonical form nonzero in the power-sum indeterminates", nz


def _eliminate_sqrt(e: sp.Expr) -> sp.Expr:
    radicals = [p for p in e.atoms(sp.Pow) if p.exp.is_Rational and p.exp.q == 2]
    if not radicals:
        return e
    bases = [p.base for p in radicals if sp.diff(p.base, eps) == 1] or [radicals[0].base]
    base = bases[0]
    w = sp.expand(base - eps)
    if eps in w.free_symbols:
        raise Unsupported(f"square root of {base}, which is not eps + w")
    replace = {}
    for p in radicals:
        # sqrt(c^2 (eps + w)) = c s for c > 0: SymPy writes sqrt(eps + w) both ways
        root = sp.sqrt(sp.cancel(p.base / base))
        if root.free_symbols - {N} or not root.is_positive or \
                any(q.exp.is_Rational and q.exp.q != 1 for q in root.atoms(sp.Pow)):
            raise Unsupported(f"two square roots: sqrt({base}) and {p}")
        replace[p] = (root * s) ** int(p.exp.p)
    return e.xreplace(replace).xreplace({eps: s ** 2 - w})


# ---------------------------------------------------------------------------------------
# concrete N: where a symbolic verdict is not reached, look for a disproof
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------


def rule_equations() -> dict[str, tuple[sp.Expr, sp.Expr]]:
    """The rules R1-R3 as (lhs, rhs), the expressions `_rules` checks with SymPy's summation.

    >>> rule_equations()["rule/R2-constant"]
    (Sum(c, (i, 1, N)), N*c)
    """
    a, b, c = sp.symbols("a b c")
    u, w = sp.IndexedBase("u"), sp.IndexedBase("w")
    return {
        "rule/R1-linearity": (sp.Sum(a * u[i] + b * w[i], (i, 1, N)),
                              a * sp.Sum(u[i], (i, 1, N)) + b * sp.Sum(w[i], (i, 1, N))),
        "rule/R2-constant": (sp.Sum(c, (i, 1, N)), N * c),
        "rule/R3-delta": (sp.Sum(sp.KroneckerDelta(i, j) * u[i], (i, 1, N)), u[j]),
    }


def _rules() -> list[Result]:
    """R1-R3, each checked by SymPy's own summation code (independent of the normalizer)."""
    eqs = rule_equations()
    out = []
    start = time.monotonic()
    lhs1, rhs1 = eqs["rule/R1-linearity"]
    ok1 = sp.factor_terms(lhs1.expand()) == rhs1
    out.append(Result("rule/R1-linearity", PROVED if ok1 else UNKNOWN, "SymPy Sum.expand",
                      time.monotonic() - start,
                      note="sum_i (a u_i + b w_i) = a sum_i u_i + b sum_i w_i; a, b free of i"))
    start = time.monotonic()
    lhs2, rhs2 = eqs["rule/R2-constant"]
    ok2 = lhs2.doit() == rhs2
    out.append(Result("rule/R2-constant", PROVED if ok2 else UNKNOWN, "SymPy summation",
                      time.monotonic() - start, note="sum_{i=1}^N c = N c; c free of i"))
    start = time.monotonic()
    lhs3, rhs3 = eqs["rule/R3-delta"]
    r3 = deltasummation(lhs3.function, lhs3.limits[0])
    # SymPy answers Piecewise((u_j, j <= N), (0, True)); with 1 <= j <= N it is u_j
    ok3 = isinstance(r3, sp.Piecewise) and r3.args[0].expr == rhs3 and \
        r3.args[0].cond.subs(j, N) is sp.true and r3.args[0].cond.subs(j, N + 1) is sp.false
    out.append(Result("rule/R3-delta", PROVED if ok3 else UNKNOWN, "SymPy delta summation",
                      time.monotonic() - start,
                      note=f"sum_{{i=1}}^N delta_ij u_i = u_j, condition 1 <= j <= N "
                           f"(SymPy: {r3})"))
    return out


def _claim(cid: str, lhs: sp.Expr, rhs: sp.Expr, statement: str) -> Result:
    start = time.monotonic()
    verdict, note, nz = decide(lhs, rhs)
    witness = None
    if verdict != PROVED:
        witness = concrete_disproof(lhs, rhs)
        if witness is not None:
            verdict, note = DISPROVED, f"false at N = {witness['N']}"
    conditions = sorted(nz.conditions)
    parts = [statement]
    if conditions:
        parts.append("if " + ", ".join(conditions))
    if nz.rules:
        parts.append("by " + ", ".join(sorted(nz.rules)))
    if note:
        parts.append(note)
    return Result(cid, verdict, METHOD, time.monotonic() - start, witness, "; ".join(parts))


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
        from .derivation import shipped

        name = f"the shipped derivation '{steps}'" if steps in shipped() else steps
        notes.append(f"note/*: every step of {name} for every N (symbn check {steps} --n all)")
    info = {"n": "all", "seconds": round(time.monotonic() - start, 3)}
    return Report("symbn verify: BatchNorm backward, every N (symbolic)", results, info, notes)


# ---------------------------------------------------------------------------------------
# derivation files for every N
# ---------------------------------------------------------------------------------------


class _Translate:
    """A derivation template (symbn.derivation) as an expression of the symbolic-N model.

    Nodes are composed down to the leaves; D(a, b) is SymPy's `diff` of the composed a,
    D(f, b) the chain rule sum_r dy_r d y_r / d b (f is arbitrary), P(a, b) the `diff` of
    a's definition with its other parents held fixed.
    """

    def __init__(self, free=()):
        from . import derivation as dv

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


def _undefined_everywhere(divisors: list, indices: list, distinct: set) -> str | None:
    """Why a side divides by zero for every N (canonical form of a divisor zero under some
    pattern of equal indices), or None."""
    for rename, apart in _patterns(indices, distinct):
        for template, divisor in divisors:
            nz = Normalizer(apart)
            try:
                numerator = sp.together(_eliminate_sqrt(nz.normal(divisor.xreplace(rename))))
                zero = numerator.has(sp.zoo, sp.nan) or \
                    sp.expand(numerator.as_numer_denom()[0]) == 0
            except (Unsupported, sp.PolynomialError, NotImplementedError, TypeError,
                    ValueError):
                return (f"undefined or undecided: the claim divides by {template}, whose "
                        "canonical form could not be built")
            if zero:
                equal = sorted({f"{a} = {b}" for a, b in rename.items() if a != b})
                when = f" when {', '.join(equal)}" if equal else ""
                return (f"division by zero{when}: the claim divides by {template}, which is "
                        "identically zero for every N")
    return None


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
    from .check import undefined_at

    found = {}
    for n in sizes:
        reason = undefined_at(step, n, getattr(derivation, "path", "<step>"))
        if reason is not None:
            found[n] = reason
    return found


def _concrete_step_disproof(step, derivation) -> dict | None:
    from .check import check
    from .derivation import Derivation

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
    from .derivation import Derivation, load

    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if d.spec is not None:
        raise SymbnError(f"{d.path}: n='all' is proved for the batchnorm model so far, not "
                         f"for model '{d.model}'; check it at a size such as n=6")
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
