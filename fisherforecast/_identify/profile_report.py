"""The results of a profile likelihood: one parameter, or several."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping

import numpy as np

from .._checks import check_delta_levels
from .._record import Record
from .profile_grid import coarse_message, crossing


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ProfileLikelihood(Record):
    """The profile likelihood of one parameter (made by :func:`profile_likelihood`).

    **Attributes:**

    - `name`; `grid`; `delta`: Δ(−2 ln L) on the grid (NaN where the model or fit failed);
      `converged`: bool per grid point; `steps`: optimiser steps per point.
    - `nuisance`: dict name -> re-optimised values of the other parameters along the grid.
    - `estimate`: the best-fit value ψ̂; `best_fit`: dict of all best-fit values.
    - `deltas`: the Δ(−2 ln L) thresholds of the intervals (`levels` is a deprecated alias);
      `intervals`: dict Δ -> (low, high), ``±inf`` where open; `open`: dict Δ -> (open
      below, open above).
    - `flat`: max Δ < ``FLAT_TOL`` over the grid (structurally non-identifiable);
      `multimodal`: the profile falls below a level again beyond its interval, and
      `other_minimum`: ``(location, Δ)`` of the lowest such point (else ``None``);
      `minima`: every separate local minimum of Δ below the largest threshold, best first,
      as ``(ψ, Δ, {parameter: value})`` (two or more also within one interval: a
      discrete symmetry);
      `identifiable`: closed on both sides at the largest level and not multimodal;
      `verdict`: in words.
    - `fisher_sigma`: marginal Fisher 1σ at the best fit (``inf`` if not identifiable).
    - `data`: ``"asimov"`` (expected −2 ln L under the fiducial) or ``"user"``; `notes`
      (grid clipping, grid-limited endpoints, fit problems).

    The result is read-only (a :class:`Record`).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([1.0, 2.0]))
    >>> prof = ff.profile_likelihood(exp, {"a": 1.0}, "a", deltas=(1.0,))
    >>> prof.deltas, [round(v, 6) for v in prof.intervals[1.0]]   # 1 ± 1/sqrt(5)
    ((1.0,), [0.552786, 1.447214])
    ```
    """

    name: str
    grid: np.ndarray
    delta: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    nuisance: dict
    estimate: float
    best_fit: dict
    deltas: tuple
    intervals: dict
    open: dict
    flat: bool
    multimodal: bool
    other_minimum: tuple | None
    identifiable: bool
    verdict: str
    fisher_sigma: float
    data: str
    notes: list
    _center: int = dataclasses.field(repr=False)
    minima: tuple = ()

    @property
    def levels(self) -> tuple:
        """Deprecated alias of `deltas` (``levels`` means a probability elsewhere)."""
        return self.deltas

    def __repr__(self):
        lo, hi = self.intervals[self.deltas[0]]
        return (
            f"ProfileLikelihood({self.name!r}, estimate={self.estimate:.6g}, "
            f"interval(Δ={self.deltas[0]:g})=({lo:.6g}, {hi:.6g}), verdict={self.verdict!r})"
        )

    def interval(self, level: float = 1.0) -> tuple[float, float]:
        """Likelihood-ratio interval ``{ψ: Δ(ψ) < level}`` around the best fit; ``±inf`` on a
        side where the profile does not reach `level` inside the grid. `level` is a
        Δ(−2 ln L) threshold (1: 68.27 %, 3.84: 95 %), not a probability. Warns when an
        endpoint is limited by the grid spacing."""
        (level,) = check_delta_levels(level, "level")
        lo, _, coarse_lo = crossing(self.grid, self.delta, self._center, self.estimate, level, -1)
        hi, _, coarse_hi = crossing(self.grid, self.delta, self._center, self.estimate, level, +1)
        ends = [
            (level, side, self.grid[j], self.delta[j])
            for j, side in ((coarse_lo, "lower"), (coarse_hi, "upper"))
            if j is not None
        ]
        if ends:
            warnings.warn(coarse_message(self.name, ends), UserWarning, stacklevel=2)
        return lo, hi

    def fisher_interval(self, level: float = 1.0) -> tuple[float, float]:
        """``ψ̂ ± sqrt(level)·σ_Fisher``: what the Fisher matrix predicts for `interval`."""
        (level,) = check_delta_levels(level, "level", probabilities=False)
        half = math.sqrt(level) * self.fisher_sigma
        return self.estimate - half, self.estimate + half

    def to_dict(self) -> dict:
        """Plain-Python view (``inf`` written as the string ``"inf"``, NaN as ``None``)."""

        def num(x):
            x = float(x)
            if math.isnan(x):
                return None
            return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")

        return {
            "name": self.name,
            "grid": [num(g) for g in self.grid],
            "delta": [num(d) for d in self.delta],
            "converged": self.converged.tolist(),
            "nuisance": {k: [num(v) for v in vals] for k, vals in self.nuisance.items()},
            "estimate": num(self.estimate),
            "best_fit": {k: num(v) for k, v in self.best_fit.items()},
            "deltas": list(self.deltas),
            "levels": list(self.deltas),  # deprecated alias of "deltas"
            "intervals": {str(lv): [num(a), num(b)] for lv, (a, b) in self.intervals.items()},
            "open": {str(lv): list(o) for lv, o in self.open.items()},
            "fisher_sigma": num(self.fisher_sigma),
            "fisher_intervals": {
                str(lv): [num(a) for a in self.fisher_interval(lv)] for lv in self.deltas
            },
            "flat": self.flat,
            "multimodal": self.multimodal,
            "other_minimum": None
            if self.other_minimum is None
            else [num(v) for v in self.other_minimum],
            "minima": [
                [num(x), num(d), {k: num(v) for k, v in vals.items()}] for x, d, vals in self.minima
            ],
            "identifiable": self.identifiable,
            "verdict": self.verdict,
            "data": self.data,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A few lines: estimate, LR and Fisher intervals per level, verdict."""
        lines = [
            f"Profile likelihood of {self.name} ({self.data} data, {len(self.grid)} grid "
            f"points {self.grid[0]:.4g} … {self.grid[-1]:.4g}): {self.verdict}",
            f"  best fit {self.estimate:.6g}; Fisher σ {self.fisher_sigma:.4g}",
        ]
        for lv in self.deltas:
            lo, hi = self.intervals[lv]
            flo, fhi = self.fisher_interval(lv)
            lines.append(
                f"  Δ(−2 ln L) = {lv:.3g}: LR interval [{lo:.6g}, {hi:.6g}]   "
                f"Fisher [{flo:.6g}, {fhi:.6g}]"
            )
        bad = int(np.sum(~self.converged))
        if bad:
            lines.append(f"  {bad} of {len(self.grid)} grid points did not converge fully.")
        lines += [f"  Note: {t}" for t in self.notes]
        return "\n".join(lines)

    def plot(self, ax=None):
        """Δ(−2 ln L) against the parameter, with the Fisher parabola, the levels and the LR
        interval. Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        ax.plot(self.grid, self.delta, "o-", color="C0", ms=3, label="profile likelihood")
        if math.isfinite(self.fisher_sigma) and self.fisher_sigma > 0:
            fine = np.linspace(self.grid[0], self.grid[-1], 200)
            ax.plot(
                fine,
                ((fine - self.estimate) / self.fisher_sigma) ** 2,
                "--",
                color="C1",
                label="Fisher (quadratic)",
            )
        for k, lv in enumerate(self.deltas):
            ax.axhline(lv, color="0.5", lw=0.8, ls=":")
            for bound in self.intervals[lv]:
                if math.isfinite(bound):
                    ax.axvline(
                        bound,
                        color=f"C{2 + k}",
                        lw=0.8,
                        label=f"LR interval Δ={lv:.3g}"
                        if bound == self.intervals[lv][0]
                        or not math.isfinite(self.intervals[lv][0])
                        else None,
                    )
        finite = self.delta[np.isfinite(self.delta)]
        top = max(
            1.5 * max(self.deltas),
            float(min(np.max(finite), 4 * max(self.deltas))) if finite.size else 0.0,
        )
        ax.set_ylim(-0.05 * top, top)
        ax.set_xlabel(self.name)
        ax.set_ylabel("Δ(−2 ln L)")
        ax.set_title(f"{self.name}: {self.verdict}", fontsize="medium")
        ax.legend(fontsize="small")
        return ax


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ProfileBatch(Record, Mapping):
    """Profiles of several parameters: a read-only mapping name -> :class:`ProfileLikelihood`.

    Parameters whose profile failed are absent from the mapping and listed in `errors`
    (name -> message), so that one failure does not lose the others.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([-1.0, 0.0, 1.0]))
    >>> batch = ff.profile_likelihood(exp, {"a": 1.0, "b": 2.0}, ["a", "b"], n_grid=7)
    >>> sorted(batch), batch.errors, batch["b"].verdict
    (['a', 'b'], {}, 'identifiable')
    ```
    """

    profiles: dict
    errors: dict = dataclasses.field(default_factory=dict)

    def __getitem__(self, name):
        return self.profiles[name]

    def __iter__(self):
        return iter(self.profiles)

    def __len__(self):
        return len(self.profiles)

    def __repr__(self):
        verdicts = {n: p.verdict for n, p in self.profiles.items()}
        return f"ProfileBatch(verdicts={verdicts}, errors={sorted(self.errors)})"

    def summary(self) -> str:
        """One line per parameter: best fit, 68 % LR and Fisher intervals, verdict."""
        width = max([len(n) for n in list(self) + list(self.errors)] + [9])
        head = (
            f"{'parameter':<{width}}  {'best fit':>10}  {'LR 68% interval':>25}  "
            f"{'Fisher 68% interval':>25}  verdict"
        )
        lines = [head, "-" * len(head)]
        for n, p in self.items():
            lo, hi = p.intervals[p.deltas[0]]
            flo, fhi = p.fisher_interval(p.deltas[0])
            lines.append(
                f"{n:<{width}}  {p.estimate:>10.4g}  "
                f"{f'[{lo:.4g}, {hi:.4g}]':>25}  {f'[{flo:.4g}, {fhi:.4g}]':>25}  "
                f"{p.verdict}"
            )
        for n, msg in self.errors.items():
            lines.append(f"{n:<{width}}  failed: {msg.splitlines()[0]}")
        return "\n".join(lines)

    def plot(self, fig=None):
        """One panel per profiled parameter. Returns the Figure."""
        import matplotlib.pyplot as plt

        n = max(len(self), 1)
        cols = min(n, 3)
        rows = math.ceil(n / cols)
        if fig is None:
            fig = plt.figure(figsize=(4.5 * cols, 3.5 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, p in zip(axes, self.values(), strict=False):
            p.plot(ax=ax)
        for ax in axes[len(self) :]:
            ax.set_visible(False)
        return fig
