"""The hook implementations optreg calls: they register this family's optimizers and schedules.

Published in ``pyproject.toml`` as::

    [project.entry-points.optreg]
    torch = "optreg_torch.plugin"

The registry imports this module (and ``specs``) whenever it loads plugins: both are free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_torch.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)


@optreg.hookimpl
def optreg_register_schedulers(register: Any) -> None:
    register.all(ALL_SPECS)
