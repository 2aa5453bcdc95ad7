"""`optreg train` / `optreg compare`: tasks, outputs, resume, eval-mode and skip-step handling, CLI errors."""

from __future__ import annotations

import json
import math
import signal
import types
from pathlib import Path
from typing import Any, ClassVar

import attrs
import optreg_train.plugin as train_plugin
import pytest
import torch
from optreg_train import compare_specs, load_task, train_run
from optreg_train.checkpoint import CHECKPOINT
from optreg_train.metrics import read_metrics
from optreg_train.specs import TrainSpec
from optreg_train.tasks import CHUNK, _split_chunks, stdlib_files

import optreg
from optreg import SchedulerSpec, field
from optreg.cli import main
from optreg.specs import OptimizerSpec

# Small enough that a run of a few dozen steps takes well under a second.
TINY = {"seq_len": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "batch_size": 4, "eval_batches": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- test-only specs and optimizers


@attrs.frozen(kw_only=True)
class LinearDecay(SchedulerSpec):
    """LR falls linearly to 0 at t_max: any resume error shows in the LR sequence."""

    TYPE: ClassVar[str] = "test_linear_decay"

    def needs_t_max(self) -> bool:
        return True

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * max(0.0, 1.0 - current / t_max)


class AveragingSGD(torch.optim.SGD):
    """SGD whose evaluation parameters are a running average (a stand-in for schedule-free's x sequence).

    ``eval()`` swaps the averages into the parameters, ``train()`` swaps them back; the
    mode is a Python attribute (not in the state dict), the harder case for resuming.
    """

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.training = True
        self.mode_log: list[str] = []

    @torch.no_grad()
    def step(self, closure=None):
        assert self.training, "stepped in eval mode"
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if "avg" not in state:
                    state["avg"] = p.detach().clone()
                    state["n"] = torch.zeros(())
                state["n"] += 1
                state["avg"].lerp_(p, 1 / state["n"])
        return loss

    @torch.no_grad()
    def _swap(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if "avg" in self.state[p]:
                    avg = self.state[p]["avg"]
                    tmp = p.detach().clone()
                    p.copy_(avg)
                    avg.copy_(tmp)

    def eval(self) -> None:
        self.mode_log.append("eval")
        if self.training:
            self._swap()
            self.training = False

    def train(self) -> None:
        self.mode_log.append("train")
        if not self.training:
            self._swap()
            self.training = True


@attrs.frozen(kw_only=True)
class AveragingSGDSpec(OptimizerSpec):
    """Test spec for AveragingSGD."""

    TYPE: ClassVar[str] = "test_averaging_sgd"
    lr: float = field(0.1, ge=0)

    def create(self, param_groups, context):
        return AveragingSGD(param_groups, lr=self.lr)


class EveryThirdSkipped(torch.optim.SGD):
    """Skips every third step and says so in ``step_skipped`` (as skip-step optimizers do)."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.calls = 0
        self.step_skipped = torch.zeros((), dtype=torch.bool)

    @torch.no_grad()
    def step(self, closure=None):
        self.calls += 1
        skip = self.calls % 3 == 0
        self.step_skipped.fill_(skip)
        if skip:
            return closure() if closure is not None else None
        return super().step(closure)


@attrs.frozen(kw_only=True)
class SkippingSpec(OptimizerSpec):
    """Test spec for EveryThirdSkipped."""

    TYPE: ClassVar[str] = "test_skipping_sgd"
    lr: float = field(0.1, ge=0)

    def create(self, param_groups, context):
        return EveryThirdSkipped(param_groups, lr=self.lr)


class InterruptingSGD(torch.optim.SGD):
    """Raises SIGINT in the middle of its 5th step, like a user pressing Ctrl-C."""

    #: Fires once (class-wide, so the resumed run is not interrupted again).
    armed: ClassVar[bool] = True

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 5 and type(self).armed:
            type(self).armed = False
            signal.raise_signal(signal.SIGINT)
        return super().step(closure)


@attrs.frozen(kw_only=True)
class InterruptingSpec(OptimizerSpec):
    """Test spec for InterruptingSGD."""

    TYPE: ClassVar[str] = "test_interrupting_sgd"
    lr: float = field(0.1, ge=0)

    def create(self, param_groups, context):
        return InterruptingSGD(param_groups, lr=self.lr)


class FailsWhenStepping(torch.optim.SGD):
    """Accepts its options at build time and rejects them at the first step (as a shape check can)."""

    def step(self, closure=None):
        raise ValueError("split_sizes (32, 32) must add up to the 96 rows of shape (96, 32)")


@attrs.frozen(kw_only=True)
class FailsWhenSteppingSpec(OptimizerSpec):
    """Test spec for FailsWhenStepping."""

    TYPE: ClassVar[str] = "test_fails_when_stepping"
    lr: float = field(0.1, ge=0)

    def create(self, param_groups, context):
        return FailsWhenStepping(param_groups, lr=self.lr)


@pytest.fixture(scope="module")
def registry() -> optreg.Registry:
    @optreg.hookimpl
    def optreg_register_optimizers(register) -> None:
        for cls in (AveragingSGDSpec, SkippingSpec, InterruptingSpec, FailsWhenSteppingSpec):
            register(cls)

    @optreg.hookimpl
    def optreg_register_schedulers(register) -> None:
        register(LinearDecay)

    plugin = types.SimpleNamespace(
        __name__="train_test_plugin",
        optreg_register_optimizers=optreg_register_optimizers,
        optreg_register_schedulers=optreg_register_schedulers,
    )
    return optreg.Registry(plugins=[plugin, train_plugin], entry_points=False)


def make_spec(registry: optreg.Registry | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
              **train: Any) -> optreg.RunSpec:
    data = {
        "optimizer": optimizer or {"type": "sgd", "lr": 0.1, "momentum": 0.9},
        "scheduler": scheduler or {"type": "constant"},
        "train": {**TINY, "steps": 12, "eval_interval": 4, **train},
    }
    return optreg.parse_spec(data, registry=registry)


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl")]


def write_spec(path: Path, spec: optreg.RunSpec) -> str:
    path.write_text(optreg.dump_spec(spec))
    return str(path)


# ---------------------------------------------------------------- the [train] table


def test_train_table_bounds_and_cross_field_checks():
    base = {"optimizer": {"type": "sgd"}}
    with pytest.raises(optreg.SpecError, match=r"must divide d_model \(32\)") as info:
        optreg.parse_spec({**base, "train": {"n_heads": 3}})
    assert info.value.path == "$.train.n_heads"
    with pytest.raises(optreg.SpecError, match="only the char_lm task reads a text file") as info:
        optreg.parse_spec({**base, "train": {"task": "mlp", "data": "x.txt"}})
    assert info.value.path == "$.train.data"
    for key, value in (("steps", 0), ("seq_len", 1), ("val_fraction", 0.0), ("eval_interval", 0)):
        with pytest.raises(optreg.SpecError) as info:
            optreg.parse_spec({**base, "train": {key: value}})
        assert info.value.path == f"$.train.{key}"
    with pytest.raises(optreg.SpecError, match="did you mean 'seq_len'"):
        optreg.parse_spec({**base, "train": {"seqlen": 32}})
    spec = optreg.parse_spec({**base, "train": {"task": "mlp", "grad_clip": 1.0}})
    assert optreg.parse_spec(optreg.dump_spec(spec)) == spec


# ---------------------------------------------------------------- tasks and data


def test_stdlib_corpus_is_deterministic_with_a_held_out_split():
    assert stdlib_files() == sorted(stdlib_files()) and stdlib_files()
    train = TrainSpec(max_chars=50_000, seq_len=32)
    a = load_task(train).data
    b = load_task(attrs.evolve(train, seed=7)).data  # the data never depends on the seed
    assert a.fingerprint == b.fingerprint and torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert abs(len(a.val) / (len(a.train) + len(a.val)) - 0.1) < 0.02
    assert "def " in "".join(a.vocab[int(i)] for i in a.train[:20_000])
    # Held-out chunks are spread over the text and disjoint from the training ones.
    train_spans, val_spans = _split_chunks(100 * CHUNK, 0.1)
    assert len(val_spans) == 10 and not set(train_spans) & set(val_spans)
    assert val_spans[0][0] > 0 and val_spans[-1][0] < 99 * CHUNK


def test_data_file_and_its_errors(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 400
    (tmp_path / "fox.txt").write_text(text)
    task = load_task(TrainSpec(data=str(tmp_path / "fox.txt"), seq_len=16))
    assert set(task.data.vocab) == set(text)
    with pytest.raises(optreg.SpecError, match="data file not found") as info:
        load_task(TrainSpec(data=str(tmp_path / "missing.txt")))
    assert info.value.path == "$.train.data"
    (tmp_path / "short.txt").write_text("too short " * 120)
    with pytest.raises(optreg.SpecError, match=r"held-out split .* has"):
        load_task(TrainSpec(data=str(tmp_path / "short.txt"), seq_len=256))


# ---------------------------------------------------------------- one run


def test_train_writes_metrics_spec_checkpoint_and_plots(tmp_path):
    spec = make_spec()
    result = train_run(spec, tmp_path / "run", show_progress=False)
    out = tmp_path / "run"
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))
    assert all({"loss", "lr", "tokens", "time"} <= set(r) for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8, 12]
    assert records[-1]["tokens"] == 12 * TINY["batch_size"] * TINY["seq_len"]
    assert optreg.load_spec(out / "spec.toml") == spec  # the resolved spec round-trips
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 12 and {"model", "optimizer", "scheduler", "rng"} <= set(ckpt)
    assert ckpt["optimizer"]["state"], "momentum buffers are saved"
    for name in ("loss.png", "lr.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["val_loss"] == pytest.approx(result.val_loss)
    assert result.state_bytes == sum(p.numel() * 4 for p in result_params(out))  # one momentum buffer per param
    assert result.peak_memory and result.peak_memory > 0
    assert result.val_loss < math.log(len(load_task(spec.train).data.vocab)), "learned something"


def result_params(out: Path) -> list[torch.Tensor]:
    return list(torch.load(out / CHECKPOINT, weights_only=True)["model"].values())


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    a = train_run(make_spec(steps=6), tmp_path / "a", show_progress=False, plots=False)
    b = train_run(make_spec(steps=6), tmp_path / "b", show_progress=False, plots=False)
    c = train_run(make_spec(steps=6, seed=1), tmp_path / "c", show_progress=False, plots=False)
    assert losses(a.out) == losses(b.out)
    assert losses(a.out) != losses(c.out)


def test_mlp_task_trains_in_a_moment(tmp_path):
    spec = make_spec(task="mlp", steps=60, batch_size=64, d_model=32, eval_interval=30)
    result = train_run(spec, tmp_path / "mlp", show_progress=False, plots=False)
    record = read_metrics(tmp_path / "mlp" / "metrics.jsonl")
    assert result.unit == "samples" and record[-1]["tokens"] == 60 * 64
    first_val = next(r["val_loss"] for r in record if "val_loss" in r)
    assert result.val_loss < first_val < math.log(8)


def test_refuses_to_overwrite_a_run(tmp_path):
    spec = make_spec(steps=2)
    train_run(spec, tmp_path / "run", show_progress=False, plots=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train_run(spec, tmp_path / "run", show_progress=False, plots=False)
    train_run(spec, tmp_path / "run", show_progress=False, plots=False, overwrite=True)


# ---------------------------------------------------------------- resume


def _lr_and_loss(out: Path) -> tuple[list[float], list[float], list[float]]:
    records = read_metrics(out / "metrics.jsonl")
    return ([r["loss"] for r in records], [r["lr"] for r in records],
            [r["val_loss"] for r in records if "val_loss" in r])


@pytest.mark.parametrize("optimizer", ["sgd", "averaging"])
def test_resume_equals_an_unbroken_run(tmp_path, registry, optimizer):
    opt = {"type": "sgd", "lr": 0.1, "momentum": 0.9} if optimizer == "sgd" else {"type": "test_averaging_sgd"}
    spec = make_spec(registry, optimizer=opt, scheduler={"type": "test_linear_decay"}, steps=16, eval_interval=4)
    whole = train_run(spec, tmp_path / "whole", show_progress=False, plots=False)
    half = train_run(spec, tmp_path / "split", stop_after=8, show_progress=False, plots=False)
    assert half.status == "stopped" and half.step == 8
    rest = train_run(spec, tmp_path / "split", resume=True, show_progress=False, plots=False)
    assert rest.status == "finished" and rest.step == 16
    w_loss, w_lr, w_val = _lr_and_loss(tmp_path / "whole")
    s_loss, s_lr, s_val = _lr_and_loss(tmp_path / "split")
    assert len(s_loss) == 16
    assert s_lr == w_lr and w_lr[0] == 0.1 * 1.0 and w_lr[-1] == pytest.approx(0.1 / 16)
    torch.testing.assert_close(torch.tensor(s_loss), torch.tensor(w_loss), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.tensor(s_val), torch.tensor(w_val), rtol=1e-6, atol=1e-6)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)
    assert whole.val_loss == pytest.approx(rest.val_loss, rel=1e-6)


def test_resume_from_the_command_line_2n_equals_n_plus_n(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", make_spec(steps=10, eval_interval=5))
    assert main(["train", spec, "--steps", "20", "--out", str(tmp_path / "whole"), "--no-progress", "--no-plots"]) == 0
    assert main(["train", spec, "--out", str(tmp_path / "split"), "--no-progress", "--no-plots"]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--steps", "20", "--no-progress", "--no-plots"]) == 0
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "split")), torch.tensor(losses(tmp_path / "whole")),
                               rtol=1e-6, atol=1e-6)
    assert optreg.load_spec(tmp_path / "split" / "spec.toml").train.steps == 20
    capsys.readouterr()
    # A different spec cannot resume this run; only --steps may change on resume.
    other = write_spec(tmp_path / "o.toml", make_spec(steps=10, eval_interval=5, optimizer={"type": "sgd", "lr": 0.2}))
    assert main(["train", other, "--resume", str(tmp_path / "split"), "--no-progress"]) == 2
    assert "is not the spec of the run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "split"), "--seed", "3"]) == 2
    assert "only --steps may" in capsys.readouterr().err


# ---------------------------------------------------------------- eval-mode params, skipped steps, Ctrl-C


def test_eval_mode_optimizers_are_evaluated_and_saved_at_their_eval_params(tmp_path, registry):
    spec = make_spec(registry, optimizer={"type": "test_averaging_sgd", "lr": 0.2}, steps=12, eval_interval=6)
    result = train_run(spec, tmp_path / "avg", show_progress=False, plots=False)
    # The checkpoint holds the averaged (evaluation) parameters; evaluating them gives the reported val loss.
    task = load_task(spec.train)
    torch.manual_seed(0)
    model = task.make_model()
    model.load_state_dict(torch.load(tmp_path / "avg" / CHECKPOINT, weights_only=True)["model"])
    with torch.no_grad():
        pieces = [(task.loss(model, x, y).item(), y.numel()) for x, y in task.val_batches(torch.device("cpu"))]
    val = sum(v * n for v, n in pieces) / sum(n for _, n in pieces)
    assert val == pytest.approx(result.val_loss, rel=1e-6)
    # ...and they differ from the training parameters (else the test proves nothing).
    plain = train_run(make_spec(optimizer={"type": "sgd", "lr": 0.2}, steps=12, eval_interval=6),
                      tmp_path / "plain", show_progress=False, plots=False)
    assert plain.val_loss != pytest.approx(result.val_loss, rel=1e-3)


def test_skipped_steps_are_counted(tmp_path, registry):
    spec = make_spec(registry, optimizer={"type": "test_skipping_sgd"}, steps=10)
    result = train_run(spec, tmp_path / "skip", show_progress=False, plots=False)
    records = read_metrics(tmp_path / "skip" / "metrics.jsonl")
    assert [r["skipped"] for r in records] == [i % 3 == 0 for i in range(1, 11)]
    assert result.skipped_steps == 3
    assert json.loads((tmp_path / "skip" / "summary.json").read_text())["skipped_steps"] == 3
    sgd = train_run(make_spec(steps=2), tmp_path / "sgd", show_progress=False, plots=False)
    assert sgd.skipped_steps is None and "skipped" not in read_metrics(tmp_path / "sgd" / "metrics.jsonl")[0]


@pytest.fixture
def sigint_handler():
    """Run the test with the given SIGINT disposition (a terminal's default, or ignored as in a
    background job, whatever the suite itself was started with); the caller's is restored after."""
    outer = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, outer)


@pytest.mark.parametrize(("handler", "status", "step"), [
    (signal.default_int_handler, "interrupted", 5),  # a terminal: Ctrl-C stops after the step, resumable
    (signal.SIG_IGN, "finished", 12),  # nohup or a background job: SIGINT is ignored and stays ignored
], ids=["terminal", "ignored"])
def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_resumes(
    tmp_path, registry, sigint_handler, handler, status, step
):
    sigint_handler(handler)
    InterruptingSGD.armed = True
    spec = make_spec(registry, optimizer={"type": "test_interrupting_sgd"}, steps=12, eval_interval=100)
    result = train_run(spec, tmp_path / "run", show_progress=False, plots=False)
    assert result.status == status and result.step == step
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == step
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    done = train_run(spec, tmp_path / "run", resume=True, show_progress=False, plots=False)
    assert done.status == "finished" and len(losses(tmp_path / "run")) == 12


# ---------------------------------------------------------------- CLI errors before training


def test_spec_errors_exit_2_before_any_training(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[optimizer]\ntype = "sgd"\nlr = -1.0\n')
    out = tmp_path / "out"
    assert main(["train", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optreg: error: {bad}: $.optimizer.lr: must be >= 0") and "Traceback" not in err
    assert not out.exists()
    # An error found only when building (a glob that matches no parameter) also stops before training.
    glob = tmp_path / "glob.toml"
    glob.write_text('[optimizer]\ntype = "sgd"\n[[optimizer.group_overrides]]\nparams = ["nope.*"]\nlr = 0.1\n')
    good = write_spec(tmp_path / "good.toml", make_spec(steps=2))
    assert main(["compare", good, str(glob), "--out", str(out)]) == 2
    assert "$.optimizer.group_overrides[0].params[0]" in capsys.readouterr().err
    assert not (out / "good" / "metrics.jsonl").exists()
    assert main(["train", good, "--steps", "0"]) == 2
    assert "$.train.steps: must be in [1, 1125899906842624], got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- compare


def test_compare_ranks_same_data_same_init(tmp_path, capsys):
    fast = write_spec(tmp_path / "fast.toml", make_spec(steps=12))
    still = write_spec(tmp_path / "still.toml", make_spec(optimizer={"type": "sgd", "lr": 0.0}, steps=40, seed=5))
    out = tmp_path / "cmp"
    assert main(["compare", still, fast, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ranked by final validation loss" in text and "fast use those of still" not in text
    assert "set other [train] options" in text  # fast's [train] differs from still's: still's is used
    ranking = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["name"] for r in ranking] == ["fast", "still"]
    assert all(r["step"] == 40 for r in ranking)
    # Same initial weights and the same first batch: the first losses agree exactly.
    assert losses(out / "fast")[0] == losses(out / "still")[0]
    for name in ("loss.png", "lr.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_compare_api_returns_results_best_first(tmp_path):
    specs = [make_spec(optimizer={"type": "sgd", "lr": lr}, steps=8) for lr in (0.0, 0.3)]
    results = compare_specs(specs, tmp_path / "cmp", show_progress=False, plots=False)
    assert [r.spec.optimizer.lr for r in results] == [0.3, 0.0]
    assert [r.name for r in results] == ["spec2", "spec1"]


def test_token_schedules_advance_by_the_characters_of_each_step(tmp_path, registry):
    steps_spec = make_spec(registry, scheduler={"type": "test_linear_decay"}, steps=8, eval_interval=8)
    tokens_spec = make_spec(registry, scheduler={"type": "test_linear_decay", "units": "tokens"}, steps=8,
                            eval_interval=8)
    train_run(steps_spec, tmp_path / "steps", show_progress=False, plots=False)
    train_run(tokens_spec, tmp_path / "tokens", show_progress=False, plots=False)
    # t_max defaults to steps * tokens per step, so both schedules give the same LRs.
    a = [r["lr"] for r in read_metrics(tmp_path / "steps" / "metrics.jsonl")]
    b = [r["lr"] for r in read_metrics(tmp_path / "tokens" / "metrics.jsonl")]
    assert a == pytest.approx(b) and a[-1] == pytest.approx(0.1 / 8)


def test_data_option_trains_on_the_users_text(tmp_path, capsys):
    (tmp_path / "poem.txt").write_text("roses are red, violets are blue; " * 300)
    spec = write_spec(tmp_path / "s.toml", make_spec(steps=4))
    out = tmp_path / "poem"
    assert main(["train", spec, "--data", str(tmp_path / "poem.txt"), "--out", str(out), "--no-progress",
                 "--no-plots"]) == 0
    saved = optreg.load_spec(out / "spec.toml")
    assert saved.train.data == str((tmp_path / "poem.txt").resolve())
    assert "poem.txt" in json.loads((out / "summary.json").read_text())["data"]
    assert "summary: s" in capsys.readouterr().out
    assert main(["train", spec, "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x")]) == 2
    assert f"{spec}: $.train.data: data file not found" in capsys.readouterr().err


def test_a_spec_that_fails_at_its_first_step_stops_before_training(tmp_path, registry, capsys):
    bad = make_spec(registry, optimizer={"type": "test_fails_when_stepping"})
    with pytest.raises(optreg.SpecError, match="first training step fails: ValueError: split_sizes"):
        train_run(bad, tmp_path / "bad", show_progress=False)
    assert not (tmp_path / "bad").exists()
    good = make_spec(registry, steps=4)
    with pytest.raises(optreg.SpecError, match="first training step fails"):
        compare_specs([good, bad], tmp_path / "cmp", show_progress=False)
    assert not (tmp_path / "cmp").exists()


def test_compare_ranks_equal_losses_in_the_order_given_not_by_time():
    """adamw and skip_step_adamw (no step skipped) end with the same loss: the demo's table must not swap them
    from one run to the next because one was faster this time."""
    import attrs
    from optreg_train.report import rank
    from optreg_train.results import RunResult

    base = {f.name: None for f in attrs.fields(RunResult) if f.default is attrs.NOTHING}
    base.update(status="finished", val_loss=2.0, wall_time=1.0)
    first = RunResult(**{**base, "name": "first", "wall_time": 9.0})
    second = RunResult(**{**base, "name": "second", "wall_time": 1.0})
    best = RunResult(**{**base, "name": "best", "val_loss": 1.0, "wall_time": 5.0})
    assert [r.name for r in rank([first, second, best])] == ["best", "first", "second"]
