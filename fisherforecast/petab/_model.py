"""The forward model of one PEtab problem: ``model(params, design) -> [y, σ]``.

One instance serves every condition of a problem (the condition lives in the design), so
``ff.fisher`` compiles it once per problem and number of rows.

Forward-mode derivatives of the state trajectory are taken only along the parameters that
reach the dynamics (rate constants, initial values, condition overrides): scale factors,
offsets and noise parameters enter the observables alone, and pushing their tangents
through the ODE solve would only carry zeros (Bachmann: 27 of 113 parameters reach the
dynamics). A ``jax.custom_jvp`` on the trajectory computes its Jacobian along those
parameters and maps the incoming tangents onto it; any other tangent (of the design, e.g.
the measurement times) falls back to differentiating the whole solve.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.custom_derivatives import SymbolicZero

from .._fingerprint import Context, Unfingerprintable, register_model, static_fingerprint
from ._mathml import JaxWalker
from ._simulate import Simulator

SCALES = ("lin", "log", "log10")


def unscale(theta, codes):
    """Parameters from the problem's scale to linear (codes: 0 lin, 1 log, 2 log10)."""
    return jnp.where(codes == 0, theta, jnp.where(codes == 1, jnp.exp(theta), 10.0**theta))


class PetabModel:
    """``model(params, design)`` for the experiments of one problem (see the module doc).

    `params` holds the estimated parameters on the problem's scale; `design` one entry per
    measurement row (see :mod:`._tables`).
    """

    def __init__(
        self,
        sim: Simulator,
        names,
        scale_codes,
        base_k,
        est_k_index,
        targets,
        observables,
        *,
        preequilibrate: bool,
        steady_rows: bool,
        dynamic=None,
    ):
        self.sim = sim
        self.names = tuple(names)
        self.scale_codes = np.asarray(scale_codes, dtype=np.int32)
        self.base_k = np.asarray(base_k, dtype=np.float64)
        self.est_k_index = np.asarray(est_k_index, dtype=np.int32)
        self.k_targets = np.array([i for _, kind, i in targets if kind == "k"], dtype=np.int32)
        self.k_cols = np.array([j for j, t in enumerate(targets) if t[1] == "k"], dtype=np.int32)
        self.x_targets = np.array([i for _, kind, i in targets if kind == "x"], dtype=np.int32)
        self.x_cols = np.array([j for j, t in enumerate(targets) if t[1] == "x"], dtype=np.int32)
        self.observables = observables  # [(obs_id, formula, noise)] in index order
        self.preequilibrate = preequilibrate
        self.steady_rows = steady_rows
        self.__name__ = "petab_model"
        self.traces = 0  # how many times JAX traced the model (a retracing check)
        # positions (in `names`) of the parameters that reach the dynamics; None: all
        dyn = [i for i, n in enumerate(self.names) if dynamic is None or n in dynamic]
        self.dynamic_index = np.asarray(dyn, dtype=np.int32)

    def _trajectory(self, theta, design):
        """The states at the measurement rows, differentiated along the dynamic
        parameters only (see the module doc). Built from this very object at each trace,
        so that a copy with other settings never solves with its original's."""
        return _reduced_jvp(self._solve_states, self.dynamic_index)(theta, design)

    def with_observables(self, extra) -> PetabModel:
        """A copy that also computes the observables `extra` (``(id, formula, noise, 0,
        0)`` entries, no placeholders), appended after this model's; the solve and its
        derivative are shared."""
        out = copy.copy(self)
        out.observables = list(self.observables) + list(extra)
        out.traces = 0
        return out

    # --- parameters -----------------------------------------------------------------------
    def theta(self, params):
        """The estimated parameters as one vector, in `names` order (problem's scale)."""
        return jnp.stack([jnp.asarray(params[n], dtype=jnp.float64) for n in self.names])

    def constants(self, params):
        """The constants vector ``k`` (linear scale) before condition overrides."""
        return self._constants(self.theta(params) if self.names else jnp.zeros(0))

    def _constants(self, theta):
        k = jnp.asarray(self.base_k)
        if not self.names:
            return k
        return k.at[self.est_k_index].set(unscale(theta, jnp.asarray(self.scale_codes)))

    def _apply(self, k, src, val):
        """Condition overrides: ``(k', values)`` with NaN meaning "keep"."""
        src = src.astype(jnp.int32)
        v = jnp.where(src >= 0, k[jnp.maximum(src, 0)], val)
        if self.k_targets.size:
            new = v[self.k_cols]
            old = k[self.k_targets]
            k = k.at[self.k_targets].set(jnp.where(jnp.isnan(new), old, new))
        return self.sim.with_derived(k), v

    def _override_states(self, x, v):
        if not self.x_targets.size:
            return x
        new = v[self.x_cols]
        return x.at[self.x_targets].set(jnp.where(jnp.isnan(new), x[self.x_targets], new))

    def initial(self, params, design):
        """``(k, x0)`` of the simulation (after pre-equilibration, if any)."""
        return self._initial(self.constants(params), design)

    def _initial(self, k0, design):
        cond = (jnp.asarray(design["cond_src"])[0], jnp.asarray(design["cond_val"])[0])
        if self.preequilibrate:
            pre = (jnp.asarray(design["pre_src"])[0], jnp.asarray(design["pre_val"])[0])
            kp, vp = self._apply(k0, *pre)
            xp = self._override_states(self.sim.initial_state(kp), vp)
            x_ss = self.sim.steady_state(kp, xp)
            ks, vs = self._apply(k0, *cond)
            return ks, self._override_states(x_ss, vs)
        ks, vs = self._apply(k0, *cond)
        return ks, self._override_states(self.sim.initial_state(ks), vs)

    def _solve_states(self, theta, design):
        """States at each measurement row, ``(N, n_states)``, from the parameter vector."""
        k, x0 = self._initial(self._constants(theta), design)
        t = jnp.asarray(design["time"])
        steady = jnp.isinf(t)
        tf = jnp.where(steady, 0.0, t)
        order = jnp.argsort(tf)
        ys = self.sim.solve(k, x0, tf[order])
        X = jnp.zeros_like(ys).at[order].set(ys)
        if self.steady_rows:
            X = jnp.where(steady[:, None], self.sim.steady_state(k, x0)[None, :], X)
        return X

    # --- the model --------------------------------------------------------------------------
    def states(self, params, design):
        """``(k, t, X)``: the constants after the condition's overrides, the row times
        (0 for steady-state rows) and the states at each measurement row ``(N, n)``."""
        theta = self.theta(params) if self.names else jnp.zeros(0)
        k0 = self._constants(theta)
        cond = (jnp.asarray(design["cond_src"])[0], jnp.asarray(design["cond_val"])[0])
        k, _ = self._apply(k0, *cond)
        t = jnp.asarray(design["time"])
        tf = jnp.where(jnp.isinf(t), 0.0, t)
        return k, tf, self._trajectory(theta, design)

    def _row(self, t, x, obs, opl, npl, k):
        env, walker = self.sim.env(t, x, k)
        ys, ss = [], []
        for oid, formula, noise, n_obs, n_noise in self.observables:
            local = dict(env)
            for j in range(n_obs):
                local[f"observableParameter{j + 1}_{oid}"] = opl[j]
            for j in range(n_noise):
                local[f"noiseParameter{j + 1}_{oid}"] = npl[j]
            w = JaxWalker(local) if (n_obs or n_noise) else walker
            ys.append(jnp.asarray(w(formula), dtype=jnp.float64) * jnp.ones(()))
            ss.append(jnp.asarray(w(noise), dtype=jnp.float64) * jnp.ones(()))
        return jnp.stack(ys)[obs], jnp.stack(ss)[obs]

    def _placeholders(self, k, src, val):
        src = jnp.asarray(src).astype(jnp.int32)
        return jnp.where(src >= 0, k[jnp.maximum(src, 0)], jnp.asarray(val))

    def __call__(self, params, design):
        self.traces += 1
        k, tf, X = self.states(params, design)
        opl = self._placeholders(k, design["obs_src"], design["obs_val"])
        npl = self._placeholders(k, design["noise_src"], design["noise_val"])
        obs = jnp.asarray(design["observable"]).astype(jnp.int32)
        y, s = jax.vmap(self._row, in_axes=(0, 0, 0, 0, 0, None))(tf, X, obs, opl, npl, k)
        return jnp.stack([y, s])


