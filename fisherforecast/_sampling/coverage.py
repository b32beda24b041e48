"""Frequentist calibration of Fisher intervals with simulated data and batched
maximum-likelihood fits (optimistix)."""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    as_experiments,
    check_fiducial,
    check_int,
    check_names,
    check_probabilities,
    check_seed,
    is_real_number,
)
from .._errors import FisherError, InputError, SingularFisherError, quote
from .._fisher import fisher
from .._matrix import FisherMatrix
from .._progress import check_progress, progress_bar
from .._record import Record
from .._x64 import float64
from .likelihood import fit_batch, simulate_batch
from .stats import format_table


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Coverage(Record):
    """Result of :func:`coverage`: frequentist calibration of the Fisher intervals.

    **Attributes** (dicts keyed by parameter name):

    - `names`, `fisher`, `fiducial`, `n_sims`, `n_ok` (successful fits), `failed`
      (boolean mask, one per simulation), `estimates` (``(n_sims, P)`` MLEs, NaN where the
      fit failed).
    - `levels`: the nominal probabilities; `coverage`: dict level -> dict name -> fraction
      of simulations whose interval ``θ̂ ± z·σ_Fisher`` contains the truth (``z`` the
      two-sided Gaussian quantile: 1 for 68.27 %, 2 for 95.45 %); `coverage_error`: dict
      level -> binomial standard error ``sqrt(p(1-p)/n_ok)`` at the nominal `p`.
    - `joint_coverage`: dict level -> fraction with ``Δθᵀ F Δθ ≤ χ²_P(level)``.
    - `scatter_ratio`: std(θ̂)/σ_Fisher (1 at the Cramér–Rao bound), `scatter_error`
      (``≈ 1/sqrt(2(n-1))``); `bias`: mean(θ̂ − θ₀)/σ_Fisher, `bias_error` (``1/sqrt(n)``).
    - `calibrated`: every coverage (per parameter and joint), scatter ratio and bias lies
      within `n_se` standard errors of its nominal value; `reasons` lists those that do not.

    Methods: ``summary()`` (the table), ``plot()``, ``to_dict()``. A linear model is the
    case where the Fisher intervals are exact, so it comes out calibrated; the error bars
    are the binomial ones at the nominal level, ``√(0.6827·0.3173/100) = 0.0465``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> cov = ff.coverage(exp, {"a": 1.0}, n_sims=100, seed=0)
    >>> cov.n_ok, cov.estimates.shape, cov.levels
    (100, (100, 1), (0.6827, 0.9545))
    >>> round(cov.coverage_error[0.6827], 4), sorted(cov.coverage[0.6827])
    (0.0465, ['a'])
    >>> cov.calibrated, cov.reasons
    (True, ())
    ```
    """

    names: tuple
    fisher: FisherMatrix
    fiducial: dict
    n_sims: int
    n_ok: int
    failed: np.ndarray
    estimates: np.ndarray
    levels: tuple
    coverage: dict
    coverage_error: dict
    joint_coverage: dict
    joint_coverage_error: dict
    scatter_ratio: dict
    scatter_error: float
    bias: dict
    bias_error: float
    n_se: float
    calibrated: bool
    reasons: tuple
    seconds: float
    data: tuple | None = None

    def summary(self) -> str:
        """A table of coverage per level and parameter, scatter against the CRB and bias."""
        head = (
            ["parameter"]
            + [f"cover {lv:.2%}" for lv in self.levels]
            + ["std/sigma_F", "bias/sigma_F"]
        )
        rows = []
        for n in self.names:
            rows.append(
                [n]
                + [
                    f"{self.coverage[lv][n]:.3f}±{self.coverage_error[lv]:.3f}"
                    for lv in self.levels
                ]
                + [
                    f"{self.scatter_ratio[n]:.3f}±{self.scatter_error:.3f}",
                    f"{self.bias[n]:+.3f}±{self.bias_error:.3f}",
                ]
            )
        rows.append(
            ["(joint)"]
            + [
                f"{self.joint_coverage[lv]:.3f}±{self.joint_coverage_error[lv]:.3f}"
                for lv in self.levels
            ]
            + ["", ""]
        )
        lines = [
            f"Coverage of Fisher intervals: {self.n_ok} of {self.n_sims} fits succeeded "
            f"({self.seconds:.1f} s); "
            f"{'CALIBRATED' if self.calibrated else 'NOT CALIBRATED'} within "
            f"{self.n_se:g} standard errors",
            format_table(head, rows),
        ]
        lines += [f"- {r}" for r in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain-Python view (the simulated data are left out)."""
        out = super().to_dict()
        del out["data"]
        return out

    def plot(self, bins=30):
        """Histograms of the pulls ``(θ̂ − θ₀)/σ_Fisher`` against a unit Gaussian."""
        import matplotlib.pyplot as plt
        from scipy.stats import norm

        P = len(self.names)
        fig, axes = plt.subplots(1, P, figsize=(3.2 * P, 3.0), squeeze=False)
        ok = ~self.failed
        x = np.linspace(-4, 4, 201)
        for i, n in enumerate(self.names):
            ax = axes[0, i]
            pull = (self.estimates[ok, i] - self.fiducial[n]) / self.fisher.sigma()[n]
            ax.hist(
                pull,
                bins=bins,
                range=(-4, 4),
                density=True,
                histtype="step",
                color="C0",
                label="simulations",
            )
            ax.plot(x, norm.pdf(x), color="k", lw=1, label="N(0, 1)")
            ax.set_xlabel(f"({n} − {n}₀) / σ_Fisher")
            ax.set_title(f"1σ coverage {self.coverage[self.levels[0]][n]:.3f}")
        axes[0, 0].legend(fontsize="small")
        fig.tight_layout()
        return fig

    def __repr__(self):
        return (
            f"Coverage(names={list(self.names)}, n_ok={self.n_ok}/{self.n_sims}, "
            f"calibrated={self.calibrated})"
        )


def coverage(
    experiment,
    fiducial,
    n_sims=500,
    *,
    params=None,
    seed=0,
    levels=(0.6827, 0.9545),
    n_se=3.0,
    rtol=1e-10,
    atol=1e-10,
    max_steps=256,
    mode="forward",
    keep_data=False,
    progress=None,
) -> Coverage:
    """Frequentist calibration of the Fisher intervals with simulated data.

    1. Simulate `n_sims` datasets at the fiducial with the noise model's ``simulate``.
    2. Fit the maximum-likelihood estimate of each, batched with ``vmap`` (optimistix BFGS in
       coordinates whitened by the Fisher matrix, started at the fiducial).
    3. Compare: the fraction of intervals ``θ̂ᵢ ± zσᵢ`` (σ from ``F⁻¹`` at the fiducial, ``z``
       the two-sided Gaussian quantile of each level) that contain the truth, with binomial
       errors; the joint coverage of ``Δθᵀ F Δθ ≤ χ²_P``; and the scatter of the estimates
       against the Cramér–Rao bound.

    A fit that does not converge (or ends at a non-finite point) is flagged in `failed` and
    left out of the statistics; it never aborts the batch.

    **Arguments:**

    - `experiment`, `fiducial`, `params`, `mode`: as in :func:`ff.fisher`.
    - `n_sims`: number of simulated datasets (a few hundred resolve 68 % coverage to ±3 %).
    - `seed`: random seed of the simulations.
    - `levels`: nominal probabilities of the intervals, each in (0, 1).
    - `n_se`: how many standard errors `calibrated` allows (a positive number).
    - `rtol`, `atol`, `max_steps`: BFGS settings.
    - `keep_data`: keep the simulated datasets in `.data` (tuple per experiment).
    - `progress`: a tqdm bar over the fits, after a line with the cost (``None``: a bar
      when stderr is a terminal; ``True``/``False``). With a bar the fits run in
      :data:`PROGRESS_CHUNKS` equal chunks of one compiled shape (the last one padded), so
      the bar moves; without, in one call. The estimates are the same either way.

    **Returns:** a :class:`Coverage`.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
    ...                     ff.Gaussian(sigma=0.05), design=jnp.linspace(0, 5, 30))
    >>> cov = ff.coverage(exp, {"A": 1.0, "k": 0.5}, n_sims=200)
    >>> cov.n_ok
    200
    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    n_sims = check_int(n_sims, "n_sims", 2)
    levels = check_probabilities(levels, "levels")
    if not (is_real_number(n_se) and math.isfinite(n_se) and n_se > 0):
        raise InputError(
            f"`n_se` must be a positive, finite number of standard errors; received {quote(n_se)}."
        )
    seed = check_seed(seed)
    show = check_progress(progress)
    F = fisher(experiments, fid, params=names, mode=mode)
    try:
        cov = F.covariance()
    except SingularFisherError as exc:
        raise FisherError(
            "coverage needs an invertible Fisher matrix (the intervals are sqrt(diag F⁻¹)); "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    sigma = np.sqrt(np.diag(cov))
    theta0 = np.array([fid[n] for n in names], dtype=np.float64)
    L = np.linalg.cholesky(cov)
    start = time.perf_counter()
    with float64():
        fid64 = {k: jnp.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        datas = simulate_batch(tuple(experiments), fid64, jax.random.PRNGKey(seed), int(n_sims))
        fit = partial(
            fit_batch,
            tuple(experiments),
            fixed=fixed,
            theta0=jnp.asarray(theta0),
            L=jnp.asarray(L),
            names=names,
            rtol=float(rtol),
            atol=float(atol),
            max_steps=int(max_steps),
        )
        est, ok = _fit_all(fit, datas, int(n_sims), show, len(names))
        kept = tuple(np.asarray(d) for d in jax.device_get(datas)) if keep_data else None
    seconds = time.perf_counter() - start
    return _coverage_stats(
        F, names, fid, theta0, sigma, est, ok, levels, float(n_se), seconds, kept
    )


#: With a progress bar, the fits of :func:`coverage` run in this many equal chunks.
PROGRESS_CHUNKS = 20


def _fit_all(fit, datas, n_sims, show, n_params):
    """``(estimates (n_sims, P), ok (n_sims,))`` of every simulated dataset: one vmapped call,
    or, with a bar, equal chunks of one compiled shape (the last padded with copies of the
    final dataset, whose fits are dropped)."""
    if not show:
        est, ok, _ = fit(datas=datas)
        return np.asarray(est, dtype=np.float64), np.asarray(ok, dtype=bool)
    size = -(-n_sims // PROGRESS_CHUNKS)
    n_chunks = -(-n_sims // size)
    padded = jax.tree_util.tree_map(
        lambda d: jnp.concatenate([d, jnp.repeat(d[-1:], n_chunks * size - n_sims, axis=0)]),
        datas,
    )
    estimate = (
        f"{n_sims} maximum-likelihood fits (BFGS over {n_params} parameters) in {n_chunks} "
        f"chunks of {size}; a first call compiles the fit before the bar moves"
    )
    parts_est, parts_ok = [], []
    with progress_bar(True, n_sims, "coverage", "fit", estimate) as bar:
        for c in range(n_chunks):
            chunk = jax.tree_util.tree_map(lambda d, c=c: d[c * size : (c + 1) * size], padded)
            est, ok, _ = fit(datas=chunk)
            parts_est.append(np.asarray(est, dtype=np.float64))
            parts_ok.append(np.asarray(ok, dtype=bool))
            bar.update(min(size, n_sims - c * size))
    return np.concatenate(parts_est)[:n_sims], np.concatenate(parts_ok)[:n_sims]


def _coverage_stats(F, names, fid, theta0, sigma, est, ok, levels, n_se, seconds, data):
    from scipy.special import ndtri
    from scipy.stats import chi2

    n_sims, P = est.shape
    failed = ~ok
    est = np.where(ok[:, None], est, np.nan)
    good = est[ok]
    n_ok = int(ok.sum())
    reasons = []
    if n_ok < 2:
        raise FisherError(
            f"coverage: only {n_ok} of {n_sims} maximum-likelihood fits succeeded; the "
            "model may be non-identifiable at the fiducial or the simulations invalid."
        )
    if n_ok < n_sims:
        reasons.append(f"{n_sims - n_ok} of {n_sims} fits failed and are left out")
    pulls = (good - theta0) / sigma
    coverage, coverage_err, joint, joint_err = {}, {}, {}, {}
    Fm = F.matrix
    delta = good - theta0
    chi2_values = np.einsum("ki,ij,kj->k", delta, Fm, delta)
    for lv in levels:
        z = float(ndtri(0.5 + 0.5 * lv))
        frac = np.mean(np.abs(pulls) <= z, axis=0)
        coverage[lv] = {n: float(f) for n, f in zip(names, frac, strict=True)}
        coverage_err[lv] = float(math.sqrt(lv * (1 - lv) / n_ok))
        joint[lv] = float(np.mean(chi2_values <= chi2.ppf(lv, P)))
        joint_err[lv] = coverage_err[lv]
        for n, f in zip(names, frac, strict=True):
            if abs(f - lv) > n_se * coverage_err[lv]:
                reasons.append(
                    f"{n}: {lv:.2%} interval covers the truth in {f:.3f} of the "
                    f"simulations (expected {lv:.4f} ± {coverage_err[lv]:.3f})"
                )
        if abs(joint[lv] - lv) > n_se * joint_err[lv]:
            reasons.append(
                f"joint: the {lv:.2%} region Δθᵀ F Δθ ≤ χ²_{P} contains the truth "
                f"in {joint[lv]:.3f} of the simulations (expected {lv:.4f} ± "
                f"{joint_err[lv]:.3f}); wrong correlations, for one, do not "
                "show in the marginal intervals"
            )
    scatter = good.std(axis=0, ddof=1) / sigma
    scatter_err = 1.0 / math.sqrt(2.0 * (n_ok - 1))
    bias = pulls.mean(axis=0)
    bias_err = 1.0 / math.sqrt(n_ok)
    for n, s in zip(names, scatter, strict=True):
        if abs(s - 1) > n_se * scatter_err:
            reasons.append(
                f"{n}: scatter of the estimates is {s:.3f} × σ_Fisher (expected 1 "
                f"± {scatter_err:.3f} at the Cramér–Rao bound)"
            )
    for n, b in zip(names, bias, strict=True):
        if abs(b) > n_se * bias_err:
            reasons.append(f"{n}: estimates are biased by {b:+.3f} σ_Fisher (± {bias_err:.3f})")
    calibrated = not any(not r.startswith(f"{n_sims - n_ok} of") for r in reasons)

    def d(arr):
        return {n: float(v) for n, v in zip(names, arr, strict=True)}

    return Coverage(
        names=tuple(names),
        fisher=F,
        fiducial={n: fid[n] for n in names},
        n_sims=n_sims,
        n_ok=n_ok,
        failed=failed,
        estimates=est,
        levels=levels,
        coverage=coverage,
        coverage_error=coverage_err,
        joint_coverage=joint,
        joint_coverage_error=joint_err,
        scatter_ratio=d(scatter),
        scatter_error=scatter_err,
        bias=d(bias),
        bias_error=bias_err,
        n_se=n_se,
        calibrated=bool(calibrated),
        reasons=tuple(reasons),
        seconds=float(seconds),
        data=data,
    )
