"""Optimal experimental design through the differentiable Fisher matrix.

Four questions users ask before they take data, one function each:

* *when / where* should I measure?  :func:`optimize_design` moves the continuous design
  variables (measurement times, doses, frequencies) of one or several experiments to the
  optimum of a design criterion of the Fisher matrix;
* *which* of these candidate points?  :func:`select_measurements` picks ``k`` of ``N``
  discrete candidates (greedy + Fedorov exchange, or a convex relaxation);
* *how many* repeats?  :func:`required_samples` inverts ``σ ∝ 1/√n``;
* *what would fix* a non-identifiable model?  :func:`repair_identifiability` finds the
  smallest set of added measurements that makes every parameter identifiable.

How :func:`optimize_design` works (see ``docs/design.md``):

1. The free design entries ``x`` are mapped from unconstrained variables ``u``:
   ``x = low + (high - low)(1 + sin u)/2`` for a box, a softmax of gaps for ordered times
   with a minimum spacing. The sine map reaches the bounds at finite ``u``, so optima on
   the boundary (common: ``t = 0`` or ``t = T``) are ordinary stationary points.
2. The criterion is a pure JAX function of ``ff.fisher_information(experiment.replace(
   design=x), ...)``; its gradient with respect to ``x`` is exact (forward mode by default,
   so ODE models with forward-mode adjoints work).
3. Many starts (the initial design and random designs in the feasible set) run
   ``optimistix.BFGS`` together under one ``jax.vmap``; one jitted call, compiled once per
   problem shape.
4. The best few distinct end points are polished in the original bounded variables with
   ``scipy.optimize`` (L-BFGS-B for boxes, SLSQP with linear constraints for ordered times)
   using the same JAX gradient; the best polished design is returned.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import FisherError, SingularFisherError, quote
from ._experiment import Experiment
from ._fisher import (
    ParameterError,
    _as_experiments,
    _check_mode,
    check_fiducial,
    check_names,
    fisher,
    fisher_information,
)
from ._linalg import RANK_RTOL, describe_direction
from ._matrix import FisherMatrix
from ._x64 import float64

__all__ = [
    "DesignFisher",
    "DesignResult",
    "RepairResult",
    "RequiredSamples",
    "Selection",
    "design_criterion",
    "fom_criterion",
    "optimize_design",
    "repair_identifiability",
    "required_samples",
    "select_measurements",
    "sigma_criterion",
]

HIGHEST = jax.lax.Precision.HIGHEST
CRITERIA = ("D", "A", "E", "ME")
_CRITERION_TEXT = {
    "D": "D-optimality: log det F (maximised)",
    "A": "A-optimality: -tr F^-1 (maximised)",
    "E": "E-optimality: smallest eigenvalue of F (maximised)",
    "ME": "ME-optimality: condition number of F (minimised)",
}
#: Ridge added to the unit-diagonal Fisher matrix inside the optimisation objective only, so
#: that a singular start has a finite objective and gradient; reported values are exact.
_RIDGE = 1e-10
#: Largest first BFGS step of each start, in radians of the sine-mapped variables (~3 % of a
#: box's width): keeps each start local, so that the multistart, not luck, finds the optimum.
_FIRST_STEP = 0.1


# =======================================================================================
# The Fisher matrix a user criterion sees
# =======================================================================================
class DesignFisher:
    """The Fisher matrix handed to a user design criterion: a JAX array with names.

    A user criterion is a function ``criterion(F) -> scalar`` where ``F`` is a
    :class:`DesignFisher`. Inside :func:`optimize_design` its ``matrix`` is a traced JAX
    array (float64), so the criterion must be written with ``jax.numpy`` and stay
    differentiable. The methods below are the differentiable counterparts of
    :class:`ff.FisherMatrix`'s: all are pure ``jax.numpy``.

    By default the value is **maximised**; give the callable an attribute
    ``maximize = False`` (or pass ``maximize=False`` to :func:`optimize_design`) to
    minimise it. A callable with ``log_scale = True`` and positive values is optimised on a
    log scale (same optimum, better-conditioned steps); :func:`sigma_criterion` and
    :func:`fom_criterion` do this.

    ```python
    >>> import jax.numpy as jnp
    >>> F = DesignFisher(jnp.array([[2.0, 2.0], [2.0, 5.0]]), ("a", "b"))
    >>> round(float(F.sigma("a")), 6)
    0.912871

    ```
    """

    __slots__ = ("matrix", "names")

    def __init__(self, matrix, names):
        self.matrix = matrix
        self.names = tuple(names)

    @property
    def n_params(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Row of parameter `name`."""
        if name not in self.names:
            raise ParameterError(
                f"the design criterion asked for parameter {name!r}, which is not among the "
                f"varied parameters {list(self.names)}."
            )
        return self.names.index(name)

    def _scaled_cholesky(self):
        F = self.matrix
        d = jnp.sqrt(jnp.diag(F))
        S = F / jnp.outer(d, d)
        return jnp.linalg.cholesky(S), d

    def covariance(self):
        """``F⁻¹`` (Cholesky of the unit-diagonal matrix)."""
        L, d = self._scaled_cholesky()
        eye = jnp.eye(self.n_params, dtype=self.matrix.dtype)
        S_inv = jax.scipy.linalg.cho_solve((L, True), eye)
        return S_inv / jnp.outer(d, d)

    def sigma(self, name: str | None = None):
        """Marginal 1σ error of `name` (a scalar), or of every parameter (an array)."""
        s = jnp.sqrt(jnp.diag(self.covariance()))
        return s if name is None else s[self.index(name)]

    def conditional_sigma(self, name: str):
        """1σ error of `name` with every other parameter fixed, ``1/sqrt(F_ii)``."""
        i = self.index(name)
        return 1.0 / jnp.sqrt(self.matrix[i, i])

    def marginalize(self, keep: Sequence[str]) -> DesignFisher:
        """The Fisher matrix of `keep`, marginalised over the other parameters."""
        keep = [keep] if isinstance(keep, str) else list(keep)
        idx = jnp.array([self.index(n) for n in keep])
        sub = self.covariance()[jnp.ix_(idx, idx)]
        M = jnp.linalg.inv(sub)
        return DesignFisher(0.5 * (M + M.T), keep)

    def logdet(self):
        """``log det F``."""
        L, d = self._scaled_cholesky()
        return 2.0 * jnp.sum(jnp.log(jnp.diag(L))) + 2.0 * jnp.sum(jnp.log(d))

    def figure_of_merit(self, names: Sequence[str]):
        """DETF figure of merit ``det(Cov_sub)^(-1/2)`` of `names` (e.g. ``["w0", "wa"]``)."""
        names = [names] if isinstance(names, str) else list(names)
        idx = jnp.array([self.index(n) for n in names])
        sub = self.covariance()[jnp.ix_(idx, idx)]
        return jnp.exp(-0.5 * jnp.linalg.slogdet(sub)[1])

    def eigenvalues(self):
        """Eigenvalues of the matrix, ascending."""
        return jnp.linalg.eigvalsh(self.matrix)

    def __repr__(self):
        return f"DesignFisher(names={list(self.names)})"


