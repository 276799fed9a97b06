"""A guard for one SymPy defect that symbn's exact arithmetic runs into.

SymPy 1.14's ``factorint(n, limit=...)`` can return a composite last factor, which its
factor cache then refuses with ``ValueError: p is not a prime factor of n``
(sympy/sympy#28621; fixed upstream by caching only factors known to be prime). A square
root of a large rational, such as sqrt(4/9 + 10**-128) at a sample point, goes through it
and would abort a check. Here the cache skips such a factor instead: the cache only saves
time, and ``factorint``'s result does not depend on it.

>>> from sympy import factorint
>>> n = 978188756923448938700236182276357436
>>> f = factorint(n, limit=2**15, use_trial=True, use_rho=False, use_pm1=False)
>>> import math; math.prod(p**k for p, k in f.items()) == n
True
"""

from __future__ import annotations

from sympy.ntheory import factor_

__all__: list[str] = []


def _install() -> None:
    cache = factor_.factor_cache
    if getattr(cache, "_skips_composites", False):
        return
    add = cache.add

    def add_primes(n: int, factors: list[int]) -> None:
        try:
            add(n, factors)
        except ValueError:  # a composite "factor" of factorint(limit=...): not cached
            pass

    cache.add = add_primes
    cache._skips_composites = True


_install()
