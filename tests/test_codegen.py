"""Generated code against independent references: exact values, finite differences, mpmath,
PyTorch autograd; its text, its errors, and the `symbn codegen` command."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from generated import assert_ruff_clean, load_module, needs_ruff

from symbn import closed_form, codegen, lambdify_backward
from symbn.cli import main
from symbn.differentiate import backward_gradient
from symbn.errors import SymbnError
from symbn.model import BatchNorm

EPS = 1e-5


@pytest.fixture(scope="module")
def sources():
    return {"numpy": codegen.generate("numpy"), "numba": codegen.generate("numba"),
            "unrolled4": codegen.generate("numpy", n=4, unrolled=True)}


@pytest.fixture(scope="module")
def files(sources, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generated")
    out = {}
    for name, text in sources.items():
        out[name] = tmp / f"bn_{name}.py"
        codegen.write(text, str(out[name]))
    return out


@pytest.fixture(scope="module")
def gen(files):
    return load_module(files["numpy"])


@pytest.fixture(scope="module")
def fused(files):
    pytest.importorskip("numba", reason="numba not installed (optional extra symbn[numba])")
    return load_module(files["numba"])


def _inputs(kind, dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(shape)
    if kind == "hard":
        X = 1e4 + 1e-2 * X
    return (rng.standard_normal(shape).astype(dtype), X.astype(dtype),
            rng.standard_normal(shape[1]).astype(dtype))


def _rel(got, ref):
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref)))


# -- the text ------------------------------------------------------------------------------

def test_module_text_comes_from_the_closed_form(sources):
    text = sources["numpy"]
    assert "numpy.einsum('ij,ij->j', D, D)" in text
    assert "numpy.einsum('ij,ij->j', D, dY)" in text
    assert "s1 = dY.sum(axis=0).astype(_wide(dtype))" in text
    assert "coef_D = -gamma*s2*t0/t1**(3/2)" in text
    assert "N = 1..6, symbn.prove.Algebra" in text
    assert "dX (every row j), dgamma, dbeta and Y above = closed form / model, with" in text
    assert "every N, symbn.general (symbolic N" in text
    assert "with the shift on any row k; where 1 <= j <= N, 1 <= k <= N, N >= 1" in text
    assert f"with SymPy {sp.__version__}" in text
    code = text.split('"""', 2)[2]
    assert "sympy" not in code and "import numpy" in code


def test_changing_the_mathematics_changes_the_code(monkeypatch):
    def no_mean(bn, j, c=1):  # the closed form without its -mean(dy) term: wrong
        inv = bn.v(c) + bn.eps
        mean_xdy = sp.Add(*[(bn.x(i, c) - bn.mu(c)) * bn.dy(i, c) for i in bn.rows()]) / bn.n
        return bn.gamma(c) * inv ** sp.Rational(-1, 2) * (
            bn.dy(j, c) - (bn.x(j, c) - bn.mu(c)) / inv * mean_xdy)

    right = codegen.plans()["backward"]
    assert "out += const" in codegen._numpy_module(codegen.plans(), [])
    monkeypatch.setattr(closed_form, "dx", no_mean)
    wrong = codegen.plans()["backward"]
    assert right.const is not None and wrong.const is None, "the -mean(dy) term is planned"
    assert "out += const" not in codegen._numpy_module(codegen.plans(), [])
    with pytest.raises(SymbnError, match="not proved at N = 1"):
        codegen.generate("numpy")


def _variant(bn, j, c=1, expand_mu=False):
    """The closed form written differently: SymPy merges dy_j into the sum's row-j term."""
    inv = bn.v(c) + bn.eps
    mean_dy = sp.Add(*[bn.dy(i, c) for i in bn.rows()]) / bn.n
    mean_xdy = sp.Add(*[(bn.x(i, c) - bn.mu(c)) * bn.dy(i, c) for i in bn.rows()]) / bn.n
    g = bn.gamma(c)
    first = g * inv ** sp.Rational(-1, 2) * (bn.dy(j, c) - mean_dy)
    if expand_mu:  # x_j and mu in separate terms: mu cancels only when multiplied out
        return (first - g * bn.x(j, c) * inv ** sp.Rational(-3, 2) * mean_xdy
                + g * bn.mu(c) * inv ** sp.Rational(-3, 2) * mean_xdy)
    return first - g * (bn.x(j, c) - bn.mu(c)) * inv ** sp.Rational(-3, 2) * mean_xdy


