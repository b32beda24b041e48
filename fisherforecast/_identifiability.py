"""Identifiability: which parameters, and which combinations of them, can the data determine?

Everything here works on the *log-parameter sensitivity matrix whitened by the noise model*,

    S = L⁻¹ J D,    J = ∂μ/∂θ (exact, from :func:`ff.jacobian`),  C = L Lᵀ,  D = diag(|θ|),

so that column ``i`` is ``∂μ/∂ln θᵢ`` in units of the noise and ``SᵀS`` is the Fisher matrix
with respect to ``ln θ`` (the "log-FIM"). For Poisson counts ``L⁻¹ = diag(λ^-1/2)``; for PSD
noise the real and imaginary parts are stacked with weights ``(4Δf/S_n)^1/2``. For noise whose
covariance depends on the parameters, and for a bare :class:`FisherMatrix`, ``S`` is replaced by
a square root of the Fisher matrix (``R`` with ``RᵀR = F``): every quantity below depends on
``S`` only through ``SᵀS``, so the results are the same; only the floor of numerical accuracy
moves from ~1e-16 to ~1e-8 (relative singular values).

All decisions use scale-free quantities (VALIDATION.md case 12): singular values of ``S`` with
unit-normalised columns, relative Cramér–Rao bounds ``σ(θᵢ)/|θᵢ|`` and the Brun–Reichert–Künsch
collinearity index. Raw eigenvalues of the Fisher matrix in natural units are never thresholded:
they change with the units and can hide a parameter whose fiducial value is tiny.

Thresholds (module constants, each overridable per call; see ``docs/identifiability.md``):

* ``RANK_RTOL = 1e-6``: a singular value of the column-normalised ``S`` below ``rtol`` times
  the largest one counts as zero (structural degeneracy). Exact degeneracies sit at ~1e-16
  (whitened Jacobian) or ~1e-8 (square root of F, or an ODE solved at rtol ~1e-8); the
  weakest *practical* directions of real models sit at 1e-2 to 1e-4.
* ``CRB_THRESHOLD = 0.5``: a parameter is practically identifiable when its relative CRB is at
  most 0.5. Above it the Gaussian 95 % interval ``θ ± 1.96 σ`` contains zero, i.e. the data do
  not even fix the sign or the order of magnitude.
* ``COLLINEARITY_THRESHOLD = 20``: Brun, Reichert & Künsch (2001) call a parameter subset
  identifiable when ``γ < 10…15``; 20 is the common looser choice (a 1/20 relative change of one
  sensitivity can be compensated by the others).
* ``NULL_COMPONENT_TOL = 1e-3``: a parameter takes part in a null direction when its
  coefficient in the unit null vector (ln-coordinates) is at least this.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from fractions import Fraction
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import FisherError, quote
from ._experiment import Experiment
from ._fisher import (
    ParameterError,
    _as_experiments,
    _check_finite,
    _check_mode,
    _fisher_parts,
    _split,
    check_fiducial,
    check_names,
)
from ._matrix import FisherMatrix
from ._noise import Gaussian
from ._x64 import float64

#: Relative singular-value tolerance of the column-normalised sensitivity matrix.
RANK_RTOL = 1e-6
#: Largest relative Cramér–Rao bound σ(θ)/|θ| of a practically identifiable parameter.
CRB_THRESHOLD = 0.5
#: Largest collinearity index γ of an identifiable parameter subset.
COLLINEARITY_THRESHOLD = 20.0
#: Smallest coefficient (unit null vector, ln-coordinates) that puts a parameter in it.
NULL_COMPONENT_TOL = 1e-3
#: Up to this many parameters the identifiable-subset search is exhaustive; greedy beyond.
EXHAUSTIVE_MAX = 12
#: Agreement required between SᵀS of the whitened sensitivities and the engine's Fisher matrix.
_WHITEN_CHECK_RTOL = 1e-9


# ---------------------------------------------------------------------------------------
# Whitened sensitivities: pure, jitted once per model and output shape
# ---------------------------------------------------------------------------------------
def _whiten(noise, J, params, design, mean):
    """``L⁻¹ J`` for the noise models whose metric has a known square root, else ``None``."""
    if isinstance(noise, Gaussian) and noise.parameter_dependent:
        return None  # the covariance term is not a data-space metric: use the Fisher root
    return noise.whiten(J, params, design, mean)


@partial(jax.jit, static_argnames=("names", "mode"))
def _sensitivity_parts(experiments, fiducial, names, mode):
    theta, to_params = _split(fiducial, names)
    params = to_params(theta)
    out = []
    for exp in experiments:
        F, mean, J, checks = _fisher_parts(exp, fiducial, names, mode)
        S = _whiten(exp.noise, J, params, exp.design, mean)
        out.append((F, mean, J, checks, S))
    return out


class _Factor(NamedTuple):
    """``Rn`` (P × P): the ln-parameter sensitivities with unit-norm columns (``Rnᵀ Rn`` is the
    log-FIM rescaled to unit diagonal); ``norms``: the column norms ``sqrt(F_log,ii)``."""

    Rn: np.ndarray
    norms: np.ndarray
    fisher: np.ndarray
    method: str


def _normalise_columns(R_log):
    norms = np.linalg.norm(R_log, axis=0)
    return R_log / np.where(norms > 0, norms, 1.0), norms


def _factor_from_fisher(F, scale):
    """Square-root factor of a Fisher matrix (linear parameters) in ln-coordinates."""
    F_log = F * np.outer(scale, scale)
    norms = np.sqrt(np.clip(np.diag(F_log), 0.0, None))
    safe = np.where(norms > 0, norms, 1.0)
    unit = F_log / np.outer(safe, safe)
    w, V = np.linalg.eigh(0.5 * (unit + unit.T))
    Rn = np.sqrt(np.clip(w, 0.0, None))[:, None] * V.T
    return _Factor(Rn, norms, F, "square root of the Fisher matrix")


def _fisher_parts_checked(experiments, fid64, names, mode):
    """Fisher matrix (summed), model means and whitened sensitivities (or None) of each
    experiment, checked for NaN/inf. Call under float64. Shared with the profiles, so that
    both analyses of one model compile its Jacobian once."""
    parts = _sensitivity_parts(tuple(experiments), fid64, names, mode)
    F_total = 0.0
    means, blocks = [], []
    for exp, (F, mean, J, checks, S) in zip(experiments, parts, strict=True):
        _check_finite(exp, mean, J, jax.device_get(checks), names)
        F_total = F_total + np.asarray(F, dtype=np.float64)
        means.append(np.asarray(mean))
        blocks.append(None if S is None else np.asarray(S, dtype=np.float64))
    if not np.all(np.isfinite(F_total)):
        raise FisherError("The Fisher matrix has NaN/inf entries although the model and its "
                          "derivatives are finite: the noise weights overflowed.")
    return F_total, means, blocks


def _factor_at(experiments, fid64, names, mode, scale):
    F_total, _, blocks = _fisher_parts_checked(experiments, fid64, names, mode)
    P = len(names)
    if any(b is None for b in blocks) or not all(np.all(np.isfinite(b)) for b in blocks):
        return _factor_from_fisher(F_total, scale)
    S_log = np.concatenate(blocks, axis=0) * scale
    R = np.linalg.qr(S_log, mode="r")
    if R.shape[0] < P:
        R = np.vstack([R, np.zeros((P - R.shape[0], P))])
    # The whitening must reproduce the engine's Fisher matrix (the one definition of the
    # information); if it does not (a noise model we do not know), use the matrix itself.
    G = R.T @ R
    F_log = F_total * np.outer(scale, scale)
    d = np.sqrt(np.clip(np.diag(F_log), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    if np.max(np.abs(G - F_log) / np.outer(d, d), initial=0.0) > _WHITEN_CHECK_RTOL:
        return _factor_from_fisher(F_total, scale)
    Rn, norms = _normalise_columns(R)
    return _Factor(Rn, norms, F_total, "whitened sensitivities")


# ---------------------------------------------------------------------------------------
# Linear algebra on the normalised factor
# ---------------------------------------------------------------------------------------
def _rank(singular_values, rtol):
    s = np.asarray(singular_values)
    if s.size == 0 or not s[0] > 0:
        return 0
    return int(np.sum(s > rtol * s[0]))


def _gamma(Rn, idx, rtol):
    """Collinearity index of the columns `idx` (unit norm): 1/σ_min, inf when degenerate."""
    sub = Rn[:, list(idx)]
    if np.any(np.linalg.norm(sub, axis=0) == 0):
        return math.inf
    s = np.linalg.svd(sub, compute_uv=False)
    if s[-1] <= rtol * s[0]:
        return math.inf
    return float(1.0 / s[-1])


def _coordinate_identifiability(Rn):
    """‖part of column i orthogonal to the other columns‖ / ‖column i‖ (Wang & Hao 2025)."""
    P = Rn.shape[1]
    out = np.zeros(P)
    for i in range(P):
        col = Rn[:, i]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        others = np.delete(Rn, i, axis=1)
        if others.shape[1] == 0:
            out[i] = 1.0
            continue
        coef, *_ = np.linalg.lstsq(others, col, rcond=None)
        out[i] = np.linalg.norm(col - others @ coef) / norm
    return out


def _rref(rows, tol=1e-12):
    """Reduced row-echelon form with full pivoting: a sparse, readable basis of a subspace."""
    A = np.array(rows, dtype=np.float64)
    r = A.shape[0]
    used = []
    for k in range(r):
        sub = np.abs(A[k:, :])
        sub[:, used] = 0.0
        i, j = np.unravel_index(np.argmax(sub), sub.shape)
        if sub[i, j] <= tol:
            break
        i += k
        A[[k, i]] = A[[i, k]]
        A[k] /= A[k, j]
        for m in range(r):
            if m != k:
                A[m] -= A[m, j] * A[k]
        used.append(j)
    return A


def _unit_direction(vec, first_positive=False):
    """Unit vector with a canonical sign: the largest coefficient positive, or (for null
    directions, so that they read "ln a − ln b") the first significant one."""
    vec = np.asarray(vec, dtype=np.float64)
    vec = vec / np.linalg.norm(vec)
    if first_positive:
        lead = vec[np.nonzero(np.abs(vec) >= NULL_COMPONENT_TOL)[0][0]]
    else:
        lead = vec[np.argmax(np.abs(vec))]
    return -vec if lead < 0 else vec


def _format_power(name, exponent):
    frac = Fraction(exponent).limit_denominator(6)
    if abs(float(frac) - exponent) > 1e-3 * max(1.0, abs(exponent)):
        return f"{name}^{exponent:.3g}"
    if frac == 1:
        return name
    if frac.denominator == 1:
        return f"{name}^{frac.numerator}"
    return f"{name}^({frac.numerator}/{frac.denominator})"


def _integer_exponents(exponents):
    """Scale simple rational exponents to integers: {a: 1, b: 1/2} -> {a: 2, b: 1}."""
    fracs = {n: Fraction(e).limit_denominator(6) for n, e in exponents.items()}
    if any(abs(float(f) - e) > 1e-3 * max(1.0, abs(e)) for f, e in
           zip(fracs.values(), exponents.values(), strict=True)):
        return exponents
    lcm = math.lcm(*(f.denominator for f in fracs.values()))
    return {n: float(f * lcm) for n, f in fracs.items()}


def _monomial(exponents):
    """Readable product of powers, e.g. {'a': 1, 'b': -1} -> 'a/b'."""
    num = [_format_power(n, e) for n, e in exponents.items() if e > 0]
    den = [_format_power(n, -e) for n, e in exponents.items() if e < 0]
    text = "·".join(num) if num else "1"
    if den:
        text += "/" + (den[0] if len(den) == 1 else "(" + "·".join(den) + ")")
    return text


def describe_null_direction(coefficients: Mapping[str, float], log: Mapping[str, bool],
                            width: float | None = None) -> str:
    """Words for a null direction ``{name: coefficient}`` in ln-parameters.

    Moving along the direction ``t·v`` (``ln θᵢ += t vᵢ``) leaves the model output unchanged,
    so only the products of powers ``∏ θᵢ^mᵢ`` with ``m·v = 0`` are identifiable.

    ```python
    >>> describe_null_direction({"a": 0.7071, "b": -0.7071}, {"a": True, "b": True})
    'ln a − ln b is not identifiable: only a·b is identifiable'
    ```
    """
    items = list(coefficients.items())
    if len(items) == 1:
        (name, _), = items
        return f"{name} has no effect on the output: it is not identifiable at all"
    big = max(abs(c) for _, c in items)
    rel = {n: c / big for n, c in items}

    def term(n, c, first):
        coord = f"ln {n}" if log[n] else f"d{n}"
        mag = "" if abs(abs(c) - 1) < 5e-3 else f"{abs(c):.3g}·"
        sign = ("" if c >= 0 else "−") if first else (" + " if c >= 0 else " − ")
        return f"{sign}{mag}{coord}"

    text = "".join(term(n, c, i == 0) for i, (n, c) in enumerate(rel.items()))
    if width is not None:
        verb = f"is poorly determined (1σ width {width:.3g} in ln-units)"
        better = "is much better determined"
    else:
        verb, better = "is not identifiable", "is identifiable"
    if not all(log[n] for n, _ in items):
        return f"{text} {verb}"
    # The anchor is the first parameter with (nearly) the largest coefficient: ties between
    # equal coefficients then resolve in the order the parameters were given.
    anchor = next(n for n, c in rel.items() if abs(c) > 0.999)
    combos = []
    for n, c in rel.items():
        if n == anchor:
            continue
        # ln(anchor^p · n^q) is invariant when p·v_anchor + q·v_n = 0: (p, q) ∝ (v_n, −v_a),
        # scaled so that the larger exponent is +1 (a·b, a/b, V/K^0.947, a·b^0.089).
        exps = {m: e for m, e in ((anchor, c), (n, -rel[anchor]))}
        lead = max(exps.values(), key=abs)
        exps = {m: exps[m] / lead for m in rel if m in exps}
        combos.append(_monomial(_integer_exponents(exps)))
    if width is not None:
        return f"{text} {verb}: {', '.join(combos)} {better}"
    if len(combos) == 1:
        return f"{text} {verb}: only {combos[0]} {better}"
    names = ", ".join(rel)
    return (f"{text} {verb}: among {names} only {', '.join(combos[:-1])} and "
            f"{combos[-1]} are identifiable")


def _subset_search(Rn, names, threshold, rtol):
    """Largest parameter subsets with collinearity index below `threshold`.

    γ can only grow when a parameter is added (eigenvalue interlacing), so the exhaustive
    search walks down from the full set and stops at the first size that has a subset.
    """
    P = len(names)
    if P <= EXHAUSTIVE_MAX:
        for size in range(P, 0, -1):
            found = []
            for idx in itertools.combinations(range(P), size):
                g = _gamma(Rn, idx, rtol)
                if g < threshold:
                    found.append((tuple(names[i] for i in idx), g))
            if found:
                found.sort(key=lambda item: float(f"{item[1]:.10g}"))
                return found, "exhaustive"
        return [], "exhaustive"
    # Greedy backward elimination: drop the parameter whose removal lowers γ the most.
    current = list(range(P))
    g = _gamma(Rn, current, rtol)
    while g >= threshold and len(current) > 1:
        trials = [(_gamma(Rn, [j for j in current if j != i], rtol), i) for i in current]
        g, drop = min(trials)
        current.remove(drop)
    if g >= threshold:
        return [], "greedy"
    return [(tuple(names[i] for i in current), g)], "greedy"


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------
def _finite_or_str(x):
    return float(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


class IdentifiabilityReport:
    """Structural and practical identifiability of a model's parameters at a fiducial point.

    Made by :func:`identifiability`; see there for the method. All attributes are plain
    numpy / Python values.

    **Attributes:**

    - `names`, `n_params`, `fiducial`, `source` (``"experiment"``: structural and practical;
      ``"fisher"``: practical only, the rank comes from the matrix itself).
    - `parameterisation`: name -> ``"ln"`` (coefficients are in ``ln|θ|``) or ``"linear"``
      (parameters whose fiducial is 0).
    - `rank`: generic local rank (largest over the fiducial and the random points);
      `rank_at_fiducial`; `ranks`: list of ranks, fiducial first; `random_points`.
    - `singular_values`: of the column-normalised sensitivity matrix, descending, at the
      fiducial; `rtol`: the rank tolerance.
    - `null_directions`: list of dicts name -> coefficient in ln-parameters (unit vectors);
      `null_descriptions`: the same in words ("only a·b is identifiable").
    - `structurally_identifiable`, `practically_identifiable`, `identifiable`: dicts name ->
      bool (`identifiable` is the practical verdict, which implies the structural one).
    - `eigenvalues` (ascending) and `eigenvectors` (columns, ln-coordinates) of the
      log-parameter Fisher matrix; `condition_number`; `sloppiness` (decades spanned).
    - `weakest_direction`: dict name -> coefficient of the eigenvector of the smallest
      eigenvalue; `sloppy_directions` (and `sloppy_descriptions`, in words): the other
      eigen-directions whose 1σ width in ln-space exceeds `crb_threshold`.
    - `relative_crb`: name -> σ(θ)/|θ| (σ(θ) for linear parameters); `crb_threshold`.
    - `coordinate_identifiability`: name -> ‖column ⟂ other columns‖ / ‖column‖.
    - `collinearity`: γ of all parameters; `identifiable_subsets`: list of (names, γ), the
      largest subsets with γ below `collinearity_threshold`; `subset_search`.
    - `fisher`: the :class:`FisherMatrix` (linear parameters) analysed; `notes`: caveats.
    """

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("IdentifiabilityReport is read-only.")

    def __repr__(self):
        bad = [n for n, ok in self.identifiable.items() if not ok]
        return (f"IdentifiabilityReport(rank={self.rank}/{self.n_params}, "
                f"condition_number={self.condition_number:.3g}, not_identifiable={bad})")

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
        return _gamma(self._Rn, idx, self.rtol)

    # ----- output ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-Python view of the report (``inf`` written as the string ``"inf"``)."""
        def fmap(d):
            return {k: _finite_or_str(v) for k, v in d.items()}

        return {
            "names": list(self.names), "n_params": self.n_params, "source": self.source,
            "fiducial": dict(self.fiducial), "parameterisation": dict(self.parameterisation),
            "rank": self.rank, "rank_at_fiducial": self.rank_at_fiducial,
            "ranks": list(self.ranks), "random_points": [dict(p) for p in self.random_points],
            "rtol": self.rtol,
            "singular_values": self.singular_values.tolist(),
            "null_directions": [dict(d) for d in self.null_directions],
            "null_descriptions": list(self.null_descriptions),
            "structurally_identifiable": dict(self.structurally_identifiable),
            "practically_identifiable": dict(self.practically_identifiable),
            "identifiable": dict(self.identifiable),
            "eigenvalues": self.eigenvalues.tolist(),
            "eigenvectors": self.eigenvectors.tolist(),
            "condition_number": _finite_or_str(self.condition_number),
            "sloppiness": _finite_or_str(self.sloppiness),
            "weakest_direction": dict(self.weakest_direction),
            "sloppy_directions": [dict(d) for d in self.sloppy_directions],
            "sloppy_descriptions": list(self.sloppy_descriptions),
            "relative_crb": fmap(self.relative_crb), "crb_threshold": self.crb_threshold,
            "coordinate_identifiability": dict(self.coordinate_identifiability),
            "collinearity": _finite_or_str(self.collinearity),
            "collinearity_threshold": self.collinearity_threshold,
            "identifiable_subsets": [{"names": list(n), "collinearity": g}
                                     for n, g in self.identifiable_subsets],
            "subset_search": self.subset_search,
            "method": self.method, "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A readable report: verdicts, spectrum, collinearity and a per-parameter table."""
        P = self.n_params
        kind = ("structural + practical" if self.source == "experiment"
                else "practical only: a FisherMatrix carries no model")
        lines = [f"Identifiability report: {P} parameters ({kind})"]
        if self.source == "experiment":
            pts = ", ".join(str(r) for r in self.ranks)
            lines.append(f"Structural (local) rank: {self.rank} of {P}  [fiducial and "
                         f"{len(self.ranks) - 1} random points: {pts}; rtol {self.rtol:.0e}]")
        else:
            lines.append(f"Numerical rank of the Fisher matrix: {self.rank} of {P}  "
                         f"[rtol {self.rtol:.0e}]")
        if self.null_descriptions:
            lines.append("Not identifiable (null directions of the sensitivity matrix):")
            lines += [f"  - {t}" for t in self.null_descriptions]
        else:
            lines.append("No structural degeneracy: every parameter is locally identifiable.")
        ev = self.eigenvalues
        lines.append(
            f"Log-parameter FIM: eigenvalues {ev[-1]:.3g} … {ev[0]:.3g}; condition number "
            f"{self.condition_number:.3g}; spans {self.sloppiness:.3g} decades")
        if self.sloppy_descriptions:
            lines.append(f"Poorly determined directions (1σ width in ln θ > "
                         f"{self.crb_threshold:g}):")
            lines += [f"  - {t}" for t in self.sloppy_descriptions]
        weak = ", ".join(f"{c:+.2f}·ln {n}" for n, c in self.weakest_direction.items()
                         if abs(c) >= 0.05)
        lines.append(f"Weakest direction: {weak}")
        lines.append(f"Collinearity index (all parameters): {self.collinearity:.3g} "
                     f"(identifiable subsets need < {self.collinearity_threshold:g})")
        if self.identifiable_subsets:
            size = len(self.identifiable_subsets[0][0])
            shown = "; ".join("{" + ", ".join(n) + f"}} γ={g:.3g}"
                              for n, g in self.identifiable_subsets[:5])
            more = (f" (+{len(self.identifiable_subsets) - 5} more)"
                    if len(self.identifiable_subsets) > 5 else "")
            lines.append(f"Largest identifiable subsets ({size} of {P}, "
                         f"{self.subset_search}): {shown}{more}")
        width = max([len(n) for n in self.names] + [9])
        head = (f"{'parameter':<{width}}  {'fiducial':>10}  {'rel. CRB':>9}  "
                f"{'coord. id.':>10}  {'structural':>10}  {'practical':>9}")
        lines += ["", head, "-" * len(head)]
        for n in self.names:
            crb = self.relative_crb[n]
            lines.append(
                f"{n:<{width}}  {self.fiducial[n]:>10.4g}  {crb:>9.3g}  "
                f"{self.coordinate_identifiability[n]:>10.3g}  "
                f"{'yes' if self.structurally_identifiable[n] else 'NO':>10}  "
                f"{'yes' if self.practically_identifiable[n] else 'NO':>9}")
        lines.append(f"(practical: structural and relative CRB ≤ {self.crb_threshold:g}; "
                     "CRB of a 'linear' parameter is absolute)")
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
        null = len(self.null_directions)
        positive = ev[null:] if null else ev
        top = float(np.max(ev)) if ev.size and np.max(ev) > 0 else 1.0
        floor = top * self.rtol**2
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
            title = (f"{null} structural zero{'s' if null > 1 else ''}; the rest spans "
                     f"{math.log10(positive[-1] / positive[0]):.3g} decades")
        elif null:
            title = f"{null} structural zero{'s' if null > 1 else ''}"
        else:
            title = f"spectrum: {self.sloppiness:.3g} decades"
        ax_spec.set_title(title, fontsize="medium")
        V = np.asarray(self.eigenvectors) ** 2
        bottom = np.zeros(V.shape[1])
        x = np.arange(V.shape[1])
        for i, n in enumerate(self.names):
            ax_comp.bar(x, V[i], bottom=bottom, label=f"ln {n}"
                        if self.parameterisation[n] == "ln" else n, color=f"C{i % 10}")
            bottom += V[i]
        ax_comp.set_xticks(x, ["0 (null)" if k < null else f"{v:.2g}" for k, v in enumerate(ev)],
                           rotation=45)
        ax_comp.set_xlabel("eigenvalue (eigen-direction, weakest first)")
        ax_comp.set_ylabel("share of each parameter (v²)")
        ax_comp.set_ylim(0, 1)
        ax_comp.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------
def _check_options(n_random, rtol, crb_threshold, collinearity_threshold, spread):
    if isinstance(n_random, bool) or not isinstance(n_random, int | np.integer) or n_random < 0:
        raise ValueError(f"`n_random` must be a non-negative integer; received {n_random!r}.")
    for label, value, lo, hi in (("rtol", rtol, 0.0, 1.0), ("spread", spread, 0.0, math.inf),
                                 ("crb_threshold", crb_threshold, 0.0, math.inf),
                                 ("collinearity_threshold", collinearity_threshold, 1.0,
                                  math.inf)):
        ok = isinstance(value, int | float | np.floating) and lo < float(value) < hi
        if not ok:
            raise ValueError(f"`{label}` must be a number in ({lo:g}, {hi:g}); received "
                             f"{value!r}.")


def _analyse(*, names, fiducial, scale, factor, ranks, rank, random_points, rtol,
             crb_threshold, collinearity_threshold, source, notes):
    Rn, norms = factor.Rn, factor.norms
    P = len(names)
    log = {n: fiducial[n] != 0 for n in names}
    parameterisation = {n: "ln" if log[n] else "linear" for n in names}
    _, s, Vt = np.linalg.svd(Rn)
    rank_fid = _rank(s, rtol)
    n_null = P - rank
    safe = np.where(norms > 0, norms, 1.0)

    # Null directions in ln-coordinates: S̃ ṽ = 0 ⇔ S_log (ṽ / norms) = 0.
    null_dirs, texts = [], []
    U_null = np.zeros((P, 0))
    if n_null:
        basis = (Vt[P - n_null:] / safe).T
        U_null, _ = np.linalg.qr(basis)
        for row in _rref(U_null.T):
            if not np.any(row):
                continue
            vec = _unit_direction(row, first_positive=True)
            coeffs = {n: float(c) for n, c in zip(names, vec, strict=True)
                      if abs(c) >= NULL_COMPONENT_TOL}
            null_dirs.append(coeffs)
            texts.append(describe_null_direction(coeffs, log))
    involved = set().union(*null_dirs) if null_dirs else set()
    structural = {n: n not in involved for n in names}

    # Spectrum of the log-FIM (eigenvalues ascending, eigenvectors as columns).
    _, s_log, Vt_log = np.linalg.svd(Rn * norms)
    eigenvalues = (s_log**2)[::-1]
    eigenvectors = np.array([_unit_direction(v) for v in Vt_log[::-1]]).T
    if rank < P or eigenvalues[0] <= 0:
        condition = math.inf
    else:
        condition = float(eigenvalues[-1] / eigenvalues[0])
    sloppiness = math.log10(condition) if math.isfinite(condition) else math.inf
    weakest = {n: float(c) for n, c in zip(names, eigenvectors[:, 0], strict=True)}
    width = 1.0 / np.sqrt(np.where(eigenvalues > 0, eigenvalues, np.nan))
    sloppy, sloppy_texts = [], []
    for k in range(n_null, P):
        if not width[k] > crb_threshold:
            continue
        # Drop coefficients below 5 % for the words (the dict keeps 1e-3 and up).
        coeffs = {n: float(c) for n, c in zip(names, eigenvectors[:, k], strict=True)
                  if abs(c) >= NULL_COMPONENT_TOL}
        sloppy.append(coeffs)
        shown = {n: c for n, c in coeffs.items() if abs(c) >= 0.05}
        sloppy_texts.append(describe_null_direction(shown, log, width=float(width[k])))

    # Relative Cramér–Rao bounds from the rank-truncated pseudo-inverse of the unit-diagonal
    # log-FIM; a parameter in a null direction has an infinite bound.
    # A fiducial at a special point can add local zeros among the kept singular values:
    # the parameters in those directions get an infinite bound, the others ignore them.
    keep = max(P - n_null, 0)
    live = s[:keep] > rtol * s[0] if keep and s[0] > 0 else np.zeros(keep, bool)
    inv_diag = np.sum((Vt[:keep][live] / s[:keep][live, None]) ** 2, axis=0)
    local = np.any(np.abs(Vt[:keep][~live]) >= NULL_COMPONENT_TOL, axis=0)
    rel_crb = {}
    for i, n in enumerate(names):
        if not structural[n] or norms[i] == 0 or local[i]:
            rel_crb[n] = math.inf
        else:
            rel_crb[n] = float(math.sqrt(inv_diag[i]) / norms[i])
    practical = {n: structural[n] and rel_crb[n] <= crb_threshold for n in names}
    coord = dict(zip(names, _coordinate_identifiability(Rn).tolist(), strict=True))
    subsets, search = _subset_search(Rn, names, collinearity_threshold, rtol)
    gamma_all = _gamma(Rn, range(P), rtol)

    if source == "experiment" and rank_fid < rank:
        notes.append(
            f"The rank at the fiducial ({rank_fid}) is lower than at nearby random points "
            f"({rank}): the fiducial is a special point with an extra local degeneracy; the "
            "practical numbers below are computed at the fiducial and show it.")
    if not math.isfinite(gamma_all) and n_null == 0:
        notes.append("The full-set collinearity index is infinite although the generic rank "
                     "is full: the degeneracy is local to the fiducial.")
    linear = [n for n in names if not log[n]]
    if linear:
        notes.append(f"Parameters with fiducial 0 are analysed in linear units: {linear}; "
                     "their CRB is absolute, not relative.")
    if factor.method != "whitened sensitivities":
        notes.append("Computed from a square root of the Fisher matrix (numerical floor "
                     "~1e-8 in relative singular values instead of ~1e-16).")

    fisher = FisherMatrix(factor.fisher, names, fiducial={n: fiducial[n] for n in names})
    return IdentifiabilityReport(
        names=tuple(names), n_params=P, source=source,
        fiducial={n: fiducial[n] for n in names}, parameterisation=parameterisation,
        rank=rank, rank_at_fiducial=rank_fid, ranks=list(ranks), random_points=random_points,
        singular_values=s, rtol=float(rtol),
        null_directions=null_dirs, null_descriptions=texts,
        structurally_identifiable=structural, practically_identifiable=practical,
        identifiable=dict(practical),
        eigenvalues=eigenvalues, eigenvectors=eigenvectors, condition_number=condition,
        sloppiness=sloppiness, weakest_direction=weakest, sloppy_directions=sloppy,
        sloppy_descriptions=sloppy_texts,
        relative_crb=rel_crb, crb_threshold=float(crb_threshold),
        coordinate_identifiability=coord,
        collinearity=gamma_all, collinearity_threshold=float(collinearity_threshold),
        identifiable_subsets=subsets, subset_search=search,
        fisher=fisher, method=factor.method, notes=notes,
        _Rn=Rn, _norms=norms, _scale=scale, _null_basis=U_null,
    )


def _scale_of(values):
    values = np.asarray(values, dtype=np.float64)
    return np.where(values != 0, np.abs(values), 1.0)


def identifiability(experiment_or_fisher, fiducial=None, *, params=None, n_random=3,
                    spread=0.1, rtol=RANK_RTOL, crb_threshold=CRB_THRESHOLD,
                    collinearity_threshold=COLLINEARITY_THRESHOLD, seed=0,
                    mode="forward") -> IdentifiabilityReport:
    """Which parameters, and which combinations of them, can an experiment determine?

    The report is built on the log-parameter sensitivity matrix ``S = L⁻¹ J diag(θ)``
    (exact derivatives, whitened by the noise model; ``SᵀS`` is the Fisher matrix in ``ln θ``):

    - **structural (local, generic)**: the rank of ``S`` with unit-normalised columns, with
      singular values below ``rtol`` × the largest counted as zero, at the fiducial and at
      `n_random` random points ``θ·exp(u)``, ``u ~ N(0, spread²)``; the null space names the
      non-identifiable combinations;
    - **practical**: relative Cramér–Rao bounds against `crb_threshold`, the spectrum of the
      log-FIM, coordinate identifiability, and the Brun–Reichert–Künsch collinearity index with
      a search for the largest identifiable subsets (γ < `collinearity_threshold`).

    **Arguments:**

    - `experiment_or_fisher`: an :class:`Experiment`, a list of independent experiments, or a
      :class:`FisherMatrix` (practical part only; its rank is the matrix's numerical rank).
    - `fiducial`: dict name -> value (required for experiments; for a FisherMatrix it
      defaults to the matrix's own fiducial).
    - `params`: the parameters to analyse (default: all of the fiducial); the others are held
      fixed (for a FisherMatrix: removed with ``F.fix``).
    - `n_random`, `spread`, `seed`: random points for the generic rank.
    - `rtol`, `crb_threshold`, `collinearity_threshold`: see the module constants.
    - `mode`: ``"forward"`` or ``"reverse"`` Jacobian, as in :func:`ff.fisher`.

    **Returns:** an :class:`IdentifiabilityReport`.

    **Raises:** `ParameterError` for unknown names, `NonFiniteError` when the model or its
    derivative is not finite at the fiducial, `ValueError` for bad options.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> rep = ff.identifiability(exp, {"a": 2.0, "b": 3.0, "k": 0.5})
    >>> rep.rank, rep.null_descriptions[0]
    (2, 'ln a − ln b is not identifiable: only a·b is identifiable')
    ```
    """
    _check_options(n_random, rtol, crb_threshold, collinearity_threshold, spread)
    _check_mode(mode)
    notes = []
    if isinstance(experiment_or_fisher, IdentifiabilityReport):
        raise TypeError("identifiability() received a report; pass the experiment or the "
                        "FisherMatrix it was made from.")
    if isinstance(experiment_or_fisher, FisherMatrix):
        F = experiment_or_fisher
        fid = fiducial if fiducial is not None else F.fiducial
        if fid is None:
            raise ValueError("identifiability(FisherMatrix) needs the fiducial values (for the "
                             "log-parameters and relative CRBs): the matrix has none, so pass "
                             "`fiducial`.")
        fid = check_fiducial(fid)
        missing = [n for n in F.names if n not in fid]
        if missing:
            raise ParameterError(f"`fiducial` has no value for {missing}; the matrix has "
                                 f"parameters {list(F.names)}.")
        names = check_names(params, {n: fid[n] for n in F.names})
        # Parameters not in `params` are held fixed: keep only their rows and columns.
        order = [F.names.index(n) for n in names]
        M = F.matrix[np.ix_(order, order)]
        scale = _scale_of([fid[n] for n in names])
        factor = _factor_from_fisher(np.asarray(M, dtype=np.float64), scale)
        s = np.linalg.svd(factor.Rn, compute_uv=False)
        rank = _rank(s, rtol)
        return _analyse(names=names, fiducial=fid, scale=scale, factor=factor, ranks=[rank],
                        rank=rank, random_points=[], rtol=rtol, crb_threshold=crb_threshold,
                        collinearity_threshold=collinearity_threshold, source="fisher",
                        notes=[*notes, "From a FisherMatrix: no structural analysis (no model, "
                                       "no random points); the rank is numerical."])

    experiments = _as_experiments(experiment_or_fisher)
    if fiducial is None:
        raise ValueError("identifiability(experiment) needs `fiducial`, the parameter values "
                         "at which to analyse the model.")
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    scale = _scale_of([fid[n] for n in names])
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        factor = _factor_at(experiments, fid64, names, mode, scale)
        s = np.linalg.svd(factor.Rn, compute_uv=False)
        ranks = [_rank(s, rtol)]
        rng = np.random.default_rng(seed)
        points = []
        for _ in range(n_random):
            u = rng.normal(0.0, spread, size=len(names))
            point = dict(fid64)
            for n, ui in zip(names, u, strict=True):
                v = fid[n]
                point[n] = np.float64(v * math.exp(ui) if v != 0 else ui)
            try:
                other = _factor_at(experiments, point, names, mode, _scale_of(
                    [point[n] for n in names]))
            except (FisherError, ValueError, np.linalg.LinAlgError) as exc:
                notes.append(f"Random point {len(points) + 1} skipped: "
                             f"{str(exc).splitlines()[0]}")
                continue
            points.append({n: float(point[n]) for n in names})
            ranks.append(_rank(np.linalg.svd(other.Rn, compute_uv=False), rtol))
    rank = max(ranks)
    return _analyse(names=names, fiducial=fid, scale=scale, factor=factor, ranks=ranks,
                    rank=rank, random_points=points, rtol=rtol, crb_threshold=crb_threshold,
                    collinearity_threshold=collinearity_threshold, source="experiment",
                    notes=notes)


def collinearity_index(experiment_or_fisher, fiducial=None, names=None, *, params=None,
                       rtol=RANK_RTOL, mode="forward") -> float:
    """Brun–Reichert–Künsch collinearity index γ of a parameter subset.

    ``γ_K = 1/sqrt(λ_min(S̃_Kᵀ S̃_K))``, where ``S̃`` holds the noise-whitened sensitivity
    columns of the parameters in `names` normalised to unit length (Brun, Reichert & Künsch
    2001, Water Resour. Res. 37, 1015). ``γ = 1`` for orthogonal sensitivities; ``inf`` when
    the columns are exactly degenerate (singular value below `rtol` × the largest). γ does
    not change when parameters are rescaled. Values above ~20 mean that a change of one
    parameter can be compensated by the others to within 5 %.

    **Arguments:**

    - `experiment_or_fisher`: an :class:`Experiment` (or list), a :class:`FisherMatrix` or
      an :class:`IdentifiabilityReport`.
    - `fiducial`: dict of values (not needed for a matrix with a fiducial or a report).
    - `names`: the subset (default: all parameters analysed).
    - `params`: parameters varied when computing the sensitivities (default: all).

    **Returns:** γ as a float.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=jnp.array([-1.0, 1.0]))
    >>> round(ff.collinearity_index(exp, {"a": 1.0, "b": 2.0}), 12)   # orthogonal columns
    1.0
    ```
    """
    if isinstance(experiment_or_fisher, IdentifiabilityReport):
        return experiment_or_fisher.collinearity_index(names)
    if isinstance(experiment_or_fisher, FisherMatrix):
        report = identifiability(experiment_or_fisher, fiducial, params=params, n_random=0,
                                 rtol=rtol)
        return report.collinearity_index(names)
    experiments = _as_experiments(experiment_or_fisher)
    if fiducial is None:
        raise ValueError("collinearity_index(experiment) needs `fiducial`.")
    fid = check_fiducial(fiducial)
    varied = check_names(params, fid)
    subset = varied if names is None else check_names(names, {n: 0 for n in varied})
    scale = _scale_of([fid[n] for n in varied])
    with float64():
        factor = _factor_at(experiments, {k: np.float64(v) for k, v in fid.items()}, varied,
                            mode, scale)
    return _gamma(factor.Rn, [varied.index(n) for n in subset], rtol)


# ---------------------------------------------------------------------------------------
# Regularisation on the non-identifiable subspace (Wang & Hao 2025)
# ---------------------------------------------------------------------------------------
_WHICH = ("structural", "practical")


def _report_and_center(report_or_experiment, fiducial, params, which, kwargs):
    if which not in _WHICH:
        raise ValueError(f"`which` must be one of {_WHICH}; received {which!r}.")
    if isinstance(report_or_experiment, IdentifiabilityReport):
        report = report_or_experiment
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} apply only when an experiment is "
                            "passed; the report is already computed.")
    elif isinstance(report_or_experiment, Experiment | list | tuple | FisherMatrix):
        report = identifiability(report_or_experiment, fiducial, params=params, **kwargs)
    else:
        raise TypeError("Expected an IdentifiabilityReport, an ff.Experiment (or a list of "
                        f"them) or a FisherMatrix; received {quote(report_or_experiment)}.")
    center = dict(report.fiducial)
    if fiducial is not None:
        fid = check_fiducial(fiducial)
        missing = [n for n in report.names if n not in fid]
        if missing:
            raise ParameterError(f"`fiducial` has no value for {missing}; the report analyses "
                                 f"{list(report.names)}.")
        for n in report.names:
            if (report.parameterisation[n] == "ln") != (fid[n] != 0) or (
                    fid[n] * report.fiducial[n] < 0):
                raise ValueError(
                    f"fiducial[{n!r}] = {fid[n]!r} cannot centre the prior: the report treats "
                    f"{n!r} as {report.parameterisation[n]} around {report.fiducial[n]!r}; the "
                    "centre must have the same sign (and be non-zero for ln-parameters).")
            center[n] = fid[n]
    if which == "structural":
        U = np.asarray(report._null_basis)
    else:
        lam_cut = 1.0 / report.crb_threshold**2
        ev = np.asarray(report.eigenvalues)
        U = np.asarray(report.eigenvectors)[:, ev < lam_cut]
    return report, center, U


