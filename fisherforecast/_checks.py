"""Argument checks shared by every entry point.

This is an internal namespace: the names are public so that modules import them without
reaching into another module's private names, but users should not rely on them. Every check
names the argument, quotes what it received and says what to do; bad values raise
:class:`InputError` (a ``ValueError``), unknown names :class:`ParameterError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

from ._errors import InputError, ParameterError, quote
from ._experiment import Experiment

#: Derivative modes of the engine.
MODES = ("forward", "reverse")


def as_experiments(experiment_or_list) -> list[Experiment]:
    """An Experiment or a non-empty list of them, as a list."""
    if isinstance(experiment_or_list, Experiment):
        return [experiment_or_list]
    if isinstance(experiment_or_list, list | tuple) and experiment_or_list:
        if all(isinstance(e, Experiment) for e in experiment_or_list):
            return list(experiment_or_list)
    raise TypeError(
        "Expected an ff.Experiment or a non-empty list of them; received "
        f"{quote(experiment_or_list)}."
    )


def check_fiducial(fiducial) -> dict[str, float]:
    """Validate a fiducial dict (names -> finite real scalars); return name -> float.

    Analyses that accept array-valued parameters use :func:`check_fiducial_arrays`."""
    out = check_fiducial_arrays(fiducial)
    arrays = {k: np.shape(v) for k, v in out.items() if np.ndim(v)}
    if arrays:
        name, shape = next(iter(arrays.items()))
        raise InputError(
            f"fiducial[{name!r}] must be a scalar here; received shape {shape}. Array-valued "
            "parameters are accepted by ff.fisher and ff.fisher_operator; for this analysis "
            "split them into named scalars (e.g. 'c0', 'c1', ...)."
        )
    return {k: float(v) for k, v in out.items()}


def check_fiducial_arrays(fiducial) -> dict[str, float | np.ndarray]:
    """Validate a fiducial dict whose values are finite real scalars or arrays; return
    name -> float (scalars) or read-only float64 array (array-valued parameters).

    An array parameter ``"calib"`` of shape ``(n,)`` gives the element names
    ``calib[0]``, ..., ``calib[n-1]`` (see :func:`element_names`), which must not clash
    with another fiducial key.
    """
    if not isinstance(fiducial, Mapping):
        raise TypeError(
            f"`fiducial` must be a dict of parameter name -> value; received {quote(fiducial)}."
        )
    if not fiducial:
        raise InputError("`fiducial` is empty: give at least one parameter value.")
    out = {}
    for name, value in fiducial.items():
        if not isinstance(name, str):
            raise TypeError(f"fiducial keys must be strings; received key {name!r}.")
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype == bool or np.iscomplexobj(arr):
            raise InputError(f"fiducial[{name!r}] must be real numbers; received {quote(value)}.")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"fiducial[{name!r}] must be a real number; received {value!r}.")
        if arr.size == 0:
            raise InputError(
                f"fiducial[{name!r}] is an empty array (shape {arr.shape}); give at least one "
                "value or drop the parameter."
            )
        if not np.all(np.isfinite(arr)):
            where = np.argwhere(~np.isfinite(arr))[:5].tolist() if arr.ndim else "scalar"
            raise InputError(
                f"fiducial[{name!r}] must be finite; received {quote(value)} (bad entries at "
                f"{where})."
            )
        if arr.ndim == 0:
            out[name] = float(arr)
        else:
            arr = np.array(arr, dtype=np.float64)
            arr.setflags(write=False)
            out[name] = arr
    clash = [n for k, v in out.items() if np.ndim(v) for n in element_names(k, v) if n in out]
    if clash:
        raise InputError(
            f"fiducial keys {clash[:5]} clash with the element names of an array-valued "
            "parameter; rename one of them."
        )
    return out


def element_names(name: str, value) -> tuple[str, ...]:
    """The names of a parameter's elements: ``(name,)`` for a scalar, ``name[i]`` (or
    ``name[i,j]`` for higher rank) in C order for an array.

    ```python
    >>> element_names("calib", [1.0, 2.0]), element_names("A", 1.0)
    (('calib[0]', 'calib[1]'), ('A',))
    ```
    """
    shape = np.shape(value)
    if not shape:
        return (name,)
    return tuple(f"{name}[{','.join(map(str, ix))}]" for ix in np.ndindex(*shape))


def expand_names(fiducial: Mapping, names: Sequence[str]) -> tuple[str, ...]:
    """The element names of the varied parameters ``names``, in the engine's order."""
    return tuple(e for n in names for e in element_names(n, fiducial[n]))


