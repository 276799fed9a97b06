"""Differential soundness fuzzer: symbn's verdicts against the independent oracle.

Generates random batchnorm claims ``lhs = rhs`` (true ones built from known identities and
algebraic rewrites of random subexpressions; false near-misses made by mutating them: a
perturbed constant, i and j swapped, N replaced by N - 1, a dropped term, a flipped sign, a
Sum variable colliding with a free index, sqrt of a square of a sign-indefinite thing),
sometimes with ``where = "i != j"``.  For each claim it asks symbn for a verdict at
N = 1, 2, 3, 4 (``symbn.check.check``) and for every N (``symbn.general.check_all``), then
cross-checks every verdict with tests/oracle.py.

``--model layernorm | rmsnorm | batchnorm-unbiased`` fuzzes a row model instead, with its
own grammar (gamma[i], beta[i] per position, ms for RMSNorm, N - 1 for the unbiased
variance) and extra near misses: an along leaf's row changed (gamma[i] -> gamma[j]), gamma
pulled out of a Sum, N - 1 -> N, ms <-> v, biased <-> unbiased v.  Concrete N are the
model's first ones (2, 3, 4 for batchnorm-unbiased, 1..4 otherwise); every N goes through
``symbn.every_n_steps.check_all``; the oracle evaluates the same model (``Oracle(n,
model=...)``).  Finding kinds:

  PROVED-FALSE    a concrete `proved` at N, but the oracle finds a counterexample at N
  ALLN-FALSE      `proved` for every N, but the oracle finds a counterexample at some
                  concrete N allowed by the every-N note (N >= m)
  ALLN-VS-N       `proved` for every N while a concrete N (allowed by the note) is
                  `disproved` with an oracle-confirmed witness
  BAD-WITNESS     `disproved`, but the oracle's sides agree at the witness
  ASSIGNMENTS     symbn's index assignments differ from an independent enumeration
  CRASH           an exception other than SymbnError (traceback tail recorded)
  HANG            a claim exceeded the per-claim alarm

Less severe, recorded separately: UNCONFIRMED (a disproof with dy in the witness that the
oracle's nonlinear f does not reproduce), ORACLE-ERROR (the oracle cannot read a claim).

Usage (single process; from the repository root, dev venv active):

    python scripts/fuzz_soundness.py --seed 1 --minutes 20 [--max-claims 5000]
        [--model layernorm] [--log fuzz.jsonl] [--verbose]

Prints counts of verdicts and every finding (claim, where, verdicts, witness, oracle
answer); with --log, writes one JSON line per claim.  Exit status 1 if a finding of a
severe kind was made.
"""

from __future__ import annotations

import argparse
import ast
import collections
import itertools
import json
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from oracle import Oracle, OracleError

from symbn.check import assignments as symbn_assignments
from symbn.check import check
from symbn.derivation import parse
from symbn.errors import SymbnError
from symbn.every_n_steps import check_all as check_model_all
from symbn.general import check_all

SIZES = (1, 2, 3, 4)
SEVERE = ("PROVED-FALSE", "ALLN-FALSE", "ALLN-VS-N", "BAD-WITNESS", "ASSIGNMENTS", "CRASH",
          "HANG")

# -- the grammar ------------------------------------------------------------------------------

# scalar atoms (no free k); index atoms use i, j
ATOMS = ["x[i]", "x[j]", "mu", "v", "sigma", "xhat[i]", "xhat[j]", "y[i]", "y[j]",
         "gamma", "beta", "eps", "N", "(x[i] - mu)", "(x[j] - mu)", "Sum(x[k]**2, (k, 1, N))",
         "KroneckerDelta(i, j)", "2", "3", "1/N", "(v + eps)", "x[i]**2",
         "Sum(xhat[k]*x[k], (k, 1, N))", "(x[i] - x[j])", "(gamma + 1)"]
DY_ATOMS = ["dy[i]", "dy[j]", "Sum(dy[k]*xhat[k], (k, 1, N))", "Sum(dy[k], (k, 1, N))"]
RARE_ATOMS = ["x[2]", "x[1]", "xhat[2]", "y[1]", "P(v, mu)", "P(mu, x[j])", "P(xhat[i], v)",
              "D(mu, x[j])", "D(v, x[i])", "D(f, y[i])", "P(y[i], gamma)", "D(f, x[j])"]
# atoms in the summation variable k (plus k-free scalars)
K_ATOMS = ["x[k]", "xhat[k]", "(x[k] - mu)", "x[k]**2", "y[k]", "dy[k]", "KroneckerDelta(i, k)",
           "KroneckerDelta(j, k)", "x[i]*x[k]", "(x[k] - x[j])", "dy[k]*xhat[k]"]
POSITIVE = ["(v + eps)", "sigma", "eps", "N", "(1 + x[i]**2)", "(v + eps)**2", "sigma**3",
            "(eps + x[j]**2)", "(N + v)", "(2*eps + 1)"]
INDEFINITE = ["(x[i] - mu)", "x[i]", "gamma", "(x[1] - x[2])", "xhat[i]", "(2*eps - 1)",
              "(beta - 1)", "(x[i] - x[j])", "(eps - v)", "y[i]"]
WRT = ["x[j]", "x[i]", "x[1]", "gamma", "beta", "eps"]


def atom(rng: random.Random, dy: bool = True, g: Grammar | None = None) -> str:
    """A random atom of the grammar `g` (BatchNorm's by default)."""
    g = g or BATCHNORM
    r = rng.random()
    if r < 0.1:
        return rng.choice(g.rare_atoms if dy else [a for a in g.rare_atoms if "f" not in a])
    if dy and r < 0.25:
        return rng.choice(g.dy_atoms)
    return rng.choice(g.atoms)


def expr(rng: random.Random, depth: int, dy: bool = True, g: Grammar | None = None) -> str:
    """A random expression; dy=False keeps dy and f out (so that D of it is allowed)."""
    g = g or BATCHNORM
    if depth <= 0 or rng.random() < 0.35:
        return atom(rng, dy, g)
    a, b = expr(rng, depth - 1, dy, g), expr(rng, depth - 1, dy, g)
    kind = rng.randrange(9)
    if kind == 0:
        return f"({a} + {b})"
    if kind == 1:
        return f"({a} - {b})"
    if kind in (2, 3):
        return f"{a}*{b}"
    if kind == 4:
        return f"{a}/{rng.choice(g.positive)}"
    if kind == 5:
        return f"({a})**2"
    if kind == 6:
        return f"sqrt({rng.choice(g.positive)})*{a}"
    if kind == 7:
        return f"Sum({kexpr(rng, dy, g)}, (k, 1, N))"
    if not dy or rng.random() < 0.5:
        return f"D({expr(rng, depth - 1, False, g)}, {rng.choice(g.wrt)})"
    return f"({a} + {b})"


def kexpr(rng: random.Random, dy: bool = True, g: Grammar | None = None) -> str:
    """A body in k for Sum(., (k, 1, N))."""
    g = g or BATCHNORM
    pool = g.k_atoms if dy else [a for a in g.k_atoms if "dy" not in a]
    a = rng.choice(pool)
    r = rng.random()
    if r < 0.3:
        return a
    if r < 0.6:
        return f"{a}*{atom(rng, dy, g)}"
    if r < 0.8:
        return f"({a} + {rng.choice(pool)})"
    return f"({a})**2"


def kfree(rng, dy=True, g=None):
    return expr(rng, 1, dy, g)


# true identities: each template returns (lhs, rhs, where)
def t_model(rng, g):
    return rng.choice(g.identities)


