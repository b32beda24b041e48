"""Fisher matrices of the astrophysics/cosmology zoo through the public engine API.

Each ``ff.fisher`` result is compared with a Fisher matrix built independently here: model
outputs evaluated at shifted parameters, a 7-point central finite-difference stencil in
numpy float64 (steps chosen per parameter), and the noise metric written out by hand
(4 Re sum df conj(dh) dh / S_n, sum dmu dmu / sigma^2 [+ 2 sum dsigma dsigma / sigma^2],
J^T C^-1 J).  Analytic identities (F_lnd,lnd = SNR^2, exact decouplings, the monochromatic-
source Fisher matrix) are checked on top.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import integrate

import fisherforecast as ff
from fisherforecast.models import cosmology as cosmo
from fisherforecast.models import dwd, gw, sgwb
from fisherforecast.models import microlensing as ml

YEAR = 365.25 * 86400.0


# -----------------------------------------------------------------------------------------
# Independent finite-difference machinery
# -----------------------------------------------------------------------------------------


def evaluator(fn):
    """Compile ``fn(params)`` once and return a numpy-float64 evaluator."""
    with jax.enable_x64(True):
        jitted = jax.jit(fn)

    def call(params):
        with jax.enable_x64(True):
            return np.asarray(jitted({k: np.float64(v) for k, v in params.items()}))

    return call


STENCIL = ((1, 45.0), (2, -9.0), (3, 1.0))  # f' = sum c_k [f(x+kh) - f(x-kh)] / (60 h)


def fd_jacobian(call, fid, names, steps):
    """(output..., P) Jacobian by the 7-point central stencil (error O(h^6))."""
    cols = []
    for n in names:
        h = steps[n]
        acc = 0.0
        for k, c in STENCIL:
            up, down = dict(fid), dict(fid)
            up[n] = fid[n] + k * h
            down[n] = fid[n] - k * h
            acc = acc + c * (call(up) - call(down))
        cols.append(acc / (60.0 * h))
    return np.stack(cols, axis=-1)


def assert_fisher_close(engine, reference, names, *, rtol=1e-6):
    """Compare in correlation-normalised form (robust for near-degenerate matrices)."""
    assert tuple(engine.names) == tuple(names)
    got = np.asarray(engine.matrix)
    ref = np.asarray(reference)
    d = np.sqrt(np.diag(ref))
    np.testing.assert_allclose(np.diag(got), np.diag(ref), rtol=rtol, atol=0.0)
    d = np.where(d > 0, d, 1.0)  # parameters an experiment does not depend on
    np.testing.assert_allclose(got / np.outer(d, d), ref / np.outer(d, d), atol=rtol)


def psd_fisher(jac, psd, df):
    """4 Re sum_k df_k conj(dh_i) dh_j / S_k for complex jac of shape (n_freq, P)."""
    w = 4.0 * df / psd
    return np.real(np.einsum("k,ki,kj->ij", w, np.conj(jac), jac))


def gaussian_fisher(jac, sigma):
    j = jac.reshape(-1, jac.shape[-1]) / np.broadcast_to(sigma, jac.shape[:-1]).reshape(-1, 1)
    return j.T @ j


# -----------------------------------------------------------------------------------------
# Compact binaries
# -----------------------------------------------------------------------------------------

BNS = {
    "Mc": 1.2,
    "eta": 0.245,
    "ln_dL": math.log(60.0),
    "tc": 0.0,
    "phic": 0.4,
    "chi1": 0.05,
    "chi2": -0.03,
    "ra": 1.7,
    "dec": -0.4,
    "psi": 0.6,
    "cos_iota": 0.5,
}
BNS_STEPS = {
    "Mc": 1e-8,
    "eta": 1e-6,
    "ln_dL": 1e-3,
    "tc": 1e-6,
    "phic": 1e-3,
    "chi1": 1e-5,
    "chi2": 1e-5,
    "ra": 1e-4,
    "dec": 1e-4,
    "psi": 1e-3,
    "cos_iota": 1e-3,
}


def test_gw_single_detector_fisher_matches_finite_differences():
    exp = gw.experiment("H1", fmin=20.0, fmax=1000.0, n_freq=600, gmst=0.8)
    names = tuple(BNS)
    fm = ff.fisher(exp, BNS, params=names)
    f = np.asarray(exp.design)
    _, df = gw.frequency_grid(20.0, 1000.0, 600)
    call = evaluator(lambda p: gw.detector_strain(p, f, "H1", 0.8))
    jac = fd_jacobian(call, BNS, names, BNS_STEPS)
    ref = psd_fisher(jac, np.asarray(gw.psd_aligo_zdhp(f)), df)
    assert_fisher_close(fm, ref, names, rtol=2e-7)


def test_gw_network_fisher_is_sum_over_detectors():
    fid = dict(gw.GW170817_LIKE)
    names = ("ra", "dec", "ln_dL", "cos_iota", "psi", "tc")
    dets = ("H1", "L1", "V1")
    exps = gw.network(dets, fiducial=fid, fmin=20.0, n_freq=400, gmst=2.1)
    fm = ff.fisher(exps, fid, params=names)
    ref = 0.0
    for det, exp in zip(dets, exps, strict=True):
        f = np.asarray(exp.design)
        _, df = gw.frequency_grid(20.0, gw.f_isco(fid["Mc"], fid["eta"]), 400)
        call = evaluator(lambda p, f=f, det=det: gw.detector_strain(p, f, det, 2.1))
        jac = fd_jacobian(call, fid, names, {n: BNS_STEPS[n] for n in names})
        ref = ref + psd_fisher(jac, np.asarray(gw.psd_aligo_zdhp(f)), df)
    assert_fisher_close(fm, ref, names, rtol=1e-9)
    # A three-detector network localises the source: ra and dec are finite and small.
    sig = fm.sigma()
    assert sig["ra"] < 0.1 and sig["dec"] < 0.1


def test_gw_log_distance_is_snr_squared_and_decouples_from_phase():
    fid = {
        "ln_Mc": math.log(1.2),
        "eta": 0.24,
        "ln_dL": math.log(100.0),
        "tc": 0.0,
        "phic": 0.0,
        "chi1": 0.1,
        "chi2": 0.2,
    }
    fmin, fmax = 15.0, 1000.0
    exp = gw.experiment("optimal", fmin=fmin, fmax=fmax, n_freq=3000)
    fm = ff.fisher(exp, fid)
    F = fm.matrix
    i = fm.names.index("ln_dL")
    # SNR^2 = 4 A^2 int f^{-7/3} / S_n df with A = sqrt(5/24) pi^{-2/3} Mc^{5/6} / dL.
    mtsun, mpc_s = 4.925490947641267e-6, 3.0856775814913673e22 / 299792458.0
    amp = math.sqrt(5 / 24) * math.pi ** (-2 / 3) * (1.2 * mtsun) ** (5 / 6) / (100 * mpc_s)
    x0 = 245.4

    def integrand(f):
        x = f / x0
        s_n = 1e-48 * (
            0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622
        )
        return f ** (-7 / 3) / s_n

    snr2 = 4 * amp**2 * integrate.quad(integrand, fmin, fmax, epsabs=0, epsrel=1e-12, limit=200)[0]
    assert F[i, i] == pytest.approx(snr2, rel=1e-6)
    # Restricted amplitude: d h / d ln dL = -h is 90 degrees out of phase with every
    # phase-only derivative (i dPsi h), so these Fisher elements vanish identically.
    for other in ("tc", "phic", "eta", "chi1", "chi2"):
        j = fm.names.index(other)
        assert abs(F[i, j]) < 1e-12 * math.sqrt(F[i, i] * F[j, j])
    # Amplitude ~ Mc^{5/6}: F(ln dL, ln Mc) = -(5/6) SNR^2 exactly.
    k = fm.names.index("ln_Mc")
    assert F[i, k] == pytest.approx(-5 / 6 * F[i, i], rel=1e-12)


# -----------------------------------------------------------------------------------------
# Galactic double white dwarfs
# -----------------------------------------------------------------------------------------

DWD_STEPS = {"lnA": 1e-3, "f0": 1e-12, "fdot": 1e-20, "phi0": 1e-3, "cos_iota": 1e-3}


@pytest.mark.parametrize("detector", ["LISA", "TianQin"])
def test_dwd_fisher_matches_finite_differences_and_analytic_form(detector):
    fid = dict(dwd.EXAMPLE_DWD)
    t_obs = 2.0 * YEAR
    n = 1500
    exp = dwd.experiment(detector, fiducial=fid, t_obs_years=2.0, n_times=n)
    names = tuple(fid)
    fm = ff.fisher(exp, fid, params=names)
    s_n = float(
        dwd.lisa_psd(fid["f0"], 2.0)
        if detector == "LISA"
        else dwd.tianqin_psd(fid["f0"], 2.0, confusion=True)
    )
    dt = t_obs / n
    t = (np.arange(n) + 0.5) * dt
    call = evaluator(lambda p: dwd.baseband_signal(p, t, fid["f0"]))
    jac = fd_jacobian(call, fid, names, DWD_STEPS)
    ref = gaussian_fisher(jac, math.sqrt(s_n / dt))
    assert_fisher_close(fm, ref, names, rtol=1e-7)

    # Continuous-time Fisher matrix of a monochromatic source (e.g. Takahashi & Seto 2002):
    # with rho^2 = A^2 T [((1+c^2)/2)^2 + c^2] / S_n and phase 2 pi f0 t + pi fdot t^2 + phi0,
    # F(phi0,phi0) = rho^2, F(f0,f0) = (2 pi)^2 T^2/3 rho^2, F(fdot,fdot) = pi^2 T^4/5 rho^2,
    # F(f0,phi0) = pi T rho^2, F(fdot,phi0) = pi T^2/3 rho^2, F(f0,fdot) = pi^2 T^3/2 rho^2.
    c = fid["cos_iota"]
    rho2 = math.exp(2 * fid["lnA"]) * t_obs * ((0.5 * (1 + c * c)) ** 2 + c * c) / s_n
    F = dict(zip(names, range(len(names)), strict=True))
    M = fm.matrix
    assert M[F["lnA"], F["lnA"]] == pytest.approx(rho2, rel=1e-10)
    assert M[F["phi0"], F["phi0"]] == pytest.approx(rho2, rel=1e-10)
    assert M[F["f0"], F["f0"]] == pytest.approx(4 * math.pi**2 * t_obs**2 / 3 * rho2, rel=1e-6)
    assert M[F["fdot"], F["fdot"]] == pytest.approx(math.pi**2 * t_obs**4 / 5 * rho2, rel=1e-6)
    assert M[F["f0"], F["phi0"]] == pytest.approx(math.pi * t_obs * rho2, rel=1e-6)
    assert M[F["fdot"], F["phi0"]] == pytest.approx(math.pi * t_obs**2 / 3 * rho2, rel=1e-6)
    assert M[F["f0"], F["fdot"]] == pytest.approx(math.pi**2 * t_obs**3 / 2 * rho2, rel=1e-6)
    assert abs(M[F["lnA"], F["phi0"]]) < 1e-12 * rho2  # amplitude decouples from phase


# -----------------------------------------------------------------------------------------
# Microlensing
# -----------------------------------------------------------------------------------------

ML_STEPS = {"t0": 1e-4, "u0": 1e-5, "tE": 1e-4, "Fs": 1e-4, "Fb": 1e-4, "rho": 1e-5}


def test_microlensing_constant_sigma_fisher():
    t = np.linspace(-60.0, 60.0, 300)
    fid = dict(ml.OGLE_LIKE_EVENT)
    names = tuple(fid)
    fm = ff.fisher(ml.experiment(t, sigma=0.01), fid)
    jac = fd_jacobian(evaluator(lambda p: ml.light_curve(p, t)), fid, names, ML_STEPS)
    assert_fisher_close(fm, gaussian_fisher(jac, 0.01), names, rtol=1e-7)


def test_microlensing_finite_source_with_flux_dependent_noise():
    # Source crossing the lens (u0 < rho) and photon noise: the Fisher matrix has the mean
    # term plus 2 sum dsigma_i dsigma_j / sigma^2 from the parameter-dependent variance.
    t = np.linspace(-3.0, 3.0, 241)
    fid = {"t0": 0.1, "u0": 0.02, "tE": 20.0, "rho": 0.04, "Fs": 1.0, "Fb": 0.3}
    names = tuple(fid)
    gain, floor = 2e4, 2e-3
    exp = ml.experiment(t, sigma=ml.flux_dependent_sigma(gain, floor))
    fm = ff.fisher(exp, fid)
    mean = evaluator(lambda p: ml.light_curve(p, t))
    sig = evaluator(lambda p: ml.flux_dependent_sigma(gain, floor)(p, t))
    jac = fd_jacobian(mean, fid, names, ML_STEPS)
    s0 = sig(fid)
    dsig = fd_jacobian(sig, fid, names, ML_STEPS) / s0[:, None]
    ref = gaussian_fisher(jac, s0) + 2.0 * dsig.T @ dsig
    assert_fisher_close(fm, ref, names, rtol=1e-8)


# -----------------------------------------------------------------------------------------
# Cosmology
# -----------------------------------------------------------------------------------------

COSMO_FID = dict(cosmo.PLANCK2018_LCDM, Ok=0.0, w0=-1.0, wa=0.0)
COSMO_STEPS = {
    "H0": 1e-3,
    "Om": 1e-5,
    "ombh2": 1e-7,
    "rd": 1e-3,
    "M": 1e-4,
    "Ok": 1e-5,
    "w0": 1e-5,
    "wa": 1e-5,
}


def test_sn_bao_cmb_fishers_and_their_sum():
    z_sn = cosmo.sn_redshifts(150)
    sn = cosmo.sn_experiment(z_sn)
    bao = cosmo.bao_experiment()
    cmb = cosmo.cmb_prior_experiment()
    fid = COSMO_FID
    names = tuple(fid)
    total = 0.0

    # SN: sigma per supernova from the documented error budget.
    sigma_sn = np.sqrt(
        0.12**2 + (0.055 * z_sn) ** 2 + (5 / math.log(10) * 300.0 / (299792.458 * z_sn)) ** 2
    )
    jac = fd_jacobian(evaluator(lambda p: cosmo.sn_magnitude(p, z_sn)), fid, names, COSMO_STEPS)
    ref = gaussian_fisher(jac, sigma_sn)
    assert_fisher_close(ff.fisher(sn, fid, params=names), ref, names, rtol=1e-8)
    total = total + ref

    # BAO: percent errors of DESI_DR1_LIKE at the fiducial prediction.
    design = bao.design
    call = evaluator(lambda p: cosmo.bao_observables(p, design))
    frac = np.concatenate([np.asarray(cosmo.DESI_DR1_LIKE[k][1]) for k in ("DV", "DM", "DH")])
    jac = fd_jacobian(call, fid, names, COSMO_STEPS)
    ref = gaussian_fisher(jac, frac * call(fid))
    assert_fisher_close(ff.fisher(bao, fid, params=names), ref, names, rtol=1e-8)
    total = total + ref

    # CMB distance priors: J^T C^-1 J with the Chen, Huang & Wang inverse covariance.
    jac = fd_jacobian(evaluator(cosmo.cmb_distance_priors), fid, names, COSMO_STEPS)
    ref = jac.T @ cosmo.PLANCK2018_DISTANCE_PRIOR_INVCOV @ jac
    assert_fisher_close(ff.fisher(cmb, fid, params=names), ref, names, rtol=1e-7)
    total = total + ref

    combined = ff.fisher([sn, bao, cmb], fid, params=names)
    assert_fisher_close(combined, total, names, rtol=1e-7)
    # The combination constrains w0-wa: a finite, positive figure of merit.
    assert combined.figure_of_merit(["w0", "wa"]) > 1.0


# -----------------------------------------------------------------------------------------
# Stochastic background
# -----------------------------------------------------------------------------------------


def test_sgwb_auto_and_cross_correlation_fisher_formulas():
    # LISA, auto-correlation: F = T sum df dOmega dOmega / (Omega + Omega_n)^2.
    fid = {"log10_Omega": -11.5, "alpha": 2.0 / 3.0}
    names = tuple(fid)
    steps = {"log10_Omega": 1e-4, "alpha": 1e-4}
    t_obs = 4.0 * YEAR
    exp = sgwb.experiment("LISA", f_ref=1e-3)
    f, df = gw.frequency_grid(1e-4, 1e-1, 60)
    np.testing.assert_allclose(np.asarray(exp.design), f, rtol=1e-15)

    def omega(p, f=f):
        return 10.0 ** p["log10_Omega"] * (f / 1e-3) ** p["alpha"]

    call = evaluator(omega)
    jac = fd_jacobian(call, fid, names, steps)
    omega_n = sgwb.omega_noise("LISA", f)
    ref = gaussian_fisher(jac, (call(fid) + omega_n) / np.sqrt(t_obs * df))
    assert_fisher_close(ff.fisher(exp, fid), ref, names, rtol=1e-7)

    # Ground pair, weak-signal cross-correlation: F(ln Omega, ln Omega) = SNR^2 with
    # SNR^2 = 2 T int Omega^2 / Omega_eff^2 df (Allen & Romano 1999; Thrane & Romano 2013).
    fid = {"log10_Omega": -8.5, "alpha": 0.0}
    exp = sgwb.experiment("ground", t_obs_years=1.0)
    f, df = gw.frequency_grid(20.0, 500.0, 60)
    omega_eff = sgwb.omega_noise("ground", f)
    fm = ff.fisher(exp, fid)
    snr2 = 2 * YEAR * np.sum(df * (10.0**-8.5) ** 2 / omega_eff**2)
    assert fm.matrix[0, 0] == pytest.approx(math.log(10) ** 2 * snr2, rel=1e-10)
    call = evaluator(lambda p: sgwb.omega_power_law(p, f, math.sqrt(20.0 * 500.0)))
    jac = fd_jacobian(call, fid, names, steps)
    ref = gaussian_fisher(jac, omega_eff / np.sqrt(2 * YEAR * df))
    assert_fisher_close(fm, ref, names, rtol=1e-7)


def test_sgwb_broken_power_law_fisher():
    fid = {"log10_Omega_b": -11.0, "log10_fb": -2.5, "n1": 3.0, "n2": -4.0}
    names = tuple(fid)
    exp = sgwb.experiment("LISA", "broken_power_law")
    f, df = gw.frequency_grid(1e-4, 1e-1, 60)
    call = evaluator(lambda p: sgwb.omega_broken_power_law(p, f))
    jac = fd_jacobian(call, fid, names, dict.fromkeys(names, 1e-4))
    sigma = (call(fid) + sgwb.omega_noise("LISA", f)) / np.sqrt(4 * YEAR * df)
    assert_fisher_close(ff.fisher(exp, fid), gaussian_fisher(jac, sigma), names, rtol=1e-7)