def test_symbolic_n_proof_rejects_a_wrong_plan():
    import dataclasses

    plans = codegen.plans()
    assert codegen.prove_plans_all_n(plans)[0].startswith("every N, symbn.general")
    wrong = dict(plans, backward=dataclasses.replace(plans["backward"], const=None))
    assert codegen.prove_plans_all_n(wrong) == [
        ("for symbolic N, dX is unknown (canonical form nonzero in the power-sum "
        "indeterminates): proved for the N above only")]


def test_fused_plan_takes_every_sum_in_one_pass_and_is_proved(sources):
    import dataclasses

    plans = codegen.plans()
    z = codegen.Z
    assert [e for _, e in plans["fused"].reductions] == [z, z**2, codegen.DY, z * codegen.DY]
    serial, parallel = (sources["numba"].split(f"def _backward_{v}(", 1)[1].split("\n\n\n", 1)[0]
                        for v in ("serial", "parallel"))
    assert serial == parallel, "one kernel, jitted serially and in parallel"
    kernel = serial
    # the sums read each row once (four rows a quarter apart, then the last rows % 4),
    # then dX reads it again
    for row in ("r", "r + q1", "r + q2", "r + q3"):
        assert kernel.count(f"X_[{row}, c]") == kernel.count(f"dY_[{row}, c]") == 1, row
    assert kernel.count("X_[i, c]") == 2 and kernel.count("dY_[i, c]") == 2
    assert "(and the fused dX, dgamma, dbeta from the shifted sums" in sources["numba"]
    wrong = dict(plans, fused=dataclasses.replace(plans["fused"], const=None))
    with pytest.raises(SymbnError, match=r"generated fused dX\[1\] is disproved"):
        codegen.prove_plans(wrong, ns=(2,))
    assert codegen.prove_plans_all_n(wrong)[0].startswith("for symbolic N, fused dX is unknown")


@pytest.mark.parametrize("expand_mu", [False, True])
def test_an_equivalent_closed_form_gives_code_computing_the_same(monkeypatch, tmp_path, gen,
                                                                 expand_mu):
    monkeypatch.setattr(closed_form, "dx", lambda bn, j, c=1: _variant(bn, j, c, expand_mu))
    path = tmp_path / "bn_variant.py"
    if expand_mu:  # planned and printed only: the prover leaves backward/dx at N = 1 unknown
        codegen.write(codegen._numpy_module(codegen.plans(), []), str(path))
    else:
        codegen.write(codegen.generate("numpy"), str(path))
    other = load_module(path)
    dY, X, gamma = _inputs("normal", np.float64, (7, 3), seed=12)
    for a, b in zip(other.batchnorm_backward(dY, X, gamma), gen.batchnorm_backward(dY, X, gamma)):
        assert np.allclose(a, b, rtol=1e-13, atol=1e-13)


@needs_ruff
def test_generated_files_pass_ruff(files):
    assert_ruff_clean(files.values())


