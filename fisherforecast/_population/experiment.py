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
    covariance_name,
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
      The variance of ``η`` is the fiducial entry ``omega2_<name>``.
    - `correlated`: pairs ``(a, b)`` of names in `random` whose random effects are
      correlated (default none: Ω diagonal). The covariance ``Cov(η_a, η_b)`` is the
      fiducial entry ``omega_<a>_<b>`` (in the order given, e.g. ``omega_CL_V`` for
      ``("CL", "V")``), a Fisher parameter like the variances; pairs not listed have zero
      covariance. Ω must be positive definite at the fiducial.
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

    The fiducial holds the fixed effects by name, the variances ``omega2_<name>``, the
    covariances ``omega_<a>_<b>`` of the `correlated` pairs and the residual variances
    ``sigma2_prop``/``sigma2_add``; ``params=`` fixes any of them.
    ``ff.population_check`` tests the prediction by simulation and estimation; on the
    warfarin example the reduced FO matrix matches it and the full one overstates the
    information on strongly nonlinear fixed effects (``docs/population.md``).

    **Raises:** `InputError` for an unknown `random` kind, `error`, `fim` or
    `approximation`, a non-positive `group_size` or a bad `correlated` pair; at evaluation,
    `ParameterError` when the fiducial lacks a variance or covariance and `InputError` for
    non-positive variances or an Ω that is not positive definite (naming its entries).

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
    >>> corr = ff.PopulationExperiment(                # Cov(η_CL, η_V) = omega_CL_V
    ...     pk, np.array([0.5, 1, 2, 6, 24, 36, 72, 120.0]), group_size=32,
    ...     random={"CL": "exponential", "V": "exponential", "KA": "exponential"},
    ...     correlated=[("CL", "V")], error="proportional", fim="reduced")
    >>> corr.variance_names
    ('omega2_CL', 'omega2_V', 'omega2_KA', 'omega_CL_V', 'sigma2_prop')
    >>> F = ff.fisher(corr, {**fid, "omega_CL_V": 0.02})
    >>> F.names[-2:], bool(F.rse()["omega_CL_V"] > 0)
    (('sigma2_prop', 'omega_CL_V'), True)

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
        correlated=None,
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
            pairs = _check_correlated(correlated, rand)
            _check_choice(error, "error", tuple(ERROR_VARIANCES))
            _check_choice(fim, "fim", ("full", "reduced"))
            _check_choice(approximation, "approximation", APPROXIMATIONS)
            z = None
            mean_model = model
            if approximation == "mc":
                if not rand:
                    raise InputError("approximation='mc' needs at least one random effect.")
                z = _sobol_normal(_check_count(n_eta, "n_eta"), len(rand), seed)
                mean_model = functools.partial(
                    mc_mean, model=model, random=rand, error=error, z=z, correlated=pairs
                )
            noise = PopulationNoise(
                model, rand, error, check_group_size(group_size), fim, z, correlated=pairs
            )
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
    def correlated(self) -> list[tuple[str, str]]:
        """The correlated pairs ``(a, b)``; their covariances are ``omega_<a>_<b>``."""
        return [(a, b) for a, b in self.population_noise.correlated]

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
        """The fiducial names of the variances: ``omega2_*``, the covariances
        ``omega_<a>_<b>``, then ``sigma2_*``."""
        n = self.population_noise
        return variance_names(n.random, n.error, n.correlated)

    def with_group_size(self, group_size) -> PopulationExperiment:
        """The same group with another number of individuals (no recompilation)."""
        noise = self.population_noise
        new = PopulationNoise(
            noise.model,
            noise.random,
            noise.error,
            check_group_size(group_size),
            noise.fim,
            noise.z,
            correlated=noise.correlated,
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
            correlated=list(n.correlated) or None,
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
            f"random={self.random}, "
            + (f"correlated={self.correlated}, " if self.correlated else "")
            + f"error={self.error!r}, fim={self.fim!r}, "
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


def _check_correlated(correlated, random) -> tuple:
    """The correlated pairs as a tuple of ``(a, b)`` names of random effects."""
    if correlated is None:
        return ()
    names = [n for n, _ in random]
    if isinstance(correlated, str | Mapping) or not isinstance(correlated, list | tuple):
        raise InputError(
            "`correlated` must be a list of pairs of random-effect names, e.g. "
            f"correlated=[('CL', 'V')]; received {quote(correlated)}."
        )
    out, seen = [], {}
    for pair in correlated:
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        if not ok or not all(isinstance(x, str) for x in pair):
            raise InputError(
                "`correlated` must hold pairs (a, b) of random-effect names; received "
                f"{quote(pair)}."
            )
        a, b = pair
        for x in (a, b):
            if x not in names:
                raise InputError(
                    f"`correlated` pair {quote(tuple(pair))}: {x!r} has no random effect "
                    f"(the names in `random` are {names})."
                )
        if a == b:
            raise InputError(
                f"`correlated` pair {quote(tuple(pair))} pairs a random effect with itself; "
                f"its variance is omega2_{a}."
            )
        key = frozenset((a, b))
        cname = covariance_name(a, b)
        if key in seen or cname in seen.values():
            raise InputError(
                f"`correlated` lists the pair {quote(tuple(pair))} twice (or a pair whose "
                f"covariance name {cname!r} is already taken)."
            )
        seen[key] = cname
        out.append((a, b))
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
