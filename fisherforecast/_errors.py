"""Exception types. Every message names the argument and says what to do."""

from __future__ import annotations

import numpy as np


class FisherError(ValueError):
    """Base class for fisherforecast errors about the user's inputs or results.

    The tree: :class:`InputError` (bad arguments; :class:`ParameterError` for names),
    :class:`NonFiniteError` (NaN/inf in a model output, derivative or matrix) and
    :class:`SingularFisherError` (an unconstrained parameter combination). Every one of them
    is also a ``ValueError``, so ``except ValueError`` keeps working.
    """


class InputError(FisherError):
    """An argument is malformed: wrong shape, type, range or combination (a ValueError)."""


class SingularFisherError(FisherError, np.linalg.LinAlgError):
    """The Fisher matrix cannot be inverted: some parameter combination is unconstrained.

    Attributes:
        directions: list of dicts name -> coefficient, one per null direction (unit
            vectors in the parameter space the message describes).
        spaces: for each direction, ``"ln"`` when its coefficients are for ln-parameters
            (all fiducial values involved are positive) or ``"linear"``.
        names: the parameter names of the matrix.
    """

    def __init__(self, message, directions=(), names=(), spaces=None):
        super().__init__(message)
        self.directions = list(directions)
        self.names = tuple(names)
        self.spaces = list(spaces) if spaces is not None else ["linear"] * len(self.directions)


class ParameterError(InputError, KeyError):
    """Unknown, missing or duplicate parameter names (both a ValueError and a KeyError)."""

    def __str__(self):  # KeyError would otherwise quote the whole message
        return self.args[0]


class NonFiniteError(FisherError):
    """A model output, Jacobian or matrix contains NaN or inf."""


def quote(value, limit: int = 80) -> str:
    """A short repr of a user value for error messages."""
    if isinstance(value, np.ndarray) and value.size > 6:
        text = f"array(shape={value.shape}, dtype={value.dtype})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
