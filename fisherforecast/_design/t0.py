"""Design bounds against a model's start time: an ODE model is NaN before its ``t0``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._errors import InputError

__all__ = ["check_bounds_after_t0"]


def _low_of(pair):
    try:
        low = np.asarray(pair[0], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return float(np.min(low)) if low.size else None


def _time_bounds(bounds, model):
    """The (low, high) pair that bounds the measurement times, if it can be told: one
    pair for a plain times design, or the entry under the model's ``times_key``."""
    key = getattr(model, "times_key", None)
    if isinstance(bounds, Mapping):
        return bounds.get(key) if key is not None else None
    return bounds


def check_bounds_after_t0(experiments, bounds, joint) -> None:
    """Refuse bounds that let measurement times go before an ODE model's ``t0`` (models
    that declare ``t0`` and ``check_times``): there the model is NaN and every start would
    fail with a non-finite criterion."""
    per_experiment = bounds if joint and isinstance(bounds, list | tuple) else None
    for i, exp in enumerate(experiments):
        model = exp.model
        t0 = getattr(model, "t0", None)
        if t0 is None or not callable(getattr(model, "check_times", None)):
            continue
        b = per_experiment[i] if per_experiment is not None and i < len(per_experiment) else bounds
        low = _low_of(_time_bounds(b, model)) if b is not None else None
        if low is not None and low < t0:
            raise InputError(
                f"`bounds` let the measurement times of {exp.label} start at {low:g}, before "
                f"the ODE model's t0 = {t0:g}, where it returns NaN (every start would fail). "
                f"Give bounds with low >= {t0:g}, e.g. bounds=({t0:g}, high), or build the "
                "model with an earlier t0."
            )
