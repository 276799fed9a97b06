"""Generated code for every model (layernorm, rmsnorm, batchnorm-unbiased, a user's file)
against independent references: exact rational values of the model's closed forms, central
differences of the generated forward, the adjoint identity, 50-digit mpmath, PyTorch
autograd (layer_norm, rms_norm) and a hand-written NumPy reference; its text and errors."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from generated import assert_ruff_clean, load_module, needs_ruff

from symbn import codegen, lambdify_backward
from symbn.codegen import model_plan as MP
from symbn.errors import SymbnError
from symbn.models import load, parse

EPS = 1e-5
MODELS = ["layernorm", "rmsnorm", "batchnorm-unbiased"]
GRADS = {"layernorm": ["x", "gamma", "beta"], "rmsnorm": ["x", "gamma"],
         "batchnorm-unbiased": ["x", "gamma", "beta"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generated_models")
    out = {}
    for name in MODELS:
        for kind, text in (("numpy", codegen.generate("numpy", model=name)),
                           ("unrolled4", codegen.generate("numpy", n=4, unrolled=True,
                                                          model=name))):
            out[name, kind] = tmp / f"{name.replace('-', '_')}_{kind}.py"
            codegen.write(text, str(out[name, kind]))
    return out


@pytest.fixture(scope="module")
def mods(files):
    return {key: load_module(path) for key, path in files.items()}


def _fns(mods, name, kind="numpy"):
    m, prefix = mods[name, kind], name.replace("-", "_")
    return getattr(m, f"{prefix}_forward"), getattr(m, f"{prefix}_backward")


def _params(name, N, sets_shape, rng, dtype=np.float64):
    """The parameter arrays of a model: along leaves (N,), set leaves one per set."""
    shape = (N,) if name != "batchnorm-unbiased" else sets_shape
    gamma = rng.standard_normal(shape).astype(dtype)
    beta = rng.standard_normal(shape).astype(dtype)
    return (gamma, beta) if name != "rmsnorm" else (gamma,)


def _shape(name, N, sets=(3,)):
    return (N, *sets) if name == "batchnorm-unbiased" else (*sets, N)


def _rel(got, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / max(np.max(np.abs(ref)),
                                                                       1e-300))


# -- the text ------------------------------------------------------------------------------

SIGNATURES = {
    "layernorm": ["    layernorm_forward(X, gamma, beta, eps=1e-5) -> Y",
                  "    layernorm_backward(dY, X, gamma, eps=1e-5) -> (dX, dgamma, dbeta)"],
    "rmsnorm": ["    rmsnorm_forward(X, gamma, eps=1e-5) -> Y",
                "    rmsnorm_backward(dY, X, gamma, eps=1e-5) -> (dX, dgamma)"],
    "batchnorm-unbiased": [
        "    batchnorm_unbiased_forward(X, gamma, beta, eps=1e-5) -> Y",
        "    batchnorm_unbiased_backward(dY, X, gamma, eps=1e-5) -> (dX, dgamma, dbeta)"],
}


@pytest.mark.parametrize("name", MODELS)
def test_module_text_names_and_proofs(files, name):
    text = files[name, "numpy"].read_text()
    for line in SIGNATURES[name]:
        assert line in text, line
    prefix = name.replace("-", "_")
    assert f"def {prefix}_backward(" in text and f"def {prefix}_forward(" in text
    low = 2 if name == "batchnorm-unbiased" else 1
    assert f"N = {low}..6 (one set) and N = 2 with two sets, symbn.prove.Algebra" in text
    assert f"closed forms = forward mode = backward mode (symbn verify --model {name})" in text
    assert f"every N >= {low} (symbolic N, canonical form over QQ" in text
    assert ("D = (X - K) - RowSum(X - K)/N as computed" in text) == (name != "rmsnorm")
    assert ("no centring (the model has no mean)" in text) == (name == "rmsnorm")
    code = text.split('"""', 2)[2]
    assert "sympy" not in code and "import numpy" in code
    assert "batchnorm_forward(" not in text.replace("batchnorm_unbiased_forward(", "")
    unrolled = files[name, "unrolled4"].read_text()
    assert "unrolled for N = 4" in unrolled and SIGNATURES[name][1] in unrolled


def test_unbiased_keeps_one_over_n_minus_one():
    plan = MP.model_plan(load("batchnorm-unbiased"))
    assert sp.sstr(MP.computed(plan, "y")) == "D*gamma/sqrt(eps + RowSum(D**2)/(N - 1)) + beta"
    assert str(MP.computed(plan, "x")).count("N - 1") == 3


