"""Optimal experimental design through the differentiable Fisher matrix: the traced core.

Four questions users ask before they take data, one function each:

* *when / where* should I measure?  :func:`~fisherforecast._design_optimize.optimize_design`
  moves the continuous design variables (measurement times, doses, frequencies) of one or
  several experiments to the optimum of a design criterion of the Fisher matrix;
* *which* of these candidate points?
  :func:`~fisherforecast._design_select.select_measurements` picks ``k`` of ``N`` discrete
  candidates (greedy + Fedorov exchange, or a convex relaxation);
* *how many* repeats?  :func:`~fisherforecast._design_select.required_samples` inverts
  ``σ ∝ 1/√n``;
* *what would fix* a non-identifiable model?
  :func:`~fisherforecast._design_select.repair_identifiability` finds the smallest set of
  added measurements that makes every parameter identifiable.

This module holds what they share, all of it free of any import of the other two design
modules (``_design_optimize`` and ``_design_select`` import from here, never the reverse):

* the criteria: :class:`DesignFisher` (the named, traced matrix a user criterion sees),
  :func:`sigma_criterion`, :func:`fom_criterion`, and the built-in "D", "A", "E", "ME"
  criteria as pure JAX functions of a ``(P, P)`` matrix (plus a robust numpy evaluation);
* the argument checks common to every design function;
* the design problem: the free design entries ``x`` <-> the design pytree, the sine /
  softmax maps from unconstrained variables ``u``, and the module-level jitted entry points
  (the batched BFGS multistart, value-and-gradient of the objective and of the criterion),
  compiled once per problem shape;
* :func:`design_criterion`: a criterion and its exact gradient at a given design.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_fiducial, check_mode, check_names
from ._engine import fisher_information
from ._errors import ParameterError, quote
from ._experiment import Experiment
from ._linalg import RANK_RTOL
from ._matrix import FisherMatrix
from ._x64 import float64

__all__ = [
    "DesignFisher",
    "design_criterion",
    "fom_criterion",
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
class _Record:
    """Base of the design results: fields given once at construction, read-only after."""

    def __init__(self, **fields):
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is immutable.")


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
    # Checked before the cache: an unhashable argument (a list) would otherwise fail inside
    # lru_cache with "unhashable type" instead of this message.
    if not isinstance(name, str):
        hint = (
            " (one parameter: sigma_criterion('a'); for several use fom_criterion)"
            if isinstance(name, list | tuple)
            else ""
        )
        raise TypeError(
            f"sigma_criterion(name): `name` must be a string{hint}; received {quote(name)}."
        )
    return _sigma_criterion(name)


@functools.lru_cache(maxsize=256)
def _sigma_criterion(name):
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
    if not isinstance(names, Sequence) or not names:
        raise TypeError(
            f"fom_criterion(names): `names` must be a non-empty list of "
            f"parameter names; received {quote(names)}."
        )
    for n in names:  # before the cache: an unhashable entry would fail inside lru_cache
        if not isinstance(n, str):
            raise TypeError(f"fom_criterion(names): names must be strings; received {quote(n)}.")
    return _fom_criterion(tuple(names))


@functools.lru_cache(maxsize=256)
def _fom_criterion(names):

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


def _singular_jax(F):
    """Traced twin of :func:`_singular_numpy`: the same rank test on the unit-diagonal F."""
    diag = jnp.diag(F)
    d = jnp.sqrt(jnp.where(diag > 0, diag, 1.0))
    w = jnp.linalg.eigvalsh(F / jnp.outer(d, d))
    return jnp.any(diag <= 0) | (w[0] <= RANK_RTOL * F.shape[0] * w[-1])


def _singular_numpy(F) -> bool:
    """Whether F is rank deficient, judged on the unit-diagonal matrix (unit-free)."""
    diag = np.diag(F)
    if np.any(diag <= 0):
        return True
    d = np.sqrt(diag)
    w = np.linalg.eigvalsh(F / np.outer(d, d))
    return bool(w[0] <= RANK_RTOL * F.shape[0] * w[-1])


def _natural_from_matrix(F, crit: _Criterion):
    """The criterion as defined (no ridge): log det F, -tr F⁻¹, λ_min, cond, user value.

    A rank-deficient F (the test of :func:`_singular_numpy`) gets the worst value in the
    criterion's direction, exactly as :func:`_natural_numpy` gives it: ``-inf`` for "D"
    and "A", ``0`` for "E" (its smallest eigenvalue, without the round-off), ``+inf`` for
    "ME".
    """
    kind = crit.kind
    if not isinstance(kind, str):
        return _user_value(F, crit)
    singular = _singular_jax(F)
    if kind == "D":
        sign, logdet = jnp.linalg.slogdet(F)
        return jnp.where(singular | (sign <= 0), -jnp.inf, logdet)
    if kind == "A":
        # Solve with a regular matrix in the singular case, so no NaN enters the gradient.
        safe = jnp.where(singular, jnp.eye(F.shape[0], dtype=F.dtype), F)
        value = -jnp.trace(jnp.linalg.solve(safe, jnp.eye(F.shape[0], dtype=F.dtype)))
        return jnp.where(singular, -jnp.inf, value)
    w = jnp.linalg.eigvalsh(F)
    if kind == "E":
        return jnp.where(singular, 0.0, w[0])
    return jnp.where(singular | (w[0] <= 0), jnp.inf, w[-1] / jnp.where(w[0] > 0, w[0], 1.0))


def _natural_numpy(F, crit: _Criterion) -> float:
    """The natural value from a numpy matrix, robust to singular matrices."""
    F = np.asarray(F, dtype=np.float64)
    kind = crit.kind
    if not isinstance(kind, str):
        with float64():
            return float(_user_value(jnp.asarray(F), crit))
    # Rank deficiency is judged on the unit-diagonal matrix (as in _natural_from_matrix),
    # so that parameters of very different scales do not look singular; a singular F gets
    # the worst value in the criterion's direction.
    if _singular_numpy(F):
        return {"D": -math.inf, "A": -math.inf, "E": 0.0, "ME": math.inf}[kind]
    if kind in ("D", "A"):
        # log det F = log det S + Σ log F_ii, F⁻¹ = D⁻¹ S⁻¹ D⁻¹.
        diag = np.diag(F)
        d = np.sqrt(diag)
        w, V = np.linalg.eigh(F / np.outer(d, d))
        if kind == "D":
            return float(np.sum(np.log(w)) + 2.0 * np.sum(np.log(d)))
        return float(-np.sum(((V**2) @ (1.0 / w)) / diag))
    w = np.linalg.eigvalsh(F)
    if kind == "E":
        return float(w[0])
    return math.inf if w[0] <= 0 else float(w[-1] / w[0])


# =======================================================================================
# Argument checks and formatting shared by every design function
# =======================================================================================
def _common_setup(experiment, fiducial, params, criterion, maximize, prior, relative, mode):
    experiments = as_experiments(experiment)
    joint = not isinstance(experiment, Experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_mode(mode)
    crit = _check_criterion(criterion, maximize, names)
    return experiments, joint, fid, names, crit


def _check_int(value, what, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{what}` must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def _unit_diagonal(M):
    d = np.sqrt(np.where(np.diag(M) > 0, np.diag(M), 1.0))
    return M / np.outer(d, d)


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


def _build_problem(
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
):
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
        if (
            not joint
            and len(leaves) == 1
            and isinstance(fixed, list | tuple)
            and all(isinstance(v, bool | np.bool_) for v in fixed)
        ):
            # A plain list of booleans for a single design array is that array's mask.
            fixed = np.asarray(fixed, dtype=bool)
        prefix = fixed if joint else [fixed]
        fixed_leaves = _per_leaf(prefix, designs, "fixed")
    masks = []
    for leaf, f in zip(leaves, fixed_leaves, strict=True):
        f = np.asarray(f)
        if f.dtype != np.bool_:
            raise TypeError(f"`fixed` must hold booleans (True = held fixed); received {quote(f)}.")
        try:
            masks.append(np.broadcast_to(f, leaf.shape))
        except ValueError:
            raise ValueError(
                f"`fixed` has an entry of shape {f.shape} for a design leaf of shape {leaf.shape}."
            ) from None

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
                raise ValueError(
                    f"`bounds` entries must be (low, high) pairs; received {quote(pair)}."
                )
            try:
                low = np.broadcast_to(np.asarray(pair[0], dtype=np.float64), leaf.shape).reshape(-1)
                high = np.broadcast_to(np.asarray(pair[1], dtype=np.float64), leaf.shape).reshape(
                    -1
                )
            except ValueError:
                raise ValueError(
                    f"`bounds` (low, high) of shapes {np.shape(pair[0])} and "
                    f"{np.shape(pair[1])} do not broadcast to the design array of shape "
                    f"{leaf.shape}; received {quote(pair)}. Give scalars, or arrays with "
                    "one entry per design entry."
                ) from None
            low, high = low[free_here], high[free_here]
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"`bounds` must be finite; received {quote(pair)}.")
            if np.any(low >= high):
                raise ValueError(
                    f"`bounds` need low < high for every free design entry; received {quote(pair)}."
                )
            current = values[free_here]
            outside = (current < low) | (current > high)
            if np.any(outside):
                # The gain and efficiency are quoted against the initial design: it must be
                # a feasible one.
                raise ValueError(
                    f"the initial `design` has entries outside `bounds` {quote(pair)}: "
                    f"{current[outside][:5].tolist()} at positions "
                    f"{free_here[outside][:5].tolist()}. Start from a design inside the "
                    "bounds (e.g. exp.replace(design=...)), or widen `bounds`."
                )
        else:
            low = np.full(len(free_here), -np.inf)
            high = np.full(len(free_here), np.inf)
        lows.append(low)
        highs.append(high)
        offset += values.size
    free_idx = np.concatenate(free) if free else np.zeros(0, int)
    if free_idx.size == 0:
        raise ValueError(
            "every design entry is fixed (or not a float): nothing to optimise. Check `fixed`."
        )
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
                raise ValueError(
                    "`constraints` (ordering / min_spacing) need every entry of "
                    "a 1-D design array free; this one has fixed entries "
                    "(`fixed`). Split the fixed entries into their own leaf."
                )
            lo, hi = low[start:stop], high[start:stop]
            if np.ptp(lo) > 0 or np.ptp(hi) > 0:
                raise ValueError(
                    "`constraints` (ordering / min_spacing) need one (low, high) "
                    "pair for the whole 1-D design array."
                )
            n = stop - start
            if (n - 1) * spacing >= hi[0] - lo[0]:
                raise ValueError(
                    f"constraints min_spacing={spacing!r} cannot be met: {n} points need "
                    f"{(n - 1) * spacing:g} but the bounds span only {hi[0] - lo[0]:g}."
                )
            ordered.append((start, stop, float(spacing)))
        if not ordered:
            raise ValueError(
                "`constraints` apply to 1-D design arrays of two or more entries; "
                "the design has none."
            )

    spec = _Spec(
        crit=crit,
        treedef=treedef,
        leaves=tuple(info),
        n_flat=offset,
        ordered=tuple(ordered),
        mode=mode,
        gradient=gradient,
    )
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
        raise ValueError(
            f"`constraints` must be None, 'ordered' or a dict with 'ordered' "
            f"and/or 'min_spacing'; received {constraints!r}."
        )
    if not isinstance(constraints, Mapping):
        raise TypeError(
            f"`constraints` must be None, 'ordered' or a dict; received {quote(constraints)}."
        )
    unknown = sorted(set(constraints) - {"ordered", "min_spacing"})
    if unknown:
        raise ValueError(
            f"`constraints` has unknown keys {unknown}; supported: 'ordered' "
            "(sorted times) and 'min_spacing' (sorted, neighbours at least this "
            "far apart)."
        )
    spacing = constraints.get("min_spacing", None)
    if spacing is None:
        return 0.0 if constraints.get("ordered", False) else None
    spacing = float(spacing)
    if not (math.isfinite(spacing) and spacing >= 0):
        raise ValueError(
            f"constraints['min_spacing'] must be a finite number >= 0; received "
            f"{constraints['min_spacing']!r}."
        )
    return spacing


def _align_prior(prior, names):
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


def _scale_vector(fid, names, relative):
    if not relative:
        return np.ones(len(names))
    values = np.array([fid[n] for n in names], dtype=np.float64)
    if np.any(values == 0):
        zero = [n for n, v in zip(names, values, strict=True) if v == 0]
        raise ValueError(
            f"relative=True scales by the fiducial values, but {zero} have "
            "fiducial 0; use relative=False or a non-zero fiducial."
        )
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
            leaves.append(flat[offset : offset + size].reshape(shape))
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def _fisher_of_x(x, dyn, spec):
    """Total (scaled) Fisher matrix, prior included, of the design with free entries x."""
    designs = _designs_from_x(x, dyn, spec)
    F = jnp.asarray(dyn["prior"])
    for exp, design in zip(dyn["experiments"], designs, strict=True):
        F = F + fisher_information(
            exp.replace(design=design), dyn["fid"], spec.crit.names, spec.mode
        )
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
        sol = optx.minimise(scaled, solver, u0, args=(dyn, scale), max_steps=max_steps, throw=False)
        x = _x_from_u(sol.value, dyn, spec)
        F = _fisher_of_x(x, dyn, spec)
        return (
            x,
            _loss_from_matrix(F, spec.crit, spec.ridge),
            _natural_from_matrix(F, spec.crit),
            sol.result == optx.RESULTS.successful,
        )

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
# design_criterion: value and gradient of a criterion at a given design
# =======================================================================================
def design_criterion(
    experiment,
    fiducial,
    *,
    criterion="D",
    prior=None,
    params=None,
    maximize=None,
    relative=False,
    mode="forward",
    gradient=False,
    gradient_mode="forward",
):
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
        experiment, fiducial, params, criterion, maximize, prior, relative, mode
    )
    if gradient_mode not in ("forward", "reverse"):
        raise ValueError(
            f"`gradient_mode` must be 'forward' or 'reverse'; received {gradient_mode!r}."
        )
    with float64():
        spec, dyn, x0 = _build_problem(
            experiments,
            joint,
            fid,
            names,
            crit,
            prior,
            relative,
            mode,
            gradient_mode,
            None,
            None,
            None,
        )
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
            leaves.append(flat[offset : offset + size].reshape(shape))
    grads = jax.tree_util.tree_unflatten(spec.treedef, leaves)
    return value, (grads if joint else grads[0])
