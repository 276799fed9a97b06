"""Differential fuzzer for ``symbn check-impl``: verdicts against an independent exact reference.

Generates backward implementations of a model (batchnorm, batchnorm-unbiased, layernorm,
rmsnorm) as Python source written to temp files: right reference implementations in several
styles (vectorised methods, np.mean/np.sum functions, explicit loops with +=, einsum, ``@``,
the staged computational graph; float constants 0.5, ``** -0.5``, ``** -1.5``; ddof
variants), to which random mutations modelled on shipped bugs are applied (Jacobian diagonal
only, sigma for 1/sigma, ddof=1 forward with 1/N backward and the reverse, gamma on the wrong
factor, missing gamma, wrong reduction axis, 1/shape[0] for 1/N, a dropped term, a sign flip,
a wrong constant, eps outside the sqrt, dgamma/dbeta summed over the wrong axis, N - 1 for N,
mean for sum), plus a random AST edit.  Each mutant goes through ``symbn.impl.check_impl``
(every ``--cli-every``-th also through ``symbn check-impl --json`` in a subprocess) and every
output's verdict is cross-checked with a reference that shares no code with symbn:

- the mutant itself, run on object arrays of this script's exact rationals (``Q``) at points
  where the model's radicands are rational squares, or of 256-bit mpmath intervals (``IV``)
  elsewhere (floats in the code read as the binary rationals they are, as symbn reads them);
- the true vector-Jacobian product from tests/oracle.py (exact Jacobian entries
  ``D(y[r], x[j])`` etc. per set, contracted with dy);
- PyTorch float64 autograd of F.batch_norm / F.layer_norm / F.rms_norm (a manual formula for
  the unbiased variance) against the oracle at every point: a check of the reference itself.

Finding kinds (severe):

  PROVED-WRONG     an output `proved`, but the reference refutes it at some point
  DISPROVED-RIGHT  an output `disproved` that equals the reference (up to rounding) at every
                   tested point, and whose witness, re-evaluated, does not separate (a
                   `definedness` disproof is re-checked as what it says: the mutant in
                   float64 returns NaN or inf at the witness, where the truth is finite)
  BAD-WITNESS      `disproved`, but the witness does not separate (or its values are wrong)
  CRASH            an exception other than SymbnError, or the CLI's exit code 4, a traceback,
                   or an exit code that is not documented
  HANG             a case exceeded --alarm seconds
  REFERENCE        the oracle and torch disagree: the fuzzer's own reference is wrong

Recorded, not severe: ROUNDING-WITNESS (an exact-trace disproof of an output the reference
also refutes, but whose witness separates only by the rounding of a float in the code, such
as 1 / n = 0.333..., so that the function run in float64 there agrees with the table),
WITNESS-UNCHECKED (the mutant raises at the witness, where symbn set the leaves the entry
does not depend on to 1; the reference refutes the output elsewhere), MISSED (consistent or unknown where the reference differs far beyond
rounding), CLI-MISMATCH (library and CLI verdicts differ), REF-ERROR (the reference could
not evaluate the mutant), SYMBN-ERROR (a SymbnError where the reference runs the mutant).

Usage (single process; from the repository root, dev venv active):

    python scripts/fuzz_check_impl.py --model layernorm --seed 1 --minutes 8
        [--max-cases 500] [--log fuzz.jsonl] [--verbose] [--cli-every 25]

``--model all`` rotates through the four models.  Prints verdict counts and every severe
finding with its mutant source and a reproducing command; with --log, one JSON line per
case.  Exit status 1 if a severe finding was made.
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import sympy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from oracle import Oracle

MODELS = ("batchnorm", "batchnorm-unbiased", "layernorm", "rmsnorm")
SEVERE = ("PROVED-WRONG", "DISPROVED-RIGHT", "BAD-WITNESS", "CRASH", "HANG", "REFERENCE")
IV_PREC = 256
ROUNDING = 1e-12  # relative gaps below this are float rounding (1.0/3 for 1/3), not bugs
FLOAT_ROUNDING = 1e-9  # the same for a mutant run in float64 (the reference's float tier)
FAR = 1e-6  # a float64 gap beyond this (relative) is no rounding
SQUARE_POINTS, PLAIN_POINTS, EXTRA_POINTS = 3, 2, 3


def columns(model: str) -> bool:
    """Whether the model's sets are columns of (N, D) arrays (batchnorm-like, axis 0)."""
    return model.startswith("batchnorm")


# -- exact and interval scalars --------------------------------------------------------------
class NotSquare(ArithmeticError):
    """A square root (or half power) of a rational that is not a rational square."""


def _fraction(o) -> Fraction | None:
    if isinstance(o, (bool, np.bool_)):
        return Fraction(int(o))
    if isinstance(o, (int, np.integer)):
        return Fraction(int(o))
    if isinstance(o, (float, np.floating)):
        if not math.isfinite(o):
            raise ArithmeticError(f"non-finite float {o!r}")
        return Fraction(float(o))  # the binary rational the float is
    if isinstance(o, Fraction):
        return o
    return None


def _exact_sqrt(q: Fraction) -> Fraction:
    if q < 0:
        raise NotSquare(f"sqrt of negative {q}")
    p, d = q.numerator, q.denominator
    rp, rd = math.isqrt(p), math.isqrt(d)
    if rp * rp != p or rd * rd != d:
        raise NotSquare(f"sqrt({q})")
    return Fraction(rp, rd)


