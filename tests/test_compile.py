"""Cold starts: models keyed by value, the on-disk kernel cache (fisherforecast/_compile.py).

The session fixture in conftest.py points the cache at a temporary directory; tests that need
their own directory set ``FISHERFORECAST_CACHE_DIR`` with ``monkeypatch``.
"""

from __future__ import annotations

import contextlib
import doctest
import functools
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast import _compile
from fisherforecast._experiment import _StaticModel
from fisherforecast.models import biology, gw, sgwb

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("A", "tau")
FID = {"A": 1.3, "tau": 2.0}
TIMES = np.linspace(0.0, 5.0, 40)


@contextlib.contextmanager
def count_jax_events():
    """Count JAX's own trace and XLA-compile events (public jax.monitoring hooks)."""
    counts = {"trace": 0, "compile": 0}

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            counts["trace"] += 1
        elif event == "/jax/core/compile/backend_compile_duration":
            counts["compile"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def decay_fisher(A, tau, t, sigma, scale=1.0):
    """Independent answer: closed-form Jacobian of scale * A exp(-t/tau)."""
    e = np.exp(-t / tau)
    J = np.stack([scale * e, scale * A * t / tau**2 * e], axis=1)
    return J.T @ J / sigma**2


TRACES = {"n": 0}


def counted_decay(params, t, *, scale):
    TRACES["n"] += 1  # runs once per trace, never at execution
    return scale * params["A"] * jnp.exp(-t / params["tau"])


# ---------------------------------------------------------------------------------------
# 1. Static parts keyed by value
# ---------------------------------------------------------------------------------------
def test_static_model_equality_by_value():
    def f(p, x, *, k):
        return k * x

    same = [
        (functools.partial(f, k=np.arange(3.0)), functools.partial(f, k=np.arange(3.0))),
        (functools.partial(f, k=1.5), functools.partial(f, k=1.5)),
        (functools.partial(f, k=(1.0, "a")), functools.partial(f, k=(1.0, "a"))),
        (functools.partial(functools.partial(f, k=2.0)), functools.partial(f, k=2.0)),
    ]
    for a, b in same:
        assert _StaticModel(a) == _StaticModel(b)
        assert hash(_StaticModel(a)) == hash(_StaticModel(b))
    different = [
        (functools.partial(f, k=np.arange(3.0)), functools.partial(f, k=np.arange(1.0, 4.0))),
        (functools.partial(f, k=np.arange(3.0)), functools.partial(f, k=np.arange(3))),
        (functools.partial(f, k=1.0), functools.partial(f, k=1)),
        (functools.partial(f, k=0.0), functools.partial(f, k=-0.0)),
        (functools.partial(f, k=1.0), functools.partial(lambda p, x, k: x, k=1.0)),
        (lambda p, x: x, lambda p, x: x),  # plain functions: identity
    ]
    for a, b in different:
        assert _StaticModel(a) != _StaticModel(b)


def test_static_model_with_arrays_in_an_object_does_not_crash():
    class Holder:
        def __init__(self):
            self.w = np.ones(3)

        def __eq__(self, other):
            return self.w == other.w  # element-wise: not a plain bool

        __hash__ = None

        def __call__(self, p, x):
            return x

    a, b = Holder(), Holder()
    assert _StaticModel(a) == _StaticModel(a)
    assert _StaticModel(a) != _StaticModel(b)
    hash(_StaticModel(a))


def test_equal_partial_models_trace_once_and_new_values_retrace():
    """Two equal experiments trace once; a different argument value gets its own kernel
    (never the stale one): checked against the closed form."""
    noise = ff.Gaussian(sigma=0.1)
    TRACES["n"] = 0
    exp1 = ff.Experiment(functools.partial(counted_decay, scale=2.0), noise, design=TIMES)
    exp2 = ff.Experiment(functools.partial(counted_decay, scale=2.0), noise, design=TIMES)
    F1 = ff.fisher(exp1, FID).matrix
    n_first = TRACES["n"]
    assert n_first >= 1
    with count_jax_events() as counts:
        F2 = ff.fisher(exp2, FID).matrix
    assert TRACES["n"] == n_first  # no retrace
    assert counts["compile"] == 0
    np.testing.assert_array_equal(F1, F2)
    np.testing.assert_allclose(F1, decay_fisher(1.3, 2.0, TIMES, 0.1, 2.0), rtol=1e-12)

    exp3 = ff.Experiment(functools.partial(counted_decay, scale=3.0), noise, design=TIMES)
    F3 = ff.fisher(exp3, FID).matrix
    assert TRACES["n"] > n_first
    np.testing.assert_allclose(F3, decay_fisher(1.3, 2.0, TIMES, 0.1, 3.0), rtol=1e-12)


def test_experiments_differing_only_in_name_share_one_kernel():
    """Candidate measurements are named one by one ("x at t=1", ...): the name is a label,
    not part of the compiled program, so they trace once; each still gets its own Fisher
    matrix (checked against the closed form) and keeps its own name."""
    noise = ff.Gaussian(sigma=0.1)
    model = functools.partial(counted_decay, scale=2.0)
    TRACES["n"] = 0
    exps = [
        ff.Experiment(model, noise, design=np.array([t]), name=f"at t={t:g}")
        for t in (0.5, 1.0, 2.0)
    ]
    F0 = ff.fisher(exps[0], FID).matrix
    n_first = TRACES["n"]
    with count_jax_events() as counts:
        rest = [ff.fisher(e, FID).matrix for e in exps[1:]]
    assert TRACES["n"] == n_first
    assert counts["compile"] == 0
    for e, F in zip(exps, [F0, *rest], strict=True):
        np.testing.assert_allclose(F, decay_fisher(1.3, 2.0, e.design, 0.1, 2.0), rtol=1e-12)
    assert [e.name for e in exps] == ["at t=0.5", "at t=1", "at t=2"]
    leaves, treedef = jax.tree_util.tree_flatten(exps[2])
    assert jax.tree_util.tree_unflatten(treedef, leaves).name == "at t=2"


def test_zoo_gw_experiment_twice_compiles_once():
    fid = dict(gw.GW170817_LIKE)
    make = functools.partial(gw.experiment, "H1", fiducial=fid, n_freq=64)
    assert jax.tree_util.tree_structure(make()) == jax.tree_util.tree_structure(make())
    F1 = ff.fisher(make(), fid).matrix
    with count_jax_events() as counts:
        F2 = ff.fisher(make(), fid).matrix
    assert counts == {"trace": 0, "compile": 0}
    np.testing.assert_array_equal(F1, F2)

    # A different gmst must not reuse the gmst=0 kernel: compare with a model that
    # shares nothing with the zoo's (a plain closure, compiled on its own).
    exp = make(gmst=0.7)
    assert jax.tree_util.tree_structure(exp) != jax.tree_util.tree_structure(make())
    det = gw.DETECTORS["H1"]
    ref = ff.Experiment(
        lambda p, f: gw.detector_strain(p, f, det, 0.7), exp.noise, design=exp.design
    )
    np.testing.assert_allclose(ff.fisher(exp, fid).matrix, ff.fisher(ref, fid).matrix, rtol=1e-12)
    assert not np.allclose(ff.fisher(exp, fid).matrix, F1, rtol=1e-6)


def test_zoo_other_constructors_build_equal_models():
    tree = jax.tree_util.tree_structure
    assert tree(sgwb.experiment("LISA")) == tree(sgwb.experiment("LISA"))
    assert tree(sgwb.experiment("LISA")) != tree(sgwb.experiment("LISA", t_obs_years=2.0))
    assert biology.sir() is biology.sir()
    assert biology.sir_experiment().model is biology.sir_experiment().model
    assert biology.sir(rtol=1e-6) is not biology.sir()
    assert biology.sir("incidence") is not biology.sir()


# ---------------------------------------------------------------------------------------
# 2. The on-disk cache
# ---------------------------------------------------------------------------------------
def _decay_kernel():
    """A fresh wrapper (empty in-process table) around the engine's pure Fisher."""
    return _compile.cached_kernel(ff.fisher_information, static_argnames=("names", "mode"))


def _decay_experiment():
    return ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-t / p["tau"]), ff.Gaussian(sigma=0.1), design=TIMES
    )


