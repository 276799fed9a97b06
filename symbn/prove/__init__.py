"""Deciding lhs = rhs exactly: canonical rational-function form, or an exact witness.

>>> from symbn.model import BatchNorm
>>> bn = BatchNorm(2)
>>> Algebra(bn).decide(bn.xhat(1), -bn.xhat(2)).verdict
'proved'

The modules, each with one responsibility:

    interface     the verdicts, `Outcome`, the `Model` protocol
    budget        time (`Budget`, `alarm`) and the size of every FLINT product
    rational      num/den of FLINT polynomials
    algebra       `Algebra`: canonical forms and the exact verdict
    definedness   nonzero divisors, radicands real somewhere (mixed into `Algebra`)
    witness       exact points that disprove (mixed into `Algebra`), shared samplers
    multiradical  several square roots: s_k**2 = r_k
    radicals      sqrt(b**2 c) = b sqrt(c) where b >= 0 is proved
    separate      interval-certified separation of algebraic values
    linear        linear forms in dy and their coefficients
    randomized    exact values at random points (`RandomTester`)

The model is anything with this protocol (`Model`; BatchNorm and symbn.graph instances):

    leaves           list of the leaf symbols (the independent variables), in a fixed order
    positive         set of the leaves known > 0 (eps); every other leaf ranges over the reals
    dys              set of the upstream gradients dy among the leaves
    nodes            dict: node symbol -> object with .definition (in its parents' symbols)
                     and .parents, in a topological order
    f                the output symbol; its node, f(y...), is never expanded
    compose(expr)    expr with every node but f expanded down to the leaves (shared
                     subexpressions may stay shared)
    evaluate(expr, point)  the exact value at a dict leaf -> Fraction giving every leaf expr
                     needs: SymPy Rationals, and square roots of them kept exact
    support(expr)    every node and leaf expr depends on, through the definitions

Every node is expanded down to the leaves.  Square roots are the only non-rational piece.
One square root sqrt(p + w(x)), p a positive leaf (eps) and w free of p, is eliminated by
s > 0 and p = s**2 - w(x) (the fast path): on the domain p > 0 this change of variables is
a bijection onto the open set {s > 0, s**2 > w(x)}, so lhs - rhs vanishes there exactly
when the numerator of its rational normal form in QQ(leaves, s) is the zero polynomial.
Polynomials are FLINT's sparse multivariate polynomials over QQ.

Several square roots, or one of another form (sqrt(v_1 + eps) beside sqrt(v_2 + eps),
sqrt(v) beside sqrt(v + eps)), are decided by `multiradical`: each distinct radicand
r_k, a polynomial over QQ in the leaves, gets a symbol s_k with s_k**2 = R_k, lhs - rhs
becomes num/den over QQ[leaves, s_1..s_m], and num is reduced modulo every s_k**2 = R_k.

A nonzero numerator is not yet a disproof: symbn searches for a rational point with p > 0
and s rational (p chosen so that p + w is a perfect square) where the numerator and
denominator are nonzero, then re-evaluates both sides there with plain SymPy arithmetic on
Rationals, independently of the polynomial code.  Only a point where they differ is reported.
p is drawn from small fractions in (0, 1) as well as integers, and s just above sqrt(w)
as well as far above it, so a claim false only for small eps is refuted.  With several
radicals the values are algebraic: the point is reported only where an outward-rounded
interval enclosure of lhs - rhs excludes 0 (`separate`).

Why each rule is sound (what it assumes, and where that is checked):

- `proved` means: lhs = rhs at every point of the domain (positive leaves > 0, every leaf
  real) where both sides are defined.  The numerator test is exact: a rational function is
  zero on a nonempty open set iff its numerator is the zero polynomial.
- A side undefined on the whole domain would make that vacuous, so it is never judged:
  `nonzero` shows each divisor written in a claim is not the zero function (nonzero at one
  exact point, checked by evaluation or by an interval that excludes 0, or a nonzero
  canonical numerator), and `real_somewhere` that each radicand is positive on an open set.
  The divisors are recorded from the claim as written (symbn.derivation), because SymPy
  cancels v/v to 1 while building the instance; a divisor identically zero makes the link
  `unknown`, never `proved` (`symbn.check`).
- The change of variables p = s**2 - w is a bijection from {p > 0, p + w > 0} onto
  {s > 0, s**2 > w}, an open set; so is every point of the domain where sqrt(p + w) is
  real, and only there is the claim asserted.
- Several radicals: wherever every radicand is >= 0 and both sides are defined, the values
  s_k = sqrt(R_k) satisfy every s_k**2 = R_k, so the reduced numerator has the value of the
  original one there; a relation sqrt(r) = s_a * s_b * ... is used only when
  r = R_a * R_b * ... as polynomials, and it holds wherever they are >= 0, which they are
  wherever the claim (which takes all these square roots) is defined.  Building num/den
  never divides by anything the claim does not divide by, so den != 0 wherever the claim is
  defined.  Hence a zero reduced numerator means lhs = rhs at every point where the claim is
  defined, whatever the relations between the radicals; it is `proved` only after an exact
  rational point is found where every radicand is > 0 and both sides evaluate (by the
  model, with SymPy) to finite reals, so a claim defined nowhere (sqrt(-v - eps)) is not.
  A nonzero reduced numerator proves nothing alone (dependent radicals: sqrt((x1 - x2)**2)
  beside sqrt((x2 - x1)**2) ...); only an interval-certified point disproves.  Radicands
  that are not polynomials, nested radicals and radicands with a repeated factor
  (sqrt(t**2 c) = |t| sqrt(c), the sign of t not proved) are `unknown` unless a point
  refutes the claim.
- A square root of an even power, sqrt(b**2 c) = |b| sqrt(c), becomes b sqrt(c) only when
  b >= 0 is derived by the structural sign rules of `radicals` (eps > 0, sums of
  squares >= 0, ...), never assumed; otherwise the radical stays and the claim is `unknown`
  or refuted at a point.
- Division by a polynomial that is zero raises ZeroDivisionError: `unknown`.  Sizes are
  bounded before FLINT is called (`MAX_TERM_PRODUCTS`, `MAX_PRODUCT_BYTES`): a claim past
  them is `unknown`, never a process killed by a failed allocation.
- Linear forms in dy are compared coefficient by coefficient (`coefficients`) only after
  `linear_in` has proved, by structural induction, that both sides are linear forms; the dy
  are independent leaves because a derivative of dy is refused (symbn.derivation: dy
  depends on the leaves through f, and second derivatives of f are not modelled).
"""

