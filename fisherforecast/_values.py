"""Checks and warnings for the arrays users hand to noise models and designs.

Shared by every noise model (``_noise``, ``_likelihood``, ``_families``) and by
:class:`ff.Experiment`: positive-and-finite checks that quote what was received, and a
once-per-process warning for arrays that arrive in 32-bit precision.

```python
>>> from fisherforecast._values import check_positive
>>> check_positive(2.0, "scale").tolist()
2.0
```
"""

from __future__ import annotations

import warnings

import jax
import jax.core
import numpy as np

from ._errors import InputError, quote

_FLOAT32_WARNED: set[str] = set()
_LOW_PRECISION = ("float16", "bfloat16", "float32", "complex64")


def is_traced(x) -> bool:
    """Whether ``x`` is a JAX tracer (inside ``jit``/``grad``/``vmap``)."""
    return isinstance(x, jax.core.Tracer)


def warn_if_float32(tree, what: str, stacklevel: int = 3) -> None:
    """Warn (once per process for each ``what``) when a user array arrives in 32-bit
    precision: it was rounded before fisherforecast saw it, and converting it to float64
    cannot restore the lost digits (e.g. ``jnp.linspace`` under JAX's float32 default)."""
    if what in _FLOAT32_WARNED:
        return
    for leaf in jax.tree_util.tree_leaves(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or str(dtype) not in _LOW_PRECISION or is_traced(leaf):
            continue
        _FLOAT32_WARNED.add(what)
        warnings.warn(
            f"{what} received a {dtype} array: its values were rounded to ~7 digits before "
            "fisherforecast could store them in float64, so the Fisher matrix describes the "
            "rounded values. Build the arrays with numpy (np.linspace, np.array) or inside "
            "`with jax.enable_x64(True):`. (Warned once per process.)",
            UserWarning,
            stacklevel=stacklevel,
        )
        return


def check_positive(value, what, hint=""):
    """``value`` as a float64 numpy array, or an :class:`InputError` naming `what` and
    quoting the value when it is not real, positive and finite (tracers pass through).
    `hint` (advice on what to do) is appended to the message about bad entries."""
    if is_traced(value):
        return value
    arr = np.asarray(value)
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be real and positive; received {quote(value)}.")
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        where = np.argwhere(bad)[:5].tolist() if arr.ndim else "scalar"
        raise InputError(
            f"{what} must be positive and finite; received {quote(value)} (bad entries at "
            f"{where}).{' ' + hint if hint else ''}"
        )
    return arr
