"""The gradient norm's sum of squares through a small C kernel (``sum_of_squares.c``, built by :mod:`optreg.native`).

The norm is the one extra read a skip-step optimizer adds to its inner step (4 of AdamW's 28 bytes per
parameter): torch's CPU ``vector_norm`` reads it at ~30 GB/s on one thread, the kernel at memory bandwidth
on every thread, and accumulates in float64.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("sum_of_squares.c")


def _kernel():
    from optreg.native import load_function

    p = ctypes.c_void_p
    return load_function(_SOURCE, "sum_of_squares_f32", [p, p, ctypes.c_int64, p, ctypes.c_int])


def native_applies(grad: torch.Tensor) -> bool:
    """A dense, contiguous float32 CPU tensor (not a DTensor: its norm is reduced across shards by torch)."""
    from optreg.optim import is_sharded

    return not is_sharded(grad) and grad.layout == torch.strided and grad.device.type == "cpu" \
        and grad.dtype == torch.float32 and grad.is_contiguous()


def sum_of_squares(grads: list[torch.Tensor]) -> torch.Tensor | None:
    """``sum(g.double().square().sum() for g in grads)`` as a 0-dim float64 CPU tensor, in one pass over each
    gradient; ``None`` where the kernel does not build here (the caller uses torch's norm)."""
    from optreg.native import pointers, sizes

    kernel = _kernel()
    if kernel is None:
        return None
    out = torch.zeros((), dtype=torch.float64)
    kernel(pointers(grads), sizes(grads), len(grads), out.data_ptr(), torch.get_num_threads())
    return out
