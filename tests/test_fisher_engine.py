"""The Fisher engine against mathematics: closed forms, numpy re-derivations and finite
differences written independently in this file. Closed forms: the linear model
μ = (a, b, a + 2b) with F = JᵀJ = [[2, 2], [2, 5]]; N draws of N(μ, s²) with
F = diag(N/s², 2N/s²), which needs the ½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC) term (its omission is the bug
known from LSSTDESC/tomo_challenge #37); Poisson F = Σ ∂ᵢλ ∂ⱼλ / λ; the Fisher bias
Δθ = F⁻¹ Jᵀ C⁻¹ Δμ (exactly δ for a linear model with Δμ = J δ); and the GW amplitude
identity F_lnA,lnA = SNR² = 4 Re Σ |h|²/S_n Δf, with ln A decoupled from phase parameters.

Every test runs under JAX's default float32 configuration; the engine must compute in float64
on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import fisherforecast as ff
from fisherforecast._x64 import float64

MODES = ["forward", "reverse"]


def scaled_close(actual, expected, rtol):
    """|A - B| <= rtol * sqrt(B_ii B_jj): entry-wise agreement on the scale of the matrix."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    d = np.sqrt(np.abs(np.diag(expected)))
    return np.max(np.abs(actual - expected) / np.outer(d, d)) <= rtol


# ---------------------------------------------------------------------------------------
# 1. Linear model
# ---------------------------------------------------------------------------------------
def linear3(p):
    return jnp.stack([p["a"], p["b"], p["a"] + 2.0 * p["b"]])


@pytest.mark.parametrize("mode", MODES)
def test_linear_model_validation_case_1(mode):
    exp = ff.Experiment(linear3, ff.Gaussian(sigma=1.0))
    F = ff.fisher(exp, {"a": 1.0, "b": 2.0}, mode=mode)
    np.testing.assert_allclose(F.matrix, [[2.0, 2.0], [2.0, 5.0]], rtol=0, atol=1e-14)
    sig = F.sigma()
    # Closed form: F^-1 = [[5, -2], [-2, 2]] / 6.
    assert sig["a"] == pytest.approx(np.sqrt(5 / 6), rel=1e-14)
    assert sig["b"] == pytest.approx(np.sqrt(2 / 6), rel=1e-14)
    assert round(sig["a"], 6) == 0.912871 and round(sig["b"], 6) == 0.577350
    assert F.names == ("a", "b") and F.fiducial == {"a": 1.0, "b": 2.0}
    assert F.matrix.dtype == np.float64


def _spd(n, seed, jitter=0.5):
    """A fixed, well-conditioned, fully non-diagonal SPD matrix."""
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    return B @ B.T / n + jitter * np.eye(n)


def _design_matrix(n, p):
    x = np.linspace(-1.0, 2.0, n)
    return np.stack([x**k for k in range(p)], axis=1)


def linear_design(p, A):
    theta = jnp.stack([p["c0"], p["c1"], p["c2"]])
    return A @ theta


@pytest.mark.parametrize("mode", MODES)
def test_linear_model_full_covariance(mode):
    """F = Aᵀ C⁻¹ A for a fully correlated covariance."""
    A = _design_matrix(8, 3)
    C = _spd(8, seed=1)
    assert np.min(np.abs(C - np.diag(np.diag(C)))[~np.eye(8, dtype=bool)]) > 0
    exp = ff.Experiment(linear_design, ff.Gaussian(cov=C), design=A)
    F = ff.fisher(exp, {"c0": 0.3, "c1": -1.0, "c2": 2.0}, mode=mode)
    expected = A.T @ np.linalg.solve(C, A)
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-12)


def test_linear_model_per_datum_sigma():
    A = _design_matrix(7, 3)
    sigma = np.linspace(0.1, 2.0, 7)
    exp = ff.Experiment(linear_design, ff.Gaussian(sigma=sigma), design=A)
    F = ff.fisher(exp, {"c0": 0.0, "c1": 1.0, "c2": 0.5})
    np.testing.assert_allclose(F.matrix, A.T @ (A / sigma[:, None] ** 2), rtol=1e-13)


