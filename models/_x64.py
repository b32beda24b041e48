"""Float64 for zoo functions called directly, without touching the global JAX configuration.

Inside ``ff.fisher`` and the other entry points of the library the zoo's functions already
run in float64: the library traces them inside ``jax.enable_x64(True)``. Called directly
under JAX's default float32 configuration (``gw.taylorf2_phase(params, f)`` in a notebook,
say) they would compute in float32: a 1e5-radian phase then carries errors of ~0.01 rad.
:func:`float64_entry` gives every public zoo function its own float64 path:

* float64 already on (inside the library, or the user's own ``enable_x64``): the function
  runs as it is, with no overhead but one check;
* concrete inputs under float32: it runs inside ``jax.enable_x64(True)``, with float32
  input arrays widened first, and returns numpy float64 arrays (a float64 JAX array that
  left the context would be demoted to float32 by its next operation);
* traced inputs under float32 (the user's own ``jax.jit`` or ``jax.grad`` without x64): the
  precision of the trace is the caller's, so it runs in float32 and warns once, saying how
  to get float64.
"""

from __future__ import annotations

import functools
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["float64_entry", "wrap_public"]

_WARNED: set[str] = set()


def _x64_on() -> bool:
    return jnp.result_type(float) == np.float64


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _widen(x):
    """Float32 (and float16) input arrays to float64; everything else as it is."""
    if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.complexfloating):
        return np.asarray(x, dtype=np.complex128)
    return x


def _to_numpy(out):
    """JAX arrays in the result (alone, or in tuples, lists and dicts) to numpy arrays."""
    if isinstance(out, jax.Array):
        return np.asarray(out)
    if isinstance(out, tuple | list | dict):
        return jax.tree_util.tree_map(
            lambda x: np.asarray(x) if isinstance(x, jax.Array) else x,
            out,
            is_leaf=lambda x: not isinstance(x, tuple | list | dict),
        )
    return out


def float64_entry(fn):
    """Decorator: run a zoo function in float64 when it is called directly (module
    docstring). The wrapped function keeps its name, docstring and signature.

    Example
    -------
    >>> import jax.numpy as jnp
    >>> @float64_entry
    ... def third(x):
    ...     return jnp.asarray(x) / 3.0
    >>> y = third(1.0)                      # under JAX's default float32 configuration
    >>> y.dtype.name, bool(abs(y - 1 / 3) < 1e-15)
    ('float64', True)
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _x64_on():
            return fn(*args, **kwargs)
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(_is_tracer(x) for x in leaves):
            name = f"{fn.__module__}.{fn.__qualname__}"
            if name not in _WARNED:
                _WARNED.add(name)
                warnings.warn(
                    f"{name} was traced under JAX's float32 default (inside your own "
                    "jax.jit/grad/vmap), so it computes in float32. Wrap the transformation "
                    "and its call in `with jax.enable_x64(True):` for float64 (fisherforecast "
                    "entry points such as ff.fisher do this themselves).",
                    UserWarning,
                    stacklevel=2,
                )
            return fn(*args, **kwargs)
        args, kwargs = jax.tree_util.tree_map(_widen, (args, kwargs))
        with jax.enable_x64(True):
            return _to_numpy(fn(*args, **kwargs))

    return wrapper


def wrap_public(namespace: dict) -> None:
    """Give every function named in a zoo module's ``__all__`` (defined in that module)
    its float64 path: call at the end of the module as ``wrap_public(globals())``.
    Classes, constants and imported helpers are left alone; calls between the module's own
    functions then go through the wrapper, which costs one check inside float64."""
    module = namespace["__name__"]
    for name in namespace["__all__"]:
        obj = namespace[name]
        if inspect.isfunction(obj) and obj.__module__ == module:
            namespace[name] = float64_entry(obj)
