"""Benchmark: optimal design of 10 sampling times for an ODE model, and the vmap multistart.

Model: oral one-compartment pharmacokinetics written as an ODE and solved by diffrax
(``ff.ode_model``, Tsit5, rtol 1e-8): gut amount g' = -ka g, central amount c' = ka g - ke c,
observed concentration c/V; parameters (ka, ke, V) = (1.2 /h, 0.15 /h, 30 L), dose 500 mg,
σ = 0.2 mg/L. Design: 10 sampling times in [0.25, 24] h, D-optimality.

Measured:

1. `ff.optimize_design` end to end, cold (compilation included) and warm.
2. The batched multistart against the same starts run one after another:
   - public API: one call with ``n_starts=N`` against N calls with ``n_starts=1``;
   - the jitted core alone (no Python overhead, compilation excluded), for the ODE and for
     the closed-form Bateman function: N single-start runs of the compiled solver against
     one vmapped run over all N starts, and against ``jax.lax.map`` over the starts in
     chunks (``optimize_design(batch_size=...)``).

Times are wall-clock (best of `repeats`); CPU times are printed too because the machines this
runs on are often shared.

Run:  python benchmarks/bench_design.py [--fast] [--starts N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

FIDUCIAL = {"ka": 1.2, "ke": 0.15, "V": 30.0}
DOSE = 500.0
WINDOW = (0.25, 24.0)
N_TIMES = 10


def make_experiment():
    def rhs(t, y, p):
        return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["ke"] * y[1]])

    model = ff.ode_model(rhs, y0=jnp.array([DOSE, 0.0]), observe=lambda y, p: y[1] / p["V"])
    return ff.Experiment(
        model, ff.Gaussian(sigma=0.2), design=np.linspace(1.0, 23.0, N_TIMES), name="oral PK (ODE)"
    )


def machine_info() -> str:
    import diffrax
    import optimistix

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    return (
        f"{platform.platform()}; {cpu}; {os.cpu_count()} logical CPUs{load}\n"
        f"python {platform.python_version()}, jax {jax.__version__} "
        f"({jax.default_backend()}: {jax.devices()[0].device_kind}), numpy "
        f"{np.__version__}, diffrax {diffrax.__version__}, optimistix "
        f"{optimistix.__version__}, fisherforecast {ff.__version__}"
    )


def timed(fn, repeats=1):
    best = np.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(n_starts=32, repeats=3):
    print(machine_info())
    exp = make_experiment()
    rng = np.random.default_rng(1)

    # 1. End to end.
    t_cold, res = timed(
        lambda: ff.optimize_design(exp, FIDUCIAL, bounds=WINDOW, n_starts=n_starts, seed=0)
    )
    t_warm, res = timed(
        lambda: ff.optimize_design(exp, FIDUCIAL, bounds=WINDOW, n_starts=n_starts, seed=1), repeats
    )
    print(f"\n10-point D-optimal design, {n_starts} starts + polish of the best 3:")
    print(f"  cold (compile + run) {t_cold:8.2f} s")
    print(f"  warm                 {t_warm:8.2f} s")
    print(
        f"  optimum log det F = {res.criterion_value:.6f} (initial {res.initial_value:.6f}); "
        f"{res.n_at_best()} of {res.n_starts} starts reached it"
    )
    print(f"  times: {np.round(np.sort(res.design), 3).tolist()}")

    # 2a. Public API: one batched call against sequential single-start calls (no polish).
    inits = rng.uniform(*WINDOW, size=(n_starts, N_TIMES))
    ff.optimize_design(
        exp.replace(design=inits[0]), FIDUCIAL, bounds=WINDOW, n_starts=1, n_polish=0
    )  # compile the single-start path
    ff.optimize_design(exp, FIDUCIAL, bounds=WINDOW, n_starts=n_starts, n_polish=0)

    def sequential():
        return [
            ff.optimize_design(
                exp.replace(design=x), FIDUCIAL, bounds=WINDOW, n_starts=1, n_polish=0
            ).criterion_value
            for x in inits
        ]

    def batched():
        return ff.optimize_design(exp, FIDUCIAL, bounds=WINDOW, n_starts=n_starts, n_polish=0)

    t_seq, _ = timed(sequential, 1)
    t_vec, _ = timed(batched, repeats)
    print(f"\nmultistart, {n_starts} starts, public API (warm, no polish):")
    print(f"  sequential n_starts=1 calls {t_seq:8.2f} s")
    print(f"  one vmapped call            {t_vec:8.2f} s   speedup x{t_seq / t_vec:.2f}")

    # 2b. The jitted core, without Python overhead, for the ODE and the closed form.
    print(f"\nmultistart core: jitted BFGS over {n_starts} starts (warm; wall / CPU seconds)")
    rows = {"ODE (diffrax)": exp, "closed-form Bateman": make_closed_form()}
    speedups = {}
    for label, experiment in rows.items():
        t = core_timings(experiment, inits, repeats)
        base_wall, base_cpu = t["one start at a time"]
        print(f"  {label}:")
        for name, (wall, cpu) in t.items():
            print(
                f"    {name:<24} {wall:8.3f} / {cpu:8.3f}   speedup x{base_wall / wall:5.2f} "
                f"(CPU x{base_cpu / cpu:5.2f})"
            )
        speedups[label] = {k: base_wall / v[0] for k, v in t.items()}
    return {
        "cold": t_cold,
        "warm": t_warm,
        "public_speedup": t_seq / t_vec,
        "core_speedups": speedups,
        "result": res,
    }


def make_closed_form():
    def bateman(p, t):
        ka, ke, V = p["ka"], p["ke"], p["V"]
        return DOSE * ka / (V * (ka - ke)) * (jnp.exp(-ke * t) - jnp.exp(-ka * t))

    return ff.Experiment(bateman, ff.Gaussian(sigma=0.2), design=np.linspace(1.0, 23.0, N_TIMES))


def core_timings(exp, inits, repeats):
    """Wall and CPU time of the batched phase alone, for several ways to run the starts."""
    from fisherforecast._design import criteria, objective, problem
    from fisherforecast._x64 import float64

    n = len(inits)
    with float64():
        names = tuple(FIDUCIAL)
        crit = criteria.check_criterion("D", None, names)
        prob = problem.build_problem(
            [exp],
            False,
            FIDUCIAL,
            names,
            crit,
            None,
            False,
            "forward",
            "forward",
            WINDOW,
            None,
            None,
        )
        u0s = np.stack([problem.u_from_x(x, prob.arrays, prob.spec) for x in inits])
        args = (prob.arrays, prob.spec, 500, 1e-10)

        def run(lo, hi, batch_size=None):
            return jax.block_until_ready(
                objective.multistart(jnp.asarray(u0s[lo:hi]), *args, batch_size)
            )

        variants = {
            "one start at a time": lambda: [run(i, i + 1) for i in range(n)],
            "vmap (batch_size=None)": lambda: run(0, n),
            "lax.map, batch_size=1": lambda: run(0, n, 1),
            "lax.map, batch_size=8": lambda: run(0, n, 8),
        }
        out = {}
        for name, fn in variants.items():
            fn()  # compile
            best = (np.inf, np.inf)
            for _ in range(repeats):
                w, c = time.perf_counter(), time.process_time()
                fn()
                best = min(best, (time.perf_counter() - w, time.process_time() - c))
            out[name] = best
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="8 starts, one repeat")
    parser.add_argument("--starts", type=int, default=None, help="number of starts")
    args = parser.parse_args()
    main(n_starts=args.starts or (8 if args.fast else 32), repeats=1 if args.fast else 3)
