"""FisherMatrix: an immutable, named Fisher matrix and the algebra on it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ._checks import check_subset, expand_blocks
from ._ellipse import Ellipse, delta_chi2_2d
from ._errors import FisherError, InputError, SingularFisherError, quote
from ._inverse import Inverse, robust_inverse, schur_marginal
from ._linalg import NOT_PSD, check_matrix, classify, logdet, pinv_sigma, unit_diagonal
from ._reparam import pull_back, push_forward

#: Metadata key of a sum's known fiducial values when some of its parameters have none
#: (a prior on a nuisance parameter, say): a later sum that supplies the rest restores them.
KNOWN_FIDUCIAL = "known_fiducial"


class Eigen(NamedTuple):
    """Eigen-decomposition of a Fisher matrix, eigenvalues ascending; columns are vectors."""

    values: np.ndarray
    vectors: np.ndarray


def _check_names(names, size=None):
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"parameter names must be non-empty strings; received {n!r}.")
        if "\x00" in n:
            raise InputError(
                f"parameter name {n!r} contains a NUL character ('\\x00'), which no file "
                "format can store; remove it."
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate parameter names {dup} in {list(names)}.")
    if size is not None and len(names) != size:
        raise ValueError(
            f"`names` has {len(names)} entries {list(names)} but the matrix is {size} × {size}."
        )
    return names


class FisherMatrix:
    """An immutable Fisher matrix with named parameters.

    **Arguments:**

    - `matrix`: square symmetric positive semi-definite array.
    - `names`: one unique name per row.
    - `fiducial`: optional dict name -> value (all names).
    - `labels`: optional dict name -> LaTeX label (defaults to the names).
    - `name`: optional experiment name; `metadata`: optional dict saved with the matrix.

    Every operation returns a new matrix. Inversion always goes through the robust path of
    :func:`ff.robust_inverse`; see :meth:`inverse` for its diagnostics.

    **Conventions:** `sigma()` gives marginal 1-D 1σ errors, ``sqrt(diag F⁻¹)``;
    `ellipse()` gives 2-D *joint* contours, Δχ² = 2.30 for 68.27 % (not the 1-D 1σ).

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> {k: round(v, 6) for k, v in F.sigma().items()}
    {'a': 0.912871, 'b': 0.57735}
    >>> round(F.fix(["b"]).sigma()["a"], 6)
    0.707107
    ```
    """

    __slots__ = ("_fiducial", "_labels", "_matrix", "_metadata", "_name", "_names")

    def __init__(self, matrix, names, fiducial=None, labels=None, *, name=None, metadata=None):
        M = check_matrix(matrix, "FisherMatrix `matrix`")
        names = _check_names(names, M.shape[0])
        if int(classify(M)[0]) == NOT_PSD:  # the package's one PSD rule (PSD_RTOL)
            diag = np.diag(M)
            bad = [n for n, d in zip(names, diag, strict=True) if d < 0]
            if bad:
                raise ValueError(
                    f"FisherMatrix `matrix` has negative diagonal entries for {bad}; a Fisher "
                    "matrix is positive semi-definite."
                )
            w0 = np.linalg.eigvalsh(unit_diagonal(M)[0])[0]
            raise ValueError(
                "FisherMatrix `matrix` is not positive semi-definite (smallest eigenvalue "
                f"of the unit-diagonal matrix {w0:.3g}); it cannot be a Fisher matrix."
            )
        M.setflags(write=False)
        object.__setattr__(self, "_matrix", M)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_fiducial", _check_fiducial_arg(fiducial, names))
        object.__setattr__(self, "_labels", _check_labels(labels, names))
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string; received {name!r}.")
        object.__setattr__(self, "_name", name)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"`metadata` must be a dict; received {quote(metadata)}.")
        object.__setattr__(self, "_metadata", dict(metadata) if metadata else {})

    def __setattr__(self, key, value):
        raise AttributeError("FisherMatrix is immutable; operations return a new matrix.")

    def __reduce__(self):  # pickling (Dask, multiprocessing) goes through the constructor
        return (
            _rebuild,
            (
                np.array(self._matrix),
                self._names,
                self._fiducial,
                self._labels,
                self._name,
                self._metadata,
            ),
        )

    # ----- attributes ----------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """The matrix, numpy float64 (read-only)."""
        return self._matrix

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def fiducial(self) -> dict | None:
        return dict(self._fiducial) if self._fiducial is not None else None

    @property
    def labels(self) -> dict:
        """LaTeX labels, name -> label."""
        return dict(self._labels)

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def metadata(self) -> dict:
        return dict(self._metadata)

    @property
    def n_params(self) -> int:
        return len(self._names)

    @property
    def condition_number(self) -> float:
        """2-norm condition number of the matrix rescaled to unit diagonal.

        This is the number that governs the digits lost on inversion. It does not depend on
        the parameters' units (the raw ``np.linalg.cond(F.matrix)`` does). ``inf`` when a
        parameter has no information.
        """
        return float(classify(self._matrix)[1])

    def _replace(self, matrix=None, names=None, fiducial=None, labels=None, **kw):
        names = self._names if names is None else names
        if fiducial is None and self._fiducial is not None:
            fiducial = {n: self._fiducial[n] for n in names if n in self._fiducial}
        if labels is None:
            labels = {n: self._labels[n] for n in names if n in self._labels}
        return FisherMatrix(
            self._matrix if matrix is None else matrix,
            names,
            fiducial=fiducial or None,
            labels=labels,
            name=kw.get("name", self._name),
            metadata=kw.get("metadata", self._metadata),
        )

    def _index(self, names):
        return [self._names.index(n) for n in names]

    # ----- inversion -----------------------------------------------------------------
    def inverse(self, precision: str = "float64", dps: int = 50) -> Inverse:
        """Covariance with diagnostics: condition number, residual and method.

        `precision="mpmath"` inverts with `dps` decimal digits (for exactly known, extremely
        ill-conditioned matrices).
        """
        return robust_inverse(
            self._matrix, self._names, self._fiducial, precision=precision, dps=dps
        )

    def covariance(self, precision: str = "float64", dps: int = 50) -> np.ndarray:
        """The covariance ``F⁻¹`` (Cramér–Rao bound), robustly inverted."""
        return self.inverse(precision, dps).covariance

    def sigma(self, precision: str = "float64") -> dict[str, float]:
        """Marginal 1σ errors ``sqrt(diag F⁻¹)``: the Cramér–Rao bounds."""
        cov = self.covariance(precision)
        return {n: float(math.sqrt(c)) for n, c in zip(self._names, np.diag(cov), strict=True)}

    def rse(self) -> dict[str, float]:
        """Relative standard errors in %, ``100 σᵢ / |θᵢ|``, as pharmacometricians report
        them (``InputError`` without a fiducial or for a zero one: report ``sigma()``)."""
        fid = self._fiducial or {}
        bad = {n: fid.get(n) for n in self._names if not fid.get(n)}
        if bad:
            raise InputError(
                f"rse() divides by the fiducial, which is missing or zero for {bad}; build "
                "the matrix with a fiducial (ff.fisher does) or use sigma()."
            )
        return {n: 100.0 * s / abs(fid[n]) for n, s in self.sigma().items()}

    def conditional_sigma(self) -> dict[str, float]:
        """1σ errors with all other parameters fixed, ``1/sqrt(F_ii)``."""
        return {
            n: (1.0 / math.sqrt(v) if v > 0 else math.inf)
            for n, v in zip(self._names, np.diag(self._matrix), strict=True)
        }

    def correlation(self) -> np.ndarray:
        """The correlation matrix of the parameters."""
        R = np.clip(unit_diagonal(self.covariance())[0], -1.0, 1.0)
        np.fill_diagonal(R, 1.0)
        return R

    def eigen(self) -> Eigen:
        """Eigenvalues (ascending) and eigenvectors (columns) of the matrix as stored."""
        w, V = np.linalg.eigh(self._matrix)
        return Eigen(w, V)

    # ----- operations returning new matrices ------------------------------------------
    def marginalize(self, keep) -> FisherMatrix:
        """Marginalise over every parameter not in `keep` (Schur complement).

        Equivalent to inverting the `keep` block of the covariance.
        """
        keep = check_subset(keep, self._names, "marginalize(keep)")
        drop = [n for n in self._names if n not in keep]
        M = schur_marginal(
            self._matrix, self._index(keep), self._index(drop), self._names, self._fiducial
        )
        return self._replace(matrix=M, names=tuple(keep))

    def fix(self, names) -> FisherMatrix:
        """Hold `names` fixed at their fiducial values (delete their rows and columns)."""
        names = check_subset(names, self._names, "fix(names)")
        keep = [n for n in self._names if n not in names]
        idx = self._index(keep)
        return self._replace(matrix=self._matrix[np.ix_(idx, idx)], names=tuple(keep))

    def with_prior(self, sigmas: Mapping[str, float]) -> FisherMatrix:
        """Add independent Gaussian priors: ``F_ii += 1/σ_i²``.

        ```python
        >>> import fisherforecast as ff
        >>> F = ff.FisherMatrix([[4.0]], ["a"]).with_prior({"a": 0.5})
        >>> float(F.matrix[0, 0])
        8.0
        ```
        """
        if not isinstance(sigmas, Mapping):
            raise TypeError(f"with_prior expects a dict name -> sigma; received {sigmas!r}.")
        check_subset(list(sigmas), self._names, "with_prior(sigmas)")
        M = np.array(self._matrix)
        for n, s in _element_priors(sigmas, self._names).items():
            try:
                s = float(s)
            except (TypeError, ValueError):
                raise TypeError(
                    f"prior sigma for {n!r} must be a number; received {s!r}."
                ) from None
            if not s > 0 or math.isnan(s):
                raise ValueError(f"prior sigma for {n!r} must be positive; received {s!r}.")
            i = self._names.index(n)
            M[i, i] += (1.0 / s) ** 2
        return self._replace(matrix=M)

    def to_log(self, names=None) -> FisherMatrix:
        """Change variables to ``ln θ`` for `names` (default: all): ``F' = D F D``, ``D = θ``.

        The new parameters are named ``ln_<name>``; their fiducial values are ``ln θ``.
        """
        names = list(self._names) if names is None else check_subset(names, self._names, "to_log")
        if self._fiducial is None:
            raise ValueError("to_log needs the fiducial values; this matrix has none.")
        bad = {n: self._fiducial[n] for n in names if not self._fiducial[n] > 0}
        if bad:
            raise ValueError(
                f"to_log needs positive fiducial values; received {bad}. Use "
                "reparameterize() for a different transform (e.g. ln of -θ)."
            )
        scale = np.array([self._fiducial[n] if n in names else 1.0 for n in self._names])
        M = self._matrix * np.outer(scale, scale)
        new = tuple(f"ln_{n}" if n in names else n for n in self._names)
        fid = {
            m: (math.log(self._fiducial[n]) if n in names else self._fiducial[n])
            for n, m in zip(self._names, new, strict=True)
        }
        labels = {
            m: (rf"\ln {self._labels[n]}" if n in names else self._labels[n])
            for n, m in zip(self._names, new, strict=True)
        }
        return self._replace(matrix=M, names=new, fiducial=fid, labels=labels)

    def reparameterize(
        self,
        transform: Callable,
        *,
        inverse: bool = False,
        fiducial: Mapping | None = None,
        labels: Mapping | None = None,
    ) -> FisherMatrix:
        """Change parameters with a Jacobian computed by JAX.

        Two directions are supported:

        - ``inverse=False`` (default): `transform(old) -> new` maps a dict of the current
          parameters to a dict of new ones, one-to-one (return unchanged parameters too).
          With ``J = ∂new/∂old`` at the fiducial, ``F_new = J⁻ᵀ F J⁻¹``; the new fiducial is
          ``transform(fiducial)``.
        - ``inverse=True``: `transform(new) -> old` gives every current parameter as a
          function of the new ones, and `fiducial` gives the new parameters' values. With
          ``J = ∂old/∂new``, ``F_new = Jᵀ F J``; this direction need not be one-to-one.

        ```python
        >>> import jax.numpy as jnp, fisherforecast as ff
        >>> F = ff.FisherMatrix([[4.0]], ["x"], fiducial={"x": 2.0})
        >>> G = F.reparameterize(lambda p: {"y": p["x"] ** 2})   # y = x², dy/dx = 4
        >>> float(G.matrix[0, 0]), G.fiducial
        (0.25, {'y': 4.0})
        ```
        """
        if inverse:
            M, new_names, new_fid = pull_back(
                self._matrix, self._names, self._fiducial, transform, fiducial
            )
        else:
            M, new_names, new_fid = push_forward(
                self._matrix, self._names, self._fiducial, transform
            )
        M = 0.5 * (M + M.T)
        lab = {n: (self._labels[n] if n in self._labels else n) for n in new_names}
        lab.update(labels or {})
        return self._replace(matrix=M, names=new_names, fiducial=new_fid, labels=lab)

    # ----- summaries -----------------------------------------------------------------
    def figure_of_merit(self, names) -> float:
        """DETF figure of merit ``det(Cov_sub)^(-1/2)`` after marginalising the rest.

        For ``names=["w0", "wa"]`` this is the Dark Energy Task Force FoM.
        """
        names = check_subset(names, self._names, "figure_of_merit")
        try:
            # det(Cov_sub)^(-1/2) = det(F_marg)^(1/2); the marginal is rank-aware, so a
            # degeneracy among the marginalised parameters alone does not matter.
            M = self.marginalize(names).matrix
        except SingularFisherError:
            # A degeneracy that involves the FoM parameters leaves their area unbounded.
            return 0.0
        # det(F_marg) on its unit-diagonal form; -inf (FoM 0) when it is not positive.
        return float(math.exp(0.5 * float(logdet(M))))

    def ellipse(self, a: str, b: str, level: float = 0.6827) -> Ellipse:
        """The 2-D joint confidence ellipse of (`a`, `b`), marginalised over the rest.

        `level` is the 2-D probability content: 0.6827 uses Δχ² = 2.30 (semi-axes 1.515 ×
        the square roots of the covariance eigenvalues), 0.9545 uses Δχ² = 6.18.
        """
        check_subset([a, b], self._names, "ellipse")
        # The covariance of (a, b) with the rest marginalised; rank-aware, so a degeneracy
        # among the other parameters alone does not matter.
        sub = self.marginalize([a, b]).covariance()
        w, V = np.linalg.eigh(sub)
        dchi2 = delta_chi2_2d(level)
        major = V[:, 1]
        angle = float(np.arctan2(major[1], major[0]))
        center = (
            (self._fiducial[a], self._fiducial[b]) if self._fiducial is not None else (0.0, 0.0)
        )
        return Ellipse(
            center,
            float(math.sqrt(dchi2 * w[1])),
            float(math.sqrt(dchi2 * max(w[0], 0.0))),
            angle,
            dchi2,
        )

    def to_dict(self) -> dict:
        """Plain-Python view: names, matrix (nested lists), fiducial, labels, sigma."""
        try:
            sig = self.sigma()
        except FisherError:
            sig = None
        return {
            "names": list(self._names),
            "matrix": self._matrix.tolist(),
            "fiducial": self.fiducial,
            "labels": self.labels,
            "name": self._name,
            "sigma": sig,
            "condition_number": self.condition_number,
            "metadata": self.metadata,
        }

    def summary(self) -> str:
        """A table of fiducial, marginal σ, relative σ and conditional σ."""
        try:
            sig = self.sigma()
            note = ""
        except FisherError as exc:
            # Keep the whole message: its later lines name the degenerate directions.
            text = str(exc).split("What to do:")[0].rstrip()
            sig, note = None, f"\n(marginal errors unavailable: {text})"
        cond = self.conditional_sigma()
        width = max([len(n) for n in self._names] + [9])
        head = (
            f"{'parameter':<{width}}  {'fiducial':>12}  {'sigma':>12}  {'sigma/|fid|':>11}"
            f"  {'cond. sigma':>12}"
        )
        rows = [
            f"FisherMatrix{' ' + repr(self._name) if self._name else ''}: "
            f"{self.n_params} parameters, condition number {self.condition_number:.3g}",
            head,
            "-" * len(head),
        ]
        for n in self._names:
            fid = self._fiducial[n] if self._fiducial is not None else float("nan")
            s = sig[n] if sig else float("nan")
            rel = s / abs(fid) if fid not in (0.0,) and not math.isnan(fid) else float("nan")
            rows.append(f"{n:<{width}}  {fid:>12.5g}  {s:>12.5g}  {rel:>11.3g}  {cond[n]:>12.5g}")
        return "\n".join(rows) + note

    def __repr__(self):
        return (
            f"FisherMatrix(names={list(self._names)}, name={self._name!r}, "
            f"condition_number={self.condition_number:.3g})"
        )

    # ----- algebra ---------------------------------------------------------------------
    def __add__(self, other) -> FisherMatrix:
        if isinstance(other, int | float) and other == 0:
            return self  # lets sum([F1, F2]) work
        if not isinstance(other, FisherMatrix):
            return NotImplemented
        names = self._names + tuple(n for n in other._names if n not in self._names)
        P = len(names)
        M = np.zeros((P, P))
        for F in (self, other):
            idx = [names.index(n) for n in F._names]
            M[np.ix_(idx, idx)] += F._matrix
        known = _merge_fiducials(_known_fiducial(self), _known_fiducial(other), names)
        fid = known if known is not None and len(known) == P else None
        # Parameters held fixed in one matrix must sit at the other's value too.
        values = [
            {**(F._metadata.get("fixed") or {}), **(_known_fiducial(F) or {})}
            for F in (self, other)
        ]
        for k in sorted(set(values[0]) & set(values[1])):
            a, b = values[0][k], values[1][k]
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300):
                raise ValueError(
                    f"cannot combine Fisher matrices evaluated at different fiducials: {k!r} "
                    f"is {a!r} in one and {b!r} in the other (held fixed in at least one)."
                )
        labels = {**other._labels, **self._labels}
        label = "+".join(n for n in (self._name, other._name) if n) or None
        meta = {**other._metadata, **self._metadata}
        fixed = {
            k: v
            for F in (other, self)
            for k, v in (F._metadata.get("fixed") or {}).items()
            if k not in names
        }
        meta.pop("fixed", None)
        if fixed:
            meta["fixed"] = fixed
        meta.pop(KNOWN_FIDUCIAL, None)
        if known and fid is None:  # some parameters have no fiducial: keep the others
            meta[KNOWN_FIDUCIAL] = known
        return FisherMatrix(M, names, fiducial=fid, labels=labels, name=label, metadata=meta)

    __radd__ = __add__

    def __mul__(self, factor) -> FisherMatrix:
        if isinstance(factor, bool | np.bool_) or isinstance(factor, str):
            return NotImplemented
        try:
            arr = np.asarray(factor)
        except Exception:  # not something numpy can read: not a factor
            return NotImplemented
        if arr.shape != () or arr.dtype.kind not in "iuf":
            return NotImplemented
        factor = float(arr)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(
                f"a Fisher matrix can be scaled by a positive finite number; received {factor!r}."
            )
        return self._replace(matrix=self._matrix * float(factor))

    __rmul__ = __mul__

    # ----- I/O -------------------------------------------------------------------------
    def save(
        self,
        path,
        overwrite: bool = False,
        metadata: Mapping | None = None,
        format: str | None = None,
    ) -> None:
        """Save atomically; HDF5 for ``.h5``/``.hdf5``, plain text otherwise.

        The text format writes the matrix with a ``#`` header of names, and a
        ``.paramnames`` file beside it (name TAB LaTeX label), as CosmicFish and
        getdist do. Refuses to overwrite an existing file unless ``overwrite=True``.
        """
        from ._io import save

        save(self, path, overwrite=overwrite, metadata=metadata, format=format)

    # ----- interop: getdist, ChainConsumer, pandas (see fisherforecast/_interop.py) ------
    def to_getdist(self, names=None, label=None):
        """getdist ``GaussianND`` (mean: fiducial, covariance ``F⁻¹``); see ``_interop``."""
        from ._interop import to_getdist

        return to_getdist(self, names, label)

    def save_covmat(self, path, names=None, overwrite: bool = False) -> None:
        """Write ``F⁻¹`` as a getdist/CosmoMC ``.covmat`` file; see ``_interop.save_covmat``."""
        from ._interop import save_covmat

        save_covmat(self, path, names, overwrite=overwrite)

    def to_chainconsumer(self, names=None, name=None):
        """ChainConsumer ``Chain.from_covariance`` of this forecast; see ``_interop``."""
        from ._interop import to_chainconsumer

        return to_chainconsumer(self, names, name)

    def to_dataframe(self, kind="matrix"):
        """pandas DataFrame: ``"matrix"``, ``"covariance"``, ``"correlation"``, ``"summary"``."""
        from ._interop import to_dataframe

        return to_dataframe(self, kind)


def _element_priors(sigmas, names) -> dict:
    """Prior σ per element: the name of an array-valued parameter (``"calib"`` for
    ``calib[0]``, ...) takes one σ for every element, or an array of them in C order."""
    out = {}
    for n, s in sigmas.items():
        block = expand_blocks([n], names) if n not in names else [n]
        if block == [n]:
            out[n] = s
            continue
        values = (
            np.broadcast_to(np.asarray(s, dtype=object), (len(block),))
            if np.ndim(s) == 0
            else np.ravel(np.asarray(s, dtype=object))
        )
        if len(values) != len(block):
            raise ValueError(
                f"prior sigmas for {n!r} must be one number or {len(block)} (one per "
                f"element); received {len(values)}."
            )
        out.update(zip(block, values.tolist(), strict=True))
    return out


def _rebuild(matrix, names, fiducial, labels, name, metadata):
    return FisherMatrix(
        matrix, names, fiducial=fiducial, labels=labels, name=name, metadata=metadata
    )


def _check_fiducial_arg(fiducial, names):
    if fiducial is None:
        return None
    if not isinstance(fiducial, Mapping):
        raise TypeError(f"`fiducial` must be a dict name -> value; received {quote(fiducial)}.")
    unknown = [k for k in fiducial if k not in names]
    missing = [n for n in names if n not in fiducial]
    if unknown or missing:
        raise ValueError(
            f"`fiducial` must give a value for every parameter {list(names)}; unknown "
            f"{unknown}, missing {missing}."
        )
    out = {}
    for n in names:
        try:
            v = float(fiducial[n])
        except (TypeError, ValueError):
            raise TypeError(
                f"fiducial[{n!r}] must be a real number; received {quote(fiducial[n])}."
            ) from None
        if not math.isfinite(v):
            raise ValueError(f"fiducial[{n!r}] must be finite; received {fiducial[n]!r}.")
        out[n] = v
    return out


def _check_labels(labels, names):
    if labels is None:
        return {n: n for n in names}
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        if len(labels) != len(names):
            raise ValueError(f"`labels` has {len(labels)} entries for {len(names)} names.")
        labels = dict(zip(names, labels, strict=True))
    if not isinstance(labels, Mapping):
        raise TypeError(f"`labels` must be a dict name -> LaTeX; received {quote(labels)}.")
    unknown = [k for k in labels if k not in names]
    if unknown:
        raise ValueError(f"`labels` names unknown parameters {unknown}; names: {list(names)}.")
    out = {n: str(labels.get(n, n)) for n in names}
    bad = {n: v for n, v in out.items() if "\x00" in v}
    if bad:
        raise InputError(
            f"`labels` {bad} contain a NUL character ('\\x00'), which no file format can "
            "store; remove it."
        )
    return out


def _known_fiducial(F):
    """The fiducial values `F` knows: all of them, or those a sum kept in its metadata."""
    if F._fiducial is not None:
        return F._fiducial
    return F._metadata.get(KNOWN_FIDUCIAL) or None


def _merge_fiducials(a, b, names):
    if a is None and b is None:
        return None
    merged = {}
    for src in (a or {}), (b or {}):
        for k, v in src.items():
            if k in merged and not math.isclose(merged[k], v, rel_tol=1e-9, abs_tol=1e-300):
                raise ValueError(
                    f"cannot combine Fisher matrices evaluated at different fiducials: "
                    f"{k!r} is {merged[k]!r} in one and {v!r} in the other."
                )
            merged[k] = v
    return {n: merged[n] for n in names if n in merged}


def marginal_sigma_or_inf(F: FisherMatrix) -> dict[str, float]:
    """Marginal σ per parameter, ``inf`` for parameters the matrix leaves unconstrained.

    Unlike :meth:`FisherMatrix.sigma`, a singular matrix does not raise: a parameter gets a
    finite σ only if it is orthogonal to every null direction (then ``σ² = (F⁺)_ii``).
    """
    try:
        return F.sigma()
    except SingularFisherError:
        pass
    sigma = pinv_sigma(F.matrix)  # rank rule RANK_RTOL, membership NULL_TOL (unit-free)
    return {n: float(v) for n, v in zip(F.names, sigma, strict=True)}
