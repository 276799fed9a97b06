"""Accuracy and speed of the generated backward (BatchNorm, LayerNorm, RMSNorm) against real
references.

--model batchnorm (the default):

Accuracy: max|err| / max|ref| of dX, dgamma, dbeta against a 50-digit mpmath evaluation of
the closed form (written out here, independent of the generated code) on the same rounded
inputs, N = 256, D = 64; "normal" X ~ N(0, 1), "hard" X = 1e4 + N(0, 1e-2).

Speed: one process, candidates interleaved, median of --repeats after warm-up: generated
NumPy (allocating, and with out=/scratch= buffers), generated numba (allocating, with out=,
and with out= on one thread), a straightforward ("textbook") hand-written NumPy backward,
torch CPU forward+backward and backward only (2 threads), and a memory-bandwidth floor
(1.5 x the time of np.copyto of one array: reading X and dY and writing dX is 1.5 copies).

--model layernorm / rmsnorm: the NumPy and numba modules generated from the model (reduction
along the last axis, X of shape (rows, N)).  Accuracy: max|err| / max|ref| of dX (and dgamma,
dbeta) against a 40-digit mpmath evaluation of the textbook gradient (written out here) on 8
rows of N = 256, for the generated modules and torch.  Speed as above, for the generated
NumPy backward (allocating), the numba backward (allocating, and with out=), torch
layer_norm / rms_norm forward+backward and backward only, and the floor;
shapes (rows, N) = (4096, 1024), (32768, 256), (256, 4096), or with --small a quarter of the
rows: (1024, 1024), (8192, 256), (64, 4096).  Tables in Markdown.

    python scripts/bench_numeric.py [--model batchnorm|layernorm|rmsnorm] [--small]
                                    [--torch-threads 2] [--repeats 20]
                                    [--skip-precision] [--skip-speed]
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

def import_torch():
    """torch, its version printed, or None with the install hint."""
    try:
        import torch
    except ImportError:
        print("torch not installed: pip install torch==2.13.0")
        return None
    print(f"torch {torch.__version__}")
    return torch


def interleaved_medians(runs: dict, repeats: int) -> dict[str, float]:
    """Median ms of each callable, run interleaved after 3 warm-up rounds; the copy run
    becomes the floor (1.5 x one copy: read X, write the result)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
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
    return ms


def load_generated(target: str, directory: str, model: str = "batchnorm"):
    from symbn.codegen import generate, write

    name = "bn" if model == "batchnorm" else model
    path = os.path.join(directory, f"{name}_{target}.py")
    write(generate(target, model=None if model == "batchnorm" else model), path)
    spec = importlib.util.spec_from_file_location(f"{name}_{target}", path)
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

def speed(candidates: dict, repeats: int, shapes=SHAPES, note: str = "",
          torch_threads: int = 2) -> None:
    """Candidates take (dY, X, gamma, out, scratch); `out`/`scratch` are None or buffers."""
    import torch

    torch.set_num_threads(torch_threads)
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
            ms = interleaved_medians(runs, repeats)
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


# -- LayerNorm and RMSNorm (--model): reduction along the last axis ------------------------

MODEL_SHAPES = [(4096, 1024), (32768, 256), (256, 4096)]
MODEL_SHAPES_SMALL = [(1024, 1024), (8192, 256), (64, 4096)]
GRADS = {"layernorm": ("dX", "dgamma", "dbeta"), "rmsnorm": ("dX", "dgamma")}


def mpmath_row_backward(model, dY, X, gamma, eps=EPS, dps=40):
    """The textbook gradient of LayerNorm / RMSNorm per row, in `dps`-digit arithmetic:
    r = sqrt(mean(xc**2) + eps), xhat = xc/r, g = dY*gamma (xc = x - mean(x) for LayerNorm,
    x for RMSNorm), dX = (g - mean(g) - xhat*mean(g*xhat))/r (no mean(g) for RMSNorm),
    dgamma = sum over rows of dY*xhat, dbeta = sum over rows of dY."""
    import mpmath

    mpmath.mp.dps = dps
    rows, N = X.shape
    e = mpmath.mpf(float(eps))
    gm = [mpmath.mpf(float(t)) for t in gamma]
    dX = np.empty((rows, N))
    dg, db = [mpmath.mpf(0)] * N, [mpmath.mpf(0)] * N
    for i in range(rows):
        x = [mpmath.mpf(float(t)) for t in X[i]]
        dy = [mpmath.mpf(float(t)) for t in dY[i]]
        mu = mpmath.fsum(x) / N if model == "layernorm" else 0
        xc = [t - mu for t in x]
        r = mpmath.sqrt(mpmath.fsum([t * t for t in xc]) / N + e)
        xhat = [t / r for t in xc]
        g = [a * b for a, b in zip(dy, gm)]
        mean_g = mpmath.fsum(g) / N if model == "layernorm" else 0
        mean_gx = mpmath.fsum([a * b for a, b in zip(g, xhat)]) / N
        for j in range(N):
            dX[i, j] = float((g[j] - mean_g - xhat[j] * mean_gx) / r)
            dg[j] += dy[j] * xhat[j]
            db[j] += dy[j]
    grads = (dX, np.array([float(t) for t in dg]), np.array([float(t) for t in db]))
    return grads[:len(GRADS[model])]


