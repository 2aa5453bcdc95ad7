"""Each algorithm against its published update rule, written out here in plain per-tensor code.

Gradients are a fixed random sequence (the same for reference and optimizer, so trajectories
cannot drift apart chaotically); two param groups; the LR of the first group changes at step 8
(checks that LR-dependent state follows the schedule). 16 steps, fp32; tolerance 1e-6 relative
to each tensor's scale (see helpers.assert_close_rel).
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_rel
from optreg_adam import optim as A

STEPS = 16
SHAPES = [(6, 5), (5,), (3, 4)]


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g) for s in SHAPES]
    grads = [[torch.randn(s, generator=g) * (0.1 + i) for i, s in enumerate(SHAPES)] for _ in range(STEPS)]
    return params, grads


def _lrs(base):
    """Per-step LR of group 0 (group 1 keeps half the base LR)."""
    return [base if t < 8 else base * 0.3 for t in range(STEPS)]


def _run_ours(cls, params, grads, lr, **kw):
    ps = [p.clone() for p in params]
    opt = cls([{"params": ps[:2], "lr": lr}, {"params": ps[2:], "lr": lr / 2}], **kw)
    for t in range(STEPS):
        opt.param_groups[0]["lr"] = _lrs(lr)[t]
        for p, g in zip(ps, grads[t]):
            p.grad = g.clone()
        opt.step()
    return ps, opt


def _run_ref(update, params, grads, lr):
    """``update(p, g, state, lr, t)`` per tensor and step; returns params and states."""
    ps = [p.clone() for p in params]
    states = [{} for _ in ps]
    for t in range(STEPS):
        for i, (p, g, st) in enumerate(zip(ps, grads[t], states)):
            group_lr = _lrs(lr)[t] if i < 2 else lr / 2
            update(p, g.clone(), st, group_lr, t + 1)
    return ps, states


def _check(ours, opt, ref, ref_states, keys):
    for i, (p, r) in enumerate(zip(ours, ref)):
        assert_close_rel(p, r, 1e-6, f"param {i}")
        state = opt.state[p]
        for ours_key, (ref_key, scale) in keys.items():
            assert_close_rel(state[ours_key] / scale, ref_states[i][ref_key], 1e-6, f"state[{i}][{ours_key}]")
        assert float(state["step"]) == STEPS


def _zeros(st, p, *names):
    for n in names:
        st.setdefault(n, torch.zeros_like(p))


# ---------------------------------------------------------------- AdEMAMix (Pagliardini et al. 2024, Alg. 1)


def _ademamix_rule(b1, b2, b3, alpha, eps, wd, t_alpha, t_beta3):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m1", "v", "m2")
        alpha_t = alpha * min(t / t_alpha, 1.0) if t_alpha else alpha
        if t_beta3:
            a = min(t / t_beta3, 1.0)
            b3_t = min(math.exp(math.log(b1) * math.log(b3) / ((1 - a) * math.log(b3) + a * math.log(b1))), b3)
        else:
            b3_t = b3
        st["m1"] = b1 * st["m1"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        st["m2"] = b3_t * st["m2"] + (1 - b3_t) * g
        m1_hat = st["m1"] / (1 - b1**t)
        v_hat = st["v"] / (1 - b2**t)
        p -= lr * ((m1_hat + alpha_t * st["m2"]) / (v_hat.sqrt() + eps) + wd * p)

    return update


@pytest.mark.parametrize("warmup", [None, 6])
def test_ademamix(warmup):
    params, grads = _problem()
    kw = {"betas": (0.9, 0.99, 0.999), "eps": 1e-8, "weight_decay": 0.1, "alpha": 4.0,
          "alpha_warmup": warmup, "beta3_warmup": warmup}
    ours, opt = _run_ours(A.AdEMAMix, params, grads, 1e-2, **kw)
    ref, states = _run_ref(_ademamix_rule(0.9, 0.99, 0.999, 4.0, 1e-8, 0.1, warmup, warmup), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("m1", 1), "exp_avg_sq": ("v", 1), "exp_avg_slow": ("m2", 1)})


# ---------------------------------------------------------------- Simplified AdEMAMix (Morwani et al. 2025)


def _sim_rule(b1_final, b2, alpha, eps, wd, warmup, min_b1, bc1):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m", "v")
        st.setdefault("num", 0.0)
        st.setdefault("den", 0.0)
        b1 = b1_final
        if warmup is not None and t < warmup:
            hl = lambda b: math.log(0.5) / math.log(b + 1e-8) - 1  # noqa: E731
            a = t / warmup
            b1 = 0.5 ** (1 / ((1 - a) * hl(min_b1) + a * hl(b1_final) + 1))
        st["m"] = b1 * st["m"] + g
        st["num"] = b1 * st["num"] + 1.0
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        st["den"] = b2 * st["den"] + (1 - b2)
        update = (alpha * g + st["m"]) / (st["v"].sqrt() + eps * math.sqrt(st["den"]))
        if bc1:
            update = update / st["num"]
        update = update * math.sqrt(st["den"]) + wd * p
        p -= lr * update

    return update


@pytest.mark.parametrize(("warmup", "bc1"), [(None, False), (10, True)])
def test_simplified_ademamix(warmup, bc1):
    params, grads = _problem(1)
    kw = {"betas": (0.95, 0.9), "eps": 1e-8, "weight_decay": 0.05, "alpha": 1.5, "beta1_warmup": warmup,
          "min_beta1": 0.8,
              "bias_correction1": bc1}
    ours, opt = _run_ours(A.SimplifiedAdEMAMix, params, grads, 1e-3, **kw)
    ref, states = _run_ref(_sim_rule(0.95, 0.9, 1.5, 1e-8, 0.05, warmup, 0.8, bc1), params, grads, 1e-3)
    _check(ours, opt, ref, states, {"exp_avg": ("m", 1), "exp_avg_sq": ("v", 1)})


# ---------------------------------------------------------------- ADOPT (Taniguchi et al. 2024, Alg. 2)


def _adopt_rule(b1, b2, eps, wd, decoupled, clip):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m", "v")
        if decoupled:
            p *= 1 - lr * wd
        else:
            g = g + wd * p
        if t == 1:
            st["v"] = g * g
            return
        normed = g / torch.clamp(st["v"].sqrt(), min=eps)
        if clip:
            normed = normed.clamp(-(t**0.25), t**0.25)
        st["m"] = b1 * st["m"] + (1 - b1) * normed
        p -= lr * st["m"]
        st["v"] = b2 * st["v"] + (1 - b2) * g * g

    return update


@pytest.mark.parametrize(("decoupled", "clip"), [(False, True), (True, False)])
def test_adopt(decoupled, clip):
    params, grads = _problem(2)
    kw = {"betas": (0.9, 0.99), "eps": 1e-6, "weight_decay": 0.1, "decoupled_weight_decay": decoupled, "clip": clip}
    ours, opt = _run_ours(A.ADOPT, params, grads, 1e-2, **kw)
    ref, states = _run_ref(_adopt_rule(0.9, 0.99, 1e-6, 0.1, decoupled, clip), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("m", 1), "exp_avg_sq": ("v", 1)})


# ---------------------------------------------------------------- LaProp (Ziyin et al. 2020, Alg. 1 + reference code)


def _laprop_rule(b1, b2, eps, wd):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m", "v")
        st.setdefault("lr_avg", 0.0)
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        st["lr_avg"] = b1 * st["lr_avg"] + (1 - b1) * lr  # LR-aware bias correction of the reference code
        bc1 = st["lr_avg"] / lr
        bc2 = 1 - b2**t
        st["m"] = b1 * st["m"] + (1 - b1) * lr * g / ((st["v"] / bc2).sqrt() + eps)
        p -= st["m"] / bc1
        p *= 1 - lr * wd

    return update


def test_laprop():
    params, grads = _problem(3)
    ours, opt = _run_ours(A.LaProp, params, grads, 1e-2, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    ref, states = _run_ref(_laprop_rule(0.8, 0.95, 1e-10, 0.1), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("m", 1), "exp_avg_sq": ("v", 1)})


# ---------------------------------------------------------------- ACProp (Zhuang et al. 2021, authors' code)


def _acprop_rule(b1, b2, eps, wd, momentum_update):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m", "s")
        p *= 1 - lr * wd
        bc1 = 1 - b1**t
        st["m"] = b1 * st["m"] + (1 - b1) * g
        if t == 1:
            p -= lr * st["m"] / bc1
        else:
            st["s"] = st["s"] + eps
            denom = st["s"].sqrt() / math.sqrt(1 - b2 ** (t - 1)) + eps  # s of the *previous* step
            numerator = st["m"] / bc1 if momentum_update else g
            p -= lr * numerator / denom
        r = g - st["m"]
        st["s"] = b2 * st["s"] + (1 - b2) * r * r

    return update


@pytest.mark.parametrize("momentum_update", [False, True])
@pytest.mark.parametrize("centering", [None, "updated"])
def test_acprop(momentum_update, centering):
    """The default (and ``centering = "updated"``) is the authors' rule."""
    params, grads = _problem(4)
    kw = {"betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "momentum_update": momentum_update}
    if centering is not None:
        kw["centering"] = centering
    ours, opt = _run_ours(A.ACProp, params, grads, 1e-2, **kw)
    ref, states = _run_ref(_acprop_rule(0.9, 0.99, 1e-8, 0.1, momentum_update), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("m", 1), "exp_avg_var": ("s", 1)})


