"""The one writer of output files: atomic, and never replaces what is not a regular file.

Every command that writes (`latex -o`, `codegen -o`) goes through `target` (checked before any
work is done) and `write`:

- `-` (and `/dev/stdout`) is standard output; binary data is refused on a terminal;
- `/dev/null` is written as the stream it is;
- a directory, device, FIFO or socket is refused, untouched;
- a symlink is followed: the file it points to is replaced atomically and the link kept; a
  dangling link is refused;
- otherwise the data goes to a temporary file beside the target, then `os.replace`, so a
  failure leaves the old file or nothing.  A new file's mode follows the umask; an existing
  file keeps its mode.

>>> target("-").stream
True
>>> target("/tmp")
Traceback (most recent call last):
...
symbn.errors.SymbnError: cannot write /tmp: it is a directory; give a file name such as -o /tmp/out
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from dataclasses import dataclass

from .errors import SymbnError

STDOUT = "-"
_STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")
_STREAMS = ("/dev/null",)


@dataclass(frozen=True)
class Target:
    """Where output goes: `path` as the user wrote it, `real` the file replaced (symlinks
    resolved), or `stream` for standard output and /dev/null."""

    path: str
    real: str
    stream: bool = False

    @property
    def name(self) -> str:
        """How messages name it."""
        return "standard output" if self.real == STDOUT else self.path


def target(path: str | os.PathLike, binary: bool = False) -> Target:
    """Check that `path` can be written; the one-line error names it and the fix."""
    text = os.fspath(path)
    if text == STDOUT or os.path.abspath(text) in _STDOUT_NAMES:
        if binary and sys.stdout.isatty():
            raise SymbnError(f"cannot write {text}: binary output to a terminal; redirect "
                             "it (-o - > out.pdf) or give a file name")
        return Target(text, STDOUT, stream=True)
    if os.path.abspath(text) in _STREAMS:
        return Target(text, os.path.abspath(text), stream=True)
    real = os.path.realpath(text)
    if os.path.islink(text) and not os.path.lexists(real):
        raise SymbnError(f"cannot write {text}: it is a symlink to {os.readlink(text)}, which "
                         "does not exist; create the target or remove the link")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise SymbnError(f"cannot write {text}: {err.strerror}; choose another path") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = _kind(mode)
        hint = f"give a file name such as -o {text.rstrip('/')}/out" if stat.S_ISDIR(mode) \
            else "use -o - for standard output, or give a regular file"
        raise SymbnError(f"cannot write {text}: it is {kind}; {hint}")
    parent = os.path.dirname(real) or "."
    if not os.path.isdir(parent):
        raise SymbnError(f"cannot write {text}: directory {os.path.dirname(text) or '.'} does "
                         "not exist; create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SymbnError(f"cannot write {text}: directory {parent} is not writable; "
                         "choose another path")
    return Target(text, real)


def write(path: str | os.PathLike | Target, data: str | bytes) -> Target:
    """Write `data` (text is UTF-8) to `path` as described above; returns where it went.

    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write(out, "x = 1\\n").name == str(out), out.read_text()
    (True, 'x = 1\\n')
    """
    where = path if isinstance(path, Target) else target(path, isinstance(data, bytes))
    if isinstance(data, str):
        data = data.encode("utf-8")
    if where.real == STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return where
    if where.stream:
        with open(where.real, "wb") as fh:
            fh.write(data)
        return where
    _replace(where, data)
    return where


def _replace(where: Target, data: bytes) -> None:
    parent = os.path.dirname(where.real) or "."
    base = os.path.basename(where.real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise SymbnError(f"cannot write {where.path}: {err.strerror}; choose another "
                         "path") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode(where.real))
        # checked again just before the rename: the target may have changed since `target`
        mode = _existing_mode(where.real)
        if mode is not None and not stat.S_ISREG(mode):
            raise SymbnError(f"cannot write {where.path}: it is {_kind(mode)}; give a "
                             "regular file")
        os.replace(tmp, where.real)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise SymbnError(f"cannot write {where.path}: {err.strerror or err}; choose "
                             "another path") from None
        raise


def _mode(path: str) -> int:
    """An existing file's permission bits, or what the umask gives a new file."""
    mode = _existing_mode(path)
    if mode is not None:
        return stat.S_IMODE(mode)
    umask = os.umask(0o22)
    os.umask(umask)
    return 0o666 & ~umask


def _existing_mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
