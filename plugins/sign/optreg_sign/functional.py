"""Functional Lion and Signum/signSGD updates: per tensor, multi-tensor and compiled.

The stable entry points for other plugins are :func:`lion_update_` and
:func:`signum_update_` (one tensor, in place) and :func:`lion` / :func:`signum`
(lists of tensors, choosing the per-tensor, multi-tensor or compiled path).

``step_factor`` (a 0-dim 0/1 tensor, see :mod:`optreg.optim`) gates a step
without a host-device sync: with 0 the parameter and every state tensor keep
their exact bits, even when the gradient holds NaN or inf, because the new
values are computed and then committed where the step is taken
(:func:`optreg.optim.commit_`, a ``torch.where``), never blended. With
1 the result is the plain step's, bit for bit: both paths do the same
arithmetic. The eager per-tensor path pays one extra pass per tensor for the
selection; the compiled path fuses it away (and always gates, so a plain step
and a step with factor 1 run the same kernel).

Non-finite gradients: ``torch.sign`` maps NaN to 0, so a NaN gradient would leave a
parameter in place while its momentum holds NaN for ever (the coordinate frozen without a
word). Here a coordinate whose signed quantity is NaN or +-inf becomes NaN in the parameter,
as with ``torch.optim.Adam``: the loss shows it. Skip-step (``optreg-skipstep``) is the remedy
that keeps such a step out altogether.

Dtypes: every update is computed in the parameter's dtype (float64 stays float64: no
coefficient or intermediate is rounded to float32); the compiled kernel computes bf16/fp16 in
float32. Complex parameters step as their ``torch.view_as_real`` (the sign of each real and
imaginary component; shape scaling sees the real view's shape).

References: Chen et al. 2023, *Symbolic Discovery of Optimization Algorithms*
(Lion); Bernstein et al. 2018, *signSGD: Compressed Optimisation for
Non-Convex Problems* (signSGD, Signum).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from optreg.compiling import call_compiled, can_flatten, compile_min_numel, compiled, flat
from optreg.optim import commit_, real_view, use_foreach

__all__ = [
    "lion",
    "lion_update_",
    "shape_scale",
    "signum",
    "signum_update_",
]

Number = float | torch.Tensor


# ---------------------------------------------------------------- helpers


def _as_real(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Complex tensors as their real views (:func:`optreg.optim.real_view`): the sign is taken per real
    and imaginary component."""
    return [None if t is None else real_view(t) for t in tensors]


