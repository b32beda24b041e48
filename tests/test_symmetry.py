"""Discrete symmetries found by the multi-start search, against known exact ones."""

import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff

T = np.array([0.5, 1.0, 2.0, 4.0, 6.0, 9.0, 12.0])


def bateman(p, t):
    """One oral dose: C = D ka / (V (ka − ke)) (e^{−ke t} − e^{−ka t}), D = 100."""
    return (
        100.0
        * p["ka"]
        / (p["V"] * (p["ka"] - p["ke"]))
        * (jnp.exp(-p["ke"] * t) - jnp.exp(-p["ka"] * t))
    )


def test_pk_flip_flop_is_found():
    """(ka, ke, V) and (ke, ka, V·ke/ka) give the same curve exactly (flip-flop)."""
    fid = {"ka": 1.5, "ke": 0.2, "V": 10.0}
    exp = ff.Experiment(bateman, ff.Gaussian(sigma=0.1), design=T)
    res = ff.symmetry_search(exp, fid, n_starts=12, seed=1)
    assert res.symmetric and len(res.optima) == 1
    other = res.optima[0]
    assert other["ka"] == pytest.approx(0.2, rel=1e-4)
    assert other["ke"] == pytest.approx(1.5, rel=1e-4)
    assert other["V"] == pytest.approx(10.0 * 0.2 / 1.5, rel=1e-4)
    assert res.descriptions[0].startswith("ka ↔ ke")
    assert "1 other exact optimum" in res.summary()


def test_no_symmetry_in_a_one_exponential_model():
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1), design=T
    )
    res = ff.symmetry_search(exp, {"A": 2.0, "k": 0.3}, n_starts=6)
    assert not res.symmetric and res.n_exact >= 1
    with pytest.raises(ValueError, match="max_time"):
        ff.symmetry_search(exp, {"A": 2.0, "k": 0.3}, max_time=0)
