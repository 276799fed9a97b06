"""Several square roots in one claim: a positive symbol per radicand, reduced modulo s**2 = r.

`symbn.prove.Algebra` eliminates a single radical sqrt(p + w(x)) (p a positive leaf) by
p = s**2 - w.  Any other set of radicals (sqrt(v_1 + eps) beside sqrt(v_2 + eps), sqrt(v)
beside sqrt(v + eps), sqrt(ms + eps) ...) is decided here, in QQ[leaves, s_1..s_m]:

- every radicand is converted to a polynomial r over QQ in the leaves (a rational function,
  a nested radical or a repeated factor is `_Unsupported`, see `build`), and compared as a
  polynomial, so sqrt(4*(v + eps)) and sqrt(4*v + 4*eps) are one radical;
- in order of degree, each distinct r either equals R_a * R_b * ... for a nonempty set of
  earlier basis radicands (then sqrt(r) = s_a * s_b * ..., exact wherever the R are >= 0:
  sqrt(v * (v + eps)) = sqrt(v) * sqrt(v + eps)), or joins the basis as s_k, s_k**2 = R_k
  (or a constant square factor, r = lam**2 * R with lam > 0 rational: `CONSTANT_SQUARES`);
- lhs - rhs becomes num/den and every power of s_k above 1 in num is replaced by R_k
  (`Roots.reduce`): num is then multilinear in the s_k.

A zero reduced numerator proves the claim wherever it is defined (see symbn.prove for the
argument); a nonzero one proves nothing by itself unless the radicals are independent
(`independence`), and a disproof is always an exact point certified by interval arithmetic.

>>> from symbn.model import BatchNorm
>>> from symbn.prove import Algebra
>>> bn = BatchNorm(2, 2)
>>> s1, s2 = (sp.sqrt(bn.v(c) + bn.eps) for c in (1, 2))
>>> alg = Algebra(bn)
>>> alg.decide(bn.xhat(1, 1) * s1 - bn.xhat(1, 2) * s2, bn.x(1, 1) - bn.x(1, 2)
...            - bn.mu(1) + bn.mu(2)).verdict
'proved'
>>> _, roots = alg.difference(s1 + s2, sp.Integer(0))
>>> independence(roots)[0], roots.describe()[:13]
(True, '2 radicands (')
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

import flint
import sympy as sp

from .budget import Budget, _times
from .definedness import _finite
from .interface import _Unsupported
from .rational import _degree
from .witness import positive_sample, root_above

MAX_ROOTS = 16  # distinct radicands in one claim; past this the claim is `unknown`
MAX_SUBSET_BASIS = 10  # every product of basis radicands is tried up to this many; beyond, pairs
MAX_FACTOR_TERMS = 2000  # radicands factored (square factors, independence) up to this size
MAX_FACTOR_INTEGER = 10**30  # constants factored into primes up to this size
# Relations r = lam**2 * R with a positive rational lam (sqrt(4*(v + eps)) = 2*sqrt(v + eps)):
# sqrt(lam**2 * R) = lam * sqrt(R) for R >= 0 and lam > 0.  False keeps such radicals
# dependent (`unknown` with that reason).
CONSTANT_SQUARES = True


@dataclass
class Roots:
    """The radicals of one claim: sqrt(base) = coefficient * (product of generators s_k).

    `table`: base -> (lam, monomial) in the context of `wide`, an Algebra with the leaves
    and the generators; `basis`: (generator index, R_k in the leaves' context, R_k in the
    wide context, index in `radicands`); `radicands`: every distinct radicand polynomial
    r1, r2, ... (leaves' context) with the base it came from; `relations`: the products
    found, in words.
    """

    wide: object = None
    table: dict = field(default_factory=dict)
    basis: list = field(default_factory=list)
    radicands: list = field(default_factory=list)
    relations: list = field(default_factory=list)

    # -- reduction modulo s_k**2 = R_k -------------------------------------------------
    def reduce(self, poly, deadline: float | None = None):
        """`poly` with every s_k**e (e >= 2) replaced by R_k**(e // 2) * s_k**(e % 2).

        Exact wherever s_k**2 = R_k; the result has degree <= 1 in every s_k.
        """
        for index, _, r, _ in self.basis:
            d = _degree(poly, index)
            if d < 2:
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise Budget
            gen = self.wide.ctx.gens()[index]
            coeffs = []  # poly = sum_j coeffs[j] * s**j, coeffs free of s
            rest = poly
            for _ in range(d + 1):
                low = rest.subs({index: 0})
                coeffs.append(low)
                rest = (rest - low) / gen  # exact: every term left has s to a power >= 1
            even, odd = _horner(coeffs[0::2], r), _horner(coeffs[1::2], r)
            poly = even + _times(odd, gen) if not odd.is_zero() else even
        return poly

    def describe(self) -> str:
        """The radicands and the relations used, for the note of an outcome."""
        names = ", ".join(f"r{k + 1} = {_clip(base)}" for k, (_, base) in
                          enumerate(self.radicands))
        text = f"{len(self.radicands)} radicand{'s' if len(self.radicands) != 1 else ''}"
        text += f" ({names})"
        if self.relations:
            text += "; " + "; ".join(self.relations)
        return text


def _horner(coeffs: list, r):
    """sum_j coeffs[j] * r**j."""
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = _times(acc, r) + c
    return acc


def build(alg, converted: list, deadline: float | None = None) -> Roots:
    """The `Roots` of a claim from its radicals' bases, each converted (`Algebra.convert`,
    mode None) in the leaves' context of `alg`.

    Refused (`_Unsupported`, so `unknown` unless a point refutes the claim): a radicand
    that is not a polynomial; a constant < 0 (never real); a polynomial with a repeated
    factor, sqrt(t**2 * c) = |t| * sqrt(c), where the sign of t is what matters and
    symbn.prove.radicals did not prove it (the same rule as for one radical); more than
    MAX_ROOTS radicands.
    """
    roots = Roots()
    plain: dict = {}  # base -> ('rational', its square root) or ('radicand', index)
    for base, b in converted:
        if not b.den.is_constant():
            raise _Unsupported(f"square root of a rational function that is not a polynomial: "
                               f"sqrt({base})")
        r = b.num * (1 / b.den.leading_coefficient())
        if r.is_zero():
            plain[base] = ("rational", flint.fmpq(0))
            continue
        if r.is_constant():
            c = r.leading_coefficient()
            if c < 0:
                raise _Unsupported(f"square root of a negative constant: sqrt({base})")
            root = _rational_sqrt(c)
            if root is not None:
                plain[base] = ("rational", root)
                continue
        for k, (poly, _) in enumerate(roots.radicands):
            if poly == r:
                plain[base] = ("radicand", k)
                break
        else:
            if len(roots.radicands) == MAX_ROOTS:
                raise _Unsupported(f"more than {MAX_ROOTS} distinct square roots")
            _check_square_free(r, base, deadline)
            roots.radicands.append((r, base))
            plain[base] = ("radicand", len(roots.radicands) - 1)

    # in order of degree, so that a product comes after its factors
    order = sorted(range(len(roots.radicands)),
                   key=lambda k: (roots.radicands[k][0].total_degree(), len(roots.radicands[k][0])))
    expressed: dict[int, tuple] = {}  # radicand index -> (lam, [basis positions])
    basis_polys: list = []  # (radicand index, R)
    for k in order:
        if deadline is not None and time.monotonic() > deadline:
            raise Budget
        r = roots.radicands[k][0]
        found = _relation(r, [p for _, p in basis_polys])
        if found is None:
            basis_polys.append((k, r))
            expressed[k] = (flint.fmpq(1), [len(basis_polys) - 1])
        else:
            lam, subset = found
            expressed[k] = (lam, list(subset))
            factors = ([_fq(lam)] if lam != 1 else []) + [
                f"sqrt(r{basis_polys[j][0] + 1})" for j in subset]
            roots.relations.append(f"sqrt(r{k + 1}) = {'*'.join(factors)}")

    wide = alg._widen(len(basis_polys))
    roots.wide = wide
    nleaves = len(alg.symbols)
    gens = wide.ctx.gens()
    for j, (k, r) in enumerate(basis_polys):
        roots.basis.append((nleaves + j, r, r.project_to_context(wide.ctx), k))
    for base, (kind, value) in plain.items():
        if kind == "rational":
            roots.table[base] = (value, wide.one)
        else:
            lam, subset = expressed[value]
            mono = wide.one
            for j in subset:
                mono = mono * gens[nleaves + j]
            roots.table[base] = (lam, mono)
    return roots


def _relation(r, basis: list):
    """(lam, positions) with r = lam**2 * prod(basis[positions]) and lam > 0 rational, or
    None.  Leading and trailing monomials of a product are the sums of its factors' (a
    monomial order is multiplicative), which rules out almost every subset unmultiplied."""
    lead, trail, deg = r.monomial(0), r.monomial(len(r) - 1), r.total_degree()
    shapes = [(p.monomial(0), p.monomial(len(p) - 1), p.total_degree()) for p in basis]
    sizes = range(1, len(basis) + 1) if len(basis) <= MAX_SUBSET_BASIS else (1, 2)
    for size in sizes:
        for subset in itertools.combinations(range(len(basis)), size):
            if sum(shapes[j][2] for j in subset) != deg:
                continue
            if (tuple(map(sum, zip(*(shapes[j][0] for j in subset)))) != lead
                    or tuple(map(sum, zip(*(shapes[j][1] for j in subset)))) != trail):
                continue
            product = basis[subset[0]]
            for j in subset[1:]:
                product = _times(product, basis[j])
            if len(product) != len(r):
                continue
            ratio = r.leading_coefficient() / product.leading_coefficient()
            lam = _rational_sqrt(ratio) if ratio > 0 else None
            if lam is not None and (lam == 1 or CONSTANT_SQUARES) and product * ratio == r:
                return lam, subset
    return None


def _check_square_free(r, base, deadline) -> None:
    if len(r) > MAX_FACTOR_TERMS or r.total_degree() < 2:
        return  # too large to factor here: the reduction stays sound, only less complete
    if deadline is not None and time.monotonic() > deadline:
        raise Budget
    _, factors = r.factor_squarefree()
    for factor, exponent in factors:
        if exponent >= 2 and not factor.is_constant():
            raise _Unsupported(
                f"sqrt({base}): the radicand has the square factor ({factor})^{exponent}; "
                f"sqrt(t**2 * c) = |t| * sqrt(c), and the sign of t is not proved "
                f"(symbn.prove.radicals)")


def _rational_sqrt(q) -> flint.fmpq | None:
    """The rational square root of q >= 0, or None."""
    p, d = int(q.p), int(q.q)
    if p < 0:
        return None
    a, b = math.isqrt(p), math.isqrt(d)
    return flint.fmpq(a, b) if a * a == p and b * b == d else None


def _fq(q) -> str:
    return str(int(q.p)) if int(q.q) == 1 else f"{int(q.p)}/{int(q.q)}"


def _clip(expr, limit: int = 60) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# independence: no nonempty product of the R_k is a square in QQ(x)
# ---------------------------------------------------------------------------------------


def independence(roots: Roots, deadline: float | None = None) -> tuple[bool | None, str]:
    """Whether the basis radicands are multiplicatively independent modulo squares.

    Each R_k = c_k * prod f_j**e_j over QQ (irreducible f_j, made monic); a product over a
    set S is a square in QQ(x) iff every f_j has an even total exponent over S and
    prod c_k is the square of a rational.  So R_k is a vector over GF(2) of the parities of
    its exponents (and of the primes and the sign of c_k), and the radicals are independent
    iff these vectors are linearly independent.  Then (Kummer theory) the field
    QQ(x)(sqrt(R_1), ..., sqrt(R_m)) has degree 2**m with the products of distinct s_k as a
    basis, so a nonzero reduced numerator is a nonzero algebraic function.

    Returns (True, text), (False, text naming a square product) or (None, why not decided).
    """
    atoms: dict = {}
    vectors: list[int] = []
    for _, r, _, _ in roots.basis:
        if deadline is not None and time.monotonic() > deadline:
            return None, "independence not checked (time budget)"
        if len(r) > MAX_FACTOR_TERMS:
            return None, "independence not checked (radicands too large to factor)"
        content, factors = r.factor()
        vector = 0
        constant = Fraction(int(content.p), int(content.q))
        for f, e in factors:
            lc = f.leading_coefficient()
            constant *= Fraction(int(lc.p), int(lc.q)) ** e
            if e % 2:
                key = ("poly", str(f * (1 / lc)))
                vector ^= 1 << atoms.setdefault(key, len(atoms))
        primes = _odd_primes(constant)
        if primes is None:
            return None, "independence not checked (a constant too large to factor)"
        for key in primes:
            vector ^= 1 << atoms.setdefault(key, len(atoms))
        vectors.append(vector)
    dependent = _dependent_subset(vectors)
    if dependent is None:
        return True, ("the radicals are independent (no product of radicands is a square in "
                      "QQ(x))")
    names = " * ".join(f"r{roots.basis[k][3] + 1}" for k in dependent)
    return False, f"the radicals are dependent: {names} is a square in QQ(x)"


def _odd_primes(q: Fraction) -> list | None:
    """The square class of a nonzero rational: its sign and the primes of odd exponent."""
    out = [("sign",)] if q < 0 else []
    n = abs(q.numerator) * q.denominator  # same square class as |q|
    if n > MAX_FACTOR_INTEGER:
        return None
    for prime, e in sp.factorint(n).items():
        if e % 2:
            out.append(("prime", int(prime)))
    return out


def _dependent_subset(vectors: list[int]) -> list[int] | None:
    """Indices of a nonempty subset of GF(2) vectors summing to 0, or None if independent."""
    pivots: dict[int, tuple[int, int]] = {}  # leading bit -> (vector, subset mask)
    for k, v in enumerate(vectors):
        mask = 1 << k
        while v:
            top = v.bit_length() - 1
            if top not in pivots:
                pivots[top] = (v, mask)
                break
            pv, pm = pivots[top]
            v, mask = v ^ pv, mask ^ pm
        else:
            return [j for j in range(len(vectors)) if mask >> j & 1]
    return None


# ---------------------------------------------------------------------------------------
# points of the domain: every radicand > 0, both sides defined
# ---------------------------------------------------------------------------------------


def domain_points(alg, roots: Roots, lhs, rhs, seed: int = 0, tries: int = 60,
                  deadline: float | None = None):
    """Yield (point, lhs value, rhs value) at exact rational points where every positive
    leaf is > 0, every radicand is > 0 and both sides evaluate (by the model, with SymPy,
    independently of the polynomial code) to finite real numbers.

    Where possible a positive leaf p is chosen so that one radicand c*p + w(x) is a rational
    square (p = (s**2 - w)/c, s rational above sqrt(w)), so that its radical is rational.
    """
    rng = random.Random(seed)
    model = alg.model
    support = model.support(sp.Tuple(lhs, rhs))
    squares: dict = {}
    for r, _ in roots.radicands:
        alg._add_square_form(r, squares)
    squares = {p: (Fraction(int(c.p), int(c.q)), w) for p, (c, w) in squares.items()}
    for attempt in range(tries):
        if deadline is not None and time.monotonic() > deadline:
            return
        radius = (3, 10, 1000)[min(attempt // 20, 2)]
        pt = {sym: Fraction(rng.randint(-radius, radius)) for sym in alg.symbols}
        for p in alg.positive:
            pt[p] = positive_sample(rng, radius)
        if attempt % 2 == 0:
            for p, (c, w) in squares.items():
                value = _at(alg, w, pt)
                s = root_above(value, rng)
                pt[p] = (s * s - value) / c
        if any(_at(alg, r, pt) <= 0 for r, _ in roots.radicands):
            continue
        point = {sym: q for sym, q in pt.items() if sym in support}
        full = {leaf: point.get(leaf, Fraction(0)) for leaf in model.leaves}
        full.update(point)
        try:
            left, right = model.evaluate(lhs, full), model.evaluate(rhs, full)
        except ZeroDivisionError:
            continue
        if _finite(left) and _finite(right):
            yield point, left, right


def _at(alg, poly, pt: dict) -> Fraction:
    """Exact value of a polynomial of the leaves' context of `alg` at `pt`."""
    args = [flint.fmpq(pt[s].numerator, pt[s].denominator) for s in alg.symbols]
    args += [flint.fmpq(0)] * (alg.ctx.nvars() - len(args))
    value = poly(*args)
    return Fraction(int(value.p), int(value.q))
