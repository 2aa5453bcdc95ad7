"""Spec classes of optreg-contrib: ``sam``, ``sophia``, ``galore``, ``madgrad``, ``dpsgd``, ``split_complex``.

No torch import at module load (nor in the adam specs imported here): the registry imports this module
for every ``optreg`` command. A spec imports its optimizer class inside ``create()`` / ``wrap()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs
from optreg_adam.specs import AdamWSpec

from optreg import BuildContext, FieldValueError, OptimizerSpec, WrapperSpec, field
from optreg.memory import GroupShape, ParamShape, StateTensor, scalar
from optreg.specs import MAX_COUNT, MAX_STEPS, StepInput

if TYPE_CHECKING:
    import torch

__all__ = ["ALL_SPECS", "DPSGDSpec", "GaLoreSpec", "MADGRADSpec", "SAMSpec", "SophiaSpec", "SplitComplexSpec"]

#: Names whose step needs more than the gradients in ``.grad`` (a closure, or per-sample gradients):
#: they cannot run inside a wrapper that calls ``inner.step()`` with the gradients already in place.
NEEDS_MORE_THAN_GRADS = ("sam", "sophia", "dpsgd")


def _refuse_inner(spec: Any, names: tuple[str, ...], why: str) -> None:
    inner_type = type(spec.inner).TYPE
    if inner_type in names:
        raise FieldValueError("inner", f"{inner_type!r} cannot be the inner optimizer of {spec.TYPE!r}: {why}")


@attrs.frozen(kw_only=True)
class SAMSpec(WrapperSpec):
    """Sharpness-aware minimization around any registered optimizer (`inner`); adaptive SAM with `adaptive`.

    Each step evaluates the closure twice: at the parameters, then at the parameters moved by `rho`
    along the (adaptively scaled) normalized gradient; the inner optimizer steps from the restored
    parameters with the second gradient. Needs ``step(closure)``, the closure computing the loss and
    calling ``loss.backward()``. Group overrides name the inner optimizer's options.
    """

    TYPE: ClassVar[str] = "sam"
    PAPER: ClassVar[str] = (
        "Foret, Kleiner, Mobahi & Neyshabur 2021, Sharpness-Aware Minimization for Efficiently Improving "
        "Generalization, ICLR 2021, arXiv:2010.01412; adaptive: Kwon, Kim, Park & Choi 2021, ASAM, arXiv:2102.11600"
    )
    #: SAM gates nothing by a step factor: it keeps none of its inner optimizer's capabilities.
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    STEP_INPUT: ClassVar[StepInput] = "closure"  # two evaluations per step

    inner: OptimizerSpec = field(doc="The optimizer stepping with the sharpness-aware gradient (a table with `type`).")
    rho: float = field(0.05, gt=0, per_group=False, doc="Radius of the ascent step (the neighbourhood size).")
    adaptive: bool = field(
        False, per_group=False, doc="Adaptive SAM (ASAM): scale the ascent step per coordinate by (|p| + eta)^2."
    )
    eta: float = field(
        0.01, ge=0, per_group=False, doc="ASAM's offset in |p| + eta (only with `adaptive`; 0 gives |p|)."
    )
    eps: float = field(1e-12, gt=0, per_group=False, doc="Added to the gradient norm before dividing by it.")

    def __attrs_post_init__(self) -> None:
        _refuse_inner(self, NEEDS_MORE_THAN_GRADS, "SAM steps its inner optimizer with the gradients in .grad")

    def wrap(self, inner: torch.optim.Optimizer, context: BuildContext) -> torch.optim.Optimizer:
        from optreg_contrib.optim.sam import SAM

        return SAM(inner, rho=self.rho, adaptive=self.adaptive, eta=self.eta, eps=self.eps)


@attrs.frozen(kw_only=True)
class SophiaSpec(OptimizerSpec):
    """Sophia-H: momentum divided by a Hutchinson estimate of the Hessian diagonal, clipped per coordinate.

    Every `update_interval` steps the step estimates the Hessian diagonal from a Hessian-vector
    product: it needs ``step(closure)`` (the closure computes the loss and calls ``loss.backward()``;
    Sophia makes that backward build the graph) or gradients from ``loss.backward(create_graph=True)``.
    """

    TYPE: ClassVar[str] = "sophia"
    STEP_INPUT: ClassVar[StepInput] = "closure"  # Hutchinson's probes need the graph of the loss
    PAPER: ClassVar[str] = (
        "Liu, Li, Hall, Liang & Ma 2023, Sophia: A Scalable Stochastic Second-order Optimizer for Language "
        "Model Pre-training, ICLR 2024, arXiv:2305.14342"
    )

    lr: float = field(1e-4, ge=0, doc="Learning rate.")
    betas: tuple[float, float] = field(
        (0.965, 0.99), ge=0, lt=1, doc="EMA factors of the gradient (beta1) and of the Hessian estimates (beta2)."
    )
    rho: float = field(1.0, gt=0, doc="Clip threshold: each coordinate of m / max(gamma * h, eps) is clipped to +-rho.")
    gamma: float = field(0.01, gt=0, doc="Scale of the Hessian diagonal in the denominator.")
    eps: float = field(1e-12, gt=0, doc="Floor of the denominator gamma * h.")
    weight_decay: float = field(1e-4, ge=0, doc="Decoupled weight decay: p <- p * (1 - lr * weight_decay).")
    update_interval: int = field(
        10, ge=1, le=MAX_STEPS, per_group=False, doc="Steps between Hessian estimates (the first step estimates one)."
    )
    distribution: Literal["gaussian", "rademacher"] = field(
        "gaussian", per_group=False, doc="Hutchinson's probe vectors: the paper's gaussian, or rademacher (optax)."
    )
    seed: int = field(0, ge=0, per_group=False, doc="Seed of the probe vectors (each step and parameter has a stream).")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The gradient EMA, the Hessian-diagonal EMA and a float32 step counter (made with the optimizer)."""
        return [scalar("step", "float32"), param.like("exp_avg"), param.like("hessian")]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        strategy = context.strategy
        if strategy is not None and strategy.is_distributed:
            raise ValueError(
                f"sophia under {strategy.describe()}: its Hessian estimate differentiates the gradients again "
                "(backward with create_graph=True), which DDP does not support and the sharded strategies are not "
                "checked with; train sophia in one process (parallelism single)"
            )
        from optreg_contrib.optim.sophia import Sophia

        return Sophia(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class GaLoreSpec(WrapperSpec):
    """GaLore: the inner optimizer (adamw by default) steps on low-rank projections of the matrices' gradients.

    Each hidden matrix's gradient G (m x n) is projected to rank `rank` by its top singular vectors,
    recomputed every `update_proj_gap` steps (G @ V_r^T when m >= n, U_r^T @ G otherwise); the inner
    optimizer's state lives in the low-rank space, and its update is projected back and scaled by
    `scale`. Other parameters (vectors, embeddings, the head) step with the inner optimizer as usual.
    """

    TYPE: ClassVar[str] = "galore"
    PAPER: ClassVar[str] = (
        "Zhao, Zhang, Chen, Wang, Anandkumar & Tian 2024, GaLore: Memory-Efficient LLM Training by Gradient "
        "Low-Rank Projection, ICML 2024, arXiv:2403.03507"
    )
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()

    inner: OptimizerSpec = field(
        factory=AdamWSpec, per_group=False, doc="The optimizer of the projected updates (a table with a `type`; adamw)."
    )
    rank: int = field(
        128, ge=1, le=MAX_COUNT, per_group=False,
        doc="Rank of the projection (capped by each matrix's smaller side).",
    )
    update_proj_gap: int = field(
        200, ge=1, le=MAX_STEPS, per_group=False,
        doc="Steps between recomputations of the projection.",
    )
    scale: float = field(0.25, gt=0, per_group=False, doc="Scale of the projected-back update (GaLore's alpha).")

    def __attrs_post_init__(self) -> None:
        _refuse_inner(self, (*NEEDS_MORE_THAN_GRADS, "galore"), "GaLore steps its inner optimizer on projections")

    def role_options(self, role: str) -> dict[str, Any] | None:
        return {"galore": role == "matrix", **(self.inner.role_options(role) or {})}

    def _projects(self, param: ParamShape, options: Mapping[str, Any]) -> bool:
        """Whether GaLore projects ``param`` (as ``GaLore._projected``: a non-empty matrix of a galore group)."""
        return len(param.shape) == 2 and bool(options.get("galore", True)) and param.numel > 0

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """``galore_projection`` of a projected matrix: r x n (m >= n) or m x r, in the parameter's dtype
        (``galore_step`` is an int)."""
        if not self._projects(param, options):
            return []
        m, n = param.shape
        r = min(self.rank, m, n)
        return [StateTensor("galore_projection", (r, n) if m >= n else (m, r), param.dtype)]

    def inner_groups(self, groups: Sequence[GroupShape]) -> list[GroupShape]:
        """The groups as the inner optimizer sees them: each projected m x n matrix is its m x r (m >= n) or
        r x n low-rank proxy, r = min(rank, m, n); other parameters are themselves."""

        def proxy(param: ParamShape, options: Mapping[str, Any]) -> ParamShape:
            if not self._projects(param, options):
                return param
            m, n = param.shape
            r = min(self.rank, m, n)
            shape = (m, r) if m >= n else (r, n)
            return ParamShape(param.fqn, shape, param.dtype, shape, param.role)

        return [GroupShape(g.name, tuple(proxy(p, g.options) for p in g.params), g.options) for g in groups]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg.optim import is_sharded

        tensors = [p[1] if isinstance(p, tuple) else p for group in param_groups for p in group["params"]]
        if any(is_sharded(t) for t in tensors):
            where = context.strategy.describe() if context.strategy is not None else "a sharding strategy"
            raise ValueError(
                f"galore under {where}: its projection is the SVD of each whole gradient matrix, and these are "
                "sharded (DTensor); use ddp (or single), which keeps whole parameters"
            )
        from optreg_contrib.optim.galore import GaLore

        return GaLore(
            param_groups,
            lambda groups: self.inner.create(groups, context),
            rank=self.rank,
            update_proj_gap=self.update_proj_gap,
            scale=self.scale,
        )


@attrs.frozen(kw_only=True)
class MADGRADSpec(OptimizerSpec):
    """MADGRAD: momentumized, adaptive, dual-averaged gradient (the authors' algorithm, as their code runs it)."""

    TYPE: ClassVar[str] = "madgrad"
    PAPER: ClassVar[str] = (
        "Defazio & Jelassi 2021, Adaptivity without Compromise: A Momentumized, Adaptive, Dual Averaged "
        "Gradient Method for Stochastic Optimization, JMLR 2022, arXiv:2101.11075"
    )

    lr: float = field(1e-2, ge=0, doc="Learning rate.")
    momentum: float = field(0.9, ge=0, lt=1, doc="Momentum: p <- momentum * p + (1 - momentum) * z.")
    weight_decay: float = field(0.0, ge=0, doc="Weight decay (added to the gradient unless `decouple_decay`).")
    decouple_decay: bool = field(False, doc="Decoupled weight decay: p <- p - (lr + eps) * weight_decay * p_before.")
    eps: float = field(1e-6, gt=0, doc="Added to the cube root of the second-moment sum, and to the LR.")
    maximize: bool = field(False, doc="Maximize the objective instead of minimizing.")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """The sums of weighted squared gradients and of weighted gradients, a float32 step counter, and the
        first iterate x0 when momentum is on (momentum 0 recovers it from p and s)."""
        layout = [scalar("step", "float32"), param.like("grad_sum_sq"), param.like("s")]
        if options["momentum"] != 0:
            layout.append(param.like("x0"))
        return layout

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_contrib.optim.madgrad import MADGRAD

        return MADGRAD(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class DPSGDSpec(OptimizerSpec):
    """DP-SGD: clip each example's gradient to `l2_norm_clip`, add Gaussian noise, average, then SGD.

    Needs per-sample gradients in ``p.grad_sample`` (``optreg.optim.per_sample_grads`` computes them with
    ``torch.func``). Does no privacy accounting: the (epsilon, delta) of a run is for an accountant to compute.
    """

    TYPE: ClassVar[str] = "dpsgd"
    STEP_INPUT: ClassVar[StepInput] = "per_sample"
    PAPER: ClassVar[str] = (
        "Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang 2016, Deep Learning with Differential Privacy, "
        "CCS 2016, arXiv:1607.00133"
    )

    lr: float = field(0.1, ge=0, doc="Learning rate.")
    l2_norm_clip: float = field(1.0, gt=0, doc="Each example's gradient (over all parameters) is clipped to this norm.")
    noise_multiplier: float = field(
        1.0, ge=0, per_group=False, doc="Noise std as a multiple of l2_norm_clip (0: clipping only, no privacy)."
    )
    momentum: float = field(0.0, ge=0, lt=1, doc="SGD momentum on the noisy mean gradient (optax's trace).")
    nesterov: bool = field(False, doc="Nesterov momentum (needs momentum > 0).")
    seed: int | None = field(
        None, ge=0, per_group=False,
        doc="Seed of the noise; leave unset for a secret random seed (anyone who knows the seed can remove the noise).",
    )

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise FieldValueError("nesterov", "Nesterov momentum needs momentum > 0")

    def param_state_layout(self, param: ParamShape, options: Mapping[str, Any]) -> list[StateTensor]:
        """A float32 step counter, and the momentum buffer when momentum is on (made with the optimizer)."""
        return [scalar("step", "float32")] + ([param.like("momentum_buffer")] if options["momentum"] != 0 else [])

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        strategy = context.strategy
        if strategy is not None and strategy.is_distributed:
            raise ValueError(
                f"dpsgd under {strategy.describe()}: "
                "per-example gradients (torch.func) bypass the strategy's gradient averaging, so each rank would clip "
                "and noise only its own examples; train dpsgd in one process (parallelism single)"
            )
        from optreg_contrib.optim.dpsgd import DPSGD

        return DPSGD(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class SplitComplexSpec(WrapperSpec):
    """Complex parameters as independent real and imaginary parts, for any registered optimizer (`inner`).

    The inner optimizer steps ``torch.view_as_real`` of every complex parameter (a view: the update
    reaches the complex parameter); real parameters pass through. optax's ``split_real_and_imaginary``.
    """

    TYPE: ClassVar[str] = "split_complex"
    PAPER: ClassVar[str] = "optax.contrib.split_real_and_imaginary (Wirtinger-free optimization of complex parameters)"
    #: Passed through to the inner optimizer when it has it.
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor"})

    inner: OptimizerSpec = field(doc="The optimizer that steps the real views (a table with its `type`).")

    def __attrs_post_init__(self) -> None:
        _refuse_inner(
            self, (*NEEDS_MORE_THAN_GRADS, "split_complex"),
            "split_complex steps its inner optimizer with the gradients in .grad (wrap split_complex in sam instead)",
        )

    def inner_groups(self, groups: Sequence[GroupShape]) -> list[GroupShape]:
        """The groups as the inner optimizer sees them: each complex parameter is its real view (shape
        ``[..., 2]``, the real dtype); real parameters are themselves. split_complex keeps no state of its own."""

        def real(param: ParamShape) -> ParamShape:
            if not param.dtype.is_complex:
                return param
            dtype = param.dtype.to_real()
            return ParamShape(param.fqn, (*param.shape, 2), dtype, (*param.local_shape, 2), param.role)

        return [GroupShape(g.name, tuple(real(p) for p in g.params), g.options) for g in groups]

    def create(self, param_groups: list[dict[str, Any]], context: BuildContext) -> torch.optim.Optimizer:
        from optreg_contrib.optim.split_complex import SplitComplex

        return SplitComplex(param_groups, lambda groups: self.inner.create(groups, context))


#: Every spec class of this family; plugin.py registers them.
ALL_SPECS: tuple[type, ...] = (SAMSpec, SophiaSpec, GaLoreSpec, MADGRADSpec, DPSGDSpec, SplitComplexSpec)
