"""The cosmic-string zoo entry against independent answers.

* the background: the age of the universe by scipy quadrature, a(t) by an independent ODE
  solve (scipy DOP853) of d ln a / d ln t = t H;
* the SGWB: the radiation-era plateau against its closed form (derived in the module
  docstring), approached as 1/f; the closed form against the published LISA CosWG Model I
  amplitude (arXiv:2405.03740, Eq. A.4 and the small-loop form after Eq. A.16, as
  transcribed in Mauropieroni/GWB_templates) and, by energy balance, against the BOS loop
  density; the full ΛCDM spectrum of one harmonic against scipy adaptive quadrature over
  emission time with the ODE a(t);
* the Fisher matrices of the PTA, LISA, ground and CMB experiments against a 7-point central
  finite-difference Jacobian in numpy with the noise metric written out here; the CMB
  matrix against its closed form;
* the cusp-burst rate against scipy adaptive quadrature over redshift of the rate integral
  written out here (limits by brentq, t(z) and r(z) by quadrature, a(t) by the ODE), the
  amplitude threshold against scipy quadrature of the PSD, the Poisson Fisher matrix against
  finite differences and its weak direction against the small-loop scaling.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest
from scipy import integrate, optimize

import fisherforecast as ff
from fisherforecast.models import cosmic_strings as cs

H0 = cs.H0_S
LOG10_FID = {f"log10_{k}": math.log10(v) for k, v in cs.EXAMPLE_FIDUCIAL.items()}


@functools.cache
def _jitted_spectrum(n_modes):
    return jax.jit(functools.partial(cs.omega_gw, n_modes=n_modes))


def spectrum(params, f, n_modes=5):
    """cs.omega_gw compiled once per n_modes (op-by-op dispatch would compile every op)."""
    with jax.enable_x64(True):
        params = {k: np.float64(v) for k, v in params.items()}
        return np.asarray(_jitted_spectrum(n_modes)(params, np.asarray(f, dtype=np.float64)))


def hubble(a):
    return H0 * math.sqrt(cs.OMEGA_R / a**4 + cs.OMEGA_M / a**3 + cs.OMEGA_L)


def age(a):
    """t(a) by adaptive quadrature of dt = d ln a / H from a radiation-era start."""
    a0 = 1e-20
    start = a0**2 / (2 * H0 * math.sqrt(cs.OMEGA_R))
    val, _ = integrate.quad(
        lambda x: 1.0 / hubble(math.exp(x)),
        math.log(a0),
        math.log(a),
        epsabs=0.0,
        epsrel=1e-13,
        limit=400,
    )
    return start + val


@pytest.fixture(scope="module")
def ode_scale_factor():
    """ln a(ln t) from an ODE solve, independent of the module's table."""
    t_start = 1e-40**2 / (2 * H0 * math.sqrt(cs.OMEGA_R))

    def rhs(lnt, lna):
        return [math.exp(lnt) * hubble(math.exp(lna[0]))]

    sol = integrate.solve_ivp(
        rhs,
        (math.log(t_start), math.log(cs.T0_S) + 0.01),
        [math.log(1e-40)],
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
        dense_output=True,
    )
    return lambda t: math.exp(float(sol.sol(math.log(t))[0]))


def test_age_and_scale_factor(ode_scale_factor):
    assert cs.T0_S == pytest.approx(age(1.0), rel=1e-9)
    assert cs.T0_S / (365.25 * 86400 * 1e9) == pytest.approx(13.8, abs=0.05)  # Planck 2018
    with jax.enable_x64(True):
        for t in (1e-10, 1.0, 1e12, 1e16, 3e17):
            assert float(cs.scale_factor(t)) == pytest.approx(ode_scale_factor(t), rel=1e-8)