@pytest.mark.parametrize("name", ["numpy", "unrolled4"])
def test_generated_module_imports_without_sympy(files, name):
    code = ("import sys, importlib.util; sys.modules['sympy'] = None\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(files[name])!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "import numpy as np; X = np.arange(8.0).reshape(4, 2) ** 2\n"
            "dX, dg, db = m.batchnorm_backward(np.ones((4, 2)), X, np.ones(2))\n"
            "assert 'sympy' not in sys.modules or sys.modules['sympy'] is None\n"
            "print(abs(dX).max() < 1e-12, db.tolist())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "[4.0,", "4.0]"]


# -- exact values from the prover's concrete-N expressions -----------------------------------

@pytest.mark.parametrize("n", range(1, 7))
def test_matches_exact_backward_gradient(gen, n):
    rng = np.random.default_rng(n)
    X = rng.integers(-8, 9, size=(n, 2)) / 4.0  # dyadic: exact in float64
    dY = rng.integers(-8, 9, size=(n, 2)) / 8.0
    gamma = np.array([1.5, -0.75])
    eps = 0.125
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma, eps)
    bn = BatchNorm(n)
    for c in range(2):
        point = {bn.x(i + 1): Fraction(X[i, c]) for i in range(n)}
        point |= {bn.dy(i + 1): Fraction(dY[i, c]) for i in range(n)}
        point |= {bn.gamma(): Fraction(gamma[c]), bn.eps: Fraction(eps)}
        exact = [bn.evaluate(backward_gradient(bn, bn.x(j)), point) for j in bn.rows()]
        exact += [bn.evaluate(backward_gradient(bn, s), point) for s in (bn.gamma(), bn.beta())]
        got = list(dX[:, c]) + [dgamma[c], dbeta[c]]
        scale = max(1.0, max(abs(float(sp.N(e, 30))) for e in exact))
        for k, (g, e) in enumerate(zip(got, exact)):
            assert abs(g - float(sp.N(e, 30))) <= 1e-14 * scale, (n, c, k, g, e)


def test_lambdify_backward_matches_generated_module(gen):
    dY, X, gamma = _inputs("normal", np.float64, (5, 3), seed=3)
    g = lambdify_backward(5)
    args = [*X, *dY, gamma, EPS]
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma)
    assert _rel(np.array(g.dx(*args)), dX) < 1e-12
    assert _rel(g.dgamma(*args), dgamma) < 1e-12 and _rel(g.dbeta(*args), dbeta) < 1e-14
    assert [str(a) for a in g.args[:2]] == ["x[1]", "x[2]"]


def test_unrolled_module_matches_and_checks_n(files, gen):
    u4 = load_module(files["unrolled4"])
    dY, X, gamma = _inputs("normal", np.float64, (4, 3), seed=4)
    beta = np.array([0.5, -1.0, 2.0])
    for got, ref in zip(u4.batchnorm_backward(dY, X, gamma), gen.batchnorm_backward(dY, X, gamma)):
        assert _rel(got, ref) < 1e-12
    assert _rel(u4.batchnorm_forward(X, gamma, beta), gen.batchnorm_forward(X, gamma, beta)) < 1e-13
    scalars = (1.0, 2.0, 4.0, -0.5, 0.5, -1.0, 0.25, 2.0, 1.5, 1e-3)  # x_1..x_4, dy_1..dy_4
    g = lambdify_backward(4)
    assert np.allclose(u4.dx(*scalars), g.dx(*scalars), rtol=1e-14)
    assert np.isclose(u4.dgamma(*scalars), g.dgamma(*scalars), rtol=1e-14)
    assert u4.dbeta(*scalars) == g.dbeta(*scalars) == 0.5 - 1.0 + 0.25 + 2.0
    with pytest.raises(ValueError, match=r"unrolled for N = 4; X has shape \(5, 3\)"):
        u4.batchnorm_backward(np.ones((5, 3)), np.ones((5, 3)), gamma)


# -- finite differences of the generated forward ---------------------------------------------

