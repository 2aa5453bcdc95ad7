"""``Adam`` and ``AdamW`` optimizers: torch's math and state, a skip-step gate, bf16 state, path choice per device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg_adam import functional as F
from optreg_adam._common import real_view
from optreg_adam.base import FamilyOptimizer, check_hparams, moment_zeros

__all__ = ["Adam", "AdamW"]


class Adam(FamilyOptimizer):
    """Adam (Kingma & Ba 2015) with torch's names, state and results; ``weight_decay`` is an L2 penalty.

    Paths: ``fused`` (torch's fused kernel, the default where it applies: one pass
    at memory bandwidth on CPU and CUDA), ``foreach`` (``torch._foreach_*``),
    per-tensor (``foreach=False``), and a ``torch.compile``'d per-tensor step
    (``compile=True``, for the paths that are not fused). ``state_dtype``:
    ``"bfloat16"`` keeps ``exp_avg``/``exp_avg_sq`` in bf16 with unbiased
    stochastic rounding; ``"float32"`` keeps fp32 state under bf16/fp16 params.
    ``step(step_factor=t)`` gates the step by a 0/1 tensor without a host sync.
    Complex params are stepped as their ``torch.view_as_real`` on every path (as
    ``torch.optim.Adam`` does), with complex moments (or, with ``state_dtype``, real
    moments of the real view's shape).
    """

    decoupled = False
    moment_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        compile: bool = False,
        state_dtype: str | None = None,
    ) -> None:
        check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        if foreach and fused:
            raise ValueError("choose foreach or fused, not both")
        if state_dtype not in (None, "float32", "bfloat16"):
            raise ValueError(f"state_dtype must be None, 'float32' or 'bfloat16', got {state_dtype!r}")
        if state_dtype is not None and (foreach or fused):
            raise ValueError("state_dtype needs the per-tensor path (leave foreach and fused unset)")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                        "maximize": maximize, "foreach": foreach, "fused": fused, "compile": compile,
                        "state_dtype": state_dtype}
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in (("amsgrad", False), ("maximize", False), ("foreach", None), ("fused", None),
                               ("compile", False), ("state_dtype", None)):
                group.setdefault(key, value)

    def _init_state(self, p: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["exp_avg"] = moment_zeros(p, group["state_dtype"])
        state["exp_avg_sq"] = moment_zeros(p, group["state_dtype"])
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = moment_zeros(p, group["state_dtype"])

    def impl_for(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]) -> str:
        """Which path a group takes: ``fused``, ``foreach``, ``single`` or ``compiled``."""
        if group["fused"]:
            return "fused"
        if group["foreach"]:
            return "foreach"
        per_tensor = "compiled" if group["compile"] else "single"
        if group["state_dtype"] is not None or group["fused"] is False or group["foreach"] is False:
            return per_tensor
        return "fused" if F.prefers_fused(params, grads) else per_tensor

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        if amsgrad:
            for _p, s in zip(params, states):
                if "max_exp_avg_sq" not in s:
                    s["max_exp_avg_sq"] = torch.zeros_like(s["exp_avg_sq"], memory_format=torch.preserve_format)
        salts = [self.salt(p) for p in params]
        moments = [[s[key] for s in states] for key in ("exp_avg", "exp_avg_sq")]
        moments.append([s["max_exp_avg_sq"] for s in states] if amsgrad else [])
        if any(p.is_complex() for p in params):  # every path (the fused kernel too) steps the real views
            params, grads = [real_view(p) for p in params], [real_view(g) for g in grads]
            moments = [[real_view(t) for t in ts] for ts in moments]
        F.adamw(
            params,
            grads,
            *moments,
            [s["step"] for s in states],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=amsgrad,
            maximize=group["maximize"],
            step_factor=step_factor,
            decoupled=self.decoupled,
            impl=self.impl_for(group, params, grads),  # type: ignore[arg-type]
            salts=salts,
            stochastic_rounding=group["state_dtype"] == "bfloat16",
        )


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019), ``torch.optim.AdamW``'s math and state."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)
