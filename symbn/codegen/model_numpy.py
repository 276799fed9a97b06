"""Any model's vectorised NumPy module: reductions along the model's axis, per-set values,
element-wise outputs, everything in float64 and the results in the input dtype.

The function names and arguments follow the model: `layernorm_forward(X, gamma, beta,
eps=1e-5)`, `layernorm_backward(dY, X, gamma, eps=1e-5) -> (dX, dgamma, dbeta)`; element
leaves are upper-case arrays, the gradients of along leaves are summed over every set.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..graph import Model
from .model_plan import SCALAR_KINDS, Elem, ModelPlan, RowSum, computed


class SetPrinter(NumPyPrinter):
    """NumPy printer that prints a reduction over a set as `_sum(...)` (keepdims).

    >>> SetPrinter().doprint(RowSum(Elem("D") * Elem("dY")))
    '_sum(D*dY)'
    """

    def _print_RowSum(self, expr: RowSum) -> str:
        return f"_sum({self._print(expr.args[0])})"


_RUNTIME_HEAD = '''
AXIS = {axis}
MIN_N = {min_n}
MAX_N = {max_n}  # the largest N proved (None: every N)


def _array(name, a):
    a = numpy.asarray(a)
    if a.dtype not in (numpy.float32, numpy.float64):
        raise ValueError(f"{{name}} has dtype {{a.dtype}}; use float32 or float64")
    return a


'''

# the per-element arrays' and scalars' checks, shared with model_vector's runtime (`_array`
# is each one's)
ELEMENT = '''def _element(arrays):
    """The per-element arrays, checked: one shape, one dtype, MIN_N <= N <= MAX_N along
    AXIS."""
    (first_name, first), rest = arrays[0], arrays[1:]
    first = _array(first_name, first)
    if first.ndim < 1 or (AXIS == 0 and first.ndim != 2):
        want = "a 2-d array of shape (N, D)" if AXIS == 0 else "an array of shape (..., N)"
        raise ValueError(f"{{first_name}} must be {{want}}, got shape {{first.shape}}")
    if first.size == 0:
        raise ValueError(f"{{first_name}} is empty (shape {{first.shape}}); every axis must "
                         "have length at least 1")
    if first.shape[AXIS] < MIN_N:
        raise ValueError(f"{{first_name}} has shape {{first.shape}}: this layer needs at least "
                         f"{{MIN_N}} elements along axis {{AXIS}}")
    if MAX_N is not None and first.shape[AXIS] > MAX_N:
        raise ValueError(f"{{first_name}} has shape {{first.shape}}: this module is proved for "
                         f"at most {{MAX_N}} elements along axis {{AXIS}} (the model is outside "
                         "symbn's symbolic-N fragment); generate one for your N with symbn "
                         "codegen --unrolled --n N")
    out = [first]
    for name, a in rest:
        a = _array(name, a)
        if a.shape != first.shape:
            raise ValueError(f"{{name}} has shape {{a.shape}}, expected {{first.shape}} to match "
                             f"{{first_name}} {{first.shape}}")
        if a.dtype != first.dtype:
            raise ValueError(f"{{name}} has dtype {{a.dtype}} but {{first_name}} has "
                             f"{{first.dtype}}; use one dtype")
        out.append(a)
    return out


def _scalar(name, value, positive, X):
    if X.dtype == object:  # an exact scalar, taken as it is
        return value
    given = value
    if isinstance(value, numpy.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]  # a 0-d array such as numpy.asarray(1e-5)
    if isinstance(value, (bool, numpy.bool_)) \\
            or not isinstance(value, (int, float, numpy.integer, numpy.floating)) \\
            or not numpy.isfinite(value) or (positive and not float(value) > 0):
        want = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{{name}} must be {{want}}, got {{given!r}}")
    return float(value)
'''

_RUNTIME_TAIL = '''

def _along(name, a, X):
    """A leaf with one value per position along AXIS, shape (N,), in float64, shaped to
    broadcast against X."""
    a = _array(name, a)
    if a.shape != (X.shape[AXIS],):
        raise ValueError(f"{{name}} has shape {{a.shape}}, expected ({{X.shape[AXIS]}},) to match "
                         f"X {{X.shape}} along axis {{AXIS}}")
    shape = [1] * X.ndim
    shape[AXIS] = X.shape[AXIS]
    return a.astype(numpy.float64).reshape(shape)


def _per_set(name, a, X):
    """A leaf with one value per set, shape X.shape without AXIS, in float64, shaped to
    broadcast against X."""
    a = _array(name, a)
    want = X.shape[1:] if AXIS == 0 else X.shape[:-1]
    if a.shape != want:
        raise ValueError(f"{{name}} has shape {{a.shape}}, expected {{want}} (one value per set) "
                         f"to match X {{X.shape}}")
    return numpy.expand_dims(a.astype(numpy.float64), AXIS)


def _sum(a):
    """The sum over each set (along AXIS), one value per set, kept as an axis of length 1."""
    return numpy.sum(a, axis=AXIS, keepdims=True)


def _centred(X):
    """D = X - mu in two passes on the shift K = the first element of each set: X - K is
    exact for close values (Sterbenz), so the mean is taken of small numbers."""
    D = X - numpy.take(X, [0], axis=AXIS)
    D -= _sum(D) / X.shape[AXIS]
    return D


def _elements(value, X, dtype):
    return numpy.broadcast_to(value, X.shape).astype(dtype)


def _over_sets(value, X, dtype):
    """An along leaf's gradient: the per-element shares summed over every set."""
    value = numpy.broadcast_to(value, X.shape)
    return value.sum(axis=tuple(k for k in range(X.ndim) if k != AXIS % X.ndim)).astype(dtype)


