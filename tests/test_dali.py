"""DALI against exact likelihoods written here in numpy (Sellentin, Quartin & Amendola 2014).

- A linear model: every higher tensor vanishes and DALI is the Fisher Gaussian.
- A quadratic (cubic) model: the doublet (triplet) is the exact log-likelihood.
- A nonlinear complex (PSD) model: the truncation error shrinks as Δ⁴ (doublet) and Δ⁵
  (triplet), the orders the expansion neglects.
- A banana: DALI samples are closer to the full-likelihood HMC posterior than Fisher.
"""

import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from helpers import linear3

import fisherforecast as ff

matplotlib.use("Agg")


def test_linear_model_dali_is_fisher():
    """Closed form: μ = (a, b, a + 2b), unit noise: F = JᵀJ = [[2, 2], [2, 5]]."""
    exp = ff.Experiment(linear3, ff.Gaussian(sigma=1.0))
    fid = {"a": 1.0, "b": 2.0}
    F = np.array([[2.0, 2.0], [2.0, 5.0]])
    from fisherforecast._sampling import dali as _dali

    for order in (2, 3):
        D = ff.dali(exp, fid, order=order)
        size = _dali.dali_tensors._cache_size()
        ff.dali(exp, {"a": 3.0, "b": -1.0}, order=order)
        assert _dali.dali_tensors._cache_size() == size  # no recompilation
        np.testing.assert_allclose(D.tensors["F"], F, rtol=1e-14)
        for name, tensor in D.tensors.items():
            if name != "F":
                assert np.max(np.abs(tensor)) < 1e-12, name
        rng = np.random.default_rng(0)
        delta = rng.normal(size=(6, 2)) * 3
        expected = -0.5 * np.einsum("ki,ij,kj->k", delta, F, delta)
        np.testing.assert_allclose(
            D.log_posterior(np.array([1.0, 2.0]) + delta), expected, rtol=1e-13
        )
        assert D.fisher.sigma() == pytest.approx({"a": 0.912871, "b": 0.577350}, abs=1e-6)


X = np.linspace(-1.0, 1.0, 7)
COV = 0.09 * (np.eye(7) + 0.3 * np.eye(7, k=1) + 0.3 * np.eye(7, k=-1))


def quadratic(p, x):
    return p["a"] + p["b"] * x + 0.7 * p["a"] * p["b"] * x**2 + p["b"] ** 2


def cubic(p, x):
    return quadratic(p, x) + 0.4 * p["a"] ** 3 * x - 0.2 * p["a"] * p["b"] ** 2


def _exact_loglik(fn, theta, theta0):
    r = fn(*theta) - fn(*theta0)
    return -0.5 * r @ np.linalg.solve(COV, r)


def _np_quadratic(a, b):
    return a + b * X + 0.7 * a * b * X**2 + b**2


def _np_cubic(a, b):
    return _np_quadratic(a, b) + 0.4 * a**3 * X - 0.2 * a * b**2


@pytest.mark.parametrize(
    ("model", "np_model", "exact_order"), [(quadratic, _np_quadratic, 2), (cubic, _np_cubic, 3)]
)
def test_dali_is_exact_for_polynomial_models(model, np_model, exact_order):
    """With a full covariance: the order-n DALI of a degree-n model is its likelihood."""
    exp = ff.Experiment(model, ff.Gaussian(cov=COV), design=X)
    theta0 = np.array([0.5, -0.3])
    rng = np.random.default_rng(1)
    points = theta0 + rng.normal(size=(8, 2))
    exact = np.array([_exact_loglik(np_model, p, theta0) for p in points])
    for order in (2, 3):
        D = ff.dali(exp, {"a": 0.5, "b": -0.3}, order=order)
        got = D.log_posterior(points)
        if order >= exact_order:
            np.testing.assert_allclose(got, exact, rtol=1e-11)
        else:
            assert np.max(np.abs(got - exact) / np.abs(exact)) > 1e-3


def test_tensors_from_analytic_derivatives():
    """μ = e^a x + b² with unit noise; derivatives written out by hand."""
    x = np.linspace(0.0, 1.0, 5)
    exp = ff.Experiment(
        lambda p, x: jnp.exp(p["a"]) * x + p["b"] ** 2, ff.Gaussian(sigma=1.0), design=x
    )
    a, b = 0.3, 0.7
    D = ff.dali(exp, {"a": a, "b": b})
    J = np.column_stack([np.exp(a) * x, np.full_like(x, 2 * b)])
    H = np.zeros((5, 2, 2))
    H[:, 0, 0] = np.exp(a) * x
    H[:, 1, 1] = 2.0
    np.testing.assert_allclose(D.tensors["F"], J.T @ J, rtol=1e-13)
    np.testing.assert_allclose(D.tensors["S"], np.einsum("nij,nk->ijk", H, J), rtol=1e-13)
    np.testing.assert_allclose(D.tensors["Q"], np.einsum("nij,nkl->ijkl", H, H), rtol=1e-13)


