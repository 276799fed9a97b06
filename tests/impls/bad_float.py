"""Functions that leave exact arithmetic and then misbehave in float64 too."""

import time

import numpy as np


def buffer_wrong_shape(dy, x, gamma, eps):
    out = np.zeros(x.shape)
    out[:] = dy
    return out.T, dy.sum(axis=0), dy.sum(axis=0)


def buffer_returns_string(dy, x, gamma, eps):
    out = np.zeros(x.shape)
    out[:] = dy
    return out, "dgamma", dy.sum(axis=0)


def buffer_raises(dy, x, gamma, eps):
    out = np.zeros(x.shape)
    out[:] = dy
    raise ValueError("shapes do not broadcast")


def buffer_sleeps(dy, x, gamma, eps):
    out = np.zeros(x.shape)
    out[:] = dy
    time.sleep(30)
    return out, dy.sum(axis=0), dy.sum(axis=0)
