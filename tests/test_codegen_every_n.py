"""The generated code of every model proved for symbolic N (symbn.codegen.model_every_n): the
header says so, and a plan that is right at N = 1..6 but wrong beyond is refused."""

import dataclasses
from fractions import Fraction

import pytest
import sympy as sp
from model_fixtures import USER_MODELS

from symbn import SymbnError
from symbn.codegen import model_plan as MP
from symbn.codegen.model_every_n import prove_plan_every_n
from symbn.models import load, shipped

ROW_MODELS = [m for m in shipped() if m != "batchnorm"]
# 1 at N = 1..6, not at N = 7: invisible to the concrete proofs
BUMP = 1 + sp.Mul(*[MP.N - k for k in range(1, 7)])


@pytest.mark.parametrize("name", ROW_MODELS)
def test_every_shipped_plan_is_proved_for_symbolic_n(name):
    m = load(name)
    lines = prove_plan_every_n(MP.model_plan(m))
    assert lines[0].startswith(f"every N >= {m.min_n} (symbolic N")
    assert "outside" not in "\n".join(lines)


def test_the_generated_module_records_the_symbolic_n_proof():
    from symbn.codegen import generate

    text = generate("numpy", model="rmsnorm")
    assert "every N >= 1 (symbolic N, canonical form over QQ" in text
    assert "not yet proved" not in text and "outside the fragment" not in text


def _bumped(plan, leaf):
    return dataclasses.replace(plan, outputs={**plan.outputs,
                                              leaf: plan.outputs[leaf] * BUMP})


@pytest.mark.parametrize("name, leaf", [("layernorm", "x"), ("rmsnorm", "gamma"),
                                        ("batchnorm-unbiased", "beta"), ("layernorm", "y")])
def test_a_plan_wrong_only_beyond_n_6_passes_the_concrete_proofs_and_is_refused(name, leaf):
    plan = MP.model_plan(load(name))
    wrong = _bumped(plan, leaf)
    # independently: the bumped output equals the plan's at N = 6, and differs at N = 7
    for n, same in [(6, True), (7, False)]:
        g = load(name).instantiate(n)
        point = {s: Fraction(k + 2, k + 3) for k, s in enumerate(sorted(g.leaves, key=str))}
        a = g.evaluate(MP.instantiate(plan, g, MP.computed(plan, leaf), 1), point)
        b = g.evaluate(MP.instantiate(wrong, g, MP.computed(wrong, leaf), 1), point)
        assert (a == b) is same and a != 0
    with pytest.raises(SymbnError, match="not proved equal to the closed form for symbolic N"):
        prove_plan_every_n(wrong)


def test_a_user_model_outside_the_fragment_keeps_its_concrete_proofs(tmp_path):
    # RMSNorm over sqrt(ms + eps**2): the radicand is not linear in a positive leaf, so the
    # every-N form has no s with eps = (s^2 - w)/a; the concrete proofs (N = 1..6) stand alone
    source = shipped()["rmsnorm"].read_text().replace("ms + eps", "ms + eps**2")
    lines = [line for line in source.splitlines() if not line.startswith('"D(f, eps)"')]
    path = tmp_path / "rms-eps-squared.toml"
    path.write_text("\n".join(lines).replace('name = "rmsnorm"', 'name = "rms-eps-squared"'))
    plan = MP.model_plan(load(str(path)))
    assert prove_plan_every_n(plan) is None
    assert "outside the fragment" in MP.prove_all_n(plan)[0]


def test_a_user_model_inside_the_fragment_is_proved(tmp_path):
    path = tmp_path / "gemma.toml"
    path.write_text(USER_MODELS["gemma-rmsnorm"])
    lines = prove_plan_every_n(MP.model_plan(load(str(path))))
    assert lines is not None and lines[0].startswith("every N >= 1")
