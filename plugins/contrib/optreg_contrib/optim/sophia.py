"""Sophia-H (Liu, Li, Hall, Liang & Ma 2023, arXiv:2305.14342)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from optreg.optim import OptregOptimizer, check_betas, check_number, refuse_complex
from optreg.specs import MAX_STEPS
from optreg_contrib.optim._noise import noise_like

__all__ = ["Sophia"]

GRAPH_CONTRACT = (
    "give step() a closure that computes the loss and calls loss.backward() (on Hessian steps Sophia makes "
    "that backward build the graph), or call loss.backward(create_graph=True) yourself before step()"
)


class _CreateGraph(TorchFunctionMode):
    """Makes every ``backward`` called under it build the graph of the gradients (``create_graph=True``)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.backward or func is torch.autograd.backward:
            kwargs["create_graph"] = True
            with warnings.catch_warnings():  # torch warns of the param <-> grad cycle; Sophia detaches the grads
                warnings.filterwarnings("ignore", message=".*create_graph=True.*")
                return func(*args, **kwargs)
        return func(*args, **kwargs)


class Sophia(OptregOptimizer):
    """Sophia-H (Liu, Li, Hall, Liang & Ma 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for
    Language Model Pre-training", arXiv:2305.14342, Algorithm 3 with Hutchinson's estimator).

    Per step ``t`` (1-based, counted per parameter), with ``g`` the gradient (``-g`` with ``maximize``)::

        m <- beta1 * m + (1 - beta1) * g
        if t % update_interval == 1 (or update_interval == 1):
            u     ~ N(0, I)   (or Rademacher +-1)            (seeded: stream (seed, t, parameter index))
            h_hat = u * (H u)                                 (H u: a Hessian-vector product, by autograd)
            h    <- beta2 * h + (1 - beta2) * h_hat
        p <- p * (1 - lr * weight_decay)
        p <- p - lr * clip(m / max(gamma * h, eps), -rho, rho)

    ``H u`` differentiates the gradients once more, so on a Hessian step they must carry their graph:
    ``step(closure)`` runs the closure (which computes the loss and calls ``loss.backward()``) with
    every ``backward`` building the graph, or the caller ran ``loss.backward(create_graph=True)``;
    otherwise the step raises (unless every gradient is zero: then ``h`` is kept). The Hessian-vector
    product covers the parameters due for an estimate (all of them unless some joined later).
    Afterwards the gradients are detached (the graph is freed). The state (``step``, ``exp_avg``,
    ``hessian``) is created with the optimizer.

    As the paper (the estimate enters the update of the step that takes it; no bias correction).
    ``optax.contrib.sophia_h`` differs: its momentum is bias-corrected, each step uses the Hessian EMA
    of the previous estimate (the first update divides by ``eps``), and its probes are Rademacher.
    pytorch-optimizer's ``SophiaH`` is this rule with ``gamma = 1`` (its ``p`` is ``rho``).
    Complex parameters are refused.
    """

    supports_step_factor = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 1.0,
        gamma: float = 0.01,
        eps: float = 1e-12,
        weight_decay: float = 1e-4,
        update_interval: int = 10,
        distribution: str = "gaussian",
        seed: int = 0,
        maximize: bool = False,
    ) -> None:
        check_number("lr", lr, ge=0)
        check_betas(betas, 2)
        check_number("rho", rho, gt=0)
        check_number("gamma", gamma, gt=0)
        check_number("eps", eps, gt=0)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("update_interval", update_interval, ge=1, le=MAX_STEPS)
        check_number("seed", seed, ge=0)
        if distribution not in ("gaussian", "rademacher"):
            raise ValueError(f"distribution must be one of 'gaussian', 'rademacher', got {distribution!r}")
        params = list(params)
        for group in params if params and isinstance(params[0], dict) else [{"params": params}]:
            refuse_complex(group["params"], "sophia", "the Hessian estimate is of real coordinates")
        self.update_interval = int(update_interval)
        self.distribution = distribution
        self.seed = int(seed)
        defaults = {"lr": lr, "betas": tuple(betas), "rho": rho, "gamma": gamma, "eps": eps,
                    "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)
        self._init_state()

    def _init_state(self) -> None:
        """State is created with the optimizer (torch.distributed.checkpoint then needs no priming step)."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if p.requires_grad and "step" not in state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        refuse_complex(param_group["params"] if not isinstance(param_group["params"], torch.Tensor)
                       else [param_group["params"]], "sophia", "the Hessian estimate is of real coordinates")
        super().add_param_group(param_group)
        if hasattr(self, "update_interval"):  # not during torch's constructor
            self._init_state()

    def _indexed(self) -> list[tuple[int, torch.Tensor, dict[str, Any]]]:
        out, index = [], 0
        for group in self.param_groups:
            for p in group["params"]:
                out.append((index, p, group))
                index += 1
        return out

    def _due(self, p: torch.Tensor) -> bool:
        """Whether ``p``'s next step estimates the Hessian."""
        return int(self.state[p].get("step", 0)) % self.update_interval == 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Sophia-H step; on Hessian steps the closure's backward builds the graph (see the class doc)."""
        trainable = [(i, p, g) for i, p, g in self._indexed() if p.requires_grad]
        due_any = any(self._due(p) for _, p, _ in trainable)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                if due_any:
                    with _CreateGraph():
                        loss = closure()
                else:
                    loss = closure()
        stepped = [(i, p, g) for i, p, g in trainable if p.grad is not None]
        for _, p, _ in stepped:
            if p.grad.is_sparse:
                raise RuntimeError("sophia does not support sparse gradients")
        estimates = self._hessian_estimates([(i, p, g) for i, p, g in stepped if self._due(p)])
        for _, p, _ in stepped:
            if p.grad.requires_grad:
                p.grad = p.grad.detach()
        for index, p, group in stepped:
            self._update(p, group, estimates.get(index))
        return loss

    def _hessian_estimates(self, due: list[tuple[int, torch.Tensor, dict[str, Any]]]) -> dict[int, torch.Tensor]:
        if not due:
            return {}
        missing = [i for i, p, _ in due if p.grad.grad_fn is None]
        if missing and not any(bool(p.grad.any()) for _, p, _ in due):
            return {}  # zero gradients and no graph (torch.distributed.checkpoint's priming step): h is kept
        if missing:
            for _, p, _ in due:
                p.grad = p.grad.detach()
            raise RuntimeError(
                f"sophia: this step estimates the Hessian, but the gradients carry no graph: {GRAPH_CONTRACT}"
            )
        probes = [
            noise_like(p, self.seed, int(self.state[p].get("step", 0)) + 1, i, kind=self.distribution)
            for i, p, _ in due
        ]
        with torch.enable_grad():
            products = torch.autograd.grad(
                [p.grad for _, p, _ in due], [p for _, p, _ in due], grad_outputs=probes, allow_unused=True
            )
        out = {}
        for (i, p, group), u, hu in zip(due, probes, products):
            h_hat = torch.zeros_like(p) if hu is None else u * hu
            out[i] = h_hat.neg_() if group["maximize"] else h_hat
        return out

    def _update(self, p: torch.Tensor, group: dict[str, Any], h_hat: torch.Tensor | None) -> None:
        beta1, beta2 = group["betas"]
        lr = float(group["lr"])
        state = self.state[p]
        state["step"] += 1
        grad = -p.grad if group["maximize"] else p.grad
        m, h = state["exp_avg"], state["hessian"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        if h_hat is not None:
            h.mul_(beta2).add_(h_hat, alpha=1 - beta2)
        if group["weight_decay"] != 0:
            p.mul_(1 - lr * group["weight_decay"])
        ratio = m / torch.clamp(h * group["gamma"], min=group["eps"])
        p.add_(ratio.clamp_(-group["rho"], group["rho"]), alpha=-lr)
