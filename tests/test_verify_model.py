"""`symbn verify --model M` and `symbn models`: every shipped model proved both ways, wrong
closed forms disproved with witnesses that re-evaluate, user model files end to end."""

import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp
from model_fixtures import USER_MODELS, WRONG, variant, witness_gap, wrong

from symbn.cli import main
from symbn.errors import SymbnError
from symbn.models import load, parse, shipped
from symbn.verify_model import verify_model

REPO = Path(__file__).resolve().parents[1]
SIZES = {"batchnorm": 1, "batchnorm-unbiased": 2, "layernorm": 1, "rmsnorm": 1}


@pytest.mark.parametrize("name", sorted(shipped()))
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_shipped_model_is_proved_both_ways(name, n):
    if n < SIZES[name]:
        with pytest.raises(SymbnError, match=f"defined for N >= {SIZES[name]}"):
            verify_model(name, n)
        return
    report = verify_model(name, n)
    assert report.ok, str(report)
    ids = {r.id for r in report}
    for leaf in load(name).results:
        assert {f"forward/d{leaf}", f"backward/d{leaf}", f"forward=backward/d{leaf}"} <= ids


@pytest.mark.parametrize("name", sorted(shipped()))
def test_two_sets_are_independent_and_shared_leaves_sum_over_them(name):
    report = verify_model(name, 3, d=2)
    assert report.ok, str(report)
    assert report["sets/independent"].verdict == "proved"


@pytest.mark.parametrize("name,key,text,leaf", WRONG)
def test_wrong_closed_forms_are_disproved_with_witnesses_that_reevaluate(name, key, text,
                                                                         leaf):
    model = parse(variant(name, key, text), f"<{name} variant>")
    report = verify_model(model, 3)
    assert report[f"forward/d{leaf}"].verdict == "disproved"
    assert report[f"backward/d{leaf}"].verdict == "disproved"
    assert report[f"forward=backward/d{leaf}"].verdict == "proved"  # the modes still agree
    gap = witness_gap(model, report[f"forward/d{leaf}"].witness, leaf, 3)
    assert gap.free_symbols == set() and abs(gap) > 1e-30, gap




def test_radicand_without_eps_is_decided_where_defined_and_never_vacuously():
    """sqrt(v) with no eps: at N = 1, v is identically 0 and d sqrt(v)/dv divides by it, so
    the dx claim is unknown (undefined), never proved; at N = 3 it is proved; a wrong closed
    form with the eps inside the root is disproved with an interval-certified witness."""
    model = parse(USER_MODELS["layernorm-eps-outside"], "<eps outside>")
    one = verify_model(model, 1)
    assert one["forward=backward/dx"].verdict == "unknown"
    assert "identically zero" in one["forward=backward/dx"].note
    assert verify_model(model, 3).ok
    inside = USER_MODELS["layernorm-eps-outside"].replace(
        '"D(f, gamma[j])" = "dy[j]*xhat[j]"',
        '"D(f, gamma[j])" = "dy[j]*(x[j] - mu)*(v + eps)**(-1/2)"')
    wrong = verify_model(parse(inside, "<eps inside>"), 3)
    assert wrong["forward/dgamma"].verdict == "disproved", str(wrong)


