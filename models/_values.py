"""Zoo helpers: model callables that compare by value, so equal constructions share one
compilation.

``ff.fisher`` compiles once per model and output shape, and it recognises "the same model"
by equality. A fresh ``lambda`` or ``functools.partial`` per constructor call is a new
model each time (a ``partial`` holding arrays, inside a noise model, compares by identity);
the two helpers here make ``experiment(...)`` called twice with equal arguments build
*equal* models.
"""

from __future__ import annotations

import collections
import functools
import inspect
import threading

import numpy as np

__all__ = ["Bound", "memoized"]


def _same(a, b) -> bool:
    """Value equality that never raises and never compares arrays element-wise."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray | np.generic) or hasattr(a, "__array__"):
        try:
            x, y = np.asarray(a), np.asarray(b)
        except Exception:
            return False
        return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
    if isinstance(a, float | complex):
        return repr(a) == repr(b)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        eq = a == b
    except Exception:
        return False
    return eq if isinstance(eq, bool) else False


def _value_hash(v) -> int:
    if isinstance(v, np.ndarray | np.generic) or hasattr(v, "__array__"):
        arr = np.asarray(v)
        return hash((arr.shape, arr.dtype.str, arr.tobytes()))
    if isinstance(v, tuple | list):
        return hash(tuple(_value_hash(x) for x in v))
    try:
        return hash(v)
    except TypeError:
        return id(v)


class Bound:
    """``fn(*args, **keywords)`` with the keywords fixed: a ``functools.partial`` for
    keyword arguments that compares and hashes by value (arrays by shape, dtype and
    content).

    Example
    -------
    >>> import numpy as np
    >>> def scaled(params, x, *, k):
    ...     return k * x
    >>> Bound(scaled, k=np.ones(3)) == Bound(scaled, k=np.ones(3))
    True
    >>> Bound(scaled, k=np.ones(3)) == Bound(scaled, k=np.zeros(3))
    False
    """

    __slots__ = ("_hash", "fn", "keywords")

    def __init__(self, fn, **keywords):
        self.fn = fn
        self.keywords = dict(sorted(keywords.items()))
        self._hash = None

    def __call__(self, *args):
        return self.fn(*args, **self.keywords)

    @property
    def __name__(self):
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    @property
    def __signature__(self):
        return inspect.signature(functools.partial(self.fn, **self.keywords))

    def __eq__(self, other):
        if not isinstance(other, Bound):
            return NotImplemented
        return self is other or (
            _same(self.fn, other.fn)
            and self.keywords.keys() == other.keywords.keys()
            and all(_same(v, other.keywords[k]) for k, v in self.keywords.items())
        )

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(
                (_value_hash(self.fn), tuple((k, _value_hash(v)) for k, v in self.keywords.items()))
            )
        return self._hash

    def __repr__(self):
        return f"Bound({self.__name__}, {', '.join(self.keywords)})"


def memoized(builder):
    """Return the model built earlier for equal (hashable) arguments instead of a new one.

    ODE models (``ff.ode_model``) compare by identity; sharing one instance per set of
    arguments lets equal experiments share one compilation. Unhashable arguments (arrays
    of tolerances, say) build a fresh model as before. At most 64 models are kept.
    """
    cache: collections.OrderedDict = collections.OrderedDict()
    lock = threading.Lock()

    @functools.wraps(builder)
    def wrapper(*args, **kwargs):
        try:
            key = (args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:
            return builder(*args, **kwargs)
        with lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        model = builder(*args, **kwargs)
        with lock:
            cache[key] = model
            while len(cache) > 64:
                cache.popitem(last=False)
        return model

    return wrapper
