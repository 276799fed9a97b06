"""LaTeX output formats and the PDF compiler: pdflatex, run twice in a private directory.

No SymPy here: the command line checks `-o` before the document is built.

>>> check_output("-")[1]
'tex'
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import SymbnError
from .io import STDOUT, Target, target

FORMATS = ("tex", "pdf")


def check_output(path: str | os.PathLike, fmt: str | None = None) -> tuple[Target, str]:
    """The output target and its format ('tex' or 'pdf'), refused early (one-line error)
    unless it can be written.  `-` is standard output (LaTeX source unless fmt is 'pdf').

    >>> check_output("out.docx")
    Traceback (most recent call last):
    ...
    symbn.errors.SymbnError: cannot write out.docx: the output must end in .tex or .pdf; try -o out.pdf
    >>> check_output("-")[1]
    'tex'
    """
    text = os.fspath(path)
    suffix = Path(text).suffix.lower().lstrip(".")
    where = target(text)
    if fmt is None:
        if suffix in FORMATS:
            fmt = suffix
        elif where.stream:
            fmt = "tex"
        else:
            raise SymbnError(f"cannot write {text}: the output must end in .tex or .pdf; "
                             "try -o out.pdf")
    if fmt not in FORMATS:
        raise SymbnError(f"unknown format {fmt!r}; use tex or pdf")
    if fmt == "pdf":
        where = target(text, binary=True)
    if fmt == "pdf" and pdflatex() is None:
        hint = f"-o {Path(text).with_suffix('.tex').name}" if text != STDOUT else "-o -"
        raise SymbnError(f"cannot write {text}: pdflatex is not installed; install TeX Live "
                         "(apt-get install texlive-latex-base texlive-latex-recommended "
                         f"texlive-pictures) or write the source with {hint}")
    return where, fmt


def pdflatex() -> str | None:
    """The pdflatex executable, or None."""
    return shutil.which("pdflatex")


def compile_pdf(tex: str, timeout: float = 180) -> bytes:
    """The PDF of a LaTeX source, compiled twice so references resolve."""
    exe = pdflatex()
    if exe is None:
        raise SymbnError("pdflatex is not installed; install TeX Live (apt-get install "
                         "texlive-latex-base texlive-latex-recommended texlive-pictures) "
                         "or write the .tex source")
    with tempfile.TemporaryDirectory(prefix="symbn-latex-") as tmp:
        Path(tmp, "doc.tex").write_text(tex, encoding="utf-8")
        for _ in range(2):
            try:
                run = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error",
                                      "-no-shell-escape", "doc.tex"], check=False, cwd=tmp,
                                     capture_output=True, timeout=timeout,
                                     stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise SymbnError(f"pdflatex took more than {timeout:.0f} s; "
                                 "write the .tex source instead") from None
            log = Path(tmp, "doc.log").read_text(encoding="latin-1", errors="replace") \
                if Path(tmp, "doc.log").exists() else ""
            if run.returncode != 0:
                first = next((ln for ln in log.splitlines() if ln.startswith("!")),
                             f"exit status {run.returncode}")
                raise SymbnError(f"pdflatex failed: {first[:200]}; write the .tex source "
                                 "and run pdflatex on it to see the full log")
        if re.search(r"undefined references|Reference .* undefined", log):
            raise SymbnError("pdflatex reported undefined references; "
                             "write the .tex source to inspect them")
        return Path(tmp, "doc.pdf").read_bytes()
