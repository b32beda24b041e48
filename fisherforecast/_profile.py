"""Profile likelihoods: re-optimise the other parameters along a grid of one parameter.

For a parameter ψ and the others η, the profile is

    Δ(ψ) = min_η [−2 ln L(ψ, η)] − min_{ψ,η} [−2 ln L(ψ, η)],

with ``ln L`` the noise model's own ``log_likelihood`` (the one definition every analysis
uses). The likelihood-ratio interval at level ``Δ = 1`` is the 68.27 % interval of one
parameter and ``Δ = 3.84`` the 95 % one (Wilks). A profile that stays below the level on one
side is *open* (practically non-identifiable in the sense of Raue et al. 2009,
Bioinformatics 25, 1923); one that stays flat is *structurally* non-identifiable.

Without data (Asimov) the profiled quantity is the *expected* deviance under the fiducial,
``E₀[−2 ln L(θ)]``: for noise that does not depend on the parameters (and for Poisson
counts) that is ``−2 ln L`` of the noise-free data up to a constant; for a
parameter-dependent Gaussian covariance it is
``ln det C(θ) + tr(C(θ)⁻¹C₀) + (μ − μ₀)ᵀC(θ)⁻¹(μ − μ₀)``, minimised exactly at the fiducial,
with half its Hessian the Fisher matrix including ``½ tr(C⁻¹∂C C⁻¹∂C)``. (Noise-free data
themselves would drive the noise to zero.)

The inner minimisation is ``optimistix.BFGS`` in coordinates scaled by the conditional
Fisher errors ``1/sqrt(F_jj)`` (so that the problem is roughly isotropic), compiled once per
model and grid length, and run along the grid with ``jax.lax.scan``: outwards from the best
fit to the right, then again from the best fit to the left, each point warm-started from its
neighbour. Gradients are forward-mode by default (``mode="forward"``), which ODE models
solved with ``diffrax.ForwardMode`` require.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from functools import partial
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._checks import as_experiments, check_fiducial, check_mode, check_names
from ._engine import call_model, evaluate_checked, params_from_vector
from ._errors import FisherError, NonFiniteError, ParameterError, quote
from ._identifiability import marginal_sigma_pinv
from ._x64 import float64

#: Δ(−2 ln L) levels of the 68.27 % and 95 % likelihood-ratio intervals of one parameter.
LEVELS = (1.0, 3.841458820694124)
#: A profile whose largest Δ(−2 ln L) over the grid stays below this is called flat.
FLAT_TOL = 1e-3
#: An interval endpoint is grid-limited when Δ at the grid point beyond it exceeds this
#: multiple of the level (``z = sqrt(Δ)`` more than doubles across the bracketing step).
RESOLUTION_RATIO = 4.0


# ---------------------------------------------------------------------------------------
# Pure, jitted pieces
# ---------------------------------------------------------------------------------------
def _neg2_log_like(exp, d, mean, params, params0, expected):
    """One experiment's −2 ln L (user data) or, for Asimov data (`expected`), the noise
    model's expected deviance under the fiducial where it defines one."""
    if expected and exp.noise.has_expected_deviance:
        return exp.noise.expected_deviance(mean, jnp.asarray(d), params, params0, exp.design)
    return -2.0 * exp.noise.log_likelihood(d, mean, params, exp.design)


def _chi2_function(experiments, data, names, fixed, theta_ref, expected):
    """θ (vector over `names`) -> −2 ln L summed over the experiments (for Asimov data,
    `expected`, the expected deviance under the fiducial ``theta_ref``)."""

    def to_params(theta):
        return params_from_vector(theta, names, fixed)

    params0 = to_params(theta_ref)

    def chi2(theta):
        params = to_params(theta)
        total = 0.0
        for exp, d in zip(experiments, data, strict=True):
            mean = call_model(exp, params)
            total = total + _neg2_log_like(exp, d, mean, params, params0, expected)
        return total

    return chi2


@partial(jax.jit, static_argnames=("expected",))
def _chi2_at_data(experiments, data, fiducial, *, expected):
    """−2 ln L (or the expected deviance) at the fiducial for data that equal the model
    there (Asimov): no model evaluation needed."""
    return sum(
        _neg2_log_like(exp, d, jnp.asarray(d), fiducial, fiducial, expected)
        for exp, d in zip(experiments, data, strict=True)
    )


@partial(jax.jit, static_argnames=("names",))
def _noise_gradients(experiments, data, fixed, theta, *, names):
    """∂ ln L/∂θ of each experiment's noise model with the mean held at the data: nonzero
    where the noise depends on the parameters."""

    def loglike(th, exp, d):
        params = dict(fixed)
        params.update({n: th[i] for i, n in enumerate(names)})
        return exp.noise.log_likelihood(d, jnp.asarray(d), params, exp.design)

    return tuple(jax.grad(loglike)(theta, exp, d) for exp, d in zip(experiments, data, strict=True))


class _BFGS(optx.BFGS):
    """``optimistix.BFGS`` that also stops when the gradient at an accepted point is below
    `atol` (max-norm).

    The profiles run in coordinates scaled by the conditional Fisher errors, where the
    Hessian of −2 ln L is ~2·I, so ``|∇| ≤ atol`` puts the optimum within ~atol/2 (Δ(−2 ln L)
    error ~atol²/4). Without this test a start that is already optimal (warm starts along
    the grid, nuisance parameters uncorrelated with ψ) never terminates: the backtracking
    line search sees only round-off and rejects every step until `max_steps`.
    """

    def terminate(self, fn, y, args, options, state, tags):
        done, result = super().terminate(fn, y, args, options, state, tags)
        grad = getattr(getattr(state, "f_info", None), "grad", None)
        if grad is None:  # a future optimistix with another state layout: plain BFGS
            return done, result
        small = jnp.logical_not(state.first_step) & (jnp.max(jnp.abs(grad)) <= self.atol)
        return done | small, result


