"""Spec errors found against the run: t_max from the run, the groups' initial LRs, and whole spec files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import optreg
from optreg import SpecError


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _build_error(spec: dict, t_max: int | None, *lrs: float) -> SpecError:
    optimizer = _optimizer(*(lrs or (1.0,)))
    with pytest.raises(SpecError) as info:
        optreg.build_scheduler(spec, optimizer, t_max=t_max)
    return info.value


@pytest.mark.parametrize(
    ("spec", "t_max", "path", "words"),
    [
        ({"type": "cos_with_warmup", "warmup_steps": 200}, 100, "$.warmup_steps",
         "the warmup (200) is longer than t_max (100) (t_max comes from the run)"),
        ({"type": "constant_with_warmup", "warmup_steps": 101}, 100, "$.warmup_steps", "longer than t_max (100)"),
        ({"type": "wsd", "warmup_steps": 50, "decay_steps": 60}, 100, "$.decay_steps",
         "warmup (50) + decay (60) = 110 is longer than t_max (100)"),
        ({"type": "wsd", "warmup_steps": 5, "decay_steps": 160}, 100, "$.decay_steps", "the decay (160) is longer"),
        ({"type": "power_lr", "warmup_fraction": 0.001}, 100, "$.warmup_fraction", "the warmup rounds to 0"),
        ({"type": "wsds", "period_lengths": [40, 40], "warmup_steps": 5, "decay_steps": 5}, 100, "$.period_lengths",
         "the periods cover 80 steps but t_max is 100"),
        ({"type": "warmup_cosine_decay", "warmup_steps": 100}, 100, "$.warmup_steps",
         "the total length (100) must be larger than the warmup (100)"),
        ({"type": "sequential", "durations": [60, 50],
          "schedules": [{"type": "constant"}, {"type": "constant"}, {"type": "cos_with_warmup", "warmup_steps": 0}]},
         100, "$.durations", "the durations add up to 110, leaving nothing"),
        ({"type": "sequential", "durations": [60],
          "schedules": [{"type": "constant"}, {"type": "cos_with_warmup", "warmup_steps": 50}]},
         100, "$.schedules[1].warmup_steps", "the warmup (50) is longer than t_max (40)"),
    ],
)
def test_options_that_do_not_fit_the_run_length(spec, t_max, path, words) -> None:
    error = _build_error(spec, t_max)
    assert error.path == path, error
    assert words in error.message, error.message
    # The same options with a long enough run build fine.
    optreg.build_scheduler(spec, _optimizer(1.0), t_max=10_000 if spec["type"] != "wsds" else 80)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "cos_with_warmup", "warmup_steps": 10},
        {"type": "constant_with_warmup", "warmup_fraction": 0.1},
        {"type": "wsd", "warmup_steps": 10, "decay_steps": 10},
        {"type": "power_lr", "warmup_steps": 10, "decay_steps": 10},
        {"type": "exponential"},
        {"type": "warmup_cosine_decay", "warmup_steps": 10},
        {"type": "sequential", "durations": [10],
         "schedules": [{"type": "constant"}, {"type": "linear_with_warmup", "warmup_steps": 0}]},
    ],
)
def test_missing_t_max_is_a_spec_error(spec) -> None:
    error = _build_error(spec, None)
    assert error.path == "$.t_max" and "needs t_max" in error.message


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "constant_with_warmup", "warmup_steps": 10},
        {"type": "inv_sqrt_with_warmup", "warmup_steps": 10},
        {"type": "power_lr", "warmup_steps": 10},
        {"type": "wsds", "period_lengths": [50], "warmup_steps": 5, "decay_steps": 10},
        {"type": "warmup_cosine_decay", "warmup_steps": 10, "decay_steps": 100},
        {"type": "sequential", "durations": [10], "schedules": [{"type": "wsd", "warmup_steps": 1, "decay_steps": 5},
                                                                 {"type": "constant"}]},
        {"type": "composable", "stages": [{"duration": 5, "start_lr": 0.0, "end_lr_fraction": 1.0},
                                          {"duration": 20, "shape": "cosine", "end_lr_fraction": 0.1}]},
    ],
)
def test_schedules_without_a_length_build_without_t_max(spec) -> None:
    optimizer = _optimizer(0.5)
    scheduler = optreg.build_scheduler(spec, optimizer, t_max=None)
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    assert 0 <= optimizer.param_groups[0]["lr"] <= 0.5


def test_final_lrs_above_a_groups_initial_lr_name_the_group() -> None:
    error = _build_error({"type": "wsd", "warmup_steps": 5, "decay_steps": 10, "decay_min_lr": 1e-3}, 100, 0.1, 1e-4)
    assert error.path == "$.decay_min_lr"
    assert "param group 1 has initial LR 0.0001" in error.message and "raise the LR" in error.message
    error = _build_error({"type": "cos_with_warmup", "warmup_steps": 5, "warmup_min_lr": 0.2}, 100, 0.1)
    assert error.path == "$.warmup_min_lr" and "param group 0" in error.message
    # The tail of power_lr starts from the power law's value, not from the peak.
    error = _build_error({"type": "power_lr", "warmup_steps": 1, "b": -1.0, "decay_steps": 10,
                          "decay_min_lr": 0.05}, 100, 1.0)
    assert error.path == "$.decay_min_lr" and "(0.0111111)" in error.message
    error = _build_error({"type": "sequential", "durations": [20],
                          "schedules": [{"type": "linear_with_warmup", "warmup_steps": 0, "alpha_f": 0.0},
                                        {"type": "wsd", "warmup_steps": 0, "decay_steps": 10, "decay_min_lr": 0.01}]},
                         100, 1.0)
    assert error.path == "$.schedules[1].decay_min_lr" and "schedule 1 starts from LR 0" in error.message


def test_spec_file_errors_carry_file_and_scheduler_path(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        """schema_version = 1
[optimizer]
type = "sgd"
lr = 0.1
[scheduler]
type = "cos_with_warmup"
warmup_steps = 500
[train]
steps = 200
""",
        encoding="utf-8",
    )
    spec = optreg.load_spec(path)
    with pytest.raises(SpecError) as info:
        spec.build(torch.nn.Linear(2, 2))
    assert info.value.path == "$.scheduler.warmup_steps"
    assert str(path) in str(info.value) and "longer than t_max (200)" in str(info.value)
    # Validation errors in the file itself: negative count, both forms given.
    path.write_text(path.read_text().replace("warmup_steps = 500", "warmup_steps = -1\nwarmup_fraction = 0.5"))
    with pytest.raises(SpecError) as info:
        optreg.load_spec(path)
    assert info.value.path == "$.scheduler.warmup_steps" and info.value.file == str(path)


def test_tokens_spec_file_spans_the_token_budget_of_its_run(tmp_path: Path) -> None:
    pytest.importorskip("optreg_train", reason="the [train] table is read by optreg-train")
    path = tmp_path / "tokens.toml"
    path.write_text(
        """schema_version = 1
[optimizer]
type = "sgd"
[scheduler]
type = "wsd"
units = "tokens"
warmup_steps = 1000
decay_fraction = 0.1
[train]
steps = 200
""",
        encoding="utf-8",
    )
    spec = optreg.load_spec(path)
    # [train] steps counts steps; a tokens schedule spans the run's token budget (steps x batch x sequence),
    # as `optreg train` and `optreg lr` span it, never the step count read as tokens
    built = spec.build(torch.nn.Linear(2, 2))
    assert built.scheduler.t_max == 200 * spec.train.tokens_per_step == 200 * 16 * 64
    built = spec.build(torch.nn.Linear(2, 2), t_max=200 * 4096)
    assert built.scheduler.t_max == 200 * 4096
