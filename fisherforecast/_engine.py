"""The evaluation path: model → Jacobian → noise-model contraction.

Every analysis gets its Fisher matrices from here:

* :func:`evaluate` (pure: ``jit``/``vmap``/``grad``-able, call under float64) returns an
  :class:`Evaluation` — the Fisher matrix, the model output, the Jacobian, the whitened
  Jacobian (when asked for and the noise model has a data-space square root) and the noise
  model's validity flags. ``ff.fisher_information`` is its matrix; ``ff.fisher_batch`` vmaps it;
  ``ff.optimize_design`` differentiates it with respect to the design.
* :func:`evaluate_checked` (host side) runs the compiled kernels over a list of independent
  experiments, turns a failed flag into an error that names the outputs, parameters or noise
  values at fault, and sums the matrices. ``ff.fisher``, ``ff.bias``, identifiability and the
  profile likelihood go through it.

Only two compiled kernels exist per (model, shapes, names, mode): the flagged one, which moves
just the matrix and one flag to the host (the fast path of ``ff.fisher``), and the full one
(outputs and whitened Jacobians, shared by identifiability and profiles so both analyses of a
model compile it once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from ._checks import expand_names
from ._compile import cached_kernel
from ._errors import FisherError, InputError, NonFiniteError, ParameterError, quote
from ._experiment import Experiment
from ._x64 import float64


# ---------------------------------------------------------------------------------------
# Parameters: dict <-> the vector of varied parameters
# ---------------------------------------------------------------------------------------
def params_from_vector(theta, names: Sequence[str], fixed: Mapping, shapes=None) -> dict:
    """The full parameter dict: ``fixed`` values updated with the varied ones from ``theta``.

    Without ``shapes`` every name is a scalar, ``theta[i]`` for ``names[i]``; with ``shapes``
    (one shape per name) each name takes the next ``prod(shape)`` entries of ``theta``,
    reshaped: an array-valued parameter is one slice of the vector, so tracing and compiling
    do not grow with its size.
    """
    params = dict(fixed)
    if shapes is None or not any(shapes):
        params.update({n: theta[i] for i, n in enumerate(names)})
        return params
    start = 0
    for n, shape in zip(names, shapes, strict=True):
        size = math.prod(shape)
        params[n] = theta[start] if not shape else theta[start : start + size].reshape(shape)
        start += size
    return params


def split(fiducial: Mapping, names: Sequence[str]):
    """``(theta, to_params)``: the varied parameters as a float64 vector (array-valued
    parameters flattened in C order, in the order of ``names``), and the map back to a full
    parameter dict (the other fiducial values held fixed)."""
    values = [jnp.asarray(fiducial[n], dtype=jnp.float64) for n in names]
    shapes = tuple(tuple(v.shape) for v in values)
    if any(shapes):
        theta = jnp.concatenate([v.reshape(-1) for v in values])
    else:
        theta = jnp.stack(values)
        shapes = None
    fixed = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in fiducial.items() if k not in names}
    return theta, partial(params_from_vector, names=tuple(names), fixed=fixed, shapes=shapes)


def labels_of(fiducial, names: Sequence[str]) -> tuple[str, ...]:
    """The element names of ``names`` (array-valued parameters expanded); ``names`` as
    given when the fiducial is unknown."""
    if fiducial is None:
        return tuple(names)
    return expand_names(fiducial, names)


def require_x64(what: str) -> None:
    """Refuse to compute a silent float32 result (pure functions cannot switch x64 on
    themselves: they run inside the caller's jit/vmap/grad)."""
    if jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise FisherError(
            f"{what} computes in float64, but JAX is in float32 mode here. Call it inside "
            "`with jax.enable_x64(True):` (around your jit/vmap/grad too), or use ff.fisher, "
            "which does that itself."
        )


def _leaves(tree) -> list:
    """Pytree leaves, tolerating dicts whose keys do not sort (those are checked later)."""
    if isinstance(tree, Mapping):
        return [leaf for v in tree.values() for leaf in _leaves(v)]
    if isinstance(tree, list | tuple):
        return [leaf for v in tree for leaf in _leaves(v)]
    try:
        return jax.tree_util.tree_leaves(tree)
    except (TypeError, ValueError):
        return []


def refuse_tracers(what: str, *args) -> None:
    """Host-side entry points (``ff.fisher``, ``ff.bias``) return numpy values and cannot
    run inside ``jax.jit``/``grad``/``vmap``: say so, and name the pure function to use."""
    for leaf in _leaves(args):
        if isinstance(leaf, jax.core.Tracer):
            raise InputError(
                f"{what} received a traced value ({type(leaf).__name__}): it returns numpy "
                "results and cannot run inside jax.jit, jax.grad or jax.vmap. Transform the "
                "pure function ff.fisher_information(experiment, fiducial, names) instead, "
                "under `with jax.enable_x64(True):`."
            )


# ---------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------
class TrackedParams(dict):
    """The parameter dict handed to the model: a plain dict that records the names the
    model looked up and did not find, so that a ``KeyError`` from the model's *own* lookup
    tables is not mistaken for a missing parameter. A pytree like ``dict``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.missing: list = []

    def __missing__(self, key):
        self.missing.append(key)
        raise KeyError(key)


jax.tree_util.register_pytree_with_keys(
    TrackedParams,
    lambda d: (tuple((jax.tree_util.DictKey(k), d[k]) for k in sorted(d)), tuple(sorted(d))),
    lambda keys, values: TrackedParams(zip(keys, values, strict=True)),
    flatten_func=lambda d: (tuple(d[k] for k in sorted(d)), tuple(sorted(d))),
)


def call_model(experiment: Experiment, params):
    """The model output at ``params`` as a floating JAX array (a missing parameter raises
    :class:`ParameterError`; a dict, ``None``, a string or an integer/boolean output a
    ``TypeError``)."""
    tracked = TrackedParams(params)
    try:
        out = experiment(tracked)
    except KeyError as exc:
        missing = exc.args[0] if exc.args else "?"
        if isinstance(missing, str) and missing not in params and missing in tracked.missing:
            raise ParameterError(
                f"The model of {experiment.label} asked for parameter {missing!r}, which the "
                f"fiducial does not give. Fiducial names: {sorted(params)}. Add {missing!r} "
                "to the fiducial dict."
            ) from None
        raise
    return as_output_array(experiment, out)


def as_output_array(experiment: Experiment, out):
    """The model's return value as a floating JAX array, or a ``TypeError`` saying what the
    model returned instead."""
    if isinstance(out, Mapping):
        raise TypeError(
            f"The model of {experiment.label} returned a dict (keys {list(out)[:5]}); it must "
            "return an array (stack several observables with jnp.stack or jnp.concatenate)."
        )
    if out is None or isinstance(out, str | bytes):
        raise TypeError(
            f"The model of {experiment.label} returned {quote(out)}; it must return an array "
            "of floats (did the function forget its `return`?)."
        )
    try:
        arr = jnp.asarray(out)
    except TypeError as exc:
        raise TypeError(
            f"The model of {experiment.label} returned {quote(out)} "
            f"(type {type(out).__name__}), which is not an array of numbers: {exc}"
        ) from None
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        raise TypeError(
            f"The model of {experiment.label} returned an integer or boolean array (dtype "
            f"{arr.dtype}, shape {tuple(arr.shape)}): its derivative with respect to every "
            "parameter is zero, so the Fisher matrix would be zero. Return floats (remove "
            "the astype/round/comparison that makes the output integer)."
        )
    return arr


def jacobian(
    experiment: Experiment, fiducial: Mapping, names: Sequence[str], mode: str = "forward"
):
    """Model output and its Jacobian at the fiducial. Pure; call under float64.

    Returns ``(mean, J)`` with ``mean`` in the model's output shape and ``J`` of shape
    ``(N, P)`` over the flattened output (complex when the output is complex).

    ```python
    >>> import jax, jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t**2, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.arange(3.0))
    >>> with jax.enable_x64(True):
    ...     mean, J = ff.jacobian(exp, {"a": 2.0}, ["a"])
    >>> J[:, 0].tolist()
    [0.0, 1.0, 4.0]
    ```
    """
    require_x64("ff.jacobian")
    names = tuple(names)
    theta, to_params = split(fiducial, names)

    if mode == "forward":
        # Forward mode pushes the P tangents through complex outputs as they are; splitting
        # them into real and imaginary parts first costs about twice the time (measured on
        # the TaylorF2 benchmark, see docs/benchmarks.md).
        def flat(th):
            out = call_model(experiment, to_params(th))
            return out.reshape(-1), out

        J, mean = jax.jacfwd(flat, has_aux=True)(theta)
        return mean, J

    def flat_real(th):
        out = call_model(experiment, to_params(th))
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


class Evaluation(NamedTuple):
    """One experiment evaluated at one fiducial (a pytree; arrays may be traced).

    Attributes:
        fisher: ``(P, P)`` Fisher matrix (symmetrised), covariance term included.
        mean: the model output, in its own shape.
        jacobian: ``(N, P)`` over the flattened output.
        whitened: ``W^½ J`` (real, ``(M, P)``) when asked for and the noise model has a
            data-space square root and does not depend on the parameters; else ``None``.
        checks: the noise model's validity flags, dict message -> bool.
    """

    fisher: jax.Array
    mean: jax.Array
    jacobian: jax.Array
    whitened: jax.Array | None
    checks: dict

    @property
    def finite_output(self):
        return jnp.all(jnp.isfinite(self.mean))

    @property
    def finite_jacobian(self):
        return jnp.all(jnp.isfinite(self.jacobian))

    @property
    def noise_ok(self):
        ok = jnp.asarray(True)
        for flag in self.checks.values():
            ok = ok & jnp.asarray(flag, dtype=bool)
        return ok

    @property
    def ok(self):
        """Output and Jacobian finite, and every noise check passed (traced bool)."""
        return self.finite_output & self.finite_jacobian & self.noise_ok


def evaluate(
    experiment: Experiment,
    fiducial: Mapping,
    names: Sequence[str],
    mode: str = "forward",
    *,
    whiten: bool = False,
) -> Evaluation:
    """Evaluate one experiment at one fiducial. Pure; call under float64.

    ``F = inner(J, J) + covariance_information + cross_information`` with the noise
    model's own metric.
    """
    names = tuple(names)
    mean, J = jacobian(experiment, fiducial, names, mode)
    noise, design = experiment.noise, experiment.design
    noise.check_output(mean.shape, mean.dtype, design)
    theta, to_params = split(fiducial, names)
    params = to_params(theta)
    F = noise.inner(J, J, mean, params, design)
    if getattr(noise, "mean_dependent", False):  # noise from the mean: no second solve
        extra = noise.covariance_information(mean, theta, to_params, design, mode, mean_jacobian=J)
    else:
        extra = noise.covariance_information(mean, theta, to_params, design, mode)
    if extra is not None:
        F = F + extra
    cross = noise.cross_information(J, mean, theta, to_params, design, mode)
    if cross is not None:
        F = F + cross
    F = 0.5 * (F + F.T)
    whitened = None
    if whiten and not noise.parameter_dependent:
        # With parameter-dependent noise the covariance term is not a data-space metric:
        # analyses then use a square root of F instead.
        whitened = noise.whiten(J, mean, params, design)
    return Evaluation(F, mean, J, whitened, noise.checks(mean, params, design))


def fisher_information(
    experiment: Experiment, fiducial: Mapping, names: Sequence[str], mode: str = "forward"
):
    """The Fisher matrix as a JAX array, shape ``(P, P)``. Pure; call under float64.

    This is the function that :func:`ff.fisher` compiles, and that batching and design
    optimisation transform with ``vmap`` and ``grad``.

    ```python
    >>> import jax, jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.5),
    ...                     design=jnp.arange(1.0, 4.0))
    >>> with jax.enable_x64(True):
    ...     F = ff.fisher_information(exp, {"a": 1.0}, ["a"])
    >>> float(F[0, 0])   # Σ t² / σ²
    56.0
    ```
    """
    require_x64("ff.fisher_information")
    return evaluate(experiment, fiducial, tuple(names), mode).fisher


# ---------------------------------------------------------------------------------------
# Compiled kernels
# ---------------------------------------------------------------------------------------
def model_params(fiducial, names):
    """The parameters the model sees inside the kernels, from the fiducial argument."""
    theta, to_params = split(fiducial, names)
    return TrackedParams(to_params(theta))


def fiducial_context(args):
    """How the kernels call user code (for their fast cache keys, see ``_compile``)."""
    return args["fiducial"], partial(model_params, names=tuple(args["names"]))


@cached_kernel(static_argnames=("names", "mode"), context=fiducial_context)
def evaluation_kernel(experiment, fiducial, names, mode):
    """One experiment's :class:`Evaluation` (whitened Jacobian included), its validity flag
    and, per parameter, whether any derivative is nonzero (for :func:`raise_if_underflow`,
    so that a structural zero needs no second compilation).

    This is the one compiled evaluation that ``ff.fisher``, identifiability, profiles, the
    bias and DALI share: a script that calls several of them on one experiment compiles
    its model once, and experiments of equal structure share the compilation.
    """
    ev = evaluate(experiment, fiducial, names, mode, whiten=True)
    P = ev.fisher.shape[-1]
    return ev, ev.ok, jnp.any(ev.jacobian.reshape(-1, P) != 0, axis=0)


def full_kernel(experiments, fiducial, names, mode) -> tuple:
    """Every experiment's :class:`Evaluation`, one :func:`evaluation_kernel` call each."""
    return tuple(evaluation_kernel(exp, fiducial, names, mode)[0] for exp in experiments)


jacobian_kernel = cached_kernel(
    jacobian, static_argnames=("names", "mode"), context=fiducial_context
)


# ---------------------------------------------------------------------------------------
# Host side: checked evaluation of independent experiments
# ---------------------------------------------------------------------------------------
class Checked(NamedTuple):
    """The summed Fisher matrix of independent experiments, checked (numpy float64).

    ``means`` and ``whitened`` (one entry per experiment; a whitened entry is ``None``
    where the noise model has no data-space square root) are filled by
    ``evaluate_checked(..., detail=True)`` only, ``jacobians`` (``(N, P)`` over each
    flattened output, complex for a complex model) by ``jacobians=True`` only (empty
    otherwise).
    """

    fisher: np.ndarray
    means: tuple = ()
    whitened: tuple = ()
    jacobians: tuple = ()


class ModelRuntimeError(FisherError):
    """The model raised an error while it ran compiled (``equinox.error_if``, an ODE solver
    set to throw): the message carries the model's own words."""


def runtime_message(exc: Exception) -> str:
    """The model's own message out of a ``JaxRuntimeError`` (whose text is a host callback's
    traceback): the last ``SomethingError: message`` line, else the first line."""
    text = str(exc)
    found = re.findall(
        r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Warning)): (.*?)(?=\n\s*\n|\Z)",
        text,
        flags=re.M | re.S,
    )
    if found:
        return found[-1][1].strip()
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


