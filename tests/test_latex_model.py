"""`symbn latex --model M`: documents of any model, every edge label proved, results with
their verdicts, derivation files on the model, bad input refused."""

import re
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


STEPS = (REPO / "derivations" / "examples"
         / "layernorm-steps.toml").read_text()  # README's example


def test_derivation_file_on_a_model_from_the_cli(tmp_path):
    (tmp_path / "ln.toml").write_text(STEPS)
    run = subprocess.run([sys.executable, "-m", "symbn", "latex", "ln.toml", "--n", "3", "-o",
                          "ln.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # gamma-scalar is disproved
    tex = (tmp_path / "ln.tex").read_text()
    assert "\\texttt{gamma-scalar}" in tex and "counterexample" in tex
    assert "LayerNorm steps" in tex


@pytest.mark.parametrize("argv,message", [
    (["latex", "--model", "layernorm", "--n", "all", "--d", "2", "-o", "x.tex"],
     "--d has no meaning with --n all"),
    (["latex", "--model", "layernorm", "--d", "0", "-o", "x.tex"], "--d must be a positive"),
    (["latex", "--model", "layernorm", "--d", "two", "-o", "x.tex"], "--d must be a positive"),
    (["latex", "--model", "layernorm", "--d", "5000", "-o", "x.tex"], "beyond the limit"),
    (["latex", "--d", "2", "-o", "x.tex"], "models other than batchnorm"),
    (["latex", "--model", "layernorm", "--d", "2", "--expand", "-o", "x.tex"], "--expand"),
    (["latex", "--model", "layernorm", "--n", "all", "--expand", "-o", "x.tex"], "--expand"),
    (["latex", "--model", "layernorm", "--n", "all", "-o", "x.doc"], "x.doc"),
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


# -- every N (--n all) -------------------------------------------------------------------------

MODELS_ALL = sorted(name for name in shipped() if name != "batchnorm")


def _colophon(tex: str) -> str:
    return tex.split(r"\section*{Colophon}")[1]


@pytest.mark.parametrize("name", MODELS_ALL)
def test_every_n_document_states_each_proved_claim_with_the_domain(name):
    from symbn.every_n import verify_every_n
    from symbn.latex.model import build_model

    m = load(name)
    doc = build_model(name, n="all")
    expected = verify_every_n(name)
    assert doc.n == "all" and all(r.verdict == "proved" for r in expected)
    assert [r.id for r in doc.reports["verify"]] == [r.id for r in expected]
    for r in expected:  # each claim, with its verdict and the model's domain
        assert (rf"\item \proved\ \texttt{{{r.id}}}" in doc.tex
                and rf"proved for every $N \geq {m.min_n}$" in doc.tex), r.id
    for leaf in m.results:
        assert doc.equation(f"result:{leaf}").verdict == "proved"
    assert all(r.verdict == "proved" for r in doc.reports["edges"])
    assert rf"model \texttt{{{name}}}, every $N \geq {m.min_n}$" in _colophon(doc.tex)
    assert r"\proved\ proved for every $N \geq " + str(m.min_n) in doc.tex  # the summary


def test_unbiased_every_n_document_says_n_at_least_2():
    from symbn.latex.model import build_model

    tex = build_model("batchnorm-unbiased", n="all").tex
    assert r"defined for $N \geq 2$" in tex
    assert r"for every $N \geq 2$ (exact, symbolic $N$)" in tex  # the summary line
    assert r"every $N \geq 1$" not in tex and r"every $N$ (exact" not in tex


@pytest.mark.parametrize("name", sorted(shipped()))
def test_colophon_names_the_model(name):
    from symbn.latex.model import build_model

    m = load(name)
    doc = build_model(name, n=max(2, m.min_n))
    assert rf"model \texttt{{{name}}}, $N = {max(2, m.min_n)}$" in _colophon(doc.tex)


def test_every_n_edge_labels_are_proved_not_trusted():
    import sympy as sp

    from symbn.every_n import SymbolicModel
    from symbn.latex.model import _edges
    from symbn.latex.model_all import prove_edge_all

    m = load("layernorm")
    for child, parent, label in _edges(m):
        sm = SymbolicModel(m)
        assert prove_edge_all(sm, child, parent, label).verdict == "proved", (child, parent)
        if child != "f":
            # (v <- mu is -2/N sum (x_k - mu), zero once composed: a factor would not do)
            wrong = prove_edge_all(SymbolicModel(m), child, parent, label + sp.Rational(1, 2))
            assert wrong.verdict != "proved", (child, parent)


def _user_model(tmp_path, name: str, edit) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(edit(shipped()["rmsnorm"].read_text().replace('name = "rmsnorm"',
                                                                  f'name = "{name}"')))
    return path


def _latex(tmp_path, *argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "symbn", "latex", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", MODELS_ALL)
def test_cli_every_n_exit_0_and_tex(name, tmp_path):
    run = _latex(tmp_path, "--model", name, "--n", "all", "-o", "x.tex")
    assert run.returncode == 0, run.stderr
    assert "every N, symbolic" in run.stdout
    assert re.search(r"; (\d+) of \1 claims proved;", run.stdout), run.stdout
    assert rf"model \texttt{{{name}}}" in _colophon((tmp_path / "x.tex").read_text())


def test_cli_every_n_wrong_closed_form_is_disproved_exit_1(tmp_path):
    path = _user_model(tmp_path, "wrong", lambda s: s.replace('"D(f, eps)" = "-1/2*',
                                                               '"D(f, eps)" = "-1/3*'))
    run = _latex(tmp_path, "--model", str(path), "--n", "all", "-o", "x.tex")
    assert run.returncode == 1, run.stderr
    tex = (tmp_path / "x.tex").read_text()
    assert r"\item \disproved\ \texttt{forward/deps}" in tex and "counterexample" in tex
    assert r"\item \proved\ \texttt{forward/dx}" in tex  # the rest still proved
    assert r"\disproved\ proved for every" in tex  # the summary does not claim it all
    proved, total = map(int, re.search(r"; (\d+) of (\d+) claims proved, [1-9]\d* disproved;",
                                       run.stdout).groups())
    assert 0 < proved < total


def test_cli_every_n_undecided_claims_say_not_proved_exit_3(tmp_path):
    path = _user_model(tmp_path, "two", lambda s: s.split("[results]")[0].replace(
        'y = "gamma[i]*xhat[i]"', 'y = "gamma[i]*xhat[i]*(ms + 1)**(1/2)"'))
    run = _latex(tmp_path, "--model", str(path), "--n", "all", "-o", "x.tex")
    assert run.returncode == 3, run.stderr
    tex = (tmp_path / "x.tex").read_text()
    assert r"\undecided\ \texttt{forward=backward/dx}" in tex and "not proved" in tex
    assert r"\proved\ \texttt{forward=backward" not in tex
    assert r"\undecided\ proved for every" in tex  # neither a tick nor a cross on top
    assert re.search(r"; \d+ of \d+ claims proved, [1-9]\d* unknown;", run.stdout), run.stdout


def test_every_n_derivation_file_steps(tmp_path):
    (tmp_path / "ln.toml").write_text(STEPS)
    run = _latex(tmp_path, "ln.toml", "--n", "all", "-o", "ln.tex")
    assert run.returncode == 1, run.stderr  # gamma-scalar is false
    tex = (tmp_path / "ln.tex").read_text()
    assert r"\texttt{dgamma}" in tex and r"\texttt{gamma-scalar}" in tex
    assert "LayerNorm steps" in tex and "counterexample" in tex


# -- matrix form (--d D) ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(shipped()))
def test_matrix_form_along_the_axis_from_what_verify_proves(name):
    from symbn.latex.model import build_model

    m = load(name)
    doc = build_model(name, n=max(3, m.min_n), d=2)
    ids = {r.id: r.verdict for r in doc.reports["matrix"]}
    assert ids["sets/independent"] == ids["matrix/form"] == "proved"
    assert all(v == "proved" for v in ids.values())
    layout = r"\mathbb{R}^{N \times D}" if m.axis == 0 else r"\mathbb{R}^{D \times N}"
    assert layout in doc.tex and "The results in matrix form" in doc.tex
    for leaf in m.results:
        eq = doc.equation(f"matrix:{leaf}")
        summed = r"\sum_{c=1}^{D}" in eq.latex
        assert summed == (m.leaves[leaf] in ("along", "positive", "constant")), leaf
        assert eq.verdict == "proved"


def test_matrix_form_row_or_column_index_order():
    from symbn.latex.model import build_model

    assert r"x_{c,j}" in build_model("layernorm", n=2, d=2).equation("matrix:x").latex
    assert r"x_{j,c}" in build_model("batchnorm-unbiased", n=2, d=2).equation("matrix:x").latex


def test_a_wrong_matrix_form_would_be_caught(monkeypatch):
    """matrix/form is proved, not trusted: dropping the sum over the sets is disproved."""
    from symbn.latex import model_matrix

    m = load("layernorm")
    assert model_matrix.prove_matrix_form(m.instantiate(2, 2)).verdict == "proved"
    real = model_matrix.matrix_results

    def unsummed(model, leaf):
        lhs, rhs = real(model, leaf)
        return lhs, rhs.function if hasattr(rhs, "function") else rhs
    monkeypatch.setattr(model_matrix, "matrix_results", unsummed)
    assert model_matrix.prove_matrix_form(m.instantiate(2, 2)).verdict == "disproved"


def test_cli_matrix_form_exit_0(tmp_path):
    run = _latex(tmp_path, "--model", "rmsnorm", "--n", "3", "--d", "2", "-o", "r.tex")
    assert run.returncode == 0, run.stderr
    assert "N = 3, D = 2" in run.stdout
    tex = (tmp_path / "r.tex").read_text()
    assert r"\texttt{sets/independent}" in tex and r"\texttt{matrix/form}" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("argv", [["--model", "batchnorm-unbiased", "--n", "all"],
                                  ["--model", "layernorm", "--n", "3", "--d", "2"]])
def test_every_n_and_matrix_documents_compile(argv, tmp_path):
    run = _latex(tmp_path, *argv, "-o", "x.pdf")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "x.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", sorted(shipped()))
def test_vector_form_of_each_model_is_proved_entry_by_entry(name):
    from symbn.latex.model_vector import vector_form, vector_result

    g = load(name).instantiate(max(3, load(name).min_n))
    form = vector_form(g, "x")
    assert form is not None and vector_result(g, "x", form).verdict == "proved"


def test_a_wrong_vector_form_is_disproved_and_other_shapes_get_none():
    import sympy as sp

    from symbn.latex.model_vector import vector_form, vector_result

    m = load("layernorm")
    g = m.instantiate(3)
    wrong = vector_form(g, "x").xreplace({sp.Symbol("gamma[2]"): 2 * sp.Symbol("gamma[2]")})
    assert vector_result(g, "x", wrong).verdict == "disproved"
    source = shipped()["rmsnorm"].read_text().replace(
        '"D(f, x[j])" = "(ms + eps)**(-1/2)*(gamma[j]*dy[j]',
        '"D(f, x[j])" = "(ms + eps)**(-1/2)*(gamma[j]*dy[j]**2')
    assert vector_form(parse(source, "sq.toml").instantiate(2), "x") is None


def test_without_d_the_document_does_not_claim_the_sets():
    from symbn.latex.model import build_model

    doc = build_model("layernorm", n=2)
    assert "matrix" not in doc.reports and r"\texttt{-{}-d 2}" in doc.tex
    assert "The results in matrix form" not in doc.tex
    with_d = build_model("layernorm", n=2, d=3)
    assert r"model \texttt{layernorm}, $N = 2$, $D = 3$ sets" in _colophon(with_d.tex)
