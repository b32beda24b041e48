"""Benchmark: `ff.profile_likelihood` on the PK/PD tutorial's model, first call and warm, before
and after, each first call in a fresh process with an empty kernel cache.

The child builds the tutorial's experiment (examples/pk_multiple_dose.py), runs
`ff.identifiability` first (as the tutorial does: it compiles the Fisher evaluation that the
profiles may share), then times `ff.profile_likelihood` twice (first call, then warm) and
reports XLA compile time during the first call, the optimiser's steps per grid point and the
intervals, so that a speed-up can be checked against unchanged results.

Modes: ``fast`` (the tutorial's fast mode: EC50, 9 points, XLA optimisations off as the test
suite compiles) and ``full`` (EC50 and ke0, 21 points, optimisations on, as users run).

Run:
    python benchmarks/bench_profile.py [--before /tmp/before] [--rounds 2]

``--before`` is a checkout of an older commit (``git worktree add /tmp/before <commit>``,
with ``.venv`` linked). Rounds alternate before/after so that load drift hits both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pk_tutorial import machine  # noqa: E402
from common import run_fresh_child  # noqa: E402

CHILD = r"""
import collections, importlib.util, json, os, sys, time
import jax
root, mode = sys.argv[1], sys.argv[2]
if mode == "fast":
    jax.config.update("jax_disable_most_optimizations", True)
from jax import monitoring
seconds = collections.Counter()
def listener(name, dur, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
        seconds["compile"] += dur
monitoring.register_event_duration_secs_listener(listener)
sys.path.insert(0, root)
spec = importlib.util.spec_from_file_location(
    "pk", os.path.join(root, "examples", "pk_multiple_dose.py"))
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
import fisherforecast as ff
import numpy as np
assert os.path.realpath(ff.__file__).startswith(os.path.realpath(root)), ff.__file__
exp = m.build()
names, n_grid = (["EC50"], 9) if mode == "fast" else (["EC50", "ke0"], 21)
ff.identifiability(exp, m.FIDUCIAL, n_random=1, check_nonlinearity=False)
c0, t0 = seconds["compile"], time.perf_counter()
first = ff.profile_likelihood(exp, m.FIDUCIAL, names, n_grid=n_grid, progress=False)
first_s, compile_s = time.perf_counter() - t0, seconds["compile"] - c0
t0 = time.perf_counter()
ff.profile_likelihood(exp, m.FIDUCIAL, names, n_grid=n_grid, progress=False)
warm_s = time.perf_counter() - t0
profiles = {
    n: {"steps_per_point": float(np.mean(p.steps)), "points": int(np.size(p.steps)),
        "intervals": {str(k): [float(v) for v in iv] for k, iv in p.intervals.items()},
        "delta": [float(v) for v in p.delta]}
    for n, p in first.profiles.items()
}
print("RESULT " + json.dumps({"first_s": first_s, "compile_s": compile_s, "warm_s": warm_s,
                              "profiles": profiles}))
"""


def run_child(root: Path, mode: str) -> dict:
    return run_fresh_child(CHILD, root, mode)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="root of an older checkout (before column)")
    parser.add_argument("--modes", nargs="+", default=["fast", "full"], choices=["fast", "full"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    roots = {"after": ROOT}
    if args.before is not None:
        roots = {"before": args.before.resolve(), "after": ROOT}
    for mode in args.modes:
        runs: dict = {name: [] for name in roots}
        for _ in range(args.rounds):
            for name, root in roots.items():
                r = run_child(root, mode)
                runs[name].append(r)
                print(
                    f"  {mode} {name}: first {r['first_s']:.2f} s (XLA {r['compile_s']:.2f} s), "
                    f"warm {r['warm_s']:.2f} s, load {r['load'][0][0]:.1f}-{r['load'][1][0]:.1f}",
                    flush=True,
                )
        print(f"\n{mode} mode (medians of {args.rounds}):")
        print("| | first call | XLA in first call | warm | steps per point |")
        print("|---|---|---|---|---|")
        for name, rs in runs.items():
            steps = {n: p["steps_per_point"] for n, p in rs[0]["profiles"].items()}
            print(
                f"| {name} | {median(r['first_s'] for r in rs):.2f} s | "
                f"{median(r['compile_s'] for r in rs):.2f} s | "
                f"{median(r['warm_s'] for r in rs):.2f} s | "
                + ", ".join(f"{n} {v:.1f}" for n, v in steps.items())
                + " |"
            )
        if "before" in runs:
            b, a = runs["before"][0]["profiles"], runs["after"][0]["profiles"]
            for n in a:
                if n in b and len(a[n]["delta"]) == len(b[n]["delta"]):
                    diff = max(
                        abs(x - y) for x, y in zip(a[n]["delta"], b[n]["delta"], strict=True)
                    )
                    print(f"  {n}: max |ΔΔ(−2 ln L)| before/after {diff:.2e}")
                print(f"  {n}: intervals after {a[n]['intervals']}")
    print(f"load average at the end: {os.getloadavg()}  ({time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
