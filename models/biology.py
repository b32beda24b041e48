r"""Biology and pharmacometrics model zoo: dose response, enzyme kinetics, growth,
epidemics, pharmacokinetics, excitable cells and predator-prey dynamics.

Every model is a forward model ``model(params, design)`` for the engine, with ``params`` a
dict of scalars. Closed-form models are plain functions; ODE models are built by a small
factory (``sir(...)``, ``pk_two_compartment(...)``, ...) that returns
``ff.ode_model(...)``, so solver options (``stiff=True``, ``rtol``, ``adjoint``, ...) can be
passed through. Quantities that set initial conditions (initial substrate, initial infected,
doses, initial voltages) are ordinary parameters. Each model has a ``*_FIDUCIAL`` dict and a
``*_experiment(...)`` constructor returning an ``ff.Experiment``.

=========================  ================================  ==========================
model                      forward model                     design
=========================  ================================  ==========================
Hill / sigmoid Emax        :func:`hill` (closed form)        concentrations
Michaelis–Menten (QSSA)    :func:`michaelis_menten` (closed  times
                           form, Wright ω) and
                           :func:`michaelis_menten_ode`
enzyme mass action         :func:`enzyme_mass_action`        times
logistic growth            :func:`logistic` (closed form),   times
                           :func:`logistic_ode`
SIR, SEIR                  :func:`sir`, :func:`seir`         times
1-compartment PK           :func:`pk_iv_bolus`,              times
                           :func:`pk_oral` (Bateman),
                           :func:`pk_oral_ode`
2-compartment PK           :func:`pk_two_compartment`        times
population PK (warfarin)   :func:`warfarin` (NLME, PopED)    times, dose
FitzHugh–Nagumo            :func:`fitzhugh_nagumo`           times
Lotka–Volterra             :func:`lotka_volterra`            times
=========================  ================================  ==========================

Fiducials marked *illustrative* are plausible orders of magnitude, not estimates from a
specific study; the others cite their source. A fiducial lists every parameter the model
reads, including known ones (doses, population size): some are not jointly identifiable
(e.g. a dose D and a volume V enter a concentration only as D/V), so choose the varied
parameters with ``ff.fisher(..., params=[...])``; each docstring says which.

Example
-------
>>> import jax, numpy as np
>>> import fisherforecast as ff
>>> from fisherforecast.models import biology as bio
>>> with jax.enable_x64(True):
...     conc = bio.pk_oral(bio.THEOPHYLLINE_FIDUCIAL, np.array([0.0, 1.0, 2.0, 24.0]))
...     infected = bio.sir()(bio.SIR_BOARDING_SCHOOL_FIDUCIAL, np.arange(0.0, 15.0))
>>> # The dose is known: vary only ka, ke, V.
>>> fm = ff.fisher(bio.pk_oral_experiment(), bio.THEOPHYLLINE_FIDUCIAL,
...                params=["ka", "ke", "V"])                    # doctest: +SKIP
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

from ._values import memoized
from ._x64 import wrap_public

__all__ = [
    "ENZYME_MASS_ACTION_FIDUCIAL",
    "FITZHUGH_NAGUMO_FIDUCIAL",
    "HILL_HEMOGLOBIN_FIDUCIAL",
    "LOGISTIC_US_POPULATION_FIDUCIAL",
    "LOTKA_VOLTERRA_FIDUCIAL",
    "MICHAELIS_MENTEN_FIDUCIAL",
    "PK_TWO_COMPARTMENT_FIDUCIAL",
    "SEIR_FIDUCIAL",
    "SIR_BOARDING_SCHOOL_FIDUCIAL",
    "THEOPHYLLINE_FIDUCIAL",
    "WARFARIN_FIDUCIAL",
    "WARFARIN_RANDOM",
    "WARFARIN_TIMES",
    "enzyme_mass_action",
    "enzyme_mass_action_experiment",
    "fitzhugh_nagumo",
    "fitzhugh_nagumo_experiment",
    "hill",
    "hill_experiment",
    "logistic",
    "logistic_experiment",
    "logistic_ode",
    "lotka_volterra",
    "lotka_volterra_experiment",
    "michaelis_menten",
    "michaelis_menten_experiment",
    "michaelis_menten_ode",
    "pk_iv_bolus",
    "pk_oral",
    "pk_oral_experiment",
    "pk_oral_ode",
    "pk_two_compartment",
    "pk_two_compartment_experiment",
    "seir",
    "seir_experiment",
    "sir",
    "sir_experiment",
    "warfarin",
    "warfarin_population_experiment",
    "wright_omega",
]


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received {value!r}.")


# =========================================================================================
# Hill function (sigmoid Emax model)
# =========================================================================================

#: Oxygen–haemoglobin dissociation curve (fractional saturation vs pO2 in mmHg): Hill's
#: equation (Hill 1910, J. Physiol. 40, iv) with P50 = 26.8 mmHg for normal adult blood at
#: 37 °C, pH 7.4 (Severinghaus 1979, J. Appl. Physiol. 46, 599) and a Hill coefficient
#: n ≈ 2.7, typical of human haemoglobin. E0 = 0, Emax = 1: saturation fraction.
HILL_HEMOGLOBIN_FIDUCIAL = {"E0": 0.0, "Emax": 1.0, "EC50": 26.8, "n": 2.7}


def hill(params, x):
    r"""Hill function / sigmoid Emax model of a response to a concentration ``x``.

    .. math::  E(x) = E_0 + E_{\max}\,\frac{x^n}{EC_{50}^n + x^n}
               = E_0 + E_{\max}\,\sigma\!\big(n \ln(x/EC_{50})\big)

    (σ the logistic sigmoid; the second form is the one evaluated, it is stable for any
    ``n``). ``E(0) = E0`` with finite derivatives (including ∂/∂n); ``x < 0`` gives NaN.

    **Arguments**

    - `params`: ``E0`` (baseline), ``Emax`` (maximal effect, same units as the response),
      ``EC50`` (half-maximal concentration, units of ``x``), ``n`` (Hill coefficient).
    - `x`: concentrations (array).

    **Returns** the response, same shape as ``x``.

    >>> import numpy as np
    >>> from fisherforecast.models.biology import hill, HILL_HEMOGLOBIN_FIDUCIAL
    >>> float(hill(HILL_HEMOGLOBIN_FIDUCIAL, np.array(26.8)))   # 50 % at P50
    0.5
    """
    x = jnp.asarray(x)
    positive = x > 0
    # Double-where: keep log(0) out of the traced graph so that derivatives at x = 0
    # are exactly 0 rather than 0 * inf = NaN.
    x_safe = jnp.where(positive, x, params["EC50"])
    frac = jnp.where(positive, jax.nn.sigmoid(params["n"] * jnp.log(x_safe / params["EC50"])), 0.0)
    response = params["E0"] + params["Emax"] * frac
    return jnp.where(x < 0, jnp.nan, response)


def hill_experiment(concentrations=None, sigma=0.01, name="Hill (haemoglobin O2 saturation)"):
    """``ff.Experiment`` for :func:`hill`; default design: pO2 = 5–100 mmHg (10 points),
    sigma = 0.01 in saturation fraction (*illustrative*)."""
    if concentrations is None:
        concentrations = np.array([5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 70.0, 100.0])
    return ff.Experiment(hill, noise=ff.Gaussian(sigma=sigma), design=concentrations, name=name)


# =========================================================================================
# Michaelis–Menten
# =========================================================================================

#: *Illustrative* enzyme assay in µM and s: Vmax = kcat E0 = 0.1 µM/s, Km = 2 µM, S0 = 10 µM
#: (consistent with ENZYME_MASS_ACTION_FIDUCIAL through Vmax = kcat E0,
#: Km = (kr + kcat)/kf).
MICHAELIS_MENTEN_FIDUCIAL = {"Vmax": 0.1, "Km": 2.0, "S0": 10.0}


@jax.custom_jvp
def wright_omega(z):
    r"""Wright omega function ω(z) for real z: the solution w > 0 of ``w + ln w = z``.

    (ω(z) = W₀(eᶻ) with W₀ the principal Lambert W branch, but evaluated without forming
    eᶻ, which overflows for z ≳ 709.) Newton's method on u = ln w,
    g(u) = eᵘ + u − z, which is increasing and convex so that Newton converges from any
    start; the start u₀ = ln(z − ln z) (z > 1) or u₀ = z (z ≤ 1) is within 1 of the root
    and 8 iterations reach machine precision. Derivative ω' = ω/(1 + ω) (custom JVP).

    >>> from fisherforecast.models.biology import wright_omega
    >>> round(float(wright_omega(1.0)), 12)   # ω(1) = 1
    1.0
    """
    z = jnp.asarray(z)
    big = z > 1.0
    z_big = jnp.where(big, z, 2.0)
    u = jnp.where(big, jnp.log(z_big - jnp.log(z_big)), z)
    for _ in range(8):
        eu = jnp.exp(u)
        u = u - (eu + u - z) / (eu + 1.0)
    return jnp.exp(u)


@wright_omega.defjvp
def _wright_omega_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    w = wright_omega(z)
    return w, w / (1.0 + w) * dz


def michaelis_menten(params, times):
    r"""Substrate depletion under Michaelis–Menten kinetics, closed form.

    .. math::  \dot S = -\frac{V_{\max} S}{K_m + S},\quad S(0) = S_0
        \;\Longrightarrow\;
        \frac{S}{K_m} + \ln\frac{S}{K_m} = \frac{S_0}{K_m} + \ln\frac{S_0}{K_m}
                                           - \frac{V_{\max} t}{K_m},

    i.e. ``S(t) = Km ω(S0/Km + ln(S0/Km) − Vmax t/Km)`` with ω the Wright omega function,
    equivalently ``S(t) = Km W((S0/Km) exp((S0 − Vmax t)/Km))`` with Lambert W
    (Schnell & Mendoza 1997, J. Theor. Biol. 187, 207).

    **Arguments**: `params` with ``Vmax`` [µM/s], ``Km`` [µM], ``S0`` [µM]; `times` [s].

    **Returns** the substrate concentration ``S(t)`` [µM].
    """
    t = jnp.asarray(times)
    ratio0 = params["S0"] / params["Km"]
    z = ratio0 + jnp.log(ratio0) - params["Vmax"] * t / params["Km"]
    return params["Km"] * wright_omega(z)


def _mm_rhs(t, s, p):
    return -p["Vmax"] * s / (p["Km"] + s)


@memoized
def michaelis_menten_ode(**ode_kwargs):
    """:func:`michaelis_menten` as an ODE model (same parameters, observable ``S``).

    ``ode_kwargs`` go to ``ff.ode_model`` (``rtol``, ``stiff``, ``adjoint``, ...).
    """
    return ff.ode_model(_mm_rhs, y0=lambda p: p["S0"], **ode_kwargs)


def michaelis_menten_experiment(times=None, sigma=0.1, name="Michaelis-Menten substrate"):
    """``ff.Experiment`` for :func:`michaelis_menten`; default 16 times over 0–150 s and
    sigma = 0.1 µM (*illustrative*)."""
    times = np.linspace(0.0, 150.0, 16) if times is None else times
    return ff.Experiment(michaelis_menten, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


#: *Illustrative* elementary rate constants in µM and s: kf = 1 µM⁻¹s⁻¹ (10⁶ M⁻¹s⁻¹),
#: kr = 1 s⁻¹, kcat = 1 s⁻¹ (Km = 2 µM), E0 = 0.1 µM, S0 = 10 µM. E0/(S0 + Km) ≈ 0.008 ≪ 1,
#: so the quasi-steady-state (Michaelis–Menten) reduction is accurate (Segel & Slemrod
#: 1989, SIAM Review 31, 446).
ENZYME_MASS_ACTION_FIDUCIAL = {"kf": 1.0, "kr": 1.0, "kcat": 1.0, "E0": 0.1, "S0": 10.0}

_ENZYME_OBSERVABLES = ("P", "S", "all")


def _enzyme_rhs(t, y, p):
    # y = (S, E, C, P); E + S <-> C (kf, kr), C -> E + P (kcat); law of mass action.
    s, e, c, _ = y
    bind = p["kf"] * e * s - p["kr"] * c
    cat = p["kcat"] * c
    return jnp.stack([-bind, -bind + cat, bind - cat, cat])


@memoized
def enzyme_mass_action(observable="P", **ode_kwargs):
    r"""Full mass-action enzyme kinetics, E + S ⇌ C → E + P (Briggs & Haldane 1925).

    .. math::
        \dot S = -k_f E S + k_r C,\quad \dot E = -k_f E S + (k_r + k_{cat}) C,\quad
        \dot C = k_f E S - (k_r + k_{cat}) C,\quad \dot P = k_{cat} C,

    with S(0) = S0, E(0) = E0, C(0) = P(0) = 0; conserved: E + C = E0 and S + C + P = S0.
    For E0 ≪ S0 + Km it reduces to :func:`michaelis_menten` with Vmax = kcat E0 and
    Km = (kr + kcat)/kf.

    **Arguments**

    - `observable`: ``"P"`` (product, default), ``"S"`` (substrate) or ``"all"``
      (the state (S, E, C, P), output shape ``(n_times, 4)``).
    - `ode_kwargs`: passed to ``ff.ode_model``; for E0 ≳ S0 or very fast binding the
      system is stiff: use ``stiff=True``.

    **Returns** ``model(params, times)`` with params ``kf`` [µM⁻¹s⁻¹], ``kr`` [s⁻¹],
    ``kcat`` [s⁻¹], ``E0`` [µM], ``S0`` [µM]; times [s]; concentrations [µM].
    """
    _check_choice("observable", observable, _ENZYME_OBSERVABLES)
    index = {"S": 0, "P": 3}.get(observable)
    observe = None if index is None else (lambda y, p: y[index])

    def y0(p):
        zero = 0.0 * p["S0"]
        return jnp.stack([p["S0"], p["E0"], zero, zero])

    return ff.ode_model(_enzyme_rhs, y0=y0, observe=observe, **ode_kwargs)


def enzyme_mass_action_experiment(
    times=None, sigma=0.1, observable="P", name="enzyme mass action", **ode_kwargs
):
    """``ff.Experiment`` for :func:`enzyme_mass_action`; default 16 times over 0–150 s and
    sigma = 0.1 µM (*illustrative*)."""
    times = np.linspace(0.0, 150.0, 16) if times is None else times
    model = enzyme_mass_action(observable, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# =========================================================================================
# Logistic growth
# =========================================================================================

#: Pearl & Reed (1920, PNAS 6, 275) logistic fit to the US census 1790–1910: carrying
#: capacity K ≈ 197 million and r ≈ 0.031 yr⁻¹; N0 = 3.93 million (1790 census). Times in
#: years since 1790, N in millions.
LOGISTIC_US_POPULATION_FIDUCIAL = {"r": 0.0313, "K": 197.3, "N0": 3.93}


def logistic(params, times):
    r"""Logistic growth ``N' = r N (1 − N/K)``, closed form

    .. math::  N(t) = \frac{K N_0}{N_0 + (K - N_0)\,e^{-r t}}

    (Verhulst 1838). **Params**: ``r`` [1/time], ``K`` and ``N0`` [population units].
    """
    t = jnp.asarray(times)
    n0, cap = params["N0"], params["K"]
    return cap * n0 / (n0 + (cap - n0) * jnp.exp(-params["r"] * t))


def _logistic_rhs(t, n, p):
    return p["r"] * n * (1.0 - n / p["K"])


@memoized
def logistic_ode(**ode_kwargs):
    """:func:`logistic` as an ODE model (same parameters; for extensions such as
    harvesting or time-dependent rates, start from this)."""
    return ff.ode_model(_logistic_rhs, y0=lambda p: p["N0"], **ode_kwargs)


def logistic_experiment(times=None, sigma=1.0, name="logistic growth (US census)"):
    """``ff.Experiment`` for :func:`logistic`; default: the 13 decennial censuses 1790–1910
    (t = 0, 10, ..., 120 yr) and sigma = 1 million (*illustrative*)."""
    times = np.arange(0.0, 121.0, 10.0) if times is None else times
    return ff.Experiment(logistic, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# =========================================================================================
# Epidemics: SIR and SEIR with a reporting fraction
# =========================================================================================

#: Influenza in an English boarding school, 1978 (BMJ 1978, 1, 587), as fitted with an SIR
#: model by Murray (2002, Mathematical Biology I, §10.2): N = 763, I0 = 1,
#: β = r N = 2.18e-3 × 763 ≈ 1.66 day⁻¹, γ = 0.44 day⁻¹ (R0 ≈ 3.8). All cases were
#: observed (bed-confined boys): ρ = 1.
SIR_BOARDING_SCHOOL_FIDUCIAL = {"beta": 1.66, "gamma": 0.44, "rho": 1.0, "N": 763.0, "I0": 1.0}

#: COVID-19-like SEIR in days: R0 = 2.2 and mean incubation 5.2 days from the early Wuhan
#: data (Li et al. 2020, NEJM 382, 1199), so σ = 1/5.2 day⁻¹; γ = 0.2 day⁻¹ (*illustrative*)
#: and β = R0 γ = 0.44 day⁻¹; N = 10⁶, I0 = 10, E0 = 0, ρ = 0.1 (*illustrative*).
SEIR_FIDUCIAL = {
    "beta": 0.44,
    "sigma": 1.0 / 5.2,
    "gamma": 0.2,
    "rho": 0.1,
    "N": 1.0e6,
    "I0": 10.0,
    "E0": 0.0,
}

_EPI_OBSERVABLES = ("prevalence", "incidence", "cumulative", "all")


def _sir_rhs(t, y, p):
    # y = (S, I, R, C); C counts new infections since t0 (C' = force of infection × S).
    s, i, _, _ = y
    new = p["beta"] * s * i / p["N"]
    rec = p["gamma"] * i
    return jnp.stack([-new, new - rec, rec, new])


def _seir_rhs(t, y, p):
    # y = (S, E, I, R, C); C counts new infectious cases (E -> I) since t0.
    s, e, i, _, _ = y
    new = p["beta"] * s * i / p["N"]
    onset = p["sigma"] * e
    rec = p["gamma"] * i
    return jnp.stack([-new, new - onset, onset - rec, rec, onset])


@memoized
def sir(observable="prevalence", **ode_kwargs):
    r"""SIR epidemic (Kermack & McKendrick 1927) with a reporting fraction ρ.

    .. math::
        \dot S = -\beta S I/N,\quad \dot I = \beta S I/N - \gamma I,\quad
        \dot R = \gamma I,\quad \dot C = \beta S I/N,

    S(0) = N − I0, I(0) = I0, R(0) = C(0) = 0; S + I + R = N and S + C = N − I0 are
    conserved. Observables (`observable`):

    - ``"prevalence"``: ρ I(t), reported number currently infected;
    - ``"incidence"``: ρ β S I / N, reported new infections per unit time at t;
    - ``"cumulative"``: ρ C(t), reported new infections since t0;
    - ``"all"``: the state (S, I, R, C), shape ``(n_times, 4)`` (no ρ).

    **Returns** ``model(params, times)`` with params ``beta`` and ``gamma`` [1/day],
    ``rho`` (reporting fraction), ``N`` and ``I0`` [persons]; times in days.

    Identifiability: the reported observables are unchanged under N → λN, I0 → λI0,
    ρ → ρ/λ, so ρ, N and I0 cannot all be varied; N is usually known.
    """
    _check_choice("observable", observable, _EPI_OBSERVABLES)

    def y0(p):
        zero = 0.0 * p["N"]
        return jnp.stack([p["N"] - p["I0"], p["I0"], zero, zero])

    def observe(y, p):
        s, i, _, c = y
        return {
            "prevalence": lambda: p["rho"] * i,
            "incidence": lambda: p["rho"] * p["beta"] * s * i / p["N"],
            "cumulative": lambda: p["rho"] * c,
        }[observable]()

    return ff.ode_model(
        _sir_rhs, y0=y0, observe=None if observable == "all" else observe, **ode_kwargs
    )


@memoized
def seir(observable="incidence", **ode_kwargs):
    r"""SEIR epidemic with a latent (exposed) class and a reporting fraction ρ.

    .. math::
        \dot S = -\beta S I/N,\quad \dot E = \beta S I/N - \sigma E,\quad
        \dot I = \sigma E - \gamma I,\quad \dot R = \gamma I,\quad \dot C = \sigma E,

    S(0) = N − I0 − E0, E(0) = E0, I(0) = I0, R(0) = C(0) = 0; S + E + I + R = N.
    Observables: ``"prevalence"`` ρ I, ``"incidence"`` ρ σ E (reported onsets of
    infectiousness per day, default), ``"cumulative"`` ρ C, ``"all"`` the state
    (S, E, I, R, C). Params: ``beta``, ``sigma``, ``gamma`` [1/day], ``rho``, ``N``,
    ``I0`` and ``E0`` [persons]. As for :func:`sir`, (N, I0, E0, ρ) have a scale symmetry:
    keep N fixed.
    """
    _check_choice("observable", observable, _EPI_OBSERVABLES)

    def y0(p):
        zero = 0.0 * p["N"]
        return jnp.stack([p["N"] - p["I0"] - p["E0"], p["E0"], p["I0"], zero, zero])

    def observe(y, p):
        _, e, i, _, c = y
        return {
            "prevalence": lambda: p["rho"] * i,
            "incidence": lambda: p["rho"] * p["sigma"] * e,
            "cumulative": lambda: p["rho"] * c,
        }[observable]()

    return ff.ode_model(
        _seir_rhs, y0=y0, observe=None if observable == "all" else observe, **ode_kwargs
    )


def sir_experiment(
    times=None, sigma=10.0, observable="prevalence", name="SIR (boarding school)", **ode_kwargs
):
    """``ff.Experiment`` for :func:`sir`; default daily data on days 0–14 (as in the 1978
    boarding-school record) and sigma = 10 persons (*illustrative*)."""
    times = np.arange(0.0, 15.0) if times is None else times
    model = sir(observable, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


def seir_experiment(times=None, sigma=50.0, observable="incidence", name="SEIR", **ode_kwargs):
    """``ff.Experiment`` for :func:`seir`; default weekly data over 20 weeks and sigma = 50
    reported cases/day (*illustrative*)."""
    times = np.arange(7.0, 141.0, 7.0) if times is None else times
    model = seir(observable, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# =========================================================================================
# Pharmacokinetics
# =========================================================================================

#: Theophylline after a single oral dose (the Boeckmann–Sheiner–Beal "Theoph" data, 12
#: subjects), population estimates of Pinheiro & Bates (2000, Mixed-Effects Models in S and
#: S-PLUS, §6.4): ka = 1.57 h⁻¹, ke = 0.088 h⁻¹, CL = 0.040 L/h/kg, so V = CL/ke ≈ 0.46 L/kg;
#: dose D = 4.0 mg/kg (range 3.1–5.9). Bioavailability F is an optional parameter
#: (default 1). Times in h, concentrations in mg/L. D is known in practice, and F, D, V
#: enter only as F D/V: vary ``ka``, ``ke``, ``V``.
THEOPHYLLINE_FIDUCIAL = {"ka": 1.57, "ke": 0.088, "V": 0.46, "D": 4.0}

#: *Illustrative* two-compartment drug in an adult, IV bolus: CL = 5 L/h, V1 = 10 L,
#: Q = 2 L/h, V2 = 20 L, D = 100 mg (known; vary CL, V1, Q, V2). For oral dosing add
#: ``"ka"`` (e.g. 1 h⁻¹) and optionally ``"F"``.
PK_TWO_COMPARTMENT_FIDUCIAL = {"CL": 5.0, "V1": 10.0, "Q": 2.0, "V2": 20.0, "D": 100.0}


def _exprel_neg(x):
    """φ(x) = (1 − e^{−x})/x for x ≥ 0, with φ(0) = 1, accurate and smooth near 0."""
    small = x < 1e-3
    x_safe = jnp.where(small, 1.0, x)
    series = 1.0 - x / 2.0 + x * x / 6.0 - x * x * x / 24.0
    return jnp.where(small, series, -jnp.expm1(-x_safe) / x_safe)


def pk_iv_bolus(params, times):
    r"""One-compartment model after an intravenous bolus: ``C(t) = D/V e^{−ke t}``.

    Params: ``D`` [mg], ``V`` [L], ``ke`` [1/h]; times [h]; C [mg/L]. Times before the dose
    (t < 0) give 0.
    """
    t = jnp.asarray(times)
    c = params["D"] / params["V"] * jnp.exp(-params["ke"] * jnp.maximum(t, 0.0))
    return jnp.where(t < 0, 0.0, c)


def pk_oral(params, times):
    r"""One-compartment model with first-order absorption (Bateman function).

    .. math::  C(t) = \frac{F D k_a}{V (k_a - k_e)}\big(e^{-k_e t} - e^{-k_a t}\big)
               = \frac{F D k_a}{V}\, t\, e^{-k_< t}\,\varphi\big((k_> - k_<) t\big),

    with k< = min(ka, ke), k> = max(ka, ke) and φ(x) = (1 − e^{−x})/x: the bracket is
    symmetric in (ka, ke), and this form is exact and smooth through ka = ke (where
    C = F D ka t e^{−ka t}/V) and overflow-free for flip-flop kinetics (ka < ke).

    Params: ``ka``, ``ke`` [1/h], ``V`` [L or L/kg], ``D`` [mg or mg/kg], optional ``F``
    (bioavailability, default 1); times [h]; C [mg/L]. Times before the dose give 0.
    F, D and V enter only as F D/V (vary at most one of them); and since the curve is
    symmetric in (ka, ke) up to that factor, oral data alone leave a flip-flop ambiguity.

    >>> import numpy as np
    >>> from fisherforecast.models.biology import pk_oral, THEOPHYLLINE_FIDUCIAL
    >>> c = pk_oral(THEOPHYLLINE_FIDUCIAL, np.array([0.0, 2.0, 24.0]))   # mg/L
    >>> ka, ke, V, D = 1.57, 0.088, 0.46, 4.0   # the Bateman function, written out
    >>> bateman = D * ka / (V * (ka - ke)) * (np.exp(-ke * 24.0) - np.exp(-ka * 24.0))
    >>> float(c[0]), bool(abs(float(c[2]) / bateman - 1) < 1e-12)
    (0.0, True)
    """
    t = jnp.asarray(times)
    f = params.get("F", 1.0)
    ka, ke = params["ka"], params["ke"]
    k_lo, k_hi = jnp.minimum(ka, ke), jnp.maximum(ka, ke)
    tp = jnp.maximum(t, 0.0)
    c = (
        f
        * params["D"]
        * ka
        / params["V"]
        * tp
        * jnp.exp(-k_lo * tp)
        * _exprel_neg((k_hi - k_lo) * tp)
    )
    return jnp.where(t < 0, 0.0, c)


def _oral_rhs(t, y, p):
    # y = (amount in gut depot, amount in central compartment) [mg].
    gut, central = y
    absorb = p["ka"] * gut
    return jnp.stack([-absorb, absorb - p["ke"] * central])


@memoized
def pk_oral_ode(**ode_kwargs):
    """:func:`pk_oral` as an ODE model (depot + central compartment, C = A_c/V); a
    starting point for non-linear elimination or multiple dosing."""

    def y0(p):
        return jnp.stack([p.get("F", 1.0) * p["D"], 0.0 * p["D"]])

    return ff.ode_model(_oral_rhs, y0=y0, observe=lambda y, p: y[1] / p["V"], **ode_kwargs)


def pk_oral_experiment(times=None, sigma=0.5, name="theophylline (oral)"):
    """``ff.Experiment`` for :func:`pk_oral` with the Theoph sampling schedule (0.25–24 h,
    10 samples) and sigma = 0.5 mg/L (*illustrative*)."""
    if times is None:
        times = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])
    return ff.Experiment(pk_oral, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


def _two_comp_iv_rhs(t, y, p):
    # y = (central, peripheral) amounts [mg]; micro-constants from the clearances:
    # k10 = CL/V1, k12 = Q/V1, k21 = Q/V2.
    a1, a2 = y
    k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
    return jnp.stack([-(k10 + k12) * a1 + k21 * a2, k12 * a1 - k21 * a2])


def _two_comp_oral_rhs(t, y, p):
    # y = (gut depot, central, peripheral): first-order absorption into the central one.
    gut, a1, a2 = y
    absorb = p["ka"] * gut
    d1, d2 = _two_comp_iv_rhs(t, jnp.stack([a1, a2]), p)
    return jnp.stack([-absorb, absorb + d1, d2])


@memoized
def pk_two_compartment(route="iv", **ode_kwargs):
    r"""Two-compartment PK model, IV bolus or first-order oral absorption.

    .. math::
        \dot A_g = -k_a A_g,\quad
        \dot A_1 = k_a A_g - (k_{10} + k_{12}) A_1 + k_{21} A_2,\quad
        \dot A_2 = k_{12} A_1 - k_{21} A_2,\qquad C = A_1/V_1,

    with k10 = CL/V1, k12 = Q/V1, k21 = Q/V2. IV bolus (``route="iv"``): state (A_1, A_2),
    A_1(0) = D, C is bi-exponential. Oral (``route="oral"``): state (A_g, A_1, A_2),
    A_g(0) = F D.

    **Returns** ``model(params, times)`` with params ``CL``, ``Q`` [L/h], ``V1``, ``V2``
    [L], ``D`` [mg] and, for oral dosing, ``ka`` [1/h] and optional ``F`` (default 1);
    times [h]; C [mg/L].
    """
    _check_choice("route", route, ("iv", "oral"))
    if route == "iv":

        def y0(p):
            return jnp.stack([p["D"], 0.0 * p["D"]])

        return ff.ode_model(
            _two_comp_iv_rhs, y0=y0, observe=lambda y, p: y[0] / p["V1"], **ode_kwargs
        )

    def y0_oral(p):
        zero = 0.0 * p["D"]
        return jnp.stack([p.get("F", 1.0) * p["D"], zero, zero])

    return ff.ode_model(
        _two_comp_oral_rhs, y0=y0_oral, observe=lambda y, p: y[1] / p["V1"], **ode_kwargs
    )


def pk_two_compartment_experiment(
    times=None, sigma=0.1, route="iv", name="two-compartment PK", **ode_kwargs
):
    """``ff.Experiment`` for :func:`pk_two_compartment`; default 10 samples over 0.25–24 h,
    sigma = 0.1 mg/L (*illustrative*)."""
    if times is None:
        times = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0])
    model = pk_two_compartment(route, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# =========================================================================================
# FitzHugh–Nagumo
# =========================================================================================

#: Ramsay, Hooker, Campbell & Cao (2007, J. R. Stat. Soc. B 69, 741): (a, b, c) =
#: (0.2, 0.2, 3), (V0, R0) = (−1, 1), dimensionless time 0–20.
FITZHUGH_NAGUMO_FIDUCIAL = {"a": 0.2, "b": 0.2, "c": 3.0, "V0": -1.0, "R0": 1.0}


# ---------------------------------------------------------------------------------------
# Population PK: the warfarin study of PopED's reference design
# ---------------------------------------------------------------------------------------
#: Warfarin population PK (one-compartment oral absorption, exponential random effects on
#: CL, V and KA, proportional residual error): the fixed effects, the variances of the
#: random effects (``omega2_*``) and of the residual (``sigma2_prop``) of PopED's
#: "warfarin" example (Nyberg et al., Br. J. Clin. Pharmacol. 2015).
WARFARIN_FIDUCIAL = {
    "CL": 0.15,
    "V": 8.0,
    "KA": 1.0,
    "omega2_CL": 0.07,
    "omega2_V": 0.02,
    "omega2_KA": 0.6,
    "sigma2_prop": 0.01,
}
#: The random effects of the warfarin model (``ff.PopulationExperiment(random=...)``).
WARFARIN_RANDOM = {"CL": "exponential", "V": "exponential", "KA": "exponential"}
#: PopED's reference sampling times [h] (32 individuals, one 70 mg oral dose).
WARFARIN_TIMES = np.array([0.5, 1.0, 2.0, 6.0, 24.0, 36.0, 72.0, 120.0])


def warfarin(params, design):
    r"""Warfarin concentration [mg/L] after one oral dose (one compartment, first-order
    absorption): :func:`pk_oral` with ``ka = KA``, ``ke = CL/V``.

    ``design`` is either the sampling times [h] (a 70 mg dose) or a dict ``{"t": times,
    "dose": mg}`` (then the dose can be a design variable). Params: ``CL`` [L/h], ``V`` [L],
    ``KA`` [1/h]; fiducial :data:`WARFARIN_FIDUCIAL`.

    >>> import numpy as np
    >>> from fisherforecast.models.biology import warfarin, WARFARIN_FIDUCIAL as p
    >>> t = np.array([2.0, 24.0])
    >>> k = p["CL"] / p["V"]   # the Bateman function, written out
    >>> ref = 70 * p["KA"] / (p["V"] * (p["KA"] - k)) * (np.exp(-k * t) - np.exp(-p["KA"] * t))
    >>> bool(np.allclose(warfarin(p, t), ref, rtol=1e-6))
    True
    """
    if isinstance(design, dict):
        times, dose = design["t"], design["dose"]
    else:
        times, dose = design, 70.0
    pk = {"ka": params["KA"], "ke": params["CL"] / params["V"], "V": params["V"], "D": dose}
    return pk_oral(pk, times)


def warfarin_population_experiment(
    times=None, group_size=32, dose=70.0, fim="reduced", error="proportional", **kwargs
):
    """``ff.PopulationExperiment`` of :func:`warfarin`: one group of `group_size`
    individuals sampled at `times` (default :data:`WARFARIN_TIMES`) after one oral `dose`
    [mg], the random effects :data:`WARFARIN_RANDOM`, FO Fisher matrix `fim` ("reduced", as
    PopED's reference evaluation, or "full"). Further keywords go to
    ``ff.PopulationExperiment``. At :data:`WARFARIN_FIDUCIAL` with the defaults, the RSE%
    are PopED's published CL 4.7383, V 2.7562, KA 13.926, ω²_CL 25.627, ω²_V 30.344,
    ω²_KA 25.777, σ²_prop 11.171 (tested)."""
    times = WARFARIN_TIMES if times is None else np.asarray(times, dtype=np.float64)
    return ff.PopulationExperiment(
        warfarin,
        {"t": times, "dose": float(dose)},
        random=WARFARIN_RANDOM,
        error=error,
        group_size=group_size,
        fim=fim,
        **kwargs,
    )


def _fhn_rhs(t, y, p):
    v, r = y
    return jnp.stack([p["c"] * (v - v**3 / 3.0 + r), -(v - p["a"] + p["b"] * r) / p["c"]])


@memoized
def fitzhugh_nagumo(observable="both", **ode_kwargs):
    r"""FitzHugh–Nagumo excitable-membrane model (FitzHugh 1961; Nagumo et al. 1962).

    .. math::  \dot V = c\,(V - V^3/3 + R),\qquad \dot R = -(V - a + bR)/c,

    V(0) = V0, R(0) = R0 (both parameters). Observables: ``"both"`` (V, R), shape
    ``(n_times, 2)``, as in Ramsay et al. (2007); or ``"V"`` (membrane voltage only).
    Everything is dimensionless.
    """
    _check_choice("observable", observable, ("both", "V"))

    def y0(p):
        return jnp.stack([p["V0"], p["R0"]])

    observe = None if observable == "both" else (lambda y, p: y[0])
    return ff.ode_model(_fhn_rhs, y0=y0, observe=observe, **ode_kwargs)


def fitzhugh_nagumo_experiment(
    times=None, sigma=0.5, observable="both", name="FitzHugh-Nagumo", **ode_kwargs
):
    """``ff.Experiment`` for :func:`fitzhugh_nagumo`; default 41 times over 0–20 and sigma
    = 0.5 (*illustrative*)."""
    times = np.linspace(0.0, 20.0, 41) if times is None else times
    model = fitzhugh_nagumo(observable, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# =========================================================================================
# Lotka–Volterra
# =========================================================================================

#: Hudson's Bay Company hare (prey) and lynx (predator) pelts 1900–1920, in thousands, time
#: in years: posterior means of Carpenter (2018, "Predator-prey population dynamics: the
#: Lotka-Volterra model in Stan", Stan case study): α = 0.55, β = 0.028, γ = 0.80,
#: δ = 0.024, initial (prey, predator) = (33.9, 5.9).
LOTKA_VOLTERRA_FIDUCIAL = {
    "alpha": 0.55,
    "beta": 0.028,
    "gamma": 0.80,
    "delta": 0.024,
    "prey0": 33.9,
    "predator0": 5.9,
}


def _lv_rhs(t, y, p):
    prey, pred = y
    return jnp.stack(
        [
            (p["alpha"] - p["beta"] * pred) * prey,
            (p["delta"] * prey - p["gamma"]) * pred,
        ]
    )


@memoized
def lotka_volterra(observable="both", **ode_kwargs):
    r"""Lotka–Volterra predator–prey model (Lotka 1925; Volterra 1926).

    .. math::  \dot x = (\alpha - \beta y)\,x,\qquad \dot y = (\delta x - \gamma)\,y,

    x(0) = prey0, y(0) = predator0. Conserved: H = δx − γ ln x + βy − α ln y.
    Observables: ``"both"`` (prey, predator), ``"prey"`` or ``"predator"``.
    """
    _check_choice("observable", observable, ("both", "prey", "predator"))

    def y0(p):
        return jnp.stack([p["prey0"], p["predator0"]])

    index = {"prey": 0, "predator": 1}.get(observable)
    observe = None if index is None else (lambda y, p: y[index])
    return ff.ode_model(_lv_rhs, y0=y0, observe=observe, **ode_kwargs)


def lotka_volterra_experiment(
    times=None, sigma=2.0, observable="both", name="Lotka-Volterra (hare-lynx)", **ode_kwargs
):
    """``ff.Experiment`` for :func:`lotka_volterra`; default yearly data over 20 years and
    sigma = 2 thousand pelts (*illustrative*)."""
    times = np.arange(0.0, 21.0) if times is None else times
    model = lotka_volterra(observable, **ode_kwargs)
    return ff.Experiment(model, noise=ff.Gaussian(sigma=sigma), design=times, name=name)


# Every public function gets its own float64 path when called directly (see ._x64).
wrap_public(globals())
