"""Population (NLME) Fisher matrices (issue 18).

References, none computed by the population code itself:

* PopED's published evaluation of the warfarin design (reduced FO FIM; Nyberg et al.,
  Br. J. Clin. Pharmacol. 2015, and the PopED "warfarin" vignette): RSE% CL 4.7383,
  V 2.7562, KA 13.926, ω²_CL 25.627, ω²_V 30.344, ω²_KA 25.777, σ²_prop 11.171;
* the FO Fisher matrix written out in numpy with 5-point finite differences of a numpy
  copy of the model (``JᵀV⁻¹J + ½ tr(V⁻¹∂V V⁻¹∂V)``, Retout & Mentré 2003);
* ``ff.fisher`` of a plain ``Experiment`` whose covariance callable is ``V(θ)``, built in
  the test from the model's own parameter Jacobian;
* closed forms of the linear mixed model ``y = X(β + η) + ε`` (where FO is exact), and its
  maximum-likelihood estimate from the closed-form marginal likelihood with scipy.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import fisherforecast as ff
from fisherforecast._population.simulate import _laplace_individual
from fisherforecast.models import biology as bio

D0 = 70.0
TIMES = np.array([0.5, 1, 2, 6, 24, 36, 72, 120.0])
RANDOM = {"CL": "exponential", "V": "exponential", "KA": "exponential"}
FID = {
    "CL": 0.15,
    "V": 8.0,
    "KA": 1.0,
    "omega2_CL": 0.07,
    "omega2_V": 0.02,
    "omega2_KA": 0.6,
    "sigma2_prop": 0.01,
}
POPED_RSE = {
    "CL": 4.7383,
    "V": 2.7562,
    "KA": 13.926,
    "omega2_CL": 25.627,
    "omega2_V": 30.344,
    "omega2_KA": 25.777,
    "sigma2_prop": 11.171,
}


# The model under test is the zoo's (models/biology.py): times (a 70 mg dose) or a dict
# {"t", "dose"}. The references below are the published RSE% and a numpy copy.
warfarin = bio.warfarin
warfarin_dose = bio.warfarin


def warfarin_np(p, t=TIMES, dose=D0):
    k = p["CL"] / p["V"]
    return dose * p["KA"] / (p["V"] * (p["KA"] - k)) * (np.exp(-k * t) - np.exp(-p["KA"] * t))


def group(**kw):
    kw = {"random": RANDOM, "error": "proportional", "group_size": 32, **kw}
    return ff.PopulationExperiment(warfarin, TIMES, **kw)


# ---------------------------------------------------------------------------------------
# A numpy reference: the FO Fisher matrix with finite differences
# ---------------------------------------------------------------------------------------
KINDS = {
    "exponential": lambda v, e: v * np.exp(e),
    "additive": lambda v, e: v + e,
    "proportional": lambda v, e: v * (1 + e),
}


def fd(fn, x, i, h):
    """5-point central difference of fn along coordinate i of x."""

    def at(s):
        y = np.array(x, dtype=float)
        y[i] += s * h
        return fn(y)

    return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)


def fo_fisher_np(fid, random, error, n, reduced, f_np=warfarin_np, pairs=()):
    """``pairs``: the correlated (a, b), covariance ``omega_<a>_<b>`` in Ω[a, b] = Ω[b, a]."""
    names = list(fid)
    rnames = list(random)

    def pars(theta):
        return dict(zip(names, theta, strict=True))

    def mean(theta):
        return f_np(pars(theta))

    def cov(theta):
        p = pars(theta)

        def f_eta(eta):
            q = dict(p)
            for r, e in zip(rnames, eta, strict=True):
                q[r] = KINDS[random[r]](p[r], e)
            return f_np(q)

        G = np.stack([fd(f_eta, np.zeros(len(rnames)), j, 1e-4) for j in range(len(rnames))], 1)
        f = f_np(p)
        var = np.zeros_like(f)
        if error in ("proportional", "combined"):
            var = var + f**2 * p["sigma2_prop"]
        if error in ("additive", "combined"):
            var = var + p["sigma2_add"]
        omega = np.diag([p["omega2_" + r] for r in rnames])
        for a, b in pairs:
            i, j = rnames.index(a), rnames.index(b)
            omega[i, j] = omega[j, i] = p[f"omega_{a}_{b}"]
        return G @ omega @ G.T + np.diag(var)

    theta0 = np.array([fid[k] for k in names], dtype=float)
    h = 1e-3 * np.abs(theta0)
    J = np.stack([fd(mean, theta0, i, h[i]) for i in range(len(names))], 1)
    V = cov(theta0)
    Vi = np.linalg.inv(V)
    variances = [i for i, k in enumerate(names) if k.startswith(("omega", "sigma2_"))]
    dV = [
        fd(cov, theta0, i, h[i]) if (not reduced or i in variances) else np.zeros_like(V)
        for i in range(len(names))
    ]
    F = J.T @ Vi @ J
    F = F + 0.5 * np.array([[np.trace(Vi @ a @ Vi @ b) for b in dV] for a in dV])
    return n * F


# ---------------------------------------------------------------------------------------
# The warfarin reference and the FO Fisher matrix
# ---------------------------------------------------------------------------------------
def test_warfarin_reduced_fim_reproduces_poped():
    # The zoo's constructor at its fiducial: PopED's design (32 individuals, 70 mg).
    assert bio.WARFARIN_FIDUCIAL == FID
    F = ff.fisher(bio.warfarin_population_experiment(), bio.WARFARIN_FIDUCIAL)
    rse = F.rse()
    assert list(rse) == list(POPED_RSE)
    for k, v in POPED_RSE.items():
        assert rse[k] == pytest.approx(v, rel=1e-4), k
    # Block-diagonal: no fixed-effect/variance cross terms.
    assert np.all(F.matrix[:3, 3:] == 0.0)


@pytest.mark.parametrize("reduced", [True, False])
def test_warfarin_fisher_matches_numpy_finite_differences(reduced):
    F = ff.fisher(group(fim="reduced" if reduced else "full"), FID)
    ref = fo_fisher_np(FID, RANDOM, "proportional", 32, reduced)
    np.testing.assert_allclose(F.matrix, ref, rtol=2e-6, atol=1e-9 * np.abs(ref).max())


def test_other_random_and_error_models_match_numpy():
    random = {"CL": "additive", "V": "proportional", "KA": "exponential"}
    fid = {**FID, "omega2_CL": 0.0004, "omega2_V": 0.03, "sigma2_add": 0.05}
    g = ff.PopulationExperiment(
        warfarin, TIMES, random=random, error="combined", group_size=20, fim="full"
    )
    F = ff.fisher(g, fid)
    ref = fo_fisher_np(fid, random, "combined", 20, reduced=False)
    np.testing.assert_allclose(F.matrix, ref, rtol=2e-6, atol=1e-9 * np.abs(ref).max())
    assert F.names == tuple(fid)


def test_full_fim_equals_plain_experiment_with_covariance_callable():
    """The issue's contract: the full FO FIM is ff.fisher of a Gaussian experiment whose
    covariance is V(θ) = G Ω Gᵀ + diag(f² σ²), G_j = θ_j ∂f/∂θ_j (exponential effects)."""

    def V(p, t):
        grad = jax.jacfwd(lambda q: warfarin(q, t))({k: p[k] for k in RANDOM})
        G = jnp.stack([p[k] * grad[k] for k in RANDOM], axis=1)
        omega = jnp.stack([p["omega2_" + k] for k in RANDOM])
        f = warfarin(p, t)
        return (G * omega) @ G.T + jnp.diag(f**2 * p["sigma2_prop"])

    plain = ff.Experiment(warfarin, ff.Gaussian(cov=V), design=TIMES)
    F_plain = ff.fisher(plain, FID)
    F_pop = ff.fisher(group(fim="full", group_size=1), FID)
    np.testing.assert_allclose(F_pop.matrix, F_plain.matrix, rtol=1e-10)
    F32 = ff.fisher(group(fim="full"), FID)
    np.testing.assert_allclose(F32.matrix, 32 * F_plain.matrix, rtol=1e-10)


def test_linear_mixed_model_closed_form():
    """y = X(β + η) + ε: FO is exact; F = N [XᵀV⁻¹X ⊕ ½ tr(V⁻¹∂V V⁻¹∂V)]."""
    t = np.array([0.0, 1.0, 2.0, 4.0])
    X = np.stack([np.ones_like(t), t], 1)
    fid = {"a": 2.0, "b": 0.5, "omega2_a": 0.3, "omega2_b": 0.05, "sigma2_add": 0.1}

    def line(p, t):
        return p["a"] + p["b"] * t

    g = ff.PopulationExperiment(
        line, t, random={"a": "additive", "b": "additive"}, error="additive", group_size=12
    )
    V = X @ np.diag([0.3, 0.05]) @ X.T + 0.1 * np.eye(4)
    Vi = np.linalg.inv(V)
    dV = [np.outer(X[:, 0], X[:, 0]), np.outer(X[:, 1], X[:, 1]), np.eye(4)]
    ref = np.zeros((5, 5))
    ref[:2, :2] = X.T @ Vi @ X
    ref[2:, 2:] = 0.5 * np.array([[np.trace(Vi @ a @ Vi @ b) for b in dV] for a in dV])
    F = ff.fisher(g, fid)
    np.testing.assert_allclose(F.matrix, 12 * ref, rtol=1e-12, atol=1e-12)
    # Reduced = full here (V does not depend on β), and the Monte-Carlo moments are exact
    # up to the quadrature error of the sample covariance of the Sobol points.
    np.testing.assert_allclose(ff.fisher(g.variant(fim="reduced"), fid).matrix, F.matrix)
    F_mc = ff.fisher(g.variant(approximation="mc", n_eta=1024), fid)
    d = np.sqrt(np.diag(F.matrix))
    np.testing.assert_allclose(F_mc.matrix / np.outer(d, d), F.matrix / np.outer(d, d), atol=1e-2)


def test_mc_fisher_differs_from_fo_where_nonlinear():
    """The Monte-Carlo moments differ from FO for the strongly nonlinear KA
    (ω²_KA = 0.6), much less for CL, and the variance block stays close."""
    a = ff.fisher(group(approximation="mc", n_eta=1024, seed=1), FID).rse()
    fo = ff.fisher(group(), FID).rse()
    assert abs(a["KA"] / fo["KA"] - 1) > 0.5
    assert abs(a["CL"] / fo["CL"] - 1) < 0.3
    for k in ("omega2_CL", "omega2_V", "omega2_KA"):
        assert abs(a[k] / fo[k] - 1) < 0.25, k


# ---------------------------------------------------------------------------------------
# Groups, sizes, fixed parameters
# ---------------------------------------------------------------------------------------
def test_two_groups_sum_with_name_alignment():
    g1 = ff.PopulationExperiment(
        warfarin_dose,
        {"t": np.array([0.5, 2.0, 24.0, 72.0]), "dose": 70.0},
        random=RANDOM,
        group_size=20,
        fim="reduced",
    )

    def heavier(p, d):  # a covariate effect on CL estimated from group 2 only
        return warfarin_dose({**p, "CL": p["CL"] * p["theta_wt"]}, d)

    g2 = ff.PopulationExperiment(
        heavier,
        {"t": np.array([1.0, 6.0, 36.0, 120.0]), "dose": 100.0},
        random=RANDOM,
        group_size=12,
        fim="reduced",
    )
    fid = {**FID, "theta_wt": 1.2}
    total = ff.fisher([g1, g2], fid)
    F1 = ff.fisher(g1, FID)
    F2 = ff.fisher(g2, fid)
    summed = F1 + F2
    assert set(total.names) == set(summed.names)
    idx = [summed.names.index(n) for n in total.names]
    np.testing.assert_allclose(total.matrix, summed.matrix[np.ix_(idx, idx)], rtol=1e-12)

    # Group 2 alone against numpy finite differences (dose 100, the covariate).
    def heavier_np(p):
        return warfarin_np(
            {**p, "CL": p["CL"] * p["theta_wt"]}, t=np.array([1.0, 6.0, 36.0, 120.0]), dose=100.0
        )

    ref = fo_fisher_np(fid, RANDOM, "proportional", 12, True, f_np=heavier_np)
    np.testing.assert_allclose(F2.matrix, ref, rtol=2e-6, atol=1e-9 * np.abs(ref).max())


@contextlib.contextmanager
def count_compiles():
    counts = {"compile": 0}

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counts["compile"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_group_size_scales_without_recompiling():
    g = group(fim="reduced")
    F32 = ff.fisher(g, FID)
    with count_compiles() as counts:
        F10 = ff.fisher(g.with_group_size(10), FID)
        ff.fisher(g.with_group_size(50.5), {**FID, "CL": 0.2})
    assert counts["compile"] == 0
    np.testing.assert_allclose(F10.matrix, F32.matrix * 10 / 32, rtol=1e-13)


def test_fixed_parameters_drop_rows_and_columns():
    keep = ["CL", "V", "KA", "omega2_CL", "omega2_KA", "sigma2_prop"]
    F = ff.fisher(group(fim="full"), FID)
    Ff = ff.fisher(group(fim="full"), FID, params=keep)
    idx = [F.names.index(n) for n in keep]
    np.testing.assert_allclose(Ff.matrix, F.matrix[np.ix_(idx, idx)], rtol=1e-12)


def test_rse_is_relative_sigma_and_refuses_zero_fiducial():
    F = ff.fisher(group(fim="reduced"), FID)
    sig = F.sigma()
    for k, v in F.rse().items():
        assert v == pytest.approx(100 * sig[k] / FID[k], rel=1e-14)
    G = ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": 1.0, "b": 0.0})
    with pytest.raises(ff.InputError, match="'b'"):
        G.rse()


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------
def test_missing_variance_names_them():
    fid = {k: v for k, v in FID.items() if k != "omega2_V"}
    with pytest.raises(ff.ParameterError, match="omega2_V"):
        ff.fisher(group(), fid)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"random": {"CL": "lognormal"}}, "lognormal"),
        ({"random": ["CL"]}, "random"),
        ({"random": None}, "random"),
        ({"error": "poisson"}, "poisson"),
        ({"fim": "partial"}, "partial"),
        ({"group_size": -3}, "-3"),
        ({"group_size": True}, "True"),
        ({"approximation": "laplace"}, "laplace"),
        ({"approximation": "mc", "n_eta": 1}, "n_eta"),
    ],
)
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ff.InputError, match=match):
        group(**kw)


def test_nonpositive_variance_is_refused_with_values():
    t = np.array([0.0, 1.0, 2.0])
    g = ff.PopulationExperiment(
        lambda p, t: p["a"] + p["b"] * t, t, random={"a": "additive"}, error="additive"
    )
    with pytest.raises(ff.InputError, match="omega2"):
        ff.fisher(g, {"a": 1.0, "b": 0.5, "omega2_a": -0.01, "sigma2_add": 0.1})


# ---------------------------------------------------------------------------------------
# Design
# ---------------------------------------------------------------------------------------
def test_design_gradient_matches_finite_differences():
    g = group(fim="reduced")
    value, grad = ff.design_criterion(g, FID, criterion="D", gradient=True)
    assert value == pytest.approx(np.linalg.slogdet(ff.fisher(g, FID).matrix)[1], rel=1e-10)

    def logdet(times):
        return np.linalg.slogdet(
            fo_fisher_np(
                FID, RANDOM, "proportional", 32, True, f_np=lambda p: warfarin_np(p, t=times)
            )
        )[1]

    for i in (0, 3, 6):
        ref = fd(logdet, TIMES, i, 1e-3 * TIMES[i])
        assert grad[i] == pytest.approx(ref, rel=1e-4, abs=1e-8)


@pytest.mark.slow
def test_optimize_two_groups_sampling_times():
    g1 = group(fim="reduced", group_size=16).replace(design=np.array([0.5, 2.0, 24.0, 120.0]))
    g2 = group(fim="reduced", group_size=16).replace(design=np.array([1.0, 6.0, 36.0, 72.0]))
    res = ff.optimize_design(
        [g1, g2],
        FID,
        bounds=[(0.25, 120.0), (0.25, 120.0)],
        constraints="ordered",
        n_starts=2,
        max_steps=30,
        n_polish=0,  # the scipy polish is tested in test_design.py
    )
    assert res.criterion_value >= res.initial_value
    for d in res.design:
        assert np.all((d >= 0.25 - 1e-9) & (d <= 120.0 + 1e-9))
    # The reported optimum is the criterion of the numpy reference at those times.
    F = sum(
        fo_fisher_np(FID, RANDOM, "proportional", 16, True, f_np=lambda p, d=d: warfarin_np(p, t=d))
        for d in res.design
    )
    assert res.criterion_value == pytest.approx(np.linalg.slogdet(F)[1], rel=1e-6)


def test_dose_as_design_variable():
    """With purely proportional error the FIM does not depend on the dose (f scales);
    with additive error it grows with the dose: the exact design gradient in the dose
    matches finite differences of the numpy reference."""
    design = {"t": TIMES, "dose": 70.0}
    prop = ff.PopulationExperiment(warfarin_dose, design, random=RANDOM, group_size=32)
    F70 = ff.fisher(prop, FID)
    F10 = ff.fisher(prop.replace(design={"t": TIMES, "dose": 10.0}), FID)
    np.testing.assert_allclose(F10.matrix, F70.matrix, rtol=1e-9)
    add = ff.PopulationExperiment(
        warfarin_dose, design, random=RANDOM, error="additive", group_size=32, fim="reduced"
    )
    fid = {**{k: v for k, v in FID.items() if k != "sigma2_prop"}, "sigma2_add": 0.25}
    _, grad = ff.design_criterion(add, fid, criterion="D", gradient=True)

    def logdet(dose):
        f_np = lambda p: warfarin_np(p, dose=dose[0])  # noqa: E731
        return np.linalg.slogdet(fo_fisher_np(fid, RANDOM, "additive", 32, True, f_np=f_np))[1]

    ref = fd(logdet, np.array([70.0]), 0, 0.5)
    assert grad["dose"] > 0
    assert float(grad["dose"]) == pytest.approx(ref, rel=1e-4)


def test_required_individuals_for_rse_cl_10_percent():
    one = group(fim="reduced", group_size=1)
    req = ff.required_samples(one, FID, {"CL": 0.10}, relative=True)
    n = req.per_parameter["CL"]
    assert ff.fisher(one.with_group_size(n), FID).rse()["CL"] <= 10.0
    assert ff.fisher(one.with_group_size(n - 1), FID).rse()["CL"] > 10.0
    # RSE ∝ 1/√N from the published 32-individual value.
    assert n == int(np.ceil(32 * (POPED_RSE["CL"] / 10.0) ** 2))


# ---------------------------------------------------------------------------------------
# Simulation and estimation
# ---------------------------------------------------------------------------------------
LINE_T = np.array([0.0, 1.0, 2.0, 4.0])
LINE_FID = {"a": 2.0, "b": 0.5, "omega2_a": 0.3, "omega2_b": 0.05, "sigma2_add": 0.1}


def line(p, t):
    return p["a"] + p["b"] * t


def line_group(n, **kw):
    return ff.PopulationExperiment(
        line,
        LINE_T,
        random={"a": "additive", "b": "additive"},
        error="additive",
        group_size=n,
        **kw,
    )


def test_simulated_trials_have_the_model_moments():
    X = np.stack([np.ones(4), LINE_T], 1)
    V = X @ np.diag([0.3, 0.05]) @ X.T + 0.1 * np.eye(4)
    y = ff.simulate_trials(line_group(400), LINE_FID, 10, seed=3)[0].reshape(-1, 4)
    assert y.shape == (4000, 4)
    se_mean = np.sqrt(np.diag(V) / 4000)
    assert np.all(np.abs(y.mean(0) - X @ np.array([2.0, 0.5])) < 4 * se_mean)
    np.testing.assert_allclose(np.cov(y.T), V, atol=0.06)


def test_laplace_fit_equals_closed_form_mle_for_linear_model():
    """Laplace is exact for a linear Gaussian model: the fit equals the maximum of the
    closed-form marginal likelihood."""
    y = ff.simulate_trials(line_group(30), LINE_FID, 1, seed=5)[0][0]
    est = ff.fit_population(line_group(30), [y], LINE_FID)
    assert est["_success"]
    X = np.stack([np.ones(4), LINE_T], 1)

    def nll(u):
        a, b, oa, ob, s = u[0], u[1], *np.exp(u[2:])
        V = X @ np.diag([oa, ob]) @ X.T + s * np.eye(4)
        r = y - X @ np.array([a, b])
        _, logdet = np.linalg.slogdet(V)
        return 0.5 * (len(y) * logdet + np.einsum("ij,jk,ik->", r, np.linalg.inv(V), r))

    u0 = np.array([2.0, 0.5, np.log(0.3), np.log(0.05), np.log(0.1)])
    ref = scipy.optimize.minimize(
        nll, u0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}
    )
    expect = [ref.x[0], ref.x[1], *np.exp(ref.x[2:])]
    got = [est[k] for k in LINE_FID]
    np.testing.assert_allclose(got, expect, rtol=2e-4)


@pytest.mark.slow
def test_laplace_individual_against_importance_sampling():
    """The Laplace marginal of one warfarin individual is within a few % of a brute-force
    Monte-Carlo integral over η (100 000 prior draws)."""
    y = ff.simulate_trials(group(group_size=3), FID, 1, seed=7)[0][0]
    rng = np.random.default_rng(0)
    om = np.array([0.07, 0.02, 0.6])
    eta = rng.standard_normal((100_000, 3)) * np.sqrt(om)
    with jax.enable_x64(True):
        params = {k: jnp.float64(v) for k, v in FID.items()}
        laplace = jax.jit(
            lambda yi: _laplace_individual(
                yi, params, jnp.asarray(TIMES), warfarin, tuple(RANDOM.items()), "proportional", 25
            )
        )
        for yi in y:
            lap = float(laplace(jnp.asarray(yi)))
            p = {k: FID[k] * np.exp(eta[:, i])[:, None] for i, k in enumerate(RANDOM)}
            f = warfarin_np({**FID, **p})
            var = f**2 * 0.01
            ll = -0.5 * np.sum((yi - f) ** 2 / var + np.log(2 * np.pi * var), axis=1)
            mc = np.log(np.mean(np.exp(ll - ll.max()))) + ll.max()
            assert lap == pytest.approx(mc, abs=0.25)


def test_population_check_linear_model_fixed_effects():
    """FO is exact for the linear mixed model: the empirical SE of the fixed effects over
    simulated trials agrees with the Fisher prediction (loose: 40 trials)."""
    check = ff.population_check(
        line_group(30), LINE_FID, n_trials=40, predictions=(("fo", "full"),), seed=2
    )
    assert check.n_failed == 0
    assert check.estimates.shape == (40, 5)
    ratio = check.ratio("fo/full")
    for k in ("a", "b"):
        assert 0.7 < ratio[k] < 1.45, (k, ratio[k])
    assert "fo/full RSE%" in check.summary()
    assert set(check.to_dict()) >= {"empirical_se", "predicted_se", "bias"}


@pytest.mark.slow
def test_warfarin_example_fast_mode(capsys, tmp_path):
    from helpers import load_example

    module = load_example("warfarin_design")
    out = module.main(fast=True, out_dir=tmp_path)
    for k, v in module.POPED_RSE.items():
        assert out["rse_poped_design"][k] == pytest.approx(v, rel=1e-4)
    res = out["design_result"]
    assert res.criterion_value >= res.initial_value
    for d in out["design"]:
        assert np.all((d["t"] >= 0.25 - 1e-9) & (d["t"] <= 120 + 1e-9))
        assert d["dose"] == 70.0
    # RSE(CL) ∝ 1/√N: the required number per group from the optimal design's RSE.
    n = out["required_per_group"]
    expect = int(np.ceil(16 * (out["rse_optimal"]["CL"] / 10.0) ** 2))
    assert n == expect
    check = out["check"]
    assert check.n_trials == 4 and check.estimates.shape[1] == 7
    assert "PopED" in capsys.readouterr().out
    for name in ("warfarin_design.png", "warfarin_check.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "warfarin_check.png",
        "warfarin_design.png",
    ]


@pytest.mark.slow
def test_ode_individual_model_matches_closed_form():
    """An ff.ode_model individual model works unchanged: the one-compartment ODE gives the
    closed-form warfarin Fisher matrix (full FO, all derivatives through diffrax)."""

    def rhs(t, y, p):
        return jnp.stack([-p["KA"] * y[0], p["KA"] * y[0] - p["CL"] / p["V"] * y[1]])

    ode = ff.ode_model(rhs, y0=jnp.array([D0, 0.0]), observe=lambda y, p: y[1] / p["V"])
    g_ode = ff.PopulationExperiment(ode, TIMES, random=RANDOM, group_size=32, fim="full")
    F_ode = ff.fisher(g_ode, FID)
    F = ff.fisher(group(fim="full"), FID)
    np.testing.assert_allclose(F_ode.matrix, F.matrix, rtol=1e-5)


def test_fit_population_refuses_bad_data():
    with pytest.raises(ff.InputError, match=r"data\[0\].*\(30, 3\)"):
        ff.fit_population(line_group(30), [np.zeros((30, 3))], LINE_FID)
    with pytest.raises(ff.InputError, match="one \\(group_size, n_obs\\) array per group"):
        ff.fit_population(line_group(30), np.zeros((30, 4)), LINE_FID)
    with pytest.raises(ff.InputError, match="whole individuals"):
        ff.simulate_trials(line_group(2.5), LINE_FID)


def test_no_random_effects_is_replicated_regression():
    """random={}: N replicates of y = a + b t + ε, so F_ab = N XᵀX/σ² and
    F_σ²σ² = N n / (2σ⁴)."""
    t = np.array([0.0, 1.0, 2.0])
    g = ff.PopulationExperiment(line, t, random={}, error="additive", group_size=4)
    F = ff.fisher(g, {"a": 1.0, "b": 2.0, "sigma2_add": 0.5})
    X = np.stack([np.ones(3), t], 1)
    np.testing.assert_allclose(F.matrix[:2, :2], 4 * X.T @ X / 0.5, rtol=1e-13)
    assert F.matrix[2, 2] == pytest.approx(4 * 3 / (2 * 0.5**2), rel=1e-13)
    np.testing.assert_allclose(F.matrix[:2, 2], 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Correlated random effects (off-diagonal Ω)
# ---------------------------------------------------------------------------------------
PAIRS = [("CL", "V"), ("V", "KA")]
FID_CORR = {**FID, "omega_CL_V": 0.02, "omega_V_KA": -0.03}  # ρ = 0.53, -0.27


@pytest.mark.parametrize("fim", ["full", "reduced"])
def test_correlated_omega_matches_numpy_finite_differences(fim):
    """V = G Ω Gᵀ + Σ with a full Ω; the covariances are Fisher parameters in the
    variance block (reduced: no cross terms with the fixed effects)."""
    g = group(fim=fim, correlated=PAIRS)
    F = ff.fisher(g, FID_CORR)
    assert F.names == tuple(FID_CORR)
    ref = fo_fisher_np(FID_CORR, RANDOM, "proportional", 32, fim == "reduced", pairs=PAIRS)
    np.testing.assert_allclose(F.matrix, ref, rtol=2e-6, atol=1e-9 * np.abs(ref).max())
    if fim == "reduced":
        assert np.all(F.matrix[:3, 3:] == 0.0)


def test_zero_covariance_leaves_the_diagonal_fisher_matrix_unchanged():
    F_diag = ff.fisher(line_group(12), LINE_FID)
    F = ff.fisher(line_group(12, correlated=[("b", "a")]), {**LINE_FID, "omega_b_a": 0.0})
    assert F.names == (*LINE_FID, "omega_b_a")
    np.testing.assert_allclose(F.matrix[:5, :5], F_diag.matrix, rtol=1e-12)
    assert F.matrix[5, 5] > 0
    g = line_group(12, correlated=[("b", "a")])
    with count_compiles() as counts:  # another size or covariance: no recompilation
        F30 = ff.fisher(g.with_group_size(30), {**LINE_FID, "omega_b_a": 0.0})
        ff.fisher(g.with_group_size(7), {**LINE_FID, "omega_b_a": 0.05})
    assert counts["compile"] == 0
    np.testing.assert_allclose(F30.matrix, F.matrix * 30 / 12, rtol=1e-13)


def test_correlated_linear_mixed_model_closed_form_and_mc():
    """y = X(β + η) + ε with Cov(η_a, η_b) = c: ∂V/∂c = x_a x_bᵀ + x_b x_aᵀ."""
    X = np.stack([np.ones(4), LINE_T], 1)
    fid = {**LINE_FID, "omega_a_b": 0.06}
    Om = np.array([[0.3, 0.06], [0.06, 0.05]])
    V = X @ Om @ X.T + 0.1 * np.eye(4)
    Vi = np.linalg.inv(V)
    a, b = X[:, 0], X[:, 1]
    dV = [np.outer(a, a), np.outer(b, b), np.eye(4), np.outer(a, b) + np.outer(b, a)]
    ref = np.zeros((6, 6))
    ref[:2, :2] = X.T @ Vi @ X
    ref[2:, 2:] = 0.5 * np.array([[np.trace(Vi @ p @ Vi @ q) for q in dV] for p in dV])
    g = line_group(12, correlated=[("a", "b")])
    F = ff.fisher(g, fid)
    np.testing.assert_allclose(F.matrix, 12 * ref, rtol=1e-11, atol=1e-12)
    # Monte-Carlo moments with η = L z (L Lᵀ = Ω): exact up to the quadrature error.
    F_mc = ff.fisher(g.variant(approximation="mc", n_eta=1024), fid)
    d = np.sqrt(np.diag(F.matrix))
    np.testing.assert_allclose(F_mc.matrix / np.outer(d, d), F.matrix / np.outer(d, d), atol=2e-2)
    assert g.variant(fim="reduced").correlated == [("a", "b")]


def test_nonpositive_definite_omega_is_refused_naming_the_entries():
    g = line_group(5, correlated=[("a", "b")])
    bad = {**LINE_FID, "omega_a_b": 0.2}  # ρ = 0.2 / √(0.3·0.05) = 1.63
    with pytest.raises(ff.InputError, match=r"not positive definite.*omega_a_b=0\.2\b"):
        ff.fisher(g, bad)
    with pytest.raises(ff.InputError, match=r"omega2_a=0\.3, omega2_b=0\.05"):
        ff.simulate_trials(g, bad)
    with pytest.raises(ff.InputError, match=r"omega_a_b=0\.2\b"):
        ff.fit_population(g, [np.zeros((5, 4))], bad)
    with pytest.raises(ff.ParameterError, match="omega_a_b"):
        ff.fisher(g, LINE_FID)


@pytest.mark.parametrize(
    ("correlated", "match"),
    [
        ("CL", "list of pairs"),
        ([("CL",)], r"\('CL',\)"),
        ([("CL", "Q")], "'Q' has no random effect"),
        ([("CL", "CL")], "itself"),
        ([("CL", "V"), ("V", "CL")], "twice"),
    ],
)
def test_bad_correlated_pairs_are_named(correlated, match):
    with pytest.raises(ff.InputError, match=match):
        group(correlated=correlated)


def test_correlated_simulation_and_laplace_fit_against_closed_forms():
    """Simulated η have the full Ω (sample covariance of the data); the Laplace fit of a
    correlated linear model equals the maximum of its closed-form marginal likelihood."""
    X = np.stack([np.ones(4), LINE_T], 1)
    fid = {**LINE_FID, "omega_a_b": -0.06}
    Om = np.array([[0.3, -0.06], [-0.06, 0.05]])
    V = X @ Om @ X.T + 0.1 * np.eye(4)
    y = ff.simulate_trials(line_group(400, correlated=[("a", "b")]), fid, 10, seed=4)[0]
    np.testing.assert_allclose(np.cov(y.reshape(-1, 4).T), V, atol=0.06)
    # without the covariance the data covariance would differ by 2·(-0.06)·t: > 0.4 at t=4
    assert abs(np.cov(y.reshape(-1, 4).T)[3, 3] - V[3, 3]) < 0.1

    y1 = y[0, :30]
    est = ff.fit_population(line_group(30, correlated=[("a", "b")]), [y1], fid)
    assert est["_success"]

    def nll(u):
        a, b, oa, ob, s = u[0], u[1], *np.exp(u[2:5])
        c = np.tanh(u[5]) * np.sqrt(oa * ob)
        V = X @ np.array([[oa, c], [c, ob]]) @ X.T + s * np.eye(4)
        r = y1 - X @ np.array([a, b])
        _, logdet = np.linalg.slogdet(V)
        return 0.5 * (len(y1) * logdet + np.einsum("ij,jk,ik->", r, np.linalg.inv(V), r))

    u0 = np.array([2.0, 0.5, np.log(0.3), np.log(0.05), np.log(0.1), -0.5])
    ref = scipy.optimize.minimize(
        nll, u0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000}
    )
    oa, ob = np.exp(ref.x[2:4])
    expect = [ref.x[0], ref.x[1], oa, ob, np.exp(ref.x[4]), np.tanh(ref.x[5]) * np.sqrt(oa * ob)]
    np.testing.assert_allclose([est[k] for k in fid], expect, rtol=2e-4)
    # population_check runs through (3 trials: only the plumbing and the names).
    chk = ff.population_check(
        line_group(30, correlated=[("a", "b")]), fid, n_trials=3, predictions=[("fo", "full")]
    )
    assert chk.names == tuple(fid) and chk.estimates.shape == (3, 6)
    assert np.all(np.abs(chk.estimates[:, 5]) < np.sqrt(chk.estimates[:, 2] * chk.estimates[:, 3]))


# ---------------------------------------------------------------------------------------
# An ODE individual model with multiple oral doses (dose amount a design variable)
# ---------------------------------------------------------------------------------------
DOSE_TIMES = np.array([0.0, 12.0, 24.0])
DOSED_DESIGN = {"times": np.array([1.0, 6.0, 13.0, 25.0, 36.0, 48.0]), "dose": 70.0}
FID_DOSED = {**FID, "sigma2_add": 0.05}  # combined error: the dose matters


def depot_rhs(t, y, p):
    """Depot (state 0, where the doses go) -> central (state 1), elimination CL/V."""
    return jnp.stack([-p["KA"] * y[0], p["KA"] * y[0] - p["CL"] / p["V"] * y[1]])


def dosed_ode():
    return ff.ode_model(
        depot_rhs,
        jnp.zeros(2),
        observe=lambda y, p: y[1] / p["V"],
        doses=lambda p, d: (jnp.asarray(DOSE_TIMES), d["dose"] * jnp.ones(3)),
    )


def superposition(p, d, xp=jnp):
    """The closed form: a sum of one-compartment oral (Bateman) doses."""
    t, k, ka = d["times"], p["CL"] / p["V"], p["KA"]
    c = 0.0
    for td in DOSE_TIMES:
        dt = t - td
        s = xp.where(dt > 0, dt, 1.0)
        one = d["dose"] * ka / (p["V"] * (ka - k)) * (xp.exp(-k * s) - xp.exp(-ka * s))
        c = c + xp.where(dt > 0, one, 0.0)
    return c


def dosed_group(model, fim):
    return ff.PopulationExperiment(
        model, DOSED_DESIGN, random=RANDOM, error="combined", group_size=20, fim=fim
    )


def test_dosed_ode_population_reduced_fim_matches_superposition():
    """A PopulationExperiment of an ff.ode_model with three oral doses read from the design
    works unchanged: its reduced FO Fisher matrix is that of the closed form."""
    F_ode = ff.fisher(dosed_group(dosed_ode(), "reduced"), FID_DOSED)
    F = ff.fisher(dosed_group(superposition, "reduced"), FID_DOSED)
    np.testing.assert_allclose(F_ode.matrix, F.matrix, rtol=1e-6, atol=1e-10 * F.matrix.max())
    # ... and the closed form is the numpy finite-difference reference.
    f_np = lambda p: superposition(p, DOSED_DESIGN, xp=np)  # noqa: E731
    ref = fo_fisher_np(FID_DOSED, RANDOM, "combined", 20, True, f_np=f_np)
    np.testing.assert_allclose(F.matrix, ref, rtol=2e-6, atol=1e-9 * np.abs(ref).max())
