"""ADOPT (Taniguchi et al. 2024): Adam that converges for any beta2."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import check_number
from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["ADOPT"]


class ADOPT(PerTensorOptimizer):
    """ADOPT (Taniguchi et al. 2024, arXiv:2411.02853, Algorithm 2): Adam that converges for any beta2.

    The gradient is normalised by the second moment of the *previous* steps, clipped, then averaged
    into the momentum. Per step ``t`` (``t = 1`` the first), for every parameter ``p`` with gradient
    ``g`` (``-g`` with ``maximize``)::

        g <- g + weight_decay * p                  (L2, the default; every step)
        p <- p * (1 - lr * weight_decay)           (instead, with decoupled_weight_decay; every step)
        if t == 1:
            v <- g**2                              (initialises v: p and m do not move)
        else:
            c <- t**clip_exponent                  (no clip with clip = false)
            m <- beta1 * m + (1 - beta1) * clamp(g / max(sqrt(v), eps), -c, c)
            p <- p - lr * m
            v <- beta2 * v + (1 - beta2) * g**2

    ``t`` counts the initialising step, as the authors' code and pytorch-optimizer's ``ADOPT`` (same
    results; its ``weight_decouple`` is ``decoupled_weight_decay``); the paper counts from the first
    update, so at its step ``tau`` the bound here is ``(tau + 1)**(1/4)`` where it writes
    ``tau**(1/4)``. One addition: a non-finite ``g`` makes the step NaN (as Adam's would) where the
    clip would turn it into a finite step and leave ``v = inf``, silently freezing the coordinate.
    State: ``exp_avg`` (m), ``exp_avg_sq`` (v). ``step(step_factor=t)`` gates the step without a
    host sync.
    """

    kernel = staticmethod(K.adopt_)
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.9999),
                 eps: float = 1e-6, weight_decay: float = 0.0, *, clip: bool = True, clip_exponent: float = 0.25,
                 decoupled_weight_decay: bool = False, maximize: bool = False, compile: bool | str = "auto") -> None:
        check_number("clip_exponent", clip_exponent, gt=0)
        super().__init__(params, checked_defaults(lr, betas, eps, weight_decay, eps_gt_zero=True, clip=clip,
                                                  clip_exponent=clip_exponent,
                                                  decoupled_weight_decay=decoupled_weight_decay,
                                                  maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        later = ctx.t > 1.5  # not the first (v-initialising) step
        later_f = later.to(ctx.dtype)
        keep_m = later if ctx.keep is None else later & ctx.keep
        clip = ctx.tc ** group["clip_exponent"]
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.const(group["eps"]))
        vectors = (
            keep_m,
            ctx.gated(later_f * (1.0 - beta1)),
            ctx.gated(-ctx.lr * later_f),
            1.0 - ctx.gated(later_f * (1.0 - beta2)),
            torch.where(later, ctx.const(1.0 - beta2), ctx.one),
            clip,
        )
        decoupled = group["decoupled_weight_decay"]
        return shared, vectors, (group["weight_decay"], decoupled, group["clip"], group["maximize"])
