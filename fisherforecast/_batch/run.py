"""The public entry point :func:`fisher_batch`: plan, run the chunks (locally or on Dask),
collect them (in memory or in the HDF5 store) into a :class:`FisherBatch`."""

from __future__ import annotations

import time

import numpy as np

from .._checks import as_experiments, check_mode
from .._errors import quote
from .._x64 import float64
from .chunk import quiet_callback_errors
from .container import FisherBatch, assemble_batch
from .execute import run_dask, run_local
from .plan import check_run_options, make_plan, run_devices
from .reasons import Reason
from .store import H5Store, input_fingerprint, read_file


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
    resume=None,
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
    - `resume`: what to do with an existing `out` file started from the same inputs.
      ``None`` (default): resume when the model's fingerprint by value is complete and
      matches; a model that cannot be fingerprinted by value (a callable object, an opaque
      closure value) then raises. ``True``: resume even then (you vouch for the model).
      ``False``: never resume (with `overwrite` the file is started again).

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
    if resume is not None and not isinstance(resume, bool):
        raise TypeError(f"`resume` must be None, True or False; received {quote(resume)}.")
    check_run_options(
        design_batch=design_batch,
        progress=progress,
        chunk_size=chunk_size,
        overwrite=overwrite,
        out=out,
        memory_budget=memory_budget,
    )
    devices = run_devices(devices, client)
    with float64():
        plan = make_plan(
            experiments,
            fiducials,
            params,
            mode=mode,
            design_batch=design_batch,
            devices=devices,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )
        store = None
        if out is not None:
            store = open_store(
                out,
                plan,
                chunk_size_given=chunk_size is not None,
                overwrite=overwrite,
                resume=resume,
            )
            plan = plan._replace(chunk_size=store.chunk_size)  # a resume adopts the file's
        done = store.done.copy() if store is not None else np.zeros(plan.n_chunks, bool)
        todo = [k for k in range(plan.n_chunks) if not done[k]]
        collected = Collector(plan, store)
        bar = progress_bar(len(todo), plan.chunk_size) if progress else None
        try:
            with quiet_callback_errors():
                if client is not None:
                    run_dask(client, plan, todo, collected.record, bar)
                else:
                    run_local(plan, todo, collected.record, bar)
        finally:
            if bar is not None:
                bar.close()
            if store is not None:
                store.close()
    meta = {
        "experiment": plan.label,
        "mode": mode,
        "chunk_size": plan.chunk_size,
        "n_chunks": plan.n_chunks,
        "chunks_computed": len(todo),
        "chunks_resumed": plan.n_chunks - len(todo),
        "devices": [str(d) for d in plan.devices] if plan.devices else None,
        "dask": client is not None,
        "design_batch": design_batch,
        "wall_time_s": time.perf_counter() - t0,
        "path": str(out) if out is not None else None,
    }
    return collected.batch(meta)


def open_store(out, plan, *, chunk_size_given, overwrite, resume) -> H5Store:
    """The output file: resumed when it holds the same inputs, else created."""
    fingerprint, opaque = input_fingerprint(
        plan.experiments, plan.fiducials, plan.names, plan.mode, plan.design_batch, plan.B
    )
    return H5Store(
        out,
        names=plan.names,
        fiducials=plan.fiducials,
        B=plan.B,
        chunk_size=plan.chunk_size,
        chunk_size_given=chunk_size_given,
        fingerprint=fingerprint,
        label=plan.label,
        overwrite=overwrite,
        opaque=opaque,
        resume=resume,
    )


def progress_bar(n_todo, chunk_size):
    """A tqdm bar over chunks, or ``None`` for a single chunk."""
    if n_todo <= 1:
        return None
    from tqdm import tqdm

    postfix = {"items/chunk": chunk_size}
    return tqdm(total=n_todo, unit="chunk", desc="fisher_batch", postfix=postfix)


class Collector:
    """Gathers finished chunks: in memory, or written to the store as they come."""

    def __init__(self, plan, store=None):
        self.plan, self.store, self.messages = plan, store, {}
        if store is None:
            P = len(plan.names)
            self.matrices = np.full((plan.B, P, P), np.nan)
            self.codes = np.full(plan.B, Reason.NOT_COMPUTED, dtype=np.int8)
            self.cond = np.full(plan.B, np.nan)

    def record(self, k, result):
        """Keep chunk `k`'s :class:`ChunkResult`."""
        start = k * self.plan.chunk_size
        if self.store is not None:
            self.store.write(k, result.matrices, result.codes, result.condition)
        else:
            sl = slice(start, start + len(result.codes))
            self.matrices[sl] = result.matrices
            self.codes[sl] = result.codes
            self.cond[sl] = result.condition
        self.messages.update({start + i: m for i, m in result.messages.items()})

    def batch(self, meta) -> FisherBatch:
        """The :class:`FisherBatch` of the run (read back from the file when there is one)."""
        names, fiducials = self.plan.names, self.plan.fiducials
        if self.store is None:
            return assemble_batch(
                self.matrices, names, fiducials, self.codes, self.cond, self.messages, meta
            )
        stored = read_file(meta["path"], allow_partial=False)
        meta = {**meta, "created": stored.metadata.get("created")}
        messages = {**stored.messages, **self.messages}
        return assemble_batch(
            stored.matrices, names, fiducials, stored.codes, stored.condition, messages, meta
        )
