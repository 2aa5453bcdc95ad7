"""Shared machinery of the learning-rate-free optimizers.

Everything an estimator keeps between steps (``d``, its numerator, step
counters) is a 0-dim tensor on the parameters' device, so a step never waits on
the device (no ``.item()``) and a ``step_factor`` of 0 can leave it untouched
with ``torch.where``. The scalars live in the param groups, where users can log
them and where torch's ``state_dict`` already saves them.

A *scope* is the set of param groups that share one estimate: all groups (the
default, as in the reference implementations) or each group on its own
(``per_group_d = True``). A group's ``lr`` multiplies the estimated step size of
that group; a group whose ``lr`` is 0 is inactive (it neither moves nor feeds
the estimate), which is what a frozen group or a schedule at 0 should mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch

from optreg.optim import OptregOptimizer, as_scalar, prepare_step_factor

__all__ = [
    "AdamCoefficients",
    "Scratch",
    "pickled_state",
    "ScopedScalarOptimizer",
    "adam_coefficients",
    "add_scaled_",
    "axpby_",
    "axpby_square_",
    "dot",
]


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b>`` over all elements, accumulated in at least float32."""
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    return torch.dot(a.reshape(-1), b.reshape(-1))


#: Read step coefficients to Python floats on CPU (see ``_coef``). Tests turn it off to run the
#: accelerator code path (0-dim tensor coefficients) on CPU.
HOST_SCALARS_ON_CPU = True


def host_scalars(device: torch.device) -> bool:
    """Whether coefficients for tensors on ``device`` are Python floats (CPU) or 0-dim tensors."""
    return HOST_SCALARS_ON_CPU and device.type == "cpu"


