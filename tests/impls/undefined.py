"""Backward functions equal to BatchNorm's or RMSNorm's derivative wherever they are defined,
but undefined (NaN or inf in floating point) on part of the inputs, and ones that are right
on exact scalars but not on float64 arrays."""

import numpy as np


def _core(dy, x, gamma, eps, xmu):
    n = x.shape[0]
    var = (xmu ** 2).sum(axis=0) / n
    inv = 1 / np.sqrt(var + eps)
    xhat = xmu * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def sqrt_squared(dy, x, gamma, eps):  # NaN wherever some x is below its column's mean
    return _core(dy, x, gamma, eps, np.sqrt(x - x.mean(axis=0)) ** 2)


def exp_log(dy, x, gamma, eps):
    return _core(dy, x, gamma, eps, np.exp(np.log(x - x.mean(axis=0))))


def pow_half_squared(dy, x, gamma, eps):
    return _core(dy, x, gamma, eps, ((x - x.mean(axis=0)) ** 0.5) ** 2)


def self_ratio(dy, x, gamma, eps):  # NaN where an x equals its column's mean
    xmu = x - x.mean(axis=0)
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, xmu)
    return dx * (xmu / xmu), dgamma, dbeta


def over_gamma(dy, x, gamma, eps):  # inf or NaN where gamma = 0
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx * gamma / gamma, dgamma, dbeta


def two_roots(dy, x, gamma, eps):  # NaN wherever x[0, 0] < x[1, 0]
    n = x.shape[0]
    t = x[0, 0] - x[1, 0]
    inv = np.sqrt(t) / np.sqrt((x.var(axis=0) + eps) * t)
    xhat = (x - x.mean(axis=0)) * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def moments(dy, x, gamma, eps):  # right: var = E[x^2] - E[x]^2, positive only as a whole
    n = x.shape[0]
    var = (x * x).mean(axis=0) - x.mean(axis=0) ** 2
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - x.mean(axis=0)) * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def rms_sqrt_squared(dy, x, gamma, eps):  # RMSNorm, NaN for any negative x
    xs = np.sqrt(x) ** 2
    r = (np.mean(xs * xs, axis=-1, keepdims=True) + eps) ** -0.5
    g = dy * gamma
    dx = r * g - xs * r ** 3 * (g * xs).sum(axis=-1, keepdims=True) / x.shape[-1]
    return dx, (dy * xs * r).sum(axis=0)


def dtype_branch(dy, x, gamma, eps):  # right on exact scalars, dgamma doubled on floats
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx, dgamma * (2 if x.dtype == np.float64 else 1), dbeta


_calls = [0]


def stateful(dy, x, gamma, eps):  # right on the first call only
    _calls[0] += 1
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx * _calls[0], dgamma, dbeta


def in_place(dy, x, gamma, eps):  # right: scales its argument dy in place
    n = x.shape[0]
    inv = 1.0 / np.sqrt(x.var(axis=0) + eps)
    xhat = (x - x.mean(axis=0)) * inv
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dy *= gamma
    dx = (1.0 / n) * inv * (n * dy - dy.sum(axis=0) - xhat * (dy * xhat).sum(axis=0))
    return dx, dgamma, dbeta


def root_n(dy, x, gamma, eps):  # right: np.sqrt(n), a float that stands for no rational
    n = x.shape[0]
    xmu = x - x.mean(axis=0)
    std = np.sqrt((xmu ** 2).sum(axis=0) + n * eps) / np.sqrt(n)
    xhat = xmu / std
    g = dy * gamma
    dx = (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * std)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def nan_dbeta(dy, x, gamma, eps):
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx, dgamma, np.full(dbeta.shape, np.nan)


def complex_dbeta(dy, x, gamma, eps):
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx, dgamma, np.asarray(dbeta, dtype=float) + 5j


def half_off(dy, x, gamma, eps):  # 50 % off, returned in float16
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return [np.asarray(a * 1.5, dtype=np.float16) for a in (dx, dgamma, dbeta)]


def overflow(dy, x, gamma, eps):  # right in the reals, inf in float64
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx * 1e200 * 1e200 / 1e200 / 1e200, dgamma, dbeta


def x_first(x, dy, gamma, eps=1e-5):  # right, with its parameters in another order
    return _core(dy, x, gamma, eps, x - x.mean(axis=0))


def circle_ratio(dy, x, gamma, eps):  # undefined on a circle through no dyadic point
    q = x[0, 0] ** 2 + x[1, 0] ** 2 - 3  # x^2 + y^2 = 3 has no rational point
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    return dx * (q / q), dgamma, dbeta


def zero_power(dy, x, gamma, eps):  # 0.0 ** t is inf for t < 0
    dx, dgamma, dbeta = _core(dy, x, gamma, eps, x - x.mean(axis=0))
    z = 0.0 ** (x + 100.0)
    return dx + z - z, dgamma, dbeta
