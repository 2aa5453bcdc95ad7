"""Unbiased stochastic rounding of float32 to bfloat16, with counter-based random bits (no generator state).

Used for ``state_dtype = "bfloat16"``: round-to-nearest would stall Adam's ``v`` (its per-step
change ``(1 - beta2) = 1e-3`` of itself is below half a bf16 ulp, ``2**-9``); stochastic rounding
keeps every stored value an unbiased estimate of the float32 recurrence.
"""

from __future__ import annotations

import torch

__all__ = ["hash_bits", "index_like", "round_to_bf16_stochastic", "seed_of"]

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


def index_like(t: torch.Tensor) -> torch.Tensor:
    """The int32 element index of every element of ``t`` (a view of a cached ``arange``)."""
    return _indices(t.numel(), t.device).view(t.shape)


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


def seed_of(step: torch.Tensor, salt: int | torch.Tensor) -> torch.Tensor:
    """An int32 seed from the (float) step counter and a per-tensor salt, without a host sync (elementwise for a
    vector of steps and an int32 tensor of salts)."""
    return step.to(torch.int32) * 0x27D4EB2F + (salt & 0x7FFFFFFF)
