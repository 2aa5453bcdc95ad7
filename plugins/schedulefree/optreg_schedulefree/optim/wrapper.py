"""``schedule_free``: make any optimizer schedule-free (Defazio et al. 2024; optax's ``schedule_free`` idea).

The inner optimizer takes its steps on ``z`` (its state, its LR, its own weight
decay computed at ``z``); the wrapper keeps ``z`` and turns the parameters into
``y = beta*x + (1-beta)*z`` with ``x`` the weighted average of the ``z`` iterates.
The inner optimizer's momentum must be off: the wrapper's interpolation replaces it.

A d-adaptive inner optimizer (prodigy, dadapt_*) exposes ``param_groups[i]["d"]``;
the averaging weights then use ``lr * d`` as the step size, as the reference wrapper does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optreg.optim import (
    Scratch,
    WrappedOptimizer,
    as_scalar,
    check_number,
    give_loss,
    group_device,
    host_scalars,
    params_with_grads,
    real_view,
    run_closure,
)
from optreg_schedulefree._coefficients import Coefficients
from optreg_schedulefree._momentum import inner_momentum
from optreg_schedulefree.optim.base import eval_mode_error

__all__ = ["ScheduleFree"]

_SCALARS = ("sf_k", "sf_lr_max", "sf_weight_sum")


class ScheduleFree(WrappedOptimizer):
    """Schedule-free wrapper around ``inner`` (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024,
    "The Road Less Scheduled", arXiv:2405.15682; the authors' ``schedulefree.ScheduleFreeWrapper``).

    The parameters hold ``y``; the wrapper keeps ``z`` (``sf_z`` in the state dict). Per step, with
    ``beta = momentum``, ``k`` steps taken before it, ``wd = weight_decay_at_y`` and ``g`` the gradient
    taken at ``y``::

        x      =  (y - (1 - beta) * z) / beta
        z      <- z - lr * wd * y                    (the decay at y moves z, not x)
        z      <- inner_step(z, g)                   (the inner optimizer steps on z)
        lr_t   = lr * d                              (lr when the inner optimizer has no d)
        lr_max <- max(lr_max, lr_t)
        w      =  (k + 1)^r * lr_max^weight_lr_power
        W      <- W + w
        c      =  w / W                              (0 while W = 0)
        x      <- (1 - c) * x + c * z
        y      <- (1 - beta) * z + beta * x

    ``lr`` is the group's (inner) LR, so a warmup schedule on the wrapper reaches both the inner step
    and the weights. ``eval()`` puts ``x`` in the parameters, ``train()`` puts ``y`` back. Differences
    from the reference wrapper: a fresh wrapper starts in train mode; ``x`` and ``z`` are swapped
    through a reused work buffer (not an XOR of the bytes); the counters and weights are 0-dim tensors,
    so ``step(step_factor=t)`` (when the inner optimizer takes it) gates the step with no host sync; the
    loss of ``step(closure)`` is handed to an inner optimizer that takes it (``optreg.optim.give_loss``);
    complex params are averaged as their ``view_as_real``.
    """

    PREFIX = "sf_"
    #: The swap buffer is rebuilt after a copy, not pickled.
    TRANSIENT = ("scratch",)

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        *,
        momentum: float = 0.9,
        weight_decay_at_y: float = 0.0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        check_number("momentum", momentum, gt=0, lt=1)  # the interpolation: eval() divides by it
        check_number("weight_decay_at_y", weight_decay_at_y, ge=0)
        check_number("r", r, ge=0)
        check_number("weight_lr_power", weight_lr_power, ge=0)
        for i, group in enumerate(inner.param_groups):
            found = inner_momentum(group)
            if found:
                raise ValueError(
                    f"schedule_free replaces the base optimizer's momentum, but param group {i} of "
                    f"{type(inner).__name__} has {found[0]} = {found[1]}; set it to 0"
                )
        self._init_transient()
        self.momentum = float(momentum)
        self.weight_decay_at_y = float(weight_decay_at_y)
        self.r = float(r)
        self.weight_lr_power = float(weight_lr_power)
        super().__init__(inner)

    def _init_group(self, group: dict[str, Any]) -> None:
        leader = self.param_groups[0]
        group.setdefault("sf_train_mode", leader.get("sf_train_mode", True))
        device = group_device(group)
        for key in _SCALARS:
            if key not in group:
                group[key] = as_scalar(0.0, device)

    def _init_transient(self) -> None:
        self.scratch = Scratch()

    def _swap(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Exchange the contents of ``a`` and ``b`` through a reused work buffer."""
        tmp = self.scratch.get(a)
        tmp.copy_(a)
        a.copy_(b)
        b.copy_(tmp)

    # -- modes

    @property
    def training(self) -> bool:
        """True when the parameters hold the training point y."""
        return all(group["sf_train_mode"] for group in self.param_groups)

    def _switch(self, to_train: bool) -> None:
        beta = self.momentum
        weight = 1 - beta if to_train else 1 - 1 / beta
        for group in self.param_groups:
            if group["sf_train_mode"] == to_train:
                continue
            for p in group["params"]:
                z = self.wrapper_state.get(p, {}).get("sf_z")
                if z is not None:
                    real_view(p).lerp_(real_view(z), weight)
            group["sf_train_mode"] = to_train

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to the training point ``y`` (harmless if already there)."""
        self._switch(True)

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to the averaged point ``x`` (harmless if already there)."""
        self._switch(False)

    # -- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """One schedule-free step around the inner step (train mode only)."""
        if not self.training:
            raise eval_mode_error(type(self).__name__)
        if step_factor is not None and not self.supports_step_factor:
            raise TypeError(
                f"step_factor needs an inner optimizer that supports it; {type(self.inner).__name__} does not"
            )
        loss = run_closure(closure)
        beta = self.momentum
        work = []
        for group in self.param_groups:
            params = params_with_grads(group)
            device = group["sf_k"].device
            sf = torch.ones((), dtype=group["sf_k"].dtype, device=device)
            if step_factor is not None:
                sf = as_scalar(step_factor, device)
            decay = as_scalar(group["lr"], device) * self.weight_decay_at_y * sf
            decays = Coefficients({"z": -decay, "y": -decay * (1 - beta)}, host=False)
            entries = []
            for p in params:
                z = self.wrapper_state.get(p, {}).get("sf_z")
                if z is None:
                    z = p.detach().clone(memory_format=torch.preserve_format)
                y, zr = real_view(p), real_view(z)
                y_before = y.clone() if step_factor is not None else None
                if self.weight_decay_at_y != 0:
                    zr.addcmul_(y, decays.tensor("z", y.dtype))
                    y.addcmul_(y, decays.tensor("y", y.dtype))
                y.lerp_(zr, 1 - 1 / beta)  # p: y -> x
                self._swap(p, z)  # the inner optimizer steps from z (gradient taken at y); z's buffer holds x
                entries.append((p, z, y_before))
            work.append((group, sf, entries))

        if loss is not None:
            give_loss(self.inner, loss)
        if step_factor is None:
            self.inner.step()
        else:
            self.inner.step(step_factor=step_factor)

        for group, sf, entries in work:
            k, lr_max, weight_sum = (group[key] for key in _SCALARS)
            lr = as_scalar(group["lr"], k.device)
            if "d" in group:  # d-adaptive inner optimizers: the effective step size is lr * d
                lr = lr * as_scalar(group["d"], k.device)
            new_lr_max = torch.maximum(lr_max, lr)
            weight = (k + 1) ** self.r * new_lr_max**self.weight_lr_power
            new_sum = weight_sum + weight
            positive = new_sum > 0
            ckp1 = torch.where(positive, weight / torch.where(positive, new_sum, torch.ones_like(new_sum)), 0.0)
            take = sf != 0
            group["sf_k"] = k + sf
            group["sf_lr_max"] = torch.where(take, new_lr_max, lr_max)
            group["sf_weight_sum"] = torch.where(take, new_sum, weight_sum)
            coefs = Coefficients({"c_lerp": ckp1 * sf}, host=step_factor is None and host_scalars(k.device))
            for p, z, y_before in entries:
                self._swap(p, z)  # z: the new z, p: x
                x, zr = real_view(p), real_view(z)
                x.lerp_(zr, coefs.lerp("c_lerp", (x.dtype,)))
                x.lerp_(zr, 1 - beta)  # p: x -> y
                if y_before is not None:  # a skipped step: y -> x -> y does not round-trip exactly
                    x.copy_(torch.where(take.to(p.device), x, y_before))
                self.wrapper_state.setdefault(p, {})["sf_z"] = z
        return loss
