"""Combining experiments: JointExperiment, name alignment, nuisances, contributions."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff

T1 = np.linspace(0.0, 2.0, 6)
T2 = np.linspace(0.5, 3.0, 4)


def line(p, t):
    return p["a"] + p["b"] * t + p["n1"] * t**2


def curve(p, t):
    return p["a"] * jnp.exp(-p["b"] * t) + p["n2"]


def curve_np(p, t):
    return p["a"] * np.exp(-p["b"] * t) + p["n2"]


FID = {"a": 1.2, "b": 0.7, "n1": 0.1, "n2": -0.3}


def jac_numpy(fn, fid, names, design, h=1e-6):
    """Central differences in numpy float64, independent of the engine."""
    cols = []
    for n in names:
        up, dn = dict(fid), dict(fid)
        up[n] += h
        dn[n] -= h
        cols.append((np.asarray(fn(up, design)) - np.asarray(fn(dn, design))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.fixture
def experiments():
    e1 = ff.Experiment(line, ff.Gaussian(sigma=0.2), design=T1, name="line")
    cov2 = 0.05 * np.eye(4) + 0.01
    e2 = ff.Experiment(curve, ff.Gaussian(cov=cov2), design=T2, name="curve")
    return e1, e2, cov2


def test_joint_with_zero_cross_cov_equals_sum(experiments):
    e1, e2, _ = experiments
    joint = ff.JointExperiment([e1, e2], cross_cov=np.zeros((6, 4)))
    F_joint = ff.fisher(joint, FID)
    F_sum = ff.fisher([e1, e2], FID)
    np.testing.assert_allclose(F_joint.matrix, F_sum.matrix, rtol=1e-12)
    # and equal to adding the two matrices by name
    F_add = ff.fisher(e1, FID, params=["a", "b", "n1"]) + ff.fisher(
        e2, FID, params=["n2", "b", "a"]
    )
    order = [F_add.names.index(n) for n in F_sum.names]
    np.testing.assert_allclose(F_add.matrix[np.ix_(order, order)], F_sum.matrix, rtol=1e-12)


def test_joint_with_cross_cov_matches_block_formula(experiments):
    e1, e2, cov2 = experiments
    X = 0.01 * np.outer(np.linspace(1, 2, 6), np.linspace(1, 0.5, 4))
    F = ff.fisher(ff.JointExperiment([e1, e2], cross_cov=X), FID)
    names = F.names
    J = np.concatenate([jac_numpy(line, FID, names, T1), jac_numpy(curve_np, FID, names, T2)])
    C = np.block([[0.04 * np.eye(6), X], [X.T, cov2]])
    expected = J.T @ np.linalg.solve(C, J)
    np.testing.assert_allclose(F.matrix, expected, rtol=1e-7)
    # positive correlation between experiments that measure the same thing loses information
    F0 = ff.fisher([e1, e2], FID)
    assert not np.allclose(F.matrix, F0.matrix)


def test_joint_rejects_bad_cross_cov(experiments):
    e1, e2, _ = experiments
    with pytest.raises(ValueError, match=r"\(6, 4\)"):
        ff.JointExperiment([e1, e2], cross_cov=np.zeros((4, 6)))
    with pytest.raises(ValueError, match="positive definite"):
        ff.JointExperiment([e1, e2], cross_cov=np.ones((6, 4)))
    pois = ff.Experiment(lambda p: p["a"] * jnp.ones(3), ff.Poisson())
    with pytest.raises(TypeError, match="fixed Gaussian"):
        ff.JointExperiment([e1, pois])


def test_nuisances_are_separate_columns(experiments):
    e1, e2, _ = experiments
    F = ff.fisher([e1, e2], FID)
    i1, i2 = F.names.index("n1"), F.names.index("n2")
    assert F.matrix[i1, i2] == 0.0  # no experiment depends on both nuisances
    F1 = ff.fisher(e1, FID)
    assert F1.matrix[F1.names.index("n2")].tolist() == [0.0] * 4
    with pytest.raises(ff.SingularFisherError, match="n2"):
        F1.sigma()


def test_contributions_reports_alone_combined_and_gain(experiments):
    e1, e2, _ = experiments
    c = ff.contributions([e1, e2], FID)
    F = ff.fisher([e1, e2], FID)
    for n, s in F.sigma().items():
        assert c.combined[n] == pytest.approx(s, rel=1e-12)
    assert math.isinf(c.alone["line"]["n2"]) and math.isinf(c.alone["curve"]["n1"])
    # parameters orthogonal to the null direction keep a finite σ: "line" alone measures a,
    # b, n1 exactly as its own 3x3 Fisher matrix says.
    own = ff.fisher(e1, FID, params=["a", "b", "n1"]).sigma()
    for n in ("a", "b", "n1"):
        assert c.alone["line"][n] == pytest.approx(own[n], rel=1e-9)
    for n in F.names:
        best = min(c.alone["line"][n], c.alone["curve"][n])
        assert c.improvement[n] == pytest.approx(best / c.combined[n])
        assert c.improvement[n] >= 1 - 1e-12
    assert "combined" in c.summary()


def test_operations_on_combined_matrix(experiments):
    e1, e2, _ = experiments
    F = ff.fisher([e1, e2], FID).with_prior({"n1": 0.5, "n2": 0.5})
    # DETF-style FoM equals det of the marginal covariance block to the -1/2
    cov = np.linalg.inv(F.matrix)
    idx = [F.names.index("a"), F.names.index("b")]
    fom = np.linalg.det(cov[np.ix_(idx, idx)]) ** -0.5
    assert F.figure_of_merit(["a", "b"]) == pytest.approx(fom, rel=1e-10)
    # reparameterise (a, b) -> (u = a·b, v = a/b): σ from the covariance transformed by hand
    G = F.reparameterize(
        lambda p: {"u": p["a"] * p["b"], "v": p["a"] / p["b"], "n1": p["n1"], "n2": p["n2"]}
    )
    a, b = FID["a"], FID["b"]
    Jm = np.eye(4)
    order = [F.names.index(n) for n in ("a", "b", "n1", "n2")]
    C = cov[np.ix_(order, order)]
    Jm[:2, :2] = [[b, a], [1 / b, -a / b**2]]
    Cn = Jm @ C @ Jm.T
    assert G.sigma()["u"] == pytest.approx(math.sqrt(Cn[0, 0]), rel=1e-9)
    assert G.sigma()["v"] == pytest.approx(math.sqrt(Cn[1, 1]), rel=1e-9)


def _embed(F, names):
    """F's matrix placed in the rows/columns `names` (zeros elsewhere), by hand."""
    M = np.zeros((len(names), len(names)))
    idx = [names.index(n) for n in F.names]
    M[np.ix_(idx, idx)] = F.matrix
    return M


