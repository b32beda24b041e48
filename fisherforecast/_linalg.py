"""Batched linear algebra on Fisher matrices: the one place where the robust recipe lives.

Gravitational-wave Fisher matrices routinely have condition numbers of 1e15-1e20 in their
natural units. Most of that is scale: parameters measured to 1e-4 s next to parameters
measured to 1e2 Mpc. The recipe here is:

1. rescale to unit diagonal, ``S = D^-1 F D^-1`` with ``D = sqrt(diag F)``
   (:func:`unit_diagonal`);
2. judge the matrix on ``S`` with one rank rule and one PSD tolerance (:func:`classify`);
3. try a Cholesky factorisation of ``S``; if that fails, fall back to ``eigh``;
4. for a singular matrix, identify the null directions, reported in parameter names
   (``robust_inverse`` and ``describe_direction`` in :mod:`fisherforecast._inverse`), or use
   the pseudo-inverse on the range of ``S`` where the question asked is still well defined
   (:func:`pinv_sigma`, :func:`schur_complement`).

Every kernel here takes a ``(P, P)`` matrix or a stack ``(..., P, P)`` and works item by
item without Python loops (a loop remains only in rare fallbacks); the single-matrix,
raising forms (``ff.robust_inverse``, ``schur_marginal``) live in
:mod:`fisherforecast._inverse`. They are plain numpy in float64: they need no JAX and no x64
switch.

**Tolerances.** Each has one meaning, everywhere in the package:

- ``RANK_RTOL``: ``S`` is numerically singular when ``λ_min(S) <= RANK_RTOL · P · λ_max(S)``
  (``P`` the size of ``S``); eigenvalues at or below that floor are null directions.
- ``PSD_RTOL``: ``S`` is not positive semi-definite (beyond round-off), so not a Fisher
  matrix, when ``λ_min(S) < -PSD_RTOL · max(λ_max(S), 1)``, or when a diagonal entry of the
  matrix is negative.

**Status codes** returned by :func:`classify` (the integers of ``FisherBatch.reason_codes``):
``OK = 0``, ``BAD_MATRIX = 5`` (NaN/inf entries), ``NO_INFORMATION = 6`` (a zero diagonal
entry), ``SINGULAR = 7``, ``NOT_PSD = 10``.
"""

from __future__ import annotations

import numpy as np

from ._errors import NonFiniteError

#: Rank rule: the unit-diagonal matrix ``S`` (size ``P``) is numerically singular when
#: ``λ_min(S) <= RANK_RTOL · P · max(λ_max(S), 0)``; eigenvalues at or below that floor are
#: null directions. Used by every kernel here (and nowhere else with another meaning).
RANK_RTOL = 4 * np.finfo(np.float64).eps
#: PSD rule: a unit-diagonal matrix with an eigenvalue below ``-PSD_RTOL · max(λ_max, 1)``
#: (or a matrix with a negative diagonal entry) is not positive semi-definite beyond
#: round-off, so it is not a Fisher matrix.
PSD_RTOL = 1e-8
#: Null-direction membership: a parameter takes part in the null space when its row of an
#: orthonormal basis of that space (unit-diagonal coordinates unless a `scale` is given) has
#: norm ``>= NULL_TOL``. Such a parameter has no finite marginal error.
NULL_TOL = 1e-6

# Status codes of `classify`; the integers are those of ``FisherBatch.reason_codes``.
#: The matrix is a usable, full-rank Fisher matrix.
OK = 0
#: The matrix has NaN or inf entries.
BAD_MATRIX = 5
#: A parameter has no information: a zero (or NaN-free non-positive, non-negative) diagonal.
NO_INFORMATION = 6
#: The matrix is PSD but rank deficient under the rank rule (``RANK_RTOL``).
SINGULAR = 7
#: A negative diagonal entry, or an eigenvalue of ``S`` below the PSD rule (``PSD_RTOL``).
NOT_PSD = 10
#: Code -> short meaning, for the codes `classify` can return.
STATUS = {
    OK: "ok",
    BAD_MATRIX: "Fisher matrix is NaN/inf",
    NO_INFORMATION: "a parameter has zero information (zero diagonal entry)",
    SINGULAR: "singular Fisher matrix (degenerate parameter combination)",
    NOT_PSD: "Fisher matrix is not positive semi-definite (a negative eigenvalue beyond round-off)",
}


