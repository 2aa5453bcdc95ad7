"""optreg-parallel: DDP, FSDP2, HSDP, tensor parallel and FSDP + TP strategies on torch.distributed.

Importing the package imports no torch (the registry loads ``optreg_parallel.plugin`` for every
``optreg`` command); the strategy classes load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_parallel.specs import ALL_SPECS, DDPSpec, FSDPSpec, FSDPTPSpec, HSDPSpec, TPSpec

__all__ = ["ALL_SPECS", "DDPSpec", "DDPStrategy", "FSDPSpec", "FSDPStrategy", "FSDPTPSpec", "HSDPSpec", "TPSpec",
           "TPStrategy"]

#: Names that import torch, served on first use (the registry imports this package for every command).
_SERVED = dict.fromkeys(("DDPStrategy", "FSDPStrategy", "TPStrategy"), "optreg_parallel.strategies")
__getattr__, __dir__ = lazy_exports(__name__, _SERVED, globals())
