"""Seeded noise for a step: each (seed, step, parameter index) draws its own stream.

Nothing to checkpoint but the step counters: a resumed run draws what the unbroken run drew, and two
optimizers with the same seed draw the same noise whatever else used torch's global generator.
"""

from __future__ import annotations

import torch

__all__ = ["noise_like", "stream_seed"]

_MASK = (1 << 63) - 1


def stream_seed(seed: int, step: int, index: int) -> int:
    """The seed of parameter ``index``'s stream at ``step`` (1-based), a 63-bit mix of the three (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    return x & _MASK


def noise_like(like: torch.Tensor, seed: int, step: int, index: int, *, kind: str = "gaussian") -> torch.Tensor:
    """Standard normal (or Rademacher +-1) noise shaped like ``like``, in its dtype, from the stream
    ``(seed, step, index)``. Drawn in float32 on CPU (float64 for float64), so every device draws the same values."""
    generator = torch.Generator().manual_seed(stream_seed(seed, step, index))
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    if kind == "rademacher":
        noise = torch.randint(0, 2, like.shape, generator=generator).to(dtype).mul_(2).sub_(1)
    else:
        noise = torch.randn(like.shape, generator=generator, dtype=dtype)
    return noise.to(device=like.device, dtype=like.dtype)
