"""The result of a batch run: :class:`FisherBatch` (stacked matrices, classified, with I/O)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Self

import numpy as np

from .._errors import FisherError, InputError, quote
from .._linalg import classify, covariance, marginal_sigma
from .._matrix import FisherMatrix
from .algebra import BatchAlgebra
from .plan import check_fiducials
from .reasons import REASONS, Reason
from .store import check_not_in_use, create_file, read_file


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------
class FisherBatch(BatchAlgebra):
    """Fisher matrices of a batch of items (sources, designs): stacked, named, immutable.

    Usually made by :func:`ff.fisher_batch`; it can also wrap any stack of matrices.

    **Arguments:**

    - `matrices`: array ``(B, P, P)``.
    - `names`: the ``P`` parameter names.
    - `fiducials`: optional dict name -> ``(B,)`` values (scalars broadcast).
    - `metadata`: optional dict.

    Items are classified on construction: ``.ok`` is ``True`` where the matrix is finite and
    invertible (the foundation's unit-diagonal rank test), and ``.reason`` says why not
    elsewhere (see ``REASONS``).

    **Conventions:** `sigma()` gives marginal 1-D 1σ errors ``sqrt(diag F⁻¹)`` per item,
    NaN where the item is not ``ok``.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> batch = ff.FisherBatch([[[2.0, 2.0], [2.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]]], ["a", "b"])
    >>> batch.ok.tolist(), np.round(batch.sigma()["a"], 6).tolist()
    ([True, False], [0.912871, nan])
    >>> str(batch.reason[1])
    'singular Fisher matrix (degenerate parameter combination)'
    ```
    """

    __slots__ = (
        "_cache",
        "_codes",
        "_condition",
        "_fiducials",
        "_matrices",
        "_messages",
        "_metadata",
        "_names",
    )

    #: Code -> meaning of `reason_codes` (the messages of :class:`Reason`).
    REASONS = REASONS

    def __init__(self, matrices, names, fiducials=None, *, metadata=None):
        raw = np.asarray(matrices)
        if np.iscomplexobj(raw):
            raise TypeError(f"`matrices` must be real; received dtype {raw.dtype}.")
        M = np.array(raw, dtype=np.float64)
        if M.ndim != 3 or M.shape[1] != M.shape[2]:
            raise InputError(f"`matrices` must have shape (B, P, P); received shape {M.shape}.")
        names = check_batch_names(names, M.shape[1])
        M = 0.5 * (M + np.swapaxes(M, 1, 2))
        if fiducials is not None:
            fiducials, _ = check_fiducials(fiducials, M.shape[0], "`matrices`")
        codes, cond = classify(M)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"`metadata` must be a dict; received {quote(metadata)}.")
        self._init(M, names, fiducials, codes, cond, {}, dict(metadata or {}))

    @classmethod
    def _build(cls, matrices, names, fiducials, codes, cond, messages, metadata) -> Self:
        obj = object.__new__(cls)
        obj._init(
            np.asarray(matrices, dtype=np.float64),
            tuple(names),
            fiducials,
            np.asarray(codes, dtype=np.int8),
            np.asarray(cond, dtype=np.float64),
            dict(messages),
            dict(metadata),
        )
        return obj

    def _init(self, matrices, names, fiducials, codes, cond, messages, metadata):
        for arr in (matrices, codes, cond):
            arr.setflags(write=False)
        if fiducials is not None:
            fiducials = {k: np.asarray(v, dtype=np.float64) for k, v in fiducials.items()}
            for v in fiducials.values():
                v.setflags(write=False)
        for key, value in (
            ("_matrices", matrices),
            ("_names", names),
            ("_fiducials", fiducials),
            ("_codes", codes),
            ("_condition", cond),
            ("_messages", messages),
            ("_metadata", metadata),
            ("_cache", {}),
        ):
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("FisherBatch is immutable.")

    def __reduce__(self):  # pickling (Dask, multiprocessing) without __setattr__
        return (
            FisherBatch._build,
            (
                self._matrices,
                self._names,
                self._fiducials,
                self._codes,
                self._condition,
                self._messages,
                self._metadata,
            ),
        )

    # ----- attributes ----------------------------------------------------------------
    @property
    def matrices(self) -> np.ndarray:
        """``(B, P, P)`` numpy float64 (read-only); NaN for items that failed to evaluate."""
        return self._matrices

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def n_params(self) -> int:
        return len(self._names)

    @property
    def fiducials(self) -> dict[str, np.ndarray] | None:
        """Dict name -> ``(B,)`` fiducial values (every parameter, varied or held fixed)."""
        return dict(self._fiducials) if self._fiducials is not None else None

    @property
    def ok(self) -> np.ndarray:
        """``(B,)`` bool: the matrix is finite and invertible."""
        return self._codes == Reason.OK

    @property
    def reason_codes(self) -> np.ndarray:
        """``(B,)`` int8 failure codes; ``FisherBatch.REASONS[code]`` says what they mean."""
        return self._codes

    @property
    def reason(self) -> np.ndarray:
        """``(B,)`` array of strings: ``"ok"`` or why the item failed."""
        return Reason.texts(self._codes)

    @property
    def condition_number(self) -> np.ndarray:
        """``(B,)`` condition numbers of the unit-diagonal matrices (inf: singular)."""
        return self._condition

    @property
    def messages(self) -> dict[int, str]:
        """Item index -> the error an item raised (``reason`` code 8); not saved to files."""
        return dict(self._messages)

    @property
    def metadata(self) -> dict:
        return dict(self._metadata)

    def __len__(self) -> int:
        return self._matrices.shape[0]

    def __repr__(self):
        return (
            f"FisherBatch({len(self)} items, names={list(self._names)}, "
            f"ok={int(self.ok.sum())}/{len(self)})"
        )

    # ----- inversion -----------------------------------------------------------------
    def covariance(self) -> np.ndarray:
        """``(B, P, P)`` covariances ``F⁻¹``, robustly inverted per item; NaN where not ok."""
        if "cov" not in self._cache:
            cov = covariance(self._matrices, self.ok)
            cov.setflags(write=False)
            self._cache["cov"] = cov
        return self._cache["cov"]

    def sigma(self) -> dict[str, np.ndarray]:
        """Marginal 1σ errors per item, dict name -> ``(B,)``; NaN where not ok."""
        if "cov" in self._cache:
            with np.errstate(invalid="ignore"):
                sig = np.sqrt(np.diagonal(self._cache["cov"], axis1=1, axis2=2))
        else:  # only the diagonal: no (B, P, P) array for 10⁶ items
            sig = marginal_sigma(self._matrices, self.ok)
        return {n: sig[:, i].copy() for i, n in enumerate(self._names)}

    # ----- items ----------------------------------------------------------------------
    def _index(self, i):
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"item index must be an integer; received {quote(i)}.")
        B = len(self)
        if not -B <= i < B:
            raise IndexError(f"item index {i} is out of range for a batch of {B} items.")
        return int(i) % B

    def select(self, i) -> FisherMatrix:
        """Item `i` as a :class:`ff.FisherMatrix` (its fiducial and fixed values attached).

        **Raises:** `FisherError` if the item's matrix could not be evaluated (NaN) or is
        not a valid Fisher matrix (e.g. not positive semi-definite).
        """
        i = self._index(i)
        code = int(self._codes[i])
        if not np.all(np.isfinite(self._matrices[i])):
            extra = f": {self._messages[i]}" if i in self._messages else ""
            raise FisherError(f"item {i} has no Fisher matrix: {Reason(code).message}{extra}.")
        fid = fixed = None
        if self._fiducials is not None:
            fid = {n: float(self._fiducials[n][i]) for n in self._names if n in self._fiducials}
            fid = fid if len(fid) == len(self._names) else None
            fixed = {k: float(v[i]) for k, v in self._fiducials.items() if k not in self._names}
        meta = {"batch_index": i, "ok": code == Reason.OK, "reason": Reason(code).message}
        if fixed:
            meta["fixed"] = fixed
        try:
            return FisherMatrix(
                self._matrices[i],
                self._names,
                fiducial=fid,
                name=self._metadata.get("experiment"),
                metadata=meta,
            )
        except ValueError as exc:  # e.g. not positive semi-definite
            raise FisherError(
                f"item {i} is not a valid Fisher matrix ({Reason(code).message}): {exc}"
            ) from None

    def subset(self, index) -> FisherBatch:
        """A new batch with the items `index` (boolean mask, integer array or slice)."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        fids = (
            {k: v[idx] for k, v in self._fiducials.items()} if self._fiducials is not None else None
        )
        msgs = {n: self._messages[int(j)] for n, j in enumerate(idx) if int(j) in self._messages}
        return FisherBatch._build(
            self._matrices[idx],
            self._names,
            fids,
            self._codes[idx],
            self._condition[idx],
            msgs,
            self._metadata,
        )

    @classmethod
    def concatenate(cls, batches) -> FisherBatch:
        """Join batches with the same parameter names (e.g. the pieces of an array job).

        Fiducials are kept where every batch has the same fiducial names.
        """
        batches = list(batches)
        if not batches or not all(isinstance(b, FisherBatch) for b in batches):
            raise TypeError(
                f"concatenate expects a non-empty list of FisherBatch; received {quote(batches)}."
            )
        names = batches[0].names
        bad = [b.names for b in batches if b.names != names]
        if bad:
            raise InputError(
                f"cannot concatenate batches with different parameters: "
                f"{list(names)} and {list(bad[0])}."
            )
        keys = [set(b._fiducials) if b._fiducials is not None else None for b in batches]
        fids = None
        if keys[0] is not None and all(k == keys[0] for k in keys):
            fids = {
                k: np.concatenate([b._fiducials[k] for b in batches]) for k in batches[0]._fiducials
            }
        elif any(k is not None for k in keys):
            warnings.warn(
                "FisherBatch.concatenate: the batches do not all carry fiducials "
                "for the same names, so the result has none.",
                stacklevel=2,
            )
        offsets = np.cumsum([0] + [len(b) for b in batches])
        msgs = {
            int(o) + i: m
            for b, o in zip(batches, offsets, strict=False)
            for i, m in b._messages.items()
        }
        return FisherBatch._build(
            np.concatenate([b._matrices for b in batches]),
            names,
            fids,
            np.concatenate([b._codes for b in batches]),
            np.concatenate([b._condition for b in batches]),
            msgs,
            {
                "concatenated_from": len(batches),
                "experiment": batches[0]._metadata.get("experiment"),
            },
        )

    def failures(self) -> dict[str, np.ndarray]:
        """Reason -> indices of the items that failed for it."""
        return {
            Reason(c).message: np.nonzero(self._codes == c)[0]
            for c in np.unique(self._codes)
            if c != Reason.OK
        }

    # ----- reports ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-Python summary: counts, failures and quantiles of the marginal errors."""
        sig = self.sigma()
        quant = {}
        for n in self._names:
            v = sig[n][np.isfinite(sig[n])]
            quant[n] = {q: float(np.quantile(v, q)) for q in (0.05, 0.5, 0.95)} if v.size else None
        return {
            "n_items": len(self),
            "n_ok": int(self.ok.sum()),
            "names": list(self._names),
            "failures": {k: v.tolist() for k, v in self.failures().items()},
            "sigma_quantiles": quant,
            "metadata": self.metadata,
        }

    def summary(self) -> str:
        """A table of marginal-error quantiles over the ok items, and the failures."""
        d = self.to_dict()
        width = max([len(n) for n in self._names] + [9])
        rows = [
            f"FisherBatch: {d['n_items']} items, {self.n_params} parameters, {d['n_ok']} ok",
            f"{'parameter':<{width}}  {'sigma 5%':>12}  {'median':>12}  {'95%':>12}",
            "-" * (width + 42),
        ]
        for n in self._names:
            q = d["sigma_quantiles"][n]
            if q is None:
                rows.append(f"{n:<{width}}  {'-':>12}  {'-':>12}  {'-':>12}")
            else:
                rows.append(f"{n:<{width}}  {q[0.05]:>12.4g}  {q[0.5]:>12.4g}  {q[0.95]:>12.4g}")
        for reason, idx in self.failures().items():
            rows.append(f"failed ({reason}): {len(idx)} items, e.g. {idx[:5].tolist()}")
        return "\n".join(rows)

    def plot(self, param, x=None, *, ax=None, relative=False, **scatter_kwargs):
        """Scatter the marginal σ of `param` against `x` (log-log), over the ok items.

        `x` is a fiducial name or a ``(B,)`` array (default: the item index). With
        ``relative=True`` the y axis is ``σ / |fiducial|``. Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt

        if param not in self._names:
            raise KeyError(f"plot: {param!r} is not a parameter; names: {list(self._names)}.")
        y = self.sigma()[param]
        ylabel = rf"$\sigma({param})$"
        if relative:
            if self._fiducials is None:  # was the TypeError of subscripting None
                raise TypeError("plot(relative=True) needs fiducial values; this batch has none.")
            y = y / np.abs(self._fiducials[param])
            ylabel = rf"$\sigma({param}) / |{param}|$"
        if x is None:
            xs, xlabel = np.arange(len(self), dtype=float), "item"
        elif isinstance(x, str):
            if self._fiducials is None or x not in self._fiducials:
                raise KeyError(f"plot: {x!r} is not a fiducial name.")
            xs, xlabel = self._fiducials[x], x
        else:
            xs, xlabel = np.asarray(x, dtype=float), "x"
            if xs.shape != (len(self),):
                raise InputError(f"plot: `x` must have shape ({len(self)},); received {xs.shape}.")
        if ax is None:
            _, ax = plt.subplots()
        ok = self.ok & np.isfinite(y)
        ax.scatter(xs[ok], y[ok], **{"s": 4, **scatter_kwargs})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return ax

    # ----- I/O -------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> None:
        """Save to HDF5 atomically, in the layout :func:`fisher_batch` streams (all done).

        Refuses to overwrite an existing file unless ``overwrite=True``.
        """
        from .._io import atomic_path

        check_not_in_use(path)
        B = len(self)
        if B == 0:
            raise InputError("cannot save an empty FisherBatch (0 items).")
        chunk = int(self._metadata.get("chunk_size") or min(B, 4096))
        n_chunks = math.ceil(B / chunk)
        # A chunk with items never computed (a partial load) is saved as unfinished.
        pad = np.full(n_chunks * chunk, Reason.OK, np.int8)
        pad[:B] = self._codes
        done = ~np.any(pad.reshape(n_chunks, chunk) == Reason.NOT_COMPUTED, axis=1)
        fids = self._fiducials or {}
        fp = {
            "names": json.dumps(list(self._names)),
            "fiducial_names": json.dumps(list(fids)),
            "batch_size": B,
            "mode": str(self._metadata.get("mode") or ""),
        }
        data = {
            "matrices": self._matrices,
            "ok": self.ok,
            "reason": self._codes,
            "condition": self._condition,
        }
        with atomic_path(path, overwrite) as tmp:
            create_file(
                tmp,
                names=self._names,
                fiducials=fids,
                B=B,
                chunk_size=chunk,
                fingerprint=fp,
                label=self._metadata.get("experiment"),
                done=done,
                data=data,
            )

    @classmethod
    def load(cls, path, allow_partial: bool = False) -> FisherBatch:
        """Load a batch written by :meth:`save` or streamed by ``fisher_batch(out=...)``.

        An unfinished streaming file raises unless ``allow_partial=True``; its unfinished
        items are then flagged ``"not computed"``.

        ```python
        >>> import os, tempfile, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[2.0, 0.0], [0.0, 8.0]]], ["a", "b"])
        >>> path = os.path.join(tempfile.mkdtemp(), "batch.h5")
        >>> batch.save(path)
        >>> ff.FisherBatch.load(path).sigma()["b"].tolist()
        [0.3535533905932738]
        ```
        """
        s = read_file(path, allow_partial)
        return FisherBatch._build(
            s.matrices, s.names, s.fiducials, s.codes, s.condition, s.messages, s.metadata
        )


def check_batch_names(names, P):
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    if any(not isinstance(n, str) or not n for n in names):
        raise TypeError(f"`names` must be non-empty strings; received {list(names)}.")
    if len(set(names)) != len(names):
        raise InputError(f"`names` has duplicates: {list(names)}.")
    if len(names) != P:
        raise InputError(f"`names` has {len(names)} entries but the matrices are {P} × {P}.")
    return names


def assemble_batch(matrices, names, fiducials, codes, cond, messages, metadata) -> FisherBatch:
    """A :class:`FisherBatch` from computed parts, classified already (no checks)."""
    return FisherBatch._build(matrices, names, fiducials, codes, cond, messages, metadata)