def _run_kernel(kernel):
    with jax.enable_x64(True):
        fid64 = {k: np.float64(v) for k, v in FID.items()}
        return np.asarray(kernel(_decay_experiment(), fid64, NAMES, "forward"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERFORECAST_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FISHERFORECAST_CACHE", raising=False)
    _compile.reset_compile_stats()
    return tmp_path / "kernels-v1"


def test_disk_round_trip_in_process(own_cache):
    F1 = _run_kernel(_decay_kernel())
    stats = _compile.compile_stats()
    assert stats["compiles"] == 1 and stats["disk_writes"] == 1
    assert len(list(own_cache.glob("*.xla"))) == 1
    assert not list(own_cache.glob(".tmp-*"))  # the temporary file was renamed
    F2 = _run_kernel(_decay_kernel())  # new wrapper, same kernel: loaded, not compiled
    stats = _compile.compile_stats()
    assert stats["compiles"] == 1 and stats["disk_loads"] == 1
    np.testing.assert_array_equal(F1, F2)
    np.testing.assert_allclose(F1, decay_fisher(1.3, 2.0, TIMES, 0.1), rtol=1e-12)


_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    import fisherforecast as ff
    from fisherforecast import _compile

    kernel = _compile.cached_kernel(ff.fisher_information, static_argnames=("names", "mode"))
    exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-t / p["tau"]), ff.Gaussian(sigma=0.1),
                        design=np.linspace(0.0, 5.0, 40))
    with jax.enable_x64(True):
        F = np.asarray(kernel(exp, {"A": np.float64(1.3), "tau": np.float64(2.0)},
                              ("A", "tau"), "forward"))
        F_ff = ff.fisher(exp, {"A": 1.3, "tau": 2.0}).matrix
    print(json.dumps({"stats": _compile.compile_stats(), "F": F.tolist(),
                      "F_ff": F_ff.tolist(), "x64": bool(jax.config.jax_enable_x64)}))
    """
)


def _subprocess(env_updates, script=_SCRIPT):
    """Run `script` in a fresh Python process; its last line of output, parsed as JSON."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_updates)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_and_does_not_compile(tmp_path):
    env = {"FISHERFORECAST_CACHE_DIR": str(tmp_path), "FISHERFORECAST_CACHE": "1"}
    first = _subprocess(env)
    second = _subprocess(env)
    assert first["stats"]["compiles"] >= 1 and first["stats"]["disk_writes"] >= 1
    assert second["stats"]["compiles"] == 0
    loaded = second["stats"]["disk_loads"] + second["stats"]["fast_hits"]
    assert loaded == first["stats"]["disk_writes"]
    assert first["F"] == second["F"]  # bit for bit
    assert first["F_ff"] == second["F_ff"]
    assert not first["x64"] and not second["x64"]
    np.testing.assert_allclose(second["F"], decay_fisher(1.3, 2.0, TIMES, 0.1), rtol=1e-12)


