"""The family's optimizer skeleton: argument checks, lazy state, gathering a group's tensors, checkpoints,
and the per-tensor driver of the algorithms beyond Adam(W).

Complex parameters are stepped as their real view (:func:`optreg.optim.real_view`: the real and
imaginary parts are two independent real coordinates, optax's ``split_real_and_imaginary``), which
is what ``torch.optim.Adam`` does. Moment buffers of a complex param are complex tensors (torch's
layout), or, when the group asks for a ``state_dtype``, real tensors of the real view's shape
``(..., 2)`` in that dtype (there is no complex bfloat16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import torch

from optreg.compiling import can_flatten, flat, run_compiled, use_compile
from optreg.optim import (
    OptregOptimizer,
    as_scalar,
    check_betas,
    check_number,
    keep_factor,
    params_with_grads,
    real_view,
    scalar_dtype,
)
from optreg_adam.functional._common import advance_steps

__all__ = [
    "FamilyOptimizer",
    "PerTensorOptimizer",
    "StepContext",
    "checked_defaults",
    "moment_zeros",
    "scalar_state_dtype",
    "state_dtype_of",
]

_STATE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def checked_defaults(
    lr: Any, betas: Sequence[float], eps: float | None, weight_decay: float, *, n_betas: int = 2,
    eps_gt_zero: bool = False, **extra: Any,
) -> dict[str, Any]:
    """The param-group defaults ``lr, betas[, eps], weight_decay, **extra``, checked with the specs' bounds.

    ``lr``, ``eps`` (``> 0`` with ``eps_gt_zero``) and ``weight_decay`` must be ``>= 0``, each of the
    ``n_betas`` betas in ``[0, 1)``; the messages are the specs' ("lr must be >= 0, got -1.0").
    ``eps=None``: the algorithm has none.
    """
    check_number("lr", lr, ge=0)
    check_betas(betas, n_betas)
    defaults: dict[str, Any] = {"lr": lr, "betas": tuple(betas)}
    if eps is not None:
        check_number("eps", eps, **({"gt": 0} if eps_gt_zero else {"ge": 0}))
        defaults["eps"] = eps
    check_number("weight_decay", weight_decay, ge=0)
    return {**defaults, "weight_decay": weight_decay, **extra}


def _real_dtype(p: torch.Tensor) -> torch.dtype:
    return p.real.dtype if p.is_complex() else p.dtype


def state_dtype_of(p: torch.Tensor, state_dtype: str | None) -> torch.dtype:
    """The dtype of moment buffers: the param's unless ``state_dtype`` names another (a real dtype)."""
    if state_dtype is None or not (p.is_floating_point() or p.is_complex()):
        return p.dtype
    return _STATE_DTYPES[state_dtype]


def moment_zeros(p: torch.Tensor, state_dtype: str | None = None) -> torch.Tensor:
    """A zero moment buffer for ``p``: like ``p``, or in ``state_dtype`` (a complex ``p``: its real view's shape)."""
    dtype = state_dtype_of(p, state_dtype)
    like = real_view(p) if p.is_complex() and not dtype.is_complex else p
    return torch.zeros_like(like, dtype=dtype, memory_format=torch.preserve_format)


def scalar_state_dtype(p: torch.Tensor) -> torch.dtype:
    """The dtype of 0-dim per-param state (running sums, LR averages): float32 or the param's if wider."""
    return torch.promote_types(_real_dtype(p), torch.float32)


def _as_moment(p: torch.Tensor, value: torch.Tensor, state_dtype: str | None) -> torch.Tensor:
    """A loaded moment buffer in the layout and dtype :func:`moment_zeros` gives ``p`` (exact: a saved
    buffer was made in that dtype; a buffer saved under another ``state_dtype`` is converted)."""
    dtype = state_dtype_of(p, state_dtype)
    if p.is_complex() and dtype.is_complex and not value.is_complex():
        value = torch.view_as_complex(value.to(_real_dtype(p)).contiguous())
    elif p.is_complex() and not dtype.is_complex and value.is_complex():
        value = torch.view_as_real(value)
    return value.to(device=p.device, dtype=dtype)


