"""Muon: momentum, then Newton-Schulz orthogonalization of each matrix update."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from optreg.optim import check_number
from optreg_muon.functional import matrix as F
from optreg_muon.functional import sharded as S
from optreg_muon.functional.newton_schulz import PRECONDITIONINGS, resolve_coefficients
from optreg_muon.optim._orthogonal import Orthogonal

__all__ = ["Muon"]

#: ``ns_dtype`` values: the precision of the Newton-Schulz iteration.
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
NS_BACKENDS = ("auto", "torch", "triton")


class Muon(Orthogonal):
    """Muon: momentum, then Newton-Schulz orthogonalization of each matrix update (Jordan et al. 2024).

    Per step, for every matrix parameter ``p`` (its matrix view) with gradient ``g`` (``-g`` with
    ``maximize``)::

        buf <- lerp(buf, g, 1 - momentum)              # = momentum * buf + (1 - momentum) * g
        u   <- lerp(g, buf, momentum)  if nesterov  else  buf
        O   <- NewtonSchulz(u)                          # per row block, ns_steps quintic steps:
                                                        #   X <- a X + b (X X^T) X + c (X X^T)^2 X
        p   <- p * (1 - lr * weight_decay * mask)       # mask = 1, or (O * p > 0) with cautious_wd
        p   <- p - lr * ratio(rows, cols) * O           # ratio: adjust_lr (spectral_norm: sqrt(max(1, rows/cols)))

    The other parameters (vectors; embeddings and the head when routed by role) take AdamW or Lion
    (``non_matrix_algorithm``) with the ``adam_*`` options.

    Reference: K. Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks", and
    ``torch.optim.Muon``. The momentum is an EMA as in torch (the blog post's ``buf <- momentum * buf + g``
    differs by the factor ``1 - momentum``, which the Frobenius normalisation removes). With torch's
    defaults (``"muon"`` coefficients, 5 steps, ``preconditioning = "frobenius"``,
    ``adjust_lr = "spectral_norm"``, ``ns_backend = "torch"``) the update equals torch's: bit for bit per
    matrix (``foreach=False``, or a shape no other matrix of the group shares), within bf16 rounding where
    same-shaped matrices are batched. Beyond torch: 3-D+ params (flattened to ``(shape[0], rest)``, or a
    batch of matrices with ``flatten = False``), row blocks (``split_sizes``, ``num_heads``: a fused QKV
    orthogonalized per block and head), coefficient presets and per-step coefficients, preconditionings
    (``spectral``, ``aol``, ``schatten``), cautious weight decay, ``ns_dtype`` (``"float64"`` for float64
    models), a Triton kernel, and ``step(step_factor=t)``. ``foreach`` (None or True, the default: on)
    batches same-shaped blocks into one Newton-Schulz call; it is not the ``torch._foreach_*`` path.
    """

    ALGORITHM = "muon"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        ns_steps: int = 5,
        ns_coefficients: Any = "muon",
        preconditioning: str = "frobenius",
        adjust_lr: str = "spectral_norm",
        eps: float = 1e-7,
        ns_dtype: str = "bfloat16",
        ns_backend: str = "auto",
        flatten: bool = True,
        split_sizes: Sequence[int] = (),
        num_heads: int = 1,
        maximize: bool = False,
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
        meshes: Mapping[str, Any] | None = None,
    ) -> None:
        check_number("momentum", momentum, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("ns_steps", ns_steps, ge=1, le=99)
        check_number("eps", eps, gt=0)
        check_number("num_heads", num_heads, ge=1)
        for i, size in enumerate(split_sizes):
            check_number(f"split_sizes[{i}]", size, ge=1)
        resolve_coefficients(ns_coefficients, ns_steps)  # fail early on bad coefficients
        F.adjust_lr_ratio(adjust_lr, 1, 1)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
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
            "split_sizes": tuple(split_sizes),
            "num_heads": num_heads,
            "maximize": maximize,
        }
        self._extra_defaults(defaults)
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

    def _extra_defaults(self, defaults: dict[str, Any]) -> None:
        """Subclasses add their own group options."""

    # -- checks of a matrix group (constructor and add_param_group)

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        split_sizes = tuple(group.get("split_sizes") or ())
        heads = int(group.get("num_heads") or 1)
        if not split_sizes and heads == 1:
            return
        if p.ndim > 2 and not group["flatten"]:
            raise ValueError(f"split_sizes / num_heads need 2-D or flattened parameters, got shape {tuple(p.shape)}")
        rows = p.shape[0]
        sizes = split_sizes or (rows,)
        if sum(sizes) != rows:
            raise ValueError(f"split_sizes {split_sizes} must add up to the {rows} rows of shape {tuple(p.shape)}")
        if any(s % heads for s in sizes):
            raise ValueError(f"each block of {sizes} rows must divide into num_heads={heads} equal heads")

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        if options["ns_dtype"] not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {tuple(NS_DTYPES)}, got {options['ns_dtype']!r}")
        if options["ns_backend"] not in NS_BACKENDS:
            raise ValueError(f"ns_backend must be one of {NS_BACKENDS}, got {options['ns_backend']!r}")
        if options["preconditioning"] not in PRECONDITIONINGS:
            raise ValueError(f"preconditioning must be one of {PRECONDITIONINGS}, got {options['preconditioning']!r}")
        if options["ns_backend"] == "triton" and options["ns_dtype"] == "float64":
            raise ValueError("the Triton Newton-Schulz kernels run in bfloat16 or float32; ns_dtype = 'float64' "
                             "needs ns_backend 'torch' or 'auto'")
        resolve_coefficients(options["ns_coefficients"], options["ns_steps"])
        F.adjust_lr_ratio(options["adjust_lr"], 1, 1)

    # -- the step

    def _momentum(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
        take: torch.Tensor | None, sf: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """Update the EMA momentum buffers; return the inputs to orthogonalization."""
        updates = []
        for p, g in zip(params, grads):
            g = F.step_grad(g, sf, group["maximize"])
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            updates.append(
                F.ema_momentum_(state["momentum_buffer"], g, momentum=group["momentum"], nesterov=group["nesterov"],
                                take=take)
            )
        return updates

    def _orthogonalize(
        self, group: dict[str, Any], updates: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, list[tuple[int, int]]]]:
        """Newton-Schulz on every update's matrix view, per row block, same-shaped blocks batched (``foreach``)."""
        return F.orthogonalize(
            updates,
            resolve_coefficients(group["ns_coefficients"], group["ns_steps"]),
            flatten=group["flatten"],
            split_sizes=group.get("split_sizes") or (),
            num_heads=int(group.get("num_heads") or 1),
            batched=self.batch_matrices,
            preconditioning=group["preconditioning"],
            eps=group["eps"],
            dtype=NS_DTYPES[group["ns_dtype"]],
            backend=group["ns_backend"],
        )

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        take = None if sf is None else sf != 0
        updates = self._momentum(group, params, grads, take, sf)
        # Whole matrices (a sharded one gathered), so the orthogonalization is one process's.
        orthogonal = self._orthogonalize(group, [S.whole(u) for u in updates])
        lr = float(group["lr"])
        for p, (update, shapes) in zip(params, orthogonal):
            alpha = F.block_lr(
                lr, group["adjust_lr"], shapes, update, flatten=group["flatten"],
                num_heads=int(group.get("num_heads") or 1), dtype=F.work_dtype(p.dtype),
            )
            if isinstance(alpha, torch.Tensor):  # unequal blocks: each block scaled by its own rule
                update, alpha = update * alpha, lr
            F.decay_and_apply_(
                p, S.like(update, p), lr=lr, alpha=alpha, weight_decay=group["weight_decay"],
                cautious=group["cautious_wd"], take=take,
            )
