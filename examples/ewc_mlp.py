"""Elastic weight consolidation with the diagonal Fisher of an MLP (~10⁵ weights).

An MLP in plain JAX, its weights one array-valued parameter ``{"w": ...}``, is trained on
task A (a noisy sine on x ∈ [−1, 0], few data). Its Fisher diagonal comes two ways:

* **exact** (expected) — ``ff.fisher_operator(...).diagonal("exact")``: Σ_k (∂μ_k/∂w)²/σ²,
  one reverse pass per datum;
* **empirical** — ``ff.empirical_gradients``: Σ_k r_k² (∂μ_k/∂w)²/σ⁴ with the residuals r.

They differ where the model is misspecified (the noise is 2× larger than the σ the model
assumes, so the empirical one is ~4× larger for weights that fit the noise) and with few
data (an MLP that fits its training points has small residuals there, and its empirical
Fisher collapses for the weights that do so). Then the network learns task B (a cosine on
x ∈ [0, 1]) with and without the EWC penalty ``(λ/2) Σ F_i (w_i − w_A,i)²`` built from the
exact diagonal, and we plot task A's loss during task B's training.

Run:  python examples/ewc_mlp.py [--fast]   (writes ewc_mlp.png and ewc_fisher.png)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jax.example_libraries import optimizers

import fisherforecast as ff

SIGMA_MODEL = 0.1  # what the likelihood assumes
SIGMA_TRUE = 0.2  # what the data have: a misspecified noise model
EWC_STRENGTH = 10.0


def layer_shapes(width):
    return [(1, width), (width,), (width, width), (width,), (width, 1), (1,)]


def unpack(w, width):
    out, start = [], 0
    for shape in layer_shapes(width):
        size = int(np.prod(shape))
        out.append(w[start : start + size].reshape(shape))
        start += size
    return out


def mlp(w, x, width):
    W1, b1, W2, b2, W3, b3 = unpack(w, width)
    h = jnp.tanh(x[:, None] @ W1 + b1)
    h = jnp.tanh(h @ W2 + b2)
    return (h @ W3 + b3)[:, 0]


def train(loss, w0, steps, lr=3e-3, record=None):
    init, update, get = optimizers.adam(lr)

    @jax.jit
    def step(i, state):
        return update(i, jax.grad(loss)(get(state)), state)

    state, history = init(w0), []
    for i in range(steps):
        state = step(i, state)
        if record is not None and i % 10 == 0:
            history.append(float(record(get(state))))
    return get(state), history


def main(out_dir=".", fast=False, seed=0):
    out_dir = Path(out_dir)
    width = 24 if fast else 300  # 24: 673 weights; 300: 91 201 weights
    n_a, n_b = (32, 32) if fast else (64, 64)
    steps = 300 if fast else 2000
    # Adam moves every weight by ~lr per step: at width 300 a step of 3e-3 moves the
    # function so far that task A's loss jumps from 1.6 to ~200 in one step and the EWC
    # run oscillates (docs/matrix_free.md, the full-size run).
    lr = 3e-3 if fast else 3e-4
    rng = np.random.default_rng(seed)
    xa = np.sort(rng.uniform(-1.0, 0.0, n_a))
    ya = np.sin(3 * xa) + SIGMA_TRUE * rng.standard_normal(n_a)
    xb = np.sort(rng.uniform(0.0, 1.0, n_b))
    yb = np.cos(2 * xb) - 0.5 + SIGMA_TRUE * rng.standard_normal(n_b)
    n_w = sum(int(np.prod(s)) for s in layer_shapes(width))
    scale = np.concatenate(
        [
            np.full(int(np.prod(s)), 1.0 / np.sqrt(s[0]) if len(s) == 2 else 0.0)
            for s in layer_shapes(width)
        ]
    )

    with jax.enable_x64(True):
        w0 = jnp.asarray(scale * rng.standard_normal(n_w))

        def loss_a(w):
            return 0.5 * jnp.mean((mlp(w, jnp.asarray(xa), width) - ya) ** 2) / SIGMA_MODEL**2

        def loss_b(w):
            return 0.5 * jnp.mean((mlp(w, jnp.asarray(xb), width) - yb) ** 2) / SIGMA_MODEL**2

        w_a, _ = train(loss_a, w0, steps, lr)

    # ----- the Fisher diagonal of task A, exact and empirical --------------------------
    task_a = ff.Experiment(
        lambda p, x: mlp(p["w"], x, width), ff.Gaussian(sigma=SIGMA_MODEL), design=xa
    )
    fid = {"w": np.asarray(w_a)}
    op = ff.fisher_operator(task_a, fid)
    exact = op.diagonal("exact").values
    G, _ = ff.empirical_gradients(task_a, fid, ya)
    empirical = np.sum(G**2, axis=0)

    # ----- task B with and without EWC ---------------------------------------------------
    # λ = 1 is the Bayesian weight (task A's posterior as task B's prior); the losses are
    # means over n_b data, so the penalty is divided by n_b too. EWC usually takes λ > 1.
    lam = EWC_STRENGTH / n_b
    with jax.enable_x64(True):
        F_diag, wa = jnp.asarray(exact), jnp.asarray(w_a)

        def loss_b_ewc(w):
            return loss_b(w) + 0.5 * lam * jnp.sum(F_diag * (w - wa) ** 2)

        w_plain, hist_plain = train(loss_b, wa, steps, lr, record=loss_a)
        w_ewc, hist_ewc = train(loss_b_ewc, wa, steps, lr, record=loss_a)
        final = {
            "loss_a_after_a": float(loss_a(wa)),
            "loss_a_plain": float(loss_a(w_plain)),
            "loss_a_ewc": float(loss_a(w_ewc)),
            "loss_b_plain": float(loss_b(w_plain)),
            "loss_b_ewc": float(loss_b(w_ewc)),
        }

    files = {"loss": out_dir / "ewc_mlp.png", "fisher": out_dir / "ewc_fisher.png"}
    fig, ax = plt.subplots(figsize=(6, 4))
    it = np.arange(len(hist_plain)) * 10
    ax.semilogy(it, hist_plain, label="task B alone")
    ax.semilogy(it, hist_ewc, label="task B + EWC (exact diagonal Fisher)")
    ax.set_xlabel("training step on task B")
    ax.set_ylabel("task A loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(files["loss"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    floor = 1e-12 * exact.max()
    ax.loglog(np.maximum(exact, floor), np.maximum(empirical, floor), ".", ms=2, alpha=0.4)
    lim = [floor, exact.max() * 10]
    ax.plot(lim, lim, "k-", lw=0.8, label="empirical = exact")
    ratio = (SIGMA_TRUE / SIGMA_MODEL) ** 2
    ax.plot(lim, [ratio * v for v in lim], "k--", lw=0.8, label="× (σ_true/σ_model)²")
    ax.set_xlabel("exact Fisher diagonal")
    ax.set_ylabel("empirical Fisher diagonal")
    ax.set_title(f"MLP, {n_w} weights, {n_a} data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(files["fisher"], dpi=120)
    plt.close(fig)

    ok = exact > 1e-8 * exact.max()
    summary = {
        "n_weights": n_w,
        "median_empirical_over_exact": float(np.median(empirical[ok] / exact[ok])),
        **final,
    }
    for k, v in summary.items():
        print(f"{k:>30}: {v:.4g}" if isinstance(v, float) else f"{k:>30}: {v}")
    return {
        "files": {k: str(v) for k, v in files.items()},
        "exact": exact,
        "empirical": empirical,
        "w_a": np.asarray(w_a),
        "data_a": (xa, ya),
        "width": width,
        "summary": summary,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true", help="a 673-weight MLP, 300 steps")
    args = parser.parse_args()
    main(fast=args.fast)
