"""Words for identifiability: monomials, null directions and poorly determined directions."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

from .factor import NULL_COMPONENT_TOL, rref, unit_direction


def format_power(name, exponent):
    frac = Fraction(exponent).limit_denominator(6)
    if abs(float(frac) - exponent) > 1e-3 * max(1.0, abs(exponent)):
        return f"{name}^{exponent:.3g}"
    if frac == 1:
        return name
    if frac.denominator == 1:
        return f"{name}^{frac.numerator}"
    return f"{name}^({frac.numerator}/{frac.denominator})"


def integer_exponents(exponents):
    """Scale simple rational exponents to integers: {a: 1, b: 1/2} -> {a: 2, b: 1}."""
    fracs = {n: Fraction(e).limit_denominator(6) for n, e in exponents.items()}
    if any(
        abs(float(f) - e) > 1e-3 * max(1.0, abs(e))
        for f, e in zip(fracs.values(), exponents.values(), strict=True)
    ):
        return exponents
    lcm = math.lcm(*(f.denominator for f in fracs.values()))
    return {n: float(f * lcm) for n, f in fracs.items()}


def monomial(exponents):
    """Readable product of powers, e.g. {'a': 1, 'b': -1} -> 'a/b'."""
    num = [format_power(n, e) for n, e in exponents.items() if e > 0]
    den = [format_power(n, -e) for n, e in exponents.items() if e < 0]
    text = "·".join(num) if num else "1"
    if den:
        text += "/" + (den[0] if len(den) == 1 else "(" + "·".join(den) + ")")
    return text


def join_words(items):
    """'x', 'x and y', 'x, y and z'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def coordinate_label(name, log, scale=None):
    """How a coefficient of `name` is read: ``ln a``, ``dc`` or ``d(c/0.5)`` (with a scale)."""
    if log:
        return f"ln {name}"
    return f"d{name}" if scale is None else f"d({name}/{scale:g})"


def direction_text(coefficients, labels):
    """``ln a − 0.5·ln b + dc``: a direction, scaled so that its largest coefficient is ±1."""
    big = max(abs(c) for c in coefficients.values())
    parts = []
    for i, (n, c) in enumerate(coefficients.items()):
        c = c / big
        mag = "" if abs(abs(c) - 1) < 5e-3 else f"{abs(c):.3g}·"
        sign = ("" if c >= 0 else "−") if i == 0 else (" + " if c >= 0 else " − ")
        parts.append(f"{sign}{mag}{labels[n]}")
    return "".join(parts)


#: An exponent of a null combination within this of an integer or half-integer (or of 0) is
#: snapped to it when the snapped combination is still orthogonal to the null directions
#: within SNAP_TOL (relative): numerical null directions carry ~1e-2 noise
#: (k2^0.0403·x10·s1^0.96 reads x10·s1).
SNAP_TOL = 0.045
#: Up to this many parameters, every pivot order is tried for the sparsest basis.
MAX_PERMUTED = 6


def _snap(value: float) -> float:
    half = round(2.0 * value) / 2.0
    return half if abs(half - value) <= SNAP_TOL else value


def _snapped(exps, rows, params):
    """`exps` snapped (see ``SNAP_TOL``) if that keeps them orthogonal to `rows`."""
    m = np.array([exps.get(p, 0.0) for p in params])
    snapped = np.array([_snap(v) for v in m])
    if not np.any(snapped):
        return exps
    rows = np.asarray(rows, dtype=np.float64)
    scale = np.linalg.norm(rows, axis=1) * np.linalg.norm(snapped)
    if np.all(np.abs(rows @ snapped) <= SNAP_TOL * scale):
        return {p: float(v) for p, v in zip(params, snapped, strict=True) if v != 0.0}
    return exps


def _basis(rows, params, order, snap=False):
    """The complement basis with pivots searched in the column order `order`."""
    cols = list(order)
    R, pivots = rref(np.asarray(rows)[:, cols]) if len(rows) else (None, [])
    out = []
    for f in range(len(cols)):
        if f in pivots:
            continue
        m = np.zeros(len(params))
        m[cols[f]] = 1.0
        for i, p in enumerate(pivots):
            m[cols[p]] = -R[i, f]  # pyright: ignore[reportOptionalSubscript]
        m[np.abs(m) < 1e-9] = 0.0
        big = np.max(np.abs(m))
        lead = m[np.nonzero(np.abs(m) >= 0.999 * big)[0][0]]
        exps = {params[j]: float(m[j] / lead) for j in range(len(params)) if m[j] != 0}
        if snap:
            exps = _snapped(exps, rows, params)
        out.append(integer_exponents(exps))
    return out


