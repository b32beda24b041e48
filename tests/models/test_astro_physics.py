"""Physics of the astrophysics/cosmology model zoo, checked against mathematics and literature.

Engine-independent: every reference value here is written out independently of
``models/`` (published expansions typed from the papers, closed forms, scipy quadrature,
published tables), never recomputed by calling the code under test.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import constants, integrate, special

from fisherforecast.models import cosmology as cosmo
from fisherforecast.models import dwd, gw, sgwb
from fisherforecast.models import microlensing as ml

GAMMA_E = 0.5772156649015329
MTSUN = 4.925490947641267e-6  # G M_sun / c^3 [s] (IAU 2015 nominal GM_sun)
C_KM_S = 299792.458


pytestmark = pytest.mark.usefixtures("float64_context")


def as_np(x):
    return np.asarray(x, dtype=float)


# =========================================================================================
# TaylorF2
# =========================================================================================


def biops_nonspinning(eta):
    """Buonanno, Iyer, Ochsner, Pan & Sathyaprakash 2009, Eq. (3.18), typed as printed.

    Returns (phi_k, phi_log_k) with the log terms in ln v; the 2.5PN and 3PN logs are
    written with the printed (1 + 3 ln v) and ln(4 v) groupings.
    """
    pi = math.pi
    phi = np.zeros(8)
    log = np.zeros(8)
    phi[0] = 1.0
    phi[2] = 20.0 / 9.0 * (743.0 / 336.0 + 11.0 / 4.0 * eta)
    phi[3] = -16.0 * pi
    phi[4] = 10.0 * (3058673.0 / 1016064.0 + 5429.0 / 1008.0 * eta + 617.0 / 144.0 * eta**2)
    c5 = pi * (38645.0 / 756.0 - 65.0 / 9.0 * eta)
    phi[5], log[5] = c5, 3.0 * c5  # c5 (1 + 3 ln v)
    phi[6] = (
        11583231236531.0 / 4694215680.0
        - 640.0 / 3.0 * pi**2
        - 6848.0 / 21.0 * GAMMA_E
        + eta * (-15737765635.0 / 3048192.0 + 2255.0 / 12.0 * pi**2)
        + 76055.0 / 1728.0 * eta**2
        - 127825.0 / 1296.0 * eta**3
        - 6848.0 / 21.0 * math.log(4.0)  # from -6848/21 ln(4 v)
    )
    log[6] = -6848.0 / 21.0
    phi[7] = pi * (77096675.0 / 254016.0 + 378515.0 / 1512.0 * eta - 74045.0 / 756.0 * eta**2)
    return phi, log


def per_body_spin_terms(eta, chi1, chi2):
    """Aligned-spin phase terms written per body (X_i = m_i / M, black holes).

    1.5PN: 4 beta, beta = sum_i (113/12 X_i^2 + 25/4 eta) chi_i (Kidder 1995; Arun et al.
    2009 Eq. 6.22).  2PN: -10 sigma, sigma = 79/8 eta chi1 chi2 + 81/16 sum X_i^2 chi_i^2
    for aligned spins with kappa = 1 (Arun et al. 2009 Eq. 6.24 with the quadrupole-
    monopole and self-spin terms).  2.5PN, 3PN, 3.5PN spin-orbit and 3PN spin-spin: the
    per-body coefficients of Bohé et al. (2013, 2015) in the form tabulated by LALSuite
    (LALSimInspiralPNCoefficients.c), typed here with their decimal-point fractions.
    """
    pi = math.pi
    x1 = 0.5 * (1.0 + math.sqrt(1.0 - 4.0 * eta))
    x2 = 1.0 - x1
    d = np.zeros(8)
    beta = sum((113.0 / 12.0 * x**2 + 25.0 / 4.0 * eta) * c for x, c in ((x1, chi1), (x2, chi2)))
    d[3] = 4.0 * beta
    sigma = 79.0 / 8.0 * eta * chi1 * chi2 + 81.0 / 16.0 * (x1**2 * chi1**2 + x2**2 * chi2**2)
    d[4] = -10.0 * sigma

    def so5(x):
        return -x * (
            1391.5 / 8.4 - x * (1 - x) * 10.0 / 3.0 + x * (1276.0 / 8.1 + x * (1 - x) * 170.0 / 9.0)
        )

    def so6(x):
        return pi * x * (1490.0 / 3.0 + 260.0 * x)

    def so7(x):
        e = x * (1 - x)
        return x * (
            -17097.8035 / 4.8384
            + e * 28764.25 / 6.72
            + e * e * 47.35 / 1.44
            + x * (-7189.233785 / 1.524096 + e * 458.555 / 3.024 - e * e * 534.5 / 7.2)
        )

    def ss6(x):
        qm = (4703.5 / 8.4 + 2935.0 / 6.0 * x - 120.0 * x * x) * x * x
        self_spin = (-4108.25 / 6.72 - 108.5 / 1.2 * x + 125.5 / 3.6 * x * x) * x * x
        return qm + self_spin

    d5 = so5(x1) * chi1 + so5(x2) * chi2
    d[5] = d5
    d[6] = (
        so6(x1) * chi1
        + so6(x2) * chi2
        + (326.75 / 1.12 + 557.5 / 1.8 * eta) * eta * chi1 * chi2
        + ss6(x1) * chi1**2
        + ss6(x2) * chi2**2
    )
    d[7] = so7(x1) * chi1 + so7(x2) * chi2
    dlog = np.zeros(8)
    dlog[5] = 3.0 * d5
    return d, dlog


@pytest.mark.parametrize("eta", [0.25, 0.2222, 0.16, 0.09, 0.05])
def test_pn_coefficients_nonspinning_match_biops(eta):
    phi, log = gw.pn_phase_coefficients(eta)
    ref, ref_log = biops_nonspinning(eta)
    np.testing.assert_allclose(as_np(phi), ref, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(as_np(log), ref_log, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize(
    ("eta", "chi1", "chi2"),
    [
        (0.25, 0.3, 0.3),
        (0.2222, 0.7, -0.4),
        (0.16, -0.9, 0.5),
        (0.09, 0.2, 0.95),
        (0.2499, 0.0, 0.6),
    ],
)
def test_pn_spin_terms_match_per_body_expansion(eta, chi1, chi2):
    phi, log = gw.pn_phase_coefficients(eta, chi1, chi2)
    base, base_log = biops_nonspinning(eta)
    spin, spin_log = per_body_spin_terms(eta, chi1, chi2)
    scale = np.abs(base) + np.abs(spin) + 1.0
    np.testing.assert_allclose(as_np(phi) / scale, (base + spin) / scale, atol=1e-12)
    np.testing.assert_allclose(as_np(log) / scale, (base_log + spin_log) / scale, atol=1e-12)


def test_spa_phase_derivative_gives_taylort2_time():
    """dPsi/df = 2 pi t(f) (SPA, Cutler & Flanagan 1994) against the TaylorT2 t(v).

    TaylorT2 time to 2PN (BIOPS Eq. 3.8b): t = tc - 5M/(256 eta v^8) [1 + (743/252 +
    11/3 eta) v^2 - 32 pi/5 v^3 + (3058673/508032 + 5429/504 eta + 617/72 eta^2) v^4].
    At 10 Hz for a 1.4+1.4 M_sun binary the omitted 2.5PN+ terms are < 1e-3, and the
    Newtonian value is the textbook "~17 minutes" in band from 10 Hz.
    """
    m_total = 2.8
    eta = 0.25
    mc = m_total * eta**0.6
    f = 10.0
    dpsi = jax.grad(lambda ff_: gw.taylorf2_phase(ff_, mc, eta, 0.0, 0.0))(f)
    t_code = float(dpsi) / (2.0 * math.pi)
    m_s = m_total * MTSUN
    v = (math.pi * m_s * f) ** (1.0 / 3.0)
    newtonian = 5.0 * m_s / (256.0 * eta * v**8)
    series = (
        1.0
        + (743.0 / 252.0 + 11.0 / 3.0 * eta) * v**2
        - 32.0 * math.pi / 5.0 * v**3
        + (3058673.0 / 508032.0 + 5429.0 / 504.0 * eta + 617.0 / 72.0 * eta**2) * v**4
    )
    assert 16.5 * 60 < newtonian < 17.0 * 60
    assert t_code == pytest.approx(-newtonian * series, rel=1e-3)


def test_f_isco_and_amplitude_normalisation():
    # f_ISCO = c^3 / (6^{3/2} pi G M): 1570 Hz for 2.8 M_sun (e.g. Maggiore 2008, Eq. 4.40).
    m_total = 2.8
    mc = m_total * 0.25**0.6
    assert float(gw.f_isco(mc, 0.25)) == pytest.approx(
        1.0 / (6**1.5 * math.pi * m_total * MTSUN), rel=1e-12
    )
    assert float(gw.f_isco(mc, 0.25)) == pytest.approx(1570.4, abs=0.1)
    # Restricted amplitude sqrt(5/24) pi^{-2/3} (G Mc/c^3)^{5/6} c/dL f^{-7/6}.
    mpc_s = 3.0856775814913673e22 / 299792458.0
    ref = math.sqrt(5 / 24) * math.pi ** (-2 / 3) * (1.2 * MTSUN) ** (5 / 6) / (40 * mpc_s)
    assert float(gw.taylorf2_amplitude(1.0, 1.2, 40.0)) == pytest.approx(ref, rel=1e-12)


def test_polarisations_inclination_dependence():
    params = {"Mc": 1.2, "eta": 0.24, "dL": 100.0, "tc": 0.01, "phic": 0.3, "cos_iota": 0.5}
    f = np.array([30.0, 100.0, 300.0])
    hp, hc = gw.polarizations(params, f)
    h0 = gw.optimal_strain(params, f)
    np.testing.assert_allclose(as_np(np.abs(hp)), 0.5 * (1 + 0.25) * np.abs(h0), rtol=1e-12)
    np.testing.assert_allclose(as_np(np.abs(hc)), 0.5 * np.abs(h0), rtol=1e-12)
    # h_x lags h_+ by a quarter cycle: h_x / h_+ is purely imaginary.
    ratio = np.asarray(hc) / np.asarray(hp)
    np.testing.assert_allclose(ratio.real, 0.0, atol=1e-12)
    # Above f_ISCO the restricted waveform is switched off.
    above = gw.optimal_strain(params, np.array([1.01 * float(gw.f_isco(1.2, 0.24))]))
    assert float(np.abs(above[0])) == 0.0


# =========================================================================================
# Detectors
# =========================================================================================

# LALSuite LALDetectors.h: ECEF vertex positions [m] and arm unit vectors (they include the
# sub-mrad arm tilts that the model neglects).
LAL_SITES = {
    "H1": (
        (-2.16141492636e6, -3.83469517889e6, 4.60035022664e6),
        (-0.22389266154, 0.79983062746, 0.55690487831),
        (-0.91397818574, 0.02609403989, -0.40492342125),
    ),
    "L1": (
        (-7.42760447238e4, -5.49628371971e6, 3.22425701744e6),
        (-0.95457412153, -0.14158077340, -0.26218911324),
        (0.29774156894, -0.48791033647, -0.82054461286),
    ),
    "V1": (
        (4.54637409900e6, 8.42989697626e5, 4.37857696241e6),
        (-0.70045821479, 0.20848948619, 0.68256166277),
        (-0.05379255368, -0.96908180549, 0.24080451708),
    ),
}


@pytest.mark.parametrize("name", ["H1", "L1", "V1"])
def test_detector_geometry_matches_lalsuite_tables(name):
    vertex, x_arm, y_arm = (np.array(v) for v in LAL_SITES[name])
    np.testing.assert_allclose(gw.detector_vertex(name), vertex, atol=0.05)
    x, y = gw.arm_unit_vectors(name)
    np.testing.assert_allclose(x, x_arm, atol=1e-3)
    np.testing.assert_allclose(y, y_arm, atol=1e-3)


def test_light_travel_time_between_ligo_sites():
    # The Hanford-Livingston light travel time is 10.0 ms (e.g. Abbott et al. 2016, PRL 116,
    # 061102); the maximum delay difference over the sky equals |r_H - r_L| / c.
    r_h, r_l = (np.array(LAL_SITES[n][0]) for n in ("H1", "L1"))
    baseline = (r_h - r_l) / np.linalg.norm(r_h - r_l)
    dec = math.asin(baseline[2])
    ra = math.atan2(baseline[1], baseline[0])  # gmst = 0: ra = Earth-fixed longitude
    dt = float(
        gw.time_delay_from_geocenter("L1", ra, dec) - gw.time_delay_from_geocenter("H1", ra, dec)
    )
    assert dt == pytest.approx(np.linalg.norm(r_h - r_l) / 299792458.0, rel=1e-9)
    assert dt == pytest.approx(10.01e-3, abs=0.02e-3)
    # Source at the zenith of H1: arrives |r_H|/c before the geocentre.
    up = r_h / np.linalg.norm(r_h)
    zen = float(
        gw.time_delay_from_geocenter("H1", math.atan2(up[1], up[0]), math.asin(up[2]), gmst=0.0)
    )
    assert zen < 0 and abs(zen) == pytest.approx(6.367e6 / 299792458.0, rel=2e-3)


def test_antenna_pattern_special_configurations():
    # Equatorial detector at longitude 0, arms along local North and East.
    det = gw.Detector("toy", 0.0, 0.0, 0.0, math.pi / 2)
    # Source at the zenith (ra = 0, dec = 0 at gmst = 0), psi = 0: |F+| = 1, Fx = 0.
    fp, fx = gw.antenna_patterns(det, 0.0, 0.0, 0.0, gmst=0.0)
    assert abs(float(fp)) == pytest.approx(1.0, abs=1e-14)
    assert float(fx) == pytest.approx(0.0, abs=1e-14)
    # psi = pi/4 turns the response fully into the cross polarisation.
    fp, fx = gw.antenna_patterns(det, 0.0, 0.0, math.pi / 4, gmst=0.0)
    assert float(fp) == pytest.approx(0.0, abs=1e-14)
    assert abs(float(fx)) == pytest.approx(1.0, abs=1e-14)
    # Along an arm (North pole direction is the North arm on the horizon): F+^2+Fx^2 = 1/4.
    fp, fx = gw.antenna_patterns(det, 0.0, math.pi / 2, 0.3, gmst=0.0)
    assert float(fp**2 + fx**2) == pytest.approx(0.25, abs=1e-14)
    # On the horizon along the bisector of the arms (North-East): blind spot.
    fp, fx = gw.antenna_patterns(det, math.pi / 2, math.pi / 4, 0.7, gmst=0.0)
    assert float(fp**2 + fx**2) == pytest.approx(0.0, abs=1e-14)


def test_antenna_power_matches_detector_frame_formula():
    """F+^2 + Fx^2 = (1+cos^2 th)^2 cos^2 2ph / 4 + cos^2 th sin^2 2ph (psi-invariant).

    (theta, phi) are the source's polar angles in the frame of the LAL arm vectors.
    """
    rng = np.random.default_rng(1)
    for name in ("H1", "L1", "V1"):
        _, x_arm, y_arm = (np.array(v) for v in LAL_SITES[name])
        z_arm = np.cross(x_arm, y_arm)
        for _ in range(20):
            ra, dec = rng.uniform(0, 2 * math.pi), math.asin(rng.uniform(-1, 1))
            gmst, psi = rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
            n = np.array(
                [
                    math.cos(dec) * math.cos(ra - gmst),
                    math.cos(dec) * math.sin(ra - gmst),
                    math.sin(dec),
                ]
            )
            cos_th = n @ z_arm
            ph = math.atan2(n @ y_arm, n @ x_arm)
            ref = (
                0.25 * (1 + cos_th**2) ** 2 * math.cos(2 * ph) ** 2
                + cos_th**2 * math.sin(2 * ph) ** 2
            )
            fp, fx = gw.antenna_patterns(name, ra, dec, psi, gmst)
            # Tolerance covers the neglected arm tilts (<1 mrad).
            assert float(fp**2 + fx**2) == pytest.approx(ref, abs=3e-3)


def test_einstein_telescope_null_stream():
    # For a closed triangle the three detector tensors sum to zero, so F_1+F_2+F_3 = 0
    # (Freise et al. 2009, CQG 26, 085012; Regimbau et al. 2012).
    rng = np.random.default_rng(2)
    for _ in range(10):
        ra, dec, psi, gmst = rng.uniform(0, 6.28), rng.uniform(-1.5, 1.5), rng.uniform(0, 3), 0.4
        fps, fxs = zip(
            *(gw.antenna_patterns(f"ET{k}", ra, dec, psi, gmst) for k in (1, 2, 3)), strict=True
        )
        assert abs(float(sum(fps))) < 1e-14 and abs(float(sum(fxs))) < 1e-14
        # Each 60-degree interferometer has sin(60 deg) times the response amplitude of an L.
        assert max(abs(float(v)) for v in fps + fxs) <= math.sin(math.pi / 3) + 1e-12


# =========================================================================================
# Noise curves
# =========================================================================================


def test_ground_psds_against_published_formulas():
    f = np.array([10.0, 31.6, 100.0, 316.0, 1000.0])
    x = f / 245.4  # Ajith 2011 ZDHP fit
    ref = 1e-48 * (0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622)
    np.testing.assert_allclose(gw.psd_aligo_zdhp(f), ref, rtol=1e-13)
    # aLIGO design: ~4e-24 /sqrt(Hz) at 100 Hz.
    assert math.sqrt(gw.psd_aligo_zdhp(100.0)) == pytest.approx(3.97e-24, rel=1e-3)
    y = f / 100.0  # Mishra et al. 2010 ET-B fit
    ref_et = (
        1e-50 * (2.39e-27 * y**-15.64 + 0.349 * y**-2.145 + 1.76 * y**-0.12 + 0.409 * y**1.10) ** 2
    )
    np.testing.assert_allclose(gw.psd_et_b(f), ref_et, rtol=1e-13)
    # ET-B is ~10x better than aLIGO in amplitude at 100 Hz; CE-like fit is ~2e-25 there.
    assert 10 < math.sqrt(gw.psd_aligo_zdhp(100.0) / gw.psd_et_b(100.0)) < 20
    assert 1.5e-25 < math.sqrt(gw.psd_ce_wideband(100.0)) < 3e-25
    # The PSD functions accept JAX arrays too (for ff.PSD(psd=callable)).
    assert float(gw.psd_et_b(jax.numpy.asarray(100.0))) == pytest.approx(ref_et[2], rel=1e-12)


def robson_lisa(f, t_obs=None):
    """Robson, Cornish & Liu (2019): Eqs. for P_OMS, P_acc, S_n and the Table-1 foreground."""
    length, fstar = 2.5e9, 19.09e-3
    p_oms = (1.5e-11) ** 2 * (1 + (2e-3 / f) ** 4)
    p_acc = (3e-15) ** 2 * (1 + (0.4e-3 / f) ** 2) * (1 + (f / 8e-3) ** 4)
    s_n = (
        10
        / (3 * length**2)
        * (p_oms + 2 * (1 + np.cos(f / fstar) ** 2) * p_acc / (2 * np.pi * f) ** 4)
        * (1 + 0.6 * (f / fstar) ** 2)
    )
    if t_obs is None:
        return s_n
    table = {
        0.5: (0.133, 243, 482, 917, 0.00258),
        1: (0.171, 292, 1020, 1680, 0.00215),
        2: (0.165, 299, 611, 1340, 0.00173),
        4: (0.138, -221, 521, 1680, 0.00113),
    }
    a, b, k, g, fk = table[t_obs]
    s_c = (
        9e-45
        * f ** (-7 / 3)
        * np.exp(-(f**a) + b * f * np.sin(k * f))
        * (1 + np.tanh(g * (fk - f)))
    )
    return s_n + s_c


@pytest.mark.parametrize("t_obs", [None, 0.5, 1.0, 2.0, 4.0])
def test_lisa_sensitivity_robson_2019(t_obs):
    f = np.geomspace(1e-5, 1.0, 41)
    got = dwd.lisa_psd(f, t_obs or 4.0, confusion=t_obs is not None)
    np.testing.assert_allclose(got, robson_lisa(f, t_obs), rtol=1e-12)


def test_lisa_and_tianqin_reference_values():
    # Robson et al. (2019) Fig. 1: the instrument curve has sqrt(S_n) ~ 1.7e-20 /sqrt(Hz)
    # at 3 mHz, and the 4-yr confusion noise dominates near 1 mHz.
    assert math.sqrt(dwd.lisa_psd(3e-3, confusion=False)) == pytest.approx(1.744e-20, rel=2e-3)
    assert dwd.lisa_psd(1e-3, 4.0) > 3 * dwd.lisa_psd(1e-3, confusion=False)
    # TianQin (Huang et al. 2020 Eq. 13 times 10/3, Robson convention).
    f = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    length = math.sqrt(3) * 1e8
    fstar = 299792458.0 / (2 * math.pi * length)
    ref = (
        10
        / (3 * length**2)
        * (4e-30 / (2 * np.pi * f) ** 4 * (1 + 1e-4 / f) + 1e-24)
        * (1 + 0.6 * (f / fstar) ** 2)
    )
    np.testing.assert_allclose(dwd.tianqin_psd(f), ref, rtol=1e-12)
    assert fstar == pytest.approx(0.2755, rel=1e-3)  # "f* = 0.28 Hz" in Huang et al.


# =========================================================================================
# Double white dwarfs
# =========================================================================================


def test_dwd_gr_relations():
    # Maggiore (2008) Eq. 4.20 and Eq. 4.3 (h = 4/r (G Mc/c^2)^{5/3} (pi f/c)^{2/3}).
    mc, f0, d_kpc = 0.6, 5e-3, 2.0
    g, c, msun, kpc = 6.67430e-11, 299792458.0, 1.32712440e20 / 6.67430e-11, 3.0856775814913673e19
    fdot = 96 / 5 * math.pi ** (8 / 3) * (g * mc * msun / c**3) ** (5 / 3) * f0 ** (11 / 3)
    amp = 4 / (d_kpc * kpc) * (g * mc * msun / c**2) ** (5 / 3) * (math.pi * f0 / c) ** (2 / 3)
    assert dwd.fdot_gr(mc, f0) == pytest.approx(fdot, rel=1e-9)
    assert dwd.amplitude_gr(mc, f0, d_kpc) == pytest.approx(amp, rel=1e-9)


def test_dwd_baseband_reconstructs_the_strain_and_its_snr():
    """Re[H e^{2 pi i f_ref t}] = h(t); and sum|H|^2 dt / S = (2/S) int h(t)^2 dt."""
    params = {"A": 2.0, "f0": 0.0101, "fdot": 3e-9, "phi0": 0.7, "cos_iota": 0.3}
    f_ref = 0.01
    t = np.linspace(0.0, 4000.0, 200001)
    q = np.asarray(dwd.baseband_signal(params, t, f_ref))
    carrier = np.exp(2j * np.pi * f_ref * t)
    h_plus = (q[0] + 1j * q[1]) * carrier
    h_cross = (q[2] + 1j * q[3]) * carrier
    phase = 2 * np.pi * params["f0"] * t + np.pi * params["fdot"] * t**2 + params["phi0"]
    np.testing.assert_allclose(h_plus.real, 2.0 * (1 + 0.09) / 2 * np.cos(phase), atol=1e-9)
    np.testing.assert_allclose(h_cross.real, 2.0 * 0.3 * np.sin(phase), atol=1e-9)
    quad_power = np.sum(q**2) * (t[1] - t[0])
    time_power = 2 * integrate.trapezoid(h_plus.real**2 + h_cross.real**2, t)
    assert quad_power == pytest.approx(time_power, rel=2e-3)  # up to fast-oscillating terms


# =========================================================================================
# Cosmology
# =========================================================================================


def e_of_z_ref(z, om, ok=0.0, w0=-1.0, wa=0.0, o_r=0.0):
    ode = 1 - om - ok - o_r
    de = (1 + z) ** (3 * (1 + w0 + wa)) * np.exp(-3 * wa * z / (1 + z))
    return np.sqrt(o_r * (1 + z) ** 4 + om * (1 + z) ** 3 + ok * (1 + z) ** 2 + ode * de)


def omega_gamma_h2_ref(t_cmb=2.7255):
    """Photon density from Planck's law: rho_gamma c^2 = pi^2/15 (k T)^4 / (hbar c)^3."""
    k, hbar, c, g = (constants.k, constants.hbar, constants.c, constants.G)
    rho_gamma_c2 = math.pi**2 / 15 * (k * t_cmb) ** 4 / (hbar * c) ** 3
    h100 = 1e5 / (constants.parsec * 1e6)
    return rho_gamma_c2 / (3 * h100**2 * c**2 / (8 * math.pi * g))


