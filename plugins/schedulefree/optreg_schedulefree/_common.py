"""Small helpers shared by the schedule-free optimizers and the wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "Scratch",
    "coef",
    "group_device",
    "host_scalars",
    "pick_foreach",
]


def group_device(group: Mapping[str, Any]) -> torch.device:
    return next((p.device for p in group["params"]), torch.device("cpu"))


def pick_foreach(foreach: bool | None, params: list[torch.Tensor]) -> bool:
    """``foreach=None`` picks the multi-tensor path on accelerators and the per-tensor loop on CPU.

    On CPU the loop is faster than ``torch._foreach_*`` (measured on the project's machines).
    """
    if foreach is not None:
        return bool(foreach)
    return bool(params) and all(p.device.type not in ("cpu", "meta") for p in params)


#: Read step coefficients to Python floats on CPU (see ``coef``). Tests turn it off to run the
#: accelerator code path (0-dim tensor coefficients) on CPU.
HOST_SCALARS_ON_CPU = True


def host_scalars(device: torch.device) -> bool:
    """Whether coefficients for tensors on ``device`` are Python floats (CPU) or 0-dim tensors."""
    return HOST_SCALARS_ON_CPU and device.type == "cpu"


def coef(value: torch.Tensor, device: torch.device) -> float | torch.Tensor:
    """A coefficient for elementwise ops on ``device``: a Python float on CPU, the 0-dim tensor elsewhere.

    On CPU reading a scalar waits for nothing, and the scalar overloads run in one pass without
    temporaries; on accelerators the tensor keeps the step free of host syncs. A plain step and one
    with ``step_factor = 1`` take the same path, so they agree bit for bit.
    """
    return float(value) if host_scalars(device) else value


class Scratch:
    """Reusable CPU work buffers (a fresh large CPU tensor per op costs page faults)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, like: torch.Tensor) -> torch.Tensor:
        if like.device.type != "cpu":
            return torch.empty_like(like, memory_format=torch.contiguous_format)
        key = (like.device, like.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < like.numel():
            buffer = self._buffers[key] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return buffer[: like.numel()].view(like.shape)
