"""The ``optreg`` entry point of optreg-schedulefree: registers the schedule-free optimizers and wrapper.

Published in ``pyproject.toml`` as ``schedulefree = "optreg_schedulefree.plugin"``. The registry imports
this module (and ``specs``) whenever it loads plugins: both are free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_schedulefree.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    """Register schedule_free_adamw, schedule_free_sgd, schedule_free_radam and the schedule_free wrapper."""
    register.all(ALL_SPECS)
