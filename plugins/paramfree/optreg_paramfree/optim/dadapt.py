"""D-Adaptation: SGD, AdamW and Lion with an estimated distance to the solution ``d``.

Defazio & Mishchenko 2023, "Learning-Rate-Free Learning by D-Adaptation" (ICML 2023,
arXiv:2301.07733). The updates follow the authors' ``dadaptation`` package (DAdaptSGD, DAdaptAdam,
DAdaptLion); as in :mod:`optreg_paramfree.optim.prodigy` a group's ``lr`` multiplies ``d`` for that
group, ``per_group_d`` gives every group its own estimate, and the estimator's scalars are tensors (no
host sync, ``step_factor`` supported). Under sharding (FSDP, HSDP, TP) every sum over the parameters is
global: each rank reduces its shards, and one all-reduce per step completes them (as the reference does).

``compile`` (``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``) runs each pass over the
parameters as one fused ``torch.compile`` kernel per tensor (``_kernels``): a pass that feeds a sum writes
the tensor's share of it, the last one moves the parameter with the new ``d``. Sharded and non-contiguous
tensors step eagerly; the result is the eager one up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from optreg.compiling import CompileSetting, flat
from optreg.optim import check_betas, check_number, gate_grad, inner_product, keep_factor, params_with_grads, real_view
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
    lr_is_nonzero_number,
    sum_probe,
)
from optreg_paramfree.optim._kernels import (
    dadapt_adam_moments_,
    dadapt_adam_update_,
    dadapt_lion_,
    dadapt_sgd_grad_norm_,
    dadapt_sgd_moments_,
    dadapt_sgd_update_,
)

__all__ = ["DAdaptAdamW", "DAdaptLion", "DAdaptSGD"]


def _check_common(lr: float, weight_decay: float, d0: float, growth_rate: float | None) -> None:
    check_number("lr", lr, ge=0)
    check_number("weight_decay", weight_decay, ge=0)
    check_number("d0", d0, gt=0)
    check_growth_rate(growth_rate)


class _DAdapt(ScopedScalarOptimizer):
    SCALARS = ("d", "numerator_weighted", "k")
    STEP_SCALAR = "d"

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        return {"d": group["d0"], "numerator_weighted": 0.0, "k": 0.0}

    @property
    def d(self) -> float | list[float]:
        """The current ``d``: one number, or one per group with ``per_group_d``."""
        return self._estimate("d")

    @staticmethod
    def _grow(d: torch.Tensor, d_hat: torch.Tensor, growth: float | None) -> torch.Tensor:
        """``max(d, min(d_hat, d * growth_rate))``."""
        return torch.maximum(d, d_hat if growth is None else torch.minimum(d_hat, d * growth))


class DAdaptAdamW(_DAdapt):
    """D-Adaptation Adam (Defazio & Mishchenko 2023, arXiv:2301.07733); AdamW's decoupled decay with ``decouple``.

    Per step, over the groups of a scope (all groups, or each alone with ``per_group_d``) whose ``lr``
    is not 0, with ``g`` the gradient (``+ weight_decay * p`` when not ``decouple``),
    ``b = sqrt(beta2)`` and ``dlr = d * lr * bc`` (``bc = sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1))``
    with ``use_bias_correction``, else 1)::

        acc    = sum over params of dlr * <g, s / (sqrt(v) + eps)>     (s and v before this step)
        m     <- beta1 * m + (1 - beta1) * dlr * g
        v     <- beta2 * v + (1 - beta2) * g^2
        s     <- b * s + (1 - b) * dlr * g
        r     <- b * r + (1 - b) * acc
        d_hat  = r / ((1 - b) * sum over params of |s|)
        d_new <- max(d, min(d_hat, growth_rate * d))                    (no cap when growth_rate is unset)
        p     <- p - dlr * weight_decay * p                             (decouple)
        p     <- p - m / (sqrt(v) + eps)

    As ``dadaptation.DAdaptAdam``, which the tests match over 50 steps. Where it differs: each group's
    ``lr`` multiplies ``d`` (the reference raises on different LRs); a group at ``lr = 0`` does not
    move (DAdaptAdam moves it with its stale first moment); ``per_group_d``; no host sync, and
    ``step_factor``; ``p.grad`` is never modified. A step whose ``sum |s|`` is 0 leaves ``d``, ``r``
    and ``k`` as they are.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        d0: float = 1e-6,
        growth_rate: float | None = None,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        _check_common(lr, weight_decay, d0, growth_rate)
        check_betas(betas, 2)
        check_number("eps", eps, ge=0)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decouple": decouple,
            "use_bias_correction": use_bias_correction,
            "d0": d0,
            "growth_rate": growth_rate,
        }
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        d, numerator_weighted, k = (leader[key] for key in self.SCALARS)
        sqrt_beta2 = math.sqrt(leader["betas"][1])
        sf = self._gate(step_factor, d)
        sums, any_active = GlobalSums(d, 2), torch.zeros_like(d)  # the numerator's step and sum |s|
        compiling, keep = self.compiling(), sf != 0
        moments = CompiledPass(dadapt_adam_moments_, 2, d)
        plans = []
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            beta1, beta2, active, gate, dlr, keep1, keep2 = adam_coefficients(group, d, k, sf, self._lr_of(group, d))
            any_active = torch.maximum(any_active, active)
            keep_s = keep_factor(gate, sqrt_beta2)
            c1 = dlr * (1 - beta1) * gate
            c_s = dlr * (1 - sqrt_beta2) * gate
            c_num = dlr * gate
            # The gated gradient is 0 on a skipped step; only a group whose lr may be 0 needs the gate in the square.
            c2 = 1 - beta2 if lr_is_nonzero_number(group) else (1 - beta2) * gate
            eps, decay, decouple = group["eps"], group["weight_decay"], group["decouple"]
            l2 = decay if decay != 0 and not decouple else 0.0
            c2_t = c2 if isinstance(c2, torch.Tensor) else torch.full_like(d, c2)  # a tensor: one graph for both
            fused = []
            for p in params:
                param, state = real_view(p), self.state[p]
                if "exp_avg" not in state:
                    state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s, exp_avg, exp_avg_sq = (real_view(state[key]) for key in ("s", "exp_avg", "exp_avg_sq"))
                raw = real_view(p.grad)
                fused.append(compiling and compilable(d.device, param, raw, s, exp_avg, exp_avg_sq))
                if fused[-1]:
                    moments.add(flat(param), flat(raw), flat(exp_avg), flat(exp_avg_sq), flat(s),
                                keep, keep1, c1, keep2, c2_t, keep_s, c_s, c_num, active, float(eps), l2)
                    continue
                grad = gate_grad(raw.add(param, alpha=decay) if l2 != 0 else raw, step_factor)
                denom = torch.sqrt(exp_avg_sq, out=self.scratch.get(param)).add_(eps)
                sums.add(0, c_num * inner_product(local(grad), local(torch.div(s, denom, out=denom))), s)
                axpby_(exp_avg, keep1, grad, c1)
                buffer = self.scratch.get(param, 1) if isinstance(c2, torch.Tensor) else None
                ema_square_(exp_avg_sq, keep2, grad, c2, buffer)
                axpby_(s, keep_s, grad, c_s)
                sums.add(1, active * l1_norm(local(s), local(denom)), s)
            plans.append((group, params, dlr, active, fused))
        moments.run(sums)

        numerator_acc, sk_l1 = sums.totals()
        new_numerator = sqrt_beta2 * numerator_weighted + (1 - sqrt_beta2) * numerator_acc
        # `!= 0`, not `> 0`: a NaN sum (a NaN gradient) must reach d, not skip the update as "no progress".
        progress = (sk_l1 != 0).to(d.dtype)
        d_hat = new_numerator / ((1 - sqrt_beta2) * torch.where(progress != 0, sk_l1, torch.ones_like(sk_l1)))
        take = sf * progress
        d_next = torch.where((take * any_active) != 0, self._grow(d, d_hat, leader["growth_rate"]), d)
        self._write(
            scope,
            {
                "d": d_next,
                "numerator_weighted": torch.where(take != 0, new_numerator, numerator_weighted),
                "k": k + take,
            },
        )

        update = CompiledPass(dadapt_adam_update_)
        for group, params, dlr, active, fused in plans:
            move = take * active
            eps, decay = group["eps"], group["weight_decay"]
            c_decay = -decay * dlr * move if decay != 0 and group["decouple"] else None
            c_step = -move
            for p, compiled in zip(params, fused):
                param, state = real_view(p), self.state[p]
                exp_avg, exp_avg_sq = real_view(state["exp_avg"]), real_view(state["exp_avg_sq"])
                if compiled:
                    update.add(flat(param), flat(exp_avg), flat(exp_avg_sq), c_decay, c_step, float(eps))
                    continue
                denom = torch.sqrt(exp_avg_sq, out=self.scratch.get(param)).add_(eps)
                if c_decay is not None:
                    add_scaled_(param, param, c_decay)
                add_scaled_(param, torch.div(exp_avg, denom, out=denom), c_step)
        update.run()


