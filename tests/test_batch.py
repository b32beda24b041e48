"""Tests for ff.fisher_batch / ff.FisherBatch.

References: closed-form Fisher matrices written out in numpy here, the single-item path
``ff.fisher`` (an independent call path that only shares the model), the closed forms of the
linear model μ = (a, b, a + 2b) (F = [[2, 2], [2, 5]]) and of the GW amplitude identity
(F_lnA,lnA = SNR²), and an uninterrupted run for the resume and Dask tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_example

import fisherforecast as ff
from fisherforecast import _linalg
from fisherforecast._batch import chunk as b_chunk
from fisherforecast._batch import execute as b_execute
from fisherforecast._batch import plan as b_plan
from fisherforecast._batch.reasons import Reason

ROOT = Path(__file__).resolve().parents[1]
T = np.linspace(0.0, 4.0, 25)
SIGMA = 0.05


# ----- models ------------------------------------------------------------------------------
def two_exponentials(p, t):
    # sqrt(b) gives NaN for b < 0; k == m makes the a/b (and k/m) columns collinear; a == 0
    # removes all information about k.
    return p["a"] * jnp.exp(-p["k"] * t) + jnp.sqrt(p["b"]) * jnp.exp(-p["m"] * t)


def two_exponentials_fisher(a, b, k, m, t=T):
    """Closed form: F = Jᵀ J / σ² with the analytic Jacobian (a, b, k, m columns)."""
    J = np.stack(
        [
            np.exp(-k * t),
            np.exp(-m * t) / (2 * np.sqrt(b)),
            -a * t * np.exp(-k * t),
            -np.sqrt(b) * t * np.exp(-m * t),
        ],
        axis=1,
    )
    return J.T @ J / SIGMA**2


EXP = ff.Experiment(two_exponentials, ff.Gaussian(sigma=SIGMA), design=T, name="decay")
NAMES = ("a", "b", "k", "m")


def population(B, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.uniform(0.5, 2.0, B),
        "b": rng.uniform(0.5, 2.0, B),
        "k": rng.uniform(0.2, 0.6, B),
        "m": rng.uniform(1.0, 3.0, B),
    }


def item(fid, i):
    return {k: float(np.broadcast_to(v, np.shape(v) or (i + 1,))[i]) for k, v in fid.items()}


def assert_matrix_close(A, B, rtol=1e-10):
    """Entry-wise agreement relative to sqrt(F_ii F_jj) (scale-free)."""
    scale = np.sqrt(np.outer(np.abs(np.diag(B)), np.abs(np.diag(B))))
    assert np.all(np.abs(A - B) <= rtol * scale), np.max(np.abs(A - B) / scale)


# ----- agreement with single calls and closed forms --------------------------------------
def test_batch_equals_single_calls_and_closed_form():
    fid = population(23)
    batch = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)
    assert isinstance(batch, ff.FisherBatch)
    assert batch.matrices.shape == (23, 4, 4) and batch.matrices.dtype == np.float64
    assert batch.names == NAMES and len(batch) == 23 and batch.ok.all()
    sig = batch.sigma()
    cov = batch.covariance()
    for i in range(23):
        single = ff.fisher(EXP, item(fid, i))
        assert_matrix_close(batch.matrices[i], single.matrix)
        assert_matrix_close(
            batch.matrices[i],
            two_exponentials_fisher(*(item(fid, i)[n] for n in NAMES)),
            rtol=1e-11,
        )
        ref_sigma = single.sigma()
        for n in NAMES:
            assert sig[n][i] == pytest.approx(ref_sigma[n], rel=1e-10)
        np.testing.assert_allclose(
            cov[i], ff.robust_inverse(single.matrix).covariance, rtol=1e-9, atol=0
        )
        assert batch.condition_number[i] == pytest.approx(single.condition_number, rel=1e-8)
    # select() gives the FisherMatrix of one item with its fiducial attached.
    F5 = batch.select(5)
    assert F5.fiducial == pytest.approx(item(fid, 5))
    assert F5.name == "decay" and F5.metadata["batch_index"] == 5
    np.testing.assert_array_equal(F5.matrix, batch.matrices[5])
    assert batch.metadata["n_chunks"] == 3 and batch.metadata["chunk_size"] == 8


def test_subset_of_params_lists_and_scalar_broadcast():
    fid = population(10, seed=1)
    fid["m"] = 2.0  # a scalar is broadcast to every item
    poisson = ff.Experiment(
        lambda p, t: 50.0 * p["a"] * jnp.exp(-p["k"] * t), ff.Poisson(), design=T, name="counts"
    )
    batch = ff.fisher_batch([EXP, poisson], fid, params=["a", "k"], chunk_size=4, progress=False)
    assert batch.names == ("a", "k")
    assert batch.fiducials["m"].shape == (10,) and np.all(batch.fiducials["m"] == 2.0)
    for i in range(10):
        single = ff.fisher([EXP, poisson], item(fid, i), params=["a", "k"])
        assert_matrix_close(batch.matrices[i], single.matrix)
        # Closed form: Gaussian block of the two-exponential model + Poisson Σ ∂λ∂λ/λ.
        p = item(fid, i)
        full = two_exponentials_fisher(p["a"], p["b"], p["k"], p["m"])[np.ix_([0, 2], [0, 2])]
        lam = 50.0 * p["a"] * np.exp(-p["k"] * T)
        dl = np.stack([lam / p["a"], -T * lam], axis=1)
        assert_matrix_close(batch.matrices[i], full + dl.T @ (dl / lam[:, None]), rtol=1e-11)
    assert batch.select(3).metadata["fixed"] == pytest.approx({"b": fid["b"][3], "m": 2.0})


def test_psd_amplitude_identity_in_batch():
    """Closed form (h = A·g(f; θ), PSD noise): F_lnA,lnA = SNR² = 4 Re Σ |h|²/S_n Δf, and
    ln A decouples from phase parameters."""
    f = np.linspace(20.0, 200.0, 300)
    psd = 1e-2 * (1 + (50.0 / f) ** 4 + (f / 150.0) ** 2)

    def chirp(p, f):
        psi = (
            2 * jnp.pi * f * p["tc"] - p["phi"] + 3e2 * p["mc"] ** (-5 / 3) * (f / 100) ** (-5 / 3)
        )
        return jnp.exp(p["lnA"]) * f ** (-7 / 6) * jnp.exp(-1j * psi)

    exp = ff.Experiment(chirp, ff.PSD(psd, f[1] - f[0]), design=f)
    rng = np.random.default_rng(2)
    fid = {
        "lnA": rng.uniform(0, 3, 7),
        "tc": rng.uniform(-0.01, 0.01, 7),
        "phi": rng.uniform(0, 6, 7),
        "mc": rng.uniform(1.0, 2.0, 7),
    }
    batch = ff.fisher_batch(exp, fid, chunk_size=7, progress=False)
    for i in range(7):
        snr2 = 4 * (f[1] - f[0]) * np.sum(np.exp(2 * fid["lnA"][i]) * f ** (-7 / 3) / psd)
        assert batch.matrices[i, 0, 0] == pytest.approx(snr2, rel=1e-12)
        np.testing.assert_allclose(batch.matrices[i, 0, 1:], 0.0, atol=1e-12 * snr2)
        assert_matrix_close(batch.matrices[i], ff.fisher(exp, item(fid, i)).matrix)
        assert batch.sigma()["lnA"][i] == pytest.approx(1 / np.sqrt(snr2), rel=1e-10)


# ----- failure isolation -------------------------------------------------------------------
def test_failure_isolation():
    fid = population(12, seed=3)
    fid["b"][2] = -1.0  # sqrt of a negative number: NaN output
    fid["m"][4] = fid["k"][4]  # collinear columns: singular
    fid["a"][6] = 0.0  # no information about k
    fid["k"][9] = np.nan  # bad input value
    clean = population(12, seed=3)
    batch = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)
    expected = {
        2: Reason.BAD_OUTPUT,
        4: Reason.SINGULAR,
        6: Reason.NO_INFORMATION,
        9: Reason.BAD_FIDUCIAL,
    }
    for i in range(12):
        assert batch.reason_codes[i] == expected.get(i, Reason.OK), (i, batch.reason[i])
        assert batch.ok[i] == (i not in expected)
    assert batch.reason[2] == "model output is NaN/inf"
    assert set(batch.failures()) == {ff.FisherBatch.REASONS[c] for c in expected.values()}
    # The good items are untouched by their bad neighbours.
    good = [i for i in range(12) if i not in expected]
    ref = ff.fisher_batch(EXP, {k: v[good] for k, v in clean.items()}, chunk_size=8, progress=False)
    np.testing.assert_array_equal(batch.matrices[good], ref.matrices)
    sig = batch.sigma()
    for n in NAMES:
        assert np.all(np.isnan(sig[n][list(expected)]))
        assert np.all(np.isfinite(sig[n][good]))
    # The singular item's matrix is kept (a prior can rescue it); its sigma is NaN.
    assert np.all(np.isfinite(batch.matrices[4]))
    with pytest.raises(ff.SingularFisherError):
        batch.select(4).sigma()
    with pytest.raises(ff.FisherError, match="item 2 has no Fisher matrix: model output"):
        batch.select(2)
    assert "failed (model output is NaN/inf): 1 items" in batch.summary()


def test_runtime_error_in_one_item_is_isolated(capfd):
    eqx = pytest.importorskip("equinox")

    def guarded(p, t):
        mu = p["a"] * jnp.exp(-p["k"] * t)
        return eqx.error_if(mu, p["a"] > 100.0, "amplitude out of range")

    exp = ff.Experiment(guarded, ff.Gaussian(sigma=0.1), design=T)
    a = np.linspace(1.0, 2.0, 13)
    a[[3, 11]] = 500.0
    batch = ff.fisher_batch(exp, {"a": a, "k": 0.5}, chunk_size=8, progress=False)
    assert np.nonzero(~batch.ok)[0].tolist() == [3, 11]
    assert set(batch.reason_codes[[3, 11]]) == {Reason.ERROR}
    assert "amplitude out of range" in batch.messages[3]
    # The errors are kept per item; JAX's callback tracebacks are not printed.
    assert "Traceback" not in capfd.readouterr().err
    for i in (0, 5, 12):
        assert_matrix_close(batch.matrices[i], ff.fisher(exp, {"a": a[i], "k": 0.5}).matrix)


def test_out_of_memory_stops_instead_of_bisecting(monkeypatch):
    import jax

    calls = []

    def exhausted(self, idx):
        calls.append(len(idx))
        raise jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123456789 bytes."
        )

    monkeypatch.setattr(b_chunk.Chunk, "dispatch", exhausted)
    with pytest.raises(MemoryError, match=r"chunk of 8 items.*smaller chunk_size \(e.g. 2\)"):
        ff.fisher_batch(EXP, population(16), chunk_size=8, progress=False)
    assert calls == [8, 8]  # the two chunks in flight, and no bisection


# ----- compilation -------------------------------------------------------------------------
def _counting_model():
    calls = {"n": 0}

    def model(p, t):
        calls["n"] += 1  # runs once per trace, never per evaluation
        return p["a"] * jnp.exp(-p["k"] * t)

    return model, calls


def test_no_retracing_across_chunks():
    one_model, one_calls = _counting_model()
    many_model, many_calls = _counting_model()
    noise = ff.Gaussian(sigma=0.1)
    fid = {"a": np.linspace(1, 2, 53), "k": np.linspace(0.1, 1, 53)}
    ff.fisher_batch(
        ff.Experiment(one_model, noise, design=T),
        {k: v[:8] for k, v in fid.items()},
        chunk_size=8,
        progress=False,
    )
    # 7 chunks, the last one padded from 5 to 8 items: the same traces as a single chunk.
    batch = ff.fisher_batch(
        ff.Experiment(many_model, noise, design=T), fid, chunk_size=8, progress=False
    )
    assert batch.metadata["n_chunks"] == 7
    assert many_calls["n"] == one_calls["n"] > 0
    # A second run with the same shapes compiles nothing and traces nothing.
    before = many_calls["n"]
    ff.fisher_batch(
        ff.Experiment(many_model, noise, design=T),
        {k: v[::-1] for k, v in fid.items()},
        chunk_size=8,
        progress=False,
    )
    assert many_calls["n"] == before


# ----- HDF5 streaming and resume -----------------------------------------------------------
def test_out_file_layout_and_roundtrip(tmp_path):
    fid = population(21, seed=4)
    path = tmp_path / "pop.h5"
    batch = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=path)
    ref = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)
    np.testing.assert_array_equal(batch.matrices, ref.matrices)
    with h5py.File(path, "r") as h:
        assert h.attrs["format"] == "fisherforecast.FisherBatch"
        assert h["matrices"].shape == (21, 4, 4) and h["matrices"].chunks == (8, 4, 4)
        assert h["done"][()].tolist() == [True, True, True]
        assert json.loads(h.attrs["reasons"])[0] == "ok"
        np.testing.assert_array_equal(h["fiducials/k"][()], fid["k"])
    loaded = ff.FisherBatch.load(path)
    np.testing.assert_array_equal(loaded.matrices, ref.matrices)
    assert loaded.names == NAMES and loaded.ok.all()
    # save() writes the same layout, atomically, and refuses to overwrite.
    other = tmp_path / "copy.h5"
    loaded.subset(slice(0, 5)).save(other)
    np.testing.assert_array_equal(ff.FisherBatch.load(other).matrices, ref.matrices[:5])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        loaded.save(other)
    # A rerun with the same inputs finds the file complete and computes nothing.
    again = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=path)
    assert again.metadata["chunks_computed"] == 0
    np.testing.assert_array_equal(again.matrices, ref.matrices)


def test_resume_after_interruption(tmp_path, monkeypatch):
    fid = population(37, seed=5)
    path = tmp_path / "pop.h5"
    original = b_execute.finish_chunk
    calls = []

    def flaky(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the job were stopped during the third chunk
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(b_execute, "finish_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=path)
    # The file is valid, with exactly the two finished chunks flagged done.
    with pytest.raises(ValueError, match="incomplete: 3 of 5 chunks"):
        ff.FisherBatch.load(path)
    partial = ff.FisherBatch.load(path, allow_partial=True)
    assert partial.ok[:16].all() and not partial.ok[16:].any()
    assert set(partial.reason[16:]) == {"not computed (chunk not finished)"}

    counted = []

    def counting(*args, **kwargs):
        counted.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(b_execute, "finish_chunk", counting)
    resumed = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=path)
    assert len(counted) == 3
    assert resumed.metadata["chunks_resumed"] == 2
    ref = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)
    np.testing.assert_array_equal(resumed.matrices, ref.matrices)
    np.testing.assert_array_equal(resumed.reason_codes, ref.reason_codes)


def test_file_survives_a_kill_between_data_and_done_flag(tmp_path):
    """SIGKILL (no clean-up at all) after chunk 3's data is written but before its flag."""
    path = tmp_path / "pop.h5"
    script = textwrap.dedent("""
        import os, signal, sys
        from fisherforecast._batch import store
        sys.path.insert(0, sys.argv[2])
        from test_batch import EXP, population
        import fisherforecast as ff

        original, calls = store.H5Store._sync, []

        def sync(self):
            original(self)
            calls.append(1)
            if len(calls) == 5:  # chunks 1-2: data + flag; chunk 3: data only
                os.kill(os.getpid(), signal.SIGKILL)

        store.H5Store._sync = sync
        ff.fisher_batch(EXP, population(37, seed=5), chunk_size=8, progress=False,
                        out=sys.argv[1])
    """)
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == -9, run.stderr[-2000:]
    partial = ff.FisherBatch.load(path, allow_partial=True)
    assert partial.metadata["chunks_done"] == 2 and partial.ok[:16].all()
    assert (partial.reason_codes[16:] == Reason.NOT_COMPUTED).all()
    # The fingerprint names the model by module: use the module the child imported.
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        child_exp = importlib.import_module("test_batch").EXP
    finally:
        sys.path.pop(0)
    resumed = ff.fisher_batch(
        child_exp, population(37, seed=5), chunk_size=8, progress=False, out=path
    )
    assert resumed.metadata["chunks_computed"] == 3
    ref = ff.fisher_batch(EXP, population(37, seed=5), chunk_size=8, progress=False)
    np.testing.assert_array_equal(resumed.matrices, ref.matrices)


