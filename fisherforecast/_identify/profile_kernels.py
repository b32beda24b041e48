"""Pure, compiled pieces of the profile likelihood: −2 ln L, the BFGS fits, the scans.

The kernels are :func:`fisherforecast._compile.cached_kernel` kernels: equal experiments share one
compilation, and kernels that XLA can serialize are kept on disk for the next process."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optimistix as optx

from .._compile import cached_kernel
from .._engine import call_model, params_from_vector


def neg2_log_like(exp, d, mean, params, params0, expected):
    """One experiment's −2 ln L (user data) or, for Asimov data (`expected`), the noise
    model's expected deviance under the fiducial where it defines one."""
    if expected and exp.noise.has_expected_deviance:
        return exp.noise.expected_deviance(mean, jnp.asarray(d), params, params0, exp.design)
    return -2.0 * exp.noise.log_likelihood(d, mean, params, exp.design)


def chi2_function(experiments, data, names, fixed, theta_ref, expected, autodiff=None):
    """θ (vector over `names`) -> −2 ln L summed over the experiments (for Asimov data,
    `expected`, the expected deviance under the fiducial ``theta_ref``).

    With `autodiff` ("fwd" or "bwd") the function's derivative (all an optimiser asks
    for) is computed in one pass with its value, :func:`one_pass_derivative`."""

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

    return chi2 if autodiff is None else one_pass_derivative(chi2, autodiff)


def one_pass_derivative(fn, autodiff):
    """`fn` (a vector -> a scalar) whose JVP evaluates the value and the whole gradient in
    one pass (``jax.jacfwd`` for "fwd", ``jax.value_and_grad`` for "bwd") and contracts.

    An optimiser linearises its objective: through an ODE solve (a ``while`` loop) JAX's
    linearisation keeps a primal solve next to the tangent solve, and the forward-mode
    gradient then pushes one basis vector at a time through the linear map. Here the
    primal and all tangents share one solve, and the compiled program holds the model once.
    Values closed over by `fn` (data, fixed parameters) are not differentiated."""

    @jax.custom_jvp
    def f(theta):
        return fn(theta)

    @f.defjvp
    def f_jvp(primals, tangents):
        (theta,), (theta_dot,) = primals, tangents
        if autodiff == "fwd":
            grad, value = jax.jacfwd(lambda t: (fn(t),) * 2, has_aux=True)(theta)
        else:
            value, grad = jax.value_and_grad(fn)(theta)
        return value, jnp.dot(grad, theta_dot, precision=jax.lax.Precision.HIGHEST)

    return f


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


class _BFGS(optx.BFGS):
    """``optimistix.BFGS`` that also stops when the gradient at an accepted point is below
    `atol` (max-norm).

    The profiles run in coordinates scaled by the conditional Fisher errors, where the
    Hessian of −2 ln L is ~2·I, so ``|∇| ≤ atol`` puts the optimum within ~atol/2 (Δ(−2 ln L)
    error ~atol²/4). Without this test a start that is already optimal (warm starts along
    the grid, nuisance parameters uncorrelated with ψ) never terminates: the backtracking
    line search sees only round-off and rejects every step until `max_steps`.
    """

    def terminate(self, fn, y, args, options, state, tags):
        done, result = super().terminate(fn, y, args, options, state, tags)
        grad = getattr(getattr(state, "f_info", None), "grad", None)
        if grad is None:  # a future optimistix with another state layout: plain BFGS
            return done, result
        small = jnp.logical_not(state.first_step) & (jnp.max(jnp.abs(grad)) <= self.atol)
        return done | small, result


def _minimise(objective, x0, args, tol, max_steps, autodiff):
    """BFGS from `x0`; returns the minimiser, the objective there, success and steps."""
    sol = optx.minimise(
        objective,
        _BFGS(rtol=tol, atol=tol),  # pyright: ignore[reportCallIssue]  # eqx: BFGS.__init__
        x0,
        args=args,
        max_steps=max_steps,
        throw=False,
        options={"autodiff_mode": autodiff},
    )
    # The solver state holds the objective at the returned point; reading it saves one
    # more (for ODE models: expensive to compile) evaluation of the model.
    f_info = getattr(sol.state, "f_info", None)
    value = getattr(f_info, "f", None)
    if value is None:
        value = objective(sol.value, args)
    steps = jnp.asarray(sol.stats["num_steps"]).astype(jnp.int32)
    return sol.value, value, sol.result == optx.RESULTS.successful, steps


@cached_kernel(static_argnames=("names", "tol", "max_steps", "autodiff", "expected"))
def global_fit(experiments, data, fixed, theta0, scales, names, tol, max_steps, autodiff, expected):
    chi2 = chi2_function(experiments, data, names, fixed, theta0, expected, autodiff)

    def objective(x, _):
        return chi2(theta0 + scales * x)

    x, value, success, _ = _minimise(
        objective, jnp.zeros_like(theta0), None, tol, max_steps, autodiff
    )
    return theta0 + scales * x, value, success


@cached_kernel(static_argnames=("names", "tol", "max_steps", "autodiff", "expected"))
def profile_scan(
    experiments,
    data,
    fixed,
    theta_hat,
    theta_ref,
    scales,
    k,
    free_idx,
    grid,
    resets,
    names,
    tol,
    max_steps,
    autodiff,
    expected,
):
    """−2 ln L profile of parameter `k` along `grid` (visited in the given order; `resets`
    marks the points that restart from the best fit instead of the previous point)."""
    chi2 = chi2_function(experiments, data, names, fixed, theta_ref, expected, autodiff)
    x_start = jnp.zeros(free_idx.shape, theta_hat.dtype)

    def theta_of(x, psi):
        return theta_hat.at[free_idx].add(scales[free_idx] * x).at[k].set(psi)

    def objective(x, psi):
        return chi2(theta_of(x, psi))

    def step(carry, inputs):
        psi, reset = inputs
        x0 = jnp.where(reset, x_start, carry)
        x, value, success, steps = _minimise(objective, x0, psi, tol, max_steps, autodiff)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(x))
        carry = jnp.where(ok, x, x0)
        return carry, (value, theta_of(x, psi), success & ok, steps)

    _, out = jax.lax.scan(step, x_start, (grid, resets))
    return out


@cached_kernel(static_argnames=("names", "expected"))
def profile_direct(experiments, data, fixed, theta_hat, theta_ref, k, grid, names, expected):
    """−2 ln L along `grid` with the other parameters held at `theta_hat`: the profile of a
    single parameter (nothing to re-optimise), and the finiteness probe of the default grid."""
    chi2 = chi2_function(experiments, data, names, fixed, theta_ref, expected)
    thetas = jax.vmap(lambda psi: theta_hat.at[k].set(psi))(grid)
    return jax.vmap(chi2)(thetas), thetas
