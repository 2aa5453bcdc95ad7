"""Per-tensor update kernels of the family beyond Adam(W), as plain tensor code.

Each kernel updates one parameter and its state in place. Every step-dependent
scalar arrives as a 0-dim tensor (computed per group by the optimizer, see
:mod:`optreg_adam.optim`), so the same function runs eagerly or through
``torch.compile`` (one graph for every parameter size, no recompiles when the
LR or the step changes), and the ``step_factor`` gate is a multiplication, not
a branch. Python floats and bools are per-group constants.
"""

from __future__ import annotations

import torch

from optreg.compiling import ema_
from optreg_adam.functional._common import gate, signed

__all__ = ["acprop_", "ademamix_", "adopt_", "laprop_", "madam_", "simplified_ademamix_"]

T = torch.Tensor


def ademamix_(
    p: T, grad: T, m1: T, v: T, m2: T,
    keep: T | None, decay: T | None, w1: T, b2: T, neg_lr: T, eps: T,
    inv_bc1: T, inv_sqrt_bc2: T, w3: T, alpha_t: T,
    w2: float, maximize: bool,
) -> None:
    """AdEMAMix: ``p -= lr * ((m1/bc1 + alpha_t*m2) / (sqrt(v/bc2) + eps) + wd*p)`` (Pagliardini et al. 2024)."""
    g = gate(signed(grad, maximize), keep)
    if decay is not None:
        p.mul_(decay)
    ema_(m1, g, w1)
    v.mul_(b2).addcmul_(g, g, value=w2)
    ema_(m2, g, w3)
    denom = v.sqrt().mul_(inv_sqrt_bc2).add_(eps)
    update = (m1 * inv_bc1).addcmul_(m2, alpha_t)
    p.addcmul_(update.div_(denom), neg_lr)


def simplified_ademamix_(
    p: T, grad: T, m: T, v: T,
    keep: T | None, decay: T | None, b2: T,
    b1: T, scale: T, eps_bc2: T,
    alpha: float, w2: float, maximize: bool,
) -> None:
    """Simplified AdEMAMix: ``m = b1*m + g``; ``p -= lr*((alpha*g + m)/(sqrt(v/bc2) + eps) [/ sum b1^k] + wd*p)``.

    Morwani et al. 2025; ``b1`` (0-dim) already carries the step_factor gate (1 when skipped);
    ``scale = -lr*sf*sqrt(bc2) [/ sum b1^k]`` (the sum is per-param state, kept by the optimizer).
    """
    g = gate(signed(grad, maximize), keep)
    if decay is not None:
        p.mul_(decay)
    m.mul_(b1).add_(g)
    v.mul_(b2).addcmul_(g, g, value=w2)
    denom = v.sqrt().add_(eps_bc2)
    update = torch.add(m, g, alpha=alpha).div_(denom)
    p.addcmul_(update, scale)


def adopt_(
    p: T, grad: T, m: T, v: T,
    keep: T | None, decay: T | None, eps: T,
    keep_m: T, w1: T, neg_lr: T, b2: T, c2: T, clip: T,
    l2: float, decoupled: bool, clipped: bool, maximize: bool,
) -> None:
    """ADOPT: normalise by the *previous* second moment, then momentum (Taniguchi et al. 2024).

    First step: ``v = g**2`` only. Later: ``m = b1*m + (1-b1)*clip(g / max(sqrt(v), eps), t**0.25)``,
    ``p -= lr*m``, ``v = b2*v + (1-b2)*g**2``. ``keep_m``/``w1``/``neg_lr`` are 0 on the first step.
    """
    g = signed(grad, maximize)
    if not decoupled and l2 != 0:
        g = g.add(p, alpha=l2)
    g = gate(g, keep)
    if decoupled and decay is not None:
        p.mul_(decay)
    normed = g / v.sqrt().clamp_(min=eps)
    if clipped:
        normed = normed.clamp_(min=-clip, max=clip)  # finite: m's weight of 0 on the first step keeps m
    else:  # g / eps may overflow on the first step (v = 0), and 0 * inf is NaN
        normed = gate(normed, keep_m)
    # The clip (or the first step's gate) would turn an inf gradient into a finite step and leave
    # v = inf, silently freezing the coordinate (every later g / sqrt(v) is 0). Adding 0*g (exact for
    # a finite g) makes a non-finite gradient's step NaN instead, as Adam's is.
    normed = normed.add_(g, alpha=0.0)
    ema_(m, normed, w1)
    p.addcmul_(m, neg_lr)
    v.mul_(b2).addcmul_(g, g * c2)


