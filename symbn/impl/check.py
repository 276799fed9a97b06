"""`check_impl`: trace the user's function on exact scalars, decide each returned entry
against the model's closed form, and report (`ImplReport`) with a pasteable witness batch.

>>> from symbn.models import load
>>> g = load("batchnorm").instantiate(2, 1)
>>> _layout(g, "gamma")[0], _layout(g, "x")[0]
((1,), (2, 1))
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import sympy as sp

from ..errors import SymbnError
from ..expr import rebuild
from ..graph import Instance, Model
from ..prove import DISPROVED, PROVED, UNKNOWN, Algebra, Budget, alarm
from ..prove.interface import CONSISTENT
from ..report import Report, Result
from .domain import NEEDS, WHAT, classify, failing_point
from .enclose import Encloser
from .exact import _TRACE, Exact, LeftExact, _clip, _ours, exact_number
from .floats import (
    BOUND_FACTOR,
    DISPROOF_MARGIN,
    FLOAT64_SLACK,
    KEPT,
    ORDINARY,
    POINTS,
    REUSED,
    ROUTE_FLOAT,
    ROUTE_TORCH,
    U64,
    WRITES,
    _Verdict,
    float64_ratio,
    route2,
    uses_torch,
    values_at,
)
from .load import _one_line
from .paths import Paths, first_new, own_files
from .signature import Signature, named_signature, parse_signature, positional

ROUTE_EXACT = "exact trace"
MAX_TABLE_CELLS = 64  # the pasteable table lists every expected entry up to this many


# -- the arrays of one instance -------------------------------------------------------------
def _layout(g: Instance, name: str):
    """(shape, {numpy index: (symbol, row j or None, set c)}) of a leaf or dy in the model's
    layout."""
    m = g.model
    kind = "element" if name == m.gradient else m.kind(name)
    rows_last = m.axis != 0
    if kind == "element":
        shape = (g.d, g.n) if rows_last else (g.n, g.d)
        cells = {((c - 1, i - 1) if rows_last else (i - 1, c - 1)): (g.symbol(name, i, c), i, c)
                 for i in g.rows() for c in g.columns()}
    elif kind == "along":
        shape, cells = (g.n,), {(i - 1,): (g.symbol(name, i), i, 1) for i in g.rows()}
    elif kind == "set":
        shape, cells = (g.d,), {(c - 1,): (g.symbol(name, None, c), None, c)
                                for c in g.columns()}
    else:
        shape, cells = (), {(): (g.symbol(name), None, 1)}
    return shape, cells


def _array(shape, cells, value):
    if shape == ():
        return value(cells[()][0])
    a = np.empty(shape, dtype=object)
    for index, (symbol, _, _) in cells.items():
        a[index] = value(symbol)
    return a


def _truth(g: Instance, leaf: str, cell: tuple) -> sp.Expr:
    """D(f, leaf) at one entry: the model's closed form (summed over the sets for a shared
    leaf), or forward mode where the model has none."""
    _, j, c = cell
    if leaf in g.model.results:
        return g.result(leaf, j, c)
    from ..differentiate import forward_gradient

    return forward_gradient(g, g.leaf(leaf, j, c))  # a shared leaf's symbol: every set


# -- the check ------------------------------------------------------------------------------
class ImplReport(Report):
    """A `Report` whose text ends with each disproof's batch as code to paste into a test."""

    def __str__(self) -> str:
        keep = ("entry", "implementation", "true", "entries", "error", "arrays")
        plain = [Result(r.id, r.verdict, r.method, r.seconds,
                        {k: v for k, v in r.witness.items() if k in keep} if r.witness
                        else None, r.note) for r in self.results]
        text = Report.__str__(Report(self.title, plain, self.info, self.notes))
        tables = [r.witness["table"] for r in self.results if r.witness and "table" in
                  r.witness]
        return text + "".join("\n\n" + t for t in tables)


