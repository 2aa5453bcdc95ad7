"""The schedule-free optimizers (Defazio et al. 2024, "The Road Less Scheduled"), one module per algorithm.

* :mod:`.base`: :class:`ScheduleFreeOptimizer`, the train/eval modes, averaging weights and checkpoints
  the three optimizers share;
* :mod:`.adamw`, :mod:`.radam`, :mod:`.sgd`: :class:`ScheduleFreeAdamW`, :class:`ScheduleFreeRAdam`,
  :class:`ScheduleFreeSGD` (their kernels are in :mod:`optreg_schedulefree.functional`);
* :mod:`.wrapper`: :class:`ScheduleFree`, any optimizer made schedule-free.

Each class docstring states its update rule. :func:`reestimate_batchnorm` recomputes BatchNorm
statistics at the averaged point.
"""

from __future__ import annotations

from optreg_schedulefree._batchnorm import reestimate_batchnorm
from optreg_schedulefree.optim.adamw import ScheduleFreeAdamW
from optreg_schedulefree.optim.base import ScheduleFreeOptimizer
from optreg_schedulefree.optim.radam import ScheduleFreeRAdam
from optreg_schedulefree.optim.sgd import ScheduleFreeSGD
from optreg_schedulefree.optim.wrapper import ScheduleFree

__all__ = [
    "ScheduleFree",
    "ScheduleFreeAdamW",
    "ScheduleFreeOptimizer",
    "ScheduleFreeRAdam",
    "ScheduleFreeSGD",
    "reestimate_batchnorm",
]
