"""One idiom for result objects: a frozen dataclass with declared fields.

Every report the library returns (identifiability, profiles, cross-checks, designs, ...)
subclasses :class:`Record`:

```python
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class MyReport(Record):
    names: tuple[str, ...]
    sigma: np.ndarray
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)  # private: not exported

    def summary(self) -> str:
        ...
```

Fields are read-only (``dataclasses.FrozenInstanceError`` on assignment), :meth:`to_dict`
gives plain Python values (lists, floats, nested dicts) ready for JSON, and
:meth:`summary` is a human-readable text. Fields whose name starts with ``_`` are internal:
they are neither exported by :meth:`to_dict` nor shown by ``repr``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping

import numpy as np


def plain(value):
    """A JSON-ready copy of ``value``: numpy arrays → lists, numpy scalars → Python numbers,
    records and objects with ``to_dict()`` → dicts, enums → their names, tuples → lists."""
    if isinstance(value, Record) or (
        hasattr(value, "to_dict") and callable(value.to_dict) and not isinstance(value, type)
    ):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return value  # JSON writers spell these NaN / Infinity
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class Record:
    """Base class of result objects: declared, read-only fields, ``to_dict()`` and
    ``summary()``.

    ```python
    >>> import dataclasses
    >>> from fisherforecast._record import Record
    >>> @dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
    ... class Result(Record):
    ...     value: float
    ...     names: tuple = ()
    >>> r = Result(value=1.5, names=("a",))
    >>> r.to_dict()
    {'value': 1.5, 'names': ['a']}
    >>> print(r.summary())
    Result: value=1.5, names=('a',)
    ```
    """

    def public_fields(self) -> list[str]:
        """The names of the exported fields, in declaration order."""
        return [f.name for f in dataclasses.fields(self) if not f.name.startswith("_")]

    def to_dict(self) -> dict:
        """Every public field as plain Python values (JSON-ready)."""
        return {name: plain(getattr(self, name)) for name in self.public_fields()}

    def summary(self) -> str:
        """A short human-readable text (subclasses write a better one)."""
        parts = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.public_fields())
        return f"{type(self).__name__}: {parts}"

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        def short(v):
            if isinstance(v, np.ndarray) and v.size > 6:
                return f"array(shape={v.shape})"
            text = repr(v)
            return text if len(text) <= 60 else text[:57] + "..."

        parts = ", ".join(f"{n}={short(getattr(self, n))}" for n in self.public_fields())
        return f"{type(self).__name__}({parts})"