def test_resume_refuses_mismatched_files(tmp_path, monkeypatch):
    fid = population(20, seed=6)
    path = tmp_path / "pop.h5"
    original = b_execute.finish_chunk
    state = {"n": 0}

    def stop_after_one(*args, **kwargs):
        if state["n"] == 1:
            raise RuntimeError("node failure")
        state["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(b_execute, "finish_chunk", stop_after_one)
    with pytest.raises(RuntimeError, match="node failure"):
        ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=path)
    monkeypatch.setattr(b_execute, "finish_chunk", original)
    changed = {**fid, "a": fid["a"] * 1.5}
    with pytest.raises(ValueError, match=r"cannot resume .* fiducials_hash.*1 of 3 chunks"):
        ff.fisher_batch(EXP, changed, chunk_size=8, progress=False, out=path)
    with pytest.raises(ValueError, match="chunk_size"):
        ff.fisher_batch(EXP, fid, chunk_size=4, progress=False, out=path)
    # An automatic chunk size adopts the file's and resumes.
    resumed = ff.fisher_batch(EXP, fid, progress=False, out=path)
    assert resumed.metadata["chunk_size"] == 8 and resumed.metadata["chunks_resumed"] == 1
    # A finished file made from other inputs is never silently replaced.
    with pytest.raises(FileExistsError, match=r"different inputs.*overwrite=True"):
        ff.fisher_batch(EXP, changed, chunk_size=8, progress=False, out=path)
    replaced = ff.fisher_batch(EXP, changed, chunk_size=8, progress=False, out=path, overwrite=True)
    np.testing.assert_array_equal(ff.FisherBatch.load(path).matrices, replaced.matrices)
    # A file in which no chunk finished holds nothing to lose: other inputs replace it.
    empty = tmp_path / "empty.h5"

    def stop_at_once(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(b_execute, "finish_chunk", stop_at_once)
    with pytest.raises(RuntimeError, match="killed"):
        ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=empty)
    monkeypatch.setattr(b_execute, "finish_chunk", original)
    fresh = ff.fisher_batch(EXP, changed, chunk_size=8, progress=False, out=empty)
    assert fresh.metadata["chunks_computed"] == 3
    other = tmp_path / "notes.h5"
    other.write_text("not hdf5")
    with pytest.raises(FileExistsError, match="not a fisherforecast batch file"):
        ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, out=other)


