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
they change with the units and can hide a parameter whose fiducial value is tiny. A parameter
whose fiducial is 0 has no unit-free size: unless ``scales=`` gives it one, its practical
verdict is "n/a" and it is marginalised out of the log-FIM spectrum.

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
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_fiducial, check_mode, check_names
from ._engine import evaluate_checked
from ._errors import FisherError, ParameterError, quote
from ._experiment import Experiment
from ._matrix import FisherMatrix
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


def _factor_at(experiments, fid64, names, mode, scale):
    F_total, _, blocks = evaluate_checked(experiments, fid64, names, mode, detail=True)
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


def _rref(rows, tol=1e-9):
    """Reduced row-echelon form with full pivoting: a sparse, readable basis of a subspace.

    Returns ``(R, pivots)``: the non-zero rows, each 1 at its pivot column and 0 at the other
    pivots. The pivot is the largest remaining entry; near-ties (within 0.1 %) go to the
    first column, so that equal coefficients resolve in the order the parameters were given.
    """
    A = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    pivots = []
    for k in range(A.shape[0]):
        sub = np.abs(A[k:, :])
        sub[:, pivots] = 0.0
        big = float(np.max(sub, initial=0.0))
        if big <= tol:
            break
        j = int(np.nonzero(np.max(sub, axis=0) >= 0.999 * big)[0][0])
        i = k + int(np.argmax(sub[:, j]))
        A[[k, i]] = A[[i, k]]
        A[k] /= A[k, j]
        for m in range(A.shape[0]):
            if m != k:
                A[m] -= A[m, j] * A[k]
        pivots.append(j)
    return A[: len(pivots)], pivots


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
    if any(
        abs(float(f) - e) > 1e-3 * max(1.0, abs(e))
        for f, e in zip(fracs.values(), exponents.values(), strict=True)
    ):
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


