"""Resume and tensor LRs with real optimizers built by optreg and by torch."""

from __future__ import annotations

import io
import math

import pytest
import torch

import optreg
from optreg.models import TinyMLP

WSD_TOKENS = {"type": "wsd", "units": "tokens", "warmup_fraction": 0.1, "decay_fraction": 0.3, "decay_shape": "sqrt",
              "decay_min_lr": 1e-5}
SPECS = [
    {"type": "cos_with_warmup", "warmup_steps": 5, "warmup_min_lr": 1e-4},
    WSD_TOKENS,
    {"type": "wsds", "period_lengths": [12, 12, 16], "warmup_steps": 3, "decay_fraction": 0.25,
     "period_lr_multipliers": [1.0, 0.7, 0.5]},
    {"type": "sequential", "durations": [15], "schedules": [{"type": "power_lr", "warmup_steps": 4},
                                                          {"type": "linear_with_warmup", "warmup_steps": 0}],
     "override_decay": {"start": 32, "duration": 5, "end_lr_fraction": 0.0, "shape": "cosine"}},
    {"type": "composable", "stages": [{"duration": 4, "start_lr": 0.0, "end_lr_fraction": 1.0},
                                      {"duration": 20, "end_lr_fraction": 1.0},
                                      {"duration": 10, "shape": "cosine", "end_lr_fraction": 0.1}],
     "override_decay": {"start": 30, "duration": 8, "end_lr": 0.0}},
]
TOKENS = [37, 64, 1, 128, 90]  # tokens per step, cycled: resume must not assume a fixed batch


def _model() -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP()


def _optimizer(model: TinyMLP) -> torch.optim.Optimizer:
    # Three groups with their own LRs: the default, the head (x0.1) and the no-decay group.
    spec = {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3,
            "group_overrides": [{"params": ["head.*"], "lr": 0.005}]}
    return optreg.build_optimizer(spec, model)


def _train(model, optimizer, scheduler, start: int, steps: int, tokens: bool) -> list[list[float]]:
    seen = []
    for step in range(start, start + steps):
        seen.append([float(g["lr"]) for g in optimizer.param_groups])
        for i, p in enumerate(model.parameters()):  # the LRs do not depend on the gradients
            p.grad = torch.full_like(p, 0.01 * (i + 1) * (-1) ** step)
        optimizer.step()
        scheduler.step(tokens=TOKENS[step % len(TOKENS)]) if tokens else scheduler.step()
    return seen


def _t_max(spec: dict) -> int:
    return 40 * 64 if spec.get("units") == "tokens" else 40


@pytest.mark.parametrize("spec", SPECS, ids=[s["type"] for s in SPECS])
@pytest.mark.parametrize("order", ["scheduler-first", "optimizer-first"])
def test_resume_at_any_step_gives_the_unbroken_lr_sequence(spec: dict, order: str) -> None:
    tokens = spec.get("units") == "tokens"
    total = 48
    model = _model()
    optimizer = _optimizer(model)
    unbroken = _train(model, optimizer, optreg.build_scheduler(spec, optimizer, t_max=_t_max(spec)), 0, total, tokens)
    initial_lrs = [g["initial_lr"] for g in optimizer.param_groups]
    assert sorted(set(initial_lrs)) == [0.005, 0.05] and len(initial_lrs) == 4  # (head or not) x (decay or not)
    for cut in (1, 17, 37):
        model = _model()
        optimizer = _optimizer(model)
        scheduler = optreg.build_scheduler(spec, optimizer, t_max=_t_max(spec))
        first = _train(model, optimizer, scheduler, 0, cut, tokens)
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, buffer)
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)

        model = _model()
        model.load_state_dict(checkpoint["model"])
        optimizer = _optimizer(model)
        if order == "scheduler-first":  # torch's advice: build the scheduler, then load both
            scheduler = optreg.build_scheduler(spec, optimizer, t_max=_t_max(spec))
            optimizer.load_state_dict(checkpoint["optimizer"])
        else:
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler = optreg.build_scheduler(spec, optimizer, t_max=_t_max(spec))
        scheduler.load_state_dict(checkpoint["scheduler"])
        assert [g["initial_lr"] for g in optimizer.param_groups] == initial_lrs
        second = _train(model, optimizer, scheduler, cut, total - cut, tokens)
        assert first + second == unbroken, f"cut at {cut}"


def test_scheduler_state_holds_no_lr_and_loads_into_a_run_with_new_lrs() -> None:
    # The checkpoint holds where the run is, not the LRs: a resumed run with a new peak LR follows the new peak.
    spec = {"type": "cos_with_warmup", "warmup_steps": 5}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    scheduler = optreg.build_scheduler(spec, optimizer, t_max=40)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    assert not any("lr" in key for key in state), state
    fresh = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.2)
    resumed = optreg.build_scheduler(spec, fresh, t_max=40)
    resumed.load_state_dict(state)
    schedule = optreg.get_registry().scheduler_spec(spec)
    assert fresh.param_groups[0]["lr"] == pytest.approx(schedule.get_lr(0.2, 12, 40))
    assert fresh.param_groups[0]["initial_lr"] == 0.2


def test_loading_a_checkpoint_of_another_schedule_is_refused() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    wsd = optreg.build_scheduler({"type": "wsd", "warmup_steps": 1, "decay_steps": 2}, optimizer, t_max=9)
    state = wsd.state_dict()
    other = optreg.build_scheduler({"type": "cos_with_warmup", "warmup_steps": 1}, optimizer, t_max=9)
    with pytest.raises(ValueError, match="'wsd'"):
        other.load_state_dict(state)


@pytest.mark.parametrize("spec", SPECS, ids=[s["type"] for s in SPECS])
def test_tensor_lr_is_filled_in_place_with_the_float_run_values(spec: dict) -> None:
    # A tensor LR (as compiled steps need) stays the same tensor: values change, the object does not.
    tokens = spec.get("units") == "tokens"
    lr_a = torch.tensor(0.01)
    lr_b = torch.tensor(0.002)
    params = [torch.nn.Parameter(torch.randn(3, 3)) for _ in range(2)]
    optimizer = torch.optim.AdamW([{"params": [params[0]], "lr": lr_a}, {"params": [params[1]], "lr": lr_b}],
                                  foreach=False)
    reference = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.randn(3, 3))], "lr": 0.01},
                                   {"params": [torch.nn.Parameter(torch.randn(3, 3))], "lr": 0.002}])
    scheduler = optreg.build_scheduler(spec, optimizer, t_max=_t_max(spec))
    ref_scheduler = optreg.build_scheduler(spec, reference, t_max=_t_max(spec))
    for step in range(45):
        assert optimizer.param_groups[0]["lr"] is lr_a and optimizer.param_groups[1]["lr"] is lr_b
        for group, ref in zip(optimizer.param_groups, reference.param_groups):
            assert math.isclose(float(group["lr"]), ref["lr"], rel_tol=1e-6, abs_tol=1e-12)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        reference.step()
        n = TOKENS[step % len(TOKENS)]
        for s in (scheduler, ref_scheduler):
            s.step(tokens=n) if tokens else s.step()
