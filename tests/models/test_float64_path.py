"""The zoo's own float64 path: public functions called directly under JAX's default float32
configuration compute in float64 (issue: ``gw.taylorf2_phase`` was 0.012 rad off), traced
calls in a float32 trace warn, and nothing touches the global configuration."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast.models import biology, gw, microlensing

F = np.geomspace(20.0, 1000.0, 50)


def _phase_x64():
    with jax.enable_x64(True):
        return np.asarray(gw.taylorf2_phase(F, 1.2, 0.25))


def test_direct_call_computes_in_float64_and_returns_numpy():
    assert not jax.config.read("jax_enable_x64")
    psi = gw.taylorf2_phase(F, 1.2, 0.25)
    assert isinstance(psi, np.ndarray) and psi.dtype == np.float64
    # the same numbers as under the user's own enable_x64, to the last bits
    np.testing.assert_allclose(psi, _phase_x64(), rtol=1e-14, atol=0)
    assert not jax.config.read("jax_enable_x64")  # the global setting is untouched


def test_float32_inputs_are_widened_and_the_float32_result_would_be_wrong():
    """Without the float64 path the phase (up to ~1e4 rad here) is ~1e-3 rad off: what a
    float32 trace computes, which is exactly what the wrapper avoids for direct calls."""
    ref = _phase_x64()
    psi = gw.taylorf2_phase(jnp.asarray(F, dtype=jnp.float32), 1.2, 0.25)
    # the input itself was rounded to float32 (~6e-8 relative), nothing else
    f32 = np.asarray(np.float32(F), dtype=np.float64)
    with jax.enable_x64(True):
        ref_rounded_input = np.asarray(gw.taylorf2_phase(f32, 1.2, 0.25))
    np.testing.assert_allclose(psi, ref_rounded_input, rtol=1e-13)
    with pytest.warns(UserWarning, match="traced under JAX's float32 default"):
        traced = np.asarray(jax.jit(gw.taylorf2_phase)(F, 1.2, 0.25), dtype=np.float64)
    assert np.max(np.abs(traced - ref)) > 1e-4  # float32 really is that far off


def test_trace_warning_is_given_once_per_function():
    fn = jax.jit(microlensing.paczynski_magnification)
    with pytest.warns(UserWarning, match="paczynski_magnification"):
        fn(jnp.asarray([0.1, 0.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(microlensing.paczynski_magnification)(jnp.asarray([0.2, 0.7]))


def test_inside_the_library_no_warning_and_constructors_pass_through():
    exp = microlensing.experiment(np.linspace(-20.0, 20.0, 40), sigma=0.01)
    assert isinstance(exp, ff.Experiment)
    fid = dict(microlensing.OGLE_LIKE_EVENT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F1 = ff.fisher(exp, fid)
    assert F1.matrix.dtype == np.float64
    # ODE model builders return models, not arrays: unchanged by the wrapper
    model = biology.sir()
    assert callable(model) and biology.sir() is model
