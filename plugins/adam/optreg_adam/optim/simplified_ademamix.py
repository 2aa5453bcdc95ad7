"""Simplified AdEMAMix (Morwani, Vyas, Kakade, Kwun & Ba 2025): one accumulated momentum, no slow EMA."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import check_number
from optreg.specs import MAX_STEPS
from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["SimplifiedAdEMAMix", "half_life_warmup"]


def half_life_warmup(t: torch.Tensor, beta_start: float, beta_end: float, warmup: int) -> torch.Tensor:
    """Linear warm-up of the half-life ``ln(0.5)/ln(beta + 1e-8) - 1`` from ``beta_start`` to ``beta_end``."""

    def half_life(beta: float) -> float:
        return math.log(0.5) / math.log(beta + 1e-8) - 1.0

    a = t / float(warmup)
    warm = torch.pow(0.5, 1.0 / ((1.0 - a) * half_life(beta_start) + a * half_life(beta_end) + 1.0))
    return torch.where(t < warmup, warm, torch.full_like(t, beta_end))


class SimplifiedAdEMAMix(PerTensorOptimizer):
    """Simplified AdEMAMix (Morwani et al. 2025, arXiv:2502.02431): one accumulated momentum, no slow EMA.

    Per step ``t``, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``), with
    ``h(b) = ln(0.5) / ln(b + 1e-8) - 1`` (the half-life of an EMA of factor ``b``)::

        beta1_t <- 0.5 ** (1 / ((1 - a) * h(min_beta1) + a * h(beta1) + 1)),  a = t / beta1_warmup
                                                         (while t < beta1_warmup; beta1 after, and without it)
        p   <- p * (1 - lr * weight_decay)
        m   <- beta1_t * m + g                           (a sum, not an average)
        v   <- beta2 * v + (1 - beta2) * g**2
        n   <- beta1_t * n + 1                           (sum_k prod beta1: bias_correction1 only)
        p   <- p - lr * (alpha * g + m) / (sqrt(v / (1 - beta2**t)) + eps)       (divided by n with bias_correction1)

    The paper's update (its Algorithm "Simplified-AdEMAMix", decoupled decay as there); the beta1
    warm-up on the half-life scale and the optional division by ``n`` follow the authors' code. Use a
    smaller LR than Adam: ``m`` sums about ``1 / (1 - beta1)`` gradients. State: ``exp_avg`` (m),
    ``exp_avg_sq`` (v), ``num_sum`` (n, 0-dim, float32 or the param's dtype if wider).
    ``step(step_factor=t)`` gates the step without a host sync.
    """

    kernel = staticmethod(K.simplified_ademamix_)
    buffers = ("exp_avg", "exp_avg_sq")
    scalar_state = ("num_sum",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.99, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, alpha: float = 0.0,
                 beta1_warmup: int | None = None, min_beta1: float = 0.9, bias_correction1: bool = False,
                 maximize: bool = False, compile: bool | str = "auto") -> None:
        check_number("alpha", alpha, ge=0)
        if beta1_warmup is not None:
            check_number("beta1_warmup", beta1_warmup, ge=1, le=MAX_STEPS)
        check_number("min_beta1", min_beta1, ge=0, lt=1)
        super().__init__(params, checked_defaults(lr, betas, eps, weight_decay, alpha=alpha,
                                                  beta1_warmup=beta1_warmup, min_beta1=min_beta1,
                                                  bias_correction1=bias_correction1, maximize=maximize,
                                                  compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        t = ctx.tc
        b1 = ctx.const(beta1).expand_as(t)
        if group["beta1_warmup"]:
            b1 = half_life_warmup(t, group["min_beta1"], beta1, group["beta1_warmup"])
        bc2 = 1.0 - beta2**t
        b1 = ctx.decay_to(b1)  # 1 on a skipped step
        num_sum = ctx.store_scalar_state("num_sum", ctx.scalar_state("num_sum") * b1 + ctx.sf_or_one())
        scale = ctx.gated(-ctx.lr) * bc2.sqrt()
        if group["bias_correction1"]:
            scale = scale / torch.where(num_sum != 0, num_sum, ctx.one)
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.decay_to(beta2))
        vectors = (b1, scale, group["eps"] * bc2.sqrt())
        return shared, vectors, (group["alpha"], 1.0 - beta2, group["maximize"])