@contextmanager
def model_runtime_errors(experiments):
    """Turn a runtime error raised inside compiled model code into a :class:`ModelRuntimeError`
    naming the experiment(s) and quoting the model's message."""
    try:
        yield
    except jax.errors.JaxRuntimeError as exc:
        labels = " / ".join(e.label for e in experiments)
        raise ModelRuntimeError(
            f"The model of {labels} raised an error while it ran at the fiducial: "
            f"{runtime_message(exc)!r}. Check the model at these parameter values (an "
            "equinox.error_if condition, or an ODE solver that failed: "
            "ff.check_solve(model, params, times) names the solver failure)."
        ) from exc


def evaluate_checked(experiments, fid64, names, mode, *, detail=False, jacobians=False) -> Checked:
    """Evaluate and check each experiment, and sum the matrices. Call under float64.

    ``fid64`` holds numpy float64 values. Raises :class:`NonFiniteError` naming the outputs
    or parameters at fault, an :class:`InputError` quoting failed noise values, or a
    :class:`ModelRuntimeError` with the model's own message when it raised at run time.
    """
    names = tuple(names)
    size = len(labels_of(fid64, names))
    total = np.zeros((size, size))
    means, blocks, depends, jacs = [], [], [], []
    for exp in experiments:
        with model_runtime_errors([exp]):
            ev, ok, dep = evaluation_kernel(exp, fid64, names, mode)
            ok = bool(ok)  # waits for the run, inside the context that names the model
        if not ok or detail or jacobians:
            ev = jax.device_get(ev)
        if not ok:
            raise_if_invalid(exp, ev, names, fid64, mode)
        total = total + np.asarray(ev.fisher, dtype=np.float64)
        depends.append(np.asarray(dep, dtype=bool))
        if detail:
            means.append(np.asarray(ev.mean))
            blocks.append(None if ev.whitened is None else np.asarray(ev.whitened, np.float64))
        if jacobians:
            jacs.append(np.asarray(ev.jacobian))
    result = Checked(total, tuple(means), tuple(blocks), tuple(jacs))
    raise_if_underflow(experiments, result.fisher, fid64, names, mode, depends)
    if not np.all(np.isfinite(result.fisher)):
        raise NonFiniteError(
            "The Fisher matrix has NaN/inf entries although the model and its derivatives "
            "are finite: the noise weights overflowed. Rescale the data (or sigma) so that "
            "1/sigma² stays below ~1e300."
        )
    return result


