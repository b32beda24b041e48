"""What would fix a non-identifiable model: :func:`repair_identifiability` finds the
smallest set of added measurements that makes every parameter identifiable.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple

import numpy as np

from .._checks import (
    as_experiments,
    check_fiducial,
    check_int,
    check_mode,
    check_names,
    is_real_number,
)
from .._errors import FisherError, InputError, quote
from .._experiment import Experiment
from .._fisher import fisher
from .._inverse import describe_direction
from .._linalg import RANK_RTOL, unit_diagonal
from .._matrix import FisherMatrix
from .._record import Record
from .problem import align_prior, scale_vector
from .select import check_candidates, per_candidate_fisher

__all__ = ["RepairResult", "repair_identifiability"]


# =======================================================================================
# repair_identifiability
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RepairResult(Record):
    """The result of :func:`repair_identifiability`.

    Attributes:
        added: indices of the candidates to add (the smallest set found); empty when no
            set of at most ``max_add`` candidates repairs the model (then ``success`` is
            ``False``: nothing worth adding was found).
        success: whether adding them makes every parameter identifiable (full rank and
            collinearity index below the threshold).
        best_attempt: when unsuccessful, the closest (not repairing) set tried, as a dict
            ``{"added", "rank", "collinearity"}``; ``None`` otherwise.
        no_lift: whether no candidate adds information along the weak directions (every
            lift is zero to round-off), so no number of them can repair the model.
        exhaustive: whether the smallest size was established by checking every subset
            (otherwise the last size was completed greedily).
        rank_before, rank_after, collinearity_before, collinearity_after: diagnostics of
            the Fisher matrix before and after.
        null_directions: the weak directions of the original Fisher matrix (in
            ``ln θ`` where fiducials are non-zero): a list of dicts name -> coefficient.
        ranking: list of dicts, one per candidate, sorted by ``lift`` (information the
            candidate adds along the weak directions, ``Σ_v vᵀ F_c v`` in the scaled
            parameters), with the rank and collinearity index the candidate gives alone.
        fisher_after: the Fisher matrix with the added measurements.
        threshold, max_add: the arguments; n_params: the number of varied parameters;
        labels: the candidates' labels; null_texts: the weak directions in words.

    Methods: ``summary()``, ``to_dict()``. A line ``a + b t`` measured only at ``t = 0``
    leaves the slope ``b`` unconstrained; of the candidates ``t = 0, 1, 2`` the farthest
    adds the most information on it (``∝ t²``):

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=np.zeros(3))
    >>> rep = ff.repair_identifiability(exp, {"a": 1.0, "b": 0.5}, np.array([0.0, 1.0, 2.0]))
    >>> rep.null_texts
    ['the parameter b alone (the data carry almost no information on it)']
    >>> rep.success, rep.added, (rep.rank_before, rep.rank_after)
    (True, [2], (1, 2))
    >>> [(r["label"], round(r["lift"], 6)) for r in rep.ranking]
    [('candidate 2', 1.0), ('candidate 1', 0.25), ('candidate 0', 0.0)]
    ```
    """

    added: list
    success: bool
    exhaustive: bool
    rank_before: int
    rank_after: int
    collinearity_before: float
    collinearity_after: float
    null_directions: list
    null_texts: list
    ranking: list
    fisher_after: FisherMatrix
    threshold: float
    n_params: int
    labels: list
    best_attempt: dict | None
    no_lift: bool
    max_add: int

    def summary(self) -> str:
        lines = [
            f"Identifiability repair ({self.n_params} parameters, collinearity threshold "
            f"{self.threshold:g})",
            f"  before: rank {self.rank_before}, collinearity index {self.collinearity_before:.4g}",
        ]
        for text in self.null_texts:
            lines.append(f"    weak direction: {text}")
        if not self.added and self.success:
            lines.append("  already identifiable: nothing to add")
        elif not self.success:
            search = "exhaustive search" if self.exhaustive else "partly greedy search"
            lines.append(
                f"  no set of <= {self.max_add} candidates repairs it ({search}); "
                + (
                    "no candidate lifts the weak direction(s)"
                    if self.no_lift
                    else "nothing is added"
                )
            )
            attempt = self.best_attempt
            if attempt is not None and attempt["added"] and not self.no_lift:
                labels = [self.labels[i] for i in attempt["added"]]
                lines.append(
                    f"  closest attempt (not a repair): {labels} -> rank "
                    f"{attempt['rank']}, collinearity index "
                    f"{attempt['collinearity']:.4g}"
                )
        else:
            labels = [self.labels[i] for i in self.added]
            lines.append(
                f"  add {len(self.added)} measurement(s): {labels} "
                f"({'smallest set, exhaustive search' if self.exhaustive else 'greedy'})"
            )
            lines.append(
                f"  after: rank {self.rank_after}, collinearity index "
                f"{self.collinearity_after:.4g} -> "
                f"{'identifiable' if self.success else 'NOT identifiable'}"
            )
        lines.append("  candidates ranked by information along the weak directions:")
        for row in self.ranking[:10]:
            lines.append(
                f"    {row['label']:<24} lift {row['lift']:>10.4g}  alone: rank "
                f"{row['rank']}, collinearity {row['collinearity']:.4g}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "added": list(self.added),
            "success": self.success,
            "best_attempt": self.best_attempt,
            "no_lift": self.no_lift,
            "exhaustive": self.exhaustive,
            "rank_before": self.rank_before,
            "rank_after": self.rank_after,
            "collinearity_before": self.collinearity_before,
            "collinearity_after": self.collinearity_after,
            "null_directions": self.null_directions,
            "ranking": self.ranking,
            "threshold": self.threshold,
        }

    def __repr__(self):
        return (
            f"RepairResult(added={list(self.added)}, success={self.success}, "
            f"collinearity_after={self.collinearity_after:.4g})"
        )


def _rank_and_collinearity(M):
    """Rank and Brun et al. (2001) collinearity index ``1/sqrt(λ_min)`` of unit-diag M."""
    P = M.shape[-1]
    zero = ~(np.diagonal(M, axis1=-2, axis2=-1) > 0)
    S = np.where(zero[..., :, None] | zero[..., None, :], 0.0, unit_diagonal(M)[0])
    w = np.linalg.eigvalsh(S)
    tol = RANK_RTOL * P * np.maximum(w[..., -1], 1e-300)
    rank = np.sum(w > tol[..., None], axis=-1)
    with np.errstate(divide="ignore"):
        gamma = np.where(w[..., 0] > tol, 1.0 / np.sqrt(np.maximum(w[..., 0], 1e-300)), np.inf)
    return rank, gamma


def repair_identifiability(
    experiment,
    fiducial,
    candidates,
    *,
    params=None,
    prior=None,
    threshold=20.0,
    max_add=3,
    max_subsets=20000,
    labels=None,
    weak_rtol=None,
    mode="forward",
) -> RepairResult:
    """The smallest set of added measurements that makes every parameter identifiable.

    "Identifiable" means: the Fisher matrix (existing experiment(s) + prior + additions) has
    full rank and its collinearity index (Brun, Reichert & Künsch 2001: ``1/sqrt(λ_min)`` of
    the unit-diagonal matrix, i.e. of the normalised sensitivities) is below `threshold`.

    Candidates are ranked by how much they lift the weak directions of the existing
    Fisher matrix: ``lift_c = Σ_v vᵀ F̃_c v`` over the null/weak eigenvectors ``v`` of the
    scaled matrix ``F̃ = diag(|θ|) F diag(|θ|)`` (``ln θ`` coordinates where the fiducial is
    non-zero). A candidate with zero lift can never repair the degeneracy. The smallest
    repairing set is then found by checking every subset of size 1, 2, ... `max_add`; among
    the repairing sets of the smallest size the one with the largest smallest eigenvalue of
    ``F̃`` (the best-determined weakest direction) is returned. A size with more than
    `max_subsets` subsets is completed greedily from the best smaller set instead.

    **Arguments:**

    - `experiment`: the existing :class:`ff.Experiment` (or a list of them).
    - `fiducial`: dict parameter name -> value.
    - `candidates`: either a list of :class:`ff.Experiment` (possible new measurements,
      e.g. of another observable; each evaluated with the same fiducial), or an array (or
      pytree of arrays) of candidate design points for `experiment` (first axis:
      candidates; candidate ``i`` adds a measurement with design ``candidates[i:i+1]``).
    - `params`, `prior`, `mode`: as in :func:`optimize_design`.
    - `threshold`: collinearity index below which the parameters count as identifiable
      (20 is the usual choice).
    - `max_add`: the largest number of added measurements tried.
    - `max_subsets`: above this many subsets of one size the search turns greedy.
    - `labels`: optional names of the candidates for the report.
    - `weak_rtol`: a direction is weak when its eigenvalue is below ``1/threshold²`` of the
      unit-diagonal matrix (default) or, if given, below ``weak_rtol × λ_max``.

    **Returns:** a :class:`RepairResult` (``.added``, ``.success``, ``.ranking``).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1),
    ...                     design=jnp.zeros(3))                  # all at t = 0: k unknown
    >>> rep = ff.repair_identifiability(exp, {"A": 1.0, "k": 0.5}, np.array([0.0, 2.0, 8.0]))
    >>> rep.success, [r["label"] for r in rep.ranking][0]
    (True, 'candidate 1')

    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_mode(mode)
    threshold = _check_threshold(threshold)
    max_add = check_int(max_add, "max_add", 1)
    max_subsets = check_int(max_subsets, "max_subsets", 1)
    weak_rtol = _check_weak_rtol(weak_rtol)
    P = len(names)
    F0 = sum(
        (np.asarray(fisher(e, fid, params=names, mode=mode).matrix) for e in experiments),
        np.zeros((P, P)),
    ) + align_prior(prior, names)

    Fc, failed, default_labels = _repair_candidates(experiments, fid, names, mode, candidates)
    labels = _check_labels(labels, default_labels)

    # Scaled (ln θ) coordinates make the weak directions independent of units.
    s = scale_vector(fid, names, True, zero_as_one=True)
    S2 = np.outer(s, s)
    F0s, Fcs = F0 * S2, Fc * S2
    rank0, gamma0 = _rank_and_collinearity(F0s)
    dirs = _weak_directions(F0s, threshold, weak_rtol)
    described = [describe_direction(v * s, names, fid) for v in dirs]  # raw δθ = |θ| δφ
    lift, no_lift = _lift(dirs, Fcs, failed)
    ranking = _ranking(F0s, Fcs, lift, failed, labels)

    if _identifiable(rank0, gamma0, P, threshold):
        search = _Search([], True, True, None)
    else:
        search = _smallest_repair(F0s, Fcs, failed, P, threshold, max_add, max_subsets)
    F_after = F0 + (Fc[search.added].sum(axis=0) if search.added else 0.0)
    rank1, gamma1 = _rank_and_collinearity(F_after * S2)
    return RepairResult(
        added=search.added,
        success=bool(search.success),
        exhaustive=bool(search.exhaustive),
        rank_before=int(rank0),
        rank_after=int(rank1),
        collinearity_before=float(gamma0),
        collinearity_after=float(gamma1),
        null_directions=[coeffs for coeffs, _ in described],
        null_texts=[text for _, text in described],
        ranking=ranking,
        fisher_after=FisherMatrix(
            0.5 * (F_after + F_after.T), names, fiducial={x: fid[x] for x in names}
        ),
        threshold=threshold,
        n_params=P,
        labels=labels,
        best_attempt=search.best_attempt,
        no_lift=no_lift,
        max_add=max_add,
    )


def _check_threshold(threshold) -> float:
    if not is_real_number(threshold) or not threshold > 1:
        raise InputError(
            f"`threshold` must be a number > 1 (a collinearity index); received {quote(threshold)}."
        )
    return float(threshold)


def _check_weak_rtol(weak_rtol):
    if weak_rtol is None:
        return None
    if not is_real_number(weak_rtol):
        raise TypeError(
            f"`weak_rtol` must be None or a number in (0, 1]; received {quote(weak_rtol)}."
        )
    if not 0 < weak_rtol <= 1:
        raise InputError(
            f"`weak_rtol` must be in (0, 1] (a fraction of the largest "
            f"eigenvalue); received {weak_rtol!r}."
        )
    return float(weak_rtol)


def _check_labels(labels, default_labels) -> list[str]:
    if labels is None:
        return default_labels
    labels = [str(x) for x in labels]
    if len(labels) != len(default_labels):
        raise InputError(
            f"`labels` has {len(labels)} entries for {len(default_labels)} candidates."
        )
    return labels


def _identifiable(rank, gamma, P, threshold):
    return (rank == P) & (gamma < threshold)


def _weak_directions(F0s, threshold, weak_rtol) -> np.ndarray:
    """Unit vectors (rows) in the scaled parameters along which `F0s` is weak or null."""
    P = F0s.shape[0]
    U, d0 = unit_diagonal(F0s)
    zero = np.diag(F0s) <= 0
    U = np.where(zero[:, None] | zero[None, :], 0.0, U)
    w, V = np.linalg.eigh(U)
    cut = weak_rtol * w[-1] if weak_rtol is not None else 1.0 / threshold**2
    weak = np.nonzero(w <= max(cut, RANK_RTOL * P * w[-1]))[0]
    # Eigenvectors of the unit-diagonal matrix -> directions in the scaled parameters.
    dirs = [V[:, j] / d0 for j in weak]
    return np.array([v / np.linalg.norm(v) for v in dirs]).reshape(len(weak), P)


def _lift(dirs, Fcs, failed):
    """Each candidate's information along the weak directions, and whether none has any
    (every usable candidate's lift is round-off relative to its total information)."""
    n = Fcs.shape[0]
    lift = np.einsum("vi,nij,vj->n", dirs, Fcs, dirs) if len(dirs) else np.zeros(n)
    lift = np.where(failed, np.nan, lift)
    total_info = np.trace(Fcs, axis1=1, axis2=2)
    no_lift = bool(len(dirs)) and bool(
        np.all(failed | (np.abs(np.nan_to_num(lift)) <= 1e-10 * np.abs(total_info)))
    )
    return lift, no_lift


def _ranking(F0s, Fcs, lift, failed, labels) -> list[dict]:
    alone_rank, alone_gamma = _rank_and_collinearity(F0s[None] + Fcs)
    return [
        {
            "index": int(i),
            "label": labels[i],
            "lift": float(lift[i]),
            "rank": int(alone_rank[i]),
            "collinearity": float(alone_gamma[i]),
            "failed": bool(failed[i]),
        }
        for i in np.argsort(-np.nan_to_num(lift, nan=-np.inf), kind="stable")
    ]


class _Search(NamedTuple):
    added: list
    success: bool
    exhaustive: bool
    best_attempt: dict | None


def _smallest_repair(F0s, Fcs, failed, P, threshold, max_add, max_subsets) -> _Search:
    """Check every subset of size 1, 2, ... `max_add` (greedily past `max_subsets`)."""
    usable = [i for i in range(Fcs.shape[0]) if not failed[i]]
    exhaustive = True
    best_prev = []
    for size in range(1, max_add + 1):
        count = math.comb(len(usable), size)
        if count == 0:
            break
        if count <= max_subsets:
            subsets = np.array(list(itertools.combinations(usable, size)))
        else:
            exhaustive = False
            subsets = np.array([[*best_prev, j] for j in usable if j not in best_prev])
        mats = F0s[None] + Fcs[subsets].sum(axis=1)
        rank, gamma = _rank_and_collinearity(mats)
        good = _identifiable(rank, gamma, P, threshold)
        if np.any(good):
            # Among the repairing sets of this size, the one with the most information in
            # its weakest direction: the largest smallest eigenvalue of the Fisher matrix
            # of ln θ (E-optimality in relative parameters).
            floor = np.linalg.eigvalsh(mats)[:, 0]
            j = int(np.argmax(np.where(good, floor, -np.inf)))
            return _Search([int(i) for i in subsets[j]], True, exhaustive, None)
        # Keep the best (highest rank, then lowest collinearity) as the greedy seed.
        score = np.where(np.isfinite(gamma), gamma, np.inf)
        j = int(np.lexsort((score, -rank))[0])
        best_prev = [int(i) for i in subsets[j]]
    # Nothing repairs: report no additions, and the closest attempt separately.
    best_attempt = None
    if best_prev:
        r, g = _rank_and_collinearity(F0s + Fcs[best_prev].sum(axis=0))
        best_attempt = {"added": best_prev, "rank": int(r), "collinearity": float(g)}
    return _Search([], False, exhaustive, best_attempt)


def _repair_candidates(experiments, fid, names, mode, candidates):
    P = len(names)
    if (
        isinstance(candidates, list | tuple)
        and candidates
        and all(isinstance(c, Experiment) for c in candidates)
    ):
        mats, failed, labels = [], [], []
        for i, cand in enumerate(candidates):
            labels.append(cand.name or f"experiment {i}")
            try:
                mats.append(np.asarray(fisher(cand, fid, params=names, mode=mode).matrix))
                failed.append(False)
            except (FisherError, ValueError, TypeError, KeyError):
                # One bad candidate must not abort the search: it is reported as failed.
                mats.append(np.zeros((P, P)))
                failed.append(True)
        return np.array(mats), np.array(failed), labels
    if len(experiments) != 1:
        raise InputError(
            "candidate design points need a single `experiment` to apply to; "
            "for several experiments give the candidates as a list of "
            "ff.Experiment."
        )
    cands, n = check_candidates(candidates)
    Fc, bad = per_candidate_fisher(experiments[0], fid, names, mode, cands, n)
    Fc = np.where(bad[:, None, None], 0.0, Fc)
    return Fc, bad, [f"candidate {i}" for i in range(n)]
