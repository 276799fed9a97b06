"""Wall time and peak memory of `symbn check batchnorm --n N`, against a baseline tree.

Each run is a fresh process (`python -m symbn check batchnorm --n N`), with this checkout's
`symbn` and, when --baseline names another checkout (say a `git worktree` of an earlier
commit), with that one's, alternating, so both see the same machine state.  Prints the
median wall time, the peak resident memory and the ratio per N.

    python scripts/bench_check.py [--n 32 64 96 128] [--repeats 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(tree: str, n: int) -> tuple[float, float]:
    """(seconds, peak MB) of one check in a fresh process importing `symbn` from `tree`."""
    env = dict(os.environ, PYTHONPATH=tree)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "symbn", "check", "batchnorm", "--n", str(n)],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"check --n {n} failed in {tree}: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout of symbn to compare with")
    args = parser.parse_args(argv)
    trees = {"this": HERE} | ({"baseline": os.path.abspath(args.baseline)}
                              if args.baseline else {})
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}; median of {args.repeats} runs, fresh process each")
    head = "".join(f"{name + ' s':>12}{name + ' MB':>12}" for name in trees)
    print(f"{'N':>5}{head}" + (f"{'time ratio':>12}" if len(trees) > 1 else ""))
    for n in args.n:
        seen = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                seen[name].append(run(tree, n))
        cells, medians = "", {}
        for name, runs in seen.items():
            medians[name] = statistics.median(s for s, _ in runs)
            cells += f"{medians[name]:>12.2f}{max(m for _, m in runs):>12.0f}"
        ratio = f"{medians['this'] / medians['baseline']:>12.2f}" if len(trees) > 1 else ""
        print(f"{n:>5}{cells}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