def _take(step_factor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``step_factor != 0`` on ``device``: the 0-dim "the step is taken" mask of :func:`optreg.optim.commit_`
    (``None`` for a plain step)."""
    if step_factor is None:
        return None
    return step_factor.reshape(()).to(device=device, non_blocking=True) != 0


def shape_scale(shape: Sequence[int]) -> float:
    """The Signum shape scaling ``2 / (rows + cols)`` for a matrix (rows = dim 0, cols = the rest).

    Tensors with fewer than two dimensions are not scaled (1.0). See Bernstein et al.'s
    width-scaling note in Emerging-Optimizers and https://arxiv.org/abs/2506.07254.
    """
    if len(shape) < 2:
        return 1.0
    rows = int(shape[0])
    cols = 1
    for s in shape[1:]:
        cols *= int(s)
    return 2.0 / (rows + cols) if rows + cols > 0 else 1.0


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a step on ``dtype`` computes in: float64 stays float64, bf16/fp16 compute in float32."""
    return torch.promote_types(dtype, torch.float32)


def _lr_like(lr: Number, param: torch.Tensor) -> Number:
    """A tensor ``lr`` widened to the param's precision (a float32 LR on float64 params is upcast, never the
    param's arithmetic narrowed); floats are returned as they are."""
    if isinstance(lr, torch.Tensor) and lr.dtype != param.dtype:
        wide = torch.promote_types(lr.dtype, param.dtype)
        if wide != lr.dtype:
            return lr.to(wide)
    return lr


def _sign_update_(
    param: torch.Tensor,
    x: torch.Tensor,
    *,
    owned: bool,
    lr: Number,
    weight_decay: float,
    take: torch.Tensor | None,
    scale: float = 1.0,
) -> None:
    """``param = param * (1 - lr * weight_decay) - lr * scale * sign(x)``, NaN where ``x`` is NaN or +-inf.

    ``owned``: ``x`` is a temporary of this step (its sign is taken in place). ``take``: the
    step_factor mask (:func:`_take`; False keeps ``param``'s old bits), or None for a plain step. Both
    the plain and the gated step run the same arithmetic, so a factor of 1 equals the plain step bit
    for bit.
    """
    lr = _lr_like(lr, param)
    step_lr = lr * scale if scale != 1.0 else lr
    # param + 0 * x: NaN and +-inf in x become NaN in the param (torch.sign alone gives 0 for NaN and
    # would leave the coordinate silently frozen); for finite x it adds an exact zero. One more pass in
    # eager mode (no single torch op gives a NaN-propagating sign); the gated step folds it into the
    # copy it makes anyway. Keep alpha a float: under torch.compile(opt.step) inductor folds x * (int 0)
    # to 0, not x * 0.0 (checked).
    if take is None:
        target = param.add_(x, alpha=0.0)
    else:
        target = torch.add(param, x, alpha=0.0)
    direction = x.sign_() if owned else torch.sign(x)
    if weight_decay != 0:
        target.mul_(1 - lr * weight_decay)
    if isinstance(step_lr, torch.Tensor):
        target.addcmul_(direction, step_lr, value=-1)
    else:
        target.add_(direction, alpha=-step_lr)
    if take is not None:
        commit_(param, target, take)


def _multi_sign_update_(
    params: list[torch.Tensor],
    xs: list[torch.Tensor],
    *,
    owned: bool,
    lr: float,
    weight_decay: float,
    take: torch.Tensor | None,
    scale: float = 1.0,
) -> None:
    """:func:`_sign_update_` over lists with ``torch._foreach_*`` ops (``lr`` a Python float)."""
    if take is None:
        targets = params
        torch._foreach_add_(targets, xs, alpha=0.0)  # NaN / inf in x reach the params (see _sign_update_)
    else:
        targets = torch._foreach_add(params, xs, alpha=0.0)
    if owned:
        torch._foreach_sign_(xs)
        directions = xs
    else:
        directions = torch._foreach_sign(xs)
    if weight_decay != 0:
        torch._foreach_mul_(targets, 1 - lr * weight_decay)
    torch._foreach_add_(targets, directions, alpha=-(lr * scale if scale != 1.0 else lr))
    if take is not None:
        for p, new_p in zip(params, targets):
            commit_(p, new_p, take)


def _kernel_sign(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)``, NaN where ``x`` is NaN or +-inf (inside a compiled kernel: free, fused).

    Not ``sign(x) + x * 0``: inductor's peephole pass folds a multiplication by the integer 0 to 0,
    which would drop the NaN (measured; ``tests/test_dtypes_and_nonfinite.py`` runs the kernels).
    """
    return torch.where(torch.isfinite(x), torch.sign(x), float("nan"))


# ---------------------------------------------------------------- Lion


def _lion_single_eager(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    take: torch.Tensor | None,
) -> None:
    """One eager Lion step on one (real) tensor."""
    if maximize:
        grad = torch.neg(grad)
    x = torch.lerp(exp_avg, grad, 1 - beta1)
    _sign_update_(param, x, owned=True, lr=lr, weight_decay=weight_decay, take=take)
    if take is None:
        exp_avg.lerp_(grad, 1 - beta2)
    else:
        commit_(exp_avg, torch.lerp(exp_avg, grad, 1 - beta2), take)


def _lion_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    hyper: torch.Tensor,
    take: torch.Tensor,
    maximize: bool,
) -> None:
    """The compiled Lion step: ``hyper = [lr, 1 - lr*wd, 1 - beta1, 1 - beta2]`` in the compute dtype.

    Always gated (``take`` is a cached True for a plain step), so a plain step and one with factor 1
    run the same kernel."""
    lr, decay, w1, w2 = hyper[0], hyper[1], hyper[2], hyper[3]
    g = grad.to(hyper.dtype)
    if maximize:
        g = -g
    m = exp_avg.to(hyper.dtype)
    p = param.to(hyper.dtype)
    direction = _kernel_sign(m + w1 * (g - m))
    new_p = p * decay - lr * direction
    new_m = m + w2 * (g - m)
    commit_(param, new_p.to(param.dtype), take)
    commit_(exp_avg, new_m.to(exp_avg.dtype), take)


def _compiled(fn_name: str) -> Any:
    """The kernel ``fn_name`` through :func:`optreg.compiling.compiled`: built once per kernel and backend (inductor,
    or the one ``optreg.compiling.compile_backend`` / ``OPTREG_COMPILE_BACKEND`` names), as every optreg kernel."""
    return compiled({"lion": _lion_kernel, "signum": _signum_kernel}[fn_name])


_TRUE: dict[torch.device, torch.Tensor] = {}

#: Tensors with fewer elements take the eager path even when ``compiled=True``: a compiled call costs
#: tens of microseconds of guard and wrapper overhead, more than the fused kernel saves on a small tensor.
#: (Every size compiles inside ``optreg.compiling.compile_all_sizes()``: the kit's compiled-parity check.)
COMPILE_MIN_NUMEL = 1 << 16


def _always(device: torch.device) -> torch.Tensor:
    """A cached ``True`` 0-dim tensor on ``device`` (the take-mask of an ungated compiled step)."""
    if device not in _TRUE:
        _TRUE[device] = torch.ones((), dtype=torch.bool, device=device)
    return _TRUE[device]


def _flat(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """1-D aliases (:func:`optreg.compiling.flat`) when every tensor is contiguous, else as is."""
    return [flat(t) for t in tensors] if can_flatten(*tensors) else list(tensors)


def _lion_hyper(
    lr: Number, beta1: float, beta2: float, weight_decay: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[lr, 1 - lr*wd, 1 - beta1, 1 - beta2]`` as a ``dtype`` tensor on ``device`` (no host sync)."""
    if isinstance(lr, torch.Tensor):
        lr_t = lr.reshape(()).to(device=device, dtype=dtype, non_blocking=True)
        rest = torch.tensor([1 - beta1, 1 - beta2], dtype=dtype).to(device, non_blocking=True)
        return torch.cat([lr_t.reshape(1), (1 - lr_t * weight_decay).reshape(1), rest])
    values = [float(lr), 1 - float(lr) * weight_decay, 1 - beta1, 1 - beta2]
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def lion_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    compiled: bool = False,
) -> None:
    """One Lion step on one tensor, in place (Chen et al. 2023, arXiv:2302.06675).

    ``param *= 1 - lr * weight_decay``; ``param -= lr * sign(beta1 * m + (1 - beta1) * g)``;
    ``m = beta2 * m + (1 - beta2) * g``. ``exp_avg`` (``m``) has ``param``'s shape and dtype.
    A coordinate whose ``beta1 * m + (1 - beta1) * g`` is NaN or +-inf becomes NaN in ``param``.
    ``step_factor``: 0-dim 0/1 tensor; 0 leaves ``param`` and ``exp_avg`` bit-identical.
    ``compiled``: run the fused ``torch.compile`` kernel (first call compiles) for tensors of at
    least :data:`COMPILE_MIN_NUMEL` elements (smaller ones take the eager path).
    """
    lion(
        [param], [grad], [exp_avg], lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
        maximize=maximize, step_factor=step_factor, foreach=False, compiled=compiled,
    )