def _minimise(objective, x0, args, tol, max_steps, autodiff):
    """BFGS from `x0`; returns the minimiser, the objective there, success and steps."""
    sol = optx.minimise(
        objective,
        _BFGS(rtol=tol, atol=tol),
        x0,
        args=args,
        max_steps=max_steps,
        throw=False,
        options={"autodiff_mode": autodiff},
    )
    # The solver state holds the objective at the returned point; reading it saves one
    # more (for ODE models: expensive to compile) evaluation of the model.
    f_info = getattr(sol.state, "f_info", None)
    value = getattr(f_info, "f", None)
    if value is None:
        value = objective(sol.value, args)
    steps = jnp.asarray(sol.stats["num_steps"]).astype(jnp.int32)
    return sol.value, value, sol.result == optx.RESULTS.successful, steps


@partial(jax.jit, static_argnames=("names", "tol", "max_steps", "autodiff", "expected"))
def _global_fit(
    experiments, data, fixed, theta0, scales, *, names, tol, max_steps, autodiff, expected
):
    chi2 = _chi2_function(experiments, data, names, fixed, theta0, expected)

    def objective(x, _):
        return chi2(theta0 + scales * x)

    x, value, success, _ = _minimise(
        objective, jnp.zeros_like(theta0), None, tol, max_steps, autodiff
    )
    return theta0 + scales * x, value, success


@partial(jax.jit, static_argnames=("names", "tol", "max_steps", "autodiff", "expected"))
def _profile_scan(
    experiments,
    data,
    fixed,
    theta_hat,
    theta_ref,
    scales,
    k,
    free_idx,
    grid,
    resets,
    *,
    names,
    tol,
    max_steps,
    autodiff,
    expected,
):
    """−2 ln L profile of parameter `k` along `grid` (visited in the given order; `resets`
    marks the points that restart from the best fit instead of the previous point)."""
    chi2 = _chi2_function(experiments, data, names, fixed, theta_ref, expected)
    x_start = jnp.zeros(free_idx.shape, theta_hat.dtype)

    def theta_of(x, psi):
        return theta_hat.at[free_idx].add(scales[free_idx] * x).at[k].set(psi)

    def objective(x, psi):
        return chi2(theta_of(x, psi))

    def step(carry, inputs):
        psi, reset = inputs
        x0 = jnp.where(reset, x_start, carry)
        x, value, success, steps = _minimise(objective, x0, psi, tol, max_steps, autodiff)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(x))
        carry = jnp.where(ok, x, x0)
        return carry, (value, theta_of(x, psi), success & ok, steps)

    _, out = jax.lax.scan(step, x_start, (grid, resets))
    return out


@partial(jax.jit, static_argnames=("names", "expected"))
def _profile_direct(experiments, data, fixed, theta_hat, theta_ref, k, grid, *, names, expected):
    """−2 ln L along `grid` with the other parameters held at `theta_hat`: the profile of a
    single parameter (nothing to re-optimise), and the finiteness probe of the default grid."""
    chi2 = _chi2_function(experiments, data, names, fixed, theta_ref, expected)
    thetas = jax.vmap(lambda psi: theta_hat.at[k].set(psi))(grid)
    return jax.vmap(chi2)(thetas), thetas


# ---------------------------------------------------------------------------------------
# Intervals from a profile on a grid
# ---------------------------------------------------------------------------------------
def _monotone_root(coef, a, b, target):
    """The root of ``p(x) = target`` in ``[a, b]`` if the polynomial `coef` is increasing on
    ``[a, b]`` (as ``z = sign(x)·sqrt(Δ)`` is on both sides of the best fit); else ``None``
    (the interpolant cannot be trusted there)."""
    slope = np.polyder(coef)
    tol = 1e-12 * max(abs(a), abs(b), b - a)
    turning = [
        r.real
        for r in np.atleast_1d(np.roots(slope))
        if abs(r.imag) <= 1e-12 * (1 + abs(r)) and a + tol < r.real < b - tol
    ]
    if turning or np.polyval(slope, 0.5 * (a + b)) <= 0:
        return None
    roots = [
        r.real
        for r in np.atleast_1d(np.roots(np.polysub(coef, [target])))
        if abs(r.imag) <= 1e-9 * (1 + abs(r))
    ]
    inside = [r for r in roots if a - tol <= r <= b + tol]
    if not inside:
        return None
    return min(max(min(inside, key=lambda r: abs(r - 0.5 * (a + b))), a), b)