BN_IDENTITIES = [
        ("Sum(x[k], (k, 1, N))", "N*mu", ""),
        ("Sum((x[k] - mu)**2, (k, 1, N))", "N*v", ""),
        ("Sum(x[k]**2, (k, 1, N))/N - mu**2", "v", ""),
        ("xhat[i]", "(x[i] - mu)/sigma", ""),
        ("sigma", "sqrt(v + eps)", ""),
        ("sigma**2", "v + eps", ""),
        ("y[i]", "gamma*xhat[i] + beta", ""),
        ("D(mu, x[j])", "1/N", ""),
        ("D(v, x[j])", "2*(x[j] - mu)/N", ""),
        ("D(sigma, x[j])", "(x[j] - mu)/(N*sigma)", ""),
        ("D(xhat[i], x[j])",
         "(KroneckerDelta(i, j) - 1/N)/sigma - (x[i] - mu)*(x[j] - mu)/(N*sigma**3)", ""),
        ("D(xhat[i], x[j])", "-1/(N*sigma) - xhat[i]*xhat[j]/(N*sigma)", "i != j"),
        ("D(xhat[i], x[i])", "(1 - 1/N)/sigma - xhat[i]**2/(N*sigma)", ""),
        ("D(f, beta)", "Sum(dy[k], (k, 1, N))", ""),
        ("D(f, gamma)", "Sum(dy[k]*xhat[k], (k, 1, N))", ""),
        ("D(f, x[j])", ("gamma/(N*sigma)*(N*dy[j] - Sum(dy[k], (k, 1, N)) "
                       "- xhat[j]*Sum(dy[k]*xhat[k], (k, 1, N)))"), ""),
        ("D(f, x[j])", "Sum(dy[k]*D(y[k], x[j]), (k, 1, N))", ""),
        ("D(f, x[j])", "Sum(D(f, y[i])*D(y[i], x[j]), (i, 1, N))", ""),
        ("Sum(D(f, x[k]), (k, 1, N))", "0", ""),
        ("Sum(D(f, x[k])*xhat[k], (k, 1, N))", "0", ""),
        ("Sum(xhat[k], (k, 1, N))", "0", ""),
        ("Sum(xhat[k]**2, (k, 1, N))", "N*v/(v + eps)", ""),
        ("Sum(x[k] - mu, (k, 1, N))", "0", ""),
        ("Sum(KroneckerDelta(i, k), (k, 1, N))", "1", ""),
        ("Sum(Sum(KroneckerDelta(i, k), (k, 1, N)), (i, 1, N))", "N", ""),
        ("KroneckerDelta(i, j)", "0", "i != j"),
        ("D(x[i], x[j])", "KroneckerDelta(i, j)", ""),
        ("D(x[i], x[j])", "0", "i != j"),
        ("D(y[i], gamma)", "xhat[i]", ""),
        ("D(y[i], beta)", "1", ""),
        ("D(y[i], x[j])", "gamma*D(xhat[i], x[j])", ""),
        ("D(sigma, eps)", "1/(2*sigma)", ""),
        ("D(xhat[i], eps)", "-xhat[i]/(2*(v + eps))", ""),
        ("P(mu, x[j])", "1/N", ""),
        ("P(v, x[j])", "2*(x[j] - mu)/N", ""),
        ("P(v, mu)", "0", ""),
        ("P(y[i], xhat[i])", "gamma", ""),
        ("P(xhat[i], mu)", "-1/sigma", ""),
        ("P(xhat[i], v)", "-(x[i] - mu)/(2*sigma**3)", ""),
        ("D(f, y[i])", "dy[i]", ""),
        ("Sum(Sum(x[i]*x[k], (k, 1, N)), (i, 1, N))", "N**2*mu**2", ""),
        ("Sum(Sum((x[i] - x[k])**2, (k, 1, N)), (i, 1, N))", "2*N**2*v", ""),
        ("D(Sum(x[j]**2, (j, 1, N)), x[j])", "2*x[j]", ""),
        ("Sum(x[j], (j, 1, N)) - x[j]", "N*mu - x[j]", ""),
        ("sqrt((v + eps)**2)", "v + eps", ""),
        ("sqrt(v**2)", "v", ""),
        ("sqrt(1/(v + eps))", "(v + eps)**(-1/2)", ""),
        ("sqrt((v + eps)**3)", "(v + eps)**(3/2)", ""),
        ("sqrt(4*(v + eps))", "2*sigma", ""),
        ("v", "Sum(x[k]**2, (k, 1, N))/N - mu**2", ""),
        ("mu", "Sum(x[k], (k, 1, N))/N", ""),
        ("D(mu, x[1])", "1/N", ""),
        ("D(v, eps)", "0", ""),
        ("D(v, x[j])*N", "2*(x[j] - mu)", ""),
]


def t_algebra(rng, g):
    a, b, c = expr(rng, 2, g=g), expr(rng, 2, g=g), expr(rng, 1, g=g)
    p = rng.choice(g.positive)
    return rng.choice([
        (f"({a} + {b})**2", f"({a})**2 + 2*({a})*({b}) + ({b})**2", ""),
        (f"({a} - {b})*({a} + {b})", f"({a})**2 - ({b})**2", ""),
        (f"{a}*({b} + {c})", f"{a}*{b} + {a}*{c}", ""),
        (f"sqrt(({p})**2)", p, ""),
        (f"sqrt({p})**2", p, ""),
        (f"{a}/{p}*{p}", a, ""),
        (f"{a}*{p}/{p}", a, ""),
        (f"sqrt({p})*sqrt({p})", p, ""),
        (f"({a})**3", f"({a})*({a})**2", ""),
        (f"{a} - {b}", f"-({b} - {a})", ""),
        (f"sqrt({p}*({p})**2)", f"({p})**(3/2)", ""),
        (f"1/sqrt({p})", f"({p})**(-1/2)", ""),
    ])


def t_sum(rng, g):
    ak, bk, c = kexpr(rng, g=g), kexpr(rng, g=g), kfree(rng, g=g)
    ak_nodelta = rng.choice(g.k_plain)
    return rng.choice([
        (f"Sum({ak} + {bk}, (k, 1, N))", f"Sum({ak}, (k, 1, N)) + Sum({bk}, (k, 1, N))", ""),
        (f"Sum({c}*{ak}, (k, 1, N))", f"{c}*Sum({ak}, (k, 1, N))", ""),
        (f"Sum({c}, (k, 1, N))", f"N*{c}", ""),
        (f"Sum(KroneckerDelta(i, k)*{ak_nodelta}, (k, 1, N))",
         ak_nodelta.replace("[k]", "[i]"), ""),
        (f"Sum(KroneckerDelta(k, j)*{ak_nodelta}, (k, 1, N))",
         ak_nodelta.replace("[k]", "[j]"), ""),
        (f"Sum({ak}, (k, 1, N))", (f"Sum({ak.replace('[k]', '[i]').replace(', k)', ', i)')}, "
                                  f"(i, 1, N))"), ""),
        (f"Sum({ak}, (k, 1, N))", (f"Sum({ak.replace('[k]', '[j]').replace(', k)', ', j)')}, "
                                  f"(j, 1, N))"), ""),
        (f"Sum(Sum({ak_nodelta}*x[i], (k, 1, N)), (i, 1, N))",
         f"{g.sum_x}*Sum({ak_nodelta}, (k, 1, N))", ""),
    ])


def t_deriv(rng, g):
    a, b = expr(rng, 2, dy=False, g=g), expr(rng, 2, dy=False, g=g)
    w = rng.choice(g.wrt)
    p = rng.choice(g.positive)
    return rng.choice([
        (f"D({a}*{b}, {w})", f"D({a}, {w})*{b} + {a}*D({b}, {w})", ""),
        (f"D({a} + {b}, {w})", f"D({a}, {w}) + D({b}, {w})", ""),
        (f"D(({a})**2, {w})", f"2*({a})*D({a}, {w})", ""),
        (f"D(sqrt({p}), {w})", f"D({p}, {w})/(2*sqrt({p}))", ""),
        (f"D({a}/{p}, {w})", f"D({a}, {w})/{p} - ({a})*D({p}, {w})/({p})**2", ""),
        (f"D(D({a}, x[i]), x[j])", f"D(D({a}, x[j]), x[i])", ""),
        (f"D({a}, {w})", f"D({a}, {w})", ""),
    ])


def t_sqrt_false(rng, g):
    e = rng.choice(g.indefinite)
    return (f"sqrt(({e})**2)", e, "")


def t_tricky(rng, g):
    """Claims near the edges: sign conditions of radicals, N = 1, half powers, deltas."""
    return rng.choice(g.tricky(expr(rng, 1, g=g)))


