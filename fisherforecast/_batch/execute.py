"""Running the chunks of a plan: locally (pipelined, one chunk in flight while the previous
one is collected) or as Dask tasks. Both hand each finished chunk to ``record(k, result)``
with ``result`` the :class:`ChunkResult` of :func:`finish_chunk`."""

from __future__ import annotations

import os

import jax

from .chunk import Chunk, dask_chunk, finish_chunk, placement


def run_local(plan, todo, record, bar=None):
    """Evaluate the chunks `todo` on this process's devices. Call under float64.

    Chunk ``k + 1`` is dispatched (asynchronously) before chunk ``k`` is finished, so the
    host work of one chunk overlaps the device work of the next.
    """
    place = placement(plan.devices)
    experiments = plan.experiments
    if place is None and not plan.design_batch:
        # Move the design and noise arrays to the device once, not per chunk.
        experiments = jax.device_put(experiments)
    plan = plan._replace(experiments=experiments)
    launched = None  # (k, chunk): dispatched, not yet finished
    for k in [*todo, None]:
        nxt = None
        if k is not None:
            exps_k, fid_k = plan.chunk_inputs(k)
            args = (plan.names, plan.mode, plan.design_batch, plan.chunk_size, place)
            nxt = (k, Chunk(exps_k, fid_k, *args))
        if launched is not None:
            record(launched[0], finish_chunk(launched[1]))
            if bar is not None:
                bar.update(1)
        launched = nxt


def run_dask(client, plan, todo, record, bar=None):
    """Evaluate the chunks `todo` as tasks on the workers of a ``dask.distributed.Client``
    (each on the worker's default device)."""
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
            exps_k, fid_k = plan.chunk_inputs(k)
            if not plan.design_batch:
                if shared is None:  # send the experiment once, not once per task; a
                    # fresh key (hash=False): an earlier run's copy may still be releasing
                    shared = client.scatter([exps_k], broadcast=True, hash=False)[0]
                exps_k = shared
            fut = client.submit(
                dask_chunk,
                exps_k,
                fid_k,
                plan.names,
                plan.mode,
                plan.design_batch,
                plan.chunk_size,
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
