"""check-impl holds a proof to the path the float calls take, to later calls and to a second
shape: a dtype branch or a compiled fast path leaves `consistent`; a cache keyed on id(x), N
kept from the first call, N from the wrong axis and a returned buffer kept between calls are
disproved, each batch re-run against the right backward."""

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from symbn.impl import check_impl
from symbn.impl.floats import KEPT, REUSED, _kept
from symbn.impl.paths import Paths, first_new
from symbn.impl.signature import parse_signature
from symbn.models import load

sys.path.insert(0, str(Path(__file__).parent / "impls"))
import paths as P
from bn_right import batchnorm_backward as right


@pytest.mark.parametrize("function", [P.float_fast_path, P.float_fast_path_inline,
                                      P.compiled_or_fallback])
def test_a_path_the_exact_trace_never_took_is_not_proved(function):
    report = check_impl(function, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["consistent"] * 3, str(report)
    assert all("which the exact trace never did" in r.note for r in report)
    assert report.exit_code == 3
    # and the float path of compiled_or_fallback is wrong, where no point looks
    dy = np.array([[0.0, 1.0], [1.0, -1.0], [2.0, 0.5]])
    x = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.25]])
    gamma = np.array([1.5, -0.5])
    if function is P.compiled_or_fallback:
        assert np.max(np.abs(function(dy, x, gamma, 0.5)[0] - right(dy, x, gamma, 0.5)[0])) > 0.1


def test_the_same_path_is_proved():
    report = check_impl(P.right, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["proved"] * 3, str(report)


def test_the_object_path_alone_is_proved_on_request():
    report = check_impl(P.float_fast_path, "batchnorm", n=3, d=2, same_path=False)
    assert [r.verdict for r in report] == ["proved"] * 3, str(report)


def test_paths_name_the_line():
    def f(x):
        if isinstance(x, float):
            return x * 2
        return x + x

    with Paths() as exact:
        f(1)
    with Paths() as floats:
        f(1.0)
    assert first_new(floats, exact).startswith("went from ")
    assert first_new(exact, exact) is None


def _witness_arrays(w: dict):
    """dy, x, gamma, eps of a BatchNorm witness at its own shape (n, d: the report's
    unless the witness says)."""
    n, d = w.get("n", 3), w.get("d", 2)
    q = {k: float(Fraction(v)) for k, v in w["point"].items()}
    dy, x = (np.array([[q[f"{a}[{i},{j}]"] for j in range(1, d + 1)]
                       for i in range(1, n + 1)]) for a in ("dy", "x"))
    return dy, x, np.array([q[f"gamma[{j}]"] for j in range(1, d + 1)]), q["eps"]


@pytest.mark.parametrize("function, shape", [(P.cache_on_id, None), (P.frozen_n, (4, 6)),
                                             (P.n_from_the_longer_axis, (4, 6))])
def test_state_and_shape_confusions_are_disproved(function, shape):
    P._stats.clear(), P._n.clear()
    report = check_impl(function, "batchnorm", n=3, d=2)
    dx = report["dx"]
    assert dx.verdict == "disproved" and report.exit_code == 1, str(report)
    if shape is not None:
        assert (dx.witness["n"], dx.witness["d"]) == shape
        assert "wrong at N = 4, D = 6" in dx.note
    # at the batch of the witness, called fresh, the code's own answer is wrong (or, for the
    # cache, right: the disproof is of the stale hit)
    P._stats.clear()
    dy, x, gamma, eps = _witness_arrays(dx.witness)
    got = function(dy, x, gamma, eps)[0]
    gap = np.max(np.abs(got - right(dy, x, gamma, eps)[0]))
    assert (gap < 1e-12) if function is P.cache_on_id else (gap > 1e-3)


def test_code_for_one_n_is_not_judged_at_the_second_shape():
    report = check_impl(P.only_n3, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["proved"] * 3, str(report)
    assert any(note.startswith("not checked at a second shape, N = 4, D = 6: only_n3 raised "
                               "ValueError: this backward is for batches of 3")
               for note in report.notes), report.notes


def test_a_returned_buffer_kept_between_calls_is_disproved():
    report = check_impl(P.kept_buffer, "batchnorm", n=3, d=2)
    outputs = report["outputs"]
    assert outputs.verdict == "disproved" and "dx is overwritten by a later call" in \
        outputs.note, str(report)
    dy = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]])
    x = np.arange(6.0).reshape(3, 2) ** 2
    a = P.kept_buffer(dy, x, np.ones(2), 0.5)[0]
    first = a.copy()
    P.kept_buffer(-dy, x, np.ones(2), 0.5)
    assert not np.array_equal(a, first)  # the first call's dx changed under its caller


