"""`verify_model(model, n="all")`: every model's closed forms for every N (symbolic N), wrong
closed forms disproved at a concrete N with witnesses that re-evaluate (never proved), each
symbolic proof agreeing with the concrete prover, user models, and `unknown` with a reason
outside the fragment."""


import pytest
import sympy as sp
from model_fixtures import USER_MODELS, WRONG, variant, witness_gap

from symbn.errors import SymbnError
from symbn.general import verify_all
from symbn.models import load, parse, shipped
from symbn.verify_model import verify_model


@pytest.fixture(scope="module")
def every_n():
    return {name: verify_model(name, "all") for name in shipped()}


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_model_is_proved_for_every_n(name, every_n):
    m, report = load(name), every_n[name]
    assert report.ok, str(report)
    assert report.info["n"] == "all"
    ids = {r.id for r in report}
    for leaf in m.leaves:
        assert f"forward=backward/d{leaf}" in ids
        if leaf in m.results:
            assert {f"forward/d{leaf}", f"backward/d{leaf}"} <= ids
    for r in report:
        assert r.method == "canonical form, symbolic N"
        assert f"for every N >= {m.min_n}" in r.note, r.note
        assert "where both sides are defined" not in r.note  # divisors proved nonzero
    assert any("R3" in r.note for r in report)
    assert any("rules: R1" in note for note in report.notes)


def test_batchnorm_agrees_with_the_hand_written_every_n_prover(every_n):
    general = verify_all(steps=None)
    shared = [r.id for r in general if r.id in {s.id for s in every_n["batchnorm"]}]
    assert len(shared) == 7, shared
    for cid in shared:
        assert every_n["batchnorm"][cid].verdict == general[cid].verdict == "proved", cid


@pytest.mark.parametrize("name", sorted(shipped()))
def test_symbolic_proofs_agree_with_the_concrete_prover(name, every_n):
    m = load(name)
    for n in range(m.min_n, m.min_n + 4):
        concrete = verify_model(name, n)
        for r in every_n[name]:
            if r.verdict == "proved":
                assert concrete[r.id].verdict == "proved", (n, r.id, str(concrete))


@pytest.mark.parametrize("name,key,text,leaf", WRONG)
def test_wrong_closed_forms_are_disproved_at_a_concrete_n_never_proved(name, key, text, leaf):
    model = parse(variant(name, key, text), f"<{name} variant>")
    report = verify_model(model, "all")
    assert report[f"forward=backward/d{leaf}"].verdict == "proved"  # the modes still agree
    for mode in ("forward", "backward"):
        result = report[f"{mode}/d{leaf}"]
        assert result.verdict == "disproved", str(report)
        witness = result.witness
        n = witness["N"]
        assert n >= model.min_n and f"false at N = {n}" in result.note
        gap = witness_gap(model, witness, leaf, n)
        assert gap.free_symbols == set() and abs(gap) > 1e-30, (witness, gap)


def test_user_model_end_to_end(tmp_path):
    path = tmp_path / "gemma.toml"
    path.write_text(USER_MODELS["gemma-rmsnorm"])
    report = verify_model(str(path), "all")
    assert report.ok, str(report)
    assert [r.id for r in report] == ["forward/dx", "backward/dx", "forward=backward/dx",
                                      "forward/dgamma", "backward/dgamma",
                                      "forward=backward/dgamma", "forward=backward/deps"]
    wrong = verify_model(parse(USER_MODELS["gemma-rmsnorm"].replace("(1 + gamma[k])*dy[k]*x[k]", "gamma[k]*dy[k]*x[k]"),
                               "<gemma wrong>"), "all")
    assert wrong["forward/dx"].verdict == "disproved" and wrong["forward/dx"].witness["N"] >= 1


TWO_LEVELS = '''
name = "two-levels"
title = "an element node summed into a set node and used again"
[leaves]
x = "element"
gamma = "along"
eps = "positive"
[nodes]
ms = "Sum(x[k]**2, (k, 1, N))/N"
xhat = "x[i]*(ms + eps)**(-1/2)"
m2 = "Sum(xhat[k]*gamma[k], (k, 1, N))/N"
y = "xhat[i]*m2 - gamma[i]*m2**2"
[model]
output = "y"
axis = -1
'''


def test_backward_sums_over_the_rows_of_intermediate_element_nodes():
    """Paths x -> xhat -> m2 -> y -> f run through two summed rows (xhat's and y's)."""
    model = parse(TWO_LEVELS, "<two levels>")
    report = verify_model(model, "all")
    assert report.ok, str(report)
    assert "x -> ms -> xhat -> m2 -> y -> f" in "\n".join(report.notes)
    for n in (1, 2, 3):
        assert verify_model(model, n).ok


def test_radicand_not_eps_plus_w_is_unknown_with_a_reason():
    report = verify_model(parse(USER_MODELS["layernorm-eps-outside"], "<eps outside>"), "all")
    for cid in ("forward=backward/dx", "forward/dgamma", "backward/dgamma"):
        assert report[cid].verdict == "unknown", str(report)
        assert "eps + w" in report[cid].note
    assert report.exit_code == 3


