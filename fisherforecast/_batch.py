"""Fisher matrices for populations: one compiled, batched transformation of the single path.

:func:`fisher_batch` evaluates ``jax.jit(jax.vmap(...))`` of the engine's own Fisher function
(``_engine.evaluate``, the function behind :func:`ff.fisher` and :func:`ff.fisher_information`)
over chunks of fiducials or designs, so a batched matrix and a single one are the same
computation. Around that kernel sit the pieces a population run needs:

* chunking with exactly one compilation (the last chunk is padded to the chunk size);
* sharding of each chunk over several local devices (a 1-D ``jax.sharding`` mesh);
* per-item failure flags, so that a NaN, a singular matrix or a solver error in one item
  never aborts the batch;
* streaming into a resumable HDF5 file, atomic per chunk;
* scale-out over Dask workers, one task per chunk.

The result is a :class:`FisherBatch`: stacked matrices plus vectorised marginal errors
computed with the foundation's robust recipe (unit-diagonal rescaling, then Cholesky with an
eigendecomposition fallback; see ``_linalg.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_mode, check_names, check_overwrite, check_subset
from ._engine import call_model, evaluate
from ._errors import FisherError, SingularFisherError, quote
from ._linalg import PSD_RTOL, RANK_RTOL, schur_marginal
from ._matrix import FisherMatrix
from ._x64 import float64

__all__ = ["REASONS", "FisherBatch", "fisher_batch"]

# ---------------------------------------------------------------------------------------
# Failure codes. The first failing check wins; the order follows the computation.
# ---------------------------------------------------------------------------------------
OK = 0
BAD_FIDUCIAL = 1
BAD_OUTPUT = 2
BAD_JACOBIAN = 3
BAD_NOISE = 4
BAD_MATRIX = 5
NO_INFORMATION = 6
SINGULAR = 7
ERROR = 8
NOT_COMPUTED = 9
NOT_PSD = 10

#: Codes of items that failed before a matrix existed: later algebra keeps them failed.
_UPSTREAM = (BAD_FIDUCIAL, BAD_OUTPUT, BAD_JACOBIAN, BAD_NOISE, ERROR, NOT_COMPUTED, NOT_PSD)

#: Code -> meaning of ``FisherBatch.reason_codes``.
REASONS = (
    "ok",
    "non-finite fiducial value",
    "model output is NaN/inf",
    "model derivative (Jacobian) is NaN/inf",
    "noise-model check failed (e.g. non-positive Poisson counts or sigma)",
    "Fisher matrix is NaN/inf",
    "a parameter has zero information (zero diagonal entry)",
    "singular Fisher matrix (degenerate parameter combination)",
    "evaluation raised an error (e.g. an ODE solver that threw)",
    "not computed (chunk not finished)",
    "Fisher matrix is not positive semi-definite (a negative eigenvalue beyond round-off)",
)

#: Memory per item is estimated as ``output size × (P + 1) × bytes per value × this factor``
#: (model output, P Jacobian columns, and the temporaries of forward-mode autodiff).
BYTES_FACTOR = 4
#: Largest automatic chunk size.
MAX_CHUNK = 8192
#: Default memory budget for one chunk: this fraction of the free memory (host RAM on CPU,
#: device memory on an accelerator), capped on CPU at ``CPU_BUDGET_CAP`` bytes.
MEMORY_FRACTION = 0.25
CPU_BUDGET_CAP = 64 * 2**20

FILE_FORMAT = "fisherforecast.FisherBatch"
FILE_VERSION = 1


# ---------------------------------------------------------------------------------------
# The compiled kernel: vmap of the engine's single-item Fisher path
# ---------------------------------------------------------------------------------------
def _item(experiments, fiducial, names, mode):
    """Fisher matrix and a failure code for one item. Pure; runs under vmap."""
    total = None
    bad_out = bad_jac = bad_noise = jnp.asarray(False)
    for exp in experiments:
        ev = evaluate(exp, fiducial, names, mode)
        total = ev.fisher if total is None else total + ev.fisher
        bad_out = bad_out | ~ev.finite_output
        bad_jac = bad_jac | ~ev.finite_jacobian
        bad_noise = bad_noise | ~ev.noise_ok
    code = jnp.where(
        bad_out, BAD_OUTPUT, jnp.where(bad_jac, BAD_JACOBIAN, jnp.where(bad_noise, BAD_NOISE, OK))
    )
    return total, code.astype(jnp.int32)


@partial(jax.jit, static_argnames=("names", "mode", "design_batch"))
def _chunk_kernel(experiments, fiducials, names, mode, design_batch):
    """``(C, P, P)`` matrices and ``(C,)`` codes for a chunk of ``C`` items."""
    if design_batch:
        designs = tuple(e.design for e in experiments)

        def one(designs, fiducial):
            exps = tuple(e.replace(design=d) for e, d in zip(experiments, designs, strict=True))
            return _item(exps, fiducial, names, mode)

        return jax.vmap(one)(designs, fiducials)
    return jax.vmap(lambda fiducial: _item(experiments, fiducial, names, mode))(fiducials)


@jax.jit
def _probe(experiments, fiducial):
    """Model outputs at one item; only ever traced (``eval_shape``) for their shapes."""
    params = {k: jnp.asarray(v, jnp.float64) for k, v in fiducial.items()}
    return tuple(call_model(e, params) for e in experiments)


# ---------------------------------------------------------------------------------------
# Classification and robust batched inversion (numpy, on the host)
# ---------------------------------------------------------------------------------------
def _classify(matrices, codes, block=8192):
    """Add the matrix-level failure codes and the scaled condition numbers.

    Uses the foundation's rank test: the unit-diagonal matrix ``S`` is singular when
    ``λ_min(S) <= RANK_RTOL · P · λ_max(S)`` (see ``_linalg.robust_inverse``), and not a
    Fisher matrix at all when a diagonal entry is negative or ``λ_min(S) < -PSD_RTOL ·
    max(λ_max, 1)`` (the test of ``ff.FisherMatrix``). Works in blocks of `block` items so
    that the temporaries stay small for 10⁶ items.
    """
    F = np.asarray(matrices, dtype=np.float64)
    codes = np.array(codes, dtype=np.int8)
    n, P = F.shape[0], F.shape[1]
    cond = np.full(n, np.nan)
    for start in range(0, n, block):
        sl = slice(start, min(start + block, n))
        Fb = F[sl]
        cb = codes[sl]  # a view: updated in place
        condb = cond[sl]
        finite = np.all(np.isfinite(Fb.reshape(len(Fb), P * P)), axis=1)
        cb[(cb == OK) & ~finite] = BAD_MATRIX
        diag = np.diagonal(Fb, axis1=1, axis2=2)
        negative = (cb == OK) & np.any(diag < 0, axis=1)
        cb[negative] = NOT_PSD
        zero = (cb == OK) & np.any(~(diag > 0), axis=1)
        cb[zero] = NO_INFORMATION
        condb[zero] = np.inf
        rest = np.nonzero(cb == OK)[0]
        if rest.size:
            d = np.sqrt(diag[rest])
            S = Fb[rest] / (d[:, :, None] * d[:, None, :])
            w = np.linalg.eigvalsh(S)
            singular = w[:, 0] <= RANK_RTOL * P * w[:, -1]
            indefinite = w[:, 0] < -PSD_RTOL * np.maximum(w[:, -1], 1.0)
            cb[rest[singular]] = SINGULAR
            cb[rest[indefinite]] = NOT_PSD
            with np.errstate(divide="ignore", invalid="ignore"):
                condb[rest] = np.where(w[:, 0] > 0, w[:, -1] / w[:, 0], np.inf)
    return codes, cond


def _batched_covariance(matrices, ok, diagonal_only=False, block=8192):
    """Covariances of the ``ok`` items (NaN elsewhere), the robust way, batched.

    Same recipe as ``robust_inverse``: rescale to unit diagonal, Cholesky factorise, and
    fall back to the eigendecomposition for any item whose Cholesky factorisation fails.
    Works in blocks of `block` items so temporaries stay bounded for 10⁶ items; with
    ``diagonal_only`` it returns only the ``(B, P)`` variances (no ``(B, P, P)`` array).
    """
    F = np.asarray(matrices)
    B, P = F.shape[0], F.shape[1]
    out = np.full((B, P) if diagonal_only else (B, P, P), np.nan)
    idx = np.nonzero(ok)[0]
    eye = np.eye(P)
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        M = np.asarray(F[sel], dtype=np.float64)
        d = np.sqrt(np.diagonal(M, axis1=1, axis2=2))
        S = M / (d[:, :, None] * d[:, None, :])
        S = 0.5 * (S + np.swapaxes(S, 1, 2))
        try:
            L = np.linalg.cholesky(S)
            Linv = np.linalg.solve(L, np.broadcast_to(eye, S.shape))
            S_inv = np.swapaxes(Linv, 1, 2) @ Linv
        except np.linalg.LinAlgError:
            S_inv = np.empty_like(S)
            for k in range(S.shape[0]):
                try:
                    Lk_inv = np.linalg.solve(np.linalg.cholesky(S[k]), eye)
                    S_inv[k] = Lk_inv.T @ Lk_inv
                except np.linalg.LinAlgError:
                    w, V = np.linalg.eigh(S[k])
                    S_inv[k] = (V / w) @ V.T
        if diagonal_only:
            out[sel] = np.diagonal(S_inv, axis1=1, axis2=2) / d**2
        else:
            S_inv = 0.5 * (S_inv + np.swapaxes(S_inv, 1, 2))
            out[sel] = S_inv / (d[:, :, None] * d[:, None, :])
    return out


# ---------------------------------------------------------------------------------------
# One chunk: pad, place, evaluate, isolate failures
# ---------------------------------------------------------------------------------------
def _take(experiments, fiducials, idx, design_batch, chunk_size):
    """The items ``idx`` padded (by repeating the last one) to ``chunk_size``."""
    pad = np.concatenate([idx, np.full(chunk_size - len(idx), idx[-1], dtype=idx.dtype)])
    fids = {k: v[pad] for k, v in fiducials.items()}
    if design_batch:
        experiments = tuple(
            e.replace(design=jax.tree_util.tree_map(lambda x: np.asarray(x)[pad], e.design))
            for e in experiments
        )
    return experiments, fids


def _placement(devices):
    """A function placing a chunk's arrays on `devices` (``None``: JAX's default)."""
    if devices is None:
        return None
    if len(devices) == 1:
        device = devices[0]

        def place(experiments, fids, design_batch):
            return jax.device_put(experiments, device), jax.device_put(fids, device)

        return place
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(devices), ("batch",))
    batched = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def put(e, design_sharding):
        # Rebuild through the pytree (not Experiment(...)), which keeps device arrays as they
        # are instead of converting the design to numpy.
        leaves = jax.tree_util.tree_leaves(
            jax.device_put(e.noise, replicated)
        ) + jax.tree_util.tree_leaves(jax.device_put(e.design, design_sharding))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(e), leaves)

    def place(experiments, fids, design_batch):
        sharding = batched if design_batch else replicated
        return (tuple(put(e, sharding) for e in experiments), jax.device_put(fids, batched))

    return place


class _Chunk:
    """One chunk of ``n <= chunk_size`` items, evaluated in two steps.

    ``_Chunk(...)`` dispatches the compiled kernel (asynchronously: JAX returns at once), and
    :func:`_finish_chunk` waits for the result, isolates runtime errors and classifies the
    matrices. The local loop dispatches chunk ``k + 1`` before finishing chunk ``k``, so the
    host work of one chunk overlaps the device work of the next. Must run under float64.
    """

    def __init__(
        self, experiments, fiducials, names, mode, design_batch, chunk_size, placement=None
    ):
        self.fiducials = {k: np.asarray(v, dtype=np.float64) for k, v in fiducials.items()}
        self.args = (experiments, names, mode, design_batch, chunk_size, placement)
        n = len(next(iter(self.fiducials.values())))
        good = np.all(np.stack([np.isfinite(v) for v in self.fiducials.values()]), axis=0)
        self.F = np.full((n, len(names), len(names)), np.nan)
        self.codes = np.where(good, OK, BAD_FIDUCIAL).astype(np.int8)
        self.todo = np.nonzero(good)[0]
        self.pending = self.error = None
        if self.todo.size:
            try:
                self.pending = self.dispatch(self.todo)
            except jax.errors.JaxRuntimeError as exc:  # some backends raise at dispatch
                self.error = exc

    def dispatch(self, idx):
        experiments, names, mode, design_batch, chunk_size, placement = self.args
        exps, fids = _take(experiments, self.fiducials, idx, design_batch, chunk_size)
        if placement is not None:
            exps, fids = placement(exps, fids, design_batch)
        return _chunk_kernel(exps, fids, names, mode, design_batch)

    def fetch(self, idx, pending):
        F_c, codes_c = pending
        self.F[idx] = np.asarray(F_c, dtype=np.float64)[: len(idx)]
        self.codes[idx] = np.asarray(codes_c)[: len(idx)]


def _finish_chunk(chunk):
    """Wait for a dispatched chunk; return ``(matrices, codes, condition, messages)``.

    ``messages`` maps an item's index within the chunk to the error it raised.
    """
    messages = {}

    def isolate(idx):
        # A runtime error (equinox.error_if, a solver that throws) fails the whole compiled
        # chunk; bisect to find the items that raise, reusing the same compiled chunk.
        try:
            chunk.fetch(idx, chunk.dispatch(idx))
        except jax.errors.JaxRuntimeError as exc:
            _raise_if_out_of_memory(exc, chunk)
            if len(idx) == 1:
                chunk.codes[idx] = ERROR
                messages[int(idx[0])] = _error_message(exc)
            else:
                half = len(idx) // 2
                isolate(idx[:half])
                isolate(idx[half:])

    if chunk.pending is not None or chunk.error is not None:
        try:
            if chunk.error is not None:
                raise chunk.error
            chunk.fetch(chunk.todo, chunk.pending)
        except jax.errors.JaxRuntimeError as exc:
            _raise_if_out_of_memory(exc, chunk)
            isolate(chunk.todo)
        chunk.pending = chunk.error = None
    codes, cond = _classify(chunk.F, chunk.codes)
    return chunk.F, codes, cond, messages


@contextlib.contextmanager
def _quiet_callback_errors():
    """JAX logs every failed host callback with a full traceback, at the time it runs; a
    failing item (and the bisection that isolates it) would print many. Its error is kept in
    ``FisherBatch.messages`` instead, so mute that logger while the chunks run."""
    logger = logging.getLogger("jax._src.callback")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _raise_if_out_of_memory(exc, chunk):
    """Running out of memory is not an item's failure: stop, and say what to change."""
    text = str(exc)
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        size = chunk.args[4]
        raise MemoryError(
            f"The device ran out of memory on a chunk of {size} items ({text.splitlines()[0]}). "
            f"Pass a smaller chunk_size (e.g. {max(size // 4, 1)}) or memory_budget=... to "
            "fisher_batch. With `out`, finished chunks are kept; a smaller chunk size needs a "
            "new file (or overwrite=True)."
        ) from exc


