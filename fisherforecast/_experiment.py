"""The Experiment container: a forward model, a noise model and a design."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import jax
import jax.core
import numpy as np

from ._compile import LEGACY
from ._errors import InputError, quote
from ._fingerprint import (
    Context,
    Unfingerprintable,
    model_fingerprint,
    register_node,
    static_fingerprint,
    tree_fingerprint,
)
from ._noise import Gaussian, NoiseModel, warn_if_float32
from ._noise_callables import call_callable
from ._x64 import as_float64_tree


def _has_tracer(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


@dataclasses.dataclass(frozen=True, eq=False)
class Experiment:
    """A forward model, its noise model and the experimental design. Immutable.

    **Arguments:**

    - `model`: a JAX-traceable function ``model(params, design)`` (or ``model(params)``
      when `design` is ``None``). ``params`` is a dict name -> scalar. The output is an
      array of any shape, real or complex.
    - `noise`: a noise model, e.g. ``ff.Gaussian(sigma=0.1)``, ``ff.Poisson()`` or
      ``ff.PSD(psd, df)``.
    - `design`: any pytree (measurement times, frequencies, doses). Floating leaves are
      stored as numpy float64 so that nothing is rounded under a float32 JAX default.
    - `name`: a label used in reports and saved files.

    Experiments are JAX pytrees: the design and the noise arrays are leaves, the model is
    static. ``ff.fisher`` therefore compiles once per model and output shape.

    ```python
    >>> import jax.numpy as jnp, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, t: p["A"] * jnp.exp(-t / p["tau"]),
    ...                     noise=ff.Gaussian(sigma=0.1), design=jnp.linspace(0, 10, 50),
    ...                     name="lab")
    >>> exp.name
    'lab'
    ```
    """

    model: Any
    noise: NoiseModel
    design: Any = None
    name: str | None = None

    def __post_init__(self):
        if not callable(self.model):
            raise TypeError(
                f"Experiment `model` must be callable as model(params, design); received "
                f"{quote(self.model)}."
            )
        if not isinstance(self.noise, NoiseModel):
            raise TypeError(
                "Experiment `noise` must be a noise model such as ff.Gaussian(sigma=...), "
                f"ff.Poisson() or ff.PSD(psd, df); received {quote(self.noise)}."
            )
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"Experiment `name` must be a string; received {quote(self.name)}.")
        _check_model_signature(self.model, with_design=self.design is not None)
        if self.design is not None and not _has_tracer(self.design):
            _check_design_leaves(self.design)
            warn_if_float32(self.design, "An Experiment design", stacklevel=4)
            object.__setattr__(self, "design", as_float64_tree(self.design))

    @property
    def label(self) -> str:
        """How messages refer to this experiment: ``experiment 'name'`` or ``the experiment``."""
        return f"experiment {self.name!r}" if self.name else "the experiment"

    def replace(self, **changes) -> Experiment:
        """A copy with some fields changed, e.g. ``exp.replace(design=new_times)``."""
        return dataclasses.replace(self, **changes)

    def __call__(self, params):
        """Evaluate the model at ``params`` (a dict)."""
        if self.design is None:
            return self.model(params)
        return self.model(params, self.design)

    def __repr__(self):
        model = getattr(self.model, "__name__", type(self.model).__name__)
        design = jax.tree_util.tree_map(lambda x: getattr(x, "shape", x), self.design)
        return (
            f"Experiment(model={model}, noise={self.noise!r}, design={design}, name={self.name!r})"
        )


def _check_design_leaves(design):
    """Refuse design leaves that are not numbers (strings, bytes, objects): JAX cannot
    carry them into compiled code, and would fail later with its own message."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(design)
    for path, leaf in leaves:
        if callable(leaf):
            continue
        where = "design" + jax.tree_util.keystr(path)
        try:
            arr = np.asarray(leaf)
        except Exception:  # ragged nests and the like
            arr = np.asarray([None], dtype=object)
        if arr.dtype.kind in "biufc":
            continue
        if arr.dtype == object:
            try:
                arr.astype(np.float64)
                continue
            except (TypeError, ValueError):
                pass
        raise InputError(
            f"Experiment `design` must hold numbers only (arrays, floats, ints), but "
            f"{where} is {quote(leaf)}. Keep labels, units and other settings out of the "
            "design: bind them into the model with functools.partial or a closure."
        )


