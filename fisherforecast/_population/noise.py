"""The population covariance of one group, as a noise model.

Under the first-order (FO) approximation an individual's observations ``y`` are Gaussian
with mean ``f(β, η = 0)`` and covariance ``V = G Ω Gᵀ + Σ``, ``G = ∂f/∂η`` at ``η = 0``,
``Σ`` the residual covariance at ``f(β, 0)`` (Retout & Mentré 2003; Foracchia et al.
2004). The Monte-Carlo (``"mc"``) approximation keeps the Gaussian form but integrates
the moments over ``η`` instead of linearising: ``m = E_η[f(β, η)]``,
``V = Cov_η[f] + E_η[Σ(f)]``, by scrambled-Sobol quadrature with ``η = √ω² z`` (so the
moments are differentiable in ``ω²``).

:class:`PopulationNoise` holds the covariance and the group size ``N``: ``inner`` and
``covariance_information`` are ``N`` times an individual's Gaussian metric and
``½ tr(V⁻¹ ∂ᵢV V⁻¹ ∂ⱼV)``. With ``fim="reduced"`` the covariance term ignores the
dependence of ``V`` on the fixed effects (PopED's default block-diagonal FIM; Nyberg et
al. 2012).
"""

from __future__ import annotations

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, ParameterError
from .._noise import NoiseModel

HIGHEST = jax.lax.Precision.HIGHEST

#: How a random effect enters its parameter.
RANDOM_KINDS = ("exponential", "additive", "proportional")
#: Residual error model -> the fiducial names of its variances.
ERROR_VARIANCES = {
    "additive": ("sigma2_add",),
    "proportional": ("sigma2_prop",),
    "combined": ("sigma2_prop", "sigma2_add"),
}


def omega_name(name: str) -> str:
    """The fiducial name of the variance of ``name``'s random effect: ``omega2_<name>``."""
    return f"omega2_{name}"


def covariance_name(a: str, b: str) -> str:
    """The fiducial name of ``Cov(η_a, η_b)``: ``omega_<a>_<b>`` (in the order the pair
    was given to ``correlated=``)."""
    return f"omega_{a}_{b}"


def variance_names(random, error, correlated=()) -> tuple[str, ...]:
    """The variance parameters: ``omega2_*`` per random effect, ``omega_<a>_<b>`` per
    correlated pair, then the residual ones."""
    return (
        tuple(omega_name(n) for n, _ in random)
        + tuple(covariance_name(a, b) for a, b in correlated)
        + ERROR_VARIANCES[error]
    )


def omega_matrix(params, random, correlated=()):
    """Ω, ``(R, R)``: the variances ``omega2_*`` on the diagonal and the covariances
    ``omega_<a>_<b>`` of the correlated pairs (zero elsewhere)."""
    R = len(random)
    omega = jnp.diag(jnp.stack([jnp.asarray(params[omega_name(n)]) for n, _ in random]))
    index = {n: i for i, (n, _) in enumerate(random)}
    for a, b in correlated:
        i, j = index[a], index[b]
        c = jnp.asarray(params[covariance_name(a, b)])
        omega = omega.at[i, j].set(c).at[j, i].set(c)
    return omega.reshape(R, R)


def check_omega(params, random, correlated, where="the fiducial") -> None:
    """An :class:`InputError` when the concrete Ω is not positive definite, naming the
    variances and covariances and quoting their values (traced values pass)."""
    if not correlated:
        return
    names = [omega_name(n) for n, _ in random] + [covariance_name(a, b) for a, b in correlated]
    values = [params[n] for n in names]
    if any(isinstance(v, jax.core.Tracer) for v in values):
        return
    omega = np.asarray(omega_matrix(params, random, correlated), dtype=np.float64)
    eig = np.linalg.eigvalsh(omega) if np.all(np.isfinite(omega)) else np.array([np.nan])
    if not np.all(np.isfinite(eig)) or eig.min() <= 0:
        quoted = ", ".join(f"{n}={float(v)!r}" for n, v in zip(names, values, strict=True))
        raise InputError(
            f"The random-effect covariance Ω at {where} is not positive definite (smallest "
            f"eigenvalue {float(np.min(eig))!r}): received {quoted}. Each covariance "
            "omega_<a>_<b> must satisfy |omega_<a>_<b>| < sqrt(omega2_<a> * omega2_<b>) "
            "(a correlation strictly between -1 and 1), and Ω as a whole must be positive "
            "definite."
        )


def individual_params(params, random, eta):
    """The parameters of an individual with random effects ``eta`` (one per entry of
    ``random``, a tuple of ``(name, kind)``)."""
    p = dict(params)
    for i, (name, kind) in enumerate(random):
        if kind == "exponential":
            p[name] = params[name] * jnp.exp(eta[i])
        elif kind == "additive":
            p[name] = params[name] + eta[i]
        else:
            p[name] = params[name] * (1.0 + eta[i])
    return p


