"""Fisher-weighted merging of separately fitted models (Matena & Raffel 2022).

Models with the same parameters, each fitted to its own data, are merged by the
precision-weighted average

    θ* = (Σᵢ wᵢ Fᵢ)⁻¹ Σᵢ wᵢ Fᵢ θᵢ,

the mode of the product of their Laplace-approximated posteriors N(θᵢ, Fᵢ⁻¹) (raised to the
powers wᵢ), whose precision is Σᵢ wᵢ Fᵢ (Matena & Raffel 2022, arXiv:2111.09832, Eq. 2). For
linear-Gaussian models with flat priors this is exactly the fit of the pooled data.

* :func:`merge` takes dense :class:`FisherMatrix` objects (fiducial = fitted values θᵢ),
  aligns them by parameter name, and returns the merged FisherMatrix with fiducial θ*. It
  is rank-aware: a direction that model ``i`` leaves unconstrained (a null vector of Fᵢ, or
  a parameter it does not have) gets no weight from θᵢ, so it takes the other models'
  values. When the sum Σ wᵢ Fᵢ is itself singular, no model determines some combination
  and the error names it.
* :func:`merge_pytrees` is the form for networks: parameters and *diagonal* Fisher
  approximations as pytrees of arrays (e.g. from the squared gradients of the
  log-likelihood). It works leaf by leaf in float64 and never forms a matrix, so it needs
  memory for a few copies of the parameters only (10⁶ parameters: tens of MB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, SingularFisherError, quote
from ._inverse import robust_inverse
from ._matrix import FisherMatrix
from ._x64 import float64


def _check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray):
        raise InputError(
            f"`weights` must be a list of {n} positive numbers (one per model) or None; "
            f"received {quote(weights)}."
        )
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(
            f"`weights` must be a list of {n} positive numbers; received {quote(weights)}."
        ) from None
    if w.size != n:
        raise InputError(
            f"`weights` has {w.size} entries for {n} models; give one weight per model "
            f"(received {quote(weights)})."
        )
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise InputError(
            f"`weights` must be positive and finite; received {quote(weights)}. Leave a "
            "model out of the list instead of giving it weight 0."
        )
    return w


def _check_fishers(fishers) -> list[FisherMatrix]:
    if isinstance(fishers, FisherMatrix | str | bytes) or not isinstance(fishers, Sequence):
        fishers = ()
    if not fishers:
        raise InputError(
            "merge expects a non-empty list of ff.FisherMatrix objects (each with the "
            f"fitted parameter values as its fiducial); received {quote(fishers)}."
        )
    for k, F in enumerate(fishers):
        if not isinstance(F, FisherMatrix):
            raise InputError(f"merge expects ff.FisherMatrix objects; item {k} is {quote(F)}.")
        if F.fiducial is None:
            raise InputError(
                f"merge: matrix {k} ({F.name or 'unnamed'}) has no fiducial. The fiducial "
                "holds the model's fitted parameter values θᵢ that are being averaged; "
                "build it with ff.FisherMatrix(matrix, names, fiducial={...})."
            )
    return list(fishers)


def merge(fishers, weights=None, *, name: str | None = None) -> FisherMatrix:
    """Fisher-weighted merge of separately fitted models: ``θ* = (Σ wᵢFᵢ)⁻¹ Σ wᵢFᵢθᵢ``.

    Each :class:`FisherMatrix` carries one model's fitted values θᵢ as its fiducial and
    its Fisher information Fᵢ at that point. The result is the Laplace approximation of
    the product of the models' posteriors: a FisherMatrix with matrix ``Σ wᵢFᵢ`` and
    fiducial θ* (Matena & Raffel 2022, arXiv:2111.09832). ``F1 + F2`` refuses different
    fiducials, which is right for forecasts of one experiment; `merge` is for *fits*.

    **Arguments:**

    - `fishers`: a list of FisherMatrix objects, each with a fiducial. Parameters are
      aligned by name: the union of all names is merged, and a parameter missing from a
      model gets no information (and no vote) from it.
    - `weights`: optional positive weights wᵢ, one per model (default all 1).
    - `name`: the merged matrix's name (default: the names joined by ``⊕``).

    **Rank-aware:** a direction a model leaves unconstrained (a null vector of Fᵢ) does not
    see θᵢ, so it takes the other models' values; only the sum Σ wᵢFᵢ must be invertible,
    and when it is not, `SingularFisherError` names the combination that no model
    constrains. The solve goes through :func:`ff.robust_inverse` (unit-diagonal scaling,
    Cholesky) plus one step of iterative refinement.

    **Returns:** a :class:`FisherMatrix` with ``metadata["merged"]`` listing the inputs'
    names and weights.

    ```python
    >>> import fisherforecast as ff
    >>> F1 = ff.FisherMatrix([[4.0]], ["w"], fiducial={"w": 1.0})
    >>> F2 = ff.FisherMatrix([[1.0]], ["w"], fiducial={"w": 2.0})
    >>> ff.merge([F1, F2]).fiducial   # (4·1 + 1·2) / 5
    {'w': 1.2}
    >>> G = ff.FisherMatrix([[1.0, 0.0], [0.0, 0.0]], ["w", "b"], fiducial={"w": 0, "b": 9})
    >>> H = ff.FisherMatrix([[2.0]], ["b"], fiducial={"b": 3.0})
    >>> ff.merge([G, H]).fiducial     # G says nothing about b: b comes from H
    {'w': 0.0, 'b': 3.0}
    ```
    """
    fishers = _check_fishers(fishers)
    w = _check_weights(weights, len(fishers))
    if name is not None and not isinstance(name, str):
        raise InputError(f"`name` must be a string or None; received {quote(name)}.")
    names: list[str] = []
    for F in fishers:
        names.extend(n for n in F.names if n not in names)
    P = len(names)
    total = np.zeros((P, P))
    rhs = np.zeros(P)
    for F, wk in zip(fishers, w, strict=True):
        idx = [names.index(n) for n in F.names]
        theta = np.array([F.fiducial[n] for n in F.names])  # pyright: ignore[reportOptionalSubscript]
        total[np.ix_(idx, idx)] += wk * F.matrix
        rhs[idx] += wk * (F.matrix @ theta)
    total = 0.5 * (total + total.T)
    labels = {}
    for F in reversed(fishers):
        labels.update(F.labels)
    # Describe a singular sum in the parameters' own terms, using the inputs' fitted values
    # (first model that has the parameter) to speak in ln-parameters where they are positive.
    ref = {}
    for F in reversed(fishers):
        ref.update(F.fiducial or {})
    try:
        cov = robust_inverse(total, names, ref, what="The merged Fisher matrix Σ wᵢFᵢ").covariance
    except SingularFisherError as exc:
        raise SingularFisherError(
            "merge: no model constrains some combination of the parameters, so the merged "
            f"values θ* are not defined. {exc}\nGive the merge a model (or a prior, as an "
            "ff.FisherMatrix with a fiducial) that constrains it.",
            directions=exc.directions,
            names=exc.names,
            spaces=exc.spaces,
        ) from None
    theta_star = cov @ rhs
    theta_star = theta_star + cov @ (rhs - total @ theta_star)  # one refinement step
    label = name if name is not None else ("⊕".join(F.name for F in fishers if F.name) or None)
    meta = {
        "merged": {
            "names": [F.name for F in fishers],
            "weights": [float(v) for v in w],
        }
    }
    return FisherMatrix(
        total,
        names,
        fiducial={n: float(v) for n, v in zip(names, theta_star, strict=True)},
        labels=labels,
        name=label,
        metadata=meta,
    )


class MergedPytree(NamedTuple):
    """Result of :func:`merge_pytrees`.

    Attributes:
        params: the merged parameters θ*, a pytree of numpy float64 arrays with the inputs'
            structure.
        fisher: the merged diagonal Fisher ``Σ wᵢ(Fᵢ + ε)``, same structure.

    A NamedTuple: ``params, fisher = ff.merge_pytrees(...)`` unpacks it. Each element is
    the Fisher-weighted mean ``Σ Fᵢ θᵢ / Σ Fᵢ``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> thetas = [{"w": np.array([1.0, 4.0])}, {"w": np.array([3.0, 0.0])}]
    >>> fishers = [{"w": np.array([1.0, 3.0])}, {"w": np.array([1.0, 1.0])}]
    >>> out = ff.merge_pytrees(thetas, fishers)
    >>> out.params["w"].tolist()     # (1·1 + 1·3)/2, (3·4 + 1·0)/4
    [2.0, 3.0]
    >>> out.fisher["w"].tolist()     # 1 + 1, 3 + 1
    [2.0, 4.0]
    ```
    """

    params: Any
    fisher: Any


def _merge_leaf(thetas, fishers, weights, epsilon):
    """One leaf: θ* = Σ wᵢ(Fᵢ+ε)θᵢ / Σ wᵢ(Fᵢ+ε); the plain weighted mean where no model
    carries information (the ε → 0 limit of the same formula)."""
    num = jnp.zeros_like(thetas[0])
    den = jnp.zeros_like(thetas[0])
    for th, f, wk in zip(thetas, fishers, weights, strict=True):
        fw = wk * (f + epsilon)
        num = num + fw * th
        den = den + fw
    plain = sum(wk * th for th, wk in zip(thetas, weights, strict=True)) / sum(weights)
    informed = den > 0
    merged = jnp.where(informed, num / jnp.where(informed, den, 1.0), plain)
    return merged, den


_merge_leaf_jit = jax.jit(_merge_leaf)


def _leaves(tree, what: str, k: int, structure=None):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if structure is not None and treedef != structure:
        raise InputError(
            f"merge_pytrees: {what}[{k}] has the structure {treedef}, but {what}[0] has "
            f"{structure}; every model must have the same parameter pytree."
        )
    out = []
    for j, leaf in enumerate(leaves):
        arr = np.asarray(leaf)
        if arr.dtype.kind not in "fiu":
            raise InputError(
                f"merge_pytrees: leaf {j} of {what}[{k}] is not a real array ({quote(leaf)})."
            )
        out.append(arr)
    return out, treedef


def merge_pytrees(params, fishers, weights=None, *, epsilon: float = 0.0) -> MergedPytree:
    """Fisher-weighted merge of networks with diagonal Fisher approximations.

    Element by element, ``θ* = Σᵢ wᵢ(Fᵢ+ε)θᵢ / Σᵢ wᵢ(Fᵢ+ε)`` (Matena & Raffel 2022,
    arXiv:2111.09832, Eq. 3). A parameter that no model informs (``Σ wᵢ(Fᵢ+ε) = 0``) takes
    the plain weighted average ``Σ wᵢθᵢ / Σ wᵢ``, the ε → 0 limit of the formula.

    The work is done leaf by leaf in float64 and never forms a matrix: memory is a few
    copies of the largest leaf beyond the inputs, so 10⁶ parameters are merged in tens of
    MB. Repeated calls with the same leaf shapes reuse the compiled kernel.

    **Arguments:**

    - `params`: a list of parameter pytrees θᵢ (dicts of arrays, e.g. a network's
      weights), all with the same structure and shapes.
    - `fishers`: a list of pytrees of the same structure holding the diagonal Fisher
      entries Fᵢ ≥ 0 (e.g. the mean squared per-example gradient of the log-likelihood).
    - `weights`: optional positive weights wᵢ, one per model (default all 1).
    - `epsilon`: a non-negative floor added to every Fisher entry (Matena & Raffel's
      regulariser; 0 by default).

    **Returns:** :class:`MergedPytree` ``(params, fisher)`` of numpy float64 pytrees.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> a = {"w": np.array([1.0, 5.0]), "b": np.array(0.0)}
    >>> b = {"w": np.array([3.0, 1.0]), "b": np.array(2.0)}
    >>> Fa = {"w": np.array([1.0, 0.0]), "b": np.array(0.0)}
    >>> Fb = {"w": np.array([1.0, 2.0]), "b": np.array(0.0)}
    >>> out = ff.merge_pytrees([a, b], [Fa, Fb])
    >>> out.params["w"].tolist(), float(out.params["b"])   # b: no information -> mean
    ([2.0, 1.0], 1.0)
    ```
    """
    if not isinstance(params, Sequence) or isinstance(params, str) or not params:
        raise InputError(
            f"merge_pytrees `params` must be a non-empty list of parameter pytrees; received "
            f"{quote(params)}."
        )
    if not isinstance(fishers, Sequence) or isinstance(fishers, str) or len(fishers) != len(params):
        raise InputError(
            f"merge_pytrees `fishers` must be a list of {len(params)} pytrees (one diagonal "
            f"Fisher per model); received {quote(fishers)}."
        )
    w = _check_weights(weights, len(params))
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise InputError(f"`epsilon` must be a number >= 0; received {quote(epsilon)}.") from None
    if not (math.isfinite(eps) and eps >= 0):
        raise InputError(f"`epsilon` must be a finite number >= 0; received {quote(epsilon)}.")
    theta_leaves, treedef = _leaves(params[0], "params", 0)
    all_thetas = [theta_leaves]
    for k in range(1, len(params)):
        all_thetas.append(_leaves(params[k], "params", k, treedef)[0])
    all_fishers = [_leaves(f, "fishers", k, treedef)[0] for k, f in enumerate(fishers)]
    merged_leaves, fisher_leaves = [], []
    for j in range(len(theta_leaves)):
        shape = theta_leaves[j].shape
        for k in range(len(params)):
            for what, arr in (("params", all_thetas[k][j]), ("fishers", all_fishers[k][j])):
                if arr.shape != shape:
                    raise InputError(
                        f"merge_pytrees: leaf {j} of {what}[{k}] has shape {arr.shape}, but "
                        f"params[0] has {shape} there."
                    )
            if not np.all(np.isfinite(all_thetas[k][j])):
                raise InputError(
                    f"merge_pytrees: leaf {j} of params[{k}] contains NaN or inf; merge "
                    "finite parameters only."
                )
            if np.any(all_fishers[k][j] < 0) or not np.all(np.isfinite(all_fishers[k][j])):
                raise InputError(
                    f"merge_pytrees: leaf {j} of fishers[{k}] has negative or non-finite "
                    "entries; a diagonal Fisher is finite and >= 0."
                )
        with float64():
            th = tuple(jnp.asarray(all_thetas[k][j], dtype=jnp.float64) for k in range(len(w)))
            fs = tuple(jnp.asarray(all_fishers[k][j], dtype=jnp.float64) for k in range(len(w)))
            m, d = _merge_leaf_jit(th, fs, tuple(float(v) for v in w), eps)
            merged_leaves.append(np.asarray(m, dtype=np.float64))
            fisher_leaves.append(np.asarray(d, dtype=np.float64))
    return MergedPytree(
        jax.tree_util.tree_unflatten(treedef, merged_leaves),
        jax.tree_util.tree_unflatten(treedef, fisher_leaves),
    )
