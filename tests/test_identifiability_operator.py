"""ff.identifiability on its matrix-free path (path="operator", or "auto" above
OPERATOR_MIN_PARAMS / for array-valued parameters), checked against numpy on the dense
log-FIM and against the dense report of the same model written on named scalars.

One model for every test (the kernels compile once): ``y = a·b·e^{-k x} + c·d·x² + B w``
with 40 array weights ``w``: two exact degeneracies (only a·b and c·d are identifiable)
and 41 well-determined parameters, P = 45.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff
from fisherforecast._identify import analysis, factor

N_W = 40
RNG = np.random.default_rng(0)
X = np.linspace(0.0, 1.0, 200)
B = RNG.standard_normal((200, N_W))
DESIGN = np.column_stack([X, B])
W0 = RNG.uniform(0.5, 2.0, N_W)
SCALARS = {"a": 2.0, "b": 3.0, "k": 1.5, "c": 0.7, "d": 1.3}


def _physical(p, x):
    return p["a"] * p["b"] * jnp.exp(-p["k"] * x) + p["c"] * p["d"] * x**2


def array_model(p, design):
    return _physical(p, design[:, 0]) + design[:, 1:] @ p["w"]


def scalar_model(p, design):
    w = jnp.stack([p[f"w[{i}]"] for i in range(N_W)])
    return _physical(p, design[:, 0]) + design[:, 1:] @ w


NOISE = ff.Gaussian(sigma=0.1)
EXP = ff.Experiment(array_model, NOISE, design=DESIGN)
FID = {**SCALARS, "w": W0}
EXP_S = ff.Experiment(scalar_model, NOISE, design=DESIGN)
FID_S = {**SCALARS, **{f"w[{i}]": float(v) for i, v in enumerate(W0)}}


@pytest.fixture(scope="module")
def dense_report():
    return ff.identifiability(EXP_S, FID_S, path="dense", n_random=0, check_nonlinearity=False)


@pytest.fixture(scope="module")
def op_report():
    """path="auto" with an array parameter: the matrix-free report; the dense kernels
    (the Jacobian, the factor) must not run."""

    def refuse(*args, **kwargs):
        raise AssertionError("the dense path ran")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analysis, "factor_at", refuse)
        mp.setattr(factor, "evaluate_checked", refuse)
        return ff.identifiability(EXP, FID, crb_params=["k", "w[0]", "w[7]"])


@pytest.fixture(scope="module")
def log_fim(dense_report):
    """The dense log-FIM (from the Jacobian), names in the operator's order."""
    F = dense_report.fisher
    scale = np.abs(np.array([F.fiducial[n] for n in F.names]))
    return F.names, F.matrix * np.outer(scale, scale)


def test_operator_path_matches_numpy_eigh(op_report, log_fim):
    names, F_log = log_fim
    assert op_report.path == "operator" and op_report.names == names
    assert op_report.rank == 43 and op_report.fisher is None
    w, V = np.linalg.eigh(F_log)
    r = op_report._n_zero
    assert r == 2
    ev = op_report.eigenvalues
    assert ev.size == 2 + 6  # the null pair + the 6 weakest others (n_eigen default)
    np.testing.assert_allclose(ev[r:], w[r : ev.size], rtol=1e-8)
    assert np.all(np.abs(ev[:r]) < 1e-9 * w[-1])
    # weak directions: each eigenvector equals numpy's up to sign
    E = op_report.eigenvectors
    for j in range(r, ev.size):
        assert abs(abs(E[:, j] @ V[:, j]) - 1) < 1e-8
    # the null space: the same 2-dimensional subspace
    np.testing.assert_allclose(E[:, :r] @ E[:, :r].T, V[:, :r] @ V[:, :r].T, atol=1e-8)
    # γ of all parameters: the rank is deficient
    assert op_report.collinearity == np.inf and op_report.condition_number == np.inf


def test_operator_report_names_the_exact_degeneracies(op_report):
    texts = op_report.null_descriptions
    assert any("only a·b is identifiable" in t for t in texts), texts
    assert any("only c·d is identifiable" in t for t in texts), texts
    structural = op_report.structurally_identifiable
    assert not structural["a"] and not structural["d"] and structural["k"] and structural["w[3]"]
    assert {n for d in op_report.null_directions for n in d} == {"a", "b", "c", "d"}
    summary = op_report.summary()
    assert "Skipped on the matrix-free path (for large P): identifiable-subset search" in summary
    assert op_report.identifiable_subsets is None and op_report.coordinate_identifiability is None
    d = op_report.to_dict()
    assert d["path"] == "operator" and d["identifiable_subsets"] is None


