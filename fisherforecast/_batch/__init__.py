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

The result is a :class:`FisherBatch`: stacked matrices, each item classified, with vectorised
marginal errors and algebra (sums, priors, fixing, marginalising), all delegated to the
batched kernels of ``_linalg`` (unit-diagonal rescaling, one rank rule, Cholesky with an
eigendecomposition fallback, rank-aware Schur complements).

Modules, in the order of a run:

* ``plan``: argument checks, the population, the chunk size (:class:`plan.Plan`);
* ``kernel``: the compiled, vmapped chunk kernel over ``_engine.evaluate``;
* ``chunk``: one chunk dispatched, fetched, failures isolated and classified;
* ``execute``: the chunks run locally (pipelined) or as Dask tasks;
* ``store``: the resumable HDF5 file (atomic per chunk, input fingerprint);
* ``run``: :func:`fisher_batch`, which ties these together and collects the result;
* ``container`` and ``algebra``: :class:`FisherBatch`;
* ``reasons``: :class:`reasons.Reason`, the failure codes and their messages.
"""