class FamilyOptimizer(OptregOptimizer):
    """Lazy per-param state and the loop over a group's params that have gradients.

    Subclasses implement :meth:`_init_state` and :meth:`_step_group`. ``state["step"]``
    is a 0-dim float32 tensor on the param's device, as in torch's fused/capturable Adam.
    """

    #: State keys holding moment buffers, kept in the group's ``state_dtype`` across ``load_state_dict``.
    moment_keys: tuple[str, ...] = ()
    #: 0-dim per-param state kept in :func:`scalar_state_dtype` across ``load_state_dict``.
    scalar_state: tuple[str, ...] = ()
    #: ``_salts`` maps ``id(param)`` to its position: a copy or an unpickled optimizer rebuilds it.
    TRANSIENT = ("_salts",)

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._init_transient()
        super().__init__(params, defaults)

    def _init_transient(self) -> None:
        self._salts: dict[int, int] = {}

    def _init_state(self, p: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict[str, Any]]]:
        """``(params, grads, states)`` of the params of ``group`` that have a gradient (state made on first use)."""
        params = params_with_grads(group)
        states = []
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                self._init_state(p, group, state)
            elif state["step"].device != p.device:  # e.g. a checkpoint saved by torch.optim with its CPU step
                state["step"] = state["step"].to(p.device)
            states.append(state)
        return params, [p.grad for p in params], states

    def salt(self, p: torch.Tensor) -> int:
        """A per-parameter integer that is the same in every run (the param's position in the optimizer)."""
        if not self._salts:
            i = 0
            for group in self.param_groups:
                for q in group["params"]:
                    self._salts[id(q)] = i
                    i += 1
        return self._salts.get(id(p), 0)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_salts"):
            self._salts.clear()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """torch's ``load_state_dict``; moment buffers stay in the ``state_dtype`` this optimizer was built
        with, scalar state in its dtype (see :meth:`_after_load_state_dict`)."""
        # torch's load replaces the groups' options with the checkpoint's: note the state dtypes first
        self._state_dtypes_before_load = [group.get("state_dtype") for group in self.param_groups]
        try:
            super().load_state_dict(state_dict)
        finally:
            del self._state_dtypes_before_load

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """torch casts every loaded state tensor of a floating param to the param's dtype (bf16 params
        would round fp32 state to bf16): the affected entries are re-made, exactly, from the dict torch
        loaded (after the user's pre-hooks), before the user's post-hooks run."""
        if state_dict is None:
            return
        for p, state_dtype, key, value in self._entries_to_keep(state_dict):
            state = self.state.get(p)
            if state is None or key not in state:
                continue
            if key in self.scalar_state:
                state[key] = value.to(device=p.device, dtype=scalar_state_dtype(p))
            else:
                state[key] = _as_moment(p, value, state_dtype)

    def _entries_to_keep(self, state_dict: Mapping[str, Any]) -> list[tuple[torch.Tensor, Any, str, torch.Tensor]]:
        """The saved state tensors torch's casting would round or mis-shape, with their params and the
        ``state_dtype`` of their groups before the load."""
        saved_groups = state_dict.get("param_groups", [])
        state_dtypes = getattr(self, "_state_dtypes_before_load", None)
        if state_dtypes is None:
            state_dtypes = [group.get("state_dtype") for group in self.param_groups]
        ids = chain.from_iterable(g["params"] for g in saved_groups)
        owners = chain.from_iterable(((p, d) for p in g["params"]) for g, d in zip(self.param_groups, state_dtypes))
        out = []
        for saved_id, (p, state_dtype) in zip(ids, owners):
            entries = state_dict["state"].get(saved_id)
            if not isinstance(entries, Mapping):
                continue
            moments = self.moment_keys if state_dtype is not None or p.is_complex() else ()
            for key in (*moments, *self.scalar_state):
                value = entries.get(key)
                if isinstance(value, torch.Tensor):
                    out.append((p, state_dtype, key, value))
        return out


# ---------------------------------------------------------------- the per-tensor algorithms