def omega_r_ref(h0):
    # Photons (~2.473e-5 h^-2) plus N_eff = 3.046 massless neutrinos at 7/8 (4/11)^{4/3} each.
    nu = 7 / 8 * (4 / 11) ** (4 / 3) * 3.046
    return omega_gamma_h2_ref() * (1 + nu) / (h0 / 100) ** 2


@pytest.mark.parametrize(
    "model",
    [
        dict(H0=70.0, Om=0.3),
        dict(H0=67.36, Om=0.3153, w0=-0.8, wa=-0.6),
        dict(H0=72.0, Om=0.25, Ok=0.1, w0=-1.1, wa=0.4),
        dict(H0=65.0, Om=0.35, Ok=-0.08),
    ],
)
@pytest.mark.parametrize("z", [0.01, 0.5, 1.5, 3.0, 1089.0])
def test_comoving_distance_against_quad(model, z):
    o_r = omega_r_ref(model["H0"])
    kw = dict(ok=model.get("Ok", 0.0), w0=model.get("w0", -1.0), wa=model.get("wa", 0.0))
    ref, _ = integrate.quad(
        lambda zz: 1 / e_of_z_ref(zz, model["Om"], o_r=o_r, **kw),
        0,
        z,
        epsabs=0,
        epsrel=1e-13,
        limit=500,
    )
    ref *= C_KM_S / model["H0"]
    got = float(cosmo.comoving_distance(model, z))
    assert got == pytest.approx(ref, rel=1e-10)
    # Transverse distance: sinh/sin continuation of the curvature, Hogg (1999) Eq. 16.
    d_h = C_KM_S / model["H0"]
    ok = kw["ok"]
    if ok > 0:
        ref_m = d_h / math.sqrt(ok) * math.sinh(math.sqrt(ok) * ref / d_h)
    elif ok < 0:
        ref_m = d_h / math.sqrt(-ok) * math.sin(math.sqrt(-ok) * ref / d_h)
    else:
        ref_m = ref
    assert float(cosmo.transverse_comoving_distance(model, z)) == pytest.approx(ref_m, rel=1e-10)


