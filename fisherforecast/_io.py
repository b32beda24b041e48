"""Saving and loading Fisher matrices: HDF5 (h5py) and CosmicFish/getdist-style text.

Writes are atomic: the file is written under a temporary name in the target folder, flushed
and synced, then moved into place. An interrupted write never leaves a broken file at the
target, and an existing file is replaced only with ``overwrite=True``. The text format's
two files (matrix and ``.paramnames``) are moved into place together: if either move fails,
the previous pair (or nothing) is left.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path

import numpy as np

from ._checks import check_overwrite
from ._errors import InputError
from ._matrix import FisherMatrix
from ._tempfiles import clean_stale_temporaries, writer_tag

FORMAT_TAG = "fisherforecast.FisherMatrix"
# Version 2 adds the 'checksum' attribute: SHA-256 of the contents, verified on load.
FORMAT_VERSION = 2
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Text format: the matrix file carries a '# fisherforecast: {json}' header line recording how
# the '.paramnames' sidecar is laid out, so that reading it back is unambiguous.
# Version 3: the '.paramnames' file is getdist's two columns (name TAB label); the fiducials
# and the SHA-256 of the '.paramnames' bytes live in the matrix file's record, so a pair read
# while a writer replaces it (or a stale or edited '.paramnames') is detected, not mixed.
TEXT_FORMAT_VERSION = 3
_TEXT_RECORD = "fisherforecast:"
_SEP = "    "  # between the columns of a '.paramnames' line written by version 2
_TAB = "\t"  # between the columns of a '.paramnames' line written by version 3


class InconsistentPairError(InputError):
    """The matrix file and its '.paramnames' do not belong to the same save."""


def _version():
    from . import __version__

    return __version__


def _format_of(path, format):
    if format is not None:
        if format not in ("hdf5", "text"):
            raise ValueError(f"`format` must be 'hdf5' or 'text'; received {format!r}.")
        return format
    return "hdf5" if Path(path).suffix.lower() in _HDF5_SUFFIXES else "text"


def _exists_error(path):
    return FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it.")


def _folder_of(path):
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {str(folder)!r} for {str(path)!r} does not exist.")
    return folder


def _refuse_symlink(path, overwrite):
    if overwrite and os.path.islink(path):
        raise InputError(
            f"{str(path)!r} is a symbolic link (to {os.readlink(path)!r}); overwrite=True "
            "would replace the link, not the file it points to. Save to the target path "
            "itself, or remove the link first."
        )


def _new_tmp(folder, name, kind="tmp"):
    """Create an empty file beside the target, named so that it is hidden and unique."""
    # Created by hand rather than with mkstemp so that the user's umask applies (mkstemp
    # files are 0600, which would hide forecasts from collaborators on a shared cluster).
    tmp = str(Path(folder) / f".{name}.{writer_tag()}.{secrets.token_hex(8)}.{kind}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def _fsync(tmp):
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())


def _move_into_place(tmp, path, overwrite):
    """Move the finished file `tmp` to `path`; without `overwrite`, never replace a file."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if the target appeared meanwhile: never clobber
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        if os.path.lexists(path):
            raise _exists_error(path) from None
        os.replace(tmp, path)  # filesystem without hard links
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path, overwrite: bool):
    """Yield a temporary path beside `path`; move it to `path` only if the block succeeds."""
    check_overwrite(overwrite)
    path = Path(path)
    _refuse_symlink(path, overwrite)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    folder = _folder_of(path)
    clean_stale_temporaries(folder, path.name)
    tmp = _new_tmp(folder, path.name)
    try:
        yield tmp
        _fsync(tmp)
        _move_into_place(tmp, path, overwrite)
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
        _save_text(F, path, overwrite, meta_json)


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
        h.create_dataset(
            "labels", data=np.array([F.labels[n] for n in F.names], dtype=object), dtype=str_dt
        )
        fid = None
        if F.fiducial is not None:
            fid = np.array([F.fiducial[n] for n in F.names], dtype=np.float64)
            h.create_dataset("fiducial", data=fid)
        labels = [F.labels[n] for n in F.names]
        h.attrs["checksum"] = _checksum(F.matrix, F.names, labels, fid, F.name or "", meta_json)