def petab_fingerprint(model: PetabModel, ctx: Context) -> str:
    """The fast-cache-key fingerprint of a :class:`PetabModel` (see
    :mod:`fisherforecast._fingerprint`): a hash of everything its program is built from
    (every attribute of the model and of its simulator: the SBML model's sympy
    expressions by ``srepr``, arrays by value, the solver options; sympy's version),
    instead of a jaxpr. Tracing a PetabModel for a jaxpr costs as much as tracing the
    kernel (2.7 s on Boehm) and its jaxpr names objects by identity, so it never gave a
    key; with this one a second process loads the compiled kernel without tracing it.
    Computed afresh at each call (a kernel-table miss), so a model changed in place never
    keeps an old key. A simulator of another class than :class:`Simulator`, or an
    attribute of a type the fingerprint does not know, raises ``Unfingerprintable`` (the
    kernel is then traced, never loaded stale). The mapping of the kernel's parameters
    onto the model's (:meth:`PetabModel.theta`) is traced, which is cheap."""
    if type(model.sim) is not Simulator:
        raise Unfingerprintable(f"simulator of class {type(model.sim).__qualname__}")
    state = {k: v for k, v in vars(model).items() if k not in ("traces", "__name__")}
    state["sim"] = dict(vars(model.sim))
    state["sympy"] = sp.__version__
    text = static_fingerprint(_plain(state))
    names = ctx.trace(lambda params, design: model.theta(params) if model.names else 0.0)
    return f"{hashlib.sha256(text.encode()).hexdigest()};{names}"


