"""The exact scalar of the trace: `Exact`, a SymPy expression with the arithmetic NumPy's
object loops call, and `exact_number`, the rational a Python or NumPy number denotes.

An operation that would leave exact arithmetic (float(), a comparison, a truth value) raises
`LeftExact` and is recorded, with the user's line, in `_TRACE`.

>>> import numpy as np
>>> x = np.array([Exact(sp.Symbol("a")), Exact(sp.Symbol("b"))], dtype=object)
>>> (x * 0.5).sum()
a/2 + b/2
"""

from __future__ import annotations

import math
import os
import sys
from fractions import Fraction

import numpy as np
import sympy as sp

# frames in this package and in NumPy are not the user's (error messages name the user's line)
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NUMPY = os.path.dirname(os.path.abspath(np.__file__))


def _ours(path: str) -> bool:
    """Whether a frame's file is symbn.impl's or NumPy's (not the user's code)."""
    return path.startswith((_HERE, _NUMPY))


class LeftExact(TypeError):
    """The traced code asked for a float, an int or a truth value of an exact scalar."""

    __module__ = "symbn.impl"  # tracebacks name it where it is imported from


class _Trace:
    """Where the first operation that left exact arithmetic happened (one per call)."""

    def __init__(self):
        self.first: str | None = None
        self.intended = False  # read floats as the simplest rational they round (a re-run)
        self.rounded: dict = {}  # float -> the simplest rational it rounds, where different
        self.inexact: set = set()  # floats read exactly that stand for no short rational
        # (kind, expression) -> where: what each partial operation needs of its operand
        # (the kinds of `symbn.impl.domain.HOLDS`: a divisor nonzero, a radicand >= 0, ...)
        self.conditions: dict = {}
        self.added: list = []  # the conditions of the operation being traced
        self.real: dict = {}  # id -> subexpression `_real` has found finite and real

    def require(self, kind: str, e: sp.Expr) -> None:
        """Record that the traced code is defined only where `e` is `kind` (a constant is
        decided on the spot by `_real` and `_divide`); the value computed carries it."""
        if e.is_number:
            return
        if (kind, e) not in self.conditions:
            self.conditions[kind, e] = _user_frame()
        self.added.append((kind, e))

    def refuse(self, what: str) -> LeftExact:
        where = _user_frame()
        message = f"{what}{f' at {where}' if where else ''}"
        if self.first is None:
            self.first = message
        return LeftExact(f"symbn exact trace: {message}")


_TRACE = _Trace()


def _user_frame() -> str:
    """file:line (code) of the innermost caller outside symbn.impl and NumPy."""
    frame = sys._getframe(1)
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not _ours(name):
            line = _source_line(name, frame.f_lineno)
            return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}" + \
                (f": {line}" if line else "")
        frame = frame.f_back
    return ""


def _source_line(path: str, lineno: int) -> str:
    import linecache

    return linecache.getline(path, lineno).strip()


def exact_number(value) -> sp.Rational | None:
    """The exact rational a Python or NumPy number denotes; None for anything else.

    >>> exact_number(0.1) == sp.Rational(3602879701896397, 36028797018963968), exact_number(3)
    (True, 3)
    """
    if isinstance(value, (bool, np.bool_)):
        return sp.Integer(int(value))
    if isinstance(value, (int, np.integer)):
        return sp.Integer(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise _TRACE.refuse(f"the non-finite float {value!r} entered the computation")
        p, q = value.as_integer_ratio()  # a binary float is this rational exactly
        if q > 1 << 20:
            meant = _simplest(value)
            if meant != Fraction(int(p), int(q)) and meant.denominator < 1 << 20:
                _TRACE.rounded[float(value)] = meant  # such as 1.0/3 for 1/3
                if _TRACE.intended:
                    return sp.Rational(meant.numerator, meant.denominator)
            else:
                _TRACE.inexact.add(float(value))  # such as np.sqrt(3)
        return sp.Rational(int(p), int(q))
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, sp.Rational):
        return value
    return None


ULPS = 4  # how far a computed float may be from the rational it stands for


