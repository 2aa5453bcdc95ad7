"""COCOB-Backprop: per-coordinate continuous coin betting.

Orabona & Tommasi 2017, "Training Deep Networks without Learning Rates Through
Coin Betting" (NeurIPS 2017, arXiv:1705.07795), Algorithm 2. Each coordinate
bets a fraction of its "wealth" (``L + reward``) on the sign of the negative
gradient sum; the new point is ``x0 + theta / (L * max(G + L, alpha * L)) * (L + reward)``
with ``theta = -sum g``, ``L = max |g|``, ``G = sum |g|``.

A group's ``lr`` scales the gradients the bettor sees (as in optax's
``cocob``), so ``lr = 0`` freezes a group; weight decay is L2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import OptregOptimizer, gate_grad, params_with_grads

__all__ = ["COCOB"]


class COCOB(OptregOptimizer):
    """COCOB-Backprop (Orabona & Tommasi 2017). State per parameter: x0, theta, L, G, reward."""

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
                state["max_abs_grad"] = torch.full_like(p, eps, memory_format=torch.preserve_format)
                state["sum_abs_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["reward"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grad = p.grad if decay == 0 else p.grad.add(p, alpha=decay)
            if isinstance(lr, torch.Tensor) or lr != 1.0:
                grad = grad * lr
            grad = gate_grad(grad, step_factor)
            x0, theta = state["x0"], state["theta"]
            big_l, big_g, reward = state["max_abs_grad"], state["sum_abs_grad"], state["reward"]
            abs_grad = grad.abs()
            torch.maximum(big_l, abs_grad, out=big_l)
            big_g.add_(abs_grad)
            reward.sub_(grad * (p - x0)).clamp_(min=0)
            theta.sub_(grad)
            bet = torch.maximum(big_g + big_l, alpha * big_l).mul_(big_l)
            p.copy_(x0 + theta.div(bet).mul_(big_l + reward))