def check_impl(function: Callable, model: Model | str = "batchnorm", n: int = 3, d: int = 2,
               signature: str | None = None, timeout: float | None = 60.0,
               arrays: str | None = None, same_path: bool = True) -> Report:
    """Decide `function`'s outputs against the model's derivative at N = n, D = d.

    Runs `function` (the user's own code) on object arrays of exact scalars; returns a
    `Report` with one result per output gradient: proved, disproved (witness: the entry,
    both values, the point, and a table to paste into a test) or unknown.  Where the code
    leaves exact arithmetic it is run in float64 at exact points instead (route 2,
    `symbn.impl.floats`): consistent (never proved), disproved or unknown.  `arrays`:
    None (NumPy, or PyTorch where the exact trace fails on code that clearly uses torch),
    "numpy", or "torch" (route 4: torch.float64 tensors, never proved).  With `same_path`
    (the default) a proof stands only if the float64 calls take no arc and make no call the
    exact trace did not (`symbn.impl.paths`); False proves the code as it runs on exact
    scalars (what `symbn codegen` claims of its own module, whose float path reduces by
    BLAS).

    >>> def wrong(dy, x, gamma, eps):  # keeps only the Jacobian's diagonal
    ...     xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    ...     n = x.shape[0]
    ...     return gamma * dy * (1 - 1 / n - xhat ** 2 / n) / np.sqrt(x.var(axis=0) + eps)
    >>> check_impl(wrong, n=2, d=1, signature="dy, x, gamma, eps -> dx")["dx"].verdict
    'disproved'
    """
    from ..models import load

    if arrays not in (None, "numpy", "torch"):
        raise SymbnError(f"arrays={arrays!r}: give 'numpy', 'torch' or None (automatic)")
    m = model if isinstance(model, Model) else load(model)
    g = m.instantiate(n, d)
    given, function = function, positional(function)
    named = named_signature(function, m) if signature is None else None
    sig = parse_signature(signature or named, m)
    WRITES.clear(), REUSED.clear(), KEPT.clear()
    name = getattr(function, "__qualname__", None) or repr(function)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    layouts = {leaf: _layout(g, leaf) for leaf in {*sig.inputs, *sig.outputs}}
    info = {"function": name, "model": m.name, "n": n, "d": d, "route": ROUTE_EXACT,
            "signature": str(sig)}
    title = f"symbn check-impl: {name} against {m.title}, N = {n}, D = {d}"
    notes = [(f"signature {sig}: arguments {', '.join(sig.inputs)}; outputs "
              f"{', '.join('d' + o for o in sig.outputs)}"),
             f"layout: {_describe_layout(g, sig)}"]
    if named:
        notes.insert(1, f"arguments taken by the names of {name}'s parameters, not by "
                        "position (give --signature to choose)")
    stopped = failed = None
    if arrays != "torch":
        # a positive leaf traces as a positive symbol, so that SymPy's sqrt(-eps) is
        # I*sqrt(eps), which the trace refuses, not a radical whose square cancels it
        twins = {s: sp.Symbol(s.name, positive=True) for s in
                 (layouts[leaf][1][()][0] for leaf in sig.inputs
                  if m.leaves.get(leaf) == "positive" and layouts[leaf][0] == ())}
        args = [_array(*layouts[leaf], lambda s: Exact(twins.get(s, s))) for leaf in sig.inputs]
        with Paths(own_files(given)) as traced:
            returned, printed, stopped, failed = _call(function, name, args, deadline, timeout)
        if printed:
            lines = printed.rstrip("\n").count("\n") + 1
            notes.append(f"{name} printed {lines} line{'s' * (lines > 1)} (captured)")
    if arrays == "torch" or stopped is not None or failed is not None:
        torch = arrays == "torch" or (arrays is None and uses_torch(given))
        if stopped is not None:
            notes.append(f"the exact trace stopped: {stopped}")
        elif failed is not None:
            notes.append(f"the exact trace could not run: {failed}")
        info["route"] = ROUTE_TORCH if torch else ROUTE_FLOAT
        warned: list[str] = []
        try:
            results = route2(function, name, g, sig, deadline, timeout,
                             "torch" if torch else "numpy", warned=warned)
        except SymbnError as err:
            if not torch or arrays == "torch" or "within the budget" in str(err):
                raise
            # code that uses torch inside but takes NumPy arrays (torch.from_numpy)
            try:
                results = route2(function, name, g, sig, deadline, timeout, "numpy",
                                 warned=warned)
            except SymbnError:
                raise SymbnError(f"{err}; with NumPy arrays it fails too") from None
            torch = False
            info["route"] = ROUTE_FLOAT
            notes.append(f"called with NumPy arrays: with torch tensors {err}")
        results = _other_shape(function, name, m, n, d, sig, results, deadline, timeout,
                               notes, "torch" if torch else "numpy")
        if not torch:
            results = _float32(function, name, g, sig, results, deadline, timeout, notes)
        if warned:
            unique = list(dict.fromkeys(warned))
            more = f" (and {len(unique) - 3} more)" if len(unique) > 3 else ""
            notes.append(f"{name} warned at the float points: {'; '.join(unique[:3])}{more}")
        notes.append(_float_note(torch))
        info["seconds"] = round(time.monotonic() - start, 3)
        return ImplReport(title, _writes(results), info, notes)
    back = {t: s for s, t in twins.items()}
    conditions, inexact, needs = dict(_TRACE.conditions), set(_TRACE.inexact), {}
    try:
        entries = _leaves(_entries(returned, sig, layouts, name, needs), back)
    except LeftExact as err:  # a NaN or inf the function returned: judged in floating point
        notes.append(f"the exact trace stopped: {str(err).split(': ', 1)[-1]}")
        info["route"] = ROUTE_FLOAT
        results = route2(function, name, g, sig, deadline, timeout, "numpy")
        results = _other_shape(function, name, m, n, d, sig, results, deadline, timeout, notes)
        results = _float32(function, name, g, sig, results, deadline, timeout, notes)
        notes.append(_float_note(False))
        info["seconds"] = round(time.monotonic() - start, 3)
        return ImplReport(title, _writes(results), info, notes)
    alg = Algebra(g)
    results = [_decide(g, alg, sig, leaf, layouts, entries[leaf], deadline)
               for leaf in sig.outputs]
    rounded = dict(_TRACE.rounded)
    if (rounded or inexact) and any(r.verdict == DISPROVED for r in results):
        results = _rounding(function, name, args, g, alg, sig, layouts, results, rounded,
                            deadline, timeout, entries, back, inexact)
    results = _defined(function, name, g, sig, layouts, results, conditions, needs,
                       set(twins.values()), back, deadline, timeout, notes)
    results = _in_floats(function, name, g, sig, results, deadline, timeout, notes,
                         traced if same_path else None)
    results = _other_shape(function, name, m, n, d, sig, results, deadline, timeout, notes)
    results = _float32(function, name, g, sig, results, deadline, timeout, notes)
    if any(r.verdict == CONSISTENT for r in results):
        info["route"] = f"{ROUTE_EXACT}, {ROUTE_FLOAT}"
        notes.append(_float_note(False))
    info["seconds"] = round(time.monotonic() - start, 3)
    notes.append(f"proved means: at N = {n}, D = {d} the code's outputs equal the model's "
                 "derivative as exact functions of the leaves (floats read as the reals they "
                 "denote; rounding is not analysed), every division, root and logarithm it "
                 "takes is defined for every input where the layer is, and float64 arrays at "
                 f"{POINTS} exact points give the same values within rounding (a note says "
                 f"when beyond float64's), also at N = {n + 1}, D = {n + 3} and with float32 "
                 "arrays (never a proof there, a check)")
    return ImplReport(title, _writes(results), info, notes)


