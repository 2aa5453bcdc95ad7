"""optreg registration of the skip-step family: ``skip_step``, ``skip_step_adamw``, ``skip_step_lion``, ``noop``.

The registry imports this module (and ``specs``) whenever it loads plugins: both are free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_skipstep.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)
