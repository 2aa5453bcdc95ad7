"""Warmup schedules: constant, linear, cosine, half cosine, cosine + linear tail, inverse sqrt, exponential.

Each group's own initial LR is the peak (``initial_lr`` below); ``current`` and
every count are in ``units``. The LR past ``t_max`` holds the final value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import attrs

from optreg import field
from optreg_schedules.specs.base import (
    DecayTail,
    Problem,
    Schedule,
    WarmupSchedule,
    alpha_f_field,
    linear_warmup,
)

__all__ = [
    "ConstantWithWarmup",
    "CosWithWarmup",
    "CosWithWarmupAndLinearDecay",
    "Exponential",
    "HalfCosWithWarmup",
    "InvSqrtWithWarmup",
    "LinearWithWarmup",
]


@attrs.frozen(kw_only=True)
class ConstantWithWarmup(WarmupSchedule):
    """Linear warmup to each group's initial LR, then constant.

    ``lr = warmup_min_lr + (lr0 - warmup_min_lr) * current / warmup`` while ``current < warmup``,
    then ``lr0``. Needs t_max only for ``warmup_fraction``.
    """

    TYPE: ClassVar[str] = "constant_with_warmup"
    PAPER: ClassVar[str] = (
        "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour (gradual warmup)"
    )

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        warmup = self.warmup(t_max)
        if current < warmup:
            return linear_warmup(initial_lr, current, warmup, self.warmup_min_lr)
        return initial_lr


@attrs.frozen(kw_only=True)
class _DecayToAlpha(WarmupSchedule):
    """Warmup, then a decay from the initial LR to ``alpha_f * initial LR`` at t_max (held afterwards)."""

    NEEDS_T_MAX: ClassVar[bool] = True

    alpha_f: float = alpha_f_field()

    #: Fraction of the way from the final LR (0) to the peak (1) at progress p in [0, 1) of the decay.
    FACTOR: ClassVar[Callable[[float], float]]
    #: Where the warmup ends, as a fraction of the way from the final LR to the initial LR.
    WARMUP_TO: ClassVar[float] = 1.0

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_max = self._t_max(t_max)
        return _decay_to_alpha(
            initial_lr, current, t_max, self.warmup(t_max), self.warmup_min_lr, self.alpha_f, type(self).FACTOR,
            self.WARMUP_TO,
        )


def _decay_to_alpha(
    initial_lr: float,
    current: float,
    t_max: float,
    warmup: int,
    warmup_min_lr: float,
    alpha_f: float,
    factor: Callable[[float], float],
    warmup_to: float = 1.0,
) -> float:
    eta_min = initial_lr * alpha_f
    if current < warmup:
        peak = initial_lr if warmup_to == 1.0 else eta_min + (initial_lr - eta_min) * warmup_to
        return linear_warmup(peak, current, warmup, warmup_min_lr)
    if current >= t_max:
        return eta_min
    return eta_min + (initial_lr - eta_min) * factor((current - warmup) / (t_max - warmup))


def _linear_factor(progress: float) -> float:
    return 1.0 - progress


def _cosine_factor(progress: float) -> float:
    return (1.0 + math.cos(math.pi * progress)) / 2.0


def _half_cosine_factor(progress: float) -> float:
    return (1.0 + math.cos(math.pi * (1.0 + progress) / 2.0)) / 2.0


@attrs.frozen(kw_only=True)
class LinearWithWarmup(_DecayToAlpha):
    """Linear warmup, then a linear decay to ``alpha_f * lr0`` at t_max.

    ``lr = lr0 - (lr0 - alpha_f lr0) * (current - warmup) / (t_max - warmup)``.
    """

    TYPE: ClassVar[str] = "linear_with_warmup"
    PAPER: ClassVar[str] = (
        "Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers (warmup + linear decay)"
    )

    FACTOR = staticmethod(_linear_factor)


@attrs.frozen(kw_only=True)
class CosWithWarmup(_DecayToAlpha):
    """Linear warmup, then a cosine decay to ``alpha_f * lr0`` at t_max.

    ``lr = eta_min + (lr0 - eta_min) * (1 + cos(pi (current - warmup) / (t_max - warmup))) / 2``,
    ``eta_min = alpha_f * lr0``.
    """

    TYPE: ClassVar[str] = "cos_with_warmup"
    PAPER: ClassVar[str] = "Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm Restarts"

    FACTOR = staticmethod(_cosine_factor)


@attrs.frozen(kw_only=True)
class HalfCosWithWarmup(_DecayToAlpha):
    """Warmup to the midpoint of a cosine, then the second half of that cosine down to ``alpha_f * lr0``.

    The initial LR is the peak of the *full* cosine, so the LR never exceeds
    ``mid = eta_min + (lr0 - eta_min) / 2``: the warmup goes from ``warmup_min_lr`` to
    ``mid``, then ``lr = eta_min + (lr0 - eta_min) * (1 + cos(pi/2 + pi/2 * p)) / 2`` with
    ``p = (current - warmup) / (t_max - warmup)``.
    """

    TYPE: ClassVar[str] = "half_cos_with_warmup"
    PAPER: ClassVar[str] = "Loshchilov & Hutter 2017, SGDR (second half of the cosine), as in OLMo-core"

    FACTOR = staticmethod(_half_cosine_factor)
    WARMUP_TO: ClassVar[float] = 0.5

    def lr_problems(self, initial_lr: float, t_max: int | None) -> list[Problem]:
        mid = initial_lr * self.alpha_f + (initial_lr - initial_lr * self.alpha_f) / 2.0
        if self.warmup_min_lr > mid:
            return [(("warmup_min_lr",), f"warmup_min_lr = {self.warmup_min_lr:g} is above the LR at the end of the "
                     f"warmup ({mid:g}, the middle of the cosine); the warmup would lower the LR")]
        return []


@attrs.frozen(kw_only=True)
class InvSqrtWithWarmup(WarmupSchedule):
    """Linear warmup, then ``lr = eta_min + (lr0 - eta_min) * sqrt(warmup / current)``, ``eta_min = alpha_f * lr0``.

    No t_max: the decay goes on for ever towards ``eta_min``.
    """

    TYPE: ClassVar[str] = "inv_sqrt_with_warmup"
    PAPER: ClassVar[str] = "Vaswani et al. 2017, Attention Is All You Need (inverse square root schedule)"
    WARMUP_REQUIRED_POSITIVE: ClassVar[bool] = True

    alpha_f: float = field(0.1, ge=0, le=1, doc="Asymptotic LR as a fraction of each group's initial LR.")

    def _why_positive_warmup(self) -> str:
        return "the decay is sqrt(warmup / current)"

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        warmup = self.warmup(t_max)
        if current < warmup:
            return linear_warmup(initial_lr, current, warmup, self.warmup_min_lr)
        eta_min = initial_lr * self.alpha_f
        return eta_min + (initial_lr - eta_min) * math.sqrt(warmup / current)


@attrs.frozen(kw_only=True)
class CosWithWarmupAndLinearDecay(DecayTail):
    """``cos_with_warmup`` over the whole t_max, cut at ``t_max - decay`` by a linear decay to ``decay_min_lr``.

    For ``current >= t_max - decay``: ``lr = decay_min_lr + (c - decay_min_lr) * (t_max - current) / decay``,
    where ``c`` is the cosine's LR at ``t_max - decay``.
    """

    TYPE: ClassVar[str] = "cos_with_warmup_and_linear_decay"
    PAPER: ClassVar[str] = (
        "Loshchilov & Hutter 2017 (SGDR) cosine, annealed linearly at the end as in OLMo-core "
        "(Team OLMo 2024, 2 OLMo 2 Furious, arXiv:2501.00656)"
    )
    NEEDS_T_MAX: ClassVar[bool] = True

    alpha_f: float = field(
        0.1, ge=0, le=1, doc="Final LR of the (uncut) cosine as a fraction of each group's initial LR."
    )

    def _cosine(self, initial_lr: float, current: float, t_max: float) -> float:
        return _decay_to_alpha(
            initial_lr, current, t_max, self.warmup(t_max), self.warmup_min_lr, self.alpha_f, CosWithWarmup.FACTOR
        )

    def tail_start_lr(self, initial_lr: float, t_max: float) -> float:
        return self._cosine(initial_lr, t_max - self.decay(t_max), t_max)

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_max = self._t_max(t_max)
        decay = self.decay(t_max)
        start = t_max - decay
        if decay == 0 or current < start:
            return self._cosine(initial_lr, current, t_max)
        if current >= t_max:
            return self.decay_min_lr
        tail_start = self._cosine(initial_lr, start, t_max)
        return self.decay_min_lr + (tail_start - self.decay_min_lr) * ((t_max - current) / decay)


@attrs.frozen(kw_only=True)
class Exponential(Schedule):
    """Exponential growth from ``lr_min`` at 0 to each group's initial LR at t_max (held afterwards).

    ``lr = lr_min * (lr0 / lr_min) ** (current / t_max)``: the LR range test.
    """

    TYPE: ClassVar[str] = "exponential"
    PAPER: ClassVar[str] = "Smith 2017, Cyclical Learning Rates for Training Neural Networks (LR range test)"
    NEEDS_T_MAX: ClassVar[bool] = True

    lr_min: float = field(1e-9, gt=0, doc="LR at current = 0 (absolute, > 0).")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_max = self._t_max(t_max)
        if current >= t_max:
            return initial_lr
        if current <= 0:
            return self.lr_min
        return self.lr_min * (initial_lr / self.lr_min) ** (current / t_max)