@pytest.mark.parametrize(
    ("gmu", "alpha"), [(1e-7, 1e-9), (1e-9, 5e-8), (1e-11, 1e-3), (1e-11, 0.1)]
)
def test_plateau_matches_closed_form(gmu, alpha):
    """ε = α/ΓGμ from 2e-4 to 2e8: the spectrum tends to the analytic plateau as ~1/f
    (the matter-era correction), to < 1e-6 at 1 kHz."""
    fid = {"Gmu": gmu, "alpha": alpha, "p": 0.3}
    eps = alpha / (cs.GAMMA * gmu)
    closed = (
        128
        * math.pi
        / 9
        * cs.F_ALPHA
        * cs.C_EFF_RADIATION
        * cs.OMEGA_R
        / 0.3
        * gmu
        / eps
        * ((1 + eps) ** 1.5 - 1)
    )
    with jax.enable_x64(True):
        assert float(cs.omega_plateau(fid)) == pytest.approx(closed, rel=1e-12)
        f = np.array([10.0, 100.0, 1000.0])
        # Σ_k Γ_k = Γ for any number of harmonics, so every K has the same plateau.
        dev = spectrum(fid, f) / closed - 1.0
    assert 0 < dev[2] < 1e-6
    assert 8 < dev[0] / dev[1] < 15 and 8 < dev[1] / dev[2] < 15  # roughly ∝ 1/f


def test_plateau_limits():
    small = {"Gmu": 1e-7, "alpha": 1e-14, "p": 1.0}  # ε ≪ 1: (3/2) Gμ, no α
    large = {"Gmu": 1e-12, "alpha": 0.1, "p": 1.0}  # ε ≫ 1: √(α Gμ / Γ)
    pre = 128 * math.pi / 9 * cs.F_ALPHA * cs.C_EFF_RADIATION * cs.OMEGA_R
    with jax.enable_x64(True):
        assert float(cs.omega_plateau(small)) == pytest.approx(pre * 1.5e-7, rel=1e-6)
        assert float(cs.omega_plateau(large)) == pytest.approx(
            pre * math.sqrt(0.1 * 1e-12 / cs.GAMMA), rel=1e-4
        )


@pytest.mark.parametrize("alpha", [1e-12, 1e-8, 0.1])
def test_plateau_in_the_bos_loop_density_form(alpha):
    """The one-scale radiation-era loop density is n = A_r / (t^(3/2) (ℓ + ΓGμ t)^(5/2)) with
    A_r = F C_r (α + ΓGμ)^(3/2) / α (Blanco-Pillado, Olum & Shlaer 2014 form): the energy
    radiated by that density (power ΓGμ² per loop, scipy over ℓ, pure radiation) against
    the closed form; and for α = 0.1 their simulated A_r = 0.18 is within 6 % of the
    model's 0.171. (0.18 and the cut ℓ < 0.1 t as transcribed in lscsoft/lalsuite,
    lalburst/python/lalburst/cs_gamma.c, loop model "Blanco-Pillado14": radiation-era
    density 0.18 t^{-3/2} (ℓ + ΓGμ t)^{-5/2}.)"""
    gmu, p = 1e-9, 0.7
    g = cs.GAMMA * gmu
    a_r = cs.F_ALPHA * cs.C_EFF_RADIATION * (alpha + g) ** 1.5 / alpha
    # ρ_gw today from the power Γ Gμ² of every loop, redshifted as a⁴ (a = (κt)^(1/2)):
    # Ω = (8π/3H0²) ∫ dt a(t)⁴ Γ (Gμ)² ∫_0^{αt} dℓ n(ℓ, t) / p, all from the radiation era.
    # The ℓ-integral is elementary, ∝ t^(-3): ∫_0^{αt} (ℓ + g t)^(-5/2) dℓ.
    kappa = 2 * H0 * math.sqrt(cs.OMEGA_R)

    def per_time(lnt):
        t = math.exp(lnt)
        ell_part, _ = integrate.quad(  # ℓ = u t, over s = ln(u + g)
            lambda s: math.exp(-1.5 * s), math.log(g), math.log(alpha + g), epsabs=0.0, epsrel=1e-12
        )
        n_total = a_r / t**1.5 * t**-1.5 * ell_part  # ∫ dℓ n = A_r t^(-3) ∫ du (u+g)^(-5/2)
        return t * (kappa * t) ** 2 * cs.GAMMA * gmu**2 * n_total / p

    # a⁴ ∝ t² makes ρ_gw grow by the same amount per ln t of emission. For any fixed ℓ/t
    # the observed frequency f = (2k/ℓ) a ∝ t^(-1/2), so dρ/d ln f = 2 dρ/d ln t: the
    # plateau from energy balance alone, without the emission integral of omega_gw.
    omega = 8 * math.pi / (3 * H0**2) * 2 * per_time(0.0)
    with jax.enable_x64(True):
        closed = float(cs.omega_plateau({"Gmu": gmu, "alpha": alpha, "p": p}))
    eps = alpha / g
    bos = 128 * math.pi / 9 * a_r * cs.OMEGA_R * math.sqrt(gmu / cs.GAMMA)
    assert closed == pytest.approx(bos * (1 - (1 + eps) ** -1.5) / p, rel=1e-12)
    assert omega == pytest.approx(closed, rel=1e-9)
    if alpha == 0.1:
        assert a_r == pytest.approx(0.171, abs=1e-3)
        assert abs(a_r / 0.18 - 1) < 0.06


