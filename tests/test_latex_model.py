"""`symbn latex --model M`: documents of any model, every edge label proved, results with
their verdicts, derivation files on the model, bad input refused."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symbn.errors import SymbnError
from symbn.latex.model import build_model, layout
from symbn.models import load, parse, shipped

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_model_gets_a_document_with_proved_edges_and_results(name):
    m = load(name)
    doc = build_model(m, n=max(3, m.min_n))
    assert doc.tex.startswith("\\documentclass") and "\\begin{tikzpicture}" in doc.tex
    assert all(r.verdict == "proved" for r in doc.reports["edges"]), doc.reports["edges"]
    # one edge per (node, parent) pair of the model file, and f <- output
    assert len(doc.reports["edges"]) == sum(len(d.parents) for d in m.nodes.values()) + 1
    for leaf in m.results:
        assert doc.equation(f"result:{leaf}").verdict == "proved"
    assert f"model \\texttt{{{name}}}" in doc.tex


def test_layout_puts_every_leaf_and_node_on_its_own_spot():
    for name in shipped():
        m = load(name)
        pos = layout(m)
        assert set(pos) == {*m.leaves, *m.nodes, "f"}
        assert len(set(pos.values())) == len(pos)  # no two circles on one spot
        assert pos["f"][0] == max(x for x, _ in pos.values())


def test_a_wrong_edge_label_would_be_caught():
    """The labels are proved, not trusted: a label off by a factor is disproved."""
    import sympy as sp

    from symbn.latex.model import _edges, _prove_edge
    from symbn.prove import Algebra

    m = load("rmsnorm")
    g = m.instantiate(3)
    child, parent, label = next(e for e in _edges(m) if e[:2] == ("ms", "x"))
    assert _prove_edge(g, Algebra(g), child, parent, label).verdict == "proved"
    wrong = _prove_edge(g, Algebra(g), child, parent, label * sp.Rational(1, 2))
    assert wrong.verdict == "disproved"


STEPS = '''title = "LayerNorm steps"
model = "layernorm"
[[step]]
id = "dgamma"
claim = "D(f, gamma[j]) = dy[j]*xhat[j]"
[[step]]
id = "gamma-scalar"
claim = "D(f, x[j]) = gamma[j]*(dy[j] - Sum(dy[k], (k, 1, N))/N - xhat[j]*Sum(dy[k]*xhat[k], (k, 1, N))/N)/sigma"
'''


def test_derivation_file_on_a_model_from_the_cli(tmp_path):
    (tmp_path / "ln.toml").write_text(STEPS)
    run = subprocess.run([sys.executable, "-m", "symbn", "latex", "ln.toml", "--n", "3", "-o",
                          "ln.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # gamma-scalar is disproved
    tex = (tmp_path / "ln.tex").read_text()
    assert "\\texttt{gamma-scalar}" in tex and "counterexample" in tex
    assert "LayerNorm steps" in tex


@pytest.mark.parametrize("argv,message", [
    (["latex", "--model", "layernorm", "--n", "all", "-o", "x.tex"], "--n all documents"),
    (["latex", "--model", "layernorm", "--expand", "-o", "x.tex"], "--expand"),
    (["latex", "--model", "nope", "-o", "x.tex"], "no such file or shipped model"),
    (["latex", "ln.toml", "--model", "rmsnorm", "-o", "x.tex"], "its model is 'layernorm'"),
])
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path):
    (tmp_path / "ln.toml").write_text(STEPS)
    run = subprocess.run([sys.executable, "-m", "symbn", *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr and run.stderr.count("\n") == 1
    assert not (tmp_path / "x.tex").exists()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_user_model_compiles_to_pdf(tmp_path):
    source = shipped()["rmsnorm"].read_text().replace('y = "gamma[i]*xhat[i]"',
                                                      'y = "(1 + gamma[i])*xhat[i]"')
    source = source.replace('"D(f, x[j])"', '"D(f, x[k])"').split("[results]")[0]
    path = tmp_path / "gemma.toml"
    path.write_text(source.replace('name = "rmsnorm"', 'name = "gemma"'))
    parse(path.read_text(), str(path))
    run = subprocess.run([sys.executable, "-m", "symbn", "latex", "--model", str(path), "--n",
                          "2", "-o", "g.pdf"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")


def test_size_below_the_model_domain_is_refused():
    with pytest.raises(SymbnError, match="integer >= 2 for batchnorm-unbiased"):
        build_model("batchnorm-unbiased", n=1)


HOSTILE = [r"$\input{/etc/passwd}$", r"$\write18{rm -rf /}$", r"$\openout1=x$",
           r"$\catcode`\@=11$", r"$^^5cinput x$", r"$a # b$", r"$x}$", r"$\def\x{1}$",
           r"$\csname input\endcsname$", "unmatched $ dollar"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_inline_math_is_refused_and_nothing_is_written(text, tmp_path):
    from symbn.latex import prose

    with pytest.raises(SymbnError):
        prose(text)
    step = STEPS.split("[[step]]")[0] + "[[step]]\nid = \"a\"\nclaim = \"D(f, beta[j]) = dy[j]\"\n"
    (tmp_path / "bad.toml").write_text(step + "text = '" + text + "'\n")
    run = subprocess.run([sys.executable, "-m", "symbn", "latex", "bad.toml", "-o", "x.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("symbn: error: bad.toml: step 'a'")
    assert run.stderr.count("\n") == 1 and not (tmp_path / "x.tex").exists()


def test_inline_math_is_typeset_and_dollars_escaped():
    from symbn.latex import build, prose

    assert prose(r"costs \$5 and $\hat{x}_i = x_i/\sqrt{v + \epsilon}$ 50%") == \
        r"costs \$5 and $\hat{x}_i = x_i/\sqrt{v + \epsilon}$ 50\%"
    tex = build(n=2).tex  # the shipped note writes its prose math as $...$
    assert r"$\partial \hat{x}_i/\partial x_j$ by the product rule" in tex
