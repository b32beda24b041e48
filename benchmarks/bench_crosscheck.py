"""Time an HMC cross-check of a 5-parameter model: compilation, sampling, ESS per second.

The model is a blended Paczyński microlensing light curve (t0, u0, tE, Fs, Fb) with 121
epochs and Gaussian noise, the high-magnification event of ``examples/hmc_crosscheck.py``.
For each sampler configuration the script runs ``ff.crosscheck`` twice with the same shapes:

- the first call compiles the sampler and samples (``first``);
- the second call, with another seed, reuses the compiled function (``sampling``);
- ``compile`` is the difference.

ESS/s is the smallest effective sample size over the five parameters divided by the
sampling time; ``grad/s`` counts leapfrog steps (one gradient each) after warm-up.

    python benchmarks/bench_crosscheck.py            # ~2 minutes on one CPU core
    python benchmarks/bench_crosscheck.py --quick    # smaller runs
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


def pspl(p, t):
    u = jnp.sqrt(p["u0"] ** 2 + ((t - p["t0"]) / p["tE"]) ** 2)
    return p["Fs"] * (u**2 + 2) / (u * jnp.sqrt(u**2 + 4)) + p["Fb"]


FIDUCIAL = {"t0": 0.0, "u0": 0.3, "tE": 20.0, "Fs": 1.0, "Fb": 0.5}
PRIOR = {
    "t0": (-5.0, 5.0),
    "u0": (0.01, 2.0),
    "tE": (2.0, 80.0),
    "Fs": (0.05, 5.0),
    "Fb": (-1.0, 2.0),
}


def bench(event, label, **settings):
    start = time.perf_counter()
    first = ff.crosscheck(event, FIDUCIAL, prior=PRIOR, seed=0, **settings)
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    second = ff.crosscheck(event, FIDUCIAL, prior=PRIOR, seed=1, **settings)
    t_second = time.perf_counter() - start
    ess = min(second.ess.values())
    draws = second.settings["num_chains"] * second.settings["num_samples"]
    row = {
        "config": label,
        "draws": draws,
        "first_s": t_first,
        "compile_s": t_first - t_second,
        "sampling_s": t_second,
        "min_ess": ess,
        "ess_per_s": ess / t_second,
        "grad_per_s": second.num_steps / t_second,
        "steps_per_draw": second.num_steps / draws,
        "agrees": first.agrees and second.agrees,
    }
    print(
        f"{label:<34} {draws:>6} {t_first:>8.2f} {row['compile_s']:>8.2f} "
        f"{t_second:>9.2f} {ess:>8.0f} {row['ess_per_s']:>8.0f} {row['grad_per_s']:>9.0f} "
        f"{row['steps_per_draw']:>6.1f} {row['agrees']!s:>6}",
        flush=True,
    )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args(argv)
    n = 500 if args.quick else 2000
    event = ff.Experiment(pspl, ff.Gaussian(sigma=0.02), design=np.linspace(-60, 60, 121))
    start = time.perf_counter()
    ff.fisher(event, FIDUCIAL)
    t_fisher = time.perf_counter() - start
    start = time.perf_counter()
    ff.fisher(event, FIDUCIAL)
    print(
        f"fisherforecast {ff.__version__}, jax {jax.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"device {jax.devices()[0].platform}"
    )
    print(
        f"Fisher matrix: {t_fisher:.2f} s first call, "
        f"{1e3 * (time.perf_counter() - start):.2f} ms cached\n"
    )
    print(
        f"{'config':<34} {'draws':>6} {'first':>8} {'compile':>8} {'sampling':>9} "
        f"{'min ESS':>8} {'ESS/s':>8} {'grad/s':>9} {'steps':>6} {'agrees':>6}"
    )
    rows = [
        bench(event, f"1 chain, {n // 2} warm-up + {n}", num_warmup=n // 2, num_samples=n),
        bench(
            event,
            f"4 chains sequential, {n // 4}+{n // 2}",
            num_warmup=n // 4,
            num_samples=n // 2,
            num_chains=4,
            chain_method="sequential",
        ),
        bench(
            event,
            f"4 chains vectorized, {n // 4}+{n // 2}",
            num_warmup=n // 4,
            num_samples=n // 2,
            num_chains=4,
            chain_method="vectorized",
        ),
    ]
    print(
        "\nfirst = compile + sampling (first call); sampling = second call, same shapes; "
        "steps = leapfrog steps per draw"
    )
    return rows


if __name__ == "__main__":
    main()
