"""The numba module's kernels come from numba's on-disk cache in a second process.

Each test runs fresh processes (numba loads a cache only when it compiles, once per process)
and reads numba's dispatcher statistics (`kernel.stats.cache_hits`, `.cache_misses`).  The
parallel kernels are forced with PARALLEL_MIN = 0 and two numba threads, and shown to be the
parallel machine code by `numba.threading_layer()`, which raises until a parallel region has
run: had the serial and parallel kernels shared a cache entry, the second process could load
the serial code for the parallel kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from symbn import codegen

pytest.importorskip("numba", reason="numba not installed (optional extra symbn[numba])")

# imports the module as `import bn_cached` from argv[1]'s directory (or, with "spec", loads it
# under another name, not in sys.modules), runs the calls in argv[2], reports the statistics
CHILD = r"""
import json, os, sys, warnings
import numpy
path, calls, how = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if how == "spec":
        import importlib.util
        spec = importlib.util.spec_from_file_location("anonymous", path)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
    else:
        sys.path.insert(0, os.path.dirname(path))
        import bn_cached as m
import numba


def threads_started():
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


rng = numpy.random.default_rng(0)
X, dY = rng.standard_normal((2, 37, 5))
gamma, beta = rng.standard_normal((2, 5))
out = {"warnings": [str(w.message) for w in caught], "threads": [], "results": {}}
for call in calls:
    kind, dtype = call.split(":")
    m.PARALLEL_MIN = 0 if kind.endswith("parallel") else None
    a, b = X.astype(dtype), dY.astype(dtype)
    got = (m.batchnorm_forward(a, gamma, beta) if kind.startswith("forward")
           else m.batchnorm_backward(b, a, gamma))
    out["results"][call] = [numpy.asarray(r, numpy.float64).tolist() for r in
                            (got if isinstance(got, tuple) else (got,))]
    out["threads"].append(threads_started())
out["stats"] = {k: [sum(getattr(m, k).stats.cache_hits.values()),
                    sum(getattr(m, k).stats.cache_misses.values())]
                for k in ("_forward_serial", "_forward_parallel",
                          "_backward_serial", "_backward_parallel")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def source():
    return codegen.generate("numba")


def _module(source, directory):
    directory.mkdir(exist_ok=True)
    path = directory / "bn_cached.py"
    path.write_text(source)
    return path


def _run(path, calls, how="import", **env):
    """One fresh process; its JSON report."""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ |= {"NUMBA_NUM_THREADS": "2", **env}  # parallel even on one core
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), ",".join(calls), how],
                         capture_output=True, text=True, env=environ, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _cache_files(directory):
    return sorted(p.name.split("-")[0] for p in directory.rglob("*.nbi"))


def test_second_process_loads_serial_and_parallel_kernels_from_the_cache(source, tmp_path):
    path = _module(source, tmp_path)
    calls = ["backward:float64", "backward:float32", "forward:float32",
             "backward_parallel:float64", "forward_parallel:float32"]
    first, second = _run(path, calls), _run(path, calls)
    assert first["stats"] == {"_backward_serial": [0, 2], "_forward_serial": [0, 1],
                              "_backward_parallel": [0, 1], "_forward_parallel": [0, 1]}
    assert second["stats"] == {"_backward_serial": [2, 0], "_forward_serial": [1, 0],
                               "_backward_parallel": [1, 0], "_forward_parallel": [1, 0]}
    # numba's threads start with the first parallel kernel, in the second process too
    assert first["threads"] == second["threads"] == [False, False, False, True, True]
    assert second["results"] == first["results"]
    assert first["warnings"] == second["warnings"] == []
    assert _cache_files(tmp_path / "__pycache__") == [
        "bn_cached._backward_parallel", "bn_cached._backward_serial",
        "bn_cached._forward_parallel", "bn_cached._forward_serial"]
    results = first["results"]
    for serial, parallel, tol in (("backward:float64", "backward_parallel:float64", 1e-12),
                                  ("forward:float32", "forward_parallel:float32", 1e-6)):
        for s, p in zip(results[serial], results[parallel]):
            assert np.allclose(s, p, rtol=tol, atol=tol), (serial, parallel)


