"""The canonical form for symbolic N: rules R1-R3 turn sums into power sums S(x^a dy^b).

`decide(lhs, rhs)` proves lhs = rhs for every N when the numerator of the canonical form of
lhs - rhs is the zero polynomial; the soundness argument is in `symbn.general`.

>>> decide(sp.Sum(x[i] - x[j], (i, 1, N)), sp.Sum(x[k], (k, 1, N)) - N * x[j])[0]
'proved'
"""

from __future__ import annotations

import time

import sympy as sp
from sympy.concrete.delta import deltasummation

from ..model import as_expr
from ..prove import PROVED, UNKNOWN
from ..prove.radicals import Signs, needs_rewrite, rewrite
from ..report import Result

N = sp.Symbol("N", integer=True, positive=True)
i, j, k = sp.symbols("i j k", integer=True, positive=True)  # row indices
x, dy = sp.IndexedBase("x"), sp.IndexedBase("dy")
eps = sp.Symbol("eps")  # the name BatchNorm(n) uses
s = sp.Symbol("s", positive=True)
NONZERO = "canonical form nonzero in the power-sum indeterminates"  # unknown, not disproved


def claim_note(statement: str, nz: Normalizer, note: str = "", proved: str = "") -> str:
    """A claim's note: its statement, then what `proved` says, the index conditions and
    summation rules `nz` used, and `note`, joined by '; '."""
    parts = [statement, *([proved] if proved else [])]
    if nz.conditions:
        parts.append("if " + ", ".join(sorted(nz.conditions)))
    if nz.rules:
        parts.append("by " + ", ".join(sorted(nz.rules)))
    return "; ".join(parts + ([note] if note else []))
METHOD = "canonical form, symbolic N"


class Unsupported(Exception):
    """The expression leaves the fragment the symbolic-N normal form decides."""


class Normalizer:
    """Rewrites with R1-R3 into polynomials in power-sum indeterminates S(x^a dy^b).

    >>> from symbn.general.batchnorm import mu
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

    >>> from symbn.general.batchnorm import mu
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
    return UNKNOWN, NONZERO, nz


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
