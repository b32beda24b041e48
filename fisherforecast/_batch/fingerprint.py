"""The model of a batch run, fingerprinted by value (for resuming an HDF5 file).

Two runs may share a file only when they compute the same thing. A model is identified by
what it computes, not by its name: a function by its code (bytecode, constants, names),
defaults, closure cells and the module globals it reads; a ``functools.partial`` by its
function, arguments and keywords; numbers, strings, arrays and containers by value;
recursively, to ``MAX_DEPTH`` levels. Modules, classes and library functions (numpy, JAX,
...) count by their qualified name. Anything else (an instance of a user class, a callable
object) is *opaque*: its value cannot be fingerprinted, and the fingerprint says so.
"""

from __future__ import annotations

import builtins
import dataclasses
import dis
import functools
import hashlib
import types

import jax
import jax.core
import numpy as np

#: Nesting levels followed before a part of the model is declared opaque.
MAX_DEPTH = 12
SCALARS = (bool, int, float, complex, str, bytes, slice, range)
#: Objects defined in these packages count by their qualified name.
LIBRARIES = ("jax", "jaxlib", "numpy", "scipy", "math", "builtins", "equinox", "diffrax")


def model_fingerprint(model) -> tuple[str, list[str]]:
    """``(digest, opaque)``: a hex digest of `model` by value, and a description of each
    part whose value could not be fingerprinted (empty when the fingerprint is complete).

    ```python
    >>> import functools
    >>> from fisherforecast._batch.fingerprint import model_fingerprint
    >>> def f(p, t, k): return k * p["a"] * t
    >>> a, _ = model_fingerprint(functools.partial(f, k=1.0))
    >>> b, _ = model_fingerprint(functools.partial(f, k=2.0))
    >>> a == b, model_fingerprint(functools.partial(f, k=1.0)) == (a, [])
    (False, True)
    ```
    """
    h = hashlib.sha256()
    opaque: list[str] = []
    Walker(h, opaque).feed(model, "model", 0)
    return h.hexdigest()[:32], opaque