def test_truncation_error_order_on_a_complex_psd_model():
    """h = A f^(-7/6) exp(2πi f τ) with PSD noise: doublet error ∝ Δ⁴, triplet ∝ Δ⁵."""
    f = np.linspace(20.0, 60.0, 41)
    psd, df = 1e-4, 0.5

    def chirp(p, f):
        return p["A"] * f ** (-7 / 6) * jnp.exp(2j * jnp.pi * f * p["tau"])

    exp = ff.Experiment(chirp, ff.PSD(psd=psd, df=df), design=f)
    fid = {"A": 1.0, "tau": 0.01}

    def exact(A, tau):
        h = lambda A, tau: A * f ** (-7 / 6) * np.exp(2j * np.pi * f * tau)  # noqa: E731
        r = h(A, tau) - h(1.0, 0.01)
        return -0.5 * 4 * df * np.sum(np.abs(r) ** 2) / psd

    s = ff.fisher(exp, fid).sigma()
    direction = np.array([s["A"], s["tau"]])
    for order, power in ((2, 4), (3, 5)):
        D = ff.dali(exp, fid, order=order)
        errors = []
        for scale in (0.4, 0.2, 0.1):
            theta = np.array([1.0, 0.01]) + scale * direction
            errors.append(abs(D.log_posterior(theta) - exact(*theta)))
        slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        np.testing.assert_allclose(slopes, power, atol=0.25)


def test_unsupported_noise_models_and_orders():
    pois = ff.Experiment(lambda p: p["r"] * jnp.ones(3), ff.Poisson())
    with pytest.raises(NotImplementedError, match="Poisson"):
        ff.dali(pois, {"r": 2.0})
    het = ff.Experiment(lambda p: p["m"] * jnp.ones(3), ff.Gaussian(sigma=lambda p: p["m"]))
    with pytest.raises(NotImplementedError, match="parameter-independent covariance"):
        ff.dali(het, {"m": 2.0})
    exp = ff.Experiment(linear3, ff.Gaussian(sigma=1.0))
    with pytest.raises(ValueError, match="`order` must be 2"):
        ff.dali(exp, {"a": 1.0, "b": 2.0}, order=4)
    for bad in (2.0, 3.0, True, "2", np.float64(2.0)):
        with pytest.raises(ValueError, match=r"`order` must be 2 .*as an int; received"):
            ff.dali(exp, {"a": 1.0, "b": 2.0}, order=bad)
    assert ff.dali(exp, {"a": 1.0, "b": 2.0}, order=np.int64(3)).order == 3
    with pytest.raises(ValueError, match="not DALI parameters"):
        ff.dali(exp, {"a": 1.0, "b": 2.0}, prior={"c": (0, 1)})


def test_log_posterior_jits_and_takes_dicts_and_priors():
    exp = ff.Experiment(quadratic, ff.Gaussian(sigma=0.3), design=X)
    D = ff.dali(exp, {"a": 0.5, "b": -0.3}, prior={"a": (0.0, 1.0)})
    pts = np.array([[0.6, -0.2], [0.4, 0.1], [1.5, 0.0]])
    eager = D.log_posterior(pts)
    assert eager[2] == -np.inf  # outside the prior bounds of a
    assert np.isfinite(D.log_likelihood(pts[2]))
    as_dict = D.log_posterior({"a": pts[:, 0], "b": pts[:, 1]})
    np.testing.assert_array_equal(eager, as_dict)
    jitted = jax.jit(D.log_posterior)(jnp.asarray(pts[:2], dtype=jnp.float32))
    np.testing.assert_allclose(np.asarray(jitted), eager[:2], rtol=1e-5)
    grad = jax.grad(lambda t: D.log_likelihood(t))(jnp.array([0.5, -0.3]))
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)
    assert "DALI doublet" in D.summary()
    with pytest.raises(ValueError, match="last axis has 2 entries"):
        D.log_posterior(np.zeros(3))


# ---------------------------------------------------------------------------------------
# Banana: DALI closer to the full posterior than Fisher
# ---------------------------------------------------------------------------------------
S1, S2 = 0.7, 0.3
BANANA_PRIOR = {"t1": (-3.0, 3.0), "t2": (-20.0, 3.0)}


def banana(p):
    return jnp.stack([p["t1"], p["t2"] + jnp.exp(p["t1"])])


def _asymmetry(x):
    """(upper − lower)/(upper + lower) half-widths of the central 68.27 % interval."""
    lo, mid, hi = np.quantile(x, [0.15865, 0.5, 0.84135])
    return ((hi - mid) - (mid - lo)) / (hi - lo)