def _join(items):
    """'x', 'x and y', 'x, y and z'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _coordinate_label(name, log, scale=None):
    """How a coefficient of `name` is read: ``ln a``, ``dc`` or ``d(c/0.5)`` (with a scale)."""
    if log:
        return f"ln {name}"
    return f"d{name}" if scale is None else f"d({name}/{scale:g})"


def _direction_text(coefficients, labels):
    """``ln a − 0.5·ln b + dc``: a direction, scaled so that its largest coefficient is ±1."""
    big = max(abs(c) for c in coefficients.values())
    parts = []
    for i, (n, c) in enumerate(coefficients.items()):
        c = c / big
        mag = "" if abs(abs(c) - 1) < 5e-3 else f"{abs(c):.3g}·"
        sign = ("" if c >= 0 else "−") if i == 0 else (" + " if c >= 0 else " − ")
        parts.append(f"{sign}{mag}{labels[n]}")
    return "".join(parts)


def _complement_exponents(rows, params):
    """Readable basis of the exponent vectors ``m`` (over `params`) orthogonal to `rows`.

    ``rows`` (k × len(params)) must have independent rows. In their reduced row-echelon form
    with pivots ``A``, each free parameter ``f`` gives ``m_f = 1``, ``m_Aᵢ = −R[i, f]``, zero
    elsewhere; it is then scaled so that its largest exponent is +1 (the first one on a tie)
    and, where the exponents are simple fractions, to integers (a·b, a/b, V/K^0.947, a^2·b).
    Returns a list of dicts name -> exponent (zero exponents left out).
    """
    R, pivots = _rref(rows) if len(rows) else (np.zeros((0, len(params))), [])
    out = []
    for f in range(len(params)):
        if f in pivots:
            continue
        m = np.zeros(len(params))
        m[f] = 1.0
        for i, p in enumerate(pivots):
            m[p] = -R[i, f]
        m[np.abs(m) < 1e-9] = 0.0
        big = np.max(np.abs(m))
        lead = m[np.nonzero(np.abs(m) >= 0.999 * big)[0][0]]
        exps = {params[j]: float(m[j] / lead) for j in range(len(params)) if m[j] != 0}
        out.append(_integer_exponents(exps))
    return out


def _null_group_text(rows, log, labels):
    """One sentence for a group of null directions (dicts) that share parameters.

    The identifiable combinations are the monomials ``∏ θᵢ^mᵢ`` whose exponent vectors are
    orthogonal to *all* the directions of the group together.
    """
    params = list(dict.fromkeys(n for row in rows for n in row))
    if len(rows) == 1 and len(params) == 1:
        return f"{params[0]} has no effect on the output: it is not identifiable at all"
    texts = [_direction_text(row, labels) for row in rows]
    head = f"{_join(texts)} {'is' if len(texts) == 1 else 'are'} not identifiable"
    if not all(log[n] for n in params):
        return head
    combos = _complement_exponents([[row.get(n, 0.0) for n in params] for row in rows], params)
    if not combos:
        return f"{head}: no combination of {', '.join(params)} is identifiable"
    if len(combos) == 1:
        return f"{head}: only {_monomial(combos[0])} is identifiable"
    return (
        f"{head}: among {', '.join(params)} only "
        f"{_join(_monomial(c) for c in combos)} are identifiable"
    )


def _null_space_texts(directions, log, labels):
    """Sentences for the whole null space: one per group of directions sharing parameters."""
    groups = []  # (set of names, list of directions)
    for d in directions:
        hit = [g for g in groups if g[0] & set(d)]
        merged = (set(d).union(*(g[0] for g in hit)), [r for g in hit for r in g[1]] + [d])
        groups = [g for g in groups if g not in hit] + [merged]
    order = {id(d): i for i, d in enumerate(directions)}
    groups.sort(key=lambda g: min(order[id(r)] for r in g[1]))
    return [
        _null_group_text(sorted(rows, key=lambda r: order[id(r)]), log, labels)
        for _, rows in groups
    ]


def describe_null_direction(
    coefficients: Mapping[str, float], log: Mapping[str, bool], width: float | None = None
) -> str:
    """Words for a null direction ``{name: coefficient}`` in ln-parameters.

    Moving along the direction ``t·v`` (``ln θᵢ += t vᵢ``) leaves the model output unchanged,
    so only the products of powers ``∏ θᵢ^mᵢ`` with ``m·v = 0`` are identifiable. (For
    several null directions the report states the combinations orthogonal to all of them
    together.) With `width`, the direction is a poorly determined one and only that is said:
    which combinations are better determined needs the covariance (the report adds them).

    ```python
    >>> describe_null_direction({"a": 0.7071, "b": -0.7071}, {"a": True, "b": True})
    'ln a − ln b is not identifiable: only a·b is identifiable'
    ```
    """
    labels = {n: _coordinate_label(n, log[n]) for n in coefficients}
    if width is not None:
        return (
            f"{_direction_text(coefficients, labels)} is poorly determined (1σ width "
            f"{width:.3g} in ln-units)"
        )
    return _null_group_text([dict(coefficients)], log, labels)


def _sloppy_text(k, shown, names, log, labels, eigenvalues, eigenvectors, n_zero):
    """Words for the poorly determined eigen-direction `k` (coefficients `shown`).

    The combinations called better determined are monomials over the parameters of the
    direction whose exponent vectors are orthogonal to the null space and to every
    eigen-direction at least as poorly determined as this one; each is listed with its own
    1σ width (from the covariance), and only when that is smaller than the direction's.
    """
    width = float(eigenvalues[k]) ** -0.5
    head = (
        f"{_direction_text(shown, labels)} is poorly determined (1σ width {width:.3g} in ln-units)"
    )
    group = [n for n in names if n in shown]
    if not all(log[n] for n in group):
        return head
    idx = [names.index(n) for n in group]
    constraints = eigenvectors[idx, : k + 1].T
    _, sv, vt = np.linalg.svd(constraints, full_matrices=False)
    basis = vt[: int(np.sum(sv > 1e-8 * sv[0]))] if sv.size and sv[0] > 0 else vt[:0]
    if basis.shape[0] >= len(group):
        return head
    better = []
    for exps in _complement_exponents(basis, group):
        vec = np.zeros(len(names))
        for n, e in exps.items():
            vec[names.index(n)] = e
        proj = eigenvectors.T @ vec
        if np.any(np.abs(proj[:n_zero]) > 1e-6 * np.linalg.norm(vec)):
            continue  # not orthogonal to the null space: not determined at all
        w = math.sqrt(float(np.sum(proj[n_zero:] ** 2 / eigenvalues[n_zero:])))
        if w < width:
            better.append(f"{_monomial(exps)} (1σ width {w:.3g})")
    if not better:
        return head
    return f"{head}: {_join(better)} {'is' if len(better) == 1 else 'are'} better determined"


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
    if math.isnan(x):
        return None
    return float(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


class IdentifiabilityReport:
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
    - `fisher`: the :class:`FisherMatrix` (linear parameters) analysed; `notes`: caveats.
    """

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("IdentifiabilityReport is read-only.")

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
        return _gamma(self._Rn, idx, self.rtol)

    # ----- output ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-Python view of the report (``inf`` written as the string ``"inf"``, NaN as
        ``None``)."""

        def fmap(d):
            return {k: _finite_or_str(v) for k, v in d.items()}

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
            "condition_number": _finite_or_str(self.condition_number),
            "sloppiness": _finite_or_str(self.sloppiness),
            "weakest_direction": dict(self.weakest_direction),
            "sloppy_directions": [dict(d) for d in self.sloppy_directions],
            "sloppy_descriptions": list(self.sloppy_descriptions),
            "relative_crb": fmap(self.relative_crb),
            "absolute_crb": fmap(self.absolute_crb),
            "crb_threshold": self.crb_threshold,
            "coordinate_identifiability": dict(self.coordinate_identifiability),
            "collinearity": _finite_or_str(self.collinearity),
            "collinearity_threshold": self.collinearity_threshold,
            "identifiable_subsets": [
                {"names": list(n), "collinearity": g} for n, g in self.identifiable_subsets
            ],
            "subset_search": self.subset_search,
            "method": self.method,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A readable report: verdicts, spectrum, collinearity and a per-parameter table."""
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
        for n in self.names:
            crb = self.relative_crb[n]
            crb = "n/a" if math.isnan(crb) else f"{crb:.3g}"
            lines.append(
                f"{n:<{width}}  {self.fiducial[n]:>10.4g}  {crb:>9}  "
                f"{self.coordinate_identifiability[n]:>10.3g}  "
                f"{verdict[self.structurally_identifiable[n]]:>10}  "
                f"{verdict[self.practically_identifiable[n]]:>9}"
            )
        lines.append(
            f"(practical: structural and relative CRB ≤ {self.crb_threshold:g}; a "
            "parameter with fiducial 0 needs scales= for a relative CRB)"
        )
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
        bottom = np.zeros(V.shape[1])
        x = np.arange(V.shape[1])
        for i, n in enumerate(self.names):
            if self.parameterisation[n] == "linear" and n not in self.scales:
                continue  # marginalised out of the spectrum
            ax_comp.bar(x, V[i], bottom=bottom, label=self._labels[n], color=f"C{i % 10}")
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


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------
def _check_options(n_random, rtol, crb_threshold, collinearity_threshold, spread):
    if isinstance(n_random, bool) or not isinstance(n_random, int | np.integer) or n_random < 0:
        raise ValueError(f"`n_random` must be a non-negative integer; received {n_random!r}.")
    for label, value, lo, hi in (
        ("rtol", rtol, 0.0, 1.0),
        ("spread", spread, 0.0, math.inf),
        ("crb_threshold", crb_threshold, 0.0, math.inf),
        ("collinearity_threshold", collinearity_threshold, 1.0, math.inf),
    ):
        ok = isinstance(value, int | float | np.floating) and lo < float(value) < hi
        if not ok:
            raise ValueError(f"`{label}` must be a number in ({lo:g}, {hi:g}); received {value!r}.")


