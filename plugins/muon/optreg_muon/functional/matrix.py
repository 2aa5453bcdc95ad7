"""The math of the matrix updates around Newton-Schulz: views, row blocks, batching, LR ratios, the steps.

Everything here works on tensors and plain options; the optimizers in :mod:`optreg_muon.optim` hold the
state and call these. Functions ending in ``_`` update their tensor arguments in place. ``take`` is the
0-dim bool tensor "the step is taken" of a ``step_factor`` step (``None`` for a plain step): state and
parameters are then committed with :func:`optreg.optim.commit_`, so a skipped step changes nothing and
nothing waits on the device.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from optreg.optim import commit_, gate_grad
from optreg_muon.functional.newton_schulz import Coefficients, newton_schulz

__all__ = [
    "ADJUST_LR_RULES",
    "BATCH_MAX_ELEMENTS_PER_THREAD",
    "DionComm",
    "adjust_lr_ratio",
    "batch_blocks",
    "block_lr",
    "decay_and_apply_",
    "dion_floor",
    "dion_qr",
    "dion_signs",
    "dion_rank",
    "dion_update_",
    "ema_momentum_",
    "matrix_view",
    "normuon_normalize_",
    "orthogonalize",
    "row_blocks",
    "step_grad",
    "work_dtype",
]

#: ``adjust_lr`` values (see :func:`adjust_lr_ratio`).
ADJUST_LR_RULES = ("spectral_norm", "rms_norm", "match_rms_adamw", "none")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision of per-matrix arithmetic outside Newton-Schulz: float32, or the param's dtype if wider."""
    return torch.promote_types(dtype, torch.float32)


def adjust_lr_ratio(rule: str, rows: int, cols: int) -> float:
    """The factor on the LR of an orthogonalized ``rows x cols`` update.

    ``spectral_norm``: ``sqrt(max(1, rows/cols))`` (Keller Jordan's rule; torch's
    ``adjust_lr_fn=None``/``"original"``). ``rms_norm`` / ``match_rms_adamw``:
    ``0.2 * sqrt(max(rows, cols))`` so the update RMS matches AdamW's (Liu et al. 2025,
    "Muon is Scalable for LLM Training"). ``none``: 1.
    """
    if rule == "spectral_norm":
        return math.sqrt(max(1.0, rows / cols))
    if rule in ("rms_norm", "match_rms_adamw"):
        return 0.2 * math.sqrt(max(rows, cols))
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown adjust_lr rule {rule!r}")


def step_grad(g: torch.Tensor, step_factor: torch.Tensor | None, maximize: bool) -> torch.Tensor:
    """The gradient a step uses: zeros where a ``step_factor`` step is skipped, negated with ``maximize``."""
    g = gate_grad(g, step_factor)
    return -g if maximize else g


def matrix_view(t: torch.Tensor, flatten: bool) -> torch.Tensor:
    """``t`` as a matrix ``(rows, cols)`` or a batch ``(..., rows, cols)`` of matrices.

    3-D and larger tensors become ``(shape[0], prod(rest))`` with ``flatten``, else stay a batch.
    """
    if t.ndim <= 2:
        return t
    return t.reshape(t.shape[0], -1) if flatten else t


