"""Pure, compiled pieces of the profile likelihood: −2 ln L and the direct scans (the fits
are in :mod:`.profile_fit`).

The kernels are :func:`fisherforecast._compile.cached_kernel` kernels: equal experiments share one
compilation, and kernels that XLA can serialize are kept on disk for the next process."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._compile import cached_kernel
from .._engine import call_model, params_from_vector


def neg2_log_like(exp, d, mean, params, params0, expected):
    """One experiment's −2 ln L (user data) or, for Asimov data (`expected`), the noise
    model's expected deviance under the fiducial where it defines one."""
    if expected and exp.noise.has_expected_deviance:
        return exp.noise.expected_deviance(mean, jnp.asarray(d), params, params0, exp.design)
    return -2.0 * exp.noise.log_likelihood(d, mean, params, exp.design)


def chi2_function(experiments, data, names, fixed, theta_ref, expected):
    """θ (vector over `names`) -> −2 ln L summed over the experiments (for Asimov data,
    `expected`, the expected deviance under the fiducial ``theta_ref``)."""

    def to_params(theta):
        return params_from_vector(theta, names, fixed)

    params0 = to_params(theta_ref)

    def chi2(theta):
        params = to_params(theta)
        total = 0.0
        for exp, d in zip(experiments, data, strict=True):
            mean = call_model(exp, params)
            total = total + neg2_log_like(exp, d, mean, params, params0, expected)
        return total

    return chi2


@cached_kernel(static_argnames=("expected",))
def chi2_at_data(experiments, data, fiducial, expected):
    """−2 ln L (or the expected deviance) at the fiducial for data that equal the model
    there (Asimov): no model evaluation needed."""
    return sum(
        neg2_log_like(exp, d, jnp.asarray(d), fiducial, fiducial, expected)
        for exp, d in zip(experiments, data, strict=True)
    )


@cached_kernel(static_argnames=("names",))
def noise_gradients(experiments, data, fixed, theta, names):
    """∂ ln L/∂θ of each experiment's noise model with the mean held at the data: nonzero
    where the noise depends on the parameters."""

    def loglike(th, exp, d):
        params = dict(fixed)
        params.update({n: th[i] for i, n in enumerate(names)})
        return exp.noise.log_likelihood(d, jnp.asarray(d), params, exp.design)

    return tuple(jax.grad(loglike)(theta, exp, d) for exp, d in zip(experiments, data, strict=True))


@cached_kernel(static_argnames=("names", "expected"))
def profile_direct(experiments, data, fixed, theta_hat, theta_ref, k, grid, names, expected):
    """−2 ln L along `grid` with the other parameters held at `theta_hat`: the profile of a
    single parameter (nothing to re-optimise), and the finiteness probe of the default grid."""
    chi2 = chi2_function(experiments, data, names, fixed, theta_ref, expected)
    thetas = jax.vmap(lambda psi: theta_hat.at[k].set(psi))(grid)
    return jax.vmap(chi2)(thetas), thetas
