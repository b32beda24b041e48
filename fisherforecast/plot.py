"""Plots of Fisher forecasts: corner plots with analytic contours, ellipses, σ bars, spectra.

**Sigma conventions.** Every 2-D contour here is a *joint* region of the two parameters:
a probability content ``p`` is drawn at ``Δχ² = −2 ln(1 − p)``, so the default levels
``(0.6827, 0.9545)`` use ``Δχ² = 2.30`` and ``6.18``. The ellipse semi-axes are then
``1.515`` and ``2.486`` times the square roots of the eigenvalues of the 2 × 2 marginal
covariance. These are *not* the 1-D "1σ" and "2σ" (``Δχ² = 1`` and ``4``): the projection
of the 68.27 % joint ellipse onto one axis is 1.515σ wide, not 1σ. The 1-D panels on the
diagonal show marginal Gaussians, whose ±1σ contains 68.27 %.

Sample contours (HMC chains through the ``corner`` package) are drawn at the same 2-D
probability contents, so Fisher ellipses and sampled contours are comparable. corner's own
default levels are ``1 − exp(−n²/2)`` for ``n = 0.5, 1, 1.5, 2`` (11.8 %, 39.3 %, 67.5 %,
86.4 %): its "1σ" contour holds 39.3 % of the samples, a frequent source of confusion
(corner issue #123). We always pass `levels` explicitly.

matplotlib and corner are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ._errors import FisherError, quote
from ._matrix import FisherMatrix, delta_chi2_2d, marginal_sigma_or_inf

__all__ = ["corner", "ellipse", "sigma_bars", "spectrum"]

_LINESTYLES = ("-", "--", ":", "-.")


def _tex(label: str) -> str:
    """Wrap a LaTeX label in ``$…$`` for matplotlib unless it already has math or is plain."""
    if "$" in label:
        return label
    if any(c in label for c in "\\^_{}"):
        return f"${label}$"
    return label


def _check_levels(levels):
    if isinstance(levels, int | float):
        levels = (levels,)
    levels = tuple(float(lv) for lv in levels)
    if not levels or not all(0 < lv < 1 for lv in levels):
        raise ValueError(
            f"`levels` must be probabilities in (0, 1), e.g. (0.6827, 0.9545); received {levels!r}."
        )
    return tuple(sorted(levels))


# ---------------------------------------------------------------------------------------
# Normalising the inputs of corner()
# ---------------------------------------------------------------------------------------
def _is_sample_dict(obj) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(
        isinstance(k, str)
        and not isinstance(v, Mapping | FisherMatrix)
        and not hasattr(v, "samples")
        and np.ndim(v) == 1
        for k, v in obj.items()
    )


def _items(obj, label=None):
    """Expand one input into a list of ``(label, kind, payload)``; kind 'fisher'/'samples'."""
    from ._sampling.crosscheck import CrossCheck

    if isinstance(obj, FisherMatrix):
        return [(label or obj.name or "Fisher", "fisher", obj)]
    if isinstance(obj, CrossCheck):
        F = obj.fisher
        centred = FisherMatrix(
            F.matrix, F.names, fiducial=dict(obj.reference), labels=F.labels, name=F.name
        )
        prefix = f"{label}: " if label else ""
        return [(f"{prefix}HMC", "samples", obj.samples), (f"{prefix}Fisher", "fisher", centred)]
    if _is_sample_dict(obj):
        return [(label or "samples", "samples", obj)]
    if hasattr(obj, "samples") and _is_sample_dict(obj.samples):
        return [
            (label or type(obj).__name__.replace("Samples", " samples"), "samples", obj.samples)
        ]
    raise TypeError(
        "ff.plot.corner expects FisherMatrix objects, sample dicts (name -> 1-D array), "
        "CrossCheck results, or a list / dict label -> of these; received "
        f"{quote(obj)}."
    )


def _normalise(fishers_or_samples):
    obj = fishers_or_samples
    if isinstance(obj, Mapping) and not _is_sample_dict(obj):
        out = []
        for k, v in obj.items():
            out += _items(v, str(k))
        return out
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        if not obj:
            raise ValueError("ff.plot.corner received an empty list.")
        out = []
        for v in obj:
            out += _items(v)
        return out
    return _items(obj)


def _names_of(kind, payload):
    return tuple(payload.names) if kind == "fisher" else tuple(payload)


# ---------------------------------------------------------------------------------------
# Sample contours, binned in whitened coordinates
# ---------------------------------------------------------------------------------------
def _density_thresholds(H, levels):
    """Densities whose upper sets hold the fractions `levels` of the histogram mass."""
    flat = np.sort(H.ravel())[::-1]
    cdf = np.cumsum(flat)
    cdf /= cdf[-1]
    out = [flat[min(int(np.searchsorted(cdf, lv)), flat.size - 1)] for lv in levels]
    return out


def _whitened_contours(ax, x, y, levels, color, bins, smooth, linewidth, fill):
    """2-D contours of samples at probability contents `levels`, affine invariant.

    The samples are mapped to ``w = L⁻¹ (p − mean)`` with ``L Lᵀ`` their covariance; the
    histogram (and its Gaussian smoothing) lives on a square grid in ``w``; the grid is
    mapped back and drawn with matplotlib's curvilinear ``contour``.
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
    styles = [_LINESTYLES[k % len(_LINESTYLES)] for k in order]
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
        linestyles=styles,
    )
    cs.set_gid("sample-contour")
    return cs