def laprop_(
    p: T, grad: T, m: T, v: T,
    keep: T | None, decay: T | None, b1: T, w1_lr: T, b2: T, eps: T,
    inv_sqrt_bc2: T, neg_step: T,
    w2: float, maximize: bool,
) -> None:
    """LaProp: momentum over the *normalised* gradient (Ziyin et al. 2020).

    ``v = b2*v + (1-b2)*g**2``; ``m = b1*m + (1-b1)*lr*g/(sqrt(v/bc2) + eps)``; ``p -= m / bc1`` with
    ``bc1 = lr_avg / lr`` and ``lr_avg = b1*lr_avg + (1-b1)*lr`` (an LR-aware bias correction, as in the
    reference code, so LR schedules stay correct; the optimizer keeps ``lr_avg`` and passes
    ``neg_step = -sf/bc1``); then ``p *= 1 - lr*wd``.
    """
    g = gate(signed(grad, maximize), keep)
    v.mul_(b2).addcmul_(g, g, value=w2)
    denom = v.sqrt().mul_(inv_sqrt_bc2).add_(eps)
    m.mul_(b1).addcmul_(g.div(denom), w1_lr)
    p.addcmul_(m, neg_step)
    if decay is not None:
        p.mul_(decay)


def acprop_(
    p: T, grad: T, m: T, s: T,
    keep: T | None, decay: T | None, w1: T, b2: T, neg_lr: T, sf: T,
    eps_add: T, k1: T, k2: T, c_g: T, c_m: T,
    w2: float, center_previous: bool, maximize: bool,
) -> None:
    """ACProp: centred second moment, used one step late (Zhuang et al. 2021).

    ``m = b1*m + (1-b1)*g``; ``s += eps``; ``p -= lr * num / (sqrt(s/bc2(t-1)) + eps)`` with ``num = g``
    (or ``m/bc1`` with momentum_update), using ``s`` from the *previous* step; the first step is
    ``p -= lr*m/bc1``; then ``s = b2*s + (1-b2)*(g - c)**2`` with ``c`` the updated momentum, or the
    momentum before this step's update with ``center_previous`` (optax's rule). The per-step scalars
    ``k1, k2, c_g, c_m, eps_add`` encode the first-step case.
    """
    g = gate(signed(grad, maximize), keep)
    if decay is not None:
        p.mul_(decay)
    if center_previous:
        r = (g - m).mul_(sf)
    ema_(m, g, w1)
    s.add_(eps_add)
    denom = s.sqrt().mul_(k1).add_(k2)
    num = (g * c_g).addcmul_(m, c_m)
    p.addcmul_(num.div_(denom), neg_lr)
    if not center_previous:
        r = (g - m).mul_(sf)
    s.mul_(b2).addcmul_(r, r, value=w2)


def madam_(
    p: T, grad: T, m: T, v: T,
    keep: T | None, decay: T | None, w1: T, b2: T,
    neg_scale: T,
    w2: float, g_scale: float, maximize: bool,
) -> None:
    """Adam without eps: ``p -= lr * m/bc1 / sqrt(v/bc2)``, 0 where ``m == 0``.

    ``v`` is stored times ``2**scale_log2`` (``g_scale = 2**(scale_log2/2)`` scales g exactly),
    so tiny gradients do not underflow; ``neg_scale = -lr*sf*sqrt(bc2)/bc1 * g_scale`` undoes it.
    """
    g = gate(signed(grad, maximize), keep)
    if decay is not None:
        p.mul_(decay)
    ema_(m, g, w1)
    gs = g * g_scale
    v.mul_(b2).addcmul_(gs, gs, value=w2)
    zero = torch.zeros((), dtype=m.dtype, device=m.device)
    update = torch.where((m == 0) | (v == 0), zero, m / v.sqrt())
    p.addcmul_(update, neg_scale)