def _orthonormal(B):
    """Orthonormal basis (columns) of the span of the columns of `B` (P × k, independent)."""
    if B.shape[1] == 0:
        return B
    Q, _ = np.linalg.qr(B)
    return Q


def _split_null_space(N_fid, n_null, random_nulls):
    """Split the null space at the fiducial into the structural part and a local extra.

    `N_fid` (P × k, orthonormal, ln-coordinates of the fiducial) is the null space at the
    fiducial; the generic (structural) null space has dimension `n_null ≤ k`. When
    ``k > n_null`` the fiducial is a special point and its SVD cannot tell the generic
    directions from the local ones (their singular values are all ~0): the structural ones are
    the `n_null` directions inside ``N_fid`` closest to the null spaces at the random points
    (`random_nulls`, already in the fiducial's coordinates): the top eigenvectors of
    ``Σⱼ (N_fidᵀ Bⱼ)(N_fidᵀ Bⱼ)ᵀ``. For a degeneracy that holds at every point (a·b, V/F) the
    null spaces at the random points contain it exactly; it is then their intersection.
    Returns ``(U_structural, U_local, alignment)``, alignment in [0, 1] (None if not needed).
    """
    P, k = N_fid.shape
    if n_null == 0:
        return np.zeros((P, 0)), N_fid, None
    if n_null >= k:
        return N_fid, np.zeros((P, 0)), None
    M = np.zeros((k, k))
    for B in random_nulls:
        C = N_fid.T @ B
        M += C @ C.T
    w, W = np.linalg.eigh(M)
    alignment = float(w[-n_null] / len(random_nulls))
    return N_fid @ W[:, -n_null:], N_fid @ W[:, :-n_null], alignment


def _directions(U, names):
    """Readable (row-echelon, unit, canonical sign) dicts for the span of the columns of U."""
    out = []
    if U.shape[1] == 0:
        return out
    R, _ = _rref(U.T)
    for row in R:
        vec = _unit_direction(row, first_positive=True)
        out.append(
            {n: float(c) for n, c in zip(names, vec, strict=True) if abs(c) >= NULL_COMPONENT_TOL}
        )
    return out


def _local_text(direction, labels):
    if len(direction) == 1:
        (n,) = direction
        return (
            f"{n} has no effect on the output at this fiducial (it does at the random "
            "points): not identifiable here, a local degeneracy"
        )
    return (
        f"{_direction_text(direction, labels)} is not identifiable at this fiducial (it "
        "is at the random points): a local degeneracy"
    )


