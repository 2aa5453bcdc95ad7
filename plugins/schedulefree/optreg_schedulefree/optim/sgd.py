"""Schedule-free SGD (Defazio et al. 2024, "The Road Less Scheduled")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import check_number, gate_grad, host_scalars, params_with_grads, real_view, use_foreach
from optreg_schedulefree import functional as F
from optreg_schedulefree._coefficients import Coefficients
from optreg_schedulefree.optim.base import ScheduleFreeOptimizer, check_schedule_free_options

__all__ = ["ScheduleFreeSGD"]


class ScheduleFreeSGD(ScheduleFreeOptimizer):
    """Schedule-free SGD (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024, "The Road Less
    Scheduled", arXiv:2405.15682); ``momentum`` is the interpolation coefficient beta.

    Per step, with ``k`` steps taken before it, for every parameter ``p = y`` with gradient ``g``
    (its stored ``z``)::

        lr_t   = lr * min(1, (k + 1) / warmup_steps)          (lr when warmup_steps = 0)
        lr_max <- max(lr_max, lr_t)
        w      =  (k + 1)^r * lr_max^weight_lr_power
        W      <- W + w
        c      =  w / W                                       (0 while W = 0)
        u      =  g                                           (-g with maximize)
        u      <- u + weight_decay * (y if weight_decay_at_y else z)
        y      <- (1 - c) * y + c * z + lr_t * (momentum * (1 - c) - 1) * u
        z      <- z - lr_t * u

    which keeps ``y = momentum * x + (1 - momentum) * z`` with the average ``x <- (1 - c) * x + c * z``
    (``eval()`` puts ``x`` in the parameters, ``train()`` puts ``y`` back); the interpolation replaces
    SGD's momentum.

    As the authors' ``schedulefree.SGDScheduleFree``, except: a fresh optimizer starts in train mode;
    the gradients are not overwritten (the package adds the decay to ``p.grad``); the step counters and
    averaging weights are 0-dim tensors, so ``step(step_factor=t)`` gates a step with no host sync;
    ``weight_decay_at_y = false`` computes the decay at ``z``; ``maximize`` as in ``torch.optim``; complex
    params step as their ``view_as_real``; ``foreach`` unset takes the per-tensor loop on CPU.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        weight_decay_at_y: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        check_schedule_free_options(lr, weight_decay, warmup_steps, r, weight_lr_power)
        check_number("momentum", momentum, gt=0, lt=1)  # the interpolation: eval() divides by it
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
            "weight_decay_at_y": weight_decay_at_y,
            "maximize": maximize,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["momentum"]

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        sf, lr, ckp1, k = self._weights(group, step_factor)
        if not params:
            return
        self._init_state(params, second_moment=False)
        device = k.device
        coefs = Coefficients(
            {"c_lerp": ckp1 * sf, "c_y": lr * (group["momentum"] * (1 - ckp1) - 1) * sf, "c_z": -lr * sf},
            host=step_factor is None and host_scalars(device),
        )
        ys = [real_view(p) for p in params]
        grads = [gate_grad(real_view(p.grad), step_factor) for p in params]
        zs = [real_view(self.state[p]["z"]) for p in params]
        options = {
            "decay": group["weight_decay"],
            "decay_at_y": group["weight_decay_at_y"],
            "maximize": group.get("maximize", False),
            "owned": step_factor is not None,  # gate_grad() made copies; plain gradients are the user's
        }
        if use_foreach(group["foreach"], params):
            F.multi_tensor_sf_sgd(ys, grads, zs, coefs, fused=not host_scalars(device), **options)
        else:
            F.single_tensor_sf_sgd(ys, grads, zs, coefs, scratch=self.scratch, **options)