class Walker:
    """Feeds an object graph into a hash, recording the opaque parts."""

    def __init__(self, h, opaque):
        self.h, self.opaque, self.stack = h, opaque, set()

    def put(self, *parts):
        for part in parts:
            data = part if isinstance(part, bytes) else repr(part).encode()
            self.h.update(len(data).to_bytes(8, "little") + data)

    def feed(self, obj, where, depth):
        if depth > MAX_DEPTH:
            self.put("deep")
            self.opaque.append(f"{where} (nested deeper than {MAX_DEPTH} levels)")
            return
        if obj is None or obj is Ellipsis or isinstance(obj, SCALARS):
            self.put(type(obj).__name__, obj)
        elif isinstance(obj, set | frozenset):
            self.put(type(obj).__name__, sorted(repr(x) for x in obj))
            for x in sorted(obj, key=repr):
                self.feed(x, f"{where} element", depth + 1)
        elif isinstance(obj, np.ndarray | np.generic) or (
            isinstance(obj, jax.Array) and not isinstance(obj, jax.core.Tracer)
        ):
            self.array(obj, where)
        elif isinstance(obj, functools.partial):
            self.put("partial")
            self.feed(obj.func, f"{where}.func", depth + 1)
            self.feed(tuple(obj.args), f"{where}.args", depth + 1)
            self.feed(dict(obj.keywords), f"{where}.keywords", depth + 1)
        elif type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
            self.put(type(obj).__qualname__, len(obj))  # pyright: ignore[reportArgumentType]
            for i, x in enumerate(obj):  # pyright: ignore[reportArgumentType]
                self.feed(x, f"{where}[{i}]", depth + 1)
        elif type(obj) is dict:
            self.put("dict", len(obj))
            for key in sorted(obj, key=repr):
                self.put(key)
                self.feed(obj[key], f"{where}[{key!r}]", depth + 1)
        elif isinstance(obj, types.FunctionType | types.MethodType | types.CodeType):
            self.callable(obj, where, depth)
        elif isinstance(obj, types.ModuleType):
            self.put("module", obj.__name__)
        elif isinstance(obj, type) or library_object(obj):
            self.put("named", getattr(obj, "__module__", None), qualname(obj))
        elif dataclasses.is_dataclass(obj):  # (equinox modules, diffrax solvers, ...)
            self.put("dataclass", type(obj).__module__, type(obj).__qualname__)
            for field in dataclasses.fields(obj):
                self.put(field.name)
                self.feed(getattr(obj, field.name, None), f"{where}.{field.name}", depth + 1)
        elif own_object(obj) and hasattr(obj, "__dict__"):  # e.g. ff.ode_model(...)
            self.put("object", type(obj).__module__, type(obj).__qualname__)
            self.feed(dict(vars(obj)), where, depth + 1)
        elif callable(obj) and callable(getattr(obj, "__wrapped__", None)):  # jax.jit(f), ...
            self.put("wrapper", type(obj).__module__, type(obj).__qualname__)
            self.feed(obj.__wrapped__, f"{where}.__wrapped__", depth + 1)
        else:
            self.put("opaque", type(obj).__module__, type(obj).__qualname__)
            self.opaque.append(f"{where} (a {type(obj).__qualname__} object)")

    def array(self, obj, where):
        arr = np.asarray(obj)
        if arr.dtype == object:
            self.put("opaque-array")
            self.opaque.append(f"{where} (an object array)")
            return
        self.put("array", type(obj).__name__, arr.dtype.str, arr.shape)
        self.put(np.ascontiguousarray(arr).tobytes())

    def callable(self, obj, where, depth):
        if isinstance(obj, types.MethodType):
            self.put("method")
            self.feed(obj.__func__, f"{where}.__func__", depth + 1)
            self.feed(obj.__self__, f"{where}.__self__", depth + 1)
            return
        if isinstance(obj, types.CodeType):
            self.code(obj, where, depth)
            return
        if library_object(obj):
            self.put("named", obj.__module__, obj.__qualname__)
            if own_object(obj):  # a closure of this library (a model factory): its values
                self.closure(obj, where, depth)
            return
        if id(obj) in self.stack:  # recursion: already being fed
            self.put("cycle", obj.__qualname__)
            return
        self.stack.add(id(obj))
        try:
            self.put("function", obj.__module__, obj.__qualname__)
            self.code(obj.__code__, f"{where}.__code__", depth + 1)
            self.closure(obj, where, depth)
            for name in sorted(global_names(obj.__code__)):
                if name in obj.__globals__:
                    self.put(name)
                    self.feed(obj.__globals__[name], f"{where} global {name!r}", depth + 1)
                elif not hasattr(builtins, name):
                    self.put(name, "unbound")
        finally:
            self.stack.discard(id(obj))

    def closure(self, obj, where, depth):
        """A function's defaults and the values of its closure cells."""
        self.feed(obj.__defaults__, f"{where}.__defaults__", depth + 1)
        self.feed(obj.__kwdefaults__, f"{where}.__kwdefaults__", depth + 1)
        cells = obj.__closure__ or ()
        for name, cell in zip(obj.__code__.co_freevars, cells, strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                value = None
            self.put(name)
            self.feed(value, f"{where} closure {name!r}", depth + 1)

    def code(self, code, where, depth):
        self.put("code", code.co_name, code.co_argcount, code.co_kwonlyargcount)
        self.put(code.co_code, code.co_names, code.co_varnames, code.co_freevars)
        for i, const in enumerate(code.co_consts):
            if isinstance(const, types.CodeType):
                self.code(const, f"{where}.co_consts[{i}]", depth + 1)
            else:
                self.feed(const, f"{where}.co_consts[{i}]", depth + 1)


def global_names(code) -> set[str]:
    """The names a code object (and the code nested in it) may read as globals."""
    names = {
        ins.argval
        for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str)
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def qualname(obj) -> str:
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "")


def own_object(obj) -> bool:
    """Defined in fisherforecast (its closures and objects are followed by value)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = type(obj).__module__
    return module.split(".")[0] == "fisherforecast"


def library_object(obj) -> bool:
    """A function or object of a library (counted by its qualified name)."""
    if isinstance(obj, types.BuiltinFunctionType | types.BuiltinMethodType):
        return True
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not qualname(obj):
        return False
    top = module.split(".")[0]
    return top in LIBRARIES or top == "fisherforecast"