def _writes(results: list[Result]) -> list[Result]:
    """The results, and `inputs` disproved if the function wrote into an argument at one of
    the float calls (`WRITES`; the exact trace works on copies), `outputs` disproved if a
    call overwrote an array one of the calls before it returned (`REUSED`)."""
    out = list(results)
    if WRITES:
        names, first = ", ".join(WRITES), next(iter(WRITES.values()))
        out.append(Result("inputs", DISPROVED, "side effect", 0.0, {"entry": first}, note=(
            f"the function writes into its argument{'s' * (len(WRITES) > 1)} {names}: the "
            "caller's arrays (an activation saved for backward, the same batch passed "
            "again) change under it, so a second call computes something else; write to "
            "copies")))
    if REUSED:
        names = ", ".join(f"d{leaf}" for leaf in REUSED)
        out.append(Result("outputs", DISPROVED, "side effect", 0.0,
                          {"entry": next(iter(REUSED.values()))}, note=(
            f"the array returned as {names} is overwritten by a later call (a buffer kept "
            "between calls): a caller that keeps the gradients of two batches gets the "
            "second twice; return a new array")))
    return out


def _defined(function, name, g, sig, layouts, results, conditions, needs, positive, back,
             deadline, timeout, notes) -> list[Result]:
    """A proved output stays proved only if every division, root and logarithm its value was
    computed under (`Exact.needs`) is defined for every input (`symbn.impl.domain`); else
    it is disproved where the function returns NaN or inf at a point where the derivative
    is defined, or unknown."""
    open_, cancel = classify(conditions, positive)
    for kind, e, where in cancel:
        notes.append(f"the code {WHAT[kind]} {_clip(e.xreplace(back))}"
                     f"{f' at {where}' if where else ''}, which is {NEEDS[kind]} for every "
                     "input only as a whole, not term by term (as E[x^2] - E[x]^2 + eps): in "
                     "floating point its terms cancel, and for inputs with a large mean it can "
                     "round below zero (NaN); compute it from x - mean")
    layer = _layer_divisors(g) if open_ else []
    excused = [c for c in open_ if _zero_only_where(c, layer, back)]
    for kind, e, where in excused:
        notes.append(f"the code {WHAT[kind]} {_clip(e.xreplace(back))}"
                     f"{f' at {where}' if where else ''}, which is 0 only where the layer "
                     "itself divides by 0 (its own definition is undefined there)")
    open_ = [c for c in open_ if c not in excused]
    if not open_ or not any(r.verdict == PROVED for r in results):
        return results
    symbols = [next((t for t, s in back.items() if s == leaf), leaf) for leaf in g.leaves]
    points: dict = {}  # condition -> a failing point and the function's values there
    out = []
    for r in results:
        leaf = r.id[1:]
        mine = [c for c in open_ if c[:2] in needs[leaf]]
        if r.verdict != PROVED or not mine:
            out.append(r)
            continue
        for kind, e, where in mine:
            if (kind, e) not in points:
                points[kind, e] = _failing(function, name, g, sig, kind, e, symbols,
                                           positive, back, deadline, timeout)
            found = points[kind, e]
            if found is None:
                continue
            point, values = found
            bad = [i for i in layouts[leaf][1] if not np.isfinite(values[leaf][i])]
            if not bad:
                wrong = _wrong_there(g, sig, leaf, layouts, point, values[leaf], r.seconds)
                if wrong is not None:  # finite but not the derivative: a NaN replaced
                    r = Result(r.id, DISPROVED, "definedness", r.seconds, wrong.witness, (
                        f"{wrong.witness['entry']}: the code {WHAT[kind]} {_clip(e.xreplace(back))}"
                        f"{f' at {where}' if where else ''}, undefined at this batch, and "
                        "returns a finite value there that is not the derivative"))
                    break
                continue
            index = bad[0]
            true = g.evaluate(_truth(g, leaf, layouts[leaf][1][index]), point)
            if not (true.is_number and true.is_finite and true.is_real):
                # the closed form itself is 0/0 here: whether the derivative exists (as a
                # limit) is not decided, so NaN from the code is no disproof
                continue
            witness = _witness(g, sig, leaf, index, layouts, None, {
                "point": {str(s): str(v) for s, v in point.items()},
                "lhs": repr(float(values[leaf][index])), "rhs": str(true)})
            witness["entries"] = f"{len(bad)} of {len(layouts[leaf][1])} not finite"
            note = (f"{_label(leaf, index)}: the code {WHAT[kind]} {_clip(e.xreplace(back))}"
                    f"{f' at {where}' if where else ''}, undefined at this batch, where the "
                    "derivative is defined")
            r = Result(r.id, DISPROVED, "definedness", r.seconds, witness, note)
            break
        else:
            kind, e, where = mine[0]
            r = Result(r.id, UNKNOWN, "definedness", r.seconds, note=(
                f"equal where defined, but the code {WHAT[kind]} {_clip(e.xreplace(back))}"
                f"{f' at {where}' if where else ''}, which is not shown to be {NEEDS[kind]} "
                "for every input"))
        out.append(r)
    return out


