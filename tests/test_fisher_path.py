"""The identifiability report flags parameters whose Fisher verdict is unreliable.

References: for a model linear in its parameters the likelihood is exactly quadratic, so
Δ(−2 ln L) along the Fisher path at ±2σ is exactly 4; for Michaelis–Menten the exact Δ
along that path is computed here in closed form from the model.
"""

import numpy as np
import pytest

import fisherforecast as ff

X = np.array([0.25, 0.5, 1.0, 2.0])


def test_linear_model_is_never_flagged():
    exp = ff.Experiment(
        lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=0.3), design=np.linspace(0.5, 2, 6)
    )
    rep = ff.identifiability(exp, {"a": 1.0, "b": 2.0})
    assert rep.profile_recommended == {}
    for lo, hi in rep.fisher_path.values():
        assert lo == pytest.approx(1.0, rel=1e-9) and hi == pytest.approx(1.0, rel=1e-9)
    assert "Fisher verdict unreliable" not in rep.summary()


def test_skewed_michaelis_menten_constant_is_flagged_and_a_profile_recommended():
    sigma = 0.07
    exp = ff.Experiment(lambda p, x: p["V"] * x / (p["K"] + x), ff.Gaussian(sigma=sigma), design=X)
    fid = {"V": 1.0, "K": 1.0}
    rep = ff.identifiability(exp, fid)
    assert "K" in rep.profile_recommended
    assert "≤ 0" in rep.profile_recommended["K"]  # K̂ − 2σ_K < 0 (σ_K = 0.54)
    # The +2σ side, independently: Δ along the Fisher path in closed form.
    F = rep.fisher.matrix
    cov = np.linalg.inv(F)
    names = list(rep.fisher.names)
    d = cov[:, names.index("K")] / np.sqrt(cov[names.index("K"), names.index("K")])
    theta = np.array([fid[n] for n in names]) + 2 * d
    v, k = theta[names.index("V")], theta[names.index("K")]
    exact = np.sum((v * X / (k + X) - X / (1 + X)) ** 2) / sigma**2
    assert rep.fisher_path["K"][1] == pytest.approx(exact / 4, rel=1e-9)
    summary = rep.summary()
    assert "Fisher verdict unreliable" in summary and "ff.profile_likelihood" in summary
    assert rep.to_dict()["profile_recommended"]["K"] == rep.profile_recommended["K"]


def test_path_reuses_the_fisher_kernel_and_agrees_with_the_vmapped_deviance(monkeypatch):
    """Up to REUSE_MAX parameters the 2P path points go through the report's own compiled
    Fisher kernel (the model is traced for the Fisher kernel only, not once more for the
    path); above it, a vmapped deviance kernel. Both give the same Δ, and the closed form
    (the Michaelis-Menten Δ of the previous test) holds on either path."""
    from fisherforecast._identify import nonlinearity

    traces = []

    def model(p, x):
        traces.append(1)  # runs only while JAX traces the model
        return p["V"] * x / (p["K"] + x)

    exp = ff.Experiment(model, ff.Gaussian(sigma=0.07), design=X)
    fid = {"V": 1.0, "K": 1.0}
    reused = ff.identifiability(exp, fid, n_random=1).fisher_path
    n_reused = len(traces)
    monkeypatch.setattr(nonlinearity, "REUSE_MAX", 0)
    traces.clear()
    vmapped = ff.identifiability(exp, fid, n_random=1).fisher_path
    # the report traced the model once, for its Fisher kernel, and the path reused it; the
    # vmapped path traces the model again for its own kernel
    assert n_reused == 1 and len(traces) >= 1
    for name in fid:
        np.testing.assert_allclose(reused[name], vmapped[name], rtol=1e-10)
