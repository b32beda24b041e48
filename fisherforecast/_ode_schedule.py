"""Dosing events, piecewise-constant inputs and pre-equilibration for :func:`ff.ode_model`.

A *schedule* is everything that happens to an ODE model at given times:

* **bolus doses** ``(times, amounts)``: the amount is added to the state at the dose time;
* **zero-order infusions** ``(starts, durations, rates)``: the rate is added to ``dy/dt``
  while the infusion runs;
* **piecewise-constant inputs** ``(breakpoints, values)``: ``rhs(t, y, params, u)`` gets
  ``u = values[j]`` between ``breakpoints[j-1]`` and ``breakpoints[j]``;
* **pre-equilibration**: before ``t0`` the system is run to steady state (with the input
  that holds before the first breakpoint), and that steady state replaces ``y0``.

Each part may be fixed arrays or a callable ``(params, design) -> arrays``, so dose amounts
and times can be parameters or design variables. The number of events is fixed (array
shapes); their times and sizes are traced values.

How derivatives stay exact (forward mode). The time axis is cut at every event time into
segments; each segment ``[a, b]`` is solved on the fixed interval ``s ∈ [0, 1]`` with
``t = a + s (b - a)`` and ``dy/ds = (b - a) f(t, y)`` (one ``diffrax.diffeqsolve`` per
segment inside one ``jax.lax.scan``, so the solver compiles once). The event times enter
only as arguments of the vector field, so ``jax.jacfwd`` differentiates through them
exactly like through the parameters, with no derivative of a step-size decision. The
measurement times are attached by a Taylor step in real time (value unchanged; first
derivative ``f``), as in the plain model. A steady state ``f(y*, θ) = 0`` found by a long
solve gets the implicit-function sensitivities ``∂y*/∂θ = -J⁺ ∂f/∂θ`` (``J = ∂f/∂y``) by
one stop-gradient Newton step; directions that ``J`` leaves free (conserved totals) keep
the sensitivities of the solve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from ._errors import InputError, quote
from ._ode_args import unchecked_save_times

__all__ = [
    "EventSpec",
    "RHSError",
    "SegmentedSolution",
    "checked_rhs",
    "make_spec",
    "measurement_times",
    "solve_schedule",
]


class RHSError(TypeError):
    """The model's ``rhs`` cannot be traced by JAX (a list result, NumPy on a tracer, a
    Python ``if`` on a parameter); the message says what to change."""


_TRACE_ERRORS = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


def checked_rhs(rhs: Callable, has_input: bool) -> Callable:
    """``rhs`` wrapped so that its result is one array and JAX tracing errors say what to
    do. The wrapper takes ``(t, y, params, u)`` (``u`` ignored unless ``has_input``)."""

    def call(t, y, params, u=None):
        try:
            out = rhs(t, y, params, u) if has_input else rhs(t, y, params)
        except jax.errors.TracerArrayConversionError as exc:
            raise RHSError(
                "ode_model: `rhs` converts a JAX tracer to a NumPy array (e.g. np.exp, "
                "np.sqrt, np.array on the state or a parameter). Use jax.numpy instead: "
                "`import jax.numpy as jnp` and jnp.exp(...). Original error: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        except _TRACE_ERRORS as exc:
            raise RHSError(
                "ode_model: `rhs` uses a Python `if`, `while`, `bool()`, `int()` or `float()` "
                "on a parameter or the state; these are traced values with no concrete "
                "value. Write the branch with jnp.where(condition, a, b) (or "
                "jax.lax.cond), and keep parameters as arrays. Original error: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if isinstance(out, (list, tuple)):
            raise RHSError(
                f"ode_model: `rhs` returned a Python {type(out).__name__} of "
                f"{len(out)} entries; it must return one array with the shape of the "
                "state, e.g. `return jnp.stack([dy0, dy1])` instead of `return [dy0, dy1]`."
            )
        return jnp.asarray(out, dtype=y.dtype)

    return call


# -- the specification (static) ---------------------------------------------------------


class EventSpec(NamedTuple):
    """What ``ode_model`` was given: each entry ``None``, arrays, or a callable
    ``(params, design) -> arrays`` (see :func:`make_spec`)."""

    doses: Any
    infusions: Any
    inputs: Any
    into: Any
    preequilibrate: bool

    @property
    def active(self) -> bool:
        parts = (self.doses, self.infusions, self.inputs)
        return self.preequilibrate or any(p is not None for p in parts)


def _fixed_part(name, value, n, t0, time_cols):
    """Check a fixed (non-callable) ``doses``/``infusions``/``inputs`` entry."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise InputError(
            f"ode_model: `{name}` must be a tuple of {n} arrays or a callable "
            f"(params, design) -> such a tuple; received {quote(value)}."
        )
    arrays = []
    for i, part in enumerate(value):
        if isinstance(part, Tracer):
            return tuple(value)
        arr = np.asarray(part, dtype=float) if not isinstance(part, Tracer) else part
        if arr.ndim == 0:
            arr = arr[None]
        if not np.all(np.isfinite(arr)):
            raise InputError(f"ode_model: `{name}`[{i}] must be finite; received {quote(part)}.")
        arrays.append(arr)
    sizes = {a.shape[0] for a in arrays}
    if name != "inputs" and len(sizes) != 1:
        raise InputError(
            f"ode_model: the arrays of `{name}` must have the same length (one entry per "
            f"event); received lengths {[a.shape[0] for a in arrays]}."
        )
    for col in time_cols:
        early = arrays[col][arrays[col] < t0]
        if early.size:
            raise InputError(
                f"ode_model: `{name}` has times {early.tolist()} before t0={t0}; events must "
                "happen at or after t0 (use an earlier t0, or preequilibrate=True for what "
                "happens before the experiment)."
            )
    return tuple(arrays)