def individual_prediction(model, random, params, eta, design):
    """The flattened prediction ``f(β, η)`` of one individual."""
    return jnp.asarray(model(individual_params(params, random, eta), design)).reshape(-1)


def residual_variance(error, f, params):
    """Per-observation residual variance at prediction ``f``."""
    var = jnp.zeros_like(f)
    if error in ("proportional", "combined"):
        var = var + f**2 * params["sigma2_prop"]
    if error in ("additive", "combined"):
        var = var + params["sigma2_add"]
    return var


def eta_points(params, random, z, correlated=()):
    """``η_k = L z_k`` (``(K, R)``, ``L Lᵀ = Ω``; ``√ω² z_k`` for a diagonal Ω): the
    Monte-Carlo points, differentiable in Ω."""
    if correlated:
        L = jnp.linalg.cholesky(omega_matrix(params, random, correlated))
        return jnp.matmul(jnp.asarray(z), L.T, precision=HIGHEST)
    sd = jnp.stack([jnp.sqrt(params[omega_name(n)]) for n, _ in random])
    return jnp.asarray(z) * sd


def fo_terms(model, random, params, design):
    """``(f, G)`` at ``η = 0``: the typical prediction and ``G = ∂f/∂η``."""

    def fn(e):
        return individual_prediction(model, random, params, e, design)

    eta = jnp.zeros(len(random))
    return fn(eta), jax.jacfwd(fn)(eta)


def mc_moments(model, random, error, params, design, z, correlated=()):
    """Mean and covariance of an individual's data by quasi-Monte-Carlo over ``η``:
    ``m = E[f(β, η)]``, ``V = Cov[f(β, η)] + E[Σ(f(β, η))]``."""
    etas = eta_points(params, random, z, correlated)
    fs = jax.vmap(lambda e: individual_prediction(model, random, params, e, design))(etas)
    m = jnp.mean(fs, axis=0)
    r = fs - m
    V = jnp.matmul(r.T, r, precision=HIGHEST) / fs.shape[0]
    var = jnp.mean(jax.vmap(lambda f: residual_variance(error, f, params))(fs), axis=0)
    return m, V + jnp.diag(var)


def mc_mean(params, design, *, model, random, error, z, correlated=()):
    """``E[f(β, η)]`` by quasi-Monte-Carlo (the model of an ``approximation="mc"``
    population experiment), in the individual model's output shape."""
    m, _ = mc_moments(model, random, error, params, design, z, correlated)
    shape = jnp.shape(model(params, design))
    return m.reshape(shape)


def require_variances(params, random, error, correlated=()) -> None:
    """A :class:`ParameterError` naming the population variances the fiducial lacks."""
    missing = [n for n in variance_names(random, error, correlated) if n not in params]
    if missing:
        pairs = f", correlated pairs {[tuple(p) for p in correlated]}" if correlated else ""
        raise ParameterError(
            f"A PopulationExperiment with random effects on {[n for n, _ in random]}{pairs} "
            f"and {error!r} residual error needs {missing} in the fiducial (variances "
            "omega2_<name> of the random effects, covariances omega_<a>_<b> of the "
            "correlated pairs, sigma2_prop / sigma2_add of the residual error). Add them; "
            "fix any you do not estimate with params=."
        )


