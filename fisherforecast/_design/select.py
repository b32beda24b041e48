"""Discrete design: :func:`select_measurements` picks ``k`` of ``N`` candidate measurement
points (greedy + Fedorov exchange, or a convex relaxation) and returns a
:class:`Selection`. The candidate checks and per-candidate Fisher matrices here are
shared with :func:`~fisherforecast._design.repair.repair_identifiability`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._compile import cached_kernel
from .._engine import fisher_information
from .._errors import InputError, SingularFisherError, quote
from .._experiment import Experiment
from .._fisher import fisher
from .._matrix import FisherMatrix
from .._record import Record
from .._x64 import float64
from .criteria import (
    HIGHEST,
    Criterion,
    loss_from_matrix,
    natural_from_matrix,
    natural_numpy,
    singular_numpy,
)
from .problem import align_prior, common_setup, fmt_design, scale_vector

__all__ = ["Selection", "select_measurements"]


# =======================================================================================
# select_measurements
# =======================================================================================
def _take(candidates, idx):
    return jax.tree_util.tree_map(lambda c: c[np.asarray(idx)], candidates)


@cached_kernel(static_argnames=("names", "mode"))
def _candidate_fishers(experiment, fid, names, mode, candidates):
    def one(point):
        design = jax.tree_util.tree_map(lambda c: c[None], point)
        return fisher_information(experiment.replace(design=design), fid, names, mode)

    return jax.vmap(one)(candidates)


@cached_kernel(static_argnames=("crit",))
def _losses_of_matrices(Fs, crit, ridge):
    return jax.vmap(lambda F: loss_from_matrix(F, crit, ridge))(Fs)


@cached_kernel(static_argnames=("crit",))
def _relaxed_loss_and_grad(w, Fc, base, crit, ridge):
    def loss(w):
        return loss_from_matrix(
            base + jnp.einsum("n,nij->ij", w, Fc, precision=HIGHEST), crit, ridge
        )

    return jax.value_and_grad(loss)(w)


def check_candidates(candidates):
    if (
        isinstance(candidates, list | tuple)
        and candidates
        and all(
            isinstance(c, int | float | np.number) and not isinstance(c, bool) for c in candidates
        )
    ):
        candidates = np.asarray(candidates)  # a plain list of points is an array of them
    leaves = jax.tree_util.tree_leaves(candidates)
    if not leaves:
        raise InputError(f"`candidates` is empty; received {quote(candidates)}.")
    arrays = [np.asarray(v) for v in leaves]
    for a in arrays:
        if a.ndim == 0:
            raise InputError(
                "`candidates` must be an array (or pytree of arrays) whose first axis runs "
                f"over the candidate points; received a scalar {quote(candidates)}."
            )
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"`candidates` must be numeric; received dtype {a.dtype}.")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise InputError("`candidates` contains NaN or inf.")
    n = arrays[0].shape[0]
    if n == 0:
        raise InputError(
            f"`candidates` holds no candidate points (length 0 along axis 0); "
            f"received {quote(candidates)}."
        )
    if any(a.shape[0] != n for a in arrays):
        raise InputError(
            "every leaf of `candidates` must have the same length along axis 0 "
            f"(one entry per candidate); received lengths "
            f"{[a.shape[0] for a in arrays]}."
        )
    cands = jax.tree_util.tree_map(
        lambda a: (
            np.asarray(a, dtype=np.float64)
            if np.issubdtype(np.asarray(a).dtype, np.floating)
            else np.asarray(a)
        ),
        candidates,
    )
    return cands, n


def per_candidate_fisher(experiment, fid, names, mode, candidates, n):
    """Fisher matrix of one measurement at each candidate, with an additivity check."""
    try:
        with float64():
            fid64 = {k: np.float64(v) for k, v in fid.items()}
            Fc = np.asarray(
                _candidate_fishers(experiment, fid64, names, mode, candidates), dtype=np.float64
            )
            F_all = np.asarray(
                fisher_information(experiment.replace(design=candidates), fid64, names, mode),
                dtype=np.float64,
            )
    except (ValueError, TypeError) as exc:
        raise InputError(
            "could not evaluate the Fisher matrix of single candidate points: the candidates "
            "are used as designs (candidates[i:i+1] for one point, candidates[S] for a "
            "subset S), so the model and the noise must accept designs of any length (a "
            "scalar sigma, or a callable sigma(params, design)). Original error: "
            f"{exc}"
        ) from None
    bad = ~np.all(np.isfinite(Fc.reshape(n, -1)), axis=1)
    if not np.any(bad) and np.all(np.isfinite(F_all)):
        total = Fc.sum(axis=0)
        scale = np.sqrt(np.outer(np.diag(F_all), np.diag(F_all))) + 1e-300
        if np.max(np.abs(F_all - total) / scale) > 1e-6:
            raise InputError(
                "the Fisher information of the candidate points does not add up: the "
                "Fisher matrix of all candidates together differs from the sum over single "
                "candidates (correlated noise between design points, or a model whose "
                "output at one point depends on the others). select_measurements and "
                "repair_identifiability need independent measurements."
            )
    return Fc, bad


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Selection(Record):
    """The result of :func:`select_measurements`.

    Attributes:
        indices: the selected candidate indices (sorted; repeated for replicates).
        design: the design made of the selected candidates (``candidates[indices]``).
        experiment: the experiment with that design; fisher: its Fisher matrix (no prior).
        criterion_value: the criterion (as defined, prior included) of the selection.
        criterion: description; method: ``"exchange"`` or ``"relaxation"``.
        bound: for "D", "A" and "E" with ``method="relaxation"``: the optimum of the convex
            relaxation, an upper bound on the criterion of *any* k-subset; else ``None``.
        iterations: exchange iterations used; history: the criterion at the start and
            after each exchange, both of the winning start.
        start: which start the returned selection came from (``"greedy"``,
            ``"relaxation"`` or ``"random i"``); starts: dict start -> criterion value
            after its exchange.
        n_candidates: how many candidates there were.

    Methods: ``summary()``, ``to_dict()``. Two of the points ``t = 0, 0.25, …, 10`` for a
    line ``a + b t``: the D-optimal pair is the two ends, with ``F = [[2, 10], [10, 100]]``
    and ``log det F = ln 100``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0))
    >>> sel = ff.select_measurements(exp, {"a": 1.0, "b": 0.5}, np.arange(0, 10.25, 0.25), 2)
    >>> sel.indices.tolist(), sel.design.tolist(), sel.n_candidates
    ([0, 40], [0.0, 10.0], 41)
    >>> round(sel.criterion_value, 6), sel.method, sel.fisher.matrix.tolist()
    (4.60517, 'exchange', [[2.0, 10.0], [10.0, 100.0]])
    ```
    """

    indices: np.ndarray
    design: Any
    experiment: Experiment
    fisher: FisherMatrix
    criterion_value: float
    criterion: str
    method: str
    bound: float | None
    iterations: int
    history: list
    n_candidates: int
    start: str
    starts: dict

    def summary(self) -> str:
        lines = [
            f"Selected {len(self.indices)} of {self.n_candidates} candidates by "
            f"{self.method}: {self.criterion}",
            f"  indices: {list(map(int, self.indices))}",
            f"  design:  {fmt_design(self.design)}",
            f"  criterion: {self.criterion_value:.6g}",
        ]
        if self.bound is not None:
            lines.append(
                f"  relaxation bound: {self.bound:.6g} (gap "
                f"{self.bound - self.criterion_value:.3g})"
            )
        lines.append(self.fisher.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "indices": [int(i) for i in self.indices],
            "design": jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), self.design),
            "criterion": self.criterion,
            "criterion_value": self.criterion_value,
            "bound": self.bound,
            "method": self.method,
            "iterations": self.iterations,
            "history": list(self.history),
            "start": self.start,
            "starts": dict(self.starts),
            "fisher": self.fisher.to_dict(),
        }

    def __repr__(self):
        return (
            f"Selection(indices={[int(i) for i in self.indices]}, criterion_value="
            f"{self.criterion_value:.6g})"
        )


def select_measurements(
    experiment,
    fiducial,
    candidates,
    k,
    criterion="D",
    *,
    prior=None,
    params=None,
    maximize=None,
    relative=False,
    method="exchange",
    allow_repeats=False,
    max_iter=200,
    n_random=3,
    seed=0,
    mode="forward",
) -> Selection:
    """Pick `k` of `N` candidate measurement points that optimise a design criterion.

    A *candidate* is one design point: ``candidates`` is an array (or a pytree of arrays)
    whose first axis runs over the ``N`` candidates, e.g. an array of possible times. A
    subset ``S`` maps to the design ``candidates[S]`` (each leaf indexed along axis 0), so
    the experiment's model and noise must accept designs of any length. Measurements at
    different candidates must be independent (their Fisher matrices add); this is checked.

    Methods:

    - ``"exchange"`` (default): Fedorov exchange (the best single swap of a selected and an
      unselected candidate, until none improves) from several starts, the best result
      returned: greedy forward selection (maximising ``log det`` while the selection is
      still rank deficient, where every other criterion is flat), the rounded convex
      relaxation below (for up to 128 usable candidates; so the result is never worse than
      ``method="relaxation"`` there) and `n_random` random selections. Several starts
      matter for the non-smooth "E" and "ME", where a single exchange path often stalls.
    - ``"relaxation"``: solve the convex relaxation over weights ``0 ≤ w_i ≤ 1`` (``≤ k``
      with `allow_repeats`), ``Σ w_i = k``, round to the ``k`` largest weights and polish by
      exchange. For "D", "A" and "E" the relaxed optimum is an upper bound on every
      k-subset (reported as ``bound``), which certifies how close the selection is.

    **Arguments:**

    - `experiment`: the :class:`ff.Experiment` (its current design is not used).
    - `fiducial`, `criterion`, `prior`, `params`, `maximize`, `relative`, `mode`: as in
      :func:`optimize_design`.
    - `candidates`: array/pytree of candidate design points (first axis: candidates).
    - `k`: how many to select.
    - `allow_repeats`: allow a candidate to be selected several times (replicates).
    - `max_iter`: maximum number of exchange iterations (per start).
    - `n_random`: number of random starts of the exchange (``method="exchange"``);
      `seed`: their seed.

    **Returns:** a :class:`Selection`.

    **Raises:** `ValueError` for ``k`` out of range, non-additive candidates, bad input;
    `SingularFisherError` when even the best selection leaves a parameter unconstrained
    (e.g. fewer points than parameters, without a prior).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1))
    >>> sel = ff.select_measurements(exp, {"A": 2.0, "k": 0.5}, np.arange(0, 10.25, 0.25), 2)
    >>> sel.design.tolist()
    [0.0, 2.0]

    ```
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"`experiment` must be an ff.Experiment; received {quote(experiment)}.")
    _, _, fid, names, crit = common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode
    )
    if method not in ("exchange", "relaxation"):
        raise InputError(f"`method` must be 'exchange' or 'relaxation'; received {method!r}.")
    candidates, n = check_candidates(candidates)
    k = check_int(k, "k", 1)
    if not allow_repeats and k > n:
        raise InputError(
            f"`k`={k} exceeds the number of candidates ({n}); pass "
            "allow_repeats=True to allow replicate measurements."
        )
    max_iter = check_int(max_iter, "max_iter", 0)
    n_random = check_int(n_random, "n_random", 0)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative integer; received {quote(seed)}.")
    Fc, bad = per_candidate_fisher(experiment, fid, names, mode, candidates, n)
    s = scale_vector(fid, names, relative)
    S2 = np.outer(s, s)
    Fc = np.where(bad[:, None, None], 0.0, Fc) * S2
    base = align_prior(prior, names) * S2
    usable = np.nonzero(~bad)[0]
    if (not allow_repeats and usable.size < k) or usable.size == 0:
        raise InputError(
            f"only {usable.size} of {n} candidates give a finite Fisher matrix; cannot select {k}."
        )
    # A small ridge keeps the criterion finite while fewer than P points are selected.
    ridge = 1e-9
    losses = _batched_losses(crit, ridge, n)

    bound = None
    starts = []  # (label, selection) to run the exchange from
    if method == "relaxation" or usable.size <= _RELAX_START_MAX:
        w = _relaxed_weights(Fc[usable], base, k, allow_repeats, crit, ridge)
        if method == "relaxation" and crit.kind in ("D", "A", "E"):
            with float64():
                relaxed = base + np.einsum("n,nij->ij", w, Fc[usable])
                bound = float(natural_from_matrix(jnp.asarray(relaxed), crit))
        starts.append(("relaxation", _round_weights(w, usable, k, allow_repeats)))
    if method == "exchange":
        # Greedy forward selection; while the selection is rank deficient every matrix has
        # λ_min = ridge and A, E, ME (and most user criteria) cannot tell the candidates
        # apart, so those first picks maximise log det (the volume spanned) instead.
        losses_d = (
            losses
            if crit.kind == "D"
            else _batched_losses(Criterion("D", True, crit.names), ridge, n)
        )
        selected, current = [], base.copy()
        for _ in range(k):
            pool = usable if allow_repeats else np.setdiff1d(usable, selected)
            fn = losses_d if singular_numpy(current) else losses
            trial = fn(current[None] + Fc[pool])
            j = int(pool[int(np.argmin(np.where(np.isfinite(trial), trial, np.inf)))])
            selected.append(j)
            current = current + Fc[j]
        starts.insert(0, ("greedy", selected))
        # A few random starts: the exchange of single swaps can stall on a non-smooth
        # criterion (E, ME), and the best of several starts is far more reliable.
        rng = np.random.default_rng(seed)
        for r in range(n_random):
            pick = rng.choice(usable, size=k, replace=bool(allow_repeats))
            starts.append((f"random {r + 1}", [int(i) for i in pick]))

    runs = []
    for label, selected in starts:
        runs.append(
            (label, *_exchange(selected, Fc, base, usable, allow_repeats, losses, max_iter))
        )
    # The lowest loss wins; ties go to the earlier start (greedy, then relaxation).
    best = min(range(len(runs)), key=lambda i: (runs[i][3], i))
    label, selected, _, _, iterations, history = runs[best]

    idx = np.sort(np.asarray(selected))
    design = _take(candidates, idx)
    exp_sel = experiment.replace(design=design)
    F_sel = fisher(exp_sel, fid, params=names, mode=mode)
    prior_m = align_prior(prior, names)
    total = (F_sel.matrix + prior_m) * S2
    if singular_numpy(total):
        _raise_singular_selection(F_sel, prior_m, k, n, crit)
    value = natural_numpy(total, crit)
    hist = [natural_numpy(M, crit) for M in history]
    start_values = {lab: natural_numpy(cur, crit) for lab, _, cur, _, _, _ in runs}
    return Selection(
        indices=idx,
        design=design,
        experiment=exp_sel,
        fisher=F_sel,
        criterion_value=value,
        criterion=crit.label,
        method=method,
        bound=bound,
        iterations=iterations,
        history=hist,
        n_candidates=n,
        start=label,
        starts=start_values,
    )


