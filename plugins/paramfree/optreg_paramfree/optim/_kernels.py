"""Per-tensor kernels of the compiled path (``compile``): the same updates as the eager loops, as plain tensor code.

The estimators need sums over every parameter between passes, so each optimizer's compiled step is
one or more *passes*, each a kernel per parameter run through :func:`optreg.compiling.run_compiled`
(flattened 1-D tensors, one graph for every size): a pass updates the moments and writes the
tensor's share of the step's sums into an ``out`` tensor (no host sync; the optimizer adds them
up, then computes the new estimate), and the last pass updates the parameter with it.

Conventions: a pass that sums takes ``out`` first, a 1-D float64 tensor (the estimators' scalar dtype) with
one element per sum (at least 2: ``run_compiled`` gives 1-element tensors graphs of their own), and writes
``coefficient * sum`` into it. Not 0-dim outputs: inductor (torch 2.13) drops in-place writes to a 0-dim
float64 CPU input (float32 ones, and 1-D ones, are kept). Sums accumulate in ``out``'s dtype (products in
:func:`optreg.optim.accumulate_dtype`, float32 or wider, as :func:`optreg.optim.inner_product`): closer to
the exact sum than the eager float32 accumulation, and faster compiled, as inductor runs a float32 sum of more
than 4096 elements through a cascade-summation helper (a dependency chain through memory per vector) where a
float64 sum keeps its accumulators in registers.

Every step-dependent scalar is a 0-dim tensor (a new ``d`` or LR never recompiles); ``keep`` is the 0-dim
bool "the step is taken" (always given: a plain step runs the graph of a ``step_factor = 1`` step), which
zeroes the gradient of a skipped step as :func:`optreg.optim.gate_grad` does; Python floats, bools and
``None`` are per-group constants. Run eagerly (where torch.compile cannot compile) a kernel gives the same
values, more slowly.
"""

from __future__ import annotations

import torch

from optreg.compiling import ema_
from optreg.optim import accumulate_dtype

__all__ = [
    "cocob_",
    "dadapt_adam_moments_",
    "dadapt_adam_update_",
    "dadapt_lion_",
    "dadapt_sgd_grad_norm_",
    "dadapt_sgd_moments_",
    "dadapt_sgd_update_",
    "distance_norms_",
    "gate",
    "gated_grad",
    "grad_plus_l2",
    "mechanic_sums_",
    "mechanic_update_",
    "momo_adam_moments_",
    "momo_adam_update_",
    "momo_moments_",
    "momo_update_",
    "prodigy_moments_",
    "prodigy_update_",
    "sgd_update_",
]

T = torch.Tensor


def gate(x: T, keep: T) -> T:
    """``x`` where the step is taken, zeros where it is skipped (NaN cannot leak into state)."""
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def gated_grad(param: T, grad: T, keep: T, l2: float = 0.0) -> T:
    """``grad + l2 * param`` (L2 weight decay), gated by ``keep``."""
    return gate(grad + l2 * param if l2 != 0 else grad, keep)


def grad_plus_l2(param: T, grad: T, keep: T, l2: float = 0.0) -> T:
    """The gated ``grad``, plus ``l2 * param`` (the order of D-Adapt SGD, DoG and DoWG: decay after the gate)."""
    g = gate(grad, keep)
    return g + l2 * param if l2 != 0 else g


def _put(out: T, *values: T) -> None:
    """``out[i] = values[i]``: a pass's sums into its ``out``."""
    for i, value in enumerate(values):
        out[i] = value


def _dot(a: T, b: T, dtype: torch.dtype) -> T:
    """``<a, b>`` (what ``inner_product`` computes): products in :func:`optreg.optim.accumulate_dtype`, summed
    in ``dtype``."""
    wide = accumulate_dtype(a)
    return (a.to(wide) * b.to(wide)).sum(dtype=dtype)


def _l1(t: T, dtype: torch.dtype) -> T:
    """``sum |t|`` (what ``l1_norm`` computes), summed in ``dtype``."""
    return t.to(accumulate_dtype(t)).abs().sum(dtype=dtype)


# ---------------------------------------------------------------- Prodigy


def prodigy_moments_(
    out: T,
    param: T, grad: T, exp_avg: T | None, exp_avg_sq: T, s: T, p0: T,
    keep: T, keep1: T, c1: T, keep2: T, c2: T, keep3: T, c_num: T, c_s: T, active: T,
    l2: float,
) -> None:
    """Prodigy's first pass (``slice_p = 1``): the moments and ``s`` updated; ``out`` = ``c_num * <g, p0 - p>``,
    ``active * sum |s|``."""
    g = gated_grad(param, grad, keep, l2)
    numerator = c_num * _dot(g, p0 - param, out.dtype)
    if exp_avg is not None:
        exp_avg.mul_(keep1).add_(g * c1)
    exp_avg_sq.mul_(keep2).add_(g * (g * c2))
    s.mul_(keep3).add_(g * c_s)
    _put(out, numerator, active * _l1(s, out.dtype))


