"""DP-SGD (Abadi et al. 2016, arXiv:1607.00133) and the per-sample gradients it needs (``torch.func``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import torch

from optreg.optim import OptregOptimizer, check_number, per_sample_grads, real_view, refuse_complex
from optreg_contrib.optim._noise import noise_like

__all__ = ["DPSGD", "per_sample_grads"]

CONTRACT = (
    "dpsgd needs per-sample gradients in p.grad_sample (shape [batch, *p.shape]): compute them with "
    "optreg.optim.per_sample_grads(model, loss_fn, inputs, targets) before step(), or in the closure "
    "given to step(closure)"
)


class DPSGD(OptregOptimizer):
    """DP-SGD (Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang 2016, "Deep Learning with
    Differential Privacy", arXiv:1607.00133), as ``optax.contrib.dpsgd``.

    Per step, with per-sample gradients ``g_i`` (``p.grad_sample[i]``, i = 1..B) of every parameter,
    ``C = l2_norm_clip`` and ``sigma = noise_multiplier``::

        n_i  = sqrt(sum over parameters of ||g_i||^2)       (each example's norm over the whole model)
        g~   = (sum_i g_i * min(1, C / n_i) + sigma * C * xi) / B,   xi ~ N(0, I)   (per parameter)
        buf <- momentum * buf + g~                          (optax's trace; no buffer when momentum = 0)
        p   <- p - lr * (g~ + momentum * buf  if nesterov  else  buf)

    The per-sample gradients come from ``p.grad_sample`` (the contract: ``per_sample_grads(model,
    loss_fn, *batch)`` sets them, or any tool that does, e.g. Opacus's hooks); ``p.grad`` is not read.
    They are cleared after the step (a step never reuses them). A parameter with no ``grad_sample``
    does not move and does not count in the norms. ``min(1, C / n_i)`` is computed as
    ``1 / max(1, n_i / C)``, as optax does. The noise of parameter ``j`` at step ``t`` is drawn from
    the stream ``(seed, t, j)``: a resumed run draws what the unbroken run drew. Leave ``seed`` unset
    for a secret random seed (kept in the param groups, so a checkpoint resumes it). No privacy
    accounting: the (epsilon, delta) of a run follow from ``sigma``, the sampling rate and the number
    of steps, which an accountant (e.g. Opacus's RDP accountant) computes; batches must be sampled as
    the accountant assumes (Poisson sampling) for its numbers to hold. Complex parameters are refused.
    The state (``step``, ``momentum_buffer``) is created with the optimizer.
    """

    supports_step_factor = False

    def __init__(
        self,
        params: Any,
        lr: float = 0.1,
        l2_norm_clip: float = 1.0,
        noise_multiplier: float = 1.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        seed: int | None = None,
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("l2_norm_clip", l2_norm_clip, gt=0)
        check_number("noise_multiplier", noise_multiplier, ge=0)
        check_number("momentum", momentum, ge=0, lt=1)
        if seed is not None:
            check_number("seed", seed, ge=0)
        if nesterov and momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        params = list(params)
        for group in params if params and isinstance(params[0], dict) else [{"params": params}]:
            refuse_complex(group["params"], "dpsgd", "the per-example norms and the noise are of real coordinates")
        self.noise_multiplier = float(noise_multiplier)
        defaults = {"lr": lr, "l2_norm_clip": l2_norm_clip, "momentum": momentum, "nesterov": nesterov,
                    "seed": int(seed) if seed is not None else secrets.randbits(63)}
        super().__init__(params, defaults)
        self._init_state()

    def _init_state(self) -> None:
        """State is created with the optimizer (torch.distributed.checkpoint then needs no priming step)."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if p.requires_grad and "step" not in state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    if group["momentum"] != 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        refuse_complex(param_group["params"] if not isinstance(param_group["params"], torch.Tensor)
                       else [param_group["params"]], "dpsgd", "the norms and the noise are of real coordinates")
        super().add_param_group(param_group)
        if hasattr(self, "noise_multiplier"):  # not during torch's constructor
            self._init_state()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One DP-SGD step from ``p.grad_sample`` (see the class doc); ``closure`` may compute them."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index, entries = 0, []
        for group in self.param_groups:
            for p in group["params"]:
                sample = getattr(p, "grad_sample", None)
                if sample is not None:
                    entries.append((index, p, group, sample))
                elif p.grad is not None:
                    raise RuntimeError(f"{CONTRACT}; got a parameter with .grad but no .grad_sample")
                index += 1
        if not entries:
            return loss
        sizes = {sample.shape[0] for _, _, _, sample in entries}
        if len(sizes) != 1:
            raise ValueError(f"dpsgd: every grad_sample must hold the same number of examples, got {sorted(sizes)}")
        for _, p, _, sample in entries:
            if tuple(sample.shape[1:]) != tuple(p.shape):
                raise ValueError(f"dpsgd: grad_sample of shape {tuple(sample.shape)} for a parameter of shape "
                                 f"{tuple(p.shape)}; expected [batch, *p.shape]")
        batch = sizes.pop()
        acc = torch.float64 if any(p.dtype == torch.float64 for _, p, _, _ in entries) else torch.float32
        squares = sum(real_view(s).reshape(batch, -1).to(acc).pow(2).sum(1) for _, _, _, s in entries)
        norms = squares.sqrt()
        for index, p, group, sample in entries:
            clip = group["l2_norm_clip"]
            factors = 1.0 / torch.clamp(norms / clip, min=1.0)
            summed = torch.einsum("b,b...->...", factors.to(sample.dtype), sample)
            state = self.state[p]
            state["step"] += 1
            if self.noise_multiplier != 0:
                noise = noise_like(p, int(group["seed"]), int(state["step"]), index)
                summed.add_(noise, alpha=self.noise_multiplier * clip)
            update = summed.div_(batch)
            momentum = group["momentum"]
            if momentum != 0:
                buf = state.setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))
                buf.mul_(momentum).add_(update)
                update = update.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(update, alpha=-float(group["lr"]))
            p.grad_sample = None
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``, and the per-sample gradients dropped."""
        super().zero_grad(set_to_none=set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if getattr(p, "grad_sample", None) is not None:
                    p.grad_sample = None