# ---------------------------------------------------------------------------------------
# corner
# ---------------------------------------------------------------------------------------
def corner(
    fishers_or_samples,
    *,
    names=None,
    labels=None,
    levels=(0.6827, 0.9545),
    colors=None,
    legend=None,
    fig=None,
    bins=30,
    smooth=1.0,
    contours="whitened",
    ranges=None,
    range_sigma=3.5,
    linewidth=1.5,
    fill=False,
):
    """Corner plot of Fisher forecasts (analytic contours) and posterior samples.

    Each :class:`FisherMatrix` is drawn analytically: 2-D joint ellipses from
    ``F.ellipse(a, b, level)`` off the diagonal and marginal Gaussians on it. Sample sets
    (dicts name -> 1-D array, HMC results) go onto the same axes through the ``corner``
    package, with contours at the same 2-D probability contents. A :class:`CrossCheck`
    contributes its samples ("HMC") and its Fisher matrix ("Fisher"), centred where the
    Fisher prediction puts the posterior.

    **Sigma convention:** `levels` are 2-D probability contents; ``0.6827`` and ``0.9545``
    are drawn at ``Δχ² = 2.30`` and ``6.18`` (semi-axes 1.515 and 2.486 × sqrt of the
    covariance eigenvalues), not at the 1-D ``Δχ² = 1, 4``. corner's default levels (11.8,
    39.3, 67.5, 86.4 %) are not used; see corner issue #123 and the module docstring.

    **Arguments:**

    - `fishers_or_samples`: a FisherMatrix, a sample dict, a CrossCheck (or DALI samples),
      a list of these, or a dict label -> item (the legend labels, e.g.
      ``{"CMB": F1, "GW": F2, "combined": F1 + F2}``). A singular Fisher matrix is not
      drawn; its legend entry says so.
    - `names`: parameters to show (default: the union, in order of appearance). A Fisher
      matrix without one of them skips those panels; sample sets must contain all of them.
    - `labels`: dict name -> axis label (LaTeX allowed, ``$`` optional) or a list; the
      default is the FisherMatrix labels, else the names.
    - `levels`: 2-D probability contents of the contours, ascending.
    - `colors`: one matplotlib colour per item (default: ``C0, C1, …``).
    - `legend`: ``None`` (a legend when there are several items), ``False``, or a list of
      labels replacing the automatic ones.
    - `fig`: a figure to draw into (empty, or with K × K axes from an earlier call, which
      is overplotted: the axis ranges grow to keep both in view unless `ranges` is given).
    - `bins`, `smooth`, `fill`: histogram bins, Gaussian smoothing (in bins) and filled
      contours for sample sets.
    - `contours`: how sample contours are computed. ``"whitened"`` (default): the 2-D
      histogram is binned and smoothed in coordinates whitened by the samples' own
      covariance and the contours are mapped back, so binning and smoothing broaden every
      direction alike (affine invariant). ``"corner"``: corner's axis-aligned histogram; for
      strongly correlated pairs (thin diagonal ellipses) its bins and smoothing widen the
      contours, by a factor of ~2.5 in Δχ² at correlation 0.97 with 30 bins, which would
      fake a disagreement with the Fisher ellipse.
    - `ranges`: dict name -> (low, high); default: every Fisher fiducial ± `range_sigma` σ
      and the 0.1–99.9 % range of every sample set.

    **Returns:** the matplotlib Figure. Axes are ``fig.axes`` in row-major K × K order;
    Fisher ellipse lines carry the gid ``"fisher-ellipse"``.

    ```python
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> fig = ff.plot.corner({"experiment": F, "with prior": F.with_prior({"a": 0.5})})
    >>> [t.get_text() for t in fig.legends[0].get_texts()]
    ['experiment', 'with prior']
    ```
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    levels = _check_levels(levels)
    if contours not in ("whitened", "corner"):
        raise ValueError(f"`contours` must be 'whitened' or 'corner'; received {contours!r}.")
    items = _normalise(fishers_or_samples)

    # Parameters and labels.
    if names is None:
        seen = []
        for _, kind, payload in items:
            seen += [n for n in _names_of(kind, payload) if n not in seen]
        names = tuple(seen)
    else:
        names = (names,) if isinstance(names, str) else tuple(names)
        known = set()
        for _, kind, payload in items:
            known.update(_names_of(kind, payload))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"`names` lists {unknown}, which no input has; known: {sorted(known)}.")
    K = len(names)
    if K == 0:
        raise ValueError("nothing to plot: no parameter names.")
    for label, kind, payload in items:
        if kind == "samples" and not isinstance(payload, FisherMatrix):
            missing = [n for n in names if n not in payload]
            if missing:
                raise KeyError(
                    f"sample set {label!r} has no samples of {missing}; pass "
                    f"names=[...] to plot a subset."
                )
    axis_labels = {n: n for n in names}
    for _, kind, payload in items:
        if kind == "fisher":
            for n, lab in payload.labels.items():
                if n in axis_labels and axis_labels[n] == n:
                    axis_labels[n] = lab
    if labels is not None:
        if isinstance(labels, Mapping):
            axis_labels.update({k: str(v) for k, v in labels.items() if k in axis_labels})
        else:
            labels = list(labels)
            if len(labels) != K:
                raise ValueError(
                    f"`labels` has {len(labels)} entries for {K} parameters {list(names)}."
                )
            axis_labels = dict(zip(names, map(str, labels), strict=True))

    if colors is None:
        colors = [f"C{i % 10}" for i in range(len(items))]
    else:
        colors = [colors] if isinstance(colors, str) else list(colors)
        if len(colors) < len(items):
            raise ValueError(
                f"`colors` has {len(colors)} entries for {len(items)} items "
                f"{[lab for lab, _, _ in items]}."
            )

    # Ranges.
    lo = {n: math.inf for n in names}
    hi = {n: -math.inf for n in names}
    sigmas, singular = {}, set()
    for idx, (_, kind, payload) in enumerate(items):
        if kind == "fisher":
            try:
                sig = payload.sigma()
            except FisherError:
                # One unconstrained matrix must not stop the plot: it gets a legend entry
                # that says so and no contours.
                singular.add(idx)
                continue
            sigmas[idx] = sig
            fid = payload.fiducial or {n: 0.0 for n in payload.names}
            for n in names:
                if n in sig:
                    lo[n] = min(lo[n], fid[n] - range_sigma * sig[n])
                    hi[n] = max(hi[n], fid[n] + range_sigma * sig[n])
        else:
            for n in names:
                x = np.asarray(payload[n], dtype=np.float64)
                x = x[np.isfinite(x)]
                if x.size:
                    q = np.quantile(x, [0.001, 0.999])
                    pad = 0.05 * (q[1] - q[0])
                    lo[n] = min(lo[n], q[0] - pad)
                    hi[n] = max(hi[n], q[1] + pad)
    if ranges:
        for n, (a, b) in ranges.items():
            if n in lo:
                lo[n], hi[n] = float(a), float(b)
    # Figure with K × K axes (corner's layout).
    factor, lbdim, trdim, whspace = 2.0, 1.0, 0.4, 0.05
    plotdim = factor * K + factor * (K - 1.0) * whspace
    dim = lbdim + plotdim + trdim
    if fig is None:
        fig = plt.figure(figsize=(dim, dim))
    overplot = bool(fig.axes)
    if not overplot:
        fig.subplots(K, K, squeeze=False)
    if len(fig.axes) != K * K:
        raise ValueError(
            f"`fig` has {len(fig.axes)} axes; a corner plot of {K} parameters "
            f"needs {K * K} (or pass an empty figure)."
        )
    axes = np.array(fig.axes).reshape(K, K)
    diag_max = np.zeros(K)
    if overplot and not ranges:  # keep what an earlier call drew in view
        for i, n in enumerate(names):
            a, b = axes[K - 1, i].get_xlim()
            lo[n], hi[n] = min(lo[n], a), max(hi[n], b)
    if overplot:
        diag_max = np.array([axes[i, i].get_ylim()[1] / 1.1 for i in range(K)])
    for n in names:
        if not (math.isfinite(lo[n]) and math.isfinite(hi[n])) or lo[n] >= hi[n]:
            c = 0.0 if not math.isfinite(lo[n]) else lo[n]
            lo[n], hi[n] = c - 1.0, c + 1.0
    rng = [(lo[n], hi[n]) for n in names]
    lb, tr = lbdim / dim, (lbdim + plotdim) / dim
    fig.subplots_adjust(left=lb, bottom=lb, right=tr, top=tr, wspace=whspace, hspace=whspace)

    # Sample sets through corner.
    handles = []
    for idx, (label, kind, payload) in enumerate(items):
        color = colors[idx]
        if kind != "samples":
            continue
        import corner as corner_pkg

        data = np.column_stack([np.asarray(payload[n], dtype=np.float64) for n in names])
        data = data[np.all(np.isfinite(data), axis=1)]
        own = contours == "whitened"
        corner_pkg.corner(
            data,
            fig=fig,
            range=rng,
            bins=bins,
            levels=levels,
            color=color,
            smooth=smooth,
            plot_datapoints=False,
            plot_density=False,
            plot_contours=not own,
            fill_contours=fill and not own,
            no_fill_contours=True,
            hist_kwargs={"density": True, "color": color},
            contour_kwargs={"linewidths": linewidth},
        )
        if own:
            for i in range(K):
                for j in range(i):
                    _whitened_contours(
                        axes[i, j],
                        data[:, j],
                        data[:, i],
                        levels,
                        color,
                        bins,
                        smooth,
                        linewidth,
                        fill,
                    )
        for i in range(K):
            counts, _ = np.histogram(data[:, i], bins=bins, range=rng[i], density=True)
            diag_max[i] = max(diag_max[i], counts.max(initial=0.0))
        handles.append((idx, Line2D([], [], color=color, lw=linewidth, label=label)))

    # Fisher matrices, analytically.
    for idx, (label, kind, payload) in enumerate(items):
        if kind != "fisher":
            continue
        color = colors[idx]
        if idx in singular:
            handles.append(
                (
                    idx,
                    Line2D(
                        [],
                        [],
                        color=color,
                        lw=linewidth,
                        ls=":",
                        label=f"{label} (singular: not drawn)",
                    ),
                )
            )
            continue
        sig = sigmas[idx]
        fid = payload.fiducial or {n: 0.0 for n in payload.names}
        for i, n in enumerate(names):
            if n not in sig:
                continue
            ax = axes[i, i]
            x = np.linspace(*rng[i], 400)
            pdf = np.exp(-0.5 * ((x - fid[n]) / sig[n]) ** 2) / (math.sqrt(2 * math.pi) * sig[n])
            (line,) = ax.plot(x, pdf, color=color, lw=linewidth)
            line.set_gid("fisher-gaussian")
            diag_max[i] = max(diag_max[i], pdf.max())
        for i, yn in enumerate(names):
            for j, xn in enumerate(names[:i]):
                if xn not in sig or yn not in sig:
                    continue
                ax = axes[i, j]
                for k, level in enumerate(levels):
                    verts = payload.ellipse(xn, yn, level).vertices(201)
                    (line,) = ax.plot(
                        verts[:, 0],
                        verts[:, 1],
                        color=color,
                        lw=linewidth,
                        ls=_LINESTYLES[k % len(_LINESTYLES)],
                    )
                    line.set_gid("fisher-ellipse")
        handles.append((idx, Line2D([], [], color=color, lw=linewidth, label=label)))
    handles = [h for _, h in sorted(handles, key=lambda pair: pair[0])]

    # Axes formatting (after corner, which formats only its own calls).
    from matplotlib.ticker import MaxNLocator, NullLocator

    for i in range(K):
        for j in range(K):
            ax = axes[i, j]
            if j > i:
                ax.set_frame_on(False)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ax.set_xlim(rng[j])
            ax.xaxis.set_major_locator(MaxNLocator(4, prune="both"))
            if i == j:
                ax.set_ylim(0, 1.1 * diag_max[i] if diag_max[i] > 0 else 1.0)
                ax.yaxis.set_major_locator(NullLocator())
                ax.set_yticklabels([])
            else:
                ax.set_ylim(rng[i])
                ax.yaxis.set_major_locator(MaxNLocator(4, prune="both"))
            if i < K - 1:
                ax.set_xticklabels([])
                ax.set_xlabel("")
            else:
                ax.set_xlabel(_tex(axis_labels[names[j]]))
                for t in ax.get_xticklabels():
                    t.set_rotation(45)
            if j > 0 or i == 0:
                if i != j:
                    ax.set_yticklabels([])
                ax.set_ylabel("")
            else:
                ax.set_ylabel(_tex(axis_labels[names[i]]))
                for t in ax.get_yticklabels():
                    t.set_rotation(45)

    show = legend if legend is not None else len(handles) > 1
    if show is not False:
        if isinstance(show, list | tuple):
            if len(show) != len(handles):
                raise ValueError(f"`legend` has {len(show)} labels for {len(handles)} items.")
            for h, text in zip(handles, show, strict=True):
                h.set_label(str(text))
        fig.legend(
            handles=handles,
            loc="upper right",
            bbox_to_anchor=(tr, tr),
            frameon=False,
            title=f"contours: {', '.join(f'{lv:.4g}' for lv in levels)} (2-D)" if K > 1 else None,
        )
    return fig


# ---------------------------------------------------------------------------------------
# Single ellipse, σ bars, spectrum
# ---------------------------------------------------------------------------------------
def ellipse(
    F, a, b, ax=None, *, levels=(0.6827, 0.9545), color=None, label=None, fill=False, linewidth=1.5
):
    """The 2-D joint confidence ellipses of parameters `a` and `b` (others marginalised).

    Contours are joint 2-D regions: ``0.6827`` → ``Δχ² = 2.30`` (semi-axes 1.515 ×
    sqrt(eigenvalues of the 2 × 2 covariance)), ``0.9545`` → ``Δχ² = 6.18`` (2.486 ×).

    **Arguments:** `F` a FisherMatrix; `a`, `b` parameter names (x and y); `ax` an axes to
    draw on (default: a new figure); `levels`; `color`; `label` (legend entry, default the
    matrix name); `fill` (shade the regions).

    **Returns:** the Figure.

    ```python
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> fig = ff.plot.ellipse(F, "a", "b")
    >>> fig.axes[0].get_xlabel(), len(fig.axes[0].lines)
    ('a', 3)
    ```
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    if not isinstance(F, FisherMatrix):
        raise TypeError(f"ellipse expects a FisherMatrix; received {quote(F)}.")
    levels = _check_levels(levels)
    if ax is None:
        ax = plt.figure(figsize=(4.5, 4.0)).add_subplot()
    # Axes._get_lines is private but is the only way to advance the axes' own colour cycle.
    color = color or ax._get_lines.get_next_color()  # pyright: ignore[reportAttributeAccessIssue]
    label = label if label is not None else (F.name or "Fisher")
    for k, level in enumerate(levels):
        e = F.ellipse(a, b, level)
        verts = e.vertices(201)
        (line,) = ax.plot(
            verts[:, 0],
            verts[:, 1],
            color=color,
            lw=linewidth,
            ls=_LINESTYLES[k % len(_LINESTYLES)],
            label=f"{label} ({level:.4g}, Δχ² = {e.delta_chi2:.2f})",
        )
        line.set_gid("fisher-ellipse")
        if fill:
            ax.add_patch(Polygon(verts, closed=True, color=color, alpha=0.35 / (k + 1), lw=0))
    e = F.ellipse(a, b, levels[0])
    (center,) = ax.plot(*e.center, marker="+", color=color, ls="none")
    center.set_gid("fisher-center")
    labels = F.labels
    ax.set_xlabel(_tex(labels[a]))
    ax.set_ylabel(_tex(labels[b]))
    ax.legend(fontsize="small", frameon=False)
    ax.autoscale_view()
    return ax.figure


