"""Right BatchNorm backward functions, (N, D) arrays, reductions along axis 0."""

import numpy as np


def batchnorm_backward(dy, x, gamma, eps):
    """Vectorised, the compact form."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    dxhat = dy * gamma
    dx = inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def batchnorm_backward_staged(dy, x, gamma, eps):
    """The staged computational-graph form, with ** -1.5 and 0.5 constants."""
    n = x.shape[0]
    mu = np.mean(x, axis=0)
    xmu = x - mu
    var = np.sum(xmu ** 2, axis=0) / n
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    dbeta = np.sum(dy, axis=0)
    dgamma = np.sum(dy * xhat, axis=0)
    dxhat = dy * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dvar = -0.5 * divar * (var + eps) ** -1.5
    dsq = np.ones_like(dy) * dvar / n
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -np.sum(dx1, axis=0)
    dx2 = np.ones_like(dy) * dmu / n
    return dx1 + dx2, dgamma, dbeta


def batchnorm_backward_loops(dy, x, gamma, eps):
    """Plain Python loops with +=, an object result buffer, slicing."""
    n, d = x.shape
    dx = np.empty_like(x)
    dgamma = [0] * d
    dbeta = [0] * d
    for c in range(d):
        col = x[:, c]
        mu = 0
        for i in range(n):
            mu += col[i]
        mu = mu / n
        var = 0
        for i in range(n):
            var += (col[i] - mu) ** 2
        var /= n
        inv = (var + eps) ** -0.5
        s_dy, s_dyxhat = 0, 0
        for i in range(n):
            xhat = (col[i] - mu) * inv
            s_dy += dy[i, c]
            s_dyxhat += dy[i, c] * xhat
        for i in range(n):
            xhat = (col[i] - mu) * inv
            dx[i, c] = gamma[c] * inv * (dy[i, c] - s_dy / n - xhat * s_dyxhat / n)
        dgamma[c] = s_dyxhat
        dbeta[c] += s_dy
    return dx, np.array(dgamma), np.array(dbeta)


def batchnorm_backward_einsum(dy, x, gamma, eps):
    """einsum and @ for the reductions."""
    n = x.shape[0]
    ones = np.ones(n)
    mu = ones @ x / n
    xmu = x - mu
    var = np.einsum("ij,ij->j", xmu, xmu) / n
    inv = 1 / np.sqrt(var + eps)
    s_dy = np.einsum("ij->j", dy)
    s_dyxmu = np.einsum("ij,ij->j", dy, xmu)
    dx = gamma * inv * (dy - s_dy / n - xmu * inv ** 2 * s_dyxmu / n)
    return dx, s_dyxmu * inv, s_dy
