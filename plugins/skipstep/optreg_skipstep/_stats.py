"""Rolling loss / grad-norm statistics kept on the device, and the skip decision made from them.

Everything here is tensor arithmetic on the parameters' device: no ``.item()``, no
``bool(tensor)``, no Python branch on a value, so a training step never waits for the device.

The rule (per tracked metric, the loss and the gradient norm):

* keep the last ``rolling_interval_length`` recorded values in a ring buffer;
* once at least ``min_samples`` values are recorded, a value above
  ``mean + sigma_factor * std`` (unbiased std over the window) is a spike;
* a value that is NaN or +-inf is always a spike;
* the step is skipped when either metric spikes.

What enters the window: finite values only (NaN / inf never do). A spike is recorded *clipped to
the threshold* (winsorized), so one huge loss cannot inflate the std and hide the next spike, while
a genuine, lasting shift in level still moves the mean and std up step by step until the new level
is accepted. A step the caller gates off (``step_factor = 0``) records nothing.

Precision: the windows and every statistic are ``dtype`` (float32, or float64 for float64 params, so a
float64 loss or grad norm is never rounded to float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from optreg.optim import check_number
from optreg.specs import MAX_COUNT

__all__ = ["SpikeDetector"]

_METRICS = ("loss", "grad_norm")


class SpikeDetector:
    """Device-side rolling statistics of the loss and the gradient norm (see the module doc)."""

    def __init__(
        self,
        *,
        rolling_interval_length: int = 128,
        sigma_factor: float = 6.0,
        min_samples: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_number("rolling_interval_length", rolling_interval_length, ge=2, le=MAX_COUNT)
        check_number("sigma_factor", sigma_factor, ge=0)
        if min_samples is None:
            min_samples = max(2, rolling_interval_length // 2)
        check_number("min_samples", min_samples, ge=2, le=rolling_interval_length)
        self.rolling_interval_length = rolling_interval_length
        self.sigma_factor = float(sigma_factor)
        self.min_samples = min_samples
        _check_dtype(dtype)
        self.device = torch.device(device)
        #: The precision of the windows and of every statistic (float64 for float64 params).
        self.dtype = dtype
        self._index = torch.arange(rolling_interval_length, device=self.device)
        self.state: dict[str, torch.Tensor] = self._fresh_state()
        #: Whether the last step was skipped (0-dim bool tensor on the device).
        self.step_skipped = torch.zeros((), dtype=torch.bool, device=self.device)

    def _fresh_state(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for metric in _METRICS:
            state[f"{metric}_window"] = torch.zeros(self.rolling_interval_length, dtype=self.dtype, device=self.device)
            state[f"{metric}_count"] = torch.zeros((), dtype=torch.int64, device=self.device)
        state["num_steps"] = torch.zeros((), dtype=torch.int64, device=self.device)
        state["num_skipped"] = torch.zeros((), dtype=torch.int64, device=self.device)
        return state

    # ------------------------------------------------------------ statistics

    def _window_stats(self, metric: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, std, n)`` over the recorded part of ``metric``'s window (zeros while empty)."""
        window = self.state[f"{metric}_window"]
        n = torch.clamp(self.state[f"{metric}_count"], max=self.rolling_interval_length)
        valid = self._index < n
        n_float = n.to(window.dtype)
        mean = torch.where(valid, window, 0.0).sum() / torch.clamp(n_float, min=1.0)
        deviation = torch.where(valid, window - mean, 0.0)
        var = (deviation * deviation).sum() / torch.clamp(n_float - 1, min=1.0)
        return mean, var.sqrt(), n

    def statistics(self) -> dict[str, torch.Tensor]:
        """Current means, stds and counters as 0-dim device tensors (read them when you log)."""
        out: dict[str, torch.Tensor] = {}
        for metric in _METRICS:
            mean, std, n = self._window_stats(metric)
            out[f"{metric}_mean"], out[f"{metric}_std"], out[f"{metric}_samples"] = mean, std, n
        out["num_steps"] = self.state["num_steps"].clone()
        out["num_skipped"] = self.state["num_skipped"].clone()
        out["step_skipped"] = self.step_skipped.clone()
        return out

    def _observe(self, metric: str, value: torch.Tensor | None, gate_on: torch.Tensor) -> torch.Tensor:
        """Judge ``value`` against the window, record it (when finite and gated on); return 'spike'."""
        if value is None:
            return torch.zeros((), dtype=torch.bool, device=self.device)
        value = value.detach().reshape(()).to(device=self.device, dtype=self.dtype, non_blocking=True)
        mean, std, n = self._window_stats(metric)
        threshold = mean + self.sigma_factor * std
        active = n >= self.min_samples
        finite = torch.isfinite(value)
        too_high = active & (value > threshold)
        spike = too_high | ~finite
        record = finite & gate_on
        recorded = torch.where(too_high, threshold, value)
        window = self.state[f"{metric}_window"]
        count = self.state[f"{metric}_count"]
        slot = (self._index == torch.remainder(count, self.rolling_interval_length)) & record
        torch.where(slot, recorded, window, out=window)
        count.add_(record.to(count.dtype))
        return spike

    def update(
        self,
        loss: torch.Tensor | None,
        grad_norm: torch.Tensor | None,
        gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Observe one step; return its factor (0-dim float32, 1 = take the step, 0 = skip).

        ``gate`` is the caller's own ``step_factor`` (0-dim 0/1 tensor on the device or None): with 0
        nothing is recorded or counted and the returned factor is 0.
        """
        gate_on = torch.ones((), dtype=torch.bool, device=self.device) if gate is None else gate != 0
        spike = self._observe("loss", loss, gate_on) | self._observe("grad_norm", grad_norm, gate_on)
        take = gate_on & ~spike
        self.state["num_steps"].add_(gate_on.to(torch.int64))
        self.state["num_skipped"].add_((gate_on & spike).to(torch.int64))
        self.step_skipped = ~take
        return take.to(torch.float32)

    # ------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The statistics (tensors) and the settings they were gathered with."""
        return {
            **{k: v.clone() for k, v in self.state.items()},
            "rolling_interval_length": self.rolling_interval_length,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict` (a different window length keeps the newest values).

        Without ``rolling_interval_length`` the saved window's length is that of ``loss_window``.
        """
        if "rolling_interval_length" in state:
            length = int(state["rolling_interval_length"])
        elif "loss_window" in state:
            length = int(torch.as_tensor(state["loss_window"]).numel())
        else:
            length = self.rolling_interval_length
        fresh = self._fresh_state()
        for key, tensor in fresh.items():
            if key not in state:
                raise KeyError(f"skip-step statistics are missing {key!r}")
            fresh[key] = torch.as_tensor(state[key]).to(device=self.device, dtype=tensor.dtype).clone()
        if length != self.rolling_interval_length:  # keep the newest values (a one-off host-side copy)
            for metric in _METRICS:
                count = int(fresh[f"{metric}_count"])
                window = _resize_window(fresh[f"{metric}_window"], count, self.rolling_interval_length)
                fresh[f"{metric}_window"] = window
                fresh[f"{metric}_count"].fill_(min(count, length, self.rolling_interval_length))
        self.state = fresh

    def to(self, device: torch.device | str | None = None, *, dtype: torch.dtype | None = None) -> SpikeDetector:
        """Move the statistics to ``device`` and / or cast the windows to ``dtype`` (in place; returns self)."""
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            _check_dtype(dtype)
            self.dtype = dtype
        self._index = self._index.to(self.device)
        self.state = {
            k: v.to(self.device, dtype=self.dtype if v.is_floating_point() else v.dtype) for k, v in self.state.items()
        }
        self.step_skipped = self.step_skipped.to(self.device)
        return self


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the statistics' dtype must be torch.float32 or torch.float64, got {dtype}")


def _resize_window(window: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """The newest ``min(count, length)`` values of a ring buffer, laid out as a fresh ring of ``length``.

    Only used when loading a checkpoint saved with another window length (a host-side, one-off copy).
    """
    old = window.numel()
    n = min(count, old)
    newest = [window[(count - n + i) % old] for i in range(n)][-length:]
    out = torch.zeros(length, dtype=window.dtype, device=window.device)
    for i, value in enumerate(newest):
        out[i] = value
    return out
