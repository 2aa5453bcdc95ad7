"""Wall time of the registry commands, each a fresh process, beside ``python -c pass`` and ``import torch``.

The registry commands (``list``, ``show``, ``validate``, ``schema``, ``plugins``) load every installed
plugin's ``plugin`` and ``specs`` modules and nothing else: no torch, so they answer in a fraction of
``import torch``'s time. Each command runs ``--repeats`` times; min / median / max are printed, and
the median as a ratio to ``python -c pass`` (the interpreter's own start-up) in the same run.

    python bench/cli_startup.py
    python bench/cli_startup.py --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTREG = [sys.executable, "-m", "optreg"]

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "optreg --version": [*OPTREG, "--version"],
    "optreg list": [*OPTREG, "list"],
    "optreg show adamw": [*OPTREG, "show", "adamw"],
    "optreg validate specs/adamw.toml": [*OPTREG, "validate", str(ROOT / "specs" / "adamw.toml")],
    "optreg schema": [*OPTREG, "schema"],
    "optreg plugins": [*OPTREG, "plugins"],
}


def time_command(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs (after one unmeasured run that warms the file cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = {name: time_command(argv, args.repeats) for name, argv in COMMANDS.items()}
    base = statistics.median(rows["python -c pass"])
    print(f"{'command':34s} {'min s':>7s} {'median s':>9s} {'max s':>7s} {'x python':>9s}")
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:34s} {min(times):7.3f} {median:9.3f} {max(times):7.3f} {median / base:9.1f}")


if __name__ == "__main__":
    main()
