"""The BatchNorm computation graph for a concrete batch size N and D columns.

Leaves are x[i,c], gamma[c], beta[c], eps and the upstream gradients dy[i,c] = df/dy[i,c].
Nodes are mu[c], v[c], xhat[i,c], y[i,c] and f; each node knows its direct parents and its
local definition in terms of them, as in the note's computation graph

    x -> mu,  x -> v,  mu -> v,  x -> xhat,  mu -> xhat,  v -> xhat,  eps -> xhat,
    xhat -> y,  gamma -> y,  beta -> y,  y -> f.

The graph is the one of the model file `symbn/models/batchnorm.toml` (`symbn.graph`); this
class adds the note's names for its symbols.  sigma is a name for sqrt(v + eps), not a node,
so d xhat/d v is a local partial.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .graph import Instance, Model, Node, as_expr, rebuild, symbols_of

__all__ = ["BatchNorm", "Node", "as_expr", "rebuild", "symbols_of"]


@lru_cache(maxsize=1)
def batchnorm_model() -> Model:
    """The shipped model file of BatchNorm, read once."""
    from .models import load

    return load("batchnorm")


class BatchNorm(Instance):
    """BatchNorm in training mode (biased variance, eps > 0) for an N x D batch.

    Indices are 1-based, as in the note.  For D = 1 the column index is dropped from names.

    >>> bn = BatchNorm(3)
    >>> bn.nodes[bn.mu()].definition
    x[1]/3 + x[2]/3 + x[3]/3
    >>> [str(p) for p in bn.nodes[bn.xhat(2)].parents]
    ['x[2]', 'mu', 'v', 'eps']
    """

    def __init__(self, n: int, d: int = 1):
        super().__init__(batchnorm_model(), n, d)
        self.eps = self.symbol("eps")
        # f's arguments row by row, then column: the order of the note's sums
        ys = tuple(self.y(i, c) for i in self.rows() for c in self.columns())
        self.nodes[self.f] = Node(self.f, ys, self.f_function(*ys))
        self._leaves = [*(self.x(i, c) for i in self.rows() for c in self.columns()),
                        *(self.dy(i, c) for i in self.rows() for c in self.columns()),
                        *map(self.gamma, self.columns()), *map(self.beta, self.columns()),
                        self.eps]

    # -- naming -------------------------------------------------------------------------
    def x(self, i: int, c: int = 1) -> sp.Symbol:
        return self.symbol("x", i, c)

    def dy(self, i: int, c: int = 1) -> sp.Symbol:
        return self.symbol("dy", i, c)

    def gamma(self, c: int = 1) -> sp.Symbol:
        return self.symbol("gamma", None, c)

    def beta(self, c: int = 1) -> sp.Symbol:
        return self.symbol("beta", None, c)

    def mu(self, c: int = 1) -> sp.Symbol:
        return self.symbol("mu", None, c)

    def v(self, c: int = 1) -> sp.Symbol:
        return self.symbol("v", None, c)

    def xhat(self, i: int, c: int = 1) -> sp.Symbol:
        return self.symbol("xhat", i, c)

    def y(self, i: int, c: int = 1) -> sp.Symbol:
        return self.symbol("y", i, c)

    def sigma(self, c: int = 1) -> sp.Expr:
        """sigma = sqrt(v + eps), an expression in the node v (not a node itself)."""
        return sp.sqrt(self.v(c) + self.eps)
