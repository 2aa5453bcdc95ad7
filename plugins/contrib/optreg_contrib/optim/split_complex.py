"""split_complex: any optimizer on complex parameters as their real and imaginary parts (optax's
``split_real_and_imaginary``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from optreg_contrib.optim._proxy import ProxyOptimizer

__all__ = ["SplitComplex"]


class SplitComplex(ProxyOptimizer):
    """Steps every complex parameter ``z`` as ``x = torch.view_as_real(z)`` with the inner optimizer.

    For a complex ``z = a + ib`` with gradient ``g_a + i g_b`` (torch's convention: the conjugate
    Wirtinger gradient, what ``loss.backward()`` leaves in ``z.grad``), the inner optimizer sees two
    independent real coordinates::

        x      = view_as_real(z)            (shape [..., 2]: a and b; a view, so updating x updates z)
        x.grad = view_as_real(z.grad)       (g_a and g_b)
        x     <- inner_update(x, x.grad)    (any registered optimizer; its state has x's real shape)

    Real parameters go to the inner optimizer unchanged. This is ``optax.contrib.split_real_and_imaginary``;
    the difference from an optimizer's own complex handling is in norms and nonlinear statistics: an
    optimizer that steps ``z`` directly may take ``|g|^2`` per complex entry (Adam's ``g * conj(g)``)
    where the split form keeps ``g_a^2`` and ``g_b^2`` apart. ``step(step_factor=t)`` is passed to the
    inner optimizer (when it supports it). The state dict holds the inner optimizer's state under each
    complex parameter, with the real view's shape.
    """

    def __init__(self, params: Any, build_inner: Callable[[list[dict[str, Any]]], torch.optim.Optimizer]) -> None:
        super().__init__(params, build_inner)
        self.supports_step_factor = bool(getattr(self.inner, "supports_step_factor", False))

    def _make_proxy(self, p: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
        # a leaf tensor sharing p's storage: the inner optimizer's in-place updates reach p
        return torch.view_as_real(p.detach()) if p.is_complex() else p

    def _proxy_grad(self, p: torch.Tensor, proxy: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return torch.view_as_real(p.grad)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """One step of the inner optimizer on the real views; ``step_factor`` needs an inner optimizer that takes it."""
        if step_factor is not None and not self.supports_step_factor:
            raise TypeError(
                f"step_factor needs an inner optimizer that supports it; {type(self.inner).__name__} does not"
            )
        return super().step(closure, step_factor=step_factor)