class DAdaptSGD(_DAdapt):
    """D-Adaptation SGD (Defazio & Mishchenko 2023, arXiv:2301.07733): dual averaging with momentum.

    Per step, over the groups of a scope (all groups, or each alone with ``per_group_d``) whose ``lr``
    is not 0, with ``g`` the gradient, ``g0`` the norm of the first step's gradients (before weight
    decay) and ``x0`` the initial point::

        g     <- g + weight_decay * p
        dlr    = d * lr / g0
        r     <- r + sum over params of dlr * <g, s>                    (s before this step)
        s     <- s + dlr * g
        d_hat  = 2 * r / sqrt(sum over params of ||s||^2)
        d_new <- max(d, min(d_hat, growth_rate * d))                    (no cap when growth_rate is unset)
        p     <- momentum * p + (1 - momentum) * (x0 - s)

    As ``dadaptation.DAdaptSGD``, which the tests match over 50 steps. Where it differs: each group's
    ``lr`` multiplies ``d`` and uses its own ``weight_decay`` (the reference raises on different LRs
    and reads group 0's decay); a group at ``lr = 0`` is inactive; ``per_group_d``; no ``z`` buffer
    (``z = x0 - s`` is recomputed: one parameter-sized buffer less); zero gradients on the first
    step do not divide by 0 (the first step with a nonzero gradient sets ``g0``); no host sync, and
    ``step_factor``; ``p.grad`` is never modified.
    """

    #: compile = "auto" stays eager: compiled, the step measured 2.35-2.49x of fused AdamW's time per byte against
    #: 1.90-2.21x eager
    #: (10 x 1024x1024 fp32, this CPU): its global sums are inductor reductions, slower than eager ones.
    AUTO_COMPILE = False

    SCALARS = ("d", "numerator_weighted", "k", "g0_norm")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        d0: float = 1e-6,
        growth_rate: float | None = None,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        _check_common(lr, weight_decay, d0, growth_rate)
        check_number("momentum", momentum, ge=0, lt=1)
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "d0": d0, "growth_rate": growth_rate}
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _initial_scalars(self, group: dict[str, Any]) -> dict[str, float]:
        return {**super()._initial_scalars(group), "g0_norm": 0.0}

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        d, numerator_weighted, k, g0_norm = (leader[key] for key in self.SCALARS)
        sf = self._gate(step_factor, d)
        compiling, keep = self.compiling(), sf != 0
        work = []
        grad_sums, any_active = GlobalSums(d, 1), torch.zeros_like(d)  # ||g||^2
        norms = CompiledPass(dadapt_sgd_grad_norm_, 1, d)
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            lr = self._lr_of(group, d)
            active = (lr != 0).to(d.dtype)
            any_active = torch.maximum(any_active, active)
            for p in params:
                raw = real_view(p.grad)
                if compiling and compilable(d.device, raw):
                    norms.add(flat(raw), keep, active)
                    continue
                grad = gate_grad(raw, step_factor)
                grad_sums.add(0, active * inner_product(local(grad), local(grad)), grad)
            work.append((group, params, lr, active))
        norms.run(grad_sums)
        (g_sq,) = grad_sums.totals()
        # The gradient norm of the first step (with a nonzero gradient) fixes the scale of every later step.
        g0 = torch.where(k == 0, torch.sqrt(g_sq), g0_norm)
        g0_safe = torch.where(g0 > 0, g0, torch.ones_like(g0))

        sums = GlobalSums(d, 2)  # the numerator's step and ||s||^2
        moments = CompiledPass(dadapt_sgd_moments_, 2, d)
        plans = []
        for group, params, lr, active in work:
            gate = sf * active
            dlr = d * lr / g0_safe
            c = dlr * gate
            decay = group["weight_decay"]
            fused = []
            for p in params:
                param, state = real_view(p), self.state[p]
                if "s" not in state:
                    state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["x0"] = p.detach().clone(memory_format=torch.preserve_format)
                s, raw = real_view(state["s"]), real_view(p.grad)
                fused.append(compiling and compilable(d.device, param, raw, s, real_view(state["x0"])))
                if fused[-1]:
                    moments.add(flat(param), flat(raw), flat(s), keep, c, active, float(decay))
                    continue
                grad = gate_grad(raw, step_factor)
                if decay != 0:
                    grad = grad.add(param, alpha=decay)
                sums.add(0, c * inner_product(local(grad), local(s)), s)
                add_scaled_(s, grad, c)
                sums.add(1, active * inner_product(local(s), local(s)), s)
            plans.append((group, params, active, fused))
        moments.run(sums)

        numerator_acc, sk_sq = sums.totals()
        new_numerator = numerator_weighted + numerator_acc
        # `!= 0`, not `> 0`: a NaN sum (a NaN gradient) must reach d, not skip the update as "no progress".
        progress = (sk_sq != 0).to(d.dtype)
        d_hat = 2 * new_numerator / torch.sqrt(torch.where(progress != 0, sk_sq, torch.ones_like(sk_sq)))
        take = sf * progress
        d_next = torch.where((take * any_active) != 0, self._grow(d, d_hat, leader["growth_rate"]), d)
        self._write(
            scope,
            {
                "d": d_next,
                "numerator_weighted": torch.where(take != 0, new_numerator, numerator_weighted),
                "k": k + take,
                "g0_norm": torch.where(take != 0, g0, g0_norm),
            },
        )

        update = CompiledPass(dadapt_sgd_update_)
        for group, params, active, fused in plans:
            ck = (1 - group["momentum"]) * take * active
            for p, compiled in zip(params, fused):
                param, state = real_view(p), self.state[p]
                x0, s = real_view(state["x0"]), real_view(state["s"])
                if compiled:
                    update.add(flat(param), flat(s), flat(x0), ck)
                    continue
                z = torch.sub(x0, s, out=self.scratch.get(param))
                param.lerp_(z, ck.to(param.dtype))  # lerp takes a tensor weight of the param's dtype
        update.run()