@pytest.mark.parametrize("z", [0.1, 1.0, 3.0, 10.0])
def test_einstein_de_sitter_and_flat_lcdm_closed_forms(z):
    h0 = 70.0
    d_h = C_KM_S / h0
    eds = {"H0": h0, "Om": 1.0}
    ref = 2 * d_h * (1 - 1 / math.sqrt(1 + z))  # D_C in Einstein-de Sitter
    assert float(cosmo.comoving_distance(eds, z, radiation=False)) == pytest.approx(ref, rel=1e-12)
    mu = 5 * math.log10((1 + z) * ref * 1e6 / 10.0)
    assert float(cosmo.distance_modulus(eds, z, radiation=False)) == pytest.approx(mu, abs=1e-10)
    # Flat LCDM: int_0^z dz/sqrt(Om (1+z)^3 + OL) via 2F1(1/3, 1/2; 4/3; -Om x^3/OL).
    om = 0.3
    ol = 1 - om

    def prim(x):
        return x * special.hyp2f1(1 / 3, 1 / 2, 4 / 3, -om * x**3 / ol) / math.sqrt(ol)

    ref_l = d_h * (prim(1 + z) - prim(1.0))
    got = float(cosmo.comoving_distance({"H0": h0, "Om": om}, z, radiation=False))
    assert got == pytest.approx(ref_l, rel=1e-11)


