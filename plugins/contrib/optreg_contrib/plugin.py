"""The hook implementation optreg calls: registers this family's optimizer specs.

Published in ``pyproject.toml`` as ``[project.entry-points.optreg] contrib = "optreg_contrib.plugin"``.
The registry imports this module (and ``specs``) whenever it loads plugins: neither imports torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_contrib.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)