def test_batchnorm_module_is_unchanged_by_model_argument():
    today = codegen.generate("numpy")
    assert codegen.generate("numpy", model="batchnorm") == today
    assert codegen.generate("numpy", model=load("batchnorm")) == today
    assert "def batchnorm_backward(dY, X, gamma, eps=1e-5, out=None, scratch=None):" in today


@needs_ruff
def test_generated_files_pass_ruff(files):
    assert_ruff_clean(files.values())


@pytest.mark.parametrize("kind", ["numpy", "unrolled4"])
def test_generated_module_imports_without_sympy(files, kind):
    code = ("import sys, importlib.util; sys.modules['sympy'] = None\n"
            f"spec = importlib.util.spec_from_file_location('m', "
            f"{str(files['layernorm', kind])!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "import numpy as np; X = np.arange(8.0).reshape(2, 4) ** 2\n"
            "dX, dg, db = m.layernorm_backward(np.ones((2, 4)), X, np.ones(4))\n"
            "print(abs(dX).max() < 1e-12, db.tolist())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "[2.0,", "2.0,", "2.0,", "2.0]"]


@pytest.mark.parametrize("name", ["symbn.codegen.model_plan", "symbn.codegen.model_numpy",
                                  "symbn.codegen.model_terms", "symbn.codegen.model_vector",
                                  "symbn.codegen.model_numba",
                                  "symbn.codegen.model_unrolled", "symbn.codegen.plan",
                                  "symbn.codegen.emit_numpy", "symbn.codegen.unrolled"])
def test_submodule_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} failed in {name}"


# -- exact values of the model's closed forms -----------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", range(1, 6))
def test_matches_exact_closed_form(mods, name, n):
    """Dyadic inputs (exact in float64); the closed form evaluated with exact rationals,
    set by set (`Instance.evaluate` of `result`), along gradients summed over the sets."""
    model = load(name)
    if n < model.min_n:
        pytest.skip(f"{name} is defined for N >= {model.min_n}")
    rng = np.random.default_rng(n)
    sets = 2
    shape = _shape(name, n, (sets,))
    X = rng.integers(-8, 9, size=shape) / 4.0
    dY = rng.integers(-8, 9, size=shape) / 8.0
    params = [rng.integers(-4, 5, size=p.shape) / 4.0
              for p in _params(name, n, (sets,), rng)]
    eps = 0.125
    _, backward = _fns(mods, name)
    got = dict(zip(GRADS[name], backward(dY, X, params[0], eps)))
    g = model.instantiate(n)
    axis0 = model.axis == 0
    for c in range(sets):
        xs = X[:, c] if axis0 else X[c]
        dys = dY[:, c] if axis0 else dY[c]
        point = {g.symbol("x", i + 1): Fraction(xs[i]) for i in range(n)}
        point |= {g.symbol("dy", i + 1): Fraction(dys[i]) for i in range(n)}
        point[g.symbol("eps")] = Fraction(eps)
        for leaf, value in zip(["gamma", "beta"], params):
            if axis0:
                point[g.symbol(leaf)] = Fraction(value[c])
            else:
                point |= {g.symbol(leaf, i + 1): Fraction(value[i]) for i in range(n)}
        for j in range(1, n + 1):
            exact = float(sp.N(g.evaluate(g.result("x", j), point), 30))
            have = got["x"][j - 1, c] if axis0 else got["x"][c, j - 1]
            assert abs(have - exact) <= 1e-14 * max(1.0, abs(exact)), (name, n, c, j)
        for leaf in GRADS[name][1:]:
            if axis0:  # one value per set
                exact = float(sp.N(g.evaluate(g.result(leaf), point), 30))
                assert abs(got[leaf][c] - exact) <= 1e-14 * max(1.0, abs(exact)), (leaf, c)
    if not axis0:  # along leaves: the sum over the sets of each set's share
        for leaf in GRADS[name][1:]:
            ref = np.zeros(n)
            for c in range(sets):
                point = {g.symbol("x", i + 1): Fraction(X[c, i]) for i in range(n)}
                point |= {g.symbol("dy", i + 1): Fraction(dY[c, i]) for i in range(n)}
                point |= {g.symbol("gamma", i + 1): Fraction(params[0][i]) for i in range(n)}
                point[g.symbol("eps")] = Fraction(eps)
                ref += [float(sp.N(g.evaluate(g.result(leaf, j), point), 30))
                        for j in range(1, n + 1)]
            assert np.allclose(got[leaf], ref, rtol=1e-14, atol=1e-14), leaf