def _check_model_signature(model, with_design):
    """The model is called as ``model(params, design)``, or ``model(params)`` without a
    design: say so now rather than with a TypeError from deep inside tracing. (A model
    taking ``(params, design)`` with no design yet is fine: design tools supply one.)"""
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):  # builtins, some C extensions: cannot tell
        return
    ps = list(sig.parameters.values())
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in ps)
    name = getattr(model, "__name__", "model")
    if len(required) > 2:
        raise TypeError(
            f"Experiment `model` must take (params, design) or (params); its "
            f"signature is {name}{sig}."
        )
    if with_design and len(positional) < 2 and not varargs:
        raise TypeError(
            f"Experiment `model` is called as model(params, design), but its signature is "
            f"{name}{sig}. Make the model take (params, design), or leave design=None."
        )


def _value_key(obj, depth=0):
    """A hashable stand-in for ``obj`` that compares equal exactly when two models are the
    same computation by value (see :class:`_StaticModel`)."""
    if depth > 32:
        return _Leaf(obj)
    if isinstance(obj, functools.partial):
        d = depth + 1
        return (
            functools.partial,
            _value_key(obj.func, d),
            tuple(_value_key(a, d) for a in obj.args),
            tuple(sorted((k, _value_key(v, d)) for k, v in obj.keywords.items())),
        )
    if obj is None or isinstance(obj, bool | int | str | bytes):
        return (type(obj), obj)
    if isinstance(obj, float | complex):
        return (type(obj), repr(obj))  # -0.0 and 0.0 differ; 1 and 1.0 and True differ
    if isinstance(obj, np.ndarray | np.generic) or (
        isinstance(obj, jax.Array) and not isinstance(obj, jax.core.Tracer)
    ):
        arr = np.asarray(obj)
        if arr.dtype != object:
            return _ArrayKey(type(obj), arr)
    if type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
        items = tuple(obj)  # pyright: ignore[reportArgumentType]
        return (type(obj), tuple(_value_key(x, depth + 1) for x in items))
    if type(obj) is dict:
        try:
            items = sorted(obj.items())
        except TypeError:
            return _Leaf(obj)
        return (dict, tuple((k, _value_key(v, depth + 1)) for k, v in items))
    return _Leaf(obj)


class _ArrayKey:
    """An array by type, shape, dtype and content."""

    __slots__ = ("data", "dtype", "hash", "kind", "shape")

    def __init__(self, kind, arr):
        self.kind = kind
        self.shape = arr.shape
        self.dtype = arr.dtype
        self.data = np.ascontiguousarray(arr).tobytes()
        self.hash = hash((self.shape, self.dtype.str, self.data))

    def __eq__(self, other):
        return (
            isinstance(other, _ArrayKey)
            and self.kind is other.kind
            and self.shape == other.shape
            and self.dtype == other.dtype
            and self.data == other.data
        )

    def __hash__(self):
        return self.hash


