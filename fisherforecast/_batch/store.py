"""HDF5 storage: preallocated, atomic per chunk, resumable, with an input fingerprint."""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

import jax
import numpy as np

from .._errors import InputError
from .._linalg import STATUS, classify
from .fingerprint import model_fingerprint
from .reasons import REASONS, Reason

if TYPE_CHECKING:
    import h5py

FILE_FORMAT = "fisherforecast.FisherBatch"
FILE_VERSION = 2
# Version 2 files carry a SHA-256 per chunk; version 1 files (before checksums) have none.
CHECKSUM_VERSION = 2


def dataset(node: h5py.Group, key) -> h5py.Dataset:
    """``node[key]``, a dataset by the file layout (h5py types a member as any node)."""
    return cast("h5py.Dataset", node[key])


def group(node: h5py.Group, key: str) -> h5py.Group:
    """``node[key]``, a group by the file layout (h5py types a member as any node)."""
    return cast("h5py.Group", node[key])


# ---------------------------------------------------------------------------------------
# Fingerprint of the inputs (for resuming an HDF5 file)
# ---------------------------------------------------------------------------------------
def hash_arrays(tree):
    h = hashlib.sha256()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:32]


def input_fingerprint(experiments, fiducials, names, mode, design_batch, B):
    """``(fingerprint, opaque)``: the attributes that identify a run's inputs, and the
    parts of the models that could not be fingerprinted by value (see ``fingerprint.py``)."""
    models, opaque = [], []
    for i, e in enumerate(experiments):
        digest, parts = model_fingerprint(e.model)
        name = f"{getattr(e.model, '__module__', '?')}.{getattr(e.model, '__qualname__', '?')}"
        models.append(f"{name}#{digest}")
        where = f"experiment {i} " if len(experiments) > 1 else ""
        opaque += [where + part for part in parts]
    fingerprint = {
        "names": json.dumps(list(names)),
        "fiducial_names": json.dumps(list(fiducials)),
        "batch_size": int(B),
        "mode": mode,
        "design_batch": bool(design_batch),
        "models": json.dumps(models),
        "experiment_names": json.dumps([e.name or "" for e in experiments]),
        "fiducials_hash": hash_arrays([fiducials[k] for k in fiducials]),
        "experiment_hash": hash_arrays([(e.noise, e.design) for e in experiments]),
    }
    return fingerprint, opaque


# ---------------------------------------------------------------------------------------
# HDF5 storage: preallocated, atomic per chunk, resumable
# ---------------------------------------------------------------------------------------
def early_dcpl():
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    # Allocate every chunk when the file is created: writing a chunk later touches only raw
    # data, never the file's metadata, so an interrupted write cannot break the file.
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def create_file(tmp, *, names, fiducials, B, chunk_size, fingerprint, label, done=None, data=None):
    """Write the full layout of a batch file to `tmp` (a fresh path)."""
    import h5py

    from .. import __version__

    P = len(names)
    n_chunks = math.ceil(B / chunk_size)
    c = min(chunk_size, B)
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = FILE_FORMAT
        h.attrs["format_version"] = FILE_VERSION
        h.attrs["library_version"] = __version__
        h.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat()
        h.attrs["experiment"] = label or ""
        h.attrs["chunk_size"] = int(chunk_size)
        h.attrs["n_chunks"] = n_chunks
        h.attrs["reasons"] = json.dumps(list(REASONS))
        for key, value in fingerprint.items():
            h.attrs[f"fp_{key}"] = value
        str_dt = h5py.string_dtype()
        h.create_dataset("names", data=np.array(names, dtype=object), dtype=str_dt)
        specs = {
            "matrices": ((B, P, P), "f8", (c, P, P), np.nan),
            "ok": ((B,), "?", (c,), False),
            "reason": ((B,), "i1", (c,), int(Reason.NOT_COMPUTED)),
            "condition": ((B,), "f8", (c,), np.nan),
        }
        for key, (shape, dtype, chunks, fill) in specs.items():
            h.create_dataset(
                key, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fill, dcpl=early_dcpl()
            )
            if data is not None:
                dataset(h, key)[...] = data[key]
        g = h.create_group("fiducials")
        for k, v in fiducials.items():
            g.create_dataset(k, data=v, dtype="f8", chunks=(c,))
        sums = np.zeros(n_chunks, "S64")
        if data is not None and done is not None:
            for k in np.nonzero(done)[0]:
                sl = slice(k * chunk_size, (k + 1) * chunk_size)
                sums[k] = chunk_checksum(
                    data["matrices"][sl], data["reason"][sl], data["condition"][sl]
                )
        h.create_dataset("checksum", data=sums, dtype="S64", dcpl=early_dcpl())
        h.create_dataset(
            "done",
            data=np.zeros(n_chunks, bool) if done is None else done,
            dtype="?",
            dcpl=early_dcpl(),
        )


