"""Coverage of the Benchmark-Models-PEtab collection by ``ff.petab``: writes docs/petab_coverage.md.

For each problem in ../shared/petab (or --root), in its own process with a time cap:

* whether it imports, and what stopped it (the refusal or error message);
* parameters, conditions and data points;
* the log-likelihood at the nominal parameters against AMICI's benchmark reference
  (AMICI-dev/AMICI tests/benchmark_models/benchmark_models.yaml; Crauste: the value of two
  independent codes on today's files);
* the time of the first ``problem.evaluate()`` (llh, gradient and Fisher matrix from one
  forward-sensitivity solve per condition; compilation included: the process's first call)
  and of a warm one (one compiled kernel per problem, shared by all its conditions); then
  the first and a warm ``log_likelihood()`` (its own, cheaper kernel);
* the numerical rank of the Fisher matrix (log-scale parameters; eigenvalues above
  1e-10 × the largest), how many directions have σ > 1 (a decade on log10 scale), and the
  weakest direction.

Usage::

    python benchmarks/petab_coverage.py                # all problems, 300 s cap each
    python benchmarks/petab_coverage.py --only Boehm_JProteomeRes2014 --timeout 120
    python benchmarks/petab_coverage.py --render       # rebuild the page from the results

Results accumulate in benchmarks/results/petab_coverage.jsonl (one line per problem; a
rerun replaces that problem's line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "petab_coverage.jsonl"
PAGE = REPO / "docs" / "petab_coverage.md"

# AMICI's benchmark tests (llh at the nominal parameters); see the module docstring.
REFERENCE = {
    "Bachmann_MSB2011": 418.40573341425295,
    "Beer_MolBioSystems2014": 58622.9145631413,
    "Boehm_JProteomeRes2014": -138.22199693517703,
    "Borghans_BiophysChem1997": 83.3237191357272,
    "Brannmark_JBC2010": -141.889113770537,
    "Bruno_JExpBot2016": 46.688176988431806,
    "Chen_MSB2009": -115700.1192629893,
    "Crauste_CellSystems2017": -190.963978,
    "Elowitz_Nature2000": 63.20279991419332,
    "Fiedler_BMCSystBiol2016": 58.58390161681,
    "Fujita_SciSignal2010": 53.08377736998929,
    "Isensee_JCB2018": -3949.375966548649,
    "Lucarelli_CellSystems2018": -1681.6059879426584,
    "Schwen_PONE2014": -943.9992988598723,
    "Smith_BMCSystBiol2013": -888198.436541014,
    "Sneyd_PNAS2002": 319.79177818768756,
    "Weber_BMC2015": -296.2017922646865,
    "Zheng_PNAS2012": 278.33353271001477,
}
# AMICI's own time budget for a forward-sensitivity gradient (same file, t_fwd).
AMICI_T_FWD = {
    "Bachmann_MSB2011": 3.5,
    "Beer_MolBioSystems2014": 0.5,
    "Boehm_JProteomeRes2014": 0.05,
    "Borghans_BiophysChem1997": 0.5,
    "Brannmark_JBC2010": 0.5,
    "Bruno_JExpBot2016": 0.05,
    "Crauste_CellSystems2017": 0.05,
    "Elowitz_Nature2000": 0.11,
    "Fiedler_BMCSystBiol2016": 0.05,
    "Fujita_SciSignal2010": 0.5,
    "Isensee_JCB2018": 15,
    "Lucarelli_CellSystems2018": 2.5,
    "Schwen_PONE2014": 0.5,
    "Smith_BMCSystBiol2013": 50.0,
    "Sneyd_PNAS2002": 0.1,
    "Weber_BMC2015": 0.1,
    "Zheng_PNAS2012": 0.05,
}


def problem_yaml(folder: Path) -> Path:
    own = folder / f"{folder.name}.yaml"
    if own.exists():
        return own
    found = sorted(p for p in folder.glob("*.yaml") if "test" not in p.name)
    return found[0]


def worker(yaml_path: str, report=None) -> dict:
    """Import one problem and measure it (runs in a child process); `report(partial)` is
    called with the results so far after each stage."""
    import numpy as np

    import fisherforecast as ff

    out: dict = {}
    t = time.perf_counter()
    problem = ff.petab.load(yaml_path)
    out["load_s"] = time.perf_counter() - t
    out["n_params"] = len(problem.nominal)
    out["n_conditions"] = len(problem.experiments)
    out["n_data"] = problem.n_data
    out["features"] = list(problem.features)
    names = tuple(problem.nominal)
    # The first call of the process: llh, gradient and Fisher matrix from one
    # forward-sensitivity pass (problem.evaluate), compilation included.
    t = time.perf_counter()
    try:
        ev = problem.evaluate()
        F = ev.fisher.matrix
        out["llh"] = ev.log_likelihood  # kept if the llh kernel below runs out of time
    except Exception as exc:  # a Fisher-side failure: reported, the llh still measured
        ev, F = None, np.full((len(names), len(names)), np.nan)
        out["fisher_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    else:
        out["first_s"] = time.perf_counter() - t
    if report is not None:
        report(dict(out))
    if ev is not None:
        t = time.perf_counter()
        problem.evaluate()
        out["warm_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out["llh"] = problem.log_likelihood()
    out["llh_first_s"] = time.perf_counter() - t
    t = time.perf_counter()
    problem.log_likelihood()
    out["llh_warm_s"] = time.perf_counter() - t
    if ev is not None:
        out["llh_evaluate_diff"] = ev.log_likelihood - out["llh"]
    if report is not None:
        report(dict(out))
    out["finite"] = bool(np.all(np.isfinite(F)))
    if out["finite"]:
        w, V = np.linalg.eigh(0.5 * (F + F.T))
        out["eig_max"] = float(w[-1])
        out["eig_min"] = float(w[0])
        out["rank"] = int(np.sum(w > 1e-10 * w[-1]))
        out["n_sloppy"] = int(np.sum(w < 1.0))
        v = V[:, 0]
        top = np.argsort(-np.abs(v))[:3]
        out["weakest"] = " ".join(f"{v[i]:+.2f}·{names[i]}" for i in top)
    return out


def second_process(yaml_path: str) -> dict:
    """The first ``evaluate()`` and llh of a new process that finds the kernels the cold
    run stored in the disk cache (a scripted forecast's second run)."""
    import fisherforecast as ff

    problem = ff.petab.load(yaml_path)
    out = {}
    t = time.perf_counter()
    try:
        problem.evaluate()
        out["first_new_s"] = time.perf_counter() - t
    except Exception:  # the cold run reported it
        pass
    t = time.perf_counter()
    problem.log_likelihood()
    out["llh_new_s"] = time.perf_counter() - t
    return out


def _child(yaml_path: str, queue, cache: str, again: bool) -> None:
    os.environ["FISHERFORECAST_CACHE_DIR"] = cache
    try:
        if again:
            queue.put(("ok", second_process(yaml_path)))
        else:
            queue.put(("ok", worker(yaml_path, lambda part: queue.put(("partial", part)))))
    except Exception as exc:  # reported in the table
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_one(folder: Path, timeout: float) -> dict:
    """One problem in a forked child (the parent has imported everything already, so a
    child starts in milliseconds) with an empty kernel cache, stopped at `timeout`
    seconds; then, if it finished, a second child with the cache the first one filled."""
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="petab-coverage-")
    try:
        row = _run_child(folder, timeout, cache, again=False)
        if row.get("status") == "ok":
            again = _run_child(folder, timeout, cache, again=True)
            row.update({k: again[k] for k in ("llh_new_s", "first_new_s") if k in again})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return row


