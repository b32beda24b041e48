"""Saving and loading: bit-exact HDF5 round trips, atomic writes, refusal to overwrite, clear
errors for foreign or corrupted files, and the CosmicFish/getdist text convention."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import fisherforecast as ff
import fisherforecast._io as ffio

LABELS = {"Om": r"\Omega_{\rm m}", "s8": r"\sigma_8", "w0": r"w_0 \, (\mathrm{DE})", "tiny": "τ"}


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
        awkward_matrix(),
        ["Om", "s8", "w0", "tiny"],
        fiducial={"Om": 0.1 + 0.2, "s8": -1e-300, "w0": 1.0 / 3.0, "tiny": 5e-324},
        labels=LABELS,
        name="survey+cmb",
        metadata={
            "n_bins": 10,
            "z": [0.1, 0.30000000000000004],
            "note": "ünïcode",
            "nested": {"a": None, "b": True},
        },
    )


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
        h.create_dataset(
            "names", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype()
        )
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
    short = {
        "names": np.array(["Om", "s8"], dtype=object),
        "labels": np.array(["a", "b"], dtype=object),
        "fiducial": np.array([0.3, 0.8]),
    }[dataset]
    _corrupt(path, dataset, short)
    with pytest.raises(ValueError) as info:
        ff.load(path)
    message = str(info.value)
    assert str(path) in message
    assert dataset in message or dataset.rstrip("s") in message


@pytest.mark.parametrize("dataset", ["matrix", "names", "labels", "fiducial"])
def test_load_rejects_a_group_where_a_dataset_belongs(F, tmp_path, dataset):
    path = tmp_path / "F.h5"
    F.save(path)
    with h5py.File(path, "r+") as h:
        del h[dataset]
        h.create_group(dataset)
    with pytest.raises(ValueError, match="expected a dataset") as info:
        ff.load(path)
    assert str(path) in str(info.value) and repr(dataset) in str(info.value)


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
    with pytest.raises(ValueError, match="checksum"):  # the checksum notices first
        ff.load(path)
    with h5py.File(path, "r+") as h:  # a format-1 file (no checksum): the value checks
        h.attrs["format_version"] = 1
        del h.attrs["checksum"]
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
    # .paramnames sidecar: getdist's two columns, name TAB label, one parameter per line;
    # the fiducials are in the matrix file's header record.
    pn = (tmp_path / "F.txt.paramnames").read_text(encoding="utf-8").splitlines()
    assert [ln.split("\t", 1) for ln in pn] == [[n, F.labels[n]] for n in F.names]
    record = json.loads(lines[1].split(":", 1)[1])
    assert record["fiducial"] == [F.fiducial[n] for n in F.names]


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
        "  0.0        1.0      4.0\n",
        encoding="utf-8",
    )
    (tmp_path / "cosmo.paramnames").write_text(
        "omegabh2    \\Omega_b h^2\nns          n_{\\rm s}\nH0*         H_0\n", encoding="utf-8"
    )
    G = ff.load(tmp_path / "cosmo.dat")
    assert G.names == ("omegabh2", "ns", "H0")
    assert G.labels == {"omegabh2": r"\Omega_b h^2", "ns": r"n_{\rm s}", "H0": "H_0"}
    assert G.fiducial is None
    np.testing.assert_array_equal(
        G.matrix, [[1.5e4, -2e2, 0.0], [-2e2, 30.0, 1.0], [0.0, 1.0, 4.0]]
    )


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


@pytest.mark.parametrize(
    "body", ["1.0 0.0\n0.0\n", "1.0 x\n0.0 1.0\n"], ids=["ragged", "not-a-number"]
)
def test_load_text_rejects_malformed_rows_naming_the_file(tmp_path, body):
    (tmp_path / "bad.txt").write_text("# a b\n" + body, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        ff.load(tmp_path / "bad.txt")
    assert "bad.txt" in str(info.value)


# ---------------------------------------------------------------------------------------
# Text: unambiguous layout, refusal of what text cannot hold, atomic pairs, sniffing
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_fiducial", [False, True], ids=["no-fiducial", "fiducial"])
def test_text_labels_ending_in_numbers_round_trip_exactly(tmp_path, with_fiducial):
    """A label's last word must never be taken for a fiducial the user did not save."""
    labels = {"a": "A 2", "b": "B    7.5", "c": "", "d": "  padded  ", "e": r"\sigma_8 0.8"}
    fiducial = {"a": 0.25, "b": -3.0, "c": 1e-300, "d": 2.0, "e": 0.8} if with_fiducial else None
    F = ff.FisherMatrix(
        np.diag([1.0, 2.0, 3.0, 4.0, 5.0]), list(labels), fiducial=fiducial, labels=labels
    )
    F.save(tmp_path / "H.txt")
    G = ff.load(tmp_path / "H.txt")
    _same(F, G)
    assert G.fiducial == fiducial
    assert G.labels == labels


