"""Reliability of the evaluation path: faults a user met while probing the library with bad
models and inputs. Each test reproduces one probe and checks the error or warning it now gets."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff

T = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
FID = {"a": 1.0, "b": 2.0}


def line(p, t):
    return p["a"] + p["b"] * t


# ---------------------------------------------------------------------------------------
# 1. Integer and boolean model outputs
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_bool_model_output_is_refused(dtype):
    exp = ff.Experiment(
        lambda p, t: (p["a"] + p["b"] * t).astype(dtype), ff.Gaussian(sigma=0.1), design=T
    )
    with pytest.raises(TypeError) as info:
        ff.fisher(exp, FID)
    msg = str(info.value)
    assert "integer or boolean" in msg and "derivative" in msg


# ---------------------------------------------------------------------------------------
# 2. Error attribution
# ---------------------------------------------------------------------------------------
def test_keyerror_from_the_users_own_dict_is_not_called_a_missing_parameter():
    table = {"x": 1.0}

    def model(p, t):
        return p["a"] * table["y"] + p["b"] * t

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=T)
    with pytest.raises(KeyError) as info:
        ff.fisher(exp, FID)
    assert not isinstance(info.value, ff.ParameterError)
    assert info.value.args == ("y",)


def test_missing_parameter_is_still_named():
    exp = ff.Experiment(lambda p, t: p["a"] + p["c"] * t, ff.Gaussian(sigma=0.1), design=T)
    with pytest.raises(ff.ParameterError, match="'c'"):
        ff.fisher(exp, FID)


def test_params_lookups_by_get_and_tree_map_still_work():
    def model(p, t):
        q = jax.tree_util.tree_map(lambda v: 2.0 * v, p)
        return q["a"] + p.get("b", 0.0) * t + p.get("absent", 0.0)

    F = ff.fisher(ff.Experiment(model, ff.Gaussian(sigma=1.0), design=T), FID)
    assert F.matrix[0, 0] == pytest.approx(4.0 * len(T))


@pytest.mark.parametrize("returned", [None, "oops"])
def test_model_returning_none_or_a_string_says_what_it_returned(returned):
    exp = ff.Experiment(lambda p, t: returned, ff.Gaussian(sigma=0.1), design=T)
    with pytest.raises(TypeError) as info:
        ff.fisher(exp, FID)
    assert repr(returned) in str(info.value) and "returned" in str(info.value)


def test_design_of_strings_is_refused_at_construction_naming_the_leaf():
    with pytest.raises(ff.InputError) as info:
        ff.Experiment(line, ff.Gaussian(sigma=0.1), design={"t": T, "unit": "s"})
    msg = str(info.value)
    assert "`design`" in msg and "unit" in msg and "'s'" in msg


@pytest.mark.parametrize("transform", ["jit", "grad"])
def test_jit_or_grad_around_ff_fisher_points_to_fisher_information(transform):
    exp = ff.Experiment(line, ff.Gaussian(sigma=0.1), design=T)

    def f(a):
        return ff.fisher(exp, {"a": a, "b": 2.0}).matrix[0, 0]

    wrapped = jax.jit(f) if transform == "jit" else jax.grad(f)
    with pytest.raises(ff.InputError) as info:
        wrapped(1.0)
    msg = str(info.value)
    assert "ff.fisher_information" in msg and "traced" in msg


# ---------------------------------------------------------------------------------------
# 3. Runtime errors raised inside the model
# ---------------------------------------------------------------------------------------
def test_runtime_error_inside_the_model_surfaces_its_own_message():
    eqx = pytest.importorskip("equinox")

    def model(p, t):
        out = p["a"] + p["b"] * t
        return eqx.error_if(out, p["a"] > 0.5, "amplitude above the threshold")

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=T, name="probe")
    with pytest.raises(ff.FisherError) as info:
        ff.fisher(exp, FID)
    msg = str(info.value)
    assert "amplitude above the threshold" in msg and "'probe'" in msg
    assert "CpuCallback" not in msg


# ---------------------------------------------------------------------------------------
# 4. Float32 inputs
# ---------------------------------------------------------------------------------------
@pytest.fixture
def fresh_float32_warnings(monkeypatch):
    """Forget which float32 warnings this process already gave (they are once per process)."""
    from fisherforecast import _values

    monkeypatch.setattr(_values, "_FLOAT32_WARNED", set())


def test_float32_design_warns_once_with_the_fix(fresh_float32_warnings):
    t32 = jnp.linspace(0.0, 10.0, 50)  # JAX's float32 default: already rounded
    assert t32.dtype == jnp.float32
    with pytest.warns(UserWarning, match=r"float32.*np\.linspace.*enable_x64"):
        ff.Experiment(line, ff.Gaussian(sigma=0.1), design=t32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ff.Experiment(line, ff.Gaussian(sigma=0.1), design=t32)  # once per process


def test_float32_noise_arrays_warn(fresh_float32_warnings):
    with pytest.warns(UserWarning, match="noise model received a float32"):
        ff.Gaussian(sigma=jnp.full(5, 0.1))
    with pytest.warns(UserWarning, match="noise model received a float32"):
        from fisherforecast import _values

        _values._FLOAT32_WARNED.clear()
        ff.PSD(jnp.ones(5), 0.5)


def test_float64_and_numpy_inputs_do_not_warn(fresh_float32_warnings):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ff.Experiment(line, ff.Gaussian(sigma=np.full(5, 0.1)), design=np.linspace(0, 1, 5))
        ff.Experiment(line, ff.Gaussian(sigma=0.1), design=[1.0, 2.0])
        with jax.enable_x64(True):
            ff.Experiment(line, ff.Gaussian(sigma=jnp.full(5, 0.1)), design=jnp.linspace(0, 1, 5))


def test_readme_quickstart_and_examples_do_not_build_float32_arrays(
    fresh_float32_warnings, tmp_path, monkeypatch
):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)  # the README saves decay.h5
    readme = (root / "README.md").read_text()
    code = readme.split("```python", 1)[1].split("```", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        exec(compile(code, "README.md", "exec"), {})
    quick = (root / "examples" / "quickstart.py").read_text()
    assert "design=jnp." not in quick and "design=jnp." not in readme


# ---------------------------------------------------------------------------------------
# 6. Digits lost to ill-conditioning
# ---------------------------------------------------------------------------------------
def ill_conditioned(cond, P=4, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(P, P)))
    F = (Q * np.logspace(0, -np.log10(cond), P)) @ Q.T
    return 0.5 * (F + F.T)


def mpmath_sigma(F):
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        M = mpmath.matrix(F.tolist())
        inv = M**-1
        return np.array([float(mpmath.sqrt(inv[i, i])) for i in range(F.shape[0])])


def test_sigma_warns_when_the_condition_number_costs_digits():
    F = ff.FisherMatrix(ill_conditioned(1e14), ["a", "b", "c", "d"])
    assert 1e13 < F.condition_number < 1e15
    with pytest.warns(UserWarning, match=r"condition number.*digits.*precision='mpmath'"):
        s = F.sigma()
    exact = mpmath_sigma(F.matrix)
    err = np.max(np.abs(np.array(list(s.values())) / exact - 1))
    assert err > 1e-9  # float64 really did lose digits: the warning is deserved
    # The suggested remedy agrees with mpmath to float64 rounding, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hp = F.sigma(precision="mpmath")
    assert np.allclose(np.array(list(hp.values())), exact, rtol=1e-12, atol=0)


def test_well_conditioned_inverse_does_not_warn():
    F = ff.FisherMatrix(ill_conditioned(1e8), ["a", "b", "c", "d"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = F.sigma()
    assert np.allclose(np.array(list(s.values())), mpmath_sigma(F.matrix), rtol=1e-6)


# ---------------------------------------------------------------------------------------
# 5. Information below float64's range (underflow in the contraction)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-154, 1e-155, 1e-170])
def test_information_flushed_to_zero_is_reported_with_the_fix(scale):
    def model(p, t):
        return scale * p["a"] * t + p["b"] * t

    exp = ff.Experiment(model, ff.Gaussian(sigma=1.0), design=T, name="tiny")
    with pytest.raises(ff.FisherError) as info:
        ff.fisher(exp, FID)
    msg = str(info.value)
    assert "underflow" in msg and "['a']" in msg and "'tiny'" in msg and "rescale" in msg.lower()


def test_tiny_but_representable_information_passes_and_zero_dependence_is_not_underflow():
    def model(p, t):
        return 1e-140 * p["a"] * t + p["b"] * t

    F = ff.fisher(ff.Experiment(model, ff.Gaussian(sigma=1.0), design=T), FID)
    assert F.matrix[0, 0] == pytest.approx(1e-280 * np.sum(T**2), rel=1e-12)
    exp = ff.Experiment(lambda p, t: p["b"] * t, ff.Gaussian(sigma=1.0), design=T)
    F = ff.fisher(exp, FID)  # 'a' not used: zero information, no underflow error
    assert F.matrix[0, 0] == 0.0


def test_a_structural_zero_costs_no_second_compilation():
    """A parameter the model does not use has zero information; telling that apart from an
    underflow must not compile the Jacobian a second time (a single-measurement candidate
    of a PEtab problem paid ~5 s for it)."""
    from fisherforecast import _compile

    exp = ff.Experiment(lambda p, t: p["b"] * t**3, ff.Gaussian(sigma=1.0), design=T)
    _compile.reset_compile_stats()
    F = ff.fisher(exp, FID)
    assert _compile.compile_stats()["lowerings"] == 1
    assert F.matrix[0, 0] == 0.0 and F.matrix[1, 1] == pytest.approx(np.sum(T**6), rel=1e-12)


def test_runtime_error_inside_the_model_in_ff_bias_surfaces_its_own_message():
    eqx = pytest.importorskip("equinox")

    def model(p, t):
        return eqx.error_if(p["a"] + p["b"] * t, p["a"] > 0.5, "bias probe threshold")

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=T, name="probe")
    with pytest.raises(ff.FisherError, match="bias probe threshold"):
        ff.bias(exp, FID, 0.01 * T)
