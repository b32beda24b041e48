"""ff.merge and ff.merge_pytrees against independent answers.

* The closed-form Gaussian product: the mode of Π N(θᵢ, Fᵢ⁻¹)^{wᵢ} found by numpy least
  squares on the stacked Cholesky-whitened residuals (never by the formula under test).
* Linear-Gaussian models fitted to separate data sets: the merge equals the fit of the
  pooled data, solved independently with ``numpy.linalg.lstsq``, including models with
  different parameter sets and a model that leaves a parameter unconstrained.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fisherforecast as ff


def values(F: ff.FisherMatrix) -> dict:
    """The merged values θ* (the fiducial of the merged matrix)."""
    theta = F.fiducial
    assert theta is not None
    return theta


def random_spd(rng, P, rank=None):
    rank = P if rank is None else rank
    A = rng.normal(size=(P, rank))
    return A @ A.T + (1e-3 * np.eye(P) if rank == P else 0.0)


def gaussian_product_mode(thetas, fishers, weights):
    """argmax Π N(θᵢ, Fᵢ⁻¹)^{wᵢ} = argmin Σ wᵢ‖Lᵢᵀ(θ − θᵢ)‖² by stacked least squares."""
    rows, rhs = [], []
    for th, F, w in zip(thetas, fishers, weights, strict=True):
        L = np.linalg.cholesky(F)
        rows.append(np.sqrt(w) * L.T)
        rhs.append(np.sqrt(w) * L.T @ th)
    sol, *_ = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)
    return sol


# -----------------------------------------------------------------------------------------
# Dense merge
# -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0]])
def test_merge_is_the_gaussian_product(weights):
    rng = np.random.default_rng(1)
    names = ["a", "b", "c", "d"]
    Fs = [random_spd(rng, 4) for _ in range(3)]
    thetas = [rng.normal(size=4) for _ in range(3)]
    mats = [
        ff.FisherMatrix(F, names, fiducial=dict(zip(names, th, strict=True)), name=f"m{k}")
        for k, (F, th) in enumerate(zip(Fs, thetas, strict=True))
    ]
    merged = ff.merge(mats, weights=weights)
    w = [1.0] * 3 if weights is None else weights
    expected = gaussian_product_mode(thetas, Fs, w)
    got = np.array([values(merged)[n] for n in names])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # The product's precision is Σ wᵢFᵢ: its log-density is exactly quadratic with that
    # Hessian; check it on a random displacement against the summed log-densities.
    delta = rng.normal(size=4)

    def logp(x):
        terms = zip(thetas, Fs, w, strict=True)
        return -0.5 * sum(wk * (x - th) @ F @ (x - th) for th, F, wk in terms)

    curvature = -(logp(expected + delta) + logp(expected - delta) - 2 * logp(expected))
    assert delta @ merged.matrix @ delta == pytest.approx(curvature, rel=1e-9)
    assert merged.name == "m0⊕m1⊕m2"
    assert merged.metadata["merged"]["weights"] == [float(v) for v in w]


def test_merge_of_one_model_returns_it():
    F = ff.FisherMatrix([[2.0, 0.5], [0.5, 1.0]], ["x", "y"], fiducial={"x": 1.5, "y": -2.0})
    merged = ff.merge([F])
    assert merged.fiducial == pytest.approx(F.fiducial, rel=1e-14)
    np.testing.assert_array_equal(merged.matrix, F.matrix)


def _linear_data(rng, X, beta, sigma):
    return X @ beta + sigma * rng.normal(size=X.shape[0])


def _fit(X, y, sigma):
    beta, *_ = np.linalg.lstsq(X / sigma, y / sigma, rcond=None)
    return beta


def _fisher_of_fit(X, names, beta, sigma, name):
    """The Fisher matrix of a linear model through the library's own engine, at the fit."""

    def model(p, design):
        return sum(p[n] * design[:, k] for k, n in enumerate(names))

    exp = ff.Experiment(model, ff.Gaussian(sigma=sigma), design=X, name=name)
    return ff.fisher(exp, dict(zip(names, map(float, beta), strict=True)))


def test_merge_equals_pooled_least_squares_fit():
    rng = np.random.default_rng(7)
    truth = np.array([0.3, -1.2, 2.0])
    names = ["b0", "b1", "b2"]
    XA, XB = rng.normal(size=(40, 3)), rng.normal(size=(25, 3)) * [1.0, 3.0, 0.2]
    sA, sB = 0.5, 2.0
    yA, yB = _linear_data(rng, XA, truth, sA), _linear_data(rng, XB, truth, sB)
    FA = _fisher_of_fit(XA, names, _fit(XA, yA, sA), sA, "A")
    FB = _fisher_of_fit(XB, names, _fit(XB, yB, sB), sB, "B")
    merged = ff.merge([FA, FB])
    pooled = _fit(np.vstack([XA / sA, XB / sB]), np.concatenate([yA / sA, yB / sB]), 1.0)
    got = np.array([values(merged)[n] for n in names])
    np.testing.assert_allclose(got, pooled, rtol=1e-9, atol=1e-12)
    # ... and the merged precision is the pooled one, Xᵀ C⁻¹ X.
    pooled_F = XA.T @ XA / sA**2 + XB.T @ XB / sB**2
    np.testing.assert_allclose(merged.matrix, pooled_F, rtol=1e-10)


