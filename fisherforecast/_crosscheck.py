"""Beyond the Gaussian picture: an HMC cross-check of a Fisher forecast, and coverage.

A Fisher matrix is the Gaussian (Laplace) approximation of the likelihood at the fiducial.
:func:`crosscheck` samples the full posterior of the same :class:`Experiment` with NUTS
(numpyro) and compares it with the Fisher prediction; :func:`coverage` checks the
frequentist calibration of the Fisher intervals with simulated data and batched
maximum-likelihood fits (optimistix).

Both reuse the experiment's noise model for the likelihood
(``noise.log_likelihood``) and the simulations (``noise.simulate``), so every noise model
(Gaussian with fixed or parameter-dependent covariance, Poisson, PSD) works without any
user code. See ``docs/crosscheck.md`` for the method and the tolerances.

The sampler works in coordinates whitened by the Fisher matrix (the microlux pattern):
each parameter is first mapped to an unconstrained coordinate ``v`` by the bijection of its
prior's support (a logit for a bounded flat prior), and then ``v = v₀ + L z`` with
``L = chol(cov_v)``, the Fisher(+prior) covariance carried into ``v`` at the fiducial.
NUTS samples ``z``, in which a Gaussian posterior is a unit normal: warm-up is short and the
step size is the same for every parameter, whatever their units.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import warnings
from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_fiducial, check_names
from ._engine import call_model, params_from_vector, split
from ._errors import FisherError, SingularFisherError, quote
from ._fisher import fisher
from ._inverse import robust_inverse
from ._matrix import FisherMatrix
from ._x64 import float64

#: Default half-width of the flat prior box, in Fisher σ, when no bounds are given.
DEFAULT_BOUNDS_SIGMA = 10.0
#: Chain methods that run in one process (no multiprocessing).
CHAIN_METHODS = ("sequential", "vectorized")
#: Split-R-hat above which a chain is reported as not converged.
RHAT_MAX = 1.05
#: Default target acceptance probability of NUTS. numpyro's 0.8 leaves divergences on
#: curved posteriors (a banana, a cut degeneracy) that bias σ low with no warning from
#: R-hat or ESS; 0.9 costs a few more leapfrog steps per draw.
TARGET_ACCEPT = 0.9
#: A run is resolved when n_se standard errors of the σ ratio and of the mean shift stay
#: below RESOLUTION × their tolerance: a discrepancy that large would have been detected.
RESOLUTION = 3.0
#: A discrepancy still counts ("disagrees") when at most this fraction of the draws
#: diverged; agreement needs none.
DIVERGENCE_LIMIT = 0.01
#: Probabilities of the central 68.27 % interval used for the asymmetry of the errors.
_P_LOW, _P_HIGH = 0.5 * (1 - math.erf(1 / math.sqrt(2))), 0.5 * (1 + math.erf(1 / math.sqrt(2)))


def _asymmetry_se_constant() -> float:
    """√n × SE of the interval asymmetry ``(q₊ + q₋ − 2 q₅₀)/(q₊ − q₋)`` for Gaussian draws.

    From the asymptotic covariance of sample quantiles,
    ``Cov(q̂_p, q̂_r) = p(1 − r)/(n f(q_p) f(q_r))`` for ``p ≤ r``; the result is ≈ 1.13.
    """
    p = (_P_LOW, 0.5, _P_HIGH)
    z = (-1.0, 0.0, 1.0)
    f = [math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi) for v in z]
    w = (1.0, -2.0, 1.0)
    var = sum(
        w[i] * w[j] * min(p[i], p[j]) * (1 - max(p[i], p[j])) / (f[i] * f[j])
        for i in range(3)
        for j in range(3)
    )
    return math.sqrt(var) / 2.0


ASYMMETRY_SE = _asymmetry_se_constant()


# =======================================================================================
# Log-likelihoods (pure; the static `names` select the sampled parameters)
# =======================================================================================
def experiments_loglik(theta, like, names):
    """Σ log-likelihood of independent experiments at ``theta``; ``like = (exps, data, fixed)``.

    A NaN (a model evaluated outside its domain) counts as log-likelihood ``-inf``, which
    NUTS treats as a divergent point and rejects.
    """
    experiments, datas, fixed = like
    params = params_from_vector(theta, names, fixed)
    total = 0.0
    for exp, data in zip(experiments, datas, strict=True):
        mean = call_model(exp, params)
        total = total + exp.noise.log_likelihood(data, mean, params, exp.design)
    return jnp.where(jnp.isnan(total), -jnp.inf, total)


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

    if prior is None:
        prior = {}
    if not isinstance(prior, Mapping):
        raise TypeError(
            "`prior` must be a dict name -> (low, high) or name -> numpyro distribution; "
            f"received {quote(prior)}."
        )
    unknown = [k for k in prior if k not in names]
    if unknown:
        raise ValueError(
            f"`prior` names {unknown}, which are not sampled parameters {list(names)}."
        )
    if not (
        isinstance(bounds_sigma, int | float) and bounds_sigma > 0 and math.isfinite(bounds_sigma)
    ):
        raise ValueError(f"`bounds_sigma` must be a positive number; received {bounds_sigma!r}.")
    dists, defaulted = [], []
    for n in names:
        spec = prior.get(n)
        x0 = fiducial[n]
        if spec is None:
            s = sigma[n]
            if not math.isfinite(s):
                raise ValueError(
                    f"parameter {n!r} is not constrained by the Fisher matrix (σ = inf), so no "
                    f"default prior range can be derived for it. Give `prior={{{n!r}: (low, "
                    "high)}}` or a numpyro distribution."
                )
            low, high = x0 - bounds_sigma * s, x0 + bounds_sigma * s
            dists.append(dist.Uniform(np.float64(low), np.float64(high)))
            defaulted.append(n)
        elif _is_distribution(spec):
            if spec.batch_shape != () or spec.event_shape != ():
                raise ValueError(
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
                raise ValueError(
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
                raise ValueError(
                    f"prior[{n!r}] must be finite bounds with low < high; received {spec!r}."
                )
            if not low < x0 < high:
                raise ValueError(
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


def _constrain(v, priors):
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
    theta, log_prior = _constrain(v, priors)
    numpyro.deterministic("_theta", theta)
    numpyro.factor("_log_prior", log_prior)
    numpyro.factor("_log_likelihood", loglik_fn(theta, like, names))


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
):
    """Warm-up and sampling of every chain in one compiled function.

    numpyro's functional NUTS (``hmc(potential_fn, algo="NUTS")``) on the potential energy of
    :func:`_posterior_model`; warm-up (step size and mass matrix adaptation) happens inside
    ``sample_kernel`` during the first `num_warmup` iterations. Compiling the whole run at
    module level means a second call with the same shapes does not recompile (``MCMC.run``
    builds a fresh jitted loop on every call).
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import potential_energy

    v0, L, priors, _ = args
    model = partial(_posterior_model, names=names, loglik_fn=loglik_fn)

    def potential_fn(z):
        return potential_energy(model, (args,), {}, {"_whitened": z})

    init_kernel, sample_kernel = hmc(potential_fn=potential_fn, algo="NUTS")
    P = len(names)

    def chain(key):
        state = init_kernel(
            jnp.zeros(P, dtype=v0.dtype),
            num_warmup,
            target_accept_prob=target_accept,
            dense_mass=dense_mass,
            max_tree_depth=max_tree_depth,
            trajectory_length=None,
            rng_key=key,
        )
        state = jax.lax.fori_loop(0, num_warmup, lambda i, s: sample_kernel(s), state)

        def step(s, _):
            s = sample_kernel(s)
            return s, (s.z, s.diverging, s.num_steps)

        _, (zs, diverging, steps) = jax.lax.scan(step, state, None, length=num_samples)
        theta = jax.vmap(lambda z: _constrain(v0 + L @ z, priors)[0])(zs)
        return theta, diverging, steps

    keys = jax.random.split(rng_key, num_chains)
    if chain_method == "vectorized":
        return jax.vmap(chain)(keys)
    return jax.lax.map(chain, keys)