class _Leaf:
    """Any other object: equal when it is the same object or ``==`` says so with a plain
    bool; hashed by value when it can be, else by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        if not isinstance(other, _Leaf):
            return False
        if self.obj is other.obj:
            return True
        if type(self.obj) is not type(other.obj):
            return False
        try:
            eq = self.obj == other.obj
        except Exception:  # arrays compared element-wise, and the like: not the same model
            return False
        return eq if isinstance(eq, bool) else False

    def __hash__(self):
        try:
            return hash(self.obj)
        except TypeError:
            return id(self.obj)


class _StaticModel:
    """The model as static pytree data, i.e. part of the compilation-cache key.

    Two keys match when the models are the same computation *by value*: the same object;
    ``functools.partial`` objects whose function, arguments and keywords match
    recursively (arrays by type, shape, dtype and content; floats by their exact value;
    tuples, named tuples, lists and dicts element by element); or other objects whose
    ``==`` gives a plain ``True``. Anything else matches only itself, and an unhashable
    model hashes by identity. So ``functools.partial(f, x=1.0)`` built twice compiles
    once, while ``x=2.0`` compiles its own kernel.
    """

    __slots__ = ("_key", "model")

    def __init__(self, model):
        self.model = model
        self._key = None

    def key(self):
        if self._key is None:
            self._key = _Leaf(self.model) if LEGACY else _value_key(self.model)
        return self._key

    def __eq__(self, other):
        if not isinstance(other, _StaticModel):
            return NotImplemented
        if self.model is other.model:
            return True
        return self.key() == other.key()

    def __hash__(self):
        return hash(self.key())


class _Label:
    """An experiment's name as static pytree data that is *not* part of the
    compilation-cache key: all labels compare equal, so experiments that differ only in
    their name (e.g. candidate measurements "x at t=1", "x at t=2") share one kernel.
    Traced code never reads the name; messages name experiments from the host side."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, _Label)

    def __hash__(self):
        return hash(_Label)

    def __repr__(self):
        return repr(self.name)


def register_experiment_class(cls):
    """Register an Experiment (sub)class as a pytree: noise and design are the leaves."""

    def flatten(exp):
        return (exp.noise, exp.design), (_StaticModel(exp.model), _Label(exp.name))

    def unflatten(aux, children):
        obj = object.__new__(cls)  # no __post_init__: leaves may be tracers
        object.__setattr__(obj, "noise", children[0])
        object.__setattr__(obj, "design", children[1])
        object.__setattr__(obj, "model", aux[0].model)
        object.__setattr__(obj, "name", aux[1].name)
        return obj

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    if cls.__module__.split(".")[0] == __name__.split(".")[0]:
        # The library's own experiment classes: the model is fingerprinted with this
        # experiment's design (user subclasses have no fast cache key).
        register_node(cls, functools.partial(_fingerprint, cls=cls, unflatten=unflatten))
    return cls


def _fingerprint(aux, children, ctx: Context, cls, unflatten) -> str:
    """Fast cache key of an experiment: noise model, design shapes and the model at the
    kernel's parameter shapes and this design (the name is not part of it). A class
    with its own ``__call__`` is traced through it, as the kernels call it."""
    noise, design = children
    ctx = ctx.with_design(design)
    parts = (tree_fingerprint(noise, ctx), tree_fingerprint(design, ctx))
    if cls.__call__ is Experiment.__call__:
        return ";".join((*parts, model_fingerprint(aux[0].model, ctx)))
    call = ctx.trace(lambda params, d: unflatten(aux, (noise, d))(params))
    return ";".join((*parts, f"call:{call}"))


register_experiment_class(Experiment)


def _gaussian_fingerprint(aux, children, ctx: Context) -> str:
    """Fast cache key of a Gaussian noise model: array settings by shape, a sigma/cov
    callable by its jaxpr at the kernel's parameter shapes (not one of the mean)."""
    sigma_fn, cov_fn, arity, uses_mean = aux
    fn = sigma_fn if sigma_fn is not None else cov_fn
    head = static_fingerprint((sigma_fn is None, cov_fn is None, arity, uses_mean))
    kids = ",".join(tree_fingerprint(c, ctx) for c in children)
    if fn is None:
        return head + kids
    if uses_mean:
        raise Unfingerprintable("a noise callable of the model mean")
    return (
        head
        + kids
        + ctx.trace(lambda params, design: call_callable(fn, arity, False, params, design, None))
    )


register_node(Gaussian, _gaussian_fingerprint)
