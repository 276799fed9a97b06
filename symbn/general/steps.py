"""Derivation files for every N: BatchNorm's steps are read against models/batchnorm.toml and
decided by `symbn.every_n_steps`, as every model's are (one symbolic interpreter,
`symbn.every_n_translate`).

A step is `proved` for every N where it is defined, `disproved` only with a concrete witness
at N = 1..4, `unknown` otherwise.

>>> from symbn.derivation import load
>>> check_all(load("batchnorm"))["lemma-centered-sum"].verdict
'proved'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import sympy as sp

from ..report import Report


def translate(template: sp.Expr) -> sp.Expr:
    """A derivation template (symbn.derivation's names, D and P) in BatchNorm for symbolic N.

    >>> from symbn.derivation import INDEX, INDEXED, N
    >>> jj = INDEX["j"]
    >>> translate(sp.Sum(INDEXED["x"][jj], (jj, 1, N)) + INDEXED["x"][jj])
    x[j] + Sum(x[k'1], (k'1, 1, N))
    """
    from ..every_n_translate import translate as in_model

    return in_model(template, "batchnorm")


def check_all(derivation, timeout: float | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Every step of a derivation file (path, shipped name or `Derivation`) for every N."""
    from ..derivation import Derivation, load
    from ..every_n_steps import check_all as check_model
    from ..models import load as load_model

    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if d.spec is None:  # model = "batchnorm": its model file
        d = dataclasses.replace(d, spec=load_model("batchnorm"))
    return check_model(d, timeout, progress)
