"""Noise models: likelihoods against scipy closed forms, Fisher = −E[∂²log L] (Hessian of the
noise model's own log-likelihood on Asimov data), the information identity with the noise
model's own simulator, and the data-space metric against numpy.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fisherforecast as ff
from fisherforecast._x64 import float64


def _spd(n, seed, jitter=0.5):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    return B @ B.T / n + jitter * np.eye(n)


def scaled_close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    d = np.sqrt(np.abs(np.diag(expected)))
    return np.max(np.abs(actual - expected) / np.outer(d, d)) <= rtol


# ---------------------------------------------------------------------------------------
# Experiments used throughout: one per noise path
# ---------------------------------------------------------------------------------------
X = np.linspace(0.2, 3.0, 10)
FREQ = np.linspace(20.0, 120.0, 40)
PSD_VALUES = 1e-3 * (1 + (FREQ / 60.0) ** 2)


def nonlinear(p, x):
    return p["A"] * jnp.exp(-p["k"] * x) + p["c"] * jnp.sin(x)


def chirp(p, f):
    return jnp.exp(p["lnA"]) * f ** (-7 / 6) * jnp.exp(1j * (2 * jnp.pi * f * p["tc"] - p["phi"]))


def ar1_cov(p, x):
    lag = jnp.abs(jnp.arange(x.size)[:, None] - jnp.arange(x.size)[None, :])
    return p["s"] ** 2 * p["rho"] ** lag


CASES = {
    "gaussian_sigma": (
        ff.Experiment(nonlinear, ff.Gaussian(sigma=0.05 * (1 + X)), design=X),
        {"A": 2.0, "k": 0.7, "c": 0.3},
    ),
    "gaussian_cov": (
        ff.Experiment(nonlinear, ff.Gaussian(cov=0.01 * _spd(10, seed=3)), design=X),
        {"A": 2.0, "k": 0.7, "c": 0.3},
    ),
    "poisson": (
        ff.Experiment(lambda p, x: p["A"] * jnp.exp(-p["k"] * x) + p["B"], ff.Poisson(), design=X),
        {"A": 40.0, "k": 0.7, "B": 5.0},
    ),
    "psd": (
        ff.Experiment(chirp, ff.PSD(PSD_VALUES, 0.5), design=FREQ),
        {"lnA": 0.0, "tc": 0.003, "phi": 0.2},
    ),
    "psd_real": (
        ff.Experiment(
            lambda p, f: p["a"] * jnp.sin(p["w"] * f / 100.0), ff.PSD(PSD_VALUES, 0.5), design=FREQ
        ),
        {"a": 0.5, "w": 3.0},
    ),
    "gaussian_sigma_fn": (
        ff.Experiment(nonlinear, ff.Gaussian(sigma=lambda p, x: p["s"] * (1 + x)), design=X),
        {"A": 2.0, "k": 0.7, "c": 0.3, "s": 0.1},
    ),
    "gaussian_cov_fn": (
        ff.Experiment(lambda p, x: p["m"] * x, ff.Gaussian(cov=ar1_cov), design=X),
        {"m": 1.5, "s": 0.3, "rho": 0.6},
    ),
}
FIXED_NOISE = ["gaussian_sigma", "gaussian_cov", "poisson", "psd"]


def _log_likelihood_fn(exp, fid):
    names = tuple(fid)

    def loglike(theta, data):
        params = dict(zip(names, theta, strict=True))
        mean = exp(params)
        return exp.noise.log_likelihood(data, mean, params, exp.design)

    return names, loglike


def _theta0(fid):
    return jnp.array(list(fid.values()), dtype=jnp.float64)


# ---------------------------------------------------------------------------------------
# Fisher = −Hessian of the log-likelihood at the Asimov data (fixed noise)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", FIXED_NOISE)
def test_negative_hessian_of_asimov_log_likelihood_equals_fisher(case):
    """At r = 0 the residual terms vanish, so −∂²log L = F exactly (also for the PSD, whose
    |r|² must be written so that its second derivative survives r = 0)."""
    exp, fid = CASES[case]
    F = ff.fisher(exp, fid)
    with float64():
        _, loglike = _log_likelihood_fn(exp, fid)
        theta0 = _theta0(fid)
        asimov = exp(dict(zip(fid, theta0, strict=True)))
        H = np.asarray(jax.jit(jax.hessian(loglike))(theta0, asimov), dtype=np.float64)
    assert scaled_close(-H, F.matrix, rtol=1e-11)


def _sigma_points(C):
    """2N data residuals whose mean is 0 and mean outer product is exactly C."""
    n = C.shape[0]
    L = np.linalg.cholesky(C)
    return np.concatenate([np.sqrt(n) * L.T, -np.sqrt(n) * L.T])


@pytest.mark.parametrize("case", ["gaussian_sigma_fn", "gaussian_cov_fn"])
def test_expected_negative_hessian_parameter_dependent_noise(case):
    """E[−∂²log L] = F including ½tr(C⁻¹∂C C⁻¹∂C).

    log L is quadratic in the data, so its θ-Hessian is too, and the average over 2N sigma
    points (mean 0, second moment exactly C) is the exact expectation: no Monte Carlo.
    """
    exp, fid = CASES[case]
    F = ff.fisher(exp, fid)
    with float64():
        _, loglike = _log_likelihood_fn(exp, fid)
        theta0 = _theta0(fid)
        params = dict(zip(fid, theta0, strict=True))
        mean = np.asarray(exp(params))
        if exp.noise.cov_fn is not None:
            C = np.asarray(exp.noise.cov_fn(params, exp.design))
        else:
            C = np.diag(np.asarray(exp.noise.sigma_fn(params, exp.design)) ** 2)
        data = mean + _sigma_points(C)
        H = jax.jit(jax.vmap(jax.hessian(loglike), in_axes=(None, 0)))(theta0, jnp.asarray(data))
        H = np.asarray(H, dtype=np.float64).mean(axis=0)
    assert scaled_close(-H, F.matrix, rtol=1e-11)


def test_expected_negative_hessian_mean_and_width_analytic():
    """N(μ, s²), N draws: E[−∂²log L] = diag(N/s², 2N/s²), analytic; and the Fisher of the
    same experiment (via a callable sigma) equals it."""
    n, mu, s = 8, 0.4, 1.7
    exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(n), ff.Gaussian(sigma=lambda p: p["s"]))
    fid = {"mu": mu, "s": s}
    with float64():
        _, loglike = _log_likelihood_fn(exp, fid)
        theta0 = _theta0(fid)
        data = mu + s * np.concatenate([np.sqrt(n) * np.eye(n), -np.sqrt(n) * np.eye(n)])
        H = jax.jit(jax.vmap(jax.hessian(loglike), in_axes=(None, 0)))(theta0, jnp.asarray(data))
        H = np.asarray(H).mean(axis=0)
    expected = np.diag([n / s**2, 2 * n / s**2])
    np.testing.assert_allclose(-H, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ff.fisher(exp, fid).matrix, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------
# Information identity with the noise model's own simulator (Monte Carlo)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_information_identity_with_simulated_data(case):
    """E[score] = 0 and E[score scoreᵀ] = F for data drawn with noise.simulate.

    Tolerance: 5 Monte Carlo standard errors, estimated from the same sample. Simulating
    must not warn.
    """
    exp, fid = CASES[case]
    F = ff.fisher(exp, fid).matrix
    m = 2000
    with float64():
        _, loglike = _log_likelihood_fn(exp, fid)
        theta0 = _theta0(fid)
        params = dict(zip(fid, theta0, strict=True))
        mean = exp(params)
        keys = jax.random.split(jax.random.key(20240601), m)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # incl. JAX deprecations, which become errors
            data = jax.jit(jax.vmap(lambda k: exp.noise.simulate(k, mean, params, exp.design)))(
                keys
            )
        assert data.shape == (m, *mean.shape) and data.dtype == mean.dtype
        scores = jax.jit(jax.vmap(jax.grad(loglike), in_axes=(None, 0)))(theta0, data)
        scores = np.asarray(scores)
    assert scores.dtype == np.float64
    se_mean = scores.std(axis=0) / np.sqrt(m)
    assert np.all(np.abs(scores.mean(axis=0)) <= 5 * se_mean)
    outer = scores[:, :, None] * scores[:, None, :]
    se = outer.std(axis=0) / np.sqrt(m)
    assert np.all(np.abs(outer.mean(axis=0) - F) <= 5 * se)


def test_simulate_gaussian_covariance_and_psd_noise_power():
    """Sample second moments of the simulated noise: C for Gaussian(cov), 2/w per bin for
    PSD (real and imaginary parts each 1/w, w = 4Δf/S)."""
    m = 5000
    C = 0.01 * _spd(10, seed=3)
    gexp, gfid = CASES["gaussian_cov"]
    pexp, pfid = CASES["psd"]
    with float64():
        keys = jax.random.split(jax.random.key(7), m)
        params = {k: jnp.float64(v) for k, v in gfid.items()}
        mean = gexp(params)
        r = np.asarray(
            jax.jit(jax.vmap(lambda k: gexp.noise.simulate(k, mean, params, X)))(keys) - mean
        )
        pparams = {k: jnp.float64(v) for k, v in pfid.items()}
        pmean = pexp(pparams)
        n = np.asarray(
            jax.jit(jax.vmap(lambda k: pexp.noise.simulate(k, pmean, pparams, FREQ)))(keys) - pmean
        )
    sample = r.T @ r / m
    d = np.sqrt(np.diag(C))
    # Sampling error of a covariance entry ~ sqrt((C_ii C_jj + C_ij²)/m) <= d_i d_j sqrt(2/m).
    assert np.all(np.abs(sample - C) <= 5 * np.sqrt(2 / m) * np.outer(d, d))
    w = 4 * 0.5 / PSD_VALUES
    power = np.mean(np.abs(n) ** 2, axis=0) * w  # E = 2 per bin, variance of |z|² is 4
    assert np.all(np.abs(power - 2.0) <= 5 * 2.0 / np.sqrt(m))
    assert abs(np.mean(n.real * n.imag * w)) <= 5 / np.sqrt(m * FREQ.size)


# ---------------------------------------------------------------------------------------
# Log-likelihoods against scipy closed forms
# ---------------------------------------------------------------------------------------
def test_gaussian_log_likelihoods_match_scipy():
    rng = np.random.default_rng(11)
    mean = np.linspace(-1, 1, 6)
    data = mean + rng.normal(size=6)
    C = _spd(6, seed=4)
    sigma = np.linspace(0.5, 1.5, 6)
    with float64():
        full = float(ff.Gaussian(cov=C).log_likelihood(data, jnp.asarray(mean), {}, None))
        diag = float(ff.Gaussian(sigma=sigma).log_likelihood(data, jnp.asarray(mean), {}, None))
    assert full == pytest.approx(scipy.stats.multivariate_normal(mean, C).logpdf(data), rel=1e-13)
    assert diag == pytest.approx(scipy.stats.norm(mean, sigma).logpdf(data).sum(), rel=1e-13)


def test_poisson_log_likelihood_matches_scipy():
    lam = np.array([0.5, 3.0, 12.0, 40.0])
    counts = np.array([0.0, 2.0, 15.0, 37.0])
    with float64():
        value = float(ff.Poisson().log_likelihood(counts, jnp.asarray(lam), {}, None))
    assert value == pytest.approx(scipy.stats.poisson(lam).logpmf(counts).sum(), rel=1e-13)


def test_psd_log_likelihood_is_whittle_up_to_a_constant():
    f = np.linspace(10.0, 50.0, 9)
    S = 1e-46 * (1 + f / 30.0)
    df = 0.25
    h = 1e-23 * np.exp(1j * f)
    d1 = h + 3e-24 * np.exp(0.3j * f)
    d2 = h - 1e-24 * (1 + 1j)
    noise = ff.PSD(S, df)
    with float64():
        l1 = float(noise.log_likelihood(d1, jnp.asarray(h), {}, f))
        l2 = float(noise.log_likelihood(d2, jnp.asarray(h), {}, f))

    def inner(a, b):
        return 4 * df * np.real(np.sum(np.conj(a) * b / S))

    assert l1 - l2 == pytest.approx(
        -0.5 * inner(d1 - h, d1 - h) + 0.5 * inner(d2 - h, d2 - h), rel=1e-12
    )


# ---------------------------------------------------------------------------------------
# The data-space metric (inner) and PSD specifics
# ---------------------------------------------------------------------------------------
def test_inner_products_match_numpy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 2)), rng.normal(size=(6, 3))
    C = _spd(6, seed=6)
    lam = np.linspace(1, 6, 6)
    S = np.linspace(1, 2, 6)
    ac = a + 1j * rng.normal(size=(6, 2))
    bc = b - 1j * rng.normal(size=(6, 3))
    with float64():
        mean = jnp.asarray(lam)
        g = np.asarray(ff.Gaussian(cov=C).inner(a, b, mean, {}, None))
        p = np.asarray(ff.Poisson().inner(a, b, mean, {}, None))
        s = np.asarray(ff.PSD(S, 0.1).inner(ac, bc, jnp.asarray(ac[:, 0]), {}, None))
    np.testing.assert_allclose(g, a.T @ np.linalg.solve(C, b), rtol=1e-12)
    np.testing.assert_allclose(p, a.T @ (b / lam[:, None]), rtol=1e-13)
    np.testing.assert_allclose(s, 0.4 * np.real(ac.conj().T @ (bc / S[:, None])), rtol=1e-13)


def test_fixed_noise_has_no_covariance_information():
    for noise in (
        ff.Gaussian(sigma=1.0),
        ff.Gaussian(cov=np.eye(2)),
        ff.Poisson(),
        ff.PSD(1.0, 1.0),
    ):
        assert noise.covariance_information(jnp.zeros(2), None, None, None, "forward") is None


def test_psd_two_detectors_add():
    """A (2, n) output with a (2, n) PSD is the sum of two one-detector Fisher matrices."""
    f = FREQ
    S = np.stack([PSD_VALUES, 3 * PSD_VALUES[::-1]])
    fid = {"lnA": 0.0, "tc": 0.003, "phi": 0.2}

    def network(p, f):
        h = chirp(p, f)
        return jnp.stack([h, 0.5 * h * jnp.exp(1j * 0.7)])

    F = ff.fisher(ff.Experiment(network, ff.PSD(S, 0.5), design=f), fid).matrix
    F1 = ff.fisher(ff.Experiment(chirp, ff.PSD(S[0], 0.5), design=f), fid).matrix
    F2 = ff.fisher(
        ff.Experiment(
            lambda p, f: 0.5 * chirp(p, f) * jnp.exp(1j * 0.7), ff.PSD(S[1], 0.5), design=f
        ),
        fid,
    ).matrix
    assert scaled_close(F, F1 + F2, rtol=1e-13)


def test_psd_callable_and_per_bin_df():
    f = FREQ
    df = np.full_like(f, 0.5)
    fid = {"lnA": 0.0, "tc": 0.003, "phi": 0.2}
    F_arr = ff.fisher(ff.Experiment(chirp, ff.PSD(PSD_VALUES, 0.5), design=f), fid).matrix
    F_fn = ff.fisher(
        ff.Experiment(chirp, ff.PSD(lambda f: 1e-3 * (1 + (f / 60.0) ** 2), df), design=f), fid
    ).matrix
    assert scaled_close(F_fn, F_arr, rtol=1e-13)


def test_real_output_with_psd_noise():
    """PSD noise also accepts real output: (a|b) = 4Δf Σ a b / S."""
    f = np.linspace(1.0, 2.0, 5)
    F = ff.fisher(ff.Experiment(lambda p, f: p["a"] * f, ff.PSD(2.0, 0.5), design=f), {"a": 1.0})
    assert F.matrix[0, 0] == pytest.approx(4 * 0.5 * np.sum(f**2) / 2.0, rel=1e-14)


def test_noise_models_are_pytrees_and_reprs_name_the_settings():
    noise = ff.Gaussian(sigma=np.array([0.1, 0.2]))
    leaves, tree = jax.tree_util.tree_flatten(noise)
    back = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_array_equal(back.sigma, noise.sigma)
    assert "sigma" in repr(noise)
    assert "cov" in repr(ff.Gaussian(cov=np.eye(2)))
    assert repr(ff.Poisson()) == "Poisson()"
    assert "psd" in repr(ff.PSD(1.0, 0.5)) and "df" in repr(ff.PSD(1.0, 0.5))

    def my_sigma(p):
        return p["s"]

    assert "my_sigma" in repr(ff.Gaussian(sigma=my_sigma))


def test_experiment_replace_under_jit():
    """Experiment is a pytree: a traced design goes through replace() inside jit."""
    exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.5), design=np.ones(3))

    @jax.jit
    def info(t):
        return ff.fisher_information(exp.replace(design=t), {"a": 1.0}, ("a",))[0, 0]

    t = np.array([1.0, 2.0, 3.0])
    with float64():
        value = float(info(jnp.asarray(t)))
    assert value == pytest.approx(np.sum(t**2) / 0.25, rel=1e-14)


@pytest.mark.parametrize("kind", ["sigma", "cov", "poisson", "psd_complex", "psd_real"])
def test_whiten_is_a_square_root_of_the_metric(kind):
    """(W a)ᵀ(W b) must equal the noise model's inner product, computed here by hand."""
    rng = np.random.default_rng(3)
    n = 6
    a = rng.normal(size=(n, 2))
    b = rng.normal(size=(n, 3))
    mean = np.abs(rng.normal(size=n)) + 1.0
    if kind == "sigma":
        sig = np.linspace(0.5, 2.0, n)
        noise, metric = ff.Gaussian(sigma=sig), np.diag(1 / sig**2)
    elif kind == "cov":
        B = rng.normal(size=(n, n))
        C = B @ B.T + n * np.eye(n)
        noise, metric = ff.Gaussian(cov=C), np.linalg.inv(C)
    elif kind == "poisson":
        noise, metric = ff.Poisson(), np.diag(1 / mean)
    else:
        psd, df = np.linspace(1.0, 3.0, n), 0.25
        noise, metric = ff.PSD(psd, df), np.diag(4 * df / psd)
        if kind == "psd_complex":
            a = a + 1j * rng.normal(size=a.shape)
            b = b + 1j * rng.normal(size=b.shape)
            mean = mean + 0j
    expected = np.real(np.conj(a).T @ metric @ b)
    with float64():
        wa = np.asarray(noise.whiten(jnp.asarray(a), jnp.asarray(mean), {}, None))
        wb = np.asarray(noise.whiten(jnp.asarray(b), jnp.asarray(mean), {}, None))
        inner = np.asarray(noise.inner(jnp.asarray(a), jnp.asarray(b), jnp.asarray(mean), {}, None))
    np.testing.assert_allclose(wa.T @ wb, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inner, expected, rtol=1e-12, atol=1e-12)


def test_covariance_symmetry_is_checked_relative_to_the_variances():
    # Correlation 0.9 above the diagonal, 0 below, in a tiny-variance block: asymmetric
    # although max|C - Cᵀ| / max|C| is only 1e-12.
    C = np.diag([1.0, 1e-24])
    C[0, 1] = 0.9e-12
    with pytest.raises(ValueError, match=r"cov is not symmetric: entry \[0,1\]"):
        ff.Gaussian(cov=C)
    t = np.linspace(0.0, 1.0, 5)
    lin = ff.Experiment(
        lambda p, t: p["a"] + p["b"] * t,
        ff.Gaussian(cov=lambda p: p["a"] * (jnp.eye(5) + jnp.triu(jnp.ones((5, 5)), 1))),
        t,
    )
    with pytest.raises(ValueError, match="must be symmetric"):
        ff.fisher(lin, {"a": 1.0, "b": 2.0})
