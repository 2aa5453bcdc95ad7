"""optreg registration of the sign family: ``lion``, ``signum``, ``signsgd``.

The registry imports this module (and ``specs``) whenever it loads plugins: both are free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_sign.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)