def _simplest(f) -> Fraction:
    """The rational of least denominator within ULPS units in the last place of the float f
    (a Python float or any NumPy float type, in its own precision): 1.0/3 -> 1/3, and
    1 - 1.0/3 -> 2/3, though the float nearest 2/3 is one unit below it.  Only a re-run
    reads floats this way, to tell a disproof that rounding explains from one it does not;
    nothing is proved with it.

    >>> _simplest(1.0 / 3), _simplest(1 - 1.0 / 3), _simplest(0.1), _simplest(0.5)
    (Fraction(1, 3), Fraction(2, 3), Fraction(1, 10), Fraction(1, 2))
    >>> _simplest(np.longdouble(1) / 3), _simplest(np.float32(0.1))
    (Fraction(1, 3), Fraction(1, 10))
    """
    if f < 0:
        return -_simplest(-f)
    spacing = math.ulp(f) if isinstance(f, float) else np.spacing(f)
    x, ulp = Fraction(*f.as_integer_ratio()), Fraction(*spacing.as_integer_ratio())
    lo, hi = x - ULPS * ulp, x + ULPS * ulp
    return _between(lo, hi) if lo > 0 else Fraction(0)


def _between(lo: Fraction, hi: Fraction) -> Fraction:
    """The simplest rational in [lo, hi], 0 < lo <= hi (continued fractions)."""
    whole = math.floor(lo)
    if whole == lo:
        return Fraction(whole)
    if whole + 1 <= hi:
        return Fraction(whole + 1)
    return whole + 1 / _between(1 / (hi - whole), 1 / (lo - whole))


def _lift(value):
    if isinstance(value, Exact):
        return value.e
    return exact_number(value)


