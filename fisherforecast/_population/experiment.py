"""``ff.PopulationExperiment``: one group of a population (NLME) study."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping
from typing import cast

import numpy as np

from .._errors import InputError, quote
from .._experiment import Experiment, register_experiment_class
from .noise import (
    ERROR_VARIANCES,
    RANDOM_KINDS,
    PopulationNoise,
    mc_mean,
    variance_names,
)

APPROXIMATIONS = ("fo", "mc")


@dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)
class PopulationExperiment(Experiment):
    """One group of a population (nonlinear mixed-effects) study: ``group_size``
    individuals sharing a design, each with random effects ``η ~ N(0, Ω)``.

    It is an :class:`ff.Experiment` (mean and noise model of the linearised model), so
    ``ff.fisher``, ``ff.optimize_design`` and ``ff.required_samples`` take it, alone or in a
    list of groups whose Fisher matrices add by parameter name.

    **Arguments:**

    - `model`: the individual prediction ``model(params, design)`` (any output shape).
    - `design`: the group's design pytree (sampling times, doses, ...).
    - `random`: dict parameter name -> how its random effect enters: ``"exponential"``
      (``θ·exp(η)``), ``"additive"`` (``θ + η``) or ``"proportional"`` (``θ·(1 + η)``).
      The variance of ``η`` is the fiducial entry ``omega2_<name>`` (Ω is diagonal).
    - `error`: residual error ``"additive"`` (variance ``sigma2_add``),
      ``"proportional"`` (``f²·sigma2_prop``) or ``"combined"`` (their sum).
    - `group_size`: number of individuals (a positive number; the Fisher matrix is
      ``group_size`` times an individual's).
    - `fim`: ``"full"`` (the exact Fisher matrix of the linearised model) or
      ``"reduced"`` (block-diagonal: the fixed-effect block without ``∂V/∂β``, PopED's
      default).
    - `approximation`: ``"fo"`` (linearise at ``η = 0``: mean ``f(β, 0)``, covariance
      ``G Ω Gᵀ + Σ``) or ``"mc"`` (the exact mean and covariance of an individual's data,
      integrated over ``η`` with `n_eta` scrambled-Sobol points; `seed` picks the scramble).
    - `name`: a label.

    The fiducial holds the fixed effects by name, the variances ``omega2_<name>`` and the
    residual variances ``sigma2_prop``/``sigma2_add``; ``params=`` fixes any of them.
    ``ff.population_check`` tests the prediction by simulation and estimation; on the
    warfarin example the reduced FO matrix matches it and the full one overstates the
    information on strongly nonlinear fixed effects (``docs/population.md``).

    **Raises:** `InputError` for an unknown `random` kind, `error`, `fim` or
    `approximation`, or a non-positive `group_size`; at evaluation, `ParameterError` when
    the fiducial lacks a variance and `InputError` for non-positive variances.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> def pk(p, t):                       # one-compartment oral absorption, dose 70
    ...     k, ka = p["CL"] / p["V"], p["KA"]
    ...     return 70 * ka / (p["V"] * (ka - k)) * (jnp.exp(-k * t) - jnp.exp(-ka * t))
    >>> group = ff.PopulationExperiment(
    ...     pk, np.array([0.5, 1, 2, 6, 24, 36, 72, 120.0]), group_size=32,
    ...     random={"CL": "exponential", "V": "exponential", "KA": "exponential"},
    ...     error="proportional", fim="reduced")
    >>> fid = {"CL": 0.15, "V": 8.0, "KA": 1.0, "omega2_CL": 0.07, "omega2_V": 0.02,
    ...        "omega2_KA": 0.6, "sigma2_prop": 0.01}
    >>> rse = ff.fisher(group, fid).rse()        # PopED's published RSE %
    >>> [round(rse[k], 3) for k in fid]
    [4.738, 2.756, 13.926, 25.627, 30.344, 25.777, 11.171]

    ```
    """

    def __init__(
        self,
        model,
        design=None,
        noise=None,
        name=None,
        *,
        random=None,
        error="proportional",
        group_size: float = 1,
        fim="full",
        approximation="fo",
        n_eta=512,
        seed=0,
    ):
        if noise is None:
            if not callable(model):
                raise TypeError(
                    "PopulationExperiment `model` must be callable as model(params, design); "
                    f"received {quote(model)}."
                )
            rand = _check_random(random)
            _check_choice(error, "error", tuple(ERROR_VARIANCES))
            _check_choice(fim, "fim", ("full", "reduced"))
            _check_choice(approximation, "approximation", APPROXIMATIONS)
            z = None
            mean_model = model
            if approximation == "mc":
                if not rand:
                    raise InputError("approximation='mc' needs at least one random effect.")
                z = _sobol_normal(_check_count(n_eta, "n_eta"), len(rand), seed)
                mean_model = functools.partial(mc_mean, model=model, random=rand, error=error, z=z)
            noise = PopulationNoise(model, rand, error, check_group_size(group_size), fim, z)
        elif not isinstance(noise, PopulationNoise):
            raise TypeError(
                "PopulationExperiment builds its own noise model from `random` and `error`; "
                f"received noise={quote(noise)}."
            )
        else:
            mean_model = model
        object.__setattr__(self, "model", mean_model)
        object.__setattr__(self, "noise", noise)
        object.__setattr__(self, "design", design)
        object.__setattr__(self, "name", name)
        self.__post_init__()

    # --- read-only views of the settings ------------------------------------------------
    @property
    def population_noise(self) -> PopulationNoise:
        """The noise model: the population covariance of this group."""
        return cast(PopulationNoise, self.noise)

    @property
    def individual_model(self):
        """The individual prediction ``model(params, design)`` as given."""
        return self.population_noise.model

    @property
    def random(self) -> dict:
        return dict(self.population_noise.random)

    @property
    def error(self) -> str:
        return self.population_noise.error

    @property
    def fim(self) -> str:
        return self.population_noise.fim

    @property
    def group_size(self) -> float:
        return float(self.population_noise.group_size)

    @property
    def approximation(self) -> str:
        return "fo" if self.population_noise.z is None else "mc"

    @property
    def variance_names(self) -> tuple[str, ...]:
        """The fiducial names of the variances: ``omega2_*`` then ``sigma2_*``."""
        return variance_names(self.population_noise.random, self.population_noise.error)

    def with_group_size(self, group_size) -> PopulationExperiment:
        """The same group with another number of individuals (no recompilation)."""
        noise = self.population_noise
        new = PopulationNoise(
            noise.model, noise.random, noise.error, check_group_size(group_size), noise.fim, noise.z
        )
        return cast(PopulationExperiment, self.replace(noise=new))

    def variant(self, *, fim=None, approximation=None, n_eta=512, seed=0):
        """The same group under another `fim` and/or `approximation`."""
        n = self.population_noise
        return PopulationExperiment(
            n.model,
            self.design,
            name=self.name,
            random=dict(n.random),
            error=n.error,
            group_size=float(n.group_size),
            fim=fim or n.fim,
            approximation=approximation or self.approximation,
            n_eta=n_eta,
            seed=seed,
        )

    def __repr__(self):
        model = getattr(self.individual_model, "__name__", type(self.individual_model).__name__)
        return (
            f"PopulationExperiment(model={model}, {self.approximation.upper()}, "
            f"random={self.random}, error={self.error!r}, fim={self.fim!r}, "
            f"group_size={self.group_size:g}, name={self.name!r})"
        )


register_experiment_class(PopulationExperiment)


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------
def _check_choice(value, what, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"`{what}` must be one of {list(allowed)}; received {quote(value)}.")


def _check_random(random) -> tuple:
    if random is None:
        raise InputError(
            "PopulationExperiment needs `random`: a dict parameter name -> 'exponential', "
            "'additive' or 'proportional', e.g. random={'CL': 'exponential'} (an empty dict "
            "for no random effects)."
        )
    if not isinstance(random, Mapping):
        raise InputError(
            f"`random` must be a dict parameter name -> one of {list(RANDOM_KINDS)}; "
            f"received {quote(random)}."
        )
    out = []
    for name, kind in random.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"`random` keys must be parameter names; received {quote(name)}.")
        if kind not in RANDOM_KINDS:
            raise InputError(
                f"`random[{name!r}]` must be one of {list(RANDOM_KINDS)}; received {quote(kind)}."
            )
        out.append((name, kind))
    return tuple(out)


def check_group_size(group_size) -> float:
    """A positive, finite number of individuals."""
    ok = isinstance(group_size, int | float | np.integer | np.floating) and not isinstance(
        group_size, bool
    )
    if not ok or not (math.isfinite(float(group_size)) and float(group_size) > 0):
        raise InputError(
            f"`group_size` must be a positive number of individuals; received {quote(group_size)}."
        )
    return float(group_size)


def _check_count(value, what) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
        raise InputError(f"`{what}` must be an integer >= 2; received {quote(value)}.")
    return int(value)


def _sobol_normal(n, dim, seed):
    """``n`` scrambled-Sobol points mapped to standard normals, ``(n, dim)``."""
    from scipy.stats import norm, qmc

    if dim == 0:
        return np.zeros((n, 0))
    with warnings.catch_warnings():  # n need not be a power of 2
        warnings.simplefilter("ignore", UserWarning)
        u = qmc.Sobol(d=dim, scramble=True, rng=np.random.default_rng(seed)).random(n)
    return norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))
