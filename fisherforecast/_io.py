"""Saving and loading Fisher matrices: HDF5 (h5py) and CosmicFish/getdist-style text.

Writes are atomic: the file is written under a temporary name in the target folder, flushed
and synced, then moved into place. An interrupted write never leaves a broken file at the
target, and an existing file is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
from pathlib import Path

import numpy as np

from ._matrix import FisherMatrix

FORMAT_TAG = "fisherforecast.FisherMatrix"
FORMAT_VERSION = 1
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _version():
    from . import __version__

    return __version__


def _format_of(path, format):
    if format is not None:
        if format not in ("hdf5", "text"):
            raise ValueError(f"`format` must be 'hdf5' or 'text'; received {format!r}.")
        return format
    return "hdf5" if Path(path).suffix.lower() in _HDF5_SUFFIXES else "text"


@contextlib.contextmanager
def atomic_path(path, overwrite: bool):
    """Yield a temporary path beside `path`; move it to `path` only if the block succeeds."""
    if not isinstance(overwrite, bool | np.bool_):
        raise TypeError(f"`overwrite` must be True or False; received {overwrite!r}.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists; pass overwrite=True to replace it."
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {str(folder)!r} for {str(path)!r} does not exist.")
    # Created by hand rather than with mkstemp so that the user's umask applies (mkstemp
    # files are 0600, which would hide forecasts from collaborators on a shared cluster).
    tmp = str(folder / f".{path.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the target appeared meanwhile: never clobber
            except FileExistsError:
                raise FileExistsError(
                    f"{str(path)!r} already exists; pass overwrite=True to replace it."
                ) from None
            except OSError:
                os.replace(tmp, path)  # filesystem without hard links
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save(F: FisherMatrix, path, *, overwrite=False, metadata=None, format=None):
    """Save `F` to `path`; see :meth:`FisherMatrix.save`."""
    if not isinstance(F, FisherMatrix):
        raise TypeError(f"save expects a FisherMatrix; received {type(F).__name__}.")
    meta = {**F.metadata, **(metadata or {})}
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"`metadata` must be JSON-serialisable: {exc}") from None
    if _format_of(path, format) == "hdf5":
        with atomic_path(path, overwrite) as tmp:
            _write_hdf5(F, tmp, meta_json)
    else:
        names_path = Path(str(path) + ".paramnames") if not str(path).endswith(
            ".paramnames") else None
        if names_path is not None and names_path.exists() and not overwrite:
            raise FileExistsError(
                f"{str(names_path)!r} already exists; pass overwrite=True to replace it.")
        with atomic_path(path, overwrite) as tmp:
            _write_text(F, tmp, meta_json)
        with atomic_path(names_path, True) as tmp:
            _write_paramnames(F, tmp)


def _write_hdf5(F, tmp, meta_json):
    import h5py

    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = FORMAT_TAG
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["library_version"] = _version()
        h.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat()
        h.attrs["experiment"] = F.name or ""
        h.attrs["metadata"] = meta_json
        h.create_dataset("matrix", data=F.matrix, dtype="f8")
        str_dt = h5py.string_dtype()
        h.create_dataset("names", data=np.array(F.names, dtype=object), dtype=str_dt)
        h.create_dataset("labels", data=np.array([F.labels[n] for n in F.names],
                                                 dtype=object), dtype=str_dt)
        if F.fiducial is not None:
            h.create_dataset("fiducial", data=np.array([F.fiducial[n] for n in F.names],
                                                       dtype=np.float64))


def load(path, format=None) -> FisherMatrix:
    """Load a matrix written by :meth:`FisherMatrix.save` (or a CosmicFish/getdist text file).

    The contents are validated (format tag, square finite symmetric matrix, one name per
    row). HDF5 round trips are bit-exact.

    ```python
    >>> import os, tempfile, fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 1.0], [1.0, 3.0]], ["a", "b"])
    >>> path = os.path.join(tempfile.mkdtemp(), "F.h5")
    >>> F.save(path)
    >>> bool((ff.load(path).matrix == F.matrix).all())
    True
    ```
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Fisher matrix file at {str(path)!r}.")
    if _format_of(path, format) == "hdf5":
        return _read_hdf5(path)
    return _read_text(path)


