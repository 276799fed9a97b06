"""The one output writer (symbn.io) and the command line around it: what -o may replace, the
stream targets, symlinks, modes; start-up without SymPy; Ctrl-C."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symbn import io
from symbn.errors import SymbnError

REPO = Path(__file__).resolve().parents[1]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def symbn(*args, **kw):
    kw.setdefault("cwd", REPO)
    return subprocess.run([sys.executable, "-m", "symbn", *args], capture_output=True,
                          timeout=300, **kw)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# -- regular files ------------------------------------------------------------------------------

def test_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        io.write(tmp_path / "a.py", "x = 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.py").read_text() == "x = 1\n"
    assert stat.S_IMODE((tmp_path / "a.py").stat().st_mode) == 0o640
    assert _no_temp_files(tmp_path)


def test_existing_file_keeps_its_mode(tmp_path):
    out = tmp_path / "a.py"
    out.write_text("old")
    out.chmod(0o600)
    io.write(out, b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_failed_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "a.py"
    out.write_text("old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(SymbnError, match="No space left on device"):
        io.write(out, "new")
    assert out.read_text() == "old" and _no_temp_files(tmp_path)


# -- what is not a regular file -----------------------------------------------------------------

def test_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.py"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to("real.py")
    where = io.write(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.py"
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o640
    assert where.name == str(link) and where.real == str(real)


def test_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.py"
    link.symlink_to("missing/real.py")
    with pytest.raises(SymbnError, match="symlink to missing/real.py, which does not exist"):
        io.write(link, "x")
    assert link.is_symlink() and not link.exists()


def test_fifo_is_refused_untouched(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SymbnError, match=r"it is a FIFO \(named pipe\); use -o -"):
        io.write(fifo, "x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_socket_is_refused_untouched(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(SymbnError, match="it is a socket"):
            io.write(path, "x")
    assert stat.S_ISSOCK(path.lstat().st_mode)


def test_directory_is_refused(tmp_path):
    with pytest.raises(SymbnError, match="it is a directory; give a file name"):
        io.write(tmp_path, "x")


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(SymbnError, match="directory .*nope does not exist"):
        io.target(tmp_path / "nope" / "a.py")


@pytest.mark.skipif(ROOT, reason="root writes into a read-only directory")
def test_read_only_directory_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(SymbnError, match="is not writable"):
            io.write(folder / "a.py", "x")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_read_only_directory_as_root_gets_no_temp_file_left(tmp_path, monkeypatch):
    """As root the permission check passes; a failing temp file must still be one line."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    with pytest.raises(SymbnError, match="cannot write .*a.py: Permission denied"):
        io.write(tmp_path / "a.py", "x")
    assert list(tmp_path.iterdir()) == []


def test_device_node_is_refused_untouched(tmp_path):
    if not ROOT:
        pytest.skip("making a device node needs root")
    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError as err:
        pytest.skip(f"mknod refused here: {err.strerror}")
    for command in (["codegen", "-o", str(node)], ["latex", "--n", "2", "-o", str(node)]):
        run = symbn(*command)
        assert run.returncode == 2 and run.stdout == b""
        assert run.stderr.decode().startswith(f"symbn: error: cannot write {node}: it is a "
                                              "device")
        assert stat.S_ISCHR(node.lstat().st_mode)


def test_dev_null_is_written_as_a_stream():
    where = io.write("/dev/null", "x")
    assert where.stream and stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- standard output ----------------------------------------------------------------------------

def test_dash_writes_to_stdout(capfdbinary):
    where = io.write("-", "hello\n")
    assert where.name == "standard output" and capfdbinary.readouterr().out == b"hello\n"


