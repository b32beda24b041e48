r"""Point-source / finite-source point-lens (Paczyński) microlensing light curves.

Magnification of a point source by a point lens (Paczyński 1986, ApJ 304, 1), with the
lens-source separation in Einstein radii
:math:`u(t) = \sqrt{u_0^2 + ((t-t_0)/t_E)^2}` (rectilinear motion):

.. math::

    A(u) = \frac{u^2+2}{u\sqrt{u^2+4}},\qquad F(t) = F_s\,A(u(t)) + F_b .

:math:`A \to 1` for :math:`u\to\infty`, :math:`A \simeq 1/u` for :math:`u \ll 1`, and
:math:`A(1) = 3/\sqrt 5`.

Finite source (uniform disk of radius :math:`\rho` in Einstein radii; Witt & Mao 1994, ApJ
430, 505; Gould 1994, ApJ 421, L71): :math:`A_{\rm fs}(u,\rho)` is the point-source
magnification averaged over the disk.  In polar coordinates centred on the *lens*, the
radial integral is analytic because :math:`A(r)\,r = (r^2+2)/\sqrt{r^2+4}
= \frac{d}{dr}\big[\tfrac12 r\sqrt{r^2+4}\big]` (the approach of Lee et al. 2009, ApJ 695,
200), leaving one smooth angular integral done with fixed Gauss-Legendre nodes:

.. math::

    A_{\rm fs} = \frac{1}{\pi\rho^2}\int d\theta\,
        \big[g(r_+(\theta)) - g(r_-(\theta))\big],\qquad g(r) = r\sqrt{r^2+4},\quad
    r_\pm = u\cos\theta \pm \sqrt{\rho^2 - u^2\sin^2\theta},

with :math:`\theta\in[0,\pi]`, :math:`r_- \to 0` when the lens is inside the disk
(:math:`u<\rho`), and :math:`\theta\in[0,\arcsin(\rho/u)]` otherwise (substituted as
:math:`\theta = \theta_{\max}\sin s` to remove the square-root end-point behaviour).  At
:math:`u = 0` this gives the exact :math:`\sqrt{\rho^2+4}/\rho`.  With 64 nodes per piece
it agrees with a direct 2-D quadrature to ~1e-13 relative, degrading to ~1e-8 only for
:math:`|u-\rho| \lesssim 10^{-6}\rho`.
Everything is differentiable (jacfwd/jit/vmap) in :math:`u_0, t_0, t_E, \rho`.

Parameters: ``t0`` [d], ``u0``, ``tE`` [d], flux either as (``Fs``, ``Fb``) or as
(``F_base``, ``fs``) with :math:`F_s = f_sF_{\rm base}`, :math:`F_b = (1-f_s)F_{\rm base}`;
optional ``rho`` switches on the finite-source magnification.  Fluxes are in arbitrary
linear units (the noise model fixes their scale).

Photometric noise: constant (per-point) sigma, or flux-dependent
:math:`\sigma^2 = F/g + \sigma_0^2` (photon noise with gain :math:`g` plus a floor), passed
as a callable so that the Fisher matrix includes the covariance term.

Example
-------
>>> import numpy as np, fisherforecast as ff
>>> from fisherforecast.models import microlensing as ml
>>> t = np.linspace(-40.0, 40.0, 400)
>>> exp = ml.experiment(t, sigma=0.01)
>>> fid = {"t0": 0.0, "u0": 0.1, "tE": 20.0, "Fs": 1.0, "Fb": 0.2}
>>> fm = ff.fisher(exp, fid)                    # doctest: +SKIP
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._x64 import wrap_public

__all__ = [
    "OGLE_LIKE_EVENT",
    "experiment",
    "finite_source_magnification",
    "flux_dependent_sigma",
    "impact_parameter",
    "light_curve",
    "paczynski_magnification",
]

#: Illustrative bulge event: t_E ~ 20 d is the typical Galactic-bulge timescale (e.g.
#: Mróz et al. 2017, Nature 548, 183); fluxes in units of the source flux.
OGLE_LIKE_EVENT = {"t0": 0.0, "u0": 0.1, "tE": 20.0, "Fs": 1.0, "Fb": 0.2}


def paczynski_magnification(u):
    """Point-source point-lens magnification A(u) = (u^2+2)/(u sqrt(u^2+4)).

    Example
    -------
    >>> abs(float(paczynski_magnification(1.0)) - 3 / 5**0.5) < 1e-6
    True
    """
    u = jnp.asarray(u)
    return (u**2 + 2.0) / (u * jnp.sqrt(u**2 + 4.0))


def impact_parameter(t, t0, u0, tE):
    """Lens-source separation u(t) = sqrt(u0^2 + ((t - t0)/tE)^2) in Einstein radii.

    Example
    -------
    >>> abs(float(impact_parameter(10.0, 0.0, 0.3, 10.0)) - 1.09**0.5) < 1e-6
    True
    """
    tau = (jnp.asarray(t) - t0) / tE
    return jnp.sqrt(u0**2 + tau**2)


def _gauss_legendre_unit(n):
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def _g(r):
    # Antiderivative of A(r) r:  d/dr [r sqrt(r^2+4)/2] = (r^2+2)/sqrt(r^2+4).
    return r * jnp.sqrt(r * r + 4.0)


def finite_source_magnification(u, rho, n_nodes=64):
    """Uniform-disk finite-source magnification A_fs(u, rho) (see module docstring).

    Example
    -------
    >>> rho = 0.1
    >>> a0 = float(finite_source_magnification(0.0, rho))
    >>> abs(a0 / ((rho**2 + 4) ** 0.5 / rho) - 1) < 1e-5
    True
    """
    u = jnp.asarray(u)
    t, w = _gauss_legendre_unit(n_nodes)
    inside = u < rho
    # Evaluate each branch on arguments valid for it (double-where keeps gradients finite).
    u_in = jnp.where(inside, u, 0.5 * rho)[..., None]
    u_out = jnp.where(inside, 2.0 * rho, u)[..., None]
    rho_b = jnp.asarray(rho)[..., None] if jnp.ndim(rho) else rho

    # Lens inside the disk: theta in [0, pi], split at pi/2 where r_+ develops a kink as
    # u -> rho; r_- is replaced by the lens position r = 0.
    theta = jnp.concatenate([0.5 * math.pi * t, 0.5 * math.pi * (1.0 + t)])
    w_theta = 0.5 * math.pi * jnp.concatenate([w, w])
    root_in = jnp.sqrt(rho_b**2 - (u_in * jnp.sin(theta)) ** 2)
    r_plus_in = u_in * jnp.cos(theta) + root_in
    a_in = jnp.sum(w_theta * _g(r_plus_in), axis=-1)

    # Lens outside: theta = theta_max sin(s), s in [0, pi/2].
    theta_max = jnp.arcsin(rho_b / u_out)
    s = 0.5 * math.pi * t
    theta_o = theta_max * jnp.sin(s)
    jac = theta_max * jnp.cos(s) * 0.5 * math.pi * w
    root_out = jnp.sqrt(jnp.maximum(rho_b**2 - (u_out * jnp.sin(theta_o)) ** 2, 0.0))
    cos_o = u_out * jnp.cos(theta_o)
    a_out = jnp.sum(jac * (_g(cos_o + root_out) - _g(cos_o - root_out)), axis=-1)

    return jnp.where(inside, a_in, a_out) / (math.pi * rho**2)


def _fluxes(params):
    if "Fs" in params:
        return params["Fs"], params["Fb"]
    return params["fs"] * params["F_base"], (1.0 - params["fs"]) * params["F_base"]


def light_curve(params, t):
    """Blended flux F(t) = Fs A(u(t)) + Fb; finite source if ``rho`` is in params.

    Example
    -------
    >>> import numpy as np
    >>> f = light_curve(OGLE_LIKE_EVENT, np.array([0.0, 1e4]))
    >>> round(float(f[1]), 6)   # far from the peak: Fs + Fb
    1.2
    """
    u = impact_parameter(t, params["t0"], params["u0"], params["tE"])
    if "rho" in params:
        magnification = finite_source_magnification(u, params["rho"])
    else:
        magnification = paczynski_magnification(u)
    f_s, f_b = _fluxes(params)
    return f_s * magnification + f_b


def flux_dependent_sigma(gain, floor=0.0):
    """Noise callable sigma(params, t) = sqrt(F(t)/gain + floor^2) for ``ff.Gaussian``.

    ``gain`` converts flux units to detected photons (Poisson variance F/gain in flux
    units squared); ``floor`` is a systematic floor in flux units.

    Example
    -------
    >>> import numpy as np
    >>> sig = flux_dependent_sigma(gain=1e4, floor=1e-3)
    >>> sig(OGLE_LIKE_EVENT, np.array([1e4])).shape
    (1,)
    """

    def sigma(params, t):
        return jnp.sqrt(light_curve(params, t) / gain + floor**2)

    return sigma


def experiment(t, sigma=0.01, *, name="microlensing"):
    """``ff.Experiment`` for a light curve sampled at times ``t`` (days).

    ``sigma``: float or per-epoch array (flux units), or a callable ``(params, t)`` such as
    :func:`flux_dependent_sigma`.

    Example
    -------
    >>> import numpy as np
    >>> experiment(np.linspace(-30, 30, 100)).design.shape
    (100,)
    """
    t = np.asarray(t, dtype=float)
    return ff.Experiment(light_curve, ff.Gaussian(sigma=sigma), design=t, name=name)


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
