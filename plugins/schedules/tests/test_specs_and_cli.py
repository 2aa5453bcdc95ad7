"""The plugin's example specs (specs/sgd_*.toml) and `optreg lr` on them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import schedule_formulas as F

import optreg
from optreg.cli import main
from optreg.convert import spec_to_dict
from optreg.models import TinyTransformer

SPECS_DIR = Path(__file__).resolve().parents[3] / "specs"
# The example specs carry a [train] table, which the main job's plugin reads.
pytest.importorskip("optreg_train", reason="the example specs' [train] table needs optreg-train installed")
from optreg_train.lr import lr_curves  # noqa: E402 - after the skip

OURS = ["sgd_wsd.toml", "sgd_cos_with_warmup.toml", "sgd_wsds.toml", "sgd_sequential.toml", "sgd_composable.toml"]


@pytest.mark.parametrize("name", OURS)
def test_example_spec_validates_builds_and_round_trips(name: str) -> None:
    path = SPECS_DIR / name
    spec = optreg.load_spec(path)
    assert optreg.parse_spec(optreg.dump_spec(spec)) == spec
    built = spec.build(TinyTransformer())
    assert built.scheduler.t_max == spec.train.steps
    schedule = spec.scheduler
    for step in range(spec.train.steps + 1):
        for group, lr0 in zip(built.optimizer.param_groups, built.scheduler.base_lrs):
            assert math.isclose(group["lr"], schedule.get_lr(lr0, step, spec.train.steps), rel_tol=1e-12)
        built.optimizer.step()
        built.scheduler.step()


def test_wsd_example_ends_at_zero_with_each_groups_own_peak() -> None:
    curves = lr_curves(optreg.load_spec(SPECS_DIR / "sgd_wsd.toml"), count=201)
    peaks = sorted({lr0 for _, lr0, _ in curves.groups})
    assert peaks == [0.005, 0.05]
    for _, lr0, values in curves.groups:
        assert values[0] == 0.0 and values[10] == lr0 and values[160] == lr0 and values[200] == 0.0
        assert values[170] == pytest.approx(lr0 * (1 - math.sqrt(10 / 40)))


def test_optreg_lr_table_and_plot_for_a_plugin_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the test extra")
    spec_path = SPECS_DIR / "sgd_sequential.toml"
    assert main(["lr", str(spec_path), "--rows", "5"]) == 0
    out = capsys.readouterr().out
    rows = [line.strip("│ ").split("│") for line in out.splitlines() if line.startswith("│")]
    spec = optreg.load_spec(spec_path)
    assert [int(r[0]) for r in rows] == [0, 50, 100, 150, 200]
    for r in rows:
        assert float(r[1]) == pytest.approx(spec.scheduler.get_lr(0.05, int(r[0]), 200), rel=1e-5)
    png = tmp_path / "lr.png"
    assert main(["lr", str(spec_path), "--steps", "300", "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_tokens_run_with_t_max_in_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.toml"
    text = (SPECS_DIR / "sgd_wsd.toml").read_text()
    path.write_text(text.replace('type = "wsd"', 'type = "wsd"\nunits = "tokens"\nt_max = 819200'))
    assert main(["lr", str(path), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and "409600" in out and "819200" in out
    built = optreg.load_spec(path).build(TinyTransformer())
    built.optimizer.step()
    built.scheduler.step(tokens=4096)
    assert built.scheduler.current == 4096
    assert built.optimizer.param_groups[-1]["lr"] == pytest.approx(
        built.scheduler.base_lrs[-1] * 4096 / round(0.05 * 819200)
    )
    with pytest.raises(TypeError, match="tokens"):
        built.scheduler.step()
    assert built.scheduler.lr_at(819200) == [0.0] * len(built.optimizer.param_groups)


COMPOSABLE_TOML = """schema_version = 1
[optimizer]
type = "sgd"
lr = 0.1

[scheduler]
type = "composable"
units = "tokens"

[[scheduler.stages]]
duration = 1000
start_lr = 0.0
end_lr_fraction = 1.0

[[scheduler.stages]]
duration = 3000
shape = "cosine"
end_lr = 0.001

[scheduler.override_decay]
start = 3500
duration = 400
end_lr_fraction = 0.0
"""


def test_composable_written_as_arrays_of_tables_round_trips() -> None:
    spec = optreg.parse_spec(COMPOSABLE_TOML)
    schedule = spec.scheduler
    assert schedule.TYPE == "composable" and len(schedule.stages) == 2 and schedule.units == "tokens"
    assert schedule.stages[0].start_lr == 0.0 and schedule.stages[1].shape == "cosine"
    assert schedule.override_decay.start == 3500
    # TOML -> spec -> dict -> TOML -> spec, and the dict form through the registry.
    assert optreg.parse_spec(optreg.dump_spec(spec)) == spec
    assert optreg.get_registry().scheduler_spec(spec_to_dict(schedule)) == schedule
    stages = [{"duration": 1000, "start_lr": 0.0, "end_lr_fraction": 1.0},
              {"duration": 3000, "shape": "cosine", "end_lr": 0.001}]
    override = {"start": 3500, "duration": 400, "end_lr_fraction": 0.0}
    for c in (0, 500, 999, 1000, 2000, 3499, 3500, 3700, 3900, 5000):
        want = F.composable(0.1, c, stages=stages, override_decay=override)
        assert schedule.get_lr(0.1, c, None) == pytest.approx(want, rel=1e-12, abs=1e-15), c


def test_composable_example_follows_olmo_cores_rule() -> None:
    path = SPECS_DIR / "sgd_composable.toml"
    spec = optreg.load_spec(path)
    raw = spec_to_dict(spec.scheduler)
    built = spec.build(TinyTransformer())
    values: dict[float, list[float]] = {lr0: [] for lr0 in built.scheduler.base_lrs}
    for _ in range(spec.train.steps + 1):
        for group, lr0 in zip(built.optimizer.param_groups, built.scheduler.base_lrs):
            values[lr0].append(group["lr"])
        built.optimizer.step()
        built.scheduler.step()
    for lr0, lrs in values.items():
        for c, value in enumerate(lrs):
            assert value == pytest.approx(F.composable(lr0, c, stages=raw["stages"],
                                                       override_decay=raw["override_decay"]), abs=1e-15), c
        assert lrs[0] == 0.0 and lrs[10] == lr0 and lrs[200] == 0.0