def _layer_divisors(g) -> list[sp.Expr]:
    """The divisors the model's own node definitions write (y = x/c: c), in the leaves, as
    numerators of polynomials; the layer is undefined where one is 0."""
    out = []
    for _, value in g.conditions_of(g.f)[0]:
        num = sp.fraction(sp.together(sp.expand(g.compose(value))))[0]
        if num.is_polynomial() and num.free_symbols:
            out.append(num)
    return out


def _zero_only_where(condition, layer: list[sp.Expr], back: dict) -> bool:
    """Whether a division the code takes is by a polynomial each of whose irreducible
    factors divides one of the layer's own divisors (`_layer_divisors`): then it is 0 only
    where the layer is undefined, and says nothing against the code."""
    kind, e, _ = condition
    if kind != "nonzero" or not layer:
        return False
    num = sp.fraction(sp.together(e.xreplace(back)))[0]
    if not num.is_polynomial() or not num.free_symbols:
        return False
    for factor, _ in sp.factor_list(num)[1]:
        gens = sorted(factor.free_symbols | set().union(*(d.free_symbols for d in layer)),
                      key=str)
        if not any(sp.Poly(d, *gens).rem(sp.Poly(factor, *gens)).is_zero for d in layer):
            return False
    return True


def _wrong_there(g, sig, leaf, layouts, point, values, seconds) -> Result | None:
    """A disproved Result if the function's float64 values of d<leaf> at `point` are
    further from the derivative than a correct implementation's rounding; else None."""
    verdict = _Verdict()
    enc = Encloser(g, point)
    for index, cell in layouts[leaf][1].items():
        verdict.compare(0, point, leaf, index, float(values[index]), enc,
                        _truth(g, leaf, cell), U64)
    if verdict.disproof is None:
        return None
    return verdict.result(g, sig, leaf, layouts, "definedness", seconds)


def _failing(function, name, g, sig, kind, e, symbols, positive, back, deadline, timeout):
    """(point, the function's float64 values there) at a dyadic point where the condition
    fails, or None."""
    point = failing_point(kind, e, symbols, positive)
    if point is None:
        return None
    point = {back.get(s, s): v for s, v in point.items()}
    try:
        return point, values_at(function, name, g, sig, point, deadline, timeout)
    except SymbnError:
        return None


