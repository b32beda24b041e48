"""What lets the kernels of an ODE model be kept on disk and found without tracing them.

* ``unchecked_save_times`` (in ``_ode_args``): diffrax checks the save times it is given
  (increasing, inside ``[t0, t1]``) with equinox runtime checks, i.e. host callbacks,
  which XLA cannot serialize: a kernel holding one is never stored. The times
  :func:`ff.ode_model` passes satisfy both checks by construction (sorted, clipped to
  ``t0``, solved up to their maximum), so while *our* solves are traced with
  ``throw=False`` equinox is told to turn a failed check into NaN (a plain ``select``, no
  callback); a NaN output is what a failed solve gives anyway, and the engine reports it.
  With ``throw=True``, or when the user set ``EQX_ON_ERROR`` to anything but its default,
  nothing changes.
* :func:`ode_fingerprint`: the fast-cache-key fingerprint of an ODE model
  (:mod:`fisherforecast._fingerprint`): its settings (solver, step-size controller,
  adjoint, tolerances, schedule arrays) as data, and its user functions (right-hand side,
  initial state, observable, schedule callables) by one jaxpr traced at the shapes the
  kernel calls them with, without tracing the solver.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._fingerprint import Context, static_fingerprint
from ._ode_args import as_array_if_number
from ._ode_schedule import build_schedule, checked_rhs, measurement_times

__all__ = ["ode_fingerprint"]


def ode_fingerprint(model, ctx: Context) -> str:
    """Fingerprint of an ``ODEModel`` for the fast cache key (see the module docstring)."""
    events = model.events
    settings = static_fingerprint(
        (
            model.t0,
            model.max_steps,
            model.dt0,
            model.throw,
            model.times_key,
            model.solver,
            model.stepsize_controller,
            model.adjoint,
            tuple(None if callable(part) else part for part in events),
            tuple(callable(part) for part in events),
            model.observe is None,
            callable(model.y0),
        )
    )
    rhs = checked_rhs(model.rhs, events.inputs is not None)

    def body(params, design):
        y0 = model.initial_state(params)
        out = [y0]
        u = None
        if events.active:
            times = jnp.atleast_1d(jnp.asarray(measurement_times(design, model.times_key)))
            sched = build_schedule(
                events, params, design, model.t0, jnp.max(times), y0.shape, y0.dtype
            )
            out.append(sched)
            u = None if sched.inputs is None else sched.inputs[0]
        args = jax.tree_util.tree_map(as_array_if_number, params)
        out.append(rhs(jnp.asarray(model.t0, y0.dtype), y0, args, u))
        if model.observe is not None:
            out.append(model.observe(y0, params))
        return out

    return settings + ";" + ctx.trace(body)