def lion(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor],
    *,
    lr: Number,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    foreach: bool | None = None,
    compiled: bool = False,
) -> None:
    """Lion over lists of tensors: compiled, multi-tensor (``foreach``) or per-tensor path.

    ``foreach=None`` picks the multi-tensor path only when every tensor is on an accelerator, the
    per-tensor loop on CPU (where ``torch._foreach_*`` is slower than a plain loop):
    :func:`optreg.optim.use_foreach`.
    """
    if not params:
        return
    if compiled:
        _lion_compiled(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor)
        return
    foreach = use_foreach(foreach, params)
    if foreach:
        _multi_tensor_lion(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor)
    else:
        _single_tensor_lion(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor)


def _single_tensor_lion(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor) -> None:
    takes: dict[torch.device, torch.Tensor | None] = {}
    for param, grad, exp_avg in zip(params, grads, exp_avgs):
        if param.numel() == 0:
            continue
        device = param.device
        if device not in takes:
            takes[device] = _take(step_factor, device)
        p, g, m = _as_real(param, grad, exp_avg)
        _lion_single_eager(
            p, g, m, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, maximize=maximize,
            take=takes[device],
        )


def _multi_tensor_lion(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor) -> None:
    if isinstance(lr, torch.Tensor):  # the foreach ops take Python scalars; use the per-tensor path
        _single_tensor_lion(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor)
        return
    buckets: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
    for param, grad, exp_avg in zip(params, grads, exp_avgs):
        if param.numel() == 0:
            continue
        p, g, m = _as_real(param, grad, exp_avg)
        bucket = buckets.setdefault((p.device, p.dtype), [[], [], []])
        bucket[0].append(p)
        bucket[1].append(g)
        bucket[2].append(m)
    for (device, _), (ps, gs, ms) in buckets.items():
        take = _take(step_factor, device)
        if maximize:
            gs = torch._foreach_neg(gs)
        xs = torch._foreach_lerp(ms, gs, 1 - beta1)
        _multi_sign_update_(ps, xs, owned=True, lr=lr, weight_decay=weight_decay, take=take)
        if take is None:
            torch._foreach_lerp_(ms, gs, 1 - beta2)
        else:
            for m, new_m in zip(ms, torch._foreach_lerp(ms, gs, 1 - beta2)):
                commit_(m, new_m, take)


