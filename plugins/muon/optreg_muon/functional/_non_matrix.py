"""The update for non-matrix parameters (embeddings, head, biases, norms) inside a Muon-family optimizer.

This module is the one place that knows which implementations the non-matrix
branch calls: AdamW from the Adam-family plugin (``optreg_adam.functional.adamw``)
and Lion from the sign-family plugin (``optreg_sign.functional.lion``). Both gate
a ``step_factor`` without a host sync. State uses torch's names: ``step``,
``exp_avg``, ``exp_avg_sq`` for AdamW, ``exp_avg`` for Lion.
"""

from __future__ import annotations

from typing import Any

import torch
from optreg_adam.functional import adamw as _adamw
from optreg_sign.functional import lion as _lion

__all__ = ["NON_MATRIX_ALGORITHMS", "adamw_update", "lion_update", "update"]

#: The updates the non-matrix branch offers.
NON_MATRIX_ALGORITHMS = ("adamw", "lion")


def adamw_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    *,
    lr: Any,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    maximize: bool,
    step_factor: torch.Tensor | None,
) -> None:
    """One AdamW step (decoupled weight decay, Loshchilov & Hutter 2019) over ``params``, in place."""
    for p, s in zip(params, states):
        if "step" not in s:
            s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    _adamw(
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [s["step"] for s in states],
        lr=lr,
        beta1=betas[0],
        beta2=betas[1],
        eps=eps,
        weight_decay=weight_decay,
        maximize=maximize,
        step_factor=step_factor,
    )


def lion_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    *,
    lr: Any,
    betas: tuple[float, float],
    weight_decay: float,
    maximize: bool,
    step_factor: torch.Tensor | None,
) -> None:
    """One Lion step (Chen et al. 2023) over ``params``, in place."""
    for p, s in zip(params, states):
        if "exp_avg" not in s:
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    _lion(
        params,
        grads,
        [s["exp_avg"] for s in states],
        lr=lr,
        beta1=betas[0],
        beta2=betas[1],
        weight_decay=weight_decay,
        maximize=maximize,
        step_factor=step_factor,
    )


def update(
    algorithm: str,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    group: dict[str, Any],
    step_factor: torch.Tensor | None,
) -> None:
    """Run the non-matrix ``algorithm`` of a param group."""
    if not params:
        return
    common = {
        "lr": group["lr"], "betas": tuple(group["betas"]), "weight_decay": group["weight_decay"],
        "maximize": group["maximize"], "step_factor": step_factor,
    }
    if algorithm == "adamw":
        adamw_update(params, grads, states, eps=group["eps"], **common)
    elif algorithm == "lion":
        lion_update(params, grads, states, **common)
    else:
        raise ValueError(f"unknown non-matrix algorithm {algorithm!r}; choose one of {NON_MATRIX_ALGORITHMS}")
