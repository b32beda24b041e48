"""Grids of a profile and intervals read off a profile on a grid."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._errors import InputError, quote

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


def check_grid(grid, name, center):
    """A user grid: 1-D, strictly increasing, finite, at least 3 values, with the best fit
    `center` strictly inside (added to it when it is not a grid point: the intervals are
    interpolated from the profile's minimum)."""
    try:
        g = np.asarray(grid, dtype=np.float64)
    except (TypeError, ValueError):
        g = np.empty(0)
    if g.ndim != 1 or g.size < 3 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
        raise InputError(
            "`grid` must be a 1-D, strictly increasing, finite array of at least 3 values; "
            f"received {quote(grid)}."
        )
    if not g[0] < center < g[-1]:
        raise InputError(
            f"`grid` for {name!r} spans [{g[0]:.6g}, {g[-1]:.6g}] but the best fit is "
            f"{name} = {center:.6g}: a profile needs grid points on both sides of the best fit "
            "to bound an interval. Widen the grid, or leave grid=None for the default (best "
            "fit ± several Fisher σ)."
        )
    if not np.any(np.isclose(g, center, rtol=1e-12, atol=0.0)):
        g = np.sort(np.append(g, center))
    return g


class Intervals(NamedTuple):
    """The likelihood-ratio intervals of a profile, per Δ threshold."""

    intervals: dict  # Δ -> (low, high), ±inf where open
    open: dict  # Δ -> (open below, open above)
    at_edge: dict  # Δ -> (open at the lower grid edge, open at the upper one)
    reasons: set  # why a side is open, other than the grid edge
    coarse_ends: list  # (Δ, side, ψ, Δ there) of the grid-limited endpoints
    other_minimum: tuple | None  # (ψ, Δ) of the lowest point below a Δ beyond its interval


def read_intervals(grid, delta, center, estimate, deltas) -> Intervals:
    """The intervals ``{ψ: Δ(ψ) < level}`` around the grid point `center` for each level of
    `deltas`, and the lowest point that falls below a level again beyond its interval."""
    finite = np.isfinite(delta)
    intervals, open_, at_edge, reasons, coarse_ends = {}, {}, {}, set(), []
    other = None
    for lv in deltas:
        lo, why_lo, coarse_lo = crossing(grid, delta, center, estimate, lv, -1)
        hi, why_hi, coarse_hi = crossing(grid, delta, center, estimate, lv, +1)
        intervals[lv] = (lo, hi)
        open_[lv] = (not math.isfinite(lo), not math.isfinite(hi))
        at_edge[lv] = (why_lo == "grid edge", why_hi == "grid edge")
        reasons.update(r for r in (why_lo, why_hi) if r and r != "grid edge")
        coarse_ends += [
            (lv, side, grid[j], delta[j])
            for j, side in ((coarse_lo, "lower"), (coarse_hi, "upper"))
            if j is not None
        ]
        for bound, beyond in ((lo, grid < lo), (hi, grid > hi)):
            dip = beyond & finite & (delta < lv)
            if math.isfinite(bound) and np.any(dip):
                j = int(np.flatnonzero(dip)[np.argmin(delta[dip])])
                if other is None or delta[j] < other[1]:
                    other = (float(grid[j]), float(delta[j]))
    return Intervals(intervals, open_, at_edge, reasons, coarse_ends, other)


def verdict(name, flat, top, found: Intervals, clip) -> str:
    """The verdict in words, from the intervals at the largest Δ threshold `top`.

    An open side that ends at a grid edge which the default grid clipped (`clip`, see
    :func:`default_grid`) says nothing about identifiability: the profile was not computed
    further; that side is "undetermined".
    """
    sides = ("below", "above")
    clipped_side = clip[0] if clip else None
    by_clip = [
        s
        for s, o, e in zip(sides, found.open[top], found.at_edge[top], strict=True)
        if o and e and s == clipped_side
    ]
    really_open = [s for s, o in zip(sides, found.open[top], strict=True) if o and s not in by_clip]
    if flat:
        text = "structurally non-identifiable (flat profile)"
    elif really_open:
        text = (
            f"practically non-identifiable (open {' and '.join(really_open)} at "
            f"Δ={top:.3g} within the grid)"
        )
    elif by_clip:
        text = (
            f"undetermined {by_clip[0]} (Δ < {top:.3g} up to where the default grid "
            f"was clipped, {clip[1]:.4g}; pass `grid` to go further)"
        )
    else:
        text = "identifiable"
    other = found.other_minimum
    if other is not None and not flat:
        extra = f"multimodal (another minimum, Δ = {other[1]:.3g}, at {name} = {other[0]:.6g})"
        text = extra if text == "identifiable" else f"{text}; {extra}"
    return text