def make_spec(doses, infusions, inputs, into, preequilibrate, t0) -> EventSpec:
    """Check the schedule arguments of ``ode_model`` (fixed arrays are checked here; the
    results of callables are checked when traced: events before ``t0`` give NaN)."""
    parts = {}
    for name, value, n, cols in (
        ("doses", doses, 2, (0,)),
        ("infusions", infusions, 3, (0,)),
        ("inputs", inputs, 2, (0,)),
    ):
        parts[name] = (
            value if value is None or callable(value) else _fixed_part(name, value, n, t0, cols)
        )
    if parts["infusions"] is not None and not callable(infusions):
        if np.any(parts["infusions"][1] < 0):
            raise InputError(
                f"ode_model: infusion durations must be >= 0; received {quote(infusions[1])}."
            )
    if parts["inputs"] is not None and not callable(inputs):
        bps, vals = parts["inputs"]
        if vals.shape[0] != bps.shape[0] + 1:
            raise InputError(
                "ode_model: `inputs` = (breakpoints, values) needs one more value than "
                f"breakpoints (values[0] holds before breakpoints[0]); received "
                f"{bps.shape[0]} breakpoints and {vals.shape[0]} values."
            )
    if not isinstance(preequilibrate, (bool, np.bool_)):
        raise InputError(
            f"ode_model: `preequilibrate` must be True or False; received {quote(preequilibrate)}."
        )
    if isinstance(into, (bool, np.bool_)) or not isinstance(into, (int, np.integer)):
        raise InputError(
            "ode_model: `dose_into` must be the integer index of the dosed state component; "
            f"received {quote(into)}."
        )
    return EventSpec(
        parts["doses"], parts["infusions"], parts["inputs"], int(into), bool(preequilibrate)
    )


def measurement_times(design, key: str):
    """The measurement times of a design: the design itself, or ``design[key]`` for a
    mapping design (whose other entries can drive doses and inputs)."""
    if isinstance(design, Mapping):
        if key not in design:
            raise InputError(
                f"ode_model: a dict design must hold the measurement times under {key!r}; "
                f"received keys {sorted(design, key=str)}."
            )
        return design[key]
    return design


# -- building one call's schedule --------------------------------------------------------


