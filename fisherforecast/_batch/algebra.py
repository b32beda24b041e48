"""Item-wise algebra of a :class:`FisherBatch` (a mixin of the container)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from .._checks import check_subset
from .._errors import InputError, quote
from .._linalg import classify, schur_complement
from .._matrix import FisherMatrix
from .reasons import UPSTREAM, Reason


class BatchAlgebra:
    """Item-wise algebra of :class:`FisherBatch`: sums, scaling, priors, fixing, marginalising.

    A mixin: it reads the container's fields (``_matrices``, ``_names``, ``_fiducials``,
    ``_codes``, ``_messages``, ``_metadata``) and builds results with ``type(self)._build``.
    """

    __slots__ = ()  # the container declares the slots
    #: NumPy must not broadcast ``array * batch`` into an object array of batches.
    __array_ufunc__ = None

    if TYPE_CHECKING:  # what the mixin reads from the container (declared there)
        _matrices: np.ndarray
        _names: tuple[str, ...]
        _fiducials: dict[str, np.ndarray] | None
        _codes: np.ndarray
        _messages: dict[int, str]
        _metadata: dict[str, Any]

        @property
        def n_params(self) -> int: ...

        def __len__(self) -> int: ...

        @classmethod
        def _build(cls, matrices, names, fiducials, codes, cond, messages, metadata) -> Self: ...

    def _derive(
        self, matrices, names, fiducials, upstream, operation, messages=None, metadata=None
    ) -> Self:
        """A new batch from new matrices; items that failed upstream keep their code.

        `matrices` must be a fresh array (it is modified in place). `upstream` is a ``(B,)``
        code array: non-zero where an input item had no usable matrix (it failed to
        evaluate, or its matrix is NaN or not positive semi-definite). Every other item is
        classified afresh, so a singular item can become ok once information is added.
        """
        M = np.asarray(matrices, dtype=np.float64)
        if np.any(upstream != Reason.OK):
            M[upstream != Reason.OK] = np.nan
        codes, cond = classify(M)
        codes = np.where(upstream != Reason.OK, upstream, codes).astype(np.int8)
        cond = np.where(upstream != Reason.OK, np.nan, cond)
        msgs = self._messages if messages is None else messages
        if metadata is None:
            # Run details (file path, timings, chunks) describe the source, not the result.
            metadata = {k: self._metadata[k] for k in ("experiment", "mode") if k in self._metadata}
            metadata["operations"] = [*self._metadata.get("operations", []), operation]
        return type(self)._build(M, names, fiducials, codes, cond, msgs, metadata)

    def _upstream(self):
        """Codes of the items whose matrix cannot take part in further algebra."""
        P = self.n_params
        finite = np.all(np.isfinite(self._matrices.reshape(len(self), P * P)), axis=1)
        keep = np.isin(self._codes, UPSTREAM) | ~finite
        return np.where(keep, self._codes, Reason.OK).astype(np.int8)

    def _combine(self, first, second):
        """Item-wise ``first + second``; one of them is ``self``, the other a batch or a
        FisherMatrix broadcast to every item. Names: those of `first`, then new ones."""
        B = len(self)
        parts = []
        for x in (first, second):
            if isinstance(x, FisherMatrix):
                fid = (
                    {k: np.full(B, v) for k, v in x.fiducial.items()}
                    if x.fiducial is not None
                    else None
                )
                parts.append(
                    (
                        np.broadcast_to(x.matrix, (B, *x.matrix.shape)),
                        x.names,
                        fid,
                        np.zeros(B, np.int8),
                        {},
                        x.name,
                    )
                )
            else:
                parts.append(
                    (
                        x._matrices,
                        x._names,
                        x._fiducials,
                        x._upstream(),
                        x._messages,
                        x._metadata.get("experiment"),
                    )
                )
        names = parts[0][1] + tuple(n for n in parts[1][1] if n not in parts[0][1])
        P = len(names)
        M = np.zeros((B, P, P))
        for mats, nms, *_ in parts:
            idx = [names.index(n) for n in nms]
            if idx == list(range(idx[0], idx[0] + len(idx))):  # a block: add in place
                sl = slice(idx[0], idx[0] + len(idx))
                M[:, sl, sl] += mats
            else:
                ix = np.array(idx)
                M[:, ix[:, None], ix[None, :]] += mats
        up0, up1 = parts[0][3], parts[1][3]
        # Items that failed upstream on either side stay failed (NaN fiducials included).
        failed = (up0 != Reason.OK) | (up1 != Reason.OK)
        fids = merge_fiducials(parts[0][2], parts[1][2], failed)
        upstream = np.where(up0 != Reason.OK, up0, up1).astype(np.int8)
        messages = {**parts[1][4], **parts[0][4]}
        label = "+".join(str(p[5]) for p in parts if p[5]) or None
        mode = self._metadata.get("mode")
        meta = {"experiment": label, **({"mode": mode} if mode else {}), "operations": ["sum"]}
        return self._derive(M, names, fids, upstream, "sum", messages, meta)

    def __add__(self, other) -> Self:
        """Item-wise sum with another batch of the same length (e.g. a second detector
        observing the same sources), or with one :class:`ff.FisherMatrix` added to every
        item (an external constraint). Parameters are matched by name; the result has the
        union of the names, left operand first. Items that failed to evaluate in either
        input stay failed; the others are classified afresh.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> lisa = ff.FisherBatch([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]],
        ...                       ["a", "b"])
        >>> tianqin = ff.FisherBatch([[[0.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 3.0]]],
        ...                          ["a", "b"])
        >>> both = lisa + tianqin
        >>> lisa.ok.tolist(), both.ok.tolist()
        ([True, False], [True, True])
        >>> np.round(both.sigma()["b"], 6).tolist()
        [0.5, 0.57735]
        ```
        """
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self  # lets sum([b1, b2, ...]) work
        if isinstance(other, BatchAlgebra):
            if len(other) != len(self):
                raise InputError(
                    f"cannot add batches of different lengths: {len(self)} and {len(other)} "
                    "items. Item i of one must be the same source/design as item i of the "
                    "other; use .subset(...) to align them first."
                )
            return self._combine(self, other)
        if isinstance(other, FisherMatrix):
            return self._combine(self, other)
        return NotImplemented

    def __radd__(self, other) -> Self:
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self
        if isinstance(other, FisherMatrix):
            return self._combine(other, self)
        return NotImplemented

    def __mul__(self, factor) -> Self:
        """Every matrix times a positive number, or item ``i`` times ``factor[i]`` for a
        ``(B,)`` array (e.g. each source's observing time over the one simulated).

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[4.0]], [[4.0]]], ["a"])
        >>> (batch * np.array([1.0, 4.0])).sigma()["a"].tolist()
        [0.5, 0.25]
        ```
        """
        if isinstance(factor, bool | np.bool_) or isinstance(factor, str):
            return NotImplemented
        try:
            f = np.asarray(factor)
        except Exception:  # any object numpy cannot take is not a factor
            return NotImplemented
        if f.dtype.kind not in "iuf" or f.shape not in ((), (len(self),)):
            if f.dtype.kind in "iuf":
                raise InputError(
                    f"a FisherBatch can be scaled by a number or a ({len(self)},) array; "
                    f"received shape {f.shape}."
                )
            return NotImplemented
        f = f.astype(np.float64)
        bad = ~(np.isfinite(f) & (f > 0))
        if bad.any():
            i = int(np.argmax(bad))
            shown = repr(float(f)) if f.ndim == 0 else f"{float(f[i])!r} (item {i})"
            raise InputError(
                f"a FisherBatch can be scaled by positive finite numbers; received {shown}."
            )
        scale = f if f.ndim == 0 else f[:, None, None]
        with np.errstate(invalid="ignore"):
            M = self._matrices * scale
        return self._derive(M, self._names, self._fiducials, self._upstream(), "scale")

    __rmul__ = __mul__

    def with_prior(self, sigmas: Mapping) -> Self:
        """Add independent Gaussian priors, ``F_ii += 1/σ_i²``, to every item.

        Each σ is a positive number or a ``(B,)`` array of them (one per item, e.g. a prior
        that scales with the source); ``inf`` adds nothing. Items that already failed are
        not checked and stay failed.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[4.0]], [[1.0]]], ["a"])
        >>> batch.with_prior({"a": 0.5}).matrices[:, 0, 0].tolist()
        [8.0, 5.0]
        >>> batch.with_prior({"a": np.array([1.0, np.inf])}).matrices[:, 0, 0].tolist()
        [5.0, 1.0]
        ```
        """
        if not isinstance(sigmas, Mapping):
            raise TypeError(f"with_prior expects a dict name -> sigma; received {quote(sigmas)}.")
        check_subset(list(sigmas), self._names, "with_prior(sigmas)")
        B = len(self)
        upstream = self._upstream()
        live = upstream == Reason.OK
        M = np.array(self._matrices)
        for n, value in sigmas.items():
            s = np.asarray(value) if not isinstance(value, bool) else np.asarray(object())
            if s.dtype.kind not in "iuf" or s.shape not in ((), (B,)):
                raise InputError(
                    f"prior sigma for {n!r} must be a positive number or a ({B},) array of "
                    f"them; received {quote(value)}."
                )
            s = np.broadcast_to(s.astype(np.float64), (B,))
            with np.errstate(divide="ignore", over="ignore"):
                add = (1.0 / s) ** 2
            bad = live & ~((s > 0) & np.isfinite(add))
            if bad.any():
                i = int(np.argmax(bad))
                why = (
                    "so small that 1/σ² overflows"
                    if s[i] > 0
                    else "must be positive (inf for no prior)"
                )
                raise InputError(
                    f"prior sigma for {n!r} {why}; received {float(s[i])!r} (item {i})."
                )
            k = self._names.index(n)
            M[:, k, k] += np.where(live, add, 0.0)
        return self._derive(M, self._names, self._fiducials, upstream, "with_prior")

    def fix(self, names) -> Self:
        """Hold `names` fixed at their fiducial values in every item (delete their rows and
        columns). Fixing one side of a degeneracy can turn singular items ok.

        ```python
        >>> import fisherforecast as ff
        >>> batch = ff.FisherBatch([[[1.0, 1.0], [1.0, 1.0]]], ["a", "b"])  # a + b only
        >>> batch.ok.tolist(), batch.fix("b").ok.tolist()
        ([False], [True])
        ```
        """
        names = check_subset(names, self._names, "fix(names)")
        keep = [n for n in self._names if n not in names]
        if not keep:
            raise InputError("fix(names) would remove every parameter; keep at least one.")
        idx = np.array([self._names.index(n) for n in keep])
        M = self._matrices[:, idx[:, None], idx[None, :]]
        return self._derive(M, tuple(keep), self._fiducials, self._upstream(), "fix")

    def marginalize(self, keep) -> Self:
        """Marginalise every item over the parameters not in `keep`: the Fisher matrix of
        the kept parameters, ``F_kk − F_kd F_dd⁻¹ F_dk`` (the inverse of their covariance
        block).

        Each item is rank-checked first, as ``FisherMatrix.marginalize`` does: an item whose
        degenerate direction lies entirely within the marginalised parameters still has a
        well-defined marginal (computed with the pseudo-inverse of ``F_dd``); one whose
        degeneracy involves a kept parameter stays "singular", with a NaN matrix.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> batch = ff.FisherBatch([[[2.0, 1.0], [1.0, 1.0]]], ["a", "b"])
        >>> batch.marginalize(["a"]).matrices.tolist()  # 2 - 1·1⁻¹·1
        [[[1.0]]]
        ```
        """
        keep = check_subset(keep, self._names, "marginalize(keep)")
        if not keep:
            raise InputError("marginalize(keep) needs at least one parameter to keep.")
        drop = [n for n in self._names if n not in keep]
        k = np.array([self._names.index(n) for n in keep])
        d = np.array([self._names.index(n) for n in drop], dtype=np.intp)
        upstream = self._upstream()
        # Full-rank items: the Schur complement; rank-deficient ones: the pseudo-inverse of
        # F_dd when their degeneracy lies within the dropped parameters, NaN otherwise.
        M, defined = schur_complement(self._matrices, k, d)
        undefined = ~defined & (upstream == Reason.OK)
        upstream[undefined] = self._codes[undefined]
        return self._derive(M, tuple(keep), self._fiducials, upstream, "marginalize")


def merge_fiducials(a, b, skip):
    """Union of two fiducial dicts of ``(B,)`` arrays; shared names must agree per item,
    except on the items `skip` (failed items, whose values may be NaN)."""
    if a is None or b is None:
        return a if b is None else b
    merged = dict(a)
    for k, v in b.items():
        if k in merged:
            same = np.isclose(merged[k], v, rtol=1e-9, atol=1e-300, equal_nan=True) | skip
            if not same.all():
                i = int(np.argmin(same))
                raise InputError(
                    f"cannot combine batches evaluated at different fiducials: {k!r} of item "
                    f"{i} is {float(merged[k][i])!r} in one and {float(v[i])!r} in the other. "
                    "Item i of each must be the same source; for a prior that does not share "
                    "the fiducials, use .with_prior(...)."
                )
        else:
            merged[k] = v
    return merged
