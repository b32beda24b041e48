"""PEtab's measurement noise: per datum normal or Laplace noise on a lin/log/log10 scale.

The model of a PEtab experiment returns a ``(2, N)`` array: row 0 the observables ``y``,
row 1 the noise scales ``σ`` (standard deviation for normal noise, scale ``b`` for Laplace
noise, on the transformed scale). Keeping ``σ`` in the output makes its derivatives exact
whatever it depends on (estimated noise parameters, or the states as in
``σ = a + b·y``), through the same forward-mode Jacobian as the observables.

For a datum ``m`` with transformation ``h`` (``lin``: ``h(y) = y``; ``log``: ``ln y``;
``log10``: ``log₁₀ y``), the density of ``m`` is that of ``h(m)`` times the Jacobian
``h'(m)`` (``1/m`` or ``1/(m ln 10)``). The Fisher metric on ``(y, σ)`` is

* ``h'(y)² / σ²`` for ``y`` (normal and Laplace alike),
* ``2 / σ²`` for a normal ``σ`` and ``1 / b²`` for a Laplace scale ``b``,

with no ``y``–``σ`` cross term (both densities are symmetric).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._noise import NoiseModel

LN10 = math.log(10.0)
TRANSFORMS = ("lin", "log", "log10")
DISTRIBUTIONS = ("normal", "laplace")


def _h(y, tr):
    """The observable transformation, element-wise (0 lin, 1 log, 2 log10)."""
    safe = jnp.where(tr > 0, y, 1.0)
    return jnp.where(tr == 0, y, jnp.where(tr == 1, jnp.log(safe), jnp.log10(safe)))


def _dh(y, tr):
    """``h'(y)``."""
    safe = jnp.where(tr > 0, y, 1.0)
    return jnp.where(tr == 0, 1.0, jnp.where(tr == 1, 1.0 / safe, 1.0 / (safe * LN10)))


def _h_inverse(z, tr):
    return jnp.where(tr == 0, z, jnp.where(tr == 1, jnp.exp(z), 10.0**z))


class PetabNoise(NoiseModel):
    """Normal or Laplace noise per datum on a lin/log/log10 scale (PEtab's noise model).

    The experiment's model returns ``[y, σ]`` (shape ``(2, N)``); the per-datum settings
    live in the design: ``design["transform"]`` (0 lin, 1 log, 2 log10),
    ``design["distribution"]`` (0 normal, 1 Laplace) and ``design["weight"]`` (1 for a
    datum, 0 for padding). :func:`fisherforecast.petab.load` builds these for you.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> from fisherforecast.petab import PetabNoise
    >>> design = {"t": np.array([1.0, 2.0]), "transform": np.array([0, 2]),
    ...           "distribution": np.array([0, 1]), "weight": np.ones(2)}
    >>> def model(p, d):                  # y = a·t, σ = 0.5 (normal) / b = 0.5 (Laplace)
    ...     return jnp.stack([p["a"] * d["t"], 0.5 * jnp.ones(2)])
    >>> exp = ff.Experiment(model, PetabNoise(), design=design)
    >>> F = ff.fisher(exp, {"a": 2.0})    # 1²/0.5² + (2/(4·ln 10))² / 0.5²
    >>> bool(np.isclose(F.matrix[0, 0], 4 + (0.5 / np.log(10)) ** 2 * 4))
    True
    ```
    """

    gaussian = False

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls()

    def __repr__(self):
        return "PetabNoise()"

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))

    @property
    def parameter_dependent(self) -> bool:
        # σ is part of the model output: with the output held fixed, the likelihood does
        # not depend on the parameters, and its information enters through the Jacobian.
        return False

    @staticmethod
    def _split(mean):
        m = mean.reshape(2, -1)
        return m[0], m[1]

    @staticmethod
    def _settings(design):
        tr = jnp.asarray(design["transform"]).astype(jnp.int32)
        dist = jnp.asarray(design["distribution"]).astype(jnp.int32)
        w = jnp.asarray(design["weight"])
        return tr, dist, w

    def _root_weights(self, mean, design):
        y, s = self._split(mean)
        tr, dist, w = self._settings(design)
        s = jnp.where(w > 0, s, 1.0)
        wy = jnp.sqrt(w) * jnp.abs(_dh(y, tr)) / s
        ws = jnp.sqrt(w) * jnp.where(dist == 0, jnp.sqrt(2.0), 1.0) / s
        return jnp.concatenate([wy, ws])

    def whiten(self, x, mean, params, design):
        r = self._root_weights(mean, design)
        return x * (r if x.ndim == 1 else r[:, None])

    def inner(self, a, b, mean, params, design):
        wa = self.whiten(a, mean, params, design)
        wb = self.whiten(b, mean, params, design)
        return jnp.matmul(wa.T, wb, precision=jax.lax.Precision.HIGHEST)

    def check_values(self, mean, params, design):
        y, s = self._split(mean)
        tr, _, w = self._settings(design)
        return {
            "noise standard deviations / Laplace scales must be positive and finite": jnp.where(
                w > 0, s, 1.0
            ),
            "observables with a log or log10 transformation must be positive": jnp.where(
                (w > 0) & (tr > 0), y, 1.0
            ),
        }

    def log_likelihood_terms(self, data, mean, params, design):
        """Per-datum ``ln p(m_k)`` (weight 0 for padding), shape ``(N,)``: the data are
        independent, so the empirical Fisher matrix is the sum of their scores' squares."""
        y, s = self._split(mean)
        m = jnp.asarray(data).reshape(2, -1)[0]
        tr, dist, w = self._settings(design)
        s = jnp.where(w > 0, s, 1.0)
        m = jnp.where(w > 0, m, jnp.where(tr > 0, 1.0, 0.0))
        r = _h(m, tr) - _h(y, tr)
        normal = -0.5 * jnp.log(2 * jnp.pi * s**2) - 0.5 * (r / s) ** 2
        laplace = -jnp.log(2 * s) - jnp.abs(r) / s
        per = jnp.where(dist == 0, normal, laplace) + jnp.log(_dh(m, tr))
        return w * per

    def log_likelihood(self, data, mean, params, design):
        return jnp.sum(self.log_likelihood_terms(data, mean, params, design))

    def expected_deviance(self, mean, mean0, params, params0, design):
        """``E₀[−2 ln L]`` over data drawn at ``mean0``, up to a constant (the Jacobian
        term ``−2 E₀ ln h'(m)`` does not depend on ``mean``)."""
        y, s = self._split(mean)
        y0, s0 = self._split(jnp.asarray(mean0))
        tr, dist, w = self._settings(design)
        s = jnp.where(w > 0, s, 1.0)
        s0 = jnp.where(w > 0, s0, 1.0)
        d = jnp.abs(_h(y, tr) - _h(y0, tr))
        normal = 2 * jnp.log(s) + (s0**2 + d**2) / s**2
        laplace = 2 * (jnp.log(2 * s) + (d + s0 * jnp.exp(-d / s0)) / s)
        return jnp.sum(w * jnp.where(dist == 0, normal, laplace))

    def simulate(self, key, mean, params, design):
        y, s = self._split(mean)
        tr, dist, _ = self._settings(design)
        k1, k2 = jax.random.split(key)
        eps = jnp.where(
            dist == 0,
            jax.random.normal(k1, y.shape, dtype=y.dtype),
            jax.random.laplace(k2, y.shape, dtype=y.dtype),
        )
        m = _h_inverse(_h(y, tr) + s * eps, tr)
        return jnp.stack([m, s]).reshape(jnp.shape(mean))
