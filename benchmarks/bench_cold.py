"""Cold starts: first-call latency in fresh processes, before and after the kernel cache.

Every figure comes from a FRESH PROCESS (``subprocess``), repeated ``--repeats`` times; the
median is printed. Columns:

* ``before``: the library with its cold-start mechanisms off (``FISHERFORECAST_LEGACY_JIT=1``:
  plain ``jax.jit``, models compared by identity; ``FISHERFORECAST_CACHE=0``), or with
  ``--before-git REV`` a snapshot of another commit (e.g. the merge base with ``main``);
* ``after, cold cache``: this checkout, an empty cache directory (the first run on a machine);
* ``after, warm cache``: this checkout, a cache directory filled by an earlier process (every
  later run of the same script).

Measured, side by side in one run:

(a) a small model (5 parameters, 200 points, Gaussian): ``import fisherforecast`` time and the
    first ``ff.fisher`` time, against hand-written central differences (numpy model; and the
    same jax.numpy model evaluated eagerly) in their own fresh processes;
(b) the first ``ff.identifiability`` report on a zoo ODE model (``biology.sir_experiment``),
    with the kernel-cache counters of the last process of each column;
(c) ``gw.experiment(...)`` called twice with equal arguments: XLA compilations counted with
    JAX's own monitoring events over both ``ff.fisher`` calls;
(d) warm ``ff.fisher`` (median of many calls in one process) of the small model;
(e) first call evaluated op by op (``jax.disable_jit``) against compiling, for the small model
    and a 4096-bin complex model (the ``bench_fisher_single`` TaylorF2-like model).

Usage: python benchmarks/bench_cold.py [--repeats 3] [--quick] [--before-git REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

SMALL_MODEL = """
def small_model(p, t):
    return p["A"] * xp.exp(-t / p["tau"]) * xp.cos(p["w"] * t + p["phi"]) + p["c"]
FID = {"A": 1.0, "tau": 3.0, "w": 2.0, "phi": 0.1, "c": 0.2}
T = np.linspace(0.0, 10.0, 200)
SIGMA = 0.1
"""

CHILD = {
    # (a) + (d): import time, first ff.fisher, warm median
    "small": """
t0 = time.perf_counter()
import jax, jax.numpy as jnp, numpy as np
import fisherforecast as ff
t1 = time.perf_counter()
xp = jnp
{model}
exp = ff.Experiment(small_model, ff.Gaussian(sigma=SIGMA), design=T)
t2 = time.perf_counter()
F = ff.fisher(exp, FID).matrix
t3 = time.perf_counter()
warm = []
for _ in range(WARM):
    a = time.perf_counter(); ff.fisher(exp, FID); warm.append(time.perf_counter() - a)
out = {{"import": t1 - t0, "first": t3 - t2, "warm": statistics.median(warm) if warm else None,
       "F00": float(F[0, 0])}}
""",
    # (a) reference: hand-written central differences, numpy model
    "fd_numpy": """
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
xp = np
{model}
def fisher_cd(fid):
    names = list(fid); cols = []
    for n in names:
        h = 6e-6 * max(abs(fid[n]), 1.0)
        up = dict(fid, **{{n: fid[n] + h}}); dn = dict(fid, **{{n: fid[n] - h}})
        cols.append((small_model(up, T) - small_model(dn, T)) / (2 * h))
    J = np.stack(cols, axis=1)
    return J.T @ J / SIGMA**2
t2 = time.perf_counter()
F = fisher_cd(FID)
t3 = time.perf_counter()
out = {{"import": t1 - t0, "first": t3 - t2, "warm": None, "F00": float(F[0, 0])}}
""",
    # (a) reference: the same central differences on the jax.numpy model, op by op
    "fd_jnp": """
t0 = time.perf_counter()
import jax, jax.numpy as jnp, numpy as np
t1 = time.perf_counter()
xp = jnp
{model}
def fisher_cd(fid):
    names = list(fid); cols = []
    for n in names:
        h = 6e-6 * max(abs(fid[n]), 1.0)
        up = dict(fid, **{{n: fid[n] + h}}); dn = dict(fid, **{{n: fid[n] - h}})
        cols.append((np.asarray(small_model(up, T)) - np.asarray(small_model(dn, T))) / (2 * h))
    J = np.stack(cols, axis=1)
    return J.T @ J / SIGMA**2
t2 = time.perf_counter()
with jax.enable_x64(True):
    F = fisher_cd(FID)
