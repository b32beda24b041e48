"""Classification and robust batched inversion (numpy, on the host)."""

from __future__ import annotations

import numpy as np

from .._linalg import PSD_RTOL, RANK_RTOL
from .reasons import (
    BAD_MATRIX,
    NO_INFORMATION,
    NOT_PSD,
    OK,
    SINGULAR,
)


# ---------------------------------------------------------------------------------------
# Classification and robust batched inversion (numpy, on the host)
# ---------------------------------------------------------------------------------------
def classify_items(matrices, codes, block=8192):
    """Add the matrix-level failure codes and the scaled condition numbers.

    Uses the foundation's rank test: the unit-diagonal matrix ``S`` is singular when
    ``λ_min(S) <= RANK_RTOL · P · λ_max(S)`` (see ``_linalg.robust_inverse``), and not a
    Fisher matrix at all when a diagonal entry is negative or ``λ_min(S) < -PSD_RTOL ·
    max(λ_max, 1)`` (the test of ``ff.FisherMatrix``). Works in blocks of `block` items so
    that the temporaries stay small for 10⁶ items.
    """
    F = np.asarray(matrices, dtype=np.float64)
    codes = np.array(codes, dtype=np.int8)
    n, P = F.shape[0], F.shape[1]
    cond = np.full(n, np.nan)
    for start in range(0, n, block):
        sl = slice(start, min(start + block, n))
        Fb = F[sl]
        cb = codes[sl]  # a view: updated in place
        condb = cond[sl]
        finite = np.all(np.isfinite(Fb.reshape(len(Fb), P * P)), axis=1)
        cb[(cb == OK) & ~finite] = BAD_MATRIX
        diag = np.diagonal(Fb, axis1=1, axis2=2)
        negative = (cb == OK) & np.any(diag < 0, axis=1)
        cb[negative] = NOT_PSD
        zero = (cb == OK) & np.any(~(diag > 0), axis=1)
        cb[zero] = NO_INFORMATION
        condb[zero] = np.inf
        rest = np.nonzero(cb == OK)[0]
        if rest.size:
            d = np.sqrt(diag[rest])
            S = Fb[rest] / (d[:, :, None] * d[:, None, :])
            w = np.linalg.eigvalsh(S)
            singular = w[:, 0] <= RANK_RTOL * P * w[:, -1]
            indefinite = w[:, 0] < -PSD_RTOL * np.maximum(w[:, -1], 1.0)
            cb[rest[singular]] = SINGULAR
            cb[rest[indefinite]] = NOT_PSD
            with np.errstate(divide="ignore", invalid="ignore"):
                condb[rest] = np.where(w[:, 0] > 0, w[:, -1] / w[:, 0], np.inf)
    return codes, cond


def batched_covariance(matrices, ok, diagonal_only=False, block=8192):
    """Covariances of the ``ok`` items (NaN elsewhere), the robust way, batched.

    Same recipe as ``robust_inverse``: rescale to unit diagonal, Cholesky factorise, and
    fall back to the eigendecomposition for any item whose Cholesky factorisation fails.
    Works in blocks of `block` items so temporaries stay bounded for 10⁶ items; with
    ``diagonal_only`` it returns only the ``(B, P)`` variances (no ``(B, P, P)`` array).
    """
    F = np.asarray(matrices)
    B, P = F.shape[0], F.shape[1]
    out = np.full((B, P) if diagonal_only else (B, P, P), np.nan)
    idx = np.nonzero(ok)[0]
    eye = np.eye(P)
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        M = np.asarray(F[sel], dtype=np.float64)
        d = np.sqrt(np.diagonal(M, axis1=1, axis2=2))
        S = M / (d[:, :, None] * d[:, None, :])
        S = 0.5 * (S + np.swapaxes(S, 1, 2))
        try:
            L = np.linalg.cholesky(S)
            Linv = np.linalg.solve(L, np.broadcast_to(eye, S.shape))
            S_inv = np.swapaxes(Linv, 1, 2) @ Linv
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
            S_inv = 0.5 * (S_inv + np.swapaxes(S_inv, 1, 2))
            out[sel] = S_inv / (d[:, :, None] * d[:, None, :])
    return out
