"""One path to a Fisher matrix: model -> Jacobian -> noise-model contraction.

The pure functions here (:func:`jacobian`, :func:`fisher_information`) take an
:class:`Experiment` pytree and a fiducial dict and are safe to ``jit``, ``vmap`` and
differentiate (e.g. with respect to the design). The public :func:`fisher` and :func:`bias`
wrap them: they validate input, compute under float64, check for non-finite values and
return numpy float64 results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import FisherError, NonFiniteError, ParameterError, quote
from ._experiment import Experiment
from ._linalg import robust_inverse
from ._matrix import FisherMatrix
from ._x64 import float64

MODES = ("forward", "reverse")


# ---------------------------------------------------------------------------------------
# Pure, transformable core
# ---------------------------------------------------------------------------------------
def _call_model(experiment: Experiment, params):
    try:
        out = experiment(params)
    except KeyError as exc:
        missing = exc.args[0] if exc.args else "?"
        if isinstance(missing, str) and missing not in params:
            label = experiment.label
            raise ParameterError(
                f"The model of {label} asked for parameter "
                f"{missing!r}, which the fiducial does not give. Fiducial names: "
                f"{sorted(params)}. Add {missing!r} to the fiducial dict."
            ) from None
        raise
    if isinstance(out, Mapping):
        raise TypeError(
            f"The model of {experiment.label} returned a dict (keys {list(out)[:5]}); it must "
            "return an array (stack several observables with jnp.stack or "
            "jnp.concatenate)."
        )
    out = jnp.asarray(out)
    if not (
        jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.complexfloating)
    ):
        out = out.astype(jnp.float64)
    return out


def _split(fiducial, names):
    theta = jnp.stack([jnp.asarray(fiducial[n], dtype=jnp.float64) for n in names])
    fixed = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in fiducial.items() if k not in names}

    def to_params(th):
        params = dict(fixed)
        params.update({n: th[i] for i, n in enumerate(names)})
        return params

    return theta, to_params


def _require_x64(what):
    """Refuse to compute a silent float32 result (the pure functions cannot switch x64 on
    themselves: they run inside the caller's jit/vmap/grad)."""
    if jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise FisherError(
            f"{what} computes in float64, but JAX is in float32 mode here. Call it inside "
            "`with jax.enable_x64(True):` (around your jit/vmap/grad too), or use ff.fisher, "
            "which does that itself."
        )


def jacobian(
    experiment: Experiment, fiducial: Mapping, names: Sequence[str], mode: str = "forward"
):
    """Model output and its Jacobian at the fiducial. Pure; call under float64.

    Returns ``(mean, J)`` with ``mean`` in the model's output shape and ``J`` of shape
    ``(N, P)`` over the flattened output (complex when the output is complex).
    """
    _require_x64("ff.jacobian")
    names = tuple(names)
    theta, to_params = _split(fiducial, names)

    if mode == "forward":
        # Forward mode pushes the P tangents through complex outputs as they are; splitting
        # them into real and imaginary parts first costs about twice the time (measured on
        # the TaylorF2 benchmark, see docs/benchmarks.md).
        def flat(th):
            out = _call_model(experiment, to_params(th))
            return out.reshape(-1), out

        J, mean = jax.jacfwd(flat, has_aux=True)(theta)
        return mean, J

    def flat_real(th):
        out = _call_model(experiment, to_params(th))
        v = out.reshape(-1)
        if jnp.iscomplexobj(v):
            # Reverse mode needs real outputs: differentiate the two parts separately.
            return jnp.concatenate([v.real, v.imag]), out
        return v, out

    J, mean = jax.jacrev(flat_real, has_aux=True)(theta)
    if jnp.iscomplexobj(mean):
        n = mean.size
        J = J[:n] + 1j * J[n:]
    return mean, J


def fisher_information(
    experiment: Experiment, fiducial: Mapping, names: Sequence[str], mode: str = "forward"
):
    """The Fisher matrix as a JAX array, shape ``(P, P)``. Pure; call under float64.

    This is the function that :func:`ff.fisher` compiles, and that batching and design
    optimisation transform with ``vmap`` and ``grad``.
    """
    _require_x64("ff.fisher_information")
    return _fisher_parts(experiment, fiducial, tuple(names), mode)[0]


def _fisher_parts(experiment, fiducial, names, mode):
    mean, J = jacobian(experiment, fiducial, names, mode)
    noise = experiment.noise
    noise.check_output(mean.shape, mean.dtype, experiment.design)
    theta, to_params = _split(fiducial, names)
    params = to_params(theta)
    F = noise.inner(J, J, params, experiment.design, mean)
    extra = noise.covariance_information(theta, to_params, experiment.design, mean.shape, mode)
    if extra is not None:
        F = F + extra
    F = 0.5 * (F + F.T)
    checks = noise.checks(params, experiment.design, mean)
    return F, mean, J, checks


_jacobian_jit = jax.jit(jacobian, static_argnames=("names", "mode"))


@partial(jax.jit, static_argnames=("names", "mode"))
def _fisher_diagnostic(experiment, fiducial, names, mode):
    return _fisher_parts(experiment, fiducial, names, mode)


@partial(jax.jit, static_argnames=("names", "mode"))
def _fisher_flagged(experiment, fiducial, names, mode):
    """The matrix plus scalar validity flags: only these cross to the host on success."""
    F, mean, J, checks = _fisher_parts(experiment, fiducial, names, mode)
    ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(J))
    for flag in checks.values():
        ok = ok & flag
    return F, ok


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------
def _as_experiments(experiment_or_list):
    if isinstance(experiment_or_list, Experiment):
        return [experiment_or_list]
    if isinstance(experiment_or_list, list | tuple) and experiment_or_list:
        bad = [e for e in experiment_or_list if not isinstance(e, Experiment)]
        if not bad:
            return list(experiment_or_list)
    raise TypeError(
        "Expected an ff.Experiment or a non-empty list of them; received "
        f"{quote(experiment_or_list)}."
    )


