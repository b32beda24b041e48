"""Bad input gets a clear error: each test checks the exception type, that the message names
the argument, and that it quotes what was received."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import line

import fisherforecast as ff

T = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def good_experiment(**kw):
    return ff.Experiment(line, ff.Gaussian(sigma=0.1), design=T, **kw)


FID = {"a": 1.0, "b": 2.0}


def message_of(excinfo):
    return str(excinfo.value)


# ---------------------------------------------------------------------------------------
# Parameter names
# ---------------------------------------------------------------------------------------
def test_model_asks_for_a_parameter_the_fiducial_lacks():
    exp = ff.Experiment(
        lambda p, t: p["a"] + p["slope"] * t, ff.Gaussian(sigma=0.1), design=T, name="lab"
    )
    with pytest.raises(ff.ParameterError) as info:
        ff.fisher(exp, FID)
    msg = message_of(info)
    assert "'slope'" in msg and "'lab'" in msg and "['a', 'b']" in msg
    assert isinstance(info.value, KeyError)  # still catchable as a KeyError


def test_params_with_an_unknown_name():
    with pytest.raises(ff.ParameterError) as info:
        ff.fisher(good_experiment(), FID, params=["a", "c"])
    msg = message_of(info)
    assert "`params`" in msg and "['c']" in msg and "['a', 'b']" in msg


def test_params_with_duplicates():
    with pytest.raises(ff.ParameterError) as info:
        ff.fisher(good_experiment(), FID, params=["a", "b", "a"])
    msg = message_of(info)
    assert "`params`" in msg and "['a']" in msg and "['a', 'b', 'a']" in msg


def test_params_empty():
    with pytest.raises(ValueError, match="`params` is empty"):
        ff.fisher(good_experiment(), FID, params=[])


@pytest.mark.parametrize(
    ("fiducial", "exc", "quoted"),
    [
        ([1.0, 2.0], TypeError, "[1.0, 2.0]"),
        ({}, ValueError, "empty"),
        ({"a": np.ones(0), "b": 2.0}, ValueError, "(0,)"),  # arrays are fine, empty ones not
        ({"a": float("nan"), "b": 2.0}, ValueError, "nan"),
        ({"a": float("inf"), "b": 2.0}, ValueError, "inf"),
        ({"a": 1 + 2j, "b": 2.0}, ValueError, "(1+2j)"),
        ({"a": "one", "b": 2.0}, ValueError, "'one'"),
        ({1: 1.0, "b": 2.0}, TypeError, "1"),
    ],
)
def test_bad_fiducial(fiducial, exc, quoted):
    with pytest.raises(exc) as info:
        ff.fisher(good_experiment(), fiducial)
    msg = message_of(info)
    assert "fiducial" in msg and quoted in msg


def test_bad_mode_and_experiment_argument():
    with pytest.raises(ValueError) as info:
        ff.fisher(good_experiment(), FID, mode="sideways")
    assert "`mode`" in message_of(info) and "'sideways'" in message_of(info)
    with pytest.raises(TypeError) as info:
        ff.fisher(line, FID)
    assert "Experiment" in message_of(info) and "line" in message_of(info)
    with pytest.raises(TypeError, match=r"\[\]"):
        ff.fisher([], FID)


# ---------------------------------------------------------------------------------------
# Non-finite model output or derivatives
# ---------------------------------------------------------------------------------------
def test_nan_model_output_lists_output_indices():
    t = np.array([0.0, 0.5, 2.0, 3.0])
    exp = ff.Experiment(
        lambda p, t: p["a"] * jnp.log(t - 1.0), ff.Gaussian(sigma=1.0), design=t, name="logs"
    )
    with pytest.raises(ff.NonFiniteError) as info:
        ff.fisher(exp, {"a": 1.0})
    msg = message_of(info)
    assert "'logs'" in msg and "2 of 4" in msg and "(0,)" in msg and "(1,)" in msg


def test_inf_model_output_in_two_dimensional_output():
    exp = ff.Experiment(
        lambda p: jnp.array([[1.0, 1.0], [1.0, jnp.inf]]) * p["a"], ff.Gaussian(sigma=1.0)
    )
    with pytest.raises(ff.NonFiniteError, match=r"\(1, 1\)"):
        ff.fisher(exp, {"a": 1.0})


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_nan_jacobian_names_parameters_and_outputs(mode):
    """y = b·t + sqrt(a)·t at a = 0: ∂y/∂a = inf, ∂y/∂b = t is finite. Only a is to blame
    (forward mode alone would also smear 0·inf into the b column)."""
    exp = ff.Experiment(
        lambda p, t: p["b"] * t + jnp.sqrt(p["a"]) * t, ff.Gaussian(sigma=1.0), design=T
    )
    with pytest.raises(ff.NonFiniteError) as info:
        ff.fisher(exp, {"a": 0.0, "b": 1.0}, mode=mode)
    msg = message_of(info)
    assert "['a']" in msg and "'b'" not in msg
    assert "(0,)" in msg and "5 outputs" in msg


# ---------------------------------------------------------------------------------------
# Noise settings
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sigma", "quoted"),
    [
        (0.0, "0.0"),
        (-1.5, "-1.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (np.array([1.0, -2.0, 1.0]), "-2."),
        (np.array([0.1, 0.2, 0.0]), "0. "),
    ],
)
def test_sigma_not_positive(sigma, quoted):
    with pytest.raises(ValueError) as info:
        ff.Gaussian(sigma=sigma)
    msg = message_of(info)
    assert "sigma" in msg and quoted in msg + " "


def test_sigma_per_datum_bad_entry_is_located_in_long_arrays():
    sigma = np.ones(10)
    sigma[7] = -1.0
    with pytest.raises(ValueError) as info:
        ff.Gaussian(sigma=sigma)
    assert "sigma" in message_of(info) and "[[7]]" in message_of(info)


def test_callable_sigma_returning_negative_values_is_quoted():
    exp = ff.Experiment(line, ff.Gaussian(sigma=lambda p, t: p["s"] * (t - 2.5)), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, {**FID, "s": 0.2})
    msg = message_of(info)
    assert "sigma" in msg
    assert "-0.3" in msg  # the first bad value, at datum 0 (t = 1)


def test_callable_cov_not_positive_definite_is_quoted():
    """C = s·diag(1, 1, −1, 1, 1): the message quotes the negative eigenvalue."""
    exp = ff.Experiment(
        line,
        ff.Gaussian(cov=lambda p: p["s"] * jnp.diag(jnp.array([1.0, 1.0, -1.0, 1.0, 1.0]))),
        design=T,
    )
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, {**FID, "s": 0.2})
    msg = message_of(info)
    assert "cov returned by the callable" in msg and "-0.2" in msg


def test_cov_not_symmetric():
    C = np.eye(3)
    C[0, 1] = 0.1
    with pytest.raises(ValueError) as info:
        ff.Gaussian(cov=C)
    msg = message_of(info)
    assert "cov is not symmetric" in msg and "1.00e-01" in msg


def test_cov_not_positive_definite():
    C = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError) as info:
        ff.Gaussian(cov=C)
    msg = message_of(info)
    assert "cov is not positive definite" in msg and "-1" in msg  # eigenvalues are -1, 3


@pytest.mark.parametrize(
    ("cov", "quoted"),
    [
        (np.ones(3), "(3,)"),
        (np.ones((2, 3)), "(2, 3)"),
        (np.array([[1.0, np.nan], [np.nan, 1]]), "NaN"),
        (np.eye(2) * (1 + 1j), "complex"),
    ],
)
def test_cov_bad_shape_or_values(cov, quoted):
    with pytest.raises(ValueError) as info:
        ff.Gaussian(cov=cov)
    assert "cov" in message_of(info) and quoted in message_of(info)


def test_gaussian_needs_exactly_one_of_sigma_and_cov():
    with pytest.raises(ValueError, match="exactly one") as info:
        ff.Gaussian(sigma=1.0, cov=np.eye(2))
    assert "sigma=" in message_of(info) and "cov=" in message_of(info)
    with pytest.raises(ValueError, match="sigma=None, cov=None"):
        ff.Gaussian()


def test_callable_with_wrong_signature():
    with pytest.raises(TypeError) as info:
        ff.Gaussian(sigma=lambda a, b, c: a)
    assert "sigma" in message_of(info) and "(a, b, c)" in message_of(info)


@pytest.mark.parametrize(
    ("kw", "name", "quoted"),
    [
        ({"psd": 0.0, "df": 1.0}, "psd", "0.0"),
        ({"psd": np.array([1.0, -1.0]), "df": 1.0}, "psd", "-1."),
        ({"psd": 1.0, "df": -0.25}, "df", "-0.25"),
        ({"psd": 1.0, "df": float("nan")}, "df", "nan"),
    ],
)
def test_psd_settings_not_positive(kw, name, quoted):
    with pytest.raises(ValueError) as info:
        ff.PSD(**kw)
    assert name in message_of(info) and quoted in message_of(info)


# ---------------------------------------------------------------------------------------
# Output shape / dtype does not match the noise
# ---------------------------------------------------------------------------------------
def test_per_datum_sigma_of_wrong_length():
    exp = ff.Experiment(line, ff.Gaussian(sigma=np.ones(4)), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, FID)
    msg = message_of(info)
    assert "sigma" in msg and "(4,)" in msg and "(5,)" in msg


def test_cov_of_wrong_size():
    exp = ff.Experiment(line, ff.Gaussian(cov=np.eye(4)), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, FID)
    msg = message_of(info)
    assert "cov" in msg and "(4, 4)" in msg and "(5,)" in msg and "(5, 5)" in msg


def test_callable_noise_of_wrong_shape():
    exp = ff.Experiment(line, ff.Gaussian(sigma=lambda p: jnp.ones(3)), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, FID)
    assert "sigma (returned by the callable)" in message_of(info) and "(3,)" in message_of(info)
    exp = ff.Experiment(line, ff.Gaussian(cov=lambda p: jnp.eye(3)), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, FID)
    assert "cov (returned by the callable)" in message_of(info) and "(3, 3)" in message_of(info)


def test_psd_of_wrong_length():
    exp = ff.Experiment(lambda p, f: p["a"] * f * (1 + 0j), ff.PSD(np.ones(3), 0.5), design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, {"a": 1.0})
    assert "psd" in message_of(info) and "(3,)" in message_of(info)


@pytest.mark.parametrize(
    "noise",
    [ff.Gaussian(sigma=1.0), ff.Gaussian(cov=np.eye(5)), ff.Poisson()],
    ids=["sigma", "cov", "poisson"],
)
def test_complex_output_with_real_noise(noise):
    exp = ff.Experiment(lambda p, t: p["a"] * jnp.exp(1j * t) + 2.0, noise, design=T)
    with pytest.raises(ValueError) as info:
        ff.fisher(exp, {"a": 1.0})
    msg = message_of(info)
    assert "complex" in msg and "complex128" in msg and type(noise).__name__ in msg
    assert "PSD" in msg  # says what to do


def test_poisson_needs_positive_counts():
    exp = ff.Experiment(lambda p, t: p["a"] * (t - 3.0), ff.Poisson(), design=T)
    with pytest.raises(ValueError, match="expected counts must be positive") as info:
        ff.fisher(exp, {"a": 1.0})
    assert "[-2.0, -1.0, 0.0]" in message_of(info) and "[0, 1, 2]" in message_of(info)


# ---------------------------------------------------------------------------------------
# Experiment
# ---------------------------------------------------------------------------------------
def test_experiment_arguments():
    with pytest.raises(TypeError) as info:
        ff.Experiment("model", ff.Gaussian(sigma=1.0))
    assert "`model`" in message_of(info) and "'model'" in message_of(info)
    with pytest.raises(TypeError) as info:
        ff.Experiment(line, 0.1)
    assert "`noise`" in message_of(info) and "0.1" in message_of(info)
    with pytest.raises(TypeError) as info:
        ff.Experiment(line, ff.Gaussian(sigma=1.0), name=3)
    assert "`name`" in message_of(info) and "3" in message_of(info)


# ---------------------------------------------------------------------------------------
# bias
# ---------------------------------------------------------------------------------------
def test_bias_bad_delta_data():
    exp = good_experiment(name="lab")
    with pytest.raises(ValueError) as info:
        ff.bias(exp, FID, np.zeros(3))
    msg = message_of(info)
    assert "`delta_data`" in msg and "(3,)" in msg and "(5,)" in msg
    with pytest.raises(ValueError, match="`delta_data` contains NaN"):
        ff.bias(exp, FID, np.full(5, np.nan))
    with pytest.raises(ValueError) as info:
        ff.bias([exp, exp], FID, [np.zeros(5)])
    assert "`delta_data`" in message_of(info) and "2 experiments" in message_of(info)


# ---------------------------------------------------------------------------------------
# FisherMatrix construction and operations
# ---------------------------------------------------------------------------------------
def test_fisher_matrix_duplicate_names():
    with pytest.raises(ValueError) as info:
        ff.FisherMatrix(np.eye(3), ["a", "b", "a"])
    assert "duplicate" in message_of(info) and "['a']" in message_of(info)
    assert "['a', 'b', 'a']" in message_of(info)


def test_fisher_matrix_non_finite():
    M = np.eye(2)
    M[0, 1] = M[1, 0] = np.nan
    with pytest.raises(ff.NonFiniteError) as info:
        ff.FisherMatrix(M, ["a", "b"])
    assert "`matrix`" in message_of(info) and "[0, 1]" in message_of(info)
    with pytest.raises(ff.NonFiniteError, match="`matrix`"):
        ff.FisherMatrix([[np.inf]], ["a"])


def test_fisher_matrix_not_symmetric():
    with pytest.raises(ValueError) as info:
        ff.FisherMatrix([[2.0, 1.0], [1.5, 2.0]], ["a", "b"])
    msg = message_of(info)
    assert "`matrix`" in msg and "not symmetric" in msg and "1.0" in msg and "1.5" in msg


@pytest.mark.parametrize(
    ("matrix", "names", "quoted"),
    [
        (np.eye(2), ["a", "b", "c"], "['a', 'b', 'c']"),
        (np.ones((2, 3)), ["a", "b"], "(2, 3)"),
        ([[-1.0, 0.0], [0.0, 1.0]], ["a", "b"], "['a']"),
        ([[1.0, 2.0], [2.0, 1.0]], ["a", "b"], "-1"),
        (np.eye(2) * 1j, ["a", "b"], "complex"),
        (np.eye(2), ["a", ""], "''"),
    ],
)
def test_fisher_matrix_bad_construction(matrix, names, quoted):
    with pytest.raises((ValueError, TypeError)) as info:
        ff.FisherMatrix(matrix, names)
    assert quoted in message_of(info)


def test_fisher_matrix_bad_fiducial_labels_name_metadata():
    with pytest.raises(ValueError) as info:
        ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": 1.0, "c": 2.0})
    assert "`fiducial`" in message_of(info) and "['c']" in message_of(info)
    assert "['b']" in message_of(info)
    with pytest.raises(ValueError, match=r"fiducial\['a'\].*nan"):
        ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": float("nan"), "b": 2.0})
    with pytest.raises(ValueError) as info:
        ff.FisherMatrix(np.eye(2), ["a", "b"], labels={"z": "zeta"})
    assert "`labels`" in message_of(info) and "['z']" in message_of(info)
    with pytest.raises(TypeError, match=r"`name`.*42"):
        ff.FisherMatrix(np.eye(1), ["a"], name=42)
    with pytest.raises(TypeError, match="`metadata`"):
        ff.FisherMatrix(np.eye(1), ["a"], metadata=[1, 2])


def test_combining_matrices_with_conflicting_fiducials():
    A = ff.FisherMatrix(np.eye(2), ["h", "Om"], fiducial={"h": 0.7, "Om": 0.3})
    B = ff.FisherMatrix(np.eye(1), ["h"], fiducial={"h": 0.67})
    with pytest.raises(ValueError) as info:
        A + B
    msg = message_of(info)
    assert "'h'" in msg and "0.7" in msg and "0.67" in msg


@pytest.fixture
def F():
    return ff.FisherMatrix([[2.0, 0.5], [0.5, 1.0]], ["a", "b"], fiducial={"a": 1.0, "b": -2.0})


def test_operations_with_unknown_names(F):
    for call in (
        lambda: F.marginalize(["a", "zz"]),
        lambda: F.fix(["zz"]),
        lambda: F.with_prior({"zz": 1.0}),
        lambda: F.ellipse("a", "zz"),
        lambda: F.to_log(["zz"]),
        lambda: F.figure_of_merit(["a", "zz"]),
    ):
        with pytest.raises(KeyError) as info:
            call()
        assert "['zz']" in message_of(info) and "['a', 'b']" in message_of(info)
    with pytest.raises(ValueError, match=r"\['a'\] more than once"):
        F.fix(["a", "a"])


def test_operations_with_bad_values(F):
    with pytest.raises(ValueError, match=r"prior sigma for 'a'.*-1\.0"):
        F.with_prior({"a": -1.0})
    with pytest.raises(ValueError, match=r"prior sigma for 'a'.*0\.0"):
        F.with_prior({"a": 0.0})
    with pytest.raises(TypeError, match="with_prior"):
        F.with_prior([1.0])
    with pytest.raises(ValueError, match=r"-3"):
        F * -3
    with pytest.raises(ValueError, match=r"to_log.*'b': -2\.0"):
        F.to_log()
    with pytest.raises(ValueError, match="fiducial"):
        ff.FisherMatrix(np.eye(1), ["a"]).to_log()
    with pytest.raises(ValueError, match=r"`level`.*1\.5"):
        F.ellipse("a", "b", level=1.5)
    with pytest.raises(ValueError, match=r"`level`.*0"):
        ff.delta_chi2_2d(0)
    with pytest.raises(ValueError, match=r"precision.*'quad'"):
        F.covariance(precision="quad")


def test_reparameterize_errors(F):
    with pytest.raises(KeyError) as info:
        F.reparameterize(lambda p: {"a": p["x"]}, inverse=True, fiducial={"x": 1.0})
    assert "['b']" in message_of(info)
    with pytest.raises(ValueError, match="does not reproduce"):
        F.reparameterize(
            lambda p: {"a": p["x"], "b": p["y"]}, inverse=True, fiducial={"x": 1.0, "y": 5.0}
        )
    with pytest.raises(ValueError, match="one-to-one") as info:
        F.reparameterize(lambda p: {"s": p["a"] + p["b"]})
    assert "['s']" in message_of(info)
    with pytest.raises(ValueError, match="singular"):
        F.reparameterize(lambda p: {"s": p["a"] + p["b"], "t": 2 * (p["a"] + p["b"])})
    with pytest.raises(ValueError, match="`fiducial`"):
        F.reparameterize(lambda p: p, inverse=True)