def _lion_compiled(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, step_factor) -> None:
    takes: dict[torch.device, torch.Tensor] = {}
    hypers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
    small: list[list[torch.Tensor]] = [[], [], []]
    min_numel = compile_min_numel(COMPILE_MIN_NUMEL)
    for param, grad, exp_avg in zip(params, grads, exp_avgs):
        if param.numel() == 0:
            continue
        if param.numel() < min_numel:
            for i, t in enumerate((param, grad, exp_avg)):
                small[i].append(t)
            continue
        device = param.device
        if device not in takes:
            take = _take(step_factor, device)
            takes[device] = _always(device) if take is None else take
        p, g, m = _as_real(param, grad, exp_avg)
        key = (device, _compute_dtype(p.dtype))
        if key not in hypers:
            hypers[key] = _lion_hyper(lr, beta1, beta2, weight_decay, *key)
        p, g, m = _flat(p, g, m)
        call_compiled(_lion_kernel, _compiled("lion"), p, g, m, hypers[key], takes[device], maximize)
    if small[0]:
        _single_tensor_lion(*small, lr, beta1, beta2, weight_decay, maximize, step_factor)


# ---------------------------------------------------------------- Signum / signSGD


def _signum_direction(
    grad: torch.Tensor,
    buf: torch.Tensor | None,
    step: torch.Tensor | None,
    momentum: float,
    nesterov: bool,
    correct_bias: bool,
) -> torch.Tensor:
    """The (unsigned) direction whose sign is the update; ``buf`` is the already-updated momentum.

    Returns ``grad`` or ``buf`` themselves, or a new temporary (the caller may overwrite it).
    """
    if buf is None:
        return grad
    if not nesterov:
        return buf  # bias correction divides by a positive number: the sign is unchanged
    if not correct_bias:
        return torch.lerp(grad, buf, momentum)  # momentum * buf + (1 - momentum) * grad
    # momentum * buf / (1 - momentum^(t+1)) + (1 - momentum) * grad / (1 - momentum^t), the coefficients in
    # the buffer's precision or better (the step counter is a float32 integer, exact)
    assert step is not None
    t = step.to(_compute_dtype(buf.dtype))
    coef_buf = momentum / (1 - torch.pow(momentum, t + 1))
    coef_grad = (1 - momentum) / (1 - torch.pow(momentum, t))
    return torch.mul(buf, coef_buf.to(buf.dtype)).add_(grad * coef_grad.to(grad.dtype))


