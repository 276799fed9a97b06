"""Budgets: a claim too large to decide is `unknown`, never a hang and never `proved`."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from symbn.prove import Budget, alarm

REPO = Path(__file__).resolve().parents[1]

HEAVY = '''title = "heavy"
model = "batchnorm"

[[step]]
id = "heavy"
claim = "Sum((x[i] - mu)**4, (i, 1, N))**6 = Sum((mu - x[i])**4, (i, 1, N))**6"

[[step]]
id = "light"
claim = "D(v, x[j]) = 2/N*(x[j] - mu)"
'''


def test_alarm_interrupts_python_work():
    with pytest.raises(Budget), alarm(time.monotonic() + 0.2):
        while True:
            pass


@pytest.mark.parametrize("extra", [[], ["--timeout", "5"]])
def test_oversized_claim_is_unknown_exit_3(tmp_path, extra):
    path = tmp_path / "heavy.toml"
    path.write_text(HEAVY)
    run = subprocess.run([sys.executable, "-m", "symbn", "check", str(path), "--n", "30",
                          *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stdout + run.stderr
    lines = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()
             if line.startswith(("  heavy", "  light"))}
    assert lines == {"heavy": "unknown", "light": "proved"}