def bn_tricky(a: str) -> list[tuple[str, str, str]]:
    """BatchNorm's edge claims around a random expression a."""
    return [
        ("sqrt(xhat[i]**2)", "xhat[i]", ""),
        ("sqrt(xhat[i]**2)", "sqrt((x[i] - mu)**2)/sigma", ""),
        ("sqrt((x[i] - mu)**2/(v + eps))", "xhat[i]", ""),
        ("sqrt(v)*sqrt(v)", "v", ""),
        ("sqrt(v)**2", "v", ""),
        ("sqrt(v**2*(v + eps))", "v*sigma", ""),
        ("sqrt(gamma**2*(v + eps))", "gamma*sigma", ""),
        ("sqrt(gamma**2)*sigma", "sqrt(gamma**2*(v + eps))", ""),
        ("(v + eps)**(1/2)*(v + eps)**(-3/2)", "1/(v + eps)", ""),
        ("sigma**(-2)", "1/(v + eps)", ""),
        ("sqrt(sigma**2)", "sigma", ""),
        ("sqrt(sigma)**2", "sigma", ""),
        ("sqrt((sigma - eps)**2)", "sigma - eps", ""),
        ("sqrt((sigma - sqrt(eps))**2)", "sigma - sqrt(eps)", ""),
        ("sqrt((sigma + x[i])**2)", "sigma + x[i]", ""),
        ("sqrt((1 - xhat[i]**2)**2)", "1 - xhat[i]**2", ""),
        ("sqrt((N - xhat[i]**2)**2)", "N - xhat[i]**2", ""),
        ("sqrt((v - eps)**2)", "v - eps", ""),
        ("sqrt((N*v - Sum(xhat[k]**2, (k, 1, N)))**2)", "N*v - Sum(xhat[k]**2, (k, 1, N))", ""),
        ("sqrt((Sum(x[k]**2, (k, 1, N)) - N*mu**2)**2)", "N*v", ""),
        ("sqrt((mu**2 - Sum(x[k]**2, (k, 1, N))/N)**2)", "v", ""),
        ("sqrt(mu**2)", "mu", ""),
        ("sqrt((eps*N - 1)**2)", "eps*N - 1", ""),
        ("sqrt((eps + N - 2)**2)", "eps + N - 2", ""),
        ("sqrt((eps + N - 3)**2)", "eps + N - 3", ""),
        ("(N - 1)*v", "0", ""),
        ("(N - 1)*xhat[i]", "0", ""),
        ("(N - 2)*(N - 1)*(x[1] - x[2])", "0", ""),
        ("v*(N - 1)/(N - 1)", "v", ""),
        ("KroneckerDelta(i, j)", "1", ""),
        ("KroneckerDelta(i, j)*(x[i] - x[j])", "0", ""),
        ("KroneckerDelta(i, j)*xhat[i]", "KroneckerDelta(i, j)*xhat[j]", ""),
        ("KroneckerDelta(i, j)**2", "KroneckerDelta(i, j)", ""),
        ("Sum(KroneckerDelta(i, k)*KroneckerDelta(k, j), (k, 1, N))", "KroneckerDelta(i, j)", ""),
        ("Sum(KroneckerDelta(i, k)*KroneckerDelta(j, k), (k, 1, N))", "0", "i != j"),
        ("Sum(KroneckerDelta(k, k), (k, 1, N))", "N", ""),
        ("Sum(KroneckerDelta(i, i), (k, 1, N))", "N", ""),
        ("Sum(x[i], (k, 1, N))", "N*x[i]", ""),
        ("Sum(x[i], (i, 1, N))", "N*mu", ""),
        ("Sum(x[k]*KroneckerDelta(i, j), (k, 1, N))", "N*mu*KroneckerDelta(i, j)", ""),
        ("x[i] - x[j]", "0", ""),
        ("xhat[i]*sigma + mu", "x[i]", ""),
        ("(y[i] - beta)/gamma", "xhat[i]", ""),
        ("gamma*(y[i] - beta)", "gamma**2*xhat[i]", ""),
        ("v", "0", ""),
        ("xhat[i]", "0", ""),
        ("Sum(xhat[k]**2, (k, 1, N))", "N", ""),
        ("Sum(xhat[k]**2, (k, 1, N))*(v + eps)", "N*v", ""),
        ("D(xhat[i], x[j])*sigma", "KroneckerDelta(i, j) - 1/N - xhat[i]*xhat[j]/N", ""),
        ("Sum(D(xhat[i], x[k]), (k, 1, N))", "0", ""),
        ("Sum(D(xhat[k], x[j]), (k, 1, N))", "0", ""),
        ("Sum(D(v, x[k]), (k, 1, N))", "0", ""),
        ("Sum(D(mu, x[k]), (k, 1, N))", "1", ""),
        ("Sum(x[k]*D(v, x[k]), (k, 1, N))", "2*v", ""),
        ("D(Sum(x[i]*x[j], (j, 1, N)), x[j])", "x[i] + KroneckerDelta(i, j)*N*mu", ""),
        ("D(Sum(x[k]*x[j], (k, 1, N)), x[j])", "N*mu + x[j]", ""),
        ("D(f, x[j])", f"D(f, x[j]) + 0*({a})", ""),
        ("D(sqrt((x[i] - mu)**2), x[i])", "(1 - 1/N)*(x[i] - mu)/sqrt((x[i] - mu)**2)", ""),
        ("1/(x[i] - x[j])", "-1/(x[j] - x[i])", ""),
        ("1/(x[i] - x[j])", "-1/(x[j] - x[i])", "i != j"),
        (f"({a})/({a})", "1", ""),
        (f"({a})*0", "0", ""),
        (f"({a}) - ({a})", "0", ""),
    ]


TEMPLATES = [(t_model, 4), (t_algebra, 3), (t_sum, 3), (t_deriv, 3), (t_sqrt_false, 1),
             (t_tricky, 4)]

# -- mutations (on the Python AST of one side) ----------------------------------------------


def _nodes(tree):
    return list(ast.walk(tree))


MUTATIONS = ("const", "swap", "nminus", "drop", "sign", "collide", "collide-body", "scale",
             "sqrt-square", "index1")
# the row models add, three times as likely as each of the others: an along leaf's row
# changed (gamma[i] -> gamma[j], gamma[k] -> gamma[j] inside a Sum), gamma pulled out of a
# Sum, N - 1 -> N, ms <-> v (and biased <-> unbiased v)
ROW_MUTATIONS = (*MUTATIONS, *("along-row", "along-out", "nplus", "ms-v") * 3)


def mutate(side: str, rng: random.Random, g: Grammar | None = None) -> tuple[str, str]:
    """One random near-miss mutation of a side: (new side, description)."""
    g = g or BATCHNORM
    kinds = list(g.mutations)
    for _ in range(12):
        kind = rng.choice(kinds)
        t = ast.parse(side, mode="eval")
        nodes = _nodes(t)
        if kind == "const":
            cands = [n for n in nodes if isinstance(n, ast.Constant) and type(n.value) is int
                     and not _in_limits(t, n) and not _in_subscript(t, n)]
            if not cands:
                continue
            n = rng.choice(cands)
            n.value = n.value + rng.choice([1, -1, 1])
            if n.value == 0:
                n.value = 2
        elif kind == "swap":
            names = [n for n in nodes if isinstance(n, ast.Name) and n.id in ("i", "j")]
            if not names:
                continue
            for n in names:
                n.id = {"i": "j", "j": "i"}[n.id]
        elif kind == "nminus":
            cands = [n for n in nodes if isinstance(n, ast.Name) and n.id == "N"
                     and not _in_limits(t, n)]
            if not cands:
                continue
            _replace(t, rng.choice(cands), ast.parse("(N - 1)", mode="eval").body)
        elif kind == "drop":
            cands = [n for n in nodes if isinstance(n, ast.BinOp)
                     and isinstance(n.op, (ast.Add, ast.Sub))]
            if not cands:
                continue
            n = rng.choice(cands)
            keep = n.left if rng.random() < 0.5 else n.right
            if keep is n.right and isinstance(n.op, ast.Sub):
                keep = ast.UnaryOp(ast.USub(), keep)
            _replace(t, n, keep)
        elif kind == "sign":
            cands = [n for n in nodes if isinstance(n, ast.BinOp)
                     and isinstance(n.op, (ast.Add, ast.Sub))]
            if cands and rng.random() < 0.6:
                n = rng.choice(cands)
                n.op = ast.Sub() if isinstance(n.op, ast.Add) else ast.Add()
            else:
                t.body = ast.UnaryOp(ast.USub(), t.body)
        elif kind in ("collide", "collide-body"):
            sums = [n for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "Sum"]
            if not sums:
                continue
            s = rng.choice(sums)
            var = s.args[1].elts[0].id
            new = rng.choice([x for x in ("i", "j", "k") if x != var])
            if kind == "collide":  # rename the bound variable everywhere in its scope
                s.args[1].elts[0].id = new
                _rename(s.args[0], var, new)
            else:  # only in the body (or only in the limits): usually false
                if rng.random() < 0.5:
                    _rename(s.args[0], var, new)
                else:
                    s.args[1].elts[0].id = new
        elif kind == "scale":
            t.body = ast.BinOp(ast.Constant(rng.choice([2, -1, 3])), ast.Mult(), t.body)
        elif kind == "sqrt-square":
            t.body = ast.parse(f"sqrt(({ast.unparse(t.body)})**2)", mode="eval").body
        elif kind == "index1":
            names = [n for n in nodes if isinstance(n, ast.Name) and n.id in ("i", "j")
                     and _in_subscript(t, n)]
            if not names:
                continue
            n = rng.choice(names)
            _replace(t, n, ast.Constant(1))
        elif not _row_mutation(kind, t, rng, g):
            continue
        out = ast.unparse(t)
        if out != side:
            return out, kind
    return side, "none"


def _is_along(node, names=("gamma", "beta")) -> bool:
    return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
        and node.value.id in names and isinstance(node.slice, ast.Name) \
        and node.slice.id in ("i", "j", "k")


