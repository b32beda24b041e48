"""Profile likelihoods against closed forms.

* Gaussian linear models: the profile is exactly (ψ − ψ̂)²/σ² with σ from (JᵀC⁻¹J)⁻¹, and the
  likelihood-ratio interval equals the Fisher interval.
* y = a·b·x: the profile of a is flat and the nuisance follows b = (a·b)₀/a.
* Poisson decay counts and Gaussian data with an unknown variance: the nuisance can be
  profiled out by hand, giving closed-form profiles.
* Reduced Michaelis–Menten, S' = −V S/(K + S) with (V, K) = (1, 10), substrate observed:
  open profiles at S0 ≪ K (only V/K is determined), closed ones at S0 ≫ K.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._engine import evaluation_kernel
from fisherforecast._identify.profile_fit import chi2_gradient

X = np.linspace(0.0, 2.0, 7)
QUAD_FID = {"a": 1.0, "b": 2.0, "c": 0.5}


def quadratic(p, x):
    return p["a"] + p["b"] * x + p["c"] * x**2


@pytest.fixture(scope="module")
def quad_exp():
    return ff.Experiment(quadratic, ff.Gaussian(sigma=0.3), design=X)


def quad_sigma():
    J = np.stack([np.ones_like(X), X, X**2], axis=1) / 0.3
    return np.sqrt(np.diag(np.linalg.inv(J.T @ J)))


# ---------------------------------------------------------------------------------------
# Linear Gaussian: exact parabola
# ---------------------------------------------------------------------------------------
def test_linear_profile_is_the_exact_parabola(quad_exp):
    prof = ff.profile_likelihood(quad_exp, QUAD_FID, "b", span=3.0, scale="linear")
    sig = quad_sigma()[1]
    assert prof.fisher_sigma == pytest.approx(sig, rel=1e-12)
    np.testing.assert_allclose(prof.delta, ((prof.grid - 2.0) / sig) ** 2, atol=1e-9)
    assert prof.converged.all()
    for level in (1.0, 3.841458820694124):
        lo, hi = prof.interval(level)
        half = math.sqrt(level) * sig
        assert lo == pytest.approx(2.0 - half, abs=1e-6 * sig)
        assert hi == pytest.approx(2.0 + half, abs=1e-6 * sig)
        assert prof.intervals[level] == (lo, hi)
        flo, fhi = prof.fisher_interval(level)
        assert (flo, fhi) == (
            pytest.approx(2.0 - half, rel=1e-12),
            pytest.approx(2.0 + half, rel=1e-12),
        )
    assert prof.identifiable and prof.verdict == "identifiable" and not prof.flat
    # The nuisance path is the conditional mean: a, c move linearly with b.
    J = np.stack([np.ones_like(X), X, X**2], axis=1)
    F = J.T @ J
    slope = -np.linalg.solve(F[np.ix_([0, 2], [0, 2])], F[[0, 2], 1])
    np.testing.assert_allclose(prof.nuisance["a"], 1.0 + slope[0] * (prof.grid - 2.0), atol=1e-7)
    np.testing.assert_allclose(prof.nuisance["c"], 0.5 + slope[1] * (prof.grid - 2.0), atol=1e-7)
    # Default grid: ψ̂ ± span·σ with the best fit exactly on it.
    assert prof.grid[0] == pytest.approx(2.0 - 3 * sig) and prof.grid[-1] == pytest.approx(
        2.0 + 3 * sig
    )
    assert 2.0 in prof.grid and len(prof.grid) == 21
    # With the default span of 4σ the grid crosses zero; the model is finite there, so the
    # grid is not clipped (see test_grid_is_clipped_only_where_the_model_fails).
    wide = ff.profile_likelihood(quad_exp, QUAD_FID, "b", n_grid=9, scale="linear")
    assert wide.grid[0] == pytest.approx(2.0 - 4 * sig) and wide.grid[0] < 0
    assert not wide.notes


def test_user_data_profile_is_centred_on_the_least_squares_fit(quad_exp):
    data = np.array([1.31, 1.32, 2.43, 3.88, 4.31, 6.22, 7.03])  # any data: closed form
    prof = ff.profile_likelihood(quad_exp, QUAD_FID, "b", data=data)
    J = np.stack([np.ones_like(X), X, X**2], axis=1)
    best = np.linalg.lstsq(J, data, rcond=None)[0]
    sig = quad_sigma()[1]
    assert prof.data == "user"
    assert prof.estimate == pytest.approx(best[1], abs=1e-7 * sig)
    assert prof.best_fit["a"] == pytest.approx(best[0], abs=1e-6)
    np.testing.assert_allclose(prof.delta, ((prof.grid - best[1]) / sig) ** 2, atol=1e-8)
    lo, hi = prof.interval(1.0)
    assert lo == pytest.approx(best[1] - sig, abs=1e-6 * sig)
    assert hi == pytest.approx(best[1] + sig, abs=1e-6 * sig)


def test_single_parameter_needs_no_reoptimisation():
    exp = ff.Experiment(lambda p, x: p["b"] * x, ff.Gaussian(sigma=0.5), design=X)
    prof = ff.profile_likelihood(exp, {"b": 2.0}, "b", n_grid=9)
    sig = 0.5 / np.linalg.norm(X)
    np.testing.assert_allclose(prof.delta, ((prof.grid - 2.0) / sig) ** 2, atol=1e-9)
    assert prof.nuisance == {}


def test_correlated_linear_profile_takes_one_fisher_step_per_point():
    """a + b·x + c·x² on x ∈ [10, 12]: the three coefficients are correlated beyond 0.998,
    so coordinates scaled only by the conditional errors leave a narrow valley. The fits
    are whitened by the Fisher block and start from the conditional mean (the predictor)
    with the inverse Fisher Hessian: on a linear Gaussian model the start is the optimum,
    or one step from it, at every grid point."""
    x = np.linspace(10.0, 12.0, 9)
    exp = ff.Experiment(quadratic, ff.Gaussian(sigma=0.3), design=x)
    J = np.stack([np.ones_like(x), x, x**2], axis=1) / 0.3
    F = J.T @ J
    corr = np.linalg.inv(F)
    corr = corr / np.sqrt(np.outer(np.diag(corr), np.diag(corr)))
    assert np.min(np.abs(corr[np.triu_indices(3, 1)])) > 0.998
    prof = ff.profile_likelihood(exp, QUAD_FID, "c", n_grid=11, scale="linear", extend=False)
    sig = math.sqrt(np.linalg.inv(F)[2, 2])
    np.testing.assert_allclose(prof.delta, ((prof.grid - 0.5) / sig) ** 2, atol=1e-8)
    assert prof.converged.all() and prof.steps.max() <= 2, prof.steps


# ---------------------------------------------------------------------------------------
# Non-identifiable: flat profile
# ---------------------------------------------------------------------------------------
def test_product_model_profile_is_flat():
    exp = ff.Experiment(
        lambda p, x: p["a"] * p["b"] * x, ff.Gaussian(sigma=0.1), design=np.linspace(0.1, 1.0, 6)
    )
    prof = ff.profile_likelihood(exp, {"a": 1.0, "b": 2.0}, "a", scale="linear", extend=False)
    assert prof.flat and not prof.identifiable
    assert prof.verdict.startswith("structurally non-identifiable")
    assert np.max(prof.delta) < 1e-10
    assert prof.intervals[1.0] == (-math.inf, math.inf)
    assert prof.open[1.0] == (True, True)
    assert prof.fisher_sigma == math.inf
    # The Fisher matrix is singular, so the grid falls back to a ± 50 %.
    assert prof.grid[0] == pytest.approx(0.5) and prof.grid[-1] == pytest.approx(1.5)
    np.testing.assert_allclose(prof.nuisance["b"] * prof.grid, 2.0, rtol=1e-7)


# ---------------------------------------------------------------------------------------
# Other likelihoods: closed-form profiles
# ---------------------------------------------------------------------------------------
def test_poisson_profile_against_closed_form():
    # λᵢ = A e^{−xᵢ/τ}; for fixed τ the best A is Σnᵢ / Σe^{−xᵢ/τ}.
    x = np.linspace(0.0, 4.0, 9)
    counts = np.array([101.0, 60.0, 37.0, 30.0, 14.0, 9.0, 8.0, 3.0, 2.0])
    exp = ff.Experiment(lambda p, x: p["A"] * jnp.exp(-x / p["tau"]), ff.Poisson(), design=x)
    prof = ff.profile_likelihood(exp, {"A": 100.0, "tau": 1.0}, "tau", data=counts, n_grid=15)

    def neg2logl(tau):
        e = np.exp(-x / tau)
        A = counts.sum() / e.sum()
        lam = A * e
        return -2 * np.sum(counts * np.log(lam) - lam)

    tau_grid = np.linspace(0.5, 2.0, 2001)
    ref = np.array([neg2logl(t) for t in prof.grid])
    best = min(neg2logl(t) for t in tau_grid)
    np.testing.assert_allclose(prof.delta, ref - best, atol=1e-4)  # best: grid-limited
    np.testing.assert_allclose(prof.delta - prof.delta.min(), ref - ref.min(), atol=1e-8)
    np.testing.assert_allclose(
        prof.nuisance["A"], [counts.sum() / np.exp(-x / t).sum() for t in prof.grid], rtol=1e-7
    )


def test_gaussian_with_unknown_variance_against_closed_form():
    # N(μ, s²) data with s a parameter (covariance depends on it: needs the global fit):
    # for fixed μ the best s² is mean((x − μ)²), so Δ(μ) = n ln(ŝ²(μ)/ŝ²(μ̂)).
    data = np.array([0.3, -1.2, 0.8, 2.1, 0.4, -0.2, 1.5, 0.9])
    n = data.size
    exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(n), ff.Gaussian(sigma=lambda p: p["s"]))
    prof = ff.profile_likelihood(exp, {"mu": 0.0, "s": 1.0}, "mu", data=data)
    mu_hat = data.mean()
    s2 = np.mean((data - mu_hat) ** 2)
    assert prof.estimate == pytest.approx(mu_hat, abs=1e-6)
    assert prof.best_fit["s"] == pytest.approx(math.sqrt(s2), rel=1e-6)
    ref = n * np.log(np.array([np.mean((data - m) ** 2) for m in prof.grid]) / s2)
    np.testing.assert_allclose(prof.delta, ref, atol=1e-8)
    # LR interval: n ln(1 + (μ−μ̂)²/ŝ²) = 1. The profile is not a parabola, so the endpoint
    # comes from the cubic interpolation between grid points 0.4σ apart: ~1e-4 σ.
    half = math.sqrt(s2 * math.expm1(1 / n))
    lo, hi = prof.interval(1.0)
    assert lo == pytest.approx(mu_hat - half, abs=1e-4) and hi == pytest.approx(
        mu_hat + half, abs=1e-4
    )
    # The fiducial μ = 0 is not positive, so the grid is not clipped at zero.
    assert prof.grid[0] < 0 and not prof.notes


# ---------------------------------------------------------------------------------------
# ODE model (reduced Michaelis–Menten, S0 ≪ K): practical non-identifiability
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # one ODE profile compilation (~10 s of CPU)
def test_michaelis_menten_profiles_open_at_low_substrate():
    mm = ff.ode_model(
        lambda t, s, p: -p["V"] * s / (p["K"] + s), y0=lambda p: p["S0"], rtol=1e-8, atol=1e-10
    )
    out = {}
    for S0 in (1.0, 100.0):
        T = 3 * (10.0 + S0)
        exp = ff.Experiment(mm, ff.Gaussian(sigma=0.01 * S0), design=np.arange(1, 11) * T / 10)
        out[S0] = ff.profile_likelihood(
            exp, {"V": 1.0, "K": 10.0, "S0": S0}, "K", params=["V", "K"], n_grid=9
        )
    low, high = out[1.0], out[100.0]
    # S0 ≪ K: K → ∞ with V/K fixed fits the data (linear kinetics): open above, although the
    # Fisher interval is finite. The re-optimised V follows K (V/K ≈ const).
    assert low.open[3.841458820694124] == (False, True)
    assert not low.identifiable and "open above" in low.verdict
    assert math.isfinite(low.fisher_sigma)
    ratio = low.nuisance["V"] / low.grid
    assert np.ptp(ratio[low.grid > 5]) / ratio.mean() < 0.2
    assert high.identifiable and all(math.isfinite(b) for b in high.intervals[1.0])
    # Near the best fit the profile agrees with the Fisher parabola to a few per cent.
    lo, hi = high.interval(1.0)
    flo, fhi = high.fisher_interval(1.0)
    assert (hi - lo) / (fhi - flo) == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------------------
# Batch, retracing, output, errors
# ---------------------------------------------------------------------------------------
def test_batch_isolates_failures_and_does_not_retrace():
    exp = ff.Experiment(
        lambda p, x: p["a"] * x + jnp.sqrt(p["c"]) * x**2, ff.Gaussian(sigma=0.1), design=X
    )
    fid = {"a": 1.0, "c": 4.0}
    ff.profile_likelihood(exp, fid, "a", n_grid=7)
    before = (evaluation_kernel._cache_size(), chi2_gradient._cache_size())
    # The grid brackets a's best fit (1) but not c's (4): c's profile fails, a's does not.
    # Six grid points plus the inserted best fit make the same 7-point scan as above.
    with pytest.warns(UserWarning, match="limited by the grid"):  # a coarse grid for a
        batch = ff.profile_likelihood(exp, fid, ["a", "c"], grid=np.linspace(-3.0, 3.5, 6))
    assert (evaluation_kernel._cache_size(), chi2_gradient._cache_size()) == before
    assert isinstance(batch, ff.ProfileBatch)
    assert list(batch) == ["a"] and "c" in batch.errors
    assert "both sides of the best fit" in batch.errors["c"]
    assert "failed" in batch.summary()
    json.dumps(batch.to_dict(), allow_nan=False)


def test_results_are_read_only_records(quad_exp):
    batch = ff.profile_likelihood(quad_exp, QUAD_FID, ["a", "b"], n_grid=9)
    prof = batch["b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prof.estimate = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.errors = {}
    with pytest.raises(TypeError):
        batch["c"] = prof  # a read-only mapping
    assert len(batch) == 2 and dict(batch.items()) == {"a": batch["a"], "b": prof}
    assert "_center" not in prof.public_fields() and "deltas" in prof.public_fields()
    assert batch.to_dict()["profiles"]["b"] == prof.to_dict()
    assert prof.to_dict()["deltas"] == list(prof.deltas) == [1.0, pytest.approx(3.8415, abs=1e-4)]


def test_summary_to_dict_and_plot(quad_exp):
    batch = ff.profile_likelihood(quad_exp, QUAD_FID, ["a", "b"], n_grid=9)
    text = batch.summary()
    assert "LR 68% interval" in text and text.count("identifiable") == 2
    prof = batch["b"]
    assert "Fisher" in prof.summary()
    d = prof.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["verdict"] == "identifiable" and len(d["grid"]) == 9
    ax = prof.plot()
    assert ax.get_xlabel() == "b" and ax.get_ylabel() == "Δ(−2 ln L)"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "profile likelihood" in labels and "Fisher (quadratic)" in labels
    profile_line = ax.get_lines()[0]
    np.testing.assert_allclose(profile_line.get_ydata(), prof.delta)
    fig = batch.plot()
    assert sum(a.get_visible() for a in fig.axes) == 2


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"name_or_names": "zz"}, ff.ParameterError, "zz"),
        ({"name_or_names": 3}, TypeError, "name_or_names"),
        ({"grid": [1.0, 0.5, 2.0]}, ValueError, "grid"),
        ({"n_grid": 3}, ValueError, "n_grid"),
        ({"data": np.ones(3)}, ValueError, "shape"),
        ({"deltas": (-1.0,)}, ValueError, "deltas"),
        ({"mode": "sideways"}, ValueError, "mode"),
    ],
)
def test_bad_input(quad_exp, kwargs, exc, match):
    args = {"name_or_names": "b", **kwargs}
    name = args.pop("name_or_names")
    with pytest.raises(exc, match=match):
        ff.profile_likelihood(quad_exp, QUAD_FID, name, **args)


def test_user_grid_must_bracket_the_best_fit_and_gets_it_inserted():
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-t / p["tau"]),
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0.0, 10.0, 20),
    )
    fid = {"A": 1.0, "tau": 2.0}
    with pytest.raises(ValueError, match=r"`grid` for 'tau' spans \[5, 6\]"):
        ff.profile_likelihood(exp, fid, "tau", grid=np.linspace(5.0, 6.0, 5))
    with pytest.raises(ValueError, match="`grid` must be"):
        ff.profile_likelihood(exp, fid, "tau", grid="fine")
    sigma = ff.fisher(exp, fid).sigma()["tau"]
    prof = ff.profile_likelihood(exp, fid, "tau", grid=np.linspace(1.1, 3.3, 12))
    lo, hi = prof.intervals[1.0]
    # Asimov data, nearly linear model: the LR interval is close to the Fisher one.
    assert abs(lo - (2.0 - sigma)) < 0.2 * sigma and abs(hi - (2.0 + sigma)) < 0.2 * sigma


# ---------------------------------------------------------------------------------------
# Review fixes: each against an independent answer
# ---------------------------------------------------------------------------------------
def _bisect(f, a, b, iters=200):
    """Root of a monotone f on [a, b] (f(a), f(b) of opposite signs)."""
    fa = f(a)
    for _ in range(iters):
        m = 0.5 * (a + b)
        if (f(m) > 0) == (fa > 0):
            a, fa = m, f(m)
        else:
            b = m
    return 0.5 * (a + b)


@pytest.mark.parametrize("noise", ["sigma", "cov"])
def test_asimov_with_parameter_dependent_noise_profiles_the_expected_deviance(noise):
    # N data of mean m and noise s. The expected deviance under (m0, s0) is
    # N [2 ln s + (s0² + (m − m0)²)/s²]: profiling s gives Δ(m) = N ln(1 + (m − m0)²/s0²),
    # profiling m gives Δ(s) = N [2 ln(s/s0) + s0²/s² − 1]. (Noise-free data used as data
    # would drive s to 0.)
    n, m0, s0 = 20, 1.0, 0.5
    gauss = (
        ff.Gaussian(sigma=lambda p, x: p["s"] * jnp.ones_like(x))
        if noise == "sigma"
        else ff.Gaussian(cov=lambda p: p["s"] ** 2 * jnp.eye(n))
    )
    exp = ff.Experiment(lambda p, x: p["m"] + 0.0 * x, gauss, design=np.zeros(n))
    batch = ff.profile_likelihood(exp, {"m": m0, "s": s0}, ["m", "s"], n_grid=9)
    pm, ps = batch["m"], batch["s"]
    for prof in (pm, ps):
        assert prof.best_fit == {"m": m0, "s": s0} and prof.identifiable
        assert not prof.notes and prof.converged.all()
    np.testing.assert_allclose(pm.delta, n * np.log1p(((pm.grid - m0) / s0) ** 2), atol=1e-8)
    np.testing.assert_allclose(
        ps.delta, n * (2 * np.log(ps.grid / s0) + (s0 / ps.grid) ** 2 - 1), atol=1e-8
    )
    np.testing.assert_allclose(pm.nuisance["s"], np.hypot(s0, pm.grid - m0), rtol=1e-7)
    # Fisher: 1/σ_m² = N/s0², 1/σ_s² = 2N/s0² (the ½ tr(C⁻¹∂C C⁻¹∂C) term).
    assert pm.fisher_sigma == pytest.approx(s0 / math.sqrt(n), rel=1e-12)
    assert ps.fisher_sigma == pytest.approx(s0 / math.sqrt(2 * n), rel=1e-12)
    half = s0 * math.sqrt(math.expm1(1.0 / n))
    lo, hi = pm.interval(1.0)
    assert lo == pytest.approx(m0 - half, abs=2e-3 * pm.fisher_sigma)
    assert hi == pytest.approx(m0 + half, abs=2e-3 * pm.fisher_sigma)


def test_asimov_with_proportional_errors_is_centred_on_the_fiducial():
    # μ = A e^{−t/τ}, σ = 0.1 μ. With u = μ0/μ = (A0/A)·w(τ), the expected deviance is
    # Σ [−2 ln u + u² + 100 (1 − u)²] + const; for fixed τ the best r = A0/A solves
    # 202 Σw² r² − 200 Σw r − 2N = 0. (Fitting the noise-free data instead biases A by 1 %.)
    t = np.linspace(0.5, 5.0, 10)
    fid = {"A": 2.0, "tau": 1.5}

    def model(p, t):
        return p["A"] * jnp.exp(-t / p["tau"])

    exp = ff.Experiment(model, ff.Gaussian(sigma=lambda p, t: 0.1 * model(p, t)), design=t)
    prof = ff.profile_likelihood(exp, fid, "tau", n_grid=9)

    def deviance(tau):
        w = np.exp(t * (1 / tau - 1 / fid["tau"]))
        a, b = 202 * np.sum(w**2), 200 * np.sum(w)
        r = (b + math.sqrt(b * b + 8 * a * t.size)) / (2 * a)
        u = r * w
        return np.sum(-2 * np.log(u) + u**2 + 100 * (1 - u) ** 2), fid["A"] / r

    ref = np.array([deviance(x)[0] for x in prof.grid]) - deviance(fid["tau"])[0]
    assert prof.best_fit == fid and prof.estimate == fid["tau"]
    np.testing.assert_allclose(prof.delta, ref, atol=1e-8)
    np.testing.assert_allclose(prof.nuisance["A"], [deviance(x)[1] for x in prof.grid], rtol=1e-7)


def test_asimov_needs_data_for_other_parameter_dependent_noise():
    class LogCosh(ff.NoiseModel):
        """ln L = −Σ ln cosh(r/b) − N ln b, with b fixed or the parameter "b"."""

        def __init__(self, b=None):
            self.b = b

        def tree_flatten(self):
            return (), self.b

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(aux)

        def inner(self, a, b, mean, params, design):  # curvature of ln cosh at r = 0
            scale = params["b"] if self.b is None else self.b
            return a.T @ b / scale**2

        def log_likelihood(self, data, mean, params, design):
            b = params["b"] if self.b is None else self.b
            r = (jnp.asarray(data) - mean).reshape(-1)
            return -jnp.sum(jnp.log(jnp.cosh(r / b))) - r.size * jnp.log(b)

    x = np.array([0.5, 1.0, 2.0])
    model = lambda p, x: p["a"] * x  # noqa: E731
    varying = ff.Experiment(model, LogCosh(), design=x)
    with pytest.raises(ValueError, match=r"depends on the parameters.*Pass `data=`"):
        ff.profile_likelihood(varying, {"a": 1.0, "b": 0.5}, "a")
    # Fixed noise: the noise-free data are still the best fit; Δ(a) = 2 Σ ln cosh(Δa·x/b).
    fixed = ff.Experiment(model, LogCosh(0.5), design=x)
    prof = ff.profile_likelihood(fixed, {"a": 1.0}, "a", n_grid=9)
    ref = [2 * np.sum(np.log(np.cosh((g - 1.0) * x / 0.5))) for g in prof.grid]
    assert prof.estimate == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(prof.delta, ref, atol=1e-9)


def test_coarse_grid_gives_no_spurious_root_and_warns():
    # Δ(a) = ((e^{5a} − e^5)/0.1)²: the Δ = 1 endpoints are ln(e^5 ± 0.1)/5.
    exp = ff.Experiment(
        lambda p, x: jnp.exp(p["a"] * x), ff.Gaussian(sigma=0.1), design=np.array([5.0])
    )
    true_lo, true_hi = math.log(math.exp(5) - 0.1) / 5, math.log(math.exp(5) + 0.1) / 5
    with pytest.warns(UserWarning, match="limited by the grid"):
        prof = ff.profile_likelihood(exp, {"a": 1.0}, "a", grid=np.array([0.7, 1.0, 1.3, 1.6]))
    assert any("limited by the grid" in t for t in prof.notes)
    with pytest.warns(UserWarning, match="finer `grid`"):
        lo, hi = prof.interval(1.0)
    # A cubic through 1.0, 1.3, 1.6 is not monotone on [1, 1.3] (its spurious root was
    # 1.128): z = sqrt(Δ) is interpolated linearly instead, the best a grid this coarse can do.
    z = 10 * (math.exp(5 * 1.3) - math.exp(5))
    assert hi == pytest.approx(1.0 + 0.3 / z, rel=1e-12)
    assert 1.0 < hi < true_hi and abs(hi - true_hi) < 0.6 * (true_hi - 1.0)
    assert true_lo - 0.3 * (1 - true_lo) > lo > 0.7 and (1 - lo) < 2 * (1 - true_lo)
    # The default grid (spacing 0.4 σ) resolves them, silently.
    fine = ff.profile_likelihood(exp, {"a": 1.0}, "a")
    lo, hi = fine.interval(1.0)
    assert lo == pytest.approx(true_lo, abs=1e-3 * fine.fisher_sigma)
    assert hi == pytest.approx(true_hi, abs=1e-3 * fine.fisher_sigma)
    assert not fine.notes


def test_user_data_compares_with_the_fisher_matrix_at_the_best_fit():
    # Data e^{x} fitted with e^{a x} from a = 0.8: best fit a = 1, Fisher σ there
    # 0.1/sqrt(Σ x² e^{2x}); Δ(a) = Σ ((e^{a x} − e^{x})/0.1)² exactly.
    x = np.array([1.0, 2.0, 3.0])
    exp = ff.Experiment(lambda p, x: jnp.exp(p["a"] * x), ff.Gaussian(sigma=0.1), design=x)
    prof = ff.profile_likelihood(exp, {"a": 0.8}, "a", data=np.exp(x), scale="linear")
    sig = 0.1 / math.sqrt(np.sum(x**2 * np.exp(2 * x)))
    assert prof.estimate == pytest.approx(1.0, abs=1e-6 * sig)
    assert prof.fisher_sigma == pytest.approx(sig, rel=1e-6)
    assert prof.grid[0] == pytest.approx(prof.estimate - 4 * sig, rel=1e-9)
    assert prof.grid[-1] == pytest.approx(prof.estimate + 4 * sig, rel=1e-9)

    def delta(a):
        return np.sum(((np.exp(a * x) - np.exp(x)) / 0.1) ** 2)

    true = (
        _bisect(lambda a: delta(a) - 1, 1 - 2 * sig, 1.0),
        _bisect(lambda a: delta(a) - 1, 1.0, 1 + 2 * sig),
    )
    lo, hi = prof.interval(1.0)
    assert lo == pytest.approx(true[0], abs=1e-3 * sig)
    assert hi == pytest.approx(true[1], abs=1e-3 * sig)
    flo, fhi = prof.fisher_interval(1.0)  # nearly linear at this precision: close
    assert abs(flo - lo) < 0.01 * sig and abs(fhi - hi) < 0.01 * sig


def test_grid_is_clipped_only_where_the_model_fails(quad_exp):
    # c = −0.5 with σ_c = 0.29: the 4σ grid crosses zero, the quadratic is finite there,
    # and the 95 % interval is the Fisher one (linear Gaussian).
    fid = {"a": 1.0, "b": 2.0, "c": -0.5}
    prof = ff.profile_likelihood(quad_exp, fid, "c")
    sig = quad_sigma()[2]
    assert prof.grid[-1] == pytest.approx(-0.5 + 4 * sig) and not prof.notes
    lo, hi = prof.intervals[3.841458820694124]
    half = math.sqrt(3.841458820694124) * sig
    assert (lo, hi) == (
        pytest.approx(-0.5 - half, abs=1e-6 * sig),
        pytest.approx(-0.5 + half, abs=1e-6 * sig),
    )
    assert prof.verdict == "identifiable"
    # y = sqrt(b)·x is NaN for b < 0: the grid (1 ± 8) is clipped at 1 % of b̂. There
    # Δ = (sqrt(0.01) − 1)² = 0.81 < 3.84, so the lower side is open only because of the clip.
    exp = ff.Experiment(
        lambda p, x: jnp.sqrt(p["b"]) * x, ff.Gaussian(sigma=1.0), design=np.array([1.0])
    )
    root = ff.profile_likelihood(exp, {"b": 1.0}, "b", scale="linear")
    assert root.grid[0] == pytest.approx(0.01) and root.grid[-1] == pytest.approx(9.0)
    np.testing.assert_allclose(root.delta, (np.sqrt(root.grid) - 1) ** 2, atol=1e-12)
    assert any("clipped below at 0.01" in t for t in root.notes)
    assert root.open[3.841458820694124] == (True, False)
    assert root.verdict.startswith("undetermined below") and "clipped" in root.verdict
    assert not root.identifiable


def test_multimodal_profile_is_named_in_the_verdict():
    # y = a² with σ = 0.5: Δ(a) = 4 (a² − 1)², minima at ±1; around a = 1 the Δ = L
    # interval is sqrt(1 ± sqrt(L)/2) (z = 2(a² − 1) is quadratic: the cubic is exact).
    exp = ff.Experiment(
        lambda p, x: p["a"] ** 2 * x, ff.Gaussian(sigma=0.5), design=np.array([1.0])
    )
    prof = ff.profile_likelihood(exp, {"a": 1.0}, "a", grid=np.linspace(-1.5, 1.5, 31))
    np.testing.assert_allclose(prof.delta, 4 * (prof.grid**2 - 1) ** 2, atol=1e-12)
    assert prof.multimodal and not prof.identifiable
    assert "multimodal" in prof.verdict and "a = -1" in prof.verdict
    assert prof.other_minimum[0] == pytest.approx(-1.0) and prof.other_minimum[1] < 1e-12
    for level in (1.0, 3.841458820694124):
        lo, hi = prof.intervals[level]
        assert lo == pytest.approx(math.sqrt(1 - math.sqrt(level) / 2), abs=1e-9)
        assert hi == pytest.approx(math.sqrt(1 + math.sqrt(level) / 2), abs=1e-9)
    json.dumps(prof.to_dict(), allow_nan=False)


def test_levels_are_thresholds_and_numpy_scalars_are_accepted(quad_exp):
    prof = ff.profile_likelihood(quad_exp, QUAD_FID, "b", n_grid=9)
    sig = quad_sigma()[1]
    lo, hi = prof.interval(np.float32(3.84))
    half = math.sqrt(float(np.float32(3.84))) * sig
    assert (lo, hi) == (
        pytest.approx(2.0 - half, abs=1e-6 * sig),
        pytest.approx(2.0 + half, abs=1e-6 * sig),
    )
    assert prof.interval(np.int64(1)) == prof.interval(1.0)
    with pytest.raises(ValueError, match=r"thresholds, not confidence levels.*3\.841"):
        ff.profile_likelihood(quad_exp, QUAD_FID, "b", deltas=(0.68, 0.95))
    with pytest.raises(ValueError, match="not confidence levels"):
        prof.interval(0.95)
    with pytest.raises(ValueError, match="`level`"):
        prof.interval("1")
    with pytest.warns(UserWarning, match="below 1"):
        prof.interval(0.455)


def test_levels_are_probability_contents(quad_exp):
    new = ff.profile_likelihood(quad_exp, QUAD_FID, "b", n_grid=9, deltas=(1.0, 4.0))
    # P(χ²₁ < 1) and P(χ²₁ < 4): the probability contents of Δ = 1 and 4.
    probs = (math.erf(1 / math.sqrt(2)), math.erf(2 / math.sqrt(2)))
    old = ff.profile_likelihood(quad_exp, QUAD_FID, "b", n_grid=9, levels=probs)
    np.testing.assert_allclose(old.deltas, (1.0, 4.0), rtol=1e-12)
    # The interval of a linear model is the Fisher one, b ± sqrt(Δ)·σ (closed form).
    sig = quad_sigma()[1]
    assert new.intervals[4.0] == (
        pytest.approx(2.0 - 2 * sig, abs=1e-6 * sig),
        pytest.approx(2.0 + 2 * sig, abs=1e-6 * sig),
    )
    np.testing.assert_allclose(old.interval(old.deltas[1]), new.intervals[4.0], rtol=1e-9)
    with pytest.raises(ValueError, match="probability contents"):
        ff.profile_likelihood(quad_exp, QUAD_FID, "b", levels=(1.0, 4.0))
    with pytest.raises(ValueError, match="pass one"):
        ff.profile_likelihood(quad_exp, QUAD_FID, "b", deltas=(1.0,), levels=(0.5,))


def test_reverse_mode_on_a_forward_only_ode_model_is_refused_clearly():
    decay = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=lambda p: 1.0)
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"mode='reverse'.*supports only \('forward',\)"):
        ff.profile_likelihood(exp, {"k": 1.0}, "k", mode="reverse")
