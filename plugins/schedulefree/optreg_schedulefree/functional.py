"""The functional layer of the schedule-free optimizers: per-tensor, multi-tensor and compiled kernels.

``ys`` are the params (or their :func:`optreg.optim.real_view`), ``zs`` the stored ``z``, ``vs`` Adam's
second moments, ``us`` the update directions. Step coefficients come in a :class:`Coefficients` (the
host-float or the 0-dim-tensor form, see ``optreg_schedulefree._coefficients``); constants (betas,
eps, weight decay) are Python floats.

``single_tensor_*`` (a loop over tensors, one reused work buffer) is the default on CPU,
``multi_tensor_*`` (``torch._foreach_*``) on accelerators; :func:`sf_adam_tensor` is the one-pass
kernel that ``compile = true`` runs through :func:`optreg.compiling.run_compiled`. A ``step_factor``
step passes gated gradients and coefficients multiplied by the factor: a factor of 0 changes nothing.
"""

from __future__ import annotations

import torch

from optreg.compiling import ema_
from optreg.optim import Scratch
from optreg_schedulefree._coefficients import Coefficients

__all__ = [
    "multi_tensor_sf_adam",
    "multi_tensor_sf_sgd",
    "sf_adam_tensor",
    "sf_update_multi",
    "sf_update_single",
    "single_tensor_sf_adam",
    "single_tensor_sf_sgd",
]


def sf_update_single(
    y: torch.Tensor, z: torch.Tensor, u: torch.Tensor, coefs: Coefficients, *, decay: float, decay_at_y: bool,
    owned: bool, scratch: Scratch,
) -> None:
    """``y <- lerp(y, z, c_lerp) + c_y * u``, ``z <- z + c_z * u`` (``u`` += decay * (y or z) first).

    ``owned``: ``u`` is a work buffer that may be overwritten (not the gradient).
    """
    if decay != 0:
        base = y if decay_at_y else z
        u = u.add_(base, alpha=decay) if owned else torch.add(u, base, alpha=decay, out=scratch.get(u))
    y.lerp_(z, coefs.lerp("c_lerp", (y.dtype,)))
    y.addcmul_(u, coefs.tensor("c_y", y.dtype))
    z.addcmul_(u, coefs.tensor("c_z", z.dtype))


def sf_update_multi(
    ys: list[torch.Tensor], zs: list[torch.Tensor], us: list[torch.Tensor], coefs: Coefficients, *, decay: float,
    decay_at_y: bool, owned: bool, fused: bool,
) -> None:
    """:func:`sf_update_single` over lists; ``fused``: scale with ``_foreach_mul`` (one kernel on accelerators).

    Unfused (CPU), ``_foreach_addcmul_`` runs the per-tensor loop's very kernels.
    """
    if decay != 0:
        if owned:
            torch._foreach_add_(us, ys if decay_at_y else zs, alpha=decay)
        else:
            us = torch._foreach_add(us, ys if decay_at_y else zs, alpha=decay)
    weight = coefs.lerp("c_lerp", tuple({y.dtype for y in ys}))
    if isinstance(weight, float):
        torch._foreach_lerp_(ys, zs, weight)
    else:
        torch._foreach_lerp_(ys, zs, [coefs.lerp("c_lerp", (y.dtype,)) for y in ys])
    if fused:
        torch._foreach_add_(ys, torch._foreach_mul(us, coefs.tensor("c_y")))
        torch._foreach_add_(zs, torch._foreach_mul(us, coefs.tensor("c_z")))
    else:
        torch._foreach_addcmul_(ys, us, [coefs.tensor("c_y", y.dtype) for y in ys])
        torch._foreach_addcmul_(zs, us, [coefs.tensor("c_z", z.dtype) for z in zs])


def single_tensor_sf_adam(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], vs: list[torch.Tensor],
    coefs: Coefficients, *, beta2: float, eps: float, decay: float, decay_at_y: bool, maximize: bool,
    scratch: Scratch,
) -> None:
    """Schedule-free Adam(W)/RAdam, one tensor at a time (the direction lives in one reused buffer).

    ``v <- keep2*v + (1-beta2)*g^2``; ``u = g / (sqrt(v/bc2) + eps)`` (``g`` itself where ``use_adam``
    is false: RAdam before its variance is tractable), then :func:`sf_update_single`. A skipped step
    has ``keep2 = 1`` and a zero (gated) gradient, so ``v`` stays bit-identical.
    """
    keep2, bc2, use_adam = coefs.scalar("keep2"), coefs.scalar("bc2"), coefs.flag("use_adam")
    for y, g, z, v in zip(ys, grads, zs, vs):
        v.mul_(keep2).addcmul_(g, g, value=1 - beta2)
        denom = torch.div(v, bc2, out=scratch.get(g)).sqrt_().add_(eps)
        if use_adam is False:
            denom.fill_(1.0)
        elif isinstance(use_adam, torch.Tensor):
            denom = torch.where(use_adam, denom, 1.0)
        u = torch.div(g, denom, out=denom)
        if maximize:
            u.neg_()
        sf_update_single(y, z, u, coefs, decay=decay, decay_at_y=decay_at_y, owned=True, scratch=scratch)


