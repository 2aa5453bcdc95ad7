"""``optreg bench``: runs for registered and third-party names, --json keys and byte counts, clear errors.

No timed assertions: times are only checked to be positive and finite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import attrs
import optreg_train.plugin as train_plugin
import pytest
import torch
from optreg_train.bench import bench, candidates, parse_params, size_layout

import optreg
import optreg.registry
from optreg import OptimizerSpec
from optreg.cli import UsageError, main
from optreg.specs import field

#: Small enough that a run takes a fraction of a second.
LAYOUT = "2x64x32+2x32"
NUMEL = 2 * 64 * 32 + 2 * 32
PARAM_BYTES = 4 * NUMEL
ROW_KEYS = {"name", "type", "path", "default", "first_step_s", "step_s", "baseline_step_s", "ratio", "state_bytes",
            "state_source", "measured_state_bytes",
            "bytes_touched", "per_byte_ratio", "gb_per_s", "step_temp_bytes", "peak_bytes", "note", "error"}


class HeavyBall(torch.optim.Optimizer):
    """SGD with a heavy-ball buffer: one fp32 state tensor per param, nothing else."""

    def __init__(self, params: Any, lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["buf"] = torch.zeros_like(p)
                state["buf"].mul_(group["momentum"]).add_(p.grad)
                p.add_(state["buf"], alpha=-group["lr"])


class Broken(torch.optim.Optimizer):
    def __init__(self, params: Any) -> None:
        super().__init__(params, {"lr": 0.1})

    def step(self, closure: Any = None) -> None:
        raise RuntimeError("this optimizer cannot step")


@attrs.frozen(kw_only=True)
class HeavyBallSpec(OptimizerSpec):
    """A third party's heavy-ball SGD."""

    TYPE: ClassVar[str] = "toy_heavy_ball"
    lr: float = field(0.01, gt=0)
    momentum: float = field(0.9, ge=0, lt=1)

    def create(self, groups: Any, context: Any) -> torch.optim.Optimizer:
        return HeavyBall(groups, lr=self.lr, momentum=self.momentum)


@attrs.frozen(kw_only=True)
class BrokenSpec(OptimizerSpec):
    """An optimizer whose step raises."""

    TYPE: ClassVar[str] = "toy_broken"

    def create(self, groups: Any, context: Any) -> torch.optim.Optimizer:
        return Broken(groups)


class _ThirdParty:
    __name__ = "toy_family"

    @staticmethod
    @optreg.hookimpl
    def optreg_register_optimizers(register) -> None:
        register(HeavyBallSpec)
        register(BrokenSpec)


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> optreg.Registry:
    """The process registry replaced by one with the toy family, the core's built-ins and optreg-train."""
    registry = optreg.Registry([_ThirdParty(), train_plugin], entry_points=False)
    monkeypatch.setattr(optreg.registry, "_default_registry", registry)
    return registry


