"""Input validation and chunk planning."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import quote

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


def check_devices(devices):
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
    two chunks of 5000, not 8192 + 1808 padded to 8192)."""
    cap = int(max(1, min(budget // max(bytes_per_item, 1), MAX_CHUNK)))
    n_chunks = math.ceil(max(B, 1) / cap)
    size = math.ceil(max(B, 1) / n_chunks)
    return round_up(size, n_devices)


def round_up(n, k):
    return int(math.ceil(n / k) * k)