def _compute_chunk(experiments, fiducials, names, mode, design_batch, chunk_size, placement=None):
    """Evaluate one chunk synchronously (Dask tasks); see :class:`_Chunk`."""
    return _finish_chunk(
        _Chunk(experiments, fiducials, names, mode, design_batch, chunk_size, placement)
    )


def _error_message(exc):
    """The most informative line of a runtime error (the user's exception, if any)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    found = [
        ln
        for ln in lines
        if re.match(r"^[\w.]*(Error|Exception)\w*: ", ln)
        and "CpuCallback" not in ln
        and not ln.startswith("jax.errors.JaxRuntimeError")
    ]
    return found[-1] if found else (lines[0] if lines else type(exc).__name__)


def _dask_chunk(experiments, fiducials, names, mode, design_batch, chunk_size):
    """Dask task: one chunk on the worker's default device (module level: picklable)."""
    with float64():
        return _compute_chunk(experiments, fiducials, names, mode, design_batch, chunk_size)


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------
def _design_batch_size(experiments):
    sizes = set()
    for e in experiments:
        leaves = jax.tree_util.tree_leaves_with_path(e.design)
        if e.design is None or not leaves:
            raise ValueError(
                f"design_batch=True needs every experiment's design to be a pytree of arrays "
                f"with a leading batch axis; experiment {e.name!r} has design "
                f"{quote(e.design)}."
            )
        for path, leaf in leaves:
            shape = np.shape(leaf)
            if len(shape) == 0:
                raise ValueError(
                    f"design_batch=True: design leaf {jax.tree_util.keystr(path) or '<root>'} "
                    f"of experiment {e.name!r} is a scalar; every leaf needs a leading batch "
                    "axis (one entry per design)."
                )
            sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"design_batch=True: the design leaves have different leading (batch) lengths "
            f"{sorted(sizes)}; they must all equal the number of designs."
        )
    return sizes.pop()


