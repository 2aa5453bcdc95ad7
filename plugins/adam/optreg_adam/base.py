"""The shared optimizer skeleton of the family: argument checks, lazy state, gathering a group's tensors.

Complex parameters are stepped as their real view (``torch.view_as_real``: the real and imaginary
parts are two independent real coordinates, optax's ``split_real_and_imaginary``), which is what
``torch.optim.Adam`` does. Moment buffers of a complex param are complex tensors (torch's layout),
or, when the group asks for a ``state_dtype``, real tensors of the real view's shape ``(..., 2)``
in that dtype (there is no complex bfloat16).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import torch

from optreg.optim import OptregOptimizer
from optreg_adam._common import real_view

__all__ = ["FamilyOptimizer", "check_hparams", "moment_zeros", "real_view", "scalar_state_dtype", "state_dtype_of"]

_STATE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def check_hparams(**values: Any) -> None:
    """Raise ``ValueError`` for invalid hyperparameters (what the specs reject at validation time, for direct use)."""
    for name, value in values.items():
        if value is None:
            continue
        if name == "betas":
            for i, b in enumerate(value):
                if not (isinstance(b, (int, float)) and 0.0 <= b < 1.0):
                    raise ValueError(f"Invalid beta parameter at index {i}: {b!r} (must be in [0, 1))")
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"Tensor {name} must be a 1-element tensor")
            continue
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"Invalid {name} value: {value!r} (must be a finite number >= 0)")


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
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                self._init_state(p, group, state)
            elif state["step"].device != p.device:  # e.g. a checkpoint saved by torch.optim with its CPU step
                state["step"] = state["step"].to(p.device)
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return params, grads, states

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
        """torch's ``load_state_dict``, keeping moment buffers in ``state_dtype`` and scalar state in its dtype.

        torch casts every loaded state tensor of a floating param to the param's dtype (bf16 params
        would round fp32 state to bf16); the affected entries are re-made from the saved tensors,
        exactly, before the post-hooks run. The hooks run as torch runs them.
        """
        state_dict = dict(state_dict)
        pre_hooks = self._optimizer_load_state_dict_pre_hooks
        post_hooks = self._optimizer_load_state_dict_post_hooks
        for pre_hook in pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        saved = self._entries_to_keep(state_dict)
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        try:
            super().load_state_dict(state_dict)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre_hooks
            self._optimizer_load_state_dict_post_hooks = post_hooks
        for p, group, key, value in saved:
            state = self.state.get(p)
            if state is None or key not in state:
                continue
            if key in self.scalar_state:
                state[key] = value.to(device=p.device, dtype=scalar_state_dtype(p))
            else:
                state[key] = _as_moment(p, value, group.get("state_dtype"))
        for post_hook in post_hooks.values():
            post_hook(self)

    def _entries_to_keep(self, state_dict: Mapping[str, Any]) -> list[tuple[torch.Tensor, dict, str, torch.Tensor]]:
        """The saved state tensors torch's casting would round or mis-shape, with their params and groups."""
        saved_groups = state_dict.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(saved_groups, self.param_groups)
        ):
            return []  # torch's load_state_dict raises the error
        ids = chain.from_iterable(g["params"] for g in saved_groups)
        owners = chain.from_iterable(((p, g) for p in g["params"]) for g in self.param_groups)
        out = []
        for saved_id, (p, group) in zip(ids, owners):
            entries = state_dict["state"].get(saved_id)
            if not isinstance(entries, Mapping):
                continue
            moments = self.moment_keys if group.get("state_dtype") is not None or p.is_complex() else ()
            for key in (*moments, *self.scalar_state):
                value = entries.get(key)
                if isinstance(value, torch.Tensor):
                    out.append((p, group, key, value))
        return out
