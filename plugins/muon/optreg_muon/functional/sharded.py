"""Whole matrices of sharded parameters: how Muon, NorMuon and Dion run under optreg-parallel strategies.

An orthogonalized update is a function of the whole matrix, not of each shard: Newton-Schulz of a
row (or column) shard is not the rows (columns) of Newton-Schulz of the matrix. So for a parameter
that is a ``DTensor``, the matrix step gathers the whole matrix (:func:`whole`, an all-gather),
computes exactly what one process computes on it, and keeps this rank's part of the result
(:func:`like`, a local slice: no communication). Any ``DTensor`` layout works: FSDP / HSDP row shards
(``Shard(0)`` over ``shard``, replicated over ``replicate``), tensor-parallel colwise (``Shard(0)``)
and rowwise (``Shard(1)``) shards over ``tp``, and the 2-D ``("shard", "tp")`` mesh of ``fsdp_tp``.
Elementwise state (momentum) stays sharded like its parameter. Every rank does the whole work on
every matrix: exact, and as fast as one process. Muon and NorMuon use this only as the fallback (layouts
:mod:`optreg_muon.functional.distributed` does not split, or an optimizer without meshes); there each
matrix is orthogonalized by one rank.

Plain tensors pass through unchanged, so a single-process step runs the same ops as before.
"""

from __future__ import annotations

import torch

from optreg.optim import is_sharded

__all__ = ["like", "whole"]


def whole(t: torch.Tensor) -> torch.Tensor:
    """``t`` as one plain tensor on every rank: a ``DTensor`` all-gathered (a collective), a tensor as is."""
    return t.full_tensor() if is_sharded(t) else t


def like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``full`` (a whole tensor of ``ref``'s shape, the same on every rank) laid out as ``ref``.

    For a ``DTensor`` ``ref``: this rank's part of ``full``, as a ``DTensor`` with ``ref``'s mesh and
    placements (cut locally: no communication). For a plain ``ref``: ``full`` itself.
    """
    if not is_sharded(ref):
        return full
    from torch.distributed.tensor import DTensor, Replicate

    mesh = ref.device_mesh
    replicated = DTensor.from_local(full.reshape(ref.shape), mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, ref.placements)
