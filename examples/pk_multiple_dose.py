"""Oral multiple-dose PK/PD study: identifiability, profiles, symmetry check and a D-optimal
sampling and dosing design (the tutorial docs/tutorial_pk.md).

Three oral doses (0, 12 and 24 h) go into the gut; first-order absorption ``ka`` into a
central compartment of volume ``V``, elimination ``ke``; an effect compartment (``ke0``)
drives an Emax effect. Concentration and effect are measured at the sampling times, with a
combined additive + proportional error computed from the model mean (one solve).

Run ``python examples/pk_multiple_dose.py [--fast]``; prints every step and its wall time.
"""

from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np

import fisherforecast as ff

FIDUCIAL = {"ka": 1.2, "ke": 0.15, "V": 30.0, "ke0": 0.5, "Emax": 100.0, "EC50": 2.0}
DOSE_TIMES = np.array([0.0, 12.0, 24.0])
TIMES = np.array([1.0, 2.0, 4.0, 8.0, 13.0, 16.0, 25.0, 30.0, 36.0, 48.0])


def rhs(t, y, p):
    """Gut, central amount, effect-site concentration."""
    gut, central, ce = y[0], y[1], y[2]
    c = central / p["V"]
    return jnp.stack([-p["ka"] * gut, p["ka"] * gut - p["ke"] * central, p["ke0"] * (c - ce)])


def observe(y, p):
    """Concentration and Emax effect."""
    return jnp.stack([y[1] / p["V"], p["Emax"] * y[2] / (p["EC50"] + y[2])])


def build():
    model = ff.ode_model(
        rhs,
        jnp.zeros(3),
        observe,
        doses=lambda p, d: (jnp.asarray(DOSE_TIMES), d["amounts"]),  # into the gut
    )
    noise = ff.Gaussian(sigma=lambda mean, p: 0.05 + 0.1 * jnp.abs(mean))
    design = {"times": TIMES, "amounts": np.array([100.0, 100.0, 100.0])}
    return ff.Experiment(model, noise, design=design, name="oral multiple dose")


def main(fast: bool = False) -> dict:
    exp = build()
    timings = {}
    t = time.perf_counter()
    # The Fisher-path check (which parameters need a profile) runs in the full mode only.
    report = ff.identifiability(
        exp, FIDUCIAL, n_random=1 if fast else 3, check_nonlinearity=not fast
    )
    timings["identifiability"] = time.perf_counter() - t
    print(report.summary())

    t = time.perf_counter()
    names = ["EC50"] if fast else list(report.profile_recommended) or ["EC50", "ke0"]
    profiles = ff.profile_likelihood(exp, FIDUCIAL, names, n_grid=9 if fast else 21)
    timings["profiles"] = time.perf_counter() - t
    print(profiles.summary())

    t = time.perf_counter()
    sym = ff.symmetry_search(exp, FIDUCIAL, n_starts=4 if fast else 16, max_time=120)
    timings["symmetry"] = time.perf_counter() - t
    print(sym.summary())

    t = time.perf_counter()
    res = ff.optimize_design(
        exp,
        FIDUCIAL,
        bounds={"times": (0.25, 48.0), "amounts": (50.0, 200.0)},
        n_starts=2 if fast else 16,
        max_steps=30 if fast else 300,
        n_polish=0 if fast else 3,  # the scipy polish runs hundreds of ODE solves
    )
    timings["design"] = time.perf_counter() - t
    print(res.summary())
    for step, seconds in timings.items():
        print(f"{step:>16}: {seconds:6.1f} s")
    return {
        "report": report,
        "profiles": profiles,
        "symmetry": sym,
        "design": res,
        "timings": timings,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fast", action="store_true", help="fewer starts and grid points")
    args = parser.parse_args()
    main(fast=args.fast)
