"""MoMo and MoMo-Adam: momentum with a Polyak-type step size from a model of the loss.

The step never exceeds what the model of the loss, bounded below by ``lb``, allows (the rules are in
the class docstrings). They need the loss: ``step(closure)`` uses the closure's value; without a
closure set ``optimizer.latest_loss = loss`` before ``step()`` (or ``optreg.optim.give_loss``); the
step consumes it, so a stale loss is never reused. Under sharding (FSDP, HSDP, TP) the inner products
are global: each rank reduces its shards, and one all-reduce per step completes them; the loss must be
the global batch's already (every rank the same value).

``compile`` (a constructor option, ``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``) runs
both passes as fused ``torch.compile`` kernels per tensor (the moments and the three inner products, then
the step); sharded and non-contiguous tensors step eagerly; the result is the eager one up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch

from optreg.compiling import CompileSetting, check_compile_setting, flat, use_compile
from optreg.optim import (
    OptregOptimizer,
    Scratch,
    as_scalar,
    check_betas,
    check_number,
    gate_grad,
    group_device,
    inner_product,
    keep_factor,
    params_with_grads,
    real_view,
    run_closure,
    scalar_dtype,
)
from optreg_paramfree.optim._common import (
    CompiledPass,
    GlobalSums,
    add_scaled_,
    auto_setting,
    axpby_,
    compilable,
    ema_square_,
    local,
)
from optreg_paramfree.optim._kernels import momo_adam_moments_, momo_adam_update_, momo_moments_, momo_update_

__all__ = ["Momo", "MomoAdam"]

_SCALARS = ("loss_avg", "gamma", "lb", "k")


class _LossModel(OptregOptimizer):
    """Shared parts: the loss (closure or ``latest_loss``), the global scalars in every group.

    An ``optreg.optim.TakesLoss``: training loops (and wrappers) hand the loss over with
    ``optreg.optim.give_loss``.
    """

    TRANSIENT = ("scratch",)
    #: The loss the next ``step()`` without a closure uses (a tensor or a number); the step consumes it.
    latest_loss: Any = None
    #: The ``compile`` option (an attribute, so checkpoints keep their layout; False when unpickled from before it).
    compile: CompileSetting = False
    #: Whether ``compile = "auto"`` compiles on a large model (see ``ScopedScalarOptimizer.AUTO_COMPILE``).
    AUTO_COMPILE: bool = True

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], *, lower_bound: float, compile: CompileSetting = "auto"
    ) -> None:
        check_number("lower_bound", lower_bound)
        self.lower_bound = float(lower_bound)
        self.compile = check_compile_setting(compile)
        self.latest_loss = None
        self._init_transient()
        super().__init__(params, defaults)

    def _init_transient(self) -> None:
        self.scratch = Scratch()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group, leader = self.param_groups[-1], self.param_groups[0]
        if group is not leader:
            for key in _SCALARS:
                group.setdefault(key, leader[key])
            return
        device = group_device(group)
        for key, value in zip(_SCALARS, (0.0, 0.0, self.lower_bound, 0.0)):
            group.setdefault(key, torch.full((), value, dtype=scalar_dtype(device), device=device))

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        leader = self.param_groups[0]  # a checkpoint may have been mapped to another device
        device = group_device(leader)
        values = {key: as_scalar(leader[key], device) for key in _SCALARS}
        for group in self.param_groups:
            group.update(values)

    @property
    def lb(self) -> float:
        """The current lower bound of the loss (moves only with ``adapt_lower_bound``)."""
        return float(self.param_groups[0]["lb"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """One step; the loss comes from ``closure`` or from :attr:`latest_loss`."""
        loss = run_closure(closure)
        value = loss if loss is not None else self.latest_loss
        self.latest_loss = None
        if value is None:
            raise ValueError(
                f"{type(self).__name__} needs the loss of the current batch: call step(closure) with a closure "
                "that returns it, or set optimizer.latest_loss = loss before step()"
            )
        leader = self.param_groups[0]
        device = leader["k"].device
        sf = torch.ones((), dtype=leader["k"].dtype, device=device)
        if step_factor is not None:
            sf = as_scalar(step_factor, device)
        self._momo_step(as_scalar(value, device), sf, step_factor)
        return loss

    def _momo_step(self, loss: torch.Tensor, sf: torch.Tensor, step_factor: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _write(self, values: dict[str, torch.Tensor]) -> None:
        for group in self.param_groups:
            group.update(values)

    def _adapt_lb(
        self, cap_base: torch.Tensor, wd: torch.Tensor, rho: torch.Tensor, lb: torch.Tensor
    ) -> torch.Tensor:
        """Reset the lower bound when the model says it is too high (MoMo's online estimate of f*)."""
        cap = wd * cap_base
        return torch.where(cap < wd * rho * lb, torch.clamp(cap / (2 * wd * rho), min=self.lower_bound), lb)


class Momo(_LossModel):
    """MoMo (Schaipp, Ohana, Eickenberg, Defazio & Gower 2023, arXiv:2305.07583, Algorithm 1): SGD with
    momentum and a model-based step size, at most ``lr``.

    Per step, with ``f`` the loss of the batch, ``lb`` the lower bound of the loss, inner products and
    norms over every parameter, ``b = beta`` (``b = 0`` on the first step unless ``bias_correction``:
    the averages start at the first values) and ``rho = 1 - beta^(k+1)`` with ``bias_correction``,
    else 1::

        d      <- b * d + (1 - b) * g
        f_bar  <- b * f_bar + (1 - b) * f
        gamma  <- b * gamma + (1 - b) * <g, x>
        w       = 1 + lr * weight_decay
        h       = w * (f_bar - rho * lb) + <d, x> - w * gamma
        tau     = min(lr / rho, max(h, 0) / ||d||^2)
        x      <- (x - tau * d) / w

    ``x`` is the parameter before the step; weight decay is proximal, as in the paper. With
    ``adapt_lower_bound`` the bound is estimated online (for when no good bound is known): it is
    reset to ``max(lower_bound, c / (2 w rho))`` when ``c = w * (f_bar - gamma) + <d, x>`` falls below
    ``w * rho * lb``, and after the step ``lb <- max(lower_bound, (f_bar + <d, x> - gamma - tau / 2 *
    ||d||^2) / rho)``. As the authors' ``momo.Momo`` (``adapt_lower_bound`` is its ``use_fstar``; the
    tests check the rule, written out, over 50 steps); here the loss comes from ``step(closure)`` or
    ``latest_loss`` (a tensor, never read on the host), params without a gradient are skipped, and
    ``step_factor`` works.
    """

    #: compile = "auto" stays eager: compiled, the step measured only 2.49-2.61x of fused AdamW's time per byte against
    #: 2.83-2.86x eager
    #: (10 x 1024x1024 fp32, this CPU): its global sums are inductor reductions, slower than eager ones.
    AUTO_COMPILE = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        beta: float = 0.9,
        weight_decay: float = 0.0,
        lower_bound: float = 0.0,
        bias_correction: bool = False,
        adapt_lower_bound: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_number("beta", beta, ge=0, lt=1)
        check_number("weight_decay", weight_decay, ge=0)
        self.beta = float(beta)
        self.bias_correction = bool(bias_correction)
        self.adapt_lower_bound = bool(adapt_lower_bound)
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay}, lower_bound=lower_bound, compile=compile)

    def _momo_step(self, loss: torch.Tensor, sf: torch.Tensor, step_factor: torch.Tensor | None) -> None:
        leader = self.param_groups[0]
        loss_avg, gamma, lb, k = (leader[key] for key in _SCALARS)
        beta = self.beta
        take = sf != 0
        first = k == 0
        # Without bias correction the averages start at the first values (beta = 0 on the first step).
        beta_t = torch.full_like(k, beta)
        if not self.bias_correction:
            beta_t = torch.where(first, torch.zeros_like(k), beta_t)
        new_loss_avg = beta_t * loss_avg + (1 - beta_t) * loss
        sums = GlobalSums(k, 3)  # <g, x>, <x, d>, ||d||^2
        compiling = use_compile(auto_setting(self.compile, self.AUTO_COMPILE), self)
        moments = CompiledPass(momo_moments_, 3, k)
        plans = []
        for group in self.param_groups:
            params = params_with_grads(group)
            fused = []
            for p in params:
                param, raw, state = real_view(p), real_view(p.grad), self.state[p]
                fresh = "grad_avg" not in state
                if fresh:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad_avg = real_view(state["grad_avg"])
                beta_p = torch.zeros_like(k) if fresh and not self.bias_correction else beta_t
                keep = torch.where(take, beta_p, torch.ones_like(k))
                fused.append(compiling and compilable(k.device, param, raw, grad_avg))
                if fused[-1]:
                    moments.add(flat(param), flat(raw), flat(grad_avg), take, keep, (1 - beta_p) * sf)
                    continue
                grad = gate_grad(raw, step_factor)
                axpby_(grad_avg, keep, grad, (1 - beta_p) * sf)
                grad, param, grad_avg = local(grad), local(param), local(grad_avg)
                sums.add(0, inner_product(grad, param).to(k.device), p)
                sums.add(1, inner_product(param, grad_avg).to(k.device), p)
                sums.add(2, inner_product(grad_avg, grad_avg).to(k.device), p)
            plans.append((group, params, fused))
        moments.run(sums)
        grad_dot_x, x_dot_avg, avg_sq = sums.totals()
        new_gamma = beta_t * gamma + (1 - beta_t) * grad_dot_x
        rho = 1 - beta ** (k + 1) if self.bias_correction else torch.ones_like(k)

        new_lb = lb
        update = CompiledPass(momo_update_)
        for group, params, fused in plans:
            lr = as_scalar(group["lr"], k.device)
            wd = 1 + lr * group["weight_decay"]
            if self.adapt_lower_bound:
                new_lb = self._adapt_lb(new_loss_avg - new_gamma + x_dot_avg / wd, wd, rho, new_lb)
            numerator = wd * (new_loss_avg - rho * new_lb) + x_dot_avg - wd * new_gamma
            # `!= 0`, not `> 0`: a NaN norm (a NaN gradient) must give a NaN step, not a silent step of 0.
            t1 = torch.where(avg_sq != 0, numerator.clamp(min=0) / torch.where(avg_sq != 0, avg_sq, 1.0), 0.0)
            tau = torch.where(take, torch.minimum(lr / rho, t1), 0.0)
            if self.adapt_lower_bound:
                h = new_loss_avg + x_dot_avg - new_gamma
                new_lb = torch.clamp((h - 0.5 * tau * avg_sq) / rho, min=self.lower_bound)
            shrink = 1 + lr * group["weight_decay"] * sf
            neg_tau = -tau
            for p, compiled in zip(params, fused):
                param, grad_avg = real_view(p), real_view(self.state[p]["grad_avg"])
                if compiled:
                    update.add(flat(param), flat(grad_avg), neg_tau, shrink if group["weight_decay"] != 0 else None)
                    continue
                add_scaled_(param, grad_avg, neg_tau)
                if group["weight_decay"] != 0:
                    param.div_(shrink)
        update.run()

        self._write(
            {
                "loss_avg": torch.where(take, new_loss_avg, loss_avg),
                "gamma": torch.where(take, new_gamma, gamma),
                "lb": torch.where(take, new_lb, lb),
                "k": k + sf,
            }
        )


