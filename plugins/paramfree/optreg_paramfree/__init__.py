"""optreg-paramfree: learning-rate-free optimizers for optreg.

Prodigy, D-Adaptation (AdamW, SGD, Lion), DoG, DoWG, COCOB, Mechanic (a wrapper around any
registered optimizer) and MoMo / MoMo-Adam. By name they come from the registry:
``optreg.build_optimizer({"type": "prodigy"}, model)``; the classes are importable too
(``from optreg_paramfree import Prodigy``, or from ``optreg_paramfree.optim``).

Importing this package registers nothing and imports no torch: the optreg core loads
``optreg_paramfree.plugin`` (which imports ``specs`` only) through the ``optreg`` entry point group.
The optimizer classes load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_paramfree import specs as _specs
from optreg_paramfree.specs import *  # noqa: F403 - the spec classes, as the specs module lists them

__version__ = "0.1.0"

#: The optimizer classes, exported lazily (they import torch): name -> module under ``optim``.
_OPTIMIZERS = {
    "COCOB": "cocob",
    "DAdaptAdamW": "dadapt",
    "DAdaptLion": "dadapt",
    "DAdaptSGD": "dadapt",
    "DoG": "dog",
    "DoWG": "dog",
    "Mechanic": "mechanic",
    "Momo": "momo",
    "MomoAdam": "momo",
    "Prodigy": "prodigy",
}

__all__ = [*_specs.__all__, *_OPTIMIZERS]  # the optimizer classes load lazily

#: Names that import torch, served on first use (the registry imports this package for every command).
_SERVED = {name: f"optreg_paramfree.optim.{module}" for name, module in _OPTIMIZERS.items()}
__getattr__, __dir__ = lazy_exports(__name__, _SERVED, globals())
