"""examples/overdispersed_counts.py runs in fast mode and gets the statistics right.

Independent checks: the negative-binomial weights r/(μ(μ + r)) lie between the Poisson
weights 1/μ divided by (1 + μ_max/r) and by (1 + μ_min/r), so (Loewner order) every marginal
σ ratio NB/Poisson lies in [sqrt(1 + μ_min/r), sqrt(1 + μ_max/r)]; and NUTS on the
negative-binomial posterior of simulated data reproduces the negative-binomial σ, not the
Poisson one.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_example


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("overdispersed")
    return load_example("overdispersed_counts").main(["--fast", "--out", str(out)])


def test_the_figure_is_written(result):
    path = result["figure"]
    assert path.name == "overdispersed_counts.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_poisson_is_over_confident_by_the_dispersion_bound(result):
    ex = load_example("overdispersed_counts")
    fid = ex.FIDUCIAL
    mu = np.asarray(ex.expression(fid, ex.TIMES))
    lo, hi = np.sqrt(1 + mu.min() / fid["r"]), np.sqrt(1 + mu.max() / fid["r"])
    # the (k, γ) block with r fixed: r is orthogonal to μ, so its marginals are the same
    s_nb = result["fisher_nb"].sigma()
    s_p = result["fisher_poisson"].sigma()
    for n in ("m", "gamma"):
        ratio = s_nb[n] / s_p[n]
        assert lo * (1 - 1e-9) <= ratio <= hi * (1 + 1e-9), (n, ratio, lo, hi)
        assert ratio > 1.5  # the bursts matter here


def test_hmc_reproduces_the_negative_binomial_errors(result):
    check = result["crosscheck"]
    s_p = result["fisher_poisson"].sigma()
    assert check.verdict != "disagrees", check.summary()
    for n in ("m", "gamma", "r"):
        assert check.sigma_hmc[n] / check.sigma_fisher[n] == pytest.approx(1.0, abs=0.25), n
    for n in ("m", "gamma"):
        assert check.sigma_hmc[n] > 1.4 * s_p[n]