# -- central differences and the adjoint identity -------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_central_differences_and_adjoint_identity(mods, name):
    rng = np.random.default_rng(5)
    shape = _shape(name, 5, (2, 3) if name != "batchnorm-unbiased" else (3,))
    X, dY = rng.standard_normal(shape), rng.standard_normal(shape)
    params = list(_params(name, 5, shape[1:], rng))
    forward, backward = _fns(mods, name)
    grads = backward(dY, X, params[0])

    def f(X_, *ps):
        return float(np.sum(dY * forward(X_, *ps)))

    def rel_error(a, b):
        return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))

    h = 1e-5
    numeric = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        e = np.zeros_like(X)
        e[idx] = h
        numeric[idx] = (f(X + e, *params) - f(X - e, *params)) / (2 * h)
    assert rel_error(numeric, grads[0]) < 1e-8
    for k, p in enumerate(params):
        fd = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            e = np.zeros_like(p)
            e[idx] = h
            plus = [q + e if m == k else q for m, q in enumerate(params)]
            minus = [q - e if m == k else q for m, q in enumerate(params)]
            fd[idx] = (f(X, *plus) - f(X, *minus)) / (2 * h)
        assert rel_error(fd, grads[1 + k]) < 1e-8, GRADS[name][1 + k]
    for _ in range(3):
        u = rng.standard_normal(X.shape)
        Ju = (forward(X + h * u, *params) - forward(X - h * u, *params)) / (2 * h)
        lhs, rhs = np.sum(dY * Ju), np.sum(grads[0] * u)
        assert abs(lhs - rhs) / max(abs(lhs), abs(rhs)) < 1e-7


# -- 50-digit mpmath ------------------------------------------------------------------------

def _mpmath_reference(name, dY, X, gamma, eps=EPS):
    """dX and the per-set shares of dgamma, one set (a 1-d row) at a time, in 50 digits."""
    import mpmath

    mpmath.mp.dps = 50
    rows_x = X.T if name == "batchnorm-unbiased" else X.reshape(-1, X.shape[-1])
    rows_dy = dY.T if name == "batchnorm-unbiased" else dY.reshape(-1, X.shape[-1])
    dX, dg = np.empty(rows_x.shape), np.zeros(rows_x.shape)
    for r, (xr, dyr) in enumerate(zip(rows_x, rows_dy)):
        N = len(xr)
        x = [mpmath.mpf(float(t)) for t in xr]
        gam = [mpmath.mpf(float(gamma[r] if name == "batchnorm-unbiased" else gamma[i]))
               for i in range(N)]
        g = [mpmath.mpf(float(dyr[i])) * gam[i] for i in range(N)]  # gamma * dy
        if name == "rmsnorm":
            s = mpmath.sqrt(mpmath.fsum([t * t for t in x]) / N + eps)
            m_gx = mpmath.fsum([a * b for a, b in zip(g, x)]) / N
            for i in range(N):
                dX[r, i] = float((g[i] - x[i] / s**2 * m_gx) / s)
                dg[r, i] = float(mpmath.mpf(float(dyr[i])) * x[i] / s)
            continue
        mu = mpmath.fsum(x) / N
        xc = [t - mu for t in x]
        div = N - 1 if name == "batchnorm-unbiased" else N
        s = mpmath.sqrt(mpmath.fsum([t * t for t in xc]) / div + eps)
        m_g, m_gx = mpmath.fsum(g) / N, mpmath.fsum([a * b for a, b in zip(g, xc)]) / div
        for i in range(N):
            dX[r, i] = float((g[i] - m_g - xc[i] / s**2 * m_gx) / s)
            dg[r, i] = float(mpmath.mpf(float(dyr[i])) * xc[i] / s)
    if name == "batchnorm-unbiased":
        return dX.T, dg.sum(axis=1)
    return dX.reshape(X.shape), dg.sum(axis=0)


def _inputs(name, kind, dtype, N, sets, seed):
    rng = np.random.default_rng(seed)
    shape = _shape(name, N, sets)
    X = rng.standard_normal(shape)
    if kind == "hard":
        X = 1e4 + 1e-2 * X
    params = _params(name, N, sets, rng, dtype)
    return rng.standard_normal(shape).astype(dtype), X.astype(dtype), params


TARGETS = {("normal", np.float64): 1e-14, ("hard", np.float64): 1e-12,
           ("normal", np.float32): 1e-6, ("hard", np.float32): 1e-6}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind,dtype", list(TARGETS))
