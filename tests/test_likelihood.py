"""ff.Likelihood and the ready-made likelihoods: expected Fisher information against
independent answers.

References, each computed here without the library:

* Gaussian / Poisson: the specialised noise models ``ff.Gaussian`` / ``ff.Poisson`` (the
  generic path must agree to 1e-10);
* negative binomial in ``μ``: ``r/(μ(μ + r))`` per datum; in ``r``: the direct sum
  ``ψ₁(r) − Σ_y P(y) ψ₁(y + r) − μ/(r(r + μ))`` over the scipy pmf (Lawless 1987);
* Student-t ``(ν, loc, s)``, Laplace, Cauchy, gamma: ``E[∂_a ln p ∂_b ln p]`` by adaptive
  quadrature (``scipy.integrate.quad``) of the analytic score against the scipy density;
* log-normal: the Gaussian Fisher of the log-model (``ff.Gaussian`` on ``ln μ(θ)``);
* binomial: ``n/(p(1 − p))`` per datum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import integrate, special, stats

import fisherforecast as ff
from fisherforecast._compile import compile_stats
from fisherforecast._information import lookup, nb_dispersion_information
from fisherforecast._x64 import float64

T = np.linspace(0.2, 3.0, 12)
FID = {"A": 20.0, "k": 0.7}


def decay(p, t):
    return p["A"] * jnp.exp(-p["k"] * t) + 5.0


def decay_np(p, t=T):
    return p["A"] * np.exp(-p["k"] * t) + 5.0


def jac_np(p, t=T):
    """Analytic Jacobian of decay (columns A, k)."""
    e = np.exp(-p["k"] * t)
    return np.stack([e, -p["A"] * t * e], axis=1)


def fisher(noise, fid=FID, **kw):
    return ff.fisher(ff.Experiment(decay, noise, design=T), fid, **kw)


# ---------------------------------------------------------------------------------------
# The generic path equals the specialised ones
# ---------------------------------------------------------------------------------------
def test_generic_normal_equals_gaussian():
    sig = np.linspace(0.3, 0.8, T.size)
    a = fisher(ff.Likelihood(lambda mu, p: dist.Normal(mu, jnp.asarray(sig)))).matrix
    b = fisher(ff.Gaussian(sigma=sig)).matrix
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=0)


def test_generic_normal_with_scale_parameter_equals_gaussian():
    fid = {**FID, "s": 0.5}
    a = fisher(ff.Likelihood(lambda mu, p: dist.Normal(mu, p["s"] * (1 + 0.1 * mu))), fid)
    b = fisher(ff.Gaussian(sigma=lambda p, t: p["s"] * (1 + 0.1 * decay(p, t))), fid)
    np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-10, atol=1e-12 * b.matrix.max())


def test_generic_poisson_equals_poisson():
    a = fisher(ff.Likelihood(lambda mu: dist.Poisson(mu))).matrix
    b = fisher(ff.Poisson()).matrix
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=0)


def test_generic_log_likelihood_equals_specialised():
    with float64():
        mean = decay({k: jnp.float64(v) for k, v in FID.items()}, T)
        counts = jnp.round(mean) + 1.0
        a = ff.Likelihood(lambda mu, p: dist.Poisson(mu)).log_likelihood(counts, mean, {}, T)
        b = ff.Poisson().log_likelihood(counts, mean, {}, T)
        c = ff.Likelihood(lambda mu, p: dist.Normal(mu, 0.5)).log_likelihood(counts, mean, {}, T)
        d = ff.Gaussian(sigma=0.5).log_likelihood(counts, mean, {}, T)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    assert float(c) == pytest.approx(float(d), rel=1e-12)


# ---------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["family", "generic"])
def test_negative_binomial_information_in_the_mean(noise):
    r = 3.0
    nb = (
        ff.NegativeBinomial(r)
        if noise == "family"
        else ff.Likelihood(lambda mu, p: dist.NegativeBinomial2(mu, r))
    )
    mu, J = decay_np(FID), jac_np(FID)
    ref = J.T @ (J * (r / (mu * (mu + r)))[:, None])
    np.testing.assert_allclose(fisher(nb).matrix, ref, rtol=1e-10)


def nb_rr_direct(mu, r):
    y = np.arange(0, int(mu + 60 * np.sqrt(mu + mu**2 / r)) + 200)
    pmf = stats.nbinom.pmf(y, r, r / (r + mu))
    return special.polygamma(1, r) - np.sum(pmf * special.polygamma(1, y + r)) - mu / (r * (r + mu))


@pytest.mark.parametrize("mu,r", [(0.2, 0.5), (4.0, 2.0), (60.0, 5.0), (800.0, 0.7), (3.0, 80.0)])
def test_negative_binomial_dispersion_information_is_the_direct_sum(mu, r):
    with float64():
        got = float(nb_dispersion_information(jnp.float64(mu), jnp.float64(r)))
    assert got == pytest.approx(nb_rr_direct(mu, r), rel=1e-8)


def test_negative_binomial_with_dispersion_parameter():
    """r a forecast parameter: μ-block r/(μ(μ+r)), r-block the direct sum, cross terms 0."""
    fid = {**FID, "r": 3.0}
    F = fisher(ff.Likelihood(lambda mu, p: dist.NegativeBinomial2(mu, p["r"])), fid).matrix
    G = fisher(ff.NegativeBinomial(lambda p: p["r"]), fid).matrix
    mu, J = decay_np(FID), jac_np(FID)
    ref = np.zeros((3, 3))
    ref[:2, :2] = J.T @ (J * (3.0 / (mu * (mu + 3.0)))[:, None])
    ref[2, 2] = sum(nb_rr_direct(m, 3.0) for m in mu)
    for M in (F, G):
        np.testing.assert_allclose(M, ref, rtol=1e-8, atol=1e-12)


def quad_information(logpdf_grad, pdf, lo=-np.inf, hi=np.inf):
    """E[g gᵀ] of the score vector g(y) by adaptive quadrature."""
    m = len(logpdf_grad(1.0))
    out = np.zeros((m, m))
    for a in range(m):
        for b in range(a, m):
            val = integrate.quad(
                lambda y, a=a, b=b: logpdf_grad(y)[a] * logpdf_grad(y)[b] * pdf(y),
                lo,
                hi,
                limit=400,
                epsabs=1e-13,
                epsrel=1e-11,
            )[0]
            out[a, b] = out[b, a] = val
    return out


def student_score(nu, m, s):
    def g(y):
        z = (y - m) / s
        q = 1 + z**2 / nu
        d_nu = 0.5 * (
            special.digamma((nu + 1) / 2) - special.digamma(nu / 2) - 1 / nu - np.log(q)
        ) + 0.5 * (nu + 1) * z**2 / (nu**2 * q)
        d_m = (nu + 1) * z / (nu * s * q)
        d_s = -1 / s + (nu + 1) * z**2 / (nu * s * q)
        return np.array([d_nu, d_m, d_s])

    return g


@pytest.mark.parametrize("nu,s", [(5.0, 0.5), (2.5, 2.0)])
def test_student_t_information_matches_quadrature(nu, s):
    ref = quad_information(student_score(nu, 0.0, s), lambda y: stats.t.pdf(y, nu, 0.0, s))
    assert ref[1, 1] == pytest.approx((nu + 1) / ((nu + 3) * s**2), rel=1e-9)  # textbook
    with float64():
        d = dist.StudentT(jnp.full(1, nu), jnp.zeros(1), jnp.full(1, s))
        entry = lookup(d)
        assert entry is not None
        info = entry.matrix(entry.extract(d))
        got = np.array(
            [[float(np.asarray(info[a][b]).reshape(-1)[0]) for b in range(3)] for a in range(3)]
        )
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)


def test_student_t_location_fisher():
    nu, s = 4.0, 0.3
    F = fisher(ff.StudentT(scale=s, df=nu)).matrix
    J = jac_np(FID)
    np.testing.assert_allclose(F, (nu + 1) / ((nu + 3) * s**2) * J.T @ J, rtol=1e-10)


@pytest.mark.parametrize(
    "make,score,pdf",
    [
        (
            lambda: dist.Laplace(jnp.zeros(1), jnp.full(1, 0.7)),
            lambda y: np.array([np.sign(y) / 0.7, -1 / 0.7 + abs(y) / 0.49]),
            lambda y: stats.laplace.pdf(y, 0, 0.7),
        ),
        (
            lambda: dist.Cauchy(jnp.zeros(1), jnp.full(1, 1.3)),
            lambda y: np.array(
                [2 * y / (1.69 + y**2), -1 / 1.3 + 2 * y**2 / (1.3 * (1.69 + y**2))]
            ),
            lambda y: stats.cauchy.pdf(y, 0, 1.3),
        ),
    ],
    ids=["laplace", "cauchy"],
)
def test_location_scale_information_matches_quadrature(make, score, pdf):
    ref = quad_information(score, pdf)
    with float64():
        d = make()
        entry = lookup(d)
        assert entry is not None
        info = entry.matrix(entry.extract(d))
        got = np.array(
            [[float(np.asarray(info[a][b]).reshape(-1)[0]) for b in range(2)] for a in range(2)]
        )
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-10)


def test_gamma_information_matches_quadrature():
    a, b = 2.5, 1.5
    score = lambda y: np.array([np.log(b) - special.digamma(a) + np.log(y), a / b - y])  # noqa: E731
    ref = quad_information(score, lambda y: stats.gamma.pdf(y, a, scale=1 / b), 0.0, np.inf)
    with float64():
        d = dist.Gamma(jnp.full(1, a), jnp.full(1, b))
        entry = lookup(d)
        assert entry is not None
        info = entry.matrix(entry.extract(d))
        got = np.array(
            [[float(np.asarray(info[i][j]).reshape(-1)[0]) for j in range(2)] for i in range(2)]
        )
    np.testing.assert_allclose(got, ref, rtol=1e-8)


@pytest.mark.parametrize("log10", [False, True])
def test_lognormal_fisher_is_the_gaussian_fisher_of_the_log_model(log10):
    fid = {**FID, "s": 0.1}
    fam = ff.Log10Normal if log10 else ff.LogNormal
    log = jnp.log10 if log10 else jnp.log
    a = ff.fisher(ff.Experiment(decay, fam(lambda p: p["s"]), design=T), fid).matrix
    log_model = ff.Experiment(
        lambda p, t: log(decay(p, t)),
        ff.Gaussian(sigma=lambda p: p["s"] * jnp.ones(T.size)),
        design=T,
    )
    b = ff.fisher(log_model, fid).matrix
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(b).max())


def test_binomial_information_in_p():
    n = np.arange(5, 5 + T.size)
    exp = ff.Experiment(lambda p, t: p["a"] * jnp.exp(-t), ff.Binomial(n), design=T)
    p = 0.6 * np.exp(-T)
    F = ff.fisher(exp, {"a": 0.6}).matrix
    assert F[0, 0] == pytest.approx(np.sum(np.exp(-T) ** 2 * n / (p * (1 - p))), rel=1e-12)


# ---------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------
def normal_with_scale(mu, p):
    return dist.Normal(mu, p["s"] * (1.0 + 0.05 * mu))


def test_monte_carlo_fisher_lies_within_its_reported_error():
    """Normal with a scale that depends on μ and on a forecast parameter s: every block
    (mean, scale, and their cross terms) is nonzero; the closed form is the reference."""
    fid = {**FID, "s": 0.5}
    mc = fisher(ff.Likelihood(normal_with_scale, information="monte-carlo", n_samples=1000), fid)
    exact = fisher(ff.Likelihood(normal_with_scale), fid).matrix
    se = np.asarray(mc.metadata["fisher_standard_error"])
    assert "Monte Carlo, 1000 draws" in mc.metadata["information"]
    assert np.all(se > 0) and np.all(se < 0.1 * np.sqrt(np.outer(np.diag(exact), np.diag(exact))))
    z = (mc.matrix - exact) / se
    assert np.max(np.abs(z)) < 4.0, z
    assert "fisher_standard_error" not in fisher(ff.Likelihood(normal_with_scale), fid).metadata


@pytest.mark.slow
def test_monte_carlo_standard_error_is_the_scatter_over_seeds():
    """The reported SE agrees with the spread of independent estimates (chi-square), and
    the seeds share one compiled kernel (the seed is a pytree leaf)."""
    fid = {**FID, "s": 0.5}
    exact = fisher(ff.Likelihood(normal_with_scale), fid).matrix
    values, ses = [], []
    for seed in range(4):
        noise = ff.Likelihood(
            normal_with_scale, information="monte-carlo", n_samples=300, seed=seed
        )
        F = fisher(noise, fid)
        values.append(np.diag(F.matrix))
        ses.append(np.diag(F.metadata["fisher_standard_error"]))
        if seed == 0:
            before = compile_stats()["lowerings"]
    assert compile_stats()["lowerings"] == before
    chi2 = np.sum(((np.array(values) - np.diag(exact)) / np.array(ses)) ** 2)
    dof = np.size(values)
    assert stats.chi2.sf(chi2, dof) > 1e-3 and stats.chi2.cdf(chi2, dof) > 1e-3, chi2


# ---------------------------------------------------------------------------------------
# Quadrature (double-exponential in the probability variable, through the icdf)
# ---------------------------------------------------------------------------------------
def scale_with_mean(family):
    return lambda mu, p: family(mu, p["s"] * (1.0 + 0.05 * mu))


@pytest.mark.parametrize(
    "family", [dist.Normal, dist.Laplace, dist.Cauchy], ids=lambda f: f.__name__
)
def test_forced_quadrature_equals_the_closed_form(family):
    """Every block nonzero (the scale depends on μ and on s); Laplace has its kink at the
    median, which the rule keeps on an end point of its two halves."""
    fid = {**FID, "s": 0.5}
    exact = fisher(ff.Likelihood(scale_with_mean(family)), fid)
    quad = fisher(ff.Likelihood(scale_with_mean(family), information="quadrature"), fid)
    assert "fisher_standard_error" not in exact.metadata
    assert quad.metadata["information"].startswith("quadrature, ")
    err = np.asarray(quad.metadata["fisher_standard_error"])
    scale = np.sqrt(np.outer(np.diag(exact.matrix), np.diag(exact.matrix)))
    np.testing.assert_allclose(quad.matrix, exact.matrix, rtol=0, atol=1e-11 * scale.max())
    assert np.all(np.abs(quad.matrix - exact.matrix) <= err + 1e-13 * scale)
    assert np.all(err < 1e-5 * scale)


def gumbel_unit_information():
    """E[g gᵀ] of the Gumbel (loc, scale) score at loc 0, scale 1, by scipy quadrature."""

    def score(y):
        e = np.exp(-y)
        return np.array([1.0 - e, -1.0 + y * (1.0 - e)])

    # the density is below 1e-60 outside [-5, 150]; e^{-y} overflows further left
    info = quad_information(score, lambda y: stats.gumbel_r.pdf(y), -5.0, 150.0)
    euler = 0.5772156649015329  # textbook: I_ss = π²/6 + (1 − γ)², I_μs = −(1 − γ)
    assert info[0, 0] == pytest.approx(1.0, rel=1e-10)
    assert info[1, 1] == pytest.approx(np.pi**2 / 6 + (1 - euler) ** 2, rel=1e-10)
    assert info[0, 1] == pytest.approx(-(1 - euler), rel=1e-10)
    return info


def test_gumbel_quadrature_matches_scipy():
    """No closed form: "auto" integrates; the reference contracts the per-datum information
    of scipy's quadrature with the analytic chain rule (loc = μ, scale = s(1 + 0.05 μ))."""
    fid = {**FID, "s": 0.5}
    F = fisher(ff.Likelihood(scale_with_mean(dist.Gumbel)), fid)
    assert F.metadata["information"] == "quadrature, 123 nodes per datum"
    unit = gumbel_unit_information()
    mu, J = decay_np(FID), jac_np(FID)
    ref = np.zeros((3, 3))
    for k in range(T.size):
        b = fid["s"] * (1.0 + 0.05 * mu[k])
        G = np.zeros((2, 3))  # ∂(loc, scale)/∂(A, k, s)
        G[0, :2] = J[k]
        G[1, :2] = fid["s"] * 0.05 * J[k]
        G[1, 2] = 1.0 + 0.05 * mu[k]
        ref += G.T @ (unit / b**2) @ G
    np.testing.assert_allclose(F.matrix, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    assert np.max(np.asarray(F.metadata["fisher_standard_error"])) < 1e-6 * np.abs(ref).max()


def test_quadrature_of_a_transformed_normal_is_the_lognormal_closed_form():
    """exp(N(ln μ, σ)) as a TransformedDistribution (no closed form registered) against the
    LogNormal one: the Gaussian Fisher of the log-model."""
    import numpyro.distributions.transforms as tr

    def transformed(mu, p):
        return dist.TransformedDistribution(dist.Normal(jnp.log(mu), p["s"]), tr.ExpTransform())

    fid = {**FID, "s": 0.2}
    F = fisher(ff.Likelihood(transformed), fid)
    assert F.metadata["information"].startswith("quadrature")
    ref = fisher(ff.LogNormal(lambda p: p["s"]), fid).matrix
    np.testing.assert_allclose(F.matrix, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_quadrature_of_a_truncated_normal_matches_scipy():
    """Normal(μ, 1) truncated at 0: score (y − μ) − φ(μ)/Φ(μ), integrated by scipy against
    the truncated density."""
    mu = np.array([0.5, 1.5, -0.3])
    exp = ff.Experiment(
        lambda p: p["m"] * jnp.asarray(mu),
        ff.Likelihood(lambda m: dist.TruncatedNormal(m, 1.0, low=0.0)),
    )
    F = ff.fisher(exp, {"m": 1.0})
    assert F.metadata["information"].startswith("quadrature")
    ref = 0.0
    for m in mu:
        h = stats.norm.pdf(m) / stats.norm.cdf(m)
        ref += (
            m**2
            * integrate.quad(
                lambda y, m=m, h=h: ((y - m) - h) ** 2 * stats.norm.pdf(y - m) / stats.norm.cdf(m),
                0.0,
                np.inf,
                epsabs=1e-14,
                epsrel=1e-12,
            )[0]
        )
    assert F.matrix[0, 0] == pytest.approx(ref, rel=1e-10)


def test_quadrature_is_cheaper_and_closer_than_monte_carlo():
    """At the default settings the quadrature error is ~1e-13 while Monte Carlo's standard
    error is percent-level (same Gumbel model, s a parameter)."""
    fid = {**FID, "s": 0.5}
    quad = fisher(ff.Likelihood(scale_with_mean(dist.Gumbel)), fid)
    mc = fisher(ff.Likelihood(scale_with_mean(dist.Gumbel), information="monte-carlo"), fid)
    se = np.asarray(mc.metadata["fisher_standard_error"])
    z = (mc.matrix - quad.matrix) / se
    assert np.max(np.abs(z)) < 4.5, z
    assert np.max(np.asarray(quad.metadata["fisher_standard_error"])) < 1e-4 * np.min(np.diag(se))


def test_quadrature_warns_where_the_score_jumps():
    """Asymmetric Laplace: the location score jumps at the mode, away from the median, so the
    rule converges slowly. Exact information 1/b² (the score is k/b above the mode, with
    probability 1/(1 + k²), and −1/(kb) below); the error estimate covers the error, and
    ff.fisher warns."""
    b, k = 1.0, 2.0
    noise = ff.Likelihood(lambda mu: dist.AsymmetricLaplace(mu, b, k))
    exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(1), noise)
    with pytest.warns(UserWarning, match="relative error estimate of 0.09"):
        F = ff.fisher(exp, {"mu": 0.0})
    err = F.metadata["fisher_standard_error"][0][0]
    assert 0.01 < abs(F.matrix[0, 0] - 1.0 / b**2) < err


class ShiftedNormal(dist.Normal):
    """Overrides log_prob but inherits Normal's icdf: not its quantile function."""

    def log_prob(self, value):
        return super().log_prob(value - 1.0)


def test_quadrature_refuses_where_it_does_not_apply():
    with pytest.raises(ff.InputError, match=r"quadrature.*does not apply.*Poisson is discrete"):
        fisher(ff.Likelihood(lambda mu: dist.Poisson(mu), information="quadrature"))
    with pytest.raises(ff.InputError, match=r"no inverse cdf \(icdf\) for Weibull"):
        fisher(ff.Likelihood(lambda mu: dist.Weibull(mu, 2.0), information="quadrature"))
    with pytest.raises(ff.InputError, match="overrides log_prob"):
        fisher(ff.Likelihood(lambda mu: ShiftedNormal(mu, 1.0), information="quadrature"))
    # "auto" falls back to Monte Carlo where quadrature does not apply
    for fn in (lambda mu: dist.Weibull(mu, 2.0), lambda mu: ShiftedNormal(mu, 1.0)):
        F = fisher(ff.Likelihood(fn, n_samples=50))
        assert F.metadata["information"].startswith("Monte Carlo, 50 draws")


def test_quadrature_does_not_recompile():
    noise = ff.Likelihood(scale_with_mean(dist.Gumbel))
    fisher(noise, {**FID, "s": 0.5})
    before = compile_stats()["lowerings"]
    for s in (0.4, 0.6):
        fisher(ff.Likelihood(noise.dist_fn), {**FID, "s": s})
    assert compile_stats()["lowerings"] == before


# ---------------------------------------------------------------------------------------
# Observed and empirical Fisher
# ---------------------------------------------------------------------------------------
def simulated_information(exp, fid, kind, n, seed=0):
    from fisherforecast._fisher_kinds import data_information

    names = tuple(fid)

    @jax.jit
    def run(f64, key):
        mean = exp(f64)
        keys = jax.random.split(key, n)
        datas = jax.vmap(lambda k: exp.noise.simulate(k, mean, f64, exp.design))(keys)
        return jax.vmap(lambda d: data_information(exp, f64, names, d, kind))(datas)

    with float64():
        f64 = {k: jnp.float64(v) for k, v in fid.items()}
        return np.asarray(run(f64, jax.random.PRNGKey(seed)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["observed", "empirical"])
@pytest.mark.parametrize(
    "noise,extra",
    [
        (lambda: ff.NegativeBinomial(lambda p: p["r"]), {"r": 3.0}),
        (lambda: ff.StudentT(lambda p: p["s"], 4.0), {"s": 0.5}),
        (lambda: ff.LogNormal(lambda p: p["s"]), {"s": 0.2}),
    ],
    ids=["nb", "student-t", "lognormal"],
)
def test_observed_and_empirical_average_to_the_expected(kind, noise, extra):
    fid = {**FID, **extra}
    exp = ff.Experiment(decay, noise(), design=T)
    expected = ff.fisher(exp, fid).matrix
    Fs = simulated_information(exp, fid, kind, 800)
    mean, se = Fs.mean(axis=0), Fs.std(axis=0, ddof=1) / np.sqrt(len(Fs))
    z = (mean - expected) / np.where(se > 0, se, 1.0)
    assert np.max(np.abs(z)) < 4.5, z


def test_observed_and_empirical_average_to_the_expected_fast():
    """One case of the slow test above, always run: NB with r a parameter, 400 data sets."""
    fid = {**FID, "r": 3.0}
    exp = ff.Experiment(decay, ff.NegativeBinomial(lambda p: p["r"]), design=T)
    expected = ff.fisher(exp, fid).matrix
    for kind in ("observed", "empirical"):
        Fs = simulated_information(exp, fid, kind, 400, seed=5)
        se = Fs.std(axis=0, ddof=1) / np.sqrt(len(Fs))
        z = (Fs.mean(axis=0) - expected) / np.where(se > 0, se, 1.0)
        assert np.max(np.abs(z)) < 4.5, (kind, z)


KERNEL = 0.04 * (np.eye(T.size) + np.exp(-np.abs(T[:, None] - T[None, :]) / 0.5))


def test_empirical_fisher_of_correlated_gaussian_data():
    """Fixed covariance C = L Lᵀ: Σ_k z_k² a_k a_kᵀ with z = L⁻¹(d − μ), a = L⁻¹J (numpy);
    a diagonal covariance gives the per-datum empirical Fisher of ff.Gaussian(sigma=...)."""
    rng = np.random.default_rng(7)
    data = decay_np(FID) + rng.normal(0.0, 0.3, T.size)
    F = ff.fisher(
        ff.Experiment(decay, ff.Gaussian(cov=KERNEL), design=T), FID, kind="empirical", data=data
    ).matrix
    L = np.linalg.cholesky(KERNEL)
    z = np.linalg.solve(L, data - decay_np(FID))
    a = np.linalg.solve(L, jac_np(FID))
    np.testing.assert_allclose(F, a.T @ (z[:, None] ** 2 * a), rtol=1e-10)
    sig = np.linspace(0.2, 0.5, T.size)
    diag = ff.Experiment(decay, ff.Gaussian(cov=np.diag(sig**2)), design=T)
    per_datum = ff.Experiment(decay, ff.Gaussian(sigma=sig), design=T)
    np.testing.assert_allclose(
        ff.fisher(diag, FID, kind="empirical", data=data).matrix,
        ff.fisher(per_datum, FID, kind="empirical", data=data).matrix,
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "noise", [ff.Gaussian(sigma=0.3), ff.Likelihood(lambda mu: dist.Normal(mu, 0.3))]
)
def test_linear_gaussian_observed_equals_expected_at_any_data(noise):
    exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t + p["c"] * t**2, noise, design=T)
    fid = {"a": 1.0, "b": -2.0, "c": 0.5}
    expected = ff.fisher(exp, fid).matrix
    rng = np.random.default_rng(3)
    for _ in range(3):
        data = rng.normal(0.0, 5.0, T.size)
        observed = ff.fisher(exp, fid, kind="observed", data=data)
        np.testing.assert_allclose(observed.matrix, expected, rtol=1e-12)
        assert observed.metadata["kind"] == "observed"


def test_empirical_of_one_datum_is_its_score_squared():
    """Poisson, one datum y at rate λ = a: score y/a − 1, empirical = (y/a − 1)²."""
    exp = ff.Experiment(lambda p: p["a"] * jnp.ones(1), ff.Poisson())
    F = ff.fisher(exp, {"a": 2.0}, kind="empirical", data=np.array([5.0]))
    assert F.matrix[0, 0] == pytest.approx((5.0 / 2.0 - 1.0) ** 2, rel=1e-12)
    O = ff.fisher(exp, {"a": 2.0}, kind="observed", data=np.array([5.0]))
    assert O.matrix[0, 0] == pytest.approx(5.0 / 4.0, rel=1e-12)  # y/a²


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------
def nb_exp():
    return ff.Experiment(decay, ff.NegativeBinomial(3.0), design=T)


def test_data_outside_the_support_is_refused():
    data = np.round(decay_np(FID))
    data[3] = -2.0
    with pytest.raises(ff.InputError, match=r"outside the support.*-2\.0.*\(3,\)"):
        ff.fisher(nb_exp(), FID, kind="observed", data=data)
    pois = ff.Experiment(decay, ff.Poisson(), design=T)
    with pytest.raises(ff.InputError, match=r"outside the support.*2\.5"):
        ff.fisher(pois, FID, kind="empirical", data=np.full(T.size, 2.5))
    binom = ff.Experiment(lambda p, t: p["a"] * jnp.exp(-t), ff.Binomial(10), design=T)
    with pytest.raises(ff.InputError, match="fractions k/n"):
        ff.fisher(binom, {"a": 0.5}, kind="observed", data=np.full(T.size, 0.33))


def test_profile_and_crosscheck_refuse_data_outside_the_support():
    """The support check of ff.fisher(kind=..., data=...) guards every analysis that takes
    user data: it names the argument and quotes the values and their indices."""
    counts = np.round(decay_np(FID))
    counts[3] = -2.0
    with pytest.raises(ff.InputError, match=r"`data` .*outside the support.*-2\.0.*\(3,\)"):
        ff.profile_likelihood(nb_exp(), FID, "A", data=counts)
    with pytest.raises(ff.InputError, match=r"`data` .*outside the support.*-2\.0.*\(3,\)"):
        ff.crosscheck(nb_exp(), FID, data=counts)
    pois = ff.Experiment(decay, ff.Likelihood(lambda mu: dist.Poisson(mu)), design=T)
    fractional = np.round(decay_np(FID)) + 0.5
    with pytest.raises(ff.InputError, match=r"outside the support.*12 values"):
        ff.crosscheck(pois, FID, data=fractional)
    binom = ff.Experiment(lambda p, t: p["a"] * jnp.exp(-t), ff.Binomial(10), design=T)
    fractions = np.round(10 * 0.5 * np.exp(-T)) / 10
    fractions[0] = 1.2
    with pytest.raises(ff.InputError, match=r"outside the support.*\[1\.2\] at index \[\(0,\)\]"):
        ff.profile_likelihood(binom, {"a": 0.5}, "a", data=fractions)
    logn = ff.Experiment(decay, ff.LogNormal(0.1), design=T)
    positive = decay_np(FID)
    positive[[2, 5]] = [0.0, -1.0]
    with pytest.raises(
        ff.InputError, match=r"`data\[1\]` .*\[0\.0, -1\.0\] at index \[\(2,\), \(5,\)\]"
    ):
        ff.profile_likelihood([nb_exp(), logn], FID, "A", data=[np.round(decay_np(FID)), positive])
    with pytest.raises(ff.InputError, match=r"`data\[1\]` .*outside the support"):
        ff.fisher([nb_exp(), logn], FID, kind="observed", data=[np.round(decay_np(FID)), positive])
    # a second call compiles nothing new
    before = compile_stats()["lowerings"]
    counts[7] = -1.0
    with pytest.raises(ff.InputError, match=r"-2\.0, -1\.0\] at index \[\(3,\), \(7,\)\]"):
        ff.profile_likelihood(nb_exp(), FID, "A", data=counts)
    assert compile_stats()["lowerings"] == before
    # data inside the support pass the check unchanged
    from fisherforecast._fisher_kinds import checked_data

    good = [np.round(decay_np(FID)), decay_np(FID)]
    out = checked_data(good, [nb_exp(), logn], good, FID)
    assert all(np.array_equal(a, b) for a, b in zip(out, good, strict=True))


def test_kind_and_data_are_checked():
    with pytest.raises(ff.InputError, match="kind"):
        ff.fisher(nb_exp(), FID, kind="posterior")
    with pytest.raises(ff.InputError, match="pass data="):
        ff.fisher(nb_exp(), FID, kind="observed")
    with pytest.raises(ff.InputError, match="`data` is used by"):
        ff.fisher(nb_exp(), FID, data=np.ones(T.size))
    with pytest.raises(ff.InputError, match="shape"):
        ff.fisher(nb_exp(), FID, kind="observed", data=np.ones(3))
    no_terms = ff.Experiment(decay, TotalOnly(), design=T)
    with pytest.raises(ff.InputError, match=r"ln p\(d_k \| d_<k\).*TotalOnly.*kind='observed'"):
        ff.fisher(no_terms, FID, kind="empirical", data=decay_np(FID))


class TotalOnly(ff.NoiseModel):
    """Unit Gaussian noise that defines only the total log-likelihood (no terms)."""

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls()

    def __repr__(self):
        return "TotalOnly()"

    def inner(self, a, b, mean, params, design):
        return a.T @ b

    def log_likelihood(self, data, mean, params, design):
        return -0.5 * jnp.sum((data - mean) ** 2)


def test_observed_far_from_the_best_fit_says_so():
    data = np.round(decay_np({"A": 60.0, "k": 0.1}))
    with pytest.raises(ff.FisherError, match="maximum-likelihood estimate"):
        ff.fisher(nb_exp(), FID, kind="observed", data=data)


def test_wrong_batch_shape_event_shape_and_non_distribution():
    cases = [
        (lambda mu, p: dist.Normal(jnp.sum(mu), 1.0), "batch shape"),
        (lambda mu, p: dist.Normal(mu, 1.0).to_event(1), "event shape"),
        (lambda mu, p: mu, "not a numpyro distribution"),
    ]
    for fn, match in cases:
        with pytest.raises(ff.InputError, match=match):
            fisher(ff.Likelihood(fn))
    with pytest.raises(ff.InputError, match="dist_fn must take"):
        ff.Likelihood(lambda a, b, c: None)
    with pytest.raises(ff.InputError, match="information"):
        ff.Likelihood(lambda mu: dist.Normal(mu, 1.0), information="exact")


def test_invalid_distribution_parameters_are_named():
    noise = ff.Likelihood(lambda mu, p: dist.Normal(mu, p["s"]))
    with pytest.raises(ff.InputError, match="arg_constraints"):
        fisher(noise, {**FID, "s": -0.5})
    with pytest.raises(ff.InputError, match="arg_constraints"):
        fisher(ff.Likelihood(lambda mu: dist.Normal(mu, -1.0)))
    with pytest.raises(ff.InputError, match=r"Fisher information .* in the prediction"):
        fisher(ff.Likelihood(lambda mu: dist.Normal(mu, 1e-200)))  # 1/s² overflows


class NaNNormal(dist.Normal):
    """A distribution whose log-density is NaN (no closed form: Monte Carlo path)."""

    def log_prob(self, value):
        return jnp.full(jnp.shape(value), jnp.nan)


def test_non_finite_log_prob_is_reported():
    noise = ff.Likelihood(lambda mu: NaNNormal(mu, 1.0))
    with pytest.raises(ff.InputError, match="Fisher information"):
        fisher(noise)
    with pytest.raises(ff.NonFiniteError, match=r"log-likelihood .* NaN/inf"):
        fisher(noise, kind="observed", data=decay_np(FID))
    with pytest.raises(ff.InputError, match="no closed-form"):
        fisher(ff.Likelihood(lambda mu: NaNNormal(mu, 1.0), information="closed-form"))


def test_settings_are_checked():
    with pytest.raises(ff.InputError, match="sigma must be positive"):
        ff.LogNormal(-1.0)
    with pytest.raises(ff.InputError, match="whole numbers"):
        ff.Binomial(2.5)


# ---------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------
def test_repeated_calls_do_not_recompile():
    exp = ff.Experiment(decay, ff.NegativeBinomial(lambda p: p["r"]), design=T)
    fid = {**FID, "r": 3.0}
    data = np.round(decay_np(FID))
    ff.fisher(exp, fid)
    ff.fisher(exp, fid, kind="observed", data=data)
    ff.fisher(exp, fid, kind="empirical", data=data)
    before = compile_stats()["lowerings"]
    for scale in (1.1, 0.9):
        f2 = {**fid, "A": 20.0 * scale}
        ff.fisher(exp, f2)
        ff.fisher(exp, f2, kind="observed", data=data)
        ff.fisher(exp, f2, kind="empirical", data=data + 1.0)
    assert compile_stats()["lowerings"] == before


def test_pytree_round_trip_keeps_settings():
    for noise in (ff.NegativeBinomial(lambda p: p["r"]), ff.StudentT(0.5, 4.0), ff.Binomial(7)):
        leaves, tree = jax.tree_util.tree_flatten(noise)
        rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
        assert repr(rebuilt) == repr(noise)
        assert rebuilt.parameter_dependent == noise.parameter_dependent


def test_observed_dispersion_information_where_betaln_fails():
    """NB2 at y + 1 = r (jax-ml/jax#34353: betaln's Hessian is wrong at equal arguments):
    −∂²ln p/∂r² = ψ₁(r) − ψ₁(y + r) − 1/r + 1/(r + μ) + (μ − y)/(r + μ)²."""
    mu, r, y = 3.0, 3.0, 2.0
    exp = ff.Experiment(lambda p: p["mu"] * jnp.ones(1), ff.NegativeBinomial(lambda p: p["r"]))
    F = ff.fisher(exp, {"mu": mu, "r": r}, kind="observed", data=np.array([y]))
    ref = (
        special.polygamma(1, r)
        - special.polygamma(1, y + r)
        - 1 / r
        + 1 / (r + mu)
        + (mu - y) / (r + mu) ** 2
    )
    assert F.matrix[1, 1] == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Analyses beyond the Fisher matrix (the contract matrix covers fisher_batch,
# identifiability and profiles)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_coverage_of_a_negative_binomial_forecast_with_dispersion():
    """Simulated NB data (r a parameter), batched ML fits: the scatter of the estimates is the
    Fisher σ (Cramér–Rao, asymptotically; 48 counts of mean 7-25 are close to it)."""
    t = np.repeat(T, 4)
    exp = ff.Experiment(decay, ff.NegativeBinomial(lambda p: p["r"]), design=t)
    cov = ff.coverage(exp, {**FID, "r": 3.0}, n_sims=150, seed=1)
    for n in ("A", "k"):
        assert abs(cov.scatter_ratio[n] - 1.0) < 4 * cov.scatter_error + 0.05, cov.summary()


def test_design_selection_uses_the_likelihood_information():
    """Choosing 3 of the candidate times for a Student-t model picks the same points as the
    Gaussian model with the same per-datum weight (ν+1)/((ν+3)s²) — a constant factor."""
    cand = np.linspace(0.1, 6.0, 25)
    st = ff.Experiment(decay, ff.StudentT(0.5, 4.0), design=cand)
    g = ff.Experiment(decay, ff.Gaussian(sigma=0.5 * np.sqrt(7.0 / 5.0)), design=cand)
    a = ff.select_measurements(st, FID, cand, 3)
    b = ff.select_measurements(g, FID, cand, 3)
    assert sorted(np.asarray(a.indices).tolist()) == sorted(np.asarray(b.indices).tolist())
    np.testing.assert_allclose(a.fisher.matrix, b.fisher.matrix, rtol=1e-10)


EULER_GAMMA = 0.5772156649015329


def design_reference(weight):
    """The D-optimal pair of times in [0, 6] for μ(t) = A e^{−kt} + 2 with per-datum
    information weight(μ), in numpy: a 0.005 grid, refined by scipy (scalar in t₂ with t₁
    on the bound 0, where the grid puts it)."""
    from scipy.optimize import minimize_scalar

    A, k = 20.0, 0.7

    def logdet(t1, t2):
        J = np.stack(
            [
                np.exp(-k * np.asarray([t1, t2])),
                -A * np.asarray([t1, t2]) * np.exp(-k * np.asarray([t1, t2])),
            ],
            axis=-1,
        )
        w = weight(A * np.exp(-k * np.asarray([t1, t2])) + 2.0)
        return np.linalg.slogdet(J.T @ (w[:, None] * J))[1]

    g = np.linspace(0.0, 6.0, 1201)
    values = np.array([[logdet(a, b) if b > a else -np.inf for b in g] for a in g[:40]])
    i, j = np.unravel_index(np.argmax(values), values.shape)
    assert g[i] == 0.0  # one time on the lower bound
    best = minimize_scalar(
        lambda t: -logdet(0.0, t),
        bounds=(g[j] - 0.01, g[j] + 0.01),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return np.array([0.0, best.x]), -best.fun


GUMBEL_UNIT = np.array(
    [[1.0, -(1 - EULER_GAMMA)], [-(1 - EULER_GAMMA), np.pi**2 / 6 + (1 - EULER_GAMMA) ** 2]]
)


def gumbel_weight(m):
    """Per-datum information of Gumbel(μ, 0.1 μ) in μ: vᵀ I v / (0.1 μ)², v = (1, 0.1)."""
    v = np.array([1.0, 0.1])
    return (v @ GUMBEL_UNIT @ v) / (0.1 * m) ** 2


def test_continuous_design_with_a_likelihood():
    """optimize_design through a Likelihood (negative-binomial counts, r = 2): the optimum
    and its log det F against a numpy grid of the D-criterion from the closed-form per-datum
    information r/(μ(μ + r)). The optimum differs from the Poisson one (t₂ = 2.175), so the
    noise model's information matters. (The design gradient of a quadrature Likelihood is
    tested against finite differences below.)"""
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t) + 2.0,
        ff.Likelihood(lambda mu: dist.NegativeBinomial2(mu, 2.0)),
        design=jnp.array([1.0, 4.0]),
    )
    res = ff.optimize_design(exp, {"A": 20.0, "k": 0.7}, bounds=(0.0, 6.0), n_starts=2, n_polish=1)
    t_ref, logdet_ref = design_reference(lambda m: 2.0 / (m * (m + 2.0)))
    assert abs(t_ref[1] - 2.175) > 0.3
    np.testing.assert_allclose(np.sort(res.design), t_ref, atol=2e-4)
    assert res.criterion_value == pytest.approx(logdet_ref, abs=1e-8)


def test_design_gradient_of_a_quadrature_fisher_matrix():
    """The quadrature nodes F⁻¹(u) move with the parameters (no stop_gradient), so the
    design gradient of log det F is that of the exact information: against a central
    difference of the closed-form numpy log det (Gumbel(μ, 0.1 μ), no closed form in the
    library)."""
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t) + 2.0,
        ff.Likelihood(lambda mu: dist.Gumbel(mu, 0.1 * mu)),
        design=jnp.array([0.3, 2.5]),
    )
    fid = {"A": 20.0, "k": 0.7}

    def logdet_np(t):
        e = np.exp(-0.7 * t)
        J = np.stack([e, -20.0 * t * e], axis=1)
        return np.linalg.slogdet(J.T @ (gumbel_weight(20.0 * e + 2.0)[:, None] * J))[1]

    with float64():
        fid64 = {k: jnp.float64(v) for k, v in fid.items()}

        def logdet(t):
            F = ff.fisher_information(exp.replace(design=t), fid64, ("A", "k"))
            return jnp.linalg.slogdet(F)[1]

        value, grad = jax.jit(jax.value_and_grad(logdet))(jnp.array([0.3, 2.5]))
        value, grad = float(value), np.asarray(grad)
    h = 1e-5
    fd = [
        (logdet_np(np.array([0.3, 2.5]) + h * e) - logdet_np(np.array([0.3, 2.5]) - h * e))
        / (2 * h)
        for e in np.eye(2)
    ]
    assert value == pytest.approx(logdet_np(np.array([0.3, 2.5])), abs=1e-10)
    np.testing.assert_allclose(grad, fd, rtol=1e-7)


