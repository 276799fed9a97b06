"""Routes 2 and 4 of `check_impl`: the function in floating point at exact points.

Where the exact trace cannot run (the code makes a float buffer, calls `math.sqrt`,
`np.float32`, a compiled routine, or is PyTorch code), the function is called in float64
(NumPy arrays, or `torch.float64` tensors for route 4) at `POINTS` points whose every leaf
is exactly representable: eight of small dyadic rationals (x and dy multiples of 1/4, gamma
a non-trivial ±k/4, eps >= 1/8 so that the point is well conditioned; two points take the
special values a branch may test: zeros in gamma, beta and dy, gamma = beta = 1 with a
constant set of x), and two of ordinary float64 numbers (normal draws, eps = 1e-5 and 1e-6
as floats: code that is right only on a grid, such as ((a + c) - c) - a scaled up, or only
away from the default eps, shows there).  Each returned entry
is compared with the model's closed form at that point, enclosed rigorously
(`symbn.impl.enclose`), against the rounding error a correct implementation may have there:

    bound(u) = BOUND_FACTOR * u * (E + |v|)

with v the exact value, E the first-order rounding coefficient of the closed form
(`enclose`) and u the unit roundoff (2^-53 for float64; the returned dtype's if coarser).
Per output:

- `consistent` (never `proved`): every entry at every point within bound(u), u = 2^-53 or
  the returned dtype's (2^-24 for float32 outputs);
- `disproved`: some entry off by more than DISPROOF_MARGIN * bound(2^-24) = 2^35 * the float64
  bound, so that even a correct implementation rounding to float32 somewhere is never
  disproved; the witness names the point, the entries, both values and a pasteable table;
- `unknown` in between (within bound(2^-24) of float64 outputs: noted as what a float32
  intermediate would explain), or where the closed form could not be enclosed.

>>> import numpy as np
>>> def f(dy, x, gamma, eps):  # a float buffer: the exact trace stops at the assignment
...     out = np.zeros(x.shape)
...     out[:] = dy.sum(axis=0)
...     return out
>>> from symbn.models import load
>>> g = load("batchnorm").instantiate(2, 1)
>>> from symbn.impl.signature import parse_signature
>>> sig = parse_signature("dy, x, gamma, eps -> dx", g.model)
>>> route2(f, "f", g, sig, None, 10.0)[0].verdict
'disproved'
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import random
import re
import sys
import time
import types
import warnings
from fractions import Fraction

import mpmath
import numpy as np

from ..errors import SymbnError
from ..prove import DISPROVED, UNKNOWN, Budget, alarm
from ..prove.interface import CONSISTENT
from ..report import Result
from .enclose import PRECISION, Encloser, NotEnclosed, _precision, interval_of

ROUTE_FLOAT = "float64 at exact points"
ROUTE_TORCH = "torch.float64 at exact points"
ROUTE_FLOAT32 = "float32 at exact points"
POINTS = 10
WITHIN_FLOAT32 = "off by up to"  # how a result within float32's rounding bound begins
# beyond this many times the float64 bound, code proved on exact scalars is not taken to
# round like float64 code (the bound is first-order: a correct float64 implementation
# stays far below it, float32 or float16 rounding far above)
FLOAT64_SLACK = 2.0 ** 10


def float64_ratio(result: Result) -> float | None:
    """How many times the float64 rounding bound a result `within float32's` was off."""
    match = re.match(WITHIN_FLOAT32 + r" (\S+) times", result.note or "")
    return float(match.group(1)) if match else None
# the points (from 0): wide, small eps, 50 fraction bits (its arrays passed in Fortran order,
# so that code that reads a C-contiguous layout into its arithmetic shows there), zeros (a
# zero in gamma and beta, zeros in dy), ones (gamma, beta all 1, one set of x constant): the
# special values a branch of the code may test (gamma != 0, gamma == 1, dy == 0, var > 0);
# then two of ordinary floats (normal draws, not on any grid), the second with a mean of 2,
# with eps = 1e-5 (PyTorch's default) and 1e-6 as the floats they are
WIDE, SMALL_EPS, FINE, ZEROS, ONES = 3, 4, 5, 6, 7
ORDINARY = {8: 1e-5, 9: 1e-6}
FLOAT32_POINTS = (0, WIDE, *ORDINARY)  # where route2(float32=True) calls the function
BOUND_FACTOR = 64  # an equivalent formula in another order, pairwise sums, E[x^2] - mu^2
DISPROOF_MARGIN = 64  # times the float32 bound: 2^35 times the float64 one
U64, U32 = 2.0 ** -53, 2.0 ** -24
MAX_LISTED = 8


def points(g, k: int = POINTS) -> list[dict]:
    """k points {leaf symbol: Fraction}, every value a float64 exactly (small dyadic
    rationals, then ordinary floats: `ORDINARY`), the same for the same model and sizes.

    >>> from symbn.models import load
    >>> p = points(load("batchnorm").instantiate(2, 1))
    >>> len(p), all(q.denominator in (1, 2, 4, 8) for q in p[0].values())
    (10, True)
    >>> sorted({str(q) for q in p[8].values() if q == Fraction(1e-5)})  # eps, as a float
    ['5902958103587057/590295810358705651712']
    """
    from .check import _layout

    m = g.model
    rng = random.Random(f"symbn check-impl {m.name} {g.n} {g.d}")
    out = []
    for index in range(k):
        # the fourth point is 16 times as wide (a clip to |dy| <= 2 shows there), the fifth
        # has eps = 2^-17, about 1e-5 (a floor on eps shows there), the sixth has 50
        # fraction bits (a rounding of the inputs to a grid, float16 or float32 shows there)
        scale = 16 if index == WIDE else 1
        point: dict = {}
        for name in [m.gradient, *m.leaves]:
            kind = "element" if name == m.gradient else m.kind(name)
            cells = list(_layout(g, name)[1].values())
            constant = Fraction(rng.randint(-12, 12), 4) if index == ONES else None
            # ZEROS: dy is 0 at the last element of every set, gamma at its first entry (whose
            # gradient and the sets' other terms stay nonzero)
            for number, (symbol, row, group) in enumerate(cells):
                if index in ORDINARY:
                    point[symbol] = _ordinary(rng, kind, name == m.gradient, index)
                    continue
                if kind == "positive":
                    q = Fraction(rng.choice((1, 2, 3, 4)), 8)
                    q = Fraction(1, 1 << 17) if index == SMALL_EPS else q
                elif name == m.gradient:
                    q = scale * Fraction(rng.choice([k for k in range(-8, 9) if k]), 4)
                    q = 0 if index == ZEROS and row == cells[-1][1] else q
                elif kind == "element":
                    q = scale * Fraction(rng.randint(-12, 12), 4)
                    q = constant if index == ONES and group == cells[0][2] else q
                else:  # gamma, beta: non-zero, not +-1
                    q = Fraction(rng.choice((-1, 1)) * rng.choice((2, 3, 5, 6, 7)), 4)
                    q = 0 if index == ZEROS and number == 0 else 1 if index == ONES else q
                if index == FINE:  # |q| < 4: 2 + 50 bits, exact in float64's 53
                    q += Fraction(rng.randint(1, (1 << 48) - 1), 1 << 50)
                point[symbol] = Fraction(q)
        out.append(point)
    return out


def _ordinary(rng: random.Random, kind: str, gradient: bool, index: int) -> Fraction:
    """An ordinary float64 value for a leaf at an `ORDINARY` point, as the exact rational it
    is: a positive leaf the point's eps, x a normal draw (mean 2 at the second point), dy
    and the parameters normal draws."""
    if kind == "positive":
        return Fraction(ORDINARY[index])
    mean = 2.0 if kind == "element" and not gradient and index == max(ORDINARY) else 0.0
    return Fraction(rng.gauss(mean, 1.0))


def uses_torch(function) -> bool:
    """Whether `function` is clearly PyTorch code: torch is imported and the function (or a
    module-level function or class it names) refers to torch.

    >>> uses_torch(len)
    False
    """
    if "torch" not in sys.modules:
        return False
    if _is_torch(function) or _is_torch(type(function)):  # a torch callable, an nn.Module
        return True
    seen: set = set()

    def refers(f, depth: int) -> bool:
        f = inspect.unwrap(f) if callable(f) else f
        code = getattr(f, "__code__", None)
        if code is None or id(f) in seen or depth > 3:
            return False
        seen.add(id(f))
        scope = getattr(f, "__globals__", {})
        for name in _names(code):
            value = scope.get(name)
            if value is None:
                continue
            if _is_torch(value):
                return True
            if isinstance(value, type):
                if any(refers(v, depth + 1) for v in vars(value).values()
                       if isinstance(v, (types.FunctionType, staticmethod, classmethod))
                       for v in [getattr(v, "__func__", v)]):
                    return True
            elif isinstance(value, types.FunctionType) and refers(value, depth + 1):
                return True
        return False
    return refers(function, 0)


def _names(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _is_torch(value) -> bool:
    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[0] == "torch"
    if isinstance(value, type):
        return any(c.__module__.split(".")[0] == "torch" for c in value.__mro__)
    return str(getattr(value, "__module__", None) or "").split(".")[0] == "torch"


def _torch():
    try:
        import torch
    except ImportError as err:
        raise SymbnError(f"arrays='torch' needs PyTorch, which cannot be imported ({err}); "
                         "install torch or pass NumPy code") from None
    return torch


def route2(function, name: str, g, sig, deadline: float | None, timeout: float | None,
           arrays: str = "numpy", leaves=None, warned: list[str] | None = None,
           float64: bool = False, float32: bool = False) -> list[Result]:
    """One `Result` per output in `leaves` (default all of the signature's): consistent,
    disproved or unknown, from the function's values at `points(g)`; the warnings the
    function raised there (NumPy's divide by zero, ...) are added to `warned`.  With
    `float64`, every output is held to float64's rounding whatever dtype it comes back in
    (code proved on exact scalars has no reason to round to float32).  With `float32`, the
    arrays are float32 (NumPy), at `FLOAT32_POINTS` only, their values the points' rounded to
    float32 (scalars such as eps stay Python floats), each output held to its returned
    dtype's rounding."""
    from .check import _layout, _truth

    start = time.monotonic()
    torch = _torch() if arrays == "torch" else None
    leaves = list(sig.outputs if leaves is None else leaves)
    layouts = {leaf: _layout(g, leaf) for leaf in {*sig.inputs, *sig.outputs}}
    truths: dict = {}
    state = {leaf: _Verdict() for leaf in leaves}
    fortran = torch is None and not float32  # FINE's arrays in Fortran order, unless refused
    reused: list = []  # the last call's NumPy arguments, refilled for the next (REFILLED)
    for k, point in enumerate(points(g)):
        if float32:
            if k not in FLOAT32_POINTS:
                continue
            point = _in_float32(point, sig, layouts)
        enc = Encloser(g, point)
        if k in (ZEROS, ONES, *ORDINARY) and not _defined_at(enc, g, leaves, layouts, truths):
            continue  # a user model's leaf that may not be 0 (1 / c), or a point too badly
            #           conditioned to enclose: the point says nothing
        try:
            outputs = _run_at(function, name, sig, layouts, point, deadline, timeout, torch,
                              arrays, warned, fortran=fortran and k == FINE,
                              into=reused, refill=k in REFILLED,
                              dtype=np.float32 if float32 else np.float64)
        except SymbnError:  # code that needs C-contiguous arrays: the values, in C order
            if k != FINE or not fortran:
                raise
            fortran = False
            outputs = _run_at(function, name, sig, layouts, point, deadline, timeout, torch,
                              arrays, warned)
        try:
            with alarm(deadline):
                for leaf in leaves:
                    values, u_out = outputs[leaf]
                    u_out = U64 if float64 else u_out
                    for index, cell in layouts[leaf][1].items():
                        if (leaf, index) not in truths:
                            truths[leaf, index] = _truth(g, leaf, cell)
                        state[leaf].compare(k, point, leaf, index, float(values[index]),
                                            enc, truths[leaf, index], u_out)
        except Budget:
            for v in state.values():
                v.unfinished = f"the time budget ran out at point {k + 1}"
            break
    route = ROUTE_TORCH if arrays == "torch" else ROUTE_FLOAT32 if float32 else ROUTE_FLOAT
    seconds = time.monotonic() - start
    return [state[leaf].result(g, sig, leaf, layouts, route, seconds, fortran, float32)
            for leaf in leaves]


def _in_float32(point: dict, sig, layouts) -> dict:
    """The point with the values of the array inputs rounded to float32 (exact there)."""
    point = dict(point)
    for leaf in sig.inputs:
        shape, cells = layouts[leaf]
        if shape != ():
            for symbol, _, _ in cells.values():
                point[symbol] = Fraction(float(np.float32(point[symbol])))
    return point


def _defined_at(enc, g, leaves, layouts, truths) -> bool:
    """Whether every entry of the derivative can be enclosed at the encloser's point."""
    from .check import _truth

    for leaf in leaves:
        for index, cell in layouts[leaf][1].items():
            if (leaf, index) not in truths:
                truths[leaf, index] = _truth(g, leaf, cell)
            try:
                enc.enclose(truths[leaf, index])
            except NotEnclosed:
                return False
    return True


def values_at(function, name: str, g, sig, point: dict, deadline: float | None,
              timeout: float | None) -> dict:
    """{leaf: float64 array} of the function's outputs at one exact point (NumPy arrays)."""
    from .check import _layout

    layouts = {leaf: _layout(g, leaf) for leaf in {*sig.inputs, *sig.outputs}}
    outputs = _run_at(function, name, sig, layouts, point, deadline, timeout)
    return {leaf: a for leaf, (a, _) in outputs.items()}


def _run_at(function, name, sig, layouts, point, deadline, timeout, torch=None,
            arrays="numpy", warned=None, fortran: bool = False, into: list | None = None,
            refill: bool = False, dtype=np.float64) -> dict:
    """{leaf: (float64 array, unit roundoff)} of the function called at one exact point.
    `into` keeps the arguments of the last call; with `refill`, they are filled in place
    with this point's values where they fit, so that the function sees the same array
    objects with new values (a cache keyed on id(x) returns the old batch's statistics)."""
    args = [_float_array(*layouts[leaf], point, torch, dtype) for leaf in sig.inputs]
    if fortran:
        args = [np.asfortranarray(a) if isinstance(a, np.ndarray) else a for a in args]
    if into is not None:
        if refill and len(into) == len(args):
            args = [_refill(old, a) for old, a in zip(into, args)]
        into[:] = args
    before = [None if (p := _plain(a)) is None else p.copy() for a in args]
    returned = _call_float(function, name, args, deadline, timeout, arrays, warned, sig)
    for arg, old, user in zip(args, before, sig.input_names):
        if old is not None and user not in WRITES:
            new = _plain(arg)
            if new.shape != old.shape or not np.array_equal(new, old):
                WRITES[user] = _changed_entry(user, old, new)
    _kept(returned, sig, args)
    return _outputs(returned, sig, layouts, name, torch)


# the points whose arguments are the previous point's arrays refilled (`_run_at`): not the
# first, nor FINE (in Fortran order) and the special points that follow it
REFILLED = (2, 4)


def _refill(old, new):
    """`old` holding `new`'s values, if both are NumPy arrays of one shape and dtype."""
    if isinstance(old, np.ndarray) and isinstance(new, np.ndarray) and old.shape == new.shape \
            and old.dtype == new.dtype:
        try:
            old.flags.writeable = True  # the checker's own array, whatever the code set
        except ValueError:
            return new
        old[...] = new
        return old
    return new


def _kept(returned, sig, args) -> None:
    """Record in REUSED an array one of the last KEEP calls returned that this call changed
    (a buffer, or buffers in turn, the function keeps and returns again), then keep this
    call's arrays and their values; an array that is a view of an argument (which the
    checker refills) is not kept."""
    for leaf, array, old in KEPT:
        if leaf not in REUSED and (array.shape != old.shape or not np.array_equal(
                array, old, equal_nan=array.dtype.kind in "fc")):
            REUSED[leaf] = _changed_entry(f"d{leaf}", old, array)
    ours = [a for a in args if isinstance(a, np.ndarray)]
    values = returned if isinstance(returned, (tuple, list)) else (returned,)
    KEPT[:] = KEPT[-KEEP * len(sig.outputs):] + [
        (leaf, a, a.copy()) for leaf, a in zip(sig.outputs, values)
        if isinstance(a, np.ndarray) and a.dtype != object
        and not any(np.may_share_memory(a, b) for b in ours)]


KEEP = 3  # the calls whose returned arrays are watched (double buffering: two in turn)


# the arguments the function wrote into, {its name for it: the first changed entry}: filled
# by the float calls of a check (the exact trace works on copies), emptied at its start
WRITES: dict[str, str] = {}
# the outputs a later call overwrote ({leaf: the first changed entry}), and the arrays the
# last float call returned, with copies of their values: likewise per check
REUSED: dict[str, str] = {}
KEPT: list = []


def _plain(a) -> np.ndarray | None:
    """An argument's values as a NumPy array (a tensor's too); None for a scalar."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return None


def _changed_entry(user: str, old: np.ndarray, new: np.ndarray) -> str:
    if new.shape != old.shape:
        return f"{user} has shape {new.shape} after the call, {old.shape} before"
    index = next(i for i in np.ndindex(old.shape)
                 if old[i] != new[i] and not (old[i] != old[i] and new[i] != new[i]))
    where = ", ".join(map(str, index))
    return (f"{user}[{where}] is {float(new[index])!r} after the call, "
            f"{float(old[index])!r} before")


def _float_array(shape, cells, point, torch, dtype=np.float64):
    if shape == ():
        return float(point[cells[()][0]])  # scalars (eps) as Python floats
    a = np.empty(shape, dtype=dtype)
    for index, (symbol, _, _) in cells.items():
        a[index] = float(point[symbol])  # exact in the dtype
    return torch.tensor(a, dtype=torch.float64) if torch is not None else a


def _call_float(function, name, args, deadline, timeout, arrays, warned=None, sig=None):
    from .check import _where

    what = "torch.float64 tensors" if arrays == "torch" else "float64 NumPy arrays"
    caught: list = []
    try:
        with alarm(deadline), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return function(*args)
    except Budget:
        raise SymbnError(f"{name} did not return within the budget of {timeout:g} s (called "
                         f"with {what}); raise timeout= or use a smaller n") from None
    except KeyboardInterrupt:  # Ctrl-C, or the code raising it: an interrupt either way
        raise
    except BaseException as err:  # noqa: BLE001 - the user's code may raise anything
        from .load import _one_line

        hint = ""
        if sig is not None and isinstance(err, TypeError) and re.search(
                r"(positional|keyword)[- ]", str(err)) and _where(err) == "":
            hint = (f"; it was called as {name}({', '.join(sig.input_names)}): give "
                    "--signature to map its parameters")
        raise SymbnError(f"{name} raised {type(err).__name__}: {_one_line(err)}{_where(err)} "
                         f"(called with {what}){hint}") from None
    finally:
        if warned is not None:
            warned += [f"{w.message} at {os.path.abspath(w.filename)}:{w.lineno}"
                       for w in caught]


def _outputs(returned, sig, layouts, name, torch) -> dict:
    """{leaf: (float64 array, unit roundoff of the returned dtype)}, or a one-line error."""
    k = len(sig.outputs)
    if k == 1 and not isinstance(returned, (tuple, list)):
        returned = (returned,)
    if not isinstance(returned, (tuple, list)) or len(returned) != k:
        got = "None" if returned is None else type(returned).__name__ + \
            (f" of {len(returned)}" if isinstance(returned, (tuple, list)) else "")
        raise SymbnError(f"{name} returned {got}; the signature '{sig}' expects {k} "
                         f"output{'s' * (k > 1)}")
    out = {}
    for leaf, value in zip(sig.outputs, returned):
        shape = layouts[leaf][0]
        if value is None:
            raise SymbnError(f"{name} returned None for d{leaf}; expected shape {shape}")
        u = 0.0
        if hasattr(value, "detach") and type(value).__module__.startswith("torch"):
            import torch as t  # only reached with a tensor in hand

            if value.dtype.is_floating_point:
                u = float(t.finfo(value.dtype).eps) / 2
            value = value.detach().to(t.float64).cpu().numpy()
        a = np.asarray(value)
        if a.dtype.kind == "f":  # the returned dtype's: a tensor's, before float64 above
            u = max(u, float(np.finfo(a.dtype).eps) / 2)
        if a.dtype.kind == "c":  # a complex entry is wrong (NaN here); a real one compares
            u = float(np.finfo(a.dtype).eps) / 2
            a = np.where(a.imag != 0, np.nan, a.real)
        try:
            a = _as_float64(a)
        except (TypeError, ValueError):
            raise SymbnError(f"{name} returned d{leaf} of dtype {a.dtype}; expected real "
                             "numbers") from None
        if a.shape != shape:
            raise SymbnError(f"{name} returned d{leaf} of shape {a.shape}; expected {shape} "
                             f"(signature '{sig}')")
        out[leaf] = (a, u)
    return out


def _as_float64(a: np.ndarray) -> np.ndarray:
    """`a` in float64; an entry too large for it (a Python int of 400 digits) is +-inf,
    which compares as wrong, as the value is."""
    try:
        return a.astype(np.float64)
    except OverflowError:
        return np.vectorize(_float_or_inf, otypes=[np.float64])(a)


def _float_or_inf(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


class _Verdict:
    """The comparisons of one output: the worst error relative to the float64 bound, the
    first disproof, and why an entry could not be compared."""

    def __init__(self):
        self.worst = 0.0  # max error / bound(float64)
        self.single = False  # some entry needed the float32 bound
        self.beyond = None  # (ratio, label, point number, margin): short of a disproof
        self.disproof = None  # (point number, point, [(label, index, impl, value, err,
        #                        bound, threshold)])
        self.skipped = None
        self.unfinished = None
        self.count = 0
        self.points: set = set()  # the points compared (a special point may be passed over)
        self.u = U64  # the returned dtype's unit roundoff, if coarser

    def compare(self, k, point, leaf, index, impl, enc, truth, u_out) -> None:
        from .check import _label

        if self.disproof is not None and self.disproof[0] != k:
            return
        try:
            value, e = enc.enclose(truth)
        except NotEnclosed as err:
            self.skipped = self.skipped or f"{_label(leaf, index)} at point {k + 1}: {err}"
            return
        self.count += 1
        self.points.add(k)
        u_work, u_loose = max(U64, u_out), max(U32, u_out)
        self.u = max(self.u, u_work)
        with _precision():  # decisions on rigorous interval bounds; floats only to print
            bound = BOUND_FACTOR * u_work * e
            loose = BOUND_FACTOR * u_loose * e
            threshold = DISPROOF_MARGIN * loose
            gap = abs(interval_of(Fraction(impl)) - value) if np.isfinite(impl) else None
            if gap is None or (gap.a > threshold) is True:
                if self.disproof is None:
                    self.disproof = (k, point, [])
                err = float("inf") if gap is None else float(gap.a.a)
                self.disproof[2].append((_label(leaf, index), index, impl, value, err,
                                         float(bound.b), float(threshold.b)))
                return
            within, within_loose = (gap.b <= bound) is True, (gap.b <= loose) is True
            ratio = float((gap.b / bound).b) if (bound > 0) is True else \
                (0.0 if within else float("inf"))
        self.worst = max(self.worst, ratio)
        if not within:
            if within_loose:
                self.single = True
            elif self.beyond is None or ratio > self.beyond[0]:
                margin = DISPROOF_MARGIN * u_loose / u_work
                self.beyond = (ratio, _label(leaf, index), k + 1, margin)

    def result(self, g, sig, leaf, layouts, route, seconds, fortran: bool = False,
               float32: bool = False) -> Result:
        if self.disproof is not None:
            return self._disproved(g, sig, leaf, layouts, route, seconds, fortran, float32)
        why = self.unfinished or self.skipped
        if self.beyond is not None:
            ratio, label, k, margin = self.beyond
            why = (f"{label} at point {k} is off by {ratio:.3g} times the rounding bound: "
                   "more than a correct implementation's rounding, less than the margin of a "
                   f"disproof ({margin:.3g} times)")
        if why is not None:
            return Result(f"d{leaf}", UNKNOWN, route, seconds, note=why)
        kind = "float64" if self.u == U64 else f"u = 2^{math.log2(self.u):.0f} (the returned dtype's)"
        if self.u > U32:
            return Result(f"d{leaf}", UNKNOWN, route, seconds, note=(
                f"returned in a dtype coarser than float32 ({kind}): its rounding bound "
                "cannot tell a wrong formula from rounding; return float32 or float64"))
        if self.single:
            return Result(f"d{leaf}", UNKNOWN, route, seconds, note=(
                f"{WITHIN_FLOAT32} {self.worst:.3g} times the float64 rounding bound, within the "
                "float32 one: right if the code rounds to float32 somewhere (return float32 "
                "arrays to be checked at that precision), or slightly wrong"))
        return Result(f"d{leaf}", CONSISTENT, route, seconds, note=(
            f"{len(self.points)} points, {self.count} comparisons: error at most {self.worst:.2g} times "
            f"the {kind} rounding bound"))

    def _disproved(self, g, sig, leaf, layouts, route, seconds, fortran: bool,
                   float32: bool = False) -> Result:
        from .check import _witness

        k, point, wrong = self.disproof
        fortran = fortran and k == FINE
        # the witness: the entry furthest beyond its threshold at the first point that fails
        label, index, impl, value, err, bound, threshold = max(wrong, key=lambda w: w[4] / w[6])
        with mpmath.mp.workprec(PRECISION):
            exact = mpmath.nstr(mpmath.mpf(value.mid), 17)
        found = {"point": {str(s): str(q) for s, q in point.items()},
                 "lhs": repr(impl), "rhs": exact, "fortran": fortran, "float32": float32}
        witness = _witness(g, sig, leaf, index, layouts, None, found)
        labels = [w[0] for w in wrong]
        listed = ", ".join(labels[:MAX_LISTED]) + (", ..." if len(labels) > MAX_LISTED else "")
        witness = {"entry": label, "implementation": repr(impl), "true": exact,
                   "entries": f"{len(labels)} of {len(layouts[leaf][1])} wrong: {listed}",
                   "error": f"{err:.3g} (a correct implementation's rounding: at most "
                            f"{bound:.3g}; disproved beyond {threshold:.3g})",
                   **({"arrays": "in Fortran order (numpy.asfortranarray), as passed"}
                      if fortran else {}),
                   **({"arrays": "float32 (the points' values rounded to float32)"}
                      if float32 else {}),
                   **{key: v for key, v in witness.items() if key in ("point", "table")}}
        return Result(f"d{leaf}", DISPROVED, route, seconds, witness,
                      note=f"{label} at point {k + 1} of {POINTS}")
