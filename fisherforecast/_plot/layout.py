"""Axis layout of ``corner``: data ranges, the K × K grid (corner's geometry), tick and
label formatting, and the legend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._errors import FisherError
from .style import tex

# corner's layout: panel size, left/bottom and top/right margins (inches), gap fraction.
_FACTOR, _LBDIM, _TRDIM, _WHSPACE = 2.0, 1.0, 0.4, 0.05


@dataclass
class Extent:
    """What the data span: per-parameter bounds (``lo``, ``hi``), the marginal σ of every
    drawable Fisher item (by item index) and the indices of the singular ones."""

    lo: dict
    hi: dict
    sigmas: dict
    singular: set


def data_extent(items, names, range_sigma) -> Extent:
    """Every Fisher fiducial ± `range_sigma` σ and the 0.1–99.9 % range of every sample set
    (padded by 5 %). A singular Fisher matrix is recorded, not raised.

    ```python
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[4.0]], ["a"], fiducial={"a": 1.0})  # σ = 0.5
    >>> ext = data_extent([("F", "fisher", F)], ("a",), range_sigma=2.0)
    >>> ext.lo, ext.hi, ext.singular
    ({'a': 0.0}, {'a': 2.0}, set())
    ```
    """
    ext = Extent({n: math.inf for n in names}, {n: -math.inf for n in names}, {}, set())
    for idx, (_, kind, payload) in enumerate(items):
        if kind == "fisher":
            try:
                sig = payload.sigma()
            except FisherError:
                # One unconstrained matrix must not stop the plot: it gets a legend entry
                # that says so and no contours.
                ext.singular.add(idx)
                continue
            ext.sigmas[idx] = sig
            fid = payload.fiducial or {n: 0.0 for n in payload.names}
            for n in names:
                if n in sig:
                    ext.lo[n] = min(ext.lo[n], fid[n] - range_sigma * sig[n])
                    ext.hi[n] = max(ext.hi[n], fid[n] + range_sigma * sig[n])
            continue
        for n in names:
            x = np.asarray(payload[n], dtype=np.float64)
            x = x[np.isfinite(x)]
            if x.size:
                q = np.quantile(x, [0.001, 0.999])
                pad = 0.05 * (q[1] - q[0])
                ext.lo[n] = min(ext.lo[n], q[0] - pad)
                ext.hi[n] = max(ext.hi[n], q[1] + pad)
    return ext


def _dims(K):
    plotdim = _FACTOR * K + _FACTOR * (K - 1.0) * _WHSPACE
    return plotdim, _LBDIM + plotdim + _TRDIM


def figure_axes(fig, K):
    """A K × K grid of axes: a new figure of corner's size, `fig`'s own empty figure filled,
    or `fig`'s existing K × K axes (overplotting). Returns ``(fig, axes, overplot)``."""
    import matplotlib.pyplot as plt

    if fig is None:
        dim = _dims(K)[1]
        fig = plt.figure(figsize=(dim, dim))
    overplot = bool(fig.axes)
    if not overplot:
        fig.subplots(K, K, squeeze=False)
    if len(fig.axes) != K * K:
        raise ValueError(
            f"`fig` has {len(fig.axes)} axes; a corner plot of {K} parameters "
            f"needs {K * K} (or pass an empty figure)."
        )
    return fig, np.array(fig.axes).reshape(K, K), overplot


def axis_ranges(ext, names, axes, overplot, ranges):
    """The ``(low, high)`` of every parameter and the diagonal panels' peak heights so far.

    `ranges` override the data; overplotting widens to what an earlier call drew (unless
    `ranges` is given) and keeps its diagonal heights; degenerate ranges become ±1.

    ```python
    >>> ext = Extent({"a": 0.0, "b": math.inf}, {"a": 2.0, "b": -math.inf}, {}, set())
    >>> rng, diag_max = axis_ranges(ext, ("a", "b"), None, False, {"a": (-1, 1)})
    >>> rng, diag_max.tolist()
    ([(-1.0, 1.0), (-1.0, 1.0)], [0.0, 0.0])
    ```
    """
    lo, hi = dict(ext.lo), dict(ext.hi)
    if ranges:
        for n, (a, b) in ranges.items():
            if n in lo:
                lo[n], hi[n] = float(a), float(b)
    K = len(names)
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
    return [(lo[n], hi[n]) for n in names], diag_max


def adjust_margins(fig, K) -> float:
    """corner's margins and gaps; returns the top/right edge (figure fraction)."""
    plotdim, dim = _dims(K)
    lb, tr = _LBDIM / dim, (_LBDIM + plotdim) / dim
    fig.subplots_adjust(left=lb, bottom=lb, right=tr, top=tr, wspace=_WHSPACE, hspace=_WHSPACE)
    return tr


def _format_panel(ax, i, j, K, rng, diag_max):
    from matplotlib.ticker import MaxNLocator, NullLocator

    ax.set_xlim(rng[j])
    ax.xaxis.set_major_locator(MaxNLocator(4, prune="both"))
    if i == j:
        ax.set_ylim(0, 1.1 * diag_max[i] if diag_max[i] > 0 else 1.0)
        ax.yaxis.set_major_locator(NullLocator())
        ax.set_yticklabels([])
    else:
        ax.set_ylim(rng[i])
        ax.yaxis.set_major_locator(MaxNLocator(4, prune="both"))


def format_axes(axes, names, axis_labels, rng, diag_max) -> None:
    """Limits, ticks and labels of every panel (after corner, which formats only its own
    calls): the upper triangle is blank; labels on the bottom row and the left column."""
    K = len(names)
    for i in range(K):
        for j in range(K):
            ax = axes[i, j]
            if j > i:
                ax.set_frame_on(False)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            _format_panel(ax, i, j, K, rng, diag_max)
            if i < K - 1:
                ax.set_xticklabels([])
                ax.set_xlabel("")
            else:
                ax.set_xlabel(tex(axis_labels[names[j]]))
                for t in ax.get_xticklabels():
                    t.set_rotation(45)
            if j > 0 or i == 0:
                if i != j:
                    ax.set_yticklabels([])
                ax.set_ylabel("")
            else:
                ax.set_ylabel(tex(axis_labels[names[i]]))
                for t in ax.get_yticklabels():
                    t.set_rotation(45)


def add_legend(fig, handles, legend, levels, K, tr) -> None:
    """The figure legend: automatic when there are several items, off for ``False``, or
    with the labels `legend` (one per item); titled with the contour levels."""
    show = legend if legend is not None else len(handles) > 1
    if show is False:
        return
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
