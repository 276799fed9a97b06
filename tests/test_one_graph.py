"""BatchNorm's graph is written once, in models/batchnorm.toml: the derivation language's
built-in vocabulary, the every-N definitions and the document's figure are read off it (the
note's own statements of them, written here independently, must come out)."""

import pytest
import sympy as sp

from symbn.derivation import BATCHNORM
from symbn.latex import EDGES
from symbn.model import BatchNorm
from symbn.models import load


def _names(e) -> str:
    return str(e.base) if isinstance(e, sp.Indexed) else str(e)


def test_builtin_vocabulary_is_read_off_the_model_file():
    m = load("batchnorm")
    assert BATCHNORM == m.vocabulary()
    # the names (in the order error messages list them) and the graph, as the note has them
    assert BATCHNORM.scalars == ("mu", "v", "gamma", "beta", "eps", "f", "sigma")
    assert BATCHNORM.indexed == ("x", "xhat", "y", "dy")
    assert {k: set(v) for k, v in BATCHNORM.parents.items()} == {
        "mu": {"x"}, "v": {"x", "mu"}, "xhat": {"x", "mu", "v", "eps"},
        "y": {"xhat", "gamma", "beta"}, "f": {"y"}}
    assert set(BATCHNORM.same_row) == {("xhat", "x"), ("y", "xhat")}


def test_every_n_definitions_are_read_off_the_model_file():
    from symbn.general.batchnorm import (
        DEFINITIONS,
        N,
        beta,
        eps,
        gamma,
        i,
        mu_node,
        p,
        q,
        v_node,
        x,
    )

    note = {  # the note's definitions, written independently of the model file
        "mu": (sp.Sum(x[p], (p, 1, N)) / N, {"x_j"}),
        "v": (sp.Sum((x[q] - mu_node) ** 2, (q, 1, N)) / N, {"x_j", "mu"}),
        "xhat_i": ((x[i] - mu_node) / sp.sqrt(v_node + eps), {"x_j", "mu", "v"}),
        "y_i": (gamma * sp.Symbol("xhat_i") + beta, {"xhat_i", "gamma", "beta"}),
    }
    assert {k: (d, set(parents)) for k, (d, parents) in DEFINITIONS.items()} == note


def test_figure_edges_are_the_model_files_except_the_parameter_eps():
    m = load("batchnorm")
    edges = {(child, parent) for child, d in m.nodes.items() for parent in d.parents}
    edges.add(("f", m.output))
    drawn = {(_names(child), _names(parent)) for child, parent, _ in EDGES}
    assert drawn == edges - {("xhat", "eps")}  # the note's figure leaves the parameter out


def test_batchnorm_class_is_the_model_instance():
    bn, g = BatchNorm(3), load("batchnorm").instantiate(3)
    assert {s: n.definition for s, n in bn.nodes.items() if s != bn.f} == \
        {s: n.definition for s, n in g.nodes.items() if s != g.f}
    assert set(bn.leaves) == set(g.leaves)


def test_report_and_its_jupyter_renderer_import_no_document_renderer():
    """report -> jupyter -> notation only: no cycle through symbn.latex or the stages."""
    import subprocess
    import sys

    code = ("import sys, symbn.report as r, symbn.jupyter as j, symbn.prove as p; "
            "assert (j.PROVED, j.DISPROVED, j.UNKNOWN, j.PROBABLE, j.CONSISTENT) == "
            "(p.PROVED, p.DISPROVED, p.UNKNOWN, p.PROBABLE, p.CONSISTENT); "
            "r.Report('t', [])._repr_markdown_(); "
            "bad = [m for m in sys.modules if m.startswith(('symbn.latex', 'symbn.verify', "
            "'symbn.check', 'symbn.general'))]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


def test_figure_edges_follow_the_model_file(monkeypatch):
    """The figure's edges are read off the model file: an edge the note has no label for
    stops the document instead of being left out."""
    from symbn import SymbnError, models
    from symbn.latex import batchnorm as doc

    source = models.shipped()["batchnorm"].read_text().replace(
        'y = "gamma*xhat[i] + beta"', 'y = "gamma*xhat[i] + beta + mu"')
    extra = models.parse(source, "batchnorm-with-mu-in-y.toml")
    monkeypatch.setattr(models, "load", lambda name: extra)
    with pytest.raises(SymbnError, match=r"no label for the edge\(s\) \[\('y', 'mu'\)\]"):
        doc._edges()
