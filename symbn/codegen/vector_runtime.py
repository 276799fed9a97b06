"""The helpers every vectorised NumPy module that `model_vector` writes carries at its top:
argument checks, the blocks of sets along the last axis, the reductions (BLAS row sums,
vecdot row dots), the stack of monomials and its batched product, aligned scratch buffers.
They are text, formatted with the model's axis and minimum set size, so that a generated
module imports NumPy only.  The numba module (`model_numba`) carries the argument checks and
array helpers alone (`NUMBA_RUNTIME`): its kernels take the blocks' place.

>>> "def _combine(S, C, n, coefs, out):" in _RUNTIME
True
>>> "def _out(" in NUMBA_RUNTIME and "BLOCK" not in NUMBA_RUNTIME
True
"""

from .model_numpy import ELEMENT

IMPORTS = "import fractions\nimport math\n\nimport numpy\n"

_HEAD = """
AXIS = {axis}
MIN_N = {min_n}
MAX_N = {max_n}  # the largest N proved (None: every N)
"""

_BLOCK = """# Sets are processed in blocks of about this many bytes per array (along the last axis); the
# best size depends on the machine's caches (1 MiB measured 5-17 % faster than 256 KiB).
BLOCK = 1 << 20
"""

_ARRAY = '''

def _array(name, a):
    a = numpy.asarray(a)
    if a.dtype not in (numpy.float32, numpy.float64, object):
        raise ValueError(f"{{name}} has dtype {{a.dtype}}; use float32 or float64 (or object "
                         "for exact scalars)")
    return a


'''

_SHARED = '''

def _leaf(name, a, X, want, what, where):
    a = _array(name, a)
    if a.shape != want:
        raise ValueError(f"{{name}} has shape {{a.shape}}, expected {{want}} {{what}}to match X "
                         f"{{X.shape}}{{where}}")
    if (a.dtype == object) != (X.dtype == object):
        raise ValueError(f"{{name}} has dtype {{a.dtype}} but X has {{X.dtype}}; exact "
                         "(object) and float arrays do not mix")
    return a


def _along(name, a, X):
    """A leaf with one value per position along AXIS, shape (N,), in X's dtype, shaped to
    broadcast against a block."""
    a = _leaf(name, a, X, (X.shape[AXIS],), "", f" along axis {{AXIS}}").astype(X.dtype)
    return a if AXIS == -1 else a.reshape(-1, 1)


def _per_set(name, a, X):
    """A leaf with one value per set, in float64 (or object), one per row of _rows(X)."""
    want = X.shape[1:] if AXIS == 0 else X.shape[:-1]
    a = _leaf(name, a, X, want, "(one value per set) ", "").astype(_wide(X))
    return a.reshape(1, -1) if AXIS == 0 else a.reshape(-1, 1)


def _wide(X):
    return object if X.dtype == object else numpy.float64


def _rows(X):
    """The 2-d view: one set per row (AXIS = -1) or per column (AXIS = 0)."""
    return X if AXIS == 0 else X.reshape(-1, X.shape[-1])


def _apart(out, *arrays):
    """The input arrays, each copied if it shares memory with `out`: the result is written
    block by block while the inputs are still read (out=dY would change dY under dgamma)."""
    if out is None:
        return arrays
    return tuple(a.copy() if isinstance(a, numpy.ndarray) and numpy.may_share_memory(out, a)
                 else a for a in arrays)


def _out(buffer, X, name="out"):
    """A caller's buffer for a result of X's shape, checked; a new array when None."""
    if buffer is None:
        return _empty(X.shape, X.dtype)
    if not isinstance(buffer, numpy.ndarray) or buffer.shape != X.shape \\
            or buffer.dtype != X.dtype or not buffer.flags.c_contiguous \\
            or not buffer.flags.writeable:
        got = (f"shape {{buffer.shape}}, dtype {{buffer.dtype}}" if isinstance(buffer, numpy.ndarray)
               else type(buffer).__name__)
        if isinstance(buffer, numpy.ndarray) and not buffer.flags.c_contiguous:
            got += ", not C-contiguous (numpy.ascontiguousarray makes one)"
        elif isinstance(buffer, numpy.ndarray) and not buffer.flags.writeable:
            got += ", read-only"
        raise ValueError(f"{{name}} must be a writeable C-contiguous array of shape {{X.shape}} "
                         f"and dtype {{X.dtype}}, got {{got}}")
    return buffer


def _empty(shape, dtype, align=64):
    """A new C-contiguous array whose data starts on a multiple of `align` bytes: NumPy's
    element-wise loops measured up to twice as fast writing to a 64-byte aligned buffer."""
    dtype = numpy.dtype(dtype)
    if dtype == object:
        return numpy.empty(shape, dtype)
    size = int(numpy.prod(shape)) * dtype.itemsize
    raw = numpy.empty(size + align, numpy.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + size].view(dtype).reshape(shape)


def _per_set_result(value, shape, dtype):
    """A per-set result in the shape of the sets: `shape` is X's (the whole array's)."""
    return value.reshape(shape[1:] if AXIS == 0 else shape[:-1]).astype(dtype)
'''

