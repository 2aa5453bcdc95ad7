"""``Adam`` and ``AdamW``: torch's math and state, a skip-step gate, bf16 state, the path chosen per device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from optreg.compiling import use_compile
from optreg.optim import real_view, use_foreach
from optreg_adam import functional as F
from optreg_adam.optim._base import FamilyOptimizer, checked_defaults, moment_zeros

__all__ = ["Adam", "AdamW"]

_STATE_DTYPE_CHOICES = (None, "float32", "bfloat16")


class Adam(FamilyOptimizer):
    """Adam (Kingma & Ba 2015, arXiv:1412.6980) with torch's names, state and results.

    Per step ``t`` (the param's own counter), for every parameter ``p`` with gradient ``g``
    (``-g`` with ``maximize``)::

        g     <- g + weight_decay * p                    (an L2 penalty, as torch.optim.Adam)
        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g**2
        v_max <- max(v_max, v)                           (amsgrad; then v_hat = v_max, else v_hat = v)
        p     <- p - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    This is the paper's Algorithm 1 (``m/(1 - beta1**t)`` over ``sqrt(v/(1 - beta2**t)) + eps``) with
    ``torch.optim.Adam``'s additions: the L2 ``weight_decay`` and AMSGrad (Reddi et al. 2018) as torch
    takes it, the maximum of the raw ``v``. Results and state (``step``, ``exp_avg``,
    ``exp_avg_sq``, ``max_exp_avg_sq``) equal torch's, and torch's checkpoints load; prefer
    :class:`AdamW` for decoupled decay.

    Beyond torch: ``step(step_factor=t)`` gates the step by a 0/1 tensor without a host sync (0 leaves
    params and state, ``step`` included, bit-identical). ``state_dtype = "bfloat16"`` keeps ``m`` and
    ``v`` in bf16 by unbiased stochastic rounding (the step uses the stored, rounded moments);
    ``"float32"`` keeps fp32 state under bf16/fp16 params. Complex params are stepped as their
    ``torch.view_as_real`` on every path (as ``torch.optim.Adam`` does), with complex moments (or,
    with ``state_dtype``, real moments of the real view's shape).

    Paths: ``fused`` (torch's fused kernel; by default wherever it applies), ``foreach``
    (``torch._foreach_*``; by default where the fused kernel does not apply, on accelerators:
    :func:`optreg.optim.use_foreach`), per-tensor (``foreach=False``, the default there on CPU), optreg's C
    kernel for bfloat16 state on CPU, and a ``torch.compile``'d per-tensor step (``compile=True``, for the paths
    that are not fused).
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
        compile: bool | str = "auto",
        state_dtype: str | None = None,
    ) -> None:
        if foreach and fused:
            raise ValueError("choose foreach or fused, not both")
        if state_dtype not in _STATE_DTYPE_CHOICES:
            raise ValueError(f"state_dtype must be None, 'float32' or 'bfloat16', got {state_dtype!r}")
        if state_dtype is not None and (foreach or fused):
            raise ValueError("state_dtype needs the per-tensor path (leave foreach and fused unset)")
        defaults = checked_defaults(lr, betas, eps, weight_decay, amsgrad=amsgrad, maximize=maximize,
                                    foreach=foreach, fused=fused, compile=compile, state_dtype=state_dtype)
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
        """Which path a group takes: ``fused``, ``foreach``, ``single`` or ``compiled``.

        An explicit ``fused`` or ``foreach`` wins; ``state_dtype`` needs a per-tensor path: optreg's fused C
        kernel (``native``, bfloat16 state on CPU; see :mod:`optreg_adam.functional.native`) unless
        ``fused = false``; otherwise torch's fused kernel where it applies and pays
        (:func:`optreg_adam.functional.prefers_fused`), else the compiled step when asked, else the family-wide
        policy :func:`optreg.optim.use_foreach`.
        """
        if group["fused"]:
            return "fused"
        if group["foreach"]:
            return "foreach"
        on_cpu = all(p.device.type == "cpu" for p in params)
        if group["state_dtype"] is not None and group["fused"] is None and on_cpu and F.native_available():
            return "native"  # tensors the C kernel does not apply to step on the single path
        compiling = use_compile(group["compile"], params)
        per_tensor = "compiled" if compiling else "single"
        if group["state_dtype"] is not None or group["fused"] is False or group["foreach"] is False:
            return per_tensor
        if F.prefers_fused(params, grads):
            return "fused"
        if compiling:
            return per_tensor
        return "foreach" if use_foreach(None, params) else per_tensor

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        if amsgrad:
            for s in states:
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
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

    Per step ``t``, for every parameter ``p`` with gradient ``g`` (``-g`` with ``maximize``)::

        p     <- p * (1 - lr * weight_decay)
        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g**2
        v_max <- max(v_max, v)                           (amsgrad; then v_hat = v_max, else v_hat = v)
        p     <- p - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    The decay shrinks ``p`` directly instead of entering the gradient, so the adaptive denominator
    never rescales it. As ``torch.optim.AdamW`` (same results, state and checkpoints), the decay is
    scaled by ``lr``, where the paper's Algorithm 2 scales ``weight_decay`` by the schedule
    multiplier ``eta_t`` alone (an LR schedule reaches both the same way). Paths, ``step_factor``,
    bf16 state and complex params as :class:`Adam`.
    """

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        compile: bool | str = "auto",
        state_dtype: str | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         fused=fused, compile=compile, state_dtype=state_dtype)
