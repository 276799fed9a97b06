"""The emitted NumPy module itself, checked before it is written: its backward is run on
NumPy object arrays of exact scalars (`symbn.impl.check_impl`, the exact trace) at the
model's smallest N and at N = 3, and every gradient it returns must be proved equal to the
model's derivative.

`prove_model_plan` proves the expressions of the plan; this proves that the module's text
computes them (the blocks, the stacked monomials, the batched products, the reductions).

>>> from symbn.models import load
>>> from .model_plan import model_plan
>>> emitted_line(model_plan(load("rmsnorm"))).split(": ")[-1]
'dX, dgamma'
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import symtable
import tempfile
from pathlib import Path

import numpy

from ..errors import SymbnError
from .model_numpy import plan_api
from .model_plan import ModelPlan

D = 2


def _ns(plan: ModelPlan) -> list[int]:
    """The smallest N the model allows (sets of one element, for most) and N = 3."""
    return sorted({plan.model.min_n, max(3, plan.model.min_n)})


def emitted_line(plan: ModelPlan, whose: str = "the emitted") -> str:
    """The header line that `check_emitted` makes true (of `whose` backward)."""
    api = plan_api(plan)
    grads = ", ".join(api.grad(g) for g in plan.gradients)
    sizes = " and ".join(map(str, _ns(plan)))
    return (f"{whose} {api.prefix}_backward itself, run on object arrays of exact scalars "
            f"at N = {sizes}, D = {D} (symbn check-impl): {grads}")


def check_emitted(text: str, plan: ModelPlan) -> None:
    """Import `text` as a module and prove its backward by the exact trace (D = 2, N = the
    model's smallest and 3); raises SymbnError, naming the gradient, on anything not proved."""
    api = plan_api(plan)
    signature = (", ".join(api.backward) + " -> "
                 + ", ".join(f"d{g}" for g in plan.gradients))
    trace(text, f"{api.prefix}_backward", plan.model, signature, _ns(plan))


def check_names(text: str, model) -> None:
    """Refuse a module in which a name the caller passes (a parameter of a public function,
    the leaves' names) is also one the code binds for itself: a module-level name or a
    builtin it would shadow, or a local assigned in a function taking it (a leaf named u0
    where the forward's coefficients are u0, u1, ...), and a module whose functions read a
    name nothing defines (`_undefined`).  The proofs see expressions, not the names the
    code gives them, so this is checked on the text.

    >>> check_names("def f(a, b): c = a", None)
    >>> check_names("def f(a, c): c = a", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    symbn.errors.SymbnError: model: a leaf becomes c in the generated code, a name the code...
    """
    where = getattr(model, "path", None) or getattr(model, "name", None) or "model"

    def refuse(name: str, why: str):
        raise SymbnError(f"{where}: a leaf becomes {name} in the generated code, {why}; "
                         "rename the leaf")

    try:
        tree = ast.parse(text)
        compile(tree, "<generated>", "exec")
    except SyntaxError as err:  # a leaf named like a parameter the code adds (out)
        raise SymbnError(f"{where}: the generated code does not compile ({err.msg}); if a "
                         "leaf is named like a parameter the code adds itself (out), rename "
                         "the leaf") from None
    undefined = _undefined(text)
    if undefined:
        raise SymbnError(f"{where}: the generated code uses {', '.join(undefined)}, which it "
                         "never defines (a defect in symbn's generator for this model); "
                         "refusing to write the code")
    functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
    passed = {a.arg for f in functions if not f.name.startswith("_") for a in f.args.args}
    top = {t.id for node in tree.body if isinstance(node, ast.Assign)
           for t in node.targets if isinstance(t, ast.Name)}
    top |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    top |= {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    for name in sorted(passed & (top | set(dir(builtins)))):
        refuse(name, "a name the module defines or uses from Python")
    for f in functions:
        taken = {a.arg for a in f.args.args} & passed
        for node in ast.walk(f):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.For)) else [])
            names = {t.id for target in targets for t in ast.walk(target)
                     if isinstance(t, ast.Name)}
            for name in sorted(names & taken):
                if not (isinstance(node, ast.Assign) and _checks_itself(node.value, name)):
                    refuse(name, "a name the code binds for itself")


