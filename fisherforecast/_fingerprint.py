"""Fingerprints of a kernel call, computed without tracing the kernel (the disk cache's
"fast key", see :mod:`fisherforecast._compile` and ``docs/performance.md``).

A compiled kernel is determined by the library's code, the versions of JAX and the other
libraries it traces through, the shapes and dtypes of its arguments, its static arguments,
and the user code it calls: model functions, ODE right-hand sides, initial conditions,
observables, noise callables. The first are hashed here (:func:`library_fingerprint`); the
user code is recorded by its **jaxpr**, traced at the abstract shapes the kernel will call
it with, plus the values of its constants. A jaxpr is a complete record of what a function
computes, globals and closed-over values included, and tracing a model function costs
milliseconds, unlike tracing and lowering a kernel around a differential-equation solver.

Anything that cannot be fingerprinted reliably raises :class:`Unfingerprintable`, and the
caller falls back to tracing and lowering the kernel: user-defined pytree node classes
(their methods run inside the kernel), callables inside pytree metadata that no handler
knows how to call, host callbacks, and custom derivative rules defined outside the covered
libraries (a jaxpr names such a rule but does not record it).

Handlers for the library's own classes are registered by their modules:
:func:`register_node` for pytree node types (an experiment: its model is traced with the
experiment's design), :func:`register_model` for model classes recorded without tracing
them whole (an ODE model: its right-hand side, initial state and observable).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import os
import sys
import warnings
from pathlib import Path

import jax
import jax.core
import jax.extend.core as jex_core
import numpy as np

__all__ = [
    "COVERED",
    "Context",
    "Unfingerprintable",
    "array_fingerprint",
    "covered_function",
    "jaxpr_fingerprint",
    "library_fingerprint",
    "model_fingerprint",
    "register_model",
    "register_node",
    "static_fingerprint",
    "tree_fingerprint",
]

#: Top-level packages whose code is part of the key: this library by the hash of its
#: source files, the others by their versions.
COVERED = ("fisherforecast", "jax", "jaxlib", "numpy", "diffrax", "equinox", "lineax", "optimistix")
_VERSIONED = COVERED[1:]
_MAX_DEPTH = 64


class Unfingerprintable(Exception):
    """This argument has no reliable fingerprint: trace and lower the kernel instead."""


# ---------------------------------------------------------------------------------------
# The covered code
# ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def library_fingerprint() -> bytes:
    """Hash of every ``.py`` file of this package (the model zoo included, symbolic links
    followed) and of the versions of the other covered packages; once per process."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for name in _VERSIONED:
        version = getattr(sys.modules.get(name), "__version__", None)
        if not isinstance(version, str):
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = "-"
        h.update(f"{name} {version}\n".encode())
    return h.digest()


@functools.lru_cache(maxsize=1)
def _covered_dirs() -> tuple[str, ...]:
    import importlib.util

    dirs = []
    for name in COVERED:
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.realpath(loc) + os.sep)
    dirs.append(os.path.realpath(Path(__file__).resolve().parent / "models") + os.sep)
    return tuple(dirs)


def _covered_file(path: str | None) -> bool:
    return bool(path) and os.path.realpath(str(path)).startswith(_covered_dirs())


def _covered_module(name) -> bool:
    return isinstance(name, str) and (name == "builtins" or name.split(".")[0] in COVERED)


def covered_function(fn, depth: int = 0) -> bool:
    """A named function of a covered package (not made by a factory: no ``<locals>`` in its
    name; a decorated one wraps a covered function too): its behaviour is then fixed by
    its package's code."""
    fn = getattr(fn, "__func__", fn)
    qualname = getattr(fn, "__qualname__", "")
    if "<locals>" in qualname or "<lambda>" in qualname or depth > 8:
        return False
    if not _covered_module(getattr(fn, "__module__", None)):
        return False
    code = getattr(fn, "__code__", None)
    if code is not None and not _covered_file(code.co_filename):
        return False
    wrapped = getattr(fn, "__wrapped__", None)
    return wrapped is None or covered_function(wrapped, depth + 1)


# ---------------------------------------------------------------------------------------
# Plain data
# ---------------------------------------------------------------------------------------
def array_fingerprint(x) -> str:
    """dtype, shape and a hash of the values of a concrete array."""
    arr = np.asarray(x)
    if arr.dtype == object:
        raise Unfingerprintable("object array")
    data = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    return f"array({arr.dtype.str},{arr.shape},{data})"