def test_precision_against_mpmath(mods, name, kind, dtype):
    if name == "rmsnorm" and kind == "hard":
        kind = "normal"  # no mean is cancelled: the offset only rescales
    dY, X, params = _inputs(name, kind, dtype, 48, (6,), seed=7)
    ref_dx, ref_dg = _mpmath_reference(name, dY, X, params[0])
    grads = _fns(mods, name)[1](dY, X, params[0])
    assert all(g.dtype == dtype for g in grads)
    assert _rel(grads[0], ref_dx) <= TARGETS[kind, dtype]
    assert _rel(grads[1], ref_dg) <= 10 * TARGETS[kind, dtype]
    if len(grads) > 2:
        ref_db = dY.astype(np.float64).sum(axis=0)
        assert _rel(grads[2], ref_db) <= 10 * TARGETS[kind, dtype]


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("vecdot", [True, False], ids=["vecdot", "einsum"])
def test_blocks_with_a_shorter_last_one(mods, monkeypatch, name, vecdot):
    """Blocks of two sets (the last of one) reuse the stack of monomials and its views; the
    row dots by einsum where NumPy has no vecdot (before 2.0) give the same gradients."""
    m = mods[name, "numpy"]
    dY, X, params = _inputs(name, "hard" if name == "layernorm" else "normal", np.float64,
                            48, (7,), seed=3)
    monkeypatch.setattr(m, "BLOCK", 2 * 48 * 8)
    if not vecdot:
        monkeypatch.setattr(m, "_VECDOT", None)
    ref_dx, ref_dg = _mpmath_reference(name, dY, X, params[0])
    grads = _fns(mods, name)[1](dY, X, params[0])
    assert _rel(grads[0], ref_dx) <= 1e-12 and _rel(grads[1], ref_dg) <= 1e-12
    rows = [[Fraction(x) for x in row] for row in X]  # exact centring and mean square
    if name == "layernorm":
        rows = [[x - sum(row) / 48 for x in row] for row in rows]
    xhat = np.array([[float(x) for x in row] for row in rows])
    xhat /= np.sqrt(np.array([[float(sum(x * x for x in row) / 48)] for row in rows]) + EPS)
    Y = _fns(mods, name)[0](X, *params)
    assert _rel(Y, xhat * params[0] + (params[1] if name == "layernorm" else 0)) <= 1e-12


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
def test_blocks_start_on_64_bytes(mods, monkeypatch, name):
    """A row of 5 float32 (20 bytes) takes blocks of a multiple of 16 rows, so that every
    block of the result, and the result itself, starts on 64 bytes; the gradients still
    match the 50-digit reference across blocks and the shorter last one."""
    m = mods[name, "numpy"]
    dY, X, params = _inputs(name, "normal", np.float32, 5, (37,), seed=11)
    monkeypatch.setattr(m, "BLOCK", 20 * 20)  # 20 rows, rounded down to 16
    assert m._block_rows(X) == 16
    grads = _fns(mods, name)[1](dY, X, params[0])
    assert grads[0].ctypes.data % 64 == 0 and grads[0].flags.c_contiguous
    assert all(m._empty((3, 7), dt).ctypes.data % 64 == 0 for dt in (np.float32, np.float64))
    ref_dx, ref_dg = _mpmath_reference(name, dY, X, params[0])
    assert _rel(grads[0], ref_dx) <= 1e-5 and _rel(grads[1], ref_dg) <= 1e-5


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
def test_ufunc_buffer_is_one_row_in_the_loop_and_restored(mods, monkeypatch, name):
    """The loop runs with NumPy's ufunc buffer at most one row long (a multiple of 16; rows
    shorter than 128 keep the caller's) and the caller's buffer size comes back, also when
    the loop raises."""
    m = mods[name, "numpy"]
    dY, X, params = _inputs(name, "normal", np.float64, 200, (4,), seed=5)
    seen, combine = [], m._combine

    def spy(*args):
        seen.append(np.getbufsize())
        return combine(*args)

    caller = np.setbufsize(4096 + 16)
    try:
        monkeypatch.setattr(m, "_combine", spy)
        _fns(mods, name)[1](dY, X, params[0])
        assert seen == [192] and np.getbufsize() == 4096 + 16

        def fail(*args):
            raise FloatingPointError("in the loop")

        monkeypatch.setattr(m, "_combine", fail)
        with pytest.raises(FloatingPointError, match="in the loop"):
            _fns(mods, name)[1](dY, X, params[0])
        assert np.getbufsize() == 4096 + 16
    finally:
        np.setbufsize(caller)
    assert [m._bufsize(np.ones((2, n))) for n in (1, 127, 128, 200, 4096, 10**5)] == \
        [8192, 8192, 128, 192, 4096, 8192]