def test_central_differences_and_adjoint_identity(gen):
    dY, X, gamma = _inputs("normal", np.float64, (5, 3), seed=5)
    beta = np.array([0.1, 0.2, -0.3])
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma)

    def f(X_, gamma_=gamma, beta_=beta):
        return float(np.sum(dY * gen.batchnorm_forward(X_, gamma_, beta_)))

    def rel_error(a, b):  # cs231n
        return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))

    h = 1e-5
    numeric = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        e = np.zeros_like(X)
        e[idx] = h
        numeric[idx] = (f(X + e) - f(X - e)) / (2 * h)
    assert rel_error(numeric, dX) < 1e-8
    unit = np.eye(3) * h
    assert rel_error(np.array([(f(X, gamma + u) - f(X, gamma - u)) / (2 * h) for u in unit]),
                     dgamma) < 1e-8
    assert rel_error(np.array([(f(X, gamma, beta + u) - f(X, gamma, beta - u)) / (2 * h)
                               for u in unit]), dbeta) < 1e-8
    rng = np.random.default_rng(6)
    for _ in range(3):
        u = rng.standard_normal(X.shape)
        Ju = (gen.batchnorm_forward(X + h * u, gamma, beta)
              - gen.batchnorm_forward(X - h * u, gamma, beta)) / (2 * h)
        lhs, rhs = np.sum(dY * Ju), np.sum(dX * u)
        assert abs(lhs - rhs) / max(abs(lhs), abs(rhs)) < 1e-8


# -- 50-digit mpmath and PyTorch -------------------------------------------------------------

def _mpmath_backward(dY, X, gamma, eps=EPS):
    import mpmath

    mpmath.mp.dps = 50
    N, C = X.shape
    dX, dg = np.empty((N, C)), np.empty(C)
    for c in range(C):
        x = [mpmath.mpf(float(t)) for t in X[:, c]]
        g = [mpmath.mpf(float(t)) for t in dY[:, c]]
        mu = mpmath.fsum(x) / N
        xc = [t - mu for t in x]
        sigma = mpmath.sqrt(mpmath.fsum([t * t for t in xc]) / N + mpmath.mpf(eps))
        mean_dy, mean_xdy = mpmath.fsum(g) / N, mpmath.fsum([a * b for a, b in zip(xc, g)]) / N
        for i in range(N):
            dX[i, c] = float(mpmath.mpf(float(gamma[c])) / sigma
                             * (g[i] - mean_dy - xc[i] / sigma ** 2 * mean_xdy))
        dg[c] = float(mean_xdy * N / sigma)
    return dX, dg


TARGETS = {("normal", np.float64): 1e-14, ("hard", np.float64): 1e-13,
           ("normal", np.float32): 1e-6, ("hard", np.float32): 1e-5}


@pytest.mark.parametrize("kind,dtype", list(TARGETS))
def test_precision_against_mpmath(gen, kind, dtype):
    dY, X, gamma = _inputs(kind, dtype, (96, 6), seed=7)
    ref_dx, ref_dg = _mpmath_backward(dY, X, gamma)
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma)
    assert dX.dtype == dgamma.dtype == dbeta.dtype == dtype
    assert _rel(dX, ref_dx) <= TARGETS[kind, dtype]
    assert _rel(dgamma, ref_dg) <= 10 * TARGETS[kind, dtype]
    assert _rel(dbeta, dY.astype(np.float64).sum(axis=0)) <= 10 * TARGETS[kind, dtype]


@pytest.mark.parametrize("kind,dtype", list(TARGETS))
def test_numba_target_precision(fused, kind, dtype):
    dY, X, gamma = _inputs(kind, dtype, (96, 6), seed=8)
    ref_dx, ref_dg = _mpmath_backward(dY, X, gamma)
    dX, dgamma, dbeta = fused.batchnorm_backward(dY, X, gamma)
    assert dX.dtype == dtype
    assert _rel(dX, ref_dx) <= TARGETS[kind, dtype]
    assert _rel(dgamma, ref_dg) <= 10 * TARGETS[kind, dtype]
    assert _rel(dbeta, dY.astype(np.float64).sum(axis=0)) <= TARGETS[kind, dtype]


