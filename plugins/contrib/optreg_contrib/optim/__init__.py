"""The optimizers of optreg-contrib, one module per algorithm."""

from __future__ import annotations

from optreg_contrib.optim.dpsgd import DPSGD, per_sample_grads
from optreg_contrib.optim.galore import GaLore
from optreg_contrib.optim.madgrad import MADGRAD
from optreg_contrib.optim.sam import SAM
from optreg_contrib.optim.sophia import Sophia
from optreg_contrib.optim.split_complex import SplitComplex

__all__ = ["DPSGD", "MADGRAD", "SAM", "GaLore", "Sophia", "SplitComplex", "per_sample_grads"]