#: The exchange method also starts from the rounded convex relaxation when there are at most
#: this many usable candidates (SLSQP on N weights costs O(N³) per iteration).
_RELAX_START_MAX = 128
#: Criterion evaluations per compiled call are padded to a multiple of a fixed chunk (a
#: power of two between these bounds, from the number of candidates), so that pools of any
#: size (greedy: N, N-1, ...; exchange: k·(N-k)) reuse one compilation.
_CHUNK_MIN, _CHUNK_MAX = 64, 4096


def _batched_losses(crit, ridge, n_candidates=0):
    """``losses(mats) -> (m,)`` numpy losses, in padded chunks of a fixed size."""
    chunk = min(max(_CHUNK_MIN, 1 << max(int(n_candidates) - 1, 0).bit_length()), _CHUNK_MAX)

    def losses(mats):
        mats = np.asarray(mats, dtype=np.float64)
        m, P = mats.shape[0], mats.shape[-1]
        out = np.empty(m)
        with float64():
            for lo in range(0, m, chunk):
                part = mats[lo : lo + chunk]
                size = part.shape[0]
                if size < chunk:  # padded entries: identity matrices, dropped below
                    pad = np.broadcast_to(np.eye(P), (chunk - size, P, P))
                    part = np.concatenate([part, pad])
                values = np.asarray(
                    _losses_of_matrices(jnp.asarray(part), crit, ridge), dtype=np.float64
                )
                out[lo : lo + size] = values[:size]
        return np.where(np.isfinite(out), out, np.inf)

    return losses