# -- PyTorch autograd -----------------------------------------------------------------------

TORCH_CASES = [(fn, weights, shape, dtype)
               for fn in ("layer_norm", "rms_norm")
               for weights in (True, False)
               for shape in ((16, 8), (3, 4, 8))
               for dtype in (np.float64, np.float32)]


@pytest.mark.parametrize("fn,weights,shape,dtype", TORCH_CASES,
                         ids=[f"{f}-{'w' if w else 'noweight'}-{len(s)}d-{np.dtype(d).name}"
                              for f, w, s, d in TORCH_CASES])
def test_against_torch_autograd(mods, fn, weights, shape, dtype):
    torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
    name = "layernorm" if fn == "layer_norm" else "rmsnorm"
    forward, backward = _fns(mods, name)
    rng = np.random.default_rng(9)
    N = shape[-1]
    X = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(N).astype(dtype) if weights else np.ones(N, dtype)
    beta = rng.standard_normal(N).astype(dtype) if weights else np.zeros(N, dtype)
    # the inputs rounded to `dtype` are exact in float64: torch in float64 is the reference
    x = torch.tensor(X.astype(np.float64), requires_grad=True)
    w = torch.tensor(gamma.astype(np.float64), requires_grad=True) if weights else None
    b = torch.tensor(beta.astype(np.float64), requires_grad=True) if weights else None
    if name == "layernorm":
        y = torch.nn.functional.layer_norm(x, (N,), w, b, eps=EPS)
        Y = forward(X, gamma, beta)
    else:
        y = torch.nn.functional.rms_norm(x, (N,), w, eps=EPS)
        Y = forward(X, gamma)
    y.backward(torch.tensor(dY.astype(np.float64)))
    grads = backward(dY, X, gamma)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    assert Y.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert Y.shape == shape and grads[0].shape == shape and grads[1].shape == (N,)
    assert _rel(Y, y.detach().numpy()) <= tol
    assert _rel(grads[0], x.grad.numpy()) <= tol
    if weights:
        assert _rel(grads[1], w.grad.numpy()) <= 10 * tol
        if name == "layernorm":
            assert _rel(grads[2], b.grad.numpy()) <= 10 * tol


# -- the unbiased model against a hand-written NumPy reference -------------------------------

def _unbiased_reference(dY, X, gamma, beta, eps=EPS):
    """BatchNorm with v = sum (x - mu)^2/(N - 1), written out by hand (float64)."""
    N = X.shape[0]
    mu = X.mean(axis=0)
    xc = X - mu
    s = np.sqrt((xc**2).sum(axis=0) / (N - 1) + eps)
    Y = gamma * xc / s + beta
    dX = gamma / s * (dY - dY.mean(axis=0) - xc / s**2 * (xc * dY).sum(axis=0) / (N - 1))
    return Y, dX, (dY * xc / s).sum(axis=0), dY.sum(axis=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [2, 3, 17])
def test_unbiased_against_numpy_reference(mods, dtype, N):
    dY, X, (gamma, beta) = _inputs("batchnorm-unbiased", "normal", dtype, N, (5,), seed=N)
    f64 = [a.astype(np.float64) for a in (dY, X, gamma, beta)]
    Y, dX, dg, db = _unbiased_reference(*f64)
    forward, backward = _fns(mods, "batchnorm-unbiased")
    tol = 1e-12 if dtype == np.float64 else 1e-6  # the reference rounds too
    got = backward(dY, X, gamma)
    assert _rel(forward(X, gamma, beta), Y) <= tol
    for a, b in zip(got, (dX, dg, db)):
        assert a.dtype == dtype and _rel(a, b) <= tol


