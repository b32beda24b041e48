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

* ``STRUCTURAL_RTOL = 1e-6``: a singular value of the column-normalised ``S`` below ``rtol`` times
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
* ``OPERATOR_MIN_PARAMS = 500``: with ``path="auto"`` (the default), above this many
  parameter elements, or when a fiducial value is an array, the report is built matrix-free
  (:mod:`.operator_report`): Lanczos on ``ff.fisher_operator``, no
  ``P × P`` matrix; the subset search, coordinate identifiability, random points and the
  likelihood-path check are skipped. The dense report costs O(P⁴): coordinate
  identifiability solves P least-squares problems of size N × P (3 s at P = 200, 26 s at
  P = 400, one thread), the greedy subset search P SVDs per elimination step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from .._checks import (
    as_experiments,
    check_fiducial,
    check_fiducial_arrays,
    check_int,
    check_mode,
    check_name_mapping,
    check_names,
)
from .._errors import FisherError, InputError, ParameterError, quote
from .._matrix import FisherMatrix
from .._x64 import float64
from .factor import (
    COLLINEARITY_THRESHOLD,
    CRB_THRESHOLD,
    NULL_COMPONENT_TOL,
    STRUCTURAL_RTOL,
    Factor,
    coordinate_identifiability,
    factor_at,
    factor_from_fisher,
    gamma,
    null_basis_at,
    numerical_rank,
    orthonormal,
    reference_scale,
    spectrum,
    split_null_space,
    subset_search,
)
from .nonlinearity import fisher_path_check
from .operator_report import N_EIGEN, operator_identifiability
from .report import IdentifiabilityReport, spectrum_fields
from .words import coordinate_label, directions, local_text, null_space_texts, sloppy_text

#: ``path="auto"`` builds the report matrix-free above this many parameter elements.
OPERATOR_MIN_PARAMS = 500
_PATHS = ("auto", "dense", "operator")


def _check_options(n_random, rtol, crb_threshold, collinearity_threshold, spread):
    if isinstance(n_random, bool) or not isinstance(n_random, int | np.integer) or n_random < 0:
        raise InputError(f"`n_random` must be a non-negative integer; received {n_random!r}.")
    for label, value, lo, hi in (
        ("rtol", rtol, 0.0, 1.0),
        ("spread", spread, 0.0, math.inf),
        ("crb_threshold", crb_threshold, 0.0, math.inf),
        ("collinearity_threshold", collinearity_threshold, 1.0, math.inf),
    ):
        ok = isinstance(value, int | float | np.floating) and lo < float(value) < hi
        if not ok:
            raise InputError(f"`{label}` must be a number in ({lo:g}, {hi:g}); received {value!r}.")


class Coordinates(NamedTuple):
    """The analysed parameters and their coordinates: ``ln|θ|``, or ``θ/scale`` for a
    parameter whose fiducial is 0 (`scale` its ``scales=`` entry, default 1)."""

    names: list
    fiducial: dict
    scale: np.ndarray  # the unit of each coordinate (|θ|, or the scale at a zero fiducial)
    scales: dict  # the reference scales given with ``scales=``
    log: dict  # name -> analysed in ln|θ|
    scaled: dict  # name -> has a unit-free size (non-zero fiducial, or a scale given)
    labels: dict  # name -> how a coefficient reads ("ln a", "dc", "d(c/0.5)")

    @classmethod
    def make(cls, names, fiducial, scales):
        names = list(names)
        log = {n: fiducial[n] != 0 for n in names}
        return cls(
            names=names,
            fiducial=fiducial,
            scale=reference_scale(names, fiducial, scales),
            scales=scales,
            log=log,
            scaled={n: log[n] or n in scales for n in names},
            labels={n: coordinate_label(n, log[n], scales.get(n)) for n in names},
        )


class Structure(NamedTuple):
    """What the structural part measured: the factor at the fiducial, the ranks (fiducial
    first), the random points and their null spaces of the generic rank."""

    factor: Factor
    ranks: list
    rank: int
    random_points: list
    random_nulls: list
    source: str  # "experiment" or "fisher"
    notes: list


class Thresholds(NamedTuple):
    rtol: float
    crb_threshold: float
    collinearity_threshold: float


class _NullSpace(NamedTuple):
    s: np.ndarray  # singular values of the factor at the fiducial
    Vt: np.ndarray
    rank_fid: int
    basis: np.ndarray  # structural null basis, ln-coordinates (P × n_null)
    directions: list
    texts: list
    local_directions: list
    local_texts: list
    involved: set  # parameters in a structural null direction
    local_involved: set  # parameters in a null direction of the fiducial only
    alignment: float | None