def _spectrum(Rn, norms, scaled, s0, rank_fid, rtol):
    """Eigen-decomposition of the log-FIM over the parameters that have a scale.

    Parameters analysed in linear units without a scale (fiducial 0, no ``scales=`` entry)
    have no unit-free size: their columns would make the spectrum change with their units. They
    are marginalised out (the Schur complement, i.e. the sensitivities of the others projected
    off theirs), which does not depend on their units. Returns ``(eigenvalues ascending,
    eigenvectors P × m with zero rows for the marginalised, number of zero eigenvalues)``.
    """
    P = Rn.shape[1]
    A = [i for i in range(P) if scaled[i]]
    Z = [i for i in range(P) if not scaled[i]]
    X = Rn[:, A] * norms[A]
    rank_z = 0
    if Z and A:
        Uz, sz, _ = np.linalg.svd(Rn[:, Z], full_matrices=False)
        Q = Uz[:, sz > rtol * s0] if s0 > 0 else Uz[:, :0]
        X = X - Q @ (Q.T @ X)
        rank_z = Q.shape[1]
    m = len(A)
    eigenvectors = np.zeros((P, m))
    if m == 0:
        return np.zeros(0), eigenvectors, 0
    _, s_m, Vt_m = np.linalg.svd(X, full_matrices=False)
    eigenvalues = (s_m**2)[::-1]
    eigenvectors[A] = np.array([_unit_direction(v) for v in Vt_m[::-1]]).T
    n_zero = min(m, max(0, m - (rank_fid - rank_z)))
    return eigenvalues, eigenvectors, n_zero