# VOS scaling constants of "Model I" of the LISA Cosmology Working Group (Blanco-Pillado et
# al. 2025, JCAP 05, 006, arXiv:2405.03740) as transcribed in the public template code
# Mauropieroni/GWB_templates, src/gwb_templates/cosmic_string_templates/
# cosmic_string_model_i.py (module constants _c_tilde, _xi_r, _v_r, _xi_m, _v_m).
VOS_C_TILDE, VOS_XI_R, VOS_V_R = 0.23, 0.2711082721253275, 0.6620623102615658
VOS_XI_M, VOS_V_M = 0.6253627, 0.5825118


def test_plateau_against_the_published_model_i():
    """The closed-form plateau against the radiation-era amplitude of the LISA CosWG Model I
    (Blanco-Pillado et al. 2025, JCAP 05, 006, arXiv:2405.03740), in the transcription of
    Mauropieroni/GWB_templates (cosmic_string_model_i.py): Eq. A.4 gives the coefficient
    C_i = c̃ F v_i / (√2 ξ_i³) and the radiation-era prefactor
    C_r (128π/9) Ω_r Gμ (1 + ε)^{3/2} / ε with ε = α/ΓGμ; the radiation term (Eq. A.18,
    without the g_* steps) reduces to that prefactor on the plateau; below the branch
    α = ΓGμ ξ_r the template uses the small-loop formula after Eq. A.16, whose
    radiation part is (64π/3) C_r Ω_r Gμ. Known differences: that model has p = 1 (ours
    scales as 1/p) and g_* steps (none here); its large-loop form has no subtraction at
    the loop-birth limit ℓ = αt, so ours = published × [1 − (1 + ε)^{-3/2}] exactly,
    which is < 3.2e-5 away for ε ≥ 1e3; for ε → 0 ours tends to the small-loop form."""
    c_r = VOS_C_TILDE * cs.F_ALPHA * VOS_V_R / (math.sqrt(2) * VOS_XI_R**3)
    c_m = VOS_C_TILDE * cs.F_ALPHA * VOS_V_M / (math.sqrt(2) * VOS_XI_M**3)
    # Same VOS loop-production efficiencies: C_r = F·C_eff(radiation), C_m = F·C_eff(matter).
    assert c_r == pytest.approx(cs.F_ALPHA * cs.C_EFF_RADIATION, rel=1e-3)
    assert c_m == pytest.approx(cs.F_ALPHA * cs.C_EFF_MATTER, rel=1e-2)
    ours_c = cs.F_ALPHA * cs.C_EFF_RADIATION  # the published forms below with our constants
    gmus = np.logspace(-17, -7, 11)
    with jax.enable_x64(True):
        for gmu in gmus:
            small_form = 64 * math.pi / 3 * ours_c * cs.OMEGA_R * gmu
            for eps in (1e-6, 1e-3, 0.3, 1.0, 10.0, 1e3, 1e6, 0.1 / (cs.GAMMA * gmu)):
                alpha = eps * cs.GAMMA * gmu
                large_form = 128 * math.pi / 9 * ours_c * cs.OMEGA_R * gmu * (1 + eps) ** 1.5 / eps
                ours = float(cs.omega_plateau({"Gmu": gmu, "alpha": alpha, "p": 1.0}))
                assert ours / large_form == pytest.approx(1 - (1 + eps) ** -1.5, rel=1e-10)
                if eps >= 1e3:
                    assert abs(ours / large_form - 1) < 3.2e-5
                if eps <= 1e-3:
                    assert 0 < ours / small_form - 1 < 0.26 * eps  # (2/3)((1+ε)^{3/2}-1)/ε
                # p is a pure amplitude here (the published model is p = 1).
                ours_p = float(cs.omega_plateau({"Gmu": gmu, "alpha": alpha, "p": 0.2}))
                assert ours_p == pytest.approx(ours / 0.2, rel=1e-12)


