"""DALI: the Derivative Approximation for LIkelihoods, the next step beyond Fisher.

Sellentin, Quartin & Amendola (2014, MNRAS 441, 1831) expand the log-likelihood of
Gaussian data with a parameter-independent covariance ``C`` in derivatives of the model
mean ``μ(θ)``. With ``Δ = θ − θ₀``, noise-free (Asimov) data ``d = μ(θ₀)``, and
``A·B = Aᵀ C⁻¹ B`` the noise model's inner product:

- the **doublet** (``order=2``) keeps every term built from first and second derivatives,

  ``−ln L = ½ F_ij Δ^i Δ^j + ½ S_ijk Δ^i Δ^j Δ^k + ⅛ Q_ijkl Δ^i Δ^j Δ^k Δ^l``

  with ``F_ij = μ,i·μ,j``, ``S_ijk = μ,ij·μ,k`` and ``Q_ijkl = μ,ij·μ,kl``;
- the **triplet** (``order=3``, Sellentin 2015, MNRAS 453, 893) adds the third
  derivatives,

  ``+ ⅙ μ,ijk·μ,l Δ⁴ + (1/12) μ,ijk·μ,lm Δ⁵ + (1/72) μ,ijk·μ,lmn Δ⁶``.

Both are ``½ ‖r_n(Δ)‖²`` for the Taylor polynomial ``r_n`` of order ``n`` of the residual
``μ(θ₀ + Δ) − μ(θ₀)``: always non-negative, exact for a model that is a polynomial of
degree ≤ ``n`` in θ, and equal to the Fisher approximation for a linear model. The
derivatives come from nested ``jax.jacfwd``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from .._checks import as_experiments, check_fiducial, check_names, check_seed
from .._compile import cached_kernel
from .._engine import call_model, evaluate_checked, split
from .._errors import InputError, NonFiniteError, ParameterError, SingularFisherError, quote
from .._interop import SampleConversions
from .._matrix import FisherMatrix
from .._record import Record
from .._x64 import float64
from .nuts import (
    DEFAULT_BOUNDS_SIGMA,
    TARGET_ACCEPT,
    check_sampler_settings,
    describe_prior,
    prepare_sampler,
    resolve_priors,
    run_nuts,
)
from .stats import chain_statistics

HIGHEST = jax.lax.Precision.HIGHEST
#: Tensor names by order: (derivative orders of the two factors) in ``μ,a·μ,b``.
TENSORS = {2: ("F", "S", "Q"), 3: ("F", "S", "Q", "T31", "T32", "T33")}
#: Refuse tensors with more entries than this (the triplet's largest is P⁶).
MAX_TENSOR_ENTRIES = 2**25


def _check_supported(exp):
    noise = exp.noise
    if noise.gaussian and noise.parameter_dependent is False:
        return
    raise NotImplementedError(
        f"DALI is implemented for Gaussian noise with a parameter-independent covariance "
        f"(ff.Gaussian with a fixed sigma or cov) and for ff.PSD noise; {exp.label} "
        f"has {noise!r}. For Poisson or parameter-dependent noise, sample the "
        "full likelihood with ff.crosscheck instead."
    )


# =======================================================================================
# Tensors: nested forward-mode derivatives, contracted with the noise model's metric
# =======================================================================================
@cached_kernel(static_argnames=("names", "order"))
def dali_tensors(experiment, fiducial, names, order):
    """The DALI tensors of one experiment as a tuple (see ``TENSORS``). Pure, under float64."""
    theta, to_params = split(fiducial, names)
    P = len(names)

    def flat(th):  # forward mode carries complex outputs as they are
        return call_model(experiment, to_params(th)).reshape(-1)

    mean = call_model(experiment, to_params(theta))
    n = mean.size
    J = jax.jacfwd(flat)(theta)
    H = jax.jacfwd(jax.jacfwd(flat))(theta).reshape(n, P * P)
    params = to_params(theta)
    design = experiment.design

    def inner(a, b):
        return experiment.noise.inner(a, b, mean, params, design)

    F = inner(J, J)
    S = inner(H, J).reshape(P, P, P)
    Q = inner(H, H).reshape(P, P, P, P)
    out = (0.5 * (F + F.T), S, Q)
    if order == 3:
        T = jax.jacfwd(jax.jacfwd(jax.jacfwd(flat)))(theta).reshape(n, P**3)
        out = (
            *out,
            inner(T, J).reshape((P,) * 4),
            inner(T, H).reshape((P,) * 5),
            inner(T, T).reshape((P,) * 6),
        )
    return out, mean


def dali_loglik(theta, like, names):
    """DALI log-likelihood at ``theta`` (P,); ``like = (theta0, tensors)``; 0 at ``theta0``."""
    del names
    theta0, tensors = like
    d = theta - theta0
    d2 = jnp.outer(d, d)
    ein = partial(jnp.einsum, precision=HIGHEST)
    F, S, Q = tensors[:3]
    value = (
        0.5 * ein("ij,ij", F, d2)
        + 0.5 * ein("ijk,ij,k", S, d2, d)
        + 0.125 * ein("ijkl,ij,kl", Q, d2, d2)
    )
    if len(tensors) == 6:
        T31, T32, T33 = tensors[3:]
        d3 = jnp.einsum("ij,k->ijk", d2, d)
        value = (
            value
            + ein("ijkl,ijk,l", T31, d3, d) / 6.0
            + ein("ijklm,ijk,lm", T32, d3, d2) / 12.0
            + ein("ijklmn,ijk,lmn", T33, d3, d3) / 72.0
        )
    return 0.0 - value  # not -value: -0.0 at the fiducial would print oddly


@jax.jit
def _dali_loglik_batch(theta, theta0, tensors):
    flat = theta.reshape(-1, theta.shape[-1])
    out = jax.vmap(lambda t: dali_loglik(t, (theta0, tensors), None))(flat)
    return out.reshape(theta.shape[:-1])


def _log_prior(theta, index, priors):
    total = 0.0
    for i, d in zip(index, priors, strict=True):
        x = theta[..., i]
        lp = d.log_prob(x)
        total = total + jnp.where(d.support(x), lp, -jnp.inf)
    return total


@partial(jax.jit, static_argnames=("index",))
def _log_prior_batch(theta, index, priors):
    return _log_prior(theta, index, priors)


def _given_priors(prior, names, fiducial):
    """``(indices, distributions)`` for the parameters that `prior` names (validated)."""
    if not prior:
        return (), ()
    unknown = [k for k in prior if k not in names]
    if unknown:
        raise ParameterError(
            f"`prior` names {unknown}, which are not DALI parameters {list(names)}."
        )
    given = tuple(n for n in names if n in prior)
    dists, _ = resolve_priors(prior, given, fiducial, {}, DEFAULT_BOUNDS_SIGMA)
    return tuple(names.index(n) for n in given), dists


# =======================================================================================
# Result object
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DALISamples(Record, SampleConversions):
    """Posterior draws from a DALI approximation (:meth:`DALI.sample`).

    `samples` (name -> all chains concatenated), `chains` (name -> ``(chains, draws)``),
    `sigma`, `mean`, `skewness`, `asymmetry` (of the central 68.27 % interval, as in
    :class:`CrossCheck`), `rhat`, `ess`, `divergences`, `priors`, `seconds`. Any
    divergence means NUTS missed part of the posterior and `sigma` is biased (usually low):
    sample again with a higher `target_accept` (0.95) and more warm-up.
    """

    names: tuple
    samples: dict
    chains: dict
    sigma: dict
    mean: dict
    skewness: dict
    asymmetry: dict
    rhat: dict
    ess: dict
    divergences: int
    priors: dict
    seconds: float

    __repr__ = Record.__repr__  # short: the samples are arrays of thousands of draws


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DALI(Record):
    """A DALI approximation of the likelihood around the fiducial (:func:`dali`).

    **Attributes:** `names`, `fiducial`, `order` (2: doublet, 3: triplet), `fisher` (the
    :class:`FisherMatrix`, the order-1 term), `tensors` (dict: ``"F"`` (P, P), ``"S"``
    (P, P, P) ``= μ,ij·μ,k``, ``"Q"`` (P, P, P, P) ``= μ,ij·μ,kl``, and for the triplet
    ``"T31"``, ``"T32"``, ``"T33"`` ``= μ,ijk·μ,l``, ``μ,ijk·μ,lm``, ``μ,ijk·μ,lmn``), and
    `prior` (name -> (low, high) or numpyro distribution, as given).

    Methods: :meth:`log_likelihood`, :meth:`log_posterior`, :meth:`sample` (NUTS),
    ``plot()``, ``summary()``. For ``μ = a² x`` at ``x = 1, 2, 3``, ``a = 1`` and unit noise,
    ``μ,a = μ,aa = 2x``, so ``F = S = Q = Σ 4x² = 56``; the model is quadratic in ``a``, so
    the doublet ``−½FΔ² − ½SΔ³ − ⅛QΔ⁴`` is the exact log-likelihood
    ``−½ Σ x²(a² − 1)²`` (at ``a = 2``: −63, where the Fisher term alone gives −28):

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] ** 2 * x, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> D = ff.dali(exp, {"a": 1.0})
    >>> D
    DALI(names=['a'], order=2)
    >>> {k: (v.shape, round(float(v.ravel()[0]), 6)) for k, v in D.tensors.items()}
    {'F': ((1, 1), 56.0), 'S': ((1, 1, 1), 56.0), 'Q': ((1, 1, 1, 1), 56.0)}
    >>> round(D.log_likelihood({"a": 2.0}), 6)
    -63.0
    >>> round(D.fisher.sigma()["a"], 6)            # 1/√56
    0.133631
    ```
    """

    names: tuple
    fiducial: dict
    order: int
    fisher: FisherMatrix
    tensors: dict
    prior: dict | None = None
    #: Internal: (indices, numpy distributions) of the parameters that `prior` names.
    _prior_terms: tuple = dataclasses.field(default=((), ()), repr=False)

    @property
    def prior_terms(self) -> tuple:
        """Internal: ``(indices, distributions)`` of the parameters that `prior` names."""
        return self._prior_terms

    def _theta_array(self, theta):
        if isinstance(theta, dict):
            missing = [n for n in self.names if n not in theta]
            if missing:
                raise ParameterError(
                    f"theta is missing parameters {missing}; DALI parameters: {list(self.names)}."
                )
            return jnp.stack([jnp.asarray(theta[n]) for n in self.names], axis=-1)
        arr = jnp.asarray(theta)
        if arr.ndim == 0 or arr.shape[-1] != len(self.names):
            raise InputError(
                f"theta must be a dict name -> value or an array whose last axis has "
                f"{len(self.names)} entries {list(self.names)}; received shape "
                f"{tuple(arr.shape)}."
            )
        return arr

    def _tensor_tuple(self):
        return tuple(jnp.asarray(self.tensors[k]) for k in TENSORS[self.order])

    def _evaluate(self, theta, with_prior):
        traced = isinstance(theta, jax.core.Tracer) or any(
            isinstance(v, jax.core.Tracer)
            for v in (theta.values() if isinstance(theta, dict) else [])
        )

        def compute():
            th = self._theta_array(theta)
            th = th.astype(jnp.result_type(th.dtype, jnp.float32))
            theta0 = jnp.asarray([self.fiducial[n] for n in self.names])
            value = _dali_loglik_batch(th, theta0, self._tensor_tuple())
            index, priors = self._prior_terms
            if with_prior and index:
                value = value + _log_prior_batch(th, index, priors)
            return value

        if traced:
            return compute()
        with float64():
            out = np.asarray(compute(), dtype=np.float64)
        return float(out) if out.ndim == 0 else out

    def log_likelihood(self, theta):
        """The DALI log-likelihood (0 at the fiducial). Jittable.

        `theta`: dict name -> value (scalars or arrays of one shape) or an array
        ``(..., P)``. Returns a float, an array of the batch shape, or a JAX value when
        called under a JAX transformation.
        """
        return self._evaluate(theta, with_prior=False)

    def log_posterior(self, theta):
        """DALI log-likelihood plus the log prior (if a `prior` was given). Jittable.

        Without a prior the posterior is taken flat (improper) and equals
        :meth:`log_likelihood`; with bounds it is ``-inf`` outside them.

        ```python
        >>> import jax, jax.numpy as jnp, fisherforecast as ff
        >>> exp = ff.Experiment(lambda p, x: p["a"] * x, ff.Gaussian(sigma=1.0),
        ...                     design=jnp.arange(1.0, 4.0))
        >>> D = ff.dali(exp, {"a": 1.0})
        >>> round(D.log_posterior({"a": 1.5}), 6)   # -½ F Δ² = -½·14·0.25
        -1.75
        ```
        """
        return self._evaluate(theta, with_prior=True)

    def sample(
        self,
        *,
        prior=None,
        num_warmup=500,
        num_samples=1000,
        num_chains=1,
        seed=0,
        chain_method="sequential",
        bounds_sigma=DEFAULT_BOUNDS_SIGMA,
        target_accept=TARGET_ACCEPT,
        dense_mass=False,
        max_tree_depth=10,
    ) -> DALISamples:
        """Draw from the DALI posterior with numpyro NUTS (Fisher-whitened, as crosscheck).

        `prior` (default: the one given to :func:`dali`) maps names to ``(low, high)`` or
        numpyro distributions; parameters without one get a flat prior on fiducial ±
        `bounds_sigma` σ_Fisher and a warning (the DALI posterior may be improper without
        bounds). The sampler settings are those of :func:`ff.crosscheck` (`target_accept`
        0.9 by default). Returns a :class:`DALISamples`.
        """
        check_sampler_settings(
            num_warmup, num_samples, num_chains, chain_method, target_accept, max_tree_depth
        )
        seed = check_seed(seed)
        prior = self.prior if prior is None else prior
        theta0 = np.array([self.fiducial[n] for n in self.names])
        with float64():
            sampler = prepare_sampler(
                self.fisher, self.fiducial, prior, bounds_sigma, who="DALI.sample"
            )
            priors, v0, L = sampler.priors, sampler.v0, sampler.L
            like = (jnp.asarray(theta0), self._tensor_tuple())
            run = run_nuts(
                dali_loglik,
                like,
                self.names,
                priors,
                v0,
                L,
                rng_key=jax.random.PRNGKey(seed),
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=num_chains,
                chain_method=chain_method,
                target_accept=target_accept,
                dense_mass=dense_mass,
                max_tree_depth=max_tree_depth,
            )
            prior_text = {n: describe_prior(d) for n, d in zip(self.names, priors, strict=True)}
        stats = chain_statistics(run.theta)
        C, S, _ = run.theta.shape

        def d(arr):
            return {n: float(v) for n, v in zip(self.names, arr, strict=True)}

        return DALISamples(
            names=self.names,
            samples={n: run.theta[:, :, i].reshape(C * S) for i, n in enumerate(self.names)},
            chains={n: run.theta[:, :, i] for i, n in enumerate(self.names)},
            sigma=d(stats["sigma"]),
            mean=d(stats["mean"]),
            skewness=d(stats["skewness"]),
            asymmetry=d(stats["asymmetry"]),
            rhat=d(stats["rhat"]),
            ess=d(stats["ess"]),
            divergences=int(np.sum(run.diverging)),
            priors=prior_text,
            seconds=float(run.seconds),
        )

    def plot(self, samples=None, **kwargs):
        """Corner plot of DALI samples (drawn with defaults if not given) with the Fisher
        ellipses; keyword arguments go to ``ff.plot.corner``."""
        from .. import plot

        if samples is None:
            samples = self.sample()
        label = {2: "DALI doublet", 3: "DALI triplet"}[self.order]
        return plot.corner({label: samples, "Fisher": self.fisher}, **kwargs)

    def summary(self) -> str:
        """Fisher σ and the size of the higher-order terms at the 1σ Fisher point."""
        try:
            sig = self.fisher.sigma()
        except SingularFisherError:
            sig = {n: math.inf for n in self.names}
        lines = [
            f"DALI {'doublet' if self.order == 2 else 'triplet'} around {self.fiducial}",
            f"{'parameter':<12}{'sigma_fisher':>14}{'lnL(+1σ)':>12}{'lnL(-1σ)':>12}{'Fisher':>10}",
        ]
        for i, n in enumerate(self.names):
            if not math.isfinite(sig[n]):
                lines.append(f"{n:<12}{'inf':>14}")
                continue
            step = np.zeros(len(self.names))
            step[i] = sig[n]
            th0 = np.array([self.fiducial[m] for m in self.names])
            up = self.log_likelihood(th0 + step)
            down = self.log_likelihood(th0 - step)
            fisher_value = -0.5 * sig[n] ** 2 * self.tensors["F"][i, i]
            lines.append(f"{n:<12}{sig[n]:>14.5g}{up:>12.4f}{down:>12.4f}{fisher_value:>10.4f}")
        lines.append(
            "(log-likelihood when one parameter moves by its marginal σ, the others "
            "held fixed; unequal ±1σ values show the non-Gaussianity)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain-Python view: names, fiducial, order, the Fisher matrix and the tensors (the
        prior, which may hold numpyro distributions, is left out)."""
        out = super().to_dict()
        del out["prior"]
        return out

    def __repr__(self):
        return f"DALI(names={list(self.names)}, order={self.order})"


def dali(experiment, fiducial, order=2, *, params=None, prior=None) -> DALI:
    """DALI approximation of the likelihood: the Fisher matrix plus higher derivatives.

    See the module docstring for the formulae (Sellentin, Quartin & Amendola 2014;
    Sellentin 2015). The expansion is around the fiducial with noise-free data, the
    posterior a Fisher forecast describes.

    **Supported noise models:** ``ff.Gaussian`` with a parameter-independent ``sigma`` or
    ``cov``, and ``ff.PSD`` (stationary Gaussian noise, complex data). The DALI expansion
    for parameter-dependent covariances and Poisson counts is not implemented: use
    :func:`ff.crosscheck`, which samples the full likelihood.

    **Arguments:**

    - `experiment`: an :class:`Experiment` or a list of independent ones (their tensors
      add).
    - `fiducial`: dict name -> value.
    - `order`: 2 (doublet: second derivatives of the mean, tensors up to P⁴ entries) or 3
      (triplet: third derivatives, tensors up to P⁶ entries).
    - `params`: the parameters to vary (default: all).
    - `prior`: optional dict name -> ``(low, high)`` or numpyro distribution, used by
      :meth:`DALI.log_posterior` and :meth:`DALI.sample`.

    **Returns:** a :class:`DALI` with `.log_posterior(θ)` (jittable), `.sample(...)`
    (numpyro NUTS), `.plot()`, `.summary()` and `.tensors`.

    **Raises:** `NotImplementedError` for an unsupported noise model, `InputError` (a
    ValueError) for an `order` other than 2 or 3 or tensors too large to store,
    `NonFiniteError` for NaN derivatives.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
    ...                     ff.Gaussian(sigma=0.1), design=jnp.linspace(0, 3, 10))
    >>> D = ff.dali(exp, {"A": 1.0, "k": 0.5})
    >>> D.tensors["S"].shape, D.log_posterior({"A": 1.0, "k": 0.5})
    ((2, 2, 2), 0.0)
    ```
    """
    experiments = as_experiments(experiment)
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order not in (2, 3):
        raise InputError(
            f"`order` must be 2 (doublet) or 3 (triplet), as an int; received "
            f"{quote(order)} of type {type(order).__name__}."
        )
    order = int(order)
    for exp in experiments:
        _check_supported(exp)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    P = len(names)
    if P ** (2 * order) > MAX_TENSOR_ENTRIES:
        raise InputError(
            f"a DALI {'doublet' if order == 2 else 'triplet'} with {P} parameters needs a "
            f"tensor of {P}^{2 * order} = {P ** (2 * order):.3g} entries; the limit is "
            f"{MAX_TENSOR_ENTRIES:.3g}. Use fewer parameters (params=[...]) or order=2."
        )
    if prior is not None and not isinstance(prior, dict):
        raise TypeError(f"`prior` must be a dict; received {quote(prior)}.")
    totals = None
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        # The Fisher matrix comes from the one checked evaluation path (its errors name the
        # non-finite outputs and parameters, and quote a model's run-time error); the
        # higher tensors below only add the derivatives DALI needs beyond it.
        checked = evaluate_checked(experiments, fid64, names, "forward").fisher
        for exp in experiments:
            tensors, mean = dali_tensors(exp, fid64, names, order)
            tensors = [np.asarray(t, dtype=np.float64) for t in tensors]
            bad = [
                k
                for k, t in zip(TENSORS[order], tensors, strict=True)
                if not np.all(np.isfinite(t))
            ]
            if bad or not np.all(np.isfinite(np.asarray(mean))):
                raise NonFiniteError(
                    f"DALI tensors {bad} of {exp.label} contain NaN/inf: the model "
                    "or its higher derivatives are not finite at the fiducial."
                )
            totals = (
                tensors if totals is None else [a + b for a, b in zip(totals, tensors, strict=True)]
            )
    assert totals is not None  # as_experiments returns a non-empty list
    label = "+".join(e.name for e in experiments if e.name) or None
    totals[0] = np.asarray(checked, dtype=np.float64)
    F = FisherMatrix(totals[0], names, fiducial={n: fid[n] for n in names}, name=label)
    with float64():
        prior_terms = _given_priors(prior, names, fid)  # validates names and bounds
    return DALI(
        names=names,
        fiducial={n: fid[n] for n in names},
        order=order,
        fisher=F,
        tensors=dict(zip(TENSORS[order], totals, strict=True)),
        prior=prior,
        _prior_terms=prior_terms,
    )
