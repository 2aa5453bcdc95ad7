"""Functional Adam/AdamW: the per-tensor update other plugins call, and the list-based paths.

Public, stable API, imported from :mod:`optreg_adam.functional` (other optreg plugins use
these; new options only ever arrive as keyword arguments with defaults):

* :func:`adamw_update_`: one AdamW (or Adam, ``decoupled=False``) step on one
  tensor, in place. Muon-style optimizers use it for their non-matrix params.
* :func:`adamw`: the same step over lists of tensors, with a choice of
  implementation (``"fused"``, ``"single"``, ``"foreach"``, ``"compiled"``).

Semantics are torch's (``torch.optim.AdamW`` / ``torch.optim.Adam``):

.. code-block:: text

    step += 1
    g = -grad if maximize else grad
    if decoupled: param *= 1 - lr * weight_decay      # AdamW (Loshchilov & Hutter 2019)
    else:         g = g + weight_decay * param         # Adam's L2 penalty
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    v_max = max(v_max, v)                              # amsgrad only; then v := v_max
    param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)

Complex tensors are stepped as their real view (``torch.view_as_real``), as
``torch.optim.Adam`` does: the real and imaginary parts are independent coordinates, so the
second moment is ``re**2`` and ``im**2`` (not the complex ``g*g``). Every path, the fused
kernel included, takes the real views. A complex param's state may be complex (torch's
layout) or real of the real view's shape ``(..., 2)`` (e.g. bfloat16 state).

``step_factor`` (a 0-dim 0/1 tensor) gates the whole update without a host
sync: with 1 the result is the plain step bit for bit, with 0 ``param``,
``m``, ``v``, ``v_max`` and ``step`` stay bit-identical, even when ``grad``
holds NaN or inf (see :mod:`optreg.optim`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch

from optreg.compiling import can_flatten, ema_, flat, run_compiled
from optreg.optim import as_scalar, keep_factor, real_view, scalar_dtype
from optreg_adam.functional._common import advance_steps, gate, scalar_vector, signed, supports_fused_adam
from optreg_adam.functional.native import native_adamw_bf16, native_applies, native_available
from optreg_adam.functional.rounding import hash_bits, index_like, round_to_bf16_stochastic, seed_of

__all__ = ["FUSED_MIN_NUMEL", "AdamImpl", "AdamScalars", "adam_scalars", "adamw", "adamw_update_", "prefers_fused"]

#: Below this many elements a group takes the per-tensor loop instead of torch's fused kernel. 1: with torch 2.13
#: the fused kernel is the faster one at every size (2-core CPU, idle or with one core busy: one 16-element
#: tensor 13 us against the loop's 75 us; ten 1024-vectors 55 us against 300 us; earlier torch versions started
#: its threads slowly enough that the loop won below 2**16 elements).
FUSED_MIN_NUMEL = 1

AdamImpl = Literal["auto", "fused", "single", "foreach", "compiled", "native"]
Number = float | torch.Tensor


class AdamScalars(NamedTuple):
    """Step-dependent scalars of one group, as tensors (vectors hold one entry per parameter).

    ``keep``: 0-dim bool (``None`` without step_factor); ``decay``: ``1 - lr*wd*sf``
    (0-dim); ``w1``: ``(1 - beta1)*sf`` (0-dim); ``b2``: ``beta2``, 1 on a skipped step
    (:func:`optreg.optim.keep_factor`, 0-dim);
    ``inv_bc2_sqrt``: ``1/sqrt(1 - beta2**t)`` (vector); ``neg_step``: ``-lr*sf/(1 - beta1**t)``
    (vector); ``eps`` (0-dim).
    """

    keep: torch.Tensor | None
    decay: torch.Tensor
    w1: torch.Tensor
    b2: torch.Tensor
    inv_bc2_sqrt: torch.Tensor
    neg_step: torch.Tensor
    eps: torch.Tensor


def adam_scalars(
    steps: torch.Tensor,
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    step_factor: torch.Tensor | None,
) -> AdamScalars:
    """Compute :class:`AdamScalars` for a vector of (already incremented) step counters."""
    # float64: 1 - beta**t in float32 loses ~1e-7 relative to cancellation (torch computes it in double too)
    device = steps.device
    dtype = scalar_dtype(device)
    sf = None if step_factor is None else step_factor.to(device=device, dtype=dtype)
    lr_t = as_scalar(lr, device)
    one = torch.ones((), device=device, dtype=dtype)
    decay = one - lr_t * weight_decay if decoupled else one.clone()
    w1 = torch.full((), 1.0 - beta1, device=device, dtype=dtype)
    b2 = torch.full((), beta2, device=device, dtype=dtype) if sf is None else keep_factor(sf, beta2)
    steps = steps.to(dtype).clamp(min=1.0)  # a skipped first step (t = 0) must not divide by 1 - beta**0 = 0
    bc1 = 1.0 - torch.pow(beta1, steps)
    bc2 = 1.0 - torch.pow(beta2, steps)
    neg_step = -lr_t / bc1
    if sf is not None:
        decay = one - (one - decay) * sf
        w1 = w1 * sf
        neg_step = neg_step * sf
    keep = None if sf is None else sf != 0
    eps_t = torch.full((), eps, device=device, dtype=dtype)
    return AdamScalars(keep, decay, w1, b2, torch.rsqrt(bc2), neg_step, eps_t)


# ---------------------------------------------------------------- the per-tensor math


def _adam_tensor(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None,
    keep: torch.Tensor | None,
    decay: torch.Tensor,
    w1: torch.Tensor,
    b2: torch.Tensor,
    w2: float,
    inv_bc2_sqrt: torch.Tensor,
    neg_step: torch.Tensor,
    eps: torch.Tensor,
    l2: float,
    maximize: bool,
    decoupled: bool,
) -> None:
    """One Adam(W) step on one tensor with state in the param's dtype; every scalar is a tensor."""
    g = signed(grad, maximize)
    if not decoupled and l2 != 0:
        g = g.add(param, alpha=l2)
    g = gate(g, keep)
    if decoupled and l2 != 0:  # decay is exactly 1 otherwise: skip a pass over the param
        param.mul_(decay)
    ema_(exp_avg, g, w1)
    exp_avg_sq.mul_(b2).addcmul_(g, g, value=w2)
    v = exp_avg_sq
    if max_exp_avg_sq is not None:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    denom = v.sqrt().mul_(inv_bc2_sqrt).add_(eps)
    param.addcmul_(torch.div(exp_avg, denom, out=denom), neg_step)