def _resolve(part: Any, params, design, name: str, n: int):
    if part is None:
        return None
    values = part(params, design) if callable(part) else part
    if not isinstance(values, (tuple, list)) or len(values) != n:
        raise InputError(
            f"ode_model: the `{name}` callable must return a tuple of {n} arrays; it "
            f"returned {quote(values)}."
        )
    return tuple(jnp.atleast_1d(jnp.asarray(v)) for v in values)


def _state_vectors(amounts, into, y_shape, dtype):
    """``amounts`` of shape (n,) into component ``into``, or (n, *y_shape) as given."""
    amounts = amounts.astype(dtype)
    if amounts.shape[1:] == y_shape:
        return amounts
    if amounts.ndim != 1:
        raise InputError(
            f"ode_model: dose amounts / infusion rates must have shape (n,) (into state "
            f"component dose_into) or (n, *y.shape) = (n, *{y_shape}); got {amounts.shape}."
        )
    if len(y_shape) == 0:
        return amounts
    basis = jnp.zeros(y_shape, dtype).reshape(-1).at[into].set(1.0).reshape(y_shape)
    return amounts.reshape((-1,) + (1,) * len(y_shape)) * basis


class Schedule(NamedTuple):
    """One call's schedule: sorted event times, the jump after each, and per segment
    (``n_events + 1`` of them) the start, duration, infusion rate and input."""

    events: jax.Array
    jumps: jax.Array
    starts: jax.Array
    durations: jax.Array
    rates: jax.Array
    inputs: Any
    pre_input: Any
    ok: jax.Array


def build_schedule(spec: EventSpec, params, design, t0, t_end, y_shape, dtype) -> Schedule:
    """Event times, jumps, rates and inputs for one evaluation (all traceable)."""
    zero = jnp.zeros((0,), dtype)
    times, jumps = [zero], [jnp.zeros((0, *y_shape), dtype)]
    rate_parts = []
    doses = _resolve(spec.doses, params, design, "doses", 2)
    if doses is not None:
        times.append(doses[0].astype(dtype))
        jumps.append(_state_vectors(doses[1], spec.into, y_shape, dtype))
    infusions = _resolve(spec.infusions, params, design, "infusions", 3)
    if infusions is not None:
        start, duration = infusions[0].astype(dtype), infusions[1].astype(dtype)
        times += [start, start + duration]
        jumps += [jnp.zeros((2 * start.shape[0], *y_shape), dtype)]
        rate_parts = [
            start,
            start + duration,
            _state_vectors(infusions[2], spec.into, y_shape, dtype),
        ]
    inputs = _resolve(spec.inputs, params, design, "inputs", 2)
    if inputs is not None:
        times.append(inputs[0].astype(dtype))
        jumps.append(jnp.zeros((inputs[0].shape[0], *y_shape), dtype))
    all_times = jnp.concatenate(times)
    all_jumps = jnp.concatenate(jumps)
    order = jnp.argsort(jax.lax.stop_gradient(all_times))
    events, jumps_sorted = all_times[order], all_jumps[order]
    ok = jnp.all(jnp.isfinite(events) & (events >= t0))
    events = jnp.where(jnp.isfinite(events), jnp.maximum(events, t0), t0)
    end = jnp.maximum(jax.lax.stop_gradient(t_end), events[-1] if events.size else t0)
    edges = jnp.concatenate([jnp.full((1,), t0, dtype), events, end[None].astype(dtype)])
    starts, durations = edges[:-1], edges[1:] - edges[:-1]
    mids = jax.lax.stop_gradient(starts + 0.5 * durations)
    rates = jnp.zeros((mids.shape[0], *y_shape), dtype)
    if rate_parts:
        on_start, on_end, rate = rate_parts
        running = (on_start[None, :] <= mids[:, None]) & (mids[:, None] < on_end[None, :])
        rates = jnp.tensordot(running.astype(dtype), rate, axes=1)
    seg_inputs = pre_input = None
    if inputs is not None:
        breaks, values = inputs
        if values.shape[0] != breaks.shape[0] + 1:
            raise InputError(
                "ode_model: `inputs` = (breakpoints, values) needs one more value than "
                f"breakpoints; received {breaks.shape[0]} and {values.shape[0]}."
            )
        b_sorted = jnp.sort(jax.lax.stop_gradient(breaks))
        seg_inputs = values[jnp.searchsorted(b_sorted, mids, side="right")]
        pre_input = values[0]
    return Schedule(events, jumps_sorted, starts, durations, rates, seg_inputs, pre_input, ok)


