"""optreg-parallel's hook: register the strategies (imports only ``specs``: no torch)."""

from __future__ import annotations

from typing import Any

import optreg
from optreg_parallel.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_parallelism_strategies(register: Any) -> None:
    register.all(ALL_SPECS)
