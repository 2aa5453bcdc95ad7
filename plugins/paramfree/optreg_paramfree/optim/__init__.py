"""The optimizers of optreg-paramfree, one module per algorithm.

The family base (the scope of param groups sharing an estimate, the Adam-style coefficients, the
reductions) is private, in ``_common``.
"""

from __future__ import annotations

from optreg_paramfree.optim.cocob import COCOB
from optreg_paramfree.optim.dadapt import DAdaptAdamW, DAdaptLion, DAdaptSGD
from optreg_paramfree.optim.dog import DoG, DoWG
from optreg_paramfree.optim.mechanic import Mechanic
from optreg_paramfree.optim.momo import Momo, MomoAdam
from optreg_paramfree.optim.prodigy import Prodigy

__all__ = [
    "COCOB",
    "DAdaptAdamW",
    "DAdaptLion",
    "DAdaptSGD",
    "DoG",
    "DoWG",
    "Mechanic",
    "Momo",
    "MomoAdam",
    "Prodigy",
]
