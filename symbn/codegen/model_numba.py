"""Any model's fused numba module from its linear plan (`model_terms`), the kernels written
from the proved per-set sums, coefficients and Σ coefficient * monomial outputs.

Along the last axis each set is a contiguous row: one kernel call takes chunks of rows in
parallel (numba.prange), and per row reads the row (in cache) a few times without storing
anything of its size.  First the sums (a function jitted with fastmath={'reassoc'} only, so
that the sum loop vectorises) in one pass over _E = x - x[i, 0] (`model_terms.one_pass`: the
mean and each sum of D = _E - mean by the binomial theorem), or, for a row whose first element
is far from its mean, the mean and then the sums of D in two passes; then the coefficients;
then the along leaves' gradients, summed into one row of float64 per chunk four rows at a
time, with the element outputs of those rows in the same pass when the rows are long, else
in a pass per row.  Every pass computes D = (x - x[i, 0]) - mean from x again, in float64:
the shift is exact, and reassociation of a subtraction needs `nsz` besides `reassoc` in
LLVM, so the sums reorder their additions only.  Along axis 0 the kernel has BatchNorm's
shape (`emit_numba`): the column means and sums per chunk of rows (tiled), the per-column
coefficients, then the rows in parallel.  Everything after the exact shift is float64.

>>> from symbn.models import load
>>> from .model_plan import model_plan
>>> from .model_terms import linear_plan
>>> text = numba_module(linear_plan(model_plan(load("rmsnorm"))), ["(proofs)"])
>>> "def _backward_parallel(dY_, X_, gamma_, eps, dX_, dgamma_, _chunks, _fuse):" in text
True
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import precedence

from ..errors import SymbnError
from .emit_numba import _NUMBA_JIT
from .emit_numpy import ScalarPrinter
from .model_numpy import Api, _plan_lines, header, plan_api
from .model_plan import SCALAR_KINDS
from .model_terms import LinearPlan, OnePass
from .model_vector import OUT_NOTE
from .vector_runtime import NUMBA_RUNTIME

_NUMBA_IMPORTS = """import math
import os
import sys
import warnings

import numpy

try:
    import numba
except ImportError as err:  # pragma: no cover
    raise ImportError("this module needs numba: pip install 'symbn[numba]' "
                      "or regenerate with --target numpy") from err
