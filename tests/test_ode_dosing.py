"""Doses, infusions, piecewise inputs and pre-equilibration in ``ff.ode_model``.

Every reference is a closed form (superposition of one-compartment doses, the infusion
solution, the analytic steady state) and its derivative (``jax.jacfwd`` of the closed
form, or hand-derived), never the code under test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._ode import ode_model

RTOL, ATOL = 1e-11, 1e-13  # tight tolerances: the references are exact


def oral(t, y, p):
    """Gut (state 0) -> central (state 1), first-order absorption ka and elimination ke."""
    return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["ke"] * y[1]])


def superposition(p, design, n_doses=3):
    """Concentration after doses of `amount` at 0, tau, 2 tau (Bateman function, summed)."""
    ka, ke, v, tau = p["ka"], p["ke"], p["V"], p["tau"]
    t = design["times"]
    c = jnp.zeros_like(t)
    for k in range(n_doses):
        dt = t - k * tau
        safe = jnp.where(dt > 0, dt, 1.0)
        one = design["amount"][k] / v * ka / (ka - ke) * (jnp.exp(-ke * safe) - jnp.exp(-ka * safe))
        c = c + jnp.where(dt > 0, one, 0.0)
    return c


def params(**kw):
    base = {"ka": 1.3, "ke": 0.21, "V": 10.0, "tau": 12.0}
    base.update(kw)
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in base.items()}


@pytest.fixture(scope="module")
def oral_model():
    calls = []

    def doses(p, design):
        calls.append(1)  # counts traces: a recompilation would call this again
        return p["tau"] * jnp.arange(3.0), design["amount"]

    model = ode_model(
        oral, jnp.zeros(2), lambda y, p: y[1] / p["V"], doses=doses, rtol=RTOL, atol=ATOL
    )
    return model, calls


def test_multiple_oral_doses_match_superposition(oral_model):
    """Values, parameter and design derivatives (dose amounts, measurement times, the dose
    interval as a parameter) against the analytic superposition, to 1e-8."""
    model, calls = oral_model
    times = np.array([0.5, 3.0, 11.0, 12.0, 13.0, 25.0, 30.0, 48.0])
    at_dose = 3  # t = 12 = tau: a measurement at a dose time
    with jax.enable_x64(True):
        design = {"times": jnp.asarray(times), "amount": jnp.array([100.0, 50.0, 80.0])}
        both = jax.jit(jax.jacfwd(lambda p, d: (model(p, d),) * 2, argnums=(0, 1), has_aux=True))
        (jp, jd), values = both(params(), design)
        ref = superposition(params(), design)
        rp, rd = jax.jacfwd(superposition, argnums=(0, 1))(params(), design)
        n_calls = len(calls)
        both(params(ka=1.1), {**design, "amount": design["amount"] * 2})  # no retrace
        jp, jd, values, ref, rp, rd = jax.tree_util.tree_map(
            np.asarray, (jp, jd, values, ref, rp, rd)
        )
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, ref, rtol=1e-8)
    # Right-continuous state: at t = 12 the gut holds the second dose and the central
    # compartment none of it yet. The derivatives there are those of the branch "dose
    # given" (the closed form above uses the other branch): moving the dose earlier by dτ,
    # or the sample later by dt, adds ka·D₂/V per unit.
    slope = 1.3 * 50.0 / 10.0
    np.testing.assert_allclose(jp["tau"][at_dose], rp["tau"][at_dose] - slope, rtol=1e-8)
    np.testing.assert_allclose(
        jd["times"][at_dose, at_dose], rd["times"][at_dose, at_dose] + slope, rtol=1e-8
    )
    keep = np.arange(times.size) != at_dose
    rp["tau"], jp["tau"] = rp["tau"][keep], jp["tau"][keep]
    rd["times"], jd["times"] = rd["times"][keep], jd["times"][keep]
    for name in ("ka", "ke", "V", "tau"):
        scale = np.max(np.abs(rp[name]))
        np.testing.assert_allclose(jp[name], rp[name], atol=1e-8 * scale, err_msg=name)
    for name in ("times", "amount"):
        scale = np.max(np.abs(rd[name]))
        np.testing.assert_allclose(jd[name], rd[name], atol=1e-8 * scale, err_msg=name)
    assert len(calls) == n_calls


def infusion_exact(p, t):
    """One compartment, rate R from ts to ts + T, elimination k, y(0) = A0: amount A(t)."""
    k, rate, ts, dur = p["k"], p["R"], p["ts"], p["T"]
    during = rate / k * (1 - jnp.exp(-k * jnp.clip(t - ts, 0.0, None)))
    end = rate / k * (1 - jnp.exp(-k * dur))
    after = end * jnp.exp(-k * (t - ts - dur))
    infused = jnp.where(t < ts, 0.0, jnp.where(t < ts + dur, during, after))
    return infused + p["A0"] * jnp.exp(-k * t)


def input_exact(p, t):
    """y' = u(t) - k y, y(0) = 0, with u = 0, 2, 0.5 switching at 1 and 3."""
    k = p["k"]
    y3 = 2.0 / k * (1 - jnp.exp(-k * 2.0))
    rising = 2.0 / k * (1 - jnp.exp(-k * jnp.clip(t - 1.0, 0.0, None)))
    falling = 0.5 / k + (y3 - 0.5 / k) * jnp.exp(-k * (t - 3.0))
    return jnp.where(t < 1.0, 0.0, jnp.where(t < 3.0, rising, falling))


