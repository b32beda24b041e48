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
from typing import Any

import numpy as np

from ._ellipse import delta_chi2_2d
from ._errors import quote
from ._matrix import FisherMatrix, marginal_sigma_or_inf
from ._plot import contours as _contours
from ._plot import inputs as _inputs
from ._plot import layout as _layout
from ._plot.style import linestyle, sorted_levels, tex

__all__ = ["corner", "ellipse", "sigma_bars", "spectrum"]


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
    from matplotlib.lines import Line2D

    levels = sorted_levels(levels)
    if contours not in ("whitened", "corner"):
        raise ValueError(f"`contours` must be 'whitened' or 'corner'; received {contours!r}.")
    items = _inputs.normalise_items(fishers_or_samples)
    names = _inputs.resolve_names(items, names)
    axis_labels = _inputs.resolve_labels(items, names, labels)
    colors = _inputs.resolve_colors(items, colors)
    K = len(names)

    ext = _layout.data_extent(items, names, range_sigma)
    fig, axes, overplot = _layout.figure_axes(fig, K)
    rng, diag_max = _layout.axis_ranges(ext, names, axes, overplot, ranges)
    tr = _layout.adjust_margins(fig, K)

    # Sample sets first (through corner), then the Fisher matrices analytically; the
    # legend keeps the order of the inputs.
    handles = []
    style: dict[str, Any] = dict(
        levels=levels, bins=bins, smooth=smooth, linewidth=linewidth, fill=fill
    )
    for idx, (label, kind, payload) in enumerate(items):
        if kind == "samples":
            style.update(color=colors[idx], contours=contours)
            _contours.draw_samples(fig, axes, payload, names, rng, diag_max, style)
            handles.append((idx, Line2D([], [], color=colors[idx], lw=linewidth, label=label)))
    for idx, (label, kind, payload) in enumerate(items):
        if kind != "fisher":
            continue
        if idx in ext.singular:
            label = f"{label} (singular: not drawn)"
        else:
            sig = ext.sigmas[idx]
            _contours.draw_fisher(
                axes, payload, sig, names, rng, diag_max, levels, colors[idx], linewidth
            )
        ls = ":" if idx in ext.singular else "-"
        handles.append((idx, Line2D([], [], color=colors[idx], lw=linewidth, ls=ls, label=label)))
    handles = [h for _, h in sorted(handles, key=lambda pair: pair[0])]

    _layout.format_axes(axes, names, axis_labels, rng, diag_max)
    _layout.add_legend(fig, handles, legend, levels, K, tr)
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
    levels = sorted_levels(levels)
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
            ls=linestyle(k),
            label=f"{label} ({level:.4g}, Δχ² = {e.delta_chi2:.2f})",
        )
        line.set_gid("fisher-ellipse")
        if fill:
            ax.add_patch(Polygon(verts, closed=True, color=color, alpha=0.35 / (k + 1), lw=0))
    e = F.ellipse(a, b, levels[0])
    (center,) = ax.plot(*e.center, marker="+", color=color, ls="none")
    center.set_gid("fisher-center")
    labels = F.labels
    ax.set_xlabel(tex(labels[a]))
    ax.set_ylabel(tex(labels[b]))
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
    ax.set_xticklabels([tex(labels.get(n, n)) for n in names])
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
        ax2.set_yticklabels([tex(F.labels[n]) for n in F.names])
        ax2.set_xticks(np.arange(P))
        ax2.set_xlabel("eigen-direction (weakest first)")
        ax2.set_title("squared components")
        fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig


# Used by docs and tests: the Δχ² of the default contours.
DEFAULT_DELTA_CHI2 = tuple(delta_chi2_2d(lv) for lv in (0.6827, 0.9545))
