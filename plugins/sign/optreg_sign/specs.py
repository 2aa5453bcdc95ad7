"""Spec classes of the sign family: ``lion``, ``signum`` and ``signsgd``.

No torch import at module load: the registry imports this module for every ``optreg`` command
(and ``optreg-skipstep`` subclasses :class:`LionSpec`). Each spec imports its optimizer in ``create()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg import BuildContext, FieldValueError, OptimizerSpec, field
from optreg.memory import StateTensor, scalar
from optreg.specs import COMPILE_DOC

if TYPE_CHECKING:
    import torch

    from optreg.memory import ParamShape

__all__ = ["ALL_SPECS", "LionSpec", "SignSGDSpec", "SignumSpec"]

_FOREACH_DOC = "Multi-tensor path (None: only when every parameter is on an accelerator; off on CPU)."


@attrs.frozen(kw_only=True)
class LionSpec(OptimizerSpec):
    """Lion: the sign of an interpolation of momentum and gradient, one state buffer.

    ``update = sign(beta1 * m + (1 - beta1) * g)``, ``m = beta2 * m + (1 - beta2) * g``, decoupled
    weight decay. Half of AdamW's optimizer state and about 20 bytes of memory traffic per fp32
    parameter per step (AdamW: 28). Use an LR 3-10x smaller than AdamW's, weight decay 3-10x larger.
    """

    TYPE: ClassVar[str] = "lion"
    PAPER: ClassVar[str] = "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, arXiv:2302.06675"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})

    lr: float = field(1e-4, ge=0, doc="Learning rate (the size of every coordinate's step).")
    betas: tuple[float, float] = field(
        (0.9, 0.99), ge=0, lt=1, doc="(beta1, beta2): interpolation for the update, decay of the momentum."
    )
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay: p *= 1 - lr * weight_decay.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")
    foreach: bool | None = field(None, per_group=False, doc=_FOREACH_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def __attrs_post_init__(self) -> None:
        if self.foreach and self.compile is True:
            raise FieldValueError("compile", "choose foreach or compile, not both")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Lion's one momentum buffer (exp_avg), like the param."""
        return [param.like("exp_avg")]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_sign.optim import Lion

        return Lion(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class SignumSpec(OptimizerSpec):
    """Signum: SGD that steps by the sign of an EMA momentum (signSGD with momentum).

    ``m = momentum * m + (1 - momentum) * g``; ``p -= lr * s * sign(m)`` (Nesterov:
    ``sign(momentum * m + (1 - momentum) * g)``, optionally bias-corrected). ``s = 2 / (rows + cols)``
    for matrices with ``use_shape_scaling`` (LR transfer across widths), else 1.
    """

    TYPE: ClassVar[str] = "signum"
    PAPER: ClassVar[str] = (
        "Bernstein et al. 2018, signSGD: Compressed Optimisation for Non-Convex Problems, arXiv:1802.04434"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})

    lr: float = field(1e-4, ge=0, doc="Learning rate (the size of every coordinate's step).")
    momentum: float = field(0.9, ge=0, lt=1, doc="EMA momentum coefficient (0: plain signSGD, no state).")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay: p *= 1 - lr * weight_decay.")
    nesterov: bool = field(False, doc="Nesterov momentum: the sign of momentum * m + (1 - momentum) * g.")
    correct_bias: bool = field(
        False, doc="Bias-correct the momentum (changes the update only together with nesterov)."
    )
    use_shape_scaling: bool = field(False, doc="Scale matrix updates by 2 / (rows + cols); vectors unscaled.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")
    foreach: bool | None = field(None, per_group=False, doc=_FOREACH_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum <= 0:
            raise FieldValueError("nesterov", "Nesterov momentum needs momentum > 0")
        if self.foreach and self.compile is True:
            raise FieldValueError("compile", "choose foreach or compile, not both")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """A momentum buffer like the param and a float32 step when momentum > 0; no state without (signSGD)."""
        return [param.like("momentum_buffer"), scalar("step")] if options["momentum"] > 0 else []

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_sign.optim import Signum

        return Signum(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class SignSGDSpec(SignumSpec):
    """signSGD: ``p -= lr * sign(g)``; the same update as ``signum``, with no momentum by default."""

    TYPE: ClassVar[str] = "signsgd"

    momentum: float = field(0.0, ge=0, lt=1, doc="EMA momentum coefficient (0: plain signSGD, no state).")

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_sign.optim import SignSGD

        return SignSGD(param_groups, **self.optimizer_kwargs())


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type, ...] = (LionSpec, SignumSpec, SignSGDSpec)