class MomoAdam(_LossModel):
    """MoMo-Adam (Schaipp et al. 2023, arXiv:2305.07583): Adam's direction, MoMo's step size in Adam's norm.

    Per step, with ``f`` the loss of the batch, ``lb`` the lower bound of the loss, inner products
    over every parameter, ``bc1 = 1 - beta1^(k+1)`` and ``bc2 = 1 - beta2^(k+1)``::

        m      <- beta1 * m + (1 - beta1) * g
        v      <- beta2 * v + (1 - beta2) * g^2
        f_bar  <- beta1 * f_bar + (1 - beta1) * f
        gamma  <- beta1 * gamma + (1 - beta1) * <g, x>
        D       = sqrt(v / bc2) + eps
        w       = 1 + lr * weight_decay
        h       = w * (f_bar - bc1 * lb) + <m, x> - w * gamma
        tau     = min(lr / bc1, max(h, 0) / <m, m / D>)
        x      <- (x - tau * m / D) / w                       (weight_decay_mode = "proximal", the paper's)
        x      <- x * (1 - lr * weight_decay) - tau * m / D   (weight_decay_mode = "decoupled", AdamW's)

    ``x`` is the parameter before the step; ``h`` uses ``w`` in both modes. ``adapt_lower_bound``
    estimates ``lb`` online as :class:`Momo` does (with ``bc1`` for ``rho``). As the authors'
    ``momo.MomoAdam`` (``decoupled`` is its ``divide = False``, ``adapt_lower_bound`` its
    ``use_fstar``; the tests check the rule, written out, over 50 steps); here the loss comes from
    ``step(closure)`` or ``latest_loss`` (never read on the host), ``bc2`` counts the optimizer's
    steps (the reference counts each parameter's), and ``step_factor`` works.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        lower_bound: float = 0.0,
        weight_decay_mode: Literal["proximal", "decoupled"] = "proximal",
        adapt_lower_bound: bool = False,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("lr", lr, ge=0)
        check_betas(betas, 2)
        check_number("eps", eps, ge=0)
        check_number("weight_decay", weight_decay, ge=0)
        if weight_decay_mode not in ("proximal", "decoupled"):
            raise ValueError(f"weight_decay_mode must be one of 'proximal', 'decoupled', got {weight_decay_mode!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay_mode = weight_decay_mode
        self.adapt_lower_bound = bool(adapt_lower_bound)
        super().__init__(
            params, {"lr": lr, "eps": eps, "weight_decay": weight_decay}, lower_bound=lower_bound, compile=compile
        )

    def _precond(self, grad_avg_sq: torch.Tensor, bc2: torch.Tensor, eps: float) -> torch.Tensor:
        """``sqrt(v / bc2) + eps`` in a work buffer (``bc2`` a 0-dim tensor: nothing read on the host)."""
        return torch.div(grad_avg_sq, bc2, out=self.scratch.get(grad_avg_sq)).sqrt_().add_(eps)

    def _momo_step(self, loss: torch.Tensor, sf: torch.Tensor, step_factor: torch.Tensor | None) -> None:
        leader = self.param_groups[0]
        loss_avg, gamma, lb, k = (leader[key] for key in _SCALARS)
        beta1, beta2 = self.betas
        take = sf != 0
        keep1 = keep_factor(sf, beta1)
        keep2 = keep_factor(sf, beta2)
        bc1 = 1 - beta1 ** (k + 1)
        bc2 = 1 - beta2 ** (k + 1)
        sums = GlobalSums(k, 3)  # <g, x>, <x, m>, <m, m / D>
        compiling = use_compile(auto_setting(self.compile, self.AUTO_COMPILE), self)
        moments = CompiledPass(momo_adam_moments_, 3, k)
        c1 = (1 - beta1) * sf
        plans = []
        for group in self.param_groups:
            params = params_with_grads(group)
            eps = group["eps"]
            fused = []
            for p in params:
                param, raw, state = real_view(p), real_view(p.grad), self.state[p]
                if "grad_avg" not in state:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["grad_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad_avg, grad_avg_sq = real_view(state["grad_avg"]), real_view(state["grad_avg_sq"])
                fused.append(compiling and compilable(k.device, param, raw, grad_avg, grad_avg_sq))
                if fused[-1]:
                    moments.add(flat(param), flat(raw), flat(grad_avg), flat(grad_avg_sq), take, keep1, c1, keep2, bc2,
                                1 - beta2, float(eps))
                    continue
                grad = gate_grad(raw, step_factor)  # 0 on a skipped step: the square needs no gate
                axpby_(grad_avg, keep1, grad, c1)
                ema_square_(grad_avg_sq, keep2, grad, 1 - beta2)
                precond = self._precond(local(grad_avg_sq), bc2, eps)  # a work buffer: this rank's shard suffices
                grad, param, grad_avg = local(grad), local(param), local(grad_avg)
                sums.add(0, inner_product(grad, param).to(k.device), p)
                sums.add(1, inner_product(param, grad_avg).to(k.device), p)
                sums.add(2, inner_product(grad_avg, torch.div(grad_avg, precond, out=precond)).to(k.device), p)
            plans.append((group, params, fused))
        moments.run(sums)
        grad_dot_x, x_dot_avg, avg_norm = sums.totals()
        new_loss_avg = beta1 * loss_avg + (1 - beta1) * loss
        new_gamma = beta1 * gamma + (1 - beta1) * grad_dot_x

        new_lb = lb
        update = CompiledPass(momo_adam_update_)
        for group, params, fused in plans:
            lr = as_scalar(group["lr"], k.device)
            wd = 1 + lr * group["weight_decay"]
            if self.adapt_lower_bound:
                new_lb = self._adapt_lb(new_loss_avg - new_gamma + x_dot_avg / wd, wd, bc1, new_lb)
            numerator = wd * (new_loss_avg - bc1 * new_lb) + x_dot_avg - wd * new_gamma
            # `!= 0`, not `> 0`: a NaN norm (a NaN gradient) must give a NaN step, not a silent step of 0.
            t1 = torch.where(avg_norm != 0, numerator.clamp(min=0) / torch.where(avg_norm != 0, avg_norm, 1.0), 0.0)
            tau = torch.where(take, torch.minimum(lr / bc1, t1), 0.0)
            if self.adapt_lower_bound:
                h = new_loss_avg + x_dot_avg - new_gamma
                new_lb = torch.clamp((h - 0.5 * tau * avg_norm) / bc1, min=self.lower_bound)
            decay = group["weight_decay"] * lr * sf
            decoupled = group["weight_decay"] != 0 and self.weight_decay_mode == "decoupled"
            proximal = group["weight_decay"] != 0 and self.weight_decay_mode == "proximal"
            scale, shrink, neg_tau = 1 - decay if decoupled else None, 1 + decay if proximal else None, -tau
            for p, compiled in zip(params, fused):
                param, state = real_view(p), self.state[p]
                grad_avg, grad_avg_sq = real_view(state["grad_avg"]), real_view(state["grad_avg_sq"])
                if compiled:
                    update.add(flat(param), flat(grad_avg), flat(grad_avg_sq), bc2, neg_tau, scale, shrink,
                               float(group["eps"]))
                    continue
                precond = self._precond(grad_avg_sq, bc2, group["eps"])
                if scale is not None:
                    param.mul_(scale)
                add_scaled_(param, torch.div(grad_avg, precond, out=precond), neg_tau)
                if shrink is not None:
                    param.div_(shrink)
        update.run()

        self._write(
            {
                "loss_avg": torch.where(take, new_loss_avg, loss_avg),
                "gamma": torch.where(take, new_gamma, gamma),
                "lb": torch.where(take, new_lb, lb),
                "k": k + sf,
            }
        )