_LAPACK_SCRIPT = textwrap.dedent(
    """
    import json
    import jax.numpy as jnp, numpy as np
    import fisherforecast as ff
    from fisherforecast import _compile

    M = np.array([[2.0, 1.0], [1.0, 3.0]])

    def model(p, t):  # an LU solve inside: a LAPACK call in the compiled kernel on CPU
        x = jnp.linalg.solve(p["k"] * jnp.asarray(M) + jnp.eye(2), jnp.stack([p["a"], 1.0]))
        return x[0] * jnp.exp(-t) + x[1] * t

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=np.linspace(0.0, 2.0, 5))
    F = ff.fisher(exp, {"k": 0.5, "a": 2.0}).matrix
    print(json.dumps({"stats": _compile.compile_stats(), "F": F.tolist()}))
    """
)


def test_fast_hit_of_a_kernel_with_lapack_calls_in_a_fresh_process(tmp_path):
    """A kernel that calls LAPACK (an LU solve, as the stiff ODE solvers' Newton steps do)
    loaded by its fast key in a process that has lowered nothing: jaxlib fills its LAPACK
    table only when lowering, so the load must fill it first (it was a segmentation
    fault). Same bits as the compiled one, and the Fisher matrix of finite differences."""
    env = {"FISHERFORECAST_CACHE_DIR": str(tmp_path), "FISHERFORECAST_CACHE": "1"}
    runs = [_subprocess(env, _LAPACK_SCRIPT) for _ in range(2)]  # a crash: returncode -11
    assert runs[0]["stats"]["fast_writes"] >= 1
    assert runs[1]["stats"]["fast_hits"] >= 1 and runs[1]["stats"]["lowerings"] == 0
    assert runs[0]["F"] == runs[1]["F"]  # bit for bit

    t = np.linspace(0.0, 2.0, 5)
    M = np.array([[2.0, 1.0], [1.0, 3.0]])

    def mean(k, a):
        x = np.linalg.solve(k * M + np.eye(2), [a, 1.0])
        return x[0] * np.exp(-t) + x[1] * t

    h = 1e-5
    J = np.stack(
        [
            (mean(0.5 + h, 2.0) - mean(0.5 - h, 2.0)) / (2 * h),
            (mean(0.5, 2.0 + h) - mean(0.5, 2.0 - h)) / (2 * h),
        ],
        axis=1,
    )
    np.testing.assert_allclose(runs[1]["F"], J.T @ J / 0.1**2, rtol=1e-7)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad_payload", "empty"])
