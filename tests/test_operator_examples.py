"""examples/ewc_mlp.py in fast mode: its two Fisher diagonals against an independent
per-datum Jacobian (jax.jacrev of the network), and the EWC penalty doing its job."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_example

pytestmark = pytest.mark.slow  # trains an MLP three times (~1 min on the loaded 2-core VM)


@pytest.fixture(scope="module")
def ewc(tmp_path_factory):
    out = tmp_path_factory.mktemp("ewc")
    module = load_example("ewc_mlp")
    return module, module.main(out, fast=True)


def test_diagonals_match_the_per_datum_jacobian(ewc):
    module, r = ewc
    xa, ya = r["data_a"]
    with jax.enable_x64(True):
        J = np.asarray(
            jax.jacrev(lambda w: module.mlp(w, jnp.asarray(xa), r["width"]))(jnp.asarray(r["w_a"]))
        )
        mu = np.asarray(module.mlp(jnp.asarray(r["w_a"]), jnp.asarray(xa), r["width"]))
    s = module.SIGMA_MODEL
    exact = np.sum(J**2, axis=0) / s**2
    empirical = np.sum(((ya - mu)[:, None] * J) ** 2, axis=0) / s**4
    assert np.allclose(r["exact"], exact, rtol=1e-10, atol=1e-12 * exact.max())
    assert np.allclose(r["empirical"], empirical, rtol=1e-10, atol=1e-12 * empirical.max())
    # the noise is 2x what the model assumes: the empirical Fisher is inflated
    assert r["summary"]["median_empirical_over_exact"] > 1.5


def test_ewc_protects_task_a_and_writes_plots(ewc):
    _, r = ewc
    s = r["summary"]
    assert s["loss_a_ewc"] < 0.8 * s["loss_a_plain"]
    assert s["loss_a_after_a"] < s["loss_a_ewc"]
    for path in r["files"].values():
        assert Path(path).stat().st_size > 1000
