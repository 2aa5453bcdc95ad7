"""Dion: low-rank orthonormal updates by power iteration + QR, with error feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.optim import check_number
from optreg.specs import MAX_COUNT
from optreg_muon.functional import dion_distributed as D
from optreg_muon.functional import matrix as F
from optreg_muon.functional import sharded as S
from optreg_muon.optim._orthogonal import Orthogonal

__all__ = ["Dion"]


class Dion(Orthogonal):
    """Dion: low-rank orthonormal updates by power iteration + QR with error feedback (Ahn et al. 2025).

    Per step, for every matrix parameter ``X`` (``m x n``, 3-D+ flattened) with gradient ``G`` (``-G`` with
    ``maximize``), momentum ``M`` and right basis ``Q`` (``n x r``)::

        B <- M + G
        P <- QR(B Q);  R <- B^T P                       # power_iters times, Q <- R in between
        M <- B - (1 - mu) * P R^T                       # error feedback
        Q <- R / (||R||_columns + eps)                  # a column at the rounding floor keeps its old vector
        X <- X * (1 - lr * weight_decay * mask)         # mask = 1, or (P Q^T * X > 0) with cautious_wd
        X <- X - lr * ratio(m, n) * P Q^T

    with ``r = rank_fraction * min(m, n)`` rounded up to a multiple of ``rank_multiple_of``, ``Q`` starting
    as random unit columns (``seed``). At full rank the error feedback leaves exactly ``mu * B`` and, once
    the power iteration has converged to the singular vectors, ``P Q^T`` is the polar factor of ``B``.
    ``QR`` is the orthonormal factor with ``R``'s diagonal non-negative (unique for a full-rank ``B Q``).
    The non-matrix parameters take AdamW or Lion as in :class:`~optreg_muon.optim.Muon`.

    Sharded matrices (``DTensor`` parameters under optreg-parallel's fsdp, hsdp, tp, fsdp_tp, with the
    strategy's ``meshes``) take the paper's distributed step: momentum and gradient stay sharded, ``Q`` is
    split like the columns, and only ``m x r`` / ``n x r`` partial sums, ``r x r`` TSQR factors and ``r``
    column norms are communicated (:mod:`optreg_muon.functional.dion_distributed`); it equals one process
    to float32 rounding. Plain (DDP-replicated) matrices are stepped whole by every rank, and a layout the
    distributed step does not take, or an optimizer without meshes (a copy), gathers each matrix whole.

    Reference: Ahn et al. 2025, "Dion: Distributed Orthonormalized Updates" (arXiv 2504.05295).
    Differences: ``adjust_lr = "spectral_norm"`` is ``sqrt(max(1, m/n))`` where the reference scales by
    ``sqrt(m/n)`` (``adjust_lr`` chooses), cautious weight decay, the products and QR run in float32 (or the
    param's dtype when wider), and the distributed QR is TSQR where the paper uses (randomized) Cholesky QR.
    ``foreach`` has no effect on the matrices (each has its own QR).
    """

    ALGORITHM = "dion"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        mu: float = 0.95,
        rank_fraction: float = 1.0,
        rank_multiple_of: int = 1,
        power_iters: int = 1,
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        adjust_lr: str = "spectral_norm",
        eps: float = 1e-8,
        flatten: bool = True,
        maximize: bool = False,
        seed: int = 0,
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
        meshes: Mapping[str, Any] | None = None,
    ) -> None:
        check_number("mu", mu, ge=0, lt=1)
        check_number("rank_fraction", rank_fraction, gt=0, le=1)
        check_number("rank_multiple_of", rank_multiple_of, ge=1, le=MAX_COUNT)
        check_number("power_iters", power_iters, ge=1, le=1024)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("eps", eps, gt=0)
        check_number("seed", seed, ge=0)
        F.adjust_lr_ratio(adjust_lr, 1, 1)
        self.seed = seed
        defaults = {
            "lr": lr,
            "mu": mu,
            "rank_fraction": rank_fraction,
            "rank_multiple_of": rank_multiple_of,
            "power_iters": power_iters,
            "weight_decay": weight_decay,
            "cautious_wd": cautious_wd,
            "adjust_lr": adjust_lr,
            "eps": eps,
            "flatten": flatten,
            "maximize": maximize,
        }
        super().__init__(
            params,
            defaults=defaults,
            adam_lr=adam_lr,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            adam_weight_decay=adam_weight_decay,
            non_matrix_algorithm=non_matrix_algorithm,
            foreach=foreach,
            meshes=meshes,
        )

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.ndim > 2 and not group["flatten"]:
            raise ValueError(f"dion needs 2-D parameters or flatten = true, got shape {tuple(p.shape)}")

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        F.adjust_lr_ratio(options["adjust_lr"], 1, 1)

    @staticmethod
    def rank(rows: int, cols: int, rank_fraction: float, rank_multiple_of: int) -> int:
        """The low rank ``r`` of a ``rows x cols`` matrix."""
        return F.dion_rank(rows, cols, rank_fraction, rank_multiple_of)

    def _init_q(self, p: torch.Tensor, cols: int, r: int, sharded: D.ShardedDion | None) -> torch.Tensor:
        """Random unit columns (``cols x r``), seeded by ``seed`` and the order of creation: the same whole
        ``Q`` on every rank and in one process; laid out as the matrix's columns when they are split."""
        index = sum(1 for s in self.state.values() if "Q" in s)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        q = torch.randn(cols, r, generator=g, dtype=F.work_dtype(p.dtype))
        q = (q / q.norm(dim=0, keepdim=True)).to(device=p.device, dtype=p.dtype)
        return q if sharded is None else sharded.q_like(q)

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        lr = float(group["lr"])
        for p, g in zip(params, grads):
            rows, cols = F.matrix_view(p, True).shape
            state = self.state[p]
            sharded = D.sharded_dion(p, self.meshes)
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                r = self.rank(rows, cols, group["rank_fraction"], group["rank_multiple_of"])
                state["Q"] = self._init_q(p, cols, r, sharded)
            options = {"power_iters": group["power_iters"], "mu": group["mu"], "eps": group["eps"], "take": take}
            if sharded is None:
                update = self._whole_step(p, g, state, rows, cols, sf, group["maximize"], options)
            else:
                update = self._sharded_step(p, g, state, sharded, sf, group["maximize"], options)
            alpha = lr * F.adjust_lr_ratio(group["adjust_lr"], rows, cols)
            F.decay_and_apply_(
                p.to_local() if sharded is not None else p, update.to(p.dtype), lr=lr, alpha=alpha,
                weight_decay=group["weight_decay"], cautious=group["cautious_wd"], take=take,
            )

    @staticmethod
    def _whole_step(
        p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], rows: int, cols: int, sf: torch.Tensor | None,
        maximize: bool, options: dict[str, Any],
    ) -> torch.Tensor:
        """One process's step on the whole matrix: a sharded momentum, gradient and ``Q`` are gathered (the
        exact fallback for layouts :func:`~optreg_muon.functional.dion_distributed.sharded_dion` does not
        take, and for an optimizer without meshes); returns the update laid out as ``p``."""
        momentum, Q = state["momentum_buffer"], state["Q"]
        whole_momentum, whole_Q = S.whole(momentum), S.whole(Q)
        update = F.dion_update_(
            whole_momentum, whole_Q, F.step_grad(S.whole(g), sf, maximize), rows=rows, cols=cols, **options
        )
        if whole_momentum is not momentum:
            momentum.copy_(S.like(whole_momentum, momentum))
        if whole_Q is not Q:
            Q.copy_(S.like(whole_Q, Q))
        return S.like(update, p)

    @staticmethod
    def _sharded_step(
        p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], sharded: D.ShardedDion, sf: torch.Tensor | None,
        maximize: bool, options: dict[str, Any],
    ) -> torch.Tensor:
        """The distributed step on this rank's block (Ahn et al. 2025): nothing is gathered but ``r x r``
        factors; returns this rank's block of the update (a plain tensor)."""
        momentum = state["momentum_buffer"]
        if not D.laid_out_as(momentum, p):  # a momentum loaded in another layout: lay it out as p once
            state["momentum_buffer"] = momentum = S.like(S.whole(momentum), p)
        M = momentum.to_local()
        Q = sharded.local_q(state)
        grad = F.step_grad(D.local_block(g, p), sf, maximize)
        return F.dion_update_(M, Q, grad, rows=M.shape[0], cols=Q.shape[0], comm=sharded, **options)
