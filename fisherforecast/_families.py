"""Ready-made likelihoods for the common non-Gaussian cases.

Each is an :class:`ff.Likelihood` with a fixed numpyro distribution and a closed-form
Fisher information; its parameter (a noise scale, a dispersion, a number of trials) is a
value — a scalar or an array that broadcasts to the model output — or a callable
``f(params)`` that makes it a forecast parameter. The model output is

* ``LogNormal`` / ``Log10Normal``: the median ``μ > 0``; ``ln y`` (``log10 y``) is Gaussian
  with mean ``ln μ`` (``log10 μ``) and standard deviation ``sigma``; the log-likelihood
  includes the Jacobian ``−ln y`` (``−ln(y ln 10)``);
* ``Laplace``: the location; ``scale`` is ``b`` (standard deviation ``b√2``);
* ``NegativeBinomial``: the expected count ``μ``; ``concentration`` is ``r``
  (``Var = μ + μ²/r``; Poisson as ``r → ∞``);
* ``Binomial``: the success probability ``p``; the data are the observed *fractions*
  ``k/n`` (so that, as for every noise model, the expected data equal the model output);
* ``StudentT``: the location; ``scale`` ``s`` and degrees of freedom ``df`` ``ν``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaln, xlog1py, xlogy

from ._errors import InputError, quote
from ._likelihood import Likelihood, dist_arity
from ._values import check_positive, warn_if_float32

LN10 = 2.302585092994046


def _setting(value, what):
    """A positive value (float64 array) or a callable ``f(params)``."""
    if callable(value):
        if dist_arity(value, what) != 1:
            raise InputError(f"{what} as a callable must take (params) only.")
        return value
    warn_if_float32(value, "A noise model")
    return check_positive(value, what)


class Family(Likelihood):
    """Base of the ready-made likelihoods: named settings, each a value or a callable."""

    #: Names of the settings, in constructor order.
    settings: tuple[str, ...] = ()

    def __init__(self, *values):
        for name, value in zip(self.settings, values, strict=True):
            setattr(self, name, _setting(value, name))
        self.dist_fn, self.arity = None, 2
        self.information, self.n_samples, self.seed = "closed-form", 4000, 0

    def tree_flatten(self):
        values = tuple(getattr(self, n) for n in self.settings)
        children = tuple(None if callable(v) else v for v in values)
        fns = tuple(v if callable(v) else None for v in values)
        return children, fns

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, child, fn in zip(cls.settings, children, aux, strict=True):
            setattr(obj, name, fn if fn is not None else child)
        obj.dist_fn, obj.arity = None, 2
        obj.information, obj.n_samples, obj.seed = "closed-form", 4000, 0
        return obj

    def __repr__(self):
        parts = []
        for n in self.settings:
            v = getattr(self, n)
            parts.append(
                f"{n}={getattr(v, '__name__', 'callable') if callable(v) else quote(v, 40)}"
            )
        return f"{type(self).__name__}({', '.join(parts)})"

    #: setting name -> index of the distribution parameter it sets (``_information`` order)
    argument_of: tuple[tuple[str, int], ...] = ()

    @property
    def parameter_dependent(self) -> bool:
        return any(callable(getattr(self, n)) for n in self.settings)

    def fixed_arguments(self) -> frozenset[int]:
        return frozenset(i for n, i in self.argument_of if not callable(getattr(self, n)))

    def value(self, name, params):
        v = getattr(self, name)
        return jnp.asarray(v(params) if callable(v) else v, dtype=jnp.float64)

    def build(self, mean, params):
        raise NotImplementedError


class LogNormal(Family):
    """Log-normal measurement errors: ``ln y ~ N(ln μ, sigma²)`` around the model output
    ``μ > 0`` (its median). The Fisher matrix is the Gaussian one of the log-model.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-t), ff.LogNormal(0.1),
    ...                     design=jnp.arange(4.0))
    >>> round(float(ff.fisher(exp, {"A": 2.0}).matrix[0, 0]), 8)   # 4 / (A σ)²
    100.0
    ```
    """

    settings = ("sigma",)
    argument_of = (("sigma", 1),)

    def __init__(self, sigma):
        super().__init__(sigma)

    log_scale = 1.0

    def build(self, mean, params):
        import numpyro.distributions as dist

        s = self.value("sigma", params) * self.log_scale
        return dist.LogNormal(jnp.log(mean), jnp.broadcast_to(s, mean.shape))

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``Σ [(ln μ₀ − ln μ)² + s₀²]/s² + 2 ln s + 2 ln μ₀`` (``s`` on the ln scale)."""
        s = jnp.broadcast_to(self.value("sigma", params) * self.log_scale, mean.shape)
        s0 = jnp.broadcast_to(self.value("sigma", params0) * self.log_scale, mean.shape)
        dl = jnp.log(mean) - jnp.log(mean0)
        return jnp.sum((dl**2 + s0**2) / s**2 + 2.0 * jnp.log(s) + 2.0 * jnp.log(mean0))


class Log10Normal(LogNormal):
    """Log10-normal measurement errors: ``log10 y ~ N(log10 μ, sigma²)`` (PEtab's
    ``log10-normal``), the same distribution as ``LogNormal(sigma · ln 10)``.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["A"] * jnp.ones(3), ff.Log10Normal(0.1))
    >>> F = ff.fisher(exp, {"A": 1.0})
    >>> round(float(F.matrix[0, 0]) * (0.1 * 2.302585092994046) ** 2, 10)   # 3 / A²
    3.0
    ```
    """

    log_scale = LN10


class Laplace(Family):
    """Laplace (double-exponential) residuals with scale ``b`` around the model output:
    ``ln p = −|y − μ|/b − ln 2b``; Fisher information ``1/b²`` per datum in ``μ`` (and in
    ``b``).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["m"] * jnp.ones(8), ff.Laplace(0.5))
    >>> float(ff.fisher(exp, {"m": 1.0}).matrix[0, 0])   # 8 / b²
    32.0
    ```
    """

    settings = ("scale",)
    argument_of = (("scale", 1),)

    def __init__(self, scale):
        super().__init__(scale)

    def build(self, mean, params):
        import numpyro.distributions as dist

        return dist.Laplace(mean, jnp.broadcast_to(self.value("scale", params), mean.shape))

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``Σ 2 ln 2b + 2 (|Δ| + b₀ e^{−|Δ|/b₀})/b`` for data ``~ Laplace(μ₀, b₀)``,
        ``Δ = μ − μ₀`` (smooth at ``Δ = 0``, where its curvature is ``2/(b b₀)``)."""
        b = jnp.broadcast_to(self.value("scale", params), mean.shape)
        b0 = jnp.broadcast_to(self.value("scale", params0), mean.shape)
        a = jnp.abs(mean - mean0) / b0
        # a + e^{−a}, written as its series near 0 so that its Hessian there is exact.
        h = jnp.where(a < 1e-3, 1.0 + a**2 / 2 - a**3 / 6 + a**4 / 24, a + jnp.exp(-a))
        return jnp.sum(2.0 * jnp.log(2.0 * b) + 2.0 * b0 * h / b)


class NegativeBinomial(Family):
    """Overdispersed counts: negative binomial with mean ``μ`` (the model output) and
    concentration ``r``, ``Var = μ + μ²/r``. Fisher information ``r/(μ(μ + r))`` per datum
    in ``μ``; a callable ``concentration`` makes ``r`` a forecast parameter (its
    information, orthogonal to ``μ``, is summed exactly by quadrature).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(10), ff.NegativeBinomial(2.0))
    >>> round(float(ff.fisher(exp, {"mu": 4.0}).matrix[0, 0]), 10)   # 10 r/(μ(μ + r))
    0.8333333333
    ```
    """

    settings = ("concentration",)
    argument_of = (("concentration", 1),)

    def __init__(self, concentration):
        super().__init__(concentration)

    def build(self, mean, params):
        import numpyro.distributions as dist

        r = jnp.broadcast_to(self.value("concentration", params), mean.shape)
        return dist.NegativeBinomial2(mean, r)

    @property
    def has_expected_deviance(self) -> bool:
        return not self.parameter_dependent

    def expected_deviance(self, mean, mean0, params, params0, design):
        """With a fixed ``r`` the log-likelihood is linear in the data up to a term free of
        ``μ``: ``−2 ln L`` at the data ``μ₀``."""
        if self.parameter_dependent:
            raise NotImplementedError(
                "NegativeBinomial with a concentration that is a forecast parameter has no "
                "closed-form expected deviance; profile with data= instead."
            )
        return -2.0 * self.log_likelihood(mean0, mean, params, design)


class Binomial(Family):
    """Binomial proportions: ``k ~ Binomial(n, p)`` with ``p`` the model output; the data
    are the fractions ``k/n``. Fisher information ``n/(p(1 − p))`` per datum in ``p``.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["p"] * jnp.ones(5), ff.Binomial(20))
    >>> round(float(ff.fisher(exp, {"p": 0.2}).matrix[0, 0]), 8)   # 5 n/(p(1 − p))
    625.0
    ```
    """

    settings = ("total_count",)

    def __init__(self, total_count):
        if callable(total_count):
            raise InputError("Binomial: `total_count` must be a number, not a callable.")
        n = check_positive(total_count, "total_count")
        if not (n == jnp.round(n)).all():
            raise InputError(
                f"Binomial: `total_count` must be whole numbers of trials; received "
                f"{quote(total_count)}."
            )
        super().__init__(n)

    def build(self, mean, params):
        import numpyro.distributions as dist

        n = jnp.broadcast_to(self.value("total_count", params), mean.shape)
        return dist.BinomialProbs(mean, n)

    def counts(self, data, mean):
        n = jnp.broadcast_to(self.value("total_count", {}), mean.shape)
        return jnp.asarray(data).reshape(mean.shape) * n, n

    def log_likelihood_terms(self, data, mean, params, design):
        k, n = self.counts(data, mean)
        p = mean.reshape(k.shape)
        log_choose = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
        return (log_choose + xlogy(k, p) + xlog1py(n - k, -p)).reshape(-1)

    def data_in_support(self, data, mean, params, design):
        k, n = self.counts(data, mean)
        ok = (jnp.abs(k - jnp.round(k)) < 1e-9 * jnp.maximum(n, 1.0)) & (k >= 0) & (k <= n)
        return ok.reshape(-1)

    def expected_deviance(self, mean, mean0, params, params0, design):
        """Linear in the data: ``−2 ln L`` at the data ``p₀``."""
        return -2.0 * self.log_likelihood(mean0, mean, params, design)

    def simulate(self, key, mean, params, design):
        import numpyro.distributions as dist

        n = jnp.broadcast_to(self.value("total_count", {}), mean.shape)
        k = dist.BinomialProbs(mean, n.astype(jnp.int64)).sample(key)
        return (jnp.asarray(k, dtype=mean.dtype) / n).reshape(mean.shape)


class StudentT(Family):
    """Heavy-tailed residuals: Student-t with location the model output, scale ``s`` and
    ``df`` degrees of freedom ``ν``. Fisher information ``(ν + 1)/((ν + 3)s²)`` per datum in
    the location; ``scale`` and ``df`` may be callables (forecast parameters, closed form
    of Lange, Little & Taylor 1989).

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p: p["m"] * jnp.ones(4), ff.StudentT(scale=0.5, df=5.0))
    >>> round(float(ff.fisher(exp, {"m": 1.0}).matrix[0, 0]), 10)   # 4 · 6/(8 · 0.25)
    12.0
    ```
    """

    settings = ("scale", "df")
    argument_of = (("df", 0), ("scale", 2))

    def __init__(self, scale, df):
        super().__init__(scale, df)

    def build(self, mean, params):
        import numpyro.distributions as dist

        s = jnp.broadcast_to(self.value("scale", params), mean.shape)
        nu = jnp.broadcast_to(self.value("df", params), mean.shape)
        return dist.StudentT(nu, mean, s)