def test_merge_aligns_names_and_is_rank_aware():
    """A: y = b0 + b1 t (no b2 column: b2 unconstrained by A, fitted value garbage).
    B: y = b1 u + b2 v + c (its own offset c). The merge = the pooled fit over
    (b0, b1, b2, c)."""
    rng = np.random.default_rng(3)
    t, u, v = rng.normal(size=30), rng.normal(size=20), rng.normal(size=20)
    b0, b1, b2, c = 1.0, -0.5, 0.8, 3.0
    sA, sB = 0.3, 0.6
    yA = b0 + b1 * t + sA * rng.normal(size=30)
    yB = b1 * u + b2 * v + c + sB * rng.normal(size=20)
    XA = np.stack([np.ones(30), t, np.zeros(30)], axis=1)  # (b0, b1, b2): b2 has no column
    XB = np.stack([u, v, np.ones(20)], axis=1)  # (b1, b2, c)
    fitA = _fit(XA, yA, sA)
    fitA[2] = 1.0e3  # A knows nothing about b2: its "fitted" value must not matter
    FA = _fisher_of_fit(XA, ["b0", "b1", "b2"], fitA, sA, "A")
    FB = _fisher_of_fit(XB, ["b1", "b2", "c"], _fit(XB, yB, sB), sB, "B")
    with pytest.raises(ff.SingularFisherError):
        FA.covariance()  # A alone is singular
    merged = ff.merge([FA, FB])
    assert merged.names == ("b0", "b1", "b2", "c")
    # Pooled fit over the union, columns (b0, b1, b2, c).
    X = np.zeros((50, 4))
    X[:30, 0], X[:30, 1] = 1.0 / sA, t / sA
    X[30:, 1], X[30:, 2], X[30:, 3] = u / sB, v / sB, 1.0 / sB
    pooled, *_ = np.linalg.lstsq(X, np.concatenate([yA / sA, yB / sB]), rcond=None)
    got = np.array([values(merged)[n] for n in merged.names])
    np.testing.assert_allclose(got, pooled, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged.matrix, X.T @ X, rtol=1e-10, atol=1e-12)


def test_singular_union_names_the_combination():
    # Both models see only a + b: the difference a − b is unconstrained by both.
    F = np.array([[1.0, 1.0], [1.0, 1.0]])
    m1 = ff.FisherMatrix(F, ["a", "b"], fiducial={"a": 1.0, "b": 2.0})
    m2 = ff.FisherMatrix(2 * F, ["a", "b"], fiducial={"a": 2.0, "b": 1.0})
    with pytest.raises(ff.SingularFisherError, match="no model constrains") as info:
        ff.merge([m1, m2])
    assert "a" in str(info.value) and "b" in str(info.value)
    (direction,) = info.value.directions
    assert set(direction) == {"a", "b"}
    # a prior on one of them (a model with a fiducial) makes the merge defined.
    prior = ff.FisherMatrix([[1e-6]], ["a"], fiducial={"a": 0.0})
    assert ff.merge([m1, m2, prior]).n_params == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([],), {}, "non-empty list"),
        (("not a list",), {}, "non-empty list"),
        (([np.eye(2)],), {}, "item 0"),
        (([ff.FisherMatrix([[1.0]], ["a"])],), {}, "has no fiducial"),
        (([ff.FisherMatrix([[1.0]], ["a"], fiducial={"a": 0})],), {"weights": [1, 2]}, "1 models"),
        (([ff.FisherMatrix([[1.0]], ["a"], fiducial={"a": 0})],), {"weights": [0.0]}, "positive"),
        (([ff.FisherMatrix([[1.0]], ["a"], fiducial={"a": 0})],), {"weights": "1"}, "weights"),
    ],
)
def test_merge_bad_input(args, kwargs, match):
    with pytest.raises(ff.InputError, match=match):
        ff.merge(*args, **kwargs)