def test_multidimensional_output_and_broadcast_sigma():
    """A (2, 5) output with one sigma per row (broadcast (2, 1)) flattens consistently."""
    t = np.linspace(0.0, 1.0, 5)

    def model(p, t):
        return jnp.stack([p["a"] * t, p["b"] * t**2 + p["a"]])

    sig = np.array([[0.5], [2.0]])
    exp = ff.Experiment(model, ff.Gaussian(sigma=sig), design=t)
    F = ff.fisher(exp, {"a": 1.0, "b": 1.0})
    J_a = np.concatenate([t, np.ones(5)])
    J_b = np.concatenate([np.zeros(5), t**2])
    w = np.concatenate([np.full(5, 0.25), np.full(5, 4.0)])
    J = np.stack([J_a, J_b], 1)
    np.testing.assert_allclose(F.matrix, J.T @ (J / w[:, None]), rtol=1e-13)


# ---------------------------------------------------------------------------------------
# 2. Parameter-dependent covariance
# ---------------------------------------------------------------------------------------
N_DRAWS = 25


def constant_mean(p):
    return p["mu"] * jnp.ones(N_DRAWS)


def sigma_of_params(p):
    return p["s"]


def sigma_of_params_and_design(p, design):
    return p["s"] * jnp.ones_like(design)


def cov_of_params(p):
    return p["s"] ** 2 * jnp.eye(N_DRAWS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["sigma", "sigma_design", "cov"])
def test_gaussian_mean_and_width_validation_case_2(kind, mode):
    """N draws of N(μ, s²): F = diag(N/s², 2N/s²), the 2N/s² coming only from the ½tr term."""
    s = 0.7
    if kind == "sigma":
        exp = ff.Experiment(constant_mean, ff.Gaussian(sigma=sigma_of_params))
    elif kind == "cov":
        exp = ff.Experiment(constant_mean, ff.Gaussian(cov=cov_of_params))
    else:
        exp = ff.Experiment(
            lambda p, x: p["mu"] * jnp.ones_like(x),
            ff.Gaussian(sigma=sigma_of_params_and_design),
            design=np.zeros(N_DRAWS),
        )
    F = ff.fisher(exp, {"mu": 1.3, "s": s}, mode=mode)
    np.testing.assert_allclose(
        F.matrix, np.diag([N_DRAWS / s**2, 2 * N_DRAWS / s**2]), rtol=1e-13, atol=1e-12
    )


def ar1_mean(p, x):
    return p["m"] * x


def ar1_cov(p, x):
    lag = jnp.abs(jnp.arange(x.size)[:, None] - jnp.arange(x.size)[None, :])
    return p["s"] ** 2 * p["rho"] ** lag


def ar1_reference(m, s, rho, x):
    """Numpy: mean part xᵀC⁻¹x plus ½ tr(C⁻¹∂C C⁻¹∂C) with hand-derived ∂C."""
    n = x.size
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)
    R = rho**lag
    C = s**2 * R
    dR = np.where(lag > 0, lag * rho ** np.maximum(lag - 1, 0), 0.0)
    dC = {"s": 2 * s * R, "rho": s**2 * dR}
    Ci = np.linalg.inv(C)
    F = np.zeros((3, 3))
    F[0, 0] = x @ Ci @ x
    for i, a in enumerate(("s", "rho"), start=1):
        for j, b in enumerate(("s", "rho"), start=1):
            F[i, j] = 0.5 * np.trace(Ci @ dC[a] @ Ci @ dC[b])
    return F


@pytest.mark.parametrize("mode", MODES)
def test_parameter_dependent_full_covariance_trace_term(mode):
    """Off-diagonal, parameter-dependent covariance (AR(1)) against a numpy derivation."""
    x = np.linspace(0.5, 2.0, 12)
    exp = ff.Experiment(ar1_mean, ff.Gaussian(cov=ar1_cov), design=x)
    F = ff.fisher(exp, {"m": 1.5, "s": 0.3, "rho": 0.6}, mode=mode)
    np.testing.assert_allclose(F.matrix, ar1_reference(1.5, 0.3, 0.6, x), rtol=1e-11, atol=1e-12)