def _check_fiducials(fiducials, n_items=None, source=None):
    """Validate a dict name -> scalar or 1-D array; return name -> (B,) float64, and B.

    `n_items` fixes ``B`` (it comes from `source`, e.g. the design's batch axis).
    """
    if not isinstance(fiducials, Mapping):
        raise TypeError(
            "`fiducials` must be a dict of parameter name -> array with one value per item; "
            f"received {quote(fiducials)}."
        )
    if not fiducials:
        raise ValueError("`fiducials` is empty: give at least one parameter.")
    arrays, lengths = {}, {}
    for name, value in fiducials.items():
        if not isinstance(name, str):
            raise TypeError(f"`fiducials` keys must be strings; received key {name!r}.")
        arr = np.asarray(value)
        if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"fiducials[{name!r}] must be real numbers; received {quote(value)}.")
        if arr.ndim > 1:
            raise ValueError(
                f"fiducials[{name!r}] must be a scalar or a 1-D array with one value per item; "
                f"received shape {arr.shape}. Split vector parameters into named scalars."
            )
        arrays[name] = np.asarray(arr, dtype=np.float64)  # no copy yet: one below
        if arr.ndim == 1:
            lengths[name] = arr.shape[0]
    sizes = set(lengths.values())
    if len(sizes) > 1:
        raise ValueError(
            f"`fiducials` arrays have different lengths {lengths}; every array needs one value "
            "per item (scalars are broadcast)."
        )
    if n_items is not None:
        if sizes and sizes != {n_items}:
            raise ValueError(
                f"{source} has {n_items} items but the `fiducials` arrays have length "
                f"{sizes.pop()}; give one value per item, or scalars."
            )
        B = n_items
    else:
        B = sizes.pop() if sizes else 1
    if B == 0:
        raise ValueError("`fiducials` arrays are empty: the batch has no items.")
    out = {}
    for name, arr in arrays.items():
        full = np.array(np.broadcast_to(arr, (B,)), dtype=np.float64)
        full.setflags(write=False)
        out[name] = full
    return out, B


