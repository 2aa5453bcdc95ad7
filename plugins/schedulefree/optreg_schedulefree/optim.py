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
= false`` computes the decay at ``z`` (the reference's ``decay_at_z``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optreg.compiling import can_flatten, ema_, flat, run_compiled
from optreg.optim import OptregOptimizer, as_scalar, gate_grad, params_with_grads
from optreg_schedulefree._common import Scratch, coef, group_device, host_scalars, pick_foreach

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeRAdam", "ScheduleFreeSGD", "ScheduleFreeOptimizer"]

_SCALARS = ("k", "lr_max", "weight_sum", "scheduled_lr")


def eval_mode_error(name: str) -> RuntimeError:
    return RuntimeError(
        f"{name}.step() was called in eval mode: the parameters hold the averaged point x, not the training "
        "point y. Call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
        "the model for inference."
    )


class ScheduleFreeOptimizer(OptregOptimizer):
    """Base of the schedule-free optimizers: modes, averaging weights, checkpoint handling.

    :meth:`train` puts ``y`` in the parameters, :meth:`eval` puts ``x``; both are
    no-ops when already in that mode. The mode is saved in the state dict (each
    param group's ``train_mode``): a checkpoint loads into the mode it was saved
    in, so call ``train()`` (or ``eval()``) after loading, as before saving.
    """

    def _beta(self, group: dict[str, Any]) -> float:
        """The interpolation coefficient beta of ``group`` (``betas[0]`` or ``momentum``)."""
        raise NotImplementedError

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.scratch = Scratch()
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        return super().__getstate__()  # every option lives in the param groups; the work buffer is not state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.scratch = Scratch()

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
                    p.lerp_(z.to(p.device), weight)
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
        """Advance the group's scalars; return ``(sf, lr_t, ckp1, k)`` (``k`` before the step)."""
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


# ---------------------------------------------------------------- functional layer
#
# Coefficients arrive as 0-dim tensors (so a step_factor of 0 gates everything without a host sync);
# on CPU they become Python floats (see ``coef``) and every op runs in place or in a reused buffer.


def _adam_direction_single(
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    *,
    keep2: torch.Tensor,
    c2: torch.Tensor,
    bc2: torch.Tensor,
    eps: float,
    use_adam: torch.Tensor | None = None,
    scratch: Scratch,
) -> list[torch.Tensor]:
    """Adam's normalised gradient ``g / (sqrt(v / bc2) + eps)`` after updating ``v`` (one buffer per tensor)."""
    out = []
    for grad, exp_avg_sq in zip(grads, exp_avg_sqs):
        device = grad.device
        keep2_, c2_, bc2_ = coef(keep2, device), coef(c2, device), coef(bc2, device)
        if isinstance(c2_, float):
            exp_avg_sq.mul_(keep2_).addcmul_(grad, grad, value=c2_)
        else:
            exp_avg_sq.mul_(keep2_).addcmul_(grad, grad * c2_)
        cpu = host_scalars(device)
        denom = torch.div(exp_avg_sq, bc2_, out=scratch.get(grad) if cpu and len(grads) == 1 else None)
        denom.sqrt_().add_(eps)
        if use_adam is not None:  # RAdam before the variance is tractable: the plain gradient
            if cpu:
                if not bool(use_adam):
                    denom.fill_(1.0)
            else:
                denom = torch.where(use_adam, denom, torch.ones((), dtype=denom.dtype, device=denom.device))
        out.append(torch.div(grad, denom, out=denom))
    return out


def _adam_direction_multi(
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    *,
    keep2: torch.Tensor,
    c2: torch.Tensor,
    bc2: torch.Tensor,
    eps: float,
    use_adam: torch.Tensor | None = None,
    scratch: Scratch,
) -> list[torch.Tensor]:
    device = grads[0].device
    keep2_, c2_, bc2_ = coef(keep2, device), coef(c2, device), coef(bc2, device)
    torch._foreach_mul_(exp_avg_sqs, keep2_)
    if isinstance(c2_, float):
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=c2_)
    else:
        squares = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(squares, c2_)
        torch._foreach_add_(exp_avg_sqs, squares)
    denom = torch._foreach_div(exp_avg_sqs, bc2_)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    if use_adam is not None:
        if isinstance(c2_, float):
            if not bool(use_adam):
                torch._foreach_mul_(denom, 0.0)
                torch._foreach_add_(denom, 1.0)
        else:
            one = torch.ones((), dtype=bc2.dtype, device=bc2.device)
            denom = [torch.where(use_adam, d, one.to(d.dtype)) for d in denom]
    torch._foreach_reciprocal_(denom)
    torch._foreach_mul_(denom, grads)
    return denom