# ----- Dask --------------------------------------------------------------------------------
# distributed warns when its scratch directory takes over a second to create (a loaded CI
# disk): that is the machine, not this code.
@pytest.mark.filterwarnings("ignore:Creating scratch directories is taking:UserWarning")
def test_dask_local_cluster_equals_local_run(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    fid = population(30, seed=7)
    fid["b"][3] = -1.0
    local = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            local_directory=tmp_path / "dask-scratch",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, client=client)
        streamed = ff.fisher_batch(
            EXP, fid, chunk_size=8, progress=False, client=client, out=tmp_path / "dask.h5"
        )
    for result in (remote, streamed):
        np.testing.assert_array_equal(result.matrices, local.matrices)
        np.testing.assert_array_equal(result.reason_codes, local.reason_codes)
    assert remote.metadata["dask"] and not remote.ok[3]


# ----- design batching ---------------------------------------------------------------------
def test_design_batch():
    spans = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    grid = spans[:, None] * np.linspace(0.0, 1.0, 25)[None, :]  # 5 observing strategies
    exp = ff.Experiment(two_exponentials, ff.Gaussian(sigma=SIGMA), design=grid)
    fid = {"a": 1.0, "b": 1.5, "k": 0.4, "m": 2.0}
    batch = ff.fisher_batch(exp, fid, chunk_size=2, progress=False, design_batch=True)
    assert len(batch) == 5 and batch.fiducials["a"].shape == (5,)
    for d in range(5):
        single = ff.fisher(exp.replace(design=grid[d]), fid)
        assert_matrix_close(batch.matrices[d], single.matrix)
        assert_matrix_close(
            batch.matrices[d],
            two_exponentials_fisher(*(fid[n] for n in NAMES), t=grid[d]),
            rtol=1e-11,
        )
    # Per-design fiducials are allowed too, one per design.
    per = ff.fisher_batch(
        exp, {**fid, "k": np.linspace(0.3, 0.5, 5)}, chunk_size=2, progress=False, design_batch=True
    )
    assert_matrix_close(
        per.matrices[4], ff.fisher(exp.replace(design=grid[4]), {**fid, "k": 0.5}).matrix
    )
    with pytest.raises(ValueError, match=r"design's batch axis has 5 items.*length 3"):
        ff.fisher_batch(exp, {**fid, "k": np.ones(3)}, design_batch=True, progress=False)
    with pytest.raises(ValueError, match="leading batch axis"):
        ff.fisher_batch(
            ff.Experiment(lambda p: p["a"] * jnp.ones(3), ff.Gaussian(sigma=1.0)),
            {"a": 1.0},
            design_batch=True,
            progress=False,
        )