def _row_mutation(kind: str, t: ast.Expression, rng: random.Random, g: Grammar) -> bool:
    """Apply one of the row models' mutations to t in place; False if it does not apply."""
    nodes = _nodes(t)
    if kind == "along-row":
        cands = [n for n in nodes if _is_along(n)]
        if not cands:
            return False
        n = rng.choice(cands)
        n.slice.id = rng.choice([x for x in ("i", "j", "k") if x != n.slice.id
                                 and (x != "k" or rng.random() < 0.3)])
        return True
    if kind == "along-out":  # Sum(gamma[k]*a) -> gamma[j]*Sum(a)
        sums = [n for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id == "Sum"
                and any(_is_along(m, ("gamma",)) and m.slice.id == n.args[1].elts[0].id
                        for m in ast.walk(n.args[0]))]
        if not sums:
            return False
        s = rng.choice(sums)
        var = s.args[1].elts[0].id
        for m in list(ast.walk(s.args[0])):
            if _is_along(m, ("gamma",)) and m.slice.id == var:
                _replace(t, m, ast.Constant(1))
        row = rng.choice([x for x in ("i", "j") if x != var])
        _replace(t, s, ast.BinOp(ast.parse(f"gamma[{row}]", mode="eval").body, ast.Mult(), s))
        return True
    if kind == "nplus":  # N - 1 -> N
        cands = [n for n in nodes if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub)
                 and isinstance(n.left, ast.Name) and n.left.id == "N"
                 and isinstance(n.right, ast.Constant) and n.right.value == 1]
        if not cands:
            return False
        _replace(t, rng.choice(cands), ast.Name("N", ast.Load()))
        return True
    if kind == "ms-v":
        name = "ms" if g.model == "rmsnorm" else "v"
        cands = [n for n in nodes if isinstance(n, ast.Name) and n.id == name]
        if not cands:
            return False
        if name == "ms":  # the variance instead of the mean square
            text = "(Sum(x[k]**2, (k, 1, N))/N - (Sum(x[k], (k, 1, N))/N)**2)"
        elif g.model == "batchnorm-unbiased" and rng.random() < 0.5:
            text = "((N - 1)*v/N)"  # the biased variance
        else:
            text = "(Sum(x[k]**2, (k, 1, N))/N)"  # the mean square instead of the variance
        _replace(t, rng.choice(cands), ast.parse(text, mode="eval").body)
        return True
    return False


def _parents(tree):
    return {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}


def _in_limits(tree, node):
    par = _parents(tree)
    n = node
    while n in par:
        p = par[n]
        if isinstance(p, ast.Tuple):
            return True
        n = p
    return False


def _in_subscript(tree, node):
    par = _parents(tree)
    p = par.get(node)
    return isinstance(p, ast.Subscript) or (
        isinstance(p, ast.Call) and isinstance(p.func, ast.Name)
        and p.func.id == "KroneckerDelta")


def _replace(tree, old, new):
    for p in ast.walk(tree):
        for field, value in ast.iter_fields(p):
            if value is old:
                setattr(p, field, new)
                return
            if isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new
                        return
    if tree.body is old:
        tree.body = new


