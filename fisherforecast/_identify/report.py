"""The identifiability report."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._errors import InputError, ParameterError
from .._matrix import FisherMatrix
from .._plot.style import distinct_color
from .._record import Record
from .factor import gamma


def finite_or_str(x):
    """A float for JSON: NaN -> ``None``, ±inf -> ``"inf"`` / ``"-inf"``."""
    if math.isnan(x):
        return None
    return float(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class IdentifiabilityReport(Record):
    """Structural and practical identifiability of a model's parameters at a fiducial point.

    Made by :func:`identifiability`; see there for the method. All attributes are plain
    numpy / Python values.

    **Attributes:**

    - `names`, `n_params`, `fiducial`, `source` (``"experiment"``: structural and practical;
      ``"fisher"``: practical only, the rank comes from the matrix itself).
    - `parameterisation`: name -> ``"ln"`` (coefficients are in ``ln|θ|``) or ``"linear"``
      (parameters whose fiducial is 0: coefficients are in ``θ/scale``); `scales`: the
      reference scales given with ``scales=`` (a linear parameter without one is read in
      its own units, scale 1).
    - `rank`: generic local rank (largest over the fiducial and the random points);
      `rank_at_fiducial`; `ranks`: list of ranks, fiducial first; `random_points`.
    - `singular_values`: of the column-normalised sensitivity matrix, descending, at the
      fiducial; `rtol`: the rank tolerance.
    - `null_directions`: list of dicts name -> coefficient in ln-parameters (unit vectors),
      a basis of the generic (structural) null space; `null_descriptions`: the null space in
      words, one sentence per group of directions sharing parameters ("only a·b is
      identifiable"; the combinations named are orthogonal to every direction of the group).
    - `local_null_directions`, `local_null_descriptions`: extra null directions at the
      fiducial only, when it is a special point (`rank_at_fiducial` < `rank`); the parameters
      in them stay structurally identifiable but have an infinite CRB here.
    - `structurally_identifiable`, `practically_identifiable`, `identifiable`: dicts name ->
      bool (`identifiable` is the practical verdict, which implies the structural one). The
      practical verdict is ``None`` (n/a) for a parameter whose fiducial is 0 and that has
      no entry in `scales`: an absolute CRB has no size to compare with a relative threshold.
    - `eigenvalues` (ascending) and `eigenvectors` (columns, P rows, ln-coordinates) of the
      log-parameter Fisher matrix, with the linear parameters without a scale marginalised
      out (their rows are 0, and there is one eigenvalue per other parameter), so that these
      numbers do not depend on their units; `condition_number`; `sloppiness` (decades).
    - `weakest_direction`: dict name -> coefficient of the eigenvector of the smallest
      eigenvalue; `sloppy_directions` (and `sloppy_descriptions`, in words): the other
      eigen-directions whose 1σ width in ln-space exceeds `crb_threshold`; the combinations
      called "better determined" are orthogonal to the null space and to every weaker
      direction, each with its own 1σ width.
    - `relative_crb`: name -> σ(θ)/|θ| (σ(θ)/scale for a linear parameter with a scale, NaN
      for one without); `absolute_crb`: name -> σ(θ) in the parameter's units;
      `crb_threshold`.
    - `coordinate_identifiability`: name -> ‖column ⟂ other columns‖ / ‖column‖.
    - `collinearity`: γ of all parameters; `identifiable_subsets`: list of (names, γ), the
      largest subsets with γ below `collinearity_threshold`; `subset_search`.
    - `fisher`: the :class:`FisherMatrix` (linear parameters) analysed; `method`: how the
      factor was obtained; `notes`: caveats.
    - `fisher_path`: name -> (Δ at −2σ, Δ at +2σ) / 4 along the Fisher-predicted profile
      path (1 for a quadratic likelihood; experiments only); `profile_recommended`: name ->
      why its Fisher verdict is unreliable (run :func:`profile_likelihood` for it).
    - `path`: ``"dense"``, or ``"operator"`` for the matrix-free report of a large model
      (see :func:`identifiability`, ``path=``). There `names` are element names
      (``w[0]``, ...); `rank` is the rank at the fiducial (``None`` when the search for null
      directions stopped early), `ranks` has that one entry and `random_points` is empty;
      `singular_values` holds only the largest, the smallest off the null space and the null
      ones; `eigenvalues`/`eigenvectors` hold the null directions and the ``n_eigen``
      weakest others; the direction dicts (`null_directions`, `sloppy_directions`,
      `weakest_direction`) keep their largest loadings only; `relative_crb`,
      `absolute_crb` cover the ``crb_params`` only; `coordinate_identifiability`,
      `identifiable_subsets` and `fisher` are ``None`` and `fisher_path` is empty (skipped:
      they need the P × P matrix or grow with P; the summary and `notes` say so).

    The report is read-only (a :class:`Record`); :meth:`to_dict` is JSON-ready.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> rep = ff.identifiability(exp, {"a": 2.0, "b": 3.0, "k": 0.5})
    >>> rep.identifiable, rep.to_dict()["collinearity"]
    ({'a': False, 'b': False, 'k': True}, 'inf')
    ```
    """

    names: tuple
    n_params: int
    source: str
    fiducial: dict
    parameterisation: dict
    scales: dict
    rank: int | None
    rank_at_fiducial: int | None
    ranks: list
    random_points: list
    singular_values: np.ndarray
    rtol: float
    null_directions: list
    null_descriptions: list
    local_null_directions: list
    local_null_descriptions: list
    structurally_identifiable: dict
    practically_identifiable: dict
    identifiable: dict
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    condition_number: float
    sloppiness: float
    weakest_direction: dict
    sloppy_directions: list
    sloppy_descriptions: list
    relative_crb: dict
    absolute_crb: dict
    crb_threshold: float
    coordinate_identifiability: dict | None
    collinearity: float
    collinearity_threshold: float
    identifiable_subsets: list | None
    subset_search: str
    fisher: FisherMatrix | None
    method: str
    notes: list
    # Internal: the normalised factor and its column norms, the coordinate scales, the
    # structural null basis (ln-coordinates), the number of zero eigenvalues, the labels.
    _Rn: np.ndarray | None = dataclasses.field(repr=False)
    _norms: np.ndarray = dataclasses.field(repr=False)
    _scale: np.ndarray = dataclasses.field(repr=False)
    _null_basis: np.ndarray = dataclasses.field(repr=False)
    _n_zero: int = dataclasses.field(repr=False)
    _labels: dict = dataclasses.field(repr=False)
    fisher_path: dict = dataclasses.field(default_factory=dict)
    profile_recommended: dict = dataclasses.field(default_factory=dict)
    path: str = "dense"

    def __repr__(self):
        bad = [n for n, ok in self.identifiable.items() if ok is False]
        unknown = [n for n, ok in self.identifiable.items() if ok is None]
        more = f", undetermined={unknown}" if unknown else ""
        return (
            f"IdentifiabilityReport(rank={self.rank}/{self.n_params}, "
            f"condition_number={self.condition_number:.3g}, not_identifiable={bad}{more})"
        )

    # ----- queries --------------------------------------------------------------------
    def collinearity_index(self, names=None) -> float:
        """Brun–Reichert–Künsch collinearity index γ of a parameter subset (default: all).

        ``γ_K = 1/sqrt(λ_min(S̃_Kᵀ S̃_K))`` with the columns of the sensitivity matrix
        normalised to unit length; ``inf`` for an exact (structural) degeneracy. It does not
        depend on the parameters' units or on the noise level.
        """
        if names is None:
            idx = list(range(self.n_params))
        else:
            if isinstance(names, str):
                names = [names]
            names = list(names)
            unknown = [n for n in names if n not in self.names]
            if unknown or not names or len(set(names)) != len(names):
                raise ParameterError(
                    f"collinearity_index(names) needs distinct names from {list(self.names)}; "
                    f"received {names!r}."
                )
            idx = [self.names.index(n) for n in names]
        if self._Rn is None:
            raise InputError(
                "collinearity_index(names) needs the sensitivity factor, which the matrix-free "
                f"report (P = {self.n_params}) does not form; `collinearity` holds γ of all "
                "parameters. For a subset, run ff.identifiability(..., params=[...]) on it."
            )
        return gamma(self._Rn, idx, self.rtol)

    # ----- output ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-Python view of the report (``inf`` written as the string ``"inf"``, NaN as
        ``None``)."""

        def fmap(d):
            return {k: finite_or_str(v) for k, v in d.items()}

        return {
            "names": list(self.names),
            "n_params": self.n_params,
            "source": self.source,
            "fiducial": dict(self.fiducial),
            "parameterisation": dict(self.parameterisation),
            "scales": dict(self.scales),
            "rank": self.rank,
            "rank_at_fiducial": self.rank_at_fiducial,
            "ranks": list(self.ranks),
            "random_points": [dict(p) for p in self.random_points],
            "rtol": self.rtol,
            "singular_values": self.singular_values.tolist(),
            "null_directions": [dict(d) for d in self.null_directions],
            "null_descriptions": list(self.null_descriptions),
            "local_null_directions": [dict(d) for d in self.local_null_directions],
            "local_null_descriptions": list(self.local_null_descriptions),
            "structurally_identifiable": dict(self.structurally_identifiable),
            "practically_identifiable": dict(self.practically_identifiable),
            "identifiable": dict(self.identifiable),
            "eigenvalues": self.eigenvalues.tolist(),
            "eigenvectors": self.eigenvectors.tolist(),
            "condition_number": finite_or_str(self.condition_number),
            "sloppiness": finite_or_str(self.sloppiness),
            "weakest_direction": dict(self.weakest_direction),
            "sloppy_directions": [dict(d) for d in self.sloppy_directions],
            "sloppy_descriptions": list(self.sloppy_descriptions),
            "relative_crb": fmap(self.relative_crb),
            "absolute_crb": fmap(self.absolute_crb),
            "crb_threshold": self.crb_threshold,
            "coordinate_identifiability": (
                None
                if self.coordinate_identifiability is None
                else dict(self.coordinate_identifiability)
            ),
            "collinearity": finite_or_str(self.collinearity),
            "collinearity_threshold": self.collinearity_threshold,
            "identifiable_subsets": (
                None
                if self.identifiable_subsets is None
                else [{"names": list(n), "collinearity": g} for n, g in self.identifiable_subsets]
            ),
            "subset_search": self.subset_search,
            "method": self.method,
            "notes": list(self.notes),
            "fisher_path": {
                k: [finite_or_str(a), finite_or_str(b)] for k, (a, b) in self.fisher_path.items()
            },
            "profile_recommended": dict(self.profile_recommended),
            "path": self.path,
        }

    def summary(self) -> str:
        """A readable report: verdicts, spectrum, collinearity and a per-parameter table."""
        if self.path == "operator":
            return self._summary_operator()
        P = self.n_params
        kind = (
            "structural + practical"
            if self.source == "experiment"
            else "practical only: a FisherMatrix carries no model"
        )
        lines = [f"Identifiability report: {P} parameters ({kind})"]
        if self.source == "experiment":
            pts = ", ".join(str(r) for r in self.ranks)
            lines.append(
                f"Structural (local) rank: {self.rank} of {P}  [fiducial and "
                f"{len(self.ranks) - 1} random points: {pts}; rtol {self.rtol:.0e}]"
            )
        else:
            lines.append(
                f"Numerical rank of the Fisher matrix: {self.rank} of {P}  [rtol {self.rtol:.0e}]"
            )
        if self.null_descriptions:
            lines.append("Not identifiable (null directions of the sensitivity matrix):")
            lines += [f"  - {t}" for t in self.null_descriptions]
        else:
            lines.append("No structural degeneracy: every parameter is locally identifiable.")
        if self.local_null_descriptions:
            lines.append(
                f"Extra degeneracy at this fiducial only (rank {self.rank_at_fiducial} here):"
            )
            lines += [f"  - {t}" for t in self.local_null_descriptions]
        ev = self.eigenvalues
        out = [n for n, ok in self.practically_identifiable.items() if ok is None]
        aside = f" ({', '.join(out)} marginalised: fiducial 0, no scale)" if out else ""
        if ev.size:
            lines.append(
                f"Log-parameter FIM{aside}: eigenvalues {ev[-1]:.3g} … {ev[0]:.3g}; condition "
                f"number {self.condition_number:.3g}; spans {self.sloppiness:.3g} decades"
            )
        else:
            lines.append(
                "Log-parameter FIM: no parameter has a scale (every fiducial is 0; give scales=...)"
            )
        if self.sloppy_descriptions:
            lines.append(
                f"Poorly determined directions (1σ width in ln θ > {self.crb_threshold:g}):"
            )
            lines += [f"  - {t}" for t in self.sloppy_descriptions]
        weak = ", ".join(
            f"{c:+.2f}·{self._labels[n]}"
            for n, c in self.weakest_direction.items()
            if abs(c) >= 0.05
        )
        if weak:
            lines.append(f"Weakest direction: {weak}")
        lines.append(
            f"Collinearity index (all parameters): {self.collinearity:.3g} "
            f"(identifiable subsets need < {self.collinearity_threshold:g})"
        )
        if self.identifiable_subsets:
            size = len(self.identifiable_subsets[0][0])
            shown = "; ".join(
                "{" + ", ".join(n) + f"}} γ={g:.3g}" for n, g in self.identifiable_subsets[:5]
            )
            more = (
                f" (+{len(self.identifiable_subsets) - 5} more)"
                if len(self.identifiable_subsets) > 5
                else ""
            )
            lines.append(
                f"Largest identifiable subsets ({size} of {P}, {self.subset_search}): {shown}{more}"
            )
        width = max([len(n) for n in self.names] + [9])
        head = (
            f"{'parameter':<{width}}  {'fiducial':>10}  {'rel. CRB':>9}  "
            f"{'coord. id.':>10}  {'structural':>10}  {'practical':>9}"
        )
        lines += ["", head, "-" * len(head)]
        verdict = {True: "yes", False: "NO", None: "n/a"}
        coord = self.coordinate_identifiability or {}
        for n in self.names:
            crb = self.relative_crb[n]
            crb = "n/a" if math.isnan(crb) else f"{crb:.3g}"
            lines.append(
                f"{n:<{width}}  {self.fiducial[n]:>10.4g}  {crb:>9}  "
                f"{coord.get(n, math.nan):>10.3g}  "
                f"{verdict[self.structurally_identifiable[n]]:>10}  "
                f"{verdict[self.practically_identifiable[n]]:>9}"
            )
        lines.append(
            f"(practical: structural and relative CRB ≤ {self.crb_threshold:g}; a "
            "parameter with fiducial 0 needs scales= for a relative CRB)"
        )
        lines += [f"Note: {t}" for t in self.notes]
        if self.profile_recommended:
            lines.append(
                "Fisher verdict unreliable (the likelihood is not quadratic out to 2σ) for: "
                + "; ".join(f"{n} ({why})" for n, why in self.profile_recommended.items())
            )
            lines.append(
                "  -> run ff.profile_likelihood(experiment, fiducial, "
                f"{list(self.profile_recommended)}) before trusting their intervals."
            )
        return "\n".join(lines)

    def _summary_operator(self) -> str:
        """The summary of a matrix-free report (``path == "operator"``)."""
        P = self.n_params
        lines = [
            f"Identifiability report: {P} parameters (matrix-free: structural at the "
            "fiducial + practical)",
            (
                f"Rank at the fiducial: {self.rank} of {P}  [Lanczos on the unit-diagonal "
                f"log-FIM; rtol {self.rtol:.0e}; no random points]"
                if self.rank is not None
                else f"Rank at the fiducial: at most {P - self._n_zero} of {P} (search for null "
                "directions stopped)"
            ),
        ]
        if self.null_descriptions:
            lines.append("Not identifiable (null directions; largest loadings):")
            lines += [f"  - {t}" for t in self.null_descriptions]
        else:
            lines.append("No degeneracy at the fiducial: every parameter is locally identifiable.")
        ev = self.eigenvalues
        n_free = ev.size - self._n_zero
        if n_free:
            where = "the null space" if self.rank is not None else "the null directions found"
            lines.append(
                f"Log-parameter FIM: the {n_free} smallest eigenvalues off {where} "
                f"{ev[self._n_zero]:.3g} … {ev[-1]:.3g}; condition number "
                f"{self.condition_number:.3g}; spans {self.sloppiness:.3g} decades"
            )
        if self.sloppy_descriptions:
            lines.append(
                f"Poorly determined directions (1σ width in ln θ > {self.crb_threshold:g}):"
            )
            lines += [f"  - {t}" for t in self.sloppy_descriptions]
        big = {n: c for n, c in self.weakest_direction.items() if abs(c) >= 0.05}
        weak = ", ".join(f"{c:+.2f}·{self._labels[n]}" for n, c in big.items())
        if weak:
            lines.append(f"Weakest direction (largest loadings): {weak}")
        lines.append(
            f"Collinearity index (all parameters): {self.collinearity:.3g} "
            f"(identifiable subsets need < {self.collinearity_threshold:g})"
        )
        lines.append(
            "Skipped on the matrix-free path (for large P): identifiable-subset search, "
            "coordinate identifiability, random points, profile/likelihood-path checks."
        )
        if self.relative_crb:
            width = max([len(n) for n in self.relative_crb] + [9])
            head = f"{'parameter':<{width}}  {'fiducial':>10}  {'rel. CRB':>9}  {'practical':>9}"
            lines += ["", head, "-" * len(head)]
            verdict = {True: "yes", False: "NO", None: "n/a"}
            for n, crb in self.relative_crb.items():
                crb = "n/a" if math.isnan(crb) else f"{crb:.3g}"
                lines.append(
                    f"{n:<{width}}  {self.fiducial[n]:>10.4g}  {crb:>9}  "
                    f"{verdict[self.practically_identifiable[n]]:>9}"
                )
            rest = P - len(self.relative_crb)
            if rest:
                lines.append(f"({rest} other parameters: CRB not computed; crb_params=...)")
        lines += [f"Note: {t}" for t in self.notes]
        return "\n".join(lines)

    def plot(self, fig=None):
        """Eigenvalue spectrum of the log-FIM and the composition of each eigenvector.

        Left: eigenvalues on a log axis (structural zeros drawn at the bottom, marked ×).
        Right: for each eigen-direction (weakest first), the share ``vᵢ²`` of each ln-parameter.
        Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        if fig is None:
            fig = plt.figure(figsize=(10, 4))
        ax_spec, ax_comp = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
        ev = np.asarray(self.eigenvalues)
        null = self._n_zero
        positive = ev[null:] if null else ev
        top = float(np.max(ev)) if ev.size and np.max(ev) > 0 else 1.0
        # Structural zeros are drawn a decade below the smallest positive eigenvalue (or at
        # top·rtol², whichever is lower): a tiny positive eigenvalue keeps its own height.
        tiny = ev[null:][ev[null:] > 0]
        floor = top * self.rtol**2
        if tiny.size:
            floor = min(floor, float(tiny.min()) / 10.0)
        shown = np.where(np.arange(len(ev)) < null, floor, np.maximum(ev, floor))
        for k, value in enumerate(shown):
            style = {"color": "C3", "ls": ":"} if k < null else {"color": "C0", "ls": "-"}
            ax_spec.plot([0.2, 0.8], [value, value], lw=2, **style)
            if k < null:
                ax_spec.plot([0.5], [value], marker="x", color="C3")
        ax_spec.set_yscale("log")
        ax_spec.set_xlim(0, 1)
        ax_spec.set_xticks([])
        ax_spec.set_ylabel("eigenvalue of the log-parameter FIM")
        if null and positive.size > 1 and positive[0] > 0:
            title = (
                f"{null} zero eigenvalue{'s' if null > 1 else ''}; the rest spans "
                f"{math.log10(positive[-1] / positive[0]):.3g} decades"
            )
        elif null:
            title = f"{null} zero eigenvalue{'s' if null > 1 else ''}"
        else:
            title = f"spectrum: {self.sloppiness:.3g} decades"
        ax_spec.set_title(title, fontsize="medium")
        V = np.asarray(self.eigenvectors) ** 2
        peak = np.max(V, axis=1, initial=0.0)
        shown_names = {self.names[i] for i in np.argsort(-peak)[:12] if peak[i] >= 0.01}
        bottom = np.zeros(V.shape[1])
        x = np.arange(V.shape[1])
        for i, n in enumerate(self.names):
            if self.parameterisation[n] == "linear" and n not in self.scales:
                continue  # marginalised out of the spectrum
            if self.path == "operator" and n not in shown_names:
                continue  # matrix-free (large P): the 12 largest shares only
            ax_comp.bar(
                x,
                V[i],
                bottom=bottom,
                label=self._labels[n],
                color=distinct_color(i, len(self.names)),
            )
            bottom += V[i]
        ax_comp.set_xticks(
            x, ["0 (null)" if k < null else f"{v:.2g}" for k, v in enumerate(ev)], rotation=45
        )
        ax_comp.set_xlabel("eigenvalue (eigen-direction, weakest first)")
        ax_comp.set_ylabel("share of each parameter (v²)")
        ax_comp.set_ylim(0, 1)
        if ax_comp.patches:
            ax_comp.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return fig


def spectrum_fields(eigenvalues, eigenvectors, condition, weakest, sloppy, texts, n_zero) -> dict:
    """The spectrum fields of an :class:`IdentifiabilityReport`, as the dense and the
    matrix-free analyses both fill them (sloppiness = log10 of the condition number)."""
    return dict(
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        condition_number=condition,
        sloppiness=math.log10(condition) if 0 < condition < math.inf else condition,
        weakest_direction=weakest,
        sloppy_directions=sloppy,
        sloppy_descriptions=texts,
        _n_zero=n_zero,
    )
