"""The words of the derivation language: limits, index and model names, D and P, and the
`Vocabulary` a claim is read against (`BATCHNORM` for `model = "batchnorm"`, read off the
shipped model file).

>>> INDEX["i"], N.is_positive, sorted(builtin().leaves)
(i, True, ['beta', 'eps', 'gamma', 'x'])
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

# Limits that keep a hostile file from hanging symbn or exhausting memory.
MAX_FILE_BYTES = 256 * 1024
MAX_STEPS = 500
MAX_CLAIM_CHARS = 4000
MAX_NODES = 1500          # AST nodes in one claim
MAX_DEPTH = 40            # nesting of the expression tree
MAX_DERIVATIVE_DEPTH = 3  # D or P inside D or P
MAX_INTEGER = 10 ** 12    # size of an integer literal
MAX_EXPONENT = 8          # |p/q| of an exponent; q must be 1 or 2
MAX_WEIGHT = 64           # bound on the polynomial degree a claim can reach, see _Weight

INDEX = {name: sp.Symbol(name, integer=True) for name in ("i", "j", "k")}
N = sp.Symbol("N", integer=True, positive=True)
SCALARS = {name: sp.Symbol(name) for name in ("mu", "v", "eps", "gamma", "beta", "f", "sigma")}
INDEXED = {name: sp.IndexedBase(name) for name in ("x", "xhat", "y", "dy")}
FUNCTIONS = {"sqrt": 1, "Sum": 2, "KroneckerDelta": 2, "D": 2, "P": 2}
NAMES = sorted([*INDEX, "N", *SCALARS, *INDEXED, *FUNCTIONS])

class D(sp.Function):
    """D(a, b): total derivative of the expression a with respect to b; never evaluates.

    >>> D(SCALARS["v"], INDEXED["x"][INDEX["j"]])
    D(v, x[j])
    """

    nargs = 2


class P(sp.Function):
    """P(a, b): local partial of node a with respect to its direct parent b; never evaluates.

    >>> P(INDEXED["xhat"][INDEX["i"]], SCALARS["v"])
    P(xhat[i], v)
    """

    nargs = 2


@dataclass(frozen=True)
class Vocabulary:
    """The names a claim may use and their roles in the graph (`Model.vocabulary()`).

    `scalars` are written bare (mu, gamma), `indexed` with a row (x[i]); `leaves` maps each
    leaf to its kind (element, along, set, constant, positive): D(a, b) takes b among them
    or the `output`; `parents` gives each node, f included, its direct parents for P(a, b)
    and `same_row` the (node, parent) edges that join one row only; `names` stand for
    expressions (sigma), neither leaves nor nodes; `functions` are the callable ones.

    >>> builtin().gradient, builtin().leaves["gamma"]
    ('dy', 'set')
    """

    scalars: tuple[str, ...]
    indexed: tuple[str, ...]
    leaves: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    names: tuple[str, ...] = ()
    same_row: tuple[tuple[str, str], ...] = ()
    output: str = "y"
    functions: tuple[str, ...] = tuple(FUNCTIONS)

    @property
    def gradient(self) -> str:
        """The name of the upstream gradient: dy[i] = D(f, y[i])."""
        return "d" + self.output


def __getattr__(name: str):
    # BATCHNORM is read from the shipped model file on first use (one definition of the graph)
    if name == "BATCHNORM":
        return builtin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BUILTIN: dict = {}


def builtin() -> Vocabulary:
    """The vocabulary of `model = "batchnorm"`, read off symbn/models/batchnorm.toml."""
    if not _BUILTIN:
        from ..models import load

        m = load("batchnorm")
        _BUILTIN.update(vocabulary=m.vocabulary(), weights=m.weights())
    return _BUILTIN["vocabulary"]


def builtin_weights() -> dict[str, tuple[int, int]]:
    """BatchNorm's node degrees for the size bound (`Model.weights`), read off its file."""
    builtin()
    return _BUILTIN["weights"]
