"""Square roots of squares: sqrt(b**2 * c) = |b| sqrt(c), with the sign of b proved.

The exact method replaces square roots by positive symbols (sqrt(eps + w) = s, or several
s_k with s_k**2 = r_k, symbn.prove.multiradical).  A radical whose base carries an even power,
sqrt((v + eps)**2), sqrt(1/(v + eps)), sqrt(v**2), is first rewritten: for an integer
e = 2q + r (r = 0 or 1),

    sqrt(b**e * c) = |b|**q * sqrt(b**r * c)        (b**(2q) is a nonnegative real)

and |b|**q is b**q for even q (sqrt(x**4) = x**2); for odd q |b| is replaced by b or -b only
when the sign of b is *proved* by the structural rules
of `sign` below; otherwise the factor stays under the root (sqrt(xhat[1]**2) is |xhat[1]|,
which no rule turns into xhat[1], and the claim stays for a disproof).

Sign rules, each a fact about real numbers (so the conclusion holds wherever the expression
is defined and real): a positive symbol (eps > 0, N >= 1) is positive; a node has the sign of
its definition; a sum of nonnegative terms is nonnegative, positive if one term is; a product
multiplies signs; an even power is nonnegative (positive if the base is strict, or if the
exponent is negative, where the power is defined); an odd power keeps the sign; a square
root is nonnegative (positive if its base is); a Sum over 1..N of nonnegative terms is
nonnegative (positive if they are, N >= 1); KroneckerDelta is 0 or 1.  So v = (1/N) sum
(x_i - mu)**2 is nonnegative as a sum of squares, and v + eps is positive: nothing is
assumed that these rules do not derive.

>>> a, eps = sp.symbols("a eps")
>>> rewrite(sp.sqrt((a**2 + eps) ** 2 * eps), Signs({eps}))
sqrt(eps)*(a**2 + eps)
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

POS, NONNEG, NEG, NONPOS = "pos", "nonneg", "neg", "nonpos"
_FLIP = {POS: NEG, NONNEG: NONPOS, NEG: POS, NONPOS: NONNEG, None: None}


class Signs:
    """Structural sign analysis of expressions over a model.

    `positive`: symbols known > 0; `definition(s)`: a node's definition, or None for a leaf.

    >>> eps, a = sp.symbols("eps a")
    >>> Signs({eps}).sign(a**2 + eps), Signs({eps}).sign(a - eps)
    ('pos', None)
    """

    def __init__(self, positive: set, definition: Callable[[sp.Symbol], sp.Expr | None]
                 = lambda s: None):
        self.positive, self.definition = set(positive), definition
        self._memo: dict = {}

    def sign(self, e: sp.Expr) -> str | None:
        hit = self._memo.get(id(e))
        if hit is not None:
            return hit[1]
        out = self._sign(e)
        self._memo[id(e)] = (e, out)
        return out

    def _sign(self, e: sp.Expr) -> str | None:
        if e.is_Number:
            if not e.is_Rational:
                return None
            return POS if e > 0 else NEG if e < 0 else NONNEG
        if e.is_Symbol:
            if e in self.positive:
                return POS
            definition = self.definition(e)
            return None if definition is None else self.sign(definition)
        if isinstance(e, sp.KroneckerDelta):
            return NONNEG
        if isinstance(e, sp.Sum):
            body = self.sign(e.function)
            return body if body in (POS, NONNEG, NEG, NONPOS) else None
        if e.is_Add:
            signs = {self.sign(a) for a in e.args}
            if signs <= {POS, NONNEG}:
                return POS if POS in signs else NONNEG
            if signs <= {NEG, NONPOS}:
                return NEG if NEG in signs else NONPOS
            collapsed = sp.Add(*e.args)  # a sum built unevaluated, x[1] - x[1] at N = 1
            return self.sign(collapsed) if collapsed.is_Number else None
        if e.is_Mul:
            negative, strict = False, True
            for a in e.args:
                s = self.sign(a)
                if s is None:
                    return None
                negative ^= s in (NEG, NONPOS)
                strict &= s in (POS, NEG)
            return (NEG if strict else NONPOS) if negative else (POS if strict else NONNEG)
        if e.is_Pow:
            base, exp = e.args
            if not exp.is_Rational:
                return None
            s = self.sign(base)
            if exp.q == 2:  # the principal square root, where it is real
                return POS if s == POS or exp < 0 else NONNEG
            if exp.q != 1:
                return None
            if int(exp.p) % 2 == 0:
                return POS if s in (POS, NEG) or exp < 0 else NONNEG
            if exp < 0 and s in (NONNEG, NONPOS):  # defined only where the base is not 0
                return POS if s == NONNEG else NEG
            return s
        return None


def rewrite(expr: sp.Expr, signs: Signs) -> sp.Expr:
    """`expr` with every square root of a power rewritten as above; unchanged objects are
    returned as they are (shared subexpressions are visited once).

    >>> eps, v = sp.symbols("eps v")
    >>> signs = Signs({eps}, {v: sp.Symbol("a") ** 2}.get)
    >>> rewrite(sp.sqrt((v + eps) ** 2), signs), rewrite(sp.sqrt(v ** 2), signs)
    (eps + v, v)
    >>> rewrite(sp.sqrt(1 / (v + eps)), signs)
    1/sqrt(eps + v)
    """
    memo: dict = {}

    def walk(e):
        hit = memo.get(id(e))
        if hit is not None:
            return hit[1]
        out = e
        if e.args:
            args = [walk(a) for a in e.args]
            if any(a is not b for a, b in zip(args, e.args)):
                out = e.func(*args)
            if out.is_Pow and out.exp.is_Rational and out.exp.q == 2:
                out = _root(out, signs)
        memo[id(e)] = (e, out)
        return out

    return walk(expr)


def _root(e: sp.Pow, signs: Signs) -> sp.Expr:
    """base**(p/2) = (|b|**q ... * sqrt(rest))**p for the even powers b**(2q) in base."""
    base, p = e.base, int(e.exp.p)
    outside, inside, changed = [], [], False
    for factor in sp.Mul.make_args(base):
        b, k = factor.as_base_exp()
        if factor.is_Rational and factor > 0:
            root = sp.sqrt(factor)
            if root.is_Rational:
                outside.append(root)
                changed |= factor != 1
                continue
        if not (k.is_Integer and (k >= 2 or k <= -1)):
            inside.append(factor)
            continue
        q = int(k) // 2
        s = signs.sign(b)
        if q % 2 == 0 or s in (POS, NONNEG):  # |b|**q = b**q for even q, any sign of b
            outside.append(b ** q)
        elif s in (NEG, NONPOS):
            outside.append((-b) ** q)
        else:
            inside.append(factor)
            continue
        changed = True
        if int(k) - 2 * q:
            inside.append(b)
    if not changed:
        return e
    rest = sp.Mul(*inside)
    return (sp.Mul(*outside) * (sp.sqrt(rest) if rest != 1 else 1)) ** p


def needs_rewrite(radicals) -> bool:
    """Whether any of these half-integer powers has a base `rewrite` could change."""
    return any(not r.base.is_Add for r in radicals)
