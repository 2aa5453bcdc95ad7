"""The effective LR: the step size an optimizer takes where it scales the scheduled LR itself.

A schedule sets each param group's ``lr``; some optimizers then apply their own factor: a
schedule-free optimizer's ``warmup_steps`` (and RAdam's rectification), Prodigy's and
D-Adaptation's ``d`` (the step size is ``lr * d``), DoG's ``eta``, Mechanic's learned scale. An
optimizer says so through two optional methods, looked up on it and then on the optimizers it wraps
(``.inner``: skip-step, the schedule-free wrapper):

- ``effective_lrs() -> list[float]``: each param group's step size at its last step;
- ``lr_factors_at(step) -> list[float]``: each group's factor on the scheduled LR at its ``step``-th step
  (0-based), for an optimizer whose factor is known before training (a warmup, a rectification).

``optreg train`` records the first in metrics.jsonl (``effective_lr``, ``effective_lrs``), its tables and
``lr.png``; ``optreg lr`` shows the second, and says when the effective LR can only be known by training.
"""

from __future__ import annotations

from typing import Any

__all__ = ["effective_lrs", "lr_controller", "lr_factors_at"]

#: How many wrappers deep to look (a wrapper of a wrapper of ...).
_DEPTH = 8


def lr_controller(optimizer: Any) -> Any | None:
    """The optimizer, or the first one it wraps, that reports an effective LR (``effective_lrs``)."""
    for _ in range(_DEPTH):
        if optimizer is None:
            return None
        if callable(getattr(optimizer, "effective_lrs", None)):
            return optimizer
        optimizer = getattr(optimizer, "inner", None)
    return None


def effective_lrs(optimizer: Any) -> list[float] | None:
    """Every param group's effective LR at the last step, or ``None`` when the optimizer does not report one."""
    owner = lr_controller(optimizer)
    if owner is None:
        return None
    values = [float(v) for v in owner.effective_lrs()]
    return values if len(values) == len(optimizer.param_groups) else None


def lr_factors_at(optimizer: Any, step: int) -> list[float] | None:
    """Every group's factor on its scheduled LR at its ``step``-th step (0-based), when known before training."""
    owner = lr_controller(optimizer)
    method = getattr(owner, "lr_factors_at", None)
    if not callable(method):
        return None
    values = [float(v) for v in method(step)]
    return values if len(values) == len(optimizer.param_groups) else None
