"""The optimiser's coordinates for the fits of a profile, and the path predictor.

The inner fits minimise ``½(−2 ln L)`` over the free parameters ``θ_f = θ̂_f + D x``, with
``D = diag(F_jj)^{-1/2}`` (the conditional Fisher errors): one unit of ``x`` is one
conditional error of each parameter, so the trust region of the fit (:mod:`.profile_fit`)
bounds every step by a few of them, whatever the correlations. The Hessian in ``x`` is the
Fisher correlation form ``C = D F_ff D``: Gauss–Newton steps take the correlations in whole.
A box of bounds on ``θ`` stays a box in ``x``.

Along the grid, the free parameters that minimise at ψ move, to first order, by
``dθ_f/dψ = −F_ff^{-1} F_fψ`` (the Gaussian conditional mean): in ``x`` that is
``−C^{-1} D F_fψ``, the starting slope of the predictor. Weak or null directions of ``C``
are floored (:data:`EIGEN_FLOOR`), so that a non-identifiable combination does not become an
arbitrarily long predicted move.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._linalg import pinv_sigma
from .factor import NULL_COMPONENT_TOL, STRUCTURAL_RTOL, reference_scale

#: Eigenvalues of the correlation form ``D F_ff D`` (``D = diag(F_jj)^{-1/2}``) below this are
#: raised to it in the predictor's slope.
EIGEN_FLOOR = 1e-4


class Coordinates(NamedTuple):
    """``θ_f = θ̂_f + scale * x``; ``slope`` is ``dx/dψ`` from the Fisher matrix (zeros for
    a fit of all parameters); ``psi_scale`` the conditional error of ψ (1 without ψ)."""

    scale: np.ndarray
    slope: np.ndarray
    psi_scale: float


def sigma_and_scales(F, names, point, theta):
    """Marginal Fisher σ per name and the optimiser's coordinate scales ``1/sqrt(F_jj)``."""
    # The structural rank rule on singular values (s > rtol·s_max) is the eigenvalue rule
    # λ > rtol²·λ_max; null-space membership is judged in ln-coordinates, as the report does.
    values = pinv_sigma(
        np.asarray(F, dtype=np.float64),
        rtol=STRUCTURAL_RTOL**2,
        scale=reference_scale(names, point),
        null_tol=NULL_COMPONENT_TOL,
    )
    sigma = {n: float(v) for n, v in zip(names, values, strict=True)}
    diag = np.diag(F)
    scales = np.where(
        diag > 0,
        1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)),
        np.where(theta != 0, np.abs(theta), 1.0),
    )
    return sigma, scales, np.asarray(F, dtype=np.float64)


#: A bounded parameter's coordinate unit is at most this fraction of its bounds' width: a
#: parameter that the data hardly constrain (conditional error wider than its bounds) then
#: crosses its range in several trust-region steps, not in one.
BOX_FRACTION = 0.1


def box_scales(scales, lower, upper):
    """`scales` capped at :data:`BOX_FRACTION` of the width of finite bounds."""
    width = np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64)
    cap = np.where(np.isfinite(width) & (width > 0), BOX_FRACTION * width, np.inf)
    return np.minimum(np.asarray(scales, dtype=np.float64), cap)


def _correlation(F, scales):
    """``D F D`` with ``D = scales``; rows of parameters without information are unit."""
    C = scales[:, None] * F * scales[None, :]
    dead = ~(np.diag(F) > 0)
    C[dead, :] = 0.0
    C[:, dead] = 0.0
    C[dead, dead] = 1.0
    return 0.5 * (C + C.T)


def fit_coordinates(F, scales, free, k=None) -> Coordinates:
    """The coordinates of the fits over the parameters `free` (indices into `F`), and the
    predictor's slope along parameter `k` (``None``: a fit of all of them).

    `scales` are the diagonal scales (``1/sqrt(F_jj)``, or a fallback where ``F_jj`` is 0)."""
    F = np.asarray(F, dtype=np.float64)
    D = np.asarray(scales, dtype=np.float64)[free]
    flat = Coordinates(D, np.zeros(D.size), 1.0)
    if k is None:
        return flat
    C = _correlation(F[np.ix_(free, free)], D)
    F_fk = F[free, k]
    F_kk = F[k, k]
    finite = np.all(np.isfinite(C)) and np.all(np.isfinite(F_fk)) and np.isfinite(F_kk)
    if not (finite and F_kk > 0):
        return flat
    lam, V = np.linalg.eigh(C)
    lam = np.maximum(lam, EIGEN_FLOOR)
    # dx/dψ = D^{-1} dθ_f/dψ = −D^{-1} F_ff^{-1} F_fψ = −C^{-1} D F_fψ
    slope = -(V / lam) @ (V.T @ (D * F_fk))
    return Coordinates(D, slope, float(1.0 / np.sqrt(F_kk)))


__all__ = [
    "BOX_FRACTION",
    "EIGEN_FLOOR",
    "Coordinates",
    "box_scales",
    "fit_coordinates",
    "sigma_and_scales",
]
