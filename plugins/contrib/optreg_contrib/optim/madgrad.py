"""MADGRAD (Defazio & Jelassi 2021, arXiv:2101.11075), as the authors' code (facebookresearch/madgrad) runs it."""

from __future__ import annotations

import math
from typing import Any

import torch

from optreg.optim import OptregOptimizer, check_number, params_with_grads, real_view

__all__ = ["MADGRAD"]


class MADGRAD(OptregOptimizer):
    """MADGRAD (Defazio & Jelassi 2021, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual
    Averaged Gradient Method for Stochastic Optimization", arXiv:2101.11075).

    Per step ``k`` (0-based, counted per parameter), with ``g`` the gradient (``-g`` with ``maximize``)
    and ``lr' = lr + eps``::

        g      <- g + weight_decay * p                    (unless decouple_decay)
        lambda  = lr' * sqrt(k + 1)
        x0      = p + s / (cbrt(v) + eps)                  (momentum == 0: recovered, no state)
                  or the parameter's value at its first step (momentum > 0: state x0)
        v      <- v + lambda * g^2
        s      <- s + lambda * g
        z       = x0 - s / (cbrt(v) + eps)
        p      <- p + (1 - momentum) * (z - p)              (= momentum * p + (1 - momentum) * z)
        p      <- p - lr' * weight_decay * p_before        (decouple_decay)

    As the authors' code (``madgrad.MADGRAD``, cube root as ``pow(1/3)``), including the ``lr + eps``
    in ``lambda`` and the decoupled decay (so a group with ``lr = 0`` still moves, by about
    ``eps^(2/3)`` per step). Differences: the momentum average is taken as ``lerp`` (the authors
    compute ``p * momentum + z * (1 - momentum)``: the same up to rounding, and exact where ``z == p``);
    the authors count ``k`` once per optimizer
    step for all parameters, here per parameter (the same when every parameter has a gradient at
    every step, as in every step of a usual training run); sparse gradients are not supported.
    ``optax.contrib.madgrad`` is the same rule with the L2 decay only, and it always keeps ``x0``
    (with ``momentum = 0`` the two differ by rounding: here ``x0`` is recovered from ``p`` and ``s``).
    Complex parameters step as their real views (``g^2`` per real and imaginary part).
    """

    supports_step_factor = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        decouple_decay: bool = False,
        eps: float = 1e-6,
        maximize: bool = False,
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("momentum", momentum, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("eps", eps, gt=0)
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "decouple_decay": decouple_decay, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        if step_factor is not None:
            raise TypeError("madgrad does not support step_factor")
        eps = group["eps"]
        lr = float(group["lr"]) + eps
        decay = group["weight_decay"]
        momentum = group["momentum"]
        decouple = group["decouple_decay"]
        for p in params_with_grads(group):
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["grad_sum_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if momentum != 0:
                    state["x0"] = p.detach().clone(memory_format=torch.preserve_format)
            lamb = lr * math.sqrt(float(state["step"]) + 1)
            param = real_view(p)
            grad = real_view(p.grad)
            if group["maximize"]:
                grad = -grad
            if decay != 0 and not decouple:
                grad = grad.add(param, alpha=decay)
            grad_sum_sq, s = real_view(state["grad_sum_sq"]), real_view(state["s"])
            if momentum == 0:
                x0 = param.addcdiv(s, grad_sum_sq.pow(1 / 3).add_(eps), value=1)
            else:
                x0 = real_view(state["x0"])
            grad_sum_sq.addcmul_(grad, grad, value=lamb)
            rms = grad_sum_sq.pow(1 / 3).add_(eps)
            p_old = param.clone() if decay != 0 and decouple else None
            s.add_(grad, alpha=lamb)
            if momentum == 0:
                param.copy_(x0.addcdiv(s, rms, value=-1))
            else:
                z = x0.addcdiv(s, rms, value=-1)
                param.lerp_(z, 1 - momentum)  # momentum * p + (1 - momentum) * z, exact where z == p
            if p_old is not None:
                param.add_(p_old, alpha=-lr * decay)
            state["step"] += 1
