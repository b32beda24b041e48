"""Profile grids on a log or linear axis within bounds, their adaptive extension, and the
local minima of a profile.

* **Axis.** A parameter whose best fit and fiducial are positive (and whose lower bound,
  if given, is not negative) is profiled on ``u = ln ψ`` by default, so that a rate
  constant's grid never reaches zero or below; others on ``u = ψ``. Every axis has
  bounds: the user's, or by default ``ψ̂·10^{±3}`` (log) and ``ψ̂ ± 10³·σ`` (linear).
* **Extension.** A side whose profile stays below the largest threshold up to the grid
  edge is extended, in one scan of the same length (no new compilation), out to the bound
  with geometrically growing steps; a crossing found on a coarse step is then refined.
  So a side reported *open* is open up to its bound, not up to an arbitrary grid edge.
* **Minima.** Every local minimum of Δ separated from the others by a barrier of at least
  ``MIN_BARRIER`` is reported with the parameter values there, including a second minimum
  inside the interval of the best fit (a discrete symmetry such as k2 ↔ k3).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._errors import InputError, quote
from .profile_grid import RESOLUTION_RATIO

__all__ = [
    "BOUND_RATIO",
    "MIN_BARRIER",
    "Axis",
    "bound_reached",
    "choose_axis",
    "extend_profile",
    "extension_points",
    "initial_grid",
    "local_minima",
    "merge_points",
    "refine_points",
]

#: Default bounds of a log-scale profile: ψ̂ / BOUND_RATIO … ψ̂ · BOUND_RATIO.
BOUND_RATIO = 1e3
#: Local minima of Δ closer than this barrier (in Δ(−2 ln L)) to a lower one are merged.
MIN_BARRIER = 0.05


class Axis(NamedTuple):
    """How a parameter is profiled: on ``ln ψ`` (`log`) or ``ψ``, within ``[lo, hi]``."""

    log: bool
    lo: float
    hi: float
    user_bounds: bool

    def to_u(self, x):
        return np.log(x) if self.log else np.asarray(x, dtype=np.float64)

    def from_u(self, u):
        return np.exp(u) if self.log else np.asarray(u, dtype=np.float64)


def check_bound_pair(name, pair):
    """`pair` as floats (low, high) with low < high, or an `InputError` naming `name`."""
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise InputError(
            f"`bounds` for {name!r} must be a pair (low, high) with low < high (±inf "
            f"allowed); received {quote(pair)}."
        )
    return lo, hi


def choose_axis(name, center, fiducial, sigma, bounds, scale) -> Axis:
    """The axis of parameter `name` (see the module docstring). `bounds`: dict name ->
    (low, high) or ``None``; `scale`: ``"auto"``, ``"log"`` or ``"linear"`` (or a dict
    name -> one of them)."""
    if isinstance(scale, dict):
        scale = scale.get(name, "auto")
    if scale not in ("auto", "log", "linear"):
        raise InputError(
            f"`scale` must be 'auto', 'log' or 'linear' (or a dict name -> one of them); "
            f"received {quote(scale)} for {name!r}."
        )
    pair = None if bounds is None else bounds.get(name)
    lo, hi = (-math.inf, math.inf) if pair is None else check_bound_pair(name, pair)
    if not lo <= center <= hi:
        raise InputError(
            f"`bounds` for {name!r} are [{lo:.6g}, {hi:.6g}] but the best fit is "
            f"{name} = {center:.6g}; widen the bounds."
        )
    positive = center > 0 and fiducial > 0 and (pair is None or lo >= 0)
    if scale == "log" and not center > 0:
        raise InputError(
            f"scale='log' for {name!r} needs a positive best fit; received {center!r}. Use "
            "scale='linear' for this parameter."
        )
    log = scale == "log" or (scale == "auto" and positive)
    if log:
        lo = max(lo, center / BOUND_RATIO) if pair is None else max(lo, 1e-300)
        hi = min(hi, center * BOUND_RATIO) if pair is None else hi
    elif pair is None:
        width = sigma if math.isfinite(sigma) and sigma > 0 else max(abs(center), 1.0)
        lo, hi = center - BOUND_RATIO * width, center + BOUND_RATIO * width
    return Axis(bool(log), float(lo), float(hi), pair is not None)


def _half_grid(lo, center, hi, n_grid):
    half_n = (n_grid - 1) // 2
    return np.concatenate(
        [np.linspace(lo, center, half_n + 1)[:-1], np.linspace(center, hi, half_n + 1)]
    )


def initial_grid(axis: Axis, center, sigma, n_grid, span, rel_span):
    """`n_grid` points, ψ̂ in the middle, ``± span·σ`` in ``u`` (σ of ``ln ψ`` is σ/ψ̂),
    or ``± rel_span`` relative when the Fisher matrix does not bound ψ, within the bounds."""
    u_c = float(axis.to_u(center))
    if math.isfinite(sigma) and sigma > 0:
        half = span * (sigma / center if axis.log else sigma)
    else:
        half = math.log1p(rel_span) if axis.log else rel_span * (abs(center) or 1.0)
    u_lo, u_hi = float(axis.to_u(axis.lo)), float(axis.to_u(axis.hi))
    grid = axis.from_u(_half_grid(max(u_c - half, u_lo), u_c, min(u_c + half, u_hi), n_grid))
    grid[(n_grid - 1) // 2] = center
    return grid


def _geometric_offsets(first, total, n):
    """`n` increasing offsets ending at `total`, the first `first` (or evenly spaced when
    that already covers `total`): steps grow by a constant ratio."""
    if first * n >= total:
        return total * np.arange(1, n + 1) / n
    lo_r, hi_r = 1.0, 2.0
    while first * (hi_r**n - 1) / (hi_r - 1) < total:
        hi_r *= 2.0
    for _ in range(200):  # bisection for the ratio r: first·(rⁿ − 1)/(r − 1) = total
        mid = 0.5 * (lo_r + hi_r)
        if first * (mid**n - 1) / (mid - 1) < total:
            lo_r = mid
        else:
            hi_r = mid
    r = 0.5 * (lo_r + hi_r)
    offsets = first * np.cumsum(r ** np.arange(n))
    return offsets * (total / offsets[-1])


def extension_points(axis: Axis, edge, step_u, direction, n):
    """`n` points beyond `edge` (a grid value) in `direction` (±1) up to the bound, the
    first ``step_u`` (in ``u``) away; ``None`` when the edge is at the bound."""
    bound = axis.hi if direction > 0 else axis.lo
    u_edge, u_bound = float(axis.to_u(edge)), float(axis.to_u(bound))
    total = abs(u_bound - u_edge)
    if not total > 1e-12 * max(1.0, abs(u_edge)):
        return None
    if not math.isfinite(total):  # an infinite linear bound: go 10³ steps out
        total = 1e3 * step_u
    offsets = _geometric_offsets(step_u, total, n)
    return axis.from_u(u_edge + direction * offsets)


def refine_points(axis: Axis, inner, outer, n):
    """`n` points evenly spaced in ``u`` strictly between `inner` and `outer`, then
    `outer` itself (so that the bracket of a coarse crossing is resolved)."""
    u_in, u_out = float(axis.to_u(inner)), float(axis.to_u(outer))
    return axis.from_u(u_in + (u_out - u_in) * np.arange(1, n + 1) / n)


def local_minima(grid, delta, nuisance, name, top):
    """The local minima of Δ below `top`: tuples ``(ψ, Δ, {parameter: value})`` sorted by
    Δ (the best fit first), each separated from every lower one by a barrier of at least
    ``MIN_BARRIER``."""
    finite = np.isfinite(delta)
    n = len(grid)
    cands = []
    for j in range(n):
        if not finite[j] or delta[j] >= top:
            continue
        left = delta[j - 1] if j > 0 and finite[j - 1] else math.inf
        right = delta[j + 1] if j + 1 < n and finite[j + 1] else math.inf
        if delta[j] <= left and delta[j] <= right and (left, right) != (delta[j], delta[j]):
            cands.append(j)
    cands.sort(key=lambda j: delta[j])
    kept = []
    for j in cands:
        separated = True
        for m in kept:
            a, b = sorted((j, m))
            between = delta[a : b + 1]
            barrier = np.max(np.where(np.isfinite(between), between, math.inf))
            if barrier - delta[j] < MIN_BARRIER:
                separated = False
                break
        if separated:
            kept.append(j)
    out = []
    for j in kept:
        values = {name: float(grid[j])}
        values.update({k: float(v[j]) for k, v in nuisance.items()})
        out.append((float(grid[j]), float(delta[j]), values))
    return tuple(out)


def extend_profile(axis: Axis, arrays, levels, ref0, scan_from):
    """Extend the open sides of a profile (see the module docstring). `arrays` = (grid,
    −2 ln L, θ rows, converged, steps) in grid order; `levels` the Δ thresholds; `ref0`
    the −2 ln L of the best fit (NaN: the profile's minimum); ``scan_from(θ_start,
    points)`` profiles `points` in order, warm-started from ``θ_start``. Returns the
    arrays extended out to the bounds where open, and refined around coarse crossings."""
    n = arrays[0].size
    top = max(levels)
    for direction in (-1, +1):
        for _ in range(6):  # out to the bound, then refine coarse crossings
            g, values = arrays[0], arrays[1]
            ref = ref0 if math.isfinite(ref0) else float(np.nanmin(values))
            delta = values - ref
            c = int(np.nanargmin(np.where(np.isfinite(delta), delta, np.nan)))
            side = np.arange(c, g.size) if direction > 0 else np.arange(c, -1, -1)
            bad = ~np.isfinite(delta[side])
            finite_side = side[: np.argmax(bad)] if bad.any() else side
            if finite_side.size < 2:
                break
            if not np.any(delta[finite_side] >= top):
                if finite_side.size < side.size:
                    break  # the model or fit failed before the edge: no extension
                edge, inner = finite_side[-1], finite_side[-2]
                step = abs(float(axis.to_u(g[edge]) - axis.to_u(g[inner])))
                points = extension_points(axis, g[edge], step, direction, n)
            else:
                bracket = _coarse_bracket(delta, finite_side, levels)
                if bracket is None:
                    break
                edge = bracket[0]
                points = refine_points(axis, g[bracket[0]], g[bracket[1]], n)
            if points is None:
                break
            new = scan_from(arrays[2][edge], points)
            arrays = merge_points(arrays, (points, *new))
    return _refine_minima(axis, arrays, top, ref0, scan_from)


def _coarse_bracket(delta, walk, levels):
    """The first grid step along `walk` (indices outward from the best fit) across which
    Δ jumps past a level to more than ``RESOLUTION_RATIO`` times it, or ``None``."""
    for level in sorted(levels):
        hit = np.flatnonzero(delta[walk] >= level)
        if hit.size and hit[0] > 0:
            j, prev = walk[hit[0]], walk[hit[0] - 1]
            if delta[j] > RESOLUTION_RATIO * level:
                return prev, j
    return None


def _refine_minima(axis: Axis, arrays, top, ref0, scan_from):
    """Resolve every minimum other than the best fit on a fine grid between its grid
    neighbours, so that its location and Δ are those of the minimum, not of a grid point."""
    g, values = arrays[0], arrays[1]
    ref = ref0 if math.isfinite(ref0) else float(np.nanmin(values))
    found = local_minima(g, values - ref, {}, "_", top)
    n = g.size
    for x, _, _ in found[1:]:
        j = int(np.flatnonzero(arrays[0] == x)[0])
        if 0 < j < arrays[0].size - 1:
            lo, hi = arrays[0][j - 1], arrays[0][j + 1]
            u_lo, u_hi = float(axis.to_u(lo)), float(axis.to_u(hi))
            points = axis.from_u(u_lo + (u_hi - u_lo) * np.arange(1, n + 1) / (n + 1))
            new = scan_from(arrays[2][j - 1], points)
            arrays = merge_points(arrays, (points, *new))
    return arrays


def merge_points(a, b):
    """Two sets of profile points (grid, values, thetas, converged, steps) in grid order,
    the first copy of a repeated grid value kept."""
    grid = np.concatenate([a[0], b[0]])
    _, first = np.unique(grid, return_index=True)
    order = first[np.argsort(grid[first])]
    return tuple(np.concatenate([x, y])[order] for x, y in zip(a, b, strict=True))


def bound_reached(axis, g, found, top) -> str:
    """A note when a side stays open at the largest threshold up to its bound."""
    if axis is None:
        return ""
    sides = []
    for i, (side, bound) in enumerate((("below", axis.lo), ("above", axis.hi))):
        edge = g[0] if i == 0 else g[-1]
        if found.open[top][i] and found.at_edge[top][i] and np.isclose(edge, bound, rtol=1e-9):
            sides.append(
                f"{side} down to the bound {bound:.4g}"
                if i == 0
                else f"{side} up to the bound {bound:.4g}"
            )
    if not sides:
        return ""
    how = "default " if not axis.user_bounds else ""
    return (
        f"Open {' and '.join(sides)} (Δ < {top:.3g} all the way; the {how}bounds are "
        f"{'ln-' if axis.log else ''}scale [{axis.lo:.4g}, {axis.hi:.4g}]; pass `bounds` to "
        "change them)."
    )