def _adam_tensor_lowp(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None,
    keep: torch.Tensor | None,
    decay: torch.Tensor,
    w1: torch.Tensor,
    b2: torch.Tensor,
    w2: float,
    inv_bc2_sqrt: torch.Tensor,
    neg_step: torch.Tensor,
    eps: torch.Tensor,
    l2: float,
    maximize: bool,
    decoupled: bool,
    sr: bool,
    seed: torch.Tensor,
    index: torch.Tensor | None,
) -> None:
    """Adam(W) with state in another dtype than the param, computed in float32 (or the param's dtype if wider).

    With ``sr`` the bfloat16 state (m and v) is stored by unbiased stochastic rounding.

    Round-to-nearest would stall ``v`` (its per-step change ``(1 - beta2) = 1e-3``
    of itself is below half a bf16 ulp, ``2**-9``); stochastic rounding keeps
    every stored value an unbiased estimate of the float32 recurrence.
    """
    work = torch.promote_types(param.dtype, torch.float32)  # a float64 param is never rounded to float32
    g = signed(grad, maximize).to(work)
    p32 = param.to(work)
    if not decoupled and l2 != 0:
        g = g.add(p32, alpha=l2)
    g = gate(g, keep)
    if decoupled and l2 != 0:
        p32 = p32 * decay
    m = ema_(exp_avg.to(work, copy=True), g, w1)
    v = (exp_avg_sq.to(work) * b2).addcmul_(g, g, value=w2)
    if keep is not None:
        # A skipped step must leave the stored state bit-identical: no re-rounding noise either.
        m = torch.where(keep, m, exp_avg.to(work))
        v = torch.where(keep, v, exp_avg_sq.to(work))
    if sr:
        if index is None:  # compiled: an iota fused into the kernel
            index = torch.arange(m.numel(), dtype=torch.int32, device=m.device).view(m.shape)
        bits = hash_bits(index, seed)  # one hash, two independent 16-bit halves for m and v
        m_stored = round_to_bf16_stochastic(m, noise=bits & 0xFFFF)
        v_stored = round_to_bf16_stochastic(v, noise=(bits >> 16) & 0xFFFF)
    else:
        m_stored, v_stored = m.to(exp_avg.dtype), v.to(exp_avg_sq.dtype)
    # The step uses the stored (rounded) moments, computed here rather than re-read from the
    # state, so a compiled graph stays one pass.
    vv = v_stored.to(work)
    if max_exp_avg_sq is not None:
        vmax = torch.maximum(max_exp_avg_sq, v_stored)
        max_exp_avg_sq.copy_(vmax)
        vv = vmax.to(work)
    update = m_stored.to(work) / (vv.sqrt() * inv_bc2_sqrt + eps)
    exp_avg.copy_(m_stored)
    exp_avg_sq.copy_(v_stored)
    param.copy_(p32 + update * neg_step)


