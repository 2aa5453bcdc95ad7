"""Madam: magnitude-aware Adam with no eps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import check_number
from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["Madam"]


class Madam(PerTensorOptimizer):
    """Madam: Adam with no eps, so the step size never depends on the gradient's scale, however small.

    Per step ``t``, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``) and
    ``S = 2**scale_log2``::

        p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * (sqrt(S) * g)**2            (v is stored times S)
        p <- p - lr * (m / (1 - beta1**t)) / sqrt(v / (S * (1 - beta2**t)))    (0 where m == 0 or v == 0)

    That is Adam (Kingma & Ba 2015) with ``eps = 0``: with no eps the update is invariant to the
    gradient's scale. Storing ``v`` times the exact power of two ``S`` keeps the squares of tiny
    gradients from underflowing (``scale_log2 = 0`` stores plain ``v``), and a coordinate that never
    had a gradient (``m == 0``) gets a zero update instead of ``0/0``, the eps-free normalisation with
    a mask of Bernstein et al. 2020 (arXiv:2006.14560), whose multiplicative "Madam" update this is
    not. Decoupled weight decay, applied before the step. State: ``exp_avg`` (m), ``exp_avg_sq``
    (``S * v``). ``step(step_factor=t)`` gates the step without a host sync.
    """

    kernel = staticmethod(K.madam_)
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, *, scale_log2: int = 32, maximize: bool = False,
                 compile: bool | str = "auto") -> None:
        check_number("scale_log2", scale_log2, ge=0, le=120)
        if scale_log2 % 2:
            raise ValueError(f"scale_log2 must be even (the sqrt of 2**scale_log2 stays exact), got {scale_log2!r}")
        super().__init__(params, checked_defaults(lr, betas, None, weight_decay, scale_log2=scale_log2,
                                                  maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        half = group["scale_log2"] // 2
        t = ctx.tc
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.gated(ctx.const(1.0 - beta1)), ctx.decay_to(beta2))
        vectors = (ctx.gated(-ctx.lr * torch.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) * 2.0**half),)
        return shared, vectors, (1.0 - beta2, 2.0**half, group["maximize"])