def static_fingerprint(obj, depth: int = 0) -> str:
    """A canonical text of plain data: numbers, strings, containers, arrays, dtypes,
    classes, enums and functions of covered packages, and dataclasses (equinox modules:
    diffrax solvers and step-size controllers) of covered packages, field by field."""
    if depth > _MAX_DEPTH:
        raise Unfingerprintable("too deep")
    t = type(obj)
    d = depth + 1
    if obj is None or t in (bool, int, str, float, complex):
        return f"{t.__name__}:{obj!r}"
    if t is bytes:
        return f"bytes:{hashlib.sha256(obj).hexdigest()}"
    if isinstance(obj, jax.core.Tracer):
        raise Unfingerprintable("tracer")
    if t in (tuple, list, frozenset, set) or (
        isinstance(obj, tuple) and hasattr(obj, "_fields") and _covered_module(t.__module__)
    ):
        items = sorted(obj, key=repr) if t in (frozenset, set) else obj
        inner = ",".join(static_fingerprint(x, d) for x in items)
        return f"{t.__module__}.{t.__qualname__}({inner})"
    if isinstance(obj, dict) and t is dict:
        pairs = sorted(obj.items(), key=lambda kv: repr(kv[0]))
        return "dict(" + ",".join(f"{k!r}:{static_fingerprint(v, d)}" for k, v in pairs) + ")"
    if isinstance(obj, np.ndarray | np.generic | jax.Array):
        return array_fingerprint(obj)
    if isinstance(obj, np.dtype):
        return f"dtype:{obj.str}"
    if isinstance(obj, type):
        if _covered_module(obj.__module__) and "<locals>" not in obj.__qualname__:
            return f"type:{obj.__module__}.{obj.__qualname__}"
        raise Unfingerprintable(f"class {obj!r}")
    if isinstance(obj, enum.Enum) and _covered_module(t.__module__):
        return f"enum:{t.__module__}.{t.__qualname__}.{obj.name}"
    if isinstance(obj, functools.partial):
        args = static_fingerprint((obj.func, obj.args, obj.keywords), d)
        return f"partial{args}"
    if callable(obj) and not dataclasses.is_dataclass(obj):
        fn = getattr(obj, "__func__", obj)
        qualname = getattr(fn, "__qualname__", None)  # None: a callable instance (ODEModel)
        if qualname is not None and covered_function(obj):
            return f"function:{getattr(fn, '__module__', '?')}.{qualname}"
        raise Unfingerprintable(f"callable {obj!r}")
    if dataclasses.is_dataclass(obj) and _covered_module(t.__module__):
        fields = ",".join(
            f"{f.name}={static_fingerprint(getattr(obj, f.name, None), d)}"
            for f in dataclasses.fields(obj)
        )
        return f"{t.__module__}.{t.__qualname__}({fields})"
    raise Unfingerprintable(f"{t.__module__}.{t.__qualname__}")


# ---------------------------------------------------------------------------------------
# Jaxprs of user code
# ---------------------------------------------------------------------------------------
def _callable_param_ok(value) -> bool:
    """A function-valued parameter of a jaxpr equation (a custom derivative rule) is
    acceptable when it is defined in a covered package."""
    info = getattr(value, "debug_info", None)
    src = getattr(info, "func_src_info", None)
    if isinstance(src, str) and " at " in src:
        return _covered_file(src.rsplit(" at ", 1)[1].rsplit(":", 1)[0])
    if isinstance(value, functools.partial):
        return _callable_param_ok(value.func)
    code = getattr(getattr(value, "__func__", value), "__code__", None)
    if code is not None:
        return _covered_file(code.co_filename)
    return _covered_module(getattr(type(value), "__module__", None))


def _check_jaxpr(jaxpr, consts: list, depth: int = 0) -> None:
    """Refuse host callbacks and custom rules from uncovered code; collect the constants of
    nested closed jaxprs."""
    if depth > _MAX_DEPTH:
        raise Unfingerprintable("jaxpr too deep")
    for eqn in jaxpr.eqns:
        if "callback" in eqn.primitive.name:
            raise Unfingerprintable(f"host callback {eqn.primitive.name}")
        for value in eqn.params.values():
            for v in value if isinstance(value, tuple | list) else (value,):
                if isinstance(v, jex_core.ClosedJaxpr):
                    consts.extend(v.consts)
                    _check_jaxpr(v.jaxpr, consts, depth + 1)
                elif isinstance(v, jex_core.Jaxpr):
                    _check_jaxpr(v, consts, depth + 1)
                elif callable(v) and not isinstance(v, type) and not _callable_param_ok(v):
                    raise Unfingerprintable(f"custom rule {v!r} outside the covered packages")


def jaxpr_fingerprint(closed) -> str:
    """The text of a closed jaxpr (no source locations) and hashes of all its constants."""
    text = str(closed.jaxpr)
    if " at 0x" in text:  # an object printed by identity: not reproducible
        raise Unfingerprintable("object in jaxpr")
    consts = list(closed.consts)
    _check_jaxpr(closed.jaxpr, consts)
    return text + "\nconsts:" + ",".join(array_fingerprint(c) for c in consts)