class PopulationNoise(NoiseModel):
    """The population covariance of ``group_size`` individuals sharing one design.

    Built by :class:`ff.PopulationExperiment`; see the module docstring. ``z`` is ``None``
    (FO) or the ``(K, R)`` standard-normal points of the Monte-Carlo moments;
    ``correlated`` the pairs of random effects with a covariance ``omega_<a>_<b>``.
    """

    def __init__(self, model, random, error, group_size, fim, z=None, correlated=()):
        self.model = model
        self.random = tuple(random)
        self.error = error
        self.fim = fim
        self.group_size = np.asarray(group_size, dtype=np.float64)
        self.z = None if z is None else np.asarray(z, dtype=np.float64)
        self.correlated = tuple(tuple(p) for p in correlated)

    def tree_flatten(self):
        aux = (self.model, self.random, self.error, self.fim, self.correlated)
        return (self.group_size, self.z), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.group_size, obj.z = children
        obj.model, obj.random, obj.error, obj.fim, obj.correlated = aux
        return obj

    def __repr__(self):
        kind = "FO" if self.z is None else f"MC(K={np.shape(self.z)[0]})"
        pairs = f", correlated={list(self.correlated)}" if self.correlated else ""
        return (
            f"PopulationNoise({kind}, random={dict(self.random)}{pairs}, error={self.error!r}, "
            f"fim={self.fim!r}, group_size={self.group_size})"
        )

    @property
    def parameter_dependent(self) -> bool:
        return True

    @property
    def variance_names(self) -> tuple[str, ...]:
        return variance_names(self.random, self.error, self.correlated)

    def omega(self, params):
        """Ω, ``(R, R)``, from the fiducial's variances and covariances."""
        return omega_matrix(params, self.random, self.correlated)

    # --- the covariance of one individual's data ---------------------------------------
    def individual_covariance(self, params, design):
        """``V = G Ω Gᵀ + Σ(f)`` (FO) or the Monte-Carlo covariance, ``(n, n)``."""
        require_variances(params, self.random, self.error, self.correlated)
        if self.z is not None:
            return mc_moments(
                self.model, self.random, self.error, params, design, self.z, self.correlated
            )[1]
        f, G = fo_terms(self.model, self.random, params, design)
        V = jnp.diag(residual_variance(self.error, f, params))
        if self.correlated:
            GO = jnp.matmul(G, self.omega(params), precision=HIGHEST)
            V = V + jnp.matmul(GO, G.T, precision=HIGHEST)
        elif self.random:
            omega = jnp.stack([jnp.asarray(params[omega_name(n)]) for n, _ in self.random])
            V = V + jnp.matmul(G * omega, G.T, precision=HIGHEST)
        return V

    def _cov_params(self, params):
        """The parameters as the covariance term sees them: under ``fim="reduced"`` the
        fixed effects are constants (no ``∂V/∂β``)."""
        if self.fim == "full":
            return params
        keep = set(self.variance_names)
        return {k: v if k in keep else jax.lax.stop_gradient(v) for k, v in params.items()}

    def inner(self, a, b, mean, params, design):
        L = jnp.linalg.cholesky(self.individual_covariance(params, design))
        wa = jax.scipy.linalg.solve_triangular(L, a, lower=True)
        wb = jax.scipy.linalg.solve_triangular(L, b, lower=True)
        return jnp.asarray(self.group_size) * jnp.matmul(wa.T, wb, precision=HIGHEST)

    def covariance_information(self, mean, theta, to_params, design, mode):
        jac = jax.jacfwd if mode == "forward" else jax.jacrev

        def cov(th):
            return self.individual_covariance(self._cov_params(to_params(th)), design)

        # V comes out of the same trace as its derivative (one solve of an ODE model less).
        def cov_twice(th):
            v = cov(th)
            return v, v

        dV, V = jac(cov_twice, has_aux=True)(theta)  # dV: (n, n, P)
        L = jnp.linalg.cholesky(V)
        A = jax.vmap(lambda D: jax.scipy.linalg.cho_solve((L, True), D), in_axes=2)(dV)
        info = 0.5 * jnp.einsum("iab,jba->ij", A, A, precision=HIGHEST)
        return jnp.asarray(self.group_size) * info

    def check_values(self, mean, params, design):
        require_variances(params, self.random, self.error, self.correlated)
        check_omega(params, self.random, self.correlated)  # concrete values: names them
        names = variance_names(self.random, self.error)  # not the covariances
        variances = jnp.stack([jnp.asarray(params[n]) for n in names])
        V = self.individual_covariance(params, design)
        checks = {
            "omega2_* and sigma2_* (the population variances) must be positive and finite "
            f"(values quoted in the order {list(names)})": variances,
        }
        if self.correlated:
            pd = variance_names(self.random, "additive", self.correlated)[:-1]
            checks[
                f"the random-effect covariance Omega (from {list(pd)}) must be positive "
                "definite (values quoted are its eigenvalues)"
            ] = jnp.linalg.eigvalsh(self.omega(params))
        checks[
            "the population covariance V = G Omega G^T + Sigma must be positive definite "
            "(values quoted are its eigenvalues; with proportional error, a prediction of 0 "
            "at a sampling time gives zero variance there)"
        ] = jnp.linalg.eigvalsh(V)
        return checks

    def log_likelihood(self, data, mean, params, design):
        """The Gaussian (FO or Monte-Carlo moment) marginal log-likelihood of individuals'
        data, shape ``(n_individuals, *output_shape)`` or the output shape (one)."""
        V = self.individual_covariance(params, design)
        n = V.shape[0]
        r = jnp.asarray(data).reshape(-1, n) - mean.reshape(1, n)
        L = jnp.linalg.cholesky(V)
        zr = jax.scipy.linalg.solve_triangular(L, r.T, lower=True)
        m = r.shape[0]
        return (
            -0.5 * jnp.sum(zr**2)
            - m * jnp.sum(jnp.log(jnp.diag(L)))
            - 0.5 * m * n * jnp.log(2 * jnp.pi)
        )

    def simulate(self, key, mean, params, design):
        raise NotImplementedError(
            "A population experiment simulates whole trials from the nonlinear model: use "
            "ff.simulate_trials(groups, fiducial, n_trials)."
        )
