"""The LR an optimizer sets itself is shown (issue 19, items 3, 4 and 14).

3: a schedule-free optimizer's ``warmup_steps`` and Prodigy's ``d * lr`` are visible in ``optreg lr``,
   metrics.jsonl, the tables' schedule column and lr.png;
4: a schedule-free optimizer driven by a decaying schedule gets a plain warning;
14: ``compare``'s lr.png shows every param group and keeps an LR of 0 on its log axis.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import ClassVar

import attrs
import optreg_train.plugin as train_plugin
import pytest
import torch
from optreg_train import compare_specs, train_run
from optreg_train.metrics import read_metrics
from optreg_train.report import ranking_table, summary_table
from rich.console import Console

import optreg
from optreg import SchedulerSpec
from optreg.cli import main

TRAIN = """
[train]
task = "mlp"
steps = 12
batch_size = 16
d_model = 16
eval_interval = 6
eval_batches = 1
"""
SCHEDULE_FREE = """
schema_version = 1
[optimizer]
type = "schedule_free_adamw"
lr = 0.01
warmup_steps = 4
[scheduler]
type = "{schedule}"
{options}
""" + TRAIN
PRODIGY = """
schema_version = 1
[optimizer]
type = "prodigy"
lr = 1.0
[scheduler]
type = "constant"
""" + TRAIN
QUIET = ["--no-progress", "--no-plots"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _plain(text: str) -> str:
    return " ".join(text.split())


def _table_text(table) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


# ---------------------------------------------------------------- item 3: the effective LR


def test_schedule_free_warmup_is_the_effective_lr_everywhere(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optreg_schedulefree", reason="schedule_free_adamw comes from optreg-schedulefree")
    spec = _write(tmp_path, "sf.toml", SCHEDULE_FREE.format(schedule="constant", options=""))
    # optreg lr: known before training, shown beside the (flat) scheduled LR.
    assert main(["lr", spec, "--rows", "13"]) == 0
    out = capsys.readouterr().out
    assert "scales the scheduled LR itself" in _plain(out)
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│")]
    predicted = [float(row[-1]) for row in rows]  # the last column: the last group's effective LR
    assert predicted[:6] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    assert {float(row[1]) for row in rows} == {0.01}  # the scheduled LR stays flat
    # optreg train records it per step, and the tables say it.
    run = tmp_path / "run"
    assert main(["train", spec, "--out", str(run), *QUIET]) == 0
    text = _plain(capsys.readouterr().out)
    assert "effective lr 0.0025 → 0.01" in text
    records = read_metrics(run / "metrics.jsonl")
    assert [r["effective_lr"] for r in records] == pytest.approx(predicted[:12])
    assert {r["lr"] for r in records} == {0.01}


def test_prodigy_effective_lr_is_lr_times_d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optreg_paramfree", reason="prodigy comes from optreg-paramfree")
    spec = _write(tmp_path, "prodigy.toml", PRODIGY)
    assert main(["lr", spec, "--rows", "3"]) == 0
    assert "cannot be known before training" in _plain(capsys.readouterr().out)
    result = train_run(optreg.load_spec(spec), tmp_path / "run", show_progress=False, plots=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    effective = [r["effective_lr"] for r in records]
    assert effective[0] == pytest.approx(1e-6)  # d0
    assert effective[-1] > 100 * effective[0], "d grew: the LR is not flat"
    d = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"][0]["d"]
    assert effective[-1] == pytest.approx(float(d))
    assert result.effective_lr == {"first": effective[0], "peak": max(effective), "last": effective[-1]}
    assert "effective lr 1e-06 →" in _plain(_table_text(summary_table(result)))
    ranking = _table_text(ranking_table([result]))  # the schedule column: name, "effective lr", the values
    assert "effective lr" in ranking and "│ 1e-06 → " in ranking
    pytest.importorskip("matplotlib")
    from optreg_train.plots import run_lr_figure

    labels = [line.get_label() for line in run_lr_figure(result).axes[0].get_lines()]
    assert any(label.endswith("(effective)") for label in labels), labels


def test_an_optimizer_without_its_own_step_size_records_none(tmp_path: Path) -> None:
    spec = optreg.parse_spec({"optimizer": {"type": "sgd", "lr": 0.1}, "train": {"task": "mlp", "steps": 2}})
    result = train_run(spec, tmp_path / "run", show_progress=False, plots=False)
    assert "effective_lr" not in read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert result.effective_lr is None


# ---------------------------------------------------------------- item 4: schedule-free under a decaying schedule


def test_schedule_free_under_a_decaying_schedule_warns_plainly(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optreg_schedulefree", reason="schedule_free_adamw comes from optreg-schedulefree")
    pytest.importorskip("optreg_schedules", reason="cos_with_warmup comes from optreg-schedules")
    spec = _write(tmp_path, "sf_cos.toml", SCHEDULE_FREE.format(schedule="cos_with_warmup", options="warmup_steps = 0"))
    assert main(["train", spec, "--out", str(tmp_path / "run"), *QUIET]) == 0
    err = capsys.readouterr().err
    warning = "optreg: warning: schedule 'cos_with_warmup' drives ScheduleFreeAdamW: a schedule-free optimizer"
    assert err.count(warning) == 1, err
    assert "UserWarning" not in err and ".py:" not in err  # no Python source location
    assert main(["lr", spec, "--rows", "3"]) == 0
    assert capsys.readouterr().err.count(warning) == 1
    # A constant schedule is what it wants: no warning.
    constant = _write(tmp_path, "sf.toml", SCHEDULE_FREE.format(schedule="constant", options=""))
    assert main(["train", constant, "--out", str(tmp_path / "ok"), *QUIET]) == 0
    assert "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- item 14: compare's lr.png


@attrs.frozen(kw_only=True)
class Warmup(SchedulerSpec):
    """Linear warmup from 0 over the first quarter, then constant: the first step's LR is 0."""

    TYPE: ClassVar[str] = "test_warmup_from_zero"

    def needs_t_max(self) -> bool:
        return True

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * min(1.0, current / (t_max / 4))