def _check_lam(lam):
    if (isinstance(lam, bool) or not isinstance(lam, int | float | np.integer | np.floating)
            or not 0 < float(lam) < math.inf):
        raise ValueError(f"`lam` must be a positive finite number; received {lam!r}.")
    return float(lam)


def nullspace_prior(report_or_experiment, fiducial=None, lam=1.0, *, params=None,
                    which="structural", log=False, **identifiability_options) -> FisherMatrix:
    """A Gaussian prior that acts only on the non-identifiable subspace (Wang & Hao 2025).

    With ``U`` an orthonormal basis of the non-identifiable directions in **ln-parameters**
    (the null space of the sensitivity matrix for ``which="structural"``; for
    ``which="practical"`` the eigen-directions of the log-FIM whose 1σ width exceeds the
    report's `crb_threshold`), the prior's information is ``λ U Uᵀ`` in ``ln θ``. Adding it to a
    Fisher matrix leaves every direction orthogonal to ``U`` (in ln-coordinates) untouched and
    makes the matrix invertible. The matching penalty for fitting is :func:`nullspace_penalty`.

    **Arguments:**

    - `report_or_experiment`: an :class:`IdentifiabilityReport`, or an experiment (list) /
      :class:`FisherMatrix` to analyse first (extra keyword options go to
      :func:`identifiability`).
    - `fiducial`: the prior's centre ``θ*`` (default: the report's fiducial).
    - `lam`: the prior precision λ along the null directions, in units of ``(ln θ)⁻²``: its
      1σ width along each null direction is ``1/sqrt(λ)`` in ln θ.
    - `which`: ``"structural"`` (default) or ``"practical"``.
    - `log`: if ``False`` (default) the matrix is expressed in the original parameters
      (``D⁻¹ λUUᵀ D⁻¹``, ``D = diag(|θ*|)``), ready to add to ``ff.fisher(...)``; if ``True``
      it is ``λUUᵀ`` with names ``ln_<name>``, ready to add to ``F.to_log()``.

    **Returns:** a :class:`FisherMatrix` (all zeros when nothing is non-identifiable).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> fid = {"a": 2.0, "b": 3.0, "k": 0.5}
    >>> F = ff.fisher(exp, fid) + ff.nullspace_prior(exp, fid, lam=100.0)
    >>> round(F.sigma()["k"], 6) == round(ff.fisher(exp, fid).fix(["a"]).sigma()["k"], 6)
    True
    ```
    """
    lam = _check_lam(lam)
    report, center, U = _report_and_center(report_or_experiment, fiducial, params, which,
                                           identifiability_options)
    names = report.names
    M = lam * (U @ U.T) if U.size else np.zeros((len(names), len(names)))
    meta = {"lam": lam, "which": which, "space": "ln",
            "null_directions": [dict(d) for d in report.null_directions]}
    if log:
        new = tuple(f"ln_{n}" if report.parameterisation[n] == "ln" else n for n in names)
        fid = {m: (math.log(abs(center[n])) if report.parameterisation[n] == "ln"
                   else center[n]) for n, m in zip(names, new, strict=True)}
        return FisherMatrix(M, new, fiducial=fid, name="nullspace prior", metadata=meta)
    d = _scale_of([center[n] for n in names])
    return FisherMatrix(M / np.outer(d, d), names, fiducial=center, name="nullspace prior",
                        metadata=meta)


