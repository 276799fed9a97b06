"""Wall time of `check_impl` (symbn check-impl) on the test implementations in tests/impls.

Prints a table: the exact trace (route 1) of a vectorised BatchNorm backward
(bn_right.batchnorm_backward) and a loop-heavy one (bn_right.batchnorm_backward_loops) at
N = 3, D = 2 and N = 64, D = 8; route 2 (float64 at exact points) of a float-buffer one
(floaty.bn_buffer_loops) at the same sizes; and the largest N (D = 2) at which the exact
trace of the vectorised one proves every output within 10 s (doubling, then bisection).

    python scripts/bench_check_impl.py [--budget 10] [--start 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "tests", "impls"))


def timed(function, n: int, d: int, timeout: float = 600.0) -> tuple[float, str, str]:
    """(seconds, verdicts as letters, route) of one check_impl in this process."""
    from symbn.errors import SymbnError
    from symbn.impl import check_impl

    start = time.perf_counter()
    try:
        report = check_impl(function, "batchnorm", n=n, d=d, timeout=timeout)
    except SymbnError as err:  # the call itself ran out of time
        return time.perf_counter() - start, f"error: {err}"[:40], "-"
    seconds = time.perf_counter() - start
    return seconds, " ".join(r.verdict for r in report), report.info["route"]


def largest_n(function, budget: float, start: int) -> tuple[int, float, int, str]:
    """(largest N all proved within budget, its seconds, the first N that was not, why)."""
    def ok(n):
        seconds, verdicts, _ = timed(function, n, 2, timeout=budget)
        print(f"  N = {n:5d}, D = 2: {seconds:7.2f} s  {verdicts}", file=sys.stderr)
        return seconds <= budget and set(verdicts.split()) == {"proved"}, seconds, verdicts

    good, good_s = None, 0.0
    n = start
    while True:
        passed, seconds, verdicts = ok(n)
        if not passed:
            bad, why = n, verdicts
            break
        good, good_s = n, seconds
        n *= 2
    lo = good or 0
    hi = bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        passed, seconds, verdicts = ok(mid)
        if passed:
            lo, good_s = mid, seconds
        else:
            hi, why = mid, verdicts
    return lo, good_s, hi, why


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--start", type=int, default=4)
    args = parser.parse_args(argv)
    import bn_right
    import floaty

    timed(bn_right.batchnorm_backward, 2, 1)  # imports and first-use caches, not measured
    rows = [("vectorised (bn_right.batchnorm_backward)", bn_right.batchnorm_backward),
            ("loop-heavy (bn_right.batchnorm_backward_loops)", bn_right.batchnorm_backward_loops),
            ("float buffer (floaty.bn_buffer_loops)", floaty.bn_buffer_loops)]
    print(f"{'implementation':<48} {'N':>3} {'D':>2} {'seconds':>8}  route: verdicts")
    for label, function in rows:
        for n, d in ((3, 2), (64, 8)):
            seconds, verdicts, route = timed(function, n, d)
            print(f"{label:<48} {n:>3} {d:>2} {seconds:8.2f}  {route}: {verdicts}")
    n, seconds, first_bad, why = largest_n(bn_right.batchnorm_backward, args.budget,
                                           args.start)
    print(f"\nlargest N (D = 2) with every output of the vectorised implementation proved by "
          f"the exact trace within {args.budget:g} s: N = {n} ({seconds:.2f} s); at N = "
          f"{first_bad}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