def flat_values(fiducial: Mapping, names: Sequence[str]) -> dict[str, float]:
    """Element name -> float value for ``names`` (array parameters expanded)."""
    out = {}
    for n in names:
        values = np.asarray(fiducial[n], dtype=np.float64).reshape(-1)
        out.update(zip(element_names(n, fiducial[n]), values.tolist(), strict=True))
    return out


def check_names(params, fiducial) -> tuple[str, ...]:
    """The names that vary: ``params`` (validated against the fiducial) or all of them."""
    if params is None:
        return tuple(fiducial)
    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise InputError("`params` is empty: name at least one parameter to vary.")
    dup = sorted({p for p in params if params.count(p) > 1})
    if dup:
        raise ParameterError(f"`params` lists {dup} more than once; received {params}.")
    unknown = [p for p in params if p not in fiducial]
    elements = [p for p in unknown if isinstance(p, str) and p.split("[")[0] in fiducial]
    if elements:
        block = elements[0].split("[")[0]
        raise ParameterError(
            f"`params` names {elements}: single elements of an array-valued parameter cannot "
            f"vary on their own. Vary the whole array (params=[{block!r}, ...]) and use "
            "F.fix(...) or F.marginalize(...) on the result, or split the array into scalars."
        )
    if unknown:
        raise ParameterError(
            f"`params` names {unknown}, which are not in the fiducial. Known parameters: "
            f"{list(fiducial)}."
        )
    return tuple(params)


def check_subset(requested, names: Sequence[str], what: str) -> list[str]:
    """``requested`` names (a name or a list), each known and listed once."""
    if isinstance(requested, str):
        requested = [requested]
    requested = expand_blocks(list(requested), names)
    unknown = [n for n in requested if n not in names]
    if unknown:
        shown = list(names) if len(names) <= 40 else [*names[:20], "...", *names[-5:]]
        raise ParameterError(
            f"{what} names {unknown}, which are not in this matrix. Parameters: {shown}."
        )
    dup = sorted({n for n in requested if requested.count(n) > 1})
    if dup:
        raise InputError(f"{what} lists {dup} more than once.")
    return requested


def expand_blocks(requested: list, names: Sequence[str]) -> list:
    """Replace the name of an array-valued parameter (``"calib"``, not itself in
    ``names``) by its element names (``calib[0]``, ``calib[1]``, ... found in ``names``)."""
    if all(n in names for n in requested):
        return requested
    out = []
    for n in requested:
        block = [] if not isinstance(n, str) or n in names else _block(n, names)
        out.extend(block or [n])
    return out


def _block(name: str, names: Sequence[str]) -> list[str]:
    prefix = name + "["
    return [m for m in names if m.startswith(prefix) and m.endswith("]")]


def check_mode(mode, experiments=()) -> str:
    """``mode`` is one of :data:`MODES` and every model supports it."""
    if mode not in MODES:
        raise InputError(f"`mode` must be one of {MODES}; received {mode!r}.")
    for exp in experiments:
        # Models may declare which derivative modes they support (e.g. ff.ode_model, whose
        # diffrax adjoint fixes it); say so instead of failing deep inside JAX.
        modes = getattr(exp.model, "autodiff_modes", None)
        if modes is not None and mode not in modes:
            raise InputError(
                f"mode={mode!r}, but the model of {exp.label} supports only "
                f"{tuple(modes)} differentiation. For an ff.ode_model, build it with "
                "adjoint='reverse' for reverse mode (or use the default mode='forward')."
            )
    return mode


def check_overwrite(overwrite) -> bool:
    """``overwrite`` is a real bool (a string such as ``"False"`` would be truthy)."""
    if not isinstance(overwrite, bool | np.bool_):
        raise TypeError(f"`overwrite` must be True or False; received {overwrite!r}.")
    return bool(overwrite)


