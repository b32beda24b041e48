"""The four astrophysics/cosmology examples run in fast mode and get the physics right.

Each example's ``main(tmp_path, fast=True)`` runs once per module. The checks are physical
statements or closed forms written out here, not the example's own numbers: adding a
detector or a probe never loses information, the DETF FoM matches its definition, the DWD
phase errors match the continuous-time closed forms, SNRs match independent quadrature.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import load_example
from scipy import integrate

import fisherforecast as ff
from fisherforecast.models import cosmology as cosmo
from fisherforecast.models import dwd

MTSUN = 4.925490947641267e-6  # G M_sun / c^3 [s]
MPC_S = 1e6 * 149_597_870_700.0 * 648_000.0 / math.pi / 299_792_458.0  # 1 Mpc / c [s]
YEAR_S = 365.25 * 86400.0


def run_example(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    result = load_example(name).main(out, fast=True)
    for path in result["files"].values():
        assert Path(path).parent == out and Path(path).stat().st_size > 1000, path
    return result


def finite_le(a, b, rtol=1e-9):
    """a ≤ b with inf allowed on the right."""
    return math.isinf(b) or (math.isfinite(a) and a <= b * (1 + rtol))


# =========================================================================================
# GW single event
# =========================================================================================
@pytest.fixture(scope="module")
def gw_result(tmp_path_factory):
    return run_example("gw_single_event", tmp_path_factory)


def test_gw_network_never_worse_than_any_subset(gw_result):
    sigma = gw_result["network"]["sigma"]
    full = sigma["H1+L1+V1"]
    assert all(math.isfinite(v) and v > 0 for v in full.values())
    for config, sig in sigma.items():
        for name, value in full.items():
            assert finite_le(value, sig[name]), (config, name, value, sig[name])
    # One detector cannot measure distance or sky position; 𝓜 and η come from the phase.
    for det in ("H1", "L1", "V1"):
        assert math.isinf(sigma[det]["ln_dL"]) and math.isinf(sigma[det]["ra"])
        assert math.isfinite(sigma[det]["Mc"]) and math.isfinite(sigma[det]["eta"])
    # Network SNR² is the sum of the detectors' SNR².
    snr = gw_result["network"]["snr"]
    assert snr["H1+L1+V1"] ** 2 == pytest.approx(
        snr["H1"] ** 2 + snr["L1"] ** 2 + snr["V1"] ** 2, rel=1e-10
    )
    area = gw_result["network"]["sky_area_90_deg2"]
    assert 0 < area["H1+L1+V1"] < 100 and math.isinf(area["H1+L1"])


def test_gw_errors_at_given_snr_scale_as_one_over_snr(gw_result):
    rows = gw_result["snr_rows"]
    for row in rows:
        assert row["snr"] == pytest.approx(row["snr_target"], rel=1e-9)
        # ln dL is almost a pure amplitude: σ(ln dL) = 1/SNR up to its tiny ln 𝓜 coupling.
        assert row["sigma"]["ln_dL"] * row["snr"] == pytest.approx(1.0, rel=1e-3)
    for name in ("ln_Mc", "eta", "tc", "phic"):
        products = [r["sigma"][name] * r["snr"] for r in rows]
        assert products == pytest.approx([products[0]] * len(rows), rel=1e-8)
    # Free aligned spins degrade η several-fold (1.5PN spin-orbit mimics the η terms);
    # a physical prior |χ| ≲ 1 recovers part of it.
    for plain, spin in zip(rows, gw_result["snr_rows_spin"], strict=True):
        assert spin["sigma"]["eta"] > 5 * plain["sigma"]["eta"]
        assert spin["sigma_spin_prior"]["eta"] < spin["sigma"]["eta"]


def test_gw_snr_against_independent_quadrature(gw_result):
    # SNR of the optimally oriented source at the distance the example chose, from the
    # restricted amplitude written out here and scipy quadrature of the aLIGO fit.
    row = gw_result["snr_rows"][0]
    fid = row["fisher"].fiducial
    mc = math.exp(fid["ln_Mc"]) * MTSUN
    m_total = mc * fid["eta"] ** -0.6
    f_isco = 1.0 / (6**1.5 * math.pi * m_total)
    amp = math.sqrt(5 / 24) * math.pi ** (-2 / 3) * mc ** (5 / 6) / (row["dL_Mpc"] * MPC_S)

    def psd(f):  # Ajith (2011) fit to the aLIGO zero-detuned high-power curve
        x = f / 245.4
        return 1e-48 * (
            0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622
        )

    val, _ = integrate.quad(lambda f: f ** (-7 / 3) / psd(f), 10.0, f_isco, limit=200)
    assert math.sqrt(4 * amp**2 * val) == pytest.approx(row["snr"], rel=2e-4)


def test_gw_hdf5_round_trip(gw_result):
    F = ff.load(gw_result["files"]["fisher"])
    np.testing.assert_array_equal(F.matrix, gw_result["network"]["fisher"]["H1+L1+V1"].matrix)


# =========================================================================================
# Cosmology
# =========================================================================================
@pytest.fixture(scope="module")
def cosmo_result(tmp_path_factory):
    return run_example("cosmology_w0wa", tmp_path_factory)


def detf_fom(F):
    """[det Cov(w0, wa)]^(-1/2) by a plain scaled numpy inverse: the DETF figure of merit
    (Albrecht et al. 2006, Dark Energy Task Force report), after marginalising the rest."""
    d = np.sqrt(np.diag(F.matrix))
    cov = np.linalg.inv(F.matrix / np.outer(d, d)) / np.outer(d, d)
    i, j = F.names.index("w0"), F.names.index("wa")
    return np.linalg.det(cov[np.ix_([i, j], [i, j])]) ** -0.5


def test_cosmology_combination_beats_every_subset(cosmo_result):
    rows = cosmo_result["rows"]
    everything = rows["SN+BAO+CMB"]["fom"]
    for label, row in rows.items():
        if label != "SN+BAO+CMB":
            assert row["fom"] < everything, label
    # Degeneracy breaking: each pair beats both of its members.
    for pair in ("SN+BAO", "SN+CMB", "BAO+CMB"):
        a, b = pair.split("+")
        assert rows[pair]["fom"] > max(rows[a]["fom"], rows[b]["fom"])
        for name in ("w0", "wa", "Om"):
            assert finite_le(rows[pair]["sigma"][name], rows[a]["sigma"][name])
            assert finite_le(rows[pair]["sigma"][name], rows[b]["sigma"][name])


def test_cosmology_singular_probe_reported_cleanly(cosmo_result):
    cmb = cosmo_result["rows"]["CMB"]
    # Three compressed numbers cannot fix (H0, Ωm, w0, wa, ω_b): w0–wa are free.
    assert cmb["fom"] == 0.0
    assert math.isinf(cmb["sigma"]["w0"]) and math.isinf(cmb["sigma"]["wa"])
    # H0, Ωm, w0, wa can absorb any shift of R and ℓ_A, so ω_b keeps exactly its marginal
    # Planck error: sqrt of the (ω_b, ω_b) element of the inverse of Chen et al.'s Table I.
    assert cmb["sigma"]["ombh2"] == pytest.approx(
        math.sqrt(np.linalg.inv(cosmo.PLANCK2018_DISTANCE_PRIOR_INVCOV)[2, 2]), rel=1e-6
    )
    for label in ("SN", "BAO"):
        assert cosmo_result["rows"][label]["fom"] > 0


def test_cosmology_fom_matches_definition_and_prior_is_harmless(cosmo_result):
    rows, probes = cosmo_result["rows"], cosmo_result["probes"]
    for label in ("SN", "BAO", "SN+BAO", "SN+CMB", "BAO+CMB", "SN+BAO+CMB"):
        # (SN alone with its near-degenerate H0–M pair is conditioned ~1e10: 1e-6, not 1e-12.)
        assert rows[label]["fom"] == pytest.approx(detf_fom(rows[label]["fisher"]), rel=1e-6)
    # The weak H0 prior does not change any CMB-containing forecast by more than 0.5 %.
    for combo in (("SN", "CMB"), ("BAO", "CMB"), ("SN", "BAO", "CMB")):
        no_prior = sum((probes[c] for c in combo[1:]), probes[combo[0]])
        assert detf_fom(no_prior) == pytest.approx(rows["+".join(combo)]["fom"], rel=5e-3)


def test_cosmology_hdf5_round_trip(cosmo_result):
    F = ff.load(cosmo_result["files"]["fisher"])
    assert F.figure_of_merit(["w0", "wa"]) == pytest.approx(
        cosmo_result["rows"]["SN+BAO+CMB"]["fom"], rel=1e-12
    )


# =========================================================================================
# LISA + TianQin double white dwarf
# =========================================================================================
@pytest.fixture(scope="module")
def dwd_result(tmp_path_factory):
    return run_example("lisa_tianqin_dwd", tmp_path_factory)


def test_dwd_joint_beats_each_detector(dwd_result):
    joint = dwd_result["joint"]
    sig = {k: F.sigma() for k, F in joint["fisher"].items()}
    for name in sig["LISA+TianQin"]:
        assert sig["LISA+TianQin"][name] <= min(sig["LISA"][name], sig["TianQin"][name])
    # JointExperiment with zero cross-covariance is the sum of the Fisher matrices.
    assert joint["joint_minus_sum"] < 1e-12
    assert joint["snr"]["LISA+TianQin"] ** 2 == pytest.approx(
        joint["snr"]["LISA"] ** 2 + joint["snr"]["TianQin"] ** 2, rel=1e-10
    )


def test_dwd_snr_and_phase_errors_closed_forms(dwd_result):
    fid, joint = dwd_result["fiducial"], dwd_result["joint"]
    t_obs = 4.0 * YEAR_S
    # Sky-averaged SNR² = A² T [((1+c²)/2)² + c²] / S_n, typed here; TianQin sees T/2.
    amp, c = math.exp(fid["lnA"]), fid["cos_iota"]
    geometry = (0.5 * (1 + c**2)) ** 2 + c**2
    s_lisa = float(dwd.lisa_psd(fid["f0"], 4.0))
    s_tq = float(dwd.tianqin_psd(fid["f0"], 4.0, confusion=True))
    rho = math.sqrt(amp**2 * t_obs * geometry / s_lisa)
    assert joint["snr"]["LISA"] == pytest.approx(rho, rel=1e-9)
    assert joint["snr"]["TianQin"] == pytest.approx(
        math.sqrt(amp**2 * 0.5 * t_obs * geometry / s_tq), rel=1e-9
    )
    # Continuous data: inverse Hilbert matrix of (1, 2πt, πt²) on [0, T].
    sig = joint["fisher"]["LISA"].sigma()
    assert sig["phi0"] == pytest.approx(3.0 / rho, rel=2e-3)
    assert sig["f0"] == pytest.approx(math.sqrt(192) / (2 * math.pi * t_obs * rho), rel=2e-3)
    assert sig["fdot"] == pytest.approx(math.sqrt(180) / (math.pi * t_obs**2 * rho), rel=2e-3)


def test_dwd_custom_lisa_experiment_equals_zoo_constructor(dwd_result):
    module = load_example("lisa_tianqin_dwd")
    fid = dwd_result["fiducial"]
    ours = ff.fisher(module.detector_experiment("LISA", fid, 320), fid)
    zoo = ff.fisher(dwd.experiment("LISA", fiducial=fid, n_times=320), fid)
    np.testing.assert_allclose(ours.matrix, zoo.matrix, rtol=1e-10)


def test_dwd_tianqin_gains_ground_at_high_frequency(dwd_result):
    sweep = dwd_result["sweep"]
    ratio = [r["snr"]["TianQin"] / r["snr"]["LISA"] for r in sweep]
    assert all(b > a for a, b in itertools.pairwise(ratio))
    assert ratio[0] < 0.5 and ratio[-1] > 1.0  # LISA wins at 2 mHz, TianQin at 50 mHz
    for r in sweep:
        assert r["sigma"]["LISA+TianQin"]["fdot"] <= min(
            r["sigma"]["LISA"]["fdot"], r["sigma"]["TianQin"]["fdot"]
        )


# =========================================================================================
# Microlensing PSPL
# =========================================================================================
@pytest.fixture(scope="module")
def ml_result(tmp_path_factory):
    return run_example("microlensing_pspl", tmp_path_factory)


def test_microlensing_blending_degrades_einstein_time(ml_result):
    rows = ml_result["blending"]
    rel = [r["sigma"]["tE"] / r["fiducial"]["tE"] for r in rows]
    fractions = [r["fs"] for r in rows]
    assert fractions == sorted(fractions, reverse=True)
    assert all(b > a for a, b in itertools.pairwise(rel))  # more blend, worse tE
    assert rel[-1] > 5 * rel[0]
    for r in rows:
        # Knowing the blend flux can only help; t_eff = u0 tE is the better-measured
        # combination, and u0, tE are strongly anti-correlated.
        assert r["sigma_Fb_known"]["tE"] < r["sigma"]["tE"]
        assert r["sigma_ln_teff"] < r["sigma"]["tE"] / r["fiducial"]["tE"]
        assert r["corr_u0_tE"] < -0.9


def test_microlensing_fisher_against_numpy_finite_differences(ml_result):
    # Independent Gaussian Fisher in numpy: central differences of the Paczyński light
    # curve, with the flux-dependent variance's ½ tr(C⁻¹ ∂C C⁻¹ ∂C) term.
    fid, t = ml_result["fiducial"], ml_result["times"]
    names = ml_result["fisher"].names
    gain, floor = 2.0e4, 0.003

    def flux(p):
        u = np.sqrt(p["u0"] ** 2 + ((t - p["t0"]) / p["tE"]) ** 2)
        return p["Fs"] * (u**2 + 2) / (u * np.sqrt(u**2 + 4)) + p["Fb"]

    def deriv(fn, name, h):
        up, down = dict(fid), dict(fid)
        up[name] += h
        down[name] -= h
        return (fn(up) - fn(down)) / (2 * h)

    steps = {"t0": 1e-4, "u0": 1e-6, "tE": 1e-4, "Fs": 1e-6, "Fb": 1e-6}
    var = flux(fid) / gain + floor**2
    dmu = {n: deriv(flux, n, steps[n]) for n in names}
    dvar = {n: dmu[n] / gain for n in names}
    F = np.array(
        [
            [np.sum(dmu[a] * dmu[b] / var + 0.5 * dvar[a] * dvar[b] / var**2) for b in names]
            for a in names
        ]
    )
    # Compare on the scale of the diagonal: t0's cross terms vanish by symmetry (t0 = 0 at
    # the centre of symmetric sampling) and are round-off in both.
    ours = ml_result["fisher"].matrix
    scale = np.sqrt(np.outer(np.diag(F), np.diag(F)))
    assert np.max(np.abs(ours - F) / scale) < 1e-6


def test_microlensing_hdf5_round_trip(ml_result):
    F = ff.load(ml_result["files"]["fisher"])
    np.testing.assert_array_equal(F.matrix, ml_result["fisher"].matrix)
    assert F.labels["tE"].startswith("t_E")
