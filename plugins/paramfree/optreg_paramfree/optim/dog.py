"""DoG and DoWG: SGD whose step size is a distance travelled over (weighted) gradient norms.

Norms are taken over a scope: all groups (global DoG, the paper's default) or each group
(``per_group_d``); a group's ``lr`` multiplies ``eta`` for that group. Weight decay is L2 (added to
the gradient before the norms). The update rules are in the class docstrings. Under sharding (FSDP,
HSDP, TP) the norms are global: each rank reduces its shards, one all-reduce per step completes them.

``compile`` (``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``) runs both passes as
fused ``torch.compile`` kernels per tensor (the norms, then the step); sharded and non-contiguous tensors
step eagerly; the result is the eager one up to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch

from optreg.compiling import CompileSetting, flat
from optreg.optim import check_number, gate_grad, inner_product, params_with_grads, real_view
from optreg_paramfree.optim._common import (
    CompiledPass,
    GlobalSums,
    ScopedScalarOptimizer,
    add_scaled_,
    compilable,
    local,
)
from optreg_paramfree.optim._kernels import distance_norms_, sgd_update_

__all__ = ["DoG", "DoWG"]

InitStep = Literal["distance", "learning_rate", "heuristic"]
#: What a scope's first pass hands to the step: per group, the group, its params, ``lr * active`` and which
#: params took the compiled kernels.
Work = list[tuple[dict[str, Any], list[torch.Tensor], torch.Tensor, list[bool]]]


class _DistanceOverGradients(ScopedScalarOptimizer):
    """Shared first pass: ||x - x0||^2 and ||g||^2 over the active groups of a scope."""

    STEP_SCALAR = "eta"

    @property
    def eta(self) -> float | list[float]:
        """The last step size (before each group's ``lr``): one number, or one per group."""
        return self._estimate("eta")

    def _norms(
        self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Work]:
        sums = GlobalSums(like, 3)  # ||x - x0||^2, ||g||^2, ||x0||^2 (on the first step)
        compiling, keep = self.compiling(), self._gate(step_factor, like) != 0
        norms = CompiledPass(distance_norms_, 2, like)
        work = []
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            lr = self._lr_of(group, like)
            active = (lr != 0).to(like.dtype)
            decay = group["weight_decay"]
            fused = []
            for p in params:
                param, state = real_view(p), self.state[p]
                if "x0" not in state:
                    state["x0"] = p.detach().clone(memory_format=torch.preserve_format)
                    sums.add(2, active * inner_product(local(param), local(param)), param)
                raw, x0 = real_view(p.grad), real_view(state["x0"])
                fused.append(compiling and compilable(like.device, param, raw, x0))
                if fused[-1]:
                    norms.add(flat(param), flat(raw), flat(x0), keep, active, float(decay))
                    continue
                grad = gate_grad(raw, step_factor)
                if decay != 0:
                    grad = grad.add(param, alpha=decay)
                diff = torch.sub(param, x0, out=self.scratch.get(param))
                sums.add(0, active * inner_product(local(diff), local(diff)), diff)
                sums.add(1, active * inner_product(local(grad), local(grad)), grad)
            work.append((group, params, lr * active, fused))
        norms.run(sums)
        dist_sq, grad_sq, x0_sq = sums.totals()
        return dist_sq, grad_sq, x0_sq, work

    def _apply(self, work: Work, eta: torch.Tensor, sf: torch.Tensor, step_factor: torch.Tensor | None) -> None:
        keep = sf != 0
        update = CompiledPass(sgd_update_)
        for group, params, lr, fused in work:
            scale = -eta * lr * sf
            decay = group["weight_decay"]
            for p, compiled in zip(params, fused):
                param, raw = real_view(p), real_view(p.grad)
                if compiled:
                    update.add(flat(param), flat(raw), keep, scale, float(decay))
                    continue
                grad = gate_grad(raw, step_factor)
                if decay != 0:
                    grad = grad.add(param, alpha=decay)
                add_scaled_(param, grad, scale)
        update.run()


class DoG(_DistanceOverGradients):
    """DoG, Distance over Gradients (Ivgi, Hinder & Carmon 2023, arXiv:2302.12022, Algorithm 1).

    Per step, over the groups of a scope (all groups: the paper's global DoG; each alone with
    ``per_group_d``) whose ``lr`` is not 0, with ``x0`` the initial point and norms over the scope::

        g     <- g + weight_decay * p
        r_bar <- max(r_bar, ||p - x0||)          (r_bar starts at r_eps)
        G     <- G + ||g||^2
        eta    = r_bar / sqrt(G + eps)
        p     <- p - lr * eta * g

    ``init_step`` sets the first step: ``"heuristic"`` (the paper's) ``r_eps = init_step_value *
    (1 + ||x0||)``, ``"distance"`` ``r_eps = init_step_value``, ``"learning_rate"`` ``r_eps = 0`` and
    ``eta = init_step_value`` on the first step. The current ``eta`` is ``param_groups[i]["eta"]``
    (and :attr:`eta`). The authors' ``dog-optimizer`` makes every param group its own DoG (here
    ``per_group_d``; with one group the two agree, which the tests check over 50 steps). Here each
    group's ``lr`` multiplies ``eta`` and a group at ``lr = 0`` neither moves nor feeds the norms; an
    inf gradient norm makes ``eta`` NaN (not 0, which would silently freeze every parameter); no host
    sync, and ``step_factor``.
    """

    #: compile = "auto" stays eager: compiled, the step measured 2.25-2.31x of fused AdamW's time per byte against
    #: 2.20-2.22x eager
    #: (10 x 1024x1024 fp32, this CPU): its global sums are inductor reductions, slower than eager ones.
    AUTO_COMPILE = False

    SCALARS = ("max_dist", "sum_sq_grad", "eta", "k", "x0_norm_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        init_step: InitStep = "heuristic",
        init_step_value: float = 1e-6,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("init_step_value", init_step_value, gt=0)
        check_number("eps", eps, ge=0)
        check_number("weight_decay", weight_decay, ge=0)
        if init_step not in ("distance", "learning_rate", "heuristic"):
            raise ValueError(f"init_step must be one of 'distance', 'learning_rate', 'heuristic', got {init_step!r}")
        defaults = {
            "lr": lr,
            "init_step": init_step,
            "init_step_value": init_step_value,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        return {"max_dist": 0.0, "sum_sq_grad": 0.0, "eta": 0.0, "k": 0.0, "x0_norm_sq": 0.0}

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        max_dist, sum_sq, eta_old, k, x0_norm_sq = (leader[key] for key in self.SCALARS)
        sf = self._gate(step_factor, max_dist)
        dist_sq, grad_sq, x0_sq_new, work = self._norms(scope, step_factor, max_dist)
        x0_norm_sq = x0_norm_sq + x0_sq_new
        mode, value = leader["init_step"], leader["init_step_value"]
        if mode == "distance":
            r_eps = torch.full_like(max_dist, value)
        elif mode == "heuristic":
            r_eps = value * (1 + torch.sqrt(x0_norm_sq))
        else:
            r_eps = torch.zeros_like(max_dist)
        first = k == 0
        new_max = torch.maximum(torch.where(first, r_eps, max_dist), torch.sqrt(dist_sq))
        new_sum = sum_sq + grad_sq
        # An inf gradient norm would give eta = 0 for good (every param silently frozen): make it NaN instead.
        eta = new_max / torch.sqrt(new_sum + leader["eps"]) + 0 * new_sum
        if mode == "learning_rate":
            eta = torch.where(first, torch.full_like(eta, value), eta)
        take = sf != 0
        self._write(
            scope,
            {
                "max_dist": torch.where(take, new_max, max_dist),
                "sum_sq_grad": torch.where(take, new_sum, sum_sq),
                "eta": torch.where(take, eta, eta_old),
                "k": k + sf,
                "x0_norm_sq": x0_norm_sq,
            },
        )
        self._apply(work, eta, sf, step_factor)


class DoWG(_DistanceOverGradients):
    """DoWG, Distance over Weighted Gradients (Khaled, Mishchenko & Jin 2023, arXiv:2305.16284, Algorithm 1).

    Per step, over the groups of a scope (all groups, or each alone with ``per_group_d``) whose
    ``lr`` is not 0, with ``x0`` the initial point and norms over the scope::

        g   <- g + weight_decay * p
        r2  <- max(r2, ||p - x0||^2)             (r2 starts at init_estim_sq_dist, or eps)
        v   <- v + r2 * ||g||^2
        eta  = r2 / (sqrt(v) + eps)
        p   <- p - lr * eta * g

    The paper's rule with ``eps`` added to the denominator and each group's ``lr`` multiplying
    ``eta`` (a group at ``lr = 0`` neither moves nor feeds the norms). The current ``eta`` is
    ``param_groups[i]["eta"]`` (and :attr:`eta`). An inf gradient norm makes ``eta`` NaN (not 0,
    which would silently freeze every parameter); no host sync, and ``step_factor``.
    """

    #: compile = "auto" stays eager: compiled, the step measured 2.19-2.33x of fused AdamW's time per byte against
    #: 2.13-2.24x eager
    #: (10 x 1024x1024 fp32, this CPU): its global sums are inductor reductions, slower than eager ones.
    AUTO_COMPILE = False

    SCALARS = ("estim_sq_dist", "weighted_sq_grad", "eta")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        init_estim_sq_dist: float | None = None,
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        if init_estim_sq_dist is not None:
            check_number("init_estim_sq_dist", init_estim_sq_dist, gt=0)
        check_number("eps", eps, gt=0)
        check_number("weight_decay", weight_decay, ge=0)
        defaults = {"lr": lr, "init_estim_sq_dist": init_estim_sq_dist, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        init = group["init_estim_sq_dist"]
        return {"estim_sq_dist": group["eps"] if init is None else init, "weighted_sq_grad": 0.0, "eta": 0.0}

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        estim, weighted, eta_old = (leader[key] for key in self.SCALARS)
        sf = self._gate(step_factor, estim)
        dist_sq, grad_sq, _, work = self._norms(scope, step_factor, estim)
        new_estim = torch.maximum(estim, dist_sq)
        new_weighted = weighted + new_estim * grad_sq
        # An inf gradient norm would give eta = 0 for good (every param silently frozen): make it NaN instead.
        eta = new_estim / (torch.sqrt(new_weighted) + leader["eps"]) + 0 * new_weighted
        take = sf != 0
        self._write(
            scope,
            {
                "estim_sq_dist": torch.where(take, new_estim, estim),
                "weighted_sq_grad": torch.where(take, new_weighted, weighted),
                "eta": torch.where(take, eta, eta_old),
            },
        )
        self._apply(work, eta, sf, step_factor)
