"""Model files and mutated closed forms shared by the tests of every model (concrete N,
every N, documents): user models in tests/models/, the wrong closed forms people write, and
an independent re-evaluation of a witness by SymPy's diff of the composed model."""

from fractions import Fraction
from pathlib import Path

import sympy as sp

from symbn.models import shipped

USER_MODELS = {p.stem: p.read_text()
               for p in sorted((Path(__file__).parent / "models").glob("*.toml"))}


def variant(name: str, key: str, text: str) -> str:
    """The shipped model file with one line replaced."""
    source = shipped()[name].read_text()
    lines = [f'{key} = "{text}"' if line.startswith(f"{key} = ") else line
             for line in source.splitlines()]
    assert lines != source.splitlines(), key
    return "\n".join(lines) + "\n"


BN_DX = ("gamma*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N - (x[j] - mu)*(v + eps)"
         "**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/{}")
WRONG = [
    # LayerNorm with gamma treated as one scalar per set: gamma[j] pulled out of the sums
    ("layernorm", '"D(f, x[j])"',
     ("gamma[j]*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N - (x[j] - mu)*(v + eps)"
      "**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/N)"), "x"),
    # the unbiased model's backward with the biased 1/N, and the biased one with 1/(N - 1)
    ("batchnorm-unbiased", '"D(f, x[j])"', BN_DX.format("N)"), "x"),
    ("batchnorm", '"D(f, x[j])"', BN_DX.format("(N - 1))"), "x"),
    # RMSNorm with a mean subtracted
    ("rmsnorm", '"D(f, x[j])"',
     ("(ms + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N - x[j]*(ms + eps)"
      "**(-1)*Sum(gamma[k]*dy[k]*x[k], (k, 1, N))/N)"), "x"),
    # the c2 term dropped
    ("layernorm", '"D(f, x[j])"',
     "(v + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N)", "x"),
    # RMSNorm's gamma on the wrong factor; a sign in D(f, eps)
    ("rmsnorm", '"D(f, gamma[j])"', "dy[j]*x[j]", "gamma"),
    ("layernorm", '"D(f, eps)"',
     "1/2*(v + eps)**(-3/2)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))", "eps"),
]


def wrong(name: str, leaf: str = "x") -> tuple:
    """The first mutation of `name`'s closed form for `leaf`."""
    return next(w for w in WRONG if w[0] == name and w[3] == leaf)


def witness_gap(model, witness: dict, leaf: str, n: int) -> sp.Expr:
    """The true derivative minus the claimed closed form at the witness, to 50 digits: the
    true one by sympy.diff of each composed output (dy taken at the witness), independently
    of symbn's differentiation and prover."""
    g = model.instantiate(n)
    j = int(witness["instance"].split("=")[1]) if "j=" in witness["instance"] else None
    wrt = g.leaf(leaf, j)
    true = sum(sp.Symbol("d" + y.name) * sp.diff(g.compose(y), wrt) for y in g.outputs)
    claimed = g.compose(g.result(leaf, j))
    values = {sp.Symbol(k): sp.Rational(Fraction(v)) for k, v in witness["point"].items()}
    return sp.N(true.xreplace(values) - claimed.xreplace(values), 50)
