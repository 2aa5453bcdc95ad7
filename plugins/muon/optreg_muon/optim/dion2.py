"""Dion2: Newton-Schulz on an alpha-fraction of each matrix's rows (or columns), with error feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.optim import check_number
from optreg_muon.functional import dion2 as D
from optreg_muon.functional import matrix as F
from optreg_muon.functional import sharded as S
from optreg_muon.functional.newton_schulz import resolve_coefficients
from optreg_muon.optim._orthogonal import Orthogonal
from optreg_muon.optim.muon import NS_DTYPES, check_newton_schulz_options

__all__ = ["Dion2"]


class Dion2(Orthogonal):
    """Dion2: orthogonalize only a selected fraction of rows or columns, with error feedback (Ahn et al. 2025).

    Per step, for every matrix parameter ``X`` (its matrix view ``rows x cols``; 3-D+ flattened, or a batch
    with ``flatten = False``) with gradient ``G`` (``-G`` with ``maximize``) and momentum ``M``::

        M <- M + G
        d <- rows if rows <= cols else cols            # select_dim = "auto"; or "rows" / "cols"
        K <- the k = ceil(fraction * |d|) slices along d with the largest L1 norms of M
        O <- NewtonSchulz(M[K])                         # the k x cols (rows x k) submatrix, as Muon's
        M[K] <- ef_decay * M[K]                         # error feedback: the rest keeps accumulating
        X <- X * (1 - lr * weight_decay * mask)         # mask = 1, or (U * X > 0) with cautious_wd
        X[K] <- X[K] - lr * ratio(rows, cols) * O       # U: O at K, zeros elsewhere

    With ``fraction = 1`` every slice is selected, so the Newton-Schulz input is the heavy-ball momentum
    ``B_t = G_t + ef_decay * B_{t-1}``: Muon without Nesterov (whose EMA buffer is ``(1 - momentum) B_t``,
    a scale the Newton-Schulz normalisation removes) with ``momentum = ef_decay``. The non-matrix parameters
    take AdamW or Lion as in :class:`~optreg_muon.optim.Muon`.

    Reference: K. Ahn, N. Amsel, J. Langford 2025, "Dion2: A Simple Method to Shrink Matrix in Muon"
    (arXiv 2512.16928), and microsoft/dion's ``Dion2`` (single device: the rule above, L1 norms,
    ``ef_decay`` 0.95, ``fraction`` 0.25, Polar Express coefficients). Differences: ``adjust_lr =
    "spectral_norm"`` is ``sqrt(max(1, rows/cols))`` where the reference scales by ``sqrt(rows/cols)``;
    ties among norms go to the lower index and the selected slices are orthogonalized in index order;
    3-D+ params are flattened by default (the reference's ``flatten`` defaults to False); cautious weight
    decay; every Newton-Schulz option of Muon (``ns_dtype``, presets, preconditioning, Triton). Under FSDP
    the reference selects rows of each rank's shard (its ``"local"`` scope, which depends on the number of
    ranks); here a sharded matrix is gathered whole and selected as in one process (its ``"global"``
    scope), so every strategy computes the single-process update. ``foreach`` batches the selected
    submatrices of one shape into one Newton-Schulz call (as Muon's: by default where it pays).
    """

    ALGORITHM = "dion2"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        fraction: float = 0.25,
        ef_decay: float = 0.95,
        select_dim: str = "auto",
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        ns_steps: int = 5,
        ns_coefficients: Any = "polar_express",
        preconditioning: str = "frobenius",
        adjust_lr: str = "spectral_norm",
        eps: float = 1e-7,
        ns_dtype: str = "bfloat16",
        ns_backend: str = "auto",
        flatten: bool = True,
        maximize: bool = False,
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
        meshes: Mapping[str, Any] | None = None,
    ) -> None:
        check_number("fraction", fraction, gt=0, le=1)
        check_number("ef_decay", ef_decay, ge=0, le=1)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("ns_steps", ns_steps, ge=1, le=99)
        check_number("eps", eps, gt=0)
        defaults = {
            "lr": lr,
            "fraction": fraction,
            "ef_decay": ef_decay,
            "select_dim": select_dim,
            "weight_decay": weight_decay,
            "cautious_wd": cautious_wd,
            "ns_steps": ns_steps,
            "ns_coefficients": ns_coefficients,
            "preconditioning": preconditioning,
            "adjust_lr": adjust_lr,
            "eps": eps,
            "ns_dtype": ns_dtype,
            "ns_backend": ns_backend,
            "flatten": flatten,
            "maximize": maximize,
        }
        self._check_matrix_options(defaults)
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

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        check_number("fraction", options["fraction"], gt=0, le=1)
        check_number("ef_decay", options["ef_decay"], ge=0, le=1)
        if options["select_dim"] not in D.SELECT_DIMS:
            raise ValueError(f"select_dim must be one of {D.SELECT_DIMS}, got {options['select_dim']!r}")
        check_newton_schulz_options(options)

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        flatten = group["flatten"]
        selected, plans = [], []
        for p, g in zip(params, grads):
            g = F.step_grad(g, sf, group["maximize"])
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            # Whole matrices (a sharded momentum and gradient gathered), so the selection (which needs every
            # row's norm) and the orthogonalization are one process's; a sharded momentum takes back its part.
            momentum = state["momentum_buffer"]
            whole = S.whole(momentum)
            rows, cols = F.matrix_view(whole, flatten).shape[-2:]
            dim = D.selection_dim(rows, cols, group["select_dim"])
            sub, index = D.select_and_decay_(
                whole, S.whole(g), flatten=flatten, fraction=group["fraction"], dim=dim,
                ef_decay=group["ef_decay"], take=take,
            )
            if whole is not momentum:
                momentum.copy_(S.like(whole, momentum))
            selected.append(sub)
            plans.append((F.matrix_view(whole, flatten).shape, index, dim))
        orthogonal = F.orthogonalize(
            selected,
            resolve_coefficients(group["ns_coefficients"], group["ns_steps"]),
            flatten=False,  # the submatrices are matrices, or batches with flatten = False: keep them so
            batched=self.batch_matrices,
            any_size=self.batch_any_size,
            preconditioning=group["preconditioning"],
            eps=group["eps"],
            dtype=NS_DTYPES[group["ns_dtype"]],
            backend=group["ns_backend"],
        )
        lr = float(group["lr"])
        for p, (orth, _shapes), (shape, index, dim) in zip(params, orthogonal, plans):
            update = D.scatter_slices(orth.to(p.dtype), index, shape, dim)
            alpha = lr * F.adjust_lr_ratio(group["adjust_lr"], shape[-2], shape[-1])
            F.decay_and_apply_(
                p, S.like(update, p), lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], take=take,
            )
