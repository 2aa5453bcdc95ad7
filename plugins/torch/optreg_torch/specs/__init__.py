"""The spec classes of optreg-torch: what an ``[optimizer]`` or ``[scheduler]`` table may say.

- :mod:`~optreg_torch.specs.optimizers`: one spec per ``torch.optim`` optimizer that optreg does not
  register elsewhere (``sgd`` is the core's, ``adam`` / ``adamw`` are optreg-adam's); each builds
  torch's class with its options.
- :mod:`~optreg_torch.specs.schedulers`: torch's LR schedulers that are a function of the step
  count, as stateless closed forms (``cosine`` and ``linear`` are aliases of two of them).

No torch import at module load: the registry imports this package for every ``optreg`` command.
"""

from __future__ import annotations

from optreg_torch.specs.optimizers import (
    OPTIMIZER_SPECS,
    AdadeltaSpec,
    AdafactorSpec,
    AdagradSpec,
    AdamaxSpec,
    ASGDSpec,
    LBFGSSpec,
    NAdamSpec,
    RAdamSpec,
    RMSpropSpec,
    RpropSpec,
    SparseAdamSpec,
    TorchOptimizerSpec,
)
from optreg_torch.specs.schedulers import (
    SCHEDULER_SPECS,
    CosineAnnealing,
    CosineWarmRestarts,
    Cyclic,
    LinearRamp,
    MultiStep,
    OneCycle,
    Polynomial,
    Step,
    TorchSchedule,
)

__all__ = [
    "ALL_SPECS",
    "ASGDSpec",
    "AdadeltaSpec",
    "AdafactorSpec",
    "AdagradSpec",
    "AdamaxSpec",
    "CosineAnnealing",
    "CosineWarmRestarts",
    "Cyclic",
    "LBFGSSpec",
    "LinearRamp",
    "MultiStep",
    "NAdamSpec",
    "OPTIMIZER_SPECS",
    "OneCycle",
    "Polynomial",
    "RAdamSpec",
    "RMSpropSpec",
    "RpropSpec",
    "SCHEDULER_SPECS",
    "SparseAdamSpec",
    "Step",
    "TorchOptimizerSpec",
    "TorchSchedule",
]

#: Every spec class of this family; plugin.py registers each with the hook of its kind.
ALL_SPECS: tuple[type, ...] = (*OPTIMIZER_SPECS, *SCHEDULER_SPECS)
