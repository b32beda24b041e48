"""Compiled kernels that survive the process: an on-disk cache of serialized executables.

:func:`cached_kernel` wraps a function like ``jax.jit(fn, static_argnames=...)`` does, with
two differences:

* its in-process table is keyed by the static arguments, the pytree structure and the
  shapes/dtypes of the dynamic arguments and JAX's trace context (the float64 switch among
  them). Models are part of the structure and compare by value (``_StaticModel``), so two
  equal experiments share one compilation;
* on a miss it first computes a *fast key* without tracing the function: the kernel's
  name, a hash of the library's source files and of the versions of the libraries it
  traces through, backend and device, the trace context (float64 switch), the static
  arguments, and the structure, shapes and dtypes of the dynamic arguments with a
  fingerprint of their static metadata, user code included (model functions and ODE
  right-hand sides by their jaxprs at the kernel's shapes, see
  :mod:`fisherforecast._fingerprint`). An entry under that key is loaded and called
  with no tracing at all;
* otherwise it lowers the function, hashes the StableHLO text together with the versions,
  backend and device kind, and loads a serialized executable from the library's own cache
  directory instead of calling XLA; a freshly compiled executable is stored there, and the
  fast key (when the arguments have one) is stored as an alias of it.

Nothing here touches JAX's global configuration. The directory is
``$FISHERFORECAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/fisherforecast``, else
``~/.cache/fisherforecast``; ``FISHERFORECAST_CACHE=0`` turns the disk cache off. Entries
are written atomically (temporary file + rename), carry a checksum, and an entry that is
corrupt or cannot be loaded is removed and compiled again, never an error. Executables that
XLA cannot serialize (host callbacks: ``jax.pure_callback``, ``equinox.error_if``, an ODE
model with ``throw=True``) are simply not stored. See ``docs/performance.md``.

``FISHERFORECAST_LEGACY_JIT=1`` (read at import; for the benchmarks' "before" column) makes
:func:`cached_kernel` return a plain ``jax.jit`` and models compare by identity again.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import os
import pickle
import struct
import tempfile
import threading
from pathlib import Path

import jax
import jax.core
import numpy as np

from . import __version__
from ._fingerprint import (
    Context,
    Unfingerprintable,
    covered_function,
    library_fingerprint,
    static_fingerprint,
    tree_fingerprint,
)

__all__ = [
    "CachedKernel",
    "cache_dir",
    "cached_kernel",
    "clear_cache",
    "compile_stats",
    "reset_compile_stats",
]

#: Environment switches (documented in docs/performance.md).
ENV_CACHE = "FISHERFORECAST_CACHE"
ENV_CACHE_DIR = "FISHERFORECAST_CACHE_DIR"
ENV_LEGACY = "FISHERFORECAST_LEGACY_JIT"

_FORMAT = b"FFKERNEL1\n"  # file magic; bump when the layout of an entry changes
_ALIAS = b"FFALIAS1\n"  # payload prefix of a fast-key entry: (executable key, out treedef)
_SUBDIR = "kernels-v1"
_SUFFIX = ".xla"
_MAX_TABLE = 512  # compiled kernels kept per wrapped function in one process

LEGACY = os.environ.get(ENV_LEGACY, "").strip().lower() in ("1", "true", "yes", "on")

_STATS: collections.Counter = collections.Counter()
_STATS_LOCK = threading.Lock()


def _count(what: str) -> None:
    with _STATS_LOCK:
        _STATS[what] += 1


def compile_stats() -> dict[str, int]:
    """Counters of this process since the last reset: ``lowerings`` (traces + lowerings of
    a new key), ``compiles`` (XLA compilations), ``disk_loads`` (executables loaded from the
    disk cache after lowering), ``fast_hits`` (executables loaded by their fast key, with
    no tracing), ``fast_unkeyed`` (calls whose arguments have no fast key: they trace and
    lower), ``fast_writes`` (fast keys stored), ``disk_writes`` (executables stored),
    ``disk_rejected``
    (corrupt/incompatible entries removed), ``not_serializable`` (executables XLA cannot
    store) and ``disk_errors`` (unwritable directory and the like).

    ```python
    >>> from fisherforecast import _compile
    >>> sorted(_compile.compile_stats()) == sorted(_compile._KEYS)
    True
    ```
    """
    with _STATS_LOCK:
        return {k: int(_STATS.get(k, 0)) for k in _KEYS}


_KEYS = (
    "lowerings",
    "compiles",
    "disk_loads",
    "fast_hits",
    "fast_unkeyed",
    "fast_writes",
    "disk_writes",
    "disk_rejected",
    "not_serializable",
    "disk_errors",
)


def reset_compile_stats() -> None:
    """Set every counter of :func:`compile_stats` to zero."""
    with _STATS_LOCK:
        _STATS.clear()


# ---------------------------------------------------------------------------------------
# Where the cache lives
# ---------------------------------------------------------------------------------------
def _disk_enabled() -> bool:
    value = os.environ.get(ENV_CACHE, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def cache_dir() -> Path | None:
    """The directory of the on-disk kernel cache, or ``None`` when it is switched off.

    ``$FISHERFORECAST_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fisherforecast``, else
    ``~/.cache/fisherforecast`` (a versioned subdirectory of it holds the entries);
    ``FISHERFORECAST_CACHE=0`` switches the cache off.

    ```python
    >>> import os
    >>> from unittest import mock
    >>> from fisherforecast import _compile
    >>> with mock.patch.dict(os.environ, {"FISHERFORECAST_CACHE": "0"}):
    ...     _compile.cache_dir() is None
    True
    >>> env = {"FISHERFORECAST_CACHE": "1", "FISHERFORECAST_CACHE_DIR": "/tmp/ffc"}
    >>> with mock.patch.dict(os.environ, env):
    ...     str(_compile.cache_dir())
    '/tmp/ffc/kernels-v1'
    ```
    """
    if not _disk_enabled():
        return None
    root = os.environ.get(ENV_CACHE_DIR)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fisherforecast"
    return base / _SUBDIR


def clear_cache() -> int:
    """Delete every entry of the on-disk kernel cache; return how many were removed."""
    directory = cache_dir()
    if directory is None or not directory.is_dir():
        return 0
    n = 0
    for path in directory.glob("*" + _SUFFIX):
        try:
            path.unlink()
            n += 1
        except OSError:
            pass
    return n


# ---------------------------------------------------------------------------------------
# Entry keys and the entry file format
# ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _environment_fingerprint() -> bytes:
    import jaxlib

    device = jax.devices()[0]
    client = device.client
    parts = [
        _FORMAT.decode().strip(),
        f"fisherforecast {__version__}",
        f"jax {jax.__version__}",
        f"jaxlib {getattr(jaxlib, '__version__', '?')}",
        f"platform {client.platform} {client.platform_version}",
        f"device {device.device_kind} x{len(jax.devices())}",
        f"XLA_FLAGS {os.environ.get('XLA_FLAGS', '')}",
    ]
    return "\n".join(parts).encode()


def _target_device():
    """The device a single-device kernel runs on: JAX's default device (or the first)."""
    device = jax.config.jax_default_device  # pyright: ignore[reportAttributeAccessIssue]
    if device is None:
        return jax.devices()[0]
    if isinstance(device, str):  # a platform name
        return jax.devices(device)[0]
    return device