def _in_floats(function, name, g, sig, results, deadline, timeout, notes,
               traced: Paths | None) -> list[Result]:
    """A proved output is also computed in float64 at exact points (route 2): code that
    does something else on floats than on exact scalars (a branch on the dtype, state kept
    between calls) is disproved there, never proved; and where the float calls run a line
    the exact trace did not (`traced`), what was proved is another
    path than the one floats take: consistent at most."""
    proved = [r.id[1:] for r in results if r.verdict == PROVED]
    if not proved:
        return results
    try:
        with Paths(traced.own if traced is not None else ()) as ran:
            floated = {r.id: r for r in route2(function, name, g, sig, deadline, timeout,
                                                "numpy", proved, float64=True)}
    except SymbnError as err:
        return [Result(r.id, UNKNOWN, r.method, r.seconds, note=f"proved on exact scalars, "
                       f"but {err}") if r.id in {f"d{p}" for p in proved} else r
                for r in results]
    out = []
    for r in results:
        f = floated.get(r.id)
        if f is not None and f.verdict == DISPROVED:
            r = Result(r.id, DISPROVED, f.method, r.seconds + f.seconds, f.witness,
                       note=f"proved on exact scalars, but float64 arrays give other values "
                       "(an overflow or a cancellation far beyond a correct implementation's "
                       f"rounding, a branch on the dtype, or state kept between calls): "
                       f"{f.note}")
        elif f is not None and traced is not None and (line := (
                "ran with tracing turned off (sys.settrace), so the lines they ran are not "
                "known" if traced.lost or ran.lost else first_new(ran, traced))) is not None:
            r = Result(r.id, f.verdict if f.verdict == UNKNOWN else CONSISTENT, f.method,
                       r.seconds + f.seconds, f.witness, note=(
                           f"proved on exact scalars, but the float64 calls {line}, "
                           "which the exact trace never did (a branch on the dtype, a "
                           "compiled path with a fallback, a cache): the proof is of another "
                           "path; "
                           f"{f.note or 'the float64 values agree'}"))
        elif f is not None and f.verdict == UNKNOWN and not _float64_like(f):
            # what was proved is the code on exact scalars; on floats it computed something
            # else (a branch on the dtype, inputs kept in float16): proved would not hold
            r = Result(r.id, UNKNOWN, r.method, r.seconds + f.seconds,
                       note=f"proved on exact scalars, but float64 arrays at the {POINTS} "
                       f"points do not confirm it (the code computes something else on "
                       f"floats): {f.note}")
        out.append(r)
    notes += [f"{k}: proved, but the float64 run at the {POINTS} points is beyond float64 "
              f"rounding: {f.note}" for k, f in floated.items()
              if f.verdict == UNKNOWN and _float64_like(f)]
    return out


def _float32(function, name, g, sig, results, deadline, timeout, notes) -> list[Result]:
    """An output not disproved is also computed with float32 arrays at four of the points
    (their values rounded to float32), each held to its returned dtype's rounding: a path
    taken only for float32 inputs (`if x.dtype == np.float32:` to a kernel that drops a term) is
    disproved there.  It can only disprove: code that refuses float32 gets a note."""
    open_ = [r.id[1:] for r in results if r.verdict != DISPROVED and r.id[1:] in sig.outputs]
    if not open_:
        return results
    try:
        other = {r.id: r for r in route2(function, name, g, sig, deadline, timeout, "numpy",
                                          open_, float32=True)}
    except SymbnError as err:
        notes.append(f"not checked with float32 arrays: {str(err).split(' at /')[0]}")
        return results
    out = []
    for r in results:
        f = other.get(r.id)
        if f is not None and f.verdict == DISPROVED:
            r = Result(r.id, DISPROVED, f.method, r.seconds + f.seconds, f.witness, note=(
                f"{r.verdict} with exact scalars and float64 arrays, but wrong with float32 "
                f"arrays (a path for float32 inputs): {f.note}"))
        out.append(r)
    return out


def _other_shape(function, name, m: Model, n: int, d: int, sig, results, deadline, timeout,
                 notes, arrays: str = "numpy") -> list[Result]:
    """An output not disproved is also computed in float64 at exact points of another
    shape, N + 1 and D = N + 3 (more sets than elements), after the calls at N: code that
    keeps N from its first call, or takes N from the wrong axis (max(x.shape)), is disproved
    there.  Code that refuses the shape (written for one N) is not judged by it: a note says
    so."""
    open_ = [r.id[1:] for r in results if r.verdict != DISPROVED and r.id[1:] in sig.outputs]
    if not open_:
        return results
    n2, d2 = n + 1, n + 3
    try:
        g2 = m.instantiate(n2, d2)
        other = {r.id: r for r in route2(function, name, g2, sig, deadline, timeout,
                                          arrays, open_, float64=arrays == "numpy")}
    except SymbnError as err:  # where, if in a library, is this machine's path: left out
        notes.append(f"not checked at a second shape, N = {n2}, D = {d2}: "
                     f"{str(err).split(' at /')[0]}")
        return results
    out = []
    for r in results:
        f = other.get(r.id)
        if f is not None and f.verdict == DISPROVED:
            witness = {**f.witness, "n": n2, "d": d2}  # the batch's shape, not the report's
            r = Result(r.id, DISPROVED, f.method, r.seconds + f.seconds, witness, note=(
                f"{r.verdict} at N = {n}, D = {d}, but wrong at N = {n2}, D = {d2} (float64, "
                f"called after the calls at N = {n}: state kept between calls, or N taken "
                f"from the wrong axis): {f.note}"))
        out.append(r)
    return out