"""


class KernelPrinter(ScalarPrinter):
    """ScalarPrinter with x**(k + 1/2) as (x**k*math.sqrt(x)): numba compiles a fractional
    power to a call of pow(), which costs more per row than a square root and a product.

    >>> KernelPrinter().doprint(sp.Symbol("s")/sp.Symbol("t")**sp.Rational(3, 2))
    's/(t*math.sqrt(t))'
    """

    def _print_Pow(self, expr, rational=False):
        e = expr.exp
        if e.is_Rational and e.q == 2 and e.p >= 3:
            k = (e.p - 1) // 2
            base = self.parenthesize(expr.base, precedence(expr), strict=True)
            power = base if k == 1 else f"{base}**{k}"
            return f"({power}*math.sqrt({self._print(expr.base)}))"
        return super()._print_Pow(expr, rational=rational)


class _Kernel:
    """One kernel's text for the output keys of one function (forward or backward)."""

    def __init__(self, lp: LinearPlan, api: Api, keys: list[str], which: str,
                 op: OnePass | None = None):
        self.lp, self.api, self.keys = lp, api, keys
        plan, m = lp.plan, lp.plan.model
        self.m, self.p = m, KernelPrinter()
        self.leaves = api.forward if which == "forward" else api.backward
        self.arrays = [api.array(a) for a in self.leaves
                       if m.leaves.get(a, "element") == "element"]
        self.along = [a for a in self.leaves if m.leaves.get(a) == "along"]
        self.sets = [a for a in self.leaves if m.leaves.get(a) == "set"]
        # the kernel's element array that is centred (or any, for the shape): X_ for x
        element = plan.centred or next(a for a in self.leaves if m.leaves.get(a) == "element")
        self.x = f"{api.array(element)}_"
        self.scalars = [a for a in self.leaves if m.leaves.get(a) in SCALAR_KINDS]
        self.assign = plan.forward if which == "forward" else plan.backward
        needed = set().union(*[sp.sympify(c).free_symbols for k in keys
                               for c, _ in lp.terms[k]])
        for s, e in reversed(self.assign):
            if s in needed:
                needed |= e.free_symbols
        self.needed = needed
        self.sums = [(s, f) for s, f in lp.sums if s in needed]
        self.sum_args: list[str] = []
        self.op = op
        if op is not None:  # the sums of the shifted values that the needed sums are made of
            mean, *sums = op.lp.plan.backward[:1 + len(lp.sums)]
            self.head = [mean] + [(s, e) for s, e in sums if s in needed]
            wanted = {op.first, *[op.square] * bool(self.sums)}
            wanted |= set().union(*[e.free_symbols for _, e in self.head])
            self.shifted = [(s, f) for s, f in op.lp.sums if s in wanted]
            self.shifted_args: list[str] = []
        self.results = {k: (m.output.upper() if plan.kinds[k] == "forward" else api.grad(k))
                        for k in keys}

    def options(self) -> list[str]:
        """The kernel's run-time choices: _ratio (one-pass sums), _fuse (element outputs
        in the along outputs' pass)."""
        if self.m.axis != -1:
            return []
        kinds = {self.kind(k) for k in self.keys}
        fuse = "along" in kinds and bool(kinds & {"element", "forward"})
        return ["_ratio"] * (self.op is not None and bool(self.sums)) + ["_fuse"] * fuse

    def kind(self, k: str) -> str:
        return self.lp.plan.kinds[k]

    def signature(self) -> list[str]:
        outs = [f"{self.results[k]}_" for k in self.keys]
        extra = ["_chunks"] + (["_tile"] if self.m.axis == 0 else []) + self.options()
        return ([f"{a}_" for a in self.arrays] + [f"{a}_" for a in self.along + self.sets]
                + self.scalars + outs + extra)

    def loads(self, ind: str, exprs, pos: str, row: str, per_set: str) -> list[str]:
        """Reads of the element values the expressions use, at element [row, pos]."""
        names = {str(s) for e in exprs for s in sp.sympify(e).free_symbols}
        lines = []
        if "D" in names or "_E" in names:  # in float64: the shift is exact for float32 rows
            x = f"{self.x}[{row}]" if per_set else f"numpy.float64({self.x}[{row}])"
            if "D" in names:
                lines.append(f"{ind}D = ({x} - _K{per_set}) - _m{per_set}")
            else:
                lines.append(f"{ind}_E = {x} - _K{per_set}")
        for a in self.arrays:
            if a in names:
                lines.append(f"{ind}{a} = numpy.float64({a}_[{row}])")
        for a in self.along:
            if a in names:
                lines.append(f"{ind}{a} = {a}_[{pos}]")
        return lines

    def monomial(self, f) -> sp.Expr:
        return sp.Mul(*[sp.Symbol(n) for n in f])

    def summand(self, f) -> str:
        return self.p.doprint(self.monomial(f))

    def combination(self, k: str, coef) -> sp.Expr:
        return sp.Add(*[coef(c) * self.monomial(f) for c, f in self.lp.terms[k]])

    def coefficient_lines(self, ind: str) -> list[str]:
        return [f"{ind}{s} = {self.p.doprint(e)}" for s, e in self.assign if s in self.needed]


def _rows_sums(kn: _Kernel, name: str) -> list[str]:
    """The per-row sums as their own function, jitted with fastmath={'reassoc'} so that the
    loop vectorises: only the additions and products of the sums may be reordered (the
    centring D = (x - _K) - _m is a subtraction, which LLVM reassociates only under `nsz`).
    With the one-pass form, also `{name}_shifted`: the sums of _E = x - _K, in one pass."""
    L = []
    if kn.sums:
        L += _sums_function(kn, name, kn.sums, ["_K", "_m"])
        kn.sum_args = L.pop()
    if kn.op is not None:
        L += _sums_function(kn, f"{name}_shifted", kn.shifted, ["_K"])
        kn.shifted_args = L.pop()
    return L