class Exact:
    """An exact real: a SymPy expression in leaf symbols, with the arithmetic NumPy's object
    loops call.  Comparisons, truth values and float()/int() refuse (`LeftExact`): the trace
    cannot branch on a symbolic value or round it.

    >>> a = Exact(sp.Symbol("a"))
    >>> (0.5 * a + 1) ** 2, np.sqrt(a)
    ((a/2 + 1)**2, sqrt(a))
    >>> float(a)
    Traceback (most recent call last):
    ...
    symbn.impl.LeftExact: symbn exact trace: float() of an exact value (a)...
    """

    __slots__ = ("e", "needs")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, e: sp.Expr, needs: frozenset = frozenset()):
        self.e = e
        self.needs = needs  # the conditions (kind, expression) this value was computed under

    def __repr__(self) -> str:
        return str(self.e)

    # arithmetic: other operands are numbers (converted exactly) or NotImplemented, so that
    # NumPy arrays take over and broadcast
    def _binary(self, other, op, reflected=False):
        o = _lift(other)
        if o is None:
            return NotImplemented
        needs = self.needs | other.needs if isinstance(other, Exact) else self.needs
        if op not in _PARTIAL:
            return Exact(op(o, self.e) if reflected else op(self.e, o), needs)
        _TRACE.added = []
        r = _real(op(o, self.e) if reflected else op(self.e, o))
        return Exact(r, needs.union(_TRACE.added) if _TRACE.added else needs)

    def _partial(self, kind: str, f) -> Exact:
        """f(self), defined where self is `kind`."""
        _TRACE.added = []
        _TRACE.require(kind, self.e)
        return Exact(_real(f(self.e)), self.needs.union(_TRACE.added))

    def __add__(self, o):
        return self._binary(o, sp.Add)

    def __radd__(self, o):
        return self._binary(o, sp.Add, True)

    def __sub__(self, o):
        return self._binary(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._binary(o, lambda a, b: a - b, True)

    def __mul__(self, o):
        return self._binary(o, sp.Mul)

    def __rmul__(self, o):
        return self._binary(o, sp.Mul, True)

    def __truediv__(self, o):
        return self._binary(o, _divide)

    def __rtruediv__(self, o):
        return self._binary(o, _divide, True)

    def __pow__(self, o, modulo=None):
        if modulo is not None:
            raise _TRACE.refuse("pow(a, b, modulo) of an exact value")
        return self._binary(o, _power)

    def __rpow__(self, o):
        return self._binary(o, _power, True)

    def __neg__(self):
        return Exact(-self.e, self.needs)

    def __pos__(self):
        return self

    def __abs__(self):
        return Exact(sp.Abs(self.e), self.needs)

    # what NumPy's ufuncs call on objects: np.sqrt(a) is a.sqrt(), ...
    def sqrt(self):
        return self._partial("nonneg", sp.sqrt)

    def cbrt(self):  # NumPy's real cube root: SymPy's cbrt of a negative is complex
        return self._partial("nonneg", sp.cbrt)

    def exp(self):
        return Exact(sp.exp(self.e), self.needs)

    def log(self):
        return self._partial("log", sp.log)

    def tanh(self):
        return Exact(sp.tanh(self.e), self.needs)

    def conjugate(self):  # np.var calls conjugate on object arrays; these are real
        return self

    @property
    def real(self):
        return self

    @property
    def imag(self):
        return Exact(sp.Integer(0))

    # leaving exact arithmetic: refuse, and record where
    def _refuse(self, what):
        raise _TRACE.refuse(f"{what} of an exact value ({_clip(self.e)})")

    def __float__(self):
        self._refuse("float()")

    def __int__(self):
        self._refuse("int()")

    def __index__(self):  # noqa: PLE0305 - it refuses
        self._refuse("int()")

    def __complex__(self):
        self._refuse("complex()")

    def __bool__(self):  # noqa: PLE0304 - it refuses
        self._refuse("a truth value (if/while/and/or)")

    def __round__(self, n=None):
        self._refuse("round()")

    def _compare(self, op):
        raise _TRACE.refuse(f"a comparison ({op}) of an exact value ({_clip(self.e)}); the "
                            "code branches on a value")

    def __lt__(self, o):
        self._compare("<")

    def __le__(self, o):
        self._compare("<=")

    def __gt__(self, o):
        self._compare(">")

    def __ge__(self, o):
        self._compare(">=")

    def __eq__(self, o):
        self._compare("==")

    def __ne__(self, o):
        self._compare("!=")

    def __floordiv__(self, o):
        self._refuse("floor division //")

    __rfloordiv__ = __floordiv__

    def __mod__(self, o):
        self._refuse("the remainder %")

    __rmod__ = __mod__


def _divide(a, b):
    if b == 0:
        raise _TRACE.refuse("a division by the constant 0")
    _TRACE.require("nonzero", b)
    return a / b


def _power(a, b):
    """a**b, recording where it is defined before SymPy simplifies it: (a**(1/2))**2 is a,
    which would hide that the code takes the root of a (NaN in floating point where a < 0)."""
    if a.is_number and not b.is_number:  # 2**t: only 0**t can leave the reals (inf)
        if a == 0:
            _TRACE.require("exponent", b)
    elif not b.is_Integer:
        _TRACE.require("positive" if not b.is_Rational or b < 0 else "nonneg", a)
    elif b < 0:
        _TRACE.require("nonzero", a)
    return sp.Pow(a, b)


_PARTIAL = (_divide, _power)  # the operations (with sqrt, cbrt, log) that can leave the reals
_NOT_FINITE = (sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I)  # SymPy's singletons


def _real(e: sp.Expr) -> sp.Expr:
    """e, refused where SymPy's value is not a finite real: 0**-2 = zoo (a division by a
    value that is 0 at every point, which the reals leave undefined and floats turn into
    inf), sqrt(-2) = sqrt(2)*I, log(0), (-8)**(1/3) (complex principal root).  Such a value
    must not take part in a proof: zoo and I obey rules (1/zoo = 0, I**2 = -1) that float
    code does not follow.

    >>> _real(sp.Integer(0) ** -2)
    Traceback (most recent call last):
    ...
    symbn.impl.LeftExact: symbn exact trace: a value that is not a finite real (zoo)...
    """
    seen, stack = _TRACE.real, [e]  # parts already looked at (operands share most of e)
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        if any(x is bad for bad in _NOT_FINITE) or (
                x.is_Pow and x.base.is_number and x.base.is_negative
                and not x.exp.is_integer):
            raise _TRACE.refuse(f"a value that is not a finite real ({_clip(e)}): a "
                                "division by zero, or a root or logarithm of a negative number")
        seen[id(x)] = x  # kept alive, so that its id stays its own
        stack.extend(x.args)
    return e


def _clip(e, limit: int = 60) -> str:
    text = str(e)
    return text if len(text) <= limit else text[:limit - 3] + "..."
