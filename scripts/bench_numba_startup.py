"""First-call cost of the generated numba module in a new process, cold and warm cache.

Generates the numba module (`symbn.codegen.generate("numba")`), writes it into a fresh
temporary directory per repeat, then times, in fresh Python processes run one after the
other, "import the module + the first batchnorm_backward on a small float64 input + the first
on a float32 input" (compiling the kernels, or loading them from numba's on-disk cache,
happens in these calls):

- no cache: the module loaded from a spec under another name, which it takes as a sign that
  numba could not reload a cache entry, so it compiles without one (as before the cache);
- first: `import bn_numba`, no cache yet (cold): compiles, and writes the cache beside it;
- second: `import bn_numba` again (warm): loads the kernels from that cache.

With --parallel, the same again with the module's PARALLEL_MIN set to 0, so the calls run the
parallel kernels.  Also times `import numpy, numba` alone in a fresh process, a floor no cache
removes.  Prints medians over the repeats as a Markdown table, with warm / cold.

    python scripts/bench_numba_startup.py [--repeats 5] [--shape 64 16] [--parallel]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import os, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[1]))
t0 = time.perf_counter()
if sys.argv[5] == "spec":  # not under its file's name: the module does not use the cache
    import importlib.util
    spec = importlib.util.spec_from_file_location("anonymous", sys.argv[1])
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
else:
    import bn_numba as m
t1 = time.perf_counter()
import json, numpy
if sys.argv[4] == "parallel":
    m.PARALLEL_MIN = 0
rng = numpy.random.default_rng(0)
shape = (int(sys.argv[2]), int(sys.argv[3]))
calls = [(rng.standard_normal(shape).astype(t), rng.standard_normal(shape).astype(t),
          rng.standard_normal(shape[1]).astype(t)) for t in (numpy.float64, numpy.float32)]
times = [t1 - t0]
for dY, X, gamma in calls:
    s = time.perf_counter()
    m.batchnorm_backward(dY, X, gamma)
    times.append(time.perf_counter() - s)
kernels = [k for k in vars(m) if k.startswith("_backward")]
stats = {k: getattr(m, k).stats for k in kernels if hasattr(getattr(m, k), "stats")}
print(json.dumps({"s": times,
                  "hits": sum(sum(s.cache_hits.values()) for s in stats.values()),
                  "misses": sum(sum(s.cache_misses.values()) for s in stats.values())}))
"""

WARMTH = {"uncached": "no cache (loaded from a spec)", "cold": "first (cold cache)",
          "warm": "second (warm cache)"}
FLOOR = ("import time; t0 = time.perf_counter(); import numpy, numba; "
         "print(time.perf_counter() - t0)")


def child(path: str, shape: tuple[int, int], kernel: str, how: str) -> dict:
    """One fresh process: seconds for (import, first float64 call, first float32 call)."""
    run = subprocess.run([sys.executable, "-c", CHILD, path, *map(str, shape), kernel, how],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"the child process failed:\n{run.stderr}")
    return json.loads(run.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=2, default=(64, 16), metavar=("N", "D"))
    parser.add_argument("--parallel", action="store_true",
                        help="also time the parallel kernels (PARALLEL_MIN = 0)")
    args = parser.parse_args(argv)

    import numba
    import numpy

    from symbn import codegen

    source = codegen.generate("numba")
    kernels = ["serial", "parallel"] if args.parallel else ["serial"]
    rows: dict = {(k, w): [] for k in kernels for w in WARMTH}
    floor = []
    with tempfile.TemporaryDirectory(prefix="symbn-numba-startup-") as tmp:
        for r in range(args.repeats):
            floor.append(float(subprocess.run([sys.executable, "-c", FLOOR], check=True,
                                              capture_output=True, text=True).stdout))
            for kernel in kernels:
                path = os.path.join(tmp, f"{kernel}{r}", "bn_numba.py")
                os.makedirs(os.path.dirname(path))
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(source)
                for warmth in WARMTH:  # uncached first: it must not see a cache either
                    how = "spec" if warmth == "uncached" else "import"
                    rows[kernel, warmth].append(child(path, args.shape, kernel, how))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)

    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"NumPy {numpy.__version__}, numba {numba.__version__}; "
          f"batchnorm_backward on {args.shape[0]} x {args.shape[1]}, "
          f"median of {args.repeats} fresh processes each")
    print()
    print("| process | kernels | import module (ms) | 1st call float64 (ms) "
          "| 1st call float32 (ms) | total (ms) | cache hits / misses |")
    print("|---|---|--:|--:|--:|--:|--:|")

    def median(runs, k=None):
        return statistics.median(sum(run["s"]) if k is None else run["s"][k] for run in runs)

    for kernel in kernels:
        for warmth, label in WARMTH.items():
            runs = rows[kernel, warmth]
            hits = "/".join(f"{statistics.median(run[key] for run in runs):g}"
                            for key in ("hits", "misses"))
            print(f"| {label} | {kernel} | " + " | ".join(f"{1e3 * median(runs, k):.0f}"
                                                          for k in range(3))
                  + f" | {1e3 * median(runs):.0f} | {hits} |")
        cold, warm = rows[kernel, "cold"], rows[kernel, "warm"]
        print(f"| second / first | {kernel} | " + " | ".join(
            f"{median(warm, k) / median(cold, k):.2f}" for k in range(3))
            + f" | {median(warm) / median(cold):.2f} | |")
    print(f"| floor: `import numpy, numba` | | {1e3 * statistics.median(floor):.0f} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