_VECTOR = '''

def _rational(p, q, X):
    """p/q: a fraction for exact scalars, so that the object path stays exact; else a float."""
    return fractions.Fraction(p, q) if X.dtype == object else p / q


def _count(X):
    """N, the size of a set: a fraction for exact scalars, so that 1/N stays exact."""
    N = X.shape[AXIS]
    return fractions.Fraction(N) if X.dtype == object else N


def _blocks(X):
    """Slices of the rows of _rows(X): blocks of about BLOCK bytes along the last axis;
    one block along axis 0 and for exact scalars."""
    if AXIS == 0 or X.dtype == object:
        yield slice(None)
        return
    rows, step = _rows(X).shape[0], _block_rows(X)
    for lo in range(0, rows, step):
        yield slice(lo, lo + step)


def _block_rows(X):
    """The rows of one block: all of them along axis 0 and for exact scalars."""
    rows = _rows(X).shape[0]
    if AXIS == 0 or X.dtype == object:
        return rows
    row = X.shape[-1] * X.itemsize
    step = 64 // math.gcd(row, 64)  # so that every block starts on 64 bytes, as _empty's
    return min(rows, max(step, BLOCK // row // step * step))


def _scale(P, c, out):
    """out = P * c, c one value per set: einsum, which measured 10-25 % faster than
    numpy.multiply's broadcast of a column."""
    if isinstance(c, numpy.ndarray) and c.dtype != object and P.shape == out.shape \\
            and P.ndim == 2 and c.size == P.shape[1 if AXIS == 0 else 0]:
        return numpy.einsum("ij,j->ij" if AXIS == 0 else "ij,i->ij", P, c.ravel(), out=out)
    return numpy.multiply(P, c, out=out)


def _el(value, dtype):
    """A per-set coefficient in the dtype of the elements (Python numbers stay as they are)."""
    return value.astype(dtype) if isinstance(value, numpy.ndarray) else value


def _wide_sum(value):
    return value if value.dtype == object else value.astype(numpy.float64, copy=False)


_ONES = {{}}


def _ones(n, dtype):
    key = (n, numpy.dtype(dtype))
    if key not in _ONES:
        _ONES[key] = numpy.ones(n, dtype)
    return _ONES[key]


def _rsum(F):
    """The sum over each set, kept as an axis of length 1, in float64 (or object); a
    matrix-vector product with ones (BLAS) for floats, several times faster than numpy.sum
    along the last axis."""
    if F.dtype == object or F.ndim < 2:
        return _wide_sum(numpy.sum(F, axis=AXIS, keepdims=True))
    if AXIS == 0:
        return _wide_sum((_ones(F.shape[0], F.dtype) @ F)[None, :])
    return _wide_sum((F @ _ones(F.shape[1], F.dtype))[:, None])


def _rdot(A, B):
    """The sum over each set of A * B."""
    if A.dtype == object:
        return _rsum(A * B)
    if AXIS == 0:
        return _wide_sum(numpy.einsum("ij,ij->j", A, B)[None, :])
    if _VECDOT is not None:  # about twice as fast as einsum's row dots
        return _wide_sum(_VECDOT(A, B)[:, None])
    return _wide_sum(numpy.einsum("ij,ij->i", A, B)[:, None])


_VECDOT = getattr(numpy, "vecdot", None)  # NumPy >= 2.0


def _rvec(F, a):
    """The sum over each set of F * a, a an along leaf (one value per position)."""
    if F.dtype == object:
        return _rsum(F * a)
    return _wide_sum((a.ravel() @ F)[None, :] if AXIS == 0 else (F @ a)[:, None])


def _over(c, P):
    """The sum over the sets of c * P (c one value per set): one value per position."""
    if not isinstance(c, numpy.ndarray):
        if P.dtype == object:
            return c * numpy.sum(P, axis=1 if AXIS == 0 else 0)
        ones = _ones(P.shape[1 if AXIS == 0 else 0], P.dtype)
        total = P @ ones if AXIS == 0 else ones @ P
        return total if c == 1 else c * total  # NumPy's 1 * array measured 1.4 us a call
    if P.dtype == object:
        return numpy.sum(c * P, axis=1 if AXIS == 0 else 0)
    return P @ c.ravel() if AXIS == 0 else c.ravel() @ P


def _centred(X, N, D):
    """D = X - mu in two passes on the shift K = the first element of each set: X - K is
    exact for close values (Sterbenz), so the mean is taken of small numbers."""
    numpy.subtract(X, X[:1] if AXIS == 0 else X[:, :1], out=D)
    D -= _el(_rsum(D) / N, D.dtype)
    return D


def _scratch(X, dtype):
    """A buffer for one block's temporaries (reused by every block: no allocation, no page
    faults in the loop); views of its first rows serve the last, shorter block."""
    return _empty((_block_rows(X), _rows(X).shape[1]), dtype)


def _bufsize(X):
    """NumPy's ufunc buffer size for the loop over blocks: one row of a block (at most 8192,
    a multiple of 16) for rows of 128 elements or more.  With the default (8192 elements) an
    operation that broadcasts a column or a row over shorter rows fills its buffers by
    copying; a row or less makes it read the operands in place, measured about 2.5 times as
    fast.  Shorter rows keep the buffer as it is: there the copies, which join rows into
    longer loops, measured faster."""
    n = _rows(X).shape[-1]
    return min(8192, n // 16 * 16) if n >= 128 else numpy.getbufsize()


def _stack(X, dtype, k, fixed):
    """The k monomials of an element result, one block each (k, rows, N): S[j, :n] is the
    block's buffer for monomial j; `fixed` {{j: value}} fills the monomials that are the
    same in every set (1, an along leaf) once."""
    S = _empty((k, _block_rows(X), X.shape[-1]), dtype)
    for j, value in fixed.items():
        S[j] = value
    return S


def _combine(S, C, n, coefs, out):
    """out = Σ_j coefs[j] * S[j, :n] on a block of n sets (coefs one value per set, or
    numbers): one batched matrix product (n, 1, k) @ (n, k, N), a single pass over the
    block where a multiply-add per term makes two."""
    C = C[:n]
    for j, c in enumerate(coefs):
        C[:, 0, j] = c[:, 0] if isinstance(c, numpy.ndarray) else c
    numpy.matmul(C, S[:, :n].transpose(1, 0, 2), out=out.reshape(n, 1, out.shape[-1]))


def _zeros(X):
    return numpy.zeros(X.shape[AXIS], _wide(X))


def _per_set_empty(X):
    return numpy.empty((1, X.shape[1]) if AXIS == 0 else (_rows(X).shape[0], 1), _wide(X))
'''

_RUNTIME = "\n" + IMPORTS + _HEAD + _BLOCK + _ARRAY + ELEMENT + _SHARED + _VECTOR
"""The vectorised NumPy module's helpers (`model_vector`)."""

NUMBA_RUNTIME = _HEAD + _ARRAY + ELEMENT + _SHARED
"""The argument checks and array helpers the numba module (`model_numba`) shares with it."""
