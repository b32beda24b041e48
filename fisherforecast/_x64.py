"""Float64 without touching the user's global JAX configuration.

Every public entry point that runs JAX code wraps its body in :func:`float64`.
Two traps shape the rules here (see ``docs/numerics.md``):

* a float64 array used *outside* the context is demoted to float32 again, so
  results are converted to numpy float64 *inside* the context;
* ``jnp.asarray`` under a float32 default silently rounds (a PSD of 1e-46 underflows
  to 0), so user arrays are stored as numpy float64 at construction time.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np


@contextlib.contextmanager
def float64():
    """Context in which JAX computes in float64, whatever the global setting."""
    with jax.enable_x64(True):
        yield


def with_float64(fn):
    """Decorator: run ``fn`` inside :func:`float64`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with float64():
            return fn(*args, **kwargs)

    return wrapper


def as_float64_tree(tree):
    """Convert every floating/complex leaf of a pytree to a numpy 64-bit array.

    Integer and boolean leaves keep their dtype; callables and ``None`` pass through.
    """

    def convert(leaf):
        if callable(leaf) or leaf is None:
            return leaf
        arr = np.asarray(leaf)
        if np.iscomplexobj(arr):
            return arr.astype(np.complex128)
        if np.issubdtype(arr.dtype, np.floating) or arr.dtype == object:
            return arr.astype(np.float64)
        if isinstance(leaf, float):
            return np.float64(leaf)
        return arr

    return jax.tree_util.tree_map(convert, tree)