def _analyse(
    *,
    names,
    fiducial,
    scale,
    scales,
    factor,
    ranks,
    rank,
    random_points,
    random_nulls,
    rtol,
    crb_threshold,
    collinearity_threshold,
    source,
    notes,
):
    Rn, norms = factor.Rn, factor.norms
    names = list(names)
    P = len(names)
    log = {n: fiducial[n] != 0 for n in names}
    parameterisation = {n: "ln" if log[n] else "linear" for n in names}
    # A parameter has a unit-free size when its fiducial is not 0 or a scale was given.
    scaled = {n: log[n] or n in scales for n in names}
    labels = {n: _coordinate_label(n, log[n], scales.get(n)) for n in names}
    _, s, Vt = np.linalg.svd(Rn)
    rank_fid = _rank(s, rtol)
    n_null = P - rank
    safe = np.where(norms > 0, norms, 1.0)

    # Null space at the fiducial in ln-coordinates (S̃ ṽ = 0 ⇔ S_log (ṽ / norms) = 0), split
    # into the structural (generic) part and an extra local part at a special fiducial.
    N_fid = _orthonormal((Vt[rank_fid:] / safe).T)
    U_null, U_local, alignment = _split_null_space(N_fid, n_null, random_nulls)
    null_dirs = _directions(U_null, names)
    texts = _null_space_texts(null_dirs, log, labels)
    local_dirs = _directions(U_local, names)
    local_texts = [_local_text(d, labels) for d in local_dirs]
    involved = set().union(*null_dirs) if null_dirs else set()
    local_involved = set().union(*local_dirs) if local_dirs else set()
    structural = {n: n not in involved for n in names}

    # Spectrum of the log-FIM (eigenvalues ascending, eigenvectors as columns).
    eigenvalues, eigenvectors, n_zero = _spectrum(
        Rn, norms, [scaled[n] for n in names], s[0] if s.size else 0.0, rank_fid, rtol
    )
    m = eigenvalues.size
    if m == 0:
        condition = math.nan
    elif n_zero or eigenvalues[0] <= 0:
        condition = math.inf
    else:
        condition = float(eigenvalues[-1] / eigenvalues[0])
    sloppiness = math.log10(condition) if 0 < condition < math.inf else condition
    weakest = (
        {n: float(c) for n, c in zip(names, eigenvectors[:, 0], strict=True) if scaled[n]}
        if m
        else {}
    )
    sloppy, sloppy_texts = [], []
    for k in range(n_zero, m):
        if not (eigenvalues[k] > 0 and eigenvalues[k] ** -0.5 > crb_threshold):
            continue
        coeffs = {
            n: float(c)
            for n, c in zip(names, eigenvectors[:, k], strict=True)
            if abs(c) >= NULL_COMPONENT_TOL
        }
        sloppy.append(coeffs)
        # Drop coefficients below 5 % for the words (the dict keeps 1e-3 and up).
        shown = {n: c for n, c in coeffs.items() if abs(c) >= 0.05}
        sloppy_texts.append(
            _sloppy_text(k, shown, names, log, labels, eigenvalues, eigenvectors, n_zero)
        )

    # Cramér–Rao bounds from the pseudo-inverse of the unit-diagonal log-FIM over the
    # non-zero singular values at the fiducial; a parameter in a null direction (structural
    # or local to the fiducial) has an infinite bound.
    inv_diag = (
        np.sum((Vt[:rank_fid] / s[:rank_fid, None]) ** 2, axis=0) if rank_fid else np.zeros(P)
    )
    rel_crb, abs_crb, practical = {}, {}, {}
    for i, n in enumerate(names):
        if n in involved or n in local_involved or norms[i] == 0:
            sigma = math.inf
        else:
            sigma = float(math.sqrt(inv_diag[i]) / norms[i])  # in units of scale[i]
        abs_crb[n] = sigma * float(scale[i])
        rel_crb[n] = sigma if scaled[n] or sigma == math.inf else math.nan
        if not structural[n] or sigma == math.inf:
            practical[n] = False
        elif not scaled[n]:
            practical[n] = None  # no unit-free size to compare an absolute bound with
        else:
            practical[n] = sigma <= crb_threshold
    coord = dict(zip(names, _coordinate_identifiability(Rn).tolist(), strict=True))
    subsets, search = _subset_search(Rn, names, collinearity_threshold, rtol)
    gamma_all = _gamma(Rn, range(P), rtol)

    if source == "experiment" and rank_fid < rank:
        notes.append(
            f"The rank at the fiducial ({rank_fid}) is lower than at nearby random points "
            f"({rank}): the fiducial is a special point with an extra local degeneracy "
            "(local_null_directions). The structural null directions are those of the random "
            "points; the practical numbers below are computed at the fiducial and show it."
        )
        if alignment is not None and alignment < 0.5:
            notes.append(
                f"The null spaces at the random points lie poorly inside the fiducial's (best "
                f"cos² {alignment:.2g}): the structural null directions shown are the closest "
                "ones at the fiducial; try a smaller `spread`."
            )
    if not math.isfinite(gamma_all) and n_null == 0:
        notes.append(
            "The full-set collinearity index is infinite although the generic rank "
            "is full: the degeneracy is local to the fiducial."
        )
    linear = [n for n in names if not log[n]]
    if linear:
        given = {n: scales[n] for n in linear if n in scales}
        notes.append(
            f"Parameters with fiducial 0 are analysed in linear units: {linear}"
            + (
                f"; with the reference scales {given}, their CRB is relative to the scale"
                if given
                else ""
            )
            + "."
        )
    undetermined = [n for n in names if practical[n] is None]
    if undetermined:
        sig = ", ".join(f"{n} {abs_crb[n]:.3g}" for n in undetermined)
        notes.append(
            f"Practical verdict n/a for {undetermined}: the fiducial is 0, so an absolute "
            f"σ ({sig}, in the parameter's units) has no size to compare with; give "
            f"scales={{{', '.join(repr(n) + ': ...' for n in undetermined)}}} (a reference "
            "magnitude in the parameter's units). They are marginalised out of the log-FIM "
            "spectrum (eigenvalues, condition number, sloppy directions), which would "
            "otherwise depend on their units."
        )
    if factor.method != "whitened sensitivities":
        notes.append(
            "Computed from a square root of the Fisher matrix (numerical floor "
            "~1e-8 in relative singular values instead of ~1e-16)."
        )

    fisher = FisherMatrix(factor.fisher, names, fiducial={n: fiducial[n] for n in names})
    return IdentifiabilityReport(
        names=tuple(names),
        n_params=P,
        source=source,
        fiducial={n: fiducial[n] for n in names},
        parameterisation=parameterisation,
        scales={n: scales[n] for n in names if n in scales},
        rank=rank,
        rank_at_fiducial=rank_fid,
        ranks=list(ranks),
        random_points=random_points,
        singular_values=s,
        rtol=float(rtol),
        null_directions=null_dirs,
        null_descriptions=texts,
        local_null_directions=local_dirs,
        local_null_descriptions=local_texts,
        structurally_identifiable=structural,
        practically_identifiable=practical,
        identifiable=dict(practical),
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        condition_number=condition,
        sloppiness=sloppiness,
        weakest_direction=weakest,
        sloppy_directions=sloppy,
        sloppy_descriptions=sloppy_texts,
        relative_crb=rel_crb,
        absolute_crb=abs_crb,
        crb_threshold=float(crb_threshold),
        coordinate_identifiability=coord,
        collinearity=gamma_all,
        collinearity_threshold=float(collinearity_threshold),
        identifiable_subsets=subsets,
        subset_search=search,
        fisher=fisher,
        method=factor.method,
        notes=notes,
        _Rn=Rn,
        _norms=norms,
        _scale=scale,
        _null_basis=U_null,
        _n_zero=n_zero,
        _labels=labels,
    )


def _scale_of(values):
    values = np.asarray(values, dtype=np.float64)
    return np.where(values != 0, np.abs(values), 1.0)


