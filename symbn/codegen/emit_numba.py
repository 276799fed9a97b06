"""BatchNorm's fused numba module text: kernels over row chunks, one-pass shifted sums."""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..errors import SymbnError
from .emit_numpy import _CHECKS, ScalarPrinter, _header, _plan_lines
from .plan import BETA, DY, GAMMA, D, Plan, Z


def _numba_kernel(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """A fused kernel over row-major data: the shift mean, the reductions (per row chunk,
    tiled so a tile of rows is read from memory once), then the elements; rows in parallel,
    everything after the exact shift in float64.  A plan whose sums are all of Z = X - X[0]
    and dY reads the data once for every sum (see `_one_pass_kernel`)."""
    if not any(e.has(D) for _, e in plan.reductions) and not any(
            a == D for _, a in plan.element):
        return _one_pass_kernel(name, plan, arrays)
    p = ScalarPrinter()
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    args = ", ".join([f"{a}_" for a in arrays] + ["gamma_", "beta_", "eps", "out"] +
                     [f"{o}_" for o in outs] + ["chunks", "tile"])

    def rows(ind: str, lo: str, hi: str, body: list[str], need) -> list[str]:
        lines = [f"{ind}for i in range({lo}, {hi}):", f"{ind}    for c in range(C):"]
        if need.has(D):
            lines.append(f"{ind}        D = (X_[i, c] - K[c]) - m[c]")
        if need.has(DY):
            lines.append(f"{ind}        dY = dY_[i, c]")
        return lines + [f"{ind}        {line}" for line in body]

    L = ["", "", f"def {name}({args}):",
         "    N, C = X_.shape",
         "    step = -(-N // chunks)",
         "    K = numpy.empty(C)",
         "    for c in range(C):",
         "        K[c] = X_[0, c]",
         "    m = numpy.zeros(C)",
         "    P = numpy.zeros((chunks, C))",
         "    for t in numba.prange(chunks):",
         "        p = P[t]",
         "        for i in range(t * step, min(N, (t + 1) * step)):",
         "            for c in range(C):",
         "                p[c] += X_[i, c] - K[c]",
         "    for t in range(chunks):",
         "        for c in range(C):",
         "            m[c] += P[t, c]",
         "    for c in range(C):",
         "        m[c] /= N"]
    L += [f"    S{s} = numpy.zeros((chunks, C))" for s in red]
    L += ["    for t in numba.prange(chunks):",
          "        for i0 in range(t * step, min(N, (t + 1) * step), tile):",
          "            i1 = min(N, (t + 1) * step, i0 + tile)"]
    for s, e in plan.reductions:  # one loop per sum: several accumulators defeat vectorising
        L += [f"            a = S{s}[t]"]
        L += rows("            ", "i0", "i1", [f"a[c] += {p.doprint(e)}"], e)

    def loads(ind: str, need) -> list[str]:
        lines = []
        if any(e.has(D) for e in need):
            lines.append(f"{ind}D = (X_[i, c] - K[c]) - m[c]")
        if any(e.has(DY) for e in need):
            lines.append(f"{ind}dY = dY_[i, c]")
        return lines

    return L + _kernel_tail(plan, p, loads)


def _one_pass_kernel(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """The kernel for a plan of shifted sums: one streaming pass over the rows accumulates
    every sum in float64, then one pass writes the elements.  Z = X - X[0] is exact in the
    input precision when the rows are close (Sterbenz), so the sums lose nothing to the
    offset; the cancellation left, ColSum(Z**2) - ColSum(Z)**2/N, is relative to the spread
    of Z around X[0], not around zero.

    The sums pass reads four rows a quarter of the chunk apart and adds their terms before
    touching the accumulators: each accumulator is loaded and stored once per four rows, and
    X and dY are read as eight sequential streams (four adjacent rows instead measured up to
    twice as slow on tall arrays, 32768 x 256).  Unsigned row and column indices spare numba's
    negative-index wraparound, without which a column loop starting at a nonzero column
    measured up to three times slower."""
    p = ScalarPrinter()
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    args = ", ".join([f"{a}_" for a in arrays] + ["gamma_", "beta_", "eps", "out"] +
                     [f"{o}_" for o in outs] + ["chunks", "tile"])
    summands = [e for _, e in plan.reductions]

    def loads(ind: str, need, k: str = "", row: str = "i") -> list[str]:
        lines = []
        if any(e.has(Z) for e in need):
            lines.append(f"{ind}Z{k} = X_[{row}, c] - K[c]")
        if any(e.has(DY) for e in need):
            lines.append(f"{ind}dY{k} = numpy.float64(dY_[{row}, c])")
        return lines

    def term(e: sp.Expr, k: int) -> str:
        e = e.xreplace({Z: sp.Symbol(f"Z{k}"), DY: sp.Symbol(f"dY{k}")})
        return p.parenthesize(e, PRECEDENCE["Add"], strict=True)

    L = ["", "", f"def {name}({args}):",
         "    N, C = X_.shape",
         "    step = -(-N // chunks)",
         "    u = numba.uint64",
         "    K = numpy.empty(C)",
         "    for c in range(C):",
         "        K[c] = X_[0, c]"]
    L += [f"    S{s} = numpy.zeros((chunks, C))" for s in red]
    # blocks of 32 rows per quarter summed apart, then added: the rounding error of a sum
    # grows with about 32 + N/128 additions instead of N, which matters because
    # ColSum(Z**2) - ColSum(Z)**2/N magnifies it
    L += ["    for t in numba.prange(chunks):",
          "        lo = t * step",
          "        rows = max(0, min(N, lo + step) - lo)",
          "        q = rows // 4",
          "        q1, q2, q3 = u(q), u(2 * q), u(3 * q)"]
    L += [f"        a{s} = S{s}[t]" for s in red]
    L += [f"        b{s} = numpy.empty(C)" for s in red]
    L += ["        for r0 in range(lo, lo + q, 32):"]
    L += [f"            b{s}[:] = 0.0" for s in red]
    L += ["            for r in range(u(r0), u(min(lo + q, r0 + 32))):",
          "                for c in range(u(C)):"]
    for k, row in enumerate(["r", "r + q1", "r + q2", "r + q3"]):
        L += loads("                    ", summands, str(k), row)
    L += [f"                    b{s}[c] += ({term(e, 0)} + {term(e, 1)}) + "
          f"({term(e, 2)} + {term(e, 3)})" for s, e in plan.reductions]
    L += ["            for c in range(C):"]
    L += [f"                a{s}[c] += b{s}[c]" for s in red]
    L += ["        for i in range(lo + 4 * q, lo + rows):  # the last rows % 4 rows",
          "            for c in range(C):"]
    L += loads("                ", summands)
    L += [f"                a{s}[c] += {p.doprint(e)}" for s, e in plan.reductions]
    return L + _kernel_tail(plan, p, loads)


def _kernel_tail(plan: Plan, p, loads) -> list[str]:
    """Both kernels' end: the per-column coefficients from the chunk sums, then one pass
    writing the elements (`loads` emits the per-element reads they need)."""
    red = [s for s, _ in plan.reductions]
    outs = list(plan.column_outputs.values())
    coefs = [c for c, _ in plan.element] + ([plan.const] if plan.const else [])
    L = [f"    A{c} = numpy.empty(C)" for c in coefs]
    used = set().union(*[e.free_symbols for _, e in plan.columns])
    L += ["    for c in range(C):"]
    L += [f"        {g} = {g}_[c]" for g in (GAMMA, BETA) if g in used]
    L += [f"        {s} = 0.0" for s in red]
    L += ["        for t in range(chunks):"]
    L += [f"            {s} += S{s}[t, c]" for s in red]
    L += [f"        {s} = {p.doprint(e)}" for s, e in plan.columns]
    L += [f"        A{c}[c] = {c}" for c in coefs]
    L += [f"        {o}_[c] = {o}" for o in outs]
    element = sp.Add(*[sp.Symbol(f"A{c}[c]") * a for c, a in plan.element])
    if plan.const is not None:
        element += sp.Symbol(f"A{plan.const}[c]")
    L += ["    for i in numba.prange(N):", "        for c in range(C):"]
    L += loads("            ", [element])
    L += [f"            out[i, c] = {p.doprint(element)}"]
    return L


def _kernel_variants(name: str, plan: Plan, arrays: list[str]) -> list[str]:
    """The kernel twice, as `{name}_serial` and `{name}_parallel`, two functions in the
    module's source, each jitted with numba's on-disk cache.  numba files a cached overload
    under the function's name, its first line and the signature, not the compile options:
    one function jitted both serially and with parallel=True would share one cache entry, and
    a new process would load the serial machine code for the parallel kernel or the reverse."""
    lines = []
    for variant, parallel in (("serial", False), ("parallel", True)):
        kernel = _numba_kernel(f"{name}_{variant}", plan, arrays)
        lines += kernel[:2] + [f"@_jit(parallel={parallel})"] + kernel[2:]
    return lines


_NUMBA_JIT = '''

# The kernels are compiled per dtype on their first call, and numba caches the machine code on
# disk: in __pycache__ beside this file, under NUMBA_CACHE_DIR when that is set, or in the
# user's cache directory (~/.cache/numba) when this directory is not writable.  A later process
# loads it instead of compiling, until this file changes.  numba re-imports the module by name
# to load it, so the cache is used only when this module is imported under its file's name
# (`import batchnorm_fast`): loaded from a spec under another name, or not entered in
# sys.modules, it compiles in every process (a cache entry would fail to load).
_CACHE = (getattr(sys.modules.get(__name__), "__dict__", None) is globals()
          and __name__.rpartition(".")[2] == os.path.splitext(os.path.basename(__file__))[0])


def _jit(parallel):
    """numba.njit(parallel=...), with the on-disk cache when it can be used."""
    def decorate(kernel):
        global _CACHE
        options = {"parallel": parallel, "fastmath": False}
        if _CACHE:
            try:
                return numba.njit(cache=True, **options)(kernel)
            except RuntimeError:  # numba: "cannot cache function ...: no locator available"
                _CACHE = False  # warn once, not once per kernel
                warnings.warn(f"{__file__}: numba finds no writable directory to cache the "
                              "compiled kernels in, so every process compiles them on its "
                              "first call (seconds per dtype); set NUMBA_CACHE_DIR to a "
                              "writable directory", RuntimeWarning, stacklevel=3)
        return numba.njit(**options)(kernel)
    return decorate
'''


_NUMBA_WRAPPERS = '''

# From this many elements on, use numba.get_num_threads() threads (one row chunk each);
# None: always one thread.  On 2 cores two threads measured 0.6-0.8 x the time of one from
# 2**17 elements on (the sums and the dX pass are bound by memory bandwidth, which one core
# cannot saturate), 0.95 x at 2**16 and 1.3 x at 2**14.
PARALLEL_MIN = 1 << 17


def _plan(kernel, X):
    """(the serial or parallel kernel, row chunks (one per thread), rows per cache tile)."""
    N, C = X.shape
    threads = 1 if PARALLEL_MIN is None or X.size < PARALLEL_MIN else numba.get_num_threads()
    tile = max(1, (1 << 18) // (2 * C * X.itemsize))
    return kernel[threads > 1], max(1, min(N, threads)), tile


def batchnorm_forward(X, gamma, beta, eps=1e-5):
    """Y = gamma * (X - mu) / sqrt(v + eps) + beta, per column (batch statistics)."""
    X, gamma, eps, _ = _check([('X', X)], 'gamma', gamma, eps)
    beta = _as_float('beta', beta, 1, X.shape[1:], f'X {X.shape}').astype(numpy.float64)
    X = numpy.ascontiguousarray(X)
    out = numpy.empty_like(X)
    kernel, chunks, tile = _plan((_forward_serial, _forward_parallel), X)
    kernel(X, gamma, beta, eps, out, chunks, tile)
    return out


def batchnorm_backward(dY, X, gamma, eps=1e-5, out=None):
    """(dX, dgamma, dbeta): the gradients of f given dY = df/dY; dX is written to `out` if given."""
    dY, X, gamma, eps, dtype = _check([('dY', dY), ('X', X)], 'gamma', gamma, eps)
    N, C = X.shape
    out = _out(out, X)
    if N == 1:
        out[...] = 0
        return out, numpy.zeros(C, dtype), dY[0].copy()
    dY, X = numpy.ascontiguousarray(dY), numpy.ascontiguousarray(X)
    dgamma, dbeta = numpy.empty(C), numpy.empty(C)
    kernel, chunks, tile = _plan((_backward_serial, _backward_parallel), X)
    kernel(dY, X, gamma, gamma, eps, out, dgamma, dbeta, chunks, tile)
    return out, dgamma.astype(dtype), dbeta.astype(dtype)
'''


def _numba_module(all_plans: dict[str, Plan], proved: list[str]) -> str:
    b, f = all_plans["backward"], all_plans["forward"]
    if list(b.column_outputs) != ["dgamma", "dbeta"]:
        raise SymbnError("unexpected backward outputs; cannot emit numba kernels")
    lines = [_header("BatchNorm (training mode) forward and backward, fused numba loops.",
                     proved, _plan_lines(all_plans, fused=True),
                     "numpy and numba (pip install numba)",
                     ", out=None"),
             "import math",
             "import os",
             "import sys",
             "import warnings", "",
             "import numpy", "",
             "try:",
             "    import numba",
             "except ImportError as err:  # pragma: no cover",
             "    raise ImportError(\"this module needs numba: pip install 'symbn[numba]' \"",
             "                      \"or regenerate with --target numpy\") from err",
             _CHECKS.rstrip("\n"), _NUMBA_JIT.rstrip("\n")]
    lines += _kernel_variants("_forward", f, ["X"])
    lines += _kernel_variants("_backward", all_plans["fused"], ["dY", "X"])
    lines.append(_NUMBA_WRAPPERS.rstrip("\n"))
    lines.append("")
    return "\n".join(lines)
