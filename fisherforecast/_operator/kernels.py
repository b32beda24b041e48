"""Pure, matrix-free pieces of the Fisher matrix of one experiment (call under float64).

For every experiment the Fisher matrix is split as ``F = Jₕᵀ Jₕ + F_inner + F_cov``:

* ``h(θ)`` is the *root*: the whitened model output ``W^½ μ(θ)`` (the noise held at the
  fiducial), extended, for Gaussian noise given per datum whose σ depends on the parameters,
  by ``√2 · log W^½(θ)·1`` (= ``−√2 log σ_k(θ)``): then ``Jₕᵀ Jₕ`` is the whole matrix,
  since ``½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC) = 2 Σ_k ∂ᵢ log σ_k ∂ⱼ log σ_k``.
  ``F v = Jₕᵀ (Jₕ v)`` is one ``jvp`` and one ``vjp`` through the model.
* ``F_inner`` is used where the noise model has no data-space square root (``whiten`` is
  ``None``): ``F v = ∇_θ inner(μ(θ), J v)`` with ``J v`` held fixed, again one ``jvp`` and one
  reverse pass.
* ``F_cov`` is the covariance term of parameter-dependent noise given as a dense covariance
  ``C(θ)``: ``F_cov v = ½ vjp_C(C⁻¹ (∂C·v) C⁻¹)``, since
  ``Σⱼ ½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC) vⱼ = ½ ⟨C⁻¹(∂_v C)C⁻¹, ∂ᵢC⟩``. Memory O(N²), as the covariance.
  A noise model that gives neither a per-datum σ nor a dense covariance falls back to its own
  dense ``covariance_information`` (``P × P``).

Nothing here forms ``J`` (``N × P``) or ``F`` (``P × P``), except the last fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._engine import call_model, split

HIGHEST = jax.lax.Precision.HIGHEST


class Parts(NamedTuple):
    """The matrix-free pieces of one experiment's Fisher matrix at the fiducial."""

    theta: jax.Array
    root: Callable | None  # θ -> (M,) real, F ⊇ Jₕᵀ Jₕ
    inner_mv: Callable | None  # v -> F_inner v (no data-space square root)
    cov_mv: Callable | None  # v -> F_cov v (dense covariance term)
    mean: jax.Array
    checks: dict


def _per_datum_gaussian(noise) -> bool:
    """Gaussian noise given per datum (a diagonal covariance): a capability, not a class."""
    return bool(getattr(noise, "gaussian", False)) and bool(getattr(noise, "diagonal", False))


def parts(experiment, fiducial, names) -> Parts:
    """Split one experiment's Fisher matrix into matrix-free pieces (see the module)."""
    theta, to_params = split(fiducial, names)
    params0 = to_params(theta)
    noise, design = experiment.noise, experiment.design
    mean0 = call_model(experiment, params0)
    noise.check_output(mean0.shape, mean0.dtype, design)
    flat0 = mean0.reshape(-1)

    def model_flat(th):
        return call_model(experiment, to_params(th)).reshape(-1)

    has_root = noise.whiten(flat0, mean0, params0, design) is not None
    dependent = bool(noise.parameter_dependent)
    root: Callable | None = None
    inner_mv: Callable | None = None
    cov_mv: Callable | None = None
    if has_root:
        diag_sigma = dependent and _per_datum_gaussian(noise)
        ones = jnp.ones(flat0.shape, dtype=jnp.float64)

        def root_fn(th):
            w = noise.whiten(model_flat(th), mean0, params0, design)
            if not diag_sigma:
                return w
            log_w = jnp.log(noise.whiten(ones, mean0, to_params(th), design))
            return jnp.concatenate([w, jnp.sqrt(2.0) * log_w])

        root = root_fn

        if dependent and not diag_sigma:
            cov_mv = _covariance_matvec(noise, mean0, theta, to_params, design)
    else:

        def inner_fn(v):
            _, u = jax.jvp(model_flat, (theta,), (v,))
            u = jax.lax.stop_gradient(u)
            return jax.grad(lambda th: noise.inner(model_flat(th), u, mean0, params0, design))(
                theta
            )

        inner_mv = inner_fn
        if dependent:
            cov_mv = _covariance_matvec(noise, mean0, theta, to_params, design)
    return Parts(theta, root, inner_mv, cov_mv, mean0, noise.checks(mean0, params0, design))


def _covariance_matvec(noise, mean0, theta, to_params, design):
    """``v -> F_cov v`` for a parameter-dependent covariance (see the module docstring)."""
    params0 = to_params(theta)
    if noise.covariance(mean0, params0, design) is None:
        dense = noise.covariance_information(mean0, theta, to_params, design, "forward")
        if dense is None:
            return None
        return lambda v: jnp.matmul(dense, v, precision=HIGHEST)

    def cov(th):
        return noise.covariance(mean0, to_params(th), design)

    C0 = cov(theta)
    factor = jax.scipy.linalg.cho_factor(0.5 * (C0 + C0.T), lower=True)

    def cov_mv(v):
        _, dC = jax.jvp(cov, (theta,), (v,))
        A = jax.scipy.linalg.cho_solve(factor, dC)
        M = jax.scipy.linalg.cho_solve(factor, A.T)
        M = 0.5 * (M + M.T)
        _, pull = jax.vjp(cov, theta)
        return 0.5 * pull(M)[0]

    return cov_mv


