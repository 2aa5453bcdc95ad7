"""The ``optreg`` entry point of optreg-paramfree: registers the learning-rate-free optimizers.

Published in ``pyproject.toml`` as::

    [project.entry-points.optreg]
    paramfree = "optreg_paramfree.plugin"

The registry imports this module (and ``specs``) whenever it loads plugins: keep both free of torch.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_paramfree.specs import ALL_SPECS


@optreg.hookimpl
def optreg_register_optimizers(register: Any) -> None:
    """Register prodigy, dadapt_adamw, dadapt_sgd, dadapt_lion, dog, dowg, cocob, mechanic, momo, momo_adam."""
    register.all(ALL_SPECS)
