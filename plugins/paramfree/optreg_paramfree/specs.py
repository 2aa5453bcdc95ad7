"""Spec classes of the learning-rate-free optimizers (what TOML's ``type = "..."`` selects).

No torch import at module load: the registry imports this module for every ``optreg`` command. Each
spec imports its optimizer class inside ``create()`` (``wrap()`` for Mechanic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from optreg import BuildContext, FieldValueError, OptimizerSpec, WrapperSpec, field
from optreg.memory import GroupShape, ParamShape, StateTensor, scalar
from optreg.specs import COMPILE_DOC, MAX_COUNT

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALL_SPECS",
    "COCOBSpec",
    "DAdaptAdamWSpec",
    "DAdaptLionSpec",
    "DAdaptSGDSpec",
    "DoGSpec",
    "DoWGSpec",
    "MechanicSpec",
    "MomoAdamSpec",
    "MomoSpec",
    "ProdigySpec",
]

_STEP_FACTOR = frozenset({"step_factor"})
_PER_GROUP_D_DOC = (
    "Estimate d separately for every param group (each group adapts to its own scale); "
    "by default one d is shared and each group's lr multiplies it."
)
_LR_DOC = "Multiplier of the estimated step size (per group; a schedule scales it; 0 freezes the group)."
#: The dtype of the estimators' 0-dim scalars kept in the param groups (``optreg.optim.scalar_dtype``:
#: float64 on every device but MPS, where it is float32).
_SCALAR_DTYPE = "float64"


def _scalars(names: Sequence[str]) -> list[StateTensor]:
    """0-dim float64 tensors, one per name (an estimator's scalars, stored in the param groups)."""
    return [scalar(name, _SCALAR_DTYPE) for name in names]


class _ScalarScope:
    """The float64 0-dim scalars (``_SCALARS``) these optimizers keep in their param groups: each group's own
    with ``per_group_d``, else one set every group shares (the same tensors written into each group)."""

    __slots__ = ()
    _SCALARS: ClassVar[tuple[str, ...]] = ()

    def group_state_layout(self, group: GroupShape) -> Sequence[StateTensor]:
        """With ``per_group_d``, each group's own scalars."""
        return _scalars(self._SCALARS) if getattr(self, "per_group_d", False) else []

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> Sequence[StateTensor]:
        """Without ``per_group_d``, the scalars every group shares, kept once."""
        return _scalars(self._SCALARS) if groups and not getattr(self, "per_group_d", False) else []


@attrs.frozen(kw_only=True)
class ProdigySpec(_ScalarScope, OptimizerSpec):
    """Prodigy: Adam whose step size d is estimated from the distance travelled, no LR to tune.

    Keep ``lr = 1`` (it multiplies d); ``d_coef`` is the knob if d comes out too large or small.
    The estimate is logged in ``param_groups[i]["d"]`` and ``optimizer.d``.
    """

    TYPE: ClassVar[str] = "prodigy"
    PAPER: ClassVar[str] = (
        "Mishchenko & Defazio 2023, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, arXiv:2306.06101"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, doc="Adam's coefficients for the running averages.")
    beta3: float | None = field(
        None, ge=0, lt=1, per_group=False, doc="Decay of the d-estimate statistics (default: sqrt(betas[1]))."
    )
    eps: float = field(1e-8, ge=0, doc="Added to the denominator (times d).")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (decoupled, scaled by the step size, when decouple).")
    decouple: bool = field(True, doc="AdamW-style decoupled weight decay; false adds it to the gradient (L2).")
    use_bias_correction: bool = field(False, doc="Adam's bias correction of the step size.")
    safeguard_warmup: bool = field(
        False, per_group=False, doc="Leave the LR out of the d denominator (helps with LR warmup)."
    )
    d0: float = field(1e-6, gt=0, per_group=False, doc="Initial estimate of d (rarely needs changing).")
    d_coef: float = field(1.0, gt=0, per_group=False, doc="Multiplier of the d estimate (the knob to tune).")
    growth_rate: float | None = field(
        None, ge=1, per_group=False, doc="Cap on d's growth per step (e.g. 1.02 for a warmup effect); unset: none."
    )
    slice_p: int = field(
        1, ge=1, le=MAX_COUNT,
        doc="Compute d's statistics on every slice_p-th element (saves memory).",
    )
    per_group_d: bool = field(False, per_group=False, doc=_PER_GROUP_D_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("d", "d_max", "d_numerator", "k")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """s and p0 (every slice_p-th element of the flattened param), exp_avg when betas[0] > 0, exp_avg_sq."""
        slice_p = options["slice_p"]
        if slice_p == 1:
            stats = [param.like("s"), param.like("p0")]
        else:  # a strided slice of the flattened (real view of the) local param, made contiguous
            real = param.dtype.to_real() if param.dtype.is_complex else param.dtype
            size = math.ceil(param.numel * (2 if param.dtype.is_complex else 1) / slice_p)
            stats = [StateTensor("s", (size,), real), StateTensor("p0", (size,), real)]
        moments = [param.like("exp_avg")] if options["betas"][0] > 0 else []
        return [*stats, *moments, param.like("exp_avg_sq")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.prodigy import Prodigy

        return Prodigy(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DAdaptAdamWSpec(_ScalarScope, OptimizerSpec):
    """D-Adaptation Adam(W): Adam whose step size d is a lower bound on the distance to the solution."""

    TYPE: ClassVar[str] = "dadapt_adamw"
    PAPER: ClassVar[str] = (
        "Defazio & Mishchenko 2023, Learning-Rate-Free Learning by D-Adaptation, ICML 2023, arXiv:2301.07733"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, doc="Adam's coefficients for the running averages.")
    eps: float = field(1e-8, ge=0, doc="Added to the denominator.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (decoupled when decouple).")
    decouple: bool = field(True, doc="AdamW-style decoupled weight decay; false adds it to the gradient (L2).")
    use_bias_correction: bool = field(False, doc="Adam's bias correction of the step size.")
    d0: float = field(1e-6, gt=0, per_group=False, doc="Initial estimate of d.")
    growth_rate: float | None = field(None, ge=1, per_group=False, doc="Cap on d's growth per step; unset: none.")
    per_group_d: bool = field(False, per_group=False, doc=_PER_GROUP_D_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("d", "numerator_weighted", "k")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """s, exp_avg and exp_avg_sq, each shaped like the param."""
        return [param.like("s"), param.like("exp_avg"), param.like("exp_avg_sq")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.dadapt import DAdaptAdamW

        return DAdaptAdamW(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DAdaptSGDSpec(_ScalarScope, OptimizerSpec):
    """D-Adaptation SGD: dual averaging with momentum and an estimated step size."""

    TYPE: ClassVar[str] = "dadapt_sgd"
    PAPER: ClassVar[str] = DAdaptAdamWSpec.PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    momentum: float = field(0.0, ge=0, lt=1, doc="Momentum (primal averaging weight).")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    d0: float = field(1e-6, gt=0, per_group=False, doc="Initial estimate of d.")
    growth_rate: float | None = field(None, ge=1, per_group=False, doc="Cap on d's growth per step; unset: none.")
    per_group_d: bool = field(False, per_group=False, doc=_PER_GROUP_D_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("d", "numerator_weighted", "k", "g0_norm")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The dual average s and the initial point x0, shaped like the param (z = x0 - s is not kept)."""
        return [param.like("s"), param.like("x0")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.dadapt import DAdaptSGD

        return DAdaptSGD(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DAdaptLionSpec(_ScalarScope, OptimizerSpec):
    """D-Adaptation Lion: Lion's sign updates with an estimated step size (experimental in the reference)."""

    TYPE: ClassVar[str] = "dadapt_lion"
    PAPER: ClassVar[str] = DAdaptAdamWSpec.PAPER + "; Chen et al. 2023 (Lion), arXiv:2302.06675"
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    betas: tuple[float, float] = field((0.9, 0.99), ge=0, lt=1, doc="Lion's interpolation and momentum coefficients.")
    weight_decay: float = field(0.0, ge=0, doc="Decoupled weight decay (scaled by the step size).")
    d0: float = field(1e-6, gt=0, per_group=False, doc="Initial estimate of d.")
    per_group_d: bool = field(False, per_group=False, doc=_PER_GROUP_D_DOC)
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("d", "numerator_weighted", "k")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """Lion's momentum exp_avg and the weighted sum s, shaped like the param."""
        return [param.like("exp_avg"), param.like("s")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.dadapt import DAdaptLion

        return DAdaptLion(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DoGSpec(_ScalarScope, OptimizerSpec):
    """DoG: SGD with step size max distance from the start over the root sum of squared gradient norms."""

    TYPE: ClassVar[str] = "dog"
    PAPER: ClassVar[str] = (
        "Ivgi, Hinder & Carmon 2023, DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule, "
        "ICML 2023, arXiv:2302.12022"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    init_step: Literal["distance", "learning_rate", "heuristic"] = field(
        "heuristic",
        per_group=False,
        doc="How the first step is set: `heuristic` r_eps = value * (1 + ||x0||) (the paper's), "
        "`distance` r_eps = value, `learning_rate` first step size = value.",
    )
    init_step_value: float = field(
        1e-6, gt=0, per_group=False, doc="The value for init_step (1e-4 suggested with batch norm, else 1e-6)."
    )
    eps: float = field(1e-8, ge=0, per_group=False, doc="Added to the sum of squared gradient norms.")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    per_group_d: bool = field(
        False, per_group=False, doc="Distances and gradient norms per param group instead of over all groups."
    )
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("max_dist", "sum_sq_grad", "eta", "k", "x0_norm_sq")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The initial point x0, shaped like the param."""
        return [param.like("x0")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.dog import DoG

        return DoG(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DoWGSpec(_ScalarScope, OptimizerSpec):
    """DoWG: DoG with gradients weighted by the squared distance estimate (a normalized-GD-like step)."""

    TYPE: ClassVar[str] = "dowg"
    PAPER: ClassVar[str] = (
        "Khaled, Mishchenko & Jin 2023, DoWG Unleashed: An Efficient Universal Parameter-Free Gradient "
        "Descent Method, NeurIPS 2023, arXiv:2305.16284"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc=_LR_DOC)
    init_estim_sq_dist: float | None = field(
        None, gt=0, per_group=False, doc="Initial guess of the squared distance to the solution (default: eps)."
    )
    eps: float = field(1e-4, gt=0, per_group=False, doc="Added to the denominator; the default initial guess.")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    per_group_d: bool = field(
        False, per_group=False, doc="Distances and gradient norms per param group instead of over all groups."
    )
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("estim_sq_dist", "weighted_sq_grad", "eta")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The initial point x0, shaped like the param."""
        return [param.like("x0")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.dog import DoWG

        return DoWG(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class COCOBSpec(OptimizerSpec):
    """COCOB-Backprop: each coordinate bets on its gradient sign, no learning rate.

    ``lr`` multiplies the gradients (as in optax), and COCOB is invariant to their scale: every
    positive ``lr`` gives the same trajectory and an LR schedule has no effect until it reaches 0
    (a non-constant schedule warns). Keep ``lr = 1``; ``lr = 0`` freezes a group.
    """

    TYPE: ClassVar[str] = "cocob"
    PAPER: ClassVar[str] = (
        "Orabona & Tommasi 2017, Training Deep Networks without Learning Rates Through Coin Betting, "
        "NeurIPS 2017, arXiv:1705.07795"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(
        1.0,
        ge=0,
        doc="Scales the gradients the bettor sees; COCOB is scale-invariant, so any positive value gives the "
        "same trajectory (a schedule changes nothing until it reaches 0, which freezes the group).",
    )
    alpha: float = field(100.0, gt=0, doc="Caps the fraction bet early on (the paper's alpha).")
    eps: float = field(1e-8, gt=0, doc="Initial gradient-scale estimate (avoids dividing by 0).")
    weight_decay: float = field(0.0, ge=0, doc="L2 penalty added to the gradient.")
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """x0, theta, max_abs_grad, sum_abs_grad and reward, each shaped like the param."""
        return [param.like(name) for name in ("x0", "theta", "max_abs_grad", "sum_abs_grad", "reward")]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.cocob import COCOB

        return COCOB(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class MechanicSpec(WrapperSpec):
    """Mechanic: wraps any registered optimizer (`inner`) and learns the scale of its updates.

    Set the inner LR to a constant such as 1 (or a schedule peaking at 1); Mechanic finds the scale.
    Group overrides refer to the inner optimizer's options.
    """

    TYPE: ClassVar[str] = "mechanic"
    PAPER: ClassVar[str] = (
        "Cutkosky, Defazio & Mehta 2023, Mechanic: A Learning Rate Tuner, NeurIPS 2023, arXiv:2306.00144"
    )
    #: What Mechanic keeps of its inner optimizer's capabilities: ``step_factor`` (it gates its own
    #: scalars by it). The inner's other capabilities (``foreach``) are options of the inner table.
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    inner: OptimizerSpec = field(doc="The optimizer whose updates Mechanic scales (a table with its `type`).")
    weight_decay: float = field(
        0.01, ge=0, per_group=False, doc="Mechanic's own decay in its scale estimate (not the inner optimizer's)."
    )
    eps: float = field(1e-8, gt=0, per_group=False, doc="Numerical floor of Mechanic's statistics.")
    s_init: float = field(1e-6, gt=0, per_group=False, doc="Initial scale.")
    num_betas: int = field(6, ge=1, le=15, per_group=False, doc="Betas 1 - 0.1^i, i = 1..num_betas.")
    compile: bool | Literal["auto"] = field(
        "auto", per_group=False, doc=f"Mechanic's own passes (the inner optimizer has its own option). {COMPILE_DOC}"
    )

    def __attrs_post_init__(self) -> None:
        if isinstance(self.inner, MechanicSpec):
            raise FieldValueError("inner", "Mechanic inside Mechanic is not supported; wrap a plain optimizer")
        if self.inner.step_input() != "gradients":  # SAM, Sophia, L-BFGS (a closure), DP-SGD (per-example)
            raise FieldValueError(
                "inner", f"{type(self.inner).TYPE!r} needs a {self.inner.step_input()} step, but Mechanic steps its "
                "inner optimizer from the gradients in .grad; wrap an optimizer that steps from them"
            )

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """Mechanic's own reference point mechanic_x_ref, shaped like the param (the inner declares its state)."""
        return [param.like("mechanic_x_ref")]

    def shared_state_layout(self, groups: Sequence[GroupShape]) -> Sequence[StateTensor]:
        """mechanic_s, _m, _v and _r: num_betas float64 values each, the same tensors in every group."""
        if not groups:
            return []
        names = ("mechanic_s", "mechanic_m", "mechanic_v", "mechanic_r")
        return [StateTensor(name, (self.num_betas,), _SCALAR_DTYPE) for name in names]

    def wrap(self, inner: torch.optim.Optimizer, context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.mechanic import Mechanic

        return Mechanic(
            inner, weight_decay=self.weight_decay, eps=self.eps, s_init=self.s_init, num_betas=self.num_betas,
            compile=self.compile,
        )


@attrs.frozen(kw_only=True)
class MomoSpec(_ScalarScope, OptimizerSpec):
    """MoMo: SGD with momentum and a Polyak-type step size from a model of the loss; needs the loss.

    Give it the loss with ``step(closure)`` or ``optimizer.latest_loss = loss`` before ``step()``.
    """

    TYPE: ClassVar[str] = "momo"
    PAPER: ClassVar[str] = (
        "Schaipp, Ohana, Eickenberg, Defazio & Gower 2023, MoMo: Momentum Models for Adaptive Learning Rates, "
        "ICML 2024, arXiv:2305.07583"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1.0, ge=0, doc="Largest step size (the adaptive step never exceeds it); rather large.")
    beta: float = field(0.9, ge=0, lt=1, per_group=False, doc="Momentum (EMA coefficient of gradients and loss).")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay, applied proximally: x / (1 + lr * weight_decay).")
    lower_bound: float = field(0.0, per_group=False, doc="Lower bound of the loss (0 for most losses).")
    bias_correction: bool = field(False, per_group=False, doc="Bias-corrected averages (the paper's other scheme).")
    adapt_lower_bound: bool = field(
        False, per_group=False, doc="Estimate the lower bound online (when no good bound is known)."
    )
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("loss_avg", "gamma", "lb", "k")  # shared by every group

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """The gradient average grad_avg, shaped like the param."""
        return [param.like("grad_avg")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.momo import Momo

        return Momo(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class MomoAdamSpec(_ScalarScope, OptimizerSpec):
    """MoMo-Adam: Adam's direction with MoMo's model-based step size; needs the loss."""

    TYPE: ClassVar[str] = "momo_adam"
    PAPER: ClassVar[str] = MomoSpec.PAPER
    CAPABILITIES: ClassVar[frozenset[str]] = _STEP_FACTOR

    lr: float = field(1e-2, ge=0, doc="Largest step size (the adaptive step never exceeds it).")
    betas: tuple[float, float] = field(
        (0.9, 0.999), ge=0, lt=1, per_group=False, doc="Adam's coefficients (betas[0] also averages the loss)."
    )
    eps: float = field(1e-8, ge=0, doc="Added to Adam's denominator.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (see weight_decay_mode).")
    lower_bound: float = field(0.0, per_group=False, doc="Lower bound of the loss (0 for most losses).")
    weight_decay_mode: Literal["proximal", "decoupled"] = field(
        "proximal", per_group=False, doc="`proximal` divides by 1 + lr*wd after the step, `decoupled` is AdamW's."
    )
    adapt_lower_bound: bool = field(
        False, per_group=False, doc="Estimate the lower bound online (when no good bound is known)."
    )
    compile: bool | Literal["auto"] = field("auto", per_group=False, doc=COMPILE_DOC)

    _SCALARS: ClassVar[tuple[str, ...]] = ("loss_avg", "gamma", "lb", "k")  # shared by every group

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> Sequence[StateTensor]:
        """Adam's moments grad_avg and grad_avg_sq, shaped like the param."""
        return [param.like("grad_avg"), param.like("grad_avg_sq")]


    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_paramfree.optim.momo import MomoAdam

        return MomoAdam(param_groups, **self.optimizer_kwargs())


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type[OptimizerSpec], ...] = (
    ProdigySpec,
    DAdaptAdamWSpec,
    DAdaptSGDSpec,
    DAdaptLionSpec,
    DoGSpec,
    DoWGSpec,
    COCOBSpec,
    MechanicSpec,
    MomoSpec,
    MomoAdamSpec,
)
