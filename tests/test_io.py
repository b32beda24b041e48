"""Saving and loading: bit-exact HDF5 round trips, atomic writes, refusal to overwrite, clear
errors for foreign or corrupted files, and the CosmicFish/getdist text convention."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import fisherforecast as ff
import fisherforecast._io as ffio

LABELS = {"Om": r"\Omega_{\rm m}", "s8": r"\sigma_8", "w0": r"w_0 \, (\mathrm{DE})",
          "tiny": "τ"}


def awkward_matrix():
    """Values whose every bit matters: thirds, a wide dynamic range, a denormal fiducial."""
    rng = np.random.default_rng(3)
    B = rng.normal(size=(4, 4))
    S = B @ B.T / 3.0 + np.eye(4) / 7.0
    D = np.diag([1e-60, 1.0 / 3.0, 1e60, np.pi])
    return D @ S @ D


@pytest.fixture
def F():
    return ff.FisherMatrix(
        awkward_matrix(), ["Om", "s8", "w0", "tiny"],
        fiducial={"Om": 0.1 + 0.2, "s8": -1e-300, "w0": 1.0 / 3.0, "tiny": 5e-324},
        labels=LABELS, name="survey+cmb",
        metadata={"n_bins": 10, "z": [0.1, 0.30000000000000004], "note": "ünïcode",
                  "nested": {"a": None, "b": True}})


def _same(a: ff.FisherMatrix, b: ff.FisherMatrix):
    assert a.matrix.tobytes() == b.matrix.tobytes()  # bit-exact
    assert a.matrix.dtype == b.matrix.dtype == np.float64
    assert a.names == b.names
    assert a.labels == b.labels
    if a.fiducial is None:
        assert b.fiducial is None
    else:
        assert list(a.fiducial) == list(b.fiducial)
        for k in a.fiducial:
            assert np.float64(a.fiducial[k]).tobytes() == np.float64(b.fiducial[k]).tobytes()


def _folder_listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ---------------------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------------------
def test_hdf5_round_trip_is_bit_exact(F, tmp_path):
    path = tmp_path / "F.h5"
    F.save(path)
    G = ff.load(path)
    _same(F, G)
    assert G.name == "survey+cmb"
    # The user's metadata comes back unchanged; the file may add provenance keys only.
    meta = G.metadata
    for k, v in F.metadata.items():
        assert meta[k] == v
    assert set(meta) - set(F.metadata) <= {"library_version", "created"}
    # A second round trip is still exact.
    G.save(tmp_path / "G.hdf5")
    _same(F, ff.load(tmp_path / "G.hdf5"))


def test_hdf5_round_trip_without_fiducial_or_name(tmp_path):
    F = ff.FisherMatrix([[2.0, 0.5], [0.5, 1.0]], ["a", "b"])
    F.save(tmp_path / "F.h5")
    G = ff.load(tmp_path / "F.h5")
    _same(F, G)
    assert G.name is None


def test_save_refuses_to_overwrite(F, tmp_path):
    path = tmp_path / "F.h5"
    F.save(path)
    before = path.read_bytes()
    other = F * 2
    with pytest.raises(FileExistsError, match="overwrite=True") as info:
        other.save(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    other.save(path, overwrite=True)
    np.testing.assert_array_equal(ff.load(path).matrix, 2 * F.matrix)
    assert _folder_listing(tmp_path) == ["F.h5"]


def _partial_writer(F, tmp, meta_json):
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = ffio.FORMAT_TAG
        h.create_dataset("matrix", data=np.eye(2))
    raise RuntimeError("disk full (simulated)")


def test_interrupted_write_leaves_nothing(F, tmp_path, monkeypatch):
    monkeypatch.setattr(ffio, "_write_hdf5", _partial_writer)
    with pytest.raises(RuntimeError, match="simulated"):
        F.save(tmp_path / "F.h5")
    assert _folder_listing(tmp_path) == []  # no target and no temporary file


def test_interrupted_overwrite_keeps_existing_file(F, tmp_path, monkeypatch):
    path = tmp_path / "F.h5"
    F.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(ffio, "_write_hdf5", _partial_writer)
    with pytest.raises(RuntimeError, match="simulated"):
        (F * 3).save(path, overwrite=True)
    assert path.read_bytes() == before
    assert _folder_listing(tmp_path) == ["F.h5"]
    monkeypatch.undo()
    _same(F, ff.load(path))


@pytest.mark.parametrize("suffix", [".h5", ".txt"])
def test_saved_file_permissions_follow_umask(F, tmp_path, suffix):
    """A saved matrix must be readable by whoever could read a file the user writes
    with open(): mode 0o666 & ~umask, not mkstemp's private 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / f"F{suffix}"
    F.save(path)
    with open(tmp_path / "reference", "w") as fh:
        fh.write("x")
    expected = (tmp_path / "reference").stat().st_mode & 0o777
    assert path.stat().st_mode & 0o777 == expected


