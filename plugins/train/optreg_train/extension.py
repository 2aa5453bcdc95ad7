"""Resuming a run with another length (``optreg train --resume DIR --steps N``) without an LR jump.

A schedule whose length comes from the run (a cosine without ``t_max``) would, evaluated afresh over
the new length, put the LR back up: at step 201 of a 200-step cosine resumed for 400 steps the LR is
the one of the middle of a 400-step cosine, far above where the run was. What a user extending a run
expects is that the LR carries on from where it is. So a resumed run of another length keeps the
schedule it was trained with and stretches (or compresses) what was left of it over what is left now:

    lr(t) = f(r + (t - r) * (T_old - r) / (T_new - r); T_old)      for t >= r

with ``f(t; T)`` the schedule, ``r`` the resume point and ``T_old``, ``T_new`` the run's length before
and after, all in the schedule's units (steps or tokens). The LR is continuous at ``r``, follows the
shape of the planned remainder, ends at the schedule's final value, and never rises above the LR at
``r`` when the remainder was decaying. A finished run (``r = T_old``) holds the schedule's final LR.

``--rewarm`` asks for the opposite: the schedule runs again from its start over the new remainder,
``lr(t) = f(t - r; T_new - r)`` (its warmup, then its decay), as a warm restart.

Each change of length is an :class:`Extension`, kept in the checkpoint, so a run extended, stopped
and resumed again gives the LRs of the same run done at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Extension", "ExtendedSchedule", "describe_extension"]


@attrs.frozen
class Extension:
    """One change of a run's length: at ``at`` (schedule units), the horizon went from ``before`` to ``after``.

    ``rewarm``: the schedule starts again at ``at`` over ``after - at`` instead of carrying on.
    ``before`` and ``after`` are ``None`` for a schedule whose shape does not depend on the run's length.
    """

    at: float
    before: float | None
    after: float | None
    rewarm: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the checkpoint loads with ``weights_only=True``)."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Extension:
        return cls(at=data["at"], before=data["before"], after=data["after"], rewarm=bool(data.get("rewarm", False)))


class ExtendedSchedule:
    """A schedule spec seen through the extensions of its run (duck-types a ``SchedulerSpec`` for
    :class:`optreg.scheduling.ScheduledLR`).

    ``horizon`` is the length the run started with (the schedule's ``t_max``); the ``t_max`` the
    scheduler passes to :meth:`get_lr` is ignored: the extensions say where on the original schedule
    each point falls.
    """

    def __init__(self, base: Any, horizon: float | None, extensions: Sequence[Extension]) -> None:
        self.base = base
        self.horizon = horizon
        self.extensions = tuple(extensions)

    @property
    def TYPE(self) -> str:
        return self.base.TYPE

    @property
    def units(self) -> str:
        return self.base.units

    @property
    def t_max(self) -> int | None:
        return self.base.t_max

    def needs_t_max(self) -> bool:
        return bool(self.base.needs_t_max())

    def position(self, current: float) -> tuple[float, float | None]:
        """Where ``current`` falls on the schedule as first planned: ``(point, horizon)``."""
        for ext in reversed(self.extensions):
            if current < ext.at:
                continue
            if ext.rewarm:
                return current - ext.at, None if ext.after is None else ext.after - ext.at
            if ext.before is None or ext.after is None:
                continue
            span = ext.after - ext.at
            current = ext.at + (current - ext.at) * (ext.before - ext.at) / span if span > 0 else ext.at
        return current, self.horizon

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        point, horizon = self.position(current)
        return self.base.get_lr(initial_lr, point, horizon)

    def __repr__(self) -> str:
        return f"ExtendedSchedule({self.base!r}, horizon={self.horizon}, extensions={list(self.extensions)})"


def describe_extension(schedule: str, step: int, steps_before: int, steps_after: int, lr_now: float,
                       lr_final: float, *, rewarm: bool, peak: float) -> str:
    """The note printed when a resumed run changes length: what happens to the LR, in plain words."""
    if rewarm:
        return (
            f"--rewarm: the {schedule} schedule starts again at step {step} and spans the "
            f"{steps_after - step} steps left (its warmup, then its decay; peak LR {peak:.3g})"
        )
    grows = "grows" if steps_after > steps_before else "shrinks"
    head = f"the run {grows} from {steps_before} to {steps_after} steps at step {step}"
    if step >= steps_before:
        return (
            f"{head}: the {schedule} schedule had ended, so the LR stays at its final value {lr_final:.3g} "
            f"for the new steps{' (they will not change the weights)' if lr_final == 0 else ''}; "
            "pass --rewarm to run the schedule again over them"
        )
    return (
        f"{head}: the rest of the {schedule} schedule (steps {step}-{steps_before}) is stretched over steps "
        f"{step}-{steps_after}, so the LR carries on from {lr_now:.3g} to {lr_final:.3g} without a jump; "
        "pass --rewarm to start the schedule again instead"
    ) if steps_after > steps_before else (
        f"{head}: the rest of the {schedule} schedule (steps {step}-{steps_before}) is compressed into steps "
        f"{step}-{steps_after}, so the LR carries on from {lr_now:.3g} to {lr_final:.3g} without a jump"
    )
