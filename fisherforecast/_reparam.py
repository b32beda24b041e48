"""The Jacobians of :meth:`FisherMatrix.reparameterize`, computed by JAX in float64.

Two directions: :func:`pull_back` (``transform(new) -> old``, ``F_new = Jᵀ F J`` with
``J = ∂old/∂new``; need not be one-to-one) and :func:`push_forward` (``transform(old) ->
new``, one-to-one, ``F_new = J⁻ᵀ F J⁻¹`` with ``J = ∂new/∂old``). Both take the matrix as a
plain float64 array with its parameter names and return ``(matrix, new names, new
fiducial)``; the symmetrisation and labels are left to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._linalg import unit_diagonal
from ._x64 import float64


def _check_transform_finite(values, J):
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(J))):
        raise ValueError(
            "transform gives NaN/inf values or derivatives at the fiducial (values "
            f"{values.tolist()}); it must be smooth and finite there."
        )


def pull_back(
    matrix: np.ndarray,
    names: tuple[str, ...],
    fiducial: Mapping | None,
    transform: Callable,
    new_fiducial: Mapping | None,
) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """``Jᵀ F J`` with ``J = ∂old/∂new`` at `new_fiducial`; `transform(new) -> old` must
    return every parameter of `names` and reproduce `fiducial` (when given).

    ```python
    >>> import numpy as np
    >>> M, new, fid = pull_back(np.array([[4.0]]), ("x",), {"x": 2.0},
    ...                         lambda p: {"x": 2 * p["u"]}, {"u": 1.0})
    >>> M.tolist(), new, fid
    ([[16.0]], ('u',), {'u': 1.0})
    ```
    """
    if new_fiducial is None:
        raise ValueError(
            "reparameterize(inverse=True) needs `fiducial`, the values of the new parameters."
        )
    new_fid = {k: float(v) for k, v in new_fiducial.items()}
    new_names = tuple(new_fid)
    with float64():
        x0 = jnp.array([new_fid[n] for n in new_names], dtype=jnp.float64)

        def old_of(x):
            out = transform(dict(zip(new_names, x, strict=True)))
            missing = [n for n in names if n not in out]
            if missing:
                raise KeyError(
                    f"transform must return every parameter of the matrix; missing "
                    f"{missing} (returned {list(out)})."
                )
            return jnp.stack([jnp.asarray(out[n], jnp.float64) for n in names])

        old0 = np.asarray(old_of(x0))
        J = np.asarray(jax.jacfwd(old_of)(x0), dtype=np.float64)
    _check_transform_finite(old0, J)
    if fiducial is not None:
        ref = np.array([fiducial[n] for n in names])
        # Each parameter's own scale: its value, or its conditional 1σ near zero.
        _, d = unit_diagonal(matrix)
        scale = np.where(np.diag(matrix) > 0, 1.0 / d, 0.0)
        if not np.all(np.abs(old0 - ref) <= 1e-6 * (np.abs(ref) + scale)):
            raise ValueError(
                "transform(fiducial) does not reproduce this matrix's fiducial: got "
                f"{dict(zip(names, old0.tolist(), strict=True))}, expected {fiducial}."
            )
    return J.T @ matrix @ J, new_names, new_fid


def _check_invertible(J, names, new_names):
    if J.shape[0] != J.shape[1]:
        raise ValueError(
            f"transform returned {len(new_names)} parameters {list(new_names)} for "
            f"{len(names)} parameters {list(names)}; a forward reparameterization must be "
            "one-to-one (return unchanged parameters too), or use inverse=True."
        )
    # Judge invertibility on the row- and column-normalised Jacobian, so that a change of
    # units (a diagonal J with entries 1e9 and 1e-9) is not mistaken for singular.
    rows = np.linalg.norm(J, axis=1, keepdims=True)
    Jn = J / np.where(rows > 0, rows, 1.0)
    cols = np.linalg.norm(Jn, axis=0, keepdims=True)
    Jn = Jn / np.where(cols > 0, cols, 1.0)
    s = np.linalg.svd(Jn, compute_uv=False)
    if not (rows > 0).all() or s[-1] <= 1e-12 * s[0]:
        raise ValueError(
            "the Jacobian of transform is singular at the fiducial: the "
            "new parameters are not a valid change of variables there."
        )


def push_forward(
    matrix: np.ndarray,
    names: tuple[str, ...],
    fiducial: Mapping | None,
    transform: Callable,
) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """``J⁻ᵀ F J⁻¹`` with ``J = ∂new/∂old`` at `fiducial`; `transform(old) -> new` must be
    one-to-one there. The new fiducial is ``transform(fiducial)``.

    ```python
    >>> import numpy as np
    >>> M, new, fid = push_forward(np.array([[4.0]]), ("x",), {"x": 2.0},
    ...                            lambda p: {"y": p["x"] ** 2})
    >>> M.tolist(), new, fid
    ([[0.25]], ('y',), {'y': 4.0})
    ```
    """
    if fiducial is None:
        raise ValueError("reparameterize needs the matrix's fiducial values.")
    with float64():
        x0 = jnp.array([fiducial[n] for n in names], dtype=jnp.float64)
        probe = transform(dict(zip(names, x0, strict=True)))
        new_names = tuple(probe)

        def new_of(x):
            out = transform(dict(zip(names, x, strict=True)))
            return jnp.stack([jnp.asarray(out[n], jnp.float64) for n in new_names])

        new0 = np.asarray(new_of(x0))
        J = np.asarray(jax.jacfwd(new_of)(x0), dtype=np.float64)
    _check_transform_finite(new0, J)
    _check_invertible(J, names, new_names)
    A = np.linalg.solve(J.T, matrix)  # J⁻ᵀ F
    M = np.linalg.solve(J.T, A.T).T  # J⁻ᵀ F J⁻¹
    return M, new_names, dict(zip(new_names, new0.tolist(), strict=True))