def test_text_header_records_the_paramnames_layout(F, tmp_path):
    F.save(tmp_path / "F.txt")
    ff.FisherMatrix(np.eye(2), ["a", "b"]).save(tmp_path / "G.txt")
    for stem, columns in (("F", 2), ("G", 2)):
        header = [
            ln
            for ln in (tmp_path / f"{stem}.txt").read_text().splitlines()
            if ln.startswith("# fisherforecast:")
        ]
        assert len(header) == 1
        record = json.loads(header[0].split(":", 1)[1])
        assert record["paramnames_columns"] == columns
        assert record["fiducial_column"] is False
        assert (record["fiducial"] is None) is (stem == "G")


def test_text_experiment_name_with_line_break_round_trips(tmp_path):
    F = ff.FisherMatrix(np.eye(2), ["a", "b"], name="DESI\n1.0 2.0")
    F.save(tmp_path / "F.txt")
    G = ff.load(tmp_path / "F.txt")
    assert G.name == "DESI\n1.0 2.0"
    _same(F, G)


@pytest.mark.parametrize("bad", ["a b", "a\tb", "a\nb", "a\u2028b", "#a", "a*"])
def test_text_save_rejects_names_text_cannot_hold(tmp_path, bad):
    F = ff.FisherMatrix(np.diag([1.0, 2.0]), [bad, "c"])
    with pytest.raises(ValueError, match="HDF5") as info:
        F.save(tmp_path / "K.txt")
    assert repr(bad) in str(info.value)
    assert _folder_listing(tmp_path) == []
    F.save(tmp_path / "K.h5")  # HDF5 holds any name
    assert ff.load(tmp_path / "K.h5").names == (bad, "c")


@pytest.mark.parametrize("bad", ["x\ny", "x\r", "x\u2028y", "x\x0cy"])
def test_text_save_rejects_labels_with_line_breaks(tmp_path, bad):
    F = ff.FisherMatrix(np.diag([1.0, 2.0]), ["a", "c"], labels={"a": bad})
    with pytest.raises(ValueError, match="line break") as info:
        F.save(tmp_path / "K.txt")
    assert repr(bad) in str(info.value) and "'a'" in str(info.value)
    assert _folder_listing(tmp_path) == []


def test_load_text_written_by_an_earlier_version(tmp_path):
    """Files from before the layout record: a fiducial column is recognised only when every
    line ends with a float's exact repr after the four-space separator."""
    matrix = "# a b\n# fisherforecast 0.0.9; experiment: old\n# metadata: {}\n1.0 0.0\n0.0 2.0\n"
    (tmp_path / "fid.txt").write_text(matrix, encoding="utf-8")
    (tmp_path / "fid.txt.paramnames").write_text(
        "a    A 2    0.5\nb    B    -1e-05\n", encoding="utf-8"
    )
    G = ff.load(tmp_path / "fid.txt")
    assert G.name == "old"
    assert G.fiducial == {"a": 0.5, "b": -1e-05}
    assert G.labels == {"a": "A 2", "b": "B"}
    (tmp_path / "nofid.txt").write_text(matrix, encoding="utf-8")
    (tmp_path / "nofid.txt.paramnames").write_text("a    A 2\nb    B 7\n", encoding="utf-8")
    G = ff.load(tmp_path / "nofid.txt")
    assert G.fiducial is None
    assert G.labels == {"a": "A 2", "b": "B 7"}


def test_load_foreign_paramnames_never_guesses_a_fiducial(tmp_path):
    (tmp_path / "c.dat").write_text("1.0 0.0\n0.0 2.0\n", encoding="utf-8")
    (tmp_path / "c.paramnames").write_text("w0*  w_0   -1.0\nwa   w_a   0.0\n", encoding="utf-8")
    G = ff.load(tmp_path / "c.dat")
    assert G.names == ("w0", "wa")
    assert G.fiducial is None
    assert G.labels == {"w0": "w_0   -1.0", "wa": "w_a   0.0"}


def _fail_paramnames(F, tmp):
    with open(tmp, "w") as fh:
        fh.write("half")
    raise RuntimeError("disk full (simulated)")