def _round_weights(w, usable, k, allow_repeats):
    """The k candidates of the relaxed weights: the largest ones (rounded counts)."""
    if allow_repeats:
        counts = np.floor(w + 1e-9).astype(int)
        while counts.sum() > k:  # round-off above an integer
            counts[np.argmax(counts)] -= 1
        rest = k - counts.sum()
        frac = w - counts
        counts[np.argsort(-frac, kind="stable")[:rest]] += 1
        return [int(usable[i]) for i in range(usable.size) for _ in range(counts[i])]
    return [int(usable[i]) for i in np.argsort(-w, kind="stable")[:k]]


def _exchange(selected, Fc, base, usable, allow_repeats, losses, max_iter):
    """Fedorov exchange: the best single swap, until none improves.

    Returns ``(selected, current matrix, loss, iterations, history of matrices)``.
    """
    selected = [int(i) for i in selected]
    current = base + Fc[np.asarray(selected)].sum(axis=0)
    history = [current]
    current_loss = float(losses(current[None])[0])
    iterations = 0
    while iterations < max_iter:
        pool = usable if allow_repeats else np.setdiff1d(usable, selected)
        if pool.size == 0:
            break
        removed = current[None] - Fc[np.asarray(selected)]  # (k, P, P)
        trial = losses((removed[:, None] + Fc[pool][None]).reshape(-1, *current.shape))
        trial = trial.reshape(len(selected), pool.size)
        i, j = np.unravel_index(int(np.argmin(trial)), trial.shape)
        if not trial[i, j] < current_loss - 1e-12 * max(abs(current_loss), 1.0):
            break
        current = removed[i] + Fc[pool[j]]
        selected[i] = int(pool[j])
        current_loss = float(trial[i, j])
        history.append(current)
        iterations += 1
    return selected, current, current_loss, iterations, history


