"""What the schedule-free optimizers share: train/eval modes, the averaging weights, checkpoints.

Three sequences: ``z`` takes the base optimizer's steps, ``x`` is a weighted average of the ``z``
iterates (where to evaluate), ``y = beta*x + (1-beta)*z`` is where gradients are taken (the parameters
while training). Only ``z`` is stored; the parameters hold ``y`` in train mode and ``x`` in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from optreg.optim import OptregOptimizer, Scratch, as_scalar, check_number, group_device, real_view
from optreg.specs import MAX_STEPS

__all__ = ["SCHEDULE_WARNING", "ScheduleFreeOptimizer", "check_schedule_free_options", "eval_mode_error"]

#: The group's 0-dim step scalars: steps taken, the largest LR so far, the sum of the averaging weights,
#: and the LR of the last step (after warmup and RAdam's rectification).
_SCALARS = ("k", "lr_max", "weight_sum", "scheduled_lr")

SCHEDULE_WARNING = (
    "a schedule-free optimizer replaces the LR schedule with iterate averaging; give it a constant LR "
    "(its warmup_steps option warms up) and evaluate in eval mode"
)


def eval_mode_error(name: str) -> RuntimeError:
    """The error of a ``step()`` in eval mode (the optimizers and the wrapper raise it)."""
    return RuntimeError(
        f"{name}.step() was called in eval mode: the parameters hold the averaged point x, not the training "
        "point y. Call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
        "the model for inference."
    )


def check_schedule_free_options(lr: Any, weight_decay: float, warmup_steps: int, r: float,
                                weight_lr_power: float) -> None:
    """The constructor checks every schedule-free optimizer shares, worded as the spec's bounds."""
    check_number("lr", lr, ge=0)
    check_number("weight_decay", weight_decay, ge=0)
    check_number("warmup_steps", warmup_steps, ge=0, le=MAX_STEPS)
    check_number("r", r, ge=0)
    check_number("weight_lr_power", weight_lr_power, ge=0)


class ScheduleFreeOptimizer(OptregOptimizer):
    """Base of the schedule-free optimizers: modes, averaging weights, checkpoint handling.

    :meth:`train` puts ``y`` in the parameters, :meth:`eval` puts ``x``; both are
    no-ops when already in that mode. The mode is saved in the state dict (each
    param group's ``train_mode``): a checkpoint loads into the mode it was saved
    in, so call ``train()`` (or ``eval()``) after loading, as before saving.

    The averaging weights of a step (``k`` steps taken before it, ``lr_t`` its LR)::

        lr_max <- max(lr_max, lr_t)
        w      =  (k + 1)^r * lr_max^weight_lr_power
        W      <- W + w
        c      =  w / W                        (0 while W = 0)

    and the modes: ``eval()`` sets ``p <- lerp(y, z, 1 - 1/beta) = (y - (1 - beta) * z) / beta = x``,
    ``train()`` sets ``p <- lerp(x, z, 1 - beta) = y``.
    """

    #: ``ScheduledLR`` warns when a varying schedule drives these optimizers.
    schedule_warning = SCHEDULE_WARNING
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

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """The group scalars back to 0-dim :func:`~optreg.optim.scalar_dtype` tensors on the params' device."""
        for group in self.param_groups:
            device = group_device(group)
            group.setdefault("train_mode", True)
            group.setdefault("maximize", False)
            for key in _SCALARS:
                group[key] = as_scalar(group.get(key, 0.0), device)

    # -- the effective LR (what optreg train and optreg lr show)

    def effective_lrs(self) -> list[float]:
        """Each group's LR at its last step after the warmup (and RAdam's rectification); 0 before the first."""
        return [float(g["scheduled_lr"]) for g in self.param_groups]

    def lr_factors_at(self, step: int) -> list[float]:
        """Each group's factor on its scheduled LR at its ``step``-th step (0-based): the warmup times any
        rectification; it depends only on the step, so it is known before training."""
        factors = []
        for group in self.param_groups:
            k = torch.tensor(float(step), dtype=torch.float64)
            warmup = min(1.0, (step + 1) / group["warmup_steps"]) if group["warmup_steps"] > 0 else 1.0
            rect, _ = self._lr_factor(group, k)
            factors.append(warmup * (1.0 if rect is None else float(rect)))
        return factors

    def _lr_factor(self, group: dict[str, Any], k: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A factor on the LR at step ``k`` and where Adam's denominator applies (RAdam's rectification); none here."""
        return None, None

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
                    real_view(p).lerp_(real_view(z).to(p.device), weight)
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
