"""Quickstart: forecast the errors of a decay experiment, alone and with a counting experiment.

A lab measures a decaying signal A·exp(−t/τ) + B with Gaussian noise; a second detector
counts decays (Poisson) with the same lifetime. We forecast the Cramér–Rao bounds of each
and of their combination, save the combined Fisher matrix to HDF5 and plot the 2-D joint
contours.

Run with ``make demo`` or ``python examples/quickstart.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import fisherforecast as ff


def decay(p, t):
    return p["A"] * jnp.exp(-t / p["tau"]) + p["B"]


def counts(p, t):
    # Expected counts per bin: rate × exposure, same lifetime τ, its own background rate.
    return p["rate"] * jnp.exp(-t / p["tau"]) + p["bkg"]


def main(out: Path) -> ff.FisherMatrix:
    out.mkdir(parents=True, exist_ok=True)
    fiducial = {"A": 1.0, "tau": 2.0, "B": 0.1, "rate": 50.0, "bkg": 5.0}
    labels = {"A": "A", "tau": r"\tau", "B": "B", "rate": "R", "bkg": "b"}

    lab = ff.Experiment(decay, ff.Gaussian(sigma=0.05), design=np.linspace(0, 10, 50), name="lab")
    counter = ff.Experiment(counts, ff.Poisson(), design=np.linspace(0, 8, 40), name="counter")

    F_lab = ff.fisher(lab, fiducial, params=["A", "tau", "B"])
    F_counter = ff.fisher(counter, fiducial, params=["tau", "rate", "bkg"])
    F_both = ff.fisher([lab, counter], fiducial)

    print(F_both.summary())
    print()
    print(ff.contributions({"lab": F_lab, "counter": F_counter}).summary())

    F_both = ff.FisherMatrix(
        F_both.matrix, F_both.names, F_both.fiducial, labels, name="lab+counter"
    )
    path = out / "quickstart.h5"
    # Replacing the previous run's file is intended here, so we say so explicitly.
    F_both.save(path, overwrite=True, metadata={"example": "quickstart"})
    print(f"\nsaved {path}; reloaded σ(τ) = {ff.load(path).sigma()['tau']:.5f}")

    png = out / "quickstart.png"
    fig = ff.plot.corner(
        [F_lab, F_counter, F_both],
        names=["A", "tau", "rate"],
        legend=["lab", "counter", "combined"],
    )
    fig.savefig(png, dpi=110)
    print(f"saved {png}")
    return F_both


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    main(parser.parse_args().out)
