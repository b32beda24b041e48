r"""Cosmic strings: the stochastic GW background of a loop network, cusp bursts and CMB templates.

Parameters (every function accepts either the plain or the ``log10_`` key): the string tension
``Gmu`` (:math:`G\mu`), the initial loop size ``alpha`` (:math:`\ell_i = \alpha t_i`) and the
reconnection (intercommuting) probability ``p``, the three parameters forecast by
Kuroyanagi, Miyamoto, Sekiguchi, Takahashi & Silk (2013, PRD 87, 023522, arXiv:1210.2829).

SGWB from loops: the one-scale model
------------------------------------
Loops are chopped off the long-string network with one size :math:`\ell_i=\alpha t_i`, at the
rate of the velocity-dependent one-scale (VOS) scaling solution, and shrink by gravitational
radiation, :math:`\ell(t)=\alpha t_i-\Gamma G\mu\,(t-t_i)`. A loop radiates in harmonics
:math:`f_e = 2k/\ell` with power :math:`P_k = \Gamma_k G\mu^2`, :math:`\Gamma_k\propto k^{-4/3}`
(cusps). The background today is (Blanco-Pillado, Olum & Shlaer 2014; Cui, Lewicki, Morrissey &
Wells 2019, JHEP 01, 061, Eq. 2.8; Auclair et al. 2020, JCAP 04, 034)

.. math::
   \Omega_{\rm gw}(f) = \sum_{k=1}^{K}\frac{8\pi}{3H_0^2}\frac{2k}{f}
   \frac{\mathcal F_\alpha\,\Gamma_k\,(G\mu)^2}{p\,\alpha(\alpha+\Gamma G\mu)}
   \int_{t_*}^{t_0}\!d\tilde t\;\frac{C_{\rm eff}(t_i)}{t_i^4}
   \Big[\frac{a(\tilde t)}{a_0}\Big]^5\Big[\frac{a(t_i)}{a(\tilde t)}\Big]^3,\qquad
   t_i = \frac{\ell_* + \Gamma G\mu\,\tilde t}{\alpha+\Gamma G\mu},\quad
   \ell_* = \frac{2k\,a(\tilde t)}{f\,a_0},

where :math:`t_*` is the emission time at which the emitting loop was just born
(:math:`\ell_*=\alpha\tilde t`). Choices made here:

* :math:`\mathcal F_\alpha = 0.1` (the fraction of energy in large loops), :math:`\Gamma=50`,
  VOS loop-production efficiency :math:`C_{\rm eff} = 5.4` in the radiation era and 0.39 in the
  matter era (Cui et al. 2019), joined smoothly as :math:`C_r(1-w)+C_mw`,
  :math:`w=a_i/(a_i+a_{\rm eq})`;
* the loop number density scales as :math:`1/p` (Damour & Vilenkin 2005, PRD 71, 063510;
  the scaling used by Kuroyanagi et al.); in this model :math:`p` is a pure amplitude;
* :math:`K` harmonics (default 30) with :math:`\Gamma_k=\Gamma k^{-4/3}/\sum_{j\le K}j^{-4/3}`,
  so the total power is :math:`\Gamma` whatever :math:`K`;
* flat ΛCDM (Planck 2018: :math:`H_0=67.36`, :math:`\Omega_m=0.3153`, radiation from
  :math:`T_{\rm CMB}` and :math:`N_{\rm eff}=3.046`), no change of the relativistic degrees of
  freedom :math:`g_*` (which lowers the real plateau at :math:`f\gtrsim 10^{-2}`–1 Hz by
  tens of per cent).

**Quadrature.** The integral is taken over :math:`\ln\tilde t` from :math:`t_*` to
:math:`t_0` with composite Gauss–Legendre panels (8 nodes each). The lower limit moves
smoothly with :math:`\alpha` and :math:`f` (through the inverse table below), so ``jax``
differentiates the quadrature exactly (no step at a moving integration boundary). :math:`a(t)`
and the inverse :math:`t(a/t)` are cubic Hermite interpolants of a fine table of the ΛCDM
:math:`t(a)` with their exact slopes :math:`d\ln a/d\ln t = tH` (error ≪ 1e-8).

**Radiation-era plateau.** For loops born and dead in the radiation era the integral is
elementary (:math:`a\propto t^{1/2}`, :math:`\ell_*/\tilde t = x`): with
:math:`\varepsilon=\alpha/\Gamma G\mu`, every harmonic gives the same constant and

.. math::
   \Omega_{\rm plateau} = \frac{128\pi}{9}\,\frac{\mathcal F_\alpha C_r\,\Omega_r}{p}\,
   \frac{G\mu}{\varepsilon}\Big[(1+\varepsilon)^{3/2}-1\Big]
   \;\xrightarrow{\varepsilon\gg1}\;\frac{128\pi}{9}\frac{\mathcal F_\alpha C_r\Omega_r}{p}
   \sqrt{\frac{\alpha G\mu}{\Gamma}},

(:func:`omega_plateau`; the tests check the quadrature against it). Derivation: with
:math:`\kappa = 2H_0\Omega_r^{1/2}`, :math:`a=(\kappa t)^{1/2}` and
:math:`x=\ell_*/\tilde t`, the emission integral becomes
:math:`2C_r\kappa^2(2k/f)^{-1}(\alpha+\Gamma G\mu)^{5/2}\int_0^\alpha(x+\Gamma G\mu)^{-5/2}dx`
(flat in :math:`f`), and :math:`\sum_k\Gamma_k=\Gamma`. The same model written as a loop
density is :math:`n_r(\ell,t)=A_r/(t^{3/2}(\ell+\Gamma G\mu t)^{5/2})` with
:math:`A_r=\mathcal F_\alpha C_r(\alpha+\Gamma G\mu)^{3/2}/\alpha`, the form of
Blanco-Pillado, Olum & Shlaer (2014, PRD 89, 023512), in which the plateau reads
:math:`\frac{128\pi}{9}A_r\Omega_r\sqrt{G\mu/\Gamma}\,[1-(1+\varepsilon)^{-3/2}]/p`; for
α = 0.1 and ε ≫ 1, :math:`A_r = 0.171`, against the BOS simulation value 0.18 (tests). No
:math:`g_*` factor.

*Published form.* The analytic "Model I" of the LISA Cosmology Working Group
(Blanco-Pillado et al. 2025, JCAP 05, 006, arXiv:2405.03740), read in its public
transcription ``Mauropieroni/GWB_templates`` (``cosmic_string_model_i.py``), builds its
radiation-era term (Eq. A.18) on the amplitude of Eq. A.4, in our notation
:math:`\frac{128\pi}{9}\mathcal F_\alpha C_r\Omega_r G\mu(1+\varepsilon)^{3/2}/\varepsilon`,
with the VOS coefficient :math:`\tilde c\mathcal F v_r/(\sqrt2\xi_r^3)=0.5404` (here
:math:`\mathcal F_\alpha C_r=0.54`); its harmonic sum tends to 1 on the plateau, and below
:math:`\alpha=\Gamma G\mu\,\xi_r` it uses a small-loop form (after Eq. A.16) with
radiation part :math:`\frac{64\pi}{3}\mathcal F_\alpha C_r\Omega_rG\mu`. Ours is the first times
:math:`1-(1+\varepsilon)^{-3/2}` (that form has no cut at the birth limit ℓ = αt): equal to
3.2e-5 for ε ≥ 1e3, and tending to the second as ε → 0 (ratio 1 + ε/4). Other differences:
:math:`g_*` steps there, :math:`1/p` here, :math:`\Omega_r` 0.8 % higher here
(``docs/models_astro.md``).

GW bursts from cusps
--------------------
Each loop oscillation (period :math:`\ell/2`) has :math:`c` cusps (``n_cusps``, default 1),
each beaming a burst :math:`\tilde h(f) = A f^{-4/3}` into a cone of half-angle
:math:`\theta_m = ((1+z)f\ell)^{-1/3}` (so :math:`\theta_m\le1` needs :math:`(1+z)f\ell\ge1`),
with :math:`A = G\mu\,\ell^{2/3}/((1+z)^{1/3}r)`, :math:`r` the comoving distance (Damour &
Vilenkin 2001, PRD 64, 064008; Siemens et al. 2006, PRD 73, 105001, with their
:math:`g_1 = g_2 = 1`). The observed rate per :math:`\ln A` is (:func:`burst_rate`)

.. math::
   \frac{dR}{d\ln A} = \int\!dz\,\frac{dt}{dz}\,4\pi a^3r^2\;n(\ell,t)\;
   \frac{2c}{\ell}\,\frac{\theta_m^2}{4}\,\frac{3\ell}{2},\qquad
   \ell = \Big(\frac{A(1+z)^{1/3}r}{G\mu}\Big)^{3/2},

with the loop density :math:`n(\ell,t) = \mathcal F_\alpha C_{\rm eff}(t_i)\,
(a_i/a)^3/(p\,\alpha(\alpha+\Gamma G\mu)\,t_i^4)` of the SGWB integrand above (same
:math:`t_i`), so Gμ, α and p enter both probes the same way. The redshift runs from the
beaming limit :math:`(1+z)f\ell = 1` (nearby, small loops) to the birth limit
:math:`\ell=\alpha t` (far, newborn loops); both limits are smooth inverses of tabulated
monotone functions of :math:`\ln z` (cubic Hermite, exact slopes) and the integral is a
fixed Gauss–Legendre rule between them, so ``jax`` derivatives are exact.
:func:`burst_experiment` counts bursts in log-spaced amplitude bins above a threshold
:math:`A_{\rm thr}` (SNR :math:`\rho` of the matched filter against the detector PSD,
:func:`burst_threshold`) over :math:`T_{\rm obs}`, as Poisson counts.
Simplifications: every beamed burst above threshold is detected (no high-frequency
cut-off :math:`f_h\sim2/(\theta^3\ell)` of off-axis bursts, no efficiency curve), the beaming
is evaluated at one frequency :math:`f_*` per detector, no kinks, no rare-burst
(“confusion”) subtraction from the SGWB. Small loops (:math:`\varepsilon\ll1`): the counts
depend on :math:`\alpha p` and :math:`G\mu\,\alpha^{2/3}` only, up to the beaming cut and
:math:`O(\varepsilon)` (tests).

CMB B-mode template
-------------------
Long strings source vector and tensor perturbations, hence B-mode polarisation. Template
(illustrative shape and amplitude, of the order of published Nambu–Goto predictions; not a
fit): :math:`D_\ell^{BB} = A_B\,(G\mu/10^{-7})^2\,p^{-1/2}\,3u^2/(1+2u^3)`,
:math:`u=\ell/\ell_p`, with :math:`A_B = 0.01\,\mu{\rm K}^2` and :math:`\ell_p=600` (peak
:math:`A_B` at :math:`\ell_p`, :math:`\propto\ell^2` below, :math:`\propto\ell^{-1}` above).
The scaling: :math:`C_\ell\propto\mu^2/\xi` in the unconnected-segment picture, with the
correlation length :math:`\xi\propto p^{1/2}` when the long-string density scales as
:math:`1/p`; :math:`\alpha` does not enter (loops are negligible for the CMB). Noise: lensing
B-modes as white noise of 5 μK-arcmin (times a delensing residual), instrument white noise
:math:`\Delta_P` with a Gaussian beam, per-multipole variance
:math:`2C_{\rm tot}^2/((2\ell+1)f_{\rm sky})` (Knox 1995). The signal enters the error bar
through ``jax.lax.stop_gradient``, so the Fisher matrix is the standard
:math:`\sum_\ell\frac{(2\ell+1)f_{\rm sky}}{2}\partial_iC\,\partial_jC/C_{\rm tot}^2`.

Example
-------
>>> import fisherforecast as ff
>>> from fisherforecast.models import cosmic_strings as cs
>>> cmb = cs.cmb_experiment("CMB-S4")
>>> F = ff.fisher(cmb, cs.EXAMPLE_FIDUCIAL)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from . import sgwb
from ._astro_constants import MPC_SI, OMEGA_R_H2, YEAR_S
from ._values import Bound
from ._x64 import wrap_public

__all__ = [
    "BURST_SETUPS",
    "CMB_SETUPS",
    "C_EFF_MATTER",
    "C_EFF_RADIATION",
    "EXAMPLE_FIDUCIAL",
    "F_ALPHA",
    "GAMMA",
    "OMEGA_M",
    "OMEGA_R",
    "T0_S",
    "burst_experiment",
    "burst_rate",
    "burst_threshold",
    "cmb_bb_string",
    "cmb_experiment",
    "comoving_distance",
    "omega_gw",
    "omega_plateau",
    "scale_factor",
    "sgwb_experiment",
]

GAMMA = 50.0  # total GW power of a loop in units of G mu^2
F_ALPHA = 0.1  # fraction of the loop-production energy in large loops
C_EFF_RADIATION = 5.4  # VOS loop-production efficiency, radiation era (Cui et al. 2019)
C_EFF_MATTER = 0.39  # ... matter era
H0_KM_S_MPC = sgwb.DEFAULT_H0_KM_S_MPC
H0_S = H0_KM_S_MPC * 1.0e3 / MPC_SI  # [1/s]
_h = H0_KM_S_MPC / 100.0
OMEGA_R = OMEGA_R_H2 / _h**2
OMEGA_M = 0.3153  # Planck 2018 (A&A 641, A6, Table 2)
OMEGA_L = 1.0 - OMEGA_M - OMEGA_R
A_EQ = OMEGA_R / OMEGA_M

#: A fiducial where the three kinds of probe each see the strings (see examples/cosmic_strings.py).
EXAMPLE_FIDUCIAL = {"Gmu": 5.0e-8, "alpha": 1.0e-9, "p": 0.5}


# -----------------------------------------------------------------------------------------
# Background cosmology: t(a) table and smooth interpolants
# -----------------------------------------------------------------------------------------
def _hubble(a):
    return H0_S * np.sqrt(OMEGA_R / a**4 + OMEGA_M / a**3 + OMEGA_L)


def _time_table(n=4000, ln_a_min=-80.0):
    """ln t at a uniform grid of ln a (t from the big bang, seconds), by 8-point
    Gauss-Legendre per interval of dt/dln a = 1/H, started from the radiation-era t(a)."""
    ln_a = np.linspace(ln_a_min, 0.0, n)
    x, w = np.polynomial.legendre.leggauss(8)
    lo, hi = ln_a[:-1], ln_a[1:]
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    nodes = mid[:, None] + half[:, None] * x[None, :]
    steps = half * np.sum(w[None, :] / _hubble(np.exp(nodes)), axis=1)
    a_min = math.exp(ln_a_min)
    t_start = a_min**2 / (2.0 * H0_S * math.sqrt(OMEGA_R))  # radiation domination
    t = t_start + np.concatenate([[0.0], np.cumsum(steps)])
    return ln_a, np.log(t), t * _hubble(np.exp(ln_a))  # ln a, ln t, d ln a / d ln t


_LN_A, _LN_T, _SLOPE = _time_table()
T0_S = float(np.exp(_LN_T[-1]))  # age of the universe [s]
# Forward table ln t -> ln a; inverse table q = ln(a/t) -> ln t (q decreases with t).
_Q = _LN_A - _LN_T
_Q_UP, _LNT_OF_Q, _DLNT_DQ = _Q[::-1], _LN_T[::-1], (1.0 / (_SLOPE - 1.0))[::-1]


def _hermite(x, xs, ys, ds):
    """Cubic Hermite interpolation (values ys, slopes ds at increasing nodes xs): C¹ in x."""
    xs, ys, ds = jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(ds)
    i = jnp.clip(jnp.searchsorted(xs, x) - 1, 0, xs.shape[0] - 2)
    x0, x1 = xs[i], xs[i + 1]
    h = x1 - x0
    u = (x - x0) / h
    h00 = (1.0 + 2.0 * u) * (1.0 - u) ** 2
    h10 = u * (1.0 - u) ** 2
    h01 = u**2 * (3.0 - 2.0 * u)
    h11 = u**2 * (u - 1.0)
    return h00 * ys[i] + h10 * h * ds[i] + h01 * ys[i + 1] + h11 * h * ds[i + 1]


def scale_factor(t):
    """Scale factor a(t) of the flat ΛCDM background (t in seconds since the big bang).

    Example
    -------
    >>> round(float(scale_factor(T0_S)), 10)
    1.0
    """
    return jnp.exp(_hermite(jnp.log(t), _LN_T, _LN_A, _SLOPE))


def _ln_t_of_q(q):
    return _hermite(q, _Q_UP, _LNT_OF_Q, _DLNT_DQ)


def _value(params, name):
    if name in params:
        return params[name]
    key = f"log10_{name}"
    if key in params:
        return 10.0 ** params[key]
    raise KeyError(f"cosmic-string parameters need {name!r} or {key!r}; received {list(params)}")


# -----------------------------------------------------------------------------------------
# SGWB
# -----------------------------------------------------------------------------------------
def omega_plateau(params):
    """Analytic radiation-era plateau (one-scale model, pure radiation; module docstring).

    Example
    -------
    >>> x = float(omega_plateau({"Gmu": 1e-7, "alpha": 1e-9, "p": 1.0}))
    >>> 1e-10 < x < 1e-9
    True
    """
    gmu, alpha, p = _value(params, "Gmu"), _value(params, "alpha"), _value(params, "p")
    eps = alpha / (GAMMA * gmu)
    bracket = jnp.expm1(1.5 * jnp.log1p(eps))  # (1 + eps)^{3/2} - 1 without cancellation
    return 128.0 * math.pi / 9.0 * F_ALPHA * C_EFF_RADIATION * OMEGA_R / p * gmu / eps * bracket


def _panel_rule(n_panels, order=8):
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(0.0, 1.0, n_panels + 1)
    lo, width = edges[:-1], np.diff(edges)
    s = (lo[:, None] + 0.5 * width[:, None] * (x[None, :] + 1.0)).ravel()
    ws = (0.5 * width[:, None] * w[None, :]).ravel()
    return s, ws


def _mode_integral(f_eff, gmu, alpha, nodes, weights):
    """(8π/3H0²)(2/f') F ∫ dt̃ C_eff t_i⁻⁴ ã⁵ (a_i/ã)³ for unit Γ_k, at f' = f/k (any shape)."""
    g = GAMMA * gmu
    ln_t0 = _LN_T[-1]
    # Lower limit: the emitting loop was just born, ℓ* = 2ã/f' = α t̃, i.e. ln(ã/t̃) = q*.
    # When q* lies beyond today there are no loops at f': the interval is empty.
    q_star = jnp.maximum(jnp.log(alpha) + jnp.log(f_eff / 2.0), _Q_UP[0])
    lo = _ln_t_of_q(q_star)
    span = ln_t0 - lo
    ln_t = lo[..., None] + span[..., None] * nodes
    ln_a = _hermite(ln_t, _LN_T, _LN_A, _SLOPE)
    ln_lstar = math.log(2.0) + ln_a - jnp.log(f_eff)[..., None]
    ln_ti = jnp.logaddexp(ln_lstar, jnp.log(g) + ln_t) - jnp.log(alpha + g)
    ln_ai = _hermite(ln_ti, _LN_T, _LN_A, _SLOPE)
    a_i = jnp.exp(ln_ai)
    c_eff = C_EFF_RADIATION + (C_EFF_MATTER - C_EFF_RADIATION) * a_i / (a_i + A_EQ)
    log_integrand = 2 * ln_a + 3 * ln_ai - 4 * ln_ti + ln_t  # dt̃ = t̃ d ln t̃
    integral = span * jnp.sum(weights * c_eff * jnp.exp(log_integrand), axis=-1)
    return 8.0 * math.pi / (3.0 * H0_S**2) * (2.0 / f_eff) * F_ALPHA * integral


def omega_gw(params, f, *, n_modes=30, n_panels=16):
    """Ω_gw(f) of the loop network (one-scale model; module docstring), differentiable in
    ``Gmu``, ``alpha`` and ``p``.

    Parameters
    ----------
    params: dict with ``Gmu``, ``alpha``, ``p`` (or their ``log10_`` keys).
    f: frequencies today [Hz], any shape.
    n_modes: number of harmonics K; n_panels: Gauss-Legendre panels (8 nodes each).

    Example
    -------
    >>> import jax, numpy as np
    >>> fid = {"Gmu": 1e-7, "alpha": 1e-9, "p": 1.0}
    >>> with jax.enable_x64(True):   # your own jit: float64 is yours to switch on
    ...     high = float(jax.jit(omega_gw)(fid, np.array([100.0]))[0])  # one compilation
    >>> round(high / float(omega_plateau(fid)), 2)   # radiation-era plateau
    1.0
    """
    gmu, alpha, p = _value(params, "Gmu"), _value(params, "alpha"), _value(params, "p")
    f = jnp.asarray(f)
    k = np.arange(1, n_modes + 1, dtype=float)
    gamma_k = GAMMA * k ** (-4.0 / 3.0) / np.sum(k ** (-4.0 / 3.0))
    nodes, weights = _panel_rule(n_panels)
    f_eff = f[..., None] / k  # (..., K)
    per_mode = _mode_integral(f_eff, gmu, alpha, nodes, weights)
    amplitude = gmu**2 / (p * alpha * (alpha + GAMMA * gmu))
    return amplitude * jnp.sum(gamma_k * per_mode, axis=-1)


def sgwb_experiment(detector="LISA", *, n_modes=30, n_panels=16, **kwargs):
    """``ff.Experiment`` for the binned Ω_gw estimator of ``detector`` ("LISA", "ground" or
    "PTA") with :func:`omega_gw` as the spectrum.

    "LISA" and "ground" are :func:`fisherforecast.models.sgwb.experiment` (its toy noise
    curves and Gaussian estimator: auto-correlation with the signal in the error bar for
    LISA, weak-signal cross-correlation for the ground pair). The PTA of ``sgwb`` assumes a
    weak signal, which a string background at the PTA's level is not; here its error bar
    keeps the signal's own variance, ``σ_k = (Ω + Ω_p)/√(2TΔf N_pairs χ̄²)`` with
    Ω_p one pulsar's noise in Ω units and χ̄² = 1/48: the
    weak-signal limit is ``sgwb``'s, the strong-signal limit is the cosmic-variance floor
    shared by the pairs (a heuristic form of Siemens et al. 2013, CQG 30, 224015; pair
    correlations neglected).

    ``kwargs`` go to ``sgwb.experiment`` / :func:`~fisherforecast.models.sgwb.omega_noise`
    (``t_obs_years``, ``f_bins``, ``n_pulsars``, ...).

    Example
    -------
    >>> exp = sgwb_experiment("PTA", n_modes=5)
    >>> exp.name, exp.design.shape
    ('PTA', (30,))
    """
    spectrum = Bound(omega_gw, n_modes=int(n_modes), n_panels=int(n_panels))
    if detector != "PTA":
        return sgwb.experiment(detector, spectrum=spectrum, **kwargs)  # pyright: ignore[reportArgumentType]
    n_pulsars = kwargs.pop("n_pulsars", 50)
    t_obs_s = kwargs.pop("t_obs_years", 15.0) * YEAR_S
    name = kwargs.pop("name", "PTA")
    f = np.arange(1, 31) / t_obs_s
    df = np.full_like(f, 1.0 / t_obs_s)
    pairs = n_pulsars * (n_pulsars - 1) / 2.0 * sgwb.HELLINGS_DOWNS_MEAN_SQUARE
    omega_eff = sgwb.omega_noise("PTA", f, n_pulsars=n_pulsars, **kwargs)
    sigma = Bound(
        _pta_sigma,
        model=spectrum,
        omega_pulsar=omega_eff * math.sqrt(pairs),
        n_modes=2.0 * t_obs_s * df * pairs,
    )
    return ff.Experiment(spectrum, ff.Gaussian(sigma=sigma), design=f, name=name)


def _pta_sigma(params, f, *, model, omega_pulsar, n_modes):
    # The signal sets the error bar but carries no information of its own (as in sgwb).
    return (jax.lax.stop_gradient(model(params, f)) + omega_pulsar) / jnp.sqrt(n_modes)


# -----------------------------------------------------------------------------------------
# GW bursts from cusps
# -----------------------------------------------------------------------------------------
# Redshift table for the burst rate on a uniform grid of y = ln z: comoving distance r(z)
# in light-seconds (8-point Gauss-Legendre per interval of dr/dy = z/H), ln t(z) from the
# t(a) table, and the two increasing combinations u(y), v(y) whose inverses are the
# integration limits of burst_rate (all with their exact slopes, for C¹ Hermite forms).
_Y_MIN, _Y_MAX = math.log(1e-12), 79.0


def _hermite_np(x, xs, ys, ds):
    """numpy twin of :func:`_hermite` for the import-time tables (no JAX, no x64 switch)."""
    i = np.clip(np.searchsorted(xs, x) - 1, 0, xs.shape[0] - 2)
    h = xs[i + 1] - xs[i]
    u = (x - xs[i]) / h
    return (
        (1.0 + 2.0 * u) * (1.0 - u) ** 2 * ys[i]
        + u * (1.0 - u) ** 2 * h * ds[i]
        + u**2 * (3.0 - 2.0 * u) * ys[i + 1]
        + u**2 * (u - 1.0) * h * ds[i + 1]
    )


def _burst_table(n=4000):
    y = np.linspace(_Y_MIN, _Y_MAX, n)
    x, w = np.polynomial.legendre.leggauss(8)
    mid, half = 0.5 * (y[:-1] + y[1:]), 0.5 * np.diff(y)
    nodes = np.exp(mid[:, None] + half[:, None] * x[None, :])
    steps = half * np.sum(w[None, :] * nodes / _hubble(1.0 / (1.0 + nodes)), axis=1)
    z = np.exp(y)
    q0 = 0.5 * OMEGA_M + OMEGA_R - OMEGA_L  # deceleration today: r = z(1 - (1+q0)z/2)/H0
    r = z[0] / H0_S * (1.0 - 0.5 * (1.0 + q0) * z[0]) + np.concatenate([[0.0], np.cumsum(steps)])
    ln_1pz = np.log1p(z)
    ln_t = _hermite_np(-ln_1pz, _LN_A, _LN_T, 1.0 / _SLOPE)
    hz = _hubble(1.0 / (1.0 + z))
    dlnr = z / (r * hz)
    dlnt = -z / ((1.0 + z) * hz * np.exp(ln_t))
    u = np.log(r) + ln_1pz / 3.0 - 2.0 / 3.0 * ln_t
    du = dlnr + z / (3.0 * (1.0 + z)) - 2.0 / 3.0 * dlnt
    v = np.log(r) + ln_1pz
    dv = dlnr + z / (1.0 + z)
    return y, np.log(r), dlnr, ln_t, dlnt, u, 1.0 / du, v, 1.0 / dv


_BY, _BLNR, _BDLNR, _BLNT, _BDLNT, _BU, _BDYDU, _BV, _BDYDV = _burst_table()


def _inverse(target, xs, ys, ds):
    """y(x) from the Hermite table; below the table y - y₀ = x - x₀ (du/dy, dv/dy → 1 as
    z → 0), above it the last node (earlier emission is negligible)."""
    inside = _hermite(jnp.clip(target, xs[0], xs[-1]), xs, ys, ds)
    return jnp.where(target < xs[0], ys[0] + (target - xs[0]), inside)


def comoving_distance(z):
    """Comoving distance to redshift ``z`` [light-seconds] in the module's ΛCDM background.

    Example
    -------
    >>> from fisherforecast.models._astro_constants import MPC_SI, C_SI
    >>> round(float(comoving_distance(1.0)) * C_SI / MPC_SI, -1)   # Planck 2018 ΛCDM [Mpc]
    3400.0
    """
    return jnp.exp(_hermite(jnp.log(z), _BY, _BLNR, _BDLNR))


def _burst_rate_ln(ln_amp, gmu, alpha, p, ln_f, n_cusps, nodes, weights):
    g = GAMMA * gmu
    # Emission redshifts with a burst of amplitude A: from the beaming limit (1+z) f ℓ = 1
    # (nearby, small loops) to the birth limit ℓ = α t (far, newborn loops).
    y_lo = _inverse(jnp.log(gmu) - 2.0 / 3.0 * ln_f - ln_amp, _BV, _BY, _BDYDV)
    y_hi = _inverse(jnp.log(gmu) + 2.0 / 3.0 * jnp.log(alpha) - ln_amp, _BU, _BY, _BDYDU)
    span = jnp.maximum(y_hi - y_lo, 0.0)
    y = y_lo[..., None] + span[..., None] * nodes
    ln_r = _hermite(y, _BY, _BLNR, _BDLNR)
    ln_t = _hermite(y, _BY, _BLNT, _BDLNT)
    z = jnp.exp(y)
    ln_1pz = jnp.log1p(z)
    ln_ell = 1.5 * (ln_amp[..., None] + ln_r + ln_1pz / 3.0 - jnp.log(gmu))
    ln_ti = jnp.logaddexp(ln_ell, jnp.log(g) + ln_t) - jnp.log(alpha + g)
    ln_ai = _hermite(ln_ti, _LN_T, _LN_A, _SLOPE)
    a_i = jnp.exp(ln_ai)
    c_eff = C_EFF_RADIATION + (C_EFF_MATTER - C_EFF_RADIATION) * a_i / (a_i + A_EQ)
    ln_h = jnp.log(H0_S) + 0.5 * jnp.log(
        OMEGA_R * jnp.exp(4 * ln_1pz) + OMEGA_M * jnp.exp(3 * ln_1pz) + OMEGA_L
    )
    ln_n = jnp.log(F_ALPHA * c_eff / (p * alpha * (alpha + g))) - 4 * ln_ti + 3 * ln_ai
    ln_n = ln_n + 3 * ln_1pz  # physical density at t̃: (a_i/ã)³
    log_integrand = (
        y
        - ln_1pz
        - ln_h  # dt̃ = z dy / ((1+z) H)
        - 3 * ln_1pz
        + 2 * ln_r
        + math.log(4 * math.pi)  # proper volume / (1+z)
        + ln_n
        + jnp.log(0.75 * n_cusps)
        - 2.0 / 3.0 * (ln_1pz + ln_f + ln_ell)  # (2c/ℓ)(θ²/4)(dℓ/d ln A = 3ℓ/2)
    )
    return span * jnp.sum(weights * jnp.exp(log_integrand), axis=-1)


def burst_rate(params, amplitude, *, f_star, n_cusps=1.0, n_panels=24):
    r"""Observed rate of cusp bursts per unit :math:`\ln A` [1/s] at burst amplitude(s)
    ``amplitude`` [s^-1/3], beamed at frequency ``f_star`` [Hz] (module docstring).

    Example
    -------
    >>> import functools, jax
    >>> fid = {"Gmu": 5e-8, "alpha": 1e-9, "p": 0.5}
    >>> with jax.enable_x64(True):   # your own jit: float64 is yours to switch on
    ...     rate_fn = jax.jit(functools.partial(burst_rate, f_star=50.0))   # one compilation
    ...     rate = float(rate_fn(fid, 1e-21)[0]) * 3.15576e7   # per year and per unit ln A
    >>> 0.5 < rate < 2.0
    True
    """
    gmu, alpha, p = _value(params, "Gmu"), _value(params, "alpha"), _value(params, "p")
    nodes, weights = _panel_rule(int(n_panels))
    ln_amp = jnp.log(jnp.atleast_1d(jnp.asarray(amplitude)))
    return _burst_rate_ln(ln_amp, gmu, alpha, p, math.log(f_star), n_cusps, nodes, weights)


#: Burst detectors: strain PSD, band [Hz] for the matched-filter SNR, default observing time.
BURST_SETUPS = {
    "ground": {"band": (10.0, 2000.0), "t_obs_years": 1.0},
    "LISA": {"band": (1.0e-5, 1.0), "t_obs_years": 4.0},
}


def _burst_psd(detector, f):
    from .dwd import lisa_psd
    from .gw import psd_aligo_zdhp

    if detector == "ground":
        return np.asarray(psd_aligo_zdhp(f))
    return np.asarray(lisa_psd(f, confusion=False))


def burst_threshold(detector="ground", *, snr=5.0):
    r"""Amplitude threshold and beaming frequency of a cusp search: ``(A_thr, f_star)``.

    A cusp waveform :math:`\tilde h(f) = A f^{-4/3}` has matched-filter SNR
    :math:`\rho^2 = 4A^2\int df\, f^{-8/3}/S_n(f)` over the band of :data:`BURST_SETUPS`
    (no high-frequency cut-off); ``A_thr`` gives ``ρ = snr``. ``f_star`` is the frequency
    where :math:`f\cdot f^{-8/3}/S_n` peaks (most SNR per log frequency): the beaming angle
    is evaluated there.

    Example
    -------
    >>> a_thr, f_star = burst_threshold("ground")
    >>> round(a_thr * 1e22, 1), round(f_star)
    (2.6, 47)
    """
    if detector not in BURST_SETUPS:
        raise ValueError(f"detector must be one of {sorted(BURST_SETUPS)}; received {detector!r}")
    if not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be positive and finite; received {snr!r}")
    lo, hi = BURST_SETUPS[detector]["band"]
    f = np.geomspace(lo, hi, 4000)
    weight = f ** (-8.0 / 3.0) / _burst_psd(detector, f)
    snr2_unit = 4.0 * np.trapezoid(weight * f, np.log(f))
    return float(snr / math.sqrt(snr2_unit)), float(f[np.argmax(weight * f)])


def _burst_counts(params, amplitude, *, ln_edges, f_star, n_cusps, t_obs_s, n_panels):
    gmu, alpha, p = _value(params, "Gmu"), _value(params, "alpha"), _value(params, "p")
    x, w = np.polynomial.legendre.leggauss(6)  # per amplitude bin, in ln A
    lo, width = ln_edges[:-1], np.diff(ln_edges)
    ln_amp = lo[:, None] + 0.5 * width[:, None] * (x[None, :] + 1.0)
    nodes, weights = _panel_rule(n_panels)
    rate = _burst_rate_ln(
        jnp.asarray(ln_amp), gmu, alpha, p, math.log(f_star), n_cusps, nodes, weights
    )
    return t_obs_s * jnp.sum(0.5 * width[:, None] * w[None, :] * rate, axis=-1)


def burst_experiment(
    detector="ground",
    *,
    snr=5.0,
    t_obs_years=None,
    n_bins=6,
    decades=3.0,
    n_cusps=1.0,
    n_panels=8,
    name=None,
):
    """``ff.Experiment``: Poisson counts of cusp bursts in log-spaced amplitude bins from the
    threshold of :func:`burst_threshold` up to ``decades`` decades above it.

    ``detector`` is "ground" (Advanced LIGO design PSD, 1 yr) or "LISA" (4 yr);
    ``n_cusps`` is the number of cusps per loop oscillation; ``n_panels`` the Gauss-Legendre
    panels (8 nodes each) of the redshift integral. The counts are
    ``T ∫_bin d ln A`` :func:`burst_rate` (6 Gauss-Legendre nodes per bin).

    Example
    -------
    >>> exp = burst_experiment("LISA", n_bins=4)
    >>> exp.name, exp.design.shape
    ('LISA bursts', (4,))
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; received {n_bins!r}")
    if not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be positive and finite; received {decades!r}")
    if not (math.isfinite(n_cusps) and n_cusps > 0):
        raise ValueError(f"n_cusps must be positive and finite; received {n_cusps!r}")
    a_thr, f_star = burst_threshold(detector, snr=snr)
    years = BURST_SETUPS[detector]["t_obs_years"] if t_obs_years is None else t_obs_years
    if not (math.isfinite(years) and years > 0):
        raise ValueError(f"t_obs_years must be positive and finite; received {t_obs_years!r}")
    ln_edges = math.log(a_thr) + np.linspace(0.0, decades * math.log(10.0), int(n_bins) + 1)
    centres = np.exp(0.5 * (ln_edges[:-1] + ln_edges[1:]))
    model = Bound(
        _burst_counts,
        ln_edges=ln_edges,
        f_star=f_star,
        n_cusps=float(n_cusps),
        t_obs_s=float(years) * YEAR_S,
        n_panels=int(n_panels),
    )
    return ff.Experiment(model, ff.Poisson(), design=centres, name=name or f"{detector} bursts")


# -----------------------------------------------------------------------------------------
# CMB
# -----------------------------------------------------------------------------------------
ARCMIN = math.pi / 10800.0

#: Toy experiments: polarisation noise [μK-arcmin], beam FWHM [arcmin], f_sky, ℓ range.
CMB_SETUPS = {
    "Planck": {"noise_uk_arcmin": 60.0, "beam_arcmin": 5.0, "f_sky": 0.7, "ell": (30, 2000)},
    "CMB-S4": {"noise_uk_arcmin": 1.0, "beam_arcmin": 1.4, "f_sky": 0.4, "ell": (30, 3000)},
}
LENSING_B_UK_ARCMIN = 5.0  # lensing B-modes ≈ white noise at this level (ℓ ≲ 2000)
BB_TEMPLATE_AMPLITUDE_UK2 = 0.01  # D_ℓ peak at Gμ = 1e-7, p = 1 [μK²]
BB_TEMPLATE_PEAK_ELL = 600.0


def cmb_bb_string(params, ell):
    """String B-mode power C_ℓ [μK²] of the template in the module docstring.

    Example
    -------
    >>> import numpy as np
    >>> c = cmb_bb_string({"Gmu": 1e-7, "p": 1.0}, np.array([600.0]))
    >>> round(float(c[0] * 600 * 601 / (2 * np.pi)), 6)   # D_ℓ at the peak
    0.01
    """
    gmu, p = _value(params, "Gmu"), _value(params, "p")
    ell = jnp.asarray(ell)
    u = ell / BB_TEMPLATE_PEAK_ELL
    d_ell = BB_TEMPLATE_AMPLITUDE_UK2 * (gmu / 1e-7) ** 2 * p**-0.5 * 3 * u**2 / (1 + 2 * u**3)
    return d_ell * 2.0 * math.pi / (ell * (ell + 1.0))


def _cmb_model(params, ell, *, lensing):
    return cmb_bb_string(params, ell) + lensing


def _cmb_sigma(params, ell, *, lensing, noise, modes):
    total = jax.lax.stop_gradient(cmb_bb_string(params, ell)) + lensing + noise
    return total * jnp.sqrt(2.0 / modes)


def cmb_experiment(setup="CMB-S4", *, n_bins=40, delensing_residual=1.0, name=None):
    """``ff.Experiment`` for band powers of the string B-mode spectrum.

    ``setup`` is a key of :data:`CMB_SETUPS` or a dict with the same entries. Bins are
    log-spaced in ℓ; a bin of width Δℓ at centre ℓ has (2ℓ+1)Δℓ f_sky modes.
    ``delensing_residual`` scales the lensing B-mode power (1: no delensing).

    Example
    -------
    >>> exp = cmb_experiment("Planck", n_bins=10)
    >>> exp.name, exp.design.shape
    ('Planck', (10,))
    """
    conf = CMB_SETUPS[setup] if isinstance(setup, str) else dict(setup)
    lo, hi = conf["ell"]
    edges = np.geomspace(lo, hi, n_bins + 1)
    ell = np.sqrt(edges[:-1] * edges[1:])
    width = np.diff(edges)
    beam = conf["beam_arcmin"] * ARCMIN / math.sqrt(8.0 * math.log(2.0))
    noise = (conf["noise_uk_arcmin"] * ARCMIN) ** 2 * np.exp(ell * (ell + 1.0) * beam**2)
    lensing = delensing_residual * (LENSING_B_UK_ARCMIN * ARCMIN) ** 2 * np.ones_like(ell)
    modes = (2.0 * ell + 1.0) * width * conf["f_sky"]
    model = Bound(_cmb_model, lensing=lensing)
    sigma = Bound(_cmb_sigma, lensing=lensing, noise=noise, modes=modes)
    label = name or (setup if isinstance(setup, str) else "CMB")
    return ff.Experiment(model, ff.Gaussian(sigma=sigma), design=ell, name=label)


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
