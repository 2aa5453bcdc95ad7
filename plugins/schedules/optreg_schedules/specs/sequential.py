"""``sequential``: schedules run one after another, each starting from the previous one's final LR."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from optreg import FieldValueError, SchedulerSpec, SpecError, field
from optreg.specs import MAX_STEPS
from optreg_schedules.specs.base import DecayShape, Problem, Schedule, interpolate

__all__ = ["OverrideDecay", "Sequential"]


@attrs.frozen(kw_only=True)
class OverrideDecay:
    """A late decay that takes over from ``start`` on, whatever the sequence would do.

    It starts from the sequence's LR at ``start`` and decays to ``end_lr`` (or
    ``end_lr_fraction`` of the initial LR) over ``duration``, then holds it.
    """

    start: int = field(ge=0, le=MAX_STEPS, doc="Where the override begins, in `units` from the start of the run.")
    duration: int = field(ge=1, le=MAX_STEPS, doc="Length of the override decay in `units`.")
    shape: DecayShape = field("linear", doc="Shape of the decay: linear, cosine or sqrt (1 - sqrt(p)).")
    end_lr: float | None = field(None, ge=0, doc="Final LR (absolute); give this or `end_lr_fraction`.")
    end_lr_fraction: float | None = field(
        None, ge=0, le=1, doc="Final LR as a fraction of each group's initial LR; give this or `end_lr`."
    )

    def __attrs_post_init__(self) -> None:
        if self.end_lr is not None and self.end_lr_fraction is not None:
            raise FieldValueError("end_lr_fraction", "give the final LR as `end_lr` or as `end_lr_fraction`, not both")
        if self.end_lr is None and self.end_lr_fraction is None:
            raise FieldValueError(
                "end_lr", "required: give the final LR as `end_lr` (absolute) or `end_lr_fraction` (of the initial LR)"
            )

    def end(self, initial_lr: float) -> float:
        """The LR the override decays to."""
        if self.end_lr is not None:
            return self.end_lr
        return initial_lr * float(self.end_lr_fraction or 0.0)


def _needs_t_max(schedule: SchedulerSpec) -> bool:
    if schedule.t_max is not None:
        return False
    return schedule.needs_t_max()


def _horizon_problems(schedule: SchedulerSpec, t_max: int) -> list[Problem]:
    method = getattr(schedule, "horizon_problems", None)
    return list(method(t_max)) if callable(method) and schedule.t_max is None else []


@attrs.frozen(kw_only=True)
class Sequential(Schedule):
    """Run ``schedules`` one after another; each starts from the LR the previous one ended with.

    Schedule ``i`` (all but the last) runs for ``durations[i]`` ``units`` and sees
    that duration as its t_max (unless it sets its own ``t_max``); the next one's
    initial LR is its LR at the end of its segment. With ``B(i) = sum(durations[:i+1])``,
    segment 0 covers ``[0, B(0)]`` and segment ``i`` covers ``(B(i-1), B(i)]``: at a
    boundary the LR is the finishing schedule's last LR, as OLMo-core's
    ``SequentialScheduler`` (``current <= scheduler_max``), never the next schedule's
    step 0. The last runs to the end, its t_max being what is left of the run.
    ``override_decay`` optionally replaces everything from its ``start`` on by a decay
    from the sequence's LR there.
    """

    TYPE: ClassVar[str] = "sequential"
    PAPER: ClassVar[str] = "Composition of schedules, as OLMo-core's SequentialScheduler"

    schedules: tuple[SchedulerSpec, ...] = field(
        doc="The schedules, in order: tables with a `type` naming a registered scheduler."
    )
    durations: tuple[int, ...] = field(
        (), ge=1, le=MAX_STEPS, doc="Length of every schedule but the last, in `units` (the last runs to the end)."
    )
    override_decay: OverrideDecay | None = field(
        None, doc="Optional late decay from `start` on: a table with start, duration, shape, end_lr or end_lr_fraction."
    )

    def check_options(self) -> None:
        if not self.schedules:
            raise FieldValueError("schedules", "give at least one schedule")
        if len(self.durations) != len(self.schedules) - 1:
            raise FieldValueError(
                "durations",
                f"give a duration for every schedule but the last: {len(self.schedules) - 1} for "
                f"{len(self.schedules)} schedules, got {len(self.durations)}",
            )
        for i, schedule in enumerate(self.schedules):
            if schedule.units != self.units:
                raise FieldValueError(
                    "schedules", f"units = {schedule.units!r} differs from the sequence's units = {self.units!r}", i
                )
        for i, (schedule, duration) in enumerate(zip(self.schedules, self.durations)):
            problems = _horizon_problems(schedule, duration)
            if problems:
                parts, message = problems[0]
                where = ".".join(str(p) for p in parts)
                raise FieldValueError("schedules", f"{where}: {message} (its segment is durations[{i}])", i)

    def needs_t_max(self) -> bool:
        return _needs_t_max(self.schedules[-1])

    def _last_length(self, t_max: float | None) -> float | None:
        return None if t_max is None else t_max - sum(self.durations)

    def horizon_problems(self, t_max: int) -> list[Problem]:
        last = len(self.schedules) - 1
        remaining = t_max - sum(self.durations)
        if _needs_t_max(self.schedules[-1]) and remaining < 1:
            return [(("durations",), f"the durations add up to {sum(self.durations)}, leaving nothing of t_max "
                     f"({t_max}) for the last schedule, which needs a length")]
        if remaining >= 1:
            return [(("schedules", last, *parts), message + " (its segment is what the durations leave of t_max)")
                    for parts, message in _horizon_problems(self.schedules[-1], int(remaining))]
        return []

    def check_run(self, initial_lrs: Any, t_max: int | None) -> None:
        super().check_run(initial_lrs, t_max)
        t_max = self.t_max if self.t_max is not None else t_max
        # Each schedule's own checks against its segment and the LR it starts from.
        problems = []
        for lr in initial_lrs:
            start_lr = lr
            for i, schedule in enumerate(self.schedules):
                horizon = self._horizon(i, t_max)
                method = getattr(schedule, "lr_problems", None)
                if callable(method):
                    problems += [(("schedules", i, *p), f"{m} (schedule {i} starts from LR {start_lr:g})")
                                 for p, m in method(start_lr, horizon)]
                if i < len(self.durations):
                    start_lr = schedule.get_lr(start_lr, self.durations[i], horizon)
        if problems:
            from optreg.errors import format_path

            errors = [(format_path(p), m) for p, m in problems]
            raise SpecError(errors[0][1], path=errors[0][0], errors=errors)

    def _horizon(self, index: int, t_max: float | None) -> float | None:
        schedule = self.schedules[index]
        if schedule.t_max is not None:
            return schedule.t_max
        if index < len(self.durations):
            return self.durations[index]
        return self._last_length(t_max)

    def _sequence_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        lr, start = initial_lr, 0
        for i, duration in enumerate(self.durations):
            horizon = self._horizon(i, t_max)
            if current <= start + duration:  # the boundary belongs to the finishing schedule
                return self.schedules[i].get_lr(lr, current - start, horizon)
            lr = self.schedules[i].get_lr(lr, duration, horizon)
            start += duration
        return self.schedules[-1].get_lr(lr, current - start, self._horizon(len(self.durations), t_max))

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        override = self.override_decay
        if override is None or current < override.start:
            return self._sequence_lr(initial_lr, current, t_max)
        start_lr = self._sequence_lr(initial_lr, override.start, t_max)
        return interpolate(override.shape, start_lr, override.end(initial_lr),
                           (current - override.start) / override.duration)
