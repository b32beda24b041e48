"""Benchmarks 2-4 for populations: batch throughput, peak memory, compile time.

Side by side, in one run:

* **throughput** (benchmark 2): ``ff.fisher_batch`` over N fiducials (default 10⁴) of the
  9-parameter TaylorF2-like model against a Python loop of single ``ff.fisher`` calls, for
  4096 and 256 frequency bins; the batched and looped matrices are compared item by item.
  Goal: ≥ 5×.
* **peak memory** (benchmark 3): peak RSS (``ru_maxrss``) of a fresh process that computes
  10⁶ Fisher matrices in chunks (in memory, and streamed to HDF5), then their marginal
  errors; a baseline process that computes one chunk gives the fixed cost of Python + JAX.
  Goal: < 2 GB.
* **compile time** (benchmark 4): the first call of ``fisher_batch`` minus the second.

Usage:
    python benchmarks/bench_batch.py [--quick] [--n N] [--loop-n N] [--bins 4096,256]
                                     [--memory-n N] [--memory-bins B] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import experiment, fmt_time, machine_info, population

HERE = Path(__file__).resolve().parent


def throughput(n, loop_n, bins):
    import fisherforecast as ff

    exp, f, df = experiment(bins)
    pop = population(n, f, df, seed=1)
    t0 = time.perf_counter()
    batch = ff.fisher_batch(exp, pop, progress=False)
    first = time.perf_counter() - t0
    # Same shapes again: no compilation; the best of two runs.
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        batch = ff.fisher_batch(exp, pop, progress=False)
        runs.append(time.perf_counter() - t0)
    t_batch = min(runs)

    temp_per_item, estimate = xla_memory_per_item(exp, pop, batch.metadata["chunk_size"])

    items = [{k: float(v[i]) for k, v in pop.items()} for i in range(loop_n)]
    ff.fisher(exp, items[0])  # compile the single path outside the timing
    t0 = time.perf_counter()
    singles = [ff.fisher(exp, p).matrix for p in items]
    t_loop = (time.perf_counter() - t0) / loop_n
    M = np.stack(singles)
    d = np.sqrt(np.einsum("bii->bi", M))
    scale = d[:, :, None] * d[:, None, :]
    agree = float(np.max(np.abs(batch.matrices[:loop_n] - M) / scale))
    return {
        "bins": bins,
        "n": n,
        "loop_n": loop_n,
        "chunk_size": batch.metadata["chunk_size"],
        "n_chunks": batch.metadata["n_chunks"],
        "n_ok": int(batch.ok.sum()),
        "batch_per_s": n / t_batch,
        "loop_per_s": 1 / t_loop,
        "speedup": t_loop * n / t_batch,
        "first_call_s": first,
        "steady_call_s": t_batch,
        "agreement": agree,
        "xla_temp_kb": temp_per_item / 1024,
        "estimate_kb": estimate / 1024,
    }


def xla_memory_per_item(exp, pop, chunk):
    """XLA's temporary memory per item for the compiled chunk, and the library's estimate
    (``bytes per item`` of the automatic chunk size), to calibrate ``BYTES_FACTOR``."""
    import jax
    import jax.numpy as jnp

    from fisherforecast._batch import kernel, plan
    from fisherforecast._x64 import float64

    n_bins = np.asarray(exp.design).size
    estimate = plan.bytes_per_item([jax.ShapeDtypeStruct((n_bins,), jnp.complex128)], len(pop))
    with float64():
        fids = {k: v[:chunk] for k, v in pop.items()}
        try:
            compiled = kernel.chunk_kernel.lower(
                (exp,), fids, tuple(pop), "forward", False
            ).compile()
            analysis = compiled.memory_analysis()
            temp = analysis.temp_size_in_bytes / chunk if analysis is not None else np.nan
        except Exception:  # memory_analysis is backend-specific
            temp = np.nan
    return temp, estimate


def chunk_sweep(n, bins, sizes):
    """Batch throughput (Fisher/s) for several chunk sizes, to tune `chunk_size`."""
    import fisherforecast as ff

    exp, f, df = experiment(bins)
    pop = population(n, f, df, seed=3)
    out = {}
    for size in sizes:
        ff.fisher_batch(exp, pop, progress=False, chunk_size=size)  # compile
        t0 = time.perf_counter()
        ff.fisher_batch(exp, pop, progress=False, chunk_size=size)
        out[size] = n / (time.perf_counter() - t0)
    return out


def memory_child(n, bins, mode, chunk_size):
    """Runs in a fresh process; prints one JSON line with the peak RSS."""
    import fisherforecast as ff

    exp, f, df = experiment(bins)
    pop = population(n, f, df, seed=2)
    kwargs = {"progress": False, "chunk_size": chunk_size}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "stream":
            kwargs["out"] = os.path.join(tmp, "pop.h5")
        batch = ff.fisher_batch(exp, pop, **kwargs)
        sig = batch.sigma()
        wall = time.perf_counter() - t0
        size = os.path.getsize(kwargs["out"]) if "out" in kwargs else 0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "mode": mode,
                "n": n,
                "bins": bins,
                "peak_rss_mb": peak_kb / 1024,
                "wall_s": wall,
                "n_ok": int(batch.ok.sum()),
                "chunk_size": batch.metadata["chunk_size"],
                "median_sigma_lnMc": float(np.nanmedian(sig["lnMc"])),
                "file_mb": size / 2**20,
            }
        )
    )


def run_memory(n, bins, chunk_size):
    rows = []
    for mode, count in (("baseline", min(n, 4096)), ("memory", n), ("stream", n)):
        cmd = [
            sys.executable,
            str(HERE / "bench_batch.py"),
            "--memory-child",
            mode,
            "--memory-n",
            str(count),
            "--memory-bins",
            str(bins),
        ]
        if chunk_size is not None:
            cmd += ["--memory-chunk", str(chunk_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"memory child {mode} failed")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10³ fiducials for throughput, 10⁵ for memory"
    )
    parser.add_argument("--n", type=int, default=None, help="fiducials for throughput")
    parser.add_argument(
        "--loop-n",
        type=int,
        default=None,
        help="single calls in the Python loop (default: all of --n)",
    )
    parser.add_argument("--bins", default="4096,256", help="frequency bins, comma-separated")
    parser.add_argument("--memory-n", type=int, default=None, help="fiducials for memory")
    parser.add_argument("--memory-bins", type=int, default=256)
    parser.add_argument(
        "--memory-chunk",
        type=int,
        default=None,
        help="chunk size for the memory runs (default: automatic)",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--chunk-sweep",
        default=None,
        help="comma-separated chunk sizes: print the throughput of each",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child:
        memory_child(args.memory_n, args.memory_bins, args.memory_child, args.memory_chunk)
        return

    n = args.n or (1000 if args.quick else 10_000)
    loop_n = min(args.loop_n or n, n)
    memory_n = args.memory_n or (100_000 if args.quick else 1_000_000)
    print("== Benchmarks 2-4: batched Fisher matrices ==")
    print(machine_info())

    if not args.skip_throughput:
        rows = [throughput(n, loop_n, int(b)) for b in args.bins.split(",")]
        print(
            f"\n-- benchmark 2: throughput, {n} fiducials, 9 parameters "
            f"(loop over {loop_n} single ff.fisher calls) --"
        )
        print(
            f"{'bins':>6}{'chunk':>7}{'batch Fisher/s':>16}{'loop Fisher/s':>15}"
            f"{'speedup':>9}{'max |dF| batch vs loop':>24}{'ok':>8}"
        )
        for r in rows:
            print(
                f"{r['bins']:>6}{r['chunk_size']:>7}{r['batch_per_s']:>16.1f}"
                f"{r['loop_per_s']:>15.1f}{r['speedup']:>8.1f}x{r['agreement']:>24.1e}"
                f"{r['n_ok']:>8}"
            )
        print("   (goal: speedup >= 5; |dF| relative to sqrt(F_ii F_jj))")
        for r in rows:
            print(
                f"   memory per item, {r['bins']} bins: XLA temporaries "
                f"{r['xla_temp_kb']:.0f} KiB, chunk-size estimate {r['estimate_kb']:.0f} KiB"
            )
        print("\n-- benchmark 4: compile time of the first fisher_batch call --")
        for r in rows:
            print(
                f"  {r['bins']:>5} bins: first call {fmt_time(r['first_call_s'])}, "
                f"second {fmt_time(r['steady_call_s'])}, compile ≈ "
                f"{fmt_time(max(r['first_call_s'] - r['steady_call_s'], 0.0))}"
            )

    if args.chunk_sweep:
        sizes = [int(c) for c in args.chunk_sweep.split(",")]
        print(f"\n-- chunk-size sweep, {n} fiducials: batch Fisher/s --")
        print(f"{'bins':>6}" + "".join(f"{s:>10}" for s in sizes))
        for b in args.bins.split(","):
            rates = chunk_sweep(n, int(b), sizes)
            print(f"{int(b):>6}" + "".join(f"{rates[s]:>10.0f}" for s in sizes))

    if not args.skip_memory:
        mem = run_memory(memory_n, args.memory_bins, args.memory_chunk)
        print(
            f"\n-- benchmark 3: peak RSS, {memory_n} fiducials, {args.memory_bins} bins, "
            f"chunks of {mem[1]['chunk_size']}, then .sigma() --"
        )
        for r in mem:
            extra = f", HDF5 file {r['file_mb']:.0f} MB" if r["mode"] == "stream" else ""
            print(
                f"  {r['mode']:<9} n={r['n']:>8}: peak RSS {r['peak_rss_mb']:8.0f} MB, "
                f"{r['wall_s']:7.1f} s ({r['n'] / r['wall_s']:.0f} Fisher/s), "
                f"{r['n_ok']} ok{extra}"
            )
        print(
            f"   (goal: < 2000 MB; the baseline computes {mem[0]['n']} items: Python, JAX "
            "and one chunk; the result holds n × 81 × 8 bytes of matrices)"
        )


if __name__ == "__main__":
    main()
