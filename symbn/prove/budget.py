"""The budgets of one claim: time (`Budget`, `alarm`) and the size of every FLINT product.

`_times`, `_gcd` and `_power` refuse, by raising `Budget`, an operation past
`MAX_TERM_PRODUCTS` or `MAX_PRODUCT_BYTES`: the claim is `unknown`, never a process killed by
a failed allocation.

>>> import flint
>>> x, y = flint.fmpq_mpoly_ctx.get(["x", "y"], "degrevlex").gens()
>>> _power(x + y, 2)
x^2 + 2*x*y + y^2
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time


class Budget(BaseException):
    """The time budget ran out.

    A BaseException, so that no `except Exception` inside SymPy can swallow the alarm.
    """


class Rang(Budget):
    """The alarm of an enclosing `alarm` rang: the whole scope's time is up.

    SIGALRM fires once, so whatever catches it must end its work: an `except Budget` that
    answers one claim `unknown` and goes on would run the rest of the scope without a clock.
    """


MAX_ALARM = 1e8  # seconds, about three years


@contextlib.contextmanager
def alarm(deadline: float | None):
    """Raise `Budget` wherever the work is when `deadline` (time.monotonic) passes.

    The cooperative checks between prover operations cannot interrupt one long SymPy or
    FLINT call; SIGALRM can.  Only in the main thread of a POSIX process; elsewhere the
    cooperative checks alone apply.  Alarms nest: an enclosing one keeps its deadline, and
    is re-armed when the inner one ends, even if the work inside caught the inner ring
    (`Rang`).  `alarm(None)` inside a running one is such an inner alarm: code that catches
    `Budget` under it cannot silence the enclosing deadline.

    >>> import time
    >>> with alarm(time.monotonic() + 60):
    ...     with alarm(time.monotonic() + 1):
    ...         pass
    """
    usable = hasattr(signal, "setitimer") and \
        threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    outer = time.monotonic() + left if left > 0 else None
    if outer is not None:
        deadline = outer if deadline is None else min(deadline, outer)
    if deadline is None:
        yield
        return

    def ring(signum, frame):
        raise Rang

    previous = signal.signal(signal.SIGALRM, ring)
    # setitimer overflows the platform's time_t past about 1e9 s: a deadline farther away
    # than MAX_ALARM is armed at MAX_ALARM, years, which no run reaches
    signal.setitimer(signal.ITIMER_REAL, min(max(deadline - time.monotonic(), 1e-3), MAX_ALARM))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer is not None:
            signal.setitimer(signal.ITIMER_REAL, min(max(outer - time.monotonic(), 1e-3),
                                                     MAX_ALARM))


# One FLINT multiplication is a single C call that no alarm can interrupt, and FLINT aborts
# the process when an allocation fails; past this many term-by-term products (about a
# second on this class of machine), or a product that could need more memory than
# MAX_PRODUCT_BYTES (each term packs its exponents in 8 bits per variable, plus the
# coefficient), the claim is `unknown` before FLINT is asked.
MAX_TERM_PRODUCTS = 5 * 10**7
MAX_PRODUCT_BYTES = 1 << 28


def _bytes(terms: int, poly) -> int:
    """Memory of a polynomial with this many terms in `poly`'s ring, roughly."""
    return terms * 8 * (-(-poly.context().nvars() // 8) + 2)


def _times(a, b):
    products = len(a) * len(b)
    if products > MAX_TERM_PRODUCTS or _bytes(products, a) > MAX_PRODUCT_BYTES:
        raise Budget(f"a product of {len(a)} by {len(b)} terms exceeds the size budget "
                     f"(up to {_bytes(products, a) >> 20} MiB)")
    return a * b


def _gcd(a, b):
    # FLINT's gcd works on copies of both operands and their cofactors: a few times their size
    if _bytes(4 * (len(a) + len(b)), a) > MAX_PRODUCT_BYTES:
        raise Budget(f"a gcd of {len(a)} and {len(b)} terms exceeds the size budget")
    return a.gcd(b)


def _power(a, k: int):
    result, square = None, a
    while k:
        if k & 1:
            result = square if result is None else _times(result, square)
        k >>= 1
        if k:
            square = _times(square, square)
    return result if result is not None else a ** 0