def check_matrix(matrix, what: str = "matrix", rtol: float = 1e-10) -> np.ndarray:
    """Validate a square, finite, symmetric real matrix and return it as float64."""
    arr = np.asarray(matrix)
    if np.iscomplexobj(arr):
        raise ValueError(f"{what} must be real; received dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{what} must be a square 2-D array; received shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[:5].tolist()
        raise NonFiniteError(f"{what} contains NaN or inf at entries {bad}.")
    root = np.sqrt(np.abs(np.diag(arr)))
    scale = np.outer(root, root)
    scale = np.where(scale > 0, scale, np.max(np.abs(arr), initial=0.0) or 1.0)
    asym = np.max(np.abs(arr - arr.T) / scale, initial=0.0)
    if asym > rtol:
        i, j = np.unravel_index(np.argmax(np.abs(arr - arr.T) / scale), arr.shape)
        raise ValueError(
            f"{what} is not symmetric: entry [{i},{j}] = {float(arr[i, j])!r} but [{j},{i}] = "
            f"{float(arr[j, i])!r} (relative asymmetry {asym:.2e} > {rtol:.0e}). Symmetrise "
            "it with (M + M.T) / 2 if the difference is round-off."
        )
    return 0.5 * (arr + arr.T)


def _stack(M, what):
    """`M` as a float64 ``(N, P, P)`` stack plus the batch shape ``M.shape[:-2]``."""
    arr = np.asarray(M)
    if np.iscomplexobj(arr) or arr.dtype.kind not in "biuf":
        raise ValueError(f"`{what}` must be a real array; received dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(
            f"`{what}` must have shape (P, P) or (..., P, P); received shape {arr.shape}."
        )
    batch, P = arr.shape[:-2], arr.shape[-1]
    return arr.reshape((int(np.prod(batch, dtype=np.int64)), P, P)), batch


def _check_block(block):
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"`block` must be a positive integer; received {block!r}.")
    return int(block)


def rank_floor(w_max, P):
    """Eigenvalues of ``S`` at or below this are null directions (the rank rule)."""
    return RANK_RTOL * P * np.maximum(w_max, 0.0)


def psd_floor(w_max):
    """An eigenvalue of ``S`` below this means ``S`` is not positive semi-definite."""
    return -PSD_RTOL * np.maximum(w_max, 1.0)


def _swap(A):
    return np.swapaxes(A, -1, -2)


