"""The compiled kernel: vmap of the engine's single-item Fisher path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import cached_kernel
from .._engine import call_model, evaluate
from .reasons import Reason


# ---------------------------------------------------------------------------------------
# The compiled kernel: vmap of the engine's single-item Fisher path
# ---------------------------------------------------------------------------------------
def evaluate_item(experiments, fiducial, names, mode):
    """Fisher matrix and a failure code for one item. Pure; runs under vmap."""
    total = None
    bad_out = bad_jac = bad_noise = jnp.asarray(False)
    for exp in experiments:
        ev = evaluate(exp, fiducial, names, mode)
        total = ev.fisher if total is None else total + ev.fisher
        bad_out = bad_out | ~ev.finite_output
        bad_jac = bad_jac | ~ev.finite_jacobian
        bad_noise = bad_noise | ~ev.noise_ok
    code = jnp.where(
        bad_out,
        int(Reason.BAD_OUTPUT),
        jnp.where(
            bad_jac,
            int(Reason.BAD_JACOBIAN),
            jnp.where(bad_noise, int(Reason.BAD_NOISE), int(Reason.OK)),
        ),
    )
    return total, code.astype(jnp.int32)


@cached_kernel(static_argnames=("names", "mode", "design_batch"))
def chunk_kernel(experiments, fiducials, names, mode, design_batch):
    """``(C, P, P)`` matrices and ``(C,)`` codes for a chunk of ``C`` items."""
    if design_batch:
        designs = tuple(e.design for e in experiments)

        def one(designs, fiducial):
            exps = tuple(e.replace(design=d) for e, d in zip(experiments, designs, strict=True))
            return evaluate_item(exps, fiducial, names, mode)

        return jax.vmap(one)(designs, fiducials)
    return jax.vmap(lambda fiducial: evaluate_item(experiments, fiducial, names, mode))(fiducials)


@jax.jit
def probe(experiments, fiducial):
    """Model outputs at one item; only ever traced (``eval_shape``) for their shapes."""
    params = {k: jnp.asarray(v, jnp.float64) for k, v in fiducial.items()}
    return tuple(call_model(e, params) for e in experiments)


def take(experiments, fiducials, idx, design_batch, chunk_size):
    """The items ``idx`` padded (by repeating the last one) to ``chunk_size``."""
    pad = np.concatenate([idx, np.full(chunk_size - len(idx), idx[-1], dtype=idx.dtype)])
    fids = {k: v[pad] for k, v in fiducials.items()}
    if design_batch:
        experiments = tuple(
            e.replace(design=jax.tree_util.tree_map(lambda x: np.asarray(x)[pad], e.design))
            for e in experiments
        )
    return experiments, fids
