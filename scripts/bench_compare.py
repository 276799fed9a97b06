"""Same-run speed of two generated modules (NumPy or numba) of one row model, and whether they
agree bit for bit (else their largest difference relative to the largest gradient): the
baseline for a change to the code generator.

    git worktree add /tmp/before HEAD~1
    (cd /tmp/before && python -m symbn codegen --model layernorm -o /tmp/before.py)
    symbn codegen --model layernorm -o /tmp/after.py
    python scripts/bench_compare.py /tmp/before.py /tmp/after.py --model layernorm

Interleaved calls (before, after, before, ...), medians of --repeats after one warm-up call
each; shapes and inputs as scripts/bench_numeric.py's for the row models; --out passes
out= (a buffer for the element gradient), as the numba+out column of bench_numeric.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import numpy as np

SHAPES = [(4096, 1024), (32768, 256), (256, 4096)]


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench_compare: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _difference(a, b) -> str:
    if all(np.array_equal(x, y) for x, y in zip(a, b)):
        return "bit-identical"
    scale = max(float(np.max(np.abs(np.asarray(x, np.float64)))) for x in a) or 1.0
    worst = max(float(np.max(np.abs(np.asarray(x, np.float64) - y))) for x, y in zip(a, b))
    return f"differ by {worst / scale:.1e}"


def compare(before, after, model: str, repeats: int, out: bool = False) -> None:
    fns = [getattr(m, f"{model.replace('-', '_')}_backward") for m in (before, after)]
    print("| rows x N | dtype | ms before | ms after | after / before | results |")
    print("|---|---:|---:|---:|---:|---|")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for shape in SHAPES:
            X, dY = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
            gamma = rng.standard_normal(shape[-1]).astype(dtype)
            kw = [{"out": np.empty_like(X)} if out else {} for _ in fns]
            first = [[np.array(r) for r in fn(dY, X, gamma, **k)] for fn, k in zip(fns, kw)]
            same = _difference(*first)
            del first
            times: list[list[float]] = [[], []]
            for _ in range(repeats):
                for k, fn in enumerate(fns):
                    start = time.perf_counter()
                    fn(dY, X, gamma, **kw[k])
                    times[k].append(time.perf_counter() - start)
            ms = [1e3 * statistics.median(t) for t in times]
            print(f"| {shape[0]} x {shape[1]} | {np.dtype(dtype).name} | {ms[0]:.3f} | "
                  f"{ms[1]:.3f} | {ms[1] / ms[0]:.2f} | "
                  f"{same} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="generated module (the baseline)")
    parser.add_argument("after", help="generated module (the change)")
    parser.add_argument("--model", default="layernorm", choices=["layernorm", "rmsnorm"])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", action="store_true", help="pass out= for the element gradient")
    args = parser.parse_args(argv)
    compare(load(args.before, "before"), load(args.after, "after"), args.model, args.repeats,
            args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
