"""Reliability of ff.fisher_batch and FisherBatch files: corrupted stored chunks, resuming
with a different model, two runs on one file, refused fiducial types."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._batch.reasons import Reason

ROOT = Path(__file__).resolve().parents[1]
T = np.linspace(0.0, 4.0, 25)


def decay(p, t):
    return p["a"] * jnp.exp(-t / p["tau"])


EXP = ff.Experiment(decay, ff.Gaussian(sigma=0.05), design=T)


def fid(n=24):
    return {"a": np.linspace(1.0, 2.0, n), "tau": np.linspace(1.0, 3.0, n)}


def run(path, exp=EXP, **kw):
    return ff.fisher_batch(exp, fid(), chunk_size=8, progress=False, out=path, **kw)


# ----- 1. stored chunks are rechecked --------------------------------------------------------
@pytest.mark.parametrize("damage", ["zero", "nan", "not_psd"])
def test_load_flags_corrupt_chunk(tmp_path, damage):
    path = tmp_path / "b.h5"
    ref = run(path)
    with h5py.File(path, "r+") as h:
        m = h["matrices"]
        if damage == "zero":
            m[8:16] = 0.0
        elif damage == "nan":
            m[8:16] = np.nan
        else:
            m[8] = np.array([[1.0, 2.0], [2.0, 1.0]])
    loaded = ff.FisherBatch.load(path)
    bad = loaded.reason_codes == Reason.STORED_CORRUPT
    assert bad[8:16].all() and not bad[:8].any() and not bad[16:].any()
    assert not loaded.ok[8:16].any() and loaded.ok[:8].all() and loaded.ok[16:].all()
    assert "chunk 1" in loaded.messages[8]
    np.testing.assert_array_equal(loaded.matrices[:8], ref.matrices[:8])


def test_load_flags_silently_changed_values(tmp_path):
    # A plausible (finite, PSD) but altered matrix is caught by the chunk checksum.
    path = tmp_path / "b.h5"
    run(path)
    with h5py.File(path, "r+") as h:
        h["matrices"][20] = 2.0 * h["matrices"][20]
    loaded = ff.FisherBatch.load(path)
    assert (loaded.reason_codes[16:] == Reason.STORED_CORRUPT).all()
    assert "checksum" in loaded.messages[16]


def test_resume_recomputes_corrupt_chunk(tmp_path):
    path = tmp_path / "b.h5"
    ref = run(path)
    with h5py.File(path, "r+") as h:
        h["matrices"][0:8] = np.nan
    again = run(path)
    assert again.metadata["chunks_computed"] == 1 and again.metadata["chunks_resumed"] == 2
    np.testing.assert_array_equal(again.matrices, ref.matrices)
    assert again.ok.all()
    assert ff.FisherBatch.load(path).ok.all()


def test_saved_batch_is_checked_on_load(tmp_path):
    path = tmp_path / "s.h5"
    ff.FisherBatch(np.stack([np.eye(2)] * 3), ["a", "b"]).save(path)
    with h5py.File(path, "r+") as h:
        h["matrices"][1] = np.zeros((2, 2))
    loaded = ff.FisherBatch.load(path)
    assert (loaded.reason_codes == Reason.STORED_CORRUPT).all()


def test_reason_codes_unchanged():
    assert [int(r) for r in Reason][:11] == list(range(11))
    assert int(Reason.NOT_PSD) == 10 and int(Reason.STORED_CORRUPT) == 11


# ----- 2. the model is fingerprinted by value -------------------------------------------------
def make(k):
    def model(p, t):
        return p["a"] * jnp.exp(-k * t / p["tau"])

    return model


def scaled(p, t, k):
    return k * p["a"] * jnp.exp(-t / p["tau"])


def interrupt_after_first_chunk(monkeypatch):
    from fisherforecast._batch import store

    real = store.H5Store.write

    def write(self, k, *args):
        real(self, k, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(store.H5Store, "write", write)


@pytest.mark.parametrize(
    "first,second",
    [
        (make(1.0), make(10.0)),
        (functools.partial(scaled, k=1.0), functools.partial(scaled, k=10.0)),
    ],
)
def test_resume_refuses_another_model_by_value(tmp_path, monkeypatch, first, second):
    path = tmp_path / "b.h5"
    with monkeypatch.context() as m:
        interrupt_after_first_chunk(m)
        with pytest.raises(KeyboardInterrupt):
            run(path, ff.Experiment(first, ff.Gaussian(sigma=0.05), design=T))
    exp2 = ff.Experiment(second, ff.Gaussian(sigma=0.05), design=T)
    with pytest.raises(ValueError, match="models"):
        run(path, exp2)
    # The same model built again resumes.
    again = ff.Experiment(first, ff.Gaussian(sigma=0.05), design=T)
    assert run(path, again).metadata["chunks_resumed"] == 1


class Opaque:
    def __init__(self, k):
        self.k = k

    def __call__(self, p, t):
        return self.k * p["a"] * jnp.exp(-t / p["tau"])


def test_opaque_model_needs_explicit_resume(tmp_path, monkeypatch):
    path = tmp_path / "b.h5"
    exp = ff.Experiment(Opaque(1.0), ff.Gaussian(sigma=0.05), design=T)
    with monkeypatch.context() as m:
        interrupt_after_first_chunk(m)
        with pytest.raises(KeyboardInterrupt):
            run(path, exp)
    with pytest.raises(ValueError, match=r"by value.*resume=True"):
        run(path, exp)
    assert run(path, exp, resume=True).metadata["chunks_resumed"] == 1
    with pytest.raises(TypeError, match="resume"):
        run(path, exp, resume="yes")


# ----- 3. two runs on one file -----------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import os, sys, time, numpy as np, jax.numpy as jnp, fisherforecast as ff
    from fisherforecast._batch import store
    path, role = sys.argv[1], sys.argv[2]
    real = store.H5Store.write
    def slow(self, k, *a):
        real(self, k, *a)
        if role == "first" and k == 0:  # hold the file until the second run is over
            open(path + ".started", "w").close()
            for _ in range(600):
                if os.path.exists(path + ".go"):
                    break
                time.sleep(0.1)
    store.H5Store.write = slow
    exp = ff.Experiment(lambda p, t: p["a"] * jnp.exp(-t / p["tau"]),
                        ff.Gaussian(sigma=0.05), design=np.linspace(0, 4, 25))
    fid = {"a": np.linspace(1, 2, 40), "tau": np.linspace(1, 3, 40)}
    try:
        b = ff.fisher_batch(exp, fid, chunk_size=4, progress=False, out=path,
                            overwrite=(role == "second"))
        print("DONE", bool(b.ok.all()))
    except Exception as exc:
        print("ERROR", type(exc).__name__, exc)
    """
)