def test_design_gradient_of_a_monte_carlo_fisher_matrix_is_its_own():
    """Common random numbers make the Monte-Carlo Fisher matrix a smooth function of the
    design; with reparameterised draws its gradient is that function's (against a central
    difference of the same estimate), not only the derivative at fixed draws."""
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-p["k"] * t) + 2.0,
        ff.Likelihood(
            lambda mu: dist.Gumbel(mu, 0.1 * mu), information="monte-carlo", n_samples=200
        ),
        design=jnp.array([0.3, 2.5]),
    )
    with float64():
        fid64 = {"A": jnp.float64(20.0), "k": jnp.float64(0.7)}

        @jax.jit
        def logdet(t):
            F = ff.fisher_information(exp.replace(design=t), fid64, ("A", "k"))
            return jnp.linalg.slogdet(F)[1]

        t0 = jnp.array([0.3, 2.5])
        grad = np.asarray(jax.jit(jax.grad(logdet))(t0))
        h = 1e-5
        fd = [float(logdet(t0 + h * e) - logdet(t0 - h * e)) / (2 * h) for e in jnp.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_profile_of_an_overdispersed_model_is_centred_with_fisher_curvature():
    """Noise-free NB profile (expected deviance): minimum at the fiducial, and near it
    Δ(−2 ln L) = (ΔA)²/σ_A² with σ_A from the Fisher matrix."""
    exp = nb_exp()
    prof = ff.profile_likelihood(exp, FID, "A", n_grid=21)
    assert prof.estimate == pytest.approx(FID["A"], rel=1e-6)
    sigma = fisher(ff.NegativeBinomial(3.0)).sigma()["A"]
    grid, delta = np.asarray(prof.grid), np.asarray(prof.delta)
    near = np.abs(grid - FID["A"]) < 0.25 * sigma
    assert near.sum() >= 1
    np.testing.assert_allclose(
        delta[near], ((grid[near] - FID["A"]) / sigma) ** 2, rtol=0.25, atol=1e-6
    )