def _raise_singular_selection(F_sel, prior_m, k, n, crit):
    P = len(F_sel.names)
    total = FisherMatrix(F_sel.matrix + prior_m, F_sel.names, fiducial=F_sel.fiducial)
    try:
        total.inverse()
        detail, directions = "the Fisher matrix is numerically singular.", ()
    except SingularFisherError as exc:
        detail, directions = str(exc), exc.directions
    few = (
        f" {k} measurement(s) for {P} parameters: fewer points than parameters can only "
        "work with a prior or with several outputs per point."
        if k < P
        else ""
    )
    raise SingularFisherError(
        f"select_measurements ({crit.label}): the best {k} of the {n} candidates still leave "
        f"the Fisher matrix singular:{few} {detail}\nSelect more points (larger `k`), add a "
        "`prior`, or see ff.repair_identifiability(...) for candidates that constrain the "
        "missing direction.",
        directions=directions,
        names=F_sel.names,
    )


def _relaxed_weights(Fc, base, k, allow_repeats, crit, ridge):
    """Maximise the criterion of ``base + Σ w_i F_i`` over ``0 ≤ w ≤ cap``, ``Σ w = k``."""
    import scipy.optimize

    n = Fc.shape[0]
    cap = float(k) if allow_repeats else 1.0
    with float64():
        Fj = jnp.asarray(Fc)
        bj = jnp.asarray(base)

        def fun(w):
            value, grad = _relaxed_loss_and_grad(jnp.asarray(w), Fj, bj, crit, ridge)
            return float(value), np.asarray(grad, dtype=np.float64)

        w0 = np.full(n, k / n)
        res = scipy.optimize.minimize(
            fun,
            w0,
            jac=True,
            method="SLSQP",
            bounds=[(0.0, cap)] * n,
            constraints=[
                {"type": "eq", "fun": lambda w: np.sum(w) - k, "jac": lambda w: np.ones_like(w)}
            ],
            options={"maxiter": 500, "ftol": 1e-12},
        )
    return np.clip(res.x, 0.0, cap)
