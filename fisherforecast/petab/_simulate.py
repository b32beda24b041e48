"""The JAX side of an imported model: right-hand side, initial values, solves, steady states.

Solves use diffrax's Kvaerno5 (stiff, L-stable) with Newton iterations on its stages and a
PID step-size controller at ``rtol = atol = 1e-10`` by default, jump times at the model's
time discontinuities, and forward-mode differentiation through the solver
(``jax.jacfwd``). Steady states (PEtab pre-equilibration, ``time = inf`` measurements) are
integrated until ``f(x) ≈ 0``; the integration alone does not converge the derivative
there, so it is replaced by the implicit-function one,
``[∂f/∂x; Γ] s = −[∂f/∂p; −Γ ∂x₀/∂p]`` with the conserved totals ``Γ x`` held fixed,
while the state value stays as integrated.
"""

from __future__ import annotations

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import sympy as sp

from .._ode_args import unchecked_save_times
from ._mathml import JaxWalker
from ._sbml import SbmlModel


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Tolerances and budgets of the ODE solves (``rtol = atol ≤ 1e-10`` reproduces the
    collection's reference log-likelihoods to ≤ 1e-4)."""

    rtol: float = 1e-10
    atol: float = 1e-10
    max_steps: int = 100_000
    steady_time: float = 1e8  # the longest integration looking for a steady state
    root_finder: str = "newton"  # the implicit stages: "newton" or diffrax's "chord"


class Simulator:
    """Evaluate an :class:`SbmlModel` with constants ``k`` (a vector over ``k_names``)."""

    def __init__(self, model: SbmlModel, k_names, options: SolverOptions):
        self.model = model
        self.k_names = tuple(k_names)
        self.k_index = {n: i for i, n in enumerate(self.k_names)}
        self.options = options
        self.n = len(model.state_ids)
        self.gamma = np.asarray(model.conservation, dtype=np.float64)

    # --- environments ---------------------------------------------------------------------
    def constants_env(self, k):
        env = {n: k[i] for i, n in enumerate(self.k_names)}
        walker = JaxWalker(env)
        for v, e in self.model.derived:
            env[v] = walker(e)
        return env

    def with_derived(self, k):
        """``k`` with the constants set by initial assignments filled in."""
        if not self.model.derived:
            return k
        env = self.constants_env(k)
        idx = [self.k_index[v] for v, _ in self.model.derived]
        return k.at[np.asarray(idx)].set(jnp.stack([env[v] for v, _ in self.model.derived]))

    def env(self, t, x, k):
        """Every model symbol at time ``t``: constants, states, assignment-rule targets."""
        env = {n: k[i] for i, n in enumerate(self.k_names)}
        env.update({s: x[i] for i, s in enumerate(self.model.state_ids)})
        env["time"] = t
        walker = JaxWalker(env)
        for v, e in self.model.rules:
            env[v] = walker(e)
        return env, walker

    def rhs(self, t, x, k):
        env, walker = self.env(t, x, k)
        del env
        return jnp.stack([_as_float(walker(e), x) for e in self.model.rhs]) if self.n else x

    def initial_state(self, k):
        walker = JaxWalker({n: k[i] for i, n in enumerate(self.k_names)})
        return jnp.stack([_as_float(walker(e), k) for e in self.model.init])

    def jump_times(self, k):
        if not self.model.jump_times:
            return None
        walker = JaxWalker({n: k[i] for i, n in enumerate(self.k_names)})
        return jnp.stack([_as_float(walker(e), k) for e in self.model.jump_times])

    # --- solves ---------------------------------------------------------------------------
    def _solver(self, x0):
        """Kvaerno5 with full Newton iterations on its stages by default. diffrax's default
        (a chord iteration that keeps the Jacobian of the step's start) diverges often on
        these networks at tight tolerances; each divergence rejects the step, and on
        Bachmann more than half the steps were rejected (3239 steps against 274, 10x the
        time). The stage equations converge to the tolerances either way.

        Newton stops when its step is below ``atol + rtol |y|`` *and* the stage residual
        below ``atol`` (optimistix's Cauchy test). The residual carries the round-off of
        the state's own size, so with an absolute ``atol`` a state of 10⁸ (Weber) can
        never pass it: the iteration runs out and the step is rejected (13 493 steps,
        7 470 rejected, on Weber's [0, 30]). ``atol`` is therefore scaled per state by
        ``max(1, |x0|)``: unchanged for states of order one or below, 921 steps (82
        rejected) on Weber and the same steps on Bachmann, Boehm, Fujita and Elowitz."""
        o = self.options
        if o.root_finder == "chord":
            return diffrax.Kvaerno5()
        # Newton converges quadratically, so the stage error is far below its tolerance;
        # tighter than 1e-10 the test meets round-off and every step is rejected
        # (Bachmann at 1e-12).
        rtol, atol = max(o.rtol, 1e-10), max(o.atol, 1e-10)
        scale = jnp.maximum(1.0, jnp.abs(jax.lax.stop_gradient(x0)))
        # optimistix types atol as a float; it only enters elementwise (atol + rtol |y|).
        newton = optx.Newton(rtol=rtol, atol=atol * scale)  # pyright: ignore[reportArgumentType]
        return diffrax.Kvaerno5(root_finder=newton)

    def _controller(self, k):
        o = self.options
        pid = diffrax.PIDController(rtol=o.rtol, atol=o.atol)
        jumps = self.jump_times(k)
        if jumps is None:
            return pid
        return diffrax.ClipStepSizeController(pid, jump_ts=jnp.sort(jumps))

    def solve(self, k, x0, ts_sorted):
        """States at the sorted times ``ts_sorted`` (rows), NaN where the solve failed."""
        term = diffrax.ODETerm(lambda t, y, args: self.rhs(t, y, args))
        t1 = jnp.maximum(ts_sorted[-1], 1e-12)
        sol = _diffeqsolve(
            term,
            self._solver(x0),
            t0=0.0,
            t1=t1,
            dt0=None,
            y0=x0,
            args=k,
            saveat=diffrax.SaveAt(ts=ts_sorted),
            stepsize_controller=self._controller(k),
            adjoint=diffrax.ForwardMode(),
            max_steps=self.options.max_steps,
            throw=False,
        )
        ok = sol.result == diffrax.RESULTS.successful
        ys = sol.ys
        assert ys is not None
        return jnp.where(ok, ys, jnp.nan)

    def steady_state(self, k, x0):
        """The steady state reached from ``x0`` (value as integrated; derivative by the
        implicit-function theorem with conserved totals fixed). NaN if none is reached."""
        o = self.options
        term = diffrax.ODETerm(lambda t, y, args: self.rhs(t, y, args))
        sol = _diffeqsolve(
            term,
            self._solver(x0),
            t0=0.0,
            t1=o.steady_time,
            dt0=None,
            y0=x0,
            args=k,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=self._controller(k),
            event=diffrax.Event(diffrax.steady_state_event()),
            adjoint=diffrax.ForwardMode(),
            max_steps=self.options.max_steps,
            throw=False,
        )
        ok = sol.result == diffrax.RESULTS.event_occurred
        ys = sol.ys
        assert ys is not None
        x_int = jnp.where(ok, ys[-1], jnp.nan)
        return self._implicit(x_int, k, x0)

    def _implicit(self, x_int, k, x0):
        x = jax.lax.stop_gradient(x_int)
        t_end = jnp.asarray(self.options.steady_time)
        gamma = jnp.asarray(self.gamma)

        def residual(x_, k_, x0_):
            f = self.rhs(t_end, x_, k_)
            return jnp.concatenate([f, gamma @ (x_ - x0_)])

        A = jax.lax.stop_gradient(jax.jacfwd(residual)(x, k, x0))
        pinv = jnp.linalg.pinv(A)
        g = -pinv @ residual(x, k, x0)
        return x + (g - jax.lax.stop_gradient(g))


def _diffeqsolve(*args, **kwargs):
    """``diffrax.diffeqsolve`` traced with equinox's runtime checks as NaN instead of host
    callbacks: our solves run with ``throw=False`` and turn failures into NaN anyway, and
    without callbacks XLA can serialize the compiled kernel for the disk cache."""
    with unchecked_save_times(True):
        return diffrax.diffeqsolve(*args, **kwargs)


def _as_float(value, like):
    return jnp.asarray(value, dtype=like.dtype) * jnp.ones((), dtype=like.dtype)


def free_names(exprs) -> set:
    """Names of the symbols in sympy expressions."""
    out = set()
    for e in exprs:
        out |= {s.name for s in sp.sympify(e).free_symbols}
    return out


def dynamic_constants(model: SbmlModel, extra=()) -> set:
    """Names of the constants the dynamics read: the right-hand side, assignment rules,
    jump times and initial values, closed under the initial assignments of constants,
    plus `extra` (the condition table's sources, conservatively). A parameter outside this
    set can reach the observables only."""
    used = free_names(
        list(model.rhs) + [e for _, e in model.rules] + list(model.jump_times) + list(model.init)
    ) | set(extra)
    derived = dict(model.derived)
    grew = True
    while grew:
        grew = False
        for v, e in derived.items():
            if v in used:
                new = free_names([e]) - used
                if new:
                    used |= new
                    grew = True
    return used
