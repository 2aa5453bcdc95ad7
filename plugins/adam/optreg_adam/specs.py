"""Spec classes of the Adam family (what TOML's ``type = "..."`` names).

No torch import at module load: the registry imports this module for every ``optreg`` command.
A spec's ``create()`` imports its optimizer class from :mod:`optreg_adam.optim` when it builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg.memory import StateTensor, scalar
from optreg.specs import COMPILE_DOC, MAX_STEPS, BuildContext, FieldValueError, OptimizerSpec, field

if TYPE_CHECKING:
    import torch

    from optreg.memory import ParamShape

__all__ = [
    "ALL_SPECS",
    "ACPropSpec",
    "ADOPTSpec",
    "AdEMAMixSpec",
    "AdamSpec",
    "AdamWSpec",
    "LaPropSpec",
    "MadamSpec",
    "SimplifiedAdEMAMixSpec",
]

StateDtype = Literal["float32", "bfloat16"]


def _moment(param: ParamShape, name: str, state_dtype: str | None = None) -> StateTensor:
    """A moment buffer as ``optreg_adam.optim._base.moment_zeros`` makes it: like the param, or in
    ``state_dtype`` (a floating or complex param only; a complex param's then has its real view's shape)."""
    if state_dtype is None or not (param.dtype.is_floating_point or param.dtype.is_complex):
        return param.like(name)
    if param.dtype.is_complex:
        return StateTensor(name, (*param.local_shape, 2), state_dtype)
    return param.like(name, state_dtype)


def _per_tensor_layout(
    param: ParamShape, buffers: Sequence[str], scalar_state: Sequence[str] = ()
) -> list[StateTensor]:
    """The state of a ``PerTensorOptimizer``: a float32 ``step``, ``buffers`` like the param and 0-dim
    ``scalar_state`` in ``scalar_state_dtype`` (float32, or float64 under float64/complex128 params)."""
    import torch

    wide = torch.promote_types(param.dtype.to_real(), torch.float32)
    return [scalar("step"), *(param.like(name) for name in buffers), *(scalar(name, wide) for name in scalar_state)]


@attrs.frozen(kw_only=True)
class _FamilySpec(OptimizerSpec):
    """Builds ``optreg_adam.optim.<OPTIMIZER>`` with the spec's options (imported only then: torch loads late)."""

    #: The name of the optimizer class in :mod:`optreg_adam.optim`.
    OPTIMIZER: ClassVar[str]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_adam import optim

        return getattr(optim, self.OPTIMIZER)(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class _AdamCommon(_FamilySpec):
    """Options shared by the whole family."""

    lr: float = field(1e-3, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = field(
        (0.9, 0.999), ge=0, lt=1, doc="Decay rates of the first and second moment EMAs."
    )
    eps: float = field(1e-8, ge=0, doc="Added to the denominator for numerical stability.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay coefficient.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing it.")
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)


@attrs.frozen(kw_only=True)
class AdamSpec(_AdamCommon):
    """Adam: per-coordinate steps scaled by bias-corrected first and second moment EMAs.

    ``weight_decay`` is an L2 penalty added to the gradient (``torch.optim.Adam``);
    prefer ``adamw`` for decoupled decay. Same results and state as torch's Adam,
    plus a skip-step gate (``step_factor``) and optional bf16 state.
    """

    TYPE: ClassVar[str] = "adam"
    PAPER: ClassVar[str] = "Kingma & Ba 2015, Adam: A Method for Stochastic Optimization (arXiv:1412.6980)"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor", "foreach"})
    OPTIMIZER: ClassVar[str] = "Adam"

    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient (coupled weight decay).")
    amsgrad: bool = field(False, doc="Use the running maximum of the second moment (AMSGrad, Reddi et al. 2018).")
    foreach: bool | None = field(
        None, per_group=False, doc="Multi-tensor path (torch._foreach_*); false: per-tensor loop; unset: fastest."
    )
    fused: bool | None = field(
        None, per_group=False,
        doc="torch's fused Adam kernel; unset: used wherever it applies (the fastest path; with state_dtype on CPU: "
            "optreg's fused C kernel); false: neither.",
    )
    state_dtype: StateDtype | None = field(
        None,
        doc="Dtype of exp_avg/exp_avg_sq (unset: the param's). 'bfloat16' halves state memory and stays "
        "accurate by unbiased stochastic rounding; 'float32' keeps fp32 state under bf16 params.",
    )

    def __attrs_post_init__(self) -> None:
        if self.foreach and self.fused:
            raise FieldValueError("fused", "choose foreach or fused, not both")
        if self.state_dtype is not None and (self.foreach or self.fused):
            raise FieldValueError("state_dtype", "state_dtype needs the per-tensor path: leave foreach and fused unset")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Adam's two moments (in ``state_dtype`` when set) and a float32 step; max_exp_avg_sq with amsgrad."""
        names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if options["amsgrad"] else ("exp_avg", "exp_avg_sq")
        return [scalar("step"), *(_moment(param, name, options["state_dtype"]) for name in names)]


@attrs.frozen(kw_only=True)
class AdamWSpec(AdamSpec):
    """AdamW: Adam with decoupled weight decay (``param *= 1 - lr * weight_decay`` each step).

    Same results and state as ``torch.optim.AdamW``; with ``state_dtype = "bfloat16"``
    the moments take half the memory and stay within a stated bound of fp32 (see docs/adam.md).
    """

    TYPE: ClassVar[str] = "adamw"
    PAPER: ClassVar[str] = "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization (arXiv:1711.05101)"
    OPTIMIZER: ClassVar[str] = "AdamW"

    weight_decay: float = field(1e-2, ge=0, doc="Decoupled weight decay: params shrink by lr * weight_decay per step.")


_PER_TENSOR = frozenset({"step_factor"})


@attrs.frozen(kw_only=True)
class AdEMAMixSpec(_AdamCommon):
    """AdEMAMix: Adam plus a slow gradient EMA (beta3 ~ 0.9999) mixed in with weight ``alpha``.

    Old gradients stay useful for tens of thousands of steps; the slow EMA lets the model use
    them while the fast one tracks the current landscape. Warm up ``alpha`` and ``beta3``
    (``alpha_warmup`` / ``beta3_warmup``, typically the run length) to avoid early instability.
    """

    TYPE: ClassVar[str] = "ademamix"
    PAPER: ClassVar[str] = (
        "Pagliardini, Ablin & Grangier 2024, The AdEMAMix Optimizer: Better, Faster, Older (arXiv:2409.03137)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "AdEMAMix"

    betas: tuple[float, float, float] = field(
        (0.9, 0.999, 0.9999), ge=0, lt=1, doc="Decay rates of the fast EMA, the second moment and the slow EMA."
    )
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (params shrink by lr * weight_decay).")
    alpha: float = field(2.0, ge=0, doc="Weight of the slow EMA in the update.")
    alpha_warmup: int | None = field(
        None, ge=1, le=MAX_STEPS,
        doc="Steps over which alpha rises linearly from 0 (unset: none).",
    )
    beta3_warmup: int | None = field(
        None, ge=1, le=MAX_STEPS,
        doc="Steps over which beta3 rises from beta1 on a linear half-life schedule (unset: none)."
    )

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The fast EMA, second moment and slow EMA, like the param, and a float32 step."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_sq", "exp_avg_slow"))


