"""The fits of the profiles and of the best fit: Fisher scoring in a trust region, on the
host, on the compiled evaluation that every analysis shares.

Each evaluation at θ is one call of the engine's :func:`~.._engine.evaluation_kernel` (the
model's mean, its Jacobian ``J`` and the Fisher matrix ``F(θ)``: compiled once for
``ff.fisher`` and ``ff.identifiability``, and kept in the disk cache) and one call of a small
kernel of the noise model alone (:func:`chi2_gradient`: −2 ln L and its gradient
``Jᵀ∂/∂μ + ∂/∂θ``). So a profile compiles no model program of its own: a first call costs
about what a warm one does.

fides (the interior trust-region reflective method of Coleman and Li, which pyPESTO runs on
PEtab problems) takes the steps, on ``½(−2 ln L)`` in the coordinates of
:mod:`.profile_coords` (one unit is one conditional Fisher error), within bounds where given,
with the Fisher matrix as the Hessian: Gauss–Newton steps, which take the correlations
between parameters in whole, inside a trust region that keeps each step within a few
conditional errors until the quadratic model proves good. Where Gauss–Newton slows down
(the residuals' own curvature, which the Fisher matrix leaves out), the fit switches to
BFGS started from the Fisher matrix. A parameter that
the data hardly constrain (a rate at a saturating plateau, whose Fisher error is many
decades) then moves in small steps instead of one step to where the model's ODE is too
stiff to solve.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import jax
import numpy as np

from .._compile import cached_kernel
from .._engine import evaluation_kernel, params_from_vector
from .profile_coords import Coordinates
from .profile_kernels import neg2_log_like

#: The predictor's step is at most this many times the Fisher predictor's (plus one unit):
#: a secant from two poorly converged fits must not throw the next start far off the path.
PREDICT_BOUND = 3.0

#: The trust region's first radius, in conditional Fisher errors.
TRUST_RADIUS = 1.0

#: Iterations of Fisher scoring that leave the trust region unchanged before a fit switches
#: to BFGS (fides.HybridFixed).
SWITCH_TO_BFGS = 2

#: Restarts of a bounded fit that fides stopped on a round-off step past a bound.
BOUND_RESTARTS = 3


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
    lower: np.ndarray | None = None  # bounds on θ (None, ±inf: none), kept at every
    upper: np.ndarray | None = None  # evaluation of a fit


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
    if not np.all(np.isfinite(theta)):
        return math.inf, None, None
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
    """The fit's coordinates: ``θ = base; θ[free] += scale * x; θ[k] = psi``."""

    base: np.ndarray
    scale: np.ndarray
    free: np.ndarray
    k: int | None
    psi: float

    def theta(self, x):
        th = np.array(self.base, dtype=np.float64)
        th[self.free] += self.scale * x
        if self.k is not None:
            th[self.k] = self.psi
        return th

    def box(self, problem: FitProblem):
        """The bounds of the free parameters in ``x`` (``None``: unbounded)."""
        if problem.lower is None or problem.upper is None:
            return None
        lo, hi = problem.lower[self.free], problem.upper[self.free]
        if not (np.any(np.isfinite(lo)) or np.any(np.isfinite(hi))):
            return None
        base = self.base[self.free]
        return (lo - base) / self.scale, (hi - base) / self.scale


class FitResult(NamedTuple):
    x: np.ndarray
    theta: np.ndarray
    value: float  # −2 ln L at theta (NaN where every start failed)
    converged: bool
    steps: int  # evaluations of the model (each with its Jacobian)


def _objective(problem: FitProblem, local: _Local):
    """``½(−2 ln L)``, its gradient and its Gauss–Newton Hessian (the Fisher matrix) in
    `local`'s coordinates, sharing one evaluation per point; a failed point is infinite."""
    last = {}
    count = [0]

    def at(x):
        key = x.tobytes()
        if key not in last:
            last.clear()
            count[0] += 1
            last[key] = evaluate(problem, local.theta(x))
        return last[key]

    def fun(x):
        return 0.5 * at(x)[0]

    def jac(x):
        grad = at(x)[1]
        if grad is None:  # a failed trial point: rejected, its gradient unused
            return np.zeros(x.size)
        return 0.5 * local.scale * grad[local.free]

    def hess(x):
        H = at(x)[2]
        if H is None:
            return np.eye(x.size)
        sub = H[np.ix_(local.free, local.free)]
        out = 0.5 * local.scale[:, None] * sub * local.scale[None, :]
        return 0.5 * (out + out.T)

    return fun, jac, hess, count


