"""The path a call of the user's code takes: the arcs between its bytecode instructions and
the function each of its calls ran.  A proof by the exact trace covers the path the object
arrays took, and the float64 calls that confirm it must not take an arc or make a call that
path never did (a branch on the dtype, a compiled fast path with a Python fallback, a
kernel picked from a dict by the dtype, a cache hit).

Frames of installed packages (site-packages: NumPy, whose `mean` tests the dtype, numba's
compiler), of symbn, SymPy and of the standard library are not followed: their paths differ
between object and float arrays by design, and following them would slow the trace.

>>> def f(x):
...     if isinstance(x, float):
...         return x * 2
...     return x + x
>>> with Paths(own_files(f)) as a:
...     _ = f(1)
>>> with Paths(own_files(f)) as b:
...     _ = f(1.0)
>>> first_new(b, a)
'went from <doctest symbn.impl.paths[0]>:2 to line 3'
>>> def g(x):
...     return x * 2 if isinstance(x, float) else x + x
>>> with Paths(own_files(g)) as a:
...     _ = g(1)
>>> with Paths(own_files(g)) as b:
...     _ = g(1.0)
>>> first_new(b, a)
'took another branch in <doctest symbn.impl.paths[4]>:2'
"""

from __future__ import annotations

import dis
import os
import sys
import sysconfig
import threading
import warnings
from typing import Self

import mpmath
import numpy as np
import sympy as sp

_SKIP = tuple(os.path.dirname(os.path.abspath(p)) + os.sep for p in (
    os.path.dirname(__file__), np.__file__, sp.__file__, mpmath.__file__))
_STDLIB = tuple({os.path.abspath(sysconfig.get_paths()[k]) + os.sep
                 for k in ("stdlib", "platstdlib")})
# an arc's start when the frame starts, its end when the frame returns or an exception
# leaves it (bytecode offsets are >= 0); a call's end is (_CALLED, the function it ran)
_START, _RETURN, _UNWIND, _CALLED = -1, -2, -3, "called"
_CALLS = {dis.opmap[name] for name in ("CALL", "CALL_FUNCTION_EX") if name in dis.opmap}
# a callee in symbn.impl is the exact scalar's arithmetic, where floats run NumPy's C loops
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_WARNINGS = warnings.__file__


def _followed(path: str) -> bool:
    if path.startswith("<"):  # code made by exec or compile: followed when a user's frame
        return False         # runs it (Paths._call), not when a library's does
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    return not (path.startswith(_SKIP + _STDLIB) or "site-packages" in parts
                or "dist-packages" in parts)


def own_files(function) -> tuple[str, ...]:
    """The file of `function`'s code, and the top-level package directory it is in when
    installed (site-packages/mypkg/...): followed wherever they are."""
    code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
    if code is None:
        return ()
    if code.co_filename.startswith("<"):  # defined by exec, in a doctest
        return (code.co_filename,)
    path = os.path.abspath(code.co_filename)
    parts = path.split(os.sep)
    for where in ("site-packages", "dist-packages"):
        if where in parts[:-2]:
            k = len(parts) - 1 - parts[::-1].index(where)
            return (path, os.sep.join(parts[:k + 2]) + os.sep)
    return (path,)


