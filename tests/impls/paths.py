"""Backward functions right on exact scalars and other on floats, or between calls, or at
another shape: the float path, the state and the shape check-impl holds them to."""

import functools

import numpy as np
from bn_right import batchnorm_backward as _bn


def _sloppy(dy, x, gamma, eps):
    """A backward wrong where a column's dy starts with 0 (a "sparse" shortcut)."""
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    return np.where(dy[:1] == 0, 0.0, dx), dgamma, dbeta


def float_fast_path(dy, x, gamma, eps):
    """Floats take a fast path (here: right), exact scalars another."""
    if x.dtype == np.float64:
        return tuple(_bn(dy, x, gamma, eps))
    return _bn(dy, x, gamma, eps)


def float_fast_path_inline(dy, x, gamma, eps):
    """The same inside one line."""
    return tuple(_bn(dy, x, gamma, eps)) if x.dtype == np.float64 else _bn(dy, x, gamma, eps)


def compiled_or_fallback(dy, x, gamma, eps):
    """A compiled kernel that refuses object arrays, and a right fallback for them; the
    kernel is wrong where dy starts a column with 0, which no point of the check has."""
    try:
        return _kernel(dy, x, gamma, eps)
    except TypeError:
        return _bn(dy, x, gamma, eps)


def _kernel(dy, x, gamma, eps):
    if x.dtype == object:
        raise TypeError("object arrays are not supported")
    return _sloppy(dy, x, gamma, eps)


def right(dy, x, gamma, eps):
    """The right backward, with a loop and a branch on the shape: one path for both."""
    n = x.shape[0]
    if n > 1:
        mu = sum(x[i] for i in range(n)) / n
    else:
        mu = x[0]
    return _bn(dy, x - mu + mu, gamma, eps)


def _from(dy, x, gamma, eps, mu, var, n):
    """The BatchNorm backward from the statistics and the batch size it is given."""
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = inv * (g - g.sum(axis=0) / n - xhat * (g * xhat).sum(axis=0) / n)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


_stats: dict = {}


def cache_on_id(dy, x, gamma, eps):
    """Caches the statistics of x by id(x): stale when the caller refills its buffer."""
    if id(x) not in _stats:
        _stats[id(x)] = (x.mean(axis=0), x.var(axis=0))
    mu, var = _stats[id(x)]
    return _from(dy, x, gamma, eps, mu, var, x.shape[0])


_n: list = []


def frozen_n(dy, x, gamma, eps):
    """Keeps the batch size of its first call."""
    if not _n:
        _n.append(x.shape[0])
    return _from(dy, x, gamma, eps, x.mean(axis=0), x.var(axis=0), _n[0])


def n_from_the_longer_axis(dy, x, gamma, eps):
    """N as max(x.shape): right while N > D."""
    n = max(x.shape)
    mu = x.sum(axis=0) / n
    return _from(dy, x, gamma, eps, mu, ((x - mu) ** 2).sum(axis=0) / n, n)


def only_n3(dy, x, gamma, eps):
    """Written for N = 3 (refuses any other): right there."""
    if x.shape[0] != 3:
        raise ValueError("this backward is for batches of 3")
    return _bn(dy, x, gamma, eps)


_buffers: dict = {}


def kept_buffer(dy, x, gamma, eps):
    """Writes dx into a buffer kept between calls and returns it."""
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    if dx.dtype == object:
        return dx, dgamma, dbeta
    out = _buffers.setdefault((x.shape, x.dtype), np.empty_like(dx))
    out[...] = dx
    return out, dgamma, dbeta


_SOURCE = '''
def generated(dy, x, gamma, eps):
    if x.dtype == np.float64:
        return tuple(_bn(dy, x, gamma, eps))
    return _bn(dy, x, gamma, eps)
'''
_scope = {"np": np, "_bn": _bn}
exec(compile(_SOURCE, "<string>", "exec"), _scope)  # noqa: S102 - a test of code made by exec
exec_branch = _scope["generated"]


def thread_branch(dy, x, gamma, eps):
    """The dtype branch in a worker thread."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(float_fast_path, dy, x, gamma, eps).result()


def tracing_off(dy, x, gamma, eps):
    """Turns tracing off, then branches on the dtype."""
    import sys

    sys.settrace(None)
    return float_fast_path(dy, x, gamma, eps)


def opcodes_off(dy, x, gamma, eps):
    """Turns its own frame's opcode events off, then branches on the dtype."""
    import sys

    sys._getframe().f_trace_opcodes = False
    if x.dtype == np.float64:
        return tuple(_bn(dy, x, gamma, eps))
    return _bn(dy, x, gamma, eps)


# chosen by the dtype, no branch: a C function for exact scalars, NumPy's clip for floats
_PRE = {"O": np.asarray, "f": functools.partial(np.clip, a_min=-1e9, a_max=1e9)}


def c_dispatch(dy, x, gamma, eps):
    """The dtype picks the function: the same line, another callee."""
    return _bn(_PRE[dy.dtype.kind](dy), x, gamma, eps)


_kept_x: dict = {}


def cache_on_id_readonly(dy, x, gamma, eps):
    """Caches by id(x), keeps x and marks it read-only (so a refill would be refused)."""
    if id(x) not in _kept_x:
        if x.dtype != object:
            x.flags.writeable = False
        _kept_x[id(x)] = (x, x.mean(axis=0), x.var(axis=0))
    _, mu, var = _kept_x[id(x)]
    return _from(dy, x, gamma, eps, mu, var, x.shape[0])


_pair: list = []


def double_buffer(dy, x, gamma, eps):
    """Two kept buffers returned in turn."""
    dx, dgamma, dbeta = _bn(dy, x, gamma, eps)
    if dx.dtype == object:
        return dx, dgamma, dbeta
    if not _pair:
        _pair.extend([np.empty_like(dx), np.empty_like(dx)])
    _pair.reverse()
    _pair[0][...] = dx
    return _pair[0], dgamma, dbeta


def eps_keyword(dy, x, gamma, *, eps=1e-5):
    """eps keyword-only, with a default."""
    return _bn(dy, x, gamma, eps)