# ----- input validation --------------------------------------------------------------------
def test_bad_inputs():
    fid = population(6)
    with pytest.raises(ValueError, match=r"different lengths \{'a': 6, 'b': 6, 'k': 5"):
        ff.fisher_batch(EXP, {**fid, "k": fid["k"][:5]}, progress=False)
    with pytest.raises(ff.ParameterError, match=r"\['zeta'\], which are not in the fiducial"):
        ff.fisher_batch(EXP, fid, params=["a", "zeta"], progress=False)
    with pytest.raises(ff.ParameterError, match="asked for parameter 'm'"):
        ff.fisher_batch(EXP, {k: fid[k] for k in "abk"}, progress=False)
    with pytest.raises(TypeError, match="dict of parameter name"):
        ff.fisher_batch(EXP, [1.0, 2.0], progress=False)
    with pytest.raises(ValueError, match=r"fiducials\['a'\] must be a scalar or a 1-D array"):
        ff.fisher_batch(EXP, {**fid, "a": np.ones((6, 2))}, progress=False)
    with pytest.raises(ValueError, match=r"`chunk_size` must be a positive integer.*0"):
        ff.fisher_batch(EXP, fid, chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="mode"):
        ff.fisher_batch(EXP, fid, mode="sideways", progress=False)
    with pytest.raises(TypeError, match="`devices` must be"):
        ff.fisher_batch(EXP, fid, devices="gpu", progress=False)
    with pytest.raises(ValueError, match="local devices"):
        ff.fisher_batch(EXP, fid, devices=99, progress=False)
    with pytest.raises(ValueError, match="either `client`"):
        ff.fisher_batch(EXP, fid, devices=1, client=object(), progress=False)
    with pytest.raises(TypeError, match="Experiment"):
        ff.fisher_batch(two_exponentials, fid, progress=False)
    with pytest.raises(ValueError, match="empty"):
        ff.fisher_batch(EXP, {"a": np.array([]), "b": 1.0, "k": 1.0, "m": 1.0}, progress=False)


# ----- chunking, devices, progress ---------------------------------------------------------
def test_automatic_chunk_size_follows_memory_budget():
    # Output of 25 reals, P = 4: (25 × 5 × 8 + 4² × 8) × BYTES_FACTOR bytes per item.
    per_item = (25 * 5 * 8 + 16 * 8) * b_plan.BYTES_FACTOR
    batch = ff.fisher_batch(EXP, population(40), memory_budget=per_item * 10 + 7, progress=False)
    assert batch.metadata["chunk_size"] == 10 and batch.metadata["n_chunks"] == 4
    small = ff.fisher_batch(EXP, population(3), progress=False)
    assert small.metadata["chunk_size"] == 3  # never larger than the batch
    # Chunks are evened out: 41 items with room for 10 per chunk -> 5 chunks of 9, not
    # 4 of 10 plus one of 1 padded to 10.
    even = ff.fisher_batch(EXP, population(41), memory_budget=per_item * 10 + 7, progress=False)
    assert even.metadata["chunk_size"] == 9 and even.metadata["n_chunks"] == 5
    assert b_plan.auto_chunk_size(1, 8192, 10_000, 1) == 5000
    assert b_plan.auto_chunk_size(1, 8192, 10_000, 3) == 5001  # a multiple of the devices


def test_explicit_single_device_and_progress_bar(capsys):
    import jax

    fid = population(20, seed=8)
    batch = ff.fisher_batch(EXP, fid, chunk_size=8, devices=[jax.devices("cpu")[0]])
    ref = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False)  # default: maybe a GPU
    np.testing.assert_allclose(batch.matrices, ref.matrices, rtol=1e-12)
    assert "fisher_batch" in capsys.readouterr().err  # 3 chunks: a bar
    ff.fisher_batch(EXP, {k: v[:8] for k, v in fid.items()}, chunk_size=8)
    assert "fisher_batch" not in capsys.readouterr().err  # 1 chunk: no bar


