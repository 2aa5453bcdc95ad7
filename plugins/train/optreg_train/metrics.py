"""Measurements of a run: optimizer state bytes, peak memory, the metrics.jsonl file."""

from __future__ import annotations

import contextlib
import json
import math
import re
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from optreg.memory import format_bytes as optreg_format_bytes
from optreg.memory import measured_state_bytes

__all__ = [
    "PeakMemory",
    "format_bytes",
    "optimizer_state_bytes",
    "read_metrics",
]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (momentum buffers, second moments, counters...).

    Walks the whole ``state_dict()``, so wrappers that keep an inner optimizer's state
    or statistics of their own (skip-step) and scalars kept as tensors in the param
    groups (schedule-free) are counted; the parameters themselves are not; a sharded
    tensor counts this rank's shard (:func:`optreg.memory.measured_state_bytes`).
    """
    return measured_state_bytes(optimizer)


def format_bytes(n: float | None) -> str:
    """:func:`optreg.memory.format_bytes` with a no-break space: tables never split the number from its unit."""
    return optreg_format_bytes(n).replace(" ", "\u00a0")


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
