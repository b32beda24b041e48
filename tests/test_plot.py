"""Plot structure: labels, legends, and contour geometry against the analytic ellipse.

The semi-axes of a 2-D joint region of probability p are sqrt(−2 ln(1 − p) λ) for the
eigenvalues λ of the 2 × 2 marginal covariance (closed form: 1.515 and 2.486 × sqrt(λ)
for 68.27 % and 95.45 %). The covariance here comes from numpy, not from the library.
"""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

import fisherforecast as ff

matplotlib.use("Agg")
import matplotlib.pyplot as plt

M = np.array([[2.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]])
FID = {"a": 1.0, "b": 2.0, "c": 0.0}
F = ff.FisherMatrix(M, ["a", "b", "c"], fiducial=FID, labels={"a": r"\alpha"}, name="exp")
COV = np.linalg.inv(M)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ellipse_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() == "fisher-ellipse"]


def _semi_axes(line, center):
    xy = np.asarray(line.get_xydata()) - np.asarray(center)
    r = np.hypot(xy[:, 0], xy[:, 1])
    return r.max(), r.min()


def test_corner_fisher_structure_and_ellipse_vertices():
    fig = ff.plot.corner(F)
    axes = np.array(fig.axes).reshape(3, 3)
    assert len(fig.axes) == 9
    # Labels: x on the bottom row, y on the left column (diagonal excluded); LaTeX wrapped.
    assert [axes[2, j].get_xlabel() for j in range(3)] == [r"$\alpha$", "b", "c"]
    assert [axes[i, 0].get_ylabel() for i in range(3)] == ["", "b", "c"]
    assert axes[0, 0].get_xlabel() == "" and axes[1, 1].get_ylabel() == ""
    assert not axes[0, 1].get_frame_on()
    assert fig.legends == []  # one item: no legend by default
    alphas = [1.515, 2.486]  # sqrt(−2 ln(1 − p)) for p = 68.27 %, 95.45 %
    for i, j in ((1, 0), (2, 0), (2, 1)):
        lines = _ellipse_lines(axes[i, j])
        assert len(lines) == 2
        sub = COV[np.ix_([j, i], [j, i])]
        lam = np.linalg.eigvalsh(sub)
        center = (list(FID.values())[j], list(FID.values())[i])
        for line, alpha, p in zip(lines, alphas, (0.6827, 0.9545), strict=True):
            major, minor = _semi_axes(line, center)
            scale = np.sqrt(-2 * np.log(1 - p))
            assert scale == pytest.approx(alpha, abs=1e-3)
            assert major == pytest.approx(scale * np.sqrt(lam[1]), rel=1e-9)
            assert minor == pytest.approx(scale * np.sqrt(lam[0]), rel=1e-9)
    # Diagonal: marginal Gaussians with σ = sqrt(diag F⁻¹).
    for i in range(3):
        (g,) = [ln for ln in axes[i, i].get_lines() if ln.get_gid() == "fisher-gaussian"]
        peak = np.max(g.get_ydata())
        assert peak == pytest.approx(1 / np.sqrt(2 * np.pi * COV[i, i]), rel=1e-4)