def check_int(value, what: str, minimum: int) -> int:
    """An integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"`{what}` must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def is_real_number(value) -> bool:
    """A real Python or numpy scalar (bools excluded)."""
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def check_probabilities(levels, what: str = "levels") -> tuple[float, ...]:
    """Probabilities in (0, 1) — one or a sequence, distinct — as a tuple of floats (in
    the order given).

    ``levels`` means a probability content everywhere in the library (corner plots,
    coverage); thresholds of Δ(−2 ln L) are checked by :func:`check_delta_levels`.
    """

    def bad(detail):
        return InputError(
            f"`{what}` must be a probability in (0, 1) or a sequence of them, e.g. "
            f"(0.6827, 0.9545); received {quote(levels)}{detail}."
        )

    if is_real_number(levels):
        items = [levels]
    elif isinstance(levels, str | bytes | Mapping):
        raise bad("")
    else:
        try:
            items = levels.reshape(-1).tolist() if isinstance(levels, np.ndarray) else list(levels)
        except TypeError:
            raise bad("") from None
    if not items:
        raise bad(" (empty)")
    for v in items:
        if not is_real_number(v):
            raise bad(f": entry {quote(v)} is not a number")
        if not 0 < v < 1:
            raise bad(f": entry {v!r} is outside (0, 1)")
    out = tuple(float(v) for v in items)
    if len(set(out)) != len(out):
        raise bad(": repeated entries")
    return out


def check_data(
    data, experiments, means, what: str = "data", *, alternatives: Sequence[str] = ()
) -> tuple[np.ndarray, ...]:
    """User data against the model outputs: one array per experiment (a bare array for one
    experiment), each numeric, finite and of the output's shape; complex only where the
    noise model accepts it. Returns a tuple of float64 / complex128 arrays.

    ``alternatives`` names the other values the argument accepts (e.g. ``("asimov",
    "simulate")``), for the message about a malformed list."""
    many = len(experiments) > 1
    if many:
        if not isinstance(data, list | tuple) or len(data) != len(experiments):
            others = "".join(f"{a!r}, " for a in alternatives[:-1])
            others += f"{alternatives[-1]!r} or " if alternatives else ""
            raise InputError(
                f"`{what}` must be {others}a list of {len(experiments)} arrays (one per "
                f"experiment); received {quote(data)}."
            )
        items = list(data)
    else:
        items = [data]
    out = []
    for i, (d, m, exp) in enumerate(zip(items, means, experiments, strict=True)):
        name = f"`{what}[{i}]`" if many else f"`{what}`"
        arr = np.asarray(d)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array; received {quote(d)}.")
        if arr.shape != tuple(np.shape(m)):
            raise InputError(
                f"{name} has shape {arr.shape}, but the model of {exp.label} returns shape "
                f"{tuple(np.shape(m))} at the fiducial."
            )
        if np.iscomplexobj(arr):
            if not exp.noise.accepts_complex:
                raise InputError(f"{name} is complex but the noise model {exp.noise!r} is real.")
            arr = arr.astype(np.complex128)
        else:
            arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            where = np.argwhere(~np.isfinite(arr))[:5].tolist()
            raise InputError(f"{name} contains NaN or inf at {where}.")
        out.append(arr)
    return tuple(out)


def check_delta_levels(
    deltas, what: str = "deltas", *, probabilities: bool = True, stacklevel: int = 3
) -> tuple[float, ...]:
    """Thresholds of Δ(−2 ln L) (1 for the 68.27 %, 3.84 for the 95 % interval of one
    parameter): positive and finite, one or a sequence, as a tuple of floats.

    With `probabilities` (default), values that all lie below 1 look like probability
    contents: from 0.5 up they are refused, with the thresholds to use instead; below 0.5
    they are used as given, with a ``UserWarning`` (`stacklevel` points it at the caller's
    caller).

    ```python
    >>> check_delta_levels((1, 3.84))
    (1.0, 3.84)
    ```
    """
    items = (deltas,) if is_real_number(deltas) else deltas
    try:
        items = tuple(items) if not isinstance(items, str | bytes | Mapping) else ()
    except TypeError:
        items = ()
    if not items or not all(is_real_number(v) and 0 < float(v) < math.inf for v in items):
        raise InputError(
            f"`{what}` must be positive, finite Δ(−2 ln L) values (1 for the 68.27 %, 3.84 "
            f"for the 95 % interval); received {quote(deltas)}."
        )
    values = tuple(float(v) for v in items)
    if probabilities and max(values) < 1.0:
        hint = ", ".join(f"{NormalDist().inv_cdf(0.5 * (1.0 + p)) ** 2:.4g}" for p in values)
        message = (
            f"`{what}` = {quote(deltas)}: every value is below 1, as if they were "
            f"probabilities. `{what}` are Δ(−2 ln L) thresholds, not confidence levels: 1 "
            "gives the 68.27 % and 3.84 the 95 % interval of one parameter. For the "
            f"probabilities {', '.join(f'{v:g}' for v in values)} pass {what}=({hint})."
        )
        if min(values) >= 0.5:
            raise InputError(message)
        warnings.warn(message + " Using them as Δ thresholds.", UserWarning, stacklevel=stacklevel)
    return values


def check_seed(seed, what: str = "seed") -> int:
    """A random seed: an integer (not a bool)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"`{what}` must be an integer; received {quote(seed)}.")
    return int(seed)


def check_name_mapping(value, names, what: str, expected: str, among: str) -> dict:
    """A dict keyed by some of `names` (``None`` gives ``{}``): refuses another type
    (`expected` says what the dict maps to) and unknown keys (`among` names the set)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"`{what}` must be a dict {expected}; received {quote(value)}.")
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ParameterError(f"`{what}` names {unknown}, which are not {among} {list(names)}.")
    return dict(value)