def test_parameter_dependent_sigma_per_datum():
    """σ_k = s·(1 + g t_k): F = Σ∂μ∂μ/σ² + 2Σ∂σ∂σ/σ² (diagonal-covariance closed form)."""
    t = np.linspace(0.0, 3.0, 15)

    def model(p, t):
        return p["a"] * t

    def sig(p, t):
        return p["s"] * (1 + p["g"] * t)

    exp = ff.Experiment(model, ff.Gaussian(sigma=sig), design=t)
    a, s, g = 2.0, 0.4, 0.3
    F = ff.fisher(exp, {"a": a, "s": s, "g": g})
    sigma = s * (1 + g * t)
    dmu = np.stack([t, 0 * t, 0 * t], 1)
    dsig = np.stack([0 * t, 1 + g * t, s * t], 1)
    expected = dmu.T @ (dmu / sigma[:, None] ** 2) + 2 * dsig.T @ (dsig / sigma[:, None] ** 2)
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------
# 3. Poisson
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_poisson_closed_form_validation_case_3(mode):
    t = np.linspace(0.0, 4.0, 20)

    def counts(p, t):
        return p["A"] * jnp.exp(-p["k"] * t) + p["B"]

    A, k, B = 50.0, 0.8, 3.0
    exp = ff.Experiment(counts, ff.Poisson(), design=t)
    F = ff.fisher(exp, {"A": A, "k": k, "B": B}, mode=mode)
    lam = A * np.exp(-k * t) + B
    d = np.stack([np.exp(-k * t), -A * t * np.exp(-k * t), np.ones_like(t)], 1)
    expected = np.einsum("ki,kj,k->ij", d, d, 1 / lam)
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-13)


# ---------------------------------------------------------------------------------------
# 4. Fisher bias
# ---------------------------------------------------------------------------------------
def test_bias_linear_full_covariance_returns_delta():
    A = _design_matrix(8, 3)
    C = _spd(8, seed=2)
    exp = ff.Experiment(linear_design, ff.Gaussian(cov=C), design=A)
    delta = np.array([0.01, -0.02, 0.005])
    shift = ff.bias(exp, {"c0": 0.3, "c1": -1.0, "c2": 2.0}, A @ delta)
    np.testing.assert_allclose([shift[k] for k in ("c0", "c1", "c2")], delta, rtol=1e-11)


def test_bias_poisson_returns_delta():
    x = np.linspace(0.0, 5.0, 11)

    def counts(p, x):
        return p["a"] + p["b"] * x

    exp = ff.Experiment(counts, ff.Poisson(), design=x)
    delta = np.array([0.3, -0.05])
    shift = ff.bias(exp, {"a": 10.0, "b": 2.0}, delta[0] + delta[1] * x)
    np.testing.assert_allclose([shift["a"], shift["b"]], delta, rtol=1e-12)


def test_bias_psd_complex_returns_delta():
    f = np.linspace(20.0, 200.0, 60)
    g1 = f ** (-7 / 6) * np.exp(1j * 0.01 * f)
    g2 = f ** (-1.0) * np.exp(-2j * np.sqrt(f))
    basis = np.stack([g1, g2])

    def h(p, basis):
        return p["a"] * basis[0] + p["b"] * basis[1]

    psd = 1e-2 * (1 + (f / 80) ** 2)
    exp = ff.Experiment(h, ff.PSD(psd, 0.5), design=basis)
    delta = np.array([0.02, -0.1])
    shift = ff.bias(exp, {"a": 1.0, "b": 0.5}, delta[0] * g1 + delta[1] * g2)
    np.testing.assert_allclose([shift["a"], shift["b"]], delta, rtol=1e-11)


