"""A compiled (numba) BatchNorm backward: the exact trace cannot call it; route 2 can."""

import numba
import numpy as np


@numba.njit(cache=False)
def _columns(dy, x, gamma, eps, dx, dgamma, dbeta):
    n, d = x.shape
    for c in range(d):
        mu = 0.0
        for i in range(n):
            mu += x[i, c]
        mu /= n
        var = 0.0
        for i in range(n):
            var += (x[i, c] - mu) ** 2
        inv = 1.0 / np.sqrt(var / n + eps)
        for i in range(n):
            dbeta[c] += dy[i, c]
            dgamma[c] += dy[i, c] * (x[i, c] - mu) * inv
        for i in range(n):
            xhat = (x[i, c] - mu) * inv
            dx[i, c] = gamma[c] * inv * (dy[i, c] - (dbeta[c] + xhat * dgamma[c]) / n)


def bn_numba(dy, x, gamma, eps):
    """Right: the loops compiled by numba into preallocated buffers."""
    dx, dgamma, dbeta = np.empty(x.shape), np.zeros(x.shape[1]), np.zeros(x.shape[1])
    _columns(dy, x, gamma, eps, dx, dgamma, dbeta)
    return dx, dgamma, dbeta
