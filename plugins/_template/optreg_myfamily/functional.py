"""The functional layer: SGDW's update of one tensor, and the per-tensor and multi-tensor paths.

``single_tensor_sgdw`` (a loop over tensors) is the fast path on CPU, ``multi_tensor_sgdw``
(``torch._foreach_*``) on accelerators. With a ``step_factor`` both run the same arithmetic on copies
and commit them where the step is taken (``optreg.optim.commit_``), so nothing waits on the device.
"""

from __future__ import annotations

import torch

from optreg.optim import commit_, gate_grad

__all__ = ["multi_tensor_sgdw", "sgdw_update_", "single_tensor_sgdw"]


def sgdw_update_(
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


def single_tensor_sgdw(
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
    take = None if step_factor is None else step_factor != 0
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        buf = bufs[i] if bufs is not None else None
        if take is None:
            sgdw_update_(p, g, buf, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
            continue
        new_p, new_buf = p.clone(), (buf.clone() if buf is not None else None)
        g = gate_grad(g, step_factor)
        sgdw_update_(new_p, g, new_buf, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        commit_(p, new_p, take)
        if buf is not None and new_buf is not None:
            commit_(buf, new_buf, take)


def multi_tensor_sgdw(
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
            commit_(dst, new, take)
        if bufs is not None and target_bufs is not None:
            for dst, new in zip(bufs, target_bufs):
                commit_(dst, new, take)