def test_corrupt_entry_is_ignored_and_removed(own_cache, damage):
    F_good = _run_kernel(_decay_kernel())
    (path,) = own_cache.glob("*.xla")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a well-formed entry whose payload is not an executable
        _compile._write_entry(path, b"not a pickled executable")
    _compile.reset_compile_stats()
    F = _run_kernel(_decay_kernel())
    stats = _compile.compile_stats()
    assert stats["disk_rejected"] == 1 and stats["compiles"] == 1 and stats["disk_loads"] == 0
    np.testing.assert_array_equal(F, F_good)
    # The bad entry was replaced by a good one.
    _compile.reset_compile_stats()
    np.testing.assert_array_equal(_run_kernel(_decay_kernel()), F_good)
    assert _compile.compile_stats()["disk_loads"] == 1


def test_opt_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERFORECAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FISHERFORECAST_CACHE", "0")
    _compile.reset_compile_stats()
    assert _compile.cache_dir() is None
    F = _run_kernel(_decay_kernel())
    stats = _compile.compile_stats()
    assert stats["compiles"] == 1 and stats["disk_writes"] == 0 and stats["disk_loads"] == 0
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_allclose(F, decay_fisher(1.3, 2.0, TIMES, 0.1), rtol=1e-12)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FISHERFORECAST_CACHE", raising=False)
    monkeypatch.delenv("FISHERFORECAST_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _compile.cache_dir() == tmp_path / "xdg" / "fisherforecast" / "kernels-v1"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _compile.cache_dir() == Path.home() / ".cache" / "fisherforecast" / "kernels-v1"
    monkeypatch.setenv("FISHERFORECAST_CACHE_DIR", str(tmp_path / "own"))
    assert _compile.cache_dir() == tmp_path / "own" / "kernels-v1"


def test_unwritable_cache_directory_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FISHERFORECAST_CACHE_DIR", str(blocker))
    monkeypatch.delenv("FISHERFORECAST_CACHE", raising=False)
    _compile.reset_compile_stats()
    F = _run_kernel(_decay_kernel())
    assert _compile.compile_stats()["disk_errors"] == 1
    np.testing.assert_allclose(F, decay_fisher(1.3, 2.0, TIMES, 0.1), rtol=1e-12)


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path):
    path = tmp_path / "kernels-v1" / "k.xla"
    payloads = [bytes([i]) * 200_000 for i in range(4)]
    seen, stop = [], threading.Event()

    def writer(p):
        for _ in range(20):
            _compile._write_entry(path, p)

    def reader():
        while not stop.is_set():
            entry = _compile._read_entry(path)
            if entry is not None:
                seen.append(entry[0])

    _compile.reset_compile_stats()
    r = threading.Thread(target=reader)
    r.start()
    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert _compile.compile_stats()["disk_rejected"] == 0
    assert all(s in payloads for s in seen)
    assert _compile._read_entry(path)[0] in payloads
    assert not list(path.parent.glob(".tmp-*"))