def test_zero_order_infusion_and_piecewise_input_match_closed_forms():
    """y' = u(t) - k y + infusion: the equation is linear, so the solution is the sum of
    the infusion and the input closed forms; derivatives in the infusion's start,
    duration and rate are exact too."""
    model = ode_model(
        lambda t, y, p, u: u - p["k"] * y,
        lambda p: p["A0"],
        infusions=lambda p, d: (p["ts"], p["T"], p["R"]),
        inputs=([1.0, 3.0], [0.0, 2.0, 0.5]),
        rtol=RTOL,
        atol=ATOL,
    )

    def exact(p, t):
        return infusion_exact(p, t) + input_exact(p, t)

    times = np.array([0.5, 1.5, 2.5, 3.5, 4.0, 7.0])
    fid = {"k": 0.4, "R": 3.0, "ts": 1.2, "T": 2.0, "A0": 1.0}
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in fid.items()}
        t = jnp.asarray(times)
        jac, values = jax.jit(jax.jacfwd(lambda p: (model(p, t),) * 2, has_aux=True))(p)
        ref = exact(p, t)
        rjac = jax.jacfwd(exact)(p, t)
        jac, values, ref, rjac = jax.tree_util.tree_map(np.asarray, (jac, values, ref, rjac))
    np.testing.assert_allclose(values, ref, rtol=1e-9)
    for name in p:
        np.testing.assert_allclose(jac[name], rjac[name], atol=1e-8 * np.abs(rjac[name]).max())


