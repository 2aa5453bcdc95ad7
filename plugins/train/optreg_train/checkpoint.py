"""Checkpoints of ``optreg train``: model, optimizer, scheduler, RNG and progress in one file.

The file holds tensors, numbers, strings and containers only, so it loads with
``torch.load(path, weights_only=True)``. It is written to a temporary file and
renamed, so an interrupted save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT", "FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) atomically to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {path.parent} (expected {path.name})")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an optreg train checkpoint of format {FORMAT}")
    return payload
