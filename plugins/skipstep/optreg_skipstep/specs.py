"""Spec classes of the skip-step family: ``skip_step``, ``skip_step_adamw``, ``skip_step_lion``, ``noop``.

No torch import at module load (nor in the adam and sign specs subclassed here): the registry imports
this module for every ``optreg`` command. The optimizers are imported when a spec builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from optreg_adam.specs import AdamWSpec
from optreg_sign.specs import LionSpec

from optreg import BuildContext, FieldValueError, OptimizerSpec, WrapperSpec, field
from optreg.memory import StateTensor, scalar
from optreg.specs import MAX_COUNT

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import torch

    from optreg.memory import GroupShape, ParamShape
    from optreg_skipstep.optim import SkipStepOptimizer

__all__ = ["ALL_SPECS", "NoOpSpec", "SkipStepAdamWSpec", "SkipStepLionSpec", "SkipStepSpec"]

PAPER = (
    "Loss / grad-norm spike skipping as in large-model trainers (e.g. OLMo 2, arXiv:2501.00656; "
    "PaLM, arXiv:2204.02311 on loss spikes)"
)
SKIP_FIELDS = ("rolling_interval_length", "sigma_factor", "min_samples", "track_grad_norm")


def _rolling_interval_length() -> Any:
    return field(
        128, ge=2, le=MAX_COUNT, per_group=False, kwarg=False,
        doc="How many recent values the mean and std cover (a window of that many values is allocated).",
    )


def _sigma_factor() -> Any:
    return field(
        6.0, ge=0, per_group=False, kwarg=False, doc="Skip when a value exceeds mean + sigma_factor * std."
    )


def _min_samples() -> Any:
    return field(
        None, ge=2, le=MAX_COUNT, per_group=False, kwarg=False,
        doc="Values recorded before spikes are judged (default: rolling_interval_length // 2, at least 2); "
        "non-finite values are skipped from the first step.",
    )


def _track_grad_norm() -> Any:
    return field(
        True, per_group=False, kwarg=False,
        doc="Compute the gradient norm on the device when latest_grad_norm is not set.",
    )


def _check_skip_fields(spec: Any) -> None:
    if spec.min_samples is not None and spec.min_samples > spec.rolling_interval_length:
        limit = spec.rolling_interval_length
        raise FieldValueError("min_samples", f"must be <= rolling_interval_length ({limit}), got {spec.min_samples}")


def _statistics_layout(spec: Any, groups: Sequence[GroupShape]) -> list[StateTensor]:
    """The SpikeDetector's state (``_stats.py``), kept once, in the first param group as ``skip_step_*``.

    A window of ``rolling_interval_length`` values per metric (loss, grad norm) in ``stats_dtype``:
    float64 when any param's real dtype is float64, else float32; int64 0-dim counters.
    """
    import torch

    dtype = torch.float32
    for group in groups:
        for param in group.params:
            real = param.dtype.to_real() if param.dtype.is_complex else param.dtype
            if real.is_floating_point:
                dtype = torch.promote_types(dtype, real)
    length = spec.rolling_interval_length
    return [
        StateTensor("skip_step_loss_window", (length,), dtype),
        scalar("skip_step_loss_count", "int64"),
        StateTensor("skip_step_grad_norm_window", (length,), dtype),
        scalar("skip_step_grad_norm_count", "int64"),
        scalar("skip_step_num_steps", "int64"),
        scalar("skip_step_num_skipped", "int64"),
    ]


def _wrap(spec: Any, inner: torch.optim.Optimizer) -> SkipStepOptimizer:
    from optreg_skipstep.optim import SkipStepOptimizer

    return SkipStepOptimizer(inner, **{name: getattr(spec, name) for name in SKIP_FIELDS})


@attrs.frozen(kw_only=True)
class SkipStepSpec(WrapperSpec):
    """Skip a step when the loss or the grad norm spikes, around any registered optimizer.

    Rolling mean/std of the loss and the gradient norm, kept on the device; a step is skipped when
    either is above mean + sigma_factor * std (after ``min_samples`` values) or not finite. With an
    inner optimizer that accepts ``step_factor`` nothing syncs with the host; with one that does not,
    each step reads the decision back (documented fallback, warned once), and the configuration does
    not claim ``step_factor`` (its capabilities are the inner optimizer's, ``step_factor`` at most).
    Group overrides name the inner optimizer's options.
    """

    TYPE: ClassVar[str] = "skip_step"
    PAPER: ClassVar[str] = PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor"})

    rolling_interval_length: int = _rolling_interval_length()
    sigma_factor: float = _sigma_factor()
    min_samples: int | None = _min_samples()
    track_grad_norm: bool = _track_grad_norm()

    def __attrs_post_init__(self) -> None:
        _check_skip_fields(self)

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> list[StateTensor]:
        """The skip-step statistics: loss and grad-norm windows (float32; float64 with float64 params), int64
        counters."""
        return _statistics_layout(self, groups)

    def wrap(self, inner: torch.optim.Optimizer, context: BuildContext) -> SkipStepOptimizer:
        return _wrap(self, inner)


@attrs.frozen(kw_only=True)
class SkipStepLionSpec(LionSpec):
    """Lion with loss / grad-norm spike skipping (``skip_step`` around ``lion``, with flat options)."""

    TYPE: ClassVar[str] = "skip_step_lion"
    PAPER: ClassVar[str] = LionSpec.PAPER + "; " + PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})

    rolling_interval_length: int = _rolling_interval_length()
    sigma_factor: float = _sigma_factor()
    min_samples: int | None = _min_samples()
    track_grad_norm: bool = _track_grad_norm()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        _check_skip_fields(self)

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> list[StateTensor]:
        """Lion's own shared state (per-param state is Lion's layout) plus the skip-step statistics."""
        return [*super().shared_state_layout(groups), *_statistics_layout(self, groups)]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> SkipStepOptimizer:
        return _wrap(self, super().create(param_groups, context))


@attrs.frozen(kw_only=True)
class SkipStepAdamWSpec(AdamWSpec):
    """AdamW with loss / grad-norm spike skipping (``skip_step`` around ``adamw``, with flat options).

    A skipped step does not advance AdamW's step counter, so bias correction stays right.
    """

    TYPE: ClassVar[str] = "skip_step_adamw"
    PAPER: ClassVar[str] = AdamWSpec.PAPER + "; " + PAPER

    rolling_interval_length: int = _rolling_interval_length()
    sigma_factor: float = _sigma_factor()
    min_samples: int | None = _min_samples()
    track_grad_norm: bool = _track_grad_norm()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        _check_skip_fields(self)

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> list[StateTensor]:
        """AdamW's own shared state (per-param state is AdamW's layout) plus the skip-step statistics."""
        return [*super().shared_state_layout(groups), *_statistics_layout(self, groups)]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> SkipStepOptimizer:
        return _wrap(self, super().create(param_groups, context))


@attrs.frozen(kw_only=True)
class NoOpSpec(OptimizerSpec):
    """Track the loss / grad-norm statistics of ``skip_step`` but never change a parameter.

    For dry runs and for measuring how often a skip rule would fire (``step_skipped``,
    ``statistics()``); ``lr`` is kept so schedules and loggers that read it work.
    """

    TYPE: ClassVar[str] = "noop"
    PAPER: ClassVar[str] = PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor"})

    lr: float = field(0.0, ge=0, doc="Not used for updates; present for LR schedules and loggers.")
    rolling_interval_length: int = _rolling_interval_length()
    sigma_factor: float = _sigma_factor()
    min_samples: int | None = _min_samples()
    track_grad_norm: bool = _track_grad_norm()

    def __attrs_post_init__(self) -> None:
        _check_skip_fields(self)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """None per parameter: NoUpdate keeps no state."""
        return []

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> list[StateTensor]:
        """The skip-step statistics: loss and grad-norm windows (float32; float64 with float64 params), int64
        counters."""
        return _statistics_layout(self, groups)

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> SkipStepOptimizer:
        from optreg_skipstep.optim import NoUpdate

        return _wrap(self, NoUpdate(param_groups, lr=self.lr))


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type, ...] = (SkipStepSpec, SkipStepAdamWSpec, SkipStepLionSpec, NoOpSpec)
