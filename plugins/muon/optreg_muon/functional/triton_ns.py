"""Triton kernels for Newton-Schulz that exploit symmetry: only the upper triangle of tiles is computed.

Two of the three products of a Newton-Schulz step have symmetric results:
``A = X X^T`` and ``B = b A + c A A`` (``A`` is symmetric, so ``A A = A A^T``). Both are
"Gram" products ``C = alpha * Y Y^T (+ beta * Y)``, so one kernel serves both: each
program computes one tile ``(i, j)`` with ``j >= i`` and stores it at ``(i, j)`` and,
transposed, at ``(j, i)``. That halves the work of those two products. The third,
``a X + B X``, is a plain GEMM left to torch (cuBLAS on CUDA).

Triton is an optional dependency (``pip install 'optreg-muon[triton]'``). The kernels
run on CUDA, and on CPU tensors under ``TRITON_INTERPRET=1`` (slow; the tests use tiny
matrices). Kernels are defined on first use, so the interpreter flag is read then.
In the interpreter ``tl.dot`` on bf16 inputs is wrong, so tiles are upcast to fp32
there (and for fp32 inputs the product runs in IEEE fp32, not TF32).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

__all__ = ["TritonProducts", "available", "interpreting", "sym_gram", "unavailable_reason"]


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


@functools.cache
def _triton_import_error() -> str | None:
    try:
        import triton
        import triton.language  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return f"triton is not installed ({exc}); pip install 'optreg-muon[triton]'"
    return None


def unavailable_reason(device: torch.device) -> str:
    """Why the Triton kernels cannot run on ``device`` (empty when they can)."""
    error = _triton_import_error()
    if error:
        return error
    if device.type == "cuda":
        return ""
    if device.type == "cpu" and interpreting():
        return ""
    return f"the Triton Newton-Schulz kernels need a CUDA device (or TRITON_INTERPRET=1 on CPU), got {device}"


def available(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device``."""
    return not unavailable_reason(device)


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool) -> Any:
    """Define the kernels (``interpret`` is part of the cache key: triton reads the flag when decorating)."""
    import triton
    import triton.language as tl

    @triton.jit
    def sym_gram_kernel(
        Y,
        C,
        ADD,
        rows,
        inner,
        stride_yb,
        stride_yr,
        stride_yk,
        stride_cb,
        stride_cr,
        stride_cc,
        stride_ab,
        stride_ar,
        stride_ac,
        alpha,
        beta,
        HAS_ADD: tl.constexpr,
        BLOCK: tl.constexpr,
        BLOCK_K: tl.constexpr,
        UPCAST: tl.constexpr,
        IEEE: tl.constexpr,
    ):
        """C[b] = alpha * Y[b] @ Y[b]^T (+ beta * ADD[b]); only tiles (i, j) with j >= i are computed."""
        pid_i = tl.program_id(0)
        pid_j = tl.program_id(1)
        batch = tl.program_id(2)
        if pid_j < pid_i:
            return
        Y += batch.to(tl.int64) * stride_yb
        C += batch.to(tl.int64) * stride_cb
        offs_i = pid_i * BLOCK + tl.arange(0, BLOCK)
        offs_j = pid_j * BLOCK + tl.arange(0, BLOCK)
        offs_k = tl.arange(0, BLOCK_K)
        mask_i = offs_i < rows
        mask_j = offs_j < rows
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
        for k0 in range(0, inner, BLOCK_K):
            ks = k0 + offs_k
            mask_k = ks < inner
            left = tl.load(
                Y + offs_i[:, None] * stride_yr + ks[None, :] * stride_yk,
                mask=mask_i[:, None] & mask_k[None, :],
                other=0.0,
            )
            right = tl.load(
                Y + ks[:, None] * stride_yk + offs_j[None, :] * stride_yr,
                mask=mask_k[:, None] & mask_j[None, :],
                other=0.0,
            )
            if UPCAST:
                left = left.to(tl.float32)
                right = right.to(tl.float32)
            if IEEE:
                acc = tl.dot(left, right, acc, input_precision="ieee")
            else:
                acc = tl.dot(left, right, acc)
        acc = acc * alpha
        if HAS_ADD:
            ADD += batch.to(tl.int64) * stride_ab
            extra = tl.load(
                ADD + offs_i[:, None] * stride_ar + offs_j[None, :] * stride_ac,
                mask=mask_i[:, None] & mask_j[None, :],
                other=0.0,
            )
            acc += beta * extra.to(tl.float32)
        if pid_j == pid_i:  # make the diagonal tile exactly symmetric: its upper half, mirrored
            acc = tl.where(offs_i[:, None] <= offs_j[None, :], acc, tl.trans(acc))
        out = acc.to(C.dtype.element_ty)
        mask = mask_i[:, None] & mask_j[None, :]
        tl.store(C + offs_i[:, None] * stride_cr + offs_j[None, :] * stride_cc, out, mask=mask)
        if pid_j != pid_i:
            tl.store(
                C + offs_j[:, None] * stride_cr + offs_i[None, :] * stride_cc,
                tl.trans(out),
                mask=mask_j[:, None] & mask_i[None, :],
            )

    return sym_gram_kernel


