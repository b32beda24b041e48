"""Robust inversion against arbitrary-precision and exact references, and singular matrices
whose degenerate combinations must be named (closed form: y = a·b·e^(−kt) has rank 2 of 3,
only a·b is identifiable)."""

from __future__ import annotations

import math
from fractions import Fraction

import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from helpers import product_decay

import fisherforecast as ff


def mpmath_inverse(F, dps=50):
    """Reference: the inverse of the float64 entries taken as exact, at `dps` digits."""
    n = F.shape[0]
    with mpmath.workdps(dps):
        M = mpmath.matrix([[mpmath.mpf(float(F[i, j])) for j in range(n)] for i in range(n)])
        Mi = M**-1
        return np.array([[float(Mi[i, j]) for j in range(n)] for i in range(n)])


def exact_hilbert_inverse(n):
    """(H⁻¹)_ij = (−1)^(i+j) (i+j+1) C(n+i, n−j−1) C(n+j, n−i−1) C(i+j, i)², 0-based."""
    c = math.comb
    return [
        [
            (-1) ** (i + j)
            * (i + j + 1)
            * c(n + i, n - j - 1)
            * c(n + j, n - i - 1)
            * c(i + j, i) ** 2
            for j in range(n)
        ]
        for i in range(n)
    ]


def badly_scaled_matrix():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(8, 8))
    S = B @ B.T / 8 + 0.5 * np.eye(8)  # cond(S) ≈ 6.5
    D = np.diag(np.logspace(-8, 8, 8))
    return D @ S @ D, S