def _coef(value: torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A coefficient for an elementwise op on ``like``: a Python float on CPU, the 0-dim tensor elsewhere.

    On CPU reading a scalar waits for nothing, and the scalar overloads (``add_(x, alpha=)``,
    ``addcmul_(x, y, value=)``) run in one pass without a temporary, where a tensor operand costs a
    temporary the size of the parameter. On accelerators the tensor keeps the step free of host syncs.
    Both a plain step and one with ``step_factor = 1`` take the same path, so they agree bit for bit.
    """
    return float(value) if host_scalars(like.device) else value


def axpby_(y: torch.Tensor, a: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y <- a * y + b * x`` in place (``a``, ``b`` 0-dim tensors)."""
    a_, b_ = _coef(a, y), _coef(b, y)
    if isinstance(b_, float):
        return y.mul_(a_).add_(x, alpha=b_)
    return y.mul_(a_).addcmul_(x, b_)


def axpby_square_(y: torch.Tensor, a: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y <- a * y + b * x * x`` in place."""
    a_, b_ = _coef(a, y), _coef(b, y)
    if isinstance(b_, float):
        return y.mul_(a_).addcmul_(x, x, value=b_)
    return y.mul_(a_).addcmul_(x, x * b_)


def add_scaled_(y: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y <- y + b * x`` in place."""
    b_ = _coef(b, y)
    if isinstance(b_, float):
        return y.add_(x, alpha=b_)
    return y.addcmul_(x, b_)


class Scratch:
    """Reusable work buffers for CPU steps (a fresh large CPU tensor per op costs page faults).

    ``get(like)`` returns a tensor shaped like ``like`` whose contents are garbage. On
    accelerators (whose caching allocators make temporaries cheap) it allocates a new tensor.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    def get(self, like: torch.Tensor, slot: int = 0) -> torch.Tensor:
        if like.device.type != "cpu":
            return torch.empty_like(like, memory_format=torch.contiguous_format)
        key = (like.device, like.dtype, slot)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < like.numel():
            buffer = self._buffers[key] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return buffer[: like.numel()].view(like.shape)

    def clear(self) -> None:
        self._buffers.clear()


def pickled_state(optimizer: Any, torch_state: dict[str, Any]) -> dict[str, Any]:
    """torch's ``__getstate__`` plus the optimizer's own attributes (not hooks, not work buffers).

    torch keeps only defaults, state and param_groups, which would lose constructor-level options
    (``per_group_d``, MoMo's ``beta``) in ``copy.deepcopy`` and pickling.
    """
    extra = {
        key: value
        for key, value in optimizer.__dict__.items()
        if key not in torch_state and not key.startswith("_optimizer_") and key != "scratch"
    }
    return {**torch_state, **extra}


def _group_device(group: Mapping[str, Any]) -> torch.device:
    return next((p.device for p in group["params"]), torch.device("cpu"))


class ScopedScalarOptimizer(OptregOptimizer):
    """Base of optimizers whose step size comes from estimates shared by a scope of param groups.

    Subclasses set ``SCALARS`` (the estimator's scalar names) and implement
    :meth:`_initial_scalars` (their starting values for a group) and
    :meth:`_step_scope`. The scalars are stored in every group of the scope
    (the same values), so ``param_groups[i]["d"]`` always shows the estimate that
    group steps with.
    """

    SCALARS: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, per_group_d: bool = False) -> None:
        self.per_group_d = bool(per_group_d)
        self.scratch = Scratch()
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        return pickled_state(self, super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.scratch = Scratch()

    # -- scalars

    def _initial_scalars(self, group: Mapping[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        device = _group_device(group)
        for key, value in self._initial_scalars(group).items():
            if key not in group:
                group[key] = as_scalar(value, device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a checkpoint may have been mapped to another device
            device = _group_device(group)
            for key in self.SCALARS:
                if key in group:
                    group[key] = as_scalar(group[key], device)

    def scopes(self) -> list[list[dict[str, Any]]]:
        """Groups that share one estimate: all of them, or each alone with ``per_group_d``."""
        if self.per_group_d:
            return [[g] for g in self.param_groups]
        return [list(self.param_groups)]

    @staticmethod
    def _write(scope: list[dict[str, Any]], values: Mapping[str, torch.Tensor]) -> None:
        for group in scope:
            group.update(values)

    def _scalar_values(self, key: str) -> list[float]:
        return [float(group[key]) for group in self.param_groups]

    # -- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Take one step; ``closure`` re-evaluates the loss, ``step_factor`` (0/1 tensor) gates the step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for scope in self.scopes():
            device = scope[0][self.SCALARS[0]].device
            factor = prepare_step_factor(step_factor, device)
            self._step_scope(scope, factor, loss)
        return loss

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _gate(step_factor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The step factor as a scalar like ``like`` (ones when no factor was given)."""
        if step_factor is None:
            return torch.ones_like(like)
        return step_factor.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _lr_of(group: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
        return as_scalar(group["lr"], like.device)


class AdamCoefficients(NamedTuple):
    """Per-group scalars shared by the Adam-style estimators (D-Adapt AdamW and Prodigy)."""

    beta1: float
    beta2: float
    active: torch.Tensor  # 1 where the group's lr is not 0 (a group at lr 0 neither moves nor feeds d)
    gate: torch.Tensor  # step_factor x active
    dlr: torch.Tensor  # d x lr x bias correction
    keep1: torch.Tensor  # beta1 where the step is taken, 1 where it is skipped
    keep2: torch.Tensor  # the same for beta2


def adam_coefficients(
    group: Mapping[str, Any], d: torch.Tensor, k: torch.Tensor, step_factor: torch.Tensor, lr: torch.Tensor
) -> AdamCoefficients:
    """The gated EMA factors and the step size ``d * lr * bias_correction`` of one param group."""
    beta1, beta2 = group["betas"]
    active = (lr != 0).to(d.dtype)
    gate = step_factor * active
    if group["use_bias_correction"]:
        bias_correction = torch.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1))
    else:
        bias_correction = torch.ones_like(d)
    keep1 = torch.where(gate != 0, beta1, 1.0).to(d.dtype)
    keep2 = torch.where(gate != 0, beta2, 1.0).to(d.dtype)
    return AdamCoefficients(beta1, beta2, active, gate, d * lr * bias_correction, keep1, keep2)