def _sums_function(kn: _Kernel, name: str, sums, centring: list[str]) -> list:
    """The text of one sums function, then (last) its parameters."""
    names = {n for _, f in sums for n in f}
    centred = bool({"D", "_E"} & names)
    arrays = [a for a in kn.arrays if a in names or (centred and f"{a}_" == kn.x)]
    along = [a for a in kn.along if a in names]
    summands = [kn.monomial(f) for _, f in sums]
    # the 2-d arrays and the row index, not row views: a view is a reference count per row
    params = [f"{a}_" for a in arrays + along] + ["_i"] * bool(arrays) + centring * centred
    length = f"{arrays[0]}_.shape[1]" if arrays else f"{along[0]}_.shape[0]"
    L = ["", "", "@_jit(parallel=False, fastmath={'reassoc'})",
         f"def {name}({', '.join(params)}):"]
    L += [f"    {s} = 0.0" for s, _ in sums]
    L += [f"    for _j in range({length}):"]
    L += kn.loads("        ", summands, "_j", "_i, _j", "")
    L += [f"        {s} += {kn.summand(f)}" for s, f in sums]
    L += [f"    return {', '.join(str(s) for s, _ in sums)}" + ("," if len(sums) == 1 else "")]
    return L + [params]


# Rows per tile of the along outputs' sums: each tile's rows add into the float64 row
# accumulator in one pass, ((r0 + r1) + (r2 + r3)), where one pass per row measured 15-20 %
# slower (256 x 4096); the last tile of a chunk may be shorter and goes row by row.
ROW_TILE = 4


def _pairwise(terms: list[str]) -> str:
    """A balanced sum of the printed terms: ['a', 'b', 'c', 'd'] -> '((a + b) + (c + d))'.

    >>> _pairwise(["a", "b", "c", "d"])
    '((a + b) + (c + d))'
    """
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_pairwise(terms[:half])} + {_pairwise(terms[half:])})"


def _row_lines(kn: _Kernel, ind: str, sums: str) -> list[str]:
    """One row's shift and mean, sums, coefficients and set outputs.  In one pass when the
    plan has its one-pass form, unless the row's shift is far from its mean:
    sum((x - K)**2) > _ratio * sum(D**2), where the one-pass sums would cancel."""
    L = [f"{ind}{a} = {a}_[_i]" for a in kn.sets]
    lhs = ", ".join(str(s) for s, _ in kn.sums) + ("," if len(kn.sums) == 1 else "")
    two_pass = [f"{lhs} = {sums}({', '.join(kn.sum_args)})"] if kn.sums else []
    if kn.op is not None:
        shifted = ", ".join(str(s) for s, _ in kn.shifted) + ("," if len(kn.shifted) == 1
                                                              else "")
        (mean, first), *head = kn.head
        L += [f"{ind}_K = numpy.float64({kn.x}[_i, 0])",
              f"{ind}{shifted} = {sums}_shifted({', '.join(kn.shifted_args)})",
              f"{ind}{mean} = {kn.p.doprint(first)}"]
        if kn.sums:
            sq = kn.op.square
            L += [f"{ind}if {sq} <= _ratio*({sq} - N*_m*_m):"]
            L += [f"{ind}    {s} = {kn.p.doprint(e)}" for s, e in head]
            L += [f"{ind}else:", f"{ind}    {two_pass[0]}"]
    else:
        if kn.lp.plan.centred is not None:
            L += [f"{ind}_K = numpy.float64({kn.x}[_i, 0])",
                  f"{ind}_m = _shifted_total({kn.x}, _i, _K) / N"]
        L += [f"{ind}{line}" for line in two_pass]
    L += kn.coefficient_lines(ind)
    for k in kn.keys:
        if kn.kind(k) == "set":
            L.append(f"{ind}{kn.results[k]}_[_i] = {kn.p.doprint(kn.combination(k, lambda c: c))}")
    return L


