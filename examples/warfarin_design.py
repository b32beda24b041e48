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

Figures (in examples/output/ or `out_dir`): ``warfarin_design.png``, the concentration
curves of simulated individuals with the published and the D-optimal sampling times, and
the RSE% of each design; ``warfarin_check.png``, the predicted RSE% of each Fisher
approximation against the empirical one from the simulated trials.

Run:  python examples/warfarin_design.py [--fast] [--trials N]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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


def main(fast=False, n_trials=None, seed=0, out_dir=None):
    out_dir = Path(out_dir) if out_dir is not None else Path(__file__).parent / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
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
        n_starts=2 if fast else 24,
        max_steps=30 if fast else 300,
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

    results["figures"] = [
        plot_designs(res, rse, rse_opt, out_dir / "warfarin_design.png", seed),
        plot_check(check, out_dir / "warfarin_check.png"),
    ]
    print("\nwrote " + ", ".join(str(f) for f in results["figures"]))
    return results


def _save(fig, path):
    """Write beside the target and move into place (no half-written file on interruption)."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_designs(res, rse_poped, rse_opt, path, seed):
    """Left: 40 simulated individuals (η drawn from Ω) and the sampling times of each
    design; right: the RSE% of the published and the D-optimal design."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 4.6))
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1), hspace=0.05)
    ax, strip, ax2 = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), None
    ax2 = fig.add_subplot(grid[:, 1])
    t = np.geomspace(0.1, 130.0, 300)
    rng = np.random.default_rng(seed)
    for i in range(40):
        eta = {k: rng.normal(0.0, np.sqrt(FIDUCIAL[f"omega2_{k}"])) for k in ("CL", "V", "KA")}
        individual = {k: FIDUCIAL[k] * np.exp(eta[k]) for k in eta}
        label = "simulated individuals" if i == 0 else None
        ax.plot(t, np.asarray(bio.warfarin(individual, t)), color="0.8", lw=0.7, label=label)
    ax.plot(t, np.asarray(bio.warfarin(FIDUCIAL, t)), color="k", lw=1.5, label="typical")
    ax.set_xscale("log")
    ax.tick_params(labelbottom=False)
    ax.set_ylabel("concentration [mg/L]")
    ax.set_title("individuals and sampling times")
    ax.legend(fontsize=8, loc="upper left")
    rows = [("PopED, 32 × 8", POPED_TIMES, "C0")] + [
        (f"group {i + 1}, 16 × 4", d["t"], f"C{i + 1}") for i, d in enumerate(res.design)
    ]
    for i, (_, times, colour) in enumerate(rows):
        strip.plot(times, np.full(len(times), -i), "|", ms=12, mew=2, color=colour)
    strip.set_yticks([-i for i in range(len(rows))], [r[0] for r in rows], fontsize=8)
    strip.set_ylim(-len(rows) + 0.4, 0.6)
    strip.set_xscale("log")
    strip.set_xlim(ax.get_xlim())
    strip.set_xlabel("time after a 70 mg dose [h]")

    names = list(rse_poped)
    x = np.arange(len(names))
    bars = [
        ("PopED design (published)", [POPED_RSE[n] for n in names], "0.6"),
        ("PopED design (ff)", [rse_poped[n] for n in names], "C0"),
        ("D-optimal, 2 × 16 × 4 (half the samples)", [rse_opt[n] for n in names], "C3"),
    ]
    width = 0.8 / len(bars)
    for i, (label, values, colour) in enumerate(bars):
        ax2.bar(x + (i - 1) * width, values, width, label=label, color=colour)
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.set_ylabel("RSE [%] (reduced FO Fisher matrix)")
    ax2.set_title("predicted precision")
    ax2.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.2, wspace=0.25)
    return _save(fig, path)


def plot_check(check, path):
    """Predicted RSE% of each Fisher approximation against the empirical RSE% (with its
    standard error) of the simulated and re-estimated trials."""
    import matplotlib.pyplot as plt

    names = list(check.names)
    truth = np.array([abs(check.truth[n]) for n in names])
    emp = 100 * np.array([check.empirical_se[n] for n in names]) / truth
    err = 100 * np.array([check.empirical_se_error[n] for n in names]) / truth
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(len(names))
    ax.errorbar(x, emp, yerr=err, fmt="ko", capsize=3, label="empirical (simulated trials)")
    for i, (label, se) in enumerate(check.predicted_se.items()):
        pred = 100 * np.array([se[n] for n in names]) / truth
        ax.plot(x + 0.12 * (i + 1), pred, "D", ms=5, color=f"C{i}", label=f"Fisher {label}")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("RSE [%]")
    n_ok = check.n_trials - check.n_failed
    ax.set_title(f"PopED design: predicted against empirical RSE ({n_ok} trials)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few starts and trials")
    parser.add_argument("--trials", type=int, default=None, help="simulated trials")
    parser.add_argument("--out", default=None, help="folder for the figures")
    args = parser.parse_args()
    main(fast=args.fast, n_trials=args.trials, out_dir=args.out)
