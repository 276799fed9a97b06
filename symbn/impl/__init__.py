"""`check_impl`: decide a user's own backward function against a model's true derivative.

The function is imported and run: it is the user's own code, run like a test.  The exact
trace calls it once on NumPy object arrays whose entries are `Exact` scalars (SymPy
expressions in the leaf symbols of `model.instantiate(n, d)`), so that the entries it
returns are expressions of the leaves; each is decided against the model's closed form
(`Instance.result`, which `symbn verify --model` proves equal to forward and backward mode)
by `symbn.prove.Algebra`: `proved` (for that N and D), `disproved` with an exact point, or
`unknown`.  A float literal in the code is the binary rational it denotes
(`float.as_integer_ratio`), so `0.5 *`, `** -1.5` and `1e-5` stay exact.

Where the code leaves exact arithmetic (a float buffer, `float()`, `math.sqrt`, a comparison
that would branch on a value) the trace stops there, naming the operation and the line, and
route 2 (`symbn.impl.floats`) runs the function in float64 at exact points (dyadic, and two
of ordinary floats with eps = 1e-5 and 1e-6): each entry
is compared with the closed form enclosed in interval arithmetic against the rounding error
a correct implementation can have there: `consistent` (never proved, exit 3), `disproved`
with the point, or `unknown`.  The same happens where the trace raises (a dtype check, a
compiled routine).  PyTorch code (route 4: `arrays="torch"`, or detected where the trace
fails on a function that refers to torch) is run with torch.float64 tensors the same way.
A function that raises, returns the wrong things or does not return within the budget is a
one-line `SymbnError` naming it.

Layout (the model's axis): batchnorm-like models (axis 0) take x, dy of shape (N, D) and
set leaves (gamma, beta) of shape (D,); row models (axis -1: layernorm, rmsnorm) take x, dy
of shape (D, N) and along leaves of shape (N,); scalar leaves (eps) are scalars.

>>> import numpy as np
>>> def bn(dy, x, gamma, eps):
...     xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
...     dxhat = dy * gamma
...     dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
...     return dx / np.sqrt(x.var(axis=0) + eps), (dy * xhat).sum(axis=0), dy.sum(axis=0)
>>> [r.verdict for r in check_impl(bn, "batchnorm", n=2, d=1)]
['proved', 'proved', 'proved']
"""

from .check import MAX_TABLE_CELLS, ROUTE_EXACT, ImplReport, check_impl
from .exact import Exact, LeftExact, exact_number
from .floats import ROUTE_FLOAT, ROUTE_TORCH, points, uses_torch
from .load import load_function
from .signature import Signature, backward_inputs, default_signature, parse_signature

__all__ = ["MAX_TABLE_CELLS", "ROUTE_EXACT", "ROUTE_FLOAT", "ROUTE_TORCH", "Exact", "ImplReport",
           "LeftExact", "Signature", "backward_inputs", "check_impl", "default_signature",
           "exact_number", "load_function", "parse_signature", "points", "uses_torch"]
