"""Discrete design questions: which candidates, how many repeats, which additions.

* :func:`select_measurements` picks ``k`` of ``N`` candidate measurement points (greedy +
  Fedorov exchange, or a convex relaxation) and returns a :class:`Selection`;
* :func:`required_samples` inverts ``σ ∝ 1/√n`` (with a prior, by bisection) and returns a
  :class:`RequiredSamples`;
* :func:`repair_identifiability` finds the smallest set of added measurements that makes
  every parameter identifiable and returns a :class:`RepairResult`.

All three work on the numpy Fisher matrices of candidate points; the criteria and the
argument checks they share with :func:`~fisherforecast._design_optimize.optimize_design`
come from :mod:`fisherforecast._design`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_fiducial, check_mode, check_names
from ._design import (
    HIGHEST,
    _align_prior,
    _check_int,
    _common_setup,
    _Criterion,
    _fmt_design,
    _loss_from_matrix,
    _natural_from_matrix,
    _natural_numpy,
    _Record,
    _scale_vector,
    _singular_numpy,
    _unit_diagonal,
)
from ._engine import fisher_information
from ._errors import FisherError, ParameterError, SingularFisherError, quote
from ._experiment import Experiment
from ._fisher import fisher
from ._inverse import describe_direction
from ._linalg import RANK_RTOL
from ._matrix import FisherMatrix
from ._x64 import float64

__all__ = [
    "RepairResult",
    "RequiredSamples",
    "Selection",
    "repair_identifiability",
    "required_samples",
    "select_measurements",
]


# =======================================================================================
# select_measurements
# =======================================================================================
def _take(candidates, idx):
    return jax.tree_util.tree_map(lambda c: c[np.asarray(idx)], candidates)


@partial(jax.jit, static_argnames=("names", "mode"))
def _candidate_fishers(experiment, fid, names, mode, candidates):
    def one(point):
        design = jax.tree_util.tree_map(lambda c: c[None], point)
        return fisher_information(experiment.replace(design=design), fid, names, mode)

    return jax.vmap(one)(candidates)


@partial(jax.jit, static_argnames=("crit",))
def _losses_of_matrices(Fs, crit, ridge):
    return jax.vmap(lambda F: _loss_from_matrix(F, crit, ridge))(Fs)


@partial(jax.jit, static_argnames=("crit",))
def _relaxed_loss_and_grad(w, Fc, base, crit, ridge):
    def loss(w):
        return _loss_from_matrix(
            base + jnp.einsum("n,nij->ij", w, Fc, precision=HIGHEST), crit, ridge
        )

    return jax.value_and_grad(loss)(w)


def _check_candidates(candidates):
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
        raise ValueError(f"`candidates` is empty; received {quote(candidates)}.")
    arrays = [np.asarray(v) for v in leaves]
    for a in arrays:
        if a.ndim == 0:
            raise ValueError(
                "`candidates` must be an array (or pytree of arrays) whose first axis runs "
                f"over the candidate points; received a scalar {quote(candidates)}."
            )
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"`candidates` must be numeric; received dtype {a.dtype}.")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError("`candidates` contains NaN or inf.")
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError(
            f"`candidates` holds no candidate points (length 0 along axis 0); "
            f"received {quote(candidates)}."
        )
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(
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


def _per_candidate_fisher(experiment, fid, names, mode, candidates, n):
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
        raise ValueError(
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
            raise ValueError(
                "the Fisher information of the candidate points does not add up: the "
                "Fisher matrix of all candidates together differs from the sum over single "
                "candidates (correlated noise between design points, or a model whose "
                "output at one point depends on the others). select_measurements and "
                "repair_identifiability need independent measurements."
            )
    return Fc, bad


class Selection(_Record):
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
    """

    def summary(self) -> str:
        lines = [
            f"Selected {len(self.indices)} of {self.n_candidates} candidates by "
            f"{self.method}: {self.criterion}",
            f"  indices: {list(map(int, self.indices))}",
            f"  design:  {_fmt_design(self.design)}",
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
    _, _, fid, names, crit = _common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode
    )
    if method not in ("exchange", "relaxation"):
        raise ValueError(f"`method` must be 'exchange' or 'relaxation'; received {method!r}.")
    candidates, n = _check_candidates(candidates)
    k = _check_int(k, "k", 1)
    if not allow_repeats and k > n:
        raise ValueError(
            f"`k`={k} exceeds the number of candidates ({n}); pass "
            "allow_repeats=True to allow replicate measurements."
        )
    max_iter = _check_int(max_iter, "max_iter", 0)
    n_random = _check_int(n_random, "n_random", 0)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative integer; received {quote(seed)}.")
    Fc, bad = _per_candidate_fisher(experiment, fid, names, mode, candidates, n)
    s = _scale_vector(fid, names, relative)
    S2 = np.outer(s, s)
    Fc = np.where(bad[:, None, None], 0.0, Fc) * S2
    base = _align_prior(prior, names) * S2
    usable = np.nonzero(~bad)[0]
    if (not allow_repeats and usable.size < k) or usable.size == 0:
        raise ValueError(
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
                bound = float(_natural_from_matrix(jnp.asarray(relaxed), crit))
        starts.append(("relaxation", _round_weights(w, usable, k, allow_repeats)))
    if method == "exchange":
        # Greedy forward selection; while the selection is rank deficient every matrix has
        # λ_min = ridge and A, E, ME (and most user criteria) cannot tell the candidates
        # apart, so those first picks maximise log det (the volume spanned) instead.
        losses_d = (
            losses
            if crit.kind == "D"
            else _batched_losses(_Criterion("D", True, crit.names), ridge, n)
        )
        selected, current = [], base.copy()
        for _ in range(k):
            pool = usable if allow_repeats else np.setdiff1d(usable, selected)
            fn = losses_d if _singular_numpy(current) else losses
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
    prior_m = _align_prior(prior, names)
    total = (F_sel.matrix + prior_m) * S2
    if _singular_numpy(total):
        _raise_singular_selection(F_sel, prior_m, k, n, crit)
    value = _natural_numpy(total, crit)
    hist = [_natural_numpy(M, crit) for M in history]
    start_values = {lab: _natural_numpy(cur, crit) for lab, _, cur, _, _, _ in runs}
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


# =======================================================================================
# required_samples
# =======================================================================================
class RequiredSamples:
    """The result of :func:`required_samples`.

    Attributes:
        per_parameter: dict name -> smallest number of repeats ``n`` that brings the
            marginal σ to the target (``math.inf`` if no number of repeats can, e.g. a
            direction the experiment does not constrain at all; 0 if the prior alone does).
        overall: the largest of these (every target met).
        sigma_single: σ for one repeat (prior included).
        target: dict name -> target σ.
    """

    def __init__(
        self, per_parameter, overall, sigma_single, target, fisher_single, prior, marginal
    ):
        self.per_parameter = per_parameter
        self.overall = overall
        self.sigma_single = sigma_single
        self.target = target
        self._F1 = fisher_single
        self._prior = prior
        self._marginal = marginal

    def sigma_at(self, n: float) -> dict:
        """σ per parameter after ``n`` repeats (``n`` may be fractional: observing time)."""
        return _sigma_repeats(self._F1, self._prior, n, self._marginal)

    def summary(self) -> str:
        names = list(self.target)
        width = max([len(x) for x in names] + [9])
        kind = "marginal" if self._marginal else "conditional"
        lines = [
            f"Required repeats of the experiment ({kind} sigma; information scales "
            "linearly with repeats)",
            f"  {'parameter':<{width}}  {'sigma(1)':>11}  {'target':>11}  {'repeats':>9}",
        ]
        for name in names:
            n = self.per_parameter[name]
            lines.append(
                f"  {name:<{width}}  {self.sigma_single[name]:>11.4g}  "
                f"{self.target[name]:>11.4g}  {n if math.isfinite(n) else 'never':>9}"
            )
        lines.append(
            f"  all targets met with {self.overall} repeats"
            if math.isfinite(self.overall)
            else "  some targets can never be met by repeating this experiment"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "per_parameter": dict(self.per_parameter),
            "overall": self.overall,
            "sigma_single": dict(self.sigma_single),
            "target": dict(self.target),
        }

    def __repr__(self):
        return f"RequiredSamples(overall={self.overall}, per_parameter={self.per_parameter})"


def _sigma_repeats(F1, prior, n, marginal):
    M = n * F1.matrix + prior
    names = F1.names
    if marginal:
        w = np.linalg.eigvalsh(_unit_diagonal(M)) if np.all(np.diag(M) > 0) else [0.0]
        if np.min(w) <= RANK_RTOL * len(names) * max(np.max(w), 1e-300):
            return {x: math.inf for x in names}
        cov = np.linalg.inv(M)
        return {x: float(math.sqrt(cov[i, i])) for i, x in enumerate(names)}
    return {x: (1.0 / math.sqrt(M[i, i]) if M[i, i] > 0 else math.inf) for i, x in enumerate(names)}


def required_samples(
    experiment,
    fiducial,
    target_sigma,
    *,
    params=None,
    prior=None,
    relative=False,
    marginal=True,
    mode="forward",
) -> RequiredSamples:
    """How many repeats of an experiment (or how much observing time) reach a target σ.

    Independent repeats add Fisher information: ``F(n) = n F₁ (+ F_prior)``. Without a
    prior, ``σ(n) = σ₁/√n`` and the answer is ``n = ceil((σ₁/target)²)`` per parameter.
    With a prior, ``σ(n)`` is computed from ``(n F₁ + F_prior)⁻¹`` and the smallest integer
    ``n`` is found by bisection (``σ(n)`` decreases with ``n``). When the experiment stands
    for a unit of observing time, ``n`` is the observing time in those units.

    **Arguments:**

    - `experiment`: an :class:`ff.Experiment` (or a list of independent ones repeated
      together).
    - `fiducial`: dict parameter name -> value.
    - `target_sigma`: a number (the same target for every varied parameter) or a dict
      name -> target for some of them.
    - `params`: varied parameters (default: all of `fiducial`).
    - `prior`: an :class:`ff.FisherMatrix` of earlier data (not repeated).
    - `relative`: targets are fractions of ``|fiducial|`` (0.1 = 10 %).
    - `marginal`: use marginal σ (default) or conditional σ (other parameters fixed).

    **Returns:** a :class:`RequiredSamples`; ``.per_parameter``, ``.overall``.

    **Raises:** `ValueError` for non-positive targets or unknown names,
    `SingularFisherError` (without a prior) when the experiment leaves a parameter
    unconstrained however often it is repeated.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([1.0]))         # sigma_a = 1 per repeat
    >>> ff.required_samples(exp, {"a": 1.0}, 0.1).overall    # (1 / 0.1)^2
    100

    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    F1 = fisher(experiments, fid, params=names, mode=mode)
    prior_m = _align_prior(prior, names)
    if not isinstance(marginal, bool | np.bool_):
        raise TypeError(
            f"`marginal` must be True (marginal sigma) or False (conditional "
            f"sigma); received {quote(marginal)}."
        )
    marginal = bool(marginal)
    if isinstance(target_sigma, Mapping):
        if not target_sigma:
            raise ValueError(
                "`target_sigma` is an empty dict: give a number (one target "
                "for every parameter) or a dict name -> target."
            )
        unknown = [x for x in target_sigma if x not in names]
        if unknown:
            raise ParameterError(
                f"`target_sigma` names {unknown}, which are not varied parameters {list(names)}."
            )
        target = {x: target_sigma[x] for x in target_sigma}
    else:
        target = {x: target_sigma for x in names}
    checked = {}
    for x, t in target.items():
        dtype = np.asarray(t).dtype if np.ndim(t) == 0 else None
        if dtype is None or not np.issubdtype(dtype, np.number) or isinstance(t, bool | np.bool_):
            raise TypeError(
                f"`target_sigma` must be a number or a dict of numbers; received "
                f"{quote(target_sigma)}."
            )
        t = float(t)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(
                f"`target_sigma` must be positive and finite; received {t!r} for {x!r}."
            )
        if relative:
            if fid[x] == 0:
                raise ValueError(f"relative=True but the fiducial of {x!r} is 0.")
            t = t * abs(fid[x])
        checked[x] = t
    target = checked
    if prior is None and marginal:
        F1.inverse()  # raises SingularFisherError with the unconstrained direction
    sigma1 = _sigma_repeats(F1, prior_m, 1.0, marginal)
    per = {}
    for x, t in target.items():
        if prior is None:
            s1 = sigma1[x]
            n = math.ceil((s1 / t) ** 2 * (1 - 1e-12)) if math.isfinite(s1) else math.inf
            per[x] = max(int(n), 1) if math.isfinite(n) else math.inf
        else:
            per[x] = _bisect_repeats(F1, prior_m, x, t, marginal)
    finite = [v for v in per.values() if math.isfinite(v)]
    overall = max(finite) if len(finite) == len(per) else math.inf
    return RequiredSamples(per, overall, sigma1, target, F1, prior_m, marginal)


def _bisect_repeats(F1, prior_m, name, target, marginal):
    def sigma(n):
        return _sigma_repeats(F1, prior_m, float(n), marginal)[name]

    if sigma(0) <= target:
        return 0
    hi = 1
    while sigma(hi) > target:
        hi *= 2
        if hi > 2**52:
            return math.inf
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sigma(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


# =======================================================================================
# repair_identifiability
# =======================================================================================
class RepairResult(_Record):
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
    """

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
    diag = np.diagonal(M, axis1=-2, axis2=-1)
    zero = diag <= 0
    d = np.sqrt(np.where(zero, 1.0, diag))
    S = M / (d[..., :, None] * d[..., None, :])
    S = np.where(zero[..., :, None] | zero[..., None, :], 0.0, S)
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
    threshold = float(threshold)
    if not threshold > 1:
        raise ValueError(f"`threshold` must be > 1 (a collinearity index); received {threshold!r}.")
    max_add = _check_int(max_add, "max_add", 1)
    max_subsets = _check_int(max_subsets, "max_subsets", 1)
    if weak_rtol is not None:
        if isinstance(weak_rtol, bool) or not isinstance(
            weak_rtol, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"`weak_rtol` must be None or a number in (0, 1]; received {quote(weak_rtol)}."
            )
        if not 0 < weak_rtol <= 1:
            raise ValueError(
                f"`weak_rtol` must be in (0, 1] (a fraction of the largest "
                f"eigenvalue); received {weak_rtol!r}."
            )
        weak_rtol = float(weak_rtol)
    P = len(names)
    F0 = sum(
        (np.asarray(fisher(e, fid, params=names, mode=mode).matrix) for e in experiments),
        np.zeros((P, P)),
    ) + _align_prior(prior, names)

    Fc, failed, default_labels = _repair_candidates(experiments, fid, names, mode, candidates)
    n = Fc.shape[0]
    if labels is None:
        labels = default_labels
    else:
        labels = [str(x) for x in labels]
        if len(labels) != n:
            raise ValueError(f"`labels` has {len(labels)} entries for {n} candidates.")

    # Scaled (ln θ) coordinates make the weak directions independent of units.
    s = np.array([abs(fid[x]) if fid[x] != 0 else 1.0 for x in names])
    S2 = np.outer(s, s)
    F0s, Fcs = F0 * S2, Fc * S2
    rank0, gamma0 = _rank_and_collinearity(F0s)
    d0 = np.sqrt(np.where(np.diag(F0s) > 0, np.diag(F0s), 1.0))
    U = F0s / np.outer(d0, d0)
    U = np.where((np.diag(F0s) <= 0)[:, None] | (np.diag(F0s) <= 0)[None, :], 0.0, U)
    w, V = np.linalg.eigh(U)
    cut = weak_rtol * w[-1] if weak_rtol is not None else 1.0 / threshold**2
    weak = np.nonzero(w <= max(cut, RANK_RTOL * P * w[-1]))[0]
    # Eigenvectors of the unit-diagonal matrix -> directions in the scaled parameters.
    dirs = []
    for j in weak:
        v = V[:, j] / d0
        dirs.append(v / np.linalg.norm(v))
    dirs = np.array(dirs).reshape(len(weak), P)
    null_dirs, null_texts = [], []
    for v in dirs:
        coeffs, text = describe_direction(v * s, names, fid)  # raw δθ = |θ| δφ
        null_dirs.append(coeffs)
        null_texts.append(text)
    lift = np.einsum("vi,nij,vj->n", dirs, Fcs, dirs) if len(dirs) else np.zeros(n)
    lift = np.where(failed, np.nan, lift)
    # No lift: every usable candidate's information along the weak directions is round-off
    # relative to its total (unit-free) information.
    total_info = np.trace(Fcs, axis1=1, axis2=2)
    no_lift = bool(len(dirs)) and bool(
        np.all(failed | (np.abs(np.nan_to_num(lift)) <= 1e-10 * np.abs(total_info)))
    )

    alone_rank, alone_gamma = _rank_and_collinearity(F0s[None] + Fcs)
    ranking = []
    for i in np.argsort(-np.nan_to_num(lift, nan=-np.inf), kind="stable"):
        ranking.append(
            {
                "index": int(i),
                "label": labels[i],
                "lift": float(lift[i]),
                "rank": int(alone_rank[i]),
                "collinearity": float(alone_gamma[i]),
                "failed": bool(failed[i]),
            }
        )

    def ok(rank, gamma):
        return (rank == P) & (gamma < threshold)

    usable = [i for i in range(n) if not failed[i]]
    best_attempt = None
    if ok(rank0, gamma0):
        added, success, exhaustive = [], True, True
    else:
        added, success, exhaustive = None, False, True
        best_prev = []
        for size in range(1, max_add + 1):
            count = math.comb(len(usable), size)
            if count == 0:
                break
            if count <= max_subsets:
                subsets = np.array(list(itertools.combinations(usable, size)))
                mats = F0s[None] + Fcs[subsets].sum(axis=1)
            else:
                exhaustive = False
                pool = [i for i in usable if i not in best_prev]
                subsets = np.array([[*best_prev, j] for j in pool])
                mats = F0s[None] + Fcs[subsets].sum(axis=1)
            rank, gamma = _rank_and_collinearity(mats)
            good = ok(rank, gamma)
            score = np.where(np.isfinite(gamma), gamma, np.inf)
            if np.any(good):
                # Among the repairing sets of this size, the one with the most information
                # in its weakest direction: the largest smallest eigenvalue of the Fisher
                # matrix of ln θ (E-optimality in relative parameters).
                floor = np.linalg.eigvalsh(mats)[:, 0]
                j = int(np.argmax(np.where(good, floor, -np.inf)))
                added, success = [int(i) for i in subsets[j]], True
                break
            # Keep the best (highest rank, then lowest collinearity) as the greedy seed.
            j = int(np.lexsort((score, -rank))[0])
            best_prev = [int(i) for i in subsets[j]]
        if added is None:
            # Nothing repairs: report no additions, and the closest attempt separately.
            added = []
            if best_prev:
                r, g = _rank_and_collinearity(F0s + Fcs[best_prev].sum(axis=0))
                best_attempt = {"added": best_prev, "rank": int(r), "collinearity": float(g)}
    F_after = F0 + (Fc[added].sum(axis=0) if added else 0.0)
    rank1, gamma1 = _rank_and_collinearity(F_after * S2)
    return RepairResult(
        added=added,
        success=bool(success),
        exhaustive=bool(exhaustive),
        rank_before=int(rank0),
        rank_after=int(rank1),
        collinearity_before=float(gamma0),
        collinearity_after=float(gamma1),
        null_directions=null_dirs,
        null_texts=null_texts,
        ranking=ranking,
        fisher_after=FisherMatrix(
            0.5 * (F_after + F_after.T), names, fiducial={x: fid[x] for x in names}
        ),
        threshold=threshold,
        n_params=P,
        labels=labels,
        best_attempt=best_attempt,
        no_lift=no_lift,
        max_add=max_add,
    )


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
        raise ValueError(
            "candidate design points need a single `experiment` to apply to; "
            "for several experiments give the candidates as a list of "
            "ff.Experiment."
        )
    cands, n = _check_candidates(candidates)
    Fc, bad = _per_candidate_fisher(experiments[0], fid, names, mode, cands, n)
    Fc = np.where(bad[:, None, None], 0.0, Fc)
    return Fc, bad, [f"candidate {i}" for i in range(n)]
