"""Identifiability without a ``P × P`` matrix: the report of ``ff.identifiability`` on its
matrix-free path (``path="operator"``, or ``"auto"`` above ``OPERATOR_MIN_PARAMS``).

The same quantities as the dense analysis (:mod:`.analysis`), from products ``F v`` only
(:mod:`.operator_spectrum`):

* the diagonal of ``F`` (exact up to ``AUTO_EXACT_DIAGONAL`` parameters, Hutchinson's
  estimate above) gives the column norms of the log-parameter sensitivities and the
  unit-diagonal log-FIM ``A = S̃ᵀS̃``;
* the null space of ``A`` (singular values ``≤ rtol`` × the largest) by deflated Lanczos
  restarts: the rank at the fiducial and the non-identifiable combinations, in words for
  their `TOP_LOADINGS` largest loadings;
* the `n_eigen` smallest eigenvalues of the log-FIM off the null space (Lanczos): the
  sloppy directions, the weakest direction, the condition number;
* relative Cramér–Rao bounds of the requested parameters (`crb_params`) by conjugate
  gradients on ``A`` shifted on its null space (the pseudo-inverse, as the dense report).

Skipped, because they need the matrix or grow with P: the random points of the generic
rank, the identifiable-subset search, coordinate identifiability, the likelihood-path check
and the :class:`FisherMatrix` itself (those fields are ``None`` or empty; the summary says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .._checks import check_subset, element_names
from .._errors import InputError, ParameterError, quote
from .._operator.operator import AUTO_EXACT_DIAGONAL, fisher_operator
from .factor import NULL_COMPONENT_TOL, orthonormal, unit_direction
from .operator_spectrum import (
    RITZ_FLOOR,
    SMALL_BUFFER,
    Scaled,
    inverse_diagonal,
    null_space,
    smallest_ritz,
    step_cap,
)
from .report import IdentifiabilityReport, spectrum_fields
from .words import coordinate_label, direction_text, directions, null_space_texts

#: The weak directions of the matrix-free report keep (and put into words) this many of
#: their largest loadings; the full vectors are in ``eigenvectors``.
TOP_LOADINGS = 8
#: Default number of the weakest non-null eigen-directions of the log-FIM computed.
N_EIGEN = 6
#: At most this many null directions are searched (one deflated Lanczos run each).
MAX_NULL = 32
#: Tolerance of the Ritz pairs (relative residual).
EIGEN_TOL = 1e-8
#: Cramér–Rao bounds by conjugate gradients: relative residual, most steps per parameter.
CRB_RTOL = 1e-10
CRB_MAX_STEPS = 10_000
#: Probes of Hutchinson's diagonal above ``AUTO_EXACT_DIAGONAL`` parameters.
HUTCHINSON_PROBES = 64


def element_scales(scales, fid, names, labels) -> dict:
    """`scales` (keys: parameters or element names) -> element name -> scale, for the
    elements whose fiducial is 0."""
    if scales is None:
        return {}
    if not isinstance(scales, Mapping):
        raise TypeError(
            "`scales` must be a dict name -> reference scale (for parameters whose fiducial "
            f"is 0); received {quote(scales)}."
        )
    label_set = set(labels)
    out = {}
    for key, v in scales.items():
        if key in names:
            elems = element_names(key, fid[key])
            vals = np.asarray(fid[key], dtype=np.float64).reshape(-1)
        elif key in label_set:
            elems, vals = (key,), None
        else:
            raise ParameterError(
                f"`scales` names {key!r}, which is not analysed; the parameters are "
                f"{list(names)} (or their elements, e.g. 'w[0]')."
            )
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float | np.integer | np.floating)
            or not 0 < float(v) < math.inf
        ):
            raise InputError(
                f"`scales[{key!r}]` must be a positive finite number; received {quote(v)}."
            )
        if vals is None:
            block = key.split("[")[0]
            index = element_names(block, fid[block]).index(key)
            vals = np.asarray(fid[block], dtype=np.float64).reshape(-1)[index : index + 1]
        zero = [e for e, x in zip(elems, vals, strict=True) if x == 0]
        if not zero:
            raise InputError(
                f"`scales[{key!r}]`: no element of {key!r} has fiducial 0; `scales` is only "
                "for parameters whose fiducial is 0 (a non-zero fiducial sets its own scale)."
            )
        out.update(dict.fromkeys(zero, float(v)))
    return out


def crb_targets(crb_params, fid, names, labels) -> list:
    """The elements whose Cramér–Rao bounds are computed: default the scalar parameters."""
    if crb_params is None:
        return [n for n in names if np.ndim(fid[n]) == 0]
    if isinstance(crb_params, str) and crb_params == "all" and "all" not in labels:
        return list(labels)
    if not isinstance(crb_params, str | list | tuple):
        raise TypeError(
            "`crb_params` must be a name, a list of names (parameters or elements such as "
            f"'w[3]') or 'all'; received {quote(crb_params)}."
        )
    return check_subset(
        list(crb_params) if not isinstance(crb_params, str) else crb_params, labels, "crb_params"
    )


def top_loadings(vec, labels, keep=None) -> dict:
    """The `TOP_LOADINGS` largest coefficients (``≥ NULL_COMPONENT_TOL``) of `vec`."""
    mag = np.abs(vec) if keep is None else np.where(keep, np.abs(vec), 0.0)
    order = np.argsort(-mag, kind="stable")[:TOP_LOADINGS]
    order = sorted(i for i in order if mag[i] >= NULL_COMPONENT_TOL)
    return {labels[i]: float(vec[i]) for i in order}


def _truncated(text_coeffs, n_total, labels, verdict) -> str:
    return (
        f"{direction_text(text_coeffs, labels)} + … ({n_total} parameters above "
        f"{NULL_COMPONENT_TOL:g}; the {len(text_coeffs)} largest loadings shown) {verdict}"
    )


def _null_words(N_ln, labels, log, coord_labels):
    """Null directions (top loadings), their words, and every parameter in one of them."""
    full = directions(N_ln, list(labels))
    involved = set().union(*full) if full else set()
    small = [d for d in full if len(d) <= TOP_LOADINGS]
    texts = null_space_texts(small, log, coord_labels) if small else []
    shown = []
    for d in full:
        top = dict(sorted(d.items(), key=lambda kv: -abs(kv[1]))[:TOP_LOADINGS])
        top = {n: top[n] for n in d if n in top}  # the parameters' order
        shown.append(top)
        if len(d) > TOP_LOADINGS:
            texts.append(_truncated(top, len(d), coord_labels, "is not identifiable"))
    return shown, texts, involved


def _spectrum(
    flog: Scaled, N_ln, null_values, n_eigen, labels, scaled, crb_threshold, coord_labels, rng
) -> tuple[dict, dict]:
    """The log-FIM: Rayleigh quotients on the null space, the `n_eigen` smallest eigenpairs
    off it, the largest eigenvalue; the sloppy and the weakest directions."""
    P, r = N_ln.shape
    # On the null space: xᵀ F_log x = uᵀ A u / ‖u / norms‖² for x ∝ u / norms (A's Ritz values).
    rq = np.sort(np.clip(null_values, 0.0, None))
    k = min(n_eigen, P - r)
    if k > 0:
        ritz = smallest_ritz(flog, k, EIGEN_TOL, rng)
        vals, vecs, top, steps = ritz.values, ritz.vectors, ritz.top, ritz.steps
        resid = ritz.estimates / np.maximum(np.abs(vals), RITZ_FLOOR * abs(top))
    else:
        vals, vecs, top, steps, resid = np.zeros(0), np.zeros((P, 0)), 0.0, 0, np.zeros(0)
    eigenvalues = np.concatenate([rq, vals])
    eigenvectors = np.hstack([N_ln, vecs])
    eigenvectors = (
        np.column_stack([unit_direction(v) for v in eigenvectors.T])
        if eigenvectors.shape[1]
        else eigenvectors
    )
    if eigenvalues.size == 0:
        condition = math.nan
    elif r or eigenvalues[0] <= 0:
        condition = math.inf
    else:
        condition = float(top / eigenvalues[0])
    sloppy, texts = [], []
    for j in range(r, eigenvalues.size):
        lam = eigenvalues[j]
        if not (lam > 0 and lam**-0.5 > crb_threshold):
            continue
        vec = eigenvectors[:, j]
        coeffs = top_loadings(vec, labels)
        sloppy.append(coeffs)
        shown = {n: c for n, c in coeffs.items() if abs(c) >= 0.05} or coeffs
        verdict = f"is poorly determined (1σ width {lam**-0.5:.3g} in ln-units)"
        n_total = int(np.sum(np.abs(vec) >= NULL_COMPONENT_TOL))
        if n_total > len(shown):
            texts.append(_truncated(shown, n_total, coord_labels, verdict))
        else:
            texts.append(f"{direction_text(shown, coord_labels)} {verdict}")
    keep = np.array([scaled[n] for n in labels])
    weakest = top_loadings(eigenvectors[:, 0], labels, keep) if eigenvalues.size else {}
    more = bool(vals.size and vals[-1] > 0 and vals[-1] ** -0.5 > crb_threshold and k < P - r)
    info = dict(
        top=top,
        steps=steps,
        residual=float(np.max(resid, initial=0.0)),
        more=more,
        count=int(vals.size),
    )
    return spectrum_fields(eigenvalues, eigenvectors, condition, weakest, sloppy, texts, r), info


def _crbs(base: Scaled, ns, targets, labels, norms, sc, scaled, involved, crb_threshold):
    """Relative and absolute CRBs of `targets` from ``x = (A + UUᵀ)⁻¹eᵢ`` by conjugate
    gradients (``U``: the null basis; at small P by Lanczos quadrature over the whole
    space), ``(A⁺)ᵢᵢ = xᵢ − Σⱼ Uᵢⱼ²``; the practical verdicts.
    Returns the three dicts and a list of elements whose solve did not converge."""
    index = {n: i for i, n in enumerate(labels)}
    rel, absolute, practical, failed = {}, {}, {}, []
    todo = [n for n in targets if n not in involved and norms[index[n]] > 0]
    sigma = dict.fromkeys(targets, math.inf)
    if todo:
        rhs = np.zeros((len(todo), base.size))
        for j, n in enumerate(todo):
            rhs[j, index[n]] = 1.0
        solver = base._replace(U=ns.U, c=1.0)  # A + UUᵀ: c = 1 lies inside A's spectrum
        if step_cap(base.size) <= SMALL_BUFFER:  # small P: exact quadrature, no new kernel
            diag = [inverse_diagonal(solver, index[n]) for n in todo]
            resid = np.zeros(len(todo))
        else:
            x, resid = solver.solve(rhs, CRB_RTOL, min(base.size, CRB_MAX_STEPS))
            diag = [x[j, index[n]] for j, n in enumerate(todo)]
        for j, n in enumerate(todo):
            i = index[n]
            a_ii = diag[j] - float(np.sum(ns.U[i] ** 2))
            if not (np.isfinite(a_ii) and a_ii > 0 and resid[j] <= 1e-6):
                sigma[n] = math.nan
                failed.append(f"{n} (CG relative residual {resid[j]:.1e})")
            else:
                sigma[n] = math.sqrt(a_ii) / norms[i]  # in units of the coordinate scale
    for n in targets:
        s = sigma[n]
        absolute[n] = s * float(sc[index[n]])
        rel[n] = s if scaled[n] or s == math.inf else math.nan
        if n in involved or s == math.inf:
            practical[n] = False
        elif not scaled[n] or math.isnan(s):
            practical[n] = None
        else:
            practical[n] = s <= crb_threshold
    return rel, absolute, practical, failed


def operator_identifiability(
    experiments,
    fid,
    names,
    *,
    scales,
    rtol,
    crb_threshold,
    collinearity_threshold,
    n_eigen,
    crb_params,
    seed,
    reason,
) -> IdentifiabilityReport:
    """The matrix-free report (see the module docstring). `fid`: the checked fiducial
    (arrays allowed); `reason`: why this path was taken (for the notes). Call under float64."""
    op = fisher_operator(experiments, fid, params=list(names))  # validates, probes the model
    labels, P = op.labels, op.size
    values = op.fiducial
    targets = crb_targets(crb_params, fid, names, labels)
    el_scales = element_scales(scales, fid, names, labels)
    log = {n: values[n] != 0 for n in labels}
    scaled = {n: log[n] or n in el_scales for n in labels}
    coord_labels = {n: coordinate_label(n, log[n], el_scales.get(n)) for n in labels}
    sc = np.array([abs(values[n]) if log[n] else el_scales.get(n, 1.0) for n in labels])
    exact = P <= AUTO_EXACT_DIAGONAL
    diag = op.diagonal("exact" if exact else "hutchinson", n_probes=HUTCHINSON_PROBES)
    norms = sc * np.sqrt(np.clip(diag.values, 0.0, None))
    safe = np.where(norms > 0, norms, 1.0)
    fid64 = {k: np.asarray(v, dtype=np.float64) for k, v in fid.items()}
    base = Scaled(tuple(experiments), fid64, tuple(names), sc / safe, np.zeros((P, 0)))
    rng = np.random.default_rng(seed)
    ns = null_space(base, rtol, EIGEN_TOL, MAX_NULL, rng)
    r = ns.U.shape[1]
    N_ln = orthonormal(ns.U / safe[:, None])
    null_dirs, null_texts, involved = _null_words(N_ln, labels, log, coord_labels)
    null_values = ns.values / np.sum((ns.U / safe[:, None]) ** 2, axis=0) if r else np.zeros(0)
    spec, info = _spectrum(
        base._replace(d=sc, U=N_ln),
        N_ln,
        null_values,
        n_eigen,
        labels,
        scaled,
        crb_threshold,
        coord_labels,
        rng,
    )
    failed = []
    if ns.complete:
        rel, absolute, practical, failed = _crbs(
            base, ns, targets, labels, norms, sc, scaled, involved, crb_threshold
        )
    else:
        rel, absolute, practical = {}, {}, {}
    for n in labels:
        if n not in practical:
            practical[n] = False if n in involved else None
    sv = [ns.lam_max] + ([ns.lam_min] if math.isfinite(ns.lam_min) else []) + list(ns.values)
    fiducial = dict(values)
    notes = _notes(P, reason, exact, diag, ns, info, targets, failed, scaled, n_eigen, r)
    return IdentifiabilityReport(
        names=tuple(labels),
        n_params=P,
        source="experiment",
        fiducial=fiducial,
        parameterisation={n: "ln" if log[n] else "linear" for n in labels},
        scales=el_scales,
        rank=P - r if ns.complete else None,
        rank_at_fiducial=P - r if ns.complete else None,
        ranks=[P - r] if ns.complete else [],
        random_points=[],
        singular_values=np.sqrt(np.clip(np.array(sv), 0.0, None)),
        rtol=float(rtol),
        null_directions=null_dirs,
        null_descriptions=null_texts,
        local_null_directions=[],
        local_null_descriptions=[],
        structurally_identifiable={n: n not in involved for n in labels},
        **spec,
        relative_crb=rel,
        absolute_crb=absolute,
        practically_identifiable=practical,
        identifiable=dict(practical),
        crb_threshold=float(crb_threshold),
        coordinate_identifiability=None,
        collinearity=math.inf if r else 1.0 / math.sqrt(ns.lam_min),
        collinearity_threshold=float(collinearity_threshold),
        identifiable_subsets=None,
        subset_search="skipped (matrix-free path)",
        fisher=None,
        method="matrix-free: Lanczos and conjugate gradients on the Fisher operator",
        notes=notes,
        path="operator",
        _Rn=None,
        _norms=norms,
        _scale=sc,
        _null_basis=N_ln,
        _labels=coord_labels,
    )


def _notes(P, reason, exact, diag, ns, info, targets, failed, scaled, n_eigen, r):
    notes = [
        f"Matrix-free path ({reason}): built from products F v (Lanczos, conjugate "
        "gradients); no P × P matrix and no N × P Jacobian were formed. Skipped (they "
        "need the matrix or grow with P): the random points of the generic rank (the rank "
        "and null directions are those at the fiducial), the identifiable-subset search, "
        "coordinate identifiability, the likelihood-path check (profile_recommended) and "
        "the FisherMatrix; those fields are None or empty. Numerical floor ~1e-8 in "
        "relative singular values (products with F, as from a square root of F).",
    ]
    if exact:
        notes.append("Column norms from the exact diagonal of F.")
    else:
        err = diag.error / np.where(diag.values > 0, diag.values, np.inf)
        notes.append(
            f"Column norms from Hutchinson's diagonal ({HUTCHINSON_PROBES} probes, median "
            f"relative error {float(np.median(err)):.1g}, P > {AUTO_EXACT_DIAGONAL}): the "
            "rank threshold, the collinearity index and the CRBs' unit-diagonal scaling use "
            "it; the null directions and the log-FIM spectrum do not depend on it."
        )
    null_what = (
        f"{r} null direction{'s' if r != 1 else ''}"
        if ns.complete
        else f"at least {r} null directions (the search stops at {MAX_NULL}: rank ≤ {P - r}; "
        "CRBs not computed, since F is singular in directions not found)"
    )
    notes.append(
        f"Lanczos: {null_what} in {ns.rounds} deflated run(s), {ns.steps} steps; the "
        f"{info['count']} smallest log-FIM eigenvalues off the null space in "
        f"{info['steps']} steps (largest relative Ritz residual {info['residual']:.1e}); "
        "the largest eigenvalue is a Lanczos estimate; an eigenvalue repeated in F is "
        "seen once."
    )
    if info["more"]:
        notes.append(
            f"All {n_eigen} eigen-directions computed are poorly determined: there may be "
            "more; raise `n_eigen`."
        )
    if ns.complete:
        shown = targets if len(targets) <= 10 else [*targets[:10], "..."]
        notes.append(
            f"Cramér–Rao bounds computed for {len(targets)} of {P} parameters ({shown}; "
            "`crb_params`, default the scalar parameters); the others have the practical "
            "verdict None unless they are in a null direction."
        )
    if failed:
        notes.append(f"Conjugate gradients failed (CRB NaN) for {failed[:5]}.")
    linear = [n for n, ok in scaled.items() if not ok]
    if linear:
        shown = linear if len(linear) <= 10 else [*linear[:10], "..."]
        notes.append(
            f"Parameters with fiducial 0 and no scale ({shown}) enter the log-FIM spectrum in "
            "their own units (the dense path marginalises them); give scales=... ."
        )
    return notes