# ---------------------------------------------------------------- the public per-tensor update


def adamw_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    max_exp_avg_sq: torch.Tensor | None = None,
    decoupled: bool = True,
    fused: bool | None = None,
    stochastic_rounding: bool | None = None,
) -> None:
    """One AdamW step on one tensor, in place (Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization).

    ``step`` is the 0-dim float32 step counter of this tensor (``0.0`` before the
    first step); it is incremented here (by ``step_factor`` when given). ``exp_avg``
    and ``exp_avg_sq`` start as zeros of the param's shape. ``lr`` may be a float or
    a 0-dim tensor. ``max_exp_avg_sq`` (a zeros buffer) turns on AMSGrad.
    ``decoupled=False`` gives ``torch.optim.Adam``'s L2 penalty instead of decoupled
    decay. ``fused=None`` uses torch's fused kernel when it supports the tensors
    (same math, computed in one pass), ``False`` the tensor-op path.
    ``step_factor``: see the module docstring. bfloat16 state (exp_avg and
    exp_avg_sq in bf16 under a float32 param) is updated with unbiased stochastic
    rounding (``stochastic_rounding=None``: whenever the state is bf16 and the param
    is not; ``True`` also for bf16 params).
    """
    param, grad, exp_avg, exp_avg_sq = real_view(param), real_view(grad), real_view(exp_avg), real_view(exp_avg_sq)
    if max_exp_avg_sq is not None:
        max_exp_avg_sq = real_view(max_exp_avg_sq)
    tensors = [param, grad, exp_avg, exp_avg_sq] + ([max_exp_avg_sq] if max_exp_avg_sq is not None else [])
    sr = _wants_sr(param, exp_avg, stochastic_rounding)
    lowp = exp_avg.dtype != param.dtype or sr
    use_fused = fused if fused is not None else param.numel() >= FUSED_MIN_NUMEL
    if use_fused and not lowp and supports_fused_adam(tensors) and step.device == param.device:
        _fused_adam([param], [grad], [exp_avg], [exp_avg_sq], [max_exp_avg_sq] if max_exp_avg_sq is not None else [],
                    [step], lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                    maximize=maximize, decoupled=decoupled, step_factor=step_factor)
        return
    step.add_(1.0 if step_factor is None else step_factor.to(step.device, step.dtype))
    s = adam_scalars(step.reshape(1), lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                     decoupled=decoupled, step_factor=step_factor)
    common = (s.keep, s.decay, s.w1, s.b2, 1.0 - beta2, s.inv_bc2_sqrt[0], s.neg_step[0], s.eps, weight_decay,
              maximize, decoupled)
    if lowp:
        _adam_tensor_lowp(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *common, sr,
                          seed_of(step, param.numel()), index_like(param))
    else:
        _adam_tensor(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *common)


def _wants_sr(param: torch.Tensor, exp_avg: torch.Tensor, stochastic_rounding: bool | None) -> bool:
    if exp_avg.dtype != torch.bfloat16:
        return False
    return param.dtype != torch.bfloat16 if stochastic_rounding is None else stochastic_rounding


def prefers_fused(params: Sequence[torch.Tensor], others: Sequence[torch.Tensor] = ()) -> bool:
    """Whether ``impl="auto"`` takes torch's fused kernel: supported tensors, enough elements to pay."""
    total = sum(p.numel() for p in params)
    return total >= FUSED_MIN_NUMEL and supports_fused_adam(list(params) + list(others))


# ---------------------------------------------------------------- list-based paths


