"""Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.compiling import can_flatten, check_compile_setting, flat, run_compiled, use_compile
from optreg.optim import (
    check_betas,
    check_number,
    gate_grad,
    host_scalars,
    keep_factor,
    params_with_grads,
    real_view,
    use_foreach,
)
from optreg_schedulefree import functional as F
from optreg_schedulefree._coefficients import Coefficients
from optreg_schedulefree.optim.base import ScheduleFreeOptimizer, check_schedule_free_options

__all__ = ["ScheduleFreeAdamW"]


def adamw_defaults(
    lr: Any, betas: tuple[float, float], eps: float, weight_decay: float, warmup_steps: int, r: float,
    weight_lr_power: float, weight_decay_at_y: bool, maximize: bool, foreach: bool | None, compile: bool | str,
) -> dict[str, Any]:
    """The checked param-group defaults of schedule-free AdamW (RAdam adds its own option to them)."""
    check_schedule_free_options(lr, weight_decay, warmup_steps, r, weight_lr_power)
    check_betas(betas, 2)
    check_number("betas[0]", betas[0], gt=0, lt=1)  # the interpolation: eval() divides by it
    check_number("eps", eps, ge=0)
    return {
        "lr": lr,
        "betas": tuple(betas),
        "eps": eps,
        "weight_decay": weight_decay,
        "warmup_steps": warmup_steps,
        "r": r,
        "weight_lr_power": weight_lr_power,
        "weight_decay_at_y": weight_decay_at_y,
        "maximize": maximize,
        "foreach": foreach,
        "compile": check_compile_setting(compile),
    }


class ScheduleFreeAdamW(ScheduleFreeOptimizer):
    """Schedule-free AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024, "The Road Less
    Scheduled", arXiv:2405.15682): no LR schedule; evaluate in eval mode.

    Per step, with ``k`` steps taken before it, ``(beta1, beta2) = betas``, and for every parameter
    ``p = y`` with gradient ``g`` (its stored ``z``, second moment ``v``)::

        lr_t   = lr * min(1, (k + 1) / warmup_steps)          (lr when warmup_steps = 0)
        lr_max <- max(lr_max, lr_t)
        w      =  (k + 1)^r * lr_max^weight_lr_power
        W      <- W + w
        c      =  w / W                                       (0 while W = 0)
        v      <- beta2 * v + (1 - beta2) * g^2
        u      =  g / (sqrt(v / (1 - beta2^(k + 1))) + eps)    (-u with maximize)
        u      <- u + weight_decay * (y if weight_decay_at_y else z)
        y      <- (1 - c) * y + c * z + lr_t * (beta1 * (1 - c) - 1) * u
        z      <- z - lr_t * u

    which keeps ``y = beta1 * x + (1 - beta1) * z`` with the average ``x <- (1 - c) * x + c * z``
    (``eval()`` puts ``x`` in the parameters, ``train()`` puts ``y`` back). No first moment: the
    interpolation ``beta1`` replaces it.

    As the authors' ``schedulefree.AdamWScheduleFree``, except: a fresh optimizer starts in train
    mode (``train()`` first is harmless, not required); the gradients are not overwritten; the step
    counters and averaging weights are 0-dim tensors, so ``step(step_factor=t)`` gates a step with
    no host sync; ``weight_decay_at_y = false`` computes the decay at ``z`` (the package's
    ``AdamWScheduleFreeReference(decay_at_z=True)``); ``maximize`` as in ``torch.optim``; complex
    params step as their ``view_as_real`` (as ``torch.optim.Adam``); ``foreach`` unset takes the
    per-tensor loop on CPU; ``compile = true`` runs the step as one fused pass per tensor.
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
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool | str = "auto",
    ) -> None:
        defaults = adamw_defaults(
            lr, betas, eps, weight_decay, warmup_steps, r, weight_lr_power, weight_decay_at_y, maximize, foreach,
            compile,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("compile", False)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["betas"][0]

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A factor on the LR and where Adam's denominator applies (RAdam's rectification); none here."""
        return None, None

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        k = group["k"]
        factor, use_adam = self._lr_factor(group, k)
        sf, lr, ckp1, k = self._weights(group, step_factor, factor)
        if not params:
            return
        self._init_state(params, second_moment=True)
        beta1, beta2 = group["betas"]
        device = k.device
        tensors = {
            "keep2": keep_factor(sf, beta2),  # a skipped step keeps v (its gradient is gated to 0)
            "bc2": 1 - beta2 ** (k + 1),
            "use_adam": use_adam,
            "c_lerp": ckp1 * sf,
            "c_y": lr * (beta1 * (1 - ckp1) - 1) * sf,
            "c_z": -lr * sf,
        }
        options = {
            "beta2": beta2,
            "eps": group["eps"],
            "decay": group["weight_decay"],
            "decay_at_y": group["weight_decay_at_y"],
            "maximize": group.get("maximize", False),
        }
        if use_compile(group.get("compile", False), params):
            params = self._step_compiled(params, step_factor, tensors, options)
            if not params:
                return
        coefs = Coefficients(tensors, host=step_factor is None and host_scalars(device))
        ys = [real_view(p) for p in params]
        grads = [gate_grad(real_view(p.grad), step_factor) for p in params]
        zs = [real_view(self.state[p]["z"]) for p in params]
        vs = [real_view(self.state[p]["exp_avg_sq"]) for p in params]
        if use_foreach(group["foreach"], params):
            F.multi_tensor_sf_adam(ys, grads, zs, vs, coefs, fused=not host_scalars(device), **options)
        else:
            F.single_tensor_sf_adam(ys, grads, zs, vs, coefs, scratch=self.scratch, **options)

    def _step_compiled(
        self,
        params: list[torch.Tensor],
        step_factor: torch.Tensor | None,
        tensors: dict[str, torch.Tensor | None],
        options: dict[str, Any],
    ) -> list[torch.Tensor]:
        """Step every param whose tensors are contiguous through the compiled kernel; return the others."""
        rest, calls = [], []
        scalars_on: dict[torch.device, list[torch.Tensor | None]] = {}  # keep, then the kernel's scalars
        constants = (float(options["eps"]), float(options["decay"]), bool(options["decay_at_y"]),
                     bool(options["maximize"]))
        c2 = torch.full((), 1 - options["beta2"], dtype=tensors["bc2"].dtype, device=tensors["bc2"].device)
        for p in params:
            state = self.state[p]
            y, g, z, v = real_view(p), real_view(p.grad), real_view(state["z"]), real_view(state["exp_avg_sq"])
            if not can_flatten(y, g, z, v):
                rest.append(p)
                continue
            if p.device not in scalars_on:
                # A plain step passes keep = True: it runs the graph of a step_factor = 1 step.
                keep = (torch.ones((), dtype=torch.bool, device=p.device) if step_factor is None
                        else step_factor.to(p.device) != 0)
                on_device = [tensors["keep2"], c2, tensors["bc2"], tensors["use_adam"], tensors["c_lerp"],
                             tensors["c_y"], tensors["c_z"]]
                scalars_on[p.device] = [keep] + [None if t is None else t.to(p.device, non_blocking=True)
                                                 for t in on_device]
            calls.append((flat(y), flat(g), flat(z), flat(v), *scalars_on[p.device], *constants))
        if calls:
            run_compiled(F.sf_adam_tensor, calls)
        return rest
