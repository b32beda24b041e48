"""The public entry points of the evaluation path: :func:`fisher` and :func:`bias`.

They validate the input, compute under float64 through :mod:`._engine` (one checked
evaluation path for every analysis) and return numpy float64 results.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    as_experiments,
    check_fiducial,
    check_fiducial_arrays,
    check_mode,
    check_names,
    expand_names,
    flat_values,
)
from ._engine import (
    evaluate_checked,
    full_kernel,
    model_runtime_errors,
    raise_if_invalid,
    refuse_tracers,
    split,
)
from ._errors import InputError
from ._fisher_kinds import check_kind, fisher_at_data, monte_carlo_error, warn_if_inaccurate
from ._inverse import robust_inverse
from ._matrix import FisherMatrix
from ._x64 import float64


def fisher(
    experiment_or_list, fiducial, *, params=None, mode="forward", kind="expected", data=None
) -> FisherMatrix:
    """Fisher information matrix of one or several independent experiments.

    **Arguments:**

    - `experiment_or_list`: an :class:`Experiment`, or a list of independent experiments
      whose information adds. All models read their parameters from the same fiducial
      dict, so shared physics parameters are one column and each experiment's own nuisance
      parameters get rows only where that experiment depends on them.
    - `fiducial`: dict parameter name -> value at which the matrix is evaluated. A value may
      be an array (``{"calib": np.ones(100), "A": 1.0}``): the model receives it as an
      array, and the matrix names its elements ``calib[0]``, ``calib[1]``, ...
    - `params`: names of the parameters that vary (default: all of `fiducial`); the others
      are held at their fiducial values. An array-valued parameter varies as a whole.
    - `mode`: ``"forward"`` (``jax.jacfwd``, default: best for few parameters and many
      data) or ``"reverse"`` (``jax.jacrev``).
    - `kind`: ``"expected"`` (default: the average over data, what a forecast needs),
      ``"observed"`` (``−∂²ln L/∂θ∂θᵀ`` at `data`) or ``"empirical"`` (the sum of per-datum
      score outer products at `data`); see ``docs/likelihoods.md``.
    - `data`: the data for ``kind="observed"``/``"empirical"`` (model output shape; a list
      for several experiments).

    A noise model whose expected information is estimated (``ff.Likelihood`` with a
    distribution of no known closed form: by quadrature or Monte Carlo) reports the error
    of the estimate in ``F.metadata["fisher_standard_error"]`` and the method in
    ``F.metadata["information"]``.

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
    refuse_tracers("ff.fisher", experiment_or_list, fiducial)
    experiments = as_experiments(experiment_or_list)
    fid = check_fiducial_arrays(fiducial)
    names = check_names(params, fid)
    check_mode(mode, experiments)
    check_kind(kind, data)
    meta = {}
    with float64():
        fid64 = {k: np.asarray(v, dtype=np.float64) for k, v in fid.items()}
        if kind == "expected":
            total = evaluate_checked(experiments, fid64, names, mode).fisher
            error = monte_carlo_error(experiments, fid64, names, mode)
            if error is not None:
                meta["fisher_standard_error"] = error[0].tolist()
                meta["information"] = "; ".join(error[1])
                warn_if_inaccurate(total, error[2])
        else:
            total = fisher_at_data(experiments, fid64, names, mode, kind, data)
            meta["kind"] = kind
    label = "+".join(e.name for e in experiments if e.name) or None
    fixed = [k for k in fid if k not in names]
    if fixed:
        meta["fixed"] = flat_values(fid, fixed)
    return FisherMatrix(
        total,
        expand_names(fid, names),
        fiducial=flat_values(fid, names),
        name=label,
        metadata=meta or None,
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
    refuse_tracers("ff.bias", experiment, fiducial, delta_data)
    experiments = as_experiments(experiment)
    deltas = delta_data if isinstance(experiment, list | tuple) else [delta_data]
    if len(deltas) != len(experiments):
        raise InputError(
            f"`delta_data` must give one array per experiment: {len(experiments)} "
            f"experiments but {len(deltas)} arrays."
        )
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_mode(mode, experiments)
    F_total, b_total = 0.0, 0.0
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        for exp, delta in zip(experiments, deltas, strict=True):
            delta = np.asarray(delta)
            delta = delta.astype(np.complex128 if np.iscomplexobj(delta) else np.float64)
            if not np.all(np.isfinite(delta)):
                raise InputError("`delta_data` contains NaN or inf.")
            with model_runtime_errors([exp]):
                ev = jax.block_until_ready(full_kernel((exp,), fid64, names, mode)[0])
            mean = ev.mean
            if delta.shape != mean.shape:
                raise InputError(
                    f"`delta_data` has shape {delta.shape} but the model output of "
                    f"{exp.label} has shape {tuple(mean.shape)}."
                )
            if np.iscomplexobj(delta) and not jnp.iscomplexobj(mean):
                raise InputError(
                    f"`delta_data` is complex but the model output of {exp.label} is real; "
                    "give the real data shift (an imaginary part would be dropped)."
                )
            raise_if_invalid(exp, ev, names, fid64, mode)
            theta, to_params = split(fid64, names)
            b = exp.noise.inner(
                ev.jacobian, jnp.asarray(delta).reshape(-1), mean, to_params(theta), exp.design
            )
            F_total = F_total + np.asarray(ev.fisher, dtype=np.float64)
            b_total = b_total + np.asarray(b, dtype=np.float64)
    inv = robust_inverse(F_total, names, fid)
    shift = inv.covariance @ b_total
    return {n: float(s) for n, s in zip(names, shift, strict=True)}
