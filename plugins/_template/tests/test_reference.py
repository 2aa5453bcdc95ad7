"""Parity with a reference: torch.optim.SGD (no weight decay) and the paper's update written out."""

import pytest
import torch

import optreg


def _problem(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(3, generator=g))]


def _grads(step: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) for p in params]


def _run(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int = 6) -> None:
    for step in range(steps):
        for p, grad in zip(params, _grads(step, params)):
            p.grad = grad.clone()
        optimizer.step()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_torch_sgd_without_weight_decay(foreach: bool, nesterov: bool) -> None:
    ours, ref = _problem(), _problem()
    spec = {"type": "myfamily_sgdw", "lr": 0.1, "momentum": 0.9, "nesterov": nesterov, "foreach": foreach}
    _run(optreg.build_optimizer(spec, ours), ours)
    _run(torch.optim.SGD(ref, lr=0.1, momentum=0.9, nesterov=nesterov, foreach=foreach), ref)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("foreach", [False, True])
def test_decoupled_weight_decay_follows_the_paper(foreach: bool) -> None:
    lr, momentum, wd = 0.05, 0.8, 0.1
    params = _problem()
    spec = {"type": "myfamily_sgdw", "lr": lr, "momentum": momentum, "weight_decay": wd, "foreach": foreach}
    # The rule decays every tensor; optreg's default no_decay spares 1-D ones (biases, norms) even unnamed.
    spec["no_decay"] = []
    _run(optreg.build_optimizer(spec, params), params)
    expected = [p.detach().clone() for p in _problem()]
    bufs = [torch.zeros_like(p) for p in expected]
    for step in range(6):
        for p, buf, g in zip(expected, bufs, _grads(step, expected)):
            p.mul_(1 - lr * wd)  # decay is applied to p directly, never through the gradient
            buf.mul_(momentum).add_(g)
            p.sub_(lr * buf)
    for got, want in zip(params, expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-7)


def test_maximize_climbs() -> None:
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = optreg.build_optimizer({"type": "myfamily_sgdw", "lr": 0.1, "momentum": 0.0, "maximize": True}, [param])
    param.grad = torch.ones(())
    optimizer.step()
    assert param.item() == pytest.approx(0.1)


def test_schedule_drives_the_optimizer() -> None:
    params = _problem()
    optimizer = optreg.build_optimizer({"type": "myfamily_sgdw", "lr": 1.0}, params)
    scheduler = optreg.build_scheduler({"type": "myfamily_linear", "warmup": 2}, optimizer, t_max=4)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
