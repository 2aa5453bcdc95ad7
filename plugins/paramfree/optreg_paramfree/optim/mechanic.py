"""Mechanic: learn a scale for any optimizer's updates (Cutkosky, Defazio & Mehta 2023, arXiv:2306.00144)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optreg.compiling import CompileSetting, check_compile_setting, flat, use_compile
from optreg.optim import (
    Scratch,
    WrappedOptimizer,
    as_scalar,
    check_number,
    commit_,
    gate_grad,
    give_loss,
    group_device,
    inner_product,
    params_with_grads,
    real_view,
    run_closure,
    scalar_dtype,
)
from optreg_paramfree.optim._common import CompiledPass, GlobalSums, compilable, local
from optreg_paramfree.optim._kernels import mechanic_sums_, mechanic_update_

__all__ = ["Mechanic"]

_SCALARS = ("mechanic_s", "mechanic_m", "mechanic_v", "mechanic_r")


class Mechanic(WrappedOptimizer):
    """Mechanic (Cutkosky, Defazio & Mehta 2023, "Mechanic: A Learning Rate Tuner", arXiv:2306.00144)
    around ``inner``: the inner optimizer proposes updates, Mechanic learns their scale.

    Per step, with ``x`` the params before the step, ``x_ref`` the params when Mechanic first saw
    them, ``S = sum_j s_j``, ``g`` the inner optimizer's descent direction (``-grad`` in a group with
    ``maximize``), ``u`` the inner optimizer's update from ``x``, ``n = num_betas`` and
    ``beta_j = 1 - 0.1^j`` (j = 1..n); norms and inner products over every parameter::

        Delta  = (x - x_ref) / (S + eps)                          (the inner updates summed so far)
        g~     = g + weight_decay * S * ||g|| / (||x|| + eps) * x
        h      = -<g~, Delta>
        r_j   <- beta_j * r_j + clip(h, -m_j, m_j) * s_j          (m_j before this step)
        m_j   <- max(beta_j * m_j, |h| + eps)
        v_j   <- beta_j^2 * v_j + h^2
        s_j   <- (s_init / n * m_j + max(r_j, 0)) / (sqrt(v_j) + eps)
        x     <- x_ref + sum_j s_j * (Delta + u)

    The memory-efficient form of the authors' optax implementation (``optax.contrib.mechanize``):
    ``Delta`` is recovered from the parameters, so Mechanic keeps one parameter-sized buffer
    (``x_ref``), and ``h`` is clipped by the running maximum (not in the paper's first version, nor
    in ``mechanic-pytorch``, which also starts from ``s = 0`` with ``s_init = 1e-8`` and clamps the
    reward after each step). ``weight_decay`` is Mechanic's own decay in its scale estimate,
    independent of the inner optimizer's. The learned scale is :attr:`scale` (``S``), and every
    param group holds ``mechanic_s`` (one entry per beta). The loss of ``step(closure)`` is handed to
    a loss-aware inner optimizer (``optreg.optim.give_loss``). Complex params enter ``h`` and the
    norms through their real view (``Re<g, x>``). Under sharding (FSDP, HSDP, TP) the norms and ``h``
    are global: each rank reduces its shards, and an all-reduce completes the norms, then ``h``.

    ``compile`` (a constructor option, ``"auto"``: from 2**23 elements, see ``optreg.compiling.use_compile``)
    runs Mechanic's own work as two fused ``torch.compile`` kernels per tensor around the inner step (the
    norms and ``h`` in one pass, as ``h`` is linear in its two inner products; then the rescaled update);
    the inner optimizer steps as it was built. Sharded and non-contiguous tensors take the eager code.
    """

    PREFIX = "mechanic_"
    TRANSIENT = ("scratch",)
    #: The ``compile`` option (an attribute, so checkpoints keep their layout; False when unpickled from before it).
    compile: CompileSetting = False

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        *,
        weight_decay: float = 0.01,
        eps: float = 1e-8,
        s_init: float = 1e-6,
        num_betas: int = 6,
        compile: CompileSetting = "auto",
    ) -> None:
        check_number("weight_decay", weight_decay, ge=0)
        check_number("eps", eps, gt=0)
        check_number("s_init", s_init, gt=0)
        check_number("num_betas", num_betas, ge=1, le=15)
        self.mechanic_weight_decay = float(weight_decay)
        self.mechanic_eps = float(eps)
        self.s_init = float(s_init)
        self.num_betas = int(num_betas)
        self.compile = check_compile_setting(compile)
        self._init_transient()
        super().__init__(inner)

    def _init_transient(self) -> None:
        self.scratch = Scratch()

    def _init_group(self, group: dict[str, Any]) -> None:
        leader = self.param_groups[0]
        if "mechanic_s" in leader and group is not leader:
            for key in _SCALARS:
                group[key] = leader[key]
            return
        device = group_device(group)
        dtype = scalar_dtype(device)
        if "mechanic_s" not in group:
            group["mechanic_s"] = torch.full((self.num_betas,), self.s_init, dtype=dtype, device=device)
            for key in _SCALARS[1:]:
                group[key] = torch.zeros(self.num_betas, dtype=dtype, device=device)

    @property
    def scale(self) -> float:
        """The scale Mechanic currently applies to the summed inner updates (``sum(s)``)."""
        return float(self.param_groups[0]["mechanic_s"].sum())

    def effective_lrs(self) -> list[float]:
        """Each group's step size: the learned scale times the inner optimizer's (its effective LR, or ``lr``)."""
        inner = getattr(self.inner, "effective_lrs", None)
        base = inner() if callable(inner) else [float(g["lr"]) for g in self.param_groups]
        return [self.scale * float(lr) for lr in base]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Run the inner step, then rescale; ``step_factor`` needs an inner optimizer that supports it."""
        if step_factor is not None and not self.supports_step_factor:
            raise TypeError(
                f"step_factor needs an inner optimizer that supports it; {type(self.inner).__name__} does not"
            )
        loss = run_closure(closure)
        leader = self.param_groups[0]
        s, m, v, r = (leader[key] for key in _SCALARS)
        device = s.device
        sf = None if step_factor is None else as_scalar(step_factor, device)
        # (param, -1 for a group that maximizes: its descent direction is -grad)
        params = [
            (p, -1.0 if group.get("maximize", False) else 1.0)
            for group in self.param_groups
            for p in params_with_grads(group)
        ]

        eps, decay = self.mechanic_eps, self.mechanic_weight_decay
        s_sum = s.sum()
        zero = torch.zeros((), dtype=s.dtype, device=device)
        compiling = use_compile(self.compile, self)
        keep = torch.ones((), dtype=torch.bool, device=device) if sf is None else sf != 0
        # ||g||^2, ||x||^2; the compiled params add sign * <g, x_ref - x> and <x, x_ref - x> in the same pass
        norms = GlobalSums(zero, 4)
        sums = CompiledPass(mechanic_sums_, 4, zero)
        before: list[torch.Tensor | None] = []
        refs, fused = [], []
        for p, sign in params:
            ref = self.wrapper_state.get(p, {}).get("mechanic_x_ref")
            if ref is None:
                ref = p.detach().clone(memory_format=torch.preserve_format)
            refs.append(ref)
            param, raw = real_view(p), real_view(p.grad)
            fused.append(compiling and compilable(device, param, raw, real_view(ref)))
            if fused[-1]:
                prev = torch.empty_like(p, memory_format=torch.preserve_format)  # x before the inner step
                sums.add(flat(param), flat(raw), flat(real_view(ref)), flat(real_view(prev)), keep, sign)
                before.append(prev)
                continue
            before.append(None)
            grad = local(gate_grad(raw, step_factor))
            norms.add(0, inner_product(grad, grad).to(device), p)
            norms.add(1, inner_product(local(param), local(param)).to(device), p)
        sums.run(norms)
        grad_sq, param_sq, fused_g_dx, fused_x_dx = norms.totals()
        decay_coef = decay * s_sum * torch.sqrt(grad_sq) / (torch.sqrt(param_sq) + eps)

        h_sum = GlobalSums(zero, 1)
        if any(fused):
            h_sum.add(0, (fused_g_dx + decay_coef * fused_x_dx) / (s_sum + eps), zero)
        for i, ((p, sign), ref) in enumerate(zip(params, refs)):
            if fused[i]:
                continue
            param = real_view(p)
            grad = gate_grad(real_view(p.grad), step_factor)
            diff = torch.sub(real_view(ref), param, out=self.scratch.get(param))  # (x_ref - x) = -sum(s) * Delta_t
            g, x, dx = local(grad), local(param), local(diff)
            term = (sign * inner_product(g, dx) + decay_coef * inner_product(x, dx)) / (s_sum + eps)
            h_sum.add(0, term.to(device), diff)
            before[i] = p.detach().clone(memory_format=torch.preserve_format)
        (h,) = h_sum.totals()

        if loss is not None:
            give_loss(self.inner, loss)  # loss-aware inner optimizers (MoMo) get the closure's loss
        if step_factor is None:
            self.inner.step()
        else:
            self.inner.step(step_factor=step_factor)

        n = self.num_betas
        betas = torch.tensor([1.0 - 0.1**i for i in range(1, n + 1)], dtype=s.dtype, device=device)
        clipped = torch.clamp(h, min=-m, max=m)
        new_m = torch.maximum(betas * m, h.abs() + eps)
        new_v = betas**2 * v + h**2
        new_r = betas * r + clipped * s
        wealth = (self.s_init / n) * new_m + new_r.clamp(min=0)
        new_s = wealth / (torch.sqrt(new_v) + eps)
        take = None if sf is None else sf != 0
        if take is not None:
            pairs = ((new_s, s), (new_m, m), (new_v, v), (new_r, r))
            new_s, new_m, new_v, new_r = (torch.where(take, a, b) for a, b in pairs)
        for group in self.param_groups:
            group.update(zip(_SCALARS, (new_s, new_m, new_v, new_r)))

        new_sum = new_s.sum()
        update = CompiledPass(mechanic_update_)
        take_all = keep if take is None else take
        for (p, _), ref, prev, compiled in zip(params, refs, before, fused):
            assert prev is not None
            param, ref_r, prev_r = real_view(p), real_view(ref), real_view(prev)
            self.wrapper_state.setdefault(p, {})["mechanic_x_ref"] = ref
            if compiled:
                update.add(flat(param), flat(ref_r), flat(prev_r), s_sum + eps, new_sum, take_all)
                continue
            step = torch.sub(param, prev_r, out=self.scratch.get(param))  # u_t, the inner update
            delta = prev_r.sub_(ref_r).div_(s_sum + eps).add_(step)  # Delta_t + u_t (prev is ours: a copy)
            torch.addcmul(ref_r, delta, new_sum, out=step)  # x_ref + sum(s) * (Delta_t + u_t)
            # A skipped step: the inner optimizer (which takes step_factor) left param at x_t: keep it.
            commit_(param, step, None if take is None else take.to(p.device))
        update.run()
        return loss