def test_bias_list_of_experiments_adds_information():
    """Two experiments sharing a parameter: the joint estimate is the joint GLS solution."""
    x1, x2 = np.linspace(0, 1, 6), np.linspace(1, 3, 5)
    e1 = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.1), design=x1)
    e2 = ff.Experiment(lambda p, x: p["b"] * x**2, ff.Gaussian(sigma=0.3), design=x2)
    d1, d2 = 0.01 * np.sin(7 * x1), 0.02 * np.cos(x2)
    shift = ff.bias([e1, e2], {"a": 1.0, "b": 2.0}, [d1, d2])
    J = np.zeros((11, 2))
    J[:6, 0], J[:6, 1], J[6:, 1] = 1.0, x1, x2**2
    w = np.concatenate([np.full(6, 1 / 0.01), np.full(5, 1 / 0.09)])
    gls = np.linalg.solve(J.T @ (w[:, None] * J), J.T @ (w * np.concatenate([d1, d2])))
    np.testing.assert_allclose([shift["a"], shift["b"]], gls, rtol=1e-11)


def test_bias_matches_maximum_likelihood_shift_nonlinear():
    """For a small systematic, Δθ equals the exact best-fit shift to first order."""
    t = np.linspace(0.0, 5.0, 30)
    sigma = 0.05

    def model(p, t):
        return p["A"] * jnp.exp(-t / p["tau"]) + p["c"]

    def model_np(th):
        return th[0] * np.exp(-t / th[1]) + th[2]

    theta0 = np.array([2.0, 1.5, 0.3])
    delta = 1e-5 * np.cos(2.0 * t)  # tiny compared with sigma: second order is negligible
    exp = ff.Experiment(model, ff.Gaussian(sigma=sigma), design=t)
    shift = ff.bias(exp, dict(zip(("A", "tau", "c"), theta0, strict=True)), delta)
    data = model_np(theta0) + delta
    fit = scipy.optimize.least_squares(
        lambda th: (model_np(th) - data) / sigma,
        theta0,
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        method="lm",
    )
    ml_shift = fit.x - theta0
    np.testing.assert_allclose([shift["A"], shift["tau"], shift["c"]], ml_shift, rtol=1e-3)


# ---------------------------------------------------------------------------------------
# 5. Gravitational-wave amplitude identity (PSD noise, complex output, GW scales)
# ---------------------------------------------------------------------------------------
GW_F = np.arange(20.0, 512.0, 0.25)
GW_DF = 0.25
GW_PSD = 1e-46 * (1.0 + (GW_F / 150.0) ** 2 + (40.0 / GW_F) ** 4)
GW_FID = {"lnA": np.log(3e-22), "tc": 0.012, "phic": 0.4, "beta": 60.0}


def gw_waveform(p, f):
    phase = 2 * jnp.pi * f * p["tc"] - p["phic"] + p["beta"] * f ** (-5.0 / 3.0)
    return jnp.exp(p["lnA"]) * f ** (-7.0 / 6.0) * jnp.exp(1j * phase)


def gw_waveform_np(th, f=GW_F):
    lnA, tc, phic, beta = th
    phase = 2 * np.pi * f * tc - phic + beta * f ** (-5.0 / 3.0)
    return np.exp(lnA) * f ** (-7.0 / 6.0) * np.exp(1j * phase)


def gw_experiment():
    return ff.Experiment(gw_waveform, ff.PSD(GW_PSD, GW_DF), design=GW_F)


@pytest.mark.parametrize("mode", MODES)
def test_gw_amplitude_identity_validation_case_5(mode):
    F = ff.fisher(gw_experiment(), GW_FID, mode=mode)
    h = gw_waveform_np([GW_FID[k] for k in ("lnA", "tc", "phic", "beta")])
    weight = 4 * GW_DF * np.abs(h) ** 2 / GW_PSD
    snr2 = weight.sum()
    assert 10 < snr2 < 1e6  # a GW-scale signal in GW-scale noise, nothing underflowed
    i = F.names.index("lnA")
    assert F.matrix[i, i] == pytest.approx(snr2, rel=1e-12)
    # Pure phase parameters: F_ij = 4Δf Σ |h|² ∂iΨ ∂jΨ / S_n, and ln A decouples exactly.
    dpsi = np.stack([2 * np.pi * GW_F, -np.ones_like(GW_F), GW_F ** (-5.0 / 3.0)], 1)
    expected = np.zeros((4, 4))
    expected[0, 0] = snr2
    expected[1:, 1:] = dpsi.T @ (weight[:, None] * dpsi)
    assert scaled_close(F.matrix, expected, rtol=1e-12)
    for other in ("tc", "phic", "beta"):
        j = F.names.index(other)
        assert abs(F.matrix[i, j]) <= 1e-12 * np.sqrt(F.matrix[i, i] * F.matrix[j, j])


