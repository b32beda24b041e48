"""Krylov methods on a symmetric positive semi-definite operator given as a pure ``matvec``.

* :func:`lanczos`: ``m`` steps of Lanczos with full reorthogonalisation (classical
  Gram–Schmidt applied twice against every stored vector), stopping cleanly on an invariant
  subspace. Returns the tridiagonal ``T`` (``alpha``, ``beta``) and the basis.
* :func:`slq`: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017) for ``tr f(F)``:
  for Rademacher probes ``z``, ``zᵀ f(F) z ≈ ‖z‖² Σⱼ τⱼ² f(θⱼ)`` with ``θⱼ`` the eigenvalues
  of ``T`` and ``τⱼ`` the first components of its eigenvectors (Gauss quadrature); the mean
  over probes estimates the trace, its standard error is the error bar.
* :func:`pcg`: preconditioned conjugate gradients through lineax, with the true residual.

All are pure JAX (``jit``-able); call under float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import lineax as lx

HIGHEST = jax.lax.Precision.HIGHEST


def lanczos(mv, q0, m: int, steps=None):
    """``m`` Lanczos steps from ``q0`` with full reorthogonalisation.

    ``steps`` (dynamic, at most ``m``) stops earlier, leaving the rest zero, so that one
    compiled buffer of ``m`` rows serves several lengths.

    Returns ``(alpha (m,), beta (m,), Q (m, P))``: ``T`` has ``alpha`` on its diagonal and
    ``beta[:-1]`` beside it; ``beta[-1]`` is the norm of the last residual (a Ritz pair
    ``(θ, Qᵀs)`` has residual ``beta[-1] |s_m|``). After an invariant subspace is found
    (``beta`` below ``1e-12 ‖T‖``) the remaining ``alpha``, ``beta`` and rows of ``Q`` are 0,
    which decouples them from the quadrature (their first eigenvector components vanish).

    ```python
    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     A = jnp.diag(jnp.arange(1.0, 6.0))
    ...     a, b, Q = lanczos(lambda v: A @ v, jnp.ones(5), 5)
    ...     T = jnp.diag(a) + jnp.diag(b[:-1], 1) + jnp.diag(b[:-1], -1)
    ...     w = jnp.linalg.eigvalsh(T)
    >>> [round(float(x), 10) for x in w]
    [1.0, 2.0, 3.0, 4.0, 5.0]
    ```
    """
    n = q0.shape[0]
    q0 = q0 / jnp.linalg.norm(q0)
    Q = jnp.zeros((m, n), dtype=q0.dtype).at[0].set(q0)

    def step(carry):
        j, Q, alpha, beta, scale, alive = carry
        q = Q[j]
        w = mv(q)
        a = jnp.dot(q, w, precision=HIGHEST)
        # Full reorthogonalisation, twice (CGS2): w ⟂ every stored vector to working precision.
        for _ in range(2):
            w = w - jnp.matmul(Q.T, jnp.matmul(Q, w, precision=HIGHEST), precision=HIGHEST)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        alive_next = alive & (b > 1e-12 * scale)
        alpha = alpha.at[j].set(jnp.where(alive, a, 0.0))
        beta = beta.at[j].set(jnp.where(alive_next, b, 0.0))
        q_next = jnp.where(alive_next, w / jnp.where(alive_next, b, 1.0), 0.0)
        Q = Q.at[j + 1].set(q_next, mode="drop")
        return j + 1, Q, alpha, beta, scale, alive_next

    # A while loop, not a fori_loop: the steps after an invariant subspace (all zeros) are
    # not run.
    n_steps = m if steps is None else steps
    init = (0, Q, jnp.zeros(m), jnp.zeros(m), jnp.asarray(0.0), jnp.asarray(True))
    _, Q, alpha, beta, _, _ = jax.lax.while_loop(lambda c: (c[0] < n_steps) & c[5], step, init)
    return alpha, beta, Q


def quadrature(alpha, beta):
    """Nodes ``θⱼ`` and weights ``τⱼ²`` of the Gauss rule of a Lanczos tridiagonal."""
    T = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    theta, S = jnp.linalg.eigh(T)
    return theta, S[0] ** 2


def slq(mv, n: int, key, n_probes: int, steps: int, fn):
    """Stochastic Lanczos quadrature estimate of ``tr fn(F)`` and its standard error.

    Probes run one after another (memory ``steps × n``). Returns ``(estimate, error,
    samples)``.
    """

    def one(k):
        z = jax.random.rademacher(k, (n,), dtype=jnp.float64)
        alpha, beta, _ = lanczos(mv, z, steps)
        theta, w = quadrature(alpha, beta[:-1])
        used = w > 0
        return n * jnp.sum(jnp.where(used, w * fn(jnp.where(used, theta, 1.0)), 0.0))

    samples = jax.lax.map(one, jax.random.split(key, n_probes))
    est = jnp.mean(samples)
    err = jnp.std(samples, ddof=1) / jnp.sqrt(n_probes) if n_probes > 1 else jnp.inf
    return est, err, samples


def pcg(mv, b, precond_diag, rtol: float, max_steps: int):
    """Solve ``F x = b`` (``b``: ``(P,)``) by conjugate gradients (lineax) with the Jacobi
    preconditioner ``diag(1 / precond_diag)``.

    Returns ``(x, relative residual ‖F x − b‖ / ‖b‖, steps)``.
    """
    n = b.shape[0]
    struct = jax.ShapeDtypeStruct((n,), jnp.float64)
    op = lx.FunctionLinearOperator(
        mv, struct, tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)
    )
    pre = lx.DiagonalLinearOperator(1.0 / precond_diag)
    pre = lx.TaggedLinearOperator(pre, (lx.symmetric_tag, lx.positive_semidefinite_tag))
    # lineax tests |r_i| <= atol + rtol |b_i| entry by entry: atol carries the scale of b.
    atol = rtol * jnp.max(jnp.abs(b))
    solver = lx.CG(rtol=rtol, atol=atol, max_steps=max_steps)  # pyright: ignore[reportArgumentType]
    sol = lx.linear_solve(op, b, solver, options={"preconditioner": pre}, throw=False)
    x = sol.value
    resid = jnp.linalg.norm(mv(x) - b) / jnp.linalg.norm(b)
    return x, resid, sol.stats["num_steps"]
