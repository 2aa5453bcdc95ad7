"""Registration of the Muon family with optreg (entry point ``muon`` in the ``optreg`` group).

The registry imports this module (and ``specs``) whenever it loads plugins: both are free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_muon.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    register.all(ALL_SPECS)