def test_text_failed_paramnames_write_leaves_nothing_and_retry_works(F, tmp_path, monkeypatch):
    monkeypatch.setattr(ffio, "_write_paramnames", _fail_paramnames)
    with pytest.raises(RuntimeError, match="simulated"):
        F.save(tmp_path / "F.txt")
    assert _folder_listing(tmp_path) == []
    monkeypatch.undo()
    F.save(tmp_path / "F.txt")
    _same(F, ff.load(tmp_path / "F.txt"))
    # overwrite=False refuses before writing anything when either file of the pair exists.
    (tmp_path / "G.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match=r"G\.txt'.*overwrite=True"):
        F.save(tmp_path / "G.txt")
    assert (tmp_path / "G.txt").read_text() == "mine\n"
    assert not (tmp_path / "G.txt.paramnames").exists()


def test_text_failed_overwrite_keeps_the_old_pair(F, tmp_path, monkeypatch):
    F.save(tmp_path / "F.txt")
    before = _pair_bytes(tmp_path / "F.txt")
    monkeypatch.setattr(ffio, "_write_paramnames", _fail_paramnames)
    with pytest.raises(RuntimeError, match="simulated"):
        (F * 2).save(tmp_path / "F.txt", overwrite=True)
    assert _pair_bytes(tmp_path / "F.txt") == before
    assert _folder_listing(tmp_path) == ["F.txt", "F.txt.paramnames"]


def _pair_bytes(path):
    return path.read_bytes(), Path(str(path) + ".paramnames").read_bytes()


@pytest.mark.parametrize("hard_links", [True, False], ids=["links", "no-links"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_text_failure_while_moving_into_place_rolls_back(
    F, tmp_path, monkeypatch, overwrite, hard_links
):
    """The matrix file is already in place when moving the '.paramnames' fails: it must be
    put back as it was (or removed when new), leaving no temporary or backup file."""
    if not hard_links:

        def no_link(*args, **kwargs):
            raise OSError(1, "Operation not permitted (simulated)")

        monkeypatch.setattr(os, "link", no_link)
    if overwrite:
        F.save(tmp_path / "F.txt")
        before = _pair_bytes(tmp_path / "F.txt")
    real_move = ffio._move_into_place

    def failing_move(tmp, target, ow):
        if str(target).endswith(".paramnames"):
            raise OSError(28, "No space left on device (simulated)")
        real_move(tmp, target, ow)

    monkeypatch.setattr(ffio, "_move_into_place", failing_move)
    with pytest.raises(OSError, match="simulated"):
        (F * 2).save(tmp_path / "F.txt", overwrite=overwrite)
    if overwrite:
        assert _pair_bytes(tmp_path / "F.txt") == before
        assert _folder_listing(tmp_path) == ["F.txt", "F.txt.paramnames"]
    else:
        assert _folder_listing(tmp_path) == []
    monkeypatch.setattr(ffio, "_move_into_place", real_move)
    (F * 2).save(tmp_path / "F.txt", overwrite=overwrite)
    np.testing.assert_array_equal(ff.load(tmp_path / "F.txt").matrix, 2 * F.matrix)
    assert _folder_listing(tmp_path) == ["F.txt", "F.txt.paramnames"]


@pytest.mark.parametrize("name", ["x.paramnames", "F.txt.paramnames", "X.PARAMNAMES"])
def test_text_save_to_a_paramnames_path_is_refused(F, tmp_path, name):
    with pytest.raises(ValueError, match="`path`") as info:
        F.save(tmp_path / name)
    assert repr(str(tmp_path / name)) in str(info.value)
    assert _folder_listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".fisher", ".txt", ""])
def test_load_sniffs_hdf5_whatever_the_suffix(F, tmp_path, suffix):
    path = tmp_path / f"F{suffix}"
    F.save(path, format="hdf5")
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    _same(F, ff.load(path))


def test_load_binary_non_hdf5_file_names_it(tmp_path):
    path = tmp_path / "image.dat"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    with pytest.raises(ValueError, match="neither an HDF5 file nor UTF-8 text") as info:
        ff.load(path)
    assert repr(str(path)) in str(info.value)
    # An HDF5 file forced through the text reader gets the same clear error.
    ff.FisherMatrix(np.eye(2), ["a", "b"]).save(tmp_path / "F.h5")
    with pytest.raises(ValueError, match=r"F\.h5"):
        ff.load(tmp_path / "F.h5", format="text")
