"""Plot fixes: distinct colours for many parameters, layouts that keep labels when saved,
the design plot's middle panel with every point and the sampling times of dict designs."""

import jax.numpy as jnp
import matplotlib
import numpy as np

import fisherforecast as ff

matplotlib.use("Agg")


def test_twelve_parameters_get_twelve_colours():
    names = [f"p{i}" for i in range(12)]
    x = np.linspace(0.1, 1.0, 40)

    def model(p, x):
        return sum(p[n] * x**i for i, n in enumerate(names))

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=x)
    rep = ff.identifiability(
        exp, {n: 1.0 + 0.1 * i for i, n in enumerate(names)}, n_random=1, check_nonlinearity=False
    )
    fig = rep.plot()
    ax = fig.axes[-1]
    colours = {tuple(c.patches[0].get_facecolor()) for c in ax.containers}
    assert len(ax.containers) == 12 and len(colours) == 12


def test_spectrum_draws_a_tiny_positive_eigenvalue_at_its_own_height():
    """y = (a, a + 1e-6 b), σ = 1: F = [[2, 1e-6], [1e-6, 1e-12]] at a = b = 1, whose
    eigenvalues are 2 and 5e-13 (det / trace). The small one was drawn at the plot's floor
    (top·rtol² = 2e-12) instead of at 5e-13."""
    exp = ff.Experiment(
        lambda p, x: jnp.stack([p["a"], p["a"] + 1e-6 * p["b"]]),
        ff.Gaussian(sigma=1.0),
        design=np.zeros(2),
    )
    rep = ff.identifiability(exp, {"a": 1.0, "b": 1.0}, n_random=1, check_nonlinearity=False)
    heights = sorted(float(line.get_ydata()[0]) for line in rep.plot().axes[0].lines)
    np.testing.assert_allclose(heights, [0.5e-12 / (1 + 0.25e-12), 2.0 + 0.25e-12], rtol=1e-6)


def test_profile_plot_uses_a_layout_that_keeps_labels(tmp_path):
    exp = ff.Experiment(
        lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.5), design=np.linspace(-1, 1, 5)
    )
    batch = ff.profile_likelihood(exp, {"a": 1.0, "b": 2.0}, ["a", "b"], n_grid=7)
    fig = batch.plot()
    assert fig.get_layout_engine() is not None  # constrained: nothing clipped when saved
    fig.savefig(tmp_path / "p.png")


def test_design_middle_panel_shows_every_point():
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0.5, 8.0, 8),
    )
    # One short start, no polish: the 8 points stay distinct (more than the old 6 curves).
    res = ff.optimize_design(
        exp, {"A": 2.0, "k": 0.5}, bounds=(0.0, 10.0), n_starts=1, max_steps=1, n_polish=0
    )
    fig = res.plot(n_grid=20)
    x = np.asarray(res._x)
    n_distinct = len({round(float(v), 6) for v in x})
    curves = [ln for ln in fig.axes[1].get_lines() if len(ln.get_xdata()) == 20]
    assert n_distinct == 8 and len(curves) == 8
