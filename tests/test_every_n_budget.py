"""The time budget of `--n all`: a step past its deadline is `unknown`, never decided later.

The concrete fallback (`symbn.stepcheck.check_steps` at N = min_n..min_n+3) catches `Budget`
into an `unknown` result; it used to run without a deadline, so the step's alarm, caught
there, was spent and the next sizes ran unbounded (91 s against a 15 s budget).
"""

import contextlib
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

import symbn.stepcheck
from symbn import every_n_steps, general
from symbn.derivation import parse
from symbn.models import load as load_model
from symbn.prove import UNKNOWN, Algebra, Budget, alarm
from symbn.prove.budget import Rang
from symbn.report import Result

REPO = Path(__file__).resolve().parents[1]

# disproved at N = 4 after about 90 s without the fix; N = 2 alone takes several seconds
SLOW = '''title = "slow concrete fallback"
model = "batchnorm"

[[step]]
id = "slow"
claim = """sqrt(D(D(sqrt(sigma)*xhat[j]*x[j]*beta, x[i]), x[j])**2) \\
         = D(D(sqrt(sigma)*xhat[j]*x[j]*beta, x[i]), x[j])"""
'''


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_caught_ring_under_alarm_none_rearms_the_enclosing_alarm():
    with pytest.raises(Budget), alarm(time.monotonic() + 0.2):
        with contextlib.suppress(Budget), alarm(None):
            _spin(10)
        _spin(10)
        pytest.fail("the enclosing alarm was silenced by an inner `except Budget`")


def test_alarm_none_without_enclosing_alarm_is_inert():
    with alarm(None):
        _spin(0.01)


def test_algebra_decide_passes_the_ring_on(monkeypatch):
    from symbn.model import BatchNorm

    alg = Algebra(BatchNorm(2))
    x1, x2 = BatchNorm(2).x(1), BatchNorm(2).x(2)

    def rang(*args):
        raise Rang

    monkeypatch.setattr(Algebra, "difference", rang)
    with pytest.raises(Rang):
        alg.decide(x1, x2)

    def too_large(*args):
        raise Budget("a product exceeds the size budget")

    monkeypatch.setattr(Algebra, "difference", too_large)
    assert alg.decide(x1, x2).verdict == UNKNOWN


def test_concrete_fallback_gets_the_deadline_and_stops(monkeypatch):
    calls = []

    def swallowing(d, n, timeout=None, all_assignments=None):
        calls.append((n, timeout))
        with contextlib.suppress(Budget):  # as the concrete checker does
            _spin(5)
        return [Result(d.steps[0].id, UNKNOWN, "exact", 0.0, note="time budget exhausted")]

    monkeypatch.setattr(symbn.stepcheck, "check_steps", swallowing)
    d = parse('title = "t"\nmodel = "layernorm"\n[[step]]\nid = "a"\n'
              'claim = "D(mu, x[j]) = 2/N"')
    result = every_n_steps.check_all(d, timeout=1)["a"]
    assert result.verdict == UNKNOWN
    assert "time budget exhausted" in result.note
    assert len(calls) == 1, "a size past the deadline was tried"
    assert calls[0][1] is not None and calls[0][1] <= 1


def _with_model_file(d):
    return dataclasses.replace(d, spec=load_model("batchnorm"))


@pytest.mark.parametrize("check_all", [
    general.check_all,
    lambda d, timeout: every_n_steps.check_all(_with_model_file(d), timeout),
], ids=["general", "every_n_steps"])
def test_slow_step_is_unknown_within_its_budget(check_all):
    report = check_all(parse(SLOW), timeout=1)
    result = report["slow"]
    assert result.verdict == UNKNOWN
    assert result.note == "time budget exhausted"
    assert report.info["seconds"] < 30


def test_cli_slow_step_is_unknown(tmp_path):
    path = tmp_path / "slow.toml"
    path.write_text(SLOW)
    run = subprocess.run([sys.executable, "-m", "symbn", "check", str(path), "--n", "all",
                          "--timeout", "1"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 3, run.stdout + run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("  slow"))
    assert line.split()[1] == UNKNOWN and "time budget exhausted" in line
