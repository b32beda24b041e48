"""Run every benchmark in turn (``make bench``); pass --quick for short runs.

Each script prints its own machine information and side-by-side ratios; copy the figures
into docs/benchmarks.md together with the machine they ran on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = {
    "bench_fisher_single.py": ["--quick"],
    "bench_batch.py": ["--quick"],
    "bench_identifiability.py": ["--quick"],
    "bench_crosscheck.py": ["--quick"],
    "bench_design.py": ["--fast"],
    "bench_population.py": ["--fast"],
    "bench_profile.py": ["--rounds", "1", "--modes", "fast"],
}


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    failed = []
    for script, quick_flags in SCRIPTS.items():
        print(f"\n===== {script} =====", flush=True)
        cmd = [sys.executable, str(HERE / script), *(quick_flags if quick else [])]
        if subprocess.run(cmd, cwd=HERE).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