@pytest.mark.slow
def test_one_harmonic_spectrum_against_scipy_quadrature(ode_scale_factor):
    """Full ΛCDM, matter-era peak and radiation tail, k = 1, against adaptive quadrature over
    ln t̃ of the emission integral (module docstring) with the ODE a(t)."""
    gmu, alpha, p = 1e-9, 1e-6, 0.5
    g = cs.GAMMA * gmu
    a_of = ode_scale_factor

    def c_eff(a):
        w = a / (a + cs.OMEGA_R / cs.OMEGA_M)
        return cs.C_EFF_RADIATION * (1 - w) + cs.C_EFF_MATTER * w

    def omega(f):
        def integrand(lnt):
            t = math.exp(lnt)
            a = a_of(t)
            ti = (2 * a / f + g * t) / (alpha + g)
            ai = a_of(ti)
            return t * c_eff(ai) * a**2 * ai**3 / ti**4

        # birth of the emitting loop: 2 a(t)/f = α t
        lnt_star = optimize.brentq(
            lambda x: math.log(2 * a_of(math.exp(x)) / f) - x - math.log(alpha),
            -130.0,
            math.log(cs.T0_S),
            xtol=1e-14,
        )
        val, _ = integrate.quad(
            integrand, lnt_star, math.log(cs.T0_S), epsabs=0.0, epsrel=1e-10, limit=400
        )
        amp = gmu**2 / (p * alpha * (alpha + g)) * cs.GAMMA * cs.F_ALPHA
        return 8 * math.pi / (3 * H0**2) * (2 / f) * amp * val

    freqs = np.array([1e-11, 1e-10, 1e-9, 1e-7, 1e-4])
    with jax.enable_x64(True):
        ours = spectrum({"Gmu": gmu, "alpha": alpha, "p": p}, freqs, n_modes=1)
    ref = np.array([omega(f) for f in freqs])
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert ref[1] > 5 * ref[-1]  # the matter-era peak stands above the plateau


def test_p_and_gmu_scalings():
    with jax.enable_x64(True):
        f = np.array([1e-8, 1e-5, 1e2])  # the plateau test's shape: no new compilation
        a = spectrum({"Gmu": 1e-8, "alpha": 1e-7, "p": 1.0}, f)
        b = spectrum({"Gmu": 1e-8, "alpha": 1e-7, "p": 0.01}, f)
        np.testing.assert_allclose(b, 100 * a, rtol=1e-13)  # n_loops ∝ 1/p
        ell = np.array([100.0, 600.0, 2000.0])
        c1 = np.asarray(cs.cmb_bb_string({"Gmu": 1e-7, "p": 1.0}, ell))
        c2 = np.asarray(cs.cmb_bb_string({"log10_Gmu": -6.0, "p": 0.25}, ell))
        np.testing.assert_allclose(c2, 100 * 2 * c1, rtol=1e-13)  # (Gμ)² p^(-1/2)


# -----------------------------------------------------------------------------------------
# Fisher matrices against 7-point finite differences
# -----------------------------------------------------------------------------------------
STENCIL = ((1, 45.0), (2, -9.0), (3, 1.0))


def fd_jacobian(call, fid, names, h):
    cols = []
    for n in names:
        acc = 0.0
        for k, c in STENCIL:
            up, down = dict(fid), dict(fid)
            up[n] += k * h
            down[n] -= k * h
            acc = acc + c * (call(up) - call(down))
        cols.append(acc / (60.0 * h))
    return np.stack(cols, axis=-1)


