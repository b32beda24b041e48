"""Identifiability report, collinearity index and null-space regularisation.

References, all computed independently of fisherforecast:

* y = a·b·e^(−kt) (closed form): rank 2 of 3, null direction ∝ (1, −1, 0) in ln-parameters,
  infinite collinearity index;
* reduced Michaelis–Menten, S' = −V S/(K + S), (V, K) = (1, 10), substrate observed:
  log-FIM condition number ≈ 2.07e4 and collinearity ≈ 102 at S0 = 1, ≈ 559 and ≈ 5.42 at
  S0 = 100 (scipy Lambert-W re-derivation here);
* FitzHugh–Nagumo, (a, b, c) = (0.2, 0.2, 3), (V0, R0) = (−1, 1): V observed, condition
  number ≈ 2.0e4, collinearity ≈ 4.05; V and R observed, ≈ 8.1e3 and ≈ 2.68 (solve_ivp
  re-derivation here);
* the collinearity index of Brun, Reichert & Künsch (2001, Water Resour. Res. 37, 1015):
  γ = 1/√λ_min of the unit-normalised sensitivities, scale invariant;
* identifiability decided on scale-free quantities (log-parameters, relative CRB,
  collinearity), not on raw eigenvalues, which depend on units;
* closed forms written here in numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
from helpers import load_example, product_decay

import fisherforecast as ff
from fisherforecast._engine import evaluation_kernel
from fisherforecast._identify.words import describe_null_direction, sloppy_text

# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------
T8 = np.arange(0.0, 5.01, 0.5)
FID8 = {"a": 2.0, "b": 3.0, "k": 0.5}


@pytest.fixture(scope="module")
def report8():
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    return ff.identifiability(exp, FID8)


def mm_rhs(t, s, p):
    return -p["V"] * s / (p["K"] + s)


MM = ff.ode_model(mm_rhs, y0=lambda p: p["S0"], rtol=1e-10, atol=1e-12)


def mm_experiment(S0):
    T = 3 * (10.0 + S0)
    return ff.Experiment(MM, ff.Gaussian(sigma=0.01 * S0), design=np.arange(1, 11) * T / 10)


def mm_reference_logfim(S0, V=1.0, K=10.0):
    """Log-FIM from the closed form S(t) = K W((S0/K) e^{(S0 − V t)/K}), by complex step."""
    T = 3 * (K + S0)
    t = np.arange(1, 11) * T / 10
    h = 1e-30

    def S(lnV, lnK):
        v, k = np.exp(lnV), np.exp(lnK)
        return k * scipy.special.lambertw(S0 / k * np.exp((S0 - v * t) / k))

    cols = [S(np.log(V) + 1j * h, np.log(K)).imag / h, S(np.log(V), np.log(K) + 1j * h).imag / h]
    J = np.array(cols).T / (0.01 * S0)
    return J.T @ J


def fhn_rhs(t, y, p):
    v, r = y[0], y[1]
    return jnp.stack([p["c"] * (v - v**3 / 3 + r), -(v - p["a"] + p["b"] * r) / p["c"]])


FHN_FID = {"a": 0.2, "b": 0.2, "c": 3.0}
FHN_T = np.linspace(0.0, 20.0, 41)


def fhn_experiment(observe):
    model = ff.ode_model(fhn_rhs, y0=jnp.array([-1.0, 1.0]), observe=observe, rtol=1e-9, atol=1e-11)
    return ff.Experiment(model, ff.Gaussian(sigma=0.2), design=FHN_T)


# ---------------------------------------------------------------------------------------
# Case 8: product non-identifiability
# ---------------------------------------------------------------------------------------
def test_case8_rank_null_direction_and_collinearity(report8):
    rep = report8
    assert rep.n_params == 3
    assert rep.rank == 2 and rep.rank_at_fiducial == 2
    assert rep.ranks == [2, 2, 2, 2]  # fiducial and 3 random points
    assert len(rep.null_directions) == 1
    d = rep.null_directions[0]
    assert set(d) == {"a", "b"}
    np.testing.assert_allclose([d["a"], d["b"]], [2**-0.5, -(2**-0.5)], atol=1e-12)
    assert "only a·b is identifiable" in rep.null_descriptions[0]
    assert rep.identifiable == {"a": False, "b": False, "k": True}
    assert rep.structurally_identifiable == {"a": False, "b": False, "k": True}
    assert rep.collinearity == math.inf
    assert rep.collinearity_index() == math.inf
    assert rep.collinearity_index(["a", "b"]) == math.inf
    assert rep.condition_number == math.inf


def test_case8_numbers_against_closed_form(report8):
    # ∂y/∂ln a = ∂y/∂ln b = y, ∂y/∂ln k = −k t y (σ = 1).
    y = 6.0 * np.exp(-0.5 * T8)
    S = np.stack([y, y, -0.5 * T8 * y], axis=1)
    Sn = S / np.linalg.norm(S, axis=0)
    for subset, idx in ((["a", "k"], [0, 2]), (["b", "k"], [1, 2])):
        lam = np.linalg.eigvalsh(Sn[:, idx].T @ Sn[:, idx])
        assert report8.collinearity_index(subset) == pytest.approx(lam[0] ** -0.5, rel=1e-12)
    # Coordinate identifiability of k: residual of its column off span{y}, relative.
    col = Sn[:, 2]
    resid = col - Sn[:, 0] * (Sn[:, 0] @ col)
    assert report8.coordinate_identifiability["k"] == pytest.approx(
        np.linalg.norm(resid), rel=1e-12
    )
    assert report8.coordinate_identifiability["a"] < 1e-12
    assert report8.coordinate_identifiability["b"] < 1e-12
    # The relative CRB of k is finite even though the matrix is singular: it is the
    # conditional error of ln k given the identifiable product (a pseudo-inverse).
    F2 = S[:, [0, 2]].T @ S[:, [0, 2]]
    assert report8.relative_crb["k"] == pytest.approx(math.sqrt(np.linalg.inv(F2)[1, 1]), rel=1e-10)
    assert report8.relative_crb["a"] == math.inf
    subsets = {frozenset(names) for names, _ in report8.identifiable_subsets}
    assert subsets == {frozenset({"a", "k"}), frozenset({"b", "k"})}
    assert report8.subset_search == "exhaustive"
    ev = np.linalg.eigvalsh(S.T @ S)
    np.testing.assert_allclose(report8.eigenvalues[1:], ev[1:], rtol=1e-12)
    assert report8.eigenvalues[0] < 1e-12 * ev[-1]


def test_case8_through_an_ode_model():
    # y' = −k y, y(0) = a·b: the same degeneracy, now inside diffrax (forward mode).
    model = ff.ode_model(
        lambda t, y, p: -p["k"] * y, y0=lambda p: p["a"] * p["b"], rtol=1e-10, atol=1e-12
    )
    rep = ff.identifiability(ff.Experiment(model, ff.Gaussian(sigma=1.0), design=T8), FID8)
    assert rep.rank == 2
    d = rep.null_directions[0]
    np.testing.assert_allclose([d["a"], d["b"]], [2**-0.5, -(2**-0.5)], atol=1e-9)
    assert rep.collinearity == math.inf
    assert rep.identifiable == {"a": False, "b": False, "k": True}


def test_case8_from_a_fisher_matrix_is_practical_only(report8):
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    rep = ff.identifiability(ff.fisher(exp, FID8))
    assert rep.source == "fisher"
    assert rep.rank == 2
    assert rep.identifiable == report8.identifiable
    assert any("no structural analysis" in n for n in rep.notes)
    assert rep.relative_crb["k"] == pytest.approx(report8.relative_crb["k"], rel=1e-7)
    assert "practical only" in rep.summary()
    # `params` holds the others fixed: with b fixed, a and k are identifiable.
    sub = ff.identifiability(ff.fisher(exp, FID8), params=["a", "k"])
    assert sub.rank == 2 and all(sub.identifiable.values())


# ---------------------------------------------------------------------------------------
# Case 9: reduced Michaelis-Menten (practical identifiability depends on S0)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mm_reports():
    return {
        S0: ff.identifiability(
            mm_experiment(S0), {"V": 1.0, "K": 10.0, "S0": S0}, params=["V", "K"]
        )
        for S0 in (1.0, 100.0)
    }


def test_case9_validation_numbers(mm_reports):
    low, high = mm_reports[1.0], mm_reports[100.0]
    assert low.rank == high.rank == 2
    assert low.condition_number == pytest.approx(2.07e4, rel=5e-3)
    assert low.collinearity == pytest.approx(102, rel=5e-3)
    w = low.weakest_direction
    np.testing.assert_allclose([w["V"], w["K"]], [0.69, 0.73], atol=5e-3)
    assert high.condition_number == pytest.approx(559, rel=2e-3)
    assert high.collinearity == pytest.approx(5.42, rel=2e-3)


@pytest.mark.parametrize("S0", [1.0, 100.0])
def test_case9_spectrum_matches_lambert_w_closed_form(mm_reports, S0):
    ref = mm_reference_logfim(S0)
    np.testing.assert_allclose(mm_reports[S0].eigenvalues, np.linalg.eigvalsh(ref), rtol=1e-6)
    d = np.sqrt(np.diag(ref))
    gamma = np.linalg.eigvalsh(ref / np.outer(d, d))[0] ** -0.5
    assert mm_reports[S0].collinearity == pytest.approx(gamma, rel=1e-6)


def test_case9_practical_verdicts(mm_reports):
    low, high = mm_reports[1.0], mm_reports[100.0]
    # Structurally fine at both, but at S0 ≪ K only V/K is determined.
    assert all(low.structurally_identifiable.values())
    assert low.identifiable == {"V": False, "K": False}
    assert all(v > low.crb_threshold for v in low.relative_crb.values())
    assert len(low.sloppy_directions) == 1 and "V/K" in low.sloppy_descriptions[0]
    assert [len(n) for n, _ in low.identifiable_subsets] == [1, 1]
    assert high.identifiable == {"V": True, "K": True}
    assert high.identifiable_subsets[0][0] == ("V", "K")


# ---------------------------------------------------------------------------------------
# Case 10: FitzHugh-Nagumo
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fhn_reports():
    return {
        "V": ff.identifiability(fhn_experiment(lambda y, p: y[0]), FHN_FID, n_random=1),
        "VR": ff.identifiability(fhn_experiment(None), FHN_FID, n_random=1),
    }


def test_case10_validation_numbers(fhn_reports):
    v, vr = fhn_reports["V"], fhn_reports["VR"]
    assert v.rank == vr.rank == 3
    assert v.condition_number == pytest.approx(2.0e4, rel=1e-2)
    assert v.collinearity == pytest.approx(4.05, rel=2e-3)
    assert abs(v.weakest_direction["b"]) > 0.99
    assert vr.condition_number == pytest.approx(8.1e3, rel=5e-3)
    assert vr.collinearity == pytest.approx(2.68, rel=2e-3)


def test_case10_log_fim_against_scipy_finite_differences(fhn_reports):
    def states(a, b, c):
        def f(t, y):
            return [c * (y[0] - y[0] ** 3 / 3 + y[1]), -(y[0] - a + b * y[1]) / c]

        return scipy.integrate.solve_ivp(
            f, (0, 20), [-1.0, 1.0], t_eval=FHN_T, rtol=1e-12, atol=1e-12, method="DOP853"
        ).y

    p0, h = np.array([0.2, 0.2, 3.0]), 1e-5
    cols = []
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        cols.append(((states(*(p0 * np.exp(e))) - states(*(p0 * np.exp(-e)))) / (2 * h))[0])
    J = np.array(cols).T / 0.2
    np.testing.assert_allclose(fhn_reports["V"].eigenvalues, np.linalg.eigvalsh(J.T @ J), rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Case 11: collinearity is invariant to parameter scaling
# ---------------------------------------------------------------------------------------
def test_case11_collinearity_invariant_to_units(mm_reports):
    # The same Michaelis-Menten model with K given in µM (K_uM = 1000 K) and V in per-minute.
    model = ff.ode_model(
        lambda t, s, p: -(p["V_min"] / 60.0) * s / (p["K_uM"] / 1000.0 + s),
        y0=lambda p: p["S0"],
        rtol=1e-10,
        atol=1e-12,
    )
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.01), design=np.arange(1, 11) * 3.3)
    rep = ff.identifiability(
        exp, {"V_min": 60.0, "K_uM": 1e4, "S0": 1.0}, params=["V_min", "K_uM"], n_random=0
    )
    ref = mm_reports[1.0]
    assert rep.collinearity == pytest.approx(ref.collinearity, rel=1e-8)
    assert rep.condition_number == pytest.approx(ref.condition_number, rel=1e-8)
    np.testing.assert_allclose(rep.eigenvalues, ref.eigenvalues, rtol=1e-8)
    # The raw Fisher matrices differ by orders of magnitude: the invariance is not trivial.
    assert rep.fisher.matrix[1, 1] / ref.fisher.matrix[1, 1] < 1e-5
    # And a standalone call agrees, for a subset too.
    assert ff.collinearity_index(
        exp, {"V_min": 60.0, "K_uM": 1e4, "S0": 1.0}, params=["V_min", "K_uM"]
    ) == pytest.approx(ref.collinearity, rel=1e-8)
    assert ff.collinearity_index(rep, names=["K_uM"]) == pytest.approx(1.0)


def test_collinearity_index_of_a_known_design():
    # y = a + b x on x = (−1, 1): orthogonal columns, γ = 1; on x = (1, 1.1): γ from the
    # 2×2 correlation matrix, γ = 1/sqrt(1 − |ρ|).
    exp = ff.Experiment(
        lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.3), design=np.array([-1.0, 1.0])
    )
    assert ff.collinearity_index(exp, {"a": 1.0, "b": 2.0}) == pytest.approx(1.0, abs=1e-12)
    x = np.array([1.0, 1.1])
    exp2 = exp.replace(design=x)
    rho = (x @ np.ones(2)) / (np.linalg.norm(x) * math.sqrt(2))
    assert ff.collinearity_index(exp2, {"a": 1.0, "b": 2.0}) == pytest.approx(
        (1 - rho) ** -0.5, rel=1e-9
    )


# ---------------------------------------------------------------------------------------
# Case 12: decide on scale-free quantities
# ---------------------------------------------------------------------------------------
def test_case12_tiny_parameter_is_not_hidden():
    # y = a·c·e^{−kt} with a = 1e6 and c = 1e-6: only a·c is identifiable.
    fid = {"a": 1e6, "c": 1e-6, "k": 0.5}
    exp = ff.Experiment(
        lambda p, t: p["a"] * p["c"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.01), design=T8
    )
    rep = ff.identifiability(exp, fid)
    assert rep.identifiable == {"a": False, "c": False, "k": True}
    d = rep.null_directions[0]
    np.testing.assert_allclose([d["a"], d["c"]], [2**-0.5, -(2**-0.5)], atol=1e-10)
    # The trap: in raw units the null eigenvector of the Fisher matrix is ~pure `a`, so a
    # raw-units analysis would call the tiny `c` identifiable.
    F = ff.fisher(exp, fid).matrix
    null_raw = np.linalg.eigh(F)[1][:, 0]
    assert abs(null_raw[1]) < 1e-9


def test_case12_large_valued_parameter_is_not_falsely_flagged():
    # A lifetime of 1e6 s measured over 3e6 s: raw sensitivities ∝ 1/τ are tiny (raw Fisher
    # eigenvalue ~1e-9), but the relative error is a few per cent.
    fid = {"A": 1.0, "tau": 1e6}
    t = np.linspace(0.0, 3e6, 30)
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-t / p["tau"]), ff.Gaussian(sigma=0.05), design=t
    )
    rep = ff.identifiability(exp, fid)
    assert np.linalg.eigvalsh(ff.fisher(exp, fid).matrix)[0] < 1e-8
    assert rep.identifiable == {"A": True, "tau": True}
    assert rep.relative_crb["tau"] < 0.05


HILL_X = np.array([5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 70.0, 100.0])


def hill(p, x):
    return p["E0"] + p["Emax"] * x ** p["n"] / (p["EC50"] ** p["n"] + x ** p["n"])


def hill_reference_fisher(Emax, sigma):
    """Fisher matrix of the Hill model at E0 = 0 (order E0, Emax, EC50, n), complex step."""
    theta = np.array([0.0, Emax, 26.8, 2.7], dtype=complex)
    cols = []
    for i in range(4):
        th = theta.copy()
        th[i] += 1e-30j
        E0, Em, ec, n = th
        cols.append((E0 + Em * HILL_X**n / (ec**n + HILL_X**n)).imag / 1e-30)
    J = np.array(cols).T / sigma
    return J.T @ J


@pytest.fixture(scope="module")
def hill_reports():
    fid = {"E0": 0.0, "Emax": 1.0, "EC50": 26.8, "n": 2.7}
    out = {}
    for unit, factor in (("fraction", 1.0), ("percent", 100.0)):
        exp = ff.Experiment(hill, ff.Gaussian(sigma=0.05 * factor), design=HILL_X)
        f = {**fid, "Emax": factor}
        out[unit] = ff.identifiability(exp, f)
        out[unit, "scaled"] = ff.identifiability(exp, f, scales={"E0": 0.05 * factor})
    return out


UNIT_DEPENDENT = {"fiducial", "random_points", "absolute_crb", "notes", "scales"}


def assert_same(a, b, where):
    """Equal structures; floats to 1e-7 relative (1e-12 absolute, for exact zeros)."""
    if isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-7, abs=1e-12), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_zero_fiducial_verdicts_do_not_depend_on_the_units(hill_reports):
    # The response as a fraction (Emax = 1, σ = 0.05) or in % (Emax = 100, σ = 5), E0 = 0:
    # the same experiment. Every verdict and unit-free number must agree.
    for key in ("fraction", ("fraction", "scaled")):
        other = "percent" if key == "fraction" else ("percent", "scaled")
        a, b = hill_reports[key].to_dict(), hill_reports[other].to_dict()
        # The words name E0's coordinate with its scale, which is in the units chosen.
        b = json.loads(json.dumps(b).replace("d(E0/5)", "d(E0/0.05)"))
        assert set(a) == set(b)
        for field in sorted(set(a) - UNIT_DEPENDENT):
            assert_same(a[field], b[field], field)
    frac, pct = hill_reports["fraction"], hill_reports["percent"]
    # E0 has no unit-free size: its practical verdict is n/a, not a unit-dependent yes/no.
    assert (
        frac.identifiable == pct.identifiable == {"E0": None, "Emax": True, "EC50": True, "n": True}
    )
    assert math.isnan(frac.relative_crb["E0"]) and math.isnan(pct.relative_crb["E0"])
    assert "n/a" in frac.summary() and "scales=" in frac.summary()
    assert "undetermined=['E0']" in repr(pct)


def test_zero_fiducial_numbers_against_an_independent_fisher_matrix(hill_reports):
    for unit, factor in (("fraction", 1.0), ("percent", 100.0)):
        F = hill_reference_fisher(factor, 0.05 * factor)
        cov = np.linalg.inv(F)
        rep = hill_reports[unit]
        # Absolute σ(E0) in the response's units; relative CRBs of the others.
        assert rep.absolute_crb["E0"] == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-7)
        for i, n in enumerate(["Emax", "EC50", "n"], start=1):
            theta = [factor, 26.8, 2.7][i - 1]
            assert rep.relative_crb[n] == pytest.approx(math.sqrt(cov[i, i]) / theta, rel=1e-7)
        # The spectrum is that of the ln-parameters with E0 marginalised (Schur complement).
        D = np.diag([factor, 26.8, 2.7])
        marg = D @ np.linalg.inv(cov[1:, 1:]) @ D
        np.testing.assert_allclose(rep.eigenvalues, np.linalg.eigvalsh(marg), rtol=1e-7)
        ev = np.linalg.eigvalsh(marg)
        assert rep.condition_number == pytest.approx(ev[-1] / ev[0], rel=1e-7)
        # With a reference scale s for E0 the CRB is σ(E0)/s, judged like a relative one.
        scaled = hill_reports[unit, "scaled"]
        rel = math.sqrt(cov[0, 0]) / (0.05 * factor)
        assert scaled.relative_crb["E0"] == pytest.approx(rel, rel=1e-7)
        assert scaled.identifiable["E0"] is (rel <= 0.5)
        Ds = np.diag([0.05 * factor, factor, 26.8, 2.7])
        np.testing.assert_allclose(scaled.eigenvalues, np.linalg.eigvalsh(Ds @ F @ Ds), rtol=1e-7)
    # The weakest direction is printed in the units it was computed in.
    text = hill_reports["fraction", "scaled"].summary()
    weakest = next(line for line in text.splitlines() if line.startswith("Weakest"))
    assert "d(E0/0.05)" in weakest and "ln E0" not in text


def test_zoo_models_with_zero_fiducials():
    from fisherforecast.models import biology as bio

    rep = ff.identifiability(bio.hill_experiment(), bio.HILL_HEMOGLOBIN_FIDUCIAL, n_random=1)
    assert rep.rank == 4 and rep.identifiable["E0"] is None
    assert all(rep.identifiable[n] for n in ("Emax", "EC50", "n"))
    json.dumps(rep.to_dict(), allow_nan=False)
    assert ff.identifiability(
        bio.hill_experiment(), bio.HILL_HEMOGLOBIN_FIDUCIAL, n_random=0, scales={"E0": 0.01}
    ).identifiable["E0"] in (True, False)


@pytest.mark.parametrize(
    "scales, error, match",
    [
        ({"Emax": 1.0}, ValueError, "non-zero fiducial"),
        ({"E0": -1.0}, ValueError, r"scales\['E0'\].*-1.0"),
        ({"E0": True}, ValueError, "positive finite"),
        ({"zz": 1.0}, ff.ParameterError, "zz"),
        ([1.0], TypeError, r"`scales`.*\[1.0\]"),
    ],
)
def test_bad_scales_are_named(scales, error, match):
    exp = ff.Experiment(hill, ff.Gaussian(sigma=0.05), design=HILL_X)
    with pytest.raises(error, match=match):
        ff.identifiability(
            exp, {"E0": 0.0, "Emax": 1.0, "EC50": 26.8, "n": 2.7}, scales=scales, n_random=0
        )


def test_nullspace_prior_and_penalty_with_a_scaled_linear_parameter():
    # y = (a + c)·x, c = 0 with scale s = 0.5: c enters as c/s. The raw null direction
    # w = (1, −1) (a + c fixed) is u ∝ D⁻¹w with D = diag(a, s), so the prior is
    # λ·(uᵀD⁻¹v)² with unit u: wᵀMw = λ‖D⁻¹w‖², and M v = 0 for v = (1, 1/4)·... ⟂.
    exp = ff.Experiment(
        lambda p, x: (p["a"] + p["c"]) * x, ff.Gaussian(sigma=0.1), design=np.linspace(0.1, 1.0, 5)
    )
    rep = ff.identifiability(exp, {"a": 2.0, "c": 0.0}, n_random=0, scales={"c": 0.5})
    d = rep.null_directions[0]
    np.testing.assert_allclose([d["a"], d["c"]], np.array([1.0, -4.0]) / math.sqrt(17), atol=1e-12)
    assert "d(c/0.5)" in rep.null_descriptions[0]
    M = ff.nullspace_prior(rep, lam=3.0).matrix
    w = np.array([1.0, -1.0])
    Dinv_w = np.array([1 / 2.0, -1 / 0.5])
    assert w @ M @ w == pytest.approx(3.0 * Dinv_w @ Dinv_w, rel=1e-12)
    np.testing.assert_allclose(M @ np.array([2.0, 0.125]), 0.0, atol=1e-12)
    pen = ff.nullspace_penalty(rep, lam=3.0)
    with jax.enable_x64(True):
        hess = np.asarray(jax.hessian(lambda x: pen({"a": x[0], "c": x[1]}))(jnp.array([2.0, 0.0])))
    np.testing.assert_allclose(0.5 * hess, M, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ff.nullspace_prior(rep, lam=3.0, log=True).matrix,
        np.diag([1.0, 2.0]) @ (3.0 * np.outer([1, -4], [1, -4]) / 17) @ np.diag([1.0, 2.0]),
        atol=1e-12,
    )


def test_reverse_mode_on_a_forward_only_ode_model_is_a_clear_error():
    model = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=lambda p: p["a"])
    exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=np.linspace(0.5, 3.0, 4))
    for call in (ff.identifiability, ff.collinearity_index):
        with pytest.raises(ValueError, match=r"mode='reverse'.*supports only"):
            call(exp, {"a": 2.0, "k": 0.5}, mode="reverse")


# ---------------------------------------------------------------------------------------
# Other known outcomes
# ---------------------------------------------------------------------------------------
def test_fiducial_at_a_special_point_is_reported():
    # y = a x + b² x²: at b = 0 the b-column vanishes, but the generic rank is 2.
    exp = ff.Experiment(
        lambda p, x: p["a"] * x + p["b"] ** 2 * x**2,
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0.1, 1.0, 8),
    )
    rep = ff.identifiability(exp, {"a": 1.0, "b": 0.0})
    assert rep.rank_at_fiducial == 1 and rep.rank == 2
    assert rep.parameterisation == {"a": "ln", "b": "linear"}
    assert any("special point" in n for n in rep.notes)
    assert rep.relative_crb["b"] == math.inf
    assert rep.null_directions == []
    # b is generically identifiable: the degeneracy is local to b = 0 and reported apart.
    assert rep.structurally_identifiable == {"a": True, "b": True}
    assert rep.identifiable == {"a": True, "b": False}
    assert rep.local_null_directions == [{"b": 1.0}]
    assert "at this fiducial" in rep.local_null_descriptions[0]


def test_special_fiducial_takes_the_structural_null_space_from_the_random_points():
    # y = a·b·x + c²·x² at c = 0: the fiducial has two exact zeros (ln a − ln b, and c whose
    # column vanishes), the generic rank is 2. Closed form: the generic null direction is
    # (1, −1, 0)/√2 in (ln a, ln b, c); c is generically identifiable, only not at c = 0.
    x = np.linspace(0.1, 2.0, 8)
    exp = ff.Experiment(
        lambda p, x: p["a"] * p["b"] * x + p["c"] ** 2 * x**2, ff.Gaussian(sigma=0.1), design=x
    )
    rep = ff.identifiability(exp, {"a": 2.0, "b": 3.0, "c": 0.0})
    assert rep.rank == 2 and rep.rank_at_fiducial == 1
    (d,) = rep.null_directions
    assert set(d) == {"a", "b"}
    np.testing.assert_allclose([d["a"], d["b"]], [2**-0.5, -(2**-0.5)], atol=1e-10)
    assert rep.null_descriptions == ["ln a − ln b is not identifiable: only a·b is identifiable"]
    assert rep.structurally_identifiable == {"a": False, "b": False, "c": True}
    assert rep.local_null_directions == [{"c": 1.0}]
    assert rep.identifiable == {"a": False, "b": False, "c": False}
    assert rep.relative_crb["c"] == math.inf
    # The structural prior acts on the generic direction only.
    u = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    np.testing.assert_allclose(
        ff.nullspace_prior(rep, lam=9.0, log=True).matrix, 9.0 * np.outer(u, u), atol=1e-10
    )


def test_special_fiducial_with_a_null_direction_that_turns_with_the_point():
    # y = (a + b)·x + c²·x² at c = 0: ∂y/∂ln a = a·x, ∂y/∂ln b = b·x, so the generic null
    # direction at the fiducial is (b, −a, 0)/|·| in (ln a, ln b, c); at the random points it
    # is (b', −a', 0): not the same vector, but the closest one inside the fiducial's null
    # space is exactly the fiducial's generic one.
    exp = ff.Experiment(
        lambda p, x: (p["a"] + p["b"]) * x + p["c"] ** 2 * x**2,
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0.1, 2.0, 8),
    )
    rep = ff.identifiability(exp, {"a": 2.0, "b": 3.0, "c": 0.0})
    assert rep.rank == 2 and rep.rank_at_fiducial == 1
    (d,) = rep.null_directions
    np.testing.assert_allclose([d["a"], d["b"]], np.array([3.0, -2.0]) / math.sqrt(13), atol=1e-10)
    assert "c" not in d
    assert rep.structurally_identifiable == {"a": False, "b": False, "c": True}
    assert rep.local_null_directions == [{"c": 1.0}]


def test_parameter_without_effect():
    exp = ff.Experiment(
        lambda p, x: p["a"] * x + 0.0 * p["unused"],
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0.1, 1.0, 5),
    )
    rep = ff.identifiability(exp, {"a": 1.0, "unused": 3.0})
    assert rep.null_directions == [{"unused": 1.0}]
    assert "has no effect" in rep.null_descriptions[0]
    assert rep.coordinate_identifiability["unused"] == 0.0
    assert rep.identifiable == {"a": True, "unused": False}


def test_coordinate_identifiability_and_crb_match_inverse_fisher(fhn_reports):
    rep = fhn_reports["VR"]
    F_log = rep.fisher.to_log().matrix
    cov = np.linalg.inv(F_log)
    for i, n in enumerate(rep.names):
        # ρᵢ² = 1 / (F_ii (F⁻¹)_ii): the Schur complement over the column norm.
        assert rep.coordinate_identifiability[n] == pytest.approx(
            1 / math.sqrt(F_log[i, i] * cov[i, i]), rel=1e-8
        )
        assert rep.relative_crb[n] == pytest.approx(math.sqrt(cov[i, i]), rel=1e-8)
    assert rep.identifiable == {"a": True, "b": True, "c": True}
    assert fhn_reports["V"].identifiable == {"a": True, "b": False, "c": True}


def test_subset_search_exhaustive_and_greedy():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 14)))

    def linear_model(columns):
        A = np.asarray(columns)  # numpy float64: a jnp array here would be float32
        return lambda p: A @ jnp.stack([p[f"p{i}"] for i in range(A.shape[1])])

    # 4 parameters: p1's column is p0's tilted by 0.02 rad, γ{p0,p1} = 1/sqrt(1 − cos 0.02).
    cols = Q[:, :4].copy()
    cols[:, 1] = math.cos(0.02) * Q[:, 0] + math.sin(0.02) * Q[:, 1]
    fid = {f"p{i}": 1.0 for i in range(4)}
    rep = ff.identifiability(
        ff.Experiment(linear_model(cols), ff.Gaussian(sigma=1.0)), fid, n_random=0
    )
    assert rep.collinearity_index(["p0", "p1"]) == pytest.approx(
        (1 - math.cos(0.02)) ** -0.5, rel=1e-8
    )
    assert rep.rank == 4 and rep.collinearity > 20
    assert {frozenset(n) for n, _ in rep.identifiable_subsets} == {
        frozenset({"p0", "p2", "p3"}),
        frozenset({"p1", "p2", "p3"}),
    }
    # 14 parameters (greedy): p13 duplicates p0 exactly; dropping either leaves γ = 1.
    cols = Q.copy()
    cols[:, 13] = Q[:, 0]
    fid = {f"p{i}": 1.0 for i in range(14)}
    rep = ff.identifiability(
        ff.Experiment(linear_model(cols), ff.Gaussian(sigma=1.0)), fid, n_random=0
    )
    assert rep.subset_search == "greedy" and rep.rank == 13
    ((names, gamma),) = rep.identifiable_subsets
    assert len(names) == 13 and ("p0" in names) != ("p13" in names)
    assert gamma == pytest.approx(1.0, rel=1e-9)


def test_noise_models_poisson_and_parameter_dependent_sigma():
    x = np.linspace(0.0, 3.0, 12)
    fid = {"A": 50.0, "tau": 1.5}
    model = lambda p, x: p["A"] * jnp.exp(-x / p["tau"])  # noqa: E731
    pois = ff.identifiability(ff.Experiment(model, ff.Poisson(), design=x), fid, n_random=0)
    assert pois.method == "whitened sensitivities"
    lam = 50.0 * np.exp(-x / 1.5)
    S = np.stack([lam, lam * x / 1.5], axis=1) / np.sqrt(lam)[:, None]
    Sn = S / np.linalg.norm(S, axis=0)
    assert pois.collinearity == pytest.approx(
        np.linalg.svd(Sn, compute_uv=False)[-1] ** -1, rel=1e-10
    )
    # σ ∝ A (10 % errors): the covariance carries information, so the report falls back on
    # the square root of the engine's Fisher matrix (with the ½ tr term) and says so.
    dep = ff.Experiment(model, ff.Gaussian(sigma=lambda p: 0.1 * p["A"]), design=x)
    rep = ff.identifiability(dep, fid, n_random=0)
    assert rep.method == "square root of the Fisher matrix"
    F_log = ff.fisher(dep, fid).to_log().matrix
    d = np.sqrt(np.diag(F_log))
    assert rep.collinearity == pytest.approx(
        np.linalg.eigvalsh(F_log / np.outer(d, d))[0] ** -0.5, rel=1e-8
    )


def test_float64_under_float32_default(report8):
    assert not jax.config.jax_enable_x64
    # A float32 computation would leave the exact null singular value at ~1e-7.
    assert report8.singular_values[-1] < 1e-13 * report8.singular_values[0]
    assert report8.eigenvalues.dtype == np.float64


def test_no_retracing_for_new_fiducial_values():
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    ff.identifiability(exp, FID8, n_random=1)
    before = evaluation_kernel._cache_size()
    ff.identifiability(exp, {"a": 1.0, "b": 5.0, "k": 0.7}, n_random=2, seed=3)
    assert evaluation_kernel._cache_size() == before


# ---------------------------------------------------------------------------------------
# Regularisation on the null space
# ---------------------------------------------------------------------------------------
def test_nullspace_prior_fixes_only_the_null_direction(report8):
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    F = ff.fisher(exp, FID8)
    prior = ff.nullspace_prior(report8, lam=25.0)
    G = F + prior
    cov = G.covariance()  # invertible now
    assert np.all(np.isfinite(cov))
    # In ln-coordinates: prior = λ u uᵀ with u = (1, −1, 0)/√2.
    u = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    prior_log = ff.nullspace_prior(report8, lam=25.0, log=True)
    assert prior_log.names == ("ln_a", "ln_b", "ln_k")
    np.testing.assert_allclose(prior_log.matrix, 25.0 * np.outer(u, u), atol=1e-12)
    # Directions ⟂ u keep their information exactly: F_new v = F v.
    F_log, G_log = F.to_log().matrix, (F.to_log() + prior_log).matrix
    for v in (np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([1, 1, -3.0])):
        np.testing.assert_allclose(G_log @ v, F_log @ v, rtol=1e-12, atol=1e-12)
    # Along u, the only information is the prior's: σ(ln a − ln b)/√2 = 1/sqrt(λ).
    cov_log = np.linalg.inv(G_log)
    assert math.sqrt(u @ cov_log @ u) == pytest.approx(1 / 5.0, rel=1e-9)
    # In linear parameters the same prior is D⁻¹ λ u uᵀ D⁻¹, and k's error is untouched.
    D = np.diag([2.0, 3.0, 0.5])
    np.testing.assert_allclose(
        prior.matrix, np.linalg.inv(D) @ prior_log.matrix @ np.linalg.inv(D), atol=1e-12
    )
    assert G.sigma()["k"] == pytest.approx(F.fix(["a"]).sigma()["k"], rel=1e-9)


def test_nullspace_penalty_matches_prior_and_vanishes_off_the_null_space(report8):
    pen = ff.nullspace_penalty(report8, lam=4.0)
    prior = ff.nullspace_prior(report8, lam=4.0)
    names = report8.names
    with jax.enable_x64(True):

        def as_vector_fn(x):
            return pen(dict(zip(names, x, strict=True)))

        x0 = jnp.array([FID8[n] for n in names], dtype=jnp.float64)
        hess = np.asarray(jax.jit(jax.hessian(as_vector_fn))(x0))
        assert float(pen(FID8)) == 0.0
        # Moving along the null direction by t in (ln a, ln b) costs λ·(t·√2)²/... exactly
        # λ‖uᵀΔ‖² with Δ = (t, −t, 0): λ·2t².
        t = 0.3
        moved = {"a": 2.0 * math.exp(t), "b": 3.0 * math.exp(-t), "k": 0.5}
        assert float(pen(moved)) == pytest.approx(4.0 * 2 * t**2, rel=1e-12)
        # Moving along an identifiable direction (a·b and k change) costs nothing.
        other = {"a": 2.0 * math.exp(t), "b": 3.0 * math.exp(t), "k": 0.9}
        assert abs(float(pen(other))) < 1e-12
    np.testing.assert_allclose(0.5 * hess, prior.matrix, rtol=1e-10, atol=1e-12)
    with pytest.raises(ff.ParameterError, match="no value for"):
        pen({"a": 1.0})


def test_nullspace_penalty_with_a_linear_parameter():
    # y = (a + c)·x with c = 0 at the fiducial: c is analysed in linear units, the null
    # direction mixes ln a and c, and the penalty stays differentiable at c = 0.
    exp = ff.Experiment(
        lambda p, x: (p["a"] + p["c"]) * x, ff.Gaussian(sigma=0.1), design=np.linspace(0.1, 1.0, 5)
    )
    fid = {"a": 2.0, "c": 0.0}
    rep = ff.identifiability(exp, fid, n_random=0)
    assert rep.parameterisation == {"a": "ln", "c": "linear"}
    d = rep.null_directions[0]
    # ∂y/∂ln a = a x, ∂y/∂c = x: null direction ∝ (1, −a) in (ln a, c).
    np.testing.assert_allclose([d["a"], d["c"]], np.array([1.0, -2.0]) / math.sqrt(5), atol=1e-12)
    assert "dc" in rep.null_descriptions[0]
    pen = ff.nullspace_penalty(rep, lam=3.0)
    with jax.enable_x64(True):

        def vec(x):
            return pen({"a": x[0], "c": x[1]})

        x0 = jnp.array([2.0, 0.0])
        grad = np.asarray(jax.jit(jax.grad(vec))(x0))
        hess = np.asarray(jax.jit(jax.hessian(vec))(x0))
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)
    np.testing.assert_allclose(0.5 * hess, ff.nullspace_prior(rep, lam=3.0).matrix, atol=1e-12)


def test_nullspace_prior_from_an_experiment_and_practical_directions(mm_reports):
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    prior = ff.nullspace_prior(exp, FID8, lam=25.0, n_random=0)
    assert prior.names == ("a", "b", "k")
    assert prior.metadata["which"] == "structural"
    # An identifiable model has no null space: the structural prior is zero, the
    # practical one acts on the sloppy V–K direction of Michaelis–Menten at S0 = 1.
    low = mm_reports[1.0]
    assert np.all(ff.nullspace_prior(low).matrix == 0)
    practical = ff.nullspace_prior(low, lam=10.0, which="practical", log=True)
    w = np.array([low.weakest_direction["V"], low.weakest_direction["K"]])
    np.testing.assert_allclose(practical.matrix, 10.0 * np.outer(w, w), atol=1e-12)


# ---------------------------------------------------------------------------------------
# Output, errors
# ---------------------------------------------------------------------------------------
def test_summary_to_dict_and_plot(report8):
    text = report8.summary()
    assert "rank: 2 of 3" in text and "only a·b is identifiable" in text
    assert "Largest identifiable subsets" in text
    d = report8.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["collinearity"] == "inf" and d["rank"] == 2
    assert d["identifiable"] == {"a": False, "b": False, "k": True}
    fig = report8.plot()
    ax_spec, ax_comp = fig.axes[:2]
    assert ax_spec.get_yscale() == "log"
    assert ax_spec.get_ylabel() == "eigenvalue of the log-parameter FIM"
    assert len(ax_comp.patches) == 9  # 3 eigenvectors × 3 parameters
    heights = np.array([p.get_height() for p in ax_comp.patches]).reshape(3, 3)
    np.testing.assert_allclose(heights.sum(axis=0), 1.0, rtol=1e-12)  # unit vectors
    assert [t.get_text() for t in ax_comp.get_legend().get_texts()] == ["ln a", "ln b", "ln k"]


def test_report_is_a_read_only_record_with_declared_fields(report8):
    with pytest.raises(dataclasses.FrozenInstanceError):
        report8.rank = 3
    fields = report8.public_fields()
    assert fields[:3] == ["names", "n_params", "source"] and "_Rn" not in fields
    assert set(fields) - set(report8.to_dict()) == {"fisher"}  # the matrix is not JSON
    changed = report8.replace(notes=["edited"])
    assert changed.notes == ["edited"] and report8.notes != ["edited"]
    assert changed.collinearity_index(["a", "k"]) == report8.collinearity_index(["a", "k"])


def test_describe_null_direction_words():
    log = dict.fromkeys("abcV", True)
    assert describe_null_direction({"a": 0.7, "b": 0.7}, log).endswith("only a/b is identifiable")
    assert describe_null_direction({"a": 0.4472, "b": -0.8944}, log).endswith(
        "only a^2·b is identifiable"
    )
    text = describe_null_direction({"a": 0.577, "b": -0.577, "c": 0.577}, log)
    assert "only a·b and a/c are identifiable" in text


def _exponents_orthogonal(exponents, direction):
    return abs(sum(e * direction.get(n, 0.0) for n, e in exponents.items())) < 1e-9


def test_two_null_directions_get_one_statement_for_the_whole_null_space():
    # y = a·b/c·e^{−kt}: only a·b/c enters (two null directions among a, b, c). Each
    # direction alone would suggest b/c or c/a, which are not identifiable.
    exp = ff.Experiment(
        lambda p, t: p["a"] * p["b"] / p["c"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=1.0),
        design=T8,
    )
    rep = ff.identifiability(exp, {"a": 2.0, "b": 3.0, "c": 1.5, "k": 0.5})
    assert rep.rank == 2 and len(rep.null_directions) == 2
    assert rep.null_descriptions == [
        "ln a + ln c and ln b + ln c are not identifiable: only a·b/c is identifiable"
    ]
    # The named combination (exponents 1, 1, −1) is orthogonal to every null direction.
    assert all(_exponents_orthogonal({"a": 1, "b": 1, "c": -1}, d) for d in rep.null_directions)
    assert not _exponents_orthogonal({"b": 1, "c": -1}, rep.null_directions[0])
    assert rep.identifiable == {"a": False, "b": False, "c": False, "k": True}
    # Separate degeneracies get separate sentences: y = a·b·e^{−kt}·(1 + c·d·t).
    exp2 = ff.Experiment(
        lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t) * (1 + p["c"] * p["d"] * t),
        ff.Gaussian(sigma=0.01),
        design=T8,
    )
    rep2 = ff.identifiability(exp2, {"a": 2.0, "b": 3.0, "c": 0.5, "d": 0.4, "k": 0.5}, n_random=1)
    assert rep2.null_descriptions == [
        "ln a − ln b is not identifiable: only a·b is identifiable",
        "ln c − ln d is not identifiable: only c·d is identifiable",
    ]


def test_sloppy_directions_name_only_combinations_that_are_better_determined():
    # a·b·e^{−kt} with σ = 10: one null direction u and two sloppy ones. Reference: the
    # closed-form log-FIM in numpy. The better-determined combination of the weakest sloppy
    # direction v₁ must be ⟂ u and v₁ (so ∝ u × v₁); b/a (∥ u) must never be offered.
    t = np.linspace(0.0, 5.0, 11)
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=10.0), design=t)
    rep = ff.identifiability(exp, FID8)
    y = 6.0 * np.exp(-0.5 * t)
    S = np.stack([y, y, -0.5 * t * y], axis=1) / 10.0
    lam, V = np.linalg.eigh(S.T @ S)
    u = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    assert abs(V[:, 0] @ u) == pytest.approx(1.0, abs=1e-12) and lam[1] ** -0.5 > 0.5
    m = np.cross(u, V[:, 1])
    m = m / m[np.argmax(np.abs(m))]
    width = math.sqrt(sum((m @ V[:, j]) ** 2 / lam[j] for j in (1, 2)))
    assert m[0] == pytest.approx(1.0) and m[1] == pytest.approx(1.0)
    first, second = rep.sloppy_descriptions
    v1 = V[:, 1] / V[2, 1]  # largest coefficient (ln k) scaled to 1
    v2 = V[:, 2] / V[0, 2]
    assert first.startswith(
        f"{v1[0]:.3g}·ln a + {v1[1]:.3g}·ln b + ln k is poorly determined "
        f"(1σ width {lam[1] ** -0.5:.3g} in ln-units)"
    )
    assert first.endswith(f": a·b/k^{-m[2]:.3g} (1σ width {width:.3g}) is better determined")
    assert width < lam[1] ** -0.5
    # Nothing ⟂ u is better determined than the stiffest direction when it is sloppy too.
    assert second == (
        f"ln a + ln b − {-v2[2]:.3g}·ln k is poorly determined (1σ width "
        f"{lam[2] ** -0.5:.3g} in ln-units)"
    )
    assert not any("b/a" in text or "a/b" in text for text in rep.sloppy_descriptions)


def test_sloppy_words_with_several_better_combinations():
    # A synthetic log-FIM: v₀ = (1, 1, 1)/√3 with λ = 0.01, stiff v₁, v₂. The combinations ⟂ v₀
    # are a/b and a/c; their widths from the covariance V diag(1/λ) Vᵀ.
    V = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=float).T
    V = V / np.linalg.norm(V, axis=0)
    lam = np.array([0.01, 100.0, 400.0])
    cov = V @ np.diag(1 / lam) @ V.T
    names = ["a", "b", "c"]
    log = dict.fromkeys(names, True)
    labels = {n: f"ln {n}" for n in names}
    shown = dict(zip(names, V[:, 0], strict=True))
    text = sloppy_text(0, shown, names, log, labels, lam, V, 0)
    w_ab = math.sqrt(np.array([1, -1, 0]) @ cov @ np.array([1, -1, 0]))
    w_ac = math.sqrt(np.array([1, 0, -1]) @ cov @ np.array([1, 0, -1]))
    assert text == (
        f"ln a + ln b + ln c is poorly determined (1σ width 10 in ln-units): a/b "
        f"(1σ width {w_ab:.3g}) and a/c (1σ width {w_ac:.3g}) are better "
        "determined"
    )
    # A single-parameter sloppy direction is poorly determined, not "without effect".
    one = sloppy_text(0, {"a": 1.0}, names, log, labels, lam, np.eye(3), 0)
    assert one == "ln a is poorly determined (1σ width 10 in ln-units)"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_random": -1}, "n_random"),
        ({"rtol": 2.0}, "rtol"),
        ({"crb_threshold": 0}, "crb_threshold"),
        ({"collinearity_threshold": 0.5}, "collinearity_threshold"),
        ({"params": ["zz"]}, "zz"),
        ({"mode": "sideways"}, "mode"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match):
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    with pytest.raises((ValueError, KeyError), match=match):
        ff.identifiability(exp, FID8, **kwargs)


def test_input_errors():
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=1.0), design=T8)
    with pytest.raises(ValueError, match="needs `fiducial`"):
        ff.identifiability(exp)
    with pytest.raises(ValueError, match="needs the fiducial"):
        ff.identifiability(ff.FisherMatrix(np.eye(2), ["a", "b"]))
    with pytest.raises(TypeError, match="Experiment"):
        ff.identifiability("not an experiment", FID8)
    bad = ff.Experiment(lambda p, t: jnp.log(p["a"] - 3.0) * t, ff.Gaussian(sigma=1.0), design=T8)
    with pytest.raises(ff.NonFiniteError, match="NaN"):
        ff.identifiability(bad, {"a": 2.0})
    with pytest.raises(ValueError, match="lam"):
        ff.nullspace_prior(exp, FID8, lam=-1.0)


@pytest.mark.slow  # compiles two ODE Jacobians and two ODE profiles (~15 s of CPU)
def test_walkthrough_example_runs_fast(tmp_path, capsys):
    module = load_example("identifiability_walkthrough")
    out = module.main(tmp_path, fast=True)
    assert out["report"].rank == 3 and out["joint"].rank == 4
    assert out["report"].identifiable == {"ka": True, "ke": True, "V": False, "F": False}
    assert out["profile_oral"].flat and out["profile_joint"].identifiable
    assert np.all(np.isfinite(out["regularised"].covariance()))
    assert (tmp_path / "identifiability_spectrum.png").stat().st_size > 10_000
    assert (tmp_path / "identifiability_profiles.png").stat().st_size > 10_000
    assert "only V/F is identifiable" in capsys.readouterr().out