#: Fisher information below this is the square of whitened derivatives of order 1e-145 or
#: less: its terms fall near or below float64's smallest normal number (2.2e-308) and lose
#: digits or flush to zero.
TINY_INFORMATION = 1e-290


class UnderflowError(FisherError):
    """The Fisher information of some parameter underflowed float64: the model does depend
    on it, but the whitened derivatives are so small that their squares flush to zero."""


def raise_if_underflow(experiments, fisher, fid64, names, mode, depends=None) -> None:
    """Raise :class:`UnderflowError` when a diagonal entry is below ``TINY_INFORMATION``
    although some experiment's derivative with respect to that parameter is nonzero.

    ``depends`` (one boolean vector per experiment: has the parameter any nonzero
    derivative?) comes from the kernels that made ``fisher``; where it says that no
    experiment depends on the tiny entries (a structural zero), the Jacobian is not
    evaluated again."""
    diag = np.diag(fisher)
    tiny = np.nonzero(np.isfinite(diag) & (np.abs(diag) < TINY_INFORMATION))[0]
    if tiny.size == 0:
        return
    if depends is not None and not any(np.any(np.asarray(d)[tiny]) for d in depends):
        return
    labels = labels_of(fid64, names)
    for exp in experiments:
        _, J = jacobian_kernel(exp, fid64, names, mode)  # pyright: ignore[reportCallIssue]
        J = np.abs(np.asarray(J)).reshape(-1, len(labels))
        hit = [int(i) for i in tiny if np.any(J[:, i] != 0)]
        if not hit:
            continue
        bad = [labels[i] for i in hit]
        raise UnderflowError(
            f"The Fisher information of {bad} from {exp.label} underflows float64: "
            f"F = {[float(diag[i]) for i in hit]} although the model depends on them (largest "
            f"|d output / d parameter| = {[float(J[:, i].max()) for i in hit]}). Derivatives "
            "divided by the noise of order 1e-145 or less square to below the smallest float64 "
            "(2.2e-308), so their information is rounded or flushed to zero. Rescale the model "
            "output and the noise together (express the data in units where the values are "
            "not tiny), or rescale the parameter (e.g. fit a·1e150 instead of a)."
        )


