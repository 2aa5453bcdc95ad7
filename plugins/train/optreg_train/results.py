"""What a run gives back: :class:`RunResult` (also written to ``summary.json``). A leaf module: the loop,
the report and the plots all read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

from optreg.runspec import RunSpec
from optreg_train.metrics import json_number

__all__ = ["TRAIN_LOSS_WINDOW", "RunResult", "Status"]

Status = Literal["finished", "stopped", "interrupted", "diverged"]
#: Final train loss: the mean of this many last steps (one step's loss is noisy).
TRAIN_LOSS_WINDOW = 10


@attrs.define
class RunResult:
    """The outcome of one run (also written to ``summary.json``)."""

    name: str
    out: Path
    spec: RunSpec
    status: Status
    step: int
    steps: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    wall_time: float
    tokens: int
    tokens_per_second: float
    peak_memory: int | None
    peak_memory_kind: str
    state_bytes: int
    n_params: int
    skipped_steps: int | None
    unit: str
    data: str
    history: list[dict[str, Any]] = attrs.field(factory=list, repr=False)
    group_names: list[str] = attrs.field(factory=list)
    #: Final held-out accuracy of a classification task (``mlp``); None for the others.
    val_accuracy: float | None = None
    #: ``first``, ``peak`` and ``last`` effective LR of the main param group, where the optimizer sets its
    #: own step size (schedule-free warmup, Prodigy's and D-Adaptation's ``d``); None otherwise.
    effective_lr: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in attrs.fields(type(self)):
            if f.name in ("history", "spec"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, float):
                value = json_number(value)
            out[f.name] = value
        out["optimizer"] = self.spec.optimizer.TYPE
        out["scheduler"] = self.spec.scheduler.TYPE
        return out