def _signum_single_eager(
    param: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor | None,
    step: torch.Tensor | None,
    *,
    lr: Number,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    correct_bias: bool,
    scale: float,
    maximize: bool,
    take: torch.Tensor | None,
) -> None:
    if maximize:
        grad = torch.neg(grad)
    new_buf = new_step = None
    if buf is not None:
        assert step is not None
        if take is None:
            new_step, new_buf = step.add_(1), buf.lerp_(grad, 1 - momentum)
        else:
            new_step, new_buf = step + 1, torch.lerp(buf, grad, 1 - momentum)
    x = _signum_direction(grad, new_buf, new_step, momentum, nesterov, correct_bias)
    owned = x is not new_buf and x is not grad
    _sign_update_(param, x, owned=owned, lr=lr, weight_decay=weight_decay, take=take, scale=scale)
    if buf is not None and take is not None:
        commit_(buf, new_buf, take)
        commit_(step, new_step, take)


def _signum_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor | None,
    step: torch.Tensor | None,
    hyper: torch.Tensor,
    take: torch.Tensor,
    momentum: float,
    nesterov: bool,
    correct_bias: bool,
    maximize: bool,
) -> None:
    """The compiled Signum step: ``hyper = [lr * scale, 1 - lr*wd]`` in the compute dtype."""
    step_lr, decay = hyper[0], hyper[1]
    g = grad.to(hyper.dtype)
    if maximize:
        g = -g
    if buf is None:
        direction = g
    else:
        assert step is not None
        new_step = step + 1
        m = buf.to(hyper.dtype)
        new_m = m + (1 - momentum) * (g - m)
        if nesterov and correct_bias:
            t = new_step.to(hyper.dtype)
            coef_buf = momentum / (1 - torch.pow(momentum, t + 1))
            coef_grad = (1 - momentum) / (1 - torch.pow(momentum, t))
            direction = new_m * coef_buf + g * coef_grad
        elif nesterov:
            direction = g + momentum * (new_m - g)
        else:
            direction = new_m
        commit_(buf, new_m.to(buf.dtype), take)
        commit_(step, new_step, take)
    new_p = param.to(hyper.dtype) * decay - step_lr * _kernel_sign(direction)
    commit_(param, new_p.to(param.dtype), take)


def signum_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor | None,
    step: torch.Tensor | None,
    *,
    lr: Number,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
    correct_bias: bool = False,
    use_shape_scaling: bool = False,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    compiled: bool = False,
) -> None:
    """One Signum / signSGD step on one tensor, in place (Bernstein et al. 2018, arXiv:1802.04434).

    With ``momentum_buffer`` (and its 0-dim float ``step`` counter):
    ``m = momentum * m + (1 - momentum) * g`` and the direction is ``m`` (bias correction
    does not change its sign) or, with ``nesterov``, ``momentum * m + (1 - momentum) * g``
    (each term bias-corrected when ``correct_bias``). Without a buffer the direction is ``g``
    (signSGD). Then ``param *= 1 - lr * weight_decay`` and ``param -= lr * s * sign(direction)``
    with ``s = 2 / (rows + cols)`` for matrices when ``use_shape_scaling``, else 1. A coordinate
    whose direction is NaN or +-inf becomes NaN in ``param``.
    """
    signum(
        [param], [grad], [momentum_buffer], [step], lr=lr, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov, correct_bias=correct_bias, use_shape_scaling=use_shape_scaling, maximize=maximize,
        step_factor=step_factor, foreach=False, compiled=compiled,
    )


def signum(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum_buffers: Sequence[torch.Tensor | None],
    steps: Sequence[torch.Tensor | None],
    *,
    lr: Number,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
    correct_bias: bool = False,
    use_shape_scaling: bool = False,
    maximize: bool = False,
    step_factor: torch.Tensor | None = None,
    foreach: bool | None = None,
    compiled: bool = False,
) -> None:
    """Signum / signSGD over lists of tensors (``None`` buffers: plain signSGD for that tensor)."""
    if not params:
        return
    if compiled:
        _signum_compiled(params, grads, momentum_buffers, steps, lr, momentum, weight_decay, nesterov,
                         correct_bias, use_shape_scaling, maximize, step_factor)
        return
    foreach = use_foreach(foreach, params)
    if foreach and not isinstance(lr, torch.Tensor) and not (nesterov and correct_bias):
        _multi_tensor_signum(params, grads, momentum_buffers, steps, lr, momentum, weight_decay, nesterov,
                             use_shape_scaling, maximize, step_factor)
        return
    takes: dict[torch.device, torch.Tensor | None] = {}
    for param, grad, buf, step in zip(params, grads, momentum_buffers, steps):
        if param.numel() == 0:
            continue
        device = param.device
        if device not in takes:
            takes[device] = _take(step_factor, device)
        p, g, m = _as_real(param, grad, buf)
        scale = shape_scale(p.shape) if use_shape_scaling else 1.0  # a complex matrix: its real view's shape
        _signum_single_eager(
            p, g, m, step, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
            correct_bias=correct_bias, scale=scale, maximize=maximize, take=takes[device],
        )