def test_preequilibration_matches_analytic_steady_state():
    """Production s·u, y1 -> y2 at k1, y2 removed at k2: steady state (s u/k1, s u/k2).
    Pre-equilibrated with u = 1, stimulated with u = 3 from t = 0."""

    def rhs(t, y, p, u):
        return jnp.stack([p["s"] * u - p["k1"] * y[0], p["k1"] * y[0] - p["k2"] * y[1]])

    model = ode_model(
        rhs, jnp.zeros(2), inputs=([0.0], [1.0, 3.0]), preequilibrate=True, rtol=RTOL, atol=ATOL
    )

    def exact(p, t):
        s, k1, k2 = p["s"], p["k1"], p["k2"]
        y1 = 3 * s / k1 - 2 * s / k1 * jnp.exp(-k1 * t)
        # y2' = k1 y1 - k2 y2, y2(0) = s/k2: particular + homogeneous solution.
        c = -2 * s / (k2 - k1)
        y2 = 3 * s / k2 + c * jnp.exp(-k1 * t) + (s / k2 - 3 * s / k2 - c) * jnp.exp(-k2 * t)
        return jnp.stack([y1, y2], axis=-1)

    times = np.array([0.0, 0.3, 1.0, 4.0])
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in {"s": 2.0, "k1": 0.8, "k2": 0.3}.items()}
        t = jnp.asarray(times)
        jac, values = jax.jit(jax.jacfwd(lambda p: (model(p, t),) * 2, has_aux=True))(p)
        ref = exact(p, t)
        rjac = jax.jacfwd(exact)(p, t)
        jac, values, ref, rjac = jax.tree_util.tree_map(np.asarray, (jac, values, ref, rjac))
    np.testing.assert_allclose(values[0], [2.0 / 0.8, 2.0 / 0.3], rtol=1e-9)
    np.testing.assert_allclose(values, ref, rtol=1e-8)
    # ∂y*/∂k1 at t0 = (-s/k1², 0): the implicit-function sensitivity.
    np.testing.assert_allclose(jac["k1"][0], [-2.0 / 0.64, 0.0], atol=1e-8)
    for name in p:
        np.testing.assert_allclose(jac[name], rjac[name], atol=1e-8 * np.abs(rjac[name]).max())


@pytest.mark.slow
def test_fisher_of_a_dosed_model_matches_closed_form_jacobian(oral_model):
    model, _ = oral_model
    times = np.array([1.0, 4.0, 13.0, 20.0, 26.0, 40.0])
    design = {"times": times, "amount": np.array([100.0, 100.0, 100.0])}
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.2), design=design)
    fid = {"ka": 1.3, "ke": 0.21, "V": 10.0, "tau": 12.0}
    fmat = ff.fisher(exp, fid, params=["ka", "ke", "V"])
    with jax.enable_x64(True):
        d = jax.tree_util.tree_map(jnp.asarray, design)
        jac = jax.jacfwd(superposition)(params(), d)
        j = np.stack([np.asarray(jac[k]) for k in fmat.names], axis=1)
    np.testing.assert_allclose(fmat.matrix, j.T @ j / 0.04, rtol=1e-7)


def _list_rhs(t, y, p):
    return [-p["k"] * y[0], p["k"] * y[0]]


def _numpy_rhs(t, y, p):
    return -np.exp(p["k"]) * y


def _if_rhs(t, y, p):
    if p["k"] > 0:
        return -p["k"] * y
    return y


@pytest.mark.parametrize(
    "rhs, y0, match",
    [
        (_list_rhs, np.ones(2), "jnp.stack"),
        (_numpy_rhs, 1.0, "jax.numpy"),
        (_if_rhs, 1.0, "jnp.where"),
    ],
)
def test_untraceable_rhs_gets_an_error_that_says_what_to_do(rhs, y0, match):
    model = ode_model(rhs, y0)
    exp = ff.Experiment(model, ff.Gaussian(sigma=0.1), design=np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=match):
        ff.fisher(exp, {"k": 1.0})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"doses": ([-1.0, 2.0], [1.0, 1.0])}, "before t0"),
        ({"doses": ([1.0, 2.0], [1.0])}, "same length"),
        ({"doses": [1.0]}, "tuple of 2"),
        ({"infusions": ([1.0], [-2.0], [1.0])}, "durations"),
        ({"inputs": ([1.0], [1.0])}, "one more value"),
        ({"preequilibrate": "yes"}, "preequilibrate"),
        ({"dose_into": 1.5}, "dose_into"),
    ],
)
def test_bad_schedules_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ode_model(lambda t, y, p: -y, 1.0, **kwargs)


def test_traced_dose_before_t0_gives_nan():
    model = ode_model(lambda t, y, p: -y, 1.0, doses=lambda p, d: (p["td"], 1.0))
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(model)({"td": jnp.asarray(-1.0)}, jnp.array([1.0, 2.0])))
    assert np.all(np.isnan(out))
