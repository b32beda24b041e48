"""Discrete symmetries: a multi-start fit to noise-free data that reports every exact optimum.

A local analysis (rank, null space, profiles by continuation) cannot see a second, isolated
parameter point that fits the data exactly, such as the PK flip-flop ``(ka, ke, V) ↔
(ke, ka, V·ke/ka)`` or a k2 ↔ k3 swap. :func:`symmetry_search` fits the expected deviance
of Asimov data (minimal, 0, at the fiducial) from random starts ``θ·exp(u)``,
``u ~ N(0, spread²)`` (``θ + u·|θ|`` for a parameter that is not positive), after one start
per pair of positive parameters with their fiducial values swapped, each with
``scipy.optimize.minimize`` (Fisher scoring in a trust region: ``trust-exact`` with the
Hessian ``2F(θ)``, Gauss-Newton, quadratic at an exact optimum). Each evaluation is the
compiled Fisher evaluation that ``ff.fisher`` and identifiability share, so the search
compiles no model program of its own (:mod:`.profile_fit`). Within a time budget, every
end point whose Δ(−2 ln L) is below `exact_tol` and that differs from the fiducial and the
optima already found is reported.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from scipy.optimize import minimize

from .._checks import as_experiments, check_fiducial, check_int, check_names, is_real_number
from .._engine import evaluation_kernel
from .._errors import InputError, quote
from .._progress import check_progress, progress_bar
from .._record import Record
from .._x64 import float64
from .profile_fit import FitProblem, evaluate

__all__ = ["SymmetrySearch", "symmetry_search"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SymmetrySearch(Record):
    """Result of :func:`symmetry_search`.

    **Attributes:** `names`; `fiducial`; `optima`: list of dicts name -> value, the
    distinct exact optima other than the fiducial; `deltas`: their Δ(−2 ln L);
    `descriptions`: each in words (swapped parameters named); `n_starts`: starts run
    (fewer than asked when `max_time` ran out); `n_exact`: starts that ended at an exact
    optimum (the fiducial included); `seconds`; `symmetric`: whether any was found.

    ``summary()`` says the same in words. The sum ``e^(−a t) + e^(−b t)`` cannot tell ``a``
    from ``b``: the swapped point fits the data exactly:

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: jnp.exp(-p["a"] * t) + jnp.exp(-p["b"] * t),
    ...                     ff.Gaussian(sigma=0.01), design=np.linspace(0.2, 4, 8))
    >>> res = ff.symmetry_search(exp, {"a": 0.5, "b": 2.0}, n_starts=4)
    >>> res.symmetric, res.descriptions, res.n_starts
    (True, ['a ↔ b'], 4)
    >>> [{k: round(v, 4) for k, v in opt.items()} for opt in res.optima]
    [{'a': 2.0, 'b': 0.5}]
    >>> bool(res.deltas[0] < 1e-6)                  # Δ(−2 ln L): an exact fit
    True
    ```
    """

    names: tuple
    fiducial: dict
    optima: list
    deltas: list
    descriptions: list
    n_starts: int
    n_exact: int
    seconds: float
    symmetric: bool

    def summary(self) -> str:
        head = (
            f"Symmetry search: {self.n_starts} starts in {self.seconds:.1f} s, "
            f"{self.n_exact} ended at an exact optimum"
        )
        if not self.optima:
            return head + "; no other exact optimum found (no discrete symmetry seen)."
        lines = [head + f"; {len(self.optima)} other exact optimum(a):"]
        pairs = zip(self.descriptions, self.deltas, strict=True)
        lines += [f"  - {d} (Δ = {dv:.2g})" for d, dv in pairs]
        return "\n".join(lines)


def _starts(theta0, positive, rng, spread, n_starts):
    """First one start per pair of positive parameters with their values swapped (the
    usual discrete symmetries), then random ones; `n_starts` in all."""
    out = []
    pos = [i for i, p in enumerate(positive) if p]
    for a in pos:
        for b in pos:
            if a < b and not math.isclose(theta0[a], theta0[b]):
                u = np.zeros(len(theta0))
                u[a] = math.log(theta0[b] / theta0[a])
                u[b] = -u[a]
                out.append(u)
    out = out[:n_starts]
    while len(out) < n_starts:
        out.append(rng.normal(0.0, spread, size=len(theta0)))
    return out


def _describe(names, theta0, theta):
    """Which parameters changed, naming swaps (a value taking another's fiducial)."""
    rel = 1e-3
    changed = [i for i in range(len(names)) if not math.isclose(theta[i], theta0[i], rel_tol=rel)]
    swaps, used = [], set()
    for i in changed:
        for j in changed:
            if i < j and j not in used and i not in used:
                if math.isclose(theta[i], theta0[j], rel_tol=rel) and math.isclose(
                    theta[j], theta0[i], rel_tol=rel
                ):
                    swaps.append(f"{names[i]} ↔ {names[j]}")
                    used |= {i, j}
    rest = [f"{names[i]}: {theta0[i]:.6g} → {theta[i]:.6g}" for i in changed if i not in used]
    return "; ".join(swaps + rest) if swaps or rest else "the fiducial"


def symmetry_search(
    experiment,
    fiducial,
    *,
    params=None,
    n_starts=24,
    spread=1.0,
    seed=0,
    max_time=60.0,
    exact_tol=1e-6,
    progress=None,
) -> SymmetrySearch:
    """Search for discrete symmetries: other parameter points that fit the noise-free data
    exactly (see the module docstring).

    **Arguments:** `experiment` (or a list); `fiducial`; `params` (default: all); `n_starts`
    random starts; `spread` of ``u`` (ln-units for positive parameters); `seed`;
    `max_time` (seconds; no new start after it, the first always runs); `exact_tol`: an
    optimum is exact when its Δ(−2 ln L) is below this; `progress` (tqdm bar, see
    ``progress_bar``).

    **Returns:** a :class:`SymmetrySearch`.

    Nothing here proves that no symmetry exists: a search that finds none says only that
    its starts did not reach one.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: jnp.exp(-p["a"] * t) + jnp.exp(-p["b"] * t),
    ...                     ff.Gaussian(sigma=0.01), design=np.linspace(0.2, 4, 8))
    >>> res = ff.symmetry_search(exp, {"a": 0.5, "b": 2.0}, n_starts=8)
    >>> res.descriptions
    ['a ↔ b']

    ```
    """
    experiments = tuple(as_experiments(experiment))
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    n_starts = check_int(n_starts, "n_starts", 1)
    for label, value in (("spread", spread), ("max_time", max_time), ("exact_tol", exact_tol)):
        if not (is_real_number(value) and 0 < value < math.inf):
            raise InputError(f"`{label}` must be a positive number; received {quote(value)}.")
    show = check_progress(progress)
    rng = np.random.default_rng(seed)
    theta0 = np.array([fid[n] for n in names], dtype=np.float64)
    positive = tuple(bool(v > 0) for v in theta0)
    start = time.perf_counter()
    ends, values = [], []
    estimate = (
        f"{n_starts} Fisher-scoring fits of {len(names)} parameters (each step one model "
        f"evaluation and its forward-mode Jacobian), at most {max_time:g} s."
    )
    with float64(), progress_bar(show, n_starts, "symmetry_search", "start", estimate) as bar:
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}

        means = tuple(
            np.asarray(evaluation_kernel(exp, fid64, names, "forward")[0].mean)
            for exp in experiments
        )
        problem = FitProblem(experiments, means, fixed, names, theta0, True, "forward", 0, 0)
        base = evaluate(problem, theta0)[0]
        scale = np.where(positive, 1.0, np.maximum(np.abs(theta0), 1.0))

        last = {}

        def at(u):
            key = u.tobytes()
            if key not in last:
                last.clear()
                theta = np.where(positive, theta0 * np.exp(u), theta0 + u * scale)
                value, grad, hess = evaluate(problem, theta)
                if grad is None or not math.isfinite(base):
                    last[key] = (math.inf, np.zeros_like(u), np.eye(u.size))
                else:
                    d = np.where(positive, theta, scale)  # dθ/du
                    last[key] = (value - base, grad * d, hess * np.outer(d, d))
            return last[key]

        n_run = 0
        for u0 in _starts(theta0, positive, rng, spread, n_starts):
            if n_run and time.perf_counter() - start > max_time:
                break
            if not math.isfinite(at(np.asarray(u0, dtype=np.float64))[0]):
                ends.append(np.full(theta0.size, np.nan))
                values.append(math.inf)
                n_run += 1
                bar.update()
                continue
            # Fisher scoring in a trust region (Hessian 2F(θ)): Gauss-Newton, which converges
            # quadratically at the exact optima (zero residual) that the search is after.
            res = minimize(
                lambda u: at(u)[0],
                u0,
                jac=lambda u: at(u)[1],
                hess=lambda u: at(u)[2],
                method="trust-exact",
                options={"maxiter": 200, "gtol": 1e-9},
            )
            u = res.x
            theta = np.where(positive, theta0 * np.exp(u), theta0 + u * np.maximum(abs(theta0), 1))
            ends.append(theta)
            values.append(float(res.fun))
            n_run += 1
            bar.update()
    optima, deltas, descriptions, n_exact = [], [], [], 0
    for theta, value in sorted(zip(ends, values, strict=True), key=lambda tv: tv[1]):
        if not value < exact_tol:
            continue
        n_exact += 1
        points = [theta0, *[np.array([o[n] for n in names]) for o in optima]]
        if any(np.allclose(theta, p, rtol=1e-3, atol=1e-9) for p in points):
            continue
        optima.append({n: float(theta[i]) for i, n in enumerate(names)})
        deltas.append(value)
        descriptions.append(_describe(names, theta0, theta))
    return SymmetrySearch(
        names=names,
        fiducial=dict(fid),
        optima=optima,
        deltas=deltas,
        descriptions=descriptions,
        n_starts=n_run,
        n_exact=n_exact,
        seconds=time.perf_counter() - start,
        symmetric=bool(optima),
    )
