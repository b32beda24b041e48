"""Identifiability walk-through: an oral pharmacokinetic study that cannot see its volume.

A drug is given by mouth and its plasma concentration is sampled 10 times over 24 h
(theophylline, one-compartment model with first-order absorption, solved as an ODE). We
want the absorption rate ka, the elimination rate ke, the volume V and the bioavailability
F. The walk-through:

1. the identifiability report finds the model non-identifiable (rank 3 of 4);
2. it names the combination: only F/V is identifiable;
3. a profile likelihood confirms it: the profile of V is flat;
4. two fixes: a prior acting only on the null direction (``ff.nullspace_prior``), or a new
   measurement: an intravenous bolus (F = 1 by definition) pins V, and the profile closes.

Run ``python examples/identifiability_walkthrough.py [--fast] [--out DIR]``; plots go to
``examples/output/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import numpy as np

import fisherforecast as ff
from fisherforecast.models import biology as bio

#: Theophylline (Pinheiro & Bates 2000) with an illustrative oral bioavailability of 0.8.
FIDUCIAL = {**bio.THEOPHYLLINE_FIDUCIAL, "F": 0.8}
VARIED = ["ka", "ke", "V", "F"]
TIMES = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])


def main(out: Path, fast: bool = False) -> dict:
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    n_grid, n_random = (9, 1) if fast else (21, 3)
    start = time.perf_counter()

    oral = ff.Experiment(
        bio.pk_oral_ode(rtol=1e-8, atol=1e-10), ff.Gaussian(sigma=0.2), design=TIMES, name="oral"
    )
    # The new measurement: an IV bolus in the same subjects, 6 samples (F does not enter).
    iv = ff.Experiment(
        bio.pk_iv_bolus,
        ff.Gaussian(sigma=0.2),
        design=np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0]),
        name="iv",
    )

    # 1-2. The report: structural rank, the null combination, per-parameter verdicts.
    print("=" * 78, "\n1-2. Oral data only: the report, and the combination it names\n" + "=" * 78)
    # (--fast: no check of the Fisher verdicts along the Fisher path, one compilation less)
    check = not fast
    report = ff.identifiability(
        oral, FIDUCIAL, params=VARIED, n_random=n_random, check_nonlinearity=check
    )
    print(report.summary())
    fig = report.plot()
    fig.suptitle("Oral study: log-FIM spectrum and eigenvector composition")
    fig.tight_layout()
    fig.savefig(out / "identifiability_spectrum.png", dpi=110)
    plt.close(fig)

    # 3. The profile of V: re-fit ka, ke and F at each V. It is flat: F compensates.
    print("\n" + "=" * 78, "\n3. Profile likelihood of V (oral only)\n" + "=" * 78)
    prof_oral = ff.profile_likelihood(oral, FIDUCIAL, "V", params=VARIED, n_grid=n_grid)
    print(prof_oral.summary())
    ratio = prof_oral.nuisance["F"] / prof_oral.grid
    print(
        f"  re-fitted F/V along the profile: {ratio.min():.6g} … {ratio.max():.6g} "
        f"(fiducial {FIDUCIAL['F'] / FIDUCIAL['V']:.6g})"
    )

    # 4a. A prior on the null direction only: σ(ka), σ(ke) are untouched, V and F become
    # bounded by the prior width 1/sqrt(λ) along ln F + ln V (here 10 %).
    print("\n" + "=" * 78, "\n4a. Fix with a prior on the null direction only\n" + "=" * 78)
    F_oral = report.fisher  # the Fisher matrix the report analysed (same as ff.fisher)
    prior = ff.nullspace_prior(report, lam=100.0)
    regular = F_oral + prior
    sig = regular.sigma()
    print("σ with the null-space prior:", {n: f"{v:.4g}" for n, v in sig.items()})
    print(
        "σ(ka), σ(ke) with F fixed  :",
        {n: f"{v:.4g}" for n, v in F_oral.fix(["F"]).sigma().items() if n in ("ka", "ke")},
    )

    # 4b. A new measurement: oral + IV. Full rank; the profile of V closes.
    print("\n" + "=" * 78, "\n4b. Fix with a new measurement: add an IV bolus\n" + "=" * 78)
    joint = ff.identifiability(
        [oral, iv], FIDUCIAL, params=VARIED, n_random=n_random, check_nonlinearity=check
    )
    print(joint.summary())
    prof_joint = ff.profile_likelihood([oral, iv], FIDUCIAL, "V", params=VARIED, n_grid=n_grid)
    print(prof_joint.summary())

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    prof_oral.plot(ax=axes[0])
    axes[0].set_title("oral only: flat profile (only F/V identifiable)", fontsize="medium")
    prof_joint.plot(ax=axes[1])
    axes[1].set_title("oral + IV bolus: V identifiable", fontsize="medium")
    fig.tight_layout()
    fig.savefig(out / "identifiability_profiles.png", dpi=110)
    plt.close(fig)
    print(
        f"\nsaved {out / 'identifiability_spectrum.png'} and "
        f"{out / 'identifiability_profiles.png'} ({time.perf_counter() - start:.1f} s)"
    )
    return {
        "report": report,
        "profile_oral": prof_oral,
        "joint": joint,
        "profile_joint": prof_joint,
        "regularised": regular,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--fast", action="store_true", help="fewer grid and random points")
    args = parser.parse_args()
    main(args.out, fast=args.fast)
