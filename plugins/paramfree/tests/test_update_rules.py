"""DoG, DoWG, COCOB, Mechanic and MoMo against their update rules, written out here from the papers.

Each rule below is a plain transcription of the paper's algorithm over a list of
tensors (Python floats for the scalars), run for 50 steps on the same model and
data as the optimizer under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import optreg
from optreg.testing.parity import STEPS, assert_histories_close, batches, small_model, train


def _norm_sq(tensors) -> float:
    return sum(float((t.double() ** 2).sum()) for t in tensors)


def _vdot(a, b) -> float:
    return sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))


def run_rule(rule, *, seed: int = 0) -> list[list[torch.Tensor]]:
    """Run ``rule(step, params, grads, loss)`` (it updates params in place) for 50 steps."""
    model = small_model(seed)
    params = list(model.parameters())
    history = []
    for step, (x, y) in enumerate(batches()):
        for p in params:
            p.grad = None
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        with torch.no_grad():
            rule(step, params, [p.grad for p in params], float(loss))
        history.append([p.detach().clone() for p in params])
    return history


def run_optimizer(spec) -> list[list[torch.Tensor]]:
    model = small_model()
    # torch's semantics, as the reference: plain tensors, every one decayed (optreg's default
    # no_decay would leave the 1-D ones undecayed)
    optimizer = optreg.build_optimizer({**spec, "no_decay": []}, list(model.parameters()))
    return train(model, optimizer, batches(), with_closure=True)


# ---------------------------------------------------------------- DoG (Ivgi et al. 2023, Algorithm 1)


def dog_rule(lr=1.0, init_step="heuristic", value=1e-6, eps=1e-8, weight_decay=0.0):
    state = {}

    def rule(step, xs, gs, loss):
        gs = [g + weight_decay * x for g, x in zip(gs, xs)]
        if step == 0:
            state["x0"] = [x.clone() for x in xs]
            state["G"] = 0.0
            state["rbar"] = {"distance": value, "heuristic": value * (1 + math.sqrt(_norm_sq(xs))),
                             "learning_rate": 0.0}[init_step]
        r = math.sqrt(_norm_sq([x - x0 for x, x0 in zip(xs, state["x0"])]))
        state["rbar"] = max(state["rbar"], r)  # r_bar_t = max(r_eps, max_i ||x_i - x_0||)
        state["G"] += _norm_sq(gs)  # G_t = sum_i ||g_i||^2
        eta = state["rbar"] / math.sqrt(state["G"] + eps)
        if init_step == "learning_rate" and step == 0:
            eta = value
        for x, g in zip(xs, gs):
            x.sub_(lr * eta * g)

    return rule


# ---------------------------------------------------------------- DoWG (Khaled et al. 2023, Algorithm 1)


def dowg_rule(lr=1.0, init=None, eps=1e-4):
    state = {}

    def rule(step, xs, gs, loss):
        if step == 0:
            state["x0"] = [x.clone() for x in xs]
            state["r2"] = eps if init is None else init
            state["v"] = 0.0
        state["r2"] = max(state["r2"], _norm_sq([x - x0 for x, x0 in zip(xs, state["x0"])]))
        state["v"] += state["r2"] * _norm_sq(gs)
        eta = state["r2"] / (math.sqrt(state["v"]) + eps)
        for x, g in zip(xs, gs):
            x.sub_(lr * eta * g)

    return rule


# ---------------------------------------------------------------- COCOB-Backprop (Orabona & Tommasi 2017, Alg. 2)


def cocob_rule(alpha=100.0, eps=1e-8):
    state = {}

    def rule(step, xs, gs, loss):
        if step == 0:
            state["w1"] = [x.clone() for x in xs]
            state["L"] = [torch.full_like(x, eps) for x in xs]
            state["G"] = [torch.zeros_like(x) for x in xs]
            state["reward"] = [torch.zeros_like(x) for x in xs]
            state["theta"] = [torch.zeros_like(x) for x in xs]
        for i, (x, g) in enumerate(zip(xs, gs)):
            w1 = state["w1"][i]
            state["L"][i] = torch.maximum(state["L"][i], g.abs())
            state["G"][i] = state["G"][i] + g.abs()
            state["reward"][i] = torch.clamp(state["reward"][i] - (x - w1) * g, min=0)
            state["theta"][i] = state["theta"][i] - g
            big_l, big_g = state["L"][i], state["G"][i]
            beta = state["theta"][i] / (big_l * torch.maximum(big_g + big_l, alpha * big_l))
            x.copy_(w1 + beta * (big_l + state["reward"][i]))

    return rule


# ---------------------------------------------------------------- Mechanic (Cutkosky et al. 2023) around SGD


def mechanic_sgd_rule(inner_lr=0.1, weight_decay=0.01, eps=1e-8, s_init=1e-6, n=6):
    betas = [1 - 0.1**i for i in range(1, n + 1)]
    state = {"s": [s_init] * n, "m": [0.0] * n, "v": [0.0] * n, "r": [0.0] * n}

    def rule(step, xs, gs, loss):
        if step == 0:
            state["ref"] = [x.clone() for x in xs]
        s_sum = sum(state["s"])
        # Delta_t (the sum of the inner updates so far) recovered from the params, as the authors' code does.
        delta = [(x - ref) / (s_sum + eps) for x, ref in zip(xs, state["ref"])]
        coef = weight_decay * s_sum * math.sqrt(_norm_sq(gs)) / (math.sqrt(_norm_sq(xs)) + eps)
        h = -_vdot([g + coef * x for g, x in zip(gs, xs)], delta)
        s, m, v, r = state["s"], state["m"], state["v"], state["r"]
        new_m = [max(b * mi, abs(h) + eps) for b, mi in zip(betas, m)]
        new_v = [b * b * vi + h * h for b, vi in zip(betas, v)]
        new_r = [b * ri + min(max(h, -mi), mi) * si for b, ri, mi, si in zip(betas, r, m, s)]
        new_s = [(s_init / n * mi + max(ri, 0.0)) / (math.sqrt(vi) + eps) for mi, ri, vi in zip(new_m, new_r, new_v)]
        state.update(s=new_s, m=new_m, v=new_v, r=new_r)
        for x, d, g, ref in zip(xs, delta, gs, state["ref"]):
            x.copy_(ref + sum(new_s) * (d - inner_lr * g))  # the inner SGD update is -lr * g

    return rule


# ---------------------------------------------------------------- MoMo (Schaipp et al. 2023, Algorithm 1)


def momo_rule(lr=1.0, beta=0.9, weight_decay=0.0, lb=0.0):
    state = {}

    def rule(step, xs, gs, loss):
        if step == 0:  # the averages start at the first values
            state["d"] = [g.clone() for g in gs]
            state["fbar"] = loss
            state["gamma"] = _vdot(gs, xs)
        else:
            state["d"] = [beta * d + (1 - beta) * g for d, g in zip(state["d"], gs)]
            state["fbar"] = beta * state["fbar"] + (1 - beta) * loss
            state["gamma"] = beta * state["gamma"] + (1 - beta) * _vdot(gs, xs)
        d = state["d"]
        shrink = 1 + lr * weight_decay
        h = shrink * (state["fbar"] - lb) + _vdot(d, xs) - shrink * state["gamma"]
        tau = min(lr, max(h, 0.0) / _norm_sq(d))
        for x, di in zip(xs, d):
            x.sub_(tau * di).div_(shrink)

    return rule


def momo_adam_rule(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lb=0.0):
    b1, b2 = betas
    state = {"fbar": 0.0, "gamma": 0.0}

    def rule(step, xs, gs, loss):
        k = step + 1
        if step == 0:
            state["m"] = [torch.zeros_like(x) for x in xs]
            state["v"] = [torch.zeros_like(x) for x in xs]
        state["m"] = [b1 * m + (1 - b1) * g for m, g in zip(state["m"], gs)]
        state["v"] = [b2 * v + (1 - b2) * g * g for v, g in zip(state["v"], gs)]
        state["fbar"] = b1 * state["fbar"] + (1 - b1) * loss
        state["gamma"] = b1 * state["gamma"] + (1 - b1) * _vdot(gs, xs)
        bc1, bc2 = 1 - b1**k, 1 - b2**k
        precond = [torch.sqrt(v / bc2) + eps for v in state["v"]]
        norm = _vdot(state["m"], [m / p for m, p in zip(state["m"], precond)])
        shrink = 1 + lr * weight_decay
        h = shrink * (state["fbar"] - bc1 * lb) + _vdot(state["m"], xs) - shrink * state["gamma"]
        tau = min(lr / bc1, max(h, 0.0) / norm)
        for x, m, p in zip(xs, state["m"], precond):
            x.sub_(tau * m / p).div_(shrink)

    return rule


RULES = [
    ({"type": "dog"}, dog_rule()),
    ({"type": "dog", "lr": 0.5, "init_step": "distance", "init_step_value": 1e-3, "weight_decay": 1e-3},
     dog_rule(lr=0.5, init_step="distance", value=1e-3, weight_decay=1e-3)),
    ({"type": "dog", "init_step": "learning_rate", "init_step_value": 0.05},
     dog_rule(init_step="learning_rate", value=0.05)),
    ({"type": "dowg"}, dowg_rule()),
    ({"type": "dowg", "init_estim_sq_dist": 1e-3, "lr": 0.7}, dowg_rule(init=1e-3, lr=0.7)),
    ({"type": "cocob"}, cocob_rule()),
    ({"type": "cocob", "alpha": 20.0}, cocob_rule(alpha=20.0)),
    ({"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1}}, mechanic_sgd_rule()),
    ({"type": "mechanic", "inner": {"type": "sgd", "lr": 0.5}, "weight_decay": 0.0, "num_betas": 3},
     mechanic_sgd_rule(inner_lr=0.5, weight_decay=0.0, n=3)),
    ({"type": "momo"}, momo_rule()),
    ({"type": "momo", "lr": 0.5, "weight_decay": 1e-2, "lower_bound": -0.01},
     momo_rule(lr=0.5, weight_decay=1e-2, lb=-0.01)),
    ({"type": "momo_adam"}, momo_adam_rule()),
    ({"type": "momo_adam", "lr": 0.05, "weight_decay": 1e-2, "betas": [0.8, 0.99]},
     momo_adam_rule(lr=0.05, weight_decay=1e-2, betas=(0.8, 0.99))),
]


@pytest.mark.parametrize(("spec", "rule"), RULES, ids=[f"{s['type']}-{i}" for i, (s, _) in enumerate(RULES)])
def test_matches_the_update_rule_over_50_steps(spec, rule):
    expected = run_rule(rule)
    got = run_optimizer(spec)
    assert len(got) == STEPS
    initial = [p.detach() for p in small_model().parameters()]
    moved = max(float((a - b).abs().max()) for a, b in zip(got[-1], initial))
    assert moved > 1e-3, f"the optimizer barely moved ({moved:.2e}): the comparison would prove little"
    assert_histories_close(got, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- COCOB's lr only scales what it is invariant to


def test_cocob_trajectory_does_not_depend_on_a_positive_lr():
    """COCOB multiplies the gradients by lr (as optax does) and is scale-invariant: lr changes nothing.

    Close, not equal: the initial L = eps is not scaled (and 0.3 is not a power of 2).
    """
    runs = [run_optimizer({"type": "cocob", "lr": lr}) for lr in (1.0, 0.3)]
    assert_histories_close(runs[1], runs[0], rtol=1e-5, atol=1e-6)


def test_cocob_warns_that_a_schedule_does_nothing():
    from optreg.scheduling import ScheduledLR
    from optreg.specs import spec_fields

    spec_class = optreg.get_registry().spec_class("optimizer", "cocob")
    lr_doc = next(f.metadata["doc"] for f in spec_fields(spec_class) if f.name == "lr")
    assert "same trajectory" in spec_class.__doc__ and "same trajectory" in lr_doc  # what `optreg show` prints

    class Halving(optreg.SchedulerSpec):  # not registered: driven through ScheduledLR directly
        TYPE = "test_halving"

        def get_lr(self, initial_lr, current, t_max):
            return initial_lr * 0.5 ** (current // 10)

    model = small_model()
    cocob = optreg.build_optimizer({"type": "cocob"}, model)
    with pytest.warns(UserWarning, match="every positive LR gives the same trajectory"):
        ScheduledLR(cocob, Halving(), t_max=100)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optreg.build_scheduler({"type": "constant"}, cocob, t_max=100)  # a constant schedule is fine
        ScheduledLR(optreg.build_optimizer({"type": "dog"}, small_model()), Halving(), t_max=100)
