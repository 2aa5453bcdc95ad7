"""COCOB-Backprop: per-coordinate continuous coin betting, no learning rate (the rule: :class:`COCOB`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.compiling import CompileSetting, check_compile_setting, flat, use_compile
from optreg.optim import OptregOptimizer, as_scalar, check_number, gate_grad, params_with_grads, real_view
from optreg_paramfree.optim._common import CompiledPass, compilable
from optreg_paramfree.optim._kernels import cocob_

__all__ = ["COCOB"]

#: The state tensors, in the compiled kernel's order.
_STATE = ("x0", "theta", "max_abs_grad", "sum_abs_grad", "reward")


class COCOB(OptregOptimizer):
    """COCOB-Backprop (Orabona & Tommasi 2017, arXiv:1705.07795, Algorithm 2): coordinate-wise coin betting.

    Per step and per coordinate, with ``x0`` the initial point (state: ``x0``, ``theta``,
    ``max_abs_grad`` = L, ``sum_abs_grad`` = G, ``reward``)::

        g      <- lr * (g + weight_decay * p)
        L      <- max(L, |g|)                    (L starts at eps)
        G      <- G + |g|
        reward <- max(reward - g * (p - x0), 0)
        theta  <- theta - g
        p      <- x0 + theta / (L * max(G + L, alpha * L)) * (L + reward)

    The paper's Algorithm 2 with ``L`` started at ``eps`` (not 0) and L2 weight decay. ``lr`` scales
    the gradients, as in optax's ``cocob``; COCOB is invariant to their scale, so any positive ``lr``
    (and any schedule above 0) gives the same trajectory, and 0 freezes the group. Complex params
    step as their real view (each part bets on its own).

    ``compile`` (``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``) runs the step as one
    fused ``torch.compile`` kernel per tensor (non-contiguous and sharded tensors step eagerly).
    """

    #: Why an LR schedule is pointless here (``optreg.scheduling.ScheduledLR`` warns with it).
    schedule_warning = (
        "COCOB multiplies the gradients by the LR (as optax does) and is invariant to their scale, so every "
        "positive LR gives the same trajectory: the schedule has no effect until it reaches 0, which freezes "
        "the params"
    )
    #: The ``compile`` option (an attribute, so checkpoints keep their layout; False when unpickled from before it).
    compile: CompileSetting = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        alpha: float = 100.0,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("alpha", alpha, gt=0)
        check_number("eps", eps, gt=0)
        check_number("weight_decay", weight_decay, ge=0)
        self.compile = check_compile_setting(compile)
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay})

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        alpha, eps, decay, lr = group["alpha"], group["eps"], group["weight_decay"], group["lr"]
        compiling, fused = use_compile(self.compile, self), CompiledPass(cocob_)
        scalars: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # keep, lr: per device
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
            tensors = [real_view(state[key]) for key in _STATE]
            if compiling and compilable(p.device, param, grad, *tensors):
                if p.device not in scalars:  # a plain step runs the graph of a step_factor = 1 step
                    keep = (torch.ones((), dtype=torch.bool, device=p.device) if step_factor is None
                            else step_factor.to(p.device) != 0)
                    scalars[p.device] = (keep, as_scalar(lr, p.device))
                fused.add(flat(param), flat(grad), *(flat(t) for t in tensors), *scalars[p.device], float(alpha),
                          float(decay))
                continue
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
        fused.run()

