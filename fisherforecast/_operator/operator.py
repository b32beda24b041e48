"""``ff.fisher_operator``: the Fisher matrix as a matrix-free linear operator.

For models with 10³–10⁶ parameters (thousands of nuisance parameters, large biology
models, neural networks) the ``N × P`` Jacobian and the ``P × P`` matrix do not fit. A
:class:`FisherOperator` applies ``F v`` with one ``jvp`` and one ``vjp`` through the model
(memory O(N + P)) and answers the questions of a forecast from products alone: marginal
errors by preconditioned conjugate gradients, the extreme eigenvalues by Lanczos, the
diagonal exactly or by Hutchinson's estimator, and ``log det F`` and ``tr F`` by stochastic
Lanczos quadrature. See ``docs/matrix_free.md``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    as_experiments,
    check_fiducial_arrays,
    check_int,
    check_names,
    check_seed,
    check_subset,
    element_names,
    expand_names,
    flat_values,
)
from .._compile import cached_kernel
from .._engine import model_runtime_errors, refuse_tracers
from .._errors import InputError, NonFiniteError, ParameterError, quote
from .._record import Record
from .._x64 import float64
from . import kernels, krylov

#: Default cap on the Lanczos steps of ``eigen(which="smallest")`` (memory: steps × P).
DEFAULT_LANCZOS_STEPS = 2000

#: Up to this many parameters ``sigma(preconditioner="auto")`` computes the exact diagonal.
AUTO_EXACT_DIAGONAL = 4096


# ---------------------------------------------------------------------------------------
# Compiled kernels (one per experiments' structure, names and shapes)
# ---------------------------------------------------------------------------------------
@cached_kernel(static_argnames=("names",))
def matvec_kernel(experiments, fiducial, names, prior, v):
    return kernels.fisher_matvec(experiments, fiducial, names, prior, v)


@cached_kernel(static_argnames=("names",))
def probe_kernel(experiments, fiducial, names):
    return kernels.probe(experiments, fiducial, names)


@cached_kernel(static_argnames=("names", "chunk"))
def exact_diagonal_kernel(experiments, fiducial, names, prior, chunk):
    return kernels.exact_diagonal(experiments, fiducial, names, prior, chunk)


@cached_kernel(static_argnames=("names", "n_probes", "chunk"))
def hutchinson_kernel(experiments, fiducial, names, prior, key, n_probes, chunk):
    return kernels.hutchinson_diagonal(experiments, fiducial, names, prior, key, n_probes, chunk)


def _bound_matvec(experiments, fiducial, names, prior):
    def mv(x):
        return kernels.fisher_matvec(experiments, fiducial, names, prior, x)

    return mv


@cached_kernel(static_argnames=("names", "rtol", "max_steps"))
def cg_kernel(experiments, fiducial, names, prior, rhs, precond, rtol, max_steps):
    mv = _bound_matvec(experiments, fiducial, names, prior)
    return jax.vmap(lambda b: krylov.pcg(mv, b, precond, rtol, max_steps))(rhs)


@cached_kernel(static_argnames=("names", "m"))
def lanczos_kernel(experiments, fiducial, names, prior, q0, m, steps):
    mv = _bound_matvec(experiments, fiducial, names, prior)
    return krylov.lanczos(mv, q0, m, steps)


@cached_kernel(static_argnames=("names", "n_probes", "steps", "fn"))
def slq_kernel(experiments, fiducial, names, prior, key, n_probes, steps, fn):
    mv = _bound_matvec(experiments, fiducial, names, prior)
    f = {"log": jnp.log, "identity": lambda x: x}[fn]
    n = prior.shape[0]
    return krylov.slq(mv, n, key, n_probes, steps, f)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Estimate(Record):
    """A stochastic estimate: ``value ± error`` (``error``: the standard error of the mean
    over ``n_probes`` probes; the quadrature error of ``steps`` Lanczos steps is not in it)."""

    value: float
    error: float
    n_probes: int
    steps: int = 0

    def summary(self) -> str:
        return f"{self.value:.8g} ± {self.error:.2g} ({self.n_probes} probes)"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Diagonal(Record):
    """The diagonal of ``F``: ``values[i]`` for ``names[i]``; ``error`` is ``None`` (exact) or
    the per-entry standard error of Hutchinson's estimate."""

    names: tuple
    values: np.ndarray
    error: np.ndarray | None
    method: str

    def as_dict(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values, strict=True)}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class MarginalSigma(Record):
    """Marginal Cramér–Rao bounds ``σᵢ = √(F⁻¹)ᵢᵢ`` by conjugate gradients.

    ``sigma`` and ``residual`` (``‖F x − eᵢ‖ / ‖eᵢ‖`` of the solve) are keyed by element
    name; ``steps`` is the number of CG iterations per solve."""

    sigma: dict
    residual: dict
    steps: dict
    converged: bool

    def summary(self) -> str:
        worst = max(self.residual.values())
        lines = [f"{n}: σ = {s:.6g}" for n, s in self.sigma.items()]
        return "\n".join([*lines, f"(largest CG residual {worst:.1e}, converged={self.converged})"])


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class OperatorEigen(Record):
    """Extreme eigenpairs of ``F``: ``values`` descending; ``vectors[j]`` maps each parameter
    name to its component(s) (an array for an array-valued parameter); ``residual[j]`` is
    ``‖F v − λ v‖ / |λ|``."""

    values: np.ndarray
    vectors: list
    residual: np.ndarray
    which: str
    steps: int = 0


