"""The fits of the profiles and of the best fit: BFGS on the host, on the compiled
evaluation that every analysis shares.

Each evaluation at θ is one call of the engine's :func:`~.._engine.evaluation_kernel` (the
model's mean, its Jacobian ``J`` and the Fisher matrix ``F(θ)``: compiled once for
``ff.fisher`` and ``ff.identifiability``, and kept in the disk cache) and one call of a small
kernel of the noise model alone (:func:`chi2_gradient`: −2 ln L and its gradient
``Jᵀ∂/∂μ + ∂/∂θ``). So a profile compiles no model program of its own: a first call costs
about what a warm one does.

``scipy.optimize.minimize(method="BFGS")`` takes the steps, on ``½(−2 ln L)`` in the
whitened coordinates of :mod:`.profile_coords`, where its Hessian is close to the identity.
A fit after a restart starts BFGS from the inverse of the Fisher Hessian there (its first
step is a Fisher-scoring step); along a grid each fit starts from the previous point's final
inverse-Hessian estimate. That takes 5–8 evaluations per point where BFGS from the identity,
in coordinates scaled only by the conditional errors, took 16–21 (the PK/PD tutorial).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import numpy as np
from scipy.optimize import minimize

from .._compile import cached_kernel
from .._engine import evaluation_kernel, params_from_vector
from .profile_coords import Coordinates
from .profile_kernels import neg2_log_like

#: The predictor's step is at most this many times the Fisher predictor's (plus one unit):
#: a secant from two poorly converged fits must not throw the next start far off the path.
PREDICT_BOUND = 3.0


class FitProblem(NamedTuple):
    """What the fits of one call share."""

    experiments: tuple
    data: tuple
    fixed: dict
    names: tuple
    theta_ref: np.ndarray  # the fiducial: the truth of the expected deviance
    expected: bool  # Asimov: the expected deviance instead of −2 ln L of the data
    mode: str  # "forward" or "reverse": the Jacobian's mode
    tol: float
    max_steps: int


@cached_kernel(static_argnames=("names", "expected"))
def chi2_gradient(experiments, data, means, jacobians, fixed, theta, theta_ref, names, expected):
    """−2 ln L (or the expected deviance) from the models' means, and its gradient in θ:
    through the means (their Jacobians, real or complex) and through the noise model's own
    dependence on the parameters."""

    def total(th):
        params = params_from_vector(th, names, fixed)
        params0 = params_from_vector(theta_ref, names, fixed)
        out = 0.0
        for exp, d, m, J in zip(experiments, data, means, jacobians, strict=True):
            # The mean to first order in θ: its derivative is J, whatever the dtype.
            m = m + (J @ (th - theta)).reshape(m.shape)
            out = out + neg2_log_like(exp, d, m, params, params0, expected)
        return out

    grad, value = jax.jacfwd(lambda th: (total(th),) * 2, has_aux=True)(theta)
    return value, grad


def evaluate(problem: FitProblem, theta):
    """−2 ln L at θ, its gradient and ``2 F(θ)``; ``(inf, None, None)`` where the model, its
    derivatives or the likelihood are not finite (or the model fails there)."""
    names = problem.names
    fid = dict(problem.fixed)
    fid.update({n: np.float64(v) for n, v in zip(names, theta, strict=True)})
    try:
        evs = [evaluation_kernel(exp, fid, names, problem.mode)[0] for exp in problem.experiments]
        out = chi2_gradient(
            problem.experiments,
            problem.data,
            tuple(ev.mean for ev in evs),
            tuple(ev.jacobian for ev in evs),
            problem.fixed,
            np.asarray(theta, dtype=np.float64),
            problem.theta_ref,
            names=names,
            expected=problem.expected,
        )
        (value, grad), fishers = jax.device_get((out, [ev.fisher for ev in evs]))
    except (RuntimeError, FloatingPointError, ValueError):
        # e.g. an ODE solve that raises (throw=True) or a NaN check of the model
        return math.inf, None, None
    grad = np.asarray(grad, dtype=np.float64)
    hess = 2.0 * sum(np.asarray(F, dtype=np.float64) for F in fishers)
    value = float(value)
    if not (math.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return math.inf, None, None
    return value, grad, hess


class _Local(NamedTuple):
    """The fit's coordinates: ``θ = base; θ[free] += precond @ x; θ[k] = psi``."""

    base: np.ndarray
    precond: np.ndarray
    free: np.ndarray
    k: int | None
    psi: float

    def theta(self, x):
        th = np.array(self.base, dtype=np.float64)
        th[self.free] += self.precond @ x
        if self.k is not None:
            th[self.k] = self.psi
        return th


class FitResult(NamedTuple):
    x: np.ndarray
    theta: np.ndarray
    value: float  # −2 ln L at theta (NaN where every start failed)
    converged: bool
    steps: int  # evaluations of the model (each with its Jacobian)
    hess_inv: np.ndarray  # BFGS's final inverse Hessian: the next grid point's start


def _positive_definite(A) -> bool:
    if not np.all(np.isfinite(A)):
        return False
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return False
    return True