@attrs.frozen(kw_only=True)
class SimplifiedAdEMAMixSpec(_AdamCommon):
    """Simplified AdEMAMix: one accumulated momentum ``m = beta1*m + g`` plus ``alpha`` times the gradient.

    Equivalent to AdEMAMix's slow EMA without the fast one; with ``beta1 = 0.99`` or more it
    matches AdEMAMix at half the extra state. Use a smaller LR than Adam (``m`` is a sum).
    """

    TYPE: ClassVar[str] = "simplified_ademamix"
    PAPER: ClassVar[str] = (
        "Morwani, Vyas, Kakade, Kwun & Ba 2025, Connections between Schedule-Free Optimizers, AdEMAMix, "
        "and Accelerated SGD Variants (arXiv:2502.02431)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "SimplifiedAdEMAMix"

    lr: float = field(1e-4, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = field((0.99, 0.95), ge=0, lt=1, doc="Momentum and second-moment decay rates.")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (params shrink by lr * weight_decay).")
    alpha: float = field(0.0, ge=0, doc="Weight of the current gradient added to the momentum.")
    beta1_warmup: int | None = field(
        None, ge=1, le=MAX_STEPS,
        doc="Steps over which beta1 rises from min_beta1 (unset: none).",
    )
    min_beta1: float = field(0.9, ge=0, lt=1, doc="Starting beta1 of the warm-up.")
    bias_correction1: bool = field(False, doc="Divide the momentum by sum_k beta1^k.")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Momentum and second moment like the param, a float32 step and a 0-dim num_sum (float64 under float64)."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_sq"), ("num_sum",))


