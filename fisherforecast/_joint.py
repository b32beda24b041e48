"""Combining experiments: correlated joint experiments and per-experiment contributions."""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_experiments, check_fiducial, check_names
from ._errors import quote
from ._experiment import Experiment, register_experiment_class
from ._fisher import fisher
from ._matrix import FisherMatrix, marginal_sigma_or_inf
from ._noise import Gaussian
from ._x64 import float64


class _AnyParams(Mapping):
    """A params dict that answers every name with 1.0: used only to find output shapes."""

    def __getitem__(self, key):
        return jnp.ones((), dtype=jnp.float64)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __contains__(self, key):
        return True


@dataclasses.dataclass(frozen=True)
class _JointModel:
    """Concatenate the flattened outputs of several models (hashable: compiles once)."""

    models: tuple
    has_design: tuple
    complex_output: bool

    def __call__(self, params, designs):
        parts = []
        for model, has, design in zip(self.models, self.has_design, designs, strict=True):
            out = jnp.asarray(model(params, design) if has else model(params))
            parts.append(out.reshape(-1))
        return jnp.concatenate(parts)


def _output_shape(exp: Experiment):
    with float64():
        out = jax.eval_shape(lambda: exp(_AnyParams()))
    return out.shape, out.dtype


def _block_of(exp: Experiment, shape) -> np.ndarray:
    noise = exp.noise
    C = None
    if not noise.parameter_dependent:
        # The capability JointExperiment needs: a fixed, dense data covariance.
        with float64():
            C = noise.covariance(jnp.zeros(shape), {}, exp.design)
            C = None if C is None else np.asarray(C, dtype=np.float64)
    if C is None:
        raise TypeError(
            f"JointExperiment needs fixed Gaussian noise in every experiment; {exp.label} "
            f"has {noise!r}. Parameter-dependent or non-Gaussian noise has no "
            "cross-covariance to speak of: combine such experiments as a list instead."
        )
    return C


class JointExperiment(Experiment):
    """Several experiments whose noise is correlated, as one experiment.

    The joint data vector is the concatenation of each experiment's flattened output, and
    its covariance is the block matrix with each experiment's own covariance on the
    diagonal and `cross_cov` off the diagonal. With zero cross-covariance the joint Fisher
    matrix equals the sum of the individual ones.

    **Arguments:**

    - `experiments`: a list of experiments with fixed Gaussian noise.
    - `cross_cov`: for two experiments, the ``(N1, N2)`` cross-covariance of their flattened
      outputs; for more, a dict ``{(i, j): array}`` with ``i < j``. ``None`` means zero.
    - `name`: the joint experiment's name (default: the names joined by ``×``).

    **Raises:** `ValueError` when a block has the wrong shape or the joint covariance is not
    positive definite; `TypeError` for non-Gaussian or parameter-dependent noise.

    ```python
    >>> import jax.numpy as jnp, numpy as np, fisherforecast as ff
    >>> t = jnp.linspace(0.0, 1.0, 3)
    >>> e1 = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0), t)
    >>> e2 = ff.Experiment(lambda p, t: p["a"] - p["b"] * t, ff.Gaussian(sigma=1.0), t)
    >>> joint = ff.JointExperiment([e1, e2], cross_cov=0.5 * np.eye(3))
    >>> ff.fisher(joint, {"a": 1.0, "b": 2.0}).names
    ('a', 'b')
    ```
    """

    def __init__(self, experiments, cross_cov=None, name=None):
        if isinstance(experiments, Experiment) or not isinstance(experiments, list | tuple):
            raise TypeError(
                "JointExperiment `experiments` must be a list of at least two ff.Experiment; "
                f"received {quote(experiments)}."
            )
        experiments = as_experiments(list(experiments))
        if len(experiments) < 2:
            raise ValueError(
                "JointExperiment `experiments` must be a list of at least two ff.Experiment; "
                f"received a list of {len(experiments)}."
            )
        shapes, dtypes = zip(*(_output_shape(e) for e in experiments), strict=True)
        if any(jnp.issubdtype(d, jnp.complexfloating) for d in dtypes):
            raise TypeError("JointExperiment supports real-valued outputs only.")
        sizes = [int(np.prod(s)) for s in shapes]
        blocks = [_block_of(e, s) for e, s in zip(experiments, shapes, strict=True)]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        C = np.zeros((offsets[-1], offsets[-1]))
        for k, B in enumerate(blocks):
            C[offsets[k] : offsets[k + 1], offsets[k] : offsets[k + 1]] = B
        for (i, j), X in _cross_blocks(cross_cov, len(experiments)).items():
            X = np.asarray(X, dtype=np.float64)
            if X.shape != (sizes[i], sizes[j]):
                raise ValueError(
                    f"cross_cov block ({i}, {j}) has shape {X.shape}; experiments {i} and {j} "
                    f"have {sizes[i]} and {sizes[j]} outputs, so it must be "
                    f"({sizes[i]}, {sizes[j]})."
                )
            C[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] = X
            C[offsets[j] : offsets[j + 1], offsets[i] : offsets[i + 1]] = X.T
        try:
            noise = Gaussian(cov=C)
        except ValueError as exc:
            raise ValueError(
                f"the joint covariance built from cross_cov is invalid: {exc}"
            ) from None
        model = _JointModel(
            tuple(e.model for e in experiments),
            tuple(e.design is not None for e in experiments),
            False,
        )
        label = name or "×".join(e.name or f"exp{k}" for k, e in enumerate(experiments))
        super().__init__(model, noise, tuple(e.design for e in experiments), label)

    @property
    def experiments(self):
        return self.model.models


