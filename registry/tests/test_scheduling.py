"""The LRScheduler wrapper: stateless schedules, units, resume, tensor LRs, per-group initial LR."""

from __future__ import annotations

import io
from typing import ClassVar

import attrs
import pytest
import torch
from torch import nn

import optreg
from optreg import SchedulerSpec, SpecError
from optreg.scheduling import ScheduledLR


@attrs.frozen(kw_only=True)
class LinearDecay(SchedulerSpec):
    """Linear decay from the initial LR to zero at t_max (a test schedule)."""

    TYPE: ClassVar[str] = "linear_decay_test"

    def needs_t_max(self) -> bool:
        return True

    def get_lr(self, initial_lr, current, t_max):
        return initial_lr * max(0.0, 1.0 - current / t_max)


def optimizer(*lrs):
    return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def test_each_group_follows_its_own_initial_lr():
    opt = optimizer(1.0, 0.1)
    sched = ScheduledLR(opt, LinearDecay(), t_max=10)
    for _ in range(4):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.6, 0.06])
    assert sched.get_last_lr() == pytest.approx([0.6, 0.06])
    assert sched.lr_at(10) == [0.0, 0.0]


def test_t_max_from_spec_wins_and_missing_t_max_is_a_spec_error():
    sched = ScheduledLR(optimizer(1.0), LinearDecay(t_max=4), t_max=100)
    assert sched.t_max == 4
    with pytest.raises(SpecError, match="needs t_max"):
        ScheduledLR(optimizer(1.0), LinearDecay())


def test_tokens_units():
    opt = optimizer(1.0)
    sched = ScheduledLR(opt, LinearDecay(units="tokens"), t_max=1000)
    opt.step()
    sched.step(tokens=250)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.75)
    with pytest.raises(TypeError, match="counts tokens"):
        sched.step()
    steps = ScheduledLR(optimizer(1.0), LinearDecay(), t_max=10)
    with pytest.raises(TypeError, match="counts steps"):
        steps.step(tokens=3)


@pytest.mark.parametrize("scheduler_first", [True, False])
def test_resume_in_either_order_gives_the_unbroken_sequence(scheduler_first):
    def run(opt, sched, n):
        out = []
        for _ in range(n):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.step()
        return out

    opt = optimizer(1.0, 0.5)
    unbroken = run(opt, ScheduledLR(opt, LinearDecay(), t_max=20), 20)
    opt = optimizer(1.0, 0.5)
    sched = ScheduledLR(opt, LinearDecay(), t_max=20)
    head = run(opt, sched, 7)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    opt = optimizer(1.0, 0.5)
    if scheduler_first:
        sched = ScheduledLR(opt, LinearDecay(), t_max=20)
        opt.load_state_dict(ckpt["opt"])
    else:
        opt.load_state_dict(ckpt["opt"])
        sched = ScheduledLR(opt, LinearDecay(), t_max=20)
    sched.load_state_dict(ckpt["sched"])
    assert head + run(opt, sched, 13) == unbroken
    assert [g["initial_lr"] for g in opt.param_groups] == [1.0, 0.5]


def test_state_of_another_schedule_is_refused():
    a = ScheduledLR(optimizer(1.0), LinearDecay(), t_max=5)
    b = ScheduledLR(optimizer(1.0), optreg.get_registry().scheduler_spec({"type": "constant"}), t_max=5)
    with pytest.raises(ValueError, match="checkpoint holds the state of schedule"):
        b.load_state_dict(a.state_dict())


def test_tensor_lr_is_filled_in_place():
    lr = torch.tensor(1.0)
    opt = optimizer(lr)
    sched = ScheduledLR(opt, LinearDecay(), t_max=4)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.75)


def test_build_scheduler_from_a_dict_and_a_run_spec():
    opt = optimizer(0.3)
    sched = optreg.build_scheduler({"type": "constant"}, opt, t_max=5)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.3
    with pytest.raises(SpecError) as info:
        optreg.build_scheduler({"type": "constant", "t_max": 0}, opt)
    assert info.value.path == "$.t_max"


class _ScaleFreeSGD(torch.optim.SGD):
    schedule_warning = "its trajectory does not depend on the LR's scale"


class _Wrapper(torch.optim.SGD):
    def __init__(self, inner):
        super().__init__(inner.param_groups[0]["params"], lr=0.1)
        self.inner = inner


def test_a_varying_schedule_on_an_optimizer_that_ignores_it_warns_and_a_constant_one_does_not():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.warns(UserWarning, match=r"schedule 'linear_decay_test' drives _ScaleFreeSGD: its trajectory does not"):
        ScheduledLR(_ScaleFreeSGD(params, lr=0.1), LinearDecay(), t_max=10)
    with pytest.warns(UserWarning, match="does not depend on the LR's scale"):  # found through a wrapper's inner
        ScheduledLR(_Wrapper(_ScaleFreeSGD(params, lr=0.1)), LinearDecay(), t_max=10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScheduledLR(_ScaleFreeSGD(params, lr=0.1), optreg.get_registry().scheduler_spec({"type": "constant"}))
        ScheduledLR(torch.optim.SGD(params, lr=0.1), LinearDecay(), t_max=10)
