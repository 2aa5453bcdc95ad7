"""What every schedule of this plugin shares: warmup/decay options, their resolution and checks.

A schedule here is a pure function ``get_lr(initial_lr, current, t_max)``
(see :class:`optreg.SchedulerSpec`). Counts (``warmup_steps``, ``decay_steps``,
...) are in the schedule's ``units``: steps, or tokens when ``units = "tokens"``.
Fractions (``warmup_fraction``, ``decay_fraction``) are fractions of ``t_max``
and become a whole count with Python's ``round`` (half to even, ``12.5 -> 12``), as
OLMo-core computes them, so a fraction gives the same count in both.

:meth:`Schedule.get_lr` is the one entry point: it clamps ``current < 0`` to 0 and
lets the spec's own ``t_max`` win over the caller's, then calls the schedule's
:meth:`Schedule.compute_lr`.

Options that only make sense against the run length (a warmup longer than
``t_max``, a decay tail that starts inside the warmup, a final LR above a
group's initial LR) are checked when the spec is validated if it sets
``t_max`` itself, and otherwise when the scheduler is built for a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg import FieldValueError, SchedulerSpec, SpecError, field
from optreg.errors import format_path
from optreg.specs import MAX_STEPS

if TYPE_CHECKING:
    import torch

__all__ = [
    "DecayShape",
    "Problem",
    "Schedule",
    "WarmupSchedule",
    "count_of",
    "fraction_count",
    "interpolate",
    "linear_warmup",
]

#: Shape of a decay from a start LR to an end LR over a given length.
DecayShape = Literal["linear", "cosine", "sqrt"]

#: A problem with an option: (path parts below the schedule's table, message).
Problem = tuple[tuple[str | int, ...], str]


def fraction_count(fraction: float, length: float) -> int:
    """``fraction`` of ``length`` as a whole count: Python's ``round`` (half to even: 12.5 -> 12, 13.5 -> 14).

    OLMo-core resolves every fraction as ``round(t_max * fraction)``; the same rule here gives the
    same warmup and decay lengths as OLMo-core for the same options.
    """
    return round(length * fraction)


def interpolate(shape: str, start: float, end: float, progress: float) -> float:
    """LR at ``progress`` in [0, 1] of a decay from ``start`` to ``end``.

    ``linear``: ``end + (start - end) * (1 - p)``; ``cosine``:
    ``end + (start - end) * (1 + cos(pi p)) / 2``; ``sqrt`` (the "1 - sqrt" cooldown of
    Hägele et al. 2024): ``end + (start - end) * (1 - sqrt(p))``. Exact at both ends.
    """
    if progress <= 0:
        return start
    if progress >= 1:
        return end
    if shape == "linear":
        factor = 1.0 - progress
    elif shape == "cosine":
        factor = (1.0 + math.cos(math.pi * progress)) / 2.0
    elif shape == "sqrt":
        factor = 1.0 - math.sqrt(progress)
    else:  # pragma: no cover - the spec's Literal type rejects anything else
        raise ValueError(f"unknown decay shape {shape!r}")
    return end + (start - end) * factor


def linear_warmup(peak: float, current: float, warmup: int, warmup_min_lr: float) -> float:
    """``warmup_min_lr + (peak - warmup_min_lr) * current / warmup`` for ``current < warmup``."""
    return warmup_min_lr + (peak - warmup_min_lr) * (current / warmup)


def count_of(count: int | None, fraction: float | None, length: float | None, what: str) -> int:
    """A count given absolutely or as a fraction of ``length`` (0 when neither is given)."""
    if count is not None:
        return count
    if fraction is None:
        return 0
    if length is None:
        raise SpecError(f"{what} is a fraction of t_max, but t_max is unknown: set `t_max` or pass t_max= when "
                        "building the scheduler", path="$.t_max")
    return fraction_count(fraction, length)


def _count(doc: str) -> Any:
    return field(None, ge=0, le=MAX_STEPS, doc=doc)


def _fraction(doc: str) -> Any:
    return field(None, ge=0, le=1, doc=doc)


def warmup_steps_field() -> Any:
    return _count("Warmup length in `units` (steps or tokens); give this or `warmup_fraction`.")


def warmup_fraction_field() -> Any:
    return _fraction("Warmup length as a fraction of t_max; give this or `warmup_steps`.")


def warmup_min_lr_field() -> Any:
    return field(0.0, ge=0, doc="LR at the start of the warmup (absolute).")


def decay_steps_field(doc: str = "Length of the final decay in `units`; give this or `decay_fraction`.") -> Any:
    return _count(doc)


def decay_fraction_field(
    doc: str = "Length of the final decay as a fraction of t_max; give this or `decay_steps`.",
) -> Any:
    return _fraction(doc)


def decay_min_lr_field() -> Any:
    return field(0.0, ge=0, doc="LR at the end of the decay (absolute), held afterwards.")


def alpha_f_field() -> Any:
    return field(0.1, ge=0, le=1, doc="Final LR as a fraction of each group's initial LR (reached at t_max).")


def check_one_of(
    spec: Any, count_name: str, fraction_name: str, *, required: bool, what: str, fraction_of: str = "t_max"
) -> None:
    """Raise :class:`FieldValueError` unless at most one (exactly one if ``required``) is given."""
    count, fraction = getattr(spec, count_name), getattr(spec, fraction_name)
    if count is not None and fraction is not None:
        raise FieldValueError(
            fraction_name, f"give the {what} as `{count_name}` or as `{fraction_name}`, not both"
        )
    if required and count is None and fraction is None:
        raise FieldValueError(
            count_name,
            f"required: give the {what} as `{count_name}` (a count of {spec.units}) or as `{fraction_name}` "
            f"(a fraction of {fraction_of}); 0 means none",
        )


@attrs.frozen(kw_only=True)
class Schedule(SchedulerSpec):
    """Base of this plugin's schedules: option checks against the run length and the groups' LRs.

    Subclasses implement :meth:`compute_lr`; :meth:`get_lr` (the core's: ``t_max`` resolved, ``current``
    clamped at 0) is what everyone calls.
    """

    #: Whether every configuration of this schedule needs the run length (``needs_t_max`` refines it).
    NEEDS_T_MAX: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        self.check_options()
        if self.t_max is not None:
            problems = self.horizon_problems(self.t_max)
            if problems:
                parts, message = problems[0]
                index = parts[1] if len(parts) > 1 else None
                raise FieldValueError(str(parts[0]), message, index)

    def check_options(self) -> None:
        """Cross-field checks that need no run length; raise :class:`FieldValueError`."""

    def needs_t_max(self) -> bool:
        """Whether this configuration needs ``t_max`` (e.g. a fraction, or a decay to t_max)."""
        return self.NEEDS_T_MAX

    def horizon_problems(self, t_max: int) -> list[Problem]:
        """Options that do not fit a schedule of length ``t_max``."""
        return []

    def lr_problems(self, initial_lr: float, t_max: int | None) -> list[Problem]:
        """Options that do not fit a param group whose initial LR is ``initial_lr``."""
        return []

    def check_run(self, initial_lrs: Sequence[float], t_max: int | None) -> None:
        """Raise :class:`SpecError` (paths like ``$.warmup_steps``) if the schedule does not fit the run."""
        t_max = self.t_max if self.t_max is not None else t_max
        if t_max is None and self.needs_t_max():
            raise SpecError(
                f"schedule {self.TYPE!r} needs t_max with these options: set `t_max` in the [scheduler] table "
                "or pass t_max= when building it",
                path="$.t_max",
            )
        problems = [(p, m + " (t_max comes from the run)") for p, m in self.horizon_problems(t_max)] if (
            t_max is not None and self.t_max is None
        ) else []
        for index, lr in enumerate(initial_lrs):
            problems += [
                (p, f"{m} (param group {index} has initial LR {lr:g})") for p, m in self.lr_problems(lr, t_max)
            ]
        if problems:
            errors = [(format_path(p), m) for p, m in problems]
            raise SpecError(errors[0][1], path=errors[0][0], errors=errors)

    def build(self, optimizer: torch.optim.Optimizer, *, t_max: int | None = None) -> Any:
        """Check the schedule against the run and the optimizer's groups, then wrap it as an LR scheduler."""
        from optreg.scheduling import ScheduledLR

        initial_lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        self.check_run(initial_lrs, t_max)
        return ScheduledLR(optimizer, self, t_max=t_max)

    def _t_max(self, t_max: float | None) -> float:
        if t_max is None:
            raise SpecError(f"schedule {self.TYPE!r} needs t_max: set `t_max` or pass t_max= when building it",
                            path="$.t_max")
        return t_max


