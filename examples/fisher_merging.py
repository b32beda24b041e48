"""Fisher-weighted merging of models trained on different data (Matena & Raffel 2022).

Two copies of a model are fitted to two data sets that cover different parts of the input
space (A: x₁ < 0.3, B: x₁ > −0.3) of one classification task, whose true boundary is a circle.
We merge them

* by plain averaging, θ = (θ_A + θ_B)/2, and
* by Fisher weighting, θ* = (F_A + F_B)⁻¹ (F_A θ_A + F_B θ_B) — the Laplace approximation of
  the product of the two posteriors, which is what a fit to the pooled data would give if the
  log-likelihoods were quadratic,

and score both on a test set drawn from the whole input space, against the model fitted to
the pooled data (the target a merge tries to reach without sharing data).

1. **Logistic regression** on (1, x₁, x₂, x₁², x₂²) with a weak Gaussian prior: the dense
   Fisher matrix is the Hessian of the negative log-posterior, and ``ff.merge`` (names
   aligned, rank-aware) gives θ*.
2. **A small MLP** (2 → H → 1, tanh), both copies fine-tuned from one shared "pre-trained"
   initialisation (as in Matena & Raffel, where merging needs a common starting point;
   independently initialised networks are not aligned unit by unit) with an L2 pull towards
   it, merged with ``ff.merge_pytrees`` and the diagonal Fisher
   ``Σₙ pₙ(1 − pₙ)(∂zₙ/∂θ)²`` (exact expected Fisher of the Bernoulli likelihood, diagonal)
   plus the prior precision.

Training uses ``scipy.optimize.minimize`` (L-BFGS) with JAX gradients, in float64.

Run ``python examples/fisher_merging.py [--fast] [--out DIR]``; writes ``merging.png``.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

import fisherforecast as ff

PRIOR_PRECISION = 1e-2  # Gaussian prior on every weight (logistic regression)
PULL_PRECISION = 1.0  # MLP: Gaussian pull of the fine-tuned weights towards the shared start


def make_data(rng, n, region):
    """Points uniform in [-1, 1]², label 1 inside the circle |x − (0.1, 0)| < 0.6, 5 % label
    noise. ``region`` keeps x₁ < 0.3 ("A"), x₁ > −0.3 ("B") or everything (None)."""
    x = rng.uniform(-1.0, 1.0, size=(4 * n, 2))
    if region == "A":
        x = x[x[:, 0] < 0.3]
    elif region == "B":
        x = x[x[:, 0] > -0.3]
    x = x[:n]
    y = (np.hypot(x[:, 0] - 0.1, x[:, 1]) < 0.6).astype(float)
    flip = rng.uniform(size=n) < 0.05
    return x, np.where(flip, 1.0 - y, y)


# -----------------------------------------------------------------------------------------
# Part 1: logistic regression, dense Fisher, ff.merge
# -----------------------------------------------------------------------------------------
NAMES = ("c0", "c1", "c2", "c11", "c22")


def features(x):
    return jnp.stack([jnp.ones(x.shape[0]), x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2], 1)


def bernoulli_nll(logits, y):
    """−log p(y | logits), summed: softplus(z) − y z."""
    return jnp.sum(jnp.logaddexp(0.0, logits) - y * logits)


def logistic_loss(w, x, y, prior=PRIOR_PRECISION):
    return bernoulli_nll(features(x) @ w, y) + 0.5 * prior * jnp.sum(w**2)


def fit(loss, w0):
    """Minimise a JAX loss of a flat float64 vector with L-BFGS (scipy)."""
    with jax.enable_x64(True):
        value_and_grad = jax.jit(jax.value_and_grad(loss))

        def fun(w):
            v, g = value_and_grad(jnp.asarray(w))
            return float(v), np.asarray(g, dtype=np.float64)

        res = optimize.minimize(
            fun,
            np.asarray(w0, dtype=np.float64),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 5000, "gtol": 1e-10},
        )
    return np.asarray(res.x)


def logistic_fisher(w, x, y, name):
    """Hessian of the negative log-posterior at the fit (= the expected Fisher matrix of the
    Bernoulli likelihood, plus the prior), as a named FisherMatrix with the fit as fiducial."""
    with jax.enable_x64(True):
        H = np.asarray(jax.hessian(logistic_loss)(jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)))
    return ff.FisherMatrix(
        0.5 * (H + H.T), NAMES, fiducial=dict(zip(NAMES, w, strict=True)), name=name
    )


def log_loss(logits, y):
    return float(bernoulli_nll(logits, y)) / y.size


def accuracy(logits, y):
    return float(np.mean((np.asarray(logits) > 0) == (y > 0.5)))


def logistic_part(data, test):
    (xa, ya), (xb, yb) = data["A"], data["B"]
    w_a = fit(functools.partial(logistic_loss, x=xa, y=ya), np.zeros(5))
    w_b = fit(functools.partial(logistic_loss, x=xb, y=yb), np.zeros(5))
    xp, yp = np.vstack([xa, xb]), np.concatenate([ya, yb])
    # The product of the two posteriors carries the prior twice, so the pooled fit gets 2λ:
    # the merge is then the Laplace approximation of exactly this fit.
    w_pooled = fit(
        functools.partial(logistic_loss, x=xp, y=yp, prior=2 * PRIOR_PRECISION), np.zeros(5)
    )
    F_a, F_b = logistic_fisher(w_a, xa, ya, "A"), logistic_fisher(w_b, xb, yb, "B")
    merged = ff.merge([F_a, F_b])
    fid = merged.fiducial
    assert fid is not None
    w_merge = np.array([fid[n] for n in NAMES])
    w_avg = 0.5 * (w_a + w_b)
    xt, yt = test
    with jax.enable_x64(True):
        phi = np.asarray(features(jnp.asarray(xt)))
    weights = {
        "A": w_a,
        "B": w_b,
        "average": w_avg,
        "Fisher merge": w_merge,
        "pooled fit": w_pooled,
    }
    cov = merged.covariance()
    return {
        "weights": weights,
        "merged": merged,
        "fishers": {"A": F_a, "B": F_b},
        # distance to the pooled fit in units of the merged posterior's covariance
        "mahalanobis_to_pooled": {
            k: float(math.sqrt((w - w_pooled) @ np.linalg.solve(cov, w - w_pooled)))
            for k, w in weights.items()
        },
        "scores": {k: (log_loss(phi @ w, yt), accuracy(phi @ w, yt)) for k, w in weights.items()},
    }


# -----------------------------------------------------------------------------------------
# Part 2: MLP, diagonal Fisher, ff.merge_pytrees
# -----------------------------------------------------------------------------------------
def mlp_logits(params, x):
    h = jnp.tanh(x @ params["W1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def init_mlp(rng, hidden):
    return {
        "W1": rng.normal(size=(2, hidden)) * 1.5,
        "b1": rng.normal(size=hidden) * 0.5,
        "w2": rng.normal(size=hidden) / math.sqrt(hidden),
        "b2": np.zeros(()),
    }


def flatten(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = [np.shape(v) for v in leaves]
    flat = np.concatenate([np.ravel(v) for v in leaves])

    def unflatten(vec):
        out, k = [], 0
        for s in shapes:
            n = int(np.prod(s))
            out.append(vec[k : k + n].reshape(s))
            k += n
        return jax.tree_util.tree_unflatten(treedef, out)

    return flat, unflatten


def mlp_loss(vec, x, y, anchor, unflatten, prior=PULL_PRECISION):
    return bernoulli_nll(mlp_logits(unflatten(vec), x), y) + 0.5 * prior * jnp.sum(
        (vec - anchor) ** 2
    )


def mlp_fit(x, y, start, unflatten, anchor, prior=PULL_PRECISION):
    return fit(
        functools.partial(mlp_loss, x=x, y=y, anchor=anchor, unflatten=unflatten, prior=prior),
        start,
    )


def diagonal_fisher(params, x, prior=PULL_PRECISION):
    """Σₙ pₙ(1−pₙ) (∂zₙ/∂θ)² + prior, per parameter (expected Bernoulli Fisher, diagonal)."""
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(jnp.asarray, params)
        grads = jax.vmap(lambda xi: jax.grad(lambda q: mlp_logits(q, xi[None])[0])(p64))(
            jnp.asarray(x)
        )
        prob = jax.nn.sigmoid(mlp_logits(p64, jnp.asarray(x)))
        weight = prob * (1.0 - prob)
        return jax.tree_util.tree_map(
            lambda g: np.asarray(jnp.tensordot(weight, g**2, axes=1) + prior), grads
        )


def mlp_part(rng, data, test, hidden):
    (xa, ya), (xb, yb) = data["A"], data["B"]
    flat0, unflatten = flatten(init_mlp(rng, hidden))
    # "Pre-training": a short fit on a small pooled sample, the common starting point.
    xs, ys = make_data(rng, 150, None)
    base = mlp_fit(xs, ys, flat0, unflatten, anchor=np.zeros_like(flat0), prior=0.1)
    theta = {k: mlp_fit(x, y, base, unflatten, anchor=base) for k, (x, y) in data.items()}
    xp, yp = np.vstack([xa, xb]), np.concatenate([ya, yb])
    pooled = mlp_fit(xp, yp, base, unflatten, anchor=base, prior=2 * PULL_PRECISION)
    trees = {k: unflatten(v) for k, v in theta.items()}
    fishers = {k: diagonal_fisher(trees[k], x) for k, (x, _) in data.items()}
    merged = ff.merge_pytrees([trees["A"], trees["B"]], [fishers["A"], fishers["B"]])
    average = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), trees["A"], trees["B"])
    models = {
        "A": trees["A"],
        "B": trees["B"],
        "average": average,
        "Fisher merge": merged.params,
        "pooled fit": unflatten(pooled),
    }
    xt, yt = test
    scores = {}
    with jax.enable_x64(True):
        for k, params in models.items():
            z = np.asarray(mlp_logits(jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(xt)))
            scores[k] = (log_loss(z, yt), accuracy(z, yt))
    return {"models": models, "scores": scores, "n_params": flat0.size}


def print_scores(title, scores):
    print(title)
    print(f"  {'model':<14} {'test log-loss':>14} {'accuracy':>9}")
    for k, (ll, acc) in scores.items():
        print(f"  {k:<14} {ll:>14.4f} {acc:>9.3f}")


def plot(res, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (title, scores) in zip(
        axes,
        (("logistic regression", res["logistic"]["scores"]), ("MLP", res["mlp"]["scores"])),
        strict=True,
    ):
        labels = list(scores)
        ax.bar(
            range(len(labels)), [scores[k][0] for k in labels], color=["C0", "C1", "0.6", "C3", "k"]
        )
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        values = [scores[k][0] for k in labels]
        ax.set_ylim(0.9 * min(values), 1.03 * max(values))  # the differences, not the zero
        ax.set_ylabel("test log-loss (whole input space)")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out_dir, fast: bool = False) -> dict:
    """Both parts; **returns** ``{"logistic": ..., "mlp": ..., "files": ...}``."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2022)
    n = 300 if fast else 1000
    data = {"A": make_data(rng, n, "A"), "B": make_data(rng, n, "B")}
    test = make_data(rng, 2000 if fast else 10000, None)
    res = {
        "logistic": logistic_part(data, test),
        "mlp": mlp_part(rng, data, test, hidden=8 if fast else 16),
    }
    print_scores(
        "Logistic regression (5 weights, dense Fisher, ff.merge):", res["logistic"]["scores"]
    )
    print(
        "  Mahalanobis distance to the pooled fit (merged covariance): "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["logistic"]["mahalanobis_to_pooled"].items())
    )
    print_scores(
        f"MLP ({res['mlp']['n_params']} weights, diagonal Fisher, ff.merge_pytrees):",
        res["mlp"]["scores"],
    )
    files = {"plot": out_dir / "merging.png"}
    plot(res, files["plot"])
    print(f"wrote {files['plot']}")
    return {**res, "files": files}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--fast", action="store_true", help="smaller data and network (tests)")
    args = parser.parse_args()
    main(args.out, fast=args.fast)
