"""The optimizer of this family: SGD with momentum and decoupled weight decay.

The math lives in :mod:`optreg_myfamily.functional`; this module holds the ``torch.optim.Optimizer``
(argument checks, state, the path chosen per device).
"""

from __future__ import annotations

from typing import Any

import torch

from optreg.optim import OptregOptimizer, check_number, params_with_grads, use_foreach
from optreg_myfamily import functional as F

__all__ = ["MyfamilySGDW"]


class MyfamilySGDW(OptregOptimizer):
    """SGD with momentum and decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

    Per step, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``)::

        p   <- p * (1 - lr * weight_decay)
        buf <- momentum * buf + g
        p   <- p - lr * (g + momentum * buf  if nesterov else  buf)

    With ``weight_decay = 0`` this is ``torch.optim.SGD`` (dampening 0); the decay is decoupled, as in
    the paper, where torch's SGD adds ``weight_decay * p`` to the gradient. State as torch's SGD
    (``momentum_buffer``). Complex parameters: every op is linear, so they step as their real view.
    ``step(step_factor=t)`` gates the step by a 0/1 tensor with no host sync.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("momentum", momentum, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        if not params:
            return
        bufs = None
        if group["momentum"] != 0:
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
        step = F.multi_tensor_sgdw if use_foreach(group["foreach"], params) else F.single_tensor_sgdw
        step(
            params,
            [p.grad for p in params],
            bufs,
            lr=float(group["lr"]),
            momentum=group["momentum"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            step_factor=step_factor,
        )
