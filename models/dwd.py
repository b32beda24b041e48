r"""Galactic double white dwarfs: quasi-monochromatic sources for LISA- and TianQin-like detectors.

Signal
------
A slowly chirping circular binary, :math:`h_+ = A\frac{1+\cos^2\iota}{2}\cos\Phi(t)`,
:math:`h_\times = A\cos\iota\,\sin\Phi(t)`, :math:`\Phi = 2\pi f_0t + \pi\dot f t^2 + \phi_0`
for :math:`t\in[0, T_{\rm obs}]`; for a GR-driven binary
:math:`A = 4(G\mathcal M)^{5/3}(\pi f_0)^{2/3}/(c^4d)` and
:math:`\dot f = \frac{96}{5}\pi^{8/3}(G\mathcal M/c^3)^{5/3}f_0^{11/3}` (e.g. Maggiore 2008,
Eqs. 4.3 and 4.20; :func:`amplitude_gr`, :func:`fdot_gr`).

Response and noise
------------------
Sky- and polarisation-averaged response folded into the sensitivity curve, as in Robson,
Cornish & Liu (2019, CQG 36, 105011): with their :math:`S_n(f)` (two Michelson-like
channels, 10/3 factor), :math:`\rho^2 = 4\int(|\tilde h_+|^2 + |\tilde h_\times|^2)/S_n\,df`
and the same form for the Fisher matrix.  LISA orbital Doppler/amplitude modulation is not
modelled, so sky position and polarisation angle do not enter (psi would be exactly
degenerate); this is the usual "sky-averaged" forecast.  The signal occupies a band of
width ~ :math:`\dot fT + 1/T` around :math:`f_0`, over which :math:`S_n` is taken constant.

Narrow-band signals are represented at base band: with a fixed reference frequency
:math:`f_{\rm ref}` (the fiducial :math:`f_0`), :math:`h_{+,\times}(t) =
\mathrm{Re}[H_{+,\times}(t)e^{2\pi if_{\rm ref}t}]`,

.. math::

    H_+ = A\frac{1+\cos^2\iota}{2}e^{i\varphi(t)},\quad H_\times = -iA\cos\iota\,e^{i\varphi(t)},
    \quad \varphi = 2\pi(f_0 - f_{\rm ref})t + \pi\dot ft^2 + \phi_0 .

Then :math:`4\,\mathrm{Re}\int\partial_i\tilde h^*\partial_j\tilde h/S_n\,df \simeq
\frac{1}{S_n(f_{\rm ref})}\mathrm{Re}\int\partial_iH^*\partial_jH\,dt`.  The model output is the
real array [Re H+, Im H+, Re Hx, Im Hx] on N times spaced by :math:`\Delta t`, with white
Gaussian noise :math:`\sigma^2 = S_n(f_{\rm ref})/\Delta t` on each quadrature (the
variance of demodulated, low-passed and decimated detector noise), so the Gaussian Fisher
:math:`\sum\partial_i\mu\,\partial_j\mu/\sigma^2` is the integral above (midpoint rule).

Sensitivity curves (one-sided, sky-averaged, 1/Hz):

* :func:`lisa_psd` - Robson, Cornish & Liu (2019): arm length 2.5 Gm,
  :math:`P_{\rm OMS} = (1.5\times10^{-11}\,\mathrm m)^2[1+(2\,\mathrm{mHz}/f)^4]`,
  :math:`P_{\rm acc} = (3\times10^{-15}\,\mathrm{m\,s^{-2}})^2[1+(0.4\,\mathrm{mHz}/f)^2]
  [1+(f/8\,\mathrm{mHz})^4]`,
  :math:`S_n = \frac{10}{3L^2}\big[P_{\rm OMS} + 2(1+\cos^2(f/f_*))\frac{P_{\rm acc}}{(2\pi
  f)^4}\big]\big(1+\frac{6}{10}(f/f_*)^2\big) + S_c(f)`, :math:`f_* = 19.09` mHz, and the
  galactic confusion fit :math:`S_c = 9\times10^{-45}f^{-7/3}e^{-f^\alpha+\beta f\sin\kappa
  f}[1+\tanh(\gamma(f_k-f))]` with the Table-1 coefficients for 0.5, 1, 2 or 4 yr.
* :func:`tianqin_psd` - Huang et al. (2020, PRD 102, 063021), Eq. (13), times 10/3 so that
  it follows the Robson et al. convention (as in LEGWORK, Wagg et al. 2022, ApJS 260, 52):
  :math:`S_n = \frac{10}{3L^2}\big[\frac{4S_a}{(2\pi f)^4}(1+\frac{10^{-4}\,\mathrm{Hz}}{f})
  + S_x\big]\big(1+0.6(f/f_*)^2\big)`, :math:`L = \sqrt3\times10^8` m,
  :math:`S_a = 10^{-30}\,\mathrm{m^2s^{-4}Hz^{-1}}`, :math:`S_x = 10^{-24}\,\mathrm{m^2Hz^{-1}}`,
  :math:`f_* = c/(2\pi L)`.  With ``confusion=True`` the galactic double-white-dwarf
  foreground of Huang et al. (2020), Table II, is added: :math:`\log_{10}\sqrt{S_c} =
  \sum_{i=0}^{6} a_i x^i`, :math:`x = \log_{10}(f/1\,\mathrm{mHz})`, fitted for 0.5, 1,
  2, 4 and 5 yr of observation and valid for :math:`10^{-4} \le f \le 1` Hz (zero outside).
  The fit is to the sensitivity :math:`\sqrt{S_c}`; it is added to :math:`S_n` in the same
  sky-averaged convention, as LEGWORK does.

Parameters: ``A`` (or ``lnA``), ``f0`` [Hz], ``fdot`` [Hz/s], ``phi0`` [rad], ``cos_iota``
(or ``iota``).

Example
-------
>>> import fisherforecast as ff
>>> from fisherforecast.models import dwd
>>> exp = dwd.experiment("LISA", fiducial=dwd.EXAMPLE_DWD)
>>> fm = ff.fisher(exp, dwd.EXAMPLE_DWD)          # doctest: +SKIP
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._astro_constants import C_SI, KPC_SI, MTSUN_S, YEAR_S
from ._values import Bound
from ._x64 import wrap_public

__all__ = [
    "EXAMPLE_DWD",
    "LISA_CONFUSION_FIT",
    "amplitude_gr",
    "baseband_signal",
    "experiment",
    "fdot_gr",
    "lisa_psd",
    "snr_sky_averaged",
    "tianqin_psd",
]

#: Robson, Cornish & Liu (2019) Table 1: T_obs [yr] -> (alpha, beta, kappa, gamma, f_k [Hz]).
LISA_CONFUSION_FIT = {
    0.5: (0.133, 243.0, 482.0, 917.0, 0.00258),
    1.0: (0.171, 292.0, 1020.0, 1680.0, 0.00215),
    2.0: (0.165, 299.0, 611.0, 1340.0, 0.00173),
    4.0: (0.138, -221.0, 521.0, 1680.0, 0.00113),
}

_LISA_ARM_M = 2.5e9
_LISA_FSTAR_HZ = 19.09e-3
_TIANQIN_ARM_M = math.sqrt(3.0) * 1.0e8


def amplitude_gr(Mc, f0, d_kpc):
    r"""GW strain amplitude :math:`4(G\mathcal M)^{5/3}(\pi f_0)^{2/3}/(c^4 d)`.

    ``Mc`` in solar masses, ``f0`` (GW frequency) in Hz, ``d_kpc`` in kpc.

    Example
    -------
    >>> 3.0e-22 < float(amplitude_gr(0.3, 3e-3, 1.0)) < 3.6e-22
    True
    """
    mc_s = Mc * MTSUN_S
    d_s = d_kpc * KPC_SI / C_SI
    return 4.0 * mc_s ** (5.0 / 3.0) * (math.pi * f0) ** (2.0 / 3.0) / d_s


def fdot_gr(Mc, f0):
    r"""GR chirp rate :math:`\frac{96}{5}\pi^{8/3}(G\mathcal M/c^3)^{5/3}f_0^{11/3}` [Hz/s].

    Example
    -------
    >>> 4e-17 < float(fdot_gr(0.3, 3e-3)) < 5e-17
    True
    """
    mc_s = Mc * MTSUN_S
    return 96.0 / 5.0 * math.pi ** (8.0 / 3.0) * mc_s ** (5.0 / 3.0) * f0 ** (11.0 / 3.0)


#: Illustrative galactic DWD: chirp mass 0.3 M_sun at 1 kpc, f0 = 3 mHz, GR-driven fdot.
EXAMPLE_DWD = {
    "lnA": math.log(amplitude_gr(0.3, 3.0e-3, 1.0)),
    "f0": 3.0e-3,
    "fdot": fdot_gr(0.3, 3.0e-3),
    "phi0": 0.5,
    "cos_iota": 0.4,
}


def _xp(f):
    """numpy for numpy/Python input (float64 whatever JAX's default), jax.numpy for JAX."""
    return jnp if isinstance(f, jax.Array) else np


def lisa_psd(f, t_obs_years=4.0, confusion=True):
    """LISA sky-averaged sensitivity S_n(f) [1/Hz] (Robson, Cornish & Liu 2019).

    ``t_obs_years`` selects the confusion-noise fit (0.5, 1, 2 or 4 yr).

    Example
    -------
    >>> 1.6e-20 < float(lisa_psd(3e-3, confusion=False)) ** 0.5 < 1.9e-20
    True
    """
    xp = _xp(f)
    f = xp.asarray(f)
    p_oms = (1.5e-11) ** 2 * (1.0 + (2.0e-3 / f) ** 4)
    p_acc = (3.0e-15) ** 2 * (1.0 + (0.4e-3 / f) ** 2) * (1.0 + (f / 8.0e-3) ** 4)
    x = f / _LISA_FSTAR_HZ
    instrument = (
        10.0
        / (3.0 * _LISA_ARM_M**2)
        * (p_oms + 2.0 * (1.0 + xp.cos(x) ** 2) * p_acc / (2.0 * math.pi * f) ** 4)
        * (1.0 + 0.6 * x**2)
    )
    if not confusion:
        return instrument
    try:
        alpha, beta, kappa, gamma, f_k = LISA_CONFUSION_FIT[float(t_obs_years)]
    except KeyError:
        raise ValueError(
            f"confusion fit exists for T_obs in {sorted(LISA_CONFUSION_FIT)} yr"
        ) from None
    s_c = (
        9.0e-45
        * f ** (-7.0 / 3.0)
        * xp.exp(-(f**alpha) + beta * f * xp.sin(kappa * f))
        * (1.0 + xp.tanh(gamma * (f_k - f)))
    )
    return instrument + s_c


#: Huang et al. (2020) Table II: coefficients a_0..a_6 of log10 sqrt(S_c) in powers of
#: log10(f / 1 mHz), per observation time in years.
TIANQIN_CONFUSION_FIT = {
    0.5: (-18.6, -1.22, 0.009, -1.87, 0.65, 3.6, -4.6),
    1.0: (-18.6, -1.13, -0.945, -1.02, 4.05, -4.5, -0.5),
    2.0: (-18.6, -1.45, 0.315, -1.19, -4.48, 10.8, -9.4),
    4.0: (-18.6, -1.43, -0.687, 0.24, -0.15, -1.8, -3.2),
    5.0: (-18.6, -1.51, -0.71, -1.13, -0.83, 13.2, -19.1),
}


def tianqin_confusion_noise(f, t_obs_years=5.0):
    """TianQin galactic foreground S_c(f) [1/Hz] (Huang et al. 2020, Table II).

    ``t_obs_years`` must be one of the fitted observation times (0.5, 1, 2, 4, 5 yr). The fit
    applies for 1e-4 Hz <= f <= 1 Hz; outside that range the foreground is 0.

    Example
    -------
    >>> 1e-41 < float(tianqin_confusion_noise(3e-3, 5.0)) < 1e-38
    True
    """
    try:
        coeffs = TIANQIN_CONFUSION_FIT[float(t_obs_years)]
    except KeyError:
        raise ValueError(
            f"TianQin confusion fit exists for T_obs in {sorted(TIANQIN_CONFUSION_FIT)} yr; "
            f"received {t_obs_years!r}"
        ) from None
    xp = _xp(f)
    f = xp.asarray(f)
    x = xp.log10(f / 1.0e-3)
    log_asd = sum(a * x**i for i, a in enumerate(coeffs))
    inside = (f >= 1.0e-4) & (f <= 1.0)
    return xp.where(inside, 10.0 ** (2.0 * log_asd), 0.0)


def tianqin_psd(f, t_obs_years=5.0, confusion=False):
    """TianQin sky-averaged sensitivity S_n(f) [1/Hz] (Huang et al. 2020 Eq. 13, x 10/3).

    ``confusion=True`` adds :func:`tianqin_confusion_noise` for ``t_obs_years``.

    Example
    -------
    >>> 1e-20 < float(tianqin_psd(1e-2)) ** 0.5 < 1e-19
    True
    """
    xp = _xp(f)
    f = xp.asarray(f)
    s_a, s_x = 1.0e-30, 1.0e-24
    f_star = C_SI / (2.0 * math.pi * _TIANQIN_ARM_M)
    instrument = (
        10.0
        / (3.0 * _TIANQIN_ARM_M**2)
        * (4.0 * s_a / (2.0 * math.pi * f) ** 4 * (1.0 + 1.0e-4 / f) + s_x)
        * (1.0 + 0.6 * (f / f_star) ** 2)
    )
    if not confusion:
        return instrument
    return instrument + tianqin_confusion_noise(f, t_obs_years)


_PSDS = {"LISA": lisa_psd, "TianQin": tianqin_psd}


def _amplitude(params):
    return params["A"] if "A" in params else jnp.exp(params["lnA"])


def _cos_iota(params):
    return params["cos_iota"] if "cos_iota" in params else jnp.cos(params["iota"])


def baseband_signal(params, t, f_ref):
    """Base-band quadratures [Re H+, Im H+, Re Hx, Im Hx], shape (4, len(t)).

    Example
    -------
    >>> import numpy as np
    >>> baseband_signal(EXAMPLE_DWD, np.linspace(0, 1e7, 5), 3e-3).shape
    (4, 5)
    """
    t = jnp.asarray(t)
    amp = _amplitude(params)
    ci = _cos_iota(params)
    phase = (
        2.0 * math.pi * (params["f0"] - f_ref) * t
        + math.pi * params["fdot"] * t**2
        + params["phi0"]
    )
    c, s = jnp.cos(phase), jnp.sin(phase)
    plus = amp * 0.5 * (1.0 + ci**2)
    cross = amp * ci
    # H+ = plus e^{i phase};  Hx = -i cross e^{i phase} = cross (sin + (-cos) i).
    return jnp.stack([plus * c, plus * s, cross * s, -cross * c])


def snr_sky_averaged(params, t_obs_s, s_n):
    """Analytic sky-averaged SNR sqrt(A^2 T [((1+c^2)/2)^2 + c^2] / S_n) (fdot T << f0).

    Example
    -------
    >>> snr = snr_sky_averaged(EXAMPLE_DWD, 4 * 3.15576e7, float(lisa_psd(3e-3)))
    >>> 100 < float(snr) < 400
    True
    """
    xp = jnp if any(isinstance(v, jax.Array) for v in params.values()) else np
    amp = params["A"] if "A" in params else xp.exp(params["lnA"])
    ci = params["cos_iota"] if "cos_iota" in params else xp.cos(params["iota"])
    return xp.sqrt(amp**2 * t_obs_s * ((0.5 * (1.0 + ci**2)) ** 2 + ci**2) / s_n)


def experiment(
    detector="LISA",
    *,
    fiducial,
    t_obs_years=4.0,
    n_times=2000,
    confusion=True,
    name=None,
):
    """``ff.Experiment`` for one quasi-monochromatic binary seen by LISA or TianQin.

    ``fiducial`` fixes the base-band reference frequency (its ``f0``) and the noise level
    S_n(f0).  ``n_times`` midpoint samples cover [0, T_obs].

    Example
    -------
    >>> exp = experiment("TianQin", fiducial=EXAMPLE_DWD, t_obs_years=1.0, n_times=500)
    >>> exp.design.shape
    (500,)
    """
    if detector not in _PSDS:
        raise ValueError(f"detector must be one of {sorted(_PSDS)}")
    f_ref = float(fiducial["f0"])
    if detector == "LISA":
        s_n = float(lisa_psd(f_ref, t_obs_years, confusion))
    else:
        # The foreground fit exists for a few observation times: use the nearest one.
        fitted = min(TIANQIN_CONFUSION_FIT, key=lambda y: abs(y - t_obs_years))
        s_n = float(tianqin_psd(f_ref, fitted, confusion))
    t_obs = t_obs_years * YEAR_S
    dt = t_obs / n_times
    t = (np.arange(n_times) + 0.5) * dt
    model = Bound(_model, f_ref=f_ref)
    sigma = math.sqrt(s_n / dt)
    return ff.Experiment(model, ff.Gaussian(sigma=sigma), design=t, name=name or detector)


def _model(params, t, *, f_ref):
    return baseband_signal(params, t, f_ref)


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
