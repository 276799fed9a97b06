"""Backward functions that leave exact arithmetic (float buffers, np.float32, math.sqrt, a
dtype check): decided by route 2, float64 at exact points.  Right and wrong."""

import math

import numpy as np


def bn_buffer_loops(dy, x, gamma, eps):
    """Right: float64 buffers filled in loops with +=, math.sqrt."""
    n, d = x.shape
    dx = np.zeros((n, d))
    dgamma = np.zeros(d)
    dbeta = np.zeros(d)
    for c in range(d):
        mu = 0.0
        for i in range(n):
            mu += x[i, c] / n
        var = 0.0
        for i in range(n):
            var += (x[i, c] - mu) ** 2 / n
        inv = 1.0 / math.sqrt(var + eps)
        for i in range(n):
            xhat = (x[i, c] - mu) * inv
            dbeta[c] += dy[i, c]
            dgamma[c] += dy[i, c] * xhat
        for i in range(n):
            xhat = (x[i, c] - mu) * inv
            dx[i, c] = gamma[c] * inv * (dy[i, c] - dbeta[c] / n - xhat * dgamma[c] / n)
    return dx, dgamma, dbeta


def bn_float32(dy, x, gamma, eps):
    """Right, computed and returned in single precision (np.float32 casts)."""
    dy, x, gamma = (a.astype(np.float32) for a in (dy, x, gamma))
    n = x.shape[0]
    mu = x.mean(axis=0)
    inv = np.float32(1) / np.sqrt(x.var(axis=0) + np.float32(eps))
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def bn_float32_inside(dy, x, gamma, eps):
    """Right, but xhat goes through float32 and the result back to float64: unknown."""
    n = x.shape[0]
    inv = 1 / np.sqrt(x.var(axis=0) + eps)
    xhat = np.float32(1) * ((x - x.mean(axis=0)) * inv).astype(np.float32)
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx.astype(np.float64), (dy * xhat).sum(axis=0).astype(np.float64), dy.sum(axis=0)


def bn_dtype_checked(dy, x, gamma, eps):
    """Right, but refuses anything but float64 (as a compiled kernel's wrapper would)."""
    if x.dtype != np.float64:
        raise TypeError(f"expected float64 arrays, got {x.dtype}")
    n = x.shape[0]
    inv = 1 / np.sqrt(x.var(axis=0) + eps)
    xhat = (x - x.mean(axis=0)) * inv
    g = dy * gamma
    dx = inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def bn_diagonal_buffer(dy, x, gamma, eps):
    """Wrong: the Jacobian's diagonal only, written into a float buffer."""
    n, d = x.shape
    dx = np.zeros((n, d))
    sigma = np.sqrt(x.var(axis=0) + eps)
    xhat = (x - x.mean(axis=0)) / sigma
    dx[...] = gamma * dy * (1 - 1 / n - xhat ** 2 / n) / sigma
    return dx


def bn_sigma_math_sqrt(dy, x, gamma, eps):
    """Wrong: sigma where 1/sigma belongs; math.sqrt per column."""
    n, d = x.shape
    dx = np.empty((n, d))
    for c in range(d):
        col = x[:, c]
        mu = sum(col) / n
        sigma = math.sqrt(sum((col - mu) ** 2) / n + eps)
        xhat = (col - mu) / sigma
        g = dy[:, c] * gamma[c]
        dx[:, c] = sigma / n * (n * g - g.sum() - xhat * (g * xhat).sum())
    return dx


