"""The hook implementations optreg calls: each registers this family's specs of its kind.

Published in ``pyproject.toml`` as::

    [project.entry-points.optreg]
    myfamily = "optreg_myfamily.plugin"

The registry imports this module (and ``specs``) whenever it loads plugins: keep both free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_myfamily.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)


@optreg.hookimpl
def optreg_register_schedulers(register: Any) -> None:
    register.all(ALL_SPECS)
