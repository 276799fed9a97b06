"""Generated code for user models whose names, per-set leaves or sizes the shipped models do
not exercise, and `out=` buffers that overlap the inputs: checked against NumPy references
and against the same call without the overlap."""

from __future__ import annotations

import numpy as np
import pytest
from generated import load_module

from symbn import codegen
from symbn.codegen import model_trace
from symbn.errors import SymbnError
from symbn.models import parse

LAYERNORM = '''
name = "{name}"
title = "LayerNorm with a constant scale"
[leaves]
x = "element"
gamma = "along"
beta = "along"
{c} = "constant"
eps = "positive"
[nodes]
mu = "Sum(x[k], (k, 1, N))/N"
v = "Sum((x[k] - mu)**2, (k, 1, N))/N"
xhat = "(x[i] - mu)*(v + eps)**(-1/2)"
y = "{c}*gamma[i]*xhat[i] + beta[i]"
[model]
output = "y"
axis = -1
{extra}
[results]
"D(f, x[j])" = "{c}*(v + eps)**(-1/2)*(gamma[j]*dy[j] - Sum(gamma[k]*dy[k], (k, 1, N))/N - (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*gamma[k]*dy[k], (k, 1, N))/N)"
"D(f, gamma[j])" = "{c}*dy[j]*xhat[j]"
"D(f, beta[j])" = "dy[j]"
'''

PER_SET = '''
name = "ln-set"
title = "LayerNorm with one gamma and beta per set"
[leaves]
x = "element"
gamma = "set"
beta = "set"
eps = "positive"
[nodes]
mu = "Sum(x[k], (k, 1, N))/N"
v = "Sum((x[k] - mu)**2, (k, 1, N))/N"
xhat = "(x[i] - mu)*(v + eps)**(-1/2)"
y = "gamma*xhat[i] + beta"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "gamma*(v + eps)**(-1/2)*(dy[j] - Sum(dy[k], (k, 1, N))/N - (x[j] - mu)*(v + eps)**(-1)*Sum((x[k] - mu)*dy[k], (k, 1, N))/N)"
"D(f, gamma)" = "Sum(dy[k]*xhat[k], (k, 1, N))"
"D(f, beta)" = "Sum(dy[k], (k, 1, N))"
'''


def _model(c="c", name="ln-c", extra=""):
    return parse(LAYERNORM.format(c=c, name=name, extra=extra), f"{name}.toml")


def _module(tmp_path, text, name="m"):
    path = tmp_path / f"{name}.py"
    codegen.write(text, str(path))
    return load_module(path)


