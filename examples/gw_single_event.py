"""GW single event: parameter errors at a given SNR, and a detector network against one detector.

**Physics.** A compact-binary inspiral is observed in the frequency domain as the restricted
TaylorF2 chirp ``h(f) = A f^{-7/6} e^{-iΨ(f)}`` (3.5PN phase; ``fisherforecast.models.gw``),
with Gaussian detector noise of one-sided PSD ``S_n`` (``ff.PSD``). The Fisher matrix is
``F_ij = 4 Re ∫ ∂_i h* ∂_j h / S_n df`` and the optimal SNR is ``ρ² = F_{ln dL, ln dL}``
(``ln dL`` enters only the amplitude).

Two forecasts:

1. **Errors at a given SNR.** A GW170817-like binary neutron star (detector-frame chirp mass
   1.1975 M☉, η = 0.2484), optimally oriented and located for one Advanced-LIGO-design
   detector. The source is moved to the distance that gives ρ = 10, 20, 50, 100, and the
   Fisher matrix is recomputed there. Every σ scales as 1/ρ (the Fisher matrix is ∝ A²).
   The chirp mass is measured to ~10⁻⁵ because it sets the phase evolution over thousands of
   cycles. Freeing the aligned spins χ₁, χ₂ degrades η about 80-fold and 𝓜 16-fold: the
   1.5PN spin-orbit term mimics the η terms (Cutler & Flanagan 1994; Poisson & Will 1995).
   The spins themselves are then unconstrained at ρ = 10 (σ(χ) ≈ 14), so the table also
   shows the result with a Gaussian prior σ(χ) = 1. The distance is measured to
   ``σ(ln dL) ≈ 1/ρ``.
2. **Network against one detector.** The same source at 40 Mpc at the position of NGC 4993,
   seen by H1, L1 and V1 (each with the aLIGO design PSD, the zoo's default; V1 is an
   aLIGO-sensitivity detector at the Virgo site), nine parameters
   ``(𝓜, η, ln dL, t_c, φ_c, α, δ, ψ, cos ι)``. One L-shaped detector measures only an
   amplitude, a phase and an arrival time, so it cannot separate distance, inclination,
   polarisation and sky position: those σ are infinite (``ff.contributions`` reports ``inf``
   cleanly); only the phase-evolution parameters 𝓜, η are finite. Two detectors still leave
   a sky ring; three triangulate the source. The table is ``ff.contributions`` for the three
   detectors plus the H1+L1 pair, and the sky area.

Run ``python examples/gw_single_event.py [--fast] [--out DIR]``. Writes
``gw_sigma_vs_snr.png``, ``gw_network_corner.png``, ``gw_network_sigma.png`` and the network
Fisher matrix ``gw_network_fisher.h5`` (overwritten on purpose at each run).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import fisherforecast as ff
from fisherforecast.models import gw

SNRS = (10.0, 20.0, 50.0, 100.0)
NETWORK_COLUMNS = ("H1", "L1", "V1", "H1+L1", "H1+V1", "H1+L1+V1")
SPIN_PRIOR_SIGMA = 1.0  # Gaussian prior on each aligned spin (cf. Poisson & Will 1995)
INTRINSIC = ("ln_Mc", "eta", "ln_dL", "tc", "phic")
LABELS = {
    "Mc": r"\mathcal{M}\,[M_\odot]",
    "ln_Mc": r"\ln\mathcal{M}",
    "eta": r"\eta",
    "ln_dL": r"\ln d_L",
    "tc": r"t_c\,[{\rm s}]",
    "phic": r"\phi_c",
    "ra": r"\alpha\,[{\rm rad}]",
    "dec": r"\delta\,[{\rm rad}]",
    "psi": r"\psi",
    "cos_iota": r"\cos\iota",
    "chi1": r"\chi_1",
    "chi2": r"\chi_2",
}


def snr_of(F: ff.FisherMatrix) -> float:
    """Optimal SNR from the identity F_{ln dL, ln dL} = ρ² (ln dL is a pure amplitude)."""
    i = F.names.index("ln_dL")
    return math.sqrt(F.matrix[i, i])


def errors_at_snr(snrs, n_freq, spins):
    """σ of the optimally oriented BNS placed at each target SNR (distance rescaled)."""
    fid = {
        "ln_Mc": math.log(gw.GW170817_LIKE["Mc"]),
        "eta": gw.GW170817_LIKE["eta"],
        "ln_dL": math.log(40.0),
        "tc": 0.0,
        "phic": 0.0,
    }
    params = list(INTRINSIC)
    if spins:
        fid.update(chi1=0.0, chi2=0.0)
        params += ["chi1", "chi2"]
    exp = gw.experiment(
        "optimal",
        fiducial={"Mc": gw.GW170817_LIKE["Mc"], "eta": fid["eta"]},
        n_freq=n_freq,
        name="aLIGO, optimal orientation",
    )
    snr_ref = snr_of(ff.fisher(exp, fid, params=params))
    rows = []
    for target in snrs:
        # SNR ∝ 1/dL: move the source to the distance that gives the target SNR exactly.
        d_l = 40.0 * snr_ref / target
        point = dict(fid, ln_dL=math.log(d_l))
        F = ff.fisher(exp, point, params=params)
        row = {
            "snr_target": target,
            "snr": snr_of(F),
            "dL_Mpc": d_l,
            "fisher": F,
            "sigma": F.sigma(),
        }
        if spins:
            prior = {"chi1": SPIN_PRIOR_SIGMA, "chi2": SPIN_PRIOR_SIGMA}
            row["sigma_spin_prior"] = F.with_prior(prior).sigma()
        rows.append(row)
    return rows


def sky_area_deg2(F: ff.FisherMatrix, dec: float, prob: float = 0.9) -> float:
    """Sky area containing `prob` (Cutler 1998 / Barack & Cutler 2004 convention):
    ΔΩ = -2π ln(1 - p) |cos δ| sqrt(σ_α² σ_δ² - C_αδ²)."""
    cov = F.marginalize(["ra", "dec"]).covariance()
    det = cov[0, 0] * cov[1, 1] - cov[0, 1] ** 2
    area_sr = -2.0 * math.pi * math.log1p(-prob) * abs(math.cos(dec)) * math.sqrt(det)
    return area_sr * (180.0 / math.pi) ** 2


def sigma_or_inf(F: ff.FisherMatrix) -> dict:
    """Marginal σ, with ``inf`` for what a singular matrix leaves unconstrained."""
    return ff.contributions({"F": F}).alone["F"]


def network_forecast(n_freq):
    fid = dict(gw.GW170817_LIKE)
    detectors = gw.network(["H1", "L1", "V1"], fiducial=fid, n_freq=n_freq)
    contrib = ff.contributions(detectors, fid)  # each alone (inf if unconstrained) + all
    singles = {e.name: ff.fisher(e, fid) for e in detectors}
    # ff.fisher on a list adds the matrices (independent noise), aligned by name.
    pairs = {"H1+L1": singles["H1"] + singles["L1"], "H1+V1": singles["H1"] + singles["V1"]}
    F_hlv = ff.fisher(detectors, fid)
    snrs = {name: snr_of(F) for name, F in {**singles, **pairs}.items()}
    snrs["H1+L1+V1"] = snr_of(F_hlv)
    sigma = {name: contrib.alone[name] for name in singles}
    sigma.update({name: sigma_or_inf(F) for name, F in pairs.items()})
    sigma["H1+L1+V1"] = contrib.combined
    area = {}
    for name, F in {**pairs, "H1+L1+V1": F_hlv}.items():
        finite = all(math.isfinite(sigma[name][n]) for n in F.names)
        area[name] = sky_area_deg2(F, fid["dec"]) if finite else math.inf
    # With an electromagnetic counterpart the sky position is known: fix (ra, dec).
    sky_known = {
        name: F.fix(["ra", "dec"])
        for name, F in {"H1+V1": pairs["H1+V1"], "H1+L1+V1": F_hlv}.items()
    }
    return {
        "fiducial": fid,
        "contributions": contrib,
        "sigma": sigma,
        "snr": snrs,
        "sky_area_90_deg2": area,
        "sky_known": sky_known,
        "fisher": {**singles, **pairs, "H1+L1+V1": F_hlv},
    }


def print_snr_table(rows, rows_spin):
    print("1) Optimally oriented GW170817-like BNS, aLIGO design PSD, 10 Hz - f_ISCO")
    print(f"{'':47}| aligned spins free        | + prior σ(χ)={SPIN_PRIOR_SIGMA:g}")
    head = (
        f"{'SNR':>5} {'dL Mpc':>6} {'σ(lnMc)':>9} {'σ(η)/η':>8} {'σ(lndL)':>7} "
        f"{'σ(tc)ms':>7} | {'σ(lnMc)':>8} {'σ(η)/η':>7} {'σ(χ1)':>6} | {'σ(lnMc)':>8} "
        f"{'σ(η)/η':>7} {'σ(χ1)':>6}"
    )
    print(head)
    print("-" * len(head))
    for r, rs in zip(rows, rows_spin, strict=True):
        s, ss, sp = r["sigma"], rs["sigma"], rs["sigma_spin_prior"]
        eta = r["fisher"].fiducial["eta"]
        print(
            f"{r['snr']:5.1f} {r['dL_Mpc']:6.1f} {s['ln_Mc']:9.2e} {s['eta'] / eta:8.2e} "
            f"{s['ln_dL']:7.4f} {1e3 * s['tc']:7.4f} | {ss['ln_Mc']:8.2e} "
            f"{ss['eta'] / eta:7.3f} {ss['chi1']:6.2f} | {sp['ln_Mc']:8.2e} "
            f"{sp['eta'] / eta:7.3f} {sp['chi1']:6.2f}"
        )
    print(
        "σ × SNR is constant down each column without priors (Fisher ∝ A²), and "
        "σ(ln dL) ≈ 1/SNR.\nWith free spins σ(χ) ≫ 1 at low SNR: the Fisher bound is only "
        "meaningful with the physical prior.\n"
    )


def print_network_table(net):
    cols = NETWORK_COLUMNS
    print("2) GW170817-like BNS at 40 Mpc (NGC 4993), marginal 1σ errors, 9 parameters")
    head = f"{'parameter':<9} " + " ".join(f"{c:>10}" for c in cols) + f" {'gain':>8}"
    print(head)
    print("-" * len(head))
    for n in net["contributions"].names:
        vals = " ".join(f"{net['sigma'][c][n]:>10.3g}" for c in cols)
        print(f"{n:<9} {vals} {net['contributions'].improvement[n]:>8.3g}")
    print(f"{'SNR':<9} " + " ".join(f"{net['snr'][c]:>10.1f}" for c in cols))
    print(
        f"{'ΔΩ90 deg²':<9} "
        + " ".join(f"{net['sky_area_90_deg2'].get(c, math.inf):>10.3g}" for c in cols)
    )
    print(
        "inf: not constrained by that configuration (singular Fisher matrix); gain = best "
        "single-detector σ / network σ."
    )
    print("With the sky position known (EM counterpart; ra, dec fixed):")
    for name, F in net["sky_known"].items():
        sig = sigma_or_inf(F)
        print(
            f"  {name:<9} σ(ln dL) = {sig['ln_dL']:.3g}, σ(cos ι) = {sig['cos_iota']:.3g}, "
            f"σ(ψ) = {sig['psi']:.3g}, σ(t_c) = {sig['tc']:.3g} s"
        )
    print()


def plot_sigma_vs_snr(rows, rows_spin, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    snr = np.array([r["snr"] for r in rows])
    eta = rows[0]["fisher"].fiducial["eta"]
    series = [
        ("ln_Mc", 1.0, r"$\sigma(\ln\mathcal{M})$", "C0"),
        ("eta", 1.0 / eta, r"$\sigma(\eta)/\eta$", "C1"),
        ("ln_dL", 1.0, r"$\sigma(\ln d_L)$", "C2"),
        ("tc", 1.0, r"$\sigma(t_c)$ [s]", "C3"),
    ]
    for name, scale, label, color in series:
        ax.loglog(snr, [scale * r["sigma"][name] for r in rows], "o-", color=color, label=label)
        if name in ("ln_Mc", "eta"):
            ax.loglog(
                snr,
                [scale * r["sigma"][name] for r in rows_spin],
                "s--",
                color=color,
                label=label + r", $\chi_{1,2}$ free",
                mfc="none",
            )
    # σ(ln dL) = 1/ρ exactly, so draw the 1/ρ guide offset from it to keep both visible.
    ax.loglog(snr, 0.25 / snr, ":", color="0.4", lw=1.2, label=r"$0.25/\rho$")
    from matplotlib.ticker import NullFormatter

    ax.set_xticks([10, 20, 50, 100])
    ax.set_xticklabels(["10", "20", "50", "100"])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"optimal SNR $\rho$")
    ax.set_ylabel(r"marginal $1\sigma$ error")
    ax.set_title("GW170817-like BNS, one aLIGO detector (optimal orientation)", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_network_sigma(net, path):
    """σ per parameter for each configuration, relative to the best (∞ marked)."""
    import matplotlib.pyplot as plt

    cols = NETWORK_COLUMNS
    names = list(net["contributions"].names)
    fig, ax = plt.subplots(figsize=(9.0, 3.8))
    width = 0.8 / len(cols)
    x = np.arange(len(names))
    top = 10.0
    for k, c in enumerate(cols):
        ratio = np.array([net["sigma"][c][n] / net["sigma"]["H1+L1+V1"][n] for n in names])
        pos = x - 0.4 + width * (k + 0.5)
        finite = np.isfinite(ratio)
        ax.bar(pos[finite], ratio[finite], width=width, color=f"C{k}", label=c)
        # Unconstrained (σ = ∞): a faint hatched bar to the top of the axis.
        ax.bar(
            pos[~finite],
            np.full((~finite).sum(), top),
            width=width,
            color=f"C{k}",
            alpha=0.25,
            hatch="//",
            edgecolor=f"C{k}",
            lw=0,
        )
    ax.set_yscale("log")
    ax.set_ylim(0.9, top)
    ax.set_xticks(x)
    ax.set_xticklabels([f"${LABELS[n]}$" for n in names])
    ax.set_ylabel(r"$\sigma\,/\,\sigma_{\rm H1+L1+V1}$")
    ax.set_title(
        "GW170817-like BNS at 40 Mpc: marginal σ relative to the 3-detector network\n"
        "(hatched to the top: σ = ∞, not constrained by that configuration)",
        fontsize=9,
    )
    ax.axhline(1.0, color="0.3", lw=0.8)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def labelled(F: ff.FisherMatrix, name=None) -> ff.FisherMatrix:
    """The same matrix with LaTeX axis labels for the plots."""
    labels = {n: LABELS[n] for n in F.names if n in LABELS}
    return ff.FisherMatrix(F.matrix, F.names, F.fiducial, labels, name=name or F.name)


def plot_network_corner(net, path):
    import matplotlib.pyplot as plt

    names = ["ln_dL", "cos_iota", "ra", "dec"]
    fishers = {"H1+L1+V1": labelled(net["fisher"]["H1+L1+V1"])}
    fishers.update({f"{k}, sky known": labelled(F) for k, F in net["sky_known"].items()})
    fig = ff.plot.corner(fishers, names=names, legend=list(fishers))
    # The upper-right triangle of a corner plot is empty: put the explanation there.
    fig.text(
        0.55,
        0.85,
        "GW170817-like BNS at 40 Mpc, aLIGO-design PSDs.\n"
        "Single detectors, H1+L1 and H1+V1 leave all four\n"
        "parameters unconstrained (singular Fisher matrix).\n"
        "A known sky position (EM counterpart) lets H1+V1\n"
        "measure distance and inclination. The thin\n"
        r"$\ln d_L$-$\cos\iota$ ellipse is the distance-inclination"
        "\n"
        "degeneracy of a nearly face-on source.",
        fontsize=9,
        va="top",
        ha="left",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out_dir, fast: bool = False) -> dict:
    """Run both forecasts, print the tables, write the plots and the HDF5 file.

    **Returns** a dict with ``"snr_rows"``, ``"snr_rows_spin"`` (list of dicts with the
    target and achieved SNR, distance, FisherMatrix and σ), ``"network"`` (σ per
    configuration, SNRs, sky areas, the ``ff.contributions`` result) and ``"files"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_freq = 800 if fast else 4000
    snrs = (10.0, 50.0) if fast else SNRS

    rows = errors_at_snr(snrs, n_freq, spins=False)
    rows_spin = errors_at_snr(snrs, n_freq, spins=True)
    print_snr_table(rows, rows_spin)
    net = network_forecast(n_freq)
    print_network_table(net)

    files = {
        "sigma_vs_snr": out_dir / "gw_sigma_vs_snr.png",
        "network_sigma": out_dir / "gw_network_sigma.png",
        "network_corner": out_dir / "gw_network_corner.png",
        "fisher": out_dir / "gw_network_fisher.h5",
    }
    plot_sigma_vs_snr(rows, rows_spin, files["sigma_vs_snr"])
    plot_network_sigma(net, files["network_sigma"])
    plot_network_corner(net, files["network_corner"])
    F = net["fisher"]["H1+L1+V1"]
    F = labelled(F, name="H1+L1+V1 GW170817-like")
    # Each run regenerates the example output, so replacing last run's file is intended.
    F.save(
        files["fisher"],
        overwrite=True,
        metadata={"example": "gw_single_event", "n_freq": n_freq, "psd": "aLIGO ZDHP"},
    )
    for path in files.values():
        print(f"wrote {path}")
    return {"snr_rows": rows, "snr_rows_spin": rows_spin, "network": net, "files": files}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--fast", action="store_true", help="coarser grids (for tests)")
    args = parser.parse_args()
    main(args.out, fast=args.fast)
