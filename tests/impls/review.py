"""Backward functions that behave one way on exact scalars and another on floats, raise a
BaseException, name their parameters partly like the model, or use a long-double constant."""

import numpy as np


def _finish(dy, xmu, w, eps, mean):
    """dX, dgamma, dbeta of LayerNorm from x - mu, with `mean` the mean over each row."""
    inv = 1.0 / np.sqrt(mean(xmu ** 2) + eps)
    xhat = xmu * inv
    g = dy * w
    dx = inv * (g - mean(g) - xhat * mean(g * xhat))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _row_mean(a):
    return a.mean(axis=-1, keepdims=True)


def _ln(dy, x, w, eps):
    return _finish(dy, x - _row_mean(x), w, eps, _row_mean)


def ln_eps_bumped_on_floats(dy, x, w, eps):
    """Right on exact scalars; on float arrays eps grows by 1e-2: wrong by about 30 %."""
    if x.dtype.kind == "f":
        eps = eps + 1e-2
    return _ln(dy, x, w, eps)


class Boom(BaseException):
    pass


def ln_raises_base_exception(dy, x, w, eps):
    raise Boom("not an Exception")


def ln_reordered(x, dy, weight, eps):
    """Right, with x first: the parameters' names say so."""
    return _ln(dy, x, weight, eps)


def ln_long_double(dy, x, w, eps):
    """Right: 1/N in long double, which no float64 re-reading would take for 1/3."""
    inv_n = np.longdouble(1) / x.shape[-1]

    def mean(a):
        return a.sum(axis=-1, keepdims=True) * inv_n
    return _finish(dy, x - mean(x), w, eps, mean)


def ln_clip_dy(dy, x, w, eps):
    """dy clipped to [-2, 2] (a gradient clip inside the backward): wrong for |dy| > 2."""
    return _ln(np.clip(dy, -2, 2), x, w, eps)


def ln_eps_floor(dy, x, w, eps):
    """eps floored at 0.1: wrong for every eps < 0.1, such as the usual 1e-5."""
    return _ln(dy, x, w, max(eps, 0.1))


def ln_inputs_to_quarters(dy, x, w, eps):
    """x rounded to a multiple of 1/4 in floating point (no branch, no comparison)."""
    big = 2.0 ** 52
    return _ln(dy, ((4 * x + big) - big) / 4, w, eps)


def ln_saved_in_float16(dy, x, w, eps):
    """x kept in float16 on float arrays (a saved activation): off by about 3e-4."""
    if x.dtype.kind == "f":
        x = x.astype(np.float16).astype(np.float64)
    return _ln(dy, x, w, eps)


def ln_centred_through_a_view(dy, x, w, eps):
    """Centres x through reshape(-1), a view only of C-contiguous arrays."""
    xc = np.array(x, order="K")
    flat = xc.reshape(-1)
    flat -= np.repeat(xc.mean(axis=-1), x.shape[-1])
    return _finish(dy, xc, w, eps, _row_mean)


def ln_float32_on_floats(dy, x, w, eps):
    """Computes and returns float32 when given floats: right on exact scalars only."""
    if x.dtype.kind == "f":
        out = _ln(dy.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                  np.float32(eps))
        return tuple(a.astype(np.float32) for a in out)
    return _ln(dy, x, w, eps)


def ln_x_kept_in_float32(dy, x, w, eps):
    """x rounded to float32 on float arrays (a saved activation): about 1e-7 relative."""
    if x.dtype.kind == "f":
        x = x.astype(np.float32).astype(np.float64)
    return _ln(dy, x, w, eps)