def test_load_rejects_a_foreign_hdf5_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h:
        h.create_dataset("matrix", data=np.eye(2))
        h.create_dataset("names", data=np.array(["a", "b"], dtype=object),
                         dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="not a fisherforecast file") as info:
        ff.load(path)
    assert str(path) in str(info.value)


def _corrupt(path, dataset, values):
    with h5py.File(path, "r+") as h:
        dtype = h[dataset].dtype
        del h[dataset]
        h.create_dataset(dataset, data=values, dtype=dtype)


@pytest.mark.parametrize("dataset", ["names", "fiducial", "labels"])
def test_load_rejects_corrupted_datasets_naming_file_and_dataset(F, tmp_path, dataset):
    path = tmp_path / "F.h5"
    F.save(path)
    short = {"names": np.array(["Om", "s8"], dtype=object),
             "labels": np.array(["a", "b"], dtype=object),
             "fiducial": np.array([0.3, 0.8])}[dataset]
    _corrupt(path, dataset, short)
    with pytest.raises(ValueError) as info:
        ff.load(path)
    message = str(info.value)
    assert str(path) in message
    assert dataset in message or dataset.rstrip("s") in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_load_rejects_a_damaged_file_naming_it(F, tmp_path, damage):
    path = tmp_path / "F.h5"
    if damage == "garbage":
        path.write_bytes(b"not an hdf5 file at all\n" * 20)
    else:
        F.save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, OSError)) as info:
        ff.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_a_non_symmetric_stored_matrix(F, tmp_path):
    path = tmp_path / "F.h5"
    F.save(path)
    with h5py.File(path, "r+") as h:
        h["matrix"][0, 1] = 5.0
    with pytest.raises(ValueError, match="not symmetric"):
        ff.load(path)