def _float64_like(f: Result) -> bool:
    """Off by more than the float64 rounding bound, but within FLOAT64_SLACK of it: a
    correct implementation where the first-order bound is tight (a result of 0 from terms
    that cancel), not float32 or float16 rounding."""
    ratio = float64_ratio(f)
    return ratio is not None and ratio <= FLOAT64_SLACK


def _float_note(torch: bool) -> str:
    return (f"route {4 if torch else 2}: called with "
            f"{'torch.float64 tensors' if torch else 'float64 NumPy arrays'} at {POINTS} exact "
            f"points ({POINTS - len(ORDINARY)} of small dyadic rationals, {len(ORDINARY)} of "
            "ordinary floats with eps = 1e-5 and 1e-6) and compared with the closed form "
            "enclosed in interval arithmetic; "
            f"consistent means every entry within {BOUND_FACTOR} u (E + |v|) of the exact v (u = "
            "2^-53, E the closed form's first-order rounding coefficient), never a proof; "
            f"disproved means off by more than {DISPROOF_MARGIN} times that bound at u = 2^-24; "
            "the same at a second shape, N + 1 and D = N + 3"
            + ("" if torch else ", and with float32 arrays at four of the points (the values "
               "rounded to float32, held to the returned dtype's rounding)")
            + ", where it can only disprove")


def _leaves(entries: dict, back: dict) -> dict:
    """The traced entries in the model's leaves (a positive leaf traces as its positive
    twin symbol)."""
    memo: dict = {}  # one for every entry: the traced expressions share their parts, and
    # xreplace, which walks the tree rather than the graph, took 27 s at N = 32, D = 4
    return {leaf: {i: rebuild(e, back, memo, evaluate=True) for i, e in exprs.items()}
            for leaf, exprs in entries.items()}


def _rounding(function, name, args, g, alg, sig, layouts, results, rounded, deadline,
              timeout, first, back, inexact=()) -> list[Result]:
    """A disproof that the rounding of a computed float (1.0/3 for 1/3) may explain is not
    reported: the function is traced again with each such float read as the simplest
    rational near it; an output not disproved then (proved, or undecided) is decided by
    route 2 (consistent, disproved or unknown), never `disproved` by the trace.  A float
    that stands for no short rational (np.sqrt(3)) sends every disproved output to route 2."""
    if inexact:
        redo = [r.id[1:] for r in results if r.verdict == DISPROVED]
        listed = ", ".join(repr(f) for f in sorted(inexact)[:4])
        floated = {r.id: r for r in route2(function, name, g, sig, deadline, timeout,
                                            "numpy", redo)}
        return [Result(r.id, f.verdict, f"{r.method}; {f.method}", r.seconds + f.seconds,
                       f.witness, note=f"the exact trace's difference may come only from the "
                       f"rounding of the float(s) {listed}, which stand for no short rational; "
                       f"in floating point: {f.note}") if (f := floated.get(r.id)) else r
                for r in results]
    floats = ", ".join(f"{f!r} (read as {q.numerator}/{q.denominator} in the re-run)"
                       for f, q in list(rounded.items())[:4])
    _TRACE.intended = True
    try:
        again, _, stopped, failed = _call(function, name, args, deadline, timeout)
    finally:
        _TRACE.intended = False
    if stopped is not None or failed is not None:
        return results
    entries = _leaves(_entries(again, sig, layouts, name), back)
    redo, read = [], {}
    for k, r in enumerate(results):
        if r.verdict == DISPROVED:
            second = _decide(g, alg, sig, r.id[1:], layouts, entries[r.id[1:]], deadline)
            if second.verdict != DISPROVED:
                redo.append(r.id[1:])
                read[r.id[1:]] = "proved" if second.verdict == PROVED else "not disproved"
            else:  # wrong however its floats are read: the second batch shows it beyond
                # rounding, where the first may separate the sides by rounding only
                witness = _as_written(g, r.id[1:], layouts, first[r.id[1:]], second.witness)
                if witness is None:
                    r.note = "; ".join(filter(None, [r.note, f"floats read exactly: {floats}"]))
                    continue
                note = (f"disproved with the floats read exactly and again with {floats}; "
                        "the batch is the second trace's")
                results[k] = Result(r.id, DISPROVED, r.method, r.seconds + second.seconds,
                                    witness, note="; ".join(filter(None, [r.note, note])))
    if not redo:
        return results
    floated = {r.id: r for r in route2(function, name, g, sig, deadline, timeout, "numpy",
                                        redo)}
    out = []
    for r in results:
        if r.id in floated:
            f = floated[r.id]
            r = Result(r.id, f.verdict, f"{r.method}; {f.method}", r.seconds + f.seconds,
                       f.witness, note=f"the exact trace's difference may come only from the "
                       f"rounding of the float(s) {floats} (with them read as those rationals it is "
                       f"{read[r.id[1:]]}); in floating point: {f.note}")
        out.append(r)
    return out


