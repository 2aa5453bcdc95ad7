"""optreg hook implementations of the Adam family (entry point ``adam`` in the ``optreg`` group).

The registry imports this module (and ``specs``) whenever it loads plugins: neither imports torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_adam.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)
