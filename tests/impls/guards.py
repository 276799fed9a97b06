"""Backward functions found by a review: branches on special values, parameters named
beta or bias, a NaN scrubbed to 0, a huge integer entry, a string entry."""

import numpy as np
from bn_right import batchnorm_backward as _bn


def gamma_one_fast_path(dy, x, gamma, eps):
    """Wrong for gamma = 1: the fast path drops the xhat term."""
    if np.all(gamma == 1):
        inv = 1 / np.sqrt(x.var(axis=0) + eps)
        xhat = (x - x.mean(axis=0)) * inv
        return inv * (dy - dy.mean(axis=0)), (dy * xhat).sum(axis=0), dy.sum(axis=0)
    return _bn(dy, x, gamma, eps)


def dgamma_zero_where_gamma_zero(dy, x, gamma, eps):
    """Wrong where gamma = 0 (zero-initialised gamma): dgamma set to 0 there."""
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    return dx, np.where(gamma != 0, dgamma, 0.0), dbeta


def constant_column_guard(dy, x, gamma, eps):
    """Wrong for a constant column: dx set to 0 where the variance is 0."""
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    return np.where(x.var(axis=0) > 1e-12, dx, 0.0), dgamma, dbeta


def sparse_dy_path(dy, x, gamma, eps):
    """Wrong when dy has a zero: that path drops the mean of dy."""
    if np.any(dy == 0):
        n = x.shape[0]
        inv = 1 / np.sqrt(x.var(axis=0) + eps)
        xhat = (x - x.mean(axis=0)) * inv
        g = dy * gamma
        return inv / n * (n * g - xhat * (g * xhat).sum(axis=0)), (dy * xhat).sum(axis=0), \
            dy.sum(axis=0)
    return _bn(dy, x, gamma, eps)


def with_beta(dy, x, gamma, beta, eps=1e-5):
    """Right: beta is a parameter, unused."""
    return _bn(dy, x, gamma, eps)


def x_first_with_bias(x, dy, weight, bias, eps):
    """Right: PyTorch's names, x first."""
    return _bn(dy, x, weight, eps)


def unplaceable(x, dy, w, foo, eps):
    return _bn(dy, x, w, eps)


def dgamma_nan_to_num(dy, x, gamma, eps):
    """Wrong where gamma = 0: dgamma through a division by gamma, its NaN replaced by 0."""
    dx, _, dbeta = _bn(dy, x, gamma, eps)
    xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    with np.errstate(all="ignore"):
        dgamma = np.nan_to_num((dy * gamma / gamma * xhat).sum(axis=0))
    return dx, dgamma, dbeta


def huge_dbeta(dy, x, gamma, eps):
    """Wrong: an entry of 400 digits, beyond float64."""
    dx, dgamma, _ = _bn(dy, x, gamma, eps)
    return dx, dgamma, np.array([10 ** 400] + [1] * (len(gamma) - 1), dtype=object)


def returns_strings(dy, x, gamma, eps):
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    return dx.astype(str), dgamma, dbeta


def needs_extra(dy, x, gamma, eps, extra):
    return _bn(dy, x, gamma, eps)


def tempered_through_a_buffer(dy, x, c):
    """Right for tests/models/tempered.toml (y = x / c): a float buffer, so route 2."""
    out = np.zeros(x.shape)
    out[:] = dy / c
    return out, -(dy * x).sum() / c ** 2


def none_where_gamma_is_zero(dy, x, gamma, eps):
    """Right on exact scalars; on floats with a zero in gamma it returns None."""
    if gamma.dtype == np.float64 and np.any(gamma == 0):
        return None
    return _bn(dy, x, gamma, eps)


def python_floats_divide_by_gamma(dy, x, gamma, eps):
    """x-hat recovered from y = gamma*xhat + beta (as in-place activated BatchNorm does), in
    Python floats: ZeroDivisionError where gamma has a zero, though the derivative exists."""
    n, d = x.shape
    beta = [0.5] * d
    dx, dgamma = np.empty((n, d)), np.empty(d)
    for c in range(d):
        col = [float(v) for v in x[:, c]]
        mu = sum(col) / n
        inv = 1 / (sum((v - mu) ** 2 for v in col) / n + eps) ** 0.5
        gc = float(gamma[c])
        y = [gc * (v - mu) * inv + beta[c] for v in col]
        xh = [(v - beta[c]) / gc for v in y]
        g = [dy[i, c] * gamma[c] for i in range(n)]
        dgamma[c] = sum(dy[i, c] * xh[i] for i in range(n))
        for i in range(n):
            dx[i, c] = inv / n * (n * g[i] - sum(g) - xh[i] * sum(a * b for a, b in zip(g, xh)))
    return dx, dgamma, dy.sum(axis=0)


def tempered(dy, x, c):
    """Right for tests/models/tempered.toml (y = x / c): it divides by c where the layer does."""
    return dy / c, -(dy * x).sum() / c ** 2


def tempered_divides_by_x(dy, x, c):
    """Right wherever x has no zero, but it divides by x, which the layer never does."""
    return dy * x / (x * c), -(dy * x).sum() / c ** 2
