"""A short run of the differential fuzzer (scripts/fuzz_soundness.py): random claims, true and
near-miss false, checked at concrete N and for every N, each verdict re-checked by the
independent oracle; any `proved` it refutes, any witness that does not separate the sides
where they are defined, any crash or hang fails the test.  BatchNorm, then each row model
(LayerNorm, RMSNorm, BatchNorm with the unbiased variance) with its own grammar."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_soundness.py"


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_soundness", SCRIPT)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    return fuzz


def test_random_claims_agree_with_the_oracle(capsys):
    status = _fuzz().main(["--seed", "5", "--max-claims", "60", "--alarm", "120"])
    out = capsys.readouterr().out
    assert "60 claims (seed 5)" in out
    assert status == 0, out


@pytest.mark.parametrize("model, claims", [("layernorm", 45), ("rmsnorm", 60),
                                           ("batchnorm-unbiased", 60)])
def test_random_row_model_claims_agree_with_the_oracle(model, claims, capsys):
    status = _fuzz().main(["--model", model, "--seed", "5", "--max-claims", str(claims),
                           "--timeout", "5", "--alarm", "120"])
    out = capsys.readouterr().out
    assert f"{claims} claims (seed 5) about {model}" in out
    assert status == 0, out


def test_row_grammars_make_claims_of_their_model():
    """Every row grammar's claims name only that model's names (no bare gamma in LayerNorm,
    no mu in RMSNorm), and its mutations include the row-specific near misses."""
    import random

    fuzz = _fuzz()
    for model, banned in [("layernorm", ("gamma ", "gamma)", "gamma*", "ms")),
                          ("rmsnorm", ("mu", "beta", "v +", "gamma ", "gamma)")),
                          ("batchnorm-unbiased", ("gamma[", "ms"))]:
        g = fuzz.GRAMMARS[model]
        rng = random.Random(1)
        kinds = set()
        for _ in range(400):
            case = fuzz.generate(rng, g)
            assert not any(b in case["claim"] for b in banned), (model, case["claim"])
            kinds.update(case["mutations"])
        assert {"along-row", "along-out", "ms-v"} & kinds, (model, kinds)
