"""Sophia-H against its rule written out (Hutchinson's estimate from the full Hessian matrix, an independent
path), the estimate on a diagonal quadratic, pytorch-optimizer's SophiaH (gamma = 1), and
the graph contract."""

from __future__ import annotations

import pytest
import torch
from optreg_contrib.optim._noise import noise_like
from torch import nn
from torch.func import functional_call, grad

import optreg
from optreg.testing.parity import batches, small_model

LR, BETAS, RHO, GAMMA, EPS, WD, K = 0.02, (0.9, 0.95), 0.5, 0.05, 1e-12, 0.01, 3


def _closure(model, optimizer, x, y):
    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_matches_the_rule_written_out(distribution: str) -> None:
    data = batches(10)
    model = small_model()
    spec = {"type": "sophia", "lr": LR, "betas": list(BETAS), "rho": RHO, "gamma": GAMMA, "eps": EPS,
            "weight_decay": WD, "update_interval": K, "distribution": distribution, "seed": 5, "no_decay": []}
    optimizer = optreg.build_optimizer(spec, model)
    for x, y in data:
        optimizer.step(_closure(model, optimizer, x, y))

    ref = small_model()
    names = [n for n, _ in ref.named_parameters()]
    params = {n: p.detach().clone() for n, p in ref.named_parameters()}
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    h = {n: torch.zeros_like(p) for n, p in params.items()}
    for t, (x, y) in enumerate(data, start=1):
        def loss_of(ps, x=x, y=y):
            return nn.functional.mse_loss(functional_call(ref, ps, (x,)), y)

        g = grad(loss_of)(params)
        for n in names:
            m[n] = BETAS[0] * m[n] + (1 - BETAS[0]) * g[n]
        if t % K == 1:
            u = {n: noise_like(params[n], 5, t, i, kind=distribution) for i, n in enumerate(names)}
            shapes = [params[n].shape for n in names]
            sizes = [params[n].numel() for n in names]

            def flat_loss(v, loss_of=loss_of, shapes=shapes, sizes=sizes):
                return loss_of({n: c.reshape(s) for n, c, s in zip(names, v.split(sizes), shapes)})

            hessian = torch.autograd.functional.hessian(flat_loss, torch.cat([params[n].reshape(-1) for n in names]))
            hu = (hessian @ torch.cat([u[n].reshape(-1) for n in names])).split(sizes)  # H u from the whole H
            for n, hu_n, shape in zip(names, hu, shapes):
                h[n] = BETAS[1] * h[n] + (1 - BETAS[1]) * u[n] * hu_n.reshape(shape)
        for n in names:
            p = params[n] * (1 - LR * WD)
            params[n] = p - LR * torch.clamp(m[n] / torch.clamp(GAMMA * h[n], min=EPS), -RHO, RHO)
    for n, p in model.named_parameters():
        # another code path (double backward vs jvp of grad, ops in another order): float32 rounding only
        torch.testing.assert_close(p.detach(), params[n], rtol=1e-5, atol=1e-6)


def test_the_estimate_is_exact_on_a_diagonal_quadratic() -> None:
    a = torch.tensor([0.5, 2.0, 8.0, 1.0])
    x = nn.Parameter(torch.ones(4))
    optimizer = optreg.build_optimizer({"type": "sophia", "lr": 0.0, "betas": [0.9, 0.0], "weight_decay": 0.0,
                                        "distribution": "rademacher"}, [x])

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = 0.5 * (a * x**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    # u * (H u) = a * u^2 = a for u = +-1: beta2 = 0 keeps the estimate itself
    assert torch.equal(optimizer.state[x]["hessian"], a)


def test_matches_pytorch_optimizer_sophiah_with_gamma_one() -> None:
    po = pytest.importorskip("pytorch_optimizer")
    a = torch.logspace(-1, 1, 12).reshape(3, 4)
    target = torch.linspace(-1, 1, 12).reshape(3, 4)

    def run(make, closure_of):
        x = nn.Parameter(torch.zeros(3, 4))
        opt = make([x])
        for _ in range(25):
            opt.step(closure_of(opt, x))
        return x.detach()

    def ours_closure(opt, x):
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * (a * (x - target) ** 2).sum()
            loss.backward()
            return loss

        return closure

    def theirs_closure(opt, x):
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * (a * (x - target) ** 2).sum()
            loss.backward(create_graph=True)
            return loss

        return closure

    # a diagonal Hessian and Rademacher probes: both estimates are exactly a, whatever noise each draws
    ours = run(lambda ps: optreg.build_optimizer(
        {"type": "sophia", "lr": 0.05, "betas": [0.96, 0.99], "gamma": 1.0, "rho": 0.04, "eps": 1e-12,
         "weight_decay": 0.0, "update_interval": 4, "distribution": "rademacher"}, ps), ours_closure)
    theirs = run(lambda ps: po.SophiaH(ps, lr=0.05, betas=(0.96, 0.99), p=0.04, eps=1e-12, weight_decay=0.0,
                                       update_period=4, hessian_distribution="rademacher"), theirs_closure)
    # theirs takes EMAs with lerp_, ours with mul_/add_: float32 rounding only
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_graph_contract() -> None:
    data = batches(2)
    model = small_model()
    optimizer = optreg.build_optimizer({"type": "sophia"}, model)
    (x, y) = data[0]
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="carry no graph"):
        optimizer.step()
    # the caller's own create_graph backward equals the closure path exactly
    twin = small_model()
    twin_opt = optreg.build_optimizer({"type": "sophia"}, twin)
    optimizer = optreg.build_optimizer({"type": "sophia"}, model := small_model())
    for x, y in data:
        optimizer.step(_closure(model, optimizer, x, y))
        twin_opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(twin(x), y).backward(create_graph=True)
        twin_opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
        assert a.grad is not None and a.grad.grad_fn is None  # detached after the step: the graph is freed
    with pytest.raises(TypeError, match="complex"):
        optreg.build_optimizer({"type": "sophia"}, [nn.Parameter(torch.zeros(2, dtype=torch.complex64))])