def complement_exponents(rows, params, snap=False):
    """Readable basis of the exponent vectors ``m`` (over `params`) orthogonal to `rows`.

    ``rows`` (k × len(params)) must have independent rows. In their reduced row-echelon form
    with pivots ``A``, each free parameter ``f`` gives ``m_f = 1``, ``m_Aᵢ = −R[i, f]``, zero
    elsewhere; it is then scaled so that its largest exponent is +1 (the first one on a tie),
    with `snap` (null combinations) exponents within ``SNAP_TOL`` of a multiple of 1/2 (or
    of 0) are snapped to it when the result stays orthogonal to `rows`, and, where they are
    simple fractions, scaled to integers (a·b, a/b, V/K^0.947, a^2·b). Among the
    pivot orders (all of them up to ``MAX_PERMUTED`` parameters) the basis with the fewest
    parameters per combination is kept (ties: the parameters' own order).
    Returns a list of dicts name -> exponent (zero exponents left out).
    """
    n = len(params)
    orders = itertools.permutations(range(n)) if n <= MAX_PERMUTED else [tuple(range(n))]
    best, best_key = None, None
    for order in orders:
        basis = _basis(rows, params, order, snap)
        key = (sum(len(b) for b in basis), max((len(b) for b in basis), default=0))
        if best_key is None or key < best_key:
            best, best_key = basis, key
    return best if best is not None else []


def null_group_text(rows, log, labels):
    """One sentence for a group of null directions (dicts) that share parameters.

    The identifiable combinations are the monomials ``∏ θᵢ^mᵢ`` whose exponent vectors are
    orthogonal to *all* the directions of the group together.
    """
    params = list(dict.fromkeys(n for row in rows for n in row))
    if len(rows) == 1 and len(params) == 1:
        return f"{params[0]} has no effect on the output: it is not identifiable at all"
    texts = [direction_text(row, labels) for row in rows]
    head = f"{join_words(texts)} {'is' if len(texts) == 1 else 'are'} not identifiable"
    if not all(log[n] for n in params):
        return head
    combos = complement_exponents(
        [[row.get(n, 0.0) for n in params] for row in rows], params, snap=True
    )
    if not combos:
        return f"{head}: no combination of {', '.join(params)} is identifiable"
    if len(combos) == 1:
        return f"{head}: only {monomial(combos[0])} is identifiable"
    return (
        f"{head}: among {', '.join(params)} only "
        f"{join_words(monomial(c) for c in combos)} are identifiable"
    )


def null_space_texts(directions, log, labels):
    """Sentences for the whole null space: one per group of directions sharing parameters."""
    groups = []  # (set of names, list of directions)
    for d in directions:
        hit = [g for g in groups if g[0] & set(d)]
        merged = (set(d).union(*(g[0] for g in hit)), [r for g in hit for r in g[1]] + [d])
        groups = [g for g in groups if g not in hit] + [merged]
    order = {id(d): i for i, d in enumerate(directions)}
    groups.sort(key=lambda g: min(order[id(r)] for r in g[1]))
    return [
        null_group_text(sorted(rows, key=lambda r: order[id(r)]), log, labels) for _, rows in groups
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
    labels = {n: coordinate_label(n, log[n]) for n in coefficients}
    if width is not None:
        return (
            f"{direction_text(coefficients, labels)} is poorly determined (1σ width "
            f"{width:.3g} in ln-units)"
        )
    return null_group_text([dict(coefficients)], log, labels)


def sloppy_text(k, shown, names, log, labels, eigenvalues, eigenvectors, n_zero):
    """Words for the poorly determined eigen-direction `k` (coefficients `shown`).

    The combinations called better determined are monomials over the parameters of the
    direction whose exponent vectors are orthogonal to the null space and to every
    eigen-direction at least as poorly determined as this one; each is listed with its own
    1σ width (from the covariance), and only when that is smaller than the direction's.
    """
    width = float(eigenvalues[k]) ** -0.5
    head = (
        f"{direction_text(shown, labels)} is poorly determined (1σ width {width:.3g} in ln-units)"
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
    for exps in complement_exponents(basis, group):
        vec = np.zeros(len(names))
        for n, e in exps.items():
            vec[names.index(n)] = e
        proj = eigenvectors.T @ vec
        if np.any(np.abs(proj[:n_zero]) > 1e-6 * np.linalg.norm(vec)):
            continue  # not orthogonal to the null space: not determined at all
        w = math.sqrt(float(np.sum(proj[n_zero:] ** 2 / eigenvalues[n_zero:])))
        if w < width:
            better.append(f"{monomial(exps)} (1σ width {w:.3g})")
    if not better:
        return head
    return f"{head}: {join_words(better)} {'is' if len(better) == 1 else 'are'} better determined"


def directions(U, names):
    """Readable (row-echelon, unit, canonical sign) dicts for the span of the columns of U."""
    out = []
    if U.shape[1] == 0:
        return out
    R, _ = rref(U.T)
    for row in R:
        vec = unit_direction(row, first_positive=True)
        out.append(
            {n: float(c) for n, c in zip(names, vec, strict=True) if abs(c) >= NULL_COMPONENT_TOL}
        )
    return out


def local_text(direction, labels):
    if len(direction) == 1:
        (n,) = direction
        return (
            f"{n} has no effect on the output at this fiducial (it does at the random "
            "points): not identifiable here, a local degeneracy"
        )
    return (
        f"{direction_text(direction, labels)} is not identifiable at this fiducial (it "
        "is at the random points): a local degeneracy"
    )