def prodigy_update_(
    param: T, grad: T, exp_avg: T | None, exp_avg_sq: T,
    keep: T, eps_d: T, c_decay: T | None, c_step: T,
    l2: float,
) -> None:
    """Prodigy's update: ``p += c_decay * p`` (decoupled decay), then ``p += c_step * m / (sqrt(v) + d * eps)``
    (``g`` in place of ``m`` when ``betas[0] = 0``)."""
    denom = exp_avg_sq.sqrt() + eps_d
    if c_decay is not None:
        param.add_(param * c_decay)
    direction = exp_avg if exp_avg is not None else gated_grad(param, grad, keep, l2)
    param.add_(direction / denom * c_step)


# ---------------------------------------------------------------- D-Adaptation


def dadapt_adam_moments_(
    out: T,
    param: T, grad: T, exp_avg: T, exp_avg_sq: T, s: T,
    keep: T, keep1: T, c1: T, keep2: T, c2: T, keep_s: T, c_s: T, c_num: T, active: T,
    eps: float, l2: float,
) -> None:
    """D-Adapt Adam's first pass: the moments and ``s`` updated; ``out`` = ``c_num * <g, s / (sqrt(v) + eps)>``
    (the old ``s`` and ``v``), ``active * sum |s|``."""
    g = gated_grad(param, grad, keep, l2)
    numerator = c_num * _dot(g, s / (exp_avg_sq.sqrt() + eps), out.dtype)
    exp_avg.mul_(keep1).add_(g * c1)
    exp_avg_sq.mul_(keep2).add_(g * (g * c2))
    s.mul_(keep_s).add_(g * c_s)
    _put(out, numerator, active * _l1(s, out.dtype))


def dadapt_adam_update_(param: T, exp_avg: T, exp_avg_sq: T, c_decay: T | None, c_step: T, eps: float) -> None:
    """D-Adapt Adam's update: ``p += c_decay * p`` (decoupled decay), then ``p += c_step * m / (sqrt(v) + eps)``."""
    if c_decay is not None:
        param.add_(param * c_decay)
    param.add_(exp_avg / (exp_avg_sq.sqrt() + eps) * c_step)


def dadapt_sgd_grad_norm_(out: T, grad: T, keep: T, active: T) -> None:
    """D-Adapt SGD's first pass: ``out[0]`` = ``active * ||g||^2`` (the gated gradient, before weight decay)."""
    g = gate(grad, keep)
    _put(out, active * _dot(g, g, out.dtype))


def dadapt_sgd_moments_(
    out: T, param: T, grad: T, s: T, keep: T, c: T, active: T, l2: float
) -> None:
    """D-Adapt SGD's second pass: ``s += c * g``; ``out`` = ``c * <g, s>`` (the old ``s``), ``active * ||s||^2``."""
    g = grad_plus_l2(param, grad, keep, l2)
    numerator = c * _dot(g, s, out.dtype)
    s.add_(g * c)
    _put(out, numerator, active * _dot(s, s, out.dtype))


def dadapt_sgd_update_(param: T, s: T, x0: T, ck: T) -> None:
    """D-Adapt SGD's update: ``p <- p + ck * ((x0 - s) - p)`` (``lerp`` towards ``z = x0 - s``)."""
    ema_(param, x0 - s, ck.to(param.dtype))


def dadapt_lion_(
    out: T,
    param: T, grad: T, exp_avg: T, s: T,
    keep: T, shrink: T | None, c_step: T, keep2: T, c2: T, keep_s: T, c_s: T, c_num: T, active: T,
    beta1: float,
) -> None:
    """D-Adapt Lion, one pass: decay, the sign step, the momentum, ``s``; ``out`` = ``c_num * <u, s>`` (the old
    ``s``), ``active * sum |s|``, the sum of the interpolation (the NaN probe)."""
    g = gate(grad, keep)
    if shrink is not None:
        param.mul_(shrink)
    update = exp_avg * beta1 + g * (1 - beta1)
    probe = update.to(accumulate_dtype(update)).sum(dtype=out.dtype)
    u = update.sign()
    param.add_(u * c_step)
    exp_avg.mul_(keep2).add_(g * c2)
    numerator = c_num * _dot(u, s, out.dtype)
    s.mul_(keep_s).add_(u * c_s)
    _put(out, numerator, active * _l1(s, out.dtype), probe)


# ---------------------------------------------------------------- DoG, DoWG


def distance_norms_(out: T, param: T, grad: T, x0: T, keep: T, active: T, l2: float) -> None:
    """DoG's and DoWG's first pass: ``out`` = ``active * ||p - x0||^2``, ``active * ||g||^2``."""
    g = grad_plus_l2(param, grad, keep, l2)
    diff = param - x0
    _put(out, active * _dot(diff, diff, out.dtype), active * _dot(g, g, out.dtype))