def unit_diagonal(M):
    """Rescale to unit diagonal: ``S = D⁻¹ M D⁻¹`` with ``D = diag(d)``, ``d = sqrt(diag M)``.

    `M` is ``(P, P)`` or a stack ``(..., P, P)``; returns ``(S, d)`` with the same shapes
    (``d`` is ``(..., P)``). ``S`` does not depend on the units of the parameters, which is
    why every decision in this module (rank, PSD, null directions) is taken on it.

    **Non-positive diagonal entries** are handled explicitly: where ``M_ii`` is zero,
    negative or NaN, ``d_i = 1`` (that row and column are left unscaled), so
    ``S = M / outer(d, d)`` and ``M = S * outer(d, d)`` hold exactly for every input. A zero
    row of a PSD matrix stays a zero row of ``S`` (an exact null direction); test
    ``diag M > 0`` yourself, or use :func:`classify`, to tell these entries apart. NaN or inf
    entries propagate to ``S`` (no warning).

    ```python
    >>> import numpy as np
    >>> S, d = unit_diagonal(np.array([[4.0, 2.0], [2.0, 9.0]]))
    >>> S.tolist(), d.tolist()
    ([[1.0, 0.3333333333333333], [0.3333333333333333, 1.0]], [2.0, 3.0])
    >>> unit_diagonal(np.array([[[0.0, 0.0], [0.0, 4.0]]]))[1].tolist()  # zero entry: d = 1
    [[1.0, 2.0]]
    ```
    """
    arr = np.asarray(M)
    if np.iscomplexobj(arr) or arr.dtype.kind not in "biuf":
        raise ValueError(f"`M` must be a real array; received dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"`M` must have shape (P, P) or (..., P, P); received shape {arr.shape}.")
    diag = np.diagonal(arr, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore"):
        d = np.sqrt(np.where(diag > 0, diag, 1.0))
        S = arr / (d[..., :, None] * d[..., None, :])
    return S, d


def classify(M, codes=None, *, block: int = 8192):
    """Status code and scaled condition number of each matrix of a stack, vectorised.

    **Arguments:**

    - `M`: ``(P, P)`` or ``(..., P, P)``, assumed symmetric (only the lower triangle is read
      by the eigenvalue test).
    - `codes`: optional existing codes, shape ``M.shape[:-2]``; only items whose code is
      ``OK`` are examined, the others keep theirs (and get a NaN condition number).
    - `block`: items per ``eigvalsh`` call, to bound the temporaries for 10⁶ items.

    **Returns:** ``(codes, condition)``, an int8 array and a float64 array of shape
    ``M.shape[:-2]`` (0-d for a single matrix). The first failing test wins:

    1. ``BAD_MATRIX`` (5): a NaN or inf entry; condition NaN.
    2. ``NOT_PSD`` (10): a negative diagonal entry (condition NaN), or an eigenvalue of the
       unit-diagonal ``S`` below ``-PSD_RTOL · max(λ_max, 1)`` (condition inf). This is
       checked also when a diagonal entry is zero: such a row must then be zero.
    3. ``NO_INFORMATION`` (6): a zero diagonal entry; condition inf.
    4. ``SINGULAR`` (7): ``λ_min(S) <= RANK_RTOL · P · λ_max(S)``.
    5. ``OK`` (0).

    The condition number is ``λ_max(S) / λ_min(S)`` (inf when ``λ_min <= 0``); an empty
    ``0 × 0`` matrix is ``OK`` with condition 1.

    ```python
    >>> import numpy as np
    >>> M = np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]],
    ...               [[np.nan, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    >>> codes, cond = classify(M)
    >>> codes.tolist(), cond.tolist()
    ([0, 7, 10, 5, 6], [1.0, inf, inf, nan, inf])
    ```
    """
    F, batch = _stack(M, "M")
    block = _check_block(block)
    N, P = F.shape[0], F.shape[-1]
    if codes is None:
        out = np.zeros(N, np.int8)
    else:
        codes = np.asarray(codes)
        if codes.shape != batch or codes.dtype.kind not in "iu":
            raise ValueError(
                f"`codes` must be an integer array of shape {batch} (the batch shape of "
                f"`M`); received shape {codes.shape}, dtype {codes.dtype}."
            )
        out = codes.astype(np.int8).reshape(N)
    cond = np.full(N, np.nan)
    if P == 0:
        cond[out == OK] = 1.0
        return out.reshape(batch), cond.reshape(batch)
    for start in range(0, N, block):
        sl = slice(start, min(start + block, N))
        Fb, cb, condb = F[sl], out[sl], cond[sl]  # views: updated in place
        finite = np.all(np.isfinite(Fb.reshape(len(Fb), P * P)), axis=1)
        cb[(cb == OK) & ~finite] = BAD_MATRIX
        diag = np.diagonal(Fb, axis1=1, axis2=2)
        with np.errstate(invalid="ignore"):
            cb[(cb == OK) & np.any(diag < 0, axis=1)] = NOT_PSD
        rest = np.nonzero(cb == OK)[0]
        if not rest.size:
            continue
        zero = np.any(~(diag[rest] > 0), axis=1)
        S, _ = unit_diagonal(Fb[rest])
        w = np.linalg.eigvalsh(S)
        singular = w[:, 0] <= rank_floor(w[:, -1], P)
        indefinite = w[:, 0] < psd_floor(w[:, -1])
        cb[rest[zero]] = NO_INFORMATION
        cb[rest[~zero & singular]] = SINGULAR
        cb[rest[indefinite]] = NOT_PSD
        positive = (w[:, 0] > 0) & ~zero
        condb[rest] = np.inf
        condb[rest[positive]] = w[positive, -1] / w[positive, 0]
    return out.reshape(batch), cond.reshape(batch)


def covariance(M, ok=None, *, diagonal_only: bool = False, block: int = 8192):
    """Covariances ``M⁻¹`` of a stack, the robust way, batched; NaN where not `ok`.

    The recipe of ``robust_inverse`` without its diagnostics or errors: rescale to unit
    diagonal, Cholesky-factorise ``S`` (vectorised), and fall back to the eigendecomposition
    for an item whose factorisation fails.

    **Arguments:**

    - `M`: ``(P, P)`` or ``(..., P, P)``.
    - `ok`: boolean mask of shape ``M.shape[:-2]``: the items to invert, which must be full
      rank; default: those that :func:`classify` calls ``OK``.
    - `diagonal_only`: return only the variances, ``(..., P)`` (no ``(..., P, P)`` array).
    - `block`: items per factorisation call, to bound the temporaries for 10⁶ items.

    ```python
    >>> import numpy as np
    >>> M = np.array([[[2.0, 2.0], [2.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]]])  # ok, singular
    >>> np.round(covariance(M), 6).tolist()
    [[[0.833333, -0.333333], [-0.333333, 0.333333]], [[nan, nan], [nan, nan]]]
    ```
    """
    F, batch = _stack(M, "M")
    block = _check_block(block)
    N, P = F.shape[0], F.shape[-1]
    if ok is None:
        ok = classify(F, block=block)[0] == OK
    else:
        ok = np.asarray(ok)
        if ok.shape != batch or ok.dtype != bool:
            raise ValueError(
                f"`ok` must be a boolean array of shape {batch} (the batch shape of `M`); "
                f"received shape {ok.shape}, dtype {ok.dtype}."
            )
        ok = ok.reshape(N)
    out = np.full((N, P) if diagonal_only else (N, P, P), np.nan)
    idx = np.nonzero(ok)[0]
    eye = np.eye(P)
    for start in range(0, idx.size if P else 0, block):
        sel = idx[start : start + block]
        S, d = unit_diagonal(F[sel])
        S = 0.5 * (S + _swap(S))
        try:
            L = np.linalg.cholesky(S)
            Linv = np.linalg.solve(L, np.broadcast_to(eye, S.shape))
            S_inv = _swap(Linv) @ Linv
        except np.linalg.LinAlgError:
            S_inv = np.empty_like(S)
            for k in range(S.shape[0]):
                try:
                    Lk_inv = np.linalg.solve(np.linalg.cholesky(S[k]), eye)
                    S_inv[k] = Lk_inv.T @ Lk_inv
                except np.linalg.LinAlgError:
                    w, V = np.linalg.eigh(S[k])
                    S_inv[k] = (V / w) @ V.T
        if diagonal_only:
            out[sel] = np.diagonal(S_inv, axis1=1, axis2=2) / d**2
        else:
            S_inv = 0.5 * (S_inv + _swap(S_inv))
            out[sel] = S_inv / (d[:, :, None] * d[:, None, :])
    return out.reshape((*batch, *out.shape[1:]))


def marginal_sigma(M, ok=None, *, block: int = 8192):
    """Marginal 1σ errors ``sqrt(diag M⁻¹)`` of a stack, ``(..., P)``; NaN where not `ok`.

    :func:`covariance` with ``diagonal_only=True``; `ok` defaults to the full-rank items.
    For singular items use :func:`pinv_sigma`, which gives ``inf`` only to the parameters
    that take part in a degeneracy.

    ```python
    >>> import numpy as np
    >>> np.round(marginal_sigma(np.array([[2.0, 2.0], [2.0, 5.0]])), 6).tolist()
    [0.912871, 0.57735]
    ```
    """
    var = covariance(M, ok, diagonal_only=True, block=block)
    with np.errstate(invalid="ignore"):
        return np.sqrt(var)


def _null_rows(V, null):
    """Row norms of the null-space basis: ``V`` ``(N, P, P)`` orthonormal eigenvectors
    (columns), ``null`` ``(N, P)`` mask of the null columns."""
    return np.sqrt(np.einsum("nij,nj->ni", V**2, null.astype(np.float64)))


def _check_rtol(rtol):
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.integer | np.floating):
        raise TypeError(f"`rtol` must be a number or None; received {rtol!r}.")
    if not 0 <= float(rtol) < 1:
        raise ValueError(f"`rtol` must lie in [0, 1); received {rtol!r}.")
    return float(rtol)


def pinv_sigma(M, *, rtol=None, scale=None, null_tol: float = NULL_TOL, block: int = 8192):
    """Rank-aware marginal 1σ errors via the pseudo-inverse, ``(..., P)``, batched.

    A parameter that takes part in a null direction of the unit-diagonal ``S`` has no
    finite marginal error and gets ``inf``; every other parameter gets
    ``σ_i = sqrt((S⁺)_ii) / d_i``, the pseudo-inverse taken on the range of ``S``. For a
    full-rank matrix this is ``sqrt(diag M⁻¹)``. A parameter with a zero diagonal entry gets
    ``inf``; an item that is NaN/inf or not positive semi-definite (see :func:`classify`)
    gets NaN throughout.

    **Arguments:**

    - `M`: ``(P, P)`` or ``(..., P, P)``, assumed symmetric.
    - `rtol`: eigenvalues ``λ <= rtol · λ_max(S)`` are null; default ``None`` is the rank
      rule ``RANK_RTOL · P``. A rule stated on singular values of a square root of ``S``
      (``s <= r · s_max``) is ``rtol = r**2``.
    - `scale`: optional positive reference scale per parameter, shape ``(P,)`` or
      ``(..., P)``. Membership of the null space is then judged in the coordinates
      ``θ_i / scale_i`` (e.g. ``scale = |fiducial|`` for relative coordinates, ln θ); by
      default in the unit-free coordinates of ``S``.
    - `null_tol`: a parameter is in the null space when its row of an orthonormal basis of
      that space has norm ``>= null_tol`` (default ``NULL_TOL``).

    ```python
    >>> import numpy as np
    >>> M = np.array([[2.0, 0.1, 0.1], [0.1, 1.0, 1.0], [0.1, 1.0, 1.0]])  # y, z: y + z only
    >>> pinv_sigma(M).round(6).tolist()
    [0.708881, inf, inf]
    ```
    """
    F, batch = _stack(M, "M")
    rtol = _check_rtol(rtol)
    block = _check_block(block)
    if isinstance(null_tol, bool) or not (
        isinstance(null_tol, int | float | np.integer | np.floating) and 0 < null_tol <= 1
    ):
        raise ValueError(f"`null_tol` must lie in (0, 1]; received {null_tol!r}.")
    N, P = F.shape[0], F.shape[-1]
    if scale is not None:
        sc = np.asarray(scale, dtype=np.float64)
        try:
            sc = np.broadcast_to(sc, (*batch, P)).reshape(N, P)
        except ValueError:
            raise ValueError(
                f"`scale` must have shape (P,) = ({P},) or {(*batch, P)}; received shape "
                f"{np.shape(scale)}."
            ) from None
        if not np.all(np.isfinite(sc) & (sc > 0)):
            raise ValueError(f"`scale` must be positive and finite; received {scale!r}.")
    out = np.full((N, P), np.nan)
    if P == 0 or N == 0:
        return out.reshape((*batch, P))
    codes, _ = classify(F, block=block)
    idx = np.nonzero((codes != BAD_MATRIX) & (codes != NOT_PSD))[0]
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        S, d = unit_diagonal(F[sel])
        live = np.diagonal(F[sel], axis1=1, axis2=2) > 0
        w, V = np.linalg.eigh(S)
        floor = rank_floor(w[:, -1], P) if rtol is None else rtol * np.maximum(w[:, -1], 0.0)
        null = w <= floor[:, None]
        inv_w = np.where(null, 0.0, 1.0 / np.where(null, 1.0, w))
        sig = np.sqrt(np.einsum("nij,nj->ni", V**2, inv_w)) / d
        if scale is None:
            member = _null_rows(V, null) >= null_tol
        else:
            member = np.zeros_like(null)
            for k in np.nonzero(null.any(axis=1))[0]:
                # δθ = D⁻¹ v; in the coordinates θ / scale: D⁻¹ v / scale, re-orthonormalised.
                U = V[k][:, null[k]] / (d[k] * sc[sel[k]])[:, None]
                Q, _ = np.linalg.qr(U)
                member[k] = np.linalg.norm(Q, axis=1) >= null_tol
        out[sel] = np.where(member | ~live, np.inf, sig)
    return out.reshape((*batch, P))


def _check_partition(keep_idx, drop_idx, P):
    def as_index(values, what):
        arr = np.asarray(list(values))
        if arr.size == 0:
            return np.zeros(0, np.intp)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"`{what}` must be a sequence of integers; received {values!r}.")
        if np.any((arr < 0) | (arr >= P)):
            raise IndexError(f"`{what}` = {arr.tolist()} has entries outside 0..{P - 1}.")
        return arr.astype(np.intp)

    k, dr = as_index(keep_idx, "keep_idx"), as_index(drop_idx, "drop_idx")
    both = np.concatenate([k, dr])
    if sorted(both.tolist()) != list(range(P)):
        raise ValueError(
            f"`keep_idx` = {k.tolist()} and `drop_idx` = {dr.tolist()} must together list "
            f"every index 0..{P - 1} exactly once."
        )
    return k, dr


