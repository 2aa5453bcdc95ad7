"""GaLore against its rule written out (around adamw), the projection side by shape, and its optimizer
state in bytes against AdamW's on the same model (printed; docs/contrib.md quotes it)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import optreg

RANK, GAP, SCALE, LR, WD = 3, 4, 0.5, 1e-2, 0.01
BETAS, EPS = (0.9, 0.999), 1e-8


def _model() -> nn.Module:
    torch.manual_seed(0)
    # hidden: 12 x 10 (tall, projected from the right) and 6 x 12 (wide, from the left); head: not projected
    return nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 2))


def _data(steps: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 10, generator=g), torch.randn(16, 2, generator=g)) for _ in range(steps)]


def _train(model, optimizer, data):
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def _svd_projection(grad: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(grad, full_matrices=False)
    return vh[:RANK] if grad.shape[0] >= grad.shape[1] else u[:, :RANK]


def test_galore_adamw_follows_the_rule_written_out() -> None:
    data = _data(10)
    model = _model()
    spec = {"type": "galore", "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "no_decay": [],
            "roles": {"head": ["4.*"]}, "inner": {"type": "adamw", "lr": LR, "weight_decay": WD}}
    optimizer = optreg.build_optimizer(spec, model)
    _train(model, optimizer, data)

    ref = _model()
    params = list(ref.parameters())
    projected = {0, 2}  # the hidden matrices; the head (index 4) and the biases step as plain AdamW
    m = [None] * len(params)
    v = [None] * len(params)
    proj = [None] * len(params)
    for t, (x, y) in enumerate(data, start=1):
        for p in params:
            p.grad = None
        nn.functional.mse_loss(ref(x), y).backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                g = p.grad
                if i in projected:
                    if (t - 1) % GAP == 0:
                        proj[i] = _svd_projection(g)
                    g = g @ proj[i].T if p.shape[0] >= p.shape[1] else proj[i].T @ g
                if m[i] is None:
                    m[i], v[i] = torch.zeros_like(g), torch.zeros_like(g)
                m[i] = BETAS[0] * m[i] + (1 - BETAS[0]) * g
                v[i] = BETAS[1] * v[i] + (1 - BETAS[1]) * g * g
                step = -LR * (m[i] / (1 - BETAS[0] ** t)) / ((v[i] / (1 - BETAS[1] ** t)).sqrt() + EPS)
                p.mul_(1 - LR * WD)
                if i in projected:
                    step = SCALE * (step @ proj[i] if p.shape[0] >= p.shape[1] else proj[i] @ step)
                p.add_(step)
    for a, b in zip(model.parameters(), params):
        # the rule in plain tensor ops vs optreg's AdamW kernel: float32 rounding only (SVDs are the same op)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_the_projection_side_follows_the_shape() -> None:
    model = _model()
    optimizer = optreg.build_optimizer({"type": "galore", "rank": RANK, "roles": {"head": ["4.*"]}}, model)
    _train(model, optimizer, _data(1))
    shapes = {tuple(p.shape): tuple(optimizer.state[p]["exp_avg"].shape) for p in model.parameters()}
    assert shapes[(12, 10)] == (12, RANK)  # tall: G @ V_r^T
    assert shapes[(6, 12)] == (RANK, 12)  # wide: U_r^T @ G
    assert shapes[(2, 6)] == (2, 6)  # the head: full rank, plain AdamW
    assert optimizer.state[model[0].weight]["galore_projection"].shape == (RANK, 10)
    assert optimizer.state[model[2].weight]["galore_projection"].shape == (6, RANK)


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in optimizer.state_dict()["state"].values()
               for v in s.values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("rank", [16, 64])
def test_optimizer_state_bytes_against_adamw(rank: int) -> None:
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 256))

    x = torch.randn(8, 256)
    sizes = {}
    for name, spec in (("adamw", {"type": "adamw"}), ("galore", {"type": "galore", "rank": rank})):
        net = model()
        optimizer = optreg.build_optimizer(spec, net)
        net(x).square().mean().backward()
        optimizer.step()
        sizes[name] = _state_bytes(optimizer)
    params = sum(p.numel() for p in model().parameters())
    print(f"\nstate bytes, {params:,} params, rank {rank}: adamw {sizes['adamw']:,}, galore {sizes['galore']:,} "
          f"({sizes['galore'] / sizes['adamw']:.3f} x)")
    # every layer here is a hidden matrix: moments shrink to rank columns (or rows), plus the projection
    expected = sum(4 * (2 * n + 1) for n in (512, 512, 256))  # the biases: moments and a float32 step
    for m, n in ((512, 256), (512, 512), (256, 512)):
        low = m * rank if m >= n else rank * n
        expected += 4 * (2 * low + rank * (n if m >= n else m)) + 4  # moments, projection, step
    assert sizes["galore"] == expected
    assert sizes["galore"] < sizes["adamw"] * (0.4 if rank == 64 else 0.15)
    assert math.isclose(sizes["adamw"], 4 * (2 * params + 6), rel_tol=0)