def _read_hdf5(path):
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{str(path)!r} is not a readable HDF5 file ({exc}): it may be "
                      "truncated, or not a file written by FisherMatrix.save.") from None
    with h5 as h:
        tag = h.attrs.get("format")
        if tag != FORMAT_TAG:
            raise ValueError(
                f"{str(path)!r} is not a fisherforecast file (format attribute {tag!r})."
            )
        for key in ("matrix", "names"):
            if key not in h:
                raise ValueError(f"{str(path)!r} is missing the {key!r} dataset.")
        matrix = h["matrix"][()]
        if matrix.dtype != np.float64:
            raise ValueError(f"{str(path)!r}: matrix has dtype {matrix.dtype}, expected f8.")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in h["names"][()]]
        labels = ([n.decode() if isinstance(n, bytes) else str(n) for n in h["labels"][()]]
                  if "labels" in h else None)
        fid = h["fiducial"][()] if "fiducial" in h else None
        name = h.attrs.get("experiment") or None
        meta = json.loads(h.attrs.get("metadata", "{}"))
        meta.setdefault("library_version", h.attrs.get("library_version"))
        meta.setdefault("created", h.attrs.get("created"))
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"{str(path)!r}: matrix shape {matrix.shape} does not match "
                         f"{len(names)} names.")
    for key, values in (("labels", labels), ("fiducial", fid)):
        if values is not None and len(values) != len(names):
            raise ValueError(f"{str(path)!r}: the {key!r} dataset has {len(values)} entries "
                             f"for {len(names)} parameter names; the file is corrupted.")
    fiducial = dict(zip(names, fid.tolist(), strict=True)) if fid is not None else None
    return FisherMatrix(matrix, names, fiducial=fiducial, labels=labels, name=name,
                        metadata=meta)


def _write_text(F, tmp, meta_json):
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"# {' '.join(F.names)}\n")
        fh.write(f"# fisherforecast {_version()}; experiment: {F.name or ''}\n")
        fh.write(f"# metadata: {meta_json}\n")
        for row in F.matrix:
            fh.write(" ".join(repr(float(x)) for x in row) + "\n")


def _write_paramnames(F, tmp):
    fid = F.fiducial
    with open(tmp, "w", encoding="utf-8") as fh:
        for n in F.names:
            line = f"{n}    {F.labels[n]}"
            if fid is not None:
                line += f"    {fid[n]!r}"
            fh.write(line + "\n")


def _read_text(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    rows = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    try:
        matrix = np.array([[float(x) for x in ln.split()] for ln in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: cannot read the matrix ({exc}); expected one "
                         "whitespace-separated row of numbers per parameter.") from None
    names = labels = fiducial = name = None
    meta = {}
    for h in header:
        if h.startswith("metadata:"):
            meta = json.loads(h.split(":", 1)[1])
        elif h.startswith("fisherforecast") and "; experiment:" in h:
            name = h.split("; experiment:", 1)[1].strip() or None
    pn = Path(str(path) + ".paramnames")
    if not pn.exists():
        pn = Path(path).with_suffix(".paramnames")
    if pn.exists():
        entries = [ln.split(None, 2) for ln in pn.read_text(encoding="utf-8").splitlines()
                   if ln.strip() and not ln.startswith("#")]
        names = [e[0].rstrip("*") for e in entries]
        labels, fid_values = [], []
        for e in entries:
            rest = e[1:] if len(e) > 1 else []
            parts = " ".join(rest).rsplit(None, 1)
            value = None
            if len(parts) == 2:
                try:
                    value = float(parts[1])
                    rest_label = parts[0]
                except ValueError:
                    rest_label = " ".join(rest)
            else:
                rest_label = " ".join(rest)
            labels.append(rest_label or e[0])
            fid_values.append(value)
        if all(v is not None for v in fid_values):
            fiducial = dict(zip(names, fid_values, strict=True))
    elif header:
        names = header[0].split()
    if names is None:
        raise ValueError(f"{str(path)!r} has no parameter names: expected a '# name1 name2 ...' "
                         "header line or a .paramnames file beside it.")
    if matrix.ndim != 2 or matrix.shape != (len(names), len(names)):
        raise ValueError(f"{str(path)!r}: matrix of shape {matrix.shape} does not match "
                         f"{len(names)} parameter names {names}.")
    return FisherMatrix(matrix, names, fiducial=fiducial, labels=labels, name=name,
                        metadata=meta)