@pytest.mark.parametrize("om", [0.3, 1.0, 2.0])
def test_mattig_relation_without_dark_energy(om):
    # Lambda = 0 (Ok = 1 - Om): D_L = 2c/(H0 Om^2) [Om z + (Om - 2)(sqrt(1 + Om z) - 1)].
    h0, z = 70.0, 2.0
    params = {"H0": h0, "Om": om, "Ok": 1.0 - om}
    ref = 2 * C_KM_S / (h0 * om**2) * (om * z + (om - 2) * (math.sqrt(1 + om * z) - 1))
    got = float(cosmo.luminosity_distance(params, z, radiation=False))
    assert got == pytest.approx(ref, rel=1e-11)


def test_curvature_derivative_is_smooth_through_flatness():
    # dD_M/dOk at Ok = 0 against a central difference of the closed-form sinh/sin formula.
    z = 2.0
    base = {"H0": 70.0, "Om": 0.3}

    def d_m_ref(ok):
        d_c, _ = integrate.quad(
            lambda zz: 1 / e_of_z_ref(zz, 0.3, ok=ok, o_r=omega_r_ref(70.0)),
            0,
            z,
            epsabs=0,
            epsrel=1e-13,
        )
        d_h = C_KM_S / 70.0
        d_c *= d_h
        s = math.sqrt(abs(ok))
        return d_h / s * (math.sinh(s * d_c / d_h) if ok > 0 else math.sin(s * d_c / d_h))

    h = 1e-4
    ref = (d_m_ref(h) - d_m_ref(-h)) / (2 * h)
    got = jax.grad(lambda ok: cosmo.transverse_comoving_distance(dict(base, Ok=ok), z))(0.0)
    assert float(got) == pytest.approx(ref, rel=1e-6)