def _check_devices(devices):
    if devices is None:
        return None
    if isinstance(devices, int) and not isinstance(devices, bool):
        available = jax.local_devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices` = {devices}, but there are {len(available)} local devices {available}."
            )
        return list(available[:devices])
    if isinstance(devices, jax.Device):
        return [devices]
    if (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        if len(set(devices)) != len(devices):
            raise ValueError(f"`devices` lists a device more than once: {list(devices)}.")
        return list(devices)
    raise TypeError(
        "`devices` must be None (all local devices), an int (the first n local devices), "
        f"a jax.Device or a list of them; received {quote(devices)}."
    )


def _memory_budget(devices):
    """Bytes one chunk may use; see ``MEMORY_FRACTION`` and ``CPU_BUDGET_CAP``."""
    device = (devices or jax.local_devices())[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
            if free > 0:  # two chunks are in flight at a time: half the share each
                return int(MEMORY_FRACTION * free / 2) * len(devices or [device])
        except Exception:  # memory_stats is backend-specific
            pass
        return 2**30
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 * 2**30
    return int(min(MEMORY_FRACTION * free, CPU_BUDGET_CAP))


def _bytes_per_item(out_shapes, P):
    total = 0
    for s in out_shapes:
        n = max(int(np.prod(s.shape)), 1)
        itemsize = 16 if jnp.issubdtype(s.dtype, jnp.complexfloating) else 8
        total += n * (P + 1) * itemsize * BYTES_FACTOR
    return total + P * P * 8 * BYTES_FACTOR


def _auto_chunk_size(bytes_per_item, budget, B, n_devices):
    """The largest chunk the budget allows (at most ``MAX_CHUNK``), then evened out over the
    chunks needed, so the padded last chunk wastes little (10⁴ items with a cap of 8192:
    two chunks of 5000, not 8192 + 1808 padded to 8192)."""
    cap = int(max(1, min(budget // max(bytes_per_item, 1), MAX_CHUNK)))
    n_chunks = math.ceil(max(B, 1) / cap)
    size = math.ceil(max(B, 1) / n_chunks)
    return _round_up(size, n_devices)


def _round_up(n, k):
    return int(math.ceil(n / k) * k)


# ---------------------------------------------------------------------------------------
# Fingerprint of the inputs (for resuming an HDF5 file)
# ---------------------------------------------------------------------------------------
def _hash_arrays(tree):
    h = hashlib.sha256()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:32]


def _fingerprint(experiments, fiducials, names, mode, design_batch, B):
    models = [
        f"{getattr(e.model, '__module__', '?')}.{getattr(e.model, '__qualname__', '?')}"
        for e in experiments
    ]
    return {
        "names": json.dumps(list(names)),
        "fiducial_names": json.dumps(list(fiducials)),
        "batch_size": int(B),
        "mode": mode,
        "design_batch": bool(design_batch),
        "models": json.dumps(models),
        "experiment_names": json.dumps([e.name or "" for e in experiments]),
        "fiducials_hash": _hash_arrays([fiducials[k] for k in fiducials]),
        "experiment_hash": _hash_arrays([(e.noise, e.design) for e in experiments]),
    }


# ---------------------------------------------------------------------------------------
# HDF5 storage: preallocated, atomic per chunk, resumable
# ---------------------------------------------------------------------------------------
def _early_dcpl():
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    # Allocate every chunk when the file is created: writing a chunk later touches only raw
    # data, never the file's metadata, so an interrupted write cannot break the file.
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def _create_file(tmp, *, names, fiducials, B, chunk_size, fingerprint, label, done=None, data=None):
    """Write the full layout of a batch file to `tmp` (a fresh path)."""
    import h5py

    from . import __version__

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
            "reason": ((B,), "i1", (c,), NOT_COMPUTED),
            "condition": ((B,), "f8", (c,), np.nan),
        }
        for key, (shape, dtype, chunks, fill) in specs.items():
            h.create_dataset(
                key, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fill, dcpl=_early_dcpl()
            )
            if data is not None:
                h[key][...] = data[key]
        g = h.create_group("fiducials")
        for k, v in fiducials.items():
            g.create_dataset(k, data=v, dtype="f8", chunks=(c,))
        h.create_dataset(
            "done",
            data=np.zeros(n_chunks, bool) if done is None else done,
            dtype="?",
            dcpl=_early_dcpl(),
        )


class _H5Store:
    """The output file of a streaming run (see docs/batch.md for the layout)."""

    def __init__(
        self,
        path,
        *,
        names,
        fiducials,
        B,
        chunk_size,
        chunk_size_given,
        fingerprint,
        label,
        overwrite,
    ):
        import h5py

        from ._io import atomic_path

        self.path = Path(path)
        self.chunk_size = chunk_size
        if self.path.exists():
            state = _inspect_existing(self.path)
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
                if not diff:
                    self.chunk_size = int(attrs["chunk_size"])
                    self.h = h5py.File(self.path, "r+")
                    self.done = np.asarray(self.h["done"][()], dtype=bool)
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
                    raise ValueError(
                        f"cannot resume into `out` = {str(self.path)!r}: it was started with "
                        f"different inputs (they differ in: {what}); {int(done.sum())} of "
                        f"{done.size} chunks are finished. Rerun with the original inputs to "
                        "resume, pass overwrite=True to start again, or choose another path."
                    )
                overwrite = True  # nothing finished in it
        with atomic_path(self.path, overwrite) as tmp:
            _create_file(
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
        self.h["matrices"][start:stop] = F
        self.h["ok"][start:stop] = codes == OK
        self.h["reason"][start:stop] = codes
        self.h["condition"][start:stop] = cond
        self._sync()  # the chunk's data is on disk ...
        self.h["done"][k] = True
        self._sync()  # ... before its flag says so
        self.done[k] = True

    def _sync(self):
        self.h.flush()
        try:
            os.fsync(self.h.id.get_vfd_handle())
        except (OSError, TypeError, ValueError, AttributeError):
            pass

    def close(self):
        self.h.close()


def _inspect_existing(path):
    """``(attrs, done)`` of a batch file, or ``None`` if `path` is not one."""
    import h5py

    try:
        with h5py.File(path, "r") as h:
            if h.attrs.get("format") != FILE_FORMAT or "done" not in h:
                return None
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h.attrs.items()}
            return attrs, np.asarray(h["done"][()], dtype=bool)
    except OSError:
        return None


def _read_file(path, allow_partial):
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no batch file at {str(path)!r}.")
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{str(path)!r} is not an HDF5 file: {exc}") from None
    with h:
        if h.attrs.get("format") != FILE_FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a fisherforecast batch file (format attribute "
                f"{h.attrs.get('format')!r})."
            )
        done = np.asarray(h["done"][()], dtype=bool)
        chunk_size = int(h.attrs["chunk_size"])
        if not done.all() and not allow_partial:
            missing = np.nonzero(~done)[0]
            raise ValueError(
                f"{str(path)!r} is incomplete: {missing.size} of {done.size} chunks are not "
                f"finished (first: {missing[:5].tolist()}). Rerun fisher_batch(..., "
                f"out={str(path)!r}) with the same inputs to resume, or load with "
                "allow_partial=True (unfinished items are flagged 'not computed')."
            )
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in h["names"][()])
        matrices = h["matrices"][()]
        codes = np.asarray(h["reason"][()], dtype=np.int8)
        cond = h["condition"][()]
        fiducials = {k: h["fiducials"][k][()] for k in h["fiducials"]} or None
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
        codes[k * chunk_size : (k + 1) * chunk_size] = NOT_COMPUTED
    return FisherBatch._build(matrices, names, fiducials, codes, cond, {}, meta)


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------
def fisher_batch(
    experiment,
    fiducials,
    *,
    params=None,
    chunk_size=None,
    devices=None,
    progress=True,
    out=None,
    client=None,
    mode="forward",
    design_batch=False,
    overwrite=False,
    memory_budget=None,
) -> FisherBatch:
    """Fisher matrices for a whole population of fiducials (or designs) at once.

    Evaluation is ``jax.jit(jax.vmap(...))`` of the same per-item function that
    :func:`ff.fisher` compiles, over chunks of items. The last chunk is padded to the chunk
    size, so a run compiles exactly once. One bad item never aborts the batch: it is
    flagged in ``.ok`` / ``.reason`` and the others carry on.

    **Arguments:**

    - `experiment`: an :class:`ff.Experiment`, or a list of independent experiments whose
      information adds (as in :func:`ff.fisher`).
    - `fiducials`: dict parameter name -> array of shape ``(B,)`` with one value per item.
      Scalars are broadcast to every item.
    - `params`: names of the parameters that vary (default: all of `fiducials`); the others
      are held at their per-item values.
    - `chunk_size`: items per compiled call. Default: picked from memory, see
      ``docs/batch.md`` (bytes per item ≈ output size × (P + 1) × 8 (16 for complex) × 4,
      within a quarter of the free memory, at most 64 MiB on CPU, an eighth of the free
      device memory on a GPU). Rounded up to a multiple of the number of devices.
    - `devices`: ``None`` (all local devices of JAX's default backend), an int ``n`` (the
      first ``n`` of them) or a list of ``jax.Device``. With several devices each chunk is
      sharded over them along the batch axis (a 1-D ``NamedSharding`` mesh).
    - `progress`: show a tqdm progress bar over chunks (never for a single chunk).
    - `out`: path of an HDF5 file to stream the chunks into. A rerun with the same inputs
      resumes: finished chunks are skipped. See ``docs/batch.md`` for the layout.
    - `client`: a ``dask.distributed.Client``; chunks then run as tasks on its workers
      (each on the worker's default device). Results are identical to a local run.
    - `mode`: ``"forward"`` (``jacfwd``, default) or ``"reverse"``.
    - `design_batch`: when ``True``, every leaf of the experiment's design has a leading
      batch axis (e.g. a grid of observing strategies), and `fiducials` may be scalars.
    - `overwrite`: replace an existing `out` file made from different inputs.
    - `memory_budget`: bytes for one chunk when picking the chunk size (default: see
      `chunk_size`).

    **Returns:** a :class:`FisherBatch`.

    **Raises:** `TypeError` / `ValueError` for malformed input (mismatched batch lengths,
    a design without a batch axis), `ParameterError` for unknown names, `FileExistsError`
    / `ValueError` when `out` holds a different batch. Problems of individual items never
    raise: they are flagged.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-t / p["tau"]),
    ...                     ff.Gaussian(sigma=0.1), design=jnp.linspace(0, 5, 20))
    >>> batch = ff.fisher_batch(exp, {"A": np.ones(3), "tau": np.array([1.0, 2.0, 3.0])},
    ...                         progress=False)
    >>> batch.matrices.shape, bool(batch.ok.all())
    ((3, 2, 2), True)
    >>> F = ff.fisher(exp, {"A": 1.0, "tau": 2.0}).matrix
    >>> bool(np.allclose(batch.matrices[1], F, rtol=1e-12))
    True
    ```
    """
    t0 = time.perf_counter()
    experiments = tuple(as_experiments(experiment))
    check_mode(mode)
    if not isinstance(design_batch, bool):
        raise TypeError(f"`design_batch` must be True or False; received {quote(design_batch)}.")
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True or False; received {quote(progress)}.")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise ValueError(
            f"`chunk_size` must be a positive integer or None; received {quote(chunk_size)}."
        )
    check_overwrite(overwrite)
    if out is not None and not isinstance(out, str | os.PathLike):
        raise TypeError(
            f"`out` must be a file path (str or pathlib.Path) or None; received {quote(out)}."
        )
    if memory_budget is not None and (
        isinstance(memory_budget, bool | np.bool_)
        or not isinstance(memory_budget, int | float | np.integer | np.floating)
        or not (math.isfinite(memory_budget) and memory_budget > 0)
    ):
        raise ValueError(
            f"`memory_budget` must be a positive finite number of bytes; received "
            f"{quote(memory_budget)}."
        )
    devices = _check_devices(devices)
    if client is not None and devices is not None:
        raise ValueError(
            "give either `client` (Dask workers, each on its own default device) or "
            "`devices` (local sharding), not both."
        )
    if devices is None and client is None:
        local = jax.local_devices()
        devices = local if len(local) > 1 else None  # several: shard over all of them
    n_design = _design_batch_size(experiments) if design_batch else None
    fids, B = _check_fiducials(fiducials, n_design, "design_batch=True: the design's batch axis")
    names = check_names(params, fids)
    n_dev = len(devices) if devices else 1
    label = "+".join(e.name for e in experiments if e.name) or None

    with float64():
        # Trace once for the output shapes: user errors (a parameter the model needs but
        # `fiducials` lacks, a bad output shape) surface here as exceptions, before any work.
        finite = np.nonzero(np.all(np.stack([np.isfinite(v) for v in fids.values()]), 0))[0]
        i0 = int(finite[0]) if finite.size else 0
        exps0 = (
            tuple(
                e.replace(design=jax.tree_util.tree_map(lambda x: np.asarray(x)[i0], e.design))
                for e in experiments
            )
            if design_batch
            else experiments
        )
        fid0 = {k: (v[i0] if np.isfinite(v[i0]) else np.float64(1.0)) for k, v in fids.items()}
        shapes = jax.eval_shape(_probe, exps0, fid0)
        if chunk_size is None:
            budget = memory_budget or _memory_budget(devices)
            chunk = _auto_chunk_size(_bytes_per_item(shapes, len(names)), budget, B, n_dev)
        else:
            chunk = _round_up(min(int(chunk_size), B), n_dev)

        # Trace the chunk kernel now, so that trace-time errors (an output that does not fit
        # the noise model, ...) surface before any file is written. The trace is cached.
        idx0 = np.arange(min(chunk, B))
        first = {k: np.where(np.isfinite(v[idx0]), v[idx0], fid0[k]) for k, v in fids.items()}
        exps_c, fids_c = _take(experiments, first, idx0, design_batch, chunk)
        jax.eval_shape(_chunk_kernel, exps_c, fids_c, names, mode, design_batch)

        fingerprint = _fingerprint(experiments, fids, names, mode, design_batch, B)
        store = None
        if out is not None:
            # An automatic chunk size may differ between runs: a resume adopts the file's.
            store = _H5Store(
                out,
                names=names,
                fiducials=fids,
                B=B,
                chunk_size=chunk,
                chunk_size_given=chunk_size is not None,
                fingerprint=fingerprint,
                label=label,
                overwrite=overwrite,
            )
            chunk = store.chunk_size
        n_chunks = math.ceil(B / chunk)
        done = store.done.copy() if store is not None else np.zeros(n_chunks, bool)
        todo = [k for k in range(n_chunks) if not done[k]]

        P = len(names)
        keep_in_memory = store is None
        if keep_in_memory:
            matrices = np.full((B, P, P), np.nan)
            codes = np.full(B, NOT_COMPUTED, dtype=np.int8)
            cond = np.full(B, np.nan)
        messages = {}

        def chunk_inputs(k):
            sl = slice(k * chunk, min((k + 1) * chunk, B))
            fid_k = {n: v[sl] for n, v in fids.items()}
            exps_k = experiments
            if design_batch:
                exps_k = tuple(
                    e.replace(
                        design=jax.tree_util.tree_map(lambda x, sl=sl: np.asarray(x)[sl], e.design)
                    )
                    for e in experiments
                )
            return exps_k, fid_k

        def record(k, result):
            F_k, codes_k, cond_k, msg_k = result
            start = k * chunk
            if store is not None:
                store.write(k, F_k, codes_k, cond_k)
            else:
                matrices[start : start + len(codes_k)] = F_k
                codes[start : start + len(codes_k)] = codes_k
                cond[start : start + len(codes_k)] = cond_k
            messages.update({start + i: m for i, m in msg_k.items()})

        bar = None
        if progress and len(todo) > 1:
            from tqdm import tqdm

            bar = tqdm(
                total=len(todo), unit="chunk", desc="fisher_batch", postfix={"items/chunk": chunk}
            )
        try:
            with _quiet_callback_errors():
                if client is not None:
                    _run_dask(
                        client, todo, chunk_inputs, record, names, mode, design_batch, chunk, bar
                    )
                else:
                    placement = _placement(devices)
                    if placement is None and not design_batch:
                        # Move the design and noise arrays to the device once, not per chunk.
                        experiments = jax.device_put(experiments)
                    launched = None  # (k, chunk): dispatched, not yet finished
                    for k in [*todo, None]:
                        if k is not None:
                            exps_k, fid_k = chunk_inputs(k)
                            nxt = (
                                k,
                                _Chunk(exps_k, fid_k, names, mode, design_batch, chunk, placement),
                            )
                        if launched is not None:
                            record(launched[0], _finish_chunk(launched[1]))
                            if bar is not None:
                                bar.update(1)
                        launched = nxt if k is not None else None
        finally:
            if bar is not None:
                bar.close()
            if store is not None:
                store.close()

    meta = {
        "experiment": label,
        "mode": mode,
        "chunk_size": chunk,
        "n_chunks": n_chunks,
        "chunks_computed": len(todo),
        "chunks_resumed": n_chunks - len(todo),
        "devices": [str(d) for d in devices] if devices else None,
        "dask": client is not None,
        "design_batch": design_batch,
        "wall_time_s": time.perf_counter() - t0,
        "path": str(out) if out is not None else None,
    }
    if store is not None:
        result = _read_file(out, allow_partial=False)
        meta["created"] = result.metadata.get("created")
        batch = FisherBatch._build(
            result._matrices, names, fids, result._codes, result._condition, messages, meta
        )
    else:
        batch = FisherBatch._build(matrices, names, fids, codes, cond, messages, meta)
    return batch


def _run_dask(client, todo, chunk_inputs, record, names, mode, design_batch, chunk, bar):
    try:
        from distributed import as_completed
    except ImportError:  # pragma: no cover - the client exists, so distributed does
        raise ImportError(
            "`client` needs dask.distributed: pip install 'fisherforecast[dask]'."
        ) from None
    futures = {}
    shared = None
    try:
        for k in todo:
            exps_k, fid_k = chunk_inputs(k)
            if not design_batch:
                if shared is None:  # send the experiment once, not once per task; a
                    # fresh key (hash=False): an earlier run's copy may still be releasing
                    shared = client.scatter([exps_k], broadcast=True, hash=False)[0]
                exps_k = shared
            fut = client.submit(
                _dask_chunk,
                exps_k,
                fid_k,
                names,
                mode,
                design_batch,
                chunk,
                pure=False,
                key=f"fisher_batch-chunk-{k}-{os.urandom(4).hex()}",
            )
            futures[fut] = k
        for fut in as_completed(list(futures)):
            record(futures[fut], fut.result())
            fut.release()
            if bar is not None:
                bar.update(1)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------
class FisherBatch:
    """Fisher matrices of a batch of items (sources, designs): stacked, named, immutable.

    Usually made by :func:`ff.fisher_batch`; it can also wrap any stack of matrices.

    **Arguments:**

    - `matrices`: array ``(B, P, P)``.
    - `names`: the ``P`` parameter names.
    - `fiducials`: optional dict name -> ``(B,)`` values (scalars broadcast).
    - `metadata`: optional dict.

    Items are classified on construction: ``.ok`` is ``True`` where the matrix is finite and
    invertible (the foundation's unit-diagonal rank test), and ``.reason`` says why not
    elsewhere (see ``REASONS``).

    **Conventions:** `sigma()` gives marginal 1-D 1σ errors ``sqrt(diag F⁻¹)`` per item,
    NaN where the item is not ``ok``.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> batch = ff.FisherBatch([[[2.0, 2.0], [2.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]]], ["a", "b"])
    >>> batch.ok.tolist(), np.round(batch.sigma()["a"], 6).tolist()
    ([True, False], [0.912871, nan])
    >>> str(batch.reason[1])
    'singular Fisher matrix (degenerate parameter combination)'
    ```
    """

    __slots__ = (
        "_cache",
        "_codes",
        "_condition",
        "_fiducials",
        "_matrices",
        "_messages",
        "_metadata",
        "_names",
    )

    #: Code -> meaning of `reason_codes`.
    REASONS = REASONS

    def __init__(self, matrices, names, fiducials=None, *, metadata=None):
        raw = np.asarray(matrices)
        if np.iscomplexobj(raw):
            raise TypeError(f"`matrices` must be real; received dtype {raw.dtype}.")
        M = np.array(raw, dtype=np.float64)
        if M.ndim != 3 or M.shape[1] != M.shape[2]:
            raise ValueError(f"`matrices` must have shape (B, P, P); received shape {M.shape}.")
        names = _check_batch_names(names, M.shape[1])
        M = 0.5 * (M + np.swapaxes(M, 1, 2))
        if fiducials is not None:
            fiducials, _ = _check_fiducials(fiducials, M.shape[0], "`matrices`")
        codes, cond = _classify(M, np.zeros(M.shape[0], np.int8))
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"`metadata` must be a dict; received {quote(metadata)}.")
        self._init(M, names, fiducials, codes, cond, {}, dict(metadata or {}))

    @classmethod
    def _build(cls, matrices, names, fiducials, codes, cond, messages, metadata):
        obj = object.__new__(cls)
        obj._init(
            np.asarray(matrices, dtype=np.float64),
            tuple(names),
            fiducials,
            np.asarray(codes, dtype=np.int8),
            np.asarray(cond, dtype=np.float64),
            dict(messages),
            dict(metadata),
        )
        return obj

    def _init(self, matrices, names, fiducials, codes, cond, messages, metadata):
        for arr in (matrices, codes, cond):
            arr.setflags(write=False)
        if fiducials is not None:
            fiducials = {k: np.asarray(v, dtype=np.float64) for k, v in fiducials.items()}
            for v in fiducials.values():
                v.setflags(write=False)
        for key, value in (
            ("_matrices", matrices),
            ("_names", names),
            ("_fiducials", fiducials),
            ("_codes", codes),
            ("_condition", cond),
            ("_messages", messages),
            ("_metadata", metadata),
            ("_cache", {}),
        ):
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("FisherBatch is immutable.")

    def __reduce__(self):  # pickling (Dask, multiprocessing) without __setattr__
        return (
            FisherBatch._build,
            (
                self._matrices,
                self._names,
                self._fiducials,
                self._codes,
                self._condition,
                self._messages,
                self._metadata,
            ),
        )

    # ----- attributes ----------------------------------------------------------------
    @property
    def matrices(self) -> np.ndarray:
        """``(B, P, P)`` numpy float64 (read-only); NaN for items that failed to evaluate."""
        return self._matrices

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def n_params(self) -> int:
        return len(self._names)

    @property
    def fiducials(self) -> dict[str, np.ndarray] | None:
        """Dict name -> ``(B,)`` fiducial values (every parameter, varied or held fixed)."""
        return dict(self._fiducials) if self._fiducials is not None else None

    @property
    def ok(self) -> np.ndarray:
        """``(B,)`` bool: the matrix is finite and invertible."""
        return self._codes == OK

    @property
    def reason_codes(self) -> np.ndarray:
        """``(B,)`` int8 failure codes; ``FisherBatch.REASONS[code]`` says what they mean."""
        return self._codes

    @property
    def reason(self) -> np.ndarray:
        """``(B,)`` array of strings: ``"ok"`` or why the item failed."""
        return np.asarray(REASONS, dtype=object)[self._codes]

    @property
    def condition_number(self) -> np.ndarray:
        """``(B,)`` condition numbers of the unit-diagonal matrices (inf: singular)."""
        return self._condition

    @property
    def messages(self) -> dict[int, str]:
        """Item index -> the error an item raised (``reason`` code 8); not saved to files."""
        return dict(self._messages)

    @property
    def metadata(self) -> dict:
        return dict(self._metadata)

    def __len__(self) -> int:
        return self._matrices.shape[0]

    def __repr__(self):
        return (
            f"FisherBatch({len(self)} items, names={list(self._names)}, "
            f"ok={int(self.ok.sum())}/{len(self)})"
        )

    # ----- inversion -----------------------------------------------------------------
    def covariance(self) -> np.ndarray:
        """``(B, P, P)`` covariances ``F⁻¹``, robustly inverted per item; NaN where not ok."""
        if "cov" not in self._cache:
            cov = _batched_covariance(self._matrices, self.ok)
            cov.setflags(write=False)
            self._cache["cov"] = cov
        return self._cache["cov"]

    def sigma(self) -> dict[str, np.ndarray]:
        """Marginal 1σ errors per item, dict name -> ``(B,)``; NaN where not ok."""
        if "cov" in self._cache:
            var = np.diagonal(self._cache["cov"], axis1=1, axis2=2)
        else:  # only the diagonal: no (B, P, P) array for 10⁶ items
            var = _batched_covariance(self._matrices, self.ok, diagonal_only=True)
        with np.errstate(invalid="ignore"):
            sig = np.sqrt(var)
        return {n: sig[:, i].copy() for i, n in enumerate(self._names)}

    # ----- items ----------------------------------------------------------------------
    def _index(self, i):
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"item index must be an integer; received {quote(i)}.")
        B = len(self)
        if not -B <= i < B:
            raise IndexError(f"item index {i} is out of range for a batch of {B} items.")
        return int(i) % B

    def select(self, i) -> FisherMatrix:
        """Item `i` as a :class:`ff.FisherMatrix` (its fiducial and fixed values attached).

        **Raises:** `FisherError` if the item's matrix could not be evaluated (NaN) or is
        not a valid Fisher matrix (e.g. not positive semi-definite).
        """
        i = self._index(i)
        code = int(self._codes[i])
        if not np.all(np.isfinite(self._matrices[i])):
            extra = f": {self._messages[i]}" if i in self._messages else ""
            raise FisherError(f"item {i} has no Fisher matrix: {REASONS[code]}{extra}.")
        fid = fixed = None
        if self._fiducials is not None:
            fid = {n: float(self._fiducials[n][i]) for n in self._names if n in self._fiducials}
            fid = fid if len(fid) == len(self._names) else None
            fixed = {k: float(v[i]) for k, v in self._fiducials.items() if k not in self._names}
        meta = {"batch_index": i, "ok": code == OK, "reason": REASONS[code]}
        if fixed:
            meta["fixed"] = fixed
        try:
            return FisherMatrix(
                self._matrices[i],
                self._names,
                fiducial=fid,
                name=self._metadata.get("experiment"),
                metadata=meta,
            )
        except ValueError as exc:  # e.g. not positive semi-definite
            raise FisherError(
                f"item {i} is not a valid Fisher matrix ({REASONS[code]}): {exc}"
            ) from None

    def subset(self, index) -> FisherBatch:
        """A new batch with the items `index` (boolean mask, integer array or slice)."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        fids = (
            {k: v[idx] for k, v in self._fiducials.items()} if self._fiducials is not None else None
        )
        msgs = {n: self._messages[int(j)] for n, j in enumerate(idx) if int(j) in self._messages}
        return FisherBatch._build(
            self._matrices[idx],
            self._names,
            fids,
            self._codes[idx],
            self._condition[idx],
            msgs,
            self._metadata,
        )

    @classmethod
    def concatenate(cls, batches) -> FisherBatch:
        """Join batches with the same parameter names (e.g. the pieces of an array job).

        Fiducials are kept where every batch has the same fiducial names.
        """
        batches = list(batches)
        if not batches or not all(isinstance(b, FisherBatch) for b in batches):
            raise TypeError(
                f"concatenate expects a non-empty list of FisherBatch; received {quote(batches)}."
            )
        names = batches[0].names
        bad = [b.names for b in batches if b.names != names]
        if bad:
            raise ValueError(
                f"cannot concatenate batches with different parameters: "
                f"{list(names)} and {list(bad[0])}."
            )
        keys = [set(b._fiducials) if b._fiducials is not None else None for b in batches]
        fids = None
        if keys[0] is not None and all(k == keys[0] for k in keys):
            fids = {
                k: np.concatenate([b._fiducials[k] for b in batches]) for k in batches[0]._fiducials
            }
        elif any(k is not None for k in keys):
            warnings.warn(
                "FisherBatch.concatenate: the batches do not all carry fiducials "
                "for the same names, so the result has none.",
                stacklevel=2,
            )
        offsets = np.cumsum([0] + [len(b) for b in batches])
        msgs = {
            int(o) + i: m
            for b, o in zip(batches, offsets, strict=False)
            for i, m in b._messages.items()
        }
        return FisherBatch._build(
            np.concatenate([b._matrices for b in batches]),
            names,
            fids,
            np.concatenate([b._codes for b in batches]),
            np.concatenate([b._condition for b in batches]),
            msgs,
            {
                "concatenated_from": len(batches),
                "experiment": batches[0]._metadata.get("experiment"),
            },
        )

    def failures(self) -> dict[str, np.ndarray]:
        """Reason -> indices of the items that failed for it."""
        return {
            REASONS[c]: np.nonzero(self._codes == c)[0] for c in np.unique(self._codes) if c != OK
        }

    # ----- algebra: combine, priors, fix, marginalise ------------------------------------
    #: NumPy must not broadcast ``array * batch`` into an object array of batches.
    __array_ufunc__ = None

    def _derive(
        self, matrices, names, fiducials, upstream, operation, messages=None, metadata=None
    ):
        """A new batch from new matrices; items that failed upstream keep their code.

        `matrices` must be a fresh array (it is modified in place). `upstream` is a ``(B,)``
        code array: non-zero where an input item had no usable matrix (it failed to
        evaluate, or its matrix is NaN or not positive semi-definite). Every other item is
        classified afresh, so a singular item can become ok once information is added.
        """
        M = np.asarray(matrices, dtype=np.float64)
        if np.any(upstream != OK):
            M[upstream != OK] = np.nan
        codes, cond = _classify(M, np.zeros(len(M), np.int8))
        codes = np.where(upstream != OK, upstream, codes).astype(np.int8)
        cond = np.where(upstream != OK, np.nan, cond)
        msgs = self._messages if messages is None else messages
        if metadata is None:
            # Run details (file path, timings, chunks) describe the source, not the result.
            metadata = {k: self._metadata[k] for k in ("experiment", "mode") if k in self._metadata}
            metadata["operations"] = [*self._metadata.get("operations", []), operation]
        return FisherBatch._build(M, names, fiducials, codes, cond, msgs, metadata)

    def _upstream(self):
        """Codes of the items whose matrix cannot take part in further algebra."""
        P = self.n_params
        finite = np.all(np.isfinite(self._matrices.reshape(len(self), P * P)), axis=1)
        keep = np.isin(self._codes, _UPSTREAM) | ~finite
        return np.where(keep, self._codes, OK).astype(np.int8)

    def _combine(self, first, second):
        """Item-wise ``first + second``; one of them is ``self``, the other a batch or a
        FisherMatrix broadcast to every item. Names: those of `first`, then new ones."""
        B = len(self)
        parts = []
        for x in (first, second):
            if isinstance(x, FisherMatrix):
                fid = (
                    {k: np.full(B, v) for k, v in x.fiducial.items()}
                    if x.fiducial is not None
                    else None
                )
                parts.append(
                    (
                        np.broadcast_to(x.matrix, (B, *x.matrix.shape)),
                        x.names,
                        fid,
                        np.zeros(B, np.int8),
                        {},
                        x.name,
                    )
                )
            else:
                parts.append(
                    (
                        x._matrices,
                        x._names,
                        x._fiducials,
                        x._upstream(),
                        x._messages,
                        x._metadata.get("experiment"),
                    )
                )
        names = parts[0][1] + tuple(n for n in parts[1][1] if n not in parts[0][1])
        P = len(names)
        M = np.zeros((B, P, P))
        for mats, nms, *_ in parts:
            idx = [names.index(n) for n in nms]
            if idx == list(range(idx[0], idx[0] + len(idx))):  # a block: add in place
                sl = slice(idx[0], idx[0] + len(idx))
                M[:, sl, sl] += mats
            else:
                ix = np.array(idx)
                M[:, ix[:, None], ix[None, :]] += mats
        up0, up1 = parts[0][3], parts[1][3]
        # Items that failed upstream on either side stay failed (NaN fiducials included).
        failed = (up0 != OK) | (up1 != OK)
        fids = _merge_batch_fiducials(parts[0][2], parts[1][2], failed)
        upstream = np.where(up0 != OK, up0, up1).astype(np.int8)
        messages = {**parts[1][4], **parts[0][4]}
        label = "+".join(str(p[5]) for p in parts if p[5]) or None
        mode = self._metadata.get("mode")
        meta = {"experiment": label, **({"mode": mode} if mode else {}), "operations": ["sum"]}
        return self._derive(M, names, fids, upstream, "sum", messages, meta)

    def __add__(self, other) -> FisherBatch:
        """Item-wise sum with another batch of the same length (e.g. a second detector
        observing the same sources), or with one :class:`ff.FisherMatrix` added to every
        item (an external constraint). Parameters are matched by name; the result has the
        union of the names, left operand first. Items that failed to evaluate in either
        input stay failed; the others are classified afresh.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> lisa = ff.FisherBatch([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]],
        ...                       ["a", "b"])
        >>> tianqin = ff.FisherBatch([[[0.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 3.0]]],
        ...                          ["a", "b"])
        >>> both = lisa + tianqin
        >>> lisa.ok.tolist(), both.ok.tolist()
        ([True, False], [True, True])
        >>> np.round(both.sigma()["b"], 6).tolist()
        [0.5, 0.57735]
        ```
        """
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self  # lets sum([b1, b2, ...]) work
        if isinstance(other, FisherBatch):
            if len(other) != len(self):
                raise ValueError(
                    f"cannot add batches of different lengths: {len(self)} and {len(other)} "
                    "items. Item i of one must be the same source/design as item i of the "
                    "other; use .subset(...) to align them first."
                )
            return self._combine(self, other)
        if isinstance(other, FisherMatrix):
            return self._combine(self, other)
        return NotImplemented

    def __radd__(self, other) -> FisherBatch:
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self
        if isinstance(other, FisherMatrix):
            return self._combine(other, self)
        return NotImplemented

    def __mul__(self, factor) -> FisherBatch:
        """Every matrix times a positive number, or item ``i`` times ``factor[i]`` for a
        ``(B,)`` array (e.g. each source's observing time over the one simulated).

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[4.0]], [[4.0]]], ["a"])
        >>> (batch * np.array([1.0, 4.0])).sigma()["a"].tolist()
        [0.5, 0.25]
        ```
        """
        if isinstance(factor, bool | np.bool_) or isinstance(factor, str):
            return NotImplemented
        try:
            f = np.asarray(factor)
        except Exception:  # any object numpy cannot take is not a factor
            return NotImplemented
        if f.dtype.kind not in "iuf" or f.shape not in ((), (len(self),)):
            if f.dtype.kind in "iuf":
                raise ValueError(
                    f"a FisherBatch can be scaled by a number or a ({len(self)},) array; "
                    f"received shape {f.shape}."
                )
            return NotImplemented
        f = f.astype(np.float64)
        bad = ~(np.isfinite(f) & (f > 0))
        if bad.any():
            i = int(np.argmax(bad))
            shown = repr(float(f)) if f.ndim == 0 else f"{float(f[i])!r} (item {i})"
            raise ValueError(
                f"a FisherBatch can be scaled by positive finite numbers; received {shown}."
            )
        scale = f if f.ndim == 0 else f[:, None, None]
        with np.errstate(invalid="ignore"):
            M = self._matrices * scale
        return self._derive(M, self._names, self._fiducials, self._upstream(), "scale")

    __rmul__ = __mul__

    def with_prior(self, sigmas: Mapping) -> FisherBatch:
        """Add independent Gaussian priors, ``F_ii += 1/σ_i²``, to every item.

        Each σ is a positive number or a ``(B,)`` array of them (one per item, e.g. a prior
        that scales with the source); ``inf`` adds nothing. Items that already failed are
        not checked and stay failed.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[4.0]], [[1.0]]], ["a"])
        >>> batch.with_prior({"a": 0.5}).matrices[:, 0, 0].tolist()
        [8.0, 5.0]
        >>> batch.with_prior({"a": np.array([1.0, np.inf])}).matrices[:, 0, 0].tolist()
        [5.0, 1.0]
        ```
        """
        if not isinstance(sigmas, Mapping):
            raise TypeError(f"with_prior expects a dict name -> sigma; received {quote(sigmas)}.")
        check_subset(list(sigmas), self._names, "with_prior(sigmas)")
        B = len(self)
        upstream = self._upstream()
        live = upstream == OK
        M = np.array(self._matrices)
        for n, value in sigmas.items():
            s = np.asarray(value) if not isinstance(value, bool) else np.asarray(object())
            if s.dtype.kind not in "iuf" or s.shape not in ((), (B,)):
                raise ValueError(
                    f"prior sigma for {n!r} must be a positive number or a ({B},) array of "
                    f"them; received {quote(value)}."
                )
            s = np.broadcast_to(s.astype(np.float64), (B,))
            with np.errstate(divide="ignore", over="ignore"):
                add = (1.0 / s) ** 2
            bad = live & ~((s > 0) & np.isfinite(add))
            if bad.any():
                i = int(np.argmax(bad))
                why = (
                    "so small that 1/σ² overflows"
                    if s[i] > 0
                    else "must be positive (inf for no prior)"
                )
                raise ValueError(
                    f"prior sigma for {n!r} {why}; received {float(s[i])!r} (item {i})."
                )
            k = self._names.index(n)
            M[:, k, k] += np.where(live, add, 0.0)
        return self._derive(M, self._names, self._fiducials, upstream, "with_prior")

    def fix(self, names) -> FisherBatch:
        """Hold `names` fixed at their fiducial values in every item (delete their rows and
        columns). Fixing one side of a degeneracy can turn singular items ok.

        ```python
        >>> import fisherforecast as ff
        >>> batch = ff.FisherBatch([[[1.0, 1.0], [1.0, 1.0]]], ["a", "b"])  # a + b only
        >>> batch.ok.tolist(), batch.fix("b").ok.tolist()
        ([False], [True])
        ```
        """
        names = check_subset(names, self._names, "fix(names)")
        keep = [n for n in self._names if n not in names]
        if not keep:
            raise ValueError("fix(names) would remove every parameter; keep at least one.")
        idx = np.array([self._names.index(n) for n in keep])
        M = self._matrices[:, idx[:, None], idx[None, :]]
        return self._derive(M, tuple(keep), self._fiducials, self._upstream(), "fix")

    def marginalize(self, keep) -> FisherBatch:
        """Marginalise every item over the parameters not in `keep`: the Fisher matrix of
        the kept parameters, ``F_kk − F_kd F_dd⁻¹ F_dk`` (the inverse of their covariance
        block).

        Each item is rank-checked first, as ``FisherMatrix.marginalize`` does: an item whose
        degenerate direction lies entirely within the marginalised parameters still has a
        well-defined marginal (computed with the pseudo-inverse of ``F_dd``); one whose
        degeneracy involves a kept parameter stays "singular", with a NaN matrix.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[2.0, 1.0], [1.0, 1.0]]], ["a", "b"])
        >>> batch.marginalize(["a"]).matrices.tolist()  # 2 - 1·1⁻¹·1
        [[[1.0]]]
        ```
        """
        keep = check_subset(keep, self._names, "marginalize(keep)")
        if not keep:
            raise ValueError("marginalize(keep) needs at least one parameter to keep.")
        drop = [n for n in self._names if n not in keep]
        k = np.array([self._names.index(n) for n in keep])
        upstream = self._upstream()
        M = np.array(self._matrices[:, k[:, None], k[None, :]])
        if drop:
            d = np.array([self._names.index(n) for n in drop])
            ok = self.ok
            # Full-rank items: the Schur complement, vectorised (F_dd is then invertible).
            Fkd = self._matrices[:, k[:, None], d[None, :]]
            inv = _batched_covariance(self._matrices[:, d[:, None], d[None, :]], ok)
            with np.errstate(invalid="ignore"):
                M = M - Fkd @ inv @ np.swapaxes(Fkd, 1, 2)
            M = 0.5 * (M + np.swapaxes(M, 1, 2))
            # Rank-deficient items (rare): the foundation's rank-aware marginal, one by one.
            k_list, d_list = k.tolist(), d.tolist()
            for i in np.nonzero(~ok & (upstream == OK))[0]:
                fid = None
                if self._fiducials is not None and all(n in self._fiducials for n in self._names):
                    fid = {n: float(self._fiducials[n][i]) for n in self._names}
                try:
                    M[i] = schur_marginal(self._matrices[i], k_list, d_list, self._names, fid)
                except (SingularFisherError, ValueError):
                    M[i] = np.nan
                    upstream[i] = self._codes[i]
        return self._derive(M, tuple(keep), self._fiducials, upstream, "marginalize")

    # ----- reports ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-Python summary: counts, failures and quantiles of the marginal errors."""
        sig = self.sigma()
        quant = {}
        for n in self._names:
            v = sig[n][np.isfinite(sig[n])]
            quant[n] = {q: float(np.quantile(v, q)) for q in (0.05, 0.5, 0.95)} if v.size else None
        return {
            "n_items": len(self),
            "n_ok": int(self.ok.sum()),
            "names": list(self._names),
            "failures": {k: v.tolist() for k, v in self.failures().items()},
            "sigma_quantiles": quant,
            "metadata": self.metadata,
        }

    def summary(self) -> str:
        """A table of marginal-error quantiles over the ok items, and the failures."""
        d = self.to_dict()
        width = max([len(n) for n in self._names] + [9])
        rows = [
            f"FisherBatch: {d['n_items']} items, {self.n_params} parameters, {d['n_ok']} ok",
            f"{'parameter':<{width}}  {'sigma 5%':>12}  {'median':>12}  {'95%':>12}",
            "-" * (width + 42),
        ]
        for n in self._names:
            q = d["sigma_quantiles"][n]
            if q is None:
                rows.append(f"{n:<{width}}  {'-':>12}  {'-':>12}  {'-':>12}")
            else:
                rows.append(f"{n:<{width}}  {q[0.05]:>12.4g}  {q[0.5]:>12.4g}  {q[0.95]:>12.4g}")
        for reason, idx in self.failures().items():
            rows.append(f"failed ({reason}): {len(idx)} items, e.g. {idx[:5].tolist()}")
        return "\n".join(rows)

    def plot(self, param, x=None, *, ax=None, relative=False, **scatter_kwargs):
        """Scatter the marginal σ of `param` against `x` (log-log), over the ok items.

        `x` is a fiducial name or a ``(B,)`` array (default: the item index). With
        ``relative=True`` the y axis is ``σ / |fiducial|``. Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt

        if param not in self._names:
            raise KeyError(f"plot: {param!r} is not a parameter; names: {list(self._names)}.")
        y = self.sigma()[param]
        ylabel = rf"$\sigma({param})$"
        if relative:
            y = y / np.abs(self._fiducials[param])
            ylabel = rf"$\sigma({param}) / |{param}|$"
        if x is None:
            xs, xlabel = np.arange(len(self), dtype=float), "item"
        elif isinstance(x, str):
            if self._fiducials is None or x not in self._fiducials:
                raise KeyError(f"plot: {x!r} is not a fiducial name.")
            xs, xlabel = self._fiducials[x], x
        else:
            xs, xlabel = np.asarray(x, dtype=float), "x"
            if xs.shape != (len(self),):
                raise ValueError(f"plot: `x` must have shape ({len(self)},); received {xs.shape}.")
        if ax is None:
            _, ax = plt.subplots()
        ok = self.ok & np.isfinite(y)
        ax.scatter(xs[ok], y[ok], **{"s": 4, **scatter_kwargs})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return ax

    # ----- I/O -------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> None:
        """Save to HDF5 atomically, in the layout :func:`fisher_batch` streams (all done).

        Refuses to overwrite an existing file unless ``overwrite=True``.
        """
        from ._io import atomic_path

        B = len(self)
        if B == 0:
            raise ValueError("cannot save an empty FisherBatch (0 items).")
        chunk = int(self._metadata.get("chunk_size") or min(B, 4096))
        n_chunks = math.ceil(B / chunk)
        # A chunk with items never computed (a partial load) is saved as unfinished.
        pad = np.full(n_chunks * chunk, OK, np.int8)
        pad[:B] = self._codes
        done = ~np.any(pad.reshape(n_chunks, chunk) == NOT_COMPUTED, axis=1)
        fids = self._fiducials or {}
        fp = {
            "names": json.dumps(list(self._names)),
            "fiducial_names": json.dumps(list(fids)),
            "batch_size": B,
            "mode": str(self._metadata.get("mode") or ""),
        }
        data = {
            "matrices": self._matrices,
            "ok": self.ok,
            "reason": self._codes,
            "condition": self._condition,
        }
        with atomic_path(path, overwrite) as tmp:
            _create_file(
                tmp,
                names=self._names,
                fiducials=fids,
                B=B,
                chunk_size=chunk,
                fingerprint=fp,
                label=self._metadata.get("experiment"),
                done=done,
                data=data,
            )

    @classmethod
    def load(cls, path, allow_partial: bool = False) -> FisherBatch:
        """Load a batch written by :meth:`save` or streamed by ``fisher_batch(out=...)``.

        An unfinished streaming file raises unless ``allow_partial=True``; its unfinished
        items are then flagged ``"not computed"``.

        ```python
        >>> import os, tempfile, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[2.0, 0.0], [0.0, 8.0]]], ["a", "b"])
        >>> path = os.path.join(tempfile.mkdtemp(), "batch.h5")
        >>> batch.save(path)
        >>> ff.FisherBatch.load(path).sigma()["b"].tolist()
        [0.3535533905932738]
        ```
        """
        return _read_file(path, allow_partial)


def _merge_batch_fiducials(a, b, skip):
    """Union of two fiducial dicts of ``(B,)`` arrays; shared names must agree per item,
    except on the items `skip` (failed items, whose values may be NaN)."""
    if a is None or b is None:
        return a if b is None else b
    merged = dict(a)
    for k, v in b.items():
        if k in merged:
            same = np.isclose(merged[k], v, rtol=1e-9, atol=1e-300, equal_nan=True) | skip
            if not same.all():
                i = int(np.argmin(same))
                raise ValueError(
                    f"cannot combine batches evaluated at different fiducials: {k!r} of item "
                    f"{i} is {float(merged[k][i])!r} in one and {float(v[i])!r} in the other. "
                    "Item i of each must be the same source; for a prior that does not share "
                    "the fiducials, use .with_prior(...)."
                )
        else:
            merged[k] = v
    return merged


def _check_batch_names(names, P):
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    if any(not isinstance(n, str) or not n for n in names):
        raise TypeError(f"`names` must be non-empty strings; received {list(names)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`names` has duplicates: {list(names)}.")
    if len(names) != P:
        raise ValueError(f"`names` has {len(names)} entries but the matrices are {P} × {P}.")
    return names
