"""``[train]`` options people expect (issue 19, item 17): gradient accumulation, mixed precision, and
the mlp task's accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import optreg_train.loop as loop
import pytest
import torch
from optreg_train import train_run
from optreg_train.checkpoint import CHECKPOINT
from optreg_train.loop import prepare_run
from optreg_train.metrics import read_metrics

import optreg
from optreg.cli import main

QUIET = ["--no-progress", "--no-plots"]
TINY_LM = {"seq_len": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "eval_batches": 2}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(optimizer: dict | None = None, **train) -> optreg.RunSpec:
    return optreg.parse_spec({
        "optimizer": optimizer or {"type": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"steps": 6, "eval_interval": 3, **train},
    })


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / CHECKPOINT, weights_only=True)["model"]


# ---------------------------------------------------------------- gradient accumulation


@pytest.mark.parametrize("task", ["mlp", "char_lm"])
def test_two_micro_batches_of_b_equal_one_batch_of_2b(tmp_path: Path, task: str) -> None:
    extra = TINY_LM if task == "char_lm" else {"d_model": 16, "eval_batches": 1}
    big = train_run(spec(task=task, batch_size=8, **extra), tmp_path / "big", show_progress=False, plots=False)
    acc = train_run(spec(task=task, batch_size=4, grad_accum_steps=2, **extra), tmp_path / "acc",
                    show_progress=False, plots=False)
    a, b = read_metrics(tmp_path / "big" / "metrics.jsonl"), read_metrics(tmp_path / "acc" / "metrics.jsonl")
    torch.testing.assert_close(torch.tensor([r["loss"] for r in b]), torch.tensor([r["loss"] for r in a]),
                               rtol=1e-5, atol=1e-6)
    assert [r["tokens"] for r in b] == [r["tokens"] for r in a]  # a step counts all its micro-batches
    if task == "mlp":  # char_lm's held-out windows are eval_batches x batch_size: another set here
        assert acc.val_loss == pytest.approx(big.val_loss, rel=1e-5)
    for key, value in weights(tmp_path / "big").items():
        torch.testing.assert_close(weights(tmp_path / "acc")[key], value, rtol=1e-5, atol=1e-6)
    # ...and accumulating is not the same as a step per micro-batch.
    train_run(spec(task=task, batch_size=4, **extra), tmp_path / "small", show_progress=False, plots=False)
    key = next(iter(weights(tmp_path / "big")))
    assert not torch.allclose(weights(tmp_path / "small")[key], weights(tmp_path / "big")[key], rtol=1e-4)


def test_each_rank_takes_its_rows_of_every_micro_batch() -> None:
    """Data parallel x accumulation: micro-batch i of the 2 ranks together is micro-batch i of one process
    with the global batch (so the average over ranks of the accumulated gradients is that process's)."""
    import types

    run_spec = spec(task="mlp", batch_size=3, grad_accum_steps=2)
    run = prepare_run(run_spec)
    one = loop._local_batch(run, torch.Generator().manual_seed(5))[1]  # one process, batch 3, 2 micro-batches
    wide = attrs_evolve_batch(run, 6)
    whole = loop._local_batch(wide, torch.Generator().manual_seed(5))[1]  # the global batch: 2 x 6 rows
    parts = []
    for rank in range(2):
        run.strategy = types.SimpleNamespace(data_parallel_size=2, data_parallel_rank=rank)
        parts.append(loop._local_batch(run, torch.Generator().manual_seed(5))[1])
    for i in range(2):  # micro-batch i: rank 0's rows, then rank 1's
        assert torch.equal(torch.cat([p.chunk(2)[i] for p in parts]), whole.chunk(2)[i])
    assert len(one) == 6 and len(parts[0]) == 6


def attrs_evolve_batch(run, batch_size: int):
    """The prepared run with another batch size (same task data)."""
    import attrs

    train = attrs.evolve(run.spec.train, batch_size=batch_size)
    return attrs.evolve(run, spec=run.spec.with_table("train", train))


def test_accumulation_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "acc.toml"
    path.write_text('[optimizer]\ntype = "sgd"\nlr = 0.1\n[train]\ntask = "mlp"\nsteps = 4\nbatch_size = 8\n'
                    "grad_accum_steps = 3\n")
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), *QUIET]) == 0
    assert read_metrics(out / "metrics.jsonl")[-1]["tokens"] == 4 * 8 * 3
    assert optreg.load_spec(out / "spec.toml").train.grad_accum_steps == 3
    capsys.readouterr()
    path.write_text('[optimizer]\ntype = "sgd"\n[train]\ngrad_accum_steps = 0\n')
    assert main(["train", str(path), "--out", str(tmp_path / "bad")]) == 2
    assert f"{path}: $.train.grad_accum_steps: must be in [1, 4096], got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- mixed precision


