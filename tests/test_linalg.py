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