def _multi_tensor_signum(params, grads, bufs, steps, lr, momentum, weight_decay, nesterov, use_shape_scaling,
                         maximize, step_factor) -> None:
    buckets: dict[tuple[torch.device, torch.dtype, bool, float], list[list[Any]]] = {}
    for param, grad, buf, step in zip(params, grads, bufs, steps):
        if param.numel() == 0:
            continue
        p, g, m = _as_real(param, grad, buf)
        scale = shape_scale(p.shape) if use_shape_scaling else 1.0
        bucket = buckets.setdefault((p.device, p.dtype, m is not None, scale), [[], [], [], []])
        for i, item in enumerate((p, g, m, step)):
            bucket[i].append(item)
    for (device, _, has_buf, scale), (ps, gs, ms, ss) in buckets.items():
        take = _take(step_factor, device)
        if maximize:
            gs = torch._foreach_neg(gs)
        owned = False
        if not has_buf:
            xs = gs
        else:
            if take is None:
                torch._foreach_add_(ss, 1)
                torch._foreach_lerp_(ms, gs, 1 - momentum)
                new_ss, new_ms = ss, ms
            else:
                new_ss = torch._foreach_add(ss, 1)
                new_ms = torch._foreach_lerp(ms, gs, 1 - momentum)
            xs = torch._foreach_lerp(gs, new_ms, momentum) if nesterov else new_ms
            owned = nesterov
        _multi_sign_update_(ps, xs, owned=owned, lr=lr, weight_decay=weight_decay, take=take, scale=scale)
        if has_buf and take is not None:
            for m, new_m, s, new_s in zip(ms, new_ms, ss, new_ss):
                commit_(m, new_m, take)
                commit_(s, new_s, take)


def _signum_compiled(params, grads, bufs, steps, lr, momentum, weight_decay, nesterov, correct_bias,
                     use_shape_scaling, maximize, step_factor) -> None:
    takes: dict[torch.device, torch.Tensor] = {}
    small: list[list[Any]] = [[], [], [], []]
    min_numel = compile_min_numel(COMPILE_MIN_NUMEL)
    for param, grad, buf, step in zip(params, grads, bufs, steps):
        if param.numel() == 0:
            continue
        if param.numel() < min_numel:
            for i, t in enumerate((param, grad, buf, step)):
                small[i].append(t)
            continue
        device = param.device
        if device not in takes:
            take = _take(step_factor, device)
            takes[device] = _always(device) if take is None else take
        p, g, m = _as_real(param, grad, buf)
        scale = shape_scale(p.shape) if use_shape_scaling else 1.0
        dtype = _compute_dtype(p.dtype)
        if isinstance(lr, torch.Tensor):
            lr_t = lr.reshape(1).to(device=device, dtype=dtype, non_blocking=True)
            hyper = torch.cat([lr_t * scale, 1 - lr_t * weight_decay])
        else:
            hyper = torch.tensor([float(lr) * scale, 1 - float(lr) * weight_decay], dtype=dtype)
            hyper = hyper.to(device, non_blocking=True)
        p, g, m = _flat(p, g, m)
        call_compiled(_signum_kernel, _compiled("signum"), p, g, m, step, hyper, takes[device], momentum, nesterov,
                      correct_bias, maximize)
    if small[0]:
        signum(*small, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
               correct_bias=correct_bias, use_shape_scaling=use_shape_scaling, maximize=maximize,
               step_factor=step_factor, foreach=False, compiled=False)
