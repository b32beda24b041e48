"""Normalising the inputs of ``corner``: items, parameter names, axis labels, colours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._errors import quote
from .._matrix import FisherMatrix


def is_sample_dict(obj) -> bool:
    """Whether `obj` is a non-empty dict name -> 1-D array of samples."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(
        isinstance(k, str)
        and not isinstance(v, Mapping | FisherMatrix)
        and not hasattr(v, "samples")
        and np.ndim(v) == 1
        for k, v in obj.items()
    )


def _items(obj, label=None):
    """Expand one input into a list of ``(label, kind, payload)``; kind 'fisher'/'samples'."""
    from .._sampling.crosscheck import CrossCheck

    if isinstance(obj, FisherMatrix):
        return [(label or obj.name or "Fisher", "fisher", obj)]
    if isinstance(obj, CrossCheck):
        F = obj.fisher
        centred = FisherMatrix(
            F.matrix, F.names, fiducial=dict(obj.reference), labels=F.labels, name=F.name
        )
        prefix = f"{label}: " if label else ""
        return [(f"{prefix}HMC", "samples", obj.samples), (f"{prefix}Fisher", "fisher", centred)]
    if is_sample_dict(obj):
        return [(label or "samples", "samples", obj)]
    if hasattr(obj, "samples") and is_sample_dict(obj.samples):
        return [
            (label or type(obj).__name__.replace("Samples", " samples"), "samples", obj.samples)
        ]
    raise TypeError(
        "ff.plot.corner expects FisherMatrix objects, sample dicts (name -> 1-D array), "
        "CrossCheck results, or a list / dict label -> of these; received "
        f"{quote(obj)}."
    )


def normalise_items(fishers_or_samples) -> list[tuple]:
    """The inputs of ``corner`` as a list of ``(label, kind, payload)``, kind ``"fisher"``
    (payload a FisherMatrix) or ``"samples"`` (payload a dict name -> 1-D array).

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0]], ["a"], name="exp")
    >>> [(lab, kind) for lab, kind, _ in normalise_items([F, {"a": np.zeros(3)}])]
    [('exp', 'fisher'), ('samples', 'samples')]
    ```
    """
    obj = fishers_or_samples
    if isinstance(obj, Mapping) and not is_sample_dict(obj):
        out = []
        for k, v in obj.items():
            out += _items(v, str(k))
        return out
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        if not obj:
            raise ValueError("ff.plot.corner received an empty list.")
        out = []
        for v in obj:
            out += _items(v)
        return out
    return _items(obj)


def _names_of(kind, payload):
    return tuple(payload.names) if kind == "fisher" else tuple(payload)


def resolve_names(items, names) -> tuple[str, ...]:
    """The parameters to plot: `names` checked against the inputs, or the union of theirs in
    order of appearance; every sample set must have samples of each.

    ```python
    >>> import fisherforecast as ff
    >>> items = normalise_items([ff.FisherMatrix([[1.0]], ["a"]), ff.FisherMatrix([[1.0]], ["b"])])
    >>> resolve_names(items, None), resolve_names(items, "b")
    (('a', 'b'), ('b',))
    ```
    """
    if names is None:
        seen = []
        for _, kind, payload in items:
            seen += [n for n in _names_of(kind, payload) if n not in seen]
        names = tuple(seen)
    else:
        names = (names,) if isinstance(names, str) else tuple(names)
        known = set()
        for _, kind, payload in items:
            known.update(_names_of(kind, payload))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"`names` lists {unknown}, which no input has; known: {sorted(known)}.")
    if not names:
        raise ValueError("nothing to plot: no parameter names.")
    for label, kind, payload in items:
        if kind == "samples" and not isinstance(payload, FisherMatrix):
            missing = [n for n in names if n not in payload]
            if missing:
                raise KeyError(
                    f"sample set {label!r} has no samples of {missing}; pass "
                    f"names=[...] to plot a subset."
                )
    return names


def resolve_labels(items, names, labels) -> dict[str, str]:
    """Axis label per parameter: `labels` (dict or list), else FisherMatrix labels, else
    the name.

    ```python
    >>> import fisherforecast as ff
    >>> items = normalise_items(ff.FisherMatrix(
    ...     [[1.0, 0.0], [0.0, 1.0]], ["a", "b"], labels={"a": r"\\alpha"}))
    >>> resolve_labels(items, ("a", "b"), None), resolve_labels(items, ("a", "b"), ["x", "y"])
    ({'a': '\\\\alpha', 'b': 'b'}, {'a': 'x', 'b': 'y'})
    ```
    """
    axis_labels = {n: n for n in names}
    for _, kind, payload in items:
        if kind == "fisher":
            for n, lab in payload.labels.items():
                if n in axis_labels and axis_labels[n] == n:
                    axis_labels[n] = lab
    if labels is None:
        return axis_labels
    if isinstance(labels, Mapping):
        axis_labels.update({k: str(v) for k, v in labels.items() if k in axis_labels})
        return axis_labels
    labels = list(labels)
    if len(labels) != len(names):
        raise ValueError(
            f"`labels` has {len(labels)} entries for {len(names)} parameters {list(names)}."
        )
    return dict(zip(names, map(str, labels), strict=True))


def resolve_colors(items, colors) -> list:
    """One matplotlib colour per item: `colors` checked, or ``C0, C1, …``.

    ```python
    >>> resolve_colors([("x", "fisher", None)] * 2, None), resolve_colors([("x", "", None)], "k")
    (['C0', 'C1'], ['k'])
    ```
    """
    if colors is None:
        return [f"C{i % 10}" for i in range(len(items))]
    colors = [colors] if isinstance(colors, str) else list(colors)
    if len(colors) < len(items):
        raise ValueError(
            f"`colors` has {len(colors)} entries for {len(items)} items "
            f"{[lab for lab, _, _ in items]}."
        )
    return colors