def nullspace_penalty(report_or_experiment, fiducial=None, lam=1.0, *, params=None,
                      which="structural", **identifiability_options):
    """A pure JAX penalty ``λ ‖Uᵀ(ln θ − ln θ*)‖²`` on the non-identifiable subspace.

    `U` is the same basis as in :func:`nullspace_prior` (ln-parameters; parameters whose
    fiducial is 0 enter linearly). Add the penalty to ``−2 ln L`` (χ²) when fitting: half its
    Hessian at ``θ*`` is exactly the matrix returned by :func:`nullspace_prior`. It pins the
    fit along the directions the data cannot see and has no gradient along the others at
    ``θ*``.

    **Arguments:** as :func:`nullspace_prior`.

    **Returns:** ``penalty(params) -> scalar``, with ``params`` a dict containing at least the
    report's parameters; it can be jitted and differentiated.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> model = lambda p, t: p["a"] * p["b"] * jnp.exp(-p["k"] * t)
    >>> exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=jnp.linspace(0, 5, 11))
    >>> pen = ff.nullspace_penalty(exp, {"a": 2.0, "b": 3.0, "k": 0.5}, lam=1.0)
    >>> round(float(pen({"a": 2.0 * 2.718281828459045, "b": 3.0, "k": 0.5})), 6)  # ½·(ln e)²
    0.5
    ```
    """
    lam = _check_lam(lam)
    report, center, U = _report_and_center(report_or_experiment, fiducial, params, which,
                                           identifiability_options)
    names = report.names
    is_log = np.array([report.parameterisation[n] == "ln" for n in names])
    ref = np.array([center[n] for n in names], dtype=np.float64)
    # Divide by 1 where the parameter is linear (its centre may be 0): a division by 0 in
    # the unused branch of a `where` would still poison the gradient with NaN.
    ratio_ref = np.where(is_log, ref, 1.0)
    U = np.array(U, dtype=np.float64)

    def penalty(params):
        missing = [n for n in names if n not in params]
        if missing:
            raise ParameterError(f"nullspace penalty: `params` has no value for {missing}; "
                                 f"it needs {list(names)}.")
        theta = jnp.stack([jnp.asarray(params[n]) for n in names])
        dtype = jnp.result_type(theta.dtype, jnp.float32)
        log_mask = jnp.asarray(is_log)
        delta = jnp.where(log_mask, jnp.log(jnp.where(log_mask, theta / ratio_ref, 1.0)),
                          theta - ref).astype(dtype)
        if U.shape[1] == 0:
            return jnp.zeros((), dtype)
        proj = jnp.asarray(U, dtype).T @ delta
        return lam * jnp.sum(proj**2)

    return penalty


