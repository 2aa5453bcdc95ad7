"""optreg-skipstep: skip an optimizer step when the loss or the gradient norm spikes, without a host sync.

Importing this package imports no torch: the optimizer classes and helpers load on first use
(``from optreg_skipstep import SkipStepOptimizer`` imports them then).
"""

from __future__ import annotations

import importlib
from typing import Any

from optreg_skipstep.specs import ALL_SPECS, NoOpSpec, SkipStepAdamWSpec, SkipStepLionSpec, SkipStepSpec

__all__ = [
    "ALL_SPECS",
    "NoOpSpec",
    "NoUpdate",
    "SkipStepAdamWSpec",
    "SkipStepLionSpec",
    "SkipStepOptimizer",
    "SkipStepSpec",
    "SpikeDetector",
    "grad_norm",
    "stats_dtype",
]
__version__ = "0.1.0"

#: Names that import torch: loaded from :mod:`optreg_skipstep.optim` on first use.
_LAZY = frozenset({"NoUpdate", "SkipStepOptimizer", "SpikeDetector", "grad_norm", "stats_dtype"})


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("optreg_skipstep.optim"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
