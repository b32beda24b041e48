"""Noise models: how a model's output is compared with data.

:class:`NoiseModel` is the contract every analysis relies on. A noise model owns one
definition of each of these, on flattened outputs (``N`` values; Jacobians ``(N, P)``), and
every method takes its arguments in one order — what is being measured first, then
``mean, params, design``:

* ``inner(a, b, mean, params, design)`` (abstract): the data-space metric ``aᵀ W b``
  (``W = C⁻¹`` for Gaussian noise, ``1/λ`` for Poisson counts, the noise-weighted inner
  product for a PSD). The Fisher matrix is ``inner(J, J)``.
* ``log_likelihood(data, mean, params, design)`` (abstract): used by HMC cross-checks,
  profiles and coverage.
* ``tree_flatten()`` / ``tree_unflatten(aux, children)`` (abstract): arrays are pytree
  leaves, callables static. Every subclass is registered as a pytree automatically.
* Optional capabilities, each with a neutral default, which analyses ask for instead of
  testing for concrete classes:

  - ``whiten(x, mean, params, design)``: a real ``W^½ x``, or ``None`` when the metric has
    no data-space square root (identifiability then uses a root of the Fisher matrix);
  - ``parameter_dependent``: whether the noise depends on the parameters (``None``:
    not declared);
    ``covariance_information(mean, theta, to_params, design, mode)`` then returns the extra
    information ``½ tr(C⁻¹ ∂ᵢC C⁻¹ ∂ⱼC)``;
  - ``cross_information(jacobian, mean, theta, to_params, design, mode)``: the cross terms
    ``Jᵀ C + Cᵀ J`` between the mean and parameter-dependent noise (e.g. a dispersion
    entering the same per-datum distribution as the mean), or ``None`` where they vanish;
  - ``log_likelihood_terms(data, mean, params, design)``: the ``(N,)`` per-datum terms of
    an independent-data log-likelihood, or ``None``;
  - ``sequential_terms(data, mean, params, design)``: ``(N,)`` terms ``ln p(d_k | d_<k)``
    summing to the log-likelihood, whose scores are uncorrelated (the empirical Fisher
    needs them; default: ``log_likelihood_terms``; correlated Gaussian data: the Cholesky
    components);
  - ``data_in_support(data, mean, params, design)``: boolean ``(N,)``, whether each datum
    can occur (e.g. whole non-negative counts), or ``None`` (any finite value can);
  - ``gaussian``: the log-likelihood is ``−½ inner(r, r)`` plus a term free of the mean
    (needed by DALI);
  - ``covariance(mean, params, design)``: the dense data covariance, or ``None``
    (``ff.JointExperiment`` needs it);
  - ``expected_deviance(mean, mean0, params, params0, design)``: ``E₀[−2 ln L]`` for data
    drawn at ``mean0, params0``, up to a constant (``has_expected_deviance`` says whether a
    noise model defines it; noise-free profiles need it when the noise depends on the
    parameters);
  - ``check_values(mean, params, design)``: values that must be positive and finite;
  - ``simulate(key, mean, params, design)``: one noisy realisation.

A new noise model is one subclass; ``tests/test_noise_contract.py`` runs every noise model
through every analysis it supports.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, quote
from ._linalg import check_matrix
from ._noise_callables import broadcast_flat as _broadcast_flat
from ._noise_callables import call_callable, callable_signature, linearised_mean
from ._values import check_positive, warn_if_float32

HIGHEST = jax.lax.Precision.HIGHEST


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


class NoiseModel(abc.ABC):
    """The noise-model contract (see the module docstring for every method).

    Subclass it and implement ``inner``, ``log_likelihood``, ``tree_flatten`` and
    ``tree_unflatten``; override the optional capabilities your noise model has.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> class Unit(ff.NoiseModel):          # Gaussian noise with σ = 1, written by hand
    ...     gaussian = True
    ...     def tree_flatten(self):
    ...         return (), None
    ...     @classmethod
    ...     def tree_unflatten(cls, aux, children):
    ...         return cls()
    ...     def inner(self, a, b, mean, params, design):
    ...         return a.T @ b
    ...     def log_likelihood(self, data, mean, params, design):
    ...         return -0.5 * jnp.sum((data - mean) ** 2)
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, Unit(), design=jnp.arange(3.0))
    >>> float(ff.fisher(exp, {"a": 1.0}).matrix[0, 0])    # Σ t² = 0 + 1 + 4
    5.0
    ```
    """

    #: Whether complex-valued model output is allowed.
    accepts_complex: ClassVar[bool] = False
    #: Whether ``log_likelihood = −½ inner(r, r) + c`` with ``c`` free of the mean.
    gaussian: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        # Every noise model is a pytree (arrays = leaves, callables = static), subclasses
        # of concrete noise models included, so that jit caches on them correctly.
        super().__init_subclass__(**kwargs)

        def unflatten(aux, children):
            return cls.tree_unflatten(aux, children)

        jax.tree_util.register_pytree_node(
            cls,
            lambda obj: obj.tree_flatten(),
            unflatten,  # pyright: ignore[reportArgumentType]
        )

    # --- pytree hooks --------------------------------------------------------------------
    @abc.abstractmethod
    def tree_flatten(self) -> tuple[tuple, object]:
        """``(children, aux)``: array settings as children, callables and flags as aux."""
        raise NotImplementedError

    @classmethod
    @abc.abstractmethod
    def tree_unflatten(cls, aux, children) -> NoiseModel:
        """Rebuild the noise model from :meth:`tree_flatten`'s output (without checks)."""
        raise NotImplementedError

    # --- the metric ----------------------------------------------------------------------
    @abc.abstractmethod
    def inner(self, a, b, mean, params, design) -> jax.Array:
        """The data-space metric ``aᵀ W b`` (``a``, ``b``: ``(N,)`` or ``(N, P)``)."""
        raise NotImplementedError

    def whiten(self, x, mean, params, design):
        """A real array ``W^½ x`` with ``(W^½a)ᵀ(W^½b) = inner(a, b)``, or ``None``.

        ``x`` is ``(N,)`` or ``(N, P)``; complex inputs may come back with their real and
        imaginary parts stacked along the first axis.
        """
        return None

    @property
    def parameter_dependent(self) -> bool | None:
        """Whether the noise itself depends on the model parameters; ``None`` (the default)
        when the noise model does not say — analyses that need to know then test it
        numerically (the gradient of the log-likelihood with the mean held fixed)."""
        return None

    def covariance_information(self, mean, theta, to_params, design, mode, mean_jacobian=None):
        """Extra information from parameter-dependent noise, ``(P, P)``; ``None`` if none.

        ``theta`` is the vector of varied parameters, ``to_params(theta)`` the full dict,
        ``mode`` ``"forward"`` or ``"reverse"`` (the derivative mode to use);
        ``mean_jacobian``, the model's ``(N, P)`` Jacobian, is passed only to a noise model
        whose ``mean_dependent`` is true.
        """
        return None

    def cross_information(self, jacobian, mean, theta, to_params, design, mode):
        """Information shared by the mean and the noise parameters, ``(P, P)``, or ``None``
        (the default: the two are orthogonal, as for Gaussian noise)."""
        return None

    def covariance(self, mean, params, design):
        """The dense ``(N, N)`` covariance of Gaussian data, or ``None``."""
        return None

    # --- validity ------------------------------------------------------------------------
    def check_output(self, shape, dtype, design) -> None:
        """Static check of the model output against the noise model (at trace time)."""
        if jnp.issubdtype(dtype, jnp.complexfloating) and not self.accepts_complex:
            raise InputError(
                f"The model returns complex output (dtype {dtype}) but {type(self).__name__} "
                "noise is real. Use ff.PSD(...) for complex frequency-domain data, or return "
                "jnp.concatenate([h.real, h.imag]) with a real noise model."
            )

    def check_values(self, mean, params, design):
        """Values that must be positive and finite, dict message -> flat array.

        Used by :meth:`checks` and, on failure, to quote the offending values.
        """
        return {}

    def checks(self, mean, params, design):
        """Traced validity flags, dict message -> bool scalar (True is good)."""
        return {
            message: jnp.all(jnp.isfinite(v) & (v > 0))
            for message, v in self.check_values(mean, params, design).items()
        }

    # --- likelihood ----------------------------------------------------------------------
    @abc.abstractmethod
    def log_likelihood(self, data, mean, params, design) -> jax.Array:
        """``ln p(data | mean, params)`` (constants may be dropped)."""
        raise NotImplementedError

    def log_likelihood_terms(self, data, mean, params, design):
        """``(N,)`` per-datum terms summing to :meth:`log_likelihood` for independent data,
        or ``None`` (the default: correlated data, or not defined)."""
        return None

    def data_in_support(self, data, mean, params, design):
        """Boolean ``(N,)``: which data the noise model can produce; ``None``: all."""
        return None

    def sequential_terms(self, data, mean, params, design):
        """``(N,)`` terms ``ln p(d_k | d_<k)`` (or ``None``): each one's score has mean zero
        given the earlier data, so the scores are uncorrelated and ``Σ_k s_k s_kᵀ`` averages
        to the expected Fisher matrix. Independent data: :meth:`log_likelihood_terms`."""
        return self.log_likelihood_terms(data, mean, params, design)

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``E[−2 ln L(mean, params)]`` over data drawn at ``(mean0, params0)``, up to a
        constant. Optional; ``has_expected_deviance`` tells whether it is defined."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no expected deviance; profile with data= instead."
        )

    @property
    def has_expected_deviance(self) -> bool:
        """Whether this noise model defines :meth:`expected_deviance`."""
        return type(self).expected_deviance is not NoiseModel.expected_deviance

    def simulate(self, key, mean, params, design):
        """One noisy realisation of the data around ``mean`` (a JAX random ``key``)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot simulate data: define simulate(key, mean, params, "
            "design) on it, or pass data= explicitly."
        )


class Gaussian(NoiseModel):
    """Gaussian noise with a fixed or parameter-dependent covariance.

    Give exactly one of `sigma` (standard deviations: a scalar, an array per datum, or an
    array that broadcasts to the model output) or `cov` (a full ``N × N`` covariance over
    the flattened model output). Either may instead be a callable ``f(params)`` or
    ``f(params, design)``; the covariance then depends on the parameters and the Fisher
    matrix includes ``½ tr(C⁻¹ ∂ᵢC C⁻¹ ∂ⱼC)``. A callable whose first argument is named
    ``mean`` (or any callable with ``uses_mean=True``), ``f(mean, params)`` or
    ``f(mean, params, design)``, gets the model mean: e.g. a combined error
    ``lambda mean, p: p["a"] + p["b"] * abs(mean)``, differentiated through the model's
    Jacobian, with no second model evaluation.

    **Arguments:**

    - `sigma`: standard deviation(s) or a callable returning them.
    - `cov`: covariance matrix or a callable returning it.
    - `uses_mean`: whether the callable takes the model mean first (default: when its
      first argument is named ``mean``).

    **Raises:** `InputError` (a `ValueError`) for non-positive or non-finite sigma, a
    non-symmetric or non-positive-definite covariance, or when both/neither of `sigma` and
    `cov` are given.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.5),
    ...                     design=jnp.arange(1.0, 4.0))
    >>> round(float(ff.fisher(exp, {"a": 1.0}).matrix[0, 0]), 6)   # Σ t² / σ² = 14 / 0.25
    56.0
    ```
    """

    gaussian = True

    def __init__(self, sigma=None, *, cov=None, uses_mean=None):
        if (sigma is None) == (cov is None):
            raise InputError(
                "Gaussian needs exactly one of `sigma` or `cov`; received "
                f"sigma={quote(sigma)}, cov={quote(cov)}."
            )
        self.sigma_fn = self.cov_fn = None
        self.sigma = self.cov = self.cov_cholesky = None
        self.arity, self.uses_mean = 0, False
        if sigma is not None:
            if callable(sigma):
                self.sigma_fn = sigma
                self.arity, self.uses_mean = callable_signature(sigma, "sigma", uses_mean)
            else:
                warn_if_float32(sigma, "A noise model")
                self.sigma = _check_sigma(sigma)
        else:
            if callable(cov):
                self.cov_fn = cov
                self.arity, self.uses_mean = callable_signature(cov, "cov", uses_mean)
            else:
                warn_if_float32(cov, "A noise model")
                self.cov, self.cov_cholesky = _check_cov(cov)

    def tree_flatten(self):
        children = (self.sigma, self.cov, self.cov_cholesky)
        return children, (self.sigma_fn, self.cov_fn, self.arity, self.uses_mean)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.sigma, obj.cov, obj.cov_cholesky = children
        obj.sigma_fn, obj.cov_fn, obj.arity, obj.uses_mean = aux
        return obj

    def __repr__(self):
        if self.sigma_fn is not None or self.cov_fn is not None:
            fn = self.sigma_fn or self.cov_fn
            kind = "sigma" if self.sigma_fn is not None else "cov"
            return f"Gaussian({kind}={getattr(fn, '__name__', fn)!s})"
        if self.sigma is not None:
            return f"Gaussian(sigma={quote(self.sigma, 60)})"
        return f"Gaussian(cov={quote(self.cov, 60)})"

    @property
    def parameter_dependent(self) -> bool:
        return self.sigma_fn is not None or self.cov_fn is not None

    @property
    def mean_dependent(self) -> bool:
        """Whether the sigma/cov callable takes the model mean (the engine then passes the
        Jacobian to ``covariance_information``)."""
        return self.uses_mean

    @property
    def diagonal(self) -> bool:
        """Whether the noise is given per datum (``sigma``) rather than as a covariance."""
        return self.cov is None and self.cov_fn is None

    def check_output(self, shape, dtype, design):
        super().check_output(shape, dtype, design)
        n = int(np.prod(shape))
        if self.cov is not None and self.cov.shape != (n, n):
            raise InputError(
                f"cov has shape {self.cov.shape}, but the model output has shape "
                f"{tuple(shape)} ({n} values), so cov must be ({n}, {n}) over the flattened "
                "output."
            )
        if self.sigma is not None:
            _broadcast_flat(self.sigma, shape, "sigma")

    # --- the covariance at given parameters, in the flattened output space ------------
    def sigma_flat(self, shape, params, design, mean=None):
        """Standard deviations per flattened datum (``sigma`` noise only)."""
        if self.sigma_fn is not None:
            s = call_callable(self.sigma_fn, self.arity, self.uses_mean, params, design, mean)
            return _broadcast_flat(s, shape, "sigma (returned by the callable)")
        return _broadcast_flat(self.sigma, shape, "sigma")

    def _raw_cov(self, params, design, n, mean=None):
        """The callable's covariance as returned (checked for shape, not symmetrised)."""
        C = jnp.asarray(
            call_callable(self.cov_fn, self.arity, self.uses_mean, params, design, mean)
        )
        if C.shape != (n, n):
            raise InputError(
                f"cov (returned by the callable) has shape {tuple(C.shape)}; expected "
                f"({n}, {n}) for {n} model outputs."
            )
        return C

    def cov_and_cholesky(self, n, params, design, mean=None):
        """``(C, L)`` with ``C = L Lᵀ`` over ``n`` flattened outputs (``cov`` noise only)."""
        if self.cov_fn is not None:
            C = self._raw_cov(params, design, n, mean)
            C = 0.5 * (C + C.T)
            return C, jnp.linalg.cholesky(C)
        return jnp.asarray(self.cov), jnp.asarray(self.cov_cholesky)

    def whiten(self, x, mean, params, design):
        """``L⁻¹ x`` for ``C = L Lᵀ`` (``x`` flat, (N,) or (N, P))."""
        if self.diagonal:
            s = self.sigma_flat(mean.shape, params, design, mean)
            return x / (s if x.ndim == 1 else s[:, None])
        _, L = self.cov_and_cholesky(mean.size, params, design, mean)
        return jax.scipy.linalg.solve_triangular(L, x, lower=True)

    def inner(self, a, b, mean, params, design):
        wa = self.whiten(a, mean, params, design)
        wb = self.whiten(b, mean, params, design)
        return jnp.matmul(wa.T, wb, precision=HIGHEST)

    def covariance(self, mean, params, design):
        if self.diagonal:
            return jnp.diag(self.sigma_flat(mean.shape, params, design, mean) ** 2)
        return self.cov_and_cholesky(mean.size, params, design, mean)[0]

    def covariance_information(self, mean, theta, to_params, design, mode, mean_jacobian=None):
        """With a callable of the mean (``mean_dependent``) the engine passes the model's
        Jacobian: σ(μ(θ), θ) is differentiated through the linearised mean."""
        if not self.parameter_dependent:
            return None
        jac = jax.jacfwd if mode == "forward" else jax.jacrev
        shape = mean.shape
        mean_at = linearised_mean(mean, mean_jacobian if self.uses_mean else None, theta)
        if self.sigma_fn is not None:

            def sig(th):
                return self.sigma_flat(shape, to_params(th), design, mean_at(th))

            s = sig(theta)
            ds = jac(sig)(theta)  # (N, P)
            # C = diag(σ²): ½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC) = 2 Σ_k ∂ᵢσ_k ∂ⱼσ_k / σ_k².
            w = ds / s[:, None]
            return 2.0 * jnp.matmul(w.T, w, precision=HIGHEST)
        n = int(np.prod(shape))

        def cov(th):
            return self.cov_and_cholesky(n, to_params(th), design, mean_at(th))[0]

        C = cov(theta)
        dC = jac(cov)(theta)  # (N, N, P)
        L = jnp.linalg.cholesky(C)
        A = jax.vmap(lambda D: jax.scipy.linalg.cho_solve((L, True), D), in_axes=2)(dC)
        return 0.5 * jnp.einsum("iab,jba->ij", A, A, precision=HIGHEST)

    def check_values(self, mean, params, design):
        if self.sigma_fn is not None:
            s = self.sigma_flat(mean.shape, params, design, mean)
            return {"sigma returned by the callable must be positive and finite": s}
        if self.cov_fn is not None:
            raw = self._raw_cov(params, design, mean.size, mean)
            root = jnp.sqrt(jnp.abs(jnp.diag(raw)))
            asym = jnp.max(jnp.abs(raw - raw.T) / jnp.maximum(jnp.outer(root, root), 1e-300))
            return {
                "cov returned by the callable must be positive definite and finite "
                "(values quoted are its eigenvalues)": jnp.linalg.eigvalsh(0.5 * (raw + raw.T)),
                "cov returned by the callable must be symmetric (value quoted: 1e-10 "
                "minus its largest |C_ij - C_ji| / sqrt(C_ii C_jj))": jnp.reshape(
                    1e-10 - asym, (1,)
                ),
            }
        return {}

    def log_likelihood_terms(self, data, mean, params, design):
        if not self.diagonal:
            return None
        r = (jnp.asarray(data) - mean).reshape(-1)
        s = self.sigma_flat(mean.shape, params, design)
        return -0.5 * (r / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)

    def sequential_terms(self, data, mean, params, design):
        """Correlated data: with ``C = L Lᵀ`` (Cholesky), ``z = L⁻¹(d − μ)`` and
        ``ln p(d_k | d_<k) = −½ z_k² − ln L_kk − ½ ln 2π`` (in the data's order; ``C`` may
        depend on the parameters)."""
        if self.diagonal:
            return self.log_likelihood_terms(data, mean, params, design)
        r = (jnp.asarray(data) - mean).reshape(-1)
        _, L = self.cov_and_cholesky(r.size, params, design, mean)
        z = jax.scipy.linalg.solve_triangular(L, r, lower=True)
        return -0.5 * z**2 - jnp.log(jnp.diag(L)) - 0.5 * jnp.log(2 * jnp.pi)

    def log_likelihood(self, data, mean, params, design):
        r = (jnp.asarray(data) - mean).reshape(-1)
        if self.diagonal:
            s = self.sigma_flat(mean.shape, params, design, mean)
            return (
                -0.5 * jnp.sum((r / s) ** 2)
                - jnp.sum(jnp.log(s))
                - 0.5 * r.size * jnp.log(2 * jnp.pi)
            )
        _, L = self.cov_and_cholesky(r.size, params, design, mean)
        z = jax.scipy.linalg.solve_triangular(L, r, lower=True)
        return (
            -0.5 * jnp.sum(z**2)
            - jnp.sum(jnp.log(jnp.diag(L)))
            - 0.5 * r.size * jnp.log(2 * jnp.pi)
        )

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``ln det C + tr(C⁻¹C₀) + (μ − μ₀)ᵀC⁻¹(μ − μ₀)``; with fixed noise, −2 ln L of
        the data ``μ₀`` (the same up to a constant)."""
        mean0 = jnp.asarray(mean0)
        if not self.parameter_dependent:
            return -2.0 * self.log_likelihood(mean0, mean, params, design)
        r = (mean - mean0).reshape(-1)
        if self.sigma_fn is not None:
            s = self.sigma_flat(mean.shape, params, design, mean)
            s0 = self.sigma_flat(mean.shape, params0, design, mean0)
            return jnp.sum(2.0 * jnp.log(s) + (s0 / s) ** 2 + (r / s) ** 2)
        _, L = self.cov_and_cholesky(r.size, params, design, mean)
        _, L0 = self.cov_and_cholesky(r.size, params0, design, mean0)
        A = jax.scipy.linalg.solve_triangular(L, L0, lower=True)  # tr(C⁻¹C₀) = ‖L⁻¹L₀‖²_F
        z = jax.scipy.linalg.solve_triangular(L, r, lower=True)
        return 2.0 * jnp.sum(jnp.log(jnp.diag(L))) + jnp.sum(A**2) + jnp.sum(z**2)

    def simulate(self, key, mean, params, design):
        z = jax.random.normal(key, (mean.size,), dtype=mean.dtype)
        if self.diagonal:
            noise = self.sigma_flat(mean.shape, params, design, mean) * z
        else:
            _, L = self.cov_and_cholesky(mean.size, params, design, mean)
            noise = L @ z
        return mean + noise.reshape(mean.shape)


def _check_sigma(sigma):
    if _is_traced(sigma):
        return sigma
    return check_positive(
        sigma,
        "sigma",
        hint="A zero sigma means infinitely precise data: drop those points or give them a "
        "small positive error.",
    )


def _check_cov(cov):
    arr = np.asarray(cov)
    if np.iscomplexobj(arr):
        raise InputError(f"cov must be real; received dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"cov must be a square matrix; received shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"cov contains NaN or inf at {np.argwhere(~np.isfinite(arr))[:5]}.")
    # The foundation's check: asymmetry relative to sqrt(C_ii C_jj), so that small-variance
    # blocks count too; returns the symmetrised matrix.
    arr = check_matrix(arr, "cov")
    try:
        L = np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        w = np.linalg.eigvalsh(arr)
        raise InputError(
            "cov is not positive definite: smallest eigenvalue "
            f"{w[0]:.3g} (largest {w[-1]:.3g}). A covariance must have positive variance in "
            "every direction; check for duplicated data or a missing noise term."
        ) from None
    return arr, L


class Poisson(NoiseModel):
    """Poisson counts: the model returns the expected counts ``λ > 0`` per bin.

    The Fisher matrix is ``F_ij = Σ_k ∂ᵢλ_k ∂ⱼλ_k / λ_k``.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["rate"] * jnp.ones(10), ff.Poisson())
    >>> round(float(ff.fisher(exp, {"rate": 4.0}).matrix[0, 0]), 6)   # 10 / 4
    2.5
    ```
    """

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return object.__new__(cls)

    def __repr__(self):
        return "Poisson()"

    @property
    def parameter_dependent(self) -> bool:
        return False

    def whiten(self, x, mean, params, design):
        scale = jnp.sqrt(mean.reshape(-1))
        return x / (scale if x.ndim == 1 else scale[:, None])

    def inner(self, a, b, mean, params, design):
        lam = mean.reshape(-1)
        wa = a / (lam if a.ndim == 1 else lam[:, None])
        return jnp.matmul(wa.T, b, precision=HIGHEST)

    def check_values(self, mean, params, design):
        return {"expected counts must be positive and finite (Poisson noise)": mean.reshape(-1)}

    def data_in_support(self, data, mean, params, design):
        d = jnp.asarray(data).reshape(-1)
        return (d >= 0) & (d == jnp.round(d))

    def log_likelihood_terms(self, data, mean, params, design):
        d, lam = jnp.asarray(data).reshape(-1), mean.reshape(-1)
        return jax.scipy.special.xlogy(d, lam) - lam - jax.scipy.special.gammaln(d + 1)

    def log_likelihood(self, data, mean, params, design):
        return jnp.sum(self.log_likelihood_terms(data, mean, params, design))

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``−2 Σ (λ₀ ln λ − λ)``: linear in the data, so −2 ln L of the data ``λ₀``."""
        return -2.0 * self.log_likelihood(mean0, mean, params, design)

    def simulate(self, key, mean, params, design):
        return jax.random.poisson(key, mean).astype(mean.dtype)


class PSD(NoiseModel):
    """Stationary Gaussian noise in the frequency domain with a one-sided PSD ``S_n``.

    The inner product is the gravitational-wave one,
    ``(a|b) = 4 Δf Re Σ_k a_k* b_k / S_n(f_k)``, so ``F_ij = (∂ᵢh|∂ⱼh)`` and ``SNR² = (h|h)``.

    **Arguments:**

    - `psd`: one-sided PSD values, broadcastable to the model output (e.g. one per
      frequency bin, or ``(n_detectors, n_freq)``), or a callable ``psd(design)``.
    - `df`: frequency spacing ``Δf``, a scalar or an array broadcastable to the output.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> f = jnp.linspace(20.0, 100.0, 81)
    >>> exp = ff.Experiment(lambda p, f: p["A"] * f ** (-7 / 6) * (1 + 0j), ff.PSD(1.0, 1.0),
    ...                     design=f)
    >>> F = ff.fisher(exp, {"A": 1.0})
    >>> bool(np.isclose(F.matrix[0, 0], 4 * np.sum(np.asarray(f) ** (-7 / 3))))
    True
    ```
    """

    accepts_complex = True
    gaussian = True

    def __init__(self, psd, df):
        self.psd_fn = None
        self.psd = None
        if callable(psd):
            self.psd_fn = psd
        else:
            warn_if_float32(psd, "A noise model")
            self.psd = check_positive(psd, "psd")
        warn_if_float32(df, "A noise model")
        self.df = check_positive(df, "df")

    def tree_flatten(self):
        return (self.psd, self.df), self.psd_fn

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.psd, obj.df = children
        obj.psd_fn = aux
        return obj

    def __repr__(self):
        psd = getattr(self.psd_fn, "__name__", None) or quote(self.psd, 40)
        return f"PSD(psd={psd}, df={quote(self.df, 40)})"

    @property
    def parameter_dependent(self) -> bool:
        return False

    def check_output(self, shape, dtype, design):
        if self.psd is not None:
            _broadcast_flat(self.psd, shape, "psd")
        _broadcast_flat(self.df, shape, "df")

    def _weights(self, design, shape):
        psd = self.psd_fn(design) if self.psd_fn is not None else self.psd
        return 4.0 * _broadcast_flat(self.df, shape, "df") / _broadcast_flat(psd, shape, "psd")

    def whiten(self, x, mean, params, design):
        w = jnp.sqrt(self._weights(design, mean.shape))
        wx = x * (w if x.ndim == 1 else w[:, None])
        return jnp.concatenate([wx.real, wx.imag]) if jnp.iscomplexobj(wx) else wx

    def inner(self, a, b, mean, params, design):
        w = self._weights(design, mean.shape)
        wa = jnp.conj(a) * (w if a.ndim == 1 else w[:, None])
        return jnp.real(jnp.matmul(wa.T, b, precision=HIGHEST))

    def check_values(self, mean, params, design):
        if self.psd_fn is None:
            return {}
        psd = _broadcast_flat(self.psd_fn(design), mean.shape, "psd")
        return {"psd returned by the callable must be positive and finite": psd}

    def log_likelihood_terms(self, data, mean, params, design):
        r = (jnp.asarray(data) - mean).reshape(-1)
        w = self._weights(design, mean.shape)
        # Whittle likelihood -½(r|r) per bin, up to a parameter-independent constant.
        # |r|² written as re² + im²: jnp.abs has a zero second derivative at r = 0.
        return -0.5 * w * (r.real**2 + r.imag**2)

    def log_likelihood(self, data, mean, params, design):
        return jnp.sum(self.log_likelihood_terms(data, mean, params, design))

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``(μ − μ₀|μ − μ₀)`` up to a constant (the noise does not depend on θ)."""
        return -2.0 * self.log_likelihood(mean0, mean, params, design)

    def simulate(self, key, mean, params, design):
        w = self._weights(design, mean.shape)
        # Complex data: 2 real degrees of freedom per bin, each with variance 1/w.
        k1, k2 = jax.random.split(key)
        sd = 1.0 / jnp.sqrt(w)
        noise = sd * jax.random.normal(k1, sd.shape)
        if jnp.iscomplexobj(mean):
            noise = noise + 1j * sd * jax.random.normal(k2, sd.shape)
        return mean + noise.reshape(mean.shape).astype(mean.dtype)