# ---------------------------------------------------------------- ACProp as optax.contrib.acprop


def _acprop_optax_rule(b1, b2, eps, eps_root, wd):
    """optax.contrib.acprop (scale_by_acprop, add_decayed_weights, scale_by_learning_rate), written out.

    The second moment is centred on the momentum *before* this step's update (``g - mu_{t-1}``);
    ``eps_root`` is added after the EMA; the denominator is ``nu_{t-1}`` bias-corrected with
    ``t - 1``, forced to 1 on the first step; weight decay is added to the update, then scaled by -lr.
    """

    def update(p, g, st, lr, t):
        _zeros(st, p, "mu", "nu")
        mu_prev, nu_prev = st["mu"], st["nu"]
        st["mu"] = b1 * mu_prev + (1 - b1) * g
        st["nu"] = b2 * nu_prev + (1 - b2) * (g - mu_prev) ** 2 + eps_root
        nu_hat = torch.ones_like(p) if t == 1 else nu_prev / (1 - b2 ** (t - 1))
        u = g / (nu_hat.sqrt() + eps) + wd * p
        p -= lr * u
        st["s"] = st["nu"] - eps_root  # optreg adds eps to the stored s when it next uses it

    return update


def test_acprop_previous_centering_is_optax():
    params, grads = _problem(4)
    kw = {"betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "centering": "previous"}
    ours, opt = _run_ours(A.ACProp, params, grads, 1e-2, **kw)
    ref, states = _run_ref(_acprop_optax_rule(0.9, 0.99, 1e-8, 1e-8, 0.1), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("mu", 1), "exp_avg_var": ("s", 1)})