def test_gw_psd_1e_minus_46_does_not_underflow_under_float32_default():
    """A PSD of 1e-46 is 0 in float32; the Fisher matrix must still be the float64 answer."""
    assert np.float32(1e-46) == 0.0  # the trap this test guards against
    f = np.linspace(30.0, 300.0, 200)
    psd = np.full_like(f, 1e-46)

    def h(p, f):
        return p["A"] * f ** (-7.0 / 6.0) * (1.0 + 0.0j)

    F = ff.fisher(ff.Experiment(h, ff.PSD(psd, 0.5), design=f), {"A": 1e-22})
    expected = 4 * 0.5 * np.sum(f ** (-7.0 / 3.0) / 1e-46)
    assert F.matrix.dtype == np.float64
    assert F.matrix[0, 0] == pytest.approx(expected, rel=1e-13)


# ---------------------------------------------------------------------------------------
# jacfwd == jacrev == high-order finite differences (independent numpy model)
# ---------------------------------------------------------------------------------------
def richardson_derivative(fn, theta, i, h):
    """7-point central difference (O(h⁶)) Richardson-extrapolated between h and h/2."""

    def d7(step):
        def at(k):
            th = np.array(theta, dtype=float)
            th[i] += k * step
            return fn(th)

        return (-at(-3) + 9 * at(-2) - 45 * at(-1) + 45 * at(1) - 9 * at(2) + at(3)) / (60 * step)

    coarse, fine = d7(h), d7(h / 2)
    return (2**6 * fine - coarse) / (2**6 - 1)


T_NL = np.linspace(0.0, 10.0, 40)
SIGMA_NL = 0.1 * (1 + 0.05 * T_NL)
NL_NAMES = ("A", "tau", "omega", "phi", "c")
NL_FID = {"A": 1.3, "tau": 4.0, "omega": 1.7, "phi": 0.4, "c": 0.2}


def damped_oscillation(p, t):
    return p["A"] * jnp.exp(-t / p["tau"]) * jnp.sin(p["omega"] * t + p["phi"]) + p["c"]


def damped_oscillation_np(th):
    A, tau, omega, phi, c = th
    return A * np.exp(-T_NL / tau) * np.sin(omega * T_NL + phi) + c


def test_forward_reverse_and_finite_differences_agree_nonlinear_real():
    exp = ff.Experiment(damped_oscillation, ff.Gaussian(sigma=SIGMA_NL), design=T_NL)
    Ff = ff.fisher(exp, NL_FID, mode="forward").matrix
    Fr = ff.fisher(exp, NL_FID, mode="reverse").matrix
    theta = np.array([NL_FID[n] for n in NL_NAMES])
    steps = [0.05, 0.05, 0.01, 0.05, 0.05]  # ω·t reaches 17 rad: a smaller step for ω
    J = np.stack(
        [richardson_derivative(damped_oscillation_np, theta, i, steps[i]) for i in range(5)], 1
    )
    Ffd = J.T @ (J / SIGMA_NL[:, None] ** 2)
    assert scaled_close(Ff, Fr, rtol=1e-13)
    assert scaled_close(Ff, Ffd, rtol=1e-11)


def test_forward_reverse_and_finite_differences_agree_complex_psd():
    exp = gw_experiment()
    names = ("lnA", "tc", "phic", "beta")
    Ff = ff.fisher(exp, GW_FID, mode="forward").matrix
    Fr = ff.fisher(exp, GW_FID, mode="reverse").matrix
    theta = np.array([GW_FID[n] for n in names])
    steps = [0.05, 2e-5, 0.05, 5.0]  # each moves the phase by <~0.1 rad at 512 Hz
    J = np.stack([richardson_derivative(gw_waveform_np, theta, i, steps[i]) for i in range(4)], 1)
    w = 4 * GW_DF / GW_PSD
    Ffd = np.real(J.conj().T @ (w[:, None] * J))
    assert scaled_close(Ff, Fr, rtol=1e-13)
    assert scaled_close(Ff, Ffd, rtol=1e-11)


