"""LaTeX export: the printer's notation, the document's equations, compiling, the CLI."""

import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from symbn import closed_form
from symbn.differentiate import forward_gradient
from symbn.latex import (
    DY,
    EDGES,
    EPS,
    MU,
    SETUP,
    SIGMA,
    XHAT,
    N,
    Partial,
    Printer,
    V,
    X,
    build,
    check_output,
    compile_pdf,
    edge_results,
    escape,
    export,
    i,
    j,
    latex,
    matrix_form,
    witness_latex,
)
from symbn.model import BatchNorm
from symbn.report import Report, Result

REPO = Path(__file__).resolve().parents[1]
HAS_PDFLATEX = shutil.which("pdflatex") is not None
needs_pdflatex = pytest.mark.skipif(not HAS_PDFLATEX, reason="pdflatex is not installed "
                                    "(apt-get install texlive-latex-base "
                                    "texlive-latex-recommended texlive-pictures)")
derivation = pytest.importorskip("symbn.derivation")
D, P = derivation.D, derivation.P


@pytest.fixture(scope="module")
def doc():
    return build(n=3)


# -- the printer ----------------------------------------------------------------------------

NOTATION = [
    (X[i], r"x_{i}"),
    (XHAT[i], r"\hat{x}_{i}"),
    (DY[j], r"\frac{\partial f}{\partial y_{j}}"),
    (MU, r"\mu"),
    (EPS, r"\epsilon"),
    (SIGMA, r"\sigma"),
    (sp.Symbol("x[2]"), r"x_{2}"),
    (sp.Symbol("xhat[3]"), r"\hat{x}_{3}"),
    (sp.Symbol("dy[1]"), r"\frac{\partial f}{\partial y_{1}}"),
    (sp.Symbol("x[1,2]"), r"x_{1,2}"),
    (sp.Symbol("gamma[2]"), r"\gamma_{2}"),
    (X[i] - MU, r"x_{i} - \mu"),
    (V + EPS, r"v + \epsilon"),
    (D(V, X[j]), r"\frac{\partial v}{\partial x_{j}}"),
    (P(XHAT[i], MU), r"\frac{\partial \hat{x}_{i}}{\partial \mu}"),
    (D(sp.Symbol("f"), sp.IndexedBase("y")[i]), r"\frac{\partial f}{\partial y_{i}}"),
    (D((X[i] - MU) ** 2, X[j]),
     r"\frac{\partial \left(\left(x_{i} - \mu\right)^{2}\right)}{\partial x_{j}}"),
    (sp.Mul(sp.Integer(1), 1 / N, evaluate=False), r"\frac{1}{N}"),
    (sp.Mul(sp.Mul(-1, 1 / N, evaluate=False), 1 / sp.sqrt(V + EPS), evaluate=False),
     r"- \frac{1}{N \sqrt{v + \epsilon}}"),
    (sp.Add(1, sp.Mul(-1, sp.Mul(1, 1 / N, evaluate=False), evaluate=False), evaluate=False),
     r"1 - \frac{1}{N}"),
    (sp.Sum(X[i], (i, 1, N)) / N, r"\frac{\sum_{i=1}^{N} x_{i}}{N}"),
    (2 / N * (X[j] - MU), r"\frac{2}{N} \left(x_{j} - \mu\right)"),
    (sp.KroneckerDelta(i, j) / SIGMA, r"\frac{\delta_{i j}}{\sigma}"),
    (sp.Ne(i, j), r"i \neq j"),
]


@pytest.mark.parametrize("expr,expected", NOTATION, ids=[t for _, t in NOTATION])
def test_notation(expr, expected):
    assert latex(expr) == expected


def test_matrix_form_prints_its_factors_as_written():
    assert latex(matrix_form(BatchNorm(2))) == (
        r"\frac{\gamma}{\sqrt{v + \epsilon}} \left(\mathbb{I} - \frac{1}{2} "
        r"\left[\begin{matrix}1 & 1\\1 & 1\end{matrix}\right] - \frac{1}{2} "
        r"\left[\begin{matrix}\hat{x}_{1}\\\hat{x}_{2}\end{matrix}\right] "
        r"\left[\begin{matrix}\hat{x}_{1} & \hat{x}_{2}\end{matrix}\right]\right) "
        r"\left[\begin{matrix}\frac{\partial f}{\partial y_{1}}\\"
        r"\frac{\partial f}{\partial y_{2}}\end{matrix}\right]")


