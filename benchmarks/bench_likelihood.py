"""Benchmark 8: a closed-form ``ff.Likelihood`` against the specialised noise model.

The same model (a sum of two damped oscillations, 5 parameters, N outputs) with

* ``ff.Gaussian(sigma)`` and ``ff.Likelihood(lambda mu: dist.Normal(mu, sigma))``;
* ``ff.Poisson()`` and ``ff.Likelihood(lambda mu: dist.Poisson(mu))``;
* for scale, ``ff.NegativeBinomial(r)`` (fixed r) and with r a forecast parameter.

Measured side by side in one run, interleaved (A, B, A, B, ...): the compiled kernel
(``jax.jit(ff.fisher_information)``) and the full ``ff.fisher`` call. Goal: Likelihood
≤ 1.5× the specialised model. The matrices are compared too.

Usage:
    python benchmarks/bench_likelihood.py [--quick] [--n 4096]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from common import fmt_time, machine_info, timeit

FID = {"a1": 30.0, "f1": 0.8, "a2": 12.0, "f2": 2.1, "tau": 5.0}


def model(p, t):
    env = jnp.exp(-t / p["tau"])
    return 60.0 + env * (p["a1"] * jnp.cos(p["f1"] * t) + p["a2"] * jnp.sin(p["f2"] * t))


def pairs(n):
    import numpyro.distributions as dist

    import fisherforecast as ff

    t = np.linspace(0.0, 20.0, n)
    sig = 0.5 + 0.1 * np.sin(t)
    exp = lambda noise: ff.Experiment(model, noise, design=t)  # noqa: E731
    return {
        "Gaussian(sigma)": (
            exp(ff.Gaussian(sigma=sig)),
            exp(ff.Likelihood(lambda mu: dist.Normal(mu, jnp.asarray(sig)))),
            FID,
        ),
        "Poisson": (exp(ff.Poisson()), exp(ff.Likelihood(lambda mu: dist.Poisson(mu))), FID),
        "NegativeBinomial(r) vs Poisson": (exp(ff.Poisson()), exp(ff.NegativeBinomial(4.0)), FID),
        "NB, r a parameter vs Poisson": (
            exp(ff.Poisson()),
            exp(ff.NegativeBinomial(lambda p: p["r"])),
            {**FID, "r": 4.0},
        ),
    }


def compare(ref, lik, fid, min_time):
    """Interleaved timings of one (reference, likelihood) pair."""
    import fisherforecast as ff

    names_ref, names_lik = tuple(FID), tuple(fid)
    with jax.enable_x64(True):
        f64_ref = {k: jnp.float64(v) for k, v in FID.items()}
        f64_lik = {k: jnp.float64(v) for k, v in fid.items()}
        k_ref = jax.jit(lambda f: ff.fisher_information(ref, f, names_ref))
        k_lik = jax.jit(lambda f: ff.fisher_information(lik, f, names_lik))
        k_ref(f64_ref).block_until_ready()
        k_lik(f64_lik).block_until_ready()
        kr, kl = [], []
        for _ in range(3):  # interleaved
            kr.append(timeit(lambda: k_ref(f64_ref).block_until_ready(), min_time=min_time)[0])
            kl.append(timeit(lambda: k_lik(f64_lik).block_until_ready(), min_time=min_time)[0])
    ff.fisher(ref, FID)
    ff.fisher(lik, fid)
    fr, fl = [], []
    for _ in range(3):
        fr.append(timeit(lambda: ff.fisher(ref, FID), min_time=min_time)[0])
        fl.append(timeit(lambda: ff.fisher(lik, fid), min_time=min_time)[0])
    Fr = ff.fisher(ref, FID).matrix
    Fl = ff.fisher(lik, fid).matrix[: len(FID), : len(FID)]
    return {
        "kernel_ref": min(kr),
        "kernel_lik": min(kl),
        "kernel_ratio": min(kl) / min(kr),
        "call_ref": min(fr),
        "call_lik": min(fl),
        "call_ratio": min(fl) / min(fr),
        "max_rel_diff": float(np.max(np.abs(Fl - Fr)) / np.max(np.abs(Fr))),
    }


def run(n, quick):
    min_time = 0.3 if quick else 1.0
    return {name: compare(ref, lik, fid, min_time) for name, (ref, lik, fid) in pairs(n).items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=4096, help="number of model outputs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    print(machine_info())
    print(f"N = {args.n} outputs, P = 5 parameters (6 with r)\n")
    rows = run(args.n, args.quick)
    head = f"{'noise model':34s}{'kernel ref':>12s}{'kernel lik':>12s}{'ratio':>7s}"
    head += f"{'ff.fisher ref':>15s}{'ff.fisher lik':>15s}{'ratio':>7s}{'max rel diff':>14s}"
    print(head)
    for name, r in rows.items():
        print(
            f"{name:34s}{fmt_time(r['kernel_ref']):>12s}{fmt_time(r['kernel_lik']):>12s}"
            f"{r['kernel_ratio']:7.2f}{fmt_time(r['call_ref']):>15s}{fmt_time(r['call_lik']):>15s}"
            f"{r['call_ratio']:7.2f}{r['max_rel_diff']:14.2e}"
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