def test_load_missing_file_and_bad_folder(F, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5"):
        ff.load(tmp_path / "nothere.h5")
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        F.save(tmp_path / "no_such_folder" / "F.h5")


def test_format_argument(F, tmp_path):
    path = tmp_path / "F.fisher"
    F.save(path, format="hdf5")
    assert h5py.is_hdf5(path)
    _same(F, ff.load(path, format="hdf5"))
    with pytest.raises(ValueError, match="'xml'"):
        F.save(tmp_path / "G.h5", format="xml")


def test_metadata_must_be_json(F, tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        F.save(tmp_path / "F.h5", metadata={"array": np.ones(2)})
    assert _folder_listing(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Text (CosmicFish / getdist convention)
# ---------------------------------------------------------------------------------------
def test_text_round_trip_exact_to_float_repr(F, tmp_path):
    path = tmp_path / "F.txt"
    F.save(path)
    G = ff.load(path)
    _same(F, G)
    assert G.metadata == F.metadata
    # Matrix file: '#' header naming the parameters, then one row per line.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split()[1:] == list(F.names)
    rows = [ln for ln in lines if not ln.startswith("#")]
    assert len(rows) == 4
    # .paramnames sidecar: name, LaTeX label, fiducial, one parameter per line.
    pn = (tmp_path / "F.txt.paramnames").read_text(encoding="utf-8").splitlines()
    assert [ln.split()[0] for ln in pn] == list(F.names)
    assert [float(ln.split()[-1]) for ln in pn] == [F.fiducial[n] for n in F.names]
    assert LABELS["w0"] in pn[2]


def test_text_round_trip_keeps_experiment_name(F, tmp_path):
    F.save(tmp_path / "F.txt")
    assert ff.load(tmp_path / "F.txt").name == "survey+cmb"


def test_text_refuses_overwrite_of_matrix_or_paramnames(F, tmp_path):
    F.save(tmp_path / "F.txt")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        F.save(tmp_path / "F.txt")
    (tmp_path / "G.txt.paramnames").write_text("x  x\n")
    with pytest.raises(FileExistsError, match=r"G\.txt\.paramnames"):
        F.save(tmp_path / "G.txt")
    assert not (tmp_path / "G.txt").exists()
    (F * 2).save(tmp_path / "F.txt", overwrite=True)
    np.testing.assert_array_equal(ff.load(tmp_path / "F.txt").matrix, 2 * F.matrix)


def test_load_hand_written_getdist_style_files(tmp_path):
    """A file pair written by another code: getdist '.paramnames' (name, label; '*' marks a
    derived parameter) beside a whitespace-separated matrix with a '#' comment line."""
    (tmp_path / "cosmo.dat").write_text(
        "# fisher matrix from some other code\n"
        "  1.5e+04   -2.0e+02  0.0\n"
        " -2.0e+02    3.0e+01  1.0\n"
        "  0.0        1.0      4.0\n", encoding="utf-8")
    (tmp_path / "cosmo.paramnames").write_text(
        "omegabh2    \\Omega_b h^2\n"
        "ns          n_{\\rm s}\n"
        "H0*         H_0\n", encoding="utf-8")
    G = ff.load(tmp_path / "cosmo.dat")
    assert G.names == ("omegabh2", "ns", "H0")
    assert G.labels == {"omegabh2": r"\Omega_b h^2", "ns": r"n_{\rm s}", "H0": "H_0"}
    assert G.fiducial is None
    np.testing.assert_array_equal(G.matrix, [[1.5e4, -2e2, 0.0], [-2e2, 30.0, 1.0],
                                             [0.0, 1.0, 4.0]])


def test_load_text_with_header_names_only(tmp_path):
    (tmp_path / "m.txt").write_text("# a b\n2.0 1.0\n1.0 2.0\n", encoding="utf-8")
    G = ff.load(tmp_path / "m.txt")
    assert G.names == ("a", "b")
    np.testing.assert_array_equal(G.matrix, [[2.0, 1.0], [1.0, 2.0]])


def test_load_text_rejects_missing_names_and_shape_mismatch(tmp_path):
    (tmp_path / "m.txt").write_text("2.0 1.0\n1.0 2.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no parameter names"):
        ff.load(tmp_path / "m.txt")
    (tmp_path / "n.txt").write_text("# a b c\n2.0 1.0\n1.0 2.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\(2, 2\)") as info:
        ff.load(tmp_path / "n.txt")
    assert "n.txt" in str(info.value) and "['a', 'b', 'c']" in str(info.value)


@pytest.mark.parametrize("body", ["1.0 0.0\n0.0\n", "1.0 x\n0.0 1.0\n"],
                         ids=["ragged", "not-a-number"])
def test_load_text_rejects_malformed_rows_naming_the_file(tmp_path, body):
    (tmp_path / "bad.txt").write_text("# a b\n" + body, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        ff.load(tmp_path / "bad.txt")
    assert "bad.txt" in str(info.value)
