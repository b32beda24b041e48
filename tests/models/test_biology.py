"""Biology / pharmacometrics zoo, checked against mathematics.

Every reference is computed independently of ``models/biology.py``: closed forms typed from
the literature (Lambert W via ``scipy.special.lambertw``, Bateman, bi-exponential via the
matrix exponential), ``scipy.integrate.solve_ivp`` at rtol 1e-10 on right-hand sides written
out again here in numpy, and conservation laws / first integrals. Each ODE model is compiled
once (module fixtures) to keep the file fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, linalg, special

import fisherforecast as ff
from fisherforecast.models import biology as bio

pytestmark = pytest.mark.usefixtures("float64_context")


def as_np(x):
    return np.asarray(x, dtype=float)


def reference(rhs, y0, times, method="DOP853", atol=1e-12):
    """solve_ivp at rtol 1e-10; returns the states at `times`, shape (n_times, n_states)."""
    times = np.asarray(times, dtype=float)
    sol = integrate.solve_ivp(
        rhs,
        (0.0, times.max()),
        np.asarray(y0, dtype=float),
        method=method,
        t_eval=np.sort(times),
        rtol=1e-10,
        atol=atol,
    )
    assert sol.success, sol.message
    return sol.y.T[np.argsort(np.argsort(times))]


def jitted(model):
    return jax.jit(model)


# =========================================================================================
# Hill
# =========================================================================================


def test_hill_matches_formula_and_has_finite_derivatives_at_zero():
    p = bio.HILL_HEMOGLOBIN_FIDUCIAL
    x = np.array([0.0, 5.0, 26.8, 40.0, 100.0])
    y = as_np(bio.hill(p, x))
    exact = p["E0"] + p["Emax"] * x ** p["n"] / (p["EC50"] ** p["n"] + x ** p["n"])
    np.testing.assert_allclose(y, exact, rtol=1e-14, atol=1e-15)
    assert y[2] == pytest.approx(0.5, abs=1e-15)
    jac = jax.jit(jax.jacfwd(bio.hill))({k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(x))
    for name, col in jac.items():
        assert np.all(np.isfinite(as_np(col))), name
    # ∂E/∂n = Emax f (1 - f) ln(x/EC50), f the saturation fraction; 0 at x = 0.
    f = exact[1:]
    np.testing.assert_allclose(
        as_np(jac["n"])[1:], f * (1 - f) * np.log(x[1:] / p["EC50"]), rtol=1e-12, atol=1e-15
    )
    assert as_np(jac["n"])[0] == 0.0
    assert np.isnan(as_np(bio.hill(p, np.array([-1.0]))))[0]


# =========================================================================================
# Michaelis–Menten
# =========================================================================================


def lambert_mm(t, vmax, km, s0):
    """Schnell & Mendoza (1997): S(t) = Km W((S0/Km) exp((S0 - Vmax t)/Km))."""
    return km * np.real(special.lambertw(s0 / km * np.exp((s0 - vmax * t) / km)))


MM_TIMES = np.array([0.0, 10.0, 37.5, 80.0, 150.0, 300.0])


def test_wright_omega_solves_its_equation_and_matches_lambert_w():
    z = np.array([-40.0, -3.0, 0.0, 1.0, 2.5, 30.0, 700.0])
    w = as_np(jax.jit(bio.wright_omega)(jnp.asarray(z)))
    np.testing.assert_allclose(w, np.real(special.lambertw(np.exp(z))), rtol=1e-13)
    big = 5000.0  # e^z overflows; the defining equation w + ln w = z still holds.
    w_big = float(bio.wright_omega(big))
    assert w_big + np.log(w_big) == pytest.approx(big, rel=1e-15)
    # ω'(z) by central differences of scipy's Lambert W.
    h = 1e-6
    fd = np.real(special.lambertw(np.exp(z + h)) - special.lambertw(np.exp(z - h))) / (2 * h)
    grad = as_np(jax.jit(jax.vmap(jax.grad(bio.wright_omega)))(jnp.asarray(z)))
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-20)


def test_michaelis_menten_closed_form_matches_lambert_w_and_implicit_derivative():
    p = bio.MICHAELIS_MENTEN_FIDUCIAL
    s = as_np(bio.michaelis_menten(p, MM_TIMES))
    np.testing.assert_allclose(s, lambert_mm(MM_TIMES, p["Vmax"], p["Km"], p["S0"]), rtol=1e-12)
    # Implicit differentiation of S/K + ln S - ... = -V t/K gives ∂S/∂V = -t S/(S + K).
    jac = jax.jit(jax.jacfwd(bio.michaelis_menten))(
        {k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(MM_TIMES)
    )
    np.testing.assert_allclose(
        as_np(jac["Vmax"]), -MM_TIMES * s / (s + p["Km"]), rtol=1e-10, atol=1e-14
    )


def test_michaelis_menten_ode_matches_lambert_w():
    p = bio.MICHAELIS_MENTEN_FIDUCIAL
    s = as_np(jitted(bio.michaelis_menten_ode())(p, jnp.asarray(MM_TIMES)))
    np.testing.assert_allclose(
        s, lambert_mm(MM_TIMES, p["Vmax"], p["Km"], p["S0"]), rtol=1e-7, atol=1e-9
    )


def test_enzyme_mass_action_against_solve_ivp_conservation_and_qssa():
    p = bio.ENZYME_MASS_ACTION_FIDUCIAL
    exp = bio.enzyme_mass_action_experiment(observable="all")
    y = as_np(jitted(exp.model)(p, jnp.asarray(MM_TIMES)))
    s, e, c, prod = y.T

    def rhs(t, u):
        s_, e_, c_, _ = u
        v1 = p["kf"] * e_ * s_ - p["kr"] * c_
        v2 = p["kcat"] * c_
        return [-v1, -v1 + v2, v1 - v2, v2]

    ref = reference(rhs, [p["S0"], p["E0"], 0.0, 0.0], MM_TIMES, method="Radau")
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(e + c, p["E0"], rtol=1e-10)
    np.testing.assert_allclose(s + c + prod, p["S0"], rtol=1e-10)
    # QSSA: S follows Michaelis-Menten with Vmax = kcat E0, Km = (kr + kcat)/kf up to
    # O(E0/(S0 + Km)) ~ 1 % (Segel & Slemrod 1989).
    mm = lambert_mm(MM_TIMES, p["kcat"] * p["E0"], (p["kr"] + p["kcat"]) / p["kf"], p["S0"])
    np.testing.assert_allclose(s[1:], mm[1:], rtol=0.05, atol=0.05)


# =========================================================================================
# Logistic growth
# =========================================================================================


def test_logistic_closed_form_and_ode_agree_with_verhulst():
    p = bio.LOGISTIC_US_POPULATION_FIDUCIAL
    t = np.arange(0.0, 121.0, 20.0)
    exact = p["K"] / (1 + (p["K"] / p["N0"] - 1) * np.exp(-p["r"] * t))
    np.testing.assert_allclose(as_np(bio.logistic(p, t)), exact, rtol=1e-14)
    np.testing.assert_allclose(
        as_np(jitted(bio.logistic_ode())(p, jnp.asarray(t))), exact, rtol=1e-8
    )


def test_fisher_of_ode_model_equals_fisher_of_closed_form():
    # End to end through the engine: same physics, two implementations.
    p = bio.LOGISTIC_US_POPULATION_FIDUCIAL
    closed = bio.logistic_experiment()
    as_ode = closed.replace(model=bio.logistic_ode())
    f_closed, f_ode = ff.fisher(closed, p), ff.fisher(as_ode, p)
    assert f_ode.names == f_closed.names
    np.testing.assert_allclose(f_ode.matrix, f_closed.matrix, rtol=1e-6)


# =========================================================================================
# Epidemics
# =========================================================================================

EPI_TIMES = np.array([0.0, 2.0, 5.0, 7.0, 14.0, 100.0])


def sir_np(p):
    def rhs(t, y):
        s, i, _, _ = y
        new = p["beta"] * s * i / p["N"]
        return [-new, new - p["gamma"] * i, p["gamma"] * i, new]

    return rhs, [p["N"] - p["I0"], p["I0"], 0.0, 0.0]


def test_sir_against_solve_ivp_conservation_and_final_size():
    p = bio.SIR_BOARDING_SCHOOL_FIDUCIAL
    y = as_np(jitted(bio.sir("all"))(p, jnp.asarray(EPI_TIMES)))
    s, i, r, c = y.T
    ref = reference(*sir_np(p), EPI_TIMES, atol=1e-9)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s + i + r, p["N"], rtol=1e-12)
    np.testing.assert_allclose(s + c, p["N"] - p["I0"], rtol=1e-12)
    # Final-size relation (R(0) = 0): ln(S∞/S0) = -(β/γ)(N - S∞)/N, S∞ ≈ S(100 d).
    s_inf = s[-1]
    assert i[-1] < 1e-6
    assert np.log(s_inf / (p["N"] - p["I0"])) == pytest.approx(
        -(p["beta"] / p["gamma"]) * (p["N"] - s_inf) / p["N"], rel=1e-6
    )


def test_sir_reported_prevalence_experiment():
    p = {**bio.SIR_BOARDING_SCHOOL_FIDUCIAL, "rho": 0.6}
    exp = bio.sir_experiment()
    assert isinstance(exp, ff.Experiment)
    prev = as_np(jitted(exp.model)(p, jnp.asarray(exp.design)))
    ref = reference(*sir_np(p), exp.design, atol=1e-9)
    np.testing.assert_allclose(prev, 0.6 * ref[:, 1], rtol=1e-6, atol=1e-6)


def seir_np(p):
    def rhs(t, y):
        s, e, i, _, _ = y
        new = p["beta"] * s * i / p["N"]
        return [
            -new,
            new - p["sigma"] * e,
            p["sigma"] * e - p["gamma"] * i,
            p["gamma"] * i,
            p["sigma"] * e,
        ]

    return rhs, [p["N"] - p["I0"] - p["E0"], p["E0"], p["I0"], 0.0, 0.0]


def test_seir_reported_incidence_experiment():
    p = {**bio.SEIR_FIDUCIAL, "E0": 20.0}
    exp = bio.seir_experiment()
    inc = as_np(jitted(exp.model)(p, jnp.asarray(exp.design)))
    ref = reference(*seir_np(p), exp.design, atol=1e-6)
    np.testing.assert_allclose(inc, p["rho"] * p["sigma"] * ref[:, 1], rtol=1e-6, atol=1e-6)


# =========================================================================================
# Pharmacokinetics
# =========================================================================================


def bateman(t, ka, ke, v, d, f=1.0):
    return f * d * ka / (v * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t))


PK_TIMES = np.array([0.0, 0.25, 1.0, 2.0, 5.0, 12.0, 24.0])


def test_one_compartment_closed_forms():
    p = bio.THEOPHYLLINE_FIDUCIAL
    c = as_np(bio.pk_oral(p, PK_TIMES))
    np.testing.assert_allclose(
        c, bateman(PK_TIMES, p["ka"], p["ke"], p["V"], p["D"]), rtol=1e-13, atol=1e-15
    )
    # Peak at t_max = ln(ka/ke)/(ka - ke) (dC/dt = 0).
    tmax = np.log(p["ka"] / p["ke"]) / (p["ka"] - p["ke"])
    dc = jax.grad(lambda t: bio.pk_oral(p, t))(jnp.asarray(tmax))
    assert abs(float(dc)) < 1e-12
    # ka = ke limit: C = F D k t e^{-k t}/V, approached smoothly.
    k = 0.3
    eq = {"ka": k, "ke": k, "V": 2.0, "D": 10.0, "F": 0.5}
    np.testing.assert_allclose(
        as_np(bio.pk_oral(eq, PK_TIMES)),
        0.5 * 10.0 * k * PK_TIMES * np.exp(-k * PK_TIMES) / 2.0,
        rtol=1e-14,
    )
    near = {**eq, "ka": k * (1 + 1e-5)}
    np.testing.assert_allclose(
        as_np(bio.pk_oral(near, PK_TIMES)),
        bateman(PK_TIMES, near["ka"], k, 2.0, 10.0, 0.5),
        rtol=1e-9,
    )
    # Flip-flop (ka < ke) with large exponents stays finite and exact.
    flip = {"ka": 0.01, "ke": 10.0, "V": 1.0, "D": 1.0}
    t_long = np.array([1.0, 100.0, 200.0])
    np.testing.assert_allclose(
        as_np(bio.pk_oral(flip, t_long)), bateman(t_long, 0.01, 10.0, 1.0, 1.0), rtol=1e-13
    )
    # IV bolus and pre-dose times.
    iv = as_np(bio.pk_iv_bolus(p, np.array([-1.0, 0.0, 3.0])))
    np.testing.assert_allclose(
        iv, [0.0, p["D"] / p["V"], p["D"] / p["V"] * np.exp(-3 * p["ke"])], rtol=1e-15
    )
    assert as_np(bio.pk_oral(p, np.array([-1.0])))[0] == 0.0


def test_oral_ode_matches_bateman_including_bioavailability():
    p = {**bio.THEOPHYLLINE_FIDUCIAL, "F": 0.8}
    c = as_np(jitted(bio.pk_oral_ode())(p, jnp.asarray(PK_TIMES)))
    np.testing.assert_allclose(
        c, bateman(PK_TIMES, p["ka"], p["ke"], p["V"], p["D"], 0.8), rtol=1e-7, atol=1e-10
    )


def two_compartment_matrix(p):
    k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
    return np.array([[-(k10 + k12), k21], [k12, -k21]])


def test_two_compartment_iv_matches_matrix_exponential_and_biexponential():
    p = bio.PK_TWO_COMPARTMENT_FIDUCIAL
    exp = bio.pk_two_compartment_experiment()
    c = as_np(jitted(exp.model)(p, jnp.asarray(PK_TIMES)))
    m = two_compartment_matrix(p)
    exact = np.array([(linalg.expm(m * t) @ [p["D"], 0.0])[0] / p["V1"] for t in PK_TIMES])
    np.testing.assert_allclose(c, exact, rtol=1e-7, atol=1e-10)
    # Bi-exponential form: -α, -β the eigenvalues, C = D/V1 [(α-k21)e^{-αt} + (k21-β)e^{-βt}]/(α-β).
    k21 = p["Q"] / p["V2"]
    alpha, beta = sorted(-np.linalg.eigvals(m).real, reverse=True)
    biexp = (
        p["D"]
        / p["V1"]
        * ((alpha - k21) * np.exp(-alpha * PK_TIMES) + (k21 - beta) * np.exp(-beta * PK_TIMES))
        / (alpha - beta)
    )
    np.testing.assert_allclose(c, biexp, rtol=1e-7, atol=1e-10)


def test_two_compartment_oral_against_solve_ivp():
    p = {**bio.PK_TWO_COMPARTMENT_FIDUCIAL, "ka": 1.2, "F": 0.7}
    c = as_np(jitted(bio.pk_two_compartment("oral"))(p, jnp.asarray(PK_TIMES)))
    m = two_compartment_matrix(p)

    def rhs(t, y):
        gut, a = y[0], y[1:]
        return [-p["ka"] * gut, *(m @ a + [p["ka"] * gut, 0.0])]

    ref = reference(rhs, [0.7 * p["D"], 0.0, 0.0], PK_TIMES)
    np.testing.assert_allclose(c, ref[:, 1] / p["V1"], rtol=1e-7, atol=1e-10)


# =========================================================================================
# FitzHugh–Nagumo and Lotka–Volterra
# =========================================================================================


def test_fitzhugh_nagumo_against_solve_ivp():
    p = bio.FITZHUGH_NAGUMO_FIDUCIAL
    exp = bio.fitzhugh_nagumo_experiment()
    y = as_np(jitted(exp.model)(p, jnp.asarray(exp.design)))
    assert y.shape == (41, 2)

    def rhs(t, u):
        v, r = u
        return [p["c"] * (v - v**3 / 3 + r), -(v - p["a"] + p["b"] * r) / p["c"]]

    ref = reference(rhs, [p["V0"], p["R0"]], exp.design)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)


def test_lotka_volterra_against_solve_ivp_and_first_integral():
    p = bio.LOTKA_VOLTERRA_FIDUCIAL
    exp = bio.lotka_volterra_experiment()
    y = as_np(jitted(exp.model)(p, jnp.asarray(exp.design)))
    x, z = y.T

    def rhs(t, u):
        return [(p["alpha"] - p["beta"] * u[1]) * u[0], (p["delta"] * u[0] - p["gamma"]) * u[1]]

    ref = reference(rhs, [p["prey0"], p["predator0"]], exp.design)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)
    # H = δx − γ ln x + βy − α ln y is constant along orbits.
    h = p["delta"] * x - p["gamma"] * np.log(x) + p["beta"] * z - p["alpha"] * np.log(z)
    np.testing.assert_allclose(h, h[0], rtol=1e-8)


# =========================================================================================
# Experiments and argument checks
# =========================================================================================


def test_experiment_constructors_and_bad_choices():
    cases = [
        bio.hill_experiment(),
        bio.michaelis_menten_experiment(),
        bio.logistic_experiment(),
        bio.pk_oral_experiment(),
    ]
    for exp in cases:
        assert isinstance(exp, ff.Experiment) and exp.name
    # Closed forms evaluate at their fiducials through the Experiment.
    assert np.all(np.isfinite(as_np(cases[0](bio.HILL_HEMOGLOBIN_FIDUCIAL))))
    assert np.all(np.isfinite(as_np(cases[3](bio.THEOPHYLLINE_FIDUCIAL))))
    for factory, kwarg in [
        (bio.sir, "observable"),
        (bio.seir, "observable"),
        (bio.enzyme_mass_action, "observable"),
        (bio.fitzhugh_nagumo, "observable"),
        (bio.lotka_volterra, "observable"),
        (bio.pk_two_compartment, "route"),
    ]:
        with pytest.raises(ValueError, match=kwarg):
            factory(**{kwarg: "nonsense"})