def raise_if_invalid(experiment, evaluation, names, fiducial=None, mode="forward") -> None:
    """Turn a failed :class:`Evaluation` into an error that says where and what to do."""
    names = tuple(names)
    mean = np.asarray(evaluation.mean)
    _raise_bad_output(experiment, mean)
    _raise_bad_jacobian(experiment, mean, np.asarray(evaluation.jacobian), names, fiducial, mode)
    checks = jax.device_get(evaluation.checks)
    for message, ok in checks.items():
        if not bool(ok):
            detail = ""
            if fiducial is not None:
                with float64():
                    theta, to_params = split(fiducial, names)
                    values = experiment.noise.check_values(
                        jnp.asarray(mean), to_params(theta), experiment.design
                    )
                v = np.asarray(values.get(message, [])).reshape(-1)
                bad = np.nonzero(~(np.isfinite(v) & (v > 0)))[0][:5]
                if bad.size:
                    detail = (
                        f"; received {[float(v[i]) for i in bad]} at flattened index {bad.tolist()}"
                    )
            raise InputError(
                f"Noise model of {experiment.label}: {message}, at the fiducial{detail}."
            )


def _raise_bad_output(experiment, mean):
    bad = ~np.isfinite(mean)
    if not np.any(bad):
        return
    label = experiment.label
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


