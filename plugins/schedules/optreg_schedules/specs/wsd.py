"""Schedules with a stable phase and a final decay: WSD, multi-period WSD-S and the power schedule."""

from __future__ import annotations

import itertools
from typing import ClassVar

import attrs

from optreg import FieldValueError, field
from optreg.specs import MAX_STEPS
from optreg_schedules.specs.base import (
    DecayShape,
    DecayTail,
    Problem,
    WarmupSchedule,
    check_one_of,
    count_of,
    decay_fraction_field,
    decay_min_lr_field,
    decay_steps_field,
    interpolate,
    linear_warmup,
)

__all__ = ["WSD", "WSDS", "PowerLR"]


@attrs.frozen(kw_only=True)
class WSD(DecayTail):
    """Warmup-stable-decay: linear warmup, the initial LR held, then a decay to ``decay_min_lr`` at t_max.

    The decay covers ``[t_max - decay, t_max]`` with ``decay_shape`` ``linear``,
    ``cosine`` or ``sqrt`` (``1 - sqrt(p)``, the cooldown of Hägele et al. 2024);
    ``decay_min_lr`` is held past t_max.
    """

    TYPE: ClassVar[str] = "wsd"
    PAPER: ClassVar[str] = (
        "Hu et al. 2024, MiniCPM (arXiv:2404.06395); sqrt cooldown: Hägele et al. 2024, Scaling Laws and "
        "Compute-Optimal Training Beyond Fixed Training Durations (arXiv:2405.18392)"
    )
    NEEDS_T_MAX: ClassVar[bool] = True

    decay_shape: DecayShape = field("linear", doc="Shape of the decay: linear, cosine or sqrt (1 - sqrt(p)).")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_max = self._t_max(t_max)
        warmup = self.warmup(t_max)
        if current < warmup:
            return linear_warmup(initial_lr, current, warmup, self.warmup_min_lr)
        decay = self.decay(t_max)
        start = t_max - decay
        if decay == 0 or current < start:
            return initial_lr
        return interpolate(self.decay_shape, initial_lr, self.decay_min_lr, (current - start) / decay)


@attrs.frozen(kw_only=True)
class PowerLR(DecayTail):
    """Linear warmup, then the power law ``lr = lr0 * (current / warmup) ** b`` (``b < 0``), optional linear tail.

    The power phase does not depend on the run length. With ``decay_steps`` or
    ``decay_fraction`` the last part of the run decays linearly from the power
    law's value at ``t_max - decay`` to ``decay_min_lr`` at t_max.
    """

    TYPE: ClassVar[str] = "power_lr"
    PAPER: ClassVar[str] = (
        "Shen et al. 2024, Power Scheduler: A Batch Size and Token Number Agnostic Learning Rate Scheduler "
        "(arXiv:2408.13359)"
    )
    DECAY_REQUIRED: ClassVar[bool] = False
    WARMUP_REQUIRED_POSITIVE: ClassVar[bool] = True

    b: float = field(-0.51, lt=0, doc="Power-law exponent (< 0): lr = lr0 * (current / warmup) ** b.")

    def _why_positive_warmup(self) -> str:
        return "the power phase is (current / warmup) ** b"

    def tail_start_lr(self, initial_lr: float, t_max: float) -> float:
        return initial_lr * ((t_max - self.decay(t_max)) / self.warmup(t_max)) ** self.b

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        warmup = self.warmup(t_max)
        if current < warmup:
            return linear_warmup(initial_lr, current, warmup, self.warmup_min_lr)
        decay = self.decay(t_max)
        if decay > 0:
            t_max = self._t_max(t_max)
            start = t_max - decay
            if current >= start:
                tail_start = initial_lr * (start / warmup) ** self.b
                return interpolate("linear", tail_start, self.decay_min_lr, (current - start) / decay)
        return initial_lr * (current / warmup) ** self.b