def test_bao_observables_definitions():
    params = dict(cosmo.PLANCK2018_LCDM)
    z = np.array([0.3, 1.0, 2.33])
    out = np.asarray(cosmo.bao_observables(params, {"z_DV": z, "z_DM": z, "z_DH": z}))
    o_r = omega_r_ref(params["H0"])
    e = e_of_z_ref(z, params["Om"], o_r=o_r)
    d_h = C_KM_S / (params["H0"] * e)
    d_m = (
        np.array(
            [
                integrate.quad(
                    lambda zz: 1 / e_of_z_ref(zz, params["Om"], o_r=o_r),
                    0,
                    zi,
                    epsabs=0,
                    epsrel=1e-12,
                )[0]
                for zi in z
            ]
        )
        * C_KM_S
        / params["H0"]
    )
    d_v = (z * d_m**2 * d_h) ** (1 / 3)
    np.testing.assert_allclose(out, np.concatenate([d_v, d_m, d_h]) / params["rd"], rtol=1e-9)
    # DESI DR1 (arXiv:2404.03002) measured D_M/r_d = 13.62 +- 0.25 at z = 0.51 and
    # D_H/r_d = 8.52 +- 0.17 at z = 2.33; Planck LCDM lies within ~2 sigma of both.
    dm051 = float(cosmo.bao_observables(params, {"z_DM": np.array([0.51])})[0])
    dh233 = float(cosmo.bao_observables(params, {"z_DH": np.array([2.33])})[0])
    assert abs(dm051 - 13.62) < 2 * 0.25 and abs(dh233 - 8.52) < 2 * 0.17


