"""Dion: low-rank orthonormal updates by power iteration + QR, with error feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.optim import check_number
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
    The non-matrix parameters take AdamW or Lion as in :class:`~optreg_muon.optim.Muon`.

    Reference: Ahn et al. 2025, "Dion: Distributed Orthonormalized Updates" (arXiv 2504.05295), single
    device. Differences: ``adjust_lr = "spectral_norm"`` is ``sqrt(max(1, m/n))`` where the reference scales
    by ``sqrt(m/n)`` (``adjust_lr`` chooses), cautious weight decay, and the products and QR run in float32
    (or the param's dtype when wider). ``foreach`` has no effect on the matrices (each has its own QR).
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
        check_number("rank_multiple_of", rank_multiple_of, ge=1)
        check_number("power_iters", power_iters, ge=1)
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

    def _init_q(self, p: torch.Tensor, cols: int, r: int, state: dict[str, Any]) -> None:
        index = sum(1 for s in self.state.values() if "Q" in s)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        q = torch.randn(cols, r, generator=g, dtype=F.work_dtype(p.dtype))
        state["Q"] = (q / q.norm(dim=0, keepdim=True)).to(device=p.device, dtype=p.dtype)

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        lr = float(group["lr"])
        for p, g in zip(params, grads):
            g = F.step_grad(g, sf, group["maximize"])
            rows, cols = F.matrix_view(p, True).shape
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                r = self.rank(rows, cols, group["rank_fraction"], group["rank_multiple_of"])
                self._init_q(p, cols, r, state)
            # Whole matrices (a sharded momentum and gradient gathered; Q is whole on every rank), so the
            # step is one process's; a sharded momentum then takes back its part.
            momentum = state["momentum_buffer"]
            whole_momentum = S.whole(momentum)
            update = F.dion_update_(
                whole_momentum, state["Q"], S.whole(g), rows=rows, cols=cols, power_iters=group["power_iters"],
                mu=group["mu"], eps=group["eps"], take=take,
            )
            if whole_momentum is not momentum:
                momentum.copy_(S.like(whole_momentum, momentum))
            alpha = lr * F.adjust_lr_ratio(group["adjust_lr"], rows, cols)
            F.decay_and_apply_(
                p, S.like(update.to(p.dtype), p), lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], take=take,
            )