def _run_child(folder: Path, timeout: float, cache: str, again: bool) -> dict:
    import multiprocessing as mp

    name = folder.name
    row = {"problem": name, "reference": REFERENCE.get(name)}
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(str(problem_yaml(folder)), queue, cache, again))
    t = time.perf_counter()
    load_before = os.getloadavg()[0]
    proc.start()
    proc.join(timeout)
    timed_out = proc.is_alive()
    if timed_out:
        proc.terminate()
        proc.join()
    row["wall_s"] = time.perf_counter() - t
    # 1-minute load averages around the run: what the timings were measured under
    row["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    kind, payload = "none", None
    while True:  # the last message wins (partial results, then the final one)
        try:
            kind, payload = queue.get(timeout=1)
        except Exception:
            break
        if kind != "partial":
            break
        row.update(payload)
    if timed_out:
        row.update(status="timeout", message=f"stopped after the {timeout:.0f} s cap")
        return row
    if kind in ("none", "partial"):
        row.update(status="failed", message=f"the child exited with code {proc.exitcode}")
        return row
    if kind == "ok":
        row.update(payload)
        row["status"] = "ok"
    else:
        message = payload.splitlines()[0][:400] if payload else "?"
        row.update(status="refused" if "not supported" in payload else "failed", message=message)
    return row


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def _load_line(rows: list[dict]) -> str:
    """What the timings were measured under: the 1-minute load averages recorded around
    each problem's run (rows from older runs have none)."""
    loads = [x for r in rows for x in r.get("load", [])]
    if not loads:
        return "Timings are wall-clock, taken while other work shared the cores (upper bounds)."
    return (
        f"Timings are wall-clock; the 1-minute load average around the runs was "
        f"{min(loads):.1f}–{max(loads):.1f} (median {sorted(loads)[len(loads) // 2]:.1f})."
    )


def render(rows: list[dict]) -> str:
    lines = [
        "# PEtab benchmark collection: coverage of `ff.petab`",
        "",
        "Regenerated by `python benchmarks/petab_coverage.py` (see its docstring). Each problem",
        "runs in its own process with a time cap. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores. {_load_line(rows)}",
        "Problems marked *not run* were not reached by the run;",
        "llh values measured separately for some of them are in docs/petab.md.",
        "",
        "Columns: P parameters, C conditions (experiments), N data; llh at the nominal",
        "parameters and its difference from AMICI's benchmark reference; *FIM first* is the",
        "process's first call after the import, `problem.evaluate()`: llh, gradient and Fisher",
        "matrix from one forward-sensitivity solve per condition, compilation included (each",
        "problem starts with an empty kernel cache), *warm* a second one (forward-mode",
        "sensitivities through diffrax Kvaerno5 with Newton stages, rtol = atol = 1e-10, along",
        "the parameters that reach the dynamics); *llh first / warm* the first",
        "`log_likelihood()` after it (its own kernel, without sensitivities) and a warm one;",
        "*new process* the llh and the first `evaluate()` (which runs first) of a second",
        "process, which loads the kernels the first one stored in the disk cache without",
        "tracing them (a script's second run); *AMICI t_fwd* AMICI's own time budget for a",
        "forward-sensitivity run (llh and gradient); rank is the numerical rank of the Fisher",
        "matrix on the problem's scale (eigenvalues > 1e-10·λmax), σ>1 the number of eigen-",
        "directions with σ above one unit (a decade for log10 parameters), and the weakest",
        "direction the eigenvector of the smallest eigenvalue. Rows without a *new process*",
        "figure are from an earlier run of the script (before it emptied the kernel cache per",
        "problem and timed a second process); rows marked † are from the run before",
        "`evaluate()` (3 Dec 2026, afternoon), which timed the llh first and then the Fisher",
        "matrix alone as *FIM first*, and the llh first in the second process too.",
        "",
        "| problem | status | P | C | N | llh | reference | Δ | llh first / warm (s) "
        "| FIM first (s) | FIM warm (s) | new process: llh / FIM (s) | AMICI t_fwd (s) | rank "
        "| σ>1 | weakest direction |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    n_ok = n_ref = n_match = 0
    for r in sorted(rows, key=lambda r: r["problem"]):
        ref = r.get("reference")
        llh = r.get("llh")
        delta = None if (ref is None or llh is None) else llh - ref
        if r.get("status") == "ok":
            n_ok += 1
        if ref is not None:
            n_ref += 1
            n_match += int(delta is not None and abs(delta) < 1e-3)
        status = r.get("status", "?")
        if status != "ok":
            status = f"{status}: {r.get('message', '')}".replace("|", "/")
        rank = r.get("rank")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["problem"],
                    status,
                    str(r.get("n_params", "")),
                    str(r.get("n_conditions", "")),
                    str(r.get("n_data", "")),
                    _fmt(llh, ".6f"),
                    _fmt(ref, ".6f") if ref is not None else "none found",
                    _fmt(delta, ".1e"),
                    ""
                    if r.get("llh_first_s") is None
                    else f"{r['llh_first_s']:.1f} / {r['llh_warm_s']:.2f}",
                    _fmt(r.get("first_s"), ".1f"),
                    _fmt(r.get("warm_s"), ".2f"),
                    ""
                    if r.get("first_new_s") is None
                    else f"{r['llh_new_s']:.2f} / {r['first_new_s']:.2f}"
                    + ("" if "llh_evaluate_diff" in r else " †"),
                    _fmt(AMICI_T_FWD.get(r["problem"]), "g"),
                    "" if rank is None else f"{rank}/{r.get('n_params')}",
                    str(r.get("n_sloppy", "")),
                    r.get("weakest", ""),
                ]
            )
            + " |"
        )
    lines += [
        "",
        f"{n_ok} of {len(rows)} problems import and evaluate; {n_match} of the {n_ref} with a "
        "reference match it to 1e-3.",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root",
        default=os.environ.get("PETAB_COLLECTION", str(REPO.parent / "shared" / "petab")),
    )
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker)), flush=True)
        return
    if not args.render:
        import fisherforecast.petab  # noqa: F401 - imported once, before the children fork
    rows = {}
    if RESULTS.exists():
        for ln in RESULTS.read_text().splitlines():
            r = json.loads(ln)
            rows[r["problem"]] = r
    if not args.render:
        root = Path(args.root)
        # smallest first, so that a capped run covers as many problems as it can
        folders = sorted(
            (p for p in root.iterdir() if p.is_dir()),
            key=lambda p: sum(f.stat().st_size for f in p.iterdir() if f.is_file()),
        )
        if args.only:
            folders = [p for p in folders if p.name in args.only]
        RESULTS.parent.mkdir(exist_ok=True)
        for folder in folders:
            r = run_one(folder, args.timeout)
            rows[r["problem"]] = r
            print(json.dumps(r), flush=True)
            RESULTS.write_text("".join(json.dumps(v) + "\n" for v in rows.values()))
    root = Path(args.root)
    if root.is_dir():  # list the problems this run did not reach
        for folder in root.iterdir():
            if folder.is_dir() and folder.name not in rows:
                rows[folder.name] = {
                    "problem": folder.name,
                    "reference": REFERENCE.get(folder.name),
                    "status": "not run",
                    "message": "not reached by the last run (time)",
                }
    PAGE.write_text(render(list(rows.values())))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
