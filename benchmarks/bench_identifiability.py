"""Benchmark: identifiability report of an ODE model with 5 states, 8 parameters, 50 times.

The model is an SEIRD epidemic with waning immunity (states S, E, I, R, D; parameters β, σ,
γ, μ, ω, the reporting fraction ρ and the initial exposed/infected E0, I0), observed as the
reported prevalence ρ·I and the cumulative deaths D at 50 times: 100 data, Gaussian errors.
It is solved with diffrax (Tsit5, rtol 1e-8) through ``ff.ode_model`` (forward mode).

Side by side, in one run:

* ``ff.identifiability`` (exact Jacobian at the fiducial and at 3 random points, SVDs,
  collinearity, exhaustive subset search over 2⁸ subsets): first call (compile + run) and
  later calls (run only, new fiducial values: no recompilation);
* the bare compiled Jacobian (``ff.jacobian`` under jit);
* one forward solve (jitted);
* numdifftools' ``Jacobian`` of the same jitted forward model (central differences with
  Richardson extrapolation), which is what a finite-difference identifiability analysis
  needs per point.

Accuracy: the numdifftools and JAX Jacobians are compared with each other and with a
high-order central difference at a tuned step.

Usage: python benchmarks/bench_identifiability.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import fmt_time, machine_info, timeit

NAMES = ("beta", "sigma", "gamma", "mu", "omega", "rho", "E0", "I0")
FIDUCIAL = {
    "beta": 0.5,
    "sigma": 0.25,
    "gamma": 0.2,
    "mu": 0.01,
    "omega": 0.02,
    "rho": 0.3,
    "E0": 20.0,
    "I0": 5.0,
    "N": 10_000.0,
}
TIMES = np.linspace(1.0, 100.0, 50)


def seird_rhs(t, y, p):
    import jax.numpy as jnp

    s, e, i, r, _ = y  # D only accumulates
    infection = p["beta"] * s * i / p["N"]
    return jnp.stack(
        [
            -infection + p["omega"] * r,
            infection - p["sigma"] * e,
            p["sigma"] * e - (p["gamma"] + p["mu"]) * i,
            p["gamma"] * i - p["omega"] * r,
            p["mu"] * i,
        ]
    )


def seird_y0(p):
    import jax.numpy as jnp

    zero = 0.0 * p["N"]
    return jnp.stack([p["N"] - p["E0"] - p["I0"], p["E0"], p["I0"], zero, zero])


def observe(y, p):
    import jax.numpy as jnp

    return jnp.stack([p["rho"] * y[2], y[4]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    args = parser.parse_args()
    min_time = 0.5 if args.quick else 3.0

    import jax
    import jax.numpy as jnp
    import numdifftools as nd

    import fisherforecast as ff
    from fisherforecast._x64 import float64

    print("== Identifiability report: SEIRD ODE, 5 states, 8 parameters, 50 times (100 data) ==")
    print(machine_info())
    model = ff.ode_model(seird_rhs, y0=seird_y0, observe=observe, rtol=1e-8, atol=1e-8)
    exp = ff.Experiment(model, ff.Gaussian(sigma=jnp.array([2.0, 1.0])), design=TIMES, name="SEIRD")

    # ---- first call: compile + run ------------------------------------------------------
    t0, c0 = time.perf_counter(), time.process_time()
    report = ff.identifiability(exp, FIDUCIAL, params=NAMES)
    first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    # ---- later calls: new fiducial values, same shapes: no recompilation ----------------
    moved = {k: v * 1.01 for k, v in FIDUCIAL.items()}
    run_best, run_median = timeit(
        lambda: ff.identifiability(exp, moved, params=NAMES), min_time=min_time, repeats=3
    )

    with float64():
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in FIDUCIAL.items()}
        t64 = jnp.asarray(TIMES)
        jac = jax.jit(lambda p: ff.jacobian(exp, p, NAMES)[1])
        forward = jax.jit(lambda x: model({**p64, **dict(zip(NAMES, x, strict=True))}, t64))
        x0 = jnp.array([FIDUCIAL[n] for n in NAMES])
        J_ad = np.asarray(jac(p64))
        np.asarray(forward(x0))
        jac_best, _ = timeit(lambda: jac(p64), min_time=min_time)
        fwd_best, _ = timeit(lambda: forward(x0), min_time=min_time)

        def flat(x):
            return np.asarray(forward(jnp.asarray(x))).reshape(-1)

        nd_results = {}
        for label, step in (("defaults", None), ("base_step=1e-4", 1e-4)):
            # numdifftools' default steps start at 2·(|x| + 1): far outside the parameter
            # range for rates of 0.01-0.5 (negative rates, stiff solves); 1e-4 is tuned.
            gen = None if step is None else nd.MaxStepGenerator(base_step=step)
            nd_jac = nd.Jacobian(flat, method="central", step=gen)
            J_nd = nd_jac(np.asarray(x0))
            best, _ = timeit(
                lambda nd_jac=nd_jac: nd_jac(np.asarray(x0)), min_time=min_time, repeats=3
            )
            nd_results[label] = (J_nd, best)

    J_ref = reference_jacobian()
    scale = np.max(np.abs(J_ref), axis=0)

    def error(J):
        return float(np.max(np.abs(J - J_ref) / scale))

    print()
    print(report.summary())
    print()
    print(
        f"ff.identifiability, first call (compile + run): {first_wall:8.2f} s wall, "
        f"{first_cpu:.2f} s CPU"
    )
    print(
        f"ff.identifiability, later calls (run only)    : {fmt_time(run_best)} best, "
        f"{fmt_time(run_median)} median  (4 Jacobians: fiducial + 3 random points)"
    )
    print(f"  compile time ≈ first − run                  : {first_wall - run_best:8.2f} s")
    print(f"compiled Jacobian (jit(ff.jacobian))          : {fmt_time(jac_best)}")
    print(f"one forward solve (jit)                       : {fmt_time(fwd_best)}")
    for label, (_, best) in nd_results.items():
        print(
            f"numdifftools Jacobian ({label:>14})      : {fmt_time(best)}  "
            f"ratio to the exact Jacobian {best / jac_best:8.1f}×, to the full report "
            f"(4 Jacobians) {4 * best / run_best:7.1f}×"
        )
    print(
        "Accuracy: max |J − J_ref| / max|J_ref| per column; J_ref = 4th-order central "
        "differences of a scipy DOP853 solve at rtol 1e-12:"
    )
    print(f"  fisherforecast (forward mode through diffrax, rtol 1e-8): {error(J_ad):.1e}")
    for label, (J_nd, _) in nd_results.items():
        print(f"  numdifftools ({label}){'':>{27 - len(label)}}: {error(J_nd):.1e}")


def reference_jacobian():
    """Independent reference: scipy's DOP853 at rtol 1e-12 and 4th-order central
    differences in each parameter (relative step 1e-3; truncation ~1e-12, solver noise
    ~1e-9 of the column)."""
    import scipy.integrate

    def solve(x):
        p = {**FIDUCIAL, **dict(zip(NAMES, x, strict=True))}

        def rhs(t, y):
            s, e, i, r, _ = y
            infection = p["beta"] * s * i / p["N"]
            return [
                -infection + p["omega"] * r,
                infection - p["sigma"] * e,
                p["sigma"] * e - (p["gamma"] + p["mu"]) * i,
                p["gamma"] * i - p["omega"] * r,
                p["mu"] * i,
            ]

        y0 = [p["N"] - p["E0"] - p["I0"], p["E0"], p["I0"], 0.0, 0.0]
        sol = scipy.integrate.solve_ivp(
            rhs, (0.0, TIMES[-1]), y0, t_eval=TIMES, method="DOP853", rtol=1e-12, atol=1e-10
        )
        return np.stack([p["rho"] * sol.y[2], sol.y[4]], axis=1).reshape(-1)

    x0 = np.array([FIDUCIAL[n] for n in NAMES])
    cols = []
    for i in range(len(NAMES)):
        h = 1e-3 * abs(x0[i])
        e = np.zeros(len(NAMES))
        e[i] = h
        f = [solve(x0 + k * e) for k in (-2, -1, 1, 2)]
        cols.append((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))
    return np.stack(cols, axis=1)


if __name__ == "__main__":
    main()
