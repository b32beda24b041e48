"""Noise models: how a model's output is compared with data.

Each noise model owns three things, so that every analysis (Fisher, bias, HMC,
profiles, coverage, DALI) uses one definition:

* ``inner(a, b, params, design, mean)``: the data-space metric ``aᵀ W b`` for the model's
  flattened outputs (``W = C⁻¹`` for Gaussian noise, ``1/λ`` for Poisson counts, the
  noise-weighted inner product for a PSD). The Fisher matrix is ``inner(J, J)``.
* ``covariance_information(...)``: the extra information carried by a parameter-dependent
  covariance, ``½ tr(C⁻¹ ∂ᵢC C⁻¹ ∂ⱼC)``; zero for fixed noise.
* ``log_likelihood(data, mean, params, design)`` and ``simulate(key, mean, params, design)``.

All arrays reaching these methods are flattened to 1-D (``N`` outputs); the Jacobian is
``(N, P)``. A new noise model is a subclass that implements these methods.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import quote
from ._linalg import check_matrix
from ._x64 import as_float64_tree

HIGHEST = jax.lax.Precision.HIGHEST


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _call_arity(fn, what):
    """How many positional arguments a user callable takes: 1 ``(params)`` or 2."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2
    if len(params) not in (1, 2):
        raise TypeError(
            f"{what} must be a callable taking (params) or (params, design); received a "
            f"callable with signature {sig}."
        )
    return len(params)


def _evaluate(fn, arity, params, design):
    return fn(params) if arity == 1 else fn(params, design)


def _broadcast_flat(values, shape, what):
    """Broadcast a noise array to the model-output ``shape`` and flatten it."""
    values = jnp.asarray(values)
    try:
        out = jnp.broadcast_to(values, shape)
    except ValueError:
        raise ValueError(
            f"{what} has shape {tuple(values.shape)}, which does not match (or broadcast to) "
            f"the model output shape {tuple(shape)}. Give one value per datum, a scalar, or "
            "an array that broadcasts to the output."
        ) from None
    return out.reshape(-1)


class NoiseModel:
    """Base class. Subclasses implement the methods below; see the module docstring."""

    #: Whether complex-valued model output is allowed.
    accepts_complex = False

    def __init_subclass__(cls, **kwargs):
        # Every noise model is a pytree (arrays = leaves, callables = static), subclasses
        # of concrete noise models included, so that jit caches on them correctly.
        super().__init_subclass__(**kwargs)
        if "_flatten" in vars(cls) or any("_flatten" in vars(b) for b in cls.__mro__[1:-2]):
            _register(cls)

    def check_output(self, shape, dtype, design) -> None:
        """Static check of the model output against the noise model (at trace time)."""
        if jnp.issubdtype(dtype, jnp.complexfloating) and not self.accepts_complex:
            raise ValueError(
                f"The model returns complex output (dtype {dtype}) but {type(self).__name__} "
                "noise is real. Use ff.PSD(...) for complex frequency-domain data, or return "
                "jnp.concatenate([h.real, h.imag]) with a real noise model."
            )

    def inner(self, a, b, params, design, mean):
        raise NotImplementedError

    def whiten(self, x, params, design, mean):
        """A real array ``W x`` with ``(Wa)ᵀ(Wb) = inner(a, b)``, or ``None`` if unavailable.

        ``x`` is ``(N,)`` or ``(N, P)``; complex inputs may come back with their real and
        imaginary parts stacked along the first axis.
        """
        return None

    def covariance_information(self, theta, to_params, design, shape, mode):
        """Extra information from parameter-dependent noise; ``None`` when there is none."""
        return None

    def checks(self, params, design, mean):
        """Traced validity flags, dict message -> bool scalar (True is good)."""
        return {
            message: jnp.all(jnp.isfinite(v) & (v > 0))
            for message, v in self.check_values(params, design, mean).items()
        }

    def check_values(self, params, design, mean):
        """Values that must be positive and finite, dict message -> flat array.

        Used by :meth:`checks` and, on failure, to quote the offending values.
        """
        return {}

    def log_likelihood(self, data, mean, params, design):
        raise NotImplementedError

    def simulate(self, key, mean, params, design):
        raise NotImplementedError