# -----------------------------------------------------------------------------------------
# Pytree merge
# -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def count_traces():
    counts = {"trace": 0}

    def listener(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            counts["trace"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_pytree_merge_equals_dense_merge_of_diagonal_matrices():
    rng = np.random.default_rng(5)
    shapes = {"w": (3, 2), "b": (2,)}
    thetas = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(3)]
    fishers = [{k: rng.uniform(0.1, 2.0, size=s) for k, s in shapes.items()} for _ in range(3)]
    weights = [1.0, 0.3, 2.5]
    out = ff.merge_pytrees(thetas, fishers, weights)
    names = [f"{k}{i}" for k in ("b", "w") for i in range(int(np.prod(shapes[k])))]

    def flat(tree):
        return np.concatenate([np.ravel(tree["b"]), np.ravel(tree["w"])])

    dense = [
        ff.FisherMatrix(np.diag(flat(F)), names, fiducial=dict(zip(names, flat(th), strict=True)))
        for th, F in zip(thetas, fishers, strict=True)
    ]
    merged = ff.merge(dense, weights)
    np.testing.assert_allclose(
        flat(out.params), [values(merged)[n] for n in names], rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(flat(out.fisher), np.diag(merged.matrix), rtol=1e-14)
    assert out.params["w"].shape == (3, 2) and out.params["w"].dtype == np.float64


def test_pytree_merge_uninformed_entries_and_epsilon():
    a, b = {"x": np.array([1.0, 4.0])}, {"x": np.array([3.0, 0.0])}
    Fa, Fb = {"x": np.array([0.0, 0.0])}, {"x": np.array([1.0, 0.0])}
    out = ff.merge_pytrees([a, b], [Fa, Fb], weights=[3.0, 1.0])
    # entry 0: only b informs -> b's value; entry 1: nobody -> weighted mean (3·4 + 0)/4.
    assert out.params["x"].tolist() == [3.0, 3.0]
    eps = ff.merge_pytrees([a, b], [Fa, Fb], weights=[3.0, 1.0], epsilon=1.0)
    # with ε = 1: entry 0 = (3·1·1 + 1·2·3) / (3 + 2) = 9/5; entry 1 = plain weighted mean.
    np.testing.assert_allclose(eps.params["x"], [1.8, 3.0], rtol=1e-15)


def test_pytree_merge_float32_inputs_give_float64_and_no_retrace():
    rng = np.random.default_rng(0)
    trees = [{"w": rng.normal(size=(50, 7)).astype(np.float32)} for _ in range(2)]
    fs = [{"w": rng.uniform(size=(50, 7)).astype(np.float32)} for _ in range(2)]
    first = ff.merge_pytrees(trees, fs)
    assert first.params["w"].dtype == np.float64
    with count_traces() as counts:
        ff.merge_pytrees(trees[::-1], fs[::-1], weights=[2.0, 1.0])
    assert counts["trace"] == 0


def test_pytree_merge_million_parameters():
    """10⁶ parameters in a few leaves: correct against numpy, element by element."""
    rng = np.random.default_rng(11)
    shapes = {"dense1": (1000, 600), "dense2": (600, 600), "bias": (40_000,)}
    assert sum(int(np.prod(s)) for s in shapes.values()) == 1_000_000
    thetas = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(2)]
    fishers = [{k: rng.exponential(size=s) for k, s in shapes.items()} for _ in range(2)]
    out = ff.merge_pytrees(thetas, fishers)
    for k in shapes:
        num = fishers[0][k] * thetas[0][k] + fishers[1][k] * thetas[1][k]
        np.testing.assert_allclose(
            out.params[k], num / (fishers[0][k] + fishers[1][k]), rtol=1e-12, atol=1e-14
        )


@pytest.mark.parametrize(
    ("params", "fishers", "kwargs", "match"),
    [
        ([], [], {}, "non-empty list"),
        ([{"x": np.ones(2)}], [], {}, "list of 1 pytrees"),
        ([{"x": np.ones(2)}, {"y": np.ones(2)}], [{"x": np.ones(2)}] * 2, {}, "structure"),
        ([{"x": np.ones(2)}], [{"x": np.ones(3)}], {}, "shape"),
        ([{"x": np.ones(2)}], [{"x": -np.ones(2)}], {}, "negative"),
        ([{"x": np.array([1.0, np.nan])}], [{"x": np.ones(2)}], {}, "NaN"),
        ([{"x": np.ones(2)}], [{"x": np.ones(2)}], {"epsilon": -1.0}, "epsilon"),
        ([{"x": np.ones(2)}], [{"x": np.ones(2)}], {"weights": [1.0, 1.0]}, "1 models"),
    ],
)
def test_pytree_merge_bad_input(params, fishers, kwargs, match):
    with pytest.raises(ff.InputError, match=match):
        ff.merge_pytrees(params, fishers, **kwargs)


def test_pytree_merge_accepts_jax_arrays():
    with jax.enable_x64(True):
        a = {"x": jnp.array([1.0, 2.0])}
        b = {"x": jnp.array([3.0, 6.0])}
    f = {"x": np.array([1.0, 1.0])}
    out = ff.merge_pytrees([a, b], [f, f])
    assert out.params["x"].tolist() == [2.0, 4.0]
