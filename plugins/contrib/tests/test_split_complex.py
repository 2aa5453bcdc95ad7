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


def test_around_galore_the_checkpoint_holds_the_innermost_state_and_resumes() -> None:
    """split_complex around galore around adamw: adamw's moments live in split_complex's state dict (they were
    written to galore's state as it was before split_complex relinked it, so a checkpoint lost them), and the
    state the declared layout estimates is the state held."""
    from optreg.memory import estimate_state, measured_state_bytes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight.data = torch.randn(8, 6, dtype=torch.complex64)
    complex_weight = model[0].weight
    target = torch.randn(4, 2)

    def run(opt, steps):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
            hidden = torch.view_as_real(x.to(torch.complex64) @ complex_weight.t()).sum(-1)
            ((model[1](hidden + model[0].bias) - target) ** 2).sum().backward()
            opt.step()

    spec = optreg.get_registry().optimizer_spec(
        {"type": "split_complex", "inner": {"type": "galore", "rank": 2, "inner": {"type": "adamw", "lr": 0.01}}}
    )
    optimizer = spec.build(model)
    run(optimizer, 2)
    held = optimizer.state_dict()["state"]
    assert all({"exp_avg", "exp_avg_sq", "step"} <= set(entry) for entry in held.values()), held
    assert measured_state_bytes(optimizer) == estimate_state(spec, model).total_bytes
    saved = copy.deepcopy(optimizer.state_dict())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run(optimizer, 2)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    again = spec.build(model)
    again.load_state_dict(saved)
    run(again, 2)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), after[n]), n
