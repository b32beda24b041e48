"""Argument parsing and error handling of the ``fisherforecast`` command.

Every subcommand reads its inputs, reports the step it is on to stderr (``--quiet``
silences that), writes its outputs atomically and never replaces an existing file unless
``--force`` is given. A failure prints one ``fisherforecast <command>: error: ...`` message
saying what to do, and the exit status is non-zero: 1 for a failure while running, 2 for a
command line that cannot be understood (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .commands import COMMANDS, CommandError

EXIT_FAILURE = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Inspect, combine, convert and plot saved Fisher matrices (HDF5 '.h5' files or
CosmicFish/getdist text with a '.paramnames' file), and run identifiability reports.
Run 'fisherforecast COMMAND --help' for the options of a command."""

EPILOG = """\
examples:
  fisherforecast info F.h5
  fisherforecast combine cmb.h5 sn.h5 --prior h=0.01 --fix w0 -o combined.h5
  fisherforecast plot cmb.h5 combined.h5 --params om,w0,wa -o corner.png
  fisherforecast convert F.h5 F.txt        # writes F.txt and F.txt.paramnames
  fisherforecast identifiability F.h5
  fisherforecast demo"""


def _names(text: str) -> list[str]:
    """A comma-separated list of parameter names (``a,b,c``)."""
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated parameter names such as 'a,b,c'; received {text!r}."
        )
    return names


def _priors(text: str) -> dict[str, float]:
    """``name=sigma`` (several separated by commas)."""
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            sigma = float(value)
        except ValueError:
            sigma = None
        if not sep or not name or sigma is None:
            raise argparse.ArgumentTypeError(
                f"expected name=sigma (e.g. 'h=0.01'); received {item!r}."
            )
        if name in out:
            raise argparse.ArgumentTypeError(f"prior on {name!r} given twice in {text!r}.")
        out[name] = sigma
    return out


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="do not report progress on stderr"
    )


def _output(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    parser.add_argument("-o", "--output", required=required, metavar="PATH", help=what)
    parser.add_argument(
        "--force", action="store_true", help="replace the output if it exists (default: refuse)"
    )


def _add_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="names, fiducial, σ table, condition number and metadata of a saved matrix",
        description="Print the parameters, fiducial values, marginal and conditional 1σ "
        "errors, condition number, labels and metadata of a saved Fisher matrix.",
    )
    p.add_argument("file", help="a Fisher matrix file (.h5, or text with .paramnames)")
    p.add_argument("--json", action="store_true", help="print the matrix and σ as JSON")
    _common(p)


def _add_combine(sub) -> None:
    p = sub.add_parser(
        "combine",
        help="add independent matrices, then apply priors, fix and marginalise",
        description="Add the Fisher matrices of independent experiments (parameters matched "
        "by name), then, in this order, add Gaussian priors, fix parameters at their "
        "fiducial values and marginalise over parameters, and save the result. An output "
        "ending in .h5/.hdf5 is HDF5, anything else text plus '.paramnames'.",
    )
    p.add_argument("files", nargs="+", help="Fisher matrix files to add")
    p.add_argument(
        "--prior",
        type=_priors,
        action="append",
        default=[],
        metavar="NAME=SIGMA",
        help="independent Gaussian prior of width SIGMA (repeat, or separate with commas)",
    )
    p.add_argument(
        "--fix",
        type=_names,
        action="append",
        default=[],
        metavar="NAMES",
        help="hold these parameters fixed (delete their rows and columns)",
    )
    p.add_argument(
        "--marginalize",
        type=_names,
        action="append",
        default=[],
        metavar="NAMES",
        help="marginalise over (integrate out) these parameters",
    )
    p.add_argument("--name", help="experiment name stored with the result")
    _output(p, "where to save the combined matrix")
    _common(p)


def _add_plot(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="corner plot of one or more saved matrices",
        description="Corner plot of saved Fisher matrices: 2-D joint 68.27% and 95.45% "
        "ellipses (Δχ² = 2.30 and 6.18) and marginal Gaussians. The file format follows "
        "the output's suffix (.png, .pdf, .svg, ...).",
    )
    p.add_argument("files", nargs="+", help="Fisher matrix files to draw")
    p.add_argument(
        "--params", type=_names, metavar="NAMES", help="parameters to show (default: all)"
    )
    p.add_argument(
        "--legend",
        type=lambda s: [x.strip() for x in s.split(",")],
        metavar="LABELS",
        help="one legend label per file, comma-separated (default: the experiment names)",
    )
    p.add_argument("--dpi", type=int, default=120, help="resolution of raster images")
    _output(p, "the image to write, e.g. corner.png")
    _common(p)


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="HDF5 <-> text + .paramnames (getdist/CosmicFish), or a .covmat",
        description="Convert a saved Fisher matrix between HDF5 and the text format "
        "(matrix file plus a getdist-style '.paramnames' file, name TAB label). The "
        "format follows the output's suffix: .h5/.hdf5 for HDF5, .covmat for the "
        "covariance F^-1 as a getdist/CosmoMC '.covmat' file (one way: a .covmat cannot be "
        "read back as a Fisher matrix with its fiducial), anything else text.",
    )
    p.add_argument("input", help="the matrix to read")
    p.add_argument("output", help="the file to write (text also writes OUTPUT.paramnames)")
    p.add_argument(
        "--force", action="store_true", help="replace the output if it exists (default: refuse)"
    )
    _common(p)


def _add_identifiability(sub) -> None:
    p = sub.add_parser(
        "identifiability",
        help="practical identifiability report of a saved matrix",
        description="The practical identifiability report of a saved Fisher matrix "
        "(relative Cramér-Rao bounds, log-FIM spectrum, collinearity): see "
        "ff.identifiability. The matrix must carry fiducial values.",
    )
    p.add_argument("file", help="a Fisher matrix file")
    p.add_argument("--params", type=_names, metavar="NAMES", help="analyse only these")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)


def _add_petab(sub) -> None:
    p = sub.add_parser(
        "petab",
        help="identifiability report of a PEtab problem (needs fisherforecast.petab)",
        description="Import a PEtab problem with fisherforecast.petab and print the "
        "identifiability report at its nominal parameter values (-o also saves the Fisher "
        "matrix there, on the same parameter scale).",
    )
    p.add_argument("problem", help="the PEtab problem's YAML file")
    p.add_argument(
        "--scale",
        choices=("linear", "problem"),
        default="linear",
        help="parameters on their linear scale (default: the report's relative errors are "
        "then errors of θ) or on the problem's own (mostly log10) scale",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _output(p, "also save the problem's Fisher matrix here", required=False)
    _common(p)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the flagship example (the same as 'make demo')",
        description="Run examples/quickstart.py: two experiments, σ table, combination, "
        "HDF5 file and corner plot (the same as 'make demo').",
    )
    p.add_argument(
        "--out", metavar="FOLDER", help="output folder (default: examples/output, as make demo)"
    )
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``fisherforecast`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="fisherforecast",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fisherforecast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        _add_info,
        _add_combine,
        _add_plot,
        _add_convert,
        _add_identifiability,
        _add_petab,
        _add_demo,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fisherforecast`` command line; returns the exit status.

    ```python
    >>> from fisherforecast._cli import main
    >>> main(["--version"])  # doctest: +SKIP
    fisherforecast 0.1.0
    ```
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"fisherforecast {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except (OSError, ValueError, TypeError) as exc:  # FisherError is a ValueError
        text = str(exc).strip() or type(exc).__name__
        print(f"fisherforecast {args.command}: error: {text}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"fisherforecast {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