def _block_sizes(rows: int, device: torch.device) -> tuple[int, int]:
    if device.type != "cuda":  # the interpreter: small tiles keep numpy's work small and test the edges
        return 16, 16
    return (64, 64) if rows <= 1024 else (128, 64)


def sym_gram(
    Y: torch.Tensor,
    *,
    alpha: float = 1.0,
    add: torch.Tensor | None = None,
    beta: float = 0.0,
    block: int | None = None,
    block_k: int | None = None,
) -> torch.Tensor:
    """``alpha * Y @ Y^T + beta * add`` for ``Y`` of shape ``(rows, inner)`` or ``(batch, rows, inner)``.

    ``add`` must be symmetric (the result is assumed symmetric; only its upper tiles are computed).
    """
    if Y.ndim not in (2, 3):
        raise ValueError(f"sym_gram takes a matrix or a batch of matrices, got shape {tuple(Y.shape)}")
    squeeze = Y.ndim == 2
    Y3 = Y.unsqueeze(0) if squeeze else Y
    batch, rows, inner = Y3.shape
    out = torch.empty((batch, rows, rows), dtype=Y.dtype, device=Y.device)
    if add is not None:
        add3 = add.unsqueeze(0) if add.ndim == 2 else add
        if add3.shape != out.shape:
            raise ValueError(f"add has shape {tuple(add.shape)}, expected {tuple(out.shape[-2:])}")
    else:
        add3 = out  # never read (HAS_ADD is off)
    default_block, default_k = _block_sizes(rows, Y.device)
    block = block or default_block
    block_k = block_k or default_k
    tiles = (rows + block - 1) // block
    interpret = interpreting()
    kernel = _kernels(interpret)
    kernel[(tiles, tiles, batch)](
        Y3,
        out,
        add3,
        rows,
        inner,
        Y3.stride(0),
        Y3.stride(1),
        Y3.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        add3.stride(0),
        add3.stride(1),
        add3.stride(2),
        float(alpha),
        float(beta),
        HAS_ADD=add is not None,
        BLOCK=block,
        BLOCK_K=block_k,
        UPCAST=interpret or Y.dtype == torch.float32,
        IEEE=Y.dtype == torch.float32,
    )
    return out.squeeze(0) if squeeze else out


class TritonProducts:
    """The products of a Newton-Schulz step with the symmetric Triton kernels (``a X + B X`` by torch)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.work_dtype = dtype

    def start(self, G: torch.Tensor) -> torch.Tensor:
        return G.to(self.dtype, copy=True)

    def finish(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(self.dtype)

    def normalize(self, X: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) if X.ndim == 3 else X.norm()
        return X.div_(norm.clamp(min=eps))

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        return sym_gram(X)

    def poly(self, A: torch.Tensor, b: float, c: float) -> torch.Tensor:
        return sym_gram(A, alpha=c, add=A, beta=b)

    def apply(self, X: torch.Tensor, B: torch.Tensor, a: float) -> torch.Tensor:
        fn = torch.addmm if X.ndim == 2 else torch.baddbmm
        return fn(X, B, X, beta=a)

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype)
