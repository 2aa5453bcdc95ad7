"""``torch.optim`` optimizers for Lion, Signum and signSGD (the math is in :mod:`optreg_sign.functional`).

This module holds the optimizers' argument checks and state; the functional layer picks the
per-tensor, multi-tensor or compiled path.
"""

from __future__ import annotations

from typing import Any

import torch

from optreg.compiling import check_compile_setting, use_compile
from optreg.optim import OptregOptimizer, check_betas, check_number, params_with_grads
from optreg_sign.functional import lion, signum

__all__ = ["Lion", "SignSGD", "Signum"]


def _check_paths(foreach: bool | None, compile: bool | str) -> None:
    check_compile_setting(compile)
    if foreach and compile is True:
        raise ValueError("choose foreach or compile, not both")


def _compiles(group: dict[str, Any], params: list[torch.Tensor]) -> bool:
    """The compile policy for a group; an explicit ``foreach = true`` is the path asked for (no compiled form)."""
    return group["foreach"] is not True and use_compile(group["compile"], params)


class Lion(OptregOptimizer):
    """Lion, EvoLved Sign Momentum (Chen et al. 2023, arXiv:2302.06675, Algorithm 2).

    Per step, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``) and momentum
    ``m`` (``exp_avg``, zeros at first)::

        u <- sign(beta1 * m + (1 - beta1) * g)
        p <- p * (1 - lr * weight_decay) - lr * u
        m <- beta2 * m + (1 - beta2) * g

    As the paper and lion-pytorch, except: the momentum update is a ``lerp`` (one pass), so
    ``exp_avg`` can differ from lion-pytorch's ``mul_().add_()`` in the last bit; a coordinate whose
    ``beta1 * m + (1 - beta1) * g`` is NaN or +-inf becomes NaN in ``p`` (``torch.sign(NaN)`` is 0,
    which would freeze it silently); complex parameters step as their ``view_as_real``; float64 stays
    float64. Use an LR 3-10x smaller than AdamW's and a weight decay 3-10x larger (the paper's advice).

    ``foreach``: multi-tensor path (``None``: only when every parameter is on an accelerator).
    ``compile``: the fused ``torch.compile`` kernel (fastest on CPU; the first step pays the
    compilation). Supports ``step(step_factor=t)`` (see :mod:`optreg.optim`).
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
        compile: bool | str = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_betas(betas, 2)
        check_number("weight_decay", weight_decay, ge=0)
        _check_paths(foreach, compile)
        defaults = {
            "lr": lr, "betas": tuple(betas), "weight_decay": weight_decay,
            "maximize": maximize, "foreach": foreach, "compile": compile,
        }
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        exp_avgs = []
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
        beta1, beta2 = group["betas"]
        lion(
            params, [p.grad for p in params], exp_avgs, lr=group["lr"], beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], maximize=group["maximize"], step_factor=step_factor,
            foreach=group["foreach"], compiled=_compiles(group, params),
        )


class Signum(OptregOptimizer):
    """Signum, signSGD with momentum (Bernstein et al. 2018, arXiv:1802.04434, Algorithm 3).

    Per step, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``), momentum
    ``m`` (``momentum_buffer``, zeros at first) and step count ``t`` (``step``, counted before the
    update)::

        t <- t + 1
        m <- momentum * m + (1 - momentum) * g
        d <- m                                     (nesterov: momentum * m + (1 - momentum) * g)
        p <- p * (1 - lr * weight_decay) - lr * s * sign(d)

    With ``nesterov`` and ``correct_bias`` the direction is
    ``d = momentum * m / (1 - momentum^(t+1)) + (1 - momentum) * g / (1 - momentum^t)`` (NVIDIA's
    Emerging-Optimizers); without Nesterov a bias correction cannot change a sign, so it changes
    nothing. ``s = 2 / (rows + cols)`` for a matrix with ``use_shape_scaling`` (rows = dim 0, cols =
    the product of the others; vectors are not scaled; arXiv:2506.07254), else 1. ``momentum = 0``
    is signSGD (``d = g``, no state).

    What differs from the paper: weight decay is decoupled (the paper has none); Nesterov, bias
    correction and shape scaling are additions (off by default); a coordinate whose direction is NaN
    or +-inf becomes NaN in ``p`` (``torch.sign(NaN)`` is 0, which would freeze it silently);
    complex parameters step as their ``view_as_real`` (shape scaling included); float64 stays
    float64. ``foreach``, ``compile`` and ``step(step_factor=t)`` as for :class:`Lion`.
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
        compile: bool | str = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("momentum", momentum, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        _check_paths(foreach, compile)
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
        params = params_with_grads(group)
        bufs: list[torch.Tensor | None] = []
        steps: list[torch.Tensor | None] = []
        for p in params:
            state = self.state[p]
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            bufs.append(state["momentum_buffer"] if momentum > 0 else None)
            steps.append(state["step"] if momentum > 0 else None)
        signum(
            params, [p.grad for p in params], bufs, steps, lr=group["lr"], momentum=momentum,
            weight_decay=group["weight_decay"], nesterov=group["nesterov"], correct_bias=group["correct_bias"],
            use_shape_scaling=group["use_shape_scaling"], maximize=group["maximize"], step_factor=step_factor,
            foreach=group["foreach"], compiled=_compiles(group, params),
        )


class SignSGD(Signum):
    """signSGD (Bernstein et al. 2018, arXiv:1802.04434, Algorithm 1): :class:`Signum` with no momentum
    by default.

    Per step, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``)::

        p <- p * (1 - lr * weight_decay) - lr * s * sign(g)

    ``s`` as for :class:`Signum` (``use_shape_scaling``); no state. A ``momentum > 0`` makes it
    Signum (the ``signsgd`` spec's ``momentum`` option). What differs from the paper: decoupled
    weight decay (the paper has none); a NaN or +-inf gradient makes its coordinates NaN in ``p``
    instead of leaving them in place (``torch.sign(NaN)`` is 0).
    """

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-4,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = False,
        correct_bias: bool = False,
        use_shape_scaling: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        compile: bool | str = "auto",
    ) -> None:
        super().__init__(
            params, lr, momentum, weight_decay, nesterov=nesterov, correct_bias=correct_bias,
            use_shape_scaling=use_shape_scaling, maximize=maximize, foreach=foreach, compile=compile,
        )