def test_binary_to_a_terminal_is_refused(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with pytest.raises(SymbnError, match="binary output to a terminal"):
        io.target("-", binary=True)
    assert io.target("-").stream  # text is fine


def test_cli_codegen_to_stdout_is_the_module(tmp_path):
    run = symbn("codegen", "-o", "-", cwd=tmp_path)
    assert run.returncode == 0 and list(tmp_path.iterdir()) == []
    assert b"def batchnorm_backward(" in run.stdout
    assert run.stderr.decode().startswith("wrote standard output (batchnorm, numpy, any N")
    saved = tmp_path / "from_stdout.py"
    saved.write_bytes(run.stdout)
    code = ("import from_stdout as m, numpy as np; dx, dg, db = m.batchnorm_backward("
            "np.ones((3, 2)), np.arange(6.0).reshape(3, 2), np.ones(2)); print(db.tolist())")
    check = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert check.stdout.strip() == "[3.0, 3.0]", check.stderr


def test_cli_latex_to_stdout_is_tex_and_through_a_symlink(tmp_path):
    run = symbn("latex", "--n", "2", "-o", "-", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith(b"\\documentclass")
    real = tmp_path / "doc.tex"
    real.write_text("old")
    (tmp_path / "link.tex").symlink_to("doc.tex")
    run = symbn("latex", "--n", "2", "-o", str(tmp_path / "link.tex"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "link.tex").is_symlink() and real.read_text().startswith("\\documentclass")


def test_cli_refuses_before_proving(tmp_path):
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "symbn", "codegen", "-o",
                          str(fifo)], capture_output=True, cwd=REPO, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.decode().splitlines()
    errors = [ln for ln in lines if not ln.startswith("import time:")]
    assert errors == [(f"symbn: error: cannot write {fifo}: it is a FIFO (named pipe); use "
                       "-o - for standard output, or give a regular file")]
    assert not [ln for ln in lines if ln.startswith("import time:") and "sympy" in ln]


# -- start-up -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--help"], ["verify", "--help"], ["--version"], ["verify", "--n", "0"],
    ["verify", "--n", "5000"], ["verify", "--n", "all", "--d", "2"], ["frobnicate"],
    ["check", "batchnorm", "--n", "1000000"], ["latex", "-o", "out.docx"],
    ["codegen", "--target", "cuda", "-o", "x.py"],
])
def test_help_and_usage_errors_import_no_sympy_numpy_or_flint(argv):
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "symbn", *argv],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    loaded = {ln.split("|")[-1].strip() for ln in run.stderr.splitlines()
              if ln.startswith("import time:")}
    heavy = {m for m in loaded if m.split(".")[0] in ("sympy", "numpy", "flint", "mpmath")}
    assert "symbn.cli" in loaded and heavy == set()
    assert run.returncode in (0, 2)


def test_package_names_load_on_first_use_and_stay_functions():
    code = ("import sys, symbn; assert 'sympy' not in sys.modules; "
            "import symbn.check, symbn.verify; "
            "assert callable(symbn.check) and callable(symbn.verify); "
            "assert symbn.check.__module__ == 'symbn.check'; "
            "assert sys.modules['symbn.check'].check is symbn.check; "
            "assert symbn.verify(n=2).ok; assert set(symbn.__all__) <= set(dir(symbn)); "
            "assert all(getattr(symbn, name) is not None for name in symbn.__all__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import symbn
        symbn.nope  # noqa: B018


# runs the rest of its arguments as a Python command line, with SIGINT's default action
DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


@pytest.mark.parametrize("delay", [0.15, 1.5])
def test_ctrl_c_is_one_line_and_exit_130(delay):
    """Interrupted while SymPy is imported (0.15 s) and while proving (1.5 s).  symbn gets
    SIGINT's default disposition, as a command typed at a terminal has: started from a
    shell's background job (`pytest &`), it would inherit the job's "ignore SIGINT"."""
    proc = subprocess.Popen([sys.executable, "-c", DEFAULT_SIGINT, "-m", "symbn", "verify",
                             "--n", "400"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "symbn: interrupted\n" and out == ""


def test_closed_stdout_pipe_is_quiet_exit_141():
    """`symbn verify | head -1`: the reader leaves early; no traceback, no internal error."""
    proc = subprocess.Popen([sys.executable, "-m", "symbn", "verify", "--n", "3"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141 and err == b""
