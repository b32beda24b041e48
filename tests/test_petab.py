"""PEtab import (``ff.petab``) against independent answers.

References:

* log-likelihoods at the nominal parameters from AMICI's benchmark tests
  (AMICI-dev/AMICI, tests/benchmark_models/benchmark_models.yaml), an independent C++
  implementation (CVODES): Boehm −138.221997, Fiedler 58.583902, Elowitz 63.202800,
  Brannmark −141.889114 (pre-equilibration);
* the Fisher matrix (log10 scale) against one built from 4th-order central finite
  differences of the simulated observables (no autodiff), entry-wise and in its top
  eigenvalues;
* PetabNoise's Fisher metric against the expected information computed by quadrature of
  the densities (scipy), its log-likelihood against densities written here in numpy;
* a problem with an SBML event is refused with a message naming the event and the problem.

Problems live in tests/data/petab (Benchmark-Models-PEtab, BSD-3, LICENSE beside them).
The compiled kernels are shared within the module, so Boehm compiles once per kernel.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import fisherforecast as ff

pytest.importorskip("petab")
pytest.importorskip("libsbml")

DATA = Path(__file__).parent / "data" / "petab"
BOEHM = DATA / "Boehm_JProteomeRes2014" / "Boehm_JProteomeRes2014.yaml"

# AMICI benchmark-test references (see the module docstring).
REFERENCE_LLH = {
    "Boehm_JProteomeRes2014": -138.22199693517703,
    "Fiedler_BMCSystBiol2016": 58.58390161681,
    "Elowitz_Nature2000": 63.20279991419332,
    "Brannmark_JBC2010": -141.889113770537,
}


@pytest.fixture(scope="module")
def boehm():
    return ff.petab.load(BOEHM)


@pytest.fixture(scope="module")
def boehm_fisher(boehm):
    return ff.fisher(list(boehm.experiments), boehm.nominal)


def test_boehm_matches_reference_llh(boehm):
    assert len(boehm.nominal) == 9 and boehm.n_data == 48
    assert set(boehm.scales.values()) == {"log10"}
    assert abs(boehm.log_likelihood() - REFERENCE_LLH["Boehm_JProteomeRes2014"]) < 1e-3
    # The nominal point is on the problem's scale: log10 of the table's nominalValue.
    table = boehm.measurements  # measurement table, in row order
    assert len(table) == 48
    import pandas as pd

    par = pd.read_csv(BOEHM.parent / "parameters_Boehm_JProteomeRes2014.tsv", sep="\t")
    par = par.set_index("parameterId")
    for name, value in boehm.nominal.items():
        assert value == pytest.approx(np.log10(par.loc[name, "nominalValue"]), rel=1e-14)


def test_boehm_simulation_matches_shipped_simulated_data(boehm):
    """The collection ships simulated data at the nominal point (another tool's output)."""
    import pandas as pd

    sim = pd.read_csv(BOEHM.parent / "simulatedData_Boehm_JProteomeRes2014.tsv", sep="\t")
    ours = boehm.simulate()
    np.testing.assert_allclose(ours, sim["simulation"].to_numpy(), rtol=1e-5, atol=1e-6)


def _fd_jacobian(problem, exp, h=1e-3):
    """4th-order central differences of the model output (observables and σ): the 36
    shifted parameter points and the nominal one in one vmapped solve."""
    names = list(problem.nominal)
    with jax.enable_x64(True):
        base = {k: jnp.float64(v) for k, v in problem.nominal.items()}
        points = []
        for n in names:
            for step in (-2, -1, 1, 2):
                p = dict(base)
                p[n] = jnp.float64(problem.nominal[n] + step * h)
                points.append(p)
        points.append(base)
        stacked = {k: jnp.stack([p[k] for p in points]) for k in names}
        full = np.asarray(jax.jit(jax.vmap(exp))(stacked))
    out = full.reshape(len(points), -1)
    cols = [
        (out[4 * i] - 8 * out[4 * i + 1] + 8 * out[4 * i + 2] - out[4 * i + 3]) / (12 * h)
        for i in range(len(names))
    ]
    return np.stack(cols, axis=1), jnp.asarray(full[-1])


@pytest.fixture(scope="module")
def boehm_fd():
    """``(J, mean)`` of Boehm's model output by finite differences (`_fd_jacobian`) of a
    tight-tolerance solve through another root finder: diffrax's chord iteration at
    rtol = atol = 1e-12 (global error ~1e-11 of each state's range, against ~1e-8 for the
    default Newton stages at 1e-10). Not Newton's: its stopping test changes the iteration
    count as the parameters move, a jump of ~1e-10 that h = 1e-3 turns into 5 % of the
    weak k_imp_homo's information (the derivative itself agrees to 2e-6 between Newton at
    1e-10 and 1e-13 and chord at 1e-10 and 1e-12)."""
    tight = ff.petab.load(BOEHM, rtol=1e-12, atol=1e-12, root_finder="chord")
    return _fd_jacobian(tight, tight.experiments[0])


def test_boehm_fisher_against_finite_differences(boehm, boehm_fisher, boehm_fd):
    exp = boehm.experiments[0]
    J, mean = boehm_fd
    with jax.enable_x64(True):
        W = np.asarray(exp.noise.whiten(jnp.asarray(J), mean, boehm.nominal, exp.design))
    F_fd = W.T @ W
    F = boehm_fisher.matrix
    assert boehm_fisher.names == tuple(boehm.nominal)
    assert np.linalg.norm(F - F_fd) / np.linalg.norm(F) < 1e-6
    # Entry-wise, relative to sqrt(F_ii F_jj): 1e-6 where the information is not tiny. The
    # weakly determined k_imp_homo (F_ii ~ 1e-3 of the others' 1e3) is limited by the
    # finite differences themselves (solver tolerance 1e-10 over h = 1e-3): 1e-2 there.
    diag = np.diag(F_fd)
    d = np.sqrt(np.outer(diag, diag))
    rel = np.abs(F - F_fd) / d
    strong = diag > 1e-3 * diag.max()
    assert np.max(rel[np.ix_(strong, strong)]) < 1e-6
    assert np.max(rel) < 1e-2
    top, top_fd = np.linalg.eigvalsh(F)[::-1][:3], np.linalg.eigvalsh(F_fd)[::-1][:3]
    np.testing.assert_allclose(top, top_fd, rtol=1e-6)


def test_evaluate_gradient_against_finite_differences(boehm, boehm_fisher, boehm_fd):
    """``problem.evaluate``: one forward-sensitivity pass gives the log-likelihood (as
    ``log_likelihood``), the Fisher matrix (as ``ff.fisher``) and the gradient, here
    against the normal densities' derivatives written out in numpy times the finite-
    difference Jacobian of the observables and σ (no autodiff on that side)."""
    ev = boehm.evaluate()
    assert ev.log_likelihood == pytest.approx(boehm.log_likelihood(), abs=1e-9)
    np.testing.assert_allclose(ev.fisher.matrix, boehm_fisher.matrix, rtol=1e-12, atol=0)
    assert ev.fisher.names == boehm_fisher.names == tuple(ev.gradient)
    J, mean = boehm_fd
    y, s = np.asarray(mean)
    m = np.asarray(boehm.data[0])[0]
    w = np.asarray(boehm.experiments[0].design["weight"])
    r = m - y
    d_y, d_s = w * r / s**2, w * (r**2 / s**3 - 1 / s)  # ∂ln N(m; y, s)/∂y, ∂/∂s
    g_fd = np.concatenate([d_y, d_s]) @ J
    g = np.array(list(ev.gradient.values()))
    # The gradient is small (nominal ≈ best fit: |g| ≤ 0.06 from terms of ~10 each):
    # compare on the scale of the terms (1e-6; 1e-3 for the weak k_imp_homo, whose
    # derivatives are 1e-6 of the others' and limited by the differences, as in the
    # Fisher test above), and by sign where it is clearly nonzero.
    scale = np.abs(np.concatenate([d_y, d_s])) @ np.abs(J)
    rel = np.abs(g - g_fd) / scale
    strong = scale > 1e-4 * scale.max()
    assert strong.sum() == 8 and np.max(rel[strong]) < 1e-6 and np.max(rel) < 1e-3
    big = np.abs(g_fd) > 1e-3
    assert big.sum() >= 5 and np.all(np.sign(g[big]) == np.sign(g_fd[big]))
    # Away from the best fit the gradient is large, and FD of log_likelihood itself
    # (4th-order, h = 1e-2 on log10 scale) checks it end to end.
    away = {**boehm.nominal, "k_phos": boehm.nominal["k_phos"] + 0.2}
    g_away = boehm.evaluate(away).gradient
    h = 1e-2
    for name in ("k_phos", "Epo_degradation_BaF3", "sd_pSTAT5A_rel"):
        f = [boehm.log_likelihood({**away, name: away[name] + k * h}) for k in (-2, -1, 1, 2)]
        fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
        assert g_away[name] == pytest.approx(fd, rel=1e-4), name


def test_only_dynamic_parameters_are_pushed_through_the_solve(boehm):
    """The noise parameters (sd_*) reach the observables only, so the trajectory's
    derivative is taken along the 6 kinetic parameters (the Fisher matrix built that way is
    checked against finite differences above), and a tangent of the measurement times
    (the fallback path) equals dx/dt = f(x) at those times."""
    model = boehm.experiments[0].model
    dyn = {model.names[i] for i in model.dynamic_index}
    assert dyn == {n for n in boehm.nominal if not n.startswith("sd_")}
    exp = boehm.experiments[0]
    with jax.enable_x64(True):
        p = {k: jnp.float64(v) for k, v in boehm.nominal.items()}
        theta = model.theta(p)
        design = {k: jnp.asarray(v) for k, v in exp.design.items()}
        # a time tangent: d X / d t_row = f(t_row, X_row) for each (finite-time) row
        dt = jnp.ones_like(design["time"])
        tangent = {k: _zero_tangent(v) for k, v in design.items()}
        tangent["time"] = dt
        X, dX = jax.jvp(
            lambda th, d: model._trajectory(th, d),
            (theta, design),
            (jnp.zeros_like(theta), tangent),
        )
        k, _, _ = model.states(p, design)
        rates = jax.vmap(lambda t, x: model.sim.rhs(t, x, k))(design["time"], X)
        # (the solver's dense output differentiates to ~1e-5 of f; a dropped tangent is 100 %)
        np.testing.assert_allclose(dX, rates, rtol=1e-4, atol=1e-6 * float(jnp.max(abs(rates))))


def _zero_tangent(v):
    v = jnp.asarray(v)
    if jnp.issubdtype(v.dtype, jnp.floating):
        return jnp.zeros_like(v)
    return np.zeros(v.shape, dtype=jax.dtypes.float0)


def test_linear_scale_import():
    """scale="linear" puts every parameter on its linear scale (identifiability on the
    linear scale is checked by tests/test_petab_example.py)."""
    lin = ff.petab.load(BOEHM, scale="linear")
    assert set(lin.scales.values()) == {"lin"}
    assert lin.nominal["k_phos"] == pytest.approx(10**4.1977354885, rel=1e-9)


def test_no_retracing_across_calls(boehm, boehm_fisher):
    model = boehm.experiments[0].model
    before = model.traces
    shifted = {k: v + 0.01 for k, v in boehm.nominal.items()}
    F2 = ff.fisher(list(boehm.experiments), shifted)
    assert model.traces == before
    assert not np.allclose(F2.matrix, boehm_fisher.matrix)


def _boehm_fast_key(boehm, experiment):
    from fisherforecast import _compile, _engine

    names = tuple(boehm.nominal)
    with jax.enable_x64(True):
        fid = {k: np.float64(v) for k, v in boehm.nominal.items()}
        args = ((experiment,), fid, names, "forward")
        return _compile._fast_key(_engine.evaluation_kernel, args, jax.devices()[0])


def test_fast_key_follows_the_model_content(boehm):
    """A PetabModel is fingerprinted by its content (sympy expressions, arrays, solver
    options), not by a jaxpr: the same problem loaded again has the same key; another
    tolerance, another nominal constant, an added observable or other dynamic
    parameters give another key (never a stale executable), and a simulator subclass
    (whose methods the key cannot see) gives none."""
    import copy
    import dataclasses

    exp = boehm.experiments[0]
    key = _boehm_fast_key(boehm, exp)
    assert key is not None
    again = ff.petab.load(BOEHM)
    assert _boehm_fast_key(again, again.experiments[0]) == key

    def variant(change):
        model = copy.copy(exp.model)
        model.sim = copy.copy(model.sim)
        change(model)
        assert model._trajectory.__self__ is model  # the copy solves with its own settings
        return _boehm_fast_key(boehm, dataclasses.replace(exp, model=model))

    def tolerance(m):
        m.sim.options = dataclasses.replace(m.sim.options, rtol=1e-8)

    def constant(m):
        m.base_k = m.base_k + (np.arange(m.base_k.size) == 0)  # one constant + 1

    def dynamic(m):
        m.dynamic_index = m.dynamic_index[:-1]

    keys = {variant(change) for change in (tolerance, constant, dynamic)}

    class OwnSimulator(type(exp.model.sim)):
        pass

    def subclass(m):
        m.sim = OwnSimulator.__new__(OwnSimulator)
        m.sim.__dict__.update(exp.model.sim.__dict__)

    assert variant(subclass) is None  # a simulator of another class: no fast key
    extra = exp.model.with_observables([("y_new", exp.model.observables[0][1], 0.1, 0, 0)])
    keys.add(_boehm_fast_key(boehm, dataclasses.replace(exp, model=extra)))
    assert len(keys) == 4 and key not in keys and None not in keys


def test_fast_hit_skips_tracing_and_gives_the_same_bits(boehm, boehm_fisher):
    """With the in-process table emptied (as in a new process), Boehm's Fisher kernel is
    loaded by its fast key: no trace, no lowering, the same matrix bit for bit."""
    from fisherforecast import _compile, _engine

    if _compile.cache_dir() is None:
        pytest.skip("the disk cache is off")
    _engine.evaluation_kernel.clear()
    _compile.reset_compile_stats()
    model = boehm.experiments[0].model
    before = model.traces
    F = ff.fisher(list(boehm.experiments), boehm.nominal)
    stats = _compile.compile_stats()
    assert stats["fast_hits"] == 1 and stats["lowerings"] == 0, stats
    assert model.traces == before
    np.testing.assert_array_equal(F.matrix, boehm_fisher.matrix)


def test_bounded_profile_stays_in_the_problem_bounds(boehm, boehm_fisher, monkeypatch):
    """Boehm: k_imp_homo sits near its upper bound (log10 5) and k_exp_hetero at its lower
    (−5), with conditional Fisher errors of 6·10⁴ and 23 decades. Unbounded, a fit stepped
    there and the stiff solve ran to its step limit (≈20 s per evaluation, a profile over
    10 min). Within ``problem.bounds`` every evaluation of every fit stays inside, and the
    profile of the well-determined k_phos is close to the Fisher parabola."""
    from fisherforecast._identify import profile_fit

    seen = []
    evaluate = profile_fit.evaluate

    def spy(problem, theta):
        seen.append(np.array(theta, dtype=np.float64))
        return evaluate(problem, theta)

    monkeypatch.setattr(profile_fit, "evaluate", spy)
    names = list(boehm.nominal)
    psi, s = boehm.nominal["k_phos"], boehm_fisher.sigma()["k_phos"]
    grid = psi + s * np.array([-2.0, 0.0, 2.0])
    exps = list(boehm.experiments)
    prof = ff.profile_likelihood(
        exps, boehm.nominal, "k_phos", grid=grid, bounds=boehm.bounds, levels=(0.95,)
    )
    assert prof.converged.all(), prof.steps
    theta = np.array(seen)
    lo = np.array([boehm.bounds[n][0] for n in names])
    hi = np.array([boehm.bounds[n][1] for n in names])
    assert theta.shape[1] == len(names) and np.all((theta >= lo) & (theta <= hi))
    # Asimov data: Δ ≈ (ψ − ψ̂)²/σ² near the optimum (4 at ±2σ).
    np.testing.assert_allclose(prof.delta, [4.0, 0.0, 4.0], atol=1.5)
    # The fits compensate: with the others held at nominal, Δ would be (ψ − ψ̂)²·F_kk ≈ 11
    # at 2σ (σ_marginal/σ_conditional ≈ 1.7).
    F_kk = boehm_fisher.matrix[names.index("k_phos"), names.index("k_phos")]
    held = (2.0 * s) ** 2 * F_kk
    assert held > 8.0 and max(prof.delta[0], prof.delta[2]) < 0.6 * held


def test_log_likelihood_by_hand(boehm):
    """Normal densities written out in numpy on the simulated observables."""
    sim = boehm.simulate()
    meas = boehm.measurements["measurement"].to_numpy()
    sd = {o: 10 ** boehm.nominal[f"sd_{o}"] for o in ("pSTAT5A_rel", "pSTAT5B_rel", "rSTAT5A_rel")}
    s = np.array([sd[o] for o in boehm.measurements["observableId"]])
    llh = np.sum(-0.5 * np.log(2 * np.pi * s**2) - 0.5 * ((meas - sim) / s) ** 2)
    assert boehm.log_likelihood() == pytest.approx(llh, abs=1e-9)


# ---------------------------------------------------------------------------------------
# The noise model alone (no ODE): metric, densities and scale information
# ---------------------------------------------------------------------------------------
def _design(transform, dist):
    return {
        "transform": np.array([transform]),
        "distribution": np.array([dist]),
        "weight": np.ones(1),
    }


def _log_density(m, y, s, transform, dist):
    if transform == 0:
        r, log_jac = m - y, 0.0
    elif transform == 1:
        r, log_jac = np.log(m) - np.log(y), -np.log(m)
    else:
        r, log_jac = np.log10(m) - np.log10(y), -np.log(m * np.log(10))
    if dist == 0:
        return -0.5 * (r / s) ** 2 - 0.5 * np.log(2 * np.pi * s**2) + log_jac
    return -abs(r) / s - np.log(2 * s) + log_jac


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("transform", [0, 1, 2])
@pytest.mark.parametrize("dist", [0, 1])
def test_noise_metric_is_expected_information(transform, dist):
    """``inner`` equals E[(∂ ln p)²] for y and σ, by quadrature; llh equals the density."""
    noise = ff.petab.PetabNoise()
    y, s = 2.0, 0.3
    design = _design(transform, dist)
    h = {0: lambda v: v, 1: np.log, 2: np.log10}[transform]
    h_inv = {0: lambda z: z, 1: np.exp, 2: lambda z: 10.0**z}[transform]

    def score2(z, which, eps=1e-8):
        # over the transformed datum z = h(m): E[(∂ ln p(m))²] with p's own weight
        m = h_inv(z)

        def lnp(dy, ds):
            return _log_density(m, y + dy, s + ds, transform, dist)

        if which == 0:
            g = (lnp(eps, 0) - lnp(-eps, 0)) / (2 * eps)
        else:
            g = (lnp(0, eps) - lnp(0, -eps)) / (2 * eps)
        r = z - h(y)
        pz = (
            np.exp(-0.5 * (r / s) ** 2) / np.sqrt(2 * np.pi) / s
            if dist == 0
            else np.exp(-abs(r) / s) / (2 * s)
        )
        return g**2 * pz

    z0 = h(y)
    info = [
        sum(
            scipy.integrate.quad(score2, a, b, args=(w,), limit=200, epsabs=1e-13, epsrel=1e-8)[0]
            for a, b in ((z0 - 40 * s, z0 - 1e-7), (z0 + 1e-7, z0 + 40 * s))
        )
        for w in (0, 1)
    ]
    with jax.enable_x64(True):
        mean = jnp.array([[y], [s]])
        metric = np.asarray(noise.inner(jnp.eye(2), jnp.eye(2), mean, {}, design))
        m = 2.7 if transform else 1.4
        llh = float(noise.log_likelihood(jnp.array([[m], [0.0]]), mean, {}, design))
    np.testing.assert_allclose(np.diag(metric), info, rtol=1e-5)
    assert abs(metric[0, 1]) < 1e-12
    assert llh == pytest.approx(_log_density(m, y, s, transform, dist), rel=1e-12)


# ---------------------------------------------------------------------------------------
# Refusals and bad input
# ---------------------------------------------------------------------------------------
def test_event_is_refused_with_its_name(tmp_path):
    import libsbml

    folder = tmp_path / "Boehm_with_event"
    shutil.copytree(BOEHM.parent, folder)
    xml = folder / "model_Boehm_JProteomeRes2014.xml"
    doc = libsbml.readSBMLFromFile(str(xml))
    event = doc.getModel().createEvent()
    event.setId("dose")
    event.setUseValuesFromTriggerTime(True)
    trigger = event.createTrigger()
    trigger.setMath(libsbml.parseL3Formula("time >= 10"))
    assignment = event.createEventAssignment()
    assignment.setVariable("STAT5A")
    assignment.setMath(libsbml.parseL3Formula("100"))
    libsbml.writeSBMLToFile(doc, str(xml))
    yaml = folder / "Boehm_JProteomeRes2014.yaml"
    with pytest.raises(ff.InputError, match=r"(?s)Boehm_JProteomeRes2014.*event"):
        ff.petab.load(yaml)


def test_unknown_noise_distribution_is_refused(tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(BOEHM.parent, folder)
    obs = folder / "observables_Boehm_JProteomeRes2014.tsv"
    obs.write_text(obs.read_text().replace("\tnormal", "\tcauchy"))
    with pytest.raises(ff.InputError, match="noise distribution 'cauchy'"):
        ff.petab.load(folder / "Boehm_JProteomeRes2014.yaml")


def test_bad_path_and_bad_params(boehm, tmp_path):
    with pytest.raises(ff.InputError, match=r"no_such\.yaml"):
        ff.petab.load(tmp_path / "no_such.yaml")
    with pytest.raises(ff.ParameterError, match="k_unknown"):
        boehm.log_likelihood({"k_unknown": 1.0})


# ---------------------------------------------------------------------------------------
# More reference problems (each compiles its own model)
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["Fiedler_BMCSystBiol2016", "Elowitz_Nature2000", "Brannmark_JBC2010"]
)
def test_reference_llh(name):
    """Conditions with time-dependent rules (Fiedler), log10 observables (Elowitz),
    pre-equilibration with conserved totals and time discontinuities (Brannmark)."""
    problem = ff.petab.load(DATA / name / f"{name}.yaml")
    assert abs(problem.log_likelihood() - REFERENCE_LLH[name]) < 1e-3


@pytest.mark.parametrize("dist", [0, 1])
def test_noise_simulate_and_expected_deviance_by_monte_carlo(dist):
    """Draws have the right spread on the log10 scale; expected_deviance matches the Monte
    Carlo mean of −2 ln L up to its mean-free constant (differences between two means)."""
    noise = ff.petab.PetabNoise()
    n = 20000
    design = {
        "transform": np.full(n, 2),
        "distribution": np.full(n, dist),
        "weight": np.ones(n),
    }
    with jax.enable_x64(True):
        mean0 = jnp.stack([jnp.full(n, 3.0), jnp.full(n, 0.2)])
        draws = np.asarray(noise.simulate(jax.random.PRNGKey(0), mean0, {}, design))
        z = np.log10(draws[0]) - np.log10(3.0)
        sd = 0.2 if dist == 0 else 0.2 * np.sqrt(2.0)  # Laplace scale b: sd = b·√2
        assert np.std(z) == pytest.approx(sd, rel=0.03)
        assert abs(np.mean(z)) < 0.01
        alt = jnp.stack([jnp.full(n, 3.5), jnp.full(n, 0.25)])
        ed = [float(noise.expected_deviance(m, mean0, {}, {}, design)) for m in (mean0, alt)]
    # Monte Carlo with the densities written here: per-datum −2 ln L differences.
    m = draws[0]
    per = -2 * (_log_density(m, 3.5, 0.25, 2, dist) - _log_density(m, 3.0, 0.2, 2, dist))
    se = np.std(per) / np.sqrt(n)
    assert abs((ed[1] - ed[0]) / n - np.mean(per)) < 4 * se


def test_new_observable_candidates_are_checked(boehm):
    """Quantities the problem does not measure: their symbols must exist in the model, the
    id must be new, and the spec a (formula, noise) pair; a good one makes one candidate
    per time, whose model computes the new quantity (a state, checked against the
    simulated trajectory of the measured observables' kernel)."""
    with pytest.raises(ff.InputError, match="nucXYZ"):
        boehm.candidate_experiments([1.0], new_observables={"x": ("nucXYZ", "0.1")})
    with pytest.raises(ff.InputError, match="already an observable"):
        boehm.candidate_experiments([1.0], new_observables={"pSTAT5A_rel": ("pApA", "1")})
    with pytest.raises(ff.InputError, match=r"\(formula, noise\)"):
        boehm.candidate_experiments([1.0], new_observables={"x": "pApA"})
    cands = boehm.candidate_experiments([10.0], new_observables={"x": ("2 * pApA", "0.5")})
    assert [c.name for c in cands] == ["x at t=10"]
    exp = cands[0]
    with jax.enable_x64(True):
        p = {k: jnp.float64(v) for k, v in boehm.nominal.items()}
        out = np.asarray(jax.jit(lambda e, q: e(q))(exp, p))
        _, _, X = exp.model.states(p, exp.design)
    i = exp.model.sim.model.state_ids.index("pApA")
    assert out[0, 0] == pytest.approx(2 * float(X[0, i]), rel=1e-12)
    assert out[1, 0] == 0.5


# ---------------------------------------------------------------------------------------
# Objective priors (no ODE): densities against scipy.stats, gradients against differences
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["lin", "log", "log10"])
@pytest.mark.parametrize(
    "kind",
    [
        "normal",
        "laplace",
        "uniform",
        "logNormal",
        "logLaplace",
        "parameterScaleNormal",
        "parameterScaleLaplace",
        "parameterScaleUniform",
    ],
)
def test_prior_density_and_gradient(kind, scale):
    import scipy.stats as st

    from fisherforecast.petab._priors import log_prior, log_prior_gradient

    to_lin = {"lin": lambda t: t, "log": np.exp, "log10": lambda t: 10.0**t}[scale]
    theta = {"lin": 2.5, "log": 0.9, "log10": 0.4}[scale]  # x = 2.5, 2.46, 2.51
    x = to_lin(theta)
    a, b = (0.3, 2.0) if "niform" not in kind else (0.1, 4.0)
    if kind.startswith("parameterScale"):
        v = theta
    elif kind.startswith("log"):
        v = np.log(x)
    else:
        v = x
    base = kind.replace("parameterScale", "").lower().removeprefix("log")
    dist = {"normal": st.norm(a, b), "laplace": st.laplace(a, b), "uniform": st.uniform(a, b - a)}
    expected = dist[base].logpdf(v) - (np.log(x) if kind.startswith("log") else 0.0)
    priors = {"p": (kind, (a, b), scale)}
    assert log_prior(priors, {"p": theta}, {"p": scale}) == pytest.approx(expected, abs=1e-12)
    h = 1e-4
    f = [log_prior(priors, {"p": theta + k * h}, {"p": scale}) for k in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    g = log_prior_gradient(priors, {"p": theta}, {"p": scale})["p"]
    assert g == pytest.approx(fd, rel=1e-7, abs=1e-9)
    if base == "uniform":
        assert g == 0.0
    outside = log_prior_gradient({"p": ("uniform", (5.0, 6.0), scale)}, {"p": theta}, {"p": scale})
    assert np.isnan(outside["p"])


@pytest.mark.parametrize("kind", ["parameterScaleNormal", "parameterScaleLaplace"])
@pytest.mark.parametrize("prior_scale", ["log", "log10"])
def test_prior_on_its_own_scale_of_a_linear_parameter(kind, prior_scale):
    """``load(scale="linear")`` keeps each prior on the problem's scale: v = log10(x) for a
    parameter now estimated as x."""
    import scipy.stats as st

    from fisherforecast.petab._priors import log_prior, log_prior_gradient

    to_v = np.log if prior_scale == "log" else np.log10
    x, a, b = 2.5, 0.1, 0.7
    priors = {"p": (kind, (a, b), prior_scale)}
    dist = st.norm(a, b) if kind.endswith("Normal") else st.laplace(a, b)
    assert log_prior(priors, {"p": x}, {"p": "lin"}) == pytest.approx(dist.logpdf(to_v(x)))
    h = 1e-4
    f = [log_prior(priors, {"p": x + k * h}, {"p": "lin"}) for k in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    g = log_prior_gradient(priors, {"p": x}, {"p": "lin"})["p"]
    assert g == pytest.approx(fd, rel=1e-7)
    # Undefined for x ≤ 0 (log of a non-positive value): -inf and a NaN gradient.
    assert log_prior(priors, {"p": -1.0}, {"p": "lin"}) == -np.inf
    assert np.isnan(log_prior_gradient(priors, {"p": -1.0}, {"p": "lin"})["p"])


def test_evaluate_adds_the_priors(boehm):
    """``evaluate(prior=True)``: the priors' log-density, gradient and information on top
    of the data's, away from the nominal point (where dv/dθ of a prior on the linear value
    of a log10 parameter differs from its nominal value), against the parts written out."""
    import dataclasses

    priors = {
        "k_phos": ("parameterScaleNormal", (4.0, 0.5), "log10"),
        "sd_pSTAT5A_rel": ("logNormal", (0.0, 2.0), "log10"),
        "k_exp_homo": ("normal", (0.01, 0.02), "log10"),  # on x = 10^θ
    }
    with_prior = dataclasses.replace(boehm, priors=priors)
    at = {**boehm.nominal, "k_exp_homo": boehm.nominal["k_exp_homo"] + 0.3}
    plain, ev = boehm.evaluate(at), with_prior.evaluate(at, prior=True)
    k, sd, th = at["k_phos"], at["sd_pSTAT5A_rel"], at["k_exp_homo"]
    ln10 = np.log(10.0)
    v = sd * ln10  # ln x of the log-normal prior's variable
    x = 10.0**th
    lp = -0.5 * np.log(2 * np.pi * 0.25) - 0.5 * ((k - 4.0) / 0.5) ** 2
    lp += -0.5 * np.log(2 * np.pi * 4.0) - 0.5 * (v / 2.0) ** 2 - v
    lp += -0.5 * np.log(2 * np.pi * 0.02**2) - 0.5 * ((x - 0.01) / 0.02) ** 2
    assert ev.log_likelihood == pytest.approx(plain.log_likelihood + lp, abs=1e-9)
    assert ev.log_likelihood == pytest.approx(with_prior.log_likelihood(at, prior=True), abs=1e-9)
    g = dict(plain.gradient)
    g["k_phos"] += -(k - 4.0) / 0.25
    g["sd_pSTAT5A_rel"] += (-v / 4.0 - 1.0) * ln10
    g["k_exp_homo"] += -(x - 0.01) / 0.02**2 * x * ln10
    for name in g:
        assert ev.gradient[name] == pytest.approx(g[name], rel=1e-12, abs=1e-12), name
    np.testing.assert_array_equal(ev.gradient_vector, [ev.gradient[n] for n in ev.names])
    F = plain.fisher.matrix.copy()
    names = list(boehm.nominal)
    for name, info in (
        ("k_phos", 1 / 0.25),
        ("sd_pSTAT5A_rel", ln10**2 / 4.0),
        ("k_exp_homo", (x * ln10 / 0.02) ** 2),
    ):
        F[names.index(name), names.index(name)] += info
    np.testing.assert_allclose(ev.fisher.matrix, F, rtol=1e-12)
    text = ev.summary()
    assert text.splitlines()[0] == f"ln L = {ev.log_likelihood:.6f}" and "k_exp_homo" in text


def test_newton_stages_converge_on_states_of_order_1e8():
    """A state of 10⁸ made of large cancelling rates: Newton's residual test on the stages
    is scaled per state (``max(1, |x0|)``), else round-off keeps the residual above an
    absolute 1e-10 and steps are rejected for nothing (Weber_BMC2015: 7470 of 13493; this
    toy: 63 of 238 before the scaling, 1 of 129 after). States against scipy's Radau."""
    import diffrax
    import scipy.integrate as si
    import sympy as sp

    from fisherforecast.petab._sbml import SbmlModel
    from fisherforecast.petab._simulate import Simulator, SolverOptions

    x, y, k = sp.symbols("x y k")
    rhs = (1e8 - k * 1e-8 * x**2 + 3e7 * sp.sin(x * 1e-8), 1e-8 * x - y)
    model = SbmlModel(
        state_ids=("x", "y"),
        rhs=rhs,
        rules=(),
        const_ids=("k",),
        const_values=np.array([0.1]),
        derived=(),
        init=(sp.Float(1e7), sp.Float(0.0)),
        conservation=np.zeros((0, 2)),
        jump_times=(),
        features=(),
        compartment_of={},
        species_ids=("x", "y"),
    )
    sim = Simulator(model, ["k"], SolverOptions())
    with jax.enable_x64(True):
        kk = jnp.array([0.1])
        x0 = sim.initial_state(kk)
        term = diffrax.ODETerm(lambda t, s, a: sim.rhs(t, s, a))

        def solve(x0):
            return diffrax.diffeqsolve(
                term, sim._solver(x0), 0.0, 30.0, None, x0, args=kk,
                stepsize_controller=sim._controller(kk), max_steps=10_000, throw=False,
                saveat=diffrax.SaveAt(t1=True),
            )  # fmt: skip

        sol = jax.jit(solve)(x0)
        steps, rejected = int(sol.stats["num_steps"]), int(sol.stats["num_rejected_steps"])
        end = np.asarray(sol.ys[-1])
    f = sp.lambdify((x, y), [e.subs(k, 0.1) for e in rhs])
    ref = si.solve_ivp(lambda t, s: f(*s), (0, 30), [1e7, 0.0], method="Radau", rtol=1e-12,
                       atol=1e-12).y[:, -1]  # fmt: skip
    assert rejected <= 0.1 * steps, (steps, rejected)
    np.testing.assert_allclose(end, ref, rtol=1e-8)