def test_compare_lr_plot_shows_every_group_and_keeps_lr_0_on_the_axis(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from optreg_train.plots import compare_lr_figure

    @optreg.hookimpl
    def optreg_register_schedulers(register) -> None:
        register(Warmup)

    plugin = types.SimpleNamespace(__name__="warmup_plugin", optreg_register_schedulers=optreg_register_schedulers)
    registry = optreg.Registry(plugins=[plugin, train_plugin], entry_points=False)
    train = {"task": "mlp", "steps": 8, "batch_size": 8, "d_model": 16, "eval_interval": 8, "eval_batches": 1}
    # Two groups 100x apart (like Muon's orthogonal and AdamW LRs): a log axis; a warmup from 0.
    two_groups = registry.parse_spec({
        "optimizer": {"type": "sgd", "lr": 0.1, "group_overrides": [{"params": ["fc1.*"], "lr": 0.001}]},
        "scheduler": {"type": "test_warmup_from_zero"}, "train": train,
    })
    plain = registry.parse_spec({"optimizer": {"type": "sgd", "lr": 0.05}, "train": train})
    results = compare_specs([two_groups, plain], tmp_path / "cmp", show_progress=False, plots=False)
    fig = compare_lr_figure(results)
    ax = fig.axes[0]
    lines = ax.get_lines()
    labels = [line.get_label() for line in lines]
    assert len(lines) == 3, labels  # both groups of the first run, the one group of the second
    assert any("override[0]" in label for label in labels) and any("default" in label for label in labels)
    low, high = ax.get_ylim()
    for line in lines:
        ys = line.get_ydata()
        assert all(low <= y <= high for y in ys), (line.get_label(), ys, (low, high))
        shown = ax.transData.transform(list(zip(line.get_xdata(), ys)))
        assert all(math.isfinite(v) for point in shown for v in point), line.get_label()  # 0 is on the axis
    assert min(min(line.get_ydata()) for line in lines) == 0.0
    assert ax.get_yscale() == "symlog"  # a log-like axis for the 100x spread, with 0 on it
