"""Grids of a profile and intervals read off a profile on a grid."""

from __future__ import annotations

import math
import numbers
import warnings
from statistics import NormalDist

import numpy as np

from .._errors import quote

#: An interval endpoint is grid-limited when Δ at the grid point beyond it exceeds this
#: multiple of the level (``z = sqrt(Δ)`` more than doubles across the bracketing step).
RESOLUTION_RATIO = 4.0


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


def crossing(grid, delta, center, estimate, level, direction):
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


def coarse_message(name, ends):
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


def is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def probability_level(p):
    """Δ(−2 ln L) of the two-sided one-parameter interval with probability `p`."""
    return NormalDist().inv_cdf(0.5 * (1.0 + p)) ** 2


def check_levels(levels, label, stacklevel=3, probabilities=True):
    """Positive finite Δ(−2 ln L) thresholds as a tuple of floats; refuses (or, below 0.5,
    warns about) values that all look like probabilities, unless not `probabilities`."""
    items = (levels,) if is_real(levels) else levels
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if not items or not all(is_real(v) and 0 < float(v) < math.inf for v in items):
        raise ValueError(
            f"`{label}` must be positive, finite Δ(−2 ln L) values (1 for the "
            f"68.27 %, 3.84 for the 95 % interval); received {quote(levels)}."
        )
    values = tuple(float(v) for v in items)
    if probabilities and max(values) < 1.0:
        hint = ", ".join(f"{probability_level(p):.4g}" for p in values)
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


def _half_grid(lo, center, hi, n_grid):
    half_n = (n_grid - 1) // 2
    return np.concatenate(
        [np.linspace(lo, center, half_n + 1)[:-1], np.linspace(center, hi, half_n + 1)]
    )


def default_grid(center, fiducial, sigma, n_grid, span, rel_span, finite_at):
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