@pytest.fixture(scope="module")
def banana_runs():
    exp = ff.Experiment(banana, ff.Gaussian(sigma=np.array([S1, S2])))
    fid = {"t1": 0.0, "t2": 0.0}
    hmc = ff.crosscheck(exp, fid, prior=BANANA_PRIOR, num_warmup=500, num_samples=2000)
    D = ff.dali(exp, fid, order=2, prior=BANANA_PRIOR)
    return hmc, D, D.sample(num_warmup=500, num_samples=2000)


def test_dali_is_closer_to_hmc_than_fisher_on_a_banana(banana_runs):
    hmc, _, draws = banana_runs
    # y2 = t2 + e^t1 bends t2 into a skewed banana: t2 ≈ 1 − e^t1, t1 ~ N(0, 0.7²).
    rng = np.random.default_rng(0)
    t1 = rng.normal(0.0, S1, 400_000)
    exact_t2 = 1 - np.exp(t1) + rng.normal(0.0, S2, t1.size)
    # The doublet replaces e^Δ by 1 + Δ + Δ²/2: its t2 marginal is −Δ − Δ²/2 + noise.
    dali_t2 = -t1 - t1**2 / 2 + rng.normal(0.0, S2, t1.size)
    a_exact, a_dali_exact = _asymmetry(exact_t2), _asymmetry(dali_t2)
    assert a_exact < -0.2 and a_dali_exact < -0.2  # Fisher's Gaussian has 0.
    a_hmc = _asymmetry(hmc.samples["t2"])
    a_dali = _asymmetry(draws.samples["t2"])
    assert abs(a_hmc - a_exact) < 0.08
    assert abs(a_dali - a_dali_exact) < 0.08
    a_fisher = 0.0
    assert abs(a_dali - a_hmc) < 0.5 * abs(a_fisher - a_hmc)
    # σ(t2) of the doublet: Var(Δ + Δ²/2) + S2² = S1² + S1⁴/2 + S2² (Fisher: S1² + S2²).
    assert draws.sigma["t2"] == pytest.approx(math.sqrt(S1**2 + S1**4 / 2 + S2**2), rel=0.15)
    # The t1 marginal of the doublet is exactly N(0, S1²) (its first datum is linear).
    assert draws.sigma["t1"] == pytest.approx(S1, rel=0.15)
    assert draws.divergences == 0


def test_dali_plot(banana_runs):
    _, D, draws = banana_runs
    fig = D.plot(draws)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["DALI doublet", "Fisher"]
    assert fig.axes[2].get_xlabel() == "t1" and fig.axes[2].get_ylabel() == "t2"
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert math.isfinite(draws.ess["t2"])


def test_dali_results_are_records():
    import dataclasses
    import json

    from fisherforecast._record import Record

    exp = ff.Experiment(linear3, ff.Gaussian(sigma=1.0))
    D = ff.dali(exp, {"a": 1.0, "b": 2.0}, prior={"a": (0.0, 2.0)})
    assert isinstance(D, Record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        D.order = 3
    d = json.loads(json.dumps(D.to_dict()))
    assert sorted(d) == ["fiducial", "fisher", "names", "order", "tensors"]
    assert d["tensors"]["F"] == [[2.0, 2.0], [2.0, 5.0]]
    assert D.prior_terms[0] == (0,) and "prior_terms" not in repr(D)
    with pytest.raises(ff.ParameterError, match=r"missing parameters \['b'\]"):
        D.log_likelihood({"a": 1.0})
    with pytest.raises(TypeError, match="`seed` must be an integer"):
        D.sample(seed="0")


def test_dali_uses_the_checked_evaluation_path():
    # Non-finite output is reported as ff.fisher reports it: which outputs, at which fiducial.
    t = np.linspace(0.0, 2.0, 6)
    exp = ff.Experiment(lambda p, t: jnp.log(p["a"] - t), ff.Gaussian(sigma=0.1), design=t)
    with pytest.raises(ff.NonFiniteError) as via_dali:
        ff.dali(exp, {"a": 1.5})
    with pytest.raises(ff.NonFiniteError) as via_fisher:
        ff.fisher(exp, {"a": 1.5})
    assert str(via_dali.value) == str(via_fisher.value)
    # ...and the doublet's Fisher block is the closed form Σ 1/(σ²(a − t)²).
    ok = ff.Experiment(lambda p, t: jnp.log(p["a"] - t), ff.Gaussian(sigma=0.1), design=t)
    D = ff.dali(ok, {"a": 3.0})
    closed = float(np.sum(1.0 / (0.01 * (3.0 - t) ** 2)))
    np.testing.assert_allclose(D.fisher.matrix[0, 0], closed, rtol=1e-12)
