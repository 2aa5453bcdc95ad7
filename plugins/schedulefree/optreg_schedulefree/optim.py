"""Schedule-free AdamW, SGD and RAdam (Defazio et al. 2024, "The Road Less Scheduled").

Three sequences: ``z`` takes the base optimizer's steps, ``x`` is a weighted
average of the ``z`` iterates (where to evaluate), ``y = beta*x + (1-beta)*z``
is where gradients are taken (the parameters while training). Only ``z`` is
stored; the parameters hold ``y`` in train mode and ``x`` in eval mode.

Per step, with ``c = w_t / sum(w)`` and ``w_t = (t+1)^r * max_lr^weight_lr_power``:
``y <- lerp(y, z, c) + lr*(beta*(1-c) - 1)*u``, ``z <- z - lr*u`` where ``u``
is the base direction (the gradient, Adam's normalized gradient, or RAdam's).

Differences from the ``schedulefree`` package a user may notice: a fresh
optimizer starts in train mode (``train()`` first is harmless, not required);
the gradients are not overwritten; the step counters and averaging weights are
0-dim tensors (``step(step_factor=t)`` without a host sync); ``weight_decay_at_y
= false`` computes the decay at ``z`` (the reference's ``decay_at_z``); ``maximize``
as in ``torch.optim``. Complex params are stepped as their ``torch.view_as_real``
(each part a real number, as torch's Adam does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optreg.compiling import can_flatten, ema_, flat, run_compiled
from optreg.optim import OptregOptimizer, as_scalar, gate_grad, params_with_grads
from optreg_schedulefree._common import Coefficients, Scratch, group_device, host_scalars, pick_foreach, real

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeRAdam", "ScheduleFreeSGD", "ScheduleFreeOptimizer"]

_SCALARS = ("k", "lr_max", "weight_sum", "scheduled_lr")


def eval_mode_error(name: str) -> RuntimeError:
    return RuntimeError(
        f"{name}.step() was called in eval mode: the parameters hold the averaged point x, not the training "
        "point y. Call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
        "the model for inference."
    )


_SCHEDULE_WARNING = (
    "a schedule-free optimizer replaces the LR schedule with iterate averaging; give it a constant LR "
    "(its warmup_steps option warms up) and evaluate in eval mode"
)


class ScheduleFreeOptimizer(OptregOptimizer):
    """Base of the schedule-free optimizers: modes, averaging weights, checkpoint handling.

    :meth:`train` puts ``y`` in the parameters, :meth:`eval` puts ``x``; both are
    no-ops when already in that mode. The mode is saved in the state dict (each
    param group's ``train_mode``): a checkpoint loads into the mode it was saved
    in, so call ``train()`` (or ``eval()``) after loading, as before saving.
    """

    #: ``ScheduledLR`` warns when a varying schedule drives these optimizers.
    schedule_warning = _SCHEDULE_WARNING
    #: The per-tensor work buffer is rebuilt after a copy, not pickled.
    TRANSIENT = ("scratch",)

    def _beta(self, group: dict[str, Any]) -> float:
        """The interpolation coefficient beta of ``group`` (``betas[0]`` or ``momentum``)."""
        raise NotImplementedError

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._init_transient()
        super().__init__(params, defaults)

    def _init_transient(self) -> None:
        self.scratch = Scratch()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # pickles made before these options existed
            group.setdefault("maximize", False)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("train_mode", self.param_groups[0].get("train_mode", True))
        device = group_device(group)
        for key in _SCALARS:
            if key not in group:
                group[key] = as_scalar(0.0, device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            device = group_device(group)
            group.setdefault("train_mode", True)
            group.setdefault("maximize", False)
            for key in _SCALARS:
                group[key] = as_scalar(group.get(key, 0.0), device)

    # -- modes

    @property
    def training(self) -> bool:
        """True when the parameters hold the training point y."""
        return all(group["train_mode"] for group in self.param_groups)

    def _switch(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta = self._beta(group)
            weight = 1 - beta if to_train else 1 - 1 / beta
            for p in group["params"]:
                z = self.state[p].get("z")
                if z is not None:
                    real(p).lerp_(real(z).to(p.device), weight)
            group["train_mode"] = to_train

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to the training point ``y`` (call before training steps; harmless if already there)."""
        self._switch(True)

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to the averaged point ``x`` (call before evaluation and before exporting the model)."""
        self._switch(False)

    # -- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Take one step (train mode only); ``step_factor`` (0/1 tensor) gates it without a host sync."""
        if not self.training:
            raise eval_mode_error(type(self).__name__)
        return super().step(closure, step_factor=step_factor)

    def _weights(
        self, group: dict[str, Any], step_factor: torch.Tensor | None, lr_factor: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance the group's scalars; return ``(sf, lr_t, ckp1, k)`` (``k`` before the step).

        All are 0-dim tensors in the scalars' dtype (float64 where the device has it).
        """
        k, lr_max, weight_sum, scheduled = (group[key] for key in _SCALARS)
        sf = torch.ones_like(k) if step_factor is None else step_factor.to(device=k.device, dtype=k.dtype)
        lr = as_scalar(group["lr"], k.device)
        if group["warmup_steps"] > 0:
            lr = lr * torch.clamp((k + 1) / group["warmup_steps"], max=1.0)
        if lr_factor is not None:
            lr = lr * lr_factor
        new_lr_max = torch.maximum(lr_max, lr)
        weight = (k + 1) ** group["r"] * new_lr_max ** group["weight_lr_power"]
        new_sum = weight_sum + weight
        positive = new_sum > 0
        ckp1 = torch.where(positive, weight / torch.where(positive, new_sum, torch.ones_like(new_sum)), 0.0)
        take = sf != 0
        group["k"] = k + sf
        group["lr_max"] = torch.where(take, new_lr_max, lr_max)
        group["weight_sum"] = torch.where(take, new_sum, weight_sum)
        group["scheduled_lr"] = torch.where(take, lr, scheduled)
        return sf, lr, ckp1, k

    def _init_state(self, params: list[torch.Tensor], second_moment: bool) -> None:
        for p in params:
            state = self.state[p]
            if "z" not in state:
                state["z"] = p.detach().clone(memory_format=torch.preserve_format)
                if second_moment:
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _check(lr: Any, beta: float, weight_decay: float, warmup_steps: int, r: float, weight_lr_power: float) -> None:
    if not float(lr) >= 0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 < beta < 1.0:
        raise ValueError(f"the interpolation coefficient (betas[0] / momentum) must be in (0, 1), got {beta}")
    if not weight_decay >= 0 or not warmup_steps >= 0 or not r >= 0 or not weight_lr_power >= 0:
        raise ValueError("weight_decay, warmup_steps, r and weight_lr_power must be >= 0")


def _select(cond: torch.Tensor, a: float, b: float, like: torch.Tensor) -> torch.Tensor:
    """``a`` where ``cond`` else ``b``, as a 0-dim tensor in ``like``'s dtype (never a float32 scalar)."""
    return torch.where(cond, torch.full((), a, dtype=like.dtype, device=like.device), b)


# ---------------------------------------------------------------- functional layer
#
# ``ys`` are the params (or their view_as_real), ``zs`` the stored z, ``vs`` Adam's second moments,
# ``us`` the update directions. Coefficients come in a ``Coefficients`` (see _common for the two
# forms); constants (betas, eps, weight decay) are Python floats.


def _sf_update_single(
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


def _sf_update_multi(
    ys: list[torch.Tensor], zs: list[torch.Tensor], us: list[torch.Tensor], coefs: Coefficients, *, decay: float,
    decay_at_y: bool, owned: bool, fused: bool,
) -> None:
    """:func:`_sf_update_single` over lists; ``fused``: scale with ``_foreach_mul`` (one kernel on accelerators).

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


def _single_tensor_sf_adam(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], vs: list[torch.Tensor],
    coefs: Coefficients, *, beta2: float, eps: float, decay: float, decay_at_y: bool, maximize: bool,
    scratch: Scratch,
) -> None:
    """Schedule-free Adam(W)/RAdam, one tensor at a time (the direction lives in one reused buffer).

    ``v <- keep2*v + (1-beta2)*g^2``; ``u = g / (sqrt(v/bc2) + eps)`` (``g`` itself where ``use_adam``
    is false: RAdam before its variance is tractable), then :func:`_sf_update_single`. A skipped step
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
        _sf_update_single(y, z, u, coefs, decay=decay, decay_at_y=decay_at_y, owned=True, scratch=scratch)


def _multi_tensor_sf_adam(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], vs: list[torch.Tensor],
    coefs: Coefficients, *, beta2: float, eps: float, decay: float, decay_at_y: bool, maximize: bool, fused: bool,
) -> None:
    """:func:`_single_tensor_sf_adam` with ``torch._foreach_*`` ops (the default on accelerators)."""
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
    _sf_update_multi(ys, zs, denom, coefs, decay=decay, decay_at_y=decay_at_y, owned=True, fused=fused)


def _single_tensor_sf_sgd(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], coefs: Coefficients, *,
    decay: float, decay_at_y: bool, maximize: bool, owned: bool, scratch: Scratch,
) -> None:
    """Schedule-free SGD, one tensor at a time: the direction is the gradient (negated to maximize)."""
    for y, g, z in zip(ys, grads, zs):
        u, mine = g, owned
        if maximize:
            u = g.neg_() if owned else torch.neg(g, out=scratch.get(g))
            mine = True
        _sf_update_single(y, z, u, coefs, decay=decay, decay_at_y=decay_at_y, owned=mine, scratch=scratch)


def _multi_tensor_sf_sgd(
    ys: list[torch.Tensor], grads: list[torch.Tensor], zs: list[torch.Tensor], coefs: Coefficients, *,
    decay: float, decay_at_y: bool, maximize: bool, owned: bool, fused: bool,
) -> None:
    """:func:`_single_tensor_sf_sgd` with ``torch._foreach_*`` ops."""
    if maximize:
        if owned:
            torch._foreach_neg_(grads)
        else:
            grads = torch._foreach_neg(grads)
            owned = True
    _sf_update_multi(ys, zs, grads, coefs, decay=decay, decay_at_y=decay_at_y, owned=owned, fused=fused)


def _sf_adam_tensor(
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

    The update of :func:`_single_tensor_sf_adam`: ``v <- keep2*v + c2*g^2``; ``u = g / (sqrt(v/bc2) + eps)``
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


# ---------------------------------------------------------------- optimizers


class ScheduleFreeAdamW(ScheduleFreeOptimizer):
    """Schedule-free AdamW (Defazio et al. 2024): no LR schedule; evaluate in eval mode."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        weight_decay_at_y: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
    ) -> None:
        _check(lr, betas[0], weight_decay, warmup_steps, r, weight_lr_power)
        if not 0.0 <= betas[1] < 1.0 or not eps >= 0:
            raise ValueError(f"Invalid betas[1] or eps: {betas}, {eps}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
            "weight_decay_at_y": weight_decay_at_y,
            "maximize": maximize,
            "foreach": foreach,
            "compile": compile,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("compile", False)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["betas"][0]

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return None, None

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        k = group["k"]
        factor, use_adam = self._lr_factor(group, k)
        sf, lr, ckp1, k = self._weights(group, step_factor, factor)
        if not params:
            return
        self._init_state(params, second_moment=True)
        beta1, beta2 = group["betas"]
        device = k.device
        tensors = {
            "keep2": _select(sf != 0, beta2, 1.0, k),  # a skipped step keeps v (its gradient is gated to 0)
            "bc2": 1 - beta2 ** (k + 1),
            "use_adam": use_adam,
            "c_lerp": ckp1 * sf,
            "c_y": lr * (beta1 * (1 - ckp1) - 1) * sf,
            "c_z": -lr * sf,
        }
        options = {
            "beta2": beta2,
            "eps": group["eps"],
            "decay": group["weight_decay"],
            "decay_at_y": group["weight_decay_at_y"],
            "maximize": group.get("maximize", False),
        }
        if group.get("compile"):
            params = self._step_compiled(params, step_factor, tensors, options)
            if not params:
                return
        coefs = Coefficients(tensors, host=step_factor is None and host_scalars(device))
        ys = [real(p) for p in params]
        grads = [gate_grad(real(p.grad), step_factor) for p in params]
        zs = [real(self.state[p]["z"]) for p in params]
        vs = [real(self.state[p]["exp_avg_sq"]) for p in params]
        if pick_foreach(group["foreach"], params):
            _multi_tensor_sf_adam(ys, grads, zs, vs, coefs, fused=not host_scalars(device), **options)
        else:
            _single_tensor_sf_adam(ys, grads, zs, vs, coefs, scratch=self.scratch, **options)

    def _step_compiled(
        self,
        params: list[torch.Tensor],
        step_factor: torch.Tensor | None,
        tensors: dict[str, torch.Tensor | None],
        options: dict[str, Any],
    ) -> list[torch.Tensor]:
        """Step every param whose tensors are contiguous through the compiled kernel; return the others."""
        rest, calls = [], []
        scalars_on: dict[torch.device, list[torch.Tensor | None]] = {}  # keep, then the kernel's scalars
        constants = (float(options["eps"]), float(options["decay"]), bool(options["decay_at_y"]),
                     bool(options["maximize"]))
        c2 = torch.full((), 1 - options["beta2"], dtype=tensors["bc2"].dtype, device=tensors["bc2"].device)
        for p in params:
            state = self.state[p]
            y, g, z, v = real(p), real(p.grad), real(state["z"]), real(state["exp_avg_sq"])
            if not can_flatten(y, g, z, v):
                rest.append(p)
                continue
            if p.device not in scalars_on:
                # A plain step passes keep = True: it runs the graph of a step_factor = 1 step.
                keep = (torch.ones((), dtype=torch.bool, device=p.device) if step_factor is None
                        else step_factor.to(p.device) != 0)
                on_device = [tensors["keep2"], c2, tensors["bc2"], tensors["use_adam"], tensors["c_lerp"],
                             tensors["c_y"], tensors["c_z"]]
                scalars_on[p.device] = [keep] + [None if t is None else t.to(p.device, non_blocking=True)
                                                 for t in on_device]
            calls.append((flat(y), flat(g), flat(z), flat(v), *scalars_on[p.device], *constants))
        if calls:
            run_compiled(_sf_adam_tensor, calls)
        return rest


class ScheduleFreeRAdam(ScheduleFreeAdamW):
    """Schedule-free RAdam: RAdam's rectification instead of a warmup (no warmup needed).

    Until the variance estimate is tractable (``rho_t <= 4``) it takes no step
    (``silent_sgd_phase``, the default) or plain SGD steps.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        weight_decay_at_y: bool = True,
        silent_sgd_phase: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            weight_decay_at_y=weight_decay_at_y,
            maximize=maximize,
            foreach=foreach,
            compile=compile,
        )
        for group in self.param_groups:
            group.setdefault("silent_sgd_phase", silent_sgd_phase)
        self.defaults["silent_sgd_phase"] = silent_sgd_phase

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """RAdam's rectification of the LR and whether the variance is tractable (Liu et al. 2020)."""
        beta2 = group["betas"][1]
        step = k + 1
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
        tractable = rho_t > 4
        ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        before = 0.0 if group["silent_sgd_phase"] else 1.0
        rect = torch.where(tractable, torch.sqrt(torch.clamp(ratio, min=0)), before)
        return rect, tractable


class ScheduleFreeSGD(ScheduleFreeOptimizer):
    """Schedule-free SGD (Defazio et al. 2024); ``momentum`` is the interpolation coefficient beta."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        weight_decay_at_y: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        _check(lr, momentum, weight_decay, warmup_steps, r, weight_lr_power)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
            "weight_decay_at_y": weight_decay_at_y,
            "maximize": maximize,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["momentum"]

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        sf, lr, ckp1, k = self._weights(group, step_factor)
        if not params:
            return
        self._init_state(params, second_moment=False)
        device = k.device
        coefs = Coefficients(
            {"c_lerp": ckp1 * sf, "c_y": lr * (group["momentum"] * (1 - ckp1) - 1) * sf, "c_z": -lr * sf},
            host=step_factor is None and host_scalars(device),
        )
        ys = [real(p) for p in params]
        grads = [gate_grad(real(p.grad), step_factor) for p in params]
        zs = [real(self.state[p]["z"]) for p in params]
        options = {
            "decay": group["weight_decay"],
            "decay_at_y": group["weight_decay_at_y"],
            "maximize": group.get("maximize", False),
            "owned": step_factor is not None,  # gate_grad() made copies; plain gradients are the user's
        }
        if pick_foreach(group["foreach"], params):
            _multi_tensor_sf_sgd(ys, grads, zs, coefs, fused=not host_scalars(device), **options)
        else:
            _single_tensor_sf_sgd(ys, grads, zs, coefs, scratch=self.scratch, **options)
