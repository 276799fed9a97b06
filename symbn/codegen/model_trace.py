"""The emitted NumPy module itself, checked before it is written: its backward is run on
NumPy object arrays of exact scalars (`symbn.impl.check_impl`, the exact trace) at the
model's smallest N and at N = 3, and every gradient it returns must be proved equal to the
model's derivative.

`prove_model_plan` proves the expressions of the plan; this proves that the module's text
computes them (the blocks, the stacked monomials, the batched products, the reductions).

>>> from symbn.models import load
>>> from .model_plan import model_plan
>>> emitted_line(model_plan(load("rmsnorm"))).split(": ")[-1]
'dX, dgamma'
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from ..errors import SymbnError
from .model_numpy import plan_api
from .model_plan import ModelPlan

D = 2


def _ns(plan: ModelPlan) -> list[int]:
    """The smallest N the model allows (sets of one element, for most) and N = 3."""
    return sorted({plan.model.min_n, max(3, plan.model.min_n)})


def emitted_line(plan: ModelPlan) -> str:
    """The header line that `check_emitted` makes true."""
    api = plan_api(plan)
    grads = ", ".join(api.grad(g) for g in plan.gradients)
    sizes = " and ".join(map(str, _ns(plan)))
    return (f"the emitted {api.prefix}_backward itself, run on object arrays of exact scalars "
            f"at N = {sizes}, D = {D} (symbn check-impl): {grads}")


def check_emitted(text: str, plan: ModelPlan) -> None:
    """Import `text` as a module and prove its backward by the exact trace (D = 2, N = the
    model's smallest and 3); raises SymbnError, naming the gradient, on anything not proved."""
    api = plan_api(plan)
    signature = (", ".join(api.backward) + " -> "
                 + ", ".join(f"d{g}" for g in plan.gradients))
    trace(text, f"{api.prefix}_backward", plan.model, signature, _ns(plan))


def trace(text: str, function: str, model, signature: str, ns: list[int]) -> None:
    """`function` of the module `text`, run on exact scalars at each N of `ns` (D = 2):
    every output proved, or SymbnError."""
    from ..impl.check import check_impl

    with tempfile.TemporaryDirectory(prefix="symbn-trace-") as tmp:
        path = Path(tmp) / f"{function}_emitted.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    for n in ns:
        report = check_impl(getattr(module, function), model, n=n, d=D, signature=signature)
        for r in report.results:
            if r.verdict != "proved":
                raise SymbnError(f"{model.name}: the emitted {function}'s {r.id} is "
                                 f"{r.verdict} at N = {n}, D = {D} when run on exact "
                                 "scalars; refusing to write the code")
