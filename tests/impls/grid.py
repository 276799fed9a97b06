"""Backward functions right on exact scalars and at points of small dyadic numbers, wrong on
ordinary floats or at PyTorch's default eps = 1e-5: check-impl's two points of ordinary
floats (`symbn.impl.floats.ORDINARY`) disprove them."""

import numpy as np
from bn_right import batchnorm_backward as _bn
from review import _ln


def ln_rounding_amplified(dy, x, w, eps):
    """((eps + 1) - 1) - eps is 0 exactly and for eps on a coarse grid; for eps = 1e-5 it is
    a rounding error, which 1e16 makes a change of eps by about 10 %."""
    k = ((eps + 1.0) - 1.0) - eps
    return _ln(dy, x, w, eps + k * 1e16)


def ln_eps_off_grid(dy, x, w, eps):
    """eps with more than 50 fraction bits (1e-5 has 69) taken 1000 times larger."""
    if (eps * 2.0 ** 50) % 1:
        eps = eps * 1000
    return _ln(dy, x, w, eps)


def bn_default_eps_kernel(dy, x, gamma, eps):
    """A path for the default eps = 1e-5 that forgets the mean of dy * gamma in dx."""
    if eps == 1e-5:
        n = x.shape[0]
        inv = 1.0 / np.sqrt(x.var(axis=0) + 1e-5)
        xhat = (x - x.mean(axis=0)) * inv
        g = dy * gamma
        dx = inv / n * (n * g - xhat * (g * xhat).sum(axis=0))
        return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)
    return _bn(dy, x, gamma, eps)


def ln_float32_fast_path(dy, x, w, eps):
    """float32 inputs take a "fast path" that drops the term in xhat * mean(g * xhat)."""
    if x.dtype == np.float32:
        mu = x.mean(axis=-1, keepdims=True)
        rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
        g = dy * w
        return (rstd * (g - g.mean(axis=-1, keepdims=True)), (dy * (x - mu) * rstd).sum(0),
                dy.sum(0))
    return _ln(dy, x, w, eps)


def bn_float64_only(dy, x, gamma, eps):
    """Right, and refuses float32 inputs."""
    if x.dtype == np.float32:
        raise TypeError("float64 only")
    return _bn(dy, x, gamma, eps)