def _register(cls):
    jax.tree_util.register_pytree_node(
        cls,
        lambda obj: obj._flatten(),
        lambda aux, children: cls._unflatten(aux, children),
    )
    return cls


class Gaussian(NoiseModel):
    """Gaussian noise with a fixed or parameter-dependent covariance.

    Give exactly one of `sigma` (standard deviations: a scalar, an array per datum, or an
    array that broadcasts to the model output) or `cov` (a full ``N × N`` covariance over
    the flattened model output). Either may instead be a callable ``f(params)`` or
    ``f(params, design)``; the covariance then depends on the parameters and the Fisher
    matrix includes ``½ tr(C⁻¹ ∂ᵢC C⁻¹ ∂ⱼC)``.

    **Arguments:**

    - `sigma`: standard deviation(s) or a callable returning them.
    - `cov`: covariance matrix or a callable returning it.

    **Raises:** `ValueError` for non-positive or non-finite sigma, a non-symmetric or
    non-positive-definite covariance, or when both/neither of `sigma` and `cov` are given.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.5),
    ...                     design=jnp.arange(1.0, 4.0))
    >>> round(float(ff.fisher(exp, {"a": 1.0}).matrix[0, 0]), 6)   # Σ t² / σ² = 14 / 0.25
    56.0
    ```
    """

    def __init__(self, sigma=None, *, cov=None):
        if (sigma is None) == (cov is None):
            raise ValueError(
                "Gaussian needs exactly one of `sigma` or `cov`; received "
                f"sigma={quote(sigma)}, cov={quote(cov)}."
            )
        self.sigma_fn = self.cov_fn = None
        self.sigma = self.cov = self.cov_cholesky = None
        self.arity = 0
        if sigma is not None:
            if callable(sigma):
                self.sigma_fn, self.arity = sigma, _call_arity(sigma, "sigma")
            else:
                self.sigma = _check_sigma(sigma)
        else:
            if callable(cov):
                self.cov_fn, self.arity = cov, _call_arity(cov, "cov")
            else:
                self.cov, self.cov_cholesky = _check_cov(cov)

    def _flatten(self):
        children = (self.sigma, self.cov, self.cov_cholesky)
        return children, (self.sigma_fn, self.cov_fn, self.arity)

    @classmethod
    def _unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.sigma, obj.cov, obj.cov_cholesky = children
        obj.sigma_fn, obj.cov_fn, obj.arity = aux
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

    def check_output(self, shape, dtype, design):
        super().check_output(shape, dtype, design)
        n = int(np.prod(shape))
        if self.cov is not None and self.cov.shape != (n, n):
            raise ValueError(
                f"cov has shape {self.cov.shape}, but the model output has shape "
                f"{tuple(shape)} ({n} values), so cov must be ({n}, {n}) over the flattened "
                "output."
            )
        if self.sigma is not None:
            _broadcast_flat(self.sigma, shape, "sigma")

    # --- the covariance at given parameters, in the flattened output space ------------
    def _sigma_flat(self, params, design, shape):
        if self.sigma_fn is not None:
            s = _evaluate(self.sigma_fn, self.arity, params, design)
            return _broadcast_flat(s, shape, "sigma (returned by the callable)")
        return _broadcast_flat(self.sigma, shape, "sigma")

    def _raw_cov(self, params, design, n):
        """The callable's covariance as returned (checked for shape, not symmetrised)."""
        C = jnp.asarray(_evaluate(self.cov_fn, self.arity, params, design))
        if C.shape != (n, n):
            raise ValueError(
                f"cov (returned by the callable) has shape {tuple(C.shape)}; expected "
                f"({n}, {n}) for {n} model outputs."
            )
        return C

    def _cov_and_chol(self, params, design, n):
        if self.cov_fn is not None:
            C = self._raw_cov(params, design, n)
            C = 0.5 * (C + C.T)
            return C, jnp.linalg.cholesky(C)
        return jnp.asarray(self.cov), jnp.asarray(self.cov_cholesky)

    def _whiten(self, x, params, design, mean):
        """``L⁻¹ x`` for ``C = L Lᵀ`` (``x`` flat, (N,) or (N, P))."""
        if self.cov is None and self.cov_fn is None:
            s = self._sigma_flat(params, design, mean.shape)
            return x / (s if x.ndim == 1 else s[:, None])
        _, L = self._cov_and_chol(params, design, mean.size)
        return jax.scipy.linalg.solve_triangular(L, x, lower=True)

    def inner(self, a, b, params, design, mean):
        wa = self._whiten(a, params, design, mean)
        wb = self._whiten(b, params, design, mean)
        return jnp.matmul(wa.T, wb, precision=HIGHEST)

    def whiten(self, x, params, design, mean):
        return self._whiten(x, params, design, mean)

    def covariance_information(self, theta, to_params, design, shape, mode):
        if not self.parameter_dependent:
            return None
        jac = jax.jacfwd if mode == "forward" else jax.jacrev
        if self.sigma_fn is not None:

            def sig(th):
                return self._sigma_flat(to_params(th), design, shape)

            s = sig(theta)
            ds = jac(sig)(theta)  # (N, P)
            # C = diag(σ²): ½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC) = 2 Σ_k ∂ᵢσ_k ∂ⱼσ_k / σ_k².
            w = ds / s[:, None]
            return 2.0 * jnp.matmul(w.T, w, precision=HIGHEST)
        n = int(np.prod(shape))

        def cov(th):
            return self._cov_and_chol(to_params(th), design, n)[0]

        C = cov(theta)
        dC = jac(cov)(theta)  # (N, N, P)
        L = jnp.linalg.cholesky(C)
        A = jax.vmap(lambda D: jax.scipy.linalg.cho_solve((L, True), D), in_axes=2)(dC)
        return 0.5 * jnp.einsum("iab,jba->ij", A, A, precision=HIGHEST)

    def check_values(self, params, design, mean):
        if self.sigma_fn is not None:
            s = self._sigma_flat(params, design, mean.shape)
            return {"sigma returned by the callable must be positive and finite": s}
        if self.cov_fn is not None:
            raw = self._raw_cov(params, design, mean.size)
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

    def log_likelihood(self, data, mean, params, design):
        r = (jnp.asarray(data) - mean).reshape(-1)
        flat_mean = mean.reshape(-1)
        if self.cov is None and self.cov_fn is None:
            s = self._sigma_flat(params, design, mean.shape)
            return (
                -0.5 * jnp.sum((r / s) ** 2)
                - jnp.sum(jnp.log(s))
                - 0.5 * r.size * jnp.log(2 * jnp.pi)
            )
        _, L = self._cov_and_chol(params, design, flat_mean.size)
        z = jax.scipy.linalg.solve_triangular(L, r, lower=True)
        return (
            -0.5 * jnp.sum(z**2)
            - jnp.sum(jnp.log(jnp.diag(L)))
            - 0.5 * r.size * jnp.log(2 * jnp.pi)
        )

    def simulate(self, key, mean, params, design):
        z = jax.random.normal(key, (mean.size,), dtype=mean.dtype)
        if self.cov is None and self.cov_fn is None:
            noise = self._sigma_flat(params, design, mean.shape) * z
        else:
            _, L = self._cov_and_chol(params, design, mean.size)
            noise = L @ z
        return mean + noise.reshape(mean.shape)


