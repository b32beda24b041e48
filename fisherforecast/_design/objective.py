"""The traced design objective and its compiled entry points.

The Fisher matrix of a design with free entries ``x`` (:func:`fisher_of_x`), the
objective and the criterion as pure JAX functions of ``x``, and the module-level jitted
entry points (the batched BFGS multistart, value-and-gradient of the objective and of
the criterion), compiled once per problem shape. :func:`design_criterion` is the public
face: a criterion and its exact gradient at a given design.
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._compile import cached_kernel
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


@partial(jax.jit, static_argnames=("spec",))
def _loss_and_matrix(z, arrays, spec):
    """The objective at `z` and, as auxiliary output, the Fisher matrix it came from.

    Jitted so that JAX traces the model once: the primal and the derivative passes below
    transform that one jaxpr instead of tracing the model's Python code again."""
    F = fisher_of_x(z, arrays, spec)
    loss = loss_from_matrix(F, spec.crit, spec.ridge)
    return loss, (loss, F)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _loss_x(x, arrays, spec):
    """The objective to minimise and the (scaled, prior included) Fisher matrix at `x`.

    The matrix is auxiliary output for the optimiser's bookkeeping (the criterion at every
    end point without another Fisher evaluation): it is not differentiated (its tangent is
    zero, as after ``jax.lax.stop_gradient``)."""
    return _loss_and_matrix(x, arrays, spec)[1]


@_loss_x.defjvp
def _loss_x_jvp(spec, primals, tangents):
    # The gradient is computed here in the mode the user chose and contracted with the
    # tangent, so that reverse-mode callers (optimistix, jax.grad) never reverse-differentiate
    # through the model: ODE models built for forward-mode autodiff keep working. Value,
    # gradient and matrix come from one pass over the model.
    x, arrays = primals
    x_dot = tangents[0]
    if spec.gradient == "forward":
        grad, (value, F) = jax.jacfwd(_loss_and_matrix, has_aux=True)(x, arrays, spec)
    else:
        grad, (value, F) = jax.grad(_loss_and_matrix, has_aux=True)(x, arrays, spec)
    return (value, F), (jnp.dot(grad, x_dot, precision=HIGHEST), jnp.zeros_like(F))


def _loss_only(x, arrays, spec):
    return _loss_x(x, arrays, spec)[0]


def _natural_x(x, arrays, spec):
    return natural_from_matrix(fisher_of_x(x, arrays, spec), spec.crit)


class _FirstStepBFGS(optx.BFGS):
    """``optimistix.BFGS`` whose first step moves the largest variable by ``_FIRST_STEP``.

    BFGS starts from an identity Hessian, so its first step is the raw gradient and can
    leap into another basin. Here the inverse Hessian is set to ``_FIRST_STEP / max|∇f(u0)|``
    times the identity once the first gradient is known (at the first step, where the
    identity is otherwise kept): the first step is then ``_FIRST_STEP`` radians of ``u`` in
    its largest component (a few per cent of the range), every start is a genuinely local
    optimisation, and the multistart, not a lucky jump, finds the global optimum. The BFGS
    updates learn the curvature from there.

    This is BFGS on the objective divided by ``max|∇f(u0)| / _FIRST_STEP`` (BFGS and its
    Armijo line search are invariant under that scaling), but the gradient at the start
    comes from the first step itself instead of a separate evaluation.
    """

    def init_hessian(self, y, f, grad):
        f_info, _ = super().init_hessian(y, f, grad)
        return f_info, jnp.array(True)  # the update state: "the next update is the first"

    def update_hessian(self, y, y_eval, f_info, f_eval_info, hessian_update_state):
        new_info, _ = super().update_hessian(y, y_eval, f_info, f_eval_info, None)
        gmax = jnp.max(jnp.abs(f_eval_info.grad))
        ok = jnp.isfinite(gmax) & (gmax > 0)
        first = jnp.asarray(hessian_update_state, dtype=bool)  # set by init_hessian
        factor = jnp.where(first & ok, _FIRST_STEP / jnp.where(ok, gmax, 1), 1)
        new_info = eqx.tree_at(
            lambda info: info.hessian_inv.pytree,
            new_info,
            replace_fn=lambda tree: jax.tree_util.tree_map(lambda a: factor * a, tree),
        )
        return new_info, jnp.array(False)