t3 = time.perf_counter()
out = {{"import": t1 - t0, "first": t3 - t2, "warm": None, "F00": float(F[0, 0])}}
""",
    # (b) first identifiability report on a zoo ODE model
    "ode": """
t0 = time.perf_counter()
import jax, numpy as np
import fisherforecast as ff
from fisherforecast.models import biology
t1 = time.perf_counter()
exp = biology.sir_experiment()
t2 = time.perf_counter()
rep = ff.identifiability(exp, biology.SIR_BOARDING_SCHOOL_FIDUCIAL, params=["beta", "gamma", "I0"])
t3 = time.perf_counter()
from fisherforecast import _compile
stats = _compile.compile_stats() if hasattr(_compile, "compile_stats") else {{}}
out = {{"import": t1 - t0, "first": t3 - t2, "warm": None, "stats": stats}}
""",
    # (c) the zoo constructor twice with equal arguments
    "zoo_twice": """
t0 = time.perf_counter()
import jax, numpy as np
import fisherforecast as ff
from fisherforecast.models import gw
t1 = time.perf_counter()
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **k: compiles.append(d) if e == "/jax/core/compile/backend_compile_duration"
    else None)
fid = dict(gw.GW170817_LIKE)
times = []
for _ in range(2):
    a = time.perf_counter()
    ff.fisher(gw.experiment("H1", fiducial=fid, n_freq=1000), fid)
    times.append(time.perf_counter() - a)
out = {{"import": t1 - t0, "first": times[0], "second": times[1], "compiles": len(compiles),
       "compile_s": sum(compiles), "warm": None}}
""",
    # (d) warm ff.fisher, interleaved A/B in one process: the engine's cached kernel against a
    # plain jax.jit of the same function swapped in (blocks alternate, so load drift hits both)
    "warm_ab": """
import sys
sys.path.insert(0, BENCH)
import jax, jax.numpy as jnp, numpy as np
import fisherforecast as ff
from fisherforecast import _engine
xp = jnp
{model}
from common import experiment as gw_experiment, snr_scaled_fiducial
if ARGS[0] == "small":
    exp, fid, n = ff.Experiment(small_model, ff.Gaussian(sigma=SIGMA), design=T), FID, 100
else:
    exp, f, df = gw_experiment(4096)
    fid, n = snr_scaled_fiducial(f, df), 20
cached = _engine.evaluation_kernel
plain = jax.jit(cached._fn, static_argnames=("names", "mode"))
res = {{"cached": [], "jit": []}}
for k in (cached, plain):
    _engine.evaluation_kernel = k
    ff.fisher(exp, fid)
for _ in range(8):
    for name, k in (("cached", cached), ("jit", plain)):
        _engine.evaluation_kernel = k
        ts = []
        for _ in range(n):
            a = time.perf_counter(); ff.fisher(exp, fid); ts.append(time.perf_counter() - a)
        res[name].append(statistics.median(ts))
c, j = statistics.median(res["cached"]), statistics.median(res["jit"])
out = {{"cached": c, "jit": j, "ratio": c / j, "warm": None}}
""",
    # (e) first call op by op (jax.disable_jit) vs compiled, small and 4096-bin models
    "eager_vs_compiled": """
import sys
sys.path.insert(0, BENCH)
import jax, jax.numpy as jnp, numpy as np
import fisherforecast as ff
xp = jnp
{model}
from common import experiment as gw_experiment, snr_scaled_fiducial
which, path = ARGS
if which == "small":
    exp, fid = ff.Experiment(small_model, ff.Gaussian(sigma=SIGMA), design=T), FID
else:
    exp, f, df = gw_experiment(4096)
    fid = snr_scaled_fiducial(f, df)
names = tuple(fid)
with jax.enable_x64(True):
    fid64 = {{k: np.float64(v) for k, v in fid.items()}}
    jax.block_until_ready(jnp.ones(3) + 1)  # backend initialised before the clock starts
    a = time.perf_counter()
    if path == "eager":
        with jax.disable_jit():
            F = ff.fisher_information(exp, fid64, names)
    else:
        F = jax.jit(ff.fisher_information, static_argnames=("names",))(exp, fid64, names)
    F = np.asarray(F)
    first = time.perf_counter() - a