class DAdaptLion(_DAdapt):
    """D-Adaptation Lion (``dadaptation.DAdaptLion``; Lion: Chen et al. 2023, arXiv:2302.06675).

    Per step, over the groups of a scope (all groups, or each alone with ``per_group_d``) whose ``lr``
    is not 0, with ``g`` the gradient, ``b = sqrt(beta2)`` and ``dlr = d * lr``::

        p     <- p * (1 - dlr * weight_decay)
        u      = sign(beta1 * m + (1 - beta1) * g)
        p     <- p - dlr * u
        m     <- beta2 * m + (1 - beta2) * dlr * g
        acc    = sum over params of dlr * <u, s>                        (s before this step)
        s     <- b * s + (1 - b) * dlr * u
        r     <- b * r + (1 - b) * acc
        d_hat  = r / ((1 - b) * sum over params of |s|)
        d_new <- max(d, d_hat)                                          (used from the next step)

    As the reference (experimental there), which the tests match over 50 steps. Where it differs:
    each group's ``lr`` multiplies ``d``; a group at ``lr = 0`` does not move (DAdaptLion moves it with
    the global step); ``per_group_d``; a NaN or inf in a gradient makes ``r`` and so ``d`` NaN (one
    extra read of the interpolation per step), where ``sign(NaN) = 0`` would silently freeze the
    coordinate; no host sync, and ``step_factor``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        d0: float = 1e-6,
        per_group_d: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        _check_common(lr, weight_decay, d0, None)
        check_betas(betas, 2)
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay, "d0": d0}
        super().__init__(params, defaults, per_group_d=per_group_d, compile=compile)

    def _step_scope(self, scope: list[dict[str, Any]], step_factor: torch.Tensor | None, loss: Any) -> None:
        leader = scope[0]
        d, numerator_weighted, k = (leader[key] for key in self.SCALARS)
        sqrt_beta2 = math.sqrt(leader["betas"][1])
        sf = self._gate(step_factor, d)
        sums, any_active = GlobalSums(d, 3), torch.zeros_like(d)  # the numerator's step, sum |s|, the probe
        compiling, keep = self.compiling(), sf != 0
        fused = CompiledPass(dadapt_lion_, 3, d)
        for group in scope:
            params = params_with_grads(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            lr = self._lr_of(group, d)
            active = (lr != 0).to(d.dtype)
            gate = sf * active
            any_active = torch.maximum(any_active, active)
            dlr = d * lr
            decay = group["weight_decay"]
            shrink = 1 - dlr * decay * gate
            keep2 = keep_factor(gate, beta2)
            keep_s = keep_factor(gate, sqrt_beta2)
            c2 = (1 - beta2) * dlr * gate
            c_s = (1 - sqrt_beta2) * dlr * gate
            c_num, c_step = dlr * gate, -dlr * gate
            for p in params:
                param, state = real_view(p), self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, s = real_view(state["exp_avg"]), real_view(state["s"])
                raw = real_view(p.grad)
                if compiling and compilable(d.device, param, raw, exp_avg, s):
                    fused.add(flat(param), flat(raw), flat(exp_avg), flat(s), keep, shrink if decay != 0 else None,
                              c_step, keep2, c2, keep_s, c_s, c_num, active, float(beta1))
                    continue
                grad = gate_grad(raw, step_factor)
                if decay != 0:
                    param.mul_(shrink)
                update = torch.mul(exp_avg, beta1, out=self.scratch.get(param)).add_(grad, alpha=1 - beta1)
                sums.add(2, sum_probe(local(update)), update)  # sign(NaN) is 0: without it a NaN gradient would freeze
                update.sign_()
                add_scaled_(param, update, c_step)
                axpby_(exp_avg, keep2, grad, c2)
                sums.add(0, c_num * inner_product(local(update), local(s)), s)
                axpby_(s, keep_s, update, c_s)
                sums.add(1, active * l1_norm(local(s), local(update)), s)
        fused.run(sums)

        numerator_acc, sk_l1, probe = sums.totals()
        # A NaN or inf in a gradient (or the momentum) makes the numerator, hence d, NaN: every param of
        # the scope then becomes NaN at the next step, instead of the affected coordinates silently freezing.
        numerator_acc = numerator_acc + 0 * probe
        new_numerator = sqrt_beta2 * numerator_weighted + (1 - sqrt_beta2) * numerator_acc
        # `!= 0`, not `> 0`: a NaN sum (a NaN gradient) must reach d, not skip the update as "no progress".
        progress = (sk_l1 != 0).to(d.dtype)
        d_hat = new_numerator / ((1 - sqrt_beta2) * torch.where(progress != 0, sk_l1, torch.ones_like(sk_l1)))
        take = sf * progress
        self._write(
            scope,
            {
                "d": torch.where((take * any_active) != 0, torch.maximum(d, d_hat), d),
                "numerator_weighted": torch.where(take != 0, new_numerator, numerator_weighted),
                "k": k + take,
            },
        )
