"""Dion on sharded matrices without gathering them: the distributed Dion of Ahn et al. 2025 (arXiv 2504.05295).

A matrix ``X`` (``m x n``) laid out by a parallelism strategy as a ``DTensor`` has its rows split over some
mesh dimensions (FSDP / HSDP ``Shard(0)`` over ``shard``, tensor-parallel colwise ``Shard(0)`` over ``tp``,
both under ``fsdp_tp``: the paper's outer shard) and possibly its columns over another (tensor-parallel
rowwise ``Shard(1)`` over ``tp``: the inner shard); rank ``(i, j)`` holds the block ``X_ij`` and the same
block of the momentum ``M`` and of the gradient. The right basis ``Q`` (``n x r``) is split like ``X``'s
columns (rank ``j`` holds ``Q_j``; whole when the columns are not split), the left factor ``P`` (``m x r``)
like its rows. One step of :func:`optreg_muon.functional.matrix.dion_update_` then needs only:

* ``P_i = sum_j B_ij Q_j``: local products, all-reduced over the column shards (``m_i x r``);
* ``P``'s orthonormal factor by TSQR over the row shards: a local Householder QR of ``P_i``, an all-gather
  of the ``r x r`` triangular factors (with their number of rows), the QR of their stack (every rank the
  same), a local product; the signs are fixed so ``R``'s diagonal is non-negative
  (:func:`~optreg_muon.functional.matrix.dion_qr`);
* ``R_j = sum_i B_ij^T P_i``: local products, all-reduced over the row shards (``n_j x r``);
* the column norms of ``R``: local sums of squares, all-reduced over the column shards (``r`` numbers);
* the error feedback ``M_ij <- B_ij - (1 - mu) P_i R_j^T``, the new ``Q_j`` and the update ``P_i Q_j^T``:
  local.

The paper orthonormalizes ``P`` by (randomized) Cholesky QR: one all-reduce of ``P^T P`` instead of the
all-gather here, but Cholesky QR fails on a rank-deficient ``P`` (a rank-deficient momentum, e.g. the weight
before a LayerNorm: the case :func:`~optreg_muon.functional.matrix.dion_floor` handles), and it loses
orthogonality as ``cond(P)^2``; TSQR is as stable as one process's Householder QR and computes the same
factor, so a sharded run equals one process to float32 rounding. Replicated mesh dimensions (HSDP's
``replicate``) compute the same on every replica: their gradients are already averaged.

:func:`sharded_dion` decides, per matrix, whether this applies: the parameter is a ``DTensor`` on a mesh
whose sharded dimensions are the strategy's meshes (by role; an optimizer without meshes, e.g. a copy, gets
``None``), its rows split by any ``Shard(0)`` (strided ones included: only the columns' order matters, for
``Q``) and its columns (2-D only) by plain ``Shard(1)``. Anything else takes the exact gather-whole path
(:mod:`optreg_muon.functional.sharded`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from optreg.optim import is_sharded
from optreg_muon.functional import sharded as S
from optreg_muon.functional.matrix import dion_qr, dion_signs

__all__ = ["Axis", "ShardedDion", "laid_out_as", "local_block", "local_qr", "sharded_dion", "tsqr_finish"]


@dataclass(frozen=True)
class Axis:
    """One mesh dimension that splits the matrix: its process group, size and this rank's place in it."""

    group: Any
    size: int
    index: int