def _element_loop(kn: _Kernel, ind: str, keys: list[str]) -> list[str]:
    """The loop over row _i writing the element outputs `keys` (or adding the along ones)."""
    if not keys:
        return []
    exprs = {k: kn.combination(k, lambda c: c) for k in keys}
    L = [f"{ind}for _j in range(N):"]
    L += kn.loads(ind + "    ", exprs.values(), "_j", "_i, _j", "")
    for k in keys:
        target = f"_a{k}[_j] +=" if kn.kind(k) == "along" else f"{kn.results[k]}_[_i, _j] ="
        L.append(f"{ind}    {target} {kn.p.doprint(exprs[k])}")
    return L


def _tile_lines(kn: _Kernel, ind: str, keys: list[str], per_row: list[str]) -> list[str]:
    """The outputs `keys` of a full tile of ROW_TILE rows (rows _i0.., per-row values
    _q<name>[r], the shifts _qK[r] and means _qm[r]) in one pass over the positions: the
    along ones summed into their rows, the element ones written for each row."""
    exprs = {k: kn.combination(k, lambda c: c) for k in keys}
    names = {str(s) for e in exprs.values() for s in e.free_symbols}
    centred = "D" in names
    rows = range(ROW_TILE)
    arrays = [a for a in kn.arrays if a in names]
    used = [s for s in per_row if s in names]
    L = [f"{ind}_{s}_{r} = _q{s}[{r}]" for s in used for r in rows]
    if centred:
        L += [f"{ind}_K{r}, _m{r} = _qK[{r}], _qm[{r}]" for r in rows]
    L += [f"{ind}for _j in range(N):"]
    L += [f"{ind}    {a} = {a}_[_j]" for a in kn.along if a in names]
    for r in rows:
        if centred:
            L.append(f"{ind}    _D{r} = (numpy.float64({kn.x}[_i0 + {r}, _j]) - _K{r}) - _m{r}")
        L += [f"{ind}    _{a}{r} = numpy.float64({a}_[_i0 + {r}, _j])" for a in arrays]

    def at(k, r):
        to = {sp.Symbol(n): sp.Symbol(f"_{n}{r}") for n in ["D", *arrays]}
        to.update({sp.Symbol(s): sp.Symbol(f"_{s}_{r}") for s in used})
        return kn.p.doprint(exprs[k].xreplace(to))

    for k in keys:
        if kn.kind(k) != "along":
            L += [f"{ind}    {kn.results[k]}_[_i0 + {r}, _j] = {at(k, r)}" for r in rows]
            continue
        terms = [f"({at(k, r)})" if exprs[k].is_Add else at(k, r) for r in rows]
        L.append(f"{ind}    _a{k}[_j] += {_pairwise(terms)}")
    return L


