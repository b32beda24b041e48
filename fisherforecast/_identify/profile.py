"""Profile likelihoods: re-optimise the other parameters along a grid of one parameter.

For a parameter ψ and the others η, the profile is

    Δ(ψ) = min_η [−2 ln L(ψ, η)] − min_{ψ,η} [−2 ln L(ψ, η)],

with ``ln L`` the noise model's own ``log_likelihood`` (the one definition every analysis
uses). The likelihood-ratio interval at the threshold ``Δ = 1`` is the 68.27 % interval of one
parameter and ``Δ = 3.84`` the 95 % one (Wilks). A profile that stays below the threshold on one
side is *open* (practically non-identifiable in the sense of Raue et al. 2009,
Bioinformatics 25, 1923); one that stays flat is *structurally* non-identifiable.

Without data (Asimov) the profiled quantity is the *expected* deviance under the fiducial,
``E₀[−2 ln L(θ)]``: for noise that does not depend on the parameters (and for Poisson
counts) that is ``−2 ln L`` of the noise-free data up to a constant; for a
parameter-dependent Gaussian covariance it is
``ln det C(θ) + tr(C(θ)⁻¹C₀) + (μ − μ₀)ᵀC(θ)⁻¹(μ − μ₀)``, minimised exactly at the fiducial,
with half its Hessian the Fisher matrix including ``½ tr(C⁻¹∂C C⁻¹∂C)``. (Noise-free data
themselves would drive the noise to zero.)

The fits (``profile_fit.py``) are Fisher scoring in a trust region (fides), in
conditional-error coordinates (``profile_coords.py``), within `bounds`, on the compiled
evaluation that ``ff.fisher`` and identifiability share, each started from a prediction
along the path: outwards from the best fit to the right, then again from it to
the left. Jacobians are forward-mode by default (``mode="forward"``), which ODE models solved
with ``diffrax.ForwardMode`` require.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.stats import chi2 as chi2_dist

from .._checks import (
    as_experiments,
    check_delta_levels,
    check_fiducial,
    check_int,
    check_mode,
    check_names,
    is_real_number,
)
from .._engine import evaluate_checked
from .._errors import FisherError, InputError, NonFiniteError, ParameterError, quote
from .._fisher_kinds import checked_data
from .._progress import check_progress, progress_bar
from .._x64 import float64
from .profile_coords import box_scales, fit_coordinates, sigma_and_scales
from .profile_extend import (
    bound_reached,
    check_bound_pair,
    choose_axis,
    extend_profile,
    initial_grid,
    local_minima,
)
from .profile_fit import FitProblem, global_fit, profile_scan
from .profile_grid import (
    check_grid,
    coarse_message,
    default_grid,
    read_intervals,
    verdict,
)
from .profile_kernels import chi2_at_data, noise_gradients, profile_direct
from .profile_report import ProfileBatch, ProfileLikelihood

#: Δ(−2 ln L) thresholds of the 68.27 % and 95 % likelihood-ratio intervals of one parameter.
DELTAS = (1.0, 3.841458820694124)
#: A profile whose largest Δ(−2 ln L) over the grid stays below this is called flat.
FLAT_TOL = 1e-3


class _Setup(NamedTuple):
    """What every profile of one call shares: the data, the best fit and the fit options."""

    experiments: tuple
    data: tuple
    fixed: dict
    names: tuple
    theta_hat: np.ndarray  # best fit (the fiducial for Asimov data)
    theta_ref: np.ndarray  # the fiducial: the truth of the expected deviance
    ref: float  # −2 ln L at the best fit (NaN: take the profile's minimum)
    scales: np.ndarray  # conditional Fisher errors (or |θ| where F_jj = 0)
    fisher: np.ndarray  # at the best fit: the optimiser's whitening (profile_coords.py)
    sigma: dict  # marginal Fisher σ at the best fit
    tol: float
    max_steps: int
    mode: str  # the Jacobian's: "forward" or "reverse"
    expected: bool  # Asimov: profile the expected deviance
    kind: str  # "asimov" or "user"
    notes: tuple
    fiducial: dict
    lower: np.ndarray  # `bounds` on every varied parameter (±inf: none), kept by the fits
    upper: np.ndarray


class _GridOptions(NamedTuple):
    grid: object
    n_grid: int
    span: float
    rel_span: float
    bounds: dict | None
    scale: object
    extend: bool


# ---------------------------------------------------------------------------------------
# One profile
# ---------------------------------------------------------------------------------------
def _grid_for(name, k, setup: _Setup, opts: _GridOptions, notes):
    """The grid of parameter `k`, the default grid's clipping (``None`` if not clipped) and
    the axis (scale and bounds) along which it may be extended (``None``: not extended)."""
    center = float(setup.theta_hat[k])
    if opts.grid is not None:
        return check_grid(opts.grid, name, center), None, None
    sigma = setup.sigma[name]
    axis = choose_axis(name, center, setup.fiducial[name], sigma, opts.bounds, opts.scale)
    if axis.log or axis.user_bounds:
        grid = initial_grid(axis, center, sigma, opts.n_grid, opts.span, opts.rel_span)
        return grid, None, axis if opts.extend else None

    def finite_at(points):
        try:
            values, _ = _direct(setup, k, points)
        except (RuntimeError, FloatingPointError, ValueError):
            # e.g. an ff.ode_model with throw=True whose solve fails past zero: clip.
            return np.zeros(points.shape, dtype=bool)
        return np.isfinite(values)

    g, clip = default_grid(
        center,
        setup.fiducial[name],
        setup.sigma[name],
        opts.n_grid,
        opts.span,
        opts.rel_span,
        finite_at,
    )
    if clip:
        side, edge, first = clip
        notes.append(
            f"Grid clipped {side} at {edge:.4g} (1 % of the best fit): −2 ln L is not finite "
            f"at {name} = {first:.4g} with the other parameters at the best fit; pass `grid` "
            "to go further."
        )
        # The clipped side is not extended past the clip (−2 ln L is not finite there).
        axis = axis._replace(
            **{"lo" if side == "below" else "hi": float(g[0 if side == "below" else -1])}
        )
    return g, clip, axis if opts.extend else None


def _direct(setup: _Setup, k, points):
    values, thetas = profile_direct(
        setup.experiments,
        setup.data,
        setup.fixed,
        setup.theta_hat,
        setup.theta_ref,
        np.int32(k),
        points,
        names=setup.names,
        expected=setup.expected,
    )
    return np.asarray(values), np.asarray(thetas)


def _varies(values, ref) -> bool:
    """Whether a profile has finite points and rises by at least ``FLAT_TOL`` somewhere."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return False
    base = ref if math.isfinite(ref) else float(np.min(finite))
    return bool(np.max(finite) - base >= FLAT_TOL)


