"""``ff.mfac``: the inverse of a damped empirical Fisher matrix from ``m`` gradients, and
``ff.empirical_gradients``: the per-datum gradients of an experiment's log-likelihood.

M-FAC (Frantar, Kurtic & Alistarh 2021) applies ``(λI + GᵀG/m)⁻¹`` to vectors from the
``m`` stored gradient rows of ``G`` without the ``P × P`` matrix. With ``K = G Gᵀ / m``
(``m × m``), the Woodbury identity gives

    (λI + GᵀG/m)⁻¹ v = (v − Gᵀ (λ m I + G Gᵀ)⁻¹ G v) / λ,

which is what M-FAC's static algorithm computes: ``O(m² P)`` once (the scalar products), and
``O(m P + m²)`` per vector (two products with ``G`` and a solve with the Cholesky factor of
the ``m × m`` matrix). ``logdet`` follows from the determinant lemma,
``log det(λI + GᵀG/m) = P log λ + log det(I + K/λ)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    as_experiments,
    check_data,
    check_fiducial_arrays,
    check_int,
    check_names,
    expand_names,
)
from .._compile import cached_kernel
from .._engine import model_runtime_errors, refuse_tracers, split
from .._errors import InputError, quote
from .._x64 import float64
from . import kernels

HIGHEST = jax.lax.Precision.HIGHEST


@jax.jit
def _factor(G, damping):
    m = G.shape[0]
    A = damping * m * jnp.eye(m) + jnp.matmul(G, G.T, precision=HIGHEST)
    return jnp.linalg.cholesky(A)


@jax.jit
def _solve(G, L, damping, v):
    Gv = jnp.matmul(G, v.T, precision=HIGHEST)  # (m, k): G read row by row, no transpose
    y = jax.scipy.linalg.cho_solve((L, True), Gv)
    return (v - jnp.matmul(y.T, G, precision=HIGHEST)) / damping


@jax.jit
def _apply(G, damping, v):
    Gv = jnp.matmul(G, v.T, precision=HIGHEST)
    return damping * v + jnp.matmul(Gv.T, G, precision=HIGHEST) / G.shape[0]


class MFAC:
    """``(λI + GᵀG/m)`` from ``m`` gradient rows ``G`` (``m × P``), applied and inverted
    without the ``P × P`` matrix. Build it with :func:`mfac`.

    Two gradient rows ``G = [[1, 0], [0, 2]]`` and ``λ = 0.5`` give
    ``λI + GᵀG/2 = diag(1, 2.5)``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> op = ff.mfac(np.array([[1.0, 0.0], [0.0, 2.0]]), damping=0.5)
    >>> op, op.size, op.n_grads, op.damping
    (MFAC(m=2, P=2, damping=0.5), 2, 2, 0.5)
    >>> op.matvec(np.ones(2)).round(12).tolist(), op.solve(np.ones(2)).round(12).tolist()
    ([1.0, 2.5], [1.0, 0.4])
    >>> round(op.logdet(), 6)        # ln 1 + ln 2.5
    0.916291
    ```
    """

    __slots__ = ("_G", "_L", "_damping")

    def __init__(self, G, damping, L):
        object.__setattr__(self, "_G", G)
        object.__setattr__(self, "_damping", damping)
        object.__setattr__(self, "_L", L)

    def __setattr__(self, key, value):
        raise AttributeError("MFAC is immutable.")

    def __repr__(self):
        m, P = self._G.shape
        return f"MFAC(m={m}, P={P}, damping={self._damping:g})"

    @property
    def size(self) -> int:
        return int(self._G.shape[1])

    @property
    def n_grads(self) -> int:
        return int(self._G.shape[0])

    @property
    def damping(self) -> float:
        return float(self._damping)

    def _vector(self, v):
        arr = np.asarray(v)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise InputError(f"`v` must be a real array; received {quote(v)}.")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.size:
            raise InputError(
                f"`v` must have shape ({self.size},) or (k, {self.size}); received {arr.shape}."
            )
        return arr.astype(np.float64)

    def solve(self, v) -> np.ndarray:
        """``(λI + GᵀG/m)⁻¹ v`` for ``v`` of shape ``(P,)`` or ``(k, P)``: ``O(mP + m²)``."""
        x = self._vector(v)
        with float64():
            out = _solve(self._G, self._L, self._damping, jnp.atleast_2d(x))
        out = np.asarray(out, dtype=np.float64)
        return out[0] if x.ndim == 1 else out

    def matvec(self, v) -> np.ndarray:
        """``(λI + GᵀG/m) v``."""
        x = self._vector(v)
        with float64():
            out = np.asarray(_apply(self._G, self._damping, jnp.atleast_2d(x)), np.float64)
        return out[0] if x.ndim == 1 else out

    def logdet(self) -> float:
        """``log det(λI + GᵀG/m)``, exactly (determinant lemma)."""
        m = self.n_grads
        L = np.asarray(self._L)
        # det(λ m I + GGᵀ) = (λm)^m det(I + K/λ)
        logdet_small = 2.0 * np.sum(np.log(np.diag(L))) - m * np.log(self._damping * m)
        return float(self.size * np.log(self._damping) + logdet_small)


def mfac(grads, damping) -> MFAC:
    """The damped empirical Fisher ``λI + GᵀG/m`` of ``m`` gradient rows, with M-FAC's
    inverse-vector products.

    **Arguments:**

    - `grads`: ``(m, P)`` array, one gradient per row (e.g. from
      :func:`empirical_gradients`, or a network's per-example gradients).
    - `damping`: ``λ > 0``.

    **Returns:** an :class:`MFAC` with ``solve(v)`` (the inverse applied, ``O(mP + m²)``),
    ``matvec(v)`` and ``logdet()``.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> G = np.random.default_rng(0).standard_normal((8, 1000))
    >>> op = ff.mfac(G, damping=0.1)
    >>> v = np.ones(1000)
    >>> bool(np.allclose(op.matvec(op.solve(v)), v))
    True
    ```
    """
    G = np.asarray(grads)
    if G.dtype == object or not np.issubdtype(G.dtype, np.number) or np.iscomplexobj(G):
        raise InputError(f"`grads` must be a real (m, P) array; received {quote(grads)}.")
    if G.ndim != 2 or G.shape[0] < 1 or G.shape[1] < 1:
        raise InputError(
            f"`grads` must be an (m, P) array, one gradient per row; received shape {G.shape}."
        )
    if not np.all(np.isfinite(G)):
        raise InputError(f"`grads` contains NaN or inf at {np.argwhere(~np.isfinite(G))[:5]}.")
    try:
        lam = float(damping)
    except (TypeError, ValueError):
        raise InputError(
            f"`damping` must be a positive number; received {quote(damping)}."
        ) from None
    if not (np.isfinite(lam) and lam > 0):
        raise InputError(f"`damping` must be positive and finite; received {damping!r}.")
    with float64():
        G64 = jnp.asarray(G, dtype=jnp.float64)
        L = _factor(G64, lam)
        if not bool(jnp.all(jnp.isfinite(L))):
            raise InputError(
                f"λ m I + G Gᵀ could not be factorised (damping={lam:g}, gradients of size up "
                f"to {float(np.abs(G).max()):.3g}); raise the damping."
            )
    return MFAC(G64, lam, L)


@cached_kernel(static_argnames=("names", "chunk"))
def _gradients_kernel(experiment, fiducial, names, data, chunk):
    p = kernels.parts(experiment, fiducial, names)
    noise, design = experiment.noise, experiment.design
    params0 = split(fiducial, names)[1](p.theta)
    z = noise.whiten((data - p.mean).reshape(-1), p.mean, params0, design)
    root = p.root
    if root is None:  # checked by the caller
        raise InputError("no data-space square root")
    _, pull = jax.vjp(root, p.theta)
    m = z.shape[0]
    idx = jnp.arange(m)

    def row(i):
        return z[i] * pull(jnp.zeros(m).at[i].set(1.0))[0]

    return jax.lax.map(row, idx, batch_size=chunk)


def empirical_gradients(experiment, fiducial, data, *, params=None, chunk=64):
    """Per-datum gradients of the log-likelihood: row ``r`` is ``z_r ∇_θ h_r`` with
    ``h = W^½ μ(θ)`` the whitened model output and ``z = W^½ (d − μ)`` the whitened
    residual, so that the rows sum to ``∇_θ ln L`` and ``GᵀG`` is the empirical Fisher
    matrix (``E[GᵀG] = F`` for data drawn from the model). For correlated Gaussian noise
    the rows are those of the whitened, independent data.

    **Arguments:** `experiment` (one), `fiducial` and `params` as :func:`ff.fisher`;
    `data` in the model's output shape; `chunk` rows at a time (memory ``chunk × (N+P)``).

    **Returns:** ``(G, names)``: an ``(M, P)`` numpy array (``M``: whitened data, ``2N``
    for complex data) and the element names of its columns.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["a"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=np.arange(3.0))
    >>> G, names = ff.empirical_gradients(exp, {"a": 1.0}, np.array([0.0, 2.0, 2.0]))
    >>> G[:, 0].tolist(), names          # (d − a x) x / σ²
    ([0.0, 1.0, 0.0], ('a',))
    ```
    """
    refuse_tracers("ff.empirical_gradients", experiment, fiducial, data)
    (exp,) = as_experiments(experiment if not isinstance(experiment, list) else experiment[:1])
    fid = check_fiducial_arrays(fiducial)
    names = check_names(params, fid)
    chunk = check_int(chunk, "chunk", 1)
    if exp.noise.parameter_dependent:
        raise InputError(
            f"empirical_gradients needs noise that does not depend on the parameters; the "
            f"noise of {exp.label} does ({exp.noise!r}). Use ff.fisher_operator(...).diagonal() "
            "or .matvec for the expected Fisher information instead."
        )
    fid64 = {k: np.asarray(v, dtype=np.float64) for k, v in fid.items()}
    with float64(), model_runtime_errors([exp]):
        found = {}

        def shape_of():
            p = kernels.parts(exp, fid64, names)
            found["root"] = p.root is not None
            return p.mean

        mean = jax.eval_shape(shape_of)
        if not found["root"]:
            raise InputError(
                f"empirical_gradients needs a noise model with a data-space square root "
                f"(whiten); {exp.noise!r} has none."
            )
        (d,) = check_data(data, [exp], [np.zeros(mean.shape)])
        G = _gradients_kernel(exp, fid64, names, d, chunk)  # pyright: ignore[reportCallIssue]
    return np.asarray(G, dtype=np.float64), expand_names(fid, names)