class H5Store:
    """The output file of a streaming run (see docs/batch.md for the layout)."""

    def __init__(self, path, **options):
        self.path = Path(path)
        self.lock = lock_run(self.path)  # held until close(): one run per file
        try:
            self._open(**options)
        except BaseException:
            self.release()
            raise

    def _open(
        self,
        *,
        names,
        fiducials,
        B,
        chunk_size,
        chunk_size_given,
        fingerprint,
        label,
        overwrite,
        opaque=(),
        resume=None,
    ):
        import h5py

        from .._io import atomic_path

        self.chunk_size = chunk_size
        self.corrupt = {}
        if self.path.exists():
            state = inspect_existing(self.path)
            if state is None:
                if not overwrite:
                    raise FileExistsError(
                        f"`out` = {str(self.path)!r} exists and is not a fisherforecast batch "
                        "file; pass overwrite=True to replace it, or choose another path."
                    )
            else:
                attrs, done = state
                diff = [k for k, v in fingerprint.items() if attrs.get(f"fp_{k}") != v]
                if chunk_size_given and attrs["chunk_size"] != chunk_size:
                    diff.append("chunk_size")
                if resume is False:
                    diff.append("resume=False")
                if not diff and opaque and resume is None and done.any():
                    raise InputError(
                        f"cannot tell whether `out` = {str(self.path)!r} was started with the "
                        "same model: it could not be fingerprinted by value (opaque: "
                        f"{', '.join(opaque[:3])}). Pass resume=True to resume it (you vouch "
                        "that the model is the same), or overwrite=True to start again."
                    )
                if not diff:
                    self.chunk_size = int(attrs["chunk_size"])
                    self.h = h5py.File(self.path, "r+")
                    self.done = np.asarray(dataset(self.h, "done")[()], dtype=bool)
                    self.corrupt = corrupt_chunks(self.h, self.done, self.chunk_size)
                    for k in self.corrupt:  # recomputed by this run
                        self.done[k] = False
                        dataset(self.h, "done")[k] = False
                    if "checksum" not in self.h:  # a version-1 file: add checksums
                        self.h.create_dataset("checksum", data=np.zeros(self.done.size, "S64"))
                        for k in np.nonzero(self.done)[0]:
                            sl = slice(k * self.chunk_size, (k + 1) * self.chunk_size)
                            dataset(self.h, "checksum")[k] = chunk_checksum(
                                dataset(self.h, "matrices")[sl],
                                dataset(self.h, "reason")[sl],
                                dataset(self.h, "condition")[sl],
                            )
                        self.h.attrs["format_version"] = FILE_VERSION
                    self._sync()
                    return
                # A file with no finished chunk holds nothing to lose (e.g. the first run
                # stopped on a model error): replace it.
                if not overwrite and done.any():
                    what = ", ".join(diff)
                    if done.all():
                        raise FileExistsError(
                            f"`out` = {str(self.path)!r} holds a finished batch computed from "
                            f"different inputs (they differ in: {what}). Pass overwrite=True "
                            "to replace it, or choose another path."
                        )
                    raise InputError(
                        f"cannot resume into `out` = {str(self.path)!r}: it was started with "
                        f"different inputs (they differ in: {what}); {int(done.sum())} of "
                        f"{done.size} chunks are finished. Rerun with the original inputs to "
                        "resume, pass overwrite=True to start again, or choose another path."
                    )
                overwrite = True  # nothing finished in it
        with atomic_path(self.path, overwrite) as tmp:
            create_file(
                tmp,
                names=names,
                fiducials=fiducials,
                B=B,
                chunk_size=self.chunk_size,
                fingerprint=fingerprint,
                label=label,
            )
        self.h = h5py.File(self.path, "r+")
        self.done = np.zeros(math.ceil(B / self.chunk_size), dtype=bool)

    def write(self, k, F, codes, cond):
        start = k * self.chunk_size
        stop = start + F.shape[0]
        dataset(self.h, "matrices")[start:stop] = F
        dataset(self.h, "ok")[start:stop] = codes == Reason.OK
        dataset(self.h, "reason")[start:stop] = codes
        dataset(self.h, "condition")[start:stop] = cond
        dataset(self.h, "checksum")[k] = chunk_checksum(F, codes, cond)
        self._sync()  # the chunk's data is on disk ...
        dataset(self.h, "done")[k] = True
        self._sync()  # ... before its flag says so
        self.done[k] = True

    def _sync(self):
        self.h.flush()
        try:
            os.fsync(self.h.id.get_vfd_handle())
        except (OSError, TypeError, ValueError, AttributeError):
            pass

    def close(self):
        try:
            self.h.close()
        finally:
            self.release()

    def release(self):
        """Let go of the run's lock (see :func:`lock_run`)."""
        if self.lock is not None:
            unlock(self.lock)
            self.lock = None


