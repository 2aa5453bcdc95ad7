"""Prodigy: Adam whose step size ``d`` is estimated on the fly.

Mishchenko & Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
Learner" (arXiv:2306.06101). The update follows the authors' ``prodigyopt``
implementation; what differs is what it could not do:

* groups with different ``lr`` values: each ``lr`` multiplies ``d`` for its
  group (the reference raises unless every ``lr`` is equal or 0);
* ``per_group_d = True``: each group estimates its own ``d``;
* ``d`` and its statistics are 0-dim tensors (no ``.item()`` per parameter per
  step), and ``step(step_factor=t)`` can skip a step without a host sync.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import gate_grad, params_with_grads
from optreg_paramfree._common import (
    ScopedScalarOptimizer,
    adam_coefficients,
    add_scaled_,
    axpby_,
    dot,
    ema_square_,
    keep_factor,
    l1_norm,
    real_view,
)

__all__ = ["Prodigy"]


class Prodigy(ScopedScalarOptimizer):
    """Prodigy (Mishchenko & Defazio 2023) with per-group ``lr`` multipliers and an optional per-group ``d``.

    ``param_groups[i]["d"]`` (and :attr:`d`) is the current estimate; the step
    size of group ``i`` is ``d * lr_i`` (times Adam's bias correction when
    ``use_bias_correction``).
    """

    SCALARS = ("d", "d_max", "d_numerator", "k")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float | None = None,
        slice_p: int = 1,
        per_group_d: bool = False,
    ) -> None:
        if not float(lr) >= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid betas: {betas}")
        if beta3 is not None and not 0.0 <= beta3 < 1.0:
            raise ValueError(f"Invalid beta3: {beta3}")
        if not eps >= 0 or not weight_decay >= 0:
            raise ValueError("eps and weight_decay must be >= 0")
        if not d0 > 0 or not d_coef > 0:
            raise ValueError("d0 and d_coef must be > 0")
        if growth_rate is not None and not growth_rate >= 1:
            raise ValueError(f"growth_rate must be >= 1, got {growth_rate}")
        if int(slice_p) < 1:
            raise ValueError(f"slice_p must be >= 1, got {slice_p}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "beta3": beta3,
            "eps": eps,
            "weight_decay": weight_decay,
            "decouple": decouple,
            "use_bias_correction": use_bias_correction,
            "safeguard_warmup": safeguard_warmup,
            "d0": d0,
            "d_coef": d_coef,
            "growth_rate": growth_rate,
            "slice_p": int(slice_p),
        }
        super().__init__(params, defaults, per_group_d=per_group_d)

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        return {"d": group["d0"], "d_max": group["d0"], "d_numerator": 0.0, "k": 0.0}

    @property
    def d(self) -> float | list[float]:
        """The current ``d``: one number, or one per group with ``per_group_d``."""
        values = self._scalar_values("d")
        return values if self.per_group_d else values[0]

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        d, d_max, numerator, k = (leader[key] for key in self.SCALARS)
        d0, d_coef, growth = leader["d0"], leader["d_coef"], leader["growth_rate"]
        beta3 = leader["beta3"] if leader["beta3"] is not None else math.sqrt(leader["betas"][1])
        safeguard = leader["safeguard_warmup"]
        sf = self._gate(step_factor, d)
        zero = torch.zeros_like(d)

        delta_numerator, d_denom, any_active = zero, zero, zero
        plans = []
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            beta1, beta2, active, gate, dlr, keep1, keep2 = adam_coefficients(group, d, k, sf, self._lr_of(group, d))
            any_active = torch.maximum(any_active, active)
            keep3 = keep_factor(gate, beta3)
            c1 = d * (1 - beta1) * gate  # Adam's moments average d * g (as in prodigyopt)
            c2 = d * d * (1 - beta2) * gate
            c_num = (d / d0) * dlr * gate
            c_s = (d / d0) * (d if safeguard else dlr) * gate
            decay, decouple, slice_p = group["weight_decay"], group["decouple"], group["slice_p"]
            for p in params:
                param = real_view(p)
                grad = real_view(p.grad)
                if decay != 0 and not decouple:
                    grad = grad.add(param, alpha=decay)
                grad = gate_grad(grad, step_factor)
                state = self.state[p]
                if "exp_avg_sq" not in state:
                    flat = param.detach().reshape(-1)[::slice_p]
                    state["s"] = torch.zeros_like(flat)
                    state["p0"] = flat.clone()
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s, p0 = state["s"], state["p0"]
                grad_slice = grad.reshape(-1)[::slice_p]
                diff = torch.sub(p0, param.reshape(-1)[::slice_p], out=self.scratch.get(p0))
                delta_numerator = delta_numerator + c_num * dot(grad_slice, diff)
                if beta1 > 0:
                    axpby_(real_view(state["exp_avg"]), keep1, grad, c1)
                ema_square_(real_view(state["exp_avg_sq"]), keep2, grad, c2, self.scratch.get(param, 1))
                axpby_(s, keep3, grad_slice, c_s)
                d_denom = d_denom + active * l1_norm(s, diff)
            plans.append((group, params, dlr, active))

        new_numerator = numerator * beta3 + delta_numerator
        # `!= 0`, not `> 0`: a NaN sum (a NaN gradient) must reach d, not skip the update as "no progress".
        progress = (d_denom != 0).to(d.dtype)
        d_hat = d_coef * new_numerator / torch.where(progress != 0, d_denom, torch.ones_like(d_denom))
        new_d_max = torch.maximum(d_max, d_hat)
        new_d = torch.where(d == d0, torch.maximum(d, d_hat), d)
        new_d = new_d_max if growth is None else torch.minimum(new_d_max, new_d * growth)
        take = sf * progress
        move_d = (take * any_active) != 0
        d_next = torch.where(move_d, new_d, d)
        self._write(
            scope,
            {
                "d": d_next,
                "d_max": torch.where(move_d, new_d_max, d_max),
                "d_numerator": torch.where(take != 0, new_numerator, numerator),
                "k": k + take,
            },
        )

        for group, params, dlr, active in plans:
            move = take * active
            eps, decay = group["eps"], group["weight_decay"]
            beta1 = group["betas"][0]
            for p in params:
                param, state = real_view(p), self.state[p]
                denom = torch.sqrt(real_view(state["exp_avg_sq"]), out=self.scratch.get(param)).add_(d_next * eps)
                if decay != 0 and group["decouple"]:
                    add_scaled_(param, param, -decay * dlr * move)
                if beta1 > 0:
                    add_scaled_(param, torch.div(real_view(state["exp_avg"]), denom, out=denom), -dlr * move)
                else:
                    grad = real_view(p.grad)
                    if decay != 0 and not group["decouple"]:
                        grad = grad.add(param, alpha=decay)
                    grad = gate_grad(grad, step_factor)
                    add_scaled_(param, torch.div(grad, denom, out=denom), -dlr * d_next * move)