def test_sharding_over_several_cpu_devices(tmp_path):
    """Two virtual CPU devices (a fresh process: the device count is fixed at start-up)."""
    script = textwrap.dedent("""
        import sys
        import numpy as np, jax, jax.numpy as jnp, fisherforecast as ff
        sys.path.insert(0, sys.argv[1])
        from test_batch import EXP, population, two_exponentials
        assert len(jax.devices()) == 2
        fid = population(21, seed=9)
        fid["b"][4] = -1.0
        ref = ff.fisher_batch(EXP, fid, chunk_size=8, progress=False, devices=1)
        shard = ff.fisher_batch(EXP, fid, chunk_size=7, progress=False)  # all devices
        assert shard.metadata["chunk_size"] == 8, shard.metadata   # a multiple of 2
        assert len(shard.metadata["devices"]) == 2
        np.testing.assert_allclose(shard.matrices[~np.isnan(ref.matrices)],
                                   ref.matrices[~np.isnan(ref.matrices)], rtol=1e-13)
        assert (shard.reason_codes == ref.reason_codes).all()
        grid = np.array([1.0, 2.0, 4.0, 8.0])[:, None] * np.linspace(0, 1, 25)[None, :]
        exp = ff.Experiment(two_exponentials, ff.Gaussian(sigma=0.05), design=grid)
        f0 = {"a": 1.0, "b": 1.5, "k": 0.4, "m": 2.0}
        d = ff.fisher_batch(exp, f0, chunk_size=4, devices=2, design_batch=True,
                            progress=False)
        for i in range(4):
            F = ff.fisher(exp.replace(design=grid[i]), f0).matrix
            np.testing.assert_allclose(d.matrices[i], F, rtol=1e-12)
        print("OK")
    """)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]