@pytest.mark.parametrize("parallel_min", [None, 0], ids=["serial", "parallel"])
def test_numba_target_agrees_with_numpy_target(fused, gen, parallel_min, monkeypatch):
    monkeypatch.setattr(fused, "PARALLEL_MIN", parallel_min)
    for shape in [(1, 3), (2, 1), (7, 33), (40, 300), (301, 5)]:
        dY, X, gamma = _inputs("normal", np.float64, shape, seed=shape[0])
        beta = np.linspace(-1, 1, shape[1])
        for a, b in zip(fused.batchnorm_backward(dY, X, gamma), gen.batchnorm_backward(dY, X, gamma)):
            assert np.allclose(a, b, rtol=1e-12, atol=1e-12), shape
        assert np.allclose(fused.batchnorm_forward(X, gamma, beta),
                           gen.batchnorm_forward(X, gamma, beta), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="eps"):
        fused.batchnorm_backward(dY, X, gamma, eps=0.0)


@pytest.mark.parametrize("kind,dtype,tol", [("normal", np.float64, 1e-12),
                                            ("hard", np.float64, 1e-8),
                                            ("normal", np.float32, 1e-6),
                                            ("hard", np.float32, 1e-5)])
def test_against_torch_autograd(gen, kind, dtype, tol):
    torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
    dY, X, gamma = _inputs(kind, dtype, (64, 8), seed=9)
    beta = np.linspace(-1, 1, 8)
    # the inputs rounded to `dtype` are exact in float64: torch in float64 is the reference
    x = torch.tensor(X.astype(np.float64), requires_grad=True)
    g = torch.tensor(gamma.astype(np.float64), requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, g, b, training=True, eps=EPS)
    y.backward(torch.tensor(dY.astype(np.float64)))
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma)
    assert _rel(dX, x.grad.numpy()) <= tol
    assert _rel(dgamma, g.grad.numpy()) <= 10 * tol
    assert _rel(dbeta, b.grad.numpy()) <= tol
    Y = gen.batchnorm_forward(X, gamma, beta.astype(dtype))
    assert _rel(Y, y.detach().numpy()) <= tol


# -- contract: shapes, dtypes, bad input -----------------------------------------------------

def test_n_equal_one_and_d_equal_one(gen):
    dY = np.array([[0.5, -2.0]])
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, np.array([[3.0, 4.0]]), np.ones(2))
    assert dX.tolist() == [[0.0, 0.0]] and dgamma.tolist() == [0.0, 0.0]
    assert dbeta.tolist() == [0.5, -2.0]
    dY, X, gamma = _inputs("normal", np.float32, (9, 1), seed=10)
    dX, dgamma, dbeta = gen.batchnorm_backward(dY, X, gamma)
    assert dX.shape == (9, 1) and dgamma.shape == dbeta.shape == (1,) and dX.dtype == np.float32
    ref_dx, _ = _mpmath_backward(dY, X, gamma)
    assert _rel(dX, ref_dx) < 1e-6


def test_out_and_scratch_buffers(gen, fused):
    dY, X, gamma = _inputs("normal", np.float32, (6, 4), seed=11)
    ref = gen.batchnorm_backward(dY, X, gamma)
    for module in (gen, fused):
        out = np.empty_like(X)
        extra = {"scratch": np.empty_like(X)} if module is gen else {}
        dX, _, _ = module.batchnorm_backward(dY, X, gamma, out=out, **extra)
        assert dX is out and np.allclose(dX, ref[0], rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match=r"out must be a writeable array of shape \(6, 4\) "
                                             r"and dtype float32, got shape \(6, 4\), dtype float64"):
            module.batchnorm_backward(dY, X, gamma, out=np.empty((6, 4)))