def _as_written(g, leaf, layouts, exprs, witness: dict) -> dict | None:
    """`witness` (from the re-run) with the value of the code as written at its batch, if it
    certainly differs there from the derivative; else None."""
    index = next(i for i in exprs if _label(leaf, i) == witness["entry"])
    point = {s: Fraction(v) for s, v in witness["point"].items()}
    point = {s: point[str(s)] for s in g.leaves}
    value = g.evaluate(exprs[index], point)
    gap = sp.N(value - g.evaluate(_truth(g, leaf, layouts[leaf][1][index]), point), 60)
    if not gap.is_Number or abs(gap) < sp.Float("1e-40"):  # no certain gap: keep the first
        return None
    old = witness["implementation"]
    lines = witness["table"].split("\n")
    lines[0] = lines[0].replace(f"returns {old}", f"returns {value}", 1)
    return {**witness, "implementation": str(value), "table": "\n".join(lines)}


def _describe_layout(g: Instance, sig: Signature) -> str:
    parts = [f"{leaf} {_layout(g, leaf)[0] or 'scalar'}" for leaf in dict.fromkeys(sig.inputs)]
    axis = "axis 0" if g.model.axis == 0 else "the last axis"
    return ", ".join(parts) + f"; reductions along {axis}"


def _call(function, name, args, deadline, timeout):
    """(returned, printed text, why the trace stopped or None, what it raised or None); a
    call past the budget is a one-line error."""
    _TRACE.first = None
    _TRACE.rounded, _TRACE.inexact, _TRACE.conditions, _TRACE.real = {}, set(), {}, {}
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]  # code may write them
    buffer = io.StringIO()
    try:
        with alarm(deadline), contextlib.redirect_stdout(buffer):
            returned = function(*args)
    except Budget:
        raise SymbnError(f"{name} did not return within the budget of {timeout:g} s (the "
                         "exact trace runs it on symbolic scalars, far slower than floats; "
                         "raise timeout= or use a smaller n)") from None
    except KeyboardInterrupt:  # Ctrl-C, or the code raising it: an interrupt either way
        raise
    except BaseException as err:  # noqa: BLE001 - the user's code may raise anything
        if _TRACE.first is not None:
            return None, buffer.getvalue(), _TRACE.first, None
        return None, buffer.getvalue(), None, (f"{name} raised {type(err).__name__}: "
                                               f"{_one_line(err)}{_where(err)} (called with "
                                               "NumPy object arrays of exact scalars)")
    if _TRACE.first is not None:  # refused inside the function but caught there
        return None, buffer.getvalue(), _TRACE.first, None
    return returned, buffer.getvalue(), None, None


def _where(err: BaseException) -> str:
    tb, found = err.__traceback__, ""
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not _ours(path):
            found = f" at {path}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _entries(returned, sig: Signature, layouts: dict, name: str, needs=None) -> dict:
    """{leaf: {numpy index: SymPy expression}}, or a one-line SymbnError; `needs` (if given)
    gets {leaf: the conditions its entries were computed under}."""
    k = len(sig.outputs)
    want = ", ".join(f"d{o} {layouts[o][0] or 'scalar'}" for o in sig.outputs)
    if k == 1 and not isinstance(returned, (tuple, list)):
        returned = (returned,)
    if not isinstance(returned, (tuple, list)) or len(returned) != k:
        got = "None" if returned is None else f"{type(returned).__name__}" + \
            (f" of {len(returned)}" if isinstance(returned, (tuple, list)) else "")
        raise SymbnError(f"{name} returned {got}; the signature '{sig}' expects {k} "
                         f"output{'s' * (k > 1)} ({want})")
    out = {}
    for leaf, value in zip(sig.outputs, returned):
        shape, cells = layouts[leaf]
        if value is None:
            raise SymbnError(f"{name} returned None for d{leaf}; expected shape {shape}")
        a = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if a.shape != shape:
            raise SymbnError(f"{name} returned d{leaf} of shape {a.shape}; expected {shape} "
                             f"(signature '{sig}')")
        exprs = {}
        for index in cells:
            entry = a[index]
            e = entry.e if isinstance(entry, Exact) else exact_number(entry)
            if e is None:
                raise SymbnError(f"{name} returned d{leaf}{list(index)} = {_clip(repr(entry))} of type "
                                 f"{type(entry).__name__}; expected numbers")
            exprs[index] = e
            if needs is not None and isinstance(entry, Exact):
                needs.setdefault(leaf, set()).update(entry.needs)
        out[leaf] = exprs
        if needs is not None:
            needs.setdefault(leaf, set())
    return out


