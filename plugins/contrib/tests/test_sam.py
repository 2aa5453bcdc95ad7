"""SAM: around adamw it equals a hand-written two-pass loop (0 difference), ASAM follows its rule, and it
builds and steps around lion and muon; the closure contract and the properties the kit checks with
gradients in place (None / zero gradients, float64), with real closures here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optreg
from optreg.testing.parity import batches, small_model

STEPS = 20


def _closure(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


def _hand_written_sam(model: nn.Module, data, *, rho: float, adaptive: bool, eta: float, eps: float = 1e-12):
    """Foret et al.'s two-pass step written out, around optreg's adamw (lr 1e-2, weight decay 0.01 on all).

    The inner optimizer is the same class SAM wraps (its own parity with torch.optim.AdamW is optreg-adam's
    test, within float32 rounding), so every difference left would be SAM's."""
    params = list(model.parameters())
    inner = optreg.build_optimizer({"type": "adamw", "lr": 1e-2, "weight_decay": 0.01, "no_decay": []}, params)
    history = []
    for x, y in data:
        inner.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        with torch.no_grad():
            t = [(p.abs() + eta) if adaptive else None for p in params]
            scaled = [p.grad * ti if adaptive else p.grad for p, ti in zip(params, t)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
            scale = rho / (norm + eps)
            before = [p.detach().clone() for p in params]
            for p, g, ti in zip(params, scaled, t):
                p.add_((g * ti if adaptive else g) * scale)  # e = rho * T^2 g / (||T g|| + eps)
        inner.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()  # the gradient at p + e
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        inner.step()
        history.append([p.detach().clone() for p in params])
    return history


@pytest.mark.parametrize(("adaptive", "eta"), [(False, 0.01), (True, 0.0), (True, 0.01)])
def test_sam_around_adamw_equals_the_hand_written_two_pass_loop(adaptive: bool, eta: float) -> None:
    data = batches(STEPS)
    model = small_model()
    # no_decay = [] (groups are the wrapper's): one group, weight decay on every parameter, as in the loop
    spec = {"type": "sam", "rho": 0.05, "adaptive": adaptive, "eta": eta, "no_decay": [],
            "inner": {"type": "adamw", "lr": 1e-2, "weight_decay": 0.01}}
    optimizer = optreg.build_optimizer(spec, model)
    ours = []
    for x, y in data:
        optimizer.step(_closure(model, optimizer, x, y))
        ours.append([p.detach().clone() for p in model.parameters()])
    reference = _hand_written_sam(small_model(), data, rho=0.05, adaptive=adaptive, eta=eta)
    for step, (a, b) in enumerate(zip(ours, reference)):
        for i, (pa, pb) in enumerate(zip(a, b)):
            # the same torch ops in the same order (optreg's adamw per-tensor path is torch's AdamW arithmetic)
            difference = (pa - pb).abs().max().item()
            assert difference == 0.0, f"step {step} param {i}: max |difference| {difference:.3g}"


@pytest.mark.parametrize("inner", [{"type": "lion", "lr": 1e-3}, {"type": "muon", "lr": 0.02}])
def test_sam_builds_and_steps_around_lion_and_muon(inner: dict) -> None:
    data = batches(30)
    model = small_model()
    optimizer = optreg.build_optimizer({"type": "sam", "inner": inner}, model)
    losses = [float(optimizer.step(_closure(model, optimizer, x, y)).detach()) for x, y in data]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(losses[-5:]) < sum(losses[:5]), losses


def test_the_closure_runs_twice_and_the_step_returns_the_first_loss() -> None:
    model = small_model()
    optimizer = optreg.build_optimizer({"type": "sam", "rho": 0.5, "inner": {"type": "sgd", "lr": 0.1}}, model)
    (x, y), = batches(1)
    seen = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        seen.append(loss.detach())
        return loss

    returned = optimizer.step(closure)
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])  # at p, then at the perturbed p + e
    assert torch.equal(returned.detach(), seen[0])


def test_the_contract_errors_and_a_failed_second_pass_restores_the_params() -> None:
    model = small_model()
    optimizer = optreg.build_optimizer({"type": "sam", "inner": {"type": "sgd", "lr": 0.1}}, model)
    (x, y), = batches(1)
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="needs step\\(closure\\)"):
        optimizer.step()
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.mse_loss(model(x), y).detach()
    with pytest.raises(RuntimeError, match="left no gradients in its second pass"):
        optimizer.step(lambda: loss)  # the gradients are in place but the closure does not recompute them
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for p in model.parameters():  # zero gradients: e = 0, the step is the inner step (DCP's state priming)
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_none_and_zero_gradients_with_real_closures() -> None:
    torch.manual_seed(0)
    used, unused = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))
    empty, frozen = nn.Parameter(torch.zeros(0, 2)), nn.Parameter(torch.randn(2), requires_grad=False)
    optimizer = optreg.build_optimizer({"type": "sam", "inner": {"type": "adamw", "lr": 0.1}},
                                       [used, unused, empty, frozen])
    kept = [unused.detach().clone(), frozen.detach().clone()]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = ((used - 1) ** 2).sum() + (frozen * used[0, :2]).sum() + empty.sum()
        loss.backward()
        return loss

    start = used.detach().clone()
    for _ in range(3):
        optimizer.step(closure)
    assert torch.equal(unused, kept[0]) and torch.equal(frozen, kept[1]) and unused.grad is None
    assert not torch.equal(used, start)

    flat = nn.Parameter(torch.randn(5))
    still = optreg.build_optimizer({"type": "sam", "inner": {"type": "adamw", "lr": 0.1, "weight_decay": 0.0}}, [flat])
    before = flat.detach().clone()

    def zero_closure() -> torch.Tensor:
        still.zero_grad(set_to_none=True)
        loss = (flat * 0).sum()
        loss.backward()
        return loss

    for _ in range(3):
        still.step(zero_closure)
    assert torch.equal(flat, before)


def test_float64_stays_float64() -> None:
    model = small_model().double()
    optimizer = optreg.build_optimizer({"type": "sam", "adaptive": True, "inner": {"type": "adamw"}}, model)
    for x, y in batches(3):
        optimizer.step(_closure(model, optimizer, x.double(), y.double()))
    assert all(p.dtype == torch.float64 for p in model.parameters())
    for state in optimizer.state_dict()["state"].values():
        assert all(v.dtype == torch.float64 for k, v in state.items() if k != "step")
