"""Accuracy and speed of the generated BatchNorm backward against real references.

Accuracy: max|err| / max|ref| of dX, dgamma, dbeta against a 50-digit mpmath evaluation of
the closed form (written out here, independent of the generated code) on the same rounded
inputs, N = 256, D = 64; "normal" X ~ N(0, 1), "hard" X = 1e4 + N(0, 1e-2).

Speed: one process, candidates interleaved, median of --repeats after warm-up: generated
NumPy (allocating, and with out=/scratch= buffers), generated numba (allocating, with out=,
and with out= on one thread), a straightforward ("textbook") hand-written NumPy backward,
torch CPU forward+backward and backward only (2 threads), and a memory-bandwidth floor
(1.5 x the time of np.copyto of one array: reading X and dY and writing dX is 1.5 copies).

    python scripts/bench_numeric.py [--repeats 20] [--skip-precision] [--skip-speed]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = [(256, 1024), (4096, 1024), (32768, 256)]
EPS = 1e-5


# -- references ---------------------------------------------------------------------------

def straightforward_backward(dY, X, gamma, eps=EPS):
    """The textbook NumPy backward: recompute the forward, then the staged gradient."""
    N = X.shape[0]
    mu = X.mean(axis=0)
    xmu = X - mu
    var = (xmu ** 2).mean(axis=0)
    istd = 1.0 / np.sqrt(var + eps)
    xhat = xmu * istd
    dbeta = dY.sum(axis=0)
    dgamma = (dY * xhat).sum(axis=0)
    dxhat = dY * gamma
    dX = (istd / N) * (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dX.astype(X.dtype), dgamma.astype(X.dtype), dbeta.astype(X.dtype)


def mpmath_backward(dY, X, gamma, eps=EPS, dps=50):
    """The note's closed form per column in `dps`-digit arithmetic, from the same floats."""
    import mpmath

    mpmath.mp.dps = dps
    N, C = X.shape
    dX, dg, db = np.empty((N, C)), np.empty(C), np.empty(C)
    e = mpmath.mpf(float(eps))
    for c in range(C):
        x = [mpmath.mpf(float(t)) for t in X[:, c]]
        g = [mpmath.mpf(float(t)) for t in dY[:, c]]
        mu = mpmath.fsum(x) / N
        xc = [t - mu for t in x]
        sigma = mpmath.sqrt(mpmath.fsum([t * t for t in xc]) / N + e)
        mean_dy = mpmath.fsum(g) / N
        mean_xdy = mpmath.fsum([a * b for a, b in zip(xc, g)]) / N
        gm = mpmath.mpf(float(gamma[c]))
        for i in range(N):
            dX[i, c] = float(gm / sigma * (g[i] - mean_dy - xc[i] / sigma ** 2 * mean_xdy))
        dg[c] = float(mean_xdy * N / sigma)
        db[c] = float(mean_dy * N)
    return dX, dg, db


def inputs(kind, dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(shape)
    if kind == "hard":
        X = 1e4 + 1e-2 * X
    dY, gamma = rng.standard_normal(shape), rng.standard_normal(shape[1])
    return dY.astype(dtype), X.astype(dtype), gamma.astype(dtype)


def relerr(got, ref) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref)))


def torch_backward(dY, X, gamma, eps=EPS):
    import torch

    x = torch.tensor(X, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, g, b, training=True, eps=eps)
    dx, dg, db = torch.autograd.grad(y, (x, g, b), torch.tensor(dY))
    return dx.numpy(), dg.numpy(), db.numpy()


# -- generated modules ----------------------------------------------------------------------