@pytest.mark.parametrize("name", sorted(USER_MODELS))
def test_user_models_end_to_end(name, tmp_path):
    path = tmp_path / f"{name}.toml"
    path.write_text(USER_MODELS[name])
    run = subprocess.run([sys.executable, "-m", "symbn", "verify", "--model", str(path), "--n",
                          "3"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "proved" in run.stdout and "disproved" not in run.stdout
    if "results" not in USER_MODELS[name]:
        assert "derived: D(f, x[1]) = " in run.stdout


def test_models_command_lists_and_shows(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in shipped():
        assert f"\n{name} " in "\n" + out
    assert main(["models", "rmsnorm"]) == 0
    out = capsys.readouterr().out
    assert "xhat[i] = x[i]*(ms + eps)**(-1/2)" in out and "<- x, ms, eps" in out
    assert "paths from x: x -> ms -> xhat -> y -> f; x -> xhat -> y -> f" in out


def test_models_command_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(USER_MODELS["gemma-rmsnorm"].replace('"(1 + gamma[i])*xhat[i]"',
                                                       '"__import__(1)"'))
    for argv in (["models", "nope"], ["models", str(bad)], ["verify", "--model", "nope"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("symbn: error: ") and err.count("\n") == 1


def test_verify_model_refuses_what_it_cannot_do(capsys):
    assert main(["verify", "--model", "layernorm", "--n", "all", "--d", "2"]) == 2
    assert "--d has no meaning with --n all" in capsys.readouterr().err
    assert main(["verify", "--model", "layernorm", "--n", "5000"]) == 2
    assert "beyond the limit" in capsys.readouterr().err


def test_row_symmetry_above_eight_needs_linear_closed_forms():
    """Above N = 8 claims compare dy-coefficients; a closed form not syntactically linear in
    dy leaves them unknown, never proved, while N <= 8 decides the whole sums."""
    source = variant("rmsnorm", '"D(f, gamma[j])"', "dy[j]*xhat[j]*(dy[j] + 1) - dy[j]**2*xhat[j]")
    model = parse(source, "<nonlinear>")
    small, large = verify_model(model, 4), verify_model(model, 9)
    assert small["forward/dgamma"].verdict == "proved"
    assert large["closed/dgamma-linear"].verdict == "unknown"
    assert large["forward/dgamma"].verdict == "unknown"
    assert large["backward/dgamma"].verdict == "unknown"
    assert large["forward/dx"].verdict == "proved" and not large.ok


def test_a_closed_form_of_zero_is_linear_in_dy_above_eight():
    """A leaf the output does not depend on has the closed form 0: the linear form whose
    coefficients are all 0, proved both ways at N = 9 as at N = 4; a nonzero constant is
    not linear and stays unknown there."""
    source = """name = "unused"
title = "a leaf the output does not depend on"
[leaves]
x = "element"
s = "positive"
[nodes]
y = "x[i]*x[i]"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "2*dy[j]*x[j]"
"D(f, s)" = "%s"
"""
    for n in (4, 9):
        report = verify_model(parse(source % "0", "<zero>"), n)
        assert report.ok and report["backward/ds"].verdict == "proved", str(report)
    wrong = verify_model(parse(source % "1", "<one>"), 9)
    assert wrong["closed/ds-linear"].verdict == "unknown" and not wrong.ok


@pytest.mark.parametrize("name", sorted(shipped()))
def test_row_symmetry_at_n_64_and_a_wrong_form_still_caught(name):
    report = verify_model(name, 64)
    assert report.ok and report.info["exhaustive"] is False, str(report)
    if name != "batchnorm":
        _, key, text, leaf = wrong(name)
        bad = verify_model(parse(variant(name, key, text), "<variant>"), 16)
        assert bad[f"forward/d{leaf}"].verdict == "disproved"


LN_STEPS = (Path(__file__).parent.parent / "derivations" / "examples"
            / "layernorm-steps.toml").read_text()  # README's example


@pytest.mark.parametrize("n", [3, 9])
def test_check_reads_the_derivation_model_and_refutes_gamma_as_a_scalar(n, tmp_path):
    from symbn.check import check

    path = tmp_path / "ln.toml"
    path.write_text(LN_STEPS)
    report = check(str(path), n)
    assert report["dxhat-dx"].verdict == "proved" and report["dgamma"].verdict == "proved"
    bad = report["gamma-scalar"]
    assert bad.verdict == "disproved"
    # the witness re-evaluated with plain SymPy: dy-linear sides at the exact point
    g = load("layernorm").instantiate(n)
    values = {sp.Symbol(k): sp.Rational(v) for k, v in bad.witness["point"].items()}
    j = int(bad.witness["assignment"]["j"])
    true = sum(sp.Symbol("d" + y.name) * sp.diff(g.compose(y), g.leaf("x", j))
               for y in g.outputs)
    assert sp.nsimplify(true.xreplace(values)) == sp.Rational(bad.witness["lhs"])


def test_derivation_model_file_relative_to_the_derivation(tmp_path):
    from symbn.check import check

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "gemma.toml").write_text(USER_MODELS["gemma-rmsnorm"])
    steps = tmp_path / "steps.toml"
    steps.write_text('title = "g"\nmodel = "models/gemma.toml"\n[[step]]\nid = "a"\n'
                     'claim = "D(y[i], gamma[i]) = xhat[i]"\n')
    assert check(str(steps), 3).ok
    for model, message in (("nope", "model 'nope' is not known"),
                           ("../../etc/passwd", "model '../../etc/passwd' is not known")):
        steps.write_text(steps.read_text().replace('"models/gemma.toml"', f'"{model}"'))
        with pytest.raises(SymbnError, match=message):
            check(str(steps), 3)
        steps.write_text(steps.read_text().replace(f'"{model}"', '"models/gemma.toml"'))
    # a model's names only: BatchNorm's scalar gamma is not LayerNorm's
    steps.write_text(LN_STEPS.replace("gamma[j]*(dy", "gamma*(dy"))
    with pytest.raises(SymbnError, match="'gamma' needs a row"):
        check(str(steps), 3)


def test_check_row_symmetry_on_a_model_agrees_with_every_assignment(tmp_path):
    """Above N = 8 check uses one assignment per index pattern; on LayerNorm (gamma[i]
    permuted with the rows) it must agree with checking every assignment."""
    from symbn.check import check

    path = tmp_path / "ln.toml"
    path.write_text(LN_STEPS + '''[[step]]
id = "named-row"
claim = "D(y[2], gamma[j]) = KroneckerDelta(2, j)*xhat[2]"
''')
    fast, full = check(str(path), 9), check(str(path), 9, all_assignments=True)
    assert [r.verdict for r in fast] == [r.verdict for r in full]
    assert fast.info["exhaustive"] is False and full.info["exhaustive"] is True
    assert fast["named-row"].verdict == "proved"


def test_random_method_on_models_is_probable_disproves_and_declines_two_radicals():
    report = verify_model("layernorm", 64, method="random", points=4)
    assert report.ok and {r.verdict for r in report} <= {"probable", "proved"}
    assert all("error probability <= " in r.note or r.verdict == "proved" for r in report)
    _, key, text, leaf = wrong("rmsnorm")  # RMSNorm with a mean subtracted
    bad = verify_model(parse(variant("rmsnorm", key, text), "<variant>"), 16, method="random")
    assert bad[f"forward/d{leaf}"].verdict == "disproved"
    two = verify_model("layernorm", 3, d=2, method="random", points=2)
    assert two["forward/dgamma"].verdict == "unknown"  # sqrt(v_1 + eps), sqrt(v_2 + eps)
    assert "distinct square roots" in two["forward/dgamma"].note
