"""The core's built-ins, registered through the very same hooks as any plugin.

``sgd`` (``torch.optim.SGD``), the ``constant`` schedule and the ``single``
parallelism strategy: enough for the core to work, and be tested, alone.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from optreg.hookspecs import hookimpl
from optreg.parallel import ParallelismStrategy
from optreg.specs import OptimizerSpec, ParallelismSpec, SchedulerSpec, field

__all__ = ["ConstantSchedule", "SGDSpec", "SingleProcess"]


def _torch_sgd():
    import torch

    return torch.optim.SGD


@attrs.frozen(kw_only=True)
class SGDSpec(OptimizerSpec):
    """Stochastic gradient descent with optional (Nesterov) momentum: ``torch.optim.SGD``.

    Weight decay is L2 (added to the gradient), as in torch.
    """

    TYPE: ClassVar[str] = "sgd"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach"})
    PAPER: ClassVar[str] = "Sutskever et al. 2013, On the importance of initialization and momentum in deep learning"

    lr: float = field(1e-3, ge=0, doc="Learning rate.")
    momentum: float = field(0.0, ge=0, lt=1, doc="Momentum factor.")
    dampening: float = field(0.0, ge=0, le=1, doc="Dampening for momentum.")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    nesterov: bool = field(False, doc="Nesterov momentum (needs momentum > 0 and dampening = 0).")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")
    foreach: bool | None = field(None, per_group=False, doc="Use the multi-tensor path (None: torch decides).")
    fused: bool | None = field(None, per_group=False, doc="Use the fused kernel (None: torch decides).")

    def __attrs_post_init__(self) -> None:
        from optreg.specs import FieldValueError

        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise FieldValueError("nesterov", "Nesterov momentum needs momentum > 0 and dampening = 0")
        if self.foreach and self.fused:
            raise FieldValueError("fused", "choose foreach or fused, not both")

    def param_state_layout(self, param, options):
        """A momentum buffer per parameter when momentum is on (torch keeps none without)."""
        return [param.like("momentum_buffer")] if options["momentum"] != 0 else []

    def create(self, param_groups, context):
        return _torch_sgd()(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class ConstantSchedule(SchedulerSpec):
    """The LR stays at each group's initial LR."""

    TYPE: ClassVar[str] = "constant"

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr


@attrs.frozen(kw_only=True)
class SingleProcess(ParallelismSpec):
    """One process: the model is used as is."""

    TYPE: ClassVar[str] = "single"

    def create(self) -> ParallelismStrategy:
        return ParallelismStrategy()


@hookimpl
def optreg_register_optimizers(register) -> None:
    register(SGDSpec)


@hookimpl
def optreg_register_schedulers(register) -> None:
    register(ConstantSchedule)


@hookimpl
def optreg_register_parallelism_strategies(register) -> None:
    register(SingleProcess)