def _null_space(co: Coordinates, st: Structure, rtol) -> _NullSpace:
    """The null space at the fiducial in ln-coordinates (``S̃ ṽ = 0 ⇔ S_log (ṽ / norms) =
    0``), split into the structural (generic) part and an extra local part at a special
    fiducial, with its words."""
    _, s, Vt = np.linalg.svd(st.factor.Rn)
    rank_fid = numerical_rank(s, rtol)
    safe = np.where(st.factor.norms > 0, st.factor.norms, 1.0)
    N_fid = orthonormal((Vt[rank_fid:] / safe).T)
    n_null = len(co.names) - st.rank
    U_null, U_local, alignment = split_null_space(N_fid, n_null, st.random_nulls)
    null_dirs = directions(U_null, co.names)
    local_dirs = directions(U_local, co.names)
    return _NullSpace(
        s=s,
        Vt=Vt,
        rank_fid=rank_fid,
        basis=U_null,
        directions=null_dirs,
        texts=null_space_texts(null_dirs, co.log, co.labels),
        local_directions=local_dirs,
        local_texts=[local_text(d, co.labels) for d in local_dirs],
        involved=set().union(*null_dirs) if null_dirs else set(),
        local_involved=set().union(*local_dirs) if local_dirs else set(),
        alignment=alignment,
    )


def _spectrum_fields(co: Coordinates, factor: Factor, ns: _NullSpace, th: Thresholds) -> dict:
    """The log-FIM spectrum (eigenvalues ascending, eigenvectors as columns), its condition
    number, and the poorly determined directions in words."""
    names = co.names
    eigenvalues, eigenvectors, n_zero = spectrum(
        factor.Rn,
        factor.norms,
        [co.scaled[n] for n in names],
        ns.s[0] if ns.s.size else 0.0,
        ns.rank_fid,
        th.rtol,
    )
    m = eigenvalues.size
    if m == 0:
        condition = math.nan
    elif n_zero or eigenvalues[0] <= 0:
        condition = math.inf
    else:
        condition = float(eigenvalues[-1] / eigenvalues[0])
    weakest = (
        {n: float(c) for n, c in zip(names, eigenvectors[:, 0], strict=True) if co.scaled[n]}
        if m
        else {}
    )
    sloppy, sloppy_texts = [], []
    for k in range(n_zero, m):
        if not (eigenvalues[k] > 0 and eigenvalues[k] ** -0.5 > th.crb_threshold):
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
            sloppy_text(k, shown, names, co.log, co.labels, eigenvalues, eigenvectors, n_zero)
        )
    return spectrum_fields(
        eigenvalues, eigenvectors, condition, weakest, sloppy, sloppy_texts, n_zero
    )


def _crb_fields(co: Coordinates, factor: Factor, ns: _NullSpace, crb_threshold) -> dict:
    """Cramér–Rao bounds from the pseudo-inverse of the unit-diagonal log-FIM over the
    non-zero singular values at the fiducial; a parameter in a null direction (structural or
    local to the fiducial) has an infinite bound. The practical verdicts."""
    P, r, norms = len(co.names), ns.rank_fid, factor.norms
    inv_diag = np.sum((ns.Vt[:r] / ns.s[:r, None]) ** 2, axis=0) if r else np.zeros(P)
    rel_crb, abs_crb, practical = {}, {}, {}
    for i, n in enumerate(co.names):
        if n in ns.involved or n in ns.local_involved or norms[i] == 0:
            sigma = math.inf
        else:
            sigma = float(math.sqrt(inv_diag[i]) / norms[i])  # in units of scale[i]
        abs_crb[n] = sigma * float(co.scale[i])
        rel_crb[n] = sigma if co.scaled[n] or sigma == math.inf else math.nan
        if n in ns.involved or sigma == math.inf:
            practical[n] = False
        elif not co.scaled[n]:
            practical[n] = None  # no unit-free size to compare an absolute bound with
        else:
            practical[n] = sigma <= crb_threshold
    return dict(
        relative_crb=rel_crb,
        absolute_crb=abs_crb,
        practically_identifiable=practical,
        identifiable=dict(practical),
    )


