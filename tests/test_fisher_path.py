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
    # The +2σ side, independently: the profile Δ in closed form. V enters linearly, so at
    # K = K̂ + 2σ_K the best V is a least-squares ratio, and the Gauss-Newton
    # re-optimisation along the Fisher path must reach exactly that minimum.
    k = fid["K"] + 2 * rep.fisher.sigma()["K"]
    g, y = X / (k + X), X / (1 + X)
    v_best = np.sum(y * g) / np.sum(g * g)
    profile = np.sum((v_best * g - y) ** 2) / sigma**2
    assert rep.fisher_path["K"][1] == pytest.approx(profile / 4, rel=1e-9)
    summary = rep.summary()
    assert "Fisher verdict unreliable" in summary and "ff.profile_likelihood" in summary
    assert rep.to_dict()["profile_recommended"]["K"] == rep.profile_recommended["K"]


def _straight_path_delta(fid, sigma, F, names, s):
    """Δ at s σ along the straight Fisher path of K, Michaelis-Menten, in closed form."""
    cov = np.linalg.inv(F)
    d = cov[:, names.index("K")] / np.sqrt(cov[names.index("K"), names.index("K")])
    theta = np.array([fid[n] for n in names]) + s * d
    v, k = theta[names.index("V")], theta[names.index("K")]
    return np.sum((v * X / (k + X) - X / (1 + X)) ** 2) / sigma**2


def test_path_reuses_the_fisher_kernel_above_it_a_vmapped_straight_path(monkeypatch):
    """Up to REUSE_MAX parameters the path points go through the report's own compiled
    Fisher kernel (the model is traced for the Fisher kernel only, not once more for the
    path) and are re-optimised; above it, a vmapped kernel evaluates the straight path. The
    re-optimised Δ is never above the straight one (it is the smallest deviance found from
    there), and the straight one equals its closed form."""
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
    F = ff.fisher(exp, fid)
    for j, s in enumerate((-2.0, 2.0)):
        exact = _straight_path_delta(fid, 0.07, F.matrix, list(F.names), s)
        assert vmapped["K"][j] == pytest.approx(exact / 4, rel=1e-9)
    for name in fid:
        assert all(r <= v + 1e-12 for r, v in zip(reused[name], vmapped[name], strict=True))


def test_reoptimisation_removes_the_straight_path_false_alarm():
    """y = (a, b + a²), unit noise: for fixed a the nuisance b fits the second datum
    exactly, so the profile of a is exactly quadratic (Δ = (a − â)², the Fisher interval
    is exact), while the straight Fisher path (a, b) = (â + 2, b̂ − 4â) has Δ = 4 + 16 = 20
    at +2σ. The re-optimised check must give exactly 4, not flag `a` (â = 3, b̂ = 20: both
    2σ intervals stay positive)."""
    exp = ff.Experiment(
        lambda p, x: (1 - x) * p["a"] + x * (p["b"] + p["a"] ** 2),
        ff.Gaussian(sigma=1.0),
        design=np.array([0.0, 1.0]),
    )
    fid = {"a": 3.0, "b": 20.0}
    rep = ff.identifiability(exp, fid, n_random=1)
    assert rep.fisher_path["a"] == pytest.approx((1.0, 1.0), rel=1e-9)
    assert "a" not in rep.profile_recommended
    F = ff.fisher(exp, fid).matrix
    d = np.linalg.inv(F)[:, 0]  # σ_a = 1
    a, b = 3.0 + 2 * d[0], 20.0 + 2 * d[1]
    straight = (a - 3.0) ** 2 + (b + a**2 - 29.0) ** 2
    assert straight == pytest.approx(20.0)  # what the straight path alone would report
