"""Shared helpers of the Adam family: scalar tensors, step gating, stochastic rounding.

Every per-tensor update in this package takes its step-dependent scalars (bias
corrections, the LR, the step_factor gate) as 0-dim tensors. That keeps three
promises at once:

* ``step_factor`` gating needs no host sync (a skipped step multiplies the
  scalars by 0 instead of branching on a tensor value);
* ``step_factor = 1`` equals the plain step bit for bit (the plain step runs the
  very same tensor ops; multiplying by 1.0 is exact in IEEE arithmetic);
* a ``torch.compile``'d step does not recompile when the LR or the step changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "as_scalar",
    "gate",
    "real_view",
    "round_to_bf16_stochastic",
    "supports_fused_adam",
]

Number = float | torch.Tensor


def as_scalar(value: Number, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``value`` as a 0-dim tensor on ``device`` (a tensor is moved without a host sync)."""
    if isinstance(value, torch.Tensor):
        return value.reshape(()).to(device=device, dtype=dtype, non_blocking=True)
    return torch.tensor(float(value), device=device, dtype=dtype)


def real_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or for a complex tensor its real view ``(..., 2)`` sharing its storage.

    The family steps a complex param as its real and imaginary parts, two independent real
    coordinates (optax's ``split_real_and_imaginary``; what ``torch.optim.Adam`` does).
    """
    return torch.view_as_real(t) if t.is_complex() else t


def gate(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` where ``keep`` (a 0-dim bool tensor) is true, zeros otherwise (NaN/inf cannot leak through)."""
    if keep is None:
        return x
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def scalar_vectors(steps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The step counters of a group as one float32 vector (so bias corrections cost a few ops per group)."""
    if len(steps) == 1:
        return steps[0].reshape(1).float()
    return torch.stack(list(steps)).float()


_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supports_fused_adam(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel (``torch._fused_adam(w)_``) can update these tensors."""
    if not hasattr(torch, "_fused_adamw_"):
        return False
    for t in tensors:
        if t.device.type not in ("cpu", "cuda", "mps", "xpu") or t.dtype not in _FUSED_DTYPES or t.is_sparse:
            return False
        if t.is_complex():
            return False
    return True


# ---------------------------------------------------------------- stochastic rounding to bfloat16

_GOLDEN = 0x9E3779B1 - (1 << 32)  # as a signed int32
_MIX1 = 0x7FEB352D
_MIX2 = 0x846CA68B - (1 << 32)
_INDEX_CACHE: dict[torch.device, torch.Tensor] = {}


def _indices(n: int, device: torch.device) -> torch.Tensor:
    cached = _INDEX_CACHE.get(device)
    if cached is None or cached.numel() < n:
        size = max(n, 2 * (cached.numel() if cached is not None else 0), 1 << 16)
        cached = torch.arange(size, dtype=torch.int32, device=device)
        _INDEX_CACHE[device] = cached
    return cached[:n]


def hash_bits(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """32 pseudo-random bits per element (as int32) from (element index, seed): a counter-based hash.

    Deterministic (a resumed run draws the same bits), free of generator state, and the same in
    eager and compiled code. Integer arithmetic wraps modulo 2**32.
    """
    x = index * _GOLDEN + seed
    x = x * _MIX1
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _MIX2
    return x ^ ((x >> 16) & 0xFFFF)


def round_to_bf16_stochastic(
    x: torch.Tensor, seed: torch.Tensor | None = None, index: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round float32 ``x`` to bfloat16, up or down with probability given by the distance (unbiased).

    ``E[result] = x`` exactly (for finite ``x`` away from the overflow threshold);
    the error is below one bf16 ulp (``2**-7 |x|``), with variance at most ``ulp**2 / 4``.
    The 16 random bits per element are ``noise`` (int32 in [0, 65536)) or the low half of
    :func:`hash_bits` of (``index``, ``seed``); ``seed`` is an int32 0-dim tensor.
    """
    x = x.float()
    if noise is None:
        if index is None:  # inside a compiled graph this is an iota, fused into the kernel (no memory traffic)
            index = torch.arange(x.numel(), dtype=torch.int32, device=x.device).view(x.shape)
        noise = hash_bits(index, seed) & 0xFFFF
    bits = x.view(torch.int32)
    rounded = (bits + noise) & -65536  # add 16 random low bits, then truncate: round up w.p. frac
    # (Exact conversion: the low half is 0. Shifting the int pattern into an int16 bfloat16 view is
    # cheaper in eager but stops inductor from vectorizing the compiled step, so it is not used.)
    return rounded.view(torch.float32).to(torch.bfloat16)


def seed_of(step: torch.Tensor, salt: int) -> torch.Tensor:
    """An int32 seed from the (float) step counter and a per-tensor salt, without a host sync."""
    return step.to(torch.int32) * 0x27D4EB2F + (salt & 0x7FFFFFFF)

