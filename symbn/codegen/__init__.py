"""Numeric code from the proved closed form: a vectorised NumPy module, fused numba loops, or
unrolled concrete-N functions.

The vectorised module is planned from `closed_form` itself.  The closed form at a concrete N
(N = 23 and N = 29, which must agree) is abstracted into a row-generic form: a sum of N row
terms becomes `ColSum(term)` (a reduction over the batch axis), the row j of the result
becomes the arrays X, dY, and 1/N becomes a symbol N.  For accuracy the code then works with
the centred array D = X - mu, computed in two passes on a shifted copy,

    K = X[0],   m = ColSum(X - K)/N,   D = (X - K) - m,

because X - K is exact when the rows are close (Sterbenz) and the mean is then taken of small
numbers.  The numba backward instead writes D = Z - ColSum(Z)/N with Z = X - K and multiplies
the sums out, so that ColSum(Z), ColSum(Z**2), ColSum(dY), ColSum(Z*dY) are all taken in one
pass over the data (the "fused" plan, proved like the others).  Every expression the module computes — dX as a linear combination of dY and D with
per-column coefficients, dgamma, dbeta and the forward Y — is instantiated back at N = 1..6
and proved equal to the closed form (and the closed form to both derivatives, by `verify`)
with the exact `Algebra`, in the same run that writes the code; the same expressions for
symbolic N are proved equal to the derivatives themselves by `symbn.general`.  The module
header records both.

Any other model (`generate(model="layernorm")`, a model file's path, or a `symbn.graph.Model`)
is planned from its model file instead (`model_plan`: the templates read as per-set sums
along the model's axis, proved at N = min_n..6 against its [results]).  `model_terms`
rewrites that plan as per-set coefficients times monomials of the element arrays (the
linear plan, proved in its place); `model_vector` writes the NumPy module from it (blocks of
sets, scratch buffers, the elements in the input dtype) and `model_numba` the fused numba
loops; a plan with no linear form (sqrt(X), ...) is written as planned by `model_numpy`
(NumPy only).  `model_unrolled` writes the unrolled module and `lambdify_backward(n,
model=...)`.  Every NumPy module also takes object arrays of exact scalars, computing in
object arithmetic (N as a fraction), which `symbn check-impl` traces.

Modules: plan (BatchNorm's plan and proofs), emit_numpy, emit_numba, unrolled (BatchNorm's
module texts), model_plan, model_terms, model_vector, model_numba, model_numpy,
model_unrolled (any model).

>>> source = generate("numpy")
>>> "import numpy" in source and "sympy" not in source.split('\"\"\"', 2)[2]
True
"""

from __future__ import annotations

from .. import io
from ..errors import SymbnError
from ..graph import Model
from .emit_numba import _numba_module
from .emit_numpy import BatchPrinter, ScalarPrinter, _numpy_module
from .plan import (
    BETA,
    DY,
    EPS,
    GAMMA,
    MAX_UNROLLED_N,
    MU,
    PROOF_NS,
    TARGETS,
    XHAT,
    ColSum,
    D,
    N,
    Plan,
    V,
    X,
    Y,
    Z,
    generic,
    instantiate,
    plans,
    prove_plans,
    prove_plans_all_n,
    to_symbolic_n,
)
from .unrolled import Backward, _concrete, _unrolled_module, _unrolled_proofs
from .unrolled import lambdify_backward as _lambdify_batchnorm

__all__ = [
    "BETA", "DY", "EPS", "GAMMA", "MAX_UNROLLED_N", "MU", "PROOF_NS", "TARGETS", "XHAT", "Backward",
    "BatchPrinter", "ColSum", "D", "N", "Plan", "ScalarPrinter", "V", "X", "Y", "Z", "generate",
    "generic", "instantiate", "lambdify_backward", "plans", "prove_plans", "prove_plans_all_n",
    "to_symbolic_n", "write",
]

# the header line that `model_trace.trace` makes true for the BatchNorm NumPy module
BATCHNORM_TRACED = ("the emitted batchnorm_backward itself, run on object arrays of exact "
                    "scalars at N = 1 and 3, D = 2 (symbn check-impl): dX, dgamma, dbeta")

# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------


def _layer(model: Model | str | None) -> Model | None:
    """The model to generate for; None for the shipped BatchNorm, which keeps its own plan
    (abstracted from the note's closed form, proved for symbolic N too) and its numba target.
    A model file that is BatchNorm's in every definition counts as BatchNorm."""
    from ..models import load

    if model is None:
        return None
    m = model if isinstance(model, Model) else load(model)
    ref = load("batchnorm")

    def key(x: Model):
        return (x.name, x.leaves, {k: d.text for k, d in x.nodes.items()}, x.output, x.axis,
                {k: d.text for k, d in x.names.items()}, x.min_n,
                {k: (r.key, r.text) for k, r in x.results.items()})

    return None if key(m) == key(ref) else m