def check_sampler_settings(
    num_warmup, num_samples, num_chains, chain_method, target_accept, max_tree_depth
):
    for name, value, least in (
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 4),
        ("num_chains", num_chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"`{name}` must be an integer >= {least}; received {value!r}.")
    if chain_method not in CHAIN_METHODS:
        raise ValueError(
            f"`chain_method` must be one of {CHAIN_METHODS} (no multiprocessing is used); "
            f"received {chain_method!r}."
        )
    if not (isinstance(target_accept, float) and 0 < target_accept < 1):
        raise ValueError(f"`target_accept` must be a float in (0, 1); received {target_accept!r}.")


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
) -> NutsRun:
    """Sample the posterior ``exp(loglik_fn(θ, like, names)) · prior(θ)`` with NUTS.

    Call under float64. Every chain starts at the fiducial (``z = 0``).
    """
    start = time.perf_counter()
    args = (jnp.asarray(v0, jnp.float64), jnp.asarray(L, jnp.float64), priors, like)
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
    )
    theta = np.asarray(theta, dtype=np.float64)
    out = NutsRun(theta, np.asarray(diverging), np.asarray(steps), time.perf_counter() - start)
    return out


# =======================================================================================
# Maximum-likelihood fits (optimistix BFGS in whitened coordinates)
# =======================================================================================
def _negloglik_whitened(z, args, names, loglik_fn, bounded):
    like, v0, L, priors, offset = args
    v = v0 + L @ z
    theta = _constrain(v, priors)[0] if bounded else v
    value = -(loglik_fn(theta, like, names) - offset)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


def _fit_one(like, v0, L, priors, offset, *, names, loglik_fn, bounded, rtol, atol, max_steps):
    import optimistix as optx

    fn = partial(_negloglik_whitened, names=names, loglik_fn=loglik_fn, bounded=bounded)
    solver = optx.BFGS(rtol=rtol, atol=atol)
    sol = optx.minimise(
        fn,
        solver,
        jnp.zeros(len(names), jnp.float64),
        args=(like, v0, L, priors, offset),
        max_steps=max_steps,
        throw=False,
    )
    v = v0 + L @ sol.value
    theta = _constrain(v, priors)[0] if bounded else v
    ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(theta))
    return theta, ok, sol.stats["num_steps"]


@partial(jax.jit, static_argnames=("names", "loglik_fn", "bounded", "rtol", "atol", "max_steps"))
def _fit_jit(like, v0, L, priors, offset, *, names, loglik_fn, bounded, rtol, atol, max_steps):
    return _fit_one(
        like,
        v0,
        L,
        priors,
        offset,
        names=names,
        loglik_fn=loglik_fn,
        bounded=bounded,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )


@partial(jax.jit, static_argnames=("names", "rtol", "atol", "max_steps"))
def _fit_batch(experiments, datas, fixed, theta0, L, *, names, rtol, atol, max_steps):
    """MLE of every simulated dataset (leading axis of each array in `datas`), vmapped."""

    def one(data_tuple):
        like = (experiments, data_tuple, fixed)
        offset = experiments_loglik(theta0, like, names)
        return _fit_one(
            like,
            theta0,
            L,
            None,
            offset,
            names=names,
            loglik_fn=experiments_loglik,
            bounded=False,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
        )

    return jax.vmap(one)(datas)


# =======================================================================================
# Data
# =======================================================================================
@jax.jit
def _means(experiments, params):
    return tuple(call_model(exp, params) for exp in experiments)


@jax.jit
def _simulate(experiments, params, key):
    keys = jax.random.split(key, len(experiments))
    return tuple(
        exp.noise.simulate(k, call_model(exp, params), params, exp.design)
        for exp, k in zip(experiments, keys, strict=True)
    )


@partial(jax.jit, static_argnames=("n_sims",))
def _simulate_batch(experiments, params, key, n_sims):
    return jax.vmap(lambda k: _simulate(experiments, params, k))(jax.random.split(key, n_sims))


def _check_asimov(experiments, fid64, names, means):
    """Asimov data carry no information on noise parameters: refuse them there."""
    theta, to_params = split(fid64, names)
    for exp, mean in zip(experiments, means, strict=True):
        extra = exp.noise.covariance_information(
            jnp.asarray(mean), theta, to_params, exp.design, "forward"
        )
        if extra is not None and np.any(np.asarray(extra) != 0):
            raise ValueError(
                f"data='asimov' cannot test {exp.label}: its noise "
                f"({exp.noise!r}) depends on the sampled parameters, and noise-free data "
                "have zero scatter, so their likelihood peaks at zero noise instead of the "
                "fiducial. Use data='simulate' (one noisy realisation) or real data."
            )


