"""Fixtures shared by the model-zoo tests."""

import jax
import pytest


@pytest.fixture
def float64_context():
    """Evaluate the (pure jnp) zoo models in float64 without touching the global config."""
    with jax.enable_x64(True):
        yield
