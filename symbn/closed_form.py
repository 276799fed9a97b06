"""The note's closed forms for df/dX, df/dgamma, df/dbeta, as expressions in the graph's nodes.

    dX     = gamma (v+eps)^(-1/2) (dY - mean(dY) - (X - mu)(v+eps)^(-1) mean((X - mu) * dY))
    dgamma = sum_i dy_i xhat_i
    dbeta  = sum_i dy_i
"""

from __future__ import annotations

import sympy as sp

from .model import BatchNorm


def dx(bn: BatchNorm, j: int, c: int = 1) -> sp.Expr:
    """Entry (j, c) of df/dX in the note's final form.

    >>> dx(BatchNorm(1), 1)
    gamma*(-dy[1] + dy[1] + dy[1]*(-mu + x[1])*(mu - x[1])/(eps + v))/sqrt(eps + v)
    """
    n, rows = sp.Integer(bn.n), bn.rows()
    mu, inv = bn.mu(c), bn.v(c) + bn.eps
    mean_dy = sp.Add(*[bn.dy(i, c) for i in rows], evaluate=False) / n
    mean_xdy = sp.Add(*[(bn.x(i, c) - mu) * bn.dy(i, c) for i in rows], evaluate=False) / n
    inner = sp.Add(bn.dy(j, c), -mean_dy, -(bn.x(j, c) - mu) * inv ** -1 * mean_xdy,
                   evaluate=False)
    return bn.gamma(c) * inv ** sp.Rational(-1, 2) * inner


def dgamma(bn: BatchNorm, c: int = 1) -> sp.Expr:
    """df/dgamma[c] = sum_i dy[i,c] xhat[i,c]."""
    return sp.Add(*[bn.dy(i, c) * bn.xhat(i, c) for i in bn.rows()])


def dbeta(bn: BatchNorm, c: int = 1) -> sp.Expr:
    """df/dbeta[c] = sum_i dy[i,c]."""
    return sp.Add(*[bn.dy(i, c) for i in bn.rows()])


def unit_dy(bn: BatchNorm, expr: sp.Expr, i: int, c: int = 1) -> sp.Expr:
    """`expr` with dy set to the unit vector e_(i,c): its dy[i,c] coefficient if it is linear."""
    return expr.xreplace({bn.dy(k, e): sp.Integer(int((k, e) == (i, c)))
                          for k in bn.rows() for e in bn.columns()})
