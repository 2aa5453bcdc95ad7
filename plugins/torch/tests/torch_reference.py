"""torch's own LR schedulers run step by step: the reference every schedule of optreg-torch is checked against."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

#: What the reference run records per step: the LR, and the momentum (SGD) or beta1 (Adam) of group 0.
Trace = list[tuple[float, float | None]]


def optimizer_pair(lr: float | list[float] = 1.0, *, kind: str = "sgd") -> tuple[torch.optim.Optimizer, ...]:
    """Two identical optimizers (one for torch's scheduler, one for optreg's), one group per LR."""
    lrs = lr if isinstance(lr, list) else [lr]

    def make() -> torch.optim.Optimizer:
        groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": value} for value in lrs]
        if kind == "adam":
            return torch.optim.Adam(groups, lr=lrs[0])
        if kind == "adagrad":
            return torch.optim.Adagrad(groups, lr=lrs[0])
        return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)

    return make(), make()


def momentum_of(group: dict[str, Any]) -> float | None:
    if "betas" in group:
        return float(group["betas"][0])
    return float(group["momentum"]) if "momentum" in group else None


def run(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int, *, tokens: int | None = None) -> list[Trace]:
    """The LR and momentum of every group before each of ``steps`` optimizer steps (what each step uses)."""
    seen: list[Trace] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            seen.append([(float(g["lr"]), momentum_of(g)) for g in optimizer.param_groups])
            optimizer.step()
            if tokens is None:
                scheduler.step()
            else:
                scheduler.step(tokens=tokens)
    return seen


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], steps: int, lr: float = 1.0) -> list[float]:
    """The LRs of torch's scheduler ``make(optimizer)`` over ``steps`` steps, for one group starting at ``lr``."""
    optimizer, _ = optimizer_pair(lr)
    return [trace[0][0] for trace in run(optimizer, make(optimizer), steps)]
