"""MADGRAD against the authors' code transcribed as the rule (momentum, momentum 0, L2 and decoupled decay),
against pytorch-optimizer's MADGRAD, and the lr + eps quirk it keeps."""

from __future__ import annotations

import math

import pytest
import torch

import optreg
from optreg.testing.parity import assert_histories_close, batches, small_model, train


def _authors_rule(params, data_grads, *, lr, momentum, weight_decay, decouple, eps, steps):
    """facebookresearch/madgrad's step, written out (one global k, as every param has a gradient each step)."""
    params = [p.detach().clone() for p in params]
    v = [torch.zeros_like(p) for p in params]
    s = [torch.zeros_like(p) for p in params]
    x0 = [p.clone() for p in params]
    lr_ = lr + eps
    history = []
    for k in range(steps):
        lamb = lr_ * math.sqrt(k + 1)
        for i, g in enumerate(data_grads(k, params)):
            if weight_decay and not decouple:
                g = g + weight_decay * params[i]
            x0_i = params[i] + s[i] / (v[i] ** (1 / 3) + eps) if momentum == 0 else x0[i]
            v[i] = v[i] + lamb * g * g
            s[i] = s[i] + lamb * g
            z = x0_i - s[i] / (v[i] ** (1 / 3) + eps)
            old = params[i]
            params[i] = z if momentum == 0 else momentum * params[i] + (1 - momentum) * z
            if weight_decay and decouple:
                params[i] = params[i] - lr_ * weight_decay * old
        history.append([p.clone() for p in params])
    return history


@pytest.mark.parametrize(("momentum", "weight_decay", "decouple"),
                         [(0.9, 0.0, False), (0.0, 0.0, False), (0.9, 1e-2, False), (0.9, 1e-2, True),
                          (0.0, 1e-2, True)])
def test_matches_the_authors_rule(momentum: float, weight_decay: float, decouple: bool) -> None:
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 4, generator=g), torch.randn(4, generator=g)]
    targets = [torch.randn_like(p) for p in start]

    def grads(k, params):  # the gradient of sum(w * (p - target)^2) with a step-dependent weight
        w = 1.0 + 0.5 * math.sin(k)
        return [2 * w * (p - t) for p, t in zip(params, targets)]

    params = [torch.nn.Parameter(p.clone()) for p in start]
    spec = {"type": "madgrad", "lr": 0.05, "momentum": momentum, "weight_decay": weight_decay,
            "decouple_decay": decouple, "no_decay": []}
    optimizer = optreg.build_optimizer(spec, params)
    ours = []
    for k in range(20):
        for p, gr in zip(params, grads(k, [p.detach() for p in params])):
            p.grad = gr
        optimizer.step()
        ours.append([p.detach().clone() for p in params])
    rule = _authors_rule(start, grads, lr=0.05, momentum=momentum, weight_decay=weight_decay, decouple=decouple,
                         eps=1e-6, steps=20)
    # the rule in plain ops vs the in-place ops of the optimizer (lerp for the average): float32 rounding
    assert_histories_close(ours, rule, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_matches_pytorch_optimizer_madgrad(momentum: float) -> None:
    po = pytest.importorskip("pytorch_optimizer")
    data = batches(30)
    model = small_model()
    ours = train(model, optreg.build_optimizer(
        {"type": "madgrad", "lr": 0.01, "momentum": momentum, "weight_decay": 1e-3, "no_decay": []}, model), data)
    model = small_model()
    theirs = train(model, po.MADGRAD(model.parameters(), lr=0.01, momentum=momentum, weight_decay=1e-3), data)
    assert_histories_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_zero_lr_group_moves_by_the_authors_lr_plus_eps() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = optreg.build_optimizer({"type": "madgrad", "lr": 0.0, "momentum": 0.0}, [p])
    p.grad = torch.ones(3)
    optimizer.step()
    # lambda = eps, v = eps, s = eps: p = -eps / (eps^(1/3) + eps) ~ -eps^(2/3)
    expected = -1e-6 / (1e-6 ** (1 / 3) + 1e-6)
    torch.testing.assert_close(p.detach(), torch.full((3,), expected), rtol=1e-5, atol=0)
