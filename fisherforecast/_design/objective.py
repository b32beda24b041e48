"""The traced design objective and its compiled entry points.

The Fisher matrix of a design with free entries ``x`` (:func:`fisher_of_x`), the
objective and the criterion as pure JAX functions of ``x``, and the module-level jitted
entry points (the batched BFGS multistart, value-and-gradient of the objective and of
the criterion), compiled once per problem shape. :func:`design_criterion` is the public
face: a criterion and its exact gradient at a given design.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._engine import fisher_information
from .._errors import InputError
from .._x64 import float64
from .criteria import HIGHEST, loss_from_matrix, natural_from_matrix
from .problem import build_problem, common_setup, designs_from_x, x_from_u

__all__ = ["design_criterion"]

#: Largest first BFGS step of each start, in radians of the sine-mapped variables (~3 % of a
#: box's width): keeps each start local, so that the multistart, not luck, finds the optimum.
_FIRST_STEP = 0.1


def fisher_of_x(x, arrays, spec):
    """Total (scaled) Fisher matrix, prior included, of the design with free entries x."""
    designs = designs_from_x(x, arrays, spec)
    F = jnp.asarray(arrays.prior)
    for exp, design in zip(arrays.experiments, designs, strict=True):
        F = F + fisher_information(
            exp.replace(design=design), arrays.fiducial, spec.crit.names, spec.mode
        )
    s = jnp.asarray(arrays.scale)
    return F * jnp.outer(s, s)


def _raw_loss(x, arrays, spec):
    return loss_from_matrix(fisher_of_x(x, arrays, spec), spec.crit, spec.ridge)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _loss_x(x, arrays, spec):
    return _raw_loss(x, arrays, spec)


@_loss_x.defjvp
def _loss_x_jvp(spec, primals, tangents):
    # The gradient is computed here in the mode the user chose and contracted with the
    # tangent, so that reverse-mode callers (optimistix, jax.grad) never reverse-differentiate
    # through the model: ODE models built for forward-mode autodiff keep working.
    x, arrays = primals
    x_dot = tangents[0]
    if spec.gradient == "forward":
        grad, value = jax.jacfwd(lambda z: (_raw_loss(z, arrays, spec),) * 2, has_aux=True)(x)
    else:
        value, grad = jax.value_and_grad(_raw_loss)(x, arrays, spec)
    return value, jnp.dot(grad, x_dot, precision=HIGHEST)


def _natural_x(x, arrays, spec):
    return natural_from_matrix(fisher_of_x(x, arrays, spec), spec.crit)


# ----- jitted entry points (module level: compiled once per problem shape) -------------
@partial(jax.jit, static_argnames=("spec", "max_steps", "rtol", "batch_size"))
def multistart(u0s, arrays, spec, max_steps, rtol, batch_size=None):
    """Batched BFGS from every start; returns end points, loss, criterion, converged.

    ``batch_size=None`` runs every start under one ``vmap``; an integer runs them in
    vmapped chunks of that size one after another (``jax.lax.map``), still in one
    compiled call. Under ``vmap`` the starts advance in lockstep (every start runs as many
    BFGS iterations, and an ODE model as many solver steps, as the slowest), which
    accelerators absorb but a CPU pays for.
    """
    import optimistix as optx

    solver = optx.BFGS(rtol=rtol, atol=rtol)

    def objective(u, arrays):
        return _loss_x(x_from_u(u, arrays, spec), arrays, spec)

    def scaled(u, args):
        arrays, scale = args
        return objective(u, arrays) / scale

    def one(u0):
        # BFGS starts from an identity Hessian, so its first step is the raw gradient and
        # can leap into another basin. Dividing the objective by (largest gradient
        # component at the start) / _FIRST_STEP bounds that step to _FIRST_STEP radians of
        # u (a few per cent of the range): every start is a genuinely local optimisation,
        # and the multistart, not a lucky jump, finds the global optimum. The BFGS updates
        # learn the curvature from there.
        gmax = jnp.max(jnp.abs(jax.grad(objective)(u0, arrays)))
        scale = jnp.where(jnp.isfinite(gmax) & (gmax > 0), gmax / _FIRST_STEP, 1.0)
        sol = optx.minimise(
            scaled, solver, u0, args=(arrays, scale), max_steps=max_steps, throw=False
        )
        x = x_from_u(sol.value, arrays, spec)
        F = fisher_of_x(x, arrays, spec)
        return (
            x,
            loss_from_matrix(F, spec.crit, spec.ridge),
            natural_from_matrix(F, spec.crit),
            sol.result == optx.RESULTS.successful,
        )

    if batch_size is None or batch_size >= u0s.shape[0]:
        return jax.vmap(one)(u0s)
    return jax.lax.map(one, u0s, batch_size=batch_size)


@partial(jax.jit, static_argnames=("spec",))
def loss_and_grad(x, arrays, spec):
    return jax.value_and_grad(_loss_x)(x, arrays, spec)


@partial(jax.jit, static_argnames=("spec",))
def natural_batch(xs, arrays, spec):
    return jax.vmap(lambda x: _natural_x(x, arrays, spec))(xs)


@partial(jax.jit, static_argnames=("spec",))
def natural_and_grad(x, arrays, spec):
    if spec.gradient == "forward":
        grad, value = jax.jacfwd(lambda z: (_natural_x(z, arrays, spec),) * 2, has_aux=True)(x)
        return value, grad
    return jax.value_and_grad(_natural_x)(x, arrays, spec)


# =======================================================================================
# design_criterion: value and gradient of a criterion at a given design
# =======================================================================================
def design_criterion(
    experiment,
    fiducial,
    *,
    criterion="D",
    prior=None,
    params=None,
    maximize=None,
    relative=False,
    mode="forward",
    gradient=False,
    gradient_mode="forward",
):
    """A design criterion at the experiment's current design, and optionally its gradient.

    **Arguments:**

    - `experiment`, `fiducial`, `criterion`, `prior`, `params`, `maximize`, `relative`,
      `mode`: as in :func:`optimize_design` (a list of experiments for a joint design).
    - `gradient`: also return ``∂ criterion / ∂ design`` (exact, from JAX).
    - `gradient_mode`: ``"forward"`` (default) or ``"reverse"`` autodiff for that gradient.

    **Returns:** the criterion value as defined (``log det F`` for "D", ...), a float; with
    ``gradient=True`` a pair ``(value, grad)`` where ``grad`` has the design's structure
    (zeros for non-float leaves are omitted: those leaves hold ``None``).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> from fisherforecast._design.objective import design_criterion
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([0.0, 2.0]))
    >>> value, grad = design_criterion(exp, {"A": 1.0, "k": 0.5}, gradient=True)
    >>> round(value, 6)           # log det F = -4k + 2 log 2 at t = {0, 1/k}, σ = A = 1
    -0.613706
    >>> [round(float(g), 6) + 0.0 for g in grad]   # ∂/∂t = (-2k ∓ 2/(t1 - t2))
    [-2.0, 0.0]

    ```
    """
    experiments, joint, fid, names, crit = common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode
    )
    if gradient_mode not in ("forward", "reverse"):
        raise InputError(
            f"`gradient_mode` must be 'forward' or 'reverse'; received {gradient_mode!r}."
        )
    with float64():
        spec, arrays, x0 = build_problem(
            experiments,
            joint,
            fid,
            names,
            crit,
            prior,
            relative,
            mode,
            gradient_mode,
            None,
            None,
            None,
        )
        if not gradient:
            return float(natural_batch(jnp.asarray(x0[None, :]), arrays, spec)[0])
        value, grad_x = natural_and_grad(jnp.asarray(x0), arrays, spec)
        value = float(value)
        grad_x = np.asarray(grad_x, dtype=np.float64)
    # Scatter the gradient back onto the design's structure.
    flat = np.zeros(spec.n_flat)
    flat[arrays.free] = grad_x
    leaves = []
    for shape, offset in spec.leaves:
        if offset < 0:
            leaves.append(None)
        else:
            size = int(np.prod(shape, dtype=int))
            leaves.append(flat[offset : offset + size].reshape(shape))
    grads = jax.tree_util.tree_unflatten(spec.treedef, leaves)
    return value, (grads if joint else grads[0])
