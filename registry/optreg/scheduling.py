"""The torch ``LRScheduler`` that drives any optimizer from a stateless schedule spec.

A schedule is a pure function ``get_lr(initial_lr, current, t_max)``; the only
state is how far the run has come (``current``: steps or tokens), so resuming
from a checkpoint gives exactly the LR of an unbroken run. Each param group
keeps its own ``initial_lr`` (set once, never overwritten by a checkpoint).
A tensor ``lr`` is updated in place (no recompilation of a compiled step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from optreg.errors import SpecError

if TYPE_CHECKING:
    from typing import Protocol

    class SchedulerSpec(Protocol):
        """What the scheduler reads of a schedule spec (an ``optreg.SchedulerSpec``; specs imports this module)."""

        TYPE: str
        units: str
        t_max: int | None

        def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float: ...
        def needs_t_max(self) -> bool: ...

__all__ = ["ScheduledLR", "schedule_warning_of", "warn_if_schedule_ignored"]

_STATE_KEYS = ("last_epoch", "current", "_step_count")


def schedule_warning_of(optimizer: Any) -> str | None:
    """Why an LR schedule does not do what a user expects on ``optimizer`` (or a wrapped inner one), if it says.

    An optimizer class sets ``schedule_warning`` (a sentence) when a varying LR is pointless or
    harmful for it: COCOB's trajectory does not depend on the LR's scale, schedule-free methods
    replace the schedule.
    """
    seen = 0
    while optimizer is not None and seen < 8:
        note = getattr(type(optimizer), "schedule_warning", None)
        if note:
            return note
        optimizer = getattr(optimizer, "inner", None)
        seen += 1
    return None


def warn_if_schedule_ignored(optimizer: Any, schedule: SchedulerSpec, t_max: float | None) -> None:
    """Warn once when a schedule that varies the LR drives an optimizer that declares a ``schedule_warning``."""
    note = schedule_warning_of(optimizer)
    if note is None:
        return
    horizon = t_max or 1000
    points = [0, 1, horizon // 4, horizon // 2, horizon - 1, horizon]
    if len({schedule.get_lr(1.0, p, t_max) for p in points}) <= 1:
        return  # a constant schedule
    import warnings

    warnings.warn(
        f"schedule {schedule.TYPE!r} drives {type(optimizer).__name__}: {note}", UserWarning, stacklevel=3
    )


class ScheduledLR(LRScheduler):
    """Wrap a :class:`~optreg.SchedulerSpec` as a ``torch.optim.lr_scheduler.LRScheduler``.

    Call ``step()`` after each ``optimizer.step()``; with ``units = "tokens"``
    call ``step(tokens=n)`` with the number of tokens the step consumed.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: SchedulerSpec,
        *,
        t_max: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        self.schedule = schedule
        self.t_max = schedule.t_max if schedule.t_max is not None else t_max
        if schedule.needs_t_max() and self.t_max is None:
            raise SpecError(
                f"schedule {schedule.TYPE!r} needs t_max: set `t_max` in the [scheduler] table "
                "or pass t_max= when building it",
                path="$.t_max",
            )
        self.current = 0
        super().__init__(optimizer, last_epoch)
        warn_if_schedule_ignored(optimizer, schedule, self.t_max)

    def _base_values(self) -> list[float]:
        # Read once: float() of a CUDA tensor LR would sync with the device on every step.
        cached = getattr(self, "_base_floats", None)
        if cached is None or len(cached) != len(self.base_lrs):
            cached = self._base_floats = [float(b) for b in self.base_lrs]
        return cached

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """LR of every param group at ``self.current``."""
        return [self.schedule.get_lr(base, self.current, self.t_max) for base in self._base_values()]

    def lr_at(self, current: float) -> list[float]:
        """LR of every param group at an arbitrary point (no state change)."""
        return [self.schedule.get_lr(base, current, self.t_max) for base in self._base_values()]

    def step(self, epoch: int | None = None, *, tokens: int | None = None) -> None:  # type: ignore[override]
        """Advance by one step (``units = "steps"``) or by ``tokens`` (``units = "tokens"``)."""
        if epoch is not None:
            raise TypeError("ScheduledLR.step() takes no epoch; it is resumed through state_dict()")
        if not getattr(self, "_is_initial", False):
            if self.schedule.units == "tokens":
                if tokens is None:
                    raise TypeError("this schedule counts tokens: call scheduler.step(tokens=n)")
                if tokens < 0:
                    raise ValueError(f"tokens must be >= 0, got {tokens}")
                self.current += int(tokens)
            else:
                if tokens is not None:
                    raise TypeError("this schedule counts steps: call scheduler.step() without tokens")
                self.current += 1
        super().step()

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (loads with ``torch.load(weights_only=True)``); the schedule comes from the spec."""
        state = {key: getattr(self, key) for key in _STATE_KEYS if hasattr(self, key)}
        state["schedule_type"] = self.schedule.TYPE
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_type = state_dict.get("schedule_type")
        if saved_type is not None and saved_type != self.schedule.TYPE:
            raise ValueError(
                f"checkpoint holds the state of schedule {saved_type!r}, but this scheduler runs {self.schedule.TYPE!r}"
            )
        for key in _STATE_KEYS:
            if key in state_dict:
                setattr(self, key, state_dict[key])
        self._apply(self.get_lr())

    def _apply(self, values: list[float]) -> None:
        # Whatever order the optimizer and the scheduler were restored in, the groups now hold
        # the LR of `current`, as in an unbroken run.
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [group["lr"].clone() if isinstance(group["lr"], torch.Tensor) else group["lr"]
                         for group in self.optimizer.param_groups]

    def __repr__(self) -> str:
        return f"ScheduledLR({self.schedule!r}, t_max={self.t_max}, current={self.current})"