def _undefined(text: str) -> list[str]:
    r"""The global names the module's functions read that neither the module nor Python
    defines (a NameError at the first call).

    >>> _undefined("import math\nA = 1\ndef f(b):\n    return math.pi + A + b + C + len([])")
    ['C']
    """
    top = symtable.symtable(text, "<generated>", "exec")
    known = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    known |= set(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__"}
    missing: set = set()
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        missing |= {s.get_name() for s in table.get_symbols()
                    if s.is_global() and s.is_referenced() and s.get_name() not in known}
    return sorted(missing)


def _checks_itself(value: ast.expr, name: str) -> bool:
    """Whether `value` rebinds a parameter to itself checked, converted or one block or
    element of it: `_along('gamma', gamma, X)`, `_element([('X', X)])`, `_X[k]`,
    `X.astype(numpy.float64)`, `gamma_[_j]`; never arithmetic on it."""
    if isinstance(value, ast.Name):
        return value.id in (name, "_" + name, name + "_")
    if isinstance(value, (ast.Subscript, ast.Attribute)):
        return _checks_itself(value.value, name)
    if isinstance(value, (ast.List, ast.Tuple)):
        return any(_checks_itself(e, name) for e in value.elts)
    if not isinstance(value, ast.Call):
        return False
    f = value.func
    if isinstance(f, ast.Attribute) and f.attr in _CONVERSIONS:
        return _checks_itself(f.value, name) if f.attr in _METHODS else \
            any(_checks_itself(a, name) for a in value.args)
    return isinstance(f, ast.Name) and f.id.startswith("_") and \
        any(_checks_itself(a, name) for a in value.args)


_METHODS = {"astype", "ravel", "reshape"}
_CONVERSIONS = _METHODS | {"ascontiguousarray", "asarray"}


def check_blocks(text: str, plan: ModelPlan, rows: int = 37, n: int = 5) -> None:
    """The module's forward and backward on many sets in small blocks, against each set on
    its own (float64, relative 1e-9): the exact trace runs one block, and code that carries
    a value from one block to the next (or takes a block's shape for the whole array's)
    would pass it.  A check that can only refuse the code, never a proof.  Along the last
    axis only: along axis 0 every array is one block."""
    m = plan.model
    if m.axis != -1:
        return
    n = max(n, m.min_n)
    module = _load(text, "blocks")
    module.BLOCK = 1  # blocks of the fewest rows that keep them aligned
    api, rng = plan_api(plan), numpy.random.default_rng(0)
    values = {}
    for leaf in {*api.forward, *api.backward}:
        kind = "element" if leaf == m.gradient else m.leaves[leaf]
        values[leaf] = (rng.standard_normal((rows, n)) if kind == "element" else
                        rng.standard_normal(n) if kind == "along" else
                        rng.standard_normal(rows) if kind == "set" else
                        0.5 if kind == "positive" else 0.75)

    def call(which: str, leaves: list[str], r: int | None):
        def one(leaf):
            kind = "element" if leaf == m.gradient else m.leaves[leaf]
            v = values[leaf]
            return v[r:r + 1] if r is not None and kind in ("element", "set") else v
        try:
            out = getattr(module, f"{api.prefix}_{which}")(*[one(a) for a in leaves])
        except Exception as err:  # noqa: BLE001 - any failure of the emitted code refuses it
            raise SymbnError(f"{m.name}: the emitted {api.prefix}_{which} fails on {rows} "
                             f"sets in blocks ({type(err).__name__}: {err}); refusing to "
                             "write the code") from None
        return out if which == "backward" and isinstance(out, tuple) else (out,)

    kinds = ["forward"] + [plan.kinds[g] for g in plan.gradients]
    for which, leaves, result_kinds in (("forward", api.forward, kinds[:1]),
                                        ("backward", api.backward, kinds[1:])):
        whole = call(which, leaves, None)
        alone = [call(which, leaves, r) for r in range(rows)]
        for k, kind in enumerate(result_kinds):
            want = (sum(a[k] for a in alone) if kind == "along" else
                    numpy.concatenate([a[k] for a in alone]))
            scale = max(1.0, float(numpy.max(numpy.abs(want))))
            if whole[k].shape != want.shape or \
                    float(numpy.max(numpy.abs(whole[k] - want))) > 1e-9 * scale:
                raise SymbnError(f"{m.name}: the emitted {api.prefix}_{which} gives other "
                                 f"values (or shapes) for {rows} sets in blocks than for each "
                                 "set alone; refusing to write the code")


def numba_line(plan: ModelPlan) -> str:
    """The header line that `check_numba` makes true (numba importable where the code is
    generated; else a line saying the check was not run)."""
    if importlib.util.find_spec("numba") is None:
        return ("not checked: numba is not installed where this module was generated, so "
                "its functions were not run against the NumPy module's")
    paths = (" (one-pass sums and fused rows; in parallel also neither)"
             if plan.model.axis == -1 else "")
    return ("checked, not proved: the numba functions, run as Python (NUMBA_DISABLE_JIT=1), "
            f"serial and in parallel chunks{paths}, at two N, float64 and float32, with and "
            f"without out=, give the NumPy module's values (checked as above) to "
            f"{NUMBA_TOLERANCE:g} in float64 ({NUMBA_TOLERANCE32:g} in float32)")


NUMBA_TOLERANCE, NUMBA_TOLERANCE32 = 1e-12, 1e-4  # relative to the largest entry

_NUMBA_RUN = r"""
import importlib.util, json, sys
import numpy
spec = json.loads(sys.argv[1])
def load(path, name):
    s = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
    return m
fast, ref = load(spec["numba"], "fast_emitted"), load(spec["numpy"], "ref_emitted")
worst = {"float64": 0.0, "float32": 0.0}
def compare(a, b, dtype, what):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    if len(a) != len(b):
        return what + " returns " + str(len(a)) + " results, the NumPy module " + str(len(b))
    for p, q in zip(a, b):
        p, q = numpy.asarray(p, dtype=float), numpy.asarray(q, dtype=float)
        if p.shape != q.shape:
            return what + " gives shape " + str(p.shape) + ", the NumPy module " + str(q.shape)
        if not numpy.array_equal(numpy.isfinite(p), numpy.isfinite(q)):
            return what + " gives a NaN or inf where the NumPy module does not (or back)"
        ok = numpy.isfinite(q)
        if ok.any():
            scale = max(1.0, float(numpy.max(numpy.abs(q[ok]))))
            worst[dtype] = max(worst[dtype], float(numpy.max(numpy.abs(p[ok] - q[ok]))) / scale)
    return None
for shape in spec["shapes"]:
    rng = numpy.random.default_rng(len(shape) * 100 + shape[-1])
    sets, n = (shape[1:], shape[0]) if spec["axis"] == 0 else (shape[:-1], shape[-1])
    base = {}
    for leaf, kind in spec["kinds"].items():
        base[leaf] = (rng.standard_normal(shape) if kind == "element" else
                      rng.standard_normal(n) if kind == "along" else
                      rng.standard_normal(sets) if kind == "set" else
                      0.5 if kind == "positive" else 0.75)
    for dtype in ("float64", "float32"):
        values = {k: v.astype(dtype) if isinstance(v, numpy.ndarray) else v
                  for k, v in base.items()}
        # the serial and the parallel kernel share one body: the two-pass path runs once
        for parallel, one_pass in ((False, True), (True, True), (True, False)):
            fast.PARALLEL_MIN, fast.CHUNK_ROWS = (0, 1) if parallel else (1 << 17, 64)
            if spec["axis"] == -1:  # the one-pass sums and fused rows, then neither
                fast.ONE_PASS, fast.FUSE_BYTES = (64.0, 0) if one_pass else (0.0, 1 << 62)
            for which, leaves in (("forward", spec["forward"]), ("backward", spec["backward"])):
                args = [values[leaf] for leaf in leaves]
                what = (which + " at shape " + str(tuple(shape)) + " in " + dtype
                        + (", parallel" if parallel else "")
                        + ("" if one_pass or spec["axis"] == 0 else ", two-pass sums, unfused"))
                b = getattr(ref, spec["prefix"] + "_" + which)(*args)
                for out in (False, True):
                    kw = {"out": numpy.empty(shape, dtype)} if out else {}
                    a = getattr(fast, spec["prefix"] + "_" + which)(*args, **kw)
                    error = compare(a, b, dtype, what + (" with out=" if out else ""))
                    if error:
                        print(json.dumps({"error": error}))
                        sys.exit(0)
print(json.dumps({"worst": worst}))
"""


def check_numba(numba_text: str, numpy_text: str, plan: ModelPlan) -> None:
    """Run the numba module's functions as Python (numba's NUMBA_DISABLE_JIT=1, in a
    subprocess) against the NumPy module's, whose backward `check_emitted` proved: serial
    and in parallel chunks, at two N, in float64 and float32, with and without out=;
    refuse the numba text on any other value, shape or NaN.  A check that can only refuse
    the code: the kernels are a second text of the same plan.  Without numba installed,
    nothing is run, and `numba_line` says so."""
    import json
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("numba") is None:
        return
    m, api = plan.model, plan_api(plan)
    n = max(5, m.min_n)
    other = n + 13 if plan.max_n is None else (plan.max_n if plan.max_n > n else n - 1)
    other = max(other, m.min_n)
    shapes = ([[n, 3], [other, 5]] if m.axis == 0 else [[70, n], [2, 9, other]])
    kinds = {leaf: "element" if leaf == m.gradient else m.leaves[leaf]
             for leaf in {*api.forward, *api.backward}}
    with tempfile.TemporaryDirectory(prefix="symbn-numba-") as tmp:
        paths = {}
        for target, text in (("numba", numba_text), ("numpy", numpy_text)):
            paths[target] = str(Path(tmp) / f"{target}_emitted.py")
            Path(paths[target]).write_text(text)
        spec = {**paths, "axis": m.axis, "shapes": shapes, "kinds": kinds,
                "prefix": api.prefix, "forward": api.forward, "backward": api.backward}
        env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
        try:
            run = subprocess.run([sys.executable, "-c", _NUMBA_RUN, json.dumps(spec)],
                                 capture_output=True, text=True, env=env, timeout=300,
                                 check=False)
        except subprocess.TimeoutExpired:
            raise SymbnError(f"{m.name}: the emitted numba functions did not return within "
                             "300 s run as Python; refusing to write the code") from None
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise SymbnError(f"{m.name}: the emitted numba functions fail when run as Python "
                         f"({last}); refusing to write the code")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    worst = result.get("worst", {})
    if "error" in result or not worst["float64"] <= NUMBA_TOLERANCE \
            or not worst["float32"] <= NUMBA_TOLERANCE32:
        what = result.get("error") or (f"by {worst['float64']:.3g} in float64, "
                                       f"{worst['float32']:.3g} in float32 (relative)")
        raise SymbnError(f"{m.name}: the emitted numba functions differ from the proved "
                         f"NumPy ones: {what}; refusing to write the code")


def _load(text: str, name: str):
    with tempfile.TemporaryDirectory(prefix="symbn-trace-") as tmp:
        path = Path(tmp) / f"{name}_emitted.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def trace(text: str, function: str, model, signature: str, ns: list[int]) -> None:
    """`function` of the module `text`, run on exact scalars at each N of `ns` (D = 2):
    every output proved, or SymbnError."""
    from ..impl.check import check_impl

    module = _load(text, function)
    for n in ns:
        report = check_impl(getattr(module, function), model, n=n, d=D, signature=signature,
                            same_path=False)  # the object path; the float one is checked
        for r in report.results:
            if r.verdict != "proved":
                raise SymbnError(f"{model.name}: the emitted {function}'s {r.id} is "
                                 f"{r.verdict} at N = {n}, D = {D} when run on exact "
                                 "scalars; refusing to write the code")
