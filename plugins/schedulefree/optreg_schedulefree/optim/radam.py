"""Schedule-free RAdam: RAdam's rectification instead of a warmup (Defazio et al. 2024; Liu et al. 2020)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg_schedulefree.optim.adamw import ScheduleFreeAdamW, adamw_defaults
from optreg_schedulefree.optim.base import ScheduleFreeOptimizer

__all__ = ["ScheduleFreeRAdam"]


class ScheduleFreeRAdam(ScheduleFreeAdamW):
    """Schedule-free RAdam (Defazio et al. 2024, arXiv:2405.15682, with RAdam's rectification, Liu et al.
    2020, arXiv:1908.03265): the rectification replaces the warmup.

    As :class:`~optreg_schedulefree.optim.ScheduleFreeAdamW`, with the step's LR rectified. With
    ``t = k + 1`` (``k`` steps taken before this one)::

        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 * t * beta2^t / (1 - beta2^t)
        rect    = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                  where rho_t > 4, else 0 (silent_sgd_phase) or 1
        lr_t    = lr * min(1, t / warmup_steps) * rect
        u       = g / (sqrt(v / (1 - beta2^t)) + eps)   where rho_t > 4, else g   (-u with maximize)
        u       <- u + weight_decay * (y if weight_decay_at_y else z)
        y       <- (1 - c) * y + c * z + lr_t * (beta1 * (1 - c) - 1) * u
        z       <- z - lr_t * u

    ``v``, ``lr_max``, the weights ``w`` and ``c`` as in schedule-free AdamW (``lr_max`` and ``w`` from
    the rectified ``lr_t``). Until the variance estimate is tractable (``rho_t <= 4``, the first 4 steps
    with ``beta2 = 0.999``) it takes no step (``silent_sgd_phase``, the default) or plain SGD steps.
    Differences from the authors' ``schedulefree.RAdamScheduleFree``: those of schedule-free AdamW
    (train mode first, gradients kept, ``step_factor``, ``maximize``, complex params, ``foreach``,
    ``compile``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        weight_decay_at_y: bool = True,
        silent_sgd_phase: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool | str = "auto",
    ) -> None:
        defaults = adamw_defaults(
            lr, betas, eps, weight_decay, warmup_steps, r, weight_lr_power, weight_decay_at_y, maximize, foreach,
            compile,
        )
        defaults["silent_sgd_phase"] = silent_sgd_phase
        ScheduleFreeOptimizer.__init__(self, params, defaults)  # AdamW's __init__ only builds its defaults

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """RAdam's rectification of the LR and whether the variance is tractable (Liu et al. 2020)."""
        beta2 = group["betas"][1]
        step = k + 1
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
        tractable = rho_t > 4
        ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        before = 0.0 if group["silent_sgd_phase"] else 1.0
        rect = torch.where(tractable, torch.sqrt(torch.clamp(ratio, min=0)), before)
        return rect, tractable
