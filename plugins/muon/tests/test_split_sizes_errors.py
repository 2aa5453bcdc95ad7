"""Muon's shape checks name the option, so a spec's error points at it (issue 19, item 5)."""

from __future__ import annotations

import pytest
from torch import nn

import optreg
from optreg.models import TinyMLP


def test_split_sizes_that_do_not_fit_are_reported_at_their_path():
    spec = optreg.parse_spec({"optimizer": {"type": "muon", "split_sizes": [10, 10]}}, file="run.toml")
    with pytest.raises(optreg.SpecError) as info:
        spec.build_in_process(TinyMLP())
    assert (info.value.file, info.value.path) == ("run.toml", "$.optimizer.split_sizes")
    assert info.value.message.startswith("fc1.weight: [10, 10] must add up to the 16 rows")
    override = {"type": "muon", "group_overrides": [{"params": ["fc2.weight"], "split_sizes": [8, 4]}]}
    with pytest.raises(optreg.SpecError) as info:
        optreg.parse_spec({"optimizer": override}).build_in_process(TinyMLP())
    assert info.value.path == "$.optimizer.group_overrides[0].split_sizes"
    with pytest.raises(ValueError, match=r"split_sizes: .* must add up"):  # Python users: a ValueError naming it
        optreg.build_optimizer({"type": "muon", "split_sizes": [3]}, nn.Linear(4, 4))
