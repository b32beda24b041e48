"""Progress bars (tqdm) with a cost estimate, and the `progress=` switch."""

import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._ode import ode_model


@pytest.fixture(scope="module")
def line_exp():
    return ff.Experiment(
        lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.5), design=np.linspace(-1, 1, 5)
    )


def test_profile_progress_bar_and_estimate(line_exp, capsys):
    ff.profile_likelihood(line_exp, {"a": 1.0, "b": 2.0}, ["a", "b"], n_grid=7, progress=True)
    err = capsys.readouterr().err
    assert "profile_likelihood: 2 profile(s), each a scan of 7 points" in err
    assert "2/2" in err  # the bar reached its end
    ff.profile_likelihood(line_exp, {"a": 1.0, "b": 2.0}, "b", n_grid=7, progress=False)
    assert capsys.readouterr().err == ""
    # Default: only in a terminal (pytest captures stderr, so none here).
    ff.profile_likelihood(line_exp, {"a": 1.0, "b": 2.0}, "b", n_grid=7)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="`progress` must be None"):
        ff.profile_likelihood(line_exp, {"a": 1.0, "b": 2.0}, "b", progress="yes")


def test_design_bounds_before_t0_are_refused_clearly():
    model = ode_model(lambda t, y, p: -p["k"] * y, y0=1.0, t0=0.0)
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"start at -1, before the ODE model's t0 = 0"):
        ff.optimize_design(exp, {"k": 0.5}, bounds=(-1.0, 10.0), n_starts=2)
    dict_exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design={"times": np.array([1.0, 2.0])})
    with pytest.raises(ValueError, match="t0 = 0"):
        ff.optimize_design(dict_exp, {"k": 0.5}, bounds={"times": (-0.5, 10.0)}, n_starts=2)


def test_design_progress_bar(capsys):
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=0.1),
        design=np.array([1.0, 2.0]),
    )
    res = ff.optimize_design(
        exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=4, progress=True
    )
    err = capsys.readouterr().err
    assert "optimize_design: 4 starts" in err and "2/2" in err
    # {0, 1/k}: every start reaches the optimum's basin (n_at_best compares the starts with
    # the best start when polishing only refined it).
    assert sorted(np.round(res.design, 3)) == [0.0, 2.0]
    assert res.n_at_best() >= 1


def test_crosscheck_progress_bar_counts_every_iteration(line_exp, capsys):
    """The bar is driven by a host callback from inside the compiled NUTS run: it must reach
    chains × (warm-up + draws), and the draws must be the ones of the run without a bar."""
    fid, prior = {"a": 1.0, "b": 2.0}, {"a": (-2.0, 4.0), "b": (-1.0, 5.0)}
    kw = dict(prior=prior, num_warmup=50, num_samples=100, num_chains=2)
    quiet = ff.crosscheck(line_exp, fid, progress=False, **kw)
    assert capsys.readouterr().err == ""
    shown = ff.crosscheck(line_exp, fid, progress=True, **kw)
    err = capsys.readouterr().err
    assert "crosscheck: 2 chain(s) × (50 warm-up + 100 draws) of NUTS" in err
    assert "300/300" in err
    for name in fid:
        np.testing.assert_array_equal(quiet.samples[name], shown.samples[name])


def test_coverage_progress_bar_in_chunks_gives_the_same_estimates(capsys):
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=0.05),
        design=np.linspace(0, 5, 12),
    )
    fid = {"A": 1.0, "k": 0.5}
    one = ff.coverage(exp, fid, n_sims=45, progress=False)
    assert capsys.readouterr().err == ""
    chunked = ff.coverage(exp, fid, n_sims=45, progress=True)
    err = capsys.readouterr().err
    assert "coverage: 45 maximum-likelihood fits" in err and "45/45" in err
    # 45 fits in chunks of 3 (the last padded); the padding's fits are dropped
    assert chunked.estimates.shape == one.estimates.shape == (45, 2)
    # the same fits, to far below the Cramér-Rao σ (BFGS tolerance 1e-10)
    sigma = np.array([one.fisher.sigma()[n] for n in ("A", "k")])
    assert np.max(np.abs(chunked.estimates - one.estimates) / sigma) < 1e-5
    assert chunked.coverage == one.coverage