def _checksum(matrix, names, labels, fid, experiment, meta_json):
    """SHA-256 of everything a load returns, in a canonical byte form."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(matrix, dtype="<f8").tobytes())
    h.update(b"\0" if fid is None else np.ascontiguousarray(fid, dtype="<f8").tobytes())
    h.update(json.dumps([list(names), list(labels), experiment, meta_json]).encode("utf-8"))
    return h.hexdigest()


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
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not a Fisher matrix file.")
    if format is None and _has_hdf5_signature(path):
        return _read_hdf5(path)  # whatever the suffix
    if _format_of(path, format) == "hdf5":
        return _read_hdf5(path)
    return _read_text(path)


def _has_hdf5_signature(path):
    with open(path, "rb") as fh:
        return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def _read_hdf5(path):
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(
            f"{str(path)!r} is not a readable HDF5 file ({exc}): it may be "
            "truncated, or not a file written by FisherMatrix.save."
        ) from None
    with h5 as h:
        tag = h.attrs.get("format")
        if tag != FORMAT_TAG:
            raise ValueError(
                f"{str(path)!r} is not a fisherforecast file (format attribute {tag!r})."
            )
        version = _check_format_version(h.attrs.get("format_version"), path)
        for key in ("matrix", "names"):
            if key not in h:
                raise ValueError(f"{str(path)!r} is missing the {key!r} dataset.")
        matrix = _read_dataset(h, "matrix", path)
        if matrix.dtype != np.float64:
            raise ValueError(f"{str(path)!r}: matrix has dtype {matrix.dtype}, expected f8.")
        names = [_as_str(n) for n in _read_strings(h, "names", path)]
        labels = [_as_str(n) for n in _read_strings(h, "labels", path)] if "labels" in h else None
        fid = _read_dataset(h, "fiducial", path) if "fiducial" in h else None
        name = h.attrs.get("experiment") or None
        meta_json = h.attrs.get("metadata", "{}")
        meta = _parse_metadata(meta_json, path)
        if version >= 2:
            _verify_checksum(h, path, (matrix, names, labels or names, fid, name or "", meta_json))
        meta.setdefault("library_version", h.attrs.get("library_version"))
        meta.setdefault("created", h.attrs.get("created"))
    if matrix.shape != (len(names), len(names)):
        raise ValueError(
            f"{str(path)!r}: matrix shape {matrix.shape} does not match {len(names)} names."
        )
    for key, values in (("labels", labels), ("fiducial", fid)):
        if values is not None and len(values) != len(names):
            raise ValueError(
                f"{str(path)!r}: the {key!r} dataset has {len(values)} entries "
                f"for {len(names)} parameter names; the file is corrupted."
            )
    fiducial = dict(zip(names, fid.tolist(), strict=True)) if fid is not None else None
    return FisherMatrix(matrix, names, fiducial=fiducial, labels=labels, name=name, metadata=meta)


def _check_format_version(version, path):
    ok = isinstance(version, int | np.integer) and not isinstance(version, bool | np.bool_)
    if not ok or not 1 <= int(version) <= FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {version!r}; this fisherforecast "
            f"({_version()}) reads format versions 1 to {FORMAT_VERSION}. A larger version "
            "was written by a newer fisherforecast: upgrade to read it."
        )
    return int(version)


def _parse_metadata(meta_json, path):
    try:
        meta = json.loads(_as_str(meta_json))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(
            f"{str(path)!r}: the 'metadata' attribute is not valid JSON ({exc}); "
            "it was edited or corrupted."
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{str(path)!r}: the 'metadata' attribute holds {type(meta).__name__} "
            "JSON, expected an object; it was edited or corrupted."
        )
    return meta


def _verify_checksum(h, path, contents):
    stored = h.attrs.get("checksum")
    matrix, names, labels, fid, experiment, meta_json = contents
    if len(labels) != len(names) or (fid is not None and fid.shape != (len(names),)):
        return  # the shape checks after this name the problem
    actual = _checksum(matrix, names, labels, fid, experiment, _as_str(meta_json))
    if stored is None or _as_str(stored) != actual:
        raise ValueError(
            f"{str(path)!r}: the checksum of the contents ({actual[:16]}…) does not match "
            f"the 'checksum' attribute ({stored!r}); the file is corrupted or was edited."
        )


def _read_strings(h, key, path):
    """The strings stored in dataset `key`; any other dtype is an error."""
    import h5py

    values = _read_dataset(h, key, path)
    if h5py.check_string_dtype(h[key].dtype) is None or values.ndim != 1:
        raise ValueError(
            f"{str(path)!r}: the {key!r} dataset holds {values.dtype} values of shape "
            f"{values.shape}, expected a list of strings; the file is corrupted."
        )
    return values


def _read_dataset(h, key, path):
    """The array stored in dataset `key` of the open HDF5 file `h` (a group there is an error)."""
    import h5py

    obj = h[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(
            f"{str(path)!r}: {key!r} is a {type(obj).__name__}, expected a dataset; "
            "the file is not one written by FisherMatrix.save."
        )
    return np.asarray(obj[()])


def _as_str(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_text_names(F):
    """Refuse what the text format cannot store unambiguously, before writing anything."""
    hint = "save as HDF5 (a '.h5' path) or give the parameter another name"
    for n in F.names:
        if any(c.isspace() for c in n) or n.startswith("#") or n.endswith("*"):
            raise ValueError(
                f"parameter name {n!r} cannot be saved as text: names in the text format "
                "must not contain whitespace or line breaks, start with '#' or end with '*' "
                f"(getdist's mark of a derived parameter); {hint}."
            )
    for n in F.names:
        label = F.labels[n]
        if label and label.splitlines() != [label]:
            raise ValueError(
                f"the label of parameter {n!r}, {label!r}, contains a line break and cannot "
                "be saved in a '.paramnames' file; save as HDF5 (a '.h5' path) or change "
                "the label."
            )


def _save_text(F, path, overwrite, meta_json):
    """Write the matrix file and its '.paramnames' sidecar as one atomic pair.

    Both are written to temporary files first and then moved into place; if anything fails,
    files already moved are put back as they were (or removed if they are new).
    """
    check_overwrite(overwrite)
    path = Path(path)
    if path.name.lower().endswith(".paramnames"):
        raise ValueError(
            f"`path` {str(path)!r} names a '.paramnames' file; pass the path of the matrix "
            "file instead (e.g. 'F.txt'): its parameter names are written beside it, to "
            "'F.txt.paramnames'."
        )
    _check_text_names(F)
    names_path = Path(str(path) + ".paramnames")
    targets = (path, names_path)
    for target in targets:
        _refuse_symlink(target, overwrite)
        if not overwrite and os.path.lexists(target):
            raise _exists_error(target)
    folder = _folder_of(path)
    for target in targets:
        clean_stale_temporaries(folder, target.name)
    tmps = []
    try:
        for target in targets:
            tmps.append(_new_tmp(folder, target.name))
        digest = _write_paramnames(F, tmps[1])
        _write_text(F, tmps[0], meta_json, digest)
        for tmp in tmps:
            _fsync(tmp)
        _commit_pair(list(zip(tmps, targets, strict=True)), folder, overwrite)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _commit_pair(moves, folder, overwrite):
    """Move each (tmp, target); on any failure restore every target already touched."""
    done = []  # (target, backup of the file it replaced, or None if it was new)
    backups = []
    try:
        for tmp, target in moves:
            backup = None
            if overwrite and os.path.lexists(target):
                backup = _backup(target, folder)
                backups.append(backup)
            _move_into_place(tmp, target, overwrite)
            done.append((target, backup))
    except BaseException as exc:
        for target, backup in reversed(done):
            try:
                if backup is None:
                    os.unlink(target)
                else:
                    os.replace(backup, target)
            except OSError as undo_exc:
                if backup is not None:
                    backups.remove(backup)  # keep it: it is the only copy of the old file
                    exc.add_note(
                        f"restoring {str(target)!r} failed ({undo_exc}); its "
                        f"previous contents are in {backup!r}."
                    )
                else:
                    exc.add_note(f"removing the new {str(target)!r} failed ({undo_exc}).")
        raise
    finally:
        for backup in backups:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)


def _backup(target, folder):
    """Keep the file about to be replaced under a hidden name (a hard link if possible)."""
    backup = str(Path(folder) / f".{target.name}.{writer_tag()}.{secrets.token_hex(8)}.bak")
    try:
        os.link(target, backup, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # filesystem without hard links
        shutil.copy2(target, backup, follow_symlinks=False)
    return backup


def _write_text(F, tmp, meta_json, paramnames_sha256):
    fid = F.fiducial
    record = {
        "format": FORMAT_TAG,
        "text_format_version": TEXT_FORMAT_VERSION,
        "library_version": _version(),
        "experiment": F.name,
        "parameters": len(F.names),
        "paramnames_columns": 2,
        "fiducial_column": False,
        "fiducial": None if fid is None else [float(fid[n]) for n in F.names],
        "paramnames_sha256": paramnames_sha256,
    }
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"# {' '.join(F.names)}\n")
        fh.write(f"# {_TEXT_RECORD} {json.dumps(record)}\n")
        fh.write(f"# metadata: {meta_json}\n")
        for row in F.matrix:
            fh.write(" ".join(repr(float(x)) for x in row) + "\n")


def _write_paramnames(F, tmp):
    """Write getdist's two columns, name TAB label; return the SHA-256 of the bytes written."""
    data = "".join(f"{n}{_TAB}{F.labels[n]}\n" for n in F.names).encode("utf-8")
    with open(tmp, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def _read_utf8(path):
    return _decode_utf8(path, Path(path).read_bytes())


def _decode_utf8(path, raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{str(path)!r} is neither an HDF5 file nor UTF-8 text (undecodable byte at "
            f"offset {exc.start}); it is not a file written by FisherMatrix.save or a "
            "CosmicFish/getdist text matrix."
        ) from None


def _read_text(path):
    """Read a text pair; a pair caught mid-replacement is read once more, then refused."""
    try:
        return _read_text_once(path)
    except InconsistentPairError:
        pass
    try:
        return _read_text_once(path)
    except InconsistentPairError as exc:
        raise InconsistentPairError(
            f"{exc} Read twice with the same result: the pair is inconsistent (a stale, "
            "swapped or edited '.paramnames', or a writer replacing the pair continuously); "
            "save the matrix again."
        ) from None


def _read_header(path, header):
    meta, record, name, legacy = {}, None, None, False
    for h in header:
        try:
            if h.startswith("metadata:"):
                meta = json.loads(h.split(":", 1)[1])
            elif h.startswith(_TEXT_RECORD):
                record = json.loads(h[len(_TEXT_RECORD) :])
            elif h.startswith("fisherforecast") and "; experiment:" in h:
                legacy = True  # written by fisherforecast before the format record existed
                name = h.split("; experiment:", 1)[1].strip() or None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{str(path)!r}: cannot read the header line {'# ' + h!r} "
                f"({exc}); the file is corrupted."
            ) from None
    if record is not None:
        if (
            not isinstance(record, dict)
            or record.get("paramnames_columns") not in (2, 3)
            or record.get("fiducial_column") != (record.get("paramnames_columns") == 3)
        ):
            raise ValueError(
                f"{str(path)!r}: unreadable '# {_TEXT_RECORD}' header record "
                f"{record!r}; the file is corrupted."
            )
        name = record.get("experiment") or None
        legacy = False
    return meta, record, name, legacy


def _read_text_once(path):
    lines = _read_utf8(path).splitlines()
    header = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    rows = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    try:
        matrix = np.array([[float(x) for x in ln.split()] for ln in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r}: cannot read the matrix ({exc}); expected one "
            "whitespace-separated row of numbers per parameter."
        ) from None
    meta, record, name, legacy = _read_header(path, header)
    names = labels = fiducial = None
    pn = Path(str(path) + ".paramnames")
    if not pn.exists():
        pn = Path(path).with_suffix(".paramnames")
        record = None  # the record describes the sidecar written as 'path.paramnames' only
    if pn.exists():
        raw = pn.read_bytes()
        entries = [
            ln for ln in _decode_utf8(pn, raw).splitlines() if ln.strip() and not ln.startswith("#")
        ]
        if record is not None:
            names, labels, fid_values = _read_own_pair(path, pn, raw, entries, record, header)
        else:
            names, labels, fid_values = _parse_foreign_paramnames(entries, legacy)
        if fid_values is not None:
            fiducial = dict(zip(names, fid_values, strict=True))
    elif header:
        names = header[0].split()
    if names is None:
        raise ValueError(
            f"{str(path)!r} has no parameter names: expected a '# name1 name2 ...' "
            "header line or a .paramnames file beside it."
        )
    if matrix.ndim != 2 or matrix.shape != (len(names), len(names)):
        raise ValueError(
            f"{str(path)!r}: matrix of shape {matrix.shape} does not match "
            f"{len(names)} parameter names {names}."
        )
    return FisherMatrix(matrix, names, fiducial=fiducial, labels=labels, name=name, metadata=meta)


def _read_own_pair(path, pn, raw, entries, record, header):
    """Names, labels and fiducials of a pair written here, checked to belong together."""
    version = record.get("text_format_version")
    digest = record.get("paramnames_sha256")
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        raise InconsistentPairError(
            f"{str(pn)!r} is not the '.paramnames' written with {str(path)!r} (its SHA-256 "
            "differs from the one recorded in the matrix file)."
        )
    sep = _TAB if isinstance(version, int) and version >= 3 else _SEP
    names, labels, fid_values = _parse_own_paramnames(pn, entries, record["fiducial_column"], sep)
    header_names = header[0].split() if header else []
    if len(names) != record.get("parameters", len(names)) or header_names != names:
        raise InconsistentPairError(
            f"{str(pn)!r} lists the parameters {names} but {str(path)!r} records "
            f"{header_names}; the pair is inconsistent."
        )
    if "fiducial" in record:
        fid = record["fiducial"]
        if fid is not None and (
            not isinstance(fid, list)
            or len(fid) != len(names)
            or not all(isinstance(v, int | float) for v in fid)
        ):
            raise ValueError(
                f"{str(path)!r}: the fiducial values recorded in the header, {fid!r}, are not "
                f"one number per parameter {names}; the file is corrupted."
            )
        fid_values = None if fid is None else [float(v) for v in fid]
    return names, labels, fid_values


def _parse_own_paramnames(pn, entries, fid_column, column_sep):
    """Read a sidecar written by `_write_paramnames`; labels come back exactly."""
    names, labels, fid_values = [], [], []
    for line in entries:
        name, sep, rest = line.partition(column_sep)
        if not sep or any(c.isspace() for c in name):  # hand-edited: other whitespace
            match = re.match(r"(\S+)\s*(.*)", line, re.DOTALL)
            if match is None:
                raise ValueError(f"{str(pn)!r}: line {line!r} does not start with a name.")
            name, rest = match.groups()
        if fid_column:
            body = rest.rstrip()
            token = body.rsplit(None, 1)[-1] if body.strip() else ""
            try:
                fid_values.append(float(token))
            except ValueError:
                raise ValueError(
                    f"{str(pn)!r}: line {line!r} should end with the fiducial "
                    "value of the parameter; the file is corrupted."
                ) from None
            rest = body[: len(body) - len(token)]
            rest = rest[: -len(_SEP)] if rest.endswith(_SEP) else rest.rstrip()
        names.append(name.rstrip("*"))
        labels.append(rest)
    return names, labels, (fid_values if fid_column else None)


_LEGACY_LINE = re.compile(r"(\S+)    (.*)    (\S+)", re.DOTALL)


def _parse_foreign_paramnames(entries, legacy):
    """A getdist/CosmicFish '.paramnames' file: name ('*' marks derived), then the label.

    Only for a file written by an older fisherforecast (`legacy`) is a last column holding
    a float's exact repr, on every line, read as the fiducial.
    """
    names, labels = [], []
    for line in entries:
        parts = line.split(None, 1)
        names.append(parts[0].rstrip("*"))
        labels.append(parts[1].strip() if len(parts) > 1 else parts[0].rstrip("*"))
    if legacy:
        matches = [m for line in entries if (m := _LEGACY_LINE.fullmatch(line)) is not None]
        if matches and len(matches) == len(entries) and all(_is_float_repr(m[3]) for m in matches):
            return names, [m[2] for m in matches], [float(m[3]) for m in matches]
    return names, labels, None


def _is_float_repr(token):
    try:
        return repr(float(token)) == token
    except ValueError:
        return False
