"""The update rule each class docstring states, written out in float64 and compared with the optimizer.

The docstrings are the one place the rule is written down (tests/test_docs.py checks that they state
one); this checks that what they state is what the code computes, including the claim that the
parameters stay at ``y = beta * x + (1 - beta) * z`` with ``x`` the weighted average (``eval()``).
"""

from __future__ import annotations

import math

import pytest
import torch

import optreg

STEPS = 9


def _grads(step: int, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def _start() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)]


def _stated_rule(spec: dict, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(y, x) after ``steps`` steps of the rule the docstrings of the three optimizers state."""
    kind = spec["type"]
    lr, wd = spec.get("lr", 0.0025), spec.get("weight_decay", 0.0)
    warmup, r, power = spec.get("warmup_steps", 0), spec.get("r", 0.0), spec.get("weight_lr_power", 2.0)
    at_y, maximize = spec.get("weight_decay_at_y", True), spec.get("maximize", False)
    if kind == "schedule_free_sgd":
        beta, beta2 = spec.get("momentum", 0.9), None
    else:
        beta, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    ys = _start()
    zs = [y.clone() for y in ys]
    xs = [y.clone() for y in ys]
    vs = [torch.zeros_like(y) for y in ys]
    lr_max = weight_sum = 0.0
    for k in range(steps):
        t = k + 1
        lr_t = lr * min(1.0, t / warmup) if warmup > 0 else lr
        tractable = True
        if kind == "schedule_free_radam":
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
            tractable = rho_t > 4
            if tractable:
                rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            else:
                rect = 0.0 if spec.get("silent_sgd_phase", True) else 1.0
            lr_t *= rect
        lr_max = max(lr_max, lr_t)
        w = t**r * lr_max**power
        weight_sum += w
        c = w / weight_sum if weight_sum > 0 else 0.0
        for y, z, x, v, g in zip(ys, zs, xs, vs, _grads(k, [y.shape for y in ys])):
            if beta2 is not None:
                v.mul_(beta2).add_((1 - beta2) * g * g)
                u = g / ((v / (1 - beta2**t)).sqrt() + eps) if tractable else g.clone()
            else:
                u = g.clone()
            if maximize:
                u = -u
            u = u + wd * (y if at_y else z)
            y.copy_((1 - c) * y + c * z + lr_t * (beta * (1 - c) - 1) * u)
            z.sub_(lr_t * u)
            x.copy_((1 - c) * x + c * z)
    return ys, xs


def _stated_wrapper_rule(lr: float, beta: float, wd: float, r: float, power: float, steps: int):
    """(y, x) after ``steps`` steps of the rule ScheduleFree's docstring states, around plain SGD."""
    ys = _start()
    zs = [y.clone() for y in ys]
    lr_max = weight_sum = 0.0
    xs = []
    for k in range(steps):
        lr_max = max(lr_max, lr)
        w = (k + 1) ** r * lr_max**power
        weight_sum += w
        c = w / weight_sum
        xs = []
        for y, z, g in zip(ys, zs, _grads(k, [y.shape for y in ys])):
            x = (y - (1 - beta) * z) / beta
            z.sub_(lr * wd * y)
            z.sub_(lr * g)  # the inner SGD's step on z, with the gradient taken at y
            x = (1 - c) * x + c * z
            y.copy_((1 - beta) * z + beta * x)
            xs.append(x)
    return ys, xs


def _run(spec: dict, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [torch.nn.Parameter(p) for p in _start()]
    # torch's semantics, as the reference: plain tensors, every one decayed (optreg's default
    # no_decay would leave the 1-D ones undecayed)
    optimizer = optreg.build_optimizer({**spec, "no_decay": []}, params)
    for k in range(steps):
        for p, g in zip(params, _grads(k, [p.shape for p in params])):
            p.grad = g
        optimizer.step()
    y = [p.detach().clone() for p in params]
    optimizer.eval()
    return y, [p.detach().clone() for p in params]


def _assert_close(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> None:
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13, msg=lambda m: f"{what}: {m}")


SPECS = [
    {"type": "schedule_free_adamw", "lr": 0.05},
    {"type": "schedule_free_adamw", "lr": 0.05, "betas": (0.95, 0.99), "weight_decay": 0.1, "warmup_steps": 4,
     "r": 0.5, "weight_lr_power": 1.0, "maximize": True},
    {"type": "schedule_free_adamw", "lr": 0.05, "weight_decay": 0.1, "weight_decay_at_y": False, "foreach": True},
    {"type": "schedule_free_radam", "lr": 0.05, "weight_decay": 0.05},
    {"type": "schedule_free_radam", "lr": 0.05, "silent_sgd_phase": False, "weight_decay_at_y": False,
     "weight_decay": 0.05, "foreach": True},
    {"type": "schedule_free_sgd", "lr": 0.3},
    {"type": "schedule_free_sgd", "lr": 0.3, "momentum": 0.8, "weight_decay": 0.02, "warmup_steps": 3, "r": 1.0,
     "maximize": True, "foreach": True},
    {"type": "schedule_free_sgd", "lr": 0.3, "weight_decay": 0.02, "weight_decay_at_y": False},
]


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s['type']}-{i}" for i, s in enumerate(SPECS)])
def test_the_optimizers_compute_the_rule_their_docstrings_state(spec):
    y, x = _run(spec, STEPS)
    want_y, want_x = _stated_rule(spec, STEPS)
    _assert_close(y, want_y, "params (y)")
    _assert_close(x, want_x, "eval params (x)")
    assert any(not torch.allclose(a, b) for a, b in zip(y, _start())), "the run did not move"


@pytest.mark.parametrize(("wd", "r"), [(0.0, 0.0), (0.05, 1.0)])
def test_the_wrapper_computes_the_rule_its_docstring_states(wd, r):
    spec = {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.3}, "momentum": 0.85,
            "weight_decay_at_y": wd, "r": r, "weight_lr_power": 1.5}
    y, x = _run(spec, STEPS)
    want_y, want_x = _stated_wrapper_rule(0.3, 0.85, wd, r, 1.5, STEPS)
    _assert_close(y, want_y, "params (y)")
    _assert_close(x, want_x, "eval params (x)")