def _initial_inverse(H):
    """The inverse of the Fisher Hessian where it is positive definite, else the identity."""
    try:
        inv = np.linalg.inv(np.linalg.cholesky(H))
    except np.linalg.LinAlgError:
        return np.eye(H.shape[0])
    out = inv.T @ inv
    return out if np.all(np.isfinite(out)) else np.eye(H.shape[0])


def fit(problem: FitProblem, local: _Local, starts, hess_inv0=None) -> FitResult:
    """Minimise −2 ln L over `local`'s coordinates from the first of `starts` (whitened
    points) where it is finite; the next start where the fit ends non-finite.

    BFGS (``scipy.optimize.minimize``) starts from `hess_inv0`, or from the inverse of the
    Fisher Hessian at the start (its first step is then a Fisher-scoring step)."""
    last = {}

    def at(x):
        key = x.tobytes()
        if key not in last:
            last.clear()
            last[key] = evaluate(problem, local.theta(x))
        return last[key]

    def fun(x):
        value, grad, _ = at(x)
        if grad is None:
            return math.inf, np.full(x.size, np.nan)
        return 0.5 * value, 0.5 * local.precond.T @ grad[local.free]

    for x0 in starts:
        x0 = np.asarray(x0, dtype=np.float64)
        value0, _, H = at(x0)
        if not math.isfinite(value0):
            continue
        if hess_inv0 is None or not _positive_definite(hess_inv0):
            sub = H[np.ix_(local.free, local.free)]
            start_inv = _initial_inverse(0.5 * local.precond.T @ sub @ local.precond)
        else:
            start_inv = hess_inv0
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # A line search that meets a non-finite point warns; the status says it.
            warnings.simplefilter("ignore")
            res = minimize(
                fun,
                x0,
                jac=True,
                method="BFGS",
                options={
                    "gtol": 0.5 * problem.tol,
                    "maxiter": problem.max_steps,
                    "hess_inv0": start_inv,
                },
            )
        value = 2.0 * float(res.fun)
        if not math.isfinite(value):
            continue
        # Status 2 ("precision loss") is the line search failing on round-off at the
        # optimum: converged if the gradient is at the tolerance's scale.
        grad = np.asarray(res.jac, dtype=np.float64)
        ok = res.status == 0 or float(np.max(np.abs(grad))) <= 10.0 * problem.tol
        hess_inv = np.asarray(res.hess_inv, dtype=np.float64)
        hess_inv = 0.5 * (hess_inv + hess_inv.T)
        if not _positive_definite(hess_inv):
            hess_inv = start_inv
        return FitResult(res.x, local.theta(res.x), value, bool(ok), int(res.nfev), hess_inv)
    x = np.asarray(starts[0], dtype=np.float64)
    eye = np.eye(x.size) if hess_inv0 is None else hess_inv0
    return FitResult(x, local.theta(x), math.nan, False, 0, eye)


def global_fit(problem: FitProblem, theta0, precond) -> FitResult:
    """The best fit from `theta0` in the coordinates ``θ = θ0 + precond @ x``."""
    every = np.arange(len(problem.names))
    local = _Local(np.asarray(theta0, dtype=np.float64), precond, every, None, math.nan)
    return fit(problem, local, [np.zeros(every.size)])


def profile_scan(problem: FitProblem, coords: Coordinates, theta_start, k, free, grid, resets):
    """−2 ln L of parameter `k` along `grid`, the others re-optimised (visited in the given
    order; `resets` marks the points that restart from `theta_start`).

    Each fit starts from the previous solution moved along the path's secant through the
    last two solutions (the Fisher slope after a restart or a short step), bounded by
    :data:`PREDICT_BOUND`; where that start fails, from the previous solution itself.
    Returns values, parameter vectors, convergence flags and steps, in `grid`'s order."""
    theta_start = np.asarray(theta_start, dtype=np.float64)
    n, m = len(grid), len(free)
    values, steps = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    thetas, converged = np.tile(theta_start, (n, 1)), np.zeros(n, dtype=bool)
    init = (np.zeros(m), float(theta_start[k]), np.asarray(coords.slope, dtype=np.float64))
    x_prev, psi_prev, slope = init
    hess_inv = None
    for i, (psi, reset) in enumerate(zip(grid, resets, strict=True)):
        if reset:
            (x_prev, psi_prev, slope), hess_inv = init, None
        dpsi = float(psi) - psi_prev
        move = slope * dpsi
        bound = PREDICT_BOUND * float(np.linalg.norm(init[2] * dpsi)) + 1.0
        norm = float(np.linalg.norm(move))
        if norm > bound:
            move *= bound / norm
        local = _Local(theta_start, coords.precond, free, k, float(psi))
        res = fit(problem, local, [x_prev + move, x_prev], hess_inv)
        values[i], thetas[i], converged[i], steps[i] = (
            res.value,
            res.theta,
            res.converged and math.isfinite(res.value),
            res.steps,
        )
        if not math.isfinite(res.value):
            continue
        # A secant over a step shorter than a tenth of ψ's error is mostly fit noise.
        if abs(dpsi) > 0.1 * coords.psi_scale:
            slope = (res.x - x_prev) / dpsi
        x_prev, psi_prev, hess_inv = res.x, float(psi), res.hess_inv
    return values, thetas, converged, steps


__all__ = ["FitProblem", "FitResult", "evaluate", "fit", "global_fit", "profile_scan"]
