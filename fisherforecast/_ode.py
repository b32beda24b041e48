"""ODE forward models: turn ``dy/dt = f(t, y, θ)`` into ``model(params, times)``.

The engine's forward-model contract is ``model(params, design)`` with ``params`` a dict
of scalars and ``design`` a pytree; for an ODE the design is the 1-D array of measurement
times. :func:`ode_model` wraps :func:`diffrax.diffeqsolve` so that the resulting model

* can be differentiated with ``jax.jacfwd`` (default, ``adjoint="forward"``) or
  ``jax.jacrev`` (``adjoint="reverse"``) with respect to the parameters,
* can be differentiated with respect to the measurement times (optimal design); the time
  derivative is the exact ``dy/dt = f(t, y(t), θ)`` rather than the derivative of the
  solver's interpolant,
* can be ``jax.jit``-ed and ``jax.vmap``-ed over parameter batches,
* never returns a silently wrong answer: a failed solve gives NaN outputs (and NaN
  derivatives), which the engine reports; :func:`check_solve` says why it failed.

Nothing here touches ``jax.config``; run under ``with jax.enable_x64(True):`` to get
float64 (the engine does this for you).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from ._errors import ParameterError, quote
from ._fingerprint import register_model
from ._ode_args import (
    as_array_if_number,
    check_dt0,
    check_max_steps,
    check_t0,
    check_tolerance,
    unchecked_save_times,
)
from ._ode_cache import ode_fingerprint
from ._ode_schedule import (
    EventSpec,
    SegmentedSolution,
    checked_rhs,
    make_solvers,
    make_spec,
    measurement_times,
    solve_schedule,
    taylor_from,
)

__all__ = ["ODEModel", "check_solve", "ode_model"]

_ADJOINTS = ("forward", "reverse", "direct")


def _default_float():
    """The default float dtype *now*: float64 inside ``jax.enable_x64(True)``, else float32."""
    return jnp.zeros((), dtype=float).dtype


def _make_adjoint(adjoint):
    if isinstance(adjoint, diffrax.AbstractAdjoint):
        return adjoint
    if adjoint == "forward":
        # Forward-mode ("discretise then optimise") through the solver's internal
        # numerics; required for jax.jacfwd / jax.jvp, not compatible with jax.jacrev.
        return diffrax.ForwardMode()
    if adjoint == "reverse":
        # Checkpointed reverse mode; required for jax.grad / jax.jacrev, not jacfwd.
        return diffrax.RecursiveCheckpointAdjoint()
    if adjoint == "direct":
        # Supports both modes at a higher compile and run cost.
        return diffrax.DirectAdjoint()
    raise ValueError(
        f"adjoint must be one of {_ADJOINTS} or a diffrax.AbstractAdjoint, got {adjoint!r}"
    )


def _autodiff_modes(adjoint) -> tuple[str, ...]:
    """Which of jax.jacfwd ("forward") / jax.jacrev ("reverse") work through `adjoint`."""
    if isinstance(adjoint, diffrax.DirectAdjoint):
        return ("forward", "reverse")
    if isinstance(adjoint, diffrax.ForwardMode):
        return ("forward",)
    # RecursiveCheckpointAdjoint, BacksolveAdjoint, ImplicitAdjoint: custom_vjp based.
    return ("reverse",)


class ODEModel:
    """A forward model ``model(params, times)`` defined by an ODE (made by :func:`ode_model`).

    Calling it returns the observables at ``times``: shape ``(n_times,)`` for a scalar
    observable, ``(n_times, *obs_shape)`` otherwise. :meth:`solve` returns the raw
    :class:`diffrax.Solution` (for diagnostics, see :func:`check_solve`).

    ``autodiff_modes`` says which parameter derivatives work: ``("forward",)`` (the
    default, ``jax.jacfwd``), ``("reverse",)`` (``jax.jacrev``/``jax.grad``) or both;
    derivatives with respect to the times work in every mode.

    Times before ``t0`` or not finite give NaN outputs (inside ``jax.jit``, e.g. within
    ``ff.fisher``, the times are traced and cannot be checked up front);
    :meth:`check_times` checks concrete times, e.g. an experiment's design, and says which
    are inadmissible.

    Instances are immutable in practice, hash by identity and hold no arrays that change,
    so they can be closed over by ``jax.jit`` or passed as static arguments.
    """

    def __init__(
        self,
        rhs: Callable,
        y0: Any,
        observe: Callable | None,
        *,
        t0: float,
        solver: diffrax.AbstractSolver,
        stepsize_controller: diffrax.AbstractStepSizeController,
        max_steps: int,
        dt0: float | None,
        adjoint: diffrax.AbstractAdjoint,
        throw: bool,
        events: EventSpec | None = None,
        times_key: str = "times",
    ):
        self.rhs = rhs
        self.y0 = y0
        self.observe = observe
        self.t0 = float(t0)
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.max_steps = int(max_steps)
        self.dt0 = dt0
        self.adjoint = adjoint
        self.autodiff_modes = _autodiff_modes(adjoint)
        self.throw = bool(throw)
        # Built once: diffeqsolve is filter-jitted and keys its cache on the term, so a
        # fresh wrapper per call would recompile on every eager call.
        self.events = events if events is not None else make_spec(None, None, None, 0, False, t0)
        self.times_key = times_key
        has_input = self.events.inputs is not None
        # rhs wrapped so that tracing mistakes (np.exp, Python `if`, a list result) get
        # an error that says what to change.
        self._rhs = checked_rhs(rhs, has_input)
        self._term = diffrax.ODETerm(self._rhs)
        self._solvers = make_solvers(rhs, has_input) if self.events.active else None

    def __repr__(self) -> str:
        name = getattr(self.rhs, "__name__", type(self.rhs).__name__)
        return (
            f"ODEModel(rhs={name}, solver={type(self.solver).__name__}, t0={self.t0}, "
            f"adjoint={type(self.adjoint).__name__}, max_steps={self.max_steps})"
        )

    # -- pieces -----------------------------------------------------------------------
    def initial_state(self, params) -> jax.Array:
        """``y(t0)``: ``y0(params)`` when ``y0`` is callable, else ``y0``, as a float array."""
        y0 = self.y0(params) if callable(self.y0) else self.y0
        y0 = jnp.asarray(y0)
        # Integer initial conditions would make diffrax integrate in integers.
        return y0.astype(jnp.promote_types(y0.dtype, _default_float()))

    def check_times(self, times) -> np.ndarray:
        """Check concrete measurement times; return them as a 1-D float64 NumPy array.

        Raises `ValueError` naming the offending times if any is not finite or lies
        before ``t0`` (where the model returns NaN), or if ``times`` is not 1-D. Use it on
        an experiment's design, ``model.check_times(experiment.design)``, when
        ``ff.fisher`` reports NaN outputs; :func:`check_solve` calls it. Needs concrete
        values: it cannot run on traced times inside ``jax.jit``.

        ```python
        >>> import fisherforecast as ff
        >>> model = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=1.0)
        >>> model.check_times([0.5, 1.0]).tolist()
        [0.5, 1.0]
        >>> try:
        ...     model.check_times([-1.0, 1.0])
        ... except ValueError as err:
        ...     print("before t0" in str(err))
        True
        ```
        """
        if any(isinstance(x, Tracer) for x in jax.tree_util.tree_leaves(times)):
            raise TypeError(
                "check_times needs concrete times; it cannot check traced values inside "
                "jax.jit (there, inadmissible times give NaN outputs)."
            )
        arr = np.asarray(times)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"times must be real numbers; received {quote(times)}.")
        arr = np.atleast_1d(arr.astype(np.float64))
        if arr.ndim != 1:
            raise ValueError(f"times must be a 1-D array, got shape {arr.shape}")
        bad = ~(np.isfinite(arr) & (arr >= self.t0))
        if bad.any():
            early = arr[bad & np.isfinite(arr)]
            parts = []
            if early.size:
                parts.append(f"{early.tolist()} before t0={self.t0}")
            if (~np.isfinite(arr)).any():
                parts.append(f"{arr[~np.isfinite(arr)].tolist()} not finite")
            raise ValueError(
                f"times must be finite and >= t0={self.t0}; offending times (at index "
                f"{np.nonzero(bad)[0].tolist()}): {' and '.join(parts)}. The model returns "
                "NaN there: drop those times, or build the model with an earlier t0."
            )
        return arr

    def _prepare_times(self, times):
        times = jnp.asarray(times)
        times = times.astype(jnp.promote_types(times.dtype, _default_float()))
        if times.ndim != 1:
            raise ValueError(f"times must be a 1-D array, got shape {times.shape}")
        # diffrax needs t0 <= ts <= t1 and sorted ts, and raises (even with throw=False)
        # otherwise. We solve at sorted admissible times and map back; inadmissible times
        # (non-finite or before t0) become NaN outputs.
        valid = jnp.isfinite(times) & (times >= self.t0)
        safe = jnp.where(valid, times, self.t0)
        if self.throw:
            safe = eqx.error_if(safe, ~valid, "ode_model: times must be finite and >= t0.")
        return times, safe, valid

    def _initial_ok(self, params, y0) -> jax.Array:
        """Whether ``y0`` and ``rhs(t0, y0)`` are finite (NaN parameters show up here)."""
        dy0 = self._rhs(jnp.asarray(self.t0, y0.dtype), y0, params)
        if dy0.shape != y0.shape:  # static, also under jit/vmap: say so before diffrax does
            raise ValueError(
                f"ode_model: rhs returned shape {dy0.shape} but the state y0 has shape "
                f"{y0.shape}; rhs(t, y, params) must return dy/dt with the shape of y."
            )
        return jnp.all(jnp.isfinite(y0)) & jnp.all(jnp.isfinite(dy0))

    def _diffeqsolve(self, params, ts_sorted) -> tuple[diffrax.Solution, jax.Array]:
        """Solve from t0 to max(ts_sorted), saving at the (sorted, admissible) times.

        Returns the solution and whether the initial state and slope were finite.
        """
        if ts_sorted.shape[0] == 0:
            raise ValueError("times must contain at least one measurement time")
        y0 = self.initial_state(params)
        init_ok = self._initial_ok(params, y0)
        if self.throw:
            y0 = eqx.error_if(
                y0, ~init_ok, "ode_model: y0 or rhs(t0, y0) is not finite (NaN parameters?)."
            )
        # A non-finite start would make the step-size controller reject every step until
        # max_steps (and, under vmap, hold up the whole batch): solve the empty interval
        # [t0, t0] instead and report the point as failed.
        ts_sorted = jnp.where(init_ok, ts_sorted, self.t0)
        with unchecked_save_times(not self.throw):  # serializable kernels
            sol = diffrax.diffeqsolve(
                self._term,
                self.solver,
                t0=self.t0,
                t1=ts_sorted[-1],
                dt0=self.dt0,
                y0=y0,
                # Python-number leaves would be static to diffeqsolve's filter_jit (one
                # compilation per value in eager use): pass them as arrays.
                args=jax.tree_util.tree_map(as_array_if_number, params),
                saveat=diffrax.SaveAt(ts=ts_sorted),
                stepsize_controller=self.stepsize_controller,
                adjoint=self.adjoint,
                max_steps=self.max_steps,
                throw=self.throw,
            )
        return sol, init_ok

    def solve(self, params, times) -> diffrax.Solution | SegmentedSolution:
        """Raw :class:`diffrax.Solution` at the admissible ``times``, sorted ascending
        (with doses, inputs or pre-equilibration: a summary with ``result``, ``stats``).

        For diagnostics (``sol.result``, ``sol.stats``); use the model call for values.
        If ``y0`` or ``rhs(t0, y0)`` is not finite the solve covers only ``[t0, t0]``.
        """
        raw = jnp.atleast_1d(jnp.asarray(measurement_times(times, self.times_key)))
        _, safe, _ = self._prepare_times(raw)
        if self._solvers is not None:
            args = (self, self._solvers, self.events, params, times, jnp.sort(safe))
            return solve_schedule(*args)[1]
        return self._diffeqsolve(params, jnp.sort(safe))[0]

    # -- the forward model ------------------------------------------------------------
    def _evaluate(self, params, design, observe=True):
        """(outputs, diffrax solution, initial state finite?) at the design's times."""
        times = jnp.atleast_1d(jnp.asarray(measurement_times(design, self.times_key)))
        times, safe, valid = self._prepare_times(times)
        order = jnp.argsort(safe)
        # The solver only sees the times as data; their derivatives are attached exactly
        # by _taylor_in_time (dy/dt = f), which is cheaper and more accurate than
        # differentiating through the adaptive steps and the dense-output interpolant.
        if self._solvers is not None:
            t_sorted = safe[order]
            args = (self, self._solvers, self.events, params, design)
            ys, sol, init_ok, (tau, seg, rates, inputs) = solve_schedule(
                *args, jax.lax.stop_gradient(t_sorted)
            )
            ys = taylor_from(self._solvers.rhs, params, t_sorted, tau, ys, rates, inputs, seg)
            ys = jnp.empty_like(ys).at[order].set(ys)
        else:
            sol, init_ok = self._diffeqsolve(params, jax.lax.stop_gradient(safe[order]))
            assert sol.ys is not None  # diffeqsolve saves at `ts`, so ys is always there
            ys = jnp.empty_like(sol.ys).at[order].set(sol.ys)
            ys = _taylor_in_time(self._rhs, safe, ys, params)
        ok = (sol.result == diffrax.RESULTS.successful) & init_ok & valid
        # Multiplying by NaN (not jnp.where) makes the derivatives NaN too, so a failed
        # solve can never yield a finite, wrong Fisher matrix.
        flag = jnp.where(ok, 1.0, jnp.nan).astype(ys.dtype)
        ys = ys * flag.reshape(flag.shape + (1,) * (ys.ndim - 1))
        observe_fn = self.observe if observe else None
        if observe_fn is not None:
            ys = jax.vmap(lambda y: jnp.asarray(observe_fn(y, params)))(ys)
        return ys, sol, init_ok

    def states(self, params, times) -> jax.Array:
        """State ``y(t)`` at 1-D ``times`` (unsorted allowed), shape ``(n_times, *y.shape)``.

        NaN for every time if the solve failed, and NaN at inadmissible times.
        """
        return self._evaluate(params, times, observe=False)[0]

    def __call__(self, params, times) -> jax.Array:
        """Observables at ``times``: ``observe(y(t), params)`` stacked over ``times``.

        ``times`` is the design: the measurement times, or a dict holding them under
        ``times_key`` (default ``"times"``) next to entries the dosing callables read.
        """
        scalar = np.ndim(measurement_times(times, self.times_key)) == 0
        out = self._evaluate(params, times)[0]
        return out[0] if scalar else out


