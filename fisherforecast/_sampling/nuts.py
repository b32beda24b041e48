"""NUTS in Fisher-whitened coordinates, priors and sampler settings (shared by
:func:`ff.crosscheck` and :meth:`ff.DALI.sample`).

The sampler works in coordinates whitened by the Fisher matrix (the microlux pattern):
each parameter is first mapped to an unconstrained coordinate ``v`` by the bijection of its
prior's support (a logit for a bounded flat prior), and then ``v = v₀ + L z`` with
``L = chol(cov_v)``, the Fisher(+prior) covariance carried into ``v`` at the fiducial.
NUTS samples ``z``, in which a Gaussian posterior is a unit normal: warm-up is short and the
step size is the same for every parameter, whatever their units.
"""

from __future__ import annotations

import collections
import math
import time
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, check_name_mapping
from .._errors import InputError, SingularFisherError, quote
from .._inverse import robust_inverse
from .._progress import progress_bar

#: Default half-width of the flat prior box, in Fisher σ, when no bounds are given.
DEFAULT_BOUNDS_SIGMA = 10.0
#: Chain methods that run in one process (no multiprocessing).
CHAIN_METHODS = ("sequential", "vectorized")
#: Default target acceptance probability of NUTS. numpyro's 0.8 leaves divergences on
#: curved posteriors (a banana, a cut degeneracy) that bias σ low with no warning from
#: R-hat or ESS; 0.9 costs a few more leapfrog steps per draw.
TARGET_ACCEPT = 0.9


# =======================================================================================
# Priors
# =======================================================================================
def _is_distribution(obj) -> bool:
    try:
        from numpyro.distributions import Distribution
    except ImportError:  # pragma: no cover - numpyro is a dependency of this module
        return False
    return isinstance(obj, Distribution)


def resolve_priors(prior, names, fiducial, sigma, bounds_sigma):
    """One numpyro distribution per sampled name, and the names that got default bounds.

    `prior` maps a name to ``(low, high)`` (flat within the bounds) or to a numpyro
    distribution. Names without an entry get a flat prior on
    ``fiducial ± bounds_sigma · σ_Fisher``.
    """
    import numpyro.distributions as dist

    prior = check_name_mapping(
        prior,
        names,
        "prior",
        "name -> (low, high) or name -> numpyro distribution",
        "sampled parameters",
    )
    if not (
        isinstance(bounds_sigma, int | float) and bounds_sigma > 0 and math.isfinite(bounds_sigma)
    ):
        raise InputError(f"`bounds_sigma` must be a positive number; received {bounds_sigma!r}.")
    dists, defaulted = [], []
    for n in names:
        spec = prior.get(n)
        x0 = fiducial[n]
        if spec is None:
            s = sigma[n]
            if not math.isfinite(s):
                raise InputError(
                    f"parameter {n!r} is not constrained by the Fisher matrix (σ = inf), so no "
                    f"default prior range can be derived for it. Give `prior={{{n!r}: (low, "
                    "high)}}` or a numpyro distribution."
                )
            low, high = x0 - bounds_sigma * s, x0 + bounds_sigma * s
            dists.append(dist.Uniform(np.float64(low), np.float64(high)))
            defaulted.append(n)
        elif _is_distribution(spec):
            if spec.batch_shape != () or spec.event_shape != ():
                raise InputError(
                    f"prior[{n!r}] must be a scalar distribution; received {spec!r} with "
                    f"batch_shape {spec.batch_shape} and event_shape {spec.event_shape}."
                )
            d = jax.tree_util.tree_map(
                lambda x: (
                    np.asarray(x, np.float64)
                    if np.issubdtype(np.asarray(x).dtype, np.floating)
                    else x
                ),
                spec,
            )
            lp = float(d.log_prob(jnp.float64(x0)))
            if not math.isfinite(lp):
                raise InputError(
                    f"prior[{n!r}] = {spec!r} has zero density at the fiducial value {x0!r}; "
                    "the sampler starts there, so the prior must contain it."
                )
            dists.append(d)
        else:
            try:
                low, high = (float(v) for v in spec)
            except (TypeError, ValueError):
                raise TypeError(
                    f"prior[{n!r}] must be a pair (low, high) or a numpyro distribution; "
                    f"received {quote(spec)}."
                ) from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise InputError(
                    f"prior[{n!r}] must be finite bounds with low < high; received {spec!r}."
                )
            if not low < x0 < high:
                raise InputError(
                    f"the fiducial {n} = {x0!r} lies outside its prior bounds {spec!r}; the "
                    "sampler starts at the fiducial, so it must lie strictly inside."
                )
            dists.append(dist.Uniform(np.float64(low), np.float64(high)))
    return tuple(dists), defaulted


