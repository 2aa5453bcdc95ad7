"""Every example in specs/ validates, round-trips and builds with all plugins installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from optreg.testing.spec_files import train_spec_file

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))


def test_there_are_example_specs():
    assert SPECS, "specs/ holds no example"


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_spec_validates_round_trips_and_builds(path):
    train_spec_file(path, steps=2, t_max=10)
