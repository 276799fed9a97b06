"""A short run of the differential fuzzer (scripts/fuzz_soundness.py): random claims, true and
near-miss false, checked at N = 1..4 and for every N, each verdict re-checked by the
independent oracle; any `proved` it refutes, any witness that does not separate the sides
where they are defined, any crash or hang fails the test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_soundness.py"


def test_random_claims_agree_with_the_oracle(capsys):
    spec = importlib.util.spec_from_file_location("fuzz_soundness", SCRIPT)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    status = fuzz.main(["--seed", "5", "--max-claims", "60", "--alarm", "120"])
    out = capsys.readouterr().out
    assert "60 claims (seed 5)" in out
    assert status == 0, out