class StepContext:
    """Per-group step context: the gate, the step vector and scalar helpers (float64 where the device
    has it, :func:`optreg.optim.scalar_dtype`; all on one device)."""

    def __init__(self, steps: list[torch.Tensor], step_factor: torch.Tensor | None, lr: Any, device: torch.device,
                 states: list[dict[str, Any]] | None = None):
        self.device = device
        self.dtype = scalar_dtype(device)
        self.states = states or []
        self.t = torch.stack([s.reshape(()) for s in steps]).to(device=device, dtype=self.dtype)
        self.tc = self.t.clamp(min=1.0)  # bias corrections of a not-yet-taken step stay finite
        self.sf = None if step_factor is None else step_factor.to(device=device, dtype=self.dtype)
        self.keep = None if self.sf is None else self.sf != 0
        self.lr = as_scalar(lr, device)
        self.one = torch.ones((), device=device, dtype=self.dtype)

    def const(self, value: float) -> torch.Tensor:
        return torch.full((), value, device=self.device, dtype=self.dtype)

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """``x * step_factor`` (``x`` when there is none): exact at 1, 0 at 0."""
        return x if self.sf is None else x * self.sf

    def decay_to(self, beta: float | torch.Tensor) -> torch.Tensor:
        """The multiplier of an EMA: ``beta`` where the step is taken, 1 on a skipped step
        (:func:`optreg.optim.keep_factor`; ``beta`` may be a vector, one per param)."""
        if isinstance(beta, torch.Tensor):
            return beta if self.keep is None else torch.where(self.keep, beta, self.one)
        return self.const(beta) if self.sf is None else keep_factor(self.sf, beta)

    def scalar_state(self, key: str) -> torch.Tensor:
        """The per-param 0-dim state ``key`` of the group as one vector."""
        return torch.stack([s[key].reshape(()) for s in self.states]).to(device=self.device, dtype=self.dtype)

    def store_scalar_state(self, key: str, values: torch.Tensor) -> torch.Tensor:
        """Store ``values`` (one per param) as the per-param state ``key``; returns them as stored.

        Scalar state is updated here, per group, rather than inside the per-tensor kernels: a compiled
        kernel would redo that scalar arithmetic for every vector of elements. Each entry keeps its
        own dtype (float32, or float64 under float64 params).
        """
        for state, value in zip(self.states, values.unbind(0)):
            state[key].copy_(value)
        return self.scalar_state(key)

    def sf_or_one(self) -> torch.Tensor:
        return self.one if self.sf is None else self.sf

    def weight_decay(self, wd: float) -> torch.Tensor | None:
        """The decay multiplier ``1 - lr*wd*sf``; ``None`` when ``wd == 0`` (the kernels skip that pass)."""
        return None if wd == 0 else 1.0 - self.gated(self.lr * wd)


class PerTensorOptimizer(FamilyOptimizer):
    """Runs a kernel of :mod:`optreg_adam.functional.kernels` per param with per-group scalars.

    Each optimizer computes its step-dependent scalars once per group with a few vector ops over the
    group's step counters (no host sync), then runs its per-tensor kernel over the params, eagerly
    or, with ``compile=True``, through ``torch.compile`` (dynamic shapes on flattened views: one graph
    serves every param size; a few tensors per compiled call, see :func:`optreg.compiling.run_compiled`).
    Every update is elementwise, so a complex param is stepped as its real view (param, gradient and
    state buffers). Subclasses define the pieces below.
    """

    kernel: Callable[..., None]
    #: State tensors shaped like the param, in kernel order.
    buffers: tuple[str, ...] = ()
    #: 0-dim per-param state tensors (float32, or the param's dtype if wider), updated by ``_scalars``
    #: (see :meth:`StepContext.store_scalar_state`).
    scalar_state: tuple[str, ...] = ()
    moment_keys = ()

    def _init_state(self, p: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        for key in self.buffers:
            state[key] = moment_zeros(p)
        for key in self.scalar_state:
            state[key] = torch.zeros((), dtype=scalar_state_dtype(p), device=p.device)

    def _scalars(self, group: dict[str, Any], ctx: StepContext) -> tuple[tuple, tuple, tuple]:
        """``(shared 0-dim tensors, per-param vectors, python constants)`` in kernel order."""
        raise NotImplementedError

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        steps = [s["step"] for s in states]
        advance_steps(steps, step_factor)
        ctx = StepContext(steps, step_factor, group["lr"], params[0].device, states)
        shared, vectors, constants = self._scalars(group, ctx)
        columns = [v.unbind(0) for v in vectors]
        compiling = use_compile(group.get("compile", False), params)
        kernel = type(self).kernel
        to_compile = []
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            p, g = real_view(p), real_view(g)  # complex: step the real and imaginary parts
            bufs = [real_view(state[k]) for k in self.buffers]
            per_param = [c[i] for c in columns]
            if compiling and can_flatten(p, g, *bufs):
                to_compile.append((flat(p), flat(g), *(flat(b) for b in bufs),
                                   ctx.keep, *shared, *per_param, *constants))
            else:
                kernel(p, g, *bufs, ctx.keep, *shared, *per_param, *constants)
        if to_compile:
            run_compiled(kernel, to_compile)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("compile", False)