class _Scalar:
    """Arithmetic for NumPy's object loops; subclasses say how numbers lift and roots go."""

    __slots__ = ("v",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, v):
        self.v = v

    def _lift(self, o):
        raise NotImplementedError

    def _bin(self, o, op, reflected=False):
        w = o.v if isinstance(o, type(self)) else self._lift(o)
        if w is None:
            return NotImplemented
        return type(self)(op(w, self.v) if reflected else op(self.v, w))

    def __add__(self, o):
        return self._bin(o, lambda a, b: a + b)

    def __radd__(self, o):
        return self._bin(o, lambda a, b: a + b, True)

    def __sub__(self, o):
        return self._bin(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._bin(o, lambda a, b: a - b, True)

    def __mul__(self, o):
        return self._bin(o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._bin(o, lambda a, b: a * b, True)

    def __truediv__(self, o):
        return self._bin(o, self._div)

    def __rtruediv__(self, o):
        return self._bin(o, self._div, True)

    def __neg__(self):
        return type(self)(-self.v)

    def __pos__(self):
        return self

    def __abs__(self):
        return type(self)(abs(self.v))

    def conjugate(self):
        return self

    @property
    def real(self):
        return self

    def __pow__(self, o):
        e = o.v if isinstance(o, Q) else _fraction(o)
        if e is None:
            return NotImplemented
        return type(self)(self._power(self.v, e))

    def __rpow__(self, o):
        base = self._lift(o)
        if base is None or not isinstance(self, Q):
            return NotImplemented
        return Q(self._power(base, self.v))

    def sqrt(self):
        return type(self)(self._power(self.v, Fraction(1, 2)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.v})"


class Q(_Scalar):
    """An exact rational; a square root exists only of a rational square (else NotSquare)."""

    __slots__ = ()

    def _lift(self, o):
        return _fraction(o)

    @staticmethod
    def _div(a, b):
        if b == 0:
            raise ZeroDivisionError("division by 0")
        return a / b

    @staticmethod
    def _power(b: Fraction, e: Fraction) -> Fraction:
        if e.denominator == 1:
            if b == 0 and e < 0:
                raise ZeroDivisionError("0 to a negative power")
            return b ** int(e)
        if e.denominator == 2:
            r = _exact_sqrt(b)
            if r == 0 and e < 0:
                raise ZeroDivisionError("0 to a negative power")
            return r ** e.numerator
        raise NotSquare(f"{b} ** {e}")

    def __float__(self) -> float:  # a float buffer in the code: as inexact as NumPy makes it
        return float(self.v)


@contextlib.contextmanager
def _ivprec():
    previous = mpmath.iv.prec
    mpmath.iv.prec = IV_PREC
    try:
        yield
    finally:
        mpmath.iv.prec = previous


def _ivq(q: Fraction):
    return mpmath.iv.mpf(q.numerator) / mpmath.iv.mpf(q.denominator)


class IV(_Scalar):
    """A real enclosed in a 256-bit mpmath interval (outward rounding)."""

    __slots__ = ()

    def __float__(self) -> float:  # a float buffer in the code: as inexact as NumPy makes it
        return float(self.v.mid)

    def _lift(self, o):
        q = _fraction(o)
        return None if q is None else _ivq(q)

    @staticmethod
    def _div(a, b):
        if b.a <= 0 <= b.b:
            raise ZeroDivisionError("a divisor interval contains 0")
        return a / b

    @staticmethod
    def _power(b, e: Fraction):
        if e.denominator == 1:
            k = int(e)
            if k < 0:
                return IV._div(mpmath.iv.mpf(1), b ** (-k))
            return b ** k
        if e.denominator == 2:
            if b.a < 0:
                raise ArithmeticError("a radicand interval reaches below 0")
            r = mpmath.iv.sqrt(b)
            return IV._power(r, Fraction(e.numerator))
        raise ArithmeticError(f"power {e}")


# -- layouts and points ----------------------------------------------------------------------
def shapes(model: str, n: int, d: int) -> dict[str, tuple]:
    """Array shapes of x/dy and of the parameters in check-impl's layout."""
    if columns(model):
        return {"x": (n, d), "gamma": (d,), "beta": (d,)}
    return {"x": (d, n), "gamma": (n,), "beta": (n,)}


def build_arrays(model: str, n: int, d: int, point: dict, scalar) -> dict:
    """{'dy', 'x', 'gamma', 'eps'} in the layout, from a point keyed like symbn's witnesses
    ('x[i,c]' element i of set c, 'gamma[k]', 'eps'); `scalar` wraps each Fraction."""
    sh = shapes(model, n, d)
    out = {}
    for name in ("dy", "x"):
        a = np.empty(sh["x"], dtype=object)
        for i in range(1, n + 1):
            for c in range(1, d + 1):
                idx = (i - 1, c - 1) if columns(model) else (c - 1, i - 1)
                a[idx] = scalar(Fraction(point[f"{name}[{i},{c}]"]))
        out[name] = a
    g = np.empty(sh["gamma"], dtype=object)
    for k in range(sh["gamma"][0]):
        g[k] = scalar(Fraction(point[f"gamma[{k + 1}]"]))
    out["gamma"] = g
    out["eps"] = scalar(Fraction(point["eps"]))
    return out


def _small(rng: random.Random, nonzero: bool = False, dyadic: bool = False) -> Fraction:
    while True:
        q = Fraction(rng.randint(-12, 12), rng.choice((1, 2, 4) if dyadic else (1, 2, 3, 4)))
        if q or not nonzero:
            return q


def _radicand(model: str, z: list[Fraction]) -> Fraction:
    n = len(z)
    if model == "rmsnorm":
        return sum(t * t for t in z) / n
    mu = sum(z) / n
    return sum((t - mu) ** 2 for t in z) / (n - 1 if model == "batchnorm-unbiased" else n)


def random_point(rng: random.Random, model: str, n: int, d: int, square: bool,
                 dyadic: bool = False) -> dict:
    """A random exact point.  `square`: eps = m^2 and every set's x = shift + k z with k
    chosen (a line through (0, m) on k^2 r + m^2 = s^2) so that its radicand is a square.
    `dyadic` (not square): every value exactly a float64."""
    p: dict = {}
    m = rng.choice((Fraction(1, 2), Fraction(1), Fraction(3, 2), Fraction(1, 3), Fraction(2)))
    p["eps"] = m * m if square else rng.choice(
        (Fraction(1, 8), Fraction(1), Fraction(5, 2)) if dyadic else
        (Fraction(1, 8), Fraction(1, 3), Fraction(1), Fraction(5, 2), Fraction(3, 7)))
    for c in range(1, d + 1):
        while True:
            z = [Fraction(rng.randint(-4, 4)) for _ in range(n)]
            r = _radicand(model, z)
            if r > 0 or (n == 1 and model != "rmsnorm"):
                break
        if square and r > 0:
            while True:
                t = Fraction(rng.randint(-5, 5), rng.choice((1, 2, 3)))
                if t * t != r and t != 0:
                    break
            k = 2 * m * t / (r - t * t)
            shift = Fraction(0) if model == "rmsnorm" else _small(rng)
            xs = [shift + k * zi for zi in z]
        else:
            xs = [_small(rng, dyadic=dyadic) for _ in range(n)]
        for i in range(1, n + 1):
            p[f"x[{i},{c}]"] = xs[i - 1]
            p[f"dy[{i},{c}]"] = _small(rng, nonzero=True, dyadic=dyadic)
    for k in range(1, shapes(model, n, d)["gamma"][0] + 1):
        p[f"gamma[{k}]"] = rng.choice((-1, 1)) * Fraction(rng.choice((2, 3, 5, 7)),
                                                           rng.choice((1, 2, 4)))
        p[f"beta[{k}]"] = _small(rng, dyadic=dyadic)
    return p


# -- the reference: the oracle's exact VJP, checked against torch ----------------------------
_ORACLES: dict = {}


def _oracle(model: str, n: int) -> Oracle:
    key = (model, n)
    if key not in _ORACLES:
        _ORACLES[key] = Oracle(n, model=model)
    return _ORACLES[key]


def outputs_of(model: str) -> tuple[str, ...]:
    """The model's gradient outputs, in the default signature's order."""
    return ("x", "gamma") if model == "rmsnorm" else ("x", "gamma", "beta")


def truth(model: str, n: int, d: int, point: dict) -> dict[str, np.ndarray]:
    """{'x', 'gamma'(, 'beta')}: exact VJP for dy at the point, as SymPy numbers: the oracle's
    Jacobian entries of each set contracted with that set's dy."""
    o = _oracle(model, n)
    along = not columns(model)
    sh = shapes(model, n, d)
    out = {"x": np.empty(sh["x"], dtype=object)}
    for leaf in outputs_of(model)[1:]:
        out[leaf] = np.full(sh[leaf], sympy.Integer(0), dtype=object)
    for c in range(1, d + 1):
        q = {f"x[{i}]": point[f"x[{i},{c}]"] for i in range(1, n + 1)}
        q["eps"] = point["eps"]
        for leaf in outputs_of(model)[1:]:
            if along:
                q.update({f"{leaf}[{i}]": point[f"{leaf}[{i}]"] for i in range(1, n + 1)})
            else:
                q[leaf] = point[f"{leaf}[{c}]"]
        dy = [sympy.Rational(str(Fraction(point[f"dy[{r},{c}]"]))) for r in range(1, n + 1)]

        def vjp(wrt: str, q=q, dy=dy) -> sympy.Expr:
            return sympy.Add(*[dy[r - 1] * o.value(f"D(y[{r}], {wrt})", q)
                               for r in range(1, n + 1)])
        for j in range(1, n + 1):
            out["x"][(j - 1, c - 1) if not along else (c - 1, j - 1)] = vjp(f"x[{j}]")
        for leaf in outputs_of(model)[1:]:
            if along:
                for j in range(1, n + 1):
                    out[leaf][j - 1] += vjp(f"{leaf}[{j}]")
            else:
                out[leaf][c - 1] = vjp(leaf)
    return out


def to_interval(e: sympy.Expr):
    """A rigorous 256-bit interval of an exact algebraic SymPy number (+, *, rational powers
    with denominator 1 or 2)."""
    e = sympy.sympify(e)
    if e.is_Rational:
        return _ivq(Fraction(int(e.p), int(e.q)))
    if e.is_Add:
        out = mpmath.iv.mpf(0)
        for a in e.args:
            out += to_interval(a)
        return out
    if e.is_Mul:
        out = mpmath.iv.mpf(1)
        for a in e.args:
            out *= to_interval(a)
        return out
    if e.is_Pow and e.exp.is_Rational:
        return IV._power(to_interval(e.base), Fraction(int(e.exp.p), int(e.exp.q)))
    raise ArithmeticError(f"cannot enclose {e}")


def torch_vjp(model: str, n: int, d: int, point: dict) -> dict[str, np.ndarray]:
    """The VJP by PyTorch float64 autograd of the library's own normalization."""
    import torch
    import torch.nn.functional as F

    a = build_arrays(model, n, d, point, float)
    x = torch.tensor(a["x"].astype(float), dtype=torch.float64, requires_grad=True)
    dy = torch.tensor(a["dy"].astype(float), dtype=torch.float64)
    g = torch.tensor(a["gamma"].astype(float), dtype=torch.float64, requires_grad=True)
    beta = np.array([float(Fraction(point[f"beta[{k + 1}]"])) for k in range(len(a["gamma"]))])
    b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    eps = float(Fraction(point["eps"]))
    if model == "batchnorm":
        y = F.batch_norm(x, None, None, g, b, training=True, eps=eps)
    elif model == "batchnorm-unbiased":
        y = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + eps) * g + b
    elif model == "layernorm":
        y = F.layer_norm(x, (n,), g, b, eps)
    else:
        y = F.rms_norm(x, (n,), g, eps)
    leaves = [x, g] if model == "rmsnorm" else [x, g, b]
    grads = torch.autograd.grad(y, leaves, dy, allow_unused=True)
    return {leaf: (np.zeros(t.shape) if gr is None else gr.numpy())
            for leaf, gr, t in zip(outputs_of(model), grads, leaves)}


# -- comparing values ------------------------------------------------------------------------
def _to_exact(v):
    """A returned entry as Fraction (exact tier) or an interval."""
    if isinstance(v, Q):
        return v.v
    if isinstance(v, IV):
        return v.v
    q = _fraction(v)
    if q is None:
        raise TypeError(f"entry {v!r} of type {type(v).__name__}")
    return q


def compare(got, true: sympy.Expr) -> tuple[str, float]:
    """('equal' | 'differ' | 'undecided', relative gap): exact for Fractions at rational truth,
    else by 256-bit intervals ('equal' there means agreement to ~1e-60)."""
    with _ivprec():
        if isinstance(got, Fraction) and true.is_Rational:
            t = Fraction(int(true.p), int(true.q))
            gap = abs(got - t)
            return ("equal" if gap == 0 else "differ"), float(gap / (1 + abs(t)))
        a = got if not isinstance(got, Fraction) else _ivq(got)
        b = to_interval(true)
        diff = a - b
        scale = 1 + float(abs(b).b)
        if diff.a > 0 or diff.b < 0:
            return "differ", float(min(abs(diff.a), abs(diff.b))) / scale
        if float(diff.delta) < 1e-60 * scale:
            return "equal", float(max(abs(diff.a), abs(diff.b))) / scale
        return "undecided", float(diff.delta) / scale


# -- implementations: right references in several styles, with mutation knobs ---------------
KNOBS_RIGHT = {"n": "n", "ddof": None, "bdiv": None, "mdiv": "n", "eps": "in", "inv": True,
               "gamma": "right", "drop": None, "sign": None, "diag": False, "pax_g": "0",
               "pax_b": "0", "red_g": "sum", "red_b": "sum", "half": "0.5", "two": "2",
               "cube": "3", "shape": "right", "rax": "right", "recip": False, "zero": False,
               "compound": False}
STYLES = ("vec", "np", "loops", "einsum", "matmul", "staged", "inplace")


def right_knobs(model: str) -> dict:
    k = dict(KNOBS_RIGHT)
    unbiased = model == "batchnorm-unbiased"
    k["ddof"] = 1 if unbiased else 0
    k["bdiv"] = "(n - 1)" if unbiased else "n"
    return k


def rewrite_knobs(k: dict, rng: random.Random) -> None:
    """Right rewrites: float reciprocals (1 / n), an exactly-zero term, the float 1 - 1/n."""
    k["recip"] = rng.random() < 0.2
    k["zero"] = rng.random() < 0.1
    k["compound"] = rng.random() < 0.1


MUTATIONS = {
    "diagonal-only": lambda k, m, r: k.update(diag=True),
    "sigma-for-inverse": lambda k, m, r: k.update(inv=False),
    "ddof-forward": lambda k, m, r: k.update(ddof=1 - k["ddof"]),
    "ddof-backward": lambda k, m, r: k.update(
        bdiv="n" if k["bdiv"] != "n" else "(n - 1)"),
    "gamma-wrong-factor": lambda k, m, r: k.update(gamma=r.choice(("outside", "first"))),
    "missing-gamma": lambda k, m, r: k.update(gamma="missing"),
    "wrong-reduction-axis": lambda k, m, r: k.update(rax="wrong"),
    "shape0-for-n": lambda k, m, r: k.update(shape="wrong"),
    "dropped-term": lambda k, m, r: k.update(drop=r.choice(("mean", "xhat"))),
    "sign-flip": lambda k, m, r: k.update(sign=r.choice(("mean", "xhat"))),
    "wrong-constant": lambda k, m, r: k.update(**r.choice(
        ({"half": "1 / 3"}, {"two": "3"}, {"cube": "2"}, {"half": "0.25"}))),
    "eps-outside-sqrt": lambda k, m, r: k.update(eps="out"),
    "eps-constant": lambda k, m, r: k.update(eps="constant"),
    "param-wrong-axis": lambda k, m, r: k.update(
        **{r.choice(("pax_g", "pax_b")): "-1" if not columns(m) else r.choice(("1", "-1"))}),
    "off-by-one-n": lambda k, m, r: k.update(mdiv="(n - 1)"),
    "mean-for-sum": lambda k, m, r: k.update(**{r.choice(("red_g", "red_b")): "mean"}),
}


class Layout:
    """Source fragments for the model's layout: reduction axis, keepdims, index order."""

    def __init__(self, model: str, k: dict):
        self.cols = columns(model)
        self.rms = model == "rmsnorm"
        wrong = k["rax"] == "wrong"
        self.ax = ("-1" if wrong else "0") if self.cols else ("0" if wrong else "-1")
        self.kd = "" if self.cols else ", keepdims=True"
        right_n = "x.shape[0]" if self.cols else "x.shape[-1]"
        wrong_n = "x.shape[1]" if self.cols else "x.shape[0]"
        self.n = wrong_n if k["shape"] == "wrong" else right_n


def _dx_terms(k: dict, s1: str, s2: str, g: str, xh: str, inv: str) -> str:
    """inv * (g - s1/mdiv - xhat*s2/bdiv) with the drop/sign/gamma mutations."""
    t1, t2 = f"{s1} / {k['mdiv']}", f"{xh} * {s2} / {k['bdiv']}"
    if k["recip"]:  # 1 / n is a Python float: 1/3 rounded at n = 3 (never exact)
        t1, t2 = f"{s1} * (1 / {k['mdiv']})", f"{xh} * {s2} * (1.0 / {k['bdiv']})"
    if k["compound"]:  # g - sum(g)/n as g * (1 - 1/n) - (sum(g) - g)/n: a float 1 - 1/n
        g, t1 = f"{g} * (1 - 1 / {k['mdiv']})", f"({s1} - {g}) / {k['mdiv']}"
    terms = [("", g), ("-", t1), ("-", t2)]
    for which, pos in (("mean", 1), ("xhat", 2)):
        if k["sign"] == which:
            terms[pos] = ("+", terms[pos][1])
        if k["drop"] == which:
            terms[pos] = None
    body = " ".join(f"{sgn} {t}" if sgn else t for sgn, t in (x for x in terms if x))
    out = f"{inv} * ({body})"
    return f"gamma * {out}" if k["gamma"] == "outside" else out


def _reducer(L: Layout, style: str, k: dict):
    """red(expr, op): the text of a sum or mean over each set, written in `style`."""
    ax, kd = L.ax, L.kd

    def red(expr: str, op: str = "sum") -> str:
        if style == "np":
            return f"np.{op}({expr}, axis={ax}{kd})"
        if style == "einsum" and op == "sum" and k["rax"] == "right":
            return (f"np.einsum('ij->j', {expr})" if L.cols
                    else f"np.einsum('ij->i', {expr})[:, None]")
        if style == "matmul" and op == "sum" and k["rax"] == "right":
            return (f"(np.ones(x.shape[0]) @ ({expr}))" if L.cols
                    else f"(({expr}) @ np.ones(x.shape[1]))[:, None]")
        return f"({expr}).{op}(axis={ax}{kd})"
    return red


def _centered(model: str, style: str, k: dict, rng: random.Random) -> str:
    L = Layout(model, k)
    ax, kd = L.ax, L.kd
    lines = [f"n = {L.n}"]
    red = _reducer(L, style, k)

    lines.append(f"mu = {red('x', 'mean')}" if rng.random() < 0.5 else f"mu = {red('x')} / n")
    vdiv = "n" if k["ddof"] == 0 else "(n - 1)"
    var_forms = [f"var = {red('(x - mu) ** 2')} / {vdiv}"]
    if style in ("vec", "np"):
        var_forms.append(f"var = np.var(x, axis={ax}, ddof={k['ddof']}{kd})")
        other = 1 - k["ddof"]
        conv = "(n - 1) / n" if other == 1 else "n / (n - 1)"
        var_forms.append(f"var = x.var(axis={ax}, ddof={other}{kd}) * {conv}")
        var_forms.append(f"var = {red('x * x', 'mean')} - mu * mu" if k["ddof"] == 0 else
                         f"var = ({red('x * x')} - n * mu * mu) / (n - 1)")
    lines.append(rng.choice(var_forms))
    if k["eps"] == "out":
        lines.append("sigma = np.sqrt(var) + eps")
    else:
        e = "1e-5" if k["eps"] == "constant" else "eps"
        lines.append(rng.choice((f"sigma = np.sqrt(var + {e})", f"sigma = (var + {e}) ** 0.5",
                                 f"sigma = 1 / np.sqrt(1 / (var + {e}))")))
    if k["inv"]:
        lines.append(rng.choice(("inv = 1.0 / sigma", "inv = 1 / sigma", "inv = sigma ** -1",
                                 "inv = np.sqrt(1 / sigma ** 2)")))
    else:
        lines.append("inv = sigma")
    lines.append("xhat = (x - mu) * inv")
    gm = k["gamma"]
    lines.append("g = dy * gamma" if gm in ("right", "first") else "g = dy")
    if style == "staged":
        lines += [
            f"divar = {red('g * (x - mu)')}",
            f"dvar = -{k['half']} * divar * (var + eps) ** -1.5" if k["eps"] == "in" else
            f"dvar = -{k['half']} * divar * inv ** 3",
            "dxmu1 = g * inv" if gm != "first" else "dxmu1 = dy * gamma * inv",
            f"dxmu2 = {k['two']} * (x - mu) * np.ones_like(dy) * dvar / {k['bdiv']}",
            "dx1 = dxmu1 + dxmu2",
            f"dmu = -1 * {red('dx1')}",
            f"dx = dx1 + np.ones_like(dy) * dmu / {k['mdiv']}",
        ]
        if k["sign"] == "mean":
            lines[-1] = f"dx = dx1 - np.ones_like(dy) * dmu / {k['mdiv']}"
        if k["drop"] == "mean":
            lines[-1] = "dx = dx1"
        if k["sign"] == "xhat":
            lines[-4] = "dx1 = dxmu1 - dxmu2"
        if k["drop"] == "xhat":
            lines[-4] = "dx1 = dxmu1"
        if gm == "outside":
            lines.append("dx = gamma * dx")
    elif k["diag"]:
        lines.append(f"dx = g * inv * (1 - 1 / {k['mdiv']} - xhat ** 2 / {k['bdiv']})")
    else:
        g0 = "dy * gamma" if gm == "first" else "g"
        s1, s2 = red("g"), red("g * xhat")
        if style == "einsum" and k["rax"] == "right":
            s2 = ("np.einsum('ij,ij->j', g, xhat)" if L.cols
                  else "np.einsum('ij,ij->i', g, xhat)[:, None]")
        if style == "inplace":
            lines += _inplace(k, rng, g0, [(f"{s1} / {k['mdiv']}", "mean"),
                                           (f"xhat * {s2} / {k['bdiv']}", "xhat")], "inv")
        elif rng.random() < 0.3 and style in ("vec", "np"):
            lines.append("dx = " + _dx_terms(k, s1, s2, g0, "xhat", "inv"))
            lines.append("dx = dx * 1")
        else:
            lines.append("dx = " + _dx_terms(k, s1, s2, g0, "xhat", "inv"))
    if k["zero"]:  # sum(x - mu) is exactly 0: right, but only after cancellation
        lines.append(f"dx = dx + {red('x - mu')} * dy")
    lines += _params(model, style, k, "xhat")
    return "\n".join(lines)


def _inplace(k: dict, rng: random.Random, g0: str, terms: list, scale: str) -> list[str]:
    """dx accumulated with += and -= into a buffer: an object one (np.zeros_like(x), exact),
    a copy, or a float64 one (np.zeros(x.shape): the exact trace stops, route 2)."""
    start = rng.choice(("np.zeros_like(x)", "np.zeros(x.shape)", "copy"))
    out = [f"dx = ({g0}).copy()"] if start == "copy" else [f"dx = {start}", f"dx += {g0}"]
    for text, which in terms:
        if k["drop"] != which:
            out.append(f"dx {'+' if k['sign'] == which else '-'}= {text}")
    if scale:
        out.append(f"dx *= {scale}")
    if k["gamma"] == "outside":
        out.append("dx *= gamma")
    return out


def _params(model: str, style: str, k: dict, xh: str) -> list[str]:
    out = []
    for leaf, expr in (("gamma", f"dy * {xh}"), ("beta", "dy")):
        if leaf == "beta" and model == "rmsnorm":
            continue
        ax, op = (k["pax_g"], k["red_g"]) if leaf == "gamma" else (k["pax_b"], k["red_b"])
        if style == "einsum" and op == "sum" and ax == "0" and xh == "xhat":
            sub = "np.einsum('ij->j', dy)" if leaf == "beta" else \
                "np.einsum('ij,ij->j', dy, xhat)"
            out.append(f"d{leaf} = {sub}")
        elif style == "np":
            out.append(f"d{leaf} = np.{op}({expr}, axis={ax})")
        else:
            out.append(f"d{leaf} = ({expr}).{op}(axis={ax})")
    return out


def _rms(model: str, style: str, k: dict, rng: random.Random) -> str:
    L = Layout(model, k)
    lines = [f"n = {L.n}"]
    red = _reducer(L, style, k)  # rows: the reductions along the last axis

    lines.append(rng.choice((f"ms = {red('x * x', 'mean')}", f"ms = {red('x ** 2')} / n")))
    rad = {"in": "ms + eps", "constant": "ms + 1e-5"}.get(k["eps"])
    if k["inv"]:
        forms = ((f"rstd = 1 / np.sqrt({rad})", f"rstd = ({rad}) ** -0.5",
                  f"rstd = 1.0 / ({rad}) ** 0.5", f"rstd = np.sqrt(1 / ({rad}))") if rad else
                 ("rstd = 1 / (np.sqrt(ms) + eps)",))
    else:
        forms = (f"rstd = np.sqrt({rad})",) if rad else ("rstd = np.sqrt(ms) + eps",)
    lines.append(rng.choice(forms))
    gm = k["gamma"]
    lines.append("g = dy * gamma" if gm in ("right", "first") else "g = dy")
    s = red("g * x")
    if style == "staged":
        lines += [f"dms = -{k['half']} * {s} * rstd ** {k['cube']}",
                  (f"dx = g * rstd {'-' if k['sign'] == 'xhat' else '+'} "
                   f"{k['two']} * x * dms / {k['mdiv']}")]
        if k["drop"] == "xhat":
            lines[-1] = "dx = g * rstd"
    elif k["diag"]:
        lines.append(f"dx = g * rstd * (1 - x ** 2 * rstd ** 2 / {k['mdiv']})")
    else:
        g0 = "dy * gamma" if gm == "first" else "g"
        if style == "inplace":
            lines += _inplace({**k, "gamma": "right"}, rng, f"rstd * {g0}",
                              [(f"x * rstd ** {k['cube']} * {s} / {k['mdiv']}", "xhat")], "")
            lines += ["dx *= gamma"] if gm == "outside" else []
            lines += _params(model, style, k, "x * rstd")
            return "\n".join(lines)
        sign = "+" if k["sign"] == "xhat" else "-"
        div = f" * (1 / {k['mdiv']})" if k["recip"] else f" / {k['mdiv']}"
        t2 = f" {sign} x * rstd ** {k['cube']} * {s}{div}"
        lines.append(f"dx = rstd * {g0}" + ("" if k["drop"] == "xhat" else t2))
    if gm == "outside":
        lines.append("dx = gamma * dx")
    lines += _params(model, style, k, "x * rstd")
    return "\n".join(lines)


def _loops(model: str, k: dict, rng: random.Random) -> str:
    """Explicit loops with += accumulators (centered models and RMSNorm)."""
    cols, rms = columns(model), model == "rmsnorm"
    idx = "i, c" if cols else "c, i"
    gi = "gamma[c]" if cols else "gamma[i]"
    pi_g = "c" if cols else "i"
    if k["pax_g"] != "0":
        pi_g = "i" if cols else "c"
    pi_b = "c" if cols else "i"
    if k["pax_b"] != "0":
        pi_b = "i" if cols else "c"
    nsh = ("n, sets = x.shape" if cols else "sets, n = x.shape")
    if k["shape"] == "wrong":
        nsh = ("sets, n = x.shape" if cols else "n, sets = x.shape")
    p = "sets" if cols else "n"
    lines = [nsh, "dx = np.empty_like(x)", f"dgamma = [0] * {p}", f"dbeta = [0] * {p}",
             "for c in range(sets):"]
    body = []
    if rms:
        body += ["ms = 0", "for i in range(n):", f"    ms += x[{idx}] * x[{idx}]", "ms = ms / n"]
        rad, centre = "ms", ""
    else:
        body += ["mu = 0", "for i in range(n):", f"    mu += x[{idx}]", "mu = mu / n",
                 "var = 0", "for i in range(n):", f"    var += (x[{idx}] - mu) ** 2",
                 f"var /= {'n' if k['ddof'] == 0 else '(n - 1)'}"]
        rad, centre = "var", " - mu"
    if k["eps"] in ("in", "constant"):
        e = "eps" if k["eps"] == "in" else "1e-5"
        sig = rng.choice((f"({rad} + {e}) ** 0.5", f"np.sqrt({rad} + {e})"))
    else:
        sig = f"np.sqrt({rad}) + eps"
    body.append(f"inv = 1 / {sig}" if k["inv"] else f"inv = {sig}")
    gam = "" if k["gamma"] in ("missing", "outside") else f" * {gi}"
    body += ["s1 = 0", "s2 = 0", "for i in range(n):",
             f"    xhat = (x[{idx}]{centre}) * inv",
             f"    s1 += dy[{idx}]{gam}",
             f"    s2 += dy[{idx}]{gam} * xhat",
             f"    dgamma[{pi_g}] += dy[{idx}] * xhat",
             f"    dbeta[{pi_b}] += dy[{idx}]",
             "for i in range(n):",
             f"    xhat = (x[{idx}]{centre}) * inv"]
    g0 = f"dy[{idx}]" + ("" if k["gamma"] in ("missing", "outside") else f" * {gi}")
    if rms:
        sign = "+" if k["sign"] == "xhat" else "-"
        t = "" if k["drop"] == "xhat" else f" {sign} xhat * s2 / {k['mdiv']}"
        expr = f"inv * ({g0}{t})"
    elif k["diag"]:
        expr = f"{g0} * inv * (1 - 1 / {k['mdiv']} - xhat ** 2 / {k['bdiv']})"
    else:
        expr = _dx_terms({**k, "gamma": "right"}, "s1", "s2", g0, "xhat", "inv")
    if k["gamma"] == "outside":
        expr = f"{gi} * {expr}"
    body.append(f"    dx[{idx}] = {expr}")
    lines += ["    " + b for b in body]
    red = {"sum": "", "mean": f" / {'n' if cols else 'sets'}"}
    lines += [f"dgamma = np.array(dgamma){red[k['red_g']]}",
              f"dbeta = np.array(dbeta){red[k['red_b']]}"]
    if rms:
        lines.pop()
        lines = [ln for ln in lines if "dbeta" not in ln]
    return "\n".join(lines)


def body_source(model: str, style: str, k: dict, rng: random.Random) -> str:
    """Statements computing dx, dgamma (and dbeta) from dy, x, gamma, eps."""
    if style == "loops":
        return _loops(model, k, rng)
    if model == "rmsnorm":
        return _rms(model, style, k, rng)
    return _centered(model, style, k, rng)


# -- a random AST edit on top ----------------------------------------------------------------
class _Edit(ast.NodeTransformer):
    def __init__(self, target: int, rng: random.Random):
        self.target, self.rng, self.count, self.done = target, rng, 0, None

    def _hit(self) -> bool:
        self.count += 1
        return self.count == self.target

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if self.done is None and self._hit():
            swap = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
            if type(node.op) in swap:
                self.done = f"{type(node.op).__name__}->{swap[type(node.op)].__name__}"
                node.op = swap[type(node.op)]()
        return node

    def visit_Constant(self, node):
        if (self.done is None and isinstance(node.value, (int, float))
                and not isinstance(node.value, bool) and self._hit()):
            new = self.rng.choice((node.value + 1, node.value * 2, -node.value, 0.5))
            self.done = f"constant {node.value!r}->{new!r}"
            return ast.copy_location(ast.Constant(new), node)
        return node


def ast_edit(source: str, rng: random.Random) -> tuple[str, str | None]:
    """One random operator or constant change inside the function body."""
    tree = ast.parse(source)
    body = tree.body[-1]
    nodes = [x for x in ast.walk(body) if isinstance(x, (ast.BinOp, ast.Constant))]
    if not nodes:
        return source, None
    edit = _Edit(rng.randint(1, len(nodes)), rng)
    for stmt in body.body:
        edit.visit(stmt)
    if edit.done is None:
        return source, None
    return ast.unparse(tree) + "\n", edit.done


# -- signatures ------------------------------------------------------------------------------
def signature_variant(model: str, rng: random.Random) -> tuple[str | None, list, list]:
    """(text for check_impl or None, [(user arg, canonical)], [(user output, canonical)])."""
    outs = outputs_of(model)
    args = [("dy", "dy"), ("x", "x"), ("gamma", "gamma"), ("eps", "eps")]
    res = [(f"d{o}", o) for o in outs]
    u = rng.random()
    if u < 0.55:
        return None, args, res
    if u < 0.75:
        args = [("dy", "dy"), ("x", "x"), ("w", "gamma"), ("eps", "eps")]
        res = [("dx", "x"), ("dw", "gamma")] + ([("db", "beta")] if len(outs) == 3 else [])
    elif u < 0.9:
        rng.shuffle(args)
        res = list(res)
        rng.shuffle(res)
    else:
        res = [rng.choice(res)]
    text = ", ".join(a for a, _ in args) + " -> " + ", ".join(r for r, _ in res)
    return text, args, res


def make_source(model: str, body: str, args: list, res: list) -> str:
    """The whole module: the function named `backward` with the signature's names."""
    lines = ["import numpy as np", "", "",
             f"def backward({', '.join(a for a, _ in args)}):"]
    rebind = [f"{canon} = {user}" for user, canon in args if user != canon]
    lines += ["    " + ln for ln in rebind]
    lines += ["    " + ln for ln in body.splitlines()]
    lines.append(f"    return {', '.join('d' + c for _, c in res)}")
    return "\n".join(lines) + "\n"


def generate(rng: random.Random, model: str) -> dict:
    """A random case: model, N, D, style, mutations, signature, source."""
    lo = 2 if model == "batchnorm-unbiased" else 1
    n = rng.choice([v for v in (1, 2, 2, 3, 3, 3, 4) if v >= lo])
    d = rng.choice((1, 2, 2, 3, n))
    style = rng.choice(STYLES)
    k = right_knobs(model)
    rewrite_knobs(k, rng)
    muts = []
    u = rng.random()
    count = 0 if u < 0.3 else 1 if u < 0.85 else 2
    names = list(MUTATIONS)
    for name in rng.sample(names, count):
        MUTATIONS[name](k, model, rng)
        muts.append(name)
    body = body_source(model, style, k, rng)
    text, args, res = signature_variant(model, rng)
    source = make_source(model, body, args, res)
    if rng.random() < 0.15:
        source, edit = ast_edit(source, rng)
        if edit:
            muts.append(f"ast: {edit}")
    return {"model": model, "n": n, "d": d, "style": style, "mutations": muts,
            "signature": text, "args": args, "res": res, "source": source}


# -- running the mutant on the reference's scalars -------------------------------------------
def call_mutant(function, case: dict, point: dict, scalar) -> dict:
    """{canonical output: object array of returned entries} at the point."""
    a = build_arrays(case["model"], case["n"], case["d"], point, scalar)
    if scalar is float:
        a = {k: (v.astype(float) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
    returned = function(*[a[canon] for _, canon in case["args"]])
    if len(case["res"]) == 1 and not isinstance(returned, (tuple, list)):
        returned = (returned,)
    sh = shapes(case["model"], case["n"], case["d"])
    out = {}
    for (_, canon), value in zip(case["res"], returned, strict=True):
        arr = np.asarray(value, dtype=object)
        if arr.shape != sh[canon]:
            raise ValueError(f"d{canon} of shape {arr.shape}, expected {sh[canon]}")
        out[canon] = arr
    return out


def evaluate(function, case: dict, point: dict, tier: str = "exact") -> tuple[str, dict]:
    """('exact' | 'interval' | 'float', {output: array of Fraction or interval}) of the
    mutant; tier 'float' runs it in float64 (for code that casts to a float buffer in place,
    which object arrays refuse; the point must be dyadic)."""
    try:
        with np.errstate(all="ignore"):
            raw = call_mutant(function, case, point, float if tier == "float" else Q)
    except NotSquare:
        with _ivprec(), np.errstate(all="ignore"):
            raw = call_mutant(function, case, point, lambda q: IV(_ivq(q)))
        tier = "interval"
    out = {}
    for leaf, arr in raw.items():
        conv = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(arr.shape):
            conv[idx] = _to_exact(arr[idx])
        out[leaf] = conv
    return tier, out


def reference(function, case: dict, rng: random.Random) -> dict:
    """Per output: the worst comparison over the tested points, and any reference problem."""
    model, n, d = case["model"], case["n"], case["d"]
    state = {leaf: {"equal": 0, "differ": 0, "close": 0, "undecided": 0, "gap": 0.0,
                    "point": None} for _, leaf in case["res"]}
    problems, failed, done, tier = [], [], 0, "exact"
    # square points first; a point where the mutant raises (a division by 0 a mutation
    # made, a negative radicand) is skipped and replaced, up to EXTRA_POINTS times
    plan = [True] * SQUARE_POINTS + [False] * PLAIN_POINTS + [True, False] * EXTRA_POINTS
    for square in plan:
        if done == SQUARE_POINTS + PLAIN_POINTS or len(failed) > EXTRA_POINTS:
            break
        p = random_point(rng, model, n, d, square and tier == "exact", tier == "float")
        try:
            _, got = evaluate(function, case, p, tier)
        except TypeError as err:  # in-place casting of objects to a float64 buffer
            if tier == "float" or done:
                failed.append(f"{type(err).__name__}: {err}")
                continue
            tier = "float"
            p = random_point(rng, model, n, d, False, True)
            try:
                _, got = evaluate(function, case, p, tier)
            except Exception as err2:  # noqa: BLE001 - the mutant may raise anything
                failed.append(f"{type(err2).__name__}: {err2}")
                continue
        except Exception as err:  # noqa: BLE001 - the mutant may raise anything
            failed.append(f"{type(err).__name__}: {err}")
            continue
        done += 1
        tru = truth(model, n, d, p)
        problems += torch_check(case, p, tru)
        for leaf, arr in got.items():
            st = state[leaf]
            for idx in np.ndindex(arr.shape):
                verdict, gap = compare(arr[idx], tru[leaf][idx])
                if verdict == "differ" and gap <= (FLOAT_ROUNDING if tier == "float" else
                                                   ROUNDING):
                    verdict = "close"
                st[verdict] += 1
                if verdict in ("differ", "close") and gap >= st["gap"]:
                    st["gap"], st["point"] = gap, {k: str(v) for k, v in p.items()}
    if not done:
        return {"error": failed[0], "problems": problems}
    return {"outputs": state, "problems": problems, "tier": tier}


def torch_check(case: dict, p: dict, tru: dict) -> list[str]:
    """The oracle's VJP against torch float64 autograd at one point."""
    if columns(case["model"]) and case["n"] == 1:
        return []  # torch's batch_norm refuses one value per channel in training
    try:
        t = torch_vjp(case["model"], case["n"], case["d"], p)
    except Exception as err:  # noqa: BLE001
        return [f"torch failed: {type(err).__name__}: {err}"]
    out = []
    for leaf, arr in tru.items():
        for idx in np.ndindex(arr.shape):
            exact = float(sympy.N(arr[idx], 30))
            if abs(t[leaf][idx] - exact) > 1e-8 * (1 + abs(exact)):
                out.append(f"d{leaf}{list(idx)}: oracle {exact!r}, torch {t[leaf][idx]!r} "
                           f"at {({k: str(v) for k, v in p.items()})}")
    return out


# -- the witness, re-evaluated ---------------------------------------------------------------
def _index(entry: str) -> tuple:
    inside = entry.partition("[")[2].rstrip("]")
    return tuple(int(t) for t in inside.split(",") if t.strip())


UNRUN = "unrun: "  # the whole function raises there (symbn set unused leaves to 1)
ROUNDED = "rounded: "


def canonical_point(point: dict) -> dict:
    """A witness point with this script's keys: at D = 1 symbn writes x[i] for x[i,1] and
    gamma for gamma[1]."""
    out = {}
    for key, v in point.items():
        name, _, inside = key.partition("[")
        inside = inside.rstrip("]")
        if name in ("x", "dy") and "," not in inside:
            key = f"{name}[{inside},1]"
        elif name in ("gamma", "beta") and not inside:
            key = f"{name}[1]"
        out[key] = Fraction(v)
    return out


def recheck_witness(function, case: dict, result) -> str | None:
    """None if the disproof's witness separates the mutant from the truth; else why not."""
    w = result.witness or {}
    if "point" not in w or "entry" not in w:
        return "no point or entry in the witness"
    leaf, idx = result.id[1:], _index(w["entry"])
    point = canonical_point(w["point"])
    case = {**case, "n": w.get("n", case["n"]), "d": w.get("d", case["d"])}  # its shape
    model, n, d = case["model"], case["n"], case["d"]
    tru = truth(model, n, d, point)[leaf][idx]
    true_f = float(sympy.N(tru, 30))
    if result.method == "definedness":  # the claim: NaN or inf there, the truth finite
        try:
            with np.errstate(all="ignore"):
                got = float(call_mutant(function, case, point, float)[leaf][idx])
        except Exception as err:  # noqa: BLE001
            return f"the mutant raised at the witness in float64: {err}"
        if math.isfinite(got) or not math.isfinite(true_f):
            return f"a definedness disproof, but float64 gives {got!r} (truth {true_f!r})"
        return None
    if "float64" in (result.method or ""):
        try:
            with np.errstate(all="ignore"):
                got = call_mutant(function, case, point, float)[leaf][idx]
        except Exception as err:  # noqa: BLE001
            return f"the mutant raised at the witness in float64: {err}"
        got = float(got)
        if not (abs(got - true_f) > FAR * (1 + abs(true_f))) and math.isfinite(got):
            return (f"float64 value {got!r} is within {FAR:g} of the truth {true_f!r} at "
                    f"{w['entry']}")
        if w.get("implementation") not in (repr(got), None):
            return f"implementation {w['implementation']} but float64 gives {got!r}"
    else:
        try:
            _, got = evaluate(function, case, point)
        except Exception as err:  # noqa: BLE001
            return f"{UNRUN}the reference could not run the mutant at the witness: {err}"
        verdict, gap = compare(got[leaf][idx], tru)
        if verdict != "differ":
            return f"{w['entry']}: the mutant and the truth {verdict} at the witness"
        if gap <= ROUNDING:
            return (f"{ROUNDED}{w['entry']}: only a rounding-level gap ({gap:.3g}) at the "
                    "witness: exact, but a float64 run there agrees with the table")
        impl = w.get("implementation")
        if impl is not None:
            try:
                v, _ = compare(got[leaf][idx], sympy.sympify(impl))
            except (ArithmeticError, sympy.SympifyError, TypeError):
                v = "equal"  # a witness printed with floats: not re-read exactly
            if v == "differ":
                return f"implementation value {impl} is not what the mutant returns there"
    told = w.get("true")
    if told is not None:
        try:
            v = float(sympy.N(sympy.sympify(told), 30))
        except (sympy.SympifyError, TypeError, ValueError):
            return None
        if abs(v - true_f) > 1e-9 * (1 + abs(true_f)):
            return f"the witness's true value {told} is not the derivative {true_f!r}"
    return None


# -- one case --------------------------------------------------------------------------------
class Hang(BaseException):  # not caught by `except Exception` in symbn or the mutant
    pass


def _alarm(signum, frame):
    raise Hang


def load(path: str):
    """The mutant's `backward`, by symbn's own loader (the CLI's)."""
    from symbn.impl import load_function

    return load_function(f"{path}:backward")


def command(case: dict, path: str) -> str:
    """The shell command reproducing the case with the CLI."""
    sig = f" --signature '{case['signature']}'" if case["signature"] else ""
    return (f"symbn check-impl {path}:backward --model {case['model']} --n {case['n']} "
            f"--d {case['d']}{sig}")


def run_cli(case: dict, path: str, timeout: float) -> tuple[dict | None, list[dict]]:
    """The CLI's verdicts, and CRASH findings (exit 4, a traceback, an undocumented code)."""
    cmd = [sys.executable, "-m", "symbn", "check-impl", f"{path}:backward", "--model",
           case["model"], "--n", str(case["n"]), "--d", str(case["d"]), "--json",
           "--timeout", str(timeout)]
    if case["signature"]:
        cmd += ["--signature", case["signature"]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120,
                       cwd=ROOT, check=False)
    findings = []
    if p.returncode not in (0, 1, 2, 3) or "Traceback" in p.stderr:
        findings.append({"kind": "CRASH", "where": "cli", "exit": p.returncode,
                         "stderr": p.stderr[-2000:]})
    try:
        doc = json.loads(p.stdout)
        return {r["id"][1:]: r["verdict"] for r in doc["results"]}, findings
    except (json.JSONDecodeError, KeyError, TypeError):
        return None, findings


def run_one(case: dict, path: str, timeout: float, rng: random.Random, cli: bool) -> list[dict]:
    """check_impl on the mutant, the reference, the cross-checks: findings."""
    from symbn.errors import SymbnError
    from symbn.impl import check_impl

    findings: list[dict] = []
    function = load(path)
    try:
        report = check_impl(function, case["model"], n=case["n"], d=case["d"],
                            signature=case["signature"], timeout=timeout)
        results = {r.id[1:]: r for r in report}
        case["verdicts"] = {k: r.verdict for k, r in results.items()}
        case["route"] = report.info.get("route")
    except SymbnError as err:
        results = None
        case["verdicts"] = {"error": "budget" if "budget" in str(err) else "error"}
        case["symbn_error"] = str(err)
    except Exception:  # noqa: BLE001 - anything else is a defect in symbn
        findings.append({"kind": "CRASH", "where": "library",
                         "traceback": traceback.format_exc()[-3000:]})
        return findings
    if cli:
        got, crash = run_cli(case, path, timeout)
        findings += crash
        if got is not None and results is not None and got != case["verdicts"]:
            findings.append({"kind": "CLI-MISMATCH", "cli": got, "library": case["verdicts"]})
    ref = reference(function, case, rng)
    for problem in ref["problems"]:
        findings.append({"kind": "REFERENCE", "detail": problem})
    if "error" in ref:
        case["reference"] = ref["error"]
        if results is not None:
            findings.append({"kind": "REF-ERROR", "detail": ref["error"]})
        return findings
    case["reference"] = {leaf: ("differ" if s["differ"] else "close" if s["close"] else
                                "undecided" if s["undecided"] else "equal")
                         for leaf, s in ref["outputs"].items()}
    if results is None:
        findings.append({"kind": "SYMBN-ERROR", "detail": case["symbn_error"]})
        return findings
    for leaf, r in results.items():
        s = ref["outputs"][leaf]
        if r.verdict == "proved" and (s["differ"] or s["close"]):
            findings.append({"kind": "PROVED-WRONG", "output": f"d{leaf}", "gap": s["gap"],
                             "point": s["point"]})
        elif r.verdict == "disproved":
            why = recheck_witness(function, case, r)
            if why is not None:
                right = not s["differ"] and not s["undecided"]
                kind = "DISPROVED-RIGHT" if right else "BAD-WITNESS"
                if not right and why.startswith(UNRUN):
                    kind = "WITNESS-UNCHECKED"
                elif not right and why.startswith(ROUNDED):
                    kind = "ROUNDING-WITNESS"
                findings.append({"kind": kind,
                                 "output": f"d{leaf}", "why": why, "method": r.method,
                                 "witness": {k: v for k, v in r.witness.items()
                                             if k != "table"}})
        elif r.verdict in ("consistent", "unknown") and s["differ"] and s["gap"] > FAR:
            findings.append({"kind": "MISSED", "output": f"d{leaf}", "verdict": r.verdict,
                             "gap": s["gap"], "note": r.note})
    return findings


def main(argv: list[str] | None = None) -> int:
    """The fuzzing loop; exit status 1 if a severe finding was made."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, "all"], default="batchnorm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--max-cases", type=int, default=10 ** 9)
    ap.add_argument("--timeout", type=float, default=20.0, help="check_impl's budget per case")
    ap.add_argument("--alarm", type=int, default=120, help="seconds per case before HANG")
    ap.add_argument("--cli-every", type=int, default=25, help="run the CLI on every k-th case")
    ap.add_argument("--log", type=str, default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--keep", type=str, default=None,
                    help="folder for the mutants' files (default: a temp folder)")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # nan/inf of wrong mutants
    rng = random.Random(args.seed)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="fuzz_check_impl_"))
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * args.minutes
    verdicts: collections.Counter = collections.Counter()
    cross: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    severe = []
    log = open(args.log, "w") if args.log else None  # noqa: SIM115 - closed after the loop
    previous = signal.signal(signal.SIGALRM, _alarm)
    count = 0
    try:
        while count < args.max_cases and time.monotonic() < deadline:
            model = MODELS[count % 4] if args.model == "all" else args.model
            case = generate(rng, model)
            count += 1
            case["index"] = count
            path = folder / f"mutant_{args.seed}_{count}.py"
            path.write_text(case["source"])
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, args.alarm)
            try:
                findings = run_one(case, str(path), args.timeout, rng,
                                   args.cli_every > 0 and count % args.cli_every == 0)
            except Hang:
                findings = [{"kind": "HANG", "seconds": args.alarm}]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            case["seconds"] = round(time.monotonic() - t0, 2)
            case["findings"] = findings
            case["command"] = command(case, str(path))
            for leaf, v in case.get("verdicts", {}).items():
                verdicts[v] += 1
                ref = case.get("reference")
                cross[(v, ref.get(leaf, "-") if isinstance(ref, dict) else "ref-error")] += 1
            keep = False
            for f in findings:
                kinds[f["kind"]] += 1
                if f["kind"] in SEVERE or args.verbose:
                    keep = keep or f["kind"] in SEVERE
                    print(f"[{count}] {f['kind']} {model} n={case['n']} d={case['d']} "
                          f"style={case['style']} mutations={case['mutations']} "
                          f"verdicts={case.get('verdicts')} :: "
                          f"{json.dumps({k: v for k, v in f.items() if k != 'kind'}, default=str)}"
                          f"\n  reproduce: {case['command']}", flush=True)
                    if f["kind"] in SEVERE:
                        print("  source:\n" + "\n".join("    " + ln for ln in
                                                       case["source"].splitlines()),
                              flush=True)
            if keep:
                severe.append(case)
            elif not args.keep:
                path.unlink(missing_ok=True)
            if log:
                log.write(json.dumps({k: v for k, v in case.items() if k not in ("args", "res")},
                                     default=str) + "\n")
                log.flush()
            if count % 50 == 0:
                print(f"... {count} cases, verdicts {dict(verdicts)}, findings {dict(kinds)}",
                      flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
        if log:
            log.close()
    print(f"\n{count} cases (seed {args.seed}, model {args.model})")
    print(f"verdicts per output: {dict(sorted(verdicts.items()))}")
    print("symbn verdict x reference: " + ", ".join(
        f"{v}/{r}: {c}" for (v, r), c in sorted(cross.items())))
    print(f"findings by kind: {dict(kinds)}")
    print(f"severe findings: {sum(kinds[k] for k in SEVERE)}"
          + (f" (mutants kept in {folder})" if severe else ""))
    if not severe and not args.keep:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return 1 if severe else 0


if __name__ == "__main__":
    sys.exit(main())
