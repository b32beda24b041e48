"""Designing a warfarin-like population PK study (issue 18).

One-compartment oral absorption, ``y = D·KA/(V·(KA − CL/V))·(e^(−CL/V·t) − e^(−KA·t))``,
exponential random effects on CL, V and KA, proportional residual error. The script

1. evaluates the published PopED design (32 individuals, 8 samples) with the reduced FO
   Fisher matrix and prints the RSE% next to PopED's published values;
2. optimises the sampling times of two groups of 16 individuals (4 samples each, within
   0.25-120 h) for the D-criterion;
3. asks how many individuals per group the optimal design needs for RSE(CL) ≤ 10 %;
4. checks the predicted standard errors by simulation and estimation: trials simulated
   from the nonlinear model, each fitted by Laplace marginal likelihood, the empirical
   spread against the FO (reduced and full) and Monte-Carlo Fisher predictions.

Run:  python examples/warfarin_design.py [--fast] [--trials N]
"""

from __future__ import annotations

import argparse

import numpy as np

import fisherforecast as ff
from fisherforecast.models import biology as bio

FIDUCIAL = bio.WARFARIN_FIDUCIAL
POPED_TIMES = bio.WARFARIN_TIMES
POPED_RSE = {  # PopED's evaluation (reduced FO FIM), Nyberg et al. 2015
    "CL": 4.7383,
    "V": 2.7562,
    "KA": 13.926,
    "omega2_CL": 25.627,
    "omega2_V": 30.344,
    "omega2_KA": 25.777,
    "sigma2_prop": 11.171,
}


def group(times, size, dose=70.0, fim="reduced"):
    """One group of `size` individuals sampled at `times` (the zoo's warfarin model)."""
    return bio.warfarin_population_experiment(times, group_size=size, dose=dose, fim=fim)


def main(fast=False, n_trials=None, seed=0):
    results = {}
    # 1. The published design.
    rse = ff.fisher(group(POPED_TIMES, 32), FIDUCIAL).rse()
    print("1. PopED warfarin design, reduced FO FIM (RSE %):")
    for k, v in rse.items():
        print(f"   {k:<12} {v:8.4f}   PopED {POPED_RSE[k]:8.4f}")
    results["rse_poped_design"] = rse

    # 2. Two groups of 16, four samples each: D-optimal times.
    g1, g2 = group([0.5, 2.0, 24.0, 120.0], 16), group([1.0, 6.0, 36.0, 72.0], 16)
    res = ff.optimize_design(
        [g1, g2],
        FIDUCIAL,
        bounds=[{"t": (0.25, 120.0), "dose": (70.0, 70.0)}] * 2,
        fixed=[{"t": False, "dose": True}] * 2,
        constraints={"min_spacing": 0.25},
        n_starts=4 if fast else 24,
        max_steps=60 if fast else 300,
        n_polish=0 if fast else 3,
        seed=seed,
    )
    best = res.experiment
    print("\n2. D-optimal sampling times (h), two groups of 16:")
    for i, d in enumerate(res.design):
        print(f"   group {i + 1}: {np.round(d['t'], 2).tolist()}")
    print(f"   log det F: {res.initial_value:.3f} (initial) -> {res.criterion_value:.3f}")
    rse_opt = res.fisher.rse()
    print("   RSE %: " + ", ".join(f"{k} {v:.2f}" for k, v in rse_opt.items()))
    results.update(design=res.design, design_result=res, rse_optimal=rse_opt)

    # 3. How many individuals (per group) for RSE(CL) <= 10 %?
    per_individual = [g.with_group_size(1) for g in best]
    need = ff.required_samples(per_individual, FIDUCIAL, {"CL": 0.10}, relative=True)
    n = need.per_parameter["CL"]
    print(f"\n3. RSE(CL) <= 10 % needs {n} individuals per group ({2 * n} in all).")
    results["required_per_group"] = n

    # 4. Simulation and estimation on the PopED design.
    n_trials = n_trials or (4 if fast else 200)
    check = ff.population_check(group(POPED_TIMES, 32), FIDUCIAL, n_trials=n_trials, seed=seed)
    print(f"\n4. Predicted against empirical SE ({n_trials} simulated trials):")
    print(check.summary())
    results["check"] = check
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few starts and trials")
    parser.add_argument("--trials", type=int, default=None, help="simulated trials")
    args = parser.parse_args()
    main(fast=args.fast, n_trials=args.trials)
