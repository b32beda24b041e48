"""How many repeats of an experiment reach a target σ: :func:`required_samples`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from .._checks import as_experiments, check_fiducial, check_names
from .._errors import InputError, ParameterError, quote
from .._fisher import fisher
from .._linalg import RANK_RTOL, unit_diagonal
from .._matrix import FisherMatrix
from .._record import Record
from .problem import align_prior

__all__ = ["RequiredSamples", "required_samples"]


# =======================================================================================
# required_samples
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RequiredSamples(Record):
    """The result of :func:`required_samples`.

    Attributes:
        per_parameter: dict name -> smallest number of repeats ``n`` that brings the
            marginal σ to the target (``math.inf`` if no number of repeats can, e.g. a
            direction the experiment does not constrain at all; 0 if the prior alone does).
        overall: the largest of these (every target met).
        sigma_single: σ for one repeat (prior included).
        target: dict name -> target σ.

    Methods: :meth:`sigma_at` (σ after ``n`` repeats), ``summary()``, ``to_dict()``. A line
    ``a + b t`` measured once at ``t = ±1`` with unit noise has ``F = 2 I``, so
    ``σ₁ = 1/√2`` and ``n = (σ₁/target)² = 0.5/target²``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([-1.0, 1.0]))
    >>> req = ff.required_samples(exp, {"a": 1.0, "b": 0.5}, {"a": 0.1, "b": 0.05})
    >>> req.per_parameter, req.overall
    ({'a': 50, 'b': 200}, 200)
    >>> {k: round(v, 6) for k, v in req.sigma_single.items()}
    {'a': 0.707107, 'b': 0.707107}
    >>> {k: round(v, 6) for k, v in req.sigma_at(200).items()}     # σ₁/√200
    {'a': 0.05, 'b': 0.05}
    ```
    """

    per_parameter: dict
    overall: float
    sigma_single: dict
    target: dict
    _fisher_single: FisherMatrix = dataclasses.field(repr=False)
    _prior: np.ndarray = dataclasses.field(repr=False)
    _marginal: bool = dataclasses.field(repr=False)

    def sigma_at(self, n: float) -> dict:
        """σ per parameter after ``n`` repeats (``n`` may be fractional: observing time)."""
        return _sigma_repeats(self._fisher_single, self._prior, n, self._marginal)

    def summary(self) -> str:
        names = list(self.target)
        width = max([len(x) for x in names] + [9])
        kind = "marginal" if self._marginal else "conditional"
        lines = [
            f"Required repeats of the experiment ({kind} sigma; information scales "
            "linearly with repeats)",
            f"  {'parameter':<{width}}  {'sigma(1)':>11}  {'target':>11}  {'repeats':>9}",
        ]
        for name in names:
            n = self.per_parameter[name]
            lines.append(
                f"  {name:<{width}}  {self.sigma_single[name]:>11.4g}  "
                f"{self.target[name]:>11.4g}  {n if math.isfinite(n) else 'never':>9}"
            )
        lines.append(
            f"  all targets met with {self.overall} repeats"
            if math.isfinite(self.overall)
            else "  some targets can never be met by repeating this experiment"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "per_parameter": dict(self.per_parameter),
            "overall": self.overall,
            "sigma_single": dict(self.sigma_single),
            "target": dict(self.target),
        }

    def __repr__(self):
        return f"RequiredSamples(overall={self.overall}, per_parameter={self.per_parameter})"


def _sigma_repeats(F1, prior, n, marginal):
    M = n * F1.matrix + prior
    names = F1.names
    if marginal:
        w = np.linalg.eigvalsh(unit_diagonal(M)[0]) if np.all(np.diag(M) > 0) else [0.0]
        if np.min(w) <= RANK_RTOL * len(names) * max(np.max(w), 1e-300):
            return {x: math.inf for x in names}
        cov = np.linalg.inv(M)
        return {x: float(math.sqrt(cov[i, i])) for i, x in enumerate(names)}
    return {x: (1.0 / math.sqrt(M[i, i]) if M[i, i] > 0 else math.inf) for i, x in enumerate(names)}


def required_samples(
    experiment,
    fiducial,
    target_sigma,
    *,
    params=None,
    prior=None,
    relative=False,
    marginal=True,
    mode="forward",
) -> RequiredSamples:
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
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    F1 = fisher(experiments, fid, params=names, mode=mode)
    prior_m = align_prior(prior, names)
    if not isinstance(marginal, bool | np.bool_):
        raise TypeError(
            f"`marginal` must be True (marginal sigma) or False (conditional "
            f"sigma); received {quote(marginal)}."
        )
    marginal = bool(marginal)
    if isinstance(target_sigma, Mapping):
        if not target_sigma:
            raise InputError(
                "`target_sigma` is an empty dict: give a number (one target "
                "for every parameter) or a dict name -> target."
            )
        unknown = [x for x in target_sigma if x not in names]
        if unknown:
            raise ParameterError(
                f"`target_sigma` names {unknown}, which are not varied parameters {list(names)}."
            )
        target = {x: target_sigma[x] for x in target_sigma}
    else:
        target = {x: target_sigma for x in names}
    checked = {}
    for x, t in target.items():
        dtype = np.asarray(t).dtype if np.ndim(t) == 0 else None
        if dtype is None or not np.issubdtype(dtype, np.number) or isinstance(t, bool | np.bool_):
            raise TypeError(
                f"`target_sigma` must be a number or a dict of numbers; received "
                f"{quote(target_sigma)}."
            )
        t = float(t)
        if not (math.isfinite(t) and t > 0):
            raise InputError(
                f"`target_sigma` must be positive and finite; received {t!r} for {x!r}."
            )
        if relative:
            if fid[x] == 0:
                raise InputError(f"relative=True but the fiducial of {x!r} is 0.")
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
    return RequiredSamples(
        per_parameter=per,
        overall=overall,
        sigma_single=sigma1,
        target=target,
        _fisher_single=F1,
        _prior=prior_m,
        _marginal=marginal,
    )


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
