"""The example specs this plugin ships in the repo's specs/ validate, round-trip and build."""

from __future__ import annotations

from pathlib import Path

import pytest

from optreg.testing.spec_files import train_spec_file

SPECS = Path(__file__).resolve().parents[3] / "specs"
OURS = ["adamw.toml", "adamw_bf16_state.toml", "ademamix.toml"]


@pytest.mark.parametrize("name", OURS)
def test_spec_file_builds_and_steps(name):
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout (the plugin was installed on its own)")
    train_spec_file(path, steps=2)
