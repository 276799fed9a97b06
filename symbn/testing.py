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
                    timeout: float | None = 60.0) -> None:
    """Pass silently when every output is proved (`symbn.impl.check_impl`); otherwise raise
    AssertionError carrying the report: the counterexample batch, or why it is undecided.
    A function that misbehaves (raises, wrong shapes, too slow) raises `SymbnError`."""
    from .impl import check_impl

    report = check_impl(function, model=model, n=n, d=d, signature=signature,
                        timeout=timeout)
    if not report.ok:
        raise AssertionError(str(report))