def evaluator(fn):
    with jax.enable_x64(True):
        jitted = jax.jit(fn)

    def call(params):
        with jax.enable_x64(True):
            return np.asarray(jitted({k: np.float64(v) for k, v in params.items()}))

    return call


def noise_sigma(exp):
    """The experiment's Gaussian σ at the fiducial (a callable σ is evaluated there)."""
    noise = exp.noise
    if noise.sigma_fn is not None:
        return np.asarray(noise.sigma_fn(LOG10_FID, exp.design))
    return np.broadcast_to(np.asarray(noise.sigma), exp.design.shape)


@pytest.mark.parametrize(
    "detector",
    [
        pytest.param("PTA", marks=pytest.mark.slow),
        pytest.param("LISA", marks=pytest.mark.slow),
        "ground",
        pytest.param("CMB-S4", marks=pytest.mark.slow),  # closed form below covers it
    ],
)
def test_fisher_against_finite_differences(detector):
    if detector == "CMB-S4":
        exp = cs.cmb_experiment(detector)
    else:
        exp = cs.sgwb_experiment(detector, n_modes=5, n_panels=8)
    names = tuple(LOG10_FID)
    F = ff.fisher(exp, LOG10_FID)
    mean = evaluator(lambda p: exp.model(p, exp.design))
    # 2e-4 dex: small enough that no PTA bin crosses a harmonic's cut-off 2k/(α t0) within
    # the stencil (the spectrum has a kink there), large enough for round-off ~1e-12.
    J = fd_jacobian(mean, LOG10_FID, names, 2e-4)
    with jax.enable_x64(True):
        sigma = noise_sigma(exp)
    ref = J.T @ (J / sigma[:, None] ** 2)
    d = np.sqrt(np.diag(ref))
    d = np.where(d > 0, d, 1.0)
    np.testing.assert_allclose(np.diag(F.matrix), np.diag(ref), rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(F.matrix / np.outer(d, d), ref / np.outer(d, d), atol=1e-6)


def test_cmb_fisher_closed_form_is_rank_one():
    exp = cs.cmb_experiment("CMB-S4")
    F = ff.fisher(exp, LOG10_FID)
    with jax.enable_x64(True):
        ell = exp.design
        c_s = np.asarray(cs.cmb_bb_string(cs.EXAMPLE_FIDUCIAL, ell))
        sigma = noise_sigma(exp)
    # ∂C/∂log10 Gμ = 2 ln10 C_s, ∂C/∂log10 p = −½ ln10 C_s, ∂C/∂α = 0.
    grad = np.stack([2 * math.log(10) * c_s, 0 * c_s, -0.5 * math.log(10) * c_s], axis=1)
    np.testing.assert_allclose(
        F.matrix, grad.T @ (grad / sigma[:, None] ** 2), rtol=1e-10, atol=1e-12
    )
    # only 2 log10 Gμ − ½ log10 p is measured: rank 1.
    w = np.linalg.eigvalsh(F.matrix)
    assert w[1] < 1e-12 * w[2]


@pytest.mark.slow
def test_each_probe_alone_is_degenerate_and_the_combination_is_not():
    probes = {
        "PTA": cs.sgwb_experiment("PTA", n_modes=5, n_panels=8),
        "LISA": cs.sgwb_experiment("LISA", n_modes=5, n_panels=8),
        "CMB": cs.cmb_experiment("CMB-S4"),
    }
    fishers = {k: ff.fisher(e, LOG10_FID) for k, e in probes.items()}
    for label, F in fishers.items():
        assert F.condition_number > 1e8, label
    total = fishers["PTA"] + fishers["LISA"] + fishers["CMB"]
    assert total.condition_number < 1e6
    # The GW probes see Gμ/p (the loop density ∝ 1/p times the emitted power ∝ Gμ):
    # their weakest direction moves ln Gμ and ln p together, at fixed Gμ/p.
    _, V = np.linalg.eigh(fishers["LISA"].matrix)
    weak = V[:, 0] / np.max(np.abs(V[:, 0]))
    assert abs(weak[0] - weak[2]) < 1e-3 and abs(weak[1]) < 1e-3


def test_rebuilt_experiment_does_not_recompile():
    """Equal constructor calls give equal models (models._values.Bound): the second Fisher
    matrix reuses the first one's kernel, with no new trace."""
    import contextlib

    @contextlib.contextmanager
    def count_traces():
        counts = {"trace": 0}

        def listener(event, duration_secs, **kwargs):
            if event == "/jax/core/compile/jaxpr_trace_duration":
                counts["trace"] += 1

        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            yield counts
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)

    first = ff.fisher(cs.sgwb_experiment("ground", n_modes=5, n_panels=8), LOG10_FID)
    with count_traces() as counts:
        again = ff.fisher(cs.sgwb_experiment("ground", n_modes=5, n_panels=8), LOG10_FID)
    assert counts["trace"] == 0
    np.testing.assert_array_equal(first.matrix, again.matrix)


