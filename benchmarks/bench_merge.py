"""ff.merge_pytrees at 10⁶ parameters: wall time and peak memory, side by side with a plain
numpy implementation of the same formula.

Two models of 10⁶ float32 parameters (four leaves, like a small network) with diagonal
Fishers are merged. Peak resident memory (``resource.getrusage``) is read after building
the inputs and after each merge; the inputs themselves are 4 × 4 MB (float32). Run
``python benchmarks/bench_merge.py``.
"""

from __future__ import annotations

import resource
import time

import numpy as np
from common import cpu_model

import fisherforecast as ff

SHAPES = {"dense1": (1000, 600), "dense2": (600, 600), "out": (600, 60), "bias": (4000,)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def numpy_merge(thetas, fishers):
    out = {}
    for k in SHAPES:
        num = sum(f[k].astype(np.float64) * t[k] for t, f in zip(thetas, fishers, strict=True))
        den = sum(f[k].astype(np.float64) for f in fishers)
        out[k] = num / den
    return out


def main():
    rng = np.random.default_rng(0)
    n = sum(int(np.prod(s)) for s in SHAPES.values())
    thetas = [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in (0, 1)]
    fishers = [
        {k: rng.exponential(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in (0, 1)
    ]
    base = peak_mb()
    print(f"machine: {cpu_model()}; {n:,} parameters per model")
    t0 = time.perf_counter()
    out = ff.merge_pytrees(thetas, fishers)
    cold = time.perf_counter() - t0
    after_cold = peak_mb()
    t0 = time.perf_counter()
    out = ff.merge_pytrees(thetas, fishers)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = numpy_merge(thetas, fishers)
    plain = time.perf_counter() - t0
    err = max(float(np.max(np.abs(out.params[k] - ref[k]))) for k in SHAPES)
    print(
        f"ff.merge_pytrees: first call {cold:.2f} s (compiles per leaf shape), "
        f"repeat {warm:.3f} s; numpy formula {plain:.3f} s (ratio {warm / plain:.2f})"
    )
    print(
        f"peak RSS: {base:.0f} MB with the inputs, {after_cold:.0f} MB after merging "
        f"(+{after_cold - base:.0f} MB; one float64 copy of one model is {8 * n / 1e6:.0f} MB)"
    )
    print(f"max |ff - numpy| = {err:.1e}")


if __name__ == "__main__":
    main()
