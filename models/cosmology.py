r"""Background cosmology with CPL dark energy: SN Ia, BAO and CMB distance priors.

Expansion rate (Chevallier & Polarski 2001; Linder 2003, :math:`w(a) = w_0 + w_a(1-a)`):

.. math::

    E^2(z) = \Omega_r(1+z)^4 + \Omega_m(1+z)^3 + \Omega_k(1+z)^2
             + \Omega_{\rm DE}(1+z)^{3(1+w_0+w_a)}\,e^{-3w_a z/(1+z)},\qquad
    \Omega_{\rm DE} = 1 - \Omega_m - \Omega_k - \Omega_r,

:math:`H = H_0E`.  Radiation :math:`\Omega_r h^2` is fixed by :math:`T_{\rm CMB} = 2.7255`
K and :math:`N_{\rm eff} = 3.046` massless neutrinos (``radiation=False`` drops it).
Distances (Hogg 1999, astro-ph/9905116), with :math:`D_H = c/H_0`:

.. math::

    D_C = D_H\int_0^z\frac{dz'}{E(z')},\quad
    D_M = D_H\,\frac{\sinh(\sqrt{\Omega_k}D_C/D_H)}{\sqrt{\Omega_k}}\ \text{(analytically
    continued to }\Omega_k\le 0),\quad D_L = (1+z)D_M .

The integral is done in :math:`x = \ln(1+z)` with a fixed Gauss-Legendre rule (96 nodes by
default; relative error < 1e-12 for z <~ 1100 in ΛCDM-like models) so every distance is a
smooth, jit/vmap/jacfwd-friendly function of the parameters.  The curvature function uses
its Taylor series near :math:`\Omega_k = 0`, so derivatives at flat fiducials are exact.

Observables
-----------
* SN Ia: :math:`m(z) = \mu(z) + M`, :math:`\mu = 5\log_{10}(D_L/10\,\mathrm{pc})`; ``M`` is
  the (nuisance) absolute magnitude, fully degenerate with :math:`H_0` for SNe alone.
* BAO: :math:`D_M/r_d`, :math:`D_H(z)/r_d = c/(H(z)r_d)` and
  :math:`D_V/r_d = [zD_M^2D_H]^{1/3}/r_d` with the drag-epoch sound horizon ``rd`` [Mpc] a
  free parameter (only :math:`H_0 r_d` is constrained by BAO alone).
* CMB distance priors (Wang & Mukherjee 2007; Chen, Huang & Wang 2019, JCAP 02, 028):
  :math:`R = \sqrt{\Omega_m}H_0D_M(z_*)/c`, :math:`\ell_A = \pi D_M(z_*)/r_s(z_*)` and
  :math:`\omega_b = \Omega_bh^2`, with :math:`z_*` from the Hu & Sugiyama (1996, ApJ 471, 542)
  fit and :math:`r_s(z) = \int_z^\infty c_s\,dz'/H`,
  :math:`c_s = c/\sqrt{3(1+3\rho_b/4\rho_\gamma)}`.
  Mean and inverse covariance are the Planck 2018 TT,TE,EE+lowE ΛCDM values of Chen, Huang
  & Wang (2019), Table I.  Because :math:`z_*` is a fitting formula, the model reproduces
  the published means only to ~0.3% in :math:`\ell_A`; for forecasts only the covariance
  matters.

Parameters: ``H0`` [km/s/Mpc], ``Om`` (total matter), optional ``Ok`` (default 0), ``w0``
(default -1), ``wa`` (default 0); ``M`` (SN), ``rd`` [Mpc] (BAO), ``ombh2`` (CMB).  A key
absent from the parameter dict takes its default and is not varied.

Example
-------
>>> import fisherforecast as ff
>>> from fisherforecast.models import cosmology as cosmo
>>> fid = dict(cosmo.PLANCK2018_LCDM, w0=-1.0, wa=0.0)
>>> exps = [cosmo.sn_experiment(), cosmo.bao_experiment(), cosmo.cmb_prior_experiment()]
>>> fm = ff.fisher(exps, fid)                   # doctest: +SKIP
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._astro_constants import C_KM_S, OMEGA_GAMMA_H2, OMEGA_R_H2
from ._x64 import wrap_public

__all__ = [
    "DESI_DR1_LIKE",
    "PLANCK2018_DISTANCE_PRIOR_COV",
    "PLANCK2018_DISTANCE_PRIOR_INVCOV",
    "PLANCK2018_DISTANCE_PRIOR_MEAN",
    "PLANCK2018_LCDM",
    "angular_diameter_distance",
    "bao_experiment",
    "bao_observables",
    "cmb_distance_priors",
    "cmb_prior_experiment",
    "comoving_distance",
    "distance_modulus",
    "e_of_z",
    "hubble_rate",
    "luminosity_distance",
    "sn_experiment",
    "sn_magnitude",
    "sn_redshifts",
    "sound_horizon",
    "transverse_comoving_distance",
    "z_star_hu_sugiyama",
]

#: Planck 2018 ΛCDM (TT,TE,EE+lowE+lensing; Planck Collaboration 2020, A&A 641, A6,
#: Table 2): H0, Omega_m, omega_b, r_drag; SN absolute magnitude M chosen consistent with
#: that H0 (M is degenerate with H0 and only enters as a nuisance).
PLANCK2018_LCDM = {
    "H0": 67.36,
    "Om": 0.3153,
    "ombh2": 0.02237,
    "rd": 147.09,
    "M": -19.42,
}

#: Chen, Huang & Wang (2019, JCAP 02, 028), Planck 2018 TT,TE,EE+lowE, ΛCDM:
#: mean of (R, l_A, omega_b) and its inverse covariance.
PLANCK2018_DISTANCE_PRIOR_MEAN = np.array([1.750235, 301.4707, 0.02235976])
PLANCK2018_DISTANCE_PRIOR_INVCOV = np.array(
    [
        [94392.3971, -1360.4913, 1664517.2916],
        [-1360.4913, 161.4349, 3671.6180],
        [1664517.2916, 3671.6180, 79719182.5162],
    ]
)
PLANCK2018_DISTANCE_PRIOR_COV = np.linalg.inv(PLANCK2018_DISTANCE_PRIOR_INVCOV)

#: BAO redshifts and fractional 1-sigma errors approximately those of DESI DR1 (DESI
#: Collaboration 2024, arXiv:2404.03002, Table 1).  Illustrative: D_M-D_H correlations are
#: ignored.  Keys: observable -> (z_eff, fractional error).
DESI_DR1_LIKE = {
    "DV": ((0.295, 1.491), (0.019, 0.026)),
    "DM": ((0.510, 0.706, 0.930, 1.317, 2.330), (0.018, 0.019, 0.013, 0.025, 0.024)),
    "DH": ((0.510, 0.706, 0.930, 1.317, 2.330), (0.029, 0.030, 0.020, 0.030, 0.020)),
}

_DEFAULTS = {"Ok": 0.0, "w0": -1.0, "wa": 0.0}


def _p(params, key):
    return params[key] if key in params else _DEFAULTS[key]


def _gauss_legendre_unit(n):
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def _omega_r(params, radiation):
    if not radiation:
        return 0.0
    h = params["H0"] / 100.0
    return OMEGA_R_H2 / h**2


def e_of_z(params, z, *, radiation=True):
    """Dimensionless expansion rate E(z) = H(z)/H0.

    Example
    -------
    >>> float(e_of_z({"H0": 70.0, "Om": 1.0}, 3.0, radiation=False))
    8.0
    """
    z = jnp.asarray(z)
    om, ok = params["Om"], _p(params, "Ok")
    w0, wa = _p(params, "w0"), _p(params, "wa")
    o_r = _omega_r(params, radiation)
    ode = 1.0 - om - ok - o_r
    zp1 = 1.0 + z
    de = jnp.exp(3.0 * (1.0 + w0 + wa) * jnp.log(zp1) - 3.0 * wa * z / zp1)
    return jnp.sqrt(o_r * zp1**4 + om * zp1**3 + ok * zp1**2 + ode * de)


def hubble_rate(params, z, *, radiation=True):
    """H(z) in km/s/Mpc.

    Example
    -------
    >>> float(hubble_rate({"H0": 70.0, "Om": 0.3}, 0.0))
    70.0
    """
    return params["H0"] * e_of_z(params, z, radiation=radiation)


def comoving_distance(params, z, *, radiation=True, n_nodes=96):
    """Line-of-sight comoving distance D_C(z) [Mpc] (Gauss-Legendre in ln(1+z)).

    Example
    -------
    >>> round(float(comoving_distance({"H0": 70.0, "Om": 1.0}, 3.0, radiation=False)), 1)
    4282.7
    """
    t, w = _gauss_legendre_unit(n_nodes)
    z = jnp.asarray(z)
    x_max = jnp.log1p(z)
    x = x_max[..., None] * t
    integrand = jnp.exp(x) / e_of_z(params, jnp.expm1(x), radiation=radiation)
    return C_KM_S / params["H0"] * x_max * jnp.sum(w * integrand, axis=-1)


def _sinn_over_x(y):
    """sinh(sqrt(y))/sqrt(y), continued to y < 0 as sin(sqrt(-y))/sqrt(-y); smooth at 0."""
    small = jnp.abs(y) < 1e-4
    y_pos = jnp.where(y > 1e-4, y, 1.0)
    y_neg = jnp.where(y < -1e-4, -y, 1.0)
    sinh_branch = jnp.sinh(jnp.sqrt(y_pos)) / jnp.sqrt(y_pos)
    sin_branch = jnp.sin(jnp.sqrt(y_neg)) / jnp.sqrt(y_neg)
    taylor = 1.0 + y / 6.0 + y**2 / 120.0 + y**3 / 5040.0
    return jnp.where(small, taylor, jnp.where(y > 0, sinh_branch, sin_branch))


def transverse_comoving_distance(params, z, *, radiation=True, n_nodes=96):
    """Transverse comoving distance D_M(z) [Mpc], any sign of Omega_k.

    Example
    -------
    >>> p = {"H0": 70.0, "Om": 0.3}
    >>> bool(transverse_comoving_distance(p, 1.0) == comoving_distance(p, 1.0))
    True
    """
    d_c = comoving_distance(params, z, radiation=radiation, n_nodes=n_nodes)
    d_h = C_KM_S / params["H0"]
    return d_c * _sinn_over_x(_p(params, "Ok") * (d_c / d_h) ** 2)


def luminosity_distance(params, z, *, radiation=True):
    """Luminosity distance (1+z) D_M [Mpc].

    Example
    -------
    >>> 6000 < float(luminosity_distance({"H0": 70.0, "Om": 0.3}, 1.0)) < 7000
    True
    """
    return (1.0 + jnp.asarray(z)) * transverse_comoving_distance(params, z, radiation=radiation)


def angular_diameter_distance(params, z, *, radiation=True):
    """Angular-diameter distance D_M/(1+z) [Mpc].

    Example
    -------
    >>> 1000 < float(angular_diameter_distance({"H0": 70.0, "Om": 0.3}, 1.0)) < 2000
    True
    """
    return transverse_comoving_distance(params, z, radiation=radiation) / (1.0 + jnp.asarray(z))


def distance_modulus(params, z, *, radiation=True):
    """mu(z) = 5 log10(D_L / 10 pc) = 5 log10(D_L/Mpc) + 25.

    Example
    -------
    >>> 44 < float(distance_modulus({"H0": 70.0, "Om": 0.3}, 1.0)) < 44.2
    True
    """
    return 5.0 * jnp.log10(luminosity_distance(params, z, radiation=radiation)) + 25.0


def sn_magnitude(params, z):
    """Apparent SN Ia peak magnitude m = mu(z) + M (``M`` from params).

    Example
    -------
    >>> p = {"H0": 70.0, "Om": 0.3, "M": -19.3}
    >>> round(float(sn_magnitude(p, 0.5) - distance_modulus(p, 0.5)), 4)
    -19.3
    """
    return distance_modulus(params, z) + params["M"]


def bao_observables(params, design):
    """Concatenated [D_V/r_d at z_DV, D_M/r_d at z_DM, D_H/r_d at z_DH].

    ``design`` is a dict with (possibly empty) arrays ``"z_DV"``, ``"z_DM"``, ``"z_DH"``.

    Example
    -------
    >>> p = dict(PLANCK2018_LCDM)
    >>> d = {"z_DV": np.array([0.3]), "z_DM": np.array([]), "z_DH": np.array([2.33])}
    >>> bao_observables(p, d).shape
    (2,)
    """
    rd = params["rd"]
    parts = []
    z_dv = jnp.asarray(design.get("z_DV", ()), dtype=float)
    z_dm = jnp.asarray(design.get("z_DM", ()), dtype=float)
    z_dh = jnp.asarray(design.get("z_DH", ()), dtype=float)
    if z_dv.size:
        d_m = transverse_comoving_distance(params, z_dv)
        d_h = C_KM_S / hubble_rate(params, z_dv)
        parts.append((z_dv * d_m**2 * d_h) ** (1.0 / 3.0) / rd)
    if z_dm.size:
        parts.append(transverse_comoving_distance(params, z_dm) / rd)
    if z_dh.size:
        parts.append(C_KM_S / hubble_rate(params, z_dh) / rd)
    return jnp.concatenate(parts)


def z_star_hu_sugiyama(ombh2, omh2):
    """Photon-decoupling redshift fit of Hu & Sugiyama (1996, ApJ 471, 542, Eq. E1).

    Example
    -------
    >>> 1085 < float(z_star_hu_sugiyama(0.02237, 0.143)) < 1095
    True
    """
    g1 = 0.0783 * ombh2**-0.238 / (1.0 + 39.5 * ombh2**0.763)
    g2 = 0.560 / (1.0 + 21.1 * ombh2**1.81)
    return 1048.0 * (1.0 + 0.00124 * ombh2**-0.738) * (1.0 + g1 * omh2**g2)


def sound_horizon(params, z, *, n_nodes=128):
    """Comoving sound horizon r_s(z) = int_z^inf c_s dz'/H [Mpc] (needs ``ombh2``).

    Integrated in the scale factor a = 1/(1+z), where a^2 H is regular at a = 0.

    Example
    -------
    >>> p = dict(PLANCK2018_LCDM)
    >>> 140 < float(sound_horizon(p, 1090.0)) < 150
    True
    """
    t, w = _gauss_legendre_unit(n_nodes)
    a_max = 1.0 / (1.0 + jnp.asarray(z))
    a = a_max[..., None] * t
    om, ok = params["Om"], _p(params, "Ok")
    w0, wa = _p(params, "w0"), _p(params, "wa")
    o_r = _omega_r(params, True)
    ode = 1.0 - om - ok - o_r
    de = jnp.exp(-3.0 * (1.0 + w0 + wa) * jnp.log(a) - 3.0 * wa * (1.0 - a))
    a2e = jnp.sqrt(o_r + om * a + ok * a**2 + ode * a**4 * de)  # a^2 E(a)
    baryon_photon = 3.0 * params["ombh2"] / (4.0 * OMEGA_GAMMA_H2)  # 3 rho_b / (4 rho_gamma) at a=1
    c_s = 1.0 / jnp.sqrt(3.0 * (1.0 + baryon_photon * a))  # in units of c
    return C_KM_S / params["H0"] * a_max * jnp.sum(w * c_s / a2e, axis=-1)


def cmb_distance_priors(params, design=None):
    """CMB compressed observables (R, l_A, omega_b) (Chen, Huang & Wang 2019 definitions).

    Example
    -------
    >>> r, l_a, wb = cmb_distance_priors(dict(PLANCK2018_LCDM))
    >>> abs(float(r) - 1.7502) < 0.005 and abs(float(l_a) - 301.47) < 1.0
    True
    """
    h = params["H0"] / 100.0
    z_star = z_star_hu_sugiyama(params["ombh2"], params["Om"] * h**2)
    d_m = transverse_comoving_distance(params, z_star, n_nodes=128)
    shift = jnp.sqrt(params["Om"]) * params["H0"] * d_m / C_KM_S
    acoustic_scale = math.pi * d_m / sound_horizon(params, z_star)
    return jnp.stack([shift, acoustic_scale, jnp.asarray(params["ombh2"], dtype=shift.dtype)])


# ---------------------------------------------------------------------------------------
# Experiments
# ---------------------------------------------------------------------------------------


def sn_redshifts(n_sn=1000, z_min=0.01, z_max=1.2, z_peak=0.4):
    """Deterministic, illustrative SN redshift sample (DES/Pantheon-like shape).

    Quantiles of p(z) ~ z^2 exp(-2 z / z_peak) truncated to [z_min, z_max] (peak at
    ``z_peak``), so forecasts are reproducible without random draws.

    Example
    -------
    >>> z = sn_redshifts(100)
    >>> z.shape, bool(z.min() >= 0.01 and z.max() <= 1.2)
    ((100,), True)
    """
    grid = np.linspace(z_min, z_max, 20001)
    density = grid**2 * np.exp(-2.0 * grid / z_peak)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp((np.arange(n_sn) + 0.5) / n_sn, cdf, grid)


def sn_experiment(
    z=None,
    *,
    sigma_int=0.12,
    sigma_lens=0.055,
    v_pec_km_s=300.0,
    name="SN",
):
    """SN Ia Hubble diagram: m(z) = mu(z) + M with independent Gaussian errors.

    Per-SN sigma^2 = sigma_int^2 + (sigma_lens z)^2 + [5/ln10 * v_pec/(c z)]^2: intrinsic
    plus measurement scatter, lensing (Jönsson et al. 2010, MNRAS 405, 535) and peculiar
    velocities.  ``z`` defaults to :func:`sn_redshifts` (1000 SNe, illustrative).

    Example
    -------
    >>> exp = sn_experiment(sn_redshifts(50))
    >>> exp.design.shape
    (50,)
    """
    z = sn_redshifts() if z is None else np.asarray(z, dtype=float)
    sigma_pec = 5.0 / math.log(10.0) * v_pec_km_s / (C_KM_S * z)
    sigma = np.sqrt(sigma_int**2 + (sigma_lens * z) ** 2 + sigma_pec**2)
    return ff.Experiment(sn_magnitude, ff.Gaussian(sigma=sigma), design=z, name=name)


def bao_experiment(survey=None, *, name="BAO"):
    """BAO distances with fractional Gaussian errors (default: :data:`DESI_DR1_LIKE`).

    ``survey`` maps "DV"/"DM"/"DH" to (redshifts, fractional errors).  The absolute
    sigma is the fractional error times the model prediction at the parameters the
    Fisher matrix is evaluated at, with ``jax.lax.stop_gradient`` so that the noise carries
    no parameter information (the usual "x% distance measurement" forecast).

    Example
    -------
    >>> exp = bao_experiment()
    >>> sorted(exp.design)
    ['z_DH', 'z_DM', 'z_DV']
    """
    survey = DESI_DR1_LIKE if survey is None else survey
    design, frac = {}, []
    for key in ("DV", "DM", "DH"):
        zs, errs = survey.get(key, ((), ()))
        design[f"z_{key}"] = np.asarray(zs, dtype=float)
        frac.append(np.asarray(errs, dtype=float))
    frac = np.concatenate(frac)

    def sigma(params, design):
        return frac * jax.lax.stop_gradient(bao_observables(params, design))

    return ff.Experiment(bao_observables, ff.Gaussian(sigma=sigma), design=design, name=name)


def cmb_prior_experiment(*, name="CMB distance prior"):
    """Planck 2018 compressed CMB likelihood as a Gaussian on (R, l_A, omega_b).

    Covariance: inverse of Chen, Huang & Wang (2019) Table I (ΛCDM, TT,TE,EE+lowE).
    Parameters used: H0, Om, ombh2 (and Ok, w0, wa if present).

    Example
    -------
    >>> cmb_prior_experiment().name
    'CMB distance prior'
    """
    return ff.Experiment(
        cmb_distance_priors, ff.Gaussian(cov=PLANCK2018_DISTANCE_PRIOR_COV), name=name
    )


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