def adamw(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor],
    exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor],
    steps: Sequence[torch.Tensor],
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool = False,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    decoupled: bool = True,
    impl: AdamImpl = "auto",
    salts: Sequence[int] | None = None,
    stochastic_rounding: bool | None = None,
) -> None:
    """AdamW (or Adam with ``decoupled=False``) over lists of tensors, in place.

    ``impl``: ``"fused"`` (torch's fused kernel: one pass, at memory bandwidth on
    CPU), ``"single"`` (a per-tensor loop of tensor ops), ``"foreach"``
    (``torch._foreach_*``, the fast path on CUDA without the fused kernel),
    ``"compiled"`` (a ``torch.compile``'d per-tensor step), ``"native"`` (bfloat16 state under float32 CPU
    params: optreg's one-pass C kernel, :mod:`optreg_adam.functional.native`, for every tensor it applies to,
    the rest single), ``"auto"`` (fused when the tensors allow it and hold at least :data:`FUSED_MIN_NUMEL`
    elements, native for bfloat16 state where the C kernel builds, else single).
    ``max_exp_avg_sqs`` is empty unless ``amsgrad``. State in another dtype than its param (e.g. bfloat16 state under
    float32 params) takes the single or compiled path; ``stochastic_rounding`` is
    as in :func:`adamw_update_`, and ``salts`` (one int per tensor) decorrelate its
    random bits across tensors.
    """
    if not params:
        return
    if any(p.is_complex() for p in params):
        params, grads = [real_view(t) for t in params], [real_view(t) for t in grads]
        exp_avgs, exp_avg_sqs = [real_view(t) for t in exp_avgs], [real_view(t) for t in exp_avg_sqs]
        max_exp_avg_sqs = [real_view(t) for t in max_exp_avg_sqs]
    lowp = any(m.dtype != p.dtype or _wants_sr(p, m, stochastic_rounding) for m, p in zip(exp_avgs, params))
    if impl == "auto":
        fusable = not lowp and prefers_fused(params, grads) and all(s.device == p.device for s, p in zip(steps, params))
        impl = "fused" if fusable else "native" if lowp and native_available() else "single"
    kwargs = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay, "maximize": maximize,
              "decoupled": decoupled, "step_factor": step_factor}
    maxes = list(max_exp_avg_sqs) if amsgrad else []
    if impl == "fused":
        _fused_adam(params, grads, exp_avgs, exp_avg_sqs, maxes, steps, **kwargs)
    elif impl == "foreach":
        if lowp:
            raise ValueError("the foreach path needs state in the params' dtype; use impl='single' or 'compiled'")
        _multi_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, maxes, steps, **kwargs)
    elif impl in ("single", "compiled", "native"):
        _single_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, maxes, steps, use_compile=impl == "compiled",
                            use_native=impl == "native", salts=salts, stochastic_rounding=stochastic_rounding,
                            **kwargs)
    else:
        raise ValueError(f"unknown impl {impl!r}; choose auto, fused, single, foreach, compiled or native")


