"""Issue 20: a window length from a spec is bounded, so a huge one is a SpecError, never a 72 PB allocation."""

from __future__ import annotations

import pytest

import optreg
from optreg.specs import MAX_COUNT

HUGE = 9007199254740992  # 2**53


@pytest.mark.parametrize("name", ["skip_step_lion", "skip_step_adamw"])
@pytest.mark.parametrize("field", ["rolling_interval_length", "min_samples"])
def test_a_huge_window_fails_at_parse_naming_its_path(tmp_path, name, field):
    spec = tmp_path / "huge.toml"
    spec.write_text(f'[optimizer]\ntype = "{name}"\n{field} = {HUGE}\n', encoding="utf-8")
    with pytest.raises(optreg.SpecError) as info:
        optreg.load_spec(spec)
    paths = [path for path, _ in info.value.errors]
    assert f"$.optimizer.{field}" in paths, info.value
    assert f"{MAX_COUNT}]" in str(info.value) and "huge.toml" in str(info.value)  # what is valid, and where


def test_the_largest_allowed_window_builds_and_steps():
    import torch

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = optreg.build_optimizer({"type": "skip_step_lion", "rolling_interval_length": MAX_COUNT}, [param])
    param.grad = torch.ones(2)
    optimizer.step(lambda: torch.tensor(1.0))
    assert param.detach().lt(1).all()
