"""The noise-model contract: every noise model through every analysis it supports.

One parametrised matrix. A new noise model is one class plus one line in ``NOISE_CASES``; the
analyses it joins follow from its capabilities (``parameter_dependent``, ``gaussian``,
``covariance``, ``has_expected_deviance``, ``simulate``), exactly as the library decides.

The reference Fisher matrices are computed here independently of the library: a 5-point
finite-difference Jacobian of a numpy copy of the model, contracted with the textbook Fisher
information of each distribution —

* Gaussian ``N(μ(θ), C(θ))``: ``JᵀC⁻¹J + ½ tr(C⁻¹∂ᵢC C⁻¹∂ⱼC)`` (e.g. Kay, *Fundamentals of
  Statistical Signal Processing*, vol. 1, eq. 3.31), ``∂C`` by finite differences;
* Poisson counts: ``Σ_k ∂ᵢλ_k ∂ⱼλ_k / λ_k``;
* stationary noise with one-sided PSD ``S`` on a grid ``Δf``: ``4Δf Re Σ ∂ᵢh* ∂ⱼh / S``
  (Cutler & Flanagan 1994, eq. 2.4–2.5);
* Student-t location with fixed ``ν`` and scale ``s``: ``(ν + 1) / ((ν + 3) s²)`` per datum
  (Lange, Little & Taylor 1989, JASA 84, 881, Sec. 3);
* negative binomial with mean ``μ`` and concentration ``r``: ``r/(μ(μ + r))`` per datum; in
  ``r`` the direct sum ``ψ₁(r) − Σ_y P(y) ψ₁(y + r) − μ/(r(r + μ))`` over the scipy pmf;
* log-normal ``ln y ~ N(ln μ, σ²)``: the Gaussian information of ``ln μ``, ``Σ ∂ᵢμ ∂ⱼμ/(σμ)²``;
* Laplace with scale ``b``: ``1/b²`` per datum; binomial fractions: ``n/(p(1 − p))``;
* Gumbel location with scale ``β`` (no closed form in the library: quadrature): ``1/β²``;
* PEtab's noise (``ff.petab.PetabNoise``: the model returns ``[y, σ]``, each datum normal or
  Laplace on a lin/log/log10 scale ``h``): ``h'(y)²/σ²`` for ``y``, and for the scale ``2/σ²``
  (normal) or ``1/b²`` (Laplace), the textbook location-scale informations.

Data-dependent checks: the empirical Fisher (the scores of the terms ``ln p(d_k | d_<k)``)
averages to the reference over simulated data, and data outside a noise model's support are
refused by every analysis that takes data.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._x64 import float64

T = np.linspace(0.2, 3.0, 10)
FID = {"A": 20.0, "k": 0.7}
KERNEL = 0.5 * np.eye(T.size) + 0.5 * np.exp(-np.abs(T[:, None] - T[None, :]))


def decay_np(p, t=T):
    return p["A"] * np.exp(-p["k"] * t) + 5.0


def decay(p, t):
    return p["A"] * jnp.exp(-p["k"] * t) + 5.0


def decay_complex(p, t):
    return decay(p, t) * (1.0 + 0.3j)


def decay_fraction(p, t):
    return decay(p, t) / 45.0


def nb_generic():
    import numpyro.distributions as dist

    return ff.Likelihood(lambda mu, p: dist.NegativeBinomial2(mu, p["r"]))


#: A PEtab-style design: each datum's transformation (0 lin, 1 log, 2 log10), distribution
#: (0 normal, 1 Laplace) and weight; σ = s is an estimated noise parameter in the output.
PETAB_DESIGN = {
    "t": T,
    "transform": np.arange(T.size) % 3,
    "distribution": (np.arange(T.size) // 3) % 2,
    "weight": np.ones(T.size),
}


def decay_petab(p, d):
    return jnp.stack([decay(p, d["t"]), p["s"] * jnp.ones(d["t"].shape)])


def petab_noise():
    from fisherforecast.petab import PetabNoise

    return PetabNoise()


def gumbel_generic():
    """No closed form: the information by quadrature through the icdf."""
    import numpyro.distributions as dist

    return ff.Likelihood(lambda mu: dist.Gumbel(mu, 0.5))


class StudentT(ff.NoiseModel):
    """Student-t residuals with fixed ν and scale: a noise model written as a user would."""

    parameter_dependent = False

    def __init__(self, scale, nu):
        self.scale, self.nu = float(scale), float(nu)

    def tree_flatten(self):
        return (), (self.scale, self.nu)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux)

    def inner(self, a, b, mean, params, design):
        weight = (self.nu + 1.0) / ((self.nu + 3.0) * self.scale**2)
        return weight * (a.T @ b)

    def whiten(self, x, mean, params, design):
        return x * jnp.sqrt((self.nu + 1.0) / ((self.nu + 3.0) * self.scale**2))

    def log_likelihood(self, data, mean, params, design):
        z = (jnp.asarray(data) - mean).reshape(-1) / self.scale
        return jnp.sum(-0.5 * (self.nu + 1.0) * jnp.log1p(z**2 / self.nu)) - z.size * jnp.log(
            self.scale
        )

    def simulate(self, key, mean, params, design):
        return mean + self.scale * jax.random.t(key, self.nu, mean.shape, dtype=mean.dtype)


@dataclasses.dataclass(frozen=True)
class Case:
    make: object  # () -> noise model
    model: object = decay
    extra: dict = dataclasses.field(default_factory=dict)  # noise parameters in the fiducial
    complex_output: bool = False
    design: object = None  # None: the times T

    @property
    def data_design(self):
        return T if self.design is None else self.design


NOISE_CASES = {
    "gaussian-sigma": Case(lambda: ff.Gaussian(sigma=0.5)),
    "gaussian-cov": Case(lambda: ff.Gaussian(cov=0.25 * KERNEL)),
    "gaussian-sigma-fn": Case(
        lambda: ff.Gaussian(sigma=lambda p: p["s"] * jnp.ones(T.size)), extra={"s": 0.5}
    ),
    "gaussian-cov-fn": Case(
        lambda: ff.Gaussian(cov=lambda p: p["s"] ** 2 * jnp.asarray(KERNEL)), extra={"s": 0.5}
    ),
    "poisson": Case(ff.Poisson),
    "psd": Case(lambda: ff.PSD(2.0, 0.5), model=decay_complex, complex_output=True),
    "student-t": Case(lambda: StudentT(0.5, 5.0)),
    "student-t-family": Case(lambda: ff.StudentT(0.5, 5.0)),
    "negative-binomial": Case(lambda: ff.NegativeBinomial(300.0)),
    "likelihood-nb-dispersion": Case(nb_generic, extra={"r": 30.0}),
    "lognormal": Case(lambda: ff.LogNormal(0.1)),
    "laplace": Case(lambda: ff.Laplace(0.5)),
    "binomial": Case(lambda: ff.Binomial(40), model=decay_fraction),
    "likelihood-gumbel-quadrature": Case(gumbel_generic),
    "petab": Case(petab_noise, model=decay_petab, extra={"s": 0.5}, design=PETAB_DESIGN),
}

#: Cases whose data cannot be negative (counts, fractions, log-normal values).
NON_NEGATIVE = ("poisson", "negative-binomial", "likelihood-nb-dispersion", "lognormal", "binomial")


def numpy_model(case, p):
    out = decay_np(p)
    if case.model is decay_petab:
        return np.stack([out, np.full(T.size, p["s"])])
    if case.model is decay_fraction:
        return out / 45.0
    return out * (1.0 + 0.3j) if case.complex_output else out


def nb_dispersion_direct(mu, r):
    from scipy import special, stats

    y = np.arange(0, int(mu + 60 * np.sqrt(mu + mu**2 / r)) + 200)
    pmf = stats.nbinom.pmf(y, r, r / (r + mu))
    return special.polygamma(1, r) - np.sum(pmf * special.polygamma(1, y + r)) - mu / (r * (r + mu))


def _textbook_other(case_id, case, fid, J):
    """Non-Gaussian references (None for the Gaussian cases)."""
    mu = numpy_model(case, fid)
    if case_id == "petab":
        y, s = mu
        tr, dist = PETAB_DESIGN["transform"], PETAB_DESIGN["distribution"]
        dh = np.where(tr == 0, 1.0, np.where(tr == 1, 1.0 / y, 1.0 / (y * np.log(10.0))))
        w = np.concatenate([dh**2 / s**2, np.where(dist == 0, 2.0, 1.0) / s**2])
        return J.T @ (J * w[:, None])
    if case_id == "poisson":
        return J.T @ (J / mu[:, None])
    if case_id == "psd":
        return 4 * 0.5 / 2.0 * np.real(J.conj().T @ J)
    if case_id.startswith("student-t"):
        return (6.0 / (8.0 * 0.25)) * J.T @ J
    if case_id == "laplace":
        return J.T @ J / 0.25
    if case_id == "likelihood-gumbel-quadrature":
        return J.T @ J / 0.25  # location information 1/β² (Gumbel 1958, §6.2)
    if case_id == "lognormal":
        return J.T @ (J / (0.1 * mu[:, None]) ** 2)
    if case_id == "binomial":
        return J.T @ (J * (40.0 / (mu * (1 - mu)))[:, None])
    if "nb" in case_id or case_id == "negative-binomial":
        r = fid.get("r", 300.0 if case_id == "negative-binomial" else 30.0)
        F = np.zeros((len(fid), len(fid)))
        F[:2, :2] = J[:, :2].T @ (J[:, :2] * (r / (mu * (mu + r)))[:, None])
        if "r" in fid:
            F[2, 2] = sum(nb_dispersion_direct(m, r) for m in mu)
        return F
    return None


def fd_derivative(f, p, name, h_rel=1e-4):
    """5-point central difference of f (a function of the parameter dict) along `name`."""
    h = h_rel * max(abs(p[name]), 1.0)

    def at(step):
        q = dict(p)
        q[name] = p[name] + step * h
        return np.asarray(f(q))

    return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)


def reference_fisher(case_id, fid):
    """The textbook Fisher matrix, independent of the library (see the module docstring)."""
    case = NOISE_CASES[case_id]
    names = list(fid)
    J = np.stack(
        [fd_derivative(lambda q: numpy_model(case, q).reshape(-1), fid, n) for n in names], axis=1
    )
    other = _textbook_other(case_id, case, fid, J)
    if other is not None:
        return other
    s = fid.get("s", 0.5)
    if case_id.startswith("gaussian-sigma"):

        def cov(q):
            return q.get("s", 0.5) ** 2 * np.eye(T.size)
    else:

        def cov(q):
            return q.get("s", 0.5) ** 2 * KERNEL

    C = cov(fid)
    Ci = np.linalg.inv(C)
    F = J.T @ Ci @ J
    if case.extra:
        dC = [fd_derivative(cov, fid, n) for n in names]
        F = F + 0.5 * np.array([[np.trace(Ci @ a @ Ci @ b) for b in dC] for a in dC])
    assert s > 0
    return F


def assert_fisher_close(actual, reference, rtol=1e-7):
    """Relative agreement, with an absolute floor for entries that vanish exactly (finite
    differences leave ~1e-11 of the largest entry there)."""
    actual, reference = np.asarray(actual), np.asarray(reference)
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=1e-9 * np.abs(reference).max())


def experiment(case_id):
    case = NOISE_CASES[case_id]
    return ff.Experiment(case.model, case.make(), design=case.data_design, name=case_id)


def fiducial(case_id):
    return {**FID, **NOISE_CASES[case_id].extra}


CASE_IDS = list(NOISE_CASES)


def capability(case_id, what):
    case = NOISE_CASES[case_id]
    noise = case.make()
    if what == "fixed":
        return noise.parameter_dependent is False
    if what == "dali":
        return noise.gaussian and noise.parameter_dependent is False
    if what == "covariance":
        with float64():
            return (
                not noise.parameter_dependent
                and noise.covariance(jnp.zeros(T.size), {}, case.data_design) is not None
            )
    if what == "expected_deviance":
        return noise.has_expected_deviance
    if what == "empirical":  # the terms ln p(d_k | d_<k) and simulated data
        with float64():
            shape = numpy_model(case, fiducial(case_id)).shape
            mean = jnp.ones(shape) * (0.3 + 0.3j if case.complex_output else 0.3)
            terms = noise.sequential_terms(mean, mean, fiducial(case_id), case.data_design)
        return terms is not None and type(noise).simulate is not ff.NoiseModel.simulate
    if what == "asimov_profile":
        # noise-free profiles need the expected deviance where the noise depends on θ
        return noise.has_expected_deviance or not case.extra
    raise AssertionError(what)


# ---------------------------------------------------------------------------------------
# Every noise model
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_contract_is_complete(case_id):
    noise = NOISE_CASES[case_id].make()
    assert isinstance(noise, ff.NoiseModel)
    leaves, tree = jax.tree_util.tree_flatten(noise)
    rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
    assert type(rebuilt) is type(noise)
    assert noise.parameter_dependent in (True, False, None)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_fisher_matches_textbook_information(case_id):
    fid = fiducial(case_id)
    F = ff.fisher(experiment(case_id), fid)
    assert_fisher_close(F.matrix, reference_fisher(case_id, fid))


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_batch_equals_single_evaluations(case_id):
    fid = fiducial(case_id)
    fids = {n: np.array([v, 1.1 * v, 0.9 * v]) for n, v in fid.items()}
    batch = ff.fisher_batch(experiment(case_id), fids, progress=False)
    for i in range(3):
        single = ff.fisher(experiment(case_id), {n: float(v[i]) for n, v in fids.items()})
        np.testing.assert_allclose(batch.matrices[i], single.matrix, rtol=1e-12)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_identifiability_sees_a_full_rank_model(case_id):
    fid = fiducial(case_id)
    report = ff.identifiability(experiment(case_id), fid, n_random=1)
    assert report.rank == len(fid)
    assert report.to_dict()["rank"] == len(fid)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if capability(c, "asimov_profile")])
def test_profile_has_its_minimum_at_the_fiducial(case_id):
    fid = fiducial(case_id)
    prof = ff.profile_likelihood(experiment(case_id), fid, "A", n_grid=7)
    assert prof.estimate == pytest.approx(fid["A"], rel=1e-6)
    assert np.min(prof.delta) == pytest.approx(0.0, abs=1e-8)
    assert np.all(np.asarray(prof.delta) >= -1e-8)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if capability(c, "fixed")])
def test_bias_of_a_model_shaped_shift_is_the_shift(case_id):
    """Δμ = J v moves the best fit by exactly v when F = Jᵀ W J (fixed noise)."""
    fid = fiducial(case_id)
    case = NOISE_CASES[case_id]
    v = {"A": 1e-3, "k": -2e-4, "s": 1e-4}
    shifted = {n: fid[n] + v[n] for n in fid}
    # J v by a central difference of the numpy model (linear in v to O(v³)).
    minus = {n: fid[n] - v[n] for n in fid}
    delta = 0.5 * (numpy_model(case, shifted) - numpy_model(case, minus))
    shift = ff.bias(experiment(case_id), fid, delta)
    for n in fid:
        assert shift[n] == pytest.approx(v[n], rel=1e-5)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if capability(c, "expected_deviance")])
def test_expected_deviance_curvature_is_the_fisher_matrix(case_id):
    """½ ∂²E₀[−2 ln L]/∂θ² at the fiducial is the Fisher matrix (the information identity)."""
    fid = fiducial(case_id)
    exp = experiment(case_id)
    names = list(fid)
    with float64():
        fid64 = {n: jnp.float64(v) for n, v in fid.items()}
        mean0 = exp(fid64)

        def deviance(theta):
            params = dict(zip(names, theta, strict=True))
            return exp.noise.expected_deviance(
                exp(params), mean0, params, fid64, NOISE_CASES[case_id].data_design
            )

        H = np.asarray(jax.hessian(deviance)(jnp.asarray([fid[n] for n in names])))
    assert_fisher_close(0.5 * H, reference_fisher(case_id, fid))


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_simulated_data_scatter_as_the_noise_model_says(case_id):
    fid = fiducial(case_id)
    exp = experiment(case_id)
    n = 4000
    with float64():
        params = {k: jnp.float64(v) for k, v in fid.items()}
        mean = exp(params)
        keys = jax.random.split(jax.random.PRNGKey(1), n)
        draws = np.asarray(
            jax.vmap(lambda k: exp.noise.simulate(k, mean, params, exp.design))(keys)
        )
    mean = np.asarray(mean)
    if case_id == "petab":  # h(m) ~ normal / Laplace around h(y): compare on that scale
        tr, dist = PETAB_DESIGN["transform"], PETAB_DESIGN["distribution"]

        def h(v):
            return np.where(tr == 0, v, np.where(tr == 1, np.log(v), np.log10(v)))

        assert np.all(draws[:, 1] == mean[1])  # the σ row is carried, not drawn
        draws, mean = h(draws[:, 0]), h(mean[0])
        var = np.where(dist == 0, 0.25, 2 * 0.25)
    elif case_id == "lognormal":  # ln y ~ N(ln μ, σ²): compare the logarithms
        draws, mean = np.log(draws), np.log(mean)
        var = np.full(T.size, 0.01)
    elif case_id == "laplace":
        var = np.full(T.size, 2 * 0.25)
    elif case_id == "likelihood-gumbel-quadrature":  # mean μ + γβ, variance π²β²/6
        mean = mean + 0.5772156649015329 * 0.5
        var = np.full(T.size, np.pi**2 / 6 * 0.25)
    elif case_id == "binomial":
        var = mean * (1 - mean) / 40.0
    elif "nb" in case_id or case_id == "negative-binomial":
        var = mean + mean**2 / (300.0 if case_id == "negative-binomial" else 30.0)
    elif case_id == "poisson":
        var = mean
    elif case_id == "psd":
        var = np.full(T.size, 2.0 / (4 * 0.5))  # per real and per imaginary part
        draws = draws.real  # the imaginary part is checked the same way below
    elif case_id.startswith("student-t"):
        var = np.full(T.size, 0.25 * 5.0 / 3.0)
    else:
        var = np.full(T.size, 0.25) if "cov" not in case_id else 0.25 * np.diag(KERNEL)
    mean_real = mean.real
    z = (draws.mean(axis=0) - mean_real) / np.sqrt(var / n)
    assert np.max(np.abs(z)) < 5.0
    ratio = draws.var(axis=0) / var
    assert np.all(np.abs(ratio - 1.0) < 0.12)


# The negative binomials' simulations are costly to compile; tests/test_likelihood.py checks
# their empirical (and observed) Fisher over simulated data (r a parameter).
EMPIRICAL_ELSEWHERE = ("negative-binomial", "likelihood-nb-dispersion")


@pytest.mark.parametrize(
    "case_id",
    [c for c in CASE_IDS if capability(c, "empirical") and c not in EMPIRICAL_ELSEWHERE],
)
def test_empirical_fisher_averages_to_the_expected(case_id):
    """Σ_k s_k s_kᵀ of the terms ln p(d_k | d_<k) (sequential_terms) over 300 simulated data
    sets averages to the textbook Fisher matrix (within 4.5 standard errors)."""
    from fisherforecast._fisher_kinds import data_information

    fid = fiducial(case_id)
    exp = experiment(case_id)
    names = tuple(fid)

    @jax.jit
    def run(params, key):
        mean = exp(params)
        keys = jax.random.split(key, 300)
        datas = jax.vmap(lambda k: exp.noise.simulate(k, mean, params, exp.design))(keys)
        return jax.vmap(lambda d: data_information(exp, params, names, d, "empirical"))(datas)

    with float64():
        Fs = np.asarray(run({k: jnp.float64(v) for k, v in fid.items()}, jax.random.PRNGKey(3)))
    ref = reference_fisher(case_id, fid)
    se = Fs.std(axis=0, ddof=1) / np.sqrt(len(Fs))
    d = np.sqrt(np.diag(ref))
    z = (Fs.mean(axis=0) - ref) / np.maximum(se, 1e-12 * np.outer(d, d))
    assert np.max(np.abs(z)) < 4.5, z


@pytest.mark.parametrize("case_id", NON_NEGATIVE)
def test_data_outside_the_support_are_refused_by_every_analysis(case_id):
    """A negative datum, which none of these noise models can produce, is named with its
    index by ff.fisher(kind="observed"), ff.profile_likelihood and ff.crosscheck."""
    fid = fiducial(case_id)
    exp = experiment(case_id)
    data = numpy_model(NOISE_CASES[case_id], fid)
    data = np.round(data) if case_id in NON_NEGATIVE[:3] else data
    data[4] = -3.0
    match = r"`data` .*outside the support.*-3\.0.*\(4,\)"
    with pytest.raises(ff.InputError, match=match):
        ff.fisher(exp, fid, kind="observed", data=data)
    with pytest.raises(ff.InputError, match=match):
        ff.profile_likelihood(exp, fid, "A", data=data)
    with pytest.raises(ff.InputError, match=match):
        ff.crosscheck(exp, fid, data=data)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if capability(c, "dali")])
def test_dali_fisher_term_equals_the_fisher_matrix(case_id):
    fid = fiducial(case_id)
    result = ff.dali(experiment(case_id), fid)
    assert_fisher_close(result.tensors["F"], reference_fisher(case_id, fid))


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if capability(c, "covariance")])
def test_joint_experiment_without_cross_covariance_adds_information(case_id):
    fid = fiducial(case_id)
    joint = ff.JointExperiment([experiment(case_id), experiment(case_id)])
    assert_fisher_close(ff.fisher(joint, fid).matrix, 2 * reference_fisher(case_id, fid))


def test_undeclared_dependence_is_tested_numerically():
    """A noise model that does not declare `parameter_dependent` and depends on a parameter
    is caught by the profile likelihood's numerical test."""

    class Scaled(StudentT):
        parameter_dependent = None

        def log_likelihood(self, data, mean, params, design):
            z = (jnp.asarray(data) - mean).reshape(-1) / params["s"]
            return jnp.sum(-3.0 * jnp.log1p(z**2 / 5.0)) - z.size * jnp.log(params["s"])

    exp = ff.Experiment(decay, Scaled(0.5, 5.0), design=T)
    with pytest.raises(ValueError, match="depends on the parameters"):
        ff.profile_likelihood(exp, {**FID, "s": 0.5}, "A")
