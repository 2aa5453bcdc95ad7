"""Resuming a run with another length never raises the LR (issue 19, item 2), unless ``--rewarm`` asks.

The user's case: ``optreg train --resume runs/x --steps 400`` after a 200-step cosine run put the LR
back up from 1.0e-3 to 6.3e-3 at step 201 (the cosine recomputed over 400 steps).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from optreg_train.extension import ExtendedSchedule, Extension
from optreg_train.metrics import read_metrics

from optreg.cli import main

SPEC = """
schema_version = 1
[optimizer]
type = "adamw"
lr = 1e-2
[scheduler]
type = "cos_with_warmup"
warmup_fraction = 0.1
alpha_f = 0.1
[train]
task = "mlp"
steps = 20
batch_size = 16
d_model = 16
eval_interval = 10
eval_batches = 1
"""
PEAK, FLOOR = 1e-2, 1e-3
QUIET = ["--no-progress", "--no-plots"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def spec_file(tmp_path: Path) -> str:
    pytest.importorskip("optreg_schedules", reason="cos_with_warmup comes from optreg-schedules")
    path = tmp_path / "cos.toml"
    path.write_text(SPEC)
    return str(path)


def lrs(out: Path) -> list[float]:
    return [r["lr"] for r in read_metrics(out / "metrics.jsonl")]


def test_extending_a_finished_run_holds_the_final_lr(spec_file: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", spec_file, "--out", str(out), *QUIET]) == 0
    assert main(["train", "--resume", str(out), "--steps", "40", *QUIET]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "the LR stays at its final value 0.001" in text and "--rewarm" in text
    lr = lrs(out)
    assert len(lr) == 40
    at_resume = lr[19]  # the LR of step 20, the last before the resume
    assert lr[19] < lr[10], "the first 20 steps decayed"
    assert all(v <= at_resume for v in lr[20:]), lr[18:]
    assert lr[20:] == pytest.approx([FLOOR] * 20, rel=1e-9)  # the schedule had ended: its floor, held


def test_extending_a_stopped_run_carries_the_decay_on_without_a_jump(spec_file: str, tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", spec_file, "--out", str(whole), *QUIET]) == 0
    assert main(["train", spec_file, "--out", str(split), "--stop-after", "10", *QUIET]) == 0
    # Extend to 40 steps, stopped once more on the way: the extension survives a second resume.
    assert main(["train", "--resume", str(split), "--steps", "40", "--stop-after", "25", *QUIET]) == 0
    assert main(["train", "--resume", str(split), *QUIET]) == 0
    done, planned = lrs(split), lrs(whole)
    assert len(done) == 40
    assert done[:10] == planned[:10]
    assert done[10] == pytest.approx(planned[10], rel=1e-12), "continuous: step 11 has the LR it was planned to"
    tail = done[10:]
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(tail)), "never rises after the resume"
    assert FLOOR <= tail[-1] <= planned[-1], "it ends near the floor the schedule ends at"
    # The rest of the planned decay, stretched: it is slower than in the 20-step run.
    assert done[19] > planned[19]


def test_an_extension_and_its_resumes_equal_one_extended_run(spec_file: str, tmp_path: Path) -> None:
    once, twice = tmp_path / "once", tmp_path / "twice"
    for out in (once, twice):
        assert main(["train", spec_file, "--out", str(out), "--stop-after", "10", *QUIET]) == 0
    assert main(["train", "--resume", str(once), "--steps", "30", *QUIET]) == 0
    assert main(["train", "--resume", str(twice), "--steps", "30", "--stop-after", "17", *QUIET]) == 0
    assert main(["train", "--resume", str(twice), *QUIET]) == 0
    assert lrs(once) == lrs(twice)


def test_rewarm_runs_the_schedule_again_over_the_new_steps(spec_file: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", spec_file, "--out", str(out), *QUIET]) == 0
    assert main(["train", "--resume", str(out), "--steps", "40", "--rewarm", *QUIET]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--rewarm: the cos_with_warmup schedule starts again at step 20" in text
    first, again = lrs(out)[:20], lrs(out)[20:]
    assert again == pytest.approx(first, rel=1e-9)  # the same 20-step schedule, from its warmup
    # --rewarm only continues a run with steps left to train.
    assert main(["train", "--resume", str(out), "--rewarm", *QUIET]) == 2
    assert "--rewarm needs steps to train" in capsys.readouterr().err
    assert main(["train", spec_file, "--out", str(tmp_path / "new"), "--rewarm", *QUIET]) == 2
    assert "use it with --resume" in capsys.readouterr().err


def test_extended_schedule_maps_the_remainder_linearly() -> None:
    class Linear:
        TYPE, units, t_max = "linear", "steps", None

        def needs_t_max(self) -> bool:
            return True

        def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
            return initial_lr * (1 - min(current, t_max) / t_max)

    stretched = ExtendedSchedule(Linear(), 100, [Extension(at=50, before=100, after=150)])
    assert [stretched.get_lr(1.0, c, 150) for c in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.25, 0.0])
    held = ExtendedSchedule(Linear(), 100, [Extension(at=100, before=100, after=200)])
    assert held.get_lr(1.0, 170, 200) == 0.0
    restarted = ExtendedSchedule(Linear(), 100, [Extension(at=100, before=100, after=200, rewarm=True)])
    assert [restarted.get_lr(1.0, c, 200) for c in (100, 150)] == pytest.approx([1.0, 0.5])
    chained = ExtendedSchedule(Linear(), 100, [Extension(at=50, before=100, after=150),
                                               Extension(at=100, before=150, after=200)])
    # after the second extension the remainder [100, 150] of the first one spans [100, 200]
    assert chained.get_lr(1.0, 200, 200) == pytest.approx(0.0)
    assert chained.get_lr(1.0, 150, 200) == pytest.approx(stretched.get_lr(1.0, 125, 150))
    assert math.isclose(chained.get_lr(1.0, 100, 200), 0.25)