# ---------------------------------------------------------------------------------------
# 3. Same results, same configuration, transformations still work
# ---------------------------------------------------------------------------------------
def test_loaded_kernel_equals_plain_jit(own_cache):
    compiled = _run_kernel(_decay_kernel())
    loaded = _run_kernel(_decay_kernel())
    assert _compile.compile_stats()["disk_loads"] == 1
    jitted = jax.jit(ff.fisher_information, static_argnames=("names", "mode"))
    with jax.enable_x64(True):
        fid64 = {k: np.float64(v) for k, v in FID.items()}
        plain = np.asarray(jitted(_decay_experiment(), fid64, NAMES, "forward"))
    assert plain.dtype == np.float64
    np.testing.assert_array_equal(compiled, plain)
    np.testing.assert_array_equal(loaded, plain)


def test_unused_arguments_of_other_shapes_get_their_own_entries(own_cache):
    """A Jacobian does not read the noise settings, so its HLO text is the same for a noise
    array of 40 values and a scalar; the entry must still differ (the executable checks
    every argument's shape)."""
    kernel = _compile.cached_kernel(lambda x, unused: 2.0 * x)
    with jax.enable_x64(True):
        kernel(np.ones(3), np.ones(40))
        again = _compile.cached_kernel(lambda x, unused: 2.0 * x)
        np.testing.assert_array_equal(again(np.ones(3), np.float64(1.0)), 2.0 * np.ones(3))
    assert len(list(own_cache.glob("*.xla"))) == 2


def test_float32_and_float64_calls_get_their_own_kernels(own_cache):
    kernel = _compile.cached_kernel(lambda x: x * 2.0)
    with jax.enable_x64(True):
        assert kernel(np.float64(1.5)).dtype == jnp.float64
    assert kernel(np.float32(1.5)).dtype == jnp.float32
    assert kernel(np.ones(3)).dtype == jnp.float32  # float32 default outside the context


def test_kernel_under_outer_transformations():
    kernel = _compile.cached_kernel(lambda x, p: jnp.sum(x**p), static_argnames=("p",))
    with jax.enable_x64(True):
        x = jnp.arange(1.0, 4.0)
        np.testing.assert_allclose(jax.grad(kernel)(x, p=2), 2 * np.arange(1.0, 4.0))
        np.testing.assert_allclose(jax.vmap(lambda v: kernel(v, 3))(jnp.eye(3)), np.ones(3))
        np.testing.assert_allclose(jax.jit(kernel, static_argnames="p")(x, p=1), 6.0)
        with jax.disable_jit():
            np.testing.assert_allclose(kernel(x, 2), 14.0)


def test_jax_configuration_unchanged(own_cache):
    names = [
        "jax_enable_x64",
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
        "jax_disable_jit",
        "jax_default_matmul_precision",
    ]
    before = {n: getattr(jax.config, n) for n in names}
    _run_kernel(_decay_kernel())
    _run_kernel(_decay_kernel())
    ff.fisher(_decay_experiment(), FID)
    assert {n: getattr(jax.config, n) for n in names} == before


def test_bad_static_argnames_named():
    with pytest.raises(ValueError, match=r"static_argnames.*nope.*parameters are \['x'\]"):
        _compile.cached_kernel(lambda x: x, static_argnames=("nope",))


def test_docstring_examples_run(own_cache):
    class Markdown(doctest.DocTestParser):  # a closing ``` fence is not expected output
        def parse(self, string, name="<string>"):
            return super().parse(re.sub(r"(?m)^[ \t]*```[\w-]*[ \t]*$", "", string), name)

    finder = doctest.DocTestFinder(parser=Markdown())
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(_compile, "_compile"):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