def _check_data(data, means, experiments):
    """Validate user data against the model outputs; returns a tuple of float64 arrays."""
    many = len(experiments) > 1
    if many:
        if not isinstance(data, list | tuple) or len(data) != len(experiments):
            raise ValueError(
                f"`data` must be 'asimov', 'simulate' or a list of {len(experiments)} arrays "
                f"(one per experiment); received {quote(data)}."
            )
        items = list(data)
    else:
        items = [data]
    out = []
    for i, (d, m, exp) in enumerate(zip(items, means, experiments, strict=True)):
        what = f"`data[{i}]`" if many else "`data`"
        arr = np.asarray(d)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{what} must be a numeric array; received {quote(d)}.")
        if arr.shape != tuple(m.shape):
            raise ValueError(
                f"{what} has shape {arr.shape}, but the model of {exp.label} "
                f"returns shape {tuple(m.shape)} at the fiducial."
            )
        if np.iscomplexobj(arr):
            if not exp.noise.accepts_complex:
                raise ValueError(f"{what} is complex but the noise model {exp.noise!r} is real.")
            arr = arr.astype(np.complex128)
        else:
            arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{what} contains NaN or inf at {np.argwhere(~np.isfinite(arr))[:5].tolist()}."
            )
        out.append(arr)
    return tuple(out)


