"""Spec classes: what a ``[optimizer]`` or ``[scheduler]`` table may say, validated when the spec loads.

No torch import at module load: the registry imports this module for every ``optreg`` command.
An optimizer spec imports its optimizer class inside ``create()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

import optreg

if TYPE_CHECKING:
    import torch

    from optreg.memory import ParamShape, StateTensor

__all__ = ["ALL_SPECS", "MyfamilyLinearSpec", "MyfamilySGDWSpec"]


@attrs.frozen(kw_only=True)
class MyfamilySGDWSpec(optreg.OptimizerSpec):
    """SGD with momentum and decoupled weight decay.

    Each step shrinks the parameters by ``lr * weight_decay`` before the
    momentum update, instead of adding ``weight_decay * p`` to the gradient
    (which momentum would then scale). With ``weight_decay = 0`` this is
    ``torch.optim.SGD`` with the same momentum.
    """

    TYPE: ClassVar[str] = "myfamily_sgdw"
    PAPER: ClassVar[str] = "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization, arXiv:1711.05101"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})

    lr: float = optreg.field(1e-3, ge=0, doc="Learning rate.")
    momentum: float = optreg.field(0.9, ge=0, lt=1, doc="Momentum factor (0 disables the buffer).")
    weight_decay: float = optreg.field(0.0, ge=0, doc="Decoupled weight decay: each step p -= lr * weight_decay * p.")
    nesterov: bool = optreg.field(False, doc="Nesterov momentum (needs momentum > 0).")
    maximize: bool = optreg.field(False, doc="Maximize the objective instead of minimizing.")
    foreach: bool | None = optreg.field(
        None, per_group=False, doc="Use the multi-tensor path (None: only when every parameter is on an accelerator)."
    )

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise optreg.FieldValueError("nesterov", "Nesterov momentum needs momentum > 0")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The state the optimizer allocates per parameter, declared once (what `optreg validate` reports and
        `optreg train` checks against the memory): a momentum buffer when momentum is on."""
        return [param.like("momentum_buffer")] if options["momentum"] != 0 else []

    def create(self, param_groups: list[dict[str, Any]], context: optreg.BuildContext) -> torch.optim.Optimizer:
        from optreg_myfamily.optim import MyfamilySGDW

        return MyfamilySGDW(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class MyfamilyLinearSpec(optreg.SchedulerSpec):
    """Linear warmup from 0 to the initial LR, then linear decay to ``final_ratio`` of it at ``t_max``.

    After ``t_max`` the LR stays at ``final_ratio * initial_lr``. ``warmup`` and
    ``t_max`` count steps or tokens, as ``units`` says.
    """

    TYPE: ClassVar[str] = "myfamily_linear"
    PAPER: ClassVar[str] = "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour (warmup)"

    warmup: int = optreg.field(
        0, ge=0, le=optreg.specs.MAX_STEPS,
        doc="Length of the linear warmup (in `units`; bounded so no count sizes a runaway loop).",
    )
    final_ratio: float = optreg.field(0.0, ge=0, le=1, doc="LR at t_max, as a fraction of the initial LR.")

    def __attrs_post_init__(self) -> None:
        if self.t_max is not None and self.warmup > self.t_max:
            raise optreg.FieldValueError("warmup", f"must be <= t_max ({self.t_max}), got {self.warmup}")

    def needs_t_max(self) -> bool:
        return True

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_max = self.t_max if self.t_max is not None else t_max  # the spec's own t_max wins, as in its scheduler
        if t_max is None:
            raise ValueError(f"{self.TYPE} needs t_max")
        current = max(current, 0)  # before the start: the LR at 0, never a negative one
        if current < self.warmup:
            return initial_lr * current / self.warmup
        if current >= t_max:
            return initial_lr * self.final_ratio
        remaining = (t_max - current) / (t_max - self.warmup)
        return initial_lr * (self.final_ratio + (1.0 - self.final_ratio) * remaining)


#: Every spec class of this family; plugin.py registers each with the hook of its kind.
ALL_SPECS: tuple[type, ...] = (MyfamilySGDWSpec, MyfamilyLinearSpec)