def schur_complement(F, keep_idx, drop_idx, *, block: int = 8192):
    """Fisher matrices of the kept parameters after marginalising the dropped ones, batched:
    ``F_kk − F_kd F_dd⁺ F_dk``.

    **Arguments:**

    - `F`: ``(P, P)`` or ``(..., P, P)``, assumed symmetric.
    - `keep_idx`, `drop_idx`: integer indices that together list ``0..P-1`` exactly once.

    **Returns:** ``(marginal, defined)``: ``(..., K, K)`` matrices and a boolean mask of
    shape ``F.shape[:-2]``. Each item is rank-checked on its unit-diagonal ``S`` first:

    - full rank (:func:`classify` ``OK``): the ordinary Schur complement, with ``F_dd⁻¹``
      from :func:`covariance`;
    - ``SINGULAR`` or ``NO_INFORMATION``, but no kept parameter takes part in a null
      direction (the rule of :func:`pinv_sigma`): the kept marginal is still well defined,
      computed on ``S`` with the pseudo-inverse of ``S_dd`` on its range (eigenvalues above
      the rank floor of the full ``S``);
    - a null direction that involves a kept parameter, NaN/inf entries, or not positive
      semi-definite: undefined, NaN (``defined`` False).

    With no dropped index the kept block itself is returned (NaN where NaN/inf or not PSD).

    ```python
    >>> import numpy as np
    >>> F = np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # b, c degenerate
    >>> out, defined = schur_complement(F, [0], [1, 2])  # 2 - 1·1⁻¹·1
    >>> out.tolist(), bool(defined)
    ([[1.0]], True)
    >>> bool(schur_complement(F, [1], [0, 2])[1])  # b takes part in the degeneracy
    False
    ```
    """
    Fs, batch = _stack(F, "F")
    block = _check_block(block)
    N, P = Fs.shape[0], Fs.shape[-1]
    k, dr = _check_partition(keep_idx, drop_idx, P)
    K = k.size
    out = np.full((N, K, K), np.nan)
    defined = np.zeros(N, bool)
    codes, _ = classify(Fs, block=block)
    if dr.size == 0:
        good = (codes != BAD_MATRIX) & (codes != NOT_PSD)
        out[good] = Fs[good][:, k[:, None], k[None, :]]
        defined[good] = True
        return out.reshape((*batch, K, K)), defined.reshape(batch)
    ok = np.nonzero(codes == OK)[0]
    for start in range(0, ok.size, block):
        sel = ok[start : start + block]
        Fb = Fs[sel]
        Fkd = Fb[:, k[:, None], dr[None, :]]
        inv = covariance(Fb[:, dr[:, None], dr[None, :]], np.ones(sel.size, bool), block=block)
        Mk = Fb[:, k[:, None], k[None, :]] - Fkd @ inv @ _swap(Fkd)
        out[sel] = 0.5 * (Mk + _swap(Mk))
        defined[sel] = True
    rank = np.nonzero((codes == SINGULAR) | (codes == NO_INFORMATION))[0]
    for start in range(0, rank.size, block):
        sel = rank[start : start + block]
        S, d = unit_diagonal(Fs[sel])
        w, V = np.linalg.eigh(S)
        floor = rank_floor(w[:, -1], P)
        null = w <= floor[:, None]
        touched = np.any(_null_rows(V, null)[:, k] >= NULL_TOL, axis=1)
        fine = ~touched
        if not fine.any():
            continue
        S, d, floor = S[fine], d[fine], floor[fine]
        wd, Vd = np.linalg.eigh(S[:, dr[:, None], dr[None, :]])
        rng = wd > floor[:, None]
        inv_wd = np.where(rng, 1.0 / np.where(rng, wd, 1.0), 0.0)
        pinv = (Vd * inv_wd[:, None, :]) @ _swap(Vd)
        Skd = S[:, k[:, None], dr[None, :]]
        Mk = S[:, k[:, None], k[None, :]] - Skd @ pinv @ _swap(Skd)
        dk = d[:, k]
        Mk = Mk * (dk[:, :, None] * dk[:, None, :])
        out[sel[fine]] = 0.5 * (Mk + _swap(Mk))
        defined[sel[fine]] = True
    return out.reshape((*batch, K, K)), defined.reshape(batch)


def logdet(M):
    """``log det M`` of a stack, ``(...,)``, computed on the unit-diagonal ``S``:
    ``log det S + 2 Σ log d`` (no overflow for badly scaled matrices).

    ``-inf`` where a diagonal entry is not positive or ``det S <= 0``; NaN where `M` has
    NaN/inf entries. No rank test: combine with :func:`classify` for that.

    ```python
    >>> import numpy as np
    >>> M = np.diag([1e-200, 1e200, 3.0])
    >>> round(float(logdet(M)), 12) == round(float(np.log(3.0)), 12)
    True
    ```
    """
    F, batch = _stack(M, "M")
    N, P = F.shape[0], F.shape[-1]
    out = np.full(N, np.nan)
    finite = np.all(np.isfinite(F.reshape(N, P * P)), axis=1)
    if finite.any():
        Fb = F[finite]
        S, d = unit_diagonal(Fb)
        sign, ld = np.linalg.slogdet(S)
        live = np.all(np.diagonal(Fb, axis1=1, axis2=2) > 0, axis=1) & (sign > 0)
        val = np.full(Fb.shape[0], -np.inf)
        val[live] = ld[live] + 2.0 * np.sum(np.log(d[live]), axis=1)
        out[finite] = val
    return out.reshape(batch)