def test_cmb_distance_priors_against_chen_huang_wang_2019():
    # Table I of Chen, Huang & Wang (2019): R = 1.7502 +- 0.0046, l_A = 301.471 +- 0.090,
    # omega_b = 0.02236 +- 0.00015, correlations (R,l_A) 0.46, (R,w_b) -0.66, (l_A,w_b) -0.33.
    cov = cosmo.PLANCK2018_DISTANCE_PRIOR_COV
    sig = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(sig, [0.0046, 0.090, 0.00015], rtol=0.03)
    corr = cov / np.outer(sig, sig)
    np.testing.assert_allclose(
        [corr[0, 1], corr[0, 2], corr[1, 2]], [0.46, -0.66, -0.33], atol=0.01
    )
    # At the Planck 2018 best fit the compressed observables reproduce the published means;
    # z_* from the Hu & Sugiyama fit (1091.9 vs Planck's 1089.9) limits l_A to ~0.3%.
    r, l_a, wb = (float(v) for v in cosmo.cmb_distance_priors(dict(cosmo.PLANCK2018_LCDM)))
    assert r == pytest.approx(1.750235, rel=1e-3)
    assert l_a == pytest.approx(301.4707, rel=4e-3)
    assert wb == cosmo.PLANCK2018_LCDM["ombh2"]
    z_star = float(cosmo.z_star_hu_sugiyama(0.02237, 0.3153 * 0.6736**2))
    assert z_star == pytest.approx(1089.92, rel=3e-3)  # Planck 2018 Table 2