# ----- compiled entry points (module level: compiled once per problem shape) ------------
def _one_start(u0, arrays, spec, max_steps, rtol):
    """BFGS from `u0`: the end point, the loss and the criterion there, converged?

    The model appears once in the compiled program: each BFGS step evaluates the objective,
    its gradient and the Fisher matrix in one pass (:func:`_loss_x`), the first step's
    gradient sets the step scale (:class:`_FirstStepBFGS`), and the loss and the matrix at
    the end point are read from the solver's state."""
    solver = _FirstStepBFGS(rtol=rtol, atol=rtol)  # pyright: ignore[reportCallIssue]  # eqx init

    def objective(u, arrays):
        return _loss_x(x_from_u(u, arrays, spec), arrays, spec)

    sol = optx.minimise(
        objective, solver, u0, args=arrays, has_aux=True, max_steps=max_steps, throw=False
    )
    # The state holds the objective and the matrix at the returned (last accepted) point;
    # `sol.aux` would be the previous step's.
    state = sol.state
    return (
        x_from_u(sol.value, arrays, spec),
        state.f_info.f,
        natural_from_matrix(state.aux, spec.crit),
        sol.result == optx.RESULTS.successful,
    )


@cached_kernel(static_argnames=("spec", "max_steps", "rtol"))
def single_start(u0, arrays, spec, max_steps, rtol):
    """:func:`_one_start` compiled for one start (the same program for any number of starts)."""
    return _one_start(u0, arrays, spec, max_steps, rtol)


@cached_kernel(static_argnames=("spec", "max_steps", "rtol"))
def vmapped_starts(u0s, arrays, spec, max_steps, rtol):
    """:func:`_one_start` over the rows of `u0s` under one ``vmap`` (in lockstep)."""
    return jax.vmap(lambda u0: _one_start(u0, arrays, spec, max_steps, rtol))(u0s)


def multistart(u0s, arrays, spec, max_steps, rtol, batch_size=None):
    """BFGS from every row of `u0s`; returns end points, loss, criterion, converged (numpy).

    ``batch_size=None`` runs every start under one ``vmap``; ``1`` runs them one after
    another through one compiled single-start program; ``b`` runs vmapped chunks of ``b``
    one after another (the last chunk padded with copies of the last start), so that every
    chunk runs the same compiled program. Under ``vmap`` the starts advance in lockstep
    (every start runs as many BFGS iterations, and an ODE model as many solver steps, as
    the slowest), which accelerators absorb but a CPU pays for.
    """
    u0s = np.asarray(u0s, dtype=np.float64)
    n = u0s.shape[0]
    if batch_size is None or batch_size >= n:
        out = vmapped_starts(jnp.asarray(u0s), arrays, spec, max_steps, rtol)
        return tuple(np.asarray(a) for a in out)
    if batch_size == 1:
        rows = [single_start(jnp.asarray(u), arrays, spec, max_steps, rtol) for u in u0s]
        return tuple(np.stack([np.asarray(r[i]) for r in rows]) for i in range(4))
    n_chunks = -(-n // batch_size)
    padded = np.concatenate([u0s, np.repeat(u0s[-1:], n_chunks * batch_size - n, axis=0)])
    chunks = [
        vmapped_starts(jnp.asarray(c), arrays, spec, max_steps, rtol)
        for c in padded.reshape(n_chunks, batch_size, -1)
    ]
    return tuple(np.concatenate([np.asarray(c[i]) for c in chunks])[:n] for i in range(4))


@cached_kernel(static_argnames=("spec",))
def loss_and_grad(x, arrays, spec):
    return jax.value_and_grad(_loss_only)(x, arrays, spec)


@cached_kernel(static_argnames=("spec",))
def natural_batch(xs, arrays, spec):
    return jax.vmap(lambda x: _natural_x(x, arrays, spec))(xs)


@cached_kernel(static_argnames=("spec",))
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
