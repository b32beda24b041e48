"""Tests of ``ode_model`` against closed-form solutions and their analytic derivatives.

Every reference value is computed from mathematics (closed forms and their hand-derived
derivatives), never from the code under test. x64 is enabled only locally, with
``jax.enable_x64(True)``; the global configuration is left alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._ode import ODEModel, check_solve, ode_model

TIMES = np.array([1.0, 0.0, 0.5, 3.0, 2.0])  # unsorted on purpose, includes t0 = 0
K, A = 0.7, 2.0


def decay_rhs(t, y, p):
    return -p["k"] * y


def decay_exact(t, k=K, a=A):
    """y' = -k y, y(0) = a  =>  y = a exp(-k t)."""
    return a * np.exp(-k * t)


def params(k=K, a=A):
    return {"k": jnp.asarray(k), "A": jnp.asarray(a)}


def with_jacobians(model):
    """jit(params, times -> (values, (∂/∂params, ∂/∂times))): one compilation for all three."""
    return jax.jit(jax.jacfwd(lambda p, t: (model(p, t),) * 2, argnums=(0, 1), has_aux=True))


@pytest.fixture(scope="module")
def decay():
    return ode_model(decay_rhs, y0=lambda p: p["A"])


@pytest.fixture(scope="module")
def decay_fwd(decay):
    return with_jacobians(decay)


@pytest.fixture(scope="module")
def decay_batched(decay):
    return jax.jit(jax.vmap(with_jacobians(decay), in_axes=(0, None)))


# -- values --------------------------------------------------------------------------------


def test_decay_matches_closed_form_in_float64(decay, decay_fwd):
    with jax.enable_x64(True):
        (jac_p, jac_t), y = decay_fwd(params(), jnp.asarray(TIMES))
    assert isinstance(decay, ODEModel)
    assert y.dtype == jac_p["k"].dtype == jac_t.dtype == jnp.float64
    assert y.shape == TIMES.shape
    np.testing.assert_allclose(np.asarray(y), decay_exact(TIMES), rtol=1e-8, atol=0)


def test_t0_in_times_returns_exactly_y0(decay_fwd):
    with jax.enable_x64(True):
        _, y = decay_fwd(params(a=1.234), jnp.asarray(TIMES))
        _, y_only_t0 = decay_fwd(params(a=1.234), jnp.zeros(5))  # t1 == t0: no steps at all
    assert float(y[1]) == 1.234
    np.testing.assert_array_equal(np.asarray(y_only_t0), np.full(5, 1.234))


def test_scalar_time(decay):
    with jax.enable_x64(True):
        y_scalar = jax.jit(decay)({"k": K, "A": A}, 1.5)
    assert y_scalar.shape == ()
    np.testing.assert_allclose(float(y_scalar), decay_exact(1.5), rtol=1e-8)


def test_logistic_matches_closed_form():
    # N' = r N (1 - N/K)  =>  N(t) = K / (1 + (K/N0 - 1) exp(-r t)).
    model = ode_model(lambda t, n, p: p["r"] * n * (1 - n / p["K"]), y0=lambda p: p["N0"])
    r, cap, n0 = 0.9, 50.0, 2.0
    t = np.linspace(0.0, 12.0, 7)
    with jax.enable_x64(True):
        n = jax.jit(model)({"r": r, "K": cap, "N0": n0}, jnp.asarray(t))
    exact = cap / (1 + (cap / n0 - 1) * np.exp(-r * t))
    np.testing.assert_allclose(np.asarray(n), exact, rtol=1e-8)


def test_vector_state_with_scalar_observable():
    # Harmonic oscillator x'' = -w^2 x, x(0) = x0, x'(0) = 0: x = x0 cos(w t).
    def rhs(t, y, p):
        return jnp.stack([y[1], -(p["w"] ** 2) * y[0]])

    def y0(p):
        return jnp.stack([p["x0"], 0.0 * p["x0"]])

    t = np.array([0.0, 0.3, 1.1, 2.5])
    with jax.enable_x64(True):
        pos = jax.jit(ode_model(rhs, y0, observe=lambda y, p: y[0]))(
            {"w": 1.7, "x0": 0.8}, jnp.asarray(t)
        )
    assert pos.shape == (4,)
    np.testing.assert_allclose(np.asarray(pos), 0.8 * np.cos(1.7 * t), rtol=1e-7, atol=1e-9)


# -- parameter sensitivities ---------------------------------------------------------------