# -----------------------------------------------------------------------------------------
# GW bursts from cusps
# -----------------------------------------------------------------------------------------
def comoving(z):
    """Comoving distance [light-seconds] by adaptive quadrature of dz/H over ln z."""
    val, _ = integrate.quad(
        lambda x: math.exp(x) / hubble(1.0 / (1.0 + math.exp(x))),
        math.log(z) - 30.0,
        math.log(z),
        epsabs=0.0,
        epsrel=1e-12,
        limit=400,
    )
    return val + z * math.exp(-30.0) / H0


def test_comoving_distance():
    with jax.enable_x64(True):
        for z in (1e-6, 0.1, 1.0, 1100.0, 1e8):
            assert float(cs.comoving_distance(z)) == pytest.approx(comoving(z), rel=1e-8)


def test_burst_threshold_against_quadrature():
    """ρ² = 4A²∫ f^(-8/3)/S_n df by scipy over the band: A_thr = 5/√(that for A = 1)."""
    from fisherforecast.models.gw import psd_aligo_zdhp

    val, _ = integrate.quad(
        lambda x: math.exp(x) ** (-5.0 / 3.0) / float(psd_aligo_zdhp(math.exp(x))),
        math.log(10.0),
        math.log(2000.0),
        epsabs=0.0,
        epsrel=1e-10,
        limit=200,
    )
    a_thr, f_star = cs.burst_threshold("ground", snr=5.0)
    assert a_thr == pytest.approx(5.0 / math.sqrt(4.0 * val), rel=1e-5)
    assert 40.0 < f_star < 55.0  # the aLIGO bucket weighted by f^(-5/3)
    assert cs.burst_threshold("ground", snr=10.0)[0] == pytest.approx(2 * a_thr, rel=1e-12)
    with pytest.raises(ValueError, match="'LIGO'"):
        cs.burst_threshold("LIGO")
    with pytest.raises(ValueError, match=r"snr.*-1"):
        cs.burst_threshold("LISA", snr=-1.0)


def reference_burst_rate(amp, gmu, alpha, p, f, a_of, n_cusps=1.0):
    """dN/(dT d ln A) written out from the loop density n(ℓ, t̃) of the SGWB integrand, the
    cusp rate 2c/ℓ, the beamed fraction θ²/4 with θ = ((1+z) f ℓ)^(-1/3) ≤ 1 and the
    amplitude A = Gμ ℓ^(2/3) / ((1+z)^(1/3) r): adaptive quadrature over ln z between the
    limits found by brentq, with t(z) and r(z) by quadrature and a(t_i) by the ODE."""
    g = cs.GAMMA * gmu
    t_of_z = functools.cache(lambda z: age(1.0 / (1.0 + z)))
    r_of_z = functools.cache(comoving)

    def ell(z):
        return (amp * r_of_z(z) * (1 + z) ** (1 / 3) / gmu) ** 1.5

    lo = optimize.brentq(
        lambda y: math.log((1 + math.exp(y)) * f * ell(math.exp(y))), -40, 60, xtol=1e-13
    )
    hi = optimize.brentq(
        lambda y: math.log(ell(math.exp(y)) / (alpha * t_of_z(math.exp(y)))), -40, 60, xtol=1e-13
    )

    def integrand(y):
        z = math.exp(y)
        a = 1 / (1 + z)
        t, r, length = t_of_z(z), r_of_z(z), ell(z)
        ti = (length + g * t) / (alpha + g)
        ai = a_of(ti)
        w = ai / (ai + cs.OMEGA_R / cs.OMEGA_M)
        c_eff = cs.C_EFF_RADIATION * (1 - w) + cs.C_EFF_MATTER * w
        n = cs.F_ALPHA * c_eff / (p * alpha * (alpha + g) * ti**4) * (ai / a) ** 3
        volume = 4 * math.pi * a**3 * r**2 * z * a / hubble(a)  # per dy, over (1+z)
        per_loop = 2 * n_cusps / length * 0.25 * ((1 + z) * f * length) ** (-2 / 3)
        return volume * n * per_loop * 1.5 * length  # dℓ = (3/2) ℓ d ln A

    val, _ = integrate.quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-9, limit=400)
    return val


