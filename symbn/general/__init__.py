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

from .batchnorm import (
    DEFINITIONS,
    PARENT_SYMBOL,
    backward,
    beta,
    closed_dx,
    compose,
    forward_dx,
    forward_param,
    gamma,
    local_partial,
    mu,
    mu_node,
    p,
    path_families,
    q,
    r,
    v,
    v_node,
    xhat,
    y,
)
from .normal import (
    METHOD,
    N,
    Normalizer,
    Unsupported,
    decide,
    dy,
    eps,
    i,
    j,
    k,
    rule_equations,
    s,
    x,
)

# internal helpers other modules and tests use from symbn.general, as when it was one module
from .normal import _eliminate_sqrt as _eliminate_sqrt
from .normal import _rules as _rules
from .steps import check_all, translate
from .theorems import (
    CONDITION,
    append_every_n,
    claims,
    concrete_disproof,
    instantiate,
    prove,
    verify_all,
)
from .theorems import _claim as _claim

__all__ = [
    "CONDITION", "DEFINITIONS", "METHOD", "PARENT_SYMBOL", "N", "Normalizer", "Unsupported",
    "append_every_n", "backward", "beta", "check_all", "claims", "closed_dx",
    "compose", "concrete_disproof", "decide", "dy", "eps", "forward_dx", "forward_param",
    "gamma", "i", "instantiate", "j", "k", "local_partial", "mu", "mu_node", "p",
    "path_families", "prove", "q", "r", "rule_equations", "s", "translate", "v", "v_node",
    "verify_all", "x", "xhat", "y",
]