def _check_sigma(sigma):
    if _is_traced(sigma):
        return sigma
    arr = as_float64_tree(sigma)
    arr = np.asarray(arr)
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"sigma must be real; received {quote(sigma)}.")
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        where = np.argwhere(bad)[:5].tolist() if arr.ndim else "scalar"
        raise ValueError(
            f"sigma must be positive and finite; received {quote(sigma)} "
            f"(bad entries at {where}). A zero sigma means infinitely precise data: drop "
            "those points or give them a small positive error."
        )
    return arr


def _check_cov(cov):
    arr = np.asarray(cov)
    if np.iscomplexobj(arr):
        raise ValueError(f"cov must be real; received dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"cov must be a square matrix; received shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"cov contains NaN or inf at {np.argwhere(~np.isfinite(arr))[:5]}.")
    # The foundation's check: asymmetry relative to sqrt(C_ii C_jj), so that small-variance
    # blocks count too; returns the symmetrised matrix.
    arr = check_matrix(arr, "cov")
    try:
        L = np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        w = np.linalg.eigvalsh(arr)
        raise ValueError(
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

    def _flatten(self):
        return (), None

    @classmethod
    def _unflatten(cls, aux, children):
        return object.__new__(cls)

    def __repr__(self):
        return "Poisson()"

    def whiten(self, x, params, design, mean):
        scale = jnp.sqrt(mean.reshape(-1))
        return x / (scale if x.ndim == 1 else scale[:, None])

    def inner(self, a, b, params, design, mean):
        lam = mean.reshape(-1)
        wa = a / (lam if a.ndim == 1 else lam[:, None])
        return jnp.matmul(wa.T, b, precision=HIGHEST)

    def check_values(self, params, design, mean):
        return {"expected counts must be positive and finite (Poisson noise)": mean.reshape(-1)}

    def log_likelihood(self, data, mean, params, design):
        d = jnp.asarray(data)
        return jnp.sum(jax.scipy.special.xlogy(d, mean) - mean - jax.scipy.special.gammaln(d + 1))

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

    def __init__(self, psd, df):
        self.psd_fn = None
        self.psd = None
        if callable(psd):
            self.psd_fn = psd
        else:
            self.psd = _check_positive(psd, "psd")
        self.df = _check_positive(df, "df")

    def _flatten(self):
        return (self.psd, self.df), self.psd_fn

    @classmethod
    def _unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.psd, obj.df = children
        obj.psd_fn = aux
        return obj

    def __repr__(self):
        psd = getattr(self.psd_fn, "__name__", None) or quote(self.psd, 40)
        return f"PSD(psd={psd}, df={quote(self.df, 40)})"

    def check_output(self, shape, dtype, design):
        if self.psd is not None:
            _broadcast_flat(self.psd, shape, "psd")
        _broadcast_flat(self.df, shape, "df")

    def _weights(self, design, shape):
        psd = self.psd_fn(design) if self.psd_fn is not None else self.psd
        return 4.0 * _broadcast_flat(self.df, shape, "df") / _broadcast_flat(psd, shape, "psd")

    def whiten(self, x, params, design, mean):
        w = jnp.sqrt(self._weights(design, mean.shape))
        wx = x * (w if x.ndim == 1 else w[:, None])
        return jnp.concatenate([wx.real, wx.imag]) if jnp.iscomplexobj(wx) else wx

    def inner(self, a, b, params, design, mean):
        w = self._weights(design, mean.shape)
        wa = jnp.conj(a) * (w if a.ndim == 1 else w[:, None])
        return jnp.real(jnp.matmul(wa.T, b, precision=HIGHEST))

    def check_values(self, params, design, mean):
        if self.psd_fn is None:
            return {}
        psd = _broadcast_flat(self.psd_fn(design), mean.shape, "psd")
        return {"psd returned by the callable must be positive and finite": psd}

    def log_likelihood(self, data, mean, params, design):
        r = (jnp.asarray(data) - mean).reshape(-1)
        w = self._weights(design, mean.shape)
        # Whittle likelihood -½(r|r), up to a parameter-independent constant.
        # |r|² written as re² + im²: jnp.abs has a zero second derivative at r = 0.
        return -0.5 * jnp.sum(w * (r.real**2 + r.imag**2))

    def simulate(self, key, mean, params, design):
        w = self._weights(design, mean.shape)
        # Complex data: 2 real degrees of freedom per bin, each with variance 1/w.
        k1, k2 = jax.random.split(key)
        sd = 1.0 / jnp.sqrt(w)
        noise = sd * jax.random.normal(k1, sd.shape)
        if jnp.iscomplexobj(mean):
            noise = noise + 1j * sd * jax.random.normal(k2, sd.shape)
        return mean + noise.reshape(mean.shape).astype(mean.dtype)


def _check_positive(value, what):
    if _is_traced(value):
        return value
    arr = np.asarray(value)
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{what} must be real and positive; received {quote(value)}.")
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        where = np.argwhere(bad)[:5].tolist() if arr.ndim else "scalar"
        raise ValueError(
            f"{what} must be positive and finite; received {quote(value)} (bad entries at {where})."
        )
    return arr
