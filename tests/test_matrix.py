"""FisherMatrix algebra against linear-algebra identities computed with numpy in the test
(closed forms: 2-D joint contours at Δχ² = −2 ln(1 − p) = 2.30, 6.18, 11.83, semi-axes
α = √Δχ² = 1.515, 2.486, 3.439 times √λ of the covariance; the DETF figure of merit
[det Cov(w0, wa)]^(−1/2), Albrecht et al. 2006)."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fisherforecast as ff

NAMES = ("a", "b", "c", "d", "e")
FID = {"a": 1.0, "b": -2.0, "c": 0.5, "d": 3.0, "e": 0.25}


def _spd(n, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    return B @ B.T + 0.5 * n * np.eye(n)


@pytest.fixture
def F5():
    return ff.FisherMatrix(
        _spd(5, seed=0),
        NAMES,
        fiducial=FID,
        labels={"a": r"\alpha", "b": r"\beta"},
        name="five",
        metadata={"survey": "toy"},
    )


def sub(M, rows, cols=None):
    cols = rows if cols is None else cols
    return M[np.ix_(rows, cols)]


# ---------------------------------------------------------------------------------------
# Inversion-based quantities
# ---------------------------------------------------------------------------------------
def test_covariance_sigma_and_correlation(F5):
    cov = np.linalg.inv(F5.matrix)
    np.testing.assert_allclose(F5.covariance(), cov, rtol=1e-12)
    sig = F5.sigma()
    assert list(sig) == list(NAMES)
    np.testing.assert_allclose([sig[n] for n in NAMES], np.sqrt(np.diag(cov)), rtol=1e-13)
    R = F5.correlation()
    np.testing.assert_allclose(np.diag(R), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(R, cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov))), rtol=1e-12)
    np.testing.assert_allclose(R, R.T, rtol=0, atol=0)


def test_correlation_diagonal_is_exactly_one_and_entries_in_range(F5):
    """Callers take arccos(R) or sqrt(1 − R²): one ulp above 1 gives NaN."""
    R = F5.correlation()
    assert np.all(np.diag(R) == 1.0)
    assert np.all(np.abs(R) <= 1.0)
    assert not np.any(np.isnan(np.sqrt(1 - R**2)))


def test_correlation_of_nearly_degenerate_pair_stays_in_range():
    F = ff.FisherMatrix([[1.0, 0.999999], [0.999999, 1.0]], ["x", "y"])
    R = F.correlation()
    assert R[0, 1] == pytest.approx(-0.999999, rel=1e-9)
    assert np.all(np.abs(R) <= 1.0)


def test_conditional_sigma_is_the_gaussian_conditional(F5):
    """1/sqrt(F_ii) = sqrt(Σ_ii − Σ_i,r Σ_rr⁻¹ Σ_r,i): the σ with every other parameter fixed."""
    cov = np.linalg.inv(F5.matrix)
    cs = F5.conditional_sigma()
    for i, n in enumerate(NAMES):
        r = [k for k in range(5) if k != i]
        var = cov[i, i] - cov[i, r] @ np.linalg.solve(sub(cov, r), cov[r, i])
        assert cs[n] == pytest.approx(math.sqrt(var), rel=1e-11)
        assert cs[n] <= F5.sigma()[n]


# ---------------------------------------------------------------------------------------
# marginalize / fix / prior
# ---------------------------------------------------------------------------------------
def test_marginalize_is_inverse_of_covariance_block(F5):
    keep = ["d", "b"]  # deliberately not in matrix order
    M = F5.marginalize(keep)
    assert M.names == ("d", "b")
    cov = np.linalg.inv(F5.matrix)
    idx = [NAMES.index(n) for n in keep]
    np.testing.assert_allclose(M.matrix, np.linalg.inv(sub(cov, idx)), rtol=1e-11)
    assert M.fiducial == {"d": 3.0, "b": -2.0}
    assert M.labels == {"d": "d", "b": r"\beta"}
    assert M.name == "five" and M.metadata == {"survey": "toy"}


def test_marginalize_keep_all_is_a_permutation(F5):
    order = ["e", "a", "d", "c", "b"]
    M = F5.marginalize(order)
    idx = [NAMES.index(n) for n in order]
    np.testing.assert_array_equal(M.matrix, sub(F5.matrix, idx))


def test_fix_is_the_sub_block(F5):
    G = F5.fix(["b", "e"])
    idx = [0, 2, 3]
    assert G.names == ("a", "c", "d")
    np.testing.assert_array_equal(G.matrix, sub(F5.matrix, idx))
    assert G.fiducial == {"a": 1.0, "c": 0.5, "d": 3.0}


def test_fix_and_marginalize_commute_and_give_the_conditional(F5):
    """Fix b, marginalise c, d, e  ==  marginalise c, d, e, fix b  ==  Cov(a | b) from Σ."""
    one = F5.fix(["b"]).marginalize(["a"])
    two = F5.marginalize(["a", "b"]).fix(["b"])
    cov = np.linalg.inv(F5.matrix)
    conditional_var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    assert one.matrix[0, 0] == pytest.approx(1 / conditional_var, rel=1e-11)
    assert two.matrix[0, 0] == pytest.approx(1 / conditional_var, rel=1e-11)


def test_with_prior_adds_inverse_variance(F5):
    G = F5.with_prior({"a": 0.5, "d": 2.0})
    expected = np.array(F5.matrix)
    expected[0, 0] += 4.0
    expected[3, 3] += 0.25
    np.testing.assert_array_equal(G.matrix, expected)
    # A prior on a parameter with no information makes the matrix invertible.
    H = ff.FisherMatrix([[1.0, 0.0], [0.0, 0.0]], ["x", "y"]).with_prior({"y": 0.1})
    assert H.sigma()["y"] == pytest.approx(0.1, rel=1e-14)


# ---------------------------------------------------------------------------------------
# + and *
# ---------------------------------------------------------------------------------------
def test_addition_aligns_by_name():
    A = ff.FisherMatrix(_spd(3, 1), ["a", "b", "c"], fiducial={"a": 1, "b": 2, "c": 3})
    B = ff.FisherMatrix(_spd(3, 2), ["c", "a", "d"], fiducial={"c": 3, "a": 1, "d": 4})
    S = A + B
    assert S.names == ("a", "b", "c", "d")
    expected = np.zeros((4, 4))
    expected[:3, :3] += A.matrix
    ib = [2, 0, 3]  # c, a, d in the sum's order
    expected[np.ix_(ib, ib)] += B.matrix
    np.testing.assert_allclose(S.matrix, expected, rtol=1e-15)
    assert S.fiducial == {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    # Permuting the names (and matrix) of one operand gives the same sum.
    perm = [2, 0, 1]  # d, c, a
    Bp = ff.FisherMatrix(sub(B.matrix, perm), [B.names[i] for i in perm], fiducial=B.fiducial)
    Sp = A + Bp
    idx = [Sp.names.index(n) for n in S.names]
    np.testing.assert_allclose(sub(Sp.matrix, idx), S.matrix, rtol=1e-15)
    # sum() works and is commutative up to name order
    T = sum([A, B])
    np.testing.assert_allclose(T.matrix, S.matrix, rtol=1e-15)
    U = B + A
    idx = [U.names.index(n) for n in S.names]
    np.testing.assert_allclose(sub(U.matrix, idx), S.matrix, rtol=1e-15)


def test_addition_refuses_conflicting_fiducials():
    A = ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": 1.0, "b": 2.0})
    B = ff.FisherMatrix(np.eye(2), ["b", "c"], fiducial={"b": 2.5, "c": 0.0})
    with pytest.raises(ValueError, match="'b'") as info:
        A + B
    assert "2.0" in str(info.value) and "2.5" in str(info.value)


def test_scalar_multiplication(F5):
    for G in (F5 * 3, 3 * F5, F5 * np.float64(3.0)):
        np.testing.assert_array_equal(G.matrix, 3 * F5.matrix)
        assert G.names == F5.names
    np.testing.assert_allclose(
        [(F5 * 4).sigma()[n] for n in NAMES], [F5.sigma()[n] / 2 for n in NAMES], rtol=1e-13
    )
    with pytest.raises(ValueError, match="-1"):
        F5 * -1


# ---------------------------------------------------------------------------------------
# Changes of variables
# ---------------------------------------------------------------------------------------
def test_to_log_is_dfd(F5):
    pos = ["a", "c", "d"]
    G = F5.to_log(pos)
    D = np.diag([FID[n] if n in pos else 1.0 for n in NAMES])
    np.testing.assert_allclose(G.matrix, D @ F5.matrix @ D, rtol=1e-15)
    assert G.names == ("ln_a", "b", "ln_c", "ln_d", "e")
    assert G.fiducial["ln_d"] == pytest.approx(math.log(3.0))
    assert G.labels["ln_a"] == r"\ln \alpha"
    # σ(ln θ) = σ(θ)/θ to first order: exact for the linearised Fisher transform.
    assert G.sigma()["ln_d"] == pytest.approx(F5.sigma()["d"] / 3.0, rel=1e-12)


def chirp_mass_eta(p):
    m1, m2 = p["m1"], p["m2"]
    M = m1 + m2
    return {"Mc": (m1 * m2) ** 0.6 / M**0.2, "eta": m1 * m2 / M**2}


def component_masses(p):
    M = p["Mc"] * p["eta"] ** -0.6
    root = jnp.sqrt(1 - 4 * p["eta"])
    return {"m1": 0.5 * M * (1 + root), "m2": 0.5 * M * (1 - root)}


def test_reparameterize_masses_round_trip_and_hand_jacobian():
    m1, m2 = 30.0, 20.0
    F = ff.FisherMatrix([[4.0, 3.9], [3.9, 4.0]], ["m1", "m2"], fiducial={"m1": m1, "m2": m2})
    G = F.reparameterize(chirp_mass_eta)
    M = m1 + m2
    Mc, eta = (m1 * m2) ** 0.6 / M**0.2, m1 * m2 / M**2
    assert G.names == ("Mc", "eta")
    assert G.fiducial["Mc"] == pytest.approx(Mc, rel=1e-14)
    assert G.fiducial["eta"] == pytest.approx(eta, rel=1e-14)
    # Hand-derived J = ∂(Mc, η)/∂(m1, m2); F_new = J⁻ᵀ F J⁻¹.
    J = np.array(
        [
            [Mc * (0.6 / m1 - 0.2 / M), Mc * (0.6 / m2 - 0.2 / M)],
            [eta * (1 / m1 - 2 / M), eta * (1 / m2 - 2 / M)],
        ]
    )
    Jinv = np.linalg.inv(J)
    np.testing.assert_allclose(G.matrix, Jinv.T @ F.matrix @ Jinv, rtol=1e-10)
    # Forward then inverse returns the original matrix.
    back = G.reparameterize(component_masses)
    assert back.names == ("m1", "m2")
    np.testing.assert_allclose(back.matrix, F.matrix, rtol=1e-10)
    assert back.fiducial["m1"] == pytest.approx(m1, rel=1e-12)
    # The inverse=True direction reproduces the same matrix from (Mc, η) → (m1, m2).
    inv = F.reparameterize(component_masses, inverse=True, fiducial={"Mc": Mc, "eta": eta})
    np.testing.assert_allclose(inv.matrix, G.matrix, rtol=1e-10)


def test_reparameterize_linear_transform(F5):
    """old = A·new + b (inverse=True): F_new = Aᵀ F A; new = B·old (forward): B⁻ᵀ F B⁻¹."""
    A = np.array(
        [
            [1.0, 2.0, 0.0, 0.0, 0.5],
            [0.0, 1.0, 0.0, 1.0, 0.0],
            [0.3, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, -1.0],
            [0.0, 0.0, 2.0, 0.0, 1.0],
        ]
    )
    x_old = np.array([FID[n] for n in NAMES])
    new_names = ["u", "v", "w", "x", "y"]
    x_new = np.linalg.solve(A, x_old)

    def old_of_new(p):
        vec = jnp.stack([p[n] for n in new_names])
        return dict(zip(NAMES, A @ vec, strict=True))

    G = F5.reparameterize(
        old_of_new, inverse=True, fiducial=dict(zip(new_names, x_new, strict=True))
    )
    np.testing.assert_allclose(G.matrix, A.T @ F5.matrix @ A, rtol=1e-12)

    def new_of_old(p):
        vec = jnp.stack([p[n] for n in NAMES])
        return dict(zip(new_names, A @ vec, strict=True))

    H = F5.reparameterize(new_of_old)
    Ai = np.linalg.inv(A)
    np.testing.assert_allclose(H.matrix, Ai.T @ F5.matrix @ Ai, rtol=1e-10)
    np.testing.assert_allclose([H.fiducial[n] for n in new_names], A @ x_old, rtol=1e-14)


def test_reparameterize_inverse_may_reduce_dimension():
    """inverse=True: a = s + t, b = s − t gives Aᵀ F A; it need not be one-to-one."""
    F = ff.FisherMatrix([[2.0, 0.5], [0.5, 1.0]], ["a", "b"], fiducial={"a": 3.0, "b": 1.0})
    G = F.reparameterize(
        lambda p: {"a": p["s"] + p["t"], "b": p["s"] - p["t"]},
        inverse=True,
        fiducial={"s": 2.0, "t": 1.0},
    )
    A = np.array([[1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(G.matrix, A.T @ F.matrix @ A, rtol=1e-14)
    # Fewer new parameters than old: a = b = s, F_s = (1, 1) F (1, 1)ᵀ.
    F1 = ff.FisherMatrix(F.matrix, ["a", "b"], fiducial={"a": 3.0, "b": 3.0})
    K = F1.reparameterize(lambda p: {"a": p["s"], "b": p["s"]}, inverse=True, fiducial={"s": 3.0})
    assert K.names == ("s",)
    assert K.matrix[0, 0] == pytest.approx(2.0 + 2 * 0.5 + 1.0, rel=1e-15)


# ---------------------------------------------------------------------------------------
# 2-D contours (closed form: Δχ² = −2 ln(1 − p), two degrees of freedom) and the DETF
# figure of merit (Albrecht et al. 2006: [det Cov(w0, wa)]^(−1/2))
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "dchi2", "alpha"),
    [(0.6827, 2.30, 1.515), (0.9545, 6.18, 2.486), (0.9973, 11.83, 3.439)],
)
def test_ellipse_semi_axes_and_vertices(F5, level, dchi2, alpha):
    E = F5.ellipse("b", "d", level=level)
    cov = np.linalg.inv(F5.matrix)
    C2 = sub(cov, [1, 3])
    lam = np.linalg.eigvalsh(C2)
    assert E.delta_chi2 == pytest.approx(dchi2, abs=0.005)
    # The probability inside Δχ² for 2 Gaussian dimensions is the level (scipy, independent).
    assert scipy.stats.chi2(2).cdf(E.delta_chi2) == pytest.approx(level, rel=1e-12)
    assert ff.delta_chi2_2d(level) == pytest.approx(E.delta_chi2, rel=1e-15)
    assert E.semi_major == pytest.approx(alpha * math.sqrt(lam[1]), rel=1e-3)
    assert E.semi_minor == pytest.approx(alpha * math.sqrt(lam[0]), rel=1e-3)
    assert E.center == (FID["b"], FID["d"])
    V = E.vertices(64)
    assert V.shape == (64, 2)
    r = V - np.array(E.center)
    chi2 = np.einsum("ni,ij,nj->n", r, np.linalg.inv(C2), r)
    np.testing.assert_allclose(chi2, E.delta_chi2, rtol=1e-11)


def test_ellipse_axis_orientation():
    """Strongly correlated pair: the major axis lies along the degenerate direction."""
    F = ff.FisherMatrix([[1.0, -0.95], [-0.95, 1.0]], ["x", "y"])
    E = F.ellipse("x", "y")
    # Cov ∝ [[1, .95], [.95, 1]]: major axis along (1, 1)/√2, i.e. angle ±π/4 (mod π).
    assert math.isclose(abs(math.cos(E.angle)), math.sqrt(0.5), rel_tol=1e-12)
    assert math.sin(E.angle) * math.cos(E.angle) > 0
    assert E.center == (0.0, 0.0)


def test_detf_figure_of_merit():
    rng = np.random.default_rng(9)
    B = rng.normal(size=(4, 4))
    M = B @ B.T + 2 * np.eye(4)
    names = ["Om", "w0", "h", "wa"]
    F = ff.FisherMatrix(M, names)
    cov = np.linalg.inv(M)
    idx = [1, 3]
    expected = np.linalg.det(sub(cov, idx)) ** -0.5
    assert F.figure_of_merit(["w0", "wa"]) == pytest.approx(expected, rel=1e-12)
    assert F.figure_of_merit(["wa", "w0"]) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------
# eigen, condition number, immutability, summaries
# ---------------------------------------------------------------------------------------
def test_eigen_and_condition_number(F5):
    E = F5.eigen()
    assert np.all(np.diff(E.values) >= 0)
    np.testing.assert_allclose(
        F5.matrix @ E.vectors, E.vectors * E.values, rtol=0, atol=1e-12 * E.values[-1]
    )
    d = np.sqrt(np.diag(F5.matrix))
    assert F5.condition_number == pytest.approx(
        np.linalg.cond(F5.matrix / np.outer(d, d)), rel=1e-10
    )
    # Units do not change the scaled condition number.
    D = np.diag([1e-6, 1.0, 1e4, 1e8, 3.0])
    G = ff.FisherMatrix(D @ F5.matrix @ D, NAMES)
    assert G.condition_number == pytest.approx(F5.condition_number, rel=1e-8)
    assert ff.FisherMatrix([[1.0, 0.0], [0.0, 0.0]], ["x", "y"]).condition_number == math.inf


def test_immutable(F5):
    with pytest.raises(ValueError):
        F5.matrix[0, 0] = 1.0
    with pytest.raises(AttributeError):
        F5.names = ("z",)
    fid = F5.fiducial
    fid["a"] = 99.0
    assert F5.fiducial["a"] == 1.0


def test_summary_and_to_dict(F5):
    text = F5.summary()
    sig = F5.sigma()
    for n in NAMES:
        assert n in text
        assert f"{sig[n]:.5g}" in text
    d = F5.to_dict()
    json.dumps(d)  # plain Python only
    assert d["names"] == list(NAMES)
    np.testing.assert_array_equal(np.array(d["matrix"]), F5.matrix)
    assert d["sigma"] == sig
    # A singular matrix still summarises, and says why sigma is missing.
    S = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["x", "y"])
    assert "singular" in S.summary()
    assert S.to_dict()["sigma"] is None
    assert "FisherMatrix" in repr(F5)


def test_labels_as_list_and_defaults():
    F = ff.FisherMatrix(np.eye(2), ["x", "y"], labels=[r"\xi", r"\upsilon"])
    assert F.labels == {"x": r"\xi", "y": r"\upsilon"}
    assert ff.FisherMatrix(np.eye(1), ["x"]).labels == {"x": "x"}


def test_pickle_and_deepcopy_round_trip_exactly():
    import copy
    import pickle

    F = ff.FisherMatrix(
        [[2.0, 1.0], [1.0, 3.0]],
        ["a", "b"],
        fiducial={"a": 1.0, "b": 2.0},
        labels={"a": r"\alpha"},
        name="exp",
        metadata={"k": [1, 2]},
    )
    for G in (pickle.loads(pickle.dumps(F)), copy.deepcopy(F)):
        assert G.matrix.tobytes() == F.matrix.tobytes()
        assert (G.names, G.fiducial, G.labels, G.name, G.metadata) == (
            F.names,
            F.fiducial,
            F.labels,
            F.name,
            F.metadata,
        )


# ----- review fixes ---------------------------------------------------------------------
def test_fom_and_ellipse_ignore_a_degeneracy_among_the_nuisances():
    # w0, wa block [[4, 1], [1, 3]] coupled to two exactly degenerate nuisances n1, n2 that
    # enter only as n1 + n2 (u = n1 + n2 with F_uu = 1, F_w0,u = 0.5). Reparametrised, the
    # (w0, wa) marginal is [[4 - 0.25, 1], [1, 3]], so FoM = sqrt(3.75·3 - 1) = 3.2016.
    F = np.array(
        [[4.0, 1.0, 0.5, 0.5], [1.0, 3.0, 0.0, 0.0], [0.5, 0.0, 1.0, 1.0], [0.5, 0.0, 1.0, 1.0]]
    )
    M = ff.FisherMatrix(F, ["w0", "wa", "n1", "n2"])
    np.testing.assert_allclose(M.figure_of_merit(["w0", "wa"]), np.sqrt(3.75 * 3 - 1), rtol=1e-13)
    ell = M.ellipse("w0", "wa")
    ref = ff.FisherMatrix([[3.75, 1.0], [1.0, 3.0]], ["w0", "wa"]).ellipse("w0", "wa")
    np.testing.assert_allclose(
        [ell.semi_major, ell.semi_minor, ell.angle],
        [ref.semi_major, ref.semi_minor, ref.angle],
        rtol=1e-12,
    )
    # A degeneracy that involves w0 leaves the area unbounded: FoM 0, ellipse refused.
    G = ff.FisherMatrix([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], ["w0", "wa", "n"])
    assert G.figure_of_merit(["w0", "wa"]) == 0.0
    with pytest.raises(ff.SingularFisherError):
        G.ellipse("w0", "wa")


def test_adding_matrices_checks_the_values_of_fixed_parameters():
    t = np.linspace(0.0, 1.0, 5)
    exp = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=0.1), t)
    F1 = ff.fisher(exp, {"a": 1.0, "b": 2.0}, params=["a"])
    with pytest.raises(ValueError, match=r"'b' is 2.0 in one and 3.0 in the other"):
        F1 + ff.fisher(exp, {"a": 1.0, "b": 3.0})
    both = F1 + ff.fisher(exp, {"a": 1.0, "b": 2.0})
    assert "fixed" not in both.metadata  # b is varied in the sum


def test_reparameterize_fiducial_check_is_relative_to_each_parameter():
    F = ff.FisherMatrix([[1e40]], ["x"], {"x": 1e-20})
    with pytest.raises(ValueError, match="does not reproduce"):
        F.reparameterize(lambda q: {"x": q["y"] * 1e-20}, inverse=True, fiducial={"y": 5.0})
    assert F.reparameterize(
        lambda q: {"x": q["y"] * 1e-20}, inverse=True, fiducial={"y": 1.0}
    ).sigma()["y"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN/inf"):
        ff.FisherMatrix([[1.0]], ["x"], {"x": 1.0}).reparameterize(
            lambda p: {"y": jnp.log(p["x"] - 1.0)}
        )


def test_scaling_and_argument_types():
    F = ff.FisherMatrix(np.eye(2), ["a", "b"])
    assert (F * jnp.array(2.0)).matrix[0, 0] == 2.0 and (np.float32(3) * F).matrix[1, 1] == 3.0
    with pytest.raises(TypeError):
        F * True
    with pytest.raises(TypeError, match="prior sigma for 'a' must be a number"):
        F.with_prior({"a": "x"})
    with pytest.raises(TypeError, match=r"fiducial\['a'\] must be a real number"):
        ff.FisherMatrix(np.eye(1), ["a"], fiducial={"a": "x"})
    singular = ff.FisherMatrix([[1.0, 1.0], [1.0, 1.0]], ["a", "b"])
    assert "the direction" in singular.summary()  # the degenerate direction is named
