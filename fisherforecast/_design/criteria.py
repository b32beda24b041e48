"""Design criteria: functions of the Fisher matrix that a design maximises or minimises.

* :class:`DesignFisher`: the named, traced matrix a user criterion sees;
* :func:`sigma_criterion`, :func:`fom_criterion`: ready-made user criteria;
* the built-in "D", "A", "E", "ME" criteria as pure JAX functions of a ``(P, P)`` matrix
  (:func:`loss_from_matrix`, the ridge-regularised objective; :func:`natural_from_matrix`,
  the value as defined) and their robust numpy evaluation (:func:`natural_numpy`);
* :class:`Criterion`, the static (hashable) description of a checked criterion.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, ParameterError, quote
from .._linalg import OK, RANK_RTOL, classify, covariance, logdet
from .._x64 import float64

__all__ = [
    "DesignFisher",
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
RIDGE = 1e-10


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
    >>> from fisherforecast._design.criteria import sigma_criterion
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
    >>> from fisherforecast._design.criteria import fom_criterion
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
class Criterion:
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


def check_criterion(criterion, maximize, names) -> Criterion:
    if isinstance(criterion, str):
        key = criterion.upper()
        if key not in CRITERIA:
            raise InputError(
                f"`criterion` must be one of {CRITERIA} or a callable criterion(F) -> scalar; "
                f"received {criterion!r}."
            )
        natural = key != "ME"
        if maximize is not None and bool(maximize) != natural:
            raise InputError(
                f"criterion {key!r} is {'maximised' if natural else 'minimised'} by "
                f"definition; received maximize={maximize!r}. Leave `maximize` unset for the "
                "built-in criteria."
            )
        return Criterion(key, natural, tuple(names))
    if callable(criterion):
        if maximize is None:
            maximize = getattr(criterion, "maximize", True)
        return Criterion(criterion, bool(maximize), tuple(names))
    raise TypeError(
        f"`criterion` must be one of {CRITERIA} or a callable criterion(F) -> scalar; "
        f"received {quote(criterion)}."
    )


def _scaled(F, ridge):
    diag = jnp.diag(F)
    d = jnp.sqrt(jnp.where(diag > 0, diag, 1.0))
    S = F / jnp.outer(d, d) + ridge * jnp.eye(F.shape[0], dtype=F.dtype)
    return S, d


def user_value(F, crit):
    value = crit.kind(DesignFisher(F, crit.names))
    value = jnp.asarray(value)
    if value.shape != ():
        raise InputError(
            f"the design criterion {crit.short!r} must return a scalar; it returned an array "
            f"of shape {value.shape}."
        )
    return value


def loss_from_matrix(F, crit: Criterion, ridge=RIDGE):
    """The objective to *minimise*: a monotone function of the criterion (ridge-regularised)."""
    kind = crit.kind
    if not isinstance(kind, str):
        value = user_value(F, crit)
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


def singular_jax(F):
    """Traced twin of :func:`singular_numpy`: the same rank test on the unit-diagonal F."""
    diag = jnp.diag(F)
    d = jnp.sqrt(jnp.where(diag > 0, diag, 1.0))
    w = jnp.linalg.eigvalsh(F / jnp.outer(d, d))
    return jnp.any(diag <= 0) | (w[0] <= RANK_RTOL * F.shape[0] * w[-1])


def singular_numpy(F) -> bool:
    """Whether F is not a full-rank Fisher matrix, by the package's one rank rule
    (:func:`fisherforecast._linalg.classify` on the unit-diagonal matrix, unit-free)."""
    return bool(classify(np.asarray(F, dtype=np.float64))[0] != OK)


def natural_from_matrix(F, crit: Criterion):
    """The criterion as defined (no ridge): log det F, -tr F⁻¹, λ_min, cond, user value.

    A rank-deficient F (the test of :func:`singular_numpy`) gets the worst value in the
    criterion's direction, exactly as :func:`natural_numpy` gives it: ``-inf`` for "D"
    and "A", ``0`` for "E" (its smallest eigenvalue, without the round-off), ``+inf`` for
    "ME".
    """
    kind = crit.kind
    if not isinstance(kind, str):
        return user_value(F, crit)
    singular = singular_jax(F)
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


def natural_numpy(F, crit: Criterion) -> float:
    """The natural value from a numpy matrix, robust to singular matrices."""
    F = np.asarray(F, dtype=np.float64)
    kind = crit.kind
    if not isinstance(kind, str):
        with float64():
            return float(user_value(jnp.asarray(F), crit))
    # Rank deficiency is judged on the unit-diagonal matrix (as in natural_from_matrix),
    # so that parameters of very different scales do not look singular; a singular F gets
    # the worst value in the criterion's direction.
    if singular_numpy(F):
        return {"D": -math.inf, "A": -math.inf, "E": 0.0, "ME": math.inf}[kind]
    if kind == "D":
        return float(logdet(F))  # log det S + Σ log F_ii: no overflow
    if kind == "A":
        return -float(np.sum(covariance(F, diagonal_only=True)))  # F⁻¹ = D⁻¹ S⁻¹ D⁻¹
    w = np.linalg.eigvalsh(F)
    if kind == "E":
        return float(w[0])
    return math.inf if w[0] <= 0 else float(w[-1] / w[0])