def _sf_update_single(
    ys: list[torch.Tensor],
    zs: list[torch.Tensor],
    directions: list[torch.Tensor],
    *,
    decay: float,
    decay_at_y: bool,
    c_lerp: torch.Tensor,
    c_y: torch.Tensor,
    c_z: torch.Tensor,
    owned: bool,
) -> None:
    """``y <- lerp(y, z, c_lerp) + c_y * u``, ``z <- z + c_z * u`` (``u`` = direction + decay * (y or z)).

    ``owned``: the directions are work buffers that may be overwritten (not the gradients).
    """
    for y, z, u in zip(ys, zs, directions):
        device = y.device
        if decay != 0:
            u = u.add_(y if decay_at_y else z, alpha=decay) if owned else u.add(y if decay_at_y else z, alpha=decay)
        lerp, cy, cz = coef(c_lerp, device), coef(c_y, device), coef(c_z, device)
        if isinstance(cy, float):
            y.lerp_(z, lerp)
            y.add_(u, alpha=cy)
            z.add_(u, alpha=cz)
        else:
            y.lerp_(z, lerp.to(y.dtype))
            y.addcmul_(u, cy)
            z.addcmul_(u, cz)


def _sf_update_multi(
    ys: list[torch.Tensor],
    zs: list[torch.Tensor],
    directions: list[torch.Tensor],
    *,
    decay: float,
    decay_at_y: bool,
    c_lerp: torch.Tensor,
    c_y: torch.Tensor,
    c_z: torch.Tensor,
    owned: bool,
) -> None:
    device = ys[0].device
    if decay != 0:
        if owned:
            torch._foreach_add_(directions, ys if decay_at_y else zs, alpha=decay)
        else:
            directions = torch._foreach_add(directions, ys if decay_at_y else zs, alpha=decay)
    lerp, cy, cz = coef(c_lerp, device), coef(c_y, device), coef(c_z, device)
    if isinstance(cy, float):
        torch._foreach_lerp_(ys, zs, lerp)
        torch._foreach_add_(ys, directions, alpha=cy)
        torch._foreach_add_(zs, directions, alpha=cz)
    else:
        torch._foreach_lerp_(ys, zs, [lerp.to(y.dtype) for y in ys])
        torch._foreach_add_(ys, torch._foreach_mul(directions, cy))
        torch._foreach_add_(zs, torch._foreach_mul(directions, cz))


