"""GaLore: gradient low-rank projection around any optimizer (Zhao et al. 2024, arXiv:2403.03507)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from optreg.optim import check_number, refuse_complex
from optreg.specs import MAX_COUNT, MAX_STEPS
from optreg_contrib.optim._proxy import ProxyOptimizer

__all__ = ["GaLore", "galore_projection"]


def galore_projection(grad: torch.Tensor, rank: int) -> torch.Tensor:
    """The projection of a gradient ``grad`` (m x n): its top ``rank`` right singular vectors ``V_r^T``
    (r x n) when m >= n, its top ``rank`` left singular vectors ``U_r`` (m x r) otherwise; in
    ``grad``'s dtype, from an SVD in float32 (float64 for float64 gradients). A non-finite gradient gives a
    NaN projection (the NaN shows in the parameter, as with torch.optim), not an SVD error."""
    r = min(rank, *grad.shape)
    m, n = grad.shape
    if not bool(torch.isfinite(grad).all()):  # no SVD of a non-finite matrix: the NaN reaches the parameter
        return torch.full((r, n) if m >= n else (m, r), float("nan"), dtype=grad.dtype, device=grad.device)
    work = grad.to(torch.promote_types(grad.dtype, torch.float32))
    u, _, vh = torch.linalg.svd(work, full_matrices=False)
    projection = vh[:r, :] if m >= n else u[:, :r]
    # a copy: the slice alone would keep the SVD's whole min(m, n)^2 factor alive as state (64 MiB instead of
    # 2 MiB for a 4096 x 4096 matrix at rank 128)
    return projection.to(grad.dtype, copy=True)


class GaLore(ProxyOptimizer):
    """GaLore (Zhao, Zhang, Chen, Wang, Anandkumar & Tian 2024, arXiv:2403.03507) around an inner optimizer.

    For a matrix parameter ``W`` (m x n, in a group with ``galore = True``: the hidden matrices) with
    gradient ``G``, ``r = min(rank, m, n)`` and ``t`` the number of steps ``W`` has taken::

        every update_proj_gap steps (t % update_proj_gap == 0):
            U, S, V^T = svd(G)
            P = V^T[:r, :]  if m >= n  else  U[:, :r]
        R = G @ P^T  if m >= n  else  P^T @ G              (the low-rank gradient: m x r or r x n)
        q <- 0;  q <- inner_update(q, R)                    (the inner optimizer's step on a low-rank
                                                             coordinate q; its state lives there)
        W <- W * (1 - lr * weight_decay)                    (the group's decay, decoupled, on W)
        W <- W + scale * (q @ P  if m >= n  else  P @ q)    (the update projected back)

    With the default inner ``adamw`` the update is GaLore-AdamW's ``-lr * scale * P(m_hat / (sqrt(v_hat) + eps))``.
    As the authors' code: the inner state is not reset when the projection changes, the SVD runs in
    float32 and ``P`` is kept in the parameter's dtype. Differences: the inner AdamW is torch's (eps
    added to the bias-corrected ``sqrt(v_hat)``, where the authors' transformers-style AdamW adds it
    before bias correction), and the decay is applied before the update (torch's AdamW order; the
    authors' code decays the updated ``W``). Other parameters step with the inner optimizer unchanged.
    State per matrix: the inner optimizer's state (low-rank), ``galore_projection`` and ``galore_step``.
    """

    def __init__(
        self,
        params: Any,
        build_inner: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
        *,
        rank: int = 128,
        update_proj_gap: int = 200,
        scale: float = 0.25,
    ) -> None:
        check_number("rank", rank, ge=1, le=MAX_COUNT)
        check_number("update_proj_gap", update_proj_gap, ge=1, le=MAX_STEPS)
        check_number("scale", scale, gt=0)
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            refuse_complex(group["params"], "galore", "the projection is a real SVD; wrap galore in split_complex")
        self.rank = int(rank)
        self.update_proj_gap = int(update_proj_gap)
        self.scale = float(scale)
        self._init_transient()
        super().__init__(groups, build_inner)

    TRANSIENT = ("_projections",)

    def _init_transient(self) -> None:
        self._projections: dict[int, torch.Tensor] = {}
        super()._init_transient()

    def _projected(self, p: torch.Tensor, group: Mapping[str, Any]) -> bool:
        return p.ndim == 2 and bool(group.get("galore", True)) and p.numel() > 0

    def _make_proxy(self, p: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
        if not self._projected(p, group):
            return p
        m, n = p.shape
        r = min(self.rank, m, n)
        return torch.zeros((m, r) if m >= n else (r, n), dtype=p.dtype, device=p.device)

    def _proxy_grad(self, p: torch.Tensor, proxy: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        state = self.state[p]
        grad = p.grad
        if state.get("galore_step", 0) % self.update_proj_gap == 0:
            projection = galore_projection(grad, self.rank)
        else:
            projection = state["galore_projection"]
        # kept out of the state until the inner step ran: an inner optimizer initializes an empty state
        self._projections[id(p)] = projection
        proxy.zero_()  # the inner step starts from 0: its result is the update
        return grad @ projection.T if p.shape[0] >= p.shape[1] else projection.T @ grad

    def _after_inner_step(self, pairs: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]) -> None:
        for p, q, group in pairs:
            if q is p:
                continue
            state = self.state[p]
            projection = state["galore_projection"] = self._projections.pop(id(p))
            update = q @ projection if p.shape[0] >= p.shape[1] else projection @ q
            decay = group.get("weight_decay", 0.0)
            if decay:
                p.mul_(1 - float(group["lr"]) * decay)
            p.add_(update, alpha=self.scale)
            state["galore_step"] = state.get("galore_step", 0) + 1  # an int: torch's load casts no int
        self._projections.clear()