@attrs.frozen(kw_only=True)
class WarmupSchedule(Schedule):
    """A linear warmup from ``warmup_min_lr`` to each group's initial LR, then the schedule's own shape."""

    #: Whether a zero-length warmup is invalid (the shape divides by the warmup length).
    WARMUP_REQUIRED_POSITIVE: ClassVar[bool] = False

    warmup_steps: int | None = warmup_steps_field()
    warmup_fraction: float | None = warmup_fraction_field()
    warmup_min_lr: float = warmup_min_lr_field()

    def check_options(self) -> None:
        check_one_of(self, "warmup_steps", "warmup_fraction", required=True, what="warmup")
        if self.WARMUP_REQUIRED_POSITIVE and (self.warmup_steps == 0 or self.warmup_fraction == 0):
            name = "warmup_steps" if self.warmup_steps is not None else "warmup_fraction"
            raise FieldValueError(name, f"{self.TYPE} needs a warmup > 0: {self._why_positive_warmup()}")

    def _why_positive_warmup(self) -> str:
        return ""

    def needs_t_max(self) -> bool:
        return self.NEEDS_T_MAX or self.warmup_fraction is not None

    def warmup(self, t_max: float | None) -> int:
        """The warmup length in ``units``."""
        return count_of(self.warmup_steps, self.warmup_fraction, t_max, "warmup_fraction")

    def _warmup_name(self) -> str:
        return "warmup_steps" if self.warmup_steps is not None else "warmup_fraction"

    def horizon_problems(self, t_max: int) -> list[Problem]:
        warmup = self.warmup(t_max)
        problems: list[Problem] = []
        if warmup > t_max:
            problems.append(((self._warmup_name(),), f"the warmup ({warmup}) is longer than t_max ({t_max})"))
        if self.WARMUP_REQUIRED_POSITIVE and warmup == 0:
            problems.append(
                ((self._warmup_name(),), f"the warmup rounds to 0 with t_max = {t_max}; {self.TYPE} needs a "
                 f"warmup > 0: {self._why_positive_warmup()}")
            )
        return problems

    def lr_problems(self, initial_lr: float, t_max: int | None) -> list[Problem]:
        if self.warmup_min_lr > initial_lr:
            return [(("warmup_min_lr",), f"warmup_min_lr = {self.warmup_min_lr:g} is above the initial LR; the "
                     "warmup would lower the LR")]
        return []