class Paths:
    """A context in which every arc the user's frames run is added to `arcs`: (code, from,
    to) between bytecode offsets of one code object (file, first line, name), so that a
    branch inside one line (`a if c else b`) counts; `lines` maps (code, offset) to its
    line."""

    def __init__(self, own: tuple[str, ...] = ()):
        self.arcs: set[tuple[tuple, int, int]] = set()
        self.lines: dict[tuple[tuple, int], int] = {}
        self.lost = False  # tracing was turned off inside (sys.settrace(None), a frame's
        #                    f_trace_opcodes = False): arcs missing
        self.own = own
        self._files: dict[str, bool] = {}
        self._codes: set = set()  # the code objects of the frames followed
        self._open: set = set()  # the followed frames that have not returned
        self._pending: dict = {}  # id(frame) -> (code, offset) of the call it is making

    def __enter__(self) -> Self:
        global _ACTIVE
        self._previous = sys.gettrace()
        self._previous_threads = threading.gettrace()
        _ACTIVE = self
        sys.settrace(_dispatch)
        threading.settrace(_dispatch)  # threads started inside (a pool's workers)
        return self

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        # a frame that never returned had its tracing turned off (frame.f_trace = None), as
        # has every frame after sys.settrace(None): their arcs are missing
        self.lost = self.lost or sys.gettrace() is not _dispatch or bool(self._open)
        _ACTIVE = None
        sys.settrace(self._previous)
        threading.settrace(self._previous_threads)

    def _call(self, frame, event, arg):
        if frame.f_code.co_filename == _WARNINGS:  # a warning raised in C code: no call
            return None
        caller = frame.f_back
        site = None if caller is None else self._pending.pop(id(caller), None)
        if site is not None:  # which function a call of the user's code ran
            f = frame.f_code
            callee = None if f.co_filename.startswith(_HERE) else \
                (f.co_filename, f.co_firstlineno, f.co_qualname)
            self.arcs.add((site[0], site[1], (_CALLED, callee)))
        path = frame.f_code.co_filename
        if path.startswith("<") and not path.startswith("<frozen "):
            follow = path in self.own or (frame.f_back is not None
                                           and frame.f_back.f_code in self._codes)
        else:
            if path not in self._files:
                mine = bool(self.own) and os.path.abspath(path).startswith(self.own)
                self._files[path] = mine or _followed(path)
            follow = self._files[path]
        if not follow:
            return None
        self._codes.add(frame.f_code)
        self._open.add(id(frame))
        frame.f_trace_opcodes = True
        code = (path, frame.f_code.co_firstlineno, frame.f_code.co_qualname)  # offsets' scope
        last, raised, calls = _START, False, frame.f_code.co_code

        def local(frame, event, arg):
            nonlocal last, raised
            if event == "opcode":
                site = self._pending.pop(id(frame), None)
                if site is not None:  # the call ran no Python frame: a C or compiled callee
                    self.arcs.add((site[0], site[1], (_CALLED, None)))
                here = frame.f_lasti
                self.arcs.add((code, last, here))
                self.lines.setdefault((code, here), frame.f_lineno)
                last, raised = here, False
                if calls[here] in _CALLS:
                    self._pending[id(frame)] = (code, here)
            elif event == "exception":
                raised = True
            elif event == "return":
                if not frame.f_trace_opcodes:  # the frame turned its opcode events off
                    self.lost = True
                self.arcs.add((code, last, _UNWIND if raised else _RETURN))
                self._open.discard(id(frame))
                self._pending.pop(id(frame), None)  # a call that raised: its id is reused
            return local

        return local


_ACTIVE: Paths | None = None  # the context the trace function records into


def _dispatch(frame, event, arg):
    """The trace function of every thread while a `Paths` is active (a pool's worker keeps
    it after: it records into whichever context is active then)."""
    active = _ACTIVE
    return None if active is None else active._call(frame, event, arg)


def first_new(ran: Paths, traced: Paths) -> str | None:
    """The first arc `ran` has and `traced` has not, in words, or None."""
    # from an opcode of a function first (a library may run code in the user's file name)
    new = sorted(ran.arcs - traced.arcs, key=lambda a: (a[1] < 0, a[0][2].startswith("<"),
                                                          a[:2], str(a[2])))
    if not new:
        return None
    code, start, to = new[0]
    path = code[0]
    if isinstance(to, tuple):  # a call that ran another function
        callee = "no Python function (C or compiled code)" if to[1] is None else \
            f"{to[1][2]} ({os.path.basename(to[1][0])}:{to[1][1]})"
        to = _CALLED
    shown = os.path.relpath(path) if os.path.isabs(path) else path
    shown = path if shown.startswith("..") else shown  # below the working directory: short
    line = ran.lines.get((code, start))
    if to == _CALLED:
        return f"called {callee} at {shown}:{line}"
    if to == _RETURN:
        return f"returned from {shown}:{line}"
    if to == _UNWIND:
        return f"left {shown}:{line} by an exception"
    end = ran.lines[code, to]
    if start == _START:
        return f"began {shown}:{code[2]} at line {end}"
    return (f"took another branch in {shown}:{line}" if end == line else
            f"went from {shown}:{line} to line {end}")
