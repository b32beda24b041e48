"""What ``corner`` draws: sample sets (histograms through the ``corner`` package, contours
binned in whitened coordinates or by corner) and Fisher matrices (analytic Gaussians and
joint ellipses)."""

from __future__ import annotations

import math

import numpy as np

from .style import linestyle


def _density_thresholds(H, levels):
    """Densities whose upper sets hold the fractions `levels` of the histogram mass."""
    flat = np.sort(H.ravel())[::-1]
    cdf = np.cumsum(flat)
    cdf /= cdf[-1]
    return [flat[min(int(np.searchsorted(cdf, lv)), flat.size - 1)] for lv in levels]


def whitened_contours(ax, x, y, levels, color, bins, smooth, linewidth, fill):
    """2-D contours of samples at probability contents `levels`, affine invariant.

    The samples are mapped to ``w = L⁻¹ (p − mean)`` with ``L Lᵀ`` their covariance; the
    histogram (and its Gaussian smoothing) lives on a square grid in ``w``; the grid is
    mapped back and drawn with matplotlib's curvilinear ``contour``. Returns the contour set,
    or None where the samples or their histogram are degenerate.
    """
    from scipy.ndimage import gaussian_filter

    pts = np.column_stack([x, y])
    mean = pts.mean(axis=0)
    cov = np.cov(pts, rowvar=False)
    try:
        L = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    w = np.linalg.solve(L, (pts - mean).T).T
    lo, hi = np.quantile(w, [0.0005, 0.9995], axis=0)
    pad = 0.1 * (hi - lo)
    edges = [np.linspace(lo[k] - pad[k], hi[k] + pad[k], bins + 1) for k in range(2)]
    H, eu, ev = np.histogram2d(w[:, 0], w[:, 1], bins=edges)
    if smooth:
        H = gaussian_filter(H, smooth)
    thresholds = _density_thresholds(H, levels)  # descending with ascending levels
    if len(set(thresholds)) < len(thresholds) or min(thresholds) <= 0:
        return None
    cu, cv = 0.5 * (eu[1:] + eu[:-1]), 0.5 * (ev[1:] + ev[:-1])
    U, V = np.meshgrid(cu, cv, indexing="ij")
    X = mean[0] + L[0, 0] * U + L[0, 1] * V
    Y = mean[1] + L[1, 0] * U + L[1, 1] * V
    order = np.argsort(thresholds)
    if fill:
        bounds = [thresholds[k] for k in order] + [H.max() * 1.0001]
        ax.contourf(X, Y, H, levels=bounds, colors=[color], alpha=0.25)
    cs = ax.contour(
        X,
        Y,
        H,
        levels=[thresholds[k] for k in order],
        colors=[color],
        linewidths=linewidth,
        linestyles=[linestyle(k) for k in order],
    )
    cs.set_gid("sample-contour")
    return cs


def draw_samples(fig, axes, payload, names, rng, diag_max, style) -> None:
    """One sample set: corner's 1-D density histograms (and, for ``contours="corner"``, its
    2-D contours) plus, by default, whitened contours; raises `diag_max` to the histograms'
    peaks. `style` holds levels, color, bins, smooth, linewidth, fill and contours."""
    import corner as corner_pkg

    K = len(names)
    color, bins, levels = style["color"], style["bins"], style["levels"]
    data = np.column_stack([np.asarray(payload[n], dtype=np.float64) for n in names])
    data = data[np.all(np.isfinite(data), axis=1)]
    own = style["contours"] == "whitened"
    corner_pkg.corner(
        data,
        fig=fig,
        range=rng,
        bins=bins,
        levels=levels,
        color=color,
        smooth=style["smooth"],
        plot_datapoints=False,
        plot_density=False,
        plot_contours=not own,
        fill_contours=style["fill"] and not own,
        no_fill_contours=True,
        hist_kwargs={"density": True, "color": color},
        contour_kwargs={"linewidths": style["linewidth"]},
    )
    if own:
        for i in range(K):
            for j in range(i):
                whitened_contours(
                    axes[i, j],
                    data[:, j],
                    data[:, i],
                    levels,
                    color,
                    bins,
                    style["smooth"],
                    style["linewidth"],
                    style["fill"],
                )
    for i in range(K):
        counts, _ = np.histogram(data[:, i], bins=bins, range=rng[i], density=True)
        diag_max[i] = max(diag_max[i], counts.max(initial=0.0))


def draw_fisher(axes, F, sig, names, rng, diag_max, levels, color, linewidth) -> None:
    """One Fisher matrix (marginal σ `sig`): marginal Gaussians on the diagonal (gid
    ``"fisher-gaussian"``), joint ellipses at `levels` below it (gid ``"fisher-ellipse"``);
    raises `diag_max` to the Gaussians' peaks. Parameters F lacks are skipped."""
    fid = F.fiducial or {n: 0.0 for n in F.names}
    for i, n in enumerate(names):
        if n not in sig:
            continue
        x = np.linspace(rng[i][0], rng[i][1], 400)
        pdf = np.exp(-0.5 * ((x - fid[n]) / sig[n]) ** 2) / (math.sqrt(2 * math.pi) * sig[n])
        (line,) = axes[i, i].plot(x, pdf, color=color, lw=linewidth)
        line.set_gid("fisher-gaussian")
        diag_max[i] = max(diag_max[i], pdf.max())
    for i, yn in enumerate(names):
        for j, xn in enumerate(names[:i]):
            if xn not in sig or yn not in sig:
                continue
            for k, level in enumerate(levels):
                verts = F.ellipse(xn, yn, level).vertices(201)
                (line,) = axes[i, j].plot(
                    verts[:, 0], verts[:, 1], color=color, lw=linewidth, ls=linestyle(k)
                )
                line.set_gid("fisher-ellipse")