def test_second_run_on_a_file_in_use_is_refused(tmp_path):
    path = str(tmp_path / "b.h5")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen(
        [sys.executable, str(script), path, "first"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(600):  # the first run has written a chunk (bounded wait)
            if os.path.exists(path + ".started") or first.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        second = subprocess.run(
            [sys.executable, str(script), path, "second"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        Path(path + ".go").touch()
        out1, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert "DONE True" in out1, out1
    assert "in use by another process" in second.stdout, second.stdout + second.stderr
    assert "overwrite=True" not in second.stdout
    assert ff.FisherBatch.load(path).ok.all()


def test_file_in_use_refuses_writers_and_readers(tmp_path):
    # In one process: while a run holds the file, another run, save() and load() say so.
    from fisherforecast._batch import store

    path = tmp_path / "b.h5"
    run(path)
    lock = store.lock_run(path)
    try:
        with pytest.raises(OSError, match="in use by another process") as info:
            run(path, overwrite=True)
        assert "overwrite" not in str(info.value)
        with pytest.raises(OSError, match="in use by another process"):
            ff.FisherBatch(np.stack([np.eye(2)]), ["a", "tau"]).save(path, overwrite=True)
    finally:
        store.unlock(lock)
    assert run(path).metadata["chunks_resumed"] == 3  # free again, file intact


def test_load_of_a_file_open_for_writing_elsewhere(tmp_path):
    # HDF5's own file lock (another process has it open for writing) reads as "in use".
    path = tmp_path / "b.h5"
    run(path)
    holder = (
        "import h5py, os, sys, time\n"
        "h = h5py.File(sys.argv[1], 'r+')\n"
        "open(sys.argv[1] + '.held', 'w').close()\n"
        "for _ in range(600):\n"
        "    if os.path.exists(sys.argv[1] + '.go'): break\n"
        "    time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(path)])
    try:
        for _ in range(600):
            if os.path.exists(f"{path}.held") or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        with pytest.raises(OSError, match="in use by another process"):
            ff.FisherBatch.load(path)
    finally:
        Path(f"{path}.go").touch()
        proc.wait(timeout=60)
    assert ff.FisherBatch.load(path).ok.all()


def test_resume_false_never_resumes(tmp_path):
    path = tmp_path / "b.h5"
    run(path)
    with pytest.raises(FileExistsError, match="resume=False"):
        run(path, resume=False)
    assert run(path, resume=False, overwrite=True).metadata["chunks_computed"] == 3


# ----- 4. boolean fiducials ---------------------------------------------------------------------
def test_boolean_fiducials_refused_like_ff_fisher():
    with pytest.raises(ff.InputError, match="real number"):
        ff.fisher(EXP, {"a": True, "tau": 1.0})
    with pytest.raises(ff.InputError, match=r"fiducials\['a'\].*real"):
        ff.fisher_batch(EXP, {"a": np.array([True, False]), "tau": 1.0}, progress=False)
    with pytest.raises(ff.InputError, match=r"fiducials\['a'\]"):
        ff.fisher_batch(EXP, {"a": True, "tau": np.ones(2)}, progress=False)


def test_fingerprint_follows_jit_and_ode_models():
    import jax

    from fisherforecast._batch.fingerprint import model_fingerprint

    assert model_fingerprint(jax.jit(make(1.0))) == model_fingerprint(jax.jit(make(1.0)))
    assert model_fingerprint(jax.jit(make(1.0)))[0] != model_fingerprint(jax.jit(make(2.0)))[0]

    def rhs(t, y, p):
        return -p["k"] * y

    def ode(rtol):
        return ff.ode_model(rhs, lambda p: jnp.array([p["y0"]]), rtol=rtol)

    a, opaque = model_fingerprint(ode(1e-8))
    assert opaque == [] and a == model_fingerprint(ode(1e-8))[0]
    assert a != model_fingerprint(ode(1e-6))[0]
    _, opaque = model_fingerprint(Opaque(1.0))
    assert opaque == ["model (a Opaque object)"]


@pytest.mark.parametrize("entry", ["done", "names", "matrices", "reason", "condition", "fiducials"])
def test_damaged_file_names_what_it_lacks(tmp_path, entry):
    """A batch file missing an entry is refused with the entry named (was a raw KeyError)."""
    exp = ff.Experiment(lambda p, t: p["a"] * t + p["b"], ff.Gaussian(sigma=1.0), np.arange(5.0))
    path = tmp_path / "b.h5"
    ff.fisher_batch(
        exp, {"a": np.array([1.0, 2.0]), "b": np.array([0.0, 1.0])}, progress=False
    ).save(path)
    with h5py.File(path, "r+") as h:
        del h[entry]
    with pytest.raises(ff.InputError, match=f"damaged.*lacks.*{entry}"):
        ff.FisherBatch.load(path)


# ----- a deleted checksum does not turn a file into an "old" unchecked one -------------------
def test_deleted_checksum_dataset_flags_every_chunk(tmp_path):
    path = tmp_path / "b.h5"
    run(path)
    with h5py.File(path, "r+") as h:
        h["matrices"][20] = 2.0 * h["matrices"][20]  # plausible damage only a checksum sees
        del h["checksum"]
    loaded = ff.FisherBatch.load(path)
    assert (loaded.reason_codes == Reason.STORED_CORRUPT).all()
    assert "checksum dataset is missing" in loaded.messages[0]


def test_blanked_checksum_entry_flags_its_chunk(tmp_path):
    path = tmp_path / "b.h5"
    run(path)
    with h5py.File(path, "r+") as h:
        h["checksum"][1] = b""
    loaded = ff.FisherBatch.load(path)
    bad = loaded.reason_codes == Reason.STORED_CORRUPT
    assert bad[8:16].all() and not bad[:8].any() and not bad[16:].any()
    assert "no checksum" in loaded.messages[8]


def test_version_1_file_resumes_and_gains_checksums(tmp_path):
    path = tmp_path / "b.h5"
    ref = run(path)
    with h5py.File(path, "r+") as h:  # what a file from before checksums looks like
        del h["checksum"]
        h.attrs["format_version"] = 1
    assert ff.FisherBatch.load(path).ok.all()  # old files still load
    again = run(path)
    assert again.metadata["chunks_computed"] == 0
    np.testing.assert_array_equal(again.matrices, ref.matrices)
    with h5py.File(path, "r") as h:
        assert h.attrs["format_version"] == 2 and all(bytes(c) for c in h["checksum"][()])


def test_future_batch_format_is_refused(tmp_path):
    path = tmp_path / "b.h5"
    run(path)
    with h5py.File(path, "r+") as h:
        h.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        ff.FisherBatch.load(path)