def torch_call(model, x, g, b):
    import torch

    if model == "layernorm":
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), g, b, eps=EPS)
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), g, eps=EPS)


def torch_leaves(model, X, gamma):
    import torch

    x = torch.tensor(X, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True) if model == "layernorm" else None
    return x, g, b, tuple(t for t in (x, g, b) if t is not None)


def torch_model_backward(model, dY, X, gamma):
    import torch

    x, g, b, leaves = torch_leaves(model, X, gamma)
    grads = torch.autograd.grad(torch_call(model, x, g, b), leaves, torch.tensor(dY))
    return tuple(t.numpy() for t in grads)


def md_table(head, rows) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if k == 0 else "---:" for k in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def model_precision(model: str, backward, fused=None) -> bool:
    """Markdown table of max|err| / max|ref| against mpmath; True if the dX targets hold
    (for the NumPy module and, if given, the numba module's backward `fused`)."""
    rows, ok = [], True
    shape = (8, 256)
    names = GRADS[model]
    for kind in ("normal", "hard"):
        for dtype in (np.float32, np.float64):
            dY, X, gamma = inputs(kind, dtype, shape)
            ref = mpmath_row_backward(model, dY, X, gamma)
            row = [kind, np.dtype(dtype).name]
            runs = [backward] + [fused] * (fused is not None)
            got = [fn(dY, X, gamma, EPS) for fn in runs]
            got.append(torch_model_backward(model, dY, X, gamma))
            for grads in got:
                errs = [relerr(a, r) for a, r in zip(grads, ref)]
                row += [f"{errs[0]:.1e}", " / ".join(f"{e:.1e}" for e in errs[1:])]
            target = 1e-5 if dtype == np.float32 else 1e-13
            if kind == "hard":
                ok = ok and all(float(row[k]) <= target for k in range(2, 2 * len(runs) + 1, 2))
            rows.append(row + [f"{target:.0e}"])
    print(f"**{model}: precision**, max|err| / max|ref| against 40-digit mpmath on the same "
          f"rounded inputs, {shape[0]} rows x N = {shape[1]}; normal: X ~ N(0, 1), "
          "hard: X = 1e4 + N(0, 1e-2); dY, gamma ~ N(0, 1); eps = 1e-5")
    print()
    rest = " / ".join(names[1:])
    head = ["inputs", "dtype", "numpy dX", f"numpy {rest}"]
    head += ["numba dX", f"numba {rest}"] * (fused is not None)
    md_table(head + ["torch dX", f"torch {rest}", "dX target"], rows)
    return ok