def test_sound_horizon_against_quad():
    params = dict(cosmo.PLANCK2018_LCDM)
    h = params["H0"] / 100
    o_r = omega_r_ref(params["H0"])
    r_bg = 3 * params["ombh2"] / (4 * omega_gamma_h2_ref())

    def integrand(zz):
        c_s = 1 / math.sqrt(3 * (1 + r_bg / (1 + zz)))
        return c_s / e_of_z_ref(zz, params["Om"], o_r=o_r)

    z_star = 1090.0
    ref = integrate.quad(integrand, z_star, np.inf, epsabs=0, epsrel=1e-12, limit=500)[0]
    ref *= C_KM_S / params["H0"]
    assert float(cosmo.sound_horizon(params, z_star)) == pytest.approx(ref, rel=1e-10)
    # Planck 2018: r_* = 144.43 +- 0.26 Mpc at z_* = 1089.92 (Table 2).
    assert float(cosmo.sound_horizon(params, 1089.92)) == pytest.approx(144.43, rel=3e-3)
    assert h > 0


# =========================================================================================
# Microlensing
# =========================================================================================


def test_paczynski_magnification_limits():
    assert float(ml.paczynski_magnification(1.0)) == pytest.approx(3 / math.sqrt(5), rel=1e-15)
    for u in (1e-3, 1e-4):  # A ~ 1/u + 3u/8 for u << 1
        assert float(ml.paczynski_magnification(u)) * u == pytest.approx(1 + 3 * u**2 / 8, rel=1e-9)
    for u in (10.0, 100.0):  # A - 1 ~ 2/u^4 for u >> 1
        assert float(ml.paczynski_magnification(u)) - 1 == pytest.approx(2 / u**4, rel=5 / u**2)
    # u(t) at t0 +- tE with u0 = 0.3: sqrt(0.09 + 1).
    assert float(ml.impact_parameter(25.0, 5.0, 0.3, 20.0)) == pytest.approx(math.sqrt(1.09))


def disk_average_ref(u, rho):
    """Direct 2-D quadrature of A over the source disk (source-centred polar coordinates)."""

    def point(s, phi):
        d = math.hypot(s * math.cos(phi) - u, s * math.sin(phi))
        return s * (d * d + 2) / (d * math.sqrt(d * d + 4))

    def radial(phi):
        return integrate.quad(point, 0, rho, args=(phi,), epsabs=0, epsrel=1e-11, limit=400)[0]

    total = integrate.quad(radial, 0, math.pi, epsabs=0, epsrel=1e-10, limit=400)[0]
    return 2 * total / (math.pi * rho**2)


@pytest.mark.parametrize(
    ("u", "rho"),
    [(0.05, 0.1), (0.0999, 0.1), (0.1001, 0.1), (0.3, 0.1), (1.0, 0.1), (0.5, 1.0), (2.0, 1.0)],
)
def test_finite_source_against_2d_quadrature(u, rho):
    got = float(ml.finite_source_magnification(u, rho))
    assert got == pytest.approx(disk_average_ref(u, rho), rel=1e-9)


def test_finite_source_limits():
    for rho in (0.01, 0.1, 1.0):  # lens at the disk centre: sqrt(rho^2 + 4) / rho (Gould 1994)
        got = float(ml.finite_source_magnification(0.0, rho))
        assert got == pytest.approx(math.sqrt(rho**2 + 4) / rho, rel=1e-13)
    # A tiny source reduces to the point-source magnification (u >> rho).
    for u in (0.05, 0.5, 3.0):
        got = float(ml.finite_source_magnification(u, 1e-4))
        assert got == pytest.approx(float(ml.paczynski_magnification(u)), rel=1e-6)
    # Gradients are finite on both sides of u = rho.
    g = jax.jacfwd(lambda p: ml.finite_source_magnification(p[0], p[1]))
    for u in (0.08, 0.12):
        assert np.all(np.isfinite(np.asarray(g(jax.numpy.array([u, 0.1])))))