def _cross_blocks(cross_cov, n):
    if cross_cov is None:
        return {}
    if isinstance(cross_cov, Mapping):
        for key in cross_cov:
            if not (isinstance(key, tuple) and len(key) == 2 and 0 <= key[0] < key[1] < n):
                raise ValueError(
                    f"cross_cov keys must be pairs (i, j) with 0 <= i < j < {n}; received {key!r}."
                )
        return dict(cross_cov)
    if n != 2:
        raise ValueError(
            f"for {n} experiments give cross_cov as a dict {{(i, j): array}}; "
            f"received {quote(cross_cov)}."
        )
    return {(0, 1): cross_cov}


register_experiment_class(JointExperiment)


@dataclasses.dataclass(frozen=True)
class Contributions:
    """What each experiment adds: marginal σ alone, combined, and the improvement factor.

    Attributes:
        names: parameter names.
        alone: dict experiment label -> dict name -> σ (``inf`` where unconstrained alone);
            one entry per experiment, repeated names made unique as ``A``, ``A#2``, ...
        combined: dict name -> σ of the combination.
        improvement: dict name -> (best σ alone) / (combined σ).
    """

    names: tuple
    alone: dict
    combined: dict
    improvement: dict

    def summary(self) -> str:
        labels = list(self.alone)
        width = max([len(n) for n in self.names] + [9])
        cols = [f"{lab[:12]:>12}" for lab in labels]
        head = f"{'parameter':<{width}}  " + "  ".join(cols) + f"  {'combined':>12}  {'gain':>8}"
        rows = ["marginal 1σ errors, each experiment alone and combined", head, "-" * len(head)]
        for n in self.names:
            vals = "  ".join(f"{self.alone[lab][n]:>12.4g}" for lab in labels)
            rows.append(
                f"{n:<{width}}  {vals}  {self.combined[n]:>12.4g}  {self.improvement[n]:>8.3g}"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def plot(self, **kwargs):
        """Bar chart of σ per parameter for each experiment and the combination."""
        from .plot import sigma_bars

        key = _unique_labels([*self.alone, "combined"])[-1]  # never hides an experiment
        return sigma_bars({**self.alone, key: self.combined}, names=list(self.names), **kwargs)


def _unique_labels(raw):
    """Make labels unique, keeping the first occurrence: ``A, A, A`` -> ``A, A#2, A#3``.

    A generated label never takes a label that appears verbatim elsewhere in `raw`.
    """
    taken = set(raw)
    used = set()
    out = []
    for label in raw:
        new, k = label, 2
        while new in used or (new != label and new in taken):
            new = f"{label}#{k}"
            k += 1
        used.add(new)
        out.append(new)
    return out


def _labelled_items(experiments):
    """(label, item) pairs with unique labels; checks the `experiments` argument."""
    what = (
        "contributions `experiments` must be a list of ff.Experiment / ff.FisherMatrix "
        "or a dict label -> ff.Experiment / ff.FisherMatrix"
    )
    if isinstance(experiments, Mapping):
        for label, item in experiments.items():
            if not isinstance(label, str) or not label:
                raise TypeError(
                    f"{what}, with non-empty string labels; received the key {quote(label)}."
                )
            if not isinstance(item, Experiment | FisherMatrix):
                raise TypeError(f"{what}; received {quote(item)} under the key {label!r}.")
        return list(experiments.items())
    if not isinstance(experiments, list | tuple):
        raise TypeError(f"{what}; received {quote(experiments)}.")
    for k, item in enumerate(experiments):
        if not isinstance(item, Experiment | FisherMatrix):
            raise TypeError(f"{what}; received {quote(item)} at position {k}.")
    raw = [e.name or f"exp{k}" for k, e in enumerate(experiments)]
    return list(zip(_unique_labels(raw), experiments, strict=True))


def contributions(experiments, fiducial=None, *, params=None, prior=None) -> Contributions:
    """How much each experiment adds to a combination.

    **Arguments:**

    - `experiments`: a list of experiments (or Fisher matrices), or a dict label ->
      Experiment or FisherMatrix. A list item is labelled by its ``name`` (``exp{k}``, its
      position, when it has none); items that share a name are all kept and the repeats get
      ``#2``, ``#3``, ... (``[A, A.replace(...)]`` -> ``"A"``, ``"A#2"``). Pass a dict to
      choose the labels.
    - `fiducial`: the fiducial dict (not needed when every item is a FisherMatrix).
    - `params`: the parameters to vary (as in :func:`ff.fisher`).
    - `prior`: an optional FisherMatrix added to every case (e.g. a CMB prior). Parameters
      that only the prior constrains are marginalised over, alone and combined, but not
      reported.

    **Returns:** :class:`Contributions`; ``.summary()`` prints the table.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> t = jnp.linspace(0.0, 1.0, 5)
    >>> e1 = ff.Experiment(lambda p, t: p["a"] + p["b"] * t, ff.Gaussian(sigma=1.0), t, "A")
    >>> e2 = ff.Experiment(lambda p, t: p["a"] + 0 * t, ff.Gaussian(sigma=0.1), t, "B")
    >>> c = ff.contributions([e1, e2], {"a": 1.0, "b": 2.0})
    >>> c.alone["B"]["b"]   # B alone cannot measure b
    inf
    ```
    """
    if prior is not None and not isinstance(prior, FisherMatrix):
        raise TypeError(
            f"contributions `prior` must be an ff.FisherMatrix or None; received {quote(prior)}."
        )
    fishers = {}
    for label, item in _labelled_items(experiments):
        if isinstance(item, FisherMatrix):
            fishers[label] = item
        else:
            if fiducial is None:
                raise ValueError(
                    "contributions needs `fiducial` to compute the Fisher matrix "
                    f"of experiment {label!r}."
                )
            fid = check_fiducial(fiducial)
            names = check_names(params, fid)
            fishers[label] = fisher(item, fid, params=names)
    if not fishers:
        raise ValueError(
            "contributions needs at least one experiment; received an empty "
            f"{type(experiments).__name__}."
        )
    total = functools.reduce(operator.add, fishers.values())
    names = total.names
    # Embed each matrix into the full parameter set so that σ is comparable. σ comes from
    # the whole matrix (prior included): every parameter not reported is marginalised over,
    # exactly as in the combined case, never fixed.
    zero = FisherMatrix(np.zeros((len(names), len(names))), names)
    alone = {}
    for label, F in fishers.items():
        G = F + zero
        if prior is not None:
            G = G + prior
        sigma = marginal_sigma_or_inf(G)
        alone[label] = {n: sigma[n] for n in names}
    combined_F = total + prior if prior is not None else total
    combined = marginal_sigma_or_inf(combined_F)
    improvement = {}
    for n in names:
        best = min(alone[lab][n] for lab in alone)
        improvement[n] = best / combined[n] if math.isfinite(combined[n]) else math.nan
    return Contributions(tuple(names), alone, {n: combined[n] for n in names}, improvement)