def test_jacfwd_matches_analytic_sensitivities(decay_fwd):
    # d/dk [A e^{-kt}] = -t A e^{-kt};  d/dA = e^{-kt}  (A enters through y0).
    with jax.enable_x64(True):
        (jac, _), _ = decay_fwd(params(), jnp.asarray(TIMES))
    np.testing.assert_allclose(np.asarray(jac["k"]), -TIMES * decay_exact(TIMES), atol=1e-8)
    np.testing.assert_allclose(np.asarray(jac["A"]), np.exp(-K * TIMES), atol=1e-8)


def test_reverse_mode_agrees_with_forward_mode(decay_fwd):
    reverse = ode_model(decay_rhs, y0=lambda p: p["A"], adjoint="reverse")
    with jax.enable_x64(True):
        t = jnp.asarray(TIMES)
        (fwd_p, _), y = decay_fwd(params(), t)
        rev_p, rev_t = jax.jit(jax.jacrev(reverse, argnums=(0, 1)))(params(), t)
    for name in ("k", "A"):
        np.testing.assert_allclose(np.asarray(rev_p[name]), np.asarray(fwd_p[name]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(rev_t), np.diag(-K * np.asarray(y)), rtol=1e-14)


def test_jit_and_vmap_over_parameter_batch(decay_batched):
    ks = np.array([0.3, 0.7, 1.5])
    amps = np.array([1.0, 2.0, 0.5])
    with jax.enable_x64(True):
        batch = {"k": jnp.asarray(ks), "A": jnp.asarray(amps)}
        (jac, _), ys = decay_batched(batch, jnp.asarray(TIMES))
    exact = amps[:, None] * np.exp(-ks[:, None] * TIMES)
    np.testing.assert_allclose(np.asarray(ys), exact, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(jac["k"]), -TIMES * exact, atol=1e-8)


# -- derivatives with respect to the measurement times -------------------------------------


def test_time_gradient_equals_rhs(decay_fwd):
    with jax.enable_x64(True):
        (_, jac_t), y = decay_fwd(params(), jnp.asarray(TIMES))
    # ∂y(t_i)/∂t_j = δ_ij f(t_i, y_i) = -k y_i, and exactly so (not via interpolation).
    np.testing.assert_allclose(np.asarray(jac_t), np.diag(-K * np.asarray(y)), rtol=1e-14)
    np.testing.assert_allclose(np.diag(np.asarray(jac_t)), -K * decay_exact(TIMES), rtol=1e-8)


def test_second_time_derivative_and_mixed_derivative(decay):
    e = decay_exact(TIMES)
    with jax.enable_x64(True):
        # ∂/∂t of (∂y/∂θ, ∂y/∂t): mixed ∂²y/∂k∂t and ∂²y/∂t².
        d_dt = jax.jit(jax.jacfwd(jax.jacfwd(decay, argnums=(0, 1)), argnums=1))
        d2_dkdt, d2_dt2 = d_dt(params(), jnp.asarray(TIMES))
    d2_dkdt, d2_dt2 = np.asarray(d2_dkdt["k"]), np.asarray(d2_dt2)
    np.testing.assert_allclose(np.einsum("iii->i", d2_dt2), K**2 * e, rtol=1e-8)
    # d/dk (-k A e^{-kt}) = -A e^{-kt} + k t A e^{-kt}
    np.testing.assert_allclose(np.diag(d2_dkdt), -e + K * TIMES * e, atol=1e-8)
    assert np.count_nonzero(d2_dkdt - np.diag(np.diag(d2_dkdt))) == 0


def test_design_gradient_of_fisher_logdet(decay):
    # D-optimality criterion log det(JᵀJ) of the (k, A) Jacobian; its gradient with
    # respect to the times by reverse mode over jacfwd (what a design optimiser does, with
    # the default forward-mode adjoint) against the closed form.
    def logdet(jac_fn, times):
        jac = jac_fn(times)
        j = jnp.stack([jac["k"], jac["A"]], axis=-1)
        return jnp.linalg.slogdet(j.T @ j)[1]

    def exact_jac(times):
        e = A * jnp.exp(-K * times)
        return {"k": -times * e, "A": e / A}

    with jax.enable_x64(True):
        t = jnp.array([0.5, 1.0, 3.0])
        g = jax.jit(jax.grad(lambda s: logdet(lambda u: jax.jacfwd(decay)(params(), u), s)))(t)
        g_exact = jax.grad(lambda s: logdet(exact_jac, s))(t)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_exact), rtol=1e-6, atol=1e-8)