def load_generated(target: str, directory: str):
    from symbn.codegen import generate, write

    path = os.path.join(directory, f"bn_{target}.py")
    write(generate(target), path)
    spec = importlib.util.spec_from_file_location(f"bn_{target}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def precision(candidates: dict) -> None:
    print("max|err| / max|ref| against 50-digit mpmath, N = 256, D = 64 (dX / dgamma / dbeta)")
    print(f"{'inputs':<16}" + "".join(f"{name:>34}" for name in candidates))
    for kind in ("normal", "hard"):
        for dtype in (np.float32, np.float64):
            dY, X, gamma = inputs(kind, dtype, (256, 64))
            ref = mpmath_backward(dY, X, gamma)
            row = f"{kind + ' ' + np.dtype(dtype).name:<16}"
            for fn in candidates.values():
                got = fn(dY, X, gamma)
                row += "{:>34}".format(" / ".join(f"{relerr(a, r):.1e}" for a, r in zip(got, ref)))
            print(row)
    print()


# -- speed ----------------------------------------------------------------------------------

def speed(candidates: dict, repeats: int, shapes=SHAPES, note: str = "") -> None:
    """Candidates take (dY, X, gamma, out, scratch); `out`/`scratch` are None or buffers."""
    import torch

    torch.set_num_threads(2)
    print(f"median ms of {repeats} interleaved repeats after warm-up "
          f"(torch: {torch.get_num_threads()} threads{note})")
    names = list(candidates) + ["torch f+b", "torch bwd", "floor"]
    print(f"{'shape':<19}" + "".join(f"{n:>11}" for n in names))
    ratios = []
    for dtype in (np.float32, np.float64):
        for shape in shapes:
            dY, X, gamma = inputs("normal", dtype, shape)
            x = torch.tensor(X, requires_grad=True)
            g = torch.tensor(gamma, requires_grad=True)
            b = torch.zeros_like(g, requires_grad=True)
            tdy = torch.tensor(dY)
            y_kept = torch.nn.functional.batch_norm(x, None, None, g, b, training=True, eps=EPS)
            out, scratch = np.empty_like(X), np.empty_like(X)

            def torch_fwd_bwd(x=x, g=g, b=b, tdy=tdy):
                y = torch.nn.functional.batch_norm(x, None, None, g, b, training=True, eps=EPS)
                torch.autograd.grad(y, (x, g, b), tdy)

            def torch_bwd(y=y_kept, x=x, g=g, b=b, tdy=tdy):
                torch.autograd.grad(y, (x, g, b), tdy, retain_graph=True)

            runs = {name: (lambda fn=fn, a=(dY, X, gamma, out, scratch): fn(*a))
                    for name, fn in candidates.items()}
            runs["torch f+b"], runs["torch bwd"] = torch_fwd_bwd, torch_bwd
            runs["copy"] = lambda s=scratch, a=X: np.copyto(s, a)
            times = {name: [] for name in runs}
            for _ in range(3):
                for fn in runs.values():
                    fn()
            for _ in range(repeats):
                for name, fn in runs.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
            ms["floor"] = 1.5 * ms.pop("copy")
            label = f"{shape[0]}x{shape[1]} {np.dtype(dtype).name}"
            print(f"{label:<19}" + "".join(f"{ms[n]:>11.3f}" for n in names))
            row = [label, ms["numpy"] / ms["textbook"], ms["numpy"] / ms["torch f+b"]]
            if "numba" in ms:
                row += [ms["numba"] / ms["torch f+b"], ms["numba+out"] / ms["floor"],
                        ms["numba"] / ms["floor"], ms["numba 1thr"] / ms["floor"]]
            ratios.append(row)
    print()
    print("ratios (targets: numpy/textbook <= 0.7, numpy/torch f+b <= 2, "
          "numba/torch f+b < 1, numba+out/floor <= 2)")
    head = ["numpy/textbook", "numpy/torch f+b", "numba/torch f+b", "numba+out/floor",
            "numba/floor", "1thr/floor"]
    print(f"{'shape':<19}" + "".join(f"{h:>17}" for h in head[:len(ratios[0]) - 1]))
    for label, *r in ratios:
        print(f"{label:<19}" + "".join(f"{v:>17.2f}" for v in r))
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        gen = load_generated("numpy", tmp)
        candidates = {
            "numpy": lambda dY, X, gamma, out, scratch: gen.batchnorm_backward(dY, X, gamma),
            "numpy+out": lambda dY, X, gamma, out, scratch: gen.batchnorm_backward(
                dY, X, gamma, out=out, scratch=scratch),
        }
        try:
            import numba

            fused = load_generated("numba", tmp)
            candidates["numba"] = lambda dY, X, gamma, out, scratch: \
                fused.batchnorm_backward(dY, X, gamma)
            candidates["numba+out"] = lambda dY, X, gamma, out, scratch: \
                fused.batchnorm_backward(dY, X, gamma, out=out)

            def one_thread(dY, X, gamma, out, scratch, default=fused.PARALLEL_MIN):
                fused.PARALLEL_MIN = None
                try:
                    return fused.batchnorm_backward(dY, X, gamma, out=out)
                finally:
                    fused.PARALLEL_MIN = default

            candidates["numba 1thr"] = one_thread
            numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
            note = (f"; numba: {numba.get_num_threads()} threads from {fused.PARALLEL_MIN} "
                    "elements on, 'numba 1thr': one")
            print(f"numba {numba.__version__}")
        except ImportError:
            note = ""
            print("numba not installed: the fused target is skipped")
        candidates["textbook"] = lambda dY, X, gamma, out, scratch: \
            straightforward_backward(dY, X, gamma)
        try:
            import torch

            print(f"torch {torch.__version__}")
        except ImportError:
            print("torch not installed: pip install torch==2.13.0")
            return 1
        print()
        if not args.skip_precision:
            accurate = {"generated numpy": gen.batchnorm_backward,
                        "textbook numpy": straightforward_backward, "torch": torch_backward}
            if "numba" in candidates:
                accurate["generated numba"] = fused.batchnorm_backward
            precision(accurate)
        if not args.skip_speed:
            speed(candidates, args.repeats, note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
