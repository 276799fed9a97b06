"""The numba target of the row models and the unbiased BatchNorm (`generate("numba",
model=...)`): against the generated NumPy module, PyTorch autograd of layer_norm / rms_norm
(float64, with and without weights, 3-D input), a hand-written NumPy reference for the
unbiased model, float32, `out=`, the serial and the parallel kernels, its text.

The compiled modules are shared per test module (numba compiles each kernel once per dtype
and variant: small shapes, few variants)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generated import load_module

from symbn import codegen

pytest.importorskip("numba", reason="numba not installed (optional extra symbn[numba])")

MODELS = ["layernorm", "rmsnorm", "batchnorm-unbiased"]
EPS = 1e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numba_models")
    out = {}
    for name in MODELS:
        for target in ("numba", "numpy"):
            out[name, target] = tmp / f"{name.replace('-', '_')}_{target}.py"
            codegen.write(codegen.generate(target, model=name), str(out[name, target]))
    return out


@pytest.fixture(scope="module")
def mods(files):
    return {key: load_module(path) for key, path in files.items()}


def _fns(mods, name, target="numba"):
    m, prefix = mods[name, target], name.replace("-", "_")
    return getattr(m, f"{prefix}_forward"), getattr(m, f"{prefix}_backward")


def _inputs(name, dtype, seed=0, N=37, sets=(2, 3), hard=False):
    """dY, X, gamma, beta: (..., N) and (N,) for the row models, (N, D) and (D,) for the
    unbiased model."""
    rng = np.random.default_rng(seed)
    shape = (N, sets[-1]) if name == "batchnorm-unbiased" else (*sets, N)
    X = rng.standard_normal(shape)
    if hard:
        X = 1e4 + 1e-2 * X
    p = shape[1] if name == "batchnorm-unbiased" else N
    gamma, beta = rng.standard_normal((2, p))
    return [a.astype(dtype) for a in (rng.standard_normal(shape), X, gamma, beta)]


def _rel(got, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / max(np.max(np.abs(ref)),
                                                                       1e-300))


@pytest.fixture(params=["serial", "parallel"])
def variant(request, mods):
    """Runs the test with the serial kernels, then with the parallel ones (PARALLEL_MIN 0)."""
    saved = {k: m.PARALLEL_MIN for k, m in mods.items() if k[1] == "numba"}
    for k in saved:
        mods[k].PARALLEL_MIN = None if request.param == "serial" else 0
    yield request.param
    for k, value in saved.items():
        mods[k].PARALLEL_MIN = value


# -- the text --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_text_names_and_proofs(files, name):
    text = files[name, "numba"].read_text()
    prefix = name.replace("-", "_")
    assert f"def {prefix}_forward(" in text and f"def {prefix}_backward(" in text
    assert "fused numba loops" in text and "import numba" in text
    low = 2 if name == "batchnorm-unbiased" else 1
    assert f"N = {low}..6 (one set) and N = 2 with two sets, symbn.prove.Algebra" in text
    assert f"closed forms = forward mode = backward mode (symbn verify --model {name})" in text
    assert "def _backward_serial(" in text and "def _backward_parallel(" in text
    assert "sympy" not in text.split('"""', 2)[2]
    # the kernels take the blocks' place: none of the NumPy module's block helpers
    tree = ast.parse(text)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
              if isinstance(t, ast.Name)}
    assert not names & {"BLOCK", "_blocks", "_block_rows", "_stack", "_combine", "_rdot",
                        "_centred", "_count", "_rational"}
    assert {"_element", "_along", "_out", "_apart"} <= names


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_generated_files_pass_ruff(files):
    paths = [str(files[name, "numba"]) for name in MODELS]
    run = subprocess.run(["ruff", "check", "--no-cache", *paths], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cli_writes_the_numba_module(tmp_path):
    out = tmp_path / "ln_fast.py"
    run = subprocess.run([sys.executable, "-m", "symbn", "codegen", "--model", "rmsnorm",
                          "--target", "numba", "-o", str(out)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "rmsnorm, numba" in run.stdout and "def rmsnorm_backward(" in out.read_text()


# -- against the NumPy module ----------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("hard", [False, True])
def test_agrees_with_numpy_module(mods, name, variant, hard):
    """Also on rows of mean 1e4 and spread 1e-2, where a centring computed as x - (K + mean)
    instead of (x - K) - mean (a reassociation) would lose five digits."""
    dY, X, gamma, beta = _inputs(name, np.float64, hard=hard)
    f_nb, b_nb = _fns(mods, name)
    f_np, b_np = _fns(mods, name, "numpy")
    params = (gamma,) if name == "rmsnorm" else (gamma, beta)
    assert _rel(f_nb(X, *params), f_np(X, *params)) <= 1e-14
    for a, b in zip(b_nb(dY, X, gamma), b_np(dY, X, gamma)):
        assert a.shape == b.shape and a.dtype == np.float64 and _rel(a, b) <= 1e-13


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("hard", [False, True])
def test_float32(mods, name, hard):
    dY, X, gamma, _ = _inputs(name, np.float32, seed=3, hard=hard)
    _, b_nb = _fns(mods, name)
    _, b_np = _fns(mods, name, "numpy")
    ref = b_np(*[a.astype(np.float64) for a in (dY, X, gamma)])
    for a, b in zip(b_nb(dY, X, gamma), ref):
        assert a.dtype == np.float32 and _rel(a, b) <= 1e-5


# -- against PyTorch autograd (float64, with and without weights, 3-D input) ------------------

@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("weights", [True, False])
def test_against_torch_autograd(mods, name, weights, variant):
    torch = pytest.importorskip("torch", reason="torch not installed")
    dY, X, gamma, beta = _inputs(name, np.float64, seed=5, sets=(2, 4))
    if not weights:
        gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
    x = torch.tensor(X, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True) if weights else None
    b = torch.tensor(beta, requires_grad=True) if weights and name == "layernorm" else None
    shape = (X.shape[-1],)
    if name == "layernorm":
        y = torch.nn.functional.layer_norm(x, shape, g, b, eps=EPS)
    else:
        y = torch.nn.functional.rms_norm(x, shape, g, eps=EPS)
    leaves = [t for t in (x, g, b) if t is not None]
    grads = torch.autograd.grad(y, leaves, torch.tensor(dY))
    forward, backward = _fns(mods, name)
    params = (gamma,) if name == "rmsnorm" else (gamma, beta)
    assert _rel(forward(X, *params), y.detach().numpy()) <= 1e-13
    got = backward(dY, X, gamma)
    assert _rel(got[0], grads[0].numpy()) <= 1e-12
    if weights:
        for a, t in zip(got[1:], grads[1:]):
            assert _rel(a, t.numpy()) <= 1e-12


# -- row tiles and chunks: full tiles, shorter last tiles, several chunks per thread --------

def _row_reference(name, dY, X, gamma):
    """dX, dgamma (, dbeta) of LayerNorm / RMSNorm along the last axis, written out by hand."""
    if name == "layernorm":
        xc = X - X.mean(axis=-1, keepdims=True)
        s = np.sqrt((xc**2).mean(axis=-1, keepdims=True) + EPS)
        g = gamma * dY
        dX = (g - g.mean(axis=-1, keepdims=True)
              - xc / s**2 * (g * xc).mean(axis=-1, keepdims=True)) / s
        return dX, (dY * xc / s).reshape(-1, X.shape[-1]).sum(axis=0), \
            dY.reshape(-1, X.shape[-1]).sum(axis=0)
    s = np.sqrt((X**2).mean(axis=-1, keepdims=True) + EPS)
    g = gamma * dY
    dX = g / s - X / s**3 * (g * X).mean(axis=-1, keepdims=True)
    return dX, (dY * X / s).reshape(-1, X.shape[-1]).sum(axis=0)


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("rows, chunk_rows", [((3, 7), 64), ((5, 26), 3), ((1, 4), 1)])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "row-by-row"])
def test_row_tiles_and_chunks(mods, name, rows, chunk_rows, fuse, variant):
    """The along gradients add a tile of four rows at a time (with the element results of
    those rows in the same pass when fused); chunks (of CHUNK_ROWS rows or more) whose row
    count is no multiple of four end in a shorter tile."""
    dY, X, gamma, _ = _inputs(name, np.float64, seed=17, N=29, sets=rows)
    m = mods[name, "numba"]
    saved = m.CHUNK_ROWS, m.FUSE_BYTES
    m.CHUNK_ROWS, m.FUSE_BYTES = chunk_rows, 0 if fuse else 1 << 62
    try:
        got = _fns(mods, name)[1](dY, X, gamma)
    finally:
        m.CHUNK_ROWS, m.FUSE_BYTES = saved
    for a, b in zip(got, _row_reference(name, dY, X, gamma)):
        assert a.shape == b.shape and _rel(a, b) <= 1e-13


def test_rows_far_from_their_first_element_are_summed_in_two_passes(mods):
    """The one-pass sums on the shift K = x[0] cancel by up to sum((x - K)**2) / sum(D**2)
    = 1 + z**2 <= N (z: x[0] in standard deviations from the mean).  Rows past ONE_PASS are
    summed again in two passes: within 1e-14 of 50-digit mpmath in float64, where the
    one-pass sums alone (ONE_PASS infinite) lose more than ten times as much."""
    from test_codegen_models import _mpmath_reference

    rng = np.random.default_rng(5)
    X = 7.0 + 1e-3 * rng.standard_normal((4, 1024))
    X[:, 0] += [1.0, 10.0, 30.0, 1e3]  # z of about 32 = sqrt(N): one-pass would cancel
    dY, gamma = rng.standard_normal((4, 1024)), rng.standard_normal(1024)
    ref = _mpmath_reference("layernorm", dY, X, gamma)[0]
    m = mods["layernorm", "numba"]
    errors = {}
    for ratio in (m.ONE_PASS, np.inf):
        saved, m.ONE_PASS = m.ONE_PASS, ratio
        try:
            errors[ratio] = _rel(_fns(mods, "layernorm")[1](dY, X, gamma)[0], ref)
        finally:
            m.ONE_PASS = saved
    assert errors[m.ONE_PASS] <= 1e-14 and errors[np.inf] > 10 * errors[m.ONE_PASS]


# -- the unbiased model against a hand-written NumPy reference --------------------------------

def _unbiased_reference(dY, X, gamma, beta, eps=EPS):
    """BatchNorm with v = sum (x - mu)^2/(N - 1), written out by hand (float64)."""
    N = X.shape[0]
    xc = X - X.mean(axis=0)
    s = np.sqrt((xc**2).sum(axis=0) / (N - 1) + eps)
    Y = gamma * xc / s + beta
    dX = gamma / s * (dY - dY.mean(axis=0) - xc / s**2 * (xc * dY).sum(axis=0) / (N - 1))
    return Y, dX, (dY * xc / s).sum(axis=0), dY.sum(axis=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unbiased_against_numpy_reference(mods, dtype, variant):
    dY, X, gamma, beta = _inputs("batchnorm-unbiased", dtype, seed=7, N=19, sets=(6,))
    Y, dX, dg, db = _unbiased_reference(*[a.astype(np.float64) for a in (dY, X, gamma, beta)])
    forward, backward = _fns(mods, "batchnorm-unbiased")
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert _rel(forward(X, gamma, beta), Y) <= tol
    for a, b in zip(backward(dY, X, gamma), (dX, dg, db)):
        assert a.dtype == dtype and _rel(a, b) <= tol


# -- out=, refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_out_buffer_and_refusals(mods, name):
    dY, X, gamma, _ = _inputs(name, np.float64, seed=11)
    _, backward = _fns(mods, name)
    out = np.empty_like(X)
    got = backward(dY, X, gamma, out=out)
    assert got[0] is out and _rel(out, backward(dY, X, gamma)[0]) == 0
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array"):
        backward(dY, X, gamma, out=np.empty(X.shape, np.float32))
    with pytest.raises(ValueError, match="for exact scalars .object arrays. use the NumPy"):
        backward(dY.astype(object), X.astype(object), gamma.astype(object))


# -- a user's model file: RMSNorm with weight (1 + gamma), sums of polynomials ---------------

def test_user_model_file_against_numpy_and_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed")
    model = Path(__file__).parent / "models" / "gemma-rmsnorm.toml"
    modules = {}
    for target in ("numba", "numpy"):
        path = tmp_path / f"gemma_{target}.py"
        codegen.write(codegen.generate(target, model=str(model)), str(path))
        modules[target] = load_module(path)
    dY, X, gamma, _ = _inputs("rmsnorm", np.float64, seed=13)
    got = modules["numba"].gemma_rmsnorm_backward(dY, X, gamma)
    for a, b in zip(got, modules["numpy"].gemma_rmsnorm_backward(dY, X, gamma)):
        assert _rel(a, b) <= 1e-13
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(gamma, requires_grad=True)
    y = torch.nn.functional.rms_norm(x, (X.shape[-1],), 1 + w, eps=EPS)
    for a, t in zip(got, torch.autograd.grad(y, (x, w), torch.tensor(dY))):
        assert _rel(a, t.numpy()) <= 1e-12


def _centring_flipped(text: str) -> str:
    return text.replace("-= _m  # D", "+= _m  # D").replace(" - _m", " + _m")


def _parallel_only(text: str) -> str:  # wrong in the parallel kernels alone
    head, sep, tail = text.partition("_parallel(")
    return head + sep + tail.replace("-= _m  # D", "-= 1.01 * _m  # D").replace(
        " - _m", " - 1.01 * _m")


def _nan_in_one_row(text: str) -> str:  # NaN at one row of a set, serial kernel included
    return text.replace("_m = e0/N\n", "_m = e0/N + (_i == 3) * math.nan\n").replace(
        " - _m[_c]", " - _m[_c] - (_i == 3) * math.nan")


def _one_pass_only(text: str) -> str:  # the one-pass sums wrong, the two-pass ones right
    return text.replace("s0 = -N*_m**2 + e1", "s0 = -(N - 1)*_m**2 + e1")


def _two_pass_only(text: str) -> str:  # wrong only where a row is summed in two passes
    return text.replace("= _backward_sums(dY_, X_, gamma_, _i, _K, _m)",
                        "= _backward_sums(dY_, X_, gamma_, _i, _K, 1.01*_m)")


def _fused_only(text: str) -> str:  # wrong only where four rows are written in one pass
    return text.replace("dX_[_i0 + 1, _j] = _D1*_t4_1", "dX_[_i0 + 1, _j] = _D1*_t4_0")


@pytest.mark.parametrize("name, mutate", [
    (name, mutate) for name in ["layernorm", "batchnorm-unbiased"]
    for mutate in [_centring_flipped, _parallel_only, _nan_in_one_row]] + [
    ("layernorm", mutate) for mutate in [_one_pass_only, _two_pass_only, _fused_only]])
def test_a_numba_kernel_that_differs_from_the_numpy_module_is_refused(monkeypatch, name,
                                                                      mutate):
    """The kernels are a second text of the proved plan: one run as Python (numba's
    NUMBA_DISABLE_JIT) that gives other values than the NumPy module, in either kernel or a
    NaN, stops the generation."""
    from symbn.codegen import model_numba
    from symbn.errors import SymbnError

    right = model_numba.numba_module

    def altered(*args, **kwargs):
        text = right(*args, **kwargs)
        wrong = mutate(text)
        assert wrong != text
        return wrong

    monkeypatch.setattr(model_numba, "numba_module", altered)
    with pytest.raises(SymbnError, match="numba functions differ from the proved NumPy ones"):
        codegen.generate("numba", model=name)


def test_the_numba_check_is_named_in_the_header():
    assert "checked, not proved: the numba functions" in codegen.generate("numba",
                                                                          model="rmsnorm")


def test_a_layer_linear_in_x_along_axis_0(tmp_path):
    """y = gamma[i]*x[i] along axis 0: no sums, numbers for coefficients, so nothing to do
    per column (the kernel once wrote an empty loop there)."""
    from symbn.models import parse

    model = parse('name = "scaled"\ntitle = "scaled"\n[leaves]\nx = "element"\n'
                  'gamma = "along"\n[nodes]\ny = "gamma[i]*x[i]"\n[model]\noutput = "y"\n'
                  'axis = 0\n[results]\n"D(f, x[j])" = "gamma[j]*dy[j]"\n'
                  '"D(f, gamma[j])" = "dy[j]*x[j]"\n', "scaled.toml")
    m = load_module(tmp_path / "scaled.py", codegen.generate("numba", model=model))
    rng = np.random.default_rng(12)
    X, dY, gamma = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), \
        rng.standard_normal(6)
    dX, dgamma = m.scaled_backward(dY, X, gamma)
    assert np.allclose(dX, gamma[:, None] * dY) and np.allclose(dgamma, (dY * X).sum(axis=1))


def test_a_wrong_one_pass_expansion_is_refused_by_the_proof(monkeypatch):
    """The one-pass sums are proved like the plan they come from: RowSum(D**2) taken as
    RowSum((X - K)**2) - (N - 1)*_m**2 is found unequal at N = 2, and nothing is
    written (before any numeric check runs)."""
    from symbn.codegen import model_terms
    from symbn.errors import SymbnError

    right = model_terms.one_pass

    def wrong(lp):
        op = right(lp)
        plan = op.lp.plan
        n = model_terms.N
        bad = [(s, e.xreplace({n: n - 1}) if str(s) == "s0" else e) for s, e in plan.backward]
        assert bad != plan.backward
        op.lp.plan.backward = bad
        return op

    monkeypatch.setattr(model_terms, "one_pass", wrong)
    with pytest.raises(SymbnError, match="dx.1. .set 1. is disproved equal to the closed form at N = 2"):
        codegen.generate("numba", model="layernorm")
