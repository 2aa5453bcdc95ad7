"""optreg-schedulefree: schedule-free optimizers for optreg (Defazio et al. 2024).

``schedule_free_adamw``, ``schedule_free_sgd``, ``schedule_free_radam`` and the
``schedule_free`` wrapper (any registered optimizer, momentum off). Call
``optimizer.train()`` before training steps and ``optimizer.eval()`` before
evaluating; :func:`reestimate_batchnorm` recomputes BatchNorm statistics at the
averaged point.

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_schedulefree.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point
group. The optimizer classes and :func:`reestimate_batchnorm` load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_schedulefree.specs import (
    ALL_SPECS,
    ScheduleFreeAdamWSpec,
    ScheduleFreeRAdamSpec,
    ScheduleFreeSGDSpec,
    ScheduleFreeSpec,
)

#: What ``optreg_schedulefree.optim`` provides (it imports torch: loaded when one is asked for).
_OPTIM = (
    "ScheduleFree",
    "ScheduleFreeAdamW",
    "ScheduleFreeOptimizer",
    "ScheduleFreeRAdam",
    "ScheduleFreeSGD",
    "reestimate_batchnorm",
)

__all__ = [
    "ALL_SPECS",
    "ScheduleFreeAdamWSpec",
    "ScheduleFreeRAdamSpec",
    "ScheduleFreeSGDSpec",
    "ScheduleFreeSpec",
    *_OPTIM,
]
__version__ = "0.1.0"

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_OPTIM, "optreg_schedulefree.optim"), globals())
