"""Prodigy: Adam whose step size ``d`` is estimated on the fly (Mishchenko & Defazio 2023, arXiv:2306.06101)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.compiling import CompileSetting, flat
from optreg.optim import (
    check_betas,
    check_number,
    gate_grad,
    inner_product,
    is_sharded,
    keep_factor,
    params_with_grads,
    real_view,
)
from optreg.specs import MAX_COUNT
from optreg_paramfree.optim._common import (
    CompiledPass,
    GlobalSums,
    ScopedScalarOptimizer,
    adam_coefficients,
    add_scaled_,
    axpby_,
    check_growth_rate,
    compilable,
    ema_square_,
    l1_norm,
    local,
)
from optreg_paramfree.optim._kernels import prodigy_moments_, prodigy_update_

__all__ = ["Prodigy"]


class Prodigy(ScopedScalarOptimizer):
    """Prodigy (Mishchenko & Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
    arXiv:2306.06101): Adam whose step size ``d`` is estimated from the distance travelled.

    Per step, over the groups of a scope (all groups, or each alone with ``per_group_d``) whose ``lr``
    is not 0, with ``g`` the gradient (``+ weight_decay * p`` when not ``decouple``),
    ``dlr = d * lr * bc`` (``bc = sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1))`` with
    ``use_bias_correction``, else 1) and ``beta3 = sqrt(beta2)`` unless set; ``r``, ``s`` and ``p0``
    (the initial point) see every ``slice_p``-th element of the flattened parameter (with ``slice_p = 1``
    ``s`` and ``p0`` are shaped like it, so a sharded run shards them alike)::

        r     <- beta3 * r + sum over params of (d / d0) * dlr * <g, p0 - p>
        m     <- beta1 * m + (1 - beta1) * d * g
        v     <- beta2 * v + (1 - beta2) * d^2 * g^2
        s     <- beta3 * s + (d / d0) * dlr * g            (safeguard_warmup: d in place of dlr)
        d_hat  = d_coef * r / sum over params of |s|
        d_max <- max(d_max, d_hat)
        d'     = max(d, d_hat) if d == d0 else d
        d_new <- min(d_max, growth_rate * d')              (d_max when growth_rate is unset)
        p     <- p - dlr * weight_decay * p                (decouple)
        p     <- p - dlr * m / (sqrt(v) + d_new * eps)     (beta1 = 0: p - dlr * d_new * g / (...))

    ``dlr`` uses the ``d`` before the update, the denominator the new one, as in the authors'
    ``prodigyopt``, which the tests match over 50 steps. Where it differs: each group's ``lr``
    multiplies ``d`` for that group (prodigyopt raises unless every ``lr`` is equal or 0);
    ``per_group_d`` gives each group its own ``d``; a group at ``lr = 0`` neither moves nor feeds
    ``d``; ``d`` and its statistics are 0-dim tensors (no ``.item()`` per parameter per step) and
    ``step(step_factor=t)`` skips a step without a host sync; ``p.grad`` is never modified. A step
    whose ``sum |s|`` is 0 leaves ``d`` and ``k`` as they are. ``param_groups[i]["d"]`` (and
    :attr:`d`) is the current estimate.

    Under sharding (FSDP, HSDP, TP: DTensor params) both sums are global: every rank reduces its
    shards and one all-reduce per step completes them. ``slice_p > 1`` indexes the flattened parameter
    globally: it is refused for a parameter split across ranks (a ``ValueError`` naming the mesh
    dimension), and works on the local tensor of one every rank holds whole.

    ``compile`` (``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``) runs each pass over
    the parameters as one fused kernel per tensor through ``torch.compile``: the moments, ``s`` and the
    tensor's share of both sums, then the update. Sharded, non-contiguous and ``slice_p > 1`` tensors step
    eagerly; the result is the eager one up to float rounding.
    """

    SCALARS = ("d", "d_max", "d_numerator", "k")
    STEP_SCALAR = "d"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float | None = None,
        slice_p: int = 1,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_betas(betas, 2)
        if beta3 is not None:
            check_number("beta3", beta3, ge=0, lt=1)
        check_number("eps", eps, ge=0)
        check_number("weight_decay", weight_decay, ge=0)
        check_number("d0", d0, gt=0)
        check_number("d_coef", d_coef, gt=0)
        check_growth_rate(growth_rate)
        check_number("slice_p", slice_p, ge=1, le=MAX_COUNT)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "beta3": beta3,
            "eps": eps,
            "weight_decay": weight_decay,
            "decouple": decouple,
            "use_bias_correction": use_bias_correction,
            "safeguard_warmup": safeguard_warmup,
            "d0": d0,
            "d_coef": d_coef,
            "growth_rate": growth_rate,
            "slice_p": int(slice_p),
        }
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        return {"d": group["d0"], "d_max": group["d0"], "d_numerator": 0.0, "k": 0.0}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["slice_p"] > 1:
            try:
                for p in group["params"]:
                    _check_whole(p, group["slice_p"])
            except ValueError:
                self.param_groups.pop()
                raise

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        super()._after_load_state_dict(state_dict)
        # Before sharding support, s and p0 were flat for slice_p = 1 too: give them the param's shape.
        for group in self.param_groups:
            if group["slice_p"] != 1:
                continue
            for p in group["params"]:
                state = self.state.get(p, {})
                shape = (*p.shape, 2) if p.is_complex() else p.shape
                for key in ("s", "p0"):
                    value = state.get(key)
                    if value is not None and value.dim() == 1 and value.shape != shape and not is_sharded(value):
                        state[key] = value.reshape(shape)  # a flat s of another slice_p fails here, as at the step

    @property
    def d(self) -> float | list[float]:
        """The current ``d``: one number, or one per group with ``per_group_d``."""
        return self._estimate("d")

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        d, d_max, numerator, k = (leader[key] for key in self.SCALARS)
        d0, d_coef, growth = leader["d0"], leader["d_coef"], leader["growth_rate"]
        beta3 = leader["beta3"] if leader["beta3"] is not None else math.sqrt(leader["betas"][1])
        safeguard = leader["safeguard_warmup"]
        sf = self._gate(step_factor, d)
        zero = torch.zeros_like(d)

        sums, any_active = GlobalSums(d, 2), zero  # d's numerator and denominator
        compiling, keep = self.compiling(), sf != 0
        moments = CompiledPass(prodigy_moments_, 2, d)
        plans = []
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            beta1, beta2, active, gate, dlr, keep1, keep2 = adam_coefficients(group, d, k, sf, self._lr_of(group, d))
            any_active = torch.maximum(any_active, active)
            keep3 = keep_factor(gate, beta3)
            c1 = d * (1 - beta1) * gate  # Adam's moments average d * g (as in prodigyopt)
            c2 = d * d * (1 - beta2) * gate
            c_num = (d / d0) * dlr * gate
            c_s = (d / d0) * (d if safeguard else dlr) * gate
            decay, decouple, slice_p = group["weight_decay"], group["decouple"], group["slice_p"]
            l2 = decay if decay != 0 and not decouple else 0.0
            fused = []
            for p in params:
                param, state = real_view(p), self.state[p]
                if slice_p == 1:  # shaped like the param: a DTensor's statistics are sharded as it is
                    param_slice = param
                else:  # an index into the whole flattened param: plain, or a DTensor every rank holds whole
                    param_slice = local(param).reshape(-1)[::slice_p]
                if "exp_avg_sq" not in state:
                    state["s"] = torch.zeros_like(param_slice, memory_format=torch.contiguous_format)
                    state["p0"] = param_slice.detach().clone(memory_format=torch.contiguous_format)
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s, p0 = state["s"], state["p0"]
                exp_avg = real_view(state["exp_avg"]) if beta1 > 0 else None
                exp_avg_sq = real_view(state["exp_avg_sq"])
                raw = real_view(p.grad)
                tensors = (param, raw, exp_avg, exp_avg_sq, s, p0)
                fused.append(compiling and slice_p == 1 and compilable(d.device, *tensors))
                if fused[-1]:
                    moments.add(flat(param), flat(raw), flat(exp_avg), flat(exp_avg_sq), flat(s), flat(p0),
                                keep, keep1, c1, keep2, c2, keep3, c_num, c_s, active, l2)
                    continue
                grad = raw.add(param, alpha=decay) if l2 != 0 else raw
                grad = gate_grad(grad, step_factor)
                grad_slice = grad if slice_p == 1 else local(grad).reshape(-1)[::slice_p]
                diff = torch.sub(p0, param_slice, out=self.scratch.get(p0))
                sums.add(0, c_num * inner_product(local(grad_slice), local(diff)), diff)
                if exp_avg is not None:
                    axpby_(exp_avg, keep1, grad, c1)
                ema_square_(exp_avg_sq, keep2, grad, c2, self.scratch.get(param, 1))
                axpby_(s, keep3, grad_slice, c_s)
                sums.add(1, active * l1_norm(local(s), local(diff)), diff)
            plans.append((group, params, dlr, active, fused))
        moments.run(sums)

        delta_numerator, d_denom = sums.totals()
        new_numerator = numerator * beta3 + delta_numerator
        # `!= 0`, not `> 0`: a NaN sum (a NaN gradient) must reach d, not skip the update as "no progress".
        progress = (d_denom != 0).to(d.dtype)
        d_hat = d_coef * new_numerator / torch.where(progress != 0, d_denom, torch.ones_like(d_denom))
        new_d_max = torch.maximum(d_max, d_hat)
        new_d = torch.where(d == d0, torch.maximum(d, d_hat), d)
        new_d = new_d_max if growth is None else torch.minimum(new_d_max, new_d * growth)
        take = sf * progress
        move_d = (take * any_active) != 0
        d_next = torch.where(move_d, new_d, d)
        self._write(
            scope,
            {
                "d": d_next,
                "d_max": torch.where(move_d, new_d_max, d_max),
                "d_numerator": torch.where(take != 0, new_numerator, numerator),
                "k": k + take,
            },
        )

        update = CompiledPass(prodigy_update_)
        for group, params, dlr, active, fused in plans:
            move = take * active
            eps, decay, decouple = group["eps"], group["weight_decay"], group["decouple"]
            beta1 = group["betas"][0]
            l2 = decay if decay != 0 and not decouple else 0.0
            eps_d = d_next * eps
            c_decay = -decay * dlr * move if decay != 0 and decouple else None
            c_step = -dlr * move if beta1 > 0 else -dlr * d_next * move
            for p, compiled in zip(params, fused):
                param, state = real_view(p), self.state[p]
                exp_avg = real_view(state["exp_avg"]) if beta1 > 0 else None
                exp_avg_sq = real_view(state["exp_avg_sq"])
                if compiled:
                    update.add(flat(param), flat(real_view(p.grad)), flat(exp_avg), flat(exp_avg_sq),
                               keep, eps_d, c_decay, c_step, l2)
                    continue
                denom = torch.sqrt(exp_avg_sq, out=self.scratch.get(param)).add_(eps_d)
                if c_decay is not None:
                    add_scaled_(param, param, c_decay)
                if exp_avg is not None:
                    add_scaled_(param, torch.div(exp_avg, denom, out=denom), c_step)
                else:
                    grad = real_view(p.grad)
                    if l2 != 0:
                        grad = grad.add(param, alpha=decay)
                    grad = gate_grad(grad, step_factor)
                    add_scaled_(param, torch.div(grad, denom, out=denom), c_step)
        update.run()


def _check_whole(p: torch.Tensor, slice_p: int) -> None:
    """Refuse ``slice_p > 1`` for a parameter split across ranks (its flattened index is global)."""
    if not is_sharded(p):
        return
    mesh = p.device_mesh
    names = mesh.mesh_dim_names or tuple(f"dim {i}" for i in range(mesh.ndim))
    split = [names[i] for i, placement in enumerate(p.placements) if not placement.is_replicate() and mesh.size(i) > 1]
    if split:
        raise ValueError(
            f"Prodigy's slice_p = {slice_p} keeps one element in every {slice_p} of the whole flattened parameter, "
            f"but a parameter of shape {tuple(p.shape)} is split across ranks on the mesh dimension "
            f"{' and '.join(repr(n) for n in split)} (fsdp and hsdp shard on 'shard', tp on 'tp'), so no rank sees "
            "the whole; use slice_p = 1 with fsdp, hsdp or tp (under ddp, and for a parameter every rank holds "
            "whole, any slice_p works)"
        )
