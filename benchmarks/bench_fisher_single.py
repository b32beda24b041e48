"""Benchmark 1 (and 4): one Fisher matrix of a 9-parameter TaylorF2-like model, 4096 bins.

Side by side, in one run:

* fisherforecast (``ff.fisher``: jit + jacfwd, float64), full call and bare compiled kernel;
* one evaluation of the model (jitted JAX; numpy too);
* hand-written central finite differences in numpy (one step per parameter);
* numdifftools' ``Jacobian`` (central differences with Richardson extrapolation);
* the compile time of the first ``ff.fisher`` call (benchmark 4).

Accuracy is measured against a complex-step Jacobian (``∂h/∂θ = Im h(θ + iε)/ε`` for the real
and imaginary parts separately, exact to rounding), computed in numpy from the same formula.

Goals (issue 6): Fisher ≤ (P+1) × one model evaluation; ≥ 30× faster than numdifftools, at
better accuracy.

Usage: python benchmarks/bench_fisher_single.py [--quick] [--bins N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import (
    NAMES,
    amplitude_and_phase,
    experiment,
    fmt_time,
    machine_info,
    psd_aligo_like,
    snr_scaled_fiducial,
    taylorf2_numpy,
    timeit,
)


def complex_step_jacobian(p, f, eps=1e-30):
    """(N, P) Jacobian of h = |h| e^{-iψ} by the complex step, exact to rounding."""
    cols = []
    for name in NAMES:
        q = {k: complex(v) for k, v in p.items()}
        q[name] = q[name] + 1j * eps
        amp, psi = amplitude_and_phase(np, q, f)
        # Re h and Im h are real-analytic in θ: differentiate each with its own complex step.
        re = amp * np.cos(psi)
        im = -amp * np.sin(psi)
        cols.append(re.imag / eps + 1j * (im.imag / eps))
    return np.stack(cols, axis=1)


def fisher_from_jacobian(J, weights):
    return np.real((np.conj(J) * weights[:, None]).T @ J)


def central_differences(p, f, rel_step=None):
    """Hand-written central differences, one step per parameter: P × 2 evaluations."""
    rel_step = rel_step or np.finfo(float).eps ** (1 / 3)
    cols = []
    for name in NAMES:
        h = rel_step * max(abs(p[name]), 1.0)
        up = dict(p, **{name: p[name] + h})
        down = dict(p, **{name: p[name] - h})
        cols.append((taylorf2_numpy(up, f) - taylorf2_numpy(down, f)) / (2 * h))
    return np.stack(cols, axis=1)


def numdifftools_jacobian(p, f, base_step=None):
    """numdifftools' central-difference Jacobian with Richardson extrapolation.

    ``base_step=None`` uses its defaults (``MaxStepGenerator(base_step=2.0)``, which start
    far too large for a GW phase of ~10⁴ radians); ``base_step=1e-3`` is a tuned setting.
    """
    import numdifftools as nd

    x0 = np.array([p[n] for n in NAMES])

    def flat(x):
        h = taylorf2_numpy(dict(zip(NAMES, x, strict=True)), f)
        return np.concatenate([h.real, h.imag])

    step = None if base_step is None else nd.MaxStepGenerator(base_step=base_step)
    J = nd.Jacobian(flat, method="central", step=step)(x0)
    n = f.size
    return J[:n] + 1j * J[n:]


def accuracy(F, F_ref):
    """(max entry error relative to sqrt(F_ii F_jj), max relative error of marginal σ)."""
    d = np.sqrt(np.diag(F_ref))
    entry = np.max(np.abs(F - F_ref) / np.outer(d, d))
    try:
        s = np.sqrt(np.diag(np.linalg.inv(F / np.outer(d, d)))) / d
        s_ref = np.sqrt(np.diag(np.linalg.inv(F_ref / np.outer(d, d)))) / d
        sig = np.max(np.abs(s / s_ref - 1))
    except np.linalg.LinAlgError:
        sig = np.inf
    return entry, sig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--bins", type=int, default=4096)
    args = parser.parse_args()
    min_time = 0.3 if args.quick else 2.0

    t_import = time.perf_counter()
    import jax
    import jax.numpy as jnp

    import fisherforecast as ff
    from fisherforecast._engine import fisher_information
    from fisherforecast._x64 import float64

    print(
        "== Benchmark 1: single Fisher matrix, TaylorF2-like, "
        f"{len(NAMES)} parameters, {args.bins} frequency bins =="
    )
    print(machine_info())
    exp, f, df = experiment(args.bins)
    p = snr_scaled_fiducial(f, df)
    weights = 4 * df / psd_aligo_like(f)
    P = len(NAMES)

    # ---- compile time of the first call (benchmark 4) ----------------------------------
    t0 = time.perf_counter()
    F_ff = ff.fisher(exp, p).matrix
    first_call = time.perf_counter() - t0
    import_time = t0 - t_import

    # ---- timings -----------------------------------------------------------------------
    results = {}
    results["ff.fisher (full call)"] = timeit(lambda: ff.fisher(exp, p), min_time=min_time)

    with float64():
        kernel = jax.jit(fisher_information, static_argnames=("names", "mode"))
        model = jax.jit(lambda q, x: exp.model(q, x))
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
        fgrid = jnp.asarray(f)
        kernel(exp, p64, NAMES).block_until_ready()
        model(p64, fgrid).block_until_ready()
        results["fisher kernel (jit, no checks)"] = timeit(
            lambda: kernel(exp, p64, NAMES), min_time=min_time
        )
        results["model evaluation (jit)"] = timeit(lambda: model(p64, fgrid), min_time=min_time)
    results["model evaluation (numpy)"] = timeit(lambda: taylorf2_numpy(p, f), min_time=min_time)
    results["numpy central differences"] = timeit(
        lambda: fisher_from_jacobian(central_differences(p, f), weights), min_time=min_time
    )
    J_nd = {}
    for label, base in (
        ("numdifftools Jacobian (defaults)", None),
        ("numdifftools Jacobian (tuned step)", 1e-3),
    ):
        times = []
        for _ in range(1 if args.quick else 2):  # seconds per call: a loop is pointless
            t0 = time.perf_counter()
            J_nd[label] = numdifftools_jacobian(p, f, base)
            times.append(time.perf_counter() - t0)
        results[label] = (min(times), float(np.median(times)))

    # ---- accuracy against the complex-step reference ------------------------------------
    J_cs = complex_step_jacobian(p, f)
    F_ref = fisher_from_jacobian(J_cs, weights)
    cond = np.linalg.cond(F_ref / np.sqrt(np.outer(np.diag(F_ref), np.diag(F_ref))))
    acc = {
        "ff.fisher (full call)": accuracy(F_ff, F_ref),
        "numpy central differences": accuracy(
            fisher_from_jacobian(central_differences(p, f), weights), F_ref
        ),
    }
    for label, J in J_nd.items():
        acc[label] = accuracy(fisher_from_jacobian(J, weights), F_ref)
    acc["fisher kernel (jit, no checks)"] = acc["ff.fisher (full call)"]

    print(
        f"\nreference: complex-step Jacobian; unit-diagonal condition number of F = "
        f"{cond:.3g}; SNR = {np.sqrt(F_ref[0, 0]):.2f}"
    )
    print(f"\n{'method':<36}{'best':>12}{'median':>12}{'max |dF|/√(FiiFjj)':>21}{'max |dσ/σ|':>13}")
    for name, (best, med) in results.items():
        a = acc.get(name)
        tail = f"{a[0]:>21.2e}{a[1]:>13.2e}" if a else ""
        print(f"{name:<36}{fmt_time(best):>12}{fmt_time(med):>12}{tail}")

    t_ff = results["ff.fisher (full call)"][0]
    t_kernel = results["fisher kernel (jit, no checks)"][0]
    t_model = results["model evaluation (jit)"][0]
    t_nd = results["numdifftools Jacobian (defaults)"][0]
    t_nd_tuned = results["numdifftools Jacobian (tuned step)"][0]
    t_fd = results["numpy central differences"][0]
    print("\nratios (best times)")
    print(
        f"  fisher kernel / one model evaluation   : {t_kernel / t_model:7.2f}   "
        f"(goal <= P+1 = {P + 1})"
    )
    print(
        f"  ff.fisher full call / one model eval.  : {t_ff / t_model:7.2f}   "
        "(includes input checks, NaN checks and FisherMatrix construction)"
    )
    print(f"  numdifftools (defaults) / ff.fisher    : {t_nd / t_ff:7.1f}   (goal >= 30)")
    print(f"  numdifftools (tuned) / ff.fisher       : {t_nd_tuned / t_ff:7.1f}   (goal >= 30)")
    print(f"  numpy central differences / ff.fisher  : {t_fd / t_ff:7.2f}")
    print("\n== Benchmark 4: compile time ==")
    print(f"  import jax + fisherforecast            : {import_time:7.2f} s")
    print(
        f"  first ff.fisher call (trace + compile) : {first_call:7.2f} s  "
        f"(later calls {fmt_time(t_ff).strip()})"
    )


if __name__ == "__main__":
    main()
