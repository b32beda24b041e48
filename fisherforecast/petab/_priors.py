"""PEtab objective priors: their log-density and their Fisher information."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._errors import InputError
from .._matrix import FisherMatrix
from ._mathml import Unsupported

PRIOR_TYPES = (
    "parameterScaleNormal",
    "parameterScaleLaplace",
    "parameterScaleUniform",
    "normal",
    "laplace",
    "uniform",
    "logNormal",
    "logLaplace",
)


def read_priors(par_df, names, where) -> dict:
    """``{name: (type, (a, b))}`` for the estimated parameters that have a prior."""
    type_col = next(
        (c for c in ("objectivePriorType", "priorType") if c in par_df.columns), None
    )
    if type_col is None:
        return {}
    par_col = type_col.replace("Type", "Parameters")
    out = {}
    for p in names:
        kind = par_df.loc[p, type_col]
        if not isinstance(kind, str) or not kind.strip():
            continue
        kind = kind.strip()
        if kind not in PRIOR_TYPES:
            raise Unsupported(
                f"{where}: parameter {p!r} has the prior {kind!r}; supported: {PRIOR_TYPES}."
            )
        cell = par_df.loc[p, par_col] if par_col in par_df.columns else None
        if cell is None or (not isinstance(cell, str) and pd.isna(cell)):
            raise InputError(f"{where}: the prior of {p!r} has no parameters.")
        a, b = (float(v) for v in str(cell).split(";"))
        out[p] = (kind, (a, b))
    return out


def _linear(theta, scale):
    return theta if scale == "lin" else math.exp(theta) if scale == "log" else 10.0**theta


def _dlinear(theta, scale):
    x = _linear(theta, scale)
    return 1.0 if scale == "lin" else x if scale == "log" else x * math.log(10.0)


def log_prior(priors, params, scales) -> float:
    """Sum of the priors' log-densities at `params` (on the problem's scale)."""
    total = 0.0
    for p, (kind, (a, b)) in priors.items():
        theta = float(params[p])
        v = theta if kind.startswith("parameterScale") else _linear(theta, scales[p])
        base = kind.replace("parameterScale", "").lower()
        if base.startswith("log"):
            if v <= 0:
                return -math.inf
            jac = -math.log(v)
            v = math.log(v)
            base = base[3:]
        else:
            jac = 0.0
        if base == "normal":
            total += -0.5 * math.log(2 * math.pi * b**2) - 0.5 * ((v - a) / b) ** 2 + jac
        elif base == "laplace":
            total += -math.log(2 * b) - abs(v - a) / b + jac
        else:  # uniform
            total += -math.log(b - a) if a <= v <= b else -math.inf
    return total


def prior_fisher(priors, nominal, scales) -> FisherMatrix:
    """The priors' Fisher information on the problem's scale, at the nominal values."""
    names = list(nominal)
    F = np.zeros((len(names), len(names)))
    for p, (kind, (_, b)) in priors.items():
        if kind.endswith("niform"):
            continue
        theta = float(nominal[p])
        if kind.startswith("parameterScale"):
            d = 1.0
        elif kind.startswith("log"):
            d = {"lin": 1.0 / theta if theta else np.inf, "log": 1.0, "log10": math.log(10.0)}[
                scales[p]
            ]
        else:
            d = _dlinear(theta, scales[p])
        i = names.index(p)
        F[i, i] = (d / b) ** 2
    return FisherMatrix(F, names, fiducial=dict(nominal), name="prior")
