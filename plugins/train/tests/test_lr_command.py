"""``optreg lr``: the LR schedule of a spec as a table or a plot, one curve per param group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import attrs
import optreg_train.plugin as train_plugin
import pytest
from optreg_train.lr import figure, lr_curves, sample_points

import optreg
from optreg import SchedulerSpec
from optreg.cli import main

SPEC = """
schema_version = 1
[optimizer]
type = "sgd"
lr = 0.05
[[optimizer.group_overrides]]
params = ["blocks.*.attn_*"]
lr = 0.005
[scheduler]
type = "constant"
{extra}
[train]
steps = 40
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(SPEC.format(extra=""), encoding="utf-8")
    return path


@attrs.frozen(kw_only=True)
class HalvingRamp(SchedulerSpec):
    """Linear from the initial LR down to half of it at t_max, then held."""

    TYPE: ClassVar[str] = "halving_ramp"

    def needs_t_max(self) -> bool:
        return True

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * (1 - 0.5 * min(current, t_max) / t_max)


class _Plugin:
    __name__ = "ramp"

    @staticmethod
    @optreg.hookimpl
    def optreg_register_schedulers(register) -> None:
        register(HalvingRamp)


def test_sample_points_cover_both_ends() -> None:
    assert sample_points(5, 100) == [0, 1, 2, 3, 4, 5]
    points = sample_points(1000, 11)
    assert points == list(range(0, 1001, 100))
    assert sample_points(10**7, 2001)[-1] == 10**7


def test_table_has_one_column_per_group(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr", str(spec_file), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "constant" in out and "2 param groups" in out
    lines = [line for line in out.splitlines() if line.strip().startswith("│")]
    assert len(lines) == 3  # 0, 20, 40 steps
    for line in lines:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        assert cells[1:] == ["0.05", "0.005"], line
    assert [int(line.strip("│ ").split("│")[0]) for line in lines] == [0, 20, 40]


def test_curves_per_group_follow_the_schedule_and_steps_sets_the_run_length() -> None:
    registry = optreg.Registry([_Plugin(), train_plugin], entry_points=False)
    spec = registry.parse_spec(SPEC.replace('type = "constant"', 'type = "halving_ramp"').format(extra=""))
    curves = lr_curves(spec, steps=100, count=11)
    assert curves.t_max == 100 and curves.units == "steps"
    assert curves.points == list(range(0, 101, 10))
    assert [(label, lr0) for label, lr0, _ in curves.groups] == [("0: default", 0.05), ("1: override[0]", 0.005)]
    for _, lr0, values in curves.groups:
        assert values == pytest.approx([lr0 * (1 - 0.5 * c / 100) for c in curves.points], rel=1e-12)
    # Without --steps the run length is [train] steps.
    assert lr_curves(spec, count=3).points == [0, 20, 40]


def test_plot_writes_png_with_a_labelled_curve_per_group(spec_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the core's test extra")
    registry = optreg.Registry([_Plugin(), train_plugin], entry_points=False)
    spec = registry.parse_spec(SPEC.replace('type = "constant"', 'type = "halving_ramp"').format(extra=""))
    fig = figure(lr_curves(spec, steps=60))
    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("t_max")]
    assert [line.get_label() for line in lines] == ["0: default (initial lr 0.05)", "1: override[0] (initial lr 0.005)"]
    assert lines[0].get_ydata()[-1] == pytest.approx(0.025)
    assert ax.get_xlabel() == "steps" and ax.get_ylabel() == "learning rate"
    assert ax.get_legend() is not None

    out = tmp_path / "lr.png"
    assert main(["lr", str(spec_file), "--steps", "25", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_matplotlib_is_a_clear_error(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "lr.png"
    assert main(["lr", str(spec_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "optreg-train[plot]" in err and "Traceback" not in err
    assert not out.exists()
    # The table needs no matplotlib.
    assert main(["lr", str(spec_file)]) == 0


def test_tokens_schedule_without_t_max_spans_the_runs_token_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optreg import load_spec

    path = tmp_path / "tokens.toml"
    path.write_text(SPEC.format(extra='units = "tokens"'), encoding="utf-8")
    budget = load_spec(path).train.run_length("tokens")  # steps x batch_size x seq_len, as `optreg train` uses
    assert budget == 40 * load_spec(path).train.tokens_per_step
    assert main(["lr", str(path), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and str(budget) in out
    assert main(["lr", str(path), "--steps", "4096", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and "4096" in out


def test_bad_spec_and_bad_arguments_exit_2(tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.format(extra="").replace("lr = 0.05", "lr = -1.0"), encoding="utf-8")
    assert main(["lr", str(bad)]) == 2
    assert "$.optimizer.lr" in capsys.readouterr().err
    assert main(["lr", str(spec_file), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
