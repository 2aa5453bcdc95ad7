"""Checkpoint files: durable writes (fsync of the file and its directory) and clear errors for bad files."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from optreg_train.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint

from optreg.cli import main

SPEC = """\
schema_version = 1
[optimizer]
type = "sgd"
lr = 0.1
[train]
task = "mlp"
steps = 2
eval_interval = 2
d_model = 8
batch_size = 4
eval_batches = 1
"""


def test_save_fsyncs_the_file_and_then_its_directory(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, {"step": 3})
    assert synced == ["file", "dir"], synced  # the bytes before the rename, the rename after it
    assert torch.load(path, weights_only=True) == {"format": 2, "step": 3}
    assert not (tmp_path / (CHECKPOINT + ".tmp")).exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-step run (a second of CPU) whose checkpoint the tests spoil in copies."""
    root = tmp_path_factory.mktemp("ckpt")
    spec = root / "s.toml"
    spec.write_text(SPEC, encoding="utf-8")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(spec), "--out", str(root / "run"), "--no-progress", "--no-plots"]) == 0
    finally:
        torch.set_num_threads(before)
    return root / "run"


def _spoil(path: Path, how: str) -> None:
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "empty":  # what a rename without fsync can leave after a power loss
        path.write_bytes(b"")
    elif how == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif how == "foreign_tensors":  # a torch file, but someone else's
        torch.save({"weight": torch.zeros(3)}, path)
    elif how == "foreign_module":  # a pickled module: weights_only refuses to run its code
        torch.save(torch.nn.Linear(2, 2), path)
    elif how == "no_model":  # a checkpoint of the right format that lost its model state
        payload = torch.load(path, weights_only=True)
        del payload["model"]
        torch.save(payload, path)
    elif how == "other_format":
        torch.save({"format": 99, "step": 1}, path)
    elif how == "incomplete":
        torch.save({"format": 2, "tokens": 1}, path)
    else:  # pragma: no cover
        raise AssertionError(how)


HOW = ["truncated", "empty", "random_bytes", "foreign_tensors", "foreign_module", "other_format", "incomplete"]


@pytest.mark.parametrize("how", HOW)
def test_load_checkpoint_names_the_bad_file(trained, tmp_path, how):
    path = tmp_path / CHECKPOINT
    shutil.copy(trained / CHECKPOINT, path)
    assert load_checkpoint(path)["step"] == 2  # the good file loads
    _spoil(path, how)
    with pytest.raises(CheckpointError, match="checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "move it away" in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "foreign_module", "no_model"])
def test_resume_from_a_bad_checkpoint_exits_2_naming_the_file(trained, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _spoil(run / CHECKPOINT, how)
    capsys.readouterr()
    status = main(["train", "--resume", str(run), "--steps", "4", "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("optreg: error: ") and str(run / CHECKPOINT) in err, err
    assert "Traceback" not in err