@attrs.frozen(kw_only=True)
class WSDS(WarmupSchedule):
    """WSD-S for continual pretraining: periods of stable LR each ending in a decay, the LR back at peak after each.

    With ``E(i) = sum(period_lengths[:i+1])``, period 0 covers ``[0, E(0)]`` and period
    ``i > 0`` covers ``(E(i-1), E(i)]``: closed on the right, as OLMo-core's ``WSDS``
    (``_find_period`` picks the first period with ``x <= end``). In each period the peak
    ``lr0 * period_lr_multipliers[i]`` is held, then decays over the last ``decay_steps``
    (or ``decay_fraction`` of the period's length, rounded as OLMo-core does) to exactly
    ``decay_min_lr`` at ``E(i)``: the checkpoint at the end of a period sees the decayed LR,
    which is the point of WSD-S. The next period's peak starts right after ``E(i)``. The
    warmup is part of the first period (``warmup_fraction`` is a fraction of the first
    period). Every period needs a decay > 0. Past the last period the LR is
    ``decay_min_lr``. The periods define the length, not t_max: a run longer than the
    periods is an error.
    """

    TYPE: ClassVar[str] = "wsds"
    PAPER: ClassVar[str] = (
        "Wen et al. 2024, Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss Landscape "
        "Perspective (arXiv:2410.05192)"
    )

    period_lengths: tuple[int, ...] = field(
        doc="Length of each period in `units` (the warmup is in the first).", ge=1, le=MAX_STEPS
    )
    period_lr_multipliers: tuple[float, ...] = field(
        (), gt=0, doc="Peak LR of each period as a multiple of the initial LR (empty: 1 for every period)."
    )
    warmup_fraction: float | None = field(
        None, ge=0, le=1, doc="Warmup length as a fraction of the first period; give this or `warmup_steps`."
    )
    decay_steps: int | None = decay_steps_field("Length of each period's decay in `units`; or `decay_fraction`.")
    decay_fraction: float | None = decay_fraction_field(
        "Length of each period's decay as a fraction of that period; give this or `decay_steps`."
    )
    decay_min_lr: float = decay_min_lr_field()
    decay_shape: DecayShape = field("linear", doc="Shape of each decay: linear, cosine or sqrt (1 - sqrt(p)).")

    def check_options(self) -> None:
        check_one_of(self, "warmup_steps", "warmup_fraction", required=True, what="warmup",
                     fraction_of="the first period")
        check_one_of(self, "decay_steps", "decay_fraction", required=True, what="decay", fraction_of="each period")
        if not self.period_lengths:
            raise FieldValueError("period_lengths", "give at least one period length")
        if self.period_lr_multipliers and len(self.period_lr_multipliers) != len(self.period_lengths):
            raise FieldValueError(
                "period_lr_multipliers",
                f"give one multiplier per period ({len(self.period_lengths)}), got {len(self.period_lr_multipliers)}",
            )
        warmup = self.warmup(None)
        for i, length in enumerate(self.period_lengths):
            decay = self._period_decay(length)
            if decay == 0:
                how = "decay_steps = 0" if self.decay_steps is not None else (
                    f"decay_fraction = {self.decay_fraction:g} of period {i} ({length}) rounds to 0")
                raise FieldValueError(
                    self._decay_name(),
                    f"{how}: every wsds period needs a decay > 0, since the LR at the end of a period is "
                    "decay_min_lr (use `wsd` or `constant_with_warmup` for no decay)",
                )
            used = decay + (warmup if i == 0 else 0)
            if used > length:
                what = f"warmup ({warmup}) + decay ({decay})" if i == 0 else f"the decay ({decay})"
                name = self._decay_name() if i or warmup <= length else self._warmup_name()
                raise FieldValueError(name, f"{what} is longer than period {i} ({length})")

    def _decay_name(self) -> str:
        return "decay_steps" if self.decay_steps is not None else "decay_fraction"

    def needs_t_max(self) -> bool:
        return False

    def warmup(self, t_max: float | None) -> int:
        return count_of(self.warmup_steps, self.warmup_fraction, self.period_lengths[0], "warmup_fraction")

    def _period_decay(self, length: int) -> int:
        return count_of(self.decay_steps, self.decay_fraction, length, "decay_fraction")

    def total(self) -> int:
        """Length of all periods together, in ``units``."""
        return sum(self.period_lengths)

    def horizon_problems(self, t_max: int) -> list[Problem]:
        if t_max > self.total():
            return [(("period_lengths",), f"the periods cover {self.total()} {self.units} but t_max is {t_max}: "
                     "the LR would sit at decay_min_lr after the last period; add a period or shorten the run")]
        return []

    def _peak(self, initial_lr: float, period: int) -> float:
        if self.period_lr_multipliers:
            return initial_lr * self.period_lr_multipliers[period]
        return initial_lr

    def lr_problems(self, initial_lr: float, t_max: int | None) -> list[Problem]:
        problems = []
        if self.warmup_min_lr > self._peak(initial_lr, 0):
            problems.append((("warmup_min_lr",), f"warmup_min_lr = {self.warmup_min_lr:g} is above the first "
                             "period's peak; the warmup would lower the LR"))
        for i in range(len(self.period_lengths)):
            if self.decay_min_lr > self._peak(initial_lr, i):
                problems.append((("decay_min_lr",), f"decay_min_lr = {self.decay_min_lr:g} is above the peak of "
                                 f"period {i}; its decay would raise the LR"))
                break
        return problems

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        warmup = self.warmup(t_max)
        if current < warmup:
            return linear_warmup(self._peak(initial_lr, 0), current, warmup, self.warmup_min_lr)
        start = 0
        for i, end in enumerate(itertools.accumulate(self.period_lengths)):
            if current <= end:  # closed on the right: E(i) belongs to period i, at decay_min_lr
                decay = self._period_decay(end - start)
                decay_start = end - decay
                peak = self._peak(initial_lr, i)
                if current < decay_start:
                    return peak
                return interpolate(self.decay_shape, peak, self.decay_min_lr, (current - decay_start) / decay)
            start = end
        return self.decay_min_lr
