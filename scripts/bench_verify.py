"""Benchmark `symbn.verify` against the naive SymPy route, in one run.

    python scripts/bench_verify.py [--limit 60] [--naive-cap 150]

For N = 2, 4, 8, ... it times
  exact   symbn.verify(N)                     (proved: canonical forms over QQ)
  random  symbn.verify(N, method="random")    (probable: 8 exact random points)
  naive   SymPy simplify(lhs - rhs) == 0 on the fully composed expressions, for every j
          of df/dx_j (lhs: forward mode, sp.diff of the composed y_i; rhs: the closed form)
each until one run passes --limit seconds.  Naive runs go in a child process that is stopped
at --naive-cap seconds (simplify can take arbitrarily long).  Runs under 2 s are repeated
three times and the median is kept.  The table gives seconds, the naive/exact ratio and the
fitted growth exponent (least squares of log t on log N over the runs above 0.1 s).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _exact(n: int) -> float:
    import symbn

    start = time.perf_counter()
    report = symbn.verify(n)
    assert report.ok, f"exact verify failed at N = {n}"
    return time.perf_counter() - start


def _random(n: int) -> float:
    import symbn

    start = time.perf_counter()
    report = symbn.verify(n, method="random")
    assert report.ok, f"random verify failed at N = {n}"
    return time.perf_counter() - start


def _naive_all_j(n: int) -> bool:
    import sympy as sp

    from symbn import closed_form
    from symbn.model import BatchNorm

    bn = BatchNorm(n)

    def compose(expr):  # plain xreplace until no node is left: the fully expanded tree
        nodes = {s: node.definition for s, node in bn.nodes.items() if s != bn.f}
        while expr.free_symbols & set(nodes):
            expr = expr.xreplace(nodes)
        return expr

    ys = [compose(bn.y(i)) for i in bn.rows()]
    for j in bn.rows():
        lhs = sp.Add(*[bn.dy(i) * sp.diff(y, bn.x(j)) for i, y in zip(bn.rows(), ys)])
        rhs = compose(closed_form.dx(bn, j))
        if sp.simplify(lhs - rhs) != 0:
            return False
    return True


def _naive_child(n: int, queue) -> None:
    start = time.perf_counter()
    ok = _naive_all_j(n)
    queue.put((ok, time.perf_counter() - start))


def _naive(n: int, cap: float) -> float | None:
    """Seconds for the naive route, or None when it ran past `cap` (stopped)."""
    queue = mp.Queue()
    child = mp.Process(target=_naive_child, args=(n, queue))
    child.start()
    child.join(cap)
    if child.is_alive():
        child.terminate()
        child.join()
        return None
    ok, seconds = queue.get()
    if not ok:  # simplify failed to reach 0: the naive route does not decide the claim
        return None
    return seconds


def _median(run, n: int) -> float:
    first = run(n)
    if first >= 2.0:
        return first
    return statistics.median([first, run(n), run(n)])


def _exponent(points: list[tuple[int, float]]) -> float | None:
    pts = [(math.log(n), math.log(t)) for n, t in points if t is not None and t > 0.1]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--naive-cap", type=float, default=150.0)
    ap.add_argument("--max-n", type=int, default=1 << 14)
    args = ap.parse_args()
    times: dict[str, dict[int, float | None]] = {"exact": {}, "random": {}, "naive": {}}
    live = {"exact": True, "random": True, "naive": True}
    n = 2
    while any(live.values()) and n <= args.max_n:
        for name in ("naive", "exact", "random"):  # interleaved, same process for symbn
            if not live[name]:
                continue
            if name == "naive":
                t = _naive(n, args.naive_cap)
            else:
                t = _median(_exact if name == "exact" else _random, n)
            times[name][n] = t
            shown = "stopped" if t is None else f"{t:.3f} s"
            print(f"  N = {n:>5}  {name:<6} {shown}", file=sys.stderr, flush=True)
            if t is None or t > args.limit:
                live[name] = False
        n *= 2
    print(_table(times, args.naive_cap))
    print()
    for name in ("exact", "random", "naive"):
        k = _exponent([(m, t) for m, t in times[name].items()])
        print(f"fitted growth, {name}: " + ("n/a" if k is None else f"t ~ N^{k:.2f}"))
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{mp.cpu_count()} cores, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}")


def _table(times, cap: float) -> str:
    ns = sorted({n for col in times.values() for n in col})

    def cell(t):
        return "—" if t is None else f"{t:.3f}"

    lines = ["| N | exact (s) | random (s) | naive simplify (s) | naive / exact |",
             "|---:|---:|---:|---:|---:|"]
    for n in ns:
        e, r = times["exact"].get(n), times["random"].get(n)
        nv = times["naive"].get(n, "absent")
        naive = "not run" if nv == "absent" else \
            (f"> {cap:.0f} (stopped)" if nv is None else cell(nv))
        ratio = f"{nv / e:.0f}×" if isinstance(nv, float) and e else ""
        lines.append(f"| {n} | {cell(e) if n in times['exact'] else 'not run'} | "
                     f"{cell(r) if n in times['random'] else 'not run'} | {naive} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
