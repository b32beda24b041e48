"""The optimiser's coordinates for the fits of a profile: Fisher-whitened, with a predictor.

The inner fits minimise ``½(−2 ln L)`` over the free parameters ``θ_f = θ̂_f + P x``. With
``P = F_ff^{-1/2}`` (the symmetric inverse square root of the Fisher block of the free
parameters), the Hessian in ``x`` is close to the identity near the best fit, in every
direction and not only along the axes: a quasi-Newton method then takes nearly Newton steps
from its first one. Scaling by the
conditional errors ``1/sqrt(F_jj)`` alone leaves the correlations, and a fit along a ridge
of correlated parameters then takes many steps.

Along the grid, the free parameters that minimise at ψ move, to first order, by
``dθ_f/dψ = −F_ff^{-1} F_fψ`` (the Gaussian conditional mean): in ``x`` that is
``−F_ff^{-1/2} F_fψ``, the starting slope of the predictor. Weak or null directions of
``F_ff`` are floored (:data:`EIGEN_FLOOR` relative to the diagonal scaling), so that a
non-identifiable combination does not become an arbitrarily long unit step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._linalg import pinv_sigma
from .factor import NULL_COMPONENT_TOL, STRUCTURAL_RTOL, reference_scale

#: Eigenvalues of the correlation form ``D F_ff D`` (``D = diag(F_jj)^{-1/2}``) below this are
#: raised to it: a unit step in ``x`` is then at most ``1/sqrt(EIGEN_FLOOR)`` = 100 conditional
#: errors along the weakest direction.
EIGEN_FLOOR = 1e-4


class Coordinates(NamedTuple):
    """``θ_f = θ̂_f + precond @ x``; ``slope`` is ``dx/dψ`` from the Fisher matrix (zeros for
    a fit of all parameters); ``psi_scale`` the conditional error of ψ (1 without ψ)."""

    precond: np.ndarray
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


def _correlation(F, scales):
    """``D F D`` with ``D = scales``; rows of parameters without information are unit."""
    C = scales[:, None] * F * scales[None, :]
    dead = ~(np.diag(F) > 0)
    C[dead, :] = 0.0
    C[:, dead] = 0.0
    C[dead, dead] = 1.0
    return 0.5 * (C + C.T)


def whitened(F, scales, free, k=None) -> Coordinates:
    """The coordinates of the fits over the parameters `free` (indices into `F`), and the
    predictor's slope along parameter `k` (``None``: a fit of all of them).

    `scales` are the diagonal scales (``1/sqrt(F_jj)``, or a fallback where ``F_jj`` is 0)."""
    F = np.asarray(F, dtype=np.float64)
    D = np.asarray(scales, dtype=np.float64)[free]
    C = _correlation(F[np.ix_(free, free)], D)
    if not np.all(np.isfinite(C)):  # a non-finite Fisher matrix: the diagonal scaling
        return Coordinates(np.diag(D), np.zeros(D.size), 1.0)
    lam, V = np.linalg.eigh(C)
    lam = np.maximum(lam, EIGEN_FLOOR)
    root_inv = (V / np.sqrt(lam)) @ V.T  # C^{-1/2}
    precond = D[:, None] * root_inv
    if k is None:
        return Coordinates(precond, np.zeros(D.size), 1.0)
    F_fk = F[free, k]
    F_kk = F[k, k]
    if not (np.isfinite(F_kk) and F_kk > 0 and np.all(np.isfinite(F_fk))):
        return Coordinates(precond, np.zeros(D.size), 1.0)
    # dx/dψ = P^{-1} dθ_f/dψ = C^{1/2} D^{-1} (−D C^{-1} D F_fψ) = −C^{-1/2} D F_fψ
    slope = -root_inv @ (D * F_fk)
    return Coordinates(precond, slope, float(1.0 / np.sqrt(F_kk)))


__all__ = ["EIGEN_FLOOR", "Coordinates", "sigma_and_scales", "whitened"]
