"""Each schedule against torch's scheduler over a whole run: the LR of every group at every step (and the
momentum that one-cycle and cyclic set).

Where optreg computes with the same operations as torch's ``get_lr`` (one-cycle, cyclic, warm restarts:
torch evaluates those from the step count too) the LRs are equal to the bit. torch's step, multistep,
polynomial, cosine and linear schedulers instead multiply each group's LR by a factor every step (a
recursion whose rounding accumulates): there optreg's closed form is equal to the bit to torch's own
closed form (``_get_closed_form_lr``, what torch computes when given the epoch) and within 1e-12 relative
of torch's recursive run (1e-9 for the cosine and the linear ramp, whose recursive factors round more).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as L
from torch_reference import optimizer_pair, run

import optreg

LRS = [0.5, 0.05]  # two groups: each schedule scales each group's own initial LR

# name: (optreg spec, torch factory, steps, t_max, exact, rel)
CASES = {
    "step": ({"type": "step", "step_size": 7, "gamma": 0.7}, lambda o: L.StepLR(o, 7, gamma=0.7), 60, None, False,
             1e-12),
    "multistep": ({"type": "multistep", "milestones": [5, 20, 21, 40], "gamma": 0.3},
                  lambda o: L.MultiStepLR(o, [5, 20, 21, 40], gamma=0.3), 60, None, False, 1e-12),
    "polynomial": ({"type": "polynomial", "power": 3.0}, lambda o: L.PolynomialLR(o, total_iters=40, power=3.0), 60,
                   40, False, 1e-12),
    "onecycle": ({"type": "onecycle"}, lambda o: L.OneCycleLR(o, max_lr=LRS, total_steps=80), 80, 80, True, 0.0),
    "onecycle-linear-3": ({"type": "onecycle", "anneal_strategy": "linear", "three_phase": True, "pct_start": 0.2,
                           "div_factor": 10.0, "final_div_factor": 100.0, "base_momentum": 0.8,
                           "max_momentum": 0.9},
                          lambda o: L.OneCycleLR(o, max_lr=LRS, total_steps=77, anneal_strategy="linear",
                                                 three_phase=True, pct_start=0.2, div_factor=10.0,
                                                 final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
                          77, 77, True, 0.0),
    "cyclic": ({"type": "cyclic", "base_lr": 0.01, "step_size_up": 6, "step_size_down": 9},
               lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=LRS, step_size_up=6, step_size_down=9), 70, None, True,
               0.0),
    "cyclic-triangular2": ({"type": "cyclic", "base_lr": 0.001, "step_size_up": 5, "mode": "triangular2"},
                           lambda o: L.CyclicLR(o, base_lr=0.001, max_lr=LRS, step_size_up=5, mode="triangular2"),
                           70, None, True, 0.0),
    "cyclic-exp_range": ({"type": "cyclic", "base_lr": 0.001, "step_size_up": 4, "mode": "exp_range",
                          "gamma": 0.97, "base_momentum": 0.7, "max_momentum": 0.95},
                         lambda o: L.CyclicLR(o, base_lr=0.001, max_lr=LRS, step_size_up=4, mode="exp_range",
                                              gamma=0.97, base_momentum=0.7, max_momentum=0.95), 70, None, True, 0.0),
    "cosine_warm_restarts": ({"type": "cosine_warm_restarts", "t_0": 5, "t_mult": 3, "eta_min": 1e-3},
                             lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=3, eta_min=1e-3), 80, None,
                             True, 0.0),
    "cosine_warm_restarts-1": ({"type": "cosine_warm_restarts", "t_0": 9},
                               lambda o: L.CosineAnnealingWarmRestarts(o, T_0=9), 50, None, True, 0.0),
    "cosine": ({"type": "cosine", "eta_min": 1e-3}, lambda o: L.CosineAnnealingLR(o, T_max=50, eta_min=1e-3), 51,
               50, False, 1e-9),
    "linear": ({"type": "linear", "start_factor": 0.2, "end_factor": 0.9},
               lambda o: L.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=30), 50, 30, False, 1e-9),
}


def _optreg_run(spec: dict, make, steps: int, t_max: int | None, kind: str = "sgd"):
    theirs_opt, ours_opt = optimizer_pair(LRS, kind=kind)
    theirs = run(theirs_opt, make(theirs_opt), steps)
    ours = run(ours_opt, optreg.build_scheduler(spec, ours_opt, t_max=t_max), steps)
    return ours, theirs


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_torch_over_a_run(name: str) -> None:
    spec, make, steps, t_max, exact, rel = CASES[name]
    ours, theirs = _optreg_run(spec, make, steps, t_max)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for group, ((lr_a, m_a), (lr_b, m_b)) in enumerate(zip(a, b)):
            if exact:
                assert lr_a == lr_b, f"step {step} group {group}: LR {lr_a!r} != torch's {lr_b!r}"
                assert m_a == m_b, f"step {step} group {group}: momentum {m_a!r} != torch's {m_b!r}"
            else:
                assert math.isclose(lr_a, lr_b, rel_tol=rel, abs_tol=1e-15), f"step {step}, group {group}"
                assert m_a == m_b == 0.9, "a schedule without momentum cycling changed the momentum"


@pytest.mark.parametrize("name", ["step", "multistep", "polynomial", "cosine", "linear"])
def test_equals_torch_closed_form_to_the_bit(name: str) -> None:
    """torch's ``_get_closed_form_lr`` (the value for an explicit epoch) equals optreg's value exactly."""
    spec, make, steps, t_max, _, _ = CASES[name]
    optimizer, _ = optimizer_pair(LRS)
    scheduler = make(optimizer)
    if not hasattr(scheduler, "_get_closed_form_lr"):
        pytest.skip("this torch has no closed form for the scheduler")
    schedule = optreg.get_registry().scheduler_spec(spec)
    for step in range(steps if name != "cosine" else t_max + 1):
        scheduler.last_epoch = step
        expected = scheduler._get_closed_form_lr()
        got = [schedule.get_lr(lr, step, t_max) for lr in LRS]
        assert got == expected, f"step {step}: {got} != torch's closed form {expected}"


@pytest.mark.parametrize("name", ["onecycle", "cyclic-exp_range"])
def test_adam_beta1_is_cycled_as_torch_does(name: str) -> None:
    spec, make, steps, t_max, _, _ = CASES[name]
    ours, theirs = _optreg_run(spec, make, steps, t_max, kind="adam")
    assert ours == theirs
    assert len({m for trace in ours for _, m in trace}) > 5, "beta1 did not move"


def test_cycling_an_optimizer_without_momentum_is_refused_clearly() -> None:
    optimizer, _ = optimizer_pair(LRS, kind="adagrad")
    with pytest.raises(optreg.SpecError, match="set cycle_momentum = false") as info:
        optreg.build_scheduler({"type": "onecycle"}, optimizer, t_max=10)
    assert info.value.path == "$.cycle_momentum"
    torch_optimizer, _ = optimizer_pair(LRS, kind="adagrad")
    with pytest.raises(ValueError, match="momentum"):  # torch refuses it too
        L.OneCycleLR(torch_optimizer, max_lr=LRS, total_steps=10)
    ours, theirs = optimizer_pair(LRS, kind="adagrad")
    a = run(ours, optreg.build_scheduler({"type": "onecycle", "cycle_momentum": False}, ours, t_max=10), 10)
    b = run(theirs, L.OneCycleLR(theirs, max_lr=LRS, total_steps=10, cycle_momentum=False), 10)
    assert a == b


def test_momentum_resumes_with_the_lr() -> None:
    """The momentum is a function of `current` too: a restored scheduler sets it as an unbroken run does."""
    spec, _, _, t_max, _, _ = CASES["onecycle"]
    opt_a, opt_b = optimizer_pair(LRS)
    unbroken = run(opt_a, optreg.build_scheduler(spec, opt_a, t_max=t_max), 30)
    sched_b = optreg.build_scheduler(spec, opt_b, t_max=t_max)
    first = run(opt_b, sched_b, 17)
    state = {"optimizer": opt_b.state_dict(), "scheduler": sched_b.state_dict()}
    opt_c, _ = optimizer_pair(LRS)
    sched_c = optreg.build_scheduler(spec, opt_c, t_max=t_max)
    opt_c.load_state_dict(state["optimizer"])
    sched_c.load_state_dict(state["scheduler"])
    assert first + run(opt_c, sched_c, 13) == unbroken


def test_warm_restarts_in_tokens_restart_where_the_steps_do() -> None:
    ours_opt, theirs_opt = optimizer_pair(LRS)
    spec = {"type": "cosine_warm_restarts", "t_0": 5 * 64, "t_mult": 2, "units": "tokens"}
    ours = run(ours_opt, optreg.build_scheduler(spec, ours_opt), 60, tokens=64)
    theirs = run(theirs_opt, L.CosineAnnealingWarmRestarts(theirs_opt, T_0=5, T_mult=2), 60)
    assert ours == theirs


def test_a_schedule_drives_a_torch_optimizer_built_by_name() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = optreg.build_optimizer({"type": "rmsprop", "lr": 0.1, "momentum": 0.5}, model)
    scheduler = optreg.build_scheduler({"type": "onecycle", "pct_start": 0.5}, optimizer, t_max=4)
    seen = []
    for _ in range(4):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    assert seen[0] == (pytest.approx(0.1 / 25), 0.95) and seen[1][0] == pytest.approx(0.1) and seen[1][1] == 0.85