@pytest.mark.parametrize(
    ("gmu", "alpha", "f", "amps"),
    [
        (5e-8, 1e-9, 47.0, (3e-22, 1e-20, 1e-18)),  # the example: small loops, ε = 4e-4
        (1e-10, 1e-2, 3.5e-3, (1e-24, 1e-21)),  # large loops, ε = 2e6, LISA band
    ],
)
def test_burst_rate_against_scipy_quadrature(ode_scale_factor, gmu, alpha, f, amps):
    fid = {"Gmu": gmu, "alpha": alpha, "p": 0.5}
    with jax.enable_x64(True):
        ours = np.asarray(cs.burst_rate(fid, np.array(amps), f_star=f))
    ref = np.array([reference_burst_rate(a, gmu, alpha, 0.5, f, ode_scale_factor) for a in amps])
    np.testing.assert_allclose(ours, ref, rtol=1e-7)


def test_burst_counts_scale_as_cusps_over_p():
    base = cs.burst_experiment("ground", n_bins=3)
    more = cs.burst_experiment("ground", n_bins=3, n_cusps=2.0)
    a = evaluator(lambda p: base.model(p, base.design))(cs.EXAMPLE_FIDUCIAL)
    b = evaluator(lambda p: more.model(p, more.design))({**cs.EXAMPLE_FIDUCIAL, "p": 0.125})
    np.testing.assert_allclose(b, 8 * a, rtol=1e-12)  # rate ∝ c/p
    assert np.all(np.diff(a) < 0)  # fewer loud bursts
    for bad in ({"n_bins": 0}, {"decades": -1.0}, {"n_cusps": 0.0}, {"t_obs_years": math.nan}):
        (key, value), *_ = bad.items()
        with pytest.raises(ValueError, match=f"{key}.*{value}"):
            cs.burst_experiment("ground", **bad)


def test_burst_fisher_against_finite_differences():
    exp = cs.burst_experiment("LISA")
    names = tuple(LOG10_FID)
    F = ff.fisher(exp, LOG10_FID)
    mean = evaluator(lambda p: exp.model(p, exp.design))
    J = fd_jacobian(mean, LOG10_FID, names, 1e-3)
    lam = mean(LOG10_FID)
    ref = J.T @ (J / lam[:, None])  # Poisson: Σ ∂λ ∂λ / λ
    d = np.sqrt(np.diag(ref))
    np.testing.assert_allclose(np.diag(F.matrix), np.diag(ref), rtol=1e-7)
    np.testing.assert_allclose(F.matrix / np.outer(d, d), ref / np.outer(d, d), atol=1e-7)
    # Small loops (ε = α/ΓGμ ≪ 1) live ≪ t: n ≈ F C/(p α ΓGμ t⁴) for ℓ < αt, the cusp rate
    # times the beamed fraction is ∝ ℓ^(-5/3) ∝ Gμ/A per d ln A, and the farthest source has
    # ℓ = αt, i.e. A ∝ Gμ α^(2/3). So the counts depend on α p and Gμ α^(2/3) only (up to
    # the beaming cut on nearby tiny loops and O(ε)): the weak direction is
    # δ log(Gμ, α, p) ∝ (2/3, -1, 1).
    _, V = np.linalg.eigh(F.matrix)
    weak = V[:, 0] / -V[1, 0]
    np.testing.assert_allclose(weak, [2 / 3, -1.0, 1.0], atol=5e-3)