def _check_scales(scales, names, fid):
    """`scales` -> dict name -> float, for parameters whose fiducial is 0."""
    if scales is None:
        return {}
    if not isinstance(scales, Mapping):
        raise TypeError(
            "`scales` must be a dict name -> reference scale (for parameters "
            f"whose fiducial is 0); received {quote(scales)}."
        )
    unknown = [n for n in scales if n not in names]
    if unknown:
        raise ParameterError(
            f"`scales` names {unknown}, which are not analysed; the parameters are {list(names)}."
        )
    out = {}
    for n, v in scales.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float | np.integer | np.floating)
            or not 0 < float(v) < math.inf
        ):
            raise ValueError(
                f"`scales[{n!r}]` must be a positive finite number; received {quote(v)}."
            )
        if fid[n] != 0:
            raise ValueError(
                f"`scales[{n!r}]`: {n!r} has the non-zero fiducial {fid[n]!r}, "
                "which already sets its scale; `scales` is only for parameters "
                "whose fiducial is 0."
            )
        out[n] = float(v)
    return out


def _scale_vector(names, fid, scales):
    return np.array(
        [abs(float(fid[n])) if fid[n] != 0 else scales.get(n, 1.0) for n in names], dtype=np.float64
    )


def _null_basis_at(factor, scale_at, scale_fid, is_log, rtol):
    """Rank and orthonormal null basis at a random point, in the fiducial's coordinates.

    At the point every parameter is in ln-coordinates (``dθ = |θ_pt| x``). Parameters that are
    ln-parameters at the fiducial too keep the coordinate (the same function ``ln|θ|``); those
    analysed in linear units at the fiducial (``x_fid = dθ / scale``) are rescaled by
    ``|θ_pt| / scale``.
    """
    _, s, Vt = np.linalg.svd(factor.Rn)
    r = _rank(s, rtol)
    safe = np.where(factor.norms > 0, factor.norms, 1.0)
    B = (Vt[r:] / safe).T * np.where(is_log, 1.0, scale_at / scale_fid)[:, None]
    return r, _orthonormal(B)


