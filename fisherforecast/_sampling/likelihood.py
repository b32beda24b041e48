"""Likelihoods of experiments, maximum-likelihood fits (optimistix BFGS in whitened
coordinates) and simulated data, for the cross-check and the coverage test.

Both reuse the experiment's noise model for the likelihood (``noise.log_likelihood``) and
the simulations (``noise.simulate``), so every noise model works without user code.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .._engine import call_model, params_from_vector
from .nuts import constrain


# =======================================================================================
# Log-likelihoods (pure; the static `names` select the sampled parameters)
# =======================================================================================
def experiments_loglik(theta, like, names):
    """Σ log-likelihood of independent experiments at ``theta``; ``like = (exps, data, fixed)``.

    A NaN (a model evaluated outside its domain) counts as log-likelihood ``-inf``, which
    NUTS treats as a divergent point and rejects. Pure; call under float64.

    ```python
    >>> import jax, jax.numpy as jnp, fisherforecast as ff
    >>> from fisherforecast._sampling.likelihood import experiments_loglik
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.arange(1.0, 4.0))
    >>> like = ((exp,), (jnp.array([1.0, 2.0, 3.0]),), {})   # data at a = 1
    >>> with jax.enable_x64(True):
    ...     best = experiments_loglik(jnp.array([1.0]), like, ("a",))
    ...     off = experiments_loglik(jnp.array([2.0]), like, ("a",))
    >>> float(off - best)   # -½ Σ t²
    -7.0
    ```
    """
    experiments, datas, fixed = like
    params = params_from_vector(theta, names, fixed)
    total = 0.0
    for exp, data in zip(experiments, datas, strict=True):
        mean = call_model(exp, params)
        total = total + exp.noise.log_likelihood(data, mean, params, exp.design)
    return jnp.where(jnp.isnan(total), -jnp.inf, total)


# =======================================================================================
# Maximum-likelihood fits (optimistix BFGS in whitened coordinates)
# =======================================================================================
def _negloglik_whitened(z, args, names, loglik_fn, bounded):
    like, v0, L, priors, offset = args
    v = v0 + L @ z
    theta = constrain(v, priors)[0] if bounded else v
    value = -(loglik_fn(theta, like, names) - offset)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


def fit_one(like, v0, L, priors, offset, *, names, loglik_fn, bounded, rtol, atol, max_steps):
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
    theta = constrain(v, priors)[0] if bounded else v
    ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(theta))
    return theta, ok, sol.stats["num_steps"]


@partial(jax.jit, static_argnames=("names", "loglik_fn", "bounded", "rtol", "atol", "max_steps"))
def fit_jit(like, v0, L, priors, offset, *, names, loglik_fn, bounded, rtol, atol, max_steps):
    return fit_one(
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
def fit_batch(experiments, datas, fixed, theta0, L, *, names, rtol, atol, max_steps):
    """MLE of every simulated dataset (leading axis of each array in `datas`), vmapped."""

    def one(data_tuple):
        like = (experiments, data_tuple, fixed)
        offset = experiments_loglik(theta0, like, names)
        return fit_one(
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
def model_means(experiments, params):
    return tuple(call_model(exp, params) for exp in experiments)


@jax.jit
def simulate(experiments, params, key):
    keys = jax.random.split(key, len(experiments))
    return tuple(
        exp.noise.simulate(k, call_model(exp, params), params, exp.design)
        for exp, k in zip(experiments, keys, strict=True)
    )


@partial(jax.jit, static_argnames=("n_sims",))
def simulate_batch(experiments, params, key, n_sims):
    return jax.vmap(lambda k: simulate(experiments, params, k))(jax.random.split(key, n_sims))
