"""Measurements of a run: optimizer state bytes, peak memory, the metrics.jsonl file."""

from __future__ import annotations

import contextlib
import json
import math
import re
import resource
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PeakMemory",
    "format_bytes",
    "optimizer_state_bytes",
    "read_metrics",
    "tensor_bytes",
]


def tensor_bytes(obj: Any, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes held by the tensors in a nested structure (each storage counted once)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "meta":
            return 0
        try:
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without a storage
            key = (id(obj), obj.numel() * obj.element_size())
        if key in seen:
            return 0
        seen.add(key)
        return key[1] if key[0] else obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (momentum buffers, second moments, counters...).

    Walks the whole ``state_dict()``, so wrappers that keep an inner optimizer's state
    or statistics of their own (skip-step) and scalars kept as tensors in the param
    groups (schedule-free) are counted; the parameters themselves are not.
    """
    return tensor_bytes(optimizer.state_dict())


def format_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            # A no-break space: tables never split the number from its unit.
            return f"{n:.0f}\u00a0{unit}" if unit == "B" else f"{n:.1f}\u00a0{unit}"
        n /= 1024
    return f"{n:.1f}\u00a0GiB"  # pragma: no cover


class PeakMemory:
    """Peak memory of a run: CUDA's allocator peak on a GPU, the process's peak RSS on CPU.

    On Linux the RSS high-water mark is reset at the start of each run (``/proc/self/clear_refs``),
    so runs of one ``optreg compare`` are measured separately; it includes the Python
    interpreter and torch itself (a few hundred MiB).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "CUDA allocated" if device.type == "cuda" else "process RSS"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak then spans the process
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
            if match:
                return int(match.group(1)) * 1024
        except OSError:
            pass
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)


def read_metrics(path: Path, *, upto: int | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (only steps <= ``upto`` when given)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut short by a crash: everything after it is unreliable
        if upto is not None and record.get("step", 0) > upto:
            break
        records.append(record)
    return records


def json_number(value: float) -> float | None:
    """Finite floats as they are; nan and inf as None (JSON has neither)."""
    return value if math.isfinite(value) else None


def mean_last(values: Iterable[float], k: int) -> float:
    tail = list(values)[-k:]
    return sum(tail) / len(tail) if tail else math.nan
