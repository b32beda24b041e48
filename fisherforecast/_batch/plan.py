"""The run plan of :func:`fisher_batch`: argument checks, the population, chunk sizes."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_names, check_overwrite
from .._errors import InputError, quote
from .kernel import chunk_kernel, probe, take

#: Memory per item is estimated as ``output size × (P + 1) × bytes per value × this factor``
#: (model output, P Jacobian columns, and the temporaries of forward-mode autodiff).
BYTES_FACTOR = 4
#: Largest automatic chunk size.
MAX_CHUNK = 8192
#: Default memory budget for one chunk: this fraction of the free memory (host RAM on CPU,
#: device memory on an accelerator), capped on CPU at ``CPU_BUDGET_CAP`` bytes.
MEMORY_FRACTION = 0.25
CPU_BUDGET_CAP = 64 * 2**20


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------
def design_batch_size(experiments):
    sizes = set()
    for e in experiments:
        leaves = jax.tree_util.tree_leaves_with_path(e.design)
        if e.design is None or not leaves:
            raise InputError(
                f"design_batch=True needs every experiment's design to be a pytree of arrays "
                f"with a leading batch axis; experiment {e.name!r} has design "
                f"{quote(e.design)}."
            )
        for path, leaf in leaves:
            shape = np.shape(leaf)
            if len(shape) == 0:
                raise InputError(
                    f"design_batch=True: design leaf {jax.tree_util.keystr(path) or '<root>'} "
                    f"of experiment {e.name!r} is a scalar; every leaf needs a leading batch "
                    "axis (one entry per design)."
                )
            sizes.add(shape[0])
    if len(sizes) != 1:
        raise InputError(
            f"design_batch=True: the design leaves have different leading (batch) lengths "
            f"{sorted(sizes)}; they must all equal the number of designs."
        )
    return sizes.pop()


def check_fiducials(fiducials, n_items=None, source=None):
    """Validate a dict name -> scalar or 1-D array; return name -> (B,) float64, and B.

    `n_items` fixes ``B`` (it comes from `source`, e.g. the design's batch axis).
    """
    if not isinstance(fiducials, Mapping):
        raise TypeError(
            "`fiducials` must be a dict of parameter name -> array with one value per item; "
            f"received {quote(fiducials)}."
        )
    if not fiducials:
        raise InputError("`fiducials` is empty: give at least one parameter.")
    arrays, lengths = {}, {}
    for name, value in fiducials.items():
        if not isinstance(name, str):
            raise TypeError(f"`fiducials` keys must be strings; received key {name!r}.")
        arr = np.asarray(value)
        # As ff.fisher (_checks.check_fiducial): numbers only, so True/False are refused.
        if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"fiducials[{name!r}] must be real numbers; received {quote(value)}.")
        if arr.ndim > 1:
            raise InputError(
                f"fiducials[{name!r}] must be a scalar or a 1-D array with one value per item; "
                f"received shape {arr.shape}. Split vector parameters into named scalars."
            )
        arrays[name] = np.asarray(arr, dtype=np.float64)  # no copy yet: one below
        if arr.ndim == 1:
            lengths[name] = arr.shape[0]
    sizes = set(lengths.values())
    if len(sizes) > 1:
        raise InputError(
            f"`fiducials` arrays have different lengths {lengths}; every array needs one value "
            "per item (scalars are broadcast)."
        )
    if n_items is not None:
        if sizes and sizes != {n_items}:
            raise InputError(
                f"{source} has {n_items} items but the `fiducials` arrays have length "
                f"{sizes.pop()}; give one value per item, or scalars."
            )
        B = n_items
    else:
        B = sizes.pop() if sizes else 1
    if B == 0:
        raise InputError("`fiducials` arrays are empty: the batch has no items.")
    out = {}
    for name, arr in arrays.items():
        full = np.array(np.broadcast_to(arr, (B,)), dtype=np.float64)
        full.setflags(write=False)
        out[name] = full
    return out, B


def check_devices(devices):
    if devices is None:
        return None
    if isinstance(devices, int) and not isinstance(devices, bool):
        available = jax.local_devices()
        if not 1 <= devices <= len(available):
            raise InputError(
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
            raise InputError(f"`devices` lists a device more than once: {list(devices)}.")
        return list(devices)
    raise TypeError(
        "`devices` must be None (all local devices), an int (the first n local devices), "
        f"a jax.Device or a list of them; received {quote(devices)}."
    )


def default_memory_budget(devices):
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


def bytes_per_item(out_shapes, P):
    total = 0
    for s in out_shapes:
        n = max(int(np.prod(s.shape)), 1)
        itemsize = 16 if jnp.issubdtype(s.dtype, jnp.complexfloating) else 8
        total += n * (P + 1) * itemsize * BYTES_FACTOR
    return total + P * P * 8 * BYTES_FACTOR


def auto_chunk_size(bytes_per_item, budget, B, n_devices):
    """The largest chunk the budget allows (at most ``MAX_CHUNK``), then evened out over the
    chunks needed, so the padded last chunk wastes little (10⁴ items with a cap of 8192:
    two chunks of 5000, not 8192 + 1808 padded to 8192). The size is a multiple of the
    number of devices, so that every device gets the same share of a chunk.

    ```python
    >>> from fisherforecast._batch.plan import auto_chunk_size
    >>> auto_chunk_size(bytes_per_item=1, budget=8192, B=10_000, n_devices=1)
    5000
    >>> auto_chunk_size(bytes_per_item=1000, budget=10_000, B=41, n_devices=1)  # 5 × 9
    9
    ```
    """
    cap = int(max(1, min(budget // max(bytes_per_item, 1), MAX_CHUNK)))
    n_chunks = math.ceil(max(B, 1) / cap)
    size = math.ceil(max(B, 1) / n_chunks)
    return round_up(size, n_devices)


def round_up(n, k):
    return int(math.ceil(n / k) * k)


# ---------------------------------------------------------------------------------------
# The run plan
# ---------------------------------------------------------------------------------------
class Plan(NamedTuple):
    """What a batch run computes and how it is cut into chunks (validated)."""

    experiments: tuple
    fiducials: dict  # name -> (B,) float64, read-only
    names: tuple
    mode: str
    design_batch: bool
    B: int
    chunk_size: int  # items per compiled call (the last chunk is padded to it)
    devices: list | None  # None: JAX's default device (or the Dask workers')
    label: str | None

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.B / self.chunk_size)

    def chunk_slice(self, k) -> slice:
        return slice(k * self.chunk_size, min((k + 1) * self.chunk_size, self.B))

    def chunk_inputs(self, k):
        """``(experiments, fiducials)`` of chunk `k` (designs sliced too with design_batch)."""
        sl = self.chunk_slice(k)
        fid_k = {n: v[sl] for n, v in self.fiducials.items()}
        exps_k = self.experiments
        if self.design_batch:
            exps_k = tuple(
                e.replace(design=jax.tree_util.tree_map(lambda x: np.asarray(x)[sl], e.design))
                for e in self.experiments
            )
        return exps_k, fid_k


def check_run_options(*, design_batch, progress, chunk_size, overwrite, out, memory_budget):
    """Type and range checks of the flags of :func:`fisher_batch`."""
    if not isinstance(design_batch, bool):
        raise TypeError(f"`design_batch` must be True or False; received {quote(design_batch)}.")
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True or False; received {quote(progress)}.")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise InputError(
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
        raise InputError(
            f"`memory_budget` must be a positive finite number of bytes; received "
            f"{quote(memory_budget)}."
        )


def run_devices(devices, client):
    """The devices to shard each chunk over (``None``: one default device, or Dask)."""
    devices = check_devices(devices)
    if client is not None and devices is not None:
        raise InputError(
            "give either `client` (Dask workers, each on its own default device) or "
            "`devices` (local sharding), not both."
        )
    if devices is None and client is None:
        local = jax.local_devices()
        devices = local if len(local) > 1 else None  # several: shard over all of them
    return devices


def make_plan(
    experiments, fiducials, params, *, mode, design_batch, devices, chunk_size, memory_budget
) -> Plan:
    """Validate the population, trace the model and the chunk kernel once (so that user
    errors surface before any work or file), and pick the chunk size. Call under float64."""
    n_design = design_batch_size(experiments) if design_batch else None
    fids, B = check_fiducials(fiducials, n_design, "design_batch=True: the design's batch axis")
    names = check_names(params, fids)
    n_dev = len(devices) if devices else 1
    label = "+".join(e.name for e in experiments if e.name) or None
    # Trace once for the output shapes: a parameter the model needs but `fiducials` lacks,
    # or a bad output shape, raises here. The first item with finite values stands in.
    finite = np.nonzero(np.all(np.stack([np.isfinite(v) for v in fids.values()]), 0))[0]
    i0 = int(finite[0]) if finite.size else 0
    exps0 = experiments
    if design_batch:
        exps0 = tuple(
            e.replace(design=jax.tree_util.tree_map(lambda x: np.asarray(x)[i0], e.design))
            for e in experiments
        )
    fid0 = {k: (v[i0] if np.isfinite(v[i0]) else np.float64(1.0)) for k, v in fids.items()}
    shapes = jax.eval_shape(probe, exps0, fid0)
    if chunk_size is None:
        budget = memory_budget or default_memory_budget(devices)
        size = auto_chunk_size(bytes_per_item(shapes, len(names)), budget, B, n_dev)
    else:
        size = round_up(min(int(chunk_size), B), n_dev)
    # Trace the chunk kernel now, so that trace-time errors (an output that does not fit the
    # noise model, ...) surface before any file is written. The trace is cached.
    idx0 = np.arange(min(size, B))
    first = {k: np.where(np.isfinite(v[idx0]), v[idx0], fid0[k]) for k, v in fids.items()}
    exps_c, fids_c = take(experiments, first, idx0, design_batch, size)
    chunk_kernel.trace(exps_c, fids_c, names, mode, design_batch)
    return Plan(experiments, fids, names, mode, design_batch, B, size, devices, label)
