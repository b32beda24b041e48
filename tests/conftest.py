"""Shared test configuration.

The suite deliberately runs under JAX's *default* float32 configuration: fisherforecast must
compute in float64 through its own local context and must never flip the global switch. Do not
enable x64 here. Plots use the non-interactive Agg backend and every figure is closed after
each test.
"""

from __future__ import annotations

import os
import sys

# Must be set before matplotlib is imported anywhere.
os.environ["MPLBACKEND"] = "Agg"

import jax
import jax.numpy as jnp
import pytest


def pytest_configure(config):
    """Compile with XLA's optimisations mostly off (``jax_disable_most_optimizations``).

    The suite is dominated by tracing and compiling small programs that then run once or
    twice; unoptimised compilation is about 20-35 % faster on the whole run (measured on 2
    cores), and the programs compute the same float64 values (the optimisations reorder
    and fuse, they do not change precision). This is test configuration only: the library
    never sets JAX's global options, and users' programs compile fully optimised.
    ``FISHERFORECAST_TEST_OPTIMIZE=1`` runs the suite with the optimisations on."""
    if os.environ.get("FISHERFORECAST_TEST_OPTIMIZE", "") not in ("1", "true", "yes"):
        jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True)
def _close_figures():
    """Use the Agg backend and close every matplotlib figure a test opened."""
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache_in_tmp(tmp_path_factory):
    """Keep the on-disk kernel cache (fisherforecast/_compile.py) out of the user's cache
    directory: the whole session writes into a temporary one, which the pytest-xdist workers
    share (entries are written atomically), so that a kernel one worker compiled, and the
    examples that run in subprocesses, load instead of compiling again. Tests of the cache
    itself set their own directory."""
    old = os.environ.get("FISHERFORECAST_CACHE_DIR")
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is <session>/popen-gwN: share <session>/kernel-cache.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "kernel-cache"
    shared.mkdir(exist_ok=True)
    os.environ["FISHERFORECAST_CACHE_DIR"] = str(shared)
    yield
    if old is None:
        os.environ.pop("FISHERFORECAST_CACHE_DIR", None)
    else:
        os.environ["FISHERFORECAST_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _global_config_untouched():
    """Every test must leave JAX's global float32 default as it found it."""
    assert not jax.config.jax_enable_x64, "a previous test enabled x64 globally"
    yield
    assert not jax.config.jax_enable_x64, "this test left jax_enable_x64 switched on"
    assert jnp.ones(1).dtype == jnp.float32
