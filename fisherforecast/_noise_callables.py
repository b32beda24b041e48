"""User callables of noise models: ``f(params)``, ``f(params, design)``, or, when the
noise follows the model, ``f(mean, params)`` / ``f(mean, params, design)``.

A callable whose first argument is named ``mean`` (or any callable given with
``uses_mean=True``) receives the model mean at the same parameters, so a combined
additive + proportional error ``lambda mean, p: p["a"] + p["b"] * abs(mean)`` needs no
second model evaluation: the engine passes the Jacobian it already has, and the noise
model differentiates ``σ(μ(θ), θ)`` through a linearisation ``μ + J·(θ' − θ)`` (exact
first derivatives, which is all the Fisher matrix needs).
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp

from ._errors import InputError

__all__ = ["broadcast_flat", "call_callable", "callable_signature", "linearised_mean"]


def callable_signature(fn, what, uses_mean=None) -> tuple[int, bool]:
    """``(arity, uses_mean)``: how many of ``(params, design)`` `fn` takes (1 or 2), and
    whether it takes the model mean first."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2, bool(uses_mean)
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2, bool(uses_mean)
    if uses_mean is None:
        uses_mean = bool(params) and params[0].name == "mean"
    n = len(params) - (1 if uses_mean else 0)
    if n not in (1, 2):
        first = (
            "(mean, params) or (mean, params, design)"
            if uses_mean
            else "(params) or (params, design)"
        )
        raise TypeError(
            f"{what} must be a callable taking {first}; received a callable with signature "
            f"{sig}. (A first argument named `mean` receives the model mean.)"
        )
    return n, bool(uses_mean)


def call_callable(fn, arity, uses_mean, params, design, mean):
    """Call a noise callable with the arguments it takes."""
    args = (params,) if arity == 1 else (params, design)
    if uses_mean:
        if mean is None:  # an internal call that cannot know the mean
            raise InputError(
                "this noise model's callable takes the model mean, which is not available "
                "here; give a callable of (params) or (params, design) instead."
            )
        return fn(mean, *args)
    return fn(*args)


def linearised_mean(mean, jacobian, theta):
    """``θ' ↦ μ + J (θ' − θ)``: the mean's first-order expansion (value ``μ`` and
    derivative ``J`` at ``θ``), or the constant ``μ`` without a Jacobian."""
    if jacobian is None:
        return lambda th: mean
    return lambda th: mean + jnp.reshape(jacobian @ (th - theta), mean.shape)


def broadcast_flat(values, shape, what):
    """Broadcast a noise array to the model-output ``shape`` and flatten it."""
    values = jnp.asarray(values)
    try:
        out = jnp.broadcast_to(values, shape)
    except ValueError:
        raise InputError(
            f"{what} has shape {tuple(values.shape)}, which does not match (or broadcast to) "
            f"the model output shape {tuple(shape)}. Give one value per datum, a scalar, or "
            "an array that broadcasts to the output."
        ) from None
    return out.reshape(-1)