class _Minimum(NamedTuple):
    x: np.ndarray
    value: float  # ½(−2 ln L)
    grad: np.ndarray  # the gradient there (projected on the box's free directions)
    converged: bool
    evaluations: int


def _minimize(problem: FitProblem, objective, x0, box, radius) -> _Minimum:
    """One fit from `x0` with fides (the interior trust-region reflective method of Coleman
    and Li, within `box`; unbounded where it is ``None``): Fisher-scoring steps, switching
    to BFGS (started from the Fisher matrix) once they stop shrinking or growing the trust
    region, where the residuals' own curvature, which the Fisher matrix leaves out, slows
    Gauss–Newton down."""
    import fides  # its import takes ~1 s; only profiles and best fits need it

    fun, jac, hess, count = objective  # the start x0 is already evaluated (and cached)
    n = np.size(x0)
    lo, hi = (np.full(n, -np.inf), np.full(n, np.inf)) if box is None else box
    options = {
        fides.Options.MAXITER: problem.max_steps,
        fides.Options.GATOL: 0.5 * problem.tol,
        # −2 ln L of an ODE model carries the solver's error (rtol ~1e-8): a decrease
        # below 1e-8 (absolute, and relative) is not progress.
        fides.Options.FATOL: 1e-8,
        fides.Options.FRTOL: 1e-8,
        fides.Options.DELTA_INIT: radius,
        # The exact trust-region step (a few parameters: one small eigenproblem per step),
        # not fides' default 2-D subspace, which takes more steps per fit.
        fides.Options.SUBSPACE_DIM: fides.SubSpaceDim.FULL,
    }
    for _ in range(BOUND_RESTARTS + 1):
        opt = fides.Optimizer(
            lambda x: (fun(x), jac(x), hess(x)),
            ub=hi,
            lb=lo,
            verbose=logging.WARNING,
            options=options,
            hessian_update=fides.HybridFixed(fides.BFGS(), switch_iteration=SWITCH_TO_BFGS),
        )
        try:
            value, x, grad, _ = opt.minimize(x0, hess0="hess")
            break
        except RuntimeError:
            # fides stops on a step that lands past a bound by round-off (1e-21): go on
            # from its best point, moved inside.
            if opt.exitflag != fides.ExitFlag.EXCEEDED_BOUNDARY:
                raise
            x0 = _inside(np.asarray(opt.x_min, dtype=np.float64), box)
            value, x, grad = opt.fval_min, opt.x_min, opt.grad_min
    x = np.asarray(x, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    if box is not None:
        # The gradient on the box's free directions: a parameter held at its bound by a
        # gradient that points outwards is at its constrained optimum.
        near = 2.0 * _margin(box)
        grad = np.where(
            ((x - lo <= near) & (grad > 0)) | ((hi - x <= near) & (grad < 0)), 0.0, grad
        )
    return _Minimum(x, float(value), grad, int(opt.exitflag) > 0, count[0])


def _margin(box):
    lo, hi = box
    width = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    return np.minimum(1e-6 * width, 1e-3)


def _inside(x, box):
    """`x` moved strictly inside the box (an interior-point method starts there)."""
    if box is None:
        return x
    margin = _margin(box)
    return np.clip(x, box[0] + margin, box[1] - margin)


def fit(problem: FitProblem, local: _Local, starts, radius=TRUST_RADIUS) -> FitResult:
    """Minimise −2 ln L over `local`'s coordinates from the first of `starts` where it is
    finite; the next start where the fit ends non-finite.

    Fisher scoring in a trust region (:func:`_minimize`): Gauss–Newton steps with the
    Hessian ``2F(θ)`` of every evaluation, the first at most `radius` conditional errors
    long (:data:`TRUST_RADIUS`, or along a grid twice the previous fit's correction), so
    that a weakly determined combination is never thrown far in one step. Bounds on the
    parameters (``problem.lower``/``upper``) hold at every evaluation."""
    box = local.box(problem)
    objective = _objective(problem, local)
    fun = objective[0]
    for x0 in starts:
        x0 = _inside(np.asarray(x0, dtype=np.float64), box)
        if not math.isfinite(fun(x0)):
            continue
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = _minimize(problem, objective, x0, box, float(radius))
        value = 2.0 * res.value
        if not (math.isfinite(value) and np.all(np.isfinite(res.x))):
            continue
        # A trust region that shrank to nothing is round-off at the optimum: converged if
        # the gradient is at the tolerance's scale.
        ok = res.converged or float(np.max(np.abs(res.grad))) <= 10.0 * problem.tol
        return FitResult(res.x, local.theta(res.x), value, bool(ok), res.evaluations)
    x = np.asarray(starts[0], dtype=np.float64)
    return FitResult(x, local.theta(x), math.nan, False, 0)


def global_fit(problem: FitProblem, theta0, scale) -> FitResult:
    """The best fit from `theta0` in the coordinates ``θ = θ0 + scale * x``."""
    every = np.arange(len(problem.names))
    local = _Local(np.asarray(theta0, dtype=np.float64), scale, every, None, math.nan)
    return fit(problem, local, [np.zeros(every.size)])


def _jumped(value, value_prev, psi, psi_prev, psi_hat, psi_scale) -> bool:
    """Whether −2 ln L rose from the previous grid point by more than the Fisher
    profile can (with ψ's conditional error, which overstates the rise), plus one: the fit
    from the predicted start has jumped to another, worse, minimum."""
    if not (math.isfinite(value) and math.isfinite(value_prev)):
        return False
    near, far = abs(psi_prev - psi_hat), abs(psi - psi_hat)
    bound = max(far**2 - near**2, 0.0) / psi_scale**2
    return value - value_prev > bound + 1.0


def profile_scan(
    problem: FitProblem, coords: Coordinates, theta_start, k, free, grid, resets, psi_hat=None
):
    """−2 ln L of parameter `k` along `grid`, the others re-optimised (visited in the given
    order; `resets` marks the points that restart from `theta_start`).

    Each fit starts from the previous solution moved along the path's secant through the
    last two solutions (the Fisher slope after a restart or a short step), bounded by
    :data:`PREDICT_BOUND`; where that start fails, or its fit rises further than the
    profile can from the previous point (a jump to a worse minimum, :func:`_jumped`; `psi_hat`
    is ψ's best fit, default ``theta_start[k]``), from the previous solution itself.
    Returns values, parameter vectors, convergence flags and steps, in `grid`'s order."""
    theta_start = np.asarray(theta_start, dtype=np.float64)
    psi_hat = float(theta_start[k] if psi_hat is None else psi_hat)
    n, m = len(grid), len(free)
    values, steps = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    thetas, converged = np.tile(theta_start, (n, 1)), np.zeros(n, dtype=bool)
    init = (np.zeros(m), float(theta_start[k]), np.asarray(coords.slope, dtype=np.float64))
    x_prev, psi_prev, slope = init
    value_prev, radius = math.nan, TRUST_RADIUS
    for i, (psi, reset) in enumerate(zip(grid, resets, strict=True)):
        if reset:
            x_prev, psi_prev, slope = init
            value_prev, radius = math.nan, TRUST_RADIUS
        dpsi = float(psi) - psi_prev
        move = slope * dpsi
        bound = PREDICT_BOUND * float(np.linalg.norm(init[2] * dpsi)) + 1.0
        norm = float(np.linalg.norm(move))
        if norm > bound:
            move *= bound / norm
        local = _Local(theta_start, coords.scale, free, k, float(psi))
        res = fit(problem, local, [x_prev + move, x_prev], radius)
        total = res.steps
        if norm > 0 and _jumped(res.value, value_prev, psi, psi_prev, psi_hat, coords.psi_scale):
            again = fit(problem, local, [x_prev], radius)
            total += again.steps
            if again.value < res.value:
                res = again
        values[i], thetas[i], converged[i], steps[i] = (
            res.value,
            res.theta,
            res.converged and math.isfinite(res.value),
            total,
        )
        if not math.isfinite(res.value):
            continue
        # A secant over a step shorter than a tenth of ψ's error is mostly fit noise.
        if abs(dpsi) > 0.1 * coords.psi_scale:
            slope = (res.x - x_prev) / dpsi
        # The next fit's first trust region: twice the correction this one needed.
        radius = max(TRUST_RADIUS, 2.0 * float(np.linalg.norm(res.x - x_prev - move)))
        x_prev, psi_prev, value_prev = res.x, float(psi), res.value
    return values, thetas, converged, steps


__all__ = ["FitProblem", "FitResult", "evaluate", "fit", "global_fit", "profile_scan"]