# -- stiff problems ------------------------------------------------------------------------


def stiff_exact(t, a):
    """y1' = -a y1 + y2, y2' = -y2, y(0) = (1, 1):
    y2 = e^{-t}, y1 = e^{-a t} + (e^{-t} - e^{-a t}) / (a - 1)."""
    return np.exp(-a * t) + (np.exp(-t) - np.exp(-a * t)) / (a - 1), np.exp(-t)


def stiff_rhs(t, y, p):
    return jnp.stack([-p["a"] * y[0] + y[1], -y[1]])


def test_stiff_solver_on_stiff_linear_system():
    a = 1.0e4
    t = np.array([0.0, 1e-3, 0.1, 1.0, 20.0])
    # Tsit5 is stability-limited to dt ~ 3/a, i.e. more than 2000 steps on [0, 20] (it
    # fails with this max_steps); Kvaerno5 needs ~200.
    stiff = ode_model(stiff_rhs, jnp.array([1.0, 1.0]), stiff=True, max_steps=2000)
    with jax.enable_x64(True):
        (jac, _), ys = with_jacobians(stiff)({"a": a}, jnp.asarray(t))
    y1, y2 = stiff_exact(t, a)
    assert ys.shape == (5, 2)  # default observe: the whole state
    np.testing.assert_allclose(np.asarray(ys), np.stack([y1, y2], -1), rtol=1e-5, atol=1e-9)
    # d y1/da of the closed form, by hand.
    ea, e1 = np.exp(-a * t), np.exp(-t)
    exact_da = -t * ea + (t * ea) / (a - 1) - (e1 - ea) / (a - 1) ** 2
    np.testing.assert_allclose(np.asarray(jac["a"][:, 0]), exact_da, rtol=1e-4, atol=1e-12)


# -- failures ------------------------------------------------------------------------------


def test_failed_solve_gives_nan_values_and_nan_derivatives():
    model = ode_model(decay_rhs, y0=lambda p: p["A"], max_steps=5)
    with jax.enable_x64(True):
        (jac, jac_t), y = with_jacobians(model)(params(), 20.0 * jnp.asarray(TIMES))
    assert np.all(np.isnan(np.asarray(y)))  # even y(t0): the whole point is flagged
    for d in (jac["k"], jac["A"], jac_t):
        assert np.all(np.isnan(np.asarray(d)))


def test_one_bad_item_in_a_batch_does_not_spoil_the_others(decay_batched):
    with jax.enable_x64(True):
        batch = {"k": jnp.array([0.5, jnp.nan, 1.0]), "A": jnp.array([1.0, 1.0, 1.0])}
        (jac, _), ys = decay_batched(batch, jnp.asarray(TIMES))
    ys, jac = np.asarray(ys), np.asarray(jac["k"])
    assert np.all(np.isnan(ys[1])) and np.all(np.isnan(jac[1]))
    exact = np.exp(-np.array([[0.5], [1.0]]) * TIMES)
    np.testing.assert_allclose(ys[[0, 2]], exact, rtol=1e-8)
    np.testing.assert_allclose(jac[[0, 2]], -TIMES * exact, atol=1e-8)


def test_inadmissible_times_give_nan(decay_fwd):
    with jax.enable_x64(True):
        _, y = decay_fwd(params(), jnp.array([-1.0, 1.0, jnp.nan, jnp.inf, 0.0]))
    y = np.asarray(y)
    assert np.isnan(y[[0, 2, 3]]).all()
    np.testing.assert_allclose(y[[1, 4]], decay_exact(np.array([1.0, 0.0])), rtol=1e-8)


