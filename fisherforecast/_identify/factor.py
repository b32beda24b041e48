"""The normalised sensitivity factor and the linear algebra of identifiability.

The factor ``Rn`` (P × P) holds the ln-parameter sensitivities of the whitened model with
unit-norm columns: ``Rnᵀ Rn`` is the log-FIM rescaled to unit diagonal. Everything here is
plain numpy in float64 (see :mod:`.analysis` for the method and the thresholds).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from .._engine import evaluate_checked

#: Structural rank rule: a singular value of the column-normalised sensitivity matrix below
#: ``STRUCTURAL_RTOL`` times the largest counts as zero (per call: ``rtol=``). Not the
#: engine's ``_linalg.RANK_RTOL`` (an eigenvalue rule at round-off level).
STRUCTURAL_RTOL = 1e-6
#: Largest relative Cramér–Rao bound σ(θ)/|θ| of a practically identifiable parameter.
CRB_THRESHOLD = 0.5
#: Largest collinearity index γ of an identifiable parameter subset.
COLLINEARITY_THRESHOLD = 20.0
#: Smallest coefficient (unit null vector, ln-coordinates) that puts a parameter in it.
NULL_COMPONENT_TOL = 1e-3
#: Up to this many parameters the identifiable-subset search is exhaustive; greedy beyond.
EXHAUSTIVE_MAX = 12
#: Agreement required between SᵀS of the whitened sensitivities and the engine's Fisher matrix.
_WHITEN_CHECK_RTOL = 1e-9


class Factor(NamedTuple):
    """``Rn`` (P × P): the ln-parameter sensitivities with unit-norm columns (``Rnᵀ Rn`` is the
    log-FIM rescaled to unit diagonal); ``norms``: the column norms ``sqrt(F_log,ii)``."""

    Rn: np.ndarray
    norms: np.ndarray
    fisher: np.ndarray
    method: str


def normalise_columns(R_log):
    norms = np.linalg.norm(R_log, axis=0)
    return R_log / np.where(norms > 0, norms, 1.0), norms


def factor_from_fisher(F, scale):
    """Square-root factor of a Fisher matrix (linear parameters) in ln-coordinates."""
    F_log = F * np.outer(scale, scale)
    norms = np.sqrt(np.clip(np.diag(F_log), 0.0, None))
    safe = np.where(norms > 0, norms, 1.0)
    unit = F_log / np.outer(safe, safe)
    w, V = np.linalg.eigh(0.5 * (unit + unit.T))
    Rn = np.sqrt(np.clip(w, 0.0, None))[:, None] * V.T
    return Factor(Rn, norms, F, "square root of the Fisher matrix")


def factor_at(experiments, fid64, names, mode, scale):
    F_total, _, blocks, _ = evaluate_checked(experiments, fid64, names, mode, detail=True)
    P = len(names)
    if any(b is None for b in blocks) or not all(np.all(np.isfinite(b)) for b in blocks):
        return factor_from_fisher(F_total, scale)
    S_log = np.concatenate(blocks, axis=0) * scale
    # numpy's stub types every mode as QRResult; mode="r" returns R alone
    R: np.ndarray = np.linalg.qr(S_log, mode="r")  # pyright: ignore[reportAssignmentType]
    if R.shape[0] < P:
        R = np.vstack([R, np.zeros((P - R.shape[0], P))])
    # The whitening must reproduce the engine's Fisher matrix (the one definition of the
    # information); if it does not (a noise model we do not know), use the matrix itself.
    G = R.T @ R
    F_log = F_total * np.outer(scale, scale)
    d = np.sqrt(np.clip(np.diag(F_log), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    if np.max(np.abs(G - F_log) / np.outer(d, d), initial=0.0) > _WHITEN_CHECK_RTOL:
        return factor_from_fisher(F_total, scale)
    Rn, norms = normalise_columns(R)
    return Factor(Rn, norms, F_total, "whitened sensitivities")


# ---------------------------------------------------------------------------------------
# Linear algebra on the normalised factor
# ---------------------------------------------------------------------------------------
def numerical_rank(singular_values, rtol):
    s = np.asarray(singular_values)
    if s.size == 0 or not s[0] > 0:
        return 0
    return int(np.sum(s > rtol * s[0]))


def gamma(Rn, idx, rtol):
    """Collinearity index of the columns `idx` (unit norm): 1/σ_min, inf when degenerate."""
    sub = Rn[:, list(idx)]
    if np.any(np.linalg.norm(sub, axis=0) == 0):
        return math.inf
    s = np.linalg.svd(sub, compute_uv=False)
    if s[-1] <= rtol * s[0]:
        return math.inf
    return float(1.0 / s[-1])


def coordinate_identifiability(Rn):
    """‖part of column i orthogonal to the other columns‖ / ‖column i‖ (Wang & Hao 2025)."""
    P = Rn.shape[1]
    out = np.zeros(P)
    for i in range(P):
        col = Rn[:, i]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        others = np.delete(Rn, i, axis=1)
        if others.shape[1] == 0:
            out[i] = 1.0
            continue
        coef, *_ = np.linalg.lstsq(others, col, rcond=None)
        out[i] = np.linalg.norm(col - others @ coef) / norm
    return out


def rref(rows, tol=1e-9):
    """Reduced row-echelon form with full pivoting: a sparse, readable basis of a subspace.

    Returns ``(R, pivots)``: the non-zero rows, each 1 at its pivot column and 0 at the other
    pivots. The pivot is the largest remaining entry; near-ties (within 0.1 %) go to the
    first column, so that equal coefficients resolve in the order the parameters were given.
    """
    A = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    pivots = []
    for k in range(A.shape[0]):
        sub = np.abs(A[k:, :])
        sub[:, pivots] = 0.0
        big = float(np.max(sub, initial=0.0))
        if big <= tol:
            break
        j = int(np.nonzero(np.max(sub, axis=0) >= 0.999 * big)[0][0])
        i = k + int(np.argmax(sub[:, j]))
        A[[k, i]] = A[[i, k]]
        A[k] /= A[k, j]
        for m in range(A.shape[0]):
            if m != k:
                A[m] -= A[m, j] * A[k]
        pivots.append(j)
    return A[: len(pivots)], pivots


def unit_direction(vec, first_positive=False):
    """Unit vector with a canonical sign: the largest coefficient positive, or (for null
    directions, so that they read "ln a − ln b") the first significant one."""
    vec = np.asarray(vec, dtype=np.float64)
    vec = vec / np.linalg.norm(vec)
    if first_positive:
        lead = vec[np.nonzero(np.abs(vec) >= NULL_COMPONENT_TOL)[0][0]]
    else:
        lead = vec[np.argmax(np.abs(vec))]
    return -vec if lead < 0 else vec


def subset_search(Rn, names, threshold, rtol):
    """Largest parameter subsets with collinearity index below `threshold`.

    γ can only grow when a parameter is added (eigenvalue interlacing), so the exhaustive
    search walks down from the full set and stops at the first size that has a subset.
    """
    P = len(names)
    if P <= EXHAUSTIVE_MAX:
        for size in range(P, 0, -1):
            found = []
            for idx in itertools.combinations(range(P), size):
                g = gamma(Rn, idx, rtol)
                if g < threshold:
                    found.append((tuple(names[i] for i in idx), g))
            if found:
                found.sort(key=lambda item: float(f"{item[1]:.10g}"))
                return found, "exhaustive"
        return [], "exhaustive"
    # Greedy backward elimination: drop the parameter whose removal lowers γ the most.
    current = list(range(P))
    g = gamma(Rn, current, rtol)
    while g >= threshold and len(current) > 1:
        trials = [(gamma(Rn, [j for j in current if j != i], rtol), i) for i in current]
        g, drop = min(trials)
        current.remove(drop)
    if g >= threshold:
        return [], "greedy"
    return [(tuple(names[i] for i in current), g)], "greedy"


def orthonormal(B):
    """Orthonormal basis (columns) of the span of the columns of `B` (P × k, independent)."""
    if B.shape[1] == 0:
        return B
    Q, _ = np.linalg.qr(B)
    return Q


def split_null_space(N_fid, n_null, random_nulls):
    """Split the null space at the fiducial into the structural part and a local extra.

    `N_fid` (P × k, orthonormal, ln-coordinates of the fiducial) is the null space at the
    fiducial; the generic (structural) null space has dimension `n_null ≤ k`. When
    ``k > n_null`` the fiducial is a special point and its SVD cannot tell the generic
    directions from the local ones (their singular values are all ~0): the structural ones are
    the `n_null` directions inside ``N_fid`` closest to the null spaces at the random points
    (`random_nulls`, already in the fiducial's coordinates): the top eigenvectors of
    ``Σⱼ (N_fidᵀ Bⱼ)(N_fidᵀ Bⱼ)ᵀ``. For a degeneracy that holds at every point (a·b, V/F) the
    null spaces at the random points contain it exactly; it is then their intersection.
    Returns ``(U_structural, U_local, alignment)``, alignment in [0, 1] (None if not needed).
    """
    P, k = N_fid.shape
    if n_null == 0:
        return np.zeros((P, 0)), N_fid, None
    if n_null >= k:
        return N_fid, np.zeros((P, 0)), None
    M = np.zeros((k, k))
    for B in random_nulls:
        C = N_fid.T @ B
        M += C @ C.T
    w, W = np.linalg.eigh(M)
    alignment = float(w[-n_null] / len(random_nulls))
    return N_fid @ W[:, -n_null:], N_fid @ W[:, :-n_null], alignment


def spectrum(Rn, norms, scaled, s0, rank_fid, rtol):
    """Eigen-decomposition of the log-FIM over the parameters that have a scale.

    Parameters analysed in linear units without a scale (fiducial 0, no ``scales=`` entry)
    have no unit-free size: their columns would make the spectrum change with their units. They
    are marginalised out (the Schur complement, i.e. the sensitivities of the others projected
    off theirs), which does not depend on their units. Returns ``(eigenvalues ascending,
    eigenvectors P × m with zero rows for the marginalised, number of zero eigenvalues)``.
    """
    P = Rn.shape[1]
    A = [i for i in range(P) if scaled[i]]
    Z = [i for i in range(P) if not scaled[i]]
    X = Rn[:, A] * norms[A]
    rank_z = 0
    if Z and A:
        Uz, sz, _ = np.linalg.svd(Rn[:, Z], full_matrices=False)
        Q = Uz[:, sz > rtol * s0] if s0 > 0 else Uz[:, :0]
        X = X - Q @ (Q.T @ X)
        rank_z = Q.shape[1]
    m = len(A)
    eigenvectors = np.zeros((P, m))
    if m == 0:
        return np.zeros(0), eigenvectors, 0
    _, s_m, Vt_m = np.linalg.svd(X, full_matrices=False)
    eigenvalues = (s_m**2)[::-1]
    eigenvectors[A] = np.array([unit_direction(v) for v in Vt_m[::-1]]).T
    n_zero = min(m, max(0, m - (rank_fid - rank_z)))
    return eigenvalues, eigenvectors, n_zero


def reference_scale(names, values, scales=None) -> np.ndarray:
    """Per name: ``|values[n]|``, or for a zero value ``scales[n]`` (default 1). The unit of
    the coordinates of the analysis (``ln|θ|`` steps, or ``θ/scale`` at a zero fiducial)."""
    scales = {} if scales is None else scales
    return np.array(
        [abs(float(values[n])) if values[n] != 0 else scales.get(n, 1.0) for n in names],
        dtype=np.float64,
    )


def null_basis_at(factor, scale_at, scale_fid, is_log, rtol):
    """Rank and orthonormal null basis at a random point, in the fiducial's coordinates.

    At the point every parameter is in ln-coordinates (``dθ = |θ_pt| x``). Parameters that are
    ln-parameters at the fiducial too keep the coordinate (the same function ``ln|θ|``); those
    analysed in linear units at the fiducial (``x_fid = dθ / scale``) are rescaled by
    ``|θ_pt| / scale``.
    """
    _, s, Vt = np.linalg.svd(factor.Rn)
    r = numerical_rank(s, rtol)
    safe = np.where(factor.norms > 0, factor.norms, 1.0)
    B = (Vt[r:] / safe).T * np.where(is_log, 1.0, scale_at / scale_fid)[:, None]
    return r, orthonormal(B)
