"""optreg-schedules: the LR schedules of the large-model trainers, stateless and resume-safe.

Every schedule is an :class:`optreg.SchedulerSpec` with a pure
``get_lr(initial_lr, current, t_max)``; optreg's ``ScheduledLR`` drives any
``torch.optim`` optimizer with it, one LR per param group. The classes live in
:mod:`optreg_schedules.specs` and are re-exported here.

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_schedules.plugin`` (which imports ``specs`` only) through the ``optreg`` entry
point group and calls its hook when a registry is built.
"""

from __future__ import annotations

from optreg_schedules import specs as _specs
from optreg_schedules.specs import *  # noqa: F403 - the package's names are the specs module's
from optreg_schedules.specs import ALL_SPECS, Schedule

__all__ = ["SCHEDULES", *_specs.__all__]

__version__ = "0.1.0"

#: Every schedule this plugin registers: the same tuple as :data:`optreg_schedules.specs.ALL_SPECS`
#: (its earlier name, kept).
SCHEDULES: tuple[type[Schedule], ...] = ALL_SPECS
