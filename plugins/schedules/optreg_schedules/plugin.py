"""The hook implementation optreg calls: it registers this plugin's schedules.

Published in ``pyproject.toml`` as::

    [project.entry-points.optreg]
    schedules = "optreg_schedules.plugin"

The registry imports this module (and ``specs``) whenever it loads plugins: keep both free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_schedules.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_schedulers(register: Any) -> None:
    register.all(ALL_SPECS)