def _notes(co: Coordinates, st: Structure, ns: _NullSpace, gamma_all, abs_crb, practical):
    """Caveats: a special fiducial, a local degeneracy, linear parameters, n/a verdicts, a
    factor from the Fisher matrix."""
    notes = list(st.notes)
    names = co.names
    if st.source == "experiment" and ns.rank_fid < st.rank:
        notes.append(
            f"The rank at the fiducial ({ns.rank_fid}) is lower than at nearby random points "
            f"({st.rank}): the fiducial is a special point with an extra local degeneracy "
            "(local_null_directions). The structural null directions are those of the random "
            "points; the practical numbers below are computed at the fiducial and show it."
        )
        if ns.alignment is not None and ns.alignment < 0.5:
            notes.append(
                f"The null spaces at the random points lie poorly inside the fiducial's (best "
                f"cos² {ns.alignment:.2g}): the structural null directions shown are the "
                "closest ones at the fiducial; try a smaller `spread`."
            )
    if not math.isfinite(gamma_all) and st.rank == len(names):
        notes.append(
            "The full-set collinearity index is infinite although the generic rank "
            "is full: the degeneracy is local to the fiducial."
        )
    linear = [n for n in names if not co.log[n]]
    if linear:
        given = {n: co.scales[n] for n in linear if n in co.scales}
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
    if st.factor.method != "whitened sensitivities":
        notes.append(
            "Computed from a square root of the Fisher matrix (numerical floor "
            "~1e-8 in relative singular values instead of ~1e-16)."
        )
    return notes


def analyse(co: Coordinates, st: Structure, th: Thresholds) -> IdentifiabilityReport:
    """The report from the factor at the fiducial and the structural measurements."""
    names, factor, Rn = co.names, st.factor, st.factor.Rn
    ns = _null_space(co, st, th.rtol)
    crb = _crb_fields(co, factor, ns, th.crb_threshold)
    subsets, search = subset_search(Rn, names, th.collinearity_threshold, th.rtol)
    gamma_all = gamma(Rn, range(len(names)), th.rtol)
    fid = {n: co.fiducial[n] for n in names}
    return IdentifiabilityReport(
        names=tuple(names),
        n_params=len(names),
        source=st.source,
        fiducial=fid,
        parameterisation={n: "ln" if co.log[n] else "linear" for n in names},
        scales={n: co.scales[n] for n in names if n in co.scales},
        rank=st.rank,
        rank_at_fiducial=ns.rank_fid,
        ranks=list(st.ranks),
        random_points=st.random_points,
        singular_values=ns.s,
        rtol=float(th.rtol),
        null_directions=ns.directions,
        null_descriptions=ns.texts,
        local_null_directions=ns.local_directions,
        local_null_descriptions=ns.local_texts,
        structurally_identifiable={n: n not in ns.involved for n in names},
        **_spectrum_fields(co, factor, ns, th),
        **crb,
        crb_threshold=float(th.crb_threshold),
        coordinate_identifiability=dict(
            zip(names, coordinate_identifiability(Rn).tolist(), strict=True)
        ),
        collinearity=gamma_all,
        collinearity_threshold=float(th.collinearity_threshold),
        identifiable_subsets=subsets,
        subset_search=search,
        fisher=FisherMatrix(factor.fisher, names, fiducial=fid),
        method=factor.method,
        notes=_notes(co, st, ns, gamma_all, crb["absolute_crb"], crb["practically_identifiable"]),
        _Rn=Rn,
        _norms=factor.norms,
        _scale=co.scale,
        _null_basis=ns.basis,
        _labels=co.labels,
    )


def check_scales(scales, names, fid):
    """`scales` -> dict name -> float, for parameters whose fiducial is 0."""
    scales = check_name_mapping(
        scales,
        names,
        "scales",
        "name -> reference scale (for parameters whose fiducial is 0)",
        "analysed; the parameters are",
    )
    if not scales:
        return {}
    out = {}
    for n, v in scales.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float | np.integer | np.floating)
            or not 0 < float(v) < math.inf
        ):
            raise InputError(
                f"`scales[{n!r}]` must be a positive finite number; received {quote(v)}."
            )
        if fid[n] != 0:
            raise InputError(
                f"`scales[{n!r}]`: {n!r} has the non-zero fiducial {fid[n]!r}, "
                "which already sets its scale; `scales` is only for parameters "
                "whose fiducial is 0."
            )
        out[n] = float(v)
    return out


