"""README's transcripts are real: every `$ symbn …` command shown with its output is run, in
order, in a scratch directory holding the repository's example files, and its output must
match what README prints, timings aside.

A line `...` or `…` in README's output stands for any number of lines; `$ cat F` followed by
the file's text defines F for the commands after it; `; echo $?` and `$ echo $?` print the exit
code. The small files README describes in a comment (`# claim = "x[m] = x[1]"`) or in prose (a
dangling link, a FIFO) are made here. A command is skipped only when it describes another
machine, needs what this one lacks (pdflatex, torch), or names an input that none of this
provides.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEMO = "/tmp/demo"  # where README's runs of check-impl were made (paths in its output)
ELLIPSIS = {"...", "…"}
OTHER_MACHINE = ("on a machine without",)


@dataclass
class Command:
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    defines: str | None = None  # `$ cat F`: F's text is `expected`


def transcripts(text: str) -> list[Command]:
    """The commands of README's ``` blocks, with the output lines that follow each."""
    commands: list[Command] = []
    block = False
    current: Command | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            block, current = not block, None
            continue
        if not block:
            continue
        if line.startswith("$ "):
            current = Command(number, line[2:])
            cat = re.fullmatch(r"cat (\S+)", current.text)
            current.defines = cat.group(1) if cat else None
            commands.append(current)
        elif current is not None:
            current.expected.append(line)
    return [c for c in commands if c.text.startswith(("symbn ", "cat ", "echo $?"))]


def normalise(line: str, scratch: str) -> str:
    line = line.replace(scratch, DEMO).rstrip()
    line = re.sub(r"\b\d+\.\d+s\b", "<t>s", line)  # a verdict's seconds
    line = re.sub(r"checked in \d+\.\d s, \d+\.\d s in all", "checked in <t>", line)
    return re.sub(r'"seconds": [0-9.e-]+', '"seconds": <t>', line)


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` is `expected` with each ellipsis line standing for any lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() in ELLIPSIS:
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and actual[0] == head and matches(rest, actual[1:])


def inputs(command: str) -> list[str]:
    """The files a command reads: .toml and .py names that are not its -o target."""
    words = re.sub(r"-o \S+", "", command.split("#")[0]).split()
    return [w.split(":")[0] for w in words if re.match(r"[\w./-]+\.(toml|py)(:\w+)?$", w)]


def _step(sid: str, claim: str) -> str:
    return f'title = "t"\nmodel = "batchnorm"\n[[step]]\nid = "{sid}"\nclaim = "{claim}"\n'


# the files README names in a comment or its prose (the refused inputs, the output targets)
FILES = {
    "bad.toml": _step("dv", "__import__('os').getpid() = 1"),
    "row.toml": _step("a", "x[m] = x[1]"),
    "equals.toml": _step("a", "x[1] == x[1]"),
    "second.toml": _step("d2f", "D(D(f, beta), beta) = 0"),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "derivations", root / "derivations")
    shutil.copytree(REPO / "tests" / "models", root / "tests" / "models")
    for impl in (REPO / "tests" / "impls").glob("*.py"):  # README's check-impl examples
        shutil.copy(impl, root / impl.name)
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "dangling.py").symlink_to("missing/gone.py")
    os.mkfifo(root / "pipe.py")
    return root


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


COMMANDS = transcripts(README.read_text(encoding="utf-8"))


def test_readme_has_transcripts_to_check():
    assert len(COMMANDS) >= 40 and sum(c.text.startswith("symbn ") for c in COMMANDS) >= 35


def test_the_matcher_is_strict():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "…"], ["a"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert normalise("  x  proved       0.011s  exact", "/s") == \
        normalise("  x  proved       2.500s  exact", "/s")


def test_readme_transcripts(scratch):
    """Every runnable transcript in README order (later commands read earlier outputs)."""
    unavailable = []  # what this machine lacks: those transcripts cannot be reproduced here
    if shutil.which("pdflatex") is None:
        unavailable.append(re.compile(r"-o \S+\.pdf\b"))
    try:
        import torch  # noqa: F401
    except ImportError:
        unavailable.append(re.compile(r"\btorch_impls\.py"))
    failures, ran, last_rc = [], 0, 0
    for c in COMMANDS:
        if c.defines:
            (scratch / c.defines).write_text("\n".join(c.expected).rstrip("\n") + "\n")
            continue
        if c.text == "echo $?":
            if last_rc is not None and c.expected != [str(last_rc)]:
                failures.append(f"README line {c.line}: exit code {last_rc}, README {c.expected}")
            continue
        if any(m in c.text for m in OTHER_MACHINE) or any(u.search(c.text) for u in unavailable) \
                or any(not (scratch / f).exists() for f in inputs(c.text)):
            last_rc = None
            continue
        run = subprocess.run(c.text.split(" #")[0], shell=True, cwd=scratch, env=_env(),
                             capture_output=True, text=True, timeout=600)
        last_rc = run.returncode
        ran += 1
        actual = [normalise(x, str(scratch)) for x in (run.stderr + run.stdout).splitlines()]
        expected = [normalise(x, str(scratch)) for x in c.expected]
        while expected and not expected[-1]:
            expected.pop()
        if not matches(expected, actual):
            failures.append(f"README line {c.line}: $ {c.text}\n  README:\n    "
                            + "\n    ".join(expected) + "\n  got:\n    " + "\n    ".join(actual))
    assert ran >= (30 if not unavailable else 15), f"only {ran} transcripts ran"
    assert not failures, "\n".join(failures)
