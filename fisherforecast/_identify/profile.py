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
import warnings
from collections.abc import Sequence

import numpy as np

from .._checks import as_experiments, check_fiducial, check_mode, check_names
from .._engine import evaluate_checked
from .._errors import FisherError, NonFiniteError, ParameterError, quote
from .._x64 import float64
from .factor import marginal_sigma_pinv
from .profile_grid import check_levels, coarse_message, crossing, default_grid, is_real
from .profile_kernels import (
    chi2_at_data,
    global_fit,
    noise_gradients,
    profile_direct,
    profile_scan,
)
from .profile_report import ProfileBatch, ProfileLikelihood

#: Δ(−2 ln L) levels of the 68.27 % and 95 % likelihood-ratio intervals of one parameter.
LEVELS = (1.0, 3.841458820694124)
#: A profile whose largest Δ(−2 ln L) over the grid stays below this is called flat.
FLAT_TOL = 1e-3


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
                values, _ = profile_direct(
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

        g, clip = default_grid(
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
        values, thetas, converged, steps = profile_scan(
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
        values, thetas = profile_direct(
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
        lo, why_lo, coarse_lo = crossing(g, delta, center, estimate, lv, -1)
        hi, why_hi, coarse_hi = crossing(g, delta, center, estimate, lv, +1)
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
        notes.append(coarse_message(name, coarse_ends))
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
        warnings.warn(coarse_message(name, coarse_ends), UserWarning, stacklevel=3)
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
        if not (is_real(value) and 0 < value < math.inf):
            raise ValueError(f"`{label}` must be a positive number; received {value!r}.")
    levels = check_levels(levels, "levels")
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
            th, value, ok = global_fit(
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
            ref = float(chi2_at_data(experiments, data_t, fid64, expected=expected))
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


__all__ = ["LEVELS", "profile_likelihood"]