def _rows_kernel(kn: _Kernel, name: str, sums: str) -> list[str]:
    """Axis -1: chunks of rows in parallel; per row the shift, the sums (`_rows_sums`) and
    coefficients; the along outputs per tile of ROW_TILE rows (`_tile_lines`), and the
    element outputs in the same pass when _fuse (long rows), else a pass per row."""
    L = [f"def {name}({', '.join(kn.signature())}):",
         f"    _R, N = {kn.x}.shape",
         "    _step = -(-_R // _chunks)",
         "    for _t in numba.prange(_chunks):"]
    along_out = [k for k in kn.keys if kn.kind(k) == "along"]
    element = [k for k in kn.keys if kn.kind(k) in ("element", "forward")]
    L += [f"        _a{k} = {kn.results[k]}_[_t]" for k in along_out]
    centred = kn.lp.plan.centred is not None
    if not along_out:
        L += ["        for _i in range(_t * _step, min(_R, (_t + 1) * _step)):"]
        L += _row_lines(kn, "            ", sums)
        return L + _element_loop(kn, "            ", element)
    exprs = [kn.combination(k, lambda c: c) for k in along_out + element]
    fixed = {"D", *kn.arrays, *kn.along, *kn.scalars}
    per_row = sorted({str(s) for e in exprs for s in e.free_symbols} - fixed)
    saved = per_row + ["K", "m"] * centred  # _qK, _qm: the rows' shifts and means
    L += [f"        _q{s} = numpy.empty({ROW_TILE})" for s in saved]
    L += ["        _hi = min(_R, (_t + 1) * _step)",
          f"        for _i0 in range(_t * _step, _hi, {ROW_TILE}):",
          f"            _n = min({ROW_TILE}, _hi - _i0)",
          "            for _r in range(_n):",
          "                _i = _i0 + _r"]
    ind = "                "
    L += _row_lines(kn, ind, sums)
    L += [f"{ind}_q{s}[_r] = {s}" for s in per_row]
    L += [f"{ind}_qK[_r], _qm[_r] = _K, _m"] * centred
    if element:
        L += [f"{ind}if not _fuse or _n < {ROW_TILE}:"]
        L += _element_loop(kn, ind + "    ", element)
        L += [f"            if _n == {ROW_TILE} and _fuse:"]
        L += _tile_lines(kn, ind, along_out + element, per_row)
        L += [f"            elif _n == {ROW_TILE}:"]
    else:
        L += [f"            if _n == {ROW_TILE}:"]
    L += _tile_lines(kn, ind, along_out, per_row)
    L += ["            else:",
          "                for _r in range(_n):",
          "                    _i = _i0 + _r"]
    ind = "                    "
    exprs = [kn.combination(k, lambda c: c) for k in along_out]
    needed = {str(s) for e in exprs for s in e.free_symbols}
    L += [f"{ind}{s} = _q{s}[_r]" for s in per_row if s in needed]
    L += [f"{ind}_K, _m = _qK[_r], _qm[_r]"] * centred
    return L + _element_loop(kn, ind, along_out)


def _columns_kernel(kn: _Kernel, name: str) -> list[str]:
    """Axis 0: BatchNorm's kernel shape (column sums per chunk of rows, tiled)."""
    L = [f"def {name}({', '.join(kn.signature())}):",
         f"    N, _C = {kn.x}.shape",
         "    _step = -(-N // _chunks)"]
    centred = kn.lp.plan.centred is not None
    if centred:
        L += [f"    _K = numpy.empty(_C, {kn.x}.dtype)",
              "    for _c in range(_C):",
              f"        _K[_c] = {kn.x}[0, _c]",
              "    _P = numpy.zeros((_chunks, _C))",
              "    for _t in numba.prange(_chunks):",
              "        _p = _P[_t]",
              "        for _i in range(_t * _step, min(N, (_t + 1) * _step)):",
              "            for _c in range(_C):",
              f"                _p[_c] += {kn.x}[_i, _c] - _K[_c]",
              "    _m = numpy.zeros(_C)",
              "    for _t in range(_chunks):",
              "        for _c in range(_C):",
              "            _m[_c] += _P[_t, _c]",
              "    for _c in range(_C):",
              "        _m[_c] /= N"]
    L += [f"    _S{s} = numpy.zeros((_chunks, _C))" for s, _ in kn.sums]
    if kn.sums:
        L += ["    for _t in numba.prange(_chunks):",
              "        _hi = min(N, (_t + 1) * _step)",
              "        for _i0 in range(_t * _step, _hi, _tile):"]
        for s, f in kn.sums:  # one loop per sum: several accumulators defeat vectorising
            L += [f"            _a = _S{s}[_t]",
                  "            for _i in range(_i0, min(_hi, _i0 + _tile)):",
                  "                for _c in range(_C):"]
            L += kn.loads("                    ", [kn.monomial(f)], "_i", "_i, _c", "[_c]")
            L += [f"                    _a[_c] += {kn.summand(f)}"]
    per_elem = [k for k in kn.keys if kn.kind(k) in ("element", "forward", "along")]
    coefs = list(dict.fromkeys(c for k in per_elem for c, _ in kn.lp.terms[k]
                               if not c.is_Number))
    L += [f"    _A{c} = numpy.empty(_C)" for c in coefs]
    per_column = [f"        {a} = {a}_[_c]" for a in kn.sets]
    for s, _ in kn.sums:
        per_column += [f"        {s} = 0.0", "        for _t in range(_chunks):",
                       f"            {s} += _S{s}[_t, _c]"]
    per_column += kn.coefficient_lines("        ")
    per_column += [f"        _A{c}[_c] = {c}" for c in coefs]
    for k in kn.keys:
        if kn.kind(k) == "set":
            per_column.append(f"        {kn.results[k]}_[_c] = "
                              f"{kn.p.doprint(kn.combination(k, lambda c: c))}")
    if per_column:  # nothing per column when every coefficient is a number (y = gamma*x)
        L += ["    for _c in range(_C):", *per_column]
    if per_elem:
        exprs = {k: kn.combination(k, lambda c: c if c.is_Number else sp.Symbol(f"_A{c}[_c]"))
                 for k in per_elem}
        L += ["    for _i in numba.prange(N):"]
        L += [f"        _r{k} = 0.0" for k in per_elem if kn.kind(k) == "along"]
        L += ["        for _c in range(_C):"]
        L += kn.loads("            ", exprs.values(), "_i", "_i, _c", "[_c]")
        for k in per_elem:
            target = f"_r{k} +=" if kn.kind(k) == "along" else f"{kn.results[k]}_[_i, _c] ="
            L.append(f"            {target} {kn.p.doprint(exprs[k])}")
        L += [f"        {kn.results[k]}_[_i] = _r{k}" for k in per_elem
              if kn.kind(k) == "along"]
    return L