def test_a_divisor_zero_for_every_n_is_unknown_never_vacuously_proved():
    source = USER_MODELS["layernorm-eps-outside"].replace('"(x[i] - mu)/(sqrt(v) + eps)"',
                                 '"(x[i] - mu)*(v + eps)**(-1/2)/Sum(x[k] - mu, (k, 1, N))"')
    source = source.replace('"dy[j]*xhat[j]"', '"0"')
    report = verify_model(parse(source, "<zero divisor>"), "all")
    assert all(r.verdict != "proved" for r in report if r.id.endswith("dgamma")), str(report)
    assert "identically zero for every N" in report["forward/dgamma"].note


def test_every_n_refuses_sets_and_random():
    with pytest.raises(SymbnError, match="d=1"):
        verify_model("layernorm", "all", d=2)
    with pytest.raises(SymbnError, match="exact"):
        verify_model("layernorm", "all", method="random")


ELEMENTWISE = '''
name = "elementwise"
title = "a square root per element"
[leaves]
x = "element"
eps = "positive"
[nodes]
y = "x[i]*(x[i]**2 + eps)**(-1/2)"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "dy[j]*(x[j]**2 + eps)**(-1/2)"
'''


def test_a_square_root_per_row_is_not_one_symbol():
    """sqrt(x_r^2 + eps) differs from row to row: no single s stands for it (unknown), and
    the wrong closed form (the derivative of the root dropped) is refuted at a concrete N."""
    report = verify_model(parse(ELEMENTWISE, "<elementwise>"), "all")
    assert report["forward=backward/dx"].verdict == "unknown"
    assert "depends on a summed row" in report["forward=backward/dx"].note
    assert report["forward/dx"].verdict == "disproved"


DELTA_IN_A_ROOT = '''
name = "k2"
title = "delta inside a root"
[leaves]
x = "element"
eps = "positive"
[nodes]
w = "Sum(Sum(x[j]*x[k]*sqrt(eps + KroneckerDelta(j, k)), (j, 1, N)), (k, 1, N))"
y = "x[i]*w"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "dy[j]*w + 2*Sum(dy[k]*x[k], (k, 1, N))*w/Sum(x[k], (k, 1, N))"
'''


def test_a_root_of_a_delta_of_summed_rows_is_not_one_symbol():
    """sqrt(eps + delta_jk) is sqrt(eps + 1) on the diagonal and sqrt(eps) off it: one s for
    both made the wrong closed form (w's derivative as if w were a square) proved."""
    report = verify_model(parse(DELTA_IN_A_ROOT, "<delta root>"), "all")
    assert report["forward/dx"].verdict == "disproved", str(report)
    assert "depends on a summed row" in report["forward=backward/dx"].note
    # independently, at N = 2: the derivative of f = dy . y at x = (1, 2), eps = 1/4
    x1, x2, eps = sp.symbols("x1 x2 eps")
    xs = (x1, x2)
    w = sum(a * b * sp.sqrt(eps + (1 if a == b else 0)) for a in xs for b in xs)
    dy, at = (1, 0), {x1: 1, x2: 2, eps: sp.Rational(1, 4)}
    true = sp.diff(sum(d * x * w for d, x in zip(dy, xs)), x1).subs(at)
    claimed = (dy[0] * w + 2 * sum(d * x for d, x in zip(dy, xs)) * w / (x1 + x2)).subs(at)
    assert sp.N(true - claimed, 30) != 0


DIVIDES_BY_THE_SPREAD = '''
name = "spread"
title = "divide by the spread"
[leaves]
x = "element"
gamma = "set"
[nodes]
mu = "Sum(x[k], (k, 1, N))/N"
c = "Sum((x[k] - mu)**2, (k, 1, N))"
y = "gamma*x[i]/c"
[model]
output = "y"
axis = 0
[results]
"D(f, gamma)" = "Sum(dy[k]*x[k], (k, 1, N))/c"
'''


def test_every_n_names_the_sizes_where_the_model_is_undefined():
    """c = sum (x - mu)^2 is identically zero at N = 1: proved 'where both sides are
    defined', and the report says that at N = 1 that is nowhere."""
    report = verify_model(parse(DIVIDES_BY_THE_SPREAD, "spread.toml"), "all")
    assert report.ok, report
    assert any("the model is undefined at N = 1 (a node divides by c, which is identically "
               "zero)" in note for note in report.notes), report.notes
    # and concretely: N = 1 is undefined, N = 2 proved
    one, two = verify_model(parse(DIVIDES_BY_THE_SPREAD, "spread.toml"), 1), \
        verify_model(parse(DIVIDES_BY_THE_SPREAD, "spread.toml"), 2)
    assert not one.ok and all(r.verdict != "proved" for r in one.results if "dgamma" in r.id)
    assert two.ok


SIZED = '''
name = "sized"
title = "a root that changes sign with N"
[leaves]
x = "element"
gamma = "set"
beta = "set"
[nodes]
y = "gamma*x[i]*sqrt(4 - N) + beta"
[model]
output = "y"
axis = 0
[results]
"D(f, beta)" = "Sum(dy[k], (k, 1, N))"
'''


def test_a_node_root_that_changes_sign_with_n_qualifies_every_n():
    """sqrt(4 - N) is imaginary from N = 5 on: 'for every N >= 1' alone would be false."""
    report = verify_model(parse(SIZED, "sized.toml"), "all")
    proved = [r for r in report.results if r.verdict == "proved"]
    assert proved and all("where both sides are defined" in r.note for r in proved), report
    assert any("takes the root of 4 - N" in note for note in report.notes), report.notes
    assert not verify_model(parse(SIZED, "sized.toml"), 5).ok  # and N = 5 is undefined