def _taylor_in_time(rhs, times, ys, params):
    """Attach exact time derivatives to ``ys``, the solution at stop-gradient-ed ``times``.

    With ``δ = t - stop_gradient(t)`` (value 0, ``dδ/dt = 1``) returns

        y(t) ≈ Y + δ f(t, Y, θ) + δ²/2 (∂f/∂t + ∂f/∂y · f)(t, Y, θ),

    the second-order Taylor expansion of the solution about the solved point (value:
    exactly ``Y``). Hence ``∂y/∂t = f`` and ``∂²y/∂t² = ∂f/∂t + ∂f/∂y f`` exactly, and the
    mixed ``∂²y/∂t∂θ = ∂f/∂y ∂Y/∂θ + ∂f/∂θ`` in either differentiation order. Because the
    solver itself never sees a time tangent, ``jax.grad`` with respect to the times of a
    ``jax.jacfwd``-based Fisher matrix works even with ``adjoint="forward"``.
    """
    t_c = jax.lax.stop_gradient(times)
    delta = times - t_c

    def terms(t, y):
        def f(t_, y_):
            return jnp.asarray(rhs(t_, y_, params), dtype=y.dtype).reshape(y.shape)

        slope = f(t, y)
        # Directional derivative along the trajectory: d f(t, y(t))/dt = f_t + f_y f.
        _, curvature = jax.jvp(f, (t, y), (jnp.ones_like(t), slope))
        return slope, curvature

    slope, curvature = jax.vmap(terms)(t_c, ys)
    d = delta.astype(ys.dtype).reshape(delta.shape + (1,) * (ys.ndim - 1))
    return ys + d * slope + 0.5 * d * d * curvature


