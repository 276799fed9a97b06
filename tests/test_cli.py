"""The command line: exit codes, one-line errors, JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def symbn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symbn", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


BAD_INPUTS = [
    (["verify", "--n", "0"], "--n must be a positive integer"),
    (["verify", "--n", "-3"], "--n must be a positive integer"),
    (["verify", "--n", "abc"], "--n must be a positive integer"),
    (["verify", "--n", "2.5"], "--n must be a positive integer"),
    (["verify", "--d", "0"], "--d must be a positive integer"),
    (["verify", "--n", "1000000"], "beyond the exact method"),
    (["verify", "--n", "5000"], "--timeout"),
    (["verify", "--timeout", "-1"], "--timeout must be a positive number"),
    (["verify", "--timeout", "nan"], "--timeout must be a positive number"),
    (["verify", "--bogus"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) or "none"
                                                          for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(args, message):
    run = symbn(*args, timeout=60)
    assert run.returncode == 2, (args, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symbn: error: "), run.stderr
    assert message in lines[0]
    assert run.stdout == ""


def test_verify_n1_is_a_valid_batch():
    run = symbn("verify", "--n", "1")
    assert run.returncode == 0, run.stderr
    assert "proved" in run.stdout and "disproved" not in run.stdout


def test_verify_json_document():
    run = symbn("verify", "--n", "3", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["ok"] is True and doc["n"] == 3
    assert {"forward/dx", "backward/dx", "forward/dgamma", "backward/dbeta"} <= \
        {r["id"] for r in doc["results"]}
    for r in doc["results"]:
        assert r["verdict"] in ("proved", "disproved", "unknown")
        assert isinstance(r["seconds"], float) and r["method"]


def test_matrix_form_from_cli():
    run = symbn("verify", "--n", "3", "--d", "2")
    assert run.returncode == 0, run.stderr
    assert "columns/independent" in run.stdout and "matrix/dX" in run.stdout


def test_exhausted_budget_is_unknown_exit_3():
    run = symbn("verify", "--n", "40", "--timeout", "0.01", "--json")
    assert run.returncode == 3, run.stderr
    doc = json.loads(run.stdout)
    verdicts = {r["verdict"] for r in doc["results"]}
    assert "unknown" in verdicts and "disproved" not in verdicts and doc["ok"] is False


def test_help_is_fast_and_clean():
    run = symbn("--help")
    assert run.returncode == 0 and "verify" in run.stdout
