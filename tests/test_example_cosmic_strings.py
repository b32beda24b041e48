"""examples/cosmic_strings.py in fast mode: the physics of the forecast, not its own numbers.

The checks are statements that follow from the model's scalings, written out here: the GW
background's amplitude ∝ Gμ/p leaves ln Gμ + ln p free for the interferometers; the CMB
template ∝ (Gμ)² p^(-1/2) leaves 0.25 ln Gμ + ln p free and says nothing about α; the cusp-burst
counts of small loops depend on α p and Gμ α^(2/3) only, leaving (2/3, -1, 1) in ln(Gμ, α, p)
nearly free; adding probes never loses information and together they measure all parameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import load_example

import fisherforecast as ff

# Three SGWB experiments compile their Fisher kernels (~1-2 min on the shared 2-core machine).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("cosmic_strings")
    res = load_example("cosmic_strings").main(out, fast=True)
    for path in res["files"].values():
        assert Path(path).parent == out and Path(path).stat().st_size > 1000, path
    return res


def unit(direction, names):
    v = np.array([direction.get(n, 0.0) for n in names])
    return v / v[np.argmax(np.abs(v))]


def test_combination_beats_every_probe_and_measures_everything(result):
    c = result["contributions"]
    for name in c.names:
        assert math.isfinite(c.combined[name])
        for label, sigma in c.alone.items():
            assert c.combined[name] <= sigma[name] * (1 + 1e-9), (label, name)
    # CMB-S4 knows nothing about α; the interferometers cannot separate Gμ from p.
    assert math.isinf(c.alone["CMB-S4"]["log10_alpha"])
    assert math.isinf(c.alone["LISA+ground"]["log10_Gmu"])
    assert math.isinf(c.alone["LISA+ground"]["log10_p"])
    # The combination breaks the Gμ–p degeneracy by orders of magnitude.
    assert c.improvement["log10_Gmu"] > 100 and c.improvement["log10_p"] > 100
    assert result["identifiability"]["all"].rank == 3


def test_degenerate_directions_follow_the_scalings(result):
    reps = result["identifiability"]
    names = ("Gmu", "alpha", "p")
    # GW background ∝ Gμ/p: null direction δln Gμ = δln p.
    (gw,) = reps["LISA+ground"].null_directions
    np.testing.assert_allclose(unit(gw, names), [1.0, 0.0, 1.0], atol=1e-3)
    # CMB ∝ Gμ² p^(-1/2) and no α: α alone, and 0.25 δln Gμ + δln p.
    cmb = [unit(d, names) for d in reps["CMB-S4"].null_directions]
    assert len(cmb) == 2
    assert any(np.allclose(v, [0.0, 1.0, 0.0], atol=1e-6) for v in cmb)
    assert any(np.allclose(v, [0.25, 0.0, 1.0], atol=1e-6) for v in cmb)
    # Bursts: counts ∝ 1/(α p) × a function of Gμ α^(2/3) (small loops).
    assert reps["bursts"].condition_number > 1e9
    weak = unit(reps["bursts"].weakest_direction, names)
    np.testing.assert_allclose(weak / weak[1], [-2 / 3, 1.0, -1.0], atol=1e-2)
    # The PTA also sees the peak, which fixes α, but Gμ and p only as Gμ/p.
    assert reps["PTA"].condition_number > 1e7
    weak = unit(reps["PTA"].weakest_direction, names)
    np.testing.assert_allclose(weak, [1.0, 0.0, 1.0], atol=1e-2)


def test_log10_fisher_is_the_change_of_variables(result):
    """log10 θ: F_x = D F D with D = θ ln 10; compare one element with a fresh ff.fisher in
    log10 parameters through the model's log10_ keys."""
    exp = result["experiments"]["CMB-S4"]
    fid = {f"log10_{k}": math.log10(v) for k, v in result["fiducial"].items()}
    direct = ff.fisher(exp, fid)
    np.testing.assert_allclose(
        direct.matrix,
        result["log10"]["CMB-S4"].matrix,
        rtol=1e-9,
        atol=1e-12 * np.max(direct.matrix),
    )


def test_hdf5_round_trip(result):
    F = ff.load(result["files"]["fisher"])
    np.testing.assert_array_equal(F.matrix, result["log10"]["combined"].matrix)
