"""A published systems-biology problem: import it, check identifiability, repair it.

Boehm et al. (2014, J. Proteome Res.) measured STAT5 phosphorylation after Epo stimulation;
the problem ships in PEtab format (Benchmark-Models-PEtab, BSD-3; a copy lives in
tests/data/petab). The walk-through:

1. ``ff.petab.load`` imports the SBML model and tables; the log-likelihood at the nominal
   parameters matches AMICI's reference (−138.221997);
2. the identifiability report (parameters on their linear scale, so the analysis reads
   relative errors in ``ln θ``) names the weakly identified parameters and directions;
3. ``ff.repair_identifiability`` ranks new single measurements (each observable at new
   times, and nuclear STAT5 dimers measured directly, which the study did not) by how much
   they add along the weakest directions, and finds the smallest set that makes every
   parameter identifiable, if such a set exists among them.

Figure (in ``--out``): ``boehm_identifiability.png``, the eigenvalue spectrum of the log-FIM
and the composition of each eigen-direction (``report.plot()``).

Run ``python examples/petab_identifiability.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import fisherforecast as ff

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "tests/data/petab/Boehm_JProteomeRes2014/Boehm_JProteomeRes2014.yaml"
REFERENCE_LLH = -138.22199693517703  # AMICI benchmark tests
NUCLEAR = ("nucpApA", "nucpApB", "nucpBpB")  # nuclear dimers (model states)


def main(out: Path, fast: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # 1. Import. scale="linear": parameters on their linear scale (the report works in ln θ).
    problem = ff.petab.load(PROBLEM, scale="linear")
    llh = problem.log_likelihood()
    print(problem)
    print(f"  features: {', '.join(problem.features)}")
    print(f"  llh at the nominal parameters: {llh:.6f} (AMICI reference {REFERENCE_LLH:.6f})")

    # 2. Identifiability of all conditions together.
    experiments = list(problem.experiments)
    # (--fast skips the check of the Fisher verdicts along the Fisher path: one more
    #  compilation of the ODE model.)
    report = ff.identifiability(
        experiments, problem.nominal, n_random=1 if fast else 3, check_nonlinearity=not fast
    )
    print("\n" + report.summary())
    figure = save_figure(report.plot(), out / "boehm_identifiability.png")
    weak = [n for n, ok in report.practically_identifiable.items() if ok is False]

    # 3. Which new measurement repairs the weakest direction? Candidates: each measured
    #    observable at new times (single measurements with that observable's noise), and
    #    the three nuclear STAT5 dimers, which the study did not measure, measured directly
    #    (10 % relative error plus 0.01): k_imp_homo is the homodimers' import rate.
    times = np.array([1.0, 20.0, 60.0, 180.0]) if fast else np.linspace(2.5, 240.0, 12)
    nuclear = {f"nuclear_{s}": (s, f"0.1 * {s} + 0.01") for s in NUCLEAR}
    measured = problem.candidate_experiments(times)
    candidates = measured + problem.candidate_experiments(times, new_observables=nuclear)
    repair = ff.repair_identifiability(experiments, problem.nominal, candidates, max_add=3)
    print("\n" + repair.summary())
    best = [candidates[i].name for i in repair.added]
    print(f"\nmeasurements that repair it: {best or 'none among these candidates'}")
    alone = ff.repair_identifiability(experiments, problem.nominal, measured, max_add=3)
    print(
        "with the measured observables alone: "
        + ("repaired" if alone.success else "not repaired (the new quantity is needed)")
    )
    # The repair is judged by rank and collinearity (no two directions confused). The
    # information on k_imp_homo itself hardly moves: at its nominal value the homodimers'
    # import takes 1/k ~ 1e-5 min, far below any sampling interval, so only a lower bound
    # on it can be learned. Its Cramér-Rao bound in ln k, before and after:
    sigma_ln = {}
    for label, fm in (("before", alone.fisher_after), ("after", repair.fisher_after)):
        theta = np.array([problem.nominal[n] for n in fm.names])
        F_ln = fm.matrix * np.outer(theta, theta)  # the information on ln θ
        i = list(fm.names).index("k_imp_homo")
        sigma_ln[label] = float(np.sqrt(np.linalg.inv(F_ln)[i, i]))
        print(f"  sigma(ln k_imp_homo) {label}: {sigma_ln[label]:.3g}")
    seconds = time.perf_counter() - start
    print(f"(ran in {seconds:.1f} s)")
    return {
        "llh": llh,
        "weak": weak,
        "rank": report.rank,
        "report": report,
        "repair": repair,
        "repair_measured_only": alone,
        "sigma_ln_k_imp_homo": sigma_ln,
        "labels": [c.name for c in candidates],
        "seconds": seconds,
        "files": {"identifiability": figure},
    }


def save_figure(fig, path: Path) -> Path:
    """Write beside the target and move into place (no half-written file)."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fast",
        action="store_true",
        help="fewer candidates, one random point, no Fisher-path check",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "output")
    args = parser.parse_args()
    main(args.out, fast=args.fast)
