"""SGD with momentum and decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

Per step, for every parameter ``p`` with gradient ``g``::

    p   <- p * (1 - lr * weight_decay)
    buf <- momentum * buf + g
    p   <- p - lr * (g + momentum * buf  if nesterov else  buf)

A functional layer holds the math: ``_single_tensor_sgdw`` (a loop over tensors,
the fastest on CPU) and ``_multi_tensor_sgdw`` (``torch._foreach_*``, for GPUs).
``step(step_factor=t)`` takes a 0-dim 0/1 tensor: 1 is the plain step bit for
bit, 0 leaves parameters and state untouched even with NaN gradients, and
nothing waits on the device.
"""

from __future__ import annotations

from typing import Any

import torch

from optreg.optim import OptregOptimizer, gate_grad, params_with_grads

__all__ = ["MyfamilySGDW"]


class MyfamilySGDW(OptregOptimizer):
    """SGD with momentum and decoupled weight decay; ``state_dict`` as ``torch.optim.SGD`` (``momentum_buffer``)."""

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
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"invalid hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
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
        grads, bufs = [p.grad for p in params], []
        if group["momentum"] != 0:
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
        foreach = group["foreach"]
        if foreach is None:
            foreach = all(p.is_cuda for p in params)
        step = _multi_tensor_sgdw if foreach else _single_tensor_sgdw
        step(
            params,
            grads,
            bufs if group["momentum"] != 0 else None,
            lr=float(group["lr"]),
            momentum=group["momentum"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            step_factor=step_factor,
        )


def _sgdw_update_(
    p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None, *, lr: float, momentum: float,
    weight_decay: float, nesterov: bool,
) -> None:
    """One parameter's update, in place on ``p`` and ``buf``."""
    if weight_decay != 0:
        p.mul_(1 - lr * weight_decay)
    if buf is not None:
        buf.mul_(momentum).add_(g)
        g = g.add(buf, alpha=momentum) if nesterov else buf
    p.add_(g, alpha=-lr)


def _single_tensor_sgdw(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor] | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    step_factor: torch.Tensor | None,
) -> None:
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        buf = bufs[i] if bufs is not None else None
        if step_factor is None:
            _sgdw_update_(p, g, buf, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
            continue
        # Gated: the same arithmetic on copies, then keep the old or the new values (no host sync).
        take = step_factor != 0
        new_p, new_buf = p.clone(), (buf.clone() if buf is not None else None)
        g = gate_grad(g, step_factor)
        _sgdw_update_(new_p, g, new_buf, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        p.copy_(torch.where(take, new_p, p))
        if buf is not None:
            buf.copy_(torch.where(take, new_buf, buf))


def _multi_tensor_sgdw(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor] | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    step_factor: torch.Tensor | None,
) -> None:
    targets, target_bufs = params, bufs
    if step_factor is not None:
        grads = [gate_grad(g, step_factor) for g in grads]
        targets = [p.clone() for p in params]
        target_bufs = [b.clone() for b in bufs] if bufs is not None else None
    if maximize:
        grads = torch._foreach_neg(grads)
    if weight_decay != 0:
        torch._foreach_mul_(targets, 1 - lr * weight_decay)
    updates = grads
    if target_bufs is not None:
        torch._foreach_mul_(target_bufs, momentum)
        torch._foreach_add_(target_bufs, grads)
        updates = torch._foreach_add(grads, target_bufs, alpha=momentum) if nesterov else target_bufs
    torch._foreach_add_(targets, updates, alpha=-lr)
    if step_factor is not None:
        take = step_factor != 0
        for dst, new in zip(params, targets):
            dst.copy_(torch.where(take, new, dst))
        if bufs is not None and target_bufs is not None:
            for dst, new in zip(bufs, target_bufs):
                dst.copy_(torch.where(take, new, dst))
