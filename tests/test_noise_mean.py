"""Noise that follows the model mean: ``ff.Gaussian(sigma=lambda mean, p: ...)``.

The reference is the closed-form Fisher matrix of heteroscedastic Gaussian data,
``F = Σᵢ [∂μᵢ∂μᵢᵀ/σᵢ² + 2 ∂σᵢ∂σᵢᵀ/σᵢ²]`` with ``σᵢ = a + b|μᵢ|`` differentiated by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff

T = np.array([0.2, 0.7, 1.5, 3.0, 5.0])
FID = {"A": 2.0, "k": 0.6, "a": 0.02, "b": 0.1}


def closed_form_fisher(p, t):
    e = np.exp(-p["k"] * t)
    mu = p["A"] * e
    dmu = np.stack([e, -p["A"] * t * e, 0 * t, 0 * t], axis=1)  # (A, k, a, b)
    sigma = p["a"] + p["b"] * np.abs(mu)
    dsigma = p["b"] * np.sign(mu)[:, None] * dmu
    dsigma[:, 2] += 1.0
    dsigma[:, 3] += np.abs(mu)
    w_mu = dmu / sigma[:, None]
    w_s = dsigma / sigma[:, None]
    return w_mu.T @ w_mu + 2.0 * w_s.T @ w_s


def test_combined_error_from_the_mean_matches_closed_form_with_one_model_call():
    calls = []

    def model(p, t):
        calls.append(1)  # one trace = one model evaluation per Fisher matrix
        return p["A"] * jnp.exp(-p["k"] * t)

    noise = ff.Gaussian(sigma=lambda mean, p: p["a"] + p["b"] * jnp.abs(mean))
    assert noise.mean_dependent and noise.parameter_dependent
    fmat = ff.fisher(ff.Experiment(model, noise, design=T), FID)
    assert len(calls) == 1
    np.testing.assert_allclose(fmat.matrix, closed_form_fisher(FID, T), rtol=1e-12)


def test_mean_callables_with_design_cov_and_likelihood():
    """(mean, params, design) and a covariance callable give the same matrix; the
    log-likelihood uses σ of the mean it is given."""

    def model(p, t):
        return p["A"] * jnp.exp(-p["k"] * t)

    by_cov = ff.Gaussian(
        cov=lambda mean, p, t: jnp.diag((p["a"] + p["b"] * jnp.abs(mean)) ** 2 + 0 * t)
    )
    fmat = ff.fisher(ff.Experiment(model, by_cov, design=T), FID)
    np.testing.assert_allclose(fmat.matrix, closed_form_fisher(FID, T), rtol=1e-10)
    noise = ff.Gaussian(sigma=lambda m, p: p["a"] + p["b"] * jnp.abs(m), uses_mean=True)
    mean, data = np.array([1.0, -2.0]), np.array([1.1, -2.5])
    sigma = 0.02 + 0.1 * np.abs(mean)
    expected = -0.5 * np.sum(((data - mean) / sigma) ** 2) - np.sum(np.log(sigma))
    expected -= np.log(2 * np.pi)
    with jax.enable_x64(True):
        got = float(noise.log_likelihood(data, mean, FID, None))
    assert got == pytest.approx(expected, rel=1e-12)


def test_mean_callable_with_a_wrong_signature_is_refused():
    with pytest.raises(TypeError, match=r"\(mean, params\)"):
        ff.Gaussian(sigma=lambda mean: 0.1)