def _run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["bench", *argv, "--params", LAYOUT, "--steps", "2", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_row(row: dict[str, Any]) -> None:
    assert set(row) == ROW_KEYS
    assert row["error"] is None
    for key in ("first_step_s", "step_s", "baseline_step_s", "ratio", "per_byte_ratio", "gb_per_s"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["bytes_touched"] == 3 * PARAM_BYTES + 2 * row["state_bytes"]
    assert row["peak_bytes"] == 2 * PARAM_BYTES + row["state_bytes"] + row["step_temp_bytes"]
    assert row["step_temp_bytes"] >= 0


def test_layouts() -> None:
    assert parse_params("2x64x32+3x8") == [(64, 32)] * 2 + [(8,)] * 3
    assert parse_params("1x4x4x4") == [(4, 4, 4)]
    assert size_layout(10) == "10x1024x1024+10x1024"
    assert size_layout(0.01) == "1x1024x1024+1x1024"
    for bad in ("64", "2x", "2x64+", "0x8", "2*64", "ax3"):
        with pytest.raises(UsageError, match="--params"):
            parse_params(bad)
    with pytest.raises(UsageError, match="too many"):
        parse_params("99999999999x1+1x1")  # refused before a list of that length is built
    with pytest.raises(UsageError, match="--size"):
        size_layout(-1)


def test_paths_follow_the_specs_compile_option(optreg_registry: optreg.Registry) -> None:
    if "lion" not in optreg_registry.names("optimizer"):
        pytest.skip("optreg-sign is not installed")
    paths = candidates(optreg_registry, "lion")
    # the default (compile = "auto") is timed as its own path, then both explicit ones
    assert [(c.path, c.default, c.spec.compile) for c in paths] == [
        ("default (auto)", True, "auto"), ("eager", False, False), ("compiled", False, True)
    ]
    assert [c.path for c in candidates(optreg_registry, "lion", compile=False)] == ["eager"]
    (sgd,) = candidates(optreg_registry, "sgd")
    assert sgd.path == "eager" and sgd.default and "no compile option" in sgd.note


def test_a_path_the_spec_refuses_is_not_timed(optreg_registry: optreg.Registry, tmp_path: Path) -> None:
    """foreach = true takes no compiled path (the spec refuses compile = true with it): only the default and eager
    paths are timed, and the run goes on."""
    if "lion" not in optreg_registry.names("optimizer"):
        pytest.skip("optreg-sign is not installed")
    spec = tmp_path / "foreach_lion.toml"
    spec.write_text('[optimizer]\ntype = "lion"\nforeach = true\n', encoding="utf-8")
    assert [c.path for c in candidates(optreg_registry, str(spec))] == ["default (auto)", "eager"]


def test_a_spec_files_own_compile_setting_is_its_default(optreg_registry: optreg.Registry, tmp_path: Path) -> None:
    if "lion" not in optreg_registry.names("optimizer"):
        pytest.skip("optreg-sign is not installed")
    spec = tmp_path / "fast_lion.toml"
    spec.write_text('[optimizer]\ntype = "lion"\nlr = 3e-4\ncompile = true\n', encoding="utf-8")
    paths = candidates(optreg_registry, str(spec))
    assert [(c.name, c.path, c.default) for c in paths] == [
        ("lion (fast_lion.toml)", "eager", False), ("lion (fast_lion.toml)", "compiled", True)]
    assert all(c.spec.lr == 3e-4 for c in paths)  # the file's options are kept on every path


def test_installed_names_against_fused_adamw(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    registry = optreg.Registry()  # every installed plugin
    if "adamw" not in registry.names("optimizer"):
        pytest.skip("optreg-adam is not installed")
    monkeypatch.setattr(optreg.registry, "_default_registry", registry)
    out = _run_json(["adamw", "sgd"], capsys)
    assert out["numel"] == NUMEL and out["param_bytes"] == PARAM_BYTES and out["tensors"] == 4
    assert out["params"] == LAYOUT and out["steps"] == 2
    base = out["baseline"]
    _check_row(base)
    # Fused AdamW: exp_avg and exp_avg_sq in fp32, and a 0-dim fp32 step per param.
    assert base["state_bytes"] == 2 * PARAM_BYTES + 4 * 4
    assert base["ratio"] == 1.0 and base["per_byte_ratio"] == 1.0
    rows = {row["type"]: row for row in out["results"]}
    # Eager paths only (see _eager_only); which paths a spec gets is checked through `candidates`.
    assert set(rows) == {"adamw", "sgd"}
    for row in out["results"]:
        _check_row(row)
    assert rows["adamw"]["state_bytes"] == base["state_bytes"]
    # the state comes from adamw's declared layout, which is what the optimizer then held
    assert rows["adamw"]["state_source"] == "declared"
    assert rows["adamw"]["measured_state_bytes"] == rows["adamw"]["state_bytes"]
    assert rows["sgd"]["state_bytes"] == 0  # no momentum by default: params r/w and grads r only
    assert rows["sgd"]["bytes_touched"] == 3 * PARAM_BYTES


@pytest.fixture(autouse=True)
def _eager_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling costs seconds per optimizer: the command-line tests time eager paths only."""
    import optreg_train.bench as bench_module

    real = bench_module.candidates
    monkeypatch.setattr(bench_module, "candidates", lambda reg, name, compile=True: real(reg, name, compile=False))


def test_a_third_party_name_is_benched(toy_registry: optreg.Registry, capsys: pytest.CaptureFixture[str]) -> None:
    (row,) = _run_json(["toy_heavy_ball"], capsys)["results"]
    _check_row(row)
    assert row["type"] == "toy_heavy_ball" and row["path"] == "eager" and row["default"]
    assert row["state_bytes"] == PARAM_BYTES  # one fp32 buffer per param, as measured from state_dict()
    assert row["state_source"] == "measured"  # the toy declares no state layout

    result = bench(["toy_heavy_ball"], params=LAYOUT, steps=1, registry=toy_registry)
    assert result.results[0].state_bytes == PARAM_BYTES


def test_a_spec_file_is_timed_with_its_options(toy_registry: optreg.Registry, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "sgd_momentum.toml"
    spec.write_text('[optimizer]\ntype = "sgd"\nlr = 0.1\nmomentum = 0.9\n', encoding="utf-8")
    (row,) = _run_json([str(spec)], capsys)["results"]
    _check_row(row)
    assert row["name"] == "sgd (sgd_momentum.toml)" and row["state_bytes"] == PARAM_BYTES


def test_table_output(toy_registry: optreg.Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "toy_heavy_ball", "--params", LAYOUT, "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch AdamW" in out and "toy_heavy_ball" in out and "per byte" in out and "first step ms" in out
    assert "no compile option" in out


def test_unknown_name_is_a_clear_error(toy_registry: optreg.Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sgd", "toy_heavy_bal", "--params", LAYOUT]) == 2
    captured = capsys.readouterr()
    assert "unknown optimizer type 'toy_heavy_bal'" in captured.err and "did you mean 'toy_heavy_ball'" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # checked before anything is timed


@pytest.mark.parametrize(("argv", "message"), [
    (["--params", "10x"], "--params: cannot read"),
    (["--size", "0"], "--size must be > 0"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bad_options_are_clear_errors(argv: list[str], message: str, toy_registry: optreg.Registry,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sgd", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_failing_optimizer_is_its_own_row(toy_registry: optreg.Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "toy_broken", "sgd", "--params", LAYOUT, "--steps", "1", "--json"]) == 1
    captured = capsys.readouterr()
    rows = {row["type"]: row for row in json.loads(captured.out)["results"]}
    assert rows["toy_broken"]["error"] == "RuntimeError: this optimizer cannot step"
    _check_row(rows["sgd"])
    assert "bench toy_broken (eager): RuntimeError: this optimizer cannot step" in captured.err


def test_help_says_what_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("torch.optim.AdamW(fused=True)", "first step", "median", "2 x param bytes",
                   "2 x state bytes", "state_dict()", "peak", "profiler", "--params", "--size", "--json"):
        assert phrase in text, phrase
