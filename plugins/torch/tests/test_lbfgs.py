"""L-BFGS: the closure contract, convergence on a least-squares problem, and what the kit skips for it."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import optreg
from optreg.testing import assert_state_equal


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = x @ torch.randn(5, 2, generator=g) + 0.5
    torch.manual_seed(0)
    return nn.Linear(5, 2), x, y


def _closure(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    return closure


def test_step_needs_a_closure() -> None:
    model, x, y = _problem()
    optimizer = optreg.build_optimizer({"type": "lbfgs"}, model)
    ((model(x) - y) ** 2).mean().backward()
    with pytest.raises(TypeError):  # torch's LBFGS calls the closure: None is not callable
        optimizer.step()
    from optreg_torch.specs import LBFGSSpec

    assert LBFGSSpec().step_input() == "closure"  # what optreg train reads


def test_solves_least_squares_with_the_strong_wolfe_line_search() -> None:
    model, x, y = _problem()
    optimizer = optreg.build_optimizer({"type": "lbfgs", "line_search_fn": "strong_wolfe", "max_iter": 50}, model)
    closure = _closure(model, optimizer, x, y)
    first = float(optimizer.step(closure).detach())  # the loss before the step, as torch returns it
    assert float(closure().detach()) < 1e-10 < first


def test_resume_from_a_state_dict_equals_an_unbroken_run() -> None:
    """torch's L-BFGS keeps its history in the state of its first parameter; a checkpoint carries it."""
    spec = {"type": "lbfgs", "max_iter": 3, "history_size": 4, "lr": 0.5}
    model_a, x, y = _problem()
    opt_a = optreg.build_optimizer(spec, model_a)
    for _ in range(6):
        opt_a.step(_closure(model_a, opt_a, x, y))
    model_b, _, _ = _problem()
    opt_b = optreg.build_optimizer(spec, model_b)
    for _ in range(3):
        opt_b.step(_closure(model_b, opt_b, x, y))
    buffer = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optimizer": opt_b.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model_c, _, _ = _problem()
    opt_c = optreg.build_optimizer(spec, model_c)
    model_c.load_state_dict(saved["model"])
    opt_c.load_state_dict(saved["optimizer"])
    for _ in range(3):
        opt_c.step(_closure(model_c, opt_c, x, y))
    for a, c in zip(model_a.parameters(), model_c.parameters()):
        assert torch.equal(a, c)
    assert_state_equal(opt_a.state_dict()["state"], opt_c.state_dict()["state"])


def test_one_param_group_even_with_biases_and_norms() -> None:
    """No weight decay option, so optreg's no-decay split does not apply: one group, as torch's LBFGS needs."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    optimizer = optreg.build_optimizer({"type": "lbfgs"}, model)
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))
