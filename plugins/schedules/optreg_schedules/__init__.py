"""optreg-schedules: the LR schedules of the large-model trainers, stateless and resume-safe.

Every schedule is an :class:`optreg.SchedulerSpec` with a pure
``get_lr(initial_lr, current, t_max)``; optreg's ``ScheduledLR`` drives any
``torch.optim`` optimizer with it, one LR per param group.
"""

from __future__ import annotations

from optreg_schedules.base import Schedule, WarmupSchedule, fraction_count, interpolate
from optreg_schedules.composable import Composable, ComposableStage
from optreg_schedules.optax_compat import WarmupCosineDecay
from optreg_schedules.schedules import (
    ConstantWithWarmup,
    CosWithWarmup,
    CosWithWarmupAndLinearDecay,
    Exponential,
    HalfCosWithWarmup,
    InvSqrtWithWarmup,
    LinearWithWarmup,
)
from optreg_schedules.sequential import OverrideDecay, Sequential
from optreg_schedules.wsd import WSD, WSDS, PowerLR

__all__ = [
    "SCHEDULES",
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

__version__ = "0.1.0"

#: Every schedule this plugin registers.
SCHEDULES: tuple[type[Schedule], ...] = (
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