def _prior_precision(d) -> float:
    """1/variance of a prior (used only to precondition the sampler); 0 when infinite."""
    try:
        var = float(d.variance)
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return 0.0
    return 1.0 / var if math.isfinite(var) and var > 0 else 0.0


def whitening(fisher_matrix, theta0, priors, names):
    """``(v0, L)``: unconstrained fiducial and the Cholesky factor of the covariance in ``v``.

    The preconditioning precision is ``F + diag(1/prior variance)``, so that a prior makes
    the sampler usable even where the Fisher matrix alone is singular.
    """
    from numpyro.distributions.transforms import biject_to

    P = len(names)
    precision = np.array(fisher_matrix, dtype=np.float64) + np.diag(
        [_prior_precision(d) for d in priors]
    )
    cov = robust_inverse(
        precision,
        names,
        dict(zip(names, theta0.tolist(), strict=True)),
        what="Fisher matrix plus prior precision",
    ).covariance
    v0, dtheta_dv = np.empty(P), np.empty(P)
    for i, d in enumerate(priors):
        t = biject_to(d.support)
        x = jnp.float64(theta0[i])
        v = t.inv(x)
        v0[i] = float(v)
        dtheta_dv[i] = math.exp(float(t.log_abs_det_jacobian(v, x)))
    cov_v = cov / np.outer(dtheta_dv, dtheta_dv)
    L = np.linalg.cholesky(0.5 * (cov_v + cov_v.T))
    return v0, L


def constrain(v, priors):
    """θ from the unconstrained ``v``, and the log prior density in ``v`` (with Jacobian)."""
    from numpyro.distributions.transforms import biject_to

    thetas, logp = [], 0.0
    for i, d in enumerate(priors):
        t = biject_to(d.support)
        th = t(v[i])
        logp = logp + d.log_prob(th) + t.log_abs_det_jacobian(v[i], th)
        thetas.append(th)
    return jnp.stack(thetas), logp


# =======================================================================================
# NUTS in whitened coordinates (shared with DALI)
# =======================================================================================
def _posterior_model(args, *, names, loglik_fn):
    import numpyro
    import numpyro.distributions as dist

    v0, L, priors, like = args
    z = numpyro.sample(
        "_whitened", dist.ImproperUniform(dist.constraints.real_vector, (), (len(names),))
    )
    v = v0 + L @ z
    theta, log_prior = constrain(v, priors)
    numpyro.deterministic("_theta", theta)
    numpyro.factor("_log_prior", log_prior)
    numpyro.factor("_log_likelihood", loglik_fn(theta, like, names))


class _ProgressSink:
    """The tqdm bar of the run in progress, for the host callback of the compiled loop (a
    fixed module-level function, so that switching bars never recompiles)."""

    bar: Any = None


def _tick(steps) -> None:
    bar = _ProgressSink.bar
    if bar is not None:
        bar.update(int(np.sum(steps)))