from __future__ import annotations

from .algebra import Algebra
from .budget import MAX_PRODUCT_BYTES, MAX_TERM_PRODUCTS, Budget, alarm

# internal helpers other modules imported from symbn.prove when it was one module
from .budget import _times as _times
from .definedness import _finite as _finite
from .interface import (
    CONSISTENT,
    DISPROVED,
    METHOD_EXACT,
    METHOD_RADICAL,
    METHOD_ROOTS,
    METHOD_SEPARATED,
    PROBABLE,
    PROVED,
    UNKNOWN,
    Model,
    Outcome,
)
from .interface import _Unsupported as _Unsupported
from .linear import coefficients, linear_in, unit_coefficient
from .randomized import METHOD_RANDOM, RandomTester
from .rational import _degree as _degree
from .witness import positive_sample, root_above

__all__ = [
    "CONSISTENT", "DISPROVED", "MAX_PRODUCT_BYTES", "MAX_TERM_PRODUCTS", "METHOD_EXACT", "METHOD_RADICAL",
    "METHOD_RANDOM", "METHOD_ROOTS", "METHOD_SEPARATED", "PROBABLE", "PROVED", "UNKNOWN",
    "Algebra", "Budget", "Model", "Outcome", "RandomTester", "alarm", "coefficients",
    "linear_in", "positive_sample", "root_above", "unit_coefficient",
]