def _sf_adam_tensor(
    y: torch.Tensor,
    grad: torch.Tensor,
    z: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    keep: torch.Tensor | None,
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
) -> None:
    """One schedule-free Adam(W)/RAdam step on one tensor, as one pass (the ``compile = true`` kernel).

    The same update as :func:`_adam_direction_single` then :func:`_sf_update_single`:
    ``v <- keep2*v + c2*g^2``; ``u = g / (sqrt(v/bc2) + eps)`` (``g`` itself where
    ``use_adam`` is false: RAdam's untractable phase) ``+ decay * (y or z)``;
    ``y <- lerp(y, z, c_lerp) + c_y*u``; ``z <- z + c_z*u``. ``keep`` gates the gradient.
    """
    g = grad if keep is None else torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
    exp_avg_sq.mul_(keep2).addcmul_(g, g * c2)
    denom = (exp_avg_sq / bc2).sqrt() + eps
    if use_adam is not None:
        denom = torch.where(use_adam, denom, torch.ones((), dtype=denom.dtype, device=denom.device))
    u = g / denom
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

    def _direction_scalars(self, group: dict[str, Any], k: torch.Tensor, sf: torch.Tensor) -> dict[str, Any]:
        beta2 = group["betas"][1]
        return {
            "keep2": torch.where(sf != 0, beta2, 1.0).to(k.dtype),
            "c2": (1 - beta2) * sf,
            "bc2": 1 - beta2 ** (k + 1),
            "eps": group["eps"],
        }

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
        beta1 = group["betas"][0]
        scalars = self._direction_scalars(group, k, sf)
        coefficients = {
            "decay": group["weight_decay"],
            "decay_at_y": group["weight_decay_at_y"],
            "c_lerp": ckp1 * sf,
            "c_y": lr * (beta1 * (1 - ckp1) - 1) * sf,
            "c_z": -lr * sf,
            "owned": True,
        }
        if group.get("compile"):
            params = self._step_compiled(params, step_factor, use_adam, scalars, coefficients)
            if not params:
                return
        grads = [gate_grad(p.grad, step_factor) for p in params]
        if pick_foreach(group["foreach"], params):
            directions = _adam_direction_multi(
                grads, [self.state[p]["exp_avg_sq"] for p in params], use_adam=use_adam, scratch=self.scratch, **scalars
            )
            _sf_update_multi(params, [self.state[p]["z"] for p in params], directions, **coefficients)
            return
        for p, grad in zip(params, grads):  # one tensor at a time: the work buffer is reused
            state = self.state[p]
            (direction,) = _adam_direction_single(
                [grad], [state["exp_avg_sq"]], use_adam=use_adam, scratch=self.scratch, **scalars
            )
            _sf_update_single([p], [state["z"]], [direction], **coefficients)

    def _step_compiled(
        self,
        params: list[torch.Tensor],
        step_factor: torch.Tensor | None,
        use_adam: torch.Tensor | None,
        scalars: dict[str, Any],
        coefficients: dict[str, Any],
    ) -> list[torch.Tensor]:
        """Step every param whose tensors are contiguous through the compiled kernel; return the others."""
        rest, calls = [], []
        scalars_on: dict[torch.device, list[torch.Tensor | None]] = {}  # keep, then the kernel's scalars
        constants = (float(scalars["eps"]), float(coefficients["decay"]), bool(coefficients["decay_at_y"]))
        for p in params:
            state = self.state[p]
            if not can_flatten(p, p.grad, state["z"], state["exp_avg_sq"]):
                rest.append(p)
                continue
            if p.device not in scalars_on:
                keep = None if step_factor is None else step_factor.to(p.device) != 0
                on_device = [scalars["keep2"], scalars["c2"], scalars["bc2"], use_adam,
                             coefficients["c_lerp"], coefficients["c_y"], coefficients["c_z"]]
                scalars_on[p.device] = [keep] + [None if t is None else t.to(p.device, non_blocking=True)
                                                 for t in on_device]
            calls.append((flat(p), flat(p.grad), flat(state["z"]), flat(state["exp_avg_sq"]),
                          *scalars_on[p.device], *constants))
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
            foreach=foreach,
            compile=compile,
        )
        for group in self.param_groups:
            group.setdefault("silent_sgd_phase", silent_sgd_phase)
        self.defaults["silent_sgd_phase"] = silent_sgd_phase

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
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
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return group["momentum"]

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        sf, lr, ckp1, _ = self._weights(group, step_factor)
        if not params:
            return
        self._init_state(params, second_moment=False)
        update = _sf_update_multi if pick_foreach(group["foreach"], params) else _sf_update_single
        update(
            params,
            [self.state[p]["z"] for p in params],
            [gate_grad(p.grad, step_factor) for p in params],
            decay=group["weight_decay"],
            decay_at_y=group["weight_decay_at_y"],
            c_lerp=ckp1 * sf,
            c_y=lr * (group["momentum"] * (1 - ckp1) - 1) * sf,
            c_z=-lr * sf,
            owned=step_factor is not None,  # gate_grad() made copies; plain gradients are the user's
        )
