r"""Stochastic gravitational-wave background (SGWB): spectra, toy sensitivities, Fisher setup.

Spectra (energy density per log frequency in units of the critical density)
--------------------------------------------------------------------------
* power law: :math:`\Omega_{\rm gw}(f) = 10^{\log_{10}\Omega_{\rm ref}}(f/f_{\rm ref})^{\alpha}`
  (parameters ``log10_Omega``, ``alpha``; ``f_ref`` fixed);
* smoothly broken power law (the form used e.g. by Caprini et al. 2020, JCAP 03, 024):
  :math:`\Omega = \Omega_b (f/f_b)^{n_1}\big[\tfrac12(1 + (f/f_b)^{\Delta})\big]^{(n_2-n_1)/\Delta}`
  with :math:`\Omega(f_b) = \Omega_b`, slopes :math:`n_1` (:math:`f\ll f_b`) and :math:`n_2`
  (:math:`f\gg f_b`); parameters ``log10_Omega_b``, ``log10_fb``, ``n1``, ``n2`` and
  optional ``delta`` (default 2).

Noise in :math:`\Omega` units
-----------------------------
A strain PSD converts as :math:`\Omega_n(f) = \frac{2\pi^2}{3H_0^2}f^3S_n(f)` (Thrane &
Romano 2013, PRD 88, 124032), with :math:`H_0 = 67.36` km/s/Mpc by default.  Toy detectors:

* ``"LISA"``: Robson, Cornish & Liu (2019) sky-averaged instrument noise (no galactic
  foreground) used in auto-correlation;
* ``"ground"``: a co-located, co-aligned pair of Advanced-LIGO detectors (Ajith 2011 PSD)
  in cross-correlation, :math:`\Omega_{\rm eff} = \Omega_n/|\gamma|` with overlap
  :math:`\gamma = 1` by default (optimistic: the real H1-L1 overlap is < 0.9 and oscillates
  to zero above ~60 Hz);
* ``"PTA"``: :math:`N_p` identical pulsars with white timing noise :math:`\sigma_t` at cadence
  :math:`\Delta t`: :math:`S_i = 12\pi^2f^2\cdot2\Delta t\,\sigma_t^2` and
  :math:`S_{\rm eff} = [\sum_{i<j}\chi_{ij}^2/(S_iS_j)]^{-1/2} = S_i/\sqrt{N_{\rm pairs}
  \overline{\chi^2}}`, with the Hellings-Downs rms :math:`\overline{\chi^2} = 1/48` for
  isotropic pairs (Hazboun, Romano & Smith 2019, PRD 100, 104028; no red noise).

Fisher matrix
-------------
Per frequency bin :math:`k` (centre :math:`f_k`, width :math:`\Delta f_k`, observing time
:math:`T`) the estimator :math:`\hat\Omega_k` is treated as Gaussian with

* auto-correlation (signal and noise in one data stream):
  :math:`\sigma_k = (\Omega(f_k) + \Omega_n(f_k))/\sqrt{T\Delta f_k}`, giving
  :math:`F_{ij} = T\sum_k\Delta f_k\,\partial_i\Omega\,\partial_j\Omega/(\Omega+\Omega_n)^2`
  (the standard LISA SGWB Fisher form, e.g. Kuroyanagi, Chang & Tsumura 2018; Flauger et
  al. 2021, JCAP 01, 059).  The sigma is a callable that uses ``jax.lax.stop_gradient``
  on :math:`\Omega`: the noise is evaluated at the Fisher point but carries no parameter
  information, so the engine reproduces exactly the formula above (no spurious
  :math:`2\sum(\partial\sigma)^2/\sigma^2` term);
* cross-correlation in the weak-signal limit (Allen & Romano 1999, PRD 59, 102001):
  :math:`\sigma_k = \Omega_{\rm eff}(f_k)/\sqrt{2T\Delta f_k}`, i.e.
  :math:`F_{ij} = 2T\sum_k\Delta f_k\,\partial_i\Omega\,\partial_j\Omega/\Omega_{\rm eff}^2`,
  whose :math:`\ln\Omega`-element is the squared optimal SNR of Thrane & Romano (2013).
  PTAs are signal-dominated in their lowest bins, where this limit overstates the
  information; the PTA setting is a toy.

Example
-------
>>> import fisherforecast as ff
>>> from fisherforecast.models import sgwb
>>> exp = sgwb.experiment("LISA", spectrum="power_law", f_ref=1e-3)
>>> fm = ff.fisher(exp, {"log10_Omega": -12.0, "alpha": 2.0 / 3.0})  # doctest: +SKIP
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._astro_constants import MPC_SI, YEAR_S
from ._values import Bound
from ._x64 import wrap_public
from .dwd import lisa_psd
from .gw import frequency_grid, psd_aligo_zdhp

__all__ = [
    "DEFAULT_H0_KM_S_MPC",
    "HELLINGS_DOWNS_MEAN_SQUARE",
    "experiment",
    "hellings_downs",
    "omega_broken_power_law",
    "omega_noise",
    "omega_power_law",
    "power_law_integrated_sensitivity",
    "strain_psd_to_omega",
]

DEFAULT_H0_KM_S_MPC = 67.36  # Planck 2018 (A&A 641, A6, Table 2)

#: Mean of the squared Hellings-Downs curve over isotropically distributed pulsar pairs:
#: int_0^1 [3/2 x ln x - x/4 + 1/2]^2 dx = 1/48 (x = (1 - cos zeta)/2 is uniform).
HELLINGS_DOWNS_MEAN_SQUARE = 1.0 / 48.0

_BANDS = {  # default (fmin, fmax) [Hz], number of bins, correlation mode
    "LISA": (1.0e-4, 1.0e-1, 60, "auto"),
    "ground": (20.0, 500.0, 60, "cross"),
}


def omega_power_law(params, f, f_ref=25.0):
    """Power-law spectrum 10**log10_Omega * (f/f_ref)**alpha.

    Example
    -------
    >>> round(float(omega_power_law({"log10_Omega": -9.0, "alpha": 0.0}, 100.0)) * 1e9, 5)
    1.0
    """
    return 10.0 ** params["log10_Omega"] * (jnp.asarray(f) / f_ref) ** params["alpha"]


def omega_broken_power_law(params, f):
    """Smoothly broken power law; Omega(f_b) = 10**log10_Omega_b.

    Example
    -------
    >>> p = {"log10_Omega_b": -10.0, "log10_fb": -3.0, "n1": 3.0, "n2": -4.0}
    >>> round(float(omega_broken_power_law(p, 1e-3)) * 1e10, 5)
    1.0
    """
    f = jnp.asarray(f)
    delta = params.get("delta", 2.0)
    x = f / 10.0 ** params["log10_fb"]
    n1, n2 = params["n1"], params["n2"]
    return 10.0 ** params["log10_Omega_b"] * x**n1 * (0.5 * (1.0 + x**delta)) ** ((n2 - n1) / delta)


def strain_psd_to_omega(f, s_n, h0_km_s_mpc=DEFAULT_H0_KM_S_MPC):
    """Omega_n(f) = 2 pi^2 f^3 S_n / (3 H0^2).

    Example
    -------
    >>> 1e-12 < float(strain_psd_to_omega(3e-3, 3e-40)) < 1e-10
    True
    """
    h0 = h0_km_s_mpc * 1.0e3 / MPC_SI
    return 2.0 * math.pi**2 * np.asarray(f) ** 3 * np.asarray(s_n) / (3.0 * h0**2)


def hellings_downs(zeta):
    """Hellings-Downs correlation for distinct pulsars, normalised to 1/2 at zeta -> 0.

    Example
    -------
    >>> round(float(hellings_downs(1e-3)), 4)
    0.5
    """
    x = 0.5 * (1.0 - np.cos(zeta))
    return 1.5 * x * np.log(x) - 0.25 * x + 0.5


def omega_noise(
    detector,
    f,
    *,
    n_pulsars=50,
    cadence_days=14.0,
    sigma_timing_ns=100.0,
    overlap=1.0,
    h0_km_s_mpc=DEFAULT_H0_KM_S_MPC,
):
    """Toy noise / effective sensitivity in Omega units for "LISA", "ground" or "PTA".

    See the module docstring for the three definitions.  ``n_pulsars``, ``cadence_days``
    and ``sigma_timing_ns`` set the PTA; ``overlap`` divides the ground-pair noise.

    Example
    -------
    >>> import numpy as np
    >>> omega_noise("PTA", np.array([1e-8])).shape
    (1,)
    """
    f = np.asarray(f, dtype=float)
    if detector == "LISA":
        s_n = np.asarray(lisa_psd(f, confusion=False))
        return strain_psd_to_omega(f, s_n, h0_km_s_mpc)
    if detector == "ground":
        s_n = np.asarray(psd_aligo_zdhp(f))
        return strain_psd_to_omega(f, s_n, h0_km_s_mpc) / np.abs(overlap)
    if detector == "PTA":
        cadence = cadence_days * 86400.0
        white = 2.0 * cadence * (sigma_timing_ns * 1e-9) ** 2  # residual PSD [s^2/Hz]
        s_pulsar = 12.0 * math.pi**2 * f**2 * white
        n_pairs = n_pulsars * (n_pulsars - 1) / 2.0
        s_eff = s_pulsar / math.sqrt(n_pairs * HELLINGS_DOWNS_MEAN_SQUARE)
        return strain_psd_to_omega(f, s_eff, h0_km_s_mpc)
    raise ValueError("detector must be 'LISA', 'ground' or 'PTA'")


def power_law_integrated_sensitivity(
    f, omega_eff, t_obs_s, *, snr=1.0, df=None, alphas=None, f_ref=None, cross=True
):
    """Power-law-integrated sensitivity curve (Thrane & Romano 2013), numpy.

    For each slope beta, the amplitude giving ``snr`` is
    Omega_beta = snr / sqrt(c T sum df (f/f_ref)^(2 beta) / Omega_eff^2) (c = 2 for cross-,
    1 for auto-correlation in the weak-signal limit); the curve is max_beta of
    Omega_beta (f/f_ref)^beta.

    Example
    -------
    >>> import numpy as np
    >>> f = np.geomspace(20, 500, 200)
    >>> pls = power_law_integrated_sensitivity(f, omega_noise("ground", f), 3.15e7)
    >>> pls.shape
    (200,)
    """
    f = np.asarray(f, dtype=float)
    omega_eff = np.asarray(omega_eff, dtype=float)
    if df is None:
        df = np.gradient(f)
    alphas = np.linspace(-8.0, 8.0, 321) if alphas is None else np.asarray(alphas)
    f_ref = math.sqrt(f[0] * f[-1]) if f_ref is None else f_ref
    factor = 2.0 if cross else 1.0
    shape = (f[None, :] / f_ref) ** alphas[:, None]
    amp = snr / np.sqrt(factor * t_obs_s * np.sum(df * shape**2 / omega_eff**2, axis=1))
    return np.max(amp[:, None] * shape, axis=0)


def _bins(detector, f_bins, t_obs_s):
    if f_bins is not None:
        f_bins = np.asarray(f_bins, dtype=float)
        return f_bins, np.gradient(f_bins)
    if detector == "PTA":
        # Fourier frequencies k/T, k = 1..30, width 1/T.
        f = np.arange(1, 31) / t_obs_s
        return f, np.full_like(f, 1.0 / t_obs_s)
    fmin, fmax, n, _ = _BANDS[detector]
    return frequency_grid(fmin, fmax, n)


def experiment(
    detector="LISA",
    spectrum="power_law",
    *,
    t_obs_years=None,
    f_bins=None,
    f_ref=None,
    correlation=None,
    name=None,
    **noise_kwargs,
):
    """``ff.Experiment`` for the binned Omega_gw estimator with Gaussian errors.

    Parameters
    ----------
    detector: "LISA", "ground" or "PTA" (toy sensitivities, see :func:`omega_noise`).
    spectrum: "power_law", "broken_power_law" or a callable ``(params, f) -> Omega``.
    t_obs_years: default 4 (LISA), 1 (ground), 15 (PTA).
    f_bins: bin centres [Hz]; default log-spaced bins in the band (PTA: k/T).
    f_ref: reference frequency of the power law (default: geometric band centre).
    correlation: "auto" (default for LISA) or "cross" (default for ground and PTA).
    noise_kwargs: passed to :func:`omega_noise` (e.g. ``n_pulsars``, ``overlap``).

    Example
    -------
    >>> exp = experiment("PTA", t_obs_years=15.0)
    >>> exp.design.shape
    (30,)
    """
    if detector not in ("LISA", "ground", "PTA"):
        raise ValueError("detector must be 'LISA', 'ground' or 'PTA'")
    default_t = {"LISA": 4.0, "ground": 1.0, "PTA": 15.0}[detector]
    t_obs_s = (default_t if t_obs_years is None else t_obs_years) * YEAR_S
    f, df = _bins(detector, f_bins, t_obs_s)
    omega_n = omega_noise(detector, f, **noise_kwargs)
    if correlation is None:
        correlation = "auto" if detector == "LISA" else "cross"

    if callable(spectrum):
        model = spectrum
    elif spectrum == "power_law":
        f_ref = math.sqrt(f[0] * f[-1]) if f_ref is None else f_ref
        model = Bound(_power_law_model, f_ref=float(f_ref))
    elif spectrum == "broken_power_law":
        model = omega_broken_power_law
    else:
        raise ValueError("spectrum must be 'power_law', 'broken_power_law' or a callable")

    if correlation == "cross":
        sigma = omega_n / np.sqrt(2.0 * t_obs_s * df)
    elif correlation == "auto":
        sigma = Bound(_auto_sigma, model=model, omega_n=omega_n, n_modes=t_obs_s * df)
    else:
        raise ValueError("correlation must be 'auto' or 'cross'")
    return ff.Experiment(model, ff.Gaussian(sigma=sigma), design=f, name=name or detector)


def _power_law_model(params, f, *, f_ref):
    return omega_power_law(params, f, f_ref)


def _auto_sigma(params, f, *, model, omega_n, n_modes):
    # Signal variance enters the error bar but not the information (see module docstring).
    return (jax.lax.stop_gradient(model(params, f)) + omega_n) / jnp.sqrt(n_modes)


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
