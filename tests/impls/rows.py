"""LayerNorm and RMSNorm backward functions, (B, N) arrays, reductions along the last axis."""

import numpy as np


def layernorm_backward(dy, x, w, eps):
    """Right: vectorised."""
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) / n)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def layernorm_scale_shape0(dy, x, w, eps):
    """scale = 1/shape[0]: right only when shape[0] (the batch) equals the row length."""
    scale = 1.0 / x.shape[0]
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.sum(axis=-1, keepdims=True) * scale
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) * scale)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def layernorm_dgamma_wrong_axis(dy, x, w, eps):
    """dgamma summed along the normalized axis instead of over the batch."""
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) / n)
    return dx, (dy * xhat).sum(axis=-1), dy.sum(axis=0)


def rmsnorm_backward(dy, x, gamma, eps):
    """Right: vectorised."""
    n = x.shape[-1]
    rstd = (np.mean(x * x, axis=-1, keepdims=True) + eps) ** -0.5
    g = dy * gamma
    dx = rstd * g - x * rstd ** 3 * (g * x).sum(axis=-1, keepdims=True) / n
    return dx, (dy * x * rstd).sum(axis=0)


def rmsnorm_gamma_wrong_factor(dy, x, gamma, eps):
    """gamma on the wrong factor: multiplies the x-term instead of dy (fine at gamma = 1)."""
    n = x.shape[-1]
    rstd = (np.mean(x * x, axis=-1, keepdims=True) + eps) ** -0.5
    dx = rstd * dy - gamma * x * rstd ** 3 * (dy * x).sum(axis=-1, keepdims=True) / n
    return dx, (dy * x * rstd).sum(axis=0)
