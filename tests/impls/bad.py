"""Functions that misbehave rather than compute a wrong gradient."""

import time

import numpy as np


def raises(dy, x, gamma, eps):
    raise RuntimeError("not implemented yet")


def returns_none(dy, x, gamma, eps):
    dx = dy * gamma  # noqa: F841 - forgot the return


def returns_short_list(dy, x, gamma, eps):
    return [dy * gamma, dy.sum(axis=0)]


def wrong_shape(dy, x, gamma, eps):
    return dy.T, dy.sum(axis=0), dy.sum(axis=0)


def prints(dy, x, gamma, eps):
    print("debugging: shapes", dy.shape, x.shape)
    n = x.shape[0]
    mu = x.mean(axis=0)
    inv = 1 / np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)
    xhat = (x - mu) * inv
    g = dy * gamma
    print("done")
    return (inv / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0)),
            (dy * xhat).sum(axis=0), dy.sum(axis=0))


def sleeps(dy, x, gamma, eps):
    time.sleep(30)
    return dy, dy.sum(axis=0), dy.sum(axis=0)
