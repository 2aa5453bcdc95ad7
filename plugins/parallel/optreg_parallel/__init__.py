"""optreg-parallel: DDP, FSDP2, HSDP, tensor parallel and FSDP + TP strategies on torch.distributed.

Importing the package imports no torch (the registry loads ``optreg_parallel.plugin`` for every
``optreg`` command); the strategy classes load on first use.
"""

from __future__ import annotations

from typing import Any

from optreg_parallel.specs import ALL_SPECS, DDPSpec, FSDPSpec, FSDPTPSpec, HSDPSpec, TPSpec

__all__ = ["ALL_SPECS", "DDPSpec", "DDPStrategy", "FSDPSpec", "FSDPStrategy", "FSDPTPSpec", "HSDPSpec", "TPSpec",
           "TPStrategy"]


def __getattr__(name: str) -> Any:
    if name in ("DDPStrategy", "FSDPStrategy", "TPStrategy"):
        from optreg_parallel import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