def identifiability(
    experiment_or_fisher,
    fiducial=None,
    *,
    params=None,
    n_random=3,
    spread=0.1,
    rtol=STRUCTURAL_RTOL,
    crb_threshold=CRB_THRESHOLD,
    collinearity_threshold=COLLINEARITY_THRESHOLD,
    seed=0,
    mode="forward",
    scales=None,
    check_nonlinearity=True,
    path="auto",
    n_eigen=N_EIGEN,
    crb_params=None,
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
    - `check_nonlinearity`: probe the likelihood 2σ out along each parameter's Fisher
      profile path (two model evaluations per parameter) and list in
      ``profile_recommended`` the parameters whose Fisher verdict is then unreliable.
    - `scales`: dict name -> positive reference magnitude, in the parameter's units, for
      parameters whose fiducial is 0: the CRB is then ``σ(θ)/scale`` and is judged like a
      relative one, and the parameter enters the spectrum in units of its scale.
    - `path`: ``"dense"`` (the analysis above, scalar parameters), ``"operator"`` (matrix
      free, for large models: see below) or ``"auto"`` (default): the operator above
      ``OPERATOR_MIN_PARAMS`` (500) parameter elements or when a fiducial value is an array.
    - `n_eigen`, `crb_params` (operator path only): how many of the weakest non-null
      eigen-directions of the log-FIM to compute (default 6), and the parameters (names,
      or element names such as ``"w[3]"``, or ``"all"``) whose Cramér–Rao bounds are
      computed, one conjugate-gradient solve each (default: the scalar parameters).

    **Matrix-free path.** The same quantities from products ``F v`` (one jvp and one vjp,
    as :func:`ff.fisher_operator`), never the ``P × P`` matrix: the null space of the
    unit-diagonal log-FIM by Lanczos with deflated restarts (rank and non-identifiable
    combinations at the fiducial), the `n_eigen` smallest log-FIM eigenvalues off it (sloppy
    and weakest directions, put into words for their largest loadings), γ of all
    parameters, and the CRBs of `crb_params` by conjugate gradients on the pseudo-inverse.
    Random points, the subset search, coordinate identifiability and the likelihood-path
    check are skipped (``None``/empty fields; the summary says so); `mode`, `n_random`,
    `spread` and `check_nonlinearity` do not apply. See ``docs/identifiability.md``.

    **Returns:** an :class:`IdentifiabilityReport` (``path`` says which analysis made it).

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
    if not isinstance(path, str) or path not in _PATHS:
        raise InputError(f"`path` must be one of {_PATHS}; received {quote(path)}.")
    n_eigen = check_int(n_eigen, "n_eigen", 1)
    thresholds = Thresholds(rtol, crb_threshold, collinearity_threshold)
    if isinstance(experiment_or_fisher, IdentifiabilityReport):
        raise TypeError(
            "identifiability() received a report; pass the experiment or the "
            "FisherMatrix it was made from."
        )
    if isinstance(experiment_or_fisher, FisherMatrix):
        if path == "operator":
            raise InputError(
                "path='operator' needs an experiment (a model to differentiate); a "
                "FisherMatrix is already dense: use path='auto' or 'dense'."
            )
        co, st = _from_fisher(experiment_or_fisher, fiducial, params, scales, rtol)
        return analyse(co, st, thresholds)
    experiments = as_experiments(experiment_or_fisher)
    check_mode(mode, experiments)
    if fiducial is None:
        raise InputError(
            "identifiability(experiment) needs `fiducial`, the parameter values "
            "at which to analyse the model."
        )
    fid_a = check_fiducial_arrays(fiducial)
    operator = _operator_reason(path, fid_a, params)
    if operator is not None:
        with float64():
            return operator_identifiability(
                experiments,
                fid_a,
                check_names(params, fid_a),
                scales=scales,
                rtol=rtol,
                crb_threshold=crb_threshold,
                collinearity_threshold=collinearity_threshold,
                n_eigen=n_eigen,
                crb_params=crb_params,
                seed=seed,
                reason=operator,
            )
    fid = check_fiducial(fiducial)
    names = check_names(params, fid)
    co = Coordinates.make(names, fid, check_scales(scales, names, fid))
    with float64():
        st = _structure(experiments, co, mode, n_random, spread, seed, rtol)
        report = analyse(co, st, thresholds)
        if check_nonlinearity:
            fid64 = {k: np.float64(v) for k, v in fid.items()}
            F = report.fisher
            assert F is not None  # the dense report always carries its matrix
            ratios, flagged = fisher_path_check(experiments, fid64, F.names, F.matrix, mode)
            report = dataclasses.replace(report, fisher_path=ratios, profile_recommended=flagged)
    return report


def _operator_reason(path, fid, params):
    """Why the matrix-free path is taken (``None``: the dense one), from `path`, the
    parameter count and whether a fiducial value is an array."""
    arrays = [n for n, v in fid.items() if np.ndim(v)]
    if path == "dense":
        if arrays:
            raise InputError(
                f"path='dense' takes scalar parameters; fiducial[{arrays[0]!r}] has shape "
                f"{np.shape(fid[arrays[0]])}. Use path='operator' (or 'auto') for "
                "array-valued parameters, or split them into named scalars."
            )
        return None
    size = sum(int(np.size(fid[n])) for n in check_names(params, fid))
    if path == "operator":
        return f"path='operator', P = {size}"
    if size > OPERATOR_MIN_PARAMS:
        return f"P = {size} > OPERATOR_MIN_PARAMS = {OPERATOR_MIN_PARAMS}"
    if arrays:
        return f"array-valued parameters {arrays[:3]}: the dense path takes named scalars"
    return None


def _from_fisher(F, fiducial, params, scales, rtol):
    """Coordinates and structure of a bare FisherMatrix: the rank is the matrix's own."""
    fid = fiducial if fiducial is not None else F.fiducial
    if fid is None:
        raise InputError(
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
    co = Coordinates.make(names, fid, check_scales(scales, names, fid))
    # Parameters not in `params` are held fixed: keep only their rows and columns.
    order = [F.names.index(n) for n in names]
    M = F.matrix[np.ix_(order, order)]
    factor = factor_from_fisher(np.asarray(M, dtype=np.float64), co.scale)
    rank = numerical_rank(np.linalg.svd(factor.Rn, compute_uv=False), rtol)
    note = (
        "From a FisherMatrix: no structural analysis (no model, no random points); the rank "
        "is numerical."
    )
    return co, Structure(factor, [rank], rank, [], [], "fisher", [note])


def _structure(experiments, co: Coordinates, mode, n_random, spread, seed, rtol) -> Structure:
    """The factor at the fiducial, and the ranks and null spaces at `n_random` random
    points ``θ·exp(u)`` (``u·scale`` at a zero fiducial), ``u ~ N(0, spread²)``. Call under
    float64."""
    names, fid, scale = co.names, co.fiducial, co.scale
    is_log = np.array([co.log[n] for n in names])
    notes = []
    fid64 = {k: np.float64(v) for k, v in fid.items()}
    factor = factor_at(experiments, fid64, names, mode, scale)
    ranks = [numerical_rank(np.linalg.svd(factor.Rn, compute_uv=False), rtol)]
    rng = np.random.default_rng(seed)
    points, nulls = [], []
    for _ in range(n_random):
        u = rng.normal(0.0, spread, size=len(names))
        point = dict(fid64)
        for i, (n, ui) in enumerate(zip(names, u, strict=True)):
            v = fid[n]
            point[n] = np.float64(v * math.exp(ui) if v != 0 else ui * scale[i])
        scale_at = reference_scale(names, point)
        try:
            other = factor_at(experiments, point, names, mode, scale_at)
        except (FisherError, ValueError, np.linalg.LinAlgError) as exc:
            notes.append(f"Random point {len(points) + 1} skipped: {str(exc).splitlines()[0]}")
            continue
        points.append({n: float(point[n]) for n in names})
        r, B = null_basis_at(other, scale_at, scale, is_log, rtol)
        ranks.append(r)
        nulls.append((r, B))
    rank = max(ranks)
    random_nulls = [B for r, B in nulls if r == rank]
    return Structure(factor, ranks, rank, points, random_nulls, "experiment", notes)


def collinearity_index(
    experiment_or_fisher,
    fiducial=None,
    names=None,
    *,
    params=None,
    rtol=STRUCTURAL_RTOL,
    mode="forward",
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
        raise InputError("collinearity_index(experiment) needs `fiducial`.")
    fid = check_fiducial(fiducial)
    varied = check_names(params, fid)
    subset = varied if names is None else check_names(names, {n: 0 for n in varied})
    scale = reference_scale(varied, fid)
    with float64():
        factor = factor_at(
            experiments, {k: np.float64(v) for k, v in fid.items()}, varied, mode, scale
        )
    return gamma(factor.Rn, [varied.index(n) for n in subset], rtol)


__all__ = ["collinearity_index", "identifiability"]