def test_operator_crbs_match_the_dense_pseudo_inverse(op_report, log_fim):
    names, F_log = log_fim
    # the relative CRB of the dense report: pseudo-inverse of the unit-diagonal log-FIM
    norms = np.sqrt(np.diag(F_log))
    A = F_log / np.outer(norms, norms)
    w, V = np.linalg.eigh(A)
    keep = w > 1e-12 * w[-1]
    A_pinv = (V[:, keep] / w[keep]) @ V[:, keep].T
    for n in ("k", "w[0]", "w[7]"):
        i = names.index(n)
        assert op_report.relative_crb[n] == pytest.approx(
            np.sqrt(A_pinv[i, i]) / norms[i], rel=1e-8
        )
    assert set(op_report.relative_crb) == {"k", "w[0]", "w[7]"}
    assert op_report.practically_identifiable["a"] is False  # in a null direction
    assert op_report.practically_identifiable["w[3]"] is None  # not computed


def test_auto_switch_at_the_threshold(monkeypatch, dense_report):
    """Named scalars, P = 45: above a lowered threshold the operator path is taken and the
    dense factor is never formed; at the threshold the dense path runs."""
    calls = {"dense": 0, "operator": []}
    dense_factor = analysis.factor_at

    def counting_factor(*args, **kwargs):
        calls["dense"] += 1
        return dense_factor(*args, **kwargs)

    def operator_stub(*args, reason, **kwargs):
        calls["operator"].append(reason)
        return "operator report"

    monkeypatch.setattr(analysis, "factor_at", counting_factor)
    monkeypatch.setattr(analysis, "operator_identifiability", operator_stub)
    options = dict(n_random=0, check_nonlinearity=False)
    monkeypatch.setattr(analysis, "OPERATOR_MIN_PARAMS", 44)
    assert ff.identifiability(EXP_S, FID_S, **options) == "operator report"
    assert calls == {"dense": 0, "operator": ["P = 45 > OPERATOR_MIN_PARAMS = 44"]}
    monkeypatch.setattr(analysis, "OPERATOR_MIN_PARAMS", 45)
    rep = ff.identifiability(EXP_S, FID_S, **options)
    assert rep.path == "dense" and calls["dense"] == 1 and len(calls["operator"]) == 1
    assert ff.identifiability(EXP_S, FID_S, path="operator", **options) == "operator report"
    assert calls["operator"][-1] == "path='operator', P = 45"


def test_dense_report_agrees_at_the_same_p(op_report, dense_report):
    dense = dense_report
    assert dense.path == "dense" and dense.rank == op_report.rank
    n = op_report.eigenvalues.size
    np.testing.assert_allclose(op_report.eigenvalues[2:], dense.eigenvalues[2:n], rtol=1e-8)
    for j in range(2, n):
        assert abs(abs(op_report.eigenvectors[:, j] @ dense.eigenvectors[:, j]) - 1) < 1e-8
    assert sorted(dense.null_descriptions) == sorted(op_report.null_descriptions)
    assert op_report.relative_crb["k"] == pytest.approx(dense.relative_crb["k"], rel=1e-8)
    sv = op_report.singular_values  # largest, smallest off the null space, null ones
    assert sv[0] == pytest.approx(dense.singular_values[0], rel=1e-8)
    assert sv[1] == pytest.approx(dense.singular_values[-3], rel=1e-8)


def test_operator_path_bad_input():
    with pytest.raises(ff.InputError, match=r"`path` must be one of.*'fast'"):
        ff.identifiability(EXP, FID, path="fast")
    with pytest.raises(ff.InputError, match=r"path='dense' takes scalar parameters.*'w'"):
        ff.identifiability(EXP, FID, path="dense")
    with pytest.raises(ff.InputError, match="`n_eigen` must be an integer >= 1; received 0"):
        ff.identifiability(EXP, FID, n_eigen=0)
    with pytest.raises(ff.ParameterError, match=r"crb_params names \['w\[99\]'\]"):
        ff.identifiability(EXP, FID, crb_params=["w[99]"])
    with pytest.raises(ff.InputError, match=r"`scales\['k'\]`: no element of 'k' has fiducial 0"):
        ff.identifiability(EXP, FID, scales={"k": 1.0})
    with pytest.raises(ff.InputError, match="path='operator' needs an experiment"):
        F = ff.FisherMatrix(np.eye(2), ["a", "b"], fiducial={"a": 1.0, "b": 2.0})
        ff.identifiability(F, path="operator")


def test_operator_report_refuses_matrix_queries(op_report):
    with pytest.raises(ff.InputError, match="matrix-free report"):
        op_report.collinearity_index(["a", "k"])
    with pytest.raises(ff.InputError, match="computed matrix-free"):
        ff.nullspace_prior(op_report)
