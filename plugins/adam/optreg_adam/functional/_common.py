"""Helpers shared by the family's functional code: the skip gate, step counters, the fused kernel's reach.

Every per-tensor update in this package takes its step-dependent scalars (bias corrections, the
LR, the ``step_factor`` gate) as 0-dim tensors. That keeps three promises at once:

* ``step_factor`` gating needs no host sync (a skipped step multiplies the scalars by 0 instead
  of branching on a tensor value);
* ``step_factor = 1`` equals the plain step bit for bit (the plain step runs the very same tensor
  ops; multiplying by 1.0 is exact in IEEE arithmetic);
* a ``torch.compile``'d step does not recompile when the LR or the step changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from optreg.optim import is_sharded

__all__ = ["advance_steps", "gate", "scalar_vector", "signed", "supports_fused_adam"]


def gate(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` where ``keep`` (a 0-dim bool tensor, "the step is taken") is true, zeros where the step is
    skipped, so NaN/inf cannot leak into the state.

    :func:`optreg.optim.gate_grad` with the condition computed once per group (a compiled kernel
    receives it as an argument), and for any value the kernels must zero, not only gradients.
    """
    if keep is None:
        return x
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def signed(grad: torch.Tensor, maximize: bool) -> torch.Tensor:
    """The gradient to descend along: ``-grad`` when maximizing."""
    return torch.neg(grad) if maximize else grad


def advance_steps(steps: Sequence[torch.Tensor], step_factor: torch.Tensor | None) -> None:
    """Add 1 (or ``step_factor``: 0 on a skipped step) to every step counter, one foreach op per device."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for s in steps:
        by_device.setdefault(s.device, []).append(s)
    for device, group in by_device.items():
        if step_factor is None:
            torch._foreach_add_(group, 1.0)
        else:
            torch._foreach_add_(group, step_factor.to(device=device, dtype=group[0].dtype))


def scalar_vector(steps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The step counters of a group as one float32 vector (so bias corrections cost a few ops per group)."""
    if len(steps) == 1:
        return steps[0].reshape(1).float()
    return torch.stack(list(steps)).float()


_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supports_fused_adam(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel (``torch._fused_adam(w)_``) can update these tensors.

    Not sharded ones (DTensor): the kernel refuses a mix of DTensors and the plain step counters
    ("got mixed torch.Tensor and DTensor"); they take the per-tensor path.
    """
    if not hasattr(torch, "_fused_adamw_"):
        return False
    if any(is_sharded(t) for t in tensors):
        return False
    for t in tensors:
        if t.device.type not in ("cpu", "cuda", "mps", "xpu") or t.dtype not in _FUSED_DTYPES or t.is_sparse:
            return False
        if t.is_complex():
            return False
    return True
