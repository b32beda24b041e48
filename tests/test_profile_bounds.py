"""Profiles on a log scale within bounds, extended until they close, with every minimum.

References are closed-form profiles: the models are linear in their nuisance parameter
(or have none), so min over it is analytic, and the interval endpoints are roots found by
``scipy.optimize.brentq`` on that closed form, independent of the library.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import chi2

import fisherforecast as ff

D95 = float(chi2.ppf(0.95, 1))
X_MM = np.array([0.25, 0.5, 1.0, 2.0])
SIGMA_MM = 0.07


def michaelis_menten(p, x):
    return p["V"] * x / (p["K"] + x)


def mm_profile(k):
    """Asimov Δ(K) with V profiled out exactly (the model is linear in V)."""
    y = X_MM / (1.0 + X_MM)
    g = X_MM / (k + X_MM)
    return (y @ y - (y @ g) ** 2 / (g @ g)) / SIGMA_MM**2


@pytest.fixture(scope="module")
def mm_exp():
    return ff.Experiment(michaelis_menten, ff.Gaussian(sigma=SIGMA_MM), design=X_MM)


def test_skewed_rate_constant_profile_closes_by_default(mm_exp):
    """The issue's k3 case: K̂ ± 4σ_Fisher reaches below zero and ends before the profile
    crosses 3.84, so the old linear grid called K open above. The default (log scale,
    extended) profile is closed, with the closed-form interval."""
    fid = {"V": 1.0, "K": 1.0}
    old = ff.profile_likelihood(mm_exp, fid, "K", scale="linear", extend=False)
    assert old.grid[0] < 0 and old.open[D95] == (False, True)  # the false verdict
    prof = ff.profile_likelihood(mm_exp, fid, "K", levels=(0.6827, 0.95))
    assert prof.identifiable and prof.verdict == "identifiable"
    assert np.all(prof.grid > 0)
    lo = brentq(lambda k: mm_profile(k) - D95, 0.05, 1.0)
    hi = brentq(lambda k: mm_profile(k) - D95, 1.0, 50.0)
    got = prof.interval(D95)
    np.testing.assert_allclose(got, (lo, hi), rtol=2e-3)
    # `levels` are probabilities: 0.95 is Δ = 3.84.
    assert max(prof.deltas) == pytest.approx(D95)


def test_open_side_is_open_up_to_the_bound():
    """exp(-k t) with one early time: k → 0 is never excluded at 95 %, so the profile is
    open below all the way to the bound, and says so."""
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=0.2),
        np.array([0.5, 1.0, 2.0]),
    )
    prof = ff.profile_likelihood(exp, {"A": 1.0, "k": 0.3}, "k", bounds={"k": (1e-3, 30.0)})
    assert prof.open[max(prof.deltas)] == (True, False)
    assert prof.grid[0] == pytest.approx(1e-3)
    assert "up to the bound" in prof.verdict
    assert any("bound 0.001" in note for note in prof.notes)


def test_second_minimum_inside_one_interval_is_found_with_its_parameter_values():
    """μ = (a − 1)² x: exact minima at a = 0.5 and 1.5 separated by a barrier Δ = 2 < 3.84
    (so both lie in one 95 % interval); Δ(a) = 32((a − 1)² − 1/4)²."""
    x = np.linspace(0.5, 1.5, 8)
    sigma = math.sqrt(np.sum(x**2) / 32.0)
    exp = ff.Experiment(
        lambda p, x: (p["a"] - 1.0) ** 2 * x * p["c"], ff.Gaussian(sigma=sigma), design=x
    )
    prof = ff.profile_likelihood(exp, {"a": 1.5, "c": 1.0}, "a", params=["a"])
    assert prof.multimodal and not prof.identifiable
    assert len(prof.minima) == 2
    (best, d0, _), (other, d1, v1) = prof.minima
    assert best == pytest.approx(1.5) and d0 == pytest.approx(0.0, abs=1e-12)
    assert other == pytest.approx(0.5, abs=1e-3) and d1 == pytest.approx(0.0, abs=1e-4)
    assert v1["a"] == other
    # Both minima lie in the one 95 % interval: 1 ± sqrt(1/4 + sqrt(3.84/32)).
    half = math.sqrt(0.25 + math.sqrt(D95 / 32.0))
    np.testing.assert_allclose(prof.interval(D95), (1 - half, 1 + half), rtol=1e-4)
    assert "2 separate minima" in " ".join(prof.notes)


def test_bad_bounds_scale_and_levels_are_refused(mm_exp):
    fid = {"V": 1.0, "K": 1.0}
    with pytest.raises(ValueError, match="low < high"):
        ff.profile_likelihood(mm_exp, fid, "K", bounds={"K": (2.0, 1.0)})
    with pytest.raises(ValueError, match="where the fits start, is K = 1"):
        ff.profile_likelihood(mm_exp, fid, "K", bounds={"K": (2.0, 3.0)})
    with pytest.raises(KeyError, match="Kd"):
        ff.profile_likelihood(mm_exp, fid, "K", bounds={"Kd": (0.0, 3.0)})
    with pytest.raises(ValueError, match="'auto', 'log' or 'linear'"):
        ff.profile_likelihood(mm_exp, fid, "K", scale="ln")
    with pytest.raises(ValueError, match="probability contents"):
        ff.profile_likelihood(mm_exp, fid, "K", levels=(1.0, 3.84))


def test_bounds_on_a_nuisance_parameter_against_the_closed_form():
    """y = a + b·x with Gaussian noise, Asimov data at a = 1, b = 2. For fixed a the best b
    is 2 − (a − 1)·Σx/Σx²; with b held in [1.9, 2.1] it is that value clipped, and
    Δ(a) = Σ((a − 1) + (b − 2)·x)²/σ² exactly."""
    x = np.linspace(0.0, 1.0, 6)
    sig = 0.1
    exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=sig), design=x)
    grid = np.linspace(0.7, 1.3, 13)
    prof = ff.profile_likelihood(
        exp, {"a": 1.0, "b": 2.0}, "a", grid=grid, bounds={"b": (1.9, 2.1)}, progress=False
    )
    b_free = 2.0 - (grid - 1.0) * x.sum() / (x**2).sum()
    b_best = np.clip(b_free, 1.9, 2.1)
    delta = (((grid - 1.0)[:, None] + (b_best - 2.0)[:, None] * x[None, :]) ** 2).sum(1)
    assert np.any(b_free > 2.1) and np.any(b_free < 1.9)  # the bound is active on both sides
    np.testing.assert_allclose(prof.nuisance["b"], b_best, atol=1e-6)
    np.testing.assert_allclose(prof.delta, delta / sig**2, atol=1e-6)
    assert prof.converged.all()
    # Without the bound the profile is the unconstrained parabola.
    free = ff.profile_likelihood(exp, {"a": 1.0, "b": 2.0}, "a", grid=grid, progress=False)
    np.testing.assert_allclose(free.nuisance["b"], b_free, atol=1e-6)
