"""optreg-contrib: optax.contrib's remaining algorithms for optreg.

Optimizers (:mod:`optreg_contrib.optim`): :class:`SAM` (and adaptive SAM), :class:`Sophia`
(Sophia-H), :class:`GaLore`, :class:`MADGRAD`, :class:`DPSGD` and :class:`SplitComplex`;
:func:`per_sample_grads` computes the per-sample gradients DP-SGD needs (``torch.func``).

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_contrib.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point group.
The optimizer classes load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_contrib.specs import (
    ALL_SPECS,
    DPSGDSpec,
    GaLoreSpec,
    MADGRADSpec,
    SAMSpec,
    SophiaSpec,
    SplitComplexSpec,
)

__all__ = [
    "ALL_SPECS",
    "DPSGD",
    "DPSGDSpec",
    "GaLore",
    "GaLoreSpec",
    "MADGRAD",
    "MADGRADSpec",
    "SAM",
    "SAMSpec",
    "Sophia",
    "SophiaSpec",
    "SplitComplex",
    "SplitComplexSpec",
    "per_sample_grads",
]
__version__ = "0.1.0"

_SERVED = dict.fromkeys(
    ("DPSGD", "GaLore", "MADGRAD", "SAM", "Sophia", "SplitComplex", "per_sample_grads"), "optreg_contrib.optim"
)
#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, _SERVED, globals())
