"""RunSpec.build and the scheduler: t_max from the run, and errors with `$.scheduler...` paths."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
import torch
from support import RunTable

import optreg
from optreg import SchedulerSpec, SpecError


@attrs.frozen(kw_only=True)
class HorizonProbe(SchedulerSpec):
    """A schedule that records nothing and rejects runs shorter than `min_run`."""

    TYPE: ClassVar[str] = "horizon_probe"

    min_run: int = optreg.field(1, ge=1, doc="Shortest run accepted.")

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr if t_max is None else initial_lr * (1 - min(current, t_max) / (2 * t_max))

    def build(self, optimizer, *, t_max=None):
        if t_max is not None and t_max < self.min_run:
            raise SpecError(f"the run ({t_max}) is shorter than min_run ({self.min_run})", path="$.min_run")
        sched = super().build(optimizer, t_max=t_max)
        sched.probe_t_max = t_max
        return sched


class _Plugin:
    __name__ = "probe"

    @staticmethod
    @optreg.hookimpl
    def optreg_register_schedulers(register) -> None:
        register(HorizonProbe)

    @staticmethod
    @optreg.hookimpl
    def optreg_register_tables(register) -> None:
        register("run", RunTable)


@pytest.fixture
def registry() -> optreg.Registry:
    return optreg.Registry([_Plugin()], entry_points=False)


def _spec(registry: optreg.Registry, scheduler: str, steps: int = 50):
    text = f"""
schema_version = 1
[optimizer]
type = "sgd"
lr = 0.1
[scheduler]
{scheduler}
[run]
steps = {steps}
"""
    return registry.parse_spec(text, file="run.toml")


def test_scheduler_error_found_at_build_has_scheduler_path_and_file(registry):
    spec = _spec(registry, 'type = "horizon_probe"\nmin_run = 100', steps=50)
    with pytest.raises(SpecError) as info:
        spec.build(torch.nn.Linear(2, 2))
    assert info.value.path == "$.scheduler.min_run"
    assert info.value.file == "run.toml"
    assert "shorter than min_run" in str(info.value)


def test_steps_schedule_gets_train_steps_as_t_max(registry):
    built = _spec(registry, 'type = "horizon_probe"', steps=50).build(torch.nn.Linear(2, 2))
    assert built.scheduler.probe_t_max == 50
    assert built.scheduler.t_max == 50


def test_tokens_schedule_spans_the_token_budget_not_the_step_count(registry):
    # [run] steps counts optimizer steps; a schedule counting tokens spans the run's token budget instead.
    built = _spec(registry, 'type = "horizon_probe"\nunits = "tokens"', steps=50).build(torch.nn.Linear(2, 2))
    assert built.scheduler.probe_t_max == 50 * 64
    with_t_max = _spec(registry, 'type = "horizon_probe"\nunits = "tokens"\nt_max = 4096').build(torch.nn.Linear(2, 2))
    assert with_t_max.scheduler.t_max == 4096
    explicit = _spec(registry, 'type = "horizon_probe"\nunits = "tokens"').build(torch.nn.Linear(2, 2), t_max=8192)
    assert explicit.scheduler.probe_t_max == 8192
