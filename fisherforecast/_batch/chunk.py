"""One chunk: pad, place, evaluate, isolate failures."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import NamedTuple

import jax
import numpy as np

from .._linalg import classify
from .._x64 import float64
from .kernel import chunk_kernel, take
from .reasons import Reason


def placement(devices):
    """A function placing a chunk's arrays on `devices` (``None``: JAX's default)."""
    if devices is None:
        return None
    if len(devices) == 1:
        device = devices[0]

        def place_one(experiments, fids, design_batch):
            return jax.device_put(experiments, device), jax.device_put(fids, device)

        return place_one
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


class ChunkResult(NamedTuple):
    """A finished chunk: its ``n`` items' matrices, failure codes (see ``Reason``) and
    scaled condition numbers, and ``messages``: item index within the chunk -> the error
    it raised."""

    matrices: np.ndarray
    codes: np.ndarray
    condition: np.ndarray
    messages: dict


class Chunk:
    """One chunk of ``n <= chunk_size`` items, evaluated in two steps.

    ``Chunk(...)`` dispatches the compiled kernel (asynchronously: JAX returns at once), and
    :func:`finish_chunk` waits for the result, isolates runtime errors and classifies the
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
        self.codes = np.where(good, Reason.OK, Reason.BAD_FIDUCIAL).astype(np.int8)
        self.todo = np.nonzero(good)[0]
        self.pending = self.error = None
        if self.todo.size:
            try:
                self.pending = self.dispatch(self.todo)
            except jax.errors.JaxRuntimeError as exc:  # some backends raise at dispatch
                self.error = exc

    def dispatch(self, idx):
        experiments, names, mode, design_batch, chunk_size, placement = self.args
        exps, fids = take(experiments, self.fiducials, idx, design_batch, chunk_size)
        if placement is not None:
            exps, fids = placement(exps, fids, design_batch)
        return chunk_kernel(exps, fids, names, mode, design_batch)

    def fetch(self, idx, pending):
        F_c, codes_c = pending
        self.F[idx] = np.asarray(F_c, dtype=np.float64)[: len(idx)]
        self.codes[idx] = np.asarray(codes_c)[: len(idx)]


def finish_chunk(chunk) -> ChunkResult:
    """Wait for a dispatched chunk, isolate the items that raised, classify the matrices."""
    messages = {}

    def isolate(idx):
        # A runtime error (equinox.error_if, a solver that throws) fails the whole compiled
        # chunk; bisect to find the items that raise, reusing the same compiled chunk.
        try:
            chunk.fetch(idx, chunk.dispatch(idx))
        except jax.errors.JaxRuntimeError as exc:
            raise_if_out_of_memory(exc, chunk)
            if len(idx) == 1:
                chunk.codes[idx] = Reason.ERROR
                messages[int(idx[0])] = error_message(exc)
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
            raise_if_out_of_memory(exc, chunk)
            isolate(chunk.todo)
        chunk.pending = chunk.error = None
    codes, cond = classify(chunk.F, chunk.codes)
    return ChunkResult(chunk.F, codes, cond, messages)


@contextlib.contextmanager
def quiet_callback_errors():
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


def raise_if_out_of_memory(exc, chunk):
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


def compute_chunk(experiments, fiducials, names, mode, design_batch, chunk_size, placement=None):
    """Evaluate one chunk synchronously (Dask tasks); see :class:`Chunk`."""
    return finish_chunk(
        Chunk(experiments, fiducials, names, mode, design_batch, chunk_size, placement)
    )


def error_message(exc):
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


def dask_chunk(experiments, fiducials, names, mode, design_batch, chunk_size):
    """Dask task: one chunk on the worker's default device (module level: picklable)."""
    with float64():
        return compute_chunk(experiments, fiducials, names, mode, design_batch, chunk_size)
