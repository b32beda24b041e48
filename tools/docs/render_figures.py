"""Render the tutorials' figures: run every example in its fast mode (``make docs``).

Each example runs in its own process and writes into ``build/docs-figures/<example>/``;
an example whose source and the library are unchanged since its last run is skipped.
``mkdocs build`` then puts the PNG files into the tutorial pages (``hooks.py``); a page
whose figures were not rendered says how to render them.

    python tools/docs/render_figures.py [--force] [EXAMPLE ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tutorials import FIGURES, ROOT, examples, stamp

RUN_ONE = """
import importlib.util, sys
from pathlib import Path
sys.path.insert(0, {tools!r})
from tutorials import fast_call
spec = importlib.util.spec_from_file_location("example", {script!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fast_call(module.main, Path({out!r}))
"""


def render(stem: str, force: bool) -> str:
    out = FIGURES / stem
    marker = out / ".stamp"
    key = stamp(stem)
    if not force and marker.exists() and marker.read_text() == key:
        return "up to date"
    tmp = FIGURES / f".{stem}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    code = RUN_ONE.format(
        tools=str(Path(__file__).resolve().parent),
        script=str(ROOT / "examples" / f"{stem}.py"),
        out=str(tmp),
    )
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        return f"FAILED ({tail})"
    for path in tmp.iterdir():  # keep the figures only, not the saved matrices
        if path.suffix.lower() != ".png":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (tmp / ".stamp").write_text(key)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    n = len(list(out.glob("*.png")))
    return f"{n} figure(s) in {time.perf_counter() - start:.0f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="*", help="example names (default: all)")
    parser.add_argument("--force", action="store_true", help="render even if up to date")
    args = parser.parse_args(argv)
    stems = args.examples or [stem for stem, _ in examples()]
    failed = 0
    for stem in stems:
        print(f"{stem}: ", end="", flush=True)
        result = render(stem, args.force)
        failed += result.startswith("FAILED")
        print(result, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