out = {{"first": first, "warm": None, "F": F.tolist()}}
""",
}


def run_child(kind, env, pythonpath, args=(), warm=0):
    body = CHILD[kind].format(model=SMALL_MODEL)
    check = ""
    if kind not in ("fd_numpy", "fd_jnp"):  # after the clocks: which tree was measured?
        check = (
            "import fisherforecast as _ff\n"
            f"assert _ff.__file__.startswith({str(pythonpath)!r}), _ff.__file__\n"
        )
    code = (
        "import json, statistics, time\n"
        f"BENCH = {str(BENCH)!r}\nARGS = {list(args)!r}\nWARM = {warm}\n"
        + textwrap.dedent(body)
        + "\n"
        + check
        + "print('RESULT ' + json.dumps(out))\n"
    )
    full_env = dict(os.environ, PYTHONPATH=str(pythonpath), **env)
    # cwd outside any checkout: `python -c` puts the working directory first on sys.path,
    # which would shadow PYTHONPATH (the "before" tree).
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=1200,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def before_tree(rev, workdir):
    """A snapshot of commit `rev` (the zoo symlinked into the package as in a checkout)."""
    dest = Path(workdir) / "before"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    link = dest / "fisherforecast" / "models"
    if not link.exists():
        link.symlink_to("../models")
    return dest


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def fmt(x):
    if x != x:  # nan
        return "      -  "
    return f"{x * 1e3:8.1f} ms" if x < 1.0 else f"{x:8.2f} s "


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat, no ODE, no 4096-bin run")
    ap.add_argument("--before-git", default=None, help="commit for the 'before' column")
    ap.add_argument("--json", default=None, help="write the raw results to this file")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c,d,e")
    opts = ap.parse_args()
    reps = 1 if opts.quick else opts.repeats
    skip = set(opts.skip.split(",")) - {""}
    if opts.quick:
        skip |= {"b", "e"}

    sys.path.insert(0, str(BENCH))
    from common import machine_info

    print(machine_info())
    print(f"fresh process per measurement; medians of {reps} processes\n")

    with tempfile.TemporaryDirectory(prefix="ff-bench-cold-") as tmp:
        if opts.before_git:
            before_path = before_tree(opts.before_git, tmp)
            before_env = {"FISHERFORECAST_CACHE": "0"}
            print(f"before = commit {opts.before_git}")
        else:
            before_path = ROOT
            before_env = {"FISHERFORECAST_LEGACY_JIT": "1", "FISHERFORECAST_CACHE": "0"}
            print("before = this checkout with FISHERFORECAST_LEGACY_JIT=1 FISHERFORECAST_CACHE=0")
        warm_dir = Path(tmp) / "warm-cache"
        counter = iter(range(10**6))

        def after_cold():
            return {"FISHERFORECAST_CACHE_DIR": str(Path(tmp) / f"cold-{next(counter)}")}

        after_warm = {"FISHERFORECAST_CACHE_DIR": str(warm_dir)}

        def column(kind, extra=None, **kw):
            """The columns, interleaved (before, cold, warm, before, ...) so that a change
            in the machine's load hits them alike. `extra`: label -> env of more columns
            with their own warm cache."""
            extra = extra or {}
            out = {"before": [], "cold": [], "warm": [], **{k: [] for k in extra}}
            run_child(kind, after_warm, ROOT, **kw)  # fill the warm caches
            for env, path in extra.values():
                if not callable(env):
                    run_child(kind, env, path, **kw)
            for _ in range(reps):
                out["before"].append(run_child(kind, before_env, before_path, **kw))
                out["cold"].append(run_child(kind, after_cold(), ROOT, **kw))
                out["warm"].append(run_child(kind, after_warm, ROOT, **kw))
                for label, (env, path) in extra.items():
                    out[label].append(run_child(kind, env() if callable(env) else env, path, **kw))
            return out

        results = {}
        if "a" not in skip:
            results["small"] = column("small", warm=300)
            results["fd_numpy"] = [run_child("fd_numpy", {}, ROOT) for _ in range(reps)]
            results["fd_jnp"] = [run_child("fd_jnp", {}, ROOT) for _ in range(reps)]
            s = results["small"]
            fdn = median(r["first"] for r in results["fd_numpy"])
            fdj = median(r["first"] for r in results["fd_jnp"])
            print("\n(a) small model, 5 params x 200 points, Gaussian")
            print(f"    {'':34s}{'before':>12s}{'after,cold':>12s}{'after,warm':>12s}")
            for key, label in (("import", "import fisherforecast"), ("first", "first ff.fisher")):
                row = [median(r[key] for r in s[c]) for c in ("before", "cold", "warm")]
                print(f"    {label:34s}" + "".join(f"{fmt(x):>12s}" for x in row))
            print(f"    hand central differences, numpy model: first {fmt(fdn)}")
            print(f"    hand central differences, jnp model (eager, x64): first {fmt(fdj)}")
            for c, lab in (("before", "before"), ("cold", "after, cold"), ("warm", "after, warm")):
                first = median(r["first"] for r in s[c])
                print(
                    f"    ratio first ff.fisher / hand CD [{lab:11s}]: numpy {first / fdn:7.1f}x"
                    f"   jnp-eager {first / fdj:5.2f}x"
                )
            wb = median(r["warm"] for r in s["before"])
            wa = median(r["warm"] for r in s["warm"])
            print("\n(d) warm ff.fisher (median of 300 calls per process, separate processes)")
            print(f"    before {fmt(wb)}   after {fmt(wa)}   after/before {wa / wb:5.2f}")

        if "d" not in skip:
            print("\n(d) warm ff.fisher, interleaved A/B in one process: cached kernel vs jax.jit")
            for which in ("small", "gw4096"):
                ab = [run_child("warm_ab", {}, ROOT, args=(which,)) for _ in range(reps)]
                results[f"warm_ab_{which}"] = ab
                each = ", ".join(format(r["ratio"], ".3f") for r in ab)
                print(
                    f"    {which:8s} cached {fmt(median(r['cached'] for r in ab))}"
                    f"   jit {fmt(median(r['jit'] for r in ab))}"
                    f"   ratio {median(r['ratio'] for r in ab):5.3f} (per process: {each})"
                )

        if "b" not in skip:
            # Since the fast keys (docs/performance.md) a warm cache holds every kernel of
            # the report and a second process traces none of them. With --before-git, the
            # other commit is also run with its own warm cache ("before, warm cache").
            extra = {}
            if opts.before_git:
                extra["before, warm cache"] = (
                    {"FISHERFORECAST_CACHE_DIR": str(Path(tmp) / "warm-before")},
                    before_path,
                )
            results["ode"] = column("ode", extra=extra)
            print("\n(b) first ff.identifiability, zoo SIR ODE model (beta, gamma, I0)")
            for c in results["ode"]:
                o = results["ode"][c]
                lab = {"cold": "after, cold", "warm": "after, warm"}.get(c, c)
                stats = o[-1].get("stats") or {}
                traced = stats.get("lowerings", "-")
                print(
                    f"    {lab:28s} import {fmt(median(r['import'] for r in o))}"
                    f"   first report {fmt(median(r['first'] for r in o))}"
                    f"   (last: {traced} kernels traced, {stats.get('fast_hits', '-')} fast hits,"
                    f" {stats.get('disk_loads', '-')} loaded after tracing)"
                )

        if "c" not in skip:
            results["zoo"] = column("zoo_twice")
            print("\n(c) gw.experiment('H1', n_freq=1000) twice + ff.fisher each")
            for c, lab in (("before", "before"), ("cold", "after, cold"), ("warm", "after, warm")):
                z = results["zoo"][c]
                print(
                    f"    {lab:12s} XLA compiles {median(r['compiles'] for r in z):4.0f}"
                    f"   first {fmt(median(r['first'] for r in z))}"
                    f"   second {fmt(median(r['second'] for r in z))}"
                )

        if "e" not in skip:
            print("\n(e) first call: op by op (jax.disable_jit) vs compiled, fresh processes")
            for which in ("small", "gw4096"):
                row = {}
                for path in ("eager", "compiled"):
                    rs = [
                        run_child(
                            "eager_vs_compiled",
                            {"FISHERFORECAST_CACHE": "0"},
                            ROOT,
                            args=(which, path),
                        )
                        for _ in range(reps)
                    ]
                    row[path] = (median(r["first"] for r in rs), rs[0]["F"])
                import numpy as np

                same = np.allclose(row["eager"][1], row["compiled"][1], rtol=1e-10, atol=0)
                print(
                    f"    {which:8s} eager {fmt(row['eager'][0])}   compiled "
                    f"{fmt(row['compiled'][0])}   results agree to 1e-10: {same}"
                )

        if opts.json:
            out = Path(opts.json)
            tmp_out = out.with_name(out.name + ".tmp")
            tmp_out.write_text(json.dumps(results, indent=1))
            os.replace(tmp_out, out)  # atomic
            print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
