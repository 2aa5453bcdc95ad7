"""The skip-step wrapper: skip an optimizer step when the loss or the gradient norm spikes.

Usage in a plain loop::

    opt = SkipStepOptimizer(Lion(model.parameters(), lr=1e-4))
    loss = model(batch).loss
    loss.backward()
    opt.latest_loss = loss          # a tensor; nothing is read back to the host
    opt.step()                      # the grad norm is computed on the device unless you set latest_grad_norm
    log(opt.step_skipped)           # 0-dim bool tensor

(``optreg.optim.give_loss(opt, loss, grad_norm=...)`` sets ``latest_loss`` and ``latest_grad_norm``
through any wrappers.) The decision is made on the device (:class:`SpikeDetector`) and handed to the
inner optimizer as ``step(step_factor=...)``, so nothing waits for the device. An inner optimizer
without that capability (e.g. ``torch.optim.SGD``) still works: the wrapper then reads the decision
back to the host (``bool(tensor)``, a sync) and calls or skips its ``step``; it warns once.

In data-parallel training every rank must make the same decision: set ``latest_loss`` to the loss
averaged over ranks (the gradient norm after DDP's all-reduce is already the same everywhere).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from optreg.optim import OptregOptimizer, WrappedOptimizer, check_number, group_device, prepare_step_factor, run_closure
from optreg_skipstep._native import native_applies, sum_of_squares
from optreg_skipstep._stats import SpikeDetector

__all__ = ["NoUpdate", "SkipStepOptimizer", "SpikeDetector", "grad_norm", "stats_dtype"]


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
    grads = [p.grad for p in params if p.grad is not None]
    plain = [g for g in grads if native_applies(g)]
    squares = sum_of_squares(plain) if plain else None  # float32 CPU gradients: one C pass (see _native.py)
    norms: list[torch.Tensor] = [] if squares is None else [squares.sqrt().to(torch.float32)]
    for grad in grads if squares is None else [g for g in grads if not native_applies(g)]:
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


def _all_params(groups: Iterable[Mapping[str, Any]]) -> list[torch.Tensor]:
    return [p for group in groups for p in group["params"]]


class SkipStepOptimizer(WrappedOptimizer):
    """Wrap ``inner`` so that a step is skipped when the loss or the grad norm spikes.

    Per step, for each tracked metric ``x`` (the loss, the gradient norm), with ``mean_x``, ``std_x``
    (unbiased) and ``n_x`` over the last ``rolling_interval_length`` recorded values of ``x``, and
    ``gate`` the caller's own ``step_factor`` (1 when not given)::

        limit_x  <- mean_x + sigma_factor * std_x
        spike_x  <- (x is NaN or +-inf)  or  (n_x >= min_samples  and  x > limit_x)
        take     <- gate != 0  and  not (spike_loss or spike_grad_norm)
        inner.step(step_factor=take)         params and inner state bit-identical when take = 0
        window_x <- window_x + [min(x, limit_x)]   for a finite x of a gated-on step (the oldest drops out)

    A step taken is the inner optimizer's step exactly; a skipped one leaves parameters and every
    inner state tensor bit-identical (step counters included). The rule of large-model trainers
    (OLMo 2, arXiv:2501.00656; OLMo-core's ``SkipStepOptimizer``), except: only an upward spike
    skips (OLMo-core compares ``|x - mean|``); a spike enters the window clipped to ``limit_x``
    (OLMo-core records it as is, so one huge loss inflates the std and hides the next spike); a NaN or
    inf value is a spike from the first step; judging starts after ``min_samples`` values
    (``rolling_interval_length // 2``, at least 2; OLMo-core: at least 20); the statistics are
    checkpointed and the decision never leaves the device.

    ``param_groups`` and ``state`` are the inner optimizer's own objects, so LR schedulers work
    unchanged. The statistics live in the first param group under ``skip_step_*`` keys (device
    tensors), so ``state_dict()`` keeps torch's shape and ``torch.distributed.checkpoint`` saves them.

    ``latest_loss`` / ``latest_grad_norm`` (tensors or floats; :class:`optreg.optim.TakesLoss`,
    :class:`optreg.optim.TakesGradNorm`) are read and cleared by the next ``step()``. Without
    ``latest_loss`` the closure's loss is used, if any; without ``latest_grad_norm`` the gradient norm
    is computed on the device (``track_grad_norm=True``) or not tracked.
    """

    PREFIX = "skip_step_"

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
        self.detector = SpikeDetector(
            rolling_interval_length=rolling_interval_length,
            sigma_factor=sigma_factor,
            min_samples=min_samples,
            device=next((group_device(g) for g in inner.param_groups if g["params"]), torch.device("cpu")),
            dtype=stats_dtype(_all_params(inner.param_groups)),
        )
        self.track_grad_norm = track_grad_norm
        self._latest_loss: torch.Tensor | None = None
        self._latest_grad_norm: torch.Tensor | None = None
        super().__init__(inner)
        #: ``step(step_factor=t)`` gates without a host sync only when the inner optimizer does (the
        #: capability's meaning, ``supports_step_factor``); with another inner it still works, through
        #: the host-synced fallback.
        self.gates_on_device = self.supports_step_factor
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
        loss = run_closure(closure)
        device = self.detector.device
        observed_loss = self._latest_loss
        if observed_loss is None and isinstance(loss, (torch.Tensor, int, float)):
            observed_loss = _as_tensor(loss)
        observed_norm = self._latest_grad_norm
        if observed_norm is None and self.track_grad_norm:
            observed_norm = grad_norm(_all_params(self.param_groups), device, self.detector.dtype)
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

    # ------------------------------------------------------------ groups and checkpoints

    def _init_group(self, group: dict[str, Any]) -> None:
        if group is self.param_groups[0]:
            self._publish()

    def _publish(self) -> None:
        """Put the detector's statistics (the very tensors it updates in place) into the first group."""
        group = self.param_groups[0]
        for key, tensor in self.detector.state.items():
            group[self.PREFIX + key] = tensor

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if getattr(self, "_wrapping", False):  # torch's __init__ registering the shared groups
            return
        dtype = stats_dtype(self.param_groups[-1]["params"])
        if torch.promote_types(dtype, self.detector.dtype) != self.detector.dtype:  # float64 params joined
            self.detector.to(dtype=dtype)
            self._publish()

    def _merged_state_dict(self) -> dict[str, Any]:
        """The inner state dict; the statistics are in ``param_groups[0]`` (copies, not the live tensors)."""
        state_dict = super()._merged_state_dict()
        groups = state_dict["param_groups"]
        first = {
            k: v.clone() if k.startswith(self.PREFIX) and isinstance(v, torch.Tensor) else v
            for k, v in groups[0].items()
        }
        return {**state_dict, "param_groups": [first, *groups[1:]]}

    def _load_merged_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load the inner state and the statistics: from ``param_groups[0]``, or from the top-level
        ``"skip_step"`` entry of checkpoints written before the statistics moved into the groups. A
        plain inner state dict keeps the statistics this optimizer has (fresh ones in a new optimizer)."""
        state_dict = dict(state_dict)
        legacy = state_dict.pop("skip_step", None)
        super()._load_merged_state_dict(state_dict)
        group = self.param_groups[0]
        saved = {key[len(self.PREFIX):]: group.pop(key) for key in list(group) if key.startswith(self.PREFIX)}
        if saved:
            self.detector.load_state_dict(saved)
        elif legacy is not None:
            self.detector.load_state_dict(legacy)
        self._publish()

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

    Per step, for every parameter ``p``::

        p <- p

    No state. Its groups keep ``lr`` so LR schedulers and loggers that read it work. Not from a
    paper: ``noop`` wraps it in :class:`SkipStepOptimizer` to measure how often the skip rule would
    fire (a dry run).
    """

    def __init__(self, params: Any, lr: float = 0.0) -> None:
        check_number("lr", lr, ge=0)
        super().__init__(params, {"lr": lr})

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        return None