@pytest.mark.parametrize("case", ["sigma_fn", "cov_fn", "poisson"])
def test_forward_and_reverse_agree_every_noise_path(case):
    x = np.linspace(0.5, 2.0, 12)
    if case == "cov_fn":
        exp, fid = (
            ff.Experiment(ar1_mean, ff.Gaussian(cov=ar1_cov), design=x),
            {"m": 1.5, "s": 0.3, "rho": 0.6},
        )
    elif case == "sigma_fn":
        exp = ff.Experiment(
            lambda p, x: p["m"] * jnp.sin(p["w"] * x),
            ff.Gaussian(sigma=lambda p, x: p["s"] * (1 + x**2)),
            design=x,
        )
        fid = {"m": 1.5, "w": 2.0, "s": 0.3}
    else:
        exp = ff.Experiment(lambda p, x: p["m"] * jnp.exp(p["w"] * x), ff.Poisson(), design=x)
        fid = {"m": 5.0, "w": 0.4}
    Ff = ff.fisher(exp, fid, mode="forward").matrix
    Fr = ff.fisher(exp, fid, mode="reverse").matrix
    assert scaled_close(Ff, Fr, rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Combination of experiments, parameter subsets, the pure core under JAX transforms
# ---------------------------------------------------------------------------------------
def test_list_of_experiments_adds_and_nuisance_rows():
    """Independent experiments add; a nuisance of one experiment only gets its own rows."""
    x1, x2 = np.linspace(0, 1, 6), np.linspace(1, 3, 5)
    e1 = ff.Experiment(
        lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.1), design=x1, name="one"
    )
    e2 = ff.Experiment(
        lambda p, x: p["b"] * x**2 + p["n2"], ff.Gaussian(sigma=0.3), design=x2, name="two"
    )
    fid = {"a": 1.0, "b": 2.0, "n2": 0.0}
    F = ff.fisher([e1, e2], fid)
    J1 = np.stack([np.ones(6), x1, np.zeros(6)], 1)
    J2 = np.stack([np.zeros(5), x2**2, np.ones(5)], 1)
    expected = J1.T @ J1 / 0.01 + J2.T @ J2 / 0.09
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-13, atol=1e-13)
    assert F.name == "one+two"


def test_params_subset_is_the_sub_block():
    exp = ff.Experiment(damped_oscillation, ff.Gaussian(sigma=SIGMA_NL), design=T_NL)
    full = ff.fisher(exp, NL_FID)
    sub = ff.fisher(exp, NL_FID, params=["omega", "A"])
    idx = [full.names.index("omega"), full.names.index("A")]
    assert sub.names == ("omega", "A")
    np.testing.assert_allclose(sub.matrix, full.matrix[np.ix_(idx, idx)], rtol=1e-13)
    assert sub.fiducial == {"omega": NL_FID["omega"], "A": NL_FID["A"]}
    assert sub.metadata["fixed"] == {k: v for k, v in NL_FID.items() if k not in ("omega", "A")}


def decay(p, t):
    return p["A"] * jnp.exp(-t / p["tau"])


def decay_fisher_np(A, tau, t, sigma):
    e = np.exp(-t / tau)
    J = np.stack([e, A * t / tau**2 * e], 1)
    return J.T @ J / sigma**2


def test_fisher_information_is_jittable_and_vmappable_over_fiducials():
    t = np.linspace(0.0, 5.0, 20)
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=t)
    taus = np.array([0.5, 1.0, 2.0, 4.0])
    with float64():
        batch = jax.jit(
            jax.vmap(lambda tau: ff.fisher_information(exp, {"A": 1.0, "tau": tau}, ("A", "tau")))
        )(taus)
        batch = np.asarray(batch)
    assert batch.dtype == np.float64 and batch.shape == (4, 2, 2)
    for k, tau in enumerate(taus):
        np.testing.assert_allclose(batch[k], decay_fisher_np(1.0, tau, t, 0.1), rtol=1e-12)