def _kernels(kn: _Kernel, name: str) -> list[str]:
    """The kernel as `{name}_serial` and `{name}_parallel` (see emit_numba._kernel_variants:
    numba's cache keys on the function, not on parallel=)."""
    out = _rows_sums(kn, f"{name}_sums") if kn.m.axis == -1 else []
    for variant, parallel in (("serial", False), ("parallel", True)):
        body = (_rows_kernel(kn, f"{name}_{variant}", f"{name}_sums") if kn.m.axis == -1
                else _columns_kernel(kn, f"{name}_{variant}"))
        out += ["", "", f"@_jit(parallel={parallel})", *body]
    return out


_WRAPPERS = '''

# From this many elements on, use numba.get_num_threads() threads; None: always one thread
# (as the BatchNorm module's PARALLEL_MIN).  The sets are cut into CHUNKS chunks per thread:
# 8 measured 1.3-1.7 x faster than one chunk per thread on 2 threads (4096 x 1024).  Along
# the last axis a chunk has at least CHUNK_ROWS rows: each chunk adds the along gradients
# into its own row of float64, and for few long rows (256 x 4096) those rows measured
# 7-12 % of the time with 8 chunks per thread.
PARALLEL_MIN = 1 << 17
CHUNKS = 8
CHUNK_ROWS = 64

def _float(X):
    if X.dtype == object:
        raise ValueError("the numba target computes in float32 or float64; for exact scalars "
                         "(object arrays) use the NumPy target (symbn codegen --target numpy)")
    return numpy.ascontiguousarray(X)


def _plan(kernel, X):
    """(the serial or parallel kernel, chunks (one per thread), rows per cache tile)."""
    rows = X.shape[0]
    threads = 1 if PARALLEL_MIN is None or X.size < PARALLEL_MIN else numba.get_num_threads()
    tile = max(1, (1 << 18) // (2 * X.shape[1] * X.itemsize))
    per_thread = CHUNKS if AXIS == 0 else max(1, min(CHUNKS, rows // (threads * CHUNK_ROWS)))
    chunks = 1 if threads == 1 else threads * per_thread
    return kernel[threads > 1], max(1, min(rows, chunks)), tile
'''


_ROW_OPTIONS = '''

# Along the last axis a row's sums are taken in one pass, on the shift K = its first element:
# the sums of (x - K)**b, then those of D = x - K - mean by the binomial theorem.  That cancels
# when K is far from the mean, so a row with sum((x - K)**2) > ONE_PASS * sum(D**2) is summed
# again in two passes (the mean first): the one-pass sums then lose at most about
# log2(ONE_PASS) bits more than the two-pass ones.  A row of at least FUSE_BYTES bytes has
# its element results written in the pass that sums the along gradients, four rows at a time
# (measured 9-18 % faster at 1024 and 4096 float32 elements per row); shorter rows are
# written one at a time (four short rows interleaved measured up to 20 % slower).
ONE_PASS = 64.0
FUSE_BYTES = 4096


def _fused(X):
    """Whether the rows of the 2-d X are long enough to be written four at a time."""
    return X.shape[1] * X.itemsize >= FUSE_BYTES
'''