def row_blocks(view: torch.Tensor, split_sizes: Sequence[int], num_heads: int) -> list[torch.Tensor]:
    """The row blocks orthogonalized separately: ``split_sizes``, then ``num_heads`` per block.

    Each block is a matrix, or (with ``num_heads > 1``) a batch ``(num_heads, rows / num_heads, cols)``.
    """
    split_sizes = tuple(split_sizes or ())
    heads = int(num_heads or 1)
    if not split_sizes and heads == 1:
        return [view]
    if view.ndim != 2:
        raise ValueError("split_sizes / num_heads need 2-D (or flattened) parameters")
    parts = list(view.split(list(split_sizes), dim=0)) if split_sizes else [view]
    if heads > 1:
        parts = [part.reshape(heads, part.shape[0] // heads, part.shape[1]) for part in parts]
    return parts


#: On CPU, blocks of one shape share a batched Newton-Schulz call only up to this many elements per block and
#: torch thread (:func:`batch_blocks`); larger blocks get a call each. Batching pays while a block's products
#: are too short to keep the threads busy: a batched product hands each thread whole matrices, where one
#: block's product is split between the threads and waits for all of them at its end. Above that one block at
#: a time keeps its working set in cache, and the halved symmetric products (``SYMMETRIC_MIN_SIDE``) pay more
#: on one matrix than on a batch. The bound grows with the threads as that split costs more. Measured on a
#: 2-core AMD EPYC with native bf16 (``bench/muon_step.py``, default step, batched / one call per matrix):
#: 1 thread (CPU time, four runs) 0.86-0.90 at 256x256, 0.77-0.83 at 128x1024, 1.02-1.07 at 384x384,
#: 1.09-1.13 at 512x512, 1.06-1.09 at 1024x1024; 2 threads (wall time, five runs) 0.74-0.88 at 256x1024,
#: 0.85-1.03 at 512x512, 1.01-1.08 at 1024x1024, 1.07-1.11 at 1024x4096. When other processes compete for
#: the cores batching wins at every size (``foreach = true`` batches whatever the size; docs/muon.md).
BATCH_MAX_ELEMENTS_PER_THREAD = 2**17


def batch_blocks(shape: Sequence[int], device: torch.device) -> bool:
    """Whether blocks of ``shape`` (the last two dims) on ``device`` are batched with others of their shape.

    Always off CPU (a batched product saves kernel launches); on CPU up to
    :data:`BATCH_MAX_ELEMENTS_PER_THREAD` elements per block and ``torch.get_num_threads()`` thread (with one
    thread 256x256 and 128x1024 are batched, 384x384 is not; with two 512x512 is, 1024x1024 is not).
    """
    if device.type != "cpu":
        return True
    rows, cols = shape[-2:]
    return rows * cols <= BATCH_MAX_ELEMENTS_PER_THREAD * torch.get_num_threads()


def orthogonalize(
    updates: Sequence[torch.Tensor],
    coefficients: Coefficients,
    *,
    flatten: bool,
    split_sizes: Sequence[int] = (),
    num_heads: int = 1,
    batched: bool = True,
    any_size: bool = False,
    preconditioning: str = "frobenius",
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
    backend: str = "auto",
) -> list[tuple[torch.Tensor, list[tuple[int, int]]]]:
    """Newton-Schulz on every update's matrix view, block by block; (orthogonalized view, block shapes) per update.

    With ``batched``, blocks of one shape (and dtype and device) across all the updates go through one
    batched Newton-Schulz call where :func:`batch_blocks` says so (stacked straight into ``dtype``); otherwise
    each block gets its own call (the ops of ``torch.optim.Muon``), and a block that is itself a batch (heads,
    a 3-D param with ``flatten = false``) of matrices :func:`batch_blocks` does not batch, one call per matrix.
    ``any_size`` (with ``batched``): batch every shape, whatever :func:`batch_blocks` says.
    """
    kwargs: dict[str, Any] = {"preconditioning": preconditioning, "eps": eps, "dtype": dtype, "backend": backend}
    plans = []
    queue: dict[tuple, list[tuple[int, int, torch.Tensor]]] = defaultdict(list)
    for i, u in enumerate(updates):
        view = matrix_view(u, flatten)
        blocks = row_blocks(view, split_sizes, num_heads)
        plans.append((view, blocks))
        for j, block in enumerate(blocks):
            shape = tuple(block.shape[-2:])
            together = batched and (any_size or batch_blocks(shape, block.device))
            queue[(shape, block.dtype, block.device) if together else (i, j)].append((i, j, block))
    results: dict[tuple[int, int], torch.Tensor] = {}
    for entries in queue.values():
        if len(entries) == 1:
            i, j, block = entries[0]
            if block.ndim > 2 and not (batched and any_size) and not batch_blocks(block.shape, block.device):
                # heads / a 3-D batch of matrices too large to batch: one call each
                flat = block.reshape(-1, *block.shape[-2:])
                results[(i, j)] = torch.stack([newton_schulz(b, coefficients, **kwargs) for b in flat]).reshape(
                    block.shape)
            else:
                results[(i, j)] = newton_schulz(block, coefficients, **kwargs)
            continue
        # one buffer in the iteration's dtype, filled block by block (the cast fused with the copy)
        flats = [b.reshape(-1, *b.shape[-2:]) for _, _, b in entries]
        stacked = flats[0].new_empty((sum(f.shape[0] for f in flats), *flats[0].shape[-2:]), dtype=dtype)
        start = 0
        for f in flats:
            stacked[start : start + f.shape[0]].copy_(f)
            start += f.shape[0]
        orth = newton_schulz(stacked, coefficients, overwrite=True, **kwargs)
        offset = 0
        for i, j, block in entries:
            count = block.numel() // (block.shape[-2] * block.shape[-1])
            results[(i, j)] = orth[offset : offset + count].reshape(block.shape)
            offset += count
    out = []
    for i, (view, blocks) in enumerate(plans):
        pieces = [results[(i, j)] for j in range(len(blocks))]
        shapes = [tuple(b.shape[-2:]) for b in blocks]
        if len(pieces) == 1:
            out.append((pieces[0], shapes))
        else:
            out.append((torch.cat([p.reshape(-1, view.shape[-1]) for p in pieces]).reshape(view.shape), shapes))
    return out  # type: ignore[return-value]


def block_lr(
    lr: float,
    rule: str,
    shapes: Sequence[tuple[int, int]],
    update: torch.Tensor,
    *,
    flatten: bool,
    num_heads: int,
    dtype: torch.dtype,
) -> float | torch.Tensor:
    """``lr * ratio`` when every block has one shape, else a tensor of ``ratio`` per row shaped like ``update``.

    (The per-row tensor does not include ``lr``: the caller multiplies the update by it and steps by ``lr``.)
    ``dtype`` is the ratios' precision (:func:`work_dtype` of the param's).
    """
    if len(set(shapes)) == 1:
        rows, cols = shapes[0]
        return lr * adjust_lr_ratio(rule, rows, cols)
    view = matrix_view(update, flatten)
    ratios = [torch.full((r,), adjust_lr_ratio(rule, r, c), dtype=dtype) for r, c in shapes]
    heads = int(num_heads or 1)
    per_row = torch.cat([t.repeat(heads) for t in ratios]).to(device=update.device)
    return per_row.reshape(-1, 1).expand(view.shape).reshape(update.shape)


def ema_momentum_(
    buf: torch.Tensor, g: torch.Tensor, *, momentum: float, nesterov: bool, take: torch.Tensor | None
) -> torch.Tensor:
    """``buf <- lerp(buf, g, 1 - momentum)`` (committed where the step is taken); returns what to orthogonalize.

    That is ``lerp(g, buf, momentum)`` with ``nesterov``, else ``buf``: ``torch.optim.Muon``'s momentum.
    """
    if take is None:
        buf.lerp_(g, 1 - momentum)
        new_buf = buf
    else:
        new_buf = torch.lerp(buf, g, 1 - momentum)
        commit_(buf, new_buf, take)
    return g.lerp(new_buf, momentum) if nesterov else new_buf


def decay_and_apply_(
    p: torch.Tensor,
    update: torch.Tensor,
    *,
    lr: float,
    alpha: float,
    weight_decay: float,
    cautious: bool,
    take: torch.Tensor | None,
) -> None:
    """``p <- p * (1 - lr * wd [* mask]) - alpha * update`` (torch.optim.Muon's order of operations).

    ``mask = (update * p > 0)`` with ``cautious``: decay only where the update and the param agree in sign.
    """
    update = update.reshape(p.shape)
    if take is None:
        if weight_decay != 0:
            if cautious:
                mask = (update * p > 0).to(p.dtype)
                p.mul_(1 - lr * weight_decay * mask)
            else:
                p.mul_(1 - lr * weight_decay)
        p.add_(update, alpha=-alpha)
        return
    new = p
    if weight_decay != 0:
        if cautious:
            mask = (update * p > 0).to(p.dtype)
            new = torch.mul(new, 1 - lr * weight_decay * mask)
        else:
            new = torch.mul(new, 1 - lr * weight_decay)
    new = torch.add(new, update, alpha=-alpha)
    commit_(p, new, take)


def normuon_normalize_(
    view: torch.Tensor, v: torch.Tensor, *, beta2: float, eps: float, take: torch.Tensor | None
) -> torch.Tensor:
    """NorMuon's neuron-wise normalisation of an orthogonalized ``view`` (rows x cols, or a batch).

    ``v <- lerp(v, mean_cols(O^2), 1 - beta2)`` (committed where the step is taken), then
    ``O / (sqrt(v) + eps)`` rescaled to ``sqrt(min(rows, cols))``, the Frobenius norm of an orthogonal matrix.
    """
    new_v = torch.lerp(v, view.square().mean(dim=-1, keepdim=True), 1 - beta2)
    commit_(v, new_v, take)
    normed = view / (new_v.sqrt() + eps)
    rows, cols = view.shape[-2:]
    frob = torch.linalg.matrix_norm(normed, keepdim=True).clamp(min=1e-30)
    return normed * (math.sqrt(min(rows, cols)) / frob)


def dion_rank(rows: int, cols: int, rank_fraction: float, rank_multiple_of: int) -> int:
    """Dion's low rank ``r`` of a ``rows x cols`` matrix: ``rank_fraction * min(rows, cols)`` rounded up."""
    r = rank_multiple_of * math.ceil(rank_fraction * min(rows, cols) / rank_multiple_of)
    return max(1, min(r, rows, cols))


def dion_floor(norms: torch.Tensor) -> torch.Tensor:
    """The column norm of Dion's ``R`` at or below which a column is rounding noise (0-dim, on the device).

    ``sqrt(eps)`` of ``norms``' precision times the largest norm: 3.5e-4 in float32, 1.5e-8 in float64.
    The rounding error of a column is about ``eps`` times the largest norm (times the conditioning of the
    power iteration), so a column this small is known to ``sqrt(eps)`` relative at best; Muon's
    Newton-Schulz (5 steps) takes a singular value this small (relative to the norm) to about 0.17, not 1.
    """
    return norms.amax() * math.sqrt(torch.finfo(norms.dtype).eps)


def dion_qr(P: torch.Tensor) -> torch.Tensor:
    """The orthonormal factor of ``P``'s (reduced) QR with ``R``'s diagonal made non-negative.

    That QR is unique for a full-rank ``P``, so any algorithm computing it gives the same matrix up to
    rounding: Householder here (one process), TSQR on row shards in the distributed step
    (:mod:`optreg_muon.functional.dion_distributed`). The signs never change Dion's update (a column of
    ``P`` and of ``R`` flip together), only which sign of the right basis ``Q`` is kept; fixing them
    makes the state of one process and of any sharding the same.
    """
    basis, R = torch.linalg.qr(P)
    return basis * dion_signs(R)


def dion_signs(R: torch.Tensor) -> torch.Tensor:
    """``-1`` where ``R``'s diagonal is negative, else ``1`` (in ``R``'s dtype): the column signs of :func:`dion_qr`."""
    return 1 - 2 * (R.diagonal() < 0).to(R.dtype)


class DionComm(Protocol):
    """How :func:`dion_update_` combines the parts of a matrix held by several ranks (``None``: one process).

    ``B`` is this rank's block (rows ``I``, columns ``J``) of the whole matrix; the column shards of ``Q``
    and ``R`` match ``J``, the row shards of ``P`` match ``I``.
    """

    def sum_over_columns(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks holding the other column blocks of this rank's rows (in place)."""
        ...

    def sum_over_rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks holding the other row blocks of this rank's columns (in place)."""
        ...

    def qr(self, P: torch.Tensor) -> torch.Tensor:
        """This rank's rows of :func:`dion_qr` of the whole ``P`` (row-sharded like the matrix)."""
        ...


def dion_update_(
    M: torch.Tensor,
    Q: torch.Tensor,
    g: torch.Tensor,
    *,
    rows: int,
    cols: int,
    power_iters: int,
    mu: float,
    eps: float,
    take: torch.Tensor | None,
    comm: DionComm | None = None,
) -> torch.Tensor:
    """Dion's step on one matrix: updates the momentum ``M`` and right basis ``Q`` in place, returns ``P Q^T``.

    ``B = M + G``; ``power_iters`` times ``P = QR(B Q)``, ``R = B^T P`` (``Q <- R`` between);
    ``M <- B - (1 - mu) P R^T``; ``Q <- R / (||R||_col + eps)``. A column of ``R`` at or below
    :func:`dion_floor` (``sqrt(eps)`` of the working precision times the largest column norm: rounding
    noise, e.g. where ``B`` is rank-deficient) counts as zero: it adds nothing to the update and keeps its
    old basis vector, as an exactly zero column does. The products and the QR (:func:`dion_qr`) run in
    :func:`work_dtype` of ``M``; the update is returned in it.

    With ``comm`` (Ahn et al. 2025, the distributed Dion), ``M`` and ``g`` are this rank's ``rows x cols``
    block of the matrix and ``Q`` its rows of the right basis: the products' partial sums, ``P``'s QR and
    ``R``'s column norms are completed by ``comm``; the momentum, the error feedback and the returned
    update stay this rank's block.
    """
    work = work_dtype(M.dtype)
    B = M.reshape(rows, cols).to(work) + g.reshape(rows, cols).to(work)
    Q_start = Q.to(work)
    basis = Q_start
    P = R = basis
    for _ in range(power_iters):
        BQ = B @ basis
        P = dion_qr(BQ) if comm is None else comm.qr(comm.sum_over_columns(BQ))
        R = B.T @ P
        if comm is not None:
            R = comm.sum_over_rows(R)
        basis = R
    new_M = B - (1 - mu) * (P @ R.T)
    squares = R.square().sum(dim=0, keepdim=True)
    norms = (squares if comm is None else comm.sum_over_columns(squares)).sqrt()
    # A column at the rounding floor has no direction of its own: normalising it would add a unit step in a
    # direction made of rounding errors (a rank-deficient B, e.g. the weight before a LayerNorm, whose
    # gradient rows sum to zero), so runs whose gradients differ in the last bit (one process, DDP) would
    # differ by a whole step. It adds nothing and keeps its old basis vector, as a zero column does, else
    # the power iteration would stall at 0. Columns above the floor are normalised as they always were.
    resolved = norms > dion_floor(norms)
    normalized = torch.where(resolved, R / (norms + eps), 0.0)
    update = P @ normalized.T
    new_Q = torch.where(resolved, normalized, Q_start)
    commit_(M, new_M.reshape(M.shape).to(M.dtype), take)
    commit_(Q, new_Q.to(Q.dtype), take)
    return update