def test_corner_overlays_matrices_with_legend_and_custom_levels():
    G = F.with_prior({"a": 0.3})
    fig = ff.plot.corner(
        {"CMB": F, "CMB + prior": G},
        names=["a", "b"],
        levels=(0.9545,),
        labels={"b": "$b_0$"},
        colors=["k", "r"],
    )
    axes = np.array(fig.axes).reshape(2, 2)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["CMB", "CMB + prior"]
    lines = _ellipse_lines(axes[1, 0])
    assert [ln.get_color() for ln in lines] == ["k", "r"]
    assert axes[1, 0].get_ylabel() == "$b_0$"
    cov_g = G.covariance()[:2, :2]
    major, minor = _semi_axes(lines[1], (1.0, 2.0))
    lam = np.linalg.eigvalsh(cov_g)
    assert major == pytest.approx(np.sqrt(6.18 * lam[1]), rel=2e-3)
    assert minor == pytest.approx(np.sqrt(6.18 * lam[0]), rel=2e-3)
    fig = ff.plot.corner([F, G], legend=["one", "two"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["one", "two"]


def test_overplot_and_singular_matrix():
    narrow = ff.FisherMatrix(M * 100, ["a", "b", "c"], fiducial=FID)
    fig = ff.plot.corner(narrow, names=["a", "b"], legend=False)
    singular = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    fig = ff.plot.corner({"wide": F, "degenerate": singular}, names=["a", "b"], fig=fig)
    axes = np.array(fig.axes).reshape(2, 2)
    assert len(_ellipse_lines(axes[1, 0])) == 4  # 2 narrow + 2 wide, none for the singular
    lo, hi = axes[1, 0].get_xlim()
    assert lo < 1 - 3 * np.sqrt(COV[0, 0]) and hi > 1 + 3 * np.sqrt(COV[0, 0])
    # The diagonal keeps the narrow Gaussian's peak in view.
    peak = 1 / np.sqrt(2 * np.pi * COV[0, 0] / 100)
    assert axes[0, 0].get_ylim()[1] >= peak
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["wide", "degenerate (singular: not drawn)"]


def test_sample_contours_enclose_the_same_probability_as_the_ellipses():
    """Gaussian samples from F⁻¹: corner's 68.27 % contour lies on Δχ² ≈ 2.30."""
    rng = np.random.default_rng(2)
    x = rng.multivariate_normal(list(FID.values()), COV, size=40_000)
    samples = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}
    fig = ff.plot.corner({"Fisher": F, "samples": samples}, bins=40)
    axes = np.array(fig.axes).reshape(3, 3)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Fisher", "samples"]
    contours = [c for c in axes[1, 0].collections if hasattr(c, "levels")]
    assert len(contours) == 1
    paths = contours[0].get_paths()
    assert len(paths) == 2  # one per level
    inv = np.linalg.inv(COV[:2, :2])
    for path, dchi2 in zip(paths, (6.18, 2.30), strict=True):  # ascending density
        d = path.vertices - np.array([1.0, 2.0])
        r2 = np.einsum("ki,ij,kj->k", d, inv, d)
        assert np.median(r2) == pytest.approx(dchi2, rel=0.12)
    # The histogram on the diagonal is a density, on the same scale as the Gaussian.
    patches = axes[0, 0].patches
    assert patches and axes[0, 0].get_ylim()[1] > 1 / np.sqrt(2 * np.pi * COV[0, 0])


def test_corner_input_errors():
    with pytest.raises(ValueError, match="levels"):
        ff.plot.corner(F, levels=(68.27,))
    with pytest.raises(ff.InputError, match=r"`levels`.*repeated"):
        ff.plot.corner(F, levels=(0.5, 0.5))
    with pytest.raises(ff.InputError, match=r"`levels`.*'0\.7'"):
        ff.plot.ellipse(F, "a", "b", levels="0.7")
    with pytest.raises(KeyError, match=r"\['c'\]"):
        ff.plot.corner({"s": {"a": np.zeros(10), "b": np.ones(10)}, "F": F})
    with pytest.raises(KeyError, match="no input has"):
        ff.plot.corner(F, names=["a", "zeta"])
    with pytest.raises(TypeError, match="expects FisherMatrix"):
        ff.plot.corner(42)
    fig = plt.figure()
    fig.subplots(2, 2)
    with pytest.raises(ValueError, match="needs 9"):
        ff.plot.corner(F, fig=fig)


def test_ellipse_plot():
    fig = ff.plot.ellipse(F, "b", "c", fill=True)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "b" and ax.get_ylabel() == "c"
    lines = _ellipse_lines(ax)
    assert len(lines) == 2
    lam = np.linalg.eigvalsh(COV[np.ix_([1, 2], [1, 2])])
    major, minor = _semi_axes(lines[0], (2.0, 0.0))
    assert major == pytest.approx(np.sqrt(2.2957) * np.sqrt(lam[1]), rel=1e-3)
    assert minor == pytest.approx(np.sqrt(2.2957) * np.sqrt(lam[0]), rel=1e-3)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Δχ² = 2.30" in texts[0] and "Δχ² = 6.18" in texts[1]
    assert len(ax.patches) == 2


def test_sigma_bars_heights_and_singular_matrix():
    G = F.with_prior({"a": 0.3})
    singular = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["a", "b"])
    fig = ff.plot.sigma_bars({"alone": F, "with prior": G, "broken": singular})
    ax = fig.axes[0]
    assert len(ax.containers) == 3
    np.testing.assert_allclose(
        [r.get_height() for r in ax.containers[0]], np.sqrt(np.diag(COV)), rtol=1e-12
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alone", "with prior", "broken"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [r"$\alpha$", "b", "c"]
    assert sum(t.get_text() == "∞" for t in ax.texts) == 2
    fig = ff.plot.sigma_bars([F], relative=True, log=True)
    heights = [r.get_height() for r in fig.axes[0].containers[0]]
    assert heights[0] == pytest.approx(np.sqrt(COV[0, 0]) / 1.0)
    assert np.isnan(heights[2])  # fiducial 0: no relative error
    assert fig.axes[0].get_yscale() == "log"


def test_sigma_bars_on_the_axes_of_a_subfigure():
    left, _ = plt.figure().subfigures(1, 2)
    out = ff.plot.sigma_bars([F], ax=left.add_subplot())
    assert out is left
    np.testing.assert_allclose(
        [r.get_height() for r in left.axes[0].containers[0]], np.sqrt(np.diag(COV)), rtol=1e-12
    )


def test_spectrum():
    fig = ff.plot.spectrum(F)
    d = np.sqrt(np.diag(M))
    expected = np.linalg.eigvalsh(M / np.outer(d, d))
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), expected, rtol=1e-12)
    assert fig.axes[1].get_yticklabels()[0].get_text() == r"$\alpha$"


def test_plot_module_imports_matplotlib_lazily():
    code = (
        "import sys, fisherforecast as ff; ff.plot; "
        "print('matplotlib' in sys.modules, 'corner' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("contours", ["whitened", "corner"])
def test_corner_geometry_matches_the_stored_reference(contours):
    """One corner plot (FisherMatrix + samples) against arrays captured from the code before
    corner() was split: contour and line vertices, histogram outlines, limits, labels, legend.
    Regenerate with ``python tests/corner_snapshot.py`` only for an intended change."""
    from corner_snapshot import REFERENCE, snapshot

    ref = np.load(REFERENCE)
    got = snapshot(contours)
    expected = {k: ref[k] for k in ref.files if k.startswith(f"{contours}:")}
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        if want.dtype.kind in "US":
            assert got[key].tolist() == want.tolist(), key
        else:
            np.testing.assert_allclose(got[key], want, rtol=1e-12, atol=1e-14, err_msg=key)