def _sets(value, X, dtype):
    """A set leaf's gradient: one value per set."""
    shape = list(X.shape)
    shape[AXIS] = 1
    return numpy.broadcast_to(value, shape).squeeze(AXIS).astype(dtype)
'''

_RUNTIME = _RUNTIME_HEAD + ELEMENT + _RUNTIME_TAIL


@dataclass
class Api:
    """The generated functions' names, arguments and results, read off the model."""

    model: Model
    forward: list[str]    # leaf names, in the order of the arguments
    backward: list[str]
    gradients: list[str]  # leaves whose gradients backward returns, in order

    @property
    def prefix(self) -> str:
        return self.model.name.replace("-", "_")

    def array(self, leaf: str) -> str:
        """The argument name: X for an element leaf x (dY for the gradient), else the leaf."""
        if leaf == self.model.gradient:
            return "d" + self.model.output[0].upper() + self.model.output[1:]
        kind = self.model.leaves[leaf]
        return leaf[0].upper() + leaf[1:] if kind == "element" else leaf

    def grad(self, leaf: str) -> str:
        return "d" + self.array(leaf)

    def arguments(self, leaves: list[str]) -> str:
        out = [self.array(a) for a in leaves if a != "eps"]
        return ", ".join(out + ["eps=1e-5"] * ("eps" in leaves))

    def signatures(self) -> list[str]:
        p, y = self.prefix, self.model.output.upper()
        grads = ", ".join(self.grad(g) for g in self.gradients)
        return [f"    {p}_forward({self.arguments(self.forward)}) -> {y}",
                f"    {p}_backward({self.arguments(self.backward)}) -> ({grads})"]

    def shapes(self) -> str:
        m = self.model
        arrays = [self.array(a) for a in self.backward if m.leaves.get(a, "element") == "element"]
        along = [a for a in m.leaves if m.leaves[a] == "along"]
        sets = [a for a in m.leaves if m.leaves[a] == "set"]
        if m.axis == 0:
            text = f"{', '.join(arrays)}: (N, D) float32 or float64, sets along axis 1"
            per_set, per_pos = "(D,)", "(N,)"
        else:
            text = (f"{', '.join(arrays)}: (..., N) float32 or float64, any number of leading "
                    "(set) axes")
            per_set, per_pos = "(...,) (one per set)", "(N,)"
        if along:
            text += f"; {', '.join(along)}: {per_pos}, shared by every set (their gradients " \
                    "are summed over the sets)"
        if sets:
            text += f"; {', '.join(sets)}: {per_set}"
        return text + f"; N >= {m.min_n}" * (m.min_n > 1) + "; results in the input dtype."

    def checks(self, leaves: list[str], ind: str = "    ") -> list[str]:
        """The lines validating the arguments: element arrays, then the other leaves."""
        m = self.model
        arrays = [a for a in leaves if m.leaves.get(a, "element") == "element"]
        names = [self.array(a) for a in arrays]
        first = names[1] if leaves[0] == m.gradient and len(names) > 1 else names[0]
        pairs = ", ".join(f"('{n}', {n})" for n in names)
        lines = [f"{ind}{', '.join(names)}, = _element([{pairs}])",
                 f"{ind}dtype = {first}.dtype"]
        lines += [f"{ind}{n} = {n}.astype(numpy.float64)" for n in names]
        if first != "X":
            lines.append(f"{ind}X = {first}")
        for a in leaves:
            kind = m.leaves.get(a)
            if kind == "along":
                lines.append(f"{ind}{a} = _along('{a}', {a}, X)")
            elif kind == "set":
                lines.append(f"{ind}{a} = _per_set('{a}', {a}, X)")
            elif kind in SCALAR_KINDS:
                lines.append(f"{ind}{a} = _scalar('{a}', {a}, {kind == 'positive'}, X)")
        return lines


def api_of(model: Model, backward_used: set[str], forward_used: set[str]) -> Api:
    """The arguments: the element leaves (dY first in backward), then the other leaves the
    expressions use, in the model's order, eps last with its default."""
    def order(used: set[str], gradient: bool) -> list[str]:
        elements = [a for a, k in model.leaves.items() if k == "element"]
        rest = [a for a, k in model.leaves.items() if k != "element" and a in used]
        rest = [a for a in rest if a != "eps"] + ["eps"] * ("eps" in rest)
        return [model.gradient] * gradient + elements + rest

    gradients = [a for a, k in model.leaves.items() if k not in SCALAR_KINDS]
    return Api(model, order(forward_used, False), order(backward_used, True), gradients)


def plan_api(plan: ModelPlan) -> Api:
    names = {s: name for name, s in plan.symbols.items()}

    def used(keys):
        found = set().union(*[computed(plan, k).free_symbols for k in keys])
        return {names[s] for s in found if s in names}

    m = plan.model
    return api_of(m, used(plan.gradients), used([m.output]))


def header(title: str, api: Api, proved: list[str], plan_lines: list[str],
           imports: str = "numpy only", extra: tuple[str, ...] = ()) -> str:
    from .emit_numpy import _version

    m = api.model
    lines = [f'"""{title}', "",
             (f"Generated by symbn {_version()} with SymPy {sp.__version__} from the model "
              f"{m.name}; regenerate, do not edit."), "",
             *api.signatures(), *extra, "", *_wrap(api.shapes()), "", *plan_lines, "",
             "Proved (exact arithmetic, no floating point):",
             *[f"  {p}" for p in proved], "", f"Imports: {imports}.", '"""', ""]
    return "\n".join(lines)


def _wrap(text: str, width: int = 92) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _plan_lines(plan: ModelPlan, api: Api, linear: bool | str = False) -> list[str]:
    axis = "the last axis" if plan.model.axis == -1 else "axis 0"
    centring = ("; D = X - mu centred in two passes on the shift K = the first element of "
                "each set" if plan.centred else "")
    how = linear if isinstance(linear, str) else (
        "the sums and per-set coefficients in float64, the elements in the input dtype"
        if linear else "in float64")
    out = [*_wrap(f"Computed as (RowSum = sum over each set, along {axis}{centring}; "
                  f"{how}):")]
    m = plan.model
    out.append(f"    {m.output.upper()} = {sp.sstr(computed(plan, m.output))}")
    for g in plan.gradients:
        share = " (summed over the sets)" if plan.kinds[g] == "along" else ""
        out.append(f"    {api.grad(g)} = {sp.sstr(computed(plan, g))}{share}")
    return out


def numpy_module(plan: ModelPlan, proved: list[str]) -> str:
    """The module text of the vectorised NumPy target for `plan`."""
    m, p = plan.model, SetPrinter()
    api = plan_api(plan)
    lines = [header(f"{m.title}: forward and backward, vectorised NumPy.", api, proved,
                    _plan_lines(plan, api)),
             "import numpy", _RUNTIME.format(axis=m.axis, min_n=m.min_n, max_n=plan.max_n)]

    def body(assignments, returns) -> list[str]:
        out = ["    N = X.shape[AXIS]"]
        if plan.centred is not None:
            out.append("    D = _centred(X)")
        needed = set().union(*[e.free_symbols for e in [*assignments.values(), *returns]])
        for s, e in reversed(plan.reductions):  # a sum of a per-set value needs its sums
            if s in needed:
                needed |= e.free_symbols
        out += [f"    {s} = {p.doprint(RowSum(e))}" for s, e in plan.reductions if s in needed]
        out += [f"    {s} = {p.doprint(e)}" for s, e in assignments.items()]
        return out

    y = m.output
    lines += ["", f"def {api.prefix}_forward({api.arguments(api.forward)}):",
              f'    """{y.upper()}: the layer\'s output, {y}[i] = {m.nodes[y].text}."""',
              *api.checks(api.forward),
              *body(dict(plan.forward), [plan.outputs[y]]),
              f"    return _elements({p.doprint(plan.outputs[y])}, X, dtype)"]
    grads = ", ".join(api.grad(g) for g in plan.gradients)
    lines += ["", "", f"def {api.prefix}_backward({api.arguments(api.backward)}):",
              (f'    """({grads}): the gradients of f given {api.array(m.gradient)} = '
              f'df/d{y.upper()}."""'),
              *api.checks(api.backward),
              *body(dict(plan.backward), [plan.outputs[g] for g in plan.gradients])]
    wrap = {"element": "_elements", "along": "_over_sets", "set": "_sets"}
    lines += [f"    {api.grad(g)} = {wrap[plan.kinds[g]]}({p.doprint(plan.outputs[g])}, X, dtype)"
              for g in plan.gradients]
    lines += [f"    return {grads}", ""]
    return "\n".join(lines)


def element_symbols(plan: ModelPlan) -> set:
    return {s for s in plan.symbols.values() if isinstance(s, Elem)}
