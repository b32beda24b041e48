"""Benchmark: the PK/PD tutorial (examples/pk_multiple_dose.py), stage by stage, before and
after, each run in a fresh process.

Each run imports the example from a source tree (this one, and optionally an older checkout
given with ``--before``), runs ``main(fast=...)`` and reports the wall time of every stage
(identifiability, profiles, symmetry search, design), the XLA compilations per stage
(JAX's monitoring events), and the scientific output (the D-optimal criterion and design,
the profile intervals), so that a speed-up can be checked against unchanged results.

Modes: ``fast`` (what ``tests/test_example_pk.py`` runs) with XLA's optimisations off, as
the test suite compiles (``tests/conftest.py``), and ``full`` (the tutorial) with them on,
as users run. The runs of one round alternate before/after so that load drift hits both.

Run:
    python benchmarks/bench_pk_tutorial.py --before /tmp/pk_before [--modes fast full]
        [--rounds 1] [--json out.json]

``--before`` is a checkout of an older commit with its own ``fisherforecast`` package
(``git worktree add /tmp/pk_before <commit>``; link ``.venv`` and ``fisherforecast/models``
as in this tree). Every process gets an empty kernel cache of its own (a cold first run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_fresh_child

ROOT = Path(__file__).resolve().parents[1]

# The child: run the example from `root` and print one JSON line.
CHILD = r"""
import collections, importlib.util, json, os, sys, time
import jax
if not int(sys.argv[2]):
    jax.config.update("jax_disable_most_optimizations", True)
from jax import monitoring
counts = collections.Counter()
seconds = collections.Counter()
def listener(name, dur, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
        counts["compile"] += 1
        seconds["compile"] += dur
    elif name == "/jax/core/compile/jaxpr_trace_duration":
        seconds["trace"] += dur
monitoring.register_event_duration_secs_listener(listener)
root = sys.argv[1]
sys.path.insert(0, root)
example = os.path.join(root, "examples", "pk_multiple_dose.py")
spec = importlib.util.spec_from_file_location("pk", example)
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
import fisherforecast as ff
assert os.path.realpath(ff.__file__).startswith(os.path.realpath(root)), ff.__file__
stages = {}
STAGES = [("identifiability", "identifiability"), ("profile_likelihood", "profiles"),
          ("symmetry_search", "symmetry"), ("optimize_design", "design")]
for public, label in STAGES:
    fn = getattr(ff, public)
    def wrapped(*a, _fn=fn, _label=label, **k):
        c0, s0, t0 = counts["compile"], dict(seconds), time.perf_counter()
        out = _fn(*a, **k)
        stages[_label] = {
            "wall_s": time.perf_counter() - t0,
            "compiles": counts["compile"] - c0,
            "compile_s": seconds["compile"] - s0.get("compile", 0.0),
            "trace_s": seconds["trace"] - s0.get("trace", 0.0),
        }
        return out
    setattr(m.ff, public, wrapped)
t0 = time.perf_counter()
out = m.main(fast=sys.argv[3] == "fast")
total = time.perf_counter() - t0
res = out["design"]
profiles = {name: {str(k): list(v) for k, v in p.intervals.items()}
            for name, p in out["profiles"].items()}
print("RESULT " + json.dumps({
    "stages": stages, "total_s": total,
    "design": {"criterion": res.criterion_value, "initial": res.initial_value,
               "design": {k: [float(x) for x in v] for k, v in res.design.items()}},
    "profiles": profiles,
    "symmetric": bool(out["symmetry"].symmetric),
    "rank": int(out["report"].rank),
}))
"""


def run_child(root: Path, mode: str, python: str) -> dict:
    optimize = 0 if mode == "fast" else 1
    return run_fresh_child(CHILD, root, str(optimize), mode, python=python)


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    python = platform.python_version()
    return f"{platform.platform()}; {cpu}; {os.cpu_count()} logical CPUs; python {python}"


def table(results: dict, mode: str) -> str:
    columns = [name for name in ("before", "after") if results.get(name)]
    head = "| stage | " + " | ".join(columns) + (" | speed-up |" if len(columns) == 2 else " |")
    lines = [head, "|" + "---|" * (len(columns) + 1 + (len(columns) == 2))]
    for stage in ("identifiability", "profiles", "symmetry", "design"):
        cells, walls = [], []
        for name in columns:
            runs = [r["stages"][stage] for r in results[name]]
            wall = sorted(r["wall_s"] for r in runs)[len(runs) // 2]
            comp = runs[0]
            walls.append(wall)
            cells.append(
                f"{wall:.1f} s ({comp['compiles']} compiles, {comp['compile_s']:.1f} s XLA)"
            )
        ratio = f" | {walls[0] / walls[1]:.2f}×" if len(walls) == 2 else ""
        lines.append(f"| {stage} | " + " | ".join(cells) + ratio + " |")
    totals = [
        sorted(r["total_s"] for r in results[name])[len(results[name]) // 2] for name in columns
    ]
    ratio = f" | {totals[0] / totals[1]:.2f}×" if len(totals) == 2 else ""
    lines.append("| whole example | " + " | ".join(f"{t:.1f} s" for t in totals) + ratio + " |")
    return f"\n{mode} mode:\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="root of an older checkout (before column)")
    parser.add_argument("--modes", nargs="+", default=["fast", "full"], choices=["fast", "full"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    python = sys.executable
    print(machine())
    everything = {}
    for mode in args.modes:
        results: dict = {"before": [], "after": []}
        for _ in range(args.rounds):
            if args.before is not None:
                results["before"].append(run_child(args.before.resolve(), mode, python))
                last = results["before"][-1]
                print(f"  {mode} before: {last['total_s']:.1f} s, load {last['load']}", flush=True)
            results["after"].append(run_child(ROOT, mode, python))
            last = results["after"][-1]
            print(f"  {mode} after: {last['total_s']:.1f} s, load {last['load']}", flush=True)
        print(table(results, mode), flush=True)
        for name in ("before", "after"):
            for r in results[name]:
                print(
                    f"  {name}: D criterion {r['design']['criterion']:.6f} (initial "
                    f"{r['design']['initial']:.6f}); profiles {r['profiles']}"
                )
        everything[mode] = results
    print(f"load average at the end: {os.getloadavg()}  ({time.strftime('%Y-%m-%d %H:%M')})")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