def _plain(obj):
    """`obj` with sympy expressions as their ``srepr`` and dataclasses as dicts, for
    :func:`static_fingerprint`."""
    if isinstance(obj, sp.Basic):
        return "sympy:" + sp.srepr(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"dataclass": type(obj).__qualname__, **fields}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return tuple(_plain(v) for v in obj)
    return obj


register_model(PetabModel, petab_fingerprint)


def _reduced_jvp(solve, dyn):
    """``solve(theta, design)`` whose forward-mode derivative in ``theta`` is taken along
    the positions ``dyn`` only (the others do not reach it); see the module doc."""

    @jax.custom_jvp
    def trajectory(theta, design):
        # `dyn` lives in the rule's closure, which a jaxpr does not record; the disk
        # cache's fast key sees it through petab_fingerprint (`dynamic_index`).
        return solve(theta, design)

    def rule(primals, tangents):
        theta, design = primals
        d_theta, d_design = tangents
        moved = [
            t
            for t in jax.tree_util.tree_leaves(
                d_design, is_leaf=lambda x: isinstance(x, SymbolicZero)
            )
            if not isinstance(t, SymbolicZero)
        ]
        if moved or dyn.size == 0 or dyn.size == theta.shape[0]:
            # design tangents (or nothing to gain): differentiate the whole solve
            d_theta = _instantiate(d_theta)
            d_design = jax.tree_util.tree_map(
                _instantiate, d_design, is_leaf=lambda x: isinstance(x, SymbolicZero)
            )
            return jax.jvp(solve, (theta, design), (d_theta, d_design))
        if isinstance(d_theta, SymbolicZero):
            X = solve(theta, design)
            return X, jnp.zeros_like(X)

        def along(sub):
            X = solve(theta.at[dyn].set(sub), design)
            return X, X

        J, X = jax.jacfwd(along, has_aux=True)(theta[dyn])
        return X, J @ d_theta[dyn]

    trajectory.defjvp(rule, symbolic_zeros=True)
    return trajectory


def _instantiate(t):
    if not isinstance(t, SymbolicZero):
        return t
    aval: Any = t.aval
    return np.zeros(aval.shape, aval.dtype)  # float0 for integer inputs