def test_acprop_centering_rules_differ():
    """The two centerings give different trajectories (so each test above pins its own rule)."""
    params, grads = _problem(4)
    kw = {"betas": (0.9, 0.99), "eps": 1e-8}
    updated, _ = _run_ours(A.ACProp, params, grads, 1e-2, centering="updated", **kw)
    previous, _ = _run_ours(A.ACProp, params, grads, 1e-2, centering="previous", **kw)
    for a, b in zip(updated, previous):
        assert (a - b).abs().max() > 1e-4


def test_acprop_rejects_unknown_centering():
    with pytest.raises(ValueError, match="centering must be one of"):
        A.ACProp([torch.zeros(2)], centering="momentum")


# ---------------------------------------------------------------- Madam: Adam without eps, 0 where m == 0


def _madam_rule(b1, b2, wd):
    def update(p, g, st, lr, t):
        _zeros(st, p, "m", "v")
        p *= 1 - lr * wd
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        step = (st["m"] / (1 - b1**t)) / (st["v"] / (1 - b2**t)).sqrt()
        p -= lr * torch.where(st["m"] == 0, torch.zeros(()), step)

    return update


@pytest.mark.parametrize("scale_log2", [0, 40])
def test_madam(scale_log2):
    params, grads = _problem(5)
    for gs in grads:  # a coordinate that never gets a gradient must not move (no 0/0)
        gs[0][0, 0] = 0.0
    ours, opt = _run_ours(A.Madam, params, grads, 1e-2, betas=(0.9, 0.99), weight_decay=0.0, scale_log2=scale_log2)
    ref, states = _run_ref(_madam_rule(0.9, 0.99, 0.0), params, grads, 1e-2)
    _check(ours, opt, ref, states, {"exp_avg": ("m", 1), "exp_avg_sq": ("v", 2.0**scale_log2)})
    assert ours[0][0, 0] == params[0][0, 0]  # exact anywhere: the update there is a selected 0, not arithmetic


def test_madam_tiny_gradients_do_not_underflow():
    """Gradients of 1e-25 square to 0 in fp32; stored times 2**64 they do not, and the step is full size."""
    p = torch.ones(4)
    opt = A.Madam([p], lr=0.1, scale_log2=64)
    p.grad = torch.full((4,), 1e-25)
    opt.step()
    torch.testing.assert_close(p, torch.full((4,), 0.9))
    q = torch.ones(4)
    plain = A.Madam([q], lr=0.1, scale_log2=0)
    q.grad = torch.full((4,), 1e-25)
    plain.step()
    assert torch.equal(q, torch.ones(4)), "without the scale, v underflows to 0 and the update is masked"
