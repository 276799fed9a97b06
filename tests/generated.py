"""Generated modules in the tests: written to a file and imported like a user's, and their
text checked by ruff."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUFF = shutil.which("ruff") or (f"{sys.executable} -m ruff"
                                if importlib.util.find_spec("ruff") is not None else None)
needs_ruff = pytest.mark.skipif(RUFF is None, reason="ruff not installed")


def load_module(path: Path, source: str | None = None) -> ModuleType:
    """The module at `path` (written first when `source` is given), imported by its file."""
    path = Path(path)
    if source is not None:
        path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_ruff_clean(paths) -> None:
    run = subprocess.run([*RUFF.split(), "check", "--no-cache", *map(str, paths)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
