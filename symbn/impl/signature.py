"""The backward function's signature: its argument and output names mapped to the model's.

>>> from symbn.models import load
>>> print(parse_signature("dy, x, w, eps -> dx, dw", load("batchnorm")))
dy, x, w, eps -> dx, dw
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SymbnError
from ..graph import Model


@dataclass(frozen=True)
class Signature:
    """The function's arguments as model names (leaves and the upstream gradient) and its
    outputs as leaves (d<leaf>), with the names the user wrote."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def __str__(self) -> str:
        return ", ".join(self.input_names) + " -> " + ", ".join(self.output_names)


def backward_inputs(m: Model) -> list[str]:
    """The upstream gradient and the leaves the backward needs (those the closed forms
    depend on), in model order: batchnorm ['dy', 'x', 'gamma', 'eps'].

    >>> from symbn.models import load
    >>> backward_inputs(load("rmsnorm"))
    ['dy', 'x', 'gamma', 'eps']
    """
    used: set = set()
    stack = [n for r in m.results.values() for n in _named(r.template)]
    if not m.results:  # no closed forms: every leaf
        used = set(m.leaves)
    while stack:
        name = stack.pop()
        if name in used:
            continue
        used.add(name)
        stack.extend(m.parents(name) if name in m.nodes else
                     _named(m.names[name].template) if name in m.names else ())
    return [m.gradient] + [leaf for leaf in m.leaves if leaf in used]


def _named(template) -> tuple[str, ...]:
    from ..graph import named

    return named(template)


def default_signature(m: Model) -> str:
    """'dy, x, gamma, eps -> dx, dgamma, dbeta' for batchnorm: the needed inputs, and the
    gradient of every leaf that is not a positive scalar (eps)."""
    outs = [f"d{leaf}" for leaf, kind in m.leaves.items() if kind != "positive"]
    return ", ".join(backward_inputs(m)) + " -> " + ", ".join(outs)


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")


# conventional parameter names of the model's names (PyTorch's weight and bias), used for the
# names the model has
ALIASES = {"weight": "gamma", "w": "gamma", "bias": "beta", "b": "beta", "epsilon": "eps",
           "dout": "dy", "grad_out": "dy", "grad_output": "dy"}


def positional(function):
    """`function`, its keyword-only parameters taken by position after the others
    (check-impl passes arguments by position): `def f(dy, x, gamma, *, eps=1e-5)` is called
    as f(dy, x, gamma, eps).  Anything else is returned as it is.

    >>> def f(a, *, eps):
    ...     return a + eps
    >>> positional(f)(1, 2), positional(f).__name__
    (3, 'f')
    """
    import inspect

    try:
        sig = inspect.signature(function)
    except (TypeError, ValueError):
        return function
    params = list(sig.parameters.values())
    named = [p for p in params if p.kind == p.KEYWORD_ONLY]
    if not named or any(p.kind == p.VAR_POSITIONAL for p in params):
        return function
    first = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    try:
        flat = sig.replace(parameters=[*first, *[p.replace(kind=p.POSITIONAL_OR_KEYWORD)
                                                 for p in named]])
    except ValueError:  # a default before one without: no positional form
        return function
    k = len(first)

    def call(*args):
        return function(*args[:k], **{p.name: a for p, a in zip(named, args[k:])})

    call.__name__ = getattr(function, "__name__", "function")
    call.__qualname__ = getattr(function, "__qualname__", call.__name__)
    call.__signature__ = flat
    return call


def named_signature(function, m: Model) -> str | None:
    """The signature read off the function's own parameter names, when they differ from the
    default order: parameters named like the model (or weight, bias, epsilon, dout) are
    those names, wherever they stand, also a leaf the backward does not need (beta); the
    others fill the inputs left, in order, until every input the backward needs has one;
    later parameters keep their defaults. None when the names say nothing new; an error
    when they name the model's inputs but some parameter before the last of them has no
    input left (a name the model does not have): the order would be a guess.

    >>> from symbn.models import load
    >>> def bn(x, dy, gamma, eps=1e-5): ...
    >>> named_signature(bn, load("batchnorm"))
    'x, dy, gamma, eps -> dx, dgamma, dbeta'
    >>> def ln(x, dy, weight, bias, eps=1e-5): ...
    >>> named_signature(ln, load("layernorm"))
    'x, dy, gamma, beta, eps -> dx, dgamma, dbeta'
    """
    import inspect

    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    slots = backward_inputs(m)
    model_names = {m.gradient, *m.leaves}
    direct = [n if n in model_names else ALIASES.get(n) if ALIASES.get(n) in model_names
              else None for n in names]
    claimed = [d for d in direct if d is not None]
    if len(set(claimed)) < len(claimed):
        return None  # two parameters for one name: by position
    free = iter([s for s in slots if s not in claimed])
    mapped: list[str] = []
    for name, d in zip(names, direct):
        if set(slots) <= set(mapped):
            break
        mapped.append(d if d is not None else next(free, ""))
        if not mapped[-1]:
            raise SymbnError(
                f"the parameters of {getattr(function, '__name__', 'the function')} "
                f"({', '.join(names)}) do not map onto {m.name}'s inputs: {name!r} is not a "
                f"name of the model and no input is left for it; give --signature, such as "
                f"'{default_signature(m)}' with the parameters' own names, or check a "
                "wrapper that takes the model's inputs and passes the rest itself")
    if not set(slots) <= set(mapped) or mapped == slots:
        return None
    return ", ".join(mapped) + " ->" + default_signature(m).partition("->")[2]


