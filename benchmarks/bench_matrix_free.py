"""Benchmark: matrix-free Fisher (ff.fisher_operator) and array-valued parameters.

Three parts, side by side in one run:

1. **Compile time against P.** ``ff.fisher`` of the same model written on one array
   parameter and on a dict of P scalars (first call: trace + compile, disk cache off).
2. **At scale.** A spectrum of ``n_bins`` bins, ``d_k = c_k S(f_k; A, n, B)`` with one
   calibration factor ``c_k`` per bin (Gaussian prior σ_c on each) and 3 physical
   parameters: ``P = n_bins + 3``. The marginal σ of (A, n, B) over every calibration factor
   by ``op.sigma`` (preconditioned CG), checked against the analytic Schur complement
   ``F_θθ − Σ_k F_θk F_kθ / F_kk`` that the arrowhead structure allows; the cost of one
   product ``F v`` against one gradient of the log-likelihood; peak RSS.
3. **M-FAC** at P = 10⁶ with m = 64 gradients: setup and one inverse-vector product.
4. **Identifiability at large P** (``ff.identifiability``, matrix-free path): a decay
   ``a·b·e^{-k x}`` (only a·b identifiable) plus one gain per block of 4 data,
   ``g_j s_n``: first call (compile + run) and a later call at P = 10⁴ + 3 and 10⁵ + 3,
   σ(k) checked against the analytic Schur complement over the gains.

Usage: python benchmarks/bench_matrix_free.py [--quick] [--bins 100000]
       [--parts compile,scale,mfac,identifiability]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("FISHERFORECAST_CACHE", "0")  # compile times without the disk cache
# On a shared, overloaded 2-core machine OpenBLAS's threads thrash: numpy's eigvalsh of a
# 500 × 500 matrix (FisherMatrix's PSD check) took 5.9 s with the default threads and 0.33 s
# with one (measured side by side, load average 16). One thread keeps host algebra honest.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax
import jax.numpy as jnp
import numpy as np
from common import fmt_time, machine_info

import fisherforecast as ff


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# ----- 1. compile time ---------------------------------------------------------------------
def compile_times(sizes, scalar_sizes):
    """First call of ff.fisher (trace + compile + run) and a later call with new values
    (run only), for the model on one array and on a dict of P scalars. The basis matrix
    travels in the design, so it is an input of the compiled program, not a constant."""
    x = np.linspace(0.0, 1.0, 200)

    def vec_model(p, B):
        return jnp.tanh(B @ p["w"])

    def scalar_model(p, B):
        w = jnp.stack([p[f"w{i}"] for i in range(B.shape[1])])
        return jnp.tanh(B @ w)

    noise = ff.Gaussian(sigma=0.1)
    warm = ff.Experiment(lambda p, B: p["a"] * B[:, 0], noise, design=np.ones((200, 1)))
    ff.fisher(warm, {"a": 1.0})  # one-time costs of the first jit in the process
    rows = []
    for P in sizes:
        B = np.cos(np.outer(x, np.arange(P)))  # a fixed (200, P) basis
        exp = ff.Experiment(vec_model, noise, design=B)
        t_vec = _time(lambda exp=exp, P=P: ff.fisher(exp, {"w": np.full(P, 0.01)}))
        t_run = _time(lambda exp=exp, P=P: ff.fisher(exp, {"w": np.full(P, 0.02)}))
        t_sc = float("nan")
        if P in scalar_sizes:
            exp_s = ff.Experiment(scalar_model, noise, design=B)
            fid_s = {f"w{i}": 0.01 for i in range(P)}
            t_sc = _time(lambda exp_s=exp_s, fid_s=fid_s: ff.fisher(exp_s, fid_s))
        rows.append((P, t_vec, t_sc))
        scalars = fmt_time(t_sc) if t_sc == t_sc else "(not run)"
        print(
            f"  P = {P:5d}: one array: first call {fmt_time(t_vec):>9}, later {fmt_time(t_run):>9}"
            f" (compile ≈ {fmt_time(t_vec - t_run)})   dict of scalars: first call {scalars:>9}",
            flush=True,
        )
    return rows


# ----- 2. at scale -------------------------------------------------------------------------
def spectrum_problem(n_bins):
    f = np.geomspace(1.0, 1000.0, n_bins)
    f0 = 30.0
    fid = {"calib": np.ones(n_bins), "A": 2.0, "n": -1.5, "B": 0.3}
    S = fid["A"] * (f / f0) ** fid["n"] + fid["B"]
    sigma = 0.05 * S + 0.01
    sigma_c = 0.02

    def model(p, f):
        return p["calib"] * (p["A"] * (f / f0) ** p["n"] + p["B"])

    exp = ff.Experiment(model, ff.Gaussian(sigma=sigma), design=f)
    # analytic Schur complement (c_k = 1 at the fiducial)
    dS = np.stack([(f / f0) ** fid["n"], S - fid["B"], np.ones_like(f)], 1)
    dS[:, 1] *= np.log(f / f0)
    w = 1.0 / sigma**2
    Ftt = (dS * w[:, None]).T @ dS
    Fkt = (S * w)[:, None] * dS  # (n_bins, 3)
    Dk = S**2 * w + 1.0 / sigma_c**2
    schur = Ftt - (Fkt / Dk[:, None]).T @ Fkt
    analytic = np.sqrt(np.diag(np.linalg.inv(schur)))
    return exp, fid, sigma_c, dict(zip(("A", "n", "B"), analytic, strict=True))


def at_scale(n_bins, repeats):
    exp, fid, sigma_c, analytic = spectrum_problem(n_bins)
    t0 = time.perf_counter()
    op = ff.fisher_operator(exp, fid).with_prior({"calib": sigma_c})
    t_build = time.perf_counter() - t0
    print(f"  P = {op.size} parameters, N = {n_bins} data; operator built in {fmt_time(t_build)}")

    # one product F v against one gradient of the log-likelihood, both jitted
    rng = np.random.default_rng(0)
    v = rng.standard_normal(op.size)
    data = np.asarray(exp.model(fid, exp.design)) * (1 + 0.01 * rng.standard_normal(n_bins))
    with jax.enable_x64(True):
        mv = jax.jit(op.function())
        theta = jnp.concatenate([jnp.asarray(fid["calib"]), jnp.array([2.0, -1.5, 0.3])])

        def loglik(th):
            p = {"calib": th[:n_bins], "A": th[n_bins], "n": th[n_bins + 1], "B": th[n_bins + 2]}
            mean = exp.model(p, jnp.asarray(exp.design))
            return exp.noise.log_likelihood(jnp.asarray(data), mean, p, exp.design)

        grad = jax.jit(jax.grad(loglik))
        vj = jnp.asarray(v)
        jax.block_until_ready(mv(vj))
        jax.block_until_ready(grad(theta))
        t_mv = min(_time(lambda: jax.block_until_ready(mv(vj))) for _ in range(repeats))
        t_g = min(_time(lambda: jax.block_until_ready(grad(theta))) for _ in range(repeats))
    print(f"  one F v {fmt_time(t_mv)}, one ∇ ln L {fmt_time(t_g)}: ratio {t_mv / t_g:.2f}")

    results = {}
    runs = [("hutchinson", "hutchinson")]
    if n_bins <= 10_000:
        runs.insert(0, ("jacobi (exact diagonal)", "jacobi"))
    for label, pre in runs:
        t0 = time.perf_counter()
        op = ff.fisher_operator(exp, fid).with_prior({"calib": sigma_c})  # no kept diagonal
        r = op.sigma(["A", "n", "B"], rtol=1e-10, preconditioner=pre)
        t_sigma = time.perf_counter() - t0
        rel = max(abs(r.sigma[k] / analytic[k] - 1) for k in analytic)
        results[label] = (t_sigma, rel, max(r.steps.values()))
        print(
            f"  σ(A, n, B) with {label}: {fmt_time(t_sigma)} (build, diagonal, compile, solves), "
            f"{max(r.steps.values())} CG steps, max |σ/σ_Schur − 1| = {rel:.1e}"
        )
    print(f"  σ = { {k: f'{v:.6g}' for k, v in r.sigma.items()} }")
    print(f"  analytic Schur complement: { {k: f'{v:.6g}' for k, v in analytic.items()} }")
    print(f"  peak RSS so far: {peak_rss_gb():.2f} GB")
    return t_mv / t_g, results


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----- 3. M-FAC ----------------------------------------------------------------------------
def mfac_bench(P, m):
    rng = np.random.default_rng(1)
    G = rng.standard_normal((m, P)).astype(np.float64)
    t0 = time.perf_counter()
    op = ff.mfac(G, damping=1e-3)
    t_setup = time.perf_counter() - t0
    v = rng.standard_normal(P)
    op.solve(v)
    t0 = time.perf_counter()
    x = op.solve(v)
    t_solve = time.perf_counter() - t0
    err = np.linalg.norm(op.matvec(x) - v) / np.linalg.norm(v)
    print(
        f"  P = {P:,}, m = {m}: setup {fmt_time(t_setup)}, one solve {fmt_time(t_solve)}, "
        f"‖(λI + GᵀG/m) x − v‖/‖v‖ = {err:.1e}; peak RSS {peak_rss_gb():.2f} GB"
    )


# ----- 4. identifiability at large P -------------------------------------------------------
def gains_problem(n_blocks):
    """``y = a·b·e^{-k x} + g_j s_n`` (block j = n // 4), σ = 0.05; the analytic σ(k)."""
    per, sigma = 4, 0.05
    x = np.linspace(0.0, 1.0, per * n_blocks)
    s = np.tile([1.0, 1.5, 0.5, 1.2], n_blocks)
    block = np.repeat(np.arange(n_blocks), per)

    def model(p, d):
        j = d[:, 2].astype(jnp.int32)
        return p["a"] * p["b"] * jnp.exp(-p["k"] * d[:, 0]) + p["g"][j] * d[:, 1]

    design = np.column_stack([x, s, block.astype(float)])
    exp = ff.Experiment(model, ff.Gaussian(sigma=sigma), design=design)
    fid = {"a": 2.0, "b": 3.0, "k": 1.5, "g": np.ones(n_blocks)}
    # σ(k) with the null direction (a·b) removed = with b fixed; Schur complement over g
    e = np.exp(-fid["k"] * x)
    J = np.stack([fid["b"] * e, -fid["a"] * fid["b"] * x * e], 1) / sigma  # (a, k)
    Js = s / sigma
    F_tt = J.T @ J
    F_tg = np.stack([np.bincount(block, J[:, i] * Js) for i in range(2)], 1)  # (blocks, 2)
    F_gg = np.bincount(block, Js**2)
    schur = F_tt - (F_tg / F_gg[:, None]).T @ F_tg
    sigma_k = float(np.sqrt(np.linalg.inv(schur)[1, 1]))
    return exp, fid, sigma_k


def identifiability_at_scale(sizes):
    for n_blocks in sizes:
        exp, fid, sigma_k = gains_problem(n_blocks)
        t0 = time.perf_counter()
        rep = ff.identifiability(exp, fid)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = ff.identifiability(exp, fid)
        t_warm = time.perf_counter() - t0
        rel = abs(rep.absolute_crb["k"] / sigma_k - 1)
        print(
            f"  P = {rep.n_params:,}: first call {fmt_time(t_first)} (compile + run), later "
            f"{fmt_time(t_warm)}; rank {rep.rank}, null: {rep.null_descriptions}; "
            f"σ(k) {rep.absolute_crb['k']:.6g} vs Schur {sigma_k:.6g} ({rel:.1e}); "
            f"peak RSS {peak_rss_gb():.2f} GB",
            flush=True,
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bins", type=int, default=None)
    ap.add_argument("--parts", default="compile,scale,mfac,identifiability")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    print(machine_info())
    print(f"load average at the start: {os.getloadavg()}")
    if "compile" in parts:
        print("\n1. Compile time of ff.fisher against P (first call, disk cache off)")
        sizes = (10, 100, 500) if args.quick else (10, 100, 500, 2000)
        scalar_sizes = (10, 100) if args.quick else (10, 50, 100, 200)
        compile_times(sizes, scalar_sizes)
    if "scale" in parts:
        n_bins = args.bins or (5_000 if args.quick else 100_000)
        print(f"\n2. At scale: 3 physical parameters + {n_bins:,} calibration factors")
        at_scale(n_bins, repeats=3 if args.quick else 5)
    if "mfac" in parts:
        print("\n3. M-FAC")
        mfac_bench(10_000 if args.quick else 1_000_000, 64)
    if "identifiability" in parts:
        print("\n4. ff.identifiability, matrix-free path: decay + one gain per block of 4 data")
        identifiability_at_scale((2_500,) if args.quick else (10_000, 100_000))
    print(f"\nload average at the end: {os.getloadavg()}")
    print(f"peak RSS of the whole run: {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