# ----- FisherBatch as a value --------------------------------------------------------------
def test_fisher_batch_container_against_closed_forms(tmp_path):
    # The linear model μ = (a, b, a + 2b) (closed form F = JᵀJ = [[2, 2], [2, 5]],
    # σ = (0.912871, 0.577350)), a diagonal matrix,
    # a singular one and a NaN one.
    mats = [
        [[2.0, 2.0], [2.0, 5.0]],
        [[4.0, 0.0], [0.0, 0.25]],
        [[1.0, 2.0], [2.0, 4.0]],
        [[np.nan, 0.0], [0.0, 1.0]],
    ]
    batch = ff.FisherBatch(mats, ["a", "b"], {"a": [1.0, 2.0, 3.0, 4.0], "b": 0.5})
    assert batch.ok.tolist() == [True, True, False, False]
    assert batch.reason[2].startswith("singular") and batch.reason[3] == "Fisher matrix is NaN/inf"
    sig = batch.sigma()
    np.testing.assert_allclose(sig["a"][:2], [0.912871, 0.5], rtol=1e-6)
    np.testing.assert_allclose(sig["b"][:2], [0.577350, 2.0], rtol=1e-6)
    assert np.isnan(sig["a"][2:]).all()
    np.testing.assert_allclose(batch.covariance()[0], np.linalg.inv(np.array(mats[0])), rtol=1e-14)
    assert batch.condition_number[1] == pytest.approx(1.0)
    assert batch.fiducials["b"].tolist() == [0.5] * 4
    d = batch.to_dict()
    assert d["n_ok"] == 2 and d["failures"]["Fisher matrix is NaN/inf"] == [3]
    assert "FisherBatch: 4 items, 2 parameters, 2 ok" in batch.summary()
    with pytest.raises(AttributeError, match="immutable"):
        batch.names = ("x", "y")
    with pytest.raises(ValueError, match="read-only"):
        batch.matrices[0, 0, 0] = 1.0
    with pytest.raises(IndexError, match="out of range"):
        batch.select(4)
    assert batch.select(-3).sigma()["b"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"shape \(B, P, P\)"):
        ff.FisherBatch(np.eye(2), ["a", "b"])
    with pytest.raises(ValueError, match="`matrices` has 4 items"):
        ff.FisherBatch(mats, ["a", "b"], {"a": [1.0, 2.0]})
    import pickle

    clone = pickle.loads(pickle.dumps(batch))
    np.testing.assert_array_equal(clone.matrices, batch.matrices)
    assert clone.reason.tolist() == batch.reason.tolist() and clone.names == batch.names
    path = tmp_path / "b.h5"
    batch.save(path)
    back = ff.FisherBatch.load(path)
    np.testing.assert_array_equal(back.matrices, batch.matrices)
    np.testing.assert_array_equal(back.reason_codes, batch.reason_codes)
    assert back.fiducials["a"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_batched_inversion_blocks_fallback_and_concatenate():
    rng = np.random.default_rng(11)
    A = rng.normal(size=(7, 3, 3))
    mats = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(3)
    # Indefinite (eigenvalues 3, -1, 1): Cholesky fails, the eigh fallback still inverts.
    mats[2] = [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    ok = np.ones(7, bool)
    ok[5] = False
    for block in (2, 8192):  # several blocks, one block
        cov = _linalg.covariance(mats, ok, block=block)
        var = _linalg.covariance(mats, ok, diagonal_only=True, block=block)
        for i in range(7):
            if ok[i]:
                np.testing.assert_allclose(cov[i], np.linalg.inv(mats[i]), rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(var[i], np.diag(np.linalg.inv(mats[i])), rtol=1e-10)
        assert np.isnan(cov[5]).all() and np.isnan(var[5]).all()
    a = ff.FisherBatch(mats[:3], ["x", "y", "z"], {"x": np.arange(3.0), "y": 0.0, "z": 1.0})
    b = ff.FisherBatch(mats[3:], ["x", "y", "z"], {"x": np.arange(3.0, 7.0), "y": 0.0, "z": 1.0})
    joined = ff.FisherBatch.concatenate([a, b])
    np.testing.assert_array_equal(joined.matrices, 0.5 * (mats + np.swapaxes(mats, 1, 2)))
    assert joined.fiducials["x"].tolist() == list(range(7))
    assert joined.reason_codes.tolist() == a.reason_codes.tolist() + b.reason_codes.tolist()
    with pytest.raises(ValueError, match="different parameters"):
        ff.FisherBatch.concatenate([a, ff.FisherBatch(mats[:1, :2, :2], ["x", "w"])])


def test_plot_structure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = ff.FisherBatch(
        [np.diag([1.0, 4.0]) * s for s in (1.0, 4.0, 16.0)],
        ["a", "b"],
        {"a": [1.0, 2.0, 4.0], "b": 1.0},
    )
    ax = batch.plot("b", "a")
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, [[1.0, 0.5], [2.0, 0.25], [4.0, 0.125]])
    assert ax.get_xlabel() == "a" and "sigma" in ax.get_ylabel()
    assert ax.get_xscale() == "log"
    plt.close("all")


def test_population_example_runs_fast(tmp_path):
    module = load_example("population_forecast")
    result = module.main(n=40, out_dir=tmp_path, seed=1, progress=False)
    assert (tmp_path / "population.h5").exists() and (tmp_path / "sigma_vs_snr.png").exists()
    batch = ff.FisherBatch.load(tmp_path / "population.h5")
    assert len(batch) == 40 and batch.ok.sum() >= 38
    # The GW amplitude identity in the population (closed form): σ(ln A) = 1 / SNR exactly.
    ok = batch.ok
    np.testing.assert_allclose(batch.sigma()["lnA"][ok] * result["snr"][ok], 1.0, rtol=1e-8)
    # Fixing phase parameters and a prior on η leave σ(ln A) = 1/SNR (ln A decouples) and
    # can only shrink σ(ln Mc).
    known = result["known"]
    both = ok & known.ok
    np.testing.assert_allclose(known.sigma()["lnA"][both] * result["snr"][both], 1.0, rtol=1e-8)
    assert np.all(known.sigma()["lnMc"][both] <= batch.sigma()["lnMc"][both] * (1 + 1e-12))
    assert known.names == ("lnA", "lnMc", "eta")


def test_model_errors_surface_before_a_file_is_written(tmp_path):
    path = tmp_path / "pop.h5"
    wrong = ff.Experiment(two_exponentials, ff.Gaussian(sigma=np.ones(7)), design=T)
    with pytest.raises(ValueError, match="sigma has shape"):
        ff.fisher_batch(wrong, population(10), chunk_size=4, progress=False, out=path)
    assert not path.exists()


# ----- algebra on batches: sums, priors, fix, marginalise ----------------------------------
def test_batch_algebra_matches_per_item_matrices_and_closed_forms():
    # Two "detectors" observe the same 12 sources over different time windows; their sum
    # is the Fisher matrix of the joint data set, i.e. of the concatenated time grid.
    fid = population(12, seed=5)
    fid["m"][4] = fid["k"][4]  # collinear within one window: singular alone
    fid["b"][2] = -1.0  # NaN output in every window
    t_late = np.linspace(4.5, 8.0, 20)
    late = EXP.replace(design=t_late, name="late")
    early_b = ff.fisher_batch(EXP, fid, progress=False)
    late_b = ff.fisher_batch(late, fid, progress=False)
    both = early_b + late_b
    for i in range(12):
        if i == 2:
            continue
        p = item(fid, i)
        closed = two_exponentials_fisher(
            p["a"], p["b"], p["k"], p["m"], t=np.concatenate([T, t_late])
        )
        assert_matrix_close(both.matrices[i], closed, rtol=1e-10)
    # Failed evaluations stay failed with their reason; the sum is classified afresh.
    assert both.reason_codes[2] == Reason.BAD_OUTPUT and np.all(np.isnan(both.matrices[2]))
    assert both.reason_codes[4] == Reason.SINGULAR  # k == m is degenerate for any grid
    assert both.metadata["experiment"] == "decay+late"
    assert sum([early_b, late_b]).matrices[0].tolist() == both.matrices[0].tolist()
    # Same as summing the per-item FisherMatrix objects (parameter alignment by name).
    reordered = ff.FisherBatch(late_b.matrices[:, ::-1, ::-1], NAMES[::-1], late_b.fiducials)
    np.testing.assert_allclose(
        (early_b + reordered).matrices[0], (early_b.select(0) + late_b.select(0)).matrix, rtol=1e-14
    )
    # Scaling: twice the data is twice the information.
    np.testing.assert_allclose(
        (2 * early_b).sigma()["k"], early_b.sigma()["k"] / np.sqrt(2), rtol=1e-12
    )


def test_batch_priors_fix_and_marginalize_closed_forms():
    # Item 0: F = [[2, 1], [1, 1]] -> cov = [[1, -1], [-1, 2]].  Item 1: rank one, a + b
    # constrained, a − b not.  Item 2: failed evaluation (NaN matrix, code "model output").
    M = np.array([[[2.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], np.full((2, 2), np.nan)])
    batch = ff.FisherBatch._build(
        M,
        ("a", "b"),
        None,
        np.array([0, 7, Reason.BAD_OUTPUT]),
        np.array([9.0, np.inf, np.nan]),
        {},
        {},
    )
    assert batch.ok.tolist() == [True, False, False]
    # A prior on b breaks the degeneracy of item 1: F = [[1, 1], [1, 1 + 1/σ²]].
    pri = batch.with_prior({"b": 0.5})
    assert pri.ok.tolist() == [True, True, False]
    assert pri.reason_codes[2] == Reason.BAD_OUTPUT
    # σ_a² = (F⁻¹)_aa = F_bb / det: item 0 [[2, 1], [1, 5]] -> 5/9; item 1 -> 5/4.
    np.testing.assert_allclose(pri.sigma()["a"][:2], np.sqrt([5 / 9, 5 / 4]), rtol=1e-14)
    # Per-item priors as an array (a huge σ adds nothing).
    per = batch.with_prior({"b": np.array([1e300, 1.0, 1.0])})
    np.testing.assert_allclose(per.matrices[1], [[1.0, 1.0], [1.0, 2.0]], rtol=1e-15)
    np.testing.assert_allclose(per.matrices[0], M[0], rtol=1e-15)
    # Fixing b: F_aa alone; item 1 becomes identifiable.
    fixed = batch.fix("b")
    assert fixed.names == ("a",) and fixed.ok.tolist() == [True, True, False]
    np.testing.assert_allclose(fixed.sigma()["a"][:2], [1 / np.sqrt(2), 1.0], rtol=1e-14)
    # Marginalising b: item 0 gives 1/cov_aa = 1; item 1's degeneracy a - b involves the
    # kept a, so its marginal is undefined: it stays singular (NaN), never round-off.
    marg = batch.marginalize(["a"])
    np.testing.assert_allclose(marg.matrices[0], [[1.0]], rtol=1e-14)
    assert marg.reason_codes.tolist() == [Reason.OK, Reason.SINGULAR, Reason.BAD_OUTPUT]
    assert np.isnan(marg.matrices[1]).all()
    np.testing.assert_allclose(
        marg.matrices[0], batch.select(0).marginalize(["a"]).matrix, rtol=1e-14
    )
    # A FisherMatrix adds to every item (an external constraint), names aligned.
    ext = batch + ff.FisherMatrix([[4.0]], ["b"])
    np.testing.assert_allclose(ext.matrices[1], pri.matrices[1], rtol=1e-15)
    assert (ff.FisherMatrix([[1.0]], ["c"]) + batch).names == ("c", "a", "b")  # left first


def test_batch_marginalize_matches_covariance_block_on_a_population():
    batch = ff.fisher_batch(EXP, population(20, seed=8), progress=False)
    marg = batch.marginalize(["k", "a"])
    cov = batch.covariance()
    for i in range(20):
        block = cov[i][np.ix_([2, 0], [2, 0])]
        assert_matrix_close(marg.matrices[i], np.linalg.inv(block), rtol=1e-8)
    np.testing.assert_allclose(marg.sigma()["k"], batch.sigma()["k"], rtol=1e-9)


def test_batch_algebra_bad_inputs():
    a = ff.FisherBatch(
        np.tile(np.eye(2), (3, 1, 1)), ["a", "b"], fiducials={"a": [1.0, 2.0, 3.0], "b": 0.0}
    )
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        a + ff.FisherBatch(np.tile(np.eye(2), (2, 1, 1)), ["a", "b"])
    other = ff.FisherBatch(np.tile(np.eye(1), (3, 1, 1)), ["a"], fiducials={"a": [1.0, 2.5, 3.0]})
    with pytest.raises(ValueError, match=r"'a' of item 1 is 2.0 in one and 2.5"):
        a + other
    with pytest.raises(ff.ParameterError, match=r"\['c'\]"):
        a.with_prior({"c": 1.0})
    with pytest.raises(ValueError, match=r"prior sigma for 'a' must be positive.*-1.0 \(item 1\)"):
        a.with_prior({"a": [1.0, -1.0, 1.0]})
    with pytest.raises(ValueError, match=r"\(3,\) array"):
        a.with_prior({"a": [1.0, 1.0]})
    with pytest.raises(ValueError, match="every parameter"):
        a.fix(["a", "b"])
    with pytest.raises(ff.ParameterError, match="marginalize"):
        a.marginalize(["z"])
    with pytest.raises(ValueError, match="positive finite"):
        a * -1.0
    with pytest.raises(TypeError):
        a + "F"


def test_batch_marginalize_rank_checks_every_item():
    # Exactly degenerate items, c = 0.7 a + 1.3 b: a marginal that keeps a parameter of the
    # degeneracy must stay singular (NaN), never an "ok" item with a σ made of round-off.
    rng = np.random.default_rng(11)
    mats = []
    for _ in range(300):
        J = rng.normal(size=(5, 2))
        J = np.column_stack([J, 0.7 * J[:, 0] + 1.3 * J[:, 1]])
        mats.append(J.T @ J)
    batch = ff.FisherBatch(mats, ["a", "b", "c"])
    assert not batch.ok.any()
    for keep in (["a"], ["c"], ["a", "b"]):
        marg = batch.marginalize(keep)
        assert not marg.ok.any(), keep
        assert np.isnan(marg.matrices).all()
    # A degeneracy confined to the marginalised parameters (t_c and φ_c that enter only as
    # one combination): the kept marginal is defined, and equals the closed form obtained by
    # reparametrising the degenerate pair into one parameter.
    t = np.linspace(0.0, 1.0, 30)
    items, closed = [], []
    for _ in range(5):
        X = np.column_stack([np.sin(rng.uniform(1, 5) * t), t**2, np.ones_like(t)])
        J = np.column_stack([X, X[:, 2]])  # tc and phic columns identical
        items.append(J.T @ J)
        closed.append(np.linalg.inv(np.linalg.inv(X.T @ X)[:2, :2]))
    pair = ff.FisherBatch(items, ["x", "y", "tc", "phic"])
    assert pair.reason_codes.tolist() == [Reason.SINGULAR] * 5
    marg = pair.marginalize(["x", "y"])
    assert marg.ok.all()
    for i in range(5):
        assert_matrix_close(marg.matrices[i], closed[i], rtol=1e-9)
        np.testing.assert_allclose(
            marg.matrices[i],
            ff.FisherMatrix(items[i], pair.names).marginalize(["x", "y"]).matrix,
            rtol=1e-12,
        )


def test_batch_algebra_with_failed_items_and_per_item_inputs():
    fid = population(6, seed=2)
    fid["k"][1] = np.nan  # failed item with a NaN fiducial
    b1 = ff.fisher_batch(EXP, fid, progress=False)
    b2 = ff.fisher_batch(EXP.replace(design=T + 5.0), fid, progress=False)
    both = b1 + b2  # the NaN fiducial does not abort the sum
    assert both.reason_codes[1] == Reason.BAD_FIDUCIAL and both.ok.sum() == 5
    assert sum([b1, b2]).ok.tolist() == both.ok.tolist()
    # A prior that scales with the source, NaN on the failed item, is fine; inf adds 0.
    pri = b1.with_prior({"k": 0.1 * np.abs(b1.fiducials["k"])})
    assert pri.ok.sum() == 5
    sig = np.full(6, np.inf)
    np.testing.assert_array_equal(b1.with_prior({"a": sig}).matrices[b1.ok], b1.matrices[b1.ok])
    with pytest.raises(ValueError, match="overflows; received 1e-200"):
        b1.with_prior({"a": 1e-200})
    with pytest.raises(ValueError, match=r"received None"):
        b1.with_prior({"a": None})
    # Per-item scaling (each source observed for its own time); numpy must not broadcast.
    T_obs = np.arange(1.0, 7.0)
    scaled = b1 * T_obs
    assert isinstance(scaled, ff.FisherBatch)
    np.testing.assert_allclose(
        scaled.sigma()["a"][b1.ok], (b1.sigma()["a"] / np.sqrt(T_obs))[b1.ok], rtol=1e-12
    )
    assert isinstance(T_obs * b1, ff.FisherBatch) and isinstance(2 * b1, ff.FisherBatch)
    with pytest.raises(TypeError):
        np.zeros(6) + b1
    with pytest.raises(TypeError):
        True * b1
    with pytest.raises(ValueError, match=r"\(6,\) array; received shape \(3,\)"):
        b1 * np.ones(3)
    with pytest.raises(ValueError, match=r"-1.0 \(item 2\)"):
        b1 * np.array([1.0, 1.0, -1.0, 1.0, 1.0, 1.0])
    # Derived batches do not claim the source's file or timings.
    assert "wall_time_s" not in both.metadata and both.metadata["operations"] == ["sum"]
    assert pri.metadata["operations"] == ["with_prior"]
    with pytest.raises(ValueError, match="at least one"):
        b1.marginalize([])


def test_batch_edge_cases_found_in_review(tmp_path):
    # Non-PSD input is its own failure, and stays failed through algebra.
    b = ff.FisherBatch([[[1.0, 0.0], [0.0, -1.0]], [[1.0, 2.0], [2.0, 1.0]], np.eye(2)], ["a", "b"])
    assert b.reason_codes.tolist() == [Reason.NOT_PSD, Reason.NOT_PSD, Reason.OK]
    assert not b.with_prior({"a": 0.01, "b": 0.01}).ok[:2].any()
    with pytest.raises(ff.FisherError, match="item 1 is not a valid Fisher matrix"):
        b.select(1)
    # Empty batches (e.g. a cut that selects nothing) work, and saving one says why not.
    empty = b.subset(np.zeros(3, bool))
    assert len(empty) == 0 and len(empty + empty) == 0 and len(empty.fix("a")) == 0
    assert empty.sigma()["a"].shape == (0,)
    with pytest.raises(ValueError, match="empty"):
        empty.save(tmp_path / "e.h5")
    # overwrite must be a bool: the string "False" is truthy and must not replace a file.
    b.save(tmp_path / "b.h5")
    with pytest.raises(TypeError, match="overwrite"):
        b.save(tmp_path / "b.h5", overwrite="False")
    with pytest.raises(TypeError, match="overwrite"):
        ff.FisherMatrix(np.eye(1), ["a"]).save(tmp_path / "f.h5", overwrite="yes")
    # No fiducials stays None through a file.
    assert ff.FisherBatch.load(tmp_path / "b.h5").fiducials is None
    # Repeated indices keep each item's error message.
    batch = ff.FisherBatch._build(
        np.full((2, 1, 1), np.nan),
        ("a",),
        None,
        np.array([Reason.ERROR, Reason.OK]),
        np.full(2, np.nan),
        {0: "boom"},
        {},
    )
    assert batch.subset([0, 0, 1]).messages == {0: "boom", 1: "boom"}
    # concatenate keeps fiducials given in another order, and warns when it drops them.
    x = ff.FisherBatch([np.eye(2)], ["a", "b"], fiducials={"a": 1.0, "b": 2.0})
    y = ff.FisherBatch([np.eye(2)], ["a", "b"], fiducials={"b": 2.0, "a": 1.0})
    assert ff.FisherBatch.concatenate([x, y]).fiducials["a"].tolist() == [1.0, 1.0]
    with pytest.warns(UserWarning, match="fiducials"):
        assert ff.FisherBatch.concatenate([x, b]).fiducials is None
    with pytest.raises(TypeError, match="real"):
        ff.FisherBatch([[[1.0 + 1j]]], ["a"])
    # fisher_batch argument checks.
    fid = population(4)
    for bad in (True, float("inf"), -1):
        with pytest.raises(ValueError, match="memory_budget"):
            ff.fisher_batch(EXP, fid, progress=False, memory_budget=bad)
    assert len(ff.fisher_batch(EXP, fid, progress=False, memory_budget=np.int64(10**7))) == 4
    with pytest.raises(TypeError, match="`out`"):
        ff.fisher_batch(EXP, fid, progress=False, out=123)
    with pytest.raises(TypeError, match="overwrite"):
        ff.fisher_batch(EXP, fid, progress=False, overwrite="yes")


def test_saving_a_partially_loaded_batch_keeps_it_partial(tmp_path):
    batch = ff.fisher_batch(EXP, population(20), chunk_size=8, progress=False)
    codes = batch.reason_codes.copy()
    codes[16:] = Reason.NOT_COMPUTED
    part = ff.FisherBatch._build(
        batch.matrices,
        batch.names,
        batch.fiducials,
        codes,
        batch.condition_number,
        {},
        batch.metadata,
    )
    part.save(tmp_path / "p.h5")
    with pytest.raises(ValueError, match="incomplete"):
        ff.FisherBatch.load(tmp_path / "p.h5")
    back = ff.FisherBatch.load(tmp_path / "p.h5", allow_partial=True)
    assert back.reason_codes.tolist() == codes.tolist()


def test_reason_codes_are_stable_and_carry_their_messages(tmp_path):
    # The integers are stored in files: they never change.
    table = {
        "OK": 0,
        "BAD_FIDUCIAL": 1,
        "BAD_OUTPUT": 2,
        "BAD_JACOBIAN": 3,
        "BAD_NOISE": 4,
        "BAD_MATRIX": 5,
        "NO_INFORMATION": 6,
        "SINGULAR": 7,
        "ERROR": 8,
        "NOT_COMPUTED": 9,
        "NOT_PSD": 10,
        "STORED_CORRUPT": 11,
    }
    assert {r.name: int(r) for r in Reason} == table
    assert Reason.SINGULAR.message == "singular Fisher matrix (degenerate parameter combination)"
    assert ff.FisherBatch.REASONS == tuple(Reason(c).message for c in range(12))
    # Failures before a matrix exists stay failed through algebra; matrix-level ones do not.
    assert {r.name for r in Reason if r.upstream} == {
        "BAD_FIDUCIAL",
        "BAD_OUTPUT",
        "BAD_JACOBIAN",
        "BAD_NOISE",
        "ERROR",
        "NOT_COMPUTED",
        "NOT_PSD",
        "STORED_CORRUPT",
    }
    batch = ff.FisherBatch([np.eye(2), np.ones((2, 2)), [[1.0, 0.0], [0.0, 0.0]]], ["a", "b"])
    assert batch.reason_codes.tolist() == [Reason.OK, Reason.SINGULAR, Reason.NO_INFORMATION]
    assert batch.reason.tolist() == [
        "ok",
        Reason.SINGULAR.message,
        "a parameter has zero information (zero diagonal entry)",
    ]
    # The file keeps the same codes and the message table.
    batch.save(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5") as h:
        assert h["reason"][()].tolist() == [0, 7, 6]
        assert json.loads(h.attrs["reasons"]) == [r.message for r in Reason]
