"""Array-valued parameters through the dense path (ff.fisher): the model receives arrays,
the matrix names the elements, params= selects whole blocks, and the traced program does
not grow with the array's size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast import _compile
from fisherforecast._engine import evaluate

X = np.linspace(0.0, 1.0, 30)


def test_array_parameter_equals_the_same_model_on_scalars():
    seen = {}

    def vec_model(p, x):
        seen["shape"] = p["calib"].shape
        return p["A"] * p["calib"] * jnp.exp(-x) + p["B"] * x

    def scalar_model(p, x):
        calib = jnp.stack([p[f"c{i}"] for i in range(30)])
        return p["A"] * calib * jnp.exp(-x) + p["B"] * x

    calib = 1.0 + 0.1 * np.sin(np.arange(30.0))
    noise = ff.Gaussian(sigma=0.05 + 0.01 * X)
    Fv = ff.fisher(ff.Experiment(vec_model, noise, design=X), {"calib": calib, "A": 2.0, "B": 0.5})
    fid_s = {f"c{i}": float(c) for i, c in enumerate(calib)} | {"A": 2.0, "B": 0.5}
    Fs = ff.fisher(ff.Experiment(scalar_model, noise, design=X), fid_s)
    assert seen["shape"] == (30,)
    assert Fv.names[:2] == ("calib[0]", "calib[1]") and Fv.names[-2:] == ("A", "B")
    assert np.allclose(Fv.matrix, Fs.matrix, rtol=1e-13, atol=0)
    assert (Fv.fiducial or {})["calib[3]"] == pytest.approx(calib[3])
    # closed form of one entry: F[A, calib_k] = Σ A c_k e^{-2x_k}/σ_k² at k only
    s = 0.05 + 0.01 * X
    k = 4
    want = 2.0 * calib[k] * np.exp(-2 * X[k]) / s[k] ** 2
    assert Fv.matrix[k, 30] == pytest.approx(want, rel=1e-13)


def test_params_select_whole_blocks_and_matrix_algebra_takes_block_names():
    def model(p, x):
        return p["A"] * p["calib"] * x + p["B"]

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=X)
    fid = {"calib": np.ones(30), "A": 1.0, "B": 0.5}
    F = ff.fisher(exp, fid, params=["calib", "B"])
    assert F.n_params == 31 and "A" not in F.names
    assert F.metadata["fixed"] == {"A": 1.0}
    assert F.fix("calib").names == ("B",)
    assert F.marginalize(["B"]).names == ("B",)
    # a 2-D array parameter: names in C order with both indices
    exp2 = ff.Experiment(
        lambda p, x: p["M"].sum(0)[0] * x + p["M"][1, 0], ff.Gaussian(1.0), design=X
    )
    F2 = ff.fisher(exp2, {"M": np.ones((2, 2))})
    assert F2.names == ("M[0,0]", "M[0,1]", "M[1,0]", "M[1,1]")


def test_errors_for_array_parameters():
    exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=0.1), design=X)
    with pytest.raises(ff.ParameterError, match="whole array"):
        ff.fisher(exp, {"c": np.ones(30)}, params=["c[0]"])
    with pytest.raises(ValueError, match=r"clash"):
        ff.fisher(exp, {"c": np.ones(2), "c[0]": 1.0})
    with pytest.raises(ValueError, match=r"fiducial\['c'\].*finite"):
        ff.fisher(exp, {"c": np.array([1.0, np.nan])})
    # analyses that need named scalars say so and point to the ones that do not
    with pytest.raises(ValueError, match=r"ff\.fisher and ff\.fisher_operator"):
        ff.bias(exp, {"c": np.ones(30)}, np.zeros(30))


def _n_equations(P):
    exp = ff.Experiment(
        lambda p, x: p["A"] * jnp.tanh(p["w"]).sum() * x + p["w"][0], ff.Gaussian(0.1), design=X
    )
    fid = {"w": np.ones(P), "A": 1.0}
    with jax.enable_x64(True):
        jaxpr = jax.make_jaxpr(lambda f: evaluate(exp, f, ("w", "A")).fisher)(fid)
    return len(jaxpr.jaxpr.eqns)


def test_traced_program_does_not_grow_with_the_array_size():
    """Compile time follows the size of the traced program: it is the same for 10 and
    2000 elements (a dict of 2000 scalars would have thousands of equations)."""
    assert _n_equations(10) == _n_equations(2000)


def test_no_retrace_for_new_values_of_the_same_shape():
    exp = ff.Experiment(lambda p, x: p["A"] * p["c"] * x, ff.Gaussian(sigma=0.1), design=X)
    ff.fisher(exp, {"c": np.ones(30), "A": 1.0})
    before = _compile.compile_stats()["lowerings"]
    ff.fisher(exp, {"c": np.full(30, 2.0), "A": 3.0})
    assert _compile.compile_stats()["lowerings"] == before


def test_fisher_matrix_prior_on_a_block():
    F = ff.FisherMatrix(np.eye(3), ["c[0]", "c[1]", "A"])
    assert np.allclose(np.diag(F.with_prior({"c": 0.5}).matrix), [5.0, 5.0, 1.0])
    both = F.with_prior({"c": [0.5, 1.0], "A": 2.0})
    assert np.allclose(np.diag(both.matrix), [5.0, 2.0, 1.25])
    with pytest.raises(ValueError, match="one number or 2"):
        F.with_prior({"c": [1.0, 2.0, 3.0]})