# -- solving -----------------------------------------------------------------------------


class SegmentedSolution(NamedTuple):
    """What :func:`ode_model`'s diagnostics read from a solve (``result``, ``stats``,
    ``ts``), for a solve cut into segments."""

    result: Any
    stats: dict
    ts: jax.Array


def _success(result):
    return (result == diffrax.RESULTS.successful) | (result == diffrax.RESULTS.event_occurred)


def _segment_field(rhs):
    """The vector field on ``s ∈ [0, 1]``: ``(b - a) (f(a + s (b - a), y) + rate)``."""

    def field(s, y, args):
        params, start, duration, rate, u = args
        t = start + s * duration
        return duration * (rhs(t, y, params, u) + rate)

    return field


def _steady_field(rhs):
    def field(t, y, args):
        params, t0, u = args
        return rhs(t0, y, params, u)

    return field


class Solvers(NamedTuple):
    """The diffrax pieces of a model (built once per model, so that eager calls reuse the
    compiled solves)."""

    rhs: Callable
    segment_term: diffrax.ODETerm
    steady_term: diffrax.ODETerm


def make_solvers(rhs, has_input) -> Solvers:
    wrapped = checked_rhs(rhs, has_input)
    return Solvers(
        wrapped,
        diffrax.ODETerm(_segment_field(wrapped)),
        diffrax.ODETerm(_steady_field(wrapped)),
    )


def _steady_state(model, solvers: Solvers, params, y0, u):
    """Run to ``f(y) = 0`` from ``y0`` and attach the implicit-function sensitivities."""
    with unchecked_save_times(not model.throw):
        sol = _steady_solve(model, solvers, params, y0, u)
    assert sol.ys is not None
    y_end = sol.ys[-1]

    def f(y):
        return solvers.rhs(jnp.asarray(model.t0, y.dtype), y, params, u)

    flat = y_end.reshape(-1)
    y_c = jax.lax.stop_gradient(y_end)
    jac = jax.jacfwd(lambda z: f(z.reshape(y_end.shape)).reshape(-1))(y_c.reshape(-1))
    pinv = jax.lax.stop_gradient(jnp.linalg.pinv(jac, rtol=1e-10))
    # Newton step with stop-gradient J⁺: value y - J⁺ f(y) (a polish of the steady state),
    # derivative (I - J⁺J) s_solve - J⁺ ∂f/∂θ: exact implicit-function sensitivities.
    corrected = (flat - pinv @ f(y_end).reshape(-1)).reshape(y_end.shape)
    ok = _success(sol.result)
    return corrected, ok, sol.stats["num_steps"]


def _steady_solve(model, solvers: Solvers, params, y0, u):
    return diffrax.diffeqsolve(
        solvers.steady_term,
        model.solver,
        t0=0.0,
        t1=jnp.inf,
        dt0=model.dt0,
        y0=y0,
        args=(params, jnp.asarray(model.t0, y0.dtype), u),
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=model.stepsize_controller,
        adjoint=model.adjoint,
        event=diffrax.Event(diffrax.steady_state_event()),
        max_steps=model.max_steps,
        throw=model.throw,
    )