def ode_model(
    rhs: Callable,
    y0: Any,
    observe: Callable | None = None,
    *,
    t0: float = 0.0,
    solver: diffrax.AbstractSolver | None = None,
    stiff: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    dt0: float | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    adjoint: str | diffrax.AbstractAdjoint = "forward",
    throw: bool = False,
    doses: Any = None,
    infusions: Any = None,
    inputs: Any = None,
    dose_into: int = 0,
    preequilibrate: bool = False,
    times_key: str = "times",
) -> ODEModel:
    """Make a forward model ``model(params, times)`` from an ODE ``dy/dt = rhs(t, y, params)``.

    The ODE is solved with :func:`diffrax.diffeqsolve` from ``t0`` to ``max(times)`` with an
    adaptive PID step-size controller, saving at ``times`` (which may be unsorted and may
    include ``t0`` itself, where ``y0`` is returned).

    **Arguments**

    - `rhs`: ``rhs(t, y, params) -> dy/dt``, ``y`` a JAX array (scalar or 1-D), ``params``
      the parameter dict.
    - `y0`: initial state ``y(t0)``: an array, or a callable ``y0(params)`` so that
      parameters (initial amounts, doses) can enter the initial condition.
    - `observe`: ``observe(y, params) -> observable(s)``, applied at each time; default
      identity (the whole state is observed).
    - `t0`: initial time (a Python float). All measurement times must be ``>= t0``.
    - `solver`: any diffrax solver; default :class:`diffrax.Tsit5`, or
      :class:`diffrax.Kvaerno5` when ``stiff=True``.
    - `stiff`: use the implicit ``Kvaerno5`` and a smoother PI controller (for stiff
      kinetics, e.g. widely separated rate constants).
    - `rtol`, `atol`: tolerances of the :class:`diffrax.PIDController`: finite, ``rtol > 0``
      and ``atol >= 0``, scalars or arrays with one value per state component. The
      defaults aim at ~1e-8 relative accuracy and assume float64
      (``jax.enable_x64(True)``); under float32 use ``rtol >= 1e-6``.
    - `max_steps`: maximum number of solver steps before the solve is declared failed (a
      positive integer).
    - `dt0`: initial step, a finite number ``> 0``; ``None`` lets diffrax choose.
    - `stepsize_controller`: overrides the PID controller built from ``rtol``/``atol``.
    - `adjoint`: how derivatives go through the solver: ``"forward"`` (default;
      ``jax.jacfwd``/``jax.jvp``, the engine's default), ``"reverse"`` (``jax.grad``/
      ``jax.jacrev``, checkpointed), ``"direct"`` (both, slower) or a diffrax adjoint.
      Derivatives with respect to ``times`` work in either mode.
    - `throw`: if ``False`` (default) a failed solve (``max_steps`` reached, step size
      collapse, NaN in the dynamics) returns NaN for every output of that parameter
      point, so one bad item of a ``vmap``-ed batch does not abort the others; if
      ``True`` diffrax raises instead.
    - `doses`: bolus doses, ``(times, amounts)`` (1-D arrays of equal length) or a callable
      ``doses(params, design) -> (times, amounts)``, so that amounts and times can be
      parameters or design variables. Each amount is added to state component
      `dose_into` at its time (amounts of shape ``(n, *y.shape)`` give the whole jump).
      The state is right-continuous: a measurement at a dose time sees the dose.
    - `infusions`: zero-order inputs, ``(starts, durations, rates)`` or a callable
      ``(params, design) -> (starts, durations, rates)``; each rate is added to
      ``dy/dt`` of component `dose_into` from ``start`` to ``start + duration``.
    - `inputs`: a piecewise-constant input ``u(t)``, ``(breakpoints, values)`` or a
      callable returning them, with ``len(values) == len(breakpoints) + 1``
      (``values[0]`` holds before the first breakpoint). The rhs then takes it:
      ``rhs(t, y, params, u)``.
    - `dose_into`: the state component that doses and infusions go into (default 0).
    - `preequilibrate`: run the system to steady state before ``t0`` (with ``rhs``
      evaluated at ``t = t0`` and, with `inputs`, ``u = values[0]``), starting from
      `y0`, and start the experiment from that steady state. Its parameter derivatives
      are the exact implicit-function ones, ``∂y*/∂θ = -J⁻¹ ∂f/∂θ``.
    - `times_key`: when the design is a dict (e.g. ``{"times": ts, "dose": d}`` so that a
      dose can be a design variable), the entry holding the measurement times.

    Event times (doses, infusion starts and ends, breakpoints) must be ``>= t0``; fixed
    ones are checked here, traced ones give NaN outputs when before ``t0``. Their number
    is fixed by the array shapes; their values and sizes can be anything traceable, and
    ``jax.jacfwd`` derivatives with respect to them are exact (each segment between
    events is solved on a fixed interval, with the event times as arguments).

    **Returns**

    An :class:`ODEModel`; ``model(params, times)`` has shape ``(n_times,)`` for a scalar
    state/observable and ``(n_times, *obs_shape)`` otherwise. Times before ``t0`` or not
    finite give NaN; ``model.check_times(times)`` names them.

    **Raises**

    `TypeError` / `ValueError` at construction for a non-callable `rhs` or `observe` or an
    invalid `t0`, `rtol`, `atol`, `max_steps` or `dt0` (the message names the argument);
    `ValueError` when first called if ``rhs`` returns a shape other than that of ``y0``;
    a `TypeError` saying what to change when ``rhs`` returns a list, calls NumPy on a
    traced value or branches with a Python ``if`` on a parameter.
    With ``throw=True``, ``equinox.EquinoxRuntimeError`` (a ``RuntimeError``) at run time
    when the solve fails or a time is inadmissible. Use :func:`check_solve` to diagnose
    NaN outputs when ``throw=False``.

    **Example**

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> # Exponential decay y' = -k y, y(0) = A:  y(t) = A exp(-k t).
    >>> model = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=lambda p: p["A"])
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=jnp.array([0.5, 1.0, 2.0]))
    >>> F = ff.fisher(exp, {"k": 0.5, "A": 2.0})
    >>> t = np.array([0.5, 1.0, 2.0])  # closed form: dy/dk = -A t e^{-kt}, dy/dA = e^{-kt}
    >>> J = np.stack([-2.0 * t * np.exp(-0.5 * t), np.exp(-0.5 * t)], axis=1)
    >>> bool(np.allclose(F.matrix, J.T @ J / 0.01, rtol=1e-6))
    True
    >>> # Two oral doses of 100 at t = 0 and 12 into the gut (state 0), absorbed at ka:
    >>> def pk(t, y, p):
    ...     return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["ke"] * y[1]])
    >>> dosed = ff.ode_model(pk, y0=jnp.zeros(2), observe=lambda y, p: y[1] / p["V"],
    ...                      doses=([0.0, 12.0], [100.0, 100.0]))
    >>> c = dosed({"ka": 1.0, "ke": 0.2, "V": 10.0}, jnp.array([13.0]))
    >>> def one(t):  # the closed form of one dose, superposed
    ...     return 100 / 10 * 1.0 / (1.0 - 0.2) * (np.exp(-0.2 * t) - np.exp(-1.0 * t))
    >>> bool(np.allclose(c, one(13.0) + one(1.0), rtol=1e-7))
    True

    ```
    """
    if not callable(rhs):
        raise TypeError(
            f"ode_model: `rhs` must be callable as rhs(t, y, params); received {quote(rhs)}."
        )
    if observe is not None and not callable(observe):
        raise TypeError(
            "ode_model: `observe` must be None or callable as observe(y, params); received "
            f"{quote(observe)}."
        )
    t0 = check_t0(t0)
    rtol = check_tolerance("rtol", rtol, allow_zero=False)
    atol = check_tolerance("atol", atol, allow_zero=True)
    dt0 = check_dt0(dt0)
    max_steps = check_max_steps(max_steps)
    events = make_spec(doses, infusions, inputs, dose_into, preequilibrate, t0)
    if not isinstance(times_key, str):
        raise TypeError(f"ode_model: `times_key` must be a string; received {quote(times_key)}.")
    if solver is None:
        solver = diffrax.Kvaerno5() if stiff else diffrax.Tsit5()
    if stepsize_controller is None:
        if stiff:
            # A PI controller damps the step-size oscillations implicit solvers show on
            # stiff problems (diffrax PIDController docs; Hairer & Wanner II, IV.2).
            stepsize_controller = diffrax.PIDController(
                rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4
            )
        else:
            stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    return ODEModel(
        rhs,
        y0,
        observe,
        t0=t0,
        solver=solver,
        stepsize_controller=stepsize_controller,
        max_steps=max_steps,
        dt0=dt0,
        adjoint=_make_adjoint(adjoint),
        throw=throw,
        events=events,
        times_key=times_key,
    )