@functools.lru_cache(maxsize=256)
def sigma_criterion(name: str) -> Callable:
    """A design criterion: the marginal 1σ error of one parameter, minimised.

    Use it to design for one parameter of interest while marginalising over the others
    (the "Ds-optimal" design for a single parameter).

    **Arguments:**

    - `name`: the parameter of interest.

    **Returns:** a callable ``criterion(F) -> σ_name`` with ``maximize = False``; the same
    object for the same name, so repeated designs do not recompile.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> from fisherforecast._design import sigma_criterion
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([-0.2, 0.3]))
    >>> res = ff.optimize_design(exp, {"a": 1.0, "b": 2.0}, bounds=(-1.0, 1.0),
    ...                          criterion=sigma_criterion("b"), n_starts=4)
    >>> sorted(round(float(t), 6) for t in res.design)
    [-1.0, 1.0]

    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"sigma_criterion(name): `name` must be a string; received {name!r}.")

    def criterion(F):
        return F.sigma(name)

    criterion.maximize = False
    criterion.log_scale = True
    criterion.label = f"sigma({name}) (minimised)"
    criterion.__name__ = f"sigma_{name}"
    return criterion


def fom_criterion(names: Sequence[str]) -> Callable:
    """A design criterion: the DETF figure of merit ``det(Cov_sub)^(-1/2)``, maximised.

    **Arguments:**

    - `names`: the parameters whose marginal covariance enters (``["w0", "wa"]`` for the
      Dark Energy Task Force FoM).

    **Returns:** a callable ``criterion(F) -> FoM`` (the same object for the same names).

    ```python
    >>> from fisherforecast._design import fom_criterion
    >>> fom_criterion(["w0", "wa"]).label
    'FoM(w0, wa) (maximised)'

    ```
    """
    if isinstance(names, str):
        names = [names]
    return _fom_criterion(tuple(names))


@functools.lru_cache(maxsize=256)
def _fom_criterion(names):
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"fom_criterion(names): names must be strings; received {n!r}.")

    def criterion(F):
        return F.figure_of_merit(names)

    criterion.maximize = True
    criterion.log_scale = True
    criterion.label = f"FoM({', '.join(names)}) (maximised)"
    criterion.__name__ = "fom_" + "_".join(names)
    return criterion


# =======================================================================================
# Criteria on a (P, P) matrix: pure JAX
# =======================================================================================
@dataclasses.dataclass(frozen=True)
class _Criterion:
    """Static description of a criterion (hashable: used as a jit static argument)."""

    kind: Any  # one of CRITERIA or a callable
    maximize: bool  # direction of the *natural* value
    names: tuple[str, ...]

    @property
    def label(self) -> str:
        if isinstance(self.kind, str):
            return _CRITERION_TEXT[self.kind]
        label = getattr(self.kind, "label", None)
        if label:
            return str(label)
        name = getattr(self.kind, "__name__", type(self.kind).__name__)
        return f"{name} ({'maximised' if self.maximize else 'minimised'})"

    @property
    def short(self) -> str:
        if isinstance(self.kind, str):
            return self.kind
        return getattr(self.kind, "__name__", "custom")

    @property
    def log_scale(self) -> bool:
        return not isinstance(self.kind, str) and bool(getattr(self.kind, "log_scale", False))


def _check_criterion(criterion, maximize, names) -> _Criterion:
    if isinstance(criterion, str):
        key = criterion.upper()
        if key not in CRITERIA:
            raise ValueError(
                f"`criterion` must be one of {CRITERIA} or a callable criterion(F) -> scalar; "
                f"received {criterion!r}."
            )
        natural = key != "ME"
        if maximize is not None and bool(maximize) != natural:
            raise ValueError(
                f"criterion {key!r} is {'maximised' if natural else 'minimised'} by "
                f"definition; received maximize={maximize!r}. Leave `maximize` unset for the "
                "built-in criteria."
            )
        return _Criterion(key, natural, tuple(names))
    if callable(criterion):
        if maximize is None:
            maximize = getattr(criterion, "maximize", True)
        return _Criterion(criterion, bool(maximize), tuple(names))
    raise TypeError(
        f"`criterion` must be one of {CRITERIA} or a callable criterion(F) -> scalar; "
        f"received {quote(criterion)}."
    )


def _scaled(F, ridge):
    diag = jnp.diag(F)
    d = jnp.sqrt(jnp.where(diag > 0, diag, 1.0))
    S = F / jnp.outer(d, d) + ridge * jnp.eye(F.shape[0], dtype=F.dtype)
    return S, d


def _user_value(F, crit):
    value = crit.kind(DesignFisher(F, crit.names))
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(
            f"the design criterion {crit.short!r} must return a scalar; it returned an array "
            f"of shape {value.shape}."
        )
    return value


def _loss_from_matrix(F, crit: _Criterion, ridge=_RIDGE):
    """The objective to *minimise*: a monotone function of the criterion (ridge-regularised)."""
    kind = crit.kind
    if not isinstance(kind, str):
        value = _user_value(F, crit)
        if crit.log_scale:
            value = jnp.log(value)
        return -value if crit.maximize else value
    if kind in ("D", "A"):
        S, d = _scaled(F, ridge)
        L = jnp.linalg.cholesky(S)
        if kind == "D":
            return -(2.0 * jnp.sum(jnp.log(jnp.diag(L))) + 2.0 * jnp.sum(jnp.log(d)))
        eye = jnp.eye(F.shape[0], dtype=F.dtype)
        S_inv = jax.scipy.linalg.cho_solve((L, True), eye)
        return jnp.sum(jnp.diag(S_inv) / d**2)
    F_reg = F + ridge * jnp.diag(jnp.diag(F))
    w = jnp.linalg.eigvalsh(F_reg)
    if kind == "E":
        return -w[0]
    return jnp.log(w[-1]) - jnp.log(w[0])  # ME: log of the condition number


def _natural_from_matrix(F, crit: _Criterion):
    """The criterion as defined (no ridge): log det F, -tr F⁻¹, λ_min, cond, user value."""
    kind = crit.kind
    if not isinstance(kind, str):
        return _user_value(F, crit)
    if kind == "D":
        sign, logdet = jnp.linalg.slogdet(F)
        return jnp.where(sign > 0, logdet, -jnp.inf)
    if kind == "A":
        return -jnp.trace(jnp.linalg.solve(F, jnp.eye(F.shape[0], dtype=F.dtype)))
    w = jnp.linalg.eigvalsh(F)
    if kind == "E":
        return w[0]
    return w[-1] / w[0]


def _natural_numpy(F, crit: _Criterion) -> float:
    """The natural value from a numpy matrix, robust to singular matrices."""
    F = np.asarray(F, dtype=np.float64)
    kind = crit.kind
    if not isinstance(kind, str):
        with float64():
            return float(_user_value(jnp.asarray(F), crit))
    if kind in ("D", "A"):
        # On the unit-diagonal matrix, so that parameters of very different scales do not
        # look singular: log det F = log det S + Σ log F_ii, F⁻¹ = D⁻¹ S⁻¹ D⁻¹.
        diag = np.diag(F)
        if np.any(diag <= 0):
            return -math.inf
        d = np.sqrt(diag)
        w, V = np.linalg.eigh(F / np.outer(d, d))
        if w[0] <= RANK_RTOL * F.shape[0] * w[-1]:
            return -math.inf
        if kind == "D":
            return float(np.sum(np.log(w)) + 2.0 * np.sum(np.log(d)))
        return float(-np.sum(((V**2) @ (1.0 / w)) / diag))
    w = np.linalg.eigvalsh(F)
    if kind == "E":
        return float(w[0])
    return math.inf if w[0] <= 0 else float(w[-1] / w[0])


# =======================================================================================
# The design problem: free design entries <-> design pytree
# =======================================================================================
@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static part of a design problem (hashable; a jit static argument)."""

    crit: _Criterion
    treedef: Any  # of the list of designs, one per experiment
    leaves: tuple  # per leaf: (shape, offset into the float vector) or (shape, -1)
    n_flat: int
    ordered: tuple  # ((start, stop, spacing), ...) in free coordinates
    mode: str
    gradient: str
    ridge: float = _RIDGE


def _is_pair(obj) -> bool:
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        return False
    return all(isinstance(v, int | float | np.number | np.ndarray | jax.Array)
               and not isinstance(v, bool) for v in obj)


def _per_leaf(prefix, full, what, is_leaf=None):
    """Broadcast a pytree prefix of `full` to one entry per leaf of `full`."""
    prefix_def = jax.tree_util.tree_structure(prefix, is_leaf=is_leaf)
    try:
        subtrees = prefix_def.flatten_up_to(full)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"`{what}` must be a single value for every design entry or a pytree with the "
            f"structure of the design {jax.tree_util.tree_structure(full)}; received "
            f"{quote(prefix)} ({exc})."
        ) from None
    values = jax.tree_util.tree_leaves(prefix, is_leaf=is_leaf)
    out = []
    for value, sub in zip(values, subtrees, strict=True):
        out.extend([value] * len(jax.tree_util.tree_leaves(sub)))
    return out


def _is_float_leaf(leaf) -> bool:
    return np.issubdtype(np.asarray(leaf).dtype, np.floating)


def _build_problem(experiments, joint, fid, names, crit, prior, relative, mode, gradient,
                   bounds, fixed, constraints):
    designs = [e.design for e in experiments]
    leaves, treedef = jax.tree_util.tree_flatten(designs)
    if not leaves:
        raise ValueError(
            "the experiment has no design to optimise: give it one, e.g. "
            "ff.Experiment(model, noise, design=initial_times)."
        )
    leaves = [np.asarray(v) for v in leaves]

    # ----- fixed mask ------------------------------------------------------------------
    if fixed is None:
        fixed_leaves = [False] * len(leaves)
    else:
        prefix = fixed if joint else [fixed]
        fixed_leaves = _per_leaf(prefix, designs, "fixed")
    masks = []
    for leaf, f in zip(leaves, fixed_leaves, strict=True):
        f = np.asarray(f)
        if f.dtype != np.bool_:
            raise TypeError(f"`fixed` must hold booleans (True = held fixed); received "
                            f"{quote(f)}.")
        try:
            masks.append(np.broadcast_to(f, leaf.shape))
        except ValueError:
            raise ValueError(f"`fixed` has an entry of shape {f.shape} for a design leaf of "
                             f"shape {leaf.shape}.") from None

    # ----- bounds ----------------------------------------------------------------------
    if bounds is None:
        bound_leaves = [(-np.inf, np.inf)] * len(leaves)
    elif _is_pair(bounds):
        bound_leaves = [tuple(bounds)] * len(leaves)
    else:
        prefix = bounds if joint else [bounds]
        bound_leaves = _per_leaf(prefix, designs, "bounds", is_leaf=_is_pair)

    # ----- flat vector of float leaves, free entries -------------------------------------
    info, base, free, lows, highs, nonfloat = [], [], [], [], [], []
    offset = 0
    free_ranges = []
    for i, (leaf, mask, pair) in enumerate(zip(leaves, masks, bound_leaves, strict=True)):
        if not _is_float_leaf(leaf):
            info.append((leaf.shape, -1))
            nonfloat.append(leaf)
            continue
        info.append((leaf.shape, offset))
        values = leaf.astype(np.float64).reshape(-1)
        base.append(values)
        free_here = np.nonzero(~mask.reshape(-1))[0]
        start = sum(len(f) for f in free)
        free.append(offset + free_here)
        free_ranges.append((i, start, start + len(free_here), leaf, free_here))
        if len(free_here) and bounds is not None:
            if not _is_pair(pair):
                raise ValueError(f"`bounds` entries must be (low, high) pairs; received "
                                 f"{quote(pair)}.")
            low = np.broadcast_to(np.asarray(pair[0], dtype=np.float64), leaf.shape).reshape(-1)
            high = np.broadcast_to(np.asarray(pair[1], dtype=np.float64),
                                   leaf.shape).reshape(-1)
            low, high = low[free_here], high[free_here]
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"`bounds` must be finite; received {quote(pair)}.")
            if np.any(low >= high):
                raise ValueError(f"`bounds` need low < high for every free design entry; "
                                 f"received {quote(pair)}.")
            current = values[free_here]
            outside = (current < low) | (current > high)
            if np.any(outside):
                # The gain and efficiency are quoted against the initial design: it must be
                # a feasible one.
                raise ValueError(
                    f"the initial `design` has entries outside `bounds` {quote(pair)}: "
                    f"{current[outside][:5].tolist()} at positions "
                    f"{free_here[outside][:5].tolist()}. Start from a design inside the "
                    "bounds (e.g. exp.replace(design=...)), or widen `bounds`.")
        else:
            low = np.full(len(free_here), -np.inf)
            high = np.full(len(free_here), np.inf)
        lows.append(low)
        highs.append(high)
        offset += values.size
    free_idx = np.concatenate(free) if free else np.zeros(0, int)
    if free_idx.size == 0:
        raise ValueError("every design entry is fixed (or not a float): nothing to optimise. "
                         "Check `fixed`.")
    low = np.concatenate(lows)
    high = np.concatenate(highs)

    # ----- constraints -----------------------------------------------------------------
    spacing = _check_constraints(constraints)
    ordered = []
    if spacing is not None:
        for _i, start, stop, leaf, free_here in free_ranges:
            if leaf.ndim != 1 or leaf.size < 2 or len(free_here) == 0:
                continue
            if len(free_here) != leaf.size:
                raise ValueError("`constraints` (ordering / min_spacing) need every entry of "
                                 "a 1-D design array free; this one has fixed entries "
                                 "(`fixed`). Split the fixed entries into their own leaf.")
            lo, hi = low[start:stop], high[start:stop]
            if np.ptp(lo) > 0 or np.ptp(hi) > 0:
                raise ValueError("`constraints` (ordering / min_spacing) need one (low, high) "
                                 "pair for the whole 1-D design array.")
            n = stop - start
            if (n - 1) * spacing >= hi[0] - lo[0]:
                raise ValueError(
                    f"constraints min_spacing={spacing!r} cannot be met: {n} points need "
                    f"{(n - 1) * spacing:g} but the bounds span only {hi[0] - lo[0]:g}.")
            ordered.append((start, stop, float(spacing)))
        if not ordered:
            raise ValueError("`constraints` apply to 1-D design arrays of two or more entries; "
                             "the design has none.")

    spec = _Spec(crit=crit, treedef=treedef, leaves=tuple(info), n_flat=offset,
                 ordered=tuple(ordered), mode=mode, gradient=gradient)
    dyn = {
        "experiments": tuple(experiments),
        "fid": {k: np.float64(v) for k, v in fid.items()},
        "prior": _align_prior(prior, names),
        "scale": _scale_vector(fid, names, relative),
        "base": np.concatenate(base) if base else np.zeros(0),
        "free": free_idx.astype(np.int32),
        "low": low,
        "high": high,
        "nonfloat": tuple(nonfloat),
    }
    x0 = dyn["base"][free_idx]
    return spec, dyn, x0


