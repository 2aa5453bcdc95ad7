"""The skip-step wrapper: skip an optimizer step when the loss or the gradient norm spikes.

Usage in a plain loop::

    opt = SkipStepOptimizer(Lion(model.parameters(), lr=1e-4))
    loss = model(batch).loss
    loss.backward()
    opt.latest_loss = loss          # a tensor; nothing is read back to the host
    opt.step()                      # the grad norm is computed on the device unless you set latest_grad_norm
    log(opt.step_skipped)           # 0-dim bool tensor

The decision is made on the device (:class:`~optreg_skipstep.stats.SpikeDetector`) and handed to
the inner optimizer as ``step(step_factor=...)``, so nothing waits for the device. An inner optimizer
without that capability (e.g. ``torch.optim.SGD``) still works: the wrapper then reads the decision
back to the host (``bool(tensor)``, a sync) and calls or skips its ``step``; it warns once.

In data-parallel training every rank must make the same decision: set ``latest_loss`` to the loss
averaged over ranks (the gradient norm after DDP's all-reduce is already the same everywhere).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optreg.optim import OptregOptimizer, prepare_step_factor
from optreg_skipstep.stats import SpikeDetector

__all__ = ["NoUpdate", "SkipStepOptimizer", "grad_norm", "stats_dtype"]


def stats_dtype(params: Iterable[torch.Tensor]) -> torch.dtype:
    """The dtype skip-step statistics of ``params`` are kept in: float64 when any param (or its real view)
    is float64, else float32 (bf16 / fp16 / fp32 params accumulate in float32)."""
    wide = torch.float32
    for p in params:
        dtype = p.real.dtype if p.is_complex() else p.dtype
        if dtype.is_floating_point:
            wide = torch.promote_types(wide, dtype)
    return wide


def grad_norm(
    params: Iterable[torch.Tensor], device: torch.device, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The global L2 norm of the gradients of ``params`` (0-dim, on ``device``, no host sync).

    Each gradient's norm accumulates in its own precision or float32, whichever is wider (a float64
    gradient is never rounded to float32); a complex gradient's norm is that of its real view. The result
    has dtype ``dtype`` (default: the widest per-gradient norm, float32 at least).
    """
    norms: list[torch.Tensor] = []
    for p in params:
        grad = p.grad
        if grad is None:
            continue
        if grad.is_sparse:
            grad = grad.coalesce()._values()
        if grad.is_complex():
            grad = torch.view_as_real(grad)
        norm = torch.linalg.vector_norm(grad, dtype=torch.promote_types(grad.dtype, torch.float32))
        if hasattr(norm, "full_tensor"):  # a DTensor gradient (FSDP2 / TP): reduce the partial norms
            norm = norm.full_tensor()
        norms.append(norm)
    if dtype is None:
        dtype = torch.float32
        for norm in norms:
            dtype = torch.promote_types(dtype, norm.dtype)
    if not norms:
        return torch.zeros((), dtype=dtype, device=device)
    return torch.linalg.vector_norm(torch.stack([n.to(device=device, dtype=dtype, non_blocking=True) for n in norms]))