def check_fiducial(fiducial) -> dict:
    """Validate a fiducial dict (names -> finite real scalars); return name -> float."""
    if not isinstance(fiducial, Mapping):
        raise TypeError(
            f"`fiducial` must be a dict of parameter name -> value; received {quote(fiducial)}."
        )
    if not fiducial:
        raise ValueError("`fiducial` is empty: give at least one parameter value.")
    out = {}
    for name, value in fiducial.items():
        if not isinstance(name, str):
            raise TypeError(f"fiducial keys must be strings; received key {name!r}.")
        arr = np.asarray(value)
        if arr.shape != ():
            raise ValueError(
                f"fiducial[{name!r}] must be a scalar; received shape {arr.shape}. Split "
                "vector parameters into named scalars (e.g. 'c0', 'c1', ...)."
            )
        if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"fiducial[{name!r}] must be a real number; received {value!r}.")
        if not np.isfinite(arr):
            raise ValueError(f"fiducial[{name!r}] must be finite; received {value!r}.")
        out[name] = float(arr)
    return out


def check_names(params, fiducial) -> tuple[str, ...]:
    """The names that vary: ``params`` (validated against the fiducial) or all of them."""
    if params is None:
        return tuple(fiducial)
    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise ValueError("`params` is empty: name at least one parameter to vary.")
    dup = sorted({p for p in params if params.count(p) > 1})
    if dup:
        raise ParameterError(f"`params` lists {dup} more than once; received {params}.")
    unknown = [p for p in params if p not in fiducial]
    if unknown:
        raise ParameterError(
            f"`params` names {unknown}, which are not in the fiducial. Known parameters: "
            f"{list(fiducial)}."
        )
    return tuple(params)


def _check_mode(mode, experiments=()):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
    for exp in experiments:
        # Models may declare which derivative modes they support (e.g. ff.ode_model, whose
        # diffrax adjoint fixes it); say so instead of failing deep inside JAX.
        modes = getattr(exp.model, "autodiff_modes", None)
        if modes is not None and mode not in modes:
            raise ValueError(
                f"mode={mode!r}, but the model of {exp.label} supports only "
                f"{tuple(modes)} differentiation. For an ff.ode_model, build it with "
                "adjoint='reverse' for reverse mode (or use the default mode='forward')."
            )


