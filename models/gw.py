r"""Compact-binary inspirals: TaylorF2 waveform, ground-based detector network, analytic PSDs.

Waveform
--------
Restricted (leading-order amplitude) stationary-phase TaylorF2 inspiral with the
phase to 3.5PN order.  With the total mass :math:`M = \mathcal{M}\,\eta^{-3/5}`
(in seconds, :math:`G M_\odot/c^3` = ``MTSUN_S``) and :math:`v = (\pi M f)^{1/3}`,

.. math::

    \Psi(f) = 2\pi f t_c - \phi_c - \frac{\pi}{4}
              + \frac{3}{128\eta v^5}\sum_{k=0}^{7}(\varphi_k + \varphi_k^{(l)}\ln v)\,v^k ,

    \tilde h_+(f) = \mathcal{A}\,\frac{1+\cos^2\iota}{2}\,f^{-7/6}\,e^{-i\Psi(f)},\qquad
    \tilde h_\times(f) = -i\,\mathcal{A}\,\cos\iota\,f^{-7/6}\,e^{-i\Psi(f)},

    \mathcal{A} = \sqrt{5/24}\;\pi^{-2/3}\,\frac{c}{d_L}\left(\frac{G\mathcal{M}}{c^3}\right)^{5/6}.

Fourier convention :math:`\tilde h(f) = \int h(t)\,e^{-2\pi i f t}\,dt`; a signal arriving
later by :math:`\Delta t` therefore picks up :math:`e^{-2\pi i f\Delta t}`.  The
non-spinning coefficients are Buonanno, Iyer, Ochsner, Pan & Sathyaprakash (2009, PRD 80,
084043; "BIOPS"), Eq. (3.18), which collects Blanchet et al. and Arun et al. (2005, PRD 71,
084008).  Aligned-spin terms (dimensionless spins ``chi1``, ``chi2`` along the orbital
angular momentum, black-hole quadrupole, :math:`\chi_{s,a} = (\chi_1 \pm \chi_2)/2`,
:math:`\delta = \sqrt{1-4\eta}\ge 0` so body 1 is the heavier one):

* spin-orbit at 1.5PN, 2.5PN (with its :math:`\ln v`), 3PN and 3.5PN - written in the
  :math:`(\chi_s, \chi_a)` form of Khan et al. (2016, PRD 93, 044007, App. B), which
  collects Kidder (1995), Blanchet, Buonanno & Faye (2006) and Bohé, Marsat, Faye &
  Blanchet (2013, CQG 30, 075017);
* spin-spin at 2PN (Arun et al. 2009, PRD 79, 104023, Eq. 6.24; Mikóczi, Vasúth & Gergely
  2005) and at 3PN (Bohé, Faye, Marsat & Porter 2015, CQG 32, 195010; the per-body
  form used in LALSuite's TaylorF2 is rewritten here in :math:`(\chi_s,\chi_a)`).

The 2.5PN constant is kept with :math:`(1 + 3\ln v)` (LALSuite convention); any constant
phase is degenerate with :math:`\phi_c` anyway.  The waveform is set to zero above the
innermost stable circular orbit of a test mass, :math:`f_{\rm ISCO} = (6^{3/2}\pi M)^{-1}`;
that mask carries no derivative (the usual Fisher-forecast convention), so grids should
stop at the fiducial :math:`f_{\rm ISCO}` - :func:`experiment` does this when given a
fiducial.

Parameters (natural units; the model reads whichever key variant is present):
``Mc`` detector-frame chirp mass [M_sun] (or ``ln_Mc``), ``eta`` symmetric mass ratio,
``dL`` luminosity distance [Mpc] (or ``ln_dL``), ``tc`` [s], ``phic`` [rad], ``chi1``,
``chi2`` (default 0), and for projected waveforms ``ra``, ``dec`` [rad], ``psi`` [rad]
and ``cos_iota`` (or ``iota`` [rad]).  With ``ln_dL`` the Fisher element
:math:`F_{\ln d_L,\ln d_L}` equals the squared optimal SNR, and ``ln_dL`` is exactly
uncorrelated with every parameter that enters only the phase.

Detectors
---------
L-shaped (or V-shaped) interferometers in the long-wavelength limit, detector tensor
:math:`D = (\hat x\hat x - \hat y\hat y)/2`; antenna patterns
:math:`F_+ = X\!\cdot\!D\!\cdot\!X - Y\!\cdot\!D\!\cdot\!Y`,
:math:`F_\times = X\!\cdot\!D\!\cdot\!Y + Y\!\cdot\!D\!\cdot\!X` with the wave-frame
polarisation vectors of Anderson, Brady, Creighton & Flanagan (2001, PRD 63, 042003,
App. B).  Site coordinates (geodetic, WGS-84) and arm azimuths (clockwise from local North)
are those of LALSuite's ``LALDetectors.h`` for H1, L1, V1; arm tilts of <1 mrad are
neglected.  ``ET1..ET3`` (a 60-degree triangle at the Sardinia candidate site, all three
vertices placed at one point) and ``CE`` (an L at the Hanford site) are placeholders,
not official configurations.  The Earth's rotation during the signal is neglected:
antenna patterns are evaluated at one Greenwich mean sidereal time ``gmst``.

Noise curves (one-sided strain PSDs, 1/Hz)
------------------------------------------
* :func:`psd_aligo_zdhp` - Ajith (2011, PRD 84, 084037) fit to the Advanced-LIGO
  zero-detuned high-power design curve.
* :func:`psd_et_b` - Mishra, Arun, Iyer & Sathyaprakash (2010, PRD 82, 064010) fit to the
  Einstein Telescope ET-B curve.
* :func:`psd_ce_wideband` - analytic fit to the Cosmic Explorer wide-band curve (Abbott et
  al. 2017, CQG 34, 044001) as tabulated in gwbench (Borhanian 2021, CQG 38, 175014).
  It is a fit of a fit: use it for CE-*like* forecasts only.

Fisher information for one detector with one-sided PSD :math:`S_n` (Cutler & Flanagan 1994):
:math:`F_{ij} = 4\,\mathrm{Re}\int \partial_i\tilde h^*\,\partial_j\tilde h / S_n\,df`,
which is what ``ff.PSD`` evaluates on the log-spaced grid of :func:`frequency_grid`.

Example
-------
>>> import fisherforecast as ff
>>> from fisherforecast.models import gw
>>> net = gw.network(["H1", "L1", "V1"], fiducial=gw.GW170817_LIKE)
>>> fm = ff.fisher(net, gw.GW170817_LIKE)       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._astro_constants import (
    C_SI,
    EULER_GAMMA,
    MPC_SI,
    MTSUN_S,
    WGS84_A_M,
    WGS84_E2,
)
from ._values import Bound
from ._x64 import wrap_public

__all__ = [
    "DETECTORS",
    "GW150914_LIKE",
    "GW170817_LIKE",
    "PSDS",
    "Detector",
    "antenna_patterns",
    "arm_unit_vectors",
    "detector_strain",
    "detector_tensor",
    "detector_vertex",
    "experiment",
    "f_isco",
    "frequency_grid",
    "network",
    "optimal_strain",
    "pn_phase_coefficients",
    "polarizations",
    "psd_aligo_zdhp",
    "psd_ce_wideband",
    "psd_et_b",
    "taylorf2_amplitude",
    "taylorf2_phase",
    "time_delay_from_geocenter",
]

# ---------------------------------------------------------------------------------------
# Literature-inspired fiducials
# ---------------------------------------------------------------------------------------

#: GW170817-like binary neutron star.  Detector-frame chirp mass 1.1975 M_sun and
#: d_L = 40 Mpc (Abbott et al. 2017, PRL 119, 161101; 2019, PRX 9, 011001), sky position of
#: NGC 4993 / SSS17a (Coulter et al. 2017, Science 358, 1556), eta for q ~ 0.85, an
#: inclination theta_JN ~ 150 deg.  Non-spinning.
GW170817_LIKE = {
    "Mc": 1.1975,
    "eta": 0.2484,
    "ln_dL": math.log(40.0),
    "tc": 0.0,
    "phic": 0.0,
    "ra": math.radians(197.450374),
    "dec": math.radians(-23.381495),
    "psi": 0.3,
    "cos_iota": -0.87,
}

#: GW150914-like binary black hole, *inspiral only* (the merger is not modelled).
#: Detector-frame chirp mass 30.2 M_sun and d_L ~ 440 Mpc (Abbott et al. 2016, PRL 116,
#: 241102; GWTC-1, PRX 9, 031040 2019); spins set to small aligned values for illustration.
GW150914_LIKE = {
    "Mc": 30.2,
    "eta": 0.247,
    "ln_dL": math.log(440.0),
    "tc": 0.0,
    "phic": 0.0,
    "chi1": 0.1,
    "chi2": -0.05,
}


# ---------------------------------------------------------------------------------------
# Parameter access (key variants are resolved at trace time; dict keys are static)
# ---------------------------------------------------------------------------------------


def _chirp_mass(params):
    return params["Mc"] if "Mc" in params else jnp.exp(params["ln_Mc"])


def _distance_mpc(params):
    return params["dL"] if "dL" in params else jnp.exp(params["ln_dL"])


def _cos_iota(params):
    return params["cos_iota"] if "cos_iota" in params else jnp.cos(params["iota"])


def _spins(params):
    return params.get("chi1", 0.0), params.get("chi2", 0.0)


# ---------------------------------------------------------------------------------------
# TaylorF2
# ---------------------------------------------------------------------------------------

# 3PN spin-spin (Bohé et al. 2015), per body i with X_i = m_i/M and kappa_i = 1:
#   sum_i (a + b X_i + c X_i^2) X_i^2 chi_i^2 + (q0 + q1 eta) eta chi1 chi2
_SS3_A = -34545.0 / 672.0
_SS3_B = 1595.0 / 4.0
_SS3_C = -3065.0 / 36.0
_SS3_Q0 = 32675.0 / 112.0
_SS3_Q1 = 5575.0 / 18.0


def pn_phase_coefficients(eta, chi1=0.0, chi2=0.0):
    r"""TaylorF2 phase coefficients :math:`\varphi_k` and :math:`\varphi_k^{(l)}`, k = 0..7.

    The phase is :math:`\frac{3}{128\eta v^5}\sum_k(\varphi_k + \varphi_k^{(l)}\ln v)v^k`
    (see the module docstring for references).  Body 1 is the heavier one
    (:math:`\delta = +\sqrt{1-4\eta}`).  At exactly :math:`\eta = 1/4` the
    :math:`\delta`-derivative is clipped to a large finite number so that
    equal-spin, equal-mass fiducials stay finite.

    Returns
    -------
    (phi, phi_log): two arrays of shape (8,).

    Example
    -------
    >>> phi, phi_log = pn_phase_coefficients(0.25)
    >>> round(float(phi[2]), 6)  # 3715/756 + 55/36
    6.441799
    """
    eta = jnp.asarray(eta)
    chi1 = jnp.asarray(chi1)
    chi2 = jnp.asarray(chi2)
    pi = math.pi
    eta2, eta3 = eta * eta, eta * eta * eta
    # Safe square root: its derivative stays finite at eta = 1/4 (multiplied by chi_a).
    delta = jnp.sqrt(jnp.maximum(1.0 - 4.0 * eta, 1e-30))
    chi_s = 0.5 * (chi1 + chi2)
    chi_a = 0.5 * (chi1 - chi2)

    phi0 = jnp.ones_like(eta)
    phi1 = jnp.zeros_like(eta)
    phi2 = 3715.0 / 756.0 + 55.0 / 9.0 * eta
    phi3 = -16.0 * pi + 113.0 / 3.0 * delta * chi_a + (113.0 / 3.0 - 76.0 / 3.0 * eta) * chi_s
    phi4 = (
        15293365.0 / 508032.0
        + 27145.0 / 504.0 * eta
        + 3085.0 / 72.0 * eta2
        + (-405.0 / 8.0 + 200.0 * eta) * chi_a**2
        - 405.0 / 4.0 * delta * chi_a * chi_s
        + (-405.0 / 8.0 + 5.0 / 2.0 * eta) * chi_s**2
    )
    phi5 = (
        38645.0 * pi / 756.0
        - 65.0 * pi / 9.0 * eta
        + delta * (-732985.0 / 2268.0 - 140.0 / 9.0 * eta) * chi_a
        + (-732985.0 / 2268.0 + 24260.0 / 81.0 * eta + 340.0 / 9.0 * eta2) * chi_s
    )
    # 3PN spin-spin in symmetric/antisymmetric form.  Sums over bodies of X^n chi^2:
    # sum X^2 chi^2 etc. follow from X_{1,2} = (1 +- delta)/2.
    sym = chi_s**2 + chi_a**2
    mixed = 2.0 * delta * chi_s * chi_a
    ss3 = (
        (
            _SS3_A * (1.0 - 2.0 * eta)
            + _SS3_B * (1.0 - 3.0 * eta)
            + _SS3_C * (1.0 - 4.0 * eta + 2.0 * eta2)
        )
        * sym
        + (_SS3_A + _SS3_B * (1.0 - eta) + _SS3_C * (1.0 - 2.0 * eta)) * mixed
        + (_SS3_Q0 + _SS3_Q1 * eta) * eta * (chi_s**2 - chi_a**2)
    )
    phi6 = (
        11583231236531.0 / 4694215680.0
        - 6848.0 / 21.0 * EULER_GAMMA
        - 640.0 / 3.0 * pi**2
        + (-15737765635.0 / 3048192.0 + 2255.0 / 12.0 * pi**2) * eta
        + 76055.0 / 1728.0 * eta2
        - 127825.0 / 1296.0 * eta3
        - 6848.0 / 21.0 * math.log(4.0)
        + pi * (2270.0 / 3.0 * delta * chi_a + (2270.0 / 3.0 - 520.0 * eta) * chi_s)
        + ss3
    )
    phi7 = (
        pi * (77096675.0 / 254016.0 + 378515.0 / 1512.0 * eta - 74045.0 / 756.0 * eta2)
        + delta
        * (-25150083775.0 / 3048192.0 + 26804935.0 / 6048.0 * eta - 1985.0 / 48.0 * eta2)
        * chi_a
        + (
            -25150083775.0 / 3048192.0
            + 10566655595.0 / 762048.0 * eta
            - 1042165.0 / 3024.0 * eta2
            + 5345.0 / 36.0 * eta3
        )
        * chi_s
    )
    zero = jnp.zeros_like(phi2)
    phi = jnp.stack(jnp.broadcast_arrays(phi0, phi1, phi2, phi3, phi4, phi5, phi6, phi7))
    phi_log = jnp.stack(
        jnp.broadcast_arrays(zero, zero, zero, zero, zero, 3.0 * phi5, zero - 6848.0 / 21.0, zero)
    )
    return phi, phi_log


def _total_mass_s(mc_msun, eta):
    return mc_msun * eta ** (-0.6) * MTSUN_S


def f_isco(Mc, eta):
    r"""Test-mass ISCO gravitational-wave frequency :math:`(6^{3/2}\pi M)^{-1}` in Hz.

    Example
    -------
    >>> round(float(f_isco(1.2188, 0.25)), 1)  # 1.4+1.4 M_sun
    1570.4
    """
    return 1.0 / (6.0**1.5 * math.pi * _total_mass_s(Mc, eta))


def taylorf2_phase(f, Mc, eta, tc=0.0, phic=0.0, chi1=0.0, chi2=0.0):
    r"""TaylorF2 stationary-phase phase :math:`\Psi(f)` [rad] (3.5PN, aligned spins).

    Example
    -------
    >>> import numpy as np
    >>> psi = taylorf2_phase(np.array([30.0, 100.0]), 1.2, 0.25)
    >>> psi.shape
    (2,)
    """
    f = jnp.asarray(f)
    v = (math.pi * _total_mass_s(Mc, eta) * f) ** (1.0 / 3.0)
    phi, phi_log = pn_phase_coefficients(eta, chi1, chi2)
    log_v = jnp.log(v)
    series = jnp.zeros_like(v)
    # Horner-free explicit sum: 8 terms, keeps each order visible.
    for k in range(8):
        series = series + (phi[k] + phi_log[k] * log_v) * v**k
    return 2.0 * math.pi * f * tc - phic - math.pi / 4.0 + 3.0 / (128.0 * eta * v**5) * series


def taylorf2_amplitude(f, Mc, dL):
    r"""Restricted amplitude :math:`\mathcal{A} f^{-7/6}` of a face-on source [1/Hz].

    ``Mc`` in solar masses (detector frame), ``dL`` in Mpc.

    Example
    -------
    >>> float(taylorf2_amplitude(100.0, 1.2, 40.0)) > 0
    True
    """
    mc_s = Mc * MTSUN_S
    dl_s = dL * MPC_SI / C_SI
    amp = math.sqrt(5.0 / 24.0) * math.pi ** (-2.0 / 3.0) * mc_s ** (5.0 / 6.0) / dl_s
    return amp * jnp.asarray(f) ** (-7.0 / 6.0)


def _carrier(params, f):
    """Face-on restricted waveform A f^-7/6 e^{-i Psi}, zero above f_ISCO."""
    mc = _chirp_mass(params)
    eta = params["eta"]
    chi1, chi2 = _spins(params)
    amp = taylorf2_amplitude(f, mc, _distance_mpc(params))
    amp = jnp.where(f <= f_isco(mc, eta), amp, 0.0)
    psi = taylorf2_phase(f, mc, eta, params["tc"], params["phic"], chi1, chi2)
    return amp * jnp.exp(-1j * psi)


def optimal_strain(params, f):
    """Optimally oriented and located source (F+ = 1, face-on): h = A f^-7/6 e^{-i Psi}.

    Needs ``Mc``/``ln_Mc``, ``eta``, ``dL``/``ln_dL``, ``tc``, ``phic`` (``chi1``,
    ``chi2`` optional).

    Example
    -------
    >>> import numpy as np
    >>> p = {"Mc": 1.2, "eta": 0.25, "dL": 100.0, "tc": 0.0, "phic": 0.0}
    >>> optimal_strain(p, np.array([50.0, 100.0])).dtype.kind
    'c'
    """
    return _carrier(params, jnp.asarray(f))


def polarizations(params, f):
    """Plus and cross polarisations (h+, hx) in the source frame, geocentric tc.

    Example
    -------
    >>> import numpy as np
    >>> p = {"Mc": 1.2, "eta": 0.25, "dL": 100.0, "tc": 0.0, "phic": 0.0, "cos_iota": 1.0}
    >>> hp, hc = polarizations(p, np.array([100.0]))
    >>> bool(abs(abs(hc[0]) - abs(hp[0])) < 1e-30)   # face-on: circular polarisation
    True
    """
    h = _carrier(params, jnp.asarray(f))
    ci = _cos_iota(params)
    return 0.5 * (1.0 + ci**2) * h, -1j * ci * h


# ---------------------------------------------------------------------------------------
# Detectors
# ---------------------------------------------------------------------------------------


class Detector(NamedTuple):
    """Interferometer in the long-wavelength limit.

    Angles in radians: geodetic ``latitude``, East ``longitude``, arm azimuths measured
    clockwise from local North (towards East); ``elevation`` in metres above WGS-84.
    ``psd`` names the default noise curve in :data:`PSDS`; ``fmin`` its low cut [Hz].
    """

    name: str
    latitude: float
    longitude: float
    x_azimuth: float
    y_azimuth: float
    elevation: float = 0.0
    psd: str = "aLIGO"
    fmin: float = 10.0


def _deg(d, m=0.0, s=0.0):
    return math.radians(d + m / 60.0 + s / 3600.0)


_ET_LAT, _ET_LON = math.radians(40.4433), math.radians(9.4569)  # Sos Enattos (approx.)
_ET_ALPHA = math.radians(70.0)  # arbitrary orientation of the placeholder triangle

#: Named sites.  H1/L1/V1 from LALSuite ``LALDetectors.h`` (vertex and arm azimuths);
#: ET1-3 and CE are placeholders (see module docstring).
DETECTORS: dict[str, Detector] = {
    "H1": Detector(
        "H1", 0.81079526383, -2.08405676917, 5.65487724844, 4.08408092164, 142.554, "aLIGO", 10.0
    ),
    "L1": Detector(
        "L1", 0.53342313506, -1.58430937078, 4.40317772346, 2.83238139666, -6.574, "aLIGO", 10.0
    ),
    "V1": Detector(
        "V1", 0.76151183984, 0.18333805213, 0.33916285222, 5.05155183261, 51.884, "aLIGO", 10.0
    ),
    "CE": Detector(
        "CE", 0.81079526383, -2.08405676917, 5.65487724844, 4.08408092164, 142.554, "CE", 5.0
    ),
}
for _k in range(3):
    # Triangle vertices k = 0, 1, 2: arms at alpha - 120 k and alpha - 120 k - 60 degrees.
    _x = _ET_ALPHA - math.radians(120.0 * _k)
    DETECTORS[f"ET{_k + 1}"] = Detector(
        f"ET{_k + 1}", _ET_LAT, _ET_LON, _x, _x - math.radians(60.0), 0.0, "ET", 2.0
    )


def _get_detector(detector) -> Detector:
    if isinstance(detector, Detector):
        return detector
    try:
        return DETECTORS[detector]
    except KeyError:
        raise ValueError(
            f"unknown detector {detector!r}; choose from {sorted(DETECTORS)} or pass a gw.Detector"
        ) from None


def _local_axes(latitude, longitude):
    """East, North, Up unit vectors (Earth-fixed, geodetic latitude)."""
    sl, cl = math.sin(latitude), math.cos(latitude)
    so, co = math.sin(longitude), math.cos(longitude)
    east = np.array([-so, co, 0.0])
    north = np.array([-sl * co, -sl * so, cl])
    up = np.array([cl * co, cl * so, sl])
    return east, north, up


def arm_unit_vectors(detector):
    """Earth-fixed unit vectors of the x and y arms (horizontal arms).

    Example
    -------
    >>> x, y = arm_unit_vectors("H1")
    >>> abs(float(x @ y)) < 1e-9
    True
    """
    det = _get_detector(detector)
    east, north, _ = _local_axes(det.latitude, det.longitude)
    x = math.cos(det.x_azimuth) * north + math.sin(det.x_azimuth) * east
    y = math.cos(det.y_azimuth) * north + math.sin(det.y_azimuth) * east
    return x, y


def detector_tensor(detector):
    """Detector tensor D = (x x - y y) / 2 (numpy, 3x3, Earth-fixed frame).

    Example
    -------
    >>> abs(float(np.trace(detector_tensor("L1")))) < 1e-12
    True
    """
    x, y = arm_unit_vectors(detector)
    return 0.5 * (np.outer(x, x) - np.outer(y, y))


def detector_vertex(detector):
    """Earth-fixed (ECEF) position of the vertex in metres (WGS-84 ellipsoid).

    Example
    -------
    >>> round(float(np.linalg.norm(detector_vertex("H1"))) / 1e6, 2)
    6.37
    """
    det = _get_detector(detector)
    sl, cl = math.sin(det.latitude), math.cos(det.latitude)
    prime_vertical = WGS84_A_M / math.sqrt(1.0 - WGS84_E2 * sl * sl)
    r = prime_vertical + det.elevation
    return np.array(
        [
            r * cl * math.cos(det.longitude),
            r * cl * math.sin(det.longitude),
            (prime_vertical * (1.0 - WGS84_E2) + det.elevation) * sl,
        ]
    )


def _polarisation_basis(ra, dec, psi, gmst):
    """Wave-frame vectors X, Y (Anderson et al. 2001, App. B) in Earth-fixed axes."""
    gha = gmst - ra  # Greenwich hour angle of the source
    cg, sg = jnp.cos(gha), jnp.sin(gha)
    cd, sd = jnp.cos(dec), jnp.sin(dec)
    cp, sp = jnp.cos(psi), jnp.sin(psi)
    x_vec = jnp.stack([-cp * sg - sp * cg * sd, -cp * cg + sp * sg * sd, sp * cd])
    y_vec = jnp.stack([sp * sg - cp * cg * sd, sp * cg + cp * sg * sd, cp * cd])
    return x_vec, y_vec


def antenna_patterns(detector, ra, dec, psi, gmst=0.0):
    """Antenna patterns (F+, Fx) for a source at (ra, dec) with polarisation angle psi.

    Example
    -------
    >>> fp, fx = antenna_patterns("H1", 1.0, 0.3, 0.0, gmst=0.5)
    >>> bool(fp**2 + fx**2 <= 1.0)
    True
    """
    d = jnp.asarray(detector_tensor(detector))
    x_vec, y_vec = _polarisation_basis(ra, dec, psi, gmst)
    fplus = x_vec @ d @ x_vec - y_vec @ d @ y_vec
    fcross = x_vec @ d @ y_vec + y_vec @ d @ x_vec
    return fplus, fcross


def time_delay_from_geocenter(detector, ra, dec, gmst=0.0):
    """Arrival time at the detector minus arrival time at the Earth's centre [s].

    Example
    -------
    >>> abs(float(time_delay_from_geocenter("L1", 1.0, 0.2))) < 0.0214
    True
    """
    r = jnp.asarray(detector_vertex(detector))
    gha = gmst - ra
    # Unit vector towards the source in Earth-fixed axes.
    n = jnp.stack([jnp.cos(dec) * jnp.cos(gha), -jnp.cos(dec) * jnp.sin(gha), jnp.sin(dec)])
    return -(r @ n) / C_SI


def detector_strain(params, f, detector="H1", gmst=0.0):
    r"""Frequency-domain strain :math:`F_+\tilde h_+ + F_\times\tilde h_\times` at a detector.

    Includes the geocentre-to-detector delay :math:`e^{-2\pi i f\Delta t}`.  Needs the
    sky/orientation parameters ``ra``, ``dec``, ``psi`` and ``cos_iota`` (or ``iota``).

    Example
    -------
    >>> import numpy as np
    >>> p = dict(GW170817_LIKE)
    >>> detector_strain(p, np.array([30.0, 60.0]), "H1").shape
    (2,)
    """
    f = jnp.asarray(f)
    hp, hc = polarizations(params, f)
    fplus, fcross = antenna_patterns(detector, params["ra"], params["dec"], params["psi"], gmst)
    delay = time_delay_from_geocenter(detector, params["ra"], params["dec"], gmst)
    return (fplus * hp + fcross * hc) * jnp.exp(-2j * math.pi * f * delay)


# ---------------------------------------------------------------------------------------
# Noise curves
# ---------------------------------------------------------------------------------------


def _xp(f):
    """numpy for numpy/Python input (float64 whatever JAX's default), jax.numpy for JAX."""
    return jnp if isinstance(f, jax.Array) else np


def psd_aligo_zdhp(f):
    r"""Advanced LIGO zero-detuned high-power design PSD, analytic fit [1/Hz].

    Ajith (2011, PRD 84, 084037):
    :math:`S_n = 10^{-48}(0.0152x^{-4} + 0.2935x^{9/4} + 2.7951x^{3/2} - 6.5080x^{3/4}
    + 17.7622)`, :math:`x = f/245.4\,\mathrm{Hz}`; meant for f >~ 10 Hz.

    Example
    -------
    >>> round(float(psd_aligo_zdhp(100.0)) ** 0.5 * 1e24, 2)
    3.97
    """
    x = _xp(f).asarray(f) / 245.4
    return 1e-48 * (
        0.0152 * x**-4.0 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622
    )


def psd_et_b(f):
    r"""Einstein Telescope ET-B PSD, analytic fit [1/Hz] (single interferometer).

    Mishra, Arun, Iyer & Sathyaprakash (2010, PRD 82, 064010):
    :math:`S_n = 10^{-50}(2.39\times10^{-27}x^{-15.64} + 0.349x^{-2.145} + 1.76x^{-0.12}
    + 0.409x^{1.10})^2`, :math:`x = f/100\,\mathrm{Hz}`; meant for f >~ 1 Hz.

    Example
    -------
    >>> round(float(psd_et_b(100.0)) * 1e50, 3)
    6.34
    """
    x = _xp(f).asarray(f) / 100.0
    return (
        1e-50 * (2.39e-27 * x**-15.64 + 0.349 * x**-2.145 + 1.76 * x**-0.12 + 0.409 * x**1.10) ** 2
    )


def psd_ce_wideband(f):
    """Cosmic-Explorer-like wide-band PSD [1/Hz]; analytic fit, for CE-*like* studies only.

    Polynomial-in-power-law fit to the CE wide-band curve of Abbott et al. (2017, CQG 34,
    044001) as tabulated in gwbench (Borhanian 2021, CQG 38, 175014); f in Hz,
    meant for f >~ 5 Hz.

    Example
    -------
    >>> 1e-25 < float(psd_ce_wideband(100.0)) ** 0.5 < 5e-25
    True
    """
    f = _xp(f).asarray(f)
    return (
        5.623746655206207e-51
        + 6.698419551167371e-50 * f**-0.125
        + 7.805894950092525e-31 * f**-20.0
        + 4.35400984981997e-43 * f**-6.0
        + 1.630362085130558e-53 * f
        + 2.445543127695837e-56 * f**2
        + 5.456680257125753e-66 * f**5
    )


#: Named PSDs usable as ``psd=`` in :func:`experiment`.
PSDS: dict[str, Callable] = {"aLIGO": psd_aligo_zdhp, "ET": psd_et_b, "CE": psd_ce_wideband}


def frequency_grid(fmin, fmax, n_freq):
    """Log-spaced frequency bins: geometric centres and widths (numpy arrays).

    ``sum(g(f) * df)`` is the midpoint rule for the integral of g over [fmin, fmax].

    Example
    -------
    >>> f, df = frequency_grid(10.0, 1000.0, 500)
    >>> bool(abs(df.sum() - 990.0) < 1e-9)
    True
    """
    if not 0 < fmin < fmax:
        raise ValueError("need 0 < fmin < fmax")
    edges = np.geomspace(fmin, fmax, int(n_freq) + 1)
    return np.sqrt(edges[:-1] * edges[1:]), np.diff(edges)


def _fiducial_f_isco(fiducial):
    mc = fiducial["Mc"] if "Mc" in fiducial else math.exp(fiducial["ln_Mc"])
    return float(f_isco(mc, fiducial["eta"]))


def experiment(
    detector="H1",
    psd=None,
    *,
    fmin=None,
    fmax=2048.0,
    n_freq=4000,
    fiducial: Mapping | None = None,
    gmst=0.0,
    name=None,
):
    """An ``ff.Experiment`` for one detector with ``ff.PSD`` noise.

    Parameters
    ----------
    detector: name in :data:`DETECTORS`, a :class:`Detector`, or ``"optimal"`` for an
        optimally oriented and located source (no sky/orientation parameters).
    psd: name in :data:`PSDS`, a callable ``S_n(f)``, or None for the detector default.
    fmin, fmax, n_freq: log-spaced grid; ``fmin`` defaults to the detector's low cut.
        With ``fiducial`` given, ``fmax`` is lowered to the fiducial f_ISCO.
    gmst: Greenwich mean sidereal time [rad] at which the antenna patterns are evaluated.

    Example
    -------
    >>> exp = experiment("L1", fiducial=GW170817_LIKE, n_freq=1000)
    >>> exp.design.shape
    (1000,)
    """
    if detector == "optimal":
        det = None
        default_psd, default_fmin, label = "aLIGO", 10.0, "optimal"
    else:
        det = _get_detector(detector)
        default_psd, default_fmin, label = det.psd, det.fmin, det.name
    psd = default_psd if psd is None else psd
    psd_fn = PSDS[psd] if isinstance(psd, str) else psd
    fmin = default_fmin if fmin is None else fmin
    if fiducial is not None:
        fmax = min(fmax, _fiducial_f_isco(fiducial))
    f, df = frequency_grid(fmin, fmax, n_freq)
    s_n = np.asarray(psd_fn(f), dtype=float)
    if det is None:
        model = optimal_strain
    else:
        model = Bound(_detector_model, detector=det, gmst=float(gmst))
    return ff.Experiment(model, ff.PSD(s_n, df), design=f, name=name or label)


def _detector_model(params, f, *, detector, gmst):
    return detector_strain(params, f, detector, gmst)


def network(detectors: Sequence = ("H1", "L1", "V1"), psd=None, **kwargs):
    """List of per-detector experiments (independent noise) for ``ff.fisher([...])``.

    ``psd`` may be None (each detector's default), one name/callable for all, or a
    mapping detector name -> name/callable.  Other keywords go to :func:`experiment`.

    Example
    -------
    >>> exps = network(["ET1", "ET2", "ET3"], n_freq=500)
    >>> [e.name for e in exps]
    ['ET1', 'ET2', 'ET3']
    """
    out = []
    for d in detectors:
        key = d.name if isinstance(d, Detector) else d
        this_psd = psd.get(key) if isinstance(psd, Mapping) else psd
        out.append(experiment(d, this_psd, **kwargs))
    return out


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