def _ticker(enabled: bool, total_steps: int):
    """``tick(i)``: report progress every ~1 % of a chain's iterations (``i`` the iteration
    index); a no-op, and nothing in the compiled program, when `enabled` is False."""
    every = max(1, total_steps // 100)

    def tick(i):
        if not enabled:
            return
        jax.lax.cond(
            (i + 1) % every == 0,
            lambda: jax.debug.callback(_tick, jnp.int32(every)),
            lambda: None,
        )

    return tick


@partial(
    jax.jit,
    static_argnames=(
        "names",
        "loglik_fn",
        "num_warmup",
        "num_samples",
        "num_chains",
        "chain_method",
        "target_accept",
        "dense_mass",
        "max_tree_depth",
        "progress",
    ),
)
def _nuts(
    args,
    rng_key,
    *,
    names,
    loglik_fn,
    num_warmup,
    num_samples,
    num_chains,
    chain_method,
    target_accept,
    dense_mass,
    max_tree_depth,
    progress=False,
):
    """Warm-up and sampling of every chain in one compiled function.

    numpyro's functional NUTS (``hmc(potential_fn, algo="NUTS")``) on the potential energy of
    :func:`_posterior_model`; warm-up (step size and mass matrix adaptation) happens inside
    ``sample_kernel`` during the first `num_warmup` iterations. Compiling the whole run at
    module level means a second call with the same shapes does not recompile (``MCMC.run``
    builds a fresh jitted loop on every call). With `progress`, a host callback reports
    every ~1 % of the iterations to the bar in :class:`_ProgressSink`.
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import potential_energy

    v0, L, priors, _ = args
    model = partial(_posterior_model, names=names, loglik_fn=loglik_fn)

    def potential_fn(z):
        return potential_energy(model, (args,), {}, {"_whitened": z})

    init_kernel, sample_kernel = hmc(potential_fn=potential_fn, algo="NUTS")
    P = len(names)
    tick = _ticker(progress, num_warmup + num_samples)

    def chain(key):
        state = init_kernel(
            jnp.zeros(P, dtype=v0.dtype),
            num_warmup,
            target_accept_prob=target_accept,
            dense_mass=dense_mass,
            max_tree_depth=max_tree_depth,
            trajectory_length=None,  # pyright: ignore[reportArgumentType]  # None: NUTS
            rng_key=key,
        )

        def warm(i, s):
            tick(i)
            return sample_kernel(s)

        state = jax.lax.fori_loop(0, num_warmup, warm, state)

        def step(s, i):
            tick(num_warmup + i)
            s = sample_kernel(s)
            return s, (s.z, s.diverging, s.num_steps)

        _, (zs, diverging, steps) = jax.lax.scan(step, state, jnp.arange(num_samples))
        theta = jax.vmap(lambda z: constrain(v0 + L @ z, priors)[0])(zs)
        return theta, diverging, steps

    keys = jax.random.split(rng_key, num_chains)
    if chain_method == "vectorized":
        return jax.vmap(chain)(keys)
    return jax.lax.map(chain, keys)


def check_sampler_settings(
    num_warmup, num_samples, num_chains, chain_method, target_accept, max_tree_depth
) -> None:
    """The NUTS settings shared by :func:`ff.crosscheck` and :meth:`ff.DALI.sample`, or an
    :class:`InputError` naming the one at fault.

    ```python
    >>> from fisherforecast._sampling.nuts import check_sampler_settings
    >>> check_sampler_settings(500, 1000, 1, "vectorized", 0.9, 10)
    >>> check_sampler_settings(500, 2, 1, "sequential", 0.9, 10)
    Traceback (most recent call last):
    ...
    fisherforecast._errors.InputError: `num_samples` must be an integer >= 4; received 2.
    ```
    """
    for name, value, least in (
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 4),
        ("num_chains", num_chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
    ):
        check_int(value, name, least)
    if chain_method not in CHAIN_METHODS:
        raise InputError(
            f"`chain_method` must be one of {CHAIN_METHODS} (no multiprocessing is used); "
            f"received {chain_method!r}."
        )
    if not (isinstance(target_accept, float) and 0 < target_accept < 1):
        raise InputError(f"`target_accept` must be a float in (0, 1); received {target_accept!r}.")


class NutsRun(collections.namedtuple("NutsRun", "theta diverging num_steps seconds")):
    """Draws ``theta (chains, draws, P)``, divergences and leapfrog steps per draw."""


def run_nuts(
    loglik_fn,
    like,
    names,
    priors,
    v0,
    L,
    *,
    rng_key,
    num_warmup,
    num_samples,
    num_chains,
    chain_method="sequential",
    target_accept=TARGET_ACCEPT,
    dense_mass=False,
    max_tree_depth=10,
    progress=False,
    desc="NUTS",
) -> NutsRun:
    """Sample the posterior ``exp(loglik_fn(θ, like, names)) · prior(θ)`` with NUTS.

    Call under float64. Every chain starts at the fiducial (``z = 0``). With `progress`, a
    tqdm bar labelled `desc` counts the iterations (warm-up and draws; of all chains, or of
    the lockstep when they are vectorized), after a line with the cost; the run with a bar
    is its own compiled program.
    """
    start = time.perf_counter()
    args = (jnp.asarray(v0, jnp.float64), jnp.asarray(L, jnp.float64), priors, like)
    # Vectorized chains advance in lockstep: one host callback per step serves all of them,
    # so the bar counts the lockstep iterations; sequential chains count one after another.
    per_chain = int(num_warmup) + int(num_samples)
    total = per_chain if chain_method == "vectorized" else int(num_chains) * per_chain
    estimate = (
        f"{num_chains} chain(s) × ({num_warmup} warm-up + {num_samples} draws) of NUTS over "
        f"{len(names)} parameters, up to {2 ** int(max_tree_depth) - 1} likelihood gradients "
        "per iteration; a first call compiles the whole run first (no bar movement then)"
    )
    with progress_bar(bool(progress), total, desc, "it", estimate) as bar:
        _ProgressSink.bar = bar if progress else None
        try:
            theta, diverging, steps = _nuts(
                args,
                rng_key,
                names=tuple(names),
                loglik_fn=loglik_fn,
                num_warmup=int(num_warmup),
                num_samples=int(num_samples),
                num_chains=int(num_chains),
                chain_method=chain_method,
                target_accept=float(target_accept),
                dense_mass=bool(dense_mass),
                max_tree_depth=int(max_tree_depth),
                progress=bool(progress),
            )
            theta = np.asarray(theta, dtype=np.float64)
            diverging, steps = np.asarray(diverging), np.asarray(steps)
        finally:
            _ProgressSink.bar = None
    return NutsRun(theta, diverging, steps, time.perf_counter() - start)


def describe_prior(d) -> str:
    import numpyro.distributions as dist

    if isinstance(d, dist.Uniform):
        # numpyro's inferred attribute types are too wide for float()
        low, high = float(d.low), float(d.high)  # pyright: ignore[reportArgumentType]
        return f"flat on [{low:.6g}, {high:.6g}]"
    return repr(d)


class Sampler(NamedTuple):
    """What NUTS needs besides the likelihood: the prior distributions, the names that got
    default bounds, the whitening ``(v0, L)`` and the Fisher σ (``inf`` where singular)."""

    priors: tuple
    defaulted: tuple
    v0: np.ndarray
    L: np.ndarray
    sigma: dict


def prepare_sampler(fisher_matrix, fiducial, prior, bounds_sigma, *, who: str) -> Sampler:
    """Priors and Fisher whitening for sampling around ``fiducial``. Call under float64.

    ``fisher_matrix`` is a :class:`FisherMatrix` over the sampled names. Names without a
    prior get a flat one on fiducial ± ``bounds_sigma`` σ_Fisher and a ``UserWarning``
    that starts with ``who``.

    ```python
    >>> import jax, numpy as np, fisherforecast as ff
    >>> from fisherforecast._sampling.nuts import prepare_sampler
    >>> F = ff.FisherMatrix(np.diag([4.0, 1.0]), ["a", "b"])
    >>> with jax.enable_x64(True):
    ...     s = prepare_sampler(F, {"a": 0.0, "b": 1.0}, {"a": (-5, 5), "b": (0, 4)}, 10.0,
    ...                         who="example")
    >>> s.sigma, s.defaulted
    ({'a': 0.5, 'b': 1.0}, ())
    >>> describe_prior(s.priors[1])
    'flat on [0, 4]'
    ```
    """
    names = tuple(fisher_matrix.names)
    try:
        sigma = fisher_matrix.sigma()
    except SingularFisherError:
        sigma = {n: math.inf for n in names}
    priors, defaulted = resolve_priors(prior, names, fiducial, sigma, bounds_sigma)
    if defaulted:
        warnings.warn(
            f"{who}: no prior bounds for {defaulted}; using flat priors on fiducial ± "
            f"{bounds_sigma:g} σ_Fisher. Pass prior={{name: (low, high)}} to set them.",
            UserWarning,
            stacklevel=3,
        )
    theta0 = np.array([fiducial[n] for n in names], dtype=np.float64)
    v0, L = whitening(fisher_matrix.matrix, theta0, priors, names)
    return Sampler(priors, tuple(defaulted), v0, L, dict(sigma))
