"""Regularisation on the non-identifiable subspace (Wang & Hao 2025)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._checks import check_fiducial
from .._errors import InputError, ParameterError, quote
from .._experiment import Experiment
from .._matrix import FisherMatrix
from .analysis import identifiability
from .factor import reference_scale
from .report import IdentifiabilityReport

_WHICH = ("structural", "practical")


def report_and_center(report_or_experiment, fiducial, params, which, kwargs):
    if which not in _WHICH:
        raise InputError(f"`which` must be one of {_WHICH}; received {which!r}.")
    if isinstance(report_or_experiment, IdentifiabilityReport):
        report = report_or_experiment
        if kwargs:
            raise TypeError(
                f"options {sorted(kwargs)} apply only when an experiment is "
                "passed; the report is already computed."
            )
    elif isinstance(report_or_experiment, Experiment | list | tuple | FisherMatrix):
        report = identifiability(report_or_experiment, fiducial, params=params, **kwargs)
    else:
        raise TypeError(
            "Expected an IdentifiabilityReport, an ff.Experiment (or a list of "
            f"them) or a FisherMatrix; received {quote(report_or_experiment)}."
        )
    if report.path == "operator":
        raise InputError(
            f"This report was computed matrix-free (P = {report.n_params}); the null-space "
            "prior is a P × P matrix. At moderate P use a dense report (path='dense', "
            "scalar parameters); report.eigenvectors holds the null and weakest directions."
        )
    center = dict(report.fiducial)
    if fiducial is not None:
        fid = check_fiducial(fiducial)
        missing = [n for n in report.names if n not in fid]
        if missing:
            raise ParameterError(
                f"`fiducial` has no value for {missing}; the report analyses {list(report.names)}."
            )
        for n in report.names:
            if (report.parameterisation[n] == "ln") != (fid[n] != 0) or (
                fid[n] * report.fiducial[n] < 0
            ):
                raise InputError(
                    f"fiducial[{n!r}] = {fid[n]!r} cannot centre the prior: the report treats "
                    f"{n!r} as {report.parameterisation[n]} around {report.fiducial[n]!r}; the "
                    "centre must have the same sign (and be non-zero for ln-parameters)."
                )
            center[n] = fid[n]
    if which == "structural":
        U = np.asarray(report._null_basis)
    else:
        lam_cut = 1.0 / report.crb_threshold**2
        ev = np.asarray(report.eigenvalues)
        U = np.asarray(report.eigenvectors)[:, ev < lam_cut]
    return report, center, U


def check_lam(lam):
    if (
        isinstance(lam, bool)
        or not isinstance(lam, int | float | np.integer | np.floating)
        or not 0 < float(lam) < math.inf
    ):
        raise InputError(f"`lam` must be a positive finite number; received {lam!r}.")
    return float(lam)


def nullspace_prior(
    report_or_experiment,
    fiducial=None,
    lam=1.0,
    *,
    params=None,
    which="structural",
    log=False,
    **identifiability_options,
) -> FisherMatrix:
    """A Gaussian prior that acts only on the non-identifiable subspace (Wang & Hao 2025).

    With ``U`` an orthonormal basis of the non-identifiable directions in **ln-parameters**
    (the null space of the sensitivity matrix for ``which="structural"``; for
    ``which="practical"`` the eigen-directions of the log-FIM whose 1σ width exceeds the
    report's `crb_threshold`), the prior's information is ``λ U Uᵀ`` in ``ln θ``. Adding it to a
    Fisher matrix leaves every direction orthogonal to ``U`` (in ln-coordinates) untouched and
    makes the matrix invertible. The matching penalty for fitting is :func:`nullspace_penalty`.

    **Arguments:**

    - `report_or_experiment`: an :class:`IdentifiabilityReport`, or an experiment (list) /
      :class:`FisherMatrix` to analyse first (extra keyword options go to
      :func:`identifiability`).
    - `fiducial`: the prior's centre ``θ*`` (default: the report's fiducial).
    - `lam`: the prior precision λ along the null directions, in units of ``(ln θ)⁻²``: its
      1σ width along each null direction is ``1/sqrt(λ)`` in ln θ.
    - `which`: ``"structural"`` (default) or ``"practical"``.
    - `log`: if ``False`` (default) the matrix is expressed in the original parameters
      (``D⁻¹ λUUᵀ D⁻¹``, ``D = diag(|θ*|)``), ready to add to ``ff.fisher(...)``; if ``True``
      it is ``λUUᵀ`` with names ``ln_<name>``, ready to add to ``F.to_log()``.

    **Returns:** a :class:`FisherMatrix` (all zeros when nothing is non-identifiable).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> fid = {"a": 2.0, "b": 3.0, "k": 0.5}
    >>> F = ff.fisher(exp, fid) + ff.nullspace_prior(exp, fid, lam=100.0)
    >>> round(F.sigma()["k"], 6) == round(ff.fisher(exp, fid).fix(["a"]).sigma()["k"], 6)
    True
    ```
    """
    lam = check_lam(lam)
    report, center, U = report_and_center(
        report_or_experiment, fiducial, params, which, identifiability_options
    )
    names = report.names
    M = lam * (U @ U.T) if U.size else np.zeros((len(names), len(names)))
    meta = {
        "lam": lam,
        "which": which,
        "space": "ln",
        "null_directions": [dict(d) for d in report.null_directions],
    }
    is_log = [report.parameterisation[n] == "ln" for n in names]
    # U is in the report's coordinates: ln|θ|, and θ/scale for linear parameters.
    lin_scale = np.where(is_log, 1.0, np.asarray(report._scale, dtype=np.float64))
    if log:
        new = tuple(f"ln_{n}" if report.parameterisation[n] == "ln" else n for n in names)
        fid = {
            m: (math.log(abs(center[n])) if report.parameterisation[n] == "ln" else center[n])
            for n, m in zip(names, new, strict=True)
        }
        return FisherMatrix(
            M / np.outer(lin_scale, lin_scale),
            new,
            fiducial=fid,
            name="nullspace prior",
            metadata=meta,
        )
    d = np.where(is_log, reference_scale(names, center), lin_scale)
    return FisherMatrix(
        M / np.outer(d, d), names, fiducial=center, name="nullspace prior", metadata=meta
    )


def nullspace_penalty(
    report_or_experiment,
    fiducial=None,
    lam=1.0,
    *,
    params=None,
    which="structural",
    **identifiability_options,
):
    """A pure JAX penalty ``λ ‖Uᵀ(ln θ − ln θ*)‖²`` on the non-identifiable subspace.

    `U` is the same basis as in :func:`nullspace_prior` (ln-parameters; parameters whose
    fiducial is 0 enter linearly, as ``θ/scale`` with the report's `scales`, default 1).
    Add the penalty to ``−2 ln L`` (χ²) when fitting: half its Hessian at ``θ*`` is exactly
    the matrix returned by :func:`nullspace_prior`. It pins the fit along the directions the
    data cannot see and has no gradient along the others at ``θ*``.

    **Arguments:** as :func:`nullspace_prior`.

    **Returns:** ``penalty(params) -> scalar``, with ``params`` a dict containing at least the
    report's parameters; it can be jitted and differentiated.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> pen = ff.nullspace_penalty(exp, {"a": 2.0, "b": 3.0, "k": 0.5}, lam=1.0)
    >>> round(float(pen({"a": 2.0 * 2.718281828459045, "b": 3.0, "k": 0.5})), 6)  # ½·(ln e)²
    0.5
    ```
    """
    lam = check_lam(lam)
    report, center, U = report_and_center(
        report_or_experiment, fiducial, params, which, identifiability_options
    )
    names = report.names
    is_log = np.array([report.parameterisation[n] == "ln" for n in names])
    ref = np.array([center[n] for n in names], dtype=np.float64)
    # Divide by 1 where the parameter is linear (its centre may be 0): a division by 0 in
    # the unused branch of a `where` would still poison the gradient with NaN.
    ratio_ref = np.where(is_log, ref, 1.0)
    # Linear parameters enter in the report's coordinates θ/scale (scale 1 unless given).
    lin_scale = np.where(is_log, 1.0, np.asarray(report._scale, dtype=np.float64))
    U = np.array(U, dtype=np.float64)

    def penalty(params):
        missing = [n for n in names if n not in params]
        if missing:
            raise ParameterError(
                f"nullspace penalty: `params` has no value for {missing}; it needs {list(names)}."
            )
        theta = jnp.stack([jnp.asarray(params[n]) for n in names])
        dtype = jnp.result_type(theta.dtype, jnp.float32)
        log_mask = jnp.asarray(is_log)
        delta = jnp.where(
            log_mask,
            jnp.log(jnp.where(log_mask, theta / ratio_ref, 1.0)),
            (theta - ref) / lin_scale,
        ).astype(dtype)
        if U.shape[1] == 0:
            return jnp.zeros((), dtype)
        proj = jnp.asarray(U, dtype).T @ delta
        return lam * jnp.sum(proj**2)

    return penalty


__all__ = ["nullspace_penalty", "nullspace_prior"]
