"""Optimal experimental design (issue 7): known optimal designs, gradients, multistart,
discrete selection, required repeats and identifiability repair.

References are closed forms re-derived here in numpy (the product model a·b·e^(−kt); the
collinearity index of Brun, Reichert & Künsch 2001; the D-optimal design {0, 1/k} of
exponential decay; the Rooney & Biegler 2001 model), brute-force enumeration and finite
differences, never the design code's own output.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from helpers import decay, load_example, rooney_biegler

import fisherforecast as ff
from fisherforecast._design import criteria, objective, optimise
from fisherforecast._design import select as select_mod
from fisherforecast._design.criteria import fom_criterion, sigma_criterion
from fisherforecast._design.objective import design_criterion
from fisherforecast._record import Record

# ---------------------------------------------------------------------------------------
# Models and their closed-form Fisher matrices
# ---------------------------------------------------------------------------------------
RB_FID = {"a": 15.0, "b": 0.5}
RB_SIGMA = 0.1


def rb_logdet(times, a=15.0, b=0.5, sigma=RB_SIGMA):
    """log det of the Rooney–Biegler Fisher matrix, written out by hand (numpy)."""
    t = np.asarray(times, dtype=float)
    g1 = 1.0 - np.exp(-b * t)  # ∂y/∂a
    g2 = a * t * np.exp(-b * t)  # ∂y/∂b
    F = (
        np.stack(
            [[np.sum(g1 * g1, -1), np.sum(g1 * g2, -1)], [np.sum(g1 * g2, -1), np.sum(g2 * g2, -1)]]
        )
        / sigma**2
    )
    det = F[0, 0] * F[1, 1] - F[0, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):  # t = 0 carries no information
        return np.where(det > 0, np.log(det), -np.inf)


@pytest.fixture(scope="module")
def rb_two_point():
    exp = ff.Experiment(rooney_biegler, ff.Gaussian(sigma=RB_SIGMA), design=np.array([5.0, 6.0]))
    return ff.optimize_design(exp, RB_FID, bounds=(0.0, 10.0), n_starts=16)


# ---------------------------------------------------------------------------------------
# The Rooney & Biegler (2001) model y = a(1 − e^(−bt)), (a, b) = (15, 0.5), σ = 0.1: its
# Fisher matrix at t = 5, log-FIM [[18957.78, 4238.27], [4238.27, 947.52]] (closed form)
# ---------------------------------------------------------------------------------------
def test_rooney_biegler_fim_at_one_point_matches_validation():
    exp = ff.Experiment(rooney_biegler, ff.Gaussian(sigma=RB_SIGMA), design=np.array([5.0]))
    F = ff.fisher(exp, RB_FID)
    np.testing.assert_allclose(F.matrix, [[84.26, 565.10], [565.10, 3790.10]], rtol=2e-4)
    np.testing.assert_allclose(
        F.to_log().matrix, [[18957.78, 4238.27], [4238.27, 947.52]], rtol=2e-5
    )


# ---------------------------------------------------------------------------------------
# Known optimal designs
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0.5, 1.5])
def test_exponential_decay_two_point_design_is_zero_and_one_over_k(k):
    # Closed form: det F = A² e^{-2k(t1+t2)} (t1 - t2)² / σ⁴ is maximised on t ≥ 0 by
    # {0, 1/k}; the upper bound 10 is not active.
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([3.0, 4.0]))
    res = ff.optimize_design(exp, {"A": 2.0, "k": k}, bounds=(0.0, 10.0), n_starts=8)
    np.testing.assert_allclose(np.sort(res.design), [0.0, 1.0 / k], atol=1e-7)
    analytic = 2 * math.log(2.0) - 2 * k / k + 2 * math.log(1.0 / k) - 4 * math.log(0.1)
    assert res.criterion_value == pytest.approx(analytic, rel=1e-12)
    assert res.design.dtype == np.float64
    assert res.gain > 0 and res.criterion_value > res.initial_value


def test_rooney_biegler_two_point_design(rb_two_point):
    res = rb_two_point
    t = np.sort(res.design)
    # Reference optimum for the Rooney & Biegler (2001) model without a prior ...
    assert t[1] == pytest.approx(10.0, abs=1e-9)
    assert t[0] == pytest.approx(1.932, abs=5e-4)
    # ... and an independent 1-D maximisation of the hand-written determinant with t2 = 10.
    ref = scipy.optimize.minimize_scalar(
        lambda s: -rb_logdet([s, 10.0]),
        bounds=(0.5, 5.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert t[0] == pytest.approx(ref.x, abs=1e-6)
    assert res.criterion_value == pytest.approx(rb_logdet(t), rel=1e-12)
    # Every start reached the same optimum (the problem is benign) and the summary says so.
    assert res.n_at_best() == res.n_starts
    assert "1.9322" in res.summary()


def test_d_optimal_design_beats_random_designs(rb_two_point):
    rng = np.random.default_rng(12345)
    random_designs = rng.uniform(0.0, 10.0, size=(200, 2))
    values = rb_logdet(random_designs)
    assert np.all(values <= rb_two_point.criterion_value + 1e-12)
    assert np.max(values) < rb_two_point.criterion_value  # and strictly better than all


def test_min_spacing_design_is_feasible_and_beats_random_feasible_designs():
    exp = ff.Experiment(
        rooney_biegler, ff.Gaussian(sigma=RB_SIGMA), design=np.linspace(1.0, 9.0, 6)
    )
    res = ff.optimize_design(
        exp, RB_FID, bounds=(0.0, 10.0), n_starts=24, constraints={"min_spacing": 0.3}
    )
    t = res.design
    assert np.all(np.diff(t) >= 0.3 - 1e-9) and t[0] >= 0 and t[-1] <= 10.0
    # No feasible random design does better (uniform draws on the feasible set).
    rng = np.random.default_rng(7)
    gaps = rng.dirichlet(np.ones(7), size=200) * (10.0 - 5 * 0.3)
    random = np.cumsum(gaps[:, :6], axis=1) + 0.3 * np.arange(6)
    assert np.all(rb_logdet(random) <= res.criterion_value + 1e-12)
    # The unconstrained optimum (replicates at 1.932 and 10) is an upper bound.
    assert res.criterion_value <= rb_logdet([1.93216] * 3 + [10.0] * 3) + 1e-9
    assert res.criterion_value == pytest.approx(rb_logdet(t), rel=1e-12)


def test_fixed_entries_stay_put_and_the_rest_is_optimal():
    exp = ff.Experiment(rooney_biegler, ff.Gaussian(sigma=RB_SIGMA), design=np.array([5.0, 8.0]))
    res = ff.optimize_design(
        exp, RB_FID, bounds=(0.0, 10.0), fixed=np.array([False, True]), n_starts=8
    )
    assert res.design[1] == 8.0
    ref = scipy.optimize.minimize_scalar(
        lambda s: -rb_logdet([s, 8.0]),
        bounds=(0.0, 7.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert res.design[0] == pytest.approx(ref.x, abs=1e-6)


@pytest.mark.parametrize(
    "criterion,value", [("D", math.log(4.0)), ("A", -1.0), ("E", 2.0), ("ME", 1.0)]
)
def test_straight_line_optimal_designs_for_every_criterion(criterion, value):
    # y = a + b t on [-1, 1] with σ = 1: {-1, 1} is D-, A-, E- and ME-optimal, F = 2 I.
    exp = ff.Experiment(
        lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0), design=np.array([-0.2, 0.3])
    )
    res = ff.optimize_design(
        exp, {"a": 1.0, "b": 2.0}, bounds=(-1.0, 1.0), criterion=criterion, n_starts=6
    )
    np.testing.assert_allclose(np.sort(res.design), [-1.0, 1.0], atol=1e-6)
    assert res.criterion_value == pytest.approx(value, rel=1e-6)
    assert res.maximize == (criterion != "ME")


def test_user_criteria_sigma_and_a_plain_callable():
    exp = ff.Experiment(
        lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0), design=np.array([-0.2, 0.3])
    )
    fid = {"a": 1.0, "b": 2.0}
    # σ_b² = σ²/Σ(t - t̄)²: minimised by the two ends, σ_b = 1/√2.
    res = ff.optimize_design(
        exp, fid, bounds=(-1.0, 1.0), criterion=sigma_criterion("b"), n_starts=6
    )
    assert not res.maximize
    assert res.criterion_value == pytest.approx(1.0 / math.sqrt(2.0), rel=1e-8)
    np.testing.assert_allclose(np.sort(res.design), [-1.0, 1.0], atol=1e-6)
    # A plain lambda on the DesignFisher, minimised through `maximize=False`: σ_a² =
    # σ² Σt² / (n Σt² - (Σt)²) is smallest, 1/2, when both points sit at ±1.
    plain = ff.optimize_design(
        exp, fid, bounds=(-1.0, 1.0), maximize=False, n_starts=6, criterion=lambda F: F.sigma("a")
    )
    assert plain.criterion_value == pytest.approx(1.0 / math.sqrt(2.0), rel=1e-8)
    assert "minimised" in plain.criterion


def test_design_fisher_methods_match_fisher_matrix():
    # The traced view user criteria receive agrees with the numpy FisherMatrix.
    M = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]])
    names = ("w0", "wa", "h")
    ref = ff.FisherMatrix(M, names)
    with jax.enable_x64(True):
        F = criteria.DesignFisher(jnp.asarray(M), names)
        np.testing.assert_allclose(np.asarray(F.covariance()), ref.covariance(), rtol=1e-12)
        assert float(F.sigma("wa")) == pytest.approx(ref.sigma()["wa"], rel=1e-12)
        np.testing.assert_allclose(
            np.asarray(F.marginalize(["w0", "wa"]).matrix),
            ref.marginalize(["w0", "wa"]).matrix,
            rtol=1e-12,
        )
        assert float(F.figure_of_merit(["w0", "wa"])) == pytest.approx(
            ref.figure_of_merit(["w0", "wa"]), rel=1e-12
        )
        assert float(fom_criterion(["w0", "wa"])(F)) == pytest.approx(
            ref.figure_of_merit(["w0", "wa"]), rel=1e-12
        )
        assert float(F.logdet()) == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12)
        assert float(F.conditional_sigma("h")) == pytest.approx(1 / math.sqrt(2.0), rel=1e-12)
        with pytest.raises(ff.ParameterError, match="'q'"):
            F.sigma("q")
    assert sigma_criterion("w0") is sigma_criterion("w0")  # cached: no recompilation


def test_prior_is_added_by_name():
    # With any prior on A, det(F_point + prior) = prior_AA · (∂y/∂k)²/σ², maximised at t = 1/k.
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([5.0]))
    prior = ff.FisherMatrix([[4.0]], ["A"])
    res = ff.optimize_design(exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), prior=prior, n_starts=4)
    h = 2.0 * 2.0 * math.exp(-1.0) / 0.1  # ∂y/∂k / σ at t = 1/k
    assert res.criterion_value == pytest.approx(math.log(4.0 * h**2), rel=1e-12)
    assert res.design[0] == pytest.approx(2.0, abs=1e-7)
    np.testing.assert_allclose(
        res.total_fisher.matrix - res.fisher.matrix, [[4.0, 0], [0, 0]], atol=1e-9
    )


def test_joint_design_of_two_experiments():
    # Two one-point experiments measuring the same decay: jointly the 2-point problem, so the
    # optimum is {0, 1/k}; per-experiment bounds put the early point in the first.
    early = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([0.5]), name="early")
    late = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([5.0]), name="late")
    res = ff.optimize_design(
        [early, late], {"A": 2.0, "k": 0.5}, bounds=[(0.0, 1.0), (1.0, 10.0)], n_starts=8
    )
    assert isinstance(res.design, list) and len(res.experiment) == 2
    assert res.design[0][0] == pytest.approx(0.0, abs=1e-9)
    assert res.design[1][0] == pytest.approx(2.0, abs=1e-7)
    assert res.experiment[1].name == "late"
    both = ff.fisher(res.experiment, {"A": 2.0, "k": 0.5})
    np.testing.assert_allclose(res.fisher.matrix, both.matrix, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Multistart against a single local start
# ---------------------------------------------------------------------------------------
def test_multistart_finds_the_global_optimum_where_a_local_start_fails():
    # y = A e^{-t/10} sin t, one measurement: F ∝ g(t)², with a local maximum in every hump
    # at tan t = 10. The largest is the first, t* = arctan 10; a start at t = 8 climbs the
    # third hump to arctan 10 + 2π instead.
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-0.1 * t) * jnp.sin(t),
        ff.Gaussian(sigma=0.1),
        design=np.array([8.0]),
    )
    fid = {"A": 1.0}
    local = ff.optimize_design(exp, fid, bounds=(0.0, 12.0), n_starts=1)
    assert local.design[0] == pytest.approx(math.atan(10.0) + 2 * math.pi, abs=1e-6)
    multi = ff.optimize_design(exp, fid, bounds=(0.0, 12.0), n_starts=32)
    assert multi.design[0] == pytest.approx(math.atan(10.0), abs=1e-6)
    g = math.exp(-0.1 * math.atan(10.0)) * math.sin(math.atan(10.0))
    assert multi.criterion_value == pytest.approx(math.log(g**2 / 0.01), rel=1e-10)
    assert multi.criterion_value > local.criterion_value + 0.5
    # The start values expose the multimodality: not every start reached the optimum.
    assert 1 <= multi.n_at_best() < multi.n_starts


# ---------------------------------------------------------------------------------------
# Gradients through the design
# ---------------------------------------------------------------------------------------
def test_design_gradient_has_the_closed_form_for_decay():
    # ∂/∂t1 log det = -2k + 2/(t1 - t2), ∂/∂t2 = -2k - 2/(t1 - t2).
    t = np.array([0.7, 3.1])
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.3), design=t)
    value, grad = design_criterion(exp, {"A": 1.7, "k": 0.4}, gradient=True)
    k = 0.4
    np.testing.assert_allclose(
        grad, [-2 * k + 2 / (t[0] - t[1]), -2 * k - 2 / (t[0] - t[1])], rtol=1e-10
    )
    assert value == pytest.approx(
        2 * math.log(1.7) - 2 * k * t.sum() + 2 * math.log(t[1] - t[0]) - 4 * math.log(0.3),
        rel=1e-12,
    )


@pytest.mark.parametrize("criterion", ["D", "A", "E", "ME", "sigma_b"])
def test_design_gradient_matches_finite_differences(criterion):
    crit = sigma_criterion("b") if criterion == "sigma_b" else criterion
    t0 = np.array([0.7, 2.3, 5.1, 8.4])
    exp = ff.Experiment(rooney_biegler, ff.Gaussian(sigma=RB_SIGMA), design=t0)
    _, grad = design_criterion(exp, RB_FID, criterion=crit, gradient=True)
    h = 1e-5
    fd = []
    for i in range(t0.size):
        up, down = t0.copy(), t0.copy()
        up[i] += h
        down[i] -= h
        f_up = design_criterion(exp.replace(design=up), RB_FID, criterion=crit)
        f_down = design_criterion(exp.replace(design=down), RB_FID, criterion=crit)
        fd.append((f_up - f_down) / (2 * h))
    scale = np.max(np.abs(fd))
    np.testing.assert_allclose(grad, fd, atol=1e-6 * scale, rtol=1e-6)
    if criterion in ("D", "sigma_b"):  # reverse mode gives the same exact gradient
        _, grad_rev = design_criterion(
            exp, RB_FID, criterion=crit, gradient=True, gradient_mode="reverse"
        )
        np.testing.assert_allclose(grad_rev, grad, rtol=1e-10, atol=1e-12 * scale)


# ---------------------------------------------------------------------------------------
# ODE model: the time derivatives go through the solver (slow: compiles a diffrax solve)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ode_decay_design_matches_closed_form():
    model = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=lambda p: p["A"])
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=np.array([1.0, 5.0]))
    res = ff.optimize_design(exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=4)
    np.testing.assert_allclose(np.sort(res.design), [0.0, 2.0], atol=1e-5)


# ---------------------------------------------------------------------------------------
# Compilation, dtype and input checking
# ---------------------------------------------------------------------------------------
def test_repeated_designs_do_not_recompile():
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([3.0, 4.0]))
    fid = {"A": 2.0, "k": 0.5}
    ff.optimize_design(exp, fid, bounds=(0.0, 10.0), n_starts=8)
    sizes = [
        f._cache_size()
        for f in (
            objective.single_start,
            objective.vmapped_starts,
            objective.loss_and_grad,
            objective.natural_batch,
        )
    ]
    ff.optimize_design(
        exp.replace(design=np.array([0.1, 7.5])),
        {"A": 1.0, "k": 0.3},
        bounds=(0.0, 8.0),
        n_starts=8,
        seed=5,
    )
    assert [
        f._cache_size()
        for f in (
            objective.single_start,
            objective.vmapped_starts,
            objective.loss_and_grad,
            objective.natural_batch,
        )
    ] == sizes


def test_padded_chunks_reach_the_closed_form_optimum():
    # 4 starts in vmapped chunks of 3 (the last chunk padded with copies of the last start):
    # the D-optimal 2-point design of A e^(-kt) on [0, 10] is {0, 1/k}.
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([3.0, 4.0]))
    res = ff.optimize_design(
        exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=4, batch_size=3, n_polish=1
    )
    np.testing.assert_allclose(np.sort(res.design), [0.0, 2.0], atol=1e-5)
    assert res.all_starts.shape == (4,)
    with pytest.raises(ValueError, match=r"batch_size.*'fast'"):
        ff.optimize_design(exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), batch_size="fast")


def test_bad_input_is_rejected_with_the_argument_named():
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([0.25, 0.75]))
    fid = {"A": 2.0, "k": 0.5}
    with pytest.raises(ValueError, match="bounds"):
        ff.optimize_design(exp, fid, bounds=(5.0, 1.0))
    with pytest.raises(ValueError, match=r"outside `bounds`.*\[0\.25, 0\.75\]"):
        ff.optimize_design(exp, fid, bounds=(20.0, 30.0))
    with pytest.raises(ValueError, match="bounds"):
        ff.optimize_design(exp, fid, bounds={"t": (0.0, 1.0)})
    with pytest.raises(ValueError, match="bounds"):
        ff.optimize_design(exp, fid, bounds=None)
    with pytest.raises(ValueError, match="criterion"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), criterion="Q")
    with pytest.raises(ValueError, match="maximize"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), criterion="D", maximize=False)
    with pytest.raises(ff.ParameterError, match="prior"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), prior=ff.FisherMatrix([[1.0]], ["B"]))
    with pytest.raises(ValueError, match="fixed"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), fixed=True)
    with pytest.raises(ValueError, match="constraints"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), constraints={"gap": 1.0})
    with pytest.raises(ValueError, match="min_spacing"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), constraints={"min_spacing": 2.0})
    with pytest.raises(ValueError, match="n_starts"):
        ff.optimize_design(exp, fid, bounds=(0.0, 1.0), n_starts=0)
    with pytest.raises(ValueError, match="no design"):
        ff.optimize_design(
            ff.Experiment(lambda p: p["A"], ff.Gaussian(sigma=1.0)), fid, bounds=(0.0, 1.0)
        )
    with pytest.raises(ff.SingularFisherError, match="repair_identifiability"):
        # One point cannot determine two parameters, however it is placed.
        ff.optimize_design(exp.replace(design=np.array([1.0])), fid, bounds=(0.0, 1.0), n_starts=4)


# ---------------------------------------------------------------------------------------
# Result object
# ---------------------------------------------------------------------------------------
def test_result_summary_dict_and_plot(rb_two_point):
    res = rb_two_point
    text = res.summary()
    assert "D-optimality" in text and "sigma initial" in text
    d = res.to_dict()
    assert d["criterion_value"] == res.criterion_value and len(d["all_starts"]) == 16
    assert set(d["sigma"]) == {"a", "b"}
    assert res.efficiency == pytest.approx(
        math.exp((rb_logdet([5.0, 6.0]) - rb_logdet(np.sort(res.design))) / 2), rel=1e-9
    )
    fig = res.plot(n_grid=50)
    axes = fig.axes
    assert len(axes) == 3
    assert axes[0].get_xlabel().startswith("design variable")
    assert axes[1].get_title() == "criterion along the design space"
    # One profile per distinct point; each peaks at its own optimal position.
    lines = [ln for ln in axes[1].get_lines() if ln.get_label().startswith("move point")]
    assert len(lines) == 2
    for line in lines:
        _, y = line.get_data()
        assert np.max(y) <= res.criterion_value + 1e-9
    assert len(axes[2].get_lines()[0].get_xdata()) == 16


# ---------------------------------------------------------------------------------------
# select_measurements
# ---------------------------------------------------------------------------------------
def test_select_measurements_recovers_the_known_optimum_on_a_grid():
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1))
    grid = np.arange(0.0, 10.01, 0.25)
    sel = ff.select_measurements(exp, {"A": 2.0, "k": 0.5}, grid, 2)
    np.testing.assert_array_equal(sel.design, [0.0, 2.0])
    relaxed = ff.select_measurements(
        exp, {"A": 2.0, "k": 0.5}, grid, 4, method="relaxation", allow_repeats=True
    )
    np.testing.assert_array_equal(relaxed.design, [0.0, 0.0, 2.0, 2.0])
    # The relaxation optimum bounds every exact design; here the design attains it.
    assert relaxed.bound >= relaxed.criterion_value - 1e-9
    assert relaxed.bound == pytest.approx(relaxed.criterion_value, abs=1e-6)


@pytest.mark.parametrize("k,method", [(2, "exchange"), (3, "exchange"), (3, "relaxation")])
def test_select_measurements_matches_brute_force(k, method):
    grid = np.linspace(0.0, 10.0, 41)
    exp = ff.Experiment(rooney_biegler, ff.Gaussian(sigma=RB_SIGMA))
    sel = ff.select_measurements(exp, RB_FID, grid, k, method=method)
    combos = np.array(list(itertools.combinations(range(grid.size), k)))
    values = rb_logdet(grid[combos])
    best = combos[np.argmax(values)]
    np.testing.assert_array_equal(sel.indices, best)
    assert sel.criterion_value == pytest.approx(values.max(), rel=1e-12)
    assert "criterion" in sel.summary() and sel.to_dict()["indices"] == best.tolist()


def test_select_measurements_rejects_non_additive_candidates():
    grid = np.linspace(0.5, 5.0, 10)
    fid = {"A": 2.0, "k": 0.5}
    # Output at one time depends on all times: the information of points does not add.
    coupled = ff.Experiment(
        lambda p, t: p["A"] * t / jnp.sum(t) * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1)
    )
    with pytest.raises(ValueError, match="does not add up"):
        ff.select_measurements(coupled, fid, grid, 2)
    fixed_cov = ff.Experiment(decay, ff.Gaussian(cov=np.eye(10) * 0.01))
    with pytest.raises(ValueError, match="any length"):
        ff.select_measurements(fixed_cov, fid, grid, 2)
    with pytest.raises(ValueError, match="`k`"):
        ff.select_measurements(ff.Experiment(decay, ff.Gaussian(sigma=0.1)), fid, grid, 11)


# ---------------------------------------------------------------------------------------
# required_samples
# ---------------------------------------------------------------------------------------
def test_required_samples_follows_the_inverse_square_law():
    t = np.array([0.0, 1.0, 2.0, 4.0])
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=t)
    fid = {"A": 2.0, "k": 0.5}
    sigma1 = ff.fisher(exp, fid).sigma()
    req = ff.required_samples(exp, fid, {"A": sigma1["A"] / 3.0, "k": sigma1["k"] / 2.5})
    assert req.per_parameter == {"A": 9, "k": 7}  # 3², ceil(2.5²)
    assert req.overall == 9
    # Check against explicit repeats: n repeats reach the target, n - 1 do not.
    for name, n in req.per_parameter.items():
        target = req.target[name]
        repeated = ff.fisher(exp.replace(design=np.tile(t, n)), fid).sigma()[name]
        fewer = ff.fisher(exp.replace(design=np.tile(t, n - 1)), fid).sigma()[name]
        assert repeated <= target * (1 + 1e-12) < fewer
    assert req.sigma_at(4)["A"] == pytest.approx(sigma1["A"] / 2, rel=1e-12)
    rel = ff.required_samples(exp, fid, 0.01, relative=True)
    assert rel.per_parameter["k"] == math.ceil((sigma1["k"] / 0.005) ** 2)
    assert "repeats" in rel.summary()


def test_required_samples_with_a_prior_and_an_unreachable_target():
    # y = a·b e^{-kt}: only a·b is identified; a prior on a fixes b up to σ_b/b = σ_a/a, so
    # no number of repeats gets σ_b below b·σ_a/a.
    t = np.arange(0.0, 5.01, 0.5)
    exp = ff.Experiment(
        lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=1.0), design=t
    )
    fid = {"a": 2.0, "b": 3.0, "k": 0.5}
    prior = ff.FisherMatrix([[1.0 / 0.1**2]], ["a"])
    floor = 3.0 * 0.1 / 2.0
    req = ff.required_samples(exp, fid, {"b": floor * 0.99, "k": 0.01}, prior=prior)
    assert req.per_parameter["b"] == math.inf and req.overall == math.inf
    # Reachable target: compare with a direct search over n.
    F1 = ff.fisher(exp, fid).matrix
    P = np.zeros((3, 3))
    P[0, 0] = 100.0
    target = floor * 1.05
    n_ref = next(n for n in range(1, 10**6) if math.sqrt(np.linalg.inv(n * F1 + P)[1, 1]) <= target)
    assert ff.required_samples(exp, fid, {"b": target}, prior=prior).per_parameter["b"] == n_ref
    with pytest.raises(ff.SingularFisherError):
        ff.required_samples(exp, fid, 0.1)
    with pytest.raises(ValueError, match="target_sigma"):
        ff.required_samples(exp, fid, -1.0, prior=prior)


# ---------------------------------------------------------------------------------------
# repair_identifiability
# ---------------------------------------------------------------------------------------
def _collinearity(J):
    """Collinearity index from a sensitivity matrix (Brun, Reichert & Künsch 2001, Water
    Resour. Res. 37, 1015): 1/√λ_min of the unit-normalised columns."""
    S = J / np.linalg.norm(J, axis=0)
    return 1.0 / math.sqrt(np.linalg.eigvalsh(S.T @ S)[0])


def test_repair_product_model_with_another_observable():
    # Closed form for a·b·e^(−kt): rank 2 of 3, null direction ∝ (1, -1, 0) in ln-parameters.
    t = np.arange(0.0, 5.01, 0.5)
    product = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)  # noqa: E731
    exp = ff.Experiment(product, ff.Gaussian(sigma=1.0), design=t)
    fid = {"a": 2.0, "b": 3.0, "k": 0.5}
    later = ff.Experiment(
        product, ff.Gaussian(sigma=1.0), design=np.array([6.0]), name="later time"
    )
    direct_a = ff.Experiment(
        lambda p: jnp.atleast_1d(p["a"]), ff.Gaussian(sigma=1.0), name="assay of a"
    )
    broken = ff.Experiment(
        lambda p: jnp.atleast_1d(jnp.log(-p["a"])), ff.Gaussian(sigma=1.0), name="broken"
    )
    rep = ff.repair_identifiability(exp, fid, [later, broken, direct_a])
    assert rep.rank_before == 2 and rep.collinearity_before == math.inf
    (direction,) = rep.null_directions
    assert direction["a"] == pytest.approx(-direction["b"], rel=1e-8)
    assert abs(direction["a"]) == pytest.approx(1 / math.sqrt(2), rel=1e-8)
    assert rep.added == [2] and rep.success and rep.rank_after == 3
    lifts = {row["label"]: row["lift"] for row in rep.ranking}
    # v = (1, -1, 0)/√2 in ln θ; F̃ of "a" alone is (a/σ)² in ln a: vᵀ F̃ v = 4/2 = 2.
    assert lifts["assay of a"] == pytest.approx(2.0, rel=1e-10)
    assert abs(lifts["later time"]) < 1e-10  # moves along the degeneracy, never repairs it
    assert rep.ranking[0]["label"] == "assay of a"
    assert [row["failed"] for row in rep.ranking if row["label"] == "broken"] == [True]
    # Collinearity after, re-derived from the hand-written sensitivity matrix.
    a, b, k = 2.0, 3.0, 0.5
    e = np.exp(-k * t)
    J = np.vstack([np.stack([b * e, a * e, -a * b * t * e], axis=1), [[1.0, 0.0, 0.0]]])
    assert rep.collinearity_after == pytest.approx(_collinearity(J), rel=1e-8)
    assert "assay of a" in rep.summary()


def test_repair_with_candidate_times_ranks_by_lift_along_the_null_direction():
    # All measurements at t = 0: k is unconstrained. The null direction is ln k, so the lift
    # of a point at t is (∂y/∂ln k)²/σ² = (A k t e^{-kt}/σ)², largest at t = 1/k.
    A, k, sigma = 1.5, 0.5, 0.1
    exp = ff.Experiment(decay, ff.Gaussian(sigma=sigma), design=np.zeros(3))
    cands = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
    rep = ff.repair_identifiability(exp, {"A": A, "k": k}, cands)
    lift = (A * k * cands * np.exp(-k * cands) / sigma) ** 2
    got = np.array([next(r["lift"] for r in rep.ranking if r["index"] == i) for i in range(5)])
    np.testing.assert_allclose(got, lift, rtol=1e-10, atol=1e-12)
    assert [r["index"] for r in rep.ranking] == list(np.argsort(-lift, kind="stable"))

    # The smallest repair is one point; of those, the largest smallest eigenvalue of the
    # ln-parameter Fisher matrix (computed here by hand) wins.
    def log_fim(times):
        times = np.asarray(times)
        J = np.stack([A * np.exp(-k * times), -A * k * times * np.exp(-k * times)], 1) / sigma
        return J.T @ J

    floors = [np.linalg.eigvalsh(log_fim([0, 0, 0, c]))[0] for c in cands[1:]]
    assert rep.added == [1 + int(np.argmax(floors))]
    assert rep.success and rep.rank_before == 1
    # Already identifiable: nothing to add.
    ok = ff.repair_identifiability(
        exp.replace(design=np.array([0.0, 2.0])), {"A": A, "k": k}, cands
    )
    assert ok.added == [] and ok.success


# ---------------------------------------------------------------------------------------
# The example runs in its fast mode (slow: compiles four design problems)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_design_example_runs_fast(tmp_path):
    module = load_example("design_sampling_times")
    out = module.main(fast=True, out_dir=tmp_path)
    assert out["figure"].exists()
    assert out["subjects_after"].overall < out["subjects_before"].overall
    assert out["d_optimal"].criterion_value > out["selection"].criterion_value - 1e-9
    assert out["selection"].bound >= out["selection"].criterion_value - 1e-9
    assert jax.config.jax_enable_x64 is False


# ---------------------------------------------------------------------------------------
# Review fixes: E-optimal exchange, failed repairs, singular designs, stuck starts, inputs
# ---------------------------------------------------------------------------------------
def decay_offset(p, t):
    return p["A"] * jnp.exp(-p["k"] * t) + p["c"]


def decay_offset_fim(times, A=2.0, k=0.5, sigma=0.1):
    """Hand-written Fisher matrix of A e^{-kt} + c (numpy), stacked over leading axes."""
    t = np.asarray(times, dtype=float)
    J = np.stack([np.exp(-k * t), -A * t * np.exp(-k * t), np.ones_like(t)], -1) / sigma
    return np.einsum("...ni,...nj->...ij", J, J)


def test_exchange_finds_the_e_optimal_subset_and_does_not_retrace():
    # With fewer than P points every greedy pick has λ_min = ridge, so a single
    # greedy + exchange path stalled at 69.586 here; brute force over all 792 subsets.
    exp = ff.Experiment(decay_offset, ff.Gaussian(sigma=0.1))
    fid = {"A": 2.0, "k": 0.5, "c": 0.2}
    grid = np.linspace(0.0, 20.0, 12)
    combos = np.array(list(itertools.combinations(range(grid.size), 5)))
    values = np.linalg.eigvalsh(decay_offset_fim(grid[combos]))[:, 0]
    sel = ff.select_measurements(exp, fid, grid, 5, "E")
    assert sel.criterion_value == pytest.approx(values.max(), rel=1e-10)
    np.testing.assert_array_equal(sel.indices, combos[np.argmax(values)])
    relaxed = ff.select_measurements(exp, fid, grid, 5, "E", method="relaxation")
    assert sel.criterion_value >= relaxed.criterion_value - 1e-9
    # Padded pools: a new k on the same candidates reuses the compiled criterion.
    sizes = [
        f._cache_size() for f in (select_mod._losses_of_matrices, select_mod._relaxed_loss_and_grad)
    ]
    for k in (3, 4):
        other = ff.select_measurements(exp, fid, grid, k, "E")
        best = np.linalg.eigvalsh(
            decay_offset_fim(grid[np.array(list(itertools.combinations(range(grid.size), k)))])
        )[:, 0].max()
        assert other.criterion_value == pytest.approx(best, rel=1e-10)
    assert [
        f._cache_size() for f in (select_mod._losses_of_matrices, select_mod._relaxed_loss_and_grad)
    ] == sizes


def test_failed_repair_adds_nothing_and_says_why():
    # y = a·b e^{-kt}: ∂y/∂ln a = ∂y/∂ln b at every t, so more times lift the null
    # direction (1, -1, 0)/√2 by exactly 0: no set of them repairs the model.
    exp = ff.Experiment(
        lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=1.0),
        design=np.arange(0.0, 5.01, 0.5),
    )
    rep = ff.repair_identifiability(exp, {"a": 2.0, "b": 3.0, "k": 0.5}, np.array([1.0, 2.0, 3.0]))
    assert rep.added == [] and not rep.success and rep.no_lift
    assert rep.rank_after == rep.rank_before == 2
    text = rep.summary()
    assert "no set of <= 3 candidates repairs it" in text
    assert "no candidate lifts the weak direction" in text and "add 3" not in text


def test_design_criterion_of_a_singular_design_is_the_worst_value():
    # All measurements at one time: J = [e^{-kt}, -A t e^{-kt}] repeated has rank 1, so F is
    # singular (closed form). Round-off used to give A = NaN (t = 0) or > 0 (t = 2) and a
    # finite condition number (t = 3).
    fid = {"A": 2.0, "k": 0.5}
    worst = {"D": -math.inf, "A": -math.inf, "E": 0.0, "ME": math.inf}
    for t in ([3.0, 3.0], [0.0, 0.0], [2.0, 2.0, 2.0]):
        t = np.array(t)
        J = np.stack([np.exp(-0.5 * t), -2.0 * t * np.exp(-0.5 * t)], 1)
        assert np.linalg.matrix_rank(J) == 1
        exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=t)
        for criterion, value in worst.items():
            assert design_criterion(exp, fid, criterion=criterion) == value, (t, criterion)
            crit = criteria.check_criterion(criterion, None, ("A", "k"))
            assert criteria.natural_numpy(ff.fisher(exp, fid).matrix, crit) == value


def test_coinciding_start_points_are_separated(monkeypatch):
    # Start 0 = [3, 3] is a symmetric stationary point of log det; the nudged start reaches
    # the closed-form optimum {0, 1/k} with a single local start.
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([3.0, 3.0]))
    fid = {"A": 2.0, "k": 0.5}
    res = ff.optimize_design(exp, fid, bounds=(0.0, 10.0), n_starts=1)
    np.testing.assert_allclose(np.sort(res.design), [0.0, 2.0], atol=1e-7)
    # Without the nudge the start is stuck, and the error blames the optimiser, not the
    # model (other designs are identifiable).
    monkeypatch.setattr(optimise, "_separate_ties", lambda x, low, high: x)
    with pytest.raises(ff.SingularFisherError, match="no start reached a non-singular design"):
        ff.optimize_design(exp, fid, bounds=(0.0, 10.0), n_starts=1)


def test_more_bad_input_is_rejected_with_the_argument_named():
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([1.0, 3.0]))
    fid = {"A": 2.0, "k": 0.5}
    with pytest.raises(ValueError, match=r"`bounds`.*shape \(2,\)"):
        ff.optimize_design(exp, fid, bounds=(np.zeros(3), 10.0))
    with pytest.raises(TypeError, match=r"`seed`.*'x'"):
        ff.optimize_design(exp, fid, bounds=(0.0, 10.0), seed="x")
    with pytest.raises(TypeError, match=r"`rtol`.*'x'"):
        ff.optimize_design(exp, fid, bounds=(0.0, 10.0), rtol="x")
    with pytest.raises(ValueError, match=r"`rtol`.*-1"):
        ff.optimize_design(exp, fid, bounds=(0.0, 10.0), rtol=-1.0)
    # A list of booleans is the mask of the design array. With t2 = 3 fixed, log det =
    # const - 2k t1 + 2 log|t1 - 3| on [0, 10]: 2 log 3 at t1 = 0 beats the local maximum
    # t1 = 3 + 1/k (value -2k·2 + 2 log 2, relative to the same constant).
    res = ff.optimize_design(exp, fid, bounds=(0.0, 10.0), fixed=[False, True], n_starts=2)
    assert res.design[1] == 3.0 and res.design[0] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ff.FisherError, match=r"criterion.*returned NaN"):
        ff.optimize_design(
            exp, fid, bounds=(0.0, 10.0), n_starts=2, criterion=lambda F: jnp.nan * F.matrix[0, 0]
        )
    # select_measurements: a list is an array of candidates; empty and too few points.
    plain = ff.Experiment(decay, ff.Gaussian(sigma=0.1))
    assert ff.select_measurements(plain, fid, [0.0, 1.0, 2.0, 3.0], 2).design.tolist() == [
        0.0,
        2.0,
    ]  # det ∝ e^{-k(t1+t2)}(t1 - t2)² on the grid
    with pytest.raises(ValueError, match="`candidates`"):
        ff.select_measurements(plain, fid, np.array([]), 2, allow_repeats=True)
    with pytest.raises(ff.SingularFisherError, match=r"1 measurement.*2 parameters"):
        ff.select_measurements(plain, fid, np.arange(4.0), 1)
    # required_samples
    for bad in ({}, "0.1", True):
        with pytest.raises((TypeError, ValueError), match="`target_sigma`"):
            ff.required_samples(exp, fid, bad)
    with pytest.raises(TypeError, match=r"`marginal`.*'no'"):
        ff.required_samples(exp, fid, 0.1, marginal="no")
    # repair_identifiability
    with pytest.raises(ValueError, match="`candidates`"):
        ff.repair_identifiability(exp, fid, np.array([]))
    for value in ("x", 0):
        with pytest.raises(ValueError, match="`max_subsets`"):
            ff.repair_identifiability(exp, fid, np.arange(3.0), max_subsets=value)
    with pytest.raises(ValueError, match="`weak_rtol`"):
        ff.repair_identifiability(exp, fid, np.arange(3.0), weak_rtol=-1)
    with pytest.raises(TypeError, match=r"`name` must be a string.*\['a'\]"):
        sigma_criterion(["a"])


# ---------------------------------------------------------------------------------------
# The initial design cannot be evaluated: the optimum is still returned
# ---------------------------------------------------------------------------------------
def counts(p, t):
    return p["a"] * t + p["b"] * t**2


def test_poisson_initial_design_with_zero_counts_still_returns_the_optimum():
    # λ(0) = 0 at the initial design: Poisson noise is undefined there, but not at the
    # optimum. The optimum is returned, the initial figures are unavailable and say why.
    exp = ff.Experiment(counts, ff.Poisson(), design=np.array([0.0, 0.5]))
    fid = {"a": 2.0, "b": 1.0}
    res = ff.optimize_design(exp, fid, bounds=(0.0, 5.0), n_starts=4)
    # Independent value: log det of the Poisson Fisher matrix Σ ∇λ ∇λᵀ / λ at the optimum.
    t = np.asarray(res.design)
    grads = np.stack([t, t**2], axis=1)
    F = (grads / (2.0 * t + t**2)[:, None]).T @ grads
    assert res.criterion_value == pytest.approx(np.linalg.slogdet(F)[1], rel=1e-9)
    assert math.isnan(res.initial_value) and math.isnan(res.gain)
    assert res.efficiency is None and res.initial_fisher is None
    assert "expected counts must be positive" in res.initial_error
    assert "initial design unavailable" in res.summary()
    assert res.to_dict()["initial_error"] == res.initial_error


def test_any_failure_at_the_initial_design_keeps_the_optimum(monkeypatch):
    # Errors other than FisherError (an ODE solver raising, a criterion that fails) used to
    # abort the run after the optimisation had succeeded.
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([1.0, 5.0]))
    fid = {"A": 2.0, "k": 0.5}
    real_fisher = optimise.fisher

    def failing_at_the_initial_design(experiments, *args, **kwargs):
        if np.allclose(experiments[0].design, [1.0, 5.0]):
            raise RuntimeError("solver failed at t = 5")
        return real_fisher(experiments, *args, **kwargs)

    monkeypatch.setattr(optimise, "fisher", failing_at_the_initial_design)
    res = ff.optimize_design(exp, fid, bounds=(0.0, 10.0), n_starts=4)
    np.testing.assert_allclose(np.sort(res.design), [0.0, 2.0], atol=1e-7)  # {0, 1/k}
    assert res.initial_error == "RuntimeError: solver failed at t = 5"
    assert math.isnan(res.gain) and res.initial_total_fisher is None
    assert all(math.isnan(before) for before, _ in res.sigma_table().values())


def test_design_results_are_frozen_records():
    exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=np.array([1.0, 5.0]))
    fid = {"A": 2.0, "k": 0.5}
    res = ff.optimize_design(exp, fid, bounds=(0.0, 10.0), n_starts=2)
    sel = ff.select_measurements(exp, fid, np.arange(0.0, 4.0), 2)
    need = ff.required_samples(exp, fid, 0.01)
    rep = ff.repair_identifiability(exp, fid, np.array([0.0, 2.0]))
    for result in (res, sel, need, rep):
        assert isinstance(result, Record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.summary_text = "x"
        json.dumps(result.to_dict())  # plain values only
        assert result.summary()
    assert rep.replace(success=False).success is False and rep.success
