"""Whether NumPy code gets a second core from Python threads: the throughput of two threads
against one thread doing the same calls in turn, for the operations a generated row kernel
makes on one block (16 rows x 4096, float32, the one-row ufunc buffer), and for the generated
backward itself (each thread on its own arrays); beside each operation, whether it releases
the GIL (how far a counting Python thread gets while the operation runs in a loop, against
the counter alone: about 1 when the GIL is released, about 0.5 when it is held and the two
share it by the switch interval); last, the speedup of an element-wise product by its size.

    symbn codegen --model layernorm -o /tmp/ln.py
    python scripts/bench_threads.py /tmp/ln.py --model layernorm

A speedup of 2 is two cores' worth; 1 is none (the calls run one after the other).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
from bench_compare import load

ROWS, N = 16, 4096


def speedup(work, calls: int) -> float:
    """One thread making 2 * calls calls, over two threads making `calls` calls each."""
    work(0, 2)
    start = time.perf_counter()
    work(0, 2 * calls)
    one = time.perf_counter() - start
    threads = [threading.Thread(target=work, args=(k, calls)) for k in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return one / (time.perf_counter() - start)


def operations(calls: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    A, B, O = ([rng.random((ROWS, N), np.float32) for _ in range(2)] for _ in range(3))
    S = [rng.random((3, ROWS, N), np.float32) for _ in range(2)]
    C = [rng.random((ROWS, 1, 3), np.float32) for _ in range(2)]
    g, c = rng.random(N, np.float32), rng.random(ROWS, np.float32)
    ops = {
        "multiply by a row (element-wise)": lambda k: np.multiply(A[k], g, out=O[k]),
        "subtract a column (element-wise)": lambda k: np.subtract(A[k], A[k][:, :1], out=O[k]),
        "row dots (vecdot)": lambda k: np.vecdot(A[k], B[k]),
        "row dots (einsum)": lambda k: np.einsum("ij,ij->i", A[k], B[k]),
        "matrix @ vector (OpenBLAS)": lambda k: A[k] @ g,
        "matrix @ vector (numpy.dot)": lambda k: np.dot(A[k], g),
        "vector @ matrix (OpenBLAS)": lambda k: c @ A[k],
        "batched matmul (combine)": lambda k: np.matmul(C[k], S[k].transpose(1, 0, 2),
                                                        out=O[k].reshape(ROWS, 1, N)),
    }
    rows = []
    for name, op in ops.items():
        def work(k, n, op=op):
            np.setbufsize(N)
            for _ in range(n):
                op(k)
        rows.append((name, speedup(work, calls), gil_free(lambda op=op: op(0))))
    return rows


def gil_free(op, seconds: float = 0.3) -> float:
    """How far a counting Python thread gets while `op` runs in a loop, against alone."""
    def count(stop, out):
        c = 0
        while not stop:
            c += 1
        out.append(c)

    counts = []
    for busy in (False, True):
        stop, out = [], []
        thread = threading.Thread(target=count, args=(stop, out))
        thread.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if busy:
                op()
            else:
                time.sleep(0.01)
        stop.append(True)
        thread.join()
        counts.append(out[0])
    return counts[1] / counts[0]


def by_size(calls: int) -> list[tuple[int, float]]:
    """The speedup of numpy.multiply(a, a, out=o) by the number of elements per call."""
    rows = []
    for size in (16384, 65536, 262144, 1048576):
        arrays = [(np.ones(size, np.float32), np.empty(size, np.float32)) for _ in range(2)]

        def work(k, n, arrays=arrays):
            a, o = arrays[k]
            for _ in range(n):
                np.multiply(a, a, out=o)
        rows.append((size, speedup(work, max(10, calls * 65536 // size))))
    return rows


def backward(module, model: str, shape, calls: int) -> float:
    fn = getattr(module, f"{model.replace('-', '_')}_backward")
    rng = np.random.default_rng(1)
    data = [(rng.standard_normal(shape, np.float32), rng.standard_normal(shape, np.float32),
             rng.standard_normal(shape[-1], np.float32)) for _ in range(2)]

    def work(k, n):
        dY, X, gamma = data[k]
        for _ in range(n):
            fn(dY, X, gamma)
    return speedup(work, calls)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="a generated NumPy module of a row model")
    parser.add_argument("--model", default="layernorm", choices=["layernorm", "rmsnorm"])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    module = load(args.module, "generated")
    print(f"| two threads against one ({ROWS} x {N} float32 per call) | speedup | "
          "Python progress while it runs |")
    print("|---|---:|---:|")
    for name, x, free in operations(args.calls):
        print(f"| {name} | {x:.2f} | {free:.2f} |")
    for shape in [(ROWS, N), (256, N)]:
        x = backward(module, args.model, shape, max(10, args.calls // shape[0]))
        print(f"| generated {args.model}_backward, {shape[0]} x {shape[1]} | {x:.2f} | |")
    print("\n| numpy.multiply, float32 elements per call | speedup |")
    print("|---:|---:|")
    for size, x in by_size(args.calls):
        print(f"| {size} | {x:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