def multi_tensor_sf_adam(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], vs: list[torch.Tensor],
    coefs: Coefficients, *, beta2: float, eps: float, decay: float, decay_at_y: bool, maximize: bool, fused: bool,
) -> None:
    """:func:`single_tensor_sf_adam` with ``torch._foreach_*`` ops (the default on accelerators)."""
    keep2, bc2, use_adam = coefs.scalar("keep2"), coefs.scalar("bc2"), coefs.flag("use_adam")
    torch._foreach_mul_(vs, keep2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
    denom = torch._foreach_div(vs, bc2)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    if use_adam is False:
        for d in denom:
            d.fill_(1.0)
    elif isinstance(use_adam, torch.Tensor):
        denom = [torch.where(use_adam, d, 1.0) for d in denom]
    torch._foreach_reciprocal_(denom)
    torch._foreach_mul_(denom, grads)
    if maximize:
        torch._foreach_neg_(denom)
    sf_update_multi(ys, zs, denom, coefs, decay=decay, decay_at_y=decay_at_y, owned=True, fused=fused)


def single_tensor_sf_sgd(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], coefs: Coefficients, *,
    decay: float, decay_at_y: bool, maximize: bool, owned: bool, scratch: Scratch,
) -> None:
    """Schedule-free SGD, one tensor at a time: the direction is the gradient (negated to maximize)."""
    for y, g, z in zip(ys, grads, zs):
        u, mine = g, owned
        if maximize:
            u = g.neg_() if owned else torch.neg(g, out=scratch.get(g))
            mine = True
        sf_update_single(y, z, u, coefs, decay=decay, decay_at_y=decay_at_y, owned=mine, scratch=scratch)


def multi_tensor_sf_sgd(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], coefs: Coefficients, *,
    decay: float, decay_at_y: bool, maximize: bool, owned: bool, fused: bool,
) -> None:
    """:func:`single_tensor_sf_sgd` with ``torch._foreach_*`` ops."""
    if maximize:
        if owned:
            torch._foreach_neg_(grads)
        else:
            grads = torch._foreach_neg(grads)
            owned = True
    sf_update_multi(ys, zs, grads, coefs, decay=decay, decay_at_y=decay_at_y, owned=owned, fused=fused)


def sf_adam_tensor(
    y: torch.Tensor,
    grad: torch.Tensor,
    z: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    keep: torch.Tensor,
    keep2: torch.Tensor,
    c2: torch.Tensor,
    bc2: torch.Tensor,
    use_adam: torch.Tensor | None,
    c_lerp: torch.Tensor,
    c_y: torch.Tensor,
    c_z: torch.Tensor,
    eps: float,
    decay: float,
    decay_at_y: bool,
    maximize: bool,
) -> None:
    """One schedule-free Adam(W)/RAdam step on one tensor, as one pass (the ``compile = true`` kernel).

    The update of :func:`single_tensor_sf_adam`: ``v <- keep2*v + c2*g^2``; ``u = g / (sqrt(v/bc2) + eps)``
    (``g`` itself where ``use_adam`` is false) ``+ decay * (y or z)``; ``y <- lerp(y, z, c_lerp) + c_y*u``;
    ``z <- z + c_z*u``. ``keep`` gates the gradient; a plain step passes ``keep = True``, so a plain step
    and a ``step_factor = 1`` step run one graph.
    """
    g = torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
    exp_avg_sq.mul_(keep2).addcmul_(g, g * c2)
    denom = (exp_avg_sq / bc2).sqrt() + eps
    if use_adam is not None:
        denom = torch.where(use_adam, denom, torch.ones((), dtype=denom.dtype, device=denom.device))
    u = g / denom
    if maximize:
        u = -u
    if decay != 0:
        u = u + (y if decay_at_y else z) * decay
    ema_(y, z, c_lerp)
    y.add_(u * c_y)
    z.add_(u * c_z)
