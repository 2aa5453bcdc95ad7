"""optreg-torch: every ``torch.optim`` optimizer and the torch LR schedulers that fit optreg's model, by name.

The optimizers are torch's own classes, built with the options of a strict spec (checked against the
installed torch's signatures by the test suite); the schedulers are stateless closed forms of torch's
``StepLR``, ``MultiStepLR``, ``PolynomialLR``, ``OneCycleLR``, ``CyclicLR``,
``CosineAnnealingWarmRestarts``, ``CosineAnnealingLR`` and ``LinearLR``. Importing this package imports
no torch: the registry loads ``optreg_torch.plugin`` (which imports ``specs`` only).
"""

from __future__ import annotations

from optreg_torch.specs import ALL_SPECS

__all__ = ["ALL_SPECS"]