def test_escape_neutralizes_latex_in_prose():
    hostile = r"\input{/etc/passwd} \write18{rm -rf /} $x$ 100% & # _ ^ ~"
    out = escape(hostile)
    assert "\\input" not in out and "\\write18" not in out
    assert out.count("\\textbackslash{}") == 2
    assert escape("x̂ ≠ μ") == r"$\hat{x}$ $\neq$ $\mu$"


# -- the document's equations are the proved expressions ---------------------------------------


def test_every_step_is_printed_from_its_checked_links(doc):
    d = derivation.load("batchnorm")
    report = doc.reports["check"]
    steps = [eq for eq in doc.equations if eq.label.startswith("step:")]
    assert [eq.label for eq in steps] == [f"step:{s.id}" for s in d.steps]
    for eq, step in zip(steps, d.steps):
        assert eq.exprs == step.links, step.id  # the printer's input is what check() judged
        assert eq.verdict == report[step.id].verdict == "proved", step.id
        for link in step.links:
            assert Printer().doprint(link) in eq.latex, step.id
        assert eq.latex in doc.tex


def test_emitted_equations_exact_strings(doc):
    dv = doc.equation("step:bw-dv-dx")
    assert dv.latex == (r"\fitto{\frac{\partial v}{\partial x_{j}}}{0.3} &= "
                        r"\fitto{\frac{2}{N} \left(x_{j} - \mu\right)}{0.62} "
                        r"\label{eq:step:bw-dv-dx}")
    dmu = doc.equation("step:bw-dv-dmu")
    assert r"\fitto{- \frac{2}{N} \sum_{i=1}^{N} \left(x_{i} - \mu\right)}{0.62}" in dmu.latex
    assert r"&= \fitto{0}{0.62} \label{eq:step:bw-dv-dmu}" in dmu.latex
    same = doc.equation("step:bw-dxhat-dx")
    assert same.latex.endswith(r"&&\text{for } i = j \label{eq:step:bw-dxhat-dx}")
    beta = doc.equation("result:dbeta")
    assert (r"\frac{\partial f}{\partial y_{1}} + \frac{\partial f}{\partial y_{2}} + "
            r"\frac{\partial f}{\partial y_{3}}") in beta.latex


def test_setup_and_edges_are_the_model(doc):
    assert [eq.exprs for eq in doc.equations if eq.label.startswith("setup:")] == \
        [tuple(pair) for pair in SETUP]
    assert all(r.verdict == "proved" for r in doc.reports["setup"])
    assert [r.verdict for r in doc.reports["edges"]] == ["proved"] * len(EDGES)
    for _, _, value in EDGES:
        assert f"${latex(value)}$" in doc.tex


def test_a_wrong_edge_is_disproved():
    bn = BatchNorm(3)
    import symbn.latex as mod

    saved = list(mod.EDGES)
    try:
        mod.EDGES[1] = (V, X[j], 2 / (N - 1) * (X[j] - MU))  # Bessel's N - 1
        results = edge_results(bn)
    finally:
        mod.EDGES[:] = saved
    assert results[1].verdict == "disproved"
    assert [r.verdict for k, r in enumerate(results) if k != 1] == ["proved"] * (len(saved) - 1)


def _at(bn: BatchNorm, expr, point):
    return bn.evaluate(expr, point)


def test_results_are_closed_form_and_match_forward_mode_at_exact_points(doc):
    bn = BatchNorm(3)
    dx = doc.equation("result:dx")
    assert dx.exprs[0] == Partial(sp.Symbol("f"), sp.Symbol("x"))
    vector = dx.exprs[1].as_explicit()
    assert doc.equation("result:dgamma").exprs[1] == closed_form.dgamma(bn)
    assert doc.equation("result:dbeta").exprs[1] == closed_form.dbeta(bn)
    # independent oracle: exact evaluation of the printed matrix form against forward mode
    point = {s: Fraction(k * 7 % 11 - 5, 3) for k, s in enumerate(bn.leaves, 1)}
    point[bn.eps] = Fraction(1, 5)
    for row in bn.rows():
        mine = _at(bn, vector[row - 1], point)
        assert mine == _at(bn, closed_form.dx(bn, row), point)
    assert all(r.verdict == "proved" for r in doc.reports["verify"])