def model_speed(model: str, backward, repeats: int, shapes, torch_threads: int = 2,
                fused=None) -> list[bool]:
    """Markdown table of medians and ratios; [numpy <= 2 x torch f+b everywhere] and, with
    the numba backward `fused`, [numba < torch f+b, numba+out <= 2 x floor everywhere]."""
    import torch

    torch.set_num_threads(torch_threads)
    names = ["numpy"] + ["numba", "numba+out"] * (fused is not None) + \
        ["torch f+b", "torch bwd", "floor"]
    rows, ok, fast, floor = [], True, True, True
    for dtype in (np.float32, np.float64):
        for shape in shapes:
            dY, X, gamma = inputs("normal", dtype, shape)
            x, g, b, leaves = torch_leaves(model, X, gamma)
            tdy = torch.tensor(dY)
            y_kept = torch_call(model, x, g, b)
            scratch = np.empty_like(X)

            def torch_fwd_bwd(x=x, g=g, b=b, leaves=leaves, tdy=tdy):
                torch.autograd.grad(torch_call(model, x, g, b), leaves, tdy)

            def torch_bwd(y=y_kept, leaves=leaves, tdy=tdy):
                torch.autograd.grad(y, leaves, tdy, retain_graph=True)

            runs = {"numpy": lambda a=(dY, X, gamma, EPS): backward(*a)}
            if fused is not None:
                out = np.empty_like(X)
                runs["numba"] = lambda a=(dY, X, gamma, EPS): fused(*a)
                runs["numba+out"] = lambda a=(dY, X, gamma, EPS), o=out: fused(*a, out=o)
            runs.update({"torch f+b": torch_fwd_bwd, "torch bwd": torch_bwd,
                         "copy": lambda s=scratch, a=X: np.copyto(s, a)})
            ms = interleaved_medians(runs, repeats)
            vs_torch = ms["numpy"] / ms["torch f+b"]
            ok = ok and vs_torch <= 2
            ratios = [vs_torch, ms["numpy"] / ms["floor"]]
            if fused is not None:
                ratios += [ms["numba"] / ms["torch f+b"], ms["numba+out"] / ms["floor"]]
                fast, floor = fast and ratios[2] < 1, floor and ratios[3] <= 2
            rows.append([f"{shape[0]} x {shape[1]}", np.dtype(dtype).name]
                        + [f"{ms[n]:.3f}" for n in names] + [f"{r:.2f}" for r in ratios])
    print(f"**{model}: speed**, median ms of {repeats} interleaved repeats after 3 warm-up "
          f"rounds; numpy, numba = the generated `{model}_backward` (allocating; numba+out: "
          "with out=, numba on 2 threads from 2**17 elements on); torch "
          f"`{'layer_norm' if model == 'layernorm' else 'rms_norm'}` on "
          f"{torch.get_num_threads()} thread(s), f+b = forward + autograd.grad, bwd = "
          "autograd.grad(retain_graph=True) of a kept forward; floor = 1.5 x np.copyto(X)")
    print()
    head = ["numpy / torch f+b", "numpy / floor"]
    head += ["numba / torch f+b", "numba+out / floor"] * (fused is not None)
    md_table(["rows x N", "dtype"] + [f"ms {n}" for n in names] + head, rows)
    return [ok] + [fast, floor] * (fused is not None)


def run_model(model: str, args) -> int:
    if import_torch() is None:
        return 1
    print()
    fused = None
    with tempfile.TemporaryDirectory() as tmp:
        gen = load_generated("numpy", tmp, model)
        try:
            import numba

            fused = getattr(load_generated("numba", tmp, model), f"{model}_backward")
            numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
            print(f"numba {numba.__version__}\n")
        except ImportError:
            print("numba not installed: the fused target is skipped\n")
    backward = getattr(gen, f"{model}_backward")
    if not args.skip_precision:
        ok = model_precision(model, backward, fused)
        print(f"precision target (hard inputs, generated dX: float32 <= 1e-5, float64 <= "
              f"1e-13): {'holds' if ok else 'MISSED'}")
        print()
    if not args.skip_speed:
        start = time.perf_counter()
        oks = model_speed(model, backward, args.repeats,
                          MODEL_SHAPES_SMALL if args.small else MODEL_SHAPES,
                          args.torch_threads, fused)
        names = ["numpy <= 2 x torch f+b", "numba < torch f+b", "numba+out <= 2 x floor"]
        print("speed targets, every row: " + ", ".join(
            f"{n}: {'holds' if k else 'MISSED'}" for n, k in zip(names, oks))
            + f"  ({time.perf_counter() - start:.0f} s)")
        print()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--model", default="batchnorm",
                        choices=("batchnorm", "layernorm", "rmsnorm"))
    parser.add_argument("--torch-threads", type=int, default=2,
                        help="torch.set_num_threads for the speed runs (default 2; on a "
                        "loaded machine 2 threads can be much slower than 1)")
    parser.add_argument("--small", action="store_true",
                        help="layernorm / rmsnorm: a quarter of the rows in every shape")
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}")
    if args.model != "batchnorm":
        return run_model(args.model, args)
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
        torch = import_torch()
        if torch is None:
            return 1
        print()
        if not args.skip_precision:
            accurate = {"generated numpy": gen.batchnorm_backward,
                        "textbook numpy": straightforward_backward, "torch": torch_backward}
            if "numba" in candidates:
                accurate["generated numba"] = fused.batchnorm_backward
            precision(accurate)
        if not args.skip_speed:
            speed(candidates, args.repeats, note=note, torch_threads=args.torch_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
