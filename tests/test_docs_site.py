"""The documentation site's sources: every example becomes a tutorial, every nav entry
exists, docstring prose is safe Markdown. The build itself (`mkdocs build --strict`) runs
in `make test` (target docs-check), not here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "docs"


def _load(name):
    sys.path.insert(0, str(TOOLS))
    try:
        spec = importlib.util.spec_from_file_location(f"docs_{name}", TOOLS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(TOOLS))


def _nav_files(nav):
    for item in nav:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from _nav_files(value) if isinstance(value, list) else [value]


def test_every_example_is_a_tutorial_and_runs_in_fast_mode():
    tutorials = _load("tutorials")
    stems = [stem for stem, _ in tutorials.examples()]
    scripts = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
    assert sorted(stems) == scripts and len(set(stems)) == len(stems)
    # The adapter gives each main() its fast mode and an output folder, whatever its shape.
    calls = []

    def out_fast(out_dir, fast=False):
        calls.append((out_dir, fast))

    def fast_first(fast=False, out_dir=None):
        calls.append((out_dir, fast))

    def argv_style(argv=None):
        calls.append(tuple(argv))

    def population(n=10_000, out_dir=None, seed=42, progress=True):
        calls.append((out_dir, n, progress))

    for main in (out_fast, fast_first, argv_style, population):
        tutorials.fast_call(main, Path("/o"))
    assert calls == [
        (Path("/o"), True),
        (Path("/o"), True),
        ("--fast", "--out", "/o"),
        (Path("/o"), 500, False),
    ]
    # Every current example's main() is one of these shapes.
    for stem in scripts:
        source = (ROOT / "examples" / f"{stem}.py").read_text()
        assert "def main(" in source, stem


def test_nav_pages_exist_and_strict_mode_is_on():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert config["strict"] == "true"
    generated = {"changelog.md", "reference.md"}
    for page in _nav_files(config["nav"]):
        assert page in generated or (ROOT / "docs" / page).is_file(), page
    assert any(isinstance(i, dict) and "Tutorials" in i for i in config["nav"])


def test_docstring_prose_keeps_code_and_escapes_brackets():
    pytest.importorskip("mkdocs")
    hooks = _load("hooks")
    text = "Run ``python x.py [--fast]`` or `y [z]`; see [the note] [1]."
    assert hooks._prose(text) == "Run ``python x.py [--fast]`` or `y [z]`; see \\[the note] \\[1]."
    ref = hooks._reference()
    # One mkdocstrings block per public name (the model zoo has pages of its own).
    import fisherforecast as ff

    public = [n for n in dir(ff) if not n.startswith("_") and n != "models"]
    blocks = [line for line in ref.splitlines() if line.startswith("::: ")]
    assert sorted(b.rsplit(".", 1)[-1] for b in blocks) == sorted(public)