def local_qr(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first step of TSQR on this rank's rows ``P_i`` (``k x r``): ``(Q_i, block)``, ``k x r`` and ``(r + 1) x r``.

    ``P_i = Q_i R_i`` by Householder QR. ``block`` is ``R_i`` padded to ``r`` rows (a block with fewer rows
    than ``r``, or none, has fewer: ``Q_i`` gets zero columns to match) and a last row holding the number
    of real rows, so every rank sends one shape and :func:`tsqr_finish` can tell padding from ``R_i``.
    """
    k, r = P.shape
    Qi, Ri = torch.linalg.qr(P)
    real = Ri.shape[0]
    Qi = torch.cat([Qi, P.new_zeros(k, r - real)], dim=1)
    block = torch.cat([Ri, P.new_zeros(r - real, r), P.new_full((1, r), float(real))], dim=0)
    return Qi, block


def tsqr_finish(Qi: torch.Tensor, gathered: torch.Tensor, index: int) -> torch.Tensor:
    """The last step of TSQR: this rank's rows of the orthonormal factor of the whole ``P``.

    ``gathered`` is every row block's ``block`` (from :func:`local_qr`) in row-block order, the same on every
    rank; ``index`` is this rank's block. With ``S`` the stack of the ``R_i``, ``P = diag(Q_i) S =
    (diag(Q_i) Q_s) R_s`` where ``S = Q_s R_s``, so this rank's rows are ``Q_i (Q_s)_index``, with the signs
    that make ``R_s``'s diagonal non-negative (the factor :func:`~optreg_muon.functional.matrix.dion_qr`
    gives on one process). The padding rows of ``S`` are moved below the real ones before its QR (a
    permutation computed on the device: no host sync): Householder QR then keeps them exactly zero in
    ``Q_s`` (its reflectors never touch trailing zero rows, as there are at least ``r`` real rows), so
    even a rank-deficient ``P`` gets orthonormal columns, as from one QR of the whole.
    """
    r = Qi.shape[1]
    blocks = gathered.reshape(-1, r + 1, r)
    count = blocks.shape[0]
    real_rows = blocks[:, r, :1]  # (count, 1): each block's number of real rows
    padding = (torch.arange(r, device=gathered.device, dtype=gathered.dtype) >= real_rows).reshape(-1)
    order = torch.argsort(padding.to(torch.int8), stable=True)
    stacked = blocks[:, :r, :].reshape(count * r, r)
    Qs_sorted, Rs = torch.linalg.qr(stacked.index_select(0, order))
    Qs = torch.empty_like(Qs_sorted).index_copy_(0, order, Qs_sorted)
    return (Qi @ Qs[index * r : (index + 1) * r]) * dion_signs(Rs)


@dataclass(frozen=True)
class ShardedDion:
    """The collectives of one sharded matrix's Dion step (a :class:`~optreg_muon.functional.matrix.DionComm`).

    ``rows`` / ``columns``: the mesh dimensions (of size > 1) that split the matrix's rows / columns, in
    mesh order. ``q_placements``: the placements of ``Q`` on ``mesh`` (``Shard(0)`` where the matrix has
    ``Shard(1)``, replicated elsewhere), or ``None`` when the columns are not split (``Q`` is a plain tensor,
    whole on every rank).
    """

    mesh: Any
    rows: tuple[Axis, ...]
    columns: tuple[Axis, ...]
    q_placements: tuple[Any, ...] | None

    @staticmethod
    def _sum(t: torch.Tensor, axes: tuple[Axis, ...]) -> torch.Tensor:
        # Every rank of an axis' group holds the same rows (columns), so the same numel: an empty block is
        # skipped by the whole group alike.
        if t.numel() == 0:
            return t
        t = t.contiguous()
        for axis in axes:
            dist.all_reduce(t, group=axis.group)
        return t

    def sum_over_columns(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce over the mesh dimensions that split the columns (this rank's rows' other blocks)."""
        return self._sum(t, self.columns)

    def sum_over_rows(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce over the mesh dimensions that split the rows (this rank's columns' other blocks)."""
        return self._sum(t, self.rows)

    def qr(self, P: torch.Tensor) -> torch.Tensor:
        """This rank's rows of :func:`~optreg_muon.functional.matrix.dion_qr` of the whole ``P``, by TSQR.

        One all-gather of ``(r + 1) x r`` per row-splitting mesh dimension (of the blocks gathered so far, when
        there are two): every rank gets every row block's ``R_i``, in the order of the blocks' mesh coordinates.
        """
        if not self.rows:
            return dion_qr(P)
        Qi, gathered = local_qr(P)
        index = 0
        for axis in self.rows:
            blocks = gathered.shape[0] // (P.shape[1] + 1)
            out = gathered.new_empty(axis.size * gathered.shape[0], gathered.shape[1])
            dist.all_gather_into_tensor(out, gathered.contiguous(), group=axis.group)
            index += axis.index * blocks
            gathered = out
        return tsqr_finish(Qi, gathered, index)

    # ---------------------------------------------------------------- the state's layout

    def q_like(self, whole: torch.Tensor) -> torch.Tensor:
        """A whole ``Q`` (the same on every rank) laid out for this matrix: this rank's rows (no communication)."""
        if self.q_placements is None:
            return whole
        from torch.distributed.tensor import DTensor, Replicate

        replicated = DTensor.from_local(whole, self.mesh, [Replicate()] * self.mesh.ndim, run_check=False)
        return replicated.redistribute(self.mesh, self.q_placements)

    def local_q(self, state: dict[str, Any]) -> torch.Tensor:
        """This rank's rows of ``state["Q"]``, first laid out for this matrix if it is not (a loaded whole ``Q``)."""
        Q = state["Q"]
        if self.q_placements is None:
            if is_sharded(Q):
                state["Q"] = Q = S.whole(Q)
            return Q
        if not (is_sharded(Q) and Q.device_mesh == self.mesh and tuple(Q.placements) == self.q_placements):
            state["Q"] = Q = self.q_like(S.whole(Q))
        return Q.to_local()


try:  # FSDP's shard of a tensor-parallel colwise (row) shard; not a Shard subclass in torch 2.13
    from torch.distributed.tensor.placement_types import _StridedShard
except ImportError:  # pragma: no cover - torch without strided shards
    _StridedShard = None


def _axis(mesh: Any, dim: int) -> Axis:
    group = mesh.get_group(dim)
    return Axis(group=group, size=mesh.size(dim), index=dist.get_rank(group))


def sharded_dion(p: torch.Tensor, meshes: Mapping[str, Any]) -> ShardedDion | None:
    """The collectives of ``p``'s Dion step without gathering it, or ``None`` for the gather-whole path.

    ``None`` for a plain tensor (one process, DDP: every rank computes the whole step), and for a ``DTensor``
    whose layout this does not handle: a mesh dimension that splits it is not one of ``meshes`` (by role, with
    the same size: an optimizer without meshes), a ``Partial`` placement, a split of a 3-D+ parameter's
    trailing dimensions, or columns split by a strided shard (the rows of ``Q`` would not follow them).
    """
    if not is_sharded(p):
        return None
    from torch.distributed.tensor import Replicate, Shard

    mesh = p.device_mesh
    names = mesh.mesh_dim_names
    if names is None:
        return None
    rows: list[Axis] = []
    columns: list[Axis] = []
    q_placements: list[Any] = []
    for dim, (name, placement) in enumerate(zip(names, p.placements)):
        if placement.is_replicate():
            q_placements.append(Replicate())
            continue
        role_mesh = meshes.get(name)
        shard = isinstance(placement, Shard) or (_StridedShard is not None and isinstance(placement, _StridedShard))
        if not shard or role_mesh is None or role_mesh.size() != mesh.size(dim):
            return None
        if placement.dim == 0:
            q_placements.append(Replicate())
            if mesh.size(dim) > 1:
                rows.append(_axis(mesh, dim))
        elif placement.dim == 1 and p.ndim == 2 and type(placement) is Shard:
            q_placements.append(Shard(0))
            if mesh.size(dim) > 1:
                columns.append(_axis(mesh, dim))
        else:
            return None
    split_columns = any(isinstance(q, Shard) for q in q_placements)
    return ShardedDion(
        mesh=mesh, rows=tuple(rows), columns=tuple(columns),
        q_placements=tuple(q_placements) if split_columns else None,
    )


def laid_out_as(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``t`` is a ``DTensor`` on ``p``'s mesh with ``p``'s placements (its local block is ``p``'s)."""
    return is_sharded(t) and t.device_mesh == p.device_mesh and tuple(t.placements) == tuple(p.placements)


def local_block(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """This rank's block of ``t`` (a gradient) laid out as the ``DTensor`` ``p`` (no gather when it already is)."""
    if laid_out_as(t, p):
        return t.to_local()
    if is_sharded(t):  # another layout of the same matrix (a Partial gradient): reduce-scatter / slice it
        return t.redistribute(p.device_mesh, p.placements).to_local()
    return S.like(t, p).to_local()
