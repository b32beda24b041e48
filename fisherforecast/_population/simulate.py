"""Stochastic simulation and estimation: does the predicted SE hold?

:func:`simulate_trials` draws whole trials from the *nonlinear* mixed-effects model
(``η ~ N(0, Ω)`` per individual, then the residual error), not from a linearisation.
:func:`fit_population` estimates the population parameters of one trial by maximising
the Laplace approximation of the marginal likelihood (each individual's ``η`` integrated
out around its mode, as FOCE-I/Laplace estimation does), with ``scipy.optimize``.
:func:`population_check` repeats both over many trials and sets the empirical standard
errors against those the Fisher matrices predict (FO reduced, FO full, Monte-Carlo).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_fiducial, check_int, check_names, check_seed
from .._errors import InputError, quote
from .._fisher import fisher
from .._record import Record
from .._x64 import float64
from .experiment import PopulationExperiment
from .noise import (
    check_omega,
    covariance_name,
    individual_prediction,
    omega_matrix,
    omega_name,
    require_variances,
    residual_variance,
)

#: The Fisher matrices :func:`population_check` compares by default: (approximation, fim).
DEFAULT_PREDICTIONS = (("fo", "reduced"), ("fo", "full"), ("mc", "full"))


def _as_groups(groups) -> list[PopulationExperiment]:
    out = list(groups) if isinstance(groups, list | tuple) else [groups]
    for g in out:
        if not isinstance(g, PopulationExperiment):
            raise InputError(
                "expected a PopulationExperiment or a list of them (one per group); received "
                f"{quote(g)}."
            )
    if not out:
        raise InputError("`groups` is empty: give at least one PopulationExperiment.")
    return out


def _integer_size(group) -> int:
    n = group.group_size
    if n != round(n):
        raise InputError(
            f"simulating a trial needs whole individuals, but {group.label} has group_size={n}; "
            "use group.with_group_size(round(n))."
        )
    return round(n)


# =======================================================================================
# Simulation from the nonlinear model
# =======================================================================================
@partial(jax.jit, static_argnames=("model", "random", "error", "shape", "correlated"))
def _simulate_group(key, params, design, model, random, error, shape, correlated=()):
    k1, k2, k3 = jax.random.split(key, 3)
    R = len(random)
    z = jax.random.normal(k1, (*shape, R))
    if correlated:  # η = L z with L Lᵀ = Ω
        L = jnp.linalg.cholesky(omega_matrix(params, random, correlated))
        eta = jnp.einsum("...j,ij->...i", z, L)
    else:
        omega = jnp.stack([params[omega_name(n)] for n, _ in random]) if R else jnp.zeros(0)
        eta = z * jnp.sqrt(omega)

    def predict(e):
        return individual_prediction(model, random, params, e, design)

    f = jax.vmap(jax.vmap(predict))(eta)
    y = f
    if error in ("proportional", "combined"):
        y = y + f * jnp.sqrt(params["sigma2_prop"]) * jax.random.normal(k2, f.shape)
    if error in ("additive", "combined"):
        y = y + jnp.sqrt(params["sigma2_add"]) * jax.random.normal(k3, f.shape)
    return y


def simulate_trials(groups, fiducial, n_trials=1, *, seed=0) -> list[np.ndarray]:
    """Simulate trials from the nonlinear mixed-effects model.

    Each individual draws ``η ~ N(0, Ω)`` (with the covariances of the group's
    `correlated` pairs), the prediction ``f(β, η)`` and the residual
    error of the group's error model (``f·(1 + ε)`` proportional, ``f + ε`` additive).

    **Arguments:** `groups` (a :class:`PopulationExperiment` or a list), `fiducial` (the true
    values), `n_trials`, `seed`.

    **Returns:** one array per group, ``(n_trials, group_size, n_obs)`` (flattened output).

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> g = ff.PopulationExperiment(lambda p, t: p["A"] * jnp.exp(-t), np.arange(3.0),
    ...                             random={"A": "exponential"}, error="additive", group_size=5)
    >>> ff.simulate_trials(g, {"A": 1.0, "omega2_A": 0.1, "sigma2_add": 0.01}, 4)[0].shape
    (4, 5, 3)

    ```
    """
    groups = _as_groups(groups)
    fid = check_fiducial(fiducial)
    n_trials = check_int(n_trials, "n_trials", 1)
    keys = jax.random.split(jax.random.PRNGKey(check_seed(seed)), len(groups))
    out = []
    with float64():
        params = {k: jnp.float64(v) for k, v in fid.items()}
        for key, g in zip(keys, groups, strict=True):
            noise = g.population_noise
            require_variances(params, noise.random, g.error, noise.correlated)
            check_omega(fid, noise.random, noise.correlated, where=f"the fiducial of {g.label}")
            y = _simulate_group(
                key,
                params,
                g.design,
                g.individual_model,
                noise.random,
                g.error,
                (n_trials, _integer_size(g)),
                noise.correlated,
            )
            out.append(np.asarray(y, dtype=np.float64))
    return out


# =======================================================================================
# Laplace marginal likelihood
# =======================================================================================
_STEPS = np.array([0.0, 1.0, 0.5, 0.25, 0.1, 0.03])


def _laplace_individual(y, params, design, model, random, error, n_newton, correlated=()):
    """Laplace approximation of ``ln ∫ p(y | η) p(η) dη`` for one individual."""
    omega = omega_matrix(params, random, correlated)
    R = omega.shape[0]
    L = jnp.linalg.cholesky(omega)
    omega_inv = jax.scipy.linalg.cho_solve((L, True), jnp.eye(R))
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))

    def f_of(e):
        return individual_prediction(model, random, params, e, design)

    def log_joint(e):
        f = f_of(e)
        var = residual_variance(error, f, params)
        cond = -0.5 * jnp.sum((y - f) ** 2 / var + jnp.log(2 * jnp.pi * var))
        prior = e @ jax.scipy.linalg.cho_solve((L, True), e)
        return cond - 0.5 * (prior + log_det + R * jnp.log(2 * jnp.pi))

    def scoring_step(_, e):
        # Fisher scoring in η: the expected information of y | η plus Ω⁻¹ (positive definite).
        Jf = jax.jacfwd(f_of)(e)
        var_of = lambda z: residual_variance(error, f_of(z), params)  # noqa: E731
        Jv = jax.jacfwd(var_of)(e)
        var = var_of(e)
        H = Jf.T @ (Jf / var[:, None]) + 0.5 * Jv.T @ (Jv / var[:, None] ** 2)
        H = H + omega_inv
        step = jnp.linalg.solve(H, jax.grad(log_joint)(e))
        # A crude line search: the best of a few step lengths (0 included, so the joint
        # density never decreases; flip-flop PK models have bimodal individual posteriors).
        trial = e + jnp.asarray(_STEPS)[:, None] * step
        values = jax.vmap(log_joint)(trial)
        values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
        return trial[jnp.argmax(values)]

    mode = jax.lax.fori_loop(0, n_newton, scoring_step, jnp.zeros(R))
    mode = jax.lax.stop_gradient(mode)
    H = -jax.hessian(log_joint)(mode)
    # One Newton step carries the mode's dependence on the parameters (implicit-function
    # theorem) into the gradient; its value is the converged mode.
    mode = mode + jnp.linalg.solve(jax.lax.stop_gradient(H), jax.grad(log_joint)(mode))
    H = -jax.hessian(log_joint)(mode)
    logdet = jnp.linalg.slogdet(H)[1]
    return log_joint(mode) - 0.5 * logdet + 0.5 * R * jnp.log(2 * jnp.pi)


def _params_of(u, names, covs, base, scale):
    """The parameters at the optimiser's ``u``: ``θ = base·exp(u)`` (``base + u`` where the
    fiducial is 0); a covariance ``omega_<a>_<b>`` (``covs``: its index and the names of
    the two variances) is ``tanh(atanh ρ₀ + u)·√(ω²_a ω²_b)``, so its correlation stays
    within (-1, 1)."""
    params = dict(base)
    cov_index = {i for i, _, _ in covs}
    for i, n in enumerate(names):
        if i not in cov_index:
            params[n] = jnp.where(scale[i] != 0, scale[i] * jnp.exp(u[i]), u[i])
    for i, a2, b2 in covs:
        params[names[i]] = jnp.tanh(scale[i] + u[i]) * jnp.sqrt(params[a2] * params[b2])
    return params


def _trial_loglik(u, data, spec, base, scale, n_newton):
    """Laplace log-likelihood of one trial at the parameters :func:`_params_of` gives for
    the estimated names."""
    names, covs, groups = spec
    params = _params_of(u, names, covs, base, scale)
    total = 0.0
    for (model, random, error, design, correlated), y in zip(groups, data, strict=True):
        one = partial(
            _laplace_individual,
            params=params,
            design=design,
            model=model,
            random=random,
            error=error,
            n_newton=n_newton,
            correlated=correlated,
        )
        total = total + jnp.sum(jax.vmap(one)(y))
    return total


@partial(jax.jit, static_argnames=("spec", "n_newton"))
def _neg_loglik_and_grad(u, data, spec, base, scale, n_newton):
    value, grad = jax.value_and_grad(_trial_loglik)(u, data, spec, base, scale, n_newton)
    return -value, -grad


def _fit_setup(groups, start, params):
    groups = _as_groups(groups)
    fid = check_fiducial(start)
    names = check_names(params, fid)
    for g in groups:
        if not g.random:
            raise InputError(f"{g.label} has no random effects; fit it with a plain likelihood.")
        noise = g.population_noise
        require_variances(fid, noise.random, g.error, noise.correlated)
        check_omega(fid, noise.random, noise.correlated, where=f"the start of {g.label}")
    designs = []
    for g in groups:
        design = jax.tree_util.tree_map(jnp.asarray, g.design)
        noise = g.population_noise
        designs.append((g.individual_model, noise.random, g.error, design, noise.correlated))
    return groups, fid, names, designs


def fit_population(groups, data, start, *, params=None, n_newton=25) -> dict:
    """Maximum-likelihood estimate of the population parameters of one trial (Laplace).

    **Arguments:** `groups`, `data` (one ``(group_size, n_obs)`` array per group, e.g. a
    trial of :func:`simulate_trials`), `start` (a full fiducial dict: the starting point,
    and the values of parameters held fixed), `params` (names to estimate; default all),
    `n_newton` (Fisher-scoring steps for each individual's mode).

    **Returns:** dict name -> estimate, plus ``"_success"`` (bool) and ``"_nll"``.
    """
    from scipy.optimize import minimize

    groups, fid, names, designs = _fit_setup(groups, start, params)
    if not isinstance(data, list | tuple) or len(data) != len(groups):
        raise InputError(
            f"`data` must be a list with one (group_size, n_obs) array per group "
            f"({len(groups)}); received {quote(data)}."
        )
    data = [
        _check_trial_data(d, g, fid, i) for i, (d, g) in enumerate(zip(data, groups, strict=True))
    ]
    return _fit_one(designs, data, fid, names, n_newton, minimize)


def _check_trial_data(d, group, fid, i):
    arr = np.asarray(d, dtype=np.float64)
    with float64():
        n_obs = int(np.size(group.individual_model(fid, group.design)))
    if arr.ndim != 2 or arr.shape[1] != n_obs or not np.all(np.isfinite(arr)):
        raise InputError(
            f"`data[{i}]` must be a finite (n_individuals, {n_obs}) array for {group.label}; "
            f"received shape {arr.shape}{'' if np.all(np.isfinite(arr)) else ' with NaN/inf'}."
        )
    return jnp.asarray(arr)


def _covariances(designs, names):
    """``(index, omega2_a, omega2_b)`` of each estimated covariance ``omega_<a>_<b>``."""
    pairs = {covariance_name(a, b): (a, b) for *_, correlated in designs for a, b in correlated}
    return tuple(
        (i, omega_name(pairs[n][0]), omega_name(pairs[n][1]))
        for i, n in enumerate(names)
        if n in pairs
    )


def _fit_one(designs, data, fid, names, n_newton, minimize):
    covs = _covariances(designs, names)
    start = [float(fid[n]) for n in names]
    for i, a2, b2 in covs:  # atanh of the starting correlation (|ρ₀| < 1: Ω checked)
        start[i] = math.atanh(fid[names[i]] / math.sqrt(fid[a2] * fid[b2]))
    with float64():
        base = {k: jnp.float64(v) for k, v in fid.items()}
        scale = jnp.asarray(start, dtype=jnp.float64)
        spec = (tuple(names), covs, _Static(tuple(designs)))

        def fun(u):
            v, g = _neg_loglik_and_grad(jnp.asarray(u), data, spec, base, scale, n_newton)
            return float(v), np.asarray(g, dtype=np.float64)

        res = minimize(fun, np.zeros(len(names)), jac=True, method="L-BFGS-B")
        est = _params_of(jnp.asarray(res.x), names, covs, base, scale)
        theta = {n: float(est[n]) for n in names}
    return {**theta, "_success": bool(res.success and np.isfinite(res.fun)), "_nll": float(res.fun)}


class _Static:
    """The groups' models, random effects, error models and designs as one static jit
    argument (designs are small arrays, compared by content)."""

    def __init__(self, groups):
        self.groups = groups
        self._key = tuple(
            (
                m,
                r,
                e,
                tuple((str(x.dtype), x.shape, np.asarray(x).tobytes()) for x in _leaves(d)),
                c,
            )
            for m, r, e, d, c in groups
        )

    def __iter__(self):
        return iter(self.groups)

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key == other._key

    def __hash__(self):
        return hash(self._key)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


# =======================================================================================
# Predicted against empirical standard errors
# =======================================================================================
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PopulationCheck(Record):
    """Predicted (Fisher) against empirical (simulation and estimation) standard errors.

    - `names`, `truth`: the estimated parameters and their true values.
    - `estimates`: ``(n_ok, P)`` estimates of the trials whose fit converged.
    - `empirical_se`: their standard deviation per parameter; `empirical_se_error`: its
      own standard error (``se / √(2(n_ok − 1))``, normal theory).
    - `bias`: mean estimate minus truth, in % of the truth.
    - `predicted_se`: label (``"fo/reduced"``, ...) -> name -> predicted SE.
    - `n_trials`, `n_failed`.

    Methods: :meth:`ratio` (predicted over empirical SE) and ``summary()`` (the table).
    Returned by :func:`population_check`; the fewest trials (3) and one prediction keep
    this cheap (a real check wants a hundred trials or more):

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> g = ff.PopulationExperiment(lambda p, t: p["A"] * jnp.exp(-t), np.arange(3.0),
    ...                             random={"A": "exponential"}, error="additive", group_size=5)
    >>> chk = ff.population_check(g, {"A": 1.0, "omega2_A": 0.1, "sigma2_add": 0.01},
    ...                           n_trials=3, predictions=[("fo", "reduced")])
    >>> chk.names, chk.estimates.shape, chk.n_trials - chk.n_failed
    (('A', 'omega2_A', 'sigma2_add'), (3, 3), 3)
    >>> list(chk.predicted_se), sorted(chk.ratio("fo/reduced"))
    (['fo/reduced'], ['A', 'omega2_A', 'sigma2_add'])
    >>> all(0.2 < r < 5 for r in chk.ratio("fo/reduced").values())  # 3 trials: ±50 %
    True
    ```
    """

    names: tuple[str, ...]
    truth: dict
    estimates: np.ndarray
    empirical_se: dict
    empirical_se_error: dict
    bias: dict
    predicted_se: dict
    n_trials: int
    n_failed: int

    def ratio(self, label: str) -> dict:
        """Predicted over empirical SE per parameter for one prediction."""
        return {n: self.predicted_se[label][n] / self.empirical_se[n] for n in self.names}

    def summary(self) -> str:
        labels = list(self.predicted_se)
        head = f"{'parameter':<14}{'empirical RSE%':>16}" + "".join(
            f"{lab + ' RSE%':>18}" for lab in labels
        )
        lines = [
            f"PopulationCheck: {self.n_trials - self.n_failed} of {self.n_trials} trials "
            "estimated (Laplace marginal likelihood)",
            head,
        ]
        for n in self.names:
            t = abs(self.truth[n])
            se, err = 100 * self.empirical_se[n] / t, 100 * self.empirical_se_error[n] / t
            emp = f"{se:8.2f} ± {err:4.2f}"
            row = f"{n:<14}{emp:>16}" + "".join(
                f"{100 * self.predicted_se[lab][n] / t:>18.2f}" for lab in labels
            )
            lines.append(row)
        return "\n".join(lines)


def population_check(
    groups,
    fiducial,
    *,
    n_trials=100,
    params=None,
    predictions: Sequence = DEFAULT_PREDICTIONS,
    n_eta=1024,
    seed=0,
    n_newton=25,
) -> PopulationCheck:
    """Simulate `n_trials` trials, estimate each, and compare the spread with the SE the
    population Fisher matrices predict.

    **Arguments:** `groups` (a :class:`PopulationExperiment` or list), `fiducial` (truth),
    `n_trials`, `params` (estimated names), `predictions` (``(approximation, fim)`` pairs),
    `n_eta` (points of the Monte-Carlo Fisher matrix), `seed`, `n_newton`.

    **Returns:** a :class:`PopulationCheck`; ``print(check.summary())`` shows the table.
    """
    from scipy.optimize import minimize

    groups, fid, names, designs = _fit_setup(groups, fiducial, params)
    n_trials = check_int(n_trials, "n_trials", 3)
    predicted = {}
    for approximation, fim in predictions:
        variants = [g.variant(fim=fim, approximation=approximation, n_eta=n_eta) for g in groups]
        predicted[f"{approximation}/{fim}"] = fisher(variants, fid, params=names).sigma()
    sims = simulate_trials(groups, fid, n_trials, seed=seed)
    estimates, failed = [], 0
    for t in range(n_trials):
        data = [jnp.asarray(s[t]) for s in sims]
        est = _fit_one(designs, data, fid, names, n_newton, minimize)
        if est["_success"]:
            estimates.append([est[n] for n in names])
        else:
            failed += 1
    est = np.asarray(estimates, dtype=np.float64).reshape(-1, len(names))
    if est.shape[0] < 3:
        raise InputError(
            f"only {est.shape[0]} of {n_trials} fits converged: check the model, the "
            "design and the fiducial (a parameter the design cannot estimate?)."
        )
    se = est.std(axis=0, ddof=1)
    k = est.shape[0]
    return PopulationCheck(
        names=tuple(names),
        truth={n: fid[n] for n in names},
        estimates=est,
        empirical_se={n: float(s) for n, s in zip(names, se, strict=True)},
        empirical_se_error={
            n: float(s / math.sqrt(2 * (k - 1))) for n, s in zip(names, se, strict=True)
        },
        bias={
            n: float(100 * (est[:, i].mean() - fid[n]) / abs(fid[n])) if fid[n] else math.nan
            for i, n in enumerate(names)
        },
        predicted_se=predicted,
        n_trials=n_trials,
        n_failed=failed,
    )
