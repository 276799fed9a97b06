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


def named_signature(function, m: Model) -> str | None:
    """The default signature with the arguments in the order of the function's own
    parameters, when some of those are the model's input names in another order (def bn(x,
    dy, gamma, eps); def ln(x, dy, weight, eps), weight then taking gamma's place); None
    otherwise.

    >>> from symbn.models import load
    >>> def bn(x, dy, gamma, eps=1e-5): ...
    >>> named_signature(bn, load("batchnorm"))
    'x, dy, gamma, eps -> dx, dgamma, dbeta'
    >>> def ln(x, dy, weight, eps): ...
    >>> named_signature(ln, load("layernorm"))
    'x, dy, gamma, eps -> dx, dgamma, dbeta'
    """
    import inspect

    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    slots = backward_inputs(m)
    head = names[:len(slots)]
    if len(head) < len(slots) or len(set(head)) < len(head):
        return None
    # the model's names by name, the others (weight for gamma) to the slots left, in order
    free = iter([s for s in slots if s not in head])
    mapped = [n if n in slots else next(free) for n in head]
    if mapped == slots:
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