# ---------------------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------------------
class FisherOperator:
    """The Fisher matrix of one or several independent experiments, applied matrix-free.

    Build it with :func:`fisher_operator`. ``P = size``; element names are those of
    :func:`ff.fisher` (``calib[0]``, ... for an array-valued parameter). Immutable:
    :meth:`with_prior` and :meth:`fix` return new operators.

    A vector parameter ``c`` with ``μ = c·x`` at ``x = 1, 2, 3`` and unit noise has
    ``F = diag(x²) = diag(1, 4, 9)``, so ``σ = 1/x``:

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=1.0),
    ...                     design=np.array([1.0, 2.0, 3.0]))
    >>> op = ff.fisher_operator(exp, {"c": np.ones(3)})
    >>> op.names, op.labels, op.shape
    (('c',), ('c[0]', 'c[1]', 'c[2]'), (3, 3))
    >>> op.matvec(np.ones(3)).tolist()                     # F · (1, 1, 1)
    [1.0, 4.0, 9.0]
    >>> {k: round(v, 6) for k, v in op.sigma().sigma.items()}
    {'c[0]': 1.0, 'c[1]': 0.5, 'c[2]': 0.333333}
    >>> op.with_prior({"c": 0.5}).diagonal().as_dict()     # + 1/0.5² on the diagonal
    {'c[0]': 5.0, 'c[1]': 8.0, 'c[2]': 13.0}
    ```
    """

    __slots__ = ("_diag", "_experiments", "_fid", "_labels", "_names", "_prior")

    def __init__(self, experiments, fid, names, prior):
        object.__setattr__(self, "_experiments", tuple(experiments))
        object.__setattr__(self, "_fid", fid)
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_labels", expand_names(fid, names))
        prior = np.asarray(prior, dtype=np.float64)
        prior.setflags(write=False)
        object.__setattr__(self, "_prior", prior)
        object.__setattr__(self, "_diag", {})

    def __setattr__(self, key, value):
        raise AttributeError("FisherOperator is immutable; with_prior/fix return a new one.")

    def __repr__(self):
        labels = " + ".join(e.label for e in self._experiments)
        return f"FisherOperator({labels}, params={list(self._names)}, size={self.size})"

    # ----- attributes --------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The varied parameters (array-valued ones as one name)."""
        return self._names

    @property
    def labels(self) -> tuple[str, ...]:
        """One name per row: ``calib[0]``, ... for array-valued parameters."""
        return self._labels

    @property
    def size(self) -> int:
        return len(self._labels)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def fiducial(self) -> dict:
        return flat_values(self._fid, self._names)

    @property
    def prior(self) -> np.ndarray:
        """The diagonal of the Gaussian prior added to ``F`` (``1/σ²``; zeros: none)."""
        return self._prior

    # ----- products ----------------------------------------------------------------------
    def _vector(self, v, what="v"):
        if isinstance(v, dict):
            v = self.from_dict(v)
        arr = np.asarray(v)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise InputError(f"`{what}` must be a real array; received {quote(v)}.")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.size:
            raise InputError(
                f"`{what}` must have shape ({self.size},) or (k, {self.size}) (one entry per "
                f"parameter element); received shape {arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise InputError(f"`{what}` contains NaN or inf.")
        return arr.astype(np.float64)

    def matvec(self, v) -> np.ndarray:
        """``F v`` for ``v`` of shape ``(P,)``, a batch ``(k, P)``, or a dict name -> values.

        ```python
        >>> import numpy as np, jax.numpy as jnp, fisherforecast as ff
        >>> exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=1.0),
        ...                     design=np.arange(1.0, 4.0))
        >>> op = ff.fisher_operator(exp, {"c": np.ones(3)})
        >>> op.matvec(np.ones(3)).tolist()     # F = diag(x²)
        [1.0, 4.0, 9.0]
        ```
        """
        x = self._vector(v)
        with float64(), model_runtime_errors(self._experiments):
            out = matvec_kernel(self._experiments, self._fid, self._names, self._prior, x)  # pyright: ignore[reportCallIssue]
            return np.asarray(out, dtype=np.float64)

    __matmul__ = matvec

    def function(self):
        """A pure JAX function ``v -> F v`` (``jit``/``vmap``/``grad``-able; call it under
        ``jax.enable_x64(True)``)."""
        exps, fid, names, prior = self._experiments, self._fid, self._names, self._prior
        return _bound_matvec(exps, fid, names, jnp.asarray(prior))

    def as_lineax(self):
        """The operator as a ``lineax.FunctionLinearOperator`` tagged symmetric and positive
        semi-definite (for ``lineax.linear_solve`` with ``lineax.CG``); use under float64."""
        import lineax as lx

        struct = jax.ShapeDtypeStruct((self.size,), jnp.float64)
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(self.function(), struct, tags=tags)

    def to_dense(self, chunk: int = 256):
        """The dense matrix as a :class:`ff.FisherMatrix` (``P`` products; for checks at
        moderate ``P``)."""
        from .._matrix import FisherMatrix

        eye = np.eye(self.size)
        cols = [self.matvec(eye[i : i + chunk]) for i in range(0, self.size, chunk)]
        M = np.concatenate(cols, axis=0)
        return FisherMatrix(0.5 * (M + M.T), self._labels, fiducial=self.fiducial)

    def from_dict(self, values: dict) -> np.ndarray:
        """A ``(P,)`` vector from a dict name -> value(s) (missing names are 0)."""
        unknown = [k for k in values if k not in self._names and k not in self._labels]
        if unknown:
            raise ParameterError(
                f"names {unknown} are not parameters of this operator: {list(self._names)}."
            )
        out = np.zeros(self.size)
        index = {n: i for i, n in enumerate(self._labels)}
        for name in self._names:
            if name in values:
                sl = self._slice(name)
                out[sl] = np.broadcast_to(
                    np.asarray(values[name], float), self._shape(name)
                ).ravel()
        for label, v in values.items():
            if label in index:
                out[index[label]] = float(v)
        return out

    def to_dict(self, vector) -> dict:
        """Split a ``(P,)`` vector into name -> float / array (in the parameters' shapes)."""
        vector = np.asarray(vector)
        out = {}
        for name in self._names:
            block = vector[self._slice(name)]
            shape = self._shape(name)
            out[name] = float(block[0]) if not shape else block.reshape(shape)
        return out

    def _shape(self, name):
        return np.shape(self._fid[name])

    def _slice(self, name):
        start = 0
        for n in self._names:
            size = math.prod(self._shape(n))
            if n == name:
                return slice(start, start + size)
            start += size
        raise KeyError(name)

    # ----- priors and fixed parameters ---------------------------------------------------
    def with_prior(self, sigmas: dict) -> FisherOperator:
        """Add independent Gaussian priors, ``F_ii += 1/σᵢ²``. ``sigmas`` maps a parameter
        (a scalar, or an array one: then σ is a scalar or an array of its shape) or an
        element name (``"calib[3]"``) to σ.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=1.0),
        ...                     design=np.arange(1.0, 4.0))
        >>> op = ff.fisher_operator(exp, {"c": np.ones(3)}).with_prior({"c": 0.5})
        >>> op.matvec(np.ones(3)).tolist()
        [5.0, 8.0, 13.0]
        ```
        """
        if not isinstance(sigmas, dict):
            raise TypeError(f"with_prior expects a dict name -> sigma; received {quote(sigmas)}.")
        sig = self.from_dict({k: 1.0 for k in sigmas})  # validates the names
        values = self.from_dict(sigmas)
        bad = (sig > 0) & ~(np.isfinite(values) & (values > 0))
        if np.any(bad):
            where = [self._labels[i] for i in np.nonzero(bad)[0][:5]]
            raise InputError(
                f"prior sigmas must be positive and finite; received bad values for {where}."
            )
        add = np.where(sig > 0, 1.0 / np.where(sig > 0, values, 1.0) ** 2, 0.0)
        return FisherOperator(self._experiments, self._fid, self._names, self._prior + add)

    def fix(self, names) -> FisherOperator:
        """Hold whole parameters at their fiducial values (remove them from the operator)."""
        drop = check_subset(names, self._names, "fix(names)")
        keep = tuple(n for n in self._names if n not in drop)
        if not keep:
            raise InputError("fix() would hold every parameter fixed; keep at least one.")
        prior = np.concatenate([self._prior[self._slice(n)] for n in keep])
        return FisherOperator(self._experiments, self._fid, keep, prior)

    # ----- the diagonal ------------------------------------------------------------------
    def diagonal(self, method="exact", *, n_probes=100, seed=0, chunk=64) -> Diagonal:
        """The diagonal of ``F`` (prior included).

        - ``method="exact"``: the squared gradients of the whitened outputs, summed over
          data (one reverse pass per datum, or one forward pass per parameter, whichever
          is fewer; ``P`` products for noise without a data-space square root).
        - ``method="hutchinson"``: ``mean(z ⊙ F z)`` over ``n_probes`` Rademacher vectors,
          with the standard error of each entry in ``error``.

        ``chunk`` passes run at once (memory ``chunk × (N + P)``).
        """
        if method not in ("exact", "hutchinson"):
            raise InputError(f"`method` must be 'exact' or 'hutchinson'; received {method!r}.")
        chunk = check_int(chunk, "chunk", 1)
        with float64(), model_runtime_errors(self._experiments):
            if method == "exact":
                if "exact" not in self._diag:
                    d = exact_diagonal_kernel(
                        self._experiments, self._fid, self._names, self._prior, chunk
                    )  # pyright: ignore[reportCallIssue]
                    self._diag["exact"] = np.asarray(d, dtype=np.float64)
                return Diagonal(
                    names=self._labels, values=self._diag["exact"], error=None, method=method
                )
            n_probes = check_int(n_probes, "n_probes", 2)
            key = jax.random.PRNGKey(check_seed(seed))
            est, err = hutchinson_kernel(
                self._experiments,
                self._fid,
                self._names,
                self._prior,
                key,
                n_probes,
                min(chunk, n_probes),
            )  # pyright: ignore[reportCallIssue]
        return Diagonal(
            names=self._labels,
            values=np.asarray(est, np.float64),
            error=np.asarray(err, np.float64),
            method=method,
        )

    # ----- marginal errors ---------------------------------------------------------------
    def sigma(self, names=None, *, rtol=1e-10, max_steps=None, preconditioner="auto"):
        """Marginal 1σ bounds ``√(F⁻¹)ᵢᵢ`` of a few parameters, over all the others.

        Solves ``F x = eᵢ`` by preconditioned conjugate gradients (lineax) for each element
        of `names` (parameter or element names; default: all, only sensible for small
        ``P``). `preconditioner` (Jacobi, ``diag(F)⁻¹``): ``"jacobi"`` (the exact diagonal,
        computed once and kept: min(N, P) passes), ``"hutchinson"`` (64 Rademacher products,
        good to a few per cent, enough for a preconditioner), ``"auto"`` (exact up to
        ``P = 4096``, Hutchinson above), ``None``, or a ``(P,)`` array approximating the
        diagonal. The preconditioner changes the number of iterations, not the answer.
        Returns a
        :class:`MarginalSigma` with each solve's residual; a solve that has not reached
        `rtol` in `max_steps` (default ``P``) iterations raises, naming the residual.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> exp = ff.Experiment(lambda p, x: p["a"] + p["b"] * x, ff.Gaussian(sigma=1.0),
        ...                     design=np.arange(5.0))
        >>> r = ff.fisher_operator(exp, {"a": 0.0, "b": 1.0}).sigma(["a"])
        >>> round(r.sigma["a"], 6)     # √(Σx² / (N Σx² − (Σx)²)) = √(30/50)
        0.774597
        ```
        """
        labels = self._selected(names)
        max_steps = self.size if max_steps is None else check_int(max_steps, "max_steps", 1)
        if not (isinstance(rtol, float) and 0 < rtol < 1):
            raise InputError(f"`rtol` must be a float in (0, 1); received {rtol!r}.")
        pre = self._preconditioner(preconditioner)
        index = {n: i for i, n in enumerate(self._labels)}
        rhs = np.zeros((len(labels), self.size))
        for j, n in enumerate(labels):
            rhs[j, index[n]] = 1.0
        with float64(), model_runtime_errors(self._experiments):
            x, resid, steps = cg_kernel(
                self._experiments, self._fid, self._names, self._prior, rhs, pre, rtol, max_steps
            )  # pyright: ignore[reportCallIssue]
        x, resid, steps = np.asarray(x), np.asarray(resid), np.asarray(steps)
        var = np.array([x[j, index[n]] for j, n in enumerate(labels)])
        bad = ~np.isfinite(var) | (var <= 0) | ~np.isfinite(resid)
        if np.any(bad):
            which = [labels[j] for j in np.nonzero(bad)[0][:5]]
            raise NonFiniteError(
                f"Conjugate gradients failed for {which} (F x = e gave x_ii = "
                f"{[float(var[j]) for j in np.nonzero(bad)[0][:5]]}): the Fisher matrix is "
                "singular or nearly so in these directions. Add priors (op.with_prior), fix "
                "unconstrained parameters (op.fix), or look at op.eigen(k, 'smallest')."
            )
        converged = bool(np.all(resid <= max(10 * rtol, 1e-13)))
        if not converged:
            worst = int(np.argmax(resid))
            raise NonFiniteError(
                f"Conjugate gradients did not converge for {labels[worst]!r}: relative "
                f"residual {resid[worst]:.2e} > rtol={rtol:g} after {int(steps[worst])} "
                "steps. Raise max_steps, loosen rtol, or add priors on weakly constrained "
                "parameters (a badly conditioned F needs many iterations)."
            )
        return MarginalSigma(
            sigma={n: float(np.sqrt(v)) for n, v in zip(labels, var, strict=True)},
            residual={n: float(r) for n, r in zip(labels, resid, strict=True)},
            steps={n: int(s) for n, s in zip(labels, steps, strict=True)},
            converged=converged,
        )

    def _selected(self, names):
        if names is None:
            return list(self._labels)
        return check_subset(names, self._labels, "sigma(names)")

    def _preconditioner(self, preconditioner):
        if preconditioner is None:
            return np.ones(self.size)
        if isinstance(preconditioner, str):
            if preconditioner not in ("auto", "jacobi", "hutchinson"):
                raise InputError(
                    "`preconditioner` must be 'auto', 'jacobi', 'hutchinson', None or a (P,) "
                    f"array approximating the diagonal; received {preconditioner!r}."
                )
            exact = preconditioner == "jacobi" or (
                preconditioner == "auto" and self.size <= AUTO_EXACT_DIAGONAL
            )
            if exact:
                d = self.diagonal("exact").values
            else:
                if "hutchinson" not in self._diag:
                    self._diag["hutchinson"] = self.diagonal("hutchinson", n_probes=64).values
                d = self._diag["hutchinson"]
        else:
            d = np.asarray(preconditioner, dtype=np.float64)
            if d.shape != (self.size,):
                raise InputError(
                    f"`preconditioner` must have shape ({self.size},); received {d.shape}."
                )
        pos = d[np.isfinite(d) & (d > 0)]
        floor = float(pos.max()) * 1e-300 if pos.size else 1.0
        return np.where(np.isfinite(d) & (d > floor), d, max(floor, 1e-300))

    # ----- spectrum ----------------------------------------------------------------------
    def eigen(self, k: int = 6, which: str = "largest", *, tol=1e-8, max_steps=None, seed=0):
        """The `k` largest or smallest eigenpairs by Lanczos with full reorthogonalisation.

        The largest come from ARPACK's implicitly restarted Lanczos (``scipy``'s ``eigsh``
        on ``F v``). For the smallest, Lanczos runs ``m`` steps from a random start
        (``m = max(4k, 60)``, doubled until the wanted Ritz pairs have residual
        ``‖Fv − θv‖ ≤ tol·|θ|``; at most `max_steps`, default ``min(P, 2000)``; with ``P``
        steps the result is exact). Memory ``m × P``.

        Returns an :class:`OperatorEigen`: eigenvalues descending, eigenvectors as dicts
        name -> component(s), and each pair's relative residual ``‖Fv − λv‖/|λ|``
        (recomputed with ``F``). The smallest eigenvalues of a sloppy model converge slowly
        (``m`` grows with ``√cond F``); a pair that has not converged is reported through its
        residual, never dropped. One start vector sees an eigenvalue repeated in ``F`` once:
        when the basis closes on an invariant subspace first, fewer than `k` (distinct)
        pairs come back.

        ```python
        >>> import numpy as np, fisherforecast as ff
        >>> exp = ff.Experiment(lambda p, x: p["c"] * x, ff.Gaussian(sigma=1.0),
        ...                     design=np.arange(1.0, 5.0))
        >>> e = ff.fisher_operator(exp, {"c": np.ones(4)}).eigen(2)
        >>> e.values.round(6).tolist(), np.abs(e.vectors[0]["c"]).round(6).tolist()
        ([16.0, 9.0], [0.0, 0.0, 0.0, 1.0])
        ```
        """
        if which not in ("largest", "smallest"):
            raise InputError(f"`which` must be 'largest' or 'smallest'; received {which!r}.")
        k = check_int(k, "k", 1)
        if k > self.size:
            raise InputError(f"`k` must be at most the number of parameters ({self.size}).")
        cap = (
            min(self.size, DEFAULT_LANCZOS_STEPS)
            if max_steps is None
            else min(check_int(max_steps, "max_steps", k), self.size)
        )
        m = min(cap, max(4 * k, 60))
        q0 = np.random.default_rng(check_seed(seed)).standard_normal(self.size)
        if which == "largest" and k < self.size - 1:
            return self._eigen_arpack(k, tol, q0)
        buffer = min(cap, 4 * m)  # one compiled kernel for several lengths
        while True:
            buffer = max(buffer, m)
            with float64(), model_runtime_errors(self._experiments):
                alpha, beta, Q = lanczos_kernel(
                    self._experiments, self._fid, self._names, self._prior, q0, buffer, m
                )  # pyright: ignore[reportCallIssue]
            # An invariant subspace after n < m steps leaves zero rows: T is n × n.
            dead = np.nonzero(np.asarray(beta)[:m] == 0.0)[0]
            n = int(dead[0]) + 1 if dead.size else m
            alpha, beta, Q = np.asarray(alpha)[:n], np.asarray(beta)[:n], np.asarray(Q)[:n]
            T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
            theta, S = np.linalg.eigh(T)
            pick = np.arange(max(0, n - k), n) if which == "largest" else np.arange(min(k, n))
            est = np.abs(beta[-1] * S[-1, pick])
            if np.all(est <= tol * np.abs(theta[pick])) or m >= cap or n < m:
                break
            m = min(cap, 2 * m)
        w = theta[pick]
        V = Q.T @ S[:, pick]
        order = np.argsort(w)[::-1]
        w, V = w[order], V[:, order]
        FV = self.matvec(V.T).T
        resid = np.linalg.norm(FV - V * w, axis=0) / np.maximum(np.abs(w), 1e-300)
        vectors = [self.to_dict(V[:, j]) for j in range(V.shape[1])]
        return OperatorEigen(values=w, vectors=vectors, residual=resid, which=which, steps=m)

    def _eigen_arpack(self, k, tol, q0):
        """The largest eigenpairs by ARPACK's implicitly restarted Lanczos (scipy)."""
        from scipy.sparse.linalg import LinearOperator, eigsh

        lin = LinearOperator(self.shape, matvec=self.matvec, dtype=np.float64)  # pyright: ignore[reportCallIssue]
        ncv = min(self.size, max(2 * k + 1, 20))
        w, V = eigsh(lin, k=k, which="LA", tol=tol * 1e-2, ncv=ncv, v0=q0, maxiter=100 * self.size)  # pyright: ignore[reportAssignmentType]
        order = np.argsort(w)[::-1]
        w, V = np.asarray(w)[order], np.asarray(V)[:, order]
        FV = self.matvec(V.T).T
        resid = np.linalg.norm(FV - V * w, axis=0) / np.maximum(np.abs(w), 1e-300)
        vectors = [self.to_dict(V[:, j]) for j in range(V.shape[1])]
        return OperatorEigen(values=w, vectors=vectors, residual=resid, which="largest", steps=ncv)

    # ----- log-determinant and trace -----------------------------------------------------
    def logdet(self, *, n_probes=30, steps=60, seed=0) -> Estimate:
        """``log det F`` by stochastic Lanczos quadrature: ``n_probes`` Rademacher probes,
        ``steps`` Lanczos steps each (memory ``steps × P``); ``error`` is the standard error
        over probes. For D-optimal design at large ``P``."""
        return self._slq("log", n_probes, steps, seed)

    def trace(self, *, n_probes=30, steps=60, seed=0) -> Estimate:
        """``tr F`` by stochastic Lanczos quadrature (A-optimal design uses ``tr F⁻¹``; ``tr
        F`` is the total information)."""
        return self._slq("identity", n_probes, steps, seed)

    def _slq(self, fn, n_probes, steps, seed):
        n_probes = check_int(n_probes, "n_probes", 2)
        steps = min(check_int(steps, "steps", 2), self.size)
        key = jax.random.PRNGKey(check_seed(seed))
        with float64(), model_runtime_errors(self._experiments):
            est, err, _ = slq_kernel(
                self._experiments, self._fid, self._names, self._prior, key, n_probes, steps, fn
            )  # pyright: ignore[reportCallIssue]
        return Estimate(value=float(est), error=float(err), n_probes=n_probes, steps=steps)


def fisher_operator(experiment_or_list, fiducial, *, params=None) -> FisherOperator:
    """The Fisher matrix of one or several independent experiments as a matrix-free
    operator: ``F v`` with one ``jvp`` and one ``vjp`` through each model, never forming
    the Jacobian or the matrix (memory O(N + P)).

    **Arguments:** as :func:`ff.fisher`. Fiducial values may be arrays
    (``{"calib": np.ones(100_000), "A": 1.0}``); rows are then named ``calib[0]``, ...

    **Returns:** a :class:`FisherOperator` with ``matvec``, ``sigma``, ``eigen``,
    ``diagonal``, ``logdet``, ``trace``, ``with_prior``, ``fix``, ``function`` (pure JAX)
    and ``as_lineax``. See ``docs/matrix_free.md``.

    ```python
    >>> import numpy as np, fisherforecast as ff
    >>> x = np.linspace(0.0, 1.0, 200)
    >>> exp = ff.Experiment(lambda p, x: p["A"] * p["calib"] * x, ff.Gaussian(sigma=0.1),
    ...                     design=x)
    >>> op = ff.fisher_operator(exp, {"calib": np.ones(200), "A": 1.0})
    >>> op.size, op.labels[:2], op.labels[-1]
    (201, ('calib[0]', 'calib[1]'), 'A')
    ```
    """
    refuse_tracers("ff.fisher_operator", experiment_or_list, fiducial)
    experiments = as_experiments(experiment_or_list)
    for exp in experiments:
        modes = getattr(exp.model, "autodiff_modes", None)
        if modes is not None and not {"forward", "reverse"} <= set(modes):
            raise InputError(
                f"ff.fisher_operator needs both a jvp and a vjp through the model, but the "
                f"model of {exp.label} supports only {tuple(modes)} differentiation. For an "
                "ff.ode_model pass adjoint=diffrax.DirectAdjoint() (both modes), or use "
                "ff.fisher for a dense matrix."
            )
    fid = check_fiducial_arrays(fiducial)
    names = check_names(params, fid)
    fid64 = {k: np.asarray(v, dtype=np.float64) for k, v in fid.items()}
    size = sum(len(element_names(n, fid[n])) for n in names)
    with float64(), model_runtime_errors(experiments):
        probes = jax.device_get(probe_kernel(tuple(experiments), fid64, names))  # pyright: ignore[reportCallIssue]
    for exp, (mean, checks) in zip(experiments, probes, strict=True):
        mean = np.asarray(mean)
        if not np.all(np.isfinite(mean)):
            idx = np.argwhere(~np.isfinite(mean))[:5].tolist()
            raise NonFiniteError(
                f"The model of {exp.label} returned NaN/inf at the fiducial, first at output "
                f"index {idx}. Check the model at these parameter values."
            )
        for message, ok in checks.items():
            if not bool(ok):
                raise InputError(f"Noise model of {exp.label}: {message}, at the fiducial.")
    return FisherOperator(experiments, fid64, names, np.zeros(size))
