"""torch's LR schedulers as optreg schedules: stateless closed forms of step, multistep, polynomial, one-cycle,
cyclic, cosine annealing (with and without warm restarts) and linear.

optreg's model: a schedule is a pure function ``get_lr(initial_lr, current, t_max)`` of how far the run
has come (steps, or tokens with ``units = "tokens"``), wrapped as a torch ``LRScheduler`` whose only
state is ``current`` (see :mod:`optreg.scheduling`). torch's schedulers instead update each group's LR
from its previous value (a recursion); each schedule here is the closed form of that recursion, so
resuming needs nothing but ``current``. Translation, for every schedule:

- the LR a torch scheduler starts from (the optimizer's ``lr``, or ``max_lr`` for one-cycle and
  cyclic) is each param group's initial LR, as everywhere in optreg;
- a torch length argument (``total_iters``, ``T_max``, ``total_steps``) is optreg's ``t_max`` (the
  spec's own, else the run's length);
- before the start (``current < 0``) the LR is the LR at 0.

``tests/test_signatures.py`` checks every torch argument is an option, the initial LR, ``t_max``, or
listed in ``LEFT_OUT`` with the reason, against the installed torch. ``momentum_at`` (one-cycle and
cyclic) gives the momentum that torch's ``cycle_momentum`` sets, from the same ``current``.

No torch import at module load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

import optreg
from optreg.specs import MAX_STEPS

if TYPE_CHECKING:
    import torch

__all__ = [
    "CosineAnnealing",
    "CosineWarmRestarts",
    "Cyclic",
    "LinearRamp",
    "MultiStep",
    "OneCycle",
    "Polynomial",
    "SCHEDULER_SPECS",
    "Step",
    "TorchSchedule",
]

#: What a torch argument can map to besides a field of the same or another name.
INITIAL_LR = "the param group's initial LR"
T_MAX = "t_max"
SGDR = "Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm Restarts, arXiv:1608.03983"
LAST_EPOCH = (
    "resuming is optreg's: the scheduler's state_dict holds `current`, and a schedule is a function of it"
)


@attrs.frozen(kw_only=True)
class TorchSchedule(optreg.SchedulerSpec):
    """Base of the torch schedules: names the torch class (the core's ``get_lr`` clamps ``current`` and
    resolves ``t_max``; each schedule implements ``compute_lr``).

    ``TORCH_CLASS``: the ``torch.optim.lr_scheduler`` class this schedule reproduces. ``RENAMED``:
    torch argument -> the option that plays its part (a field, :data:`INITIAL_LR` or ``t_max``).
    ``LEFT_OUT``: torch arguments with no counterpart, and why. ``DEFAULTS_DIFFER``: fields whose
    default is not torch's, and why.
    """

    TORCH_CLASS: ClassVar[str] = ""
    RENAMED: ClassVar[Mapping[str, str]] = {}
    LEFT_OUT: ClassVar[Mapping[str, str]] = {"last_epoch": LAST_EPOCH}
    DEFAULTS_DIFFER: ClassVar[Mapping[str, str]] = {}
    NEEDS_T_MAX: ClassVar[bool] = False

    def needs_t_max(self) -> bool:
        return self.NEEDS_T_MAX

    def length(self, t_max: float | None) -> float:
        """The schedule's length (torch's ``total_iters`` / ``T_max`` / ``total_steps``)."""
        if t_max is None:
            raise optreg.SpecError(
                f"schedule {self.TYPE!r} needs t_max: set `t_max` or pass t_max= when building it", path="$.t_max"
            )
        return t_max


class _MomentumCycling:
    """A schedule that also cycles each group's momentum (or Adam's beta1) when ``cycle_momentum`` is on."""

    cycle_momentum: bool

    def momentum_at(self, current: float, t_max: float | None) -> float:
        raise NotImplementedError

    def build(self, optimizer: torch.optim.Optimizer, *, t_max: int | None = None) -> Any:
        if not self.cycle_momentum:
            return optreg.SchedulerSpec.build(self, optimizer, t_max=t_max)  # type: ignore[arg-type]
        from optreg_torch._scheduling import MomentumCyclingLR

        return MomentumCyclingLR(optimizer, self, t_max=t_max)  # type: ignore[arg-type]


def _positive_int(doc: str) -> Any:
    return optreg.field(ge=1, le=MAX_STEPS, doc=doc)


@attrs.frozen(kw_only=True)
class Step(TorchSchedule):
    """torch's ``StepLR``: the LR times ``gamma`` every ``step_size``.

    ``lr = lr0 * gamma ** (current // step_size)``.
    """

    TYPE: ClassVar[str] = "step"
    PAPER: ClassVar[str] = "torch.optim.lr_scheduler.StepLR (step decay, Krizhevsky et al. 2012)"
    TORCH_CLASS: ClassVar[str] = "StepLR"

    step_size: int = _positive_int("Decay every this many `units`.")
    gamma: float = optreg.field(0.1, gt=0, doc="Factor of each decay.")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * self.gamma ** (current // self.step_size)


def _increasing(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value:
        raise optreg.FieldValueError(attribute.name, "give at least one milestone")
    for i in range(1, len(value)):
        if value[i] <= value[i - 1]:
            raise optreg.FieldValueError(
                attribute.name, f"milestones must increase strictly, got {value[i]} after {value[i - 1]}", i
            )


@attrs.frozen(kw_only=True)
class MultiStep(TorchSchedule):
    """torch's ``MultiStepLR``: the LR times ``gamma`` at each milestone.

    ``lr = lr0 * gamma ** (number of milestones <= current)``.
    """

    TYPE: ClassVar[str] = "multistep"
    PAPER: ClassVar[str] = "torch.optim.lr_scheduler.MultiStepLR (He et al. 2016, Deep Residual Learning)"
    TORCH_CLASS: ClassVar[str] = "MultiStepLR"

    milestones: tuple[int, ...] = optreg.field(
        ge=1, le=MAX_STEPS, validator=_increasing, doc="Where the LR decays, in `units`, strictly increasing."
    )
    gamma: float = optreg.field(0.1, gt=0, doc="Factor of each decay.")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * self.gamma ** sum(1 for m in self.milestones if m <= current)


@attrs.frozen(kw_only=True)
class Polynomial(TorchSchedule):
    """torch's ``PolynomialLR``: a polynomial decay to 0 at t_max (held afterwards).

    ``lr = lr0 * (1 - min(current, t_max) / t_max) ** power``; ``power = 1`` is a linear decay.
    """

    TYPE: ClassVar[str] = "polynomial"
    PAPER: ClassVar[str] = "torch.optim.lr_scheduler.PolynomialLR (Chen et al. 2017, DeepLab's poly policy)"
    TORCH_CLASS: ClassVar[str] = "PolynomialLR"
    RENAMED: ClassVar[Mapping[str, str]] = {"total_iters": T_MAX}
    NEEDS_T_MAX: ClassVar[bool] = True

    power: float = optreg.field(1.0, gt=0, doc="Power of the decay.")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        total = self.length(t_max)
        return initial_lr * (1.0 - min(total, current) / total) ** self.power


@attrs.frozen(kw_only=True)
class CosineAnnealing(TorchSchedule):
    """torch's ``CosineAnnealingLR`` (``cosine``): a cosine from each group's initial LR to ``eta_min`` at t_max.

    ``lr = eta_min + (lr0 - eta_min) * (1 + cos(pi * current / t_max)) / 2`` up to t_max, then
    ``eta_min`` (torch's own run goes on along the cosine, back up, past T_max).
    """

    TYPE: ClassVar[str] = "cosine_annealing"
    ALIASES: ClassVar[tuple[str, ...]] = ("cosine",)
    PAPER: ClassVar[str] = SGDR
    TORCH_CLASS: ClassVar[str] = "CosineAnnealingLR"
    RENAMED: ClassVar[Mapping[str, str]] = {"T_max": T_MAX}
    NEEDS_T_MAX: ClassVar[bool] = True

    eta_min: float = optreg.field(0.0, ge=0, doc="LR at t_max (absolute), held afterwards.")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        total = self.length(t_max)
        if current >= total:
            return self.eta_min
        return self.eta_min + (initial_lr - self.eta_min) * (1 + math.cos(math.pi * current / total)) / 2


@attrs.frozen(kw_only=True)
class LinearRamp(TorchSchedule):
    """torch's ``LinearLR`` (``linear``): the LR factor goes linearly from ``start_factor`` to ``end_factor``.

    ``lr = lr0 * (start_factor + (end_factor - start_factor) * min(current, t_max) / t_max)``, held
    after t_max. The defaults decay linearly to 0 over the run; torch's (1/3 -> 1 over 5 steps) are a
    warmup: ``start_factor = 0.3333333333333333, end_factor = 1.0, t_max = 5``.
    """

    TYPE: ClassVar[str] = "linear_ramp"
    ALIASES: ClassVar[tuple[str, ...]] = ("linear",)
    PAPER: ClassVar[str] = "torch.optim.lr_scheduler.LinearLR"
    TORCH_CLASS: ClassVar[str] = "LinearLR"
    RENAMED: ClassVar[Mapping[str, str]] = {"total_iters": T_MAX}
    DEFAULTS_DIFFER: ClassVar[Mapping[str, str]] = {
        "start_factor": "a user who types `linear` means a linear decay over the run (torch's 1/3 -> 1 over "
        "5 steps is a warmup)",
        "end_factor": "decays to 0 by default, as `cosine` does",
    }
    NEEDS_T_MAX: ClassVar[bool] = True

    start_factor: float = optreg.field(1.0, ge=0, le=1, doc="LR factor at 0 (torch needs it > 0; 0 is fine here).")
    end_factor: float = optreg.field(0.0, ge=0, le=1, doc="LR factor from t_max on.")

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        total = self.length(t_max)
        return initial_lr * (self.start_factor + (self.end_factor - self.start_factor) * min(total, current) / total)


@attrs.frozen(kw_only=True)
class CosineWarmRestarts(TorchSchedule):
    """torch's ``CosineAnnealingWarmRestarts``: cosine cycles down to ``eta_min``, each ``t_mult`` times longer.

    Each cycle starts from the group's initial LR again (a warm restart).

    With ``T_i`` the current cycle's length (``t_0``, ``t_0 t_mult``, ...) and ``T_cur`` the count
    since the cycle began: ``lr = eta_min + (lr0 - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.
    No t_max: the cycles go on for ever.
    """

    TYPE: ClassVar[str] = "cosine_warm_restarts"
    PAPER: ClassVar[str] = SGDR
    TORCH_CLASS: ClassVar[str] = "CosineAnnealingWarmRestarts"
    RENAMED: ClassVar[Mapping[str, str]] = {"T_0": "t_0", "T_mult": "t_mult"}

    t_0: int = _positive_int("Length of the first cycle, in `units` (torch's T_0).")
    t_mult: int = optreg.field(
        1, ge=1, le=1024,
        doc="Each cycle is this many times longer than the last (torch's T_mult).",
    )
    eta_min: float = optreg.field(0.0, ge=0, doc="LR at the end of each cycle (absolute).")

    def cycle(self, current: int) -> tuple[int, int]:
        """``(T_cur, T_i)`` at ``current``: the count into the cycle and the cycle's length (integers, as torch's)."""
        current = int(current)
        if self.t_mult == 1:
            return current % self.t_0, self.t_0
        length = self.t_0
        while current >= length:  # one pass per restart: a logarithmic number of them
            current -= length
            length *= self.t_mult
        return current, length

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        t_cur, t_i = self.cycle(int(current))
        return self.eta_min + (initial_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def _anneal(strategy: str, start: float, end: float, pct: float) -> float:
    """torch's one-cycle annealing from ``start`` to ``end`` at ``pct`` in [0, 1]."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


@attrs.frozen(kw_only=True)
class OneCycle(_MomentumCycling, TorchSchedule):
    """torch's ``OneCycleLR``: the LR up to each group's initial LR (the peak), then far below; momentum inversely.

    The LR rises from ``lr0 / div_factor`` to ``lr0`` and falls to ``lr0 / (div_factor * final_div_factor)``
    at t_max; the momentum cycles the other way.

    Phases (``T = t_max``, ``a = lr0 / div_factor``, ``z = a / final_div_factor``), each annealed
    by cosine or linearly in ``pct = (current - start) / (end - start)``:

    - two phases: ``a -> lr0`` up to ``pct_start * T - 1``, then ``lr0 -> z`` up to ``T - 1``;
    - ``three_phase``: ``a -> lr0``, ``lr0 -> a`` up to ``2 * pct_start * T - 2``, ``a -> z``.

    With ``cycle_momentum`` each group's ``momentum`` (or Adam's beta1) goes from ``max_momentum``
    to ``base_momentum`` and back, in the same phases. From ``T - 1`` on the LR holds at ``z``
    (torch raises past T). A phase of zero length ends at once (torch divides by zero there).
    """

    TYPE: ClassVar[str] = "onecycle"
    PAPER: ClassVar[str] = (
        "Smith & Topin 2018, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, "
        "arXiv:1708.07120"
    )
    TORCH_CLASS: ClassVar[str] = "OneCycleLR"
    RENAMED: ClassVar[Mapping[str, str]] = {
        "max_lr": INITIAL_LR, "total_steps": T_MAX, "epochs": T_MAX, "steps_per_epoch": T_MAX
    }
    NEEDS_T_MAX: ClassVar[bool] = True

    pct_start: float = optreg.field(0.3, gt=0, lt=1, doc="Fraction of t_max spent increasing the LR.")
    anneal_strategy: Literal["cos", "linear"] = optreg.field("cos", doc="Shape of each phase.")
    cycle_momentum: bool = optreg.field(
        True, doc="Cycle each group's `momentum` (or Adam's beta1) inversely to the LR, as torch does."
    )
    base_momentum: float = optreg.field(0.85, ge=0, le=1, doc="Momentum at the LR's peak.")
    max_momentum: float = optreg.field(0.95, ge=0, le=1, doc="Momentum at the start and the end.")
    div_factor: float = optreg.field(25.0, gt=0, doc="The LR starts at lr0 / div_factor.")
    final_div_factor: float = optreg.field(1e4, gt=0, doc="The LR ends at lr0 / (div_factor * final_div_factor).")
    three_phase: bool = optreg.field(False, doc="Go back down to lr0 / div_factor before the final annealing.")

    def __attrs_post_init__(self) -> None:
        if self.three_phase and self.pct_start >= 0.5:
            raise optreg.FieldValueError(
                "pct_start",
                f"three_phase needs pct_start < 0.5 (up and back down both fit in t_max), got {self.pct_start}",
            )

    def _phases(self, total: float) -> list[tuple[float, str, str, str, str]]:
        if self.three_phase:
            return [
                (float(self.pct_start * total) - 1, "initial", "peak", "max", "base"),
                (float(2 * self.pct_start * total) - 2, "peak", "initial", "base", "max"),
                (total - 1, "initial", "min", "max", "max"),
            ]
        return [
            (float(self.pct_start * total) - 1, "initial", "peak", "max", "base"),
            (total - 1, "peak", "min", "base", "max"),
        ]

    def _at(self, current: float, t_max: float | None) -> tuple[int, float]:
        """(phase index, pct) at ``current``, as torch's ``OneCycleLR.get_lr`` finds them."""
        total = self.length(t_max)
        step = min(current, total - 1)
        phases = self._phases(total)
        start = 0.0
        for i, (end, *_rest) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                return i, (1.0 if end == start else (step - start) / (end - start))
            start = end
        raise AssertionError("unreachable")  # pragma: no cover

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        initial = initial_lr / self.div_factor
        values = {"initial": initial, "peak": initial_lr, "min": initial / self.final_div_factor}
        i, pct = self._at(current, t_max)
        _, start, end, _, _ = self._phases(self.length(t_max))[i]
        return _anneal(self.anneal_strategy, values[start], values[end], pct)

    def momentum_at(self, current: float, t_max: float | None) -> float:
        t_max = self.t_max if self.t_max is not None else t_max
        i, pct = self._at(max(current, 0), t_max)
        _, _, _, start, end = self._phases(self.length(t_max))[i]
        values = {"base": self.base_momentum, "max": self.max_momentum}
        return _anneal(self.anneal_strategy, values[start], values[end], pct)


@attrs.frozen(kw_only=True)
class Cyclic(_MomentumCycling, TorchSchedule):
    """torch's ``CyclicLR``: triangular cycles between ``base_lr`` and each group's initial LR (the peak).

    With ``S = step_size_up + step_size_down``, ``cycle = floor(1 + current / S)``,
    ``x = 1 + current / S - cycle`` and ``s = x / r`` while ``x <= r`` else ``(x - 1) / (r - 1)``
    (``r = step_size_up / S``): ``lr = base_lr + (lr0 - base_lr) * s * scale``, where ``scale`` is 1
    (``triangular``), ``1 / 2 ** (cycle - 1)`` (``triangular2``) or ``gamma ** current``
    (``exp_range``). With ``cycle_momentum`` the momentum goes the other way:
    ``max_momentum - (max_momentum - base_momentum) * s * scale``. No t_max: cycles go on for ever.
    """

    TYPE: ClassVar[str] = "cyclic"
    PAPER: ClassVar[str] = "Smith 2017, Cyclical Learning Rates for Training Neural Networks, arXiv:1506.01186"
    TORCH_CLASS: ClassVar[str] = "CyclicLR"
    RENAMED: ClassVar[Mapping[str, str]] = {"max_lr": INITIAL_LR}
    LEFT_OUT: ClassVar[Mapping[str, str]] = {
        "last_epoch": LAST_EPOCH,
        "scale_fn": "a Python callable has no TOML form; `mode` selects torch's three built-in scale functions",
        "scale_mode": "only read with a custom scale_fn; for the built-in modes torch derives it from `mode` "
        "(triangular, triangular2: per cycle; exp_range: per step), as here",
    }

    base_lr: float = optreg.field(ge=0, doc="LR at the bottom of each cycle (absolute; the peak is the group's LR).")
    step_size_up: int = optreg.field(2000, ge=1, le=MAX_STEPS, doc="Length of the rising half of a cycle, in `units`.")
    step_size_down: int | None = optreg.field(
        None, ge=1, le=MAX_STEPS, doc="Length of the falling half; leave out for step_size_up."
    )
    mode: Literal["triangular", "triangular2", "exp_range"] = optreg.field(
        "triangular", doc="Amplitude per cycle: constant, halved each cycle, or gamma ** current."
    )
    gamma: float = optreg.field(1.0, gt=0, le=1, doc="Amplitude factor per step of `exp_range`.")
    cycle_momentum: bool = optreg.field(
        True, doc="Cycle each group's `momentum` (or Adam's beta1) inversely to the LR, as torch does."
    )
    base_momentum: float = optreg.field(0.8, ge=0, le=1, doc="Momentum at the LR's peak.")
    max_momentum: float = optreg.field(0.9, ge=0, le=1, doc="Momentum at the bottom of the cycle.")

    def _shape(self, current: float) -> tuple[float, float]:
        """(s, scale) at ``current``: torch's ``CyclicLR.get_lr`` arithmetic."""
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total = up + down
        ratio = up / total
        cycle = math.floor(1 + current / total)
        x = 1.0 + current / total - cycle
        s = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma**current
        return s, scale

    def compute_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        s, scale = self._shape(current)
        return self.base_lr + (initial_lr - self.base_lr) * s * scale

    def momentum_at(self, current: float, t_max: float | None) -> float:
        s, scale = self._shape(max(current, 0))
        return self.max_momentum - (self.max_momentum - self.base_momentum) * s * scale


#: The schedules, in the order of the issue's list (then the two that carry the aliases).
SCHEDULER_SPECS: tuple[type[TorchSchedule], ...] = (
    Step,
    MultiStep,
    Polynomial,
    OneCycle,
    Cyclic,
    CosineWarmRestarts,
    CosineAnnealing,
    LinearRamp,
)
