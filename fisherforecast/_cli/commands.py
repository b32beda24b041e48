"""What each ``fisherforecast`` subcommand does (the parser is in :mod:`.main`)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .._checks import check_subset
from .._io import atomic_path, load
from .._matrix import FisherMatrix

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class CommandError(Exception):
    """A failure the command explains itself; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class Progress:
    """Reports the current step on stderr with the time elapsed (silent with ``--quiet``)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


def _flat(lists) -> list[str]:
    return [n for names in lists for n in names]


def _load_all(files, progress) -> list[FisherMatrix]:
    out = []
    for i, path in enumerate(files, 1):
        progress(f"reading {path} ({i}/{len(files)})")
        out.append(load(path))
    return out


def _refuse_existing(path, force) -> None:
    """Fail before any long step if the output exists (the final write checks again)."""
    if not force and os.path.lexists(path):
        raise CommandError(f"{str(path)!r} already exists; pass --force to replace it.")
    folder = Path(path).parent
    if not folder.is_dir():
        raise CommandError(f"the output folder {str(folder)!r} does not exist; create it first.")


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, allow_nan=True))


def _save(F: FisherMatrix, path, force, progress, metadata=None) -> None:
    progress(f"writing {path}")
    F.save(path, overwrite=force, metadata=metadata)
    written = [str(path)]
    if Path(path).suffix.lower() not in (".h5", ".hdf5", ".hdf"):
        written.append(f"{path}.paramnames")
    print("wrote " + " and ".join(written))


# ----- info ------------------------------------------------------------------------------
def info(args) -> None:
    progress = Progress(args.quiet)
    progress(f"reading {args.file}")
    F = load(args.file)
    if args.json:
        _print_json({"file": str(args.file), **F.to_dict()})
        return
    print(f"file: {args.file}")
    print(F.summary())
    labels = {n: lab for n, lab in F.labels.items() if lab != n}
    if labels:
        print("labels: " + ", ".join(f"{n} = {lab}" for n, lab in labels.items()))
    if F.metadata:
        print("metadata: " + json.dumps(F.metadata, indent=2, default=str))


# ----- combine ---------------------------------------------------------------------------
def _merged_priors(prior_args) -> dict[str, float]:
    merged: dict[str, float] = {}
    for priors in prior_args:
        for name, sigma in priors.items():
            if name in merged:
                raise CommandError(f"--prior gives {name!r} twice; give one width per parameter.")
            merged[name] = sigma
    return merged


def combine(args) -> None:
    progress = Progress(args.quiet)
    _refuse_existing(args.output, args.force)
    matrices = _load_all(args.files, progress)
    progress(f"adding {len(matrices)} matrices")
    F = sum(matrices[1:], matrices[0])
    priors = _merged_priors(args.prior)
    if priors:
        check_subset(list(priors), F.names, "--prior")
        F = F.with_prior(priors)
    fix = _flat(args.fix)
    if fix:
        F = F.fix(check_subset(fix, F.names, "--fix"))
    drop = _flat(args.marginalize)
    if drop:
        drop = check_subset(drop, F.names, "--marginalize")
        keep = [n for n in F.names if n not in drop]
        if not keep:
            raise CommandError("--marginalize names every parameter; keep at least one.")
        progress(f"marginalising over {drop}")
        F = F.marginalize(keep)
    if args.name is not None:
        F = FisherMatrix(
            F.matrix, F.names, F.fiducial, F.labels, name=args.name, metadata=F.metadata
        )
    steps: dict[str, object] = {"combined_from": [str(p) for p in args.files]}
    if priors:
        steps["priors"] = priors
    if fix:
        steps["fixed_by_cli"] = fix
    if drop:
        steps["marginalized"] = drop
    print(F.summary())
    _save(F, args.output, args.force, progress, metadata=steps)


# ----- plot ------------------------------------------------------------------------------
def _legend(args, matrices) -> list[str]:
    if args.legend is not None:
        if len(args.legend) != len(matrices):
            raise CommandError(
                f"--legend has {len(args.legend)} labels {args.legend} for "
                f"{len(matrices)} files; give one per file."
            )
        labels = list(args.legend)
    else:
        labels = [F.name or Path(p).stem for F, p in zip(matrices, args.files, strict=True)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:  # a dict keyed by label would drop a repeated one
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    progress = Progress(args.quiet)
    _refuse_existing(args.output, args.force)
    suffix = Path(args.output).suffix.lower().lstrip(".")
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise CommandError(
            f"cannot tell the image format of {args.output!r} from its suffix; use one of "
            + ", ".join(f".{s}" for s in sorted(formats))
            + "."
        )
    matrices = _load_all(args.files, progress)
    known = list(dict.fromkeys(n for F in matrices for n in F.names))
    if args.params is not None:
        unknown = [n for n in args.params if n not in known]
        if unknown:
            raise CommandError(f"--params names {unknown}, which no file has. Parameters: {known}.")
    from .. import plot as ffplot

    progress("drawing the corner plot")
    items = dict(zip(_legend(args, matrices), matrices, strict=True))
    fig = ffplot.corner(items, names=args.params)
    progress(f"writing {args.output}")
    with atomic_path(args.output, args.force) as tmp:
        fig.savefig(tmp, format=suffix, dpi=args.dpi)
    print(f"wrote {args.output}")


# ----- convert ---------------------------------------------------------------------------
def convert(args) -> None:
    progress = Progress(args.quiet)
    if Path(args.input).resolve() == Path(args.output).resolve():
        raise CommandError("input and output are the same file; give a different output.")
    _refuse_existing(args.output, args.force)
    progress(f"reading {args.input}")
    F = load(args.input)
    if Path(args.output).suffix.lower() == ".covmat":
        progress(f"writing {args.output}")
        F.save_covmat(args.output, overwrite=args.force)
        print(f"wrote {args.output}")
        return
    _save(F, args.output, args.force, progress)


# ----- identifiability -------------------------------------------------------------------
def identifiability(args) -> None:
    from .._identify.analysis import identifiability as analyse

    progress = Progress(args.quiet)
    progress(f"reading {args.file}")
    F = load(args.file)
    if F.fiducial is None:
        raise CommandError(
            f"{args.file!r} has no fiducial values; the report needs them (relative errors "
            "and log-parameters). Save the matrix with its fiducial."
        )
    if args.params is not None:
        check_subset(args.params, F.names, "--params")
    progress("analysing")
    report = analyse(F, params=args.params)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())


# ----- petab -----------------------------------------------------------------------------
def _petab_loader():
    """``fisherforecast.petab.load``, or an error saying what is missing."""
    import fisherforecast

    try:
        module = fisherforecast.petab  # type: ignore[attr-defined]
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("fisherforecast"):
            raise CommandError(f"the PEtab importer is broken: {exc}") from None
        raise CommandError(
            f"the PEtab importer needs the package {exc.name!r}, which is not installed; "
            'install it (pip install "fisherforecast[petab]") and run again.'
        ) from None
    except AttributeError:
        raise CommandError(
            "this fisherforecast has no PEtab importer (fisherforecast.petab) yet, so it "
            "cannot read PEtab problems. Upgrade fisherforecast to a version that has it; "
            "meanwhile build the experiments in Python and use 'ff.identifiability'."
        ) from None
    loader = getattr(module, "load", None)
    if not callable(loader):
        raise CommandError(
            "fisherforecast.petab has no 'load' function; this fisherforecast's PEtab "
            "importer is not the one this command expects."
        )
    return loader


def petab(args) -> None:
    from .._fisher import fisher
    from .._identify.analysis import identifiability as analyse

    loader = _petab_loader()
    if not Path(args.problem).is_file():
        raise CommandError(f"no PEtab problem file at {args.problem!r}.")
    if args.output is not None:
        _refuse_existing(args.output, args.force)
    progress = Progress(args.quiet)
    progress(f"importing {args.problem}")
    # ln θ with relative errors is what the report reads: ask for linear-scale parameters
    # (PEtab problems mostly estimate log10 θ) where the importer offers the choice.
    takes_scale = "scale" in inspect.signature(loader).parameters
    problem: Any = loader(args.problem, scale=args.scale) if takes_scale else loader(args.problem)
    if not takes_scale:
        progress("note: this PEtab importer has no scale option; parameters on the problem's scale")
    experiments, nominal = list(problem.experiments), problem.nominal
    progress("identifiability at the nominal parameters (compiles the model)")
    report = analyse(experiments, nominal)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    if args.output is not None:
        progress("Fisher matrix at the nominal parameters")
        _save(fisher(experiments, nominal), args.output, args.force, progress)


# ----- demo ------------------------------------------------------------------------------
def demo(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    script = EXAMPLES / "quickstart.py"
    if not script.is_file():
        raise CommandError(
            f"the example {str(script)!r} is not there: 'demo' runs the examples of a "
            "source checkout (git clone), which this installation is not."
        )
    out = Path(args.out) if args.out else script.parent / "output"
    progress = Progress(args.quiet)
    progress(f"running {script} (writes into {out})")
    spec = importlib.util.spec_from_file_location("fisherforecast_demo", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(out)


COMMANDS = {
    "info": info,
    "combine": combine,
    "plot": plot,
    "convert": convert,
    "identifiability": identifiability,
    "petab": petab,
    "demo": demo,
}