def solve_schedule(model, solvers: Solvers, spec: EventSpec, params, design, times_sorted):
    """States at ``times_sorted`` (sorted, admissible, stop-gradient-ed values), plus a
    :class:`SegmentedSolution`, whether the start was finite, and the schedule."""
    y0 = model.initial_state(params)
    dtype = y0.dtype
    sched = build_schedule(spec, params, design, model.t0, times_sorted[-1], y0.shape, dtype)
    steps = jnp.zeros((), jnp.int32)
    pre_ok = jnp.asarray(True)
    if spec.preequilibrate:
        y0, pre_ok, steps = _steady_state(model, solvers, params, y0, sched.pre_input)
    t0 = jnp.asarray(model.t0, dtype)
    init_ok = jnp.all(jnp.isfinite(y0)) & jnp.all(
        jnp.isfinite(solvers.rhs(t0, y0, params, _first(sched.inputs)))
    )
    safe_durations = jnp.where(sched.durations > 0, sched.durations, 1.0)
    n_seg = sched.starts.shape[0]
    jumps = jnp.concatenate([jnp.zeros((1, *y0.shape), dtype), sched.jumps])
    u_seg = sched.inputs if sched.inputs is not None else jnp.zeros((n_seg,), dtype)

    def one_segment(y, xs):
        start, duration, dur_safe, rate, u, jump = xs
        y = y + jump
        s = jnp.clip((times_sorted - start) / dur_safe, 0.0, 1.0)
        s = jax.lax.stop_gradient(jnp.where(duration > 0, s, 0.0))
        with unchecked_save_times(not model.throw):  # serializable kernels
            sol = diffrax.diffeqsolve(
                solvers.segment_term,
                model.solver,
                t0=0.0,
                t1=1.0,
                dt0=model.dt0,
                y0=y,
                args=(params, start, duration, rate, u if sched.inputs is not None else None),
                saveat=diffrax.SaveAt(ts=s, t1=True),
                stepsize_controller=model.stepsize_controller,
                adjoint=model.adjoint,
                max_steps=model.max_steps,
                throw=model.throw,
            )
        assert sol.ys is not None
        return sol.ys[-1], (sol.ys[:-1], s, _success(sol.result), sol.stats["num_steps"])

    xs = (sched.starts, sched.durations, safe_durations, sched.rates, u_seg, jumps)
    _, (ys, s_saved, seg_ok, seg_steps) = jax.lax.scan(one_segment, y0, xs)
    seg = jnp.searchsorted(jax.lax.stop_gradient(sched.events), times_sorted, side="right")
    idx = jnp.arange(times_sorted.shape[0])
    states = ys[seg, idx]
    # Real time of each saved state: a + s (b - a) (differentiable in a and b).
    tau = sched.starts[seg] + s_saved[seg, idx] * sched.durations[seg]
    ok = jnp.all(seg_ok) & pre_ok & sched.ok
    result = diffrax.RESULTS.where(
        ok, diffrax.RESULTS.successful, diffrax.RESULTS.max_steps_reached
    )
    info = SegmentedSolution(result, {"num_steps": jnp.sum(seg_steps) + steps}, times_sorted)
    parts = (tau, seg, sched.rates, sched.inputs)
    return states, info, init_ok, parts


def _first(inputs):
    return None if inputs is None else inputs[0]


def taylor_from(rhs, params, times, tau, states, rates, inputs, seg):
    """Attach exact time derivatives: ``y(t) = Y + δ F + δ²/2 F'`` about the saved real
    time ``τ`` (value ``t``), ``δ = (t - τ) - stop_gradient(t - τ)``, ``F = f + rate``."""
    t_c = jax.lax.stop_gradient(times)
    gap = times - tau
    delta = gap - jax.lax.stop_gradient(gap)

    def terms(t, y, rate, u):
        def f(t_, y_):
            return rhs(t_, y_, params, u).reshape(y.shape) + rate

        slope = f(t, y)
        _, curvature = jax.jvp(f, (t, y), (jnp.ones_like(t), slope))
        return slope, curvature

    u = None if inputs is None else inputs[seg]
    if u is None:
        slope, curvature = jax.vmap(lambda t, y, r: terms(t, y, r, None))(t_c, states, rates[seg])
    else:
        slope, curvature = jax.vmap(terms)(t_c, states, rates[seg], u)
    d = delta.astype(states.dtype).reshape(delta.shape + (1,) * (states.ndim - 1))
    return states + d * slope + 0.5 * d * d * curvature
