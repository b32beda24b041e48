"""Benchmark: population (FO) Fisher matrices and optimal sampling designs (issue 18).

Models:

* warfarin: one-compartment oral absorption in closed form, exponential random effects on
  CL, V, KA, proportional error, 32 individuals at 8 times (the PopED reference design);
* a two-compartment oral model written as an ODE (``ff.ode_model``, diffrax Tsit5,
  rtol 1e-8): gut g' = −KA g, central c' = KA g − (CL + Q)/V1 c + Q/V2 p,
  peripheral p' = Q/V1 c − Q/V2 p, observed c/V1; exponential random effects on CL, V1,
  KA; proportional error; 9 parameters (5 fixed effects, 3 variances, 1 residual).

Measured, side by side on the same machine:

1. One reduced FO Fisher matrix: ``ff.fisher`` (compiled, warm; cold = first call) against
   hand-written central finite differences in the style of PopED/PFIM (``f`` and
   ``V = G Ω Gᵀ + Σ`` from differences of the model: ``(2P)·(2R + 1)`` model evaluations),
   and the accuracy of both against the PopED reference (warfarin) or against
   ``ff.fisher`` (ODE).
2. An optimal sampling design (D-criterion, 2 groups, 4 times each, `n_starts` starts):
   ``ff.optimize_design`` wall and CPU time, cold and warm.

Times are wall-clock (best of `repeats`) with CPU times alongside, because the machines
this runs on are often shared. No GPU figure unless a GPU backend is present.

Run:  python benchmarks/bench_population.py [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fisherforecast as ff
from fisherforecast.models.biology import WARFARIN_FIDUCIAL as FID_W
from fisherforecast.models.biology import WARFARIN_RANDOM as RANDOM_W
from fisherforecast.models.biology import WARFARIN_TIMES as TIMES
from fisherforecast.models.biology import warfarin

POPED_RSE = [4.7383, 2.7562, 13.926, 25.627, 30.344, 25.777, 11.171]

RANDOM_2C = {"CL": "exponential", "V1": "exponential", "KA": "exponential"}
FID_2C = {
    "CL": 2.0,
    "V1": 20.0,
    "KA": 1.0,
    "Q": 1.5,
    "V2": 40.0,
    "omega2_CL": 0.09,
    "omega2_V1": 0.04,
    "omega2_KA": 0.3,
    "sigma2_prop": 0.01,
}


def two_compartment():
    def rhs(t, y, p):
        g, c, q = y[0], y[1], y[2]
        k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
        return jnp.stack([-p["KA"] * g, p["KA"] * g - (k10 + k12) * c + k21 * q, k12 * c - k21 * q])

    return ff.ode_model(rhs, y0=jnp.array([100.0, 0.0, 0.0]), observe=lambda y, p: y[1] / p["V1"])


def timed(fn, repeats):
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return out, best_wall, best_cpu


# ----- hand-written finite differences (PopED-style) -----------------------------------
def fd_reduced_fim(f, fid, random, n, h=1e-5):
    """Reduced FO FIM from central differences of the model ``f(params) -> (n_obs,)``."""
    names = list(fid)
    fixed = [k for k in names if not k.startswith(("omega2_", "sigma2_"))]
    variances = [k for k in names if k.startswith(("omega2_", "sigma2_"))]
    rnames = list(random)

    def at(p, **change):
        return {**p, **change}

    f0 = f(fid)
    # G = ∂f/∂η at η = 0 for exponential effects: θ_r ∂f/∂θ_r, by central differences.
    G = np.stack(
        [
            (f(at(fid, **{r: fid[r] * np.exp(h)})) - f(at(fid, **{r: fid[r] * np.exp(-h)})))
            / (2 * h)
            for r in rnames
        ],
        axis=1,
    )
    J = np.stack(
        [
            (f(at(fid, **{k: fid[k] * (1 + h)})) - f(at(fid, **{k: fid[k] * (1 - h)})))
            / (2 * h * fid[k])
            for k in fixed
        ],
        axis=1,
    )
    omega = np.array([fid["omega2_" + r] for r in rnames])
    V = (G * omega) @ G.T + np.diag(f0**2 * fid["sigma2_prop"])
    Vi = np.linalg.inv(V)
    # V is linear in the variances: ∂V/∂ω²_r = G_r G_rᵀ, ∂V/∂σ² = diag(f²).
    dV = [np.outer(G[:, i], G[:, i]) for i in range(len(rnames))] + [np.diag(f0**2)]
    A = J.T @ Vi @ J
    B = 0.5 * np.array([[np.trace(Vi @ a @ Vi @ b) for b in dV] for a in dV])
    F = np.zeros((len(names), len(names)))
    idx_f = [names.index(k) for k in fixed]
    idx_v = [names.index(k) for k in variances]
    F[np.ix_(idx_f, idx_f)] = A
    F[np.ix_(idx_v, idx_v)] = B
    return n * F


def bench_evaluation(label, model_jax, fid, random, times, repeats, reference_rse=None):
    group = ff.PopulationExperiment(
        model_jax, times, random=random, group_size=32, fim="reduced", name=label
    )
    free = list(fid)
    t0 = time.perf_counter()
    F = ff.fisher(group, fid, params=free)
    cold = time.perf_counter() - t0
    _, wall, cpu = timed(lambda: ff.fisher(group, fid, params=free), repeats)

    f_jit = jax.jit(lambda p: model_jax(p, jnp.asarray(times)))

    def f_np(p):
        with jax.enable_x64(True):
            return np.asarray(f_jit({k: jnp.float64(v) for k, v in p.items()}))

    f_np(fid)  # compile once
    F_fd, wall_fd, cpu_fd = timed(lambda: fd_reduced_fim(f_np, fid, random, 32), repeats)
    rse_ad = np.array(list(F.rse().values()))
    rse_fd = 100 * np.sqrt(np.diag(np.linalg.inv(F_fd))) / np.abs(list(fid.values()))
    print(f"\n{label}: one reduced FO Fisher matrix ({len(fid)} parameters, 32 individuals)")
    print(
        f"  ff.fisher        cold {cold:8.3f} s   warm {wall * 1e3:8.2f} ms (CPU {cpu * 1e3:.2f})"
    )
    print(f"  finite diffs     warm {wall_fd * 1e3:8.2f} ms (CPU {cpu_fd * 1e3:.2f})")
    print(f"  ratio FD / ff (warm wall): {wall_fd / wall:.2f}")
    if reference_rse is not None:
        ref = np.asarray(reference_rse)
        print(
            f"  max |RSE/PopED - 1|: ff {np.max(np.abs(rse_ad / ref - 1)):.1e}, "
            f"FD {np.max(np.abs(rse_fd / ref - 1)):.1e}"
        )
    else:
        print(f"  max |RSE_FD/RSE_ff - 1|: {np.max(np.abs(rse_fd / rse_ad - 1)):.1e}")
    return group


def bench_design(label, group, fid, bounds, n_starts, max_steps):
    g1 = group.replace(design=np.array([0.5, 2.0, 12.0, 48.0]))
    g2 = group.replace(design=np.array([1.0, 6.0, 24.0, 72.0]))
    kw = dict(
        bounds=[bounds, bounds],
        constraints={"min_spacing": 0.25},
        n_starts=n_starts,
        max_steps=max_steps,
        n_polish=1,
    )
    w, c = time.perf_counter(), time.process_time()
    res = ff.optimize_design([g1.with_group_size(16), g2.with_group_size(16)], fid, **kw)
    cold, cold_cpu = time.perf_counter() - w, time.process_time() - c
    w, c = time.perf_counter(), time.process_time()
    ff.optimize_design([g1.with_group_size(16), g2.with_group_size(16)], fid, **kw)
    warm, warm_cpu = time.perf_counter() - w, time.process_time() - c
    print(f"\n{label}: D-optimal times, 2 groups x 4 samples, {n_starts} starts")
    print(f"  cold {cold:7.2f} s (CPU {cold_cpu:.2f})   warm {warm:7.2f} s (CPU {warm_cpu:.2f})")
    print(
        f"  log det F {res.initial_value:.3f} -> {res.criterion_value:.3f}; times "
        + " | ".join(str(np.round(d, 2).tolist()) for d in res.design)
    )


def main(fast=False):
    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    repeats = 3 if fast else 10
    w = bench_evaluation("warfarin", warfarin, FID_W, RANDOM_W, TIMES, repeats, POPED_RSE)
    ode = two_compartment()
    times2 = np.array([0.5, 1, 2, 4, 8, 12, 24, 48.0])
    o = bench_evaluation("two-compartment ODE", ode, FID_2C, RANDOM_2C, times2, repeats)
    n_starts = 2 if fast else 8
    bench_design("warfarin", w, FID_W, (0.25, 120.0), n_starts, 50 if fast else 200)
    bench_design("two-compartment ODE", o, FID_2C, (0.25, 72.0), n_starts, 20 if fast else 100)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    main(parser.parse_args().fast)
