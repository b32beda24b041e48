"""The design problem: the free design entries ``x`` <-> the design pytree.

:func:`build_problem` checks `bounds`, `fixed` and `constraints` against the design of
one or several experiments and returns the problem in two parts: a static, hashable
:class:`Spec` (a jit static argument) and the arrays that travel into the compiled
functions. :func:`designs_from_x` maps free entries back to designs; :func:`x_from_u`
and :func:`u_from_x` are the sine (box) and softmax (ordered times) maps from
unconstrained variables ``u``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import as_experiments, check_fiducial, check_mode, check_names
from .._errors import InputError, ParameterError, quote
from .._experiment import Experiment
from .._matrix import FisherMatrix
from .criteria import RIDGE, Criterion, check_criterion


# =======================================================================================
# Argument checks and formatting shared by every design function
# =======================================================================================
def common_setup(experiment, fiducial, params, criterion, maximize, prior, relative, mode):
    experiments = as_experiments(experiment)
    joint = not isinstance(experiment, Experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_mode(mode)
    crit = check_criterion(criterion, maximize, names)
    return experiments, joint, fid, names, crit


def fmt_design(design):
    def fmt(v):
        v = np.asarray(v)
        if v.ndim == 0:
            return f"{float(v):.5g}" if np.issubdtype(v.dtype, np.floating) else str(v)
        return "[" + ", ".join(f"{float(t):.5g}" for t in v.reshape(-1)) + "]"

    if isinstance(design, np.ndarray) or np.isscalar(design):
        return fmt(design)
    if design is None:
        return "None"
    leaves, _ = jax.tree_util.tree_flatten_with_path(design)
    return "; ".join(f"{jax.tree_util.keystr(path)}={fmt(v)}" for path, v in leaves)


# =======================================================================================
# The design problem: free design entries <-> design pytree
# =======================================================================================
@dataclasses.dataclass(frozen=True)
class Spec:
    """Static part of a design problem (hashable; a jit static argument)."""

    crit: Criterion
    treedef: Any  # of the list of designs, one per experiment
    leaves: tuple  # per leaf: (shape, offset into the float vector) or (shape, -1)
    n_flat: int
    ordered: tuple  # ((start, stop, spacing), ...) in free coordinates
    mode: str
    gradient: str
    ridge: float = RIDGE


def _is_pair(obj) -> bool:
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        return False
    return all(
        isinstance(v, int | float | np.number | np.ndarray | jax.Array) and not isinstance(v, bool)
        for v in obj
    )


def _per_leaf(prefix, full, what, is_leaf=None):
    """Broadcast a pytree prefix of `full` to one entry per leaf of `full`."""
    prefix_def = jax.tree_util.tree_structure(prefix, is_leaf=is_leaf)
    try:
        subtrees = prefix_def.flatten_up_to(full)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"`{what}` must be a single value for every design entry or a pytree with the "
            f"structure of the design {jax.tree_util.tree_structure(full)}; received "
            f"{quote(prefix)} ({exc})."
        ) from None
    values = jax.tree_util.tree_leaves(prefix, is_leaf=is_leaf)
    out = []
    for value, sub in zip(values, subtrees, strict=True):
        out.extend([value] * len(jax.tree_util.tree_leaves(sub)))
    return out


class DesignArrays(NamedTuple):
    """The arrays of a design problem: the dynamic (traced) argument of every compiled
    design function, next to the static :class:`Spec`. Immutable, and a pytree."""

    experiments: tuple  # the experiments, designs still the initial ones
    fiducial: dict  # name -> numpy float64
    prior: np.ndarray  # (P, P), aligned to the varied parameters (zeros without a prior)
    scale: np.ndarray  # (P,): ones, or |fiducial| for relative=True
    base: np.ndarray  # every float design entry, flattened (initial values)
    free: np.ndarray  # int32 indices of the free entries into `base`
    low: np.ndarray  # per free entry (-inf without bounds)
    high: np.ndarray
    nonfloat: tuple  # the non-float design leaves, held as they are


class DesignProblem(NamedTuple):
    """A checked design problem: ``spec`` (static), ``arrays`` (dynamic) and ``x0``, the
    free entries of the initial design."""

    spec: Spec
    arrays: DesignArrays
    x0: np.ndarray


class _Leaf(NamedTuple):
    """One float design leaf, flattened: its initial values and free entries."""

    leaf: np.ndarray
    start: int  # first index of its free entries in the free vector
    free: np.ndarray  # indices of its free entries within the leaf


def build_problem(
    experiments,
    joint,
    fid,
    names,
    crit,
    prior,
    relative,
    mode,
    gradient,
    bounds,
    fixed,
    constraints,
) -> DesignProblem:
    """Check `bounds`, `fixed` and `constraints` against the designs of `experiments`.

    Returns a :class:`DesignProblem`; raises a clear error naming the argument at fault.
    """
    designs = [e.design for e in experiments]
    leaves = jax.tree_util.tree_leaves(designs)
    if not leaves:
        raise InputError(
            "the experiment has no design to optimise: give it one, e.g. "
            "ff.Experiment(model, noise, design=initial_times)."
        )
    treedef = jax.tree_util.tree_structure(designs)
    leaves = [np.asarray(v) for v in leaves]
    masks = _fixed_masks(fixed, designs, leaves, joint)
    pairs = _bound_pairs(bounds, designs, leaves, joint)

    info, base, nonfloat, frees, lows, highs, blocks = [], [], [], [], [], [], []
    offset = n_free = 0
    for leaf, mask, pair in zip(leaves, masks, pairs, strict=True):
        if not np.issubdtype(leaf.dtype, np.floating):
            info.append((leaf.shape, -1))
            nonfloat.append(leaf)
            continue
        info.append((leaf.shape, offset))
        values = leaf.astype(np.float64).reshape(-1)
        free_here = np.nonzero(~mask.reshape(-1))[0]
        low, high = _leaf_bounds(pair, leaf, values, free_here, bounds is not None)
        base.append(values)
        frees.append(offset + free_here)
        blocks.append(_Leaf(leaf, n_free, free_here))
        lows.append(low)
        highs.append(high)
        offset += values.size
        n_free += free_here.size
    if n_free == 0:
        raise InputError(
            "every design entry is fixed (or not a float): nothing to optimise. Check `fixed`."
        )
    free = np.concatenate(frees)
    low, high = np.concatenate(lows), np.concatenate(highs)
    spec = Spec(
        crit=crit,
        treedef=treedef,
        leaves=tuple(info),
        n_flat=offset,
        ordered=_ordered_blocks(_check_constraints(constraints), blocks, low, high),
        mode=mode,
        gradient=gradient,
    )
    arrays = DesignArrays(
        experiments=tuple(experiments),
        fiducial={k: np.float64(v) for k, v in fid.items()},
        prior=align_prior(prior, names),
        scale=scale_vector(fid, names, relative),
        base=np.concatenate(base),
        free=free.astype(np.int32),
        low=low,
        high=high,
        nonfloat=tuple(nonfloat),
    )
    return DesignProblem(spec, arrays, arrays.base[free])


def _fixed_masks(fixed, designs, leaves, joint) -> list[np.ndarray]:
    """One boolean mask per design leaf (True = held fixed)."""
    if fixed is None:
        return [np.zeros(leaf.shape, dtype=bool) for leaf in leaves]
    if (
        not joint
        and len(leaves) == 1
        and isinstance(fixed, list | tuple)
        and all(isinstance(v, bool | np.bool_) for v in fixed)
    ):
        # A plain list of booleans for a single design array is that array's mask.
        fixed = np.asarray(fixed, dtype=bool)
    masks = []
    for leaf, f in zip(
        leaves, _per_leaf(fixed if joint else [fixed], designs, "fixed"), strict=True
    ):
        f = np.asarray(f)
        if f.dtype != np.bool_:
            raise TypeError(f"`fixed` must hold booleans (True = held fixed); received {quote(f)}.")
        try:
            masks.append(np.broadcast_to(f, leaf.shape))
        except ValueError:
            raise InputError(
                f"`fixed` has an entry of shape {f.shape} for a design leaf of shape {leaf.shape}."
            ) from None
    return masks


def _bound_pairs(bounds, designs, leaves, joint) -> list:
    """One ``(low, high)`` entry per design leaf."""
    if bounds is None:
        return [(-np.inf, np.inf)] * len(leaves)
    if _is_pair(bounds):
        return [tuple(bounds)] * len(leaves)
    return _per_leaf(bounds if joint else [bounds], designs, "bounds", is_leaf=_is_pair)


def _leaf_bounds(pair, leaf, values, free_here, bounded):
    """``(low, high)`` of the free entries of one float leaf, checked."""
    if not (free_here.size and bounded):
        return np.full(free_here.size, -np.inf), np.full(free_here.size, np.inf)
    if not _is_pair(pair):
        raise InputError(f"`bounds` entries must be (low, high) pairs; received {quote(pair)}.")
    try:
        low = np.broadcast_to(np.asarray(pair[0], dtype=np.float64), leaf.shape).reshape(-1)
        high = np.broadcast_to(np.asarray(pair[1], dtype=np.float64), leaf.shape).reshape(-1)
    except ValueError:
        raise InputError(
            f"`bounds` (low, high) of shapes {np.shape(pair[0])} and {np.shape(pair[1])} do "
            f"not broadcast to the design array of shape {leaf.shape}; received {quote(pair)}. "
            "Give scalars, or arrays with one entry per design entry."
        ) from None
    low, high = low[free_here], high[free_here]
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise InputError(f"`bounds` must be finite; received {quote(pair)}.")
    if np.any(low >= high):
        raise InputError(
            f"`bounds` need low < high for every free design entry; received {quote(pair)}."
        )
    current = values[free_here]
    outside = (current < low) | (current > high)
    if np.any(outside):
        # The gain and efficiency are quoted against the initial design: it must be a
        # feasible one.
        raise InputError(
            f"the initial `design` has entries outside `bounds` {quote(pair)}: "
            f"{current[outside][:5].tolist()} at positions "
            f"{free_here[outside][:5].tolist()}. Start from a design inside the "
            "bounds (e.g. exp.replace(design=...)), or widen `bounds`."
        )
    return low, high


def _ordered_blocks(spacing, blocks, low, high) -> tuple:
    """``((start, stop, spacing), ...)`` in free coordinates: the 1-D design arrays kept
    sorted (and ``spacing`` apart) by `constraints`."""
    if spacing is None:
        return ()
    ordered = []
    for block in blocks:
        leaf, free_here = block.leaf, block.free
        if leaf.ndim != 1 or leaf.size < 2 or free_here.size == 0:
            continue
        if free_here.size != leaf.size:
            raise InputError(
                "`constraints` (ordering / min_spacing) need every entry of a 1-D design "
                "array free; this one has fixed entries (`fixed`). Split the fixed entries "
                "into their own leaf."
            )
        start, stop = block.start, block.start + free_here.size
        lo, hi = low[start:stop], high[start:stop]
        if np.ptp(lo) > 0 or np.ptp(hi) > 0:
            raise InputError(
                "`constraints` (ordering / min_spacing) need one (low, high) pair for the "
                "whole 1-D design array."
            )
        n = stop - start
        if (n - 1) * spacing >= hi[0] - lo[0]:
            raise InputError(
                f"constraints min_spacing={spacing!r} cannot be met: {n} points need "
                f"{(n - 1) * spacing:g} but the bounds span only {hi[0] - lo[0]:g}."
            )
        ordered.append((start, stop, float(spacing)))
    if not ordered:
        raise InputError(
            "`constraints` apply to 1-D design arrays of two or more entries; the design has none."
        )
    return tuple(ordered)


def _check_constraints(constraints):
    """Return the minimum spacing (0 for plain ordering) or None."""
    if constraints is None:
        return None
    if isinstance(constraints, str):
        if constraints == "ordered":
            return 0.0
        raise InputError(
            f"`constraints` must be None, 'ordered' or a dict with 'ordered' "
            f"and/or 'min_spacing'; received {constraints!r}."
        )
    if not isinstance(constraints, Mapping):
        raise TypeError(
            f"`constraints` must be None, 'ordered' or a dict; received {quote(constraints)}."
        )
    unknown = sorted(set(constraints) - {"ordered", "min_spacing"})
    if unknown:
        raise InputError(
            f"`constraints` has unknown keys {unknown}; supported: 'ordered' "
            "(sorted times) and 'min_spacing' (sorted, neighbours at least this "
            "far apart)."
        )
    spacing = constraints.get("min_spacing", None)
    if spacing is None:
        return 0.0 if constraints.get("ordered", False) else None
    spacing = float(spacing)
    if not (math.isfinite(spacing) and spacing >= 0):
        raise InputError(
            f"constraints['min_spacing'] must be a finite number >= 0; received "
            f"{constraints['min_spacing']!r}."
        )
    return spacing


def align_prior(prior, names):
    P = len(names)
    M = np.zeros((P, P))
    if prior is None:
        return M
    if not isinstance(prior, FisherMatrix):
        raise TypeError(
            f"`prior` must be an ff.FisherMatrix (from earlier data); received {quote(prior)}."
        )
    unknown = [n for n in prior.names if n not in names]
    if unknown:
        raise ParameterError(
            f"`prior` has parameters {unknown} that the design does not vary (varied: "
            f"{list(names)}). Add them to `params`, or remove them from the prior first with "
            "prior.marginalize([...]) or prior.fix([...])."
        )
    idx = [names.index(n) for n in prior.names]
    M[np.ix_(idx, idx)] = prior.matrix
    return M


def scale_vector(fid, names, relative, *, zero_as_one=False) -> np.ndarray:
    """The relative scaling by the fiducial: ``|θ₀|`` per varied parameter (the Fisher
    matrix of ``θ/|θ₀|``, i.e. of ``ln θ``), or ones when not `relative`.

    A zero fiducial has no relative scale: an error naming the parameters, or, with
    `zero_as_one`, a scale of 1 (that parameter stays in its own units).
    """
    if not relative:
        return np.ones(len(names))
    values = np.array([fid[n] for n in names], dtype=np.float64)
    if zero_as_one:
        return np.where(values != 0, np.abs(values), 1.0)
    if np.any(values == 0):
        zero = [n for n, v in zip(names, values, strict=True) if v == 0]
        raise InputError(
            f"relative=True scales by the fiducial values, but {zero} have "
            "fiducial 0; use relative=False or a non-zero fiducial."
        )
    return np.abs(values)


# ----- pure, traced maps ---------------------------------------------------------------
def designs_from_x(x, arrays, spec):
    flat = jnp.asarray(arrays.base).at[arrays.free].set(x)
    nonfloat = iter(arrays.nonfloat)
    leaves = []
    for shape, offset in spec.leaves:
        if offset < 0:
            leaves.append(next(nonfloat))
        else:
            size = int(np.prod(shape, dtype=int))
            leaves.append(flat[offset : offset + size].reshape(shape))
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def x_from_u(u, arrays, spec):
    low = jnp.asarray(arrays.low)
    high = jnp.asarray(arrays.high)
    x = low + (high - low) * 0.5 * (1.0 + jnp.sin(u))
    for start, stop, spacing in spec.ordered:
        n = stop - start
        z = jnp.concatenate([u[start:stop], jnp.zeros(1, dtype=u.dtype)])
        gaps = (high[start] - low[start] - (n - 1) * spacing) * jax.nn.softmax(z)
        t = low[start] + jnp.cumsum(gaps[:n]) + spacing * jnp.arange(n, dtype=u.dtype)
        x = x.at[start:stop].set(t)
    return x


def u_from_x(x, arrays, spec):
    """Inverse of :func:`x_from_u` (numpy), nudged inside the feasible set."""
    low, high = arrays.low, arrays.high
    frac = np.clip((x - low) / (high - low), 0.0, 1.0)
    u = np.arcsin(np.clip(2.0 * frac - 1.0, -0.999, 0.999))
    for start, stop, spacing in spec.ordered:
        t = np.sort(np.clip(x[start:stop], low[start], high[start]))
        n = stop - start
        total = high[start] - low[start] - (n - 1) * spacing
        gaps = np.empty(n + 1)
        gaps[0] = t[0] - low[start]
        gaps[1:n] = np.diff(t) - spacing
        gaps[n] = high[start] - t[-1]
        gaps = np.maximum(gaps, 1e-3 * total / (n + 1))
        u[start:stop] = np.log(gaps[:n]) - np.log(gaps[n])
    return u


def random_x(rng, n, arrays, spec):
    low, high = arrays.low, arrays.high
    x = rng.uniform(low, high, size=(n, low.size))
    for start, stop, spacing in spec.ordered:
        m = stop - start
        total = high[start] - low[start] - (m - 1) * spacing
        gaps = rng.dirichlet(np.ones(m + 1), size=n) * total  # uniform on the feasible set
        x[:, start:stop] = low[start] + np.cumsum(gaps[:, :m], axis=1) + spacing * np.arange(m)
    return x
