"""BatchNorm's graph is read from models/batchnorm.toml; the few hand-written views of it that
remain (the derivation language's built-in vocabulary, the document's figure) must agree with
that file, so that they cannot drift apart."""

import sympy as sp

from symbn.derivation import BATCHNORM
from symbn.latex import EDGES
from symbn.model import BatchNorm
from symbn.models import load


def _names(e) -> str:
    return str(e.base) if isinstance(e, sp.Indexed) else str(e)


def test_builtin_vocabulary_is_the_model_files():
    model = load("batchnorm").vocabulary()
    assert set(BATCHNORM.scalars) == set(model.scalars)
    assert set(BATCHNORM.indexed) == set(model.indexed)
    assert BATCHNORM.leaves == model.leaves and BATCHNORM.output == model.output
    assert {k: set(v) for k, v in BATCHNORM.parents.items()} == \
        {k: set(v) for k, v in model.parents.items()}
    assert set(BATCHNORM.same_row) == set(model.same_row)
    assert set(BATCHNORM.names) == set(model.names)


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
            "assert (j.PROVED, j.DISPROVED, j.UNKNOWN, j.PROBABLE) == "
            "(p.PROVED, p.DISPROVED, p.UNKNOWN, p.PROBABLE); "
            "r.Report('t', [])._repr_markdown_(); "
            "bad = [m for m in sys.modules if m.startswith(('symbn.latex', 'symbn.verify', "
            "'symbn.check', 'symbn.general'))]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
