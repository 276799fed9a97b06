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
    return _scaled(dy, x, w, eps, 1.0 / x.shape[0])


def _scaled(dy, x, w, eps, scale):
    """The LayerNorm backward with 1/N written as `scale`."""
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.sum(axis=-1, keepdims=True) * scale
                 - xhat * (g * xhat).sum(axis=-1, keepdims=True) * scale)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def layernorm_scale_last(dy, x, w, eps):
    """Right: scale = 1.0/shape[-1], a float 1/N (rounded for N = 3)."""
    return _scaled(dy, x, w, eps, 1.0 / x.shape[-1])


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



def _one_minus(dy, x, w, eps, rstd, last=0):
    """The LayerNorm backward with the diagonal written as (1 - 1/n): 1 - 1.0/3 is one unit in
    the last place above the float nearest 2/3 (two roundings); rstd(v + eps) is 1/sigma, and
    the last term is divided by n - last."""
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    inv = rstd(((x - mu) ** 2).sum(axis=-1, keepdims=True) / n + eps)
    xhat = (x - mu) * inv
    g = dy * w
    dx = inv * (g * (1 - 1 / n) - (g.sum(axis=-1, keepdims=True) - g) / n
                - xhat * (g * xhat).sum(axis=-1, keepdims=True) / (n - last))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def layernorm_one_minus(dy, x, w, eps):
    """Right, with 1 - 1.0/3 in it."""
    return _one_minus(dy, x, w, eps, lambda t: 1.0 / np.sqrt(t))


def layernorm_one_minus_nested(dy, x, w, eps):
    """Right, with 1/sigma written as sqrt(1/sigma**2), sigma = 1/sqrt(1/(v + eps))."""
    return _one_minus(dy, x, w, eps, lambda t: np.sqrt(1 / (1 / np.sqrt(1 / t)) ** 2))


def layernorm_one_minus_bessel(dy, x, w, eps):
    """Wrong: the last term over n - 1."""
    return _one_minus(dy, x, w, eps, lambda t: 1.0 / np.sqrt(t), last=1)


def layernorm_one_minus_denest(dy, x, w, eps):
    """Right, times sqrt(eps + 1 + 2 sqrt(eps)) - sqrt(eps), which is 1: a nested square
    root, which the exact trace evaluates at points but cannot prove equal."""
    dx, dw, db = layernorm_one_minus(dy, x, w, eps)
    return dx * (np.sqrt(eps + 1 + 2 * np.sqrt(eps)) - np.sqrt(eps)), dw, db

def layernorm_diagonal_one_minus(dy, x, w, eps):
    """Wrong: only the Jacobian's diagonal, with 1 - 1.0/3 in it."""
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    inv = 1 / (x.var(axis=-1, keepdims=True) + eps) ** 0.5
    xhat = (x - mu) * inv
    g = dy * w
    return g * inv * (1 - 1 / n - xhat ** 2 / n), (dy * xhat).sum(axis=0), dy.sum(axis=0)


def layernorm_power_of_zero(dy, x, w, eps):
    """(x - mu)**-2 where x - mu is 0 (N = 1): every float value is inf, and 1/inf = 0 makes
    the returned gradient right, though the code divides by zero."""
    rstd = 1 / (np.sqrt(((x - x.mean(axis=-1, keepdims=True)) ** -2).mean(axis=-1,
                                                                         keepdims=True)) + eps)
    dx, dw, db = layernorm_backward(dy, x, w, eps)
    return dx * (1 + rstd * 0), dw, db


def layernorm_imaginary_zero(dy, x, w, eps):
    """Adds sqrt(-eps)**2 + eps: 0 if sqrt(-eps)**2 were -eps (complex arithmetic); in
    floats sqrt(-eps) is nan."""
    dx, dw, db = layernorm_backward(dy, x, w, eps)
    return dx + np.sqrt(-eps - 0 * dx) ** 2 + eps, dw, db


def layernorm_complex_cube_root(dy, x, w, eps):
    """Adds cbrt(-8)**3 + 8: 0 for the real cube root NumPy takes, which SymPy's principal
    root (complex) does not give."""
    dx, dw, db = layernorm_backward(dy, x, w, eps)
    return dx + np.cbrt(-8 - 0 * dx) ** 3 + 8, dw, db
