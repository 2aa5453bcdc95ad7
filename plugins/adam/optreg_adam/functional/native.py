"""AdamW with bfloat16 state in one hand-written C pass (``adamw_bf16.c``), built once per machine.

Measured on a 2-core AVX-512 CPU, 10 x 1024^2 params: 1.0x torch's fused AdamW's time per byte touched
(20 bytes per element against fused AdamW's 28), where inductor's compiled step of the same math took
3.0x (its bit casts go through memory, its hash and rounding do not vectorise as well) and the eager
step 45x. See :mod:`optreg.native` for how it is built and when it is not.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

__all__ = ["native_adamw_bf16", "native_applies", "native_available"]

_SOURCE = Path(__file__).with_name("adamw_bf16.c")
_P = ctypes.c_void_p


def _kernel():
    from optreg.native import load_function

    return load_function(_SOURCE, "adamw_bf16_sr", [
        _P, _P, _P, _P, _P, ctypes.c_int64, _P, _P, _P, _P, ctypes.c_double, _P, _P, _P, _P, ctypes.c_double,
        ctypes.c_int, ctypes.c_int, ctypes.c_int,
    ])


def native_available() -> bool:
    """Whether the C kernel is built (or builds now) and loads here (see :mod:`optreg.native`)."""
    return _kernel() is not None


def native_applies(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> bool:
    """Whether the C kernel can step these tensors: CPU, contiguous, float32 param and grad, bfloat16 state."""
    from optreg.optim import is_sharded

    tensors = (param, grad, exp_avg, exp_avg_sq)
    return (
        not any(is_sharded(t) for t in tensors)  # a DTensor's data is its local shard's: the torch path steps it
        and param.device.type == "cpu"
        and param.dtype == grad.dtype == torch.float32
        and exp_avg.dtype == exp_avg_sq.dtype == torch.bfloat16
        and all(t.is_contiguous() and t.numel() == param.numel() and t.device == param.device for t in tensors)
    )


def _scalar(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a 0-dim CPU tensor of ``dtype`` the kernel can read through a pointer (a view when it is one)."""
    return t if t.dtype == dtype and t.device.type == "cpu" else t.to("cpu", dtype)


def native_adamw_bf16(
    params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor], keep: torch.Tensor | None, decay: torch.Tensor, w1: torch.Tensor,
    b2: torch.Tensor, w2: float, inv_bc2_sqrt: torch.Tensor, neg_step: torch.Tensor, eps: torch.Tensor, l2: float,
    maximize: bool, decoupled: bool, seeds: torch.Tensor,
) -> bool:
    """One AdamW step with stochastic rounding of the bf16 state over a group's tensors, in place, in one call of
    the C kernel (one parallel region over all their elements).

    Arguments as :func:`optreg_adam.functional.adam._adam_tensor_lowp` (``sr`` on, no ``max_exp_avg_sq``), but
    ``inv_bc2_sqrt``, ``neg_step`` and ``seeds`` (int32) are vectors with one entry per tensor. Every tensor must
    pass :func:`native_applies`. Returns ``False`` (and changes nothing) where the kernel is not available here:
    the caller steps on the torch path.
    """
    from optreg.native import pointers, sizes

    kernel = _kernel()
    if kernel is None:
        return False
    if not params:
        return True
    shared = [_scalar(t, torch.float64) for t in (decay, w1, b2, eps)]
    vectors = [t.to("cpu", torch.float64).contiguous() for t in (inv_bc2_sqrt, neg_step)]
    seeds = seeds.to("cpu", torch.int32).contiguous()
    keep = None if keep is None else _scalar(keep, torch.bool)
    kernel(pointers(params), pointers(grads), pointers(exp_avgs), pointers(exp_avg_sqs), sizes(params), len(params),
           None if keep is None else keep.data_ptr(), shared[0].data_ptr(), shared[1].data_ptr(),
           shared[2].data_ptr(), w2, vectors[0].data_ptr(), vectors[1].data_ptr(), shared[3].data_ptr(),
           seeds.data_ptr(), 0.0 if decoupled else l2, int(maximize), int(decoupled), torch.get_num_threads())
    # Written behind torch's back: bump the version counters as an in-place torch op would, so autograd still
    # refuses a backward through a graph that saved these tensors before the step.
    for tensor in (*params, *exp_avgs, *exp_avg_sqs):
        torch.autograd.graph.increment_version(tensor)
    return True