def _crossing(grid, delta, center, estimate, level, direction):
    """Where the profile first reaches `level` walking from `center` in `direction` (±1).

    Returns ``(value, reason, coarse)``: the crossing, or ``(±inf, why it is open, None)``;
    `coarse` is the index of the grid point beyond the crossing when Δ there exceeds
    ``RESOLUTION_RATIO``·level (the endpoint is then limited by the grid spacing), else
    ``None``.

    Between the bracketing grid points the signed root ``z = sign(ψ − ψ̂)·sqrt(Δ)`` is
    interpolated with a cubic through up to four neighbours: ``z`` is linear in ψ for a
    Gaussian likelihood, so the interval is then exact, and smooth otherwise. The cubic's
    root is used only if the cubic increases monotonically across the bracket (a coarse grid
    can make it turn over and cross the level at a spurious point); otherwise ``z`` is
    interpolated linearly between the two bracketing points.
    """
    n = len(grid)
    i = center
    while True:
        j = i + direction
        if j < 0 or j >= n:
            return direction * math.inf, "grid edge", None
        if not math.isfinite(delta[j]):
            return direction * math.inf, f"model or fit failed at {grid[j]:.6g}", None
        if delta[j] >= level:
            break
        i = j
    lo_pt, hi_pt = i, j
    coarse = hi_pt if delta[hi_pt] > RESOLUTION_RATIO * level else None
    target = direction * math.sqrt(level)
    idx = [
        m
        for m in range(min(lo_pt, hi_pt) - 1, max(lo_pt, hi_pt) + 2)
        if 0 <= m < n and math.isfinite(delta[m]) and (grid[m] - estimate) * direction >= 0
    ]
    if len(idx) >= 3:  # with two points the fit is the linear interpolation below
        x = grid[idx] - estimate
        z = np.sign(x) * np.sqrt(np.clip(delta[idx], 0.0, None))
        coef = np.polyfit(x, z, min(3, len(idx) - 1))
        a, b = sorted((grid[lo_pt] - estimate, grid[hi_pt] - estimate))
        root = _monotone_root(coef, a, b, target)
        if root is not None:
            return float(root + estimate), "", coarse
    # Linear interpolation of z between the bracketing points.
    z0 = math.copysign(math.sqrt(max(delta[lo_pt], 0.0)), direction)
    z1 = direction * math.sqrt(delta[hi_pt])
    t = (target - z0) / (z1 - z0) if z1 != z0 else 1.0
    return float(grid[lo_pt] + t * (grid[hi_pt] - grid[lo_pt])), "", coarse


def _coarse_message(name, ends):
    """One message for the grid-limited interval endpoints `ends`: (level, side, ψ, Δ)."""
    parts = "; ".join(
        f"Δ={lv:.3g} {side} endpoint: Δ = {d:.3g} already at the next grid point {x:.6g}"
        for lv, side, x, d in ends
    )
    return (
        f"The interval of {name!r} is limited by the grid ({parts}; more than "
        f"{RESOLUTION_RATIO:g}× the level): such an endpoint is only interpolated across "
        "one coarse step. Pass a finer `grid` (or a smaller `span`) around it."
    )


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _probability_level(p):
    """Δ(−2 ln L) of the two-sided one-parameter interval with probability `p`."""
    return NormalDist().inv_cdf(0.5 * (1.0 + p)) ** 2


def _check_levels(levels, label, stacklevel=3, probabilities=True):
    """Positive finite Δ(−2 ln L) thresholds as a tuple of floats; refuses (or, below 0.5,
    warns about) values that all look like probabilities, unless not `probabilities`."""
    items = (levels,) if _is_real(levels) else levels
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if not items or not all(_is_real(v) and 0 < float(v) < math.inf for v in items):
        raise ValueError(
            f"`{label}` must be positive, finite Δ(−2 ln L) values (1 for the "
            f"68.27 %, 3.84 for the 95 % interval); received {quote(levels)}."
        )
    values = tuple(float(v) for v in items)
    if probabilities and max(values) < 1.0:
        hint = ", ".join(f"{_probability_level(p):.4g}" for p in values)
        message = (
            f"`{label}` = {quote(levels)}: every value is below 1, as if they were "
            f"probabilities. `{label}` are Δ(−2 ln L) thresholds, not confidence "
            "levels: 1 gives the 68.27 % and 3.84 the 95 % interval of one parameter. "
            f"For the probabilities {', '.join(f'{v:g}' for v in values)} pass "
            f"{label}=({hint})."
        )
        if min(values) >= 0.5:
            raise ValueError(message)
        warnings.warn(message + " Using them as Δ thresholds.", UserWarning, stacklevel=stacklevel)
    return values