def generate(target: str = "numpy", n: int | None = None, unrolled: bool = False,
             model: Model | str | None = None) -> str:
    """Source of a standalone module: `target` 'numpy' or 'numba', or unrolled for N = n;
    for `model` (a `symbn.graph.Model`, a shipped model's name or a model file's path;
    default batchnorm).

    >>> "def layernorm_backward(dY, X, gamma, eps=1e-5, out=None):" in generate(model="layernorm")
    True
    """
    if target not in TARGETS:
        raise SymbnError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    layer = _layer(model)
    if unrolled:
        if target != "numpy":
            raise SymbnError("unrolled=True emits NumPy code; drop target='numba'")
        if n is None:
            raise SymbnError("unrolled=True needs n=, the batch size to unroll for; try n=4")
        if layer is not None:
            from .model_trace import check_names
            from .model_unrolled import _concrete as _concrete_model
            from .model_unrolled import unrolled_module, unrolled_proofs

            _concrete_model(layer, n)
            text = unrolled_module(layer, n, unrolled_proofs(layer, n))
            check_names(text, layer)
            return text
        _concrete(n)
        return _unrolled_module(n, _unrolled_proofs(n))
    if n is not None:
        raise SymbnError("n= applies only with unrolled=True; the vectorised module takes any N")
    if layer is not None:
        from .model_numpy import numpy_module
        from .model_plan import model_plan, prove_model_plan
        from .model_terms import linear_plan
        from .model_trace import check_blocks, check_emitted, check_names, emitted_line
        from .model_vector import vector_module

        plan = model_plan(layer)
        linear = linear_plan(plan)
        if linear is None and target == "numba":
            raise SymbnError(f"{layer.name}: the numba target needs every output linear in "
                             "products of the element arrays (per-set coefficients times "
                             "monomials); use target='numpy'")
        if linear is None:  # not linear in the element arrays: the plan as written
            text = numpy_module(plan, prove_model_plan(plan))
            check_names(text, layer)
            return text
        if target == "numba":
            from .model_numba import numba_module, one_pass_proved
            from .model_trace import check_numba, numba_line

            proved = prove_model_plan(linear.plan)
            op, one = one_pass_proved(linear)
            reference = vector_module(linear, [*proved, emitted_line(linear.plan)])
            check_emitted(reference, linear.plan)
            text = numba_module(linear, [*proved, *one,
                                         emitted_line(linear.plan, "the NumPy target's"),
                                         numba_line(linear.plan)], op)
            check_names(text, layer)
            check_numba(text, reference, linear.plan)
            return text
        text = vector_module(linear, [*prove_model_plan(linear.plan),
                                      emitted_line(linear.plan)])
        check_names(text, layer)
        check_emitted(text, linear.plan)
        check_blocks(text, linear.plan)
        return text
    all_plans = plans()
    if target == "numpy":  # the fused plan is the numba kernel's; prove what is written
        del all_plans["fused"]
    proved = prove_plans(all_plans)
    if target == "numba":
        return _numba_module(all_plans, proved)
    from ..models import load as load_model
    from .model_trace import trace

    text = _numpy_module(all_plans, [*proved, BATCHNORM_TRACED])
    trace(text, "batchnorm_backward", load_model("batchnorm"),
          "dy, x, gamma, eps -> dx, dgamma, dbeta", [1, 3])
    return text


def lambdify_backward(n: int, model: Model | str | None = None):
    """`sympy.lambdify` of the concrete-N closed form the prover checks (N = n).

    BatchNorm (the default): a `Backward` of dx, dgamma, dbeta taking x_1..x_n, dy_1..dy_n,
    gamma, eps (scalars, or arrays over columns).  Another model: a named tuple of d<leaf>
    for its element, along and set leaves, and `args`, the leaf symbols they take.

    >>> g = lambdify_backward(2)
    >>> float(g.dbeta(1.0, 3.0, 0.5, 0.25, 2.0, 1.0))
    0.75
    >>> lambdify_backward(2, model="layernorm")._fields
    ('dx', 'dgamma', 'dbeta', 'args')
    """
    layer = _layer(model)
    if layer is None:
        return _lambdify_batchnorm(n)
    from .model_unrolled import lambdify_model

    return lambdify_model(layer, n)


def write(source: str, path: str) -> io.Target:
    """Write `source` to `path` through symbn.io (atomic; `-` is standard output)."""
    return io.write(path, source)
