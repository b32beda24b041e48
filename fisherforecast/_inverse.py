"""Inverting one Fisher matrix robustly, and saying in words why it cannot be inverted.

:func:`robust_inverse` (public as ``ff.robust_inverse``) follows the recipe of
:mod:`fisherforecast._linalg` for a single matrix: rescale to unit diagonal, judge it with
the package's one rank rule (``RANK_RTOL``) and PSD rule (``PSD_RTOL``), factorise with
Cholesky (``eigh`` as the fallback). A singular matrix raises `SingularFisherError` naming
the unconstrained combinations (:func:`describe_direction`, in ln-parameters where the
fiducial values allow). An arbitrary-precision path (mpmath) is available for matrices whose
entries are known exactly but whose scaled condition number exceeds what float64 can invert
(~1e15). :func:`schur_marginal` is the raising, single-matrix form of
:func:`~fisherforecast._linalg.schur_complement`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from ._errors import SingularFisherError
from ._linalg import (
    NOT_PSD,
    check_matrix,
    classify,
    psd_floor,
    rank_floor,
    schur_complement,
    unit_diagonal,
)

#: Past this scaled condition number a float64 inverse loses more than 12 of its ~16 digits:
#: :func:`robust_inverse` warns and suggests ``precision="mpmath"`` (docs/reliability.md).
COND_WARN = 1e12


def warn_digits_lost(cond: float, what: str = "Fisher matrix") -> None:
    """Warn that inverting a matrix of scaled condition number `cond` in float64 loses
    about ``log10(cond)`` of its ~16 significant digits."""
    lost = round(math.log10(cond))
    left = max(16 - lost, 0)
    warnings.warn(
        f"The {what} has scaled condition number {cond:.3g}: inverting it in float64 loses "
        f"about {lost} of ~16 digits, so its covariance and sigma are good to only ~{left} "
        "digits. If its entries are accurate, invert with precision='mpmath' "
        "(F.sigma(precision='mpmath'), F.covariance(precision='mpmath')); otherwise fix or "
        "give a prior to the nearly degenerate combination (F.eigen() shows it).",
        UserWarning,
        stacklevel=3,
    )


class Inverse(NamedTuple):
    """Result of :func:`robust_inverse`.

    Attributes:
        covariance: the inverse matrix (numpy float64).
        condition_number: 2-norm condition number of the unit-diagonal rescaled matrix; it is
            invariant to the units of the parameters and governs the digits lost.
        residual: ``max|S S^-1 - I|`` for the rescaled matrix ``S``.
        method: ``"cholesky"``, ``"eigh"`` or ``"mpmath"``.

    Returned by :meth:`FisherMatrix.inverse` and :func:`ff.robust_inverse`. For
    ``F = [[2, 2], [2, 5]]``, ``F⁻¹ = [[5, −2], [−2, 2]]/6``; rescaled to a unit diagonal the
    off-diagonal is ``r = 2/√10``, so the condition number is ``(1 + r)/(1 − r)``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> inv = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"]).inverse()
    >>> inv.method, np.round(inv.covariance * 6, 10).tolist()
    ('cholesky', [[5.0, -2.0], [-2.0, 2.0]])
    >>> round(inv.condition_number, 4), bool(inv.residual < 1e-12)
    (4.4415, True)
    >>> ff.robust_inverse(np.diag([4.0, 0.25])).covariance.tolist()
    [[0.25, 0.0], [0.0, 4.0]]
    ```
    """

    covariance: np.ndarray
    condition_number: float
    residual: float
    method: str


def _log_space(names, involved, fiducial) -> bool:
    """Whether a direction over the `involved` parameters can be stated in ln-parameters."""
    return fiducial is not None and all(
        fiducial.get(n) is not None and fiducial[n] > 0
        for n, k in zip(names, involved, strict=True)
        if k
    )


def describe_direction(vector, names, fiducial=None, involved=None) -> tuple[dict, str]:
    """Describe a parameter-space direction in words.

    Where all involved fiducial values are positive, the direction is expressed in
    ln-parameters, which turns power-law degeneracies into readable statements such as
    "only a·b is constrained". `involved` (a boolean mask) says which parameters take part;
    decide it in a unit-free parameterisation (the default, ``|coefficient| > 0.05`` of the
    normalised vector, is only right when the parameters have comparable units). Returns
    ``(coefficients, text)``.
    """
    vector = np.asarray(vector, dtype=np.float64)
    names = list(names)
    if involved is None:
        involved = np.abs(vector) > 0.05 * np.max(np.abs(vector))
    involved = np.asarray(involved, dtype=bool)
    vector = np.where(involved, vector, 0.0)
    use_log = _log_space(names, involved, fiducial)
    if use_log:  # δ ln θ = δθ / θ; entries not involved keep their (negligible) value
        assert fiducial is not None  # _log_space is False without one
        scale = np.array([fiducial[n] if (fiducial.get(n) or 0) > 0 else 1.0 for n in names])
        vec = vector / scale
    else:
        vec = vector.copy()
    vec = vec / np.linalg.norm(vec)
    big = np.argmax(np.abs(vec))
    if vec[big] < 0:
        vec = -vec
    keep = involved
    coefficients = {n: float(c) for n, c, k in zip(names, vec, keep, strict=True) if k}
    prefix = "ln " if use_log else "d"
    terms = " ".join(
        f"{'+' if c >= 0 else '-'}{abs(c):.3g}·{prefix}{n}" for n, c in coefficients.items()
    )
    text = f"the direction {terms.lstrip('+')}"
    if use_log and len(coefficients) == 2:
        (a, ca), (b, cb) = coefficients.items()
        ratio = cb / ca
        for target, word in ((-1.0, "·"), (1.0, "/")):
            if abs(ratio - target) < 0.05:
                moving = f"{a}/{b}" if word == "·" else f"{a}·{b}"
                fixed = f"{a}·{b}" if word == "·" else f"{a}/{b}"
                text += f" ({fixed} is constrained, {moving} is not)"
                break
        else:
            text += f" (only {a}^{cb:.3g}·{b}^{-ca:.3g} is constrained)"
    elif len(coefficients) == 1:
        ((a, _),) = coefficients.items()
        text = f"the parameter {a} alone (the data carry almost no information on it)"
    return coefficients, text


def _singular_error(scaled, d, names, fiducial, eigenvalues, eigenvectors, tol, what, always=()):
    """Raise `SingularFisherError` describing the null directions. Parameters in `always`
    are named whenever they take part at all (not only above 5 % of the largest entry)."""
    null = np.nonzero(eigenvalues <= tol)[0]
    directions, texts, spaces = [], [], []
    for k in null[:3]:
        # S v = 0  ⇒  F (D^-1 v) = 0: the null direction in the original parameters. Which
        # parameters take part is decided on v, which does not depend on their units.
        v = eigenvectors[:, k]
        involved = np.abs(v) > 0.05 * np.max(np.abs(v))
        for i in always:
            involved[i] |= bool(np.abs(v[i]) > 1e-6)
        coeffs, text = describe_direction(v / d, names, fiducial, involved=involved)
        spaces.append("ln" if _log_space(names, involved, fiducial) else "linear")
        directions.append(coeffs)
        texts.append(text)
    cond = np.inf if eigenvalues[0] <= 0 else eigenvalues[-1] / eigenvalues[0]
    cond_text = "> 1e16" if not np.isfinite(cond) or cond > 1e16 else f"{cond:.3g}"
    lines = "\n".join(f"  - {t}" for t in texts)
    more = f"\n  (and {len(null) - 3} more)" if len(null) > 3 else ""
    raise SingularFisherError(
        f"{what} is singular (rank {len(names) - len(null)} of {len(names)}, scaled condition "
        f"number {cond_text}). The data do not constrain:\n{lines}{more}\n"
        "What to do: fix one of the parameters involved (F.fix([...])), add a prior "
        "(F.with_prior({...})), add data that breaks the degeneracy, or run "
        "ff.identifiability(...) for a full report. For an exactly known but extremely "
        "ill-conditioned matrix, F.covariance(precision='mpmath') inverts in high precision.",
        directions=directions,
        names=names,
        spaces=spaces,
    )


def robust_inverse(
    matrix, names=None, fiducial=None, *, precision="float64", dps=50, what="Fisher matrix"
) -> Inverse:
    """Invert a symmetric positive-definite matrix robustly; see the module docstring.

    **Arguments:**

    - `matrix`: square symmetric array.
    - `names`: parameter names, used in the error message for a singular matrix.
    - `fiducial`: dict of fiducial values; lets the message speak in ln-parameters.
    - `precision`: ``"float64"`` (default) or ``"mpmath"`` (arbitrary precision, ``dps``
      decimal digits; the result is rounded to float64).

    **Returns:** an :class:`Inverse`.

    **Raises:** `SingularFisherError` naming the unconstrained combination.

    ```python
    >>> import numpy as np
    >>> inv = robust_inverse(np.array([[2.0, 2.0], [2.0, 5.0]]))
    >>> np.round(np.sqrt(np.diag(inv.covariance)), 6)
    array([0.912871, 0.57735 ])
    ```
    """
    F = check_matrix(matrix, what)
    P = F.shape[0]
    names = tuple(names) if names is not None else tuple(f"p{i}" for i in range(P))
    if len(names) != P:
        raise ValueError(
            f"`names` has {len(names)} entries {list(names)} for a {P} x {P} "
            "matrix; give one name per row."
        )
    if P == 0:
        return Inverse(np.zeros((0, 0)), 1.0, 0.0, "cholesky")
    diag = np.diag(F)
    zero = [n for n, v in zip(names, diag, strict=True) if not v > 0]
    if zero:
        neg = [n for n, v in zip(names, diag, strict=True) if v < 0]
        if neg:
            raise SingularFisherError(
                f"{what} has negative diagonal entries for {neg}: it is not positive "
                "semi-definite, so it is not a valid Fisher matrix.",
                names=names,
            )
        raise SingularFisherError(
            f"{what} is singular: parameter(s) {zero} have zero Fisher information (does the "
            "model depend on them?). Fix them (F.fix([...])), give them a prior "
            "(F.with_prior({...})) or remove them from `params`.",
            directions=[{n: 1.0} for n in zero],
            names=names,
        )
    S, d = unit_diagonal(F)
    if precision == "mpmath":
        return _mpmath_inverse(F, d, dps)
    if precision != "float64":
        raise ValueError(f"precision must be 'float64' or 'mpmath'; received {precision!r}.")
    w, V = np.linalg.eigh(S)
    tol = rank_floor(w[-1], P)
    if w[0] < psd_floor(w[-1]):
        raise SingularFisherError(
            f"{what} is not positive semi-definite (smallest eigenvalue of the unit-diagonal "
            f"matrix {w[0]:.3g}, largest {w[-1]:.3g}), so it is not a valid Fisher matrix. "
            "Check how it was built (a sign error, or a difference of two matrices).",
            names=names,
        )
    if w[0] <= tol:
        _singular_error(S, d, names, fiducial, w, V, tol, what)
    cond = float(w[-1] / w[0])
    if cond > COND_WARN:
        warn_digits_lost(cond, what)
    try:
        c, lower = scipy.linalg.cho_factor(S, lower=True, check_finite=False)
        S_inv = scipy.linalg.cho_solve((c, lower), np.eye(P), check_finite=False)
        method = "cholesky"
    except np.linalg.LinAlgError:
        S_inv = (V / w) @ V.T
        method = "eigh"
    S_inv = 0.5 * (S_inv + S_inv.T)
    residual = float(np.max(np.abs(S @ S_inv - np.eye(P))))
    cov = S_inv / np.outer(d, d)
    return Inverse(cov, cond, residual, method)


def _mpmath_inverse(F, d, dps):
    import mpmath

    P = F.shape[0]
    with mpmath.workdps(dps):
        # Entries are taken as exact binary values; rescaling in high precision is exact
        # enough that the only error left is the final rounding to float64.
        M = mpmath.matrix([[mpmath.mpf(float(F[i, j])) for j in range(P)] for i in range(P)])
        Dm = [mpmath.sqrt(M[i, i]) for i in range(P)]
        S = mpmath.matrix(P, P)
        for i in range(P):
            for j in range(P):
                S[i, j] = M[i, j] / (Dm[i] * Dm[j])
        try:
            S_inv: Any = S**-1  # an mpmath matrix (untyped: pyright infers the int 1)
        except ZeroDivisionError as exc:
            raise SingularFisherError(f"matrix is exactly singular even at {dps} digits.") from exc
        eig = mpmath.eigsy(S)[0]
        lo, hi = min(eig), max(eig)
        if lo <= 0:
            raise SingularFisherError(
                f"matrix is not positive definite at {dps} digits (smallest eigenvalue of "
                f"the scaled matrix {mpmath.nstr(lo, 5)})."
            )
        cond = float(hi / lo)
        cov = np.array([[float(S_inv[i, j] / (Dm[i] * Dm[j])) for j in range(P)] for i in range(P)])
        R = S * S_inv - mpmath.eye(P)
        residual = float(max(abs(R[i, j]) for i in range(P) for j in range(P)))
    del d
    return Inverse(cov, cond, residual, "mpmath")


def schur_marginal(F, keep_idx, drop_idx, names, fiducial=None):
    """Fisher matrix of ``keep`` after marginalising ``drop``: ``F_kk − F_kd F_dd⁺ F_dk``.

    The single-matrix, raising form of :func:`schur_complement` (same numerics):

    - full rank: the ordinary Schur complement (``F_dd`` is then invertible);
    - singular, but every null direction lies within the marginalised parameters (e.g. a
      merger time and phase that only the data's overall phase constrains): the kept
      marginal is still well defined, and ``F_dd⁺`` is the pseudo-inverse on the range of
      ``F_dd``;
    - singular with a null direction that involves a kept parameter: the kept parameters are
      not all constrained, and `SingularFisherError` names the combination (a plain Schur
      complement would return round-off instead); not positive semi-definite:
      `SingularFisherError` says so.

    ```python
    >>> import numpy as np
    >>> F = np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # b, c degenerate
    >>> schur_marginal(F, [0], [1, 2], ("a", "b", "c")).tolist()  # 2 - 1·1⁻¹·1
    [[1.0]]
    ```
    """
    F = check_matrix(F, "Fisher matrix")
    keep_idx, drop_idx = list(keep_idx), list(drop_idx)
    if len(drop_idx) == 0:
        return F[np.ix_(keep_idx, keep_idx)]
    if classify(F)[0] == NOT_PSD:
        robust_inverse(F, names, fiducial)  # raises: not positive semi-definite
    out, defined = schur_complement(F, keep_idx, drop_idx)
    if defined:
        return out
    S, d = unit_diagonal(F)
    w, V = np.linalg.eigh(S)
    kept = [names[i] for i in keep_idx]
    _singular_error(
        S,
        d,
        tuple(names),
        fiducial,
        w,
        V,
        rank_floor(w[-1], F.shape[0]),
        f"The marginal of {kept} is undefined: a degenerate direction "
        "involves them, and the full Fisher matrix",
        always=keep_idx,
    )
