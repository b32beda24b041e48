"""mkdocs hook: the tutorial pages (from ``examples/``) and the changelog page.

* ``tutorials/<example>.md``: the script's docstring, how to run it, its figures (rendered
  by ``render_figures.py`` into ``build/docs-figures/``; a page without them says how to
  make them) and its full source. Generated at build time, so a tutorial never drifts from
  the script that the test suite runs.
* The "Tutorials" section of the navigation is filled with these pages, in the order of
  ``tutorials.ORDER`` and then any other example.
* ``changelog.md``: ``CHANGELOG.md`` from the repository root.
* ``reference.md``: the API reference, one mkdocstrings block per public name of
  ``fisherforecast`` (``dir(fisherforecast)``), grouped by the module that defines it, so
  a new public name is documented without editing the page.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tutorials import FIGURES, ROOT, docstring, examples, source

TUTORIALS_SECTION = "Tutorials"

#: Reference sections: (title, module prefixes), in page order.
REFERENCE_GROUPS = [
    ("Forecasts", ("_experiment", "_fisher", "_engine", "_matrix", "_inverse", "_joint", "_io")),
    ("Noise models", ("_noise",)),
    ("Identifiability", ("_identify", "_ode")),
    ("Beyond the Gaussian approximation: HMC, coverage, DALI", ("_sampling",)),
    ("Populations", ("_batch",)),
    ("Optimal design", ("_design",)),
    ("Interoperability", ("_interop",)),
    ("Plots", ("plot",)),
    ("Errors", ("_errors",)),
]
#: Public names documented on their own pages instead (the model zoo is installed from
#: models/, which the static reference reader does not see in a source checkout).
REFERENCE_ELSEWHERE = {"models": "models_astro.md"}


def _reference() -> str:
    import fisherforecast as ff

    groups: dict[str, list[str]] = {title: [] for title, _ in REFERENCE_GROUPS}
    groups["Other"] = []
    for name in sorted(n for n in dir(ff) if not n.startswith("_")):
        if name in REFERENCE_ELSEWHERE:
            continue
        obj = getattr(ff, name)
        if inspect.ismodule(obj):
            path = obj.__name__
        else:
            path = f"{obj.__module__}.{name}"
        sub = path.removeprefix("fisherforecast.").split(".")[0]
        title = next((t for t, prefixes in REFERENCE_GROUPS if sub in prefixes), "Other")
        groups[title].append(path)
    lines = [
        "# API reference",
        "",
        "Every public name of `fisherforecast` (``import fisherforecast as ff``), from its "
        "docstring. [Public names](api.md) has the one-line overview; the model zoo is "
        "described in [astrophysics](models_astro.md) and [biology](models_biology.md).",
        "",
    ]
    for title, paths in groups.items():
        if paths:
            lines += [f"## {title}", ""]
            lines += [f"::: {p}\n" for p in paths]
    return "\n".join(lines)


CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)", re.DOTALL)


def _prose(text: str) -> str:
    """A docstring as Markdown: brackets outside code spans are literal, not links."""
    parts = CODE_SPAN.split(text)  # odd indices are the code spans
    return "".join(p if i % 2 else p.replace("[", "\\[") for i, p in enumerate(parts))


def _page(config, files, stem: str, title: str) -> str:
    figures = sorted((FIGURES / stem).glob("*.png"))
    lines = [
        f"# {title}",
        "",
        _prose(docstring(stem)),
        "",
        "## Run it",
        "",
        "```bash",
        f"python examples/{stem}.py",
        "```",
        "",
        "The test suite runs this script in its fast mode; the figures below come from that "
        "mode (fewer samples or coarser grids than a full run).",
        "",
        "## Figures",
        "",
    ]
    if figures:
        for path in figures:
            uri = f"tutorials/figures/{stem}/{path.name}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
            caption = path.stem.replace("_", " ")
            lines += [f"![{caption}](figures/{stem}/{path.name})", "", f"*{caption}*", ""]
    else:
        lines += [
            "!!! note",
            "    The figures are not rendered in this build. Run `make docs` (or",
            f"    `python tools/docs/render_figures.py {stem}`) and build again.",
            "",
        ]
    lines += ["## The script", "", "```python", source(stem).rstrip(), "```", ""]
    return "\n".join(lines)


def _index(pages) -> str:
    rows = "\n".join(f"- [{title}]({stem}.md)" for stem, title in pages)
    return (
        "# Tutorials\n\n"
        "Each tutorial is a script in `examples/`: the page shows what it does, its figures "
        "and its source. The test suite runs every one of them (in a fast mode where it has "
        "one) and checks its results against closed forms or independent methods.\n\n"
        f"{rows}\n"
    )


def on_config(config):
    """Point the "Tutorials" navigation section at the generated pages."""
    pages = examples()
    entries = [{"Overview": "tutorials/index.md"}] + [
        {title: f"tutorials/{stem}.md"} for stem, title in pages
    ]
    for item in config.nav or []:
        if isinstance(item, dict) and TUTORIALS_SECTION in item:
            item[TUTORIALS_SECTION] = entries
    return config


def on_files(files, config):
    pages = examples()
    files.append(File.generated(config, "tutorials/index.md", content=_index(pages)))
    for stem, title in pages:
        content = _page(config, files, stem, title)
        files.append(File.generated(config, f"tutorials/{stem}.md", content=content))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    files.append(File.generated(config, "reference.md", content=_reference()))
    return files
