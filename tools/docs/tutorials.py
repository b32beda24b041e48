"""The tutorials of the documentation site: one page per script in ``examples/``.

Shared by the mkdocs hook (``hooks.py``, which writes the pages at build time) and the
figure renderer (``render_figures.py``, which runs each example in its fast mode). A new
example needs no entry here: it is listed after these, titled by its docstring's first line.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: Where render_figures.py writes, one folder per example (git-ignored: build/).
FIGURES = ROOT / "build" / "docs-figures"

#: (script stem, page title), in reading order.
ORDER = [
    ("quickstart", "Quickstart: two experiments and their combination"),
    ("gw_single_event", "A gravitational-wave event and a detector network"),
    ("cosmology_w0wa", "Cosmology: the dark-energy figure of merit"),
    ("lisa_tianqin_dwd", "LISA + TianQin: a double white dwarf"),
    ("microlensing_pspl", "Microlensing light curves"),
    ("hmc_crosscheck", "Microlensing: Fisher against HMC"),
    ("identifiability_walkthrough", "Biology: identifiability, profiles and repair"),
    ("design_sampling_times", "Optimal sampling design"),
    ("population_forecast", "A population of sources in one batch"),
]


def examples() -> list[tuple[str, str]]:
    """(stem, title) of every example script: the ordered ones first, then any others."""
    present = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    out = [(stem, title) for stem, title in ORDER if stem in present]
    known = {stem for stem, _ in ORDER}
    for stem in sorted(present - known):
        out.append((stem, docstring(stem).splitlines()[0].rstrip(".") or stem))
    return out


def source(stem: str) -> str:
    return (EXAMPLES / f"{stem}.py").read_text(encoding="utf-8")


def docstring(stem: str) -> str:
    return ast.get_docstring(ast.parse(source(stem))) or ""


def stamp(stem: str) -> str:
    """What the rendered figures depend on: the example's source and the library's."""
    h = hashlib.sha256(source(stem).encode())
    for path in sorted((ROOT / "fisherforecast").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def fast_call(main, out: Path):
    """Call an example's ``main`` in its fast mode, writing into `out`, whatever its
    signature (``main(out, fast)``, ``main(fast, out_dir)``, ``main(argv)``, ...)."""
    params = inspect.signature(main).parameters
    if "argv" in params:
        return main(["--fast", "--out", str(out)])
    kwargs = {}
    for name in params:
        if name in ("out", "out_dir"):
            kwargs[name] = out
        elif name == "fast":
            kwargs[name] = True
        elif name == "progress":
            kwargs[name] = False
        elif name == "n":
            kwargs[name] = 500  # population_forecast's --fast
    return main(**kwargs)
