"""optreg-skipstep: skip an optimizer step when the loss or the gradient norm spikes, without a host sync.

Importing this package imports no torch: the optimizer classes and helpers load on first use
(``from optreg_skipstep import SkipStepOptimizer`` imports them then).
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
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

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_LAZY, "optreg_skipstep.optim"), globals())