class SkipStepOptimizer(torch.optim.Optimizer):
    """Wrap ``inner`` so that a step is skipped when the loss or the grad norm spikes.

    A step is skipped when the loss or the gradient norm is not finite, or, once ``min_samples``
    values are recorded, above ``mean + sigma_factor * std`` of the last ``rolling_interval_length``
    recorded values (see :mod:`optreg_skipstep.stats`). A skipped step leaves parameters and every
    inner state tensor bit-identical (step counters included); a step taken is the inner optimizer's
    step exactly. ``param_groups`` and ``state`` are the inner optimizer's own objects, so LR
    schedulers work unchanged; the statistics are saved in the state dict under ``"skip_step"``.

    ``latest_loss`` / ``latest_grad_norm`` (tensors or floats) are read and cleared by the next
    ``step()``. Without ``latest_loss`` the closure's loss is used, if any; without
    ``latest_grad_norm`` the gradient norm is computed on the device (``track_grad_norm=True``) or
    not tracked.
    """

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        *,
        rolling_interval_length: int = 128,
        sigma_factor: float = 6.0,
        min_samples: int | None = None,
        track_grad_norm: bool = True,
    ) -> None:
        if not isinstance(inner, torch.optim.Optimizer):
            raise TypeError(f"inner must be a torch.optim.Optimizer, got {type(inner).__name__}")
        self._ready = False
        super().__init__(inner.param_groups, inner.defaults)
        self.inner = inner
        self.param_groups = inner.param_groups
        self.state = inner.state
        self.defaults = inner.defaults
        self._ready = True
        device = next((p.device for g in inner.param_groups for p in g["params"]), torch.device("cpu"))
        self.detector = SpikeDetector(
            rolling_interval_length=rolling_interval_length,
            sigma_factor=sigma_factor,
            min_samples=min_samples,
            device=device,
            dtype=stats_dtype(p for g in inner.param_groups for p in g["params"]),
        )
        self.track_grad_norm = track_grad_norm
        self.gates_on_device = bool(getattr(inner, "supports_step_factor", False))
        #: ``step(step_factor=t)`` gates without a host sync only when the inner optimizer does (the
        #: capability's meaning); with another inner it still works, through the host-synced fallback.
        self.supports_step_factor = self.gates_on_device
        self._latest_loss: torch.Tensor | None = None
        self._latest_grad_norm: torch.Tensor | None = None
        if not self.gates_on_device:
            warnings.warn(
                f"skip_step: {type(inner).__name__} does not accept step_factor, so every step reads the "
                "skip decision back to the host (a host-device sync) and skips the inner step in Python",
                RuntimeWarning,
                stacklevel=2,
            )

    # ------------------------------------------------------------ what the user sets and reads

    @property
    def latest_loss(self) -> torch.Tensor | None:
        """The loss of the coming step (set it before ``step()``; cleared by it)."""
        return self._latest_loss

    @latest_loss.setter
    def latest_loss(self, value: torch.Tensor | float | None) -> None:
        self._latest_loss = _as_tensor(value)

    @property
    def latest_grad_norm(self) -> torch.Tensor | None:
        """The gradient norm of the coming step, e.g. what ``clip_grad_norm_`` returned (optional)."""
        return self._latest_grad_norm

    @latest_grad_norm.setter
    def latest_grad_norm(self, value: torch.Tensor | float | None) -> None:
        self._latest_grad_norm = _as_tensor(value)

    @property
    def step_skipped(self) -> torch.Tensor:
        """Whether the last step was skipped: a 0-dim bool tensor on the parameters' device."""
        return self.detector.step_skipped

    def statistics(self) -> dict[str, torch.Tensor]:
        """Rolling means / stds, sample counts, ``num_steps`` and ``num_skipped`` (device tensors)."""
        return self.detector.statistics()

    # ------------------------------------------------------------ stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Judge the step, then take it (or not) with the inner optimizer; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        device = self.detector.device
        observed_loss = self._latest_loss
        if observed_loss is None and isinstance(loss, (torch.Tensor, int, float)):
            observed_loss = _as_tensor(loss)
        observed_norm = self._latest_grad_norm
        if observed_norm is None and self.track_grad_norm:
            observed_norm = grad_norm(
                (p for g in self.param_groups for p in g["params"]), device, self.detector.dtype
            )
        gate = prepare_step_factor(step_factor, device)
        factor = self.detector.update(observed_loss, observed_norm, gate)
        self._latest_loss = self._latest_grad_norm = None
        inner_closure = None if closure is None else (lambda: loss)
        if self.gates_on_device:
            self.inner.step(inner_closure, step_factor=factor)
        elif bool(factor):  # the documented host-synced fallback
            self.inner.step(inner_closure)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not getattr(self, "_ready", False):  # torch.optim.Optimizer.__init__ registering the shared groups
            super().add_param_group(param_group)
            return
        self.inner.add_param_group(param_group)
        dtype = stats_dtype(self.inner.param_groups[-1]["params"])
        if torch.promote_types(dtype, self.detector.dtype) != self.detector.dtype:  # float64 params joined
            self.detector.to(dtype=dtype)

    # ------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict plus ``"skip_step"``: the rolling statistics.

        State-dict hooks registered on the wrapper run as on any ``torch.optim.Optimizer``.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state = self.inner.state_dict()
        state["skip_step"] = self.detector.state_dict()
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state)
            if result is not None:
                state = result
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` saved (a plain inner state dict is accepted: fresh statistics)."""
        state_dict = dict(state_dict)
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = dict(result)
        stats = state_dict.pop("skip_step", None)
        self.inner.load_state_dict(state_dict)
        if stats is not None:
            self.detector.load_state_dict(stats)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but hooks (the inner optimizer and the statistics too): hooks are not pickled, as in torch."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_optimizer_")}

    def __repr__(self) -> str:
        d = self.detector
        return (
            f"SkipStepOptimizer(rolling_interval_length={d.rolling_interval_length}, sigma_factor={d.sigma_factor}, "
            f"min_samples={d.min_samples}, inner={self.inner!r})"
        )


def _as_tensor(value: Any) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)  # exact; the statistics cast it to their dtype
    raise TypeError(f"expected a loss / grad norm as a tensor or a number, got {type(value).__name__}")


class NoUpdate(OptregOptimizer):
    """An optimizer that never changes a parameter (the inner optimizer of ``noop``).

    Its groups keep ``lr`` so LR schedulers and loggers that read it work.
    """

    def __init__(self, params: Any, lr: float = 0.0) -> None:
        super().__init__(params, {"lr": lr})

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        return None
