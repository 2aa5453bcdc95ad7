"""``composable``: a piecewise schedule of stages (start LR to end LR), as OLMo-core's ComposableScheduler.

Stage semantics are OLMo-core's (``olmo_core/optim/scheduler.py``, ``ComposableScheduler``,
``ComposableSchedulerStage``, ``OverrideDecay``):

- Stage ``k`` covers ``[S(k), S(k) + duration)`` with ``S(k)`` the sum of the earlier
  durations: half open on the right, so at a stage boundary the LR is the *next*
  stage's start LR (which is the previous stage's end LR unless the next stage sets
  its own start).
- Inside a stage the LR goes from its start LR to its end LR along ``shape``:
  ``linear``: ``start + (end - start) * c / duration``; ``cosine``:
  ``end + (start - end) * (1 + cos(pi c / duration)) / 2``, ``c`` counted from the
  stage's start.
- A stage's start LR is ``start_lr`` (absolute) or ``start_lr_fraction`` of the
  group's initial LR, else the previous stage's end LR (the initial LR for the first
  stage). Its end LR is ``end_lr`` or ``end_lr_fraction`` of the initial LR (required).
- After the last stage the LR holds the last stage's end LR.
- ``t_max`` plays no part: the stage durations define the schedule.
- ``override_decay`` replaces everything from its ``start`` on: a decay from the
  stages' LR at ``start`` to its end LR over ``duration``, then held.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from optreg import FieldValueError, field
from optreg.specs import MAX_STEPS
from optreg_schedules.specs.base import DecayShape, Schedule, interpolate
from optreg_schedules.specs.sequential import OverrideDecay

__all__ = ["Composable", "ComposableStage"]


@attrs.frozen(kw_only=True)
class ComposableStage:
    """One stage of ``composable``: from its start LR to its end LR over ``duration``, along ``shape``."""

    duration: int = field(ge=1, le=MAX_STEPS, doc="Length of the stage in `units`.")
    shape: DecayShape = field(
        "linear", doc="How the LR goes from the start LR to the end LR: linear, cosine or sqrt (1 - sqrt(p))."
    )
    start_lr: float | None = field(
        None, ge=0, doc="LR at the start of the stage (absolute); or `start_lr_fraction`; neither: the previous "
        "stage's end LR (the initial LR for the first stage)."
    )
    start_lr_fraction: float | None = field(
        None, ge=0, doc="LR at the start of the stage as a fraction of each group's initial LR; or `start_lr`."
    )
    end_lr: float | None = field(None, ge=0, doc="LR at the end of the stage (absolute); give this or "
                                 "`end_lr_fraction`.")
    end_lr_fraction: float | None = field(
        None, ge=0, doc="LR at the end of the stage as a fraction of each group's initial LR; give this or `end_lr`."
    )

    def __attrs_post_init__(self) -> None:
        if self.start_lr is not None and self.start_lr_fraction is not None:
            raise FieldValueError(
                "start_lr_fraction", "give the start LR as `start_lr` or as `start_lr_fraction`, not both (or "
                "neither, to start from the previous stage's end LR)"
            )
        if self.end_lr is not None and self.end_lr_fraction is not None:
            raise FieldValueError("end_lr_fraction", "give the end LR as `end_lr` or as `end_lr_fraction`, not both")
        if self.end_lr is None and self.end_lr_fraction is None:
            raise FieldValueError(
                "end_lr", "required: give the stage's end LR as `end_lr` (absolute) or `end_lr_fraction` (of the "
                "initial LR)"
            )

    def start(self, initial_lr: float, previous_end: float) -> float:
        """The LR this stage starts from, given the previous stage's end LR."""
        if self.start_lr is not None:
            return self.start_lr
        if self.start_lr_fraction is not None:
            return initial_lr * self.start_lr_fraction
        return previous_end

    def end(self, initial_lr: float) -> float:
        """The LR this stage ends at."""
        if self.end_lr is not None:
            return self.end_lr
        return initial_lr * float(self.end_lr_fraction or 0.0)


@attrs.frozen(kw_only=True)
class Composable(Schedule):
    """Stages one after another, each from a start LR to an end LR, as OLMo-core's ``ComposableScheduler``.

    Stage ``k`` covers ``[S(k), S(k) + duration)`` (``S(k)``: the sum of the earlier
    durations), so at a boundary the LR is the next stage's start LR. Within a stage,
    ``linear`` is ``start + (end - start) * c / duration`` and ``cosine``
    ``end + (start - end) * (1 + cos(pi c / duration)) / 2``. A stage starts from
    ``start_lr`` / ``start_lr_fraction`` of the initial LR, else from the previous
    stage's end LR (the first: the initial LR); it ends at ``end_lr`` /
    ``end_lr_fraction``. After the last stage its end LR is held. ``t_max`` is not
    used. ``override_decay`` replaces everything from its ``start`` on by a decay from
    the stages' LR there. ``sqrt`` shapes are optreg's addition (OLMo-core has linear
    and cosine).
    """

    TYPE: ClassVar[str] = "composable"
    PAPER: ClassVar[str] = "OLMo-core's ComposableScheduler (olmo_core/optim/scheduler.py, OLMo-core 3)"

    stages: tuple[ComposableStage, ...] = field(
        doc="The stages, in order (`[[scheduler.stages]]` tables): duration, shape, start_lr or "
        "start_lr_fraction (optional), end_lr or end_lr_fraction."
    )
    override_decay: OverrideDecay | None = field(
        None, doc="Optional late decay from `start` on: a table with start, duration, shape, end_lr or end_lr_fraction."
    )

    def check_options(self) -> None:
        if not self.stages:
            raise FieldValueError("stages", "give at least one stage (a [[scheduler.stages]] table with a duration "
                                  "and end_lr or end_lr_fraction)")

    def needs_t_max(self) -> bool:
        return False

    def total(self) -> int:
        """Length of all stages together, in ``units``."""
        return sum(stage.duration for stage in self.stages)

    def _stages_lr(self, initial_lr: float, current: float) -> float:
        stage_start, previous_end = 0, initial_lr
        for stage in self.stages:
            start_lr, end_lr = stage.start(initial_lr, previous_end), stage.end(initial_lr)
            if current < stage_start + stage.duration:  # half open: the boundary belongs to the next stage
                return interpolate(stage.shape, start_lr, end_lr, (current - stage_start) / stage.duration)
            previous_end = end_lr
            stage_start += stage.duration
        return previous_end

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        override = self.override_decay
        if override is None or current < override.start:
            return self._stages_lr(initial_lr, current)
        start_lr = self._stages_lr(initial_lr, override.start)
        return interpolate(override.shape, start_lr, override.end(initial_lr),
                           (current - override.start) / override.duration)
