"""COCOB-Backprop: per-coordinate continuous coin betting.

Orabona & Tommasi 2017, "Training Deep Networks without Learning Rates Through
Coin Betting" (NeurIPS 2017, arXiv:1705.07795), Algorithm 2. Each coordinate
bets a fraction of its "wealth" (``L + reward``) on the sign of the negative
gradient sum; the new point is ``x0 + theta / (L * max(G + L, alpha * L)) * (L + reward)``
with ``theta = -sum g``, ``L = max |g|``, ``G = sum |g|``.

A group's ``lr`` scales the gradients the bettor sees (as in optax's
``cocob``). COCOB is invariant to the scale of its gradients (``theta``, ``L``,
``G`` and the reward all scale with them), so every positive ``lr`` gives the
same trajectory (up to the initial ``L = eps``), and an LR schedule changes
nothing until it reaches 0; ``lr = 0`` freezes a group. Weight decay is L2.
Complex params are stepped as their ``torch.view_as_real`` (each real and
imaginary part bets on its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import OptregOptimizer, gate_grad, params_with_grads
from optreg_paramfree._common import real_view

__all__ = ["COCOB"]


class COCOB(OptregOptimizer):
    """COCOB-Backprop (Orabona & Tommasi 2017). State per parameter: x0, theta, L, G, reward.

    ``lr`` only scales the gradients, to which COCOB is invariant: any positive ``lr`` (and any
    schedule above 0) gives the same trajectory; 0 freezes the group.
    """

    #: Why an LR schedule is pointless here (``optreg.scheduling.ScheduledLR`` warns with it).
    schedule_warning = (
        "COCOB multiplies the gradients by the LR (as optax does) and is invariant to their scale, so every "
        "positive LR gives the same trajectory: the schedule has no effect until it reaches 0, which freezes "
        "the params"
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        alpha: float = 100.0,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not float(lr) >= 0 or not weight_decay >= 0:
            raise ValueError("lr and weight_decay must be >= 0")
        if not alpha > 0 or not eps > 0:
            raise ValueError("alpha and eps must be > 0")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay})

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        alpha, eps, decay, lr = group["alpha"], group["eps"], group["weight_decay"], group["lr"]
        for p in params_with_grads(group):
            state = self.state[p]
            if "x0" not in state:
                state["x0"] = p.detach().clone(memory_format=torch.preserve_format)
                state["theta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                # Through the real view: full_like(complex, eps) would be eps + 0j, not eps in both parts.
                state["max_abs_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                real_view(state["max_abs_grad"]).fill_(eps)
                state["sum_abs_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["reward"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            param, grad = real_view(p), real_view(p.grad)
            if decay != 0:
                grad = grad.add(param, alpha=decay)
            if isinstance(lr, torch.Tensor) or lr != 1.0:
                grad = grad * lr
            grad = gate_grad(grad, step_factor)
            x0, theta = real_view(state["x0"]), real_view(state["theta"])
            big_l, big_g, reward = (real_view(state[key]) for key in ("max_abs_grad", "sum_abs_grad", "reward"))
            abs_grad = grad.abs()
            torch.maximum(big_l, abs_grad, out=big_l)
            big_g.add_(abs_grad)
            reward.sub_(grad * (param - x0)).clamp_(min=0)
            theta.sub_(grad)
            bet = torch.maximum(big_g + big_l, alpha * big_l).mul_(big_l)
            param.copy_(x0 + theta.div(bet).mul_(big_l + reward))