def matvec_parts(p: Parts, v):
    """``F v`` of one experiment from its :class:`Parts` (``v``: ``(P,)``)."""
    out = jnp.zeros_like(v)
    if p.root is not None:
        _, u = jax.jvp(p.root, (p.theta,), (v,))
        _, pull = jax.vjp(p.root, p.theta)
        out = out + pull(u)[0]
    if p.inner_mv is not None:
        out = out + p.inner_mv(v)
    if p.cov_mv is not None:
        out = out + p.cov_mv(v)
    return out


def fisher_matvec(experiments, fiducial, names, prior, v):
    """``F v`` summed over independent experiments, plus ``prior * v`` (the diagonal of a
    Gaussian prior). ``v`` is ``(P,)`` or a batch ``(k, P)``. Pure; call under float64."""
    ps = [parts(exp, fiducial, names) for exp in experiments]

    def one(x):
        total = prior * x
        for p in ps:
            total = total + matvec_parts(p, x)
        return total

    return one(v) if v.ndim == 1 else jax.vmap(one)(v)


def probe(experiments, fiducial, names):
    """Outputs and the noise models' validity flags at the fiducial, per experiment."""
    out = []
    for exp in experiments:
        p = parts(exp, fiducial, names)
        out.append((p.mean, p.checks))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# The exact diagonal
# ---------------------------------------------------------------------------------------
def _column_norms_by_rows(root, theta, chunk):
    """``Σ_r (∂h_r/∂θ)²`` (the diagonal of ``Jₕᵀ Jₕ``), one reverse pass per output row,
    ``chunk`` rows at a time: O(chunk·(M + P)) memory."""
    m = jax.eval_shape(root, theta).shape[0]
    _, pull = jax.vjp(root, theta)
    n_chunks = -(-m // chunk)

    def body(c, acc):
        idx = c * chunk + jnp.arange(chunk)
        cot = (idx[:, None] == jnp.arange(m)[None, :]).astype(jnp.float64)
        rows = jax.vmap(lambda e: pull(e)[0])(cot)
        return acc + jnp.sum(rows**2, axis=0)

    return jax.lax.fori_loop(0, n_chunks, body, jnp.zeros_like(theta))


def _column_norms_by_columns(root, theta, chunk):
    """The same diagonal, one forward pass per parameter, ``chunk`` at a time."""
    n = theta.shape[0]
    n_chunks = -(-n // chunk)

    def body(c, acc):
        idx = c * chunk + jnp.arange(chunk)
        tangents = (idx[:, None] == jnp.arange(n)[None, :]).astype(jnp.float64)
        cols = jax.vmap(lambda t: jax.jvp(root, (theta,), (t,))[1])(tangents)
        return acc.at[idx].add(jnp.sum(cols**2, axis=1), mode="drop")

    return jax.lax.fori_loop(0, n_chunks, body, jnp.zeros_like(theta))


def _diagonal_by_matvecs(mv, n, chunk):
    """``eᵢᵀ (F eᵢ)`` for every ``i``: ``n`` matrix-vector products, ``chunk`` at a time."""
    n_chunks = -(-n // chunk)

    def body(c, acc):
        idx = c * chunk + jnp.arange(chunk)
        basis = (idx[:, None] == jnp.arange(n)[None, :]).astype(jnp.float64)
        cols = jax.vmap(mv)(basis)
        return acc.at[idx].add(jnp.sum(cols * basis, axis=1), mode="drop")

    return jax.lax.fori_loop(0, n_chunks, body, jnp.zeros(n))


def exact_diagonal(experiments, fiducial, names, prior, chunk):
    """The exact diagonal of ``F`` (prior included). Per experiment: the squared gradients of
    the whitened outputs (one reverse pass per datum, when there are fewer data than
    parameters) or of the parameters' columns (one forward pass each); ``P`` products
    ``F eᵢ`` only for pieces without a data-space square root."""
    total = prior
    for exp in experiments:
        p = parts(exp, fiducial, names)
        n = p.theta.shape[0]
        if p.root is not None:
            m = jax.eval_shape(p.root, p.theta).shape[0]
            by = _column_norms_by_rows if m <= n else _column_norms_by_columns
            total = total + by(p.root, p.theta, chunk)
        rest = p._replace(root=None)
        if p.inner_mv is not None or p.cov_mv is not None:
            total = total + _diagonal_by_matvecs(partial(matvec_parts, rest), n, chunk)
    return total


def hutchinson_diagonal(experiments, fiducial, names, prior, key, n_probes, chunk):
    """Hutchinson's estimate ``mean(z ⊙ F z)`` over Rademacher probes ``z``, and the
    standard error of that mean per entry. ``chunk`` probes at a time."""
    ps = [parts(exp, fiducial, names) for exp in experiments]
    n = ps[0].theta.shape[0]

    def mv(x):
        total = prior * x
        for p in ps:
            total = total + matvec_parts(p, x)
        return total

    n_chunks = -(-n_probes // chunk)

    def body(c, carry):
        s1, s2 = carry
        z = jax.random.rademacher(jax.random.fold_in(key, c), (chunk, n), dtype=jnp.float64)
        valid = (c * chunk + jnp.arange(chunk)) < n_probes
        sample = z * jax.vmap(mv)(z) * valid[:, None]
        return s1 + sample.sum(0), s2 + (sample**2).sum(0)

    s1, s2 = jax.lax.fori_loop(0, n_chunks, body, (jnp.zeros(n), jnp.zeros(n)))
    mean = s1 / n_probes
    var = jnp.maximum(s2 / n_probes - mean**2, 0.0) * n_probes / max(n_probes - 1, 1)
    return mean, jnp.sqrt(var / n_probes)
