"""Cosmic strings: forecast (Gμ, α, p) from a PTA, GW interferometers, cusp bursts and the CMB.

After Kuroyanagi, Miyamoto, Sekiguchi, Takahashi & Silk (2013, PRD 87, 023522,
arXiv:1210.2829). The model is ``fisherforecast.models.cosmic_strings``:

* **SGWB** from the loop network in the one-scale model (loops born with size α t, number
  density ∝ 1/p, cusp harmonics ∝ k^(-4/3), VOS loop production in ΛCDM), integrated with a
  fixed Gauss-Legendre quadrature in JAX so the derivatives in Gμ, α, p are exact. Seen by a
  PTA (50 pulsars, 100 ns, 15 yr; the error bar keeps the signal's own variance), by LISA
  (4 yr) and by a co-located aLIGO pair (1 yr), with the zoo's toy sensitivities
  (``models/sgwb.py``).
* **Bursts** from cusps on the same loops (``cs.burst_experiment``): Poisson counts in six
  amplitude bins from the SNR-5 threshold up to 1000 times it, for LISA (4 yr, beaming at
  3.5 mHz) and one Advanced-LIGO detector (1 yr, 47 Hz); about 1.5e4 and 7 bursts.
* **CMB**: a B-mode template C_ℓ ∝ (Gμ)² p^(-1/2) for a CMB-S4-like survey (1 μK-arcmin,
  1.4', f_sky = 0.4, lensing B-modes as 5 μK-arcmin white noise).

The fiducial (Gμ, α, p) = (5e-8, 1e-9, 0.5) puts the matter-era peak of the background in
the PTA band at Ω ≈ 1e-8 (about the level of the NANOGrav 15-yr signal), the
radiation-era plateau Ω ≈ 3e-10 in the LISA and ground bands, and the string B-modes
at a few per cent of the lensing B-modes near ℓ ~ 600 (CMB-S4 measures their amplitude
to ≈ 7 %, a ≈ 15σ detection).
Parameters are varied as log10 values.

**What each probe measures.** With ε = α/ΓGμ ≈ 4e-4 (small loops that die within a Hubble
time) the plateau is ≈ (3/2)·const·Gμ/p: LISA and the ground pair measure Gμ/p only; LISA
also sees the faint bend of the spectrum towards the PTA band, which gives it a weak handle
on α. The PTA sees the peak, whose frequency ≈ 2/(α t₀) fixes α, and its height ∝ Gμ/p.
The CMB measures (Gμ)² p^(-1/2) and nothing about α. The burst counts of small loops
depend on α p (the number of loops ∝ 1/(α p ΓGμ) times the cusp rate and beaming ∝ Gμ/A)
and on the loudest burst amplitude ∝ Gμ α^(2/3), leaving δln(Gμ, α, p) ∝ (2/3, -1, 1)
nearly free. So every probe alone leaves one combination (nearly) free, and each breaks the
others' degeneracies because the combinations differ: together they measure all three, and
the bursts tighten α by a factor ≈ 6.

**Compared with the paper.** Kuroyanagi et al. use the VOS model with a p-dependent
network, the CMBACT string spectra (TT, EE, TE, BB), their own burst detection criteria
and a different loop normalisation; we use a one-scale loop model, a fixed B-mode
template, idealised burst counting (every beamed burst above an SNR threshold) and toy
detector noise, so the numbers differ. The qualitative conclusions agree: each probe alone
is degenerate, the GW background measures a combination of Gμ and p (the amplitude
∝ Gμ/p in the small-loop regime) and α through the spectral shape, the bursts measure
other combinations, the CMB measures Gμ with a weaker p dependence, and combining them
breaks the degeneracies. Unlike their space interferometers (DECIGO/BBO, which see the
spectral bend), our LISA background alone does not measure all three parameters.

Run ``python examples/cosmic_strings.py [--fast] [--out DIR]``. Writes
``strings_corner.png``, ``strings_spectrum.png`` and the combined Fisher matrix
``strings_fisher.h5`` (overwritten on purpose at each run).
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import numpy as np

import fisherforecast as ff
from fisherforecast.models import cosmic_strings as cs
from fisherforecast.models import sgwb

NAMES = ("Gmu", "alpha", "p")
LOG_NAMES = tuple(f"log10_{n}" for n in NAMES)
LABELS = {
    "log10_Gmu": r"\log_{10} G\mu",
    "log10_alpha": r"\log_{10}\alpha",
    "log10_p": r"\log_{10} p",
}
PROBES = ("PTA", "LISA+ground", "bursts", "CMB-S4")
PLOT_PRIOR_DEX = 1.0  # for drawing the single probes only (see plot_corner)


def experiments(fast: bool):
    quad = {"n_modes": 5, "n_panels": 8} if fast else {}
    return {
        "PTA": cs.sgwb_experiment("PTA", **quad),
        "LISA": cs.sgwb_experiment("LISA", **quad),
        "ground": cs.sgwb_experiment("ground", **quad),
        "LISA bursts": cs.burst_experiment("LISA"),
        "ground bursts": cs.burst_experiment("ground"),
        "CMB-S4": cs.cmb_experiment("CMB-S4", n_bins=20 if fast else 40),
    }


def to_log10(F: ff.FisherMatrix) -> ff.FisherMatrix:
    """x = log10 θ: F_x = D F D with D = diag(θ ln 10) (exact for this linear map)."""
    fid = F.fiducial
    assert fid is not None
    d = np.array([fid[n] * math.log(10.0) for n in F.names])
    return ff.FisherMatrix(
        F.matrix * np.outer(d, d),
        [f"log10_{n}" for n in F.names],
        fiducial={f"log10_{n}": math.log10(fid[n]) for n in F.names},
        labels=LABELS,
        name=F.name,
    )


def forecast(fast: bool) -> dict:
    fid = dict(cs.EXAMPLE_FIDUCIAL)
    exps = experiments(fast)
    natural = {k: ff.fisher(e, fid) for k, e in exps.items()}
    natural["LISA+ground"] = natural["LISA"] + natural["ground"]
    natural["bursts"] = natural["LISA bursts"] + natural["ground bursts"]
    probes = {k: natural[k] for k in PROBES}
    log10 = {k: to_log10(F) for k, F in probes.items()}
    contributions = ff.contributions(log10)  # pyright: ignore[reportCallIssue]
    combined = sum_of(log10)
    # Identifiability in ln-parameters (the report's unit-free scale) for each probe.
    cases = {**probes, "all": sum_of(probes)}
    reports = {k: ff.identifiability(F) for k, F in cases.items()}  # pyright: ignore[reportCallIssue]
    return {
        "fiducial": fid,
        "experiments": exps,
        "fisher": natural,
        "log10": {**log10, "combined": combined},
        "contributions": contributions,
        "identifiability": reports,
    }


def sum_of(fishers: dict) -> ff.FisherMatrix:
    total = None
    for F in fishers.values():
        total = F if total is None else total + F
    assert total is not None
    return total


def describe(report) -> list[str]:
    """The directions the identifiability report calls unconstrained or sloppy."""
    lines = list(report.null_descriptions) + list(report.sloppy_descriptions)
    return lines or ["none: every parameter is identifiable"]


def print_results(res):
    c = res["contributions"]
    print(
        "Cosmic strings, fiducial " + ", ".join(f"{k} = {v:g}" for k, v in res["fiducial"].items())
    )
    print(c.summary())
    print()
    for label, rep in res["identifiability"].items():
        print(f"{label}: rank {rep.rank} of 3, log-FIM condition number {rep.condition_number:.3g}")
        for line in describe(rep):
            print(f"  - {line}")
    print()


def plot_corner(res, path):
    """Each probe with a weak 1-dex Gaussian prior on every log10 parameter (a singular
    matrix cannot be drawn; the prior turns its degenerate direction into a long ellipse
    bounded by the prior), and the combination without any prior."""
    import matplotlib.pyplot as plt

    prior = {n: PLOT_PRIOR_DEX for n in LOG_NAMES}
    shown = {
        f"{k} (+1 dex prior)": F.with_prior(prior)
        for k, F in res["log10"].items()
        if k != "combined"
    }
    shown["combined (no prior)"] = res["log10"]["combined"]
    fid = res["log10"]["combined"].fiducial
    ranges = {n: (fid[n] - 2.0, fid[n] + 2.0) for n in LOG_NAMES}
    fig = ff.plot.corner(
        shown, names=list(LOG_NAMES), colors=["C0", "C1", "C3", "C2", "k"], ranges=ranges
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_spectrum(res, path, fast: bool):
    import jax
    import matplotlib.pyplot as plt

    f = np.geomspace(1e-10, 1e3, 120 if fast else 400)
    with jax.enable_x64(True):
        spectrum = jax.jit(functools.partial(cs.omega_gw, n_modes=5 if fast else 30))
        omega = np.asarray(spectrum(res["fiducial"], f))
        plateau = float(cs.omega_plateau(res["fiducial"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.loglog(f, np.where(omega > 0, omega, np.nan), "k", label="strings (one-scale model)")
    ax.axhline(plateau, color="k", ls=":", lw=1, label="radiation-era plateau (analytic)")
    for det, color in (("PTA", "C0"), ("LISA", "C1"), ("ground", "C2")):
        exp = res["experiments"][det]
        ax.loglog(
            exp.design,
            sgwb.omega_noise(det, exp.design),
            color=color,
            lw=1,
            label=f"{det} noise Ω_n (per bin, not integrated)",
        )
    ax.set_xlabel("f [Hz]")
    ax.set_ylabel(r"$\Omega_{\rm gw}(f)$")
    ax.set_ylim(1e-16, 1e-4)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out_dir, fast: bool = False) -> dict:
    """Forecasts per probe and combined, identifiability, plots and the HDF5 file.

    **Returns** the dict of :func:`forecast` plus ``"files"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = forecast(fast)
    print_results(res)
    files = {
        "corner": out_dir / "strings_corner.png",
        "spectrum": out_dir / "strings_spectrum.png",
        "fisher": out_dir / "strings_fisher.h5",
    }
    plot_corner(res, files["corner"])
    plot_spectrum(res, files["spectrum"], fast)
    res["log10"]["combined"].save(
        files["fisher"], overwrite=True, metadata={"example": "cosmic_strings"}
    )
    for path in files.values():
        print(f"wrote {path}")
    return {**res, "files": files}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--fast", action="store_true", help="fewer harmonics and bins (tests)")
    args = parser.parse_args()
    main(args.out, fast=args.fast)
