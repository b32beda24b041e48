"""The result of :func:`~fisherforecast._design.optimise.optimize_design`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import FisherError
from .._matrix import FisherMatrix
from .._plot.style import distinct_color
from .._record import Record
from .._x64 import float64
from .criteria import Criterion
from .objective import natural_batch
from .problem import DesignProblem, fmt_design

__all__ = ["DesignResult"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DesignResult(Record):
    """The result of :func:`optimize_design`.

    Attributes:
        design: the optimal design (the experiment's design pytree, numpy float64; a list
            of designs for a joint optimisation of several experiments).
        criterion_value: the criterion at the optimum, as defined (``log det F`` for "D",
            ``-tr F⁻¹`` for "A", ``λ_min`` for "E", the condition number for "ME", the
            callable's value otherwise), prior included.
        criterion: a description of the criterion; `maximize`: its direction.
        experiment: the optimised :class:`ff.Experiment` (a list for a joint design).
        fisher: the Fisher matrix of the optimised experiment(s) alone (no prior).
        total_fisher: ``fisher`` plus the prior (what the criterion was evaluated on,
            before any ``relative`` scaling).
        initial_design, initial_value, initial_fisher, initial_total_fisher: the same for
            the starting design (``initial_value`` NaN and the matrices ``None`` when the
            initial design cannot be evaluated; ``initial_error`` then says why).
        initial_error: ``None``, or why the initial design's figures are unavailable (e.g.
            a noise model that is invalid there); the optimum is returned all the same.
        gain: the improvement of the criterion over the initial design, in the criterion's
            own units and direction (positive is better); NaN when the initial figure is
            unavailable.
        efficiency: the initial design's efficiency relative to the optimum, for "D"
            (``(det F_init / det F_opt)^(1/P)``) and "A" (``tr F_opt⁻¹ / tr F_init⁻¹``);
            ``None`` for other criteria, or when the initial figure is unavailable.
        all_starts: the criterion value reached by every start of the batched multistart
            (before polishing; NaN for a start that failed); start 0 is the initial design
            (with coinciding entries moved apart by a tiny jitter, see `n_starts`).
        converged: per start, whether BFGS met its tolerance.
        n_polished: how many distinct end points were polished.
        joint: whether several experiments were optimised together.

    Methods: :meth:`sigma_table`, :meth:`n_at_best`, ``summary()``, ``plot()``,
    ``to_dict()``. Two measurements of a line ``a + b t`` in ``[0, 10]``: the D-optimal
    design puts them at the ends, ``F = [[2, 10], [10, 100]]``, ``log det F = ln 100``; the
    initial ``t = (2, 3)`` has ``det F = 1``, an efficiency of ``(1/100)^(1/2)``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([2.0, 3.0]))
    >>> res = ff.optimize_design(exp, {"a": 1.0, "b": 0.5}, bounds=(0.0, 10.0), n_starts=2)
    >>> sorted(round(float(t), 4) for t in res.design)
    [0.0, 10.0]
    >>> round(res.criterion_value, 6), round(res.initial_value, 6), round(res.efficiency, 6)
    (4.60517, 0.0, 0.1)
    >>> {k: (round(s0, 4), round(s1, 4)) for k, (s0, s1) in res.sigma_table().items()}
    {'a': (3.6056, 1.0), 'b': (1.4142, 0.1414)}
    ```
    """

    design: Any
    criterion_value: float
    criterion: str
    maximize: bool
    experiment: Any
    fisher: FisherMatrix
    total_fisher: FisherMatrix
    initial_design: Any
    initial_value: float
    initial_fisher: FisherMatrix | None
    initial_total_fisher: FisherMatrix | None
    initial_error: str | None = None
    gain: float
    efficiency: float | None
    all_starts: np.ndarray
    converged: np.ndarray
    n_polished: int
    joint: bool = False
    _crit: Criterion = dataclasses.field(repr=False)
    _problem: DesignProblem = dataclasses.field(repr=False)
    _x: np.ndarray = dataclasses.field(repr=False)

    @property
    def n_starts(self) -> int:
        return len(self.all_starts)

    def n_at_best(self, rtol: float = 1e-6) -> int:
        """How many starts ended within `rtol` (relative) of the returned optimum.

        The returned optimum is polished after the batched starts, which gains a little on
        every start (more than `rtol` for an ODE model solved to ~1e-8): the starts are
        then compared with the best start, provided polishing moved it by less than
        ``1e-3`` (relative), i.e. the starts reached the optimum's basin.
        """
        v = np.asarray(self.all_starts)
        ok = np.isfinite(v)
        ref = self.criterion_value
        if np.any(ok):
            best = float(np.max(v[ok]) if self.maximize else np.min(v[ok]))
            if abs(best - ref) <= 1e-3 * max(abs(ref), 1.0):
                ref = best
        tol = rtol * max(abs(ref), 1.0)
        if self.maximize:
            return int(np.sum(ok & (v >= ref - tol)))
        return int(np.sum(ok & (v <= ref + tol)))

    def sigma_table(self) -> dict:
        """Marginal σ before and after: ``{name: (initial, optimal)}`` (prior included;
        the initial σ is NaN when the initial design could not be evaluated)."""
        after = _safe_sigma(self.total_fisher)
        if self.initial_total_fisher is None:  # the initial design could not be evaluated
            return {n: (math.nan, after.get(n, math.inf)) for n in self.total_fisher.names}
        before = _safe_sigma(self.initial_total_fisher)
        return {
            n: (before.get(n, math.inf), after.get(n, math.inf)) for n in self.total_fisher.names
        }

    def summary(self) -> str:
        """Criterion before/after, the design, and a σ table before/after."""
        lines = [
            f"Optimal design: {self.criterion}",
            f"  {self.n_starts} starts (batched BFGS), {int(np.sum(self.converged))} "
            f"converged, {self.n_at_best()} reached the optimum; {self.n_polished} polished",
        ]
        if self.initial_error is None:
            lines.append(
                f"  criterion: initial {self.initial_value:.6g} -> optimal "
                f"{self.criterion_value:.6g} (gain {self.gain:+.6g})"
            )
        else:
            lines.append(
                f"  criterion: optimal {self.criterion_value:.6g}; initial design unavailable "
                f"({self.initial_error})"
            )
        if self.efficiency is not None:
            lines.append(f"  efficiency of the initial design: {self.efficiency:.4g}")
        designs = self.design if self.joint else [self.design]
        initial = self.initial_design if self.joint else [self.initial_design]
        exps = self.experiment if self.joint else [self.experiment]
        for exp, d0, d1 in zip(exps, initial, designs, strict=True):
            label = f"experiment {exp.name!r}" if exp.name else "design"
            lines.append(f"  {label}:")
            lines.append(f"    initial: {fmt_design(d0)}")
            lines.append(f"    optimal: {fmt_design(d1)}")
        table = self.sigma_table()
        width = max([len(n) for n in table] + [9])
        lines.append(
            f"  {'parameter':<{width}}  {'sigma initial':>13}  {'sigma optimal':>13}  {'ratio':>7}"
        )
        for n, (a, b) in table.items():
            ratio = b / a if a > 0 and math.isfinite(a) else math.nan
            lines.append(f"  {n:<{width}}  {a:>13.5g}  {b:>13.5g}  {ratio:>7.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain-Python view of the result."""

        def tolist(tree):
            return jax.tree_util.tree_map(lambda v: np.asarray(v).tolist(), tree)

        return {
            "criterion": self.criterion,
            "maximize": self.maximize,
            "criterion_value": self.criterion_value,
            "initial_value": self.initial_value,
            "initial_error": self.initial_error,
            "gain": self.gain,
            "efficiency": self.efficiency,
            "design": tolist(self.design),
            "initial_design": tolist(self.initial_design),
            "all_starts": np.asarray(self.all_starts).tolist(),
            "converged": np.asarray(self.converged).tolist(),
            "sigma": {n: list(v) for n, v in self.sigma_table().items()},
            "fisher": self.fisher.to_dict(),
        }

    def __repr__(self):
        return (
            f"DesignResult(criterion={self.criterion!r}, criterion_value="
            f"{self.criterion_value:.6g}, gain={self.gain:+.4g}, starts={self.n_starts})"
        )

    def plot(self, n_grid: int = 200, max_curves: int | None = None):
        """Plot the design.

        For a single experiment with a 1-D design array: (left) the model curve at the
        fiducial over the bounds, with the initial and optimal measurement points; (middle)
        the criterion along the design space: the criterion when one measurement point
        moves to ``t`` and the others stay at the optimum, one curve per distinct point (at
        a coordinate-wise optimum each curve peaks at its own point); (right) the value
        reached by each start of the multistart. For other designs only the last panel.

        **Returns:** the matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        one_d = (
            not self.joint
            and isinstance(self.design, np.ndarray)
            and self.design.ndim == 1
            and np.isfinite(self._problem.arrays.low).all()
        )
        times = [] if one_d else _time_rows(self)
        ncols = 3 if one_d else (2 if times else 1)
        fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.8), squeeze=False)
        axes = axes[0]
        if one_d:
            self._plot_curve(axes[0], n_grid)
            self._plot_profiles(axes[1], n_grid, max_curves)
        elif times:
            _plot_time_rows(axes[0], times)
        ax = axes[-1]
        values = np.sort(np.asarray(self.all_starts, dtype=float))
        if self.maximize:
            values = values[::-1]
        ax.plot(
            np.arange(1, values.size + 1), values, "o", ms=3, color="C0", label="end of each start"
        )
        ax.axhline(self.criterion_value, color="C3", lw=1, label="returned optimum")
        if math.isfinite(self.initial_value):
            ax.axhline(self.initial_value, color="0.5", ls="--", lw=1, label="initial design")
        ax.set_xlabel("start (sorted)")
        ax.set_ylabel(f"criterion ({self._crit.short})")
        ax.set_title("multistart")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def _plot_curve(self, ax, n_grid):
        arrays = self._problem.arrays
        low, high = float(np.min(arrays.low)), float(np.max(arrays.high))
        grid = np.linspace(low, high, n_grid)
        exp = self.experiment
        try:
            with float64():
                fid = arrays.fiducial
                curve = np.asarray(exp.model(fid, jnp.asarray(grid)))
                y0 = np.asarray(exp.model(fid, jnp.asarray(self.initial_design)))
                y1 = np.asarray(exp.model(fid, jnp.asarray(self.design)))
        except Exception:  # a model that cannot take a grid: no curve panel
            ax.text(
                0.5, 0.5, "model cannot be evaluated on a grid", ha="center", transform=ax.transAxes
            )
            return
        curve = curve.reshape(n_grid, -1)
        y0 = y0.reshape(len(self.initial_design), -1)
        y1 = y1.reshape(len(self.design), -1)
        for j in range(curve.shape[1]):
            ax.plot(
                grid,
                curve[:, j],
                color=f"C{j}",
                lw=1.2,
                label="model at fiducial" if j == 0 else None,
            )
            ax.plot(
                self.initial_design,
                y0[:, j],
                "s",
                mfc="none",
                color="0.4",
                ms=6,
                label="initial" if j == 0 else None,
            )
            ax.plot(
                self.design, y1[:, j], "o", color="C3", ms=5, label="optimal" if j == 0 else None
            )
        ax.set_xlabel("design variable (e.g. time)")
        ax.set_ylabel("model output")
        ax.set_title("measurement points")
        ax.legend(fontsize=7)

    def _plot_profiles(self, ax, n_grid, max_curves):
        spec, arrays = self._problem.spec, self._problem.arrays
        low, high = float(np.min(arrays.low)), float(np.max(arrays.high))
        grid = np.linspace(low, high, n_grid)
        x = np.asarray(self._x, dtype=float)
        distinct = []
        for i, v in enumerate(x):
            if all(abs(v - x[j]) > 1e-6 * (high - low) for j in distinct):
                distinct.append(i)
        if max_curves is not None:
            distinct = distinct[:max_curves]
        xs = np.repeat(x[None, :], n_grid * len(distinct), axis=0)
        for k, i in enumerate(distinct):
            xs[k * n_grid : (k + 1) * n_grid, i] = grid
        with float64():
            values = np.asarray(natural_batch(jnp.asarray(xs), arrays, spec))
        values = values.reshape(len(distinct), n_grid)
        for k, i in enumerate(distinct):
            color = distinct_color(k, len(distinct))
            ax.plot(grid, values[k], lw=1, color=color, label=f"move point {i}")
            ax.plot([x[i]], [self.criterion_value], "o", color=color, ms=4)
        ax.set_xlabel("position of one measurement point")
        ax.set_ylabel(f"criterion ({self._crit.short})")
        ax.set_title("criterion along the design space")
        finite = values[np.isfinite(values)]
        if finite.size:
            lo = np.percentile(finite, 5)
            span = self.criterion_value - lo
            if np.isfinite(span) and span > 0 and self.maximize:
                ax.set_ylim(lo - 0.1 * span, self.criterion_value + 0.1 * span)
        ax.legend(fontsize=7)


def _time_rows(res) -> list:
    """(label, initial, optimal) for every 1-D float design array of every experiment
    (a joint design, or a dict design's entries): the sampling times to draw."""
    designs = res.design if res.joint else [res.design]
    initial = res.initial_design if res.joint else [res.initial_design]
    exps = res.experiment if res.joint else [res.experiment]
    rows = []
    for k, (exp, d0, d1) in enumerate(zip(exps, initial, designs, strict=True)):
        name = exp.name or f"experiment {k}"
        leaves0 = jax.tree_util.tree_leaves_with_path(d0)
        leaves1 = jax.tree_util.tree_leaves(d1)
        for (path, a0), a1 in zip(leaves0, leaves1, strict=True):
            a0, a1 = np.asarray(a0), np.asarray(a1)
            if a1.ndim == 1 and a1.dtype.kind == "f":
                suffix = jax.tree_util.keystr(path)
                rows.append((name + suffix, a0, a1))
    return rows


def _plot_time_rows(ax, rows):
    for i, (_, a0, a1) in enumerate(rows):
        ax.plot(
            a0,
            np.full(a0.shape, i + 0.15),
            "s",
            mfc="none",
            color="0.4",
            ms=5,
            label="initial" if i == 0 else None,
        )
        ax.plot(
            a1,
            np.full(a1.shape, i - 0.15),
            "o",
            color="C3",
            ms=5,
            label="optimal" if i == 0 else None,
        )
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.set_xlabel("design value (e.g. sampling time)")
    ax.set_title("sampling times")
    ax.legend(fontsize=7)


def _safe_sigma(F):
    try:
        return F.sigma()
    except FisherError:
        return {n: math.inf for n in F.names}
