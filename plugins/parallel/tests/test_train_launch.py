"""``optreg train SPEC --nproc 2``: the main job on two processes equals one process on the same global batch,
resumes its distributed checkpoints, and stops cleanly on Ctrl-C.

Each ``optreg train`` here is a real launch (torch.distributed.run starting two ranks on gloo), so the
runs are few and short. Losses agree to float32 tolerance: the two ranks' gradients are summed in
another order than one process's (DDP all-reduce, FSDP reduce-scatter).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import optreg

pytestmark = pytest.mark.distributed
pytest.importorskip("optreg_train", reason="optreg train is optreg-train's command")

REPO = Path(__file__).resolve().parents[3]
FSDP_SPEC = REPO / "specs" / "adamw_fsdp.toml"
STEPS = 8
#: Losses near 4 nats after 8 steps whose gradients were reduced in another order: float32 rounding.
LOSS_ATOL = 1e-4


def _optreg(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "optreg", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _spec_file(tmp_path: Path, name: str, source: Path, **changes: dict[str, Any]) -> Path:
    """A copy of ``source`` as a file of its own: ``train`` keys changed, other tables replaced."""
    data = optreg.convert.spec_to_dict(optreg.load_spec(source))
    for table, values in changes.items():
        data[table] = {**data.get(table, {}), **values} if table == "train" else values
    path = tmp_path / f"{name}.toml"
    path.write_text(optreg.dump_spec(optreg.parse_spec(data)))
    return path


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp") / "run"
    proc = _optreg("train", str(FSDP_SPEC), "--nproc", "2", "--steps", str(STEPS), "--out", str(out),
                   "--no-plots", "--no-progress")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_fsdp_spec_on_two_processes_equals_one_process_with_the_global_batch(fsdp_run, tmp_path):
    batch = optreg.load_spec(FSDP_SPEC).train.batch_size
    single = _spec_file(tmp_path, "single", FSDP_SPEC, train={"batch_size": 2 * batch}, parallelism={"type": "single"})
    out = tmp_path / "single-run"
    proc = _optreg("train", str(single), "--steps", str(STEPS), "--out", str(out), "--no-plots", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = _losses(fsdp_run), _losses(out)
    assert len(two) == len(one) == STEPS
    worst = max(abs(a - b) for a, b in zip(two, one))
    assert worst <= LOSS_ATOL, f"loss curves differ by {worst:.3g}:\n2 ranks {two}\n1 process {one}"
    records = [json.loads(line) for line in (fsdp_run / "metrics.jsonl").read_text().splitlines()]
    seq_len = optreg.load_spec(FSDP_SPEC).train.seq_len
    assert records[-1]["tokens"] == STEPS * 2 * batch * seq_len, "tokens count the global batch"


def test_only_rank_zero_writes_and_prints(fsdp_run):
    assert (fsdp_run / "checkpoint" / "meta.pt").exists(), "a distributed run writes DCP shards"
    assert len((fsdp_run / "metrics.jsonl").read_text().splitlines()) == STEPS, "one line per step, not one per rank"
    summary = json.loads((fsdp_run / "summary.json").read_text())
    assert summary["step"] == STEPS


def test_distributed_resume_equals_an_unbroken_run(fsdp_run, tmp_path):
    out = tmp_path / "resumed"
    first = _optreg("train", str(FSDP_SPEC), "--nproc", "2", "--steps", str(STEPS), "--stop-after", "4",
                    "--out", str(out), "--no-plots", "--no-progress")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "--resume" in first.stdout and "--nproc 2" in first.stdout, "the hint says how to continue"
    second = _optreg("train", "--resume", str(out), "--nproc", "2", "--no-plots", "--no-progress")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed, unbroken = _losses(out), _losses(fsdp_run)
    assert len(resumed) == STEPS
    worst = max(abs(a - b) for a, b in zip(resumed, unbroken))
    assert worst <= LOSS_ATOL, f"resumed {resumed}\nunbroken {unbroken}"


def test_ctrl_c_stops_every_rank_with_a_checkpoint_that_resumes(tmp_path):
    """A terminal's Ctrl-C reaches the launcher, torchrun's agent and both ranks (one process group); the
    ranks agree on a step, checkpoint (schedule-free: its evaluation parameters) and exit 130."""
    spec = _spec_file(tmp_path, "sf", FSDP_SPEC, optimizer={"type": "schedule_free_adamw", "lr": 3e-3},
                      scheduler={"type": "constant"})
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "optreg", "train", str(spec), "--nproc", "2", "--steps", "100000",
               "--out", str(out), "--no-plots", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "interrupted at step" in stdout
    stopped = len(_losses(out))
    assert (out / "checkpoint" / "meta.pt").exists()
    assert "Traceback" not in stderr, stderr[-3000:]
    # resume in one process (torchrun with one rank): the shards are re-cut, the global batch halves (a note says so)
    resumed = _optreg("train", "--resume", str(out), "--nproc", "1", "--steps", str(stopped + 2),
                      "--no-plots", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "global batch changes from 32 to 16" in " ".join(resumed.stdout.split())
    assert len(_losses(out)) == stopped + 2