def _rename(node, old, new):
    """Rename index `old` to `new` in node, not inside inner Sums that rebind `old`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "Sum" and node.args[1].elts[0].id == old:
        return
    if isinstance(node, ast.Name) and node.id == old:
        node.id = new
        return
    for c in ast.iter_child_nodes(node):
        _rename(c, old, new)


def generate(rng: random.Random, g: Grammar | None = None) -> dict:
    """One random claim of the grammar `g` (BatchNorm's by default), true or mutated."""
    g = g or BATCHNORM
    funcs, weights = zip(*TEMPLATES)
    template = rng.choices(funcs, weights)[0]
    lhs, rhs, where = template(rng, g)
    mutations = []
    if rng.random() < 0.55:
        for _ in range(1 if rng.random() < 0.8 else 2):
            if rng.random() < 0.75:
                rhs, m = mutate(rhs, rng, g)
            else:
                lhs, m = mutate(lhs, rng, g)
            mutations.append(m)
    else:  # normalise spacing through ast, also for true claims, sometimes swap sides
        lhs, rhs = ast.unparse(ast.parse(lhs, mode="eval")), ast.unparse(
            ast.parse(rhs, mode="eval"))
    if rng.random() < 0.2:
        lhs, rhs = rhs, lhs
    claim = f"{lhs} = {rhs}"
    if rng.random() < 0.08:  # a chain a = b = c: every link must be checked
        mid, m = mutate(rhs, rng, g) if rng.random() < 0.6 else (f"1*({rhs})", "none")
        claim = f"{lhs} = {mid} = {rhs}" if rng.random() < 0.5 else f"{lhs} = {rhs} = {mid}"
        mutations.append("chain-" + m)
    if not where and rng.random() < 0.12 and re.search(r"\bi\b", claim) and re.search(
            r"\bj\b", claim):
        where = "i != j"
    return {"claim": claim, "where": where, "template": template.__name__,
            "mutations": mutations}


# -- the grammars of the four models ---------------------------------------------------------


class Grammar(NamedTuple):
    """What claims about one model are made of: atoms, known identities, edge claims."""

    model: str
    sizes: tuple[int, ...]  # the concrete N checked (the model's min_n and up)
    atoms: list[str]
    dy_atoms: list[str]
    rare_atoms: list[str]
    k_atoms: list[str]  # atoms in the summation variable k
    k_plain: list[str]  # k atoms without deltas, for the delta-sum identities
    positive: list[str]
    indefinite: list[str]
    wrt: list[str]
    identities: list[tuple[str, str, str]]
    tricky: Callable[[str], list[tuple[str, str, str]]]
    sum_x: str  # Sum(x[i], (i, 1, N)) in the model's names
    mutations: tuple[str, ...]


BATCHNORM = Grammar(
    "batchnorm", SIZES, ATOMS, DY_ATOMS, RARE_ATOMS, K_ATOMS,
    ["x[k]", "xhat[k]", "(x[k] - mu)", "x[k]**2", "y[k]", "dy[k]", "dy[k]*xhat[k]", "x[k]*mu"],
    POSITIVE, INDEFINITE, WRT, BN_IDENTITIES, bn_tricky, "N*mu", MUTATIONS)

LN_DX = ("(v + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N - (x[j] - mu)"
         "*(v + eps)**(-1)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))/N)")
LN_IDENTITIES = [
    ("Sum(x[k], (k, 1, N))", "N*mu", ""),
    ("Sum((x[k] - mu)**2, (k, 1, N))", "N*v", ""),
    ("Sum(x[k]**2, (k, 1, N))/N - mu**2", "v", ""),
    ("xhat[i]", "(x[i] - mu)/sigma", ""),
    ("sigma", "sqrt(v + eps)", ""),
    ("sigma**2", "v + eps", ""),
    ("y[i]", "gamma[i]*xhat[i] + beta[i]", ""),
    ("y[j]", "gamma[j]*(x[j] - mu)/sigma + beta[j]", ""),
    ("D(mu, x[j])", "1/N", ""),
    ("D(v, x[j])", "2*(x[j] - mu)/N", ""),
    ("D(sigma, x[j])", "(x[j] - mu)/(N*sigma)", ""),
    ("D(xhat[i], x[j])",
     "(KroneckerDelta(i, j) - 1/N)/sigma - (x[i] - mu)*(x[j] - mu)/(N*sigma**3)", ""),
    ("D(xhat[i], x[j])", "-1/(N*sigma) - xhat[i]*xhat[j]/(N*sigma)", "i != j"),
    ("D(f, beta[j])", "dy[j]", ""),
    ("D(f, gamma[j])", "dy[j]*xhat[j]", ""),
    ("D(f, gamma[i])", "dy[i]*(x[i] - mu)/sigma", ""),
    ("D(f, x[j])", LN_DX, ""),
    ("D(f, x[j])", ("(N*gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N)) "
                    "- xhat[j]*Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N)))/(N*sigma)"), ""),
    ("D(f, x[j])", "Sum(dy[k]*D(y[k], x[j]), (k, 1, N))", ""),
    ("D(f, x[j])", "Sum(D(f, y[i])*D(y[i], x[j]), (i, 1, N))", ""),
    ("D(f, eps)", "-1/2*(v + eps)**(-3/2)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))", ""),
    ("D(f, eps)", "-Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))/(2*(v + eps))", ""),
    ("Sum(D(f, x[k]), (k, 1, N))", "0", ""),
    ("Sum(D(f, x[k])*xhat[k], (k, 1, N))",
     "eps*Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))/sigma**3", ""),
    ("Sum(D(f, gamma[k]), (k, 1, N))", "Sum(dy[k]*xhat[k], (k, 1, N))", ""),
    ("Sum(D(f, beta[k]), (k, 1, N))", "Sum(dy[k], (k, 1, N))", ""),
    ("Sum(xhat[k], (k, 1, N))", "0", ""),
    ("Sum(xhat[k]**2, (k, 1, N))", "N*v/(v + eps)", ""),
    ("Sum(y[k] - beta[k], (k, 1, N))", "Sum(gamma[k]*xhat[k], (k, 1, N))", ""),
    ("D(y[i], gamma[j])", "KroneckerDelta(i, j)*xhat[i]", ""),
    ("D(y[i], beta[j])", "KroneckerDelta(i, j)", ""),
    ("D(y[i], gamma[j])", "0", "i != j"),
    ("D(y[i], gamma[i])", "xhat[i]", ""),
    ("D(y[i], x[j])", "gamma[i]*D(xhat[i], x[j])", ""),
    ("D(sigma, eps)", "1/(2*sigma)", ""),
    ("D(xhat[i], eps)", "-xhat[i]/(2*(v + eps))", ""),
    ("P(mu, x[j])", "1/N", ""),
    ("P(v, x[j])", "2*(x[j] - mu)/N", ""),
    ("P(v, mu)", "0", ""),
    ("P(y[i], xhat[i])", "gamma[i]", ""),
    ("P(y[i], gamma[i])", "xhat[i]", ""),
    ("P(y[j], beta[j])", "1", ""),
    ("P(xhat[i], mu)", "-1/sigma", ""),
    ("P(xhat[i], v)", "-(x[i] - mu)/(2*sigma**3)", ""),
    ("P(xhat[i], eps)", "-(x[i] - mu)/(2*sigma**3)", ""),
    ("D(f, y[i])", "dy[i]", ""),
    ("Sum(KroneckerDelta(i, k)*gamma[k], (k, 1, N))", "gamma[i]", ""),
    ("D(Sum(gamma[k]*x[k], (k, 1, N)), gamma[j])", "x[j]", ""),
    ("sqrt(4*(v + eps))", "2*sigma", ""),
]


def ln_tricky(a: str) -> list[tuple[str, str, str]]:
    """LayerNorm's edge claims: per-position gamma and beta, N = 1, radicals."""
    return [
        ("sqrt(gamma[i]**2)", "gamma[i]", ""),
        ("sqrt(gamma[i]**2*(v + eps))", "sqrt(gamma[i]**2)*sigma", ""),
        ("sqrt(gamma[i]**2*(v + eps))", "gamma[i]*sigma", ""),
        ("sqrt(xhat[i]**2)", "sqrt((x[i] - mu)**2)/sigma", ""),
        ("sqrt(xhat[i]**2)", "xhat[i]", ""),
        ("D(y[i], gamma[j])", "xhat[i]", ""),
        ("D(y[i], beta[j])", "1", ""),
        ("D(f, gamma[j])", "Sum(dy[k]*xhat[k], (k, 1, N))", ""),
        ("Sum(gamma[k]*dy[k], (k, 1, N))", "gamma[j]*Sum(dy[k], (k, 1, N))", ""),
        ("Sum(gamma[k]*xhat[k], (k, 1, N))", "0", ""),
        ("Sum(beta[k]*xhat[k], (k, 1, N))", "0", ""),
        ("Sum(y[k], (k, 1, N))", "Sum(beta[k], (k, 1, N))", ""),
        ("(y[i] - beta[i])/gamma[i]", "xhat[i]", ""),
        ("gamma[i]*(y[i] - beta[i])", "gamma[i]**2*xhat[i]", ""),
        ("y[i] - beta[j]", "gamma[i]*xhat[i]", ""),
        ("y[i] - beta[j]", "gamma[i]*xhat[i]", "i != j"),
        ("(N - 1)*v", "0", ""),
        ("v", "0", ""),
        ("xhat[i]", "0", ""),
        ("(N - 1)*(y[i] - beta[i])", "0", ""),
        ("D(f, gamma[j])*gamma[j]", "dy[j]*(y[j] - beta[j])", ""),
        ("KroneckerDelta(i, j)*gamma[i]", "KroneckerDelta(i, j)*gamma[j]", ""),
        ("gamma[i]", "gamma[j]", "i != j"),
        ("gamma[i]*beta[j]", "gamma[j]*beta[i]", ""),
        ("D(Sum(gamma[j]*x[j], (j, 1, N)), gamma[j])", "x[j]", ""),
        ("D(gamma[i]*x[i], gamma[j])", "KroneckerDelta(i, j)*x[i]", ""),
        ("D(gamma[i]*x[i], gamma[j])", "x[i]", ""),
        ("Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))", "Sum(D(f, gamma[k])*gamma[k], (k, 1, N))", ""),
        ("D(f, x[j])", LN_DX.replace("gamma[k]*", ""), ""),
        ("D(f, x[j])", "gamma[j]*" + LN_DX.replace("gamma[k]*", "").replace("gamma[j]*", ""),
         ""),
        ("D(f, x[j])", f"D(f, x[j]) + 0*({a})", ""),
        (f"({a})/({a})", "1", ""),
        (f"({a})*0", "0", ""),
        (f"({a}) - ({a})", "0", ""),
    ]


LAYERNORM = Grammar(
    "layernorm", (1, 2, 3, 4),
    ["x[i]", "x[j]", "mu", "v", "sigma", "xhat[i]", "xhat[j]", "y[i]", "y[j]", "gamma[i]",
     "gamma[j]", "beta[i]", "beta[j]", "eps", "N", "(x[i] - mu)", "(x[j] - mu)",
     "Sum(x[k]**2, (k, 1, N))", "KroneckerDelta(i, j)", "2", "3", "1/N", "(v + eps)", "x[i]**2",
     "Sum(xhat[k]*x[k], (k, 1, N))", "(x[i] - x[j])", "(gamma[i] + 1)",
     "Sum(gamma[k]*xhat[k], (k, 1, N))", "gamma[i]*xhat[j]"],
    ["dy[i]", "dy[j]", "Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))", "Sum(gamma[k]*dy[k], (k, 1, N))",
     "Sum(dy[k], (k, 1, N))", "gamma[j]*dy[j]"],
    ["x[2]", "x[1]", "gamma[1]", "beta[2]", "xhat[2]", "y[1]", "P(v, mu)", "P(mu, x[j])",
     "P(xhat[i], v)", "P(xhat[i], eps)", "D(mu, x[j])", "D(v, x[i])", "D(f, y[i])",
     "P(y[i], gamma[i])", "P(y[j], beta[j])", "D(f, x[j])", "D(f, gamma[j])", "D(f, beta[i])",
     "D(y[i], gamma[j])"],
    ["x[k]", "xhat[k]", "(x[k] - mu)", "x[k]**2", "y[k]", "dy[k]", "KroneckerDelta(i, k)",
     "KroneckerDelta(j, k)", "x[i]*x[k]", "(x[k] - x[j])", "dy[k]*xhat[k]", "gamma[k]",
     "gamma[k]*dy[k]", "beta[k]", "gamma[k]*xhat[k]", "gamma[k]*dy[k]*xhat[k]"],
    ["x[k]", "xhat[k]", "(x[k] - mu)", "x[k]**2", "y[k]", "dy[k]", "gamma[k]*dy[k]", "beta[k]",
     "gamma[k]*xhat[k]", "x[k]*mu"],
    ["(v + eps)", "sigma", "eps", "N", "(1 + x[i]**2)", "(v + eps)**2", "sigma**3",
     "(eps + x[j]**2)", "(N + v)", "(2*eps + 1)", "(1 + gamma[i]**2)"],
    ["(x[i] - mu)", "x[i]", "gamma[i]", "(x[1] - x[2])", "xhat[i]", "(2*eps - 1)",
     "(beta[i] - 1)", "(x[i] - x[j])", "(eps - v)", "y[i]", "(gamma[i] - gamma[j])"],
    ["x[j]", "x[i]", "x[1]", "gamma[j]", "gamma[i]", "beta[j]", "beta[i]", "eps"],
    LN_IDENTITIES, ln_tricky, "N*mu", ROW_MUTATIONS)

RMS_DX = ("(ms + eps)**(-1/2)*(gamma[j]*dy[j] - x[j]*(ms + eps)**(-1)"
          "*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/N)")
RMS_IDENTITIES = [
    ("Sum(x[k]**2, (k, 1, N))", "N*ms", ""),
    ("ms", "Sum(x[k]**2, (k, 1, N))/N", ""),
    ("xhat[i]", "x[i]/sigma", ""),
    ("sigma", "sqrt(ms + eps)", ""),
    ("sigma**2", "ms + eps", ""),
    ("y[i]", "gamma[i]*xhat[i]", ""),
    ("y[i]", "gamma[i]*x[i]*(ms + eps)**(-1/2)", ""),
    ("D(ms, x[j])", "2*x[j]/N", ""),
    ("D(sigma, x[j])", "x[j]/(N*sigma)", ""),
    ("D(xhat[i], x[j])", "KroneckerDelta(i, j)/sigma - x[i]*x[j]/(N*sigma**3)", ""),
    ("D(xhat[i], x[j])", "-xhat[i]*xhat[j]/(N*sigma)", "i != j"),
    ("D(xhat[i], x[i])", "1/sigma - xhat[i]**2/(N*sigma)", ""),
    ("D(f, gamma[j])", "dy[j]*xhat[j]", ""),
    ("D(f, x[j])", RMS_DX, ""),
    ("D(f, x[j])",
     "(gamma[j]*dy[j] - xhat[j]*Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))/N)/sigma", ""),
    ("D(f, x[j])", "Sum(dy[k]*D(y[k], x[j]), (k, 1, N))", ""),
    ("D(f, x[j])", "Sum(D(f, y[i])*D(y[i], x[j]), (i, 1, N))", ""),
    ("D(f, eps)", "-1/2*(ms + eps)**(-3/2)*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))", ""),
    ("Sum(D(f, x[k])*x[k], (k, 1, N))", "eps*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/sigma**3",
     ""),
    ("Sum(D(f, x[k])*x[k], (k, 1, N))", "-2*eps*D(f, eps)", ""),
    ("Sum(D(f, gamma[k])*gamma[k], (k, 1, N))", "Sum(dy[k]*y[k], (k, 1, N))", ""),
    ("Sum(xhat[k]**2, (k, 1, N))", "N*ms/(ms + eps)", ""),
    ("Sum(KroneckerDelta(i, k), (k, 1, N))", "1", ""),
    ("D(y[i], gamma[j])", "KroneckerDelta(i, j)*xhat[i]", ""),
    ("D(y[i], gamma[i])", "xhat[i]", ""),
    ("D(y[i], x[j])", "gamma[i]*D(xhat[i], x[j])", ""),
    ("D(sigma, eps)", "1/(2*sigma)", ""),
    ("D(xhat[i], eps)", "-xhat[i]/(2*(ms + eps))", ""),
    ("P(ms, x[j])", "2*x[j]/N", ""),
    ("P(xhat[i], x[i])", "1/sigma", ""),
    ("P(xhat[i], ms)", "-x[i]/(2*sigma**3)", ""),
    ("P(xhat[i], eps)", "-x[i]/(2*sigma**3)", ""),
    ("P(y[i], xhat[i])", "gamma[i]", ""),
    ("P(y[i], gamma[i])", "xhat[i]", ""),
    ("D(f, y[i])", "dy[i]", ""),
    ("sqrt((ms + eps)**2)", "ms + eps", ""),
    ("sqrt(ms**2)", "ms", ""),
    ("sqrt(4*(ms + eps))", "2*sigma", ""),
    ("D(ms, eps)", "0", ""),
    ("Sum(gamma[k]*xhat[k]*x[k], (k, 1, N))", "sigma*Sum(gamma[k]*xhat[k]**2, (k, 1, N))", ""),
]


def rms_tricky(a: str) -> list[tuple[str, str, str]]:
    """RMSNorm's edge claims: no centring, per-position gamma, N = 1, radicals."""
    return [
        ("sqrt(gamma[i]**2)", "gamma[i]", ""),
        ("sqrt(xhat[i]**2)", "xhat[i]", ""),
        ("sqrt(xhat[i]**2)", "sqrt(x[i]**2)/sigma", ""),
        ("sqrt(x[i]**2/(ms + eps))", "xhat[i]", ""),
        ("D(y[i], gamma[j])", "xhat[i]", ""),
        ("Sum(xhat[k], (k, 1, N))", "0", ""),
        ("Sum(D(f, x[k]), (k, 1, N))", "0", ""),
        ("Sum(gamma[k]*dy[k]*x[k], (k, 1, N))", "gamma[j]*Sum(dy[k]*x[k], (k, 1, N))", ""),
        ("ms", "Sum(x[k]**2, (k, 1, N))/N - (Sum(x[k], (k, 1, N))/N)**2", ""),
        ("(N - 1)*ms", "0", ""),
        ("ms", "x[1]**2", ""),
        ("xhat[1]**2", "x[1]**2/(x[1]**2 + eps)", ""),
        ("y[i]/gamma[i]", "xhat[i]", ""),
        ("sqrt((ms - eps)**2)", "ms - eps", ""),
        ("sqrt((sigma - sqrt(eps))**2)", "sigma - sqrt(eps)", ""),
        ("sqrt((sigma - eps)**2)", "sigma - eps", ""),
        ("sqrt(ms)*sqrt(ms)", "ms", ""),
        ("Sum(xhat[k]**2, (k, 1, N))", "N", ""),
        ("Sum(xhat[k]**2, (k, 1, N))*(ms + eps)", "N*ms", ""),
        ("D(xhat[i], x[j])*sigma", "KroneckerDelta(i, j) - xhat[i]*xhat[j]/N", ""),
        ("D(xhat[i], x[j])*sigma", "KroneckerDelta(i, j) - 1/N - xhat[i]*xhat[j]/N", ""),
        ("D(gamma[i]*x[i], gamma[j])", "KroneckerDelta(i, j)*x[i]", ""),
        ("D(Sum(gamma[j]*x[j], (j, 1, N)), gamma[j])", "x[j]", ""),
        ("KroneckerDelta(i, j)*gamma[i]", "KroneckerDelta(i, j)*gamma[j]", ""),
        ("gamma[i]", "gamma[j]", "i != j"),
        ("D(f, x[j])", RMS_DX.replace("gamma[k]*", "gamma[j]*"), ""),
        ("D(f, x[j])", RMS_DX.replace("x[j]*(ms", "(x[j] - Sum(x[k], (k, 1, N))/N)*(ms"), ""),
        ("D(f, x[j])", f"D(f, x[j]) + 0*({a})", ""),
        (f"({a})/({a})", "1", ""),
        (f"({a})*0", "0", ""),
        (f"({a}) - ({a})", "0", ""),
    ]


RMSNORM = Grammar(
    "rmsnorm", (1, 2, 3, 4),
    ["x[i]", "x[j]", "ms", "sigma", "xhat[i]", "xhat[j]", "y[i]", "y[j]", "gamma[i]", "gamma[j]",
     "eps", "N", "Sum(x[k]**2, (k, 1, N))", "KroneckerDelta(i, j)", "2", "3", "1/N",
     "(ms + eps)", "x[i]**2", "Sum(xhat[k]*x[k], (k, 1, N))", "(x[i] - x[j])", "(gamma[i] + 1)",
     "Sum(x[k], (k, 1, N))", "Sum(gamma[k]*xhat[k], (k, 1, N))"],
    ["dy[i]", "dy[j]", "Sum(gamma[k]*dy[k]*x[k], (k, 1, N))",
     "Sum(gamma[k]*dy[k]*xhat[k], (k, 1, N))", "Sum(dy[k], (k, 1, N))", "gamma[j]*dy[j]"],
    ["x[2]", "x[1]", "gamma[1]", "xhat[2]", "y[1]", "P(ms, x[j])", "P(xhat[i], ms)",
     "P(xhat[i], x[i])", "P(xhat[i], eps)", "D(ms, x[j])", "D(f, y[i])", "P(y[i], gamma[i])",
     "P(y[i], xhat[i])", "D(f, x[j])", "D(f, gamma[j])", "D(y[i], gamma[j])"],
    ["x[k]", "xhat[k]", "x[k]**2", "y[k]", "dy[k]", "KroneckerDelta(i, k)",
     "KroneckerDelta(j, k)", "x[i]*x[k]", "(x[k] - x[j])", "dy[k]*xhat[k]", "gamma[k]",
     "gamma[k]*dy[k]", "gamma[k]*dy[k]*x[k]", "gamma[k]*xhat[k]"],
    ["x[k]", "xhat[k]", "x[k]**2", "y[k]", "dy[k]", "gamma[k]*dy[k]*x[k]", "gamma[k]*xhat[k]",
     "x[k]*ms"],
    ["(ms + eps)", "sigma", "eps", "N", "(1 + x[i]**2)", "(ms + eps)**2", "sigma**3",
     "(eps + x[j]**2)", "(N + ms)", "(2*eps + 1)", "(1 + gamma[i]**2)"],
    ["x[i]", "gamma[i]", "(x[1] - x[2])", "xhat[i]", "(2*eps - 1)", "(x[i] - x[j])",
     "(eps - ms)", "y[i]", "(gamma[i] - gamma[j])", "(ms - 1)"],
    ["x[j]", "x[i]", "x[1]", "gamma[j]", "gamma[i]", "eps"],
    RMS_IDENTITIES, rms_tricky, "Sum(x[j], (j, 1, N))", ROW_MUTATIONS)

UNB_DX = ("gamma*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N - (x[j] - mu)*(v + eps)"
          "**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/(N - 1))")
UNB_IDENTITIES = [
    ("Sum(x[k], (k, 1, N))", "N*mu", ""),
    ("Sum((x[k] - mu)**2, (k, 1, N))", "(N - 1)*v", ""),
    ("(Sum(x[k]**2, (k, 1, N)) - N*mu**2)/(N - 1)", "v", ""),
    ("xhat[i]", "(x[i] - mu)/sigma", ""),
    ("sigma**2", "v + eps", ""),
    ("y[i]", "gamma*xhat[i] + beta", ""),
    ("D(mu, x[j])", "1/N", ""),
    ("D(v, x[j])", "2*(x[j] - mu)/(N - 1)", ""),
    ("D(sigma, x[j])", "(x[j] - mu)/((N - 1)*sigma)", ""),
    ("D(xhat[i], x[j])",
     "(KroneckerDelta(i, j) - 1/N)/sigma - (x[i] - mu)*(x[j] - mu)/((N - 1)*sigma**3)", ""),
    ("D(xhat[i], x[j])", "-1/(N*sigma) - xhat[i]*xhat[j]/((N - 1)*sigma)", "i != j"),
    ("D(f, beta)", "Sum(dy[k], (k, 1, N))", ""),
    ("D(f, gamma)", "Sum(dy[k]*xhat[k], (k, 1, N))", ""),
    ("D(f, x[j])", UNB_DX, ""),
    ("D(f, x[j])", ("gamma/sigma*(dy[j] - Sum(dy[k], (k, 1, N))/N "
                    "- xhat[j]*Sum(dy[k]*xhat[k], (k, 1, N))/(N - 1))"), ""),
    ("D(f, x[j])", "Sum(dy[k]*D(y[k], x[j]), (k, 1, N))", ""),
    ("Sum(D(f, x[k]), (k, 1, N))", "0", ""),
    ("Sum(D(f, x[k])*xhat[k], (k, 1, N))", "gamma*eps*Sum(dy[k]*xhat[k], (k, 1, N))/sigma**3",
     ""),
    ("Sum(xhat[k], (k, 1, N))", "0", ""),
    ("Sum(xhat[k]**2, (k, 1, N))", "(N - 1)*v/(v + eps)", ""),
    ("D(f, eps)", "-1/2*gamma*(v + eps)**(-3/2)*Sum((x[k] - mu)*dy[k], (k, 1, N))", ""),
    ("P(v, x[j])", "2*(x[j] - mu)/(N - 1)", ""),
    ("P(v, mu)", "0", ""),
    ("P(xhat[i], v)", "-(x[i] - mu)/(2*sigma**3)", ""),
    ("P(xhat[i], mu)", "-1/sigma", ""),
    ("P(xhat[i], eps)", "-(x[i] - mu)/(2*sigma**3)", ""),
    ("P(y[i], gamma)", "xhat[i]", ""),
    ("v*(N - 1)/N", "Sum(x[k]**2, (k, 1, N))/N - mu**2", ""),
    ("Sum(Sum((x[i] - x[k])**2, (k, 1, N)), (i, 1, N))", "2*N*(N - 1)*v", ""),
    ("D(v, x[j])*(N - 1)", "2*(x[j] - mu)", ""),
    ("D(sigma, eps)", "1/(2*sigma)", ""),
    ("D(f, y[i])", "dy[i]", ""),
    ("D(v, eps)", "0", ""),
    ("sqrt(4*(v + eps))", "2*sigma", ""),
]


def unb_tricky(a: str) -> list[tuple[str, str, str]]:
    """The unbiased model's edge claims: N - 1 against N, N = 2, radicals."""
    return [
        ("v", "Sum((x[k] - mu)**2, (k, 1, N))/N", ""),
        ("(N - 2)*(x[1] - x[2])", "0", ""),
        ("v", "(x[1] - x[2])**2/2", ""),
        ("(N - 2)*v", "(N - 2)*(x[1] - x[2])**2/2", ""),
        ("Sum(xhat[k]**2, (k, 1, N))", "N - 1", ""),
        ("Sum(xhat[k]**2, (k, 1, N))*(v + eps)", "(N - 1)*v", ""),
        ("Sum(xhat[k]**2, (k, 1, N))*(v + eps)", "N*v", ""),
        ("sqrt(xhat[i]**2)", "xhat[i]", ""),
        ("sqrt((v - eps)**2)", "v - eps", ""),
        ("sqrt((Sum(x[k]**2, (k, 1, N)) - N*mu**2)**2)", "(N - 1)*v", ""),
        ("sqrt((N*v - Sum(xhat[k]**2, (k, 1, N)))**2)", "N*v - Sum(xhat[k]**2, (k, 1, N))", ""),
        ("v/(N - 1)", "Sum((x[k] - mu)**2, (k, 1, N))/(N - 1)**2", ""),
        ("(N - 1)*v", "N*v", ""),
        ("D(xhat[i], x[j])*sigma", "KroneckerDelta(i, j) - 1/N - xhat[i]*xhat[j]/(N - 1)", ""),
        ("D(xhat[i], x[j])*sigma", "KroneckerDelta(i, j) - 1/N - xhat[i]*xhat[j]/N", ""),
        ("Sum(x[k]*D(v, x[k]), (k, 1, N))", "2*v", ""),
        ("Sum(D(v, x[k]), (k, 1, N))", "0", ""),
        ("sqrt((eps*N - 2)**2)", "eps*N - 2", ""),
        ("(N - 2)/(N - 2)", "1", ""),
        ("v*(N - 1)/(N - 1)", "v", ""),
        ("1/(N - 2) - 1/(N - 2)", "0", ""),
        ("D(f, x[j])", UNB_DX.replace("/(N - 1))", "/N)"), ""),
        ("D(f, x[j])", f"D(f, x[j]) + 0*({a})", ""),
        (f"({a})/({a})", "1", ""),
        (f"({a})*0", "0", ""),
        (f"({a}) - ({a})", "0", ""),
    ]


UNBIASED = Grammar(
    "batchnorm-unbiased", (2, 3, 4), ATOMS, DY_ATOMS, RARE_ATOMS, K_ATOMS, BATCHNORM.k_plain,
    POSITIVE, INDEFINITE, WRT, UNB_IDENTITIES, unb_tricky, "N*mu", ROW_MUTATIONS)

GRAMMARS = {g.model: g for g in (BATCHNORM, LAYERNORM, RMSNORM, UNBIASED)}


# -- symbn and the oracle ---------------------------------------------------------------------


def _doc(claim: str, where: str, model: str = "batchnorm") -> str:
    extra = f'where = "{where}"\n' if where else ""
    return (f'title = "t"\nmodel = "{model}"\n[[step]]\nid = "s"\nclaim = "{claim}"\n'
            f"{extra}")


class Hang(BaseException):  # not caught by `except Exception` inside symbn
    pass


def _alarm(signum, frame):
    raise Hang


def free_indices(claim: str) -> set[str]:
    """Free i, j, k of a claim, by scoping Sum variables (independent of symbn)."""
    out: set[str] = set()

    def walk(node, bound):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "Sum" and len(node.args) == 2:
            var = node.args[1].elts[0].id
            walk(node.args[0], bound | {var})
            return
        if isinstance(node, ast.Name) and node.id in ("i", "j", "k") and node.id not in bound:
            out.add(node.id)
        for c in ast.iter_child_nodes(node):
            walk(c, bound)

    for side in claim.split(" = "):
        walk(ast.parse(side, mode="eval"), frozenset())
    return out


def my_assignments(claim: str, where: str, n: int) -> list[dict]:
    names = sorted(free_indices(claim))
    out = []
    for rows in itertools.product(range(1, n + 1), repeat=len(names)):
        a = dict(zip(names, rows))
        if where == "i != j" and a.get("i") is not None and a.get("i") == a.get("j"):
            continue
        out.append(a)
    return out


def _oracle(oracles: dict, n: int, model: str) -> Oracle:
    key = (model, n)
    if key not in oracles:
        oracles[key] = Oracle(n, model=model)
    return oracles[key]


def oracle_counterexample(claim, where, n, tries, oracles, model="batchnorm"):
    """A counterexample at N = n over every allowed assignment, or None."""
    oracle = _oracle(oracles, n, model)
    assigns = my_assignments(claim, where, n)
    if len(assigns) > 16:
        tries = max(6, tries * 16 // len(assigns))
    for a in assigns:
        for seed in (0, 1):
            found = oracle.search(claim, a, tries=tries // 2 + 1, seed=seed + 7 * n)
            if found is not None:
                return {"N": n, "assignment": a,
                        "point": {k: str(v) for k, v in found["point"].items()},
                        "values": [str(v) for v in found["values"]]}
    return None


def oracle_confirms(claim, witness, n, oracles, model="batchnorm"):
    """(True, _) if the oracle's sides of the failing link differ at the witness; (False,
    details) if they agree or one is undefined there; (None, _) if it cannot tell."""
    oracle = _oracle(oracles, n, model)
    assignment = {k: int(v) for k, v in witness.get("assignment", {}).items()}
    point = {k: Fraction(v) for k, v in witness.get("point", {}).items()}
    text = witness.get("link") or claim  # the failing link of a chain a = b = c
    if any(k.startswith("dy") for k in point):
        found = oracle.search(text, assignment or None, tries=100)
        return (None, None) if found is None else (True, None)
    values = oracle.sides(text, point, assignment or None)
    shown = [None if x is None else str(x) for x in values]
    if None in values:
        return False, {"link": text, "oracle_values": shown, "why": "a side is undefined"}
    if any(oracle.differ(a, b) for a, b in itertools.pairwise(values)):
        return True, None
    return False, {"link": text, "oracle_values": shown, "why": "sides agree"}


def _pair(answer):
    return ("error", None) if answer == "error" else answer


def min_n(note: str | None) -> int:
    m = re.search(r"for every N >= (\d+)", note or "")
    return int(m.group(1)) if m else 1


def undefined_ns(note: str | None) -> set[int]:
    m = re.search(r"undefined at N = ([\d, ]+)", note or "")
    return {int(x) for x in m.group(1).replace(" ", "").split(",") if x} if m else set()


def run_one(case: dict, oracles: dict, timeout: float, g: Grammar | None = None) -> list[dict]:
    """symbn's verdicts on one claim at each N of g.sizes and for every N, cross-checked."""
    g = g or BATCHNORM
    claim, where = case["claim"], case["where"]
    findings = []
    verdicts, results = {}, {}
    try:
        d = parse(_doc(claim, where, g.model), "case.toml")
    except SymbnError as err:
        case["verdicts"] = {"parse": "refused"}
        case["refusal"] = str(err)[:200]
        return findings
    # assignments: symbn's against ours
    for n in g.sizes:
        try:
            theirs = symbn_assignments(d.steps[0], n)
        except SymbnError:
            continue
        mine = my_assignments(claim, where, n)
        key = lambda a: tuple(sorted((str(k), int(v)) for k, v in a.items()))
        if sorted(map(key, theirs)) != sorted(map(key, mine)):
            findings.append({"kind": "ASSIGNMENTS", "N": n, "symbn": theirs[:10],
                             "mine": mine[:10]})
            break
    every_n = check_all if g.model == "batchnorm" else check_model_all
    for n in (*g.sizes, "all"):
        try:
            result = every_n(d, timeout=timeout)[0] if n == "all" else check(
                d, n, timeout=timeout)[0]
            verdicts[n], results[n] = result.verdict, result
        except SymbnError as err:
            verdicts[n] = "refused"
            results[n] = None
            case.setdefault("refusals", {})[str(n)] = str(err)[:160]
        except Hang:
            raise
        except Exception as err:  # noqa: BLE001
            verdicts[n] = "crash"
            results[n] = None
            tb = traceback.format_exc().strip().splitlines()[-6:]
            findings.append({"kind": "CRASH", "N": n, "error": f"{type(err).__name__}: {err}"[:300],
                             "traceback": tb})
    case["verdicts"] = {str(k): v for k, v in verdicts.items()}
    case["notes"] = {str(k): (r.note if r else None) for k, r in results.items()}

    def oracle_call(fn, *args):
        try:
            return fn(*args)
        except OracleError as err:
            findings.append({"kind": "ORACLE-ERROR", "error": str(err)[:200]})
            return "error"

    confirmed = {}
    for n in g.sizes:
        r = results.get(n)
        if r is None:
            continue
        if r.verdict == "proved":
            cx = oracle_call(oracle_counterexample, claim, where, n, 24, oracles, g.model)
            if cx not in (None, "error"):
                findings.append({"kind": "PROVED-FALSE", "N": n, "oracle": cx,
                                 "note": r.note})
        elif r.verdict == "disproved":
            w = r.witness or {}
            ok, why = _pair(oracle_call(oracle_confirms, claim, w, int(w.get("N", n)), oracles,
                                        g.model))
            confirmed[n] = ok is True
            if ok is False:
                findings.append({"kind": "BAD-WITNESS", "N": n, "witness": w, "oracle": why})
            elif ok is None:
                findings.append({"kind": "UNCONFIRMED", "N": n, "witness": w})
    r = results.get("all")
    if r is not None and r.verdict == "proved":
        m, undef = min_n(r.note), undefined_ns(r.note)
        for n in g.sizes:
            if n < m or n in undef:
                continue
            if verdicts.get(n) == "disproved" and confirmed.get(n):
                findings.append({"kind": "ALLN-VS-N", "N": n, "witness": results[n].witness,
                                 "note": r.note})
            elif verdicts.get(n) != "proved":  # proved ones were searched already
                cx = oracle_call(oracle_counterexample, claim, where, n, 12, oracles, g.model)
                if cx not in (None, "error"):
                    findings.append({"kind": "ALLN-FALSE", "N": n, "oracle": cx,
                                     "note": r.note})
    elif r is not None and r.verdict == "disproved":
        w = r.witness or {}
        ok, why = _pair(oracle_call(oracle_confirms, claim, w, int(w.get("N", g.sizes[-1])),
                                    oracles, g.model))
        if ok is False:
            findings.append({"kind": "BAD-WITNESS", "N": "all", "witness": w, "oracle": why})
        elif ok is None:
            findings.append({"kind": "UNCONFIRMED", "N": "all", "witness": w})
    return findings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--max-claims", type=int, default=10 ** 9)
    ap.add_argument("--timeout", type=float, default=15.0, help="symbn timeout per check")
    ap.add_argument("--alarm", type=int, default=90, help="seconds per claim before HANG")
    ap.add_argument("--log", type=str, default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--model", choices=list(GRAMMARS), default="batchnorm",
                    help="the model the claims are about")
    args = ap.parse_args(argv)

    g = GRAMMARS[args.model]
    rng = random.Random(args.seed)
    oracles: dict[tuple[str, int], Oracle] = {}
    deadline = time.monotonic() + 60 * args.minutes
    counts = collections.Counter()
    kinds = collections.Counter()
    findings_all = []
    log = open(args.log, "w") if args.log else None  # noqa: SIM115 (closed after the loop)
    signal.signal(signal.SIGALRM, _alarm)
    count = 0
    seen = set()
    while count < args.max_claims and time.monotonic() < deadline:
        case = generate(rng, g)
        if (case["claim"], case["where"]) in seen:
            continue
        seen.add((case["claim"], case["where"]))
        count += 1
        case["index"] = count
        t0 = time.monotonic()
        signal.alarm(args.alarm)
        try:
            findings = run_one(case, oracles, args.timeout, g)
        except Hang:
            findings = [{"kind": "HANG", "seconds": args.alarm}]
            oracles.clear()
        finally:
            signal.alarm(0)
        case["seconds"] = round(time.monotonic() - t0, 2)
        for n, v in case.get("verdicts", {}).items():
            counts[(n, v)] += 1
        case["findings"] = findings
        for f in findings:
            kinds[f["kind"]] += 1
            if f["kind"] in SEVERE or args.verbose:
                findings_all.append((case, f))
                print(f"[{count}] {f['kind']}: {case['claim']!r} where={case['where']!r} "
                      f"verdicts={case.get('verdicts')} :: "
                      f"{json.dumps({k: v for k, v in f.items() if k != 'kind'}, default=str)}",
                      flush=True)
        if log:
            log.write(json.dumps(case, default=str) + "\n")
            log.flush()
        if count % 50 == 0:
            print(f"... {count} claims, {dict(kinds)}", flush=True)
    if log:
        log.close()
    print(f"\n{count} claims (seed {args.seed}) about {args.model}")
    for n in ("parse", *map(str, g.sizes), "all"):
        row = {v: c for (m, v), c in counts.items() if m == n}
        if row:
            print(f"  N={n}: {dict(sorted(row.items()))}")
    print(f"findings by kind: {dict(kinds)}")
    severe = [f for _, f in findings_all if f["kind"] in SEVERE]
    print(f"severe findings: {len(severe)}")
    return 1 if severe else 0


if __name__ == "__main__":
    sys.exit(main())