# ---------------------------------------------------------------------------------------
# One run per file: an advisory lock on a sidecar file
# ---------------------------------------------------------------------------------------
class FileInUseError(OSError):
    """The batch file is being written by another run (another process, or this one)."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def in_use_error(path) -> FileInUseError:
    return FileInUseError(
        f"`out` = {str(path)!r} is in use by another process (a fisher_batch run is writing "
        "it). Wait for that run to finish and rerun to pick up its results, or choose "
        "another path."
    )


def lock_run(path: Path):
    """Hold an exclusive ``flock`` on ``<out>.lock`` for the run, or raise
    :class:`FileInUseError` at once when another run holds it. The lock goes with the
    process (a killed run frees it); the small ``.lock`` file is left in place, since
    removing it would race with a run about to take it. ``None`` where ``fcntl`` is
    missing (Windows) or the folder does not exist (the error comes later, worded)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise in_use_error(path) from None
    return fd


def unlock(fd):
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_not_in_use(path):
    """Raise :class:`FileInUseError` when a run holds `path`'s lock (nothing is created)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fd = os.open(lock_path(Path(path)), os.O_RDWR)
    except OSError:
        return  # no lock file: no run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise in_use_error(path) from None
    finally:
        os.close(fd)  # closing also drops the lock if it was taken


def inspect_existing(path):
    """``(attrs, done)`` of a batch file, or ``None`` if `path` is not one."""
    import h5py

    try:
        with h5py.File(path, "r") as h:
            if h.attrs.get("format") != FILE_FORMAT or "done" not in h:
                return None
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h.attrs.items()}
            return attrs, np.asarray(dataset(h, "done")[()], dtype=bool)
    except OSError as exc:
        if "lock" in str(exc).lower():  # HDF5's own file lock: open elsewhere for writing
            raise in_use_error(path) from None
        return None


# ---------------------------------------------------------------------------------------
# Integrity of stored chunks
# ---------------------------------------------------------------------------------------
def chunk_checksum(matrices, codes, cond) -> bytes:
    """SHA-256 (hex) of one chunk's matrices, reason codes and condition numbers."""
    h = hashlib.sha256()
    for arr, dtype in ((matrices, np.float64), (codes, np.int8), (cond, np.float64)):
        h.update(np.ascontiguousarray(np.asarray(arr, dtype=dtype)).tobytes())
    return h.hexdigest().encode()


def chunk_problem(h: h5py.File, k, chunk_size) -> str | None:
    """Why finished chunk `k` of an open batch file cannot be trusted, or ``None``.

    The chunk's checksum (files written before checksums existed have none) and a recheck
    of its items: codes must be known, and an item stored as ok must still classify ok
    (finite, PSD, invertible).
    """
    sl = slice(k * chunk_size, (k + 1) * chunk_size)
    F = np.asarray(dataset(h, "matrices")[sl], dtype=np.float64)
    codes = np.asarray(dataset(h, "reason")[sl])
    cond = np.asarray(dataset(h, "condition")[sl])
    checksummed = int(h.attrs.get("format_version", 1)) >= CHECKSUM_VERSION  # pyright: ignore[reportArgumentType]
    if checksummed and "checksum" not in h:
        return f"chunk {k}: the file's checksum dataset is missing (the file was altered)"
    stored = bytes(dataset(h, "checksum")[k]) if "checksum" in h else b""
    if checksummed and not stored:
        return f"chunk {k}: finished but has no checksum (the file was altered)"
    if stored and stored != chunk_checksum(F, codes, cond):
        return f"chunk {k}: checksum mismatch (its data changed after it was written)"
    unknown = (codes < 0) | (codes >= len(Reason))
    if unknown.any():
        return f"chunk {k}: unknown reason code {int(codes[unknown][0])}"
    ok = codes == Reason.OK
    if ok.any():
        now, _ = classify(F[ok])
        if np.any(now != Reason.OK):
            i = int(np.nonzero(ok)[0][np.nonzero(now != Reason.OK)[0][0]])
            return (
                f"chunk {k}: item {sl.start + i} is stored as ok but its matrix is "
                f"'{STATUS[int(now[now != Reason.OK][0])]}'"
            )
    return None