def _check_finite(experiment, mean, J, checks, names, fiducial=None, mode="forward"):
    label = experiment.label
    mean = np.asarray(mean)
    bad = ~np.isfinite(mean)
    if np.any(bad):
        idx = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)[:5]]
        check_times = getattr(experiment.model, "check_times", None)
        if callable(check_times) and experiment.design is not None:
            try:  # an ff.ode_model: name observation times it cannot solve for
                check_times(experiment.design)
            except ValueError as exc:
                raise NonFiniteError(
                    f"The model of {label} returned NaN/inf at the fiducial: {exc}"
                ) from None
            except TypeError:  # a design the model cannot check (e.g. not plain times)
                pass
        raise NonFiniteError(
            f"The model of {label} returned NaN/inf at the fiducial: {int(bad.sum())} of "
            f"{mean.size} outputs, first at output index {idx}. Check the model at these "
            "parameter values (division by zero, log of a negative number, an ODE solver "
            "that failed: ff.check_solve(model, params, times) names the solver failure)."
        )
    J = np.asarray(J)
    badJ = ~np.isfinite(J)
    if np.any(badJ):
        cols = [names[j] for j in np.nonzero(badJ.any(axis=0))[0]]
        if mode == "forward" and fiducial is not None and len(cols) > 1:
            # Forward mode multiplies zero tangents by an infinite local derivative, which
            # smears one parameter's inf over every column; reverse mode localises columns.
            with float64():
                _, J_rev = _jacobian_jit(experiment, fiducial, tuple(names), "reverse")
                bad_rev = ~np.isfinite(np.asarray(J_rev)).any(axis=0)
            both = [n for n, b in zip(names, bad_rev, strict=True) if b and n in cols]
            cols = both or cols
        rows = np.nonzero(badJ.any(axis=1))[0]
        idx = [tuple(int(i) for i in np.unravel_index(r, mean.shape)) for r in rows[:5]]
        raise NonFiniteError(
            f"The derivative of the model of {label} is NaN/inf with respect to {cols} at "
            f"output index {idx} ({len(rows)} outputs in all). The model is finite there but "
            "not differentiable: look for sqrt/abs/where at a kink, or a parameter at the "
            "edge of its domain."
        )
    for message, ok in checks.items():
        if not bool(ok):
            detail = ""
            if fiducial is not None:
                with float64():
                    theta, to_params = _split(fiducial, tuple(names))
                    values = experiment.noise.check_values(
                        to_params(theta), experiment.design, jnp.asarray(mean)
                    )
                v = np.asarray(values.get(message, [])).reshape(-1)
                bad = np.nonzero(~(np.isfinite(v) & (v > 0)))[0][:5]
                if bad.size:
                    detail = (
                        f"; received {[float(v[i]) for i in bad]} at flattened index {bad.tolist()}"
                    )
            raise ValueError(f"Noise model of {label}: {message}, at the fiducial{detail}.")


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------
def fisher(experiment_or_list, fiducial, *, params=None, mode="forward") -> FisherMatrix:
    """Fisher information matrix of one or several independent experiments.

    **Arguments:**

    - `experiment_or_list`: an :class:`Experiment`, or a list of independent experiments
      whose information adds. All models read their parameters from the same fiducial
      dict, so shared physics parameters are one column and each experiment's own nuisance
      parameters get rows only where that experiment depends on them.
    - `fiducial`: dict parameter name -> value at which the matrix is evaluated.
    - `params`: names of the parameters that vary (default: all of `fiducial`); the others
      are held at their fiducial values.
    - `mode`: ``"forward"`` (``jax.jacfwd``, default: best for few parameters and many
      data) or ``"reverse"`` (``jax.jacrev``).

    **Returns:** a :class:`FisherMatrix` in float64, whatever the global JAX setting.

    **Raises:** `ParameterError` for unknown/missing names, `NonFiniteError` for NaN/inf
    model output or derivatives (it names the outputs and parameters), `ValueError` for a
    model output that does not match the noise model.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> def decay(p, t):
    ...     return p["A"] * jnp.exp(-t / p["tau"])
    >>> exp = ff.Experiment(decay, ff.Gaussian(sigma=0.1), design=jnp.linspace(0, 10, 50))
    >>> F = ff.fisher(exp, {"A": 1.0, "tau": 2.0})
    >>> F.names, F.matrix.dtype
    (('A', 'tau'), dtype('float64'))
    ```
    """
    experiments = _as_experiments(experiment_or_list)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    _check_mode(mode, experiments)
    total = None
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        for exp in experiments:
            F, ok = _fisher_flagged(exp, fid64, names, mode)
            if not bool(ok):  # rare path: fetch the outputs and Jacobian to say what failed
                _, mean, J, checks = _fisher_diagnostic(exp, fid64, names, mode)
                _check_finite(exp, mean, J, jax.device_get(checks), names, fid64, mode)
            F = np.asarray(F, dtype=np.float64)
            total = F if total is None else total + F
    if not np.all(np.isfinite(total)):
        raise NonFiniteError(
            "The Fisher matrix has NaN/inf entries although the model and "
            "its derivatives are finite: the noise weights overflowed."
        )
    label = "+".join(e.name for e in experiments if e.name) or None
    return FisherMatrix(
        total,
        names,
        fiducial={n: fid[n] for n in names},
        name=label,
        metadata={"fixed": {k: v for k, v in fid.items() if k not in names}}
        if len(names) < len(fid)
        else None,
    )


