"""``torch.optim`` optimizers for Lion and Signum / signSGD (see :mod:`optreg_sign.functional`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.optim import OptregOptimizer
from optreg_sign.functional import lion, signum

__all__ = ["Lion", "Signum"]


def _check(name: str, value: Any, low: float, high: float | None = None, *, high_open: bool = True) -> None:
    if isinstance(value, torch.Tensor):
        return
    ok = value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"invalid {name}: {value!r} (must be {bound})")


def _grads(params: Iterable[torch.Tensor], name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{name} does not support sparse gradients")
        out.append((p, p.grad))
    return out


class Lion(OptregOptimizer):
    """Lion, EvoLved Sign Momentum (Chen et al. 2023, arXiv:2302.06675).

    ``update = sign(beta1 * m + (1 - beta1) * g)``; ``p = p * (1 - lr * weight_decay) - lr * update``;
    ``m = beta2 * m + (1 - beta2) * g``. One state buffer (``exp_avg``) per parameter.
    Use an LR 3-10x smaller than AdamW's and a weight decay 3-10x larger (the paper's advice).

    ``foreach``: multi-tensor path (``None``: on for non-CPU devices). ``compile``: the fused
    ``torch.compile`` kernel (fastest on CPU; the first step pays the compilation).
    Supports ``step(step_factor=t)`` (see :mod:`optreg.optim`). A NaN or inf gradient makes its
    coordinates NaN in the parameter (never a silent freeze); complex parameters step as their
    ``view_as_real``; float64 stays float64 (see :mod:`optreg_sign.functional`).
    """

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
    ) -> None:
        _check("lr", lr, 0.0)
        _check("beta1", betas[0], 0.0, 1.0)
        _check("beta2", betas[1], 0.0, 1.0)
        _check("weight_decay", weight_decay, 0.0)
        if foreach and compile:
            raise ValueError("choose foreach or compile, not both")
        defaults = {
            "lr": lr, "betas": tuple(betas), "weight_decay": weight_decay,
            "maximize": maximize, "foreach": foreach, "compile": compile,
        }
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params, grads, exp_avgs = [], [], []
        for p, grad in _grads(group["params"], "Lion"):
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(grad)
            exp_avgs.append(state["exp_avg"])
        beta1, beta2 = group["betas"]
        lion(
            params, grads, exp_avgs, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            maximize=group["maximize"], step_factor=step_factor, foreach=group["foreach"],
            compiled=group["compile"],
        )


class Signum(OptregOptimizer):
    """Signum and signSGD (Bernstein et al. 2018, arXiv:1802.04434).

    ``momentum > 0`` (Signum): ``m = momentum * m + (1 - momentum) * g`` and the update is
    ``sign(m)``, or with ``nesterov`` ``sign(momentum * m + (1 - momentum) * g)`` (each term
    bias-corrected when ``correct_bias``; without Nesterov the correction cannot change a sign).
    ``momentum = 0`` (signSGD): ``sign(g)``, no state. ``use_shape_scaling`` multiplies the update of a
    matrix by ``2 / (rows + cols)`` (rows = dim 0, cols = the product of the others; vectors are not
    scaled). Weight decay is decoupled: ``p *= 1 - lr * weight_decay``.
    State per parameter with momentum: ``momentum_buffer`` and ``step`` (a 0-dim float tensor).
    A NaN or inf direction makes its coordinates NaN in the parameter (never a silent freeze); complex
    parameters step as their ``view_as_real`` (shape scaling included); float64 stays float64.
    """

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = False,
        correct_bias: bool = False,
        use_shape_scaling: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool = False,
    ) -> None:
        _check("lr", lr, 0.0)
        _check("momentum", momentum, 0.0, 1.0)
        _check("weight_decay", weight_decay, 0.0)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        if foreach and compile:
            raise ValueError("choose foreach or compile, not both")
        defaults = {
            "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "nesterov": nesterov, "correct_bias": correct_bias,
            "use_shape_scaling": use_shape_scaling, "maximize": maximize, "foreach": foreach, "compile": compile,
        }
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        momentum = group["momentum"]
        if group["nesterov"] and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        params, grads, bufs, steps = [], [], [], []
        for p, grad in _grads(group["params"], "Signum"):
            state = self.state[p]
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            params.append(p)
            grads.append(grad)
            bufs.append(state["momentum_buffer"] if momentum > 0 else None)
            steps.append(state["step"] if momentum > 0 else None)
        signum(
            params, grads, bufs, steps, lr=group["lr"], momentum=momentum, weight_decay=group["weight_decay"],
            nesterov=group["nesterov"], correct_bias=group["correct_bias"],
            use_shape_scaling=group["use_shape_scaling"], maximize=group["maximize"], step_factor=step_factor,
            foreach=group["foreach"], compiled=group["compile"],
        )