def _entry_key(lowered, device) -> str:
    """Hash of what determines the executable: the StableHLO text (constants included, no
    source locations), the shapes and dtypes of all arguments (the text omits those a
    kernel does not use, e.g. the noise settings in a Jacobian, and the executable checks
    them all), the device it runs on and the environment that compiles it."""
    h = hashlib.sha256(_environment_fingerprint())
    h.update(f"\ntarget {device.platform}:{device.id}\n".encode())
    args = jax.tree_util.tree_leaves(lowered.args_info)
    h.update(repr([(tuple(a.shape), str(a.dtype)) for a in args]).encode())
    h.update(lowered.as_text().encode())
    return h.hexdigest()


def _read_entry(path: Path) -> tuple[bytes, os.stat_result] | None:
    """The payload of an entry, or ``None`` (missing). A damaged entry is removed."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_FORMAT) + 8 + 32
    ok = len(data) >= head and data.startswith(_FORMAT)
    if ok:
        (size,) = struct.unpack("<Q", data[len(_FORMAT) : len(_FORMAT) + 8])
        digest = data[len(_FORMAT) + 8 : head]
        payload = data[head:]
        ok = size == len(payload) and hashlib.sha256(payload).digest() == digest
    if not ok:
        _reject(path, st)
        return None
    return payload, st


def _reject(path: Path, st: os.stat_result | None) -> None:
    """Remove a bad entry unless another process has replaced it in the meantime."""
    _count("disk_rejected")
    try:
        now = path.stat()
        if st is None or (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
            path.unlink()
    except OSError:
        pass


def _write_entry(path: Path, payload: bytes, counter: str = "disk_writes") -> bool:
    """Write atomically: a temporary file in the same directory, then a rename. Whether
    the entry is on disk."""
    data = _FORMAT + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest() + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        _count("disk_errors")
        return False
    _count(counter)
    return True


def _load(directory: Path, key: str, lowered, device):
    from jax.experimental import serialize_executable as se

    path = directory / (key + _SUFFIX)
    entry = _read_entry(path)
    if entry is None:
        return None
    payload, st = entry
    try:
        in_tree = jax.tree_util.tree_structure(lowered.args_info)
        compiled = se.deserialize_and_load(
            payload, in_tree, lowered.out_tree, backend=device.client, execution_devices=[device]
        )
    except Exception:  # incompatible or unreadable: compile afresh instead
        _reject(path, st)
        return None
    _count("disk_loads")
    return compiled


def _devices_of(compiled) -> set:
    shardings = jax.tree_util.tree_leaves((compiled.input_shardings, compiled.output_shardings))
    return set().union(*(s.device_set for s in shardings)) if shardings else set()


def _store(directory: Path, key: str, compiled, device) -> bool:
    """Store an executable; whether it is on disk now."""
    from jax.experimental import serialize_executable as se

    try:
        if _devices_of(compiled) != {device}:  # committed inputs elsewhere, sharded, ...
            raise ValueError("not a kernel for the target device alone")
        payload, _, _ = se.serialize(compiled)
    except Exception:  # host callbacks, closed-over constants, a backend without support
        _count("not_serializable")
        return False
    return _write_entry(directory / (key + _SUFFIX), payload)


# ---------------------------------------------------------------------------------------
# Fast keys: an executable found without tracing
# ---------------------------------------------------------------------------------------
def _context_text() -> str:
    """The trace context (float64 switch, default device, ...) as text; objects that
    print by identity are named by their type."""
    parts = []
    for value in _trace_context():
        text = repr(value)
        parts.append(type(value).__name__ if " at 0x" in text else text)
    return ",".join(parts)


def _fast_key(kernel: CachedKernel, args: tuple, device) -> str | None:
    """The fast key of a call (see the module docstring), or ``None`` when an argument has
    no reliable fingerprint."""
    fn = kernel._fn
    try:
        if not covered_function(fn):  # a kernel outside the library: its code is not hashed
            raise Unfingerprintable(f"kernel {fn!r}")
        ctx = Context()
        if kernel._context is not None:
            fid, build = kernel._context(dict(zip(kernel._names, args, strict=True)))
            ctx = Context(fid, build, models=kernel._calls_model)
        h = hashlib.sha256(_environment_fingerprint())
        h.update(library_fingerprint())
        h.update(
            f"\nfast key\nkernel {fn.__module__}.{fn.__qualname__}\n"
            f"target {device.platform}:{device.id}\ncontext {_context_text()}\n".encode()
        )
        for i in kernel._static_idx:
            h.update(b"static " + static_fingerprint(args[i]).encode() + b"\n")
        for i in kernel._dyn_idx:
            h.update(b"dynamic " + tree_fingerprint(args[i], ctx).encode() + b"\n")
    except Unfingerprintable:
        _count("fast_unkeyed")
        return None
    return h.hexdigest()


def _load_fast(directory: Path, fast: str, dyn: tuple, device):
    """The executable of a fast-key entry (an alias of an executable entry), or ``None``."""
    from jax.experimental import serialize_executable as se

    path = directory / (fast + _SUFFIX)
    entry = _read_entry(path)
    if entry is None:
        return None
    payload, st = entry
    try:
        if not payload.startswith(_ALIAS):
            raise ValueError("not an alias")
        key, out_tree = pickle.loads(payload[len(_ALIAS) :])
        if not isinstance(key, str) or not key.isalnum():
            raise ValueError("bad key")
    except Exception:
        _reject(path, st)
        return None
    exe_path = directory / (key + _SUFFIX)
    exe = _read_entry(exe_path)
    if exe is None:  # the executable is gone: the alias is stale
        _reject(path, st)
        return None
    if not _kernels_ready(device):
        return None
    try:
        in_tree = jax.tree_util.tree_structure((dyn, {}))
        compiled = se.deserialize_and_load(
            exe[0], in_tree, out_tree, backend=device.client, execution_devices=[device]
        )
    except Exception:
        _reject(exe_path, exe[1])
        _reject(path, st)
        return None
    _count("fast_hits")
    return compiled


def _kernels_ready(device) -> bool:
    """Whether an executable may be loaded without lowering it first. jaxlib registers
    some of the routines an executable calls only when it *lowers* an operation that
    needs them: on CPU its table of LAPACK routines (LU, Cholesky, eigendecompositions:
    the stiff ODE solvers' Newton steps), on GPUs the hybrid solver kernels. A fast hit
    skips lowering, and an executable that calls LAPACK in a process that has lowered
    none jumps through an empty table (a segmentation fault, seen on a PEtab model).
    Fill them here; where this jaxlib offers no way to, there is no fast hit (the call
    lowers)."""
    try:
        from jax._src.lax import linalg

        if device.platform == "cpu":
            linalg.initialize_lapack()
        else:  # pragma: no cover - GPUs (CI has none)
            from jaxlib import gpu_solver

            gpu_solver.initialize_hybrid_kernels()
    except Exception:  # pragma: no cover - a jaxlib without the hooks
        return False
    return True


def _store_alias(directory: Path, fast: str, key: str, lowered, dyn: tuple) -> None:
    """Record the fast key as an alias of executable entry `key`, with the output treedef
    that loading it needs (the input treedef is rebuilt from the call's arguments)."""
    try:
        if jax.tree_util.tree_structure(lowered.args_info) != jax.tree_util.tree_structure(
            (dyn, {})
        ):
            return
        payload = _ALIAS + pickle.dumps((key, lowered.out_tree), protocol=4)
    except Exception:  # an output treedef that does not pickle: no alias
        return
    _write_entry(directory / (fast + _SUFFIX), payload, "fast_writes")


# ---------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------
try:  # the tuple of configuration values that jax.jit itself keys its caches on
    from jax._src.config import trace_context as _trace_context

    _trace_context()
except Exception:  # pragma: no cover - a JAX without it: key on the float64 switch only

    def _trace_context():
        return (jax.config.jax_enable_x64,)  # pyright: ignore[reportAttributeAccessIssue]


_Tracer = jax.core.Tracer


class _Traced(Exception):
    """A dynamic argument is a tracer: the call is part of an outer transformation."""


_NUMPY, _SCALAR, _JAX, _TRACER, _OTHER = range(5)
_KINDS: dict[type, int] = {}


def _kind(t: type) -> int:
    kind = _KINDS.get(t)
    if kind is None:
        if issubclass(t, _Tracer):
            kind = _TRACER
        elif issubclass(t, jax.Array):
            kind = _JAX
        elif issubclass(t, np.ndarray | np.generic):
            kind = _NUMPY
        elif t in (bool, int, float, complex):
            kind = _SCALAR
        else:
            kind = _OTHER
        _KINDS[t] = kind
    return kind


def _signature(leaves) -> tuple:
    """Shapes and dtypes of the dynamic leaves (Python scalars: their type only, as JAX
    traces them weakly typed). Raises :class:`_Traced` for a tracer."""
    out = []
    for x in leaves:
        kind = _kind(type(x))
        if kind == _NUMPY:
            out.append((x.shape, x.dtype))
        elif kind == _SCALAR:
            out.append(type(x))
        elif kind == _JAX:
            out.append((x.shape, x.dtype, x.weak_type, x.sharding))
        elif kind == _TRACER:
            raise _Traced
        else:
            shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
            out.append((type(x), shape, dtype) if dtype is not None else type(x))
    return tuple(out)


class CachedKernel:
    """What :func:`cached_kernel` returns: call it like ``jax.jit(fn, ...)``.

    ``lower(...)`` and ``trace(...)`` are those of the underlying ``jax.jit``.
    """

    def __init__(self, fn, static_argnames=(), context=None, calls_model=True):
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        sig = inspect.signature(fn)
        names = list(sig.parameters)
        unknown = [n for n in static_argnames if n not in names]
        if unknown:
            raise ValueError(
                f"cached_kernel: `static_argnames` names {unknown}, which "
                f"{getattr(fn, '__name__', fn)} does not take; its parameters are {names}."
            )
        self._fn = fn
        self._context = context
        self._calls_model = bool(calls_model)
        self._names = tuple(names)
        self._jit = jax.jit(fn, static_argnames=tuple(static_argnames))
        self._sig = sig
        self._nargs = len(names)
        self._static_idx = tuple(i for i, n in enumerate(names) if n in static_argnames)
        self._dyn_idx = tuple(i for i, n in enumerate(names) if n not in static_argnames)
        self._table: dict = {}
        functools.update_wrapper(self, fn)

    def lower(self, *args, **kwargs):
        return self._jit.lower(*args, **kwargs)

    def trace(self, *args, **kwargs):
        return self._jit.trace(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) != self._nargs:
            bound = self._sig.bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
            if len(args) != self._nargs:  # *args / **kwargs in fn: no table, plain jit
                return self._jit(*bound.args, **bound.kwargs)
        dyn = tuple(args[i] for i in self._dyn_idx)
        leaves, treedef = jax.tree_util.tree_flatten(dyn)
        try:
            sigs = _signature(leaves)
        except _Traced:
            return self._jit(*args)
        key = (tuple(args[i] for i in self._static_idx), treedef, sigs, _trace_context())
        compiled = self._table.get(key)
        if compiled is None:
            if jax.config.jax_disable_jit:  # pyright: ignore[reportAttributeAccessIssue]
                return self._fn(*args)
            compiled = self._compile(key, args, dyn)
        return compiled(*dyn)

    def _compile(self, key, args, dyn):
        directory = cache_dir()
        device = fast = compiled = None
        if directory is not None:
            device = _target_device()
            fast = _fast_key(self, args, device)
            if fast is not None:
                compiled = _load_fast(directory, fast, dyn, device)
        if compiled is None:
            compiled = self._lower_and_compile(directory, device, fast, args, dyn)
        if len(self._table) >= _MAX_TABLE:
            self._table.pop(next(iter(self._table)), None)
        self._table[key] = compiled
        return compiled

    def _lower_and_compile(self, directory, device, fast, args, dyn):
        lowered = self._jit.lower(*args)
        _count("lowerings")
        if directory is None:
            compiled = lowered.compile()
            _count("compiles")
            return compiled
        entry = _entry_key(lowered, device)
        compiled = _load(directory, entry, lowered, device)
        stored = compiled is not None
        if compiled is None:
            compiled = lowered.compile()
            _count("compiles")
            stored = _store(directory, entry, compiled, device)
        if stored and fast is not None:
            _store_alias(directory, fast, entry, lowered, dyn)
        return compiled

    def clear(self) -> None:
        """Forget the compiled kernels of this process (the disk cache stays)."""
        self._table.clear()
        self._jit.clear_cache()  # pyright: ignore[reportAttributeAccessIssue]

    def _cache_size(self) -> int:
        """Kernels compiled or loaded in this process (as ``jax.jit``'s ``_cache_size``)."""
        return len(self._table) + self._jit._cache_size()  # pyright: ignore[reportAttributeAccessIssue]


def cached_kernel(fn=None, *, static_argnames=(), context=None, calls_model=True):
    """Wrap ``fn`` like ``jax.jit(fn, static_argnames=...)``, with compiled executables kept
    on disk between processes (see the module docstring and ``docs/performance.md``).

    Usable as a decorator, with or without arguments. `context`, for kernels that call
    user code (models, noise callables): ``context(arguments) -> (fid, build)``, from the
    call's arguments by name, the parameter argument ``fid`` and ``build(fid)``, the
    parameters the user code receives; the fast key then fingerprints that code by its
    jaxpr at these shapes. Without it, user code in the arguments means no fast key.
    ``calls_model=False``: the kernel never calls the experiments' models (only their noise
    models), so they are left out of the fast key.

    ```python
    >>> import jax, jax.numpy as jnp
    >>> from fisherforecast._compile import cached_kernel
    >>> @cached_kernel(static_argnames=("power",))
    ... def f(x, power):
    ...     return jnp.sum(x**power)
    >>> with jax.enable_x64(True):
    ...     float(f(jnp.arange(4.0), power=2))
    14.0
    ```
    """
    if fn is None:
        return functools.partial(
            cached_kernel,
            static_argnames=static_argnames,
            context=context,
            calls_model=calls_model,
        )
    if LEGACY:
        return jax.jit(fn, static_argnames=static_argnames)
    return CachedKernel(fn, static_argnames, context, calls_model)
