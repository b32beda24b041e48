"""Beyond the Gaussian picture: an HMC cross-check of a Fisher forecast.

A Fisher matrix is the Gaussian (Laplace) approximation of the likelihood at the fiducial.
:func:`crosscheck` samples the full posterior of the same :class:`Experiment` with NUTS
(numpyro, in Fisher-whitened coordinates: see :mod:`.nuts`) and compares it with the Fisher
prediction. The likelihood is the experiment's noise model (``noise.log_likelihood``), so
every noise model (Gaussian with fixed or parameter-dependent covariance, Poisson, PSD)
works without any user code. See ``docs/crosscheck.md`` for the method and the tolerances.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    as_experiments,
    check_fiducial,
    check_names,
    check_seed,
    is_real_number,
)
from .._engine import split
from .._errors import InputError, quote
from .._fisher import fisher
from .._fisher_kinds import checked_data
from .._interop import SampleConversions
from .._matrix import FisherMatrix
from .._progress import check_progress
from .._record import Record
from .._x64 import float64
from .likelihood import experiments_loglik, fit_jit, model_means, simulate
from .nuts import (
    DEFAULT_BOUNDS_SIGMA,
    TARGET_ACCEPT,
    check_sampler_settings,
    describe_prior,
    prepare_sampler,
    run_nuts,
)
from .stats import chain_statistics, format_table, plain_data

#: Split-R-hat above which a chain is reported as not converged.
RHAT_MAX = 1.05
#: A run is resolved when n_se standard errors of the σ ratio and of the mean shift stay
#: below RESOLUTION × their tolerance: a discrepancy that large would have been detected.
RESOLUTION = 3.0
#: A discrepancy still counts ("disagrees") when at most this fraction of the draws
#: diverged; agreement needs none.
DIVERGENCE_LIMIT = 0.01


def _check_asimov(experiments, fid64, names, means):
    """Asimov data carry no information on noise parameters: refuse them there.

    A noise model that declares ``parameter_dependent = False`` is accepted as it is; one
    that depends on parameters (or does not say) is asked for its covariance term of the
    Fisher matrix, which is non-zero exactly when the noise varies with a sampled one.
    """
    theta, to_params = split(fid64, names)
    for exp, mean in zip(experiments, means, strict=True):
        if exp.noise.parameter_dependent is False:
            continue
        extra = exp.noise.covariance_information(
            jnp.asarray(mean), theta, to_params, exp.design, "forward"
        )
        if extra is not None and np.any(np.asarray(extra) != 0):
            raise InputError(
                f"data='asimov' cannot test {exp.label}: its noise "
                f"({exp.noise!r}) depends on the sampled parameters, and noise-free data "
                "have zero scatter, so their likelihood peaks at zero noise instead of the "
                "fiducial. Use data='simulate' (one noisy realisation) or real data."
            )


# =======================================================================================
# crosscheck
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class CrossCheck(Record, SampleConversions):
    """Result of :func:`crosscheck`: Fisher prediction against the sampled posterior.

    **Attributes** (dicts are keyed by parameter name):

    - `names`, `fisher` (the :class:`FisherMatrix` at the fiducial), `fiducial`.
    - `samples`: posterior draws, all chains concatenated; `chains`: ``(chains, draws)``.
    - `sigma_fisher`, `sigma_hmc`, `mean_hmc`: marginal σ from ``F⁻¹`` and from the samples.
    - `reference`: the Fisher-predicted posterior centre: the fiducial for Asimov data, the
      maximum-likelihood point (within the prior) for simulated or real data.
    - `ratio` = σ_hmc / σ_fisher, `ratio_error` (its Monte Carlo standard error);
      `shift` = (mean_hmc − reference) / σ_fisher, `shift_error`; `skewness` (moment).
    - `rhat` (split R-hat), `ess` (effective sample size), `divergences`.
    - `asymmetry` (of the central 68.27 % interval, see :func:`crosscheck`) and its
      `asymmetry_error`; `interval`: name -> (q₁₆, q₅₀, q₈₄) of the samples.
    - `tolerance`: dict with `rtol`, `shift_tol`, `asym_tol`, `n_se`, `rhat_max`, `min_ess`.
    - `within_tolerance` (no significant, relevant discrepancy), `resolved` (Monte Carlo
      errors small enough and no divergent transitions), `converged`, `agrees` (all three)
      and `reasons` (in words);
      `verdict` is ``"agrees"``, ``"disagrees"`` or ``"inconclusive"``.
    - `priors` (name -> description), `defaulted_bounds`, `data_kind`, `data` (the data
      sampled against, one array per experiment), `seconds` (compile + sampling),
      `num_steps` (leapfrog steps, i.e. gradient evaluations, after warm-up).

    Methods: ``summary()``, ``plot()``, ``to_dict()`` and the sample conversions
    (``to_getdist()``, ...). For ``μ = a x`` at ``x = 1, 2, 3`` with unit noise the
    posterior is Gaussian, ``σ_Fisher = 1/√14``, and the sampled σ agrees with it:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> cc = ff.crosscheck(exp, {"a": 1.0}, prior={"a": (-2.0, 4.0)}, num_warmup=300,
    ...                    num_samples=1000, seed=0)
    >>> cc.names, cc.data_kind, cc.samples["a"].shape, cc.chains["a"].shape
    (('a',), 'asimov', (1000,), (1, 1000))
    >>> round(cc.sigma_fisher["a"], 4), cc.reference
    (0.2673, {'a': 1.0})
    >>> bool(abs(cc.ratio["a"] - 1) < 0.2), bool(abs(cc.shift["a"]) < 0.5)
    (True, True)
    ```
    """

    names: tuple
    fisher: FisherMatrix
    fiducial: dict
    samples: dict
    chains: dict
    sigma_fisher: dict
    sigma_hmc: dict
    mean_hmc: dict
    reference: dict
    ratio: dict
    ratio_error: dict
    shift: dict
    shift_error: dict
    skewness: dict
    asymmetry: dict
    asymmetry_error: dict
    interval: dict
    rhat: dict
    ess: dict
    divergences: int
    tolerance: dict
    within_tolerance: bool
    resolved: bool
    converged: bool
    agrees: bool
    divergence_ok: bool
    reasons: tuple
    priors: dict
    defaulted_bounds: tuple
    data_kind: str
    seconds: float
    num_steps: int
    settings: dict
    data: tuple = ()

    def summary(self) -> str:
        """A table: Fisher σ, HMC σ, their ratio and the mean shift per parameter."""
        tol = self.tolerance
        head = [
            "parameter",
            "fiducial",
            "sigma_fisher",
            "sigma_hmc",
            "ratio",
            "shift/sigma",
            "asymmetry",
            "r_hat",
            "ess",
        ]
        rows = []
        for n in self.names:
            rows.append(
                [
                    n,
                    f"{self.fiducial[n]:.5g}",
                    f"{self.sigma_fisher[n]:.4g}",
                    f"{self.sigma_hmc[n]:.4g}",
                    f"{self.ratio[n]:.3f}±{self.ratio_error[n]:.3f}",
                    f"{self.shift[n]:+.3f}±{self.shift_error[n]:.3f}",
                    f"{self.asymmetry[n]:+.3f}±{self.asymmetry_error[n]:.3f}",
                    f"{self.rhat[n]:.3f}",
                    f"{self.ess[n]:.0f}",
                ]
            )
        verdict = {
            "agrees": "Fisher AGREES with the posterior",
            "disagrees": "Fisher DISAGREES with the posterior",
            "inconclusive": "INCONCLUSIVE (see below)",
        }[self.verdict]
        lines = [
            f"HMC cross-check ({self.data_kind} data, {self.settings['num_chains']} chain(s) × "
            f"{self.settings['num_samples']} draws, {self.divergences} divergences, "
            f"{self.seconds:.1f} s): {verdict}",
            format_table(head, rows),
            f"tolerance: |ratio - 1| <= max({tol['rtol']:g}, {tol['n_se']:g}·SE), "
            f"|shift| <= max({tol['shift_tol']:g}, {tol['n_se']:g}·SE), "
            f"|asymmetry| <= max({tol['asym_tol']:g}, {tol['n_se']:g}·SE); converged: "
            f"R-hat < {tol['rhat_max']:g} and ESS >= {tol['min_ess']:g}",
        ]
        lines += [f"- {r}" for r in self.reasons]
        if self.defaulted_bounds:
            lines.append(
                f"note: flat priors at fiducial ± {self.settings['bounds_sigma']:g} "
                f"σ_Fisher for {list(self.defaulted_bounds)} (no bounds given)"
            )
        return "\n".join(lines)

    @property
    def verdict(self) -> str:
        """``"agrees"``; ``"disagrees"`` (a significant, relevant discrepancy in converged
        chains with at most ``DIVERGENCE_LIMIT`` (1 %) of the draws divergent); or
        ``"inconclusive"`` (chains not converged, more divergences, any divergence when
        the numbers agree, or Monte Carlo errors too large to resolve a discrepancy of
        3 × the tolerance)."""
        if self.agrees:
            return "agrees"
        if self.converged and not self.within_tolerance and self.divergence_ok:
            return "disagrees"
        return "inconclusive"

    def to_dict(self) -> dict:
        """Plain-Python view (samples as lists; complex data as ``{"real", "imag"}``)."""
        out = super().to_dict()
        out["data"] = plain_data(self.data)
        return out

    def plot(self, **kwargs):
        """Corner plot of the samples with the Fisher ellipses overlaid (``ff.plot.corner``)."""
        from .. import plot

        return plot.corner(self, **kwargs)

    def __repr__(self):
        return (
            f"CrossCheck(names={list(self.names)}, agrees={self.agrees}, "
            f"converged={self.converged})"
        )


def crosscheck(
    experiment,
    fiducial,
    *,
    params=None,
    prior=None,
    data="asimov",
    num_warmup=500,
    num_samples=1000,
    num_chains=1,
    seed=0,
    chain_method="sequential",
    bounds_sigma=DEFAULT_BOUNDS_SIGMA,
    rtol=0.1,
    shift_tol=0.2,
    asym_tol=0.1,
    n_se=3.5,
    min_ess=100.0,
    target_accept=TARGET_ACCEPT,
    dense_mass=False,
    max_tree_depth=10,
    mode="forward",
    progress=None,
) -> CrossCheck:
    """Check a Fisher forecast against the full posterior, sampled with NUTS.

    The likelihood is the experiment's own noise model (``noise.log_likelihood``), so every
    noise model works: Gaussian with fixed or parameter-dependent covariance, Poisson, PSD.
    NUTS (numpyro) starts at the fiducial and samples coordinates whitened by the Fisher
    covariance (see the module docstring), and the result compares the marginal σ and the
    posterior mean with the Fisher prediction.

    **Agreement.** For each parameter the samples give three numbers, each with its Monte
    Carlo standard error (SE) from the effective sample size (ESS):

    - the σ ratio ``σ_hmc/σ_fisher``, with ``SE(σ̂) ≈ σ/sqrt(2·ESS)`` (computed from the
      samples' kurtosis and the ESS of the squared deviations);
    - the mean shift ``(mean_hmc − reference)/σ_fisher``, with ``SE = σ̂/sqrt(ESS)``;
    - the asymmetry of the central 68.27 % interval, ``(q₈₄ + q₁₆ − 2 q₅₀)/(q₈₄ − q₁₆)``
      (0 for a Gaussian; 0.1 means errors of +22 %/−18 % around the median), with
      ``SE ≈ 1.13/sqrt(ESS)`` from the sampling distribution of Gaussian quantiles.

    A **discrepancy** is a deviation from the Gaussian value (1, 0, 0) that is both
    relevant, larger than its tolerance (`rtol` = 0.1: σ off by 10 %; `shift_tol` = 0.2:
    the mean moved by a fifth of σ; `asym_tol` = 0.1), and significant, larger than `n_se`
    standard errors (default 3.5):
    ``|ratio − 1| > max(rtol, n_se·SE)`` and likewise for the others. The result is

    - ``agrees`` when no parameter has a discrepancy, the chains converged (split R-hat <
      1.05 and ESS ≥ `min_ess`) and the run is *resolved*: ``n_se·SE ≤ 3 × tolerance`` for
      the σ ratio and the shift, so that a discrepancy three times the tolerance would
      have been detected;
    - ``disagrees`` when converged chains show a discrepancy and at most 1 % of the draws
      diverged;
    - ``inconclusive`` otherwise (`.verdict`; `.agrees` is True only for ``agrees``). A
      divergent transition means NUTS missed part of the posterior (on a banana it reports
      σ 25 % low with a small error bar), so any divergence rules out ``agrees``, and more
      than 1 % of the draws rule out ``disagrees`` too. `.reasons` gives the count and the
      settings to rerun with (a higher `target_accept`, more warm-up, several chains).

    **Arguments:**

    - `experiment`: an :class:`Experiment` or a list of independent ones.
    - `fiducial`: dict name -> value; the sampler starts here.
    - `params`: the parameters to sample (default: all); the others are held fixed.
    - `prior`: dict name -> ``(low, high)`` (flat within the bounds) or name -> numpyro
      distribution (e.g. ``dist.LogNormal(0, 1)``). Parameters without an entry get a flat
      prior on ``fiducial ± bounds_sigma · σ_Fisher`` (default ±10σ) and a warning: a flat
      prior on an unbounded range can make the posterior improper.
    - `data`: ``"asimov"`` (the noise-free model at the fiducial: the posterior the Fisher
      matrix describes; refused when the noise depends on a sampled parameter, since
      noise-free data carry no scatter), ``"simulate"`` (one noisy realisation from
      ``noise.simulate`` with `seed`) or an array in the model's output shape (a list of
      arrays for a list of experiments).
    - `num_warmup`, `num_samples`, `num_chains`, `seed`: NUTS settings; `chain_method` is
      ``"sequential"`` (default: chains one after the other) or ``"vectorized"`` (chains
      batched with ``vmap``). The whole run is one compiled function; a second call with
      the same shapes and settings does not recompile.
    - `rtol`, `shift_tol`, `asym_tol`, `n_se`, `min_ess`: the agreement tolerances above.
    - `target_accept` (default 0.9, above numpyro's 0.8), `dense_mass`, `max_tree_depth`:
      passed to numpyro's NUTS.
    - `mode`: Jacobian mode of the Fisher matrix, as in :func:`ff.fisher`.
    - `progress`: a tqdm bar over the NUTS iterations of all chains, after a line with the
      cost (``None``: a bar when stderr is a terminal; ``True``/``False``). The bar is
      driven from inside the compiled run by a host callback; the run with a bar is
      compiled separately from the one without.

    **Returns:** a :class:`CrossCheck` with `.samples`, `.sigma_fisher`, `.sigma_hmc`,
    `.ratio`, `.shift`, `.rhat`, `.ess`, `.agrees`, `.summary()`, `.plot()` and
    `.to_dict()`.

    **Raises:** `ParameterError` for unknown names, `InputError` (a ValueError) for bad
    settings, data of the wrong shape, a fiducial outside its prior or a parameter that the
    Fisher matrix does not constrain and that has no prior.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.1),
    ...                     design=jnp.linspace(0, 1, 20))
    >>> cc = ff.crosscheck(exp, {"a": 1.0, "b": 2.0}, prior={"a": (0, 2), "b": (1, 3)},
    ...                    num_warmup=200, num_samples=500)
    >>> cc.agrees
    True
    ```
    """
    experiments = as_experiments(experiment)
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    check_sampler_settings(
        num_warmup, num_samples, num_chains, chain_method, target_accept, max_tree_depth
    )
    tol = _check_tolerance(
        rtol=rtol, shift_tol=shift_tol, asym_tol=asym_tol, n_se=n_se, min_ess=min_ess
    )
    if isinstance(data, str) and data not in ("asimov", "simulate"):
        raise InputError(f"`data` must be 'asimov', 'simulate' or an array; received {data!r}.")
    seed = check_seed(seed)
    show = check_progress(progress)

    F = fisher(experiments, fid, params=names, mode=mode)
    theta0 = np.array([fid[n] for n in names], dtype=np.float64)
    key_data, key_mcmc = jax.random.split(jax.random.PRNGKey(seed))

    with float64():
        fid64 = {k: jnp.float64(v) for k, v in fid.items()}
        fixed = {k: v for k, v in fid64.items() if k not in names}
        datas, kind = _observed_data(data, experiments, fid64, names, key_data)
        like = (tuple(experiments), datas, fixed)
        sampler = prepare_sampler(F, fid, prior, bounds_sigma, who="crosscheck")
        priors, v0, L = sampler.priors, sampler.v0, sampler.L
        if kind == "asimov":
            reference, ref_note = theta0.copy(), None
        else:
            reference, ref_note = _best_fit(like, v0, L, priors, theta0, names)
        run = run_nuts(
            experiments_loglik,
            like,
            names,
            priors,
            v0,
            L,
            rng_key=key_mcmc,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method=chain_method,
            target_accept=target_accept,
            dense_mass=dense_mass,
            max_tree_depth=max_tree_depth,
            progress=show,
            desc="crosscheck",
        )
        prior_text = {n: describe_prior(d) for n, d in zip(names, priors, strict=True)}

    settings = dict(
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        seed=seed,
        bounds_sigma=float(bounds_sigma),
        target_accept=target_accept,
        dense_mass=dense_mass,
        max_tree_depth=max_tree_depth,
    )
    return _compare(
        F,
        names,
        fid,
        run,
        datas,
        reference,
        ref_note,
        sampler.sigma,
        tol,
        prior_text,
        sampler.defaulted,
        kind,
        settings,
    )


def _check_tolerance(**values) -> dict:
    """The agreement tolerances (non-negative, finite numbers) as the `tolerance` dict."""
    for name, value in values.items():
        if not (is_real_number(value) and value >= 0 and math.isfinite(value)):
            raise InputError(f"`{name}` must be a non-negative number; received {quote(value)}.")
    tol = {k: float(v) for k, v in values.items()}
    return dict(
        rtol=tol["rtol"],
        shift_tol=tol["shift_tol"],
        asym_tol=tol["asym_tol"],
        n_se=tol["n_se"],
        rhat_max=RHAT_MAX,
        min_ess=tol["min_ess"],
    )


def _observed_data(data, experiments, fid64, names, key):
    """``(datas, kind)``: the data to sample against, one array per experiment, and
    ``"asimov"``, ``"simulated"`` or ``"user"``. Call under float64."""
    means = jax.device_get(model_means(tuple(experiments), fid64))
    if isinstance(data, str) and data == "asimov":
        _check_asimov(experiments, fid64, names, means)
        return tuple(np.asarray(m) for m in means), "asimov"
    if isinstance(data, str):
        simulated = jax.device_get(simulate(tuple(experiments), fid64, key))
        return tuple(np.asarray(d) for d in simulated), "simulated"
    datas = checked_data(data, experiments, means, fid64, alternatives=("asimov", "simulate"))
    return datas, "user"


def _best_fit(like, v0, L, priors, theta0, names):
    """``(reference, note)``: the maximum-likelihood point within the prior, or the
    fiducial and a note saying so when the fit fails. Call under float64."""
    offset = experiments_loglik(jnp.asarray(theta0), like, names)
    ref, ok, _ = fit_jit(
        like,
        jnp.asarray(v0),
        jnp.asarray(L),
        priors,
        offset,
        names=names,
        loglik_fn=experiments_loglik,
        bounded=True,
        rtol=1e-10,
        atol=1e-10,
        max_steps=512,
    )
    if bool(ok):
        return np.asarray(ref, dtype=np.float64), None
    return theta0.copy(), (
        "the maximum-likelihood fit of the data failed; mean shifts are measured from the "
        "fiducial instead"
    )


def _divergence_note(n_div, n_draws, settings) -> str:
    """The reason given for a run with divergent transitions, with settings to try next."""
    target = settings.get("target_accept", TARGET_ACCEPT)
    warmup = int(settings.get("num_warmup", 500))
    chains = int(settings.get("num_chains", 1))
    advice = []
    if target < 0.99:
        advice.append(f"target_accept={0.95 if target < 0.95 else 0.99:g} (was {target:g})")
    advice.append(f"num_warmup={max(2 * warmup, 1000)} (was {warmup})")
    if chains < 4:
        advice.append(f"num_chains=4 (was {chains})")
    text = advice[0] if len(advice) == 1 else ", ".join(advice[:-1]) + " and " + advice[-1]
    if target >= 0.99:
        text += ", or reparametrise the model or narrow the prior around the problem region"
    return (
        f"{n_div} divergent transitions ({n_div / n_draws:.2%} of {n_draws} draws): NUTS "
        "could not integrate part of the posterior (a curved ridge, funnel or sharp "
        "edge), so σ_hmc, the mean and the intervals are biased by an amount the Monte "
        f"Carlo errors do not include; agreement cannot be certified. Rerun with {text}"
    )


def _compare(
    F,
    names,
    fid,
    run,
    datas,
    reference,
    ref_note,
    sigma_fisher,
    tol,
    prior_text,
    defaulted,
    kind,
    settings,
) -> CrossCheck:
    theta = run.theta
    stats = chain_statistics(theta)
    sf = np.array([sigma_fisher[n] for n in names])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = stats["sigma"] / sf
        ratio_err = stats["se_sigma"] / sf
        shift = (stats["mean"] - reference) / sf
        shift_err = stats["se_mean"] / sf
    where = "fiducial" if kind == "asimov" else "best fit"
    discrepancies, unresolved = _discrepancies(
        names, sf, (ratio, ratio_err), (shift, shift_err), stats, tol, where
    )
    bad_rhat = [n for n, r in zip(names, stats["rhat"], strict=True) if not r < tol["rhat_max"]]
    low_ess = [n for n, e in zip(names, stats["ess"], strict=True) if not e >= tol["min_ess"]]
    converged = not bad_rhat and not low_ess
    notes = [ref_note] if ref_note else []
    if bad_rhat:
        notes.append(
            f"not converged: split R-hat >= {tol['rhat_max']} for {bad_rhat} "
            "(run longer or more chains)"
        )
    if low_ess:
        notes.append(
            f"not converged: ESS < {tol['min_ess']:g} for {low_ess} (increase num_samples)"
        )
    if unresolved and not discrepancies:
        notes.append(
            f"Monte Carlo error too large for {unresolved}: a discrepancy of "
            f"{RESOLUTION:g} × the tolerance would go undetected (increase "
            "num_samples)"
        )
    n_div = int(np.sum(run.diverging))
    if n_div:
        notes.append(_divergence_note(n_div, run.diverging.size, settings))
    reasons = discrepancies + notes
    within = not discrepancies
    # Divergences mean NUTS skipped part of the posterior (typically a narrowing tail), so
    # σ_hmc and the mean are biased by an amount the ESS-based errors cannot see: agreement
    # cannot be certified. A discrepancy still stands when divergences are rare (≤
    # DIVERGENCE_LIMIT of the draws: a banana with one divergence in 4000 draws is flagged
    # rightly); with more, the run is unresolved whichever way it points.
    resolved = not unresolved and not n_div
    agrees = within and converged and resolved
    divergence_ok = n_div <= DIVERGENCE_LIMIT * run.diverging.size
    C, S, _ = theta.shape

    def d(arr):
        return {n: float(v) for n, v in zip(names, arr, strict=True)}

    return CrossCheck(
        names=tuple(names),
        fisher=F,
        fiducial={n: fid[n] for n in names},
        samples={n: theta[:, :, i].reshape(C * S) for i, n in enumerate(names)},
        chains={n: theta[:, :, i] for i, n in enumerate(names)},
        sigma_fisher=d(sf),
        sigma_hmc=d(stats["sigma"]),
        mean_hmc=d(stats["mean"]),
        reference=d(reference),
        ratio=d(ratio),
        ratio_error=d(ratio_err),
        shift=d(shift),
        shift_error=d(shift_err),
        skewness=d(stats["skewness"]),
        asymmetry=d(stats["asymmetry"]),
        asymmetry_error=d(stats["se_asymmetry"]),
        interval={n: tuple(float(v[i]) for v in stats["interval"]) for i, n in enumerate(names)},
        rhat=d(stats["rhat"]),
        ess=d(stats["ess"]),
        divergences=n_div,
        tolerance=tol,
        within_tolerance=bool(within),
        resolved=bool(resolved),
        converged=converged,
        agrees=bool(agrees),
        divergence_ok=bool(divergence_ok),
        reasons=tuple(reasons),
        priors=prior_text,
        defaulted_bounds=defaulted,
        data_kind=kind,
        seconds=float(run.seconds),
        num_steps=int(np.sum(run.num_steps)),
        settings=settings,
        data=tuple(datas),
    )


def _discrepancies(names, sf, ratio_pair, shift_pair, stats, tol, where):
    """``(discrepancies, unresolved)``: the reasons (in words) of the parameters whose σ
    ratio, mean shift or asymmetry is off, and the names whose Monte Carlo errors are too
    large to resolve a discrepancy of ``RESOLUTION`` × the tolerance."""
    ratio, ratio_err = ratio_pair
    shift, shift_err = shift_pair
    # A discrepancy must be practically relevant (beyond the slack) AND statistically
    # significant (beyond n_se Monte Carlo standard errors).
    discrepancies, unresolved = [], []
    n_se = tol["n_se"]
    for i, n in enumerate(names):
        if not math.isfinite(sf[i]):
            discrepancies.append(f"{n}: the Fisher matrix does not constrain it (σ_Fisher = inf)")
            continue
        bound = max(tol["rtol"], n_se * ratio_err[i])
        if not abs(ratio[i] - 1) <= bound:
            discrepancies.append(
                f"{n}: σ_hmc/σ_fisher = {ratio[i]:.3f} ± {ratio_err[i]:.3f}, "
                f"outside 1 ± {bound:.3f}"
            )
        bound = max(tol["shift_tol"], n_se * shift_err[i])
        if not abs(shift[i]) <= bound:
            discrepancies.append(
                f"{n}: posterior mean is {shift[i]:+.3f} ± {shift_err[i]:.3f} "
                f"σ_fisher from the {where} (allowed ±{bound:.3f})"
            )
        asym, asym_err = stats["asymmetry"][i], stats["se_asymmetry"][i]
        bound = max(tol["asym_tol"], n_se * asym_err)
        if not abs(asym) <= bound:
            lo, mid, hi = (v[i] for v in stats["interval"])
            discrepancies.append(
                f"{n}: asymmetric errors +{hi - mid:.4g}/-{mid - lo:.4g} "
                f"(asymmetry {asym:+.3f} ± {asym_err:.3f}, allowed "
                f"±{bound:.3f}); the Fisher interval is symmetric"
            )
        if (
            n_se * ratio_err[i] > RESOLUTION * tol["rtol"]
            or n_se * shift_err[i] > RESOLUTION * tol["shift_tol"]
        ):
            unresolved.append(n)
    return discrepancies, unresolved
