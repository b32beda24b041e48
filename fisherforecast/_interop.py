"""Hand Fisher matrices and posterior samples on to getdist, ChainConsumer, arviz and pandas.

Each converter imports its package on first use; install them with
``pip install "fisherforecast[interop]"``. The methods ``FisherMatrix.to_getdist``,
``to_chainconsumer``, ``to_dataframe`` and the ``to_getdist`` / ``to_chainconsumer`` /
``to_inference_data`` methods of :class:`CrossCheck` and :class:`DALISamples` delegate here.

Conventions carried over: a Fisher matrix becomes a Gaussian centred on its fiducial (on 0
when it has none) with covariance ``F⁻¹`` from the library's robust inverse, so the σ that
getdist or ChainConsumer report are ``F.sigma()``; a singular matrix raises
:class:`SingularFisherError` naming the degenerate combination instead of handing on a
meaningless covariance. LaTeX labels lose their ``$`` delimiters (getdist adds its own).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from ._checks import check_subset
from ._errors import InputError, quote
from ._matrix import FisherMatrix, marginal_sigma_or_inf

__all__ = [
    "samples_to_chainconsumer",
    "save_covmat",
    "sigma_table",
    "to_chainconsumer",
    "to_dataframe",
    "to_getdist",
    "to_inference_data",
    "to_mcsamples",
]

DATAFRAME_KINDS = ("matrix", "covariance", "correlation", "summary")


def _require(package: str, extra: str = "interop"):
    import importlib

    try:
        with warnings.catch_warnings():
            # arviz 0.x announces its 1.0 refactor on import; it is not about the caller.
            warnings.filterwarnings("ignore", message=r"(?s).*ArviZ is undergoing")
            return importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(
            f"this conversion needs the package {package.split('.')[0]!r} ({exc}); install "
            f'it with pip install "fisherforecast[{extra}]".'
        ) from None


def _plain_label(label: str) -> str:
    label = label.strip()
    if len(label) >= 2 and label.startswith("$") and label.endswith("$"):
        return label[1:-1]
    return label


def _subset(F: FisherMatrix, names) -> FisherMatrix:
    if names is None:
        return F
    return F.marginalize(check_subset(names, F.names, "names"))


def _gaussian(F: FisherMatrix):
    mean = np.array([F.fiducial[n] for n in F.names]) if F.fiducial else np.zeros(F.n_params)
    return mean, F.covariance()


# ----- Fisher matrices ---------------------------------------------------------------------
def to_getdist(F: FisherMatrix, names=None, label: str | None = None):
    """The Fisher forecast as a getdist ``GaussianND`` (for ``triangle_plot`` and friends).

    `names` marginalises onto a subset first; `label` (default: the experiment name) is the
    legend entry. The mean is the fiducial and the covariance ``F⁻¹``.

    ```python
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> g = F.to_getdist(label="forecast")
    >>> [round(float(s), 6) for s in g.covs[0].diagonal() ** 0.5]
    [0.912871, 0.57735]
    ```
    """
    gm = _require("getdist.gaussian_mixtures")
    F = _subset(F, names)
    mean, cov = _gaussian(F)
    return gm.GaussianND(
        mean,
        cov,
        names=list(F.names),
        labels=[_plain_label(F.labels[n]) for n in F.names],
        label=label if label is not None else (F.name or ""),
    )


def save_covmat(F: FisherMatrix, path, names=None, *, overwrite: bool = False) -> None:
    """Write the forecast covariance ``F⁻¹`` as a getdist/CosmoMC ``.covmat`` file.

    The file is a ``# name1 name2 ...`` header line and the covariance rows, written to 17
    significant digits so that it reads back exactly. getdist's ``CovMat(path)`` reads it,
    Cobaya and CosmoMC take it as a proposal covariance. `names` marginalises onto a subset
    first. A singular matrix raises :class:`SingularFisherError` naming the degenerate
    combination (no file is written); names with whitespace cannot be written in the header
    and are refused. The write is atomic and refuses to replace an existing file unless
    ``overwrite=True``.

    ```python
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[4.0, 0.0], [0.0, 1.0]], ["a", "b"])
    >>> path = Path(tempfile.mkdtemp()) / "forecast.covmat"
    >>> F.save_covmat(path)
    >>> path.read_text().splitlines()[0]
    '# a b'
    >>> np.loadtxt(path).tolist()
    [[0.25, 0.0], [0.0, 1.0]]
    ```
    """
    from ._io import atomic_path

    F = _subset(F, names)
    bad = [n for n in F.names if not n or any(c.isspace() for c in n)]
    if bad:
        raise InputError(
            f"a .covmat header separates names by whitespace, so the names {bad!r} cannot be "
            "written; save with F.save(...) instead, or build the matrix with names without spaces."
        )
    cov = F.covariance()
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("# " + " ".join(F.names) + "\n")
        np.savetxt(fh, cov, fmt="%.17e")


def to_chainconsumer(F: FisherMatrix, names=None, name: str | None = None):
    """The Fisher forecast as a ChainConsumer ``Chain`` (``Chain.from_covariance``).

    ```python
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[4.0, 0.0], [0.0, 1.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> chain = F.to_chainconsumer(name="forecast")
    >>> chain.samples[["a", "b"]].std().round(2).to_dict()
    {'a': 0.5, 'b': 1.0}
    ```
    """
    cc = _require("chainconsumer")
    F = _subset(F, names)
    mean, cov = _gaussian(F)
    return cc.Chain.from_covariance(
        mean, cov, columns=list(F.names), name=name if name is not None else (F.name or "Fisher")
    )


def to_dataframe(F: FisherMatrix, kind: str = "matrix"):
    """A pandas DataFrame of the matrix, its covariance or correlation, or the σ table.

    `kind`: ``"matrix"`` (the Fisher matrix, rows and columns named), ``"covariance"``
    (``F⁻¹``), ``"correlation"``, or ``"summary"`` (one row per parameter: fiducial, σ,
    σ/|fiducial|, conditional σ and label, as in :meth:`FisherMatrix.summary`; σ is ``inf``
    for a parameter a singular matrix leaves unconstrained).

    ```python
    >>> import fisherforecast as ff
    >>> F = ff.FisherMatrix([[4.0, 0.0], [0.0, 1.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> F.to_dataframe("summary")["sigma"].to_dict()
    {'a': 0.5, 'b': 1.0}
    ```
    """
    pd = _require("pandas")
    if kind not in DATAFRAME_KINDS:
        raise InputError(f"`kind` must be one of {DATAFRAME_KINDS}; received {quote(kind)}.")
    index = pd.Index(list(F.names), name="parameter")
    if kind != "summary":
        values = {"matrix": F.matrix, "covariance": None, "correlation": None}[kind]
        if values is None:
            values = F.covariance() if kind == "covariance" else F.correlation()
        return pd.DataFrame(np.array(values), index=index, columns=list(F.names))
    sigma = marginal_sigma_or_inf(F)
    fid = F.fiducial or {n: math.nan for n in F.names}
    return pd.DataFrame(
        {
            "fiducial": [fid[n] for n in F.names],
            "sigma": [sigma[n] for n in F.names],
            "relative_sigma": [
                sigma[n] / abs(fid[n]) if fid[n] not in (0.0,) else math.nan for n in F.names
            ],
            "conditional_sigma": [F.conditional_sigma()[n] for n in F.names],
            "label": [F.labels[n] for n in F.names],
        },
        index=index,
    )


def sigma_table(fishers, names=None, relative: bool = False):
    """Marginal 1σ of several forecasts side by side, as a pandas DataFrame.

    `fishers`: a dict label -> :class:`FisherMatrix` (the column names), or a list (columns
    named after the experiments). Rows are the parameters (`names`, default: the union in
    order of appearance); a parameter a matrix does not have is NaN, one it leaves
    unconstrained (a singular matrix) is ``inf``. `relative=True` divides by |fiducial|.

    ```python
    >>> import fisherforecast as ff
    >>> A = ff.FisherMatrix([[4.0]], ["a"], name="A")
    >>> B = ff.FisherMatrix([[1.0, 0.0], [0.0, 25.0]], ["a", "b"], name="B")
    >>> ff.sigma_table([A, B]).to_dict()
    {'A': {'a': 0.5, 'b': nan}, 'B': {'a': 1.0, 'b': 0.2}}
    ```
    """
    pd = _require("pandas")
    items = _labelled(fishers)
    known = list(dict.fromkeys(n for F in items.values() for n in F.names))
    rows = known if names is None else check_subset(names, known, "sigma_table(names)")
    columns = {}
    for label, F in items.items():
        sigma = marginal_sigma_or_inf(F)
        fid = F.fiducial or {}
        col = []
        for n in rows:
            s = sigma.get(n, math.nan)
            if relative and n in sigma:
                s = s / abs(fid[n]) if fid.get(n) not in (None, 0.0) else math.nan
            col.append(s)
        columns[label] = col
    return pd.DataFrame(columns, index=pd.Index(rows, name="parameter"))


def _labelled(fishers) -> dict[str, FisherMatrix]:
    if isinstance(fishers, FisherMatrix):
        fishers = [fishers]
    if isinstance(fishers, Mapping):
        items = {str(k): v for k, v in fishers.items()}
    elif isinstance(fishers, Sequence) and not isinstance(fishers, str):
        items = {}
        for i, F in enumerate(fishers):
            base = getattr(F, "name", None) or f"F{i}"
            label, k = base, 2
            while label in items:
                label, k = f"{base} ({k})", k + 1
            items[label] = F
    else:
        raise InputError(
            "sigma_table expects a FisherMatrix, a list of them or a dict label -> "
            f"FisherMatrix; received {quote(fishers)}."
        )
    bad = {k: type(v).__name__ for k, v in items.items() if not isinstance(v, FisherMatrix)}
    if bad or not items:
        raise InputError(f"sigma_table needs FisherMatrix values; received {bad or 'none'}.")
    return items


# ----- posterior samples ------------------------------------------------------------------
def _chains(result, names) -> tuple[list[str], dict[str, np.ndarray]]:
    """name -> (chains, draws) array, from a CrossCheck/DALISamples or a sample dict."""
    chains = getattr(result, "chains", None)
    if chains is None:
        if not isinstance(result, Mapping):
            raise InputError(
                "expected a CrossCheck, DALISamples or a dict name -> 1-D array of draws; "
                f"received {quote(result)}."
            )
        chains = {str(k): np.asarray(v, dtype=np.float64)[None, :] for k, v in result.items()}
    all_names = list(getattr(result, "names", None) or chains)
    use = all_names if names is None else check_subset(names, all_names, "names")
    out = {n: np.asarray(chains[n], dtype=np.float64) for n in use}
    shapes = {a.shape for a in out.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise InputError(
            "every parameter needs the same number of draws (and chains); received "
            f"shapes {{{', '.join(f'{n}: {a.shape}' for n, a in out.items())}}}."
        )
    return use, out


def _labels_of(result, names) -> list[str]:
    F = getattr(result, "fisher", None)
    labels = F.labels if isinstance(F, FisherMatrix) else {}
    return [_plain_label(labels.get(n, n)) for n in names]


def to_mcsamples(result, names=None, label: str | None = None):
    """Posterior draws as a getdist ``MCSamples`` (one getdist chain per sampler chain).

    `result`: a :class:`CrossCheck`, :class:`DALISamples` or a dict name -> draws. Pass the
    fiducial to getdist's plots as ``markers=`` to mark it.
    """
    getdist = _require("getdist")
    names, chains = _chains(result, names)
    n_chains = next(iter(chains.values())).shape[0]
    samples = [np.stack([chains[n][c] for n in names], axis=1) for c in range(n_chains)]
    with contextlib.redirect_stdout(io.StringIO()):  # getdist prints "Removed no burn in"
        return getdist.MCSamples(
            samples=samples if n_chains > 1 else samples[0],
            names=names,
            labels=_labels_of(result, names),
            label=label if label is not None else type(result).__name__,
        )


def samples_to_chainconsumer(result, names=None, name: str | None = None):
    """Posterior draws as a ChainConsumer ``Chain`` (all chains concatenated)."""
    cc = _require("chainconsumer")
    pd = _require("pandas")
    names, chains = _chains(result, names)
    frame = pd.DataFrame({n: chains[n].reshape(-1) for n in names})
    return cc.Chain(samples=frame, name=name if name is not None else type(result).__name__)


def to_inference_data(result, names=None):
    """Posterior draws as an arviz ``InferenceData`` (``posterior`` group, ``(chain, draw)``).

    Divergences, R-hat and ESS computed here are kept in the attributes; arviz recomputes its
    own from the draws (``az.summary``).
    """
    az = _require("arviz")
    names, chains = _chains(result, names)
    attrs = {"created_by": "fisherforecast"}
    for key in ("divergences", "data_kind"):
        if hasattr(result, key):
            attrs[key] = getattr(result, key)
    return az.from_dict(posterior={n: chains[n] for n in names}, attrs=attrs)


class SampleConversions:
    """Methods shared by result objects that hold posterior draws (``chains``, ``names``)."""

    def to_getdist(self, names=None, label=None):
        """getdist ``MCSamples`` of the draws, one getdist chain per sampler chain."""
        return to_mcsamples(self, names, label)

    def to_chainconsumer(self, names=None, name=None):
        """ChainConsumer ``Chain`` of the draws (chains concatenated)."""
        return samples_to_chainconsumer(self, names, name)

    def to_inference_data(self, names=None):
        """arviz ``InferenceData`` with the draws as its ``posterior`` group."""
        return to_inference_data(self, names)