def _coords(setup: _Setup, free, k):
    scales = box_scales(setup.scales, setup.lower, setup.upper)
    return fit_coordinates(setup.fisher, scales, free, k)


def _problem(setup: _Setup) -> FitProblem:
    return FitProblem(
        setup.experiments,
        setup.data,
        setup.fixed,
        setup.names,
        setup.theta_ref,
        setup.expected,
        setup.mode,
        setup.tol,
        setup.max_steps,
        setup.lower,
        setup.upper,
    )


def _scan_from(setup: _Setup, k, theta_start, points):
    """−2 ln L at `points` (visited in order, each warm-started from the previous one, the
    first from `theta_start`): the extension of a profile beyond its grid edge."""
    free = np.array([i for i in range(len(setup.names)) if i != k], dtype=np.int32)
    if not free.size:
        values, thetas = _direct(setup, k, points)
        return values, thetas, np.isfinite(values), np.zeros(points.size, dtype=np.int64)
    resets = np.zeros(points.size, dtype=bool)
    resets[0] = True
    return profile_scan(
        _problem(setup),
        _coords(setup, free, k),
        theta_start,
        k,
        free,
        points,
        resets,
        psi_hat=float(setup.theta_hat[k]),
    )


def _scan(setup: _Setup, k, g, c):
    """−2 ln L along the grid `g` (best fit at index `c`), the others re-optimised: outwards
    to the right from the best fit, then to the left; arrays in grid order."""
    n = g.size
    order = np.concatenate([np.arange(c, n), np.arange(c - 1, -1, -1)]).astype(np.int32)
    resets = np.zeros(n, dtype=bool)
    resets[0] = True
    if c > 0:
        resets[n - c] = True  # the left sweep restarts from the best fit
    free = np.array([i for i in range(len(setup.names)) if i != k], dtype=np.int32)
    if free.size:
        values, thetas, converged, steps = profile_scan(
            _problem(setup), _coords(setup, free, k), setup.theta_hat, k, free, g[order], resets
        )
    else:
        values, thetas = _direct(setup, k, g[order])
        converged, steps = np.isfinite(values), np.zeros(n, dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    return values[inverse], thetas[inverse], converged[inverse].astype(bool), steps[inverse]


def _profile_one(name, setup: _Setup, opts: _GridOptions, deltas) -> ProfileLikelihood:
    names = setup.names
    k = names.index(name)
    center_value = float(setup.theta_hat[k])
    notes = list(setup.notes)
    g, clip, axis = _grid_for(name, k, setup, opts, notes)
    c = int(np.argmin(np.abs(g - center_value)))
    values, thetas, converged, steps = _scan(setup, k, g, c)
    if axis is not None and _varies(values, setup.ref):
        # A profile flat over the whole initial grid is structurally non-identifiable:
        # extending it would only ask the fit for ever larger compensations.
        g, values, thetas, converged, steps = extend_profile(
            axis,
            (g, values, thetas, converged, steps),
            deltas,
            setup.ref,
            lambda theta, points: _scan_from(setup, k, theta, points),
        )
        c = int(np.argmin(np.abs(g - center_value)))
    finite = np.isfinite(values)
    if not np.any(finite):
        raise NonFiniteError(
            f"The profile of {name!r} is NaN at every grid point: the model or the fit "
            f"failed. Check the model on the grid {g[0]:.6g} … {g[-1]:.6g}, or pass a "
            "narrower `grid`."
        )
    ref = setup.ref if math.isfinite(setup.ref) else float(np.min(values[finite]))
    values = values - ref
    floor = min(0.0, float(np.min(values[finite])))
    estimate = center_value
    if floor < -1e-6:
        notes.append(
            f"The profile goes {-floor:.3g} below the best fit: the global fit had not fully "
            "converged; Δ is measured from the lowest profile point."
        )
        estimate = float(g[np.nanargmin(np.where(finite, values, np.nan))])
    delta = values - floor
    center = int(np.nanargmin(np.where(finite, delta, np.nan)))
    if abs(g[center] - estimate) > abs(g[c] - estimate):
        center = c
    found = read_intervals(g, delta, center, estimate, deltas)
    notes += [f"Open side: {r}." for r in sorted(found.reasons)]
    if found.coarse_ends:
        notes.append(coarse_message(name, found.coarse_ends))
    top = max(deltas)
    nuisance = {names[i]: thetas[:, i] for i in range(len(names)) if i != k}
    minima = local_minima(g, delta, nuisance, name, top)
    other = beyond = found.other_minimum
    if len(minima) > 1 and (other is None or minima[1][1] < other[1]):
        other = minima[1][:2]
        found = found._replace(other_minimum=other)
    if len(minima) > 1:
        listed = "; ".join(
            f"Δ = {d:.3g} at " + ", ".join(f"{kk} = {v:.6g}" for kk, v in vals.items())
            for _, d, vals in minima
        )
        notes.append(f"The profile has {len(minima)} separate minima: {listed}.")
    bound_note = bound_reached(axis, g, found, top)
    if bound_note:
        notes.append(bound_note)
    if beyond is not None:
        notes.append(
            f"The profile falls below a threshold again beyond the interval (Δ = "
            f"{beyond[1]:.3g} at {name} = {beyond[0]:.6g}): the likelihood is multimodal "
            "within the grid, and the interval around the best fit is only part of the "
            "confidence set."
        )
    flat = bool(np.nanmax(delta) < FLAT_TOL)
    best = {nm: float(setup.theta_hat[i]) for i, nm in enumerate(names)}
    best.update({kk: float(v) for kk, v in setup.fixed.items()})
    profile = ProfileLikelihood(
        name=name,
        grid=g,
        delta=delta,
        converged=converged,
        steps=steps,
        nuisance=nuisance,
        estimate=estimate,
        best_fit=best,
        deltas=tuple(deltas),
        intervals=found.intervals,
        open=found.open,
        flat=flat,
        multimodal=other is not None,
        other_minimum=other,
        identifiable=bool(not any(found.open[top]) and not flat and other is None),
        verdict=verdict(name, flat, top, found, clip).replace(
            "within the grid", "up to the bound" if bound_note else "within the grid"
        ),
        fisher_sigma=float(setup.sigma[name]),
        data=setup.kind,
        notes=notes,
        _center=center,
        minima=minima,
    )
    if found.coarse_ends:
        warnings.warn(coarse_message(name, found.coarse_ends), UserWarning, stacklevel=3)
    return profile


# ---------------------------------------------------------------------------------------
# Data, best fit and Fisher scales, shared by the profiles of one call
# ---------------------------------------------------------------------------------------
def _noise_depends_on_parameters(experiments, data, fixed, theta0, names):
    """Per experiment: does its noise model depend on the varied parameters? (Asked of the
    noise model's capability first; measured by a gradient where it is undeclared.)"""
    out, unknown = [], []
    for i, exp in enumerate(experiments):
        flag = exp.noise.parameter_dependent
        if isinstance(flag, bool | np.bool_):
            out.append(bool(flag))
        else:
            out.append(None)
            unknown.append(i)
    if unknown:
        grads = noise_gradients(
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


def _asimov_needs_fit(experiments, means, fixed, theta0, names) -> bool:
    """Asimov data: Gaussian (any covariance), Poisson and PSD noise declare the expected
    deviance, known and minimal at the fiducial. Other noise models profile the Asimov
    −2 ln L, valid only where the noise does not depend on the parameters (a global fit then
    confirms the minimum)."""
    custom = [i for i, e in enumerate(experiments) if not e.noise.has_expected_deviance]
    if not custom:
        return False
    depends = _noise_depends_on_parameters(
        [experiments[i] for i in custom], [means[i] for i in custom], fixed, theta0, names
    )
    bad = [experiments[i] for i, d in zip(custom, depends, strict=True) if d]
    if bad:
        raise InputError(
            f"profile_likelihood without `data`: the noise model {bad[0].noise!r} of "
            f"{bad[0].label} depends on the parameters {list(names)}, and its expected "
            "−2 ln L under the fiducial has no known formula; noise-free (Asimov) data would "
            "drive its noise to zero. Pass `data=` (e.g. data simulated with "
            "exp.noise.simulate), or hold the noise parameters fixed with `params=`."
        )
    return True


def _box(bounds, names, theta0):
    """`bounds` as arrays over `names` (±inf where none is given); the start must be inside."""
    lower = np.full(len(names), -np.inf)
    upper = np.full(len(names), np.inf)
    for i, n in enumerate(names):
        if n not in (bounds or {}):
            continue
        lower[i], upper[i] = check_bound_pair(n, bounds[n])
        if not lower[i] <= theta0[i] <= upper[i]:
            raise InputError(
                f"`bounds` for {n!r} are [{lower[i]:.6g}, {upper[i]:.6g}] but the fiducial, "
                f"where the fits start, is {n} = {theta0[i]:.6g}; widen the bounds or move "
                "the fiducial inside them."
            )
    return lower, upper


def _fit(experiments, data_t, fixed, theta0, fid64, names, mode, F, options, notes):
    """The best fit, −2 ln L there, and the Fisher σ, scales and matrix at it."""
    tol, max_steps, expected, needs_fit, (lower, upper) = options
    scaling = sigma_and_scales(F, names, fid64, theta0)
    if not needs_fit:
        ref = float(chi2_at_data(experiments, data_t, fid64, expected=expected))
        return theta0, ref, scaling
    problem = FitProblem(
        experiments, data_t, fixed, names, theta0, expected, mode, tol, max_steps, lower, upper
    )
    res = global_fit(problem, theta0, box_scales(scaling[1], lower, upper))
    th, ref, ok = res.theta, res.value, res.converged
    if not (np.all(np.isfinite(th)) and math.isfinite(ref)):
        notes.append("The global fit failed; profiles start from the fiducial.")
        return theta0, math.nan, scaling
    if not bool(ok):
        notes.append(
            "The global fit stopped before its tolerance; the profile minimum is used as the "
            "reference if it is lower."
        )
    if not np.array_equal(th, theta0):
        # Compare with (and scale the grid and the optimiser by) the Fisher matrix at the
        # best fit, not at the fiducial that only started the fit.
        best64 = dict(fid64)
        best64.update({n: np.float64(th[i]) for i, n in enumerate(names)})
        try:
            F_hat = evaluate_checked(experiments, best64, names, mode, detail=True).fisher
        except (FisherError, FloatingPointError) as exc:
            notes.append(
                "The Fisher matrix could not be evaluated at the best fit "
                f"({str(exc).splitlines()[0]}); Fisher σ, the default grid and the optimiser "
                "scales use the fiducial's."
            )
        else:
            scaling = sigma_and_scales(F_hat, names, best64, th)
    return th, ref, scaling


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------
def _targets(name_or_names, names):
    single = isinstance(name_or_names, str)
    if single:
        targets = [name_or_names]
    elif isinstance(name_or_names, Sequence):
        targets = list(name_or_names)
    else:
        targets = None
    if not targets or not all(isinstance(t, str) for t in targets):
        raise TypeError(
            "`name_or_names` must be a parameter name or a list of names; "
            f"received {quote(name_or_names)}."
        )
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ParameterError(
            f"cannot profile {unknown}: not among the varied parameters {list(names)}."
        )
    return single, targets


def _check_thresholds(deltas, levels):
    """`deltas`, or `levels` (probability contents, as everywhere else in the library), as
    a tuple of Δ(−2 ln L) thresholds: Δ = χ²₁ quantile of the level."""
    if levels is None:
        return check_delta_levels(DELTAS if deltas is None else deltas, "deltas", stacklevel=4)
    if deltas is not None:
        raise InputError(
            "profile_likelihood received both `deltas` and `levels`; pass one: `levels` "
            "are probability contents (0.6827, 0.95), `deltas` Δ(−2 ln L) thresholds (1, "
            f"3.84); received deltas={quote(deltas)}, levels={quote(levels)}."
        )
    items = (levels,) if is_real_number(levels) else levels
    try:
        probs = tuple(float(p) for p in items)
    except (TypeError, ValueError):
        probs = ()
    if not probs or not all(0.0 < p < 1.0 for p in probs):
        raise InputError(
            "`levels` are probability contents strictly between 0 and 1 (0.6827 gives the "
            "Δ = 1 interval, 0.95 the Δ = 3.84 one); for Δ(−2 ln L) thresholds pass "
            f"`deltas=`. Received levels={quote(levels)}."
        )
    return tuple(float(chi2_dist.ppf(p, 1)) for p in probs)


def _grid_options(grid, n_grid, span, rel_span, tol, bounds, scale, extend) -> _GridOptions:
    n_grid = check_int(n_grid, "n_grid", 5)
    if n_grid % 2 == 0:
        n_grid += 1
    for label, value in (("span", span), ("rel_span", rel_span), ("tol", tol)):
        if not (is_real_number(value) and 0 < value < math.inf):
            raise InputError(f"`{label}` must be a positive number; received {value!r}.")
    if bounds is not None and not isinstance(bounds, dict):
        raise InputError(f"`bounds` must be a dict name -> (low, high); received {quote(bounds)}.")
    if not isinstance(extend, bool | np.bool_):
        raise InputError(f"`extend` must be True or False; received {quote(extend)}.")
    return _GridOptions(grid, n_grid, float(span), float(rel_span), bounds, scale, bool(extend))


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
    deltas=None,
    levels=None,
    tol=1e-6,
    max_steps=256,
    mode="forward",
    bounds=None,
    scale="auto",
    extend=True,
    progress=None,
):
    """Profile likelihood of one or several parameters, with LR and Fisher intervals.

    For each grid value ψ of the parameter the other parameters in `params` are
    re-optimised (Fisher scoring in a trust region, warm-started along the grid, within
    `bounds`);
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
    - `grid`: the values of the parameter (1-D, increasing; used as given, not extended).
      Default: `n_grid` points on ψ̂ ± `span`·σ_Fisher (or ψ̂·(1 ± `rel_span`) when the
      Fisher matrix cannot bound the parameter), on a log scale for a positive parameter
      (``ln ψ̂ ± span·σ/ψ̂``: never zero or negative), within `bounds`; on a linear scale
      clipped at 1 % of ψ̂ where going on to zero or past it would make −2 ln L
      non-finite. With `extend`, a side that stays below the largest threshold is then
      extended out to its bound.
    - `bounds`: dict name -> (low, high) for any varied parameter (e.g. a PEtab problem's
      ``problem.bounds``). A profiled parameter's grid and its extension stay inside; the
      other parameters stay inside in every fit (a rate that the data cannot bound is held
      at its bound instead of running off to where the model cannot be solved). Default
      for a profiled parameter: ψ̂·10^±3 on a log scale, ψ̂ ± 10³·σ on a linear one; for
      the others none. A side reported open is open up to its bound.
    - `scale`: ``"auto"`` (default: log for a parameter whose best fit and fiducial are
      positive and whose lower bound is not negative, else linear), ``"log"``,
      ``"linear"``, or a dict name -> one of them.
    - `extend`: extend open sides to the bounds, in scans of `n_grid` points with growing
      steps, and refine a crossing found on a coarse step (default True; the scans reuse
      the compiled profile, so it costs no compilation).
    - `progress`: a tqdm bar over the profiles with a cost estimate first (``None``:
      only when run in a terminal; ``True``; ``False``).
    - `params`: the parameters that vary (default: all of the fiducial); the rest are fixed.
    - `deltas`: Δ(−2 ln L) thresholds for the intervals (default ``DELTAS``: 1 and 3.84, the
      68.27 % and 95 % intervals of one parameter), not probabilities. The verdict uses the
      largest.
    - `levels`: the intervals as probability contents instead of `deltas`, e.g.
      ``(0.6827, 0.95)``: Δ is the χ²₁ quantile (as `levels` everywhere in the library).
    - `tol`: the fits stop when the gradient of ``−ln L`` per conditional Fisher error is
      below ``tol/2``; `max_steps`: trust-region iterations per grid point.
    - `mode`: ``"forward"`` (forward-mode gradients, default; needed for diffrax
      ``ForwardMode`` ODE models) or ``"reverse"``.

    The Fisher σ that the intervals are compared with, and that sets the default grid and
    the optimiser's scales, is evaluated at the best fit (the fiducial for Asimov data).

    **Returns:** a :class:`ProfileLikelihood` or a :class:`ProfileBatch`.

    **Raises:** `ParameterError` for unknown names, `InputError` (a `ValueError`) for bad
    data, grid, deltas or mode, or for Asimov profiles of a parameter-dependent noise model
    that declares no expected deviance; `NonFiniteError` when the profile cannot be
    evaluated anywhere (single name). Warns (`UserWarning`) when an interval endpoint is
    limited by the grid spacing.

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
    single, targets = _targets(name_or_names, names)
    opts = _grid_options(grid, n_grid, span, rel_span, tol, bounds, scale, extend)
    unknown = [b for b in (bounds or {}) if b not in names]
    if unknown:
        raise ParameterError(
            f"`bounds` names {unknown}, which are not among the varied parameters {list(names)}."
        )
    max_steps = check_int(max_steps, "max_steps", 1)
    deltas = _check_thresholds(deltas, levels)
    show = check_progress(progress)

    notes = []
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        theta0 = np.array([fid[n] for n in names], dtype=np.float64)
        # The Fisher matrix at the fiducial and the Asimov data, from the same compiled
        # function as ff.identifiability (one Jacobian compilation for both analyses).
        F, means, *_ = evaluate_checked(experiments, fid64, names, mode, detail=True)
        if data is None:
            data_t, kind = tuple(means), "asimov"
            needs_fit = _asimov_needs_fit(experiments, data_t, fixed, theta0, names)
        else:
            data_t = checked_data(data, experiments, means, fid64)  # shape, values, support
            kind, needs_fit = "user", True
        expected = kind == "asimov"
        box = _box(bounds, names, theta0)
        options = (float(tol), max_steps, expected, needs_fit, box)
        theta_hat, ref, (sigma, scales, fisher) = _fit(
            experiments, data_t, fixed, theta0, fid64, names, mode, F, options, notes
        )
        setup = _Setup(
            experiments=experiments,
            data=data_t,
            fixed=fixed,
            names=names,
            theta_hat=theta_hat,
            theta_ref=theta0,
            ref=ref,
            scales=scales,
            fisher=fisher,
            sigma=sigma,
            tol=float(tol),
            max_steps=max_steps,
            mode=mode,
            expected=expected,
            kind=kind,
            notes=tuple(notes),
            fiducial=fid,
            lower=box[0],
            upper=box[1],
        )
        estimate = (
            f"{len(targets)} profile(s), each a scan of {opts.n_grid} points (plus up to 4 "
            f"scans of {opts.n_grid} where a side is extended or refined), ≤ {max_steps} "
            "trust-region steps per point (typically 1-5), each one evaluation of the model's "
            "Jacobian."
        )
        with progress_bar(show, len(targets), "profile_likelihood", "profile", estimate) as bar:
            if single:
                bar.set_postfix_str(name_or_names)
                out = _profile_one(name_or_names, setup, opts, deltas)
                bar.update()
                return out
            profiles, errors = {}, {}
            for t in targets:
                bar.set_postfix_str(t)
                try:
                    profiles[t] = _profile_one(t, setup, opts, deltas)
                except (FisherError, ValueError, FloatingPointError, RuntimeError) as exc:
                    errors[t] = f"{type(exc).__name__}: {exc}"
                bar.update()
        return ProfileBatch(profiles=profiles, errors=errors)


__all__ = ["DELTAS", "profile_likelihood"]
