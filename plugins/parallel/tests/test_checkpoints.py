"""Checkpoints reshard: N ranks' checkpoint resumes on M (2 -> 1 and 1 -> 2), equal to an unbroken run.

A run saves after 5 of 10 steps (optreg train's checkpoint: one file in one process, torch.distributed
checkpoint shards on several), another world size loads it and trains the remaining 5: its parameters
equal one process's unbroken 10 steps to float32 tolerance (the ranks sum gradients in another order).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.distributed
pytest.importorskip("optreg_train", reason="the checkpoints are optreg train's (optreg-train)")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dist_worker as W  # noqa: E402
from test_equivalence import ATOL, _launch  # noqa: E402

OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adamw": {"type": "adamw", "lr": 0.01},
    "prodigy": {"type": "prodigy"},
    "schedule_free_adamw": {"type": "schedule_free_adamw", "lr": 0.01},
    "skip_step_adamw": {"type": "skip_step_adamw", "lr": 0.01, "min_samples": 3},
    "mechanic": {"type": "mechanic", "inner": {"type": "adamw", "lr": 0.01}},
}
STRATEGY = {"type": "fsdp", "timeout_s": 120}


def _case(table: dict[str, Any], parallelism: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"optimizer": table, "parallelism": parallelism, **extra}


@pytest.fixture(scope="module")
def unbroken() -> dict[str, Any]:
    return W.run_cases({n: _case(t, {"type": "single"}) for n, t in OPTIMIZERS.items()}, **W.HOOKS)


def _assert_equal(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    assert "error" not in got, f"{what}: {got.get('traceback', got.get('error'))}"
    worst = {n: W.max_difference(got["params"][n], want["params"][n]) for n in want["params"]}
    assert max(worst.values()) <= ATOL, f"{what}: max |difference| per param {worst}"


def test_two_ranks_save_one_process_resumes(tmp_path, unbroken):
    first = {n: _case(t, STRATEGY, stop=5, save=str(tmp_path / n)) for n, t in OPTIMIZERS.items()}
    saved = _launch(first, tmp_path, "save-on-2")
    assert not [n for n, r in saved.items() if "error" in r], saved
    for name, table in OPTIMIZERS.items():
        assert (tmp_path / name / "checkpoint" / "meta.pt").exists(), "a distributed run writes DCP shards"
        case = _case(table, {"type": "single"}, start=5, load=str(tmp_path / name))
        resumed = W.run_cases({name: case}, **W.HOOKS)[name]
        _assert_equal(resumed, unbroken[name], f"{name}: saved on 2 ranks (fsdp), resumed in one process")


def test_one_process_saves_two_ranks_resume(tmp_path, unbroken):
    for name, table in OPTIMIZERS.items():
        case = _case(table, {"type": "single"}, stop=5, save=str(tmp_path / name))
        result = W.run_cases({name: case}, **W.HOOKS)[name]
        assert "error" not in result, result
        assert (tmp_path / name / "checkpoint.pt").exists(), "one process writes checkpoint.pt"
    second = {n: _case(t, STRATEGY, start=5, load=str(tmp_path / n)) for n, t in OPTIMIZERS.items()}
    resumed = _launch(second, tmp_path, "load-on-2")
    for name in OPTIMIZERS:
        _assert_equal(resumed[name], unbroken[name], f"{name}: saved in one process, resumed on 2 ranks (fsdp)")
