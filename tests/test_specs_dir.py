"""Every example in specs/ validates, round-trips and builds with all plugins installed.

A single-process example trains a few steps here. A distributed one (``[parallelism]`` other than
``single``) says how to launch it in a ``# launch: optreg train specs/NAME.toml --nproc N`` line; that
command runs here for two steps, exactly as a reader would type it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import optreg
from optreg.testing.spec_files import train_spec_file

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "specs").glob("*.toml"))
LAUNCH = re.compile(r"^# launch: (optreg train .*)$", re.MULTILINE)


def _distributed(path: Path) -> bool:
    return optreg.load_spec(path).parallelism.TYPE != "single"


SINGLE = [p for p in SPECS if not _distributed(p)]
DISTRIBUTED = [p for p in SPECS if _distributed(p)]


def test_there_are_example_specs():
    assert SINGLE, "specs/ holds no single-process example"
    kinds = {optreg.load_spec(p).parallelism.TYPE for p in DISTRIBUTED}
    assert {"ddp", "fsdp", "hsdp", "tp", "fsdp_tp"} <= kinds, f"an example per strategy; found {sorted(kinds)}"


@pytest.mark.parametrize("path", SINGLE, ids=[p.name for p in SINGLE])
def test_spec_validates_round_trips_and_builds(path):
    train_spec_file(path, steps=2, t_max=10)


@pytest.mark.distributed
@pytest.mark.parametrize("path", DISTRIBUTED, ids=[p.name for p in DISTRIBUTED])
def test_distributed_example_runs_as_its_launch_line_says(path, tmp_path):
    spec = optreg.load_spec(path)
    assert optreg.parse_spec(optreg.dump_spec(spec)) == spec, f"{path}: the spec does not round-trip through TOML"
    found = LAUNCH.findall(path.read_text())
    assert found, f"{path.name}: a distributed example says how to launch it (# launch: optreg train ... --nproc N)"
    words = shlex.split(found[0])
    assert words[2] == f"specs/{path.name}" and "--nproc" in words, f"{path.name}: the launch line runs this file"
    command = [sys.executable, "-m", "optreg", *words[1:], "--steps", "2", "--out", str(tmp_path / "run"),
               "--no-plots", "--no-progress"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"{found[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "run" / "checkpoint" / "meta.pt").exists()
