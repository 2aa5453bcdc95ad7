"""The schedules' spec classes: what a ``[scheduler]`` table may say, and the schedule itself.

A schedule needs no separate implementation: each spec class *is* the schedule, with a pure
``get_lr(initial_lr, current, t_max)`` that optreg's ``ScheduledLR`` calls for every param group
(its formula is in the class's docstring). No torch import at module load: the registry imports
this package for every ``optreg`` command.

- :mod:`~optreg_schedules.specs.base`: what every schedule shares (:class:`Schedule`,
  :class:`WarmupSchedule`, the warmup / decay options, their resolution against ``t_max`` and the
  checks against the run and the groups' LRs).
- :mod:`~optreg_schedules.specs.warmup`: warmup + constant, linear, cosine, half cosine, cosine with
  a linear tail, inverse square root; ``exponential``.
- :mod:`~optreg_schedules.specs.wsd`: WSD, multi-period WSD-S and the power schedule.
- :mod:`~optreg_schedules.specs.sequential`: ``sequential`` (and ``override_decay``).
- :mod:`~optreg_schedules.specs.composable`: ``composable``, OLMo-core's stages.
- :mod:`~optreg_schedules.specs.optax_compat`: optax's ``warmup_cosine_decay``.
"""

from __future__ import annotations

from optreg_schedules.specs.base import Schedule, WarmupSchedule, fraction_count, interpolate
from optreg_schedules.specs.composable import Composable, ComposableStage
from optreg_schedules.specs.optax_compat import WarmupCosineDecay
from optreg_schedules.specs.sequential import OverrideDecay, Sequential
from optreg_schedules.specs.warmup import (
    ConstantWithWarmup,
    CosWithWarmup,
    CosWithWarmupAndLinearDecay,
    Exponential,
    HalfCosWithWarmup,
    InvSqrtWithWarmup,
    LinearWithWarmup,
)
from optreg_schedules.specs.wsd import WSD, WSDS, PowerLR

__all__ = [
    "ALL_SPECS",
    "Composable",
    "ComposableStage",
    "ConstantWithWarmup",
    "CosWithWarmup",
    "CosWithWarmupAndLinearDecay",
    "Exponential",
    "HalfCosWithWarmup",
    "InvSqrtWithWarmup",
    "LinearWithWarmup",
    "OverrideDecay",
    "PowerLR",
    "Schedule",
    "Sequential",
    "WSD",
    "WSDS",
    "WarmupCosineDecay",
    "WarmupSchedule",
    "fraction_count",
    "interpolate",
]

#: Every schedule this plugin registers; plugin.py hands them to ``register.all``.
#: (``OverrideDecay`` and ``ComposableStage`` are tables inside a schedule, not schedules.)
ALL_SPECS: tuple[type[Schedule], ...] = (
    ConstantWithWarmup,
    LinearWithWarmup,
    CosWithWarmup,
    HalfCosWithWarmup,
    CosWithWarmupAndLinearDecay,
    InvSqrtWithWarmup,
    Exponential,
    WSD,
    WSDS,
    PowerLR,
    Sequential,
    Composable,
    WarmupCosineDecay,
)
