"""SAM and adaptive SAM around any optimizer (Foret et al. 2021, arXiv:2010.01412; Kwon et al. 2021,
arXiv:2102.11600)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optreg.optim import (
    WrappedOptimizer,
    accumulate_dtype,
    check_number,
    give_loss,
    params_with_grads,
    real_view,
    reduced,
)

__all__ = ["SAM"]

CLOSURE_CONTRACT = (
    "the closure must zero the gradients, compute the loss, call loss.backward() and return the loss; "
    "SAM calls it twice per step (at p, then at p + e)"
)


class SAM(WrappedOptimizer):
    """Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur 2021, arXiv:2010.01412) around
    ``inner``; adaptive SAM (ASAM, Kwon, Kim, Park & Choi 2021, arXiv:2102.11600) with ``adaptive``.

    ``step(closure)``, with ``g`` the gradient the closure leaves at ``p`` (``-g`` in a group with
    ``maximize``: the ascent is on the objective the inner optimizer minimizes), ``T = |p| + eta``
    for ASAM and ``T = 1`` for SAM, and the norm over every parameter::

        loss = closure()                                   (gradients g at p)
        e    = rho * T^2 * g / (||T * g|| + eps)           (||.||: sqrt of the sum of squared per-tensor norms)
        p   <- p + e
        closure()                                          (gradients g' at p + e)
        p   <- p before the step                           (restored exactly, not p - e)
        inner.step() with g'
        return loss                                        (the first pass's loss: the loss at p)

    As the reference implementation of Foret et al.'s rule (davda54/sam, which ASAM's ``eta = 0``
    matches); ASAM's code also adds ``eta`` (0.01 there) to ``|p|``. Complex parameters enter as
    their real views (``|p|`` per real and imaginary part). Gradients that are None at ``p`` stay
    None; the closure must recompute the gradients (SAM clears them before the second pass and
    raises if none came back). ``step()`` without a closure is refused unless every gradient is zero
    (then ``e = 0`` and the step is the inner step: how torch.distributed.checkpoint initializes
    state). Under sharding the norm is global (``reduced``).
    """

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        eps: float = 1e-12,
    ) -> None:
        check_number("rho", rho, gt=0)
        check_number("eta", eta, ge=0)
        check_number("eps", eps, gt=0)
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eta = float(eta)
        self.eps = float(eps)
        super().__init__(inner)
        self.supports_step_factor = False

    def _ascent(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Move every parameter with a gradient to ``p + e``; return (param, its value before)."""
        params = [(p, -1.0 if group.get("maximize", False) else 1.0)
                  for group in self.param_groups for p in params_with_grads(group)]
        if not params:
            return []
        scaled = []
        for p, _ in params:
            g = real_view(p.grad)
            if self.adaptive:
                g = g * (real_view(p).abs() + self.eta)
            scaled.append(g)
        acc = torch.float64 if any(p.dtype in (torch.float64, torch.complex128) for p, _ in params) else None
        norms = [reduced(torch.linalg.vector_norm(g, dtype=acc or accumulate_dtype(g))) for g in scaled]
        device = norms[0].device
        norm = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
        scale = self.rho / (norm + self.eps)
        saved = []
        for (p, sign), g in zip(params, scaled):
            e = g * (real_view(p).abs() + self.eta) if self.adaptive else g
            e = e * scale.to(device=e.device, dtype=e.dtype)
            saved.append((p, p.detach().clone(memory_format=torch.preserve_format)))
            view = real_view(p)
            if sign > 0:
                view.add_(e)
            else:
                view.sub_(e)
        return saved

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """The two-pass SAM step (see the class doc); needs ``closure``."""
        if step_factor is not None:
            raise TypeError("sam does not support step_factor")
        if closure is None:
            grads = [p.grad for group in self.param_groups for p in params_with_grads(group)]
            if any(bool(g.any()) for g in grads):
                raise RuntimeError(f"sam needs step(closure): {CLOSURE_CONTRACT}")
            self.inner.step()  # zero gradients: e = 0, so the SAM step is the inner step (DCP's state init)
            return None
        with torch.enable_grad():
            loss = closure()
        saved = self._ascent()
        if saved:
            for p, _ in saved:
                p.grad = None
            try:
                with torch.enable_grad():
                    closure()
            finally:
                for p, before in saved:
                    p.copy_(before)
            if all(p.grad is None for p, _ in saved):
                raise RuntimeError(f"sam: the closure left no gradients in its second pass: {CLOSURE_CONTRACT}")
        if loss is not None:
            give_loss(self.inner, loss)
        self.inner.step()
        return loss