def test_blending_parameterisations_agree():
    t = np.linspace(-30, 30, 7)
    a = ml.light_curve({"t0": 1.0, "u0": 0.2, "tE": 15.0, "Fs": 0.8, "Fb": 0.4}, t)
    b = ml.light_curve({"t0": 1.0, "u0": 0.2, "tE": 15.0, "F_base": 1.2, "fs": 2 / 3}, t)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14)
    u = np.sqrt(0.04 + ((t - 1.0) / 15.0) ** 2)
    np.testing.assert_allclose(
        np.asarray(a), 0.8 * (u**2 + 2) / (u * np.sqrt(u**2 + 4)) + 0.4, rtol=1e-14
    )


# =========================================================================================
# Stochastic background
# =========================================================================================


def test_hellings_downs_mean_square():
    # Isotropic pairs: cos(zeta) uniform, so <Gamma^2> = int_{-1}^{1} Gamma^2 dcos / 2.
    val = (
        integrate.quad(
            lambda c: sgwb.hellings_downs(math.acos(c)) ** 2, -1, 1, epsabs=0, epsrel=1e-12
        )[0]
        / 2
    )
    assert val == pytest.approx(1 / 48, rel=1e-9)
    assert sgwb.HELLINGS_DOWNS_MEAN_SQUARE == pytest.approx(val, rel=1e-9)
    # Stationary point of 3/2 x ln x - x/4 + 1/2: x = e^{-5/6}, i.e. the minimum
    # 1/2 - 3/2 e^{-5/6} = -0.152 at zeta = 82.5 degrees (Hellings & Downs 1983, Fig. 1).
    zeta = np.linspace(0.01, np.pi, 200001)
    hd = sgwb.hellings_downs(zeta)
    assert float(hd.min()) == pytest.approx(0.5 - 1.5 * math.exp(-5 / 6), abs=1e-9)
    x_min = math.exp(-5 / 6)
    assert zeta[np.argmin(hd)] == pytest.approx(math.acos(1 - 2 * x_min), abs=1e-4)
    assert math.degrees(math.acos(1 - 2 * x_min)) == pytest.approx(82.5, abs=0.1)


def test_omega_conversion_and_spectra():
    h0 = 67.36e3 / 3.0856775814913673e22
    f, s = 3e-3, 1e-40
    assert sgwb.strain_psd_to_omega(f, s) == pytest.approx(
        2 * np.pi**2 * f**3 * s / (3 * h0**2), rel=1e-12
    )
    p = {"log10_Omega_b": -10.0, "log10_fb": -3.0, "n1": 3.0, "n2": -1.0, "delta": 4.0}
    f = np.array([1e-6, 1e-5, 1e-1, 1.0])
    om = np.asarray(sgwb.omega_broken_power_law(p, f))
    slopes = np.diff(np.log10(om))
    assert slopes[0] == pytest.approx(3.0, abs=1e-6) and slopes[2] == pytest.approx(-1.0, abs=1e-6)
    assert float(sgwb.omega_broken_power_law(p, 1e-3)) == pytest.approx(1e-10, rel=1e-12)


def test_power_law_integrated_sensitivity_is_tangent_at_unit_snr():
    """Thrane & Romano (2013): every power law touching the PLS curve has SNR = rho."""
    f = np.geomspace(20.0, 500.0, 300)
    df = np.gradient(f)
    omega_eff = sgwb.omega_noise("ground", f)
    t_obs = 3.15576e7
    alphas = np.linspace(-4, 4, 81)
    pls = sgwb.power_law_integrated_sensitivity(f, omega_eff, t_obs, snr=2.0, df=df, alphas=alphas)
    f_ref = math.sqrt(f[0] * f[-1])
    for beta in (-2.0, 0.0, 1.0, 3.0):  # slopes on the alphas grid: exactly tangent
        shape = (f / f_ref) ** beta
        amp = np.min(pls / shape)  # largest amplitude lying below the curve
        snr = math.sqrt(2 * t_obs * np.sum(df * (amp * shape) ** 2 / omega_eff**2))
        assert snr == pytest.approx(2.0, rel=1e-9)
    # Off-grid slopes touch the curve with SNR <= 2 (the curve is an envelope of the grid).
    shape = (f / f_ref) ** (2.0 / 3.0)
    amp = np.min(pls / shape)
    assert math.sqrt(2 * t_obs * np.sum(df * (amp * shape) ** 2 / omega_eff**2)) <= 2.0


def test_tianqin_confusion_noise_matches_huang2020_table_ii():
    """log10 sqrt(S_c) = Σ a_i x^i, x = log10(f/mHz); Table II, 4-year column, typed here."""
    a = [-18.6, -1.43, -0.687, 0.24, -0.15, -1.8, -3.2]
    f = np.array([2e-4, 1e-3, 3e-3, 1e-2, 0.5])
    x = np.log10(f / 1e-3)
    expected = (10.0 ** np.polyval(a[::-1], x)) ** 2
    np.testing.assert_allclose(dwd.tianqin_confusion_noise(f, 4.0), expected, rtol=1e-12)
    assert float(dwd.tianqin_confusion_noise(5e-5, 4.0)) == 0.0  # outside the fitted band
    total = dwd.tianqin_psd(f, 4.0, confusion=True)
    np.testing.assert_allclose(total, dwd.tianqin_psd(f) + expected, rtol=1e-12)
    with pytest.raises(ValueError, match="T_obs"):
        dwd.tianqin_confusion_noise(f, 3.0)
