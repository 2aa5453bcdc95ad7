"""AdEMAMix (Pagliardini, Ablin & Grangier 2024): Adam plus a slow gradient EMA mixed into the numerator."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import check_number
from optreg.specs import MAX_STEPS
from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["AdEMAMix", "beta3_schedule"]


def beta3_schedule(t: torch.Tensor, beta_start: float, beta_end: float, warmup: int) -> torch.Tensor:
    """The paper's beta3 warm-up: the EMA's half-life grows linearly from ``beta_start``'s to ``beta_end``'s.

    ``exp(ln(b_start) ln(b_end) / ((1 - a) ln(b_end) + a ln(b_start)))`` with ``a = min(t/warmup, 1)``.
    """
    if beta_end == 0.0:  # no slow EMA at all: nothing to warm up (and ln(0) is undefined)
        return torch.zeros_like(t)
    a = torch.clamp(t / warmup, max=1.0)
    ls, le = math.log(max(beta_start, 1e-8)), math.log(beta_end)
    return torch.clamp(torch.exp(ls * le / ((1.0 - a) * le + a * ls)), max=beta_end)


class AdEMAMix(PerTensorOptimizer):
    """AdEMAMix (Pagliardini, Ablin & Grangier 2024, arXiv:2409.03137, Algorithm 1).

    Adam plus a slow EMA ``m2`` (``beta3`` near 1) added to the numerator with weight ``alpha``.
    Per step ``t``, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``)::

        alpha_t <- alpha * min(t / alpha_warmup, 1)                      (alpha without alpha_warmup)
        beta3_t <- exp(ln(beta1) ln(beta3) / ((1 - a) ln(beta3) + a ln(beta1))),  a = min(t / beta3_warmup, 1)
                                                                         (beta3 without beta3_warmup)
        p  <- p * (1 - lr * weight_decay)
        m1 <- beta1 * m1 + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g**2
        m2 <- beta3_t * m2 + (1 - beta3_t) * g
        p  <- p - lr * (m1 / (1 - beta1**t) + alpha_t * m2) / (sqrt(v / (1 - beta2**t)) + eps)

    As the paper: ``m2`` has no bias correction, the warm-ups are its schedulers (``T_alpha`` and
    ``T_beta3`` are separate options here), and shrinking ``p`` first equals its ``- lr * wd * p``
    term. The same results as pytorch-optimizer's ``AdEMAMix`` (``weight_decouple=True``, one
    ``t_alpha_beta3`` for both warm-ups). State: ``exp_avg`` (m1), ``exp_avg_sq`` (v), ``exp_avg_slow``
    (m2). ``step(step_factor=t)`` gates the step without a host sync.
    """

    kernel = staticmethod(K.ademamix_)
    buffers = ("exp_avg", "exp_avg_sq", "exp_avg_slow")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.9, 0.999, 0.9999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, alpha: float = 2.0, alpha_warmup: int | None = None,
                 beta3_warmup: int | None = None, maximize: bool = False, compile: bool | str = "auto") -> None:
        check_number("alpha", alpha, ge=0)
        for name, warmup in (("alpha_warmup", alpha_warmup), ("beta3_warmup", beta3_warmup)):
            if warmup is not None:
                check_number(name, warmup, ge=1, le=MAX_STEPS)
        super().__init__(params, checked_defaults(lr, betas, eps, weight_decay, n_betas=3, alpha=alpha,
                                                  alpha_warmup=alpha_warmup, beta3_warmup=beta3_warmup,
                                                  maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2, beta3 = group["betas"]
        t = ctx.tc
        alpha = ctx.const(group["alpha"]).expand_as(t)
        if group["alpha_warmup"]:
            alpha = group["alpha"] * torch.clamp(t / group["alpha_warmup"], max=1.0)
        b3 = ctx.const(beta3).expand_as(t)
        if group["beta3_warmup"]:
            b3 = beta3_schedule(t, beta1, beta3, group["beta3_warmup"])
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.gated(ctx.const(1 - beta1)), ctx.decay_to(beta2),
                  ctx.gated(-ctx.lr), ctx.const(group["eps"]))
        vectors = (1.0 / (1.0 - beta1**t), torch.rsqrt(1.0 - beta2**t), ctx.gated(1.0 - b3), alpha)
        return shared, vectors, (1.0 - beta2, group["maximize"])
