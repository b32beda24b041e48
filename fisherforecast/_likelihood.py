"""Any numpyro distribution as the noise model: :class:`Likelihood`.

``ff.Likelihood(dist_fn)`` wraps ``dist_fn(prediction, params)``, which returns a numpyro
distribution with one independent datum per model output (batch shape = output shape, no
event dimensions). The noise-model contract is filled from the distribution:

* the expected Fisher information per datum comes from the closed forms of
  :mod:`._information` where the distribution is registered there, pushed through the chain
  rule ``φ(μ, θ)`` from the distribution's own parameters ``φ`` to the prediction ``μ`` and
  to the forecast parameters that enter ``φ`` directly (a dispersion ``r``, a degree of
  freedom ``ν``, a noise scale). With ``u = (∂ ln p/∂μ, ∂ ln p/∂θ|_μ)`` the local score of
  one datum, the Fisher matrix is ``Jᵀ diag(w) J + Jᵀ C + Cᵀ J + Σ_k B_k`` with ``w = E[u_μ²]``
  (:meth:`inner`), ``C = E[u_μ u_θ]`` (:meth:`cross_information`) and ``B = E[u_θ u_θᵀ]``
  (:meth:`covariance_information`), which is ``E[score scoreᵀ]`` of the whole likelihood;
* continuous distributions without a closed form whose numpyro class defines the inverse
  cdf (Gumbel, Logistic, truncated and transformed distributions, ...; or
  ``information="quadrature"``) get the three expectations by a fixed-node rule in the
  probability variable ``u ∈ (0, 1)``: ``E[f(Y)] = ∫₀¹ f(F⁻¹(u)) du``, by double-exponential
  (tanh-sinh) quadrature on each half ``(0, ½)`` and ``(½, 1)`` (so that a kink of the score
  at the median, as for the Laplace, falls on an end point). The rule is exact to ~1e-13
  for smooth densities; its error estimate, the change from the rule with half the nodes,
  goes to ``F.metadata["fisher_standard_error"]``;
* any other distribution (or ``information="monte-carlo"``) gets the same three
  expectations from ``n_samples`` draws per datum at a fixed ``seed`` (common random
  numbers: the estimate is a deterministic, smooth function of the parameters).
  ``ff.fisher`` reports its standard error in ``F.metadata["fisher_standard_error"]``;
* ``log_likelihood`` is the distribution's ``log_prob`` (``data_in_support`` checks user data),
  ``simulate`` its ``sample``, ``check_values`` the per-datum information ``w`` (positive
  and finite where the distribution is valid).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, quote
from ._information import log_prob, lookup
from ._noise import HIGHEST, NoiseModel

#: Spellings of the ``information`` argument.
INFORMATION = ("auto", "closed-form", "quadrature", "monte-carlo")


def _tanh_sinh_rule(step: float = 0.125, x_max: float = 4.0):
    """Nodes ``u`` in (0, 1) and weights (fine, and the coarse rule of twice the step on the
    even nodes) of double-exponential quadrature on ``(0, ½)`` and on ``(½, 1)``.

    On each half ``u = ½ t`` (``½ + ½ t``) with ``t = (1 + tanh(π/2 sinh x))/2``, trapezoid
    in ``x``; ``1 − t`` is computed as ``1/(1 + e^{π sinh x})``, so that no node rounds to an end
    point (nodes that would, within ~1e-16 of ``u = 1``, are dropped: their mass is below
    1e-16)."""
    k = np.arange(-round(x_max / step), round(x_max / step) + 1)
    x = k * step
    a = np.pi * np.sinh(x)
    t, s = 1.0 / (1.0 + np.exp(-a)), 1.0 / (1.0 + np.exp(a))  # t and 1 − t (|a| < 90)
    dt = step * 0.5 * np.pi * np.cosh(x) * t * s * 2.0
    u = np.concatenate([0.5 * t, 1.0 - 0.5 * s])
    w = np.concatenate([0.5 * dt, 0.5 * dt])
    even = np.concatenate([k % 2 == 0, k % 2 == 0])
    keep = (u > 0.0) & (u < 1.0)
    return u[keep], w[keep], np.where(even, 2.0 * w, 0.0)[keep]


#: The quadrature rule of ``information="quadrature"``: nodes in the probability variable,
#: weights, and the weights of the rule with half the nodes (for the error estimate).
QUADRATURE_U, QUADRATURE_W, QUADRATURE_W_COARSE = _tanh_sinh_rule()


def _defined_in(cls, name):
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def quadrature_obstacle(d) -> str | None:
    """Why the expected information of ``d`` cannot be integrated in the probability
    variable (``None`` where it can)."""
    support = getattr(d, "support", None)
    if getattr(support, "is_discrete", False):
        return (
            f"{type(d).__name__} is discrete (its expectations are sums over the values, "
            "not integrals over the quantile function)"
        )
    cls = type(d)
    icdf, logp = _defined_in(cls, "icdf"), _defined_in(cls, "log_prob")
    base = None
    try:
        import numpyro.distributions as dist

        base = dist.Distribution
    except ImportError:  # pragma: no cover - numpyro is needed to build d at all
        pass
    if icdf is None or icdf is base:
        return f"numpyro defines no inverse cdf (icdf) for {cls.__name__}"
    if logp is not None and not issubclass(icdf, logp):
        return (
            f"{cls.__name__} overrides log_prob (in {logp.__name__}) but inherits the icdf of "
            f"{icdf.__name__}, which need not be its quantile function"
        )
    try:
        d.icdf(jnp.full(tuple(d.batch_shape), 0.5))
    except (NotImplementedError, ImportError, AttributeError, TypeError) as exc:
        # e.g. a TransformedDistribution over a broadcast (Expanded) base, which has no icdf
        return f"the icdf of {cls.__name__} is not available here ({type(exc).__name__}: {exc})"
    return None


def dist_arity(fn, what: str = "dist_fn") -> int:
    """1 for ``fn(prediction)``, 2 for ``fn(prediction, params)``."""
    if not callable(fn):
        raise InputError(
            f"{what} must be a callable (prediction, params) -> numpyro distribution; "
            f"received {quote(fn)}."
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in sig.parameters.values() if p.kind in kinds and p.default is p.empty]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2
    if len(required) not in (1, 2):
        raise InputError(
            f"{what} must take (prediction) or (prediction, params); received a callable "
            f"with signature {sig}."
        )
    return len(required)


def _flat(x, shape):
    return jnp.broadcast_to(jnp.asarray(x, dtype=jnp.float64), shape).reshape(-1)


class Likelihood(NoiseModel):
    """Any numpyro distribution as the noise model.

    **Arguments:**

    - `dist_fn`: ``dist_fn(prediction, params)`` (or ``dist_fn(prediction)``) returning a
      numpyro distribution whose batch shape is the model output's shape, one independent
      datum per output, e.g. ``lambda mu, p: dist.NegativeBinomial2(mu, p["r"])``.
      Parameters it reads from ``params`` (``r`` here) can be forecast parameters.
    - `information`: ``"auto"`` (closed form where the :mod:`numpyro` class is known —
      Normal, LogNormal, Poisson, NegativeBinomial2/GammaPoisson, Binomial, Bernoulli,
      StudentT, Laplace, Cauchy, Gamma, Exponential —, else quadrature for a continuous
      distribution with an inverse cdf, else Monte Carlo), ``"closed-form"`` (refuse other
      distributions), ``"quadrature"`` (double-exponential quadrature in the probability
      variable through the distribution's ``icdf``, with an error estimate; refuses
      discrete distributions and those without an icdf) or ``"monte-carlo"``.
    - `n_samples`, `seed`: draws per datum and the random seed of the Monte-Carlo estimate.

    **Raises:** `InputError` for a `dist_fn` that is not a callable of one or two
    arguments, returns no distribution, or one of the wrong batch or event shape.

    ```python
    >>> import jax.numpy as jnp, numpyro.distributions as dist, fisherforecast as ff
    >>> nb = ff.Likelihood(lambda mu, p: dist.NegativeBinomial2(mu, p["r"]))
    >>> exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(10), nb)
    >>> F = ff.fisher(exp, {"mu": 4.0, "r": 2.0}, params=["mu"])
    >>> round(float(F.matrix[0, 0]), 10)     # 10 r / (μ(μ + r)) = 20 / 24
    0.8333333333
    >>> gumbel = ff.Likelihood(lambda mu: dist.Gumbel(mu, 2.0))   # no closed form:
    >>> G = ff.fisher(ff.Experiment(lambda p: p["mu"] * jnp.ones(10), gumbel), {"mu": 1.0})
    >>> round(float(G.matrix[0, 0]), 10)     # quadrature; exact 10 / scale² = 2.5
    2.5
    >>> G.metadata["information"]
    'quadrature, 123 nodes per datum'
    ```
    """

    def __init__(self, dist_fn, *, information="auto", n_samples=4000, seed=0):
        self.arity = dist_arity(dist_fn)
        self.dist_fn = dist_fn
        if information not in INFORMATION:
            raise InputError(
                f"`information` must be one of {INFORMATION}; received {quote(information)}."
            )
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise InputError(f"`n_samples` must be an integer ≥ 2; received {quote(n_samples)}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"`seed` must be an integer; received {quote(seed)}.")
        # a float64 leaf, like every other array the engine hands to a compiled kernel
        self.information, self.n_samples, self.seed = information, n_samples, np.float64(seed)

    # --- pytree ----------------------------------------------------------------------
    def tree_flatten(self):
        # The seed is a leaf: estimates at several seeds share one compiled kernel.
        return (self.seed,), (self.dist_fn, self.arity, self.information, self.n_samples)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.dist_fn, obj.arity, obj.information, obj.n_samples = aux
        (obj.seed,) = children
        return obj

    def __repr__(self):
        name = getattr(self.dist_fn, "__name__", type(self.dist_fn).__name__)
        return f"Likelihood({name}, information={self.information!r})"

    @property
    def parameter_dependent(self) -> bool | None:
        """``False`` for ``dist_fn(prediction)``; else not declared (``None``): analyses
        that need to know test it, and the Fisher matrix includes the information on any
        parameter the distribution reads."""
        return False if self.arity == 1 else None

    # --- the distribution ------------------------------------------------------------
    def build(self, mean, params):
        """The distribution as ``dist_fn`` returns it (unchecked)."""
        return self.dist_fn(mean) if self.arity == 1 else self.dist_fn(mean, params)

    def distribution(self, mean, params):
        """The numpyro distribution at prediction ``mean`` (model shape), checked.

        Built with numpyro's validation off: its ``log_prob`` is then the density's own
        continuation (e.g. counts at the non-integer Asimov data of a profile) instead of
        ``-inf`` with a warning; arguments are checked by :meth:`check_values` and user data
        by :meth:`data_in_support`."""
        from numpyro import validation_enabled

        try:
            with validation_enabled(False):
                d = self.build(mean, params)
        except ValueError as exc:  # numpyro's own argument validation (concrete values)
            raise InputError(
                f"The dist_fn of {self!r} failed at the fiducial: {exc} The parameters of the "
                "distribution must satisfy numpyro's arg_constraints (positive scales and "
                "rates, probabilities in [0, 1], ...)."
            ) from None
        return check_distribution(d, mean.shape, self)

    def fixed_arguments(self) -> frozenset[int]:
        """Indices of the distribution parameters ``φ`` (in :mod:`._information` order)
        known to be constants; none for a general ``dist_fn``."""
        return frozenset()

    def method(self, d) -> str:
        """How the expected information of ``d`` is computed: ``"closed-form"``,
        ``"quadrature"`` or ``"monte-carlo"`` (decided at trace time)."""
        if self.information == "monte-carlo":
            return "monte-carlo"
        if self.information == "quadrature":
            why = quadrature_obstacle(d)
            if why is not None:
                raise InputError(
                    f"{self!r}: information='quadrature' does not apply: {why}. Use "
                    "information='auto' (closed form, quadrature or Monte Carlo, whichever "
                    "applies) or 'monte-carlo'."
                )
            return "quadrature"
        if lookup(d) is not None:
            return "closed-form"
        if self.information == "closed-form":
            raise InputError(
                f"{self!r}: no closed-form Fisher information is known for "
                f"{type(d).__name__}. Use information='auto', 'quadrature' (continuous "
                "distributions with an icdf) or 'monte-carlo' (an estimate with a reported "
                "standard error)."
            )
        return "quadrature" if quadrature_obstacle(d) is None else "monte-carlo"

    def uses_closed_form(self, d) -> bool:
        """Whether the expected information of ``d`` comes from a closed form."""
        return self.method(d) == "closed-form"

    # --- expected information: the three blocks --------------------------------------
    def local_information(self, mean, theta=None, to_params=None, params=None, mode="forward"):
        """``(w, C, B)``: per-datum ``E[u_μ²]`` ``(N,)``, ``E[u_μ u_θ]`` ``(N, P)`` and
        ``Σ_k E[u_θ u_θᵀ]`` ``(P, P)`` (the latter two ``None`` when ``theta`` is not given).
        """
        if params is None and to_params is not None:
            params = to_params(theta)
        d0 = self.distribution(mean, params)
        if self.uses_closed_form(d0):
            return self._closed_form(mean, params, theta, to_params, mode)
        return self._averaged(mean, params, theta, to_params, mode)

    def _phis(self, mu_flat, shape, params, entry):
        d = self.distribution(mu_flat.reshape(shape), params)
        return tuple(_flat(p, shape) for p in entry.extract(d))

    def _closed_form(self, mean, params, theta, to_params, mode):
        shape = mean.shape
        mu = mean.reshape(-1)
        entry = lookup(self.distribution(mean, params))
        assert entry is not None
        phi, g_mu = jax.jvp(
            lambda m: self._phis(m, shape, params, entry), (mu,), (jnp.ones_like(mu),)
        )
        info = entry.matrix(phi)
        m = len(phi)
        for a in self.fixed_arguments():  # constant: its (possibly costly) entries go unused
            for b in range(m):
                info[a][b] = info[b][a] = 0.0
        w = sum(g_mu[a] * info[a][b] * g_mu[b] for a in range(m) for b in range(m))
        if theta is None or to_params is None:
            return _flat(w, mu.shape), None, None
        jac = jax.jacfwd if mode == "forward" else jax.jacrev
        g_th = jac(lambda th: self._phis(mu, shape, to_params(th), entry))(theta)
        C = sum((g_mu[a] * info[a][b])[:, None] * g_th[b] for a in range(m) for b in range(m))
        B = sum(
            jnp.matmul(g_th[a].T, _flat(info[a][b], mu.shape)[:, None] * g_th[b], precision=HIGHEST)
            for a in range(m)
            for b in range(m)
        )
        return _flat(w, mu.shape), C, B

    def points(self, mean, params):
        """``(y, q, q_coarse)``: the points ``(S, *shape)`` at which the local scores are
        averaged, their weights ``(S, N)`` and (quadrature only, else ``None``) the weights
        of the rule with half the nodes.

        Monte Carlo: ``n_samples`` draws at the fixed seed, weights ``1/S``; reparameterised
        draws (``has_rsample``) move with the parameters, so that derivatives of the
        estimate are its own (pathwise), others are held fixed under differentiation (their
        derivatives then miss the change of the sampling distribution). Quadrature:
        ``y = F⁻¹(u)`` at the nodes of :data:`QUADRATURE_U`, differentiable in the parameters
        (so that derivatives of the Fisher matrix, e.g. in optimal design, are those of the
        rule); a node where the icdf is not finite (tails beyond its precision) gets
        weight 0."""
        d = self.distribution(mean, params)
        if self.method(d) == "quadrature":
            u = jnp.asarray(QUADRATURE_U).reshape((-1,) + (1,) * mean.ndim)
            u = jnp.broadcast_to(u, (u.shape[0], *mean.shape))
            y = d.icdf(u)
            finite = jnp.isfinite(y)
            y = jnp.where(finite, y, d.icdf(jnp.full(mean.shape, 0.5)))
            ok = finite.reshape(u.shape[0], -1)
            q = jnp.where(ok, jnp.asarray(QUADRATURE_W)[:, None], 0.0)
            qc = jnp.where(ok, jnp.asarray(QUADRATURE_W_COARSE)[:, None], 0.0)
            return y, q, qc
        key = jax.random.PRNGKey(jnp.asarray(self.seed).astype(jnp.int32))
        y = d.sample(key, (self.n_samples,))
        if not getattr(d, "has_rsample", False):  # discrete draws: no pathwise derivative
            y = jax.lax.stop_gradient(y)
        q = jnp.full((self.n_samples, mean.size), 1.0 / self.n_samples)
        return y, q, None

    def local_scores(self, mean, params, theta=None, to_params=None, mode="forward"):
        """Local scores at the points of :meth:`points`: ``u_μ`` ``(S, N)`` and, with
        ``theta``, ``u_θ`` ``(S, N, P)`` (else ``None``), their weights ``q`` ``(S, N)`` and
        the coarse-rule weights (quadrature) or ``None``."""
        shape = mean.shape
        mu = mean.reshape(-1)
        y, q, qc = self.points(mean, params)
        n_points = y.shape[0]

        def logp(m, p):
            lp = log_prob(self.distribution(m.reshape(shape), p), y)
            return lp.reshape(n_points, -1)

        _, u_mu = jax.jvp(lambda m: logp(m, params), (mu,), (jnp.ones_like(mu),))
        if theta is None or to_params is None:
            return u_mu, None, q, qc
        jac = jax.jacfwd if mode == "forward" else jax.jacrev
        u_th = jac(lambda th: logp(mu, to_params(th)))(theta)
        return u_mu, u_th, q, qc

    def _averaged(self, mean, params, theta, to_params, mode):
        u_mu, u_th, q, _ = self.local_scores(mean, params, theta, to_params, mode)
        w = jnp.sum(q * u_mu**2, axis=0)
        if u_th is None:
            return w, None, None
        C = jnp.sum((q * u_mu)[:, :, None] * u_th, axis=0)
        B = jnp.einsum("sn,snp,snq->pq", q, u_th, u_th, precision=HIGHEST)
        return w, C, B

    def monte_carlo_error(self, jacobian, mean, theta, to_params, mode="forward"):
        """Error ``(P, P)`` of a Fisher matrix that is not exact, or ``None`` when it is.

        Monte Carlo (independent draws): ``F = mean_s F_s`` with ``F_s = Σ_k t_k t_kᵀ``,
        ``t = u_μ J + u_θ``, so the standard error is ``std_s(F_s)/√S``. Quadrature: the
        change ``|F − F_coarse|`` from the rule with half the nodes (a generous bound: the
        double-exponential error roughly squares when the nodes double)."""
        params = to_params(theta)
        method = self.method(self.distribution(mean, params))
        if method == "closed-form":
            return None
        u_mu, u_th, q, qc = self.local_scores(mean, params, theta, to_params, mode)
        J = jnp.real(jacobian).reshape(u_mu.shape[1], -1)
        t = u_mu[:, :, None] * J[None] + u_th
        if qc is not None:
            return jnp.abs(jnp.einsum("sn,snp,snq->pq", q - qc, t, t, precision=HIGHEST))
        F_s = jnp.einsum("snp,snq->spq", t, t, precision=HIGHEST)
        return jnp.std(F_s, axis=0, ddof=1) / jnp.sqrt(self.n_samples)

    # --- the contract ----------------------------------------------------------------
    def inner(self, a, b, mean, params, design):
        w = self.local_information(mean, params=params)[0]
        wa = a * (w if a.ndim == 1 else w[:, None])
        return jnp.matmul(wa.T, b, precision=HIGHEST)

    def whiten(self, x, mean, params, design):
        s = jnp.sqrt(self.local_information(mean, params=params)[0])
        return x * (s if x.ndim == 1 else s[:, None])

    def covariance_information(self, mean, theta, to_params, design, mode):
        if self.parameter_dependent is False:
            return None
        return self.local_information(mean, theta, to_params, mode=mode)[2]

    def cross_information(self, jacobian, mean, theta, to_params, design, mode):
        if self.parameter_dependent is False:
            return None
        C = self.local_information(mean, theta, to_params, mode=mode)[1]
        assert C is not None
        J = jacobian.reshape(mean.size, -1)
        JC = jnp.matmul(J.T, C, precision=HIGHEST)
        return JC + JC.T

    def check_values(self, mean, params, design):
        w = self.local_information(mean, params=params)[0]
        return {
            f"the parameters of the distribution of {self!r} must satisfy numpyro's "
            "arg_constraints (value 0 marks a datum where one does not: a negative scale or "
            "rate, a probability outside [0, 1], ...)": self.valid_arguments(mean, params),
            f"the per-datum Fisher information of {self!r} in the prediction must be "
            "positive and finite (is the model output inside the distribution's domain?)": w,
        }

    def valid_arguments(self, mean, params):
        """``(N,)`` 1.0 where every constructor argument of the distribution satisfies its
        numpyro constraint, 0.0 where one does not."""
        d = self.distribution(mean, params)
        ok = jnp.ones(mean.shape, dtype=bool)
        for name, constraint in getattr(d, "arg_constraints", {}).items():
            value = d.__dict__.get(name)
            if value is None or getattr(value, "dtype", None) is None:
                continue
            flag = jnp.asarray(constraint(value))
            if flag.dtype == bool and jnp.broadcast_shapes(flag.shape, mean.shape) == mean.shape:
                ok = ok & flag
        return jnp.where(ok, 1.0, 0.0).reshape(-1)

    def data_in_support(self, data, mean, params, design):
        """Boolean ``(N,)``: whether each datum lies in the distribution's support."""
        d = self.distribution(mean, params)
        return jnp.asarray(d.support(jnp.asarray(data))).reshape(-1)

    def log_likelihood_terms(self, data, mean, params, design):
        # The distribution's own log_prob, continued where it is defined (e.g. counts at
        # the non-integer Asimov data of a profile); data from users are checked against
        # the support (`data_in_support`) where they enter.
        data = jnp.asarray(data).reshape(mean.shape)
        return log_prob(self.distribution(mean, params), data).reshape(-1)

    def log_likelihood(self, data, mean, params, design):
        return jnp.sum(self.log_likelihood_terms(data, mean, params, design))

    def simulate(self, key, mean, params, design):
        y = self.distribution(mean, params).sample(key)
        return jnp.asarray(y, dtype=mean.dtype).reshape(mean.shape)


def check_distribution(d, shape, owner):
    """``d`` is a numpyro distribution with one scalar datum per model output."""
    batch = getattr(d, "batch_shape", None)
    if batch is None or not hasattr(d, "log_prob") or not hasattr(d, "support"):
        raise InputError(
            f"The dist_fn of {owner!r} returned {quote(d)}, not a numpyro distribution. "
            "Return e.g. numpyro.distributions.Normal(prediction, sigma)."
        )
    if tuple(d.event_shape) != ():
        raise InputError(
            f"The dist_fn of {owner!r} returned a distribution with event shape "
            f"{tuple(d.event_shape)}; it must describe one independent datum per model "
            "output (event shape ()). Drop .to_event() / Independent, or use a correlated "
            "noise model such as ff.Gaussian(cov=...)."
        )
    if tuple(batch) != tuple(shape):
        raise InputError(
            f"The dist_fn of {owner!r} returned a distribution with batch shape "
            f"{tuple(batch)}, but the model output has shape {tuple(shape)}: it must give "
            "one distribution per datum. Build it from the prediction array (e.g. "
            "dist.Poisson(prediction)), broadcasting any parameters to its shape."
        )
    return d