def test_module_not_imported_under_its_name_compiles_without_the_cache(source, tmp_path):
    # numba reloads a cache entry by importing the module by name: a module loaded from a spec
    # under another name, not in sys.modules, would fail to load it ('<dynamic>')
    path = _module(source, tmp_path)
    first, second = (_run(path, ["backward:float64"], how="spec") for _ in range(2))
    assert first["stats"]["_backward_serial"] == second["stats"]["_backward_serial"] == [0, 1]
    assert first["results"] == second["results"]
    assert _cache_files(tmp_path) == []


def test_read_only_directory_caches_in_the_user_cache_directory(source, tmp_path):
    # a file named __pycache__ stops numba from writing beside the module, as a read-only
    # directory does (also when the tests run as root); it falls back to XDG_CACHE_HOME/numba
    path = _module(source, tmp_path / "module")
    (tmp_path / "module" / "__pycache__").write_text("")
    user = tmp_path / "user-cache"
    first, second = (_run(path, ["backward:float64"], XDG_CACHE_HOME=str(user),
                          PYTHONDONTWRITEBYTECODE="1") for _ in range(2))
    assert first["stats"]["_backward_serial"] == [0, 1]
    assert second["stats"]["_backward_serial"] == [1, 0]
    assert _cache_files(user / "numba") == ["bn_cached._backward_serial"]


def test_nowhere_to_write_a_cache_warns_once_and_computes(source, tmp_path):
    path = _module(source, tmp_path / "module")
    (tmp_path / "module" / "__pycache__").write_text("")
    (tmp_path / "not-a-directory").write_text("")
    report = _run(path, ["backward:float64"], XDG_CACHE_HOME=str(tmp_path / "not-a-directory"),
                  PYTHONDONTWRITEBYTECODE="1")
    assert report["stats"]["_backward_serial"] == [0, 1]
    [warning] = report["warnings"]
    assert f"{path}: numba finds no writable directory to cache" in warning
    assert "set NUMBA_CACHE_DIR to a writable directory" in warning
    dX = np.array(report["results"]["backward:float64"][0])
    assert dX.shape == (37, 5) and np.allclose(dX.sum(axis=0), 0, atol=1e-12)  # rows sum to 0


# the row models' numba module (layernorm): kernels and the sums helpers from the cache
ROW_CHILD = r"""
import json, os, sys
import numpy
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import ln_cached as m
m.PARALLEL_MIN = None
X, dY = numpy.random.default_rng(0).standard_normal((2, 3, 17))
dX, dg, db = m.layernorm_backward(dY, X, numpy.ones(17))
print(json.dumps({"dX": dX.tolist(), "stats": {k: [sum(getattr(m, k).stats.cache_hits.values()),
    sum(getattr(m, k).stats.cache_misses.values())] for k in ("_backward_serial",
    "_backward_sums", "_backward_sums_shifted")}}))
"""


def test_row_model_kernels_come_from_the_cache(tmp_path):
    path = tmp_path / "ln_cached.py"
    path.write_text(codegen.generate("numba", model="layernorm"))
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    runs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", ROW_CHILD, str(path)], capture_output=True,
                             text=True, env=environ, timeout=300)
        assert run.returncode == 0, run.stderr
        runs.append(json.loads(run.stdout))
    first, second = runs
    assert first["stats"] == {"_backward_serial": [0, 1], "_backward_sums": [0, 1],
                              "_backward_sums_shifted": [0, 1]}
    # the cached kernel carries its helpers' machine code: nothing compiles, nothing misses
    assert second["stats"] == {"_backward_serial": [1, 0], "_backward_sums": [0, 0],
                               "_backward_sums_shifted": [0, 0]}
    assert first["dX"] == second["dX"]