def _raise_bad_jacobian(experiment, mean, J, names, fiducial, mode):
    badJ = ~np.isfinite(J)
    if not np.any(badJ):
        return
    labels = labels_of(fiducial, names)
    cols = [labels[j] for j in np.nonzero(badJ.any(axis=0))[0]]
    if mode == "forward" and fiducial is not None and len(cols) > 1:
        # Forward mode multiplies zero tangents by an infinite local derivative, which
        # smears one parameter's inf over every column; reverse mode localises columns.
        with float64():
            kernel = jacobian_kernel
            _, J_rev = kernel(experiment, fiducial, names, "reverse")  # pyright: ignore[reportCallIssue]
            finite_rev = np.atleast_1d(np.isfinite(np.asarray(J_rev)).all(axis=0))
        both = [n for i, n in enumerate(labels) if not finite_rev[i] and n in cols]
        cols = both or cols
    rows = np.nonzero(badJ.any(axis=1))[0]
    idx = [tuple(int(i) for i in np.unravel_index(r, mean.shape)) for r in rows[:5]]
    raise NonFiniteError(
        f"The derivative of the model of {experiment.label} is NaN/inf with respect to {cols} "
        f"at output index {idx} ({len(rows)} outputs in all). The model is finite there but "
        "not differentiable: look for sqrt/abs/where at a kink, or a parameter at the "
        "edge of its domain."
    )