def test_contributions_keeps_experiments_that_share_a_name():
    t = np.linspace(0.0, 1.0, 10)
    e1 = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=0.1), t, "A")
    e2 = e1.replace(noise=ff.Gaussian(sigma=0.03))  # .replace keeps the name "A"
    fid = {"a": 1.0, "b": 2.0}
    c = ff.contributions([e1, e2], fid)
    assert list(c.alone) == ["A", "A#2"]
    # closed form: straight line, J = [1, t]; F = J^T J / σ², each alone and summed
    J = np.stack([np.ones_like(t), t], axis=1)
    F1, F2 = J.T @ J / 0.1**2, J.T @ J / 0.03**2
    for label, M in (("A", F1), ("A#2", F2)):
        cov = np.linalg.inv(M)
        for k, n in enumerate(("a", "b")):
            assert c.alone[label][n] == pytest.approx(math.sqrt(cov[k, k]), rel=1e-9)
    cov = np.linalg.inv(F1 + F2)
    for k, n in enumerate(("a", "b")):
        assert c.combined[n] == pytest.approx(math.sqrt(cov[k, k]), rel=1e-9)
        assert c.combined[n] < c.alone["A#2"][n]  # the first experiment is not dropped
    table = c.summary()
    assert " A#2 " in table and "combined" in table
    # three copies, and a name that already looks generated, keep distinct labels
    e3 = e1.replace(name="A#2")
    assert list(ff.contributions([e1, e2, e3, e1], fid).alone) == ["A", "A#3", "A#2", "A#4"]


