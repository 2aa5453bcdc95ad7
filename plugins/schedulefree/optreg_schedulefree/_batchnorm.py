"""Re-estimate BatchNorm statistics at the averaged point ``x`` of a schedule-free optimizer.

During training the BatchNorm running statistics follow the training point
``y``; the model is evaluated at ``x``, whose activations differ. Like
``torch.optim.swa_utils.update_bn`` for weight averaging, this recomputes them
at ``x`` with a pass over some training batches.

Public as ``optreg_schedulefree.reestimate_batchnorm`` (and ``optreg_schedulefree.optim.reestimate_batchnorm``);
this module is private.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["reestimate_batchnorm"]


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module,
    optimizer: Any,
    batches: Iterable[Any],
    *,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    num_batches: int | None = None,
) -> int:
    """Put ``optimizer`` in eval mode (params at ``x``) and recompute every BatchNorm's running statistics.

    ``batches`` are fed as ``model(batch)`` (or ``forward(model, batch)``), with the
    model in train mode and the statistics as an exact average over the batches
    (BatchNorm momentum ``None``). The model's own train/eval flag and the
    BatchNorm momenta are restored; the optimizer stays in eval mode, ready for
    evaluation (call ``optimizer.train()`` before the next training step).
    Returns the number of batches used.
    """
    optimizer.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    used = 0
    try:
        for batch in batches:
            if num_batches is not None and used >= num_batches:
                break
            if forward is not None:
                forward(model, batch)
            else:
                model(batch)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used
