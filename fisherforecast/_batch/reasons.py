"""Failure codes of ``FisherBatch.reason_codes``."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------
# Failure codes. The first failing check wins; the order follows the computation.
# ---------------------------------------------------------------------------------------
OK = 0
BAD_FIDUCIAL = 1
BAD_OUTPUT = 2
BAD_JACOBIAN = 3
BAD_NOISE = 4
BAD_MATRIX = 5
NO_INFORMATION = 6
SINGULAR = 7
ERROR = 8
NOT_COMPUTED = 9
NOT_PSD = 10

#: Codes of items that failed before a matrix existed: later algebra keeps them failed.
UPSTREAM = (BAD_FIDUCIAL, BAD_OUTPUT, BAD_JACOBIAN, BAD_NOISE, ERROR, NOT_COMPUTED, NOT_PSD)

#: Code -> meaning of ``FisherBatch.reason_codes``.
REASONS = (
    "ok",
    "non-finite fiducial value",
    "model output is NaN/inf",
    "model derivative (Jacobian) is NaN/inf",
    "noise-model check failed (e.g. non-positive Poisson counts or sigma)",
    "Fisher matrix is NaN/inf",
    "a parameter has zero information (zero diagonal entry)",
    "singular Fisher matrix (degenerate parameter combination)",
    "evaluation raised an error (e.g. an ODE solver that threw)",
    "not computed (chunk not finished)",
    "Fisher matrix is not positive semi-definite (a negative eigenvalue beyond round-off)",
)
