"""``warmup_cosine_decay``: optax's ``warmup_cosine_decay_schedule``, with each group's initial LR as the peak."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from optreg import FieldValueError, field
from optreg.specs import MAX_STEPS
from optreg_schedules.specs.base import (
    Problem,
    Schedule,
    check_one_of,
    count_of,
    warmup_fraction_field,
    warmup_steps_field,
)

__all__ = ["WarmupCosineDecay"]


@attrs.frozen(kw_only=True)
class WarmupCosineDecay(Schedule):
    """optax's warmup + cosine decay: ``init_value`` to the peak over the warmup, cosine to ``end_value``, then held.

    With ``peak`` the group's initial LR, ``w`` the warmup and ``D = decay_steps``
    (the *total* length, warmup included, as in optax):

    - ``current < w``: ``init_value + (peak - init_value) * current / w``
    - ``w <= current``: ``peak * ((1 - alpha) * c ** exponent + alpha)`` with
      ``c = (1 + cos(pi * min(current - w, D - w) / (D - w))) / 2`` and
      ``alpha = end_value / peak`` (0 when ``peak == 0``, as optax).

    ``init_value`` and ``end_value`` are absolute LRs, as in optax.
    ``decay_steps`` defaults to t_max.
    """

    TYPE: ClassVar[str] = "warmup_cosine_decay"
    PAPER: ClassVar[str] = "optax.warmup_cosine_decay_schedule; Loshchilov & Hutter 2017, SGDR"

    warmup_steps: int | None = warmup_steps_field()
    warmup_fraction: float | None = warmup_fraction_field()
    init_value: float = field(0.0, ge=0, doc="LR at current = 0 (absolute), as optax's init_value.")
    end_value: float = field(0.0, ge=0, doc="LR at the end of the cosine (absolute), held afterwards.")
    decay_steps: int | None = field(
        None, ge=1, le=MAX_STEPS,
        doc="Total length, warmup included, in `units` (as optax's decay_steps); defaults to t_max."
    )
    exponent: float = field(1.0, gt=0, doc="The cosine factor is raised to this power (optax's exponent).")

    def check_options(self) -> None:
        check_one_of(self, "warmup_steps", "warmup_fraction", required=True, what="warmup")
        if self.decay_steps is not None and self.warmup_steps is not None and self.decay_steps <= self.warmup_steps:
            raise FieldValueError(
                "decay_steps",
                f"decay_steps ({self.decay_steps}) is the total length, warmup included: it must be larger than "
                f"warmup_steps ({self.warmup_steps})",
            )

    def needs_t_max(self) -> bool:
        return self.decay_steps is None or self.warmup_fraction is not None

    def warmup(self, t_max: float | None) -> int:
        """The warmup length in ``units``."""
        return count_of(self.warmup_steps, self.warmup_fraction, t_max, "warmup_fraction")

    def _warmup_name(self) -> str:
        return "warmup_steps" if self.warmup_steps is not None else "warmup_fraction"

    def total(self, t_max: float | None) -> float:
        """The total length (optax's decay_steps, warmup included), in ``units``."""
        if self.decay_steps is not None:
            return self.decay_steps
        return self._t_max(t_max)

    def horizon_problems(self, t_max: int) -> list[Problem]:
        warmup = self.warmup(t_max)
        total = self.decay_steps if self.decay_steps is not None else t_max
        if total <= warmup:
            name = "decay_steps" if self.decay_steps is not None else self._warmup_name()
            return [((name,), f"the total length ({total}) must be larger than the warmup ({warmup})")]
        return []

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        warmup = self.warmup(t_max)
        if current < warmup:  # optax's linear_schedule from init_value to the peak
            return (self.init_value - initial_lr) * (1.0 - current / warmup) + initial_lr
        cosine_steps = self.total(t_max) - warmup
        count = min(current - warmup, cosine_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * count / cosine_steps))
        alpha = 0.0 if initial_lr == 0.0 else self.end_value / initial_lr
        return initial_lr * ((1.0 - alpha) * cosine**self.exponent + alpha)