# -- unrolled and lambdify ------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_unrolled_and_lambdify_match_the_vectorised_module(mods, name):
    rng = np.random.default_rng(4)
    shape = _shape(name, 4, (2, 3) if name != "batchnorm-unbiased" else (3,))
    X, dY = rng.standard_normal(shape), rng.standard_normal(shape)
    params = _params(name, 4, shape[1:], rng)
    forward, backward = _fns(mods, name)
    u_forward, u_backward = _fns(mods, name, "unrolled4")
    for a, b in zip(u_backward(dY, X, params[0]), backward(dY, X, params[0])):
        assert a.shape == b.shape and _rel(a, b) < 1e-12
    assert _rel(u_forward(X, *params), forward(X, *params)) < 1e-13
    g = lambdify_backward(4, model=name)
    assert g._fields == tuple(f"d{leaf}" for leaf in GRADS[name]) + ("args",)
    # one set: the first
    if name == "batchnorm-unbiased":
        xs, dys, gam = X[:, 0], dY[:, 0], [params[0][0]]
        ref = [backward(dY, X, params[0])[0][:, 0]]
    else:
        xs, dys, gam = X[0, 0], dY[0, 0], list(params[0])
        ref = [backward(dY[:1, :1], X[:1, :1], params[0])[0][0, 0]]
    args = [*xs, *dys, *gam, EPS]
    assert [str(a) for a in g.args[:2]] == ["x[1]", "x[2]"]
    assert _rel(np.array(g.dx(*args), dtype=np.float64), ref[0]) < 1e-12
    with pytest.raises(ValueError, match=r"unrolled for N = 4; X has shape"):
        u_backward(np.ones(_shape(name, 5)), np.ones(_shape(name, 5)),
                   np.ones(3 if name == "batchnorm-unbiased" else 5))


# -- proofs refuse wrong code ---------------------------------------------------------------

def test_a_wrong_plan_is_refused():
    import dataclasses

    plan = MP.model_plan(load("layernorm"))
    # drop dX's mean term: -RowSum(dY*gamma)/N
    wrong_x = plan.outputs["x"].xreplace({sp.Symbol("s1"): 0})
    wrong = dataclasses.replace(plan, outputs={**plan.outputs, "x": wrong_x})
    with pytest.raises(SymbnError, match=r"generated dx\[1\] \(set 1\) is disproved equal to "
                                         r"the closed form at N = 2"):
        MP.prove_model_plan(wrong, ns=(2,))
    wrong = dataclasses.replace(plan, centred=None)  # D read as X - K, not centred: wrong
    with pytest.raises(SymbnError, match="refusing to write the code"):
        MP.prove_model_plan(wrong, ns=(2,))



@pytest.mark.parametrize("name, mutate, grad", [
    # the coefficients of dX's stacked monomials in the wrong order
    ("layernorm", lambda t: t.replace("(t3, t2, t4)", "(t3, t4, t2)"), "dx"),
    # dgamma accumulated without its per-set factor
    ("rmsnorm", lambda t: t.replace("dgamma += _over(_ct2, _p1)", "dgamma += _over(1, _p1)"),
     "dgamma"),
])
def test_wrong_emitted_text_is_refused(monkeypatch, name, mutate, grad):
    """Proved expressions emitted wrongly: the trace of the module's own backward stops it."""
    from symbn.codegen import model_vector

    original = model_vector.vector_module
    monkeypatch.setattr(model_vector, "vector_module", lambda *a: mutate(original(*a)))
    assert mutate(original(*_linear(name))) != original(*_linear(name))
    with pytest.raises(SymbnError, match=rf"emitted {name}_backward's {grad} is disproved at "
                                         r"N = 1, D = 2 .*refusing to write the code"):
        codegen.generate("numpy", model=name)


def _linear(name):
    from symbn.codegen.model_terms import linear_plan

    return linear_plan(MP.model_plan(load(name))), []

def test_the_symbolic_n_hook_is_called(monkeypatch):
    plan = MP.model_plan(load("rmsnorm"))
    monkeypatch.setattr(MP, "SYMBOLIC_N", [lambda p, c: None, lambda p, c: ["every N: proved"]])
    assert MP.prove_all_n(plan) == ["every N: proved"] and plan.symbolic_n == ["every N: proved"]


# -- a user's model file --------------------------------------------------------------------

USER = '''
name = "centred-scale"
title = "Centring with a learned scale, no variance"

[leaves]
x = "element"
gamma = "along"

[nodes]
mu = "Sum(x[k], (k, 1, N))/N"
y = "gamma[i]*(x[i] - mu)"

[model]
output = "y"
axis = -1

[results]
"D(f, x[j])" = "gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N"
"D(f, gamma[j])" = "dy[j]*(x[j] - mu)"
'''


# y = gamma*sqrt(x): element-wise, but not a polynomial in x (NumPy target only)
ROOT = '''
name = "root-scale"
title = "Square root with a learned scale"

[leaves]
x = "element"
gamma = "along"

[nodes]
y = "gamma[i]*sqrt(x[i])"

[model]
output = "y"
axis = -1

[results]
"D(f, x[j])" = "gamma[j]*dy[j]/(2*sqrt(x[j]))"
"D(f, gamma[j])" = "dy[j]*sqrt(x[j])"
'''


