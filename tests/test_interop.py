"""Interoperability: each conversion checked against the other package's own numbers.

getdist computes the marginal σ of a GaussianND from its own 1-D density grid, arviz its
posterior sd from the draws, pandas only holds what we give it (checked against closed
forms). Each test skips where its package is not installed (`fisherforecast[interop]`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import LINEAR3_FISHER, LINEAR3_SIGMA

import fisherforecast as ff
from fisherforecast import _interop

FID = {"a": 1.0, "b": 2.0}


@pytest.fixture
def F():
    return ff.FisherMatrix(LINEAR3_FISHER, ["a", "b"], FID, labels={"a": r"$\alpha$"}, name="lin")


def _density_sigma(density):
    """σ of a tabulated 1-D density, by quadrature on its grid."""
    x, p = density.x, density.P
    p = p / np.trapezoid(p, x)
    mean = np.trapezoid(x * p, x)
    return math.sqrt(np.trapezoid((x - mean) ** 2 * p, x)), mean


def test_getdist_gaussian_sigma_equals_fisher_sigma(F):
    pytest.importorskip("getdist")
    g = F.to_getdist()
    assert g.names == ["a", "b"] and g.label == "lin"
    assert [p.label for p in g.paramNames.names] == [r"\alpha", "b"]  # no $ for getdist
    np.testing.assert_allclose(np.sqrt(np.diag(g.covs[0])), LINEAR3_SIGMA, rtol=1e-12)
    # getdist's own marginal density (its grid and its marginalisation) gives F.sigma().
    for i, name in enumerate(["a", "b"]):
        sigma, mean = _density_sigma(g.density1D(i, num_points=4096, sigma_max=8))
        assert sigma == pytest.approx(F.sigma()[name], rel=1e-4)
        assert mean == pytest.approx(FID[name], abs=1e-6)
    # A subset is marginalised first (Schur complement), not sliced.
    sub = F.to_getdist(names=["b"], label="b only")
    assert math.sqrt(sub.covs[0][0, 0]) == pytest.approx(LINEAR3_SIGMA[1], rel=1e-12)


def test_getdist_refuses_a_singular_matrix():
    pytest.importorskip("getdist")
    S = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["x", "y"], {"x": 1.0, "y": 1.0})
    with pytest.raises(ff.SingularFisherError, match="x"):
        S.to_getdist()


def test_getdist_mcsamples_and_arviz_from_draws():
    getdist = pytest.importorskip("getdist")
    rng = np.random.default_rng(1)
    cov = np.linalg.inv(LINEAR3_FISHER)
    draws = rng.multivariate_normal([1.0, 2.0], cov, size=4000)
    samples = {"a": draws[:, 0], "b": draws[:, 1]}
    mc = _interop.to_mcsamples(samples, label="draws")
    assert isinstance(mc, getdist.MCSamples)
    for i, name in enumerate(["a", "b"]):
        assert mc.std(name) == pytest.approx(np.std(draws[:, i]), rel=1e-3)
        # Statistical check against the known σ: 5 standard errors of a sample σ.
        assert mc.std(name) == pytest.approx(LINEAR3_SIGMA[i], rel=5 / math.sqrt(2 * 4000))
    with pytest.raises(ff.InputError, match="same number of draws"):
        _interop.to_mcsamples({"a": draws[:, 0], "b": draws[:10, 1]})
    with pytest.raises(ff.ParameterError, match="'c'"):
        _interop.to_mcsamples(samples, names=["c"])


@pytest.fixture
def dali_samples():
    """A DALISamples holding two chains of draws from the linear model's posterior (its DALI
    is its Fisher matrix), made here with numpy: the conversion, not NUTS, is under test."""
    from fisherforecast._sampling.dali import DALISamples
    from fisherforecast._sampling.stats import chain_statistics

    rng = np.random.default_rng(3)
    theta = rng.multivariate_normal([1.0, 2.0], np.linalg.inv(LINEAR3_FISHER), size=(2, 600))
    stats = chain_statistics(theta)
    names = ("a", "b")

    def d(values):
        return {n: float(v) for n, v in zip(names, values, strict=True)}

    return DALISamples(
        names=names,
        samples={n: theta[:, :, i].reshape(-1) for i, n in enumerate(names)},
        chains={n: theta[:, :, i] for i, n in enumerate(names)},
        **{k: d(stats[k]) for k in ("sigma", "mean", "skewness", "asymmetry", "rhat", "ess")},
        divergences=0,
        priors={},
        seconds=0.0,
    )


def test_dali_samples_to_getdist_and_arviz(dali_samples):
    pytest.importorskip("getdist")
    s = dali_samples
    mc = s.to_getdist()
    assert list(mc.chain_offsets) == [0, 600, 1200]  # one getdist chain per sampler chain
    for name in s.names:
        assert mc.std(name) == pytest.approx(np.std(s.samples[name]), rel=1e-9)
        assert mc.getMeans()[s.names.index(name)] == pytest.approx(s.mean[name], rel=1e-9)
    az = pytest.importorskip("arviz")
    idata = s.to_inference_data()
    post = idata.posterior
    assert dict(post.sizes) == {"chain": 2, "draw": 600}
    np.testing.assert_array_equal(post["a"].values, s.chains["a"])
    summary = az.summary(idata, kind="all", round_to="none")
    sigma = dict(zip(s.names, LINEAR3_SIGMA, strict=True))
    for name in s.names:
        # arviz's sd and ESS of the same draws: sd with ddof 1; ESS by its own estimator.
        assert summary.loc[name, "sd"] == pytest.approx(s.sigma[name], rel=2e-3)
        assert summary.loc[name, "sd"] == pytest.approx(sigma[name], rel=5 / math.sqrt(2400))
        assert summary.loc[name, "ess_bulk"] == pytest.approx(s.ess[name], rel=0.2)
    assert idata.attrs["divergences"] == 0 and idata.attrs["created_by"] == "fisherforecast"


def test_dataframes_hold_the_closed_forms(F):
    pytest.importorskip("pandas")
    cov = np.linalg.inv(LINEAR3_FISHER)
    np.testing.assert_array_equal(F.to_dataframe().loc["a", "b"], 2.0)
    np.testing.assert_allclose(F.to_dataframe("covariance").to_numpy(), cov, rtol=1e-12)
    corr = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    assert F.to_dataframe("correlation").loc["b", "a"] == pytest.approx(corr, rel=1e-12)
    table = F.to_dataframe("summary")
    assert list(table.index) == ["a", "b"]
    np.testing.assert_allclose(table["sigma"], LINEAR3_SIGMA, rtol=1e-12)
    np.testing.assert_allclose(table["relative_sigma"], LINEAR3_SIGMA / [1.0, 2.0], rtol=1e-12)
    np.testing.assert_allclose(table["conditional_sigma"], [2**-0.5, 5**-0.5], rtol=1e-12)
    with pytest.raises(ff.InputError, match="kind"):
        F.to_dataframe("sigmas")


def test_sigma_table_side_by_side(F):
    pytest.importorskip("pandas")
    prior = ff.FisherMatrix([[100.0]], ["c"], {"c": 4.0}, name="prior")
    singular = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["a", "b"], FID, name="degenerate")
    table = ff.sigma_table({"lin": F, "both": F + prior, "deg": singular})
    assert list(table.columns) == ["lin", "both", "deg"]
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", "lin"] == pytest.approx(LINEAR3_SIGMA[0], rel=1e-12)
    assert math.isnan(table.loc["c", "lin"]) and table.loc["c", "both"] == pytest.approx(0.1)
    assert math.isinf(table.loc["a", "deg"])
    rel = ff.sigma_table([F], names=["b"], relative=True)
    assert list(rel.columns) == ["lin"] and rel.loc["b", "lin"] == pytest.approx(
        LINEAR3_SIGMA[1] / 2
    )
    with pytest.raises(ff.InputError, match="FisherMatrix"):
        ff.sigma_table({"x": np.eye(2)})
    with pytest.raises(ff.ParameterError, match="'zz'"):
        ff.sigma_table([F], names=["zz"])


def test_chainconsumer_sigma_equals_fisher_sigma(F):
    cc = pytest.importorskip("chainconsumer")
    chain = F.to_chainconsumer()
    assert isinstance(chain, cc.Chain) and chain.name == "lin"
    draws = chain.samples[["a", "b"]].to_numpy()
    # from_covariance draws samples: their σ match F.sigma() to Monte Carlo precision.
    n = draws.shape[0]
    np.testing.assert_allclose(draws.std(axis=0), LINEAR3_SIGMA, rtol=5 / math.sqrt(2 * n))


def test_missing_package_names_the_extra():
    with pytest.raises(ImportError, match=r"fisherforecast\[interop\]"):
        _interop._require("no_such_package_for_fisherforecast")


def test_chainconsumer_from_samples(dali_samples):
    cc = pytest.importorskip("chainconsumer")
    chain = dali_samples.to_chainconsumer(name="DALI")
    assert isinstance(chain, cc.Chain) and chain.name == "DALI"
    for name in dali_samples.names:
        np.testing.assert_array_equal(chain.samples[name].to_numpy(), dali_samples.samples[name])


def test_covmat_file_is_read_by_getdist_and_holds_the_inverse(F, tmp_path):
    covmat = pytest.importorskip("getdist.covmat")
    path = tmp_path / "lin.covmat"
    F.save_covmat(path)
    read = covmat.CovMat(str(path))
    assert read.paramNames == ["a", "b"]
    # 17 significant digits: the file holds F⁻¹ exactly, and its diagonal gives the σ of the
    # closed-form linear model.
    np.testing.assert_array_equal(read.matrix, F.covariance())
    np.testing.assert_allclose(np.sqrt(np.diag(read.matrix)), LINEAR3_SIGMA, rtol=1e-12)
    # never replaced silently; replaced on request
    with pytest.raises(FileExistsError):
        F.save_covmat(path)
    F.marginalize(["b"]).save_covmat(path, overwrite=True)
    assert covmat.CovMat(str(path)).matrix == pytest.approx(LINEAR3_SIGMA[1] ** 2, rel=1e-12)
    # a subset is marginalised, not sliced
    F.save_covmat(tmp_path / "b.covmat", names=["b"])
    assert float(np.loadtxt(tmp_path / "b.covmat")) == pytest.approx(LINEAR3_SIGMA[1] ** 2)


def test_covmat_refuses_singular_matrices_and_names_with_spaces(tmp_path):
    S = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["x", "y"])
    with pytest.raises(ff.SingularFisherError, match="x"):
        S.save_covmat(tmp_path / "s.covmat")
    spaced = ff.FisherMatrix(np.eye(2), ["x", "y z"])
    with pytest.raises(ff.InputError, match="y z"):
        spaced.save_covmat(tmp_path / "t.covmat")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left behind