_DEVICES_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from fisherforecast import _compile

    k = _compile.cached_kernel(lambda x: x * 2.0)
    out = [k(np.arange(3.0)).tolist()]
    with jax.default_device(jax.devices()[1]):
        r = k(np.arange(3.0))
        out.append([r.tolist(), sorted(d.id for d in r.devices())])
    r = k(jax.device_put(np.arange(3.0, dtype=np.float32), jax.devices()[1]))
    out.append([r.tolist(), sorted(d.id for d in r.devices())])
    print(json.dumps({"out": out, "stats": _compile.compile_stats()}))
    """
)


def test_two_devices_each_kernel_loads_for_its_own_device(tmp_path):
    env = {
        "FISHERFORECAST_CACHE_DIR": str(tmp_path),
        "FISHERFORECAST_CACHE": "1",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    runs = [_subprocess(env, _DEVICES_SCRIPT) for _ in range(2)]
    expected = [[0.0, 2.0, 4.0], [[0.0, 2.0, 4.0], [1]], [[0.0, 2.0, 4.0], [1]]]
    assert runs[0]["out"] == expected and runs[1]["out"] == expected
    # Default device 0 and default device 1: stored and loaded; inputs committed to a
    # device other than the default: compiled each time, not stored.
    assert runs[0]["stats"]["disk_writes"] == 2
    assert runs[1]["stats"]["disk_loads"] == 2 and runs[1]["stats"]["compiles"] == 1


def test_kernel_with_host_callback_runs_and_is_not_stored(own_cache):
    def f(x):
        y = jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return 2.0 * y

    with jax.enable_x64(True):
        x = np.linspace(0.0, 1.0, 5)
        np.testing.assert_allclose(_compile.cached_kernel(f)(x), 2.0 * np.sin(x), rtol=1e-15)
        np.testing.assert_allclose(_compile.cached_kernel(f)(x), 2.0 * np.sin(x), rtol=1e-15)
    stats = _compile.compile_stats()
    assert stats["not_serializable"] == 2 and stats["disk_writes"] == 0
    assert not own_cache.exists() or not list(own_cache.glob("*.xla"))


# ---------------------------------------------------------------------------------------
# 3. Fast keys: a warm disk cache found without tracing the kernel
# ---------------------------------------------------------------------------------------
RHS_TRACES = {"n": 0}
RATE_SCALE = 1.0  # a global the right-hand side reads


def _counting_rhs(t, y, p):
    RHS_TRACES["n"] += 1  # a Python side effect: runs once per trace, never at run time
    return -RATE_SCALE * p["k"] * y


def _ode_experiment(times=(0.5, 1.0, 2.0, 4.0), max_steps=64):
    model = ff.ode_model(_counting_rhs, y0=lambda p: p["A"], max_steps=max_steps)
    return ff.Experiment(model, ff.Gaussian(sigma=0.05), design=np.asarray(times))


def _fast_key(experiment, fid=None, names=("k", "A")):
    from fisherforecast import _engine

    fid = fid or {"k": 0.7, "A": 2.0}
    with jax.enable_x64(True):
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        args = (experiment, fid64, names, "forward")
        return _compile._fast_key(_engine.evaluation_kernel, args, jax.devices()[0])


def test_fast_key_hit_skips_tracing_is_bit_identical_and_keeps_solver_errors(own_cache):
    """A second call with an empty in-process table (as in a new process) loads the ODE
    kernel by its fast key: no trace of the kernel (the rhs is traced once, for its
    fingerprint), the same bits, checked against the closed form; a failed solve (max_steps
    reached) still gives the engine's clear error, from the loaded kernel too."""
    from fisherforecast import _engine

    fid = {"k": 0.7, "A": 2.0}
    t = np.array([0.5, 1.0, 2.0, 4.0])
    RHS_TRACES["n"] = 0
    F1 = ff.fisher(_ode_experiment(), fid).matrix
    cold_traces = RHS_TRACES["n"]
    stats = _compile.compile_stats()
    assert stats["compiles"] == 1 and stats["disk_writes"] == 1 and stats["fast_writes"] == 1
    assert stats["not_serializable"] == 0
    _engine.evaluation_kernel.clear()
    _compile.reset_compile_stats()
    RHS_TRACES["n"] = 0
    F2 = ff.fisher(_ode_experiment(), fid).matrix
    stats = _compile.compile_stats()
    assert stats["fast_hits"] == 1 and stats["lowerings"] == 0 and stats["compiles"] == 0
    assert RHS_TRACES["n"] == 1 < cold_traces
    np.testing.assert_array_equal(F1, F2)
    e = np.exp(-0.7 * t)  # y = A exp(-k t): dy/dk = -A t e, dy/dA = e
    J = np.stack([-2.0 * t * e, e], axis=1)
    np.testing.assert_allclose(F2, J.T @ J / 0.05**2, rtol=1e-6)
    with pytest.raises(ff.NonFiniteError, match="check_solve"):  # by the loaded kernel
        ff.fisher(_ode_experiment(), {"k": 1e4, "A": 2.0})  # stiff: max_steps reached


