"""The public functional API: adamw_update_ and adamw over every implementation path."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_rel
from optreg_adam.functional import adamw, adamw_update_

HP = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1}


def _tensors(seed=0, shapes=((5, 7), (7,), (0, 3))):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(6)]
    return params, grads


def _torch_run(params, grads, amsgrad=False, maximize=False, decoupled=True):
    params = [p.clone().requires_grad_() for p in params]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(params, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
              weight_decay=HP["weight_decay"], amsgrad=amsgrad, maximize=maximize, foreach=False)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params], [opt.state[p] for p in params]


@pytest.mark.parametrize("fused", [None, True, False])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [True, False])
def test_adamw_update_matches_torch(fused, amsgrad, decoupled):
    params, grads = _tensors()
    ref_params, ref_states = _torch_run(params, grads, amsgrad=amsgrad, decoupled=decoupled)
    states = [{"step": torch.zeros(()), "m": torch.zeros_like(p), "v": torch.zeros_like(p),
                   "vmax": torch.zeros_like(p) if amsgrad else None} for p in params]
    for gs in grads:
        for p, g, s in zip(params, gs, states):
            adamw_update_(p, g, s["m"], s["v"], s["step"], **HP, max_exp_avg_sq=s["vmax"], decoupled=decoupled,
                          fused=fused)
    for p, r, s, rs in zip(params, ref_params, states, ref_states):
        assert_close_rel(p, r, 1e-6, "param")
        assert_close_rel(s["m"], rs["exp_avg"], 1e-6, "exp_avg")
        assert_close_rel(s["v"], rs["exp_avg_sq"], 1e-6, "exp_avg_sq")
        assert float(s["step"]) == len(grads)


@pytest.mark.parametrize("fused", [None, True, False])
def test_adamw_update_step_factor(fused):
    """1 equals the plain step bit for bit; 0 leaves everything bit-identical even with NaN grads.

    Exact on every machine: both runs take the same path and the same ops (a factor of 1 multiplies the
    step's scalars by 1.0; the fused kernel gets ``found_inf = 0``, which only decides whether it skips).
    """
    p0 = torch.randn(4, 3)
    g = torch.randn(4, 3)
    runs = []
    for factor in (None, torch.tensor(1.0)):
        p, m, v, step = p0.clone(), torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(())
        for _ in range(3):
            adamw_update_(p, g, m, v, step, **HP, step_factor=factor, fused=fused)
        runs.append((p, m, v, step))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    p, m, v, step = (t.clone() for t in runs[0])
    adamw_update_(p, torch.full((4, 3), float("nan")), m, v, step, **HP, step_factor=torch.tensor(0.0), fused=fused)
    for a, b in zip((p, m, v, step), runs[0]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("impl", ["fused", "single", "foreach"])
def test_list_paths_agree(impl):
    params, grads = _tensors(1)
    ref_params, _ = _torch_run(params, grads, amsgrad=True, maximize=True)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    vmax = [torch.zeros_like(p) for p in params]
    steps = [torch.zeros(()) for _ in params]
    for gs in grads:
        adamw(params, gs, m, v, vmax, steps, **HP, amsgrad=True, maximize=True, impl=impl)
    for p, r in zip(params, ref_params):
        assert_close_rel(p, r, 1e-6, f"param ({impl})")


def test_tensor_lr_and_bf16_params():
    p32 = torch.randn(64)
    p16 = p32.to(torch.bfloat16)
    g = torch.randn(64)
    for p in (p32, p16):
        m, v, step = torch.zeros_like(p), torch.zeros_like(p), torch.zeros(())
        adamw_update_(p, g.to(p.dtype), m, v, step, **{**HP, "lr": torch.tensor(1e-2)})
    torch.testing.assert_close(p16.float(), p32, atol=1e-2, rtol=1e-2)
    assert p16.dtype == torch.bfloat16


@pytest.mark.parametrize("fused", [None, True, False])
def test_adamw_update_complex_matches_torch(fused):
    """A complex tensor is stepped as its real view, like torch.optim.AdamW (other plugins call this directly)."""
    g = torch.Generator().manual_seed(3)
    p0 = torch.randn(5, 7, dtype=torch.complex64, generator=g)
    grads = [torch.randn(5, 7, dtype=torch.complex64, generator=g) for _ in range(6)]
    ref = p0.clone().requires_grad_()
    opt = torch.optim.AdamW([ref], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
                            weight_decay=HP["weight_decay"], foreach=False)
    p, m, v, step = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0), torch.zeros(())
    for grad in grads:
        ref.grad = grad.clone()
        opt.step()
        adamw_update_(p, grad, m, v, step, **HP, fused=fused)
    assert_close_rel(torch.view_as_real(p), torch.view_as_real(ref.detach()), 1e-6, "param")
    assert_close_rel(torch.view_as_real(v), torch.view_as_real(opt.state[ref]["exp_avg_sq"]), 1e-6, "exp_avg_sq")
    assert torch.view_as_real(v).min() >= 0, "exp_avg_sq holds re**2 and im**2 (the complex g*g has re**2 - im**2)"
