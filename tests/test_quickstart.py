"""The flagship example (`make demo`) runs and its forecast obeys the mathematics."""

import math

import numpy as np
from helpers import load_example

import fisherforecast as ff


def test_quickstart_forecast_and_outputs(tmp_path, capsys):
    module = load_example("quickstart")
    F = module.main(tmp_path)
    assert (tmp_path / "quickstart.png").stat().st_size > 0
    G = ff.load(tmp_path / "quickstart.h5")
    assert G.matrix.tobytes() == F.matrix.tobytes() and G.names == F.names
    # Combining can only shrink errors: compare with each experiment's own Fisher matrix.
    fid = F.fiducial
    lab = ff.Experiment(module.decay, ff.Gaussian(sigma=0.05), design=np.linspace(0, 10, 50))
    alone = ff.fisher(lab, fid, params=["A", "tau", "B"]).sigma()
    both = F.sigma()
    for n in alone:
        assert both[n] <= alone[n] * (1 + 1e-12)
    # The lab alone: σ from JᵀJ/σ² computed by hand.
    t = np.linspace(0, 10, 50)
    e = np.exp(-t / fid["tau"])
    J = np.stack([e, fid["A"] * t / fid["tau"] ** 2 * e, np.ones_like(t)], axis=1)
    cov = np.linalg.inv(J.T @ J / 0.05**2)
    for i, n in enumerate(["A", "tau", "B"]):
        assert math.isclose(alone[n], math.sqrt(cov[i, i]), rel_tol=1e-10)
    assert "combined" in capsys.readouterr().out