def test_a_callable_instance_among_static_parts_falls_back_instead_of_failing():
    """An ff.ode_model instance held as a static part (the individual model of a population
    experiment) has no __qualname__: it gets no fast key, and no AttributeError."""
    from fisherforecast import _fingerprint

    model = ff.ode_model(_counting_rhs, y0=lambda p: p["A"])
    with pytest.raises(_fingerprint.Unfingerprintable):
        _fingerprint.static_fingerprint((model,))


def test_fast_key_follows_globals_closed_over_values_and_shapes():
    """Everything the rhs computes with is in its jaxpr: a changed global or closed-over
    array gives a new key (never a stale executable), as do a new design shape, new
    parameter names and another model; equal inputs give the same key."""
    global RATE_SCALE
    base = _fast_key(_ode_experiment())
    assert base is not None and base == _fast_key(_ode_experiment())
    RATE_SCALE = 2.0
    try:
        assert _fast_key(_ode_experiment()) not in (None, base)
    finally:
        RATE_SCALE = 1.0
    assert _fast_key(_ode_experiment(times=(0.5, 1.0, 2.0))) not in (None, base)
    assert _fast_key(_ode_experiment(), names=("k",)) not in (None, base)
    assert _fast_key(_ode_experiment(max_steps=65)) not in (None, base)
    keys = set()
    for scale in (np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 3.0])):

        def model(p, t, scale=scale):
            return p["k"] * jnp.sum(scale) * t

        keys.add(_fast_key(ff.Experiment(model, ff.Gaussian(sigma=1.0), design=TIMES)))
    assert None not in keys and len(keys) == 2  # equal closed-over values: one computation

    # Code the jaxpr cannot vouch for has no fast key: a host callback in the model.
    def with_callback(p, t):
        return p["k"] * jax.pure_callback(np.cos, jax.ShapeDtypeStruct(t.shape, t.dtype), t)

    exp = ff.Experiment(with_callback, ff.Gaussian(sigma=1.0), design=TIMES)
    assert _fast_key(exp) is None


@pytest.mark.parametrize("damage", ["alias", "executable"])
def test_corrupt_fast_entry_is_removed_and_the_kernel_rebuilt(own_cache, damage):
    from fisherforecast import _engine

    exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-t / p["tau"]), ff.Gaussian(0.1), TIMES)
    F_good = ff.fisher(exp, FID).matrix
    alias = own_cache / (_fast_key(exp, FID, ("A", "tau")) + ".xla")
    (executable,) = set(own_cache.glob("*.xla")) - {alias}
    (alias if damage == "alias" else executable).write_bytes(b"FFKERNEL1\ngarbage")
    _engine.evaluation_kernel.clear()
    _compile.reset_compile_stats()
    F = ff.fisher(exp, FID).matrix
    stats = _compile.compile_stats()
    assert stats["disk_rejected"] >= 1 and stats["fast_hits"] == 0 and stats["lowerings"] == 1
    np.testing.assert_array_equal(F, F_good)
    np.testing.assert_allclose(F, decay_fisher(1.3, 2.0, TIMES, 0.1), rtol=1e-10)
    _engine.evaluation_kernel.clear()
    _compile.reset_compile_stats()
    np.testing.assert_array_equal(ff.fisher(exp, FID).matrix, F_good)
    assert _compile.compile_stats()["fast_hits"] == 1  # rebuilt entries are found again