class ProfileLikelihood:
    """The profile likelihood of one parameter (made by :func:`profile_likelihood`).

    **Attributes:**

    - `name`; `grid`; `delta`: Δ(−2 ln L) on the grid (NaN where the model or fit failed);
      `converged`: bool per grid point; `steps`: optimiser steps per point.
    - `nuisance`: dict name -> re-optimised values of the other parameters along the grid.
    - `estimate`: the best-fit value ψ̂; `best_fit`: dict of all best-fit values.
    - `levels`; `intervals`: dict level -> (low, high), ``±inf`` where open;
      `open`: dict level -> (open below, open above).
    - `flat`: max Δ < ``FLAT_TOL`` over the grid (structurally non-identifiable);
      `multimodal`: the profile falls below a level again beyond its interval, and
      `other_minimum`: ``(location, Δ)`` of the lowest such point (else ``None``);
      `identifiable`: closed on both sides at the largest level and not multimodal;
      `verdict`: in words.
    - `fisher_sigma`: marginal Fisher 1σ at the best fit (``inf`` if not identifiable).
    - `data`: ``"asimov"`` (expected −2 ln L under the fiducial) or ``"user"``; `notes`
      (grid clipping, grid-limited endpoints, fit problems).
    """

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("ProfileLikelihood is read-only.")

    def __repr__(self):
        lo, hi = self.intervals[self.levels[0]]
        return (
            f"ProfileLikelihood({self.name!r}, estimate={self.estimate:.6g}, "
            f"interval(Δ={self.levels[0]:g})=({lo:.6g}, {hi:.6g}), verdict={self.verdict!r})"
        )

    def interval(self, level: float = 1.0) -> tuple[float, float]:
        """Likelihood-ratio interval ``{ψ: Δ(ψ) < level}`` around the best fit; ``±inf`` on a
        side where the profile does not reach `level` inside the grid. `level` is a
        Δ(−2 ln L) threshold (1: 68.27 %, 3.84: 95 %), not a probability. Warns when an
        endpoint is limited by the grid spacing."""
        (level,) = _check_levels(level, "level")
        lo, _, coarse_lo = _crossing(self.grid, self.delta, self._center, self.estimate, level, -1)
        hi, _, coarse_hi = _crossing(self.grid, self.delta, self._center, self.estimate, level, +1)
        ends = [
            (level, side, self.grid[j], self.delta[j])
            for j, side in ((coarse_lo, "lower"), (coarse_hi, "upper"))
            if j is not None
        ]
        if ends:
            warnings.warn(_coarse_message(self.name, ends), UserWarning, stacklevel=2)
        return lo, hi

    def fisher_interval(self, level: float = 1.0) -> tuple[float, float]:
        """``ψ̂ ± sqrt(level)·σ_Fisher``: what the Fisher matrix predicts for `interval`."""
        (level,) = _check_levels(level, "level", probabilities=False)
        half = math.sqrt(level) * self.fisher_sigma
        return self.estimate - half, self.estimate + half

    def to_dict(self) -> dict:
        """Plain-Python view (``inf`` written as the string ``"inf"``, NaN as ``None``)."""

        def num(x):
            x = float(x)
            if math.isnan(x):
                return None
            return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")

        return {
            "name": self.name,
            "grid": [num(g) for g in self.grid],
            "delta": [num(d) for d in self.delta],
            "converged": self.converged.tolist(),
            "nuisance": {k: [num(v) for v in vals] for k, vals in self.nuisance.items()},
            "estimate": num(self.estimate),
            "best_fit": {k: num(v) for k, v in self.best_fit.items()},
            "levels": list(self.levels),
            "intervals": {str(lv): [num(a), num(b)] for lv, (a, b) in self.intervals.items()},
            "open": {str(lv): list(o) for lv, o in self.open.items()},
            "fisher_sigma": num(self.fisher_sigma),
            "fisher_intervals": {
                str(lv): [num(a) for a in self.fisher_interval(lv)] for lv in self.levels
            },
            "flat": self.flat,
            "multimodal": self.multimodal,
            "other_minimum": None
            if self.other_minimum is None
            else [num(v) for v in self.other_minimum],
            "identifiable": self.identifiable,
            "verdict": self.verdict,
            "data": self.data,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A few lines: estimate, LR and Fisher intervals per level, verdict."""
        lines = [
            f"Profile likelihood of {self.name} ({self.data} data, {len(self.grid)} grid "
            f"points {self.grid[0]:.4g} … {self.grid[-1]:.4g}): {self.verdict}",
            f"  best fit {self.estimate:.6g}; Fisher σ {self.fisher_sigma:.4g}",
        ]
        for lv in self.levels:
            lo, hi = self.intervals[lv]
            flo, fhi = self.fisher_interval(lv)
            lines.append(
                f"  Δ(−2 ln L) = {lv:.3g}: LR interval [{lo:.6g}, {hi:.6g}]   "
                f"Fisher [{flo:.6g}, {fhi:.6g}]"
            )
        bad = int(np.sum(~self.converged))
        if bad:
            lines.append(f"  {bad} of {len(self.grid)} grid points did not converge fully.")
        lines += [f"  Note: {t}" for t in self.notes]
        return "\n".join(lines)

    def plot(self, ax=None):
        """Δ(−2 ln L) against the parameter, with the Fisher parabola, the levels and the LR
        interval. Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.grid, self.delta, "o-", color="C0", ms=3, label="profile likelihood")
        if math.isfinite(self.fisher_sigma) and self.fisher_sigma > 0:
            fine = np.linspace(self.grid[0], self.grid[-1], 200)
            ax.plot(
                fine,
                ((fine - self.estimate) / self.fisher_sigma) ** 2,
                "--",
                color="C1",
                label="Fisher (quadratic)",
            )
        for k, lv in enumerate(self.levels):
            ax.axhline(lv, color="0.5", lw=0.8, ls=":")
            for bound in self.intervals[lv]:
                if math.isfinite(bound):
                    ax.axvline(
                        bound,
                        color=f"C{2 + k}",
                        lw=0.8,
                        label=f"LR interval Δ={lv:.3g}"
                        if bound == self.intervals[lv][0]
                        or not math.isfinite(self.intervals[lv][0])
                        else None,
                    )
        finite = self.delta[np.isfinite(self.delta)]
        top = max(
            1.5 * max(self.levels),
            float(min(np.max(finite), 4 * max(self.levels))) if finite.size else 0.0,
        )
        ax.set_ylim(-0.05 * top, top)
        ax.set_xlabel(self.name)
        ax.set_ylabel("Δ(−2 ln L)")
        ax.set_title(f"{self.name}: {self.verdict}", fontsize="medium")
        ax.legend(fontsize="small")
        return ax


