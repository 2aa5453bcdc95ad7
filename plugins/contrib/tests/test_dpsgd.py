"""DP-SGD: per-sample gradients against a per-example loop, the rule written out (clip, noise, momentum),
the clipping bound, seeds and resume, descent, and the contract's errors (what the kit cannot drive)."""

from __future__ import annotations

import copy

import pytest
import torch
from optreg_contrib import per_sample_grads
from optreg_contrib.optim._noise import noise_like
from torch import nn

import optreg


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), y)


def _batch(step: int, size: int = 12):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(size, 5, generator=g)
    return x, torch.sin(x[:, :2] * 2) + 0.1 * torch.randn(size, 2, generator=g)


def _step(model, optimizer, step):
    x, y = _batch(step)
    return optimizer.step(lambda: per_sample_grads(model, _loss, x, y))


def test_per_sample_grads_equal_a_loop_over_examples() -> None:
    model = _model()
    x, y = _batch(0)
    loss = per_sample_grads(model, _loss, x, y)
    torch.testing.assert_close(loss, _loss(model, x, y).detach(), rtol=1e-6, atol=1e-7)
    for i in range(x.shape[0]):
        model.zero_grad()
        _loss(model, x[i:i + 1], y[i:i + 1]).backward()
        for p in model.parameters():
            torch.testing.assert_close(p.grad_sample[i], p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_matches_the_rule_written_out(momentum: float, nesterov: bool) -> None:
    lr, clip, sigma, seed = 0.1, 0.5, 0.7, 11
    model = _model()
    spec = {"type": "dpsgd", "lr": lr, "l2_norm_clip": clip, "noise_multiplier": sigma, "momentum": momentum,
            "nesterov": nesterov, "seed": seed}
    optimizer = optreg.build_optimizer(spec, model)
    ref = _model()
    bufs = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    for step in range(8):
        _step(model, optimizer, step)
        x, y = _batch(step)
        per_example = []  # per-example gradients by a loop (not torch.func)
        for i in range(x.shape[0]):
            ref.zero_grad()
            _loss(ref, x[i:i + 1], y[i:i + 1]).backward()
            per_example.append({n: p.grad.clone() for n, p in ref.named_parameters()})
        with torch.no_grad():
            for j, (n, p) in enumerate(ref.named_parameters()):
                total = torch.zeros_like(p)
                for g in per_example:
                    norm = torch.sqrt(sum((gi**2).sum() for gi in g.values()))
                    total += g[n] * min(1.0, clip / float(norm))  # clip each example's whole gradient
                noisy = (total + sigma * clip * noise_like(p, seed, step + 1, j)) / x.shape[0]
                if momentum:
                    bufs[n] = momentum * bufs[n] + noisy
                    noisy = noisy + momentum * bufs[n] if nesterov else bufs[n]
                p.sub_(lr * noisy)
    for (n, a), b in zip(model.named_parameters(), ref.parameters()):
        # torch.func vs a loop for the per-example gradients, another summation order: float32 rounding
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6, msg=n)


def test_clipping_bounds_the_update_without_noise() -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    lr, clip = 1.0, 1e-3
    optimizer = optreg.build_optimizer({"type": "dpsgd", "lr": lr, "l2_norm_clip": clip, "noise_multiplier": 0.0},
                                       model)
    _step(model, optimizer, 0)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(moved) <= lr * clip * (1 + 1e-5)  # the mean of vectors of norm <= clip


def test_a_seed_reproduces_the_noise_an_unset_one_does_not_and_a_checkpoint_resumes() -> None:
    runs = []
    for seed in (3, 3, 4, None, None):
        model = _model()
        optimizer = optreg.build_optimizer({"type": "dpsgd", "seed": seed} if seed is not None else {"type": "dpsgd"},
                                           model)
        for step in range(3):
            _step(model, optimizer, step)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]) and not torch.equal(runs[3], runs[4])

    model = _model()
    spec = {"type": "dpsgd", "momentum": 0.5}  # a secret seed: kept in the checkpoint's param groups
    optimizer = optreg.build_optimizer(spec, model)
    for step in range(2):
        _step(model, optimizer, step)
    saved = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    for step in range(2, 5):
        _step(model, optimizer, step)
    resumed = _model(seed=9)
    resumed.load_state_dict(saved["model"])
    again = optreg.build_optimizer(spec, resumed)
    again.load_state_dict(saved["optimizer"])
    for step in range(2, 5):
        _step(resumed, again, step)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_descends_and_frozen_or_unused_params_do_not_move() -> None:
    model = _model()
    model[1].weight.requires_grad_(False)
    frozen = model[1].weight.detach().clone()
    optimizer = optreg.build_optimizer({"type": "dpsgd", "lr": 0.5, "l2_norm_clip": 1.0, "noise_multiplier": 0.3,
                                        "momentum": 0.9, "seed": 0}, model)
    x, y = _batch(0, 256)
    start = float(_loss(model, x, y).detach())
    for step in range(60):
        _step(model, optimizer, step)
    assert float(_loss(model, x, y).detach()) < 0.8 * start  # noisy clipped steps (sigma 0.3, 12 examples a batch)
    assert torch.equal(model[1].weight, frozen)
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())  # cleared by the step


def test_the_contract_errors() -> None:
    model = _model()
    optimizer = optreg.build_optimizer({"type": "dpsgd"}, model)
    x, y = _batch(0)
    _loss(model, x, y).backward()
    with pytest.raises(RuntimeError, match="grad_sample"):
        optimizer.step()
    optimizer.zero_grad()
    per_sample_grads(model, _loss, x, y)
    model[0].weight.grad_sample = model[0].weight.grad_sample[:3]
    with pytest.raises(ValueError, match="same number of examples"):
        optimizer.step()
    with pytest.raises(TypeError, match="complex"):
        optreg.build_optimizer({"type": "dpsgd"}, [nn.Parameter(torch.zeros(2, dtype=torch.complex64))])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_estimate_equals_the_state_after_a_step(momentum: float, dtype: torch.dtype) -> None:
    from optreg.memory import estimate_state, measured_state_bytes

    model = _model().to(dtype)
    spec = optreg.get_registry().optimizer_spec({"type": "dpsgd", "momentum": momentum, "seed": 0})
    estimate = estimate_state(spec, model)
    optimizer = spec.build(model)
    x, y = _batch(0)
    optimizer.step(lambda: per_sample_grads(model, _loss, x.to(dtype), y.to(dtype)))
    numel = sum(p.numel() for p in model.parameters())
    expected = 4 * len(list(model.parameters())) + (numel * dtype.itemsize if momentum else 0)
    assert estimate.complete
    assert estimate.total_bytes == estimate.first_step_bytes == measured_state_bytes(optimizer) == expected

