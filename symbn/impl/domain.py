"""Where the traced code is defined: every divisor nonzero, every radicand nonnegative and
every logarithm's argument positive, for *all* inputs (ε > 0), not only where SymPy's
simplification left a trace of them: (√t)² is t and t/t is 1 the moment SymPy builds them,
but the float code takes √t (NaN for t < 0) and divides by t (NaN at t = 0).

`symbn.impl.exact` records each such condition as the trace runs.  A condition is proved by
the structural sign rules of `symbn.prove.radicals` (ε > 0, a sum of squares ≥ 0), and,
where those stop, for a polynomial whose coefficients (as a polynomial in the positive
leaves) are quadratic in the others, by an exact test that each coefficient is a positive
semidefinite quadratic form: E[x²] − E[x]² + ε > 0 holds although no term-by-term rule sees
it.  A condition not proved is looked for a counterexample: a dyadic point (exact in
floating point) where the divisor is 0 or the radicand negative.

>>> a, b, eps = sp.symbols("a b eps")
>>> signs = StrongSigns({eps})
>>> signs.sign((a**2 + b**2) / 2 - ((a + b) / 2)**2 + eps), signs.sign(a - b)
('pos', None)
"""

from __future__ import annotations

import random
from fractions import Fraction

import sympy as sp

from ..prove.radicals import NEG, NONNEG, NONPOS, POS, Signs

# the kinds of condition the trace records: what the operand must be, the sign that shows it
HOLDS = {"nonzero": (POS, NEG), "nonneg": (POS, NONNEG), "positive": (POS,), "log": (POS,),
         "exponent": (POS, NONNEG)}
WHAT = {"nonzero": "divides by", "nonneg": "takes a root of",
        "positive": "takes a negative or irrational power of", "log": "takes the log of",
        "exponent": "raises 0 to the power"}
NEEDS = {"nonzero": "nonzero", "nonneg": ">= 0", "positive": "> 0", "log": "> 0",
         "exponent": ">= 0"}
MAX_TERMS = 20000  # polynomials tested for a quadratic form up to this many terms
MAX_FORM = 160  # and this many variables (exact elimination, cubic in it)


class StrongSigns(Signs):
    """`Signs` and, for a sum the structural rules leave undecided, the quadratic-form test
    (`_quadratic_sign`)."""

    def _sign(self, e: sp.Expr) -> str | None:
        found = super()._sign(e)
        if found in (POS, NEG) or not e.is_Add:
            return found
        tested = _quadratic_sign(e, self.positive)
        return tested if tested is not None else found


def _quadratic_sign(e: sp.Expr, positive: set) -> str | None:
    """POS / NONNEG / NEG / NONPOS of a polynomial e (rational coefficients) for every real
    value of its symbols, the `positive` ones > 0; None when not shown."""
    if all(t.is_Number or t.is_Symbol or t.is_Mul and len(t.args) == 2 and t.args[0].is_Number
           and t.args[1].is_Symbol for t in e.args):
        return None  # linear and not constant (x[i] - mu): takes both signs
    if any(not (p.exp.is_Integer and p.exp > 0) for p in e.atoms(sp.Pow)) or \
            e.atoms(sp.Function):
        return None
    gens = sorted(e.free_symbols, key=str)
    try:
        poly = sp.Poly(e, *gens, domain="QQ")
    except (sp.PolynomialError, sp.CoercionFailed):
        return None
    if len(poly.terms()) > MAX_TERMS:
        return None
    pos = [k for k, g in enumerate(gens) if g in positive]
    free = [k for k, g in enumerate(gens) if g not in positive]
    if len(free) > MAX_FORM:
        return None
    groups: dict = {}  # exponents of the positive leaves -> {free exponents: coefficient}
    for monom, c in poly.terms():
        key = tuple(monom[k] for k in pos)
        groups.setdefault(key, {})[tuple(monom[k] for k in free)] = Fraction(int(c.p), int(c.q))
    for sign, flip in ((POS, 1), (NEG, -1)):
        kinds = [_form_sign({m: flip * c for m, c in g.items()}, len(free))
                 for g in groups.values()]
        if all(k in (POS, NONNEG) for k in kinds):
            return sign if POS in kinds else (NONNEG if sign == POS else NONPOS)
    return None