def sigma_bars(fishers, names=None, *, relative=False, log=False, ax=None, colors=None):
    """Bar chart of marginal σ per parameter, one bar per experiment.

    **Arguments:**

    - `fishers`: dict label -> FisherMatrix (or a list, labelled by the matrix names). A
      value may also be a precomputed dict name -> σ (as in ``ff.contributions(...).alone``).
    - `names`: parameters to show (default: the union, in order of appearance).
    - `relative`: plot ``σ/|fiducial|`` instead of σ.
    - `log`: logarithmic y axis (for σ spanning decades).

    A parameter that an experiment does not have gets no bar; one it does not constrain
    (singular matrix) is marked "∞" instead of aborting the chart.

    **Returns:** the Figure; bars are ``ax.containers`` (one per experiment).

    ```python
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"])
    >>> fig = ff.plot.sigma_bars({"alone": F, "with prior": F.with_prior({"a": 0.5})})
    >>> [round(float(b.get_height()), 4) for b in fig.axes[0].containers[0]]
    [0.9129, 0.5774]
    ```
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if isinstance(fishers, FisherMatrix):
        fishers = [fishers]
    if isinstance(fishers, Mapping):
        entries = [(str(k), v) for k, v in fishers.items()]
    elif isinstance(fishers, Sequence) and not isinstance(fishers, str):
        entries = [
            (F.name if isinstance(F, FisherMatrix) and F.name else f"experiment {i + 1}", F)
            for i, F in enumerate(fishers)
        ]
    else:
        raise TypeError(
            f"sigma_bars expects a dict label -> FisherMatrix or a list; received {quote(fishers)}."
        )
    if not entries:
        raise ValueError("sigma_bars received no Fisher matrices.")
    for lab, F in entries:
        if not isinstance(F, FisherMatrix | Mapping):
            raise TypeError(
                f"sigma_bars: {lab!r} is not a FisherMatrix or a dict name -> σ ({quote(F)})."
            )
    if names is None:
        names = []
        for _, F in entries:
            names += [n for n in (F.names if isinstance(F, FisherMatrix) else F) if n not in names]
    names = list(names)
    if ax is None:
        size = (max(4.0, 1.0 + 0.9 * len(names) * len(entries) ** 0.5), 3.5)
        ax = plt.figure(figsize=size).add_subplot()
    width = 0.8 / len(entries)
    x = np.arange(len(names))
    for k, (lab, F) in enumerate(entries):
        if isinstance(F, Mapping):
            sig = {n: float(s) for n, s in F.items()}
        else:
            # Parameters untouched by a degeneracy keep a finite σ; the others show "∞".
            sig = marginal_sigma_or_inf(F)
        heights, where_inf = [], []
        for i, n in enumerate(names):
            s = sig.get(n, math.nan)
            if relative and n in sig:
                fid = (F.fiducial or {}).get(n) if isinstance(F, FisherMatrix) else None
                s = s / abs(fid) if fid else math.nan
            if math.isinf(s):
                where_inf.append(i)
                s = math.nan
            heights.append(s)
        color = colors[k] if colors is not None else f"C{k % 10}"
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, heights, width=width, color=color, label=lab)
        for i in where_inf:
            ax.annotate(
                "∞",
                (pos[i], 0),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                color=color,
            )
    labels = {}
    for _, F in entries:
        for n, lab in F.labels.items() if isinstance(F, FisherMatrix) else ():
            labels.setdefault(n, lab)
    ax.set_xticks(x)
    ax.set_xticklabels([_tex(labels.get(n, n)) for n in names])
    ax.set_ylabel("σ / |fiducial|" if relative else "marginal σ")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize="small", frameon=False)
    if isinstance(ax.figure, Figure):  # a SubFigure has no tight_layout: its parent lays out
        ax.figure.tight_layout()
    return ax.figure


def spectrum(F, *, ax=None):
    """Eigen-spectrum of the Fisher matrix rescaled to unit diagonal, and its eigenvectors.

    The left panel shows the eigenvalues of ``D⁻¹ F D⁻¹`` (``D = sqrt(diag F)``; invariant to
    the parameters' units) on a log axis, with the float64 rank threshold below which the
    matrix counts as singular. The right panel shows the squared components of each
    eigenvector: the weakest directions (left columns) name the parameter combinations the
    data barely constrain.

    **Returns:** the Figure.

    ```python
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import fisherforecast as ff
    >>> fig = ff.plot.spectrum(ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"]))
    >>> len(fig.axes[0].lines[0].get_ydata())
    2
    ```
    """
    import matplotlib.pyplot as plt

    from ._linalg import RANK_RTOL

    if not isinstance(F, FisherMatrix):
        raise TypeError(f"spectrum expects a FisherMatrix; received {quote(F)}.")
    M = F.matrix
    d = np.sqrt(np.diag(M))
    d = np.where(d > 0, d, 1.0)
    w, V = np.linalg.eigh(M / np.outer(d, d))
    P = len(w)
    if ax is None:
        fig, (ax, ax2) = plt.subplots(
            1, 2, figsize=(4 + 0.6 * P, 3.5), gridspec_kw={"width_ratios": [1, 1]}
        )
    else:
        fig, ax2 = ax.figure, None
    floor = RANK_RTOL * P * max(w[-1], 0.0)
    shown = np.where(w > floor, w, floor)
    ax.semilogy(np.arange(P), shown, "o-", color="C0")
    if w[0] < 1e-8 * w[-1]:  # near-singular: show how close to the float64 limit
        ax.axhline(floor, color="C3", ls="--", lw=1, label="float64 rank threshold")
        ax.legend(fontsize="small", frameon=False)
    ax.set_xticks(np.arange(P))
    ax.set_xlabel("eigen-direction (weakest first)")
    ax.set_ylabel("eigenvalue of unit-diagonal F")
    ax.set_title(f"condition number {F.condition_number:.3g}")
    if ax2 is not None:
        im = ax2.imshow(V**2, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax2.set_yticks(np.arange(P))
        ax2.set_yticklabels([_tex(F.labels[n]) for n in F.names])
        ax2.set_xticks(np.arange(P))
        ax2.set_xlabel("eigen-direction (weakest first)")
        ax2.set_title("squared components")
        fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig


# Used by docs and tests: the Δχ² of the default contours.
DEFAULT_DELTA_CHI2 = tuple(delta_chi2_2d(lv) for lv in (0.6827, 0.9545))