@attrs.frozen(kw_only=True)
class ADOPTSpec(_AdamCommon):
    """ADOPT: normalise the gradient by the second moment of *earlier* steps, then apply momentum.

    Removing the current gradient from its own normaliser makes Adam converge for any beta2
    (no need to tune it to the problem); clipping to ``t**0.25`` keeps early steps bounded.
    """

    TYPE: ClassVar[str] = "adopt"
    PAPER: ClassVar[str] = (
        "Taniguchi et al. 2024, ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate "
        "(arXiv:2411.02853)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "ADOPT"

    betas: tuple[float, float] = field((0.9, 0.9999), ge=0, lt=1, doc="Momentum and second-moment decay rates.")
    eps: float = field(1e-6, gt=0, doc="Lower bound of the normaliser sqrt(v) (> 0: it also guards 0/0).")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (L2 unless decoupled_weight_decay).")
    decoupled_weight_decay: bool = field(False, doc="AdamW-style decay (params shrink by lr * weight_decay).")
    clip: bool = field(True, doc="Clip the normalised gradient to t**clip_exponent.")
    clip_exponent: float = field(0.25, gt=0, doc="Exponent of the clipping bound t**clip_exponent.")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Momentum and second moment like the param and a float32 step."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_sq"))


@attrs.frozen(kw_only=True)
class LaPropSpec(_AdamCommon):
    """LaProp: Adam with the momentum taken over the normalised gradient.

    Separating momentum from adaptivity makes any combination of beta1 and beta2 stable and
    behaves better than Adam at large beta1; the bias correction tracks LR schedules.
    """

    TYPE: ClassVar[str] = "laprop"
    PAPER: ClassVar[str] = (
        "Ziyin, Wang & Ueda 2020, LaProp: Separating Momentum and Adaptivity in Adam (arXiv:2002.04839)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "LaProp"

    lr: float = field(4e-4, ge=0, doc="Learning rate.")
    eps: float = field(1e-15, ge=0, doc="Added to the normaliser.")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (params shrink by lr * weight_decay).")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Momentum and second moment like the param, a float32 step and a 0-dim exp_avg_lr (float64 under float64)."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_sq"), ("exp_avg_lr",))


@attrs.frozen(kw_only=True)
class ACPropSpec(_AdamCommon):
    """ACProp: asynchronous centering. Steps ``g_t / sqrt(s_{t-1})`` with ``s`` the EMA of ``(g - m)**2``.

    Centring (the variance, not the raw second moment) and the one-step delay (the denominator
    does not depend on the current gradient) give the convergence guarantees of AdaShift and
    AdaBelief together. ``centering = "previous"`` follows ``optax.contrib.acprop`` (centred on the
    momentum before its update) instead of the paper and the authors' code.
    """

    TYPE: ClassVar[str] = "acprop"
    PAPER: ClassVar[str] = (
        "Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan 2021, Momentum Centering and Asynchronous Update "
        "for Adaptive Gradient Methods (arXiv:2110.05454)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "ACProp"

    eps: float = field(1e-16, ge=0, doc="Added to the centred second moment and to the denominator.")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (params shrink by lr * weight_decay).")
    momentum_update: bool = field(False, doc="Step along the bias-corrected momentum instead of the gradient.")
    centering: Literal["updated", "previous"] = field(
        "updated",
        doc="What the second moment is centred on: 'updated', (g_t - m_t)**2 as the paper and the authors' code; "
        "'previous', (g_t - m_{t-1})**2 as optax.contrib.acprop.",
    )

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Momentum and centred second moment (exp_avg_var) like the param and a float32 step."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_var"))


def _even(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, int) and value % 2:
        raise FieldValueError(attribute.name, f"must be even (the sqrt of 2**scale_log2 stays exact), got {value}")


@attrs.frozen(kw_only=True)
class MadamSpec(_FamilySpec):
    """Madam: magnitude-aware Adam with no eps; the step never depends on the gradient's scale.

    Second moments are stored times ``2**scale_log2`` (exact) so squares of tiny gradients do not
    underflow, and coordinates with a zero first moment get no update (instead of 0/0).
    """

    TYPE: ClassVar[str] = "madam"
    PAPER: ClassVar[str] = (
        "Kingma & Ba 2015 (Adam) without eps; eps-free normalisation with a 0/0 mask as in Bernstein et al. 2020, "
        "Learning compositional functions via multiplicative weight updates (arXiv:2006.14560)"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _PER_TENSOR
    OPTIMIZER: ClassVar[str] = "Madam"

    lr: float = field(1e-3, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, doc="Decay rates of the first and second moments.")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (params shrink by lr * weight_decay).")
    scale_log2: int = field(
        32, ge=0, le=120, validator=_even, doc="Second moments are stored times 2**scale_log2 (even; 0 = unscaled)."
    )
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing it.")
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """Momentum and scaled second moment like the param and a float32 step."""
        return _per_tensor_layout(param, ("exp_avg", "exp_avg_sq"))


#: Every spec class this plugin registers.
ALL_SPECS: tuple[type[OptimizerSpec], ...] = (
    AdamSpec,
    AdamWSpec,
    AdEMAMixSpec,
    SimplifiedAdEMAMixSpec,
    ADOPTSpec,
    LaPropSpec,
    ACPropSpec,
    MadamSpec,
)
