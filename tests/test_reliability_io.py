"""Reliability of the files: self-checking text pairs, a strict HDF5 loader, stale temporary
files, symbolic links and the fiducials of a sum (docs/reliability.md, '## Files')."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

import fisherforecast as ff


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
        deadline = time.monotonic() + 60  # bound: never run away
        while loads < 5000 and time.monotonic() < deadline:
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