class ProfileBatch(dict):
    """Profiles of several parameters: a dict name -> :class:`ProfileLikelihood`.

    Parameters whose profile failed are absent from the dict and listed in `errors`
    (name -> message), so that one failure does not lose the others.
    """

    def __init__(self, profiles, errors):
        super().__init__(profiles)
        self.errors = dict(errors)

    def summary(self) -> str:
        """One line per parameter: best fit, 68 % LR and Fisher intervals, verdict."""
        width = max([len(n) for n in list(self) + list(self.errors)] + [9])
        head = (
            f"{'parameter':<{width}}  {'best fit':>10}  {'LR 68% interval':>25}  "
            f"{'Fisher 68% interval':>25}  verdict"
        )
        lines = [head, "-" * len(head)]
        for n, p in self.items():
            lo, hi = p.intervals[p.levels[0]]
            flo, fhi = p.fisher_interval(p.levels[0])
            lines.append(
                f"{n:<{width}}  {p.estimate:>10.4g}  "
                f"{f'[{lo:.4g}, {hi:.4g}]':>25}  {f'[{flo:.4g}, {fhi:.4g}]':>25}  "
                f"{p.verdict}"
            )
        for n, msg in self.errors.items():
            lines.append(f"{n:<{width}}  failed: {msg.splitlines()[0]}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"profiles": {n: p.to_dict() for n, p in self.items()}, "errors": dict(self.errors)}

    def plot(self, fig=None):
        """One panel per profiled parameter. Returns the Figure."""
        import matplotlib.pyplot as plt

        n = max(len(self), 1)
        cols = min(n, 3)
        rows = math.ceil(n / cols)
        if fig is None:
            fig = plt.figure(figsize=(4.5 * cols, 3.5 * rows))
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, p in zip(axes, self.values(), strict=False):
            p.plot(ax=ax)
        for ax in axes[len(self) :]:
            ax.set_visible(False)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------
def _check_data(data, experiments, means):
    if isinstance(data, list | tuple) and len(experiments) > 1:
        items = list(data)
    elif len(experiments) == 1:
        items = [data]
    else:
        raise ValueError(
            f"`data` must be a list with one array per experiment "
            f"({len(experiments)} experiments); received {quote(data)}."
        )
    if len(items) != len(experiments):
        raise ValueError(f"`data` gives {len(items)} arrays for {len(experiments)} experiments.")
    out = []
    for k, (d, mean) in enumerate(zip(items, means, strict=True)):
        arr = np.asarray(d)
        arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
        if arr.shape != mean.shape:
            raise ValueError(
                f"`data` for experiment {k} has shape {arr.shape}, but the model "
                f"output has shape {tuple(mean.shape)}."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`data` for experiment {k} contains NaN or inf.")
        out.append(arr)
    return tuple(out)


def _half_grid(lo, center, hi, n_grid):
    half_n = (n_grid - 1) // 2
    return np.concatenate(
        [np.linspace(lo, center, half_n + 1)[:-1], np.linspace(center, hi, half_n + 1)]
    )


def _default_grid(center, fiducial, sigma, n_grid, span, rel_span, finite_at):
    """ψ̂ ± span·σ (or ψ̂·(1 ± rel_span)), `n_grid` points with ψ̂ on the grid.

    A grid that would take a parameter with a nonzero fiducial to (or past) zero is tried
    first: ``finite_at(grid)`` says where −2 ln L, with the other parameters at the best
    fit, is finite. Only if it is not finite somewhere beyond 1 % of ψ̂ (a rate or volume
    that must stay positive, say) is the grid clipped there. Returns the grid and
    ``None`` or ``(side, value, first failing ψ)`` for a clipped grid.
    """
    if math.isfinite(sigma) and sigma > 0:
        half = span * sigma
    else:
        half = rel_span * (abs(center) if center != 0 else 1.0)
    lo, hi = center - half, center + half
    grid = _half_grid(lo, center, hi, n_grid)
    edge = 0.01 * center
    if fiducial > 0 and center > 0 and lo < edge:
        side, beyond = "below", grid < edge
    elif fiducial < 0 and center < 0 and hi > edge:
        side, beyond = "above", grid > edge
    else:
        return grid, None
    ok = np.asarray(finite_at(grid), dtype=bool)
    bad = np.flatnonzero(beyond & ~ok)
    if not bad.size:
        return grid, None
    # The failing point nearest to the best fit, for the note.
    first = grid[bad[-1]] if side == "below" else grid[bad[0]]
    if side == "below":
        lo = edge
    else:
        hi = edge
    return _half_grid(lo, center, hi, n_grid), (side, edge, float(first))


def _profile_one(
    name,
    *,
    experiments,
    data,
    fixed,
    names,
    theta_hat,
    theta_ref,
    ref,
    scales,
    sigma,
    grid,
    n_grid,
    span,
    rel_span,
    tol,
    max_steps,
    autodiff,
    levels,
    kind,
    expected,
    notes,
    fiducial,
):
    k = names.index(name)
    fiducial_value = fiducial[name]
    center_value = float(theta_hat[k])
    notes = list(notes)
    clip = None
    if grid is None:

        def finite_at(points):
            try:
                values, _ = _profile_direct(
                    experiments,
                    data,
                    fixed,
                    theta_hat,
                    theta_ref,
                    np.int32(k),
                    points,
                    names=names,
                    expected=expected,
                )
            except (RuntimeError, FloatingPointError, ValueError):
                # e.g. an ff.ode_model with throw=True whose solve fails past zero: clip.
                return np.zeros(points.shape, dtype=bool)
            return np.isfinite(np.asarray(values))

        g, clip = _default_grid(
            center_value, fiducial_value, sigma[name], n_grid, span, rel_span, finite_at
        )
        if clip:
            side, edge, first = clip
            notes.append(
                f"Grid clipped {side} at {edge:.4g} (1 % of the best fit): −2 ln L "
                f"is not finite at {name} = {first:.4g} with the other parameters "
                "at the best fit; pass `grid` to go further."
            )
    else:
        try:
            g = np.asarray(grid, dtype=np.float64)
        except (TypeError, ValueError):
            g = np.empty(0)
        if g.ndim != 1 or g.size < 3 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
            raise ValueError(
                f"`grid` must be a 1-D, strictly increasing, finite array of at "
                f"least 3 values; received {quote(grid)}."
            )
        if not g[0] < center_value < g[-1]:
            raise ValueError(
                f"`grid` for {name!r} spans [{g[0]:.6g}, {g[-1]:.6g}] but the best fit is "
                f"{name} = {center_value:.6g}: a profile needs grid points on both sides of "
                "the best fit to bound an interval. Widen the grid, or leave grid=None for "
                "the default (best fit ± several Fisher σ)."
            )
        if not np.any(np.isclose(g, center_value, rtol=1e-12, atol=0.0)):
            # The profile's minimum belongs on the grid: intervals are interpolated from it.
            g = np.sort(np.append(g, center_value))
    n = g.size
    c = int(np.argmin(np.abs(g - center_value)))
    order = np.concatenate([np.arange(c, n), np.arange(c - 1, -1, -1)]).astype(np.int32)
    resets = np.zeros(n, dtype=bool)
    resets[0] = True
    if c > 0:
        resets[n - c] = True  # the left sweep restarts from the best fit
    free = np.array([i for i in range(len(names)) if i != k], dtype=np.int32)
    if free.size:
        values, thetas, converged, steps = _profile_scan(
            experiments,
            data,
            fixed,
            theta_hat,
            theta_ref,
            scales,
            np.int32(k),
            free,
            g[order],
            resets,
            names=names,
            tol=tol,
            max_steps=max_steps,
            autodiff=autodiff,
            expected=expected,
        )
        values, thetas = np.asarray(values), np.asarray(thetas)
        converged, steps = np.asarray(converged), np.asarray(steps)
    else:
        values, thetas = _profile_direct(
            experiments,
            data,
            fixed,
            theta_hat,
            theta_ref,
            np.int32(k),
            g[order],
            names=names,
            expected=expected,
        )
        values, thetas = np.asarray(values), np.asarray(thetas)
        converged, steps = np.isfinite(values), np.zeros(n, dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    values, thetas = values[inverse], thetas[inverse]
    if not math.isfinite(ref):
        ref = float(np.nanmin(values)) if np.any(np.isfinite(values)) else 0.0
    values = values - ref
    converged, steps = converged[inverse], steps[inverse]

    finite = np.isfinite(values)
    if not np.any(finite):
        raise NonFiniteError(
            f"The profile of {name!r} is NaN at every grid point: the model "
            "or the fit failed. Check the model on the grid "
            f"{g[0]:.6g} … {g[-1]:.6g}, or pass a narrower `grid`."
        )
    floor = min(0.0, float(np.min(values[finite])))
    estimate = center_value
    if floor < -1e-6:
        notes.append(
            f"The profile goes {-floor:.3g} below the best fit: the global fit had "
            "not fully converged; Δ is measured from the lowest profile point."
        )
        estimate = float(g[np.nanargmin(np.where(finite, values, np.nan))])
    delta = values - floor
    center = int(np.nanargmin(np.where(finite, delta, np.nan)))
    if abs(g[center] - estimate) > abs(g[c] - estimate):
        center = c
    intervals, open_, reasons, edge_open = {}, {}, set(), {}
    other = None  # (location, Δ) of the lowest point beyond an interval that is below it
    coarse_ends = []  # (level, side, ψ, Δ) of the grid-limited endpoints
    for lv in levels:
        lo, why_lo, coarse_lo = _crossing(g, delta, center, estimate, lv, -1)
        hi, why_hi, coarse_hi = _crossing(g, delta, center, estimate, lv, +1)
        intervals[lv] = (lo, hi)
        open_[lv] = (not math.isfinite(lo), not math.isfinite(hi))
        edge_open[lv] = (why_lo == "grid edge", why_hi == "grid edge")
        reasons.update(r for r in (why_lo, why_hi) if r and r != "grid edge")
        coarse_ends += [
            (lv, side, g[j], delta[j])
            for j, side in ((coarse_lo, "lower"), (coarse_hi, "upper"))
            if j is not None
        ]
        for bound, side in ((lo, g < lo), (hi, g > hi)):
            dip = side & finite & (delta < lv)
            if math.isfinite(bound) and np.any(dip):
                j = int(np.flatnonzero(dip)[np.argmin(delta[dip])])
                if other is None or delta[j] < other[1]:
                    other = (float(g[j]), float(delta[j]))
    notes += [f"Open side: {r}." for r in sorted(reasons)]
    if coarse_ends:
        notes.append(_coarse_message(name, coarse_ends))
    multimodal = other is not None
    if multimodal:
        notes.append(
            f"The profile falls below a level again beyond the interval (Δ = "
            f"{other[1]:.3g} at {name} = {other[0]:.6g}): the likelihood is "
            "multimodal within the grid, and the interval around the best fit is "
            "only part of the confidence set."
        )
    flat = bool(np.nanmax(delta) < FLAT_TOL)
    top = max(levels)
    closed = not any(open_[top])
    sides = ("below", "above")
    clipped_side = clip[0] if clip else None
    # An open side that ends at a grid edge the default grid clipped says nothing about
    # identifiability: the profile was not computed further.
    by_clip = [
        s
        for s, o, e in zip(sides, open_[top], edge_open[top], strict=True)
        if o and e and s == clipped_side
    ]
    really_open = [s for s, o in zip(sides, open_[top], strict=True) if o and s not in by_clip]
    if flat:
        verdict = "structurally non-identifiable (flat profile)"
    elif really_open:
        verdict = (
            f"practically non-identifiable (open {' and '.join(really_open)} at "
            f"Δ={top:.3g} within the grid)"
        )
    elif by_clip:
        verdict = (
            f"undetermined {by_clip[0]} (Δ < {top:.3g} up to where the default grid "
            f"was clipped, {clip[1]:.4g}; pass `grid` to go further)"
        )
    else:
        verdict = "identifiable"
    if multimodal and not flat:
        extra = f"multimodal (another minimum, Δ = {other[1]:.3g}, at {name} = {other[0]:.6g})"
        verdict = extra if verdict == "identifiable" else f"{verdict}; {extra}"
    nuisance = {names[i]: thetas[:, i] for i in free}
    best = {nm: float(theta_hat[i]) for i, nm in enumerate(names)}
    best.update({kk: float(v) for kk, v in fixed.items()})
    profile = ProfileLikelihood(
        name=name,
        grid=g,
        delta=delta,
        converged=converged.astype(bool),
        steps=steps,
        nuisance=nuisance,
        estimate=estimate,
        best_fit=best,
        levels=tuple(levels),
        intervals=intervals,
        open=open_,
        flat=flat,
        multimodal=multimodal,
        other_minimum=other,
        identifiable=bool(closed and not flat and not multimodal),
        verdict=verdict,
        fisher_sigma=float(sigma[name]),
        data=kind,
        notes=notes,
        _center=center,
    )
    if coarse_ends:
        warnings.warn(_coarse_message(name, coarse_ends), UserWarning, stacklevel=3)
    return profile


def _noise_depends_on_parameters(experiments, data, fixed, theta0, names):
    """Per experiment: does its noise model depend on the varied parameters?"""
    out, unknown = [], []
    for i, exp in enumerate(experiments):
        flag = getattr(exp.noise, "parameter_dependent", None)
        if isinstance(flag, bool | np.bool_):
            out.append(bool(flag))
        else:
            out.append(None)
            unknown.append(i)
    if unknown:
        grads = _noise_gradients(
            tuple(experiments[i] for i in unknown),
            tuple(data[i] for i in unknown),
            fixed,
            theta0,
            names=names,
        )
        for i, grad in zip(unknown, grads, strict=True):
            grad = np.asarray(grad)
            out[i] = bool(np.any(grad != 0) or not np.all(np.isfinite(grad)))
    return out


def profile_likelihood(
    experiment,
    fiducial,
    name_or_names,
    *,
    data=None,
    grid=None,
    n_grid=21,
    span=4.0,
    rel_span=0.5,
    params=None,
    levels=LEVELS,
    tol=1e-6,
    max_steps=256,
    mode="forward",
):
    """Profile likelihood of one or several parameters, with LR and Fisher intervals.

    For each grid value ψ of the parameter the other parameters in `params` are
    re-optimised (``optimistix.BFGS``, jitted, ``lax.scan`` along the grid with warm starts);
    ``Δ(ψ) = min −2 ln L(ψ, ·) − min −2 ln L``. ``−2 ln L`` is the noise model's own
    ``log_likelihood``, summed over the experiments; without `data` it is its expectation
    under the fiducial (see `data`).

    **Arguments:**

    - `experiment`: an :class:`Experiment` or a list of independent experiments.
    - `fiducial`: dict name -> value: the truth for Asimov data, the start of the fit for
      user data.
    - `name_or_names`: one parameter name (returns a :class:`ProfileLikelihood`) or a list
      of names (returns a :class:`ProfileBatch`, a dict name -> profile).
    - `data`: observed data in the model's output shape (a list, one per experiment, for
      several). Default ``None``: Asimov, the expected −2 ln L for data drawn at the
      fiducial, whose best fit is the fiducial itself. For noise that does not depend on the
      parameters (and Poisson counts) that is −2 ln L of the noise-free model at the
      fiducial; for a parameter-dependent Gaussian covariance it is
      ``ln det C + tr(C⁻¹C₀) + (μ−μ₀)ᵀC⁻¹(μ−μ₀)``. Other parameter-dependent noise models
      need `data`.
    - `grid`: the values of the parameter (1-D, increasing). Default: `n_grid` points on
      ψ̂ ± `span`·σ_Fisher, or ψ̂·(1 ± `rel_span`) when the Fisher matrix cannot bound the
      parameter; clipped at 1 % of ψ̂ where going on to zero or past it would make −2 ln L
      non-finite (see the docs).
    - `params`: the parameters that vary (default: all of the fiducial); the rest are fixed.
    - `levels`: Δ(−2 ln L) thresholds for the intervals (default 1 and 3.84: 68.27 % and
      95 %), not probabilities. The verdict uses the largest.
    - `tol`: BFGS relative/absolute tolerance; `max_steps`: BFGS steps per grid point.
    - `mode`: ``"forward"`` (forward-mode gradients, default; needed for diffrax
      ``ForwardMode`` ODE models) or ``"reverse"``.

    The Fisher σ that the intervals are compared with, and that sets the default grid and
    the optimiser's scales, is evaluated at the best fit (the fiducial for Asimov data).

    **Returns:** a :class:`ProfileLikelihood` or a :class:`ProfileBatch`.

    **Raises:** `ParameterError` for unknown names, `ValueError` for bad data, grid, levels
    or mode, or for Asimov profiles of a parameter-dependent noise model other than
    `Gaussian`; `NonFiniteError` when the profile cannot be evaluated anywhere (single
    name). Warns (`UserWarning`) when an interval endpoint is limited by the grid spacing.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.5),
    ...                     design=jnp.linspace(-1.0, 1.0, 5))
    >>> prof = ff.profile_likelihood(exp, {"a": 1.0, "b": 2.0}, "b")
    >>> lo, hi = prof.interval(1.0)
    >>> round(lo, 6), round(hi, 6), prof.verdict     # exactly the Fisher interval
    (1.683772, 2.316228, 'identifiable')
    ```
    """
    experiments = tuple(as_experiments(experiment))
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_mode(mode, experiments)
    single = isinstance(name_or_names, str)
    targets = (
        [name_or_names]
        if single
        else list(name_or_names)
        if isinstance(name_or_names, Sequence)
        else None
    )
    if not targets or not all(isinstance(t, str) for t in targets):
        raise TypeError(
            f"`name_or_names` must be a parameter name or a list of names; "
            f"received {quote(name_or_names)}."
        )
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ParameterError(
            f"cannot profile {unknown}: not among the varied parameters {list(names)}."
        )
    if not (isinstance(n_grid, int) and n_grid >= 5):
        raise ValueError(f"`n_grid` must be an integer >= 5; received {n_grid!r}.")
    if n_grid % 2 == 0:
        n_grid += 1
    for label, value in (("span", span), ("rel_span", rel_span), ("tol", tol)):
        if not (_is_real(value) and 0 < value < math.inf):
            raise ValueError(f"`{label}` must be a positive number; received {value!r}.")
    levels = _check_levels(levels, "levels")
    autodiff = "fwd" if mode == "forward" else "bwd"

    notes = []
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        # The Fisher matrix at the fiducial and the Asimov data, from the same compiled
        # function as ff.identifiability (one Jacobian compilation for both analyses).
        F, means, _ = evaluate_checked(experiments, fid64, names, mode, detail=True)
        theta0 = np.array([fid[n] for n in names], dtype=np.float64)
        if data is None:
            data_t = tuple(means)
            kind = "asimov"
            # Gaussian noise (any covariance), Poisson and PSD: the expected deviance is
            # known and minimal at the fiducial. Other noise models: the Asimov −2 ln L,
            # valid only where the noise does not depend on the parameters (a global fit
            # then confirms the minimum).
            custom = [i for i, e in enumerate(experiments) if not e.noise.has_expected_deviance]
            if custom:
                depends = _noise_depends_on_parameters(
                    [experiments[i] for i in custom],
                    [data_t[i] for i in custom],
                    fixed,
                    theta0,
                    names,
                )
                bad = [experiments[i] for i, d in zip(custom, depends, strict=True) if d]
                if bad:
                    raise ValueError(
                        f"profile_likelihood without `data`: the noise model "
                        f"{bad[0].noise!r} of {bad[0].label} depends on the parameters "
                        f"{list(names)}, and its expected −2 ln L under the fiducial has no "
                        "known formula; noise-free (Asimov) data would drive its noise to "
                        "zero. Pass `data=` (e.g. data simulated with exp.noise.simulate), "
                        "or hold the noise parameters fixed with `params=`."
                    )
            needs_fit = bool(custom)
        else:
            data_t = _check_data(data, experiments, means)
            kind = "user"
            needs_fit = True
        expected = kind == "asimov"
        sigma, scales = _sigma_and_scales(F, names, fid, theta0)
        theta_hat = theta0
        if needs_fit:
            th, value, ok = _global_fit(
                experiments,
                data_t,
                fixed,
                theta0,
                scales,
                names=names,
                tol=tol,
                max_steps=max_steps,
                autodiff=autodiff,
                expected=expected,
            )
            th, ref = np.asarray(th), float(value)
            if np.all(np.isfinite(th)) and math.isfinite(ref):
                theta_hat = th
                if not bool(ok):
                    notes.append(
                        "The global fit stopped before its tolerance; the profile "
                        "minimum is used as the reference if it is lower."
                    )
            else:
                notes.append("The global fit failed; profiles start from the fiducial.")
                ref = math.nan
        else:
            ref = float(_chi2_at_data(experiments, data_t, fid64, expected=expected))
        if not np.array_equal(theta_hat, theta0):
            # Compare with (and scale the grid and the optimiser by) the Fisher matrix at
            # the best fit, not at the fiducial that only started the fit.
            best64 = dict(fid64)
            best64.update({n: np.float64(theta_hat[i]) for i, n in enumerate(names)})
            try:
                F_hat = evaluate_checked(experiments, best64, names, mode, detail=True).fisher
            except (FisherError, FloatingPointError) as exc:
                notes.append(
                    "The Fisher matrix could not be evaluated at the best fit "
                    f"({str(exc).splitlines()[0]}); Fisher σ, the default grid "
                    "and the optimiser scales use the fiducial's."
                )
            else:
                sigma, scales = _sigma_and_scales(F_hat, names, best64, theta_hat)
        common = dict(
            experiments=experiments,
            data=data_t,
            fixed=fixed,
            names=names,
            theta_hat=theta_hat,
            theta_ref=theta0,
            ref=ref,
            scales=scales,
            sigma=sigma,
            grid=grid,
            n_grid=n_grid,
            span=span,
            rel_span=rel_span,
            tol=tol,
            max_steps=max_steps,
            autodiff=autodiff,
            levels=levels,
            kind=kind,
            expected=expected,
            notes=notes,
            fiducial=fid,
        )
        if single:
            return _profile_one(name_or_names, **common)
        profiles, errors = {}, {}
        for t in targets:
            try:
                profiles[t] = _profile_one(t, **common)
            except (FisherError, ValueError, FloatingPointError, RuntimeError) as exc:
                errors[t] = f"{type(exc).__name__}: {exc}"
        return ProfileBatch(profiles, errors)


def _sigma_and_scales(F, names, point, theta):
    """Marginal Fisher σ per name and the optimiser's coordinate scales ``1/sqrt(F_jj)``."""
    sigma = marginal_sigma_pinv(F, names, {n: float(point[n]) for n in names})
    diag = np.diag(F)
    scales = np.where(
        diag > 0,
        1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)),
        np.where(theta != 0, np.abs(theta), 1.0),
    )
    return sigma, scales


__all__ = ["LEVELS", "ProfileBatch", "ProfileLikelihood", "profile_likelihood"]