def sgd_update_(param: T, grad: T, keep: T, scale: T, l2: float) -> None:
    """DoG's and DoWG's update: ``p += scale * g`` (``g`` with its L2 term, gated)."""
    param.add_(grad_plus_l2(param, grad, keep, l2) * scale)


# ---------------------------------------------------------------- COCOB


def cocob_(
    param: T, grad: T, x0: T, theta: T, big_l: T, big_g: T, reward: T,
    keep: T, lr: T, alpha: float, l2: float,
) -> None:
    """COCOB-Backprop, one pass (the rule: :class:`optreg_paramfree.optim.cocob.COCOB`)."""
    g = gate((grad + l2 * param if l2 != 0 else grad) * lr, keep)
    abs_g = g.abs()
    big_l.copy_(torch.maximum(big_l, abs_g))
    big_g.add_(abs_g)
    reward.sub_(g * (param - x0)).clamp_(min=0)
    theta.sub_(g)
    bet = torch.maximum(big_g + big_l, alpha * big_l) * big_l
    param.copy_(x0 + theta / bet * (big_l + reward))


# ---------------------------------------------------------------- MoMo, MoMo-Adam


def momo_moments_(out: T, param: T, grad: T, grad_avg: T, keep: T, keep_avg: T, c: T) -> None:
    """MoMo's first pass: ``d <- keep_avg * d + c * g``; ``out`` = ``<g, x>``, ``<x, d>``, ``||d||^2``."""
    g = gate(grad, keep)
    grad_avg.mul_(keep_avg).add_(g * c)
    dtype = out.dtype
    _put(out, _dot(g, param, dtype), _dot(param, grad_avg, dtype), _dot(grad_avg, grad_avg, dtype))


def momo_update_(param: T, grad_avg: T, neg_tau: T, shrink: T | None) -> None:
    """MoMo's update: ``x <- (x - tau * d) / shrink`` (``shrink = 1 + lr * weight_decay``; none without decay)."""
    param.add_(grad_avg * neg_tau)
    if shrink is not None:
        param.div_(shrink)


def momo_adam_moments_(
    out: T, param: T, grad: T, grad_avg: T, grad_avg_sq: T,
    keep: T, keep1: T, c1: T, keep2: T, bc2: T,
    c2: float, eps: float,
) -> None:
    """MoMo-Adam's first pass: Adam's moments; ``out`` = ``<g, x>``, ``<x, m>``, ``<m, m / (sqrt(v / bc2) + eps)>``."""
    g = gate(grad, keep)
    grad_avg.mul_(keep1).add_(g * c1)
    grad_avg_sq.mul_(keep2).add_(g * g * c2)
    precond = (grad_avg_sq / bc2).sqrt() + eps
    dtype = out.dtype
    _put(out, _dot(g, param, dtype), _dot(param, grad_avg, dtype), _dot(grad_avg, grad_avg / precond, dtype))


def momo_adam_update_(
    param: T, grad_avg: T, grad_avg_sq: T, bc2: T, neg_tau: T, scale: T | None, shrink: T | None, eps: float
) -> None:
    """MoMo-Adam's update: ``x <- (x * scale - tau * m / (sqrt(v / bc2) + eps)) / shrink`` (``scale``: decoupled
    decay, ``shrink``: proximal decay; either may be absent)."""
    if scale is not None:
        param.mul_(scale)
    param.add_(grad_avg / ((grad_avg_sq / bc2).sqrt() + eps) * neg_tau)
    if shrink is not None:
        param.div_(shrink)


# ---------------------------------------------------------------- Mechanic


def mechanic_sums_(out: T, param: T, grad: T, ref: T, prev: T, keep: T, sign: float) -> None:
    """Mechanic's pass before the inner step: ``prev <- x``; ``out`` = ``||g||^2``, ``||x||^2``,
    ``sign * <g, x_ref - x>``, ``<x, x_ref - x>`` (``h`` is linear in the last two, so one pass serves both)."""
    g = gate(grad, keep)
    diff = ref - param
    prev.copy_(param)
    dtype = out.dtype
    _put(out, _dot(g, g, dtype), _dot(param, param, dtype), sign * _dot(g, diff, dtype), _dot(param, diff, dtype))


def mechanic_update_(param: T, ref: T, prev: T, s_eps: T, new_sum: T, take: T) -> None:
    """Mechanic's pass after the inner step: ``x <- x_ref + sum(s) * ((x_prev - x_ref) / (S + eps) + u)`` with
    ``u = x - x_prev`` the inner update, where the step is taken."""
    delta = (prev - ref) / s_eps + (param - prev)
    param.copy_(torch.where(take, ref + delta * new_sum, param))
