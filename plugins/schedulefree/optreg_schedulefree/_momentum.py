"""Which option of a base optimizer is its momentum (no torch: the spec checks and the wrapper share it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["inner_momentum"]


def inner_momentum(options: Mapping[str, Any]) -> tuple[str, float] | None:
    """``(name, value)`` of a nonzero momentum among an optimizer's options (``betas`` means betas[0]), else None."""
    for name in ("momentum", "beta1", "beta"):
        value = options.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return name, float(value)
    betas = options.get("betas")
    if isinstance(betas, (tuple, list)) and betas and isinstance(betas[0], (int, float)) and betas[0] > 0:
        return "betas", float(betas[0])
    return None
