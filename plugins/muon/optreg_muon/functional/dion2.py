"""Dion2's submatrix selection and error feedback on one matrix (Ahn, Amsel, Langford 2025, arXiv 2512.16928).

Per matrix (or batch of matrices ``(..., rows, cols)``) with momentum ``M`` and gradient ``G``: ``M <- M + G``;
the ``k = ceil(fraction * n)`` rows (or columns) of ``M`` with the largest L1 norms are the submatrix that
is orthogonalized (by the optimizer, with Muon's Newton-Schulz); those rows of ``M`` are then multiplied by
``ef_decay`` (the error feedback: what was applied decays, the rest keeps accumulating), and only those
rows of the parameter move. Functions ending in ``_`` update their tensor arguments in place; ``take`` is
the 0-dim bool tensor "the step is taken" of a ``step_factor`` step (``None`` for a plain step).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from optreg.optim import commit_
from optreg_muon.functional.matrix import matrix_view

__all__ = ["SELECT_DIMS", "num_selected", "scatter_slices", "select_and_decay_", "selection_dim"]

#: ``select_dim`` values: ``auto`` selects along the shorter side (rows when ``rows <= cols``).
SELECT_DIMS = ("auto", "rows", "cols")


def selection_dim(rows: int, cols: int, select_dim: Literal["auto", "rows", "cols"]) -> int:
    """The dimension whose slices are selected: ``-2`` (rows) or ``-1`` (columns).

    ``auto`` picks the shorter side (rows on a tie), as the reference does on whole matrices: the selected
    submatrix is then ``k x cols`` with ``k <= rows <= cols`` (or its transpose), the cheaper one to
    orthogonalize, and its orthogonalized rows (columns) are orthonormal.
    """
    if select_dim == "rows":
        return -2
    if select_dim == "cols":
        return -1
    if select_dim == "auto":
        return -2 if rows <= cols else -1
    raise ValueError(f"select_dim must be one of {SELECT_DIMS}, got {select_dim!r}")


def num_selected(size: int, fraction: float) -> int:
    """``k = ceil(fraction * size)``, at least 1 and at most ``size``, of ``size`` rows or columns.

    The product is rounded to 9 decimals first, so ``0.1 * 30`` (3.0000000000000004 in floating point) gives
    3, not 4.
    """
    return max(1, min(size, math.ceil(round(fraction * size, 9))))


def _expand(index: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """``index`` (``(..., k)``) expanded to the shape of the selected slices of ``like`` along ``dim``."""
    if dim == -2:
        return index.unsqueeze(-1).expand(*index.shape, like.shape[-1])
    return index.unsqueeze(-2).expand(*index.shape[:-1], like.shape[-2], index.shape[-1])


def select_and_decay_(
    M: torch.Tensor,
    g: torch.Tensor,
    *,
    flatten: bool,
    fraction: float,
    dim: int,
    ef_decay: float,
    take: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dion2's momentum step on one matrix; returns ``(submatrix, index)``, both of the matrix view.

    On the matrix view (:func:`~optreg_muon.functional.matrix.matrix_view` with ``flatten``: a matrix
    ``(rows, cols)`` or a batch) of ``B = M + G``: ``index`` (``(..., k)``, ascending) are the
    ``k = num_selected(n, fraction)`` slices along ``dim`` (-2: rows, -1: columns) with the largest L1
    norms (in float32, or the dtype of ``M`` when wider; ties go to the lower index, so every process with
    the same ``B`` selects the same slices); ``M <- B`` with the selected slices times ``ef_decay``
    (committed where the step is taken). ``submatrix`` is the selected slices of ``B`` before the decay:
    the input of the orthogonalization.
    """
    B = matrix_view(M + g.to(M.dtype), flatten)
    norms = B.abs().sum(dim=-1 if dim == -2 else -2, dtype=torch.promote_types(M.dtype, torch.float32))
    k = num_selected(B.shape[dim], fraction)
    # A stable sort: equal norms keep their order, so the selection is a function of B's values alone (topk's
    # choice among ties is not specified). NaN sorts above every number, so a NaN slice is selected.
    order = torch.argsort(norms, dim=-1, descending=True, stable=True)
    index = order[..., :k].sort(dim=-1).values
    expanded = _expand(index, B, dim)
    submatrix = B.gather(dim, expanded)
    B.scatter_(dim, expanded, submatrix * ef_decay)
    commit_(M, B.reshape(M.shape), take)
    return submatrix, index


def scatter_slices(update: torch.Tensor, index: torch.Tensor, shape: torch.Size, dim: int) -> torch.Tensor:
    """A ``shape`` tensor of zeros with ``update`` (the orthogonalized submatrix) at the slices ``index``."""
    full = torch.zeros(shape, dtype=update.dtype, device=update.device)
    return full.scatter_(dim, _expand(index, full, dim), update)