def test_contributions_labels_unnamed_items_and_matrices():
    Fa = ff.FisherMatrix([[2.0, 0.3], [0.3, 1.0]], ["a", "b"])
    Fb = ff.FisherMatrix([[1.0, 0.1], [0.1, 4.0]], ["a", "b"], name="B")
    c = ff.contributions([Fa, Fb, Fa, Fb])
    assert list(c.alone) == ["exp0", "B", "exp2", "B#2"]
    cov = np.linalg.inv(2 * Fa.matrix + 2 * Fb.matrix)
    assert c.combined["a"] == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-12)
    # a dict chooses the labels; an experiment may be named "combined" and still be plotted
    d = ff.contributions({"combined": Fa, "other": Fb})
    assert list(d.alone) == ["combined", "other"]
    pytest.importorskip("matplotlib").use("Agg")
    fig = d.plot()
    assert len(fig.axes[0].containers) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "combined",
        "other",
        "combined#2",
    ]


def test_contributions_rejects_bad_arguments():
    F = ff.FisherMatrix([[1.0]], ["a"])
    with pytest.raises(TypeError, match=r"`experiments`.*received FisherMatrix"):
        ff.contributions(F)
    with pytest.raises(TypeError, match=r"string labels; received the key 1"):
        ff.contributions({1: F})
    with pytest.raises(TypeError, match=r"received 'F' at position 1"):
        ff.contributions([F, "F"])
    with pytest.raises(ValueError, match="empty list"):
        ff.contributions([])
    with pytest.raises(TypeError, match=r"`prior`.*received \{'a': 1.0\}"):
        ff.contributions([F], prior={"a": 1.0})


def test_contributions_marginalises_parameters_only_the_prior_constrains():
    FA = ff.FisherMatrix([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], ["a", "b", "c"])
    FB = ff.FisherMatrix([[1.0, 0.5], [0.5, 1.0]], ["a", "c"])
    prior = ff.FisherMatrix([[1.0, 0.9], [0.9, 1.0]], ["c", "d"], {"c": 0.5, "d": 3.0})
    c = ff.contributions({"A": FA, "B": FB}, prior=prior)
    full = ["a", "b", "c", "d"]
    P = _embed(prior, full)
    # B alone leaves b unconstrained; a and c are orthogonal to that direction
    MB = np.delete(np.delete(_embed(FB, full) + P, 1, 0), 1, 1)  # rows/cols a, c, d
    covB = np.linalg.inv(MB)
    assert math.isinf(c.alone["B"]["b"])
    assert c.alone["B"]["a"] == pytest.approx(math.sqrt(covB[0, 0]), rel=1e-9)
    assert c.alone["B"]["c"] == pytest.approx(math.sqrt(covB[1, 1]), rel=1e-9)
    covA = np.linalg.inv(_embed(FA, full) + P)
    covAB = np.linalg.inv(_embed(FA, full) + _embed(FB, full) + P)
    for k, n in enumerate(("a", "b", "c")):
        assert c.alone["A"][n] == pytest.approx(math.sqrt(covA[k, k]), rel=1e-9)
        assert c.combined[n] == pytest.approx(math.sqrt(covAB[k, k]), rel=1e-9)
        assert c.improvement[n] >= 1 - 1e-12  # adding an experiment never hurts
    assert c.names == ("a", "b", "c")  # the prior-only d is marginalised, not reported
    assert set(c.alone["A"]) == {"a", "b", "c"}
