"""ff.fisher_operator against dense answers computed independently (closed-form Jacobians
and numpy), at P ≈ 500 where the dense matrix still fits; ff.mfac against the dense damped
inverse; ff.empirical_gradients against jax.grad of the log-likelihood."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast import _compile

N, P = 700, 500
RNG = np.random.default_rng(2)
_U, _ = np.linalg.qr(RNG.standard_normal((N, P)))
_V, _ = np.linalg.qr(RNG.standard_normal((P, P)))
# Singular values 1..10 and a sloppy tail of five well-separated small ones: cond F ≈ 1e4.
_S = np.concatenate([np.geomspace(1.0, 10.0, P - 5), [0.1, 0.15, 0.22, 0.33, 0.5]])
A = (_U * _S) @ _V.T
X0 = RNG.standard_normal(N)
SIGMA = 0.5 + 0.5 * RNG.random(N)
W0 = 0.3 * RNG.standard_normal(P)
FID = {"w": W0, "c": 0.7}


def model(p):
    w = p["w"]
    return jnp.asarray(A) @ (w + 0.1 * w**3) + p["c"] * jnp.asarray(X0)


EXP = ff.Experiment(model, ff.Gaussian(sigma=SIGMA))


def dense_fisher():
    """The closed form: J = [A diag(1 + 0.3 w²), x0], F = Jᵀ diag(1/σ²) J."""
    J = np.concatenate([A * (1 + 0.3 * W0**2)[None, :], X0[:, None]], axis=1)
    Jw = J / SIGMA[:, None]
    return Jw.T @ Jw


F_DENSE = dense_fisher()


@pytest.fixture(scope="module")
def op():
    return ff.fisher_operator(EXP, FID)


def test_names_and_matvec_against_closed_form(op):
    assert op.size == P + 1 and op.labels[0] == "w[0]" and op.labels[-1] == "c"
    V = RNG.standard_normal((3, P + 1))
    want = V @ F_DENSE
    got = op.matvec(V)
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
    one = op.matvec(V[0])
    assert np.max(np.abs(one - want[0])) <= 1e-12 * np.max(np.abs(want[0]))
    # a dict of name -> values is the same vector
    d = op.to_dict(V[0])
    assert np.allclose(op.matvec(d), one, rtol=0, atol=1e-12 * np.abs(one).max())


def test_pure_function_jit_vmap_and_lineax(op):
    import lineax as lx

    V = RNG.standard_normal((2, P + 1))
    with jax.enable_x64(True):
        f = jax.jit(jax.vmap(op.function()))
        got = np.asarray(f(jnp.asarray(V)))
        b = jnp.asarray(F_DENSE[:, 0] + F_DENSE[:, 5])
        sol = lx.linear_solve(op.as_lineax(), b, lx.CG(rtol=1e-12, atol=1e-12, max_steps=5000))
    assert np.allclose(got, V @ F_DENSE, rtol=0, atol=1e-12 * np.abs(V @ F_DENSE).max())
    expected = np.zeros(P + 1)
    expected[[0, 5]] = 1.0
    assert np.allclose(np.asarray(sol.value), expected, atol=1e-7)


def test_no_retrace_on_repeated_calls(op):
    v = RNG.standard_normal(P + 1)
    op.matvec(v)
    before = _compile.compile_stats()["lowerings"]
    op.matvec(2 * v)
    op2 = ff.fisher_operator(EXP, {"w": W0 + 0.1, "c": 0.3})  # new values, same shapes
    op2.matvec(v)
    assert _compile.compile_stats()["lowerings"] == before


def test_eigen_top10_and_bottom5_against_eigh(op):
    w = np.linalg.eigvalsh(F_DENSE)[::-1]
    top = op.eigen(10, "largest")
    assert np.all(np.abs(top.values / w[:10] - 1) < 1e-8)
    assert np.all(top.residual < 1e-6)
    bottom = op.eigen(5, "smallest")
    assert np.all(np.abs(bottom.values / w[-5:] - 1) < 1e-8)
    # vectors come back as name -> components, normalised eigenvectors of F
    v = np.concatenate([bottom.vectors[-1]["w"], [bottom.vectors[-1]["c"]]])
    assert np.isclose(np.linalg.norm(v), 1.0)
    assert np.allclose(F_DENSE @ v, w[-1] * v, atol=1e-6 * w[-1])


def test_sigma_against_dense_inverse(op):
    C = np.linalg.inv(F_DENSE)
    res = op.sigma(["c", "w[3]", "w[499]"])
    for name, i in (("c", P), ("w[3]", 3), ("w[499]", 499)):
        assert abs(res.sigma[name] / np.sqrt(C[i, i]) - 1) < 1e-8
        assert res.residual[name] < 1e-8
    assert res.converged


def test_with_prior_and_fix_match_the_dense_algebra(op):
    dense = ff.FisherMatrix(F_DENSE, op.labels)
    prior = {"c": 0.1, "w[0]": 0.05}
    want = dense.with_prior(prior).fix([f"w[{i}]" for i in range(P)])
    opp = op.with_prior({**prior, "w": 2.0}).fix(["w"])
    assert opp.labels == ("c",)
    assert np.isclose(opp.matvec(np.ones(1))[0], want.matrix[0, 0], rtol=1e-12)
    # an array-valued prior on the whole block
    opw = op.with_prior({"w": np.full(P, 0.5)})
    e = np.zeros(P + 1)
    e[7] = 1.0
    assert np.isclose(opw.matvec(e)[7], F_DENSE[7, 7] + 4.0, rtol=1e-12)
    s = opw.sigma(["c"]).sigma["c"]
    Fp = F_DENSE + np.diag(np.r_[np.full(P, 4.0), 0.0])
    assert abs(s / np.sqrt(np.linalg.inv(Fp)[P, P]) - 1) < 1e-8


def test_exact_diagonal_and_hutchinson_within_its_error(op):
    d = op.diagonal("exact")
    assert np.allclose(d.values, np.diag(F_DENSE), rtol=1e-12)
    h = op.diagonal("hutchinson", n_probes=200, seed=3)
    z = np.abs(h.values - np.diag(F_DENSE)) / h.error
    assert np.mean(z < 3) > 0.97  # the reported error is a calibrated 1σ per entry
    assert 0.5 < np.median(z) < 0.9  # median of |N(0,1)| is 0.674


@pytest.mark.slow  # 20 probes × 40 sequential Lanczos steps
def test_logdet_and_trace_within_their_error_bars(op):
    want = np.linalg.slogdet(F_DENSE)[1]
    ld = op.logdet(n_probes=20, steps=40, seed=1)
    assert abs(ld.value - want) < 3 * ld.error and ld.error < 0.01 * abs(want)
    tr = op.trace(n_probes=20, steps=2, seed=2)  # one Gauss node integrates x exactly
    assert abs(tr.value - np.trace(F_DENSE)) < 3 * tr.error


def test_parameter_dependent_sigma_matches_closed_form():
    x = np.linspace(0.0, 1.0, 300)

    def sig(p, x):
        return 0.1 * jnp.exp(p["k"][0] * x + p["k"][1] * x**2) + 0.05 * p["k"][2]

    exp = ff.Experiment(
        lambda p, x: p["a"] * jnp.sin(3 * x) + p["k"][0] * x, ff.Gaussian(sigma=sig), design=x
    )
    fid = {"a": 1.0, "k": np.array([0.3, -0.2, 1.0])}
    op = ff.fisher_operator(exp, fid)
    # closed form: J of the mean and of σ, F = Jμᵀ Jμ/σ² + 2 Jσᵀ Jσ/σ²
    k = fid["k"]
    s = 0.1 * np.exp(k[0] * x + k[1] * x**2) + 0.05 * k[2]
    e = 0.1 * np.exp(k[0] * x + k[1] * x**2)
    Jm = np.stack([np.sin(3 * x), x, 0 * x, 0 * x], 1)
    Js = np.stack([0 * x, e * x, e * x**2, 0.05 + 0 * x], 1)
    F = (Jm / s[:, None]).T @ (Jm / s[:, None]) + 2 * (Js / s[:, None]).T @ (Js / s[:, None])
    assert np.allclose(op.to_dense().matrix, F, rtol=1e-12, atol=1e-12 * np.abs(F).max())
    assert np.allclose(op.diagonal().values, np.diag(F), rtol=1e-12)


def test_parameter_dependent_dense_covariance_matches_dense_path():
    x = np.linspace(0.0, 1.0, 25)
    D = np.abs(x[:, None] - x[None, :])

    def cov(p):
        return p["amp"] ** 2 * jnp.exp(-D / p["ell"]) + 0.01 * jnp.eye(25)

    exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(cov=cov), design=x)
    fid = {"a": 0.1, "b": 1.0, "amp": 0.3, "ell": 0.2}
    want = ff.fisher(exp, fid).matrix  # jacfwd of C and the trace formula
    op = ff.fisher_operator(exp, fid)
    assert np.allclose(op.to_dense().matrix, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    assert np.allclose(op.diagonal().values, np.diag(want), rtol=1e-10)


def test_list_of_experiments_aligns_names():
    x = np.linspace(0.0, 1.0, 40)
    e1 = ff.Experiment(lambda p, x: p["A"] * p["calib"] * x, ff.Gaussian(sigma=0.1), design=x)
    e2 = ff.Experiment(lambda p, x: p["A"] + p["B"] * x, ff.Poisson(), design=x + 1.0)
    fid = {"calib": np.ones(40), "A": 2.0, "B": 3.0}
    op = ff.fisher_operator([e1, e2], fid)
    want = ff.fisher([e1, e2], fid)
    assert op.labels == want.names
    assert np.allclose(op.to_dense().matrix, want.matrix, rtol=1e-12, atol=1e-9)
    # closed form of the Poisson part: Σ ∂λ∂λ/λ with λ = A + B t
    t = x + 1.0
    lam = 2.0 + 3.0 * t
    FB = np.sum(t * t / lam)
    assert np.isclose(want.fix("calib").fix("A").matrix[0, 0], FB, rtol=1e-12)


def test_complex_psd_and_inner_only_noise():
    f = np.linspace(20.0, 100.0, 60)
    exp = ff.Experiment(
        lambda p, f: p["amp"] * jnp.exp(1j * p["phi"] * f / 100) * f ** (-7 / 6),
        ff.PSD(1.0 + f / 50, 0.5),
        design=f,
    )
    fid = {"amp": np.array([1.0, 1.5])[0:1] * 1.0, "phi": 0.3}
    op = ff.fisher_operator(exp, fid)
    assert np.allclose(op.to_dense().matrix, ff.fisher(exp, fid).matrix, rtol=1e-12)

    class InnerOnly(ff.NoiseModel):  # a metric without a data-space square root
        def tree_flatten(self):
            return (), None

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls()

        def inner(self, a, b, mean, params, design):
            return 4.0 * a.T @ b

        def log_likelihood(self, data, mean, params, design):
            return -2.0 * jnp.sum((data - mean) ** 2)

    x = np.arange(1.0, 6.0)
    exp2 = ff.Experiment(lambda p, x: p["c"] * x**2, InnerOnly(), design=x)
    op2 = ff.fisher_operator(exp2, {"c": np.ones(5)})
    assert np.allclose(op2.diagonal().values, 4.0 * x**4, rtol=1e-12)
    assert np.allclose(op2.matvec(np.ones(5)), 4.0 * x**4, rtol=1e-12)


def test_mfac_equals_dense_damped_inverse():
    rng = np.random.default_rng(5)
    m, n, lam = 32, 1500, 0.05
    G = rng.standard_normal((m, n)) * np.geomspace(0.1, 10.0, n)
    M = lam * np.eye(n) + G.T @ G / m
    V = rng.standard_normal((3, n))
    want = np.linalg.solve(M, V.T).T
    op = ff.mfac(G, lam)
    assert np.max(np.abs(op.solve(V) - want)) <= 1e-10 * np.max(np.abs(want))
    assert np.allclose(op.matvec(V[0]), M @ V[0], rtol=1e-12)
    assert np.isclose(op.logdet(), np.linalg.slogdet(M)[1], rtol=1e-12)


def test_empirical_gradients_sum_to_the_score_and_average_to_fisher():
    x = np.linspace(0.0, 2.0, 400)
    exp = ff.Experiment(
        lambda p, x: p["a"] * jnp.exp(-p["b"] * x), ff.Gaussian(sigma=0.2), design=x
    )
    fid = {"a": 1.0, "b": 1.5}
    rng = np.random.default_rng(0)
    d = np.exp(-1.5 * x) + 0.2 * rng.standard_normal(x.size)
    G, names = ff.empirical_gradients(exp, fid, d)
    assert names == ("a", "b") and G.shape == (400, 2)
    with jax.enable_x64(True):

        def loglik(t):
            mean = exp.model({"a": t[0], "b": t[1]}, jnp.asarray(x))
            return exp.noise.log_likelihood(jnp.asarray(d), mean, {}, x)

        score = np.asarray(jax.grad(loglik)(jnp.array([1.0, 1.5])))
    assert np.allclose(G.sum(0), score, rtol=1e-12, atol=1e-10)
    # rows: (d − μ) ∂μ / σ² (closed form)
    r = d - np.exp(-1.5 * x)
    assert np.allclose(G[:, 1], r * (-x * np.exp(-1.5 * x)) / 0.04, atol=1e-12)
    # E[GᵀG] = F: over 50 data sets the mean empirical Fisher is within 5 % of F (the
    # relative scatter of the mean is about √(2/400/50) = 1 %)
    F = ff.fisher(exp, fid).matrix
    acc = np.zeros((2, 2))
    for _ in range(50):
        d = np.exp(-1.5 * x) + 0.2 * rng.standard_normal(x.size)
        G, _ = ff.empirical_gradients(exp, fid, d)
        acc += G.T @ G / 50
    assert np.allclose(acc, F, rtol=0.05)


def test_errors_name_the_argument(op):
    with pytest.raises(ValueError, match=r"shape \(501,\)"):
        op.matvec(np.ones(3))
    with pytest.raises(ff.ParameterError, match="nope"):
        op.sigma(["nope"])
    with pytest.raises(ValueError, match="positive and finite"):
        op.with_prior({"c": -1.0})
    with pytest.raises(ValueError, match="'largest' or 'smallest'"):
        op.eigen(2, "middle")
    with pytest.raises(ValueError, match="damping"):
        ff.mfac(np.ones((2, 3)), 0.0)
    x = np.linspace(0.0, 1.0, 10)

    class ForwardOnly:  # as an ff.ode_model with its default adjoint declares
        autodiff_modes = ("forward",)

        def __call__(self, p, x):
            return p["a"] * x

    with pytest.raises(ValueError, match="DirectAdjoint"):
        ff.fisher_operator(ff.Experiment(ForwardOnly(), ff.Gaussian(1.0), design=x), {"a": 1.0})
    singular = ff.Experiment(lambda p, x: (p["a"] + p["b"]) * x, ff.Gaussian(sigma=1.0), design=x)
    with pytest.raises(ff.NonFiniteError, match=r"singular|converge"):
        ff.fisher_operator(singular, {"a": 1.0, "b": 1.0}).sigma(["a"], max_steps=50)


def test_eigen_smallest_stops_at_an_invariant_subspace():
    """F = diag(x²) with x ∈ {1, 2, 3}, each 30 times: the Krylov space has dimension 3, so
    Lanczos closes after 3 steps; the smallest pairs are 1 and 4 (a repeated eigenvalue is
    seen once), not the zero rows of an unused buffer."""
    x = np.repeat([1.0, 2.0, 3.0], 30)
    exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=1.0), design=x)
    e = ff.fisher_operator(exp, {"c": np.ones(90)}).eigen(2, "smallest")
    np.testing.assert_allclose(e.values, [4.0, 1.0], rtol=1e-12)
    assert np.all(e.residual < 1e-12)
    v = e.vectors[1]["c"]  # eigenvalue 1: supported on the x = 1 block only
    assert np.allclose(v[30:], 0.0, atol=1e-12) and np.linalg.norm(v) == pytest.approx(1.0)
