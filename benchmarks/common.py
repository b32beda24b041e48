"""Shared pieces of the benchmark scripts: machine info, timers and a TaylorF2-like model.

The model is written once against an array namespace ``xp`` so that the JAX version (for
fisherforecast), the numpy version (for finite differences and numdifftools) and the
complex-step reference derivative all evaluate the same formula.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

MSUN_S = 4.925491025543576e-06  # G M_sun / c³ in seconds
EULER_GAMMA = 0.5772156649015329

#: The 9 parameters of the TaylorF2-like model and a binary-neutron-star-like fiducial.
NAMES = ("lnA", "lnMc", "eta", "tc", "phic", "beta", "sigma", "dphi6", "lam")
FIDUCIAL = {
    "lnA": 0.0,
    "lnMc": np.log(1.2),
    "eta": 0.24,
    "tc": 0.0,
    "phic": 0.0,
    "beta": 0.1,
    "sigma": 0.05,
    "dphi6": 0.0,
    "lam": 400.0,
}


# ----- machine -----------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> str:
    import jax

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    lines = [
        f"CPU        : {cpu_model()} ({os.cpu_count()} logical cores, {cores} usable)",
        f"Python     : {platform.python_version()}  numpy {np.__version__}",
        f"JAX        : {jax.__version__}  backend {jax.default_backend()}",
        f"devices    : {jax.devices()}",
        f"platform   : {platform.platform()}",
        "note       : wall-clock timings on a shared machine are noisy; ratios are measured "
        "side by side in one run",
    ]
    return "\n".join(lines)


# ----- timers ------------------------------------------------------------------------------
def run_fresh_child(code: str, root: Path, *args: str, python: str = sys.executable) -> dict:
    """Run `code` (``python -c``) in a fresh process on the checkout `root`, with an empty
    kernel cache, and return the JSON of its last ``RESULT {...}`` line, with the load
    average before and after under ``"load"``."""
    with tempfile.TemporaryDirectory(prefix="ff-kernels-") as cache:
        env = dict(os.environ, FISHERFORECAST_CACHE_DIR=cache, MPLBACKEND="Agg")
        env["PYTHONPATH"] = str(root)
        load0 = os.getloadavg()
        proc = subprocess.run(
            [python, "-c", code, str(root), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise RuntimeError(f"{root} ({' '.join(args)}) failed:\n{tail}")
    out = json.loads(lines[-1][len("RESULT ") :])
    out["load"] = [load0, os.getloadavg()]
    return out


def block(x):
    """Wait for JAX results (a pytree) to be ready; no-op for numpy values."""
    import jax

    jax.tree_util.tree_map(
        lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x
    )
    return x


def timeit(fn, *, min_time=0.5, repeats=5, max_number=10_000):
    """Seconds per call of ``fn()``: the best and the median of `repeats` timed loops.

    Each loop runs ``number`` calls, chosen so that a loop takes about ``min_time / repeats``.
    Call ``fn`` once before (warm-up, compilation) - this function does not.
    """
    t0 = time.perf_counter()
    block(fn())
    once = max(time.perf_counter() - t0, 1e-7)
    number = int(min(max_number, max(1, (min_time / repeats) / once)))
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            out = fn()
        block(out)
        per_call.append((time.perf_counter() - t0) / number)
    return min(per_call), statistics.median(per_call)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.2f} s "


# ----- the TaylorF2-like model -------------------------------------------------------------
def psd_aligo_like(f):
    """Analytic fit of the Advanced LIGO design noise (Ajith 2011), in 1/Hz."""
    x = f / 245.4
    return 1e-48 * (
        0.0152 * x**-4
        + 0.2935 * x ** (9 / 4)
        + 2.7951 * x ** (3 / 2)
        - 6.5080 * x ** (3 / 4)
        + 17.7622
    )


def amplitude_and_phase(xp, p, f):
    """TaylorF2-like ``(|h|, ψ)``: Newtonian amplitude, 3.5PN point-particle phase with
    spin-orbit (β) and spin-spin (σ) terms, a fractional 3PN deviation (dphi6) and a 5PN
    tidal term (Λ). Phase coefficients from Arun et al. 2005 / Buonanno et al. 2009."""
    eta = p["eta"]
    mtot = xp.exp(p["lnMc"]) * MSUN_S * eta ** (-3 / 5)
    v = (np.pi * mtot * f) ** (1 / 3)
    v_lso = 1 / np.sqrt(6.0)
    pi2 = np.pi**2
    phi2 = 3715 / 756 + 55 / 9 * eta
    phi3 = -16 * np.pi + 4 * p["beta"]
    phi4 = 15293365 / 508032 + 27145 / 504 * eta + 3085 / 72 * eta**2 - 10 * p["sigma"]
    phi5 = np.pi * (38645 / 756 - 65 / 9 * eta) * (1 + 3 * xp.log(v / v_lso))
    phi6 = (
        11583231236531 / 4694215680
        - 640 / 3 * pi2
        - 6848 / 21 * EULER_GAMMA
        - 6848 / 21 * xp.log(4 * v)
        + (-15737765635 / 3048192 + 2255 / 12 * pi2) * eta
        + 76055 / 1728 * eta**2
        - 127825 / 1296 * eta**3
    ) * (1 + p["dphi6"])
    phi7 = np.pi * (77096675 / 254016 + 378515 / 1512 * eta - 74045 / 756 * eta**2)
    phi10 = -39 / 2 * p["lam"]
    series = (
        1
        + phi2 * v**2
        + phi3 * v**3
        + phi4 * v**4
        + phi5 * v**5
        + phi6 * v**6
        + phi7 * v**7
        + phi10 * v**10
    )
    psi = 2 * np.pi * f * p["tc"] - p["phic"] - np.pi / 4 + 3 / (128 * eta * v**5) * series
    amp = xp.exp(p["lnA"]) * f ** (-7 / 6)
    return amp, psi


def taylorf2_jax(p, f):
    import jax.numpy as jnp

    amp, psi = amplitude_and_phase(jnp, p, f)
    return amp * jnp.exp(-1j * psi)


def taylorf2_numpy(p, f):
    amp, psi = amplitude_and_phase(np, p, f)
    return amp * np.exp(-1j * psi)


def frequency_grid(n_bins=4096, f_low=20.0, f_high=1024.0):
    f = np.linspace(f_low, f_high, n_bins)
    return f, f[1] - f[0]


def snr_scaled_fiducial(f, df, snr=25.0, fiducial=FIDUCIAL):
    """The fiducial with ln A set so that the optimal SNR is `snr` (numpy)."""
    h = taylorf2_numpy(fiducial, f)
    rho = np.sqrt(4 * df * np.sum(np.abs(h) ** 2 / psd_aligo_like(f)))
    return {**fiducial, "lnA": fiducial["lnA"] + np.log(snr / rho)}


def experiment(n_bins=4096):
    import fisherforecast as ff

    f, df = frequency_grid(n_bins)
    return (
        ff.Experiment(
            taylorf2_jax, ff.PSD(psd_aligo_like(f), df), design=f, name=f"taylorf2-{n_bins}"
        ),
        f,
        df,
    )


def population(n, f, df, seed=0):
    """`n` fiducials around the BNS-like one: masses, spins and SNRs vary."""
    rng = np.random.default_rng(seed)
    base = snr_scaled_fiducial(f, df)
    out = {k: np.full(n, v, dtype=np.float64) for k, v in base.items()}
    out["lnMc"] = np.log(rng.uniform(1.0, 1.6, n))
    out["eta"] = rng.uniform(0.2, 0.249, n)
    out["beta"] = rng.uniform(-0.5, 0.5, n)
    out["sigma"] = rng.uniform(0.0, 0.1, n)
    out["lam"] = rng.uniform(100.0, 800.0, n)
    out["lnA"] = base["lnA"] + rng.uniform(-1.0, 1.0, n)
    return out