def _marginal_sigma_pinv(F, names, fiducial, rtol=RANK_RTOL):
    """Marginal σ of each parameter from a possibly singular Fisher matrix: the rank-truncated
    pseudo-inverse, ``inf`` for parameters in a null direction. Used by the profiles."""
    names = tuple(names)
    scale = _scale_of([fiducial[n] for n in names])
    factor = _factor_from_fisher(np.asarray(F, dtype=np.float64), scale)
    _, s, Vt = np.linalg.svd(factor.Rn)
    P = len(names)
    keep = _rank(s, rtol)
    safe = np.where(factor.norms > 0, factor.norms, 1.0)
    null = (Vt[keep:] / safe).T
    if null.size:
        null, _ = np.linalg.qr(null)
    in_null = np.linalg.norm(null, axis=1) >= NULL_COMPONENT_TOL if null.size else np.zeros(
        P, bool)
    inv_diag = np.sum((Vt[:keep] / s[:keep, None]) ** 2, axis=0) if keep else np.zeros(P)
    out = {}
    for i, n in enumerate(names):
        if in_null[i] or factor.norms[i] == 0:
            out[n] = math.inf
        else:
            out[n] = float(math.sqrt(inv_diag[i]) / factor.norms[i] * scale[i])
    return out


__all__ = [
    "IdentifiabilityReport",
    "collinearity_index",
    "identifiability",
    "nullspace_penalty",
    "nullspace_prior",
]

