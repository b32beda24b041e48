"""Statistics of posterior draws: mean, σ and their Monte Carlo errors, skewness,
interval asymmetry, split R-hat and ESS; and the text tables of the reports."""

from __future__ import annotations

import math

import numpy as np

#: Probabilities of the central 68.27 % interval used for the asymmetry of the errors.
P_LOW, P_HIGH = 0.5 * (1 - math.erf(1 / math.sqrt(2))), 0.5 * (1 + math.erf(1 / math.sqrt(2)))


def _asymmetry_se_constant() -> float:
    """√n × SE of the interval asymmetry ``(q₊ + q₋ − 2 q₅₀)/(q₊ − q₋)`` for Gaussian draws.

    From the asymptotic covariance of sample quantiles,
    ``Cov(q̂_p, q̂_r) = p(1 − r)/(n f(q_p) f(q_r))`` for ``p ≤ r``; the result is ≈ 1.13.
    """
    p = (P_LOW, 0.5, P_HIGH)
    z = (-1.0, 0.0, 1.0)
    f = [math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi) for v in z]
    w = (1.0, -2.0, 1.0)
    var = sum(
        w[i] * w[j] * min(p[i], p[j]) * (1 - max(p[i], p[j])) / (f[i] * f[j])
        for i in range(3)
        for j in range(3)
    )
    return math.sqrt(var) / 2.0


ASYMMETRY_SE = _asymmetry_se_constant()


def chain_statistics(theta):
    """Per-parameter mean, σ, their Monte Carlo standard errors, skewness, R-hat and ESS.

    `theta` is ``(chains, draws, P)``. The standard error of σ uses the effective sample size
    of the squared deviations and the sample kurtosis,
    ``SE(σ̂) = sqrt(Var[(x - x̄)²] / ESS₂) / (2σ̂)``, which is ``σ/sqrt(2 ESS)`` for a Gaussian.

    Returns a dict of ``(P,)`` arrays: ``mean``, ``sigma``, ``se_mean``, ``se_sigma``,
    ``skewness``, ``asymmetry`` (of the central 68.27 % interval) and ``se_asymmetry``,
    ``ess``, ``ess_sq``, ``rhat``, and ``interval``, the quantiles (q₁₆, q₅₀, q₈₄).

    ```python
    >>> import numpy as np
    >>> from fisherforecast._sampling.stats import chain_statistics
    >>> draws = np.random.default_rng(0).normal(2.0, 0.5, size=(4, 2000, 1))
    >>> s = chain_statistics(draws)
    >>> round(float(s["mean"][0]), 2), round(float(s["sigma"][0]), 2)
    (2.0, 0.5)
    >>> bool(abs(s["rhat"][0] - 1) < 0.01), bool(s["ess"][0] > 4000)
    (True, True)
    ```
    """
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    C, S, P = theta.shape
    flat = theta.reshape(C * S, P)
    mean = flat.mean(0)
    dev = flat - mean
    var = dev.var(0, ddof=1)
    sigma = np.sqrt(var)
    sq = (theta - mean) ** 2
    ess = np.asarray(effective_sample_size(theta), dtype=np.float64)
    ess_sq = np.asarray(effective_sample_size(sq), dtype=np.float64)
    ess = np.clip(np.where(np.isfinite(ess), ess, 1.0), 1.0, None)
    ess_sq = np.clip(np.where(np.isfinite(ess_sq), ess_sq, 1.0), 1.0, None)
    se_mean = sigma / np.sqrt(ess)
    se_sigma = np.sqrt((dev**2).var(0, ddof=1) / ess_sq) / (2.0 * np.where(sigma > 0, sigma, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.mean(dev**3, 0) / np.where(sigma > 0, sigma, np.nan) ** 3
        lo, mid, hi = np.quantile(flat, [P_LOW, 0.5, P_HIGH], axis=0)
        asym = (hi + lo - 2 * mid) / (hi - lo)
    rhat = np.asarray(split_gelman_rubin(theta), dtype=np.float64) if S >= 4 else np.full(P, np.nan)
    return {
        "mean": mean,
        "sigma": sigma,
        "se_mean": se_mean,
        "se_sigma": se_sigma,
        "skewness": skew,
        "asymmetry": asym,
        "se_asymmetry": ASYMMETRY_SE / np.sqrt(ess),
        "interval": (lo, mid, hi),
        "ess": ess,
        "ess_sq": ess_sq,
        "rhat": rhat,
    }


def format_table(header, rows) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    ```python
    >>> from fisherforecast._sampling.stats import format_table
    >>> print(format_table(["name", "sigma"], [["a", "0.1"], ["long", "12.5"]]))
    name  sigma
    -----------
    a       0.1
    long   12.5
    ```
    """
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(
        f"{h:>{w}}" if i else f"{h:<{w}}"
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for r in rows:
        out.append(
            "  ".join(
                f"{c:>{w}}" if i else f"{c:<{w}}"
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out)


def plain_data(arrays) -> list:
    """Data arrays as plain lists; a complex array as ``{"real": [...], "imag": [...]}``."""
    out = []
    for a in arrays:
        a = np.asarray(a)
        if np.iscomplexobj(a):
            out.append({"real": np.real(a).tolist(), "imag": np.imag(a).tolist()})
        else:
            out.append(a.tolist())
    return out
