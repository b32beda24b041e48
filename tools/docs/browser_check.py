"""Open the built site in headless Chromium: console messages, failed requests, screenshots.

    mkdocs build --strict && python tools/docs/browser_check.py [--site site] [--out DIR]

Serves the site on 127.0.0.1, loads the home page, a tutorial with figures and the API
reference, and fails (exit 1) if the browser logs a console error or a warning, or any
request gets an HTTP error. Screenshots land in `--out` (default build/browser-check/) to
be looked at. Needs Debian's `chromium`; not part of CI.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: name -> (path, screenshot height): the tutorial's shot is tall enough to show a figure.
PAGES = {
    "home": ("", 1400),
    "tutorial": ("tutorials/cosmology_w0wa/", 2600),
    "reference": ("reference/", 1400),
}
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=8000",
]
CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)")


FAILED_REQUESTS: list[str] = []


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        if len(args) >= 2 and str(args[1]).startswith(("4", "5")):
            FAILED_REQUESTS.append(f"{args[1]} {args[0]}")


def check(site: Path, out: Path, browser: str) -> list[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems = []
    try:
        for name, (page, height) in PAGES.items():
            url = base + page
            shot = out / f"{name}.png"
            for mode in ([f"--screenshot={shot}", f"--window-size=1280,{height}"], ["--dump-dom"]):
                done = subprocess.run(
                    [browser, *FLAGS, *mode, url], capture_output=True, text=True, timeout=120
                )
                messages = CONSOLE.findall(done.stderr)
                problems += [f"{name}: console: {m}" for m in messages]
                if mode[0] == "--dump-dom":
                    if "<img" not in done.stdout and name == "tutorial":
                        problems.append(f"{name}: no figure on the page")
                    title = re.search(r"<title>(.*?)</title>", done.stdout)
                    print(f"{name}: {url} -> {title.group(1) if title else '(no title)'}")
            print(f"{name}: screenshot {shot}")
    finally:
        server.shutdown()
    problems += [f"HTTP {f}" for f in FAILED_REQUESTS]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "browser-check")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    if not (args.site / "index.html").exists():
        print(f"no built site in {args.site}: run mkdocs build first", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    problems = check(args.site, args.out, browser)
    for p in problems:
        print("PROBLEM", p)
    print("no console errors, no failed requests" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