def _single_tensor_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    maximize, decoupled, step_factor, use_compile=False, use_native=False, salts=None, stochastic_rounding=None,
) -> None:
    advance_steps(steps, step_factor)
    device = params[0].device
    step_vector = scalar_vector(steps).to(device)
    s = adam_scalars(step_vector, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, decoupled=decoupled, step_factor=step_factor)
    stepped = _native_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_vector, s, beta2=beta2,
                           weight_decay=weight_decay, maximize=maximize, decoupled=decoupled, salts=salts,
                           stochastic_rounding=stochastic_rounding) if use_native else set()
    inv_bc2 = s.inv_bc2_sqrt.unbind(0)
    neg_step = s.neg_step.unbind(0)
    to_compile: dict[Any, list[tuple[Any, ...]]] = {}  # kernel -> flattened argument tuples
    for i, (param, grad, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
        if i in stepped:
            continue
        vmax = max_exp_avg_sqs[i] if max_exp_avg_sqs else None
        common = (s.keep, s.decay, s.w1, s.b2, 1.0 - beta2, inv_bc2[i], neg_step[i], s.eps, weight_decay,
                  maximize, decoupled)
        sr = _wants_sr(param, m, stochastic_rounding)
        lowp = m.dtype != param.dtype or sr
        kernel = _adam_tensor_lowp if lowp else _adam_tensor
        if lowp:
            salt = salts[i] if salts is not None else i
            seed = seed_of(steps[i].to(device), salt)
        if use_compile and can_flatten(param, grad, m, v, vmax):
            # compiled: the bf16 rounding's element index is an iota inside the kernel (index None)
            extra = (sr, seed, None) if lowp else ()
            to_compile.setdefault(kernel, []).append((*(flat(t) for t in (param, grad, m, v, vmax)), *common, *extra))
        else:
            extra = (sr, seed, index_like(param)) if lowp else ()
            kernel(param, grad, m, v, vmax, *common, *extra)
    for kernel, calls in to_compile.items():
        run_compiled(kernel, calls)


def _native_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_vector, s, *, beta2, weight_decay,
                 maximize, decoupled, salts, stochastic_rounding) -> set[int]:
    """The tensors optreg's C kernel takes (bf16 state with stochastic rounding under float32 CPU params, no amsgrad
    buffer), stepped in one call; returns their indices (none where the kernel is not available here)."""
    if max_exp_avg_sqs:
        return set()
    chosen = [i for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs))
              if _wants_sr(p, m, stochastic_rounding) and native_applies(p, g, m, v)]
    if not chosen:
        return set()
    index = torch.tensor(chosen, device=step_vector.device)
    salt = torch.tensor([(salts[i] if salts is not None else i) & 0x7FFFFFFF for i in chosen], dtype=torch.int32,
                        device=step_vector.device)
    seeds = seed_of(step_vector.index_select(0, index), salt)  # seed_of per tensor, as the torch path draws them
    taken = native_adamw_bf16(
        [params[i] for i in chosen], [grads[i] for i in chosen], [exp_avgs[i] for i in chosen],
        [exp_avg_sqs[i] for i in chosen], s.keep, s.decay, s.w1, s.b2, 1.0 - beta2,
        s.inv_bc2_sqrt.index_select(0, index), s.neg_step.index_select(0, index), s.eps, weight_decay, maximize,
        decoupled, seeds,
    )
    return set(chosen) if taken else set()


def _multi_tensor_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    maximize, decoupled, step_factor,
) -> None:
    advance_steps(steps, step_factor)
    grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype(
        [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(max_exp_avg_sqs) or [None] * len(params),
         list(steps)]  # type: ignore[list-item]
    )
    for (device, _), ((p, g, m, v, vmax, st), _) in grouped.items():
        s = adam_scalars(scalar_vector(st).to(device), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay, decoupled=decoupled, step_factor=step_factor)
        g = torch._foreach_neg(g) if maximize else list(g)
        if not decoupled and weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        if s.keep is not None:
            g = [gate(x, s.keep) for x in g]
        if decoupled and weight_decay != 0:
            torch._foreach_mul_(p, s.decay)
        torch._foreach_lerp_(m, g, [s.w1] * len(m))
        torch._foreach_mul_(v, s.b2)
        torch._foreach_addcmul_(v, g, g, 1.0 - beta2)
        vv = v
        if vmax[0] is not None:
            torch._foreach_maximum_(vmax, v)
            vv = vmax
        denom = torch._foreach_sqrt(vv)
        torch._foreach_mul_(denom, list(s.inv_bc2_sqrt.unbind(0)))
        torch._foreach_add_(denom, s.eps)
        torch._foreach_div_(denom, m)
        torch._foreach_reciprocal_(denom)
        torch._foreach_mul_(denom, list(s.neg_step.unbind(0)))
        torch._foreach_add_(p, denom)


def _fused_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
    maximize, decoupled, step_factor,
) -> None:
    """torch's fused kernel; ``step_factor`` becomes its ``found_inf`` (1 - factor: the kernel skips on 1)."""
    amsgrad = bool(max_exp_avg_sqs)
    grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype(
        [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(max_exp_avg_sqs) or [None] * len(params),
         list(steps)]  # type: ignore[list-item]
    )
    func = torch._fused_adamw_ if decoupled else torch._fused_adam_
    for (device, _), ((p, g, m, v, vmax, st), _) in grouped.items():
        found_inf = None
        if step_factor is None:
            torch._foreach_add_(st, 1.0)
        else:
            sf = step_factor.to(device=device, dtype=torch.float32)
            torch._foreach_add_(st, sf)
            found_inf = 1.0 - sf
        lr_arg = lr
        if isinstance(lr, torch.Tensor):
            lr_arg = lr.to(device=device, dtype=torch.float32) if device.type != "cpu" else lr.reshape(()).cpu()
        func(p, g, m, v, vmax if amsgrad else [], st, lr=lr_arg, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
             eps=eps, amsgrad=amsgrad, maximize=maximize, found_inf=found_inf)