def test_matrix_form_equals_forward_gradient_with_rational_sigma():
    bn = BatchNorm(2)
    x1, x2 = Fraction(1), Fraction(3)  # v = 1, eps = 3 makes sigma = 2
    point = {bn.x(1): x1, bn.x(2): x2, bn.eps: Fraction(3), bn.gamma(): Fraction(5),
             bn.beta(): Fraction(7), bn.dy(1): Fraction(2), bn.dy(2): Fraction(-1)}
    vector = matrix_form(bn).as_explicit()
    for row in bn.rows():
        expected = bn.compose(forward_gradient(bn, bn.x(row))).xreplace(
            {s: sp.Rational(q.numerator, q.denominator) for s, q in point.items()})
        assert _at(bn, vector[row - 1], point) == expected


# parse_latex speaks a plainer dialect: rename the note's notation before parsing
# (one letter each: it reads "xhat" as x*h*a*t)
_DIALECT = [(re.compile(r"\\frac\{\\partial f\}\{\\partial y_\{(\w+)\}\}"), r"g_{\1}"),
            (re.compile(r"\\hat\{x\}_\{(\w+)\}"), r"h_{\1}"),
            # and it reads "\gamma \left(" as the gamma function applied
            (re.compile(r"(\\[a-z]+|\w|\}) \\left\("), r"\1 \\cdot \\left("),
            (re.compile(r"(\\sum_\{[^}]*\}\^\{[^}]*\}) \\cdot"), r"\1")]
_LETTER = {"dy": "g", "xhat": "h"}
_UNSUPPORTED = ("\\partial", "\\delta", "\\begin", "\\mathbb")


def _parse_names(expr):
    """The template with its names as parse_latex produces them."""
    idx = {s: sp.Symbol(s.name) for s in expr.free_symbols if s.name in "ijk"}
    names = {"mu": "mu", "eps": "epsilon", "gamma": "gamma", "beta": "beta", "v": "v",
             "sigma": "sigma", "N": "N", "f": "f"}
    expr = expr.replace(lambda a: isinstance(a, D) and a.args[0] == sp.Symbol("f"),
                        lambda a: sp.Symbol(f"g_{{{a.args[1].indices[0]}}}"))
    expr = expr.replace(lambda a: isinstance(a, sp.Indexed),
                        lambda a: sp.Symbol(f"{_LETTER.get(a.base.label.name, a.base.label.name)}"
                                           f"_{{{a.indices[0]}}}"))
    out = {}
    for s in expr.free_symbols:
        m = re.fullmatch(r"(\w+)\[(\d+)\]", s.name)
        if m:
            out[s] = sp.Symbol(f"{_LETTER.get(m.group(1), m.group(1))}_{{{m.group(2)}}}")
        elif s.name in names:
            out[s] = sp.Symbol(names[s.name])
    return expr.xreplace({**out, **idx})


def test_round_trip_through_parse_latex(doc):
    parse_latex = pytest.importorskip("sympy.parsing.latex").parse_latex
    try:
        parse_latex("x")
    except ImportError as err:
        pytest.skip(f"parse_latex unavailable: {err}")
    checked, skipped = 0, 0
    for eq in doc.equations:
        for expr in eq.exprs:
            text = Printer().doprint(expr)
            for pattern, repl in _DIALECT:
                text = pattern.sub(repl, text)
            if any(u in text for u in _UNSUPPORTED) or isinstance(expr, sp.MatrixExpr):
                skipped += 1
                continue
            parsed = parse_latex(text)
            mine = _parse_names(expr)
            diff = sp.expand((parsed - mine).doit())
            assert diff == 0 or sp.cancel(sp.together(diff)) == 0, (eq.label, text)
            checked += 1
    assert checked >= 30, (checked, skipped)


# -- compiling -----------------------------------------------------------------------------------


def _pages(pdf: Path) -> int:
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
        return int(re.search(r"^Pages:\s+(\d+)", out, re.MULTILINE).group(1))
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))


@needs_pdflatex
def test_pdf_compiles_with_expected_pages(tmp_path):
    _, where = export(tmp_path / "plain.pdf", derivation=False, n=2)
    out = Path(where.real)
    assert out.read_bytes().startswith(b"%PDF")
    assert _pages(out) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pdf"]  # no temp files left


@needs_pdflatex
def test_note_pdf_compiles(tmp_path, doc):
    pdf = compile_pdf(doc.tex)  # raises on errors and on undefined references
    (tmp_path / "note.pdf").write_bytes(pdf)
    assert _pages(tmp_path / "note.pdf") == 6


