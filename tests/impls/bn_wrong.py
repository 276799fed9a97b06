"""Wrong BatchNorm backward functions: mistakes found in published code."""

import numpy as np


def _forward(x, eps, ddof=0):
    mu = x.mean(axis=0)
    sigma = np.sqrt(x.var(axis=0, ddof=ddof) + eps)
    return (x - mu) / sigma, sigma


def diagonal_only(dy, x, gamma, eps):
    """The 'alternative' backward that keeps only the Jacobian's diagonal."""
    n = x.shape[0]
    xhat, sigma = _forward(x, eps)
    return gamma * dy * (1 - 1 / n - xhat ** 2 / n) / sigma


def sigma_for_inverse(dy, x, gamma, eps):
    """sigma where 1/sigma belongs."""
    n = x.shape[0]
    xhat, sigma = _forward(x, eps)
    g = dy * gamma
    return sigma / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))


def ddof1_forward(dy, x, gamma, eps):
    """Variance with ddof=1 in the forward, the 1/N formula in the backward."""
    n = x.shape[0]
    xhat, sigma = _forward(x, eps, ddof=1)
    g = dy * gamma
    dx = (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * sigma)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def right_only_at_n2(dy, x, gamma, eps):
    """Divides by 2 where 1/N belongs: right at N = 2 only."""
    xhat, sigma = _forward(x, eps)
    g = dy * gamma
    dx = (g - g.sum(axis=0) / 2 - xhat * (g * xhat).sum(axis=0) / 2) / sigma
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def float_buffer(dy, x, gamma, eps):
    """Right formula, but written into a float64 buffer."""
    n, d = x.shape
    xhat, sigma = _forward(x, eps)
    g = dy * gamma
    dx = np.zeros((n, d))
    dx[:] = (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * sigma)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def clipped(dy, x, gamma, eps):
    """Branches on a value: np.maximum compares."""
    n = x.shape[0]
    var = np.maximum(x.var(axis=0), 0.0)
    xhat = (x - x.mean(axis=0)) / np.sqrt(var + eps)
    g = dy * gamma
    dx = (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * np.sqrt(var + eps))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def dbeta_wrong(dy, x, gamma, eps):
    """dx and dgamma right, dbeta the mean instead of the sum."""
    n = x.shape[0]
    xhat, sigma = _forward(x, eps)
    g = dy * gamma
    dx = (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)) / (n * sigma)
    return dx, (dy * xhat).sum(axis=0), dy.mean(axis=0)