def bias(experiment, fiducial, delta_data, *, params=None, mode="forward") -> dict:
    """Fisher-bias estimate of the parameter shift caused by an unmodelled systematic.

    For data ``d = μ(θ₀) + Δμ``, the best fit moves by ``Δθ = F⁻¹ Jᵀ C⁻¹ Δμ`` to first order
    (``Jᵀ C⁻¹`` is the noise model's own metric: ``1/λ`` for Poisson, the PSD inner product
    for ``ff.PSD``).

    **Arguments:**

    - `experiment`: an :class:`Experiment`, or a list of independent experiments.
    - `fiducial`: dict of true parameter values.
    - `delta_data`: the systematic shift of the data, in the model's output shape (a list of
      them, one per experiment, for a list of experiments).
    - `params`, `mode`: as in :func:`fisher`.

    **Returns:** dict name -> shift ``Δθ``.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.arange(5.0))
    >>> shift = ff.bias(exp, {"a": 0.0, "b": 1.0}, 0.1 * jnp.arange(5.0))
    >>> {k: round(v, 6) for k, v in shift.items()}
    {'a': 0.0, 'b': 0.1}
    ```
    """
    experiments = _as_experiments(experiment)
    deltas = delta_data if isinstance(experiment, list | tuple) else [delta_data]
    if len(deltas) != len(experiments):
        raise ValueError(
            f"`delta_data` must give one array per experiment: {len(experiments)} "
            f"experiments but {len(deltas)} arrays."
        )
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    _check_mode(mode, experiments)
    F_total, b_total = 0.0, 0.0
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        for exp, delta in zip(experiments, deltas, strict=True):
            delta = np.asarray(delta)
            delta = delta.astype(np.complex128 if np.iscomplexobj(delta) else np.float64)
            if not np.all(np.isfinite(delta)):
                raise ValueError("`delta_data` contains NaN or inf.")
            F, mean, J, checks = _fisher_diagnostic(exp, fid64, names, mode)
            if delta.shape != mean.shape:
                raise ValueError(
                    f"`delta_data` has shape {delta.shape} but the model output of "
                    f"{exp.label} has shape {tuple(mean.shape)}."
                )
            if np.iscomplexobj(delta) and not jnp.iscomplexobj(mean):
                raise ValueError(
                    f"`delta_data` is complex but the model output of {exp.label} is real; "
                    "give the real data shift (an imaginary part would be dropped)."
                )
            _check_finite(exp, mean, J, jax.device_get(checks), names, fid64, mode)
            theta, to_params = _split(fid64, names)
            b = exp.noise.inner(
                J, jnp.asarray(delta).reshape(-1), to_params(theta), exp.design, mean
            )
            F_total = F_total + np.asarray(F, dtype=np.float64)
            b_total = b_total + np.asarray(b, dtype=np.float64)
    inv = robust_inverse(F_total, names, fid)
    shift = inv.covariance @ b_total
    return {n: float(s) for n, s in zip(names, shift, strict=True)}
