"""Exception types. Every message names the argument and says what to do."""

from __future__ import annotations

import numpy as np


class FisherError(ValueError):
    """Base class for fisherforecast errors about the user's inputs or results.

    The tree: :class:`InputError` (bad arguments; :class:`ParameterError` for names),
    :class:`NonFiniteError` (NaN/inf in a model output, derivative or matrix) and
    :class:`SingularFisherError` (an unconstrained parameter combination). Every one of them
    is also a ``ValueError``, so ``except ValueError`` keeps working.

    One ``except ff.FisherError`` catches any of them; here a misspelt name:

    ```python
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"])
    >>> try:
    ...     F.fix(["c"])
    ... except ff.FisherError as err:
    ...     print(type(err).__name__, "-", err)
    ParameterError - fix(names) names ['c'], which are not in this matrix. Parameters: ['a', 'b'].
    >>> issubclass(ff.FisherError, ValueError)
    True
    ```
    """


class InputError(FisherError):
    """An argument is malformed: wrong shape, type, range or combination (a ValueError).

    ```python
    >>> import fisherforecast as ff
    >>> try:
    ...     ff.Gaussian(sigma=-1.0)          # a noise level must be positive
    ... except ff.InputError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    sigma must be positive and finite; received -1.0 ...
    ```
    """


class SingularFisherError(FisherError, np.linalg.LinAlgError):
    """The Fisher matrix cannot be inverted: some parameter combination is unconstrained.

    Attributes:
        directions: list of dicts name -> coefficient, one per null direction (unit
            vectors in the parameter space the message describes).
        spaces: for each direction, ``"ln"`` when its coefficients are for ln-parameters
            (all fiducial values involved are positive) or ``"linear"``.
        names: the parameter names of the matrix.

    Raised when a singular matrix is inverted (:meth:`FisherMatrix.sigma`,
    ``covariance``, ...). Here the data depend on ``a`` and ``b`` only through ``a·b``, so
    the null direction is ``ln a − ln b`` (a·b stays fixed along it):

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * p["b"] * t, ff.Gaussian(sigma=0.1),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> F = ff.fisher(exp, {"a": 2.0, "b": 3.0})
    >>> try:
    ...     F.sigma()
    ... except ff.SingularFisherError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    ...     caught = err
    Fisher matrix is singular (rank 1 of 2, ...). The data do not constrain:
      - the direction ... (a·b is constrained, a/b is not)
    What to do: fix one of the parameters involved (F.fix([...])), add a prior ...
    >>> caught.names, caught.spaces
    (('a', 'b'), ['ln'])
    >>> {k: round(abs(c), 4) for k, c in caught.directions[0].items()}    # ±(1, −1)/√2
    {'a': 0.7071, 'b': 0.7071}
    >>> bool(abs(sum(caught.directions[0].values())) < 1e-9)
    True
    ```
    """

    def __init__(self, message, directions=(), names=(), spaces=None):
        super().__init__(message)
        self.directions = list(directions)
        self.names = tuple(names)
        self.spaces = list(spaces) if spaces is not None else ["linear"] * len(self.directions)


class ParameterError(InputError, KeyError):
    """Unknown, missing or duplicate parameter names (both a ValueError and a KeyError).

    Here the model asks for a parameter that the fiducial does not give:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([0.0, 1.0]))
    >>> try:
    ...     ff.fisher(exp, {"a": 1.0})
    ... except ff.ParameterError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    ...     print(isinstance(err, KeyError))
    The model of the experiment asked for parameter 'b', which the fiducial does not give. ...
    True
    ```
    """

    def __str__(self):  # KeyError would otherwise quote the whole message
        return self.args[0]


class NonFiniteError(FisherError):
    """A model output, Jacobian or matrix contains NaN or inf.

    Here ``√x`` at a negative fiducial:

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: jnp.sqrt(p["x"]) * t, ff.Gaussian(sigma=0.1),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> try:
    ...     ff.fisher(exp, {"x": -1.0})
    ... except ff.NonFiniteError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    The model of the experiment returned NaN/inf at the fiducial: 3 of 3 outputs, ...
    ```
    """


def quote(value, limit: int = 80) -> str:
    """A short repr of a user value for error messages."""
    if isinstance(value, np.ndarray) and value.size > 6:
        text = f"array(shape={value.shape}, dtype={value.dtype})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
