"""Why an item of a batch has no usable Fisher matrix: :class:`Reason`.

The integer values are those stored in ``FisherBatch.reason_codes`` and in the ``reason``
dataset of batch files, so they never change. The matrix-level members (``OK``,
``BAD_MATRIX``, ``NO_INFORMATION``, ``SINGULAR``, ``NOT_PSD``) are the status codes of
``_linalg.classify``, taken from there with their messages.
"""

from __future__ import annotations

import enum

import numpy as np

from .._linalg import BAD_MATRIX as MATRIX_NAN
from .._linalg import NO_INFORMATION as MATRIX_ZERO_DIAGONAL
from .._linalg import NOT_PSD as MATRIX_NOT_PSD
from .._linalg import OK as MATRIX_OK
from .._linalg import SINGULAR as MATRIX_SINGULAR
from .._linalg import STATUS

__all__ = ["REASONS", "UPSTREAM", "Reason"]


class Reason(enum.IntEnum):
    """Failure code of a batch item, carrying its message.

    The first failing check wins; the order follows the computation. ``upstream`` is true
    for the failures that happen before a matrix exists (or leave no usable one): later
    algebra on the batch (sums, priors, fixing, marginalising) keeps these items failed.

    ```python
    >>> from fisherforecast._batch.reasons import Reason
    >>> int(Reason.SINGULAR), Reason.SINGULAR.message
    (7, 'singular Fisher matrix (degenerate parameter combination)')
    >>> Reason(2).name, Reason.BAD_OUTPUT.upstream, Reason.SINGULAR.upstream
    ('BAD_OUTPUT', True, False)
    >>> Reason.texts([0, 9]).tolist()
    ['ok', 'not computed (chunk not finished)']
    ```
    """

    message: str
    upstream: bool

    def __new__(cls, value: int, message: str, upstream: bool = False):
        member = int.__new__(cls, value)
        member._value_ = value
        member.message = message
        member.upstream = upstream
        return member

    OK = (MATRIX_OK, STATUS[MATRIX_OK])
    BAD_FIDUCIAL = (1, "non-finite fiducial value", True)
    BAD_OUTPUT = (2, "model output is NaN/inf", True)
    BAD_JACOBIAN = (3, "model derivative (Jacobian) is NaN/inf", True)
    BAD_NOISE = (4, "noise-model check failed (e.g. non-positive Poisson counts or sigma)", True)
    BAD_MATRIX = (MATRIX_NAN, STATUS[MATRIX_NAN])
    NO_INFORMATION = (MATRIX_ZERO_DIAGONAL, STATUS[MATRIX_ZERO_DIAGONAL])
    SINGULAR = (MATRIX_SINGULAR, STATUS[MATRIX_SINGULAR])
    ERROR = (8, "evaluation raised an error (e.g. an ODE solver that threw)", True)
    NOT_COMPUTED = (9, "not computed (chunk not finished)", True)
    NOT_PSD = (MATRIX_NOT_PSD, STATUS[MATRIX_NOT_PSD], True)
    STORED_CORRUPT = (11, "stored data corrupt (checksum or recheck of a file chunk failed)", True)

    @classmethod
    def texts(cls, codes) -> np.ndarray:
        """The message of each code of an integer array (an object array of strings)."""
        return np.asarray(REASONS, dtype=object)[np.asarray(codes, dtype=np.intp)]


#: Code -> message, a tuple indexed by the code (``REASONS[7]``); also stored, as JSON, in
#: the ``reasons`` attribute of batch files.
REASONS = tuple(Reason(code).message for code in range(len(Reason)))

#: The codes of :class:`Reason` members with ``upstream`` set.
UPSTREAM = tuple(int(r) for r in Reason if r.upstream)
