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


def read_priors(par_df, names, where, scales) -> dict:
    """``{name: (type, (a, b), scale)}`` for the estimated parameters that have a prior
    (``scale``: the problem's scale of the parameter, which parameterScale priors use)."""
    type_col = next((c for c in ("objectivePriorType", "priorType") if c in par_df.columns), None)
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
        out[p] = (kind, (a, b), scales[p])
    return out


def _linear(theta, scale):
    return theta if scale == "lin" else math.exp(theta) if scale == "log" else 10.0**theta


def _to_scale(x, scale):
    return x if scale == "lin" else math.log(x) if scale == "log" else math.log10(x)


def _dx(x, scale):
    """``dx/dθ`` for ``θ`` on `scale`, at linear value ``x``."""
    return 1.0 if scale == "lin" else x if scale == "log" else x * math.log(10.0)


def _variable(kind, theta, scale, prior_scale):
    """The prior's variable ``v`` at ``θ`` (on `scale`) and ``dv/dθ``; None if undefined."""
    x = _linear(theta, scale)
    dx = _dx(x, scale)
    if kind.startswith("parameterScale"):
        if prior_scale != "lin" and x <= 0:
            return None
        return _to_scale(x, prior_scale), dx / _dx(x, prior_scale)
    if kind.startswith("log"):
        if x <= 0:
            return None
        return math.log(x), dx / x
    return x, dx


def log_prior(priors, params, scales) -> float:
    """Sum of the priors' log-densities at `params` (on `scales`)."""
    total = 0.0
    for p, (kind, (a, b), prior_scale) in priors.items():
        got = _variable(kind, float(params[p]), scales[p], prior_scale)
        if got is None:
            return -math.inf
        v = got[0]
        base = kind.replace("parameterScale", "").lower()
        # log-normal / log-Laplace are densities of x: include d ln x / dx = 1/x.
        jac = -v if base.startswith("log") else 0.0
        base = base[3:] if base.startswith("log") else base
        if base == "normal":
            total += -0.5 * math.log(2 * math.pi * b**2) - 0.5 * ((v - a) / b) ** 2 + jac
        elif base == "laplace":
            total += -math.log(2 * b) - abs(v - a) / b + jac
        else:  # uniform
            total += -math.log(b - a) if a <= v <= b else -math.inf
    return total


def log_prior_gradient(priors, params, scales) -> dict:
    """``∂ log_prior / ∂θ`` per prior parameter (on `scales`), at `params`: for a density
    ``g(v)`` of the prior's variable ``v(θ)``, ``g'(v) dv/dθ`` (the Laplace term's
    derivative at its kink and a uniform prior's at its edges count as 0; outside a
    uniform prior's support or where ``v`` is undefined the log-density is −inf and the
    gradient NaN)."""
    out = {}
    for p, (kind, (a, b), prior_scale) in priors.items():
        got = _variable(kind, float(params[p]), scales[p], prior_scale)
        if got is None:
            out[p] = math.nan
            continue
        v, dv = got
        base = kind.replace("parameterScale", "").lower()
        slope = -1.0 if base.startswith("log") else 0.0  # d(−v)/dv, the log-density's ln x
        base = base[3:] if base.startswith("log") else base
        if base == "normal":
            slope += -(v - a) / b**2
        elif base == "laplace":
            slope += -float(np.sign(v - a)) / b
        elif not a <= v <= b:
            slope = math.nan
        out[p] = slope * dv
    return out


def prior_fisher(priors, nominal, scales) -> FisherMatrix:
    """The priors' Fisher information in the coordinates of `scales`, at the nominal
    values: ``(dv/dθ)² / s²`` for a normal (``s = σ``) or Laplace (``s = b``) prior on ``v``;
    uniform priors add none."""
    names = list(nominal)
    F = np.zeros((len(names), len(names)))
    for p, (kind, (_, b), prior_scale) in priors.items():
        if kind.endswith("niform"):
            continue
        got = _variable(kind, float(nominal[p]), scales[p], prior_scale)
        if got is None:
            continue
        i = names.index(p)
        F[i, i] = (got[1] / b) ** 2
    return FisherMatrix(F, names, fiducial=dict(nominal), name="prior")
