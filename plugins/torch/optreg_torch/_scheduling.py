"""The LR scheduler of the momentum-cycling schedules (one-cycle, cyclic): optreg's ``ScheduledLR`` that also
sets each group's momentum, as torch's ``cycle_momentum`` does.

Both the LR and the momentum are functions of ``current``, the scheduler's only state, so a resumed
run sets both exactly as an unbroken one.
"""

from __future__ import annotations

from typing import Any

import torch

from optreg import SpecError
from optreg.scheduling import ScheduledLR

__all__ = ["MomentumCyclingLR"]


class MomentumCyclingLR(ScheduledLR):
    """``ScheduledLR`` that also sets every group's ``momentum`` (or ``betas[0]``) to ``schedule.momentum_at(current)``.

    As torch: an optimizer whose defaults have ``betas`` gets beta1 cycled, else one with
    ``momentum`` gets that; one with neither is refused (set ``cycle_momentum = false``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Any, *, t_max: int | None = None) -> None:
        defaults = getattr(optimizer, "defaults", {})
        if "betas" not in defaults and "momentum" not in defaults:
            raise SpecError(
                f"schedule {schedule.TYPE!r} cycles the momentum, but {type(optimizer).__name__} has neither "
                "`momentum` nor `betas`: set cycle_momentum = false",
                path="$.cycle_momentum",
            )
        self.use_beta1 = "betas" in defaults
        super().__init__(optimizer, schedule, t_max=t_max)

    def step(self, epoch: int | None = None, *, tokens: int | None = None) -> None:  # type: ignore[override]
        super().step(epoch, tokens=tokens)
        self._apply_momentum()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._apply_momentum()

    def momentum(self) -> float:
        """The momentum of every group at ``current``."""
        return self.schedule.momentum_at(self.current, self.t_max)

    def _apply_momentum(self) -> None:
        value = self.momentum()
        for group in self.optimizer.param_groups:
            if self.use_beta1:
                group["betas"] = (value, *group["betas"][1:])
            else:
                group["momentum"] = value
