"""Argument checks of :func:`ff.ode_model` (each error names the argument and quotes it),
and two helpers of its diffrax calls."""

from __future__ import annotations

import contextlib
import sys

import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from ._errors import quote

__all__ = [
    "as_array_if_number",
    "check_dt0",
    "check_max_steps",
    "check_t0",
    "check_tolerance",
    "real_array",
    "unchecked_save_times",
]


def real_array(name, value, what):
    """``value`` as a float64 NumPy array, or a TypeError naming ``name`` (bools, strings,
    complex numbers and other non-real values are refused rather than coerced)."""
    try:
        arr = np.asarray(value)
    except Exception:  # traced values, ragged sequences, ...
        arr = None
    if arr is None or arr.dtype.kind not in "iuf":
        raise TypeError(f"ode_model: `{name}` must be {what}; received {quote(value)}.")
    return arr.astype(np.float64)


def check_tolerance(name, value, *, allow_zero):
    """rtol (> 0) / atol (>= 0): finite real numbers, or arrays of them (one per state
    component, element-wise); returned unchanged."""
    if isinstance(value, Tracer):  # built inside a trace: cannot be checked
        return value
    bound = ">= 0" if allow_zero else "> 0"
    what = f"a finite real number {bound} (or an array of them, one per state component)"
    arr = real_array(name, value, what)
    ok = np.isfinite(arr) & ((arr >= 0) if allow_zero else (arr > 0))
    if arr.size == 0 or not ok.all():
        raise ValueError(f"ode_model: `{name}` must be {what}; received {quote(value)}.")
    return value


def check_dt0(dt0):
    if dt0 is None or isinstance(dt0, Tracer):
        return dt0
    what = "None (diffrax chooses) or a finite number > 0"
    arr = real_array("dt0", dt0, what)
    if arr.shape != () or not (np.isfinite(arr) and arr > 0):
        raise ValueError(f"ode_model: `dt0` must be {what}; received {quote(dt0)}.")
    return float(arr)


def check_max_steps(max_steps) -> int:
    what = "a positive integer"
    if isinstance(max_steps, (bool, np.bool_)) or not isinstance(
        max_steps, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"ode_model: `max_steps` must be {what}; received {quote(max_steps)}.")
    if not (np.isfinite(max_steps) and float(max_steps).is_integer() and max_steps >= 1):
        raise ValueError(f"ode_model: `max_steps` must be {what}; received {quote(max_steps)}.")
    return int(max_steps)


def check_t0(t0) -> float:
    what = "a finite real number"
    arr = real_array("t0", t0, what)
    if arr.shape != () or not np.isfinite(arr):
        raise ValueError(f"ode_model: `t0` must be {what}; received {quote(t0)}.")
    return float(arr)


def as_array_if_number(x):
    """Python numbers as arrays (diffrax's filter_jit would make them static)."""
    return jnp.asarray(x) if isinstance(x, (int, float, np.number)) else x


@contextlib.contextmanager
def unchecked_save_times(active: bool):
    """Trace a diffrax solve with equinox's runtime checks as NaN instead of callbacks
    (see the module docstring); no-op unless `active` and equinox is in its default mode.
    Only the trace is affected: equinox reads its mode when a check is traced."""
    errors = sys.modules.get("equinox._errors")
    if not active or errors is None or getattr(errors, "EQX_ON_ERROR", None) != "raise":
        yield
        return
    errors.EQX_ON_ERROR = "nan"  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        errors.EQX_ON_ERROR = "raise"  # pyright: ignore[reportAttributeAccessIssue]
