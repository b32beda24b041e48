"""The public entry point :func:`fisher_batch`: plan, run the chunks locally or on Dask, collect."""

from __future__ import annotations

import math
import os
import time

import jax
import numpy as np

from .._checks import as_experiments, check_mode, check_names, check_overwrite
from .._errors import quote
from .._x64 import float64
from .chunk import Chunk, dask_chunk, finish_chunk, placement, quiet_callback_errors
from .container import FisherBatch
from .kernel import chunk_kernel, probe, take
from .plan import (
    auto_chunk_size,
    bytes_per_item,
    check_devices,
    check_fiducials,
    default_memory_budget,
    design_batch_size,
    round_up,
)
from .reasons import (
    NOT_COMPUTED,
)
from .store import H5Store, input_fingerprint, read_file


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
    devices = check_devices(devices)
    if client is not None and devices is not None:
        raise ValueError(
            "give either `client` (Dask workers, each on its own default device) or "
            "`devices` (local sharding), not both."
        )
    if devices is None and client is None:
        local = jax.local_devices()
        devices = local if len(local) > 1 else None  # several: shard over all of them
    n_design = design_batch_size(experiments) if design_batch else None
    fids, B = check_fiducials(fiducials, n_design, "design_batch=True: the design's batch axis")
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
        shapes = jax.eval_shape(probe, exps0, fid0)
        if chunk_size is None:
            budget = memory_budget or default_memory_budget(devices)
            chunk = auto_chunk_size(bytes_per_item(shapes, len(names)), budget, B, n_dev)
        else:
            chunk = round_up(min(int(chunk_size), B), n_dev)

        # Trace the chunk kernel now, so that trace-time errors (an output that does not fit
        # the noise model, ...) surface before any file is written. The trace is cached.
        idx0 = np.arange(min(chunk, B))
        first = {k: np.where(np.isfinite(v[idx0]), v[idx0], fid0[k]) for k, v in fids.items()}
        exps_c, fids_c = take(experiments, first, idx0, design_batch, chunk)
        jax.eval_shape(chunk_kernel, exps_c, fids_c, names, mode, design_batch)

        fingerprint = input_fingerprint(experiments, fids, names, mode, design_batch, B)
        store = None
        if out is not None:
            # An automatic chunk size may differ between runs: a resume adopts the file's.
            store = H5Store(
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
            with quiet_callback_errors():
                if client is not None:
                    run_dask(
                        client, todo, chunk_inputs, record, names, mode, design_batch, chunk, bar
                    )
                else:
                    place = placement(devices)
                    if place is None and not design_batch:
                        # Move the design and noise arrays to the device once, not per chunk.
                        experiments = jax.device_put(experiments)
                    launched = None  # (k, chunk): dispatched, not yet finished
                    for k in [*todo, None]:
                        if k is not None:
                            exps_k, fid_k = chunk_inputs(k)
                            nxt = (
                                k,
                                Chunk(exps_k, fid_k, names, mode, design_batch, chunk, place),
                            )
                        if launched is not None:
                            record(launched[0], finish_chunk(launched[1]))
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
        result = FisherBatch._build(*read_file(out, allow_partial=False))
        meta["created"] = result.metadata.get("created")
        batch = FisherBatch._build(
            result._matrices, names, fids, result._codes, result._condition, messages, meta
        )
    else:
        batch = FisherBatch._build(matrices, names, fids, codes, cond, messages, meta)
    return batch


def run_dask(client, todo, chunk_inputs, record, names, mode, design_batch, chunk, bar):
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
                dask_chunk,
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