def test_check_solve_explains_failures():
    t = jnp.array([0.0, 100.0])
    with pytest.raises(RuntimeError, match=r"maximum number of solver steps.*raise max_steps"):
        check_solve(ode_model(decay_rhs, 1.0, max_steps=5), {"k": 1.0}, t)
    # One model for the remaining cases: observe sqrt(y), NaN when the state is negative.
    model = ode_model(decay_rhs, lambda p: p["y0"], observe=lambda y, p: jnp.sqrt(y))
    with pytest.raises(RuntimeError, match=r"not finite.*NaN"):
        check_solve(model, {"k": float("nan"), "y0": 1.0}, t)
    with pytest.raises(ValueError, match="t0"):
        check_solve(model, {"k": 1.0, "y0": 1.0}, [-1.0, 1.0])
    with pytest.raises(RuntimeError, match=r"succeeded.*not finite"):
        check_solve(model, {"k": 1.0, "y0": -1.0}, t)
    # And returns the float64 values when all is well.
    out = check_solve(model, {"k": K, "y0": 4.0}, np.array([0.0, 2.0]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, np.sqrt(decay_exact(np.array([0.0, 2.0]), a=4.0)), rtol=1e-7)


def test_throw_true_raises():
    model = ode_model(decay_rhs, 1.0, max_steps=5, throw=True)
    with jax.enable_x64(True), pytest.raises(RuntimeError, match="maximum number of solver"):
        jax.block_until_ready(jax.jit(model)({"k": 1.0}, jnp.array([0.0, 100.0])))


def test_autodiff_modes_advertised():
    assert ode_model(decay_rhs, 1.0).autodiff_modes == ("forward",)
    assert ode_model(decay_rhs, 1.0, adjoint="reverse").autodiff_modes == ("reverse",)
    assert ode_model(decay_rhs, 1.0, adjoint="direct").autodiff_modes == ("forward", "reverse")


def test_bad_arguments():
    with pytest.raises(ValueError, match="adjoint"):
        ode_model(decay_rhs, 1.0, adjoint="backwards")
    with pytest.raises(ValueError, match="max_steps"):
        ode_model(decay_rhs, 1.0, max_steps=0)
    with pytest.raises(ValueError, match="1-D"):
        ode_model(decay_rhs, 1.0)({"k": 1.0}, jnp.ones((2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": -1.0}, r"`rtol`.*received -1\.0"),
        ({"rtol": float("nan")}, r"`rtol`.*received nan"),
        ({"atol": -1.0}, r"`atol`.*received -1\.0"),
        ({"atol": [1e-10, -1e-10]}, r"`atol`.*received \[1e-10, -1e-10\]"),
        ({"dt0": -0.1}, r"`dt0`.*received -0\.1"),
        ({"dt0": 0}, r"`dt0`.*received 0"),
        ({"max_steps": 2.5}, r"`max_steps`.*received 2\.5"),
        ({"max_steps": True}, r"`max_steps`.*received True"),
        ({"observe": "y"}, r"`observe`.*received 'y'"),
    ],
)
def test_bad_solver_options_are_refused_at_construction(kwargs, match):
    # Unchecked, these gave silently wrong values (negative tolerances), raw runtime
    # errors (negative dt0) or a misleading "maximum number of steps" (dt0=0, rtol=nan).
    with pytest.raises((TypeError, ValueError), match=match):
        ode_model(decay_rhs, 1.0, **kwargs)


def test_valid_options_are_kept():
    with pytest.raises(TypeError, match=r"`rhs`.*received 1\.0"):
        ode_model(1.0, 1.0)
    model = ode_model(decay_rhs, jnp.ones(2), rtol=[1e-8, 1e-6], atol=0.0, max_steps=1e3, dt0=1e-3)
    assert model.max_steps == 1000 and isinstance(model.max_steps, int)


def test_rhs_shape_mismatch_names_both_shapes():
    # Caught when tracing, before diffrax sees the rhs: no solve is compiled.
    with pytest.raises(
        ValueError,
        match=r"rhs returned shape \(3,\) but the state y0 has "
        r"shape \(2,\)",
    ):
        ode_model(lambda t, y, p: jnp.ones(3), jnp.ones(2))({}, [1.0])
    with pytest.raises(ValueError, match=r"rhs returned shape \(\) but .* shape \(2,\)"):
        check_solve(ode_model(lambda t, y, p: -p["k"] * y[0], jnp.ones(2)), {"k": 1.0}, [1.0])


def test_check_solve_missing_parameter_and_check_times():
    model = ode_model(lambda t, y, p: -p["c"] * y, 1.0)
    with pytest.raises(ff.ParameterError, match=r"'c'.*Given names: \['k'\]"):
        check_solve(model, {"k": 1.0}, [1.0])
    # Inside ff.fisher the design is traced (NaN outputs only); check_times names the
    # offending times of an experiment's (concrete) design.
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=jnp.array([-1.0, 1.0, jnp.nan]))
    with pytest.raises(
        ValueError,
        match=r"index \[0, 2\]\): \[-1\.0\] before t0=0\.0 "
        r"and \[nan\] not finite",
    ):
        model.check_times(exp.design)
    np.testing.assert_array_equal(model.check_times(2.0), [2.0])