def bn_ddof1_buffer(dy, x, gamma, eps):
    """Wrong: np.var(ddof=1) in the forward, the 1/N formula in the backward; float buffer."""
    n, d = x.shape
    sigma = np.sqrt(np.var(x, axis=0, ddof=1) + eps)
    xhat = (x - x.mean(axis=0)) / sigma
    g = dy * gamma
    dx = np.zeros((n, d))
    dx += (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * sigma)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def bn_half_buffer(dy, x, gamma, eps):
    """Wrong but at N = 2: divides by 2 where 1/N belongs; float buffers, einsum."""
    n, d = x.shape
    mu = np.einsum("ij->j", x) / n
    sigma = np.sqrt(np.einsum("ij,ij->j", x - mu, x - mu) / n + eps)
    xhat = (x - mu) / sigma
    g = dy * gamma
    dx = np.zeros((n, d))
    dx[:] = (g - np.einsum("ij->j", g) / 2 - xhat * np.einsum("ij,ij->j", g, xhat) / 2) / sigma
    return dx, np.einsum("ij,ij->j", dy, xhat), np.einsum("ij->j", dy)


def ln_einsum_buffer(dy, x, w, eps):
    """Right LayerNorm: einsum reductions into preallocated float buffers."""
    b, n = x.shape
    rstd = np.empty((b, 1))
    mu = np.einsum("bi->b", x)[:, None] / n
    rstd[:] = 1 / np.sqrt(np.einsum("bi,bi->b", x - mu, x - mu)[:, None] / n + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = np.empty_like(x, dtype=np.float64)
    dx[:] = rstd * (g - np.einsum("bi->b", g)[:, None] / n
                    - xhat * np.einsum("bi,bi->b", g, xhat)[:, None] / n)
    return dx, np.einsum("bi,bi->i", dy, xhat), np.einsum("bi->i", dy)


def ln_scale_shape0_buffer(dy, x, w, eps):
    """Wrong: scale = 1/shape[0], right only when the batch equals the row length."""
    scale = 1.0 / x.shape[0]
    mu = x.mean(axis=-1, keepdims=True)
    rstd = np.zeros((x.shape[0], 1))
    rstd += 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.sum(axis=-1, keepdims=True) * scale
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) * scale)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def ln_dgamma_wrong_axis_buffer(dy, x, w, eps):
    """Wrong: dgamma summed along the normalized axis (shapes agree only when B = N)."""
    n = x.shape[-1]
    dgamma = np.zeros(x.shape[0])
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) / n)
    dgamma += (dy * xhat).sum(axis=-1)
    return dx, dgamma, dy.sum(axis=0)


def rms_rows_math_sqrt(dy, x, gamma, eps):
    """Right RMSNorm, one row at a time with math.sqrt and +=."""
    b, n = x.shape
    dx = np.zeros((b, n))
    dgamma = np.zeros(n)
    for r in range(b):
        ms = 0.0
        for i in range(n):
            ms += x[r, i] * x[r, i]
        rstd = 1.0 / math.sqrt(ms / n + eps)
        g = dy[r] * gamma
        dx[r] = rstd * g - x[r] * rstd ** 3 * (g * x[r]).sum() / n
        dgamma += dy[r] * x[r] * rstd
    return dx, dgamma


def rms_gamma_wrong_factor_buffer(dy, x, gamma, eps):
    """Wrong: gamma multiplies the x-term instead of dy (fine at gamma = 1 and dy = 1)."""
    n = x.shape[-1]
    rstd = np.zeros((x.shape[0], 1))
    for r in range(x.shape[0]):
        rstd[r, 0] = (math.fsum(x[r] ** 2) / n + eps) ** -0.5
    dx = rstd * dy - gamma * x * rstd ** 3 * (dy * x).sum(axis=-1, keepdims=True) / n
    return dx, (dy * x * rstd).sum(axis=0)


def bn_naive_variance(dy, x, gamma, eps):
    """Right, with the cancelling variance E[x^2] - mu^2 and a float buffer."""
    n, d = x.shape
    mu = x.mean(axis=0)
    inv = 1 / np.sqrt((x * x).mean(axis=0) - mu * mu + eps)
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = np.zeros((n, d))
    dx[:] = inv * (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def bn_slightly_off(dy, x, gamma, eps):
    """Off by a relative 2^-14: beyond rounding, too close to disprove (unknown)."""
    dx, dgamma, dbeta = bn_buffer_loops(dy, x, gamma, eps)
    return dx * (1 + 2.0 ** -14), dgamma, dbeta
