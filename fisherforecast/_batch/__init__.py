"""

Modules: ``reasons`` (failure codes), ``kernel`` (the compiled chunk kernel), ``chunk``
(evaluating one chunk, failures isolated), ``plan`` (argument checks and chunk sizes),
``store`` (the resumable HDF5 file), ``run`` (:func:`fisher_batch`), ``container`` and
``algebra`` (:class:`FisherBatch`).

Modules: ``reasons`` (failure codes), ``kernel`` (the compiled chunk kernel), ``chunk``
(evaluating one chunk, failures isolated), ``plan`` (argument checks and chunk sizes),
``store`` (the resumable HDF5 file), ``run`` (:func:`fisher_batch`), ``container`` and
``algebra`` (:class:`FisherBatch`).
"""
