"""LaProp (Ziyin, Wang & Ueda 2020): momentum applied after the adaptive normalisation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["LaProp"]


class LaProp(PerTensorOptimizer):
    """LaProp (Ziyin, Wang & Ueda 2020, arXiv:2002.04839, Algorithm 1): momentum over the normalised gradient.

    Decoupling momentum from the adaptive denominator lets ``beta1`` and ``beta2`` be set
    independently (any ``beta2 >= 0``). Per step ``t``, for every parameter ``p`` with gradient ``g``
    (``-g`` with ``maximize``) and the step's ``lr``::

        v      <- beta2 * v + (1 - beta2) * g**2
        m      <- beta1 * m + (1 - beta1) * lr * g / (sqrt(v / (1 - beta2**t)) + eps)
        lr_avg <- beta1 * lr_avg + (1 - beta1) * lr
        p      <- p - m / (lr_avg / lr)
        p      <- p * (1 - lr * weight_decay)

    With a constant LR, ``m / (lr_avg / lr)`` is the paper's ``lr * m' / (1 - beta1**t)`` (``m'`` its
    momentum of normalised gradients); the LR inside the momentum and its LR-weighted bias correction
    come from the authors' code, so an LR schedule reaches past steps as it did when they were taken.
    Decoupled weight decay, applied after the step. The same results as pytorch-optimizer's ``LaProp``
    (``weight_decouple=True``). State: ``exp_avg`` (m), ``exp_avg_sq`` (v), ``exp_avg_lr`` (lr_avg,
    0-dim, float32 or the param's dtype if wider). ``step(step_factor=t)`` gates the step without a
    host sync.
    """

    kernel = staticmethod(K.laprop_)
    buffers = ("exp_avg", "exp_avg_sq")
    scalar_state = ("exp_avg_lr",)

    def __init__(self, params: Iterable[Any], lr: float = 4e-4, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-15, weight_decay: float = 0.0, *, maximize: bool = False,
                 compile: bool | str = "auto") -> None:
        super().__init__(params, checked_defaults(lr, betas, eps, weight_decay, maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        w1_lr = ctx.gated((1.0 - beta1) * ctx.lr)
        # the LR-aware bias correction: lr_avg = b1*lr_avg + (1-b1)*lr, bc1 = lr_avg / lr
        lr_avg = ctx.store_scalar_state("exp_avg_lr", ctx.scalar_state("exp_avg_lr") * ctx.decay_to(beta1) + w1_lr)
        inv_bc1 = torch.where(lr_avg != 0, ctx.lr / lr_avg, ctx.one)
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.decay_to(beta1), w1_lr, ctx.decay_to(beta2),
                  ctx.const(group["eps"]))
        vectors = (torch.rsqrt(1.0 - beta2**ctx.tc), -(inv_bc1 * ctx.sf_or_one()))
        return shared, vectors, (1.0 - beta2, group["maximize"])
