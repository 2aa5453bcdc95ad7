"""AdEMAMix, Simplified AdEMAMix, ADOPT, LaProp, ACProp and Madam optimizers.

Each optimizer computes its step-dependent scalars once per group with a few
vector ops over the group's step counters (float64, no host sync), then runs its
per-tensor kernel from :mod:`optreg_adam.kernels` over the params, eagerly or,
with ``compile=True``, through ``torch.compile`` (dynamic shapes on flattened
views: one graph serves every param size; a few tensors per compiled call, see
:func:`optreg.compiling.run_compiled`).

Every update here is elementwise, so a complex param is stepped as its real view
(``torch.view_as_real`` of the param, its gradient and its complex state buffers: real and
imaginary parts are independent coordinates, optax's ``split_real_and_imaginary``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optreg.compiling import can_flatten, flat, run_compiled
from optreg_adam import kernels as K
from optreg_adam._common import as_scalar, real_view
from optreg_adam.base import FamilyOptimizer, check_hparams, moment_zeros, scalar_state_dtype

__all__ = ["ACProp", "ADOPT", "AdEMAMix", "LaProp", "Madam", "SimplifiedAdEMAMix"]

F64 = torch.float64


class _Ctx:
    """Per-group step context: the gate, the step vector and scalar helpers (all float64, on one device)."""

    def __init__(self, steps: list[torch.Tensor], step_factor: torch.Tensor | None, lr: Any, device: torch.device,
                 states: list[dict[str, Any]] | None = None):
        self.device = device
        self.states = states or []
        self.t = torch.stack([s.reshape(()) for s in steps]).to(device=device, dtype=F64)
        self.tc = self.t.clamp(min=1.0)  # bias corrections of a not-yet-taken step stay finite
        self.sf = None if step_factor is None else step_factor.to(device=device, dtype=F64)
        self.keep = None if self.sf is None else self.sf != 0
        self.lr = as_scalar(lr, device, F64)
        self.one = torch.ones((), device=device, dtype=F64)

    def const(self, value: float) -> torch.Tensor:
        return torch.full((), value, device=self.device, dtype=F64)

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """``x * step_factor`` (``x`` when there is none): exact at 1, 0 at 0."""
        return x if self.sf is None else x * self.sf

    def decay_to(self, beta: float | torch.Tensor) -> torch.Tensor:
        """The multiplier ``beta`` of an EMA, 1 on a skipped step: ``1 - (1 - beta) * sf``."""
        return 1.0 - self.gated(1.0 - (beta if isinstance(beta, torch.Tensor) else self.const(beta)))

    def scalar_state(self, key: str) -> torch.Tensor:
        """The per-param 0-dim state ``key`` of the group as one float64 vector."""
        return torch.stack([s[key].reshape(()) for s in self.states]).to(device=self.device, dtype=F64)

    def store_scalar_state(self, key: str, values: torch.Tensor) -> torch.Tensor:
        """Store ``values`` (one per param) as the per-param state ``key``; returns them as stored (float64).

        Scalar state is updated here, per group, rather than inside the per-tensor kernels: a compiled
        kernel would redo that scalar arithmetic for every vector of elements. Each entry keeps its
        own dtype (float32, or float64 under float64 params).
        """
        for state, value in zip(self.states, values.unbind(0)):
            state[key].copy_(value)
        return self.scalar_state(key)

    def sf_or_one(self) -> torch.Tensor:
        return self.one if self.sf is None else self.sf

    def weight_decay(self, wd: float) -> torch.Tensor | None:
        """The decay multiplier ``1 - lr*wd*sf``; ``None`` when ``wd == 0`` (the kernels skip that pass)."""
        return None if wd == 0 else 1.0 - self.gated(self.lr * wd)


class _PerTensorOptimizer(FamilyOptimizer):
    """Runs a kernel per param with per-group scalars. Subclasses define the pieces below."""

    kernel: Callable[..., None]
    #: State tensors shaped like the param, in kernel order.
    buffers: tuple[str, ...] = ()
    #: 0-dim per-param state tensors (float32, or the param's dtype if wider), updated by ``_scalars``
    #: (see ``_Ctx.store_scalar_state``).
    scalar_state: tuple[str, ...] = ()
    moment_keys = ()

    def _init_state(self, p: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        for key in self.buffers:
            state[key] = moment_zeros(p)
        for key in self.scalar_state:
            state[key] = torch.zeros((), dtype=scalar_state_dtype(p), device=p.device)

    def _scalars(self, group: dict[str, Any], ctx: _Ctx) -> tuple[tuple, tuple, tuple]:
        """``(shared 0-dim tensors, per-param vectors, python constants)`` in kernel order."""
        raise NotImplementedError

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        steps = [s["step"] for s in states]
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for s in steps:
            by_device.setdefault(s.device, []).append(s)
        for device, group_steps in by_device.items():
            torch._foreach_add_(group_steps, 1.0 if step_factor is None else step_factor.to(device))
        ctx = _Ctx(steps, step_factor, group["lr"], params[0].device, states)
        shared, vectors, constants = self._scalars(group, ctx)
        columns = [v.unbind(0) for v in vectors]
        use_compile = bool(group.get("compile"))
        kernel = type(self).kernel
        to_compile = []
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            p, g = real_view(p), real_view(g)  # complex: step the real and imaginary parts
            bufs = [real_view(state[k]) for k in self.buffers]
            per_param = [c[i] for c in columns]
            if use_compile and can_flatten(p, g, *bufs):
                to_compile.append((flat(p), flat(g), *(flat(b) for b in bufs),
                                   ctx.keep, *shared, *per_param, *constants))
            else:
                kernel(p, g, *bufs, ctx.keep, *shared, *per_param, *constants)
        if to_compile:
            run_compiled(kernel, to_compile)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("compile", False)


def _defaults(lr, betas, eps, weight_decay, **extra) -> dict[str, Any]:
    check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, **extra}


# ---------------------------------------------------------------- AdEMAMix


class AdEMAMix(_PerTensorOptimizer):
    """AdEMAMix (Pagliardini et al. 2024, arXiv:2409.03137): Adam plus a slow EMA ``m2`` weighted by ``alpha``.

    ``betas = (beta1, beta2, beta3)``; ``alpha_warmup`` ramps alpha linearly from 0 and
    ``beta3_warmup`` raises beta3 from beta1 with a linear half-life schedule, as in the paper.
    Weight decay is decoupled (``p *= 1 - lr*wd``).
    """

    kernel = staticmethod(K.ademamix_)
    buffers = ("exp_avg", "exp_avg_sq", "exp_avg_slow")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.9, 0.999, 0.9999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, alpha: float = 2.0, alpha_warmup: int | None = None,
                 beta3_warmup: int | None = None, maximize: bool = False, compile: bool = False) -> None:
        check_hparams(alpha=alpha, alpha_warmup=alpha_warmup, beta3_warmup=beta3_warmup)
        super().__init__(params, _defaults(lr, betas, eps, weight_decay, alpha=alpha, alpha_warmup=alpha_warmup,
                                           beta3_warmup=beta3_warmup, maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2, beta3 = group["betas"]
        t = ctx.tc
        alpha = ctx.const(group["alpha"]).expand_as(t)
        if group["alpha_warmup"]:
            alpha = group["alpha"] * torch.clamp(t / group["alpha_warmup"], max=1.0)
        b3 = ctx.const(beta3).expand_as(t)
        if group["beta3_warmup"]:
            b3 = beta3_schedule(t, beta1, beta3, group["beta3_warmup"])
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.gated(ctx.const(1 - beta1)), ctx.decay_to(beta2),
                  ctx.gated(-ctx.lr), ctx.const(group["eps"]))
        vectors = (1.0 / (1.0 - beta1**t), torch.rsqrt(1.0 - beta2**t), ctx.gated(1.0 - b3), alpha)
        return shared, vectors, (1.0 - beta2, group["maximize"])


def beta3_schedule(t: torch.Tensor, beta_start: float, beta_end: float, warmup: int) -> torch.Tensor:
    """The paper's beta3 warm-up: the EMA's half-life grows linearly from ``beta_start``'s to ``beta_end``'s.

    ``exp(ln(b_start) ln(b_end) / ((1 - a) ln(b_end) + a ln(b_start)))`` with ``a = min(t/warmup, 1)``.
    """
    a = torch.clamp(t / warmup, max=1.0)
    ls, le = math.log(max(beta_start, 1e-8)), math.log(beta_end)
    if beta_end == 0.0:
        return torch.zeros_like(t)
    return torch.clamp(torch.exp(ls * le / ((1.0 - a) * le + a * ls)), max=beta_end)


# ---------------------------------------------------------------- Simplified AdEMAMix


def half_life_warmup(t: torch.Tensor, beta_start: float, beta_end: float, warmup: int) -> torch.Tensor:
    """Linear warm-up of the half-life ``ln(0.5)/ln(beta + 1e-8) - 1`` from ``beta_start`` to ``beta_end``."""

    def half_life(beta: float) -> float:
        return math.log(0.5) / math.log(beta + 1e-8) - 1.0

    a = t / float(warmup)
    warm = torch.pow(0.5, 1.0 / ((1.0 - a) * half_life(beta_start) + a * half_life(beta_end) + 1.0))
    return torch.where(t < warmup, warm, torch.full_like(t, beta_end))


class SimplifiedAdEMAMix(_PerTensorOptimizer):
    """Simplified AdEMAMix (Morwani et al. 2025, arXiv:2502.02431): one accumulated momentum, no slow EMA.

    ``m = beta1*m + g`` (a sum, not an average), ``p -= lr*((alpha*g + m)/(sqrt(v/bc2) + eps))``;
    ``beta1_warmup`` raises beta1 from ``min_beta1`` on a half-life schedule; ``bias_correction1``
    divides by ``sum_k beta1^k``. Weight decay is decoupled.
    """

    kernel = staticmethod(K.simplified_ademamix_)
    buffers = ("exp_avg", "exp_avg_sq")
    scalar_state = ("num_sum",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.99, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, alpha: float = 0.0,
                 beta1_warmup: int | None = None, min_beta1: float = 0.9, bias_correction1: bool = False,
                 maximize: bool = False, compile: bool = False) -> None:
        check_hparams(alpha=alpha, beta1_warmup=beta1_warmup, betas=(min_beta1,))
        super().__init__(params, _defaults(lr, betas, eps, weight_decay, alpha=alpha, beta1_warmup=beta1_warmup,
                                           min_beta1=min_beta1, bias_correction1=bias_correction1,
                                           maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        t = ctx.tc
        b1 = ctx.const(beta1).expand_as(t)
        if group["beta1_warmup"]:
            b1 = half_life_warmup(t, group["min_beta1"], beta1, group["beta1_warmup"])
        bc2 = 1.0 - beta2**t
        b1 = ctx.decay_to(b1)  # 1 on a skipped step
        num_sum = ctx.store_scalar_state("num_sum", ctx.scalar_state("num_sum") * b1 + ctx.sf_or_one())
        scale = ctx.gated(-ctx.lr) * bc2.sqrt()
        if group["bias_correction1"]:
            scale = scale / torch.where(num_sum != 0, num_sum, ctx.one)
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.decay_to(beta2))
        vectors = (b1, scale, group["eps"] * bc2.sqrt())
        return shared, vectors, (group["alpha"], 1.0 - beta2, group["maximize"])


# ---------------------------------------------------------------- ADOPT


class ADOPT(_PerTensorOptimizer):
    """ADOPT (Taniguchi et al. 2024, arXiv:2411.02853): Adam that converges for any beta2.

    The gradient is normalised by the second moment of the *previous* steps, clipped to
    ``t**clip_exponent`` (``clip = False`` turns clipping off), then averaged into the
    momentum; the first step only initialises ``v = g**2``. ``decoupled_weight_decay`` chooses
    AdamW-style decay over the L2 penalty.
    """

    kernel = staticmethod(K.adopt_)
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.9999),
                 eps: float = 1e-6, weight_decay: float = 0.0, *, clip: bool = True, clip_exponent: float = 0.25,
                 decoupled_weight_decay: bool = False, maximize: bool = False, compile: bool = False) -> None:
        check_hparams(clip_exponent=clip_exponent)
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"Invalid eps value: {eps!r} (ADOPT needs eps > 0: it bounds the normaliser)")
        super().__init__(params, _defaults(lr, betas, eps, weight_decay, clip=clip, clip_exponent=clip_exponent,
                                           decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                           compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        later = ctx.t > 1.5  # not the first (v-initialising) step
        later_f = later.to(F64)
        keep_m = later if ctx.keep is None else later & ctx.keep
        clip = ctx.tc ** group["clip_exponent"]
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.const(group["eps"]))
        vectors = (
            keep_m,
            ctx.gated(later_f * (1.0 - beta1)),
            ctx.gated(-ctx.lr * later_f),
            1.0 - ctx.gated(later_f * (1.0 - beta2)),
            torch.where(later, ctx.const(1.0 - beta2), ctx.one),
            clip,
        )
        decoupled = group["decoupled_weight_decay"]
        return shared, vectors, (group["weight_decay"], decoupled, group["clip"], group["maximize"])


# ---------------------------------------------------------------- LaProp


class LaProp(_PerTensorOptimizer):
    """LaProp (Ziyin et al. 2020, arXiv:2002.04839): momentum applied *after* adaptive normalisation.

    Decoupling momentum from the adaptive denominator lets ``beta1`` and ``beta2`` be set
    independently (any ``beta2 >= 0``). Weight decay is decoupled, applied after the step.
    """

    kernel = staticmethod(K.laprop_)
    buffers = ("exp_avg", "exp_avg_sq")
    scalar_state = ("exp_avg_lr",)

    def __init__(self, params: Iterable[Any], lr: float = 4e-4, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-15, weight_decay: float = 0.0, *, maximize: bool = False,
                 compile: bool = False) -> None:
        super().__init__(params, _defaults(lr, betas, eps, weight_decay, maximize=maximize, compile=compile))

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        w1_lr = ctx.gated((1.0 - beta1) * ctx.lr)
        # the LR-aware bias correction: lr_avg = b1*lr_avg + (1-b1)*lr, bc1 = lr_avg / lr
        lr_avg = ctx.store_scalar_state("exp_avg_lr", ctx.scalar_state("exp_avg_lr") * ctx.decay_to(beta1) + w1_lr)
        inv_bc1 = torch.where(lr_avg != 0, ctx.lr / lr_avg, ctx.one)
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.decay_to(beta1), w1_lr, ctx.decay_to(beta2),
                  ctx.const(group["eps"]))
        vectors = (torch.rsqrt(1.0 - beta2**ctx.tc), -(inv_bc1 * ctx.sf_or_one()))
        return shared, vectors, (1.0 - beta2, group["maximize"])


# ---------------------------------------------------------------- ACProp


#: The values of ACProp's ``centering`` option.
ACPROP_CENTERING = ("updated", "previous")


class ACProp(_PerTensorOptimizer):
    """ACProp (Zhuang et al. 2021, arXiv:2110.05454): asynchronous centering.

    The step divides by the *centred* second moment of the previous steps (asynchronous: the
    denominator does not depend on ``g_t``). With ``g`` the gradient (negated when maximizing),
    ``bc1 = 1 - b1**t`` and ``s_0 = 0``, step ``t`` is::

        m_t = b1*m_{t-1} + (1 - b1)*g_t
        t = 1:  p -= lr * m_1/bc1                                  (an SGD step: m_1/bc1 = g_1)
        t > 1:  s' = s_{t-1} + eps
                p -= lr * n_t / (sqrt(s' / (1 - b2**(t-1))) + eps)
                    with n_t = g_t, or m_t/bc1 when momentum_update
        s_t = b2*s' + (1 - b2)*(g_t - c)**2                         (s' = s_{t-1} at t = 1)
        p *= 1 - lr*wd  (decoupled, before the step)

    ``centering`` chooses ``c``: ``"updated"`` (default) centres on ``m_t``, as the paper and
    the authors' code (github.com/juntang-zhuang/ACProp-Optimizer); ``"previous"`` centres on
    ``m_{t-1}``, as ``optax.contrib.acprop``. ``eps`` is both optax's ``eps`` and its
    ``eps_root`` (optax adds ``eps_root`` after the EMA, which gives the same denominators:
    optax's ``nu_{t-1}`` is ``s_{t-1} + eps`` here). optax's first step is ``g/(1 + eps)``.
    """

    kernel = staticmethod(K.acprop_)
    buffers = ("exp_avg", "exp_avg_var")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-16, weight_decay: float = 0.0, *, momentum_update: bool = False,
                 centering: str = "updated", maximize: bool = False, compile: bool = False) -> None:
        if centering not in ACPROP_CENTERING:
            raise ValueError(f"centering must be one of {ACPROP_CENTERING}, got {centering!r}")
        super().__init__(params, _defaults(lr, betas, eps, weight_decay, momentum_update=momentum_update,
                                           centering=centering, maximize=maximize, compile=compile))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("centering", "updated")  # checkpoints from before the option

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        first = ctx.t < 1.5
        later_f = (~first).to(F64)
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


# ---------------------------------------------------------------- Madam


class Madam(_PerTensorOptimizer):
    """Madam: magnitude-aware Adam with no eps.

    ``p -= lr * (m/bc1) / sqrt(v/bc2)``: with no eps the step size never depends on the
    gradient's scale, however small. ``v`` is stored times ``2**scale_log2`` (an exact power-of-two
    scale) so the squares of tiny gradients do not underflow, and coordinates whose ``exp_avg`` is 0
    (never had a gradient) get a zero update instead of 0/0. Weight decay is decoupled.
    """

    kernel = staticmethod(K.madam_)
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, *, scale_log2: int = 32, maximize: bool = False,
                 compile: bool = False) -> None:
        if scale_log2 % 2 or not 0 <= scale_log2 <= 120:
            raise ValueError(f"scale_log2 must be an even integer in [0, 120], got {scale_log2!r}")
        check_hparams(lr=lr, betas=betas, weight_decay=weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay, "scale_log2": scale_log2,
                    "maximize": maximize, "compile": compile}
        super().__init__(params, defaults)

    def _scalars(self, group, ctx):
        beta1, beta2 = group["betas"]
        half = group["scale_log2"] // 2
        t = ctx.tc
        shared = (ctx.weight_decay(group["weight_decay"]), ctx.gated(ctx.const(1.0 - beta1)), ctx.decay_to(beta2))
        vectors = (ctx.gated(-ctx.lr * torch.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) * 2.0**half),)
        return shared, vectors, (1.0 - beta2, 2.0**half, group["maximize"])
