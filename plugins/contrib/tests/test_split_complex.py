"""split_complex: an optimizer on complex parameters equals the same optimizer on their view_as_real."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import optreg


@pytest.mark.parametrize("inner", [{"type": "adamw", "lr": 0.05, "weight_decay": 0.01},
                                   {"type": "lion", "lr": 0.01}, {"type": "madgrad", "lr": 0.02}])
def test_equals_stepping_view_as_real(inner: dict) -> None:
    g = torch.Generator().manual_seed(0)
    start = torch.randn(4, 3, 2, generator=g)
    target = torch.randn(4, 3, 2, generator=g)
    z = nn.Parameter(torch.view_as_complex(start.clone()))
    x = nn.Parameter(start.clone())
    split = optreg.build_optimizer({"type": "split_complex", "no_decay": [], "inner": inner}, [z])
    plain = optreg.build_optimizer({**inner, "no_decay": []}, [x])
    for _ in range(20):
        for opt, view in ((split, lambda: torch.view_as_real(z)), (plain, lambda: x)):
            opt.zero_grad(set_to_none=True)
            (((view() - target) ** 2) * torch.arange(1.0, 3.0)).sum().backward()
            opt.step()
    # the inner optimizer runs the same ops on the same real numbers: 0 difference
    assert torch.equal(torch.view_as_real(z.detach()), x.detach())
    assert z.dtype == torch.complex64
    # the state is the real view's, under the complex parameter
    state = split.state_dict()["state"][0]
    for key, value in plain.state_dict()["state"][0].items():
        assert torch.equal(state[key], value), key


def test_real_parameters_pass_through_and_a_checkpoint_resumes() -> None:
    torch.manual_seed(0)
    z = nn.Parameter(torch.randn(3, dtype=torch.complex64))
    w = nn.Parameter(torch.randn(3))

    def run(opt, steps):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            ((z.abs() ** 2).sum() + (w**2).sum()).backward()
            opt.step()

    spec = {"type": "split_complex", "inner": {"type": "adamw", "lr": 0.1}}
    optimizer = optreg.build_optimizer(spec, [z, w])
    run(optimizer, 2)
    saved = copy.deepcopy(optimizer.state_dict())  # torch's state_dict holds the live tensors
    z_saved, w_saved = z.detach().clone(), w.detach().clone()
    run(optimizer, 3)
    z_end, w_end = z.detach().clone(), w.detach().clone()
    with torch.no_grad():
        z.copy_(z_saved)
        w.copy_(w_saved)
    again = optreg.build_optimizer(spec, [z, w])
    again.load_state_dict(saved)
    run(again, 3)
    assert torch.equal(z, z_end) and torch.equal(w, w_end)