def test_non_polynomial_model_keeps_the_numpy_target():
    text = codegen.generate("numpy", model=parse(ROOT, "r"))
    assert "def root_scale_backward(dY, X, gamma, eps" not in text
    assert "def root_scale_backward(dY, X, gamma):" in text


def test_user_model_file(tmp_path):
    path = tmp_path / "centred.toml"
    path.write_text(USER)
    text = codegen.generate("numpy", model=str(path))
    assert "    centred_scale_backward(dY, X, gamma) -> (dX, dgamma)" in text
    out = tmp_path / "centred.py"
    codegen.write(text, str(out))
    m = load_module(out)
    rng = np.random.default_rng(1)
    X, dY, gamma = rng.standard_normal((3, 5)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    dX, dg = m.centred_scale_backward(dY, X, gamma)
    g = gamma * dY
    assert np.allclose(dX, g - g.mean(axis=-1, keepdims=True), rtol=1e-14, atol=1e-14)
    assert np.allclose(dg, (dY * (X - X.mean(axis=-1, keepdims=True))).sum(axis=0), rtol=1e-13)
    assert np.allclose(m.centred_scale_forward(X, gamma),
                       gamma * (X - X.mean(axis=-1, keepdims=True)), rtol=1e-14, atol=1e-14)
    u = codegen.generate("numpy", n=3, unrolled=True, model=parse(USER, "user.toml"))
    assert "unrolled for N = 3" in u



THIRD = USER.replace('name = "centred-scale"', 'name = "third-scale"').replace(
    'y = "gamma[i]*(x[i] - mu)"', 'y = "gamma[i]*(x[i] - mu)/3"').replace(
    '"gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N"',
    '"(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N)/3"').replace(
    '"dy[j]*(x[j] - mu)"', '"dy[j]*(x[j] - mu)/3"')


def test_a_coefficient_no_float_holds_keeps_exact_scalars_exact(tmp_path):
    """1/3 in the closed forms: a float for float arrays, a fraction for exact scalars, so
    that the module's own trace (which runs before it is written) proves it."""
    text = codegen.generate("numpy", model=parse(THIRD, "third.toml"))
    assert "_rational(1, 3, X)" in text and "at N = 1 and 3, D = 2 (symbn check-impl)" in text
    out = tmp_path / "third.py"
    codegen.write(text, str(out))
    m = load_module(out)
    X = np.array([[Fraction(1), Fraction(2), Fraction(4)]], dtype=object)
    dY = np.array([[Fraction(1), Fraction(0), Fraction(0)]], dtype=object)
    dX, dg = m.third_scale_backward(dY, X, np.array([Fraction(1)] * 3, dtype=object))
    assert dX.tolist() == [[Fraction(2, 9), Fraction(-1, 9), Fraction(-1, 9)]]
    assert dg.tolist() == [Fraction(-4, 9), 0, 0]
    x, y, g = np.array([[1.0, 2.0, 4.0]]), np.array([[1.0, 0.0, 0.0]]), np.ones(3)
    assert np.allclose(m.third_scale_backward(y, x, g)[0], [[2 / 9, -1 / 9, -1 / 9]],
                       rtol=1e-15, atol=0)

REFUSED = [
    ("row j inside a sum",
     '"D(f, x[j])" = "gamma[j]*dy[j] - Sum(gamma[k]*dy[k]*x[j], (k, 1, N))/N"',
     (r"\[results\] D\(f, x\[j\]\): x\[j\] is read inside a sum over k in '.*'; the NumPy "
      "target computes per-set sums")),
    ("KroneckerDelta",
     '"D(f, x[j])" = "gamma[j]*dy[j] - Sum(KroneckerDelta(j, k)*gamma[k]*dy[k], (k, 1, N))/N"',
     "KroneckerDelta is not a sum, product or power"),
    ("double sum",
     '"D(f, x[j])" = "gamma[j]*dy[j] - Sum(Sum(gamma[k]*dy[k], (k, 1, N)), (i, 1, N))/N**2"',
     "a sum inside a sum"),
]


@pytest.mark.parametrize("case,result,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_terms_not_of_the_shape_are_refused(case, result, message):
    text = USER.replace(USER.split("\n")[-3], result)
    with pytest.raises(SymbnError, match=message) as err:
        codegen.generate("numpy", model=parse(text, "user.toml"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call,message", [
    (lambda: codegen.generate("numba", model=parse(ROOT, "r")),
     (r"root-scale: the numba target needs every output linear in products of the element "
      r"arrays \(per-set coefficients times monomials\); use target='numpy'")),
    (lambda: codegen.generate("numpy", model=parse(USER.replace("axis = -1", "axis = 1"), "u")),
     r"u: \[model\] axis = 1; the NumPy target reduces along axis 0 \(N, D\) or -1"),
    (lambda: codegen.generate("numpy", model=parse(USER.replace(
        '"D(f, gamma[j])" = "dy[j]*(x[j] - mu)"', ""), "u")),
     r"u: no closed form for gamma in \[results\]"),
    (lambda: codegen.generate("numpy", n=1, unrolled=True, model="batchnorm-unbiased"),
     "batchnorm-unbiased is defined for N >= 2, got n=1"),
    (lambda: lambdify_backward(99, model="rmsnorm"), "n=99 is not an integer from 1 to 16"),
    (lambda: codegen.generate("numpy", model="nosuchmodel"), "no such file or shipped model"),
])
def test_generation_errors(call, message):
    with pytest.raises(SymbnError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


# -- contract of the generated functions ----------------------------------------------------

BAD = [
    ("gamma shape", "layernorm", lambda f, b: b(np.ones((2, 4)), np.ones((2, 4)), np.ones(3)),
     r"gamma has shape \(3,\), expected \(4,\) to match X \(2, 4\) along axis -1"),
    ("eps zero", "rmsnorm", lambda f, b: b(np.ones((2, 4)), np.ones((2, 4)), np.ones(4), 0.0),
     "eps must be a positive finite number, got 0.0"),
    ("mixed dtypes", "layernorm",
     lambda f, b: b(np.ones((2, 4), np.float32), np.ones((2, 4)), np.ones(4)),
     "X has dtype float64 but dY has float32; use one dtype"),
    ("int dtype", "rmsnorm", lambda f, b: f(np.ones((2, 4), int), np.ones(4)),
     "X has dtype int64; use float32 or float64"),
    ("shapes differ", "layernorm", lambda f, b: b(np.ones((3, 4)), np.ones((2, 4)), np.ones(4)),
     r"X has shape \(2, 4\), expected \(3, 4\) to match dY \(3, 4\)"),
    ("N below min_n", "batchnorm-unbiased",
     lambda f, b: b(np.ones((1, 3)), np.ones((1, 3)), np.ones(3)),
     r"dY has shape \(1, 3\): this layer needs at least 2 elements along axis 0"),
    ("set leaf shape", "batchnorm-unbiased",
     lambda f, b: f(np.ones((4, 3)), np.ones(3), np.ones(4)),
     r"beta has shape \(4,\), expected \(3,\) \(one value per set\)"),
    ("not 2-d", "batchnorm-unbiased", lambda f, b: f(np.ones((4, 3, 2)), np.ones(3), np.ones(3)),
     r"X must be a 2-d array of shape \(N, D\), got shape \(4, 3, 2\)"),
    ("empty", "layernorm", lambda f, b: f(np.ones((0, 4)), np.ones(4), np.ones(4)),
     r"X is empty \(shape \(0, 4\)\)"),
]


@pytest.mark.parametrize("kind", ["numpy", "unrolled4"])
@pytest.mark.parametrize("case,name,call,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input(mods, kind, case, name, call, message):
    with pytest.raises(ValueError, match=message):
        call(*_fns(mods, name, kind))


def test_one_element_sets_and_one_dimensional_input(mods):
    backward = _fns(mods, "layernorm")[1]
    dX, dg, db = backward(np.array([0.5, -2.0, 1.0]), np.array([3.0, 4.0, 6.0]), np.ones(3))
    assert dX.shape == dg.shape == db.shape == (3,)
    assert db.tolist() == [0.5, -2.0, 1.0]
    dX, dg, db = backward(np.array([[0.5], [2.0]]), np.array([[3.0], [4.0]]), np.ones(1))
    assert dX.tolist() == [[0.0], [0.0]] and dg.tolist() == [0.0] and db.tolist() == [2.5]
    Y = mods["rmsnorm", "numpy"].rmsnorm_forward(np.array([[3.0, 4.0]]), np.ones(2), eps=1e-300)
    assert np.allclose(Y, [[3 / np.sqrt(12.5), 4 / np.sqrt(12.5)]], rtol=1e-15)
