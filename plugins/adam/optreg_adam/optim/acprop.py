"""ACProp (Zhuang et al. 2021): asynchronous centering."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg_adam.functional import kernels as K
from optreg_adam.optim._base import PerTensorOptimizer, checked_defaults

__all__ = ["ACPROP_CENTERING", "ACProp"]

#: The values of ACProp's ``centering`` option.
ACPROP_CENTERING = ("updated", "previous")


class ACProp(PerTensorOptimizer):
    """ACProp (Zhuang et al. 2021, arXiv:2110.05454): asynchronous centering.

    The step divides by the *centred* second moment of the previous steps (asynchronous: the
    denominator does not depend on ``g_t``). With ``g`` the gradient (negated when maximizing),
    ``bc1 = 1 - b1**t`` and ``s_0 = 0``, step ``t`` is::

        p *= 1 - lr*wd  (decoupled, before the step)
        m_t = b1*m_{t-1} + (1 - b1)*g_t
        t = 1:  p -= lr * m_1/bc1                                  (an SGD step: m_1/bc1 = g_1)
        t > 1:  s' = s_{t-1} + eps
                p -= lr * n_t / (sqrt(s' / (1 - b2**(t-1))) + eps)
                    with n_t = g_t, or m_t/bc1 when momentum_update
        s_t = b2*s' + (1 - b2)*(g_t - c)**2                         (s' = s_{t-1} at t = 1)

    ``centering`` chooses ``c``: ``"updated"`` (default) centres on ``m_t``, as the paper and
    the authors' code (github.com/juntang-zhuang/ACProp-Optimizer); ``"previous"`` centres on
    ``m_{t-1}``, as ``optax.contrib.acprop``. ``eps`` is both optax's ``eps`` and its
    ``eps_root`` (optax adds ``eps_root`` after the EMA, which gives the same denominators:
    optax's ``nu_{t-1}`` is ``s_{t-1} + eps`` here). optax's first step is ``g/(1 + eps)``.
    State: ``exp_avg`` (m), ``exp_avg_var`` (s). ``step(step_factor=t)`` gates the step without a
    host sync.
    """

    kernel = staticmethod(K.acprop_)
    buffers = ("exp_avg", "exp_avg_var")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-16, weight_decay: float = 0.0, *, momentum_update: bool = False,
                 centering: str = "updated", maximize: bool = False, compile: bool | str = "auto") -> None:
        if centering not in ACPROP_CENTERING:
            raise ValueError(f"centering must be one of {ACPROP_CENTERING}, got {centering!r}")
        super().__init__(params, checked_defaults(lr, betas, eps, weight_decay, momentum_update=momentum_update,
                                                  centering=centering, maximize=maximize, compile=compile))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("centering", "updated")  # checkpoints from before the option

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        first = ctx.t < 1.5
        later_f = (~first).to(ctx.dtype)
        bc1 = 1.0 - beta1**ctx.tc
        bc2_prev = torch.where(first, ctx.one, 1.0 - beta2 ** (ctx.tc - 1.0))
        momentum = 1.0 if group["momentum_update"] else 0.0
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.gated(ctx.const(1.0 - beta1)), ctx.decay_to(beta2),
                  ctx.gated(-ctx.lr), ctx.sf_or_one())
        vectors = (
            ctx.gated(later_f * eps),  # eps_add
            later_f * torch.rsqrt(bc2_prev),  # k1
            torch.where(first, ctx.one, ctx.const(eps)),  # k2
            later_f * (1.0 - momentum),  # c_g
            torch.where(first, ctx.one, ctx.const(momentum)) / bc1,  # c_m
        )
        return shared, vectors, (1.0 - beta2, group["centering"] == "previous", group["maximize"])
