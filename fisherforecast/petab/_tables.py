"""PEtab tables → the arrays that drive one compiled model per problem.

Each (pre-equilibration, simulation) condition pair becomes one experiment. Its design holds
one entry per measurement row: the time, the observable's index, the observable and noise
placeholder values (a number, or the index of a parameter in the constants vector ``k``),
the condition overrides, the transformation, the noise distribution and a weight (0 for
padding). All experiments of a problem are padded to the same number of rows, so that one
compiled kernel serves every condition.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp

from .._errors import InputError
from ._mathml import TIME, Unsupported
from ._noise import DISTRIBUTIONS, TRANSFORMS

_PLACEHOLDER = re.compile(r"^(observable|noise)Parameter(\d+)_(.+)$")


def parse_formula(text, where):
    """A PEtab formula as sympy with plain symbols (petab's parser adds assumptions)."""
    from petab.v1.math import sympify_petab

    expr = sympify_petab(text)
    if not isinstance(expr, sp.Expr):
        expr = sp.sympify(expr)
    mapping = {}
    symbols: Any = expr.free_symbols
    for s in symbols:
        mapping[s] = TIME if s.name in ("time", "t") else sp.Symbol(s.name)
    try:
        return expr.xreplace(mapping)
    except Exception as exc:  # pragma: no cover - petab's parser already validated it
        raise InputError(f"{where}: could not read formula {text!r}: {exc}") from None


def placeholder_count(exprs, kind, obs_id):
    n = 0
    for e in exprs:
        for s in e.free_symbols:
            m = _PLACEHOLDER.match(s.name)
            if m and m.group(1) == kind and m.group(3) == obs_id:
                n = max(n, int(m.group(2)))
    return n


def split_entries(cell):
    """A measurement-table placeholder cell as a list of numbers or parameter ids."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    if isinstance(cell, int | float | np.number):
        return [float(cell)]
    return [c.strip() for c in str(cell).split(";") if c.strip()]


def value_or_index(entry, k_index, where):
    """``(src, val)``: a parameter id gives its index in ``k``; a number gives -1 and itself."""
    if isinstance(entry, float):
        return -1, entry
    try:
        return -1, float(entry)
    except ValueError:
        pass
    if entry not in k_index:
        raise InputError(
            f"{where} refers to {entry!r}, which is neither a number nor a parameter of the "
            "model or the parameter table."
        )
    return k_index[entry], np.nan


def check_observables(obs_df, where):
    out = {}
    for oid, row in obs_df.iterrows():
        tr = row.get("observableTransformation", "lin")
        tr = "lin" if not isinstance(tr, str) else tr
        dist = row.get("noiseDistribution", "normal")
        dist = "normal" if not isinstance(dist, str) else dist
        if tr not in TRANSFORMS:
            raise Unsupported(
                f"{where}: observable {oid!r} has the transformation {tr!r}; supported: "
                f"{', '.join(TRANSFORMS)}."
            )
        if dist not in DISTRIBUTIONS:
            raise Unsupported(
                f"{where}: observable {oid!r} has the noise distribution {dist!r}; "
                f"supported: {', '.join(DISTRIBUTIONS)}."
            )
        formula = parse_formula(str(row["observableFormula"]), f"{where}: observable {oid!r}")
        noise = parse_formula(str(row["noiseFormula"]), f"{where}: noise of {oid!r}")
        out[str(oid)] = (formula, noise, TRANSFORMS.index(tr), DISTRIBUTIONS.index(dist))
    return out


def condition_targets(cond_df, k_index, state_index, rule_ids, where):
    """Columns of the condition table: ``[(column, kind, index)]``, kind ``"k"``/``"x"``."""
    targets = []
    for col in cond_df.columns:
        if col == "conditionName":
            continue
        if col in state_index:
            targets.append((col, "x", state_index[col]))
        elif col in k_index:
            targets.append((col, "k", k_index[col]))
        elif col in rule_ids:
            raise Unsupported(
                f"{where}: the condition table overrides {col!r}, which an assignment rule "
                "defines; this is not supported."
            )
        else:
            raise InputError(
                f"{where}: the condition table has a column {col!r} that is not a parameter, "
                "species or compartment of the model."
            )
    return targets


def condition_arrays(cond_df, cond_id, targets, k_index, where):
    """``(src, val)`` over the condition-table columns for condition `cond_id`."""
    n = max(len(targets), 1)
    src = -np.ones(n, dtype=np.int32)
    val = np.full(n, np.nan)
    if cond_id is None:
        return src, val
    if cond_id not in cond_df.index:
        raise InputError(f"{where}: condition {cond_id!r} is not in the condition table.")
    row = cond_df.loc[cond_id]
    for j, (col, _, _) in enumerate(targets):
        cell = row[col]
        if isinstance(cell, str):
            src[j], val[j] = value_or_index(cell, k_index, f"{where}: condition {cond_id!r}")
        elif cell is not None and not pd.isna(cell):
            val[j] = float(cell)
    return src, val


def placeholder_arrays(cells, needed, k_index, where):
    """``(src, val)`` of shape ``(rows, width)`` from the measurement-table cells;
    `needed` gives the number of placeholders each row's observable uses."""
    rows = len(cells)
    width = max(max(needed, default=0), 1)
    src = -np.ones((rows, width), dtype=np.int32)
    val = np.ones((rows, width))
    for i, cell in enumerate(cells):
        entries = split_entries(cell)
        if len(entries) < needed[i]:
            raise InputError(
                f"{where}, measurement row {i}: the formula needs {needed[i]} placeholder "
                f"value(s) but the row gives {len(entries)} ({cell!r})."
            )
        for j, e in enumerate(entries[:width]):
            src[i, j], val[i, j] = value_or_index(e, k_index, f"{where}, measurement row {i}")
    return src, val