@attrs.frozen(kw_only=True)
class DecayTail(WarmupSchedule):
    """A warmup schedule that ends with a decay of ``decay_steps`` / ``decay_fraction`` to ``decay_min_lr`` at t_max."""

    #: Whether the decay length must be given (else it defaults to none).
    DECAY_REQUIRED: ClassVar[bool] = True

    decay_steps: int | None = decay_steps_field()
    decay_fraction: float | None = decay_fraction_field()
    decay_min_lr: float = decay_min_lr_field()

    def check_options(self) -> None:
        super().check_options()
        check_one_of(self, "decay_steps", "decay_fraction", required=self.DECAY_REQUIRED, what="decay")
        if self.warmup_fraction is not None and self.decay_fraction is not None and (
            self.warmup_fraction + self.decay_fraction > 1
        ):
            raise FieldValueError(
                "decay_fraction",
                f"warmup_fraction + decay_fraction = {self.warmup_fraction + self.decay_fraction:g} is above 1: the "
                "decay would start inside the warmup",
            )

    def needs_t_max(self) -> bool:
        # The decay ends at t_max, so any decay needs it.
        return super().needs_t_max() or self.decay_steps not in (None, 0) or self.decay_fraction not in (None, 0)

    def decay(self, t_max: float | None) -> int:
        """The decay length in ``units``."""
        return count_of(self.decay_steps, self.decay_fraction, t_max, "decay_fraction")

    def _decay_name(self) -> str:
        return "decay_steps" if self.decay_steps is not None else "decay_fraction"

    def horizon_problems(self, t_max: int) -> list[Problem]:
        problems = super().horizon_problems(t_max)
        warmup, decay = self.warmup(t_max), self.decay(t_max)
        if decay > t_max:
            problems.append(((self._decay_name(),), f"the decay ({decay}) is longer than t_max ({t_max})"))
        elif warmup <= t_max and warmup + decay > t_max:
            problems.append(
                ((self._decay_name(),), f"warmup ({warmup}) + decay ({decay}) = {warmup + decay} is longer than "
                 f"t_max ({t_max}): the decay would start inside the warmup")
            )
        return problems

    def tail_start_lr(self, initial_lr: float, t_max: float) -> float:
        """LR where the decay tail starts (the schedule's value at ``t_max - decay``)."""
        return initial_lr

    def lr_problems(self, initial_lr: float, t_max: int | None) -> list[Problem]:
        problems = super().lr_problems(initial_lr, t_max)
        if t_max is None or self.decay(t_max) == 0 or problems:
            return problems
        start = self.tail_start_lr(initial_lr, t_max)
        if self.decay_min_lr > start:
            problems.append((("decay_min_lr",), f"decay_min_lr = {self.decay_min_lr:g} is above the LR where the "
                             f"decay starts ({start:g}); the decay would raise the LR"))
        return problems