@needs_pdflatex
def test_disproved_step_typesets_its_witness(tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text('title = "wrong"\nmodel = "batchnorm"\n[[step]]\nid = "bessel"\n'
                    'claim = "D(v, x[j]) = 2/(N-1)*(x[j] - mu)"\ntext = "50% & \\\\input{x}"\n')
    doc = build(str(path), n=3)
    result = doc.reports["check"]["bessel"]
    assert result.verdict == "disproved" and doc.equation("step:bessel").verdict == "disproved"
    assert witness_latex(result.witness) in doc.tex
    assert r"\disproved\ disproved for $N = 3$" in doc.tex
    assert "\\input{x}" not in doc.tex
    point = result.witness["point"]
    for name, value in point.items():
        assert f"{latex(sp.Symbol(name))} = {latex(sp.Rational(Fraction(value)))}" in doc.tex
    assert compile_pdf(doc.tex).startswith(b"%PDF")


def test_report_renders_in_jupyter():
    report = Report("demo", [Result("a", "proved", "exact", 0.01),
                             Result("b", "disproved", "exact", 0.02,
                                    {"point": {"x[1]": "-3/7", "eps": "2"},
                                     "lhs": "1/2", "rhs": "1"})])
    md = report._repr_markdown_()
    assert "| ✓ | `a` | proved |" in md and "| ✗ | `b` | disproved |" in md
    assert r"$x_{1} = - \frac{3}{7},\ \epsilon = 2$" in md
    tex = report._repr_latex_()
    assert tex.startswith("$$\\begin{array}") and tex.endswith("\\end{array}$$")
    assert r"\times & \texttt{b} & \text{disproved}" in tex


# -- output paths and the command line -----------------------------------------------------------


def symbn(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "symbn", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env=env)


BAD = [
    (["latex", "--n", "3", "-o", "/nonexistent/dir/out.tex"], "does not exist"),
    (["latex", "--n", "3", "-o", "out.docx"], "must end in .tex or .pdf"),
    (["latex", "--n", "0", "-o", "out.tex"], "--n must be a positive integer"),
    (["latex", "--n", "all", "--expand", "-o", "out.tex"], "--n all"),
    (["latex", "nosuch.toml", "-o", "out.tex"], "nosuch.toml"),
    (["latex", "--n", "3"], "-o/--output"),
]
if sys.platform.startswith("linux"):  # a directory no file can be created in, even by root
    BAD.append((["latex", "--n", "2", "-o", "/proc/symbn-test.tex"], "cannot write"))


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    run = symbn(*args)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symbn: error:") and message in lines[0]


def test_directory_as_output_is_refused(tmp_path):
    (tmp_path / "d.tex").mkdir()
    with pytest.raises(Exception, match="is a directory"):
        check_output(tmp_path / "d.tex")


def test_missing_pdflatex_is_exit_2_and_keeps_old_file(tmp_path):
    old = tmp_path / "out.pdf"
    old.write_bytes(b"old")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    if shutil.which("pdflatex", path=env["PATH"]):
        pytest.skip("pdflatex sits next to python")
    env["PYTHONPATH"] = str(REPO)
    run = symbn("latex", "--n", "2", "-o", str(old), env=env, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("symbn: error:") and "pdflatex is not installed" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert old.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["out.pdf"]


def test_cli_writes_tex(tmp_path):
    out = tmp_path / "bn.tex"
    run = symbn("latex", "--n", "2", "-o", str(out), "--expand")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {out} (N = 2,")
    tex = out.read_text()
    assert tex.startswith("\\documentclass") and tex.rstrip().endswith("\\end{document}")
    assert "\\subsection*{Expanded}" in tex and "symbn 0.1.0" in tex


# -- the document for every N (symbolic N) --------------------------------------------------------


@pytest.fixture(scope="module")
def general_doc():
    return build(n="all")


def test_every_n_document_prints_every_step_with_its_symbolic_verdict(general_doc):
    from symbn.general import check_all

    d = derivation.load("batchnorm")
    report = check_all(d)
    steps = [eq for eq in general_doc.equations if eq.label.startswith("step:")]
    assert [eq.label for eq in steps] == [f"step:{s.id}" for s in d.steps]
    for eq, step in zip(steps, d.steps):
        assert eq.exprs == step.links, step.id  # the printer's input is what check_all judged
        assert eq.verdict == report[step.id].verdict == "proved", step.id
        assert eq.latex in general_doc.tex
    tex = general_doc.tex
    assert "every $N$" in tex and "$N = " not in tex  # nothing of one concrete N
    assert r"\proved\ proved for every $N$ (exact, symbolic $N$), if $1 \leq j \leq N$; " \
        r"by R1, R2, R3" in tex
    assert r"if $i = j$, $1 \leq i \leq N$; by R1, R3" in tex  # fw-dvterm-dx-same
    assert "for every $N$ (symbolic) on" in tex  # the colophon


def test_every_n_document_prints_the_proved_rules_and_claims(general_doc):
    from symbn import general

    report = general_doc.reports["verify"]
    assert report.ok and len(report.results) == 17
    for cid, (lhs, rhs) in general.rule_equations().items():
        eq = general_doc.equation(f"claim:{cid}")
        assert eq.exprs == (lhs, rhs) and eq.verdict == "proved"
    assert r"\sum_{i=1}^{N} c" in general_doc.equation("claim:rule/R2-constant").latex
    for cid, lhs, rhs, _ in general.claims():
        eq = general_doc.equation(f"claim:{cid}")
        assert eq.exprs == (lhs(), rhs()) and eq.verdict == report[cid].verdict == "proved"
    # setup and edges: the templates, proved equal to the symbolic-N model
    assert [eq.exprs for eq in general_doc.equations if eq.label.startswith("setup:")] == \
        [tuple(pair) for pair in SETUP]
    assert [r.verdict for r in general_doc.reports["edges"]] == ["proved"] * len(EDGES)
    assert "if 1 <= j <= N" in general_doc.reports["edges"][0].note  # d mu / d x_j = 1/N


def test_a_wrong_edge_is_not_proved_for_every_n():
    import symbn.latex as mod

    saved = list(mod.EDGES)
    try:
        mod.EDGES[1] = (V, X[j], 2 / (N - 1) * (X[j] - MU))  # Bessel's N - 1
        doc = build(derivation=False, n="all")
    finally:
        mod.EDGES[:] = saved
    edge = doc.reports["edges"][1]
    assert edge.verdict == "disproved" and edge.witness["N"] >= 2
    assert r"\draw[edge,red]" in doc.tex


def test_disproved_step_for_every_n_typesets_its_concrete_witness(tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text('title = "wrong"\nmodel = "batchnorm"\n[[step]]\nid = "bessel"\n'
                    'claim = "D(v, x[j]) = 2/(N-1)*(x[j] - mu)"\n')
    run = symbn("latex", str(path), "--n", "all", "-o", str(tmp_path / "w.tex"))
    assert run.returncode == 1, run.stderr
    tex = (tmp_path / "w.tex").read_text()
    result = build(str(path), n="all").reports["check"]["bessel"]
    assert result.verdict == "disproved"
    assert r"\disproved\ disproved for every $N$" in tex
    assert rf"counterexample for $N = {result.witness['N']}$" in tex


def test_cli_every_n_tex_and_pdf(tmp_path):
    out = tmp_path / "general.tex"
    run = symbn("latex", "--n", "all", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {out} (every N, symbolic,")
    tex = out.read_text()
    assert tex.startswith("\\documentclass") and "every $N$" in tex
    for step in derivation.load("batchnorm").steps:
        assert f"\\label{{eq:step:{step.id}}}" in tex
    if not HAS_PDFLATEX:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base "
                    "texlive-latex-recommended texlive-pictures)")
    pdf = tmp_path / "general.pdf"
    run = symbn("latex", "--n", "all", "-o", str(pdf))
    assert run.returncode == 0, run.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and _pages(pdf) == 9


@pytest.mark.parametrize("text, message", [
    ("a $$ b $$ c", "empty inline math"),
    ("a $x\fy$ b", "would misread"),
    ("a $x\n\ny$ b", "would misread"),
    ("a $x\ty$ b", "would misread"),
])
def test_prose_refuses_math_latex_would_misread(text, message):
    from symbn.errors import SymbnError
    from symbn.latex.printer import prose

    with pytest.raises(SymbnError, match=message):
        prose(text)


def test_prose_keeps_a_line_break_in_math_and_drops_control_characters():
    from symbn.latex.printer import prose

    assert prose("a $x\ny$ b") == "a $x\ny$ b"
    assert prose("a\x85b\x7fc\x01d") == "abcd"
