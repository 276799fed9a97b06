"""`assert_backward`: a one-line test that a backward function is the model's derivative.

>>> import numpy as np
>>> def rms(dy, x, gamma, eps):
...     r = (np.mean(x * x, axis=-1, keepdims=True) + eps) ** -0.5
...     g = dy * gamma
...     return r * g - x * r**3 * (g * x).sum(axis=-1, keepdims=True) / x.shape[-1]
>>> assert_backward(rms, model="rmsnorm", signature="dy, x, gamma, eps -> dx", n=2, d=1)
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import Model


def assert_backward(function: Callable, model: Model | str = "batchnorm",
                    signature: str | None = None, n: int = 3, d: int = 2,
                    timeout: float | None = 60.0, arrays: str | None = None,
                    allow_consistent: bool | None = None) -> None:
    """Pass silently when every output is proved (`symbn.impl.check_impl`); otherwise raise
    AssertionError carrying the report: the counterexample batch, or why it is undecided.
    A function that misbehaves (raises, wrong shapes, too slow) raises `SymbnError`.

    `consistent` (agreement in floating point at exact points, never a proof) passes only
    with `allow_consistent=True`; by default (None) only for PyTorch code (route 4), which
    cannot be proved.

    >>> import numpy as np
    >>> def buffered(dy, x, gamma, eps):  # a float buffer: route 2, consistent
    ...     out = np.zeros(dy.shape[1])
    ...     out[:] = dy.sum(axis=0)
    ...     return out
    >>> assert_backward(buffered, signature="dy, x, gamma, eps -> dbeta", allow_consistent=True)
    """
    from .impl import check_impl
    from .impl.floats import ROUTE_TORCH

    report = check_impl(function, model=model, n=n, d=d, signature=signature,
                        timeout=timeout, arrays=arrays)
    if allow_consistent is None:
        allow_consistent = report.info.get("route") == ROUTE_TORCH
    passing = ("proved", "consistent") if allow_consistent else ("proved",)
    if not all(r.verdict in passing for r in report):
        hint = ("" if allow_consistent or all(r.verdict != "consistent" for r in report) else
                "\n\n(consistent is agreement in floating point, not a proof: pass "
                "allow_consistent=True to accept it)")
        raise AssertionError(str(report) + hint)