def parse_signature(text: str | None, m: Model) -> Signature:
    """Map the function's argument and output names to the model's.

    The rule: a name equal to a model name (a leaf, or dy) is that name; an output named
    d<leaf>, or d<argument> for an argument that mapped to a leaf, is that leaf's gradient.
    Any other name is taken by its position in the model's default signature
    (`default_signature`): "dy, x, w, eps -> dx, dw, db" maps w to gamma (third argument)
    and db to dbeta (third output).  A name whose position is taken by another, or lies
    beyond the default, is refused: name it like the model.

    >>> from symbn.models import load
    >>> s = parse_signature("dy, x, w, eps -> dx, dw, db", load("layernorm"))
    >>> s.inputs, s.outputs
    (('dy', 'x', 'gamma', 'eps'), ('x', 'gamma', 'beta'))
    """
    default = default_signature(m)
    text = default if text is None or not text.strip() else text
    if text.count("->") > 1:
        raise SymbnError(f"signature {text!r}: more than one '->'; write 'dy, x, gamma, eps "
                         "-> dx, dgamma'")
    left, arrow, right = text.partition("->")
    if not arrow:
        right = default.partition("->")[2]
    names_in = _names(left, text, "argument")
    names_out = _names(right, text, "output")
    slots_in = backward_inputs(m)
    known = {m.gradient: m.gradient, **{leaf: leaf for leaf in m.leaves}}
    inputs = _resolve(names_in, known, slots_in, text, "argument", m)
    aliases = {f"d{user}": leaf for user, leaf in zip(names_in, inputs) if leaf in m.leaves}
    aliases.update({f"d{leaf}": leaf for leaf in m.leaves})
    slots_out = [f"d{leaf}" for leaf, kind in m.leaves.items() if kind != "positive"]
    outputs = _resolve(names_out, aliases, [s[1:] for s in slots_out], text, "output", m)
    missing = [s for s in slots_in if s not in inputs]
    if missing:
        raise SymbnError(f"signature {text!r}: no argument for {', '.join(missing)}, which "
                         f"the backward of {m.name} needs; the default is '{default}'")
    if not outputs:
        raise SymbnError(f"signature {text!r}: no outputs; write '-> dx' at least")
    return Signature(tuple(inputs), tuple(outputs), tuple(names_in), tuple(names_out))


def _names(part: str, text: str, what: str) -> list[str]:
    names = [p.strip() for p in part.split(",")] if part.strip() else []
    for name in names:
        if not _NAME.match(name):
            raise SymbnError(f"signature {text!r}: {what} {name!r} is not a name; write "
                             "names separated by commas, such as 'dy, x, gamma, eps -> dx'")
    if len(set(names)) != len(names):
        raise SymbnError(f"signature {text!r}: an {what} name is repeated")
    return names


def _resolve(names: list[str], known: dict, slots: list[str], text: str, what: str,
             m: Model) -> list[str]:
    """Each name's model name: `known[name]`, else the default at its position."""
    by_name = [known[n] for n in names if n in known]
    if len(set(by_name)) != len(by_name):
        raise SymbnError(f"signature {text!r}: two {what}s stand for the same model name")
    out: list[str] = []
    for position, name in enumerate(names):
        if name in known:
            out.append(known[name])
            continue
        if position >= len(slots):
            raise SymbnError(f"signature {text!r}: {what} {name!r} (position {position + 1}) "
                             f"is not a name of {m.name} and the default signature has no "
                             f"{what} at that position; use the model's names")
        if slots[position] in by_name or slots[position] in out:
            raise SymbnError(f"signature {text!r}: {what} {name!r} is ambiguous: its position "
                             f"stands for {slots[position]}, which another {what} names; "
                             "name it like the model")
        out.append(slots[position])
    return out

