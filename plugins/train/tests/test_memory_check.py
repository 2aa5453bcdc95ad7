"""``optreg train`` refuses, before the first step, a run whose optimizer state would not fit in memory
(issue 20): the estimate comes from the optimizer's declared state layout over the model's shapes."""

from __future__ import annotations

from pathlib import Path

import optreg_train.loop as loop
import pytest
import torch
from optreg_train import train_run
from optreg_train.loop import prepare_run

import optreg
import optreg.memory
from optreg.cli import main


def spec(optimizer: dict | None = None, **train) -> optreg.RunSpec:
    return optreg.parse_spec({
        "optimizer": optimizer or {"type": "adamw", "lr": 0.01},
        "train": {"task": "mlp", "steps": 2, "eval_interval": 2, "eval_batches": 1, "d_model": 16, **train},
    })


def test_a_run_whose_state_does_not_fit_is_refused_with_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    run_spec = spec()
    model = loop.load_task(run_spec.train).make_model()
    estimate = run_spec.estimate_state(model)
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    assert estimate.total_bytes == 2 * grads + 4 * len(list(model.parameters()))  # two moments, a float32 step
    monkeypatch.setattr(optreg.memory, "available_memory", lambda device: estimate.total_bytes + grads - 1)
    with pytest.raises(optreg.SpecError) as info:
        prepare_run(run_spec)
    message = str(info.value)
    assert "$.train.memory_check" in message
    assert optreg.memory.format_bytes(estimate.total_bytes) in message
    assert "optimizer state" in message and "gradients" in message and "is available" in message


def test_the_ranks_of_a_launch_on_one_machine_share_its_cpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    run_spec = spec()
    model = loop.load_task(run_spec.train).make_model()
    need = run_spec.estimate_state(model).total_bytes + sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(optreg.memory, "available_memory", lambda device: 2 * need)
    loop.check_memory(run_spec, model, torch.device("cpu"))  # one rank: fits
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    with pytest.raises(optreg.SpecError, match="for the 3 ranks on this machine"):
        loop.check_memory(run_spec, model, torch.device("cpu"))


def test_a_run_that_fits_starts_and_memory_check_false_skips_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_spec = spec()
    model = loop.load_task(run_spec.train).make_model()
    need = run_spec.estimate_state(model).total_bytes + sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(optreg.memory, "available_memory", lambda device: need)
    prepare_run(run_spec)  # exactly enough: no refusal
    monkeypatch.setattr(optreg.memory, "available_memory", lambda device: 0)
    result = train_run(spec(memory_check=False), tmp_path / "run", show_progress=False, plots=False)
    assert result.state_bytes == run_spec.estimate_state(model).total_bytes  # the estimate is what the run held


def test_available_memory_reads_this_machine() -> None:
    free = optreg.memory.available_memory("cpu")
    assert free is not None and free > 0
    assert optreg.memory.available_memory(torch.device("meta")) is None


def test_validate_reports_the_state_per_group_and_per_rank(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "fsdp.toml"
    file.write_text('[optimizer]\ntype = "adamw"\n\n[parallelism]\ntype = "fsdp"\n\n[train]\ntask = "mlp"\n')
    assert main(["validate", str(file)]) == 0
    whole = capsys.readouterr().out
    assert "optimizer state: " in whole and "by param group: default" in whole and "no_decay" in whole
    assert main(["validate", str(file), "--world-size", "4"]) == 0
    sharded = capsys.readouterr().out
    assert "optimizer state per rank (sharded over 4 ranks)" in sharded
    spec_ = optreg.load_spec(file)
    model = loop.load_task(spec_.train).make_model()
    one, four = spec_.estimate_state(model), spec_.estimate_state(model, world_size=4)
    # every parameter is chunked on dim 0 over 4 ranks (rank 0's chunk is the largest); the step counters stay
    expected = sum(2 * -(-p.shape[0] // 4) * (p.numel() // p.shape[0]) * 4 + 4 for p in model.parameters())
    assert four.total_bytes == expected < one.total_bytes
    assert main(["validate", str(file), "--world-size", "0"]) == 2
