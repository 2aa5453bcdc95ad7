"""The example specs this plugin ships in the repo's specs/ validate, round-trip, build and train."""

from __future__ import annotations

from pathlib import Path

import pytest

from optreg.testing.spec_files import train_spec_file

SPECS = Path(__file__).resolve().parents[3] / "specs"
OURS = [
    "schedule_free_adamw.toml",
    "schedule_free_sgd.toml",
    "schedule_free_radam.toml",
    "schedule_free_sgd_wrapper.toml",
]


@pytest.mark.parametrize("name", OURS)
def test_spec_file_builds_and_trains(name):
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout (the plugin was installed on its own)")
    losses = train_spec_file(path, steps=8)
    assert losses[-1] < losses[0], f"{name}: the loss did not go down in 8 steps on one batch ({losses})"
