"""Reliability of the files: self-checking text pairs, a strict HDF5 loader, stale temporary
files, symbolic links and the fiducials of a sum (docs/reliability.md, '## Files')."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import fisherforecast as ff
import fisherforecast._io as ffio
from fisherforecast._tempfiles import HOST_TAG


def _pair(i):
    names = ["a", "b"] if i == 0 else ["b", "a"]
    M = np.array([[2.0, 0.5], [0.5, 3.0]]) * (1 + i)
    return ff.FisherMatrix(M, names, fiducial={"a": 1.0 + i, "b": -2.0 - i})


# ----- item 1: text pairs -------------------------------------------------------------------
def test_text_pair_is_never_read_torn(tmp_path):
    """One writer alternating two matrices, one reader: 0 torn loads in ≥ 5000 loads."""
    path = tmp_path / "F.txt"
    mats = [_pair(0), _pair(1)]
    mats[0].save(path)
    expected = [(m.names, m.matrix.tobytes(), m.fiducial) for m in mats]
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i ^= 1
            mats[i].save(path, overwrite=True)

    t = threading.Thread(target=writer)
    t.start()
    loads = torn = refused = 0
    try:
        while loads < 5000:  # bounded by the count (a few seconds), not by a clock
            try:
                G = ff.load(path)
            except ValueError as exc:
                assert "inconsistent" in str(exc)
                refused += 1
            else:
                if (G.names, G.matrix.tobytes(), G.fiducial) not in expected:
                    torn += 1
            loads += 1
    finally:
        stop.set()
        t.join()
    assert loads >= 5000
    assert torn == 0
    assert refused < loads // 2


def test_text_inconsistent_read_is_retried_once(tmp_path, monkeypatch):
    _pair(0).save(tmp_path / "F.txt")
    real, calls = ffio._read_own_pair, []

    def torn_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise ffio.InconsistentPairError("torn")
        return real(*args)

    monkeypatch.setattr(ffio, "_read_own_pair", torn_once)
    assert ff.load(tmp_path / "F.txt").fiducial == _pair(0).fiducial
    assert len(calls) == 2


def test_text_stale_paramnames_is_refused(tmp_path):
    A, B = _pair(0), _pair(1).fix("a")
    A.save(tmp_path / "A.txt")
    B.save(tmp_path / "B.txt")
    os.replace(tmp_path / "B.txt.paramnames", tmp_path / "A.txt.paramnames")
    with pytest.raises(ValueError, match=r"A\.txt.*inconsistent"):
        ff.load(tmp_path / "A.txt")


def test_text_swapped_names_in_paramnames_is_refused(tmp_path):
    _pair(0).save(tmp_path / "F.txt")
    pn = tmp_path / "F.txt.paramnames"
    lines = pn.read_text().splitlines()
    pn.write_text("\n".join(reversed(lines)) + "\n")
    with pytest.raises(ValueError, match="inconsistent"):
        ff.load(tmp_path / "F.txt")


def test_text_paramnames_is_getdist_two_columns(tmp_path):
    F = ff.FisherMatrix(np.eye(2), ["A", "B"], fiducial={"A": 1.0, "B": 2.5}, labels=["a 1", "b"])
    F.save(tmp_path / "F.txt")
    lines = (tmp_path / "F.txt.paramnames").read_text().splitlines()
    assert lines == ["A\ta 1", "B\tb"]
    G = ff.load(tmp_path / "F.txt")
    assert G.fiducial == F.fiducial and G.labels == F.labels


def test_text_old_three_column_files_still_load(tmp_path):
    rec = {"format": "fisherforecast.FisherMatrix", "text_format_version": 2, "parameters": 2}
    rec |= {"experiment": None, "paramnames_columns": 3, "fiducial_column": True}
    (tmp_path / "F.txt").write_text(
        f"# A B\n# fisherforecast: {json.dumps(rec)}\n# metadata: {{}}\n1.0 0.0\n0.0 2.0\n"
    )
    (tmp_path / "F.txt.paramnames").write_text("A    a    1.0\nB    b    -0.5\n")
    G = ff.load(tmp_path / "F.txt")
    assert G.fiducial == {"A": 1.0, "B": -0.5} and G.labels == {"A": "a", "B": "b"}


# ----- item 2: strict HDF5 loader -----------------------------------------------------------
@pytest.fixture
def h5file(tmp_path):
    path = tmp_path / "F.h5"
    _pair(0).save(path)
    return path


def test_hdf5_future_format_version_is_refused(h5file):
    with h5py.File(h5file, "r+") as h:
        h.attrs["format_version"] = 99
    with pytest.raises(ValueError, match=r"format_version.*99"):
        ff.load(h5file)


def test_hdf5_integer_names_are_refused(h5file):
    with h5py.File(h5file, "r+") as h:
        del h["names"]
        h["names"] = np.array([1, 2])
    with pytest.raises(ValueError, match="names"):
        ff.load(h5file)


def test_hdf5_flipped_bit_is_detected(h5file):
    with h5py.File(h5file, "r+") as h:
        m = h["matrix"][()]
        bits = m.view(np.uint64)
        bits[0, 0] ^= np.uint64(1)
        h["matrix"][...] = bits.view(np.float64)
    with pytest.raises(ValueError, match="checksum"):
        ff.load(h5file)


def test_hdf5_edited_metadata_gives_a_clear_error(h5file):
    with h5py.File(h5file, "r+") as h:
        h.attrs["metadata"] = "{not json"
    with pytest.raises(ValueError, match=r"F\.h5.*'metadata'"):
        ff.load(h5file)


def test_hdf5_format_1_file_without_checksum_still_loads(h5file):
    with h5py.File(h5file, "r+") as h:
        h.attrs["format_version"] = 1
        del h.attrs["checksum"]
    assert ff.load(h5file).matrix.tobytes() == _pair(0).matrix.tobytes()


def test_hdf5_removed_checksum_is_refused(h5file):
    with h5py.File(h5file, "r+") as h:
        del h.attrs["checksum"]
    with pytest.raises(ValueError, match="checksum"):
        ff.load(h5file)


def test_nul_in_a_name_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"'a\\x00b'"):
        ff.FisherMatrix(np.eye(1), ["a\x00b"])
    with pytest.raises(ValueError, match="labels"):
        ff.FisherMatrix(np.eye(1), ["a"], labels={"a": "x\x00"})


# ----- item 3: smaller items ------------------------------------------------------------------
def test_stale_temp_files_of_the_target_are_cleaned(tmp_path):
    F = _pair(0)
    me, host = os.getpid(), HOST_TAG
    dead = tmp_path / f".F.h5.999999999-{host}.0123456789abcdef.tmp"  # pid that cannot exist
    old = tmp_path / f".F.h5.{me}-{host}.fedcba9876543210.tmp"  # untouched for an hour
    live = tmp_path / f".F.h5.{me}-{host}.00112233445566ff.tmp"  # ours, fresh: in use
    elsewhere = tmp_path / ".F.h5.999999999-00000000.00112233445566ff.tmp"  # other host
    other = tmp_path / f".G.h5.999999999-{host}.0123456789abcdef.tmp"  # another target
    foreign = tmp_path / ".F.h5.mine.tmp"  # not ours
    backup = tmp_path / f".F.h5.999999999-{host}.0123456789abcdef.bak"  # never removed
    for p in (dead, old, live, elsewhere, other, foreign, backup):
        p.write_bytes(b"partial")
    t = time.time() - 3600
    os.utime(old, (t, t))
    F.save(tmp_path / "F.h5")
    assert not dead.exists() and not old.exists()
    assert all(p.exists() for p in (live, elsewhere, other, foreign, backup))
    dead.write_bytes(b"partial")
    F.save(tmp_path / "F.txt")  # text pairs clean their own targets' leftovers only
    assert dead.exists()
    dead.rename(tmp_path / f".F.txt.paramnames.999999999-{host}.0123456789abcdef.tmp")
    F.save(tmp_path / "F.txt", overwrite=True)
    assert not (tmp_path / f".F.txt.paramnames.999999999-{host}.0123456789abcdef.tmp").exists()


def test_overwrite_of_a_symlinked_paramnames_is_refused(tmp_path):
    F = _pair(0)
    F.save(tmp_path / "F.txt")
    (tmp_path / "G.txt.paramnames").symlink_to(tmp_path / "F.txt.paramnames")
    with pytest.raises(ValueError, match="symbolic link"):
        F.save(tmp_path / "G.txt", overwrite=True)
    assert not (tmp_path / "G.txt").exists()


def test_overwrite_through_a_symlink_is_refused(tmp_path):
    F = _pair(0)
    F.save(tmp_path / "real.h5")
    (tmp_path / "link.h5").symlink_to(tmp_path / "real.h5")
    with pytest.raises(ValueError, match="symbolic link"):
        _pair(1).save(tmp_path / "link.h5", overwrite=True)
    assert (tmp_path / "link.h5").is_symlink()
    assert ff.load(tmp_path / "real.h5").matrix.tobytes() == F.matrix.tobytes()


def test_adding_keeps_the_known_fiducials():
    """A prior on a parameter without fiducial: the sum keeps the fiducials it knows (in
    metadata) and a later sum that supplies the rest restores the full fiducial."""
    A = ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": 1.0, "b": 2.0})
    prior = ff.FisherMatrix(np.eye(2), ["b", "c"])
    S = A + prior
    assert S.fiducial is None
    assert S.metadata["known_fiducial"] == {"a": 1.0, "b": 2.0}
    D = ff.FisherMatrix(np.eye(1), ["c"], fiducial={"c": 3.0})
    assert (S + D).fiducial == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert "known_fiducial" not in (S + D).metadata
    with pytest.raises(ValueError, match="different fiducials"):
        S + ff.FisherMatrix(np.eye(1), ["b"], fiducial={"b": 5.0})
    C = ff.FisherMatrix(np.eye(1), ["a"])
    assert (A + C).fiducial == {"a": 1.0, "b": 2.0}


def test_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ffio, "_write_hdf5", boom)
    with pytest.raises(OSError):
        _pair(0).save(tmp_path / "F.h5")
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == []
