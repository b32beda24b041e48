"""The Fisher matrix at given data, and the error of a Monte-Carlo expected Fisher matrix.

``ff.fisher(..., kind=...)`` dispatches here for the two data-dependent definitions:

* ``"observed"``: ``−∂²ln L(d|θ)/∂θ∂θᵀ`` at the fiducial, for the data ``d`` given;
* ``"empirical"``: ``Σ_k s_k s_kᵀ`` with ``s_k = ∂ ln p(d_k|d_<k, θ)/∂θ`` the score of datum
  ``k`` given the earlier ones (the noise model's ``sequential_terms``): for independent
  data the per-datum scores; for correlated Gaussian data (``ff.Gaussian(cov=...)``) those of
  the Cholesky-whitened components ``z = L⁻¹(d − μ)``.

Both average to the expected Fisher matrix over data drawn at the fiducial (the information
identity). The observed one is exact for the data at hand and can be indefinite away from
the best fit; the empirical one is positive semi-definite but converges slowly and is wrong
where the model is misspecified. See ``docs/likelihoods.md``.

:func:`data_information` is pure (``jit``/``vmap``-able under float64), e.g. to average
over simulated data sets:

```python
>>> import jax, jax.numpy as jnp, fisherforecast as ff
>>> from fisherforecast._fisher_kinds import data_information
>>> exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=1.0),
...                     design=jnp.arange(1.0, 4.0))
>>> with jax.enable_x64(True):
...     F = data_information(exp, {"a": 1.0}, ("a",), jnp.array([0.0, 5.0, 1.0]), "observed")
>>> float(F[0, 0])        # linear Gaussian: Σ t² at any data
14.0
```
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_data
from ._compile import cached_kernel
from ._engine import call_model, jacobian, jacobian_kernel, model_runtime_errors, split
from ._errors import FisherError, InputError, NonFiniteError, quote
from ._likelihood import Likelihood
from ._linalg import NOT_PSD, classify, unit_diagonal
from ._noise import HIGHEST, NoiseModel
from ._x64 import float64

KINDS = ("expected", "observed", "empirical")


def check_kind(kind, data):
    """``kind`` is one of :data:`KINDS`; data are given exactly when the kind needs them."""
    if kind not in KINDS:
        raise InputError(f"`kind` must be one of {KINDS}; received {quote(kind)}.")
    if kind == "expected" and data is not None:
        raise InputError(
            "`data` is used by kind='observed' or kind='empirical' only; the expected Fisher "
            "matrix (the default) averages over all data. Pass kind='observed' to evaluate "
            "the information at these data."
        )
    if kind != "expected" and data is None:
        raise InputError(
            f"kind={kind!r} is the information at given data: pass data=<array in the model's "
            "output shape> (a list of arrays, one per experiment, for several)."
        )
    return kind


def data_information(experiment, fiducial, names, data, kind, mode="forward"):
    """The observed or empirical Fisher matrix ``(P, P)`` of one experiment at `data`.
    Pure; call under float64."""
    names = tuple(names)
    theta, to_params = split(fiducial, names)
    noise, design = experiment.noise, experiment.design

    def terms(th):
        params = to_params(th)
        mean = call_model(experiment, params)
        out = noise.sequential_terms(data, mean, params, design)
        if out is None:
            raise InputError(
                f"kind='empirical' needs the terms ln p(d_k | d_<k) of the log-likelihood "
                f"(sequential_terms), but the noise model {noise!r} of {experiment.label} "
                "does not define them (nor per-datum log_likelihood_terms). Use "
                "kind='observed' or 'expected'."
            )
        return out

    if kind == "observed":

        def loglike(th):
            params = to_params(th)
            return noise.log_likelihood(data, call_model(experiment, params), params, design)

        H = jax.jacfwd(jax.grad(loglike))(theta)
        return -0.5 * (H + H.T)
    if kind != "empirical":
        raise InputError(f"data_information: kind must be 'observed' or 'empirical'; got {kind!r}.")
    S = (jax.jacfwd if mode == "forward" else jax.jacrev)(terms)(theta)  # (N, P)
    S = jnp.real(S)
    return jnp.matmul(S.T, S, precision=HIGHEST)


@cached_kernel(static_argnames=("names", "kind", "mode"))
def _data_kernel(experiment, fiducial, data, names, kind, mode):
    return data_information(experiment, fiducial, names, data, kind, mode)


@cached_kernel(static_argnames=("names",))
def _pointwise_kernel(experiment, fiducial, data, names):
    """Model output, per-datum log-likelihood (or the total) and support flags at data."""
    theta, to_params = split(fiducial, names)
    params = to_params(theta)
    noise, design = experiment.noise, experiment.design
    mean = call_model(experiment, params)
    terms = noise.log_likelihood_terms(data, mean, params, design)
    if terms is None:
        terms = jnp.reshape(noise.log_likelihood(data, mean, params, design), (1,))
    support = noise.data_in_support(data, mean, params, design)
    if support is None:
        support = jnp.ones(jnp.size(data), dtype=bool)
    return mean, terms, support


def _raise_bad_data(exp, arr, terms, support, what="`data`"):
    raise_outside_support(exp, arr, support, what)
    flat = arr.reshape(-1)
    terms = np.asarray(terms).reshape(-1)
    nonfinite = np.nonzero(~np.isfinite(terms))[0]
    if nonfinite.size:
        what = (
            f"at data index {[int(k) for k in nonfinite[:5]]} (values "
            f"{[float(flat[k]) for k in nonfinite[:5]]})"
            if terms.size == flat.size
            else "(summed over the data)"
        )
        raise NonFiniteError(
            f"The log-likelihood of {exp.label} ({exp.noise!r}) is NaN/inf at the fiducial "
            f"{what}. Check that the distribution is valid there (positive scales and "
            "rates, probabilities inside (0, 1)) and that the data are possible under it."
        )


def raise_outside_support(exp, arr, support, what="`data`"):
    """``InputError`` quoting the first data outside the support (``support``: the noise
    model's ``data_in_support`` flags, or ``None``)."""
    if support is None:
        return
    bad = np.nonzero(~np.asarray(support).reshape(-1))[0]
    flat = arr.reshape(-1)
    if bad.size:
        where = [tuple(int(i) for i in np.unravel_index(k, arr.shape)) for k in bad[:5]]
        raise InputError(
            f"{what} for {exp.label} lies outside the support of its noise model "
            f"{exp.noise!r}: {bad.size} values, e.g. {[float(flat[k]) for k in bad[:5]]} at "
            f"index {where}. Give data the distribution can produce (e.g. whole, "
            "non-negative counts for count noise; fractions k/n for ff.Binomial)."
        )


@cached_kernel
def _support_kernel(experiment, fiducial, data, mean):
    return experiment.noise.data_in_support(data, mean, fiducial, experiment.design)


def checked_data(data, experiments, means, fid64, what="data", *, alternatives=()):
    """:func:`check_data` (shape, dtype, finite values), then each noise model's support
    (``data_in_support``): data a noise model cannot produce (negative or fractional counts,
    fractions outside [0, 1], non-positive log-normal data) are refused, naming the
    argument and quoting values and indices. Returns the checked arrays."""
    datas = check_data(data, experiments, means, what, alternatives=alternatives)
    for i, (exp, arr, mean) in enumerate(zip(experiments, datas, means, strict=True)):
        if type(exp.noise).data_in_support is NoiseModel.data_in_support:
            continue  # any finite value is possible (no compilation needed to say so)
        name = f"`{what}[{i}]`" if len(experiments) > 1 else f"`{what}`"
        with float64(), model_runtime_errors([exp]):
            fid = {k: jnp.asarray(v, jnp.float64) for k, v in fid64.items()}
            support = jax.device_get(_support_kernel(exp, fid, arr, jnp.asarray(mean)))
        raise_outside_support(exp, arr, support, name)
    return datas


def fisher_at_data(experiments, fid64, names, mode, kind, data) -> np.ndarray:
    """Host side: check `data` and sum the observed/empirical matrices (float64 numpy)."""
    names = tuple(names)
    with float64():
        means = []
        for exp in experiments:
            with model_runtime_errors([exp]):
                mean, _ = jacobian_kernel(exp, fid64, names, mode)  # pyright: ignore[reportCallIssue]
            means.append(np.asarray(mean))
        datas = check_data(data, experiments, means)
        total = np.zeros((len(names), len(names)))
        for i, (exp, arr) in enumerate(zip(experiments, datas, strict=True)):
            with model_runtime_errors([exp]):
                _, terms, support = jax.device_get(_pointwise_kernel(exp, fid64, arr, names))
            what = f"`data[{i}]`" if len(experiments) > 1 else "`data`"
            _raise_bad_data(exp, arr, terms, support, what)
            with model_runtime_errors([exp]):
                F = np.asarray(_data_kernel(exp, fid64, arr, names, kind, mode), np.float64)
            if not np.all(np.isfinite(F)):
                raise NonFiniteError(
                    f"The {kind} Fisher matrix of {exp.label} has NaN/inf entries: the "
                    "log-likelihood is not twice differentiable at these data and parameters "
                    "(a kink such as the Laplace |y − μ| at a datum, or a model that is not "
                    "differentiable there). Use kind='expected'."
                )
            total = total + F
    if int(classify(total)[0]) == NOT_PSD:
        w = np.linalg.eigvalsh(unit_diagonal(total)[0])
        raise FisherError(
            f"The {kind} Fisher matrix at these data is not positive semi-definite (smallest "
            f"eigenvalue of the unit-diagonal matrix {w[0]:.3g}): the log-likelihood of these "
            "data is not concave at the fiducial, which is far from their best fit. Evaluate "
            "the observed information at the maximum-likelihood estimate of the data, or use "
            "kind='expected' (the forecast)."
        )
    return total


@cached_kernel(static_argnames=("names", "mode"))
def _error_kernel(experiment, fiducial, names, mode):
    mean, J = jacobian(experiment, fiducial, names, mode)
    theta, to_params = split(fiducial, names)
    noise = experiment.noise
    assert isinstance(noise, Likelihood)
    method = noise.method(noise.distribution(mean, to_params(theta)))
    return noise.monte_carlo_error(J, mean, theta, to_params, mode), method == "quadrature"


def describe(noise: Likelihood, quadrature: bool) -> str:
    """How a noise model's expected information was estimated, for the metadata."""
    if quadrature:
        from ._likelihood import QUADRATURE_U

        return f"quadrature, {QUADRATURE_U.size} nodes per datum"
    return f"Monte Carlo, {noise.n_samples} draws per datum, seed {int(noise.seed)}"


def monte_carlo_error(experiments, fid64, names, mode):
    """``(error, descriptions, quadrature_error)``: the error ``(P, P)`` of a Fisher matrix
    estimated by Monte Carlo (a standard error) or by quadrature (an error estimate) —
    independent experiments add in quadrature —, how each estimate was made and the part of
    the error from quadrature (``None`` without), or ``None`` when every experiment's
    information is exact."""
    names = tuple(names)
    variance, found = np.zeros((len(names), len(names))), []
    quad_variance = None
    for exp in experiments:
        noise = exp.noise
        if not isinstance(noise, Likelihood) or noise.information == "closed-form":
            continue
        # None (decided at trace time) where the distribution has a closed form: the
        # compiled kernel then computes nothing.
        with float64(), model_runtime_errors([exp]):
            se, quadrature = _error_kernel(exp, fid64, names, mode)
        if se is None:
            continue
        se = np.asarray(se, np.float64)
        variance = variance + se**2
        found.append(describe(noise, bool(quadrature)))
        if quadrature:
            quad_variance = se**2 + (0.0 if quad_variance is None else quad_variance)
    if not found:
        return None
    return np.sqrt(variance), found, None if quad_variance is None else np.sqrt(quad_variance)


#: Relative quadrature error (to ``√(F_ii F_jj)``) above which ``ff.fisher`` warns.
QUADRATURE_WARN = 1e-4


def warn_if_inaccurate(matrix, quadrature_error):
    """Warn when the quadrature error estimate is not small: the score is not smooth in the
    probability variable (a kink of the density away from the median, e.g. the
    AsymmetricLaplace), where the rule converges slowly."""
    if quadrature_error is None:
        return
    d = np.sqrt(np.abs(np.diag(matrix)))
    scale = np.outer(d, d)
    rel = np.max(np.where(scale > 0, quadrature_error / np.where(scale > 0, scale, 1.0), 0.0))
    if rel > QUADRATURE_WARN:
        import warnings

        warnings.warn(
            f"The quadrature estimate of the expected Fisher matrix has a relative error "
            f"estimate of {rel:.2g} (see F.metadata['fisher_standard_error']): the score is "
            "not smooth in the probability (a kink of the density, e.g. an asymmetric "
            "Laplace away from its median). Use information='monte-carlo' for an estimate "
            "with a standard error, or a closed form.",
            UserWarning,
            stacklevel=3,
        )