def _check_constraints(constraints):
    """Return the minimum spacing (0 for plain ordering) or None."""
    if constraints is None:
        return None
    if isinstance(constraints, str):
        if constraints == "ordered":
            return 0.0
        raise ValueError(f"`constraints` must be None, 'ordered' or a dict with 'ordered' "
                         f"and/or 'min_spacing'; received {constraints!r}.")
    if not isinstance(constraints, Mapping):
        raise TypeError(f"`constraints` must be None, 'ordered' or a dict; received "
                        f"{quote(constraints)}.")
    unknown = sorted(set(constraints) - {"ordered", "min_spacing"})
    if unknown:
        raise ValueError(f"`constraints` has unknown keys {unknown}; supported: 'ordered' "
                         "(sorted times) and 'min_spacing' (sorted, neighbours at least this "
                         "far apart).")
    spacing = constraints.get("min_spacing", None)
    if spacing is None:
        return 0.0 if constraints.get("ordered", False) else None
    spacing = float(spacing)
    if not (math.isfinite(spacing) and spacing >= 0):
        raise ValueError(f"constraints['min_spacing'] must be a finite number >= 0; received "
                         f"{constraints['min_spacing']!r}.")
    return spacing


def _align_prior(prior, names):
    P = len(names)
    M = np.zeros((P, P))
    if prior is None:
        return M
    if not isinstance(prior, FisherMatrix):
        raise TypeError(f"`prior` must be an ff.FisherMatrix (from earlier data); received "
                        f"{quote(prior)}.")
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


def _scale_vector(fid, names, relative):
    if not relative:
        return np.ones(len(names))
    values = np.array([fid[n] for n in names], dtype=np.float64)
    if np.any(values == 0):
        zero = [n for n, v in zip(names, values, strict=True) if v == 0]
        raise ValueError(f"relative=True scales by the fiducial values, but {zero} have "
                         "fiducial 0; use relative=False or a non-zero fiducial.")
    return np.abs(values)


# ----- pure, traced maps ---------------------------------------------------------------
def _designs_from_x(x, dyn, spec):
    flat = jnp.asarray(dyn["base"]).at[dyn["free"]].set(x)
    nonfloat = iter(dyn["nonfloat"])
    leaves = []
    for shape, offset in spec.leaves:
        if offset < 0:
            leaves.append(next(nonfloat))
        else:
            size = int(np.prod(shape, dtype=int))
            leaves.append(flat[offset:offset + size].reshape(shape))
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def _fisher_of_x(x, dyn, spec):
    """Total (scaled) Fisher matrix, prior included, of the design with free entries x."""
    designs = _designs_from_x(x, dyn, spec)
    F = jnp.asarray(dyn["prior"])
    for exp, design in zip(dyn["experiments"], designs, strict=True):
        F = F + fisher_information(exp.replace(design=design), dyn["fid"], spec.crit.names,
                                   spec.mode)
    s = jnp.asarray(dyn["scale"])
    return F * jnp.outer(s, s)


def _raw_loss(x, dyn, spec):
    return _loss_from_matrix(_fisher_of_x(x, dyn, spec), spec.crit, spec.ridge)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _loss_x(x, dyn, spec):
    return _raw_loss(x, dyn, spec)


@_loss_x.defjvp
def _loss_x_jvp(spec, primals, tangents):
    # The gradient is computed here in the mode the user chose and contracted with the
    # tangent, so that reverse-mode callers (optimistix, jax.grad) never reverse-differentiate
    # through the model: ODE models built for forward-mode autodiff keep working.
    x, dyn = primals
    x_dot = tangents[0]
    if spec.gradient == "forward":
        grad, value = jax.jacfwd(lambda z: (_raw_loss(z, dyn, spec),) * 2, has_aux=True)(x)
    else:
        value, grad = jax.value_and_grad(_raw_loss)(x, dyn, spec)
    return value, jnp.dot(grad, x_dot, precision=HIGHEST)


def _natural_x(x, dyn, spec):
    return _natural_from_matrix(_fisher_of_x(x, dyn, spec), spec.crit)


def _x_from_u(u, dyn, spec):
    low = jnp.asarray(dyn["low"])
    high = jnp.asarray(dyn["high"])
    x = low + (high - low) * 0.5 * (1.0 + jnp.sin(u))
    for start, stop, spacing in spec.ordered:
        n = stop - start
        z = jnp.concatenate([u[start:stop], jnp.zeros(1, dtype=u.dtype)])
        gaps = (high[start] - low[start] - (n - 1) * spacing) * jax.nn.softmax(z)
        t = low[start] + jnp.cumsum(gaps[:n]) + spacing * jnp.arange(n, dtype=u.dtype)
        x = x.at[start:stop].set(t)
    return x


def _u_from_x(x, dyn, spec):
    """Inverse of :func:`_x_from_u` (numpy), nudged inside the feasible set."""
    low, high = dyn["low"], dyn["high"]
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


def _random_x(rng, n, dyn, spec):
    low, high = dyn["low"], dyn["high"]
    x = rng.uniform(low, high, size=(n, low.size))
    for start, stop, spacing in spec.ordered:
        m = stop - start
        total = high[start] - low[start] - (m - 1) * spacing
        gaps = rng.dirichlet(np.ones(m + 1), size=n) * total  # uniform on the feasible set
        x[:, start:stop] = low[start] + np.cumsum(gaps[:, :m], axis=1) + spacing * np.arange(m)
    return x


# ----- jitted entry points (module level: compiled once per problem shape) -------------
@partial(jax.jit, static_argnames=("spec", "max_steps", "rtol", "batch_size"))
def _multistart(u0s, dyn, spec, max_steps, rtol, batch_size=None):
    """Batched BFGS from every start; returns end points, loss, criterion, converged.

    ``batch_size=None`` runs every start under one ``vmap``; an integer runs them in
    vmapped chunks of that size one after another (``jax.lax.map``), still in one
    compiled call. Under ``vmap`` the starts advance in lockstep (every start runs as many
    BFGS iterations, and an ODE model as many solver steps, as the slowest), which
    accelerators absorb but a CPU pays for.
    """
    import optimistix as optx

    solver = optx.BFGS(rtol=rtol, atol=rtol)

    def objective(u, dyn):
        return _loss_x(_x_from_u(u, dyn, spec), dyn, spec)

    def scaled(u, args):
        dyn, scale = args
        return objective(u, dyn) / scale

    def one(u0):
        # BFGS starts from an identity Hessian, so its first step is the raw gradient and
        # can leap into another basin. Dividing the objective by (largest gradient
        # component at the start) / _FIRST_STEP bounds that step to _FIRST_STEP radians of
        # u (a few per cent of the range): every start is a genuinely local optimisation,
        # and the multistart, not a lucky jump, finds the global optimum. The BFGS updates
        # learn the curvature from there.
        gmax = jnp.max(jnp.abs(jax.grad(objective)(u0, dyn)))
        scale = jnp.where(jnp.isfinite(gmax) & (gmax > 0), gmax / _FIRST_STEP, 1.0)
        sol = optx.minimise(scaled, solver, u0, args=(dyn, scale), max_steps=max_steps,
                            throw=False)
        x = _x_from_u(sol.value, dyn, spec)
        F = _fisher_of_x(x, dyn, spec)
        return (x, _loss_from_matrix(F, spec.crit, spec.ridge),
                _natural_from_matrix(F, spec.crit), sol.result == optx.RESULTS.successful)

    if batch_size is None or batch_size >= u0s.shape[0]:
        return jax.vmap(one)(u0s)
    return jax.lax.map(one, u0s, batch_size=batch_size)


@partial(jax.jit, static_argnames=("spec",))
def _loss_and_grad(x, dyn, spec):
    return jax.value_and_grad(_loss_x)(x, dyn, spec)


@partial(jax.jit, static_argnames=("spec",))
def _natural_batch(xs, dyn, spec):
    return jax.vmap(lambda x: _natural_x(x, dyn, spec))(xs)


@partial(jax.jit, static_argnames=("spec",))
def _natural_and_grad(x, dyn, spec):
    if spec.gradient == "forward":
        grad, value = jax.jacfwd(lambda z: (_natural_x(z, dyn, spec),) * 2, has_aux=True)(x)
        return value, grad
    return jax.value_and_grad(_natural_x)(x, dyn, spec)


