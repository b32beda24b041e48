"""Optimal design by gradient-based global optimisation: :func:`optimize_design`.

:func:`optimize_design` moves the continuous design variables (measurement times, doses,
frequencies) of one or several experiments to the optimum of a design criterion of the
Fisher matrix and returns a :class:`DesignResult`. The criteria, the design problem and the
jitted multistart it runs live in the sibling modules
``criteria``, ``problem`` and ``objective``.

How :func:`optimize_design` works (see ``docs/design.md``):

1. The free design entries ``x`` are mapped from unconstrained variables ``u``:
   ``x = low + (high - low)(1 + sin u)/2`` for a box, a softmax of gaps for ordered times
   with a minimum spacing. The sine map reaches the bounds at finite ``u``, so optima on
   the boundary (common: ``t = 0`` or ``t = T``) are ordinary stationary points.
2. The criterion is a pure JAX function of ``ff.fisher_information(experiment.replace(
   design=x), ...)``; its gradient with respect to ``x`` is exact (forward mode by default,
   so ODE models with forward-mode adjoints work).
3. Many starts (the initial design and random designs in the feasible set) run
   ``optimistix.BFGS``: one after another on a CPU, together under one ``jax.vmap`` on an
   accelerator (`batch_size`); one compiled program per problem shape.
4. The best few distinct end points are polished in the original bounded variables with
   ``scipy.optimize`` (L-BFGS-B for boxes, SLSQP with linear constraints for ordered times)
   using the same JAX gradient; the best polished design is returned.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._errors import FisherError, InputError, SingularFisherError, quote
from .._fisher import fisher
from .._matrix import FisherMatrix
from .._progress import check_progress, progress_bar
from .._x64 import float64
from .criteria import Criterion, natural_numpy, singular_numpy
from .objective import loss_and_grad, multistart, natural_batch
from .problem import build_problem, common_setup, designs_from_x, random_x, u_from_x
from .result import DesignResult
from .t0 import check_bounds_after_t0

__all__ = ["DesignResult", "optimize_design"]


# =======================================================================================
# optimize_design
# =======================================================================================
def optimize_design(
    experiment,
    fiducial,
    *,
    bounds,
    criterion="D",
    prior=None,
    n_starts=32,
    seed=0,
    fixed=None,
    constraints=None,
    params=None,
    maximize=None,
    relative=False,
    n_polish=3,
    max_steps=500,
    rtol=1e-10,
    mode="forward",
    gradient="forward",
    batch_size="auto",
    progress=None,
) -> DesignResult:
    """Optimise the design of one or several experiments for a Fisher-matrix criterion.

    The objective is a criterion of ``F(design) + F_prior`` where ``F(design)`` is
    ``ff.fisher_information`` of the experiment(s) with the candidate design: a pure JAX
    function with exact gradients in the design. A batch of starts (the initial design and
    ``n_starts - 1`` random feasible designs) runs ``optimistix.BFGS`` (one start after
    another on a CPU, under one ``jax.vmap`` on an accelerator); the best ``n_polish``
    distinct end points are polished in the bounded variables with ``scipy.optimize``
    (L-BFGS-B, or SLSQP when `constraints` are given) and the best is returned.
    ``n_starts=1`` is a purely local optimisation from the initial design.

    **Arguments:**

    - `experiment`: an :class:`ff.Experiment` whose ``design`` pytree holds the design
      variables and their initial values (e.g. an array of measurement times), or a list
      of experiments optimised jointly: their Fisher matrices add, and the design is the
      list of their designs.
    - `fiducial`: dict parameter name -> value at which the Fisher matrix is evaluated
      (a *locally* optimal design).
    - `bounds`: ``(low, high)`` for every design entry, or a pytree of ``(low, high)``
      pairs with the structure of the design (a list of them for a list of experiments);
      ``low``/``high`` may be arrays broadcasting to a design leaf.
    - `criterion`: ``"D"`` (maximise ``log det F``), ``"A"`` (maximise ``-tr F⁻¹``),
      ``"E"`` (maximise the smallest eigenvalue), ``"ME"`` (minimise the condition number
      ``λ_max/λ_min``), or a callable ``criterion(F) -> scalar`` receiving a
      :class:`DesignFisher` (a traced matrix with names and differentiable methods
      ``sigma``, ``covariance``, ``marginalize``, ``figure_of_merit``, ``logdet``). A callable
      is maximised unless it has ``maximize = False`` or `maximize` is ``False``. Ready-made:
      :func:`sigma_criterion` (σ of one parameter), :func:`fom_criterion` (DETF FoM).
    - `prior`: an :class:`ff.FisherMatrix` from earlier data, added (by parameter name)
      before the criterion is evaluated; its parameters must be among the varied ones.
    - `n_starts`: number of starts in the batched multistart (the first is the initial
      design, where coinciding free entries are first moved apart by 0.05-0.15 % of their
      bound width: coinciding points are a stationary point no gradient separates);
      `seed`: seed of the random starts.
    - `fixed`: booleans (a single one, or a pytree prefix of the design) marking entries
      held at their initial values.
    - `constraints`: ``None``, ``"ordered"`` or ``{"min_spacing": δ}``: every 1-D design
      array (with one scalar bound pair and no fixed entries) is kept sorted with
      neighbours at least ``δ`` apart, so replicate measurements are excluded.
    - `params`: names of the varied parameters (default: all of `fiducial`).
    - `maximize`: direction of a callable criterion (default: its ``maximize`` attribute,
      else ``True``).
    - `relative`: evaluate the criterion on the Fisher matrix of ``θ/|θ₀|`` (that is of
      ``ln θ``), which makes "A", "E" and "ME" independent of the parameters' units; "D"
      only shifts by a constant.
    - `n_polish`: number of distinct end points polished with scipy.
    - `max_steps`, `rtol`: BFGS step limit and tolerance of the batched phase.
    - `mode`: Jacobian mode of the Fisher matrix (``"forward"``/``"reverse"``).
    - `gradient`: how the design gradient is computed, ``"forward"`` (default; works for
      models that only support forward-mode autodiff, e.g. ODE models with a forward-mode
      adjoint; cost grows with the number of free design entries) or ``"reverse"``.
    - `progress`: a tqdm bar over the phases (multistart, polish) with a cost estimate
      first (``None``: only when run in a terminal; ``True``; ``False``).
    - `batch_size`: ``"auto"`` (default): ``1`` on a CPU, ``None`` on an accelerator.
      ``None`` runs all starts under one ``jax.vmap``; an integer ``b`` runs them in
      vmapped chunks of ``b`` (``1``: one start at a time), one chunk after another, each
      chunk the same compiled program. Vmapped starts move in lockstep (each runs as long
      as the slowest), which a GPU absorbs and a CPU pays for (see ``docs/design.md``).

    **Returns:** a :class:`DesignResult`.

    **Raises:** `ValueError`/`TypeError` for bad bounds, masks, constraints or criteria
    (naming the argument), `ParameterError` for unknown parameter names,
    `SingularFisherError` when even the optimal design leaves a parameter unconstrained.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t), ff.Gaussian(sigma=0.1),
    ...                     design=jnp.array([1.0, 5.0]))
    >>> res = ff.optimize_design(exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=8)
    >>> sorted(round(float(t), 4) for t in res.design)      # {0, 1/k}
    [0.0, 2.0]

    ```
    """
    experiments, joint, fid, names, crit = common_setup(
        experiment, fiducial, params, criterion, maximize, prior, relative, mode
    )
    if bounds is None:
        raise InputError(
            "`bounds` is required: give (low, high) for every design entry, or "
            "a pytree of (low, high) pairs with the design's structure."
        )
    if gradient not in ("forward", "reverse"):
        raise InputError(f"`gradient` must be 'forward' or 'reverse'; received {gradient!r}.")
    n_starts = check_int(n_starts, "n_starts", 1)
    n_polish = check_int(n_polish, "n_polish", 0)
    max_steps = check_int(max_steps, "max_steps", 1)
    batch_size = _check_batch_size(batch_size)
    rng = np.random.default_rng(_check_seed(seed))
    rtol = _check_rtol(rtol)
    show = check_progress(progress)
    check_bounds_after_t0(experiments, bounds, joint)
    estimate = (
        f"{n_starts} starts × ≤ {max_steps} BFGS steps through one compiled program (each step one "
        f"Fisher matrix and its design gradient), then ≤ {n_polish} polished; the first "
        "call compiles the criterion's gradient (most of its time)."
    )

    with float64():
        problem = build_problem(
            experiments,
            joint,
            fid,
            names,
            crit,
            prior,
            relative,
            mode,
            gradient,
            bounds,
            fixed,
            constraints,
        )
        with progress_bar(show, 2, "optimize_design", "phase", estimate) as bar:
            bar.set_postfix_str("multistart")
            run = _run_starts(problem, rng, n_starts, max_steps, rtol, batch_size)
            bar.update()
            bar.set_postfix_str("polish")
            chosen = _distinct_best(run, problem.arrays, n_polish)
            best_x = n_polished = None
            if chosen:
                best_x, n_polished = _polish_best(run, chosen, problem, n_polish)
            bar.update()
        if not chosen:
            _raise_if_criterion_nan(experiments, fid, names, mode, problem.arrays, crit)
            raise FisherError(
                "every start of the design optimisation failed (non-finite criterion). "
                "Check that the model is finite and differentiable over the whole `bounds` "
                "(e.g. an ODE solve failing for some times) and that the design can "
                "constrain the parameters (ff.repair_identifiability)."
            )
        assert best_x is not None and n_polished is not None  # a start was chosen
        designs_opt = designs_from_x(jnp.asarray(best_x), problem.arrays, problem.spec)

    designs_opt = [jax.tree_util.tree_map(np.asarray, d) for d in designs_opt]
    exps_opt = [e.replace(design=d) for e, d in zip(experiments, designs_opt, strict=True)]
    F_opt = fisher(exps_opt, fid, params=names, mode=mode)
    total = _plus_prior(F_opt, problem.arrays.prior)
    if singular_numpy(total.matrix):
        _raise_singular(total, crit, run.xs, problem.spec, problem.arrays)
    S2 = np.outer(problem.arrays.scale, problem.arrays.scale)
    best_value = natural_numpy(total.matrix * S2, crit)
    initial = _initial_figures(experiments, fid, names, mode, problem.arrays, crit)
    gain, efficiency = _gain_and_efficiency(best_value, initial.value, crit, len(names))
    initial_designs = [e.design for e in experiments]
    return DesignResult(
        design=designs_opt if joint else designs_opt[0],
        criterion_value=best_value,
        criterion=crit.label,
        maximize=crit.maximize,
        experiment=exps_opt if joint else exps_opt[0],
        fisher=F_opt,
        total_fisher=total,
        initial_design=initial_designs if joint else initial_designs[0],
        initial_value=initial.value,
        initial_fisher=initial.fisher,
        initial_total_fisher=initial.total_fisher,
        initial_error=initial.error,
        gain=gain,
        efficiency=efficiency,
        all_starts=run.values,
        converged=run.converged,
        n_polished=n_polished,
        joint=joint,
        _crit=crit,
        _problem=problem,
        _x=best_x,
    )


class _Run(NamedTuple):
    """End points of the batched multistart (numpy)."""

    xs: np.ndarray  # (n_starts, n_free)
    losses: np.ndarray  # objective to minimise, inf where a start failed
    values: np.ndarray  # the criterion as defined (NaN where a start failed)
    converged: np.ndarray


def _run_starts(problem, rng, n_starts, max_steps, rtol, batch_size) -> _Run:
    """Start 0 at the initial design (ties separated), the others random and feasible."""
    spec, arrays = problem.spec, problem.arrays
    x_start = _separate_ties(np.clip(problem.x0, arrays.low, arrays.high), arrays.low, arrays.high)
    starts = np.concatenate([x_start[None, :], random_x(rng, n_starts - 1, arrays, spec)])
    u0s = np.stack([u_from_x(x, arrays, spec) for x in starts])
    xs, losses, values, converged = multistart(
        jnp.asarray(u0s), arrays, spec, max_steps, float(rtol), batch_size
    )
    losses = np.asarray(losses, dtype=np.float64)
    return _Run(
        xs=np.asarray(xs, dtype=np.float64),
        losses=np.where(np.isfinite(losses), losses, np.inf),
        values=np.asarray(values, dtype=np.float64),
        converged=np.asarray(converged, dtype=bool),
    )


def _distinct_best(run: _Run, arrays, n_polish) -> list[int]:
    """The starts with the lowest finite losses, distinct end points only (at most
    ``max(n_polish, 1)``)."""
    chosen = []
    span = np.where(np.isfinite(arrays.high - arrays.low), arrays.high - arrays.low, 1.0)
    for i in np.argsort(run.losses):
        if not np.isfinite(run.losses[i]) or len(chosen) >= max(n_polish, 1):
            break
        if all(np.max(np.abs(run.xs[i] - run.xs[j]) / span) > 1e-6 for j in chosen):
            chosen.append(int(i))
    return chosen


def _polish_best(run: _Run, chosen, problem, n_polish):
    """Polish the chosen end points in the bounded variables; the best and how many."""
    best_x, best_loss = run.xs[chosen[0]], run.losses[chosen[0]]
    n_polished = 0
    if n_polish > 0:
        for i in chosen:
            x_p, loss_p = _polish(run.xs[i], problem.arrays, problem.spec)
            n_polished += 1
            if np.isfinite(loss_p) and loss_p < best_loss:
                best_x, best_loss = x_p, loss_p
    return best_x, n_polished


def _plus_prior(F: FisherMatrix, prior_matrix) -> FisherMatrix:
    return FisherMatrix(F.matrix + prior_matrix, F.names, fiducial=F.fiducial, name=F.name)


class _Initial(NamedTuple):
    """The initial design's figures, or why they are unavailable."""

    value: float
    fisher: FisherMatrix | None
    total_fisher: FisherMatrix | None
    error: str | None


def _initial_figures(experiments, fid, names, mode, arrays, crit) -> _Initial:
    """The criterion at the initial design, for the reported gain.

    The optimum is already found when this runs: whatever fails here (a model or noise
    model invalid at the initial design, e.g. Poisson counts <= 0; an ODE solver error; a
    criterion that raises) must not discard it. The figure is then reported as unavailable
    (NaN) with the reason.
    """
    try:
        F_init = fisher(experiments, fid, params=names, mode=mode)
        total_init = _plus_prior(F_init, arrays.prior)
        value = natural_numpy(total_init.matrix * np.outer(arrays.scale, arrays.scale), crit)
    except Exception as exc:  # any failure here only loses the comparison
        reason = f"{type(exc).__name__}: {exc}".strip()
        return _Initial(math.nan, None, None, reason)
    return _Initial(float(value), F_init, total_init, None)


def _gain_and_efficiency(best_value, init_value, crit, n_params):
    """Improvement over the initial design (NaN when unavailable) and, for "D" and "A",
    the initial design's efficiency (None when unavailable)."""
    gain = best_value - init_value if crit.maximize else init_value - best_value
    if math.isnan(init_value):
        return float(gain), None
    if crit.kind == "D":
        return float(gain), float(math.exp((init_value - best_value) / n_params))
    if crit.kind == "A":
        return float(gain), abs(float(best_value / init_value)) if np.isfinite(init_value) else 0.0
    return float(gain), None


def _check_batch_size(batch_size):
    """``"auto"`` -> 1 on a CPU (starts one at a time: each stops when it converges), None
    (one vmapped batch) on an accelerator; None or a positive integer as given."""
    if isinstance(batch_size, str):
        if batch_size != "auto":
            raise InputError(
                f"`batch_size` must be 'auto', None or a positive integer; received {batch_size!r}."
            )
        return 1 if jax.default_backend() == "cpu" else None
    if batch_size is None:
        return None
    return check_int(batch_size, "batch_size", 1)


def _check_seed(seed):
    ok = (
        seed is None
        or isinstance(seed, np.random.SeedSequence | np.random.Generator)
        or (isinstance(seed, int | np.integer) and not isinstance(seed, bool))
    )
    if not ok:
        raise TypeError(
            f"`seed` must be a non-negative integer, None or a numpy Generator; "
            f"received {quote(seed)}."
        )
    if isinstance(seed, int | np.integer) and seed < 0:
        raise InputError(f"`seed` must be a non-negative integer; received {seed!r}.")
    return seed


def _check_rtol(rtol):
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.integer | np.floating):
        raise TypeError(
            f"`rtol` must be a positive number (the BFGS tolerance); received {quote(rtol)}."
        )
    rtol = float(rtol)
    if not (math.isfinite(rtol) and rtol > 0):
        raise InputError(
            f"`rtol` must be a positive, finite number (the BFGS tolerance); received {rtol!r}."
        )
    return rtol


#: Size of the jitter that separates coinciding entries of start 0, as a fraction of each
#: entry's bound width.
_TIE_JITTER = 1e-3


def _separate_ties(x, low, high):
    """Start 0 with coinciding free entries nudged apart, deterministically and unevenly.

    A design whose points coincide (``[3, 3]``) is a symmetric stationary point of most
    criteria: the gradient cannot separate the points, and a local optimiser stays there.
    Each tied entry moves by ``_TIE_JITTER × (bound width) × r_i`` towards the middle of its
    bounds, with distinct ``r_i ∈ [0.5, 1.5)`` (multiples of the golden ratio mod 1), so the
    nudged start stays inside the bounds and its entries are distinct.
    """
    n = x.size
    if n < 2:
        return x
    span = np.where(np.isfinite(high - low), high - low, 1.0)
    order = np.argsort(x, kind="stable")
    close = np.diff(x[order]) <= 1e-9 * np.maximum(span[order][1:], span[order][:-1])
    tied = np.zeros(n, dtype=bool)
    tied[order[1:][close]] = True
    tied[order[:-1][close]] = True
    if not np.any(tied):
        return x
    r = 0.5 + ((np.arange(n) + 1) * 0.6180339887498949) % 1.0
    middle = np.where(np.isfinite(low + high), 0.5 * (low + high), x + 1.0)
    direction = np.where(x <= middle, 1.0, -1.0)
    out = x.copy()
    out[tied] = x[tied] + _TIE_JITTER * span[tied] * r[tied] * direction[tied]
    return np.clip(out, low, high)


def _raise_if_criterion_nan(experiments, fid, names, mode, arrays, crit):
    """Every start failed: say so if the criterion, not the model, is NaN."""
    try:
        F = fisher(experiments, fid, params=names, mode=mode).matrix
    except Exception:  # a diagnostic only: the caller raises its own error next
        return
    total = (np.asarray(F) + arrays.prior) * np.outer(arrays.scale, arrays.scale)
    if not np.all(np.isfinite(total)):
        return
    try:
        value = natural_numpy(total, crit)
    except (ValueError, TypeError, FloatingPointError):
        return
    if math.isnan(value):
        raise FisherError(
            f"the design criterion {crit.label!r} returned NaN at every start, although "
            "the Fisher matrix is finite (at the initial design, for one). Check the "
            "criterion, and whether the design can constrain every parameter it uses "
            "(ff.repair_identifiability)."
        )


#: Random feasible designs probed, when the optimum is singular, to tell a model that no
#: design identifies from starts that all stayed at singular designs.
_N_PROBES = 16


def _raise_singular(total, crit, xs, spec, arrays):
    """The optimised design is singular: say whether other designs would not be."""
    identifiable_elsewhere = False
    with float64():
        probe_spec = dataclasses.replace(spec, crit=Criterion("D", True, spec.crit.names))
        probes = np.concatenate(
            [xs, random_x(np.random.default_rng(20240607), _N_PROBES, arrays, spec)]
        )
        try:
            logdets = np.asarray(natural_batch(jnp.asarray(probes), arrays, probe_spec))
            identifiable_elsewhere = bool(np.any(np.isfinite(logdets)))
        except (ValueError, TypeError, FloatingPointError):
            pass
    try:
        total.inverse()
        detail = "the Fisher matrix is numerically singular."
        directions, names = (), total.names
    except SingularFisherError as exc:
        detail, directions, names = str(exc), exc.directions, exc.names
    if identifiable_elsewhere:
        detail = detail.split("\nWhat to do")[0]  # the remedy is the optimiser's, below
        message = (
            f"no start reached a non-singular design ({crit.label}): the returned design "
            f"leaves the Fisher matrix singular: {detail}\nOther designs within the bounds "
            "do constrain every parameter, so the optimiser, not the model, is stuck: "
            "increase n_starts, or start from a design whose points are spread out."
        )
    else:
        message = (
            f"the optimised design ({crit.label}) still leaves the Fisher matrix singular: "
            f"{detail}\nThe design cannot constrain every parameter; try "
            "ff.repair_identifiability(...) to find measurements that do."
        )
    raise SingularFisherError(message, directions=directions, names=names)


def _polish(x0, arrays, spec):
    """Local polish in the bounded variables with scipy, using the JAX gradient."""
    import scipy.optimize

    def fun(x):
        value, grad = loss_and_grad(jnp.asarray(x), arrays, spec)
        value = float(value)
        grad = np.asarray(grad, dtype=np.float64)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(grad)
        return value, grad

    bounds = list(zip(arrays.low, arrays.high, strict=True))
    try:
        if spec.ordered:
            rows, rhs = [], []
            n = x0.size
            for start, stop, spacing in spec.ordered:
                for i in range(start, stop - 1):
                    row = np.zeros(n)
                    row[i], row[i + 1] = -1.0, 1.0
                    rows.append(row)
                    rhs.append(spacing)
            A, b = np.array(rows), np.array(rhs)
            cons = [{"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A}]
            res = scipy.optimize.minimize(
                fun,
                x0,
                jac=True,
                method="SLSQP",
                bounds=bounds,
                constraints=cons,
                options={"maxiter": 500, "ftol": 1e-14},
            )
            x = np.clip(res.x, arrays.low, arrays.high)
            if np.any(A @ x - b < -1e-9 * (1 + np.abs(b))):
                return x0, np.inf
        else:
            res = scipy.optimize.minimize(
                fun,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-12},
            )
            x = np.clip(res.x, arrays.low, arrays.high)
    except (ValueError, FloatingPointError):
        return x0, np.inf
    value, _ = fun(x)
    return x, value