def _reference(X, dY, gamma, c, eps=1e-5):
    """LayerNorm with a constant scale c, in float64, written out directly."""
    mu = X.mean(axis=-1, keepdims=True)
    xhat = (X - mu) / np.sqrt(((X - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    g = c * gamma * dY
    rstd = 1 / np.sqrt(((X - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    dX = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(X.ndim - 1))
    return c * gamma * xhat, dX, (c * dY * xhat).sum(axis=lead), dY.sum(axis=lead)


@pytest.mark.parametrize("leaf, why", [
    ("u0", "becomes u0 in the generated code, a name the code binds for itself"),
    ("out", "does not compile"),
    ("math", "a name the module defines or uses from Python"),
    ("edtype", "becomes edtype in the generated code"),
    ("e1", "would name it e1, which is not a usable Python name there"),  # a one-pass sum
    ("s1", "would name it s1, which is not a usable Python name there"),
])
def test_a_leaf_named_like_the_codes_own_names_is_refused(leaf, why):
    """u0 is the forward's first coefficient: the loop would rebind the caller's u0 block
    by block (the first set right, the others wrong)."""
    with pytest.raises(SymbnError, match="rename the leaf"):
        codegen.generate("numpy", model=_model(leaf))
    with pytest.raises(SymbnError, match=why):
        codegen.generate("numpy", model=_model(leaf))


def test_a_block_carrying_bug_is_refused_without_the_name_check(monkeypatch):
    """The blocks-against-each-set check stops such code on its own."""
    monkeypatch.setattr(model_trace, "check_names", lambda text, model: None)
    with pytest.raises(SymbnError, match="ln_c_forward (fails on|gives other values).* "
                                         "sets in blocks"):
        codegen.generate("numpy", model=_model("u0"))


def test_a_constant_leaf_across_many_blocks(tmp_path, monkeypatch):
    m = _module(tmp_path, codegen.generate("numpy", model=_model("c")))
    monkeypatch.setattr(m, "BLOCK", 1)  # blocks of a few rows: many of them
    rng = np.random.default_rng(3)
    X, dY = rng.standard_normal((2, 41, 6)), rng.standard_normal((2, 41, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    Y, dX, dgamma, dbeta = _reference(X, dY, gamma, 0.75)
    assert np.allclose(m.ln_c_forward(X, gamma, beta, 0.75), Y + beta, rtol=1e-12, atol=1e-12)
    got = m.ln_c_backward(dY, X, gamma, 0.75)
    for a, b in zip(got, (dX, dgamma, dbeta)):
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (3, 7)])
def test_per_set_leaves_along_the_last_axis_keep_the_sets_shape(tmp_path, monkeypatch, shape):
    m = _module(tmp_path, codegen.generate("numpy", model=parse(PER_SET, "ln-set.toml")))
    monkeypatch.setattr(m, "BLOCK", 1)
    rng = np.random.default_rng(4)
    X, dY = rng.standard_normal(shape), rng.standard_normal(shape)
    gamma = rng.standard_normal(shape[:-1])
    _, dgamma, dbeta = m.ln_set_backward(dY, X, gamma)
    xhat = (X - X.mean(-1, keepdims=True)) / np.sqrt(X.var(-1, keepdims=True) + 1e-5)
    assert dgamma.shape == dbeta.shape == shape[:-1]
    assert np.allclose(dgamma, (dY * xhat).sum(-1), rtol=1e-12, atol=1e-12)
    assert np.allclose(dbeta, dY.sum(-1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm", "batchnorm-unbiased", "batchnorm"])
@pytest.mark.parametrize("alias", ["dY", "X"])
def test_out_may_be_an_input(tmp_path, name, alias):
    """dX written over dY (or X) block by block: dgamma and dbeta still read the inputs."""
    m = _module(tmp_path, codegen.generate("numpy", model=name), name.replace("-", "_"))
    backward = getattr(m, f"{name.replace('-', '_')}_backward")
    rng = np.random.default_rng(5)
    X, dY = rng.standard_normal((64, 8)), rng.standard_normal((64, 8))
    gamma = rng.standard_normal(8)
    want = backward(dY, X, gamma)
    dY2, X2 = dY.copy(), X.copy()
    got = backward(dY2, X2, gamma, out=dY2 if alias == "dY" else X2)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_a_model_defined_from_n_7_on(tmp_path):
    text = codegen.generate("numpy", model=_model("c", "ln-seven", "min_n = 7"))
    assert "N = 7..8 (one set)" in text
    m = _module(tmp_path, text)
    rng = np.random.default_rng(6)
    X, dY, gamma = rng.standard_normal((3, 7)), rng.standard_normal((3, 7)), rng.standard_normal(7)
    _, dX, dgamma, dbeta = _reference(X, dY, gamma, 2.0)
    for a, b in zip(m.ln_seven_backward(dY, X, gamma, 2.0), (dX, dgamma, dbeta)):
        assert np.allclose(a, b, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="at least 7 elements"):
        m.ln_seven_backward(dY[:, :6], X[:, :6], gamma[:6], 2.0)


@pytest.mark.parametrize("name", ["layernorm", "batchnorm"])
def test_eps_a_bool_is_refused_an_integer_taken(tmp_path, name):
    m = _module(tmp_path, codegen.generate("numpy", model=name), name)
    backward = getattr(m, f"{name}_backward")
    X, dY, gamma = np.eye(3) + 1.0, np.ones((3, 3)), np.ones(3)
    with pytest.raises(ValueError, match="eps must be a positive finite number, got True"):
        backward(dY, X, gamma, True)
    for a, b in zip(backward(dY, X, gamma, np.int64(2)), backward(dY, X, gamma, 2.0)):
        assert np.array_equal(a, b)
    for a, b in zip(backward(dY, X, gamma, np.asarray(2.0)), backward(dY, X, gamma, 2.0)):
        assert np.array_equal(a, b)  # a 0-d array is a number
    with pytest.raises(ValueError, match=r"got array\(-1\.\)"):
        backward(dY, X, gamma, np.asarray(-1.0))
    with pytest.raises(ValueError, match=r"got array\(\[2\.\]\)"):
        backward(dY, X, gamma, np.asarray([2.0]))


def test_out_not_c_contiguous_says_so(tmp_path):
    m = _module(tmp_path, codegen.generate("numpy", model="layernorm"), "layernorm")
    X, dY, gamma = np.eye(3) + 1.0, np.ones((3, 3)), np.ones(3)
    with pytest.raises(ValueError, match="not C-contiguous"):
        m.layernorm_backward(dY, X, gamma, out=np.asfortranarray(np.empty((3, 3))))
    frozen = np.empty((3, 3))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        m.layernorm_backward(dY, X, gamma, out=frozen)


def _renamed(text: str, old: str, new: str) -> str:
    """A shipped model's file with the element leaf renamed (x[ -> z[, x = -> z =)."""
    return text.replace(f"{old}[", f"{new}[").replace(f'\n{old} = "element"',
                                                        f'\n{new} = "element"')


@pytest.mark.parametrize("target", ["numpy", "numba"])
def test_an_element_leaf_not_named_x_is_centred_per_block(tmp_path, monkeypatch, target):
    """LayerNorm with x called z: the centring reads each block of z, the numba kernels the
    array z; the same values as the shipped module on a 3-d input in blocks of one row."""
    if target == "numba":
        pytest.importorskip("numba")
    from symbn.models import shipped

    source = _renamed(shipped()["layernorm"].read_text(), "x", "z").replace(
        'name = "layernorm"', 'name = "lnz"')
    m = _module(tmp_path, codegen.generate(target, model=parse(source, "lnz.toml")), "lnz")
    ref = _module(tmp_path, codegen.generate("numpy", model="layernorm"), "ln")
    monkeypatch.setattr(m, "BLOCK", 1, raising=False)
    rng = np.random.default_rng(8)
    X, dY, gamma = rng.standard_normal((3, 13, 6)), rng.standard_normal((3, 13, 6)), \
        rng.standard_normal(6)
    for a, b in zip(m.lnz_backward(dY, X, gamma), ref.layernorm_backward(dY, X, gamma)):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert np.allclose(m.lnz_forward(X, gamma, gamma), ref.layernorm_forward(X, gamma, gamma),
                       rtol=1e-12, atol=1e-12)


RMS_ONLY_DX = '''
name = "rms-plain"
title = "RMSNorm without a scale"
[leaves]
x = "element"
eps = "positive"
[nodes]
ms = "Sum(x[k]**2, (k, 1, N))/N"
y = "x[i]*(ms + eps)**(-1/2)"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "(ms + eps)**(-1/2)*(dy[j] - x[j]*(ms + eps)**(-1)*Sum(dy[k]*x[k], (k, 1, N))/N)"
'''


def test_a_backward_with_one_gradient(tmp_path):
    m = _module(tmp_path, codegen.generate("numpy", model=parse(RMS_ONLY_DX, "r.toml")), "r")
    rng = np.random.default_rng(9)
    X, dY, eps = rng.standard_normal((4, 5)), rng.standard_normal((4, 5)), 0.3

    def f(x):  # the scalar sum(dY * y), differentiated by central differences
        return float(np.sum(dY * x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps)))
    h, numeric = 1e-6, np.empty_like(X)
    for idx in np.ndindex(X.shape):
        e = np.zeros_like(X)
        e[idx] = h
        numeric[idx] = (f(X + e) - f(X - e)) / (2 * h)
    dX = m.rms_plain_backward(dY, X, eps)
    dX = dX[0] if isinstance(dX, tuple) else dX
    assert np.allclose(dX, numeric, rtol=1e-6, atol=1e-8)


ROOT_PER_ELEMENT = '''
name = "rooted"
title = "an element-wise root, a closed form wrong from N = 7 on"
[leaves]
x = "element"
gamma = "along"
eps = "positive"
[nodes]
r = "sqrt(x[i]**2 + eps)"
y = "gamma[i]*x[i]*r[i]"
[model]
output = "y"
axis = -1
[results]
"D(f, x[j])" = "gamma[j]*dy[j]*(r[j] + x[j]**2/r[j]) + (N-1)*(N-2)*(N-3)*(N-4)*(N-5)*(N-6)*dy[j]"
"D(f, gamma[j])" = "dy[j]*x[j]*r[j]"
'''


def test_a_model_outside_the_symbolic_fragment_refuses_n_beyond_the_proofs(tmp_path):
    """Proved at N = 1..6 only (its every-N claims are outside the fragment): the closed form
    above is right there and wrong from N = 7 on, so the module must refuse N = 7."""
    text = codegen.generate("numpy", model=parse(ROOT_PER_ELEMENT, "rooted.toml"))
    assert "MAX_N = 6" in text and "the functions refuse N > 6" in text
    m = _module(tmp_path, text, "rooted")
    rng = np.random.default_rng(10)
    X, dY, gamma = rng.standard_normal((2, 6)), rng.standard_normal((2, 6)), rng.standard_normal(6)
    dX, _ = m.rooted_backward(dY, X, gamma, 0.5)
    assert np.allclose(dX, gamma * dY * (np.sqrt(X ** 2 + 0.5) + X ** 2 / np.sqrt(X ** 2 + 0.5)))
    with pytest.raises(ValueError, match="proved for at most 6 elements along axis -1"):
        m.rooted_backward(*(np.ones((2, 7)),) * 2, np.ones(7), 0.5)


def test_a_name_the_generated_code_never_defines_is_refused():
    with pytest.raises(SymbnError, match="uses _X, which it never defines"):
        model_trace.check_names("import numpy\ndef f(a):\n    return numpy.sum(_X) + a", None)


def test_without_numba_the_header_says_the_numba_check_was_not_run(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(model_trace.importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    text = codegen.generate("numba", model="rmsnorm")
    assert "not checked: numba is not installed" in text and "checked, not proved" not in text