_SHIFTED_TOTAL = '''

@_jit(parallel=False, fastmath={'reassoc'})
def _shifted_total(X, i, K):
    """The sum of X[i] - K in float64, the additions reordered (vectorised); X[i, j] - K is
    exact for close values (Sterbenz), so the mean is taken of small numbers."""
    s = 0.0
    for j in range(X.shape[1]):
        s += numpy.float64(X[i, j]) - K
    return s
'''


def _wrapper(kn: _Kernel, fname: str, kernel: str, args: str, doc: str) -> list[str]:
    m = kn.m
    pairs = ", ".join(f"('{n}', {n})" for n in kn.arrays)
    first = kn.arrays[1] if kn.leaves[0] == m.gradient and len(kn.arrays) > 1 else kn.arrays[0]
    L = ["", "", f"def {fname}({args}):", f'    """{doc}"""',
         f"    {', '.join(kn.arrays)}, = _element([{pairs}])",
         f"    dtype = {first}.dtype"] + [f"    X = {first}"] * (first != "X")
    L += [f"    {a} = numpy.ascontiguousarray(_along('{a}', {a}, X).ravel(), numpy.float64)"
          for a in kn.along]
    L += [f"    {a} = numpy.ascontiguousarray(_per_set('{a}', {a}, X).ravel())"
          for a in kn.sets]
    L += [f"    {a} = _scalar('{a}', {a}, {m.leaves[a] == 'positive'}, X)" for a in kn.scalars]
    inputs = [*kn.arrays, *kn.along, *kn.sets]
    L += [f"    {', '.join(inputs)}, = _apart(out, {', '.join(inputs)})"]
    L += [f"    _{n} = _float(_rows({n}))" for n in kn.arrays]
    tile = "tile" if m.axis == 0 else "_"
    rows = f"_{first}"  # the element leaf's 2-d view (_X when it is named x)
    L += [f"    kernel, chunks, {tile} = _plan(({kernel}_serial, {kernel}_parallel), {rows})"]
    outs, returns = [], []
    element = [k for k in kn.keys if kn.kind(k) in ("element", "forward")]
    for k in kn.keys:
        name, kind = kn.results[k], kn.kind(k)
        if kind in ("element", "forward"):
            L += [f"    {name} = _out({'out' if k == element[0] else 'None'}, X)"]
            outs.append(f"_rows({name})")
            returns.append(name)
        elif kind == "along":
            shape = f"(chunks, {rows}.shape[1])" if m.axis == -1 else f"{rows}.shape[0]"
            L += [f"    _{name} = numpy.zeros({shape})"]
            outs.append(f"_{name}")
            returns.append(f"_{name}.sum(axis=0).astype(dtype)" if m.axis == -1
                           else f"_{name}.astype(dtype)")
        else:
            L += [f"    _{name} = numpy.empty({rows}.shape[1] if AXIS == 0 else {rows}.shape[0])"]
            outs.append(f"_{name}")
            returns.append(f"_per_set_result(_{name}, X.shape, dtype)")
    call = [f"_{n}" for n in kn.arrays] + kn.along + kn.sets + kn.scalars + outs + ["chunks"]
    call += ["tile"] * (m.axis == 0)
    call += [{"_ratio": "ONE_PASS", "_fuse": f"_fused({rows})"}[o] for o in kn.options()]
    L += [f"    kernel({', '.join(call)})", f"    return {', '.join(returns)}"]
    if not any("dtype)" in line for line in L):  # the element results are written in place
        L.remove(f"    dtype = {first}.dtype")
    return L


