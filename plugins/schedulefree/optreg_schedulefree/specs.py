"""Spec classes of the schedule-free optimizers (what TOML's ``type = "..."`` selects).

No torch import at module load (the registry imports this module for every ``optreg`` command): a
spec's ``create()`` (the wrapper's ``wrap()``) imports its optimizer class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg import BuildContext, FieldValueError, OptimizerSpec, WrapperSpec, field
from optreg.memory import StateTensor, scalar
from optreg.specs import COMPILE_DOC, MAX_STEPS
from optreg_schedulefree._momentum import inner_momentum

if TYPE_CHECKING:
    import torch

    from optreg.memory import GroupShape, ParamShape

__all__ = [
    "ALL_SPECS",
    "ScheduleFreeAdamWSpec",
    "ScheduleFreeRAdamSpec",
    "ScheduleFreeSGDSpec",
    "ScheduleFreeSpec",
    "inner_momentum",
]

PAPER = (
    "Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024, The Road Less Scheduled, NeurIPS 2024, "
    "arXiv:2405.15682"
)
_CAPS = frozenset({"step_factor", "foreach"})
_R_DOC = "Polynomial weighting of the average: weights grow like (t+1)^r."
_POWER_DOC = "The average weighs each step by max_lr^weight_lr_power (down-weights warmup)."
_AT_Y_DOC = "Compute weight decay at y (the gradient point); false computes it at z."
_FOREACH_DOC = "Multi-tensor path (unset: on accelerators only; on CPU the per-tensor loop is faster)."
_WARMUP_DOC = "Linear LR warmup over this many steps (schedule-free needs no other schedule)."
_MAXIMIZE_DOC = "Maximize the objective instead of minimizing (as in torch.optim)."


def _group_scalars(prefix: str, names: tuple[str, ...]) -> list[StateTensor]:
    """The 0-dim step scalars a schedule-free optimizer keeps in each param group: float64
    (``optreg.optim.scalar_dtype``; float32 only on MPS, which this layout does not model)."""
    return [scalar(prefix + name, "float64") for name in names]


#: base.py's ``_SCALARS``: steps taken, the largest LR so far, the sum of the averaging weights, the last LR.
_OPTIMIZER_SCALARS = ("k", "lr_max", "weight_sum", "scheduled_lr")
#: wrapper.py's ``_SCALARS`` (kept under the ``sf_`` prefix).
_WRAPPER_SCALARS = ("k", "lr_max", "weight_sum")


def _check_beta1(betas: tuple[float, float]) -> None:
    if betas[0] <= 0:
        raise FieldValueError(
            "betas", "betas[0] is the schedule-free interpolation and must be > 0 (e.g. 0.9)", index=0
        )


@attrs.frozen(kw_only=True)
class ScheduleFreeAdamWSpec(OptimizerSpec):
    """Schedule-free AdamW: no LR schedule; call optimizer.train() / optimizer.eval() around evaluation.

    Parameters hold y while training and x (the average) in eval mode; evaluate and save for
    inference in eval mode.
    """

    TYPE: ClassVar[str] = "schedule_free_adamw"
    PAPER: ClassVar[str] = PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = _CAPS

    lr: float = field(0.0025, ge=0, doc="Learning rate (typically larger than AdamW's with a schedule).")
    betas: tuple[float, float] = field(
        (0.9, 0.999), ge=0, lt=1, doc="Interpolation coefficient beta (betas[0] > 0) and Adam's second-moment decay."
    )
    eps: float = field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (scaled by the LR).")
    warmup_steps: int = field(0, ge=0, le=MAX_STEPS, doc=_WARMUP_DOC)
    r: float = field(0.0, ge=0, doc=_R_DOC)
    weight_lr_power: float = field(2.0, ge=0, doc=_POWER_DOC)
    weight_decay_at_y: bool = field(True, doc=_AT_Y_DOC)
    maximize: bool = field(False, doc=_MAXIMIZE_DOC)
    foreach: bool | None = field(None, per_group=False, doc=_FOREACH_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def __attrs_post_init__(self) -> None:
        _check_beta1(self.betas)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """z and Adam's second moment exp_avg_sq, both in the param's dtype (no first moment)."""
        return [param.like("z"), param.like("exp_avg_sq")]

    def group_state_layout(self, group: GroupShape) -> list[StateTensor]:
        """The group's float64 0-dim k, lr_max, weight_sum and scheduled_lr (in the param group dict)."""
        return _group_scalars("", _OPTIMIZER_SCALARS)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_schedulefree.optim import ScheduleFreeAdamW

        return ScheduleFreeAdamW(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class ScheduleFreeRAdamSpec(OptimizerSpec):
    """Schedule-free RAdam: RAdam's rectification replaces the warmup; no LR schedule."""

    TYPE: ClassVar[str] = "schedule_free_radam"
    PAPER: ClassVar[str] = PAPER + "; Liu et al. 2020 (RAdam), arXiv:1908.03265"
    CAPABILITIES: ClassVar[frozenset[str]] = _CAPS

    lr: float = field(0.0025, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = field(
        (0.9, 0.999), ge=0, lt=1, doc="Interpolation coefficient beta (betas[0] > 0) and Adam's second-moment decay."
    )
    eps: float = field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (scaled by the LR).")
    warmup_steps: int = field(0, ge=0, le=MAX_STEPS, doc="Extra linear warmup on top of the rectification (usually 0).")
    r: float = field(0.0, ge=0, doc=_R_DOC)
    weight_lr_power: float = field(2.0, ge=0, doc=_POWER_DOC)
    weight_decay_at_y: bool = field(True, doc=_AT_Y_DOC)
    silent_sgd_phase: bool = field(
        True, doc="No step until the variance estimate is tractable (false: plain SGD steps meanwhile)."
    )
    maximize: bool = field(False, doc=_MAXIMIZE_DOC)
    foreach: bool | None = field(None, per_group=False, doc=_FOREACH_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def __attrs_post_init__(self) -> None:
        _check_beta1(self.betas)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """z and Adam's second moment exp_avg_sq, both in the param's dtype (no first moment)."""
        return [param.like("z"), param.like("exp_avg_sq")]

    def group_state_layout(self, group: GroupShape) -> list[StateTensor]:
        """The group's float64 0-dim k, lr_max, weight_sum and scheduled_lr (in the param group dict)."""
        return _group_scalars("", _OPTIMIZER_SCALARS)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_schedulefree.optim import ScheduleFreeRAdam

        return ScheduleFreeRAdam(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class ScheduleFreeSGDSpec(OptimizerSpec):
    """Schedule-free SGD: averaging and interpolation replace momentum and the LR schedule."""

    TYPE: ClassVar[str] = "schedule_free_sgd"
    PAPER: ClassVar[str] = PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = _CAPS

    lr: float = field(1.0, ge=0, doc="Learning rate (larger than SGD's with a schedule, e.g. 1-10x).")
    momentum: float = field(0.9, gt=0, lt=1, doc="Interpolation coefficient beta between x and z.")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    warmup_steps: int = field(0, ge=0, le=MAX_STEPS, doc=_WARMUP_DOC)
    r: float = field(0.0, ge=0, doc=_R_DOC)
    weight_lr_power: float = field(2.0, ge=0, doc=_POWER_DOC)
    weight_decay_at_y: bool = field(True, doc=_AT_Y_DOC)
    maximize: bool = field(False, doc=_MAXIMIZE_DOC)
    foreach: bool | None = field(None, per_group=False, doc=_FOREACH_DOC)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """z in the param's dtype (the interpolation replaces momentum: no other buffer)."""
        return [param.like("z")]

    def group_state_layout(self, group: GroupShape) -> list[StateTensor]:
        """The group's float64 0-dim k, lr_max, weight_sum and scheduled_lr (in the param group dict)."""
        return _group_scalars("", _OPTIMIZER_SCALARS)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_schedulefree.optim import ScheduleFreeSGD

        return ScheduleFreeSGD(param_groups, **self.optimizer_kwargs())


def _momentum_error(options: Mapping[str, Any]) -> tuple[str, str] | None:
    found = inner_momentum(options)
    if found is None:
        return None
    name, value = found
    what = "betas[0]" if name == "betas" else name
    return name, f"schedule_free replaces the base optimizer's momentum: set {what} = 0 (got {value})"


@attrs.frozen(kw_only=True)
class ScheduleFreeSpec(WrapperSpec):
    """Make any registered optimizer schedule-free: `inner` steps on z, the wrapper averages and interpolates.

    Turn the inner optimizer's momentum off (the wrapper rejects it otherwise) and give it a
    constant LR (warmup is fine). Group overrides refer to the inner optimizer's options.
    """

    TYPE: ClassVar[str] = "schedule_free"
    PAPER: ClassVar[str] = PAPER
    #: ``step_factor`` when the inner optimizer supports it (the wrapper gates its own updates by it).
    #: ``foreach`` is not passed on: the wrapper has no such option (set it on ``inner``).
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor"})

    inner: OptimizerSpec = field(doc="The base optimizer (a table with its `type`), momentum off.")
    momentum: float = field(0.9, gt=0, lt=1, per_group=False, doc="Interpolation coefficient beta between x and z.")
    weight_decay_at_y: float = field(
        0.0, ge=0, per_group=False, doc="Weight decay computed at y (the inner optimizer's decay is computed at z)."
    )
    r: float = field(0.0, ge=0, per_group=False, doc=_R_DOC)
    weight_lr_power: float = field(2.0, ge=0, per_group=False, doc=_POWER_DOC)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.inner, ScheduleFreeSpec):
            raise FieldValueError("inner", "schedule_free inside schedule_free is not supported")
        if type(self.inner).TYPE.startswith("schedule_free"):
            raise FieldValueError("inner", f"{self.inner.TYPE} is already schedule-free; wrap a plain optimizer")
        found = _momentum_error({f.name: getattr(self.inner, f.name) for f in attrs.fields(type(self.inner))})
        if found:
            raise FieldValueError("inner", found[1], index=found[0])
        for i, override in enumerate(self.group_overrides):
            found = _momentum_error(override.options)
            if found:
                raise FieldValueError("group_overrides", found[1], index=i)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The wrapper's own z (sf_z) in the param's dtype; the inner optimizer's state is its own."""
        return [param.like("sf_z")]

    def group_state_layout(self, group: GroupShape) -> list[StateTensor]:
        """The group's float64 0-dim sf_k, sf_lr_max and sf_weight_sum (in the shared param group dict)."""
        return _group_scalars("sf_", _WRAPPER_SCALARS)

    def wrap(self, inner: torch.optim.Optimizer, context: BuildContext) -> torch.optim.Optimizer:
        from optreg_schedulefree.optim import ScheduleFree

        return ScheduleFree(
            inner,
            momentum=self.momentum,
            weight_decay_at_y=self.weight_decay_at_y,
            r=self.r,
            weight_lr_power=self.weight_lr_power,
        )


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type, ...] = (ScheduleFreeAdamWSpec, ScheduleFreeSGDSpec, ScheduleFreeRAdamSpec, ScheduleFreeSpec)