def _form_sign(coeffs: dict, n: int) -> str | None:
    """POS (> 0 everywhere), NONNEG (≥ 0) or None for Σ c m(z), a polynomial of degree ≤ 2
    in z: the matrix [[A, b/2], [b/2, c0]] is positive semidefinite, and its last pivot
    (c0 less what the z-part can take away: the minimum) is positive for POS."""
    if any(sum(m) > 2 for m in coeffs):
        return None
    M = [[Fraction(0)] * (n + 1) for _ in range(n + 1)]
    for m, c in coeffs.items():
        idx = [k for k, e in enumerate(m) for _ in range(e)] + [n, n]  # n: the constant
        i, j = idx[0], idx[1]
        M[i][j] += c if i == j else c / 2
        if i != j:
            M[j][i] += c / 2
    pivots = _pivots(M)
    if pivots is None:
        return None
    return POS if pivots[-1] > 0 else NONNEG


def _definite(M: list) -> str | None:
    """POS if the symmetric rational matrix is positive definite, NONNEG if semidefinite,
    else None."""
    pivots = _pivots(M)
    if pivots is None:
        return None
    return POS if all(p > 0 for p in pivots) else NONNEG


def _pivots(M: list) -> list | None:
    """The pivots of symmetric elimination of a rational matrix, exact; None unless it is
    positive semidefinite (a negative pivot, or a zero pivot over a nonzero row)."""
    M = [row[:] for row in M]
    size, pivots = len(M), []
    for k in range(size):
        p = M[k][k]
        pivots.append(p)
        if p < 0:
            return None
        if p == 0:
            if any(M[k][j] != 0 for j in range(k + 1, size)):
                return None
            continue
        for i in range(k + 1, size):
            f = M[i][k] / p
            if f:
                for j in range(k + 1, size):
                    M[i][j] -= f * M[k][j]
    return pivots


def classify(conditions: dict, positive: set) -> tuple[list, list]:
    """(unproved, cancelling): the recorded conditions (kind, expression, where) that the
    sign rules do not prove for every input, and those only the quadratic-form test proves,
    not the term-by-term rules (E[x^2] - E[x]^2 + eps): their terms cancel, and in floating
    point they can round below zero (NaN) for inputs with a large mean, though in the reals
    they never are.

    >>> a, eps = sp.symbols("a eps")
    >>> classify({("nonzero", a): "", ("nonneg", a**2 + eps): ""}, {eps})
    ([('nonzero', a, '')], [])
    """
    plain, strong = Signs(positive), StrongSigns(positive)
    open_, cancel = [], []
    for (kind, e), where in conditions.items():
        if strong.sign(e) not in HOLDS[kind]:
            open_.append((kind, e, where))
        elif kind != "nonzero" and plain.sign(e) not in HOLDS[kind]:
            cancel.append((kind, e, where))
    return open_, cancel


def failing_point(kind: str, e: sp.Expr, symbols: list, positive: set, seed: int = 0,
                  tries: int = 300) -> dict | None:
    """A dyadic point {symbol: Fraction} of the domain (positive symbols > 0) where `e` is 0
    (kind nonzero), negative (nonneg) or not positive (positive); None if none is found."""
    rng = random.Random(f"symbn domain {seed}")
    num, den = sp.fraction(sp.together(e))
    linear = [s for s in sorted(num.free_symbols, key=str) if s not in positive
              and sp.degree(num, s) == 1] if kind in ("nonzero", "positive", "log") and num.is_polynomial() else []
    for t in range(tries):
        point = {s: (Fraction(rng.randint(1, 8), 8) if s in positive
                     else Fraction(rng.randint(-12, 12), 4)) for s in symbols}
        if linear:  # solve num = 0 for one symbol it is linear in
            s = linear[t % len(linear)]
            rest = {k: sp.Rational(v.numerator, v.denominator) for k, v in point.items()
                    if k != s}
            c1, c0 = (sp.diff(num, s).xreplace(rest),
                      num.xreplace({**rest, s: sp.Integer(0)}))
            if not (c1.is_Rational and c0.is_Rational) or c1 == 0:
                continue
            root = -c0 / c1
            if root.q & (root.q - 1) or abs(root) > 64:  # not dyadic: not exact in floats
                continue
            point[s] = Fraction(int(root.p), int(root.q))
        value = e.xreplace({s: sp.Rational(v.numerator, v.denominator)
                            for s, v in point.items()})
        d = den.xreplace({s: sp.Rational(v.numerator, v.denominator) for s, v in point.items()})
        if d == 0 or not value.is_number:
            continue
        if (kind == "nonzero" and value == 0) or \
                (kind in ("nonneg", "exponent") and value.is_negative) or \
                (kind in ("positive", "log") and value.is_nonpositive):
            return point
    return None