def _jit_text() -> str:
    """BatchNorm's `_jit` (numba's on-disk cache when usable), with a fastmath= option."""
    text = _NUMBA_JIT.rstrip("\n")
    for old, new in (("def _jit(parallel):", "def _jit(parallel, fastmath=False):"),
                     ('"fastmath": False}', '"fastmath": fastmath}'),
                     ("numba.njit(parallel=...)", "numba.njit(parallel=..., fastmath=...)")):
        if text.count(old) != 1:
            raise AssertionError(f"emit_numba._NUMBA_JIT changed: {old!r}")
        text = text.replace(old, new)
    return text


def one_pass_proved(lp: LinearPlan) -> tuple[OnePass | None, list[str]]:
    """The one-pass form of a centred row plan, proved as `prove_model_plan` proves `lp`,
    and its header lines; (None, []) when there is none, or when its proof reaches less far
    than lp's (the kernels then sum in two passes only).  Raises SymbnError when a claim is
    found false."""
    from .model_plan import prove_model_plan
    from .model_terms import one_pass

    op = one_pass(lp) if lp.plan.model.axis == -1 else None
    if op is None:
        return None, []
    prove_model_plan(op.lp.plan, closed_forms=False)  # those prove_model_plan(lp) proved
    reach = op.lp.plan.max_n
    if reach is not None and (lp.plan.max_n is None or reach < lp.plan.max_n):
        return None, []
    every = "every N" if lp.plan.max_n is None else f"N <= {lp.plan.max_n}"
    return op, [("the kernels' one-pass sums (used unless RowSum((X - K)**2) > "
                 "ONE_PASS*RowSum(D**2)): _m = RowSum(X - K)/N and"),
                ("  each RowSum(D**a*M) from the RowSum((X - K)**b*M) by the binomial theorem, "
                 f"proved the same way at the same N and {every}")]


def numba_module(lp: LinearPlan, proved: list[str], op: OnePass | None = None) -> str:
    """The module text of the numba target for a linear plan.

    >>> from symbn.models import load
    >>> from .model_plan import model_plan
    >>> from .model_terms import linear_plan
    >>> "@_jit(parallel=True)" in numba_module(linear_plan(model_plan(load("layernorm"))), [])
    True
    """
    plan = lp.plan
    m, api = plan.model, plan_api(plan)
    if m.axis not in (0, -1):
        raise SymbnError(f"{m.name}: the numba target reduces along axis 0 or -1")
    y = m.output
    how = ("the sums, coefficients and elements in float64 after the exact shift, "
           "fused loops" if plan.centred else "everything in float64, fused loops")
    op = op if m.axis == -1 else None
    fwd = _Kernel(lp, api, [y], "forward", op)
    bwd = _Kernel(lp, api, plan.gradients, "backward", op)
    runtime = (_NUMBA_IMPORTS
               + NUMBA_RUNTIME.format(axis=m.axis, min_n=m.min_n, max_n=plan.max_n))
    lines = [header(f"{m.title}: forward and backward, fused numba loops.", api, proved,
                    _plan_lines(plan, api, linear=how), "numpy and numba (pip install numba)",
                    OUT_NOTE),
             runtime.rstrip("\n"), _jit_text(), _WRAPPERS.rstrip("\n")]
    if m.axis == -1:
        lines.append(_ROW_OPTIONS.rstrip("\n"))
    if m.axis == -1 and plan.centred is not None and op is None:
        lines.append(_SHIFTED_TOTAL.rstrip("\n"))
    lines += _kernels(fwd, "_forward") + _kernels(bwd, "_backward")
    grads = ", ".join(api.grad(g) for g in plan.gradients)
    lines += _wrapper(fwd, f"{api.prefix}_forward", "_forward",
                      api.arguments(api.forward) + ", out=None",
                      f"{y.upper()}: the layer's output, written to `out` if given.")
    lines += _wrapper(bwd, f"{api.prefix}_backward", "_backward",
                      api.arguments(api.backward) + ", out=None",
                      f"({grads}): the gradients of f given {api.array(m.gradient)} = "
                      f"df/d{y.upper()}; the element gradient written to `out` if given.")
    lines.append("")
    return "\n".join(lines)
