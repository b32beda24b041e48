"""Matrix-free linear algebra for identifiability at large P.

Everything here works on products with a *scaled, deflated* Fisher operator

    M v = P⊥ (d ⊙ F (d ⊙ P⊥ v)) + c U Uᵀ v,      P⊥ = I − U Uᵀ,

where ``F v`` is one ``jvp`` and one ``vjp`` through the whitened model (as in
``ff.fisher_operator``), ``d`` a diagonal scaling and ``U`` (``P × r``, orthonormal) a basis
of directions already found. With ``d = |θ|/‖column‖`` ``M`` is the unit-diagonal log-FIM
``S̃ᵀS̃`` of the dense analysis; with ``d = |θ|`` it is the log-FIM itself. Projecting with
``U`` (``c = 0``) deflates the directions already found, so that a new Lanczos run sees the
rest of the spectrum; ``c > 0`` makes the operator invertible on a found null space, so that
conjugate gradients give the pseudo-inverse (``(A + cUUᵀ)⁻¹ = A⁺ + UUᵀ/c`` when ``AU = 0``).

Lanczos with one start vector sees each distinct eigenvalue once, so an exactly repeated
eigenvalue (a null space of dimension > 1) is found by deflated restarts: each run
projects out the null directions found so far (:func:`null_space`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import cached_kernel
from .._engine import model_runtime_errors
from .._operator import kernels, krylov
from .._x64 import float64

HIGHEST = jax.lax.Precision.HIGHEST

#: Memory budget of a Lanczos basis (``steps × P`` float64): caps the steps at large P.
LANCZOS_BYTES = 512 * 2**20
#: At most this many Lanczos steps in one run (as ``FisherOperator.eigen``).
MAX_LANCZOS_STEPS = 2000
#: Up to this many steps a Lanczos run uses one buffer of ``min(P, ...)`` rows.
SMALL_BUFFER = 240  # (at large P each step's reorthogonalisation reads the whole buffer)
#: Ritz pairs count as converged at ``‖M v − θ v‖ ≤ tol · max(|θ|, RITZ_FLOOR · θ_max)``:
#: with ``tol = 1e-8`` a null vector to ``1e-10 θ_max`` (its Ritz value, ~residual²/gap,
#: then sits far below the rank threshold ``rtol² θ_max = 1e-12 θ_max``).
RITZ_FLOOR = 1e-2


def scaled_matvec(experiments, fiducial, names, d, U, c):
    """``v -> M v`` (see the module docstring); pure, call under float64."""
    zero = jnp.zeros_like(d)

    def proj(v):
        return v - jnp.matmul(U, jnp.matmul(U.T, v, precision=HIGHEST), precision=HIGHEST)

    def mv(v):
        w = d * kernels.fisher_matvec(experiments, fiducial, names, zero, d * proj(v))
        shift = jnp.matmul(U, jnp.matmul(U.T, v, precision=HIGHEST), precision=HIGHEST)
        return proj(w) + c * shift

    return mv


@cached_kernel(static_argnames=("names", "m"))
def lanczos_kernel(experiments, fiducial, names, d, U, c, q0, m, steps):
    return krylov.lanczos(scaled_matvec(experiments, fiducial, names, d, U, c), q0, m, steps)


@cached_kernel(static_argnames=("names", "rtol", "max_steps"))
def cg_kernel(experiments, fiducial, names, d, U, c, rhs, rtol, max_steps):
    mv = scaled_matvec(experiments, fiducial, names, d, U, c)

    def one(b):
        x, _ = jax.scipy.sparse.linalg.cg(mv, b, tol=rtol, maxiter=max_steps)
        return x, jnp.linalg.norm(mv(x) - b) / jnp.linalg.norm(b)

    return jax.vmap(one)(rhs)


class Scaled(NamedTuple):
    """The operator ``M`` of the module docstring, bound to its experiments and fiducial."""

    experiments: tuple
    fiducial: dict
    names: tuple
    d: np.ndarray
    U: np.ndarray
    c: float = 0.0

    @property
    def size(self) -> int:
        return int(self.d.shape[0])

    def _args(self):
        # U padded with zero columns to a width of 4, 8, 16, ...: one compilation serves
        # several deflations (a zero column changes neither the projection nor the shift).
        r = self.U.shape[1]
        width = 4 if r <= 4 else 1 << (r - 1).bit_length()
        U = np.hstack([self.U, np.zeros((self.size, width - r))])
        return (self.experiments, self.fiducial, self.names, self.d, U, np.float64(self.c))

    def lanczos(self, q0, buffer, steps):
        """``(alpha, beta)`` as numpy arrays and the basis ``Q`` as a JAX array (moved to
        the host only when the Ritz vectors are wanted)."""
        with float64(), model_runtime_errors(self.experiments):
            alpha, beta, Q = lanczos_kernel(*self._args(), q0, buffer, steps)  # pyright: ignore[reportCallIssue]
        return np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64), Q

    def solve(self, rhs, rtol, max_steps, chunk=16):
        """``M x = b`` for the rows of `rhs` by conjugate gradients (``jax.scipy``; memory
        O(P) per right-hand side), `chunk` at a time. Returns ``(x, relative residuals)``."""
        xs, rs = [], []
        for i in range(0, rhs.shape[0], chunk):
            with float64(), model_runtime_errors(self.experiments):
                x, r = cg_kernel(*self._args(), rhs[i : i + chunk], rtol, max_steps)  # pyright: ignore[reportCallIssue]
            xs.append(np.asarray(x, dtype=np.float64))
            rs.append(np.asarray(r, dtype=np.float64))
        return np.concatenate(xs), np.concatenate(rs)


class Ritz(NamedTuple):
    """The smallest Ritz pairs of one Lanczos run (values ascending, vectors as columns),
    the largest Ritz value, the Ritz residual estimates and the number of steps."""

    values: np.ndarray
    vectors: np.ndarray
    top: float
    estimates: np.ndarray
    steps: int


def step_cap(P: int) -> int:
    """Most Lanczos steps for ``P`` parameters: ``min(P, 2000)`` within ``LANCZOS_BYTES``."""
    return max(1, min(P, MAX_LANCZOS_STEPS, LANCZOS_BYTES // (8 * P)))


def _valid_steps(beta) -> int:
    """Steps before an invariant subspace (``beta[j] = 0`` ends the basis after ``j + 1``)."""
    dead = np.nonzero(beta == 0.0)[0]
    return int(dead[0]) + 1 if dead.size else beta.shape[0]


def smallest_ritz(op: Scaled, k: int, tol: float, rng) -> Ritz:
    """The `k` smallest eigenpairs of ``op`` on the complement of ``op.U`` by Lanczos with
    full reorthogonalisation: ``m = max(4k, 60)`` steps, doubled until the wanted pairs
    have Ritz residual ``≤ tol · max(|θ|, RITZ_FLOOR · θ_max)`` or the cap
    (:func:`step_cap`) is reached. An invariant subspace ends the run (exact).

    Once the basis exhausts the complement (small P), rounding leaves vectors along ``U``
    (eigenvalue ``c``, 0 when deflating): Ritz vectors with a component along ``U`` are
    dropped."""
    P, r = op.size, op.U.shape[1]
    cap = min(step_cap(P), P - r)
    k = min(k, P - r)
    m = min(cap, max(4 * k, 60))
    # The basis is reorthogonalised against all its `buffer` rows at every step (memory
    # bound): at small P one buffer of P rows serves every length and deflation (one
    # compilation); at large P the buffer is the length, doubled with it.
    small = step_cap(P) <= SMALL_BUFFER
    q0 = rng.standard_normal(P)
    q0 = q0 - op.U @ (op.U.T @ q0)
    while True:
        alpha, beta, Q = op.lanczos(q0, step_cap(P) if small else m, m)
        n = _valid_steps(beta[:m])
        alpha, beta = alpha[:n], beta[:n]
        Q = np.asarray(Q[:n], dtype=np.float64)
        T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
        theta, S = np.linalg.eigh(T)
        cand = np.arange(min(n, k + r))
        V = Q.T @ S[:, cand]
        leak = np.linalg.norm(op.U.T @ V, axis=0) if r else np.zeros(cand.size)
        keep = leak < 0.5
        pick, V = cand[keep][:k], V[:, keep][:, :k]
        est = np.abs(beta[-1] * S[-1, pick])
        top = float(theta[-1])
        floor = RITZ_FLOOR * abs(top)
        converged = np.all(est <= tol * np.maximum(np.abs(theta[pick]), floor))
        if converged or m >= cap or n < m:
            break
        m = min(cap, 2 * m)
    return Ritz(theta[pick], V, top, est, n)


class NullSpace(NamedTuple):
    """The null space of the unit-diagonal operator ``A`` found by deflated Lanczos restarts.

    ``U``: orthonormal basis (``P × r``, ``A``'s coordinates); ``values``: their Ritz values;
    ``lam_max``: the largest eigenvalue of ``A``; ``lam_min``: the smallest one off the null
    space (``nan`` when the search stopped at `max_null`); ``complete``: whether a run with
    no further null direction closed the search; ``rounds``, ``steps``: Lanczos runs and
    steps in all."""

    U: np.ndarray
    values: np.ndarray
    lam_max: float
    lam_min: float
    complete: bool
    rounds: int
    steps: int


def null_space(op: Scaled, rtol: float, tol: float, max_null: int, rng) -> NullSpace:
    """Null directions of ``A`` (eigenvalue ``≤ rtol² λ_max``: singular value of the
    column-normalised sensitivities ``≤ rtol`` times the largest), one deflated Lanczos run
    after another until a run finds none (each run sees a repeated eigenvalue once), or
    `max_null` are found."""
    P = op.size
    U = np.zeros((P, 0))
    values: list[float] = []
    lam_max, rounds, steps = 0.0, 0, 0
    while U.shape[1] < min(max_null, P):
        ritz = smallest_ritz(op._replace(U=U), 1, tol, rng)
        rounds, steps = rounds + 1, steps + ritz.steps
        lam_max = max(lam_max, ritz.top)
        if not ritz.values[0] <= rtol**2 * lam_max:
            lam_min = float(ritz.values[0])
            return NullSpace(U, np.array(values), lam_max, lam_min, True, rounds, steps)
        new = ritz.vectors[:, :1] - U @ (U.T @ ritz.vectors[:, :1])
        U, _ = np.linalg.qr(np.hstack([U, new]))
        values.append(float(ritz.values[0]))
    complete = U.shape[1] == P
    return NullSpace(U, np.array(values), lam_max, float("nan"), complete, rounds, steps)


def inverse_diagonal(op: Scaled, i: int) -> float:
    """``eᵢᵀ M⁻¹ eᵢ`` of a positive definite ``M`` at small P (``step_cap(P) ≤ SMALL_BUFFER``):
    Lanczos from ``eᵢ`` over the whole space and Gauss quadrature, ``(T⁻¹)₁₁``, exact once
    the basis closes on an invariant subspace (the same compiled kernel as the eigenvalues;
    conjugate gradients, :meth:`Scaled.solve`, would compile another)."""
    P = op.size
    q0 = np.zeros(P)
    q0[i] = 1.0
    alpha, beta, _ = op.lanczos(q0, P, P)
    n = _valid_steps(beta)
    T = np.diag(alpha[:n]) + np.diag(beta[: n - 1], 1) + np.diag(beta[: n - 1], -1)
    return float(np.linalg.solve(T, np.eye(n)[0])[0])
