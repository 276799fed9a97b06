"""Unrolled concrete-N code: the closed form composed to the leaves, printed after CSE."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .. import closed_form
from ..errors import SymbnError
from ..model import BatchNorm
from .emit_numpy import _CHECKS, _header
from .plan import MAX_UNROLLED_N

# ---------------------------------------------------------------------------------------
# concrete N, unrolled
# ---------------------------------------------------------------------------------------


class Backward(NamedTuple):
    """Callables of (x_1..x_n, dy_1..dy_n, gamma, eps), from `sympy.lambdify`."""

    dx: Callable
    dgamma: Callable
    dbeta: Callable
    args: tuple


def _concrete(n: int) -> tuple[BatchNorm, list, dict[str, list[sp.Expr]]]:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_UNROLLED_N:
        raise SymbnError(f"n={n!r} is not an integer from 1 to {MAX_UNROLLED_N}, as unrolled "
                         "code needs; try n=4")
    bn = BatchNorm(n)
    args = [bn.x(i) for i in bn.rows()] + [bn.dy(i) for i in bn.rows()] + [bn.gamma(), bn.eps]
    exprs = {"dx": [bn.compose(closed_form.dx(bn, j)) for j in bn.rows()],
             "dgamma": [bn.compose(closed_form.dgamma(bn))],
             "dbeta": [bn.compose(closed_form.dbeta(bn))],
             "y": [bn.compose(bn.y(j)) for j in bn.rows()]}
    return bn, args, exprs


def lambdify_backward(n: int) -> Backward:
    """`sympy.lambdify` of the concrete-N closed form the prover checks (N = n).

    Arguments are x_1..x_n, dy_1..dy_n, gamma, eps (scalars, or arrays over columns).

    >>> g = lambdify_backward(2)
    >>> float(g.dbeta(1.0, 3.0, 0.5, 0.25, 2.0, 1.0))
    0.75
    >>> [round(float(v), 6) for v in g.dx(1.0, 3.0, 0.5, 0.25, 2.0, 1.0)]
    [0.088388, -0.088388]
    """
    _, args, exprs = _concrete(n)
    fns = [sp.lambdify(args, exprs[k] if k == "dx" else exprs[k][0], modules="numpy", cse=True)
           for k in ("dx", "dgamma", "dbeta")]
    return Backward(*fns, tuple(args))


def _unrolled_module(n: int, proved: list[str]) -> str:
    bn, _, exprs = _concrete(n)
    rename = {}
    for i in bn.rows():
        rename[bn.x(i)] = sp.Symbol(f"x_{i}")
        rename[bn.dy(i)] = sp.Symbol(f"dy_{i}")
    xs = [f"x_{i}" for i in bn.rows()]
    dys = [f"dy_{i}" for i in bn.rows()]

    def function(name: str, args: list[str], key: str, doc: str) -> list[str]:
        flat = [e.xreplace(rename) for e in exprs[key]]
        reps, reduced = sp.cse(flat, symbols=sp.numbered_symbols("t"))
        p = NumPyPrinter()
        values = [p.doprint(e) for e in reduced]
        result = f"[{', '.join(values)}]" if key in ("dx", "y") else values[0]
        return ["", "", f"def {name}({', '.join(args)}):", f'    """{doc}"""',
                *[f"    {s} = {p.doprint(e)}" for s, e in reps], f"    return {result}"]

    scalar = ", ".join(xs + dys + ["gamma", "eps"])
    plan = [f"Unrolled for N = {n}: the closed form composed to the leaves, printed by SymPy's",
            "NumPyPrinter after common-subexpression elimination, as scalar functions of",
            f"({scalar})",
            "(floats, or arrays over the columns).  Not shifted or centred: for badly",
            "conditioned data use the vectorised module."]
    check = [f"    if X.shape[0] != {n}:",
             (f"        raise ValueError(f\"this module is unrolled for N = {n}; X has shape "
              "{X.shape}\")")]
    lines = [_header(f"BatchNorm forward and backward, unrolled for N = {n}.", proved, plan,
                     "numpy only"),
             "import numpy", _CHECKS.rstrip("\n")]
    lines += function("dx", xs + dys + ["gamma", "eps"], "dx",
                      f"[df/dx_1, ..., df/dx_{n}] at N = {n}.")
    lines += function("dgamma", xs + dys + ["gamma", "eps"], "dgamma", f"df/dgamma at N = {n}.")
    lines += function("dbeta", xs + dys + ["gamma", "eps"], "dbeta", f"df/dbeta at N = {n}.")
    lines += function("y", xs + ["gamma", "beta", "eps"], "y", f"[y_1, ..., y_{n}] at N = {n}.")
    lines += ["", "",
              "def _rows(values, X, dtype):",
              ("    return numpy.stack([numpy.broadcast_to(v, X.shape[1:]) for v in values])"
              ".astype(dtype)"), "", "",
              "def batchnorm_forward(X, gamma, beta, eps=1e-5):",
              '    """Y = gamma * (X - mu) / sqrt(v + eps) + beta, per column."""',
              "    X, gamma, eps, dtype = _check([('X', X)], 'gamma', gamma, eps)",
              ("    beta = _as_float('beta', beta, 1, X.shape[1:], f'X {X.shape}')"
              ".astype(numpy.float64)"),
              *check,
              "    return _rows(y(*X.astype(numpy.float64), gamma, beta, eps), X, dtype)", "", "",
              "def batchnorm_backward(dY, X, gamma, eps=1e-5):",
              '    """(dX, dgamma, dbeta): the gradients of f given dY = df/dY."""',
              "    dY, X, gamma, eps, dtype = _check([('dY', dY), ('X', X)], 'gamma', gamma, eps)",
              *check,
              "    args = (*X.astype(numpy.float64), *dY.astype(numpy.float64), gamma, eps)",
              "    dX = _rows(dx(*args), X, dtype)",
              "    return dX, _rows([dgamma(*args)], X, dtype)[0], _rows([dbeta(*args)], X, dtype)[0]",
              ""]
    return "\n".join(lines)


def _unrolled_proofs(n: int) -> list[str]:
    from ..verify import verify

    report = verify(n)
    if not report.ok:
        raise SymbnError(f"the closed form is not proved at N = {n}; refusing to generate code")
    return [f"closed form = forward mode = backward mode (symbn verify), N = {n}",
            "the expressions below are that closed form, composed to the leaves"]