def identifiability(
    experiment_or_fisher,
    fiducial=None,
    *,
    params=None,
    n_random=3,
    spread=0.1,
    rtol=RANK_RTOL,
    crb_threshold=CRB_THRESHOLD,
    collinearity_threshold=COLLINEARITY_THRESHOLD,
    seed=0,
    mode="forward",
    scales=None,
) -> IdentifiabilityReport:
    """Which parameters, and which combinations of them, can an experiment determine?

    The report is built on the log-parameter sensitivity matrix ``S = L⁻¹ J diag(θ)``
    (exact derivatives, whitened by the noise model; ``SᵀS`` is the Fisher matrix in ``ln θ``):

    - **structural (local, generic)**: the rank of ``S`` with unit-normalised columns, with
      singular values below ``rtol`` × the largest counted as zero, at the fiducial and at
      `n_random` random points ``θ·exp(u)``, ``u ~ N(0, spread²)``; the null space (taken from
      the random points when the fiducial is a special point with extra local zeros, which are
      reported apart) names the non-identifiable combinations;
    - **practical**: relative Cramér–Rao bounds against `crb_threshold`, the spectrum of the
      log-FIM, coordinate identifiability, and the Brun–Reichert–Künsch collinearity index with
      a search for the largest identifiable subsets (γ < `collinearity_threshold`).

    A parameter whose fiducial is 0 has no logarithm and no relative error: it is analysed in
    linear units, its practical verdict is ``None`` ("n/a") and it is marginalised out of the
    log-FIM spectrum, unless `scales` gives it a reference magnitude.

    **Arguments:**

    - `experiment_or_fisher`: an :class:`Experiment`, a list of independent experiments, or a
      :class:`FisherMatrix` (practical part only; its rank is the matrix's numerical rank).
    - `fiducial`: dict name -> value (required for experiments; for a FisherMatrix it
      defaults to the matrix's own fiducial).
    - `params`: the parameters to analyse (default: all of the fiducial); the others are held
      fixed (for a FisherMatrix: removed with ``F.fix``).
    - `n_random`, `spread`, `seed`: random points for the generic rank (``u·scale`` instead
      of ``θ·exp(u)`` for a parameter whose fiducial is 0).
    - `rtol`, `crb_threshold`, `collinearity_threshold`: see the module constants.
    - `mode`: ``"forward"`` or ``"reverse"`` Jacobian, as in :func:`ff.fisher`.
    - `scales`: dict name -> positive reference magnitude, in the parameter's units, for
      parameters whose fiducial is 0: the CRB is then ``σ(θ)/scale`` and is judged like a
      relative one, and the parameter enters the spectrum in units of its scale.

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
    check_mode(mode)
    notes = []
    if isinstance(experiment_or_fisher, IdentifiabilityReport):
        raise TypeError(
            "identifiability() received a report; pass the experiment or the "
            "FisherMatrix it was made from."
        )
    if isinstance(experiment_or_fisher, FisherMatrix):
        F = experiment_or_fisher
        fid = fiducial if fiducial is not None else F.fiducial
        if fid is None:
            raise ValueError(
                "identifiability(FisherMatrix) needs the fiducial values (for the "
                "log-parameters and relative CRBs): the matrix has none, so pass "
                "`fiducial`."
            )
        fid = check_fiducial(fid)
        missing = [n for n in F.names if n not in fid]
        if missing:
            raise ParameterError(
                f"`fiducial` has no value for {missing}; the matrix has parameters {list(F.names)}."
            )
        names = check_names(params, {n: fid[n] for n in F.names})
        scales = _check_scales(scales, names, fid)
        # Parameters not in `params` are held fixed: keep only their rows and columns.
        order = [F.names.index(n) for n in names]
        M = F.matrix[np.ix_(order, order)]
        scale = _scale_vector(names, fid, scales)
        factor = _factor_from_fisher(np.asarray(M, dtype=np.float64), scale)
        s = np.linalg.svd(factor.Rn, compute_uv=False)
        rank = _rank(s, rtol)
        return _analyse(
            names=names,
            fiducial=fid,
            scale=scale,
            scales=scales,
            factor=factor,
            ranks=[rank],
            rank=rank,
            random_points=[],
            random_nulls=[],
            rtol=rtol,
            crb_threshold=crb_threshold,
            collinearity_threshold=collinearity_threshold,
            source="fisher",
            notes=[
                *notes,
                "From a FisherMatrix: no structural analysis (no model, "
                "no random points); the rank is numerical.",
            ],
        )

    experiments = as_experiments(experiment_or_fisher)
    check_mode(mode, experiments)
    if fiducial is None:
        raise ValueError(
            "identifiability(experiment) needs `fiducial`, the parameter values "
            "at which to analyse the model."
        )
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    scales = _check_scales(scales, names, fid)
    scale = _scale_vector(names, fid, scales)
    is_log = np.array([fid[n] != 0 for n in names])
    with float64():
        fid64 = {k: np.float64(v) for k, v in fid.items()}
        factor = _factor_at(experiments, fid64, names, mode, scale)
        s = np.linalg.svd(factor.Rn, compute_uv=False)
        ranks = [_rank(s, rtol)]
        rng = np.random.default_rng(seed)
        points, nulls = [], []
        for _ in range(n_random):
            u = rng.normal(0.0, spread, size=len(names))
            point = dict(fid64)
            for i, (n, ui) in enumerate(zip(names, u, strict=True)):
                v = fid[n]
                point[n] = np.float64(v * math.exp(ui) if v != 0 else ui * scale[i])
            scale_at = _scale_of([point[n] for n in names])
            try:
                other = _factor_at(experiments, point, names, mode, scale_at)
            except (FisherError, ValueError, np.linalg.LinAlgError) as exc:
                notes.append(f"Random point {len(points) + 1} skipped: {str(exc).splitlines()[0]}")
                continue
            points.append({n: float(point[n]) for n in names})
            r, B = _null_basis_at(other, scale_at, scale, is_log, rtol)
            ranks.append(r)
            nulls.append((r, B))
    rank = max(ranks)
    return _analyse(
        names=names,
        fiducial=fid,
        scale=scale,
        scales=scales,
        factor=factor,
        ranks=ranks,
        rank=rank,
        random_points=points,
        random_nulls=[B for r, B in nulls if r == rank],
        rtol=rtol,
        crb_threshold=crb_threshold,
        collinearity_threshold=collinearity_threshold,
        source="experiment",
        notes=notes,
    )


def collinearity_index(
    experiment_or_fisher, fiducial=None, names=None, *, params=None, rtol=RANK_RTOL, mode="forward"
) -> float:
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
        report = identifiability(
            experiment_or_fisher, fiducial, params=params, n_random=0, rtol=rtol
        )
        return report.collinearity_index(names)
    experiments = as_experiments(experiment_or_fisher)
    check_mode(mode, experiments)
    if fiducial is None:
        raise ValueError("collinearity_index(experiment) needs `fiducial`.")
    fid = check_fiducial(fiducial)
    varied = check_names(params, fid)
    subset = varied if names is None else check_names(names, {n: 0 for n in varied})
    scale = _scale_of([fid[n] for n in varied])
    with float64():
        factor = _factor_at(
            experiments, {k: np.float64(v) for k, v in fid.items()}, varied, mode, scale
        )
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
            raise TypeError(
                f"options {sorted(kwargs)} apply only when an experiment is "
                "passed; the report is already computed."
            )
    elif isinstance(report_or_experiment, Experiment | list | tuple | FisherMatrix):
        report = identifiability(report_or_experiment, fiducial, params=params, **kwargs)
    else:
        raise TypeError(
            "Expected an IdentifiabilityReport, an ff.Experiment (or a list of "
            f"them) or a FisherMatrix; received {quote(report_or_experiment)}."
        )
    center = dict(report.fiducial)
    if fiducial is not None:
        fid = check_fiducial(fiducial)
        missing = [n for n in report.names if n not in fid]
        if missing:
            raise ParameterError(
                f"`fiducial` has no value for {missing}; the report analyses {list(report.names)}."
            )
        for n in report.names:
            if (report.parameterisation[n] == "ln") != (fid[n] != 0) or (
                fid[n] * report.fiducial[n] < 0
            ):
                raise ValueError(
                    f"fiducial[{n!r}] = {fid[n]!r} cannot centre the prior: the report treats "
                    f"{n!r} as {report.parameterisation[n]} around {report.fiducial[n]!r}; the "
                    "centre must have the same sign (and be non-zero for ln-parameters)."
                )
            center[n] = fid[n]
    if which == "structural":
        U = np.asarray(report._null_basis)
    else:
        lam_cut = 1.0 / report.crb_threshold**2
        ev = np.asarray(report.eigenvalues)
        U = np.asarray(report.eigenvectors)[:, ev < lam_cut]
    return report, center, U


def _check_lam(lam):
    if (
        isinstance(lam, bool)
        or not isinstance(lam, int | float | np.integer | np.floating)
        or not 0 < float(lam) < math.inf
    ):
        raise ValueError(f"`lam` must be a positive finite number; received {lam!r}.")
    return float(lam)


def nullspace_prior(
    report_or_experiment,
    fiducial=None,
    lam=1.0,
    *,
    params=None,
    which="structural",
    log=False,
    **identifiability_options,
) -> FisherMatrix:
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
    report, center, U = _report_and_center(
        report_or_experiment, fiducial, params, which, identifiability_options
    )
    names = report.names
    M = lam * (U @ U.T) if U.size else np.zeros((len(names), len(names)))
    meta = {
        "lam": lam,
        "which": which,
        "space": "ln",
        "null_directions": [dict(d) for d in report.null_directions],
    }
    is_log = [report.parameterisation[n] == "ln" for n in names]
    # U is in the report's coordinates: ln|θ|, and θ/scale for linear parameters.
    lin_scale = np.where(is_log, 1.0, np.asarray(report._scale, dtype=np.float64))
    if log:
        new = tuple(f"ln_{n}" if report.parameterisation[n] == "ln" else n for n in names)
        fid = {
            m: (math.log(abs(center[n])) if report.parameterisation[n] == "ln" else center[n])
            for n, m in zip(names, new, strict=True)
        }
        return FisherMatrix(
            M / np.outer(lin_scale, lin_scale),
            new,
            fiducial=fid,
            name="nullspace prior",
            metadata=meta,
        )
    d = np.where(is_log, _scale_of([center[n] for n in names]), lin_scale)
    return FisherMatrix(
        M / np.outer(d, d), names, fiducial=center, name="nullspace prior", metadata=meta
    )


def nullspace_penalty(
    report_or_experiment,
    fiducial=None,
    lam=1.0,
    *,
    params=None,
    which="structural",
    **identifiability_options,
):
    """A pure JAX penalty ``λ ‖Uᵀ(ln θ − ln θ*)‖²`` on the non-identifiable subspace.

    `U` is the same basis as in :func:`nullspace_prior` (ln-parameters; parameters whose
    fiducial is 0 enter linearly, as ``θ/scale`` with the report's `scales`, default 1).
    Add the penalty to ``−2 ln L`` (χ²) when fitting: half its Hessian at ``θ*`` is exactly
    the matrix returned by :func:`nullspace_prior`. It pins the fit along the directions the
    data cannot see and has no gradient along the others at ``θ*``.

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
    report, center, U = _report_and_center(
        report_or_experiment, fiducial, params, which, identifiability_options
    )
    names = report.names
    is_log = np.array([report.parameterisation[n] == "ln" for n in names])
    ref = np.array([center[n] for n in names], dtype=np.float64)
    # Divide by 1 where the parameter is linear (its centre may be 0): a division by 0 in
    # the unused branch of a `where` would still poison the gradient with NaN.
    ratio_ref = np.where(is_log, ref, 1.0)
    # Linear parameters enter in the report's coordinates θ/scale (scale 1 unless given).
    lin_scale = np.where(is_log, 1.0, np.asarray(report._scale, dtype=np.float64))
    U = np.array(U, dtype=np.float64)

    def penalty(params):
        missing = [n for n in names if n not in params]
        if missing:
            raise ParameterError(
                f"nullspace penalty: `params` has no value for {missing}; it needs {list(names)}."
            )
        theta = jnp.stack([jnp.asarray(params[n]) for n in names])
        dtype = jnp.result_type(theta.dtype, jnp.float32)
        log_mask = jnp.asarray(is_log)
        delta = jnp.where(
            log_mask,
            jnp.log(jnp.where(log_mask, theta / ratio_ref, 1.0)),
            (theta - ref) / lin_scale,
        ).astype(dtype)
        if U.shape[1] == 0:
            return jnp.zeros((), dtype)
        proj = jnp.asarray(U, dtype).T @ delta
        return lam * jnp.sum(proj**2)

    return penalty


def marginal_sigma_pinv(F, names, fiducial, rtol=RANK_RTOL):
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
    in_null = np.linalg.norm(null, axis=1) >= NULL_COMPONENT_TOL if null.size else np.zeros(P, bool)
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