def test_a_returned_view_of_an_argument_is_not_a_kept_buffer():
    sig = parse_signature(None, load("batchnorm"))
    KEPT.clear(), REUSED.clear()
    dy = np.ones((3, 2))
    _kept((dy, np.zeros(2), np.zeros(2)), sig, [dy])  # dx returned as dy itself
    dy[...] = 2.0  # the checker refills its arguments for the next call
    _kept((np.zeros((3, 2)), np.zeros(2), np.zeros(2)), sig, [dy])
    assert not REUSED
    dgamma = np.zeros(2)
    _kept((np.zeros((3, 2)), dgamma, np.zeros(2)), sig, [])
    dgamma[0] = 1.0  # the function's own buffer, changed by its next call
    _kept((np.zeros((3, 2)), dgamma, np.zeros(2)), sig, [])
    assert list(REUSED) == ["gamma"]


def test_a_keyword_only_eps_is_passed_by_name():
    def bn(dy, x, gamma, *, eps):
        return right(dy, x, gamma, eps)

    def doubled(dy, x, gamma, *, eps):
        dx, dgamma, dbeta = right(dy, x, gamma, eps)
        return 2 * dx, dgamma, dbeta

    for signature in (None, "dy, x, gamma, eps -> dx, dgamma, dbeta"):
        report = check_impl(bn, "batchnorm", signature=signature)
        assert [r.verdict for r in report] == ["proved"] * 3, str(report)
    report = check_impl(doubled, "batchnorm")
    assert [r.verdict for r in report] == ["disproved", "proved", "proved"], str(report)


@pytest.mark.parametrize("function", [P.exec_branch, P.thread_branch, P.tracing_off,
                                      P.opcodes_off, P.c_dispatch])
def test_a_path_hidden_from_the_line_trace_is_not_proved(function):
    # code made by exec and called by the user's, a worker thread, tracing turned off (for
    # every frame, or a frame's opcode events), and a C function picked by the dtype (the
    # same line calls another function)
    report = check_impl(function, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["consistent"] * 3, str(report)


def test_a_compiled_kernel_picked_by_the_dtype_is_not_proved(tmp_path):
    pytest.importorskip("numba")
    path = tmp_path / "kernels.py"
    path.write_text(
        "import numba\nimport numpy as np\nfrom bn_right import batchnorm_backward as _bn\n\n"
        "@numba.njit(cache=False)\ndef _same(a):\n    return 1.0 * a\n\n"
        "_K = {np.dtype(np.float64): _same}\n\n"
        "def dispatch(dy, x, gamma, eps):\n"
        "    return _bn(_K.get(dy.dtype, np.asarray)(dy), x, gamma, eps)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import kernels
    finally:
        sys.path.remove(str(tmp_path))
    report = check_impl(kernels.dispatch, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["consistent"] * 3, str(report)
    assert "which the exact trace never did" in report["dx"].note, report["dx"].note


def test_a_read_only_argument_is_refilled_all_the_same():
    P._kept_x.clear()
    report = check_impl(P.cache_on_id_readonly, "batchnorm", n=3, d=2)
    assert report["dx"].verdict == "disproved", str(report)


def test_buffers_returned_in_turn_are_disproved():
    P._pair.clear()
    report = check_impl(P.double_buffer, "batchnorm", n=3, d=2)
    assert report["outputs"].verdict == "disproved", str(report)


def test_a_keyword_only_eps_with_a_default_is_passed_by_name():
    report = check_impl(P.eps_keyword, "batchnorm", n=3, d=2)
    assert [r.verdict for r in report] == ["proved"] * 3, str(report)