def test_bfloat16_autocast_runs_the_forward_in_bf16_on_cpu(tmp_path: Path) -> None:
    run_spec = spec(task="mlp", batch_size=32, d_model=16, eval_batches=1, steps=30, eval_interval=15,
                    autocast="bfloat16", device="cpu")
    prepared = prepare_run(run_spec)
    dtypes: set[torch.dtype] = set()
    for module in prepared.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, args, out: dtypes.add(out.dtype))
    result = train_run(run_spec, tmp_path / "bf16", show_progress=False, plots=False, prepared=prepared)
    assert dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in prepared.model.parameters())  # weights stay fp32
    records = read_metrics(tmp_path / "bf16" / "metrics.jsonl")
    assert result.status == "finished" and records[-1]["loss"] < records[0]["loss"]


def test_float16_needs_cuda_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(optreg.SpecError, match='"float16" needs CUDA') as info:
        spec(autocast="float16", device="cpu")
    assert info.value.path == "$.train.autocast"
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: device auto picks it")
    path = tmp_path / "fp16.toml"
    path.write_text('[optimizer]\ntype = "sgd"\n[train]\ntask = "mlp"\nautocast = "float16"\n')
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optreg: error: {path}: $.train.autocast: \"float16\" needs CUDA") and "bfloat16" in err
    assert not out.exists()


def test_float16_steps_through_a_grad_scaler_that_is_checkpointed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path, run on this CPU (torch's CPU autocast and GradScaler do float16 too)."""
    monkeypatch.setattr(loop, "FLOAT16_DEVICES", ("cuda", "cpu"))
    run_spec = spec(task="mlp", batch_size=16, d_model=16, eval_batches=1, steps=8, eval_interval=4,
                    autocast="float16", grad_clip=1.0)
    whole = train_run(run_spec, tmp_path / "whole", show_progress=False, plots=False)
    assert whole.status == "finished"
    state = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["grad_scaler"]
    assert state["scale"] > 0 and state["_growth_tracker"] == 8  # every step finite: the scale grew its count
    train_run(run_spec, tmp_path / "split", stop_after=4, show_progress=False, plots=False)
    done = train_run(run_spec, tmp_path / "split", resume=True, show_progress=False, plots=False)
    assert done.val_loss == pytest.approx(whole.val_loss, rel=1e-6)


# ---------------------------------------------------------------- the mlp task's accuracy


def test_mlp_reports_accuracy_in_metrics_summary_and_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mlp.toml"
    path.write_text('[optimizer]\ntype = "sgd"\nlr = 0.2\nmomentum = 0.9\n[train]\ntask = "mlp"\nsteps = 40\n'
                    "batch_size = 64\neval_interval = 20\n")
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), *QUIET]) == 0
    evals = [r for r in read_metrics(out / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [20, 40] and all(0 <= r["val_accuracy"] <= 1 for r in evals)
    assert evals[-1]["val_accuracy"] > 1 / 8 + 0.1, "better than chance over 8 classes"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_accuracy"] == evals[-1]["val_accuracy"]
    row = next(line for line in capsys.readouterr().out.splitlines() if "final validation accuracy" in line)
    assert f"│ {100 * evals[-1]['val_accuracy']:.1f}%" in row
    # The accuracy is that of the saved model on the held-out set.
    run_spec = optreg.load_spec(out / "spec.toml")
    task = loop.load_task(run_spec.train)
    model = task.make_model()
    model.load_state_dict(weights(out))
    with torch.no_grad():
        right = sum(int((model(x).argmax(-1) == y).sum()) for x, y in task.val_batches(torch.device("cpu")))
    assert right / 2048 == pytest.approx(evals[-1]["val_accuracy"])
    assert main(["compare", str(path), "--out", str(tmp_path / "cmp"), "--no-progress", "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "acc" in table and f"{100 * evals[-1]['val_accuracy']:.1f}%" in table
    # char_lm reports no accuracy.
    lm = train_run(spec(steps=2, batch_size=2, **TINY_LM), tmp_path / "lm", show_progress=False, plots=False)
    assert lm.val_accuracy is None
    assert all("val_accuracy" not in r for r in read_metrics(tmp_path / "lm" / "metrics.jsonl"))