# =======================================================================================
# Result
# =======================================================================================
class DesignResult:
    """The result of :func:`optimize_design`.

    Attributes:
        design: the optimal design (the experiment's design pytree, numpy float64; a list
            of designs for a joint optimisation of several experiments).
        criterion_value: the criterion at the optimum, as defined (``log det F`` for "D",
            ``-tr F⁻¹`` for "A", ``λ_min`` for "E", the condition number for "ME", the
            callable's value otherwise), prior included.
        criterion: a description of the criterion; `maximize`: its direction.
        experiment: the optimised :class:`ff.Experiment` (a list for a joint design).
        fisher: the Fisher matrix of the optimised experiment(s) alone (no prior).
        total_fisher: ``fisher`` plus the prior (what the criterion was evaluated on,
            before any ``relative`` scaling).
        initial_design, initial_value, initial_fisher: the same for the starting design.
        gain: the improvement of the criterion over the initial design, in the criterion's
            own units and direction (positive is better).
        efficiency: the initial design's efficiency relative to the optimum, for "D"
            (``(det F_init / det F_opt)^(1/P)``) and "A" (``tr F_opt⁻¹ / tr F_init⁻¹``);
            ``None`` for other criteria.
        all_starts: the criterion value reached by every start of the batched multistart
            (before polishing; NaN for a start that failed); start 0 is the initial design.
        converged: per start, whether BFGS met its tolerance.
        n_polished: how many distinct end points were polished.
    """

    def __init__(self, **fields):
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("DesignResult is immutable.")

    @property
    def n_starts(self) -> int:
        return len(self.all_starts)

    def n_at_best(self, rtol: float = 1e-6) -> int:
        """How many starts ended within `rtol` (relative) of the returned optimum."""
        v = np.asarray(self.all_starts)
        tol = rtol * max(abs(self.criterion_value), 1.0)
        ok = np.isfinite(v)
        if self.maximize:
            return int(np.sum(ok & (v >= self.criterion_value - tol)))
        return int(np.sum(ok & (v <= self.criterion_value + tol)))

    def sigma_table(self) -> dict:
        """Marginal σ before and after: ``{name: (initial, optimal)}`` (prior included)."""
        out = {}
        before = (_safe_sigma(self.initial_total_fisher) if self.initial_total_fisher
                  is not None else {})
        after = _safe_sigma(self.total_fisher)
        for n in self.total_fisher.names:
            out[n] = (before.get(n, math.inf), after.get(n, math.inf))
        return out

    def summary(self) -> str:
        """Criterion before/after, the design, and a σ table before/after."""
        lines = [
            f"Optimal design: {self.criterion}",
            f"  {self.n_starts} starts (batched BFGS), {int(np.sum(self.converged))} "
            f"converged, {self.n_at_best()} reached the optimum; {self.n_polished} polished",
            f"  criterion: initial {self.initial_value:.6g} -> optimal "
            f"{self.criterion_value:.6g} (gain {self.gain:+.6g})",
        ]
        if self.efficiency is not None:
            lines.append(f"  efficiency of the initial design: {self.efficiency:.4g}")
        designs = self.design if self.joint else [self.design]
        initial = self.initial_design if self.joint else [self.initial_design]
        exps = self.experiment if self.joint else [self.experiment]
        for exp, d0, d1 in zip(exps, initial, designs, strict=True):
            label = f"experiment {exp.name!r}" if exp.name else "design"
            lines.append(f"  {label}:")
            lines.append(f"    initial: {_fmt_design(d0)}")
            lines.append(f"    optimal: {_fmt_design(d1)}")
        table = self.sigma_table()
        width = max([len(n) for n in table] + [9])
        lines.append(f"  {'parameter':<{width}}  {'sigma initial':>13}  {'sigma optimal':>13}"
                     f"  {'ratio':>7}")
        for n, (a, b) in table.items():
            ratio = b / a if a > 0 and math.isfinite(a) else math.nan
            lines.append(f"  {n:<{width}}  {a:>13.5g}  {b:>13.5g}  {ratio:>7.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain-Python view of the result."""
        def tolist(tree):
            return jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), tree)

        return {
            "criterion": self.criterion, "maximize": self.maximize,
            "criterion_value": self.criterion_value, "initial_value": self.initial_value,
            "gain": self.gain, "efficiency": self.efficiency,
            "design": tolist(self.design), "initial_design": tolist(self.initial_design),
            "all_starts": np.asarray(self.all_starts).tolist(),
            "converged": np.asarray(self.converged).tolist(),
            "sigma": {n: list(v) for n, v in self.sigma_table().items()},
            "fisher": self.fisher.to_dict(),
        }

    def __repr__(self):
        return (f"DesignResult(criterion={self.criterion!r}, criterion_value="
                f"{self.criterion_value:.6g}, gain={self.gain:+.4g}, starts={self.n_starts})")

    def plot(self, n_grid: int = 200, max_curves: int = 6):
        """Plot the design.

        For a single experiment with a 1-D design array: (left) the model curve at the
        fiducial over the bounds, with the initial and optimal measurement points; (middle)
        the criterion along the design space: the criterion when one measurement point
        moves to ``t`` and the others stay at the optimum, one curve per distinct point (at
        a coordinate-wise optimum each curve peaks at its own point); (right) the value
        reached by each start of the multistart. For other designs only the last panel.

        **Returns:** the matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        one_d = (not self.joint and isinstance(self.design, np.ndarray)
                 and self.design.ndim == 1 and np.isfinite(self._plot["low"]).all())
        ncols = 3 if one_d else 1
        fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.8), squeeze=False)
        axes = axes[0]
        if one_d:
            self._plot_curve(axes[0], n_grid)
            self._plot_profiles(axes[1], n_grid, max_curves)
        ax = axes[-1]
        values = np.sort(np.asarray(self.all_starts, dtype=float))
        if self.maximize:
            values = values[::-1]
        ax.plot(np.arange(1, values.size + 1), values, "o", ms=3, color="C0",
                label="end of each start")
        ax.axhline(self.criterion_value, color="C3", lw=1, label="returned optimum")
        ax.axhline(self.initial_value, color="0.5", ls="--", lw=1, label="initial design")
        ax.set_xlabel("start (sorted)")
        ax.set_ylabel(f"criterion ({self._crit.short})")
        ax.set_title("multistart")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def _plot_curve(self, ax, n_grid):
        low, high = float(np.min(self._plot["low"])), float(np.max(self._plot["high"]))
        grid = np.linspace(low, high, n_grid)
        exp = self.experiment
        try:
            with float64():
                fid = {k: np.float64(v) for k, v in self._plot["fid"].items()}
                curve = np.asarray(exp.model(fid, jnp.asarray(grid)))
                y0 = np.asarray(exp.model(fid, jnp.asarray(self.initial_design)))
                y1 = np.asarray(exp.model(fid, jnp.asarray(self.design)))
        except Exception:  # a model that cannot take a grid: no curve panel
            ax.text(0.5, 0.5, "model cannot be evaluated on a grid", ha="center",
                    transform=ax.transAxes)
            return
        curve = curve.reshape(n_grid, -1)
        y0 = y0.reshape(len(self.initial_design), -1)
        y1 = y1.reshape(len(self.design), -1)
        for j in range(curve.shape[1]):
            ax.plot(grid, curve[:, j], color=f"C{j}", lw=1.2,
                    label="model at fiducial" if j == 0 else None)
            ax.plot(self.initial_design, y0[:, j], "s", mfc="none", color="0.4", ms=6,
                    label="initial" if j == 0 else None)
            ax.plot(self.design, y1[:, j], "o", color="C3", ms=5,
                    label="optimal" if j == 0 else None)
        ax.set_xlabel("design variable (e.g. time)")
        ax.set_ylabel("model output")
        ax.set_title("measurement points")
        ax.legend(fontsize=7)

    def _plot_profiles(self, ax, n_grid, max_curves):
        p = self._plot
        low, high = float(np.min(p["low"])), float(np.max(p["high"]))
        grid = np.linspace(low, high, n_grid)
        x = np.asarray(p["x"], dtype=float)
        distinct = []
        for i, v in enumerate(x):
            if all(abs(v - x[j]) > 1e-6 * (high - low) for j in distinct):
                distinct.append(i)
        distinct = distinct[:max_curves]
        xs = np.repeat(x[None, :], n_grid * len(distinct), axis=0)
        for k, i in enumerate(distinct):
            xs[k * n_grid:(k + 1) * n_grid, i] = grid
        with float64():
            values = np.asarray(_natural_batch(jnp.asarray(xs), p["dyn"], p["spec"]))
        values = values.reshape(len(distinct), n_grid)
        for k, i in enumerate(distinct):
            ax.plot(grid, values[k], lw=1, color=f"C{k}", label=f"move point {i}")
            ax.plot([x[i]], [self.criterion_value], "o", color=f"C{k}", ms=4)
        ax.set_xlabel("position of one measurement point")
        ax.set_ylabel(f"criterion ({self._crit.short})")
        ax.set_title("criterion along the design space")
        finite = values[np.isfinite(values)]
        if finite.size:
            lo = np.percentile(finite, 5)
            span = self.criterion_value - lo
            if np.isfinite(span) and span > 0 and self.maximize:
                ax.set_ylim(lo - 0.1 * span, self.criterion_value + 0.1 * span)
        ax.legend(fontsize=7)


def _safe_sigma(F):
    try:
        return F.sigma()
    except FisherError:
        return {n: math.inf for n in F.names}


def _fmt_design(design):
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
# optimize_design
# =======================================================================================
def _common_setup(experiment, fiducial, params, criterion, maximize, prior, relative, mode):
    experiments = _as_experiments(experiment)
    joint = not isinstance(experiment, Experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    _check_mode(mode)
    crit = _check_criterion(criterion, maximize, names)
    return experiments, joint, fid, names, crit


def _check_int(value, what, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{what}` must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def optimize_design(experiment, fiducial, *, bounds, criterion="D", prior=None, n_starts=32,
                    seed=0, fixed=None, constraints=None, params=None, maximize=None,
                    relative=False, n_polish=3, max_steps=500, rtol=1e-10, mode="forward",
                    gradient="forward", batch_size=None) -> DesignResult:
    """Optimise the design of one or several experiments for a Fisher-matrix criterion.

    The objective is a criterion of ``F(design) + F_prior`` where ``F(design)`` is
    ``ff.fisher_information`` of the experiment(s) with the candidate design: a pure JAX
    function with exact gradients in the design. A batch of starts (the initial design and
    ``n_starts - 1`` random feasible designs) runs ``optimistix.BFGS`` under one
    ``jax.vmap``; the best ``n_polish`` distinct end points are polished in the bounded
    variables with ``scipy.optimize`` (L-BFGS-B, or SLSQP when `constraints` are given) and
    the best is returned. ``n_starts=1`` is a purely local optimisation from the initial
    design.

    **Arguments:**

    - `experiment`: an :class:`ff.Experiment` whose ``design`` pytree holds the design
      variables and their initial values (e.g. an array of measurement times), or a list
      of experiments optimised jointly: their Fisher matrices add, and the design is the
      list of their designs.
    - `fiducial`: dict parameter name -> value at which the Fisher matrix is evaluated
      (a *locally* optimal design).
    - `bounds`: ``(low, high)`` for every design entry, or a pytree of ``(low, high)``
      pairs with the structure of the design (a list of them for a list of experiments);
      ``low``/``high`` may be arrays broadcasting to a design leaf.
    - `criterion`: ``"D"`` (maximise ``log det F``), ``"A"`` (maximise ``-tr F⁻¹``),
      ``"E"`` (maximise the smallest eigenvalue), ``"ME"`` (minimise the condition number
      ``λ_max/λ_min``), or a callable ``criterion(F) -> scalar`` receiving a
      :class:`DesignFisher` (a traced matrix with names and differentiable methods
      ``sigma``, ``covariance``, ``marginalize``, ``figure_of_merit``, ``logdet``). A callable
      is maximised unless it has ``maximize = False`` or `maximize` is ``False``. Ready-made:
      :func:`sigma_criterion` (σ of one parameter), :func:`fom_criterion` (DETF FoM).
    - `prior`: an :class:`ff.FisherMatrix` from earlier data, added (by parameter name)
      before the criterion is evaluated; its parameters must be among the varied ones.
    - `n_starts`: number of starts in the batched multistart (the first is the initial
      design); `seed`: seed of the random starts.
    - `fixed`: booleans (a single one, or a pytree prefix of the design) marking entries
      held at their initial values.
    - `constraints`: ``None``, ``"ordered"`` or ``{"min_spacing": δ}``: every 1-D design
      array (with one scalar bound pair and no fixed entries) is kept sorted with
      neighbours at least ``δ`` apart, so replicate measurements are excluded.
    - `params`: names of the varied parameters (default: all of `fiducial`).
    - `maximize`: direction of a callable criterion (default: its ``maximize`` attribute,
      else ``True``).
    - `relative`: evaluate the criterion on the Fisher matrix of ``θ/|θ₀|`` (that is of
      ``ln θ``), which makes "A", "E" and "ME" independent of the parameters' units; "D"
      only shifts by a constant.
    - `n_polish`: number of distinct end points polished with scipy.
    - `max_steps`, `rtol`: BFGS step limit and tolerance of the batched phase.
    - `mode`: Jacobian mode of the Fisher matrix (``"forward"``/``"reverse"``).
    - `gradient`: how the design gradient is computed, ``"forward"`` (default; works for
      models that only support forward-mode autodiff, e.g. ODE models with a forward-mode
      adjoint; cost grows with the number of free design entries) or ``"reverse"``.
    - `batch_size`: ``None`` (default) runs all starts under one ``jax.vmap``; an integer
      ``b`` runs them in vmapped chunks of ``b``, one chunk after another, inside the same
      compiled call. Vmapped starts move in lockstep (each runs as long as the slowest),
      which a GPU absorbs; on a CPU with an expensive model (an ODE) ``batch_size=1`` is
      usually faster (see ``benchmarks/bench_design.py``).

    **Returns:** a :class:`DesignResult`.

    **Raises:** `ValueError`/`TypeError` for bad bounds, masks, constraints or criteria
    (naming the argument), `ParameterError` for unknown parameter names,
    `SingularFisherError` when even the optimal design leaves a parameter unconstrained.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1),
    ...                     design=jnp.array([1.0, 5.0]))
    >>> res = ff.optimize_design(exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=8)
    >>> sorted(round(float(t), 4) for t in res.design)      # {0, 1/k}
    [0.0, 2.0]

    ```
    """
    experiments, joint, fid, names, crit = _common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode)
    if bounds is None:
        raise ValueError("`bounds` is required: give (low, high) for every design entry, or "
                         "a pytree of (low, high) pairs with the design's structure.")
    if gradient not in ("forward", "reverse"):
        raise ValueError(f"`gradient` must be 'forward' or 'reverse'; received {gradient!r}.")
    n_starts = _check_int(n_starts, "n_starts", 1)
    n_polish = _check_int(n_polish, "n_polish", 0)
    max_steps = _check_int(max_steps, "max_steps", 1)
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1)
    rng = np.random.default_rng(seed)

    with float64():
        spec, dyn, x_init = _build_problem(experiments, joint, fid, names, crit, prior,
                                           relative, mode, gradient, bounds, fixed,
                                           constraints)
        x_start = np.clip(x_init, dyn["low"], dyn["high"])
        starts = np.concatenate([x_start[None, :], _random_x(rng, n_starts - 1, dyn, spec)])
        u0s = np.stack([_u_from_x(x, dyn, spec) for x in starts])
        xs, losses, all_values, converged = _multistart(jnp.asarray(u0s), dyn, spec,
                                                        max_steps, float(rtol), batch_size)
        xs = np.asarray(xs, dtype=np.float64)
        losses = np.asarray(losses, dtype=np.float64)
        all_values = np.asarray(all_values, dtype=np.float64)
        converged = np.asarray(converged, dtype=bool)
        losses = np.where(np.isfinite(losses), losses, np.inf)

        # Polish the best distinct end points in the bounded variables.
        order = np.argsort(losses)
        chosen = []
        span = np.where(np.isfinite(dyn["high"] - dyn["low"]), dyn["high"] - dyn["low"], 1.0)
        for i in order:
            if not np.isfinite(losses[i]) or len(chosen) >= max(n_polish, 1):
                break
            if all(np.max(np.abs(xs[i] - xs[j]) / span) > 1e-6 for j in chosen):
                chosen.append(i)
        if not chosen:
            raise FisherError(
                "every start of the design optimisation failed (non-finite criterion). "
                "Check that the model is finite and differentiable over the whole `bounds` "
                "(e.g. an ODE solve failing for some times) and that the design can "
                "constrain the parameters (ff.repair_identifiability)."
            )
        best_x, best_loss = xs[chosen[0]], losses[chosen[0]]
        n_polished = 0
        if n_polish > 0:
            for i in chosen:
                x_p, loss_p = _polish(xs[i], dyn, spec)
                n_polished += 1
                if np.isfinite(loss_p) and loss_p < best_loss:
                    best_x, best_loss = x_p, loss_p
        designs_opt = jax.tree_util.tree_map(
            lambda v: np.asarray(v, dtype=np.asarray(v).dtype),
            _designs_from_x(jnp.asarray(best_x), dyn, spec))

    designs_opt = [jax.tree_util.tree_map(np.asarray, d) for d in designs_opt]
    exps_opt = [e.replace(design=d) for e, d in zip(experiments, designs_opt, strict=True)]
    F_opt = fisher(exps_opt, fid, params=names, mode=mode)
    prior_m = dyn["prior"]
    S2 = np.outer(dyn["scale"], dyn["scale"])
    total = FisherMatrix(F_opt.matrix + prior_m, names, fiducial=F_opt.fiducial,
                         name=F_opt.name)
    _check_identified(total, crit)
    best_value = _natural_numpy(total.matrix * S2, crit)
    try:
        F_init = fisher(experiments, fid, params=names, mode=mode)
        total_init = FisherMatrix(F_init.matrix + prior_m, names, fiducial=F_init.fiducial,
                                  name=F_init.name)
        init_value = _natural_numpy(total_init.matrix * S2, crit)
    except FisherError:  # e.g. a model that is NaN at the initial design: nothing to compare
        F_init = total_init = None
        init_value = math.nan
    gain = best_value - init_value if crit.maximize else init_value - best_value
    efficiency = None
    if crit.kind == "D" and not math.isnan(init_value):
        efficiency = float(math.exp((init_value - best_value) / len(names)))
    elif crit.kind == "A" and not math.isnan(init_value):
        efficiency = abs(float(best_value / init_value)) if np.isfinite(init_value) else 0.0
    initial_designs = [e.design for e in experiments]
    return DesignResult(
        design=designs_opt if joint else designs_opt[0],
        criterion_value=best_value,
        criterion=crit.label,
        maximize=crit.maximize,
        experiment=exps_opt if joint else exps_opt[0],
        fisher=F_opt,
        total_fisher=total,
        initial_design=initial_designs if joint else initial_designs[0],
        initial_value=init_value,
        initial_fisher=F_init,
        initial_total_fisher=total_init,
        gain=float(gain),
        efficiency=efficiency,
        all_starts=all_values,
        converged=converged,
        n_polished=n_polished,
        joint=joint,
        _crit=crit,
        _plot={"spec": spec, "dyn": dyn, "x": best_x, "low": dyn["low"],
               "high": dyn["high"], "fid": fid},
    )


def _check_identified(total, crit):
    w = np.linalg.eigvalsh(_unit_diagonal(total.matrix))
    if w[0] <= RANK_RTOL * len(w) * w[-1]:
        try:
            total.inverse()
        except SingularFisherError as exc:
            raise SingularFisherError(
                f"the optimised design ({crit.label}) still leaves the Fisher matrix singular: "
                f"{exc}\nThe design cannot constrain every parameter; try "
                "ff.repair_identifiability(...) to find measurements that do.",
                directions=exc.directions, names=exc.names) from None


def _polish(x0, dyn, spec):
    """Local polish in the bounded variables with scipy, using the JAX gradient."""
    import scipy.optimize

    def fun(x):
        value, grad = _loss_and_grad(jnp.asarray(x), dyn, spec)
        value = float(value)
        grad = np.asarray(grad, dtype=np.float64)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(grad)
        return value, grad

    bounds = list(zip(dyn["low"], dyn["high"], strict=True))
    try:
        if spec.ordered:
            rows, rhs = [], []
            n = x0.size
            for start, stop, spacing in spec.ordered:
                for i in range(start, stop - 1):
                    row = np.zeros(n)
                    row[i], row[i + 1] = -1.0, 1.0
                    rows.append(row)
                    rhs.append(spacing)
            A, b = np.array(rows), np.array(rhs)
            cons = [{"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A}]
            res = scipy.optimize.minimize(fun, x0, jac=True, method="SLSQP", bounds=bounds,
                                          constraints=cons,
                                          options={"maxiter": 500, "ftol": 1e-14})
            x = np.clip(res.x, dyn["low"], dyn["high"])
            if np.any(A @ x - b < -1e-9 * (1 + np.abs(b))):
                return x0, np.inf
        else:
            res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                          options={"maxiter": 1000, "ftol": 1e-15,
                                                   "gtol": 1e-12})
            x = np.clip(res.x, dyn["low"], dyn["high"])
    except (ValueError, FloatingPointError):
        return x0, np.inf
    value, _ = fun(x)
    return x, value


# =======================================================================================
# design_criterion: value and gradient of a criterion at a given design
# =======================================================================================
def design_criterion(experiment, fiducial, *, criterion="D", prior=None, params=None,
                     maximize=None, relative=False, mode="forward", gradient=False,
                     gradient_mode="forward"):
    """A design criterion at the experiment's current design, and optionally its gradient.

    **Arguments:**

    - `experiment`, `fiducial`, `criterion`, `prior`, `params`, `maximize`, `relative`,
      `mode`: as in :func:`optimize_design` (a list of experiments for a joint design).
    - `gradient`: also return ``∂ criterion / ∂ design`` (exact, from JAX).
    - `gradient_mode`: ``"forward"`` (default) or ``"reverse"`` autodiff for that gradient.

    **Returns:** the criterion value as defined (``log det F`` for "D", ...), a float; with
    ``gradient=True`` a pair ``(value, grad)`` where ``grad`` has the design's structure
    (zeros for non-float leaves are omitted: those leaves hold ``None``).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> from fisherforecast._design import design_criterion
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([0.0, 2.0]))
    >>> value, grad = design_criterion(exp, {"A": 1.0, "k": 0.5}, gradient=True)
    >>> round(value, 6)           # log det F = -4k + 2 log 2 at t = {0, 1/k}, σ = A = 1
    -0.613706
    >>> [round(float(g), 6) + 0.0 for g in grad]   # ∂/∂t = (-2k ∓ 2/(t1 - t2))
    [-2.0, 0.0]

    ```
    """
    experiments, joint, fid, names, crit = _common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode)
    if gradient_mode not in ("forward", "reverse"):
        raise ValueError(f"`gradient_mode` must be 'forward' or 'reverse'; received "
                         f"{gradient_mode!r}.")
    with float64():
        spec, dyn, x0 = _build_problem(experiments, joint, fid, names, crit, prior, relative,
                                       mode, gradient_mode, None, None, None)
        if not gradient:
            return float(_natural_batch(jnp.asarray(x0[None, :]), dyn, spec)[0])
        value, grad_x = _natural_and_grad(jnp.asarray(x0), dyn, spec)
        value = float(value)
        grad_x = np.asarray(grad_x, dtype=np.float64)
    # Scatter the gradient back onto the design's structure.
    flat = np.zeros(spec.n_flat)
    flat[dyn["free"]] = grad_x
    leaves = []
    for shape, offset in spec.leaves:
        if offset < 0:
            leaves.append(None)
        else:
            size = int(np.prod(shape, dtype=int))
            leaves.append(flat[offset:offset + size].reshape(shape))
    grads = jax.tree_util.tree_unflatten(spec.treedef, leaves)
    return value, (grads if joint else grads[0])


# =======================================================================================
# select_measurements
# =======================================================================================
def _take(candidates, idx):
    return jax.tree_util.tree_map(lambda c: c[np.asarray(idx)], candidates)


@partial(jax.jit, static_argnames=("names", "mode"))
def _candidate_fishers(experiment, fid, names, mode, candidates):
    def one(point):
        design = jax.tree_util.tree_map(lambda c: c[None], point)
        return fisher_information(experiment.replace(design=design), fid, names, mode)

    return jax.vmap(one)(candidates)


@partial(jax.jit, static_argnames=("crit",))
def _losses_of_matrices(Fs, crit, ridge):
    return jax.vmap(lambda F: _loss_from_matrix(F, crit, ridge))(Fs)


@partial(jax.jit, static_argnames=("crit",))
def _relaxed_loss_and_grad(w, Fc, base, crit, ridge):
    def loss(w):
        return _loss_from_matrix(base + jnp.einsum("n,nij->ij", w, Fc, precision=HIGHEST),
                                 crit, ridge)

    return jax.value_and_grad(loss)(w)


def _check_candidates(candidates):
    leaves = jax.tree_util.tree_leaves(candidates)
    if not leaves:
        raise ValueError(f"`candidates` is empty; received {quote(candidates)}.")
    arrays = [np.asarray(v) for v in leaves]
    for a in arrays:
        if a.ndim == 0:
            raise ValueError(
                "`candidates` must be an array (or pytree of arrays) whose first axis runs "
                f"over the candidate points; received a scalar {quote(candidates)}.")
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"`candidates` must be numeric; received dtype {a.dtype}.")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError("`candidates` contains NaN or inf.")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("every leaf of `candidates` must have the same length along axis 0 "
                         f"(one entry per candidate); received lengths "
                         f"{[a.shape[0] for a in arrays]}.")
    cands = jax.tree_util.tree_map(
        lambda a: np.asarray(a, dtype=np.float64) if np.issubdtype(np.asarray(a).dtype,
                                                                   np.floating)
        else np.asarray(a), candidates)
    return cands, n


def _per_candidate_fisher(experiment, fid, names, mode, candidates, n):
    """Fisher matrix of one measurement at each candidate, with an additivity check."""
    try:
        with float64():
            fid64 = {k: np.float64(v) for k, v in fid.items()}
            Fc = np.asarray(_candidate_fishers(experiment, fid64, names, mode, candidates),
                            dtype=np.float64)
            F_all = np.asarray(fisher_information(experiment.replace(design=candidates),
                                                  fid64, names, mode), dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "could not evaluate the Fisher matrix of single candidate points: the candidates "
            "are used as designs (candidates[i:i+1] for one point, candidates[S] for a "
            "subset S), so the model and the noise must accept designs of any length (a "
            "scalar sigma, or a callable sigma(params, design)). Original error: "
            f"{exc}") from None
    bad = ~np.all(np.isfinite(Fc.reshape(n, -1)), axis=1)
    if not np.any(bad) and np.all(np.isfinite(F_all)):
        total = Fc.sum(axis=0)
        scale = np.sqrt(np.outer(np.diag(F_all), np.diag(F_all))) + 1e-300
        if np.max(np.abs(F_all - total) / scale) > 1e-6:
            raise ValueError(
                "the Fisher information of the candidate points does not add up: the "
                "Fisher matrix of all candidates together differs from the sum over single "
                "candidates (correlated noise between design points, or a model whose "
                "output at one point depends on the others). select_measurements and "
                "repair_identifiability need independent measurements.")
    return Fc, bad


class Selection:
    """The result of :func:`select_measurements`.

    Attributes:
        indices: the selected candidate indices (sorted; repeated for replicates).
        design: the design made of the selected candidates (``candidates[indices]``).
        experiment: the experiment with that design; fisher: its Fisher matrix (no prior).
        criterion_value: the criterion (as defined, prior included) of the selection.
        criterion: description; method: ``"exchange"`` or ``"relaxation"``.
        bound: for "D", "A" and "E" with ``method="relaxation"``: the optimum of the convex
            relaxation, an upper bound on the criterion of *any* k-subset; else ``None``.
        iterations: exchange iterations used; history: the criterion after greedy and
            after each exchange.
    """

    def __init__(self, **fields):
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("Selection is immutable.")

    def summary(self) -> str:
        lines = [f"Selected {len(self.indices)} of {self.n_candidates} candidates by "
                 f"{self.method}: {self.criterion}",
                 f"  indices: {list(map(int, self.indices))}",
                 f"  design:  {_fmt_design(self.design)}",
                 f"  criterion: {self.criterion_value:.6g}"]
        if self.bound is not None:
            lines.append(f"  relaxation bound: {self.bound:.6g} (gap "
                         f"{self.bound - self.criterion_value:.3g})")
        lines.append(self.fisher.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"indices": [int(i) for i in self.indices],
                "design": jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(),
                                                 self.design),
                "criterion": self.criterion, "criterion_value": self.criterion_value,
                "bound": self.bound, "method": self.method, "iterations": self.iterations,
                "history": list(self.history), "fisher": self.fisher.to_dict()}

    def __repr__(self):
        return (f"Selection(indices={[int(i) for i in self.indices]}, criterion_value="
                f"{self.criterion_value:.6g})")


def select_measurements(experiment, fiducial, candidates, k, criterion="D", *, prior=None,
                        params=None, maximize=None, relative=False, method="exchange",
                        allow_repeats=False, max_iter=200, mode="forward") -> Selection:
    """Pick `k` of `N` candidate measurement points that optimise a design criterion.

    A *candidate* is one design point: ``candidates`` is an array (or a pytree of arrays)
    whose first axis runs over the ``N`` candidates, e.g. an array of possible times. A
    subset ``S`` maps to the design ``candidates[S]`` (each leaf indexed along axis 0), so
    the experiment's model and noise must accept designs of any length. Measurements at
    different candidates must be independent (their Fisher matrices add); this is checked.

    Methods:

    - ``"exchange"`` (default): greedy forward selection followed by Fedorov exchange (the
      best single swap of a selected and an unselected candidate, until none improves).
    - ``"relaxation"``: solve the convex relaxation over weights ``0 ≤ w_i ≤ 1`` (``≤ k``
      with `allow_repeats`), ``Σ w_i = k``, round to the ``k`` largest weights and polish by
      exchange. For "D", "A" and "E" the relaxed optimum is an upper bound on every
      k-subset (reported as ``bound``), which certifies how close the selection is.

    **Arguments:**

    - `experiment`: the :class:`ff.Experiment` (its current design is not used).
    - `fiducial`, `criterion`, `prior`, `params`, `maximize`, `relative`, `mode`: as in
      :func:`optimize_design`.
    - `candidates`: array/pytree of candidate design points (first axis: candidates).
    - `k`: how many to select.
    - `allow_repeats`: allow a candidate to be selected several times (replicates).
    - `max_iter`: maximum number of exchange iterations.

    **Returns:** a :class:`Selection`.

    **Raises:** `ValueError` for ``k`` out of range, non-additive candidates, bad input.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1))
    >>> sel = ff.select_measurements(exp, {"A": 2.0, "k": 0.5}, np.arange(0, 10.25, 0.25), 2)
    >>> sel.design.tolist()
    [0.0, 2.0]

    ```
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"`experiment` must be an ff.Experiment; received {quote(experiment)}.")
    _, _, fid, names, crit = _common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode)
    if method not in ("exchange", "relaxation"):
        raise ValueError(f"`method` must be 'exchange' or 'relaxation'; received {method!r}.")
    candidates, n = _check_candidates(candidates)
    k = _check_int(k, "k", 1)
    if not allow_repeats and k > n:
        raise ValueError(f"`k`={k} exceeds the number of candidates ({n}); pass "
                         "allow_repeats=True to allow replicate measurements.")
    max_iter = _check_int(max_iter, "max_iter", 0)
    Fc, bad = _per_candidate_fisher(experiment, fid, names, mode, candidates, n)
    s = _scale_vector(fid, names, relative)
    S2 = np.outer(s, s)
    Fc = np.where(bad[:, None, None], 0.0, Fc) * S2
    base = _align_prior(prior, names) * S2
    usable = np.nonzero(~bad)[0]
    if (not allow_repeats and usable.size < k) or usable.size == 0:
        raise ValueError(f"only {usable.size} of {n} candidates give a finite Fisher matrix; "
                         f"cannot select {k}.")
    # A small ridge keeps the criterion finite while fewer than P points are selected.
    ridge = 1e-9

    def losses(mats):
        with float64():
            return np.asarray(_losses_of_matrices(jnp.asarray(mats), crit, ridge),
                              dtype=np.float64)

    bound = None
    history = []
    if method == "relaxation":
        w = _relaxed_weights(Fc[usable], base, k, allow_repeats, crit, ridge)
        if crit.kind in ("D", "A", "E"):
            with float64():
                relaxed = base + np.einsum("n,nij->ij", w, Fc[usable])
                bound = float(_natural_from_matrix(jnp.asarray(relaxed), crit))
        if allow_repeats:
            counts = np.floor(w).astype(int)
            rest = k - counts.sum()
            frac = w - counts
            counts[np.argsort(-frac)[:rest]] += 1
            selected = [int(usable[i]) for i in range(usable.size) for _ in range(counts[i])]
        else:
            selected = [int(usable[i]) for i in np.argsort(-w)[:k]]
        current = base + Fc[selected].sum(axis=0)
        history.append(current)
    else:
        selected = []
        current = base.copy()
        for _ in range(k):
            pool = usable if allow_repeats else np.setdiff1d(usable, selected)
            trial = losses(current[None] + Fc[pool])
            j = int(pool[int(np.argmin(np.where(np.isfinite(trial), trial, np.inf)))])
            selected.append(j)
            current = current + Fc[j]
        history.append(current)

    iterations = 0
    current_loss = float(losses(current[None])[0])
    while iterations < max_iter:
        pool = usable if allow_repeats else np.setdiff1d(usable, selected)
        if pool.size == 0:
            break
        removed = current[None] - Fc[np.asarray(selected)]  # (k, P, P)
        trial = losses((removed[:, None] + Fc[pool][None]).reshape(-1, *current.shape))
        trial = np.where(np.isfinite(trial), trial, np.inf).reshape(len(selected), pool.size)
        i, j = np.unravel_index(int(np.argmin(trial)), trial.shape)
        if not trial[i, j] < current_loss - 1e-12 * max(abs(current_loss), 1.0):
            break
        current = removed[i] + Fc[pool[j]]
        selected[i] = int(pool[j])
        current_loss = float(trial[i, j])
        history.append(current)
        iterations += 1

    idx = np.sort(np.asarray(selected))
    design = _take(candidates, idx)
    exp_sel = experiment.replace(design=design)
    F_sel = fisher(exp_sel, fid, params=names, mode=mode)
    total = (F_sel.matrix + _align_prior(prior, names)) * S2
    value = _natural_numpy(total, crit)
    hist = [_natural_numpy(M, crit) for M in history]
    return Selection(indices=idx, design=design, experiment=exp_sel, fisher=F_sel,
                     criterion_value=value, criterion=crit.label, method=method, bound=bound,
                     iterations=iterations, history=hist, n_candidates=n)


def _relaxed_weights(Fc, base, k, allow_repeats, crit, ridge):
    """Maximise the criterion of ``base + Σ w_i F_i`` over ``0 ≤ w ≤ cap``, ``Σ w = k``."""
    import scipy.optimize

    n = Fc.shape[0]
    cap = float(k) if allow_repeats else 1.0
    with float64():
        Fj = jnp.asarray(Fc)
        bj = jnp.asarray(base)

        def fun(w):
            value, grad = _relaxed_loss_and_grad(jnp.asarray(w), Fj, bj, crit, ridge)
            return float(value), np.asarray(grad, dtype=np.float64)

        w0 = np.full(n, k / n)
        res = scipy.optimize.minimize(
            fun, w0, jac=True, method="SLSQP", bounds=[(0.0, cap)] * n,
            constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - k,
                          "jac": lambda w: np.ones_like(w)}],
            options={"maxiter": 500, "ftol": 1e-12})
    return np.clip(res.x, 0.0, cap)


# =======================================================================================
# required_samples
# =======================================================================================
class RequiredSamples:
    """The result of :func:`required_samples`.

    Attributes:
        per_parameter: dict name -> smallest number of repeats ``n`` that brings the
            marginal σ to the target (``math.inf`` if no number of repeats can, e.g. a
            direction the experiment does not constrain at all; 0 if the prior alone does).
        overall: the largest of these (every target met).
        sigma_single: σ for one repeat (prior included).
        target: dict name -> target σ.
    """

    def __init__(self, per_parameter, overall, sigma_single, target, fisher_single, prior,
                 marginal):
        self.per_parameter = per_parameter
        self.overall = overall
        self.sigma_single = sigma_single
        self.target = target
        self._F1 = fisher_single
        self._prior = prior
        self._marginal = marginal

    def sigma_at(self, n: float) -> dict:
        """σ per parameter after ``n`` repeats (``n`` may be fractional: observing time)."""
        return _sigma_repeats(self._F1, self._prior, n, self._marginal)

    def summary(self) -> str:
        names = list(self.target)
        width = max([len(x) for x in names] + [9])
        kind = "marginal" if self._marginal else "conditional"
        lines = [f"Required repeats of the experiment ({kind} sigma; information scales "
                 "linearly with repeats)",
                 f"  {'parameter':<{width}}  {'sigma(1)':>11}  {'target':>11}  {'repeats':>9}"]
        for name in names:
            n = self.per_parameter[name]
            lines.append(f"  {name:<{width}}  {self.sigma_single[name]:>11.4g}  "
                         f"{self.target[name]:>11.4g}  {n if math.isfinite(n) else 'never':>9}")
        lines.append(f"  all targets met with {self.overall} repeats" if math.isfinite(
            self.overall) else "  some targets can never be met by repeating this experiment")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"per_parameter": dict(self.per_parameter), "overall": self.overall,
                "sigma_single": dict(self.sigma_single), "target": dict(self.target)}

    def __repr__(self):
        return f"RequiredSamples(overall={self.overall}, per_parameter={self.per_parameter})"


def _sigma_repeats(F1, prior, n, marginal):
    M = n * F1.matrix + prior
    names = F1.names
    if marginal:
        w = np.linalg.eigvalsh(_unit_diagonal(M)) if np.all(np.diag(M) > 0) else [0.0]
        if np.min(w) <= RANK_RTOL * len(names) * max(np.max(w), 1e-300):
            return {x: math.inf for x in names}
        cov = np.linalg.inv(M)
        return {x: float(math.sqrt(cov[i, i])) for i, x in enumerate(names)}
    return {x: (1.0 / math.sqrt(M[i, i]) if M[i, i] > 0 else math.inf)
            for i, x in enumerate(names)}


def _unit_diagonal(M):
    d = np.sqrt(np.where(np.diag(M) > 0, np.diag(M), 1.0))
    return M / np.outer(d, d)


def required_samples(experiment, fiducial, target_sigma, *, params=None, prior=None,
                     relative=False, marginal=True, mode="forward") -> RequiredSamples:
    """How many repeats of an experiment (or how much observing time) reach a target σ.

    Independent repeats add Fisher information: ``F(n) = n F₁ (+ F_prior)``. Without a
    prior, ``σ(n) = σ₁/√n`` and the answer is ``n = ceil((σ₁/target)²)`` per parameter.
    With a prior, ``σ(n)`` is computed from ``(n F₁ + F_prior)⁻¹`` and the smallest integer
    ``n`` is found by bisection (``σ(n)`` decreases with ``n``). When the experiment stands
    for a unit of observing time, ``n`` is the observing time in those units.

    **Arguments:**

    - `experiment`: an :class:`ff.Experiment` (or a list of independent ones repeated
      together).
    - `fiducial`: dict parameter name -> value.
    - `target_sigma`: a number (the same target for every varied parameter) or a dict
      name -> target for some of them.
    - `params`: varied parameters (default: all of `fiducial`).
    - `prior`: an :class:`ff.FisherMatrix` of earlier data (not repeated).
    - `relative`: targets are fractions of ``|fiducial|`` (0.1 = 10 %).
    - `marginal`: use marginal σ (default) or conditional σ (other parameters fixed).

    **Returns:** a :class:`RequiredSamples`; ``.per_parameter``, ``.overall``.

    **Raises:** `ValueError` for non-positive targets or unknown names,
    `SingularFisherError` (without a prior) when the experiment leaves a parameter
    unconstrained however often it is repeated.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([1.0]))         # sigma_a = 1 per repeat
    >>> ff.required_samples(exp, {"a": 1.0}, 0.1).overall    # (1 / 0.1)^2
    100

    ```
    """
    experiments = _as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    F1 = fisher(experiments, fid, params=names, mode=mode)
    prior_m = _align_prior(prior, names)
    if isinstance(target_sigma, Mapping):
        unknown = [x for x in target_sigma if x not in names]
        if unknown:
            raise ParameterError(f"`target_sigma` names {unknown}, which are not varied "
                                 f"parameters {list(names)}.")
        target = {x: target_sigma[x] for x in target_sigma}
    else:
        target = {x: target_sigma for x in names}
    checked = {}
    for x, t in target.items():
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise TypeError(f"`target_sigma` must be a number or a dict of numbers; received "
                            f"{quote(target_sigma)}.") from None
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"`target_sigma` must be positive and finite; received {t!r} for "
                             f"{x!r}.")
        if relative:
            if fid[x] == 0:
                raise ValueError(f"relative=True but the fiducial of {x!r} is 0.")
            t = t * abs(fid[x])
        checked[x] = t
    target = checked
    if prior is None and marginal:
        F1.inverse()  # raises SingularFisherError with the unconstrained direction
    sigma1 = _sigma_repeats(F1, prior_m, 1.0, marginal)
    per = {}
    for x, t in target.items():
        if prior is None:
            s1 = sigma1[x]
            n = math.ceil((s1 / t) ** 2 * (1 - 1e-12)) if math.isfinite(s1) else math.inf
            per[x] = max(int(n), 1) if math.isfinite(n) else math.inf
        else:
            per[x] = _bisect_repeats(F1, prior_m, x, t, marginal)
    finite = [v for v in per.values() if math.isfinite(v)]
    overall = max(finite) if len(finite) == len(per) else math.inf
    return RequiredSamples(per, overall, sigma1, target, F1, prior_m, marginal)


def _bisect_repeats(F1, prior_m, name, target, marginal):
    def sigma(n):
        return _sigma_repeats(F1, prior_m, float(n), marginal)[name]

    if sigma(0) <= target:
        return 0
    hi = 1
    while sigma(hi) > target:
        hi *= 2
        if hi > 2**52:
            return math.inf
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sigma(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


# =======================================================================================
# repair_identifiability
# =======================================================================================
class RepairResult:
    """The result of :func:`repair_identifiability`.

    Attributes:
        added: indices of the candidates to add (the smallest set found).
        success: whether adding them makes every parameter identifiable (full rank and
            collinearity index below the threshold).
        exhaustive: whether the smallest size was established by checking every subset
            (otherwise the last size was completed greedily).
        rank_before, rank_after, collinearity_before, collinearity_after: diagnostics of
            the Fisher matrix before and after.
        null_directions: the weak directions of the original Fisher matrix (in
            ``ln θ`` where fiducials are non-zero): a list of dicts name -> coefficient.
        ranking: list of dicts, one per candidate, sorted by ``lift`` (information the
            candidate adds along the weak directions, ``Σ_v vᵀ F_c v`` in the scaled
            parameters), with the rank and collinearity index the candidate gives alone.
        fisher_after: the Fisher matrix with the added measurements.
    """

    def __init__(self, **fields):
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("RepairResult is immutable.")

    def summary(self) -> str:
        lines = [
            f"Identifiability repair ({self.n_params} parameters, collinearity threshold "
            f"{self.threshold:g})",
            f"  before: rank {self.rank_before}, collinearity index "
            f"{self.collinearity_before:.4g}",
        ]
        for text in self.null_texts:
            lines.append(f"    weak direction: {text}")
        if not self.added and self.success:
            lines.append("  already identifiable: nothing to add")
        else:
            labels = [self.labels[i] for i in self.added]
            lines.append(f"  add {len(self.added)} measurement(s): {labels} "
                         f"({'smallest set, exhaustive search' if self.exhaustive else 'greedy'})")
            lines.append(f"  after: rank {self.rank_after}, collinearity index "
                         f"{self.collinearity_after:.4g} -> "
                         f"{'identifiable' if self.success else 'NOT identifiable'}")
        lines.append("  candidates ranked by information along the weak directions:")
        for row in self.ranking[:10]:
            lines.append(f"    {row['label']:<24} lift {row['lift']:>10.4g}  alone: rank "
                         f"{row['rank']}, collinearity {row['collinearity']:.4g}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"added": list(self.added), "success": self.success,
                "exhaustive": self.exhaustive, "rank_before": self.rank_before,
                "rank_after": self.rank_after,
                "collinearity_before": self.collinearity_before,
                "collinearity_after": self.collinearity_after,
                "null_directions": self.null_directions, "ranking": self.ranking,
                "threshold": self.threshold}

    def __repr__(self):
        return (f"RepairResult(added={list(self.added)}, success={self.success}, "
                f"collinearity_after={self.collinearity_after:.4g})")


def _rank_and_collinearity(M):
    """Rank and Brun et al. (2001) collinearity index ``1/sqrt(λ_min)`` of unit-diag M."""
    P = M.shape[-1]
    diag = np.diagonal(M, axis1=-2, axis2=-1)
    zero = diag <= 0
    d = np.sqrt(np.where(zero, 1.0, diag))
    S = M / (d[..., :, None] * d[..., None, :])
    S = np.where(zero[..., :, None] | zero[..., None, :], 0.0, S)
    w = np.linalg.eigvalsh(S)
    tol = RANK_RTOL * P * np.maximum(w[..., -1], 1e-300)
    rank = np.sum(w > tol[..., None], axis=-1)
    with np.errstate(divide="ignore"):
        gamma = np.where(w[..., 0] > tol, 1.0 / np.sqrt(np.maximum(w[..., 0], 1e-300)), np.inf)
    return rank, gamma


def repair_identifiability(experiment, fiducial, candidates, *, params=None, prior=None,
                           threshold=20.0, max_add=3, max_subsets=20000, labels=None,
                           weak_rtol=None, mode="forward") -> RepairResult:
    """The smallest set of added measurements that makes every parameter identifiable.

    "Identifiable" means: the Fisher matrix (existing experiment(s) + prior + additions) has
    full rank and its collinearity index (Brun, Reichert & Künsch 2001: ``1/sqrt(λ_min)`` of
    the unit-diagonal matrix, i.e. of the normalised sensitivities) is below `threshold`.

    Candidates are ranked by how much they lift the weak directions of the existing
    Fisher matrix: ``lift_c = Σ_v vᵀ F̃_c v`` over the null/weak eigenvectors ``v`` of the
    scaled matrix ``F̃ = diag(|θ|) F diag(|θ|)`` (``ln θ`` coordinates where the fiducial is
    non-zero). A candidate with zero lift can never repair the degeneracy. The smallest
    repairing set is then found by checking every subset of size 1, 2, ... `max_add`; among
    the repairing sets of the smallest size the one with the largest smallest eigenvalue of
    ``F̃`` (the best-determined weakest direction) is returned. A size with more than
    `max_subsets` subsets is completed greedily from the best smaller set instead.

    **Arguments:**

    - `experiment`: the existing :class:`ff.Experiment` (or a list of them).
    - `fiducial`: dict parameter name -> value.
    - `candidates`: either a list of :class:`ff.Experiment` (possible new measurements,
      e.g. of another observable; each evaluated with the same fiducial), or an array (or
      pytree of arrays) of candidate design points for `experiment` (first axis:
      candidates; candidate ``i`` adds a measurement with design ``candidates[i:i+1]``).
    - `params`, `prior`, `mode`: as in :func:`optimize_design`.
    - `threshold`: collinearity index below which the parameters count as identifiable
      (20 is the usual choice).
    - `max_add`: the largest number of added measurements tried.
    - `max_subsets`: above this many subsets of one size the search turns greedy.
    - `labels`: optional names of the candidates for the report.
    - `weak_rtol`: a direction is weak when its eigenvalue is below ``1/threshold²`` of the
      unit-diagonal matrix (default) or, if given, below ``weak_rtol × λ_max``.

    **Returns:** a :class:`RepairResult` (``.added``, ``.success``, ``.ranking``).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1),
    ...                     design=jnp.zeros(3))                  # all at t = 0: k unknown
    >>> rep = ff.repair_identifiability(exp, {"A": 1.0, "k": 0.5}, np.array([0.0, 2.0, 8.0]))
    >>> rep.success, [r["label"] for r in rep.ranking][0]
    (True, 'candidate 1')

    ```
    """
    experiments = _as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    _check_mode(mode)
    threshold = float(threshold)
    if not threshold > 1:
        raise ValueError(f"`threshold` must be > 1 (a collinearity index); received "
                         f"{threshold!r}.")
    max_add = _check_int(max_add, "max_add", 1)
    P = len(names)
    F0 = sum((np.asarray(fisher(e, fid, params=names, mode=mode).matrix) for e in experiments),
             np.zeros((P, P))) + _align_prior(prior, names)

    Fc, failed, default_labels = _repair_candidates(experiments, fid, names, mode, candidates)
    n = Fc.shape[0]
    if labels is None:
        labels = default_labels
    else:
        labels = [str(x) for x in labels]
        if len(labels) != n:
            raise ValueError(f"`labels` has {len(labels)} entries for {n} candidates.")

    # Scaled (ln θ) coordinates make the weak directions independent of units.
    s = np.array([abs(fid[x]) if fid[x] != 0 else 1.0 for x in names])
    S2 = np.outer(s, s)
    F0s, Fcs = F0 * S2, Fc * S2
    rank0, gamma0 = _rank_and_collinearity(F0s)
    d0 = np.sqrt(np.where(np.diag(F0s) > 0, np.diag(F0s), 1.0))
    U = F0s / np.outer(d0, d0)
    U = np.where((np.diag(F0s) <= 0)[:, None] | (np.diag(F0s) <= 0)[None, :], 0.0, U)
    w, V = np.linalg.eigh(U)
    cut = weak_rtol * w[-1] if weak_rtol is not None else 1.0 / threshold**2
    weak = np.nonzero(w <= max(cut, RANK_RTOL * P * w[-1]))[0]
    # Eigenvectors of the unit-diagonal matrix -> directions in the scaled parameters.
    dirs = []
    for j in weak:
        v = V[:, j] / d0
        dirs.append(v / np.linalg.norm(v))
    dirs = np.array(dirs).reshape(len(weak), P)
    null_dirs, null_texts = [], []
    for v in dirs:
        coeffs, text = describe_direction(v * s, names, fid)  # raw δθ = |θ| δφ
        null_dirs.append(coeffs)
        null_texts.append(text)
    lift = np.einsum("vi,nij,vj->n", dirs, Fcs, dirs) if len(dirs) else np.zeros(n)
    lift = np.where(failed, np.nan, lift)

    alone_rank, alone_gamma = _rank_and_collinearity(F0s[None] + Fcs)
    ranking = []
    for i in np.argsort(-np.nan_to_num(lift, nan=-np.inf), kind="stable"):
        ranking.append({"index": int(i), "label": labels[i], "lift": float(lift[i]),
                        "rank": int(alone_rank[i]), "collinearity": float(alone_gamma[i]),
                        "failed": bool(failed[i])})

    def ok(rank, gamma):
        return (rank == P) & (gamma < threshold)

    usable = [i for i in range(n) if not failed[i]]
    if ok(rank0, gamma0):
        added, success, exhaustive = [], True, True
    else:
        added, success, exhaustive = None, False, True
        best_prev = []
        for size in range(1, max_add + 1):
            count = math.comb(len(usable), size)
            if count == 0:
                break
            if count <= max_subsets:
                subsets = np.array(list(itertools.combinations(usable, size)))
                mats = F0s[None] + Fcs[subsets].sum(axis=1)
            else:
                exhaustive = False
                pool = [i for i in usable if i not in best_prev]
                subsets = np.array([[*best_prev, j] for j in pool])
                mats = F0s[None] + Fcs[subsets].sum(axis=1)
            rank, gamma = _rank_and_collinearity(mats)
            good = ok(rank, gamma)
            score = np.where(np.isfinite(gamma), gamma, np.inf)
            if np.any(good):
                # Among the repairing sets of this size, the one with the most information
                # in its weakest direction: the largest smallest eigenvalue of the Fisher
                # matrix of ln θ (E-optimality in relative parameters).
                floor = np.linalg.eigvalsh(mats)[:, 0]
                j = int(np.argmax(np.where(good, floor, -np.inf)))
                added, success = [int(i) for i in subsets[j]], True
                break
            # Keep the best (highest rank, then lowest collinearity) as the greedy seed.
            j = int(np.lexsort((score, -rank))[0])
            best_prev = [int(i) for i in subsets[j]]
        if added is None:
            added = best_prev
    F_after = F0 + (Fc[added].sum(axis=0) if added else 0.0)
    rank1, gamma1 = _rank_and_collinearity(F_after * S2)
    return RepairResult(
        added=added, success=bool(success), exhaustive=bool(exhaustive),
        rank_before=int(rank0), rank_after=int(rank1),
        collinearity_before=float(gamma0), collinearity_after=float(gamma1),
        null_directions=null_dirs, null_texts=null_texts, ranking=ranking,
        fisher_after=FisherMatrix(0.5 * (F_after + F_after.T), names,
                                  fiducial={x: fid[x] for x in names}),
        threshold=threshold, n_params=P, labels=labels)


def _repair_candidates(experiments, fid, names, mode, candidates):
    P = len(names)
    if isinstance(candidates, list | tuple) and candidates and all(
            isinstance(c, Experiment) for c in candidates):
        mats, failed, labels = [], [], []
        for i, cand in enumerate(candidates):
            labels.append(cand.name or f"experiment {i}")
            try:
                mats.append(np.asarray(fisher(cand, fid, params=names, mode=mode).matrix))
                failed.append(False)
            except (FisherError, ValueError, TypeError, KeyError):
                # One bad candidate must not abort the search: it is reported as failed.
                mats.append(np.zeros((P, P)))
                failed.append(True)
        return np.array(mats), np.array(failed), labels
    if len(experiments) != 1:
        raise ValueError("candidate design points need a single `experiment` to apply to; "
                         "for several experiments give the candidates as a list of "
                         "ff.Experiment.")
    cands, n = _check_candidates(candidates)
    Fc, bad = _per_candidate_fisher(experiments[0], fid, names, mode, cands, n)
    Fc = np.where(bad[:, None, None], 0.0, Fc)
    return Fc, bad, [f"candidate {i}" for i in range(n)]