def corrupt_chunks(h: h5py.File, done, chunk_size) -> dict[int, str]:
    """Finished chunk -> what is wrong with it, for the chunks that fail :func:`chunk_problem`."""
    found = {}
    for k in np.nonzero(done)[0]:
        problem = chunk_problem(h, int(k), chunk_size)
        if problem is not None:
            found[int(k)] = problem
    return found


class StoredBatch(NamedTuple):
    """The contents of a batch file (unfinished items flagged ``NOT_COMPUTED``)."""

    matrices: np.ndarray
    names: tuple
    fiducials: dict | None
    codes: np.ndarray
    condition: np.ndarray
    metadata: dict
    messages: dict  # item index -> why it is flagged STORED_CORRUPT


#: What every batch file holds (datasets and groups, then attributes).
REQUIRED_ENTRIES = ("done", "names", "matrices", "reason", "condition", "fiducials")
REQUIRED_ATTRIBUTES = ("chunk_size",)


def check_layout(h: h5py.File, path) -> None:
    """Refuse a damaged batch file with the entries it lacks, not a deep ``KeyError``."""
    missing = [k for k in REQUIRED_ENTRIES if k not in h]
    missing += [f"attribute {a!r}" for a in REQUIRED_ATTRIBUTES if a not in h.attrs]
    if missing:
        raise InputError(
            f"{str(path)!r} is a damaged fisherforecast batch file: it lacks {missing}. "
            "Recompute it (fisher_batch(..., out=..., overwrite=True) once no run uses it), "
            "or restore it from a copy."
        )
    version = h.attrs.get("format_version", 1)
    if int(version) > FILE_VERSION:  # pyright: ignore[reportArgumentType]
        raise InputError(
            f"{str(path)!r} has batch format_version {version}, newer than this fisherforecast "
            f"reads (up to {FILE_VERSION}). Upgrade fisherforecast to load it."
        )


def read_file(path, allow_partial) -> StoredBatch:
    """Read a batch file; an unfinished one raises unless `allow_partial`."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no batch file at {str(path)!r}.")
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        if "lock" in str(exc).lower():  # HDF5's file lock: a run is writing it
            raise in_use_error(path) from None
        raise InputError(f"{str(path)!r} is not an HDF5 file: {exc}") from None
    with h:
        if h.attrs.get("format") != FILE_FORMAT:
            raise InputError(
                f"{str(path)!r} is not a fisherforecast batch file (format attribute "
                f"{h.attrs.get('format')!r})."
            )
        check_layout(h, path)
        done = np.asarray(dataset(h, "done")[()], dtype=bool)
        chunk_size = int(h.attrs["chunk_size"])  # pyright: ignore[reportArgumentType]  # stored as an int
        corrupt = corrupt_chunks(h, done, chunk_size)
        if not done.all() and not allow_partial:
            missing = np.nonzero(~done)[0]
            raise InputError(
                f"{str(path)!r} is incomplete: {missing.size} of {done.size} chunks are not "
                f"finished (first: {missing[:5].tolist()}). Rerun fisher_batch(..., "
                f"out={str(path)!r}) with the same inputs to resume, or load with "
                "allow_partial=True (unfinished items are flagged 'not computed')."
            )
        names = tuple(
            n.decode() if isinstance(n, bytes) else str(n) for n in dataset(h, "names")[()]
        )
        matrices = dataset(h, "matrices")[()]
        codes = np.asarray(dataset(h, "reason")[()], dtype=np.int8)
        cond = dataset(h, "condition")[()]
        fids = group(h, "fiducials")
        fiducials = {k: dataset(fids, k)[()] for k in fids} or None
        order = json.loads(h.attrs.get("fp_fiducial_names", "null") or "null")
        if fiducials and order and set(order) == set(fiducials):
            fiducials = {k: fiducials[k] for k in order}
        meta = {
            "experiment": h.attrs.get("experiment") or None,
            "chunk_size": chunk_size,
            "n_chunks": int(done.size),
            "chunks_done": int(done.sum()),
            "library_version": h.attrs.get("library_version"),
            "created": h.attrs.get("created"),
            "mode": h.attrs.get("fp_mode"),
            "path": str(path),
        }
    for k in np.nonzero(~done)[0]:
        codes[k * chunk_size : (k + 1) * chunk_size] = Reason.NOT_COMPUTED
    messages = {}
    for k, problem in corrupt.items():
        sl = slice(k * chunk_size, min((k + 1) * chunk_size, codes.size))
        codes[sl] = Reason.STORED_CORRUPT
        cond[sl] = np.nan
        messages.update(dict.fromkeys(range(sl.start, sl.stop), problem))
    if corrupt:
        meta["corrupt_chunks"] = sorted(corrupt)
    return StoredBatch(matrices, names, fiducials, codes, cond, meta, messages)
