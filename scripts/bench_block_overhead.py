"""How much of a generated NumPy row kernel's time is the cost of its calls rather than its
data: the backward on (rows, N) against the same loop, the same number of blocks, on rows of
16 elements (next to no data), in one process, interleaved, medians.

    symbn codegen --model layernorm -o /tmp/ln.py
    python scripts/bench_block_overhead.py /tmp/ln.py --model layernorm
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from bench_compare import load


def timings(fn, module, full, thin, gamma, block: int, repeats: int) -> tuple[float, float]:
    """Median seconds of the backward on `full` and on `thin` run with `full`'s blocks."""
    real = module._block_rows

    def run_full():
        fn(full[0], full[1], gamma)

    def run_thin():
        module._block_rows = lambda X: block
        try:
            fn(thin[0], thin[1], gamma[:16])
        finally:
            module._block_rows = real

    times: dict = {run_full: [], run_thin: []}
    for _ in range(3):
        run_full(), run_thin()
    for _ in range(repeats):
        for f, t in times.items():
            start = time.perf_counter()
            f()
            t.append(time.perf_counter() - start)
    a, b = (statistics.median(t) for t in times.values())
    return a, b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="a generated NumPy module of a row model")
    parser.add_argument("--model", default="layernorm", choices=["layernorm", "rmsnorm"])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    module = load(args.module, "generated")
    fn = getattr(module, f"{args.model}_backward")
    rng = np.random.default_rng(0)
    print("| dtype | blocks | ms full rows | ms 16-element rows | calls / full |")
    print("|---|---:|---:|---:|---:|")
    for dtype in (np.float32, np.float64):
        full = [rng.standard_normal((args.rows, args.n)).astype(dtype) for _ in range(2)]
        thin = [a[:, :16].copy() for a in full]
        gamma = rng.standard_normal(args.n).astype(dtype)
        block = module._block_rows(full[1])
        a, b = timings(fn, module, full, thin, gamma, block, args.repeats)
        blocks = -(-args.rows // block)
        print(f"| {np.dtype(dtype).name} | {blocks} | {a * 1e3:.3f} | {b * 1e3:.3f} | "
              f"{b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