# ---------------------------------------------------------------------------------------
# (a) badly scaled, well-conditioned after scaling
# ---------------------------------------------------------------------------------------
def test_badly_scaled_matrix_matches_50_digit_inverse():
    F, S = badly_scaled_matrix()
    assert np.linalg.cond(F) > 1e16  # raw condition number: beyond float64
    inv = ff.robust_inverse(F, [f"p{i}" for i in range(8)])
    ref = mpmath_inverse(F)
    assert inv.method == "cholesky"
    np.testing.assert_allclose(inv.covariance, ref, rtol=1e-12, atol=0)
    # Reported diagnostics are the scale-free ones: cond of the unit-diagonal matrix.
    ds = np.sqrt(np.diag(S))
    assert inv.condition_number == pytest.approx(np.linalg.cond(S / np.outer(ds, ds)), rel=1e-6)
    assert inv.residual < 1e-13
    # FisherMatrix goes through the same path.
    Fm = ff.FisherMatrix(F, [f"p{i}" for i in range(8)])
    np.testing.assert_allclose(Fm.covariance(), ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(list(Fm.sigma().values()), np.sqrt(np.diag(ref)), rtol=1e-12)


def test_mpmath_precision_on_badly_scaled_matrix():
    F, _ = badly_scaled_matrix()
    inv = ff.robust_inverse(F, precision="mpmath")
    assert inv.method == "mpmath"
    np.testing.assert_allclose(inv.covariance, mpmath_inverse(F), rtol=1e-14, atol=0)


def test_well_conditioned_matches_numpy():
    F = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    inv = ff.robust_inverse(F)
    np.testing.assert_allclose(inv.covariance, np.linalg.inv(F), rtol=1e-14)
    np.testing.assert_allclose(inv.covariance, inv.covariance.T, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------
# (b) genuinely ill-conditioned: the 12 × 12 Hilbert matrix
# ---------------------------------------------------------------------------------------
def integer_hilbert(n):
    """L·H with L = lcm(1..2n−1): an integer matrix, exactly representable in float64, whose
    inverse is exactly H⁻¹ / L. (The float64-rounded H itself is a different matrix: with
    condition number 1e16 its rounding changes the inverse at O(1).)"""
    L = math.lcm(*range(1, 2 * n))
    assert L < 2**53
    H = np.array([[L // (i + j + 1) for j in range(n)] for i in range(n)], dtype=np.float64)
    return H, L


def test_hilbert_12_is_singular_in_float64_but_exact_with_mpmath():
    n = 12
    H, L = integer_hilbert(n)
    names = [f"h{i}" for i in range(n)]
    d = np.sqrt(np.diag(H))
    assert np.linalg.cond(H / np.outer(d, d)) > 1e15  # scaled condition number
    with pytest.raises(ff.SingularFisherError):
        ff.robust_inverse(H, names)
    F = ff.FisherMatrix(H, names)
    with pytest.raises(ff.SingularFisherError, match="mpmath"):
        F.covariance()
    exact = exact_hilbert_inverse(n)
    expected = np.array([[float(Fraction(exact[i][j], L)) for j in range(n)] for i in range(n)])
    for got in (
        ff.robust_inverse(H, names, precision="mpmath").covariance,
        F.covariance(precision="mpmath"),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    sig = F.sigma(precision="mpmath")
    assert sig["h0"] == pytest.approx(math.sqrt(exact[0][0] / L), rel=1e-12)


def test_exact_hilbert_formula_is_right():
    """Guard the reference itself: H · H⁻¹ = I in exact rational arithmetic (n = 6)."""
    n = 6
    Hinv = exact_hilbert_inverse(n)
    for i in range(n):
        for j in range(n):
            s = sum(Fraction(1, i + k + 1) * Hinv[k][j] for k in range(n))
            assert s == (1 if i == j else 0)


# ---------------------------------------------------------------------------------------
# Singular matrices: the message names the degenerate combination
# ---------------------------------------------------------------------------------------
T_PRODUCT = np.arange(0.0, 5.01, 0.5)


def test_product_degeneracy_is_named():
    exp = ff.Experiment(product_decay, ff.Gaussian(sigma=0.1), design=T_PRODUCT)
    fid = {"a": 2.0, "b": 3.0, "k": 0.5}
    F = ff.fisher(exp, fid)
    # Independent check that (1, −1, 0) is the null direction in ln-parameters:
    # a ∂y/∂a − b ∂y/∂b = 0 for y = a·b·e^(−kt).
    y = 6.0 * np.exp(-0.5 * T_PRODUCT)
    J_log = np.stack([y, y, -0.5 * T_PRODUCT * y], 1)
    assert np.allclose(J_log @ [1.0, -1.0, 0.0], 0.0)
    with pytest.raises(ff.SingularFisherError) as info:
        F.sigma()
    err = info.value
    message = str(err)
    assert "a·b is constrained" in message
    assert "rank 2 of 3" in message
    assert "fix" in message and "prior" in message  # says what to do
    assert len(err.directions) == 1
    v = err.directions[0]
    vec = np.array([v.get("a", 0.0), v.get("b", 0.0), v.get("k", 0.0)])
    vec /= np.linalg.norm(vec)
    assert abs(abs(vec @ np.array([1.0, -1.0, 0.0]) / math.sqrt(2)) - 1) < 1e-6
    assert err.names == ("a", "b", "k")
    # The ratio case reads the other way round: y = (a/b)·e^(−kt).
    exp2 = ff.Experiment(
        lambda p, t: p["a"] / p["b"] * jnp.exp(-p["k"] * t),
        ff.Gaussian(sigma=0.1),
        design=T_PRODUCT,
    )
    with pytest.raises(ff.SingularFisherError, match="a/b is constrained"):
        ff.fisher(exp2, fid).covariance()


def test_ignored_parameter_is_named_as_having_no_information():
    exp = ff.Experiment(lambda p, t: p["a"] * t, ff.Gaussian(sigma=0.1), design=T_PRODUCT)
    F = ff.fisher(exp, {"a": 1.0, "unused": 4.0})
    with pytest.raises(ff.SingularFisherError) as info:
        F.covariance()
    message = str(info.value)
    assert "'unused'" in message and "information" in message
    assert info.value.directions == [{"unused": 1.0}]


def test_linear_degeneracy_with_negative_fiducial_and_multiple_null_directions():
    """y = (a + b + c)·t: rank 1 of 3; both null directions are orthogonal to (1, 1, 1)."""
    exp = ff.Experiment(
        lambda p, t: (p["a"] + p["b"] + p["c"]) * t, ff.Gaussian(sigma=0.1), design=T_PRODUCT
    )
    F = ff.fisher(exp, {"a": -1.0, "b": 2.0, "c": 0.5})
    with pytest.raises(ff.SingularFisherError) as info:
        F.covariance()
    assert "rank 1 of 3" in str(info.value)
    dirs = info.value.directions
    assert len(dirs) == 2
    fid = np.array([-1.0, 2.0, 0.5])
    for v, space in zip(dirs, info.value.spaces, strict=True):
        vec = np.array([v.get(n, 0.0) for n in "abc"])
        if space == "ln":  # δθ = θ δln θ
            vec = vec * fid
        # Coefficients below the 0.05 display threshold are dropped, hence the tolerance.
        assert abs(vec @ np.ones(3)) < 0.1 * np.linalg.norm(vec)


def test_marginalizing_over_a_degenerate_block():
    # y and z enter only as y + z: the degeneracy y - z lies inside the marginalised block,
    # so the marginal of x is still defined. Reparametrised by u = y + z the matrix is
    # [[2, 0.1], [0.1, 1]], whose x marginal is 2 - 0.1²/1 = 1.99.
    F = ff.FisherMatrix(
        [[2.0, 0.1, 0.1], [0.1, 1.0, 1.0], [0.1, 1.0, 1.0]],
        ["x", "y", "z"],
        fiducial={"x": 1.0, "y": 2.0, "z": 2.0},
    )
    np.testing.assert_allclose(F.marginalize(["x"]).matrix, [[1.99]], rtol=1e-14)
    # Keeping y, which takes part in the degeneracy, is refused with the combination named.
    with pytest.raises(ff.SingularFisherError, match=r"marginal of \['y'\] is undefined") as info:
        F.marginalize(["y"])
    assert set(info.value.directions[0]) == {"y", "z"}
    with pytest.raises(ff.SingularFisherError):
        F.marginalize(["x", "z"])


def test_marginalizing_a_singular_matrix_never_returns_round_off():
    # A random exactly degenerate 3 x 3 matrix: c = 0.7 a + 1.3 b. Every marginal that keeps
    # a parameter of the degeneracy must raise, not return the Schur complement's round-off.
    rng = np.random.default_rng(7)
    for _ in range(200):
        J = rng.normal(size=(5, 2))
        J = np.column_stack([J, 0.7 * J[:, 0] + 1.3 * J[:, 1]])
        F = ff.FisherMatrix(J.T @ J, ["a", "b", "c"])
        for keep in (["a"], ["c"], ["a", "b"]):
            with pytest.raises(ff.SingularFisherError):
                F.marginalize(keep)


def test_singular_error_is_also_a_linalg_error():
    with pytest.raises(np.linalg.LinAlgError):
        ff.robust_inverse(np.ones((2, 2)))


def test_empty_matrix():
    inv = ff.robust_inverse(np.zeros((0, 0)))
    assert inv.covariance.shape == (0, 0)


def test_extreme_but_representable_scales_invert_without_overflow():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(3, 3))
    S = B @ B.T + np.eye(3)
    scale = np.array([1e-100, 1.0, 1e100])  # F_ii up to ~1e200: representable
    F = S * np.outer(scale, scale)
    inv = ff.robust_inverse(F)  # filterwarnings=error: an overflow warning fails here
    np.testing.assert_allclose(
        inv.covariance * np.outer(scale, scale), np.linalg.inv(S), rtol=1e-12
    )


def test_robust_inverse_names_an_indefinite_matrix_and_checks_names():
    with pytest.raises(ff.SingularFisherError, match="not positive semi-definite"):
        ff.robust_inverse(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="`names` has 1 entries"):
        ff.robust_inverse(np.eye(2), ["a"])


# ---------------------------------------------------------------------------------------
# Batched kernels (fisherforecast._linalg), against independent answers
# ---------------------------------------------------------------------------------------
from fisherforecast import _inverse as I  # noqa: E402
from fisherforecast import _linalg as L  # noqa: E402


def spd_with_condition(rng, P, cond):
    """A random SPD matrix with unit-ish diagonal scale whose eigenvalues span 1..1/cond."""
    Q, _ = np.linalg.qr(rng.normal(size=(P, P)))
    return (Q * np.logspace(0, -np.log10(cond), P)) @ Q.T


def inverse_2x2(a, b, c):
    det = a * c - b * b
    return np.array([[c, -b], [-b, a]]) / det


def inverse_3x3(M):
    """Adjugate / determinant, written out."""
    (a, b, c), (d, e, f), (g, h, i) = M
    cof = np.array(
        [
            [e * i - f * h, -(d * i - f * g), d * h - e * g],
            [-(b * i - c * h), a * i - c * g, -(a * h - b * g)],
            [b * f - c * e, -(a * f - c * d), a * e - b * d],
        ]
    )
    det = a * cof[0, 0] + b * cof[0, 1] + c * cof[0, 2]
    return cof.T / det


def test_status_codes_have_the_batch_meanings():
    from fisherforecast._batch.reasons import REASONS, Reason

    for code in ("OK", "BAD_MATRIX", "NO_INFORMATION", "SINGULAR", "NOT_PSD"):
        assert getattr(L, code) == Reason[code], code
        assert L.STATUS[getattr(L, code)] == Reason[code].message == REASONS[getattr(L, code)]


def test_unit_diagonal_single_and_stacked():
    rng = np.random.default_rng(11)
    M = rng.normal(size=(2, 3, 4, 4))
    M = M @ np.swapaxes(M, -1, -2)
    S, d = L.unit_diagonal(M)
    assert S.shape == M.shape and d.shape == (2, 3, 4)
    for idx in np.ndindex(2, 3):
        ref_d = np.sqrt(np.diag(M[idx]))
        np.testing.assert_allclose(d[idx], ref_d, rtol=1e-15)
        np.testing.assert_allclose(S[idx], M[idx] / np.outer(ref_d, ref_d), rtol=1e-15)
        np.testing.assert_allclose(np.diag(S[idx]), 1.0, rtol=1e-15)
    S1, d1 = L.unit_diagonal(M[1, 2])
    np.testing.assert_array_equal(S1, S[1, 2])
    np.testing.assert_array_equal(d1, d[1, 2])
    # Zero and negative diagonal entries: d = 1 there, and M = S * outer(d, d) still holds.
    Z = np.array([[4.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, -9.0]])
    S, d = L.unit_diagonal(Z)
    assert d.tolist() == [2.0, 1.0, 1.0]
    np.testing.assert_array_equal(S * np.outer(d, d), Z)
    with pytest.raises(ValueError, match=r"`M` must have shape .* received shape \(3,\)"):
        L.unit_diagonal(np.ones(3))
    with pytest.raises(ValueError, match="must be a real array"):
        L.unit_diagonal(np.eye(2) * 1j)


def mixed_batch():
    """Items: ok, singular, indefinite, negative diagonal, NaN, inf, zero row, zero diagonal
    with a non-zero off-diagonal (indefinite), badly scaled ok."""
    D = np.diag([1e-8, 1e8])
    return np.array(
        [
            [[2.0, 1.0], [1.0, 3.0]],
            [[1.0, 2.0], [2.0, 4.0]],
            [[1.0, 2.0], [2.0, 1.0]],
            [[1.0, 0.0], [0.0, -1.0]],
            [[np.nan, 0.0], [0.0, 1.0]],
            [[1.0, np.inf], [np.inf, 1.0]],
            [[0.0, 0.0], [0.0, 5.0]],
            [[0.0, 1.0], [1.0, 5.0]],
            D @ [[2.0, 1.0], [1.0, 3.0]] @ D,
        ]
    )


def test_classify_a_mixed_batch():
    M = mixed_batch()
    codes, cond = L.classify(M)
    assert codes.dtype == np.int8
    assert codes.tolist() == [
        L.OK,
        L.SINGULAR,
        L.NOT_PSD,
        L.NOT_PSD,
        L.BAD_MATRIX,
        L.BAD_MATRIX,
        L.NO_INFORMATION,
        L.NOT_PSD,
        L.OK,
    ]
    # Condition number of [[2,1],[1,3]] scaled to unit diagonal: [[1, r], [r, 1]] with
    # r = 1/sqrt(6), eigenvalues 1 ± r.
    r = 1 / math.sqrt(6)
    np.testing.assert_allclose(cond[[0, 8]], (1 + r) / (1 - r), rtol=1e-14)
    assert np.isinf(cond[[1, 2, 6, 7]]).all() and np.isnan(cond[[3, 4, 5]]).all()
    # Batched == one by one, and a (2, ...) batch shape is kept.
    for i, F in enumerate(M):
        c, k = L.classify(F)
        assert c.shape == () and int(c) == codes[i]
        np.testing.assert_array_equal(k, cond[i])
    c2, _ = L.classify(np.stack([M, M]))
    assert c2.shape == (2, len(M)) and (c2 == codes).all()
    # Blocks do not change the answer.
    np.testing.assert_array_equal(L.classify(M, block=2)[0], codes)
    # Existing codes win; only OK items are examined.
    prior = np.zeros(len(M), np.int8)
    prior[0] = 8
    c3, k3 = L.classify(M, prior)
    assert c3[0] == 8 and np.isnan(k3[0]) and (c3[1:] == codes[1:]).all()
    with pytest.raises(ValueError, match=r"`codes` must be an integer array of shape \(9,\)"):
        L.classify(M, np.zeros(3, int))


def test_classify_rank_rule_and_psd_tolerance():
    # Unit-diagonal [[1, r], [r, 1]] has eigenvalues 1 - r, 1 + r: singular exactly when
    # 1 - r <= RANK_RTOL · 2 · (1 + r); not PSD when 1 - r < -PSD_RTOL · (1 + r).
    floor = L.RANK_RTOL * 2
    for eps, code in [
        (10 * floor, L.OK),
        (floor / 10, L.SINGULAR),
        (0.0, L.SINGULAR),
        (-L.PSD_RTOL, L.SINGULAR),  # a negative eigenvalue within round-off
        (-10 * L.PSD_RTOL, L.NOT_PSD),
    ]:
        r = 1 - eps
        M = np.array([[1.0, r], [r, 1.0]]) * np.outer([1e5, 1e-5], [1e5, 1e-5])
        assert int(L.classify(M)[0]) == code, eps
    assert int(L.classify(np.zeros((0, 0)))[0]) == L.OK


def test_covariance_closed_forms_2x2_and_3x3():
    rng = np.random.default_rng(5)
    M2 = np.array([[[a, b], [b, c]] for a, b, c in rng.uniform(1, 3, (6, 3)) * [1, 0.3, 1]])
    ref2 = np.array([inverse_2x2(m[0, 0], m[0, 1], m[1, 1]) for m in M2])
    np.testing.assert_allclose(L.covariance(M2), ref2, rtol=1e-13)
    np.testing.assert_allclose(
        L.marginal_sigma(M2), np.sqrt(np.diagonal(ref2, axis1=1, axis2=2)), rtol=1e-13
    )
    A = rng.normal(size=(5, 3, 3))
    M3 = A @ np.swapaxes(A, 1, 2) + np.eye(3)
    ref3 = np.array([inverse_3x3(m) for m in M3])
    np.testing.assert_allclose(L.covariance(M3), ref3, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        L.covariance(M3, diagonal_only=True), np.diagonal(ref3, axis1=1, axis2=2), rtol=1e-12
    )


def test_covariance_random_spd_batches_with_known_condition_numbers():
    rng = np.random.default_rng(8)
    P = 6
    for cond in (1e2, 1e6, 1e10):
        S = np.array([spd_with_condition(rng, P, cond) for _ in range(4)])
        scales = 10 ** rng.uniform(-8, 8, (4, P))
        M = S * scales[:, :, None] * scales[:, None, :]
        cov = L.covariance(M)
        for i in range(4):
            ref = scipy_inverse(S[i]) / np.outer(scales[i], scales[i])
            norm = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
            # Backward-stable inversion: error ~ cond · eps relative to the scale.
            assert np.max(np.abs(cov[i] - ref) / norm) < 50 * cond * np.finfo(float).eps
            # And the batch agrees with the single-matrix public path.
            np.testing.assert_allclose(
                cov[i], ff.robust_inverse(M[i]).covariance, rtol=1e3 * cond * 1e-16, atol=0
            )
        # The condition number reported is that of the unit-diagonal matrix (unit-free).
        ref_cond = [np.linalg.cond(s / np.sqrt(np.outer(np.diag(s), np.diag(s)))) for s in S]
        np.testing.assert_allclose(L.classify(M)[1], ref_cond, rtol=1e-3)


def scipy_inverse(S):
    import scipy.linalg

    return scipy.linalg.inv(S)


def test_covariance_is_nan_where_not_ok_and_checks_ok():
    M = mixed_batch()
    cov = L.covariance(M)
    ok = L.classify(M)[0] == L.OK
    assert np.isnan(cov[~ok]).all() and np.isfinite(cov[ok]).all()
    np.testing.assert_allclose(cov[0], inverse_2x2(2.0, 1.0, 3.0), rtol=1e-14)
    only_first = np.zeros(len(M), bool)
    only_first[0] = True
    assert np.isnan(L.covariance(M, only_first)[1:]).all()
    with pytest.raises(ValueError, match="`ok` must be a boolean array"):
        L.covariance(M, np.ones(len(M)))
    assert L.covariance(np.zeros((3, 0, 0))).shape == (3, 0, 0)


def test_pinv_sigma_full_rank_equals_inverse():
    rng = np.random.default_rng(2)
    S = np.array([spd_with_condition(rng, 4, 1e4) for _ in range(3)])
    np.testing.assert_allclose(
        L.pinv_sigma(S), np.sqrt(np.diagonal(np.linalg.inv(S), axis1=1, axis2=2)), rtol=1e-10
    )


def test_pinv_sigma_degenerate_matrices():
    # x with y, z entering only as y + z: σ_x = 1/sqrt(2 - 0.1²/1) (the marginal of x after
    # reparametrising u = y + z), y and z unconstrained.
    F = np.array([[2.0, 0.1, 0.1], [0.1, 1.0, 1.0], [0.1, 1.0, 1.0]])
    sig = L.pinv_sigma(F)
    assert sig[0] == pytest.approx(1 / math.sqrt(1.99), rel=1e-13)
    assert np.isinf(sig[1:]).all()
    # A parameter without information: inf; the others are the inverse of their block.
    G = np.zeros((3, 3))
    G[np.ix_([0, 2], [0, 2])] = [[4.0, 1.0], [1.0, 2.0]]
    np.testing.assert_allclose(
        L.pinv_sigma(G)[[0, 2]], np.sqrt(np.diag(inverse_2x2(4.0, 1.0, 2.0))), rtol=1e-14
    )
    assert np.isinf(L.pinv_sigma(G)[1])
    # NaN and not-PSD items: NaN; batched == one by one.
    M = mixed_batch()
    batch = L.pinv_sigma(M)
    for i in range(len(M)):
        np.testing.assert_array_equal(batch[i], L.pinv_sigma(M[i]))
    assert np.isnan(batch[[2, 3, 4, 5, 7]]).all()
    assert np.isinf(batch[1]).all() and np.isinf(batch[6, 0]) and np.isfinite(batch[6, 1])


def test_pinv_sigma_random_rank_deficient_against_scipy():
    # A block of 3 parameters with one exact degeneracy, plus 2 free ones coupled to it.
    # A parameter outside every null direction has σ² = (F⁺)_ii, computed here with
    # scipy's pinvh in the original coordinates; membership from scipy's null_space.
    import scipy.linalg

    rng = np.random.default_rng(4)
    for _ in range(20):
        J = rng.normal(size=(9, 4))
        J = np.column_stack([J[:, :2], J[:, 0] - 2 * J[:, 1], J[:, 2:]])  # c = a - 2b
        F = J.T @ J
        sig = L.pinv_sigma(F)
        N = scipy.linalg.null_space(F, rcond=1e-12)
        in_null = np.linalg.norm(N, axis=1) > 1e-6
        assert in_null.tolist() == [True, True, True, False, False]
        ref = np.sqrt(np.diag(scipy.linalg.pinvh(F, rtol=1e-12)))
        np.testing.assert_allclose(sig[~in_null], ref[~in_null], rtol=1e-8)
        assert np.isinf(sig[in_null]).all()
        # With reference scales: the same membership (it does not depend on the scales for
        # a single null direction), and σ unchanged.
        scaled = L.pinv_sigma(F, scale=rng.uniform(0.1, 10, 5), null_tol=1e-3)
        np.testing.assert_array_equal(scaled, sig)


def test_pinv_sigma_rtol_and_scale_arguments():
    # Unit-diagonal [[1, r], [r, 1]] with 1 - r = 2e-9: eigenvalue ratio ~1e-9, full rank
    # under the default rule (σ² = 1/(1 - r²)), null along (1, -1) under rtol = 1e-6 (a
    # singular-value rule r = 1e-3 on a square root).
    r = 1 - 2e-9
    F = np.array([[1.0, r], [r, 1.0]]) * np.outer([1e3, 1e-3], [1e3, 1e-3])
    np.testing.assert_allclose(
        L.pinv_sigma(F), np.array([1e-3, 1e3]) / math.sqrt(1 - r * r), rtol=1e-6
    )
    assert np.isinf(L.pinv_sigma(F, rtol=1e-6)).all()
    # Membership in coordinates θ / scale: a 2-D null space spanned by (1, 1, 0, 0) and
    # (0, 1, 1e-5, 0) in θ. In θ / scale with scale = (1, 1, 1e-3, 1), the third component
    # is 1e-2 (member); with scale = (1, 1, 1e3, 1) it is 1e-8 (not a member).
    N = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1e-5, 0.0]]).T
    Q, _ = np.linalg.qr(np.column_stack([N, np.eye(4)]))
    R = Q[:, 2:]  # orthonormal complement of the null space
    F = R @ np.diag([1.0, 2.0]) @ R.T
    F = 0.5 * (F + F.T)
    assert np.isinf(L.pinv_sigma(F, scale=[1, 1, 1e-3, 1], null_tol=1e-3)[2])
    assert np.isfinite(L.pinv_sigma(F, scale=[1, 1, 1e3, 1], null_tol=1e-3)[2])
    with pytest.raises(ValueError, match=r"`scale` must be positive and finite; received"):
        L.pinv_sigma(F, scale=[1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"`scale` must have shape \(P,\) = \(4,\)"):
        L.pinv_sigma(F, scale=[1, 1])
    with pytest.raises(ValueError, match=r"`rtol` must lie in \[0, 1\); received 2"):
        L.pinv_sigma(F, rtol=2)
    with pytest.raises(ValueError, match=r"`null_tol` must lie in \(0, 1\]; received 0"):
        L.pinv_sigma(F, null_tol=0)


def test_schur_complement_against_inverse_of_covariance_block():
    rng = np.random.default_rng(9)
    P = 5
    S = np.array([spd_with_condition(rng, P, 1e3) for _ in range(6)])
    scales = 10 ** rng.uniform(-4, 4, (6, P))
    M = S * scales[:, :, None] * scales[:, None, :]
    keep, drop = [3, 0], [1, 2, 4]
    out, defined = L.schur_complement(M, keep, drop)
    assert out.shape == (6, 2, 2) and defined.all()
    for i in range(6):
        ref = np.linalg.inv(np.linalg.inv(S[i])[np.ix_(keep, keep)])
        ref = ref * np.outer(scales[i, keep], scales[i, keep])
        np.testing.assert_allclose(out[i], ref, rtol=1e-9)
        single, ok = L.schur_complement(M[i], keep, drop)
        assert bool(ok) and single.shape == (2, 2)
        np.testing.assert_allclose(single, out[i], rtol=1e-15)
    # Nothing dropped: the kept block itself.
    np.testing.assert_array_equal(
        L.schur_complement(M, [1, 0, 2, 3, 4], [])[0][:, 0, 0], M[:, 1, 1]
    )


def test_schur_complement_degenerate_and_failed_items():
    F = np.array([[2.0, 0.1, 0.1], [0.1, 1.0, 1.0], [0.1, 1.0, 1.0]])
    bad = np.full((3, 3), np.nan)
    indefinite = np.diag([1.0, 1.0, -1.0])
    zero_dropped = np.diag([3.0, 0.0, 2.0])
    M = np.array([F, bad, indefinite, zero_dropped])
    out, defined = L.schur_complement(M, [0], [1, 2])
    assert defined.tolist() == [True, False, False, True]
    assert out[0, 0, 0] == pytest.approx(1.99, rel=1e-14)  # 2 - 0.1²/1 (u = y + z)
    assert out[3, 0, 0] == pytest.approx(3.0, rel=1e-15)
    assert np.isnan(out[1:3]).all()
    # Keeping y, which takes part in the degeneracy: undefined, NaN.
    out, defined = L.schur_complement(F, [1], [0, 2])
    assert not bool(defined) and np.isnan(out).all()
    with pytest.raises(ValueError, match=r"must together list every index 0\.\.2 exactly once"):
        L.schur_complement(F, [0], [1])
    with pytest.raises(IndexError, match=r"`drop_idx` = \[1, 3\]"):
        L.schur_complement(F, [0, 2], [1, 3])


def test_logdet_against_numpy_and_extreme_scales():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(4, 3, 3))
    M = A @ np.swapaxes(A, 1, 2) + np.eye(3)
    np.testing.assert_allclose(L.logdet(M), np.linalg.slogdet(M)[1], rtol=1e-13)
    # Entries spanning 1e-300..1e300: log det = log det S = log(1 - 0.5²) exactly.
    S = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    d = np.array([1e-150, 1e150, 1.0])
    assert float(L.logdet(S * np.outer(d, d))) == pytest.approx(math.log(0.75), rel=1e-14)
    out = L.logdet(mixed_batch())
    assert np.isneginf(out[[3, 6, 7]]).all() and np.isnan(out[[4, 5]]).all()
    assert out[0] == pytest.approx(math.log(5.0), rel=1e-14)


def test_schur_marginal_rejects_an_indefinite_matrix():
    with pytest.raises(ff.SingularFisherError, match="not positive semi-definite"):
        I.schur_marginal(np.diag([1.0, 2.0, -0.5]) + 0.0, [0], [1, 2], ("a", "b", "c"))


def test_fisher_matrix_summaries_through_the_kernels():
    from fisherforecast._matrix import marginal_sigma_or_inf

    # [[2, 1], [1, 3]]: unit-diagonal eigenvalues 1 ± 1/sqrt(6); covariance ∝ [[3, -1],
    # [-1, 2]], correlation -1/sqrt(6); det 5.
    r = 1 / math.sqrt(6)
    F = ff.FisherMatrix([[2.0, 1.0], [1.0, 3.0]], ["a", "b"])
    assert F.condition_number == pytest.approx((1 + r) / (1 - r), rel=1e-14)
    assert F.correlation()[0, 1] == pytest.approx(-r, rel=1e-14)
    assert F.figure_of_merit(["a", "b"]) == pytest.approx(math.sqrt(5.0), rel=1e-14)
    # Entries spanning 1e-300..1e300: FoM = sqrt(det) = sqrt(0.75) · 1e-150 · 1e150.
    S = np.array([[1.0, 0.5], [0.5, 1.0]])
    G = ff.FisherMatrix(S * np.outer([1e-150, 1e150], [1e-150, 1e150]), ["a", "b"])
    assert G.figure_of_merit(["a", "b"]) == pytest.approx(math.sqrt(0.75), rel=1e-14)
    assert G.condition_number == pytest.approx(3.0, rel=1e-14)
    # A parameter without information: condition inf, FoM 0, σ inf only for it.
    Z = ff.FisherMatrix([[4.0, 0.0], [0.0, 0.0]], ["a", "b"])
    assert Z.condition_number == math.inf and Z.figure_of_merit(["a", "b"]) == 0.0
    assert marginal_sigma_or_inf(Z) == {"a": 0.5, "b": math.inf}
    # The degenerate example: x is still constrained, y and z are not.
    D = ff.FisherMatrix([[2.0, 0.1, 0.1], [0.1, 1.0, 1.0], [0.1, 1.0, 1.0]], ["x", "y", "z"])
    sig = marginal_sigma_or_inf(D)
    assert sig["x"] == pytest.approx(1 / math.sqrt(1.99), rel=1e-13)
    assert sig["y"] == sig["z"] == math.inf
    # A zero diagonal entry with a non-zero off-diagonal one is not a Fisher matrix.
    with pytest.raises(ValueError, match="not positive semi-definite"):
        ff.FisherMatrix([[0.0, 1.0], [1.0, 5.0]], ["a", "b"])
    with pytest.raises(ValueError, match=r"negative diagonal entries for \['b'\]"):
        ff.FisherMatrix([[1.0, 0.0], [0.0, -1.0]], ["a", "b"])
