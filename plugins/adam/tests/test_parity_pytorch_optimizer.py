"""Parity with pytorch-optimizer (a test dependency) where it has the algorithm: AdEMAMix, ADOPT, LaProp.

Same fixed gradient sequence, two param groups with their own LRs; 20 steps; 1e-6 relative.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_rel
from optreg_adam import optim as A

po = pytest.importorskip("pytorch_optimizer", reason="pytorch-optimizer is in this plugin's [test] extra")

STEPS = 20
SHAPES = [(8, 6), (6,), (4, 3, 2)]


def _run(cls, lr, **kw):
    g = torch.Generator().manual_seed(11)
    params = [torch.randn(s, generator=g) for s in SHAPES]
    grads = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(STEPS)]
    ps = [p.clone() for p in params]
    opt = cls([{"params": ps[:2], "lr": lr}, {"params": ps[2:], "lr": lr * 0.5}], **kw)
    for t in range(STEPS):
        for p, gr in zip(ps, grads[t]):
            p.grad = gr.clone()
        opt.step()
    return ps, opt


def _compare(a, b, keys):
    (pa, oa), (pb, ob) = a, b
    for i, (x, y) in enumerate(zip(pa, pb)):
        assert_close_rel(x, y, 1e-6, f"param {i}")
        for ours, theirs in keys.items():
            assert_close_rel(oa.state[x][ours], ob.state[y][theirs], 1e-6, f"state[{i}][{ours}]")


@pytest.mark.parametrize("warmup", [None, 8])
def test_ademamix(warmup):
    common = {"betas": (0.9, 0.99, 0.999), "eps": 1e-8, "weight_decay": 0.1, "alpha": 3.0}
    ours = _run(A.AdEMAMix, 1e-2, alpha_warmup=warmup, beta3_warmup=warmup, **common)
    theirs = _run(po.AdEMAMix, 1e-2, t_alpha_beta3=warmup, weight_decouple=True, **common)
    _compare(ours, theirs, {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "exp_avg_slow": "exp_avg_slow"})


@pytest.mark.parametrize("decoupled", [False, True])
def test_adopt(decoupled):
    common = {"betas": (0.9, 0.99), "eps": 1e-6, "weight_decay": 0.05}
    ours = _run(A.ADOPT, 1e-2, decoupled_weight_decay=decoupled, **common)
    theirs = _run(po.ADOPT, 1e-2, weight_decouple=decoupled, **common)
    _compare(ours, theirs, {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})


def test_laprop():
    common = {"betas": (0.85, 0.97), "eps": 1e-15, "weight_decay": 0.05}
    ours = _run(A.LaProp, 1e-2, **common)
    theirs = _run(po.LaProp, 1e-2, weight_decouple=True, **common)
    _compare(ours, theirs, {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})