_HINTS = {
    "max_steps_reached": (
        "raise max_steps, use stiff=True if the dynamics are stiff (widely separated "
        "time scales), or loosen rtol/atol; if the solution blows up in finite time at "
        "these parameters, restrict the parameters or the measurement times"
    ),
    "dt_min_reached": (
        "the step size collapsed: check the dynamics for a blow-up or singularity at these "
        "parameters, use stiff=True, or loosen rtol/atol"
    ),
}


def check_solve(model: ODEModel, params, times) -> np.ndarray:
    """Solve eagerly at one parameter point and raise a clear error if anything failed.

    ``ode_model`` returns NaN when a solve fails (so that batched evaluation can carry
    on); this helper tells you why.

    **Arguments**

    - `model`: an :class:`ODEModel` from :func:`ode_model`.
    - `params`: one parameter dict (not a batch).
    - `times`: the measurement times.

    **Returns**

    The model outputs at ``times`` as a NumPy array (computed in float64), if all is well.

    **Raises**

    - `ValueError`: a time is not finite or lies before ``t0`` (see
      :meth:`ODEModel.check_times`).
    - `ParameterError`: the model asked for a parameter that `params` does not give.
    - `RuntimeError`: the solver failed (names the diffrax result: maximum number of steps
      reached, step size collapsed, ..., how far it got, and what to try), or it
      succeeded but the outputs are not finite (NaN produced by ``rhs``/``observe``).

    **Example**

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = ff.ode_model(lambda t, y, p: -p["k"] * y, y0=1.0, max_steps=5)
    >>> try:
    ...     ff.check_solve(model, {"k": 1.0}, jnp.array([0.0, 100.0]))
    ... except RuntimeError as err:
    ...     print("max_steps" in str(err))
    True

    ```
    """
    if not isinstance(model, ODEModel):
        raise TypeError(f"check_solve needs a model made by ode_model, got {type(model)}")
    with jax.enable_x64(True):
        design = times
        times = jnp.asarray(model.check_times(measurement_times(design, model.times_key)))
        if isinstance(design, Mapping):
            design = {**design, model.times_key: times}
        else:
            design = times
        quiet = _quiet_jitted_evaluate(model)
        try:
            out, sol, init_ok = quiet(params, design)
        except KeyError as exc:
            missing = exc.args[0] if exc.args else None
            if isinstance(missing, str) and hasattr(params, "keys") and missing not in params:
                raise ParameterError(
                    f"check_solve: the model asked for parameter {missing!r}, which `params` "
                    f"does not give. Given names: {sorted(params, key=str)}. Add {missing!r} "
                    "to the params dict."
                ) from None
            raise
        out = np.asarray(out)
        if not bool(init_ok):
            y0 = np.asarray(model.initial_state(params)).tolist()
            raise RuntimeError(
                f"ODE solve not attempted at params={_fmt_params(params)}: the initial state "
                f"y0={y0} or rhs(t0, y0) is not finite. The model returns NaN for this "
                "parameter point. What to do: check for NaN/inf parameter values and for "
                "singular expressions (division by zero, log of 0) at t0."
            )
        if not bool(sol.result == diffrax.RESULTS.successful):
            reached = np.sort(np.asarray(sol.ts))
            reached = reached[np.isfinite(reached)]
            got_to = f"t={reached[-1]:g}" if reached.size else "no time after t0"
            hint = "loosen rtol/atol or use stiff=True"
            for name, text in _HINTS.items():
                if bool(sol.result == getattr(diffrax.RESULTS, name)):
                    hint = text
            raise RuntimeError(
                f"ODE solve failed at params={_fmt_params(params)}: "
                f"{diffrax.RESULTS[sol.result]} (solver {type(model.solver).__name__}, "
                f"max_steps={model.max_steps}, {int(sol.stats['num_steps'])} steps taken, "
                f"last saved time reached {got_to}, target t1={float(jnp.max(times)):g}). "
                f"The model returns NaN for this parameter point. What to do: {hint}."
            )
        if not np.all(np.isfinite(out)):
            idx = np.unique(np.nonzero(~np.isfinite(out.reshape(out.shape[0], -1)))[0])
            raise RuntimeError(
                f"ODE solve succeeded at params={_fmt_params(params)} but the outputs are "
                f"not finite at times {np.asarray(times)[idx].tolist()}: the rhs or observe "
                "function produced NaN/inf (e.g. log/sqrt of a negative state, division "
                "by zero); check the parameter values and the model equations."
            )
    return out


register_model(ODEModel, ode_fingerprint)


def _quiet_jitted_evaluate(model: ODEModel):
    """``jax.jit(model._evaluate)`` with ``throw=False``, cached on the model so that
    repeated checks compile once. (With throw=True diffrax would raise its own error
    before we can explain it.)"""
    cached = model.__dict__.get("_check_evaluate")
    if cached is None:
        quiet = model
        if model.throw:
            quiet = object.__new__(ODEModel)
            quiet.__dict__.update(model.__dict__)
            quiet.throw = False
        cached = jax.jit(quiet._evaluate)
        model.__dict__["_check_evaluate"] = cached
    return cached


def _fmt_params(params) -> str:
    try:
        return "{" + ", ".join(f"{k!r}: {float(v):.6g}" for k, v in params.items()) + "}"
    except (AttributeError, TypeError, ValueError):
        return repr(params)
