"""Size limits of each method, checked before SymPy is imported (the command line refuses an
impossible size at once), with the estimates they are based on.

>>> check_size(5000, 1, None)
Traceback (most recent call last):
...
symbn.errors.SymbnError: n=5000 would take about 29 h to prove exactly; use n=1024 or less, set timeout=, or use method='random'
"""

from __future__ import annotations

from .errors import SymbnError

MAX_CELLS = 1 << 16                 # N x D for verify; N for the random method
EXACT_MAX_N_WITHOUT_TIMEOUT = 1024  # the variance's canonical form costs O(N^3)
MAX_N_WITHOUT_TIMEOUT = 4096        # building the graph alone is expected to take minutes
CHECK_MAX_N = 1 << 16


def estimate_seconds(n: int, d: int = 1, method: str = "exact") -> float:
    """Rough cost of `verify` at this size, from measurements on 2 cores.

    Exact: the dominant term is the variance polynomial, which has N(N+1)/2 terms per column
    and is built by N products of (N+1)-term polynomials (measured: N = 512 in about 110 s).
    Random: exact rational evaluation at 8 points, linear in N (measured: N = 4096 in 23 s).

    >>> round(estimate_seconds(4096, method="random"))
    24
    """
    if method == "random":
        return 1.0 + 5.5e-3 * n
    return d * (0.5 + 8.4e-7 * n ** 3)


def check_size(n: int, d: int, timeout: float | None, method: str = "exact") -> None:
    """Refuse sizes whose proof would take far too long, each method with its own limit.

    >>> check_size(10 ** 6, 1, None, "random")
    Traceback (most recent call last):
    ...
    symbn.errors.SymbnError: n=1000000 is beyond the random method's limit of 65536 rows (it would take about 92 min); use n=65536 or less
    """
    if method == "random":
        if d > 1:
            raise SymbnError(f"method='random' works on one column, got d={d}; "
                             "use method='exact' for d > 1")
        if n > MAX_CELLS:
            raise SymbnError(f"n={n} is beyond the random method's limit of {MAX_CELLS} rows "
                             "(it would take about "
                             f"{_duration(estimate_seconds(n, method=method))}); use "
                             f"n={MAX_CELLS} or less")
        return
    if n * d > MAX_CELLS:
        size = f"n={n}" if d == 1 else f"n={n} with d={d} ({n * d} cells)"
        raise SymbnError(f"{size} is beyond the exact method's limit of {MAX_CELLS} cells (it "
                         f"would take about {_duration(estimate_seconds(n, d))}); use a smaller "
                         "n=" + (" or d=" if d > 1 else ""))
    limit = min(MAX_N_WITHOUT_TIMEOUT, EXACT_MAX_N_WITHOUT_TIMEOUT)
    if timeout is None and n > limit:
        raise SymbnError(f"n={n} would take about {_duration(estimate_seconds(n, d))} to prove "
                         f"exactly; use n={limit} or less, set timeout=, or use method='random'")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.2g} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.2g} years"


def check_steps_size(n: int, timeout: float | None) -> None:
    """`check`'s limits: the exact method's, and a budget above MAX_N_WITHOUT_TIMEOUT."""
    if n > CHECK_MAX_N:
        raise SymbnError(f"n={n} is beyond the exact method's limit of {CHECK_MAX_N}; use "
                         f"n={CHECK_MAX_N} or less")
    if timeout is None and n > MAX_N_WITHOUT_TIMEOUT:
        raise SymbnError(f"n={n} is too large to check exactly without a budget; use "
                         f"n={MAX_N_WITHOUT_TIMEOUT} or less, or set timeout=")