def _label(leaf: str, index: tuple) -> str:
    return f"d{leaf}[{', '.join(map(str, index))}]" if index else f"d{leaf}"


def _decide(g, alg, sig, leaf, layouts, exprs, deadline) -> Result:

    start = time.monotonic()
    method = "exact"
    try:
        with alarm(deadline):
            for index, returned in exprs.items():
                true = _truth(g, leaf, layouts[leaf][1][index])
                why = alg.undefined(sp.Tuple(returned, true), deadline)
                if why is not None:
                    return Result(f"d{leaf}", UNKNOWN, "definedness", time.monotonic() - start,
                                  note=f"{_label(leaf, index)}: {why}")
                outcome = alg.decide(returned, true, deadline)
                method = outcome.method
                if outcome.verdict == DISPROVED:
                    witness = _witness(g, sig, leaf, index, layouts, exprs, outcome.witness)
                    return Result(f"d{leaf}", DISPROVED, method, time.monotonic() - start,
                                  witness, note=_label(leaf, index))
                if outcome.verdict != PROVED:
                    return Result(f"d{leaf}", UNKNOWN, method, time.monotonic() - start,
                                  note="; ".join(filter(None, [_label(leaf, index),
                                                               outcome.note])))
    except Budget:
        return Result(f"d{leaf}", UNKNOWN, method, time.monotonic() - start,
                      note="time budget exhausted")
    return Result(f"d{leaf}", PROVED, method, time.monotonic() - start,
                  note=f"{len(exprs)} entr{'ies' if len(exprs) > 1 else 'y'}")


def _witness(g, sig, leaf, index, layouts, exprs, found: dict) -> dict:
    """The disproof: the entry, both values, the full point and a pasteable table."""
    given = {k: sp.Rational(v) for k, v in found["point"].items()}
    point = {}
    for s in g.leaves:  # leaves the entry does not depend on: 1 (any value would do)
        point[s] = given.get(str(s), sp.Integer(1))
    fractions = {s: Fraction(int(v.p), int(v.q)) for s, v in point.items()}
    witness = {"entry": _label(leaf, index), "implementation": found["lhs"],
               "true": found["rhs"], "point": {str(s): str(v) for s, v in point.items()}}
    lines = [(f"# {witness['entry']} is wrong at this batch: the function returns "
              f"{found['lhs']}, the derivative is {found['rhs']}"),
             "import numpy as np"]
    for name, model_name in zip(sig.input_names, sig.inputs):
        shape, cells = _layout(g, model_name)
        values = _array(shape, cells, lambda s: _py(point[s]))
        text = _literal(values)
        if found.get("float32") and shape:  # the dtype the code was called with
            text = f"{text[:-1]}, dtype=np.float32)"
        if found.get("fortran") and len(shape) > 1:  # the order the code was called with
            text = f"np.asfortranarray({text})"
        lines.append(f"{name} = {text}")
    shape, cells = layouts[leaf]
    if len(cells) <= MAX_TABLE_CELLS:
        expected = _array(shape, cells, lambda s: None) if shape else None
        for i in cells:
            value = g.evaluate(_truth(g, leaf, cells[i]), fractions)
            text = _py(value) if value.is_Rational else f"{float(value)!r}"
            if shape:
                expected[i] = text
            else:
                expected = text
        out_name = sig.output_names[sig.outputs.index(leaf)]
        lines.append(f"expected_{out_name} = {_literal(expected)}  # exact; decimals are "
                     "irrational values rounded")
    witness["table"] = "\n".join(lines)
    return witness


def _py(v) -> str:
    """A Python literal of the rational v: p/q, or the float's repr where v is a float64
    with a long binary fraction (an ordinary float: the repr reads back exactly)."""
    v = sp.Rational(v)
    if v.q == 1:
        return str(v.p)
    if v.q > 1 << 16 and not v.q & (v.q - 1) and Fraction(float(v)) == Fraction(v.p, v.q):
        return repr(float(v))
    return f"{v.p}/{v.q}"


def _literal(a) -> str:
    if not isinstance(a, np.ndarray):
        return str(a)
    if a.ndim == 0:
        return str(a[()])

    def nested(x):
        return "[" + ", ".join(nested(y) if isinstance(y, np.ndarray) else str(y)
                               for y in x) + "]"
    return f"np.array({nested(a)})"
