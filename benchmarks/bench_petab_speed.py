"""PEtab Fisher matrices: speed against accuracy of the ODE solve, beside AMICI's budgets.

For each problem, in a fresh process per tolerance (so that every first call pays its
compilation): import with ``rtol = atol = tol``, then time the first Fisher matrix of all
conditions (compilation included) and the best of 5 warm ones, and compare the matrix with
the one at the tightest tolerance (the largest entry-wise difference scaled by
``sqrt(F_ii F_jj)``, so that it reads as a relative error of the information). AMICI's own
test budget for one forward-sensitivity gradient (``t_fwd`` in its benchmark tests) is
printed beside the warm time.

    python benchmarks/bench_petab_speed.py [--only Boehm_JProteomeRes2014 ...]
        [--tolerances 1e-10 1e-8 1e-6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from petab_coverage import AMICI_T_FWD, REPO, problem_yaml  # noqa: E402

DEFAULT = ["Boehm_JProteomeRes2014", "Fujita_SciSignal2010", "Bachmann_MSB2011"]


def worker(yaml_path: str, tol: float, out: str) -> None:
    import jax
    import numpy as np

    import fisherforecast as ff
    from fisherforecast._engine import full_kernel
    from fisherforecast._x64 import float64

    problem = ff.petab.load(yaml_path, rtol=tol, atol=tol)
    names = tuple(problem.nominal)

    def evaluate():
        F = np.zeros((len(names), len(names)))
        with float64():
            fid = {k: np.float64(v) for k, v in problem.nominal.items()}
            for exp in problem.experiments:
                ev = jax.device_get(full_kernel((exp,), fid, names, "forward")[0])
                F += np.asarray(ev.fisher)
        return F

    t = time.perf_counter()
    F = evaluate()
    first = time.perf_counter() - t
    warm = []
    for _ in range(5):
        t = time.perf_counter()
        F = evaluate()
        warm.append(time.perf_counter() - t)
    np.save(out, F)
    print(json.dumps({"first_s": first, "warm_s": min(warm), "load": os.getloadavg()[0]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "petab"))
    ap.add_argument("--only", nargs="*", default=DEFAULT)
    ap.add_argument("--tolerances", nargs="*", type=float, default=[1e-10, 1e-8, 1e-6])
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--worker", nargs=3)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], float(args.worker[1]), args.worker[2])
        return
    import numpy as np

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(
        f"{'problem':<26}{'tol':>8}{'first (s)':>11}{'warm (s)':>10}{'AMICI t_fwd':>13}"
        f"{'max ΔF/√(FiiFjj)':>18}{'load':>6}"
    )
    tols = sorted(args.tolerances)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            yaml_path = problem_yaml(Path(args.root) / name)
            ref = None
            for tol in tols:
                out = str(Path(tmp) / f"{name}_{tol:g}.npy")
                try:
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", str(yaml_path), repr(tol), out],
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                        env=dict(os.environ, PYTHONPATH=str(REPO)),
                    )
                except subprocess.TimeoutExpired:
                    print(f"{name:<26}{tol:>8.0e}  stopped after the {args.timeout:.0f} s cap")
                    continue
                if done.returncode != 0:
                    tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
                    print(f"{name:<26}{tol:>8.0e}  failed: {tail}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                F = np.load(out)
                if ref is None:
                    ref = F
                d = np.sqrt(np.abs(np.outer(np.diag(ref), np.diag(ref))))
                d = np.where(d > 0, d, 1.0)
                dev = float(np.max(np.abs(F - ref) / d))
                budget = AMICI_T_FWD.get(name)
                print(
                    f"{name:<26}{tol:>8.0e}{r['first_s']:>11.1f}{r['warm_s']:>10.3f}"
                    f"{'' if budget is None else format(budget, 'g'):>13}{dev:>18.1e}"
                    f"{r['load']:>6.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