# =======================================================================================
# Statistics
# =======================================================================================
def chain_statistics(theta):
    """Per-parameter mean, σ, their Monte Carlo standard errors, skewness, R-hat and ESS.

    `theta` is ``(chains, draws, P)``. The standard error of σ uses the effective sample size
    of the squared deviations and the sample kurtosis,
    ``SE(σ̂) = sqrt(Var[(x - x̄)²] / ESS₂) / (2σ̂)``, which is ``σ/sqrt(2 ESS)`` for a Gaussian.
    """
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    C, S, P = theta.shape
    flat = theta.reshape(C * S, P)
    mean = flat.mean(0)
    dev = flat - mean
    var = dev.var(0, ddof=1)
    sigma = np.sqrt(var)
    sq = (theta - mean) ** 2
    ess = np.asarray(effective_sample_size(theta), dtype=np.float64)
    ess_sq = np.asarray(effective_sample_size(sq), dtype=np.float64)
    ess = np.clip(np.where(np.isfinite(ess), ess, 1.0), 1.0, None)
    ess_sq = np.clip(np.where(np.isfinite(ess_sq), ess_sq, 1.0), 1.0, None)
    se_mean = sigma / np.sqrt(ess)
    se_sigma = np.sqrt((dev**2).var(0, ddof=1) / ess_sq) / (2.0 * np.where(sigma > 0, sigma, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.mean(dev**3, 0) / np.where(sigma > 0, sigma, np.nan) ** 3
        lo, mid, hi = np.quantile(flat, [_P_LOW, 0.5, _P_HIGH], axis=0)
        asym = (hi + lo - 2 * mid) / (hi - lo)
    rhat = np.asarray(split_gelman_rubin(theta), dtype=np.float64) if S >= 4 else np.full(P, np.nan)
    return {
        "mean": mean,
        "sigma": sigma,
        "se_mean": se_mean,
        "se_sigma": se_sigma,
        "skewness": skew,
        "asymmetry": asym,
        "se_asymmetry": ASYMMETRY_SE / np.sqrt(ess),
        "interval": (lo, mid, hi),
        "ess": ess,
        "ess_sq": ess_sq,
        "rhat": rhat,
    }


def _fmt_table(header, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(
        f"{h:>{w}}" if i else f"{h:<{w}}"
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for r in rows:
        out.append(
            "  ".join(
                f"{c:>{w}}" if i else f"{c:<{w}}"
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out)


def _report_dict(report, **overrides) -> dict:
    """Fields of a report dataclass as plain Python; `overrides` replace given fields."""
    out = {}
    for f in dataclasses.fields(report):
        if f.name in overrides:
            out[f.name] = overrides[f.name]
            continue
        v = getattr(report, f.name)
        if f.name == "fisher":
            v = v.to_dict()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = {str(k): val for k, val in v.items()}
        out[f.name] = v
    return out


# =======================================================================================
# crosscheck
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False)
class CrossCheck:
    """Result of :func:`crosscheck`: Fisher prediction against the sampled posterior.

    **Attributes** (dicts are keyed by parameter name):

    - `names`, `fisher` (the :class:`FisherMatrix` at the fiducial), `fiducial`.
    - `samples`: posterior draws, all chains concatenated; `chains`: ``(chains, draws)``.
    - `sigma_fisher`, `sigma_hmc`, `mean_hmc`: marginal σ from ``F⁻¹`` and from the samples.
    - `reference`: the Fisher-predicted posterior centre: the fiducial for Asimov data, the
      maximum-likelihood point (within the prior) for simulated or real data.
    - `ratio` = σ_hmc / σ_fisher, `ratio_error` (its Monte Carlo standard error);
      `shift` = (mean_hmc − reference) / σ_fisher, `shift_error`; `skewness` (moment).
    - `rhat` (split R-hat), `ess` (effective sample size), `divergences`.
    - `asymmetry` (of the central 68.27 % interval, see :func:`crosscheck`) and its
      `asymmetry_error`; `interval`: name -> (q₁₆, q₅₀, q₈₄) of the samples.
    - `tolerance`: dict with `rtol`, `shift_tol`, `asym_tol`, `n_se`, `rhat_max`, `min_ess`.
    - `within_tolerance` (no significant, relevant discrepancy), `resolved` (Monte Carlo
      errors small enough and no divergent transitions), `converged`, `agrees` (all three)
      and `reasons` (in words);
      `verdict` is ``"agrees"``, ``"disagrees"`` or ``"inconclusive"``.
    - `priors` (name -> description), `defaulted_bounds`, `data_kind`, `data` (the data
      sampled against, one array per experiment), `seconds` (compile + sampling),
      `num_steps` (leapfrog steps, i.e. gradient evaluations, after warm-up).
    """

    names: tuple
    fisher: FisherMatrix
    fiducial: dict
    samples: dict
    chains: dict
    sigma_fisher: dict
    sigma_hmc: dict
    mean_hmc: dict
    reference: dict
    ratio: dict
    ratio_error: dict
    shift: dict
    shift_error: dict
    skewness: dict
    asymmetry: dict
    asymmetry_error: dict
    interval: dict
    rhat: dict
    ess: dict
    divergences: int
    tolerance: dict
    within_tolerance: bool
    resolved: bool
    converged: bool
    agrees: bool
    divergence_ok: bool
    reasons: tuple
    priors: dict
    defaulted_bounds: tuple
    data_kind: str
    seconds: float
    num_steps: int
    settings: dict
    data: tuple = ()

    def summary(self) -> str:
        """A table: Fisher σ, HMC σ, their ratio and the mean shift per parameter."""
        tol = self.tolerance
        head = [
            "parameter",
            "fiducial",
            "sigma_fisher",
            "sigma_hmc",
            "ratio",
            "shift/sigma",
            "asymmetry",
            "r_hat",
            "ess",
        ]
        rows = []
        for n in self.names:
            rows.append(
                [
                    n,
                    f"{self.fiducial[n]:.5g}",
                    f"{self.sigma_fisher[n]:.4g}",
                    f"{self.sigma_hmc[n]:.4g}",
                    f"{self.ratio[n]:.3f}±{self.ratio_error[n]:.3f}",
                    f"{self.shift[n]:+.3f}±{self.shift_error[n]:.3f}",
                    f"{self.asymmetry[n]:+.3f}±{self.asymmetry_error[n]:.3f}",
                    f"{self.rhat[n]:.3f}",
                    f"{self.ess[n]:.0f}",
                ]
            )
        verdict = {
            "agrees": "Fisher AGREES with the posterior",
            "disagrees": "Fisher DISAGREES with the posterior",
            "inconclusive": "INCONCLUSIVE (see below)",
        }[self.verdict]
        lines = [
            f"HMC cross-check ({self.data_kind} data, {self.settings['num_chains']} chain(s) × "
            f"{self.settings['num_samples']} draws, {self.divergences} divergences, "
            f"{self.seconds:.1f} s): {verdict}",
            _fmt_table(head, rows),
            f"tolerance: |ratio - 1| <= max({tol['rtol']:g}, {tol['n_se']:g}·SE), "
            f"|shift| <= max({tol['shift_tol']:g}, {tol['n_se']:g}·SE), "
            f"|asymmetry| <= max({tol['asym_tol']:g}, {tol['n_se']:g}·SE); converged: "
            f"R-hat < {tol['rhat_max']:g} and ESS >= {tol['min_ess']:g}",
        ]
        lines += [f"- {r}" for r in self.reasons]
        if self.defaulted_bounds:
            lines.append(
                f"note: flat priors at fiducial ± {self.settings['bounds_sigma']:g} "
                f"σ_Fisher for {list(self.defaulted_bounds)} (no bounds given)"
            )
        return "\n".join(lines)

    @property
    def verdict(self) -> str:
        """``"agrees"``; ``"disagrees"`` (a significant, relevant discrepancy in converged
        chains with at most ``DIVERGENCE_LIMIT`` (1 %) of the draws divergent); or
        ``"inconclusive"`` (chains not converged, more divergences, any divergence when
        the numbers agree, or Monte Carlo errors too large to resolve a discrepancy of
        3 × the tolerance)."""
        if self.agrees:
            return "agrees"
        if self.converged and not self.within_tolerance and self.divergence_ok:
            return "disagrees"
        return "inconclusive"

    def to_dict(self) -> dict:
        """Plain-Python view (samples as lists)."""

        def data(v):
            return [
                np.asarray(a).tolist()
                if not np.iscomplexobj(a)
                else {"real": np.asarray(a).real.tolist(), "imag": np.asarray(a).imag.tolist()}
                for a in v
            ]

        samples = {k: np.asarray(a).tolist() for k, a in self.samples.items()}
        chains = {k: np.asarray(a).tolist() for k, a in self.chains.items()}
        return _report_dict(self, samples=samples, chains=chains, data=data(self.data))

    def plot(self, **kwargs):
        """Corner plot of the samples with the Fisher ellipses overlaid (``ff.plot.corner``)."""
        from . import plot

        return plot.corner(self, **kwargs)

    def __repr__(self):
        return (
            f"CrossCheck(names={list(self.names)}, agrees={self.agrees}, "
            f"converged={self.converged})"
        )


def describe_prior(d) -> str:
    import numpyro.distributions as dist

    if isinstance(d, dist.Uniform):
        return f"flat on [{float(d.low):.6g}, {float(d.high):.6g}]"
    return repr(d)


def crosscheck(
    experiment,
    fiducial,
    *,
    params=None,
    prior=None,
    data="asimov",
    num_warmup=500,
    num_samples=1000,
    num_chains=1,
    seed=0,
    chain_method="sequential",
    bounds_sigma=DEFAULT_BOUNDS_SIGMA,
    rtol=0.1,
    shift_tol=0.2,
    asym_tol=0.1,
    n_se=3.5,
    min_ess=100.0,
    target_accept=TARGET_ACCEPT,
    dense_mass=False,
    max_tree_depth=10,
    mode="forward",
) -> CrossCheck:
    """Check a Fisher forecast against the full posterior, sampled with NUTS.

    The likelihood is the experiment's own noise model (``noise.log_likelihood``), so every
    noise model works: Gaussian with fixed or parameter-dependent covariance, Poisson, PSD.
    NUTS (numpyro) starts at the fiducial and samples coordinates whitened by the Fisher
    covariance (see the module docstring), and the result compares the marginal σ and the
    posterior mean with the Fisher prediction.

    **Agreement.** For each parameter the samples give three numbers, each with its Monte
    Carlo standard error (SE) from the effective sample size (ESS):

    - the σ ratio ``σ_hmc/σ_fisher``, with ``SE(σ̂) ≈ σ/sqrt(2·ESS)`` (computed from the
      samples' kurtosis and the ESS of the squared deviations);
    - the mean shift ``(mean_hmc − reference)/σ_fisher``, with ``SE = σ̂/sqrt(ESS)``;
    - the asymmetry of the central 68.27 % interval, ``(q₈₄ + q₁₆ − 2 q₅₀)/(q₈₄ − q₁₆)``
      (0 for a Gaussian; 0.1 means errors of +22 %/−18 % around the median), with
      ``SE ≈ 1.13/sqrt(ESS)`` from the sampling distribution of Gaussian quantiles.

    A **discrepancy** is a deviation from the Gaussian value (1, 0, 0) that is both
    relevant, larger than its tolerance (`rtol` = 0.1: σ off by 10 %; `shift_tol` = 0.2:
    the mean moved by a fifth of σ; `asym_tol` = 0.1), and significant, larger than `n_se`
    standard errors (default 3.5):
    ``|ratio − 1| > max(rtol, n_se·SE)`` and likewise for the others. The result is

    - ``agrees`` when no parameter has a discrepancy, the chains converged (split R-hat <
      1.05 and ESS ≥ `min_ess`) and the run is *resolved*: ``n_se·SE ≤ 3 × tolerance`` for
      the σ ratio and the shift, so that a discrepancy three times the tolerance would
      have been detected;
    - ``disagrees`` when converged chains show a discrepancy and at most 1 % of the draws
      diverged;
    - ``inconclusive`` otherwise (`.verdict`; `.agrees` is True only for ``agrees``). A
      divergent transition means NUTS missed part of the posterior (on a banana it reports
      σ 25 % low with a small error bar), so any divergence rules out ``agrees``, and more
      than 1 % of the draws rule out ``disagrees`` too. `.reasons` gives the count and the
      settings to rerun with (a higher `target_accept`, more warm-up, several chains).

    **Arguments:**

    - `experiment`: an :class:`Experiment` or a list of independent ones.
    - `fiducial`: dict name -> value; the sampler starts here.
    - `params`: the parameters to sample (default: all); the others are held fixed.
    - `prior`: dict name -> ``(low, high)`` (flat within the bounds) or name -> numpyro
      distribution (e.g. ``dist.LogNormal(0, 1)``). Parameters without an entry get a flat
      prior on ``fiducial ± bounds_sigma · σ_Fisher`` (default ±10σ) and a warning: a flat
      prior on an unbounded range can make the posterior improper.
    - `data`: ``"asimov"`` (the noise-free model at the fiducial: the posterior the Fisher
      matrix describes; refused when the noise depends on a sampled parameter, since
      noise-free data carry no scatter), ``"simulate"`` (one noisy realisation from
      ``noise.simulate`` with `seed`) or an array in the model's output shape (a list of
      arrays for a list of experiments).
    - `num_warmup`, `num_samples`, `num_chains`, `seed`: NUTS settings; `chain_method` is
      ``"sequential"`` (default: chains one after the other) or ``"vectorized"`` (chains
      batched with ``vmap``). The whole run is one compiled function; a second call with
      the same shapes and settings does not recompile.
    - `rtol`, `shift_tol`, `asym_tol`, `n_se`, `min_ess`: the agreement tolerances above.
    - `target_accept` (default 0.9, above numpyro's 0.8), `dense_mass`, `max_tree_depth`:
      passed to numpyro's NUTS.
    - `mode`: Jacobian mode of the Fisher matrix, as in :func:`ff.fisher`.

    **Returns:** a :class:`CrossCheck` with `.samples`, `.sigma_fisher`, `.sigma_hmc`,
    `.ratio`, `.shift`, `.rhat`, `.ess`, `.agrees`, `.summary()`, `.plot()` and
    `.to_dict()`.

    **Raises:** `ParameterError` for unknown names, `ValueError` for bad settings, data of
    the wrong shape, a fiducial outside its prior or a parameter that the Fisher matrix does
    not constrain and that has no prior.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.1),
    ...                     design=jnp.linspace(0, 1, 20))
    >>> cc = ff.crosscheck(exp, {"a": 1.0, "b": 2.0}, prior={"a": (0, 2), "b": (1, 3)},
    ...                    num_warmup=200, num_samples=500)
    >>> cc.agrees
    True
    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_sampler_settings(
        num_warmup, num_samples, num_chains, chain_method, target_accept, max_tree_depth
    )
    for name, value in (
        ("rtol", rtol),
        ("shift_tol", shift_tol),
        ("asym_tol", asym_tol),
        ("n_se", n_se),
        ("min_ess", min_ess),
    ):
        if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
            raise ValueError(f"`{name}` must be a non-negative number; received {value!r}.")
    if isinstance(data, str) and data not in ("asimov", "simulate"):
        raise ValueError(f"`data` must be 'asimov', 'simulate' or an array; received {data!r}.")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an integer; received {seed!r}.")

    F = fisher(experiments, fid, params=names, mode=mode)
    try:
        sigma_fisher = F.sigma()
    except SingularFisherError:
        sigma_fisher = {n: math.inf for n in names}
    theta0 = np.array([fid[n] for n in names], dtype=np.float64)
    key_data, key_mcmc = jax.random.split(jax.random.PRNGKey(seed))

    with float64():
        fid64 = {k: jnp.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        means = jax.device_get(_means(tuple(experiments), fid64))
        if isinstance(data, str) and data == "asimov":
            _check_asimov(experiments, fid64, names, means)
            datas = tuple(np.asarray(m) for m in means)
            kind = "asimov"
        elif isinstance(data, str):
            datas = tuple(
                np.asarray(d)
                for d in jax.device_get(_simulate(tuple(experiments), fid64, key_data))
            )
            kind = "simulated"
        else:
            datas = _check_data(data, means, experiments)
            kind = "user"
        like = (tuple(experiments), datas, fixed)
        priors, defaulted = resolve_priors(prior, names, fid, sigma_fisher, bounds_sigma)
        if defaulted:
            warnings.warn(
                f"crosscheck: no prior bounds for {defaulted}; using flat priors on fiducial ± "
                f"{bounds_sigma:g} σ_Fisher. Pass prior={{name: (low, high)}} to set them.",
                UserWarning,
                stacklevel=2,
            )
        v0, L = whitening(F.matrix, theta0, priors, names)

        if kind == "asimov":
            reference = theta0.copy()
            ref_note = None
        else:
            offset = experiments_loglik(jnp.asarray(theta0), like, names)
            ref, ok, _ = _fit_jit(
                like,
                jnp.asarray(v0),
                jnp.asarray(L),
                priors,
                offset,
                names=names,
                loglik_fn=experiments_loglik,
                bounded=True,
                rtol=1e-10,
                atol=1e-10,
                max_steps=512,
            )
            if bool(ok):
                reference, ref_note = np.asarray(ref, dtype=np.float64), None
            else:
                reference = theta0.copy()
                ref_note = (
                    "the maximum-likelihood fit of the data failed; mean shifts are "
                    "measured from the fiducial instead"
                )

        run = run_nuts(
            experiments_loglik,
            like,
            names,
            priors,
            v0,
            L,
            rng_key=key_mcmc,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method=chain_method,
            target_accept=target_accept,
            dense_mass=dense_mass,
            max_tree_depth=max_tree_depth,
        )
        prior_text = {n: describe_prior(d) for n, d in zip(names, priors, strict=True)}

    return _compare(
        F,
        names,
        fid,
        run,
        datas,
        reference,
        ref_note,
        sigma_fisher,
        dict(
            rtol=float(rtol),
            shift_tol=float(shift_tol),
            asym_tol=float(asym_tol),
            n_se=float(n_se),
            rhat_max=RHAT_MAX,
            min_ess=float(min_ess),
        ),
        prior_text,
        tuple(defaulted),
        kind,
        dict(
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method=chain_method,
            seed=seed,
            bounds_sigma=float(bounds_sigma),
            target_accept=target_accept,
            dense_mass=dense_mass,
            max_tree_depth=max_tree_depth,
        ),
    )


def _divergence_note(n_div, n_draws, settings) -> str:
    """The reason given for a run with divergent transitions, with settings to try next."""
    target = settings.get("target_accept", TARGET_ACCEPT)
    warmup = int(settings.get("num_warmup", 500))
    chains = int(settings.get("num_chains", 1))
    advice = []
    if target < 0.99:
        advice.append(f"target_accept={0.95 if target < 0.95 else 0.99:g} (was {target:g})")
    advice.append(f"num_warmup={max(2 * warmup, 1000)} (was {warmup})")
    if chains < 4:
        advice.append(f"num_chains=4 (was {chains})")
    text = advice[0] if len(advice) == 1 else ", ".join(advice[:-1]) + " and " + advice[-1]
    if target >= 0.99:
        text += ", or reparametrise the model or narrow the prior around the problem region"
    return (
        f"{n_div} divergent transitions ({n_div / n_draws:.2%} of {n_draws} draws): NUTS "
        "could not integrate part of the posterior (a curved ridge, funnel or sharp "
        "edge), so σ_hmc, the mean and the intervals are biased by an amount the Monte "
        f"Carlo errors do not include; agreement cannot be certified. Rerun with {text}"
    )


def _compare(
    F,
    names,
    fid,
    run,
    datas,
    reference,
    ref_note,
    sigma_fisher,
    tol,
    prior_text,
    defaulted,
    kind,
    settings,
) -> CrossCheck:
    theta = run.theta
    stats = chain_statistics(theta)
    sf = np.array([sigma_fisher[n] for n in names])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = stats["sigma"] / sf
        ratio_err = stats["se_sigma"] / sf
        shift = (stats["mean"] - reference) / sf
        shift_err = stats["se_mean"] / sf
    # A discrepancy must be practically relevant (beyond the slack) AND statistically
    # significant (beyond n_se Monte Carlo standard errors).
    discrepancies, unresolved = [], []
    n_se = tol["n_se"]
    where = "fiducial" if kind == "asimov" else "best fit"
    for i, n in enumerate(names):
        if not math.isfinite(sf[i]):
            discrepancies.append(f"{n}: the Fisher matrix does not constrain it (σ_Fisher = inf)")
            continue
        bound = max(tol["rtol"], n_se * ratio_err[i])
        if not abs(ratio[i] - 1) <= bound:
            discrepancies.append(
                f"{n}: σ_hmc/σ_fisher = {ratio[i]:.3f} ± {ratio_err[i]:.3f}, "
                f"outside 1 ± {bound:.3f}"
            )
        bound = max(tol["shift_tol"], n_se * shift_err[i])
        if not abs(shift[i]) <= bound:
            discrepancies.append(
                f"{n}: posterior mean is {shift[i]:+.3f} ± {shift_err[i]:.3f} "
                f"σ_fisher from the {where} (allowed ±{bound:.3f})"
            )
        asym, asym_err = stats["asymmetry"][i], stats["se_asymmetry"][i]
        bound = max(tol["asym_tol"], n_se * asym_err)
        if not abs(asym) <= bound:
            lo, mid, hi = (v[i] for v in stats["interval"])
            discrepancies.append(
                f"{n}: asymmetric errors +{hi - mid:.4g}/-{mid - lo:.4g} "
                f"(asymmetry {asym:+.3f} ± {asym_err:.3f}, allowed "
                f"±{bound:.3f}); the Fisher interval is symmetric"
            )
        if (
            n_se * ratio_err[i] > RESOLUTION * tol["rtol"]
            or n_se * shift_err[i] > RESOLUTION * tol["shift_tol"]
        ):
            unresolved.append(n)
    bad_rhat = [n for n, r in zip(names, stats["rhat"], strict=True) if not r < tol["rhat_max"]]
    low_ess = [n for n, e in zip(names, stats["ess"], strict=True) if not e >= tol["min_ess"]]
    converged = not bad_rhat and not low_ess
    notes = [ref_note] if ref_note else []
    if bad_rhat:
        notes.append(
            f"not converged: split R-hat >= {tol['rhat_max']} for {bad_rhat} "
            "(run longer or more chains)"
        )
    if low_ess:
        notes.append(
            f"not converged: ESS < {tol['min_ess']:g} for {low_ess} (increase num_samples)"
        )
    if unresolved and not discrepancies:
        notes.append(
            f"Monte Carlo error too large for {unresolved}: a discrepancy of "
            f"{RESOLUTION:g} × the tolerance would go undetected (increase "
            "num_samples)"
        )
    n_div = int(np.sum(run.diverging))
    if n_div:
        notes.append(_divergence_note(n_div, run.diverging.size, settings))
    reasons = discrepancies + notes
    within = not discrepancies
    # Divergences mean NUTS skipped part of the posterior (typically a narrowing tail), so
    # σ_hmc and the mean are biased by an amount the ESS-based errors cannot see: agreement
    # cannot be certified. A discrepancy still stands when divergences are rare (≤
    # DIVERGENCE_LIMIT of the draws: a banana with one divergence in 4000 draws is flagged
    # rightly); with more, the run is unresolved whichever way it points.
    resolved = not unresolved and not n_div
    agrees = within and converged and resolved
    divergence_ok = n_div <= DIVERGENCE_LIMIT * run.diverging.size
    C, S, _ = theta.shape

    def d(arr):
        return {n: float(v) for n, v in zip(names, arr, strict=True)}

    return CrossCheck(
        names=tuple(names),
        fisher=F,
        fiducial={n: fid[n] for n in names},
        samples={n: theta[:, :, i].reshape(C * S) for i, n in enumerate(names)},
        chains={n: theta[:, :, i] for i, n in enumerate(names)},
        sigma_fisher=d(sf),
        sigma_hmc=d(stats["sigma"]),
        mean_hmc=d(stats["mean"]),
        reference=d(reference),
        ratio=d(ratio),
        ratio_error=d(ratio_err),
        shift=d(shift),
        shift_error=d(shift_err),
        skewness=d(stats["skewness"]),
        asymmetry=d(stats["asymmetry"]),
        asymmetry_error=d(stats["se_asymmetry"]),
        interval={n: tuple(float(v[i]) for v in stats["interval"]) for i, n in enumerate(names)},
        rhat=d(stats["rhat"]),
        ess=d(stats["ess"]),
        divergences=n_div,
        tolerance=tol,
        within_tolerance=bool(within),
        resolved=bool(resolved),
        converged=converged,
        agrees=bool(agrees),
        divergence_ok=bool(divergence_ok),
        reasons=tuple(reasons),
        priors=prior_text,
        defaulted_bounds=defaulted,
        data_kind=kind,
        seconds=float(run.seconds),
        num_steps=int(np.sum(run.num_steps)),
        settings=settings,
        data=tuple(datas),
    )


# =======================================================================================
# coverage
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False)
class Coverage:
    """Result of :func:`coverage`: frequentist calibration of the Fisher intervals.

    **Attributes** (dicts keyed by parameter name):

    - `names`, `fisher`, `fiducial`, `n_sims`, `n_ok` (successful fits), `failed`
      (boolean mask, one per simulation), `estimates` (``(n_sims, P)`` MLEs, NaN where the
      fit failed).
    - `levels`: the nominal probabilities; `coverage`: dict level -> dict name -> fraction
      of simulations whose interval ``θ̂ ± z·σ_Fisher`` contains the truth (``z`` the
      two-sided Gaussian quantile: 1 for 68.27 %, 2 for 95.45 %); `coverage_error`: dict
      level -> binomial standard error ``sqrt(p(1-p)/n_ok)`` at the nominal `p`.
    - `joint_coverage`: dict level -> fraction with ``Δθᵀ F Δθ ≤ χ²_P(level)``.
    - `scatter_ratio`: std(θ̂)/σ_Fisher (1 at the Cramér–Rao bound), `scatter_error`
      (``≈ 1/sqrt(2(n-1))``); `bias`: mean(θ̂ − θ₀)/σ_Fisher, `bias_error` (``1/sqrt(n)``).
    - `calibrated`: every coverage (per parameter and joint), scatter ratio and bias lies
      within `n_se` standard errors of its nominal value; `reasons` lists those that do not.
    """

    names: tuple
    fisher: FisherMatrix
    fiducial: dict
    n_sims: int
    n_ok: int
    failed: np.ndarray
    estimates: np.ndarray
    levels: tuple
    coverage: dict
    coverage_error: dict
    joint_coverage: dict
    joint_coverage_error: dict
    scatter_ratio: dict
    scatter_error: dict
    bias: dict
    bias_error: dict
    n_se: float
    calibrated: bool
    reasons: tuple
    seconds: float
    data: tuple | None = None

    def summary(self) -> str:
        """A table of coverage per level and parameter, scatter against the CRB and bias."""
        head = (
            ["parameter"]
            + [f"cover {lv:.2%}" for lv in self.levels]
            + ["std/sigma_F", "bias/sigma_F"]
        )
        rows = []
        for n in self.names:
            rows.append(
                [n]
                + [
                    f"{self.coverage[lv][n]:.3f}±{self.coverage_error[lv]:.3f}"
                    for lv in self.levels
                ]
                + [
                    f"{self.scatter_ratio[n]:.3f}±{self.scatter_error:.3f}",
                    f"{self.bias[n]:+.3f}±{self.bias_error:.3f}",
                ]
            )
        rows.append(
            ["(joint)"]
            + [
                f"{self.joint_coverage[lv]:.3f}±{self.joint_coverage_error[lv]:.3f}"
                for lv in self.levels
            ]
            + ["", ""]
        )
        lines = [
            f"Coverage of Fisher intervals: {self.n_ok} of {self.n_sims} fits succeeded "
            f"({self.seconds:.1f} s); "
            f"{'CALIBRATED' if self.calibrated else 'NOT CALIBRATED'} within "
            f"{self.n_se:g} standard errors",
            _fmt_table(head, rows),
        ]
        lines += [f"- {r}" for r in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain-Python view (the simulated data are left out)."""
        out = _report_dict(self)
        del out["data"]
        return out

    def plot(self, bins=30):
        """Histograms of the pulls ``(θ̂ − θ₀)/σ_Fisher`` against a unit Gaussian."""
        import matplotlib.pyplot as plt
        from scipy.stats import norm

        P = len(self.names)
        fig, axes = plt.subplots(1, P, figsize=(3.2 * P, 3.0), squeeze=False)
        ok = ~self.failed
        x = np.linspace(-4, 4, 201)
        for i, n in enumerate(self.names):
            ax = axes[0, i]
            pull = (self.estimates[ok, i] - self.fiducial[n]) / self.fisher.sigma()[n]
            ax.hist(
                pull,
                bins=bins,
                range=(-4, 4),
                density=True,
                histtype="step",
                color="C0",
                label="simulations",
            )
            ax.plot(x, norm.pdf(x), color="k", lw=1, label="N(0, 1)")
            ax.set_xlabel(f"({n} − {n}₀) / σ_Fisher")
            ax.set_title(f"1σ coverage {self.coverage[self.levels[0]][n]:.3f}")
        axes[0, 0].legend(fontsize="small")
        fig.tight_layout()
        return fig

    def __repr__(self):
        return (
            f"Coverage(names={list(self.names)}, n_ok={self.n_ok}/{self.n_sims}, "
            f"calibrated={self.calibrated})"
        )


def coverage(
    experiment,
    fiducial,
    n_sims=500,
    *,
    params=None,
    seed=0,
    levels=(0.6827, 0.9545),
    n_se=3.0,
    rtol=1e-10,
    atol=1e-10,
    max_steps=256,
    mode="forward",
    keep_data=False,
) -> Coverage:
    """Frequentist calibration of the Fisher intervals with simulated data.

    1. Simulate `n_sims` datasets at the fiducial with the noise model's ``simulate``.
    2. Fit the maximum-likelihood estimate of each, batched with ``vmap`` (optimistix BFGS in
       coordinates whitened by the Fisher matrix, started at the fiducial).
    3. Compare: the fraction of intervals ``θ̂ᵢ ± zσᵢ`` (σ from ``F⁻¹`` at the fiducial, ``z``
       the two-sided Gaussian quantile of each level) that contain the truth, with binomial
       errors; the joint coverage of ``Δθᵀ F Δθ ≤ χ²_P``; and the scatter of the estimates
       against the Cramér–Rao bound.

    A fit that does not converge (or ends at a non-finite point) is flagged in `failed` and
    left out of the statistics; it never aborts the batch.

    **Arguments:**

    - `experiment`, `fiducial`, `params`, `mode`: as in :func:`ff.fisher`.
    - `n_sims`: number of simulated datasets (a few hundred resolve 68 % coverage to ±3 %).
    - `seed`: random seed of the simulations.
    - `levels`: nominal probabilities of the intervals, each in (0, 1).
    - `n_se`: how many standard errors `calibrated` allows (a positive number).
    - `rtol`, `atol`, `max_steps`: BFGS settings.
    - `keep_data`: keep the simulated datasets in `.data` (tuple per experiment).

    **Returns:** a :class:`Coverage`.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
    ...                     ff.Gaussian(sigma=0.05), design=jnp.linspace(0, 5, 30))
    >>> cov = ff.coverage(exp, {"A": 1.0, "k": 0.5}, n_sims=200)
    >>> cov.n_ok
    200
    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    if isinstance(n_sims, bool) or not isinstance(n_sims, int | np.integer) or n_sims < 2:
        raise ValueError(f"`n_sims` must be an integer >= 2; received {n_sims!r}.")
    levels = _check_levels(levels)
    if (
        isinstance(n_se, bool)
        or not isinstance(n_se, int | float | np.integer | np.floating)
        or not (math.isfinite(n_se) and n_se > 0)
    ):
        raise ValueError(
            f"`n_se` must be a positive, finite number of standard errors; received {quote(n_se)}."
        )
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an integer; received {seed!r}.")
    F = fisher(experiments, fid, params=names, mode=mode)
    try:
        cov = F.covariance()
    except SingularFisherError as exc:
        raise FisherError(
            "coverage needs an invertible Fisher matrix (the intervals are sqrt(diag F⁻¹)); "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    sigma = np.sqrt(np.diag(cov))
    theta0 = np.array([fid[n] for n in names], dtype=np.float64)
    L = np.linalg.cholesky(cov)
    start = time.perf_counter()
    with float64():
        fid64 = {k: jnp.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        datas = _simulate_batch(tuple(experiments), fid64, jax.random.PRNGKey(seed), int(n_sims))
        est, ok, _ = _fit_batch(
            tuple(experiments),
            datas,
            fixed,
            jnp.asarray(theta0),
            jnp.asarray(L),
            names=names,
            rtol=float(rtol),
            atol=float(atol),
            max_steps=int(max_steps),
        )
        est = np.asarray(est, dtype=np.float64)
        ok = np.asarray(ok, dtype=bool)
        kept = tuple(np.asarray(d) for d in jax.device_get(datas)) if keep_data else None
    seconds = time.perf_counter() - start
    return _coverage_stats(
        F, names, fid, theta0, sigma, est, ok, levels, float(n_se), seconds, kept
    )


def _check_levels(levels) -> tuple:
    """`levels` of :func:`coverage` as a tuple of floats in (0, 1), or a ValueError."""

    def bad(detail):
        return ValueError(
            f"`levels` must be a probability in (0, 1) or a sequence of them; "
            f"received {quote(levels)}{detail}."
        )

    def is_number(v):
        return not isinstance(v, bool) and isinstance(v, int | float | np.integer | np.floating)

    if is_number(levels):
        items = [levels]
    elif isinstance(levels, str | bytes) or isinstance(levels, Mapping):
        raise bad("")
    else:
        try:
            items = levels.reshape(-1).tolist() if isinstance(levels, np.ndarray) else list(levels)
        except TypeError:
            raise bad("") from None
    if not items:
        raise bad(" (empty)")
    for v in items:
        if not is_number(v):
            raise bad(f": entry {quote(v)} is not a number")
        if not 0 < v < 1:
            raise bad(f": entry {v!r} is outside (0, 1)")
    out = tuple(float(v) for v in items)
    if len(set(out)) != len(out):
        raise bad(": repeated entries")
    return out


def _coverage_stats(F, names, fid, theta0, sigma, est, ok, levels, n_se, seconds, data):
    from scipy.special import ndtri
    from scipy.stats import chi2

    n_sims, P = est.shape
    failed = ~ok
    est = np.where(ok[:, None], est, np.nan)
    good = est[ok]
    n_ok = int(ok.sum())
    reasons = []
    if n_ok < 2:
        raise FisherError(
            f"coverage: only {n_ok} of {n_sims} maximum-likelihood fits succeeded; the "
            "model may be non-identifiable at the fiducial or the simulations invalid."
        )
    if n_ok < n_sims:
        reasons.append(f"{n_sims - n_ok} of {n_sims} fits failed and are left out")
    pulls = (good - theta0) / sigma
    coverage, coverage_err, joint, joint_err = {}, {}, {}, {}
    Fm = F.matrix
    delta = good - theta0
    chi2_values = np.einsum("ki,ij,kj->k", delta, Fm, delta)
    for lv in levels:
        z = float(ndtri(0.5 + 0.5 * lv))
        frac = np.mean(np.abs(pulls) <= z, axis=0)
        coverage[lv] = {n: float(f) for n, f in zip(names, frac, strict=True)}
        coverage_err[lv] = float(math.sqrt(lv * (1 - lv) / n_ok))
        joint[lv] = float(np.mean(chi2_values <= chi2.ppf(lv, P)))
        joint_err[lv] = coverage_err[lv]
        for n, f in zip(names, frac, strict=True):
            if abs(f - lv) > n_se * coverage_err[lv]:
                reasons.append(
                    f"{n}: {lv:.2%} interval covers the truth in {f:.3f} of the "
                    f"simulations (expected {lv:.4f} ± {coverage_err[lv]:.3f})"
                )
        if abs(joint[lv] - lv) > n_se * joint_err[lv]:
            reasons.append(
                f"joint: the {lv:.2%} region Δθᵀ F Δθ ≤ χ²_{P} contains the truth "
                f"in {joint[lv]:.3f} of the simulations (expected {lv:.4f} ± "
                f"{joint_err[lv]:.3f}); wrong correlations, for one, do not "
                "show in the marginal intervals"
            )
    scatter = good.std(axis=0, ddof=1) / sigma
    scatter_err = 1.0 / math.sqrt(2.0 * (n_ok - 1))
    bias = pulls.mean(axis=0)
    bias_err = 1.0 / math.sqrt(n_ok)
    for n, s in zip(names, scatter, strict=True):
        if abs(s - 1) > n_se * scatter_err:
            reasons.append(
                f"{n}: scatter of the estimates is {s:.3f} × σ_Fisher (expected 1 "
                f"± {scatter_err:.3f} at the Cramér–Rao bound)"
            )
    for n, b in zip(names, bias, strict=True):
        if abs(b) > n_se * bias_err:
            reasons.append(f"{n}: estimates are biased by {b:+.3f} σ_Fisher (± {bias_err:.3f})")
    calibrated = not any(not r.startswith(f"{n_sims - n_ok} of") for r in reasons)

    def d(arr):
        return {n: float(v) for n, v in zip(names, arr, strict=True)}

    return Coverage(
        names=tuple(names),
        fisher=F,
        fiducial={n: fid[n] for n in names},
        n_sims=n_sims,
        n_ok=n_ok,
        failed=failed,
        estimates=est,
        levels=levels,
        coverage=coverage,
        coverage_error=coverage_err,
        joint_coverage=joint,
        joint_coverage_error=joint_err,
        scatter_ratio=d(scatter),
        scatter_error=scatter_err,
        bias=d(bias),
        bias_error=bias_err,
        n_se=n_se,
        calibrated=bool(calibrated),
        reasons=tuple(reasons),
        seconds=float(seconds),
        data=data,
    )