def test_fisher_information_gradient_with_respect_to_design():
    """y = a·t, σ = 0.5: F = Σt²/σ², so ∂F/∂t_k = 2 t_k / σ² exactly."""
    t = np.array([0.3, 1.0, 1.7, 2.2])
    exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.5), design=t)

    def information(design):
        return ff.fisher_information(exp.replace(design=design), {"a": 1.0}, ("a",))[0, 0]

    with float64():
        grad = np.asarray(jax.grad(information)(jnp.asarray(t)))
    np.testing.assert_allclose(grad, 2 * t / 0.25, rtol=1e-14)


def test_jacobian_returns_mean_and_complex_jacobian():
    with float64():
        mean, J = ff.jacobian(gw_experiment(), GW_FID, ("lnA", "phic"))
        mean, J = np.asarray(mean), np.asarray(J)
    h = gw_waveform_np([GW_FID[k] for k in ("lnA", "tc", "phic", "beta")])
    np.testing.assert_allclose(mean, h, rtol=1e-12)
    # ∂h/∂lnA = h and ∂h/∂φc = -i h.
    np.testing.assert_allclose(J[:, 0], h, rtol=1e-12)
    np.testing.assert_allclose(J[:, 1], -1j * h, rtol=1e-12)
    assert J.dtype == np.complex128 and J.shape == (GW_F.size, 2)


def test_model_without_design_and_integer_fiducial():
    exp = ff.Experiment(lambda p: jnp.stack([p["a"] ** 2, 3.0 * p["a"]]), ff.Gaussian(sigma=1))
    F = ff.fisher(exp, {"a": 2})  # an int fiducial is a valid real number
    assert F.matrix[0, 0] == pytest.approx((2 * 2) ** 2 + 9, rel=1e-15)


# ---------------------------------------------------------------------------------------
# Float64 under the float32 default
# ---------------------------------------------------------------------------------------
def test_float64_results_under_float32_default():
    assert jnp.ones(1).dtype == jnp.float32  # the suite runs with the default config
    t = 1.0 + 1e-6 * np.arange(50)  # float32 cannot even store these times
    exp = ff.Experiment(lambda p, t: p["a"] * t + p["b"] * t**2, ff.Gaussian(sigma=1e-3), design=t)
    F = ff.fisher(exp, {"a": 1.0, "b": 1.0})
    J = np.stack([t, t**2], 1)
    assert F.matrix.dtype == np.float64
    # This matrix has scaled condition number ~1e13: F itself must be right to ~1e-15 for
    # the covariance to carry any digits; float32 would get 1e-7.
    np.testing.assert_allclose(F.matrix, J.T @ J / 1e-6, rtol=1e-14)
    cov = F.covariance()
    np.testing.assert_allclose(cov, np.linalg.inv(J.T @ J / 1e-6), rtol=1e-2)
    assert jnp.ones(1).dtype == jnp.float32
    assert not jax.config.jax_enable_x64


def test_global_config_untouched_after_an_error():
    exp = ff.Experiment(lambda p: jnp.log(p["a"] - 1.0) * jnp.ones(3), ff.Gaussian(sigma=1.0))
    with pytest.raises(ff.NonFiniteError):
        ff.fisher(exp, {"a": 0.5})
    assert jnp.ones(1).dtype == jnp.float32
    assert not jax.config.jax_enable_x64


# ---------------------------------------------------------------------------------------
# No retracing
# ---------------------------------------------------------------------------------------
TRACES = {"count": 0}


def counted_model(p, t):
    TRACES["count"] += 1  # runs only while JAX traces the model
    return p["A"] * jnp.exp(-t / p["tau"]) + p["c"] * t