BAD = [
    ("X 1-d", lambda m: m.batchnorm_backward(np.ones(3), np.ones(3), np.ones(3)),
     r"dY must be a 2-d array of shape \(N, D\), got shape \(3,\)"),
    ("shapes differ", lambda m: m.batchnorm_backward(np.ones((4, 3)), np.ones((4, 2)), np.ones(3)),
     r"X has shape \(4, 2\), expected \(4, 3\)"),
    ("gamma shape", lambda m: m.batchnorm_backward(np.ones((4, 3)), np.ones((4, 3)), np.ones(2)),
     r"gamma has shape \(2,\), expected \(3,\)"),
    ("eps zero", lambda m: m.batchnorm_backward(np.ones((4, 3)), np.ones((4, 3)), np.ones(3), 0),
     "eps must be a positive finite number, got 0"),
    ("eps nan", lambda m: m.batchnorm_forward(np.ones((4, 3)), np.ones(3), np.ones(3), float("nan")),
     "eps must be a positive finite number, got nan"),
    ("int dtype", lambda m: m.batchnorm_forward(np.ones((4, 3), int), np.ones(3), np.ones(3)),
     "X has dtype int64; use float32 or float64"),
    ("mixed dtypes", lambda m: m.batchnorm_backward(np.ones((4, 3), np.float32), np.ones((4, 3)),
                                                    np.ones(3)),
     "X has dtype float64 but dY has float32; use one dtype"),
    ("beta shape", lambda m: m.batchnorm_forward(np.ones((4, 3)), np.ones(3), np.ones((3, 1))),
     r"beta must be a 1-d array of shape \(D,\), got shape \(3, 1\)"),
    ("empty", lambda m: m.batchnorm_forward(np.ones((0, 3)), np.ones(3), np.ones(3)),
     r"X is empty \(shape \(0, 3\)\)"),
]


@pytest.mark.parametrize("case,call,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input(gen, case, call, message):
    with pytest.raises(ValueError, match=message):
        call(gen)


# -- the command line ------------------------------------------------------------------------

def test_cli_codegen_writes_modules(tmp_path, capsys):
    out = tmp_path / "bn.py"
    assert main(["codegen", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    m = load_module(out)
    assert m.batchnorm_backward(np.ones((2, 1)), np.array([[0.0], [1.0]]), np.ones(1))[2] == 2.0
    assert main(["codegen", "--target", "numba", "-o", str(tmp_path / "f.py")]) == 0
    assert "numba.prange" in (tmp_path / "f.py").read_text()
    assert main(["codegen", "--n", "3", "--unrolled", "-o", str(tmp_path / "u.py")]) == 0
    assert "unrolled for N = 3" in (tmp_path / "u.py").read_text()
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["bn.py", "f.py", "u.py"]


@pytest.mark.parametrize("argv,message", [
    (["codegen", "-o", "/nonexistent-dir/bn.py"], "cannot write /nonexistent-dir/bn.py"),
    (["codegen", "--n", "4", "-o", "x.py"], "--n applies only with --unrolled"),
    (["codegen", "--unrolled", "-o", "x.py"], "--unrolled needs --n"),
    (["codegen", "--n", "0", "--unrolled", "-o", "x.py"], "--n must be a positive integer"),
    (["codegen", "--n", "99", "--unrolled", "-o", "x.py"], "--n 99 is not an integer from 1 to 16"),
    (["codegen", "--target", "numba", "--n", "2", "--unrolled", "-o", "x.py"], "drop --target"),
])
def test_cli_codegen_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("symbn: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_codegen_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["codegen", "--target", "cuda", "-o", "x.py"])
    assert exc.value.code == 2
    assert "invalid choice: 'cuda'" in capsys.readouterr().err


def test_the_emitted_n1_branch_is_traced(monkeypatch):
    """The BatchNorm module's N = 1 branch is code too: altered, the trace of the emitted
    backward at N = 1 stops the generation."""
    import symbn.codegen as cg

    original = cg._numpy_module
    wrong = "return out, numpy.zeros(X.shape[1], dtype), 2 * dY[0]"
    right = "return out, numpy.zeros(X.shape[1], dtype), dY[0].copy()"
    assert right in original(*_bn_plans())
    monkeypatch.setattr(cg, "_numpy_module", lambda *a: original(*a).replace(right, wrong))
    with pytest.raises(SymbnError, match=r"batchnorm_backward's dbeta is disproved at N = 1, "
                                         r"D = 2 .*refusing to write the code"):
        cg.generate("numpy")


def _bn_plans():
    import symbn.codegen as cg

    plans = cg.plans()
    del plans["fused"]
    return plans, []