def _aval(x):
    if isinstance(x, jax.core.Tracer):
        raise Unfingerprintable("tracer")
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=x.weak_type)
    if isinstance(x, np.ndarray | np.generic):
        return jax.ShapeDtypeStruct(x.shape, jax.dtypes.canonicalize_dtype(x.dtype))
    if type(x) in (bool, int, float, complex):
        dtype = jax.dtypes.canonicalize_dtype(np.asarray(x).dtype)
        return jax.ShapeDtypeStruct((), dtype, weak_type=True)
    raise Unfingerprintable(f"leaf {type(x).__name__}")


class Context:
    """How a kernel calls user code: ``build(fid)`` turns the kernel's parameter argument
    ``fid`` into the parameters a model sees; ``design`` is the design of the experiment
    being fingerprinted; ``models``: whether the kernel calls the experiments' models at
    all (a kernel of the noise model alone does not: its executable does not depend on
    them)."""

    def __init__(self, fid=None, build=None, design=None, models=True):
        self.fid, self.build, self.design, self.models = fid, build, design, models

    def with_design(self, design) -> Context:
        return Context(self.fid, self.build, design, self.models)

    def trace(self, body) -> str:
        """Fingerprint of ``body(params, design)`` traced at the kernel's shapes."""
        if self.build is None:
            raise Unfingerprintable("no parameter context for user code")
        build = self.build

        def wrapped(fid, design):
            return body(build(fid), design)

        try:
            fid, design = jax.tree_util.tree_map(_aval, (self.fid, self.design))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                closed = jax.make_jaxpr(wrapped)(fid, design)
        except Unfingerprintable:
            raise
        except Exception as exc:  # the kernel's own trace will report it
            raise Unfingerprintable(f"tracing failed: {exc!r}") from None
        return jaxpr_fingerprint(closed)


# ---------------------------------------------------------------------------------------
# Registered handlers
# ---------------------------------------------------------------------------------------
_NODES: dict[type, object] = {}
_MODELS: dict[type, object] = {}


def register_node(cls: type, handler) -> None:
    """``handler(aux, children, ctx) -> str`` for pytree nodes of exactly ``cls``."""
    _NODES[cls] = handler


def register_model(cls: type, handler) -> None:
    """``handler(model, ctx) -> str`` for models of exactly ``cls`` (instead of a jaxpr
    of the whole model)."""
    _MODELS[cls] = handler


def model_fingerprint(model, ctx: Context) -> str:
    """A model: its registered handler, else the jaxpr of ``model(params, design)``
    (``model(params)`` without a design); a constant where the kernel does not call
    models."""
    if not ctx.models:
        return "model not called"
    handler = _MODELS.get(type(model))
    if handler is not None:
        return f"{type(model).__qualname__}:" + handler(model, ctx)  # pyright: ignore[reportCallIssue]
    if not callable(model):
        raise Unfingerprintable("model not callable")

    def body(params, design):
        return model(params) if design is None else model(params, design)

    return "model:" + ctx.trace(body)


def _one_level(x):
    children, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is not x)
    return children, treedef.node_data()


def tree_fingerprint(tree, ctx: Context, depth: int = 0) -> str:
    """A dynamic argument: its pytree structure, the shape and dtype of each leaf, and the
    fingerprint of every node's metadata (registered handlers for the library's classes;
    plain data for containers and other classes of covered packages)."""
    if depth > _MAX_DEPTH:
        raise Unfingerprintable("too deep")
    children, node = _one_level(tree)
    if node is None:  # a leaf
        a = _aval(tree)
        sharding = f",{tree.sharding}" if isinstance(tree, jax.Array) else ""
        return f"leaf({a.dtype},{a.shape},{a.weak_type}{sharding})"
    typ, aux = node
    handler = _NODES.get(typ)
    if handler is not None:
        return f"{typ.__qualname__}[{handler(aux, children, ctx)}]"  # pyright: ignore[reportCallIssue]
    if typ not in (tuple, list, dict, type(None)) and not _covered_module(typ.__module__):
        raise Unfingerprintable(f"pytree node {typ!r}")
    if typ is dict:
        if not all(type(k) in (str, int) for k in aux):
            raise Unfingerprintable("dict keys")
        aux_text = repr(list(aux))
    elif isinstance(typ, type) and issubclass(typ, tuple) and hasattr(typ, "_fields"):
        aux_text = ""
    else:
        aux_text = static_fingerprint(aux)
    inner = ",".join(tree_fingerprint(c, ctx, depth + 1) for c in children)
    return f"{typ.__module__}.{typ.__qualname__}[{aux_text}]({inner})"