class CompileCounter:
    """Counts XLA backend compilations through jax.monitoring (public API)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


@pytest.mark.parametrize("mode", MODES)
def test_no_retracing_same_shapes(mode):
    t1 = np.linspace(0.0, 5.0, 33)
    t2 = np.linspace(1.0, 9.0, 33)  # a different design, same shape
    exp1 = ff.Experiment(counted_model, ff.Gaussian(sigma=0.2), design=t1)
    ff.fisher(exp1, {"A": 1.0, "tau": 2.0, "c": 0.1}, mode=mode)
    traced = TRACES["count"]
    assert traced >= 1
    with CompileCounter() as compiles:
        ff.fisher(exp1, {"A": 1.0, "tau": 2.0, "c": 0.1}, mode=mode)
        exp2 = ff.Experiment(counted_model, ff.Gaussian(sigma=0.7), design=t2)
        F2 = ff.fisher(exp2, {"A": 3.0, "tau": 0.5, "c": -0.2}, mode=mode)
    assert TRACES["count"] == traced, "a call with the same shapes retraced the model"
    assert compiles.count == 0, f"{compiles.count} XLA compilations on repeated calls"
    # ...and the cached computation really used the new design, noise and fiducial.
    e = np.exp(-t2 / 0.5)
    J = np.stack([e, 3.0 * t2 / 0.25 * e, t2], 1)
    np.testing.assert_allclose(F2.matrix, J.T @ J / 0.49, rtol=1e-12)


def test_new_shape_does_retrace_once():
    """Sanity check of the counter itself: a new output shape must trace (and only once)."""
    before = TRACES["count"]
    exp = ff.Experiment(counted_model, ff.Gaussian(sigma=0.2), design=np.linspace(0, 1, 17))
    with CompileCounter() as compiles:
        ff.fisher(exp, {"A": 1.0, "tau": 2.0, "c": 0.1})
    assert compiles.count >= 1
    after_first = TRACES["count"]
    ff.fisher(exp, {"A": 1.5, "tau": 2.5, "c": 0.0})
    assert after_first > before
    assert TRACES["count"] == after_first


def test_model_signature_is_checked_against_the_design():
    with pytest.raises(TypeError, match=r"model\(params, design\), but its signature"):
        ff.Experiment(lambda p: p["a"], ff.Gaussian(sigma=1.0), np.ones(3))
    with pytest.raises(TypeError, match="must take"):
        ff.Experiment(lambda p, t, u: p["a"], ff.Gaussian(sigma=1.0), np.ones(3))
    # (params, design) without a design is fine: design tools supply the design later.
    ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0))


def test_model_objects_holding_arrays_are_told_apart():
    import dataclasses

    @dataclasses.dataclass
    class Scaled:
        z: np.ndarray

        def __call__(self, p, t):
            return p["a"] * self.z * t

    t = np.linspace(1.0, 2.0, 3)
    F1 = ff.fisher(ff.Experiment(Scaled(np.ones(3)), ff.Gaussian(sigma=1.0), t), {"a": 1.0})
    F2 = ff.fisher(ff.Experiment(Scaled(2 * np.ones(3)), ff.Gaussian(sigma=1.0), t), {"a": 1.0})
    np.testing.assert_allclose(F1.matrix, [[np.sum(t**2)]], rtol=1e-14)
    np.testing.assert_allclose(F2.matrix, [[4 * np.sum(t**2)]], rtol=1e-14)


def test_pure_functions_refuse_float32_and_odd_outputs_are_named():
    exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0), np.ones(3))
    for fn in (ff.fisher_information, ff.jacobian):
        with pytest.raises(ff.FisherError, match="enable_x64"):
            fn(exp, {"a": 1.0}, ["a"])
    with jax.enable_x64(True):
        assert ff.fisher_information(exp, {"a": 1.0}, ["a"]).dtype == jnp.float64
    as_dict = ff.Experiment(lambda p, t: {"y": p["a"] * t}, ff.Gaussian(sigma=1.0), np.ones(3))
    with pytest.raises(TypeError, match="returned a dict"):
        ff.fisher(as_dict, {"a": 1.0})
    with pytest.raises(ValueError, match="`delta_data` is complex"):
        ff.bias(exp, {"a": 1.0}, np.ones(3) * (1 + 1j))
